//! The lifecycle: a reconciler that makes each reservation's room match its facts.
//!
//! The worker claims due reservations (a lease in the store), plans each with the pure
//! [`plan::plan`], performs the work (`perform.rs`: one function per step, each returning
//! what the store records), records every outcome at once, and stores when to look
//! again. New facts make a reservation due at once; a restart resumes from the
//! store; duplicates do nothing because plans are computed from recorded state.

mod housekeeping;
mod knocks;
pub mod lookups;
mod perform;
pub mod plan;
pub mod servers;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use ruma::{RoomId, api::client::discovery::get_capabilities};
use tokio::{sync::Notify, task::JoinSet, time::Instant};

pub use self::knocks::KnockBudget;
pub use self::plan::{Plan, Work, plan};
use crate::matrix::synapse_admin::SynapseAdmin;
use crate::model::Step;
use crate::{
    config::Config,
    failpoint,
    matrix::{MatrixClient, MatrixError, rooms},
    model::{ArchivedTranscript, ReservationId, StepRecord, naming},
    outbox::{OutboundEvent, Release, StepRoom},
    schedule,
    store::{Claim, Planning, Store, StoreError},
};

/// A round starts no remote invite after this long on them: the next round, planned
/// afresh, invites first the local holders who came meanwhile.
const REMOTE_INVITES_FOR: Duration = Duration::from_secs(5);

/// A round starts no join of a holder after this long on them (see `perform_in_room`).
const JOINS_FOR: Duration = Duration::from_secs(5);

/// How long a claim is held without renewal: a worker that dies loses its claims after
/// this, and another instance takes over. Renewed every [`RENEW_EVERY`] while working.
const LEASE: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Reservations worked on at the same time.
const CONCURRENCY: usize = 16;
/// Longest sleep between rounds, so an instance notices within seconds the facts that
/// reached another instance.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// How often [`housekeeping::sweep`] runs.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Open(#[from] rooms::OpenError),
}

pub struct Lifecycle {
    pub store: Arc<dyn Store>,
    pub client: MatrixClient,
    pub config: Arc<Config>,
    pub admin: Option<Arc<SynapseAdmin>>,
    pub wake: Arc<Notify>,
    /// This process's name on leases, unique per start.
    pub instance: String,
    /// Asked once: whether the homeserver's default room version privileges creators.
    pub creators_privileged: tokio::sync::OnceCell<bool>,
    /// Asked once: the user of `synapse_admin.token`, exempted from Synapse's rate limits.
    pub doorkeeper: tokio::sync::OnceCell<ruma::OwnedUserId>,
    /// Rooms found holding an alias without Foyer's marker (see `rooms::create_or_adopt`).
    pub unmarked: rooms::UnmarkedRooms,
    /// Refused knocks of late, per room and per knocker's server.
    pub knocks: KnockBudget,
    /// Other servers' backoff and the bound on invites to them, across all rooms.
    pub remote: servers::RemoteInvites,
    /// Turns for Foyer's own joins into each room (`rooms.join_pace`), shared with the
    /// web chat's joins of web fans' users.
    pub joins: Arc<rooms::JoinPacer>,
}

impl Lifecycle {
    /// Runs until `stop` turns true.
    ///
    /// Up to [`CONCURRENCY`] reservations are worked on at once, and a due one is claimed
    /// as soon as a slot is free, while the others go on: one slow reservation never holds
    /// back those that fall due meanwhile. Only what can be worked on now is claimed, so
    /// no lease waits in a queue (another instance may take that work).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        // Shown from the start: "none yet" is an answer too.
        metrics::counter!("foyer_remote_invites_total", "result" => "invited").increment(0);
        for kind in ["holder", "web_fan"] {
            metrics::counter!("foyer_joins_total", "kind" => kind, "result" => "joined").increment(0);
        }
        let mut pruned_at: Option<Instant> = None;
        let mut tasks = JoinSet::new();
        loop {
            if pruned_at.is_none_or(|t| t.elapsed() > HOUSEKEEPING_EVERY) {
                housekeeping::sweep(self.store.as_ref(), &self.config, Utc::now()).await;
                pruned_at = Some(Instant::now());
            }
            if failpoint::armed("worker_paused") {
                tokio::select! {
                    _ = tokio::time::sleep(MAX_IDLE) => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            let free = CONCURRENCY.saturating_sub(tasks.len());
            // With every slot taken only a finished task (or a stop) matters: no query.
            let wait = if free == 0 {
                MAX_IDLE
            } else {
                match self.store.next_due_at().await {
                    Ok(Some(due)) => (due - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(MAX_IDLE),
                    Ok(None) => MAX_IDLE,
                    Err(_) => Duration::from_secs(1),
                }
            };
            if free > 0 && wait.is_zero() {
                match self.store.claim_due(Utc::now(), LEASE, free as u32, &self.instance).await {
                    Ok(claims) if !claims.is_empty() => {
                        for claim in claims {
                            let this = self.clone();
                            tasks.spawn(async move { this.process(claim).await });
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot claim due reservations; retrying"),
                }
            }
            // Due but not claimable (another instance was quicker): look again shortly.
            let nap = if wait.is_zero() { Duration::from_millis(5) } else { wait };
            tokio::select! {
                Some(_) = tasks.join_next() => {}
                _ = tokio::time::sleep(nap), if free > 0 => {}
                _ = self.wake.notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        // Let the reservations being worked on finish their step and release their lease.
        while tasks.join_next().await.is_some() {}
    }

    /// Whether the server's default room version gives creators implicit top power (and
    /// forbids listing them in power levels), as room version 12 does. Asked until the
    /// homeserver answers: guessing wrong would leave the bot powerless in its rooms.
    async fn creators_privileged(&self) -> bool {
        *self.creators_privileged.get_or_init(|| self.ask_room_version()).await
    }

    async fn ask_room_version(&self) -> bool {
        let mut backoff = crate::matrix::Backoff::default();
        loop {
            let deadline = Instant::now() + Duration::from_secs(30);
            match self.client.send(get_capabilities::v3::Request::new(), None, deadline).await {
                Ok(resp) => {
                    let version = resp.capabilities.room_versions.default;
                    let privileged =
                        version.rules().is_some_and(|r| r.authorization.explicitly_privilege_room_creators);
                    tracing::info!(room_version = %version, creators_privileged = privileged, "default room version");
                    return privileged;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the homeserver's capabilities; retrying");
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }

    /// Opens a reservation's room now if it should exist but does not yet (the alias
    /// query: a holder typed the alias). Returns whether the room exists afterwards.
    pub async fn open_now(&self, id: &ReservationId) -> Result<bool, StoreError> {
        let Planning { record, state } = self.store.planning(id).await?;
        if state.room.archived {
            return Ok(false);
        }
        if state.room.room_id.is_some() {
            return Ok(true);
        }
        let due = plan(record.as_ref(), &state.audience, &state.room, &self.config.rooms, Utc::now());
        if due.work != Work::Open {
            return Ok(false);
        }
        if let Some(claim) = self.store.claim(id, Utc::now(), LEASE, &self.instance).await? {
            tracing::info!(reservation_id = %id, "opening on demand for an alias query");
            self.process(claim).await;
        } else {
            // Another worker is on it; wait for it briefly.
            for _ in 0..50 {
                if self.store.planning(id).await?.state.room.room_id.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(self.store.planning(id).await?.state.room.room_id.is_some())
    }

    async fn process(&self, claim: Claim) {
        let id = &claim.reservation_id;
        if let Some(due_at) = claim.due_at {
            let lateness = (Utc::now() - due_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!("foyer_lifecycle_due_lateness_seconds").record(lateness);
        }
        // Keep the lease while working; effects are idempotent, so losing it (a very long
        // stall) costs a repeat, not a wrong result.
        let renewing = async {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let until = Utc::now() + chrono::Duration::from_std(LEASE).unwrap_or_default();
                match self.store.renew(&claim, until).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(reservation_id = %claim.reservation_id, "lost the lease while working"),
                    Err(e) => {
                        tracing::warn!(reservation_id = %claim.reservation_id, error = %e, "cannot renew the lease")
                    }
                }
            }
        };
        let mut step = None;
        let result = tokio::select! {
            result = self.reconcile(&claim, &mut step) => result,
            _ = renewing => unreachable!("renewing never ends"),
        };
        let now = Utc::now();
        let released = match result {
            Ok(next) => {
                let recovered = OutboundEvent::for_release(id, claim.attempts, Release::Done, now);
                if recovered.is_some() {
                    tracing::info!(reservation_id = %id, attempts = claim.attempts, "reservation recovered");
                }
                self.store.release_with_event(&claim, next, None, recovered.as_ref(), now).await
            }
            Err(e) => {
                let retry = e.retry_in(claim.attempts);
                let step = step.unwrap_or("plan");
                let (error, attempts) = (e.to_string(), claim.attempts + 1);
                tracing::warn!(reservation_id = %id, step, error, attempts, retry_in_s = retry.num_seconds(), "lifecycle step failed");
                metrics::counter!("foyer_lifecycle_steps_total", "step" => step, "result" => "failed").increment(1);
                let failed = Release::Failed { step, error: &error };
                let failing = OutboundEvent::for_release(id, claim.attempts, failed, now);
                self.store.release_with_event(&claim, Some(now + retry), Some(&error), failing.as_ref(), now).await
            }
        };
        if let Err(e) = released {
            // The lease expires by itself; the reservation is then retried.
            tracing::warn!(reservation_id = %id, error = %e, "cannot release the lease");
        }
    }

    /// Plans, performs and records until there is nothing to do; returns when to look
    /// again. `step_now` names the step being performed, so a failure can be counted by kind.
    async fn reconcile(
        &self, claim: &Claim, step_now: &mut Option<&'static str>,
    ) -> Result<Option<DateTime<Utc>>, StepError> {
        let id = &claim.reservation_id;
        loop {
            let Planning { record, state } = self.store.planning(id).await?;
            let now = Utc::now();
            let Plan { work, next_due_at } =
                plan(record.as_ref(), &state.audience, &state.room, &self.config.rooms, now);
            // Facts without their reservation are never work.
            let Some(record) = record else { return Ok(next_due_at) };
            let times = schedule::schedule(&record, &self.config.rooms);
            match work {
                Work::Nothing => {
                    // With the room as it should be, what the channel's followers are told.
                    let (due, next) = plan::announcements(&record, &state.room, &self.config.rooms, now);
                    let Some(room) = state.room.announcements_room.as_ref().filter(|_| !due.is_empty()) else {
                        let earliest = [next_due_at, next].into_iter().flatten().min();
                        return Ok(earliest);
                    };
                    *step_now = Some("announce");
                    for announcement in &due {
                        let done = self.announce(id, &record, room, announcement).await?;
                        self.record(id, None, "announce", &[done]).await?;
                    }
                }
                Work::Open => {
                    *step_now = Some(perform::OPEN);
                    let created = self.open(id, &record, &times, state.create_began.as_ref(), now).await?;
                    self.record(id, None, perform::OPEN, &[created]).await?;
                }
                Work::InRoom { room, steps } => {
                    let at =
                        perform::InRoom { id, record: &record, times: &times, room: &room, state: &state.room, now };
                    self.perform_in_room(&at, steps, step_now).await?;
                }
            }
            *step_now = None;
        }
    }

    /// Performs one round's steps in the room, recording each at once. Invites to other
    /// servers go last: a server that hangs or is down takes seconds per try
    /// (inside Synapse's lock on the room's memberships) and must not keep local holders,
    /// notices or kicks waiting. A holder with another step this round (a kick) keeps
    /// their invite in its place: one holder's steps keep their order.
    async fn perform_in_room(
        &self, at: &perform::InRoom<'_>, steps: Vec<Step>, step_now: &mut Option<&'static str>,
    ) -> Result<(), StepError> {
        let (remote_invites, steps) = remote_invites_last(steps, self.config.homeserver.server_name.as_str());
        // Holders joined by Foyer (`auto_join`) take the room's turns, one at
        // `rooms.join_pace`: they come after the other steps (the welcome notice among
        // them), and a round starts none after JOINS_FOR, so that what falls due
        // meanwhile (a kick, a notice, a new holder) waits seconds, not the whole doors.
        let (joins, steps): (Vec<Step>, Vec<Step>) = steps.into_iter().partition(|s| matches!(s, Step::Join(_)));
        for step in &steps {
            *step_now = Some(step.kind());
            let done = self.perform(at, step).await?;
            self.record(at.id, Some(at.room), step.kind(), &done).await?;
        }
        let started = Instant::now();
        for step in &joins {
            if started.elapsed() >= JOINS_FOR {
                break;
            }
            *step_now = Some(step.kind());
            let done = self.perform(at, step).await?;
            self.record(at.id, Some(at.room), step.kind(), &done).await?;
        }
        if remote_invites.is_empty() {
            return Ok(());
        }
        *step_now = Some("invite");
        // One at a time: Synapse changes one room's memberships one at a time anyway, so
        // invites sent side by side would only queue there, ahead of local holders who
        // come meanwhile. Other rooms' invites go on beside these.
        let started = Instant::now();
        for user in &remote_invites {
            // Those not started in time are planned again, after any local holders.
            if started.elapsed() >= REMOTE_INVITES_FOR {
                break;
            }
            let done = self.invite_holder(at, user).await?;
            self.record(at.id, Some(at.room), "invite", &[done]).await?;
        }
        Ok(())
    }

    /// Records what a step's success is kept with, each record at once, and counts the
    /// step; a holder's failed invite was counted where it failed. `room` is the room the
    /// step was performed in, if it was.
    async fn record(
        &self, id: &ReservationId, room: Option<&RoomId>, kind: &'static str, done: &[StepRecord],
    ) -> Result<(), StoreError> {
        // What room.archived says of the transcript, read before the archive is recorded.
        let archived = done.iter().any(OutboundEvent::tells_of_transcript);
        let transcript = match archived && self.config.platform.is_some() {
            true => self.archived_transcript(id).await?,
            false => ArchivedTranscript::NotWanted,
        };
        let alias = self.config.room_alias(id);
        let step_room = StepRoom {
            room_id: room,
            alias: &alias,
            archive_mode: self.config.rooms.archive_mode,
            transcript: &transcript,
        };
        for record in done {
            let now = Utc::now();
            // Written by the store only when `platform.webhook_url` is set.
            let event = OutboundEvent::for_step(id, record, &step_room, now);
            self.store.record_step_with_event(id, record, event.as_ref(), now).await?;
        }
        if !done.iter().any(|record| matches!(record, StepRecord::InviteFailed { .. })) {
            metrics::counter!("foyer_lifecycle_steps_total", "step" => kind, "result" => "ok").increment(1);
        }
        Ok(())
    }
}

impl Lifecycle {
    /// The room's transcript as `room.archived` tells it: made, not wanted, or wanted and
    /// missing (the archive waited `rooms.transcript_wait` for it), with its last error.
    async fn archived_transcript(&self, id: &ReservationId) -> Result<ArchivedTranscript, StoreError> {
        if let Some(made) = self.store.transcript(id).await? {
            let url = naming::transcript_url(self.config.public_url(), id);
            return Ok(ArchivedTranscript::Made { url, messages: made.messages });
        }
        let Some(record) = self.store.reservation(id).await? else { return Ok(ArchivedTranscript::NotWanted) };
        if !record.reservation.wants_transcript(self.config.rooms.transcript) {
            return Ok(ArchivedTranscript::NotWanted);
        }
        let wait = crate::config::format_duration(self.config.rooms.transcript_wait);
        let error = self.store.lifecycle_state(id).await?.room.transcript_error;
        let why = error.as_deref().unwrap_or("the room's history could not be read");
        Ok(ArchivedTranscript::Missing { error: format!("not made within rooms.transcript_wait ({wait}): {why}") })
    }
}

/// Splits a round's steps into the holders of other servers to invite last and the other
/// steps, in their order. A holder with another step this round (a kick, a knock
/// accepted) keeps their invite in its place: one holder's steps keep their order.
fn remote_invites_last(steps: Vec<Step>, local: &str) -> (Vec<ruma::OwnedUserId>, Vec<Step>) {
    let others: std::collections::BTreeSet<ruma::OwnedUserId> = steps
        .iter()
        .filter_map(|step| match step {
            Step::AcceptKnock(user) | Step::Kick(user, _) => Some(user.clone()),
            _ => None,
        })
        .collect();
    let mut remote = Vec::new();
    let mut rest = Vec::new();
    for step in steps {
        match step {
            Step::Invite(user) if user.server_name().as_str() != local && !others.contains(&user) => remote.push(user),
            step => rest.push(step),
        }
    }
    (remote, rest)
}

/// 1 s, 2 s, 4 s … up to 5 minutes between attempts of a failing reservation.
fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::seconds(1i64 << attempts.min(8)).min(chrono::Duration::minutes(5))
}

impl StepError {
    /// When to try again. A room still waiting out `ABANDONED_AFTER` is looked at again
    /// no later than the end of that wait: backing off past it would hold the
    /// reservation's opening for minutes after the failures that came before (a
    /// homeserver restart fails a few attempts in a row).
    fn retry_in(&self, attempts: u32) -> chrono::Duration {
        match self {
            StepError::Open(rooms::OpenError::Unfinished { wait_s, .. }) => {
                let wait = chrono::Duration::from_std(std::time::Duration::from_secs(*wait_s));
                backoff(attempts).min(wait.unwrap_or(chrono::Duration::MAX))
            }
            _ => backoff(attempts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_invites_go_last_unless_their_holder_has_another_step() {
        let user = |id: &str| ruma::OwnedUserId::try_from(id).unwrap();
        let (far, moved, near) = (user("@b:far.example"), user("@a:far.example"), user("@c:example.org"));
        let steps = vec![
            Step::Invite(far.clone()),
            Step::Kick(moved.clone(), crate::model::KickReason::NoTicket),
            Step::Invite(moved.clone()),
            Step::Invite(near.clone()),
            Step::PostOpeningNotice,
        ];
        let (remote, rest) = remote_invites_last(steps, "example.org");
        assert_eq!(remote, vec![far]);
        assert_eq!(
            rest,
            vec![
                Step::Kick(moved.clone(), crate::model::KickReason::NoTicket),
                Step::Invite(moved),
                Step::Invite(near),
                Step::PostOpeningNotice
            ]
        );
    }

    #[test]
    fn failures_back_off_but_an_unfinished_room_is_looked_at_when_its_wait_ends() {
        let secs = chrono::Duration::seconds;
        assert_eq!([0, 1, 5, 8, 30].map(backoff), [secs(1), secs(2), secs(32), secs(256), secs(256)]);
        let unfinished = |wait_s| {
            StepError::Open(rooms::OpenError::Unfinished {
                alias: ruma::OwnedRoomAliasId::try_from("#live_jazz:example.org").unwrap(),
                room_id: ruma::OwnedRoomId::try_from("!half:example.org").unwrap(),
                wait_s,
            })
        };
        // Early on the backoff is shorter than the wait: the marker may still come.
        assert_eq!(unfinished(59).retry_in(2), secs(4));
        // After a few failures (a homeserver restart) the wait's end comes first.
        assert_eq!(unfinished(50).retry_in(7), secs(50));
        assert_eq!(unfinished(u64::MAX).retry_in(7), secs(128));
        let other = StepError::Matrix(MatrixError::Network {
            endpoint: "create_room".into(),
            message: "connection refused".into(),
        });
        assert_eq!(other.retry_in(7), secs(128));
    }
}
