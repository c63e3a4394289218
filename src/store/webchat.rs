//! The chat beside the player in the store ([`WebchatStore`], docs/web-chat.md): web sessions,
//! found by the hash of their secret; each reservation's room log, which the stream
//! serves by a per-reservation sequence; web fans' Matrix users; and the viewers banned
//! from a reservation's chat. A viewer is stored as a kind and a value
//! ([`ViewerKey::kind`], [`ViewerKey::value`]); no email or claim code is kept.
//!
//! The log's sequence is handed out from a heads row that an append locks first (an
//! upsert that changes nothing but takes the row's lock) and sets last: appends to one
//! reservation, from any number of instances, take turns, and each sees the events the
//! one before it logged, so a seq is never skipped or given twice, and an event is
//! logged once.
//!
//! On PostgreSQL an append also tells every instance of it when it commits (`NOTIFY`
//! with its reservation id, in the append's transaction, so a rolled back append tells
//! nothing): [`WebchatStore::web_log_appends`] hears it, so a reader on one instance
//! gets what the homeserver sent another at once, rather than at the hub's next poll.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::{EventId, OwnedUserId, UserId};

use super::{
    StoreError,
    dialect::{SqlStore, on_both_databases},
    from_millis,
    rows::{Read, corrupt, opt_parsed, parsed},
    to_millis,
};
use crate::model::{
    DisplayName, EndReason, LogKind, LogPayload, LoggedEntry, NewLogEntry, NewWebSession, NewWebUser, Removal,
    ReservationId, SessionHash, SessionSource, SessionState, TicketId, ViewerKey, WebRole, WebSession, WebUser,
};

/// What the database tells of appends to the room log ([`WebchatStore::web_log_appends`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAppended {
    /// Entries were appended to this reservation's log, by any instance (this one too).
    To(ReservationId),
    /// The connection that hears appends was lost and is made again: appends between the
    /// two went untold, to any reservation.
    Untold,
}

/// The most log entries one read returns ([`WebchatStore::web_log_after`],
/// [`WebchatStore::web_log_last`]); a larger limit is taken as this.
pub const MAX_WEB_LOG_PAGE: u32 = 1000;

// Sessions.

const CREATE_SESSION: &str = "INSERT INTO webchat_sessions (session_hash, reservation_id, viewer_kind, viewer_value,
        display_name, role, source, created_at, expires_at, holder_generation)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const SESSION: &str = "SELECT session_hash, reservation_id, viewer_kind, viewer_value, holder_generation,
        display_name, role, source, created_at, expires_at, ended_at, ended_reason
    FROM webchat_sessions WHERE session_hash = $1";
/// `(reservation_id, viewer_kind, viewer_value, now, reason)`: the viewer's live sessions.
const END_SESSIONS: &str = "UPDATE webchat_sessions SET ended_at = $4, ended_reason = $5
    WHERE reservation_id = $1 AND viewer_kind = $2 AND viewer_value = $3 AND ended_at IS NULL AND expires_at > $4";
/// `(reservation_id, since)`: the sessions ended after `since`.
const ENDED_SESSIONS: &str = "SELECT session_hash, ended_reason, ended_at FROM webchat_sessions
    WHERE reservation_id = $1 AND ended_at > $2 ORDER BY ended_at";
const PRUNE_SESSIONS: &str = "DELETE FROM webchat_sessions WHERE expires_at < $1 OR ended_at < $1";

// The room log.

/// `(reservation_id)`: the last seq handed out, with the heads row locked until the
/// transaction ends (made at 0 if there is none).
const LOCK_HEAD: &str = "INSERT INTO webchat_log_heads (reservation_id, last_seq) VALUES ($1, 0)
    ON CONFLICT (reservation_id) DO UPDATE SET last_seq = webchat_log_heads.last_seq
    RETURNING last_seq";
const SET_HEAD: &str = "UPDATE webchat_log_heads SET last_seq = $2 WHERE reservation_id = $1";
/// `(reservation_id, seq, event_id, kind, payload, origin_ts, logged_at)`; an event
/// already logged is not logged again.
const APPEND: &str = "INSERT INTO webchat_log (reservation_id, seq, event_id, kind, payload, origin_ts, logged_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (reservation_id, event_id) DO NOTHING";
const LOG_AFTER: &str = "SELECT seq, event_id, kind, payload, origin_ts, logged_at FROM webchat_log
    WHERE reservation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const LOG_LAST: &str = "SELECT seq, event_id, kind, payload, origin_ts, logged_at FROM webchat_log
    WHERE reservation_id = $1 ORDER BY seq DESC LIMIT $2";
const LOG_OLDEST: &str = "SELECT MIN(seq) AS seq FROM webchat_log WHERE reservation_id = $1";
const LOG_HEAD: &str = "SELECT last_seq FROM webchat_log_heads WHERE reservation_id = $1";
/// `(keep)`: each reservation's entries but its newest `keep` (seqs have no gaps).
const PRUNE_LOG: &str = "DELETE FROM webchat_log WHERE seq <= (
        SELECT h.last_seq FROM webchat_log_heads h WHERE h.reservation_id = webchat_log.reservation_id) - $1";

// Web users.

const USER: &str = "SELECT reservation_id, viewer_kind, viewer_value, holder_generation, user_id, display_name,
        registered_at, joined_at, removed, removed_at
    FROM webchat_users
    WHERE reservation_id = $1 AND viewer_kind = $2 AND viewer_value = $3 AND holder_generation = $4";
const USER_BY_ID: &str = "SELECT reservation_id, viewer_kind, viewer_value, holder_generation, user_id, display_name,
        registered_at, joined_at, removed, removed_at
    FROM webchat_users WHERE user_id = $1";
/// `(reservation_id, viewer_kind, viewer_value, holder_generation, user_id, display_name,
/// registered_at)`; the viewer's user already there is kept.
const PUT_USER: &str = "INSERT INTO webchat_users
        (reservation_id, viewer_kind, viewer_value, holder_generation, user_id, display_name, registered_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING";
const USER_JOINED: &str =
    "UPDATE webchat_users SET joined_at = $2, removed = NULL, removed_at = NULL WHERE user_id = $1";
const USER_REMOVED: &str = "UPDATE webchat_users SET removed = $2, removed_at = $3 WHERE user_id = $1";
const NAMED_USERS: &str =
    "SELECT user_id FROM webchat_users WHERE reservation_id = $1 AND display_name IS NOT NULL ORDER BY user_id";
const CLEAR_NAMES: &str =
    "UPDATE webchat_users SET display_name = NULL WHERE reservation_id = $1 AND display_name IS NOT NULL";

// Bans.

/// `(reservation_id, viewer_kind, viewer_value, event_id, banned_at)`: the first ban is kept.
const BAN: &str = "INSERT INTO webchat_bans (reservation_id, viewer_kind, viewer_value, event_id, banned_at)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
const UNBAN: &str = "DELETE FROM webchat_bans WHERE reservation_id = $1 AND viewer_kind = $2 AND viewer_value = $3";
/// `(reservation_id, user_id, event_id, banned_at)`: the holder's active tickets banned.
const BAN_HOLDER: &str = "INSERT INTO webchat_bans (reservation_id, viewer_kind, viewer_value, event_id, banned_at)
    SELECT reservation_id, 'ticket', ticket_id, $3, $4 FROM tickets
    WHERE reservation_id = $1 AND user_id = $2 AND revoked_at IS NULL
    ON CONFLICT DO NOTHING";
/// `(reservation_id, user_id)`: the bans of the holder's tickets lifted.
const UNBAN_HOLDER: &str = "DELETE FROM webchat_bans WHERE reservation_id = $1 AND viewer_kind = 'ticket'
    AND viewer_value IN (SELECT ticket_id FROM tickets WHERE reservation_id = $1 AND user_id = $2)";
const BANNED: &str = "SELECT 1 FROM webchat_bans WHERE reservation_id = $1 AND viewer_kind = $2 AND viewer_value = $3";

// Tickets.

/// `(reservation_id, ticket_id)`: an active ticket's holder generation.
const TICKET_GENERATION: &str = "SELECT holder_generation FROM tickets
    WHERE reservation_id = $1 AND ticket_id = $2 AND revoked_at IS NULL";

/// The web chat's sessions, room log, web users and bans.
#[async_trait]
pub trait WebchatStore: Send + Sync {
    /// Records a web session. Its hash is new (the hash of a fresh random secret).
    async fn create_web_session(&self, session: &NewWebSession) -> Result<(), StoreError>;

    /// The session with this hash, with its state at `now` (an expired or ended one too,
    /// so that its bearer is told why); `None` if there is none (never made, or pruned).
    async fn web_session(&self, hash: &SessionHash, now: DateTime<Utc>) -> Result<Option<WebSession>, StoreError>;

    /// Ends the viewer's live sessions in the reservation's chat (their ticket was
    /// revoked or moved, or they were banned); returns how many ended.
    async fn end_web_sessions(
        &self, reservation: &ReservationId, viewer: &ViewerKey, reason: EndReason, now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// The reservation's sessions ended after `since` (their streams close), with why and
    /// when, the earliest first.
    async fn ended_web_sessions(
        &self, reservation: &ReservationId, since: DateTime<Utc>,
    ) -> Result<Vec<(SessionHash, EndReason, DateTime<Utc>)>, StoreError>;

    /// Forgets the sessions that expired or ended before `before`; returns how many.
    async fn prune_web_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Appends entries to the reservation's room log, in order, in one transaction, each
    /// with the next seq; an entry whose event is logged already (a homeserver's retry)
    /// is left out. Returns the entries appended, with their seqs.
    async fn append_web_log(
        &self, reservation: &ReservationId, entries: &[NewLogEntry], now: DateTime<Utc>,
    ) -> Result<Vec<LoggedEntry>, StoreError>;

    /// The appends to the room log that the database tells of, whichever instance made
    /// them, as they commit: on PostgreSQL, from a connection of its own that listens
    /// (`LISTEN`) until the receiver is dropped, and is made again when lost. `None` on
    /// SQLite, which tells nothing (one instance, whose own appends its hub knows of).
    /// A reader still looks on its own now and then: a notice may come late or never.
    fn web_log_appends(&self) -> Option<tokio::sync::mpsc::Receiver<LogAppended>>;

    /// The entries after seq `after`, oldest first, at most `limit` (and
    /// [`MAX_WEB_LOG_PAGE`]).
    async fn web_log_after(
        &self, reservation: &ReservationId, after: u64, limit: u32,
    ) -> Result<Vec<LoggedEntry>, StoreError>;

    /// The newest `n` entries (at most [`MAX_WEB_LOG_PAGE`]), oldest first.
    async fn web_log_last(&self, reservation: &ReservationId, n: u32) -> Result<Vec<LoggedEntry>, StoreError>;

    /// The seq of the oldest entry kept, `None` when none is: a reader who last saw an
    /// older one (`seq + 1 <` this) has missed entries and starts again.
    async fn web_log_oldest_seq(&self, reservation: &ReservationId) -> Result<Option<u64>, StoreError>;

    /// The last seq handed out in the reservation's log (0 before the first); pruning
    /// never lowers it.
    async fn web_log_head(&self, reservation: &ReservationId) -> Result<u64, StoreError>;

    /// Keeps the newest `keep_per_reservation` entries of each reservation's log and
    /// deletes the others; returns how many went.
    async fn prune_web_log(&self, keep_per_reservation: u32) -> Result<u64, StoreError>;

    /// The viewer's web user in the reservation's room for this holder generation of
    /// their ticket (0 for a platform viewer), if one was registered.
    async fn web_user(
        &self, reservation: &ReservationId, viewer: &ViewerKey, generation: i64,
    ) -> Result<Option<WebUser>, StoreError>;

    /// The web user with this Matrix ID, whichever reservation and viewer it is for.
    async fn web_user_by_id(&self, user_id: &UserId) -> Result<Option<WebUser>, StoreError>;

    /// Records the viewer's web user, or returns the one recorded already (another
    /// instance may have been first: the first one recorded is the one kept). Refused
    /// when the Matrix ID is another viewer's.
    async fn put_web_user(&self, user: &NewWebUser) -> Result<WebUser, StoreError>;

    /// The web user joined its room; `false` if it is no web user.
    async fn web_user_joined(&self, user_id: &UserId, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// The web user left its room or was kicked; `false` if it is no web user.
    async fn web_user_removed(&self, user_id: &UserId, how: Removal, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Forgets the names of the reservation's web users (its room is archived); returns
    /// how many were cleared.
    async fn clear_web_user_names(&self, reservation: &ReservationId) -> Result<u64, StoreError>;

    /// The reservation's web users whose names are not cleared yet.
    async fn named_web_users(&self, reservation: &ReservationId) -> Result<Vec<OwnedUserId>, StoreError>;

    /// Bans the viewer from the reservation's chat, by the ban event `event_id`; `false`
    /// if they were banned already (the first ban is kept).
    async fn ban_viewer(
        &self, reservation: &ReservationId, viewer: &ViewerKey, event_id: &EventId, now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Bans the active tickets `user` holds in the reservation, as a ban of their web
    /// user would (a Matrix member banned in Element); returns how many.
    async fn ban_holder(
        &self, reservation: &ReservationId, user: &UserId, event_id: &EventId, now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Lifts the bans of the tickets `user` holds in the reservation; returns how many.
    async fn unban_holder(&self, reservation: &ReservationId, user: &UserId) -> Result<u64, StoreError>;

    /// Lifts the viewer's ban; `false` if they were not banned.
    async fn unban_viewer(&self, reservation: &ReservationId, viewer: &ViewerKey) -> Result<bool, StoreError>;

    /// Whether the viewer is banned from the reservation's chat.
    async fn viewer_banned(&self, reservation: &ReservationId, viewer: &ViewerKey) -> Result<bool, StoreError>;

    /// The holder generation of the reservation's ticket (how many times it changed
    /// hands), `None` if the ticket is unknown or revoked: a session or web user made for
    /// another generation is a former holder's.
    async fn ticket_generation(
        &self, reservation: &ReservationId, ticket: &TicketId,
    ) -> Result<Option<i64>, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl WebchatStore for SqlStore<D> {
    async fn create_web_session(&self, s: &NewWebSession) -> Result<(), StoreError> {
        sqlx::query(CREATE_SESSION)
            .bind(s.hash.as_str())
            .bind(s.reservation.as_str())
            .bind(s.viewer.kind())
            .bind(s.viewer.value())
            .bind(s.name.as_str())
            .bind(s.role.as_str())
            .bind(s.source.as_str())
            .bind(to_millis(s.created_at))
            .bind(to_millis(s.expires_at))
            .bind(s.holder_generation)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn web_session(&self, hash: &SessionHash, now: DateTime<Utc>) -> Result<Option<WebSession>, StoreError> {
        let found = sqlx::query(SESSION).bind(hash.as_str()).fetch_optional(&self.pool).await?;
        found.map(|row| session(&row, now)).transpose()
    }

    async fn end_web_sessions(
        &self, reservation: &ReservationId, viewer: &ViewerKey, reason: EndReason, now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let query = sqlx::query(END_SESSIONS).bind(reservation.as_str()).bind(viewer.kind()).bind(viewer.value());
        let done = query.bind(to_millis(now)).bind(reason.as_str()).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }

    async fn ended_web_sessions(
        &self, reservation: &ReservationId, since: DateTime<Utc>,
    ) -> Result<Vec<(SessionHash, EndReason, DateTime<Utc>)>, StoreError> {
        let query = sqlx::query(ENDED_SESSIONS).bind(reservation.as_str()).bind(to_millis(since));
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let hash = parsed(row, "session_hash", SessionHash::parse)?;
                let reason = parsed(row, "ended_reason", EndReason::parse)?;
                Ok((hash, reason, from_millis(row.int("ended_at")?)?))
            })
            .collect()
    }

    async fn prune_web_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(PRUNE_SESSIONS).bind(to_millis(before)).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }

    async fn append_web_log(
        &self, reservation: &ReservationId, entries: &[NewLogEntry], now: DateTime<Utc>,
    ) -> Result<Vec<LoggedEntry>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let id = reservation.as_str();
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let head = sqlx::query(LOCK_HEAD).bind(id).fetch_one(&mut *tx).await?.int("last_seq")?;
        let mut seq = u64::try_from(head).map_err(|e| corrupt("webchat log head", e))?;
        let mut appended = Vec::new();
        for entry in entries {
            let done = sqlx::query(APPEND)
                .bind(id)
                .bind(stored_seq(seq + 1)?)
                .bind(entry.event_id.as_ref().map(|e| e.as_str()))
                .bind(entry.kind.as_str())
                .bind(entry.payload.as_str())
                .bind(to_millis(entry.origin_ts))
                .bind(to_millis(now))
                .execute(&mut *tx)
                .await?;
            if D::rows_affected(&done) == 1 {
                seq += 1;
                appended.push(LoggedEntry {
                    seq,
                    event_id: entry.event_id.clone(),
                    kind: entry.kind,
                    payload: entry.payload.clone(),
                    origin_ts: entry.origin_ts,
                    logged_at: now,
                });
            }
        }
        if !appended.is_empty() {
            sqlx::query(SET_HEAD).bind(id).bind(stored_seq(seq)?).execute(&mut *tx).await?;
            if let Some(tell) = D::TELL_WEB_LOG_APPEND {
                sqlx::query(tell).bind(id).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(appended)
    }

    fn web_log_appends(&self) -> Option<tokio::sync::mpsc::Receiver<LogAppended>> {
        D::web_log_appends(self)
    }

    async fn web_log_after(
        &self, reservation: &ReservationId, after: u64, limit: u32,
    ) -> Result<Vec<LoggedEntry>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let query = sqlx::query(LOG_AFTER).bind(reservation.as_str()).bind(after).bind(page(limit));
        query.fetch_all(&self.pool).await?.iter().map(logged).collect()
    }

    async fn web_log_last(&self, reservation: &ReservationId, n: u32) -> Result<Vec<LoggedEntry>, StoreError> {
        let query = sqlx::query(LOG_LAST).bind(reservation.as_str()).bind(page(n));
        let mut entries = query.fetch_all(&self.pool).await?.iter().map(logged).collect::<Result<Vec<_>, _>>()?;
        entries.reverse();
        Ok(entries)
    }

    async fn web_log_oldest_seq(&self, reservation: &ReservationId) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(LOG_OLDEST).bind(reservation.as_str()).fetch_one(&self.pool).await?;
        row.opt_int("seq")?.map(|seq| u64::try_from(seq).map_err(|e| corrupt("webchat log seq", e))).transpose()
    }

    async fn web_log_head(&self, reservation: &ReservationId) -> Result<u64, StoreError> {
        let Some(row) = sqlx::query(LOG_HEAD).bind(reservation.as_str()).fetch_optional(&self.pool).await? else {
            return Ok(0);
        };
        u64::try_from(row.int("last_seq")?).map_err(|e| corrupt("webchat log head", e))
    }

    async fn prune_web_log(&self, keep_per_reservation: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(PRUNE_LOG).bind(i64::from(keep_per_reservation)).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }

    async fn web_user(
        &self, reservation: &ReservationId, viewer: &ViewerKey, generation: i64,
    ) -> Result<Option<WebUser>, StoreError> {
        let query = sqlx::query(USER).bind(reservation.as_str()).bind(viewer.kind()).bind(viewer.value());
        let found = query.bind(generation).fetch_optional(&self.pool).await?;
        found.map(|row| web_user(&row)).transpose()
    }

    async fn web_user_by_id(&self, user_id: &UserId) -> Result<Option<WebUser>, StoreError> {
        let query = sqlx::query(USER_BY_ID).bind(user_id.as_str());
        query.fetch_optional(&self.pool).await?.map(|row| web_user(&row)).transpose()
    }

    async fn put_web_user(&self, user: &NewWebUser) -> Result<WebUser, StoreError> {
        sqlx::query(PUT_USER)
            .bind(user.reservation.as_str())
            .bind(user.viewer.kind())
            .bind(user.viewer.value())
            .bind(user.holder_generation)
            .bind(user.user_id.as_str())
            .bind(user.display_name.as_str())
            .bind(to_millis(user.registered_at))
            .execute(&self.pool)
            .await?;
        self.web_user(&user.reservation, &user.viewer, user.holder_generation).await?.ok_or_else(|| {
            StoreError::Refused { path: "user_id", message: "this Matrix ID is another viewer's web user".into() }
        })
    }

    async fn web_user_joined(&self, user_id: &UserId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(USER_JOINED).bind(user_id.as_str()).bind(to_millis(now)).execute(&self.pool).await?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn web_user_removed(&self, user_id: &UserId, how: Removal, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let query = sqlx::query(USER_REMOVED).bind(user_id.as_str()).bind(how.as_str()).bind(to_millis(now));
        Ok(D::rows_affected(&query.execute(&self.pool).await?) > 0)
    }

    async fn clear_web_user_names(&self, reservation: &ReservationId) -> Result<u64, StoreError> {
        let done = sqlx::query(CLEAR_NAMES).bind(reservation.as_str()).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }

    async fn named_web_users(&self, reservation: &ReservationId) -> Result<Vec<OwnedUserId>, StoreError> {
        let rows = sqlx::query(NAMED_USERS).bind(reservation.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(|row| parsed(row, "user_id", |s: &str| UserId::parse(s))).collect()
    }

    async fn ban_holder(
        &self, reservation: &ReservationId, user: &UserId, event_id: &EventId, now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let query = sqlx::query(BAN_HOLDER).bind(reservation.as_str()).bind(user.as_str());
        let done = query.bind(event_id.as_str()).bind(to_millis(now)).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }

    async fn unban_holder(&self, reservation: &ReservationId, user: &UserId) -> Result<u64, StoreError> {
        let done = sqlx::query(UNBAN_HOLDER).bind(reservation.as_str()).bind(user.as_str()).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }

    async fn ban_viewer(
        &self, reservation: &ReservationId, viewer: &ViewerKey, event_id: &EventId, now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(BAN).bind(reservation.as_str()).bind(viewer.kind()).bind(viewer.value());
        let done = query.bind(event_id.as_str()).bind(to_millis(now)).execute(&self.pool).await?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn unban_viewer(&self, reservation: &ReservationId, viewer: &ViewerKey) -> Result<bool, StoreError> {
        let query = sqlx::query(UNBAN).bind(reservation.as_str()).bind(viewer.kind()).bind(viewer.value());
        Ok(D::rows_affected(&query.execute(&self.pool).await?) > 0)
    }

    async fn viewer_banned(&self, reservation: &ReservationId, viewer: &ViewerKey) -> Result<bool, StoreError> {
        let query = sqlx::query(BANNED).bind(reservation.as_str()).bind(viewer.kind()).bind(viewer.value());
        Ok(query.fetch_optional(&self.pool).await?.is_some())
    }

    async fn ticket_generation(
        &self, reservation: &ReservationId, ticket: &TicketId,
    ) -> Result<Option<i64>, StoreError> {
        let query = sqlx::query(TICKET_GENERATION).bind(reservation.as_str()).bind(ticket.as_str());
        query.fetch_optional(&self.pool).await?.map(|row| row.int("holder_generation")).transpose()
    }
}

/// A read's limit, bounded by [`MAX_WEB_LOG_PAGE`].
fn page(limit: u32) -> i64 {
    i64::from(limit.min(MAX_WEB_LOG_PAGE))
}

/// A seq as the database holds it.
fn stored_seq(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|e| corrupt("webchat log seq", e))
}

fn viewer(row: &impl Read) -> Result<ViewerKey, StoreError> {
    let kind = row.text("viewer_kind")?;
    parsed(row, "viewer_value", |value: &str| ViewerKey::parse(&kind, value))
}

/// A row of [`SESSION`], in its state at `now`.
fn session(row: &impl Read, now: DateTime<Utc>) -> Result<WebSession, StoreError> {
    let expires_at = from_millis(row.int("expires_at")?)?;
    let ended_reason = opt_parsed(row, "ended_reason", EndReason::parse)?;
    let state = match (row.opt_time("ended_at")?, ended_reason) {
        (Some(at), Some(reason)) => SessionState::Ended { at, reason },
        (None, None) if expires_at <= now => SessionState::Expired,
        (None, None) => SessionState::Live,
        _ => return Err(corrupt("webchat session", "ended_at and ended_reason must be set together")),
    };
    let session = NewWebSession {
        hash: parsed(row, "session_hash", SessionHash::parse)?,
        reservation: parsed(row, "reservation_id", ReservationId::parse)?,
        viewer: viewer(row)?,
        holder_generation: row.int("holder_generation")?,
        name: parsed(row, "display_name", DisplayName::parse)?,
        role: parsed(row, "role", WebRole::parse)?,
        source: parsed(row, "source", SessionSource::parse)?,
        created_at: from_millis(row.int("created_at")?)?,
        expires_at,
    };
    Ok(WebSession { session, state })
}

/// A row of [`LOG_AFTER`] or [`LOG_LAST`].
pub(super) fn logged(row: &impl Read) -> Result<LoggedEntry, StoreError> {
    Ok(LoggedEntry {
        seq: u64::try_from(row.int("seq")?).map_err(|e| corrupt("webchat log seq", e))?,
        event_id: opt_parsed(row, "event_id", |e: &str| EventId::parse(e))?,
        kind: parsed(row, "kind", LogKind::parse)?,
        payload: parsed(row, "payload", LogPayload::parse)?,
        origin_ts: from_millis(row.int("origin_ts")?)?,
        logged_at: from_millis(row.int("logged_at")?)?,
    })
}

/// A row of [`USER`] or [`USER_BY_ID`].
fn web_user(row: &impl Read) -> Result<WebUser, StoreError> {
    let removed = match (opt_parsed(row, "removed", Removal::parse)?, row.opt_time("removed_at")?) {
        (Some(how), Some(at)) => Some((how, at)),
        (None, None) => None,
        _ => return Err(corrupt("webchat user", "removed and removed_at must be set together")),
    };
    Ok(WebUser {
        reservation: parsed(row, "reservation_id", ReservationId::parse)?,
        viewer: viewer(row)?,
        holder_generation: row.int("holder_generation")?,
        user_id: parsed(row, "user_id", |u: &str| UserId::parse(u))?,
        display_name: opt_parsed(row, "display_name", DisplayName::parse)?,
        registered_at: from_millis(row.int("registered_at")?)?,
        joined_at: row.opt_time("joined_at")?,
        removed,
    })
}
