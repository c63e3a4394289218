//! A reservation's room as Foyer knows it: what it did there and who the homeserver
//! says is in it, and who may be.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, OwnedUserId};

use super::Step;

/// What Foyer has done on the homeserver for one reservation, and what the homeserver
/// told it about the room's members, as recorded in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomState {
    pub room_id: Option<OwnedRoomId>,
    /// Everyone invited; nobody is invited twice, except someone Foyer removed who holds
    /// a ticket again.
    pub invited: BTreeSet<OwnedUserId>,
    /// Holders and hosts whose invite failed, each with its own backoff: one who cannot
    /// be invited never holds back the others.
    pub invite_failures: BTreeMap<OwnedUserId, InviteFailure>,
    pub opening_notice_sent: bool,
    pub closing_notice_sent: bool,
    pub archived: bool,
    /// The room's members as the homeserver last told us (the bot excluded).
    pub members: BTreeMap<OwnedUserId, Member>,
    /// The hosts at power 50 in the room.
    pub hosts_applied: BTreeSet<OwnedUserId>,
    /// The room name last set (the reservation's title then).
    pub name_applied: Option<String>,
    pub topic_applied: Option<String>,
    /// The stream URL the widget and the pinned link show.
    pub stream_url_applied: Option<String>,
    /// The `stream.started` / `stream.ended` times whose notices were posted.
    pub live_notice_for: Option<DateTime<Utc>>,
    pub ended_notice_for: Option<DateTime<Utc>>,
    /// Countdown notices posted, by seconds before the start.
    pub reminders_sent: BTreeSet<u64>,
    pub closing_warning_sent: bool,
    /// The space of the reservation's channel, once it exists.
    pub space: Option<OwnedRoomId>,
    /// The space this room is listed in.
    pub space_linked: Option<OwnedRoomId>,
}

/// The last failed invite of one holder (or host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteFailure {
    pub error: String,
    /// Failures in a row.
    pub attempts: u32,
    pub retry_at: DateTime<Utc>,
}

impl InviteFailure {
    /// The failure after `previous` (if any): tried again after 30 s, doubling up to an
    /// hour. A federated server that is down may come back, a missing user may register;
    /// neither is worth a tight loop.
    pub fn after(previous: Option<&InviteFailure>, error: String, now: DateTime<Utc>) -> Self {
        let attempts = previous.map_or(0, |f| f.attempts).saturating_add(1);
        let wait = (30i64 << (attempts - 1).min(7)).min(3600);
        Self { error, attempts, retry_at: now + chrono::Duration::seconds(wait) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Invite,
    Join,
    Knock,
    Leave,
    Ban,
}

impl Membership {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "invite" => Self::Invite,
            "join" => Self::Join,
            "knock" => Self::Knock,
            "leave" => Self::Leave,
            "ban" => Self::Ban,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Join => "join",
            Self::Knock => "knock",
            Self::Leave => "leave",
            Self::Ban => "ban",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub membership: Membership,
    /// Who sent this user's latest invite.
    pub invited_by: Option<OwnedUserId>,
}

/// Who may be in a reservation's room, besides the bot and the hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audience {
    /// Users with at least one active ticket.
    pub holders: BTreeSet<OwnedUserId>,
    /// Users whose tickets were all revoked.
    pub revoked: BTreeSet<OwnedUserId>,
}

/// What a step's success is recorded with, besides the step itself.
pub struct Applied<'a> {
    /// The room `CreateRoom` created or adopted.
    pub room_id: &'a OwnedRoomId,
    pub hosts: &'a BTreeSet<OwnedUserId>,
    pub bot: &'a OwnedUserId,
    /// The name and topic the room was created with.
    pub name: &'a str,
    pub topic: &'a str,
    pub stream_url: Option<&'a str>,
    /// The space `EnsureSpace` created or adopted.
    pub space: &'a OwnedRoomId,
}

impl RoomState {
    /// The recorded effect of a step that succeeded.
    pub fn apply(&mut self, step: &Step, done: &Applied<'_>) {
        let (hosts, bot) = (done.hosts, done.bot);
        match step {
            Step::CreateRoom => {
                self.room_id = Some(done.room_id.clone());
                self.hosts_applied = hosts.clone();
                self.name_applied = Some(done.name.to_owned());
                self.topic_applied = Some(done.topic.to_owned());
            }
            Step::SetHosts => self.hosts_applied = hosts.clone(),
            Step::SetName(name) => self.name_applied = Some(name.clone()),
            Step::SetTopic(topic) => self.topic_applied = Some(topic.clone()),
            Step::SetStreamLink => self.stream_url_applied = done.stream_url.map(str::to_owned),
            Step::PostLiveNotice(at) => self.live_notice_for = Some(*at),
            Step::PostEndedNotice(at) => self.ended_notice_for = Some(*at),
            Step::PostReminder(secs) => {
                self.reminders_sent.insert(*secs);
            }
            Step::PostClosingWarning => self.closing_warning_sent = true,
            Step::EnsureSpace => self.space = Some(done.space.clone()),
            Step::LinkSpace => self.space_linked = self.space.clone(),
            Step::UnlinkSpace => self.space_linked = None,
            Step::Invite(user) => {
                self.invited.insert(user.clone());
                self.invite_failures.remove(user);
            }
            Step::AcceptKnock(user) => {
                let member = Member { membership: Membership::Invite, invited_by: Some(bot.clone()) };
                self.members.insert(user.clone(), member);
            }
            Step::Kick(user, _) => {
                let member = Member { membership: Membership::Leave, invited_by: None };
                self.members.insert(user.clone(), member);
                self.invited.remove(user);
                self.invite_failures.remove(user);
            }
            Step::PostOpeningNotice => self.opening_notice_sent = true,
            Step::PostClosingNotice(_) => self.closing_notice_sent = true,
            Step::Archive => self.archived = true,
        }
    }
}
