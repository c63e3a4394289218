//! Streaming servers' publish hooks (`POST /ingest/v1/rtmp`, contract §8): real nginx-rtmp
//! and ffmpeg against a real Foyer and Synapse, and SRS-shaped requests built from SRS's
//! documented format; the replay's segments from real publishes and a drop between them
//! (docs/replay.md). Needs `scripts/install-nginx-rtmp.sh`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::common::{
    eventually,
    foyer::{TestFoyer, sqlite_query},
    free_port, random_token,
    synapse::Synapse,
    unique,
    users::TestUser,
};

const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

fn at(seconds: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A reservation from `starts_in` to `starts_in + 3600` s, its room opening 60 s before.
fn reservation(id: &str, starts_in: i64, key: Option<&str>) -> Value {
    let mut body = json!({
        "reservation_id": id, "revision": 1, "title": format!("Show {id}"),
        "starts_at": at(starts_in), "ends_at": at(starts_in + 3600),
        "chat": {"open_before_seconds": 60, "close_after_seconds": 60}
    });
    if let Some(key) = key {
        body["ingest"] = json!({"stream_key": key});
    }
    body
}

/// A stream key: 40 random letters and digits.
fn stream_key() -> String {
    format!("key_{}", random_token())
}

/// Foyer with an `ingest.token`, logging at trace level; returns it with the token.
async fn foyer_with_token() -> (TestFoyer, String) {
    foyer_with_ingest("").await
}

/// Foyer with an `ingest.token` and the `ingest` settings in `more` (YAML lines, each
/// indented two spaces), logging at trace level; returns it with the token.
async fn foyer_with_ingest(more: &str) -> (TestFoyer, String) {
    let token = random_token();
    let yaml = format!("ingest:\n  token: {token}\n{more}");
    let foyer = TestFoyer::start_with(move |y| y + &yaml, &[("RUST_LOG", "trace")]).await;
    (foyer, token)
}

/// Notice bodies in the room, oldest first.
async fn notices(user: &TestUser, room: &str) -> Vec<String> {
    let mut bodies = user.notices(room).await;
    bodies.reverse();
    bodies
}

fn count(notices: &[String], needle: &str) -> usize {
    notices.iter().filter(|n| n.contains(needle)).count()
}

/// Waits until the room shows `n` notices containing `needle`; returns them all.
async fn wait_notices(user: &TestUser, room: &str, needle: &str, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(20), needle, || async {
        let all = notices(user, room).await;
        (count(&all, needle) >= n).then_some(all)
    })
    .await
}

/// A reservation that is open now, with `fan` in its room; returns the room.
async fn open_room(foyer: &TestFoyer, id: &str, key: &str, fan: &TestUser) -> String {
    foyer.accept("reservation.created", reservation(id, 30, Some(key))).await;
    foyer.grant(id, &[("t", &fan.user_id)]).await;
    let room = foyer.room_id(id, Duration::from_secs(20)).await;
    fan.join_once_invited(&room, Duration::from_secs(20)).await;
    room
}

/// What the database holds of a reservation's stream, and the ingest receipts: what a
/// refused publish must leave as it was.
fn stream_facts(foyer: &TestFoyer, id: &str) -> String {
    let db = foyer.dir().join("foyer.db");
    let signals = sqlite_query(
        &db,
        &format!("SELECT stream_started_at, stream_ended_at FROM reservation_signals WHERE reservation_id = '{id}'"),
    );
    let receipts = sqlite_query(&db, "SELECT COUNT(*) FROM webhook_receipts WHERE webhook_id LIKE 'ingest-%'");
    format!("signals [{signals}] receipts [{receipts}]")
}

/// `docs/streaming-servers.md`'s nginx `rtmp {}` block, between its markers.
fn readme_nginx_block() -> String {
    let readme = std::fs::read_to_string(crate::common::repo_root().join("docs/streaming-servers.md"))
        .expect("docs/streaming-servers.md");
    let (_, rest) =
        readme.split_once("<!-- nginx-rtmp:begin -->").expect("docs/streaming-servers.md marks its nginx block");
    let (block, _) =
        rest.split_once("<!-- nginx-rtmp:end -->").expect("docs/streaming-servers.md ends its nginx block");
    let block = block.trim().strip_prefix("```nginx").and_then(|b| b.strip_suffix("```")).expect("a fenced block");
    block.trim().to_owned()
}

/// The page's block with this test's ports and token: the page's own addresses
/// must be there to be replaced, so the two cannot drift apart.
fn nginx_conf(prefix: &Path, rtmp_port: u16, foyer_url: &str, token: &str) -> String {
    let block = readme_nginx_block();
    for needle in ["listen 1935;", "http://127.0.0.1:29330/ingest/v1/rtmp", "?token=CHANGE_ME_ingest_token"] {
        assert!(block.contains(needle), "docs/streaming-servers.md's nginx block should contain {needle:?}:\n{block}");
    }
    let block = block
        .replace("listen 1935;", &format!("listen 127.0.0.1:{rtmp_port};"))
        .replace("http://127.0.0.1:29330/ingest/v1/rtmp", &format!("{foyer_url}/ingest/v1/rtmp"))
        .replace("CHANGE_ME_ingest_token", token);
    format!(
        "load_module {RTMP_MODULE};\ndaemon off;\nmaster_process off;\npid {pid};\nerror_log {log} info;\n\
         events {{ worker_connections 64; }}\n{block}\n",
        pid = prefix.join("nginx.pid").display(),
        log = prefix.join("error.log").display(),
    )
}

/// nginx-rtmp on its own prefix directory, killed when dropped.
struct Nginx {
    /// Held for `kill_on_drop`: nginx stops with the test.
    _child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(foyer_url: &str, token: &str) -> Nginx {
        assert!(
            Path::new(RTMP_MODULE).exists() && Path::new("/usr/sbin/nginx").exists(),
            "nginx-rtmp is not installed: run scripts/install-nginx-rtmp.sh"
        );
        let dir = tempfile::Builder::new().prefix("foyer-nginx-").tempdir().expect("tempdir");
        let port = free_port();
        std::fs::write(dir.path().join("nginx.conf"), nginx_conf(dir.path(), port, foyer_url, token)).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir.path())
            .args(["-c", "nginx.conf", "-e", "stderr"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx");
        let nginx = Nginx { _child: child, port, dir };
        eventually(Duration::from_secs(10), "nginx to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
        nginx
    }

    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }
}

/// `ffmpeg` publishing a generated test stream (no audio, the cheap FLV codec).
fn ffmpeg(url: &str, log: PathBuf) -> Child {
    Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-re", "-f", "lavfi", "-i"])
        .args(["testsrc=size=320x240:rate=25", "-c:v", "flv", "-b:v", "300k", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start ffmpeg (run scripts/install-nginx-rtmp.sh)")
}

/// Publishes with a key nginx must refuse: ffmpeg exits with an error.
async fn refused_publish(nginx: &Nginx, key: &str, log: PathBuf) {
    let mut child = ffmpeg(&nginx.url(key), log.clone());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("ffmpeg should give up once nginx refuses the publish")
        .unwrap();
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "ffmpeg should fail on a refused publish; it said:\n{said}\nnginx:\n{}", nginx.log());
}

#[tokio::test]
async fn nginx_rtmp_publishes_go_live_in_the_room_and_refusals_record_nothing() {
    let (foyer, token) = foyer_with_token().await;
    let nginx = Nginx::start(&foyer.base_url, &token).await;
    let fan = Synapse::shared().create_user("fan").await;
    let logs = tempfile::tempdir().unwrap();

    // Before opens_at: refused by nginx, nothing recorded, no room.
    let early_key = stream_key();
    let early = unique("early");
    foyer.accept("reservation.created", reservation(&early, 3600, Some(&early_key))).await;
    let before = stream_facts(&foyer, &early);
    refused_publish(&nginx, &early_key, logs.path().join("early.log")).await;
    assert_eq!(stream_facts(&foyer, &early), before, "a publish before opens_at records nothing");
    let (_, r) = foyer.reservation(&early).await;
    assert_eq!((r["phase"].as_str(), &r["room_id"]), (Some("scheduled"), &Value::Null), "{r}");

    // An open reservation; a wrong key is refused and leaves it as it was.
    let key = stream_key();
    let id = unique("live");
    let room = open_room(&foyer, &id, &key, &fan).await;
    let before = stream_facts(&foyer, &id);
    refused_publish(&nginx, &stream_key(), logs.path().join("wrong.log")).await;
    assert_eq!(stream_facts(&foyer, &id), before, "a wrong key records nothing");
    assert_eq!(foyer.reservation(&id).await.1["phase"], "open");

    // The right key: live in the room while ffmpeg plays, ended once it stops.
    let started = Instant::now();
    let mut publisher = ffmpeg(&nginx.url(&key), logs.path().join("live.log"));
    wait_notices(&fan, &room, "is live now", 1).await;
    let live_after = started.elapsed();
    println!("live notice {} ms after ffmpeg started publishing", live_after.as_millis());
    assert_eq!(foyer.reservation(&id).await.1["phase"], "live");
    assert!(publisher.try_wait().unwrap().is_none(), "ffmpeg still publishes:\n{}", nginx.log());

    publisher.start_kill().unwrap();
    publisher.wait().await.unwrap();
    let stopped = Instant::now();
    let all = wait_notices(&fan, &room, "The stream has ended", 1).await;
    let ended_after = stopped.elapsed();
    println!("ended notice {} ms after ffmpeg stopped", ended_after.as_millis());
    assert_eq!(count(&all, "is live now"), 1, "one live notice, none for the refused publishes: {all:?}");
    // Issue 17 asks for 2 s. The delays are printed, not asserted: speed is measured, and a
    // busy CI machine must not turn a slow start into a failure (the waits above bound it).
    let metrics = foyer.metrics_text().await;
    for sample in [
        "foyer_ingest_publishes_total{server=\"nginx\",result=\"allowed\"} 1",
        "foyer_ingest_publishes_total{server=\"nginx\",result=\"refused\"} 2",
        "foyer_ingest_publishes_total{server=\"nginx\",result=\"ended\"} 1",
    ] {
        assert!(metrics.contains(sample), "{sample} in:\n{metrics}");
    }
    for secret in [&key, &early_key] {
        assert!(!foyer.log().contains(secret.as_str()), "a stream key in Foyer's trace log");
    }
}

/// Posts an SRS `http_hooks` request (the JSON SRS documents) to the hook.
async fn srs(foyer: &TestFoyer, token: &str, action: &str, stream: &str) -> (u16, String) {
    let body = json!({
        "server_id": "vid-0xk989d", "service_id": "z0v8v3g2", "action": action,
        "client_id": random_token()[..8].to_owned(), "ip": "127.0.0.1", "vhost": "__defaultVhost__",
        "app": "live", "tcUrl": "rtmp://127.0.0.1/live", "stream": stream, "param": "",
        "stream_url": format!("/live/{stream}"), "stream_id": "vid-124q9y3"
    });
    let url = format!("{}/ingest/v1/rtmp?token={token}", foyer.base_url);
    let resp = foyer.http.post(url).json(&body).send().await.expect("post hook");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// SRS reads a refusal from a non-200 status or a non-zero `code`: both, here.
fn assert_srs_refused((status, body): &(u16, String), why: &str) {
    assert_eq!(*status, 403, "{why}: {body}");
    let code = serde_json::from_str::<Value>(body).ok().and_then(|v| v["code"].as_i64());
    assert!(code.is_some_and(|c| c != 0), "{why}: a non-zero code in {body}");
}

#[tokio::test]
async fn srs_hooks_are_answered_as_srs_expects_and_duplicates_are_absorbed() {
    let (foyer, token) = foyer_with_token().await;
    let fan = Synapse::shared().create_user("fan").await;
    let key = stream_key();
    let id = unique("srs");
    let room = open_room(&foyer, &id, &key, &fan).await;

    // Refusals: unknown key, wrong or missing token, before opens_at, cancelled.
    let before = stream_facts(&foyer, &id);
    assert_srs_refused(&srs(&foyer, &token, "on_publish", &stream_key()).await, "an unknown key");
    assert_srs_refused(&srs(&foyer, &token, "on_publish", "short").await, "not a key at all");
    assert_srs_refused(&srs(&foyer, &random_token(), "on_publish", &key).await, "a wrong token");
    assert_srs_refused(&srs(&foyer, "", "on_publish", &key).await, "no token");
    let early_key = stream_key();
    let early = unique("srs-early");
    foyer.accept("reservation.created", reservation(&early, 3600, Some(&early_key))).await;
    assert_srs_refused(&srs(&foyer, &token, "on_publish", &early_key).await, "before opens_at");
    let gone_key = stream_key();
    let gone = unique("srs-cancelled");
    foyer.accept("reservation.created", reservation(&gone, 30, Some(&gone_key))).await;
    foyer.accept("reservation.cancelled", json!({"reservation_id": gone})).await;
    assert_srs_refused(&srs(&foyer, &token, "on_publish", &gone_key).await, "cancelled");
    assert_eq!(stream_facts(&foyer, &id), before, "refusals record nothing");

    // Allowed: HTTP 200 with the body 0. A copy while live records nothing new.
    assert_eq!(srs(&foyer, &token, "on_publish", &key).await, (200, "0".to_owned()));
    wait_notices(&fan, &room, "is live now", 1).await;
    let live = stream_facts(&foyer, &id);
    assert_eq!(srs(&foyer, &token, "on_publish", &key).await, (200, "0".to_owned()), "a duplicate");
    assert_eq!(stream_facts(&foyer, &id), live, "a duplicate on_publish records nothing");

    assert_eq!(srs(&foyer, &token, "on_unpublish", &key).await, (200, "0".to_owned()));
    let all = wait_notices(&fan, &room, "The stream has ended", 1).await;
    assert_eq!(count(&all, "is live now"), 1, "no second live notice: {all:?}");
    let ended = stream_facts(&foyer, &id);
    assert_eq!(srs(&foyer, &token, "on_unpublish", &key).await, (200, "0".to_owned()), "a duplicate");
    assert_eq!(stream_facts(&foyer, &id), ended, "a duplicate on_unpublish records nothing");

    // Not a publish hook, and not JSON: 400, which SRS reads as a refusal too.
    let (status, body) = srs(&foyer, &token, "on_play", &key).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("action: \\\"on_play\\\""), "{body}");

    // The key appears nowhere: trace log, read API, status page.
    let (_, shown) = foyer.reservation(&id).await;
    let page = foyer.http.get(format!("{}/status", foyer.base_url)).bearer_auth(&foyer.slot.api_token).send();
    let page = page.await.unwrap().text().await.unwrap();
    assert!(page.contains(&id), "the status page lists the reservation");
    // The request span logs the path, never the query that carries ingest.token.
    assert!(foyer.log().contains("/ingest/v1/rtmp"), "the hook's requests are logged");
    assert!(!foyer.log().contains(&token), "ingest.token in Foyer's trace log");
    for secret in [&key, &early_key, &gone_key] {
        assert!(!shown.to_string().contains(secret.as_str()), "a stream key in the read API: {shown}");
        assert!(!page.contains(secret.as_str()), "a stream key on the status page");
        assert!(!foyer.log().contains(secret.as_str()), "a stream key in Foyer's trace log");
    }
}

#[tokio::test]
async fn stream_keys_are_checked_unique_among_active_reservations_and_hashed() {
    let foyer = TestFoyer::start().await;
    let key = stream_key();
    let first = unique("first");
    foyer.accept("reservation.created", reservation(&first, 30, Some(&key))).await;

    // The same key on another active reservation whose window overlaps: 400 naming the
    // field, nothing stored (a series' shows, one after another, may share one).
    let second = unique("second");
    let delivery = format!("msg_{}", random_token());
    let (status, body) =
        foyer.send_webhook_as(&delivery, "reservation.created", reservation(&second, 30, Some(&key))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "data.ingest.stream_key: is already the stream key of another active reservation whose window \
         (opens_at to archives_at) overlaps this one's"
    );
    assert_eq!(foyer.reservation(&second).await.0, 404, "a refused event changes nothing");
    // Its webhook-id was not kept either: once the first lets the key go, the same
    // delivery goes through.
    foyer.accept("reservation.cancelled", json!({"reservation_id": first})).await;
    let (status, body) =
        foyer.send_webhook_as(&delivery, "reservation.created", reservation(&second, 30, Some(&key))).await;
    assert_eq!(status, 202, "the key is free once its reservation is cancelled: {body}");

    // Malformed keys are named, never quoted.
    for bad in ["too-short", "has a space in it....", &"x".repeat(129)] {
        let (status, body) =
            foyer.send_webhook("reservation.created", reservation(&unique("bad"), 30, Some(bad))).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "data.ingest.stream_key: must be 16 to 128 characters of A-Z a-z 0-9 _ -");
    }

    // Only the hash is stored; an update without `ingest` withdraws the key.
    let db = foyer.dir().join("foyer.db");
    let stored =
        sqlite_query(&db, &format!("SELECT stream_key_hash FROM reservations WHERE reservation_id = '{second}'"));
    assert_eq!(stored.trim().len(), 64, "{stored}");
    let dump = sqlite_query(&db, "SELECT * FROM reservations");
    assert!(!dump.contains(&key), "the key itself is stored");
    foyer.accept("reservation.updated", reservation(&second, 30, None)).await;
    let stored =
        sqlite_query(&db, &format!("SELECT stream_key_hash FROM reservations WHERE reservation_id = '{second}'"));
    assert_eq!(stored.trim(), "None", "absent ingest: no key");
}

#[tokio::test]
async fn every_refused_publish_reads_the_same_whatever_the_reason() {
    let (foyer, token) = foyer_with_token().await;
    let early_key = stream_key();
    let early = unique("same-early");
    foyer.accept("reservation.created", reservation(&early, 3600, Some(&early_key))).await;
    let gone_key = stream_key();
    let gone = unique("same-cancelled");
    foyer.accept("reservation.created", reservation(&gone, 30, Some(&gone_key))).await;
    foyer.accept("reservation.cancelled", json!({"reservation_id": gone})).await;

    // Unknown, not a key at all, before its window, cancelled: one answer, so trying
    // keys tells a stored one from nothing.
    let unknown = srs(&foyer, &token, "on_publish", &stream_key()).await;
    assert_srs_refused(&unknown, "an unknown key");
    for (key, why) in
        [("short", "not a key"), (early_key.as_str(), "before opens_at"), (gone_key.as_str(), "cancelled")]
    {
        assert_eq!(
            srs(&foyer, &token, "on_publish", key).await,
            unknown,
            "{why} answered otherwise than an unknown key"
        );
    }
    // nginx-rtmp's form gets one answer too.
    let form = |key: &str| {
        let url = format!("{}/ingest/v1/rtmp?token={token}", foyer.base_url);
        foyer.http.post(url).form(&[("call", "publish"), ("app", "live"), ("name", key)]).send()
    };
    let unknown = form(&stream_key()).await.expect("hook");
    let unknown = (unknown.status().as_u16(), unknown.text().await.expect("text"));
    assert_eq!(unknown.0, 403, "{}", unknown.1);
    for key in [&early_key, &gone_key] {
        let resp = form(key).await.expect("hook");
        assert_eq!((resp.status().as_u16(), resp.text().await.expect("text")), unknown);
    }
}

/// Holds SQLite's write lock on `db` from another process until the returned child's
/// stdin is closed (or it is killed); returns once the lock is held.
async fn hold_write_lock(db: &Path) -> Child {
    use tokio::io::AsyncBufReadExt as _;
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n\
             con.execute('BEGIN IMMEDIATE')\n\
             print('locked', flush=True)\n\
             sys.stdin.read()\n\
             con.execute('ROLLBACK')",
        ])
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let stdout = holder.stdout.take().expect("stdout");
    let mut line = String::new();
    tokio::io::BufReader::new(stdout).read_line(&mut line).await.expect("read");
    assert_eq!(line.trim(), "locked", "the lock holder did not start");
    holder
}

#[tokio::test]
async fn a_publish_waiting_for_the_database_holds_back_no_refusal() {
    // The publish below waits on SQLite's write lock, taken from outside.
    if std::env::var("FOYER_TEST_STORE").as_deref() == Ok("postgres") {
        return;
    }
    let (foyer, token) = foyer_with_token().await;
    let key = stream_key();
    let id = unique("held");
    foyer.accept("reservation.created", reservation(&id, 30, Some(&key))).await;
    let early_key = stream_key();
    let early = unique("held-early");
    foyer.accept("reservation.created", reservation(&early, 3600, Some(&early_key))).await;

    let mut holder = hold_write_lock(&foyer.dir().join("foyer.db")).await;
    let url = format!("{}/ingest/v1/rtmp?token={token}", foyer.base_url);
    let publish = tokio::spawn({
        let (http, url, key) = (foyer.http.clone(), url.clone(), key.clone());
        async move {
            let resp = http.post(url).form(&[("call", "publish"), ("name", key.as_str())]).send().await;
            resp.expect("the held publish").status().as_u16()
        }
    });
    // The publish cannot be answered while the lock is held (up to the writer's 5 s
    // busy timeout): refusals (an unknown key, a key before its window) answered
    // meanwhile did not wait for it. With one lock for every key they would come only
    // after it.
    for _ in 0..3 {
        for probe in [stream_key(), early_key.clone()] {
            let resp = foyer.http.post(&url).form(&[("call", "publish"), ("name", probe.as_str())]).send().await;
            assert_eq!(resp.expect("a refused hook").status(), 403);
            assert!(!publish.is_finished(), "a refusal was answered only after the held publish");
        }
    }
    drop(holder.stdin.take());
    let status = publish.await.expect("the held publish");
    assert_eq!(status, 200, "the held publish is allowed once the database is free");
    let _ = holder.wait().await;
}

/// A segment as the reservation view lists it, in unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seg {
    start: i64,
    end: Option<i64>,
    offset_ms: i64,
}

fn millis(value: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(value.as_str()?).ok().map(|t| t.timestamp_millis())
}

/// The reservation view's `segments`.
async fn segments(foyer: &TestFoyer, id: &str) -> Vec<Seg> {
    let (status, view) = foyer.reservation(id).await;
    assert_eq!(status, 200, "{view}");
    let listed = view["segments"].as_array().unwrap_or_else(|| panic!("segments in the view: {view}"));
    listed
        .iter()
        .map(|s| Seg {
            start: millis(&s["start"]).unwrap_or_else(|| panic!("a start: {s}")),
            end: (!s["end"].is_null()).then(|| millis(&s["end"]).unwrap_or_else(|| panic!("an end: {s}"))),
            offset_ms: s["offset_ms"].as_i64().unwrap_or_else(|| panic!("an offset: {s}")),
        })
        .collect()
}

/// Waits until the view's segments are `n`, the last one open or closed as `closed` says.
async fn wait_segments(foyer: &TestFoyer, id: &str, n: usize, closed: bool) -> Vec<Seg> {
    let what = format!("{n} segments, the last {}", if closed { "closed" } else { "open" });
    eventually(Duration::from_secs(30), &what, || async {
        let all = segments(foyer, id).await;
        (all.len() == n && all[n - 1].end.is_some() == closed).then_some(all)
    })
    .await
}

/// Posts `text` through matrix-nio; the homeserver's time for it.
fn nio_say(fan: &TestUser, room: &str, text: &str) -> i64 {
    let url = &Synapse::shared().url;
    tokio::task::block_in_place(|| crate::common::users::nio_say(fan, url, room, text)).1
}

/// `ingest.reconnect_grace` for the replay test: the publisher comes back after a post
/// through matrix-nio (a Python start and a login) and ffmpeg's start, a few seconds, and
/// more on a busy machine (1.8 s on an idle one); 10 s (the default) would leave too
/// little room. The test waits it out once, for the last "ended" notice.
const TEST_GRACE_S: i64 = 20;

#[tokio::test(flavor = "multi_thread")]
async fn real_publishes_make_the_replays_segments_and_a_quick_republish_posts_no_notices() {
    let (foyer, token) = foyer_with_ingest(&format!("  reconnect_grace: {TEST_GRACE_S}s\n")).await;
    let nginx = Nginx::start(&foyer.base_url, &token).await;
    let fan = Synapse::shared().create_user("fan").await;
    let logs = tempfile::tempdir().unwrap();
    let key = stream_key();
    let id = unique("replay-rtmp");
    let room = open_room(&foyer, &id, &key, &fan).await;
    let now = || Utc::now().timestamp_millis();

    let pre = nio_say(&fan, &room, "before the show");

    // The first publish: a segment opens, and the room is told it is live.
    let spawned = now();
    let mut publisher = ffmpeg(&nginx.url(&key), logs.path().join("first.log"));
    let s1 = wait_segments(&foyer, &id, 1, false).await[0].start;
    assert!(spawned <= s1 && s1 <= now(), "the first segment starts with the publish:\n{}", nginx.log());
    wait_notices(&fan, &room, "is live now", 1).await;
    // The platform reports the same start a moment after its streaming server: one start.
    foyer.accept("stream.started", json!({"reservation_id": id})).await;
    let one = nio_say(&fan, &room, "one");

    // The publisher stops: the segment closes; the fan speaks in the gap.
    let killed = now();
    publisher.start_kill().unwrap();
    publisher.wait().await.unwrap();
    let e1 = wait_segments(&foyer, &id, 1, true).await[0].end.unwrap();
    assert!(killed <= e1 && e1 <= now(), "the segment ends with the publish:\n{}", nginx.log());
    let gap = nio_say(&fan, &room, "in the gap");

    // It publishes again, well within the grace: a second segment.
    let spawned = now();
    let mut publisher = ffmpeg(&nginx.url(&key), logs.path().join("second.log"));
    let listed = wait_segments(&foyer, &id, 2, false).await;
    let (s2, second_offset) = (listed[1].start, listed[1].offset_ms);
    assert!(spawned <= s2 && s2 <= now(), "the second segment starts with the publish:\n{}", nginx.log());
    println!("the drop lasted {} ms on the recording's wall clock (grace {TEST_GRACE_S} s)", s2 - e1);
    assert!(s2 - e1 < TEST_GRACE_S * 1000, "the republish came {} ms after the end: not a short drop", s2 - e1);
    let two = nio_say(&fan, &room, "two");

    // It stops for good: once the grace has passed the room is told the stream ended.
    publisher.start_kill().unwrap();
    publisher.wait().await.unwrap();
    let listed = wait_segments(&foyer, &id, 2, true).await;
    let e2 = listed[1].end.unwrap();
    assert_eq!(listed[0], Seg { start: s1, end: Some(e1), offset_ms: 0 }, "the first segment stays: {listed:?}");
    assert_eq!(second_offset, e1 - s1, "the second segment begins where the first one's length ends");
    assert!(
        pre < s1 && s1 < one && one < e1 && e1 < gap && gap < s2 && s2 < two && two < e2,
        "messages where they were said"
    );

    // Neither the platform's report of the start nor the short drop posted anything; the
    // end after it, once: the one "ended" notice comes only after the grace from the last
    // end, which is past the first end's grace too.
    let all = eventually(Duration::from_secs(TEST_GRACE_S as u64 + 30), "the ended notice", || async {
        let all = notices(&fan, &room).await;
        (count(&all, "The stream has ended") >= 1).then_some(all)
    })
    .await;
    assert_eq!(
        (count(&all, "is live now"), count(&all, "The stream has ended")),
        (1, 1),
        "one live and one ended notice: {all:?}"
    );

    // The replay: each message on the recording's clock, as the segments place it.
    let body: Value = crate::replay::replay(&foyer, &id, "json").await.json().await.expect("the replay's JSON");
    let want = [
        ("before the show", 0, true),
        ("one", one - s1, false),
        ("in the gap", second_offset, false),
        ("two", second_offset + (two - s2), false),
    ];
    let messages = body["messages"].as_array().unwrap_or_else(|| panic!("messages: {body}"));
    let got: Vec<(&str, i64, bool)> = messages
        .iter()
        .map(|m| (m["body"].as_str().unwrap_or_default(), m["offset_ms"].as_i64().unwrap_or(-1), m["pre_show"] == true))
        .collect();
    println!("offsets {:?}, segments {listed:?}", got.iter().map(|g| g.1).collect::<Vec<_>>());
    // The issue asks for the offsets within 1 s of the segments. Both are milliseconds of
    // one clock (Foyer's hook time, the homeserver's origin_server_ts, on one machine), so
    // they match exactly: a tolerance would hide a misplacement by a drop as short as this
    // one.
    assert_eq!(got, want, "each message where the segments place it: {body}");
    assert_eq!(body["segments"], foyer.reservation(&id).await.1["segments"], "the replay's segments are the view's");

    // The WebVTT, read back by ffmpeg: one cue per message, at each message's offset.
    let vtt = crate::replay::replay(&foyer, &id, "vtt").await.text().await.expect("the WebVTT");
    let (input, output) = (logs.path().join("replay.vtt"), logs.path().join("replay.srt"));
    std::fs::write(&input, &vtt).unwrap();
    let converted = Command::new("ffmpeg").args(["-loglevel", "error", "-y", "-i"]).arg(&input).arg(&output).output();
    let converted = converted.await.expect("ffmpeg");
    assert!(
        converted.status.success(),
        "ffmpeg read the WebVTT: {}\n{vtt}",
        String::from_utf8_lossy(&converted.stderr)
    );
    let srt = std::fs::read_to_string(&output).unwrap();
    let starts: Vec<&str> = srt.lines().filter_map(|l| l.split_once(" --> ").map(|(start, _)| start)).collect();
    let cue = |ms: i64| format!("{:02}:{:02}:{:02},{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let offsets: Vec<i64> = messages.iter().filter_map(|m| m["offset_ms"].as_i64()).collect();
    assert_eq!(starts, offsets.iter().map(|&ms| cue(ms)).collect::<Vec<_>>(), "a cue per message:\n{srt}\n{vtt}");
}
