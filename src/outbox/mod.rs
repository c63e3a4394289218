//! Foyer's own events to the platform (contract §9): what each event says, built where
//! its fact is recorded and written to the outbox in the fact's transaction.

mod report;
pub mod send;

pub use report::OutboxReport;

use chrono::{DateTime, SecondsFormat, Utc};
use ruma::{RoomAliasId, RoomId, UserId};
use serde_json::{Value, json};

use sha2::{Digest, Sha256};

use crate::{
    config::ArchiveMode,
    model::{ArchivedTranscript, BoundHow, ReservationId},
};

/// The event types of contract §9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    RoomOpened,
    RoomArchived,
    TicketClaimed,
    TicketUninvitable,
    ReservationFailing,
    ReservationRecovered,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        Self::RoomOpened,
        Self::RoomArchived,
        Self::TicketClaimed,
        Self::TicketUninvitable,
        Self::ReservationFailing,
        Self::ReservationRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoomOpened => "room.opened",
            Self::RoomArchived => "room.archived",
            Self::TicketClaimed => "ticket.claimed",
            Self::TicketUninvitable => "ticket.uninvitable",
            Self::ReservationFailing => "reservation.failing",
            Self::ReservationRecovered => "reservation.recovered",
        }
    }
}

/// One event as it goes into the outbox and, unchanged, onto the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundEvent {
    /// The `webhook-id`: made once here, the same on every retry.
    pub id: String,
    pub reservation_id: ReservationId,
    pub kind: EventType,
    /// The body as sent: `{"type", "timestamp", "data"}`.
    pub body: String,
    /// Set for an event sent once per fact: a second write of it adds nothing.
    pub once_key: Option<String>,
}

impl OutboundEvent {
    fn new(
        kind: EventType,
        reservation_id: &ReservationId,
        data: Value,
        once_key: Option<String>,
        at: DateTime<Utc>,
    ) -> Self {
        let body = json!({ "type": kind.as_str(), "timestamp": rfc3339(at), "data": data });
        Self {
            // Random, not derived from the fact: the receiver dedupes by it, and a
            // derived id would say something about the reservation to anyone who sees it.
            id: format!("msg_{:032x}", rand::random::<u128>()),
            reservation_id: reservation_id.clone(),
            kind,
            body: body.to_string(),
            once_key,
        }
    }

    /// `room.opened`, once per reservation.
    pub fn room_opened(
        reservation_id: &ReservationId,
        room_id: &RoomId,
        alias: &RoomAliasId,
        at: DateTime<Utc>,
    ) -> Self {
        let data = json!({
            "reservation_id": reservation_id.as_str(),
            "room_id": room_id.as_str(),
            "room_alias": alias.as_str(),
            "matrix_to": alias.matrix_to_uri().to_string(),
            "opened_at": rfc3339(at),
        });
        let once = format!("room.opened:{reservation_id}");
        Self::new(EventType::RoomOpened, reservation_id, data, Some(once), at)
    }

    /// `room.archived`, once per reservation, with its transcript: `{"url", "messages"}`
    /// when one was made, else `null`, and `transcript_error` when one was wanted.
    pub fn room_archived(
        reservation_id: &ReservationId,
        room_id: Option<&RoomId>,
        mode: ArchiveMode,
        transcript: &ArchivedTranscript,
        at: DateTime<Utc>,
    ) -> Self {
        let mut data = json!({
            "reservation_id": reservation_id.as_str(),
            "room_id": room_id.map(RoomId::as_str),
            "archived_at": rfc3339(at),
            "mode": mode.as_str(),
            "transcript": null,
        });
        match transcript {
            ArchivedTranscript::NotWanted => {}
            ArchivedTranscript::Made { url, messages } => {
                data["transcript"] = json!({"url": url, "messages": messages});
            }
            ArchivedTranscript::Missing { error } => data["transcript_error"] = json!(error),
        }
        let once = format!("room.archived:{reservation_id}");
        Self::new(EventType::RoomArchived, reservation_id, data, Some(once), at)
    }
}

impl OutboundEvent {
    /// `ticket.claimed`: an email ticket is bound to `user`, once per ticket and user.
    pub fn ticket_claimed(
        reservation_id: &ReservationId,
        ticket_id: &str,
        user: &UserId,
        how: BoundHow,
        at: DateTime<Utc>,
    ) -> Self {
        let data = json!({
            "reservation_id": reservation_id.as_str(),
            "ticket_id": ticket_id,
            "user_id": user.as_str(),
            "how": how.as_str(),
        });
        let once = format!("ticket.claimed:{reservation_id}:{ticket_id}:{user}");
        Self::new(EventType::TicketClaimed, reservation_id, data, Some(once), at)
    }

    /// `ticket.uninvitable`: the holder of `ticket_id` cannot be invited, once per ticket
    /// and error (an invite retried with the same error says nothing new).
    pub fn ticket_uninvitable(reservation_id: &ReservationId, ticket_id: &str, error: &str, at: DateTime<Utc>) -> Self {
        let data = json!({ "reservation_id": reservation_id.as_str(), "ticket_id": ticket_id, "error": error });
        // The error's digest, not its text: the key stays short whatever the homeserver said.
        let digest = Sha256::digest(error.as_bytes());
        let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let once = format!("ticket.uninvitable:{reservation_id}:{ticket_id}:{short}");
        Self::new(EventType::TicketUninvitable, reservation_id, data, Some(once), at)
    }

    /// `reservation.failing`: `step` failed `attempts` times in a row.
    pub fn reservation_failing(
        reservation_id: &ReservationId,
        step: &str,
        error: &str,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Self {
        let data = json!({
            "reservation_id": reservation_id.as_str(),
            "step": step,
            "error": error,
            "attempts": attempts,
        });
        Self::new(EventType::ReservationFailing, reservation_id, data, None, at)
    }

    /// `reservation.recovered`: the work succeeded after `attempts` failed attempts.
    pub fn reservation_recovered(reservation_id: &ReservationId, attempts: u32, at: DateTime<Utc>) -> Self {
        let data = json!({ "reservation_id": reservation_id.as_str(), "attempts": attempts });
        Self::new(EventType::ReservationRecovered, reservation_id, data, None, at)
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
