//! The read API (`/api/v1`), for operators and the platform: reservations with their
//! computed phase and times, their tickets and moderation record, behind `api.token`.

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    middleware,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};
use ruma::UserId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    http::{AppState, error, require_api_token, store_unavailable},
    model::{
        ClaimCode, ExternalId, RecordCursor, ReplayOffset, ReservationId, ReservationRecord, SeriesId, naming,
        replay::Segments,
    },
    schedule::{self, Phase},
    store::Counts,
};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

pub fn router(state: AppState) -> Router<AppState> {
    super::routes(super::Group::Api, &state).layer(middleware::from_fn_with_state(state, require_api_token))
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn view(state: &AppState, record: &ReservationRecord, now: DateTime<Utc>) -> (Phase, Value) {
    let config = &state.config;
    let r = &record.reservation;
    let (times, status) = schedule::at(record, &config.rooms, now);
    let phase = status.phase;
    let alias = config.room_alias(&r.id);
    let mut body = json!({
        "reservation_id": r.id.as_str(),
        "revision": r.revision.map(|v| v.0),
        "title": r.title.as_str(),
        "starts_at": time(r.starts_at),
        "ends_at": time(r.ends_at),
        "opens_at": time(times.opens_at),
        "archives_at": time(times.archives_at),
        "phase": phase,
        "room_id": record.room_id,
        "room_alias": alias,
        "tickets": {
            "active": record.tickets.active,
            "revoked": record.tickets.revoked,
            "uninvitable": record.tickets.uninvitable,
            "unclaimed": record.tickets.unclaimed,
            "claimed": record.tickets.claimed,
            "holders": record.tickets.holders,
        },
        "members": {
            "invited": record.members.invited,
            "joined": record.members.joined,
            "holders_joined": record.members.holders_joined,
        },
        "archive": r.archive.as_str(),
        "archive_indexable": r.archive.indexable(),
        "replay_offset_ms": r.replay_offset.map(ReplayOffset::ms),
        "auto_join": r.auto_join(config.rooms.auto_join).as_str(),
        "access": r.access.as_str(),
    });
    // Only while an effect is due and not done yet, as docs/openapi.yaml says.
    if status.opening {
        body["opening"] = json!(true);
    }
    if status.archiving {
        body["archiving"] = json!(true);
    }
    (phase, body)
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    store_unavailable("read API", e)
}

pub(super) async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, "FOYER_NOT_FOUND", format!("no reservation {id:?}"));
    let Ok(rid) = ReservationId::parse(&id) else {
        return not_found();
    };
    match state.store.reservation(&rid).await {
        Ok(Some(record)) => {
            let mut body = view(&state, &record, Utc::now()).1;
            // The recording's segments (docs/replay.md), on this view alone: a list would
            // read every reservation's edges.
            match state.store.stream_edges(&record.reservation.id).await {
                Ok(edges) => body["segments"] = json!(super::replay::segments_view(&Segments::from_edges(&edges))),
                Err(e) => return unavailable(e),
            }
            Json(body).into_response()
        }
        Ok(None) => not_found(),
        Err(e) => unavailable(e),
    }
}

/// `GET /api/v1/series/{series_id}`: a series' occurrences, the earliest first, with
/// their reservation ids (what the platform grants tickets to), times and whether each
/// is cancelled.
pub(super) async fn series(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, "FOYER_NOT_FOUND", format!("no series {id:?}"));
    let Ok(series_id) = SeriesId::parse(&id) else {
        return not_found();
    };
    match state.store.series(&series_id).await {
        Ok(Some(record)) => {
            let occurrences: Vec<Value> = record
                .occurrences
                .iter()
                .map(|o| {
                    json!({
                        "reservation_id": o.id.as_str(),
                        "original_start": time(o.original_start),
                        "starts_at": time(o.starts_at),
                        "ends_at": time(o.ends_at),
                        "cancelled": o.cancelled,
                    })
                })
                .collect();
            Json(json!({
                "series_id": record.id.as_str(),
                "cancelled": record.cancelled_at.is_some(),
                "occurrences": occurrences,
            }))
            .into_response()
        }
        Ok(None) => not_found(),
        Err(e) => unavailable(e),
    }
}

/// The id of a reservation Foyer knows, or the answer: 404 for one it does not.
async fn known(state: &AppState, id: &str) -> Result<ReservationId, Response> {
    let not_found = || error(StatusCode::NOT_FOUND, "FOYER_NOT_FOUND", format!("no reservation {id:?}"));
    let rid = ReservationId::parse(id).map_err(|_| not_found())?;
    match state.store.reservation(&rid).await {
        Ok(Some(_)) => Ok(rid),
        Ok(None) => Err(not_found()),
        Err(e) => Err(unavailable(e)),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct TicketsQuery {
    limit: Option<u32>,
    /// The `next` value of the previous page.
    after: Option<String>,
}

/// `GET /api/v1/reservations/{id}/tickets?limit=100&after=<ticket_id>`: each ticket with
/// its holder, its state and the holder's last invite error, ordered by ticket id.
pub(super) async fn tickets(
    State(state): State<AppState>, Path(id): Path<String>, Query(query): Query<TicketsQuery>,
) -> Response {
    let rid = match known(&state, &id).await {
        Ok(rid) => rid,
        Err(answer) => return answer,
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let rows = match state.store.tickets(&rid, query.after.as_deref().unwrap_or(""), limit).await {
        Ok(rows) => rows,
        Err(e) => return unavailable(e),
    };
    let next = (rows.len() == limit as usize).then(|| rows.last().map(|t| t.ticket_id.clone())).flatten();
    let key = state.config.claim_key();
    let feed_key = state.config.feed_key();
    let public_url = state.config.public_url();
    let tickets: Vec<Value> = rows
        .iter()
        .map(|t| {
            let state = t.state();
            // The code is derived again here, never stored: only while it can be used.
            let ticket = (state == "unclaimed").then(|| ExternalId::parse(&t.ticket_id).ok()).flatten();
            let code = ticket.and_then(|ticket| {
                ClaimCode::of_holder(&key, &rid, &ticket, t.holder_generation, t.holder_digest.as_ref())
            });
            let claim = code.map(|code| {
                json!({
                    "code": code.to_string(),
                    "url": naming::claim_url(public_url, &code),
                    "command": naming::claim_command(&code),
                })
            });
            // The holder's own calendar, while the ticket has a holder with a Matrix ID.
            let holder = (state != "revoked").then(|| t.user_id.as_deref().and_then(|u| UserId::parse(u).ok()));
            let calendar_url = feed_key
                .as_ref()
                .zip(holder.flatten())
                .map(|(feed_key, user)| super::calendar::holder_feed_url(public_url, feed_key, &user));
            json!({
                "ticket_id": t.ticket_id,
                "state": state,
                "user_id": t.user_id,
                "email_masked": t.email_masked,
                "claim": claim,
                "last_invite_error": t.invite_error,
                "calendar_url": calendar_url,
            })
        })
        .collect();
    Json(json!({"tickets": tickets, "next": next})).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct RecordQuery {
    limit: Option<u32>,
    /// The `next` value of the previous page.
    after: Option<String>,
}

/// `GET /api/v1/reservations/{id}/moderation?limit=100&after=<next>`: the moderation
/// record (docs/moderation.md), oldest first; `next` is the cursor of the following page,
/// `null` on the last.
pub(super) async fn moderation(
    State(state): State<AppState>, Path(id): Path<String>, Query(query): Query<RecordQuery>,
) -> Response {
    let after = match query.after.as_deref().map(RecordCursor::parse).transpose() {
        Ok(after) => after,
        Err(e) => return error(StatusCode::BAD_REQUEST, "FOYER_BAD_QUERY", format!("after: {e}")),
    };
    let rid = match known(&state, &id).await {
        Ok(rid) => rid,
        Err(answer) => return answer,
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let rows = match state.store.moderation_record(&rid, after.as_ref(), limit).await {
        Ok(rows) => rows,
        Err(e) => return unavailable(e),
    };
    let next = (rows.len() == limit as usize).then(|| rows.last().map(|r| r.cursor.to_string())).flatten();
    let entries: Vec<Value> = rows.iter().map(|r| r.entry.view()).collect();
    Json(json!({"entries": entries, "next": next})).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    phase: Option<String>,
    limit: Option<u32>,
    /// The `next` value of the previous page.
    after: Option<String>,
}

/// `GET /api/v1/reservations?phase=open&limit=100&after=<id>`, ordered by id; `next`
/// is the cursor of the following page, `null` on the last.
pub(super) async fn list(State(state): State<AppState>, Query(query): Query<ListQuery>) -> Response {
    let phase = match query.phase.as_deref().map(|p| (p, Phase::parse(p))) {
        None => None,
        Some((_, Some(phase))) => Some(phase),
        Some((p, None)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "FOYER_BAD_QUERY",
                format!("phase: {p:?} is not one of {}", Phase::names()),
            );
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut after = match query.after.as_deref().map(ReservationId::parse).transpose() {
        Ok(after) => after,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, "FOYER_BAD_QUERY", format!("after: {e}"));
        }
    };
    let now = Utc::now();
    let mut page = Vec::new();
    // Phases depend on `now`, so filtering happens here, a batch at a time.
    loop {
        let batch = match state.store.reservations_after(after.as_ref(), MAX_PAGE, Counts::Counted).await {
            Ok(batch) => batch,
            Err(e) => return unavailable(e),
        };
        let exhausted = batch.len() < MAX_PAGE as usize;
        for record in batch {
            after = Some(record.reservation.id.clone());
            let (p, body) = view(&state, &record, now);
            if phase.is_none_or(|want| want == p) {
                page.push(body);
                if page.len() == limit as usize {
                    let next = after.as_ref().map(|id| id.as_str().to_owned());
                    return Json(json!({"reservations": page, "next": next})).into_response();
                }
            }
        }
        if exhausted {
            return Json(json!({"reservations": page, "next": Value::Null})).into_response();
        }
    }
}

/// This module's routes, one of the tables [`super::ROUTES`] lists: a route is added
/// here, beside its handler, and in `docs/openapi.yaml`.
#[rustfmt::skip]
pub(super) const ROUTES: &[super::Route] = super::route_table![Api:
    GET "/api/v1/reservations" => list,
    GET "/api/v1/reservations/{reservation_id}" => show,
    GET "/api/v1/reservations/{reservation_id}/tickets" => tickets,
    GET "/api/v1/reservations/{reservation_id}/moderation" => moderation,
    GET "/api/v1/reservations/{reservation_id}/transcript" => super::transcript::transcript,
    GET "/api/v1/reservations/{reservation_id}/replay" => super::replay::handler,
    DELETE "/api/v1/reservations/{reservation_id}/archive" => super::archive::take_down,
    GET "/api/v1/series/{series_id}" => series,
];
