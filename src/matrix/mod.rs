//! The one Matrix client: ruma request types sent with reqwest, as the appservice.

pub(crate) mod handshake;
pub mod rooms;
pub mod synapse_admin;

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use ruma::api::{
    IncomingResponseExt as _, OutgoingRequest, OutgoingRequestAppserviceExt as _, SupportedVersions,
    auth_scheme::{AuthScheme, SendAccessToken},
    path_builder::PathBuilder,
};
use ruma::{
    RoomId, UserId,
    api::{
        AppserviceUserIdentity,
        client::{message::get_message_events, state::send_state_event},
    },
    events::{AnyTimelineEvent, StateEventContent},
    serde::Raw,
};
use serde::Deserialize;
use tokio::time::Instant;

pub use self::handshake::{HandshakeError, HandshakeReport, handshake};
use crate::secret::Secret;

/// Longest single request; anything slower is treated as a network failure and retried.
/// Set on the one HTTP client (see `startup`), so it bounds every homeserver call.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("cannot reach the homeserver for {endpoint}: {message}")]
    Network { endpoint: String, message: String },
    /// The homeserver took longer than [`REQUEST_TIMEOUT`] to answer: it is up (it
    /// accepted the request) but busy, or itself waiting on another server.
    #[error("the homeserver did not answer {endpoint} in time: {message}")]
    Timeout { endpoint: String, message: String },
    #[error("{endpoint} answered {status} {errcode}: {message}")]
    Api { endpoint: String, status: u16, errcode: String, message: String, retry_after: Option<Duration> },
    #[error("{endpoint} answered with a body Foyer cannot read: {message}")]
    BadResponse { endpoint: String, message: String },
    #[error("cannot build the request for {endpoint}: {message}")]
    Request { endpoint: String, message: String },
}

impl MatrixError {
    /// The same error, naming the endpoint as `endpoint` (a path that held personal
    /// data, named without it).
    pub fn at(self, endpoint: String) -> Self {
        match self {
            Self::Network { message, .. } => Self::Network { endpoint, message },
            Self::Timeout { message, .. } => Self::Timeout { endpoint, message },
            Self::Api { status, errcode, message, retry_after, .. } => {
                Self::Api { endpoint, status, errcode, message, retry_after }
            }
            Self::BadResponse { message, .. } => Self::BadResponse { endpoint, message },
            Self::Request { message, .. } => Self::Request { endpoint, message },
        }
    }

    /// Network errors, 429 and 5xx may succeed later; other answers will not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } | Self::Timeout { .. } => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            Self::BadResponse { .. } | Self::Request { .. } => false,
        }
    }

    pub fn errcode(&self) -> Option<&str> {
        match self {
            Self::Api { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The standard Matrix error body; `retry_after_ms` comes with 429.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errcode: String,
    #[serde(default)]
    error: String,
    retry_after_ms: Option<u64>,
}

/// Talks to the homeserver's client-server API with the appservice token.
#[derive(Clone)]
pub struct MatrixClient {
    http: reqwest::Client,
    base_url: String,
    as_token: Secret,
    versions: SupportedVersions,
    /// When a request last failed for a network reason other than a timeout (refused,
    /// reset): the homeserver was down then. Unix milliseconds, 0 for never.
    outage_at: Arc<AtomicI64>,
}

impl MatrixClient {
    pub fn new(http: reqwest::Client, base_url: &url::Url, as_token: Secret, versions: SupportedVersions) -> Self {
        let base_url = base_url.as_str().trim_end_matches('/').to_owned();
        Self { http, base_url, as_token, versions, outage_at: Arc::default() }
    }

    /// Whether the homeserver was seen down (a connection refused or dropped) after `t`:
    /// then any request it was working on at `t` died with it.
    pub fn seen_down_since(&self, t: chrono::DateTime<chrono::Utc>) -> bool {
        self.outage_at.load(Ordering::Relaxed) > t.timestamp_millis()
    }

    /// The HTTP client, for calls outside the client-server API (the Synapse admin API).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends one request, as the bot (`as_user: None`) or as a user in our namespace.
    pub async fn send_once<R>(&self, request: R, as_user: Option<&UserId>) -> Result<R::IncomingResponse, MatrixError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = Cow<'a, SupportedVersions>>,
    {
        let identity = as_user.map(AppserviceUserIdentity::new).unwrap_or_default();
        let http_request = request
            .try_into_http_request_with_identity::<Vec<u8>>(
                &self.base_url,
                SendAccessToken::Appservice(self.as_token.expose()),
                identity,
                Cow::Borrowed(&self.versions),
            )
            .map_err(|e| MatrixError::Request { endpoint: "request".into(), message: e.to_string() })?;
        let endpoint = format!("{} {}", http_request.method(), http_request.uri().path());
        let request = reqwest::Request::try_from(http_request)
            .map_err(|e| MatrixError::Request { endpoint: endpoint.clone(), message: e.to_string() })?;
        let started = std::time::Instant::now();
        let answer = execute(&self.http, request, &endpoint, &self.outage_at).await;
        metrics::histogram!("foyer_homeserver_request_duration_seconds", "endpoint" => endpoint_name::<R>())
            .record(started.elapsed().as_secs_f64());
        let (status, body) = answer?;
        let response = http::Response::builder()
            .status(status)
            .body(body.as_slice())
            .map_err(|e| MatrixError::BadResponse { endpoint: endpoint.clone(), message: e.to_string() })?;
        R::IncomingResponse::try_from_http_response(response)
            .map_err(|e| MatrixError::BadResponse { endpoint, message: e.to_string() })
    }

    /// Sends a request, retrying transient failures with backoff and jitter until
    /// `deadline`. `429` waits at least the homeserver's `retry_after_ms`.
    pub async fn send<R>(
        &self, request: R, as_user: Option<&UserId>, deadline: Instant,
    ) -> Result<R::IncomingResponse, MatrixError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = Cow<'a, SupportedVersions>>,
    {
        let mut backoff = Backoff::default();
        loop {
            match self.send_once(request.clone(), as_user).await {
                Err(e) if e.is_transient() => {
                    let wait = backoff.next_wait().max(e.retry_after().unwrap_or_default());
                    if Instant::now() + wait >= deadline {
                        return Err(e);
                    }
                    metrics::counter!("foyer_homeserver_retries_total", "endpoint" => endpoint_name::<R>())
                        .increment(1);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "homeserver request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Puts one state event into a room, as the bot: the one way Foyer writes room state.
    /// `content` is ruma's type for the event where it has one; its event type and state
    /// key come with it. A PUT replaces the whole event.
    pub async fn put_state<C: StateEventContent>(
        &self, room_id: &RoomId, state_key: &C::StateKey, content: &C, deadline: Instant,
    ) -> Result<(), MatrixError> {
        let event_type = content.event_type();
        let body = serde_json::value::to_raw_value(content)
            .map_err(|e| MatrixError::Request { endpoint: format!("{event_type} state"), message: e.to_string() })?;
        let state_key = state_key.as_ref().to_owned();
        let request =
            send_state_event::v3::Request::new_raw(room_id.to_owned(), event_type, state_key, Raw::from_json(body));
        self.send(request, None, deadline).await.map(|_| ())
    }

    /// One page of a room's history as the bot, oldest first: up to `limit` messages and
    /// membership events after `from` (from the room's creation with `None`). Only these
    /// two types are asked for: a transcript needs nothing else (see `model::transcript`).
    pub async fn messages(
        &self, room_id: &RoomId, from: Option<&str>, limit: u32, deadline: Instant,
    ) -> Result<MessagesPage, MatrixError> {
        let mut request = get_message_events::v3::Request::new(room_id.to_owned(), ruma::api::Direction::Forward);
        request.from = from.map(str::to_owned);
        request.limit = ruma::UInt::from(limit);
        request.filter.types = Some(vec!["m.room.message".to_owned(), "m.room.member".to_owned()]);
        let response = self.send(request, None, deadline).await?;
        // No `end` (or one that does not move on) once the newest event was given.
        let next = response.end.filter(|end| Some(end.as_str()) != from && !response.chunk.is_empty());
        Ok(MessagesPage { events: response.chunk, next })
    }
}

impl MatrixClient {
    /// The room's latest `limit` messages and redactions as the bot, oldest first: what
    /// the web chat's log starts from when it has nothing of the room.
    pub async fn latest_messages(
        &self, room_id: &RoomId, limit: u32, deadline: Instant,
    ) -> Result<Vec<Raw<AnyTimelineEvent>>, MatrixError> {
        let mut request = get_message_events::v3::Request::new(room_id.to_owned(), ruma::api::Direction::Backward);
        request.limit = ruma::UInt::from(limit);
        request.filter.types = Some(vec!["m.room.message".to_owned(), "m.room.redaction".to_owned()]);
        let mut events = self.send(request, None, deadline).await?.chunk;
        events.reverse();
        Ok(events)
    }
}

/// A page of [`MatrixClient::messages`]: its events, and where the next page starts
/// (`None` when this was the last).
pub struct MessagesPage {
    pub events: Vec<Raw<AnyTimelineEvent>>,
    pub next: Option<String>,
}

/// A metric label for a ruma request type: its module, such as `invite_user` for
/// `ruma_client_api::membership::invite_user::v3::Request` (the path would hold room ids).
fn endpoint_name<R>() -> &'static str {
    let path = std::any::type_name::<R>();
    let mut parts = path.rsplit("::").skip(1);
    let is_version = |p: &str| p.len() > 1 && p.starts_with('v') && p[1..].bytes().all(|b| b.is_ascii_digit());
    match parts.next() {
        Some(version) if is_version(version) => parts.next().unwrap_or(path),
        Some(module) => module,
        None => path,
    }
}

/// Sends a prepared request and returns the status and body, mapping error statuses to
/// [`MatrixError::Api`].
async fn execute(
    http: &reqwest::Client, request: reqwest::Request, endpoint: &str, outage_at: &AtomicI64,
) -> Result<(u16, Vec<u8>), MatrixError> {
    let network = |e: reqwest::Error| {
        if e.is_timeout() {
            return MatrixError::Timeout { endpoint: endpoint.to_owned(), message: error_chain(&e) };
        }
        outage_at.fetch_max(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        MatrixError::Network { endpoint: endpoint.to_owned(), message: error_chain(&e) }
    };
    let response = http.execute(request).await.map_err(network)?;
    let status = response.status().as_u16();
    let retry_after_header = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.bytes().await.map_err(network)?.to_vec();
    if status < 400 {
        return Ok((status, body));
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let (errcode, message, retry_ms) = match parsed {
        Some(b) => (b.errcode, b.error, b.retry_after_ms),
        None => (String::new(), String::from_utf8_lossy(&body).chars().take(200).collect(), None),
    };
    Err(MatrixError::Api {
        endpoint: endpoint.to_owned(),
        status,
        errcode: if errcode.is_empty() { "(no errcode)".into() } else { errcode },
        message,
        retry_after: retry_ms.map(Duration::from_millis).or(retry_after_header),
    })
}

/// reqwest's top-level message is often just "error sending request"; the cause is below.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Exponential backoff from 250 ms to 5 s, with up to 25 % jitter so that many rooms
/// retrying at once do not hit the homeserver in lockstep. The cap is low so that work
/// resumes within seconds of a homeserver coming back.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Duration::from_millis(250) }
    }
}

impl Backoff {
    pub fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        let jitter = rand::random::<f64>() * 0.25;
        base + base.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    //! Failures a real homeserver cannot produce on demand (429, 5xx), from a stand-in.

    use std::sync::atomic::AtomicUsize;

    use axum::{Json, Router, http::StatusCode, routing::get};
    use ruma::api::{MatrixVersion, client::account::whoami};
    use serde_json::json;

    use super::*;

    #[test]
    fn endpoint_names_are_the_request_modules() {
        assert_eq!(endpoint_name::<ruma::api::client::membership::invite_user::v3::Request>(), "invite_user");
        assert_eq!(endpoint_name::<whoami::v3::Request>(), "whoami");
    }

    /// Serves whoami with the given answers in turn; returns the client and a call count.
    async fn stand_in(answers: Vec<(u16, serde_json::Value)>) -> (MatrixClient, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = Router::new().route(
            "/_matrix/client/v3/account/whoami",
            get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let (status, body) = answers[n.min(answers.len() - 1)].clone();
                async move { (StatusCode::from_u16(status).unwrap(), Json(body)) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let versions = SupportedVersions { versions: [MatrixVersion::V1_11].into(), features: Default::default() };
        (MatrixClient::new(reqwest::Client::new(), &url, Secret::new("t".repeat(40)), versions), calls)
    }

    #[tokio::test]
    async fn retries_429_and_5xx_honouring_retry_after() {
        let (client, calls) = stand_in(vec![
            (429, json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 600})),
            (502, json!({})),
            (200, json!({"user_id": "@foyer:example.org"})),
        ])
        .await;
        let started = Instant::now();
        let resp =
            client.send(whoami::v3::Request::new(), None, Instant::now() + Duration::from_secs(10)).await.unwrap();
        assert_eq!(resp.user_id, "@foyer:example.org");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= Duration::from_millis(600), "waited the retry_after_ms");
    }

    #[tokio::test]
    async fn other_4xx_are_not_retried() {
        let (client, calls) = stand_in(vec![(403, json!({"errcode": "M_FORBIDDEN", "error": "no"}))]).await;
        let err =
            client.send(whoami::v3::Request::new(), None, Instant::now() + Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(err.errcode(), Some("M_FORBIDDEN"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let (client, calls) = stand_in(vec![(503, json!({"errcode": "M_UNKNOWN"}))]).await;
        // Room for a few waits (250 ms, 500 ms, 1 s …) even when the first call is slow.
        let err =
            client.send(whoami::v3::Request::new(), None, Instant::now() + Duration::from_secs(3)).await.unwrap_err();
        assert!(err.is_transient());
        assert!(calls.load(Ordering::SeqCst) >= 2, "retried before the deadline");
    }
}
