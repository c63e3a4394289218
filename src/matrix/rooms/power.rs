//! Power levels: the levels Foyer gives and requires, named once; the room's levels at
//! creation; and the hosts' level kept in step with the reservation's hosts.

use ruma::{
    OwnedRoomId, OwnedUserId, api::client::room::create_room::RoomPowerLevelsContentOverride,
    events::TimelineEventType, serde::Raw,
};
use serde_json::{Value, json};

use super::{MARKER, POWER_LEVELS, put_custom, raw, state};
use crate::{
    config::Config,
    matrix::{MatrixClient, MatrixError},
    model::{ChatMode, ReservationRecord, Speech},
};

/// What a reaction and a poll answer are sent as, in both the spec's form and the
/// older one clients still send: what `reactions_only` leaves to everyone.
const REACTIONS: &[&str] = &["m.reaction", "m.poll.response", "org.matrix.msc3381.poll.response", "m.room.redaction"];

// The power levels Foyer gives and requires, named once.

/// Everyone's level, and what posting takes while the room is open.
pub const MEMBER: i32 = 0;
/// A timed-out member's level: below what posting takes in every mode, reactions too
/// (docs/moderation.md).
pub const TIMED_OUT: i32 = -1;
/// The hosts' level, and what inviting, kicking, banning, redacting and changing the
/// room's state take.
pub const MODERATOR: i32 = 50;
/// The bot's level (implicit for the creator in room versions that privilege creators),
/// what the room's sensitive state takes, and what everything takes once archived.
pub const ADMIN: i32 = 100;

/// The room's power levels at creation: the bot [`ADMIN`] (unlisted where the room
/// version makes the creator top already, as it must be), hosts and moderators [`MODERATOR`], everyone
/// else [`MEMBER`]. Every level is set, none left to the homeserver's defaults (which its
/// config may change).
pub(super) fn power_levels(
    config: &Config, record: &ReservationRecord, creators_privileged: bool,
) -> Raw<RoomPowerLevelsContentOverride> {
    let mut levels = RoomPowerLevelsContentOverride::new();
    levels.users = record.reservation.staff().into_iter().map(|user| (user, MODERATOR.into())).collect();
    if !creators_privileged {
        levels.users.insert(config.bot_user_id(), ADMIN.into());
    }
    levels.users_default = Some(MEMBER.into());
    levels.events_default = Some(MEMBER.into());
    for level in [&mut levels.state_default, &mut levels.invite, &mut levels.kick, &mut levels.ban, &mut levels.redact]
    {
        *level = Some(MODERATOR.into());
    }
    levels.events = [
        TimelineEventType::RoomPowerLevels,
        TimelineEventType::RoomHistoryVisibility,
        TimelineEventType::RoomTombstone,
        TimelineEventType::RoomServerAcl,
        TimelineEventType::RoomEncryption,
        MARKER.into(),
    ]
    .into_iter()
    .map(|kind| (kind, ADMIN.into()))
    .collect();
    let mut levels = serde_json::to_value(levels).expect("power levels always serialize");
    // ruma leaves an empty users map out; sent empty, it replaces the users the
    // homeserver's defaults (or its `default_power_level_content_override`) would list.
    levels.as_object_mut().expect("power levels are an object").entry("users").or_insert_with(|| json!({}));
    raw(levels)
}

/// The power levels' `users` map, to change in place.
fn users_map(levels: &mut Value) -> Result<&mut serde_json::Map<String, Value>, MatrixError> {
    levels["users"].as_object_mut().ok_or_else(|| MatrixError::BadResponse {
        endpoint: "m.room.power_levels state".into(),
        message: "no users map".into(),
    })
}

/// Makes the room's moderators the reservation's hosts: new hosts up to [`MODERATOR`],
/// removed ones back to the default. Read-modify-write, as a state PUT replaces the whole
/// event.
///
/// On the raw JSON, not ruma's `RoomPowerLevelsEventContent`: reading into that type
/// drops keys it does not know (Synapse's `historical`, future ones) and writing it back
/// leaves out every level equal to the spec's default, so the event would change in
/// ways this step never meant.
pub async fn set_hosts(
    client: &MatrixClient, room_id: &OwnedRoomId, before: &std::collections::BTreeSet<OwnedUserId>,
    hosts: &std::collections::BTreeSet<OwnedUserId>,
) -> Result<(), MatrixError> {
    let mut levels = state(client, room_id, POWER_LEVELS).await?;
    let users = users_map(&mut levels)?;
    for gone in before.difference(hosts) {
        if users.get(gone.as_str()).and_then(Value::as_i64) == Some(MODERATOR.into()) {
            users.remove(gone.as_str());
        }
    }
    for host in hosts {
        users.insert(host.to_string(), json!(MODERATOR));
    }
    put_custom(client, room_id, POWER_LEVELS, "", levels).await
}

/// Makes the room's power levels say `speech`: the mode by what posting takes
/// (`events_default`, and the reactions' own levels in `reactions_only`), and the members
/// in `speech.silenced` at [`TIMED_OUT`]; a member `before` silenced who is no longer is
/// taken back to the default, unless their level was changed meanwhile. Nothing else is
/// touched: levels set meanwhile (a new moderator) stay, so a mode and back, or a timeout
/// lifted during `hosts_only`, leaves what is true now. Read-modify-write on the raw JSON,
/// as [`set_hosts`].
pub async fn set_speech(
    client: &MatrixClient, room_id: &OwnedRoomId, before: &Speech, speech: &Speech,
) -> Result<(), MatrixError> {
    let mut levels = state(client, room_id, POWER_LEVELS).await?;
    let bad = |message: &str| MatrixError::BadResponse {
        endpoint: "m.room.power_levels state".into(),
        message: message.into(),
    };
    let object = levels.as_object_mut().ok_or_else(|| bad("not an object"))?;
    let posting = match speech.mode {
        ChatMode::Open => MEMBER,
        ChatMode::ReactionsOnly | ChatMode::HostsOnly => MODERATOR,
    };
    object.insert("events_default".into(), json!(posting));
    let events = object.entry("events").or_insert_with(|| json!({}));
    let events = events.as_object_mut().ok_or_else(|| bad("events is not a map"))?;
    for kind in REACTIONS {
        match speech.mode {
            ChatMode::ReactionsOnly => events.insert((*kind).to_owned(), json!(MEMBER)),
            ChatMode::Open | ChatMode::HostsOnly => events.remove(*kind),
        };
    }
    let users = object.entry("users").or_insert_with(|| json!({}));
    let users = users.as_object_mut().ok_or_else(|| bad("no users map"))?;
    for lifted in before.silenced.difference(&speech.silenced) {
        if users.get(lifted.as_str()).and_then(Value::as_i64) == Some(TIMED_OUT.into()) {
            users.remove(lifted.as_str());
        }
    }
    for silenced in &speech.silenced {
        // Never a moderator or the bot: who is staff is decided before, and a level above
        // the default set by hand is theirs.
        if users.get(silenced.as_str()).and_then(Value::as_i64).is_none_or(|level| level <= MEMBER.into()) {
            users.insert(silenced.to_string(), json!(TIMED_OUT));
        }
    }
    put_custom(client, room_id, POWER_LEVELS, "", levels).await
}

/// Gives `user` invite power ([`MODERATOR`]) in the room, unless they have as much already
/// (the doorkeeper, `doors.rs`). Read-modify-write on the raw JSON, as [`set_hosts`].
pub async fn give_invite_power(
    client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId,
) -> Result<(), MatrixError> {
    let mut levels = state(client, room_id, POWER_LEVELS).await?;
    let users = users_map(&mut levels)?;
    if users.get(user.as_str()).and_then(Value::as_i64).is_some_and(|level| level >= MODERATOR.into()) {
        return Ok(());
    }
    users.insert(user.to_string(), json!(MODERATOR));
    put_custom(client, room_id, POWER_LEVELS, "", levels).await
}
