//! `POST /ingest/v1/owncast/{channel_id}`: Owncast's own webhooks, for the channel whose
//! reservations Owncast streams. `STREAM_STARTED` makes the channel's reservation whose
//! window holds now live, `STREAM_STOPPED` ends the live one; the rest is logged.
//!
//! The signature is checked as Owncast makes it, in owncast/owncast
//! `services/webhooks/auth.go` (commit 47279500c3c0b34da41c7c05167bc1cf9f44be17,
//! `generateSignature` and its `VerifySignature` example): the header
//! `owncast-signature: t=<unix seconds>.s=<hex HMAC-SHA256>`, keyed with the webhook's
//! secret as its UTF-8 bytes, over `<t>.<raw body>`; a `t` more than 300 s from now is
//! refused. The header's name is the one Owncast's docs give (owncast/owncast.github.io
//! `docs/api/webhooks.md`, "Verifying webhook requests", new in Owncast 0.3.0).

use axum::{
    Extension, Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::{
    http::{AppState, error, server::BodyBudget, webhooks::read_capped},
    model::{ReservationRecord, WebhookEvent},
    schedule,
    secret::Secret,
    store::{Outcome, Receipt},
};

/// The header Owncast puts its signature in.
pub const SIGNATURE_HEADER: &str = "owncast-signature";
/// Owncast's own replay window (`VerifySignature`): 300 seconds either way.
pub const TOLERANCE_SECONDS: i64 = 300;
/// The most reservations of one channel read around now; a channel has a handful.
const CANDIDATES: u32 = 50;
/// The longest a reservation may override `open_before` or `close_after` (docs/openapi.yaml).
const WEEK: Duration = Duration::days(7);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the owncast-signature header is missing")]
    Missing,
    #[error("the owncast-signature header is not t=<unix seconds>.s=<hex signature>")]
    Malformed,
    #[error("the owncast-signature timestamp is {0} seconds away from now, beyond 300")]
    OutsideTolerance(i64),
    #[error("the signature does not match this channel's secret")]
    NoMatch,
}

/// Checks Owncast's signature of `body` with the channel's secret.
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &Secret, now: DateTime<Utc>) -> Result<(), SignatureError> {
    check_header(headers, now)?.verify(body, secret)
}

/// The `owncast-signature` header, read and checked as far as it can be without the body.
#[derive(Debug)]
pub struct SignatureHeader<'h> {
    t: &'h str,
    given: Vec<u8>,
}

impl SignatureHeader<'_> {
    /// Whether the signature is the body's under the channel's secret.
    pub fn verify(&self, body: &[u8], secret: &Secret) -> Result<(), SignatureError> {
        // verify_slice compares in constant time.
        mac(secret, self.t, body).verify_slice(&self.given).map_err(|_| SignatureError::NoMatch)
    }
}

/// Checks what the header alone can tell: present, well formed, a timestamp within 300 s.
/// Run before the body is read, so that a sender who cannot even get this right is
/// refused before Foyer buffers its body.
pub fn check_header(headers: &HeaderMap, now: DateTime<Utc>) -> Result<SignatureHeader<'_>, SignatureError> {
    let value = headers.get(SIGNATURE_HEADER).ok_or(SignatureError::Missing)?;
    let value = value.to_str().map_err(|_| SignatureError::Malformed)?;
    // As Owncast's `VerifySignature`: parts split on `.`, each `key=value`; `t` and `s`.
    let (mut t, mut s) = (None, None);
    for part in value.split('.') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("s", v)) => s = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(s)) = (t, s) else { return Err(SignatureError::Malformed) };
    if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    let seconds: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
    let skew = now.timestamp() - seconds;
    if skew.abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::OutsideTolerance(skew));
    }
    let Some(given) = from_hex(s) else { return Err(SignatureError::Malformed) };
    Ok(SignatureHeader { t, given })
}

/// The header value Owncast would send for `body` at `timestamp`; for tests and tools.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    format!("t={t}.s={}", to_hex(&mac(secret, &t, body).finalize().into_bytes()))
}

fn mac(secret: &Secret, t: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower- or upper-case hex; `None` for anything else (or an odd length).
fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// The Owncast events Foyer acts on; the rest are logged and answered 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Started,
    Stopped,
    TitleUpdated,
    Other,
}

impl Kind {
    fn parse(kind: &str) -> Self {
        match kind {
            "STREAM_STARTED" => Self::Started,
            "STREAM_STOPPED" => Self::Stopped,
            "STREAM_TITLE_UPDATED" => Self::TitleUpdated,
            _ => Self::Other,
        }
    }

    /// A bounded label for metrics.
    fn label(self) -> &'static str {
        match self {
            Self::Started => "stream_started",
            Self::Stopped => "stream_stopped",
            Self::TitleUpdated => "stream_title_updated",
            Self::Other => "other",
        }
    }
}

/// What Foyer needs of an Owncast webhook body: `{"type": ..., "eventData": {"id": ...}}`.
#[derive(Debug)]
struct Event {
    kind: Kind,
    /// The event's type as sent, for the log line (at most 64 characters kept).
    sent_type: String,
    /// Owncast's id of this event (`eventData.id`), so a redelivery is recorded once.
    id: Option<String>,
}

fn parse(body: &[u8]) -> Result<Event, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let sent_type = value.get("type").and_then(Value::as_str).ok_or("type: is missing or not a string")?;
    if sent_type.is_empty() {
        return Err("type: is empty".into());
    }
    let id = value
        .get("eventData")
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned);
    Ok(Event { kind: Kind::parse(sent_type), sent_type: sent_type.chars().take(64).collect(), id })
}

type Answer = (&'static str, Response);

pub async fn receive(
    State(state): State<AppState>, Extension(budget): Extension<BodyBudget>, Path(channel_id): Path<String>,
    headers: HeaderMap, body: Body,
) -> Response {
    let mut kind = "unknown";
    let (result, response) = match receive_inner(&state, &budget, &channel_id, &headers, body, &mut kind).await {
        Ok(answer) | Err(answer) => answer,
    };
    metrics::counter!("foyer_ingest_owncast_total", "event" => kind, "result" => result).increment(1);
    response
}

async fn receive_inner(
    state: &AppState, budget: &BodyBudget, channel_id: &str, headers: &HeaderMap, body: Body, kind: &mut &'static str,
) -> Result<Answer, Answer> {
    let refuse = |result: &'static str, e: String| (result, error(StatusCode::UNAUTHORIZED, "FOYER_BAD_SIGNATURE", e));
    // The channel id is in the path; it is logged only once its secret proved the sender.
    let Some(secret) = state.config.ingest.owncast.get(channel_id) else {
        tracing::warn!("Owncast webhook refused: no ingest.owncast secret for its channel");
        return Err(refuse(
            "unknown_channel",
            "no Owncast secret is configured for this channel (ingest.owncast)".into(),
        ));
    };
    let now = Utc::now();
    let bad_signature = |e: SignatureError| {
        tracing::warn!(channel_id, error = %e, "Owncast webhook refused: bad signature");
        refuse("bad_signature", e.to_string())
    };
    // What the header alone can prove, before a byte of the body is buffered.
    let signature = check_header(headers, now).map_err(bad_signature)?;
    let bytes = read_capped(body, super::MAX_BODY_BYTES, budget).await.map_err(|e| e.answer())?;
    signature.verify(&bytes, secret).map_err(bad_signature)?;
    let event = parse(&bytes).map_err(|e| {
        tracing::info!(channel_id, error = %e, "Owncast webhook refused: bad payload");
        ("bad_payload", error(StatusCode::BAD_REQUEST, "FOYER_BAD_PAYLOAD", e))
    })?;
    *kind = event.kind.label();
    match event.kind {
        Kind::Started => stream_changed(state, channel_id, &event, &bytes, now, on_air).await,
        Kind::Stopped => stream_changed(state, channel_id, &event, &bytes, now, off_air).await,
        Kind::TitleUpdated => {
            tracing::info!(channel_id, "Owncast stream title updated: ignored, the platform owns the title");
            Ok(("ignored", status(StatusCode::OK, "ignored")))
        }
        Kind::Other => {
            tracing::info!(channel_id, owncast_type = event.sent_type, "Owncast webhook ignored: not a stream event");
            Ok(("ignored", status(StatusCode::OK, "ignored")))
        }
    }
}

fn status(code: StatusCode, status: &str) -> Response {
    (code, Json(json!({"status": status}))).into_response()
}

fn unavailable(e: crate::store::StoreError, channel_id: &str) -> Answer {
    tracing::error!(channel_id, error = %e, "Owncast webhook not stored");
    (
        "unavailable",
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "FOYER_UNAVAILABLE",
            "the database cannot store the event now; retry later",
        ),
    )
}

/// The channel's reservations whose window `[opens_at, archives_at)` holds `now`, not
/// cancelled and not archived, with their times.
async fn in_window(
    state: &AppState, channel_id: &str, now: DateTime<Utc>,
) -> Result<Vec<(ReservationRecord, schedule::Schedule)>, Answer> {
    let rooms = &state.config.rooms;
    let std = |d: std::time::Duration| Duration::from_std(d).unwrap_or(Duration::MAX);
    // Bounds wide enough for any reservation's window: the longest lead time, and the
    // longest tail (overrun then close_after). `schedule` decides exactly below.
    let starts_by = now + std(rooms.open_before).max(WEEK);
    let ends_from = now - std(rooms.max_overrun) - std(rooms.close_after).max(WEEK);
    let records = state
        .store
        .channel_reservations(channel_id, starts_by, ends_from, CANDIDATES)
        .await
        .map_err(|e| unavailable(e, channel_id))?;
    Ok(records
        .into_iter()
        .filter(|r| r.signals.cancelled_at.is_none() && !r.archived)
        .filter_map(|r| {
            let times = schedule::schedule(&r, rooms);
            (times.opens_at <= now && now < times.archives_at).then_some((r, times))
        })
        .collect())
}

/// Owncast's id of the event, or (without one) a digest of the body: the receipt's key,
/// so the same delivery twice is recorded once.
fn receipt_id(channel_id: &str, event: &Event, body: &[u8], reservation: &str) -> String {
    let id = event.id.clone().unwrap_or_else(|| to_hex(&Sha256::digest(body)));
    format!("owncast:{channel_id}:{}:{id}:{reservation}", event.kind.label())
}

/// What a start or a stop records, read from the channel's reservations in their window
/// now: the events to store, or (nothing to record) the status to answer with.
type Changes =
    fn(&str, Vec<(ReservationRecord, schedule::Schedule)>, DateTime<Utc>) -> Result<Vec<WebhookEvent>, &'static str>;

/// A stream started or stopped: what `changes` says it changed recorded, each event under
/// its own receipt.
async fn stream_changed(
    state: &AppState, channel_id: &str, event: &Event, body: &[u8], now: DateTime<Utc>, changes: Changes,
) -> Result<Answer, Answer> {
    let candidates = in_window(state, channel_id, now).await?;
    let stored = match changes(channel_id, candidates, now) {
        Ok(stored) => stored,
        Err(nothing) => return Ok((nothing, status(StatusCode::OK, nothing))),
    };
    let mut answer = None;
    for stored in stored {
        let webhook_id = receipt_id(channel_id, event, body, stored.subject());
        answer = Some(record_event(state, channel_id, &webhook_id, &stored, now).await?);
    }
    Ok(answer.expect("at least one reservation"))
}

/// A start: the show going on air, unless it is live already.
fn on_air(
    channel_id: &str, candidates: Vec<(ReservationRecord, schedule::Schedule)>, now: DateTime<Utc>,
) -> Result<Vec<WebhookEvent>, &'static str> {
    // Two windows may overlap (one show's room closing while the next opens): the one
    // whose start is nearest to now is the show going on air.
    let Some((record, times)) = candidates.into_iter().min_by_key(|(r, _)| (r.reservation.starts_at - now).abs())
    else {
        tracing::info!(
            channel_id,
            "Owncast stream started, but no reservation of this channel is in its window now: nothing recorded"
        );
        return Err("no_reservation");
    };
    if times.live {
        // Already live: a second start would post a second live notice.
        tracing::info!(
            channel_id,
            reservation_id = record.reservation.id.as_str(),
            "Owncast stream started: the reservation is live already, nothing recorded"
        );
        return Err("duplicate");
    }
    Ok(vec![WebhookEvent::StreamStarted { id: record.reservation.id, at: now }])
}

/// A stop: the end of whatever of the channel is live.
fn off_air(
    channel_id: &str, candidates: Vec<(ReservationRecord, schedule::Schedule)>, now: DateTime<Utc>,
) -> Result<Vec<WebhookEvent>, &'static str> {
    // One Owncast server sends one stream: whatever of its channel is live has ended.
    let ended: Vec<_> = candidates
        .into_iter()
        .filter(|(_, t)| t.live)
        .map(|(r, _)| WebhookEvent::StreamEnded { id: r.reservation.id, at: now })
        .collect();
    if ended.is_empty() {
        tracing::info!(
            channel_id,
            "Owncast stream stopped, but no reservation of this channel is live: nothing recorded"
        );
        return Err("not_live");
    }
    Ok(ended)
}

async fn record_event(
    state: &AppState, channel_id: &str, webhook_id: &str, event: &WebhookEvent, now: DateTime<Utc>,
) -> Result<Answer, Answer> {
    let receipt = Receipt { webhook_id, received_at: now };
    let outcome = state.store.record_webhook(&receipt, event).await.map_err(|e| unavailable(e, channel_id))?;
    let reservation_id = event.subject();
    let answer = match outcome {
        Outcome::Accepted => {
            state.wake.notify_one();
            ("accepted", status(StatusCode::ACCEPTED, "accepted"))
        }
        Outcome::Duplicate | Outcome::Stale | Outcome::Closed => ("duplicate", status(StatusCode::OK, "duplicate")),
    };
    tracing::info!(channel_id, reservation_id, kind = event.kind(), outcome = answer.0, "Owncast webhook stored");
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(value).unwrap());
        h
    }

    /// The example from Owncast's `auth.go`, computed independently: HMAC-SHA256 keyed
    /// with the secret's bytes over `<t>.<body>`, hex.
    #[test]
    fn signs_as_owncast_signs() {
        let secret = Secret::new("s3cret");
        let body = br#"{"type":"STREAM_STARTED","eventData":{"id":"WtokptnVR"}}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"1718400000.");
        mac.update(body);
        let expected = format!("t=1718400000.s={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sign(&secret, 1_718_400_000, body), expected);
    }

    #[test]
    fn accepts_its_own_signature_and_refuses_every_tampering() {
        let now = Utc::now();
        let secret = Secret::new("s3cret");
        let body = br#"{"type":"STREAM_STARTED"}"#;
        let good = sign(&secret, now.timestamp(), body);
        assert_eq!(verify(&headers(&good), body, &secret, now), Ok(()));
        // Spaces around the parts, as Owncast's example trims them.
        assert_eq!(verify(&headers(&good.replace('.', " . ")), body, &secret, now), Ok(()));
        assert_eq!(verify(&headers(&good), b"{}", &secret, now), Err(SignatureError::NoMatch));
        assert_eq!(verify(&headers(&good), body, &Secret::new("other"), now), Err(SignatureError::NoMatch));
        let old = sign(&secret, now.timestamp() - 301, body);
        assert_eq!(verify(&headers(&old), body, &secret, now), Err(SignatureError::OutsideTolerance(301)));
        assert_eq!(verify(&HeaderMap::new(), body, &secret, now), Err(SignatureError::Missing));
        let not_hex = format!("t={}.s=zz", now.timestamp());
        for bad in ["", not_hex.as_str(), "s=00", "t=abc.s=00", "v1,abc"] {
            assert_eq!(verify(&headers(bad), body, &secret, now), Err(SignatureError::Malformed), "{bad}");
        }
    }

    #[test]
    fn reads_the_type_and_owncasts_event_id() {
        let e = parse(br#"{"type":"STREAM_STOPPED","eventData":{"id":"YP-aptn4g","name":"Owncast"}}"#).unwrap();
        assert_eq!((e.kind, e.id.as_deref()), (Kind::Stopped, Some("YP-aptn4g")));
        assert_eq!(parse(br#"{"type":"CHAT","eventData":{}}"#).unwrap().kind, Kind::Other);
        assert!(parse(b"[]").unwrap_err().contains("type"));
        assert!(parse(b"nope").unwrap_err().contains("not JSON"));
    }
}
