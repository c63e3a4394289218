//! The bot's own direct chats with a show's hosts and moderators, where it confirms their
//! room commands: opened by the bot (an `is_direct` invite, as Element opens one), and
//! checked before use, since the user may have left it.

use ruma::{
    OwnedRoomId, OwnedUserId,
    api::client::{room::create_room, state::get_state_event_for_key},
    events::{StateEventType, room::member::MembershipState},
};
use serde_json::Value;

use super::deadline;
use crate::matrix::{MatrixClient, MatrixError};

/// Opens a direct chat with `user` named `name`, inviting them; its room id. Not
/// idempotent (`createRoom` has no transaction id): the caller remembers the room at once.
pub async fn open_direct_chat(
    client: &MatrixClient, user: &OwnedUserId, name: &str,
) -> Result<OwnedRoomId, MatrixError> {
    let mut req = create_room::v3::Request::new();
    req.is_direct = true;
    req.invite = vec![user.clone()];
    req.name = Some(name.to_owned());
    req.preset = Some(create_room::v3::RoomPreset::TrustedPrivateChat);
    client.send(req, None, deadline()).await.map(|resp| resp.room_id)
}

/// `user`'s membership in the room as the bot sees it; `None` when they have none.
pub async fn membership(
    client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId,
) -> Result<Option<MembershipState>, MatrixError> {
    let req = get_state_event_for_key::v3::Request::new(room_id.clone(), StateEventType::RoomMember, user.to_string());
    let resp = match client.send(req, None, deadline()).await {
        Ok(resp) => resp,
        Err(e) if e.errcode() == Some("M_NOT_FOUND") => return Ok(None),
        Err(e) => return Err(e),
    };
    let content: Value = serde_json::from_str(resp.event_or_content.get())
        .map_err(|e| MatrixError::BadResponse { endpoint: "m.room.member state".into(), message: e.to_string() })?;
    Ok(content.get("membership").and_then(Value::as_str).map(MembershipState::from))
}
