//! `GET /claim/{code}`: the page a fan reaches from the link in their ticket's email
//! (docs/fans-without-matrix-id.md). Server-rendered, no script: it says which show the ticket is for, the
//! exact line to send the bot and where, and what to do without a Matrix account. A code
//! that does not work (unknown, revoked, archived, mistyped) gets one 404 page that
//! tells nothing about which codes exist.

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use chrono::Utc;

use crate::{config::Config, http::AppState, model::ClaimCode, words};

pub fn router(state: &AppState) -> Router<AppState> {
    super::routes(super::Group::Claim, state)
}

/// The claim page's Content-Security-Policy: it runs nothing, loads nothing, has no
/// form, and no other site may frame it (a framed page could be dressed up as another's
/// and its code read off by a fan).
pub const POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The code is in the URL: the page is neither cached, nor indexed, nor passed on as a
/// referrer; it runs nothing and loads nothing, and is never framed.
fn answer(status: StatusCode, body: String) -> Response {
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::HeaderName::from_static("x-robots-tag"), "noindex"),
        (header::CONTENT_SECURITY_POLICY, POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (status, headers, Html(body)).into_response()
}

fn not_found(config: &Config) -> Response {
    tracing::info!(result = "not_found", "claim page");
    metrics::counter!("foyer_claim_pages_total", "result" => "not_found").increment(1);
    answer(StatusCode::NOT_FOUND, words::claim::page_not_found(config))
}

pub(super) async fn page(State(state): State<AppState>, Path(code): Path<String>) -> Response {
    let config = &state.config;
    let Ok(code) = ClaimCode::parse(&code) else { return not_found(config) };
    let status = match state.store.claim_status(&code.hash()).await {
        Ok(Some(status)) => status,
        Ok(None) => return not_found(config),
        Err(e) => {
            tracing::error!(error = %e, "claim page: store unavailable");
            return answer(StatusCode::SERVICE_UNAVAILABLE, words::claim::page_unavailable());
        }
    };
    let record = state.store.reservation(&status.reservation_id).await.ok().flatten();
    let result = if status.holder.is_some() { "claimed" } else { "unclaimed" };
    tracing::info!(reservation_id = %status.reservation_id, result, "claim page");
    metrics::counter!("foyer_claim_pages_total", "result" => result).increment(1);
    let page =
        words::claim::page(config, &code, record.as_ref(), status.holder.as_ref().map(|h| h.as_str()), Utc::now());
    answer(StatusCode::OK, page)
}

/// This module's routes, one of the tables [`super::ROUTES`] lists: a route is added
/// here, beside its handler, and in `docs/openapi.yaml`.
#[rustfmt::skip]
pub(super) const ROUTES: &[super::Route] = super::route_table![Claim:
    GET "/claim/{code}" => page,
];
