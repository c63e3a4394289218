//! The outbox in the store: its rows ([`OutboxStore`]) and the sender's side
//! ([`Outbox`], declared with the sender). Events are written into it in the
//! transaction of the fact they tell of ([`write_event`], over `intake::write_event`).

use macro_rules_attribute::apply;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Outbound, StoreError,
    dialect::{SqlStore, on_both_databases},
    intake,
    rows::{Read, parsed},
    sql, to_millis,
};
use crate::model::ReservationId;
use crate::outbox::{
    OutboundEvent,
    send::{Outbox, OutboxClaim, OutboxResult, OutboxStatus},
};

const OUTBOX_EVENTS: &str = "SELECT reservation_id, type, event_id, payload FROM outbox ORDER BY seq";
// The outbox's sender.

/// The name of the flag (in `foyer_settings`) a `410 Gone` raises: `1` while every
/// delivery waits for `!foyer outbox resume`.
const OUTBOX_PAUSED: &str = "outbox_paused";
/// Leases the oldest undelivered row of each reservation that is due and not leased,
/// unless delivery is paused: `(owner, until, now, limit)`. A row waits while an earlier
/// one of its reservation is pending or paused (order per reservation); dropped and
/// failed rows no longer count. `$lock` is PostgreSQL's `FOR UPDATE SKIP LOCKED`, so
/// that instances claiming at once each skip what another is taking; the outer
/// conditions are checked again on the row as it is when the lock is taken.
macro_rules! outbox_claim {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET locked_by = $1, locked_until = $2
            WHERE seq IN (
                SELECT o.seq FROM outbox o
                WHERE o.state = 'pending' AND o.next_attempt_at <= $3
                    AND (o.locked_until IS NULL OR o.locked_until <= $3)
                    AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.reservation_id = o.reservation_id
                        AND e.seq < o.seq AND e.state IN ('pending', 'paused'))
                    AND NOT EXISTS (SELECT 1 FROM foyer_settings s
                        WHERE s.name = 'outbox_paused' AND s.value = '1')
                ORDER BY o.seq LIMIT $4 ",
            $lock,
            ")
            AND state = 'pending' AND (locked_until IS NULL OR locked_until <= $3)
            RETURNING seq, event_id, reservation_id, type, payload, attempts"
        )
    };
}
pub(super) use outbox_claim;
/// Ends a lease with the attempt's outcome, if this owner still holds it:
/// `(state, next_attempt_at, error, finished_at, seq, owner)`.
const OUTBOX_FINISH: &str = "UPDATE outbox SET state = $1, attempts = attempts + 1,
        next_attempt_at = $2, last_error = $3, finished_at = $4, locked_by = NULL, locked_until = NULL
    WHERE seq = $5 AND locked_by = $6 AND state = 'pending'";
/// After a resume, the rows a `410` stopped are due again: `(now)`.
const OUTBOX_UNPAUSE: &str = "UPDATE outbox SET state = 'pending', next_attempt_at = $1 WHERE state = 'paused'";
/// The undelivered rows: how many and since when.
const OUTBOX_DEPTH: &str =
    "SELECT COUNT(*) AS depth, MIN(created_at) AS oldest FROM outbox WHERE state IN ('pending', 'paused')";

/// One outbox row as written ([`OutboxStore::outbox_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub reservation_id: ReservationId,
    /// The event's type (`room.opened`…).
    pub kind: String,
    /// The `webhook-id`, the same on every attempt.
    pub webhook_id: String,
    /// The body, byte for byte as it is sent.
    pub payload: String,
}

/// The outbox as rows (the sender's side is [`Outbox`]).
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Every outbox row, in send order: for tests and, later, the status page.
    async fn outbox_events(&self) -> Result<Vec<OutboxRow>, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl OutboxStore for SqlStore<D> {
    async fn outbox_events(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let found = sqlx::query(OUTBOX_EVENTS).fetch_all(&self.pool).await?;
        found
            .iter()
            .map(|row| {
                Ok(OutboxRow {
                    reservation_id: parsed(row, "reservation_id", ReservationId::parse)?,
                    kind: row.text("type")?,
                    webhook_id: row.text("event_id")?,
                    payload: row.text("payload")?,
                })
            })
            .collect()
    }
}

/// The sender's side of the store ([`Outbox`], declared with the sender).
#[apply(on_both_databases!)]
#[async_trait]
impl Outbox for SqlStore<D> {
    type Error = StoreError;

    async fn claim_outbox(
        &self, now: DateTime<Utc>, lease: Duration, limit: u32, owner: &str,
    ) -> Result<Vec<OutboxClaim>, StoreError> {
        let now = to_millis(now);
        let claimed = sqlx::query(D::OUTBOX_CLAIM)
            .bind(owner)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut claims = claimed
            .iter()
            .map(|row| {
                Ok(OutboxClaim {
                    seq: row.int("seq")?,
                    event_id: row.text("event_id")?,
                    reservation_id: row.text("reservation_id")?,
                    kind: row.text("type")?,
                    payload: row.text("payload")?,
                    attempts: super::attempts(row.int("attempts")?),
                    owner: owner.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING gives no order: oldest first, as claimed.
        claims.sort_by_key(|c| c.seq);
        Ok(claims)
    }

    async fn finish_outbox(
        &self, claim: &OutboxClaim, result: &OutboxResult, now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = to_millis(now);
        let (state, next, error, finished) = match result {
            OutboxResult::Delivered => ("delivered", now, None, Some(now)),
            OutboxResult::Retry { at, error } => ("pending", to_millis(*at), Some(error), None),
            OutboxResult::Failed { error } => ("failed", now, Some(error), Some(now)),
            OutboxResult::Dropped { error } => ("dropped", now, Some(error), Some(now)),
            OutboxResult::Paused { error } => ("paused", now, Some(error), None),
        };
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let done = sqlx::query(OUTBOX_FINISH)
            .bind(state)
            .bind(next)
            .bind(error.map(String::as_str))
            .bind(finished)
            .bind(claim.seq)
            .bind(claim.owner.as_str())
            .execute(&mut *tx)
            .await?;
        let held = D::rows_affected(&done) == 1;
        if held && matches!(result, OutboxResult::Paused { .. }) {
            sqlx::query(sql::SET_SETTING).bind(OUTBOX_PAUSED).bind("1").execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(held)
    }

    async fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let row = sqlx::query(OUTBOX_DEPTH).fetch_one(&self.pool).await?;
        let flag = sqlx::query(sql::SETTING).bind(OUTBOX_PAUSED).fetch_optional(&self.pool).await?;
        Ok(OutboxStatus {
            depth: u64::try_from(row.int("depth")?).unwrap_or(0),
            oldest: row.opt_time("oldest")?,
            paused: flag.map(|row| row.text("value")).transpose()?.as_deref() == Some("1"),
        })
    }

    async fn resume_outbox(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let flag = sqlx::query(sql::SETTING).bind(OUTBOX_PAUSED).fetch_optional(&mut *tx).await?;
        let was_paused = flag.map(|row| row.text("value")).transpose()?.as_deref() == Some("1");
        sqlx::query(sql::SET_SETTING).bind(OUTBOX_PAUSED).bind("0").execute(&mut *tx).await?;
        sqlx::query(OUTBOX_UNPAUSE).bind(to_millis(now)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(was_paused)
    }
}

/// [`intake::write_event`] on a sqlx connection.
#[apply(on_both_databases!)]
pub(super) async fn write_event(
    conn: &mut D::Connection, outbox: &Outbound, event: &OutboundEvent, now: i64,
) -> Result<(), StoreError> {
    intake::write_event(&mut intake::Sqlx::<D>(conn), outbox, event, now).await
}
