//! Two Foyer instances on one PostgreSQL and one Synapse (docs/web-chat.md, "Several
//! instances"): the homeserver's transactions reach instance A only (the registration
//! points there), and a viewer connected to instance B still sees what a Matrix member
//! says, told by the database (`NOTIFY` when A's append commits) or found by B's poll.

use std::time::Duration;

use serde_json::json;

use crate::common::{
    foyer::{TestFoyer, open_reservation},
    free_port,
    postgres::fresh_postgres_database,
    synapse::Synapse,
    unique,
    webchat::{ChatClient, Sse, is_message, session_for},
};

#[tokio::test]
async fn a_viewer_on_one_instance_sees_a_message_whose_transaction_reached_another() {
    let synapse = Synapse::dedicated(1);
    let slot = synapse.take_slot();
    let database = fresh_postgres_database().await;
    let config = slot.config_yaml().replace("url: sqlite://foyer.db", &format!("url: {database}"));
    let a = TestFoyer::spawn(slot.clone(), &config);
    a.wait_ready().await;
    let port = free_port();
    let own = config.replace(&format!("listen: 127.0.0.1:{}", slot.port), &format!("listen: 127.0.0.1:{port}"));
    let mut b = TestFoyer::spawn(slot.clone(), &own);
    b.base_url = format!("http://127.0.0.1:{port}");
    b.wait_ready().await;

    let member = synapse.create_user("member").await;
    let id = unique("twoinst");
    a.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    a.grant(&id, &[("t-member", member.user_id.as_str())]).await;
    let fan_ticket = json!({"ticket_id": "t-web", "email": "web.fan@example.org"});
    a.accept("ticket.granted", json!({"reservation_id": id, "tickets": [fan_ticket]})).await;
    let room = a.room_id(&id, Duration::from_secs(60)).await;
    member.join_once_invited(&room, Duration::from_secs(30)).await;

    // The viewer reads from B; the transaction with the member's message goes to A.
    let session = session_for(&b, &id, "t-web", "Web Fan").await;
    let (status, reader) = ChatClient::of(&b).stream(&session, None).await;
    assert_eq!(status, 200, "{:?}", reader.err());
    let mut reader = reader.unwrap();
    reader.until("the end of the backlog", |e: &Sse| e.event == "ready").await;
    let text = format!("said to A, read on B {id}");
    let (status, sent) = member.send_text(&room, &text).await;
    assert_eq!(status, 200, "{sent}");
    let seen = reader.until("the member's message on B", is_message(&text)).await;
    assert_eq!(seen.last().unwrap().data["event_id"], sent["event_id"], "{seen:?}");
    // What the test stands on: the homeserver sent its transactions to A alone.
    assert!(a.log().contains("transaction accepted"), "A was sent no transaction");
    assert!(!b.log().contains("transaction accepted"), "B was sent a transaction");
}
