//! A show's chat rules on the watch page (docs/moderation.md), against a real Synapse:
//! a web fan's message that breaks one is refused with the rule named, and nothing
//! reaches the room; slow mode says how long to wait; a `reservation.updated` with new
//! rules applies at once; a retry of a sent message is not judged again; rules that are
//! not rules are refused by name and change nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    foyer::{TestFoyer, open_reservation},
    synapse::Synapse,
    unique,
    webchat::{ChatClient, session_for},
};

fn with_rules(id: &str, hosts: &[&str], revision: u64, rules: Value) -> Value {
    let mut reservation = open_reservation(id, hosts, revision);
    reservation["chat"] = json!({ "rules": rules });
    reservation
}

#[tokio::test]
async fn a_web_fans_message_that_breaks_a_rule_is_refused_by_name_and_never_reaches_the_room() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let id = unique("webrules");
    let host = hs.create_user("host").await;
    // Strikes that never time the fan out here: timeouts have a test of their own.
    let strikes = json!({"count": 100, "within_seconds": 60, "timeout_seconds": 60});
    let rules = json!({"max_length": 20, "blocked_words": ["sp[a4]m"], "links": "hosts_only",
        "duplicate_window_seconds": 60, "strikes": strikes});
    let (status, body) =
        foyer.send_webhook("reservation.created", with_rules(&id, &[host.user_id.as_str()], 1, rules.clone())).await;
    assert_eq!(status, 202, "{body}\n{}", foyer.log());
    let granted = json!({"ticket_id": "t-1", "email": "rules@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [granted]})).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    host.join_once_invited(&room_id, Duration::from_secs(30)).await;

    // Rules that are not rules are refused by name, and the show keeps its own.
    let (status, body) =
        foyer.send_webhook("reservation.updated", with_rules(&id, &[], 2, json!({"mode": "quiet"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("data.chat.rules.mode"), "{body}");

    let chat = ChatClient::of(&foyer).keeping(&["rules@example.org"]);
    let session = session_for(&foyer, &id, "t-1", "Rita").await;
    let (_, me, _) = chat.session(&json!({"token": crate::web_chat::mint(crate::common::foyer::WEBCHAT_SECRET,
        json!({"aud": "foyer", "iat": crate::web_chat::now(), "exp": crate::web_chat::now() + 600, "rid": id, "tid": "t-1", "name": "Rita"}))})).await;
    assert_eq!(me["me"]["max_length"], 20, "the page counts down to the show's limit: {me}");
    let post = |txn: &'static str, body: String| {
        let (chat, session) = (chat.clone(), session.clone());
        async move { chat.post_message(&session, &json!({"txn_id": txn, "body": body})).await }
    };
    for (txn, body, rule) in [
        ("t1", "x".repeat(21), "max_length"),
        ("t2", "buy SP4M now".to_owned(), "blocked_words"),
        ("t3", "see evil.com/promo".to_owned(), "links"),
    ] {
        let (status, answer, text) = post(txn, body).await;
        assert_eq!(
            (status, answer["errcode"].as_str(), answer["rule"].as_str()),
            (422, Some("FOYER_RULE"), Some(rule)),
            "{text}"
        );
        assert!(answer["error"].as_str().is_some_and(|e| e.starts_with("This chat's rules: ")), "{text}");
    }
    let (status, first, text) = post("t4", "hello there".to_owned()).await;
    assert_eq!(status, 200, "{text}");
    let (status, answer, text) = post("t5", "HELLO   there".to_owned()).await;
    assert_eq!((status, answer["rule"].as_str()), (422, Some("duplicate")), "{text}");
    // The sent message again (a retry of t4) is not a duplicate of itself.
    let (status, again, text) = post("t4", "hello there".to_owned()).await;
    assert_eq!((status, &again["event_id"]), (200, &first["event_id"]), "{text}");

    // Slow mode, from a reservation.updated, applies at once.
    let slow = json!({"slow_mode_seconds": 30, "max_length": 20, "strikes": strikes});
    foyer.accept("reservation.updated", with_rules(&id, &[host.user_id.as_str()], 3, slow)).await;
    let (status, answer, text) = post("t6", "one more".to_owned()).await;
    assert_eq!((status, answer["rule"].as_str()), (429, Some("slow_mode")), "{text}");
    let wait = answer["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait > 0 && wait <= 30_000, "{text}");

    // Of all this, the room got the one message that kept the rules.
    let bot = foyer.slot.bot_user_id();
    let web_texts = crate::common::eventually(Duration::from_secs(30), "the kept message in the room", || async {
        let events = host.messages(&room_id).await;
        let texts: Vec<String> = events
            .iter()
            .filter(|e| {
                e["type"] == "m.room.message" && e["sender"] != host.user_id.as_str() && e["sender"] != bot.as_str()
            })
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect();
        (!texts.is_empty()).then_some(texts)
    })
    .await;
    assert_eq!(web_texts, ["hello there"]);

    // Each refusal is in the moderation record, a strike by the fan's ticket.
    let path = format!("/api/v1/reservations/{id}/moderation");
    let (status, record) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 200, "{record}");
    let rules: Vec<&str> = record["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "rule")
        .map(|e| e["details"]["rule"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(rules, ["max_length", "blocked_words", "links", "duplicate", "slow_mode"], "{record}");
    let first = &record["entries"][0];
    assert_eq!(first["member"]["ticket_id"], "t-1", "{record}");
    assert_eq!(first["actor"]["kind"], "bot", "{record}");
}

/// A web fan's strikes time them out: each later message is refused with
/// `FOYER_TIMED_OUT` and how long to wait, and nothing reaches the room; the timeout is
/// in the moderation record, by their ticket.
#[tokio::test]
async fn a_web_fan_timed_out_after_their_strikes_is_refused_until_it_ends() {
    let foyer = TestFoyer::start().await;
    let id = unique("webstrikes");
    let rules =
        json!({"blocked_words": ["spam"], "strikes": {"count": 2, "within_seconds": 60, "timeout_seconds": 600}});
    foyer.accept("reservation.created", with_rules(&id, &[], 1, rules)).await;
    let granted = json!({"ticket_id": "t-1", "email": "strikes@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [granted]})).await;
    foyer.room_id(&id, Duration::from_secs(30)).await;
    let chat = ChatClient::of(&foyer).keeping(&["strikes@example.org"]);
    let session = session_for(&foyer, &id, "t-1", "Rita").await;
    for txn in ["s1", "s2"] {
        let (status, answer, text) = chat.post_message(&session, &json!({"txn_id": txn, "body": "spam"})).await;
        assert_eq!((status, answer["rule"].as_str()), (422, Some("blocked_words")), "{text}");
    }
    let (status, answer, text) = chat.post_message(&session, &json!({"txn_id": "ok", "body": "sorry"})).await;
    assert_eq!((status, answer["errcode"].as_str()), (429, Some("FOYER_TIMED_OUT")), "{text}");
    let wait = answer["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait > 590_000 && wait <= 600_000, "{text}");

    let path = format!("/api/v1/reservations/{id}/moderation");
    let (status, record) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 200, "{record}");
    let timeouts: Vec<&Value> =
        record["entries"].as_array().expect("entries").iter().filter(|e| e["action"] == "timeout").collect();
    assert_eq!(timeouts.len(), 1, "{record}");
    assert_eq!(timeouts[0]["member"]["ticket_id"], "t-1", "{record}");
    assert_eq!(timeouts[0]["details"]["seconds"], 600, "{record}");
}
