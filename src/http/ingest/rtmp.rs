//! `POST /ingest/v1/rtmp`: the publish hooks of nginx-rtmp (`on_publish` /
//! `on_publish_done`, a form with `call` and the stream key in `name`) and SRS
//! (`http_hooks` `on_publish` / `on_unpublish`, JSON with `action` and the key in
//! `stream`). Both map the key to its reservation: a publish inside the reservation's
//! window records `stream.started` and is allowed; anything else is refused and records
//! nothing. Each server is answered the way it reads answers: nginx-rtmp allows on any
//! 2xx; SRS on HTTP 200 with the body `0`.
//!
//! A stream key is a secret: it is hashed at once and never logged. Every refusal of a
//! publish reads the same, so that trying keys tells an unknown one from nothing; the
//! log names the reservation and why.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex, PoisonError, Weak},
};

use axum::{
    Extension, Json,
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{
    http::{AppState, error, server::BodyBudget, webhooks::read_capped},
    model::{ReservationRecord, StreamKey, StreamKeyHash, WebhookEvent},
    schedule,
    store::{Outcome, Receipt},
};

/// Which server sent a hook, told by its body's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// nginx-rtmp: `application/x-www-form-urlencoded`.
    Nginx,
    /// SRS: `application/json`.
    Srs,
}

impl Server {
    fn as_str(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Srs => "srs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Publish,
    PublishDone,
}

/// A hook as read: what happened, and the stream name, which should be a stream key.
struct Hook {
    call: Call,
    name: String,
}

/// Why a hook was not read.
#[derive(Debug, thiserror::Error)]
enum HookError {
    #[error("Content-Type must be application/x-www-form-urlencoded (nginx-rtmp) or application/json (SRS)")]
    ContentType,
    #[error("{0}")]
    Payload(String),
}

/// The one refusal of a publish, whatever the reason: an unknown key, a key whose
/// reservation is not in its window, cancelled or archived. A caller trying keys learns
/// nothing from it; the log says which it was.
const REFUSAL: &str = "publishing is not allowed: the stream key is unknown or not in its reservation's window";

/// The lock of one stream key (by its hash), held while a hook that may record
/// something for it is answered, so that two copies of one `on_publish` cannot both find
/// the stream not live and both record a start (two live notices). One lock per key:
/// hooks for other keys, and refused hooks, which take none, never wait for it.
fn key_lock(hash: &StreamKeyHash) -> Arc<tokio::sync::Mutex<()>> {
    /// Only keys with a reservation get here, and an entry lives while its lock is held
    /// or awaited: the map is as large as the keys being published at once.
    static LOCKS: LazyLock<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(lock) = locks.get(hash.as_str()).and_then(Weak::upgrade) {
        return lock;
    }
    locks.retain(|_, lock| lock.strong_count() > 0);
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(hash.as_str().to_owned(), Arc::downgrade(&lock));
    lock
}

pub async fn hook(
    State(state): State<AppState>, Extension(budget): Extension<BodyBudget>, RawQuery(query): RawQuery,
    headers: HeaderMap, body: Body,
) -> Response {
    let server = match media_type(&headers).as_deref() {
        Some("application/json") => Some(Server::Srs),
        Some("application/x-www-form-urlencoded") => Some(Server::Nginx),
        _ => None,
    };
    let Some(server) = server else {
        metrics::counter!("foyer_ingest_publishes_total", "server" => "unknown", "result" => "bad_request")
            .increment(1);
        let e = HookError::ContentType;
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "FOYER_BAD_CONTENT_TYPE", e.to_string());
    };
    let (result, response) = answer(&state, &budget, server, query.as_deref(), body).await;
    metrics::counter!("foyer_ingest_publishes_total", "server" => server.as_str(), "result" => result).increment(1);
    response
}

/// The hook's result label (for the metric) and the answer.
async fn answer(
    state: &AppState, budget: &BodyBudget, server: Server, query: Option<&str>, body: Body,
) -> (&'static str, Response) {
    // The token first: a caller without it gets not a byte of its body read.
    if !super::token_ok(&state.config.ingest, query) {
        tracing::warn!(
            server = server.as_str(),
            "publish hook refused: the URL lacks the right ?token= (ingest.token)"
        );
        return (
            "bad_token",
            refuse(server, StatusCode::FORBIDDEN, "FOYER_BAD_TOKEN", "the hook URL must carry ?token=<ingest.token>"),
        );
    }
    let body = match read_capped(body, super::MAX_BODY_BYTES, budget).await {
        Ok(body) => body,
        Err(e) => {
            let (result, response) = e.answer();
            let (status, message) = (response.status(), e.to_string());
            tracing::info!(server = server.as_str(), error = %e, "publish hook refused: its body was not read");
            let errcode =
                if status == StatusCode::SERVICE_UNAVAILABLE { "FOYER_UNAVAILABLE" } else { "FOYER_BAD_PAYLOAD" };
            let errcode = if status == StatusCode::PAYLOAD_TOO_LARGE { "FOYER_TOO_LARGE" } else { errcode };
            return (result, refuse(server, status, errcode, message));
        }
    };
    let hook = match read(server, &body) {
        Ok(hook) => hook,
        Err(e) => {
            tracing::info!(server = server.as_str(), error = %e, "publish hook refused: bad payload");
            return ("bad_request", refuse(server, StatusCode::BAD_REQUEST, "FOYER_BAD_PAYLOAD", e.to_string()));
        }
    };
    // A name that is not a key at all is refused like an unknown key, and not quoted.
    let Ok(key) = StreamKey::parse(&hook.name) else {
        return decide(state, server, hook.call, &[], Utc::now()).await;
    };
    let hash = key.hash();
    let records = match read_records(state, server, &hash).await {
        Ok(records) => records,
        Err(answer) => return answer,
    };
    let now = Utc::now();
    // Only a hook that may record something takes its key's lock: a refusal, or an end
    // with nothing live, is answered from this one read.
    let rooms = &state.config.rooms;
    let may_record = match hook.call {
        Call::Publish => records.iter().any(|r| window(r, rooms, now).is_ok()),
        Call::PublishDone => records.iter().any(|r| schedule::schedule(r, rooms).live),
    };
    if !may_record {
        return decide(state, server, hook.call, &records, now).await;
    }
    let lock = key_lock(&hash);
    let _held = lock.lock().await;
    // Read again under the lock: a copy of this hook answered meanwhile is seen.
    let records = match read_records(state, server, &hash).await {
        Ok(records) => records,
        Err(answer) => return answer,
    };
    decide(state, server, hook.call, &records, Utc::now()).await
}

/// The reservations whose stream key has `hash`, or the answer when the database cannot
/// be read.
async fn read_records(
    state: &AppState, server: Server, hash: &StreamKeyHash,
) -> Result<Vec<ReservationRecord>, (&'static str, Response)> {
    state.store.reservations_by_stream_key(hash).await.map_err(|e| {
        tracing::error!(server = server.as_str(), error = %e, "publish hook not answered: the database cannot read now");
        let message = "the database cannot be read now; retry later";
        ("unavailable", refuse(server, StatusCode::SERVICE_UNAVAILABLE, "FOYER_UNAVAILABLE", message))
    })
}

/// What a hook does to the reservations its key names, at `now`: a publish starts the
/// stream of the one whose window holds now, an end stops the live one.
async fn decide(
    state: &AppState, server: Server, call: Call, records: &[ReservationRecord], now: DateTime<Utc>,
) -> (&'static str, Response) {
    let rooms = &state.config.rooms;
    match call {
        Call::Publish => {
            let verdicts: Vec<_> = records.iter().map(|r| (r, window(r, rooms, now))).collect();
            let Some((record, times)) = verdicts.iter().find_map(|(r, v)| v.as_ref().ok().map(|t| (*r, *t))) else {
                // The reservation a refusal is about: the active one if any, else the first.
                let (id, why) = match verdicts.iter().find(|(r, _)| active(r)).or(verdicts.first()) {
                    Some((r, Err(why))) => (Some(r.reservation.id.as_str()), *why),
                    _ => (None, "no reservation has this stream key"),
                };
                tracing::info!(server = server.as_str(), reservation_id = id, why, "publish refused");
                return ("refused", refuse(server, StatusCode::FORBIDDEN, "FOYER_PUBLISH_REFUSED", REFUSAL));
            };
            let id = &record.reservation.id;
            if times.live {
                tracing::info!(
                    server = server.as_str(),
                    reservation_id = id.as_str(),
                    "publish allowed: already live, nothing recorded"
                );
                return ("duplicate", allow(server));
            }
            let event = WebhookEvent::StreamStarted { id: id.clone(), at: now };
            record_event(state, server, "publish", &event, now, ("allowed", "publish allowed: stream.started recorded"))
                .await
        }
        Call::PublishDone => {
            // Ending is never refused: the server stops the stream whatever the answer.
            let Some(record) = records.iter().find(|r| schedule::schedule(r, rooms).live) else {
                let id = records.first().map(|r| r.reservation.id.as_str());
                tracing::info!(
                    server = server.as_str(),
                    reservation_id = id,
                    "publish end: no live reservation has this stream key, nothing recorded"
                );
                return ("ended_duplicate", allow(server));
            };
            let id = &record.reservation.id;
            let event = WebhookEvent::StreamEnded { id: id.clone(), at: now };
            record_event(state, server, "publish_done", &event, now, ("ended", "publish ended: stream.ended recorded"))
                .await
        }
    }
}

/// Records a stream signal as a webhook would be, wakes the lifecycle (which opens the
/// room if it is not open yet and posts the notice), and answers the server: allowed,
/// counted and logged as `done` (a result label and a log message), or unavailable.
async fn record_event(
    state: &AppState, server: Server, call: &str, event: &WebhookEvent, now: DateTime<Utc>,
    done: (&'static str, &'static str),
) -> (&'static str, Response) {
    // Each recorded hook is a delivery of its own; copies of one are absorbed before
    // this by the stream's state (already live, not live).
    let webhook_id = format!("ingest-{}-{call}-{}-{}", server.as_str(), event.subject(), now.timestamp_micros());
    let receipt = Receipt { webhook_id: &webhook_id, received_at: now };
    match state.store.record_webhook(&receipt, event).await {
        Ok(outcome) => {
            if outcome == Outcome::Accepted {
                state.wake.notify_one();
            }
            let (result, message) = done;
            tracing::info!(server = server.as_str(), reservation_id = event.subject(), "{message}");
            (result, allow(server))
        }
        Err(e) => {
            tracing::error!(server = server.as_str(), webhook_id, error = %e, "publish hook not stored");
            let message = "the database cannot store the event now; retry later";
            ("unavailable", refuse(server, StatusCode::SERVICE_UNAVAILABLE, "FOYER_UNAVAILABLE", message))
        }
    }
}

/// Neither cancelled nor archived.
fn active(record: &ReservationRecord) -> bool {
    record.signals.cancelled_at.is_none() && !record.archived
}

/// The reservation's times when `now` is in its publishing window, `[opens_at,
/// archives_at)` and not cancelled; otherwise why not.
fn window(
    record: &ReservationRecord, rooms: &crate::config::RoomsConfig, now: DateTime<Utc>,
) -> Result<schedule::Schedule, &'static str> {
    let times = schedule::schedule(record, rooms);
    if record.signals.cancelled_at.is_some() {
        Err("the reservation is cancelled")
    } else if record.archived || now >= times.archives_at {
        Err("the reservation's room is archived (after archives_at)")
    } else if now < times.opens_at {
        Err("the reservation's room does not open until opens_at")
    } else {
        Ok(times)
    }
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// The hook's call from its `key`, whose value names a publish or its end (`names`);
/// else what is wrong, saying which hooks to `point` here.
fn call(key: &str, value: Option<&str>, names: [&str; 2], point: &str, missing: &str) -> Result<Call, HookError> {
    let [publish, done] = names;
    match value {
        Some(v) if v == publish => Ok(Call::Publish),
        Some(v) if v == done => Ok(Call::PublishDone),
        Some(other) => Err(HookError::Payload(format!(
            "{key}: {other:?} is not a publish hook ({publish}, {done}); point only {point} here"
        ))),
        None => Err(HookError::Payload(format!("{key}: {missing}"))),
    }
}

fn read(server: Server, body: &[u8]) -> Result<Hook, HookError> {
    match server {
        Server::Nginx => {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
            let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
            let names = ["publish", "publish_done"];
            let call = call("call", field("call"), names, "on_publish and on_publish_done", "is missing")?;
            let name = field("name").ok_or_else(|| HookError::Payload("name: is missing".into()))?;
            Ok(Hook { call, name: name.to_owned() })
        }
        Server::Srs => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| HookError::Payload(format!("body: is not valid JSON ({e})")))?;
            let field = |name: &str| value.get(name).and_then(Value::as_str);
            let names = ["on_publish", "on_unpublish"];
            let call = call("action", field("action"), names, "those", "is missing or not a string")?;
            let name =
                field("stream").ok_or_else(|| HookError::Payload("stream: is missing or not a string".into()))?;
            Ok(Hook { call, name: name.to_owned() })
        }
    }
}

/// Allowed: nginx-rtmp reads any 2xx; SRS wants HTTP 200 with the body `0`.
fn allow(server: Server) -> Response {
    match server {
        Server::Nginx => Json(json!({"status": "allowed"})).into_response(),
        Server::Srs => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "0").into_response(),
    }
}

/// Refused: a non-2xx for nginx-rtmp; for SRS also a non-zero `code` in the body, which
/// SRS reads as an error whatever the status.
fn refuse(server: Server, status: StatusCode, errcode: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    match server {
        Server::Nginx => error(status, errcode, message),
        Server::Srs => {
            (status, Json(json!({"code": status.as_u16(), "errcode": errcode, "error": message}))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stream_key_has_a_lock_of_its_own_while_it_is_used() {
        let (a, b) =
            (StreamKey::parse("key_aaaaaaaaaaaaaaaa").unwrap(), StreamKey::parse("key_bbbbbbbbbbbbbbbb").unwrap());
        let first = key_lock(&a.hash());
        assert!(Arc::ptr_eq(&first, &key_lock(&a.hash())), "one key, one lock");
        assert!(!Arc::ptr_eq(&first, &key_lock(&b.hash())), "another key, another lock");
        let _held = first.try_lock().expect("free");
        assert!(key_lock(&b.hash()).try_lock().is_ok(), "a key's lock held holds back no other key");
    }

    #[test]
    fn reads_both_servers_forms() {
        let hook = read(Server::Nginx, b"app=live&name=abcdefghijklmnop&call=publish&clientid=3").unwrap();
        assert_eq!((hook.call, hook.name.as_str()), (Call::Publish, "abcdefghijklmnop"));
        let hook = read(Server::Nginx, b"call=publish_done&name=k").unwrap();
        assert_eq!(hook.call, Call::PublishDone);
        let e = read(Server::Nginx, b"call=play&name=k").err().unwrap();
        assert!(e.to_string().starts_with("call: \"play\""), "{e}");
        let e = read(Server::Nginx, b"call=publish").err().unwrap();
        assert_eq!(e.to_string(), "name: is missing");
        let (e, missing) = (read(Server::Nginx, b"call=play&name=k").err().unwrap(), read(Server::Nginx, b"name=k"));
        assert_eq!(
            e.to_string(),
            "call: \"play\" is not a publish hook (publish, publish_done); point only on_publish and on_publish_done here"
        );
        assert_eq!(missing.err().unwrap().to_string(), "call: is missing");

        let srs = br#"{"action":"on_unpublish","client_id":"x1","ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","stream":"k","param":""}"#;
        let hook = read(Server::Srs, srs).unwrap();
        assert_eq!((hook.call, hook.name.as_str()), (Call::PublishDone, "k"));
        let e = read(Server::Srs, br#"{"action":"on_play","stream":"k"}"#).err().unwrap();
        assert!(e.to_string().starts_with("action: \"on_play\""), "{e}");
        assert!(read(Server::Srs, b"0").is_err());
        assert_eq!(
            e.to_string(),
            "action: \"on_play\" is not a publish hook (on_publish, on_unpublish); point only those here"
        );
        let missing = read(Server::Srs, br#"{"action":5,"stream":"k"}"#).err().unwrap();
        assert_eq!(missing.to_string(), "action: is missing or not a string");
    }
}
