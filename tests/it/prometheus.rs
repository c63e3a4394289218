//! A real Prometheus (Debian's, `scripts/install-prometheus.sh`) scraping Foyer with the
//! API token: the families an operator graphs arrive, `promtool check metrics` passes on
//! a scrape, and every query of the Grafana dashboard (`contrib/grafana/foyer.json`)
//! runs, returns data and names only documented metrics.

use std::{
    collections::BTreeSet,
    io::Write as _,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::common::{
    eventually,
    foyer::{TestFoyer, open_reservation},
    free_port, repo_root, unique,
};

/// A Prometheus of the test's own, scraping one Foyer every second; killed when dropped.
struct TestPrometheus {
    child: Child,
    base_url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestPrometheus {
    async fn scraping(foyer: &TestFoyer) -> TestPrometheus {
        let dir = tempfile::Builder::new().prefix("prometheus-test-").tempdir().expect("tempdir");
        let token = dir.path().join("foyer-token");
        std::fs::write(&token, &foyer.slot.api_token).expect("token file");
        let target = foyer.base_url.trim_start_matches("http://");
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: foyer
    authorization: {{credentials_file: {token}}}
    static_configs: [{{targets: ['{target}']}}]
",
            token = token.display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("/usr/bin/prometheus (scripts/install-prometheus.sh installs it)");
        let prometheus = TestPrometheus {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        eventually(Duration::from_secs(30), "Prometheus ready", || async {
            let ready = prometheus.http.get(format!("{}/-/ready", prometheus.base_url)).send().await.ok()?;
            ready.status().is_success().then_some(())
        })
        .await;
        prometheus
    }

    /// `/api/v1/query`: the result vector, or the error Prometheus gave for the query.
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let mut url = url::Url::parse(&format!("{}/api/v1/query", self.base_url)).expect("a URL");
        url.query_pairs_mut().append_pair("query", promql);
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `promql` returns at least one series; panics on a query error.
    async fn wait_for_data(&self, promql: &str) -> Vec<Value> {
        eventually(Duration::from_secs(60), &format!("data for {promql}"), || async {
            let result = self.query(promql).await.unwrap_or_else(|e| panic!("{promql}: {e}"));
            (!result.is_empty()).then_some(result)
        })
        .await
    }
}

impl Drop for TestPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Foyer and Prometheus and gives Foyer something to count: a webhook accepted,
/// one refused, and a room opened.
async fn scraped_foyer() -> (TestFoyer, TestPrometheus) {
    let foyer = TestFoyer::start().await;
    let prometheus = TestPrometheus::scraping(&foyer).await;
    let id = unique("prom");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    let (status, _) = foyer.post_webhook(&[], "application/json", b"{}".to_vec()).await;
    assert_eq!(status, 401, "an unsigned webhook is refused");
    foyer.room_id(&id, Duration::from_secs(60)).await;
    (foyer, prometheus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_foyer_with_the_api_token() {
    let (foyer, prometheus) = scraped_foyer().await;
    let up = prometheus.wait_for_data("up{job=\"foyer\"} == 1").await;
    assert_eq!(up.len(), 1, "{up:?}");

    let accepted =
        prometheus.wait_for_data("foyer_webhooks_total{type=\"reservation.created\",result=\"accepted\"}").await;
    assert_eq!(accepted[0]["value"][1], "1", "one reservation accepted: {accepted:?}");
    prometheus.wait_for_data("foyer_webhooks_total{result=\"bad_signature\"}").await;
    prometheus.wait_for_data("foyer_lifecycle_steps_total{step=\"create_room\",result=\"ok\"}").await;
    let phases = prometheus.wait_for_data("foyer_reservations{phase=\"open\"} >= 1").await;
    assert_eq!(phases.len(), 1, "{phases:?}");

    // promtool's own check of the exposition format and naming, on the text Prometheus read.
    let scrape = foyer.metrics_text().await;
    let mut promtool = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/promtool");
    promtool.stdin.take().expect("stdin").write_all(scrape.as_bytes()).expect("write to promtool");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// The metric names `docs/metrics.md` lists.
fn documented_metrics() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo_root().join("docs/metrics.md")).expect("docs/metrics.md");
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
        .filter(|name| name.starts_with("foyer_"))
        .collect()
}

/// Every Foyer metric a PromQL expression names, the histogram series' suffixes taken off.
fn metrics_named(promql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = promql;
    while let Some(at) = rest.find("foyer_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        names.push(base.to_owned());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_and_names_documented_metrics() {
    let text = std::fs::read_to_string(repo_root().join("contrib/grafana/foyer.json")).expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let queries: Vec<(String, String)> = panels
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            targets.into_iter().map(move |t| (title.clone(), t["expr"].as_str().unwrap_or_default().to_owned()))
        })
        .collect();
    let titles: BTreeSet<&str> = queries.iter().map(|(title, _)| title.as_str()).collect();
    assert_eq!(titles.len(), 6, "the six panels of issue 19: {titles:?}");

    let documented = documented_metrics();
    for (title, promql) in &queries {
        let named = metrics_named(promql);
        assert!(!named.is_empty(), "{title}: {promql} names no Foyer metric");
        for name in named {
            assert!(documented.contains(&name), "{title}: {name} is not in docs/metrics.md");
        }
    }
    let (_foyer, prometheus) = scraped_foyer().await;
    for (title, promql) in &queries {
        prometheus.wait_for_data(promql).await;
        eprintln!("[dashboard] {title}: {promql} has data");
    }

    // The panels in Prometheus's own graph page, for docs/metrics.md (docs/dashboard.png).
    let mut graph = url::Url::parse(&format!("{}/graph", prometheus.base_url)).expect("a URL");
    for (i, (_, promql)) in queries.iter().enumerate() {
        graph
            .query_pairs_mut()
            .append_pair(&format!("g{i}.expr"), promql)
            .append_pair(&format!("g{i}.tab"), "0")
            .append_pair(&format!("g{i}.range_input"), "5m");
    }
    let browser = crate::browser::Browser::start().await;
    browser.resize(1280, 4600).await;
    browser.goto(graph.as_str()).await;
    eventually(Duration::from_secs(30), "every graph drawn", || async {
        // Prometheus 2.42's classic graph page: a rickshaw graph per query, a path once drawn.
        let source = browser.source().await;
        let graphs = source.matches("class=\"graph rickshaw_graph\"").count();
        (graphs == queries.len() && source.matches("<path").count() >= queries.len()).then_some(())
    })
    .await;
    let shot = repo_root().join("target/test-artifacts/dashboard.png");
    browser.screenshot(&shot).await;
    eprintln!("[dashboard] screenshot saved to {}", shot.display());
}
