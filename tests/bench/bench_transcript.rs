//! Transcript: a room of many messages (10,000 unless `FOYER_BENCH_TRANSCRIPT_MESSAGES`
//! says otherwise) transcribed at archive; how long it takes and how much Foyer's
//! resident memory grows meanwhile (the target: less than 20 MiB, since the room is read
//! and written a page at a time).

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::{
    common::{enc, eventually, foyer::TestFoyer, random_token, synapse::Synapse, unique, users::TestUser},
    measure::{machine, rss_kib, write_section},
};

/// Messages posted at once while filling the room.
const POSTING_AT_ONCE: usize = 8;
/// What the transcript may add to Foyer's resident memory.
const TARGET_MIB: f64 = 20.0;

/// Posts `n` messages as the members, `POSTING_AT_ONCE` at a time.
async fn fill(members: &[TestUser], room_id: &str, n: usize) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let posting: Vec<_> = (0..POSTING_AT_ONCE)
        .map(|w| {
            let (member, next, room_id) = (members[w % members.len()].clone(), next.clone(), room_id.to_owned());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= n {
                        return;
                    }
                    let path =
                        format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(&room_id), random_token());
                    // A line of chat as people write it, some longer than others.
                    let body = format!("message {i}: {}", "la ".repeat(i % 40));
                    let (status, answer) = member
                        .request(reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": body})))
                        .await;
                    assert_eq!(status, 200, "message {i}: {answer}");
                }
            })
        })
        .collect();
    for task in posting {
        task.await.expect("a posting task");
    }
}

#[tokio::test]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench_transcript() {
    let n: usize = std::env::var("FOYER_BENCH_TRANSCRIPT_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let foyer = TestFoyer::start_with(|yaml| yaml + "rooms:\n  transcript: on\n", &[]).await;
    let hs = Synapse::shared();
    let members = vec![hs.create_user("fan").await, hs.create_user("fan").await];
    let id = unique("bench");
    let now = Utc::now();
    let at = |d: chrono::Duration| (now + d).to_rfc3339_opts(SecondsFormat::Secs, true);
    foyer
        .accept(
            "reservation.created",
            json!({"reservation_id": id, "title": "Bench", "starts_at": at(chrono::Duration::minutes(-1)),
                   "ends_at": at(chrono::Duration::hours(1))}),
        )
        .await;
    let tickets: Vec<(String, &str)> =
        members.iter().enumerate().map(|(i, m)| (format!("t{i}"), m.user_id.as_str())).collect();
    let tickets: Vec<(&str, &str)> = tickets.iter().map(|(t, u)| (t.as_str(), *u)).collect();
    foyer.grant(&id, &tickets).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    for member in &members {
        member.join_once_invited(&room_id, Duration::from_secs(30)).await;
    }
    let filling = Instant::now();
    fill(&members, &room_id, n).await;
    eprintln!("posted {n} messages in {:.1} s", filling.elapsed().as_secs_f64());

    let pid = foyer.child.id();
    // Settled first: what is resident before the transcript is what it grows from, read
    // once Foyer has taken in every message and handed freed heap back since (memory.rs).
    eventually(Duration::from_secs(300), "Foyer to receive every message", || async {
        let received = foyer.metric("foyer_homeserver_events_total{type=\"m.room.message\"}").await;
        (received >= n as f64).then_some(())
    })
    .await;
    let trims = foyer.metric("foyer_memory_trims_total").await;
    eventually(Duration::from_secs(60), "a heap trim after the messages", || async {
        (foyer.metric("foyer_memory_trims_total").await > trims).then_some(())
    })
    .await;
    let before = rss_kib(pid);
    let started = Instant::now();
    let (status, body) = foyer.send_webhook("reservation.cancelled", json!({"reservation_id": id})).await;
    assert_eq!(status, 202, "{body}");
    let path = format!("/api/v1/reservations/{id}/transcript");
    let mut peak = before;
    let messages = loop {
        peak = peak.max(rss_kib(pid));
        let (status, transcript) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
        if status == 200 {
            break transcript["messages"].as_array().map_or(0, Vec::len);
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "no transcript after 30 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed();
    // The last sample, after the transcript was served whole once.
    peak = peak.max(rss_kib(pid));
    let growth = (peak.saturating_sub(before)) as f64 / 1024.0;
    let log = foyer.log();
    let made = log.lines().rev().find(|l| l.contains("transcript made")).unwrap_or("(no log line)").to_owned();
    eprintln!(
        "transcript of {messages} lines in {:.1} s; RSS {before} KiB before, peak {peak} KiB: +{growth:.1} MiB",
        took.as_secs_f64()
    );
    eprintln!("{made}");
    assert!(messages >= n, "the transcript holds {messages} lines of the {n} posted");
    let verdict = if growth < TARGET_MIB { "within" } else { "OVER" };
    write_section(
        "transcript",
        &format!(
            "## Transcript\n\n{}. A room of {n} members' messages (two members, posted through Synapse \
             beforehand) is archived with `rooms.transcript: on`; the reservation's cancellation starts it. \
             Time: from the cancellation to the transcript being served (closing notice, {messages} lines \
             read 200 events a page and written page by page, the archive after). Memory: Foyer's RSS \
             sampled every 20 ms from before the cancellation until the transcript was served whole once \
             (the JSON answer, streamed 500 lines a part, included).\n\n\
             | messages | time | RSS before | RSS peak | growth | target |\n|---|---|---|---|---|---|\n\
             | {messages} | {:.1} s | {:.1} MiB | {:.1} MiB | {growth:.1} MiB | < {TARGET_MIB:.0} MiB ({verdict}) |\n",
            machine(),
            took.as_secs_f64(),
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
        ),
    );
}
