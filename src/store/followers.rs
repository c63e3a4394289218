//! A channel's followers ([`FollowerStore`], docs/followers.md): who follows it, whether
//! they are in its space and announcements room yet, and who is to be taken out; the
//! channel's two rooms. Recorded by `follower.added` / `follower.removed` (`intake.rs`);
//! carried out by the followers' worker (`followers/`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::{OwnedRoomId, OwnedUserId};

use super::{
    StoreError,
    dialect::{SqlStore, on_both_databases},
    rows::{Read, corrupt},
    to_millis,
};
use crate::model::{Channel, ExternalId, Title};

/// Channels with followers whose space or announcements room is not known yet, named as
/// their latest reservation names them (else by their id). `(limit)`.
const TO_FURNISH: &str = "SELECT f.channel_id,
        (SELECT r.channel_name FROM reservations r WHERE r.channel_id = f.channel_id
         ORDER BY r.updated_at DESC LIMIT 1) AS channel_name,
        s.room_id AS space, s.announcements_room_id AS announcements
    FROM (SELECT DISTINCT channel_id FROM followers WHERE removed_at IS NULL) f
    LEFT JOIN spaces s ON s.channel_id = f.channel_id
    WHERE s.room_id IS NULL OR s.announcements_room_id IS NULL
    ORDER BY f.channel_id LIMIT $1";
/// `(channel_id, space, name, announcements)`.
const ROOMS_MADE: &str = "INSERT INTO spaces (channel_id, room_id, name, announcements_room_id) VALUES ($1, $2, $3, $4)
    ON CONFLICT (channel_id) DO UPDATE SET room_id = excluded.room_id, announcements_room_id = excluded.announcements_room_id";
/// The channel's reservations still to come are planned again, so that what waited for an
/// announcements room (a reminder, "live now", the link of a room open to the channel) goes
/// out now rather than never: `(at, channel_id)`. Those with nothing left to do have no wake.
const CHANNEL_DUE: &str = "UPDATE lifecycle SET next_due_at = $1, facts_version = facts_version + 1
    WHERE next_due_at IS NOT NULL
        AND reservation_id IN (SELECT reservation_id FROM reservations WHERE channel_id = $2)";
/// Followers to let in or take out, in channels whose rooms exist, oldest first. `(limit)`.
const PENDING: &str = "SELECT f.channel_id, f.user_id, f.invited_at, f.removed_at,
        s.room_id AS space, s.announcements_room_id AS announcements
    FROM followers f JOIN spaces s ON s.channel_id = f.channel_id
    WHERE s.announcements_room_id IS NOT NULL AND (f.removed_at IS NOT NULL OR f.invited_at IS NULL)
    ORDER BY f.added_at, f.channel_id, f.user_id LIMIT $1";
/// `(channel_id, user_id, at)`: only one still following.
const INVITED: &str =
    "UPDATE followers SET invited_at = $3 WHERE channel_id = $1 AND user_id = $2 AND removed_at IS NULL";
/// `(channel_id, user_id)`: only one still removed (following again keeps the row).
const GONE: &str = "DELETE FROM followers WHERE channel_id = $1 AND user_id = $2 AND removed_at IS NOT NULL";
/// `(channel_id)`.
const FOLLOWING: &str = "SELECT user_id FROM followers WHERE channel_id = $1 AND removed_at IS NULL ORDER BY user_id";

/// A channel with followers, and its rooms as far as they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRooms {
    pub channel: Channel,
    pub space: Option<OwnedRoomId>,
    pub announcements: Option<OwnedRoomId>,
}

/// What is to be done about one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerChange {
    /// Into the space and the announcements room.
    LetIn,
    /// Out of both (`invited`: they were let in, so there is someone to kick).
    TakeOut { invited: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFollower {
    pub channel_id: ExternalId,
    pub user_id: OwnedUserId,
    pub space: OwnedRoomId,
    pub announcements: OwnedRoomId,
    pub change: FollowerChange,
}

#[async_trait]
pub trait FollowerStore: Send + Sync {
    /// Channels with followers whose rooms are not all made yet.
    async fn channels_to_furnish(&self, limit: u32) -> Result<Vec<ChannelRooms>, StoreError>;

    /// The channel's space and announcements room exist; its reservations still to come
    /// are planned again.
    async fn channel_rooms_made(
        &self, channel: &Channel, space: &OwnedRoomId, announcements: &OwnedRoomId,
    ) -> Result<(), StoreError>;

    /// Followers to let in or take out, oldest first.
    async fn pending_followers(&self, limit: u32) -> Result<Vec<PendingFollower>, StoreError>;

    /// The follower was invited to both rooms.
    async fn follower_let_in(
        &self, channel: &ExternalId, user: &OwnedUserId, at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The removed follower is out of both rooms: forgotten.
    async fn follower_gone(&self, channel: &ExternalId, user: &OwnedUserId) -> Result<(), StoreError>;

    /// The channel's followers now.
    async fn followers(&self, channel: &ExternalId) -> Result<Vec<OwnedUserId>, StoreError>;
}

fn room(row: &impl Read, column: &str) -> Result<Option<OwnedRoomId>, StoreError> {
    row.opt_text(column)?.map(|id| OwnedRoomId::try_from(id).map_err(|e| corrupt("spaces room", e))).transpose()
}

fn user(text: String) -> Result<OwnedUserId, StoreError> {
    OwnedUserId::try_from(text).map_err(|e| corrupt("followers user_id", e))
}

fn channel_id(text: String) -> Result<ExternalId, StoreError> {
    ExternalId::parse(&text).map_err(|e| corrupt("followers channel_id", e))
}

#[apply(on_both_databases!)]
#[async_trait]
impl FollowerStore for SqlStore<D> {
    async fn channels_to_furnish(&self, limit: u32) -> Result<Vec<ChannelRooms>, StoreError> {
        let rows = sqlx::query(TO_FURNISH).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id = channel_id(row.text("channel_id")?)?;
                let name = row.opt_text("channel_name")?.unwrap_or_else(|| id.as_str().to_owned());
                let name = Title::parse(&name).map_err(|e| corrupt("channel_name", e))?;
                let (space, announcements) = (room(row, "space")?, room(row, "announcements")?);
                Ok(ChannelRooms { channel: Channel { id, name }, space, announcements })
            })
            .collect()
    }

    async fn channel_rooms_made(
        &self, channel: &Channel, space: &OwnedRoomId, announcements: &OwnedRoomId,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(ROOMS_MADE)
            .bind(channel.id.as_str())
            .bind(space.as_str())
            .bind(channel.name.as_str())
            .bind(announcements.as_str());
        let mut tx = self.pool.begin().await?;
        query.execute(&mut *tx).await?;
        sqlx::query(CHANNEL_DUE).bind(to_millis(Utc::now())).bind(channel.id.as_str()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pending_followers(&self, limit: u32) -> Result<Vec<PendingFollower>, StoreError> {
        let rows = sqlx::query(PENDING).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let change = match row.opt_int("removed_at")? {
                    Some(_) => FollowerChange::TakeOut { invited: row.opt_int("invited_at")?.is_some() },
                    None => FollowerChange::LetIn,
                };
                let missing = || corrupt("spaces", "no room");
                Ok(PendingFollower {
                    channel_id: channel_id(row.text("channel_id")?)?,
                    user_id: user(row.text("user_id")?)?,
                    space: room(row, "space")?.ok_or_else(missing)?,
                    announcements: room(row, "announcements")?.ok_or_else(missing)?,
                    change,
                })
            })
            .collect()
    }

    async fn follower_let_in(
        &self, channel: &ExternalId, user: &OwnedUserId, at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(INVITED).bind(channel.as_str()).bind(user.as_str()).bind(to_millis(at));
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn follower_gone(&self, channel: &ExternalId, user: &OwnedUserId) -> Result<(), StoreError> {
        sqlx::query(GONE).bind(channel.as_str()).bind(user.as_str()).execute(&self.pool).await?;
        Ok(())
    }

    async fn followers(&self, channel: &ExternalId) -> Result<Vec<OwnedUserId>, StoreError> {
        let rows = sqlx::query(FOLLOWING).bind(channel.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(|row| user(row.text("user_id")?)).collect()
    }
}
