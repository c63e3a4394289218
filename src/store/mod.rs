//! The store: every fact Foyer keeps, behind one trait with one implementation per
//! database. Each write is one transaction; a `2xx` is only sent after it commits.

mod admin;
mod archive;
mod calendar;
mod dialect;
mod enforcement;
mod followers;
mod intake;
mod leases;
pub mod migrate;
mod moderation;
mod outbox;
mod postgres;
mod posts;
mod reservations;
mod room;
mod rows;
mod schema;
mod series;
mod sql;
mod sqlite;
mod tickets;
mod transcript;
mod webchat;

use std::sync::Arc;

use tokio::sync::Notify;

use chrono::{DateTime, TimeZone as _, Utc};
use ruma::OwnedUserId;

pub use self::{
    admin::{AdminStore, DirectChatCounts},
    archive::ArchiveStore,
    calendar::{CalendarStore, ChannelCalendar},
    enforcement::{Breach, BreachOutcome, EnforcementStore, PendingRedaction, TimeoutOrder},
    followers::{ChannelRooms, FollowerChange, FollowerStore, PendingFollower},
    leases::LeaseStore,
    moderation::{MAX_RECORD_PAGE, ModerationStore, RecordedEntry},
    outbox::{OutboxRow, OutboxStore},
    postgres::PostgresStore,
    posts::PostStore,
    reservations::{Counts, ReservationStore},
    room::{LifecycleStore, Planning},
    schema::{SchemaError, SchemaState, inspect as inspect_schema, largest_show_to_come, latest_version},
    series::SeriesStore,
    sqlite::SqliteStore,
    tickets::{LookupDue, TicketStore},
    transcript::TranscriptStore,
    webchat::{LogAppended, MAX_WEB_LOG_PAGE, WebchatStore},
};
use crate::model::{
    CreateBegan, LifecycleState, MemberCounts, ReservationRecord, Signals, StepRecord, TicketCounts, TicketRow,
};
use crate::{
    config::{DatabaseConfig, DatabaseKind},
    events::HomeserverEvent,
    model::{Email, MAX_SPAN_SECONDS, Membership, Reservation, ReservationId, TicketId},
    outbox::send::Outbox,
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
    /// The database's schema is not one this binary runs on (a newer Foyer's, or not
    /// Foyer's): nothing was changed. `serve` exits 1 on it.
    #[error("cannot open the database: {0}")]
    Schema(#[from] SchemaError),
    /// Stored data that does not parse back: a bug or a hand edit.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The event breaks a rule only the stored facts can tell (a stream key in use):
    /// nothing was written, and the sender gets a 400 naming `path`.
    #[error("{path}: {message}")]
    Refused { path: &'static str, message: String },
}

/// A value that does not read back is corrupt (retrying reads it the same); anything
/// else the database says is taken as passing.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. } => Self::Corrupt(e.to_string()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

/// The same for the SQLite webhook writer's own connection.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::InvalidColumnName(_)
            | rusqlite::Error::InvalidColumnIndex(_)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => Self::Corrupt(e.to_string()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

/// How a webhook was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// This `webhook-id` was already recorded; nothing changed.
    Duplicate,
    /// The reservation's stored revision is newer; nothing changed but the receipt.
    Stale,
    /// A `ticket.granted` for a reservation archived or cancelled: nothing was stored.
    Closed,
}

/// The identity of one delivery, from the `webhook-id` header.
#[derive(Debug, Clone)]
pub struct Receipt<'a> {
    pub webhook_id: &'a str,
    pub received_at: DateTime<Utc>,
}

/// A reservation a worker holds a lease on. `facts_version` tells, at release, whether
/// new facts arrived while it worked (then it is due again at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub reservation_id: ReservationId,
    pub facts_version: i64,
    /// The instance holding the lease; only it may renew or release it.
    pub owner: String,
    /// When the reservation fell due, for a claim of due work (not for one on demand).
    pub due_at: Option<DateTime<Utc>>,
    /// Consecutive failed attempts before this one, for the backoff should it fail too.
    pub attempts: u32,
}

/// An `attempts` column as the count it is.
pub(crate) fn attempts(stored: i64) -> u32 {
    stored.clamp(0, i64::from(u32::MAX)) as u32
}

/// `Store` with its roles listed once, for the trait and for the impl that gives it to
/// whatever has them all.
macro_rules! store_of_roles {
    ($(#[$attr:meta])* $($role:path),+) => {
        $(#[$attr])*
        pub trait Store: $($role +)+ Send + Sync {}

        impl<T: $($role +)+ Send + Sync> Store for T {}
    };
}

store_of_roles! {
    /// The store: every role below, on one database, each declared and implemented in its
    /// aggregate's file. The store is also the outbox's ([`Outbox`]): its methods are
    /// declared where the sender is, so that the outbox needs nothing of the store's.
    Outbox<Error = StoreError>,
    ReservationStore,
    TicketStore,
    LeaseStore,
    LifecycleStore,
    AdminStore,
    TranscriptStore,
    WebchatStore,
    ModerationStore,
    EnforcementStore,
    PostStore,
    ArchiveStore,
    CalendarStore,
    FollowerStore,
    SeriesStore,
    OutboxStore
}

/// An event kept in the admin inbox. `event` is an error when the stored text does not
/// read back (a hand edit), so that one row cannot stop the others.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedAdminEvent {
    pub event_id: String,
    pub received_at: DateTime<Utc>,
    pub event: Result<HomeserverEvent, String>,
}

/// What an admin can ask of a reservation from Matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Open the room now, whatever `opens_at` says.
    OpenNow,
    /// Archive the room now.
    ArchiveNow,
    /// Try the failing step again now.
    Retry,
}

/// A ticket's claim under the current key, from its reservation and ticket ids, its
/// holder generation and its unbound holder's address (`renew_claim_hashes`).
pub type ClaimHasher = dyn Fn(&ReservationId, &TicketId, i64, Option<&Email>) -> RenewedClaim + Send + Sync;

/// What [`ClaimHasher`] makes: the hash of the ticket's claim code and its holder's
/// digest, each `None` where it cannot be made again (a moved holder's code, or a bound
/// holder's digest, once the address is erased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewedClaim {
    pub hash: Option<String>,
    pub digest: Option<String>,
}

/// A membership event pushed by the homeserver.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipFact {
    pub event_id: String,
    pub room_id: String,
    pub user_id: OwnedUserId,
    pub membership: Membership,
    pub sender: String,
    /// The member's display name from the event (`displayname`), bounded and without
    /// control characters; `None` when it carries none.
    pub display_name: Option<String>,
    /// A knock whose reason held a well-formed claim code: the hash of that code. The
    /// ticket is bound in the same transaction as the knock, so the knock is answered
    /// as a holder's.
    pub knock_claim: Option<String>,
    /// A ban's or a kick's reason, as the moderator gave it (never a knock's, which may
    /// hold a claim code).
    pub reason: Option<String>,
}

/// Whether facts write their outbound events to the outbox (docs/hearing-back.md). Only with
/// `platform.webhook_url`: an outbox nobody sends from would only grow.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Written, and the sender woken by the commit that wrote them (`Notify`, shared
    /// with the sender by `startup.rs`), so that it sends them now rather than at its
    /// next look, a second later.
    Write(Arc<Notify>),
    Skip,
}

impl Outbound {
    /// Written when the platform is configured, waking `sender`.
    pub fn when(platform_configured: bool, sender: &Arc<Notify>) -> Self {
        if platform_configured { Self::Write(sender.clone()) } else { Self::Skip }
    }

    /// Written, waking a `Notify` of its own that nobody waits on (tests, tools).
    pub fn write() -> Self {
        Self::Write(Arc::default())
    }

    pub(crate) fn writes(&self) -> bool {
        matches!(self, Self::Write(_))
    }

    /// After a commit that may have written an event (`wrote`): the sender sends it now.
    pub(crate) fn wake_sender(&self, wrote: bool) {
        if let (true, Self::Write(sender)) = (wrote, self) {
            sender.notify_one();
        }
    }
}

/// `rooms.open_before` and `rooms.close_after` in seconds: the scheduled window
/// `[opens_at, archives_at)` of a reservation without its own `chat.*`. Two active
/// reservations whose windows overlap never share a stream key (docs/series.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub open_before_seconds: i64,
    pub close_after_seconds: i64,
}

impl Windows {
    /// The widest a config allows (7 days each way): without the config, the rule is
    /// kept strictly.
    pub const WIDEST: Self = Self { open_before_seconds: MAX_SPAN_SECONDS, close_after_seconds: MAX_SPAN_SECONDS };

    pub fn of_config(rooms: &crate::config::RoomsConfig) -> Self {
        let seconds = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Self { open_before_seconds: seconds(rooms.open_before), close_after_seconds: seconds(rooms.close_after) }
    }

    /// `r`'s scheduled window, its own `chat.*` before these.
    pub fn of(&self, r: &Reservation) -> (DateTime<Utc>, DateTime<Utc>) {
        let open_before = r.open_before_seconds.map_or(self.open_before_seconds, i64::from);
        let close_after = r.close_after_seconds.map_or(self.close_after_seconds, i64::from);
        (r.starts_at - chrono::TimeDelta::seconds(open_before), r.ends_at + chrono::TimeDelta::seconds(close_after))
    }
}

/// Opens the store named by `database.url`, applying migrations.
pub async fn open(config: &DatabaseConfig, outbox: Outbound) -> Result<Arc<dyn Store>, StoreError> {
    match config.kind {
        DatabaseKind::Sqlite => Ok(Arc::new(SqliteStore::open(config, outbox).await?)),
        DatabaseKind::Postgres => Ok(Arc::new(PostgresStore::open(config, outbox).await?)),
    }
}

pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms).single().ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

/// The records that read back, from rows read as (raw reservation id, record). A row that
/// does not (a hand edit, a bug) is left out with one error line naming its reservation
/// (nothing else: the row may hold anything) and counted in
/// `foyer_store_unreadable_rows_total`, so that it cannot fail every list, page and
/// count it is part of. The counter moves by zero too, so it shows from the first read.
pub(crate) fn readable_records(
    rows: impl IntoIterator<Item = (String, Result<ReservationRecord, StoreError>)>,
) -> Vec<ReservationRecord> {
    let mut unreadable = 0;
    let records = rows
        .into_iter()
        .filter_map(|(id, record)| {
            if record.is_err() {
                unreadable += 1;
                tracing::error!(
                    reservation_id = id.as_str(),
                    "a stored reservation does not read back: left out of lists and counts until it is repaired"
                );
            }
            record.ok()
        })
        .collect();
    metrics::counter!("foyer_store_unreadable_rows_total").increment(unreadable);
    records
}
