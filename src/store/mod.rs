//! The store: every fact Foyer keeps, behind one trait with one implementation per
//! database. Each write is one transaction; a `2xx` is only sent after it commits.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone as _, Utc};

pub use self::sqlite::SqliteStore;
use crate::{
    config::{DatabaseConfig, DatabaseKind},
    reservation::{Reservation, ReservationId, WebhookEvent},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot take the write now (locked, disk full, I/O error): the
    /// sender should retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database cannot be opened or migrated at start-up.
    #[error("cannot open the database: {0}")]
    Open(String),
    /// Stored data that does not parse back: a bug or a hand edit.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// How a webhook was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// This `webhook-id` was already recorded; nothing changed.
    Duplicate,
    /// The reservation's stored revision is newer; nothing changed but the receipt.
    Stale,
}

/// The identity of one delivery, from the `webhook-id` header.
#[derive(Debug, Clone)]
pub struct Receipt<'a> {
    pub webhook_id: &'a str,
    pub received_at: DateTime<Utc>,
}

/// Facts about a reservation that are not part of its description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signals {
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub stream_started_at: Option<DateTime<Utc>>,
    pub stream_ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TicketCounts {
    pub active: u64,
    pub revoked: u64,
}

/// A reservation with everything recorded about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRecord {
    pub reservation: Reservation,
    pub signals: Signals,
    pub tickets: TicketCounts,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Records one webhook in one transaction: its receipt (for deduplication) and its
    /// effect. Returns only after the commit.
    async fn record_webhook(
        &self,
        receipt: &Receipt<'_>,
        event: &WebhookEvent,
    ) -> Result<Outcome, StoreError>;

    async fn reservation(
        &self,
        id: &ReservationId,
    ) -> Result<Option<ReservationRecord>, StoreError>;

    /// Reservations ordered by id, after `after`, at most `limit`.
    async fn reservations_after(
        &self,
        after: Option<&ReservationId>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError>;
}

/// Opens the store named by `database.url`, applying migrations.
pub async fn open(config: &DatabaseConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config.kind {
        DatabaseKind::Sqlite => Ok(Arc::new(SqliteStore::open(config.url.expose()).await?)),
        DatabaseKind::Postgres => Err(StoreError::Open(
            "PostgreSQL is not supported yet; use a sqlite:// database.url".into(),
        )),
    }
}

pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}
