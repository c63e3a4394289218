//! The listeners: the main one (homeserver API, webhooks, read API, pages, health and
//! metrics) and, with `appservice.homeserver_listen`, the homeserver's own (homeserver
//! API, health and metrics).

pub mod api;
pub mod appservice;
pub mod claim;
pub mod ingest;
pub mod server;
pub mod status;
pub mod transcript;
pub mod webhooks;

use std::sync::{Arc, RwLock};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::{build_info, config::Config, matrix::HandshakeReport, secret::Secret, store::Store};

/// Everything the handlers share, behind one `Arc`: every request clones it (the
/// `State` extractor and each middleware), and one reference count is cheaper to move
/// than ten.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub config: Arc<Config>,
    /// Set once the start-up handshake has passed; `/health/ready` answers 200 from then on.
    pub ready: Arc<RwLock<Option<HandshakeReport>>>,
    pub transactions: Arc<std::sync::Mutex<appservice::RecentTransactions>>,
    pub metrics: PrometheusHandle,
    pub store: Arc<dyn Store>,
    /// Wakes the lifecycle worker after a webhook's facts are committed.
    pub wake: Arc<tokio::sync::Notify>,
    /// Wakes the admin inbox after a transaction queued commands.
    pub admin_wake: Arc<tokio::sync::Notify>,
    /// Set once the homeserver handshake has passed.
    pub lifecycle: Arc<std::sync::OnceLock<Arc<crate::lifecycle::Lifecycle>>>,
    /// When `/metrics` last counted reservations by phase (a scan, so at most every 15 s).
    pub phases_counted_at: Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
    /// The webhook payload's rules from the config, made once (they derive a key).
    pub webhook_rules: webhooks::payload::Rules,
    /// Wrong claim codes of late, shared by knocks (here) and `!claim` (the admin inbox).
    pub claims: Arc<crate::admin::claim::Throttle>,
}

pub fn router(state: AppState, limits: &server::Limits) -> Router {
    Router::new()
        .nest("/_matrix/app/v1", appservice::router(state.clone()))
        .nest("/api/v1", api::router(state.clone()))
        .route("/webhooks/v1/events", axum::routing::post(webhooks::receive))
        .nest("/ingest/v1", ingest::router())
        .merge(status::router())
        .merge(claim::router())
        .route("/health/live", get(|| async { Json(json!({"status": "live"})) }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics).layer(middleware::from_fn_with_state(state.clone(), require_api_token)))
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        // Outside the routes, so that it also guards the fallbacks; inside the request
        // id, so that its refusals carry one.
        .layer(middleware::from_fn_with_state(server::Guard::new(limits), server::guard))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// The homeserver's own listener (`appservice.homeserver_listen`): only what the
/// homeserver and the operator's monitoring call, with its own in-flight permits, so
/// nothing on the main listener can hold what the homeserver's transactions need.
pub fn homeserver_router(state: AppState, limits: &server::Limits) -> Router {
    Router::new()
        .nest("/_matrix/app/v1", appservice::router(state.clone()))
        .route("/health/live", get(|| async { Json(json!({"status": "live"})) }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics).layer(middleware::from_fn_with_state(state.clone(), require_api_token)))
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(server::Guard::new(limits), server::guard))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Gives every request an id: the caller's `X-Request-Id` when it is a sane token,
/// otherwise a new one. Every log line of the request carries it (in the `request`
/// span), and the answer echoes it, so a platform can quote it in a support ticket.
async fn request_id(request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %logged_path(request.uri().path()));
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Ok(value) = header::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A request's path as logs show it: a claim code is as good as the ticket, so the
/// claim page's path is logged without it.
pub fn logged_path(path: &str) -> &str {
    if path.starts_with("/claim/") { "/claim/[code]" } else { path }
}

/// A JSON error in the Matrix shape, `{"errcode": ..., "error": ...}`.
pub fn error(status: StatusCode, errcode: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"errcode": errcode, "error": message.into()}))).into_response()
}

pub async fn unrecognized() -> Response {
    error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "Unrecognized request")
}

pub async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED", "Unrecognized request method")
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// Constant-time check of a bearer token against the expected secret.
pub fn has_token(headers: &HeaderMap, expected: &Secret) -> bool {
    bearer_token(headers).is_some_and(|t| expected.matches(t))
}

pub async fn require_api_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if has_token(request.headers(), &state.config.api.token) {
        return next.run(request).await;
    }
    let mut response =
        error(StatusCode::UNAUTHORIZED, "FOYER_UNAUTHORIZED", "send the api.token as Authorization: Bearer <token>");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

async fn ready(State(state): State<AppState>) -> Response {
    let report = state.ready.read().map(|r| r.clone()).unwrap_or(None);
    match report {
        Some(report) => Json(json!({
            "status": "ready",
            "version": build_info::VERSION,
            "commit": build_info::COMMIT,
            "bot": report.bot,
            "homeserver_versions": report.versions,
            "ping_ms": report.ping.map(|d| d.as_millis() as u64),
        }))
        .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "starting",
                "version": build_info::VERSION,
                "commit": build_info::COMMIT,
                "error": "the homeserver handshake has not completed yet",
            })),
        )
            .into_response(),
    }
}

/// How often `/metrics` recounts reservations by phase (which reads every reservation).
const PHASE_COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(last) = state.transactions.lock().ok().and_then(|t| t.last_at()) {
        metrics::gauge!("foyer_homeserver_last_transaction_age_seconds").set(last.elapsed().as_secs_f64());
    }
    {
        let mut counted_at = state.phases_counted_at.lock().await;
        if counted_at.is_none_or(|t| t.elapsed() >= PHASE_COUNT_EVERY) {
            match crate::query::phase_counts(state.store.as_ref(), &state.config.rooms, chrono::Utc::now()).await {
                Ok(counts) => {
                    for (phase, n) in counts {
                        metrics::gauge!("foyer_reservations", "phase" => phase.as_str()).set(n as f64);
                    }
                    *counted_at = Some(std::time::Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "cannot count reservations by phase for /metrics"),
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}
