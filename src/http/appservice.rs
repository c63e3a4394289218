//! The application service API the homeserver calls (`/_matrix/app/v1/...`).
//!
//! Transactions only record facts and hand them on; they never call the homeserver.
//! Synapse marks us down on any non-2xx and then backs off for minutes, so a
//! transaction is answered 200 as soon as its events are handed on.

use std::{
    collections::{HashSet, VecDeque},
    hash::{DefaultHasher, Hash, Hasher},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use crate::{
    events::InboundEvent,
    http::{AppState, error, has_token, method_not_allowed, unrecognized, webchat},
    model::{ClaimCode, Membership},
    store::MembershipFact,
};

/// Synapse sends up to 100 events and 100 ephemeral events a transaction.
const MAX_TRANSACTION_BYTES: usize = 32 * 1024 * 1024;
/// How many recent transactions are remembered for deduplication.
const RECENT_TRANSACTIONS: usize = 4096;

pub fn router(state: AppState) -> Router<AppState> {
    super::routes(super::Group::Appservice, &state)
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_TRANSACTION_BYTES))
        .layer(middleware::from_fn_with_state(state, require_hs_token))
}

/// Every homeserver request carries `Authorization: Bearer <hs_token>`.
async fn require_hs_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if has_token(request.headers(), &state.config.appservice.hs_token) {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "refused a homeserver request without the right hs_token");
    error(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Bad or missing hs_token")
}

/// A transaction's envelope, each event kept as its own JSON text: one event that cannot
/// be read (a member can post content nested past serde_json's depth limit) must not
/// make the whole transaction unreadable. Skipping a value never recurses, so the
/// envelope always reads.
#[derive(Debug, Deserialize)]
struct TransactionBody<'a> {
    #[serde(default, borrow)]
    events: Vec<&'a RawValue>,
}

pub(super) async fn transaction(state: State<AppState>, txn_id: Path<String>, body: Bytes) -> Response {
    // Timed from the body's receipt to the answer: the homeserver sends Foyer's next
    // transaction only once this one is answered, so every room waits on this time.
    let received = std::time::Instant::now();
    let answer = answer_transaction(state, txn_id, body).await;
    metrics::histogram!("foyer_appservice_transaction_seconds").record(received.elapsed().as_secs_f64());
    answer
}

async fn answer_transaction(State(state): State<AppState>, Path(txn_id): Path<String>, body: Bytes) -> Response {
    // Never 4xx for what the homeserver sent: Synapse retries a refused transaction for
    // ever, holding back every transaction behind it. A body that is not a transaction
    // at all holds no events to record.
    // The envelope is read once; the events Foyer acts on and the web chat's log are
    // both read from its events.
    let envelope = match serde_json::from_slice::<TransactionBody<'_>>(&body) {
        Ok(envelope) => envelope,
        Err(e) => {
            tracing::warn!(txn_id, error = %e, "a transaction body that cannot be read; answered 200 with nothing recorded");
            metrics::counter!("foyer_appservice_transactions_total", "result" => "unreadable").increment(1);
            return Json(json!({})).into_response();
        }
    };
    let events = inbound(&envelope.events);
    let key = transaction_key(&txn_id, &events);
    let seen = state
        .transactions
        .lock()
        .map(|mut t| {
            t.last_at = Some(std::time::Instant::now());
            t.contains(key)
        })
        .unwrap_or(false);
    if seen {
        metrics::counter!("foyer_appservice_transactions_total", "result" => "duplicate").increment(1);
        tracing::debug!(txn_id, "duplicate transaction ignored");
        return Json(json!({})).into_response();
    }
    // Membership facts are stored before the answer: Synapse does not send a
    // transaction twice once it got a 200.
    let bot = state.config.bot_user_id();
    let mut facts: Vec<MembershipFact> = events.iter().filter_map(|e| membership_fact(e, &bot)).collect();
    // Codes in knocks are throttled as `!claim` is.
    let screened = crate::admin::claim::screen_knocks(&state.claims, state.store.as_ref(), &mut facts).await;
    // A ban of a web fan's user bans the viewer; read before the facts are stored.
    let screened = match screened {
        Ok(()) => super::webchat::members::follow(&state, &facts, chrono::Utc::now()).await,
        Err(e) => Err(e),
    };
    let recorded = match screened {
        Ok(()) => state.store.record_memberships(&facts, chrono::Utc::now()).await,
        Err(e) => Err(e),
    };
    match recorded {
        Ok(0) => {}
        Ok(_) => state.wake.notify_one(),
        Err(e) => {
            tracing::error!(txn_id, error = %e, "cannot store membership facts; the homeserver will retry");
            return error(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", "Foyer cannot store this now");
        }
    }
    // The web chat's room log, after the names the member events gave: a retry appends
    // nothing (an event is logged once).
    if let Err(e) = log_for_web_chat(&state, &envelope.events).await {
        tracing::error!(txn_id, error = %e, "cannot log room events for the web chat; the homeserver will retry");
        return error(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", "Foyer cannot store this now");
    }
    // Members' messages against their show's rules: a breach is recorded, its redaction
    // queued, before the answer (docs/moderation.md).
    match crate::moderation::screen(state.store.as_ref(), &state.config, &events, chrono::Utc::now()).await {
        Ok(screened) => {
            if screened.breaches > 0 {
                state.redactions.notify_one();
            }
            if screened.timeouts > 0 {
                state.wake.notify_one();
            }
        }
        Err(e) => {
            tracing::error!(txn_id, error = %e, "cannot screen messages against the rules; the homeserver will retry");
            return error(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", "Foyer cannot store this now");
        }
    }
    // Admin commands too: the inbox keeps them until they are handled.
    let admins = &state.config.admins;
    let queued = match crate::admin::kept_in_inbox(&events, &bot, admins, state.store.as_ref()).await {
        Ok(commands) if commands.is_empty() => Ok(false),
        Ok(commands) => state.store.queue_admin_events(&commands, chrono::Utc::now()).await.map(|()| true),
        Err(e) => Err(e),
    };
    match queued {
        Ok(false) => {}
        Ok(true) => state.admin_wake.notify_one(),
        Err(e) => {
            tracing::error!(txn_id, error = %e, "cannot store admin commands; the homeserver will retry");
            return error(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", "Foyer cannot store this now");
        }
    }
    let count = events.len();
    for event in &events {
        metrics::counter!("foyer_homeserver_events_total", "type" => event.type_label()).increment(1);
        event.log();
    }
    if let Ok(mut recent) = state.transactions.lock() {
        recent.insert(key);
    }
    metrics::counter!("foyer_appservice_transactions_total", "result" => "accepted").increment(1);
    tracing::debug!(txn_id, events = count, "transaction accepted");
    Json(json!({})).into_response()
}

/// The events of a transaction, each read on its own, and those of the types Foyer acts
/// on into their types: an event that does not read is skipped (and logged), the others
/// of the transaction kept.
fn inbound(raws: &[&RawValue]) -> Vec<InboundEvent> {
    raws.iter().copied().filter_map(InboundEvent::from_raw).collect()
}

/// Logs the transaction's room messages, edits, redactions and the bot's notices for
/// the web chat (docs/web-chat.md), when it is configured.
async fn log_for_web_chat(state: &AppState, raws: &[&RawValue]) -> Result<usize, crate::store::StoreError> {
    if state.config.webchat.is_none() {
        return Ok(0);
    }
    let events = webchat::hub::loggable(raws);
    webchat::hub::record(state.store.as_ref(), &state.chat, &state.config, &events, chrono::Utc::now()).await
}

/// Synapse may number transactions from 1 again (for example after its appservice
/// state is reset), so the id alone is not a safe key; the id with the event ids is.
fn transaction_key(txn_id: &str, events: &[InboundEvent]) -> u64 {
    let mut hasher = DefaultHasher::new();
    txn_id.hash(&mut hasher);
    for event in events {
        event.event_id().hash(&mut hasher);
    }
    hasher.finish()
}

/// Foyer claims no users besides its bot, which the homeserver already knows.
pub(super) async fn query_user(Path(_user_id): Path<String>) -> Response {
    error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "Foyer provides no users")
}

/// Rooms exist once their reservation opens; until then the alias is unknown.
fn membership_fact(event: &InboundEvent, bot: &ruma::UserId) -> Option<MembershipFact> {
    let InboundEvent::Member(member) = event else { return None };
    let membership = Membership::of(&member.content.membership)?;
    // A knock may carry a claim code in its reason (docs/fans-without-matrix-id.md); a typo or no code
    // leaves it an ordinary knock, answered by who holds a ticket.
    let knock_claim = (membership == Membership::Knock)
        .then(|| member.content.reason.as_deref().and_then(ClaimCode::find_in))
        .flatten()
        .and_then(Result::ok)
        .map(|code| code.hash());
    (member.user_id != bot).then(|| MembershipFact {
        event_id: member.event_id.to_string(),
        room_id: member.room_id.to_string(),
        user_id: member.user_id.clone(),
        membership,
        sender: member.sender.to_string(),
        display_name: member_name(member.content.displayname.as_deref()),
        knock_claim,
        reason: matches!(membership, Membership::Ban | Membership::Leave)
            .then(|| member.content.reason.clone())
            .flatten(),
    })
}

/// The longest member name kept, in characters: Synapse allows 256 bytes of it.
const MAX_MEMBER_NAME_CHARS: usize = 256;

/// A member event's `displayname` as the store keeps it: control characters removed,
/// trimmed, at most [`MAX_MEMBER_NAME_CHARS`]; `None` when nothing is left.
fn member_name(raw: Option<&str>) -> Option<String> {
    let cleaned: String = raw?.chars().filter(|c| !c.is_control()).take(MAX_MEMBER_NAME_CHARS).collect();
    let name = cleaned.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// A client resolved one of our aliases that does not exist (yet). If the reservation's
/// room should be open, open it now and answer 200 so the homeserver retries the lookup:
/// a holder who types the alias can knock at once. Answer fast: the client waits.
pub(super) async fn query_room_alias(State(state): State<AppState>, Path(alias): Path<String>) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "No such room");
    let (Some(id), Some(lifecycle)) = (state.config.reservation_of_alias(&alias), state.lifecycle.get()) else {
        return not_found();
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), lifecycle.open_now(&id)).await {
        Ok(Ok(true)) => Json(json!({})).into_response(),
        Ok(Ok(false)) => not_found(),
        Ok(Err(e)) => {
            tracing::warn!(reservation_id = %id, error = %e, "alias query failed");
            not_found()
        }
        Err(_) => not_found(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct PingBody {
    transaction_id: Option<String>,
}

pub(super) async fn ping(body: Bytes) -> Response {
    let parsed: PingBody = serde_json::from_slice(&body).unwrap_or_default();
    metrics::counter!("foyer_appservice_pings_total").increment(1);
    tracing::info!(transaction_id = parsed.transaction_id.as_deref().unwrap_or(""), "homeserver ping received");
    Json(json!({})).into_response()
}

/// A bounded set of recently accepted transaction keys, oldest forgotten first.
#[derive(Debug, Default)]
pub struct RecentTransactions {
    order: VecDeque<u64>,
    keys: HashSet<u64>,
    /// When the homeserver last sent a transaction (new or repeated).
    last_at: Option<std::time::Instant>,
}

impl RecentTransactions {
    pub fn last_at(&self) -> Option<std::time::Instant> {
        self.last_at
    }

    fn contains(&self, key: u64) -> bool {
        self.keys.contains(&key)
    }

    fn insert(&mut self, key: u64) {
        if self.keys.insert(key) {
            self.order.push_back(key);
            if self.order.len() > RECENT_TRANSACTIONS
                && let Some(old) = self.order.pop_front()
            {
                self.keys.remove(&old);
            }
        }
    }
}

/// This module's routes, one of the tables [`super::ROUTES`] lists: a route is added
/// here, beside its handler, and in `docs/openapi.yaml`.
#[rustfmt::skip]
pub(super) const ROUTES: &[super::Route] = super::route_table![Appservice:
    PUT "/_matrix/app/v1/transactions/{txn_id}" => transaction,
    GET "/_matrix/app/v1/users/{user_id}" => query_user,
    GET "/_matrix/app/v1/rooms/{room_alias}" => query_room_alias,
    POST "/_matrix/app/v1/ping" => ping,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_transactions_forget_the_oldest() {
        let mut recent = RecentTransactions::default();
        for key in 0..(RECENT_TRANSACTIONS as u64 + 1) {
            recent.insert(key);
        }
        assert!(!recent.contains(0));
        assert!(recent.contains(1));
        assert!(recent.contains(RECENT_TRANSACTIONS as u64));
    }

    #[test]
    fn an_event_whose_content_does_not_read_as_its_type_is_skipped_and_the_others_kept() {
        let event = |id: &str, kind: &str, content: serde_json::Value| {
            json!({"event_id": id, "room_id": "!r:x", "type": kind, "sender": "@a:x", "state_key": "@a:x",
                   "content": content})
        };
        let body = json!({"events": [
            event("$join", "m.room.member", json!({"membership": "join"})),
            event("$member-no-membership", "m.room.member", json!({"displayname": "A"})),
            event("$member-bad-membership", "m.room.member", json!({"membership": 5})),
            event("$member-no-content", "m.room.member", serde_json::Value::Null),
            event("$command", "m.room.message", json!({"msgtype": "m.text", "body": "!foyer help"})),
            event("$message-no-msgtype", "m.room.message", json!({"body": "!foyer help"})),
            event("$message-bad-body", "m.room.message", json!({"msgtype": "m.text", "body": 5})),
            json!({"event_id": "$bad-sender", "room_id": "!r:x", "type": "m.room.message", "sender": "a",
                   "content": {"msgtype": "m.text", "body": "!foyer help"}}),
            json!({"event_id": "$no-state-key", "room_id": "!r:x", "type": "m.room.member", "sender": "@a:x",
                   "content": {"membership": "join"}}),
            // A hostile field beside a well-formed membership: the membership is still seen.
            event("$leave", "m.room.member", json!({"membership": "leave", "displayname": 5, "reason": "bye"})),
            event("$topic", "m.room.topic", json!({"topic": 5})),
        ]});
        let text = body.to_string();
        let envelope = serde_json::from_slice::<TransactionBody<'_>>(text.as_bytes()).expect("a transaction");
        let events = inbound(&envelope.events);
        let kept: Vec<&str> = events.iter().map(InboundEvent::event_id).collect();
        assert_eq!(kept, ["$join", "$command", "$leave", "$topic"]);
        let InboundEvent::Member(leave) = &events[2] else { panic!("{:?}", events[2]) };
        assert_eq!(
            membership_fact(&events[2], ruma::user_id!("@foyer:x")).map(|f| f.membership),
            Some(Membership::Leave)
        );
        assert_eq!(leave.content.reason.as_deref(), Some("bye"));
        let fact = membership_fact(&events[2], ruma::user_id!("@foyer:x")).expect("a fact");
        assert_eq!(fact.reason.as_deref(), Some("bye"), "a leave's reason is kept: a kick's or an unban's");
        let knock = InboundEvent::from_json(json!({"event_id": "$k", "room_id": "!r:x", "type": "m.room.member",
            "sender": "@a:x", "state_key": "@a:x", "content": {"membership": "knock", "reason": "let me in"}}))
        .expect("a knock");
        let knock = membership_fact(&knock, ruma::user_id!("@foyer:x")).expect("a fact");
        assert_eq!(knock.reason, None, "never a knock's: it may hold a claim code");
        assert!(matches!(&events[1], InboundEvent::Message(m) if m.content.body() == "!foyer help"));
        assert!(matches!(&events[3], InboundEvent::Other(e) if e.type_label() == "m.room.topic"));
    }

    #[test]
    fn member_names_are_kept_bounded_without_control_characters() {
        assert_eq!(member_name(Some(" Alice\u{0}\n ")), Some("Alice".to_owned()));
        assert_eq!(member_name(Some("\u{7}\t")), None);
        assert_eq!(member_name(None), None);
        assert_eq!(member_name(Some(&"é".repeat(300))).map(|n| n.chars().count()), Some(MAX_MEMBER_NAME_CHARS));
    }

    #[test]
    fn same_txn_id_with_other_events_is_a_new_transaction() {
        let ev = |id: &str| {
            InboundEvent::from_json(json!({"event_id": id, "type": "m.room.message", "room_id": "!r:x",
                "sender": "@a:x", "content": {"msgtype": "m.text", "body": "hi"}}))
            .unwrap()
        };
        assert_eq!(transaction_key("1", &[ev("$a")]), transaction_key("1", &[ev("$a")]));
        assert_ne!(transaction_key("1", &[ev("$a")]), transaction_key("1", &[ev("$b")]));
        assert_ne!(transaction_key("1", &[ev("$a")]), transaction_key("2", &[ev("$a")]));
    }
}
