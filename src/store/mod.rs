//! The store: every fact Foyer keeps, behind one trait with one implementation per
//! database. Each write is one transaction; a `2xx` is only sent after it commits.

mod db;
mod dialect;
mod intake;
pub mod migrate;
mod postgres;
mod room;
mod rows;
mod schema;
mod sql;
mod sqlite;
mod transcript;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone as _, Utc};
use ruma::{OwnedUserId, UserId};

pub use self::{
    postgres::PostgresStore,
    schema::{SchemaError, SchemaState, inspect as inspect_schema, latest_version},
    sqlite::SqliteStore,
};
use crate::model::{
    CreateBegan, LifecycleState, MemberCounts, ReservationRecord, Signals, StepRecord, TicketCounts, TicketRow,
    Transcript, TranscriptEntry, TranscriptLine,
};
use crate::{
    config::{DatabaseConfig, DatabaseKind},
    events::HomeserverEvent,
    model::{
        BoundHow, ClaimOutcome, ClaimStatus, Email, Membership, ReservationId, SessionId, StreamKeyHash, WebhookEvent,
    },
    outbox::{OutboundEvent, send::Outbox},
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

#[async_trait]
/// The store is also the outbox's ([`Outbox`]): its methods are declared where the
/// sender is, so that the outbox needs nothing of the store's.
pub trait Store: Outbox<Error = StoreError> + Send + Sync {
    /// Records one webhook in one transaction: its receipt (for deduplication) and its
    /// effect. Returns only after the commit.
    async fn record_webhook(&self, receipt: &Receipt<'_>, event: &WebhookEvent) -> Result<Outcome, StoreError>;

    async fn reservation(&self, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError>;

    /// The reservations whose stream key hashes to `key`, without their counts: at most
    /// one active, and any number cancelled or archived.
    async fn reservations_by_stream_key(&self, key: &StreamKeyHash) -> Result<Vec<ReservationRecord>, StoreError>;

    /// The reservations among `ids` that exist, with their counts, in one query; in no
    /// particular order.
    async fn reservations_by_id(&self, ids: &[ReservationId]) -> Result<Vec<ReservationRecord>, StoreError>;

    /// Reservations ordered by id, after `after`, at most `limit`.
    async fn reservations_after(
        &self,
        after: Option<&ReservationId>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError>;

    /// Like [`Store::reservations_after`] without the ticket and member counts (zeros),
    /// for walks over every reservation (phase counts).
    async fn schedules_after(
        &self,
        after: Option<&ReservationId>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError>;

    /// A channel's reservations with `starts_at <= starts_by` and `ends_at >= ends_from`,
    /// without the counts (zeros), earliest start first, at most `limit`: the candidates
    /// for "the channel's reservation whose window holds now" (Owncast's webhooks).
    async fn channel_reservations(
        &self,
        channel_id: &str,
        starts_by: DateTime<Utc>,
        ends_from: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError>;

    /// Records membership events for rooms Foyer manages, once per event id, and makes
    /// their reservations due. Other rooms' events are ignored. Returns how many applied.
    async fn record_memberships(&self, facts: &[MembershipFact], now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Forgets homeserver event ids seen before `before` (retries come within minutes),
    /// and members who left before then (a knock flood's refusals, among others).
    async fn prune_seen_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Leases one reservation now if nobody holds it (for work on demand).
    async fn claim(
        &self,
        id: &ReservationId,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        owner: &str,
    ) -> Result<Option<Claim>, StoreError>;

    /// Leases up to `limit` reservations that are due at `now` and not leased.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
        owner: &str,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Extends a lease this instance still holds; `false` when it lost it.
    async fn renew(&self, claim: &Claim, until: DateTime<Utc>) -> Result<bool, StoreError>;

    /// The earliest due time of any reservation, leased or not.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    async fn lifecycle_state(&self, id: &ReservationId) -> Result<LifecycleState, StoreError>;

    /// What planning reads: [`Self::reservation`] with its counts left at zero, and
    /// [`Self::lifecycle_state`] with the audience only once the room exists. No plan
    /// looks at either before; counting and reading every holder at each new ticket
    /// would make a reservation granted one ticket at a time cost tickets² reads.
    async fn planning(&self, id: &ReservationId) -> Result<(Option<ReservationRecord>, LifecycleState), StoreError>;

    /// Whether `room_id` is a reservation's room or a channel space.
    async fn manages_room(&self, room_id: &str) -> Result<bool, StoreError>;

    /// Records an admin's command for a reservation and makes it due now (failures
    /// forgotten, so it is tried at once). `false` when there is no such reservation.
    async fn admin_action(
        &self,
        id: &ReservationId,
        action: AdminAction,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Keeps events for the admin commands (see `admin.rs`) until they are handled; an
    /// event already kept is kept once.
    async fn queue_admin_events(&self, events: &[HomeserverEvent], now: DateTime<Utc>) -> Result<(), StoreError>;

    /// The oldest kept admin events, in the order they came, at most `limit`.
    async fn admin_inbox(&self, limit: u32) -> Result<Vec<QueuedAdminEvent>, StoreError>;

    /// Drops a handled admin event.
    async fn forget_admin_event(&self, event_id: &str) -> Result<(), StoreError>;

    /// Records one step's outcome at once, so a crash right after it repeats nothing.
    async fn record_step(&self, id: &ReservationId, step: &StepRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.record_step_with_event(id, step, None, now).await
    }

    /// [`Store::record_step`], and `event` into the outbox in the same transaction: the
    /// platform hears of the fact if and only if it is recorded. An event whose
    /// `once_key` is in the outbox already is not written again.
    async fn record_step_with_event(
        &self,
        id: &ReservationId,
        step: &StepRecord,
        event: Option<&OutboundEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Forgets the lines of a transcript not made yet (one cut short): it is written
    /// again from the start.
    async fn clear_transcript(&self, id: &ReservationId) -> Result<(), StoreError>;

    /// Writes one page of a transcript being made, in order, in one transaction. It is
    /// served once [`StepRecord::TranscriptMade`] is recorded.
    async fn write_transcript(&self, id: &ReservationId, entries: &[TranscriptEntry]) -> Result<(), StoreError>;

    /// The reservation's transcript, if one was made (and not yet deleted).
    async fn transcript(&self, id: &ReservationId) -> Result<Option<Transcript>, StoreError>;

    /// A page of the reservation's transcript: the lines after line `after` (from the
    /// first with `None`), in the room's order, at most `max_lines` of them and no more
    /// than fit in `max_bytes` of display names and bodies, but always at least one
    /// (so that a page of one very long line still moves on).
    async fn transcript_lines(
        &self,
        id: &ReservationId,
        after: Option<u64>,
        max_lines: u32,
        max_bytes: u64,
    ) -> Result<Vec<TranscriptLine>, StoreError>;

    /// Deletes the transcripts made before `before`, with their lines, and the lines of
    /// rooms archived before it without one; returns how many transcripts went.
    async fn prune_transcripts(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Erases the addresses (and codes) of email tickets granted before `before` whose
    /// reservation never came; the tickets stay. Returns how many.
    async fn forget_orphan_emails(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Every outbox row's `(reservation_id, type, webhook-id, body)`, in send order: for
    /// tests and, later, the status page.
    async fn outbox_events(&self) -> Result<Vec<(String, String, String, String)>, StoreError>;

    /// Binds the ticket whose claim code hashes to `claim_hash` to `user`, unless it is
    /// revoked, its reservation archived, or someone else holds it; makes its reservation
    /// due, so the holder is invited as soon as the room is open. `only_in` limits the
    /// claim to one reservation (a knock claims a seat in the room knocked on).
    async fn claim_ticket(
        &self,
        claim_hash: &str,
        user: &UserId,
        how: BoundHow,
        only_in: Option<&ReservationId>,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Makes every stored claim hash the one `key` gives (`hash(reservation, ticket)`),
    /// unless the hashes were made with the key `fingerprint` names already; returns how
    /// many changed. Run at start: a new `as_token` is a new key.
    async fn renew_claim_hashes(&self, fingerprint: &str, hash: &ClaimHasher) -> Result<u64, StoreError>;

    /// Email tickets due a lookup on the homeserver (see `lifecycle::lookups`): never
    /// looked up, or not since `before` while their room is open. `(reservation, ticket,
    /// email)`, at most `limit`.
    async fn lookups_due(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(ReservationId, String, Email)>, StoreError>;

    /// The homeserver was asked about this ticket's email now; `found` is the user who
    /// has it bound, whom the ticket is then bound to (its email forgotten, its
    /// reservation due). `true` when it was bound.
    async fn looked_up(
        &self,
        reservation: &ReservationId,
        ticket: &str,
        found: Option<&UserId>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The bot joined a direct chat a stranger opened (to claim a ticket).
    async fn direct_chat_active(&self, room_id: &str, user: &UserId, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// A claim was sent in the room: if it is a stranger's direct chat, it is not idle.
    async fn direct_chat_used(&self, room_id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Direct chats unused since `before`, the longest idle first, at most `limit`.
    async fn idle_direct_chats(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<String>, StoreError>;

    /// The bot left the direct chat.
    async fn forget_direct_chat(&self, room_id: &str) -> Result<(), StoreError>;

    /// Who opened the direct chat `room_id`, when it is a stranger's direct chat the bot
    /// is in (`None` for any other room).
    async fn direct_chat_opener(&self, room_id: &str) -> Result<Option<String>, StoreError>;

    /// How many direct chats `user` has open with the bot, and how many are open in all.
    async fn direct_chat_counts(&self, user: &UserId) -> Result<(u64, u64), StoreError>;

    /// The ticket a claim code's hash names, unless it was revoked or its reservation
    /// archived (a code that no longer works reads like one that never did).
    async fn claim_status(&self, claim_hash: &str) -> Result<Option<ClaimStatus>, StoreError>;

    /// A reservation's tickets ordered by id, after `after`, at most `limit`.
    async fn tickets(&self, id: &ReservationId, after: &str, limit: u32) -> Result<Vec<TicketRow>, StoreError>;

    /// Users whose invite to the reservation's room keeps failing, with the last error.
    async fn invite_failures(&self, id: &ReservationId, limit: u32) -> Result<Vec<(String, String)>, StoreError>;

    /// Whether `owner` holds a lease that has not run out at `now` (it is alive and working).
    async fn holds_live_lease(&self, owner: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Ends a lease: due again at `next_due_at` (or at once if facts changed meanwhile).
    /// `error` counts a failed attempt; `None` resets the count.
    async fn release(
        &self,
        claim: &Claim,
        next_due_at: Option<DateTime<Utc>>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.release_with_event(claim, next_due_at, error, None, now).await
    }

    /// [`Store::release`], and `event` into the outbox in the same transaction, unless
    /// the lease was lost (its new holder tells what it finds).
    async fn release_with_event(
        &self,
        claim: &Claim,
        next_due_at: Option<DateTime<Utc>>,
        error: Option<&str>,
        event: Option<&OutboundEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Records a status-page login, live until `expires_at`, and forgets the sessions
    /// expired by `now` (logins need the API token, so the table stays small).
    async fn start_status_session(
        &self,
        id: &SessionId,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Whether a status-page session is live at `now`: started, not ended, not expired.
    async fn status_session_live(&self, id: &SessionId, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Ends a status-page session (a logout); ending one that is not live changes nothing.
    async fn end_status_session(&self, id: &SessionId) -> Result<(), StoreError>;
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

/// A membership event pushed by the homeserver.
/// A ticket's claim under the current key, from its reservation and ticket ids, its
/// holder generation and its unbound holder's address: the hash of its code and its
/// holder's digest, each `None` where it cannot be made again (a moved holder's code,
/// or a bound holder's digest, once the address is erased). `None` for ids that do not
/// parse (left as they are).
pub type ClaimHasher = dyn Fn(&str, &str, i64, Option<&str>) -> Option<(Option<String>, Option<String>)> + Send + Sync;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipFact {
    pub event_id: String,
    pub room_id: String,
    pub user_id: OwnedUserId,
    pub membership: Membership,
    pub sender: String,
    /// A knock whose reason held a well-formed claim code: the hash of that code. The
    /// ticket is bound in the same transaction as the knock, so the knock is answered
    /// as a holder's.
    pub knock_claim: Option<String>,
}

/// Whether facts write their outbound events to the outbox (contract §9). Only with
/// `platform.webhook_url`: an outbox nobody sends from would only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    Write,
    Skip,
}

impl Outbound {
    pub fn when(platform_configured: bool) -> Self {
        if platform_configured { Self::Write } else { Self::Skip }
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
