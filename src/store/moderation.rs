//! The moderation record in the store ([`ModerationStore`], docs/moderation.md): each
//! action on a reservation's chat once, written with the event that tells the platform of
//! it, in one transaction; read a page at a time, oldest first; forgotten with the
//! transcripts, `rooms.transcript_retention` after the room's archive.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::{EventId, OwnedEventId, OwnedUserId};
use sha2::{Digest, Sha256};

use super::{
    Outbound, StoreError,
    dialect::{SqlStore, on_both_databases},
    from_millis,
    outbox::write_event,
    rows::{Read, corrupt, opt_parsed, parsed},
    to_millis,
};
use crate::{
    model::{
        ActionKind, Actor, LoggedEntry, ModeratedMember, ModerationEntry, NewAction, NewReport, RecordCursor,
        ReservationId, Rule, ViewerKey,
    },
    outbox::OutboundEvent,
};

/// The most entries [`ModerationStore::moderation_record`] returns at once.
pub const MAX_RECORD_PAGE: u32 = 1000;

/// `(reservation_id, action_id, at, action, actor_kind, actor, event_id, reason, details,
/// member, member_viewer_kind, member_viewer)`; the same action again adds nothing.
const RECORD: &str = "INSERT INTO moderation_record
        (reservation_id, action_id, at, action, actor_kind, actor, event_id, reason, details,
         member, member_viewer_kind, member_viewer)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (reservation_id, action_id) DO NOTHING";
/// `(reservation_id, after_at, after_action_id, limit)`: a page, oldest first.
const PAGE: &str = "SELECT action_id, at, action, actor_kind, actor, event_id, reason, details,
        member, member_viewer_kind, member_viewer
    FROM moderation_record
    WHERE reservation_id = $1 AND (at > $2 OR (at = $2 AND action_id > $3))
    ORDER BY at, action_id LIMIT $4";
/// `(before)`: the record of every reservation archived before it.
const PRUNE: &str = "DELETE FROM moderation_record WHERE reservation_id IN (
    SELECT reservation_id FROM lifecycle WHERE archived_at < $1)";
/// `(reservation_id, event_id)`: the log entry of a message.
const LOGGED_MESSAGE: &str = "SELECT seq, event_id, kind, payload, origin_ts, logged_at FROM webchat_log
    WHERE reservation_id = $1 AND event_id = $2 AND kind = 'message'";

/// An entry of the record with where it sits, for the next page's cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEntry {
    pub cursor: RecordCursor,
    pub entry: ModerationEntry,
}

/// The record of what was done about each reservation's chat.
#[async_trait]
pub trait ModerationStore: Send + Sync {
    /// Records a viewer's report of a message and writes `message.reported` with it;
    /// `false` when this viewer had reported this message already (nothing is written).
    async fn record_report(&self, report: &NewReport) -> Result<bool, StoreError>;

    /// Records a moderation action once ([`NewAction::identity`]) and writes
    /// `member.moderated` with it; `false` when it was recorded already (nothing is
    /// written).
    async fn record_action(&self, action: &NewAction) -> Result<bool, StoreError>;

    /// The reservation's record after `after` (from the start without one), oldest first,
    /// at most `limit` (capped at [`MAX_RECORD_PAGE`]) entries.
    async fn moderation_record(
        &self, reservation: &ReservationId, after: Option<&RecordCursor>, limit: u32,
    ) -> Result<Vec<RecordedEntry>, StoreError>;

    /// Deletes the record of every reservation archived before `before`; returns how many
    /// entries went.
    async fn prune_moderation_record(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The message with this event id in the reservation's room log, if it is logged.
    async fn logged_message(
        &self, reservation: &ReservationId, event_id: &EventId,
    ) -> Result<Option<LoggedEntry>, StoreError>;
}

/// A row to write: the action's identity hashed, its entry, and the event that goes with it.
struct Row<'a> {
    reservation: &'a ReservationId,
    action_id: String,
    entry: ModerationEntry,
    rule: Option<Rule>,
    event: Option<OutboundEvent>,
}

#[apply(on_both_databases!)]
impl SqlStore<D> {
    /// Writes `row` once, and its event with it; counts it the first time.
    async fn record(&self, row: Row<'_>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let new = write_row::<D>(&mut *tx, &self.outbox, &row).await?;
        tx.commit().await?;
        self.outbox.wake_sender(new && self.outbox.writes() && row.event.is_some());
        if new {
            counted(&row);
        }
        Ok(new)
    }
}

/// Writes `row` in a transaction of the caller's, and its event with it, if it is new;
/// whether it was. The caller counts it ([`counted`]) once the transaction commits.
#[apply(on_both_databases!)]
async fn write_row(conn: &mut D::Connection, outbox: &Outbound, row: &Row<'_>) -> Result<bool, StoreError> {
    let entry = &row.entry;
    let member = entry.member.as_ref();
    let viewer = member.and_then(ModeratedMember::viewer);
    let details = entry.details.to_string();
    let now = to_millis(entry.at);
    let recorded = sqlx::query(RECORD)
        .bind(row.reservation.as_str())
        .bind(row.action_id.as_str())
        .bind(now)
        .bind(entry.kind.as_str())
        .bind(entry.actor.kind())
        .bind(entry.actor.value())
        .bind(entry.event_id.as_ref().map(|e| e.as_str()))
        .bind(entry.reason.as_str())
        .bind(details.as_str())
        .bind(member.and_then(ModeratedMember::user_id).map(|u| u.as_str()))
        .bind(viewer.map(ViewerKey::kind))
        .bind(viewer.map(ViewerKey::value))
        .execute(&mut *conn)
        .await?;
    let new = D::rows_affected(&recorded) == 1;
    if let Some(event) = row.event.as_ref().filter(|_| new && outbox.writes()) {
        write_event::<D>(conn, outbox, event, now).await?;
    }
    Ok(new)
}

/// `foyer_moderation_actions_total`, once a new row is committed.
fn counted(row: &Row<'_>) {
    let rule = row.rule.map_or("", Rule::as_str);
    metrics::counter!("foyer_moderation_actions_total", "action" => row.entry.kind.as_str(), "rule" => rule)
        .increment(1);
}

/// Records `action` in a transaction of the caller's, with `member.moderated`; whether it
/// is new. The caller passes it to [`counted_action`] once committed.
#[apply(on_both_databases!)]
pub(super) async fn write_action(
    conn: &mut D::Connection, outbox: &Outbound, action: &NewAction,
) -> Result<bool, StoreError> {
    write_row::<D>(conn, outbox, &action_row(action)).await
}

/// Counts an action [`write_action`] wrote, once its transaction committed.
pub(super) fn counted_action(action: &NewAction) {
    counted(&action_row(action));
}

/// The row that records `action`.
fn action_row(action: &NewAction) -> Row<'_> {
    let identity = action.identity();
    let parts: Vec<&str> = identity.iter().map(String::as_str).collect();
    let action_id = action_id(&parts);
    Row {
        reservation: &action.reservation,
        event: Some(OutboundEvent::member_moderated(action, &action_id)),
        action_id,
        entry: action.entry(),
        rule: action.action.rule(),
    }
}

#[apply(on_both_databases!)]
#[async_trait]
impl ModerationStore for SqlStore<D> {
    async fn record_report(&self, report: &NewReport) -> Result<bool, StoreError> {
        let (kind, value) = (report.reporter.kind(), report.reporter.value());
        let entry = ModerationEntry {
            at: report.at,
            kind: ActionKind::Report,
            actor: Actor::Viewer(report.reporter.clone()),
            member: None,
            event_id: Some(report.event_id.clone()),
            reason: report.reason.as_str().to_owned(),
            details: serde_json::json!({}),
        };
        self.record(Row {
            reservation: &report.reservation,
            action_id: action_id(&["report", report.event_id.as_str(), kind, value]),
            entry,
            rule: None,
            event: Some(OutboundEvent::message_reported(report)),
        })
        .await
    }

    async fn record_action(&self, action: &NewAction) -> Result<bool, StoreError> {
        self.record(action_row(action)).await
    }

    async fn moderation_record(
        &self, reservation: &ReservationId, after: Option<&RecordCursor>, limit: u32,
    ) -> Result<Vec<RecordedEntry>, StoreError> {
        let (after_at, after_id) = after.map_or((-1, ""), |c| (c.at_millis, c.action_id.as_str()));
        let rows = sqlx::query(PAGE)
            .bind(reservation.as_str())
            .bind(after_at)
            .bind(after_id)
            .bind(i64::from(limit.clamp(1, MAX_RECORD_PAGE)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(recorded).collect()
    }

    async fn prune_moderation_record(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let done = sqlx::query(PRUNE).bind(to_millis(before)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(D::rows_affected(&done))
    }

    async fn logged_message(
        &self, reservation: &ReservationId, event_id: &EventId,
    ) -> Result<Option<LoggedEntry>, StoreError> {
        let query = sqlx::query(LOGGED_MESSAGE).bind(reservation.as_str()).bind(event_id.as_str());
        query.fetch_optional(&self.pool).await?.as_ref().map(super::webchat::logged).transpose()
    }
}

/// A row of [`PAGE`].
fn recorded(row: &impl Read) -> Result<RecordedEntry, StoreError> {
    let at = row.int("at")?;
    let action_id = row.text("action_id")?;
    let actor =
        Actor::parse(&row.text("actor_kind")?, &row.text("actor")?).map_err(|e| corrupt("moderation actor", e))?;
    let user: Option<OwnedUserId> = opt_parsed(row, "member", |u: &str| OwnedUserId::try_from(u))?;
    let viewer = match (row.opt_text("member_viewer_kind")?, row.opt_text("member_viewer")?) {
        (Some(kind), Some(value)) => {
            Some(ViewerKey::parse(&kind, &value).map_err(|e| corrupt("moderation member's viewer", e))?)
        }
        (None, None) => None,
        _ => return Err(corrupt("moderation member's viewer", "kind and value must be set together")),
    };
    let details: serde_json::Value =
        serde_json::from_str(&row.text("details")?).map_err(|e| corrupt("moderation details", e))?;
    if !details.is_object() {
        return Err(corrupt("moderation details", "not a JSON object"));
    }
    let entry = ModerationEntry {
        at: from_millis(at)?,
        kind: parsed(row, "action", ActionKind::parse)?,
        actor,
        member: ModeratedMember::from_parts(user, viewer),
        event_id: opt_parsed(row, "event_id", |e: &str| OwnedEventId::try_from(e))?,
        reason: row.text("reason")?,
        details,
    };
    Ok(RecordedEntry { cursor: RecordCursor { at_millis: at, action_id }, entry })
}

/// What makes an action one, hashed: its parts, each ended by a NUL (no part holds one).
fn action_id(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
