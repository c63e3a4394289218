//! Stream signals and what ticket holders see of them in the room, on a real Synapse.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::common::{
    enc, eventually,
    foyer::TestFoyer,
    synapse::Synapse,
    unique,
    users::{TestUser, nio_client},
};

fn at(seconds: f64) -> String {
    (Utc::now() + chrono::Duration::milliseconds((seconds * 1000.0) as i64))
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn reservation(id: &str, starts_in: f64, ends_in: f64, open_before: u64, close_after: u64) -> Value {
    json!({
        "reservation_id": id, "revision": 1, "title": format!("Show {id}"),
        "starts_at": at(starts_in), "ends_at": at(ends_in),
        "stream_url": "https://stream.example.org/watch/one",
        "chat": {"open_before_seconds": open_before, "close_after_seconds": close_after}
    })
}

/// Grants `fan` a ticket and waits for the room; returns its id.
async fn ticketed_room(foyer: &TestFoyer, id: &str, fan: &TestUser) -> String {
    foyer.grant(id, &[("t", &fan.user_id)]).await;
    foyer.room_id(id, Duration::from_secs(15)).await
}

/// Like [`ticketed_room`], and `fan` joins it.
async fn open_room(foyer: &TestFoyer, id: &str, fan: &TestUser) -> String {
    let room = ticketed_room(foyer, id, fan).await;
    fan.join_once_invited(&room, Duration::from_secs(10)).await;
    room
}

/// Notice bodies in the room, oldest first.
async fn notices(user: &TestUser, room: &str) -> Vec<String> {
    let mut bodies = user.notices(room).await;
    bodies.reverse();
    bodies
}

async fn wait_notice(user: &TestUser, room: &str, needle: &str) -> Vec<String> {
    eventually(Duration::from_secs(15), needle, || async {
        let all = notices(user, room).await;
        all.iter().any(|n| n.contains(needle)).then_some(all)
    })
    .await
}

async fn topic(user: &TestUser, room: &str) -> String {
    user.state(room, "m.room.topic")
        .await
        .map(|t| t["topic"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_early_start_opens_the_room_at_once_and_goes_live() {
    let foyer = TestFoyer::start().await;
    let fan = Synapse::shared().create_user("fan").await;
    let id = unique("early");
    foyer.accept("reservation.created", reservation(&id, 3600.0, 7200.0, 60, 60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(foyer.reservation(&id).await.1["room_id"], Value::Null, "not open an hour early");
    foyer.accept("stream.started", json!({"reservation_id": id})).await;
    let room = open_room(&foyer, &id, &fan).await;
    wait_notice(&fan, &room, "is live now").await;
    assert!(topic(&fan, &room).await.starts_with("🔴 Live now"), "{}", topic(&fan, &room).await);
    assert_eq!(foyer.reservation(&id).await.1["phase"], "live");
}

#[tokio::test]
async fn a_restart_after_the_end_goes_live_again_and_postpones_the_archive() {
    let foyer = TestFoyer::start().await;
    let fan = Synapse::shared().create_user("fan").await;
    let id = unique("restart");
    foyer.accept("reservation.created", reservation(&id, -60.0, 3600.0, 60, 60)).await;
    let room = open_room(&foyer, &id, &fan).await;
    foyer.accept("stream.started", json!({"reservation_id": id, "at": at(-30.0)})).await;
    wait_notice(&fan, &room, "is live now").await;
    foyer.accept("stream.ended", json!({"reservation_id": id, "at": at(-20.0)})).await;
    wait_notice(&fan, &room, "The stream has ended").await;
    let ended_archive = foyer.reservation(&id).await.1["archives_at"].as_str().unwrap().to_owned();
    assert!(topic(&fan, &room).await.starts_with("The stream has ended"));

    foyer.accept("stream.started", json!({"reservation_id": id})).await;
    let all = eventually(Duration::from_secs(15), "a second live notice", || async {
        let all = notices(&fan, &room).await;
        (all.iter().filter(|n| n.contains("is live now")).count() == 2).then_some(all)
    })
    .await;
    let (_, r) = foyer.reservation(&id).await;
    assert_eq!(r["phase"], "live", "{all:?}");
    let later = DateTime::parse_from_rfc3339(r["archives_at"].as_str().unwrap()).unwrap();
    assert!(later > DateTime::parse_from_rfc3339(&ended_archive).unwrap(), "the archive moved later: {r}");
}

#[tokio::test]
async fn an_overrunning_stream_keeps_the_room_up_to_max_overrun() {
    let foyer = TestFoyer::start_with(|y| y + "rooms:\n  max_overrun: 15s\n  closing_warning: 0s\n", &[]).await;
    let fan = Synapse::shared().create_user("fan").await;
    let id = unique("overrun");
    // Ends in 4 s, closes 1 s after the end: without the overrun it would close at +5 s;
    // with it, at +20 s. The stream starts at once, long before the end.
    let body = reservation(&id, -60.0, 4.0, 60, 1);
    let ends_at = DateTime::parse_from_rfc3339(body["ends_at"].as_str().unwrap()).unwrap().with_timezone(&Utc);
    foyer.accept("reservation.created", body).await;
    foyer.accept("stream.started", json!({"reservation_id": id})).await;
    let room = open_room(&foyer, &id, &fan).await;
    // Look once the room would have closed without the overrun (+5 s), well before it
    // closes with it (+20 s).
    let look_at = ends_at + chrono::Duration::seconds(2);
    tokio::time::sleep((look_at - Utc::now()).to_std().unwrap_or_default()).await;
    assert_eq!(fan.send_text(&room, "still live past ends_at").await.0, 200, "within max_overrun the room stays");
    assert_eq!(foyer.reservation(&id).await.1["phase"], "live");
    // Beyond max_overrun (ends_at + 15 s + 1 s) it closes although the stream never ended.
    // `archived` is said only once the archive is done: nobody else can post by then.
    eventually(Duration::from_secs(40), "the archive beyond max_overrun", || async {
        (foyer.reservation(&id).await.1["phase"] == "archived").then_some(())
    })
    .await;
    assert_eq!(fan.send_text(&room, "still here?").await.0, 403, "archived means only the bot may post");
}

#[tokio::test]
async fn reminders_are_posted_once_across_a_crash() {
    let mut foyer = TestFoyer::start_with(
        |y| y + "rooms:\n  reminders: [3s]\n  closing_warning: 0s\n",
        &[("FOYER_FAILPOINTS", "after_notice")],
    )
    .await;
    let fan = Synapse::shared().create_user("fan").await;
    let id = unique("remind");
    // Opens at +1 s; the reminder is due at +3 s, 3 s before the start.
    let body = reservation(&id, 6.0, 600.0, 5, 60);
    let starts_at = DateTime::parse_from_rfc3339(body["starts_at"].as_str().unwrap()).unwrap().with_timezone(&Utc);
    foyer.accept("reservation.created", body).await;
    foyer.grant(&id, &[("t", &fan.user_id)]).await;
    // The room opens, the reminder is posted, then Foyer dies before recording it. The
    // room is read after the restart: the read API is gone with the process.
    let code = foyer.wait_exit(Duration::from_secs(60)).await;
    assert_ne!(code, 0, "the failpoint aborted Foyer:\n{}", foyer.log());
    foyer.kill_and_restart().await;
    let room = foyer.reservation(&id).await.1["room_id"].as_str().expect("the room, recorded before").to_owned();
    fan.join_once_invited(&room, Duration::from_secs(10)).await;
    // A reminder is due only before the start: look once the start has passed, when a
    // second one could no longer come.
    let look_at = starts_at + chrono::Duration::seconds(2);
    tokio::time::sleep((look_at - Utc::now()).to_std().unwrap_or_default()).await;
    let all = notices(&fan, &room).await;
    let reminders = all.iter().filter(|n| n.contains("starts in")).count();
    assert_eq!(reminders, 1, "{all:?}");
    assert!(all.iter().any(|n| n.contains("is open")), "{all:?}");
}

#[tokio::test]
async fn the_stream_sits_beside_the_chat_as_element_expects() {
    let foyer = TestFoyer::start().await;
    let fan = Synapse::shared().create_user("fan").await;
    let id = unique("widget");
    foyer.accept("reservation.created", reservation(&id, 600.0, 3600.0, 3600, 60)).await;
    let room = open_room(&foyer, &id, &fan).await;
    eventually(Duration::from_secs(10), "the widget", || async {
        fan.get(&format!("/_matrix/client/v3/rooms/{}/state/im.vector.modular.widgets/foyer_stream", enc(&room)))
            .await
            .1
            .get("url")
            .is_some()
            .then_some(())
    })
    .await;
    let (_, w) =
        fan.get(&format!("/_matrix/client/v3/rooms/{}/state/im.vector.modular.widgets/foyer_stream", enc(&room))).await;
    assert_eq!(w["type"], "m.custom");
    assert_eq!(w["url"], "https://stream.example.org/watch/one");
    assert_eq!(w["id"], "foyer_stream");
    assert_eq!(w["waitForIframeLoad"], true);
    assert_eq!(w["data"]["title"], format!("Show {id}"));
    let layout = fan.state(&room, "io.element.widgets.layout").await.unwrap();
    assert_eq!(layout["widgets"]["foyer_stream"]["container"], "top", "{layout}");
    let pinned = fan.state(&room, "m.room.pinned_events").await.unwrap();
    let pinned_id = pinned["pinned"][0].as_str().unwrap().to_owned();
    let (_, event) = fan.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&pinned_id))).await;
    assert!(event["content"]["body"].as_str().unwrap().contains("https://stream.example.org/watch/one"), "{event}");

    // A new stream URL replaces both.
    let mut moved = reservation(&id, 600.0, 3600.0, 3600, 60);
    moved["revision"] = json!(2);
    moved["stream_url"] = json!("https://stream.example.org/watch/two");
    foyer.accept("reservation.updated", moved).await;
    eventually(Duration::from_secs(10), "the new widget URL", || async {
        let (_, w) = fan
            .get(&format!("/_matrix/client/v3/rooms/{}/state/im.vector.modular.widgets/foyer_stream", enc(&room)))
            .await;
        (w["url"] == "https://stream.example.org/watch/two").then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "a new pinned link", || async {
        let pinned = fan.state(&room, "m.room.pinned_events").await?;
        (pinned["pinned"][0].as_str() != Some(pinned_id.as_str())).then_some(())
    })
    .await;
    assert!(topic(&fan, &room).await.contains("watch/two"));
}

#[tokio::test]
async fn channel_rooms_are_listed_in_the_channel_space_until_archived() {
    let foyer = TestFoyer::start().await;
    let fan = Synapse::shared().create_user("fan").await;
    let channel = unique("blue");
    let (first, second) = (unique("ch1"), unique("ch2"));
    let mut rooms = Vec::new();
    for id in [&first, &second] {
        let mut body = reservation(id, -60.0, 3600.0, 60, 60);
        body["channel"] = json!({"id": channel, "name": "The Blue Room"});
        foyer.accept("reservation.created", body).await;
        rooms.push(open_room(&foyer, id, &fan).await);
    }
    let space_alias = format!("#{}+{channel}:localhost", foyer.slot.alias_prefix);
    let space = fan.resolve_alias(&space_alias).await.expect("the channel's space has its own alias");
    fan.join_once_invited(&space, Duration::from_secs(10)).await;
    let create = fan.state(&space, "m.room.create").await.unwrap();
    assert_eq!(create["type"], "m.space");
    assert_eq!(fan.state(&space, "m.room.name").await.unwrap()["name"], "The Blue Room");
    let child = |room: &str| format!("/_matrix/client/v3/rooms/{}/state/m.space.child/{}", enc(&space), enc(room));
    for room in &rooms {
        let (status, link) = fan.get(&child(room)).await;
        assert_eq!((status, &link["via"]), (200, &json!(["localhost"])), "{link}");
        let parent = format!("/_matrix/client/v3/rooms/{}/state/m.space.parent/{}", enc(room), enc(&space));
        assert_eq!(fan.get(&parent).await.1["canonical"], true);
    }

    foyer.accept("reservation.cancelled", json!({"reservation_id": first})).await;
    eventually(Duration::from_secs(10), "the archived room to leave the space", || async {
        let (_, link) = fan.get(&child(&rooms[0])).await;
        (link.get("via").is_none()).then_some(())
    })
    .await;
    assert_eq!(fan.get(&child(&rooms[1])).await.1["via"], json!(["localhost"]), "the other room stays listed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_client_library_joins_sees_the_room_posts_and_is_refused_after_the_archive() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let fan = hs.create_user("fan").await;
    let id = unique("nio");
    foyer.accept("reservation.created", reservation(&id, 600.0, 3600.0, 3600, 60)).await;
    let room = ticketed_room(&foyer, &id, &fan).await;
    let seen = tokio::task::block_in_place(|| nio_client(&fan, &hs.url, &room, "join"));
    assert_eq!(seen["room_name"], format!("Show {id}"), "{seen}");
    assert!(seen["notices"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("is open")), "{seen}");
    assert_eq!(seen["widget_url"], "https://stream.example.org/watch/one", "{seen}");
    assert_eq!(seen["posted"], true, "{seen}");

    foyer.accept("reservation.cancelled", json!({"reservation_id": id})).await;
    eventually(Duration::from_secs(15), "the archive", || async {
        (foyer.reservation(&id).await.1["phase"] == "cancelled" && fan.send_text(&room, "x").await.0 == 403)
            .then_some(())
    })
    .await;
    let after = tokio::task::block_in_place(|| nio_client(&fan, &hs.url, &room, "post"));
    assert_eq!(after["refused"], true, "{after}");
}

/// One line of a transcript: who did what, as a ticket holder's client shows it.
fn describe(event: &Value, start: i64) -> Option<String> {
    let secs = (event["origin_server_ts"].as_i64()? - start) as f64 / 1000.0;
    let sender = event["sender"].as_str()?.split(':').next()?.trim_start_matches('@');
    let content = &event["content"];
    let what = match event["type"].as_str()? {
        "m.room.message" => format!("{}: {}", content["msgtype"].as_str()?, content["body"].as_str()?),
        "m.room.member" => {
            format!(
                "{} is now {}",
                event["state_key"].as_str()?.split(':').next()?.trim_start_matches('@'),
                content["membership"].as_str()?
            )
        }
        "m.room.topic" => format!("sets the topic: {}", content["topic"].as_str()?),
        "m.room.name" => format!("names the room: {}", content["name"].as_str()?),
        "m.room.power_levels" => format!("sets power levels (events_default {})", content["events_default"]),
        "im.vector.modular.widgets" => {
            format!("adds the widget \"{}\" → {}", content["name"].as_str()?, content["url"].as_str()?)
        }
        "m.room.pinned_events" => "pins the stream link".to_owned(),
        "m.room.join_rules" => format!("sets the join rule: {}", content["join_rule"].as_str()?),
        _ => return None,
    };
    Some(format!("| +{secs:.1} s | {sender} | {what} |"))
}

#[tokio::test]
#[ignore = "writes docs/ticket-holder-view.md: run with `cargo test --test it -- --ignored transcript`"]
async fn transcript_of_what_a_ticket_holder_sees() {
    let foyer = TestFoyer::start_with(|y| y + "rooms:\n  reminders: [4s]\n  closing_warning: 2s\n", &[]).await;
    let fan = Synapse::shared().create_user("fan").await;
    let id = unique("jazz");
    let mut body = reservation(&id, 8.0, 12.0, 6, 4);
    body["title"] = json!("Friday Night Jazz");
    foyer.accept("reservation.created", body).await;
    let room = open_room(&foyer, &id, &fan).await;
    assert_eq!(fan.send_text(&room, "Can't wait!").await.0, 200);
    tokio::time::sleep(Duration::from_secs(7)).await;
    foyer.accept("stream.started", json!({"reservation_id": id})).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    foyer.accept("stream.ended", json!({"reservation_id": id})).await;
    eventually(Duration::from_secs(20), "the archive", || async {
        let levels = fan.state(&room, "m.room.power_levels").await?;
        (levels["events_default"] == 100).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the rest of the archive
    let mut events = fan.messages(&room).await;
    events.reverse();
    let start = events.first().and_then(|e| e["origin_server_ts"].as_i64()).unwrap_or(0);
    let lines: Vec<String> = events.iter().filter_map(|e| describe(e, start)).collect();
    let text = format!(
        "# What a ticket holder sees\n\n\
         Generated by `cargo test --test it -- --ignored transcript` against a real Synapse: the\n\
         room's events as the ticket holder's client receives them, for a reservation that opens\n\
         6 s before its start (reminder 4 s before, closing warning 2 s before the archive), goes\n\
         live, ends, and is archived (`read_only`). In production the same happens over\n\
         minutes and hours. `{}` is Foyer's bot, `fan…` the ticket holder.\n\n\
         | time | who | what |\n|---|---|---|\n{}\n",
        foyer.slot.sender_localpart,
        lines.join("\n")
    );
    println!("{text}");
    std::fs::write(crate::common::repo_root().join("docs/ticket-holder-view.md"), text).expect("write transcript");
}
