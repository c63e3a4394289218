//! Webhook intake on PostgreSQL: the same signed `ticket.granted` load as the SQLite
//! intake benchmark (three runs of 30,000 at concurrency 64), each webhook answered only
//! once committed, next to the raw rate of single-row commits on the same server.

use std::time::{Duration, Instant};

use crate::{
    bench_intake::{reservations, run},
    common::{
        foyer::{Sender, TestFoyer},
        percentile,
        postgres::fresh_postgres_database,
        random_token,
    },
    measure::{Profile, busiest_threads, cores, cpu_seconds, machine, own_cpu_seconds, thread_cpu, write_section},
};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Single-row inserts, each its own transaction, on one connection, for `seconds`.
async fn raw_postgres_commits(url: &str, seconds: u64) -> f64 {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.expect("raw postgres");
    sqlx::query("CREATE TABLE raw_commits (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .expect("table");
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let mut tx = sqlx::Connection::begin(&mut conn).await.expect("begin");
        sqlx::query("INSERT INTO raw_commits (body) VALUES ($1)")
            .bind("a webhook-sized row")
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// The server's settings that decide what a commit costs.
async fn durability(url: &str) -> String {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.expect("postgres");
    let mut shown = Vec::new();
    for setting in ["fsync", "synchronous_commit", "wal_sync_method", "server_version"] {
        let (value,): (String,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SHOW {setting}"))).fetch_one(&mut conn).await.expect("SHOW");
        shown.push(format!("`{setting}={value}`"));
    }
    shown.join(", ")
}

/// The CPU-seconds used so far by the PostgreSQL server listening on `port`: its
/// postmaster (with the children it has reaped) and its live processes.
fn postgres_cpu_seconds(port: &str) -> Option<f64> {
    let stat = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields = |text: &str| -> Vec<String> {
        text.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
    };
    let ticks = |f: &[String], i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())).map(str::to_owned))
        .collect();
    let port_arg = format!("\0-p\0{port}\0");
    let postmaster = pids.iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&port_arg) && c.starts_with(b"/"))
    })?;
    let main = fields(&stat(postmaster)?);
    // utime + stime + the reaped children's cutime + cstime; USER_HZ is 100 on Linux.
    let mut total = ticks(&main, 11) + ticks(&main, 12) + ticks(&main, 13) + ticks(&main, 14);
    for pid in &pids {
        if let Some(f) = stat(pid).map(|s| fields(&s))
            && f.get(1).is_some_and(|ppid| ppid == postmaster)
        {
            total += ticks(&f, 11) + ticks(&f, 12);
        }
    }
    Some(total / 100.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench_postgres_intake() {
    let per_run = env_count("FOYER_BENCH_POSTGRES_INTAKE_RUN", 30_000);
    let url = fresh_postgres_database().await;
    let port = url.rsplit_once(':').and_then(|(_, rest)| rest.split_once('/')).map(|(p, _)| p.to_owned());
    let port = port.expect("a port in the PostgreSQL URL");
    let foyer_url = url.clone();
    let foyer = TestFoyer::start_with(
        move |yaml| yaml.replace("url: sqlite://foyer.db", &format!("url: {foyer_url}")),
        &[("RUST_LOG", "info")],
    )
    .await;
    let config = std::fs::read_to_string(foyer.dir().join("config.yaml")).expect("config");
    assert!(config.contains("url: postgres://"), "Foyer runs on PostgreSQL");
    let pid = foyer.child.id();
    let sender = Sender::new(&foyer.base_url);
    let run_id = random_token()[..6].to_owned();
    reservations(&foyer, &run_id).await;
    let settings = durability(&url).await;
    let raw_url = fresh_postgres_database().await;
    let raw = raw_postgres_commits(&raw_url, 5).await;
    let _warm = run(&sender, &format!("{run_id}w"), 0, 8, 2_000).await;
    let (rate1, lat1) = run(&sender, &run_id, 0, 1, 2_000).await;

    let (foyer_cpu, own_cpu, pg_cpu, started) =
        (cpu_seconds(pid), own_cpu_seconds(), postgres_cpu_seconds(&port), Instant::now());
    let threads_before = thread_cpu(pid);
    let mut runs64 = Vec::new();
    for r in 0..3 {
        runs64.push(run(&sender, &run_id, r + 1, 64, per_run).await);
    }
    let threads = busiest_threads(pid, &threads_before);
    let wall = started.elapsed().as_secs_f64();
    let (foyer_cpu, own_cpu) = (cpu_seconds(pid) - foyer_cpu, own_cpu_seconds() - own_cpu);
    let pg_cpu = pg_cpu.zip(postgres_cpu_seconds(&port)).map(|(before, after)| after - before);

    // The profile comes from a run of its own: perf's sampling slows what it watches.
    let profile = match Profile::start(pid, "intake-postgres-c64") {
        profile if profile.is_on() => {
            let n = (per_run / 3).max(1);
            let (rate, _) = run(&sender, &run_id, 9, 64, n).await;
            profile.stop().map(|table| {
                format!(
                    "Where Foyer's time goes, from a separate run of {n} at concurrency 64 under `perf`\n\
                     (sampling slows it to {rate:.0}/s; self time, by binary, then the hottest functions):\n\n{table}\n\n"
                )
            })
        }
        _ => None,
    };

    let accepted: usize = runs64.iter().map(|(_, lat)| lat.len()).sum();
    let per_webhook = |cpu: f64| cpu * 1e6 / accepted as f64;
    let all_cpu = foyer_cpu + own_cpu + pg_cpu.unwrap_or(0.0);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let row = |c: usize, rate: f64, lat: &[Duration]| {
        format!(
            "| {c} | {} | {rate:.0}/s | {:.2} ms | {:.2} ms | {:.2} ms | {:.2}× |",
            lat.len(),
            ms(percentile(lat, 50.0)),
            ms(percentile(lat, 99.0)),
            ms(percentile(lat, 100.0)),
            rate / raw
        )
    };
    let pg_line = match pg_cpu {
        Some(cpu) => {
            format!("PostgreSQL's CPU per accepted webhook: {:.0} µs ({cpu:.1} CPU-seconds).", per_webhook(cpu))
        }
        None => "PostgreSQL's CPU could not be read from /proc.".to_owned(),
    };
    let body = format!(
        "## Webhook intake on PostgreSQL\n\n\
         The intake benchmark's load (signed `ticket.granted` webhooks, one new ticket each, 100\n\
         reservations opening next year, the same lean load generator in the test process) against Foyer on\n\
         PostgreSQL: each webhook answered `202` once the transaction of its batch commits (group\n\
         commit, four writers). Beside it, the\n\
         raw rate of single-row commits (one INSERT per transaction, one connection) on the same\n\
         server. The server is the test harness's (`scripts/postgres`): {settings}, so\n\
         commits are not flushed to disk and these figures compare CPU paths, not durable commits.\n\n\
         | concurrency | webhooks | rate | p50 | p99 | max | rate / raw PostgreSQL commits |\n|---|---|---|---|---|---|---|\n\
         {}\n{}\n\n\
         Raw single-row commits: {raw:.0}/s.\n\n\
         **Foyer's CPU per accepted webhook** at concurrency 64: {:.0} µs ({foyer_cpu:.1} CPU-seconds over {accepted} webhooks).\n\
         {pg_line}\n\n\
         Where the CPU went during the three concurrency-64 runs ({wall:.1} s of wall time, so {:.1} CPU-seconds on\n\
         this machine): Foyer {foyer_cpu:.1} s, PostgreSQL {}, the load generator {own_cpu:.1} s. Foyer's busiest\n\
         threads: {threads}. Together, Foyer, PostgreSQL and the load generator spent {:.0} µs of CPU per\n\
         webhook, so {:.0} cores allow at most {:.0}/s at that cost.\n\n{}\
         Measured {}.",
        row(1, rate1, &lat1),
        runs64.iter().map(|(rate, lat)| row(64, *rate, lat)).collect::<Vec<_>>().join("\n"),
        per_webhook(foyer_cpu),
        wall * cores(),
        pg_cpu.map_or("unknown".to_owned(), |c| format!("{c:.1} s")),
        per_webhook(all_cpu),
        cores(),
        cores() * 1e6 / per_webhook(all_cpu),
        profile.unwrap_or_default(),
        machine()
    );
    println!("{body}");
    write_section("intake-postgres", &body);
}
