//! Foyer's own events to the platform (docs/hearing-back.md): what each event says, and which
//! event goes with which fact (`for_step`, `for_ticket`, `for_release`); written to the
//! outbox where its fact is recorded, in the fact's transaction.

mod report;
pub mod send;

pub use report::OutboxReport;

use chrono::{DateTime, SecondsFormat, Utc};
use ruma::{RoomAliasId, RoomId, UserId};
use serde_json::{Value, json};

use sha2::{Digest, Sha256};

use crate::{
    config::ArchiveMode,
    model::{
        ArchivedTranscript, BoundHow, NewAction, NewReport, Occurrence, ReservationId, SeriesId, StepRecord, ViewerKey,
    },
};

/// The event types `docs/hearing-back.md` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    RoomOpened,
    RoomArchived,
    TicketClaimed,
    TicketUninvitable,
    ReservationFailing,
    ReservationRecovered,
    MessageReported,
    MemberModerated,
    SeriesExpanded,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        Self::RoomOpened,
        Self::RoomArchived,
        Self::TicketClaimed,
        Self::TicketUninvitable,
        Self::ReservationFailing,
        Self::ReservationRecovered,
        Self::MessageReported,
        Self::MemberModerated,
        Self::SeriesExpanded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoomOpened => "room.opened",
            Self::RoomArchived => "room.archived",
            Self::TicketClaimed => "ticket.claimed",
            Self::TicketUninvitable => "ticket.uninvitable",
            Self::ReservationFailing => "reservation.failing",
            Self::ReservationRecovered => "reservation.recovered",
            Self::MessageReported => "message.reported",
            Self::MemberModerated => "member.moderated",
            Self::SeriesExpanded => "series.expanded",
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
        kind: EventType, reservation_id: &ReservationId, data: Value, once_key: Option<String>, at: DateTime<Utc>,
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
        reservation_id: &ReservationId, room_id: &RoomId, alias: &RoomAliasId, at: DateTime<Utc>,
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
        reservation_id: &ReservationId, room_id: Option<&RoomId>, mode: ArchiveMode, transcript: &ArchivedTranscript,
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
    /// `series.expanded`: occurrences a series gained, made by the expansion that added
    /// them (each occurrence is added once, so each is told once); ordered with the
    /// series' own events, keyed by its id.
    pub fn series_expanded(series: &SeriesId, added: &[Occurrence], at: DateTime<Utc>) -> Self {
        let occurrences: Vec<Value> = added
            .iter()
            .map(|o| {
                json!({
                    "reservation_id": o.id.as_str(),
                    "original_start": rfc3339(o.original_start),
                    "starts_at": rfc3339(o.starts_at),
                    "ends_at": rfc3339(o.ends_at),
                })
            })
            .collect();
        let data = json!({ "series_id": series.as_str(), "occurrences": occurrences });
        Self::new(EventType::SeriesExpanded, series.as_reservation_id(), data, None, at)
    }

    /// `ticket.claimed`: an email ticket is bound to `user`, once per ticket and user.
    pub fn ticket_claimed(
        reservation_id: &ReservationId, ticket_id: &str, user: &UserId, how: BoundHow, at: DateTime<Utc>,
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
        reservation_id: &ReservationId, step: &str, error: &str, attempts: u32, at: DateTime<Utc>,
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

impl OutboundEvent {
    /// `message.reported`: a web fan reported a message to the moderators, once per fan
    /// and message. The reporter is named as the platform knows them (its ticket or
    /// viewer id), the message as the chat showed it.
    pub fn message_reported(report: &NewReport) -> Self {
        let reporter = match &report.reporter {
            ViewerKey::Ticket(ticket) => json!({"ticket_id": ticket.as_str()}),
            ViewerKey::Platform(sub) => json!({"sub": sub.as_str()}),
        };
        let message = &report.message;
        let data = json!({
            "reservation_id": report.reservation.as_str(),
            "event_id": report.event_id.as_str(),
            "reason": report.reason.as_str(),
            "reporter": reporter,
            "message": {
                "sender_name": message.sender_name,
                "sender_role": message.sender_role,
                "body": message.body,
                "sent_at": rfc3339(message.origin_ts),
            },
            "reported_at": rfc3339(report.at),
        });
        let (kind, value) = (report.reporter.kind(), report.reporter.value());
        let once = format!("message.reported:{}:{}:{kind}:{value}", report.reservation, report.event_id);
        Self::new(EventType::MessageReported, &report.reservation, data, Some(once), report.at)
    }

    /// `member.moderated`: moderation acted in a reservation's chat (a rule broken, a
    /// redaction, a timeout and its end, a ban, an unban, a mode, slow mode), once per
    /// action: `action_id` is the store's, the digest of [`NewAction::identity`]. The
    /// `data` is the record's entry as the read API shows it, with the reservation's id.
    pub fn member_moderated(action: &NewAction, action_id: &str) -> Self {
        let mut data = action.entry().view();
        data["reservation_id"] = json!(action.reservation.as_str());
        let once = format!("member.moderated:{}:{action_id}", action.reservation);
        Self::new(EventType::MemberModerated, &action.reservation, data, Some(once), action.at)
    }
}

/// Failed attempts in a row after which the platform hears `reservation.failing` (and,
/// once it succeeds, `reservation.recovered`). Not the first: a homeserver's restart
/// fails one attempt and is over a second later (the next tries come after 1 s and 2 s),
/// which is no news to a platform.
pub const FAILING_AFTER: u32 = 3;

/// How a lifecycle attempt ended, as the platform may hear of it when its lease is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release<'a> {
    /// The work succeeded.
    Done,
    /// `step` failed with `error`.
    Failed { step: &'a str, error: &'a str },
}

/// The reservation's room, as the events of its steps name it.
#[derive(Debug, Clone, Copy)]
pub struct StepRoom<'a> {
    /// The room the step was performed in, if it was.
    pub room_id: Option<&'a RoomId>,
    pub alias: &'a RoomAliasId,
    pub archive_mode: ArchiveMode,
    /// What `room.archived` says of the transcript (read only when the step archives).
    pub transcript: &'a ArchivedTranscript,
}

/// Which event goes with which fact: the one place that decides it, beside the events'
/// constructors. The fact's recorder writes what these return in the fact's transaction.
impl OutboundEvent {
    /// The event the platform hears of a step's record by, if it hears of it: the room's
    /// creation is `room.opened`, its archive `room.archived`.
    pub fn for_step(id: &ReservationId, step: &StepRecord, room: &StepRoom, at: DateTime<Utc>) -> Option<Self> {
        match step {
            StepRecord::RoomCreated { room_id, .. } => Some(Self::room_opened(id, room_id, room.alias, at)),
            StepRecord::Archived => Some(Self::room_archived(id, room.room_id, room.archive_mode, room.transcript, at)),
            _ => None,
        }
    }

    /// Whether the event of `step` tells of the room's transcript (so that it must be read
    /// before the step is recorded).
    pub fn tells_of_transcript(step: &StepRecord) -> bool {
        matches!(step, StepRecord::Archived)
    }

    /// The holder whose every ticket the platform hears of when `step` is recorded: a
    /// failed invite makes each of their tickets `ticket.uninvitable` ([`Self::for_ticket`]).
    pub fn holder_of_step(step: &StepRecord) -> Option<&UserId> {
        match step {
            StepRecord::InviteFailed { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    /// The event of one ticket of [`Self::holder_of_step`]'s holder.
    pub fn for_ticket(id: &ReservationId, step: &StepRecord, ticket_id: &str, at: DateTime<Utc>) -> Option<Self> {
        match step {
            StepRecord::InviteFailed { failure, .. } => {
                Some(Self::ticket_uninvitable(id, ticket_id, &failure.error, at))
            }
            _ => None,
        }
    }

    /// The event a lifecycle attempt's end brings, after `attempts` failed attempts in a
    /// row before it: `reservation.failing` when this failure is the [`FAILING_AFTER`]th,
    /// `reservation.recovered` when the work succeeds after at least that many.
    pub fn for_release(id: &ReservationId, attempts: u32, release: Release, at: DateTime<Utc>) -> Option<Self> {
        match release {
            Release::Done => (attempts >= FAILING_AFTER).then(|| Self::reservation_recovered(id, attempts, at)),
            Release::Failed { step, error } => {
                (attempts + 1 == FAILING_AFTER).then(|| Self::reservation_failing(id, step, error, attempts + 1, at))
            }
        }
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_archived_tells_of_the_transcript_made_missing_or_not_wanted() {
        let id = ReservationId::parse("jazz").unwrap();
        let room = ruma::OwnedRoomId::try_from("!room:example.org").unwrap();
        let data = |transcript: ArchivedTranscript| {
            let event = OutboundEvent::room_archived(&id, Some(&room), ArchiveMode::Delete, &transcript, Utc::now());
            serde_json::from_str::<serde_json::Value>(&event.body).unwrap()["data"].clone()
        };
        let made = data(ArchivedTranscript::Made { url: "https://f.example.org/t".into(), messages: 42 });
        assert_eq!(made["transcript"], serde_json::json!({"url": "https://f.example.org/t", "messages": 42}));
        assert!(made.get("transcript_error").is_none(), "{made}");
        let missing = data(ArchivedTranscript::Missing { error: "homeserver down".into() });
        assert!(missing["transcript"].is_null(), "{missing}");
        assert_eq!(missing["transcript_error"], "homeserver down");
        let unwanted = data(ArchivedTranscript::NotWanted);
        assert!(unwanted["transcript"].is_null() && unwanted.get("transcript_error").is_none(), "{unwanted}");
    }

    #[test]
    fn failing_is_told_at_the_third_failure_and_recovered_after_it() {
        let id = ReservationId::parse("jazz").unwrap();
        let failed = Release::Failed { step: "invite", error: "boom" };
        let kinds = |release| {
            (0..6)
                .map(|attempts| OutboundEvent::for_release(&id, attempts, release, Utc::now()).map(|e| e.kind))
                .collect::<Vec<_>>()
        };
        let failing = Some(EventType::ReservationFailing);
        assert_eq!(kinds(failed), vec![None, None, failing, None, None, None]);
        let recovered = Some(EventType::ReservationRecovered);
        assert_eq!(kinds(Release::Done), vec![None, None, None, recovered, recovered, recovered]);
    }

    #[test]
    fn a_step_brings_its_event_only_when_the_platform_hears_of_it() {
        let id = ReservationId::parse("jazz").unwrap();
        let room_id = ruma::OwnedRoomId::try_from("!room:example.org").unwrap();
        let alias = ruma::OwnedRoomAliasId::try_from("#live_jazz:example.org").unwrap();
        let room = StepRoom {
            room_id: Some(&room_id),
            alias: &alias,
            archive_mode: ArchiveMode::Kick,
            transcript: &ArchivedTranscript::NotWanted,
        };
        let kind = |step: &StepRecord| OutboundEvent::for_step(&id, step, &room, Utc::now()).map(|e| e.kind);
        assert_eq!(kind(&StepRecord::Archived), Some(EventType::RoomArchived));
        assert!(OutboundEvent::tells_of_transcript(&StepRecord::Archived));
        assert_eq!(kind(&StepRecord::TopicSet("t".into())), None);
        assert_eq!(OutboundEvent::holder_of_step(&StepRecord::Archived), None);
    }
}
