//! The load generator of the intake benchmarks: raw HTTP/1.1 on kept-alive connections,
//! each request made and signed before the clock starts.
//!
//! Why not reqwest: on this 2-core machine the generator shares the cores with Foyer, and
//! reqwest with signing in the loop took 46 µs of CPU a webhook, half as much as Foyer
//! itself; that was CPU Foyer could not have. A platform's sender runs on a machine of
//! its own. Here a request costs a `write` and a `read` or two.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// One request, whole: its head and body, ready to write.
pub(crate) struct Request(Vec<u8>);

impl Request {
    /// A `POST` of `body` to `path` with `headers` (a `Content-Length` is added).
    pub(crate) fn post(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        let mut bytes = head("POST", path, headers);
        bytes.splice(bytes.len() - 2..bytes.len() - 2, format!("content-length: {}\r\n", body.len()).into_bytes());
        bytes.extend_from_slice(body);
        Request(bytes)
    }

    /// A `GET` of `path` with `headers`.
    pub(crate) fn get(path: &str, headers: &[(&str, &str)]) -> Request {
        Request(head("GET", path, headers))
    }
}

/// A request's head, ending in its blank line.
fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: foyer\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A response's status and body.
pub(crate) struct Response {
    pub status: u16,
    pub body: String,
}

/// Sends every request in `requests` over `concurrency` connections to `addr`
/// (`host:port`), one at a time on each; returns the rate and each request's latency,
/// sorted, and each response that was not `expected`.
pub(crate) async fn send_all(
    addr: &str, requests: Vec<Request>, concurrency: usize, expected: u16,
) -> (f64, Vec<Duration>, Vec<Response>) {
    let total = requests.len();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (requests, next, addr) = (requests.clone(), next.clone(), addr.to_owned());
            tokio::spawn(async move {
                let mut connection = Connection::open(&addr).await;
                let (mut latencies, mut unexpected) = (Vec::new(), Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(i) else { return (latencies, unexpected) };
                    let sent = Instant::now();
                    let response = connection.exchange(request).await;
                    latencies.push(sent.elapsed());
                    if response.status != expected {
                        unexpected.push(response);
                    }
                }
            })
        })
        .collect();
    let (mut latencies, mut unexpected) = (Vec::with_capacity(total), Vec::new());
    for worker in workers {
        let (l, u) = worker.await.expect("a load worker");
        latencies.extend(l);
        unexpected.extend(u);
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies, unexpected)
}

/// One kept-alive connection and its read buffer.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    async fn open(addr: &str) -> Connection {
        let stream = TcpStream::connect(addr).await.expect("connect to Foyer");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Connection { stream, buf: Vec::with_capacity(4096) }
    }

    /// Writes `request` and reads its response (`Content-Length` bodies only, as Foyer
    /// sends them); a closed connection is reopened for the next request.
    async fn exchange(&mut self, request: &Request) -> Response {
        self.stream.write_all(&request.0).await.expect("write a request");
        self.buf.clear();
        let (head_end, length) = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break (end + 4, content_length(&self.buf[..end]));
            }
            self.read_more().await;
        };
        while self.buf.len() < head_end + length {
            self.read_more().await;
        }
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status = head.get(9..12).and_then(|s| s.parse().ok()).expect("an HTTP status line");
        if head.to_ascii_lowercase().contains("connection: close") {
            *self = Connection::open(&self.stream.peer_addr().expect("peer").to_string()).await;
        }
        Response { status, body: String::from_utf8_lossy(&self.buf[head_end..head_end + length]).into_owned() }
    }

    async fn read_more(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.expect("read a response");
        assert!(n > 0, "Foyer closed the connection mid-response");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

/// The `Content-Length` of a response head (0 when it has none).
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}
