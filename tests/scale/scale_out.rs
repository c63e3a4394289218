//! Three Foyer instances on one PostgreSQL and one Synapse open a wave of 200 rooms with
//! 10 holders each while one instance is killed; Synapse must end up with exactly 200
//! rooms and 2000 invites, each holder invited once.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::common::{
    eventually, foyer::TestFoyer, free_port, postgres::fresh_postgres_database, random_token, synapse::Synapse,
    users::TestUser,
};

const RESERVATIONS: usize = 200;
const HOLDERS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_open_a_wave_exactly_once_while_one_dies() {
    let synapse = Arc::new(Synapse::dedicated(1));
    let slot = synapse.take_slot();
    let database = fresh_postgres_database().await;
    let config = slot.config_yaml().replace("url: sqlite://foyer.db", &format!("url: {database}"));
    // Instance 0 listens where the registration points; 1 and 2 elsewhere. All share the
    // tokens, the database and the homeserver.
    let mut instances = vec![TestFoyer::spawn(slot.clone(), &config)];
    instances[0].wait_ready().await;
    for _ in 1..3 {
        let port = free_port();
        let own = config.replace(&format!("listen: 127.0.0.1:{}", slot.port), &format!("listen: 127.0.0.1:{port}"));
        let mut foyer = TestFoyer::spawn(slot.clone(), &own);
        foyer.base_url = format!("http://127.0.0.1:{port}");
        foyer.wait_ready().await;
        instances.push(foyer);
    }

    // 2000 holders, registered 16 at a time.
    let started = Instant::now();
    let mut holders: Vec<TestUser> = Vec::with_capacity(RESERVATIONS * HOLDERS);
    for _ in 0..(RESERVATIONS * HOLDERS / 16) {
        let batch = (0..16).map(|_| {
            let synapse = synapse.clone();
            tokio::spawn(async move { synapse.create_user("h").await })
        });
        for user in futures_util::future::join_all(batch).await {
            holders.push(user.expect("create user"));
        }
    }
    eprintln!("[scale] {} holders in {:.1}s", holders.len(), started.elapsed().as_secs_f64());

    // Every reservation opens at the same instant, 20 s from now; webhooks go round-robin.
    let run = random_token()[..6].to_owned();
    let opens = Utc::now() + chrono::Duration::seconds(20);
    let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let sends = (0..RESERVATIONS).map(|i| {
        let foyer = &instances[i % 3];
        let id = format!("wave-{run}-{i:03}");
        let tickets: Vec<Value> = (0..HOLDERS)
            .map(|h| json!({"ticket_id": format!("t{h}"), "user_id": holders[i * HOLDERS + h].user_id}))
            .collect();
        async move {
            foyer
                .accept(
                    "reservation.created",
                    json!({"reservation_id": id, "title": format!("Wave {id}"),
                           "starts_at": at(opens + chrono::Duration::minutes(10)),
                           "ends_at": at(opens + chrono::Duration::hours(1)),
                           "chat": {"open_before_seconds": 600}}),
                )
                .await;
            foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": tickets})).await;
        }
    });
    futures_util::future::join_all(sends).await;
    let wait = (opens - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(700)).await;
    instances[2].child.kill().expect("SIGKILL instance 2 mid-wave");
    let wave = Instant::now();

    // Every reservation gets its room (the dead instance's leases expire and are taken over).
    let reader = &instances[0];
    eventually(Duration::from_secs(240), "all rooms and invites", || async {
        let path = format!("/api/v1/reservations?limit={RESERVATIONS}&after=wave-{run}-");
        let (_, page) = reader.request(reqwest::Method::GET, &path, Some(&slot.api_token), None).await;
        let rooms = page["reservations"]
            .as_array()?
            .iter()
            .filter(|r| {
                r["reservation_id"].as_str().unwrap_or("").starts_with(&format!("wave-{run}-"))
                    && r["room_id"].is_string()
            })
            .count();
        let invited: u64 = page["reservations"]
            .as_array()?
            .iter()
            .map(|r| r["members"]["invited"].as_u64().unwrap_or(0) + r["members"]["joined"].as_u64().unwrap_or(0))
            .sum();
        (rooms == RESERVATIONS && invited == (RESERVATIONS * HOLDERS) as u64).then_some(())
    })
    .await;
    eprintln!("[scale] wave complete {:.1}s after the kill", wave.elapsed().as_secs_f64());

    // Count in Synapse: the bot's rooms of this wave, and each holder's invites in them.
    let bot = TestUser::bot(&slot);
    let (_, joined) = bot.get("/_matrix/client/v3/joined_rooms").await;
    let mut rooms = 0;
    let mut invites: BTreeMap<String, usize> = BTreeMap::new();
    for room in joined["joined_rooms"].as_array().unwrap() {
        let room = room.as_str().unwrap();
        let name = bot.state(room, "m.room.name").await.map(|n| n["name"].as_str().unwrap_or("").to_owned());
        if !name.is_some_and(|n| n.starts_with(&format!("Wave wave-{run}-"))) {
            continue;
        }
        rooms += 1;
        for event in bot.messages(room).await {
            if event["type"] == "m.room.member" && event["content"]["membership"] == "invite" {
                *invites.entry(event["state_key"].as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
    }
    assert_eq!(rooms, RESERVATIONS, "exactly one room per reservation");
    assert_eq!(invites.len(), RESERVATIONS * HOLDERS, "every holder invited");
    assert!(
        invites.values().all(|n| *n == 1),
        "each holder invited exactly once: {:?}",
        invites.values().filter(|n| **n != 1).count()
    );
}
