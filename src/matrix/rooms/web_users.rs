//! Web fans in Matrix (docs/web-chat.md): each writes through a user of Foyer's exclusive
//! namespace (`webchat.puppet_prefix`), registered without a login and acted as with the
//! `as_token` (the appservice's `user_id` parameter), never with a token of its own. Its
//! ID is made in `model::naming` (`web_user_id`); its name's mark is worded in
//! `words::room`. Each call is idempotent; kicks and bans are the bot's (`members.rs`).

use ruma::{
    EventId, OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId, UserId,
    api::client::{
        account::register,
        membership::join_room_by_id,
        message::send_message_event,
        profile::{ProfileFieldValue, set_profile_field},
        redact::redact_event,
    },
    events::room::message::RoomMessageEventContent,
};

use super::{deadline, members::invite};
use crate::{
    matrix::{MatrixClient, MatrixError},
    model::naming::{web_message_txn, web_redaction_txn},
    words::room::web_display_name,
};

/// Registers the web user `user` (a user of the namespace, on our server) without a
/// login: no access token is made. One that exists already is done.
pub async fn register_web_user(client: &MatrixClient, user: &UserId) -> Result<(), MatrixError> {
    let mut req = register::v3::Request::new();
    req.username = Some(user.localpart().to_owned());
    req.login_type = Some(register::LoginType::ApplicationService);
    req.inhibit_login = true;
    // As the appservice itself: the user does not exist yet, so it cannot be acted as.
    match client.send(req, None, deadline()).await {
        Ok(_) => Ok(()),
        Err(e) if e.errcode() == Some("M_USER_IN_USE") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Gives the web user the fan's name, marked as a web fan (`words::room::web_display_name`).
/// It is the user's profile name: the homeserver carries it into the rooms it is in, and
/// into the room it joins next. The same name again changes nothing.
pub async fn set_web_name(client: &MatrixClient, user: &UserId, name: &str) -> Result<(), MatrixError> {
    let value = ProfileFieldValue::DisplayName(web_display_name(name));
    client.send(set_profile_field::v3::Request::new(user.to_owned(), value), Some(user), deadline()).await.map(|_| ())
}

/// Takes the fan's name off the web user (when the room is archived): Matrix clients
/// then show its ID, which names no one.
pub async fn clear_web_name(client: &MatrixClient, user: &UserId) -> Result<(), MatrixError> {
    let value = ProfileFieldValue::DisplayName(String::new());
    client.send(set_profile_field::v3::Request::new(user.to_owned(), value), Some(user), deadline()).await.map(|_| ())
}

/// Gets the web user into the room: Foyer's rooms are invite-only, so the bot invites it
/// (someone already in is done), then it joins as itself (joining again is done too).
/// A web user the room has banned stays out: the invite is refused.
pub async fn join_web_user(
    client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId,
) -> Result<(), MatrixError> {
    invite(client, room_id, user).await?;
    client.send(join_room_by_id::v3::Request::new(room_id.clone()), Some(user), deadline()).await.map(|_| ())
}

/// Sends the fan's plain-text message as their web user; returns its event id. The
/// transaction id comes from the web user and the page's `txn_id`
/// (`model::naming::web_message_txn`), so the same `txn_id` again returns the first
/// event's id and posts nothing new, for as long as the homeserver remembers the
/// transaction (Synapse: in memory, about 30 minutes, not across its restart: the
/// store keeps the event id of each `txn_id` for longer).
pub async fn send_as_web_user(
    client: &MatrixClient, room_id: &OwnedRoomId, user: &UserId, txn_id: &str, body: &str,
) -> Result<OwnedEventId, MatrixError> {
    let txn: OwnedTransactionId = web_message_txn(user, txn_id).into();
    let content = RoomMessageEventContent::text_plain(body);
    let req = send_message_event::v3::Request::new(room_id.clone(), txn, &content)
        .map_err(|e| MatrixError::Request { endpoint: "send m.room.message".into(), message: e.to_string() })?;
    client.send(req, Some(user), deadline()).await.map(|r| r.event_id)
}

/// Redacts one of the web user's own messages, as the web user. Redacting it again
/// changes nothing a reader sees.
pub async fn redact_as_web_user(
    client: &MatrixClient, room_id: &OwnedRoomId, user: &UserId, event_id: &EventId,
) -> Result<(), MatrixError> {
    let txn: OwnedTransactionId = web_redaction_txn(user, event_id.as_str()).into();
    let req = redact_event::v3::Request::new(room_id.clone(), event_id.to_owned(), txn);
    client.send(req, Some(user), deadline()).await.map(|_| ())
}
