//! What calendar feeds read ([`CalendarStore`], docs/calendar.md): a channel's reservations,
//! and those of one ticket holder, within a [`FeedWindow`]. The reschedule count they
//! show is kept by the reservation's upsert (`intake.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::UserId;

use super::{
    StoreError,
    dialect::{SqlStore, on_both_databases},
    from_millis,
    rows::{Read, corrupt, opt_parsed, parsed},
    to_millis,
};
use crate::model::{
    Description, ReservationId, StreamUrl, Title,
    calendar::{CalendarEntry, FeedWindow},
};

/// The columns of a [`CalendarEntry`], read by [`entry`].
macro_rules! entries {
    ($where:literal) => {
        concat!(
            "SELECT r.reservation_id, r.title, r.description, r.starts_at, r.ends_at, r.stream_url, r.reschedules,
                r.updated_at, s.cancelled_at
            FROM reservations r
            LEFT JOIN reservation_signals s ON s.reservation_id = r.reservation_id ",
            $where,
            " ORDER BY r.starts_at, r.reservation_id LIMIT $3"
        )
    };
}

/// `(channel_id, ends_from, limit)`.
const CHANNEL_ENTRIES: &str = entries!("WHERE r.channel_id = $1 AND r.ends_at >= $2");
/// The channel's name as last described, and whether the channel is known at all:
/// `(channel_id)`.
const CHANNEL_NAME: &str =
    "SELECT channel_name FROM reservations WHERE channel_id = $1 ORDER BY updated_at DESC, reservation_id LIMIT 1";
/// `(user_id, ends_from, limit)`: where the user holds a ticket not revoked. Found from
/// the holder's tickets (`tickets_of_holder`), not by a walk over every reservation.
const HOLDER_ENTRIES: &str = entries!(
    "WHERE r.ends_at >= $2 AND r.reservation_id IN (SELECT t.reservation_id FROM tickets t
        WHERE t.user_id = $1 AND t.revoked_at IS NULL)"
);
/// Whether the user holds a ticket still worth a feed: `(user_id, ends_from, now)`. Not
/// revoked, for a show not archived; a cancelled one only until its start, so that the
/// holder's calendar hears of the cancellation in that time.
const HOLDER_ACTIVE: &str = "SELECT 1 FROM tickets t
    JOIN reservations r ON r.reservation_id = t.reservation_id
    LEFT JOIN reservation_signals s ON s.reservation_id = r.reservation_id
    LEFT JOIN lifecycle l ON l.reservation_id = r.reservation_id
    WHERE t.user_id = $1 AND t.revoked_at IS NULL AND r.ends_at >= $2 AND l.archived_at IS NULL
        AND (s.cancelled_at IS NULL OR r.starts_at > $3)
    LIMIT 1";

/// A channel's feed: its name and its reservations in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCalendar {
    pub name: Title,
    pub entries: Vec<CalendarEntry>,
}

/// What calendar feeds read.
#[async_trait]
pub trait CalendarStore: Send + Sync {
    /// The channel's reservations in `window`, earliest first; `None` when no reservation
    /// ever named the channel.
    async fn channel_calendar(
        &self, channel_id: &str, window: FeedWindow,
    ) -> Result<Option<ChannelCalendar>, StoreError>;

    /// The reservations in `window` where `user` holds a ticket not revoked, earliest
    /// first; `None` once none of them is active at `now` (not archived, and not
    /// cancelled unless still to start), when the feed stops answering.
    async fn holder_calendar(
        &self, user: &UserId, window: FeedWindow, now: DateTime<Utc>,
    ) -> Result<Option<Vec<CalendarEntry>>, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl CalendarStore for SqlStore<D> {
    async fn channel_calendar(
        &self, channel_id: &str, window: FeedWindow,
    ) -> Result<Option<ChannelCalendar>, StoreError> {
        let Some(name) = sqlx::query(CHANNEL_NAME).bind(channel_id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let name = parsed(&name, "channel_name", Title::parse)?;
        let rows = sqlx::query(CHANNEL_ENTRIES)
            .bind(channel_id)
            .bind(to_millis(window.ends_from))
            .bind(i64::from(window.limit))
            .fetch_all(&self.pool)
            .await?;
        let entries = rows.iter().map(entry).collect::<Result<_, _>>()?;
        Ok(Some(ChannelCalendar { name, entries }))
    }

    async fn holder_calendar(
        &self, user: &UserId, window: FeedWindow, now: DateTime<Utc>,
    ) -> Result<Option<Vec<CalendarEntry>>, StoreError> {
        let active = sqlx::query(HOLDER_ACTIVE)
            .bind(user.as_str())
            .bind(to_millis(window.ends_from))
            .bind(to_millis(now))
            .fetch_optional(&self.pool)
            .await?;
        if active.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(HOLDER_ENTRIES)
            .bind(user.as_str())
            .bind(to_millis(window.ends_from))
            .bind(i64::from(window.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry).collect::<Result<_, _>>().map(Some)
    }
}

/// A row of `entries!`.
fn entry(row: &(impl Read + ?Sized)) -> Result<CalendarEntry, StoreError> {
    let updated_at = from_millis(row.int("updated_at")?)?;
    let cancelled_at = row.opt_time("cancelled_at")?;
    Ok(CalendarEntry {
        id: parsed(row, "reservation_id", ReservationId::parse)?,
        title: parsed(row, "title", Title::parse)?,
        description: opt_parsed(row, "description", Description::parse)?,
        starts_at: from_millis(row.int("starts_at")?)?,
        ends_at: from_millis(row.int("ends_at")?)?,
        stream_url: opt_parsed(row, "stream_url", StreamUrl::parse)?,
        reschedules: u32::try_from(row.int("reschedules")?).map_err(|e| corrupt("reschedules", e))?,
        recorded_at: cancelled_at.map_or(updated_at, |at| at.max(updated_at)),
        cancelled: cancelled_at.is_some(),
    })
}
