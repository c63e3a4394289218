//! Memory and scale: Foyer's resident memory idle, then with 100,000 reservations and
//! 1,000,000 tickets stored and scheduled through the real webhook endpoint; and how the
//! worker's due-reservation queries grow from 10k to 1M reservations, with their plans.
//! `FOYER_BENCH_CHILD_ENV="MALLOC_ARENA_MAX=2"` runs that Foyer with extra environment,
//! for experiments on what holds its memory.

use std::{
    path::{Path, PathBuf},
    str::FromStr as _,
    time::{Duration, Instant},
};

use chrono::Utc;
use foyer::{
    config::{DatabaseConfig, DatabaseKind},
    secret::Secret,
};
use serde_json::{Value, json};
use sqlx::{
    AssertSqlSafe, Row as _, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::{
    common::{
        foyer::{Sender, TestFoyer, envelope, sqlite_query},
        random_token, repo_root,
    },
    measure::{deliver_all, machine, write_section},
};

const RESERVATIONS: usize = 100_000;
const TICKET_WEBHOOKS: usize = 1_000;
const TICKETS_PER_WEBHOOK: usize = 1_000;
const IN_FLIGHT: usize = 64;
/// The target of the issue: resident memory at 100k reservations.
const TARGET_MIB: f64 = 64.0;

/// `claim_due`'s selection, exactly as `src/store/sqlite.rs` runs it (binds: now, now, limit).
const CLAIM_DUE_SQL: &str = "SELECT reservation_id, facts_version, next_due_at, attempts FROM lifecycle
             WHERE next_due_at <= ? AND (locked_until IS NULL OR locked_until <= ?)
             ORDER BY next_due_at LIMIT ?";
/// `next_due_at`, which the worker runs after every round that was not full, to know how
/// long to sleep.
const NEXT_DUE_SQL: &str = "SELECT MIN(CASE WHEN locked_until > next_due_at THEN locked_until ELSE next_due_at END)
             FROM lifecycle WHERE next_due_at IS NOT NULL";
/// The index migration 0007 adds for [`NEXT_DUE_SQL`]; dropped to measure "before".
const NEW_INDEX: &str = "lifecycle_next_wake";
const NEW_INDEX_SQL: &str = include_str!("../../migrations/sqlite/0007_next_wake_index.sql");
/// Timed runs of each query; the median is reported.
const RUNS: usize = 50;

/// Memory of a process, in KiB, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    threads: u64,
    /// Anonymous resident memory by where it lives (`/proc/<pid>/smaps`): the main
    /// malloc arena (`[heap]`), glibc's per-thread arenas (anonymous mappings aligned to
    /// their 64 MiB reservation), and the rest (stacks, large `mmap`ed allocations).
    heap: u64,
    arenas: u64,
    arena_count: u64,
    other_anon: u64,
}

fn proc_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mem(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let mut m = Mem {
        rss: proc_field(&status, "VmRSS"),
        hwm: proc_field(&status, "VmHWM"),
        anon: proc_field(&status, "RssAnon"),
        file: proc_field(&status, "RssFile"),
        threads: proc_field(&status, "Threads"),
        ..Mem::default()
    };
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    // (start address, writable, path) of the mapping whose fields follow.
    let mut mapping: Option<(u64, bool, String)> = None;
    for line in smaps.lines() {
        let mut cells = line.split_whitespace();
        let first = cells.next().unwrap_or_default();
        if let Some((start, _)) = first.split_once('-')
            && let Ok(start) = u64::from_str_radix(start, 16)
        {
            let writable = cells.next().is_some_and(|perms| perms.starts_with("rw"));
            let path = cells.nth(3).unwrap_or_default().to_owned();
            mapping = Some((start, writable, path));
        } else if first == "Rss:"
            && let Some((start, writable, path)) = &mapping
        {
            let kib: u64 = cells.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match path.as_str() {
                "[heap]" => m.heap += kib,
                "" if *writable && start % (64 << 20) == 0 => {
                    m.arenas += kib;
                    m.arena_count += 1;
                }
                "" | "[stack]" => m.other_anon += kib,
                _ => {}
            }
        }
    }
    m
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mem_row(label: &str, m: Mem) -> String {
    format!(
        "| {label} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB ({}) | {:.1} MiB | {} |",
        mib(m.rss),
        mib(m.hwm),
        mib(m.file),
        mib(m.anon),
        mib(m.heap),
        mib(m.arenas),
        m.arena_count,
        mib(m.other_anon),
        m.threads
    )
}

/// Diagnostic only: injects, with gdb, glibc's `malloc_stats()` (written to Foyer's
/// stderr, its log) and then `malloc_trim(0)` into the process, to tell the heap it uses
/// from the free heap glibc keeps. Returns (bytes glibc holds, bytes in use) from the
/// stats; `None` without gdb or ptrace.
fn malloc_stats_and_trim(pid: u32, log: &Path) -> Option<(u64, u64)> {
    let out = std::process::Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "call (void) malloc_stats()",
            "-ex",
            "call (int) malloc_trim(0)",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = std::fs::read_to_string(log).ok()?;
    let total = &text[text.rfind("Total (incl. mmap):")?..];
    let bytes = |key: &str| -> Option<u64> {
        total.lines().find(|l| l.trim_start().starts_with(key))?.split('=').nth(1)?.trim().parse().ok()
    };
    Some((bytes("system bytes")?, bytes("in use bytes")?))
}

/// A pool of one connection on a SQLite file (the bundled SQLite Foyer itself links).
async fn connect(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .expect("url")
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("open sqlite")
}

/// A fresh SQLite file with Foyer's schema (its own migrations, through the store) and
/// `n` reservations shaped like Foyer's rows, each planned: due at its `opens_at`, spread
/// over next year, unleased. Tickets and receipts are left out: the due queries read
/// only `lifecycle`.
async fn synthetic(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("scale-{n}.db"));
    let config = DatabaseConfig {
        url: Secret::new(format!("sqlite://{}", path.display())),
        kind: DatabaseKind::Sqlite,
        max_connections: Some(1),
        acquire_timeout: Duration::from_secs(30),
    };
    drop(foyer::store::open(&config, foyer::store::Outbound::Skip).await.expect("foyer's migrations"));
    let pool = connect(&path).await;
    let start = next_year_ms();
    let step = 365 * 24 * 3600 * 1000 / n as i64;
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        "WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < ?1 - 1)
         INSERT INTO reservations (reservation_id, revision, title, description, starts_at, ends_at, stream_url,
            channel_id, channel_name, hosts, open_before_seconds, close_after_seconds, updated_at)
         SELECT 'scale-' || n, 1, 'Scale ' || n, 'A scheduled live stream', ?2 + n * ?3, ?2 + n * ?3 + 7200000,
            'https://stream.example.org/watch/' || n, 'ch-' || (n % 100), 'Channel ' || (n % 100),
            '[\"@host' || (n % 1000) || ':localhost\"]', NULL, NULL, ?4
         FROM c",
    )
    .bind(n as i64)
    .bind(start)
    .bind(step)
    .bind(Utc::now().timestamp_millis())
    .execute(&mut *tx)
    .await
    .expect("reservations");
    sqlx::query(
        "INSERT INTO lifecycle (reservation_id, next_due_at, facts_version)
         SELECT reservation_id, starts_at - 1800000, 1 FROM reservations",
    )
    .execute(&mut *tx)
    .await
    .expect("lifecycle");
    tx.commit().await.expect("commit");
    pool.close().await;
    path
}

fn next_year_ms() -> i64 {
    use chrono::{Datelike as _, TimeZone as _};
    Utc.with_ymd_and_hms(Utc::now().year() + 1, 1, 1, 0, 0, 0).single().expect("date").timestamp_millis()
}

/// The plan SQLite chooses for `sql`, one line per step.
async fn plan(pool: &SqlitePool, sql: &str, now: i64) -> String {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    // Not cached: a cached EXPLAIN keeps reporting the plan it was prepared with.
    let mut query = sqlx::query(AssertSqlSafe(explain)).persistent(false);
    if sql.contains('?') {
        query = query.bind(now).bind(now).bind(64i64);
    }
    let rows = query.fetch_all(pool).await.expect("explain");
    rows.iter().map(|r| r.try_get::<String, _>("detail").expect("detail")).collect::<Vec<_>>().join("; ")
}

/// The median time of `RUNS` runs of `sql` (after one warm-up), and the rows it returns.
async fn time(pool: &SqlitePool, sql: &'static str, now: i64) -> (Duration, usize) {
    let run = || async {
        let mut query = sqlx::query(sql);
        if sql.contains('?') {
            query = query.bind(now).bind(now).bind(64i64);
        }
        let started = Instant::now();
        let rows = query.fetch_all(pool).await.expect("query").len();
        (started.elapsed(), rows)
    };
    let (_, rows) = run().await;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        times.push(run().await.0);
    }
    times.sort();
    (times[RUNS / 2], rows)
}

/// The mean time of one lease write (`claim_due`'s `UPDATE`) on 2000 random rows, in one
/// transaction rolled back: what each index on `lifecycle` costs a write, without fsyncs.
async fn lease_write(pool: &SqlitePool, now: i64) -> Duration {
    let mut tx = pool.begin().await.expect("begin");
    let ids: Vec<String> = sqlx::query_scalar("SELECT reservation_id FROM lifecycle ORDER BY random() LIMIT 2000")
        .fetch_all(&mut *tx)
        .await
        .expect("ids");
    let started = Instant::now();
    for id in &ids {
        sqlx::query("UPDATE lifecycle SET locked_until = ?, locked_by = ? WHERE reservation_id = ?")
            .bind(now + 15_000)
            .bind("bench")
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("lease write");
    }
    let each = started.elapsed() / ids.len().max(1) as u32;
    tx.rollback().await.expect("rollback");
    each
}

/// One measurement: both queries' plans and median times.
struct Point {
    label: String,
    index: &'static str,
    due: &'static str,
    claim_plan: String,
    claim: Duration,
    claimed: usize,
    next_plan: String,
    next: Duration,
    write: Option<Duration>,
}

/// Measures a database with 0007's index and without it, first with nothing due (the
/// steady state), then with 1% of the reservations due now (a backlog).
async fn measure(path: &Path, label: &str) -> Vec<Point> {
    let pool = connect(path).await;
    let mut points = Vec::new();
    let now = Utc::now().timestamp_millis();
    for (index, due) in [
        ("with 0007", "none due"),
        ("without (0006)", "none due"),
        ("without (0006)", "1% due"),
        ("with 0007", "1% due"),
    ] {
        let present: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?")
            .bind(NEW_INDEX)
            .fetch_one(&pool)
            .await
            .expect("index lookup");
        match (index.starts_with("with "), present > 0) {
            (true, false) => {
                sqlx::raw_sql(NEW_INDEX_SQL).execute(&pool).await.expect("create index");
            }
            (false, true) => {
                sqlx::query(AssertSqlSafe(format!("DROP INDEX {NEW_INDEX}"))).execute(&pool).await.expect("drop");
            }
            _ => {}
        }
        if due == "1% due" && points.len() == 2 {
            sqlx::query("UPDATE lifecycle SET next_due_at = ? WHERE rowid % 100 = 0")
                .bind(now - 1000)
                .execute(&pool)
                .await
                .expect("backlog");
        }
        let (claim, claimed) = time(&pool, CLAIM_DUE_SQL, now).await;
        let (next, _) = time(&pool, NEXT_DUE_SQL, now).await;
        let write = if due == "none due" { Some(lease_write(&pool, now).await) } else { None };
        points.push(Point {
            label: label.to_owned(),
            index,
            due,
            claim_plan: plan(&pool, CLAIM_DUE_SQL, now).await,
            claim,
            claimed,
            next_plan: plan(&pool, NEXT_DUE_SQL, now).await,
            next,
            write,
        });
    }
    pool.close().await;
    points
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 { format!("{:.1} ms", us / 1000.0) } else { format!("{us:.0} µs") }
}

/// Whether `sql` still appears, whitespace aside, in the store's source.
fn still_in_source(sql: &str) -> bool {
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let source = std::fs::read_to_string(repo_root().join("src/store/sqlite.rs")).unwrap_or_default();
    squash(&source).contains(&squash(sql))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench_memory_and_due_query() {
    let env: Vec<(String, String)> = std::env::var("FOYER_BENCH_CHILD_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut foyer = TestFoyer::start_with(|yaml| yaml, &env_refs).await;
    let pid = foyer.child.id();
    println!("foyer pid {pid}, dir {}", foyer.dir().display());
    let db = foyer.dir().join("foyer.db");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = mem(pid);
    println!("idle: {idle:?}");

    let sender = Sender::new(&foyer.base_url);
    let run = random_token()[..6].to_owned();
    let year = next_year_ms();
    let step_ms = 365 * 24 * 3600 * 1000 / RESERVATIONS as i64;
    let at = move |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).expect("time").to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (res_run, load_started) = (run.clone(), Instant::now());
    let (reservation_rate, res_503) = deliver_all(&sender, IN_FLIGHT, RESERVATIONS, move |i| {
        let starts = year + i as i64 * step_ms;
        let body = envelope(
            "reservation.created",
            json!({"reservation_id": format!("mem-{res_run}-{i}"), "revision": 1, "title": format!("Memory {i}"),
                   "description": "A scheduled live stream", "starts_at": at(starts), "ends_at": at(starts + 7_200_000),
                   "stream_url": format!("https://stream.example.org/watch/{i}"),
                   "channel": {"id": format!("ch-{}", i % 100), "name": format!("Channel {}", i % 100)},
                   "hosts": [format!("@host{}:localhost", i % 1000)]}),
        );
        (format!("mem-{res_run}-r{i}"), body)
    })
    .await;
    let after_reservations = mem(pid);
    println!("reservations: {reservation_rate:.0}/s, {res_503} × 503; {after_reservations:?}");

    let ticket_run = run.clone();
    let (ticket_rate, ticket_503) = deliver_all(&sender, IN_FLIGHT, TICKET_WEBHOOKS, move |w| {
        // Every 100th reservation gets 1000 tickets, each a holder of its own.
        let tickets: Vec<Value> = (0..TICKETS_PER_WEBHOOK)
            .map(|t| {
                let n = w * TICKETS_PER_WEBHOOK + t;
                json!({"ticket_id": format!("t{t}"), "user_id": format!("@fan{n}:localhost")})
            })
            .collect();
        let body = envelope(
            "ticket.granted",
            json!({"reservation_id": format!("mem-{ticket_run}-{}", w * (RESERVATIONS / TICKET_WEBHOOKS)),
                   "tickets": tickets}),
        );
        (format!("mem-{ticket_run}-t{w}"), body)
    })
    .await;
    let sent = load_started.elapsed();
    let after_tickets = mem(pid);
    println!("tickets: {ticket_rate:.0} webhooks/s, {ticket_503} × 503; {after_tickets:?}");

    // Every accepted webhook made its reservation due now; the worker plans each and
    // stores its next due time (next year). Wait until nothing is due any more.
    let mut peak_sampled = after_tickets.rss;
    loop {
        let now = Utc::now().timestamp_millis();
        let due: u64 = sqlite_query(&db, &format!("SELECT COUNT(*) FROM lifecycle WHERE next_due_at <= {now}"))
            .trim()
            .parse()
            .expect("count");
        peak_sampled = peak_sampled.max(mem(pid).rss);
        if due == 0 {
            break;
        }
        assert!(load_started.elapsed() < Duration::from_secs(3600), "still {due} due after an hour");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let planned = load_started.elapsed();
    let loaded = mem(pid);
    println!("planned all after {planned:?}; {loaded:?}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rested = mem(pid);
    println!("after 10 s idle: {rested:?}");
    let counts = sqlite_query(
        &db,
        "SELECT (SELECT COUNT(*) FROM reservations), (SELECT COUNT(*) FROM tickets), (SELECT COUNT(*) FROM lifecycle),
                (SELECT COUNT(*) FROM webhook_receipts)",
    );
    let file_mib = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64 / 1048576.0).unwrap_or(0.0);
    let (db_mib, wal_mib) = (file_mib(&db), file_mib(&foyer.dir().join("foyer.db-wal")));
    let metrics_lines = foyer.metrics_text().await.lines().filter(|l| !l.starts_with('#')).count();
    let after_scrape = mem(pid);
    let glibc = malloc_stats_and_trim(pid, &foyer.log_path);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let trimmed = mem(pid);
    println!("glibc (held, in use): {glibc:?}; after malloc_trim(0): {trimmed:?}");
    println!(
        "rows (reservations, tickets, lifecycle, receipts): {}; db {db_mib:.0} MiB, wal {wal_mib:.0} MiB; {metrics_lines} metric samples; after a scrape {after_scrape:?}",
        counts.trim()
    );
    foyer.kill();

    // The due queries at 10k, 100k and 1M reservations, and on Foyer's own database.
    let scratch = tempfile::Builder::new().prefix("foyer-scale-").tempdir().expect("tempdir");
    let mut points = Vec::new();
    for n in [10_000, 100_000, 1_000_000] {
        let started = Instant::now();
        let path = synthetic(scratch.path(), n).await;
        println!("built {n} reservations in {:?}", started.elapsed());
        points.extend(measure(&path, &format!("{n} (synthetic)")).await);
        std::fs::remove_file(&path).ok();
    }
    points.extend(measure(&db, "100,000 (Foyer's own, after the load)").await);
    drop(foyer);

    let rows: String = points
        .iter()
        .map(|p| {
            format!(
                "| {} | {} | {} | {} ({} rows) | {} | {} |\n",
                p.label,
                p.index,
                p.due,
                micros(p.claim),
                p.claimed,
                micros(p.next),
                p.write.map_or("–".to_owned(), |d| format!("{:.1} µs", d.as_secs_f64() * 1e6))
            )
        })
        .collect();
    // Each distinct plan once, with the databases it was seen on.
    let mut plans: Vec<(String, Vec<String>)> = Vec::new();
    for p in &points {
        let line = format!("{}, {}: `claim_due`: `{}`; `next_due_at`: `{}`", p.index, p.due, p.claim_plan, p.next_plan);
        match plans.iter_mut().find(|(l, _)| *l == line) {
            Some((_, seen)) => seen.push(p.label.clone()),
            None => plans.push((line, vec![p.label.clone()])),
        }
    }
    let plans: Vec<String> = plans.iter().map(|(line, seen)| format!("- {line} (on {})", seen.join(", "))).collect();
    let drift = [CLAIM_DUE_SQL, NEXT_DUE_SQL]
        .iter()
        .filter(|sql| !still_in_source(sql))
        .map(|sql| {
            let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("\n\n**Warning:** this query is no longer in `src/store/sqlite.rs`: `{sql}`")
        })
        .collect::<String>();
    let child_env = if env.is_empty() {
        "none".to_owned()
    } else {
        format!("`{}`", env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
    };
    let body = format!(
        "## Memory and scale\n\n\
         One `foyer serve` (SQLite, release build, extra environment: {child_env}) is sent {RESERVATIONS} \
         `reservation.created` webhooks (opening next year, so no room is created) and then \
         {TICKET_WEBHOOKS} `ticket.granted` webhooks of {TICKETS_PER_WEBHOOK} tickets each (1,000,000 \
         tickets, one holder each, on every 100th reservation), {IN_FLIGHT} deliveries in flight, \
         each retried on 503 like a platform. Every accepted webhook makes its reservation due now; \
         the worker plans each until nothing is due. Memory from `/proc/<pid>/status` \
         (RSS current, VmHWM peak, file-backed and anonymous parts) and, for the anonymous part, `/proc/<pid>/smaps`.\n\n\
         | when | RSS | peak (VmHWM) | file-backed | anonymous | of which main heap | thread arenas (count) | other anonymous | threads |\n|---|---|---|---|---|---|---|---|---|\n\
         {}\n{}\n{}\n{}\n{}\n{}\n{}\n\n\
         Target: at most {TARGET_MIB:.0} MiB resident at 100k. Highest RSS sampled while the worker planned: {:.1} MiB. \
         {}\n\n\
         Sending: reservations {reservation_rate:.0} webhooks/s ({res_503} answers 503, retried); tickets \
         {ticket_rate:.0} webhooks/s = {:.0} tickets/s ({ticket_503} answers 503, retried). All sent after {:.0} s; \
         all planned (nothing due) after {:.0} s. Rows (reservations, tickets, lifecycle, receipts): {}; \
         database {db_mib:.0} MiB plus WAL {wal_mib:.0} MiB; /metrics has {metrics_lines} samples.\n\n\
         ### Due queries\n\n\
         `claim_due` selects `{}` (binds now, now, 64); after every round that was not full the worker \
         asks `next_due_at`: `{}`. Median of {RUNS} runs each through sqlx and the bundled SQLite Foyer \
         links, on a synthetic database per size (Foyer's migrations, then `reservations` and `lifecycle` \
         rows shaped like Foyer's, due at `opens_at` spread over next year) and on Foyer's own database \
         after the load above. \"1% due\" makes every 100th reservation due now (a backlog). \
         \"One lease write\" is `claim_due`'s `UPDATE` of `locked_until` on a random row, inside one \
         transaction (no fsync): what keeping the extra index costs each write.\n\n\
         | reservations | index `{NEW_INDEX}` | state | `claim_due` select | `next_due_at` | one lease write |\n|---|---|---|---|---|---|\n\
         {rows}\n\
         Plans (`EXPLAIN QUERY PLAN`):\n\n{}{drift}\n\n\
         Measured {}.",
        mem_row("idle, ready (5 s after start)", idle),
        mem_row("after 100k reservations", after_reservations),
        mem_row("after 1M tickets", after_tickets),
        mem_row("all planned", loaded),
        mem_row("after 10 s idle", rested),
        mem_row("after one /metrics scrape", after_scrape),
        mem_row("then after `malloc_trim(0)` (injected with gdb; diagnostic)", trimmed),
        mib(peak_sampled),
        match glibc {
            Some((held, used)) => format!(
                "Before the trim, glibc's `malloc_stats()` counted {:.1} MiB taken from the system and {:.1} MiB \
                 of it in use: the rest is freed heap the allocator keeps.",
                held as f64 / 1048576.0,
                used as f64 / 1048576.0
            ),
            None => "(gdb unavailable: no `malloc_stats()`.)".to_owned(),
        },
        ticket_rate * TICKETS_PER_WEBHOOK as f64,
        sent.as_secs_f64(),
        planned.as_secs_f64(),
        counts.trim().replace('\t', ", "),
        CLAIM_DUE_SQL.split_whitespace().collect::<Vec<_>>().join(" "),
        NEXT_DUE_SQL.split_whitespace().collect::<Vec<_>>().join(" "),
        plans.join("\n"),
        machine()
    );
    println!("{body}");
    write_section("memory-and-scale", &body);
}
