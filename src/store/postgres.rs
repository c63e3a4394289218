//! PostgreSQL, for deployments that run several Foyer instances on one database: the
//! same facts and lifecycle state as SQLite. Claims take rows with `FOR UPDATE SKIP
//! LOCKED`, so instances never work on the same reservation at once; a dead instance's
//! leases simply expire.

use async_trait::async_trait;
use sqlx::{
    Postgres,
    postgres::{PgArguments, PgPoolOptions, PgQueryResult},
    query::Query,
};

use super::{
    Claim, Outbound, Outcome, Receipt, StoreError,
    db::{Dialect, Due, SqlStore},
    intake, rows, schema, sql,
};
use crate::config::DatabaseKind;
use crate::model::{ReservationId, WebhookEvent};

pub type PostgresStore = SqlStore<Postgres>;

#[async_trait]
impl Dialect for Postgres {
    type Writer = ();
    const BEGIN_WRITE: &'static str = "BEGIN";
    const KIND: DatabaseKind = DatabaseKind::Postgres;
    const MIGRATIONS_TABLE: &'static str =
        "CREATE TABLE IF NOT EXISTS foyer_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
    /// Several instances may start at once: one migrates, the others wait.
    const BEFORE_MIGRATING: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(7417011)");
    /// Two keys may share a lock (a 32-bit hash of the hash): they then wait, no more.
    const LOCK_STREAM_KEY: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(7417012, hashtext($1))");
    const OUTBOX_CLAIM: &'static str = sql::outbox_claim!("FOR UPDATE SKIP LOCKED");
    const REMINDER_SENT: &'static str = "UPDATE lifecycle
        SET reminders_sent = (COALESCE(reminders_sent, '[]')::jsonb || to_jsonb($1::bigint))::text
        WHERE reservation_id = $2";

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn records_by_id(ids: &[ReservationId]) -> Result<Query<'static, Postgres, PgArguments>, StoreError> {
        const BY_IDS: &str = sql::records!("WHERE r.reservation_id = ANY($1)");
        Ok(sqlx::query(BY_IDS).bind(ids.iter().map(ReservationId::as_str).collect::<Vec<_>>()))
    }

    async fn record_webhook(
        store: &PostgresStore,
        receipt: &Receipt<'_>,
        event: &WebhookEvent,
    ) -> Result<Outcome, StoreError> {
        let mut tx = store.pool.begin().await?;
        let mut w = intake::Sqlx::<Postgres>(&mut tx);
        let outcome = intake::record(&mut w, receipt.webhook_id, receipt.received_at, event, store.outbox).await?;
        if outcome == Outcome::Accepted {
            let (id, tickets_only) = (event.reservation_id().as_str(), intake::tickets_only(event));
            intake::facts_arrived(&mut w, id, receipt.received_at, tickets_only).await?;
        }
        tx.commit().await?;
        Ok(outcome)
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
        claimed.iter().map(|row| rows::due_claim(row, due.owner)).collect()
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
        Ok(Self { pool, writer: (), outbox })
    }
}
