//! The public archive (docs/replay.md, "Public archive"): a show whose platform chose
//! `chat.archive: "public"` before its room opened is readable without auth once the
//! room is archived, for as long as its transcript is kept: `GET /archive/{id}` (a
//! page), `/archive/{id}/replay.json` and `/archive/{id}/replay.vtt` (the replay's
//! bodies, `http::replay`). Names only, never Matrix IDs; a member who sent
//! `!foyer anonymous` is "a fan". `DELETE /api/v1/reservations/{id}/archive` takes it
//! down. Whatever is not public now (private, not archived yet, taken down, unknown)
//! gets the same 404, so the answer tells nothing about which reservations exist.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;

use super::{
    AppState, error,
    replay::{self, Format, ReplayError},
};
use crate::{
    html,
    model::{ReservationId, ReservationRecord, replay::ReplayLine},
    store::StoreError,
    words,
};

/// The reservation whose archive is public now, or the answer: the same 404 for any
/// reservation whose archive is not.
async fn published(state: &AppState, id: &str) -> Result<(ReservationId, ReservationRecord), Response> {
    // Word for word the same whatever the reason, and whatever the id.
    let not_found = || error(StatusCode::NOT_FOUND, "FOYER_NOT_FOUND", "no public archive here");
    let rid = ReservationId::parse(id).map_err(|_| not_found())?;
    let found = async {
        let Some(record) = state.store.reservation(&rid).await? else { return Ok(None) };
        // Archived with its transcript still kept, public, and not taken down.
        let public = record.archived
            && record.reservation.archive.is_public()
            && state.store.transcript(&rid).await?.is_some()
            && !state.store.archive_taken_down(&rid).await?;
        Ok::<_, StoreError>(public.then_some(record))
    };
    match found.await {
        Ok(Some(record)) => Ok((rid, record)),
        Ok(None) => Err(not_found()),
        Err(e) => Err(ReplayError::from(e).answer()),
    }
}

/// The replay of a published archive, anonymous members named "a fan".
async fn public_replay(state: &AppState, record: &ReservationRecord) -> Result<replay::Replay, Response> {
    let id = &record.reservation.id;
    let anonymous = state.store.anonymous_members(id).await.map_err(|e| ReplayError::from(e).answer())?;
    replay::replay_naming(state, record, replay::shift_ms(record), &anonymous).await.map_err(|e| e.answer())
}

/// What every public answer carries: no caching (a takedown is at once), `noindex`
/// unless the platform chose `chat.archive_indexable`, and CORS for the web chat's
/// allowed origins, so that their `<track>` or script may read it.
fn public_headers(
    state: &AppState, request: &HeaderMap, record: &ReservationRecord, mut response: Response,
) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !record.reservation.archive.indexable() {
        headers.insert(HeaderName::from_static("x-robots-tag"), HeaderValue::from_static("noindex"));
    }
    let origin = request.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let allowed = state.config.webchat.as_ref().zip(origin).filter(|(webchat, origin)| webchat.allows_origin(origin));
    if let Some(value) = allowed.and_then(|(_, origin)| HeaderValue::from_str(origin).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    // The answer depends on the caller's origin: a cache keeps one per origin.
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// `GET /archive/{reservation_id}`: the chat as a page, names only.
pub(super) async fn page(State(state): State<AppState>, Path(id): Path<String>, request: HeaderMap) -> Response {
    let (_, record) = match published(&state, &id).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let replay = match public_replay(&state, &record).await {
        Ok(replay) => replay,
        Err(answer) => return answer,
    };
    let rows: String = replay.lines.iter().map(row).collect();
    let page = words::pages::public_archive(record.reservation.title.as_str(), replay.lines.len(), &rows);
    // Escaped, and a page that could run nothing even if it were not.
    let policy =
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    public_headers(&state, &request, &record, (headers, page).into_response())
}

/// One message of the page.
fn row(line: &ReplayLine) -> String {
    format!(
        "<tr><td><time datetime=\"{}\">{}</time></td><td class=who>{}</td><td class=body style=\"white-space:pre-wrap\">{}</td></tr>",
        line.sent_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        line.sent_at.format("%Y-%m-%d %H:%M:%S"),
        html::escape(&line.name),
        html::escape(&line.body),
    )
}

/// `GET /archive/{reservation_id}/replay.json` and `.vtt`: the replay's bodies.
async fn replay_in(state: AppState, id: String, request: HeaderMap, format: Format) -> Response {
    let (rid, record) = match published(&state, &id).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match public_replay(&state, &record).await {
        Ok(replay) => public_headers(&state, &request, &record, replay::answer(&rid, &replay, format)),
        Err(answer) => answer,
    }
}

pub(super) async fn replay_json(State(state): State<AppState>, Path(id): Path<String>, request: HeaderMap) -> Response {
    replay_in(state, id, request, Format::Json).await
}

pub(super) async fn replay_vtt(State(state): State<AppState>, Path(id): Path<String>, request: HeaderMap) -> Response {
    replay_in(state, id, request, Format::Vtt).await
}

/// `DELETE /api/v1/reservations/{reservation_id}/archive` (behind `api.token`): the public
/// archive is taken down at once and for good; 204, also when it was not public (the
/// platform may take down what it is unsure of), 404 for an unknown reservation.
pub(super) async fn take_down(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, "FOYER_NOT_FOUND", format!("no reservation {id:?}"));
    let Ok(rid) = ReservationId::parse(&id) else { return not_found() };
    let done = async {
        if state.store.reservation(&rid).await?.is_none() {
            return Ok(false);
        }
        state.store.take_down_archive(&rid, Utc::now()).await?;
        Ok::<_, StoreError>(true)
    };
    match done.await {
        Ok(true) => {
            tracing::info!(reservation_id = %rid, "public archive taken down");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => not_found(),
        Err(e) => ReplayError::from(e).answer(),
    }
}

/// This module's routes, one of the tables [`super::ROUTES`] lists: a route is added
/// here, beside its handler, and in `docs/openapi.yaml`. The takedown is the read API's
/// (`api.rs`), behind its token.
#[rustfmt::skip]
pub(super) const ROUTES: &[super::Route] = super::route_table![Archive:
    GET "/archive/{reservation_id}" => page,
    GET "/archive/{reservation_id}/replay.json" => replay_json,
    GET "/archive/{reservation_id}/replay.vtt" => replay_vtt,
];
