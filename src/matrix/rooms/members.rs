//! Who is in the room: invites (to this server, retried; to another, sent once), kicks
//! (and refused knocks), and the bot's own join.

use std::time::Duration;

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId,
    api::client::{
        membership::{ban_user, invite_user, join_room_by_id, kick_user, unban_user},
        redact::redact_event,
    },
};
use tokio::time::Instant;

use super::deadline;
use crate::matrix::{MatrixClient, MatrixError};

/// Deadline for one invite's retries. Shorter than a step's: an invite is one membership
/// change among many, and its holder is tried again later on their own.
const INVITE_DEADLINE: Duration = Duration::from_secs(10);

fn invite_request(room_id: &OwnedRoomId, user: &OwnedUserId) -> invite_user::v3::Request {
    invite_user::v3::Request::new(
        room_id.clone(),
        invite_user::v3::InvitationRecipient::UserId(invite_user::v3::InviteUserId::new(user.clone())),
    )
}

/// Someone already in the room is invited: what we wanted.
fn already_in(result: Result<invite_user::v3::Response, MatrixError>) -> Result<(), MatrixError> {
    match result {
        Ok(_) => Ok(()),
        Err(MatrixError::Api { status: 403, message, .. }) if message.contains("already in the room") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Invites a user, retrying the homeserver's passing failures; someone already in the
/// room is done.
pub async fn invite(client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId) -> Result<(), MatrixError> {
    already_in(client.send(invite_request(room_id, user), None, Instant::now() + INVITE_DEADLINE).await)
}

/// Invites a user of another server with one request, never retried here. Synapse sends
/// the invite to that server inside the room's membership lock (and inside its own
/// limit of membership changes per appservice), for up to a minute per try when that
/// server hangs; asking again at once would only keep the room's other invites waiting
/// longer. The caller keeps the failure against the holder and their server.
pub async fn invite_once(client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId) -> Result<(), MatrixError> {
    already_in(client.send_once(invite_request(room_id, user), None).await)
}

/// Kicks a member (or refuses a knock) with a reason; someone already gone is done.
pub async fn kick(
    client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId, reason: &str,
) -> Result<(), MatrixError> {
    let mut req = kick_user::v3::Request::new(room_id.clone(), user.clone());
    req.reason = Some(reason.to_owned());
    match client.send(req, None, deadline()).await {
        Ok(_) => Ok(()),
        Err(MatrixError::Api { status: 403, message, .. }) if message.contains("not in the room") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The bot joins a room it was invited to (by an admin, for commands).
pub async fn join(client: &MatrixClient, room_id: &OwnedRoomId) -> Result<(), MatrixError> {
    client.send(join_room_by_id::v3::Request::new(room_id.clone()), None, deadline()).await.map(|_| ())
}

/// Bans a member with a reason (a ban of someone banned already is done).
pub async fn ban(
    client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId, reason: &str,
) -> Result<(), MatrixError> {
    let mut req = ban_user::v3::Request::new(room_id.clone(), user.clone());
    req.reason = Some(reason.to_owned());
    client.send(req, None, deadline()).await.map(|_| ())
}

/// Lifts a member's ban; someone not banned is done.
pub async fn unban(client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId) -> Result<(), MatrixError> {
    match client.send(unban_user::v3::Request::new(room_id.clone(), user.clone()), None, deadline()).await {
        Ok(_) => Ok(()),
        Err(MatrixError::Api { status: 403, message, .. }) if message.contains("not banned") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Redacts an event as the bot, with a reason. The transaction id is the event's, so
/// that redacting it again (a retry, another instance) sends nothing new while the
/// homeserver remembers it, and an event gone already is done.
pub async fn redact(
    client: &MatrixClient, room_id: &OwnedRoomId, event_id: &OwnedEventId, reason: &str,
) -> Result<(), MatrixError> {
    let txn: OwnedTransactionId = format!("foyer-redact-{}", event_id.as_str().trim_start_matches('$')).into();
    let mut req = redact_event::v3::Request::new(room_id.clone(), event_id.clone(), txn);
    req.reason = Some(reason.to_owned());
    match client.send(req, None, deadline()).await {
        Ok(_) => Ok(()),
        Err(e) if e.errcode() == Some("M_NOT_FOUND") => Ok(()),
        Err(e) => Err(e),
    }
}
