//! The chat beside the player as a test drives it (docs/web-chat.md): viewer tokens
//! minted as a platform mints them, sessions, and a Server-Sent Events stream read
//! event by event.

use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::foyer::{TestFoyer, WEBCHAT_SECRET};

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A viewer token: `claims` signed with HS256 and `secret`, as the platform mints one.
pub fn mint(secret: &str, claims: Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap()
}

/// `POST /chat/v1/session`: the status, the body read as JSON (`null` if it is not),
/// and the body as text.
pub async fn post_session(foyer: &TestFoyer, body: Value) -> (u16, Value, String) {
    let resp = foyer.http.post(format!("{}/chat/v1/session", foyer.base_url)).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

/// A session for ticket `tid` of reservation `rid`, from a token signed with the test
/// Foyers' secret, for a viewer named `name`; panics if it is refused.
pub async fn session_for(foyer: &TestFoyer, rid: &str, tid: &str, name: &str) -> String {
    let claims = json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": rid, "tid": tid, "name": name});
    let (status, answer, text) = post_session(foyer, json!({"token": mint(WEBCHAT_SECRET, claims)})).await;
    assert_eq!(status, 200, "{text}");
    answer["session"].as_str().expect("a session").to_owned()
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

impl Sse {
    /// The event in one block of a stream (its lines, up to the blank line); `None` for a
    /// block with no data (a comment, a keep-alive).
    pub fn parse(block: &str) -> Option<Sse> {
        let mut sse = Sse { id: None, event: "message".into(), data: Value::Null };
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                sse.id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                sse.event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data = Some(v.trim().to_owned());
            }
        }
        sse.data = serde_json::from_str(&data?).unwrap();
        Some(sse)
    }
}

/// A stream being read: its events so far, and the raw text (checked at the end).
pub struct Reader {
    pub response: reqwest::Response,
    buffer: String,
    pub raw: String,
}

impl Reader {
    pub async fn open(foyer: &TestFoyer, session: &str, last_event_id: Option<u64>) -> (u16, Result<Reader, String>) {
        let mut req = foyer.http.get(format!("{}/chat/v1/stream", foyer.base_url)).bearer_auth(session);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let response = req.send().await.unwrap();
        let status = response.status().as_u16();
        if status != 200 {
            return (status, Err(response.text().await.unwrap()));
        }
        (status, Ok(Reader { response, buffer: String::new(), raw: String::new() }))
    }

    /// The next event, or `None` when the stream ends or `limit` passes.
    pub async fn next(&mut self, limit: Duration) -> Option<Sse> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(sse) = Sse::parse(&block) {
                    return Some(sse);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    let text = String::from_utf8(chunk.to_vec()).unwrap();
                    self.raw.push_str(&text);
                    self.buffer.push_str(&text);
                }
                _ => return None,
            }
        }
    }

    /// Events until one matches `until`, which is returned last.
    pub async fn until(&mut self, what: &str, until: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let event = self.next(Duration::from_secs(30)).await;
            let event = event.unwrap_or_else(|| panic!("no {what} in the stream; saw {seen:?}"));
            let done = until(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

/// Whether an event is the message with this body.
pub fn is_message(body: &str) -> impl Fn(&Sse) -> bool + '_ {
    move |e| e.event == "message" && e.data["body"] == body
}
