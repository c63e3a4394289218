//! The admin commands' side of the store: their signals, their inbox of homeserver
//! events, the direct chats strangers open to claim a ticket, the bot's direct chats
//! with hosts and moderators, and the status page's sessions ([`AdminStore`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::{
    AdminAction, QueuedAdminEvent, StoreError,
    dialect::{SqlStore, on_both_databases},
    from_millis,
    rows::{Read, parsed},
    to_millis,
};
use crate::events::HomeserverEvent;
use crate::model::{ReservationId, SessionId};

const RESERVATION_EXISTS: &str = "SELECT 1 FROM reservations WHERE reservation_id = $1";
/// `(reservation_id, at)`; the first request counts, asking again changes nothing.
const ADMIN_OPEN: &str = "INSERT INTO reservation_signals (reservation_id, admin_opened_at) VALUES ($1, $2)
    ON CONFLICT (reservation_id) DO UPDATE SET
        admin_opened_at = COALESCE(reservation_signals.admin_opened_at, excluded.admin_opened_at)";
/// `(reservation_id, at)`; as [`ADMIN_OPEN`].
const ADMIN_ARCHIVE: &str = "INSERT INTO reservation_signals (reservation_id, admin_archived_at)
    VALUES ($1, $2)
    ON CONFLICT (reservation_id) DO UPDATE SET
        admin_archived_at = COALESCE(reservation_signals.admin_archived_at, excluded.admin_archived_at)";
/// Due now with failures forgotten: `(reservation_id, now)`.
const ADMIN_DUE: &str = "INSERT INTO lifecycle (reservation_id, next_due_at, facts_version) VALUES ($1, $2, 1)
    ON CONFLICT (reservation_id) DO UPDATE SET
        next_due_at = excluded.next_due_at, attempts = 0, facts_version = lifecycle.facts_version + 1";
/// `(event_id, event JSON, received_at)`; an event already kept is kept once.
const QUEUE_ADMIN_EVENT: &str =
    "INSERT INTO admin_inbox (event_id, event, received_at) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING";
const ADMIN_INBOX: &str = "SELECT event_id, event, received_at FROM admin_inbox ORDER BY seq LIMIT $1";
const FORGET_ADMIN_EVENT: &str = "DELETE FROM admin_inbox WHERE event_id = $1";
// Direct chats opened by strangers to claim tickets.

/// `(room_id, user_id, at)`.
const DIRECT_CHAT_ACTIVE: &str = "INSERT INTO direct_chats (room_id, user_id, last_active_at)
    VALUES ($1, $2, $3) ON CONFLICT (room_id) DO UPDATE SET last_active_at = excluded.last_active_at";
/// `(before, limit)`.
/// `(room_id, at)`: only a chat a stranger opened is kept (an admin's room never is).
const DIRECT_CHAT_USED: &str = "UPDATE direct_chats SET last_active_at = $2 WHERE room_id = $1";
const IDLE_DIRECT_CHATS: &str =
    "SELECT room_id FROM direct_chats WHERE last_active_at < $1 ORDER BY last_active_at LIMIT $2";
const FORGET_DIRECT_CHAT: &str = "DELETE FROM direct_chats WHERE room_id = $1";
/// `(room_id)`: who opened the chat, if it is a stranger's direct chat.
const DIRECT_CHAT_OPENER: &str = "SELECT user_id FROM direct_chats WHERE room_id = $1";
/// `(user_id)`: the user's open direct chats, and everyone's.
const DIRECT_CHAT_COUNTS: &str = "SELECT
    (SELECT COUNT(*) FROM direct_chats WHERE user_id = $1) AS of_user,
    (SELECT COUNT(*) FROM direct_chats) AS open";
// The bot's direct chats with hosts and moderators.

/// `(user_id)`.
const STAFF_CHAT: &str = "SELECT room_id FROM staff_chats WHERE user_id = $1";
/// `(user_id, room_id, at)`: a new chat replaces the one the user left.
const REMEMBER_STAFF_CHAT: &str = "INSERT INTO staff_chats (user_id, room_id, created_at) VALUES ($1, $2, $3)
    ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id, created_at = excluded.created_at";
// Status-page sessions.

const DROP_EXPIRED_SESSIONS: &str = "DELETE FROM status_sessions WHERE expires_at <= $1";
const START_SESSION: &str = "INSERT INTO status_sessions (session_id, created_at, expires_at) VALUES ($1, $2, $3)";
const SESSION_LIVE: &str = "SELECT 1 FROM status_sessions WHERE session_id = $1 AND expires_at > $2";
const END_SESSION: &str = "DELETE FROM status_sessions WHERE session_id = $1";

/// How many direct chats strangers have open with the bot ([`AdminStore::direct_chat_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectChatCounts {
    /// The user's.
    pub of_user: u64,
    /// Everyone's.
    pub open: u64,
}

/// The admin commands' inbox, strangers' direct chats, and status-page sessions.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Records an admin's command for a reservation and makes it due now (failures
    /// forgotten, so it is tried at once). `false` when there is no such reservation.
    async fn admin_action(
        &self, id: &ReservationId, action: AdminAction, now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Keeps events for the admin commands (see `admin.rs`) until they are handled; an
    /// event already kept is kept once.
    async fn queue_admin_events(&self, events: &[HomeserverEvent], now: DateTime<Utc>) -> Result<(), StoreError>;

    /// The oldest kept admin events, in the order they came, at most `limit`.
    async fn admin_inbox(&self, limit: u32) -> Result<Vec<QueuedAdminEvent>, StoreError>;

    /// Drops a handled admin event.
    async fn forget_admin_event(&self, event_id: &str) -> Result<(), StoreError>;

    /// The bot joined a direct chat a stranger opened (to claim a ticket).
    async fn direct_chat_active(&self, room_id: &RoomId, user: &UserId, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// A claim was sent in the room: if it is a stranger's direct chat, it is not idle.
    async fn direct_chat_used(&self, room_id: &RoomId, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Direct chats unused since `before`, the longest idle first, at most `limit`.
    async fn idle_direct_chats(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<OwnedRoomId>, StoreError>;

    /// The bot left the direct chat.
    async fn forget_direct_chat(&self, room_id: &RoomId) -> Result<(), StoreError>;

    /// Who opened the direct chat `room_id`, when it is a stranger's direct chat the bot
    /// is in (`None` for any other room).
    async fn direct_chat_opener(&self, room_id: &RoomId) -> Result<Option<OwnedUserId>, StoreError>;

    /// How many direct chats `user` has open with the bot, and how many are open in all.
    async fn direct_chat_counts(&self, user: &UserId) -> Result<DirectChatCounts, StoreError>;

    /// The direct chat the bot opened with a host or moderator, if it did
    /// (docs/moderation.md, "Commands in the room").
    async fn staff_chat(&self, user: &UserId) -> Result<Option<OwnedRoomId>, StoreError>;

    /// The bot opened `room_id` as its direct chat with `user`, in place of any before.
    async fn remember_staff_chat(&self, user: &UserId, room_id: &RoomId, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Records a status-page login, live until `expires_at`, and forgets the sessions
    /// expired by `now` (logins need the API token, so the table stays small).
    async fn start_status_session(
        &self, id: &SessionId, now: DateTime<Utc>, expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Whether a status-page session is live at `now`: started, not ended, not expired.
    async fn status_session_live(&self, id: &SessionId, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Ends a status-page session (a logout); ending one that is not live changes nothing.
    async fn end_status_session(&self, id: &SessionId) -> Result<(), StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl AdminStore for SqlStore<D> {
    async fn admin_action(
        &self, id: &ReservationId, action: AdminAction, now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (id, now) = (id.as_str(), to_millis(now));
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        if sqlx::query(RESERVATION_EXISTS).bind(id).fetch_optional(&mut *tx).await?.is_none() {
            return Ok(false);
        }
        let signal = match action {
            AdminAction::OpenNow => Some(ADMIN_OPEN),
            AdminAction::ArchiveNow => Some(ADMIN_ARCHIVE),
            AdminAction::Retry => None,
        };
        if let Some(signal) = signal {
            sqlx::query(signal).bind(id).bind(now).execute(&mut *tx).await?;
        }
        sqlx::query(ADMIN_DUE).bind(id).bind(now).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn queue_admin_events(&self, events: &[HomeserverEvent], now: DateTime<Utc>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        for event in events {
            let text = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let query = sqlx::query(QUEUE_ADMIN_EVENT).bind(event.event_id.as_str()).bind(text.as_str());
            query.bind(to_millis(now)).execute(&mut *tx).await?;
        }
        Ok(tx.commit().await?)
    }

    async fn admin_inbox(&self, limit: u32) -> Result<Vec<QueuedAdminEvent>, StoreError> {
        let found = sqlx::query(ADMIN_INBOX).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        found.iter().map(admin_event).collect()
    }

    async fn forget_admin_event(&self, event_id: &str) -> Result<(), StoreError> {
        sqlx::query(FORGET_ADMIN_EVENT).bind(event_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn direct_chat_active(&self, room_id: &RoomId, user: &UserId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let query = sqlx::query(DIRECT_CHAT_ACTIVE).bind(room_id.as_str()).bind(user.as_str()).bind(to_millis(now));
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn direct_chat_used(&self, room_id: &RoomId, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(DIRECT_CHAT_USED).bind(room_id.as_str()).bind(to_millis(now)).execute(&self.pool).await?;
        Ok(())
    }

    async fn idle_direct_chats(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<OwnedRoomId>, StoreError> {
        let query = sqlx::query(IDLE_DIRECT_CHATS).bind(to_millis(before)).bind(i64::from(limit));
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| parsed(row, "room_id", |r: &str| RoomId::parse(r)))
            .collect()
    }

    async fn forget_direct_chat(&self, room_id: &RoomId) -> Result<(), StoreError> {
        sqlx::query(FORGET_DIRECT_CHAT).bind(room_id.as_str()).execute(&self.pool).await?;
        Ok(())
    }

    async fn direct_chat_opener(&self, room_id: &RoomId) -> Result<Option<OwnedUserId>, StoreError> {
        let found = sqlx::query(DIRECT_CHAT_OPENER).bind(room_id.as_str()).fetch_optional(&self.pool).await?;
        found.map(|row| parsed(&row, "user_id", |u: &str| UserId::parse(u))).transpose()
    }

    async fn direct_chat_counts(&self, user: &UserId) -> Result<DirectChatCounts, StoreError> {
        let row = sqlx::query(DIRECT_CHAT_COUNTS).bind(user.as_str()).fetch_one(&self.pool).await?;
        let count = |col: &str| row.int(col).map(|n| u64::try_from(n).unwrap_or_default());
        Ok(DirectChatCounts { of_user: count("of_user")?, open: count("open")? })
    }

    async fn staff_chat(&self, user: &UserId) -> Result<Option<OwnedRoomId>, StoreError> {
        let found = sqlx::query(STAFF_CHAT).bind(user.as_str()).fetch_optional(&self.pool).await?;
        found.map(|row| parsed(&row, "room_id", |r: &str| RoomId::parse(r))).transpose()
    }

    async fn remember_staff_chat(&self, user: &UserId, room_id: &RoomId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let query = sqlx::query(REMEMBER_STAFF_CHAT).bind(user.as_str()).bind(room_id.as_str());
        query.bind(to_millis(now)).execute(&self.pool).await?;
        Ok(())
    }

    async fn start_status_session(
        &self, id: &SessionId, now: DateTime<Utc>, expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sqlx::query(DROP_EXPIRED_SESSIONS).bind(to_millis(now)).execute(&mut *tx).await?;
        sqlx::query(START_SESSION)
            .bind(id.as_str())
            .bind(to_millis(now))
            .bind(to_millis(expires_at))
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }

    async fn status_session_live(&self, id: &SessionId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.exists(SESSION_LIVE, id.as_str(), Some(now)).await
    }

    async fn end_status_session(&self, id: &SessionId) -> Result<(), StoreError> {
        sqlx::query(END_SESSION).bind(id.as_str()).execute(&self.pool).await?;
        Ok(())
    }
}

/// A row of `ADMIN_INBOX`; an event whose text does not read back is kept as an
/// error, so that one row cannot stop the others.
pub(super) fn admin_event(row: &impl Read) -> Result<QueuedAdminEvent, StoreError> {
    let event = serde_json::from_str(&row.text("event")?).map_err(|e| format!("cannot be read: {e}"));
    Ok(QueuedAdminEvent { event_id: row.text("event_id")?, received_at: from_millis(row.int("received_at")?)?, event })
}
