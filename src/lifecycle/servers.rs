//! Other servers as the lifecycle's invites find them, across all rooms.
//!
//! Synapse sends an invite for a user of another server inside the room's membership
//! lock, and within its limit of ten membership changes at once per appservice; a server
//! that is down or hangs holds both for seconds to minutes per try (and Synapse ignores
//! its own backoff for invites). So Foyer keeps its own, per server: once a server has
//! failed an invite, none of its holders, in any room, is invited until its backoff ends;
//! a server not known to answer gets one invite at a time (the first tells for the
//! others); and remote invites in flight are bounded below Synapse's limit
//! ([`REMOTE_INVITES_AT_ONCE`]), leaving room for local holders and kicks.
//!
//! Kept in memory: after a restart every server is simply tried again. Nothing is lost,
//! since each holder's failure and its retry time are in the store.

use std::{
    collections::{HashMap, HashSet},
    pin::pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use ruma::{OwnedServerName, ServerName};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Remote invites in flight across all rooms: below Synapse's ten membership changes at
/// once per appservice, so that local invites and kicks always find a place.
pub const REMOTE_INVITES_AT_ONCE: usize = 6;

/// How long a server that answered an invite is taken to be up: its invites go side by
/// side. After that, or after a failure, one goes first.
const ANSWERING_FOR: chrono::Duration = chrono::Duration::minutes(10);

/// Servers remembered at most; past that the ones that answered are forgotten (they are
/// probed again, one invite first), failing ones are kept.
const REMEMBERED: usize = 10_000;

/// How long a server is left alone after `failures` failed invites in a row: 30 s,
/// doubling up to 10 minutes. A server that is down costs one try per period, whatever
/// the number of its holders and rooms.
pub fn wait_after(failures: u32) -> chrono::Duration {
    let doublings = failures.saturating_sub(1).min(5);
    chrono::Duration::seconds(30 << doublings).min(chrono::Duration::minutes(10))
}

/// What an invite to a server may do now ([`ServerBackoff::turn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// The server answers: invite.
    Go,
    /// Not known to answer (never tried, answered long ago, or its backoff is over):
    /// this invite goes alone, and tells for the others.
    Probe,
    /// Another invite is probing the server: wait for its outcome.
    Queue,
    /// The server failed of late: do not try it before `until`; `error` is what it
    /// failed with.
    Wait { until: DateTime<Utc>, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    Answered { at: DateTime<Utc> },
    Failing { failures: u32, retry_at: DateTime<Utc>, error: String },
}

/// The servers' backoff: pure, the time given by the caller.
#[derive(Debug, Default)]
pub struct ServerBackoff {
    health: HashMap<OwnedServerName, Health>,
    probing: HashSet<OwnedServerName>,
}

impl ServerBackoff {
    /// What an invite to a user of `server` may do at `now`.
    pub fn turn(&self, server: &ServerName, now: DateTime<Utc>) -> Turn {
        if self.probing.contains(server) {
            return Turn::Queue;
        }
        match self.health.get(server) {
            Some(Health::Answered { at }) if now - *at < ANSWERING_FOR => Turn::Go,
            Some(Health::Failing { retry_at, error, .. }) if now < *retry_at => {
                Turn::Wait { until: *retry_at, error: error.clone() }
            }
            _ => Turn::Probe,
        }
    }

    /// An invite goes first to `server` ([`Turn::Probe`]); the others queue until its
    /// outcome, or until [`Self::probed`].
    pub fn probe(&mut self, server: &ServerName) {
        self.probing.insert(server.to_owned());
    }

    /// The probe of `server` is over, whatever its outcome (recorded or not).
    pub fn probed(&mut self, server: &ServerName) {
        self.probing.remove(server);
    }

    /// `server` answered an invite (yes or no) at `now`.
    pub fn answered(&mut self, server: &ServerName, now: DateTime<Utc>) {
        self.forget_some(now);
        self.health.insert(server.to_owned(), Health::Answered { at: now });
    }

    /// `server` failed an invite at `now` with `error`; returns when it may be tried again.
    pub fn failed(&mut self, server: &ServerName, error: String, now: DateTime<Utc>) -> DateTime<Utc> {
        self.forget_some(now);
        let failures = match self.health.get(server) {
            Some(Health::Failing { failures, .. }) => failures.saturating_add(1),
            _ => 1,
        };
        let retry_at = now + wait_after(failures);
        self.health.insert(server.to_owned(), Health::Failing { failures, retry_at, error });
        retry_at
    }

    /// Bounds the memory: servers that answered long ago are as good as unknown.
    fn forget_some(&mut self, now: DateTime<Utc>) {
        if self.health.len() < REMEMBERED {
            return;
        }
        self.health.retain(|_, health| match health {
            Health::Answered { at } => now - *at < ANSWERING_FOR,
            Health::Failing { .. } => true,
        });
        if self.health.len() >= REMEMBERED {
            self.health.retain(|_, health| matches!(health, Health::Failing { .. }));
        }
    }
}

/// The lifecycle's remote invites: the servers' backoff, shared by every reservation's
/// round, and the bound on invites in flight.
pub struct RemoteInvites {
    servers: Arc<Mutex<ServerBackoff>>,
    /// Woken when a probe ends.
    probed: Arc<Notify>,
    in_flight: Arc<Semaphore>,
}

impl Default for RemoteInvites {
    fn default() -> Self {
        Self {
            servers: Arc::default(),
            probed: Arc::default(),
            in_flight: Arc::new(Semaphore::new(REMOTE_INVITES_AT_ONCE)),
        }
    }
}

/// What an invite to another server may do ([`RemoteInvites::admit`]).
pub enum Admission {
    /// Send it, holding a place among those in flight; `probe` when it goes first.
    Send { permit: OwnedSemaphorePermit, probe: Option<Probe> },
    /// Not now: the server failed of late.
    Wait { until: DateTime<Utc>, error: String },
}

/// An invite that goes first to its server: ends the probe when dropped, so the queued
/// invites look again even if this one was abandoned.
pub struct Probe {
    server: OwnedServerName,
    servers: Arc<Mutex<ServerBackoff>>,
    probed: Arc<Notify>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        lock(&self.servers).probed(&self.server);
        self.probed.notify_waiters();
    }
}

fn lock(servers: &Mutex<ServerBackoff>) -> std::sync::MutexGuard<'_, ServerBackoff> {
    servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RemoteInvites {
    /// Waits for an invite to a user of `server` to be allowed, or says until when it is
    /// not.
    pub async fn admit(&self, server: &ServerName) -> Admission {
        let probe = loop {
            let mut notified = pin!(self.probed.notified());
            // Registered before the state is read: a probe ending in between still wakes us.
            notified.as_mut().enable();
            {
                let mut servers = lock(&self.servers);
                match servers.turn(server, Utc::now()) {
                    Turn::Go => break None,
                    Turn::Probe => {
                        servers.probe(server);
                        break Some(Probe {
                            server: server.to_owned(),
                            servers: self.servers.clone(),
                            probed: self.probed.clone(),
                        });
                    }
                    Turn::Wait { until, error } => return Admission::Wait { until, error },
                    Turn::Queue => {}
                }
            }
            notified.await;
        };
        // Decided before a place is taken: a place is never held while queued on a probe.
        let permit = self.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        Admission::Send { permit, probe }
    }

    pub fn answered(&self, server: &ServerName) {
        lock(&self.servers).answered(server, Utc::now());
    }

    /// Returns when `server` may be tried again.
    pub fn failed(&self, server: &ServerName, error: String) -> DateTime<Utc> {
        lock(&self.servers).failed(server, error, Utc::now())
    }

    /// Keeps `permit`'s place taken for `hold`: Synapse may still be trying the server
    /// after Foyer stopped waiting for its answer.
    pub fn hold(permit: OwnedSemaphorePermit, hold: Duration) {
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::t;

    fn server(name: &str) -> OwnedServerName {
        OwnedServerName::try_from(name).unwrap()
    }

    #[test]
    fn the_wait_doubles_from_30_seconds_to_10_minutes() {
        let waits = [1, 2, 3, 5, 6, 7, 40, u32::MAX].map(|n| wait_after(n).num_seconds());
        assert_eq!(waits, [30, 60, 120, 480, 600, 600, 600, 600]);
        assert_eq!(wait_after(0).num_seconds(), 30);
    }

    #[test]
    fn a_failed_server_is_left_alone_until_its_backoff_ends_then_probed_once() {
        let (mut servers, dead, other) = (ServerBackoff::default(), server("dead.example"), server("ok.example"));
        // Unknown: one goes first, the others queue behind it.
        assert_eq!(servers.turn(&dead, t(19, 0)), Turn::Probe);
        servers.probe(&dead);
        assert_eq!(servers.turn(&dead, t(19, 0)), Turn::Queue);
        assert_eq!(servers.turn(&other, t(19, 0)), Turn::Probe, "other servers are not held back");
        // It fails: every holder of that server, in every room, waits 30 s.
        let retry = servers.failed(&dead, "502 Can't connect".into(), t(19, 0));
        servers.probed(&dead);
        assert_eq!(retry, t(19, 0) + chrono::Duration::seconds(30));
        let waiting = Turn::Wait { until: retry, error: "502 Can't connect".into() };
        assert_eq!(servers.turn(&dead, t(19, 0) + chrono::Duration::seconds(29)), waiting);
        // Then one try; a second failure doubles the wait.
        assert_eq!(servers.turn(&dead, retry), Turn::Probe);
        servers.probe(&dead);
        let again = servers.failed(&dead, "504 timed out".into(), retry);
        servers.probed(&dead);
        assert_eq!(again, retry + chrono::Duration::seconds(60));
        assert_eq!(
            servers.turn(&dead, again - chrono::Duration::seconds(1)),
            Turn::Wait { until: again, error: "504 timed out".into() }
        );
        // It answers: its invites go side by side, until nothing was heard for a while.
        servers.answered(&dead, again);
        assert_eq!(servers.turn(&dead, again), Turn::Go);
        assert_eq!(servers.turn(&dead, again + ANSWERING_FOR), Turn::Probe);
        // After an answer, a failure starts the backoff from 30 s again.
        let fresh = servers.failed(&dead, "502".into(), again);
        assert_eq!(fresh, again + chrono::Duration::seconds(30));
    }

    #[test]
    fn memory_is_bounded_and_failing_servers_are_kept() {
        let mut servers = ServerBackoff::default();
        let dead = server("dead.example");
        servers.failed(&dead, "502".into(), t(19, 0));
        for i in 0..(REMEMBERED + 10) {
            servers.answered(&server(&format!("s{i}.example")), t(19, 0));
        }
        assert!(servers.health.len() <= REMEMBERED + 1, "{}", servers.health.len());
        assert!(matches!(servers.turn(&dead, t(19, 0)), Turn::Wait { .. }));
    }

    #[tokio::test]
    async fn invites_queued_behind_a_probe_wait_for_its_outcome() {
        let invites = Arc::new(RemoteInvites::default());
        let dead = server("dead.example");
        let Admission::Send { probe: Some(probe), permit } = invites.admit(&dead).await else {
            panic!("the first invite probes")
        };
        let queued = tokio::spawn({
            let (invites, dead) = (invites.clone(), dead.clone());
            async move { invites.admit(&dead).await }
        });
        tokio::task::yield_now().await;
        assert!(!queued.is_finished(), "queued behind the probe");
        invites.failed(&dead, "502 Can't connect".into());
        drop((probe, permit));
        let Admission::Wait { error, .. } = queued.await.unwrap() else { panic!("not tried after the failure") };
        assert_eq!(error, "502 Can't connect");
    }

    #[tokio::test]
    async fn no_more_than_the_bound_are_in_flight() {
        let invites = RemoteInvites::default();
        let up = server("up.example");
        invites.answered(&up);
        let mut permits = Vec::new();
        for _ in 0..REMOTE_INVITES_AT_ONCE {
            let Admission::Send { permit, probe: None } = invites.admit(&up).await else { panic!("goes") };
            permits.push(permit);
        }
        let more = tokio::time::timeout(Duration::from_millis(50), invites.admit(&up)).await;
        assert!(more.is_err(), "the next waits for a place");
        permits.pop();
        assert!(matches!(invites.admit(&up).await, Admission::Send { .. }));
    }
}
