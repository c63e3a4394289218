//! A homeserver stand-in: an axum server on a free loopback port, in the test process,
//! that answers every client-server and handshake call Foyer makes at once, with
//! plausible bodies, so that a benchmark measures Foyer and not Synapse.
//!
//! It keeps just enough state to be consistent (aliases → rooms, the last state event
//! of each kind) and records the arrival of every `createRoom` with its
//! `room_alias_name`, which names the reservation. A route it does not know is printed
//! to stderr, counted in [`StandIn::unknown`] and answered `{}` 200.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{
    free_port, random_token,
    synapse::{SERVER_NAME, Slot},
};

/// The stand-in's bot: the config from [`StandIn::slot`] names it.
pub const BOT_LOCALPART: &str = "foyer";

#[derive(Default)]
struct Inner {
    /// Every `createRoom` with a `room_alias_name`: (that name, arrival time).
    created: Mutex<Vec<(String, DateTime<Utc>)>>,
    /// Alias (`#name:server`) → room id.
    aliases: Mutex<HashMap<String, String>>,
    /// (room, type, state key) → content.
    state: Mutex<HashMap<(String, String, String), Value>>,
    unknown: Mutex<Vec<String>>,
    /// Requests answered, by route name.
    calls: Mutex<BTreeMap<&'static str, u64>>,
    /// While set, reading a room's history forward (`/messages?dir=f`, a transcript)
    /// answers 502, as a homeserver behind a proxy does when it is down.
    history_down: std::sync::atomic::AtomicBool,
    next_id: AtomicU64,
}

pub struct StandIn {
    pub url: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StandIn {
    /// Starts the stand-in on a free loopback port of the current runtime.
    pub async fn start() -> StandIn {
        let inner = Arc::new(Inner::default());
        let app = Router::new().fallback(answer).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
        let url = format!("http://{}", listener.local_addr().expect("stand-in address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the stand-in serves");
        });
        StandIn { url, inner, server }
    }

    /// Every `createRoom` so far: (`room_alias_name`, arrival time).
    pub fn created(&self) -> Vec<(String, DateTime<Utc>)> {
        self.inner.created.lock().expect("lock").clone()
    }

    /// Routes the stand-in did not know (`METHOD path`), in arrival order.
    pub fn unknown(&self) -> Vec<String> {
        self.inner.unknown.lock().expect("lock").clone()
    }

    /// Makes reading a room's history forward fail (502) or work again (no events).
    pub fn history_down(&self, down: bool) {
        self.inner.history_down.store(down, Ordering::SeqCst);
    }

    /// Requests answered so far, by route.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.inner.calls.lock().expect("lock").clone()
    }

    /// A registration for a Foyer against this stand-in (its bot is [`BOT_LOCALPART`]);
    /// [`Slot::config_yaml`] makes its config.
    pub fn slot(&self) -> Slot {
        Slot {
            index: 0,
            id: "foyer".into(),
            port: free_port(),
            as_token: random_token(),
            hs_token: random_token(),
            api_token: random_token(),
            sender_localpart: BOT_LOCALPART.into(),
            alias_prefix: "live_".into(),
            puppet_prefix: "web_".into(),
            homeserver_url: self.url.clone(),
        }
    }
}

fn bot() -> String {
    format!("@{BOT_LOCALPART}:{SERVER_NAME}")
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn error(status: StatusCode, errcode: &str, message: &str) -> Response {
    (status, axum::Json(json!({"errcode": errcode, "error": message}))).into_response()
}

/// Decodes `%XX` escapes of a path segment.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Inner {
    fn id(&self, sigil: char) -> String {
        format!("{sigil}s{}:{SERVER_NAME}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn count(&self, route: &'static str) {
        *self.calls.lock().expect("lock").entry(route).or_default() += 1;
    }

    fn default_power_levels() -> Value {
        json!({"users": {bot(): 100}, "users_default": 0, "events_default": 0, "state_default": 50,
               "invite": 50, "kick": 50, "ban": 50, "redact": 50, "events": {}})
    }

    fn create_room(&self, body: &Value) -> Response {
        let at = Utc::now();
        let room_id = self.id('!');
        if let Some(name) = body["room_alias_name"].as_str() {
            let alias = format!("#{name}:{SERVER_NAME}");
            {
                let mut aliases = self.aliases.lock().expect("lock");
                if aliases.contains_key(&alias) {
                    return error(StatusCode::BAD_REQUEST, "M_ROOM_IN_USE", "Room alias already taken");
                }
                aliases.insert(alias, room_id.clone());
            }
            self.created.lock().expect("lock").push((name.to_owned(), at));
        }
        let mut levels = Self::default_power_levels();
        if let Some(overridden) = body.get("power_level_content_override").and_then(Value::as_object) {
            for (key, value) in overridden {
                levels[key] = value.clone();
            }
        }
        let mut state = self.state.lock().expect("lock");
        state.insert((room_id.clone(), "m.room.power_levels".into(), String::new()), levels);
        for event in body["initial_state"].as_array().into_iter().flatten() {
            let kind = event["type"].as_str().unwrap_or_default().to_owned();
            let key = event["state_key"].as_str().unwrap_or_default().to_owned();
            state.insert((room_id.clone(), kind, key), event["content"].clone());
        }
        ok(json!({"room_id": room_id}))
    }

    /// `/_matrix/client/v3/rooms/{room}/…`
    fn room(&self, method: &Method, room: &str, rest: &[&str], body: &Value) -> Option<Response> {
        let room = decode(room);
        Some(match (method, rest) {
            (&Method::PUT, ["state", kind, key @ ..]) => {
                self.count("PUT state");
                let key = key.first().map(|k| decode(k)).unwrap_or_default();
                self.state.lock().expect("lock").insert((room, decode(kind), key), body.clone());
                ok(json!({"event_id": self.id('$')}))
            }
            (&Method::GET, ["state", kind, key @ ..]) => {
                self.count("GET state");
                let (kind, key) = (decode(kind), key.first().map(|k| decode(k)).unwrap_or_default());
                match self.state.lock().expect("lock").get(&(room, kind.clone(), key)) {
                    Some(content) => ok(content.clone()),
                    None if kind == "m.room.power_levels" => ok(Self::default_power_levels()),
                    None => error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "Event not found."),
                }
            }
            (&Method::PUT, ["send", _kind, _txn]) => {
                self.count("PUT send");
                ok(json!({"event_id": self.id('$')}))
            }
            (&Method::GET, ["messages"]) => {
                // Foyer looks for an earlier copy of a message before posting it: none here.
                self.count("GET messages");
                ok(json!({"start": "s0", "chunk": []}))
            }
            (&Method::POST, ["invite"]) => {
                self.count("POST invite");
                ok(json!({}))
            }
            (&Method::POST, ["kick"]) => {
                self.count("POST kick");
                ok(json!({}))
            }
            (&Method::POST, ["leave"]) => {
                self.count("POST leave");
                ok(json!({}))
            }
            (&Method::GET, ["members"]) => {
                self.count("GET members");
                let bot_member = json!({"type": "m.room.member", "state_key": bot(), "sender": bot(),
                                        "event_id": self.id('$'), "room_id": room, "origin_server_ts": 0,
                                        "content": {"membership": "join"}});
                ok(json!({"chunk": [bot_member]}))
            }
            _ => return None,
        })
    }
}

async fn answer(
    State(inner): State<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes,
) -> Response {
    let path = uri.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if path != "/_matrix/client/versions" && !headers.contains_key("authorization") {
        return error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "Missing access token");
    }
    let forward = uri.query().is_some_and(|q| q.split('&').any(|p| p == "dir=f"));
    if method == Method::GET && path.ends_with("/messages") && forward {
        if inner.history_down.load(Ordering::SeqCst) {
            inner.count("GET messages forward (502)");
            return error(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "Bad Gateway");
        }
        inner.count("GET messages forward");
    }
    let answered = match (&method, segments.as_slice()) {
        (&Method::GET, ["_matrix", "client", "versions"]) => {
            inner.count("GET versions");
            Some(ok(json!({"versions": ["v1.1", "v1.5", "v1.11", "v1.12"], "unstable_features": {}})))
        }
        (&Method::GET, ["_matrix", "client", "v3", "account", "whoami"]) => {
            inner.count("GET whoami");
            Some(ok(json!({"user_id": bot(), "is_guest": false})))
        }
        (&Method::POST, ["_matrix", "client", "v3", "register"]) => {
            inner.count("POST register");
            Some(ok(json!({"user_id": bot()})))
        }
        (&Method::POST, ["_matrix", "client", "v1", "appservice", _id, "ping"]) => {
            inner.count("POST ping");
            Some(ok(json!({"duration_ms": 1})))
        }
        (&Method::GET, ["_matrix", "client", "v3", "capabilities"]) => {
            inner.count("GET capabilities");
            Some(ok(json!({"capabilities": {
                "m.change_password": {"enabled": false},
                "m.room_versions": {"default": "12", "available": {"10": "stable", "11": "stable", "12": "stable"}},
            }})))
        }
        (&Method::POST, ["_matrix", "client", "v3", "createRoom"]) => {
            inner.count("POST createRoom");
            Some(inner.create_room(&body))
        }
        (_, ["_matrix", "client", "v3", "directory", "room", alias]) => {
            let alias = decode(alias);
            let mut aliases = inner.aliases.lock().expect("lock");
            Some(match method {
                Method::GET => {
                    inner.count("GET alias");
                    match aliases.get(&alias) {
                        Some(room) => ok(json!({"room_id": room, "servers": [SERVER_NAME]})),
                        None => error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "Room alias not found"),
                    }
                }
                Method::DELETE => {
                    inner.count("DELETE alias");
                    match aliases.remove(&alias) {
                        Some(_) => ok(json!({})),
                        None => error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "Room alias not found"),
                    }
                }
                Method::PUT => {
                    inner.count("PUT alias");
                    aliases.insert(alias, body["room_id"].as_str().unwrap_or_default().to_owned());
                    ok(json!({}))
                }
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED", "Unrecognized request"),
            })
        }
        (_, ["_matrix", "client", "v3", "rooms", room, rest @ ..]) => inner.room(&method, room, rest, &body),
        (&Method::DELETE, ["_synapse", "admin", "v2", "rooms", _room]) => {
            inner.count("DELETE admin room");
            Some(ok(json!({"delete_id": random_token()})))
        }
        (&Method::GET, ["_synapse", "admin", "v2", "rooms", "delete_status", _id]) => {
            inner.count("GET admin delete_status");
            Some(ok(json!({"status": "complete"})))
        }
        _ => None,
    };
    answered.unwrap_or_else(|| {
        let route = format!("{method} {path}");
        eprintln!("[standin] unknown route {route} {body}");
        inner.unknown.lock().expect("lock").push(route);
        ok(json!({}))
    })
}
