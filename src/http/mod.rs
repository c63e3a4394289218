//! The listeners: the main one (homeserver API, webhooks, read API, pages, health and
//! metrics) and, with `appservice.homeserver_listen`, the homeserver's own (homeserver
//! API, health and metrics).

pub mod api;
pub mod appservice;
pub mod archive;
pub mod calendar;
pub mod claim;
pub mod ingest;
pub mod replay;
pub mod server;
pub mod status;
pub mod transcript;
pub mod webchat;
pub mod webhooks;

#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter, on},
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
    /// Wakes the redactor after a transaction queued messages that broke a rule.
    pub redactions: Arc<tokio::sync::Notify>,
    /// Set once the homeserver handshake has passed.
    pub lifecycle: Arc<std::sync::OnceLock<Arc<crate::lifecycle::Lifecycle>>>,
    /// When `/metrics` last counted reservations by phase (a scan, so at most every 15 s).
    pub phases_counted_at: Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
    /// The webhook payload's rules from the config, made once (they derive a key).
    pub webhook_rules: webhooks::payload::Rules,
    /// Wrong claim codes of late, shared by knocks (here) and `!claim` (the admin inbox).
    pub claims: Arc<crate::admin::claim::Throttle>,
    /// Wrong claim codes typed into the web chat, by the client's address.
    pub web_claims: Arc<crate::admin::claim::Throttle<std::net::IpAddr>>,
    /// The web chat's readers: one feed per reservation with streams on this instance.
    pub chat: Arc<webchat::hub::Hub>,
}

/// Which part of a listener a route belongs to. Each part is mounted under its prefix
/// with its own layers (`appservice::router` adds the hs_token check, `api::router` the
/// api.token check, `status::router` the page policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// `/_matrix/app/v1`: the homeserver's API, on both listeners.
    Appservice,
    /// `/api/v1`: the read API.
    Api,
    /// The platform's webhooks.
    Webhooks,
    /// `/ingest/v1`: the streaming servers' hooks.
    Ingest,
    /// The admin's status page.
    Status,
    /// The claim page.
    Claim,
    /// The chat beside the player: its page and the page's files.
    Webchat,
    /// The public archives, without auth.
    Archive,
    /// Calendar feeds: a channel's (behind `api.token` unless `calendar.public`) and a
    /// holder's own (its signed URL).
    Calendar,
    /// Health and metrics, on both listeners.
    Health,
}

impl Group {
    /// Where the group is mounted: its routes' paths start with it.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Appservice => "/_matrix/app/v1",
            Self::Api => "/api/v1",
            Self::Ingest => "/ingest/v1",
            Self::Webhooks
            | Self::Status
            | Self::Claim
            | Self::Webchat
            | Self::Archive
            | Self::Calendar
            | Self::Health => "",
        }
    }
}

/// One route Foyer serves: a method on a path (the full path, as `docs/openapi.yaml`
/// writes it), and its handler with the layers of this route alone.
pub struct Route {
    pub group: Group,
    pub method: Method,
    pub path: &'static str,
    handler: fn(MethodFilter, &AppState) -> MethodRouter<AppState>,
}

/// A module's table of routes, one line a route: `METHOD "path" => handler`, and
/// `[L]` after it for a layer of that route alone. The paths are whole, as
/// `docs/openapi.yaml` writes them.
macro_rules! route_table {
    ($group:ident: $($method:ident $path:literal => $handler:path $([$layer:expr])?),* $(,)?) => {
        &[$(crate::http::Route {
            group: crate::http::Group::$group,
            method: axum::http::Method::$method,
            path: $path,
            handler: |m, _| axum::routing::on(m, $handler) $(.layer($layer))?,
        }),*]
    };
}
pub(crate) use route_table;

/// The health and metrics routes (both listeners).
#[rustfmt::skip]
const HEALTH: &[Route] = &[
    Route { group: Group::Health, method: Method::GET, path: "/health/live", handler: |m, _| on(m, live) },
    Route { group: Group::Health, method: Method::GET, path: "/health/ready", handler: |m, _| on(m, ready) },
    Route { group: Group::Health, method: Method::GET, path: "/metrics", handler: |m, state| on(m, metrics).layer(middleware::from_fn_with_state(state.clone(), require_api_token)) },
];

/// Every route of every listener: each module's own table, and health's. The routers are
/// built from these tables alone, and a test holds `docs/openapi.yaml` to them: a route
/// added and not documented there (or the other way round) fails the test.
pub const ROUTES: &[&[Route]] = &[
    appservice::ROUTES,
    api::ROUTES,
    webhooks::ROUTES,
    ingest::ROUTES,
    status::ROUTES,
    claim::ROUTES,
    webchat::ROUTES,
    archive::ROUTES,
    calendar::ROUTES,
    HEALTH,
];

/// Every route, table after table.
pub fn all_routes() -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().flat_map(|table| table.iter())
}

/// The routes of `group` from [`ROUTES`], on paths relative to the group's prefix.
pub fn routes(group: Group, state: &AppState) -> Router<AppState> {
    all_routes().filter(|r| r.group == group).fold(Router::new(), |router, r| {
        let path = r.path.strip_prefix(group.prefix()).expect("a route's path starts with its group's prefix");
        let filter = MethodFilter::try_from(r.method.clone()).expect("a route's method is one axum routes");
        router.route(path, (r.handler)(filter, state))
    })
}

pub fn router(state: AppState, limits: &server::Limits) -> Router {
    let router = Router::new()
        .nest(Group::Appservice.prefix(), appservice::router(state.clone()))
        .nest(Group::Api.prefix(), api::router(state.clone()))
        .merge(routes(Group::Webhooks, &state))
        .nest(Group::Ingest.prefix(), ingest::router(&state))
        .merge(status::router(&state))
        .merge(claim::router(&state))
        .merge(routes(Group::Webchat, &state))
        .merge(routes(Group::Archive, &state))
        .merge(routes(Group::Calendar, &state))
        .merge(routes(Group::Health, &state));
    served(router, state, limits)
}

/// The homeserver's own listener (`appservice.homeserver_listen`): only what the
/// homeserver and the operator's monitoring call, with its own in-flight permits, so
/// nothing on the main listener can hold what the homeserver's transactions need.
pub fn homeserver_router(state: AppState, limits: &server::Limits) -> Router {
    let router = Router::new()
        .nest(Group::Appservice.prefix(), appservice::router(state.clone()))
        .merge(routes(Group::Health, &state));
    served(router, state, limits)
}

/// What every listener's routes share: the JSON fallbacks, the guard of requests in
/// flight (outside the routes, so that it also guards the fallbacks; inside the request
/// id, so that its refusals carry one), the request id.
fn served(router: Router<AppState>, state: AppState, limits: &server::Limits) -> Router {
    router
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

/// A request's path as logs show it: a claim code is as good as the ticket, and a
/// holder's feed token as good as their calendar, so neither page's path is logged
/// with it.
pub fn logged_path(path: &str) -> &str {
    if path.starts_with("/claim/") {
        "/claim/[code]"
    } else if path.starts_with(calendar::HOLDER_FEEDS) {
        "/calendar/holder/[token]"
    } else {
        path
    }
}

/// A JSON error in the Matrix shape, `{"errcode": ..., "error": ...}`.
pub fn error(status: StatusCode, errcode: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"errcode": errcode, "error": message.into()}))).into_response()
}

/// 503 for a read the database cannot answer now, logged with `what` read it (the read
/// API, a calendar feed).
pub(crate) fn store_unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}: store unavailable");
    error(StatusCode::SERVICE_UNAVAILABLE, "FOYER_UNAVAILABLE", "the database cannot be read now; retry later")
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
    unauthorized()
}

/// The answer to a request without the `api.token`.
pub fn unauthorized() -> Response {
    let mut response =
        error(StatusCode::UNAUTHORIZED, "FOYER_UNAUTHORIZED", "send the api.token as Authorization: Bearer <token>");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "live"}))
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
