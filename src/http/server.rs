//! The listener, served by hand rather than with `axum::serve`, so that no client can
//! jam Foyer by being slow or by being many:
//!
//! - hyper gets a timer, so a client has [`Limits::header_timeout`] to send a request's
//!   headers (hyper starts that timer whenever it waits for a request, so it also closes
//!   an idle keep-alive connection);
//! - a request's body must arrive in full within [`Limits::body_timeout`] of its headers,
//!   or the answer is 408 and the connection is closed;
//! - a body whose declared `Content-Length` is over its route's limit gets 413 before any
//!   of it is read;
//! - at most [`Limits::max_in_flight`] requests are handled at once; beyond that a request
//!   gets 503 at once (not queued), except the homeserver's, health checks and metrics,
//!   which have a small reserve of their own;
//! - at most [`Limits::max_connections`] connections are open; beyond that new ones wait
//!   in the kernel's backlog until one closes, so sockets never use up the file
//!   descriptors the database and the homeserver client need;
//! - the bodies read before their sender is proven (webhooks, ingest hooks) share one
//!   budget of [`Limits::body_budget`] bytes; over it a request gets 503 at once;
//! - with `appservice.homeserver_listen`, the homeserver API has a listener of its own
//!   with [`HOMESERVER_CONNECTIONS`] connections nobody else can take: a stranger who
//!   holds every connection of the main listener (a request every few seconds keeps one
//!   open for ever) cannot make the homeserver's transactions wait. No per-address cap
//!   and no connection age: the web chat's long-lived streams all come from one proxy.

use std::{
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::Response,
};
use hyper::service::Service as _;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};

use super::error;

/// Default [`Limits::header_timeout`].
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Limits::body_timeout`]: 1 MiB of webhook in 30 s is 35 KB/s, and the
/// homeserver's transactions come over a fast link.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`Limits::max_in_flight`]: far above the intake benchmark's 64 concurrent
/// senders and the load test's 256, far below what exhausts memory.
const MAX_IN_FLIGHT: usize = 1024;
/// Requests the homeserver, health checks and metrics may still make when the others are
/// over [`Limits::max_in_flight`]. Synapse sends one transaction at a time.
const RESERVE: usize = 32;
/// Open connections at most; below it the cap follows the open-files limit, which Foyer
/// raises to its hard limit at start ([`raise_open_files_limit`]). Each web chat viewer
/// holds a connection for as long as they watch, and an instance is built for 10,000 of
/// them; at the 16 KiB a viewer may cost (BENCHMARKS.md), 65,536 connections are 1 GiB,
/// a bound on what strangers can make Foyer hold.
const MAX_CONNECTIONS: usize = 65_536;
/// The soft open-files limit asked for when the hard one is unlimited (Linux never
/// allows more than `fs.nr_open`, 1,048,576 by default).
const OPEN_FILES_WHEN_UNLIMITED: u64 = 1_048_576;
/// File descriptors kept for everything but client connections: the database, the
/// homeserver client, logs.
const FDS_KEPT: u64 = 256;
/// Connections of the homeserver's own listener (`appservice.homeserver_listen`), kept
/// out of [`MAX_CONNECTIONS`]'s file descriptors. Synapse keeps a handful to one
/// appservice (it sends one transaction at a time, plus pings and queries).
pub const HOMESERVER_CONNECTIONS: usize = 64;
/// Default [`Limits::body_budget`]: 64 webhooks of the full 1 MiB at once, far more than
/// a platform's small events need, and a bound on what strangers can make Foyer hold.
const BODY_BUDGET: usize = 64 * 1024 * 1024;
/// After SIGTERM, how long requests under way may take to finish before their
/// connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Homeserver transactions: the same limit as `appservice.rs` applies while reading.
const MAX_TRANSACTION_BYTES: u64 = 32 * 1024 * 1024;
/// Routes that read no body (everything but those below) still refuse a large one.
const MAX_OTHER_BODY_BYTES: u64 = 64 * 1024;

/// The listener's limits. The defaults suit production; the environment variables
/// `FOYER_HTTP_HEADER_TIMEOUT_MS`, `FOYER_HTTP_BODY_TIMEOUT_MS`,
/// `FOYER_HTTP_MAX_IN_FLIGHT`, `FOYER_HTTP_MAX_CONNECTIONS` and
/// `FOYER_HTTP_BODY_BUDGET_BYTES`, read once at start, exist so that tests can make them
/// small (a test must not wait 30 s for a timeout, nor open 4096 connections); operators
/// have no need to set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive in full, counted from its headers.
    pub body_timeout: Duration,
    /// Requests handled at once; beyond it, 503 at once.
    pub max_in_flight: usize,
    /// Connections open at once on the main listener; beyond it, new ones wait to be
    /// accepted. (The homeserver's own listener has [`HOMESERVER_CONNECTIONS`].)
    pub max_connections: usize,
    /// Bytes of request bodies buffered at once, across all requests, before their
    /// sender is proven; beyond it, 503 at once.
    pub body_budget: usize,
}

/// An environment variable that is not a limit.
#[derive(Debug, thiserror::Error)]
#[error("{name} must be a whole number above 0, not {value:?}")]
pub struct LimitsError {
    name: &'static str,
    value: String,
}

impl Limits {
    /// The defaults, with what the environment (`env`) overrides.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Limits, LimitsError> {
        let number = |name: &'static str| -> Result<Option<u64>, LimitsError> {
            let Some(value) = env(name) else { return Ok(None) };
            match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(LimitsError { name, value }),
            }
        };
        let millis = |name| number(name).map(|n| n.map(Duration::from_millis));
        Ok(Limits {
            header_timeout: millis("FOYER_HTTP_HEADER_TIMEOUT_MS")?.unwrap_or(HEADER_TIMEOUT),
            body_timeout: millis("FOYER_HTTP_BODY_TIMEOUT_MS")?.unwrap_or(BODY_TIMEOUT),
            max_in_flight: number("FOYER_HTTP_MAX_IN_FLIGHT")?.map_or(MAX_IN_FLIGHT, |n| n as usize),
            max_connections: number("FOYER_HTTP_MAX_CONNECTIONS")?
                .map_or_else(|| connection_cap(open_files_limit()), |n| n as usize),
            body_budget: number("FOYER_HTTP_BODY_BUDGET_BYTES")?.map_or(BODY_BUDGET, |n| n as usize),
        })
    }
}

/// The process's limit on open files (`RLIMIT_NOFILE`), if it has one.
fn open_files_limit() -> Option<u64> {
    let (soft, _) = open_files_limits()?;
    (soft != u64::MAX).then_some(soft)
}

/// The soft and hard `RLIMIT_NOFILE`, unlimited as `u64::MAX`.
fn open_files_limits() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) only writes the struct it is given, which lives on this stack.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    // `rlim_t` is u64 on Linux, not on every platform.
    #[allow(clippy::unnecessary_cast)]
    let value = |v: libc::rlim_t| if v == libc::RLIM_INFINITY { u64::MAX } else { v as u64 };
    (read == 0).then(|| (value(limit.rlim_cur), value(limit.rlim_max)))
}

/// What [`raise_open_files_limit`] did, for the start's log line.
#[derive(Debug)]
pub enum OpenFiles {
    /// The soft limit was at the hard one already (`None`: unlimited or unreadable).
    Kept(Option<u64>),
    Raised {
        from: u64,
        to: u64,
    },
    /// The kernel refused (a container's or a seccomp filter's rule): `limit` stays.
    Refused {
        limit: u64,
        wanted: u64,
        error: std::io::Error,
    },
}

/// Raises the process's soft open-files limit to its hard limit. Every web chat stream
/// holds a socket for as long as its viewer watches, and the usual soft limit (1024)
/// would cap an instance far below its audience, while the hard limit (524,288 under
/// systemd, `LimitNOFILE=` in the unit) allows them. Called at start, before the
/// [`Limits`] are read, so that the connection cap follows the raised limit.
pub fn raise_open_files_limit() -> OpenFiles {
    let Some((soft, hard)) = open_files_limits() else { return OpenFiles::Kept(None) };
    let Some(wanted) = raised_soft_limit(soft, hard) else {
        return OpenFiles::Kept((soft != u64::MAX).then_some(soft));
    };
    // `wanted` fits `rlim_t`: it is at most the hard limit read as one.
    #[allow(clippy::unnecessary_cast)]
    let limit = libc::rlimit { rlim_cur: wanted as libc::rlim_t, rlim_max: hard_rlim(hard) };
    // SAFETY: setrlimit(2) only reads the struct it is given, which lives on this stack.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        OpenFiles::Raised { from: soft, to: wanted }
    } else {
        OpenFiles::Refused { limit: soft, wanted, error: std::io::Error::last_os_error() }
    }
}

/// The hard limit as `rlim_t`, unlimited as `RLIM_INFINITY`.
#[allow(clippy::unnecessary_cast)]
fn hard_rlim(hard: u64) -> libc::rlim_t {
    if hard == u64::MAX { libc::RLIM_INFINITY } else { hard as libc::rlim_t }
}

/// The soft limit to ask for: the hard one (or [`OPEN_FILES_WHEN_UNLIMITED`]), when it is
/// above the soft one.
fn raised_soft_limit(soft: u64, hard: u64) -> Option<u64> {
    let wanted = if hard == u64::MAX { OPEN_FILES_WHEN_UNLIMITED } else { hard };
    (soft < wanted).then_some(wanted)
}

/// [`MAX_CONNECTIONS`], or fewer so that [`FDS_KEPT`] descriptors stay free, and the
/// homeserver listener's [`HOMESERVER_CONNECTIONS`].
fn connection_cap(open_files: Option<u64>) -> usize {
    let kept = FDS_KEPT + HOMESERVER_CONNECTIONS as u64;
    let fit = open_files.map_or(MAX_CONNECTIONS as u64, |n| n.saturating_sub(kept));
    fit.clamp(16, MAX_CONNECTIONS as u64) as usize
}

/// The largest body `path` takes; a declared `Content-Length` over it gets 413 at once.
fn body_limit(path: &str) -> u64 {
    if path == "/webhooks/v1/events" {
        super::webhooks::MAX_BODY_BYTES as u64
    } else if path.starts_with("/_matrix/app/") {
        MAX_TRANSACTION_BYTES
    } else if path.starts_with("/ingest/") {
        super::ingest::MAX_BODY_BYTES as u64
    } else if path == "/status/login" {
        super::status::MAX_LOGIN_BYTES as u64
    } else {
        MAX_OTHER_BODY_BYTES
    }
}

/// Whether `path` may use the [`RESERVE`]: the homeserver's API, health checks and
/// metrics, so a flood of other requests neither marks Foyer down in Synapse nor gets it
/// restarted, and can be watched. (All of them answer a caller without the right token
/// before reading its body, so nobody else holds these places long.)
fn uses_reserve(path: &str) -> bool {
    path.starts_with("/_matrix/app/") || path.starts_with("/health/") || path == "/metrics"
}

/// The bytes of request bodies buffered before their sender is proven, shared by every
/// request of a listener: each handler that reads such a body takes its bytes from here
/// as they arrive and gives them back when it is done, so many large bodies at once get
/// 503 rather than memory. The guard puts it in every request's extensions.
#[derive(Clone, Debug)]
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        BodyBudget(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// Takes `bytes` of the budget, or `None` at once if that many are not free now.
    pub fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        self.0.clone().try_acquire_many_owned(bytes).ok()
    }
}

/// What the requests share: the in-flight permits, the body deadline and budget.
#[derive(Clone)]
pub struct Guard {
    in_flight: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    body_timeout: Duration,
    budget: BodyBudget,
    /// When a shed request was last logged: a flood logs one line per 10 s, not one per request.
    shed_logged_at: Arc<Mutex<Option<Instant>>>,
}

impl Guard {
    pub fn new(limits: &Limits) -> Guard {
        // Every reason from the start, so that a dashboard sees 0 rather than nothing.
        for reason in ["too_large", "busy", "body_timeout", "body_budget"] {
            metrics::counter!("foyer_http_refused_total", "reason" => reason).increment(0);
        }
        Guard {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            reserve: Arc::new(Semaphore::new(RESERVE)),
            body_timeout: limits.body_timeout,
            budget: BodyBudget::new(limits.body_budget),
            shed_logged_at: Default::default(),
        }
    }

    fn log_shed(&self, path: &str) {
        let Ok(mut at) = self.shed_logged_at.lock() else { return };
        if at.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *at = Some(Instant::now());
            tracing::warn!(path, "too many requests in flight: answering 503 (logged at most every 10 s)");
        }
    }
}

/// The middleware in front of every route: the declared length, a permit, the deadline.
pub async fn guard(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(guard.budget.clone());
    let path = super::logged_path(request.uri().path()).to_owned();
    let matrix = path.starts_with("/_matrix/");
    let limit = body_limit(&path);
    if let Some(declared) = declared_length(request.headers())
        && declared > limit
    {
        metrics::counter!("foyer_http_refused_total", "reason" => "too_large").increment(1);
        tracing::info!(path, declared, limit, "request refused: its declared body is too large");
        let errcode = if matrix { "M_TOO_LARGE" } else { "FOYER_TOO_LARGE" };
        return closing(error(StatusCode::PAYLOAD_TOO_LARGE, errcode, format!("the body is over {limit} bytes")));
    }
    let permit = match guard.in_flight.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) if uses_reserve(&path) => guard.reserve.clone().try_acquire_owned().ok(),
        Err(_) => None,
    };
    let Some(permit) = permit else {
        metrics::counter!("foyer_http_refused_total", "reason" => "busy").increment(1);
        guard.log_shed(&path);
        let errcode = if matrix { "M_UNKNOWN" } else { "FOYER_UNAVAILABLE" };
        let mut response = error(StatusCode::SERVICE_UNAVAILABLE, errcode, "Foyer is busy; retry in a moment");
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return closing(response);
    };
    let expired = Arc::new(AtomicBool::new(false));
    let deadline = guard.body_timeout;
    let request = request.map(|body| Body::new(Deadline::new(body, deadline, expired.clone())));
    let response = next.run(request).await;
    drop(permit);
    if expired.load(Ordering::Relaxed) {
        metrics::counter!("foyer_http_refused_total", "reason" => "body_timeout").increment(1);
        tracing::info!(path, "request refused: its body did not arrive in time");
        let errcode = if matrix { "M_UNKNOWN" } else { "FOYER_TIMEOUT" };
        let message = format!("the body did not arrive within {} s", deadline.as_secs_f64());
        return closing(error(StatusCode::REQUEST_TIMEOUT, errcode, message));
    }
    response
}

/// The `Content-Length` a request declares, if any (hyper has refused malformed ones).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Asks hyper to close the connection after this answer: the client may still be
/// sending a body nobody will read.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline has passed, and says so in `expired`.
struct Deadline {
    body: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    expired: Arc<AtomicBool>,
}

impl Deadline {
    fn new(body: Body, limit: Duration, expired: Arc<AtomicBool>) -> Deadline {
        Deadline { body, sleep: Box::pin(tokio::time::sleep(limit)), limit, expired }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimedOut(Duration);

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>, cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Which listener: the main one, or the homeserver's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `appservice.listen`: webhooks, ingest, read API, pages (and the homeserver API
    /// when it has no listener of its own).
    Main,
    /// `appservice.homeserver_listen`: the homeserver API, health and metrics only.
    Homeserver,
}

impl Listener {
    fn as_str(self) -> &'static str {
        match self {
            Listener::Main => "main",
            Listener::Homeserver => "homeserver",
        }
    }

    /// How many connections it holds open at most.
    pub fn max_connections(self, limits: &Limits) -> usize {
        match self {
            Listener::Main => limits.max_connections,
            Listener::Homeserver => HOMESERVER_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets the requests under way
/// finish (for at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener, which: Listener, app: Router, limits: &Limits, mut stop: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let max_connections = which.max_connections(limits);
    let connections = Arc::new(Semaphore::new(max_connections));
    let label = which.as_str();
    metrics::gauge!("foyer_http_connections", "listener" => label).set(0.0);
    loop {
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::debug!(
                    listener = label,
                    max = max_connections,
                    "all connections in use: waiting for one to close"
                );
                tokio::select! {
                    permit = connections.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break, // never closed
                    },
                    _ = stopped(&mut stop) => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = stream;
        // Each request carries its connection's peer, as `axum::serve` would put it: the web
        // chat's per-address throttle reads it (`webchat::address`).
        let app = TowerToHyperService::new(app.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.call(request)
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        metrics::gauge!("foyer_http_connections", "listener" => label).increment(1.0);
        tokio::spawn(async move {
            // A header timeout here may also be an idle keep-alive connection closed.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed on an error");
            }
            metrics::gauge!("foyer_http_connections", "listener" => label).decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still under way after the grace period: dropped");
    }
}

/// Returns once `stop` is true (the guard `wait_for` gives is not `Send`, so it is dropped here).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A failed `accept`: a connection that went away before it was accepted is nothing;
/// anything else (no file descriptor left) is logged and waited out.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_read_the_environment() {
        let defaults = Limits::from_env(|_| None).unwrap();
        assert_eq!(
            (defaults.header_timeout, defaults.body_timeout, defaults.max_in_flight),
            (HEADER_TIMEOUT, BODY_TIMEOUT, MAX_IN_FLIGHT)
        );
        assert_eq!(defaults.body_budget, BODY_BUDGET);
        let set = |name: &str| match name {
            "FOYER_HTTP_HEADER_TIMEOUT_MS" => Some("1500".to_owned()),
            "FOYER_HTTP_BODY_TIMEOUT_MS" => Some("2000".to_owned()),
            "FOYER_HTTP_MAX_IN_FLIGHT" => Some("8".to_owned()),
            "FOYER_HTTP_MAX_CONNECTIONS" => Some("16".to_owned()),
            "FOYER_HTTP_BODY_BUDGET_BYTES" => Some("100000".to_owned()),
            _ => None,
        };
        let limits = Limits::from_env(set).unwrap();
        assert_eq!((limits.max_connections, limits.body_budget), (16, 100_000));
        assert_eq!(limits.header_timeout, Duration::from_millis(1500));
        assert_eq!(limits.body_timeout, Duration::from_secs(2));
        assert_eq!(limits.max_in_flight, 8);
        for bad in ["0", "-1", "ten", "1.5"] {
            let error = Limits::from_env(|name| (name == "FOYER_HTTP_BODY_TIMEOUT_MS").then(|| bad.to_owned()));
            let message = error.expect_err(bad).to_string();
            assert!(message.starts_with("FOYER_HTTP_BODY_TIMEOUT_MS must be a whole number above 0"), "{message}");
        }
    }

    #[test]
    fn connections_leave_file_descriptors_for_the_rest() {
        assert_eq!(connection_cap(None), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(1_048_576)), MAX_CONNECTIONS);
        // systemd's default hard limit, which Foyer raises its soft limit to: far more
        // than the 10,000 viewers of the web chat benchmark.
        assert_eq!(connection_cap(Some(524_288)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(20_000)), 19_680);
        assert_eq!(connection_cap(Some(1024)), 704);
        assert_eq!(connection_cap(Some(100)), 16);
    }

    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        assert_eq!(raised_soft_limit(1024, 524_288), Some(524_288));
        assert_eq!(raised_soft_limit(1024, u64::MAX), Some(OPEN_FILES_WHEN_UNLIMITED));
        assert_eq!(raised_soft_limit(4096, 4096), None);
        assert_eq!(raised_soft_limit(u64::MAX, u64::MAX), None);
        // And in this process (run under `ulimit -S -n 1024` to see it raise): after it,
        // the soft limit is the hard one, or was kept.
        let done = raise_open_files_limit();
        let (soft, hard) = open_files_limits().expect("getrlimit");
        match done {
            OpenFiles::Raised { to, .. } => {
                assert_eq!(soft, to, "the limit in force is the one reported");
                assert_eq!(soft, hard.min(OPEN_FILES_WHEN_UNLIMITED));
            }
            OpenFiles::Kept(limit) => assert_eq!(limit.unwrap_or(u64::MAX), soft),
            OpenFiles::Refused { error, .. } => panic!("setrlimit refused here: {error}"),
        }
        assert!(raised_soft_limit(soft, hard).is_none(), "a second call has nothing to raise");
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(100);
        let first = budget.take(60).expect("60 of 100");
        assert!(budget.take(41).is_none(), "over the budget: refused at once");
        let mut second = budget.take(30).expect("30 of the 40 left");
        second.merge(budget.take(10).expect("the last 10"));
        assert!(budget.take(1).is_none());
        drop(first);
        assert!(budget.take(60).is_some(), "given back when dropped");
        drop(second);
        assert!(budget.take(100).is_some());
        assert!(budget.take(usize::MAX).is_none(), "more than a permit count holds: refused, no panic");
    }

    #[test]
    fn each_route_has_its_body_limit() {
        assert_eq!(body_limit("/webhooks/v1/events"), 1024 * 1024);
        assert_eq!(body_limit("/_matrix/app/v1/transactions/1"), 32 * 1024 * 1024);
        assert_eq!(body_limit("/status/login"), 4096);
        assert_eq!(body_limit("/ingest/v1/rtmp"), 64 * 1024);
        assert_eq!(body_limit("/api/v1/reservations"), 64 * 1024);
        assert!(uses_reserve("/_matrix/app/v1/transactions/1") && uses_reserve("/health/ready"));
        assert!(uses_reserve("/metrics"));
        assert!(!uses_reserve("/webhooks/v1/events") && !uses_reserve("/status"));
    }
}
