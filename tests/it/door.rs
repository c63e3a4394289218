//! Nothing from the Matrix side jams Foyer: a member's hostile event, holders who cannot
//! be invited, a half-created room, a flood of knocks. Against a real Synapse, with
//! users acting through the client-server API.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, open_reservation, sqlite_exec},
    random_token,
    synapse::Synapse,
    unique,
    users::TestUser,
};

/// A reservation whose room is open now (it started a minute ago, lasts an hour), with no
/// stream link, so that the room's first steps after its creation are the invites.
/// `{"n":{"n":…{"n":"deep"}…}}`, `depth` objects deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!("deep"), |inner, _| json!({ "n": inner }))
}

#[tokio::test]
async fn a_members_deeply_nested_event_never_stops_the_transactions_behind_it() {
    // Synapse takes client events nested about 124 levels deep; inside a transaction
    // (object, events, event, content) that is past serde_json's 128. Answering that
    // transaction 400 made Synapse retry it for ever, and Foyer heard nothing more.
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (alice, bob) = (hs.create_user("alice").await, hs.create_user("bob").await);
    let id = unique("deep");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t1", &alice.user_id), ("t2", &bob.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    alice.join_once_invited(&room, Duration::from_secs(10)).await;

    // The deepest content Synapse accepts, at least 124 deep (below `content`).
    let send = |depth: usize| {
        let alice = alice.clone();
        let room = room.clone();
        async move {
            let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(&room), random_token());
            let content = json!({"msgtype": "m.text", "body": "deep", "x": nested(depth)});
            alice.request(reqwest::Method::PUT, &path, Some(content)).await
        }
    };
    let mut depth = 130;
    let sent = loop {
        let (status, body) = send(depth).await;
        if status == 200 {
            break depth;
        }
        assert!(depth > 124, "Synapse refused content 124 deep: {status} {body}");
        depth -= 1;
    };
    eprintln!("Synapse accepted content {sent} objects deep");
    assert!(sent + 1 + 4 > 128, "the transaction holding it is past serde_json's depth limit");

    bob.join_once_invited(&room, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(30), "bob's join recorded after the deep event", || async {
        (foyer.reservation(&id).await.1["members"]["joined"] == 2).then_some(())
    })
    .await;
    assert!(foyer.log().contains("transaction accepted"), "{}", foyer.log());
}

#[tokio::test]
async fn a_holder_who_cannot_be_invited_holds_back_nobody() {
    // One ticket for a server that does not exist (a typo: every invite takes seconds and
    // ends in 502), one for a local user who does not exist, one for alice. Synapse takes
    // an invite for a user who does not exist; its admin API (synapse_admin.token) tells.
    let hs = Synapse::shared();
    let admin = hs.create_admin().await;
    let token = admin.access_token.clone();
    let foyer = TestFoyer::start_with(move |yaml| yaml + &format!("synapse_admin:\n  token: {token}\n"), &[]).await;
    let (alice, carol) = (hs.create_user("alice").await, hs.create_user("carol").await);
    let ghost = format!("@ghost-{}:localhost", random_token()[..8].to_lowercase());
    let remote = "@bob:unreachable.invalid";
    let id = unique("door");
    foyer.grant(&id, &[("t-remote", remote), ("t-ghost", &ghost), ("t-alice", &alice.user_id)]).await;
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    let bot = TestUser::bot(&foyer.slot);

    // Alice's invite follows the room's creation at once (Synapse's own clock for both).
    let state = eventually(Duration::from_secs(10), "alice's invite", || async {
        let state = bot.room_state(&room).await.expect("the room's state, as the bot sees it");
        let invited = state.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id.as_str());
        invited.then_some(state)
    })
    .await;
    let ts = |kind: &str, key: &str| {
        let event = state.iter().find(|e| e["type"] == kind && e["state_key"] == key).expect(kind);
        event["origin_server_ts"].as_i64().expect("origin_server_ts")
    };
    let gap = ts("m.room.member", &alice.user_id) - ts("m.room.create", "");
    eprintln!("alice invited {gap} ms after the room's creation");
    assert!(gap < 2_000, "alice waited {gap} ms behind holders who cannot be invited");
    alice.join_once_invited(&room, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), "the opening notice", || async {
        alice.notices(&room).await.iter().any(|n| n.contains("is open")).then_some(())
    })
    .await;

    // Both failures are counted and named; the remote one takes its seconds.
    eventually(Duration::from_secs(60), "two holders counted as uninvitable", || async {
        (foyer.reservation(&id).await.1["tickets"]["uninvitable"] == 2).then_some(())
    })
    .await;
    let tickets = format!("/api/v1/reservations/{id}/tickets");
    let (status, listed) = foyer.request(reqwest::Method::GET, &tickets, Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 200, "{listed}");
    let by_id = |ticket: &str| {
        listed["tickets"].as_array().and_then(|t| t.iter().find(|t| t["ticket_id"] == ticket)).cloned().expect(ticket)
    };
    assert_eq!(by_id("t-alice")["state"], "bound", "{listed}");
    assert_eq!(by_id("t-alice")["last_invite_error"], Value::Null, "{listed}");
    for ticket in ["t-remote", "t-ghost"] {
        assert_eq!(by_id(ticket)["state"], "uninvitable", "{listed}");
        assert!(by_id(ticket)["last_invite_error"].as_str().is_some_and(|e| !e.is_empty()), "{listed}");
    }

    // The status page names them for the operator.
    let page = foyer
        .http
        .get(format!("{}/status", foyer.base_url))
        .bearer_auth(&foyer.slot.api_token)
        .send()
        .await
        .expect("status page")
        .text()
        .await
        .expect("status page text");
    assert!(page.contains("2 cannot be invited") && page.contains(remote) && page.contains(&ghost), "{page}");

    // A ticket granted now is invited at once: the failing holders wait for their retry.
    foyer.grant(&id, &[("t-carol", &carol.user_id)]).await;
    carol.join_once_invited(&room, Duration::from_secs(10)).await;
    let log = foyer.log();
    assert!(!log.contains("lifecycle step failed"), "no holder failed the reservation:\n{log}");
}

#[tokio::test]
async fn a_half_created_room_whose_creator_is_gone_is_replaced_in_seconds() {
    // An instance that began createRoom and died, and now holds no lease: the half-made
    // room holding the alias can only be finished by a request still running in Synapse,
    // which takes seconds, not the minute Foyer waits when the creator may be alive.
    let mut foyer = TestFoyer::start_with(|yaml| yaml, &[("FOYER_FAILPOINTS", "worker_paused")]).await;
    let hs = Synapse::shared();
    let (owner, holder) = (hs.create_user("owner").await, hs.create_user("holder").await);
    let id = unique("gone");
    let broken = foyer.squat_alias(&owner, &id).await;
    let bot = TestUser::bot(&foyer.slot);
    let path = format!("/_matrix/client/v3/rooms/{}/leave", enc(&broken));
    assert_eq!(bot.request(reqwest::Method::POST, &path, Some(json!({}))).await.0, 200);
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t1", &holder.user_id)]).await;
    let began = Utc::now().timestamp_millis();
    sqlite_exec(
        &foyer.dir().join("foyer.db"),
        &format!(
            "UPDATE lifecycle SET create_began_by = 'foyer-1-dead', create_began_at = {began} WHERE reservation_id = '{id}'"
        ),
    );
    foyer.kill_and_restart().await;

    let room = eventually(Duration::from_secs(40), "a room other than the half-made one", || async {
        let room = foyer.reservation(&id).await.1["room_id"].as_str().map(str::to_owned)?;
        (room != broken).then_some(room)
    })
    .await;
    holder.join_once_invited(&room, Duration::from_secs(10)).await;
    let log = foyer.log();
    let waits: Vec<u64> =
        log.lines().filter_map(|l| l.split("waiting up to ").nth(1)?.split(' ').next()?.parse().ok()).collect();
    assert!(!waits.is_empty() && waits.iter().all(|w| *w <= 5), "waited only seconds: {waits:?}\n{log}");
}

#[tokio::test]
async fn a_flood_of_knocks_is_refused_within_a_budget_and_the_rest_left_waiting() {
    // Each refusal is a kick that Synapse does not rate-limit for the bot: past the budget
    // (ten a minute from one server) knocks are left unanswered. They grant nothing.
    let foyer = TestFoyer::start_with(|yaml| yaml + "rooms:\n  join_rule: knock\n", &[]).await;
    let hs = Synapse::shared();
    let id = unique("flood");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    let knock = format!("/_matrix/client/v3/knock/{}", enc(&foyer.alias(&id)));
    let mut strangers = Vec::new();
    for _ in 0..13 {
        strangers.push(hs.create_user("stranger").await);
    }
    // All within the budget's minute: the users exist before the first knock.
    for stranger in &strangers {
        let (status, body) = stranger.request(reqwest::Method::POST, &knock, Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
    }
    let bot = TestUser::bot(&foyer.slot);
    let memberships = || async {
        let mut counts = (0, 0);
        for s in &strangers {
            let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&s.user_id));
            match bot.get(&path).await.1["membership"].as_str() {
                Some("leave") => counts.0 += 1,
                Some("knock") => counts.1 += 1,
                _ => {}
            }
        }
        counts
    };
    eventually(Duration::from_secs(30), "ten knocks refused", || async { (memberships().await.0 == 10).then_some(()) })
        .await;
    // The rest are seen and set aside: the log says so for each of the three.
    eventually(Duration::from_secs(30), "three knocks left unanswered", || async {
        (foyer.log().matches("knock left unanswered").count() == 3).then_some(())
    })
    .await;
    assert_eq!(memberships().await, (10, 3), "no kick beyond the budget");
    for s in &strangers {
        assert_ne!(s.join(&room).await.0, 200, "a knock grants nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_posted_just_before_a_crash_is_posted_once_across_a_homeserver_restart() {
    // Synapse deduplicates a repeated transaction id only while it remembers it, in
    // memory: Foyer dying between posting and recording, then a Synapse restart, used to
    // post the notice twice (seen in the chaos test).
    let synapse = Synapse::dedicated(1);
    let mut foyer = TestFoyer::start_on(&synapse).await;
    let fan = synapse.create_user("fan").await;
    let id = unique("once");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t1", &fan.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    fan.join_once_invited(&room, Duration::from_secs(10)).await;
    let live_notices = || async { fan.notices(&room).await.iter().filter(|n| n.contains("is live now")).count() };

    // Foyer posts the live notice and dies before recording it; Synapse forgets.
    foyer.kill_and_restart_with(&[("FOYER_FAILPOINTS", "after_notice")], true).await;
    foyer.accept("stream.started", json!({"reservation_id": id})).await;
    let code = foyer.wait_exit(Duration::from_secs(30)).await;
    assert_ne!(code, 0, "the failpoint aborted Foyer:\n{}", foyer.log());
    assert_eq!(live_notices().await, 1, "posted before the crash");
    tokio::task::block_in_place(|| {
        synapse.stop();
        synapse.start_again();
    });
    foyer.restart(&[]);
    foyer.wait_ready().await;

    eventually(Duration::from_secs(30), "the live notice step done again", || async {
        let again = foyer.log().contains("not posted again") || live_notices().await > 1;
        again.then_some(())
    })
    .await;
    assert_eq!(live_notices().await, 1, "{:?}", fan.notices(&room).await);
}
