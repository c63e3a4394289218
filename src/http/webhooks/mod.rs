//! `POST /webhooks/v1/events`: verify, validate, commit, answer. In that order, so a
//! rejected event changes nothing and a `2xx` means the event is durably stored.

pub mod expand;
pub mod payload;
pub mod signature;

use axum::{
    Extension,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;

use crate::{
    http::{AppState, error, server::BodyBudget},
    store::{Outcome, Receipt, StoreError, Windows},
};

/// Bodies over this size are refused before they are read in full.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How much of an oversized body is read and dropped before answering 413.
const DRAIN_BYTES: usize = 8 * 1024 * 1024;

pub async fn receive(
    State(state): State<AppState>, Extension(budget): Extension<BodyBudget>, headers: HeaderMap, body: Body,
) -> Response {
    let mut kind = "unknown";
    let result = receive_inner(&state, &budget, &headers, body, &mut kind).await;
    let (label, response) = match result {
        Ok((outcome, response)) => (outcome, response),
        Err((label, response)) => (label, response),
    };
    metrics::counter!("foyer_webhooks_total", "type" => kind, "result" => label).increment(1);
    response
}

type Answer = (&'static str, Response);

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the body is over {0} bytes")]
    TooLarge(usize),
    /// The bytes buffered across all requests are at their budget (`http/server.rs`).
    #[error("Foyer is busy reading other requests' bodies; retry in a moment")]
    Busy,
    /// The sender went away, or its body missed its deadline (`http/server.rs`).
    #[error("the body could not be read in full: {0}")]
    Incomplete(axum::Error),
}

impl BodyError {
    /// The answer to a body not read: 413, 503 (with `Retry-After`) or 400, and the
    /// metrics' result label.
    pub(crate) fn answer(&self) -> Answer {
        match self {
            BodyError::TooLarge(_) => {
                ("too_large", error(StatusCode::PAYLOAD_TOO_LARGE, "FOYER_TOO_LARGE", self.to_string()))
            }
            BodyError::Busy => {
                let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "FOYER_UNAVAILABLE", self.to_string());
                response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                // The rest of the body is not read: the connection cannot be used again.
                response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
                ("busy", response)
            }
            // A broken chunked body; a sender that went away reads no answer, and one
            // whose body missed its deadline gets the 408 that replaces this one.
            BodyError::Incomplete(_) => {
                ("incomplete", error(StatusCode::BAD_REQUEST, "FOYER_BAD_PAYLOAD", self.to_string()))
            }
        }
    }
}

/// A body read in full, and its share of the [`BodyBudget`], given back when dropped.
pub(crate) struct Buffered {
    pub bytes: bytes::Bytes,
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::ops::Deref for Buffered {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads at most `limit` bytes, each taken from `budget` as it arrives: over the budget,
/// [`BodyError::Busy`] at once, whatever the body declared. The rest of an oversized
/// body is read and dropped (up to [`DRAIN_BYTES`], for a few seconds), so the sender,
/// still writing, gets the 413 instead of a reset connection. (A body that declares its
/// size is refused before it is read, in `http/server.rs`; this catches chunked ones.)
pub(crate) async fn read_capped(body: Body, limit: usize, budget: &BodyBudget) -> Result<Buffered, BodyError> {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut kept = bytes::BytesMut::new();
    let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Incomplete)?;
        if kept.len() + chunk.len() > limit {
            let drain = async {
                let mut drained = 0usize;
                while let Some(Ok(chunk)) = stream.next().await {
                    drained += chunk.len();
                    if drained > DRAIN_BYTES {
                        break;
                    }
                }
            };
            drop(held);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
            return Err(BodyError::TooLarge(limit));
        }
        let Some(permit) = budget.take(chunk.len()) else {
            metrics::counter!("foyer_http_refused_total", "reason" => "body_budget").increment(1);
            return Err(BodyError::Busy);
        };
        match &mut held {
            Some(held) => held.merge(permit),
            None => held = Some(permit),
        }
        kept.extend_from_slice(&chunk);
    }
    Ok(Buffered { bytes: kept.freeze(), _held: held })
}

/// Answers one webhook; `kind` becomes its event type once the payload is read.
async fn receive_inner(
    state: &AppState, budget: &BodyBudget, headers: &HeaderMap, body: Body, kind: &mut &'static str,
) -> Result<Answer, Answer> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err((
            "bad_content_type",
            error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "FOYER_BAD_CONTENT_TYPE",
                "Content-Type must be application/json",
            ),
        ));
    }
    let now = Utc::now();
    let webhooks = &state.config.webhooks;
    let bad_signature = |e: signature::SignatureError| {
        tracing::warn!(error = %e, "webhook refused: bad signature");
        ("bad_signature", error(StatusCode::UNAUTHORIZED, "FOYER_BAD_SIGNATURE", e.to_string()))
    };
    // What the headers alone can prove, before a byte of the body is buffered.
    let signed = signature::check_headers(headers, webhooks.tolerance, now).map_err(bad_signature)?;
    let bytes = read_capped(body, MAX_BODY_BYTES, budget).await.map_err(|e| e.answer())?;
    let webhook_id = signed.verify(&bytes, &webhooks.secrets).map_err(bad_signature)?;
    let (sent, event) = payload::parse_typed(&bytes, now, &state.webhook_rules).map_err(|e| {
        tracing::info!(webhook_id, error = %e, "webhook refused: bad payload");
        ("bad_payload", error(StatusCode::BAD_REQUEST, "FOYER_BAD_PAYLOAD", e.to_string()))
    })?;
    *kind = sent;

    let receipt = Receipt { webhook_id, received_at: now };
    let windows = Windows::of_config(&state.config.rooms);
    let outcome = state.store.record_webhook_within(&receipt, &event, windows).await.map_err(|e| match e {
        StoreError::Refused { .. } => {
            tracing::info!(webhook_id, error = %e, "webhook refused: bad payload");
            ("bad_payload", error(StatusCode::BAD_REQUEST, "FOYER_BAD_PAYLOAD", e.to_string()))
        }
        e => unavailable(webhook_id, &e),
    })?;
    let reservation_id = event.subject();
    let answer = match outcome {
        Outcome::Accepted => {
            state.wake.notify_one();
            ("accepted", status(StatusCode::ACCEPTED, r#"{"status":"accepted"}"#))
        }
        Outcome::Duplicate => ("duplicate", status(StatusCode::OK, r#"{"status":"duplicate"}"#)),
        Outcome::Stale => ("stale", status(StatusCode::OK, r#"{"status":"stale"}"#)),
        Outcome::Closed => ("closed", status(StatusCode::OK, r#"{"status":"closed"}"#)),
    };
    tracing::info!(webhook_id, kind = sent, reservation_id, outcome = answer.0, "webhook stored");
    Ok(answer)
}

/// A stored webhook's answer: its JSON is fixed, so it is written once, not built.
fn status(code: StatusCode, json: &'static str) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The answer when the database cannot store an event now: the sender retries.
fn unavailable(webhook_id: &str, e: &StoreError) -> Answer {
    tracing::error!(webhook_id, error = %e, "webhook not stored");
    (
        "unavailable",
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "FOYER_UNAVAILABLE",
            "the database cannot store the event now; retry later",
        ),
    )
}

/// This module's routes, one of the tables [`super::ROUTES`] lists: a route is added
/// here, beside its handler, and in `docs/openapi.yaml`.
#[rustfmt::skip]
pub(super) const ROUTES: &[super::Route] = super::route_table![Webhooks:
    POST "/webhooks/v1/events" => receive,
];
