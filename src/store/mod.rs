//! The store: every fact Foyer keeps, behind one trait with one implementation per
//! database. Each write is one transaction; a `2xx` is only sent after it commits.

mod sqlite;

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone as _, Utc};
use ruma::{OwnedRoomId, OwnedUserId};

pub use self::sqlite::SqliteStore;
use crate::{
    config::{DatabaseConfig, DatabaseKind},
    lifecycle::{Audience, Membership, RoomState},
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

/// Members of the room by membership, from the homeserver's events (the bot excluded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberCounts {
    pub invited: u64,
    pub joined: u64,
}

/// A reservation with everything recorded about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRecord {
    pub reservation: Reservation,
    pub signals: Signals,
    pub tickets: TicketCounts,
    /// The room, once created (or adopted).
    pub room_id: Option<String>,
    pub members: MemberCounts,
    pub archived: bool,
}

/// A reservation a worker holds a lease on. `facts_version` tells, at release, whether
/// new facts arrived while it worked (then it is due again at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub reservation_id: ReservationId,
    pub facts_version: i64,
}

/// What the lifecycle needs to plan one reservation, besides its record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleState {
    pub room: RoomState,
    pub audience: Audience,
    /// Consecutive failed attempts, for backoff.
    pub attempts: u32,
}

/// The recorded outcome of one step on the homeserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepRecord {
    RoomCreated {
        room_id: OwnedRoomId,
        hosts: BTreeSet<OwnedUserId>,
        topic: String,
    },
    TopicSet(String),
    StreamLinkSet(Option<String>),
    LiveNoticeSent(DateTime<Utc>),
    EndedNoticeSent(DateTime<Utc>),
    ReminderSent(u64),
    ClosingWarningSent,
    /// The channel's space exists (created or adopted).
    SpaceEnsured {
        channel_id: String,
        space: OwnedRoomId,
        name: String,
    },
    SpaceLinked(Option<OwnedRoomId>),
    HostsApplied(BTreeSet<OwnedUserId>),
    /// Foyer's own membership change (a kick, an invite after a knock), recorded before
    /// the homeserver's event about it arrives.
    Member {
        user_id: OwnedUserId,
        membership: Membership,
        invited_by: Option<OwnedUserId>,
    },
    /// Invited, or refused for good (`failure`): either way never tried again.
    Invited {
        user_id: OwnedUserId,
        failure: Option<String>,
    },
    OpeningNoticeSent,
    ClosingNoticeSent,
    Archived,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Records one webhook in one transaction: its receipt (for deduplication) and its
    /// effect. Returns only after the commit.
    async fn record_webhook(&self, receipt: &Receipt<'_>, event: &WebhookEvent) -> Result<Outcome, StoreError>;

    async fn reservation(&self, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError>;

    /// Reservations ordered by id, after `after`, at most `limit`.
    async fn reservations_after(
        &self,
        after: Option<&ReservationId>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError>;

    /// Records membership events for rooms Foyer manages, once per event id, and makes
    /// their reservations due. Other rooms' events are ignored. Returns how many applied.
    async fn record_memberships(&self, facts: &[MembershipFact], now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Forgets homeserver event ids seen before `before` (retries come within minutes).
    async fn prune_seen_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Leases one reservation now if nobody holds it (for work on demand).
    async fn claim(
        &self,
        id: &ReservationId,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<Claim>, StoreError>;

    /// Leases up to `limit` reservations that are due at `now` and not leased.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError>;

    /// The earliest due time of any reservation, leased or not.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    async fn lifecycle_state(&self, id: &ReservationId) -> Result<LifecycleState, StoreError>;

    /// Records one step's outcome at once, so a crash right after it repeats nothing.
    async fn record_step(&self, id: &ReservationId, step: &StepRecord, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Ends a lease: due again at `next_due_at` (or at once if facts changed meanwhile).
    /// `error` counts a failed attempt; `None` resets the count.
    async fn release(
        &self,
        claim: &Claim,
        next_due_at: Option<DateTime<Utc>>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// A membership event pushed by the homeserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipFact {
    pub event_id: String,
    pub room_id: String,
    pub user_id: OwnedUserId,
    pub membership: Membership,
    pub sender: String,
}

/// Opens the store named by `database.url`, applying migrations.
pub async fn open(config: &DatabaseConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config.kind {
        DatabaseKind::Sqlite => Ok(Arc::new(SqliteStore::open(config.url.expose()).await?)),
        DatabaseKind::Postgres => {
            Err(StoreError::Open("PostgreSQL is not supported yet; use a sqlite:// database.url".into()))
        }
    }
}

pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms).single().ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}
