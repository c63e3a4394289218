//! `POST /chat/v1/messages` and `DELETE /chat/v1/messages/{event_id}`: a web fan writes in
//! the show's room (docs/web-chat.md, "Writing").
//!
//! The fan's first message makes their web user: registered in Foyer's namespace (no
//! login), named with the web mark, invited by the bot and joined as itself. Each
//! message is then sent as that user with a transaction id made from the page's
//! `txn_id`, so a retry of the same message sends nothing new. The answer waits for the
//! homeserver's event id: a 200 means the room has the message.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use ruma::{EventId, OwnedRoomId, OwnedUserId, RoomId};
use serde_json::json;

use super::bearer::{live_session, unavailable};
use crate::{
    http::{AppState, error},
    matrix::{MatrixClient, MatrixError, rooms},
    model::{
        ActionReason, Broken, EndReason, MAX_MAX_LENGTH, ModeratedMember, NewWebUser, Recent, ReservationRecord, Rule,
        ViewerKey, WebSession, naming, post_digest,
    },
    schedule::{self, Phase},
    store::Breach,
    words,
};

/// The longest body read at all, in Unicode characters: the most any show's
/// `max_length` can allow. A show's own limit is its rules' (`model::rules`).
const MAX_LENGTH: usize = MAX_MAX_LENGTH as usize;
/// The page's transaction ids: 1 to 64 of `A-Z a-z 0-9 . _ ~ -`.
const MAX_TXN_ID: usize = 64;

/// What the page sends.
struct Message {
    txn_id: String,
    body: String,
}

/// Why a message is refused before it reaches the room.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    /// Not a message: the field that is wrong, named.
    #[error("{0}")]
    Malformed(String),
    #[error("The message is {length} characters long; the limit is {MAX_LENGTH}.")]
    TooLong { length: usize },
    /// It breaks one of the show's rules.
    #[error("{}", .0.reason)]
    Rule(Broken),
}

impl Refusal {
    fn answer(&self) -> Response {
        match self {
            Self::Malformed(_) => error(StatusCode::BAD_REQUEST, "FOYER_BAD_MESSAGE", self.to_string()),
            Self::TooLong { .. } => {
                let body =
                    json!({"errcode": "FOYER_RULE", "error": self.to_string(), "rule": Rule::MaxLength.as_str()});
                (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
            }
            Self::Rule(broken) => {
                metrics::counter!("foyer_web_messages_total", "result" => "refused_by_rule").increment(1);
                let mut body = json!({"errcode": "FOYER_RULE", "error": words::web::broke_rule(&broken.reason), "rule": broken.rule.as_str()});
                match broken.retry_after {
                    Some(wait) => {
                        body["retry_after_ms"] = json!(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                        let seconds = wait.as_secs_f64().ceil().max(1.0).to_string();
                        (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, seconds)], Json(body)).into_response()
                    }
                    None => (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response(),
                }
            }
        }
    }
}

/// Reads `{"txn_id", "body"}`, naming the field that is wrong.
fn parse(raw: &[u8]) -> Result<Message, Refusal> {
    let bad = |message: &str| Refusal::Malformed(message.to_owned());
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| Refusal::Malformed(format!("the body is not JSON: {e}")))?;
    let text = |field: &str| {
        let found = value.get(field).and_then(|v| v.as_str()).map(str::to_owned);
        found.ok_or_else(|| Refusal::Malformed(format!("{field} must be a string")))
    };
    let (txn_id, body) = (text("txn_id")?, text("body")?);
    let txn_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-');
    if txn_id.is_empty() || txn_id.len() > MAX_TXN_ID || !txn_id.chars().all(txn_ok) {
        return Err(Refusal::Malformed(format!("txn_id must be 1 to {MAX_TXN_ID} of A-Z a-z 0-9 . _ ~ -")));
    }
    if body.trim().is_empty() {
        return Err(bad("body is empty"));
    }
    if body.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad("body holds control characters"));
    }
    let length = body.chars().count();
    if length > MAX_LENGTH {
        return Err(Refusal::TooLong { length });
    }
    Ok(Message { txn_id, body })
}

pub async fn send(State(state): State<AppState>, headers: HeaderMap, raw: Bytes) -> Response {
    let session = match live_session(&state, &headers).await {
        Ok((_, session)) => session,
        Err(answer) => return answer,
    };
    let message = match parse(&raw) {
        Ok(message) => message,
        Err(refusal) => return refusal.answer(),
    };
    let (room_id, client, record) = match writable_room(&state, &session).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if let Err(answer) = follows_rules(&state, &session, &record, &message).await {
        return answer;
    }
    let user = match web_user(&state, &client, &session, &room_id).await {
        Ok(user) => user,
        Err(answer) => return answer,
    };
    match rooms::send_as_web_user(&client, &room_id, &user, &message.txn_id, &message.body).await {
        Ok(event_id) => {
            metrics::counter!("foyer_web_messages_total", "result" => "sent").increment(1);
            tracing::info!(reservation_id = %session.session.reservation, event_id = %event_id, "web fan's message sent");
            Json(json!({ "event_id": event_id })).into_response()
        }
        Err(e) => homeserver_failed(e, "send a web fan's message"),
    }
}

pub async fn remove(State(state): State<AppState>, Path(event_id): Path<String>, headers: HeaderMap) -> Response {
    let session = match live_session(&state, &headers).await {
        Ok((_, session)) => session,
        Err(answer) => return answer,
    };
    let Ok(event_id) = EventId::parse(&event_id) else {
        return error(StatusCode::BAD_REQUEST, "FOYER_BAD_MESSAGE", "that is not an event id");
    };
    let (room_id, client, _) = match writable_room(&state, &session).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let s = &session.session;
    let generation = match holder_now(&state, &session).await {
        Ok(generation) => generation,
        Err(answer) => return answer,
    };
    let user = match state.store.web_user(&s.reservation, &s.viewer, generation).await {
        Ok(Some(user)) => user.user_id,
        Ok(None) => return not_yours(),
        Err(e) => return unavailable(&e),
    };
    // The homeserver lets a member at the default power redact only their own events.
    match rooms::redact_as_web_user(&client, &room_id, &user, &event_id).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) if e.errcode() == Some("M_FORBIDDEN") => not_yours(),
        Err(e) => homeserver_failed(e, "remove a web fan's message"),
    }
}

fn not_yours() -> Response {
    error(StatusCode::FORBIDDEN, "FOYER_NOT_YOURS", "you can remove only your own messages")
}

fn homeserver_failed(e: MatrixError, what: &str) -> Response {
    tracing::warn!(error = %e, "web chat: cannot {what}");
    error(StatusCode::BAD_GATEWAY, "FOYER_HOMESERVER", "the chat server did not take the message; try again")
}

/// The room the session's fan may write in now, and the Matrix client; or why not: the
/// room is not open yet, or archived or cancelled, or the viewer is banned.
/// Whether the message keeps the show's rules, given what this fan posted of late; a
/// message that does is recorded as posted (before it is sent, so that a fan who sends
/// two at once is judged by the first). A retry of a post (its `txn_id` again) is not
/// judged again.
async fn follows_rules(
    state: &AppState, session: &WebSession, record: &ReservationRecord, message: &Message,
) -> Result<(), Response> {
    let s = &session.session;
    let rules = record.reservation.rules(&state.config.rooms.rules).map_err(|e| {
        tracing::error!(reservation_id = %s.reservation, error = %e, "a show's stored rules cannot be read");
        error(StatusCode::INTERNAL_SERVER_ERROR, "FOYER_RULES_UNREADABLE", "this show's rules cannot be read")
    })?;
    let sender = ModeratedMember::web_viewer(s.viewer.clone()).sender_key();
    match state.store.post_known(&s.reservation, &sender, &message.txn_id).await {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(e) => return Err(unavailable(&e)),
    }
    let now = Utc::now();
    // A fan timed out after their strikes (or by a moderator) waits; nothing is judged.
    let member = ModeratedMember::web_viewer(s.viewer.clone());
    match state.store.timed_out_until(&s.reservation, &member, now).await {
        Ok(None) => {}
        Ok(Some(until)) => return Err(timed_out((until - now).to_std().unwrap_or_default())),
        Err(e) => return Err(unavailable(&e)),
    }
    let memory = chrono::Duration::from_std(rules.memory()).unwrap_or(chrono::Duration::zero());
    let posts = if memory.is_zero() {
        Vec::new()
    } else {
        state.store.posts_since(&s.reservation, &sender, now - memory).await.map_err(|e| unavailable(&e))?
    };
    let ago = |at: DateTime<Utc>| (now - at).to_std().unwrap_or_default();
    let recent = Recent {
        last_post_ago: posts.first().map(|(at, _)| ago(*at)),
        digests: posts.iter().filter(|(at, _)| ago(*at) < rules.duplicate_window).map(|(_, d)| d.clone()).collect(),
    };
    if let Err(broken) = rules.check(&[&message.body], &recent) {
        tracing::info!(reservation_id = %s.reservation, rule = broken.rule.as_str(), "a web fan's message broke a rule");
        // In the moderation record (a strike), by the fan's ticket or viewer id: the post
        // never became an event. A record that cannot be written now does not change the
        // answer, which the fan needs either way.
        let breach = Breach {
            reservation: s.reservation.clone(),
            member: member.clone(),
            rule: broken.rule,
            reason: ActionReason::lossy(&broken.reason),
            message: None,
            strikes: rules.strikes,
            at: now,
        };
        if let Err(e) = state.store.record_breach(&breach).await {
            tracing::warn!(reservation_id = %s.reservation, error = %e, "cannot record a broken rule");
        }
        return Err(Refusal::Rule(broken).answer());
    }
    let digest = post_digest(&message.body);
    state.store.record_post(&s.reservation, &sender, &message.txn_id, now, &digest).await.map_err(|e| unavailable(&e))
}

/// How long a web fan's first message may wait for its user's turn to join the room.
const WEB_JOIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// 429 `FOYER_ROOM_BUSY`: many are being let into the room; the fan's first message may
/// be sent again in `wait`.
fn room_busy(wait: std::time::Duration) -> Response {
    too_many("FOYER_ROOM_BUSY", words::web::room_busy(wait), wait)
}

/// 429 `FOYER_TIMED_OUT`: the fan may post again in `wait`.
fn timed_out(wait: std::time::Duration) -> Response {
    too_many("FOYER_TIMED_OUT", words::web::timed_out(wait), wait)
}

/// A 429 with `retry_after_ms` and `Retry-After`.
fn too_many(errcode: &str, error: String, wait: std::time::Duration) -> Response {
    let body = json!({"errcode": errcode, "error": error,
        "retry_after_ms": u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)});
    let seconds = wait.as_secs_f64().ceil().max(1.0).to_string();
    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, seconds)], Json(body)).into_response()
}

async fn writable_room(
    state: &AppState, session: &WebSession,
) -> Result<(OwnedRoomId, MatrixClient, ReservationRecord), Response> {
    let s = &session.session;
    let Some(lifecycle) = state.lifecycle.get() else {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "FOYER_UNAVAILABLE", "Foyer is starting; try again"));
    };
    let record = match state.store.reservation(&s.reservation).await {
        Ok(Some(record)) => record,
        Ok(None) => return Err(closed("this show is not known")),
        Err(e) => return Err(unavailable(&e)),
    };
    match state.store.viewer_banned(&s.reservation, &s.viewer).await {
        Ok(false) => {}
        Ok(true) => return Err(closed("you are banned from this chat")),
        Err(e) => return Err(unavailable(&e)),
    }
    let (_, status) = schedule::at(&record, &state.config.rooms, Utc::now());
    let room = record.room_id.as_deref().and_then(|r| RoomId::parse(r).ok());
    match (status.phase, room) {
        (Phase::Open | Phase::Live | Phase::Ended, Some(room)) => Ok((room, lifecycle.client.clone(), record)),
        (Phase::Archived, _) => Err(closed("the chat is archived: it is read only")),
        (Phase::Cancelled, _) => Err(closed("the show is cancelled")),
        _ => Err(closed("the chat is not open yet")),
    }
}

fn closed(why: &str) -> Response {
    error(StatusCode::FORBIDDEN, "FOYER_CLOSED", why)
}

/// The ticket's holder generation now (0 for a platform viewer), or the refusal: a
/// revoked ticket. A moved one has ended its sessions already; a corrected one (the same
/// holder) carries its web user to the new generation, so the current one is asked for.
async fn holder_now(state: &AppState, session: &WebSession) -> Result<i64, Response> {
    let s = &session.session;
    let ViewerKey::Ticket(ticket) = &s.viewer else { return Ok(0) };
    match state.store.ticket_generation(&s.reservation, ticket).await {
        Ok(Some(generation)) => Ok(generation),
        Ok(None) => {
            Err(error(StatusCode::FORBIDDEN, "FOYER_SESSION_ENDED", words::web::session_ended(EndReason::Revoked)))
        }
        Err(e) => Err(unavailable(&e)),
    }
}

/// The fan's web user, made and put in the room on their first message. A known one's
/// ID is taken from its row, never made again: a corrected ticket keeps its user.
async fn web_user(
    state: &AppState, client: &MatrixClient, session: &WebSession, room_id: &OwnedRoomId,
) -> Result<OwnedUserId, Response> {
    let s = &session.session;
    let generation = holder_now(state, session).await?;
    let known = state.store.web_user(&s.reservation, &s.viewer, generation).await.map_err(|e| unavailable(&e))?;
    if let Some(user) = known.as_ref().filter(|u| u.joined_at.is_some() && u.removed.is_none()) {
        return Ok(user.user_id.clone());
    }
    let Some(webchat) = state.config.webchat.as_ref() else {
        return Err(error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "web chat is off"));
    };
    let server = &state.config.homeserver.server_name;
    let user_id = known.map(|u| u.user_id).unwrap_or_else(|| {
        naming::web_user_id(
            &state.config.web_key(),
            &webchat.puppet_prefix,
            &s.reservation,
            &s.viewer,
            generation,
            server,
        )
    });
    let made = async {
        rooms::register_web_user(client, &user_id).await?;
        rooms::set_web_name(client, &user_id, s.name.as_str()).await?;
        Ok::<_, MatrixError>(())
    };
    made.await.map_err(|e| homeserver_failed(e, "make a web fan's user"))?;
    let now = Utc::now();
    let new = NewWebUser {
        reservation: s.reservation.clone(),
        viewer: s.viewer.clone(),
        user_id: user_id.clone(),
        display_name: s.name.clone(),
        holder_generation: generation,
        registered_at: now,
    };
    state.store.put_web_user(&new).await.map_err(|e| unavailable(&e))?;
    // The join takes a turn among Foyer's joins into the room (`rooms.join_pace`): a
    // fan waits for one that comes soon, and is told to try again when the room is busy
    // letting others in. Their user is kept, made once.
    if let Some(lifecycle) = state.lifecycle.get() {
        match lifecycle.joins.take_turn(room_id, WEB_JOIN_PATIENCE) {
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(wait) => return Err(room_busy(wait)),
        }
    }
    let joined = rooms::join_web_user(client, room_id, &user_id).await;
    let result = if joined.is_ok() { "joined" } else { "failed" };
    metrics::counter!("foyer_joins_total", "kind" => "web_fan", "result" => result).increment(1);
    joined.map_err(|e| homeserver_failed(e, "join a web fan"))?;
    state.store.web_user_joined(&user_id, Utc::now()).await.map_err(|e| unavailable(&e))?;
    tracing::info!(reservation_id = %s.reservation, "a web fan joined the room");
    Ok(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_read_and_each_mistake_named() {
        let ok = parse(br#"{"txn_id": "a1.b_c~d-e", "body": "hello\nthere"}"#).expect("read");
        assert_eq!((ok.txn_id.as_str(), ok.body.as_str()), ("a1.b_c~d-e", "hello\nthere"));
        for (raw, named) in [
            (r#"{"body": "hi"}"#, "txn_id must be a string"),
            (r#"{"txn_id": "", "body": "hi"}"#, "txn_id must be 1 to 64"),
            (r#"{"txn_id": "a b", "body": "hi"}"#, "txn_id must be 1 to 64"),
            (r#"{"txn_id": "t"}"#, "body must be a string"),
            (r#"{"txn_id": "t", "body": "   "}"#, "body is empty"),
            (r#"{"txn_id": "t", "body": "bell\u0007"}"#, "body holds control characters"),
            ("not json", "the body is not JSON"),
        ] {
            let refusal = parse(raw.as_bytes()).err().unwrap_or_else(|| panic!("{raw} was read"));
            assert!(matches!(&refusal, Refusal::Malformed(m) if m.starts_with(named)), "{raw}: {refusal}");
            assert_eq!(refusal.answer().status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn the_longest_body_read_counts_characters_not_bytes() {
        let body = |n: usize| json!({"txn_id": "t", "body": "é".repeat(n)}).to_string();
        assert!(parse(body(MAX_LENGTH).as_bytes()).is_ok());
        let refusal = parse(body(MAX_LENGTH + 1).as_bytes()).err().expect("refused");
        assert_eq!(refusal, Refusal::TooLong { length: MAX_LENGTH + 1 });
        assert_eq!(refusal.answer().status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
