//! The room's name, topic and join rule, set whole as the reservation's details change.

use ruma::{
    OwnedRoomId,
    events::room::{
        join_rules::{AllowRule, JoinRule, Restricted, RoomJoinRulesEventContent},
        name::RoomNameEventContent,
        topic::{RoomTopicEventContent, TopicContentBlock},
    },
};

use super::put;
use crate::{
    config,
    matrix::{MatrixClient, MatrixError},
    model::Access,
};

/// Makes the join rule say who may join (`chat.access`): ticket holders as the room was
/// created (`rooms.join_rule`), members of the channel's `space` (a restricted rule),
/// or anyone.
pub async fn set_access(
    client: &MatrixClient, room_id: &OwnedRoomId, access: Access, tickets: config::JoinRule,
    space: Option<&OwnedRoomId>,
) -> Result<(), MatrixError> {
    let rule = match (access, space) {
        (Access::Public, _) => JoinRule::Public,
        (Access::Channel, Some(space)) => {
            JoinRule::Restricted(Restricted::new(vec![AllowRule::room_membership(space.clone())]))
        }
        (Access::Tickets, _) | (Access::Channel, None) => match tickets {
            config::JoinRule::Invite => JoinRule::Invite,
            config::JoinRule::Knock => JoinRule::Knock,
        },
    };
    put(client, room_id, &RoomJoinRulesEventContent::new(rule)).await
}

pub async fn set_name(client: &MatrixClient, room_id: &OwnedRoomId, name: &str) -> Result<(), MatrixError> {
    put(client, room_id, &RoomNameEventContent::new(name.to_owned())).await
}

pub async fn set_topic(client: &MatrixClient, room_id: &OwnedRoomId, topic: &str) -> Result<(), MatrixError> {
    let mut content = RoomTopicEventContent::new(topic.to_owned());
    // The plain `topic` only, as Foyer has always sent it: ruma's constructor would add
    // the same text again as an `m.topic` block.
    content.topic_block = TopicContentBlock::default();
    put(client, room_id, &content).await
}
