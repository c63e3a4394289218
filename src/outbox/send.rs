//! The outbox's sender: delivers each row to `platform.webhook_url`, signed per Standard
//! Webhooks, in order per reservation, and never in the lifecycle's way (the lifecycle
//! only writes rows; this task alone waits for the platform).
//!
//! Rows are leased like the lifecycle's reservations, so that several instances on one
//! PostgreSQL database never send one row at once. A row whose lease runs out (its
//! instance died mid-send) is sent again with the same `webhook-id`: the receiver
//! dedupes by it.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use reqwest::StatusCode;
use sha2::Sha256;
use tokio::sync::{Notify, watch};

use crate::config::{PlatformConfig, WebhookKey};

/// What the sender needs of a store. Declared here and implemented by the store (whose
/// `Store` has it as a supertrait), so that the store, which writes outbound events,
/// and the outbox, which reads them back, do not import each other.
#[async_trait]
pub trait Outbox: Send + Sync {
    type Error: std::fmt::Display + Send;

    /// Leases up to `limit` rows due at `now` to `owner` for `lease`: the oldest
    /// undelivered row of each reservation (a later one waits for it), none while
    /// delivery is paused. Several instances never hold one row at once.
    async fn claim_outbox(
        &self, now: DateTime<Utc>, lease: Duration, limit: u32, owner: &str,
    ) -> Result<Vec<OutboxClaim>, Self::Error>;

    /// Records how a leased row's attempt went and ends the lease; a `410` also pauses
    /// every delivery. `false` when the lease was lost (ran out, another instance took
    /// the row): nothing is written.
    async fn finish_outbox(
        &self, claim: &OutboxClaim, result: &OutboxResult, now: DateTime<Utc>,
    ) -> Result<bool, Self::Error>;

    /// What the outbox holds undelivered, and whether delivery is paused.
    async fn outbox_status(&self) -> Result<OutboxStatus, Self::Error>;

    /// Ends a pause (`!foyer outbox resume`): the rows a `410` stopped are due at `now`.
    /// Returns whether delivery was paused.
    async fn resume_outbox(&self, now: DateTime<Utc>) -> Result<bool, Self::Error>;
}

/// An outbox row a sender holds a lease on, with what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxClaim {
    pub seq: i64,
    /// The `webhook-id`, the same on every attempt.
    pub event_id: String,
    pub reservation_id: String,
    pub kind: String,
    /// The body, sent byte for byte as stored.
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub owner: String,
}

/// How one attempt at an outbox row went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxResult {
    /// A `2xx`.
    Delivered,
    /// A network error, `429` or `5xx`: tried again at `at`.
    Retry { at: DateTime<Utc>, error: String },
    /// Retries spent: given up.
    Failed { error: String },
    /// Another `4xx`: the platform will never take it.
    Dropped { error: String },
    /// `410 Gone`: kept, and every delivery paused until an admin resumes it.
    Paused { error: String },
}

/// The outbox at a glance, for the status page, `!foyer outbox` and the gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStatus {
    /// Rows not delivered, dropped or failed yet (pending or paused).
    pub depth: u64,
    /// When the oldest of them was written.
    pub oldest: Option<DateTime<Utc>>,
    /// A `410` paused delivery and no admin has resumed it yet.
    pub paused: bool,
}

/// The platform gets this long to answer one event.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Covers one round of sends with their timeout, with room to spare: a lease that runs
/// out while its instance still waits for an answer would let another send the row too.
const LEASE: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Rows leased per round, each of a different reservation, sent at once.
const BATCH: u32 = 16;

/// The Standard Webhooks schedule: the waits after the 1st, 2nd... failed attempt. After
/// the last one's attempt fails too, the event is given up.
pub const SCHEDULE: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];
/// How far a wait may stray from the schedule, either way, so that the retries of many
/// events that failed together (the platform was down) do not all come back at once.
pub const JITTER: f64 = 0.1;

/// The wait before the next attempt, after `failed` attempts have failed (1 for the
/// first), or `None` when the schedule is spent. `jitter` in `[-1, 1]` moves it by up to
/// [`JITTER`] of itself; `scale` multiplies it (1 but in tests, see [`retry_scale`]).
pub fn retry_delay(failed: u32, jitter: f64, scale: f64) -> Option<Duration> {
    let base = SCHEDULE.get(usize::try_from(failed.checked_sub(1)?).ok()?)?;
    let factor = (1.0 + jitter.clamp(-1.0, 1.0) * JITTER) * scale.max(0.0);
    Some(base.mul_f64(factor))
}

/// `FOYER_OUTBOX_RETRY_SCALE` (a factor, like `0.001`): tests that watch an event be
/// retried cannot wait the schedule's minutes and hours, and the schedule is the
/// contract's, not something an operator should tune. Unset (or not a positive number),
/// the schedule is as written.
fn retry_scale() -> f64 {
    std::env::var("FOYER_OUTBOX_RETRY_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(1.0)
}

/// What an answer (or its absence: a network error, a timeout) means for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry,
    Pause,
    Drop,
}

impl Verdict {
    pub fn of(status: Option<StatusCode>) -> Self {
        match status {
            Some(s) if s.is_success() => Self::Delivered,
            Some(StatusCode::GONE) => Self::Pause,
            Some(StatusCode::TOO_MANY_REQUESTS) => Self::Retry,
            // Other 4xx: the platform says it will never take this event.
            Some(s) if s.is_client_error() => Self::Drop,
            // No answer, 5xx, and answers that make no sense here (1xx, 3xx: redirects
            // are not followed, a signed body is not resent elsewhere).
            _ => Self::Retry,
        }
    }
}

/// The `foyer_outbox_events_total` results, shown at zero from the start.
const RESULTS: [&str; 5] = ["delivered", "retried", "dropped", "failed", "paused"];

/// Shows the outbox's families from the start (at zero), sender or not, so that a
/// dashboard finds them before the first event.
pub fn register_metrics() {
    for kind in super::EventType::ALL.map(super::EventType::as_str) {
        for result in RESULTS {
            metrics::counter!("foyer_outbox_events_total", "type" => kind, "result" => result).increment(0);
        }
    }
    metrics::gauge!("foyer_outbox_depth").set(0.0);
    metrics::gauge!("foyer_outbox_oldest_age_seconds").set(0.0);
}

/// Sends until `stop`. `instance` names this process's leases. `wake` is notified when
/// an event is written to the outbox, or delivery resumed; the sender also looks every
/// [`POLL_EVERY`], for writes from other instances and retries falling due.
pub async fn run<O: Outbox + ?Sized>(
    store: Arc<O>, platform: PlatformConfig, instance: String, wake: Arc<Notify>, mut stop: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("foyer/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the outbox's HTTP client; outbound events are not sent");
            return;
        }
    };
    let sender = Sender { store, platform, client, owner: instance, scale: retry_scale() };
    tracing::info!(url = %sender.platform.webhook_url.origin().ascii_serialization(), "outbox sender started");
    loop {
        let full = match sender.round().await {
            Ok(claimed) => claimed == BATCH as usize,
            Err(e) => {
                tracing::warn!(error = %e, "the outbox cannot be read; trying again");
                false
            }
        };
        sender.publish_gauges().await;
        if full {
            continue; // more may be due now
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

struct Sender<O: ?Sized> {
    store: Arc<O>,
    platform: PlatformConfig,
    client: reqwest::Client,
    owner: String,
    scale: f64,
}

impl<O: Outbox + ?Sized> Sender<O> {
    /// Leases what is due and sends it, each reservation's row at once; returns how many.
    async fn round(&self) -> Result<usize, O::Error> {
        let claims = self.store.claim_outbox(Utc::now(), LEASE, BATCH, &self.owner).await?;
        let sent = futures_util::future::join_all(claims.iter().map(|claim| self.deliver(claim))).await;
        for result in sent {
            result?;
        }
        Ok(claims.len())
    }

    /// One attempt at one row, and its outcome recorded.
    async fn deliver(&self, claim: &OutboxClaim) -> Result<(), O::Error> {
        let status = self.post(claim).await;
        let now = Utc::now();
        let failed = claim.attempts + 1;
        let (error, verdict) = match &status {
            Ok(code) => (format!("HTTP {}", code.as_u16()), Verdict::of(Some(*code))),
            Err(e) => (e.clone(), Verdict::of(None)),
        };
        let result = match verdict {
            Verdict::Delivered => OutboxResult::Delivered,
            Verdict::Pause => OutboxResult::Paused { error },
            Verdict::Drop => OutboxResult::Dropped { error },
            Verdict::Retry => {
                let jitter = rand::random::<f64>() * 2.0 - 1.0;
                match retry_delay(failed, jitter, self.scale) {
                    Some(wait) => OutboxResult::Retry { at: later(now, wait), error },
                    None => OutboxResult::Failed { error },
                }
            }
        };
        if !self.store.finish_outbox(claim, &result, now).await? {
            tracing::warn!(
                event_id = %claim.event_id,
                "an outbound event's lease ran out while it was being sent; another attempt will follow"
            );
            return Ok(());
        }
        let (label, kind, rid, id) = (label(&result), claim.kind.as_str(), &claim.reservation_id, &claim.event_id);
        metrics::counter!("foyer_outbox_events_total", "type" => kind.to_owned(), "result" => label).increment(1);
        match &result {
            OutboxResult::Delivered => {
                tracing::info!(event_id = %id, event_type = kind, reservation_id = %rid, attempts = failed, "event delivered")
            }
            OutboxResult::Retry { at, error } => {
                tracing::warn!(event_id = %id, event_type = kind, reservation_id = %rid, attempts = failed, %error, retry_at = %at, "event not delivered; will retry")
            }
            OutboxResult::Failed { error } => {
                tracing::error!(event_id = %id, event_type = kind, reservation_id = %rid, attempts = failed, %error, "event not delivered after every retry; given up")
            }
            OutboxResult::Dropped { error } => {
                tracing::warn!(event_id = %id, event_type = kind, reservation_id = %rid, %error, "event refused by the platform; dropped")
            }
            OutboxResult::Paused { error } => {
                tracing::error!(event_id = %id, event_type = kind, reservation_id = %rid, %error, "the platform answered 410 Gone: every delivery is paused until `!foyer outbox resume`")
            }
        }
        Ok(())
    }

    /// POSTs the stored body, signed now; the answer's status, or why there was none.
    async fn post(&self, claim: &OutboxClaim) -> Result<StatusCode, String> {
        let timestamp = Utc::now().timestamp();
        let body = claim.payload.as_bytes();
        let signed = sign(&self.platform.webhook_secret, &claim.event_id, timestamp, body);
        let sent = self
            .client
            .post(self.platform.webhook_url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", claim.event_id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .body(claim.payload.clone())
            .send()
            .await;
        // Without the URL: it may carry a token of the platform's.
        sent.map(|answer| answer.status()).map_err(|e| {
            let why = if e.is_timeout() { "timed out" } else { "network error" };
            format!("{why}: {}", e.without_url())
        })
    }

    async fn publish_gauges(&self) {
        match self.store.outbox_status().await {
            Ok(status) => {
                metrics::gauge!("foyer_outbox_depth").set(status.depth as f64);
                let age = status.oldest.map_or(0.0, |at| (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0);
                metrics::gauge!("foyer_outbox_oldest_age_seconds").set(age);
            }
            Err(e) => tracing::debug!(error = %e, "outbox gauges not updated"),
        }
    }
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, as `http/webhooks/signature.rs`
/// checks the platform's events (mirrored, not imported: the outbox stays below `http`).
pub fn sign(key: &WebhookKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

fn label(result: &OutboxResult) -> &'static str {
    match result {
        OutboxResult::Delivered => "delivered",
        OutboxResult::Retry { .. } => "retried",
        OutboxResult::Dropped { .. } => "dropped",
        OutboxResult::Failed { .. } => "failed",
        OutboxResult::Paused { .. } => "paused",
    }
}

fn later(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_standard_webhooks_then_gives_up() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let hours = |h: u64| minutes(h * 60);
        let waits: Vec<_> = (1..=9).map(|n| retry_delay(n, 0.0, 1.0).unwrap()).collect();
        let expected = [
            Duration::from_secs(5),
            minutes(5),
            minutes(30),
            hours(2),
            hours(5),
            hours(10),
            hours(14),
            hours(20),
            hours(24),
        ];
        assert_eq!(waits, expected);
        assert_eq!(retry_delay(10, 0.0, 1.0), None, "after the 10th attempt fails, it is given up");
        assert_eq!(retry_delay(0, 0.0, 1.0), None, "no wait before a first attempt");
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_scale_shrinks_the_waits() {
        let five = Duration::from_secs(5);
        assert_eq!(retry_delay(1, 1.0, 1.0), Some(five.mul_f64(1.1)));
        assert_eq!(retry_delay(1, -1.0, 1.0), Some(five.mul_f64(0.9)));
        assert_eq!(retry_delay(1, 7.0, 1.0), Some(five.mul_f64(1.1)), "jitter beyond its range is clamped");
        for _ in 0..1000 {
            let wait = retry_delay(2, rand::random::<f64>() * 2.0 - 1.0, 1.0).unwrap();
            assert!((270.0..=330.0).contains(&wait.as_secs_f64()), "{wait:?}");
        }
        assert_eq!(retry_delay(2, 0.0, 0.001), Some(Duration::from_millis(300)));
    }

    #[test]
    fn events_are_signed_as_foyer_checks_the_platforms() {
        use axum::http::{HeaderMap, HeaderValue};
        let key = WebhookKey::new(vec![7; 32]);
        let (id, body, now) = ("msg_1", br#"{"type":"room.opened"}"#, Utc::now());
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        headers.insert("webhook-timestamp", HeaderValue::from_str(&now.timestamp().to_string()).unwrap());
        headers.insert("webhook-signature", HeaderValue::from_str(&sign(&key, id, now.timestamp(), body)).unwrap());
        let checked = crate::http::webhooks::signature::verify(&headers, body, &[key], Duration::from_secs(60), now);
        assert_eq!(checked, Ok("msg_1"));
    }

    #[test]
    fn answers_decide_delivered_retry_pause_or_drop() {
        let of = |code: u16| Verdict::of(Some(StatusCode::from_u16(code).unwrap()));
        assert_eq!(of(200), Verdict::Delivered);
        assert_eq!(of(204), Verdict::Delivered);
        assert_eq!(of(410), Verdict::Pause);
        assert_eq!(of(429), Verdict::Retry);
        assert_eq!(of(500), Verdict::Retry);
        assert_eq!(of(503), Verdict::Retry);
        assert_eq!(of(400), Verdict::Drop);
        assert_eq!(of(404), Verdict::Drop);
        assert_eq!(of(302), Verdict::Retry, "a redirect is not followed, and not taken as a refusal");
        assert_eq!(Verdict::of(None), Verdict::Retry, "no answer at all");
    }
}
