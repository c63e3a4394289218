//! `GET /chat/v1/replay` (docs/web-chat.md, "Replay beside the recording"): the chat on
//! the recording's clock, for the page's session, so that the page can follow the
//! player's time after the show. The same lines as the operators' replay
//! (`http::replay`, docs/replay.md), by name only: never a Matrix ID, nor when a message
//! was sent (the offset is what the page needs).
//!
//! Only after the show (phase `ended` or `archived`): during it the page is the live
//! chat. Before the archive the lines are read from the homeserver, after it from the
//! transcript. Either way a replay is made once per [`FRESH`] for all of an instance's
//! readers ([`Replays`]): a show's audience opening the recording at once, or every
//! reader's page reloading it after a new message, costs one read.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, PoisonError},
    time::{Duration, Instant},
};

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
    model::{ReservationId, replay::ReplayLine},
    schedule::{self, Phase},
    words,
};

/// How long a replay made is served to every reader of this instance.
const FRESH: Duration = Duration::from_secs(5);

/// The replays made of late, one per reservation, each made by one request while the
/// others wait for it.
#[derive(Default)]
pub struct Replays {
    made: std::sync::Mutex<HashMap<ReservationId, Arc<tokio::sync::Mutex<Option<Made>>>>>,
}

struct Made {
    at: Instant,
    /// Made in this phase: once archived, the transcript's lines replace the room's.
    phase: Phase,
    messages: Arc<Vec<Value>>,
}

impl Replays {
    /// The reservation's replay in `phase`, made by `make` unless one is fresh.
    async fn get<F, Fut>(&self, id: &ReservationId, phase: Phase, make: F) -> Result<Arc<Vec<Value>>, Response>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Value>, Response>>,
    {
        let slot = {
            let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
            // Only the shows replayed of late stay; one being made stays.
            made.retain(|_, slot| slot.try_lock().map_or(true, |m| m.as_ref().is_some_and(|m| m.at.elapsed() < FRESH)));
            made.entry(id.clone()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(made) = slot.as_ref().filter(|m| m.phase == phase && m.at.elapsed() < FRESH) {
            return Ok(made.messages.clone());
        }
        let messages = Arc::new(make().await?);
        *slot = Some(Made { at: Instant::now(), phase, messages: messages.clone() });
        Ok(messages)
    }
}

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
    let make = || async {
        let replay = timeline::replay(&state, &record, timeline::shift_ms(&record)).await.map_err(|e| e.answer())?;
        let line =
            |l: &ReplayLine| json!({"offset_ms": l.offset_ms, "pre_show": l.pre_show, "name": l.name, "body": l.body});
        Ok(replay.lines.iter().map(line).collect())
    };
    match state.chat.replays.get(&record.reservation.id, status.phase, make).await {
        Ok(messages) => Json(json!({"phase": status.phase.as_str(), "messages": *messages})).into_response(),
        Err(answer) => answer,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Readers asking at once share one making; a new phase makes it again.
    #[tokio::test]
    async fn a_replay_is_made_once_for_readers_asking_at_once_and_again_in_a_new_phase() {
        let replays = Replays::default();
        let id = ReservationId::parse("jazz").unwrap();
        let made = AtomicUsize::new(0);
        let make = || async {
            made.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(vec![json!({"body": "hi"})])
        };
        let answers = futures_util::future::join_all((0..20).map(|_| replays.get(&id, Phase::Ended, make))).await;
        assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|m| m.len() == 1)));
        assert_eq!(made.load(Ordering::SeqCst), 1, "made once for twenty readers");
        replays.get(&id, Phase::Archived, make).await.unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 2, "made again from the transcript once archived");
        // A failure is not kept: the next reader tries again.
        let failing = || async { Err(error(StatusCode::SERVICE_UNAVAILABLE, "FOYER_UNAVAILABLE", "not now")) };
        let other = ReservationId::parse("rock").unwrap();
        assert!(replays.get(&other, Phase::Ended, failing).await.is_err());
        replays.get(&other, Phase::Ended, make).await.unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 3);
    }
}
