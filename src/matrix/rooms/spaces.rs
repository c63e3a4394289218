//! The channel's space: created or adopted, and the room listed in it or taken out.

use ruma::{
    OwnedRoomId, OwnedServerName,
    api::client::{alias::get_alias, room::create_room},
    events::space::{child::SpaceChildEventContent, parent::SpaceParentEventContent},
    room::RoomType,
    serde::Raw,
};
use serde_json::json;

use super::{deadline, history_and_guests, put_custom};
use crate::{
    config::Config,
    matrix::{MatrixClient, MatrixError},
    words,
};

/// Creates the channel's space (or adopts the one holding its alias).
pub async fn ensure_space(
    client: &MatrixClient, config: &Config, channel: &crate::model::Channel,
) -> Result<OwnedRoomId, MatrixError> {
    let localpart = config.space_alias_localpart(channel.id.as_str());
    let mut req = create_room::v3::Request::new();
    req.room_alias_name = Some(localpart);
    req.name = Some(channel.name.as_str().to_owned());
    req.topic = Some(words::room::space_topic(channel.name.as_str()));
    req.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    let mut creation = create_room::v3::CreationContent::new();
    creation.room_type = Some(RoomType::Space);
    req.creation_content = Some(Raw::new(&creation).expect("creation content always serializes"));
    req.initial_state = history_and_guests().into();
    match client.send(req, None, deadline()).await {
        Ok(resp) => Ok(resp.room_id),
        Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => {
            let alias = config
                .space_alias(channel.id.as_str())
                .map_err(|e| MatrixError::Request { endpoint: "space alias".into(), message: e.to_string() })?;
            Ok(client.send(get_alias::v3::Request::new(alias), None, deadline()).await?.room_id)
        }
        Err(e) => Err(e),
    }
}

/// Creates the channel's announcements room (or adopts the one holding its alias),
/// where only Foyer posts: members need more than their level to post.
pub async fn ensure_announcements(
    client: &MatrixClient, config: &Config, channel: &crate::model::Channel,
) -> Result<OwnedRoomId, MatrixError> {
    let localpart = config.announcements_alias_localpart(channel.id.as_str());
    let mut req = create_room::v3::Request::new();
    req.room_alias_name = Some(localpart.clone());
    req.name = Some(words::announce::room_name(channel.name.as_str()));
    req.topic = Some(words::announce::room_topic(channel.name.as_str()));
    req.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    // Merged into the homeserver's levels, which keep the bot (the creator) on top.
    req.power_level_content_override = Some(Raw::from_json(
        serde_json::value::to_raw_value(&json!({"events_default": 50})).expect("JSON always serializes"),
    ));
    req.initial_state = history_and_guests().into();
    match client.send(req, None, deadline()).await {
        Ok(resp) => Ok(resp.room_id),
        Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => {
            let alias = ruma::RoomAliasId::parse(format!("#{localpart}:{}", config.homeserver.server_name))
                .map_err(|e| MatrixError::Request { endpoint: "announcements alias".into(), message: e.to_string() })?;
            Ok(client.send(get_alias::v3::Request::new(alias), None, deadline()).await?.room_id)
        }
        Err(e) => Err(e),
    }
}

/// Lists the room in the space: `m.space.child` in the space, `m.space.parent` in the room.
pub async fn link_space(
    client: &MatrixClient, config: &Config, space: &OwnedRoomId, room_id: &OwnedRoomId,
) -> Result<(), MatrixError> {
    let via: Vec<OwnedServerName> = vec![config.homeserver.server_name.clone()];
    let child = SpaceChildEventContent::new(via.clone());
    client.put_state(space, room_id, &child, deadline()).await?;
    let mut parent = SpaceParentEventContent::new(via);
    parent.canonical = true;
    client.put_state(room_id, space, &parent, deadline()).await
}

/// Takes the room out of the space (an `m.space.child` without `via`).
pub async fn unlink_space(
    client: &MatrixClient, space: &OwnedRoomId, room_id: &OwnedRoomId,
) -> Result<(), MatrixError> {
    // Empty content, as the spec removes a child: ruma's type always writes a `via` key
    // (an empty list), and readers check for the key.
    put_custom(client, space, "m.space.child", room_id.as_str(), json!({})).await
}
