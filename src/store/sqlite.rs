//! SQLite, the embedded default: WAL, `synchronous=FULL` (a commit survives power
//! loss), foreign keys, a busy timeout; writes take the lock up front (`BEGIN IMMEDIATE`)
//! so two writers never deadlock upgrading a read lock.
//!
//! Webhooks are written by group commit: one writer task takes every webhook waiting
//! in its queue, records them all in one transaction (each under a savepoint of its
//! own only if one of them fails), commits (one fsync) and only then answers each. A webhook's 2xx still means committed, and a
//! burst costs one fsync per batch instead of one per webhook.

use std::{collections::BTreeMap, str::FromStr as _, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{
    Sqlite, SqlitePool,
    query::Query,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
        SqliteSynchronous,
    },
};
use tokio::sync::{mpsc, oneshot};

use super::{
    Claim, Outbound, Outcome, Receipt, StoreError,
    db::{Dialect, Due, SqlStore},
    rows, schema, sql, to_millis,
};
use crate::config::DatabaseKind;
use crate::model::{ReservationId, WebhookEvent};

pub type SqliteStore = SqlStore<Sqlite>;

/// Webhooks waiting for the writer beyond this many get 503 at once; the sender retries.
const INTAKE_QUEUE: usize = 4096;
/// At most this many webhooks share one commit.
const INTAKE_BATCH: usize = 512;

/// One webhook waiting for the group-commit writer.
pub struct Job {
    webhook_id: String,
    received_at: DateTime<Utc>,
    event: WebhookEvent,
    outbox: Outbound,
    done: oneshot::Sender<Result<Outcome, StoreError>>,
}

#[async_trait]
impl Dialect for Sqlite {
    /// The group-commit writer's queue.
    type Writer = mpsc::Sender<Job>;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const KIND: DatabaseKind = DatabaseKind::Sqlite;
    const MIGRATIONS_TABLE: &'static str =
        "CREATE TABLE IF NOT EXISTS foyer_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)";
    const BEFORE_MIGRATING: Option<&'static str> = None;
    /// One writer (`BEGIN IMMEDIATE`, group commit) writes every reservation.
    const LOCK_STREAM_KEY: Option<&'static str> = None;
    const OUTBOX_CLAIM: &'static str = sql::outbox_claim!("");
    const REMINDER_SENT: &'static str =
        "UPDATE lifecycle SET reminders_sent = json_insert(COALESCE(reminders_sent, '[]'), '$[#]', $1)
         WHERE reservation_id = $2";

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    /// The ids come as one JSON array, so the statement stays the same for any number.
    fn records_by_id(ids: &[ReservationId]) -> Result<Query<'static, Sqlite, SqliteArguments>, StoreError> {
        const BY_IDS: &str = sql::records!("WHERE r.reservation_id IN (SELECT value FROM json_each($1))");
        let ids = serde_json::to_string(&ids.iter().map(ReservationId::as_str).collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(sqlx::query(BY_IDS).bind(ids))
    }

    async fn record_webhook(
        store: &SqliteStore,
        receipt: &Receipt<'_>,
        event: &WebhookEvent,
    ) -> Result<Outcome, StoreError> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            webhook_id: receipt.webhook_id.to_owned(),
            received_at: receipt.received_at,
            event: event.clone(),
            outbox: store.outbox,
            done,
        };
        store.writer.try_send(job).map_err(|e| {
            StoreError::Unavailable(match e {
                mpsc::error::TrySendError::Full(_) => format!("{INTAKE_QUEUE} webhooks are waiting to be written"),
                mpsc::error::TrySendError::Closed(_) => "the webhook writer has stopped".to_owned(),
            })
        })?;
        answer.await.map_err(|_| StoreError::Unavailable("the webhook writer has stopped".into()))?
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
            let claim = rows::due_claim(row, due.owner)?;
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
}

/// The writer: drains the queue into batches until every sender is gone.
async fn group_commit(pool: SqlitePool, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(INTAKE_BATCH);
    while jobs.recv_many(&mut batch, INTAKE_BATCH).await > 0 {
        metrics::histogram!("foyer_intake_batch_size").record(batch.len() as f64);
        match commit_batch(&pool, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = job.done.send(outcome);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, webhooks = batch.len(), "webhook batch not committed");
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
    }
}

/// Records every job of the batch in one transaction and commits once.
///
/// Each statement is a round trip to sqlx's SQLite thread, and those hand-offs, not
/// SQLite, are what bounds intake (BENCHMARKS.md, "Webhook intake"), so the first pass
/// takes no savepoints. Should a job fail (input is validated before, so this is rare),
/// that transaction is rolled back and the batch redone with a savepoint per job
/// (`isolated`), so that only the failing one fails.
async fn commit_batch(pool: &SqlitePool, batch: &[Job]) -> Result<Vec<Result<Outcome, StoreError>>, sqlx::Error> {
    match commit(pool, batch, false).await? {
        Some(outcomes) => Ok(outcomes),
        None => Ok(commit(pool, batch, true).await?.unwrap_or_default()),
    }
}

/// One pass over the batch; `None` when a job failed outside a savepoint (the
/// transaction is then rolled back), which only happens when not `isolated`.
async fn commit(
    pool: &SqlitePool,
    batch: &[Job],
    isolated: bool,
) -> Result<Option<Vec<Result<Outcome, StoreError>>>, sqlx::Error> {
    let mut tx = pool.begin_with(Sqlite::BEGIN_WRITE).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    // Reservations with new facts, each due at its earliest webhook's arrival.
    let mut due: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for job in batch {
        if isolated {
            sqlx::query("SAVEPOINT webhook").execute(&mut *tx).await?;
        }
        match SqliteStore::record(&mut *tx, &job.webhook_id, job.received_at, &job.event, job.outbox).await {
            Ok(outcome) => {
                if outcome == Outcome::Accepted {
                    let at = due.entry(job.event.reservation_id().as_str()).or_insert(job.received_at);
                    *at = (*at).min(job.received_at);
                }
                outcomes.push(Ok(outcome));
            }
            Err(e) if isolated => {
                sqlx::query("ROLLBACK TO webhook").execute(&mut *tx).await?;
                outcomes.push(Err(e));
            }
            Err(e) => {
                tracing::warn!(webhook_id = %job.webhook_id, error = %e, "a webhook failed in a batch; redoing the batch one savepoint per webhook");
                tx.rollback().await?;
                return Ok(None);
            }
        }
        if isolated {
            sqlx::query("RELEASE webhook").execute(&mut *tx).await?;
        }
    }
    // New facts: plan these reservations again now, once each however many webhooks
    // of the batch concern them.
    for (reservation_id, at) in due {
        sqlx::query(sql::FACTS_ARRIVED).bind(reservation_id).bind(to_millis(at)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Some(outcomes))
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
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections.unwrap_or(4))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        let (writer, jobs) = mpsc::channel(INTAKE_QUEUE);
        tokio::spawn(group_commit(pool.clone(), jobs));
        schema::migrate(&pool).await?;
        // One Foyer per SQLite database: leases left by a previous run of this process
        // (a crash) are ours, and nothing else holds any. Release them now, so steps due
        // while Foyer was down run at once instead of after the lease expires.
        sqlx::query("UPDATE lifecycle SET locked_until = NULL WHERE locked_until IS NOT NULL")
            .execute(&pool)
            .await
            .map_err(|e| StoreError::Open(format!("releasing old leases: {e}")))?;
        Ok(Self { pool, writer, outbox })
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
        store::Store as _,
        test_support::{t, user},
    };

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

    fn job(webhook_id: &str, ticket: &str) -> (Job, oneshot::Receiver<Result<Outcome, StoreError>>) {
        let (done, answer) = oneshot::channel();
        let event = WebhookEvent::TicketsGranted {
            id: ReservationId::parse("jazz").unwrap(),
            tickets: vec![Ticket { id: TicketId::parse(ticket).unwrap(), holder: Holder::User(user("fan")) }],
        };
        (Job { webhook_id: webhook_id.into(), received_at: t(12, 0), event, outbox: Outbound::Skip, done }, answer)
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
    async fn a_webhook_failing_in_a_batch_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        refuse_webhook_bad(&store).await;
        let (jobs, answers): (Vec<_>, Vec<_>) = [job("a", "t1"), job("bad", "t2"), job("c", "t3")].into_iter().unzip();
        let outcomes = commit_batch(&store.pool, &jobs).await.expect("the batch commits");
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
    async fn a_batch_makes_each_reservation_due_once_at_its_first_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        refuse_webhook_bad(&store).await;
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
            on("bad", "folk", "t5", t(12, 0)),
        ];
        let (jobs, _answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let outcomes = commit_batch(&store.pool, &jobs).await.expect("the batch commits");
        assert!(outcomes[4].is_err() && outcomes[..4].iter().all(Result::is_ok), "{outcomes:?}");
        let due: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT reservation_id, next_due_at, facts_version FROM lifecycle ORDER BY reservation_id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        assert_eq!(due, [("blues".into(), ms(t(12, 5)), 1), ("jazz".into(), ms(t(12, 1)), 1)], "folk's failed");
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
        let (jobs, _answers): (Vec<_>, Vec<_>) = [job("a", "t1"), job("a", "t1"), job("b", "t2")].into_iter().unzip();
        let outcomes = commit_batch(&store.pool, &jobs).await.expect("the batch commits");
        let outcomes: Vec<_> = outcomes.into_iter().map(|o| o.expect("stored")).collect();
        assert_eq!(outcomes, [Outcome::Accepted, Outcome::Duplicate, Outcome::Accepted]);
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_receipts").fetch_one(&store.pool).await.unwrap();
        assert_eq!(count, 2);
        // Without a failure (no savepoints) the reservation is made due once, too.
        let due: Vec<(i64, i64)> =
            sqlx::query_as("SELECT next_due_at, facts_version FROM lifecycle").fetch_all(&store.pool).await.unwrap();
        assert_eq!(due, [(t(12, 0).timestamp_millis(), 1)]);
    }
}
