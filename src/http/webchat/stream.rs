//! `GET /chat/v1/stream` (docs/web-chat.md, "The stream"): the room as Server-Sent
//! Events, for a session's bearer.
//!
//! First the last [`FIRST`] entries of the reservation's log, or, with `Last-Event-ID`,
//! those after it (a `reset` and the last [`FIRST`] when it is older than the log
//! keeps); then the live ones from the reservation's feed ([`super::hub`]). Each entry's
//! SSE `id:` is its seq, `event:` its kind, `data:` its payload with `seq`. The phase
//! comes as `phase` (no id) at the start and at each change; the session's expiry, or
//! its end (ticket revoked or moved, viewer banned), closes the stream after a `closed`
//! event; a reader too slow for the feed gets a `reset` and starts again. A comment
//! every 15 s keeps proxies from closing a quiet stream.
//!
//! The handler returns as soon as the stream starts, so a stream holds none of the
//! in-flight permits kept for the homeserver (`server.rs`), and it ends at once at
//! shutdown.

use std::{collections::VecDeque, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use chrono::Utc;
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::hub::{Frame, PhaseNow, Subscription, entry_data, stopped};
use crate::{
    http::{AppState, error},
    model::{EndReason, LoggedEntry, ReservationId, SessionHash},
    store::Store,
};

/// Entries a stream starts with.
pub const FIRST: u32 = 50;
/// How often a quiet stream sends a comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The most entries read to fill a gap between the feed and what a stream has sent.
const GAP_PAGE: u32 = 1000;

pub async fn stream(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.config.webchat.is_none() {
        return error(StatusCode::NOT_FOUND, "FOYER_WEBCHAT_OFF", "web chat is not configured on this Foyer");
    }
    let (hash, session) = match super::bearer::live_session(&state, &headers).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let reservation = session.session.reservation.clone();
    let last_seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    if let Some(lifecycle) = state.lifecycle.get() {
        state.chat.refill(&reservation, &lifecycle.client).await;
    }
    // Subscribed before the backlog is read: nothing appended in between is lost.
    let subscription = match state.chat.subscribe(&reservation).await {
        Ok(subscription) => subscription,
        Err(e) => return super::bearer::unavailable(&e),
    };
    metrics::gauge!("foyer_webchat_streams").increment(1.0);
    let mut reader = Reader {
        store: state.store.clone(),
        reservation,
        session: hash,
        expires_at: session.session.expires_at,
        subscription,
        queue: VecDeque::new(),
        last: 0,
        done: false,
        phase_sent: false,
    };
    if let Err(e) = reader.start(last_seen).await {
        return super::bearer::unavailable(&e);
    }
    let events = stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        Some((Ok::<_, Infallible>(event), reader))
    });
    let mut response = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    // nginx and its kind would otherwise hold events back to fill their buffers.
    headers.insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

/// One stream's state: what it has sent, what it will send next.
struct Reader {
    store: Arc<dyn Store>,
    reservation: ReservationId,
    session: SessionHash,
    expires_at: chrono::DateTime<Utc>,
    subscription: Subscription,
    queue: VecDeque<Event>,
    /// The seq of the last entry queued.
    last: u64,
    done: bool,
    phase_sent: bool,
}

impl Drop for Reader {
    fn drop(&mut self) {
        metrics::gauge!("foyer_webchat_streams").decrement(1.0);
    }
}

impl Reader {
    /// Queues the backlog: after `last_seen`, or the last [`FIRST`] entries.
    async fn start(&mut self, last_seen: Option<u64>) -> Result<(), crate::store::StoreError> {
        match last_seen {
            Some(seen) => {
                let oldest = self.store.web_log_oldest_seq(&self.reservation).await?;
                let head = self.store.web_log_head(&self.reservation).await?;
                // Missed entries no longer kept, or an id this log never gave.
                if oldest.is_some_and(|oldest| seen + 1 < oldest) || seen > head {
                    return self.reset().await;
                }
                self.last = seen;
                self.fill(None).await?;
            }
            None => {
                let entries = self.store.web_log_last(&self.reservation, FIRST).await?;
                self.queue_entries(entries);
            }
        }
        self.queue.push_back(ready());
        Ok(())
    }

    /// A `reset`, then the last [`FIRST`] entries.
    async fn reset(&mut self) -> Result<(), crate::store::StoreError> {
        self.queue.push_back(Event::default().event("reset").data("{}"));
        let entries = self.store.web_log_last(&self.reservation, FIRST).await?;
        self.last = 0;
        self.queue_entries(entries);
        self.queue.push_back(ready());
        Ok(())
    }

    /// Queues what the store has after `self.last`, up to `until` if given.
    async fn fill(&mut self, until: Option<u64>) -> Result<(), crate::store::StoreError> {
        loop {
            let entries = self.store.web_log_after(&self.reservation, self.last, GAP_PAGE).await?;
            let full = entries.len() == GAP_PAGE as usize;
            let entries: Vec<LoggedEntry> =
                entries.into_iter().take_while(|e| until.is_none_or(|u| e.seq <= u)).collect();
            let got = entries.len();
            self.queue_entries(entries);
            if !full || got == 0 || until.is_some_and(|u| self.last >= u) {
                return Ok(());
            }
        }
    }

    fn queue_entries(&mut self, entries: Vec<LoggedEntry>) {
        for entry in entries {
            self.last = entry.seq;
            self.queue.push_back(entry_event(&entry, &entry_data(&entry)));
        }
    }

    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if !self.phase_sent {
                // The phase comes first, as the page expects: a feed just started has not
                // worked it out yet, so its first value is waited for, a while (a feed that
                // cannot read the reservation has none to give: the stream goes on without).
                let now = *self.subscription.phase.borrow_and_update();
                if now.is_none() {
                    let first = tokio::time::timeout(FIRST_PHASE_WAIT, self.subscription.phase.changed()).await;
                    if matches!(first, Ok(Ok(()))) {
                        continue;
                    }
                }
                self.phase_sent = true;
                if let Some(phase) = now {
                    return Some(phase_event(phase));
                }
            }
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let until_expiry = (self.expires_at - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                biased;
                () = stopped(&mut self.subscription.stop) => return None,
                () = tokio::time::sleep(until_expiry) => self.close(None),
                changed = self.subscription.phase.changed() => match changed {
                    Ok(()) => {
                        if let Some(phase) = *self.subscription.phase.borrow_and_update() {
                            return Some(phase_event(phase));
                        }
                    }
                    Err(_) => return None, // the feed is gone (shutdown)
                },
                frame = self.subscription.frames.recv() => match frame {
                    Ok(frame) => self.take(&frame).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(reservation = %self.reservation, missed, "a web chat reader fell behind: reset");
                        metrics::counter!("foyer_webchat_resets_total").increment(1);
                        if self.reset().await.is_err() {
                            return None;
                        }
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }

    async fn take(&mut self, frame: &Frame) {
        match frame {
            Frame::Entry(entry, _) if entry.seq <= self.last => {}
            Frame::Entry(entry, data) => {
                if entry.seq > self.last + 1 {
                    // Appended while this stream read its backlog: from the store.
                    if self.fill(Some(entry.seq - 1)).await.is_err() {
                        self.done = true;
                        return;
                    }
                }
                if entry.seq > self.last {
                    self.last = entry.seq;
                    self.queue.push_back(entry_event(entry, data));
                }
            }
            Frame::Ended { session, reason } if *session == self.session => self.close(Some(*reason)),
            Frame::Ended { .. } => {}
        }
    }

    /// Queues `closed` and ends the stream after it: the session expired (`None`) or was
    /// ended (the ticket revoked or moved, a ban).
    fn close(&mut self, ended: Option<EndReason>) {
        let data = match ended {
            None => json!({"reason": "expired", "errcode": "FOYER_SESSION_EXPIRED",
                "error": "this session has expired: start the chat again"}),
            Some(reason) => json!({"reason": reason.as_str(), "errcode": "FOYER_SESSION_ENDED",
                "error": crate::words::web::session_ended(reason)}),
        };
        self.queue.push_back(Event::default().event("closed").data(data.to_string()));
        self.done = true;
    }
}

/// How long a new stream waits for its feed's first phase before sending the backlog.
const FIRST_PHASE_WAIT: Duration = Duration::from_secs(5);

/// `ready`: the backlog is complete; what follows is new (the page announces only that).
fn ready() -> Event {
    Event::default().event("ready").data("{}")
}

/// An entry as its SSE event: `id:` its seq, `event:` its kind, `data:` its payload
/// with `seq` ([`entry_data`], made once by the feed for a live entry).
fn entry_event(entry: &LoggedEntry, data: &str) -> Event {
    Event::default().id(entry.seq.to_string()).event(entry.kind.as_str()).data(data)
}

fn phase_event(now: PhaseNow) -> Event {
    let data = match now.phase {
        crate::schedule::Phase::Scheduled => {
            json!({"phase": now.phase.as_str(), "opens_at": now.opens_at.to_rfc3339()})
        }
        phase => json!({"phase": phase.as_str()}),
    };
    Event::default().event("phase").data(data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LogKind, LogPayload};

    #[test]
    fn an_entrys_data_is_its_payload_with_its_seq() {
        let entry = LoggedEntry {
            seq: 7,
            event_id: None,
            kind: LogKind::Redaction,
            payload: LogPayload::new(&json!({"event_id": "$x"})).unwrap(),
            origin_ts: Utc::now(),
            logged_at: Utc::now(),
        };
        assert_eq!(entry_data(&entry), r#"{"event_id":"$x","seq":7}"#);
    }
}
