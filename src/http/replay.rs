//! `GET /api/v1/reservations/{id}/replay?format=json|vtt`: the chat on the recording's
//! timeline (docs/replay.md). The messages are the transcript's once the room is
//! archived, else the room's own, read from the homeserver now; each is placed on the
//! recording's clock by the stream's reported starts and ends (`model::replay`).

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};
use ruma::{OwnedUserId, RoomId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    http::{AppState, error},
    model::{
        ReplayOffset, ReservationId, ReservationRecord, TranscriptLine,
        replay::{Placement, ReplayLine, Segments, vtt},
    },
    store::StoreError,
    words,
};

/// Lines read from the store at a time.
const PAGE_LINES: u32 = 1000;
const PAGE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Vtt,
}

impl Format {
    fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("json") => Ok(Self::Json),
            Some("vtt") => Ok(Self::Vtt),
            Some(other) => Err(format!("format: {other:?} is not one of json, vtt")),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ReplayQuery {
    format: Option<String>,
}

/// Why a replay cannot be made now.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the homeserver cannot give the room's messages now: {0}")]
    Homeserver(String),
}

impl ReplayError {
    pub(in crate::http) fn answer(&self) -> Response {
        tracing::warn!(error = %self, "replay: cannot be made now");
        error(StatusCode::SERVICE_UNAVAILABLE, "FOYER_UNAVAILABLE", "the replay cannot be made now; retry later")
    }
}

/// The replay: its segments and its lines.
pub(super) struct Replay {
    pub segments: Segments,
    pub lines: Vec<ReplayLine>,
}

/// The reservation's messages on the recording's clock, members' messages only (the
/// bot's notices are Foyer's, not the chat's), each shifted by `shift_ms`.
pub(super) async fn replay(state: &AppState, record: &ReservationRecord, shift_ms: i64) -> Result<Replay, ReplayError> {
    replay_naming(state, record, shift_ms, &[]).await
}

/// [`replay`], with the `anonymous` members named "a fan" (the public archive's, where
/// `!foyer anonymous` is honoured).
pub(super) async fn replay_naming(
    state: &AppState, record: &ReservationRecord, shift_ms: i64, anonymous: &[OwnedUserId],
) -> Result<Replay, ReplayError> {
    let id = &record.reservation.id;
    let edges = state.store.stream_edges(id).await?;
    let segments = Segments::from_edges(&edges);
    let lines = messages(state, id, record).await?;
    let lines = lines
        .into_iter()
        .filter(|line| !line.notice)
        .map(|line| {
            let placement = segments.place(line.sent_at);
            let anonymous = anonymous.contains(&line.sender);
            ReplayLine {
                offset_ms: placement.offset_ms().saturating_add(shift_ms).max(0),
                pre_show: placement == Placement::PreShow,
                sent_at: line.sent_at,
                name: if anonymous { words::room::ANONYMOUS_NAME.to_owned() } else { name(&line) },
                body: line.body,
            }
        })
        .collect();
    Ok(Replay { segments, lines })
}

/// The shift the reservation asks of its replay's offsets (`chat.replay_offset_ms`).
pub(super) fn shift_ms(record: &ReservationRecord) -> i64 {
    record.reservation.replay_offset.map_or(0, ReplayOffset::ms)
}

/// The name a replay shows: the sender's display name at the time, without the web
/// mark, else "a fan"; never a Matrix ID.
fn name(line: &TranscriptLine) -> String {
    match line.display_name.as_deref() {
        Some(name) => name.strip_suffix(words::room::WEB_MARK).unwrap_or(name).to_owned(),
        None => words::room::ANONYMOUS_NAME.to_owned(),
    }
}

/// The transcript's lines once it is made; else the room's, read now; none before the
/// room exists.
async fn messages(
    state: &AppState, id: &ReservationId, record: &ReservationRecord,
) -> Result<Vec<TranscriptLine>, ReplayError> {
    if state.store.transcript(id).await?.is_some() {
        let mut lines = Vec::new();
        let mut after = None;
        loop {
            let page = state.store.transcript_lines(id, after, PAGE_LINES, PAGE_BYTES).await?;
            let Some(last) = page.last() else { return Ok(lines) };
            after = Some(last.seq);
            lines.extend(page);
        }
    }
    let room = record.room_id.as_deref().and_then(|r| RoomId::parse(r).ok());
    match (room, state.lifecycle.get()) {
        (Some(room), Some(lifecycle)) if !record.archived => {
            lifecycle.room_lines(&room).await.map_err(|e| ReplayError::Homeserver(e.to_string()))
        }
        _ => Ok(Vec::new()),
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The replay as the answer in `format`.
pub(super) fn answer(id: &ReservationId, replay: &Replay, format: Format) -> Response {
    match format {
        Format::Vtt => ([(header::CONTENT_TYPE, "text/vtt; charset=utf-8")], vtt(&replay.lines)).into_response(),
        Format::Json => Json(json!({
            "reservation_id": id.as_str(),
            "segments": segments_view(&replay.segments),
            "messages": replay.lines.iter().map(|line| json!({
                "offset_ms": line.offset_ms,
                "pre_show": line.pre_show,
                "sent_at": time(line.sent_at),
                "name": line.name,
                "body": line.body,
            })).collect::<Vec<Value>>(),
        }))
        .into_response(),
    }
}

/// The segments as the reservation view and the replay list them: each with where it
/// begins on the recording's clock.
pub(super) fn segments_view(segments: &Segments) -> Vec<Value> {
    let mut offset = 0i64;
    segments
        .list()
        .iter()
        .map(|s| {
            let view = json!({"start": time(s.start), "end": s.end.map(time), "offset_ms": offset});
            offset += s.end.map_or(0, |end| (end - s.start).num_milliseconds());
            view
        })
        .collect()
}

pub(super) async fn handler(
    State(state): State<AppState>, Path(id): Path<String>, Query(query): Query<ReplayQuery>,
) -> Response {
    let format = match Format::parse(query.format.as_deref()) {
        Ok(format) => format,
        Err(message) => return error(StatusCode::BAD_REQUEST, "FOYER_BAD_QUERY", message),
    };
    let not_found = || error(StatusCode::NOT_FOUND, "FOYER_NOT_FOUND", format!("no reservation {id:?}"));
    let Ok(rid) = ReservationId::parse(&id) else { return not_found() };
    let record = match state.store.reservation(&rid).await {
        Ok(Some(record)) => record,
        Ok(None) => return not_found(),
        Err(e) => return ReplayError::from(e).answer(),
    };
    match replay(&state, &record, shift_ms(&record)).await {
        Ok(replay) => answer(&rid, &replay, format),
        Err(e) => e.answer(),
    }
}
