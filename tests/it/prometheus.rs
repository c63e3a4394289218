//! A real Prometheus (Debian's, `scripts/install-prometheus.sh`) scraping Foyer with the
//! API token: after a small scenario its API has the webhook, step and phase families;
//! `promtool check metrics` passes on a scrape; and every query of the Grafana dashboard
//! (`contrib/grafana/foyer.json`) runs, returns data, and names only documented metrics.

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::common::{
    eventually,
    foyer::{TestFoyer, open_reservation},
    free_port, read_tail, repo_root,
    synapse::Synapse,
    unique,
};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// A Prometheus process scraping one Foyer every second, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus on a free port, scraping `foyer` with its API token, and waits
    /// until it is ready.
    async fn scraping(foyer: &TestFoyer) -> Prometheus {
        assert!(Path::new(PROMETHEUS).is_file(), "{PROMETHEUS} is missing: run scripts/install-prometheus.sh");
        let dir = tempfile::Builder::new().prefix("foyer-prometheus-").tempdir().expect("tempdir");
        let target = foyer.base_url.trim_start_matches("http://");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: foyer\n    \
             authorization:\n      credentials: {token}\n    static_configs:\n      - targets: [\"{target}\"]\n",
            token = foyer.slot.api_token
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let port = free_port();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus =
            Prometheus { child, url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new(), _dir: dir };
        let log = prometheus._dir.path().join("prometheus.log");
        eventually(Duration::from_secs(30), "Prometheus ready", || async {
            let ready = prometheus.http.get(format!("{}/-/ready", prometheus.url)).send().await;
            ready.ok().filter(|r| r.status() == 200).map(|_| ())
        })
        .await;
        eventually(Duration::from_secs(30), "Prometheus scraping Foyer (target up)", || async {
            let targets = prometheus.api("targets", &[]).await;
            let health = targets["data"]["activeTargets"][0]["health"].as_str().map(str::to_owned);
            if health.as_deref() != Some("up") {
                eprintln!("[prometheus] target: {}; log:\n{}", targets["data"]["activeTargets"][0], read_tail(&log));
            }
            (health.as_deref() == Some("up")).then_some(())
        })
        .await;
        prometheus
    }

    /// `GET /api/v1/<path>` with query parameters: the JSON answer.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = url::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), query).expect("url");
        let resp = self.http.get(url).send().await.expect("prometheus");
        resp.json().await.expect("prometheus json")
    }

    /// An instant query's answer (`status`, `data.result`, or `error`).
    async fn query(&self, promql: &str) -> Value {
        self.api("query", &[("query", promql)]).await
    }
}

/// The families `docs/metrics.md` lists.
fn documented() -> BTreeSet<String> {
    foyer::metrics_help::documented().into_iter().map(|f| f.name).collect()
}

/// The metric names a PromQL expression names: each `foyer_…` word, less the suffixes
/// of a histogram's or summary's series.
fn metrics_named(promql: &str) -> BTreeSet<String> {
    let words = promql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    words
        .filter(|w| w.starts_with("foyer_"))
        .map(|w| {
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| w.strip_suffix(s));
            family.filter(|f| documented().contains(*f)).unwrap_or(w).to_owned()
        })
        .collect()
}

/// A scenario that moves the webhook, step and phase families: a reservation whose room
/// opens at once, and a ticket for it.
async fn drive(foyer: &TestFoyer) {
    let alice = Synapse::shared().create_user("alice").await;
    let id = unique("prom");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t-alice", &alice.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(30), "alice's invite", || async {
        alice.invited_rooms().await.contains(&room).then_some(())
    })
    .await;
}

#[tokio::test]
async fn prometheus_scrapes_foyer_with_the_token_and_has_the_webhook_step_and_phase_families() {
    let foyer = TestFoyer::start().await;
    let prometheus = Prometheus::scraping(&foyer).await;
    drive(&foyer).await;
    for (promql, label) in [
        ("foyer_webhooks_total{type=\"reservation.created\",result=\"accepted\"}", "type"),
        ("foyer_lifecycle_steps_total{step=\"create_room\",result=\"ok\"}", "step"),
        ("foyer_reservations{phase=\"open\"}", "phase"),
    ] {
        eventually(Duration::from_secs(60), &format!("Prometheus has {promql} = 1"), || async {
            let answer = prometheus.query(promql).await;
            assert_eq!(answer["status"], "success", "{promql}: {answer}");
            let sample = &answer["data"]["result"][0];
            (sample["value"][1] == "1" && sample["metric"][label].is_string()).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn promtool_check_metrics_passes_on_a_scrape() {
    let foyer = TestFoyer::start().await;
    drive(&foyer).await;
    let scrape = foyer.metrics_text().await;
    let mut promtool = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (scripts/install-prometheus.sh)");
    std::io::Write::write_all(&mut promtool.stdin.take().expect("stdin"), scrape.as_bytes()).expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\non:\n{scrape}");
}

#[tokio::test]
async fn every_dashboard_query_runs_returns_data_and_names_documented_metrics() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("contrib/grafana/foyer.json")).unwrap())
            .expect("the dashboard is JSON");
    let queries: Vec<(String, String)> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().expect("a panel's title").to_owned();
            let targets = panel["targets"].as_array().expect("a panel's targets").clone();
            targets.into_iter().map(move |t| (title.clone(), t["expr"].as_str().expect("expr").to_owned()))
        })
        .collect();
    let titles: BTreeSet<&str> = queries.iter().map(|(t, _)| t.as_str()).collect();
    for wanted in ["Webhooks by result", "Steps by result", "Homeserver latency p50 / p99", "Due lateness"] {
        assert!(titles.contains(wanted), "no panel {wanted:?}: {titles:?}");
    }
    for wanted in ["Reservations by phase", "Age of the last transaction"] {
        assert!(titles.contains(wanted), "no panel {wanted:?}: {titles:?}");
    }
    let documented = documented();
    for (title, promql) in &queries {
        let named = metrics_named(promql);
        assert!(!named.is_empty(), "{title}: {promql} names no Foyer metric");
        let unknown: Vec<_> = named.difference(&documented).collect();
        assert!(unknown.is_empty(), "{title}: {promql} names {unknown:?}, which docs/metrics.md does not list");
    }

    let foyer = TestFoyer::start().await;
    let prometheus = Prometheus::scraping(&foyer).await;
    drive(&foyer).await;
    // A rate needs a series to grow after Prometheus first saw it: once it has the
    // first room's requests, a second room makes the same requests again.
    let created = "foyer_homeserver_request_duration_seconds_count{endpoint=\"create_room\"}";
    eventually(Duration::from_secs(30), "Prometheus has the first room's requests", || async {
        prometheus.query(created).await["data"]["result"].as_array().is_some_and(|r| !r.is_empty()).then_some(())
    })
    .await;
    drive(&foyer).await;
    for (title, promql) in &queries {
        eventually(Duration::from_secs(60), &format!("{title}: {promql} returns data"), || async {
            let answer = prometheus.query(promql).await;
            assert_eq!(answer["status"], "success", "{title}: {promql}: {answer}");
            let result = answer["data"]["result"].as_array().expect("result");
            // A quantile of no requests yet is NaN: data, but not yet the panel's.
            let real = result.iter().any(|s| s["value"][1].as_str().is_some_and(|v| v != "NaN"));
            real.then_some(())
        })
        .await;
    }
}
