//! A show's chat rules in Matrix (docs/moderation.md), against a real Synapse: a member's
//! message that breaks one is redacted by the bot with the rule named, as are edits and
//! captions; hosts are exempt; strikes time a member out by their power level, lifted on
//! time across a restart; modes are power levels the homeserver itself enforces, and a
//! mode and back keeps what was set meanwhile.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, open_reservation},
    random_token,
    synapse::Synapse,
    unique,
    users::TestUser,
};

fn with_chat(id: &str, hosts: &[&str], revision: u64, chat: Value) -> Value {
    let mut reservation = open_reservation(id, hosts, revision);
    reservation["chat"] = chat;
    reservation
}

/// Sends an event of `kind` as `user`; (status, answer).
async fn send(user: &TestUser, room: &str, kind: &str, content: Value) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/send/{kind}/{}", enc(room), random_token());
    user.request(reqwest::Method::PUT, &path, Some(content)).await
}

/// Sends a text and returns its event id; the homeserver must take it.
async fn said(user: &TestUser, room: &str, content: Value) -> String {
    let (status, answer) = send(user, room, "m.room.message", content).await;
    assert_eq!(status, 200, "{} sends: {answer}", user.user_id);
    answer["event_id"].as_str().expect("event_id").to_owned()
}

fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

/// The event as `user` sees it now.
async fn event(user: &TestUser, room: &str, event_id: &str) -> Value {
    let (status, event) = user.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(event_id))).await;
    assert_eq!(status, 200, "{event}");
    event
}

/// The reason of the redaction of `event_id`, once it is redacted, and how long after
/// the event the redaction came, by the homeserver's own clock.
async fn redacted(user: &TestUser, room: &str, event_id: &str) -> (String, i64) {
    eventually(Duration::from_secs(30), &format!("the redaction of {event_id}"), || async {
        let event = event(user, room, event_id).await;
        let because = &event["unsigned"]["redacted_because"];
        let reason = because["content"]["reason"].as_str()?.to_owned();
        let after = because["origin_server_ts"].as_i64()? - event["origin_server_ts"].as_i64()?;
        Some((reason, after))
    })
    .await
}

fn is_redacted(event: &Value) -> bool {
    !event["unsigned"]["redacted_because"].is_null()
}

/// A show open now with `chat`, its host and one fan in the room.
async fn show(foyer: &TestFoyer, name: &str, chat: Value) -> (String, String, TestUser, TestUser) {
    let hs = Synapse::shared();
    let (host, fan) = (hs.create_user("host").await, hs.create_user("fan").await);
    let id = unique(name);
    let created = with_chat(&id, &[host.user_id.as_str()], 1, chat);
    let (status, body) = foyer.send_webhook("reservation.created", created).await;
    assert_eq!(status, 202, "{body}");
    foyer.grant(&id, &[("t-fan", &fan.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    host.join_once_invited(&room, Duration::from_secs(30)).await;
    fan.join_once_invited(&room, Duration::from_secs(30)).await;
    (id, room, host, fan)
}

/// The reservation's moderation record, every entry.
async fn record(foyer: &TestFoyer, id: &str) -> Vec<Value> {
    let path = format!("/api/v1/reservations/{id}/moderation?limit=1000");
    let (status, body) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

/// The member's power level as the room's power levels say (`None`: the default).
async fn level(user: &TestUser, room: &str, member: &str) -> Option<i64> {
    user.state(room, "m.room.power_levels").await.expect("power levels")["users"][member].as_i64()
}

#[tokio::test]
async fn a_members_message_that_breaks_a_rule_is_redacted_with_the_rule_named_and_hosts_are_exempt() {
    let foyer = TestFoyer::start().await;
    let rules = json!({"max_length": 20, "blocked_words": ["sp[a4]m"], "links": "hosts_only",
        "duplicate_window_seconds": 60, "strikes": {"count": 100, "within_seconds": 60, "timeout_seconds": 60}});
    let (id, room, host, fan) = show(&foyer, "memberrules", json!({"rules": rules})).await;

    let kept = said(&fan, &room, text("hello there")).await;
    let long = said(&fan, &room, text(&"x".repeat(21))).await;
    let word = said(&fan, &room, text("buy SP4M now")).await;
    let link = said(&fan, &room, text("see evil.com/promo")).await;
    // A link only in the HTML, as Element sends a named link.
    let html = said(
        &fan,
        &room,
        json!({"msgtype": "m.text", "body": "here", "format": "org.matrix.custom.html",
            "formatted_body": "<a href=\"https://evil.com/x\">here</a>"}),
    )
    .await;
    let caption = said(
        &fan,
        &room,
        json!({"msgtype": "m.image", "body": "cheap spam here", "filename": "cat.png", "url": "mxc://example.org/cat"}),
    )
    .await;
    // An edit of the kept message whose new content holds the blocked word.
    let edit = said(
        &fan,
        &room,
        json!({"msgtype": "m.text", "body": "* spam", "m.new_content": {"msgtype": "m.text", "body": "spam"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": kept}}),
    )
    .await;
    let again = said(&fan, &room, text("HELLO   there")).await;
    let hosts_own = said(&host, &room, text(&format!("{} see evil.com", "y".repeat(30)))).await;

    for (event_id, named) in [
        (&long, "max_length: the message is 21 characters long; the limit is 20"),
        (&word, "blocked_words"),
        (&link, "links"),
        (&html, "links"),
        (&caption, "blocked_words"),
        (&edit, "blocked_words"),
        (&again, "duplicate: the same message again within 60 s"),
    ] {
        let (reason, after) = redacted(&fan, &room, event_id).await;
        let named = format!("Broke this chat's rule {named}");
        assert!(reason.starts_with(&named), "{event_id}: {reason:?} should name {named:?}");
        println!("redacted {after} ms after it was sent: {reason}");
    }
    assert!(!is_redacted(&event(&fan, &room, &kept).await), "the message that kept the rules stays");
    assert!(!is_redacted(&event(&fan, &room, &hosts_own).await), "hosts are exempt");

    // Each breach is a strike and a redaction in the record, by the bot, naming the member.
    let entries = eventually(Duration::from_secs(30), "7 redactions in the record", || async {
        let entries = record(&foyer, &id).await;
        (entries.iter().filter(|e| e["action"] == "redaction").count() == 7).then_some(entries)
    })
    .await;
    let rules: Vec<&str> =
        entries.iter().filter(|e| e["action"] == "rule").filter_map(|e| e["details"]["rule"].as_str()).collect();
    assert_eq!(rules.len(), 7, "{entries:?}");
    for rule in ["max_length", "blocked_words", "links", "duplicate"] {
        assert!(rules.contains(&rule), "{rule} in {rules:?}");
    }
    assert!(entries.iter().all(|e| e["member"]["user_id"] == fan.user_id.as_str()), "{entries:?}");
}

#[tokio::test]
async fn a_member_who_breaks_the_slow_mode_twice_sees_the_second_message_redacted_within_two_seconds() {
    let foyer = TestFoyer::start().await;
    let (_, room, _, fan) = show(&foyer, "memberslow", json!({"rules": {"slow_mode_seconds": 30}})).await;
    let first = said(&fan, &room, text("first")).await;
    let second = said(&fan, &room, text("second")).await;
    let (reason, after) = redacted(&fan, &room, &second).await;
    println!("the second message was redacted {after} ms after it was sent");
    assert!(reason.starts_with("Broke this chat's rule slow_mode: slow mode"), "{reason}");
    assert!(after < 2000, "redacted {after} ms after it was sent, by the homeserver's clock");
    assert!(!is_redacted(&event(&fan, &room, &first).await), "the first message is kept");
}

#[tokio::test]
async fn strikes_time_a_member_out_by_their_power_level_until_it_is_lifted_on_time_across_a_restart() {
    let mut foyer = TestFoyer::start().await;
    let strikes = json!({"count": 2, "within_seconds": 300, "timeout_seconds": 15});
    let (id, room, host, fan) =
        show(&foyer, "memberstrikes", json!({"rules": {"blocked_words": ["spam"], "strikes": strikes}})).await;
    said(&fan, &room, text("spam one")).await;
    said(&fan, &room, text("spam two")).await;
    eventually(Duration::from_secs(30), "the fan's level below posting", || async {
        (level(&host, &room, &fan.user_id).await == Some(-1)).then_some(())
    })
    .await;
    let (status, answer) = send(&fan, &room, "m.room.message", text("let me speak")).await;
    assert_eq!(status, 403, "the homeserver refuses a timed-out member: {answer}");

    // Foyer goes down while the timeout runs; the one that comes back lifts it on time.
    foyer.kill_and_restart().await;
    eventually(Duration::from_secs(60), "the timeout lifted", || async {
        (level(&host, &room, &fan.user_id).await.is_none()).then_some(())
    })
    .await;
    said(&fan, &room, text("back again")).await;
    let entries = record(&foyer, &id).await;
    let timeout = entries.iter().find(|e| e["action"] == "timeout").expect("a timeout in the record");
    let lifted = entries.iter().find(|e| e["action"] == "untimeout").expect("the timeout lifted in the record");
    assert_eq!(timeout["member"]["user_id"], fan.user_id.as_str(), "{timeout}");
    assert_eq!(lifted["details"]["until"], timeout["details"]["until"], "lifted when it ended: {entries:?}");
    assert_eq!(entries.iter().filter(|e| e["action"] == "timeout").count(), 1, "{entries:?}");
}

#[tokio::test]
async fn modes_are_power_levels_the_homeserver_enforces_and_a_mode_and_back_keeps_what_was_set_meanwhile() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let strikes = json!({"count": 1, "within_seconds": 300, "timeout_seconds": 600});
    let chat = |mode: &str, moderators: &[&str]| json!({"rules": {"mode": mode, "blocked_words": ["spam"], "strikes": strikes}, "moderators": moderators});
    let (id, room, host, fan) = show(&foyer, "membermodes", chat("open", &[])).await;
    let (troll, moderator) = (hs.create_user("troll").await, hs.create_user("mod").await);
    foyer.grant(&id, &[("t-troll", &troll.user_id)]).await;
    troll.join_once_invited(&room, Duration::from_secs(30)).await;
    let target = said(&host, &room, text("a poll, say")).await;
    // The troll is timed out at once (one strike).
    said(&troll, &room, text("spam")).await;
    eventually(Duration::from_secs(30), "the troll timed out", || async {
        (level(&host, &room, &troll.user_id).await == Some(-1)).then_some(())
    })
    .await;

    let update = |revision: u64, chat: Value| {
        let reservation = with_chat(&id, &[host.user_id.as_str()], revision, chat);
        async { foyer.accept("reservation.updated", reservation).await }
    };
    update(2, chat("hosts_only", &[])).await;
    eventually(Duration::from_secs(30), "hosts_only in force", || async {
        (send(&fan, &room, "m.room.message", text("anyone?")).await.0 == 403).then_some(())
    })
    .await;
    let (status, answer) = send(&fan, &room, "m.reaction", reaction(&target)).await;
    assert_eq!(status, 403, "no reactions either in hosts_only: {answer}");
    said(&host, &room, text("hosts may")).await;

    // A moderator added while the mode holds.
    update(3, chat("hosts_only", &[moderator.user_id.as_str()])).await;
    moderator.join_once_invited(&room, Duration::from_secs(30)).await;
    update(4, chat("reactions_only", &[moderator.user_id.as_str()])).await;
    eventually(Duration::from_secs(30), "reactions_only in force", || async {
        (send(&fan, &room, "m.reaction", reaction(&target)).await.0 == 200).then_some(())
    })
    .await;
    let (status, answer) = send(&fan, &room, "m.room.message", text("words?")).await;
    assert_eq!(status, 403, "no messages in reactions_only: {answer}");
    for kind in ["m.poll.response", "org.matrix.msc3381.poll.response"] {
        let answer = json!({"m.relates_to": {"rel_type": "m.reference", "event_id": target},
            "m.selections": ["a"], "org.matrix.msc3381.poll.response": {"answers": ["a"]}});
        let (status, body) = send(&fan, &room, kind, answer).await;
        assert_eq!(status, 200, "a poll answer ({kind}) in reactions_only: {body}");
    }
    let (status, answer) = send(&troll, &room, "m.reaction", reaction(&target)).await;
    assert_eq!(status, 403, "a timed-out member cannot react either: {answer}");

    update(5, chat("open", &[moderator.user_id.as_str()])).await;
    eventually(Duration::from_secs(30), "open again", || async {
        (send(&fan, &room, "m.room.message", text("hello again")).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(level(&host, &room, &troll.user_id).await, Some(-1), "the timeout stays");
    assert_eq!(level(&host, &room, &moderator.user_id).await, Some(50), "the moderator added meanwhile stays");
    said(&moderator, &room, text("a moderator speaks")).await;
}

fn reaction(target: &str) -> Value {
    json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👍"}})
}
