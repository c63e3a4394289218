//! `GET /chat/v1/replay` (docs/web-chat.md, "Replay beside the recording"): the chat on
//! the recording's clock, for the page's session, so that the page can follow the
//! player's time after the show. The same lines as the operators' replay
//! (`http::replay`, docs/replay.md), by name only: never a Matrix ID, nor when a message
//! was sent (the offset is what the page needs).
//!
//! Only after the show (phase `ended` or `archived`): during it the page is the live
//! chat. Before the archive the lines are read from the homeserver, after it from the
//! transcript.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde_json::{Value, json};

use super::bearer::{live_session, unavailable};
use crate::{
    http::{AppState, error, replay as timeline},
    schedule::{self, Phase},
    words,
};

pub(super) async fn replay(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.config.webchat.is_none() {
        return error(StatusCode::NOT_FOUND, "FOYER_WEBCHAT_OFF", "web chat is not configured on this Foyer");
    }
    let (_, session) = match live_session(&state, &headers).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let record = match state.store.reservation(&session.session.reservation).await {
        Ok(Some(record)) => record,
        Ok(None) => return error(StatusCode::NOT_FOUND, "FOYER_RESERVATION_UNKNOWN", "this show is not known"),
        Err(e) => return unavailable(&e),
    };
    let (_, status) = schedule::at(&record, &state.config.rooms, Utc::now());
    if !matches!(status.phase, Phase::Ended | Phase::Archived) {
        return error(StatusCode::CONFLICT, "FOYER_REPLAY_NOT_YET", words::web::REPLAY_NOT_YET);
    }
    // The shift is 0 until `chat.replay_offset_ms` exists: the lead passes it here at merge.
    let replay = match timeline::replay(&state, &record, 0).await {
        Ok(replay) => replay,
        Err(e) => return e.answer(),
    };
    let messages: Vec<Value> = replay
        .lines
        .iter()
        .map(|line| {
            json!({"offset_ms": line.offset_ms, "pre_show": line.pre_show, "name": line.name, "body": line.body})
        })
        .collect();
    Json(json!({"phase": status.phase.as_str(), "messages": messages})).into_response()
}
