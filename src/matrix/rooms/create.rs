//! Opening a reservation's room: created with its fixed alias, its power levels and
//! Foyer's marker, or adopted when a room already holds the alias; and the patience
//! with a room that holds the alias but was never finished.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ruma::{
    OwnedRoomAliasId, OwnedRoomId,
    api::client::{
        alias::{delete_alias, get_alias},
        room::create_room,
    },
    events::{
        InitialStateEvent,
        room::join_rules::{JoinRule, RoomJoinRulesEventContent},
    },
};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{MARKER, deadline, history_and_guests, power::power_levels, raw, state};
use crate::{
    config::{self, Config},
    matrix::{MatrixClient, MatrixError},
    model::ReservationRecord,
    schedule::Schedule,
    words,
};

/// The `org.foyer.reservation` state: the reservation's facts for clients and widgets.
fn reservation_state(record: &ReservationRecord, times: &Schedule) -> Value {
    let r = &record.reservation;
    json!({
        "reservation_id": r.id.as_str(),
        "title": r.title.as_str(),
        "starts_at": r.starts_at.to_rfc3339(),
        "ends_at": r.ends_at.to_rfc3339(),
        "opens_at": times.opens_at.to_rfc3339(),
        "archives_at": times.archives_at.to_rfc3339(),
        "stream_url": r.stream_url.as_ref().map(|u| u.as_str()),
    })
}

/// How long a room holding a reservation's alias may lack Foyer's marker before Foyer
/// takes it for abandoned, when a `createRoom` for it may still be running. Synapse sets
/// the alias before the room's first events, so a createRoom still running looks just
/// like one a homeserver restart stopped half-way. Where Foyer can tell (see
/// `Lifecycle::patience`), it waits far less.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);
/// The wait when the instance that began the room is gone: only a request the
/// homeserver was still finishing for it can complete the room, within seconds.
pub const CREATOR_GONE_GRACE: Duration = Duration::from_secs(5);

/// Rooms seen holding an alias without Foyer's marker, with when this process first
/// saw each and how long it decided then to wait. Forgetting them (a restart) only makes
/// Foyer wait longer.
#[derive(Default)]
pub struct UnmarkedRooms(std::sync::Mutex<std::collections::HashMap<OwnedRoomId, (Instant, Duration)>>);

impl UnmarkedRooms {
    /// How long `room` has been seen unmarked, and the patience: decided at first sight,
    /// shortened (never lengthened) by what later looks learn, such as an outage.
    fn seen_for(&self, room: &OwnedRoomId, patience: Duration) -> (Duration, Duration) {
        let mut seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = seen.entry(room.clone()).or_insert_with(|| (Instant::now(), patience));
        entry.1 = entry.1.min(patience);
        (entry.0.elapsed(), entry.1)
    }

    fn forget(&self, room: &OwnedRoomId) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(room);
    }
}

/// How long this attempt waits for a room found holding the alias without Foyer's
/// marker, and when the attempt began.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub wait: Duration,
    pub began_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error(
        "{room_id} holds {alias} but has no Foyer marker yet; waiting up to {wait_s} s more for its creation to finish"
    )]
    Unfinished { alias: OwnedRoomAliasId, room_id: OwnedRoomId, wait_s: u64 },
}

/// Creates the room with its fixed alias, or adopts the room that already holds the
/// alias (Foyer created it and crashed before recording its id). A room holding the
/// alias without Foyer's marker is given up after `patience`, or at once if the
/// homeserver was seen down since this attempt `began_at`: whatever was creating that room
/// died with it (only this attempt could have been, as the lease is ours).
pub async fn create_or_adopt(
    client: &MatrixClient, config: &Config, record: &ReservationRecord, times: &Schedule, creators_privileged: bool,
    unmarked: &UnmarkedRooms, patience: Patience,
) -> Result<OwnedRoomId, OpenError> {
    let alias = config.room_alias(&record.reservation.id);
    let mut req = create_room::v3::Request::new();
    req.room_alias_name = Some(alias.alias().to_owned());
    req.name = Some(record.reservation.title.as_str().to_owned());
    req.topic = Some(words::room::topic(record, times));
    req.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    req.power_level_content_override = Some(power_levels(config, record, creators_privileged));
    let join_rule = match config.rooms.join_rule {
        config::JoinRule::Invite => JoinRule::Invite,
        config::JoinRule::Knock => JoinRule::Knock,
    };
    let [history, guests] = history_and_guests();
    req.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomJoinRulesEventContent::new(join_rule)).to_raw_any(),
        history,
        guests,
        raw(json!({"type": MARKER, "state_key": "", "content": reservation_state(record, times)})),
    ];
    match client.send(req.clone(), None, deadline()).await {
        Ok(resp) => return Ok(resp.room_id),
        Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => {}
        Err(e) => return Err(e.into()),
    }
    let holder = client.send(get_alias::v3::Request::new(alias.clone()), None, deadline()).await?.room_id;
    // Foyer's marker is among the room's first state. A room without it (or that the
    // bot is not in) is still being created, or its creation stopped half-way, as when
    // the homeserver is stopped during createRoom. Such a room never works (invites
    // fail), so once it has stayed unmarked past its patience the alias moves on.
    match state(client, &holder, MARKER).await {
        Ok(_) => {
            unmarked.forget(&holder);
            tracing::info!(reservation_id = %record.reservation.id, room_id = %holder, %alias, "adopted the room that holds the alias");
            Ok(holder)
        }
        Err(MatrixError::Api { status: 403 | 404, .. }) => {
            let patience = if client.seen_down_since(patience.began_at) { Duration::ZERO } else { patience.wait };
            let (seen_for, patience) = unmarked.seen_for(&holder, patience);
            if seen_for < patience {
                let wait_s = (patience - seen_for).as_secs().max(1);
                return Err(OpenError::Unfinished { alias, room_id: holder, wait_s });
            }
            tracing::warn!(reservation_id = %record.reservation.id, room_id = %holder, %alias, "the room holding the alias was left half-created; creating a new one");
            match client.send(delete_alias::v3::Request::new(alias), None, deadline()).await {
                Ok(_) => {}
                Err(e) if e.errcode() == Some("M_NOT_FOUND") => {}
                Err(e) => return Err(e.into()),
            }
            unmarked.forget(&holder);
            Ok(client.send(req, None, deadline()).await?.room_id)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmarked_rooms_patience_only_shrinks() {
        // Learning of an outage later shortens the wait; a later, longer guess never
        // lengthens it.
        let rooms = UnmarkedRooms::default();
        let room = OwnedRoomId::try_from("!half:example.org").unwrap();
        assert_eq!(rooms.seen_for(&room, ABANDONED_AFTER).1, ABANDONED_AFTER);
        assert_eq!(rooms.seen_for(&room, CREATOR_GONE_GRACE).1, CREATOR_GONE_GRACE);
        assert_eq!(rooms.seen_for(&room, Duration::ZERO).1, Duration::ZERO);
        assert_eq!(rooms.seen_for(&room, ABANDONED_AFTER).1, Duration::ZERO);
    }
}
