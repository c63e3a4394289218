//! A real `foyer serve` process ([`TestFoyer`]): its config, webhooks to it (signed by
//! the reference crate, or by a retrying platform [`Sender`]), its read API and
//! metrics, and its SQLite file read behind its back.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{
    enc, eventually, foyer_bin,
    postgres::fresh_postgres_database,
    random_token,
    synapse::{Slot, Synapse},
    users::TestUser,
};

/// The Standard Webhooks secret every test Foyer accepts.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The key every test Foyer's viewer tokens are signed with (`webchat.token_secrets`).
pub const WEBCHAT_SECRET: &str = "webchat-test-secret-of-at-least-32-characters";
/// The page every test Foyer lets frame its chat (`webchat.allowed_origins`).
pub const WEBCHAT_ORIGIN: &str = "http://platform.localhost:8080";

/// A complete, valid config (tokens `a…`, `b…`, `c…`) for tests that only parse it.
pub fn valid_config_yaml() -> String {
    format!(
        "homeserver:
  url: http://127.0.0.1:8008
  server_name: example.org
appservice:
  id: foyer
  listen: 127.0.0.1:29330
  url: http://127.0.0.1:29330
  as_token: {a}
  hs_token: {b}
  sender_localpart: foyer
  alias_prefix: live_
database:
  url: sqlite://foyer.db
webhooks:
  secrets: [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]
  tolerance: 5m
api:
  token: {c}
rooms:
  open_before: 30m
  close_after: 1h
  max_overrun: 6h
  archive_mode: read_only
  join_rule: invite
",
        a = "a".repeat(40),
        b = "b".repeat(40),
        c = "c".repeat(40),
    )
}

/// A running `foyer serve`, killed when dropped.
pub struct TestFoyer {
    pub child: Child,
    pub slot: Slot,
    pub base_url: String,
    dir: tempfile::TempDir,
    pub log_path: PathBuf,
    pub http: reqwest::Client,
}

impl TestFoyer {
    /// Starts Foyer for a fresh slot of the shared Synapse and waits until it is ready.
    pub async fn start() -> TestFoyer {
        Self::start_on(Synapse::shared()).await
    }

    /// Starts Foyer for a fresh slot of the given Synapse and waits until it is ready.
    pub async fn start_on(synapse: &Synapse) -> TestFoyer {
        let slot = synapse.take_slot();
        let foyer = Self::spawn(slot.clone(), &store_config(slot.config_yaml()).await);
        foyer.wait_ready().await;
        foyer
    }

    /// Starts Foyer for a fresh slot with a changed config and extra environment.
    pub async fn start_with(edit: impl FnOnce(String) -> String, env: &[(&str, &str)]) -> TestFoyer {
        let slot = Synapse::shared().take_slot();
        let yaml = edit(store_config(slot.config_yaml()).await);
        let foyer = Self::spawn_env(slot, &yaml, env);
        foyer.wait_ready().await;
        foyer
    }

    /// Starts Foyer for a fresh slot with the homeserver API on a listener of its own
    /// (`appservice.homeserver_listen`) at the slot's port, where the shared Synapse's
    /// registration points, and everything else on a fresh port, which
    /// [`TestFoyer::base_url`] names; waits until it is ready.
    pub async fn start_with_homeserver_listener(
        edit: impl FnOnce(String) -> String, env: &[(&str, &str)],
    ) -> TestFoyer {
        let slot = Synapse::shared().take_slot();
        let (own, main) = (slot.port, super::free_port());
        let split = slot.config_yaml().replace(
            &format!("  listen: 127.0.0.1:{own}\n  url: http://127.0.0.1:{own}\n"),
            &format!(
                "  listen: 127.0.0.1:{main}\n  url: http://127.0.0.1:{main}\n  homeserver_listen: 127.0.0.1:{own}\n"
            ),
        );
        assert!(split.contains("homeserver_listen"), "the slot's config changed shape:\n{split}");
        let yaml = edit(store_config(split).await);
        let mut foyer = Self::spawn_env(slot, &yaml, env);
        foyer.base_url = format!("http://127.0.0.1:{main}");
        foyer.wait_ready().await;
        foyer
    }

    /// The homeserver API's own listener, as [`TestFoyer::start_with_homeserver_listener`]
    /// puts it: the slot's port.
    pub fn homeserver_listener_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.slot.port)
    }

    /// Starts `foyer serve` with the given config text, without waiting.
    pub fn spawn(slot: Slot, config_yaml: &str) -> TestFoyer {
        Self::spawn_env(slot, config_yaml, &[])
    }

    fn spawn_env(slot: Slot, config_yaml: &str, env: &[(&str, &str)]) -> TestFoyer {
        let dir = tempfile::Builder::new().prefix("foyer-test-").tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.yaml"), config_yaml).expect("write config");
        let log_path = dir.path().join("foyer.log");
        let port = slot.port;
        TestFoyer {
            child: Self::run(dir.path(), &log_path, env),
            slot,
            base_url: format!("http://127.0.0.1:{port}"),
            dir,
            log_path,
            http: reqwest::Client::new(),
        }
    }

    fn run(dir: &Path, log_path: &Path, env: &[(&str, &str)]) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("log file");
        Command::new(foyer_bin())
            .args(["serve", "-c", "config.yaml"])
            .current_dir(dir)
            .env("RUST_LOG", "foyer=debug,info")
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start foyer")
    }

    /// SIGKILLs Foyer (no chance to clean up) and starts it again on the same config
    /// and database; waits until it is ready.
    pub async fn kill_and_restart(&mut self) {
        self.kill_and_restart_with(&[], true).await;
    }

    /// Like [`Self::kill_and_restart`], with extra environment (failpoints).
    pub async fn kill_and_restart_with(&mut self, env: &[(&str, &str)], wait: bool) {
        self.kill();
        self.restart(env);
        if wait {
            self.wait_ready().await;
        }
    }

    /// SIGKILLs Foyer: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a killed Foyer again on the same config and database, without waiting.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.child = Self::run(self.dir.path(), &self.log_path, env);
    }

    pub fn child_is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if let Ok(resp) = self.http.get(format!("{}/health/ready", self.base_url)).send().await
                && resp.status() == 200
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "foyer not ready in 60 s (synapse log: {}); log:\n{}",
                Synapse::shared().log_path().display(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(started.elapsed() < limit, "foyer still running after {limit:?}; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args(["-s", signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// A request to Foyer's listener with an optional bearer token.
    pub async fn request(
        &self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("foyer request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Sends a webhook signed by the `standardwebhooks` crate, with a fresh id.
    pub async fn send_webhook(&self, kind: &str, data: Value) -> (u16, Value) {
        let id = format!("msg_{}", random_token());
        self.send_webhook_as(&id, kind, data).await
    }

    /// Sends a webhook and asserts it was accepted (202).
    pub async fn accept(&self, kind: &str, data: Value) {
        let (status, body) = self.send_webhook(kind, data.clone()).await;
        assert_eq!(status, 202, "{kind} {data}: {body}");
    }

    /// Sends a signed webhook with the given `webhook-id`.
    pub async fn send_webhook_as(&self, id: &str, kind: &str, data: Value) -> (u16, Value) {
        let body = envelope(kind, data);
        let now = chrono_now();
        let signature = sign_webhook(WEBHOOK_SECRET, id, now, &body);
        self.post_webhook(
            &[("webhook-id", id), ("webhook-timestamp", &now.to_string()), ("webhook-signature", &signature)],
            "application/json",
            body,
        )
        .await
    }

    /// Posts raw bytes to the webhook endpoint with exactly these headers.
    pub async fn post_webhook(&self, headers: &[(&str, &str)], content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let mut req =
            self.http.post(format!("{}/webhooks/v1/events", self.base_url)).header("content-type", content_type);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.body(body).send().await.expect("post webhook");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET /api/v1/reservations/{id}` with the API token.
    pub async fn reservation(&self, id: &str) -> (u16, Value) {
        let path = format!("/api/v1/reservations/{id}");
        self.request(reqwest::Method::GET, &path, Some(&self.slot.api_token), None).await
    }

    /// `GET /metrics` with the API token: the Prometheus text.
    pub async fn metrics_text(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base_url))
            .bearer_auth(&self.slot.api_token)
            .send()
            .await
            .expect("metrics");
        assert_eq!(resp.status(), 200, "GET /metrics");
        resp.text().await.expect("metrics text")
    }

    /// The value of one Prometheus sample (`name{labels}`), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_in(&self.metrics_text().await, sample).unwrap_or(0.0)
    }
}

/// A reservation as tests drive it through Foyer: its alias, its room, its tickets.
impl TestFoyer {
    /// The alias of the room of reservation `id` ([`Slot::alias`]).
    pub fn alias(&self, id: &str) -> String {
        self.slot.alias(id)
    }

    /// The room of reservation `id`, from the read API, once Foyer has recorded one.
    pub async fn room_id(&self, id: &str, limit: Duration) -> String {
        eventually(limit, &format!("the room of {id}"), || async {
            self.reservation(id).await.1["room_id"].as_str().map(str::to_owned)
        })
        .await
    }

    /// Grants tickets of reservation `id`, as (ticket id, user id); asserts the 202.
    pub async fn grant(&self, id: &str, tickets: &[(&str, &str)]) {
        let tickets: Vec<Value> = tickets.iter().map(|(t, u)| json!({"ticket_id": t, "user_id": u})).collect();
        self.accept("ticket.granted", json!({"reservation_id": id, "tickets": tickets})).await;
    }

    /// Revokes tickets of reservation `id`; asserts the 202.
    pub async fn revoke(&self, id: &str, ticket_ids: &[&str]) {
        self.accept("ticket.revoked", json!({"reservation_id": id, "ticket_ids": ticket_ids})).await;
    }

    /// Points the reservation `id`'s alias at a fresh public room of `owner` that the
    /// bot has joined and that lacks Foyer's marker, as a `createRoom` cut short (or
    /// still running) leaves it. Returns the room.
    pub async fn squat_alias(&self, owner: &TestUser, id: &str) -> String {
        let (status, made) = owner
            .request(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(json!({"preset": "public_chat"})))
            .await;
        assert_eq!(status, 200, "{made}");
        let room = made["room_id"].as_str().expect("room_id").to_owned();
        let bot = TestUser::bot(&self.slot);
        assert_eq!(bot.join(&room).await.0, 200);
        let path = format!("/_matrix/client/v3/directory/room/{}", enc(&self.alias(id)));
        let (status, body) = bot.request(reqwest::Method::PUT, &path, Some(json!({"room_id": room}))).await;
        assert_eq!(status, 200, "{body}");
        room
    }
}

impl Drop for TestFoyer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A webhook's body: one event of `kind` in the envelope every platform event comes in.
pub fn envelope(kind: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": kind, "timestamp": "2026-11-24T10:00:00Z", "data": data})).expect("json")
}

/// A Standard Webhooks signature made by the reference crate, not by Foyer's code.
pub fn sign_webhook(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    standardwebhooks::Webhook::new(secret).expect("secret").sign(id, timestamp, body).expect("sign")
}

/// With `FOYER_TEST_STORE=postgres` (the PostgreSQL pass of `scripts/test`), a test's
/// Foyer gets a fresh PostgreSQL database instead of its SQLite file.
async fn store_config(yaml: String) -> String {
    match std::env::var("FOYER_TEST_STORE").as_deref() {
        Ok("postgres") => yaml.replace("url: sqlite://foyer.db", &format!("url: {}", fresh_postgres_database().await)),
        _ => yaml,
    }
}

/// A streaming platform's webhook sender: signs with Foyer's own signer (any bytes) and,
/// like a real platform, retries a delivery with the same `webhook-id` until it gets a
/// 2xx, on connection errors and 5xx.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    url: String,
    key: foyer::config::WebhookKey,
}

/// What one delivery took: the final status, the attempts and the time from first try.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub status: u16,
    pub attempts: u32,
    pub unavailable: u32,
    pub connection_errors: u32,
    pub latency: Duration,
}

impl Sender {
    pub fn new(base_url: &str) -> Sender {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(&WEBHOOK_SECRET["whsec_".len()..])
            .expect("the test secret is base64");
        Sender {
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            url: format!("{base_url}/webhooks/v1/events"),
            key: foyer::config::WebhookKey::new(key),
        }
    }

    /// Where it sends: `host:port`.
    pub fn authority(&self) -> &str {
        let rest = self.url.strip_prefix("http://").unwrap_or(&self.url);
        rest.split('/').next().unwrap_or(rest)
    }

    /// The `webhook-signature` of `body` sent as `id` at `timestamp`.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        foyer::http::webhooks::signature::sign(&self.key, id, timestamp, body)
    }

    /// One attempt, signed now.
    pub async fn attempt(&self, id: &str, body: &[u8]) -> Result<(u16, Value), reqwest::Error> {
        let now = chrono_now();
        let signature = self.signature(id, now, body);
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Delivers until a 2xx; panics on a 4xx (the sender built a bad event) or after `limit`.
    pub async fn deliver(&self, id: &str, body: &[u8], limit: Duration) -> Delivery {
        let started = Instant::now();
        let mut delivery =
            Delivery { status: 0, attempts: 0, unavailable: 0, connection_errors: 0, latency: Duration::ZERO };
        loop {
            delivery.attempts += 1;
            match self.attempt(id, body).await {
                Ok((status, _)) if (200..300).contains(&status) => {
                    delivery.status = status;
                    delivery.latency = started.elapsed();
                    return delivery;
                }
                Ok((status, answer)) if status < 500 => panic!("webhook {id} refused with {status}: {answer}"),
                Ok(_) => delivery.unavailable += 1,
                Err(_) => delivery.connection_errors += 1,
            }
            assert!(started.elapsed() < limit, "webhook {id} not stored after {limit:?}: {delivery:?}");
            tokio::time::sleep(Duration::from_millis(100 * u64::from(delivery.attempts.min(10)))).await;
        }
    }
}

/// The value of one Prometheus sample (`name{labels}`, exactly) in a `/metrics` text.
pub fn metric_in(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("metric value"))
}

/// One SQL query on a SQLite database file, read-only, through Python's sqlite3 (the
/// test never opens the file the way Foyer does); rows as tab-separated lines.
pub fn sqlite_query(db: &Path, sql: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             con = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n\
             con.execute('PRAGMA busy_timeout = 10000')\n\
             for row in con.execute(sys.argv[2]): print('\\t'.join(map(str, row)))",
        ])
        .arg(db)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(out.status.success(), "sqlite query {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8")
}

/// Runs one SQL statement on a Foyer's SQLite database (read-write), through Python's
/// sqlite3 like [`sqlite_query`]: to put the database in a state Foyer's own code would
/// not write.
pub fn sqlite_exec(db: &Path, sql: &str) {
    let out = Command::new("python3")
        .args(["-c", "import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1], timeout=10)\ncon.execute(sys.argv[2])\ncon.commit()"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(out.status.success(), "sqlite {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A reservation whose room should be open now: it started a minute ago and ends in an
/// hour, titled `Show <id>`.
pub fn open_reservation(id: &str, hosts: &[&str], revision: u64) -> Value {
    let now = chrono::Utc::now();
    let at = |d: chrono::Duration| (now + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({
        "reservation_id": id, "revision": revision, "title": format!("Show {id}"),
        "starts_at": at(chrono::Duration::minutes(-1)), "ends_at": at(chrono::Duration::hours(1)),
        "hosts": hosts,
    })
}
