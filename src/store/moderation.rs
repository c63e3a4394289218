//! The moderation record in the store ([`ModerationStore`], docs/web-chat.md "Reports"):
//! each action on a reservation's chat once, written with the event that tells the
//! platform of it, in one transaction.

use async_trait::async_trait;
use macro_rules_attribute::apply;
use ruma::EventId;
use sha2::{Digest, Sha256};

use super::{
    StoreError,
    dialect::{SqlStore, on_both_databases},
    outbox::write_event,
    to_millis,
};
use crate::{
    model::{LoggedEntry, NewReport, ReservationId},
    outbox::OutboundEvent,
};

/// `(reservation_id, action_id, at, action, actor_kind, actor, event_id, reason)`; the
/// same action again adds nothing.
const RECORD: &str = "INSERT INTO moderation_record
        (reservation_id, action_id, at, action, actor_kind, actor, event_id, reason)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (reservation_id, action_id) DO NOTHING";
/// `(reservation_id, event_id)`: the log entry of a message.
const LOGGED_MESSAGE: &str = "SELECT seq, event_id, kind, payload, origin_ts, logged_at FROM webchat_log
    WHERE reservation_id = $1 AND event_id = $2 AND kind = 'message'";

/// The record of what was done about each reservation's chat.
#[async_trait]
pub trait ModerationStore: Send + Sync {
    /// Records a viewer's report of a message and writes `message.reported` with it;
    /// `false` when this viewer had reported this message already (nothing is written).
    async fn record_report(&self, report: &NewReport) -> Result<bool, StoreError>;

    /// The message with this event id in the reservation's room log, if it is logged.
    async fn logged_message(
        &self, reservation: &ReservationId, event_id: &EventId,
    ) -> Result<Option<LoggedEntry>, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl ModerationStore for SqlStore<D> {
    async fn record_report(&self, report: &NewReport) -> Result<bool, StoreError> {
        let (kind, value) = (report.reporter.kind(), report.reporter.value());
        let action_id = action_id(&["report", report.event_id.as_str(), kind, value]);
        let now = to_millis(report.at);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let recorded = sqlx::query(RECORD)
            .bind(report.reservation.as_str())
            .bind(action_id.as_str())
            .bind(now)
            .bind("report")
            .bind(kind)
            .bind(value)
            .bind(report.event_id.as_str())
            .bind(report.reason.as_str())
            .execute(&mut *tx)
            .await?;
        let new = D::rows_affected(&recorded) == 1;
        let wrote = new && self.outbox.writes();
        if wrote {
            write_event::<D>(&mut *tx, &self.outbox, &OutboundEvent::message_reported(report), now).await?;
        }
        tx.commit().await?;
        self.outbox.wake_sender(wrote);
        Ok(new)
    }

    async fn logged_message(
        &self, reservation: &ReservationId, event_id: &EventId,
    ) -> Result<Option<LoggedEntry>, StoreError> {
        let query = sqlx::query(LOGGED_MESSAGE).bind(reservation.as_str()).bind(event_id.as_str());
        query.fetch_optional(&self.pool).await?.as_ref().map(super::webchat::logged).transpose()
    }
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
