//! Upgrades. Databases written by an earlier Foyer (`tests/fixtures/`, made through the
//! real binary by `tests/fixtures/make.py`) open under this one, read back what was put
//! in, take new writes and open again; a PostgreSQL one on the former numbering is
//! renumbered and ends up with the schema of a fresh database. A database from a newer
//! Foyer, or one whose applied migrations match no numbering, is refused untouched.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, TimeZone as _, Utc};
use foyer::{
    config::{DatabaseConfig, DatabaseKind},
    events::HomeserverEvent,
    model::{Holder, Membership, ReservationId, Revision, StepRecord, Ticket, TicketId, Title, WebhookEvent},
    secret::Secret,
    store::{self, Outcome, Receipt, Store, StoreError},
};
use ruma::OwnedUserId;
use serde_json::Value;

use crate::common::{
    foyer::{sqlite_exec, sqlite_query, valid_config_yaml},
    foyer_bin,
    postgres::fresh_postgres_database,
    random_token, repo_root,
};

/// Foyer's versions: the number of files in its one migration sequence.
const LATEST: i64 = 31;
/// The version main at 9d5910a left its databases at (PostgreSQL's on its former
/// numbering, renumbered).
const AT_9D5910A: i64 = 12;

/// What `make.py` wrote beside the fixtures of main at 9d5910a: the times and room ids
/// that depend on when it ran, per backend.
fn main_9d5910a(backend: &str) -> Value {
    let manifest: Value = serde_json::from_str(include_str!("../fixtures/main-9d5910a.json")).expect("manifest");
    manifest[backend].clone()
}

fn config(url: String, kind: DatabaseKind) -> DatabaseConfig {
    DatabaseConfig { url: Secret::new(url), kind, max_connections: Some(4), acquire_timeout: Duration::from_secs(10) }
}

/// The SQLite fixture, copied where the test may write.
fn sqlite_fixture(dir: &Path) -> DatabaseConfig {
    let path = dir.join("foyer.db");
    std::fs::copy(repo_root().join("tests/fixtures/main-9d5910a.sqlite"), &path).expect("copy the fixture");
    config(format!("sqlite://{}", path.display()), DatabaseKind::Sqlite)
}

/// The PostgreSQL fixture, restored with psql (the dump is plain SQL) into a fresh
/// database of the test server.
async fn postgres_fixture() -> DatabaseConfig {
    let url = fresh_postgres_database().await;
    let out = std::process::Command::new(psql())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(repo_root().join("tests/fixtures/main-9d5910a.postgres.sql"))
        .arg(&url)
        .output()
        .expect("run psql");
    assert!(out.status.success(), "restoring the dump: {}", String::from_utf8_lossy(&out.stderr));
    config(url, DatabaseKind::Postgres)
}

/// psql of the newest PostgreSQL installed (the one `scripts/postgres` runs), else the
/// one on PATH.
fn psql() -> PathBuf {
    let installed = std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().filter_map(Result::ok);
    installed.map(|version| version.path().join("bin/psql")).filter(|p| p.is_file()).max().unwrap_or("psql".into())
}

/// A new database, of its own (SQLite: a new file in `dir`).
async fn fresh(kind: DatabaseKind, dir: &Path) -> DatabaseConfig {
    match kind {
        DatabaseKind::Sqlite => {
            let file = dir.join(format!("fresh-{}.db", &random_token()[..8]));
            config(format!("sqlite://{}", file.display()), kind)
        }
        DatabaseKind::Postgres => config(fresh_postgres_database().await, kind),
    }
}

async fn open(config: &DatabaseConfig) -> Arc<dyn Store> {
    store::open(config, store::Outbound::Skip).await.expect("the store opens")
}

async fn refused(config: &DatabaseConfig) -> String {
    match store::open(config, store::Outbound::Skip).await {
        Ok(_) => panic!("{:?}: the store opened", config.kind),
        Err(StoreError::Schema(refusal)) => refusal.to_string(),
        Err(e) => panic!("{:?}: {e}", config.kind),
    }
}

/// Runs one statement on the database, beside the store.
async fn execute(config: &DatabaseConfig, statement: &str) {
    use sqlx::{Connection as _, Executor as _};
    let statement = sqlx::AssertSqlSafe(statement.to_owned());
    match config.kind {
        DatabaseKind::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(config.url.expose()).await.expect("connect");
            db.execute(statement).await.expect("execute");
        }
        DatabaseKind::Postgres => {
            let mut db = sqlx::PgConnection::connect(config.url.expose()).await.expect("connect");
            db.execute(statement).await.expect("execute");
        }
    }
}

/// `(version, applied_at)` of every applied migration, in order.
async fn applied(config: &DatabaseConfig) -> Vec<(i64, i64)> {
    use sqlx::Connection as _;
    const APPLIED: &str = "SELECT version, applied_at FROM foyer_migrations ORDER BY version";
    match config.kind {
        DatabaseKind::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(config.url.expose()).await.expect("connect");
            sqlx::query_as(APPLIED).fetch_all(&mut db).await.expect("foyer_migrations")
        }
        DatabaseKind::Postgres => {
            let mut db = sqlx::PgConnection::connect(config.url.expose()).await.expect("connect");
            sqlx::query_as(APPLIED).fetch_all(&mut db).await.expect("foyer_migrations")
        }
    }
}

/// The schema as lines, sorted: tables' columns (name, type, null, default), indexes and
/// constraints. Sorted, because PostgreSQL adds a column at the end of its table, so the
/// order of columns depends on the order of migrations, which nothing reads by.
async fn schema(config: &DatabaseConfig) -> Vec<String> {
    use sqlx::Connection as _;
    let mut lines: Vec<String> = match config.kind {
        DatabaseKind::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(config.url.expose()).await.expect("connect");
            sqlx::query_scalar(
                "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master
                 WHERE name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(&mut db)
            .await
            .expect("sqlite_master")
        }
        DatabaseKind::Postgres => {
            let mut db = sqlx::PgConnection::connect(config.url.expose()).await.expect("connect");
            let mut lines: Vec<String> = sqlx::query_scalar(
                "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' '
                    || COALESCE(column_default, '')
                 FROM information_schema.columns WHERE table_schema = 'public'",
            )
            .fetch_all(&mut db)
            .await
            .expect("columns");
            lines.extend(
                sqlx::query_scalar::<_, String>("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'")
                    .fetch_all(&mut db)
                    .await
                    .expect("indexes"),
            );
            lines.extend(
                sqlx::query_scalar::<_, String>(
                    "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                     FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
                )
                .fetch_all(&mut db)
                .await
                .expect("constraints"),
            );
            lines
        }
    };
    lines.sort();
    lines
}

/// Two databases' schemas are the same; the lines that differ if not.
async fn assert_same_schema(upgraded: &DatabaseConfig, fresh: &DatabaseConfig) {
    let (upgraded, fresh) = (schema(upgraded).await, schema(fresh).await);
    let only = |a: &[String], b: &[String]| a.iter().filter(|l| !b.contains(l)).cloned().collect::<Vec<_>>();
    let (only_upgraded, only_fresh) = (only(&upgraded, &fresh), only(&fresh, &upgraded));
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "an upgraded database is not like a fresh one:\nonly upgraded: {only_upgraded:#?}\nonly fresh: {only_fresh:#?}"
    );
}

fn user(id: &str) -> OwnedUserId {
    OwnedUserId::try_from(id).expect("user id")
}

fn id(id: &str) -> ReservationId {
    ReservationId::parse(id).expect("reservation id")
}

fn time(rfc3339: &Value) -> DateTime<Utc> {
    rfc3339.as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).expect("an RFC 3339 time").to_utc()
}

/// What make.py put in, read back through the store.
async fn reads_back_main_9d5910a(store: &dyn Store, expected: &Value, backend: &str) {
    let room_id = expected["jazz_room_id"].as_str().expect("room id");
    let (alice, bob) = (user("@alice:localhost"), user("@bob:localhost"));
    let (carol, dave) = (user("@carol:unreachable.invalid"), user("@dave:localhost"));

    let ids: Vec<_> = store
        .reservations_after(None, 10, store::Counts::Counted)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.reservation.id)
        .collect();
    assert_eq!(ids, [id("gone"), id("jazz"), id("later")], "{backend}");

    let jazz = store.reservation(&id("jazz")).await.unwrap().expect("jazz");
    let r = &jazz.reservation;
    assert_eq!(r.revision, Some(Revision(3)), "{backend}");
    assert_eq!(r.title.as_str(), "Friday Night Jazz", "{backend}");
    assert_eq!(r.description.as_ref().map(|d| d.as_str()), Some("Live from the Blue Room"), "{backend}");
    assert_eq!((r.starts_at, r.ends_at), (time(&expected["jazz_starts_at"]), time(&expected["jazz_ends_at"])));
    assert_eq!(r.stream_url.as_ref().map(|u| u.as_str()), Some("https://stream.example.org/watch/jazz"));
    let channel = r.channel.as_ref().expect("channel");
    assert_eq!((channel.id.as_str(), channel.name.as_str()), ("blue-room", "The Blue Room"), "{backend}");
    assert_eq!(r.hosts, std::slice::from_ref(&alice), "{backend}");
    assert_eq!((r.open_before_seconds, r.close_after_seconds), (Some(7 * 86400), Some(1800)), "{backend}");
    let started = jazz.signals.stream_started_at.expect("stream.started recorded");
    assert_eq!(jazz.signals.cancelled_at, None, "{backend}");
    assert_eq!((jazz.tickets.active, jazz.tickets.revoked, jazz.tickets.uninvitable), (2, 1, 1), "{backend}");
    assert_eq!(jazz.room_id.as_deref(), Some(room_id), "{backend}");
    assert_eq!((jazz.members.invited, jazz.members.joined), (1, 1), "{backend}: alice invited, bob joined");
    assert!(!jazz.archived, "{backend}");

    let tickets: Vec<_> = store
        .tickets(&id("jazz"), "", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.ticket_id, t.user_id, t.revoked, t.invite_error.is_some()))
        .collect();
    let ticket = |t: &str, u: &OwnedUserId, revoked, failing| (t.to_owned(), Some(u.to_string()), revoked, failing);
    assert_eq!(
        tickets,
        [ticket("t-1", &bob, false, false), ticket("t-2", &carol, false, true), ticket("t-3", &dave, true, false)],
        "{backend}"
    );
    let failures = store.invite_failures(&id("jazz"), 10).await.unwrap();
    assert!(
        matches!(failures.as_slice(), [f] if f.user_id.as_str() == carol.as_str() && f.error.contains("unreachable.invalid")),
        "{backend}: {failures:?}"
    );

    let state = store.lifecycle_state(&id("jazz")).await.unwrap();
    let room = &state.room;
    assert_eq!(room.room_id.as_ref().map(|r| r.as_str()), Some(room_id), "{backend}");
    assert!(room.opening_notice_sent && !room.closing_notice_sent && !room.archived, "{backend}");
    assert_eq!(room.name_applied.as_deref(), Some("Friday Night Jazz"), "{backend}");
    assert_eq!(room.hosts_applied, [alice.clone()].into(), "{backend}");
    assert_eq!(room.stream_url_applied.as_deref(), Some("https://stream.example.org/watch/jazz"), "{backend}");
    assert!(room.topic_applied.as_deref().is_some_and(|t| t.contains("Live now")), "{backend}: {room:?}");
    assert_eq!(room.live_notice_for, Some(started), "{backend}");
    assert!(room.space.is_some() && room.space_linked == room.space, "{backend}: {room:?}");
    assert!(room.invited.contains(&alice) && room.invited.contains(&bob), "{backend}: {room:?}");
    assert!(room.invite_failures.get(&carol).is_some_and(|f| f.attempts >= 1), "{backend}: {room:?}");
    let membership = |u: &OwnedUserId| room.members.get(u).map(|m| m.membership);
    assert_eq!(
        [membership(&alice), membership(&bob), membership(&dave)],
        [Some(Membership::Invite), Some(Membership::Join), Some(Membership::Leave)],
        "{backend}"
    );
    assert_eq!(state.audience.holders, [bob.clone(), carol.clone()].into(), "{backend}");
    assert_eq!(state.audience.revoked, [dave.clone()].into(), "{backend}");
    assert!(store.manages_room(&ruma::OwnedRoomId::try_from(room_id).unwrap()).await.unwrap(), "{backend}");

    let later = store.reservation(&id("later")).await.unwrap().expect("later");
    assert_eq!(later.reservation.title.as_str(), "Later", "{backend}");
    assert_eq!(later.reservation.starts_at, Utc.with_ymd_and_hms(2028, 11, 27, 19, 0, 0).unwrap(), "{backend}");
    assert_eq!(later.room_id, None, "{backend}");
    let later_tickets: Vec<_> = store
        .tickets(&id("later"), "", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.ticket_id, t.user_id, t.revoked))
        .collect();
    // t-8 was revoked before any grant: a ticket with no holder.
    assert_eq!(
        later_tickets,
        [("t-8".to_owned(), None, true), ("t-9".to_owned(), Some(bob.to_string()), false)],
        "{backend}"
    );

    let gone = store.reservation(&id("gone")).await.unwrap().expect("gone");
    assert!(gone.signals.cancelled_at.is_some(), "{backend}");
    assert_eq!(gone.signals.cancel_reason.as_deref(), Some("Artist unwell"), "{backend}");
}

/// New code writes on the old data (a duplicate delivery, a stale and a new revision, a
/// ticket, a step, an admin event), and it all reads back after opening again.
async fn takes_writes_and_opens_again(config: &DatabaseConfig, backend: &str) {
    let store = open(config).await;
    let receipt = |webhook_id| Receipt { webhook_id, received_at: Utc::now() };
    let jazz = store.reservation(&id("jazz")).await.unwrap().expect("jazz").reservation;
    let revision = |n: u64, title: &str| {
        let mut r = jazz.clone();
        r.revision = Some(Revision(n));
        r.title = Title::parse(title).unwrap();
        WebhookEvent::Upsert(Box::new(r))
    };
    // make.py's first webhook id: its receipt came along.
    let again = store.record_webhook(&receipt("fixture-1"), &revision(9, "Again")).await.unwrap();
    assert_eq!(again, Outcome::Duplicate, "{backend}");
    let stale = store.record_webhook(&receipt("upgrade-1"), &revision(2, "Older")).await.unwrap();
    assert_eq!(stale, Outcome::Stale, "{backend}");
    let newer = store.record_webhook(&receipt("upgrade-2"), &revision(4, "Late Night Jazz")).await.unwrap();
    assert_eq!(newer, Outcome::Accepted, "{backend}");
    let erin = Ticket { id: TicketId::parse("t-10").unwrap(), holder: Holder::User(user("@erin:localhost")) };
    let granted = WebhookEvent::TicketsGranted { id: id("later"), tickets: vec![erin] };
    assert_eq!(store.record_webhook(&receipt("upgrade-3"), &granted).await.unwrap(), Outcome::Accepted, "{backend}");
    store.record_step(&id("jazz"), &StepRecord::ReminderSent(3600), Utc::now()).await.unwrap();
    let command = HomeserverEvent {
        event_id: "$upgrade".into(),
        room_id: "!dm:localhost".into(),
        kind: "m.room.message".into(),
        sender: "@alice:localhost".into(),
        state_key: None,
        content: serde_json::json!({"msgtype": "m.text", "body": "!foyer list"}),
    };
    store.queue_admin_events(std::slice::from_ref(&command), Utc::now()).await.unwrap();
    drop(store);

    let store = open(config).await;
    let jazz = store.reservation(&id("jazz")).await.unwrap().expect("jazz");
    assert_eq!(jazz.reservation.revision, Some(Revision(4)), "{backend}");
    assert_eq!(jazz.reservation.title.as_str(), "Late Night Jazz", "{backend}");
    assert_eq!(jazz.tickets.active, 2, "{backend}");
    assert_eq!(store.reservation(&id("later")).await.unwrap().expect("later").tickets.active, 2, "{backend}");
    assert_eq!(store.lifecycle_state(&id("jazz")).await.unwrap().room.reminders_sent, [3600].into(), "{backend}");
    let inbox: Vec<_> = store.admin_inbox(10).await.unwrap().into_iter().map(|q| q.event).collect();
    assert_eq!(inbox, [Ok(command)], "{backend}");
}

#[tokio::test]
async fn a_sqlite_database_written_by_main_9d5910a_opens_reads_back_and_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = sqlite_fixture(dir.path());
    let before = applied(&fixture).await;
    assert_eq!(before.iter().map(|&(v, _)| v).collect::<Vec<_>>(), (1..=AT_9D5910A).collect::<Vec<_>>());

    let store = open(&fixture).await;
    reads_back_main_9d5910a(&*store, &main_9d5910a("sqlite"), "sqlite").await;
    drop(store);
    // SQLite's numbering is the shared one: nothing to renumber, nothing rewritten; what
    // came after 9d5910a is applied.
    let after = applied(&fixture).await;
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(after.iter().map(|&(v, _)| v).collect::<Vec<_>>(), (1..=LATEST).collect::<Vec<_>>());
    let fresh = fresh(DatabaseKind::Sqlite, dir.path()).await;
    drop(open(&fresh).await);
    assert_same_schema(&fixture, &fresh).await;

    takes_writes_and_opens_again(&fixture, "sqlite").await;
}

#[tokio::test]
async fn a_postgres_database_written_by_main_9d5910a_is_renumbered_reads_back_and_takes_writes() {
    let fixture = postgres_fixture().await;
    let former = applied(&fixture).await;
    assert_eq!(former.iter().map(|&(v, _)| v).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>(), "the former numbering");

    let store = open(&fixture).await;
    reads_back_main_9d5910a(&*store, &main_9d5910a("postgres"), "postgres").await;
    drop(store);
    // Renumbered, each version keeping when it was applied: former 1 was versions 1-6.
    let at = |former_version: i64| former[former_version as usize - 1].1;
    let renumbered: Vec<_> = (1..=6).map(|v| (v, at(1))).chain((7..=AT_9D5910A).map(|v| (v, at(v - 5)))).collect();
    let after = applied(&fixture).await;
    assert_eq!(after[..renumbered.len()], renumbered[..]);
    assert_eq!(after.iter().map(|&(v, _)| v).collect::<Vec<_>>(), (1..=LATEST).collect::<Vec<_>>());
    let fresh = fresh(DatabaseKind::Postgres, Path::new("")).await;
    drop(open(&fresh).await);
    assert_same_schema(&fixture, &fresh).await;

    takes_writes_and_opens_again(&fixture, "postgres").await;
    // On the shared numbering now, it is left alone.
    assert_eq!(applied(&fixture).await, after);
}

#[tokio::test]
async fn a_fresh_database_migrates_to_every_version_and_is_then_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [DatabaseKind::Sqlite, DatabaseKind::Postgres] {
        let config = fresh(kind, dir.path()).await;
        drop(open(&config).await);
        let first = applied(&config).await;
        assert_eq!(first.iter().map(|&(v, _)| v).collect::<Vec<_>>(), (1..=LATEST).collect::<Vec<_>>(), "{kind:?}");
        drop(open(&config).await);
        assert_eq!(applied(&config).await, first, "{kind:?}: opening again changes nothing");
    }
}

#[tokio::test]
async fn a_database_a_newer_foyer_migrated_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut newer = Vec::new();
    for kind in [DatabaseKind::Sqlite, DatabaseKind::Postgres] {
        let config = fresh(kind, dir.path()).await;
        drop(open(&config).await);
        let future = LATEST + 1;
        execute(&config, &format!("INSERT INTO foyer_migrations (version, applied_at) VALUES ({future}, 0)")).await;
        let before = (applied(&config).await, schema(&config).await);
        let message = refused(&config).await;
        assert!(
            message.contains(&format!("version {future}")) && message.contains(&format!("({LATEST})")),
            "{kind:?}: {message}"
        );
        assert_eq!((applied(&config).await, schema(&config).await), before, "{kind:?}");
        newer.push(config);
    }
    // `foyer serve` says so in one sentence, and stops.
    let serve = dir.path().join("serve.yaml");
    let yaml = valid_config_yaml().replace("sqlite://foyer.db", newer[0].url.expose());
    assert_ne!(yaml, valid_config_yaml(), "the config names the database");
    std::fs::write(&serve, yaml).unwrap();
    let out = std::process::Command::new(foyer_bin()).arg("serve").arg("-c").arg(&serve).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = format!("version {}, newer than this Foyer knows ({LATEST})", LATEST + 1);
    assert!(!out.status.success() && stderr.contains(&said), "{stderr}");
}

/// `foyer serve` on a database a newer Foyer migrated (a downgrade): the fixture of main at
/// 9d5910a, marked as migrated past this binary. It exits 1 with one sentence naming both
/// versions, and the file is as it was, byte for byte: the versions it lacked were not
/// applied either.
#[test]
fn serve_refuses_a_database_from_a_newer_foyer_with_exit_1_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("foyer.db");
    std::fs::copy(repo_root().join("tests/fixtures/main-9d5910a.sqlite"), &db).expect("copy the fixture");
    let future = LATEST + 1;
    sqlite_exec(&db, &format!("INSERT INTO foyer_migrations (version, applied_at) VALUES ({future}, 0)"));
    let versions = || sqlite_query(&db, "SELECT version FROM foyer_migrations ORDER BY version");
    let (bytes, applied) = (std::fs::read(&db).unwrap(), versions());
    let expected: Vec<String> = (1..=AT_9D5910A).chain([future]).map(|v| v.to_string()).collect();
    assert_eq!(applied.lines().collect::<Vec<_>>(), expected);
    // The example's `sqlite://foyer.db`, relative to the config's folder: this copy.
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, valid_config_yaml()).unwrap();

    let out = std::process::Command::new(foyer_bin())
        .arg("serve")
        .arg("-c")
        .arg(&config)
        .env_remove("FOYER_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let sentence = format!(
        "foyer: cannot open the database: its schema is at version {future}, newer than this Foyer knows \
         ({LATEST}): a newer Foyer migrated it; run that one or a later one"
    );
    assert_eq!(stderr.lines().collect::<Vec<_>>(), [sentence.as_str()], "one sentence and nothing else");
    assert_eq!(versions(), applied);
    assert!(std::fs::read(&db).unwrap() == bytes, "foyer serve changed the database file");
}

#[tokio::test]
async fn a_database_whose_migrations_match_no_numbering_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    // A gap; and on PostgreSQL versions 1 to 9, which neither numbering ever left.
    for (kind, forget) in [
        (DatabaseKind::Sqlite, "DELETE FROM foyer_migrations WHERE version = 5"),
        (DatabaseKind::Postgres, "DELETE FROM foyer_migrations WHERE version = 5"),
        (DatabaseKind::Postgres, "DELETE FROM foyer_migrations WHERE version > 9"),
    ] {
        let config = fresh(kind, dir.path()).await;
        drop(open(&config).await);
        execute(&config, forget).await;
        let before = (applied(&config).await, schema(&config).await);
        let message = refused(&config).await;
        assert!(message.contains(&format!("neither Foyer's versions 1 to {LATEST}")), "{kind:?} {forget}: {message}");
        assert_eq!((applied(&config).await, schema(&config).await), before, "{kind:?}");
    }
}

/// `foyer migrate-store` from a SQLite database written by main at 9d5910a: PostgreSQL,
/// migrated by this Foyer, holds what was put in.
#[tokio::test]
async fn the_sqlite_database_written_by_main_9d5910a_moves_to_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let from = sqlite_fixture(dir.path());
    let to = fresh(DatabaseKind::Postgres, dir.path()).await;
    let out = std::process::Command::new(foyer_bin())
        .args(["migrate-store", "--from", from.url.expose(), "--to", to.url.expose()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("reservations: 3 rows") && stdout.contains("room_members: 3 rows"), "{stdout}");
    let store = open(&to).await;
    reads_back_main_9d5910a(&*store, &main_9d5910a("sqlite"), "postgres from sqlite").await;
    drop(store);
    takes_writes_and_opens_again(&to, "postgres from sqlite").await;
}
