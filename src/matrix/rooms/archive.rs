//! The room's end, per `rooms.archive_mode`: read-only with the door closed and the alias
//! freed, everyone kicked too, or the room deleted through the Synapse admin API.

use ruma::{
    OwnedRoomId, OwnedUserId,
    api::client::{
        alias::delete_alias,
        membership::{get_member_events, kick_user, leave_room},
    },
    events::room::join_rules::{JoinRule, RoomJoinRulesEventContent},
};
use serde_json::{Value, json};

use super::{ADMIN, POWER_LEVELS, deadline, put, put_custom, state};
use crate::{
    config::{ArchiveMode, Config},
    matrix::{MatrixClient, MatrixError, synapse_admin::SynapseAdmin},
    model::ReservationRecord,
    words,
};

/// Archives the room per `rooms.archive_mode`.
pub async fn archive(
    client: &MatrixClient, admin: Option<&SynapseAdmin>, config: &Config, record: &ReservationRecord,
    room_id: &OwnedRoomId,
) -> Result<(), MatrixError> {
    if config.rooms.archive_mode == ArchiveMode::Delete {
        let admin = admin.ok_or_else(|| MatrixError::Request {
            endpoint: "room delete".into(),
            message: "synapse_admin.token is not configured".into(),
        })?;
        return admin.delete_room(room_id).await;
    }
    // Read-modify-write: a state PUT replaces the whole event, so keep what is there
    // and raise every threshold below ADMIN to ADMIN; only the bot may post or change
    // state. On the raw JSON, for the reasons given at `set_hosts`.
    let mut levels = state(client, room_id, POWER_LEVELS).await?;
    for key in ["events_default", "state_default", "invite"] {
        levels[key] = json!(ADMIN);
    }
    if let Some(events) = levels.get_mut("events").and_then(Value::as_object_mut) {
        for level in events.values_mut() {
            if level.as_i64().is_none_or(|l| l < ADMIN.into()) {
                *level = json!(ADMIN);
            }
        }
    }
    put_custom(client, room_id, POWER_LEVELS, "", levels).await?;
    put(client, room_id, &RoomJoinRulesEventContent::new(JoinRule::Invite)).await?;
    match client.send(delete_alias::v3::Request::new(config.room_alias(&record.reservation.id)), None, deadline()).await
    {
        Ok(_) => {}
        Err(e) if e.errcode() == Some("M_NOT_FOUND") => {}
        Err(e) => return Err(e),
    }
    if config.rooms.archive_mode == ArchiveMode::Kick {
        let bot = config.bot_user_id();
        let members = client.send(get_member_events::v3::Request::new(room_id.clone()), None, deadline()).await?;
        for event in members.chunk {
            let Ok(event) = event.deserialize_as::<Value>() else {
                continue;
            };
            let member = event["state_key"].as_str().unwrap_or_default();
            let membership = event["content"]["membership"].as_str().unwrap_or_default();
            if member == bot.as_str() || !matches!(membership, "join" | "invite" | "knock") {
                continue;
            }
            let Ok(user) = OwnedUserId::try_from(member) else {
                continue;
            };
            let mut req = kick_user::v3::Request::new(room_id.clone(), user);
            req.reason = Some(words::room::CLOSED.into());
            client.send(req, None, deadline()).await?;
        }
        match client.send(leave_room::v3::Request::new(room_id.clone()), None, deadline()).await {
            Ok(_) => {}
            Err(MatrixError::Api { status: 403 | 404, .. }) => {} // already gone
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
