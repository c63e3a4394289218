//! The public archive's own facts ([`ArchiveStore`], docs/replay.md "Public archive"):
//! its takedown, and the members who asked to be anonymous in it. Whether a reservation
//! is public is its description's (`chat.archive`, in `reservations`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::{OwnedUserId, UserId};

use super::{
    StoreError,
    dialect::{SqlStore, on_both_databases},
    rows::{Read, corrupt},
    to_millis,
};
use crate::model::ReservationId;

/// `(reservation_id, at)`; the first takedown counts.
const TAKE_DOWN: &str = "INSERT INTO archive_takedowns (reservation_id, taken_down_at) VALUES ($1, $2)
    ON CONFLICT (reservation_id) DO NOTHING";
const TAKEN_DOWN: &str = "SELECT 1 FROM archive_takedowns WHERE reservation_id = $1";
/// `(reservation_id, user_id, at)`; the first time counts.
const ANONYMOUS: &str = "INSERT INTO archive_anonymous (reservation_id, user_id, at) VALUES ($1, $2, $3)
    ON CONFLICT (reservation_id, user_id) DO NOTHING";
const ANONYMOUS_MEMBERS: &str = "SELECT user_id FROM archive_anonymous WHERE reservation_id = $1";

/// The public archive's takedowns and anonymous members.
#[async_trait]
pub trait ArchiveStore: Send + Sync {
    /// Takes the reservation's public archive down, for good.
    async fn take_down_archive(&self, id: &ReservationId, at: DateTime<Utc>) -> Result<(), StoreError>;

    async fn archive_taken_down(&self, id: &ReservationId) -> Result<bool, StoreError>;

    /// `user` asked to appear as "a fan" in the reservation's public archive.
    async fn make_anonymous(&self, id: &ReservationId, user: &UserId, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// The members who asked to be anonymous in the reservation's public archive.
    async fn anonymous_members(&self, id: &ReservationId) -> Result<Vec<OwnedUserId>, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl ArchiveStore for SqlStore<D> {
    async fn take_down_archive(&self, id: &ReservationId, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(TAKE_DOWN).bind(id.as_str()).bind(to_millis(at)).execute(&self.pool).await?;
        Ok(())
    }

    async fn archive_taken_down(&self, id: &ReservationId) -> Result<bool, StoreError> {
        Ok(sqlx::query(TAKEN_DOWN).bind(id.as_str()).fetch_optional(&self.pool).await?.is_some())
    }

    async fn make_anonymous(&self, id: &ReservationId, user: &UserId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let query = sqlx::query(ANONYMOUS).bind(id.as_str()).bind(user.as_str()).bind(to_millis(at));
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn anonymous_members(&self, id: &ReservationId) -> Result<Vec<OwnedUserId>, StoreError> {
        let rows = sqlx::query(ANONYMOUS_MEMBERS).bind(id.as_str()).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| OwnedUserId::try_from(row.text("user_id")?).map_err(|e| corrupt("archive_anonymous user_id", e)))
            .collect()
    }
}
