//! Load while faulting: 1,000 signed webhooks a second for 30 s while rooms open and
//! Synapse restarts once. Every webhook Foyer answered 2xx must be in the store.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::common::{
    foyer::{Delivery, Sender, TestFoyer, envelope, sqlite_query},
    percentile, random_token,
    synapse::Synapse,
    users::TestUser,
};

const RATE: u64 = 1000;
const SECONDS: u64 = 30;
const RESERVATIONS: usize = 30;
const HOLDERS: usize = 20;
const IN_FLIGHT: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_webhooks_a_second_while_rooms_open_and_synapse_restarts() {
    let _heavy = crate::HEAVY.lock().await;
    let synapse = Arc::new(Synapse::dedicated(1));
    let slot = synapse.take_slot();
    let foyer = TestFoyer::spawn(slot.clone(), &slot.config_yaml());
    foyer.wait_ready().await;
    let mut holders: Vec<TestUser> = Vec::new();
    for _ in 0..HOLDERS {
        holders.push(synapse.create_user("load").await);
    }

    // Rooms open one a second during the load.
    let run = random_token()[..6].to_owned();
    let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let start = Utc::now() + chrono::Duration::seconds(3);
    for r in 0..RESERVATIONS {
        let opens = start + chrono::Duration::seconds(r as i64);
        foyer
            .accept(
                "reservation.created",
                json!({"reservation_id": format!("load-{run}-{r}"), "title": format!("Load {r}"),
                       "starts_at": at(opens + chrono::Duration::minutes(1)),
                       "ends_at": at(opens + chrono::Duration::hours(1)),
                       "chat": {"open_before_seconds": 60}}),
            )
            .await;
    }

    // The load: webhook i grants ticket i of reservation i % R to holder (i / R) % H; every
    // 50th webhook is also delivered a second time, as a platform's retry would.
    let sender = Sender::new(&foyer.base_url);
    let total = RATE * SECONDS;
    let started = Instant::now();
    let restarter = {
        let synapse = synapse.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_secs(10));
            let down = Instant::now();
            synapse.stop();
            std::thread::sleep(Duration::from_secs(2));
            synapse.start_again();
            down.elapsed()
        })
    };
    // Like a platform's sender, at most IN_FLIGHT deliveries at once: when Foyer is slower
    // than the offered rate, the rate falls (and is reported) instead of piling up.
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + Duration::from_micros(i * 1_000_000 / RATE);
        tokio::time::sleep_until(due.into()).await;
        let permit = permits.clone().acquire_owned().await.expect("permits");
        let sender = sender.clone();
        let id = format!("load-{run}-{i}");
        let body = envelope(
            "ticket.granted",
            json!({"reservation_id": format!("load-{run}-{}", i as usize % RESERVATIONS),
                   "tickets": [{"ticket_id": format!("t{i}"), "user_id": holders[(i as usize / RESERVATIONS) % HOLDERS].user_id}]}),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let first = sender.deliver(&id, &body, Duration::from_secs(120)).await;
            let again = (i % 50 == 0).then(|| sender.clone());
            let second = match again {
                Some(sender) => Some(sender.deliver(&id, &body, Duration::from_secs(120)).await),
                None => None,
            };
            (first, second)
        }));
    }
    let offered = started.elapsed();
    let mut deliveries: Vec<Delivery> = Vec::with_capacity(tasks.len());
    let mut resent = 0;
    for task in tasks {
        let (first, second) = task.await.expect("delivery task");
        assert_eq!(first.status, 202, "a fresh webhook-id is accepted, not {}", first.status);
        if let Some(second) = second {
            assert_eq!(second.status, 200, "a resent webhook-id is a duplicate");
            resent += 1;
        }
        deliveries.push(first);
    }
    let drained = started.elapsed();
    let synapse_down = restarter.await.expect("restarter");

    // Every accepted webhook is in the store, once; every ticket counts.
    let db = foyer.dir().join("foyer.db");
    let stored: u64 =
        sqlite_query(&db, &format!("SELECT COUNT(*) FROM webhook_receipts WHERE webhook_id LIKE 'load-{run}-%'"))
            .trim()
            .parse()
            .expect("count");
    let mut tickets = 0;
    for r in 0..RESERVATIONS {
        let (_, record) = foyer.reservation(&format!("load-{run}-{r}")).await;
        tickets += record["tickets"]["active"].as_u64().expect("active tickets");
    }
    assert_eq!(stored, total, "accepted webhooks in the store");
    assert_eq!(tickets, total, "tickets counted by the read API");

    println!(
        "load: {total} webhooks offered in {:.1}s, all stored after {:.1}s; now waiting for the rooms",
        offered.as_secs_f64(),
        drained.as_secs_f64()
    );

    // Every room opened and invited every holder despite the restart.
    let mut last = String::new();
    let mut last_print = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut states = Vec::new();
        for r in 0..RESERVATIONS {
            let (_, record) = foyer.reservation(&format!("load-{run}-{r}")).await;
            let members = &record["members"];
            let count = members["invited"].as_u64().unwrap_or(0) + members["joined"].as_u64().unwrap_or(0);
            states.push((record["room_id"].is_string(), count));
        }
        if states.iter().all(|&(open, members)| open && members == HOLDERS as u64) {
            break;
        }
        let summary = format!("{states:?}");
        assert!(Instant::now() < deadline, "rooms (open, members) after 300 s: {summary}; log:\n{}", foyer.log());
        if summary != last && last_print.elapsed() > Duration::from_secs(5) {
            eprintln!("[load] {:.1}s rooms (open, members): {summary}", started.elapsed().as_secs_f64());
            last = summary;
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rooms_done = started.elapsed();
    // Why any room was slow: the steps that failed (during the restart) and when they were retried.
    let log = foyer.log();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("lifecycle step failed")).collect();
    println!("load: {} lifecycle steps failed and were retried", failed.len());
    for line in failed.iter().take(12) {
        println!("load:   {line}");
    }

    let mut latencies: Vec<Duration> = deliveries.iter().map(|d| d.latency).collect();
    latencies.sort();
    let retried = deliveries.iter().filter(|d| d.attempts > 1).count();
    let unavailable: u32 = deliveries.iter().map(|d| d.unavailable).sum();
    let connection_errors: u32 = deliveries.iter().map(|d| d.connection_errors).sum();
    println!(
        "load: offered {total} webhooks in {:.1}s ({:.0}/s), all stored after {:.1}s; {resent} resent as duplicates; \
         retried {retried} (503s {unavailable}, connection errors {connection_errors}); latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms; \
         store holds {stored}, read API counts {tickets} tickets: lost 0; Synapse down {:.1}s; \
         {RESERVATIONS} rooms with {HOLDERS} invites each after {:.1}s",
        offered.as_secs_f64(),
        total as f64 / offered.as_secs_f64(),
        drained.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 100.0)),
        synapse_down.as_secs_f64(),
        rooms_done.as_secs_f64(),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
