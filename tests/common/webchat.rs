//! The tests' one client of Foyer's web chat (`/chat/`, docs/web-chat.md). Every body it
//! reads passes [`assert_private`], the stream's text included, event by event: nothing a
//! browser receives from `/chat/` may hold an access token, a secret, an email or a
//! Matrix ID (contract §10, "never in the browser"). Tests read `/chat/` through it
//! alone, so that no answer they receive goes unchecked.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::foyer::{TestFoyer, WEBCHAT_SECRET};

/// What no `/chat/` answer of any test may hold, whichever test made it: every Synapse
/// user's access token and Matrix ID ([`super::users`] adds them as it registers users).
static PRIVATE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Adds `values` to what no `/chat/` answer of any test may hold.
pub fn keep_private<'a>(values: impl IntoIterator<Item = &'a str>) {
    let mut private = PRIVATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    private.extend(values.into_iter().filter(|v| !v.is_empty()).map(str::to_owned));
}

/// Fails when `body` (what `what` answered) holds one of `extra`, anything given to
/// [`keep_private`], or anything shaped like a Matrix user ID or an email.
pub fn assert_private(what: &str, body: &str, extra: &[String]) {
    let global = PRIVATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    for value in extra.iter().chain(&global) {
        assert!(!body.contains(value.as_str()), "{what} holds {value:?}, which must never reach a browser: {body}");
    }
    if let Some(id) = matrix_id_in(body) {
        panic!("{what} holds the Matrix ID {id:?}: {body}");
    }
    if let Some(email) = email_in(body) {
        panic!("{what} holds the email {email:?}: {body}");
    }
}

/// The first `@localpart:server` in `text`. The localpart may be any of the characters
/// the spec allows, historical ones included (web users' start with `_`); the server
/// name starts with a letter, a digit or `[` (an IPv6 literal).
fn matrix_id_in(text: &str) -> Option<&str> {
    let localpart = |c: char| c.is_ascii_alphanumeric() || "._=-/+".contains(c);
    text.match_indices('@').find_map(|(at, _)| {
        let rest = &text[at + 1..];
        let length = rest.find(|c: char| !localpart(c)).unwrap_or(rest.len());
        let server = rest[length..].strip_prefix(':')?;
        let starts = server.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[');
        let end = server.find(|c: char| !(c.is_ascii_alphanumeric() || ".-:[]".contains(c))).unwrap_or(server.len());
        (length > 0 && starts).then(|| &text[at..at + 1 + length + 1 + end])
    })
}

/// The first `name@domain.tld` in `text`.
fn email_in(text: &str) -> Option<&str> {
    let name = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_ascii_alphanumeric() || ".-".contains(c);
    text.match_indices('@').find_map(|(at, _)| {
        let start = text[..at].rfind(|c: char| !name(c)).map_or(0, |i| i + 1);
        let rest = &text[at + 1..];
        let end = rest.find(|c: char| !domain(c)).unwrap_or(rest.len());
        let host = rest[..end].trim_end_matches('.');
        (start < at && host.contains('.') && host.starts_with(|c: char| c.is_ascii_alphanumeric()))
            .then(|| &text[start..at + 1 + host.len()])
    })
}

/// A client of one Foyer's `/chat/`: every answer it reads is checked.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    base_url: String,
    /// What this Foyer's answers must not hold, beyond [`PRIVATE`]: its secrets.
    private: Vec<String>,
    /// Sent as `X-Forwarded-For`, as a reverse proxy would.
    forwarded_for: Option<String>,
}

impl ChatClient {
    /// A client of the Foyer at `base_url` whose answers must hold none of `private`
    /// (its `as_token`, `hs_token`, API token, token secrets, the emails of its tickets).
    pub fn new(base_url: &str, private: &[&str]) -> ChatClient {
        let private = private.iter().filter(|v| !v.is_empty()).map(|v| (*v).to_owned()).collect();
        let base_url = base_url.trim_end_matches('/').to_owned();
        ChatClient { http: reqwest::Client::new(), base_url, private, forwarded_for: None }
    }

    /// A client of a test Foyer: its slot's tokens and the viewer-token secret are private.
    pub fn of(foyer: &TestFoyer) -> ChatClient {
        let slot = &foyer.slot;
        let bot = slot.bot_user_id();
        let private = [slot.as_token.as_str(), &slot.hs_token, &slot.api_token, WEBCHAT_SECRET, &bot];
        ChatClient { http: foyer.http.clone(), ..ChatClient::new(&foyer.base_url, &private) }
    }

    /// This client, also checking that no answer holds any of `values` (say, the emails
    /// of the test's tickets).
    pub fn keeping(mut self, values: &[&str]) -> ChatClient {
        self.private.extend(values.iter().filter(|v| !v.is_empty()).map(|v| (*v).to_owned()));
        self
    }

    /// This client, its requests said to come from `client` (`X-Forwarded-For`).
    pub fn forwarded_for(&self, client: &str) -> ChatClient {
        ChatClient { forwarded_for: Some(client.to_owned()), ..self.clone() }
    }

    /// Any request to `path` (under `/chat/`), with the session as a bearer when given:
    /// (status, JSON body or `null`, text), the text checked.
    pub async fn request(
        &self, method: reqwest::Method, path: &str, session: Option<&str>, body: Option<&Value>,
    ) -> (u16, Value, String) {
        self.request_keeping(method, path, session, body, &[]).await
    }

    /// [`ChatClient::request`], also checking that the answer holds none of `sent`.
    async fn request_keeping(
        &self, method: reqwest::Method, path: &str, session: Option<&str>, body: Option<&Value>, sent: &[String],
    ) -> (u16, Value, String) {
        assert!(path.starts_with("/chat/"), "{path} is not a web chat path");
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base_url));
        if let Some(session) = session {
            request = request.bearer_auth(session);
        }
        if let Some(client) = &self.forwarded_for {
            request = request.header("X-Forwarded-For", client);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|e| panic!("{method} {path}: the body: {e}"));
        let private: Vec<String> = self.private.iter().chain(sent).cloned().collect();
        assert_private(&format!("{method} {path} ({status})"), &text, &private);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
    }

    /// `GET path`: the page, its assets.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let (status, _, text) = self.request(reqwest::Method::GET, path, None, None).await;
        (status, text)
    }

    /// `POST /chat/v1/session`. The answer must not hold the viewer token or claim code
    /// it was sent either.
    pub async fn session(&self, body: &Value) -> (u16, Value, String) {
        let sent: Vec<String> =
            ["token", "claim_code"].iter().filter_map(|key| body[key].as_str().map(str::to_owned)).collect();
        self.request_keeping(reqwest::Method::POST, "/chat/v1/session", None, Some(body), &sent).await
    }

    /// `POST /chat/v1/messages` as `session`.
    pub async fn post_message(&self, session: &str, body: &Value) -> (u16, Value, String) {
        self.request(reqwest::Method::POST, "/chat/v1/messages", Some(session), Some(body)).await
    }

    /// `POST /chat/v1/reports` as `session`.
    pub async fn report(&self, session: &str, body: &Value) -> (u16, Value, String) {
        self.request(reqwest::Method::POST, "/chat/v1/reports", Some(session), Some(body)).await
    }

    /// `DELETE /chat/v1/messages/{event_id}` as `session`.
    pub async fn delete_message(&self, session: &str, event_id: &str) -> (u16, Value, String) {
        let path = format!("/chat/v1/messages/{}", super::enc(event_id));
        self.request(reqwest::Method::DELETE, &path, Some(session), None).await
    }

    /// `GET /chat/v1/stream` as `session`, from `last_event_id` when given: the status,
    /// and the stream or, when refused, the (checked) answer.
    pub async fn stream(&self, session: &str, last_event_id: Option<u64>) -> (u16, Result<ChatStream, String>) {
        let mut request = self.http.get(format!("{}/chat/v1/stream", self.base_url)).bearer_auth(session);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("GET /chat/v1/stream");
        let status = response.status().as_u16();
        if status != 200 {
            let text = response.text().await.expect("the stream's refusal");
            assert_private(&format!("GET /chat/v1/stream ({status})"), &text, &self.private);
            return (status, Err(text));
        }
        let stream = ChatStream { response, buffer: String::new(), private: self.private.clone() };
        (status, Ok(stream))
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// A stream being read. Each block of its text (an event, or a keep-alive comment) is
/// checked once complete, and what is left when it ends.
pub struct ChatStream {
    response: reqwest::Response,
    buffer: String,
    private: Vec<String>,
}

impl ChatStream {
    /// The next event, or `None` when the stream ends or `limit` passes.
    pub async fn next(&mut self, limit: Duration) -> Option<Sse> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                assert_private("the stream", &block, &self.private);
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
                if let Some(data) = data {
                    sse.data = serde_json::from_str(&data).unwrap_or_else(|e| panic!("an event's data ({e}): {data}"));
                    return Some(sse);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    self.buffer.push_str(std::str::from_utf8(&chunk).expect("the stream is UTF-8"));
                }
                Ok(_) => {
                    assert_private("the stream's end", &self.buffer, &self.private);
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// Events until one matches `until`, which is returned last; fails when none comes
    /// within 30 s of the one before.
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

/// Now, in seconds since the epoch, as a token's `iat` says it.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A viewer token: `claims` signed with HS256 and `secret`, as the platform mints one.
pub fn mint(secret: &str, claims: Value) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap()
}

/// A session for ticket `tid` of reservation `rid`, from a token signed with the test
/// Foyers' secret, for a viewer named `name`; panics if it is refused.
pub async fn session_for(foyer: &TestFoyer, rid: &str, tid: &str, name: &str) -> String {
    let claims =
        serde_json::json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": rid, "tid": tid, "name": name});
    let (status, answer, text) =
        ChatClient::of(foyer).session(&serde_json::json!({"token": mint(WEBCHAT_SECRET, claims)})).await;
    assert_eq!(status, 200, "{text}");
    answer["session"].as_str().expect("a session").to_owned()
}

/// Whether an event is the message with this body.
pub fn is_message(body: &str) -> impl Fn(&Sse) -> bool + '_ {
    move |e| e.event == "message" && e.data["body"] == body
}

#[cfg(test)]
mod tests {
    use super::{assert_private, email_in, keep_private, matrix_id_in};

    #[test]
    fn matrix_ids_and_emails_are_found_and_names_are_not() {
        let id = "@_foyer_web_abc:localhost";
        assert_eq!(matrix_id_in(&format!("{{\"name\":\"{id}\"}}")), Some(id));
        assert_eq!(matrix_id_in("hi @member3_ab12:example.org:8448!"), Some("@member3_ab12:example.org:8448"));
        assert_eq!(matrix_id_in("@media (prefers-color-scheme:dark) @everyone: hello"), None);
        assert_eq!(email_in("write to dana.f@example.org."), Some("dana.f@example.org"));
        assert_eq!(email_in("@host: a@b c @ d"), None);
    }

    #[test]
    #[should_panic(expected = "must never reach a browser")]
    fn a_private_value_fails_the_check() {
        assert_private("an answer", r#"{"session": "s", "hint": "syt_private-token"}"#, &["syt_private-token".into()]);
    }

    #[test]
    #[should_panic(expected = "must never reach a browser")]
    fn a_value_kept_private_by_any_test_fails_the_check() {
        keep_private(["kept-by-another-test-5b1f"]);
        assert_private("an answer", "data: kept-by-another-test-5b1f", &[]);
    }

    #[test]
    #[should_panic(expected = "the Matrix ID \"@_foyer_web_x:example.org\"")]
    fn a_web_users_matrix_id_fails_the_check() {
        assert_private("the stream", r#"data: {"sender": "@_foyer_web_x:example.org"}"#, &[]);
    }
}
