//! The opening wave: 200 reservations open at the same instant with 20 ticket holders
//! each, against the real Synapse. Timed from `opens_at` until every room exists and
//! every invite was answered, on SQLite and on PostgreSQL, next to a baseline that makes
//! the same client-server calls directly, as the same bot, at the same concurrency.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::{
    common::{
        enc,
        foyer::{TestFoyer, sqlite_query},
        postgres::fresh_postgres_database,
        random_token, read_tail,
        synapse::Synapse,
        users::TestUser,
    },
    measure::{cpu_seconds, machine, own_cpu_seconds, write_section},
};

const ROOMS: usize = 200;
const HOLDERS: usize = 20;
/// The reservations Foyer works on at the same time (`lifecycle::CONCURRENCY`).
const CONCURRENCY: usize = 16;

enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// (rooms recorded, invites recorded, the last invite's time in unix ms) for a run.
async fn progress(db: &Db, run: &str) -> (u64, u64, i64) {
    let rooms =
        format!("SELECT COUNT(*) FROM lifecycle WHERE room_id IS NOT NULL AND reservation_id LIKE 'wave-{run}-%'");
    let invites = format!(
        "SELECT COUNT(*), COALESCE(MAX(invited_at), 0) FROM room_invites WHERE failure IS NULL AND reservation_id LIKE 'wave-{run}-%'"
    );
    match db {
        Db::Sqlite(path) => {
            let rooms: u64 = sqlite_query(path, &rooms).trim().parse().expect("count");
            let row = sqlite_query(path, &invites);
            let mut cells = row.trim().split('\t');
            let n = cells.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let last = cells.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            (rooms, n, last)
        }
        Db::Postgres(url) => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.expect("postgres");
            let (r,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(rooms)).fetch_one(&mut conn).await.expect("rooms");
            let (n, last): (i64, i64) =
                sqlx::query_as(sqlx::AssertSqlSafe(invites)).fetch_one(&mut conn).await.expect("invites");
            (r as u64, n as u64, last)
        }
    }
}

/// Foyer's wave: seconds from `opens_at` to the last invite.
async fn foyer_wave(foyer: &TestFoyer, db: &Db, holders: &[TestUser]) -> f64 {
    let run = random_token()[..6].to_owned();
    let opens = Utc::now() + chrono::Duration::seconds(15);
    let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    for i in 0..ROOMS {
        let id = format!("wave-{run}-{i:03}");
        foyer
            .accept(
                "reservation.created",
                json!({"reservation_id": id, "title": format!("Wave {i}"),
                       "starts_at": at(opens + chrono::Duration::hours(1)), "ends_at": at(opens + chrono::Duration::hours(2)),
                       "chat": {"open_before_seconds": 3600}}),
            )
            .await;
        let tickets: Vec<Value> = (0..HOLDERS)
            .map(|h| json!({"ticket_id": format!("t{h}"), "user_id": holders[i * HOLDERS + h].user_id}))
            .collect();
        foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": tickets})).await;
    }
    assert!(Utc::now() < opens, "the wave was sent before it opens");
    // Invites refused for good are not counted, so a wave with one never ends: give up.
    let give_up = opens + chrono::Duration::minutes(15);
    loop {
        let (rooms, invites, last) = progress(db, &run).await;
        if rooms == ROOMS as u64 && invites == (ROOMS * HOLDERS) as u64 {
            return (last - opens.timestamp_millis()) as f64 / 1000.0;
        }
        assert!(
            Utc::now() < give_up,
            "{rooms} rooms, {invites} invites after 15 min; log:\n{}",
            read_tail(&foyer.log_path)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Foyer's homeserver requests so far per room of the wave, by endpoint.
async fn calls_per_room(foyer: &TestFoyer) -> String {
    let text = foyer.metrics_text().await;
    let calls: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("foyer_homeserver_request_duration_seconds_count{endpoint=\""))
        .filter_map(|l| {
            let (endpoint, rest) = l.split_once('"')?;
            let n: f64 = rest.rsplit(' ').next()?.parse().ok()?;
            Some(format!("{endpoint} {:.2}", n / ROOMS as f64))
        })
        .collect();
    calls.join(", ")
}

/// The baseline: the bot itself creates each room (the same createRoom body as Foyer)
/// and invites its holders one by one, then posts one notice; `CONCURRENCY` rooms at a
/// time. Seconds from the start to the last invite.
async fn baseline_wave(bot: &TestUser, alias_prefix: &str, holders: &[TestUser]) -> f64 {
    let run = random_token()[..6].to_owned();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (bot, next, run, prefix) = (bot.clone(), next.clone(), run.clone(), alias_prefix.to_owned());
            let holders: Vec<String> = holders.iter().map(|h| h.user_id.clone()).collect();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= ROOMS {
                        return;
                    }
                    let body = json!({
                        "room_alias_name": format!("{prefix}baseline_{run}_{i:03}"),
                        "name": format!("Wave {i}"),
                        "topic": "Starts Fri 27 Nov 2026, 19:00 UTC",
                        "preset": "private_chat",
                        "power_level_content_override": {
                            "users": {}, "users_default": 0, "events_default": 0, "state_default": 50,
                            "invite": 50, "kick": 50, "ban": 50, "redact": 50,
                            "events": {"m.room.power_levels": 100, "m.room.history_visibility": 100,
                                       "m.room.tombstone": 100, "m.room.server_acl": 100,
                                       "m.room.encryption": 100, "org.foyer.reservation": 100}},
                        "initial_state": [
                            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
                            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}},
                            {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
                            {"type": "org.foyer.reservation", "state_key": "", "content": {"reservation_id": format!("baseline-{i}")}},
                        ],
                    });
                    let (status, created) = bot.request(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(body)).await;
                    assert_eq!(status, 200, "createRoom: {created}");
                    let room = created["room_id"].as_str().expect("room_id").to_owned();
                    for user in &holders[i * HOLDERS..(i + 1) * HOLDERS] {
                        let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
                        let (status, answer) = bot.request(reqwest::Method::POST, &path, Some(json!({"user_id": user}))).await;
                        assert_eq!(status, 200, "invite: {answer}");
                    }
                    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(&room), random_token());
                    let notice = json!({"msgtype": "m.notice", "body": "This chat is open."});
                    bot.request(reqwest::Method::PUT, &path, Some(notice)).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("baseline worker");
    }
    started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench_opening_wave() {
    let synapse = Arc::new(Synapse::dedicated(2));
    let registering = Instant::now();
    let mut holders: Vec<TestUser> = Vec::with_capacity(ROOMS * HOLDERS);
    while holders.len() < ROOMS * HOLDERS {
        let batch = (0..16).map(|_| {
            let synapse = synapse.clone();
            tokio::spawn(async move { synapse.create_user("w").await })
        });
        for user in futures_util::future::join_all(batch).await {
            holders.push(user.expect("create user"));
        }
    }
    holders.truncate(ROOMS * HOLDERS);
    eprintln!("[wave] {} holders in {:.0}s", holders.len(), registering.elapsed().as_secs_f64());

    let sqlite_slot = synapse.take_slot();
    let pg_slot = synapse.take_slot();
    let sqlite = TestFoyer::spawn(sqlite_slot.clone(), &sqlite_slot.config_yaml());
    sqlite.wait_ready().await;
    let bot = TestUser::bot(&sqlite_slot);

    // Baselines between and around the Foyer waves: each Foyer wave is compared with
    // the mean of the two baselines next to it, so a homeserver that drifts (its database
    // grows with every wave) weighs on both sides alike.
    let synapse_pid = synapse.python_pid().expect("the Synapse process");
    let synapse_cpu = || cpu_seconds(synapse_pid);
    let baseline1 = baseline_wave(&bot, &sqlite_slot.alias_prefix, &holders).await;
    eprintln!("[wave] baseline {baseline1:.1}s");
    let (hs_before, foyer_before) = (synapse_cpu(), cpu_seconds(sqlite.child.id()));
    let on_sqlite = foyer_wave(&sqlite, &Db::Sqlite(sqlite.dir().join("foyer.db")), &holders).await;
    let (hs_sqlite, foyer_sqlite) = (synapse_cpu() - hs_before, cpu_seconds(sqlite.child.id()) - foyer_before);
    let sqlite_calls = calls_per_room(&sqlite).await;
    eprintln!("[wave] foyer on sqlite {on_sqlite:.1}s ({sqlite_calls})");
    drop(sqlite);
    let (hs_before, own_before) = (synapse_cpu(), own_cpu_seconds());
    let baseline2 = baseline_wave(&bot, &sqlite_slot.alias_prefix, &holders).await;
    let (hs_baseline, own_baseline) = (synapse_cpu() - hs_before, own_cpu_seconds() - own_before);
    eprintln!("[wave] baseline {baseline2:.1}s");
    let url = fresh_postgres_database().await;
    let postgres = TestFoyer::spawn(
        pg_slot.clone(),
        &pg_slot.config_yaml().replace("url: sqlite://foyer.db", &format!("url: {url}")),
    );
    postgres.wait_ready().await;
    let (hs_before, foyer_before) = (synapse_cpu(), cpu_seconds(postgres.child.id()));
    let on_postgres = foyer_wave(&postgres, &Db::Postgres(url), &holders).await;
    let (hs_postgres, foyer_postgres) = (synapse_cpu() - hs_before, cpu_seconds(postgres.child.id()) - foyer_before);
    eprintln!("[wave] foyer on postgres {on_postgres:.1}s");
    let baseline3 = baseline_wave(&bot, &sqlite_slot.alias_prefix, &holders).await;
    eprintln!("[wave] baseline {baseline3:.1}s");
    let (around_sqlite, around_postgres) = ((baseline1 + baseline2) / 2.0, (baseline2 + baseline3) / 2.0);

    let body = format!(
        "## Opening wave\n\n\
         {ROOMS} reservations open at the same instant with {HOLDERS} ticket holders each ({} invites), against\n\
         a real Synapse of the benchmark's own. Foyer is timed from `opens_at` until its last invite was\n\
         answered (`room_invites.invited_at`). The baseline makes the same calls directly as the same\n\
         bot (createRoom with the same body, {HOLDERS} invites, one notice), {CONCURRENCY} rooms at a time like\n\
         Foyer's worker. Baselines ran before, between and after the two Foyer waves; each Foyer wave\n\
         is compared with the mean of the two baselines around it.\n\n\
         | run | seconds | baseline around it | Foyer / baseline |\n|---|---|---|---|\n\
         | baseline 1, 2, 3 | {baseline1:.1}, {baseline2:.1}, {baseline3:.1} | | |\n\
         | Foyer on SQLite | {on_sqlite:.1} | {around_sqlite:.1} | {:.2} |\n\
         | Foyer on PostgreSQL | {on_postgres:.1} | {around_postgres:.1} | {:.2} |\n\n\
         Foyer's homeserver calls per room in its SQLite wave (`foyer_homeserver_request_duration_seconds_count`): {sqlite_calls}.\n\n\
         CPU time during the waves (from `/proc`): Synapse is one Python process and spends about one\n\
         core for the whole wave, whoever drives it.\n\n\
         | run | wall | Synapse CPU | Synapse CPU / wall | driver CPU |\n|---|---|---|---|---|\n\
         | baseline 2 (the test process drives) | {baseline2:.1} s | {hs_baseline:.1} s | {:.2} | {own_baseline:.1} s |\n\
         | Foyer on SQLite | {on_sqlite:.1} s | {hs_sqlite:.1} s | {:.2} | Foyer {foyer_sqlite:.1} s |\n\
         | Foyer on PostgreSQL | {on_postgres:.1} s | {hs_postgres:.1} s | {:.2} | Foyer {foyer_postgres:.1} s |\n\n\
         Measured {}.",
        ROOMS * HOLDERS,
        on_sqlite / around_sqlite,
        on_postgres / around_postgres,
        hs_baseline / baseline2,
        hs_sqlite / on_sqlite,
        hs_postgres / on_postgres,
        machine()
    );
    println!("{body}");
    write_section("opening-wave", &body);
}
