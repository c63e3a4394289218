//! The store: every fact Foyer keeps, behind one trait with one implementation per
//! database. Each write is one transaction; a `2xx` is only sent after it commits.

pub mod migrate;
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone as _, Utc};
use ruma::OwnedUserId;

pub use self::{postgres::PostgresStore, sqlite::SqliteStore};
/// What the store reads back, defined with the domain.
pub use crate::model::{
    CreateBegan, LifecycleState, MemberCounts, ReservationRecord, Signals, StepRecord, TicketCounts, TicketRow,
};
use crate::{
    config::{DatabaseConfig, DatabaseKind},
    events::HomeserverEvent,
    model::{Membership, ReservationId, SessionId, WebhookEvent},
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

/// A ticket page: `(reservation_id, after ticket_id, limit)`. The same text on both
/// backends (SQLite binds `$N` too).
pub(crate) const TICKETS_PAGE: &str = "SELECT t.ticket_id, t.user_id, t.revoked_at IS NOT NULL AS revoked, i.failure
    FROM tickets t
    LEFT JOIN room_invites i ON i.reservation_id = t.reservation_id AND i.user_id = t.user_id
    WHERE t.reservation_id = $1 AND t.ticket_id > $2
    ORDER BY t.ticket_id LIMIT $3";

/// Holders and hosts whose invite keeps failing: `(reservation_id, limit)`.
pub(crate) const INVITE_FAILURES: &str = "SELECT user_id, failure FROM room_invites
    WHERE reservation_id = $1 AND failure IS NOT NULL ORDER BY user_id LIMIT $2";

/// What [`Store::prune_seen_events`] deletes, each statement bound to `before`.
pub(crate) const PRUNE: [&str; 2] = [
    "DELETE FROM seen_events WHERE seen_at < $1",
    "DELETE FROM room_members WHERE membership = 'leave' AND updated_at < $1",
];

/// Whether an instance holds any lease that has not run out: `(owner, now)`.
pub(crate) const HOLDS_LIVE_LEASE: &str = "SELECT 1 FROM lifecycle WHERE locked_by = $1 AND locked_until > $2 LIMIT 1";

#[async_trait]
pub trait Store: Send + Sync {
    /// Records one webhook in one transaction: its receipt (for deduplication) and its
    /// effect. Returns only after the commit.
    async fn record_webhook(&self, receipt: &Receipt<'_>, event: &WebhookEvent) -> Result<Outcome, StoreError>;

    async fn reservation(&self, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError>;

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
    async fn record_step(&self, id: &ReservationId, step: &StepRecord, now: DateTime<Utc>) -> Result<(), StoreError>;

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
        DatabaseKind::Sqlite => Ok(Arc::new(SqliteStore::open(config).await?)),
        DatabaseKind::Postgres => Ok(Arc::new(PostgresStore::open(config).await?)),
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

/// The store methods whose SQL is the same on every backend, as functions of the pool:
/// `Store::admin_action`, `manages_room`, the reservation pages, and the admin inbox.
/// `$begin(...)`, a method of the pool, opens a write transaction; `$p1`…`$p3` are the
/// dialect's placeholders (numbered, since `manages_room` uses its first twice).
macro_rules! shared_fns {
    ($pool:ty, $begin:ident($($arg:expr)?), $p1:literal, $p2:literal, $p3:literal) => {
        async fn record_admin_action(
            pool: &$pool,
            id: &ReservationId,
            action: AdminAction,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let now_ms = to_millis(now);
            let mut tx = pool.$begin($($arg)?).await.map_err(unavailable)?;
            let exists: Option<i32> =
                sqlx::query_scalar(concat!("SELECT 1 FROM reservations WHERE reservation_id = ", $p1))
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            if exists.is_none() {
                return Ok(false);
            }
            // The first request counts; asking again changes nothing.
            let signal = match action {
                AdminAction::OpenNow => Some(concat!(
                    "INSERT INTO reservation_signals (reservation_id, admin_opened_at) VALUES (",
                    $p1,
                    ", ",
                    $p2,
                    ") ON CONFLICT (reservation_id) DO UPDATE SET
                        admin_opened_at = COALESCE(reservation_signals.admin_opened_at, excluded.admin_opened_at)"
                )),
                AdminAction::ArchiveNow => Some(concat!(
                    "INSERT INTO reservation_signals (reservation_id, admin_archived_at) VALUES (",
                    $p1,
                    ", ",
                    $p2,
                    ") ON CONFLICT (reservation_id) DO UPDATE SET
                        admin_archived_at = COALESCE(reservation_signals.admin_archived_at, excluded.admin_archived_at)"
                )),
                AdminAction::Retry => None,
            };
            if let Some(sql) = signal {
                sqlx::query(sql).bind(id.as_str()).bind(now_ms).execute(&mut *tx).await.map_err(unavailable)?;
            }
            sqlx::query(concat!(
                "INSERT INTO lifecycle (reservation_id, next_due_at, facts_version) VALUES (",
                $p1,
                ", ",
                $p2,
                ", 1) ON CONFLICT (reservation_id) DO UPDATE SET
                    next_due_at = excluded.next_due_at, attempts = 0, facts_version = lifecycle.facts_version + 1"
            ))
            .bind(id.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            Ok(true)
        }

        async fn manages_room(pool: &$pool, room_id: &str) -> Result<bool, StoreError> {
            let found: Option<i32> = sqlx::query_scalar(concat!(
                "SELECT 1 FROM lifecycle WHERE room_id = ",
                $p1,
                " UNION ALL SELECT 1 FROM spaces WHERE room_id = ",
                $p1,
                " LIMIT 1"
            ))
            .bind(room_id)
            .fetch_optional(pool)
            .await
            .map_err(unavailable)?;
            Ok(found.is_some())
        }

        /// A page of reservations after `after`, read with `sql` (with or without counts).
        /// Rows that do not read back are left out (`readable_records`) and the page is
        /// filled up from the rows after them: a short page still means the last one.
        async fn records_after(
            pool: &$pool,
            sql: &'static str,
            after: Option<&ReservationId>,
            limit: u32,
        ) -> Result<Vec<ReservationRecord>, StoreError> {
            // The raw id, not a parsed one: an unreadable row's id may not parse either.
            let mut cursor = after.map_or_else(String::new, |id| id.as_str().to_owned());
            let mut records = Vec::new();
            loop {
                let want = limit as usize - records.len();
                let rows = sqlx::query(sql)
                    .bind(cursor.as_str())
                    .bind(want as i64)
                    .fetch_all(pool)
                    .await
                    .map_err(unavailable)?;
                let mut read = Vec::with_capacity(rows.len());
                for row in &rows {
                    let id: String =
                        row.try_get("reservation_id").map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    read.push((id, record_from_row(row)));
                }
                let Some((last, _)) = read.last() else { break };
                cursor = last.clone();
                records.extend($crate::store::readable_records(read));
                if rows.len() < want || records.len() == limit as usize {
                    break;
                }
            }
            Ok(records)
        }

        async fn queue_admin_events(
            pool: &$pool,
            events: &[$crate::events::HomeserverEvent],
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            if events.is_empty() {
                return Ok(());
            }
            let mut tx = pool.$begin($($arg)?).await.map_err(unavailable)?;
            for event in events {
                let text = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                sqlx::query(concat!(
                    "INSERT INTO admin_inbox (event_id, event, received_at) VALUES (",
                    $p1,
                    ", ",
                    $p2,
                    ", ",
                    $p3,
                    ") ON CONFLICT (event_id) DO NOTHING"
                ))
                .bind(&event.event_id)
                .bind(text)
                .bind(to_millis(now))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)
        }

        async fn admin_inbox(pool: &$pool, limit: u32) -> Result<Vec<$crate::store::QueuedAdminEvent>, StoreError> {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(concat!(
                "SELECT event_id, event, received_at FROM admin_inbox ORDER BY seq LIMIT ",
                $p1
            ))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(unavailable)?;
            rows.into_iter()
                .map(|(event_id, text, received_at)| {
                    let event = serde_json::from_str(&text).map_err(|e| format!("cannot be read: {e}"));
                    Ok($crate::store::QueuedAdminEvent { event_id, received_at: from_millis(received_at)?, event })
                })
                .collect()
        }

        async fn forget_admin_event(pool: &$pool, event_id: &str) -> Result<(), StoreError> {
            sqlx::query(concat!("DELETE FROM admin_inbox WHERE event_id = ", $p1))
                .bind(event_id)
                .execute(pool)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
    };
}
pub(crate) use shared_fns;

/// Reads a reservation record from a row of the `select_records!` shape; one body for
/// every backend's row type.
macro_rules! record_from_row {
    ($name:ident, $row:ty) => {
        fn $name(row: &$row) -> Result<ReservationRecord, StoreError> {
            let corrupt = |what: &str, e: String| StoreError::Corrupt(format!("{what}: {e}"));
            let get_err = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
            let text = |col: &str| row.try_get::<String, _>(col).map_err(get_err);
            let opt_text = |col: &str| row.try_get::<Option<String>, _>(col).map_err(get_err);
            let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
                row.try_get::<Option<i64>, _>(col).map_err(get_err)?.map(from_millis).transpose()
            };
            let id = ReservationId::parse(&text("reservation_id")?).map_err(|e| corrupt("reservation_id", e))?;
            let hosts: Vec<OwnedUserId> =
                serde_json::from_str(&text("hosts")?).map_err(|e| corrupt("hosts", e.to_string()))?;
            let channel = match (opt_text("channel_id")?, opt_text("channel_name")?) {
                (Some(cid), Some(name)) => Some(Channel {
                    id: ExternalId::parse(&cid).map_err(|e| corrupt("channel_id", e))?,
                    name: Title::parse(&name).map_err(|e| corrupt("channel_name", e))?,
                }),
                _ => None,
            };
            let reservation = Reservation {
                id,
                revision: row.try_get::<Option<i64>, _>("revision").map_err(get_err)?.map(|v| Revision(v as u64)),
                title: Title::parse(&text("title")?).map_err(|e| corrupt("title", e))?,
                description: opt_text("description")?
                    .map(|d| Description::parse(&d).map_err(|e| corrupt("description", e)))
                    .transpose()?,
                starts_at: from_millis(row.try_get("starts_at").map_err(get_err)?)?,
                ends_at: from_millis(row.try_get("ends_at").map_err(get_err)?)?,
                stream_url: opt_text("stream_url")?
                    .map(|u| StreamUrl::parse(&u).map_err(|e| corrupt("stream_url", e)))
                    .transpose()?,
                channel,
                hosts,
                open_before_seconds: row
                    .try_get::<Option<i64>, _>("open_before_seconds")
                    .map_err(get_err)?
                    .map(|s| s as u32),
                close_after_seconds: row
                    .try_get::<Option<i64>, _>("close_after_seconds")
                    .map_err(get_err)?
                    .map(|s| s as u32),
            };
            let signals = Signals {
                cancelled_at: opt_time("cancelled_at")?,
                cancel_reason: opt_text("cancel_reason")?,
                stream_started_at: opt_time("stream_started_at")?,
                stream_ended_at: opt_time("stream_ended_at")?,
                admin_opened_at: opt_time("admin_opened_at")?,
                admin_archived_at: opt_time("admin_archived_at")?,
            };
            let tickets = TicketCounts {
                active: row.try_get::<i64, _>("tickets_active").map_err(get_err)? as u64,
                revoked: row.try_get::<i64, _>("tickets_revoked").map_err(get_err)? as u64,
                uninvitable: row.try_get::<i64, _>("tickets_uninvitable").map_err(get_err)? as u64,
            };
            Ok(ReservationRecord {
                reservation,
                signals,
                tickets,
                room_id: opt_text("room_id")?,
                members: MemberCounts {
                    invited: row.try_get::<i64, _>("members_invited").map_err(get_err)? as u64,
                    joined: row.try_get::<i64, _>("members_joined").map_err(get_err)? as u64,
                },
                archived: opt_time("archived_at")?.is_some(),
                last_error: opt_text("last_error")?,
                attempts: row.try_get::<Option<i64>, _>("attempts").map_err(get_err)?.unwrap_or(0) as u32,
            })
        }
    };
}
pub(crate) use record_from_row;

/// A reservation with its signals and ticket counts, filtered by `$where`.
macro_rules! select_records {
    ($where:literal) => {
        super::select_with!(
            "(SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND t.user_id IS NOT NULL AND t.revoked_at IS NULL) AS tickets_active,
                (SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND t.revoked_at IS NOT NULL) AS tickets_revoked,
                (SELECT COUNT(*) FROM tickets t JOIN room_invites i
                    ON i.reservation_id = t.reservation_id AND i.user_id = t.user_id
                    WHERE t.reservation_id = r.reservation_id AND t.revoked_at IS NULL
                    AND i.failure IS NOT NULL) AS tickets_uninvitable,
                (SELECT COUNT(*) FROM room_members m WHERE m.room_id = l.room_id
                    AND m.membership = 'invite') AS members_invited,
                (SELECT COUNT(*) FROM room_members m WHERE m.room_id = l.room_id
                    AND m.membership = 'join') AS members_joined",
            $where
        )
    };
}
pub(crate) use select_records;

/// A reservation with what its phase needs, its counts left at zero: the counts read
/// the tickets and members tables, which a walk over every reservation must not.
macro_rules! select_schedules {
    ($where:literal) => {
        super::select_with!(
            "CAST(0 AS BIGINT) AS tickets_active, CAST(0 AS BIGINT) AS tickets_revoked,
                CAST(0 AS BIGINT) AS tickets_uninvitable,
                CAST(0 AS BIGINT) AS members_invited, CAST(0 AS BIGINT) AS members_joined",
            $where
        )
    };
}
pub(crate) use select_schedules;

macro_rules! select_with {
    ($counts:literal, $where:literal) => {
        concat!(
            "SELECT r.*, s.cancelled_at, s.cancel_reason, s.stream_started_at, s.stream_ended_at,
                s.admin_opened_at, s.admin_archived_at, l.last_error, l.attempts,
                l.room_id AS room_id, l.archived_at AS archived_at, ",
            $counts,
            " FROM reservations r
            LEFT JOIN reservation_signals s ON s.reservation_id = r.reservation_id
            LEFT JOIN lifecycle l ON l.reservation_id = r.reservation_id ",
            $where
        )
    };
}
pub(crate) use select_with;
