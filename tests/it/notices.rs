//! What Foyer tells a room's members, against a real Synapse.

use std::time::Duration;

use serde_json::json;

use crate::common::{
    eventually,
    foyer::{TestFoyer, open_reservation},
    unique,
    users::TestUser,
};

/// The notice of a transcript switched on by `chat.transcript` while the room is open.
const SAVED: &str = "📝 This chat will be saved when the room closes.";

/// The opening notice says whether the chat will be saved; when `chat.transcript` is
/// switched on after it, members are told then, once (issue 27, L7).
#[tokio::test]
async fn a_transcript_switched_on_while_open_is_announced_once() {
    // rooms.transcript is off by default.
    let foyer = TestFoyer::start().await;
    let id = unique("told");
    let mut reservation = open_reservation(&id, &[], 1);
    foyer.accept("reservation.created", reservation.clone()).await;
    let room = foyer.room_id(&id, Duration::from_secs(15)).await;
    let bot = TestUser::bot(&foyer.slot);
    let opening = eventually(Duration::from_secs(10), "the opening notice", || async {
        bot.notices(&room).await.into_iter().find(|n| n.contains("is open"))
    })
    .await;
    assert!(!opening.contains("will be saved"), "{opening}");

    reservation["revision"] = json!(2);
    reservation["chat"] = json!({"transcript": true});
    foyer.accept("reservation.updated", reservation.clone()).await;
    eventually(Duration::from_secs(10), "the notice that the chat will be saved", || async {
        bot.notices(&room).await.iter().any(|n| n == SAVED).then_some(())
    })
    .await;

    // Later rounds (a new title, done once the room is renamed) say it no more.
    reservation["revision"] = json!(3);
    reservation["title"] = json!("Renamed");
    foyer.accept("reservation.updated", reservation).await;
    eventually(Duration::from_secs(10), "the room to be renamed", || async {
        (bot.state(&room, "m.room.name").await?["name"] == "Renamed").then_some(())
    })
    .await;
    let told = bot.notices(&room).await.into_iter().filter(|n| n.contains("will be saved")).count();
    assert_eq!(told, 1, "{:?}", bot.notices(&room).await);
}
