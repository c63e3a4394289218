//! Doors open at scale (README, "Big shows"): local holders joined by Foyer itself
//! through Synapse's admin join, by the doorkeeper (the user of `synapse_admin.token`),
//! and the pace of Foyer's own joins into each room.
//!
//! Synapse lets about one join a second into a room (`rc_joins_per_room`, ten at once)
//! and counts every join, those it does not check too (the admin join, appservice users).
//! Foyer's joins into one room therefore take turns at `rooms.join_pace`, below that
//! rate, so that a person's own join (a host, a remote holder, a late fan) still finds
//! room in the budget.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use ruma::{OwnedRoomId, OwnedUserId};
use tokio::time::Instant;

use super::{members::invite, power::give_invite_power};
use crate::{
    config::JoinPace,
    matrix::{MatrixClient, MatrixError, synapse_admin::SynapseAdmin},
};

/// Rooms whose turns are kept before the past ones are forgotten.
const REMEMBERED_ROOMS: usize = 4096;

/// Turns for Foyer's joins, per room, in this process. Several instances each keep their
/// own: a room's joins come from the instance holding its reservation, and web fans'
/// from whichever instance serves them.
pub struct JoinPacer {
    interval: Duration,
    next: Mutex<HashMap<OwnedRoomId, Instant>>,
}

impl JoinPacer {
    pub fn new(pace: JoinPace) -> Self {
        Self { interval: pace.interval(), next: Mutex::new(HashMap::new()) }
    }

    /// Takes the room's next turn if it comes within `patience`; returns how long until
    /// it, or, untaken, how long until the first free turn.
    pub fn take_turn(&self, room: &OwnedRoomId, patience: Duration) -> Result<Duration, Duration> {
        self.take_turn_at(room, patience, Instant::now())
    }

    fn take_turn_at(&self, room: &OwnedRoomId, patience: Duration, now: Instant) -> Result<Duration, Duration> {
        let mut next = self.next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if next.len() >= REMEMBERED_ROOMS {
            next.retain(|_, turn| *turn > now);
        }
        let turn = next.get(room).copied().filter(|turn| *turn > now).unwrap_or(now);
        let wait = turn - now;
        if wait > patience {
            return Err(wait);
        }
        next.insert(room.clone(), turn + self.interval);
        Ok(wait)
    }

    /// Waits for the room's next turn, however far.
    pub async fn wait_turn(&self, room: &OwnedRoomId) {
        if let Ok(wait) = self.take_turn(room, Duration::MAX) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The doorkeeper (the user of `synapse_admin.token`), exempted from Synapse's rate limits
/// so that its joins into many rooms opening at once are not held to `rc_joins.local`.
/// Asked once per process (`Lifecycle::doorkeeper`): the token and its user do not change
/// while Foyer runs, and the exemption is Synapse's to keep.
pub async fn doorkeeper(admin: &SynapseAdmin) -> Result<OwnedUserId, MatrixError> {
    let keeper = admin.whoami().await?;
    if let Err(e) = admin.exempt_from_rate_limits(&keeper).await {
        // Only many rooms opening at once need it: their joins then wait out the limit.
        tracing::warn!(error = %e, "cannot exempt the doorkeeper from Synapse's rate limits");
    }
    Ok(keeper)
}

/// Puts the doorkeeper in the room with invite power: raised (a state event, no join),
/// then invited by the bot and joined as itself (one join, its turn taken). Each part is
/// idempotent.
pub async fn admit_doorkeeper(
    client: &MatrixClient, admin: &SynapseAdmin, pacer: &JoinPacer, room_id: &OwnedRoomId, keeper: &OwnedUserId,
) -> Result<(), MatrixError> {
    give_invite_power(client, room_id, keeper).await?;
    invite(client, room_id, keeper).await?;
    pacer.wait_turn(room_id).await;
    admin.join_self(room_id).await
}

/// Joins a local holder, in the room's turn.
pub async fn join_holder(
    admin: &SynapseAdmin, pacer: &JoinPacer, room_id: &OwnedRoomId, user: &OwnedUserId,
) -> Result<(), MatrixError> {
    pacer.wait_turn(room_id).await;
    admin.join_user(room_id, user).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_joins_take_turns_at_the_pace_and_other_rooms_are_not_held_back() {
        let pacer = JoinPacer::new(JoinPace::new(0.8).unwrap());
        let (a, b) = (OwnedRoomId::try_from("!a:x").unwrap(), OwnedRoomId::try_from("!b:x").unwrap());
        let ms = Duration::from_millis;
        let start = Instant::now();
        let turn = |room, patience, at| pacer.take_turn_at(room, patience, start + at);
        assert_eq!(turn(&a, Duration::MAX, ms(0)), Ok(ms(0)));
        assert_eq!(turn(&a, Duration::MAX, ms(0)), Ok(ms(1250)));
        assert_eq!(turn(&a, Duration::MAX, ms(0)), Ok(ms(2500)));
        assert_eq!(turn(&b, Duration::MAX, ms(0)), Ok(ms(0)));
        // Not within a second: not taken, and the next free turn is told.
        assert_eq!(turn(&a, ms(1000), ms(0)), Err(ms(3750)));
        assert_eq!(turn(&a, ms(1000), ms(3750)), Ok(ms(0)));
        // A room left alone starts afresh.
        assert_eq!(turn(&a, Duration::ZERO, ms(60_000)), Ok(ms(0)));
    }
}
