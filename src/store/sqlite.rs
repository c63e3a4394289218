//! SQLite, the embedded default: WAL, `synchronous=FULL` (a commit survives power
//! loss), foreign keys, a busy timeout; writes take the lock up front (`BEGIN IMMEDIATE`)
//! so two writers never deadlock upgrading a read lock.
//!
//! Webhooks are written by group commit: one writer thread (`foyer-intake`) takes every
//! webhook waiting in its queue, records them all in one transaction on a connection of
//! its own (rusqlite, prepared statements, `intake::record_batch`), commits (one fsync)
//! and only then answers each. A webhook's 2xx still means committed; a burst costs one
//! fsync per batch instead of one per webhook, and one hand-off between threads per
//! batch instead of one per statement, which was most of a webhook's cost through sqlx.

use std::{str::FromStr as _, time::Duration};

use async_trait::async_trait;
use sqlx::{
    Sqlite,
    query::Query,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
        SqliteSynchronous,
    },
};
use tokio::sync::mpsc;

use super::{
    Claim, Outbound, Outcome, Receipt, StoreError,
    dialect::{Dialect, Due, SqlStore},
    intake::{self, Arg, INTAKE_BATCH, INTAKE_QUEUE, Job, Writes, now_or_never},
    leases, outbox, reservations,
    rows::Read,
    schema,
    webchat::LogAppended,
};
use crate::config::DatabaseKind;
use crate::model::{ReservationId, ReservationRecord, WebhookEvent};

pub type SqliteStore = SqlStore<Sqlite>;

/// The database file is read through a memory map of up to this size. Another
/// connection's commit empties a connection's page cache (WAL), so each transaction
/// reads its pages again: mapped, that is no copy and no system call.
const MMAP_SIZE: i64 = 256 * 1024 * 1024;

#[async_trait]
impl Dialect for Sqlite {
    type Own = Own;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const KIND: DatabaseKind = DatabaseKind::Sqlite;
    const MIGRATIONS_TABLE: &'static str =
        "CREATE TABLE IF NOT EXISTS foyer_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)";
    const BEFORE_MIGRATING: Option<&'static str> = None;
    /// One writer (`BEGIN IMMEDIATE`, group commit) writes every reservation.
    const LOCK_STREAM_KEY: Option<&'static str> = None;
    const OUTBOX_CLAIM: &'static str = outbox::outbox_claim!("");
    /// One instance: its hub hears of its own appends.
    const TELL_WEB_LOG_APPEND: Option<&'static str> = None;
    const REMINDER_SENT: &'static str =
        "UPDATE lifecycle SET reminders_sent = json_insert(COALESCE(reminders_sent, '[]'), '$[#]', $1)
         WHERE reservation_id = $2";

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    /// The ids come as one JSON array, so the statement stays the same for any number.
    fn records_by_id(ids: &[ReservationId]) -> Result<Query<'static, Sqlite, SqliteArguments>, StoreError> {
        const BY_IDS: &str = reservations::records!("WHERE r.reservation_id IN (SELECT value FROM json_each($1))");
        let ids = serde_json::to_string(&ids.iter().map(ReservationId::as_str).collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(sqlx::query(BY_IDS).bind(ids))
    }

    async fn record_webhook(
        store: &SqliteStore, receipt: &Receipt<'_>, event: &WebhookEvent, windows: super::Windows,
    ) -> Result<Outcome, StoreError> {
        intake::queue(&store.own.intake, receipt, event, store.outbox.clone(), windows).await
    }

    /// One writer at a time (`BEGIN IMMEDIATE`): the due rows it reads are its own to lease.
    async fn claim_due(store: &SqliteStore, due: Due<'_>) -> Result<Vec<Claim>, StoreError> {
        let mut tx = store.pool.begin_with(Self::BEGIN_WRITE).await?;
        let rows = sqlx::query(
            "SELECT reservation_id, facts_version, next_due_at, attempts FROM lifecycle
             WHERE next_due_at <= $1 AND (locked_until IS NULL OR locked_until <= $1)
             ORDER BY next_due_at LIMIT $2",
        )
        .bind(due.now)
        .bind(due.limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            let claim = leases::due_claim(row, due.owner)?;
            sqlx::query("UPDATE lifecycle SET locked_until = $1, locked_by = $2 WHERE reservation_id = $3")
                .bind(due.until)
                .bind(due.owner)
                .bind(claim.reservation_id.as_str())
                .execute(&mut *tx)
                .await?;
            claims.push(claim);
        }
        tx.commit().await?;
        Ok(claims)
    }

    fn web_log_appends(_: &SqliteStore) -> Option<tokio::sync::mpsc::Receiver<LogAppended>> {
        None
    }

    /// Read in place; through the pool when that fails (say, `SQLITE_BUSY`: an in-place
    /// reader waits for nothing), where the busy timeout applies off this thread.
    async fn reservation(store: &SqliteStore, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError> {
        let read = store.own.readers.read(|conn| {
            now_or_never(
                Direct(conn)
                    .fetch_optional(reservations::RECORD_BY_ID, &[id.as_str().into()], |row| reservations::record(row)),
            )
        });
        match read {
            Err(StoreError::Unavailable(why)) => {
                tracing::debug!(%why, "cannot read a reservation in place; reading through the pool");
                store.reservation_from_pool(id).await
            }
            read => read,
        }
    }
}

/// What SQLite's store holds besides its pool.
pub struct Own {
    /// The group-commit writer's queue.
    intake: mpsc::Sender<Job>,
    readers: Readers,
}

/// Connections that read on the caller's own thread. A read through sqlx's pool crosses
/// to the connection's thread and back, two thread switches that cost more than the
/// read itself (BENCHMARKS.md, "Read API"). Only short reads go here: one reservation by
/// its key, with counts over its own index ranges. They wait for no lock: WAL readers
/// do not wait for the writer, and the connections have no busy timeout.
struct Readers {
    path: std::path::PathBuf,
    /// Connections not in use; a read takes one, or opens one if there is none.
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
}

/// Idle in-place readers kept: one per runtime thread reads at a time.
const IDLE_READERS: usize = 8;

impl Readers {
    fn read<T>(&self, read: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => reader_connection(&self.path)?,
        };
        let result = read(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_READERS
        {
            idle.push(conn);
        }
        result
    }
}

/// A read-only connection to the store's file, its pages read through a memory map.
fn reader_connection(path: &std::path::Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    // rusqlite's default is to wait 5 s for a lock; this thread is the runtime's, so a
    // read that would wait fails at once and goes through the pool instead.
    conn.busy_timeout(Duration::ZERO)?;
    conn.pragma_update(None, "mmap_size", MMAP_SIZE)?;
    conn.set_prepared_statement_cache_capacity(8);
    Ok(conn)
}

/// The writer thread: drains the queue into batches until every sender is gone.
fn write_batches(mut conn: rusqlite::Connection, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(INTAKE_BATCH);
    while jobs.blocking_recv_many(&mut batch, INTAKE_BATCH) > 0 {
        let outcomes = commit_batch(&mut conn, &batch);
        intake::answer(&mut batch, outcomes);
    }
}

/// [`intake::record_batch`] in one transaction, committed once; redone with a savepoint
/// per webhook if one failed.
fn commit_batch(
    conn: &mut rusqlite::Connection, batch: &[Job],
) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
    match commit(conn, batch, false)? {
        Some(outcomes) => Ok(outcomes),
        None => Ok(commit(conn, batch, true)?.unwrap_or_default()),
    }
}

fn commit(
    conn: &mut rusqlite::Connection, batch: &[Job], isolated: bool,
) -> Result<Option<Vec<Result<Outcome, StoreError>>>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    match now_or_never(intake::record_batch(&mut Direct(&tx), batch, isolated))? {
        Some(outcomes) => {
            let started = std::time::Instant::now();
            tx.commit()?;
            intake::committed(started);
            Ok(Some(outcomes))
        }
        None => {
            tx.rollback()?;
            Ok(None)
        }
    }
}

/// The writer's connection to the file the pool uses, with the same settings: WAL,
/// `synchronous=FULL` (a commit survives power loss), foreign keys, a busy timeout.
fn writer_connection(path: &std::path::Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "mmap_size", MMAP_SIZE)?;
    // Every statement intake runs stays prepared.
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// The writer's connection inside its transaction: each statement runs in place, on
/// this thread, prepared once.
struct Direct<'c>(&'c rusqlite::Connection);

/// `$1`…`$32`: the names SQLite gives the statements' arguments.
#[rustfmt::skip]
const ARG_NAMES: [&str; 32] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16", "$17", "$18", "$19", "$20", "$21", "$22", "$23", "$24", "$25", "$26", "$27", "$28", "$29", "$30", "$31", "$32"];

impl Direct<'_> {
    fn prepare(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<rusqlite::CachedStatement<'_>, StoreError> {
        // More arguments than names would leave the last ones unbound (NULL) in silence.
        if args.len() > ARG_NAMES.len() {
            return Err(StoreError::Corrupt(format!(
                "a statement with {} arguments; at most {}",
                args.len(),
                ARG_NAMES.len()
            )));
        }
        let mut statement = self.0.prepare_cached(sql)?;
        for (arg, name) in args.iter().zip(ARG_NAMES) {
            match *arg {
                Arg::Int(n) => statement.raw_bind_parameter(name, n)?,
                Arg::Text(s) => statement.raw_bind_parameter(name, s)?,
            }
        }
        Ok(statement)
    }
}

impl Writes for Direct<'_> {
    const LOCK_STREAM_KEY: Option<&'static str> = None;

    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        Ok(self.prepare(sql, args)?.raw_execute()? as u64)
    }

    async fn fetch_optional<T>(
        &mut self, sql: &'static str, args: &[Arg<'_>], read: impl FnOnce(&dyn Read) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut statement = self.prepare(sql, args)?;
        let names: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = statement.raw_query();
        let row = rows.next()?;
        row.map(|row| read(&DirectRow { row, names: &names, next: Default::default() })).transpose()
    }
}

/// A row read on a connection of Foyer's own (the writer's, or an in-place reader's).
/// Columns are found by name in `names`, copied once a row; rusqlite's own lookup by
/// name asks SQLite for each column's name again for every value read, and that was 7.5%
/// of the read API's samples. Columns are mostly read in order, so the search starts where
/// the last one was found.
struct DirectRow<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    names: &'r [String],
    next: std::cell::Cell<usize>,
}

impl DirectRow<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, col: &str) -> Result<T, StoreError> {
        let n = self.names.len();
        let start = self.next.get();
        let index = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.names[i].eq_ignore_ascii_case(col))
            .ok_or_else(|| StoreError::from(rusqlite::Error::InvalidColumnName(col.to_owned())))?;
        self.next.set(index + 1);
        Ok(self.row.get(index)?)
    }
}

impl Read for DirectRow<'_, '_> {
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.get(col)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.get(col)
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.get(col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.get(col)
    }
    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        self.get(col)
    }
}

impl SqliteStore {
    pub async fn open(config: &crate::config::DatabaseConfig, outbox: Outbound) -> Result<Self, StoreError> {
        let url = config.url.expose();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("mmap_size", MMAP_SIZE.to_string());
        let options_path = options.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            // A connection to a file does not go stale: no ping (a round trip to sqlx's
            // SQLite thread) before each use.
            .test_before_acquire(false)
            .max_connections(config.max_connections.unwrap_or(4))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        schema::migrate(&pool).await?;
        let path = options_path.as_path();
        let conn = writer_connection(path).map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        let (writer, jobs) = mpsc::channel(INTAKE_QUEUE);
        std::thread::Builder::new()
            .name("foyer-intake".into())
            .spawn(move || write_batches(conn, jobs))
            .map_err(|e| StoreError::Open(format!("cannot start the webhook writer: {e}")))?;
        // One Foyer per SQLite database: leases left by a previous run of this process
        // (a crash) are ours, and nothing else holds any. Release them now, so steps due
        // while Foyer was down run at once instead of after the lease expires.
        sqlx::query("UPDATE lifecycle SET locked_until = NULL WHERE locked_until IS NOT NULL")
            .execute(&pool)
            .await
            .map_err(|e| StoreError::Open(format!("releasing old leases: {e}")))?;
        let readers = Readers { path: options_path.clone(), idle: Default::default() };
        Ok(Self { pool, own: Own { intake: writer, readers }, outbox })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{DatabaseConfig, DatabaseKind},
        events::HomeserverEvent,
        model::{Holder, Ticket, TicketId},
        secret::Secret,
        store::{AdminStore as _, ReservationStore as _},
        test_support::{t, user},
    };
    use chrono::{DateTime, Utc};
    use tokio::sync::oneshot;

    async fn store(dir: &tempfile::TempDir) -> SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("foyer.db").display());
        let config = DatabaseConfig {
            url: Secret::new(url),
            kind: DatabaseKind::Sqlite,
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
        };
        SqliteStore::open(&config, Outbound::Skip).await.expect("open")
    }

    /// A connection like the writer's, to run batches on in the test's thread.
    fn writer(dir: &tempfile::TempDir) -> rusqlite::Connection {
        writer_connection(&dir.path().join("foyer.db")).expect("writer connection")
    }

    fn job(webhook_id: &str, ticket: &str) -> (Job, oneshot::Receiver<Result<Outcome, StoreError>>) {
        let (done, answer) = oneshot::channel();
        let event = WebhookEvent::TicketsGranted {
            id: ReservationId::parse("jazz").unwrap(),
            tickets: vec![Ticket { id: TicketId::parse(ticket).unwrap(), holder: Holder::User(user("fan")) }],
        };
        (
            Job {
                webhook_id: webhook_id.into(),
                received_at: t(12, 0),
                event,
                outbox: Outbound::Skip,
                windows: super::super::Windows::WIDEST,
                done,
            },
            answer,
        )
    }

    /// A fault SQLite raises for the webhook `bad` only, as a full disk or a bug might.
    async fn refuse_webhook_bad(store: &SqliteStore) {
        sqlx::query(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON webhook_receipts WHEN NEW.webhook_id = 'bad'
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END",
        )
        .execute(&store.pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_reservation_is_read_in_place_or_else_through_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store(&dir).await;
        let jazz = crate::test_support::record(Default::default(), vec![]).reservation;
        let receipt = Receipt { webhook_id: "w1", received_at: t(12, 0) };
        store.record_webhook(&receipt, &WebhookEvent::Upsert(Box::new(jazz.clone()))).await.unwrap();
        let read = store.reservation(&jazz.id).await.unwrap().expect("what the writer committed");
        assert_eq!(read.reservation, jazz);
        assert_eq!(store.own.readers.idle.lock().unwrap().len(), 1, "read in place, its connection kept");
        // It runs on the runtime's thread, so it must not wait for a lock (rusqlite's default is 5 s).
        let waits: i64 =
            store.own.readers.read(|conn| Ok(conn.pragma_query_value(None, "busy_timeout", |r| r.get(0))?)).unwrap();
        assert_eq!(waits, 0);
        // Readers that cannot open their file: the read goes through the pool.
        store.own.readers = Readers { path: dir.path().join("missing.db"), idle: Default::default() };
        let read = store.reservation(&jazz.id).await.unwrap().expect("read through the pool");
        assert_eq!(read.reservation, jazz);
        assert!(store.own.readers.idle.lock().unwrap().is_empty(), "no reader was opened");
        assert!(store.reservation(&ReservationId::parse("blues").unwrap()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_webhook_failing_in_a_batch_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        refuse_webhook_bad(&store).await;
        let (jobs, answers): (Vec<_>, Vec<_>) = [job("a", "t1"), job("bad", "t2"), job("c", "t3")].into_iter().unzip();
        let outcomes = commit_batch(&mut writer(&dir), &jobs).expect("the batch commits");
        assert!(matches!(outcomes[0], Ok(Outcome::Accepted)), "{:?}", outcomes[0]);
        assert!(matches!(outcomes[1], Err(StoreError::Unavailable(_))), "{:?}", outcomes[1]);
        assert!(matches!(outcomes[2], Ok(Outcome::Accepted)), "{:?}", outcomes[2]);
        drop(answers);
        let stored: Vec<String> = sqlx::query_scalar("SELECT webhook_id FROM webhook_receipts ORDER BY webhook_id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(stored, ["a", "c"]);
        let tickets: Vec<String> = sqlx::query_scalar("SELECT ticket_id FROM tickets ORDER BY ticket_id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(tickets, ["t1", "t3"], "the failing webhook's ticket is not stored");
    }

    #[tokio::test]
    async fn a_batch_makes_each_reservation_with_a_room_due_once_at_its_first_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        refuse_webhook_bad(&store).await;
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        // jazz has its room; blues is planned to open at 13:00; soul was never planned.
        sqlx::query(
            "INSERT INTO lifecycle (reservation_id, room_id, next_due_at, facts_version)
             VALUES ('jazz', '!jazz:example.org', NULL, 5), ('blues', NULL, $1, 7)",
        )
        .bind(ms(t(13, 0)))
        .execute(&store.pool)
        .await
        .unwrap();
        let on = |webhook_id: &str, reservation: &str, ticket: &str, at| {
            let (mut job, answer) = job(webhook_id, ticket);
            let WebhookEvent::TicketsGranted { id, .. } = &mut job.event else { unreachable!() };
            *id = ReservationId::parse(reservation).unwrap();
            job.received_at = at;
            (job, answer)
        };
        let batch = [
            on("a", "jazz", "t1", t(12, 2)),
            on("b", "jazz", "t2", t(12, 1)),
            on("c", "jazz", "t3", t(12, 3)),
            on("d", "blues", "t4", t(12, 5)),
            on("e", "soul", "t6", t(12, 4)),
            on("bad", "folk", "t5", t(12, 0)),
        ];
        let (jobs, _answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let outcomes = commit_batch(&mut writer(&dir), &jobs).expect("the batch commits");
        assert!(outcomes[5].is_err() && outcomes[..5].iter().all(Result::is_ok), "{outcomes:?}");
        let due: Vec<(String, Option<i64>, i64)> =
            sqlx::query_as("SELECT reservation_id, next_due_at, facts_version FROM lifecycle ORDER BY reservation_id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(
            due,
            [("blues".into(), Some(ms(t(13, 0))), 8), ("jazz".into(), Some(ms(t(12, 1))), 6)],
            "jazz is due at its first ticket, once; blues's tickets change no plan before its room, \
             but its version moves; soul has no plan to change; folk's webhook failed"
        );
    }

    #[tokio::test]
    async fn an_unreadable_admin_inbox_row_is_reported_beside_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let event = HomeserverEvent {
            event_id: "$good".into(),
            room_id: "!dm:example.org".into(),
            kind: "m.room.message".into(),
            sender: "@admin:example.org".into(),
            state_key: None,
            content: serde_json::json!({"body": "!foyer help"}),
        };
        sqlx::query("INSERT INTO admin_inbox (event_id, event, received_at) VALUES ('$bad', '{\"type\":', 0)")
            .execute(&store.pool)
            .await
            .unwrap();
        store.queue_admin_events(std::slice::from_ref(&event), t(12, 0)).await.unwrap();
        let inbox = store.admin_inbox(10).await.expect("the inbox reads");
        assert_eq!(inbox.len(), 2);
        assert!(inbox[0].event.as_ref().is_err_and(|e| e.starts_with("cannot be read")), "{inbox:?}");
        assert_eq!((inbox[1].event.as_ref(), inbox[1].received_at), (Ok(&event), t(12, 0)));
    }

    #[tokio::test]
    async fn a_batch_without_failures_commits_every_webhook_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        sqlx::query(
            "INSERT INTO lifecycle (reservation_id, room_id, facts_version) VALUES ('jazz', '!r:example.org', 1)",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let (jobs, _answers): (Vec<_>, Vec<_>) = [job("a", "t1"), job("a", "t1"), job("b", "t2")].into_iter().unzip();
        let outcomes = commit_batch(&mut writer(&dir), &jobs).expect("the batch commits");
        let outcomes: Vec<_> = outcomes.into_iter().map(|o| o.expect("stored")).collect();
        assert_eq!(outcomes, [Outcome::Accepted, Outcome::Duplicate, Outcome::Accepted]);
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_receipts").fetch_one(&store.pool).await.unwrap();
        assert_eq!(count, 2);
        // Without a failure (no savepoints) the reservation is made due once, too.
        let due: Vec<(i64, i64)> =
            sqlx::query_as("SELECT next_due_at, facts_version FROM lifecycle").fetch_all(&store.pool).await.unwrap();
        assert_eq!(due, [(t(12, 0).timestamp_millis(), 2)]);
    }
}
