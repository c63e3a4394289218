//! The room's name and topic, set whole as the reservation's details change.

use ruma::{
    OwnedRoomId,
    events::room::{
        name::RoomNameEventContent,
        topic::{RoomTopicEventContent, TopicContentBlock},
    },
};

use super::put;
use crate::matrix::{MatrixClient, MatrixError};

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
