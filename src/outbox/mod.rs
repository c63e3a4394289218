//! Foyer's own events to the platform (contract §9): what each event says, built where
//! its fact is recorded and written to the outbox in the fact's transaction. Sending
//! them is not done yet (issue 18, item 4).

use chrono::{DateTime, SecondsFormat, Utc};
use ruma::{RoomAliasId, RoomId};
use serde_json::{Value, json};

use crate::{
    config::ArchiveMode,
    model::{ArchivedTranscript, ReservationId},
};

/// The event types of contract §9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    RoomOpened,
    RoomArchived,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoomOpened => "room.opened",
            Self::RoomArchived => "room.archived",
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

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
