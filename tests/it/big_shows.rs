//! Doors open at scale (README "Big shows"): with `auto_join: local`, Foyer joins local
//! ticket holders itself through Synapse's admin join, paced under the room's join
//! limit, as are web fans' users. The shared Synapse keeps its default `rc_joins_per_room` (one a
//! second, ten at once): only the per-user and other limits are raised
//! (tests/common/synapse.rs).

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::common::{
    enc, eventually,
    foyer::TestFoyer,
    synapse::{SERVER_NAME, Synapse},
    unique,
    users::TestUser,
    webchat::{ChatClient, session_for},
};

/// A Foyer whose `synapse_admin.token` is a fresh server admin's (the doorkeeper), with
/// `rooms.auto_join` as given.
async fn foyer_with_doorkeeper(auto_join: &str) -> (TestFoyer, TestUser) {
    let keeper = Synapse::shared().create_admin().await;
    let token = keeper.access_token.clone();
    let foyer = TestFoyer::start_with(
        move |yaml| format!("{yaml}synapse_admin:\n  token: {token}\nrooms:\n  auto_join: {auto_join}\n"),
        &[],
    )
    .await;
    (foyer, keeper)
}

/// The room's joined members, as the bot reads them.
async fn joined(bot: &TestUser, room: &str) -> Vec<String> {
    let (status, body) = bot.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room))).await;
    assert_eq!(status, 200, "{body}");
    body["joined"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

fn at(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn sixty_local_holders_are_in_the_room_by_the_start_with_no_client_action_and_a_hosts_own_join_gets_through() {
    let (foyer, keeper) = foyer_with_doorkeeper("local").await;
    let hs = Synapse::shared();
    let host = hs.create_user("host").await;
    let mut holders = Vec::new();
    for _ in 0..60 {
        holders.push(hs.create_user("holder").await);
    }
    // 60 joins at the default pace (0.8 a second) take 75 s: the doors open 120 s before
    // the start.
    let id = unique("big");
    let starts_at = Utc::now() + chrono::Duration::seconds(120);
    let reservation = json!({
        "reservation_id": id, "revision": 1, "title": "Big show",
        "starts_at": at(starts_at), "ends_at": at(starts_at + chrono::Duration::hours(1)),
        "hosts": [host.user_id], "chat": {"open_before_seconds": 120},
    });
    foyer.accept("reservation.created", reservation).await;
    let tickets: Vec<(String, String)> =
        holders.iter().enumerate().map(|(i, h)| (format!("t{i}"), h.user_id.clone())).collect();
    let tickets: Vec<(&str, &str)> = tickets.iter().map(|(t, u)| (t.as_str(), u.as_str())).collect();
    foyer.grant(&id, &tickets).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    let bot = TestUser::bot(&foyer.slot);

    // In the middle of the doors, the host (invited, as hosts are) joins by themselves.
    let some_in = |n: usize| {
        let (bot, room) = (&bot, &room);
        async move { (joined(bot, room).await.len() >= n).then_some(()) }
    };
    eventually(Duration::from_secs(60), "20 holders joined by Foyer", || some_in(20)).await;
    let host_in = host.accept_invite(&room, &bot, Duration::from_secs(60)).await;
    println!("the host's own join during the doors: {:?}, {} refusals (429)", host_in.took, host_in.refusals);
    assert!(joined(&bot, &room).await.contains(&host.user_id));

    let everyone: Vec<String> = holders.iter().map(|h| h.user_id.clone()).collect();
    let all_in = eventually(Duration::from_secs(180), "all 60 holders in the room", || async {
        let now_in = joined(&bot, &room).await;
        everyone.iter().all(|u| now_in.contains(u)).then_some(now_in)
    })
    .await;
    // Each holder's join is the doorkeeper's doing, at the homeserver's time: none of them
    // asked, and the last was in before the start.
    let state = bot.room_state(&room).await.expect("the room's state");
    let mut last = 0;
    for holder in &holders {
        let event = state
            .iter()
            .find(|e| e["type"] == "m.room.member" && e["state_key"] == holder.user_id.as_str())
            .expect("a member event");
        assert_eq!(event["content"]["membership"], "join", "{event}");
        last = last.max(event["origin_server_ts"].as_i64().expect("origin_server_ts"));
    }
    let last = chrono::DateTime::from_timestamp_millis(last).expect("a time");
    println!("the last holder joined {} s before the start", (starts_at - last).num_milliseconds() as f64 / 1000.0);
    assert!(last <= starts_at, "the last holder joined at {last}, after the start {starts_at}");
    assert!(all_in.contains(&keeper.user_id), "the doorkeeper is a member");
    // The welcome notice is in the room each holder finds in their list.
    let notices = holders[0].notices(&room).await;
    assert!(!notices.is_empty(), "a welcome notice for the holders");
    // Foyer counted its joins.
    assert_eq!(foyer.metric("foyer_joins_total{kind=\"holder\",result=\"joined\"}").await, 60.0);
}

#[tokio::test]
async fn a_late_ticket_is_joined_on_arrival_and_a_holder_who_leaves_stays_out() {
    // Off in the config, asked for by the reservation itself.
    let (foyer, keeper) = foyer_with_doorkeeper("\"off\"").await;
    let hs = Synapse::shared();
    let (ann, cal) = (hs.create_user("aleaves").await, hs.create_user("clate").await);
    let id = unique("late");
    let mut reservation = crate::common::foyer::open_reservation(&id, &[], 1);
    reservation["chat"] = json!({"auto_join": "local"});
    foyer.accept("reservation.created", reservation).await;
    foyer.grant(&id, &[("t1", &ann.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    let bot = TestUser::bot(&foyer.slot);
    eventually(Duration::from_secs(30), "Ann joined by Foyer", || async {
        joined(&bot, &room).await.contains(&ann.user_id).then_some(())
    })
    .await;
    assert_eq!(foyer.reservation(&id).await.1["auto_join"], "local");
    // The doorkeeper's own joins into many rooms at once are not held to a user's limit.
    let path = format!("/_synapse/admin/v1/users/{}/override_ratelimit", enc(&keeper.user_id));
    let (status, limits) = keeper.get(&path).await;
    assert_eq!((status, limits), (200, json!({"messages_per_second": 0, "burst_count": 0})));

    // Ann leaves; once Foyer has heard so, Cal's ticket arrives. Cal's join is planned
    // after Ann's leave was recorded, in a round that would have joined Ann first (holders
    // are joined in order of their IDs, and hers comes first).
    let (status, body) = ann
        .request(reqwest::Method::POST, &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(30), "Foyer to hear that Ann left", || async {
        // The doorkeeper alone is joined now (the bot is not counted).
        let view = foyer.reservation(&id).await.1;
        (view["members"]["joined"] == 1).then_some(())
    })
    .await;
    foyer.grant(&id, &[("t2", &cal.user_id)]).await;
    eventually(Duration::from_secs(30), "Cal joined on arrival", || async {
        joined(&bot, &room).await.contains(&cal.user_id).then_some(())
    })
    .await;
    assert!(!joined(&bot, &room).await.contains(&ann.user_id), "Ann was joined again after she left");
    assert_eq!(ann.membership_of(&room, &ann.user_id).await.as_deref(), Some("leave"));
}

#[tokio::test]
async fn web_fans_joins_take_turns_and_a_first_message_past_ten_seconds_is_told_to_come_back() {
    let foyer = TestFoyer::start().await;
    let id = unique("webdoors");
    foyer.accept("reservation.created", crate::common::foyer::open_reservation(&id, &[], 1)).await;
    let tickets: Vec<(String, String)> =
        (0..14).map(|i| (format!("t{i}"), format!("@webfan{i}:{SERVER_NAME}"))).collect();
    let grants: Vec<(&str, &str)> = tickets.iter().map(|(t, u)| (t.as_str(), u.as_str())).collect();
    foyer.grant(&id, &grants).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    let mut sessions = Vec::new();
    for (ticket, _) in &tickets {
        sessions.push(session_for(&foyer, &id, ticket, &format!("Fan {ticket}")).await);
    }
    // Every fan's first message at once: each makes a web user that joins the room.
    let mut posts = tokio::task::JoinSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let (chat, session) = (ChatClient::of(&foyer), session.clone());
        posts.spawn(async move {
            let (status, answer, _) =
                chat.post_message(&session, &json!({"txn_id": "first", "body": format!("hi {i}")})).await;
            (session, status, answer)
        });
    }
    let answers = posts.join_all().await;
    let busy: Vec<&(String, u16, serde_json::Value)> = answers.iter().filter(|(_, status, _)| *status == 429).collect();
    let sent = answers.iter().filter(|(_, status, _)| *status == 200).count();
    println!("{sent} first messages sent, {} told the room is busy", busy.len());
    assert_eq!(sent + busy.len(), 14, "{answers:?}");
    assert!(sent >= 2 && !busy.is_empty(), "turns of 1.25 s fit about 9 joins in 10 s: {answers:?}");
    for (_, _, answer) in &busy {
        assert_eq!(answer["errcode"], "FOYER_ROOM_BUSY", "{answer}");
        assert!(answer["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0 && ms <= 20_000), "{answer}");
    }
    // The joins came one turn apart, by the homeserver's clock.
    let bot = TestUser::bot(&foyer.slot);
    let state = bot.room_state(&room).await.expect("the room's state");
    let mut joins: Vec<i64> = state
        .iter()
        .filter(|e| {
            e["type"] == "m.room.member"
                && e["content"]["membership"] == "join"
                && e["state_key"].as_str().is_some_and(|u| u.starts_with(&format!("@{}", foyer.slot.puppet_prefix)))
        })
        .map(|e| e["origin_server_ts"].as_i64().expect("origin_server_ts"))
        .collect();
    joins.sort_unstable();
    assert_eq!(joins.len(), sent);
    let span = joins.last().unwrap() - joins.first().unwrap();
    println!("{} web fans joined over {span} ms", joins.len());
    assert!(span >= (sent as i64 - 1) * 1000, "{joins:?}");
    // A fan told to come back is let in when they do: nothing is lost.
    let (session, _, _) = busy[0];
    let chat = ChatClient::of(&foyer);
    eventually(Duration::from_secs(60), "the busy fan's message sent on a later try", || async {
        (chat.post_message(session, &json!({"txn_id": "again", "body": "still here"})).await.0 == 200).then_some(())
    })
    .await;
}
