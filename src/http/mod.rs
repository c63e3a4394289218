//! The one listener: homeserver API, webhooks, read API, health and metrics.

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

use crate::{api, appservice, config::Config, intake, matrix::HandshakeReport, secret::Secret, store::Store};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Set once the start-up handshake has passed; `/health/ready` answers 200 from then on.
    pub ready: Arc<RwLock<Option<HandshakeReport>>>,
    pub transactions: Arc<std::sync::Mutex<appservice::RecentTransactions>>,
    pub metrics: PrometheusHandle,
    pub store: Arc<dyn Store>,
    /// Wakes the lifecycle worker after a webhook's facts are committed.
    pub wake: Arc<tokio::sync::Notify>,
    /// Set once the homeserver handshake has passed.
    pub lifecycle: Arc<std::sync::OnceLock<Arc<crate::lifecycle::Lifecycle>>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/_matrix/app/v1", appservice::router(state.clone()))
        .nest("/api/v1", api::router(state.clone()))
        .route("/webhooks/v1/events", axum::routing::post(intake::receive))
        .route("/health/live", get(|| async { Json(json!({"status": "live"})) }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics).layer(middleware::from_fn_with_state(state.clone(), require_api_token)))
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
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
            "bot": report.bot,
            "homeserver_versions": report.versions,
            "ping_ms": report.ping.map(|d| d.as_millis() as u64),
        }))
        .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "error": "the homeserver handshake has not completed yet"})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}
