//! The steps that bring a room in line with its reservation, and how each one's outcome
//! is recorded.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, OwnedUserId};

use super::{InviteFailure, Membership};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    TicketRevoked,
    NoTicket,
    KnockRefused,
}

impl KickReason {
    pub fn text(self) -> &'static str {
        match self {
            Self::TicketRevoked => "Your ticket was revoked",
            Self::NoTicket => "This chat is for ticket holders",
            Self::KnockRefused => "This chat is for ticket holders; get a ticket to join",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Ended,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the room with its fixed alias, or adopt the room that holds it.
    CreateRoom,
    Invite(OwnedUserId),
    PostOpeningNotice,
    PostClosingNotice(CloseReason),
    /// Archive per `rooms.archive_mode`.
    Archive,
    /// Make the room's moderators match the reservation's hosts (power levels RMW).
    SetHosts,
    /// Invite a ticket holder who knocked.
    AcceptKnock(OwnedUserId),
    /// Remove someone who may not be there, or refuse a knock.
    Kick(OwnedUserId, KickReason),
    /// Name the room after the reservation's title, which changed.
    SetName(String),
    SetTopic(String),
    /// Make the player widget, its layout and the pinned link match `stream_url`.
    SetStreamLink,
    /// "Live now", for the stream start at this time.
    PostLiveNotice(DateTime<Utc>),
    /// "The stream has ended", for the stream end at this time.
    PostEndedNotice(DateTime<Utc>),
    /// A countdown notice, this many seconds before the start.
    PostReminder(u64),
    PostClosingWarning,
    /// Create (or adopt) the channel's space.
    EnsureSpace,
    /// List the room in the channel's space (`m.space.child` / `m.space.parent`).
    LinkSpace,
    /// Take the room out of the space.
    UnlinkSpace,
}

/// The recorded outcome of one step on the homeserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepRecord {
    RoomCreated {
        room_id: OwnedRoomId,
        hosts: BTreeSet<OwnedUserId>,
        name: String,
        topic: String,
    },
    NameSet(String),
    TopicSet(String),
    StreamLinkSet(Option<String>),
    LiveNoticeSent(DateTime<Utc>),
    EndedNoticeSent(DateTime<Utc>),
    ReminderSent(u64),
    ClosingWarningSent,
    /// The channel's space exists (created or adopted).
    SpaceEnsured {
        channel_id: String,
        space: OwnedRoomId,
        name: String,
    },
    SpaceLinked(Option<OwnedRoomId>),
    HostsApplied(BTreeSet<OwnedUserId>),
    /// Foyer's own membership change (a kick, an invite after a knock), recorded before
    /// the homeserver's event about it arrives.
    Member {
        user_id: OwnedUserId,
        membership: Membership,
        invited_by: Option<OwnedUserId>,
    },
    /// Invited: never invited again...
    Invited {
        user_id: OwnedUserId,
    },
    /// The invite failed; tried again at `failure.retry_at`.
    InviteFailed {
        user_id: OwnedUserId,
        failure: InviteFailure,
    },
    /// `createRoom` is about to be sent by this instance.
    CreateBegan {
        by: String,
    },
    /// ...unless Foyer removed them: a ticket they get later invites them again.
    InviteForgotten {
        user_id: OwnedUserId,
    },
    OpeningNoticeSent,
    ClosingNoticeSent,
    Archived,
}
