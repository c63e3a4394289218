//! Web chat (docs/web-chat.md): many viewers of one room on one Foyer, and web fans
//! writing beside Matrix members.
//!
//! 1. `FOYER_BENCH_WEBCHAT_VIEWERS` viewers (default 10,000), each with a ticket of their
//!    own and a session from a viewer token, read the room's stream (`GET
//!    /chat/v1/stream`) while Matrix members send 10 messages a second for
//!    `FOYER_BENCH_WEBCHAT_SECONDS` (default 60). Reported: the delivery latency from each
//!    event's `origin_server_ts` to the viewer's read of it, Foyer's CPU per delivered
//!    message, its resident memory per connected viewer and its file descriptors.
//! 2. 20 web fans post once a second each (`POST /chat/v1/messages`) while Matrix
//!    members send 5 a second straight to Synapse, in between, for
//!    `FOYER_BENCH_WEBCHAT_POST_SECONDS` (default 60): what Foyer adds to a send. Each fan's first message (which registers
//!    and joins their web user) is sent before the clock starts.
//!
//! The viewers are a load generator in this process, on the same cores as Foyer and
//! Synapse: raw HTTP/1.1 on a tokio `TcpStream` each, read line by line (a reqwest client
//! per viewer would cost more than Foyer's side; see `load.rs`). Synapse's `rc_message`
//! is 1000 a second in the harness, so nobody is throttled.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{StreamExt as _, stream};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::{Notify, Semaphore},
    task::JoinSet,
};

use crate::{
    common::{
        enc,
        foyer::{TestFoyer, WEBCHAT_SECRET, open_reservation},
        percentile, random_token,
        synapse::Synapse,
        unique,
        users::TestUser,
    },
    measure::{
        Profile, busiest_threads, cores, cpu_seconds, machine, own_cpu_seconds, proc_value, rss_kib, thread_cpu,
        write_section,
    },
};

/// Room messages a second from the Matrix members.
const MESSAGES_PER_SECOND: u64 = 10;
/// Matrix members: they send the room's messages, and the direct sends of part 2.
const MEMBERS: usize = 20;
/// Web fans posting in part 2.
const WEB_FANS: usize = 20;
/// In part 2, a member's direct send comes with every this many web fans' posts: a probe
/// of Synapse's own pace (5 a second), not a load that doubles the fans'.
const DIRECT_EVERY: usize = 4;
/// Tickets per `ticket.granted` webhook (the most one may hold).
const GRANT_BATCH: usize = 1000;
/// Viewers connecting at once.
const CONNECTING_AT_ONCE: usize = 256;
/// The profile's own run of messages, after the measured one.
const PROFILE_SECONDS: u64 = 20;
/// The targets (issue 29).
const TARGET_P99_MS: f64 = 1000.0;
const TARGET_KIB_PER_VIEWER: f64 = 16.0;
const TARGET_CORES: f64 = 1.0;
const TARGET_POST_RATIO: f64 = 1.2;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// File descriptors a process has open.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A process's soft limit on open files.
fn open_files_limit(pid: u32) -> String {
    proc_value(pid, "limits", "Max open files").unwrap_or_else(|| "?".into())
}

/// CPU-seconds the whole machine has been busy (every process, `/proc/stat`), to tell
/// how much of it others took during a run on shared cores.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .map(|l| l.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    busy / 100.0 // USER_HZ
}

/// The 1-minute load average.
fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg.split_whitespace().next().unwrap_or("?").to_owned()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Delivery latencies, one bucket per millisecond, shared by every viewer.
struct Latencies {
    buckets: Vec<AtomicU64>,
    /// Deliveries of live messages, in every viewer.
    delivered: AtomicU64,
    /// `reset` events: a viewer fell behind its feed.
    resets: AtomicU64,
    /// Streams that ended or failed before the benchmark closed them.
    ended: AtomicU64,
    /// Whether deliveries count (off between the measured run and the profile's).
    counting: AtomicBool,
    /// Every delivery, counted or not, and the total a waiter wants ([`Latencies::reach`]).
    seen: AtomicU64,
    wanted: AtomicU64,
    reached: Notify,
}

/// The longest latency a bucket holds; longer ones go in the last.
const MAX_MS: usize = 120_000;

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            buckets: (0..=MAX_MS).map(|_| AtomicU64::new(0)).collect(),
            delivered: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            counting: AtomicBool::new(false),
            seen: AtomicU64::new(0),
            wanted: AtomicU64::new(u64::MAX),
            reached: Notify::new(),
        }
    }

    fn record(&self, ms: u64) {
        if self.counting.load(Ordering::Relaxed) {
            self.buckets[(ms as usize).min(MAX_MS)].fetch_add(1, Ordering::Relaxed);
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        if self.seen.fetch_add(1, Ordering::AcqRel) + 1 == self.wanted.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    /// Waits until `total` deliveries have been seen since the start, or `limit` passes.
    async fn reach(&self, total: u64, limit: Duration) {
        self.wanted.store(total, Ordering::Release);
        if self.seen.load(Ordering::Acquire) < total {
            let _ = tokio::time::timeout(limit, self.reached.notified()).await;
        }
    }

    /// The `p`th percentile (0–100) in ms, nearest rank.
    fn percentile(&self, p: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ms as u64;
            }
        }
        0
    }
}

/// One viewer: opens the stream with `session`, says when its backlog is read
/// (`ready`), then records each live message's latency until the task is aborted.
async fn watch(addr: String, session: String, latencies: Arc<Latencies>, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let Ok(mut stream) = TcpStream::connect(&addr).await else {
        latencies.ended.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET /chat/v1/stream HTTP/1.1\r\nhost: foyer\r\naccept: text/event-stream\r\nauthorization: Bearer {session}\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        latencies.ended.fetch_add(1, Ordering::Relaxed);
        return;
    }
    drop(session);
    // Lines of the response as they come: the head, then (inside the chunked body, whose
    // size lines match no field) the events' fields. Each event is one chunk, so no
    // field is cut by the chunking.
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let (mut status_read, mut live, mut last_seq) = (false, false, 0u64);
    let (mut kind, mut id, mut ts): (Option<Kind>, Option<u64>, Option<u64>) = (None, None, None);
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let read_at = now_ms();
        let mut start = 0;
        while let Some(end) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + end];
            start += end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !status_read {
                status_read = true;
                if !line.starts_with(b"HTTP/1.1 200") {
                    latencies.ended.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            } else if let Some(v) = line.strip_prefix(b"event:") {
                kind = Some(Kind::of(v.trim_ascii()));
            } else if let Some(v) = line.strip_prefix(b"id:") {
                id = number(v.trim_ascii());
            } else if let Some(v) = line.strip_prefix(b"data:") {
                ts = find(v, b"\"ts\":").and_then(|at| number(&v[at + 5..]));
            } else if line.is_empty() {
                // The end of an event (or of a chunk).
                match kind.take() {
                    Some(Kind::Message) => {
                        if let Some(seq) = id.filter(|&seq| seq > last_seq) {
                            last_seq = seq;
                            if live && let Some(ts) = ts {
                                latencies.record(read_at.saturating_sub(ts));
                            }
                        }
                    }
                    Some(Kind::Ready) => {
                        live = true;
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    Some(Kind::Reset) => {
                        latencies.resets.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Kind::Closed) => break,
                    Some(Kind::Other) | None => {}
                }
                (id, ts) = (None, None);
            }
        }
        buf.drain(..start);
        // The backlog may have grown it: 10,000 of those would weigh on the shared machine.
        if buf.capacity() > 8192 && buf.len() < 2048 {
            buf.shrink_to(2048);
        }
    }
    latencies.ended.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Message,
    Ready,
    Reset,
    Closed,
    Other,
}

impl Kind {
    fn of(name: &[u8]) -> Kind {
        match name {
            b"message" => Kind::Message,
            b"ready" => Kind::Ready,
            b"reset" => Kind::Reset,
            b"closed" => Kind::Closed,
            _ => Kind::Other,
        }
    }
}

/// The whole number at the start of `bytes`.
fn number(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A viewer token for ticket `tid`, as the platform mints one.
fn viewer_token(rid: &str, tid: &str, name: &str) -> String {
    let now = crate::common::webchat::now();
    let claims = json!({"aud": "foyer", "iat": now, "exp": now + 6 * 3600, "rid": rid, "tid": tid, "name": name});
    crate::common::webchat::mint(WEBCHAT_SECRET, claims)
}

/// Sessions for `tickets` (ticket id, name), `at_once` at a time; in the same order.
async fn sessions(foyer: &TestFoyer, rid: &str, tickets: Vec<(String, String)>, at_once: usize) -> Vec<String> {
    let url = format!("{}/chat/v1/session", foyer.base_url);
    let answers: Vec<(usize, String)> = stream::iter(tickets.into_iter().enumerate())
        .map(|(i, (tid, name))| {
            let (http, url, token) = (foyer.http.clone(), url.clone(), viewer_token(rid, &tid, &name));
            async move {
                // A refusal (a 503 included: Foyer too busy for 16 sessions at once) is
                // what the benchmark must show, not retry away.
                let resp = http.post(&url).json(&json!({"token": token})).send().await.expect("POST session");
                let status = resp.status().as_u16();
                let answer: Value = resp.json().await.unwrap_or(Value::Null);
                match status {
                    200 => (i, answer["session"].as_str().expect("a session").to_owned()),
                    _ => panic!("session for ticket {tid}: {status} {answer}"),
                }
            }
        })
        .buffer_unordered(at_once)
        .collect()
        .await;
    let mut sessions = vec![String::new(); answers.len()];
    for (i, session) in answers {
        sessions[i] = session;
    }
    sessions
}

/// Members send `per_second` messages a second in turn for `seconds`, each in a task of
/// its own so that a slow answer delays no other; returns how many were sent.
async fn converse(members: &[TestUser], room_id: &str, per_second: u64, seconds: u64, tag: &str) -> usize {
    let total = (per_second * seconds) as usize;
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = JoinSet::new();
    for i in 0..total {
        ticks.tick().await;
        let member = members[i % members.len()].clone();
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(room_id), random_token());
        let body = format!("{tag} {i}: a line of chat as people write it");
        sends.spawn(async move {
            let (status, answer) =
                member.request(reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": body}))).await;
            assert_eq!(status, 200, "a member's message: {answer}");
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.expect("a member's send");
    }
    total
}

/// Returns after Foyer's next heap trim (memory.rs, every 10 s), which hands back to the
/// system what was freed before it: resident memory read then is what is in use.
async fn heap_trimmed(foyer: &TestFoyer) {
    let trims = foyer.metric("foyer_memory_trims_total").await;
    crate::common::eventually(Duration::from_secs(60), "a heap trim", || async {
        (foyer.metric("foyer_memory_trims_total").await > trims).then_some(())
    })
    .await;
}

/// One timed send, by a web fan through Foyer or by a member straight to Synapse.
async fn timed(request: reqwest::RequestBuilder) -> Duration {
    let started = Instant::now();
    let resp = request.send().await.expect("a send");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "a send: {text}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench_webchat() {
    let viewers = setting("FOYER_BENCH_WEBCHAT_VIEWERS", 10_000) as usize;
    let seconds = setting("FOYER_BENCH_WEBCHAT_SECONDS", 60);
    let post_seconds = setting("FOYER_BENCH_WEBCHAT_POST_SECONDS", 60);
    let own_limit = open_files_limit(std::process::id());
    assert!(
        own_limit.parse::<usize>().is_ok_and(|n| n >= viewers + 1024),
        "this process may open {own_limit} files, too few for {viewers} viewers: raise `ulimit -n` (scripts/bench does)"
    );
    // Logging as in production (info), not the tests' debug.
    let foyer = TestFoyer::start_with(|yaml| yaml, &[("RUST_LOG", "info")]).await;
    let pid = foyer.child.id();
    let hs = Synapse::shared();
    let rid = unique("webchat");

    // The room, its members, and a ticket for every viewer and web fan.
    let prepared = Instant::now();
    foyer.accept("reservation.created", open_reservation(&rid, &[], 1)).await;
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        members.push(hs.create_user("member").await);
    }
    let member_tickets: Vec<(String, &str)> =
        members.iter().enumerate().map(|(i, m)| (format!("m{i}"), m.user_id.as_str())).collect();
    let member_tickets: Vec<(&str, &str)> = member_tickets.iter().map(|(t, u)| (t.as_str(), *u)).collect();
    foyer.grant(&rid, &member_tickets).await;
    let tickets: Vec<(String, String)> = (0..viewers)
        .map(|i| (format!("v{i}"), format!("Viewer {i}")))
        .chain((0..WEB_FANS).map(|i| (format!("w{i}"), format!("Web Fan {i}"))))
        .collect();
    // Email tickets, as a platform grants fans without a Matrix ID: nothing in Matrix.
    for batch in tickets.chunks(GRANT_BATCH) {
        let batch: Vec<Value> =
            batch.iter().map(|(tid, _)| json!({"ticket_id": tid, "email": format!("{tid}@example.org")})).collect();
        foyer.accept("ticket.granted", json!({"reservation_id": rid, "tickets": batch})).await;
    }
    let room_id = foyer.room_id(&rid, Duration::from_secs(60)).await;
    for member in &members {
        member.join_once_invited(&room_id, Duration::from_secs(60)).await;
    }
    let opening = Instant::now();
    let mut sessions = sessions(&foyer, &rid, tickets, 16).await;
    let session_rate = sessions.len() as f64 / opening.elapsed().as_secs_f64();
    let fan_sessions = sessions.split_off(viewers);
    eprintln!(
        "prepared the room, {viewers} viewers' tickets and sessions in {:.1} s ({session_rate:.0} sessions/s)",
        prepared.elapsed().as_secs_f64()
    );

    // Before the viewers: resident memory once setting up is trimmed, and the open files.
    heap_trimmed(&foyer).await;
    let (rss_before, fds_before) = (rss_kib(pid), fds(pid));

    // The viewers connect, CONNECTING_AT_ONCE at a time, each until its backlog is read.
    let latencies = Arc::new(Latencies::new());
    let addr = foyer.base_url.trim_start_matches("http://").to_owned();
    let mut watching = JoinSet::new();
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let connected = Arc::new(AtomicUsize::new(0));
    let connect_started = Instant::now();
    for session in sessions {
        let permit = connecting.clone().acquire_owned().await.expect("the semaphore");
        let (tx, rx) = tokio::sync::oneshot::channel();
        watching.spawn(watch(addr.clone(), session, latencies.clone(), tx));
        let connected = connected.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(120), rx).await.is_ok_and(|r| r.is_ok()) {
                connected.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
    // Every permit back: every viewer is ready, or gave up.
    let _all = connecting.acquire_many(CONNECTING_AT_ONCE as u32).await.expect("the semaphore");
    let connect_took = connect_started.elapsed().as_secs_f64();
    let connected = connected.load(Ordering::Relaxed);
    eprintln!("{connected} of {viewers} viewers connected in {connect_took:.1} s");
    assert_eq!(connected, viewers, "viewers that could not connect; Foyer's log:\n{}", tail(&foyer.log()));
    let streams = foyer.metric("foyer_webchat_streams").await;
    // Settled: the viewers' backlogs sent and a heap trim since.
    heap_trimmed(&foyer).await;
    let (rss_connected, fds_connected) = (rss_kib(pid), fds(pid));

    // The measured run: members send MESSAGES_PER_SECOND for `seconds`; the run ends once
    // every viewer has every message (or 30 s after the last send).
    let synapse_pid = hs.python_pid();
    let threads_before = thread_cpu(pid);
    let (foyer_cpu, own_cpu, synapse_cpu) =
        (cpu_seconds(pid), own_cpu_seconds(), synapse_pid.map(cpu_seconds).unwrap_or(0.0));
    let (machine_busy, load_before) = (machine_busy_seconds(), load_average());
    latencies.counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let seen_before = latencies.seen.load(Ordering::Acquire);
    let sent = converse(&members, &room_id, MESSAGES_PER_SECOND, seconds, "live").await;
    let sending_took = started.elapsed().as_secs_f64();
    let expected = (sent * viewers) as u64;
    latencies.reach(seen_before + expected, Duration::from_secs(30)).await;
    let wall = started.elapsed().as_secs_f64();
    latencies.counting.store(false, Ordering::Relaxed);
    // The kernel's high-water mark of Foyer's resident memory: the peak, not a sample.
    let peak_rss = proc_value(pid, "status", "VmHWM:").and_then(|v| v.parse().ok()).unwrap_or(0).max(rss_kib(pid));
    let (foyer_cpu, own_cpu, synapse_cpu) = (
        cpu_seconds(pid) - foyer_cpu,
        own_cpu_seconds() - own_cpu,
        synapse_pid.map(cpu_seconds).unwrap_or(0.0) - synapse_cpu,
    );
    let threads = busiest_threads(pid, &threads_before);
    let machine_busy = machine_busy_seconds() - machine_busy;
    let others = (machine_busy - foyer_cpu - own_cpu - synapse_cpu).max(0.0);
    let load_after = load_average();
    let delivered = latencies.delivered.load(Ordering::Relaxed);
    let (p50, p99, max) = (latencies.percentile(50.0), latencies.percentile(99.0), latencies.percentile(100.0));
    let (resets, ended) = (latencies.resets.load(Ordering::Relaxed), latencies.ended.load(Ordering::Relaxed));
    let fds_end = fds(pid);
    eprintln!(
        "{sent} messages in {sending_took:.1} s, {delivered} of {expected} deliveries; p50 {p50} ms, p99 {p99} ms, \
         max {max} ms; Foyer {foyer_cpu:.1} CPU-s over {wall:.1} s; RSS {rss_before} → {rss_connected} (peak {peak_rss}) KiB; \
         fds {fds_before} → {fds_connected}; resets {resets}, ended {ended}"
    );

    // The homeserver's share: from each message's origin_server_ts to Foyer's logging of
    // it from the transaction Synapse pushed (`logged_at`).
    let reached = crate::common::foyer::sqlite_query(
        &foyer.dir().join("foyer.db"),
        &format!(
            "SELECT logged_at - origin_ts FROM webchat_log WHERE reservation_id = '{rid}' \
             AND payload LIKE '%\"body\":\"live %' ORDER BY 1"
        ),
    );
    let reached: Vec<Duration> =
        reached.lines().filter_map(|l| l.trim().parse::<u64>().ok()).map(Duration::from_millis).collect();
    let reached_ms = |p: f64| percentile(&reached, p).as_millis();
    let homeserver_share = format!(
        "p50 {} ms, p99 {} ms, max {} ms (of {} messages)",
        reached_ms(50.0),
        reached_ms(99.0),
        reached_ms(100.0),
        reached.len()
    );
    eprintln!("origin_server_ts to Foyer's log: {homeserver_share}");

    // Where Foyer's time goes: a run of its own under perf, the viewers still reading.
    let profile = match Profile::start(pid, "webchat") {
        profile if profile.is_on() => {
            let seen = latencies.seen.load(Ordering::Acquire);
            let sent = converse(&members, &room_id, MESSAGES_PER_SECOND, PROFILE_SECONDS, "profiled").await;
            // Profiled until every viewer has read every message, as the measured run.
            latencies.reach(seen + (sent * viewers) as u64, Duration::from_secs(30)).await;
            profile.stop().map(|table| {
                format!(
                    "Where Foyer's time goes, from a separate {PROFILE_SECONDS} s of the same messages to the same viewers \
                     under `perf` (self time, by binary, then the hottest functions):\n\n{table}\n\n"
                )
            })
        }
        _ => None,
    };
    watching.shutdown().await;

    // Part 2: web fans post through Foyer, members send straight to Synapse, in turn.
    let http = reqwest::Client::new();
    let fan_post = |i: usize, n: u64| {
        http.post(format!("{}/chat/v1/messages", foyer.base_url))
            .bearer_auth(&fan_sessions[i])
            .json(&json!({"txn_id": format!("f{i}-{n}"), "body": format!("web fan {i}, message {n}")}))
    };
    let direct_send = |i: usize, n: u64| {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/d{i}-{n}-{}", enc(&room_id), &rid);
        http.put(format!("{}{path}", hs.url))
            .bearer_auth(&members[i].access_token)
            .json(&json!({"msgtype": "m.text", "body": format!("member {i}, message {n}")}))
    };
    // First messages, left out: each registers, names and joins its fan's web user.
    for chunk in (0..WEB_FANS).collect::<Vec<_>>().chunks(4) {
        let firsts: Vec<_> = chunk.iter().map(|&i| timed(fan_post(i, 0))).collect();
        futures_util::future::join_all(firsts).await;
    }
    let (mut through_foyer, mut direct) = (Vec::new(), Vec::new());
    {
        let mut sends = JoinSet::new();
        let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / WEB_FANS as u64));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut k = 0;
        for n in 1..=post_seconds {
            for i in 0..WEB_FANS {
                ticks.tick().await;
                let post = fan_post(i, n);
                sends.spawn(async move { (true, timed(post).await) });
                if i % DIRECT_EVERY == 0 {
                    let send = direct_send(k % MEMBERS, n);
                    k += 1;
                    sends.spawn(async move { (false, timed(send).await) });
                }
            }
        }
        while let Some(done) = sends.join_next().await {
            let (web, took) = done.expect("a timed send");
            if web { through_foyer.push(took) } else { direct.push(took) }
        }
    }
    through_foyer.sort();
    direct.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (foyer_p50, foyer_p99) = (ms(percentile(&through_foyer, 50.0)), ms(percentile(&through_foyer, 99.0)));
    let (direct_p50, direct_p99) = (ms(percentile(&direct, 50.0)), ms(percentile(&direct, 99.0)));
    let ratio = foyer_p50 / direct_p50;
    eprintln!(
        "posts through Foyer p50 {foyer_p50:.1} ms p99 {foyer_p99:.1} ms; direct p50 {direct_p50:.1} ms p99 {direct_p99:.1} ms"
    );

    // The figures.
    let kib_per_viewer = (rss_connected.saturating_sub(rss_before)) as f64 / viewers as f64;
    let kib_per_viewer_peak = (peak_rss.saturating_sub(rss_before)) as f64 / viewers as f64;
    let foyer_cores = foyer_cpu / wall;
    let per_delivery_us = foyer_cpu * 1e6 / delivered.max(1) as f64;
    let per_message_ms = foyer_cpu * 1e3 / sent as f64;
    let connection_cap = foyer
        .log()
        .lines()
        .find(|l| l.contains("open files limit"))
        .and_then(|l| l.split("max_connections=").nth(1))
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let verdict = |met: bool, by: String| if met { "met".to_owned() } else { format!("**missed** by {by}") };
    let targets = [
        format!(
            "- p99 delivery at most 1 s: {p99} ms, {}.",
            verdict(
                p99 as f64 <= TARGET_P99_MS,
                format!("{} ms ({:.1}×)", p99 as f64 - TARGET_P99_MS, p99 as f64 / TARGET_P99_MS)
            )
        ),
        format!(
            "- At most 16 KiB of RSS per connected viewer: {kib_per_viewer:.1} KiB once connected, {kib_per_viewer_peak:.1} KiB at the peak of the run, {}.",
            verdict(
                kib_per_viewer_peak <= TARGET_KIB_PER_VIEWER,
                format!(
                    "{:.1} KiB ({:.1}×)",
                    kib_per_viewer_peak - TARGET_KIB_PER_VIEWER,
                    kib_per_viewer_peak / TARGET_KIB_PER_VIEWER
                )
            )
        ),
        format!(
            "- Foyer at most 1 core: {foyer_cores:.2} cores, {}.",
            verdict(foyer_cores <= TARGET_CORES, format!("{:.2} cores", foyer_cores - TARGET_CORES))
        ),
        format!(
            "- A web fan's post at p50 at most 1.2× a direct send's: {ratio:.2}×, {}.",
            verdict(ratio <= TARGET_POST_RATIO, format!("{:.1} ms", foyer_p50 - TARGET_POST_RATIO * direct_p50))
        ),
    ];
    let body = format!(
        "## Web chat\n\n\
         **{viewers} viewers of one room** on one Foyer (SQLite), each with an email ticket of their own (granted in\n\
         webhooks of {GRANT_BATCH}) and a session from a viewer token ({session_rate:.0} sessions/s opened, 16 at once),\n\
         reading `GET /chat/v1/stream`, while {MEMBERS} Matrix members send {MESSAGES_PER_SECOND} messages a second in turn\n\
         for {seconds} s through the same Synapse. The viewers are a load generator in the test's process on the same\n\
         cores (a tokio `TcpStream` each, read line by line); they connected {CONNECTING_AT_ONCE} at a time, all\n\
         {viewers} in {connect_took:.1} s (to their backlog's `ready`). Foyer's open-files limit: {foyer_limit}\n\
         (raised to the hard limit at start), so its listener keeps up to {connection_cap} connections.\n\n\
         | | |\n|---|---|\n\
         | messages sent | {sent} in {sending_took:.1} s |\n\
         | deliveries (a message read by a viewer) | {delivered} of {expected} |\n\
         | delivery latency, `origin_server_ts` to the viewer's read | p50 {p50} ms, p99 {p99} ms, max {max} ms |\n\
         | of which Synapse's: `origin_server_ts` to Foyer's logging of the pushed transaction | {homeserver_share} |\n\
         | Foyer's CPU | {foyer_cpu:.1} CPU-s over {wall:.1} s: {foyer_cores:.2} cores |\n\
         | Foyer's CPU per delivered message | {per_delivery_us:.1} µs ({per_message_ms:.0} ms per room message) |\n\
         | Foyer's RSS | {rss_before} KiB before the viewers, {rss_connected} KiB with them, {peak_rss} KiB at the peak of the run |\n\
         | RSS per connected viewer | {kib_per_viewer:.1} KiB once connected, {kib_per_viewer_peak:.1} KiB at the peak |\n\
         | Foyer's file descriptors | {fds_before} before the viewers, {fds_connected} with them, {fds_end} at the end |\n\
         | streams (`foyer_webchat_streams`) | {streams} |\n\
         | resets (a viewer behind its feed); streams ended early | {resets}; {ended} |\n\n\
         Over the run ({wall:.1} s, {:.1} CPU-seconds on this machine): Foyer {foyer_cpu:.1} s, the viewers' load\n\
         generator and the members' clients {own_cpu:.1} s, Synapse {synapse_cpu:.1} s, other processes of the machine\n\
         {others:.1} s (the machine was busy {machine_busy:.1} s; load average {load_before} before the run, {load_after} after it).\n\
         Foyer's busiest threads: {threads}.\n\n\
         **{WEB_FANS} web fans posting** once a second each (`POST /chat/v1/messages`, answered once Synapse has the\n\
         event) for {post_seconds} s, first messages left out (sent before: each registers and joins its web user),\n\
         and between them {MEMBERS} members in turn sending {} a second straight to Synapse\n\
         (`PUT /_matrix/client/v3/rooms/…/send`),\n\
         the same client for both, after the viewers left:\n\n\
         | | p50 | p99 |\n|---|---|---|\n\
         | through Foyer ({} posts) | {foyer_p50:.1} ms | {foyer_p99:.1} ms |\n\
         | straight to Synapse ({} sends) | {direct_p50:.1} ms | {direct_p99:.1} ms |\n\
         | Foyer adds | {:.1} ms | {:.1} ms |\n\n\
         Against the targets (issue 29):\n\n{}\n\n{}\
         Measured {}.",
        wall * cores(),
        WEB_FANS / DIRECT_EVERY,
        through_foyer.len(),
        direct.len(),
        foyer_p50 - direct_p50,
        foyer_p99 - direct_p99,
        targets.join("\n"),
        profile.unwrap_or_default(),
        machine(),
        foyer_limit = open_files_limit(pid),
    );
    println!("{body}");
    write_section("webchat", &body);
    assert_eq!(ended, 0, "streams ended before the benchmark closed them; Foyer's log:\n{}", tail(&foyer.log()));
}

/// The last lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
