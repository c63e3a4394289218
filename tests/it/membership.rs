//! Who gets in and who is shown out, against a real Synapse, with users acting through
//! the client-server API.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, open_reservation},
    synapse::Synapse,
    unique,
    users::TestUser,
};

/// `user`'s membership event in the room, as the bot sees it (`null` when there is none).
async fn membership(foyer: &TestFoyer, room_id: &str, user: &TestUser) -> Value {
    TestUser::bot(&foyer.slot).member_event(room_id, &user.user_id).await.unwrap_or_default()
}

/// When `user`'s current membership event in the room was made (its timestamp on the
/// homeserver, whose clock is this machine's).
async fn membership_time(foyer: &TestFoyer, room_id: &str, user: &TestUser) -> chrono::DateTime<Utc> {
    let state = TestUser::bot(&foyer.slot).room_state(room_id).await.expect("the room's state, as the bot sees it");
    let event = state.iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == user.user_id.as_str());
    let ts = event.and_then(|e| e["origin_server_ts"].as_i64()).unwrap_or_else(|| panic!("no membership: {state:?}"));
    chrono::DateTime::from_timestamp_millis(ts).expect("a timestamp")
}

async fn wait_membership(foyer: &TestFoyer, room_id: &str, user: &TestUser, want: &str) -> Value {
    eventually(Duration::from_secs(10), &format!("{} to be {want}", user.user_id), || async {
        let m = membership(foyer, room_id, user).await;
        (m["membership"] == want).then_some(m)
    })
    .await
}

#[tokio::test]
async fn late_tickets_are_invited_and_revocations_kick_unless_another_ticket_remains() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (alice, bob, carol) =
        (hs.create_user("alice").await, hs.create_user("bob").await, hs.create_user("carol").await);
    let id = unique("door");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("a1", &alice.user_id), ("b1", &bob.user_id), ("b2", &bob.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(15)).await;
    alice.join_once_invited(&room, Duration::from_secs(10)).await;
    bob.join_once_invited(&room, Duration::from_secs(10)).await;

    // From the moment the ticket is sent to the invite on the homeserver (its event's
    // time), not to the moment this test's polling sees it.
    let granted = Utc::now();
    foyer.grant(&id, &[("c1", &carol.user_id)]).await;
    wait_membership(&foyer, &room, &carol, "invite").await;
    let took = membership_time(&foyer, &room, &carol).await - granted;
    eprintln!("late ticket invited in {} ms", took.num_milliseconds());
    assert!(took < chrono::Duration::seconds(2), "invited within 2 s, took {} ms", took.num_milliseconds());

    foyer.revoke(&id, &["a1", "b1"]).await;
    let kicked = wait_membership(&foyer, &room, &alice, "leave").await;
    assert_eq!(kicked["reason"], "Your ticket was revoked", "{kicked}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(membership(&foyer, &room, &bob).await["membership"], "join", "bob still holds b2");
    assert_eq!(bob.send_text(&room, "still here").await.0, 200);

    // Alice buys a new ticket: removed by Foyer, she is invited again (found by the chaos test).
    foyer.grant(&id, &[("a2", &alice.user_id)]).await;
    wait_membership(&foyer, &room, &alice, "invite").await;
    alice.join_once_invited(&room, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn host_changes_raise_and_lower_power() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (dj, mc) = (hs.create_user("dj").await, hs.create_user("mc").await);
    let id = unique("hosts");
    foyer.accept("reservation.created", open_reservation(&id, &[&dj.user_id], 1)).await;
    let room = foyer.room_id(&id, Duration::from_secs(15)).await;
    dj.join_once_invited(&room, Duration::from_secs(10)).await;
    let bot = TestUser::bot(&foyer.slot);
    assert_eq!(bot.state(&room, "m.room.power_levels").await.unwrap()["users"][&dj.user_id], 50);

    foyer.accept("reservation.updated", open_reservation(&id, &[&mc.user_id], 2)).await;
    mc.join_once_invited(&room, Duration::from_secs(10)).await; // the new host is invited
    let levels = eventually(Duration::from_secs(10), "the new power levels", || async {
        let levels = bot.state(&room, "m.room.power_levels").await?;
        (levels["users"][&mc.user_id] == 50).then_some(levels)
    })
    .await;
    assert!(levels["users"].get(&dj.user_id).is_none(), "the removed host is back to 0: {levels}");
}

#[tokio::test]
async fn knocks_from_holders_get_in_and_others_are_refused() {
    let foyer = TestFoyer::start_with(|yaml| yaml + "rooms:\n  join_rule: knock\n", &[]).await;
    let hs = Synapse::shared();
    let (alice, eve) = (hs.create_user("alice").await, hs.create_user("eve").await);
    let id = unique("knock");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("a1", &alice.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(15)).await;
    // Alice declines the automatic invite, then changes her mind and knocks.
    wait_membership(&foyer, &room, &alice, "invite").await;
    let leave = format!("/_matrix/client/v3/rooms/{}/leave", enc(&room));
    assert_eq!(alice.request(reqwest::Method::POST, &leave, Some(json!({}))).await.0, 200);
    wait_membership(&foyer, &room, &alice, "leave").await;
    let knock = format!("/_matrix/client/v3/knock/{}", enc(&foyer.alias(&id)));
    let (status, body) = alice.request(reqwest::Method::POST, &knock, Some(json!({"reason": "let me in"}))).await;
    assert_eq!(status, 200, "{body}");
    alice.join_once_invited(&room, Duration::from_secs(10)).await;
    assert_eq!(alice.send_text(&room, "in through the knock").await.0, 200);

    let (status, body) = eve.request(reqwest::Method::POST, &knock, Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let refused = wait_membership(&foyer, &room, &eve, "leave").await;
    assert!(refused["reason"].as_str().unwrap_or_default().contains("ticket"), "{refused}");
    assert_ne!(eve.join(&room).await.0, 200, "eve cannot join");
}

#[tokio::test]
async fn the_alias_query_opens_a_room_that_should_exist() {
    // The worker is paused: only the alias query can open the room.
    let foyer = TestFoyer::start_with(|yaml| yaml, &[("FOYER_FAILPOINTS", "worker_paused")]).await;
    let alice = Synapse::shared().create_user("alice").await;
    let id = unique("ondemand");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(foyer.reservation(&id).await.1["room_id"], Value::Null, "not opened by the worker");
    let room = alice.resolve_alias(&foyer.alias(&id)).await.expect("the alias resolves on first try");
    assert_eq!(foyer.reservation(&id).await.1["room_id"], room.as_str());
    assert!(foyer.log().contains("opening on demand"), "{}", foyer.log());
    assert_eq!(alice.resolve_alias(&foyer.alias("not-a-reservation")).await, None);
}

#[tokio::test]
async fn guests_of_hosts_stay_and_gatecrashers_are_removed() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (host, guest, mallory) =
        (hs.create_user("host").await, hs.create_user("guest").await, hs.create_user("mallory").await);
    let id = unique("guest");
    foyer.accept("reservation.created", open_reservation(&id, &[&host.user_id], 1)).await;
    let room = foyer.room_id(&id, Duration::from_secs(15)).await;
    host.join_once_invited(&room, Duration::from_secs(10)).await;
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
    let (status, body) = host.request(reqwest::Method::POST, &invite, Some(json!({"user_id": guest.user_id}))).await;
    assert_eq!(status, 200, "a host may invite: {body}");
    guest.join_once_invited(&room, Duration::from_secs(10)).await;

    // Someone opens the door by hand; a stranger walks in and is shown out.
    let rules = format!("/_matrix/client/v3/rooms/{}/state/m.room.join_rules/", enc(&room));
    let (status, body) = host.request(reqwest::Method::PUT, &rules, Some(json!({"join_rule": "public"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mallory.join(&room).await.0, 200);
    let removed = wait_membership(&foyer, &room, &mallory, "leave").await;
    assert_eq!(removed["reason"], "This chat is for ticket holders", "{removed}");
    assert_eq!(membership(&foyer, &room, &guest).await["membership"], "join", "the host's guest stays");
    // Foyer logs the removal once the homeserver has answered the kick, maybe after we saw it.
    eventually(Duration::from_secs(10), "the removal in the log", || async {
        foyer.log().contains("removed from the room").then_some(())
    })
    .await;
}

#[tokio::test]
async fn member_counts_match_synapse_after_joins_leaves_and_kicks() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let mut users = Vec::new();
    for _ in 0..5 {
        users.push(hs.create_user("fan").await);
    }
    let id = unique("counts");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    let tickets: Vec<(String, &TestUser)> = users.iter().enumerate().map(|(i, u)| (format!("t{i}"), u)).collect();
    let refs: Vec<(&str, &str)> = tickets.iter().map(|(t, u)| (t.as_str(), u.user_id.as_str())).collect();
    foyer.grant(&id, &refs).await;
    let room = foyer.room_id(&id, Duration::from_secs(15)).await;
    for user in &users[..4] {
        user.join_once_invited(&room, Duration::from_secs(10)).await;
    }
    let leave = format!("/_matrix/client/v3/rooms/{}/leave", enc(&room));
    assert_eq!(users[1].request(reqwest::Method::POST, &leave, Some(json!({}))).await.0, 200);
    foyer.revoke(&id, &["t2"]).await;
    wait_membership(&foyer, &room, &users[2], "leave").await;
    // User 4 only ever gets the invite; it may come after the others' joins.
    wait_membership(&foyer, &room, &users[4], "invite").await;

    // Synapse: users 0 and 3 joined, user 4 invited.
    let bot = TestUser::bot(&foyer.slot);
    let (status, members) = bot.get(&format!("/_matrix/client/v3/rooms/{}/members", enc(&room))).await;
    assert_eq!(status, 200, "{members}");
    let count = |m: &str| {
        members["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["content"]["membership"] == m && e["state_key"] != bot.user_id.as_str())
            .count() as u64
    };
    let synapse = json!({"invited": count("invite"), "joined": count("join")});
    assert_eq!(synapse, json!({"invited": 1, "joined": 2}));
    eventually(Duration::from_secs(10), "the read API to match Synapse", || async {
        let members = foyer.reservation(&id).await.1["members"].clone();
        (members["invited"] == synapse["invited"] && members["joined"] == synapse["joined"]).then_some(())
    })
    .await;
}

/// A reservation's `chat.moderators` are made moderators as hosts are (docs/moderation.md):
/// invited and at power 50, and back to 0 when a `reservation.updated` drops them, at once
/// in an open room.
#[tokio::test]
async fn moderators_are_raised_and_lowered_as_hosts_are() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (dj, modo) = (hs.create_user("dj").await, hs.create_user("modo").await);
    let id = unique("mods");
    let with_moderators = |revision: u64, moderators: &[&str]| {
        let mut reservation = open_reservation(&id, &[&dj.user_id], revision);
        reservation["chat"] = serde_json::json!({ "moderators": moderators });
        reservation
    };
    foyer.accept("reservation.created", with_moderators(1, &[&modo.user_id])).await;
    let room = foyer.room_id(&id, Duration::from_secs(15)).await;
    modo.join_once_invited(&room, Duration::from_secs(10)).await; // invited as a host is
    let bot = TestUser::bot(&foyer.slot);
    let levels = bot.state(&room, "m.room.power_levels").await.unwrap();
    assert_eq!((&levels["users"][&dj.user_id], &levels["users"][&modo.user_id]), (&50.into(), &50.into()), "{levels}");

    foyer.accept("reservation.updated", with_moderators(2, &[])).await;
    let levels = eventually(Duration::from_secs(10), "the moderator lowered", || async {
        let levels = bot.state(&room, "m.room.power_levels").await?;
        levels["users"].get(&modo.user_id).is_none().then_some(levels)
    })
    .await;
    assert_eq!(levels["users"][&dj.user_id], 50, "the host stays: {levels}");
}

/// A host's ban of a Matrix member in Element bars the ticket they hold, as a web user's
/// ban does (docs/moderation.md): a web session for it is refused, and whoever holds it
/// next is not invited.
#[tokio::test]
async fn a_members_ban_bars_their_ticket_from_the_show() {
    use crate::common::webchat::{ChatClient, mint, now};
    let foyer = TestFoyer::start().await;
    let (id, room) = a_holder_banned(&foyer, "memberban").await;
    let chat = ChatClient::of(&foyer);
    let claims = serde_json::json!({"aud": "foyer", "iat": now(), "exp": now() + 600, "rid": id, "tid": "t-troll", "name": "Troll"});
    let token = serde_json::json!({"token": mint(crate::common::foyer::WEBCHAT_SECRET, claims)});
    eventually(Duration::from_secs(30), "the troll's ticket barred from the web chat", || async {
        let (status, answer, _) = chat.session(&token).await;
        (status == 403 && answer["errcode"] == "FOYER_VIEWER_BANNED").then_some(())
    })
    .await;
    the_barred_ticket_invites_nobody(&foyer, &id, &room).await;
}

/// Without the web chat configured, a member's ban by a host still bars the tickets they
/// hold: the ticket's next holder is not invited.
#[tokio::test]
async fn a_members_ban_bars_their_ticket_without_the_web_chat_too() {
    let without_webchat = |yaml: String| yaml[..yaml.find("webchat:").expect("a webchat section")].to_owned();
    let foyer = TestFoyer::start_with(without_webchat, &[]).await;
    let (id, room) = a_holder_banned(&foyer, "banplain").await;
    eventually(Duration::from_secs(30), "the ban in the moderation record", || async {
        let path = format!("/api/v1/reservations/{id}/moderation");
        let (_, record) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
        record["entries"].as_array()?.iter().any(|e| e["action"] == "ban").then_some(())
    })
    .await;
    the_barred_ticket_invites_nobody(&foyer, &id, &room).await;
}

/// A show open now, hosted by a fresh user who bans the holder of its ticket `t-troll` in
/// the room; its id and room.
async fn a_holder_banned(foyer: &TestFoyer, name: &str) -> (String, String) {
    let hs = Synapse::shared();
    let (dj, troll) = (hs.create_user("dj").await, hs.create_user("troll").await);
    let id = unique(name);
    foyer.accept("reservation.created", open_reservation(&id, &[&dj.user_id], 1)).await;
    foyer.grant(&id, &[("t-troll", &troll.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(15)).await;
    dj.join_once_invited(&room, Duration::from_secs(10)).await;
    troll.join_once_invited(&room, Duration::from_secs(10)).await;
    dj.ban(&room, &troll.user_id).await;
    (id, room)
}

/// The barred ticket moves on, and a witness gets one at once: the witness is invited,
/// the ticket's new holder is not. The planner invites holders in user ID order (a
/// BTreeSet) in one round, and `@next…` sorts before `@witness…`: once the witness is
/// invited, the barred ticket's new holder would have been already.
async fn the_barred_ticket_invites_nobody(foyer: &TestFoyer, id: &str, room: &str) {
    let hs = Synapse::shared();
    let (next, witness) = (hs.create_user("next").await, hs.create_user("witness").await);
    foyer.grant(id, &[("t-troll", &next.user_id), ("t-witness", &witness.user_id)]).await;
    eventually(Duration::from_secs(30), "the witness's invite", || async {
        witness.invited_rooms().await.iter().any(|r| r == room).then_some(())
    })
    .await;
    assert!(!next.invited_rooms().await.iter().any(|r| r == room), "the barred ticket's next holder was invited");
}
