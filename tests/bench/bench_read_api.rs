//! The read API under load: `GET /api/v1/reservations/{id}` with the API token, at
//! concurrency 64, for random ids among 100,000 reservations stored through Foyer's
//! webhooks, with Foyer's CPU per request and the load generator's beside it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    common::{
        eventually,
        foyer::{Sender, TestFoyer, envelope, sqlite_query},
        percentile, random_token,
    },
    load,
    measure::{
        Profile, busiest_threads, cores, cpu_seconds, deliver_all, machine, own_cpu_seconds, thread_cpu, write_section,
    },
};

const CONCURRENCY: usize = 64;
/// The target (issue 20) on this 2-core machine, load generator included.
const TARGET_RATE: f64 = 15_000.0;
const TARGET_P99_MS: f64 = 5.0;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `total` GETs of random ids among `ids`, `CONCURRENCY` at a time, from the lean
/// generator (`load.rs`, requests made before the clock starts); returns the rate and the
/// sorted latencies.
async fn run(authority: &str, token: &str, ids: &[String], total: usize) -> (f64, Vec<Duration>) {
    let auth = format!("Bearer {token}");
    // A xorshift: random ids, the same on every run.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let requests = (0..total)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = &ids[(x % ids.len() as u64) as usize];
            load::Request::get(&format!("/api/v1/reservations/{id}"), &[("authorization", &auth)])
        })
        .collect();
    let (rate, latencies, failed) = load::send_all(authority, requests, CONCURRENCY, 200).await;
    assert!(
        failed.is_empty(),
        "{} GETs failed, the first: {:?}",
        failed.len(),
        failed.first().map(|r| format!("{} {}", r.status, r.body))
    );
    (rate, latencies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench_read_api() {
    let stored = env_count("FOYER_BENCH_READ_RESERVATIONS", 100_000);
    let total = env_count("FOYER_BENCH_READ_REQUESTS", 200_000);
    // Logging as in production (info), not the tests' debug.
    let foyer = TestFoyer::start_with(|yaml| yaml, &[("RUST_LOG", "info")]).await;
    let pid = foyer.child.id();
    let run_id = random_token()[..6].to_owned();
    let ids: Arc<Vec<String>> = Arc::new((0..stored).map(|i| format!("read-{run_id}-{i}")).collect());

    // Stored through Foyer: signed webhooks; far in the future, so the lifecycle only plans.
    let sender = Sender::new(&foyer.base_url);
    let make_ids = ids.clone();
    let (stored_rate, unavailable) = deliver_all(&sender, CONCURRENCY, stored, move |i| {
        let body = envelope(
            "reservation.created",
            json!({"reservation_id": make_ids[i], "title": format!("Read {i}"),
                   "starts_at": "2027-11-27T19:00:00Z", "ends_at": "2027-11-27T21:00:00Z"}),
        );
        (format!("read-{}", make_ids[i]), body)
    })
    .await;
    println!("stored {stored} reservations at {stored_rate:.0}/s ({unavailable} answers 503)");
    // The lifecycle plans each new reservation; the GETs are measured once none is due
    // any more (each then waits for its opening next year).
    let planning = Instant::now();
    let db = foyer.dir().join("foyer.db");
    eventually(Duration::from_secs(900), "Foyer to plan every stored reservation", || async {
        let now = chrono::Utc::now().timestamp_millis();
        let due = sqlite_query(&db, &format!("SELECT COUNT(*) FROM lifecycle WHERE next_due_at <= {now}"));
        (due.trim() == "0").then_some(())
    })
    .await;
    let planned_in = planning.elapsed();
    println!("every reservation planned {:.1} s later", planned_in.as_secs_f64());
    let (status, answer) = foyer.reservation(&ids[stored - 1]).await;
    assert_eq!(status, 200, "{answer}");

    let token = foyer.slot.api_token.clone();
    let authority = sender.authority();
    let _warm = run(authority, &token, &ids, 10_000.min(total)).await;

    let (foyer_cpu, own_cpu, threads_before, started) =
        (cpu_seconds(pid), own_cpu_seconds(), thread_cpu(pid), Instant::now());
    let (rate, lat) = run(authority, &token, &ids, total).await;
    let wall = started.elapsed().as_secs_f64();
    let (foyer_cpu, own_cpu) = (cpu_seconds(pid) - foyer_cpu, own_cpu_seconds() - own_cpu);
    let threads = busiest_threads(pid, &threads_before);

    // The profile comes from a run of its own: perf's sampling slows what it watches.
    let profile = match Profile::start(pid, "read-api-c64") {
        profile if profile.is_on() => {
            let n = (total / 4).max(1);
            let (rate, _) = run(authority, &token, &ids, n).await;
            profile.stop().map(|table| {
                format!(
                    "Where Foyer's time goes, from a separate run of {n} GETs at concurrency 64 under `perf`\n\
                     (sampling slows it to {rate:.0}/s; self time, by binary, then the hottest functions):\n\n{table}\n\n"
                )
            })
        }
        _ => None,
    };

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p99, max) = (ms(percentile(&lat, 50.0)), ms(percentile(&lat, 99.0)), ms(percentile(&lat, 100.0)));
    let verdict = |what: &str, met: bool, by: String| {
        if met { format!("{what}: met ({by})") } else { format!("{what}: **missed** ({by})") }
    };
    let rate_verdict = verdict(
        &format!("rate ≥ {TARGET_RATE:.0}/s"),
        rate >= TARGET_RATE,
        format!("{:+.0}/s, {:.2}× the target", rate - TARGET_RATE, rate / TARGET_RATE),
    );
    let p99_verdict = verdict(
        &format!("p99 ≤ {TARGET_P99_MS:.0} ms"),
        p99 <= TARGET_P99_MS,
        format!("{:+.2} ms", p99 - TARGET_P99_MS),
    );
    let per_request = (foyer_cpu + own_cpu) / total as f64;
    let body = format!(
        "## Read API\n\n\
         `GET /api/v1/reservations/{{id}}` with the API token, at concurrency {CONCURRENCY}, for {total} random ids among\n\
         {stored} reservations stored through Foyer (signed `reservation.created` webhooks, {stored_rate:.0}/s),\n\
         on SQLite, measured once Foyer had planned every one ({:.0} s after the last was stored: the\n\
         lifecycle plans each new reservation). The load generator (raw HTTP/1.1 on 64 kept-alive connections, requests\n\
         made before the clock starts) runs in the test process on the same machine.\n\n\
         | requests | rate | p50 | p99 | max | Foyer's CPU per request | load generator's CPU per request |\n\
         |---|---|---|---|---|---|---|\n\
         | {total} | {rate:.0}/s | {p50:.2} ms | {p99:.2} ms | {max:.2} ms | {:.1} µs | {:.1} µs |\n\n\
         Target (issue 20): at least {TARGET_RATE:.0} GETs/s with p99 at most {TARGET_P99_MS:.0} ms at concurrency 64 on this\n\
         2-core machine, load generator beside it. {rate_verdict}; {p99_verdict}.\n\n\
         Where the CPU went ({wall:.1} s of wall time, so {:.1} CPU-seconds on this machine): Foyer\n\
         {foyer_cpu:.1} s, the load generator {own_cpu:.1} s, together {:.0}% of the machine. Foyer's busiest\n\
         threads: {threads}. Foyer and the load generator together spent {:.0} µs of CPU per request, so\n\
         {:.0} cores allow at most {:.0}/s at that cost.\n\n{}\
         Measured {}.",
        planned_in.as_secs_f64(),
        foyer_cpu * 1e6 / total as f64,
        own_cpu * 1e6 / total as f64,
        wall * cores(),
        100.0 * (foyer_cpu + own_cpu) / (wall * cores()),
        per_request * 1e6,
        cores(),
        cores() / per_request,
        profile.unwrap_or_default(),
        machine()
    );
    println!("{body}");
    write_section("read-api", &body);
}
