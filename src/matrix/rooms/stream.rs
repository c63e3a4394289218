//! The stream beside the chat: Element's room widget and its layout, and the pinned
//! message with the link.

use ruma::{
    OwnedRoomId,
    events::room::{message::RoomMessageEventContent, pinned_events::RoomPinnedEventsEventContent},
};
use serde_json::json;

use super::{messages::message, put, put_custom};
use crate::{
    config::Config,
    matrix::{MatrixClient, MatrixError},
    model::{ReservationRecord, naming},
    words,
};

/// Element's room widgets, keyed by widget id, and their layout: no ruma types.
const WIDGETS: &str = "im.vector.modular.widgets";
const WIDGET_LAYOUT: &str = "io.element.widgets.layout";

/// The stream beside the chat: a room widget for the player, pinned to the top in
/// Element, and a pinned message with the link for clients without widgets. With no
/// `stream_url`, all three are cleared.
pub async fn set_stream_link(
    client: &MatrixClient, config: &Config, record: &ReservationRecord, room_id: &OwnedRoomId,
) -> Result<(), MatrixError> {
    let r = &record.reservation;
    let Some(url) = r.stream_url.as_ref().map(|u| u.as_str()) else {
        put_custom(client, room_id, WIDGETS, naming::WIDGET_ID, json!({})).await?;
        put_custom(client, room_id, WIDGET_LAYOUT, "", json!({"widgets": {}})).await?;
        return put(client, room_id, &RoomPinnedEventsEventContent::new(vec![])).await;
    };
    let widget = json!({
        "type": "m.custom",
        "url": url,
        "name": words::room::STREAM_WIDGET,
        "id": naming::WIDGET_ID,
        "creatorUserId": config.bot_user_id(),
        "waitForIframeLoad": true,
        "data": {"title": r.title.as_str()},
    });
    put_custom(client, room_id, WIDGETS, naming::WIDGET_ID, widget).await?;
    // The player fills the top of the room in Element, in percent of the room's view.
    let layout = json!({"widgets": {naming::WIDGET_ID: {"container": "top", "index": 0, "width": 100, "height": 50}}});
    put_custom(client, room_id, WIDGET_LAYOUT, "", layout).await?;
    let (text, html) = words::room::stream_link(url);
    let txn = naming::stream_link_txn(&r.id, url);
    let link = RoomMessageEventContent::text_html(text, html);
    let event_id = message(client, &config.bot_user_id(), room_id, &txn, link).await?;
    put(client, room_id, &RoomPinnedEventsEventContent::new(vec![event_id])).await
}
