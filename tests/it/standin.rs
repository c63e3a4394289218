//! The stand-in homeserver (`tests/common/standin.rs`) answers every call Foyer makes
//! for a reservation.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::common::{eventually, foyer::TestFoyer, standin::StandIn, synapse::SERVER_NAME};

/// The stand-in serves a whole reservation: handshake, opening with a host, a stream
/// link and a channel space, then a cancellation that archives the room. Every call
/// must be one it knows.
#[tokio::test]
async fn standin_serves_every_call_of_a_reservation() {
    let hs = StandIn::start().await;
    let slot = hs.slot();
    let foyer = TestFoyer::spawn(slot.clone(), &slot.config_yaml());
    foyer.wait_ready().await;
    let now = Utc::now();
    let at = |d: chrono::Duration| (now + d).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    foyer
        .accept(
            "reservation.created",
            json!({"reservation_id": "standin-1", "title": "Stand-in",
                   "starts_at": at(chrono::Duration::minutes(5)), "ends_at": at(chrono::Duration::hours(1)),
                   "stream_url": "https://stream.example.org/watch/1",
                   "channel": {"id": "blue", "name": "Blue"}, "hosts": [format!("@host:{SERVER_NAME}")]}),
        )
        .await;
    foyer
        .accept(
            "ticket.granted",
            json!({"reservation_id": "standin-1", "tickets": [{"ticket_id": "t1", "user_id": format!("@fan:{SERVER_NAME}")}]}),
        )
        .await;
    eventually(Duration::from_secs(30), "the room and its opening notice", || async {
        (foyer.reservation("standin-1").await.1["room_id"].is_string() && hs.calls().contains_key("PUT send"))
            .then_some(())
    })
    .await;
    let created = hs.created();
    assert!(created.iter().any(|(name, _)| name == "live_standin-1"), "{created:?}");
    assert!(created.iter().any(|(name, _)| name == "live_+blue"), "the channel's space: {created:?}");
    foyer.accept("reservation.cancelled", json!({"reservation_id": "standin-1"})).await;
    eventually(Duration::from_secs(30), "the room is archived", || async {
        (foyer.reservation("standin-1").await.1["phase"] == "cancelled" && hs.calls().contains_key("DELETE alias"))
            .then_some(())
    })
    .await;
    let calls = hs.calls();
    eprintln!("[standin] calls: {calls:?}");
    let log = foyer.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    assert!(warnings.is_empty(), "Foyer complained about the stand-in's answers:\n{}", warnings.join("\n"));
    for route in
        ["GET whoami", "POST register", "POST ping", "GET capabilities", "PUT state", "PUT send", "POST invite"]
    {
        assert!(calls.contains_key(route), "{route} was never called: {calls:?}");
    }
    assert!(hs.unknown().is_empty(), "routes the stand-in does not know: {:?}", hs.unknown());
}
