//! PostgreSQL, for deployments that run several Foyer instances on one database: the
//! same facts and lifecycle state as SQLite. Claims take rows with `FOR UPDATE SKIP
//! LOCKED`, so instances never work on the same reservation at once; a dead instance's
//! leases simply expire.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{
    PgPool, Postgres,
    postgres::{PgArguments, PgConnectOptions, PgListener, PgPoolOptions, PgQueryResult},
    query::Query,
};

use tokio::sync::{Mutex, mpsc};

use super::{
    Claim, Outbound, Outcome, Receipt, StoreError,
    dialect::{Dialect, Due, SqlStore},
    intake::{self, INTAKE_BATCH, INTAKE_QUEUE, Job},
    leases, outbox, reservations, schema,
    webchat::LogAppended,
};
use crate::config::DatabaseKind;
use crate::model::{ReservationId, ReservationRecord, WebhookEvent};

pub type PostgresStore = SqlStore<Postgres>;

#[async_trait]
impl Dialect for Postgres {
    /// The group-commit writers' queue.
    type Own = mpsc::Sender<Job>;
    const BEGIN_WRITE: &'static str = "BEGIN";
    const KIND: DatabaseKind = DatabaseKind::Postgres;
    const MIGRATIONS_TABLE: &'static str =
        "CREATE TABLE IF NOT EXISTS foyer_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
    /// Several instances may start at once: one migrates, the others wait.
    const BEFORE_MIGRATING: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(7417011)");
    /// Two keys may share a lock (a 32-bit hash of the hash): they then wait, no more.
    const LOCK_STREAM_KEY: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(7417012, hashtext($1))");
    const OUTBOX_CLAIM: &'static str = outbox::outbox_claim!("FOR UPDATE SKIP LOCKED");
    /// Sent when the transaction commits, to every session listening on the channel.
    const TELL_WEB_LOG_APPEND: Option<&'static str> = Some("SELECT pg_notify('foyer_webchat_log', $1)");
    const REMINDER_SENT: &'static str = "UPDATE lifecycle
        SET reminders_sent = (COALESCE(reminders_sent, '[]')::jsonb || to_jsonb($1::bigint))::text
        WHERE reservation_id = $2";

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn records_by_id(ids: &[ReservationId]) -> Result<Query<'static, Postgres, PgArguments>, StoreError> {
        const BY_IDS: &str = reservations::records!("WHERE r.reservation_id = ANY($1)");
        Ok(sqlx::query(BY_IDS).bind(ids.iter().map(ReservationId::as_str).collect::<Vec<_>>()))
    }

    async fn record_webhook(
        store: &PostgresStore, receipt: &Receipt<'_>, event: &WebhookEvent, windows: super::Windows,
    ) -> Result<Outcome, StoreError> {
        intake::queue(&store.own, receipt, event, store.outbox.clone(), windows).await
    }

    /// Instances claim at once: each skips the rows another is taking.
    async fn claim_due(store: &PostgresStore, due: Due<'_>) -> Result<Vec<Claim>, StoreError> {
        let claimed = sqlx::query(
            "UPDATE lifecycle SET locked_until = $1, locked_by = $4
             WHERE reservation_id IN (
                SELECT reservation_id FROM lifecycle
                WHERE next_due_at <= $2 AND (locked_until IS NULL OR locked_until <= $2)
                ORDER BY next_due_at LIMIT $3
                FOR UPDATE SKIP LOCKED)
             RETURNING reservation_id, facts_version, next_due_at, attempts",
        )
        .bind(due.until)
        .bind(due.now)
        .bind(due.limit)
        .bind(due.owner)
        .fetch_all(&store.pool)
        .await?;
        claimed.iter().map(|row| leases::due_claim(row, due.owner)).collect()
    }

    fn web_log_appends(store: &PostgresStore) -> Option<mpsc::Receiver<LogAppended>> {
        let (appends, heard) = mpsc::channel(APPENDS_WAITING);
        tokio::spawn(listen_for_web_log_appends(store.pool.connect_options(), appends));
        Some(heard)
    }

    async fn reservation(store: &PostgresStore, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError> {
        store.reservation_from_pool(id).await
    }
}

impl PostgresStore {
    pub async fn open(config: &crate::config::DatabaseConfig, outbox: Outbound) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.unwrap_or(16))
            .acquire_timeout(config.acquire_timeout)
            .connect(config.url.expose())
            .await
            .map_err(|e| StoreError::Open(format!("PostgreSQL: {e}")))?;
        schema::migrate(&pool).await?;
        let (writer, jobs) = mpsc::channel(INTAKE_QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(pool.clone(), jobs.clone()));
        }
        Ok(Self { pool, own: writer, outbox })
    }
}

/// Group-commit writers: each takes the webhooks waiting, records them in one
/// transaction and commits once, while the others gather the next batches. A commit is
/// a round trip and a WAL flush on the server, so batches are what PostgreSQL's CPU per
/// webhook comes down with (BENCHMARKS.md); several writers keep its connections busy.
const WRITERS: usize = 4;

/// One writer: takes a batch from the shared queue and commits it, until every sender is gone.
async fn write_batches(pool: PgPool, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut batch = Vec::with_capacity(INTAKE_BATCH);
    loop {
        if jobs.lock().await.recv_many(&mut batch, INTAKE_BATCH).await == 0 {
            return;
        }
        let outcomes = commit_batch(&pool, &batch).await;
        intake::answer(&mut batch, outcomes);
    }
}

/// [`intake::record_batch`] in one transaction; redone with a savepoint per webhook if
/// one failed (PostgreSQL then refuses anything more in that transaction).
async fn commit_batch(pool: &PgPool, batch: &[Job]) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
    match commit(pool, batch, false).await? {
        Some(outcomes) => Ok(outcomes),
        None => Ok(commit(pool, batch, true).await?.unwrap_or_default()),
    }
}

async fn commit(
    pool: &PgPool, batch: &[Job], isolated: bool,
) -> Result<Option<Vec<Result<Outcome, StoreError>>>, StoreError> {
    let mut tx = pool.begin().await?;
    let outcomes = intake::record_batch(&mut intake::Sqlx::<Postgres>(&mut tx), batch, isolated).await?;
    match outcomes {
        Some(outcomes) => {
            let started = std::time::Instant::now();
            tx.commit().await?;
            intake::committed(started);
            Ok(Some(outcomes))
        }
        None => {
            tx.rollback().await?;
            Ok(None)
        }
    }
}

/// The channel [`Dialect::TELL_WEB_LOG_APPEND`] notifies.
const WEB_LOG_CHANNEL: &str = "foyer_webchat_log";
/// Appends heard and not yet taken by the hub; more are dropped, as a late reader's
/// look finds them anyway.
const APPENDS_WAITING: usize = 1024;
/// The waits before connecting again after a failure, doubling from the first.
const LISTEN_RETRY_MIN: std::time::Duration = std::time::Duration::from_secs(1);
const LISTEN_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Listens for appends to the room log on a connection of its own (its own pool of
/// one, so that it takes none of the store's), until `appends`' receiver is dropped.
/// A lost connection is made again, and the loss told as [`LogAppended::Untold`] once
/// it listens again.
async fn listen_for_web_log_appends(options: Arc<PgConnectOptions>, appends: mpsc::Sender<LogAppended>) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with((*options).clone());
    let mut listener: Option<PgListener> = None;
    let mut wait = LISTEN_RETRY_MIN;
    // Whether appends may have gone untold since the connection was lost.
    let mut lost = false;
    loop {
        let heard = async {
            if listener.is_none() {
                let mut made = PgListener::connect_with(&pool).await?;
                made.listen(WEB_LOG_CHANNEL).await?;
                listener = Some(made);
                if std::mem::take(&mut lost) {
                    let _ = appends.try_send(LogAppended::Untold);
                }
            }
            match listener.as_mut() {
                Some(listening) => listening.try_recv().await,
                None => Ok(None),
            }
        };
        let heard = tokio::select! {
            heard = heard => heard,
            () = appends.closed() => break,
        };
        let told = match heard {
            Ok(Some(notice)) => match ReservationId::parse(notice.payload()) {
                Ok(reservation) => LogAppended::To(reservation),
                // Not Foyer's notice (anyone connected may notify on the channel).
                Err(_) => continue,
            },
            // Lost, and made again by the listener already.
            Ok(None) => LogAppended::Untold,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "cannot listen for the web chat's appends; trying again");
                (listener, lost) = (None, true);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = appends.closed() => break,
                }
                wait = (wait * 2).min(LISTEN_RETRY_MAX);
                continue;
            }
        };
        wait = LISTEN_RETRY_MIN;
        // Full: the hub is behind, and its feeds will look on their own.
        let _ = appends.try_send(told);
    }
    drop(listener);
    pool.close().await;
}
