//! The appservice API as the homeserver (and impostors) call it.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::{eventually, foyer::TestFoyer, synapse::Synapse};

#[tokio::test]
async fn synapse_pushes_a_transaction_when_a_user_invites_the_bot() {
    let foyer = TestFoyer::start().await;
    let alice = Synapse::shared().create_user("alice").await;
    let bot = foyer.slot.bot_user_id();
    let _room = alice.create_room(&[bot.as_str()]).await;
    // Foyer counts the event, logs it, then counts the transaction: wait for the last.
    let accepted = r#"foyer_appservice_transactions_total{result="accepted"}"#;
    eventually(Duration::from_secs(15), "the transaction with the invite to be accepted", || async {
        (foyer.metric(accepted).await >= 1.0).then_some(())
    })
    .await;
    assert!(foyer.metric(r#"foyer_homeserver_events_total{type="m.room.member"}"#).await >= 1.0);
    let log = foyer.log();
    let line = log
        .lines()
        .find(|l| l.contains("homeserver event") && l.contains(&alice.user_id))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("membership=\"invite\"") && line.contains("kind=m.room.member"), "{line}");
}

#[tokio::test]
async fn requests_without_the_hs_token_get_403_and_record_nothing() {
    let foyer = TestFoyer::start().await;
    let body = json!({"events": [{"event_id": "$x", "room_id": "!r:localhost", "type": "m.room.message", "sender": "@m:localhost", "content": {}}]});
    let wrong = "x".repeat(40);
    for token in [None, Some(wrong.as_str()), Some(foyer.slot.as_token.as_str())] {
        let (status, answer) =
            foyer.request(Method::PUT, "/_matrix/app/v1/transactions/evil1", token, Some(body.clone())).await;
        assert_eq!(status, 403, "{token:?}: {answer}");
        assert_eq!(answer["errcode"], "M_FORBIDDEN");
        for path in
            ["/_matrix/app/v1/users/@a:localhost", "/_matrix/app/v1/rooms/%23a:localhost", "/_matrix/app/v1/nope"]
        {
            let (status, answer) = foyer.request(Method::GET, path, token, None).await;
            assert_eq!((status, answer["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{path}");
        }
    }
    assert_eq!(foyer.metric(r#"foyer_homeserver_events_total{type="m.room.message"}"#).await, 0.0);
    assert_eq!(foyer.metric(r#"foyer_appservice_transactions_total{result="accepted"}"#).await, 0.0);
}

#[tokio::test]
async fn transactions_are_deduplicated_and_routes_answer_per_spec() {
    let foyer = TestFoyer::start().await;
    let hs = Some(foyer.slot.hs_token.as_str());
    let body = json!({"events": [{"event_id": "$dup", "room_id": "!r:localhost", "type": "m.room.message", "sender": "@m:localhost", "content": {"msgtype": "m.text", "body": "hi"}}]});
    for _ in 0..2 {
        let (status, answer) =
            foyer.request(Method::PUT, "/_matrix/app/v1/transactions/t-dup", hs, Some(body.clone())).await;
        assert_eq!((status, answer), (200, json!({})));
    }
    assert_eq!(foyer.metric(r#"foyer_appservice_transactions_total{result="accepted"}"#).await, 1.0);
    assert_eq!(foyer.metric(r#"foyer_appservice_transactions_total{result="duplicate"}"#).await, 1.0);
    assert_eq!(foyer.metric(r#"foyer_homeserver_events_total{type="m.room.message"}"#).await, 1.0);

    // Never a 4xx for what the homeserver sent: Synapse would retry it for ever.
    let (status, answer) = foyer.request(Method::PUT, "/_matrix/app/v1/transactions/t-bad", hs, None).await;
    assert_eq!((status, answer), (200, json!({})));
    assert_eq!(foyer.metric(r#"foyer_appservice_transactions_total{result="unreadable"}"#).await, 1.0);

    let (status, answer) =
        foyer.request(Method::POST, "/_matrix/app/v1/ping", hs, Some(json!({"transaction_id": "t"}))).await;
    assert_eq!((status, answer), (200, json!({})));
    let cases = [
        (Method::GET, "/_matrix/app/v1/users/@nobody:localhost", hs, 404, "M_NOT_FOUND"),
        (Method::GET, "/_matrix/app/v1/rooms/%23live_none:localhost", hs, 404, "M_NOT_FOUND"),
        (Method::GET, "/_matrix/app/v1/thirdparty/protocol/x", hs, 404, "M_UNRECOGNIZED"),
        (Method::GET, "/no/such/route", None, 404, "M_UNRECOGNIZED"),
        (Method::GET, "/_matrix/app/v1/ping", hs, 405, "M_UNRECOGNIZED"),
    ];
    for (method, path, token, want_status, want_errcode) in cases {
        let (status, answer) = foyer.request(method, path, token, None).await;
        assert_eq!((status, answer["errcode"].as_str()), (want_status, Some(want_errcode)), "{path}");
    }
}

#[tokio::test]
async fn health_is_open_and_metrics_need_the_api_token() {
    let foyer = TestFoyer::start().await;
    let (status, answer) = foyer.request(Method::GET, "/health/live", None, None).await;
    assert_eq!((status, answer), (200, json!({"status": "live"})));
    let (status, answer) = foyer.request(Method::GET, "/metrics", None, None).await;
    assert_eq!((status, answer["errcode"].as_str()), (401, Some("FOYER_UNAUTHORIZED")));
    let (status, _) = foyer.request(Method::GET, "/metrics", Some(&foyer.slot.hs_token), None).await;
    assert_eq!(status, 401, "the hs_token is not the api token");
    assert_eq!(foyer.metric("foyer_ready").await, 1.0);
}
