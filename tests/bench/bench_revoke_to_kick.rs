//! Revoke to kick: how long a `ticket.revoked` takes to show its holder out of the room.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::{
    common::{
        enc, eventually,
        foyer::{TestFoyer, metric_in},
        percentile,
        synapse::Synapse,
        unique,
        users::TestUser,
    },
    measure::{machine, write_section},
};

#[tokio::test]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench_revoke_to_kick() {
    const N: usize = 100;
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let mut users = Vec::with_capacity(N);
    for _ in 0..N {
        users.push(hs.create_user("fan").await);
    }
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
    let tickets: Vec<Value> =
        users.iter().enumerate().map(|(i, u)| json!({"ticket_id": format!("t{i}"), "user_id": u.user_id})).collect();
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": tickets})).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    for user in &users {
        user.join_once_invited(&room, Duration::from_secs(30)).await;
    }

    let bot = TestUser::bot(&foyer.slot);
    let kicks = |text: &str, part: &str| {
        metric_in(text, &format!("foyer_homeserver_request_duration_seconds_{part}{{endpoint=\"kick_user\"}}"))
            .unwrap_or(0.0)
    };
    let before = foyer.metrics_text().await;
    let mut latencies = Vec::with_capacity(N);
    for (i, user) in users.iter().enumerate() {
        let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&user.user_id));
        let started = Instant::now();
        foyer.accept("ticket.revoked", json!({"reservation_id": id, "ticket_ids": [format!("t{i}")]})).await;
        loop {
            if bot.get(&path).await.1["membership"] == "leave" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no kick for {}", user.user_id);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    // Foyer records a kick's duration once Synapse has answered it, which can be just
    // after the bot's membership shows `leave`: wait for all N.
    let calls_before = kicks(&before, "count");
    let after = eventually(Duration::from_secs(10), "every kick in the metrics", || async {
        let text = foyer.metrics_text().await;
        (kicks(&text, "count") - calls_before >= N as f64).then_some(text)
    })
    .await;
    let kick_calls = kicks(&after, "count") - kicks(&before, "count");
    let kick_ms = 1000.0 * (kicks(&after, "sum") - kicks(&before, "sum")) / kick_calls.max(1.0);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p99, max) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0), latencies[N - 1]);
    let mean = ms(latencies.iter().sum::<Duration>() / N as u32);
    let body = format!(
        "## Revoke to kick\n\n{N} holders in one open room; each `ticket.revoked` is sent alone and timed from the\n\
         request until Synapse shows the holder's membership as `leave` (polled every 5 ms as the bot).\n\n\
         | p50 | p99 | max | mean |\n|---|---|---|---|\n| {:.0} ms | {:.0} ms | {:.0} ms | {mean:.0} ms |\n\n\
         What bounds it: Foyer's own `kick_user` requests to Synapse took {kick_ms:.0} ms on average ({kick_calls:.0} calls,\n\
         `foyer_homeserver_request_duration_seconds`), that is {:.0}% of the mean; the rest is the webhook's commit,\n\
         the worker's wake-up and planning, and the 5 ms polling.\n\nMeasured {}.",
        ms(p50),
        ms(p99),
        ms(max),
        100.0 * kick_ms / mean.max(0.001),
        machine()
    );
    println!("{body}");
    write_section("revoke-to-kick", &body);
}
