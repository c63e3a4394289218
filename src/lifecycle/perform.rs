//! Each step's effect on the homeserver and the records its success is kept with: one
//! function per [`Step`]. `reconcile` (in `mod.rs`) plans, performs and records; what
//! a record changes is `RoomState::apply`, the rule the store follows.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::{
    Lifecycle, StepError,
    servers::{Admission, RemoteInvites},
};
use crate::{
    failpoint,
    matrix::{MatrixError, rooms},
    model::{
        ActionReason, Actor, Announcement, Channel, CloseReason, CreateBegan, InviteFailure, KickReason, Membership,
        ModeratedMember, ModerationAction, NewAction, Reader, ReservationId, ReservationRecord, RoomState, Speech,
        Step, StepRecord, TranscriptEntry, TranscriptLine, naming,
    },
    schedule::Schedule,
    words,
};

/// Opening the room (`Work::Open`) in logs and metrics, beside each step's [`Step::kind`].
pub(super) const OPEN: &str = "create_room";

/// Events asked for per page of a room's history when making its transcript: what one
/// page holds in memory.
const TRANSCRIPT_PAGE: u32 = 200;
/// How long one page may take, retries of a flaky homeserver included.
const TRANSCRIPT_PAGE_DEADLINE: Duration = Duration::from_secs(30);

/// How long Synapse may go on with a remote invite after Foyer stopped waiting
/// ([`crate::matrix::REQUEST_TIMEOUT`]): with its defaults (`federation.client_timeout`
/// 60 s, `max_short_retries` 3) it tries a server that hangs four times, about four
/// minutes in all.
const SYNAPSE_STILL_TRYING: Duration = Duration::from_secs(240);

/// A failure of the federation behind a remote invite: Synapse could not reach the
/// server (502), it did not answer Synapse in time (504, or a 500 from the call), or the
/// homeserver took longer than Foyer waits. Not the homeserver's own failure (refused
/// connection, 429, 503).
fn federation_failure(e: &MatrixError) -> bool {
    matches!(e, MatrixError::Timeout { .. } | MatrixError::Api { status: 500 | 502 | 504, .. })
}

/// What a server failed with, without the room it was for: the same words for each of
/// its holders, whatever their room (the platform hears each ticket's error once).
fn server_error(e: &MatrixError) -> String {
    match e {
        MatrixError::Api { status, errcode, message, .. } => format!("{status} {errcode}: {message}"),
        MatrixError::Timeout { .. } => {
            format!("no answer within {} s", crate::matrix::REQUEST_TIMEOUT.as_secs())
        }
        other => other.to_string(),
    }
}

/// What the steps of one round in the room work from: what they were planned from.
pub(super) struct InRoom<'a> {
    pub id: &'a ReservationId,
    pub record: &'a ReservationRecord,
    pub times: &'a Schedule,
    pub room: &'a OwnedRoomId,
    pub state: &'a RoomState,
    /// When the round was planned.
    pub now: DateTime<Utc>,
}

impl Lifecycle {
    /// Creates the room with its fixed alias, or adopts the room that holds it. Who
    /// began the create is recorded before `createRoom` is sent, so that whoever finds a
    /// half-created room can tell how long to wait for it (see [`Lifecycle::patience`]).
    pub(super) async fn open(
        &self, id: &ReservationId, record: &ReservationRecord, times: &Schedule, began_before: Option<&CreateBegan>,
        now: DateTime<Utc>,
    ) -> Result<StepRecord, StepError> {
        let privileged = self.creators_privileged().await;
        let patience = self.patience(began_before).await;
        let began_at = Utc::now();
        self.store.record_step(id, &StepRecord::CreateBegan { by: self.instance.clone() }, began_at).await?;
        let created = rooms::create_or_adopt(
            &self.client,
            &self.config,
            record,
            times,
            privileged,
            &self.unmarked,
            rooms::Patience { wait: patience, began_at },
        )
        .await?;
        failpoint::hit("after_create_room");
        tracing::info!(reservation_id = %id, room_id = %created, "room opened");
        let lateness = (now - times.opens_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("foyer_lifecycle_open_lateness_seconds").record(lateness);
        Ok(StepRecord::RoomCreated {
            room_id: created,
            hosts: record.reservation.staff().into_iter().collect(),
            name: record.reservation.title.as_str().to_owned(),
            topic: words::room::topic(record, times),
        })
    }

    /// Performs one step in the room; returns the records its success is kept with, to
    /// be recorded in this order, each at once.
    pub(super) async fn perform(&self, at: &InRoom<'_>, step: &Step) -> Result<Vec<StepRecord>, StepError> {
        let done = match step {
            Step::SetHosts => self.set_hosts(at).await?,
            Step::SetSpeech { speech, lifted } => self.set_speech(at, speech, lifted).await?,
            Step::SetName(name) => self.set_name(at, name).await?,
            Step::SetTopic(topic) => self.set_topic(at, topic).await?,
            Step::EnsureSpace(channel) => self.ensure_space(at, channel).await?,
            Step::LinkSpace(space) => self.link_space(at, space).await?,
            Step::UnlinkSpace(space) => self.unlink_space(at, space).await?,
            Step::SetStreamLink => self.set_stream_link(at).await?,
            Step::Invite(user) => self.invite_holder(at, user).await?,
            Step::Join(user) => return Ok(self.join_holder(at, user).await?),
            Step::AdmitDoorkeeper => self.admit_doorkeeper(at).await?,
            Step::SetAccess(access) => {
                let space = at.state.space.as_ref();
                rooms::set_access(&self.client, at.room, *access, self.config.rooms.join_rule, space).await?;
                tracing::info!(reservation_id = %at.id, room_id = %at.room, access = access.as_str(), "who may join set");
                StepRecord::AccessApplied(*access)
            }
            Step::PostOpeningNotice => return self.opening_notice(at).await,
            Step::PostTranscriptNotice => self.transcript_notice(at).await?,
            Step::PostLiveNotice(started) => self.live_notice(at, *started).await?,
            Step::PostEndedNotice(ended) => self.ended_notice(at, *ended).await?,
            Step::PostReminder(secs) => self.reminder(at, *secs).await?,
            Step::PostClosingWarning => self.closing_warning(at).await?,
            Step::AcceptKnock(user) => self.accept_knock(at, user).await?,
            Step::Kick(user, reason) => {
                let removed = self.kick(at, user, *reason).await?;
                // Forgotten after the removal is recorded: a crash in between leaves the
                // old rule (never invited again), never a second invite.
                return Ok(vec![removed, StepRecord::InviteForgotten { user_id: user.clone() }]);
            }
            Step::PostClosingNotice(reason) => self.closing_notice(at, *reason).await?,
            Step::Transcribe => self.transcribe(at).await?,
            Step::Archive => self.archive(at).await?,
        };
        Ok(vec![done])
    }

    async fn set_hosts(&self, at: &InRoom<'_>) -> Result<StepRecord, StepError> {
        let hosts = at.record.reservation.staff().into_iter().collect();
        rooms::set_hosts(&self.client, at.room, &at.state.hosts_applied, &hosts).await?;
        tracing::info!(reservation_id = %at.id, room_id = %at.room, hosts = ?hosts, "moderators updated");
        Ok(StepRecord::HostsApplied(hosts))
    }

    /// The mode and the timeouts in the power levels; each timeout that ended is then
    /// recorded as lifted (once: a command that lifted it recorded the same).
    async fn set_speech(
        &self, at: &InRoom<'_>, speech: &Speech, lifted: &BTreeMap<OwnedUserId, DateTime<Utc>>,
    ) -> Result<StepRecord, StepError> {
        rooms::set_speech(&self.client, at.room, &at.state.speech_applied, speech).await?;
        tracing::info!(reservation_id = %at.id, room_id = %at.room, mode = speech.mode.as_str(), timed_out = speech.silenced.len(), "who may speak updated");
        for (user, until) in lifted {
            let action = NewAction {
                reservation: at.id.clone(),
                action: ModerationAction::Untimeout {
                    member: ModeratedMember::user(user.clone(), None),
                    until: *until,
                    event_id: None,
                },
                actor: Actor::Bot,
                reason: ActionReason::default(),
                at: *until,
            };
            self.store.record_action(&action).await?;
        }
        Ok(StepRecord::SpeechApplied(speech.clone()))
    }

    async fn set_name(&self, at: &InRoom<'_>, name: &str) -> Result<StepRecord, StepError> {
        rooms::set_name(&self.client, at.room, name).await?;
        tracing::info!(reservation_id = %at.id, room_id = %at.room, name, "room renamed");
        Ok(StepRecord::NameSet(name.to_owned()))
    }

    async fn set_topic(&self, at: &InRoom<'_>, topic: &str) -> Result<StepRecord, StepError> {
        rooms::set_topic(&self.client, at.room, topic).await?;
        Ok(StepRecord::TopicSet(topic.to_owned()))
    }

    async fn ensure_space(&self, at: &InRoom<'_>, channel: &Channel) -> Result<StepRecord, StepError> {
        let space = rooms::ensure_space(&self.client, &self.config, channel).await?;
        tracing::info!(reservation_id = %at.id, channel = channel.id.as_str(), space = %space, "channel space ready");
        Ok(StepRecord::SpaceEnsured {
            channel_id: channel.id.as_str().to_owned(),
            space,
            name: channel.name.as_str().to_owned(),
        })
    }

    async fn link_space(&self, at: &InRoom<'_>, space: &OwnedRoomId) -> Result<StepRecord, StepError> {
        rooms::link_space(&self.client, &self.config, space, at.room).await?;
        Ok(StepRecord::SpaceLinked(Some(space.clone())))
    }

    async fn unlink_space(&self, at: &InRoom<'_>, space: &OwnedRoomId) -> Result<StepRecord, StepError> {
        rooms::unlink_space(&self.client, space, at.room).await?;
        Ok(StepRecord::SpaceLinked(None))
    }

    async fn set_stream_link(&self, at: &InRoom<'_>) -> Result<StepRecord, StepError> {
        rooms::set_stream_link(&self.client, &self.config, at.record, at.room).await?;
        let url = at.record.reservation.stream_url.as_ref().map(|u| u.as_str().to_owned());
        tracing::info!(reservation_id = %at.id, room_id = %at.room, stream_url = url.as_deref().unwrap_or(""), "stream widget and link set");
        Ok(StepRecord::StreamLinkSet(url))
    }

    /// Posts a notice as the bot, with a transaction id derived from its purpose, so a
    /// repeat after a crash posts nothing new.
    async fn notice(&self, at: &InRoom<'_>, txn: &str, (text, html): (String, String)) -> Result<(), MatrixError> {
        rooms::notice(&self.client, &self.config.bot_user_id(), at.room, txn, &text, &html).await
    }

    /// The opening notice; when it says the chat will be saved, that is recorded too, so
    /// the transcript notice is not posted after it.
    async fn opening_notice(&self, at: &InRoom<'_>) -> Result<Vec<StepRecord>, StepError> {
        let transcript = at.record.reservation.wants_transcript(self.config.rooms.transcript);
        self.notice(at, &format!("foyer-open-{}", at.id), words::room::opening_notice(at.record, transcript)).await?;
        Ok(if transcript {
            vec![StepRecord::OpeningNoticeSent, StepRecord::TranscriptNoticeSent]
        } else {
            vec![StepRecord::OpeningNoticeSent]
        })
    }

    async fn transcript_notice(&self, at: &InRoom<'_>) -> Result<StepRecord, StepError> {
        self.notice(at, &format!("foyer-transcript-{}", at.id), words::room::transcript_notice()).await?;
        tracing::info!(reservation_id = %at.id, room_id = %at.room, "members told the chat will be saved");
        Ok(StepRecord::TranscriptNoticeSent)
    }

    async fn live_notice(&self, at: &InRoom<'_>, started: DateTime<Utc>) -> Result<StepRecord, StepError> {
        let txn = format!("foyer-live-{}-{}", at.id, started.timestamp_millis());
        self.notice(at, &txn, words::room::live_notice(at.record)).await?;
        failpoint::hit("after_notice");
        Ok(StepRecord::LiveNoticeSent(started))
    }

    async fn ended_notice(&self, at: &InRoom<'_>, ended: DateTime<Utc>) -> Result<StepRecord, StepError> {
        let txn = format!("foyer-ended-{}-{}", at.id, ended.timestamp_millis());
        self.notice(at, &txn, words::room::ended_notice(at.times)).await?;
        failpoint::hit("after_notice");
        Ok(StepRecord::EndedNoticeSent(ended))
    }

    async fn reminder(&self, at: &InRoom<'_>, secs: u64) -> Result<StepRecord, StepError> {
        let left = ((at.record.reservation.starts_at - at.now).num_milliseconds().max(0) as u64).div_ceil(1000);
        self.notice(at, &format!("foyer-remind-{}-{secs}", at.id), words::room::reminder_notice(at.record, left))
            .await?;
        failpoint::hit("after_notice");
        Ok(StepRecord::ReminderSent(secs))
    }

    async fn closing_warning(&self, at: &InRoom<'_>) -> Result<StepRecord, StepError> {
        self.notice(at, &format!("foyer-warn-{}", at.id), words::room::closing_warning(at.times, at.now)).await?;
        Ok(StepRecord::ClosingWarningSent)
    }

    async fn closing_notice(&self, at: &InRoom<'_>, reason: CloseReason) -> Result<StepRecord, StepError> {
        let text = words::room::closing_notice(at.record, reason == CloseReason::Cancelled);
        self.notice(at, &format!("foyer-close-{}", at.id), text).await?;
        Ok(StepRecord::ClosingNoticeSent)
    }

    async fn accept_knock(&self, at: &InRoom<'_>, user: &OwnedUserId) -> Result<StepRecord, StepError> {
        rooms::invite(&self.client, at.room, user).await?;
        tracing::info!(reservation_id = %at.id, room_id = %at.room, user_id = %user, "knock accepted");
        let bot = Some(self.config.bot_user_id());
        Ok(StepRecord::Member { user_id: user.clone(), membership: Membership::Invite, invited_by: bot })
    }

    async fn kick(&self, at: &InRoom<'_>, user: &OwnedUserId, reason: KickReason) -> Result<StepRecord, StepError> {
        let removed = StepRecord::Member { user_id: user.clone(), membership: Membership::Leave, invited_by: None };
        if reason == KickReason::KnockRefused && !self.knocks.allow(at.id, user) {
            // A flood of strangers' knocks: each refusal is a kick that Synapse does not
            // rate-limit for the bot. Past the budget the knock is left unanswered (it
            // grants nothing) and recorded as handled.
            tracing::info!(reservation_id = %at.id, user_id = %user, "knock left unanswered: too many refusals of late");
            return Ok(removed);
        }
        let why = words::room::kick_reason(reason);
        rooms::kick(&self.client, at.room, user, why).await?;
        tracing::info!(reservation_id = %at.id, room_id = %at.room, user_id = %user, reason = why, "removed from the room");
        Ok(removed)
    }

    /// Reads the room's whole history, oldest first, a page at a time, each page's lines
    /// written before the next is asked for: memory holds one page and the members'
    /// names, however long the chat. A failure of the homeserver (down, or refusing) is
    /// recorded (the archive waits `rooms.transcript_wait` from the first) and fails the
    /// step, which is retried from the start; the lines written so far are never served.
    async fn transcribe(&self, at: &InRoom<'_>) -> Result<StepRecord, StepError> {
        match self.read_history(at).await {
            Err(StepError::Matrix(e)) => {
                let failed = StepRecord::TranscriptFailed { at: Utc::now(), error: e.to_string() };
                self.store.record_step(at.id, &failed, Utc::now()).await?;
                Err(e.into())
            }
            other => other,
        }
    }

    async fn read_history(&self, at: &InRoom<'_>) -> Result<StepRecord, StepError> {
        let started = std::time::Instant::now();
        self.store.clear_transcript(at.id).await?;
        let mut history = History::of(self, at.room);
        while let Some(entries) = history.next_page().await? {
            self.store.write_transcript(at.id, &entries).await?;
        }
        let (messages, pages) = (history.reader.lines(), history.pages);
        tracing::info!(reservation_id = %at.id, room_id = %at.room, messages, pages, elapsed_ms = started.elapsed().as_millis() as u64, "transcript made");
        Ok(StepRecord::TranscriptMade { messages })
    }

    /// A room's messages as a transcript would keep them (edits applied, redacted ones
    /// left out), read from the homeserver now: the replay of a show whose room is open
    /// (docs/replay.md). Bounded as a transcript is.
    pub async fn room_lines(&self, room: &OwnedRoomId) -> Result<Vec<TranscriptLine>, MatrixError> {
        let mut lines: Vec<TranscriptLine> = Vec::new();
        let mut at: std::collections::HashMap<OwnedEventId, usize> = std::collections::HashMap::new();
        let mut history = History::of(self, room);
        while let Some(entries) = history.next_page().await? {
            for entry in entries {
                match entry {
                    TranscriptEntry::Line(line) => {
                        at.insert(line.event_id.clone(), lines.len());
                        lines.push(line);
                    }
                    // An edit by anyone but the sender is no edit (the store's rule too).
                    TranscriptEntry::Edit { event_id, sender, body } => {
                        if let Some(line) =
                            at.get(&event_id).and_then(|i| lines.get_mut(*i)).filter(|l| l.sender == sender)
                        {
                            line.body = body;
                        }
                    }
                }
            }
        }
        Ok(lines)
    }

    async fn archive(&self, at: &InRoom<'_>) -> Result<StepRecord, StepError> {
        // Web fans' names go with the show (docs/web-chat.md): their users keep no name of
        // the fan once the room is archived. Done first, so that a failure is tried again
        // with the archive.
        let named = self.store.named_web_users(at.id).await?;
        for user in &named {
            rooms::clear_web_name(&self.client, user).await?;
        }
        if !named.is_empty() {
            self.store.clear_web_user_names(at.id).await?;
        }
        rooms::archive(&self.client, self.admin.as_deref(), &self.config, at.record, at.room).await?;
        tracing::info!(reservation_id = %at.id, room_id = %at.room, mode = self.config.rooms.archive_mode.as_str(), "room archived");
        Ok(StepRecord::Archived)
    }

    /// Invites one holder (or host) and says how it went, for that user alone: a failure
    /// that is theirs (a server that is down or misspelt, a user who does not exist or may
    /// not join) has its own backoff and never fails the reservation. Only the homeserver
    /// itself failing (unreachable, or a server error for one of its own users) is the
    /// reservation's error, retried soon like any step.
    pub(super) async fn invite_holder(&self, at: &InRoom<'_>, user: &OwnedUserId) -> Result<StepRecord, MatrixError> {
        if user.server_name() != self.config.homeserver.server_name {
            return self.invite_remote(at, user).await;
        }
        // Only with the admin API (synapse_admin.token) can a missing local user be told.
        let missing = match &self.admin {
            Some(admin) => matches!(admin.user_exists(user).await, Ok(false)),
            None => false,
        };
        if missing {
            return Ok(self.invite_failed(at, user, format!("there is no user {user} on this homeserver")));
        }
        match rooms::invite(&self.client, at.room, user).await {
            Ok(()) => Ok(self.invited(at, user).await),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => Ok(self.invite_failed(at, user, e.to_string())),
        }
    }

    /// Invites a holder of another server, once, if their server's backoff allows
    /// (`servers.rs`). A failure of the federation (Synapse's 502 or 504, or no answer in
    /// time) is the holder's and their server's: recorded, never retried here, and that
    /// server is left alone, for every room, until its backoff ends; the holders it then
    /// has are recorded as not tried, with the server's retry time.
    async fn invite_remote(&self, at: &InRoom<'_>, user: &OwnedUserId) -> Result<StepRecord, MatrixError> {
        let server = user.server_name();
        let (permit, _probe) = match self.remote.admit(server).await {
            Admission::Send { permit, probe } => (permit, probe),
            Admission::Wait { until, error } => {
                metrics::counter!("foyer_remote_invites_total", "result" => "deferred").increment(1);
                tracing::debug!(reservation_id = %at.id, user_id = %user, server = %server, "not invited yet: the holder's server failed of late");
                let error = format!("not tried: {server} failed an invite of late ({error})");
                let failure = InviteFailure::deferred(at.state.invite_failures.get(user), error, until);
                return Ok(StepRecord::InviteFailed { user_id: user.clone(), failure });
            }
        };
        match rooms::invite_once(&self.client, at.room, user).await {
            Ok(()) => {
                self.remote.answered(server);
                metrics::counter!("foyer_remote_invites_total", "result" => "invited").increment(1);
                Ok(self.invited(at, user).await)
            }
            Err(e) if federation_failure(&e) => {
                let retry_at = self.remote.failed(server, server_error(&e));
                metrics::counter!("foyer_remote_invites_total", "result" => "server_failed").increment(1);
                let retry_in_s = (retry_at - Utc::now()).num_seconds();
                tracing::warn!(reservation_id = %at.id, server = %server, error = %e, retry_in_s, "a server failed an invite; none of its holders is invited before its backoff ends");
                if matches!(e, MatrixError::Timeout { .. }) {
                    // Synapse goes on trying that server after Foyer stopped waiting:
                    // its place among the invites in flight stays taken meanwhile.
                    RemoteInvites::hold(permit, SYNAPSE_STILL_TRYING);
                }
                Ok(self.invite_failed(at, user, e.to_string()))
            }
            // The homeserver's own failure (down, overloaded): the reservation's error.
            Err(e) if e.is_transient() => Err(e),
            // The server answered, and said no (or Synapse refused): the holder's alone.
            Err(e) => {
                self.remote.answered(server);
                metrics::counter!("foyer_remote_invites_total", "result" => "refused").increment(1);
                Ok(self.invite_failed(at, user, e.to_string()))
            }
        }
    }

    /// Joins a local holder through the admin join, in the room's turn (`auto_join`);
    /// recorded as let in, so that one who leaves is not joined again. A failure that is
    /// the holder's (no such user, banned) is kept against them, as an invite's is.
    pub(super) async fn join_holder(
        &self, at: &InRoom<'_>, user: &OwnedUserId,
    ) -> Result<Vec<StepRecord>, MatrixError> {
        let Some(admin) = &self.admin else {
            // The planner plans joins only with the admin API configured.
            return Ok(vec![self.invite_holder(at, user).await?]);
        };
        match rooms::join_holder(admin, &self.joins, at.room, user).await {
            Ok(()) => {
                metrics::counter!("foyer_joins_total", "kind" => "holder", "result" => "joined").increment(1);
                let let_in = self.invited(at, user).await;
                let keeper = at.state.doorkeeper.clone();
                let joined =
                    StepRecord::Member { user_id: user.clone(), membership: Membership::Join, invited_by: keeper };
                Ok(vec![let_in, joined])
            }
            Err(e) => {
                let result = if matches!(e, MatrixError::Api { status: 429, .. }) { "refused" } else { "failed" };
                metrics::counter!("foyer_joins_total", "kind" => "holder", "result" => result).increment(1);
                if e.is_transient() {
                    return Err(e);
                }
                Ok(vec![self.invite_failed(at, user, e.to_string())])
            }
        }
    }

    /// Posts an announcement in the channel's announcements room, once (its
    /// transaction id names the reservation and the announcement).
    pub(super) async fn announce(
        &self, id: &ReservationId, record: &ReservationRecord, room: &OwnedRoomId, announcement: &Announcement,
    ) -> Result<StepRecord, MatrixError> {
        let chat = naming::matrix_to(&self.config.room_alias(id));
        let (text, html) = match announcement {
            Announcement::Reminder { before_secs, .. } => words::announce::reminder(record, *before_secs, &chat),
            Announcement::Moved { to } => words::announce::moved(record, *to),
            Announcement::Cancelled => words::announce::cancelled(record),
            Announcement::Live => words::announce::live(record, &chat),
            Announcement::Open => {
                words::announce::open(record, &chat, record.reservation.access == crate::model::Access::Public)
            }
        };
        let key = announcement.key();
        let txn = format!("foyer-announce-{id}-{key}");
        rooms::notice(&self.client, &self.config.bot_user_id(), room, &txn, &text, &html).await?;
        tracing::info!(reservation_id = %id, room_id = %room, announcement = announcement.kind(), "announced to the channel's followers");
        Ok(StepRecord::Announced(key))
    }

    /// Puts the doorkeeper (the user of `synapse_admin.token`) in the room with invite
    /// power: the admin join invites from it first.
    async fn admit_doorkeeper(&self, at: &InRoom<'_>) -> Result<StepRecord, StepError> {
        let admin = self.admin.as_ref().ok_or_else(|| MatrixError::Request {
            endpoint: "POST /_synapse/admin/v1/join".into(),
            message: "synapse_admin.token is not configured".into(),
        })?;
        let keeper = self.doorkeeper.get_or_try_init(|| rooms::doorkeeper(admin)).await?.clone();
        rooms::admit_doorkeeper(&self.client, admin, &self.joins, at.room, &keeper).await?;
        tracing::info!(reservation_id = %at.id, room_id = %at.room, doorkeeper = %keeper, "the doorkeeper is in the room");
        Ok(StepRecord::DoorkeeperAdmitted { user_id: keeper })
    }

    /// The invite went through: the holder is invited to the channel's space too.
    async fn invited(&self, at: &InRoom<'_>, user: &OwnedUserId) -> StepRecord {
        let (id, room) = (at.id, at.room);
        // Everyone invited to a room is invited to its channel's space; the space is a
        // convenience, so its failure is only logged.
        if let Some(space) = &at.state.space
            && let Err(e) = rooms::invite(&self.client, space, user).await
        {
            tracing::warn!(reservation_id = %id, space = %space, user_id = %user, error = %e, "cannot invite to the channel's space");
        }
        failpoint::hit("after_invite");
        tracing::info!(reservation_id = %id, room_id = %room, user_id = %user, "invited");
        StepRecord::Invited { user_id: user.clone() }
    }

    /// The holder's invite failed with `error`: tried again on their own backoff.
    fn invite_failed(&self, at: &InRoom<'_>, user: &OwnedUserId, error: String) -> StepRecord {
        let failure = InviteFailure::after(at.state.invite_failures.get(user), error, Utc::now());
        let retry_in_s = (failure.retry_at - Utc::now()).num_seconds();
        tracing::warn!(reservation_id = %at.id, room_id = %at.room, user_id = %user, error = %failure.error, attempts = failure.attempts, retry_in_s, "cannot invite; trying this holder again later");
        metrics::counter!("foyer_lifecycle_steps_total", "step" => "invite", "result" => "failed").increment(1);
        StepRecord::InviteFailed { user_id: user.clone(), failure }
    }

    /// How long to wait for a room found holding our alias without our marker before
    /// giving it up (see `rooms::ABANDONED_AFTER`), from who began creating it and when.
    async fn patience(&self, began: Option<&CreateBegan>) -> Duration {
        let Some(began) = began else { return rooms::ABANDONED_AFTER };
        if self.client.seen_down_since(began.at) {
            // The homeserver went down after the create began: the create died with it.
            return Duration::ZERO;
        }
        if began.by != self.instance {
            // We hold the lease now; an instance that holds none is gone (or idle).
            match self.store.holds_live_lease(&began.by, Utc::now()).await {
                Ok(false) => return rooms::CREATOR_GONE_GRACE,
                Ok(true) => {}
                Err(e) => tracing::warn!(error = %e, "cannot tell whether the room's creator is alive"),
            }
        }
        rooms::ABANDONED_AFTER
    }
}

/// A room's history read oldest first, a page at a time, as a transcript keeps it
/// ([`Reader`]): memory holds one page and the members' names. Past a cap the reader
/// keeps nothing more, and the rest of the room is not read.
struct History<'a> {
    client: &'a crate::matrix::MatrixClient,
    room: &'a OwnedRoomId,
    reader: Reader,
    from: Option<String>,
    done: bool,
    pages: u64,
}

impl<'a> History<'a> {
    fn of(lifecycle: &'a Lifecycle, room: &'a OwnedRoomId) -> Self {
        let reader = Reader::new(lifecycle.config.bot_user_id());
        History { client: &lifecycle.client, room, reader, from: None, done: false, pages: 0 }
    }

    /// The next page's entries; `None` once the room (or a cap) is reached.
    async fn next_page(&mut self) -> Result<Option<Vec<TranscriptEntry>>, MatrixError> {
        if self.done {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + TRANSCRIPT_PAGE_DEADLINE;
        let page = self.client.messages(self.room, self.from.as_deref(), TRANSCRIPT_PAGE, deadline).await?;
        let entries = page.events.iter().filter_map(|event| self.reader.read(event)).collect();
        self.pages += 1;
        match page.next.filter(|_| !self.reader.is_cut()) {
            Some(next) => self.from = Some(next),
            None => self.done = true,
        }
        Ok(Some(entries))
    }
}
