//! A channel's followers (docs/followers.md): let into the channel's space and
//! announcements room, reminded once each across a restart, told when a show goes live,
//! taken out; and `chat.access: channel`, where the space's members join without a
//! ticket, and `chat.access: public`, which anyone joins and which is archived on time.
//! Against a real Synapse, users acting through the client-server API.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::common::{
    eventually,
    foyer::TestFoyer,
    random_token,
    synapse::{SERVER_NAME, Synapse},
    unique,
    users::TestUser,
};

fn at(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A reservation of channel `channel` starting `in_secs` from now, for an hour.
fn show(id: &str, channel: &str, in_secs: i64) -> Value {
    let starts_at = Utc::now() + chrono::Duration::seconds(in_secs);
    json!({
        "reservation_id": id, "revision": 1, "title": format!("Show {id}"),
        "starts_at": at(starts_at), "ends_at": at(starts_at + chrono::Duration::hours(1)),
        "channel": {"id": channel, "name": format!("Channel {channel}")},
    })
}

/// The channel's announcements room, once Foyer has made it.
async fn announcements_room(foyer: &TestFoyer, follower: &TestUser, channel: &str) -> String {
    let alias = format!("#{}+{channel}+announcements:{SERVER_NAME}", foyer.slot.alias_prefix);
    eventually(Duration::from_secs(30), "the channel's announcements room", || async {
        follower.resolve_alias(&alias).await
    })
    .await
}

/// The channel's space, once Foyer has made it.
async fn space(foyer: &TestFoyer, follower: &TestUser, channel: &str) -> String {
    let alias = format!("#{}+{channel}:{SERVER_NAME}", foyer.slot.alias_prefix);
    eventually(Duration::from_secs(30), "the channel's space", || async { follower.resolve_alias(&alias).await }).await
}

fn count(notices: &[String], needle: &str) -> usize {
    notices.iter().filter(|n| n.contains(needle)).count()
}

/// Waits until the room shows `n` notices containing `needle`; returns them all.
async fn wait_notices(user: &TestUser, room: &str, needle: &str, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(40), &format!("{n} notices with {needle:?}"), || async {
        let all = user.notices(room).await;
        (count(&all, needle) >= n).then_some(all)
    })
    .await
}

#[tokio::test]
async fn a_follower_is_reminded_once_each_across_a_restart_told_live_on_the_ingest_hook_and_taken_out() {
    let token = random_token();
    let yaml = format!("rooms:\n  reminders: [30s, 15s]\n  closing_warning: 0s\ningest:\n  token: {token}\n");
    let mut foyer = TestFoyer::start_with(move |y| y + &yaml, &[]).await;
    let fan = Synapse::shared().create_user("follower").await;
    let channel = unique("chan");
    foyer.accept("follower.added", json!({"channel_id": channel, "user_id": fan.user_id})).await;
    let room = announcements_room(&foyer, &fan, &channel).await;
    fan.join_once_invited(&room, Duration::from_secs(30)).await;
    let space = space(&foyer, &fan, &channel).await;
    assert!(fan.invited_rooms().await.contains(&space), "the follower is invited to the channel's space too");

    // Starting in 40 s: reminded 30 s and 15 s before.
    let key = format!("key_{}", random_token());
    let id = unique("fshow");
    let mut reservation = show(&id, &channel, 40);
    reservation["ingest"] = json!({"stream_key": key});
    reservation["stream_url"] = json!("https://watch.example.org/fshow");
    foyer.accept("reservation.created", reservation).await;
    wait_notices(&fan, &room, "starts in 30 seconds", 1).await;
    foyer.kill_and_restart().await;
    let all = wait_notices(&fan, &room, "starts in 15 seconds", 1).await;
    assert_eq!(count(&all, "starts in 30 seconds"), 1, "{all:?}");

    // The streaming server's start hook: "live now", with the room's and the watch page's links.
    let hook = json!({
        "server_id": "vid-1", "service_id": "s1", "action": "on_publish", "client_id": "c1", "ip": "127.0.0.1",
        "vhost": "__defaultVhost__", "app": "live", "tcUrl": "rtmp://127.0.0.1/live", "stream": key,
        "param": "", "stream_url": format!("/live/{key}"), "stream_id": "vid-2"
    });
    let url = format!("{}/ingest/v1/rtmp?token={token}", foyer.base_url);
    let resp = foyer.http.post(url).json(&hook).send().await.expect("the start hook");
    assert_eq!(resp.status(), 200);
    let all = wait_notices(&fan, &room, "is live now", 1).await;
    let live = all.iter().find(|n| n.contains("is live now")).expect("live");
    assert!(live.contains("https://matrix.to/#/") && live.contains("https://watch.example.org/fshow"), "{live}");
    // Each went once.
    let all = fan.notices(&room).await;
    assert_eq!((count(&all, "starts in 30"), count(&all, "starts in 15"), count(&all, "live now")), (1, 1, 1));

    foyer.accept("follower.removed", json!({"channel_id": channel, "user_id": fan.user_id})).await;
    // Out of both rooms: nothing of the channel reaches them any more.
    eventually(Duration::from_secs(30), "the follower taken out of both rooms", || async {
        let (_, joined) = fan.get("/_matrix/client/v3/joined_rooms").await;
        let joined = joined["joined_rooms"].as_array().cloned().unwrap_or_default();
        let in_room = joined.iter().any(|r| r.as_str() == Some(room.as_str()));
        let invited_to_space = fan.invited_rooms().await.contains(&space);
        (!in_room && !invited_to_space).then_some(())
    })
    .await;
    assert_eq!(fan.membership_of(&room, &fan.user_id).await.as_deref(), Some("leave"));
}

#[tokio::test]
async fn in_a_channel_room_a_member_of_the_channels_space_joins_without_a_ticket_and_a_stranger_cannot() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (fan, stranger, holder) =
        (hs.create_user("follower").await, hs.create_user("stranger").await, hs.create_user("holder").await);
    let channel = unique("open");
    foyer.accept("follower.added", json!({"channel_id": channel, "user_id": fan.user_id})).await;
    let space = space(&foyer, &fan, &channel).await;
    fan.join_once_invited(&space, Duration::from_secs(30)).await;

    let id = unique("cshow");
    let mut reservation = show(&id, &channel, -60);
    reservation["chat"] = json!({"access": "channel"});
    foyer.accept("reservation.created", reservation).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    let bot = TestUser::bot(&foyer.slot);
    eventually(Duration::from_secs(30), "the room's join rule restricted to the space", || async {
        let rule = bot.state(&room, "m.room.join_rules").await?;
        (rule["join_rule"] == "restricted" && rule["allow"][0]["room_id"] == space.as_str()).then_some(())
    })
    .await;
    let (status, body) = fan.join(&room).await;
    assert_eq!(status, 200, "a member of the channel's space joins without a ticket: {body}");
    let (status, body) = stranger.join(&room).await;
    assert_eq!(status, 403, "a stranger cannot: {body}");

    // The door keeps whoever came in: the round that lets a later holder in would have
    // removed the follower first.
    foyer.grant(&id, &[("t1", &holder.user_id)]).await;
    holder.join_once_invited(&room, Duration::from_secs(30)).await;
    assert_eq!(bot.membership_of(&room, &fan.user_id).await.as_deref(), Some("join"));
    // The open room's link reached the channel's followers.
    let news = announcements_room(&foyer, &fan, &channel).await;
    fan.join_once_invited(&news, Duration::from_secs(30)).await;
    wait_notices(&fan, &news, "is open to the channel's followers", 1).await;
}

#[tokio::test]
async fn a_public_room_lets_anyone_in_without_a_ticket_and_is_still_archived_on_time() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (fan, passer_by, latecomer) =
        (hs.create_user("follower").await, hs.create_user("passerby").await, hs.create_user("latecomer").await);
    let channel = unique("free");
    foyer.accept("follower.added", json!({"channel_id": channel, "user_id": fan.user_id})).await;

    // Open already; it ends 25 s from now and is archived a second after that.
    let id = unique("pshow");
    let mut reservation = show(&id, &channel, -60);
    reservation["ends_at"] = json!(at(Utc::now() + chrono::Duration::seconds(25)));
    reservation["chat"] = json!({"access": "public", "close_after_seconds": 1});
    foyer.accept("reservation.created", reservation).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    let bot = TestUser::bot(&foyer.slot);
    eventually(Duration::from_secs(20), "the room's join rule public", || async {
        (bot.state(&room, "m.room.join_rules").await?["join_rule"] == "public").then_some(())
    })
    .await;
    let (status, body) = passer_by.join(&room).await;
    assert_eq!(status, 200, "anyone joins a public room without a ticket: {body}");
    let (status, body) = passer_by.send_text(&room, "hello from nowhere").await;
    assert_eq!(status, 200, "{body}");
    // The channel's followers were told where it is.
    let news = announcements_room(&foyer, &fan, &channel).await;
    fan.join_once_invited(&news, Duration::from_secs(30)).await;
    wait_notices(&fan, &news, "is open to everyone", 1).await;

    // At archives_at the door closes like any other room's: who came in can no longer
    // post, and nobody new gets in.
    crate::lifecycle::watch_the_archive(&foyer, &id, &passer_by, &room).await;
    assert_eq!(bot.state(&room, "m.room.join_rules").await.expect("the join rule")["join_rule"], "invite");
    let (status, body) = latecomer.join(&room).await;
    assert_eq!(status, 403, "nobody joins an archived room: {body}");
}
