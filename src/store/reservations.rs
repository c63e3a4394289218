//! Reservations in the store: the statements that read them back with their signals,
//! lifecycle and counts (`records!`, `without_counts!`), their decoding ([`record`]), and
//! [`ReservationStore`]. Recording webhooks is `intake.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::OwnedUserId;

use super::{
    MemberCounts, Outcome, Receipt, ReservationRecord, Signals, StoreError, TicketCounts, Windows,
    dialect::{SqlStore, on_both_databases},
    from_millis,
    rows::Read,
    rows::corrupt,
    to_millis,
};
use crate::model::{
    Access, Archive, AutoJoin, Channel, Description, ExternalId, ReplayOffset, Reservation, ReservationId, Revision,
    RulesOverride, StreamKeyHash, StreamUrl, Title, WebhookEvent, replay::Edge,
};

/// A reservation with its signals, lifecycle and the counts named by `$counts`, filtered
/// by `$where`; read back by `record`.
macro_rules! select_with {
    ($counts:literal, $where:literal) => {
        concat!(
            "SELECT r.*, s.cancelled_at, s.cancel_reason, s.stream_started_at, s.stream_ended_at,
                s.admin_opened_at, s.admin_archived_at, l.last_error, l.attempts,
                l.room_id AS room_id, l.archived_at AS archived_at, l.rules_set, l.rules_set_over, ",
            $counts,
            " FROM reservations r
            LEFT JOIN reservation_signals s ON s.reservation_id = r.reservation_id
            LEFT JOIN lifecycle l ON l.reservation_id = r.reservation_id ",
            $where
        )
    };
}
pub(super) use select_with;
/// Reservations with their ticket and member counts, filtered by `$where`.
macro_rules! records {
    ($where:literal) => {
        $crate::store::reservations::select_with!(
            "(SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND (t.user_id IS NOT NULL OR t.claim_hash IS NOT NULL)
                    AND t.revoked_at IS NULL) AS tickets_active,
                (SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND t.user_id IS NULL AND t.claim_hash IS NOT NULL
                    AND t.revoked_at IS NULL) AS tickets_unclaimed,
                (SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND t.bound_how IS NOT NULL AND t.revoked_at IS NULL) AS tickets_claimed,
                (SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND t.revoked_at IS NOT NULL) AS tickets_revoked,
                (SELECT COUNT(*) FROM tickets t JOIN room_invites i
                    ON i.reservation_id = t.reservation_id AND i.user_id = t.user_id
                    WHERE t.reservation_id = r.reservation_id AND t.revoked_at IS NULL
                    AND i.failure IS NOT NULL) AS tickets_uninvitable,
                (SELECT COUNT(DISTINCT t.user_id) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND t.user_id IS NOT NULL AND t.revoked_at IS NULL) AS tickets_holders,
                (SELECT COUNT(*) FROM room_members m WHERE m.room_id = l.room_id
                    AND m.membership = 'invite') AS members_invited,
                (SELECT COUNT(*) FROM room_members m WHERE m.room_id = l.room_id
                    AND m.membership = 'join') AS members_joined,
                (SELECT COUNT(*) FROM room_members m WHERE m.room_id = l.room_id
                    AND m.membership = 'join' AND EXISTS (SELECT 1 FROM tickets t
                        WHERE t.reservation_id = r.reservation_id AND t.user_id = m.user_id
                        AND t.revoked_at IS NULL)) AS members_holders_joined",
            $where
        )
    };
}
pub(super) use records;
/// Reservations filtered by `$where` with their counts left at zero, for reads that
/// must not count every ticket and member (`record` reads the columns all the same).
macro_rules! without_counts {
    ($where:literal) => {
        $crate::store::reservations::select_with!(
            "CAST(0 AS BIGINT) AS tickets_active, CAST(0 AS BIGINT) AS tickets_revoked,
                CAST(0 AS BIGINT) AS tickets_uninvitable, CAST(0 AS BIGINT) AS tickets_unclaimed,
                CAST(0 AS BIGINT) AS tickets_claimed,
                CAST(0 AS BIGINT) AS tickets_holders, CAST(0 AS BIGINT) AS members_invited,
                CAST(0 AS BIGINT) AS members_joined, CAST(0 AS BIGINT) AS members_holders_joined",
            $where
        )
    };
}
pub(super) const RECORD_BY_ID: &str = records!("WHERE r.reservation_id = $1");
/// The reservations with a stream key (`$1`, its hash): at most one active, and any
/// number cancelled or archived.
const RECORDS_BY_STREAM_KEY: &str = without_counts!("WHERE r.stream_key_hash = $1 ORDER BY r.reservation_id LIMIT 16");
/// `(reservation_id)`: its reported stream edges, in time order.
const STREAM_EDGES: &str = "SELECT edge, at FROM stream_edges WHERE reservation_id = $1 ORDER BY at, edge";
/// The reservation whose room is `$1`, the counts left at zero (what screening its
/// messages reads, on every transaction).
const RECORD_IN_ROOM: &str = without_counts!("WHERE l.room_id = $1");
/// One reservation as planning reads it, the counts left at zero (`LifecycleStore::planning`).
pub(super) const RECORD_TO_PLAN: &str = without_counts!("WHERE r.reservation_id = $1");
/// A page: `(after reservation_id, limit)`.
const RECORDS_AFTER: &str = records!("WHERE r.reservation_id > $1 ORDER BY r.reservation_id LIMIT $2");
/// A page with what a phase needs and the counts left at zero: the counts read the
/// tickets and members tables, which a walk over every reservation must not.
const SCHEDULES_AFTER: &str = without_counts!("WHERE r.reservation_id > $1 ORDER BY r.reservation_id LIMIT $2");
/// One channel's reservations that may be in their window around now, without the
/// counts: `(channel_id, starts_at at most, ends_at at least, limit)`. The caller gives
/// bounds wide enough for any `open_before`, `close_after` and overrun and keeps the ones
/// whose window holds now (`schedule`); `reservations_by_channel` finds them.
const CHANNEL_AROUND: &str = without_counts!(
    "WHERE r.channel_id = $1 AND r.starts_at <= $2 AND r.ends_at >= $3 ORDER BY r.starts_at, r.reservation_id LIMIT $4"
);

/// Whether reservations are read with their ticket and member counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counts {
    Counted,
    /// Left at zero, for walks over every reservation (phase counts): the counts read
    /// the tickets and members tables, which such a walk must not.
    Zero,
}

/// Reservations: recording webhooks, and reading reservations back.
#[async_trait]
pub trait ReservationStore: Send + Sync {
    /// Records one webhook in one transaction: its receipt (for deduplication) and its
    /// effect. Returns only after the commit.
    async fn record_webhook(&self, receipt: &Receipt<'_>, event: &WebhookEvent) -> Result<Outcome, StoreError> {
        self.record_webhook_within(receipt, event, Windows::WIDEST).await
    }

    /// [`ReservationStore::record_webhook`] under the config's `windows` (the stream-key rule).
    async fn record_webhook_within(
        &self, receipt: &Receipt<'_>, event: &WebhookEvent, windows: Windows,
    ) -> Result<Outcome, StoreError>;

    async fn reservation(&self, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError>;

    /// The reservations whose stream key hashes to `key`, without their counts: at most
    /// one active, and any number cancelled or archived.
    async fn reservations_by_stream_key(&self, key: &StreamKeyHash) -> Result<Vec<ReservationRecord>, StoreError>;

    /// Every stream start and end reported for the reservation, as reported
    /// (`model::replay` makes the recording's segments of them).
    async fn stream_edges(&self, id: &ReservationId) -> Result<Vec<(Edge, DateTime<Utc>)>, StoreError>;

    /// The reservation whose room this is, its counts left at zero.
    async fn reservation_in_room(&self, room: &ruma::RoomId) -> Result<Option<ReservationRecord>, StoreError>;

    /// The reservations among `ids` that exist, with their counts, in one query; in no
    /// particular order.
    async fn reservations_by_id(&self, ids: &[ReservationId]) -> Result<Vec<ReservationRecord>, StoreError>;

    /// Reservations ordered by id, after `after`, at most `limit`, with their ticket and
    /// member counts or without them ([`Counts`]). Rows that do not read back are left
    /// out (`readable_records`) and the page is filled up from the rows after them: a
    /// short page still means the last one.
    async fn reservations_after(
        &self, after: Option<&ReservationId>, limit: u32, counts: Counts,
    ) -> Result<Vec<ReservationRecord>, StoreError>;

    /// A channel's reservations with `starts_at <= starts_by` and `ends_at >= ends_from`,
    /// without the counts (zeros), earliest start first, at most `limit`: the candidates
    /// for "the channel's reservation whose window holds now" (Owncast's webhooks).
    async fn channel_reservations(
        &self, channel_id: &str, starts_by: DateTime<Utc>, ends_from: DateTime<Utc>, limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl ReservationStore for SqlStore<D> {
    async fn record_webhook_within(
        &self, receipt: &Receipt<'_>, event: &WebhookEvent, windows: Windows,
    ) -> Result<Outcome, StoreError> {
        D::record_webhook(self, receipt, event, windows).await
    }

    async fn reservation(&self, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError> {
        D::reservation(self, id).await
    }

    async fn reservations_by_stream_key(&self, key: &StreamKeyHash) -> Result<Vec<ReservationRecord>, StoreError> {
        let found = sqlx::query(RECORDS_BY_STREAM_KEY).bind(key.as_str()).fetch_all(&self.pool).await?;
        found.iter().map(record).collect()
    }

    async fn stream_edges(&self, id: &ReservationId) -> Result<Vec<(Edge, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(STREAM_EDGES).bind(id.as_str()).fetch_all(&self.pool).await?;
        let edge = |row: &D::Row| -> Result<(Edge, DateTime<Utc>), StoreError> {
            let edge = Edge::parse(&row.text("edge")?).map_err(|e| corrupt("stream_edges", e))?;
            Ok((edge, from_millis(row.int("at")?)?))
        };
        rows.iter().map(edge).collect()
    }

    async fn reservation_in_room(&self, room: &ruma::RoomId) -> Result<Option<ReservationRecord>, StoreError> {
        let found = sqlx::query(RECORD_IN_ROOM).bind(room.as_str()).fetch_optional(&self.pool).await?;
        found.as_ref().map(record).transpose()
    }

    async fn reservations_by_id(&self, ids: &[ReservationId]) -> Result<Vec<ReservationRecord>, StoreError> {
        let found = D::records_by_id(ids)?.fetch_all(&self.pool).await?;
        // One unreadable row is left out rather than failing the others (the status page).
        let read = found.iter().map(|row| (row.text("reservation_id").unwrap_or_default(), record(row)));
        Ok(super::readable_records(read))
    }

    async fn reservations_after(
        &self, after: Option<&ReservationId>, limit: u32, counts: Counts,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        let query = match counts {
            Counts::Counted => RECORDS_AFTER,
            Counts::Zero => SCHEDULES_AFTER,
        };
        // The raw id, not a parsed one: an unreadable row's id may not parse either.
        let mut cursor = after.map_or_else(String::new, |id| id.as_str().to_owned());
        let mut records = Vec::new();
        loop {
            let want = limit as usize - records.len();
            let page = sqlx::query(query).bind(cursor.as_str()).bind(want as i64).fetch_all(&self.pool).await?;
            let mut read = Vec::with_capacity(page.len());
            for row in &page {
                read.push((row.text("reservation_id")?, record(row)));
            }
            let Some((last, _)) = read.last() else { break };
            cursor = last.clone();
            records.extend(super::readable_records(read));
            if page.len() < want || records.len() == limit as usize {
                break;
            }
        }
        Ok(records)
    }

    async fn channel_reservations(
        &self, channel_id: &str, starts_by: DateTime<Utc>, ends_from: DateTime<Utc>, limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        let found = sqlx::query(CHANNEL_AROUND)
            .bind(channel_id)
            .bind(to_millis(starts_by))
            .bind(to_millis(ends_from))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let read = found.iter().map(|row| (row.text("reservation_id").unwrap_or_default(), record(row)));
        Ok(super::readable_records(read))
    }
}

#[apply(on_both_databases!)]
impl SqlStore<D> {
    /// [`Dialect::reservation`] through the pool.
    pub(super) async fn reservation_from_pool(
        &self, id: &ReservationId,
    ) -> Result<Option<ReservationRecord>, StoreError> {
        let row = sqlx::query(RECORD_BY_ID).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(record).transpose()
    }
}

/// A reservation record from a row of `records!`'s shape.
pub(super) fn record(row: &(impl Read + ?Sized)) -> Result<ReservationRecord, StoreError> {
    let id = ReservationId::parse(&row.text("reservation_id")?).map_err(|e| corrupt("reservation_id", e))?;
    let hosts: Vec<OwnedUserId> = serde_json::from_str(&row.text("hosts")?).map_err(|e| corrupt("hosts", e))?;
    let channel = match (row.opt_text("channel_id")?, row.opt_text("channel_name")?) {
        (Some(cid), Some(name)) => Some(Channel {
            id: ExternalId::parse(&cid).map_err(|e| corrupt("channel_id", e))?,
            name: Title::parse(&name).map_err(|e| corrupt("channel_name", e))?,
        }),
        _ => None,
    };
    let reservation = Reservation {
        id,
        revision: row.opt_int("revision")?.map(|v| Revision(v as u64)),
        title: Title::parse(&row.text("title")?).map_err(|e| corrupt("title", e))?,
        description: row
            .opt_text("description")?
            .map(|d| Description::parse(&d).map_err(|e| corrupt("description", e)))
            .transpose()?,
        starts_at: from_millis(row.int("starts_at")?)?,
        ends_at: from_millis(row.int("ends_at")?)?,
        stream_url: row
            .opt_text("stream_url")?
            .map(|u| StreamUrl::parse(&u).map_err(|e| corrupt("stream_url", e)))
            .transpose()?,
        channel,
        hosts,
        open_before_seconds: row.opt_int("open_before_seconds")?.map(|s| s as u32),
        close_after_seconds: row.opt_int("close_after_seconds")?.map(|s| s as u32),
        transcript: row.opt_int("transcript")?.map(|t| t != 0),
        stream_key: row
            .opt_text("stream_key_hash")?
            .map(|h| StreamKeyHash::parse(&h).map_err(|e| corrupt("stream_key_hash", e)))
            .transpose()?,
        rules: rules_in_force(row)?,
        moderators: serde_json::from_str(&row.text("moderators")?).map_err(|e| corrupt("moderators", e))?,
        archive: match row.int("archive_public")? {
            0 => Archive::Private,
            _ => Archive::Public { indexable: row.int("archive_indexable")? != 0 },
        },
        replay_offset: row
            .opt_int("replay_offset_ms")?
            .map(|ms| ReplayOffset::parse(ms).map_err(|e| corrupt("replay_offset_ms", e)))
            .transpose()?,
        auto_join: row
            .opt_text("auto_join")?
            .map(|text| AutoJoin::parse(&text).map_err(|e| corrupt("auto_join", e)))
            .transpose()?,
        access: Access::parse(&row.text("access")?).map_err(|e| corrupt("access", e))?,
    };
    let signals = Signals {
        cancelled_at: row.opt_time("cancelled_at")?,
        cancel_reason: row.opt_text("cancel_reason")?,
        stream_started_at: row.opt_time("stream_started_at")?,
        stream_ended_at: row.opt_time("stream_ended_at")?,
        first_seen_at: row.opt_time("first_seen_at")?,
        admin_opened_at: row.opt_time("admin_opened_at")?,
        admin_archived_at: row.opt_time("admin_archived_at")?,
    };
    let tickets = TicketCounts {
        active: row.int("tickets_active")? as u64,
        revoked: row.int("tickets_revoked")? as u64,
        uninvitable: row.int("tickets_uninvitable")? as u64,
        unclaimed: row.int("tickets_unclaimed")? as u64,
        claimed: row.int("tickets_claimed")? as u64,
        holders: row.int("tickets_holders")? as u64,
    };
    Ok(ReservationRecord {
        reservation,
        signals,
        tickets,
        room_id: row.opt_text("room_id")?,
        members: MemberCounts {
            invited: row.int("members_invited")? as u64,
            joined: row.int("members_joined")? as u64,
            holders_joined: row.int("members_holders_joined")? as u64,
        },
        archived: row.opt_time("archived_at")?.is_some(),
        last_error: row.opt_text("last_error")?,
        attempts: row.opt_int("attempts")?.unwrap_or(0) as u32,
    })
}

/// A rules object stored as JSON text (`chat_rules`, `rules_set`), read as it was checked.
fn stored_rules(text: Option<&str>, column: &str) -> Result<RulesOverride, StoreError> {
    let Some(text) = text else { return Ok(RulesOverride::default()) };
    let json = serde_json::from_str(text).map_err(|e| corrupt(column, e))?;
    RulesOverride::parse(&json, column).map_err(|e| corrupt(column, e))
}

/// The reservation's `chat.rules` with what its room's hosts and moderators set by
/// command over them, while the platform has not changed `chat.rules` since (then its
/// newer word is in force): the set rules were set over `rules_set_over`.
fn rules_in_force(row: &(impl Read + ?Sized)) -> Result<RulesOverride, StoreError> {
    let given = row.opt_text("chat_rules")?;
    let rules = stored_rules(given.as_deref(), "chat_rules")?;
    match row.opt_text("rules_set")? {
        Some(set) if row.opt_text("rules_set_over")? == given => {
            Ok(rules.then(&stored_rules(Some(&set), "rules_set")?))
        }
        _ => Ok(rules),
    }
}
