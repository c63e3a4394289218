//! Strangers' direct chats with the bot, against a real Synapse (contract §7: anyone may
//! open one to claim a ticket, and that is all it is for). The bot reads the room it was
//! invited to rather than trust the invite, leaves what is no chat of two, bounds the
//! chats of each user and of all together, answers claims only in direct chats, and
//! answers each room at a bounded pace.

use std::time::Duration;

use serde_json::json;

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, open_reservation},
    synapse::Synapse,
    unique,
    users::TestUser,
};

/// Waits until the bot's membership in `room`, as `member` of it sees it, is `want`.
async fn bot_membership(foyer: &TestFoyer, member: &TestUser, room: &str, want: &str) {
    let bot = foyer.slot.bot_user_id();
    eventually(Duration::from_secs(30), &format!("the bot's membership in {room} to be {want}"), || async {
        (member.membership_of(room, &bot).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_bot_leaves_a_public_room_marked_direct_at_once() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let opener = hs.create_user("publicdm").await;
    let room = opener.invite_to_direct_chat(&foyer.slot.bot_user_id(), "public_chat").await;
    bot_membership(&foyer, &opener, &room, "leave").await;
    eventually(Duration::from_secs(10), "the reason logged", || async {
        let log = foyer.log();
        (log.contains("left a room marked direct that is not a direct chat")
            && log.contains("anyone may join it without an invite"))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_bot_leaves_a_room_of_three_marked_direct_at_once() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let (opener, carol) = (hs.create_user("groupdm").await, hs.create_user("carol").await);
    let bot = foyer.slot.bot_user_id();
    // Marked direct, but carol is invited too (the invite's stripped state says nothing
    // of her).
    let body = json!({"invite": [carol.user_id, bot], "is_direct": true, "preset": "trusted_private_chat"});
    let (status, created) = opener.request(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(body)).await;
    assert_eq!(status, 200, "{created}");
    let room = created["room_id"].as_str().expect("room_id").to_owned();
    bot_membership(&foyer, &opener, &room, "leave").await;
    eventually(Duration::from_secs(10), "the reason logged", || async {
        foyer.log().contains("it has more than two members").then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_bot_leaves_a_direct_chat_that_grows_past_two() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let (opener, carol) = (hs.create_user("growing").await, hs.create_user("carol").await);
    let dm = opener.open_direct_chat(&foyer.slot.bot_user_id()).await;
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&dm));
    let (status, body) = opener.request(reqwest::Method::POST, &invite, Some(json!({"user_id": carol.user_id}))).await;
    assert_eq!(status, 200, "{body}");
    bot_membership(&foyer, &opener, &dm, "leave").await;
    eventually(Duration::from_secs(10), "the reason logged", || async {
        foyer.log().contains("it grew past two members").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_claim_outside_a_direct_chat_is_not_answered() {
    let hs = Synapse::shared();
    let admin = hs.create_user("dmadmin").await;
    let admin_id = admin.user_id.clone();
    let foyer = TestFoyer::start_with(move |yaml| yaml + &format!("admins: [\"{admin_id}\"]\n"), &[]).await;
    let stranger = hs.create_user("groupclaimer").await;
    let id = unique("groupclaim");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    let email = json!({"ticket_id": "t-1", "email": format!("{}@fans.example.org", unique("g").to_lowercase())});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email]})).await;
    let path = format!("/api/v1/reservations/{id}/tickets");
    let (_, listed) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
    let code = listed["tickets"][0]["claim"]["code"].as_str().expect("a code").to_owned();

    // An admin's room the bot joins, with a stranger in it: no direct chat.
    let bot = foyer.slot.bot_user_id();
    let room = admin.create_room(&[&bot, &stranger.user_id]).await;
    bot_membership(&foyer, &admin, &room, "join").await;
    stranger.join_once_invited(&room, Duration::from_secs(10)).await;
    let (status, sent) = stranger.send_text(&room, &format!("!claim {code}")).await;
    assert_eq!(status, 200, "{sent}");
    // The inbox is worked through in order: once the admin's later command is answered,
    // the claim was handled.
    let answer = admin.ask(&room, "!foyer help").await;
    assert!(answer.contains("Foyer admin commands"), "{answer}");
    let notices = admin.notices(&room).await;
    assert_eq!(notices.len(), 1, "only the admin's command is answered: {notices:?}");
    let (_, listed) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
    assert_eq!(listed["tickets"][0]["state"], "unclaimed", "{listed}");
}

#[tokio::test]
async fn a_user_has_at_most_three_direct_chats_open_with_the_bot() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let bot = foyer.slot.bot_user_id();
    let (fan, neighbour) = (hs.create_user("manychats").await, hs.create_user("neighbour").await);
    for _ in 0..3 {
        fan.open_direct_chat(&bot).await;
    }
    let fourth = fan.invite_to_direct_chat(&bot, "trusted_private_chat").await;
    bot_membership(&foyer, &fan, &fourth, "leave").await; // declined
    eventually(Duration::from_secs(10), "the refusal logged", || async {
        foyer.log().contains("declined a direct chat: the user has as many open as allowed").then_some(())
    })
    .await;
    // Counted per user, not per server: another fan of the same server still may.
    let dm = neighbour.open_direct_chat(&bot).await;
    assert!(neighbour.ask(&dm, "!claim").await.contains("followed by your claim code"));
}

#[tokio::test]
async fn all_direct_chats_together_are_bounded_and_the_longest_idle_ends_first() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start_with(|yaml| yaml, &[("FOYER_DIRECT_CHATS_MAX", "2")]).await;
    let bot = foyer.slot.bot_user_id();
    let (a, b, c) = (hs.create_user("chata").await, hs.create_user("chatb").await, hs.create_user("chatc").await);
    let dm_a = a.open_direct_chat(&bot).await;
    let dm_b = b.open_direct_chat(&bot).await;
    // a's chat is used after b's opened: b's is now the longest idle.
    assert!(a.ask(&dm_a, "!claim").await.contains("followed by your claim code"));
    let dm_c = c.open_direct_chat(&bot).await;
    bot_membership(&foyer, &b, &dm_b, "leave").await;
    assert_eq!(a.membership_of(&dm_a, &bot).await.as_deref(), Some("join"));
    assert_eq!(c.membership_of(&dm_c, &bot).await.as_deref(), Some("join"));
}

#[tokio::test]
async fn each_room_is_answered_at_a_bounded_pace() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let fan = hs.create_user("chatty").await;
    let dm = fan.open_direct_chat(&foyer.slot.bot_user_id()).await;
    const SENT: usize = 20;
    for _ in 0..SENT {
        let (status, sent) = fan.send_text(&dm, "!claim").await;
        assert_eq!(status, 200, "{sent}");
    }
    // Every message is either answered or held back.
    let (answered, held) = eventually(Duration::from_secs(60), "every message handled", || async {
        let answered = fan.notices(&dm).await.len();
        let held = foyer.log().matches("answer held back").count();
        (answered + held == SENT).then_some((answered, held))
    })
    .await;
    eprintln!("{answered} answered, {held} held back");
    // A burst of 10, then one every 6 s: however slow this machine, most of a quick 20
    // go unanswered.
    assert!(answered >= 10 && held >= 5, "{answered} answered, {held} held back");
}
