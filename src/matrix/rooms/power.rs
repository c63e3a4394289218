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
    model::ReservationRecord,
};

// The power levels Foyer gives and requires, named once.

/// Everyone's level, and what posting takes while the room is open.
pub const MEMBER: i32 = 0;
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
    let users = levels["users"].as_object_mut().ok_or_else(|| MatrixError::BadResponse {
        endpoint: "m.room.power_levels state".into(),
        message: "no users map".into(),
    })?;
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
