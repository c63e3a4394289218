//! A reservation's room as Foyer knows it: what it did there and who the homeserver
//! says is in it, and who may be; the steps that bring it in line with its reservation,
//! and how each one's outcome is recorded and changes what Foyer knows
//! ([`RoomState::apply`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, OwnedUserId, events::room::member::MembershipState};

use super::{Channel, ChatMode};

/// What Foyer has done on the homeserver for one reservation, and what the homeserver
/// told it about the room's members, as recorded in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomState {
    pub room_id: Option<OwnedRoomId>,
    /// Everyone let in: invited, or joined by Foyer itself (`auto_join`). Nobody is let
    /// in twice (a holder who leaves stays out), except someone Foyer removed who holds a
    /// ticket again.
    pub invited: BTreeSet<OwnedUserId>,
    /// Holders and hosts whose invite failed, each with its own backoff: one who cannot
    /// be invited never holds back the others.
    pub invite_failures: BTreeMap<OwnedUserId, InviteFailure>,
    pub opening_notice_sent: bool,
    /// Members were told that the chat will be saved (in the opening notice, or later when
    /// a transcript was switched on while the room was open).
    pub transcript_notice_sent: bool,
    pub closing_notice_sent: bool,
    pub archived: bool,
    /// The room's members as the homeserver last told us (the bot excluded).
    pub members: BTreeMap<OwnedUserId, Member>,
    /// The hosts at power 50 in the room.
    pub hosts_applied: BTreeSet<OwnedUserId>,
    /// Who may speak, as the room's power levels were last made to say.
    pub speech_applied: Speech,
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
    /// The room's transcript is stored (`rooms.transcript`, `chat.transcript`).
    pub transcript_made: bool,
    /// Making the transcript failed first then (the archive waits
    /// `rooms.transcript_wait` from it), and last with this error.
    pub transcript_failed_at: Option<DateTime<Utc>>,
    pub transcript_error: Option<String>,
    /// The user of `synapse_admin.token`, put in the room to join its local holders
    /// (`auto_join`): Synapse's admin join invites from that user first.
    pub doorkeeper: Option<OwnedUserId>,
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

    /// Not tried: the holder's server failed another invite of late, and is left alone
    /// until `retry_at`. The holder's own failures in a row stay as they were.
    pub fn deferred(previous: Option<&InviteFailure>, error: String, retry_at: DateTime<Utc>) -> Self {
        Self { error, attempts: previous.map_or(0, |f| f.attempts), retry_at }
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

    /// The membership of a member event's content; `None` for one the spec does not name.
    pub fn of(state: &MembershipState) -> Option<Self> {
        Some(match state {
            MembershipState::Invite => Self::Invite,
            MembershipState::Join => Self::Join,
            MembershipState::Knock => Self::Knock,
            MembershipState::Leave => Self::Leave,
            MembershipState::Ban => Self::Ban,
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
    /// Users whose tickets were all revoked, and web users whose ticket was revoked or
    /// whose viewer is banned.
    pub revoked: BTreeSet<OwnedUserId>,
    /// Web fans' users that may be in the room (docs/web-chat.md): not banned, for a
    /// platform viewer or for the current holder of an active ticket. The web chat joins
    /// them itself; they are never invited.
    pub web: BTreeSet<OwnedUserId>,
    /// Matrix members timed out (docs/moderation.md), each with when their timeout ends;
    /// ended ones too, until they are forgotten: the planner looks at `now`.
    pub timeouts: BTreeMap<OwnedUserId, DateTime<Utc>>,
}

/// Who may speak in a room, by its power levels: its mode, and the members timed out
/// (below what posting needs). Hosts and moderators are never silenced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Speech {
    pub mode: ChatMode,
    pub silenced: BTreeSet<OwnedUserId>,
}

/// How many bytes of the room's `m.room.power_levels` event the timed-out members may
/// take: a homeserver refuses an event over 64 KiB, and the rest of it (the levels, the
/// bot, hosts and moderators) must still fit. Each member takes their ID and about 8
/// bytes (`"…": -1, `): about 1,290 members of 30-byte IDs (49,152 / 38), and 186 of
/// the longest, 255 bytes (49,152 / 263). Past it, the timeouts that end last wait for a place (their messages are
/// still redacted); the README says so.
pub const SILENCED_BYTES: usize = 48 * 1024;

impl Speech {
    /// As the store keeps it: `{"mode", "silenced": [user IDs]}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({"mode": self.mode.as_str(), "silenced": self.silenced}).to_string()
    }

    pub fn from_json(text: &str) -> Result<Speech, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("speech_applied: {e}"))?;
        let mode = value["mode"].as_str().ok_or("speech_applied: no mode")?;
        let mode = ChatMode::parse(mode).map_err(|e| format!("speech_applied: {e}"))?;
        let silenced = serde_json::from_value(value["silenced"].clone()).map_err(|e| format!("speech_applied: {e}"))?;
        Ok(Speech { mode, silenced })
    }

    /// Who may speak at `now`: `mode`, and the members whose timeouts have not ended,
    /// never `staff`, as many as [`SILENCED_BYTES`] holds (those whose timeouts end first
    /// first).
    pub fn at(
        mode: ChatMode, timeouts: &BTreeMap<OwnedUserId, DateTime<Utc>>, staff: &BTreeSet<OwnedUserId>,
        now: DateTime<Utc>,
    ) -> Speech {
        let mut running: Vec<(&DateTime<Utc>, &OwnedUserId)> = timeouts
            .iter()
            .filter(|(user, until)| **until > now && !staff.contains(*user))
            .map(|(u, t)| (t, u))
            .collect();
        running.sort();
        let mut budget = SILENCED_BYTES;
        let mut silenced = BTreeSet::new();
        for (_, user) in running {
            let cost = user.as_str().len() + 8;
            if cost > budget {
                break;
            }
            budget -= cost;
            silenced.insert(user.clone());
        }
        Speech { mode, silenced }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    TicketRevoked,
    NoTicket,
    KnockRefused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Ended,
    Cancelled,
}

/// One step in a reservation's room, which exists (opening it is the planner's
/// `Work::Open`, not a step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Invite(OwnedUserId),
    /// Join a local holder through the homeserver's admin join (`auto_join`), paced per
    /// room with Foyer's other joins.
    Join(OwnedUserId),
    /// Put the user of `synapse_admin.token` in the room with invite power, which the
    /// admin join needs.
    AdmitDoorkeeper,
    PostOpeningNotice,
    /// "This chat will be saved": a transcript was switched on after the opening notice.
    PostTranscriptNotice,
    PostClosingNotice(CloseReason),
    /// Archive per `rooms.archive_mode`.
    Archive,
    /// Make the room's moderators match the reservation's hosts (power levels RMW).
    SetHosts,
    /// Make the room's mode and timed-out members what the rules and timeouts say now
    /// (power levels RMW); `lifted` are the timeouts it ends, each with its end, recorded
    /// as lifted.
    SetSpeech {
        speech: Speech,
        lifted: BTreeMap<OwnedUserId, DateTime<Utc>>,
    },
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
    /// Create (or adopt) the reservation's channel's space.
    EnsureSpace(Channel),
    /// List the room in this space, the channel's (`m.space.child` / `m.space.parent`).
    LinkSpace(OwnedRoomId),
    /// Take the room out of the space it is listed in.
    UnlinkSpace(OwnedRoomId),
    /// Read the room's whole history into its transcript, before the archive.
    Transcribe,
}

impl Step {
    /// The step's name in logs and in `foyer_lifecycle_steps_total{step}`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invite(_) => "invite",
            Self::Join(_) => "join",
            Self::AdmitDoorkeeper => "admit_doorkeeper",
            Self::PostOpeningNotice => "opening_notice",
            Self::PostTranscriptNotice => "transcript_notice",
            Self::PostClosingNotice(_) => "closing_notice",
            Self::Archive => "archive",
            Self::SetHosts => "set_hosts",
            Self::SetSpeech { .. } => "set_speech",
            Self::AcceptKnock(_) => "accept_knock",
            Self::Kick(..) => "kick",
            Self::SetName(_) => "set_name",
            Self::SetTopic(_) => "set_topic",
            Self::SetStreamLink => "set_stream_link",
            Self::PostLiveNotice(_) => "live_notice",
            Self::PostEndedNotice(_) => "ended_notice",
            Self::PostReminder(_) => "reminder",
            Self::PostClosingWarning => "closing_warning",
            Self::EnsureSpace(_) => "ensure_space",
            Self::LinkSpace(_) => "link_space",
            Self::UnlinkSpace(_) => "unlink_space",
            Self::Transcribe => "transcribe",
        }
    }
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
    SpeechApplied(Speech),
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
    /// The doorkeeper is in the room with invite power.
    DoorkeeperAdmitted {
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
    /// Members were told that the chat will be saved.
    TranscriptNoticeSent,
    ClosingNoticeSent,
    Archived,
    /// The room's transcript is stored, this many messages; its lines were written
    /// before (`TranscriptStore::write_transcript`).
    TranscriptMade {
        messages: u64,
    },
    /// Making the transcript failed at `at` (the step is retried as any).
    TranscriptFailed {
        at: DateTime<Utc>,
        error: String,
    },
}

impl RoomState {
    /// What Foyer knows once `done` is recorded: the rule the store follows when it
    /// records it (`store/room.rs`), kept equal by the store contract test on both
    /// databases. As the lifecycle records them, `SpaceEnsured` is for the reservation's
    /// own channel and `RoomCreated` names the one room a reservation ever has.
    pub fn apply(&mut self, done: &StepRecord) {
        match done {
            StepRecord::RoomCreated { room_id, hosts, name, topic } => {
                self.room_id = Some(room_id.clone());
                self.hosts_applied = hosts.clone();
                self.name_applied = Some(name.clone());
                self.topic_applied = Some(topic.clone());
            }
            StepRecord::NameSet(name) => self.name_applied = Some(name.clone()),
            StepRecord::TopicSet(topic) => self.topic_applied = Some(topic.clone()),
            StepRecord::StreamLinkSet(url) => self.stream_url_applied = url.clone(),
            StepRecord::LiveNoticeSent(at) => self.live_notice_for = Some(*at),
            StepRecord::EndedNoticeSent(at) => self.ended_notice_for = Some(*at),
            StepRecord::ReminderSent(secs) => {
                self.reminders_sent.insert(*secs);
            }
            StepRecord::ClosingWarningSent => self.closing_warning_sent = true,
            StepRecord::SpaceEnsured { space, .. } => self.space = Some(space.clone()),
            StepRecord::SpaceLinked(space) => self.space_linked = space.clone(),
            StepRecord::HostsApplied(hosts) => self.hosts_applied = hosts.clone(),
            StepRecord::SpeechApplied(speech) => self.speech_applied = speech.clone(),
            StepRecord::Member { user_id, membership, invited_by } => {
                // Members are the room's: none before it exists. Who invited them is kept
                // unless the record says.
                if self.room_id.is_some() {
                    let before = self.members.get(user_id).and_then(|m| m.invited_by.clone());
                    let member = Member { membership: *membership, invited_by: invited_by.clone().or(before) };
                    self.members.insert(user_id.clone(), member);
                }
            }
            StepRecord::Invited { user_id } => {
                self.invited.insert(user_id.clone());
                self.invite_failures.remove(user_id);
                // Invited at once, unless the homeserver has told more than that they left.
                if self.room_id.is_some() {
                    let invite = Member { membership: Membership::Invite, invited_by: None };
                    let member = self.members.entry(user_id.clone()).or_insert(invite);
                    if member.membership == Membership::Leave {
                        member.membership = Membership::Invite;
                    }
                }
            }
            StepRecord::DoorkeeperAdmitted { user_id } => {
                if self.room_id.is_some() {
                    self.doorkeeper = Some(user_id.clone());
                }
            }
            StepRecord::InviteFailed { user_id, failure } => {
                self.invited.remove(user_id);
                self.invite_failures.insert(user_id.clone(), failure.clone());
            }
            // Kept beside the room state (`LifecycleState::create_began`), not in it.
            StepRecord::CreateBegan { .. } => {}
            StepRecord::InviteForgotten { user_id } => {
                self.invited.remove(user_id);
                self.invite_failures.remove(user_id);
            }
            StepRecord::OpeningNoticeSent => self.opening_notice_sent = true,
            StepRecord::TranscriptNoticeSent => self.transcript_notice_sent = true,
            StepRecord::ClosingNoticeSent => self.closing_notice_sent = true,
            StepRecord::Archived => self.archived = true,
            // A transcript is the room's: none before it exists.
            StepRecord::TranscriptMade { .. } => self.transcript_made |= self.room_id.is_some(),
            // The first failure is kept: the wait counts from it.
            StepRecord::TranscriptFailed { at, error } => {
                self.transcript_failed_at.get_or_insert(*at);
                self.transcript_error = Some(error.clone());
            }
        }
    }
}

/// A holder or host whose invite keeps failing (what the store reads of `room_invites`, for the admin
/// command and the status page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingInvite {
    pub user_id: OwnedUserId,
    /// The last error.
    pub error: String,
}
