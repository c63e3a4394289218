//! The bot's messages, each posted once per transaction id, even across a homeserver
//! restart: an earlier copy is looked for first.

use ruma::{
    OwnedRoomId, OwnedTransactionId, UserId,
    api::client::message::{get_message_events, send_message_event},
    events::{MessageLikeEventType, room::message::RoomMessageEventContent},
};
use serde_json::{Value, json};

use super::{deadline, raw};
use crate::matrix::{MatrixClient, MatrixError};

/// Posts an `m.notice` (plain text and HTML) as `bot`, once per transaction id (derived
/// from the notice's purpose): see [`message`].
pub async fn notice(
    client: &MatrixClient, bot: &UserId, room_id: &OwnedRoomId, txn: &str, text: &str, html: &str,
) -> Result<(), MatrixError> {
    message(client, bot, room_id, txn, RoomMessageEventContent::notice_html(text, html)).await.map(|_| ())
}

/// The content key that carries a message's transaction id, so that it can be found.
const TXN_KEY: &str = "org.foyer.txn";

/// Posts a message once per transaction id. The homeserver deduplicates a repeated
/// transaction id only while it remembers it (Synapse: in memory, for about 30 minutes),
/// so a crash between posting and recording followed by a homeserver restart would post
/// it twice; the bot's latest messages are looked through first for one carrying it.
pub(super) async fn message(
    client: &MatrixClient, bot: &UserId, room_id: &OwnedRoomId, txn: &str, content: RoomMessageEventContent,
) -> Result<ruma::OwnedEventId, MatrixError> {
    match already_sent(client, bot, room_id, txn).await {
        Ok(Some(sent)) => {
            tracing::info!(room_id = %room_id, event_id = %sent, "message already posted before a restart; not posted again");
            return Ok(sent);
        }
        Ok(None) => {}
        Err(e) if e.is_transient() => return Err(e),
        // Reading the room is refused (a room the bot cannot read back): post as before.
        Err(e) => tracing::warn!(room_id = %room_id, error = %e, "cannot look for an earlier copy of a message"),
    }
    // The transaction id rides in the content under a key of Foyer's, which ruma's type
    // has no field for.
    let mut content = serde_json::to_value(content).expect("a message always serializes");
    content[TXN_KEY] = json!(txn);
    let txn_id: OwnedTransactionId = txn.into();
    let req = send_message_event::v3::Request::new_raw(
        room_id.clone(),
        txn_id,
        MessageLikeEventType::RoomMessage,
        raw(content),
    );
    client.send(req, None, deadline()).await.map(|r| r.event_id)
}

/// The bot's message carrying transaction id `txn` among its latest in the room.
async fn already_sent(
    client: &MatrixClient, bot: &UserId, room_id: &OwnedRoomId, txn: &str,
) -> Result<Option<ruma::OwnedEventId>, MatrixError> {
    let mut req = get_message_events::v3::Request::new(room_id.clone(), ruma::api::Direction::Backward);
    req.limit = ruma::UInt::from(20u32);
    req.filter.senders = Some(vec![bot.to_owned()]);
    req.filter.types = Some(vec!["m.room.message".to_owned()]);
    let resp = client.send(req, None, deadline()).await?;
    Ok(resp.chunk.iter().find_map(|event| {
        let event = event.deserialize_as::<Value>().ok()?;
        if event["content"][TXN_KEY].as_str() != Some(txn) {
            return None;
        }
        ruma::OwnedEventId::try_from(event["event_id"].as_str()?).ok()
    }))
}
