//! Scheduler precision: 10,000 reservations whose `opens_at` are spread evenly over
//! 60 s, against the homeserver stand-in (which answers at once), on SQLite. Each room's
//! lateness is the `createRoom` arrival at the stand-in minus its `opens_at`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::{
    common::{
        foyer::{Sender, TestFoyer, envelope, sqlite_query},
        percentile, random_token, read_tail,
        standin::StandIn,
    },
    measure::{busiest_threads, cores, cpu_seconds, deliver_all, machine, own_cpu_seconds, thread_cpu, write_section},
};

const N: usize = 10_000;
const WINDOW_MS: i64 = 60_000;
const IN_FLIGHT: usize = 64;
/// `chat.open_before_seconds`: `opens_at` is `starts_at` minus exactly this.
const OPEN_BEFORE: i64 = 3600;
/// Webhooks of the pilot run that measures the sending rate.
const PILOT: usize = 500;

/// Delivers every (webhook id, body) with `IN_FLIGHT` at a time; returns the time taken.
async fn send_all(sender: &Sender, webhooks: Vec<(String, Vec<u8>)>) -> Duration {
    let started = Instant::now();
    let webhooks = Arc::new(webhooks);
    deliver_all(sender, IN_FLIGHT, webhooks.len(), move |i| webhooks[i].clone()).await;
    started.elapsed()
}

fn reservation(run: &str, name: &str, opens_at: DateTime<Utc>) -> (String, Vec<u8>) {
    let starts_at = opens_at + chrono::Duration::seconds(OPEN_BEFORE);
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let body = envelope(
        "reservation.created",
        json!({"reservation_id": format!("sched-{run}-{name}"), "title": format!("Show {name}"),
               "starts_at": at(starts_at), "ends_at": at(starts_at + chrono::Duration::hours(1)),
               "stream_url": format!("https://stream.example.org/watch/{name}"),
               "hosts": ["@host:localhost"],
               "chat": {"open_before_seconds": OPEN_BEFORE}}),
    );
    (format!("sched-{run}-{name}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench_scheduler_precision() {
    let hs = StandIn::start().await;
    let slot = hs.slot();
    let foyer = TestFoyer::spawn(slot.clone(), &slot.config_yaml());
    foyer.wait_ready().await;
    let sender = Sender::new(&foyer.base_url);
    let run = random_token()[..6].to_owned();
    let db = foyer.dir().join("foyer.db");

    // The pilot: reservations of next year, to learn how fast webhooks go in and are
    // planned (each makes its reservation due at once).
    let next_year = Utc::now() + chrono::Duration::days(365);
    let pilot: Vec<_> = (0..PILOT).map(|i| reservation(&run, &format!("pilot{i}"), next_year)).collect();
    let started = Instant::now();
    send_all(&sender, pilot).await;
    let due_now = || format!("SELECT COUNT(*) FROM lifecycle WHERE next_due_at < {}", Utc::now().timestamp_millis());
    while sqlite_query(&db, &due_now()).trim() != "0" {
        assert!(started.elapsed() < Duration::from_secs(600), "the pilot is still due after 10 min");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pilot_rate = PILOT as f64 / started.elapsed().as_secs_f64();
    // Twice the expected time to send and plan, plus a margin.
    let lead_ms = ((2.0 * N as f64 / pilot_rate) * 1000.0) as i64 + 10_000;
    // Whole milliseconds, as the webhooks carry them: a finer `first` would make rooms
    // that open on time look up to 1 ms early.
    let first = chrono::SubsecRound::trunc_subsecs(Utc::now() + chrono::Duration::milliseconds(lead_ms), 3);
    eprintln!(
        "[sched] foyer pid {}, pilot {pilot_rate:.0}/s sent and planned, window opens in {:.1}s at {first}",
        foyer.child.id(),
        lead_ms as f64 / 1000.0
    );

    let opens_at = |i: usize| first + chrono::Duration::milliseconds(i as i64 * WINDOW_MS / N as i64);
    let webhooks: Vec<_> = (0..N).map(|i| reservation(&run, &format!("{i:05}"), opens_at(i))).collect();
    let sending = send_all(&sender, webhooks).await;
    let rate = N as f64 / sending.as_secs_f64();
    let sent_ahead = (first - Utc::now()).num_milliseconds() as f64 / 1000.0;
    assert!(sent_ahead > 0.0, "the webhooks took {sending:?}, past the first opening");
    // Each webhook made its reservation due at once; wait until the worker planned them all.
    let before_window = format!("SELECT COUNT(*) FROM lifecycle WHERE next_due_at < {}", first.timestamp_millis());
    let drained_ahead = loop {
        let ahead = (first - Utc::now()).num_milliseconds() as f64 / 1000.0;
        if sqlite_query(&db, &before_window).trim() == "0" || ahead < 1.0 {
            break ahead;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "[sched] sent {N} in {:.1}s ({rate:.0}/s), {sent_ahead:.1}s ahead; planned {drained_ahead:.1}s ahead",
        sending.as_secs_f64()
    );

    let pid = foyer.child.id();
    let (foyer_cpu, own_cpu, window_started) = (cpu_seconds(pid), own_cpu_seconds(), Instant::now());
    let threads_before = thread_cpu(pid);
    let prefix = format!("{}sched-{run}-", slot.alias_prefix);
    let give_up = first + chrono::Duration::milliseconds(WINDOW_MS) + chrono::Duration::seconds(180);
    let created = loop {
        let created: Vec<_> = hs
            .created()
            .into_iter()
            .filter_map(|(name, at)| name.strip_prefix(&prefix).and_then(|i| i.parse::<usize>().ok()).map(|i| (i, at)))
            .collect();
        if created.len() >= N {
            break created;
        }
        assert!(
            Utc::now() < give_up,
            "only {} of {N} rooms created; log tail:\n{}",
            created.len(),
            read_tail(&foyer.log_path)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let threads = busiest_threads(pid, &threads_before);
    let wall = window_started.elapsed().as_secs_f64();
    let (foyer_cpu, own_cpu) = (cpu_seconds(pid) - foyer_cpu, own_cpu_seconds() - own_cpu);
    let calls = hs.calls();
    assert!(hs.unknown().is_empty(), "routes the stand-in does not know: {:?}", hs.unknown());

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let lateness = |rooms: &mut dyn Iterator<Item = &(usize, DateTime<Utc>)>| {
        let mut late: Vec<Duration> =
            rooms.map(|&(i, at)| (at - opens_at(i)).to_std().unwrap_or(Duration::ZERO)).collect();
        late.sort();
        late
    };
    let all = lateness(&mut created.iter());
    assert_eq!(all.len(), N, "one room per reservation");
    let early = created.iter().filter(|&&(i, at)| at < opens_at(i)).count();
    let (p50, p99, max) = (percentile(&all, 50.0), percentile(&all, 99.0), all[N - 1]);
    let mut slices = String::new();
    for s in 0..6 {
        let slice = lateness(&mut created.iter().filter(|(i, _)| i * 6 / N == s));
        slices.push_str(&format!(
            "| {}–{} s | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            s * 10,
            s * 10 + 10,
            ms(percentile(&slice, 50.0)),
            ms(percentile(&slice, 99.0)),
            ms(slice[slice.len() - 1])
        ));
    }
    let metric = |q: &str| format!("foyer_lifecycle_open_lateness_seconds{{quantile=\"{q}\"}}");
    let (m50, m99, m_max) =
        (foyer.metric(&metric("0.5")).await, foyer.metric(&metric("0.99")).await, foyer.metric(&metric("1")).await);
    let m_count = foyer.metric("foyer_lifecycle_open_lateness_seconds_count").await;
    let m_mean = foyer.metric("foyer_lifecycle_open_lateness_seconds_sum").await / m_count.max(1.0);
    let mean = all.iter().sum::<Duration>() / N as u32;
    // The log is the first thing to read when the figures look wrong.
    let kept = crate::common::repo_root().join("target/bench-scheduler-foyer.log");
    let _ = std::fs::write(&kept, foyer.log());
    eprintln!("[sched] Foyer's log: {}", kept.display());
    let per_open = |route: &str| calls.get(route).copied().unwrap_or(0) as f64 / N as f64;

    let body = format!(
        "## Scheduler precision\n\n\
         {N} reservations (each with a stream link and a host) whose `opens_at` are spread evenly over\n\
         {} s, sent as signed `reservation.created` webhooks ({IN_FLIGHT} in flight) before the first\n\
         opening, to one Foyer on SQLite whose homeserver is a stand-in in the test process that\n\
         answers every call at once. Lateness is the `createRoom` arrival at the stand-in minus\n\
         the reservation's `opens_at`.\n\n\
         | rooms | p50 | p99 | max | mean |\n|---|---|---|---|---|\n\
         | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n\n\
         By the part of the window the room was due in:\n\n\
         | due | p50 | p99 | max |\n|---|---|---|---|\n{slices}\n\
         Foyer's own `foyer_lifecycle_open_lateness_seconds` (the time it planned the opening\n\
         minus `opens_at`, whole milliseconds): mean {:.1} ms over {m_count:.0} rooms; its summary's\n\
         quantiles (a rolling window, approximate): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms.\n\
         Webhooks went in at {rate:.0}/s ({:.1} s for {N}; the pilot, sent and planned, {pilot_rate:.0}/s) and were all\n\
         planned {drained_ahead:.1} s before the first opening; rooms opened early: {early}.\n\
         Homeserver calls per opening: {:.1} state PUTs, {:.1} sends, {:.1} invites.\n\n\
         CPU from the end of planning (before the first opening) to the last opening ({wall:.1} s): Foyer {foyer_cpu:.1} s, the test\n\
         process with the stand-in {own_cpu:.1} s, of {:.1} CPU-seconds on this machine. Foyer's busiest\n\
         threads: {threads}.\n\n\
         Measured {}.",
        WINDOW_MS / 1000,
        all.len(),
        ms(p50),
        ms(p99),
        ms(max),
        ms(mean),
        m_mean * 1000.0,
        m50 * 1000.0,
        m99 * 1000.0,
        m_max * 1000.0,
        sending.as_secs_f64(),
        per_open("PUT state"),
        per_open("PUT send"),
        per_open("POST invite"),
        wall * cores(),
        machine()
    );
    println!("{body}");
    write_section("scheduler-precision", &body);
}
