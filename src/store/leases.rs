//! Leases in the store: a worker claims a due reservation, renews its lease while it
//! works, and releases it with its next due time ([`LeaseStore`]). The dialects claim
//! due work their own way (`Dialect::claim_due`), and read it back with [`due_claim`].

use macro_rules_attribute::apply;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Claim, StoreError, attempts,
    dialect::{Due, SqlStore, on_both_databases},
    from_millis,
    outbox::write_event,
    rows::Read,
    rows::corrupt,
    to_millis,
};
use crate::model::ReservationId;
use crate::outbox::OutboundEvent;

/// Leases one reservation nobody holds: `(until, owner, reservation_id, now)`.
const CLAIM: &str = "UPDATE lifecycle SET locked_until = $1, locked_by = $2
    WHERE reservation_id = $3 AND (locked_until IS NULL OR locked_until <= $4)
    RETURNING facts_version, attempts";
/// `(until, reservation_id, owner)`.
const RENEW: &str = "UPDATE lifecycle SET locked_until = $1 WHERE reservation_id = $2 AND locked_by = $3";
/// A leased row is due again when its lease runs out, not before.
const NEXT_DUE: &str = "SELECT MIN(CASE WHEN locked_until > next_due_at THEN locked_until ELSE next_due_at END)
    AS due FROM lifecycle WHERE next_due_at IS NOT NULL";
/// Ends a lease: due at `$2`, or at once (`$3`) when the facts changed meanwhile; an
/// error (`$4`) counts an attempt: `(facts_version, next_due_at, now, error, reservation_id, owner)`.
const RELEASE: &str = "UPDATE lifecycle SET locked_until = NULL,
        next_due_at = CASE WHEN facts_version = $1 THEN $2 ELSE $3 END,
        attempts = CASE WHEN CAST($4 AS TEXT) IS NULL THEN 0 ELSE attempts + 1 END,
        last_error = $4
    WHERE reservation_id = $5 AND locked_by = $6";
/// Whether an instance holds any lease that has not run out: `(owner, now)`.
const HOLDS_LIVE_LEASE: &str = "SELECT 1 FROM lifecycle WHERE locked_by = $1 AND locked_until > $2 LIMIT 1";

/// Leases on reservations: the workers claim due work, renew and release it.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Leases one reservation now if nobody holds it (for work on demand).
    async fn claim(
        &self, id: &ReservationId, now: DateTime<Utc>, lease: std::time::Duration, owner: &str,
    ) -> Result<Option<Claim>, StoreError>;

    /// Leases up to `limit` reservations that are due at `now` and not leased.
    async fn claim_due(
        &self, now: DateTime<Utc>, lease: std::time::Duration, limit: u32, owner: &str,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Extends a lease this instance still holds; `false` when it lost it.
    async fn renew(&self, claim: &Claim, until: DateTime<Utc>) -> Result<bool, StoreError>;

    /// The earliest due time of any reservation, leased or not.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Whether `owner` holds a lease that has not run out at `now` (it is alive and working).
    async fn holds_live_lease(&self, owner: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Ends a lease: due again at `next_due_at` (or at once if facts changed meanwhile).
    /// `error` counts a failed attempt; `None` resets the count.
    async fn release(
        &self, claim: &Claim, next_due_at: Option<DateTime<Utc>>, error: Option<&str>, now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.release_with_event(claim, next_due_at, error, None, now).await
    }

    /// [`Self::release`], and `event` into the outbox in the same transaction, unless
    /// the lease was lost (its new holder tells what it finds).
    async fn release_with_event(
        &self, claim: &Claim, next_due_at: Option<DateTime<Utc>>, error: Option<&str>, event: Option<&OutboundEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl LeaseStore for SqlStore<D> {
    async fn claim(
        &self, id: &ReservationId, now: DateTime<Utc>, lease: Duration, owner: &str,
    ) -> Result<Option<Claim>, StoreError> {
        let now = to_millis(now);
        let claimed = sqlx::query(CLAIM)
            .bind(now + lease.as_millis() as i64)
            .bind(owner)
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = claimed else { return Ok(None) };
        Ok(Some(Claim {
            reservation_id: id.clone(),
            facts_version: row.int("facts_version")?,
            owner: owner.to_owned(),
            due_at: None,
            attempts: super::attempts(row.int("attempts")?),
        }))
    }

    async fn claim_due(
        &self, now: DateTime<Utc>, lease: Duration, limit: u32, owner: &str,
    ) -> Result<Vec<Claim>, StoreError> {
        let now = to_millis(now);
        let due = Due { now, until: now + lease.as_millis() as i64, limit: i64::from(limit), owner };
        D::claim_due(self, due).await
    }

    async fn renew(&self, claim: &Claim, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(RENEW)
            .bind(to_millis(until))
            .bind(claim.reservation_id.as_str())
            .bind(claim.owner.as_str())
            .execute(&self.pool)
            .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query(NEXT_DUE).fetch_one(&self.pool).await?.opt_time("due")
    }

    async fn holds_live_lease(&self, owner: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.exists(HOLDS_LIVE_LEASE, owner, Some(now)).await
    }

    async fn release_with_event(
        &self, claim: &Claim, next_due_at: Option<DateTime<Utc>>, error: Option<&str>, event: Option<&OutboundEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = to_millis(now);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let released = sqlx::query(RELEASE)
            .bind(claim.facts_version)
            .bind(next_due_at.map(to_millis))
            .bind(now)
            .bind(error)
            .bind(claim.reservation_id.as_str())
            .bind(claim.owner.as_str())
            .execute(&mut *tx)
            .await?;
        // A lease lost to another instance: its holder tells of what it finds.
        if let Some(event) = event
            && D::rows_affected(&released) > 0
        {
            write_event::<D>(&mut *tx, &self.outbox, event, now).await?;
        }
        tx.commit().await?;
        self.outbox.wake_sender(event.is_some());
        Ok(())
    }
}

/// A claim of due work from a row of `(reservation_id, facts_version, next_due_at, attempts)`.
pub(super) fn due_claim(row: &impl Read, owner: &str) -> Result<Claim, StoreError> {
    let id = row.text("reservation_id")?;
    Ok(Claim {
        reservation_id: ReservationId::parse(&id).map_err(|e| corrupt(&format!("lifecycle {id}"), e))?,
        facts_version: row.int("facts_version")?,
        owner: owner.to_owned(),
        due_at: Some(from_millis(row.int("next_due_at")?)?),
        attempts: attempts(row.int("attempts")?),
    })
}
