//! Fans without a Matrix ID (contract §7), against a real Synapse and as each user would:
//! an email the homeserver has bound, a claim code sent in a direct chat by a matrix-nio
//! client, a code in a knock, wrong codes, a claimed code claimed again, a ticket moved to
//! another holder, and the claim page in Chromium. Wrong codes are throttled per user, in
//! messages and knocks alike, and no code rests in the database in plain text.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    browser::Browser,
    common::{
        enc, eventually,
        foyer::{TestFoyer, open_reservation, sqlite_query},
        synapse::Synapse,
        unique,
        users::{TestUser, nio_claim},
    },
};

/// A Foyer that may ask Synapse's admin API, as the lookups need, and logs everything.
pub(crate) async fn foyer_with_admin(extra: &'static str) -> TestFoyer {
    let admin = Synapse::shared().create_admin().await;
    let token = admin.access_token.clone();
    TestFoyer::start_with(
        move |yaml| yaml + &format!("synapse_admin:\n  token: {token}\n") + extra,
        &[("RUST_LOG", "trace")],
    )
    .await
}

pub(crate) fn email_ticket(ticket: &str, email: &str) -> Value {
    json!({"ticket_id": ticket, "email": email, "display_name": "A Fan"})
}

/// The tickets endpoint's view of one ticket.
pub(crate) async fn ticket(foyer: &TestFoyer, id: &str, ticket: &str) -> Value {
    let path = format!("/api/v1/reservations/{id}/tickets");
    let (status, listed) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 200, "{listed}");
    listed["tickets"].as_array().and_then(|t| t.iter().find(|t| t["ticket_id"] == ticket)).cloned().expect(ticket)
}

/// `user`'s membership in the room, as the bot sees it (`None` when there is none yet).
pub(crate) async fn membership(foyer: &TestFoyer, room: &str, user: &TestUser) -> Option<String> {
    let event = TestUser::bot(&foyer.slot).member_event(room, &user.user_id).await?;
    event["membership"].as_str().map(str::to_owned)
}

pub(crate) async fn wait_membership(foyer: &TestFoyer, room: &str, user: &TestUser, want: &str) {
    eventually(Duration::from_secs(30), &format!("{} to be {want}", user.user_id), || async {
        (membership(foyer, room, user).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

pub(crate) fn address(name: &str) -> String {
    format!("{}@fans.example.org", unique(name).to_lowercase())
}

#[tokio::test]
async fn an_email_the_homeserver_has_bound_is_invited_with_no_claim() {
    let hs = Synapse::shared();
    let foyer = foyer_with_admin("").await;
    let (admin, fan) = (hs.create_admin().await, hs.create_user("bound").await);
    let email = address("bound");
    // The fan added the address to their account (here through the admin API).
    let path = format!("/_synapse/admin/v2/users/{}", enc(&fan.user_id));
    let threepids = json!({"threepids": [{"medium": "email", "address": email}]});
    let (status, body) = admin.request(reqwest::Method::PUT, &path, Some(threepids)).await;
    assert_eq!(status, 200, "{body}");

    let id = unique("lookup");
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket("t-1", &email)]})).await;
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    fan.join_once_invited(&room, Duration::from_secs(30)).await;

    let seen = ticket(&foyer, &id, "t-1").await;
    assert_eq!(seen["state"], "bound", "{seen}");
    assert_eq!(seen["user_id"], fan.user_id.as_str(), "{seen}");
    assert_eq!(seen["email_masked"], Value::Null, "the address is forgotten once bound: {seen}");
    assert_eq!(seen["claim"], Value::Null, "{seen}");
    assert_eq!(foyer.reservation(&id).await.1["tickets"]["claimed"], 1);
    let log = foyer.log();
    assert!(log.contains("email ticket bound"), "{log}");
    assert!(!log.contains(&email), "the address appears in the trace-level log");
    assert!(!log.contains(&email.replace('@', "%40")), "the address appears, encoded, in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_claims_by_direct_message_is_invited_and_loses_the_seat_with_the_ticket() {
    let hs = Synapse::shared();
    let foyer = foyer_with_admin("").await;
    let (fan, other) = (hs.create_user("claimer").await, hs.create_user("latecomer").await);
    let email = address("claimer");
    let id = unique("claim");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket("t-1", &email)]})).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;

    let unclaimed = ticket(&foyer, &id, "t-1").await;
    assert_eq!(unclaimed["state"], "unclaimed", "{unclaimed}");
    assert_eq!(unclaimed["email_masked"], format!("{}***@fans.example.org", &email[..1]), "{unclaimed}");
    let command = unclaimed["claim"]["command"].as_str().expect("a claim command").to_owned();
    let code = unclaimed["claim"]["code"].as_str().expect("a claim code").to_owned();
    assert_eq!(command, format!("!claim {code}"));
    assert!(unclaimed["claim"]["url"].as_str().unwrap().ends_with(&format!("/claim/{}", code.replace('-', ""))));

    // The operator's status page counts the unclaimed ticket, and never shows its address.
    let page = foyer.http.get(format!("{}/status", foyer.base_url)).bearer_auth(&foyer.slot.api_token).send();
    let page = page.await.unwrap().text().await.unwrap();
    assert!(page.contains("1 unclaimed"), "{page}");
    assert!(!page.contains(&email) && !page.contains(&email[..email.find('@').unwrap()]), "{page}");

    let bot = foyer.slot.bot_user_id();
    let said = tokio::task::block_in_place(|| nio_claim(&fan, &hs.url, &bot, &[&command]));
    let answered = Instant::now();
    let reply = said["answers"][0].as_str().unwrap_or_default();
    assert!(reply.contains(&format!("“Show {id}”")) && reply.contains("is claimed"), "{said}");
    fan.join_once_invited(&room, Duration::from_secs(30)).await;
    eprintln!("invited {} ms after the bot's answer", answered.elapsed().as_millis());
    assert_eq!(ticket(&foyer, &id, "t-1").await["state"], "bound");

    // Someone else with the same code is refused; the first holder keeps the seat.
    let said = tokio::task::block_in_place(|| nio_claim(&other, &hs.url, &bot, &[&command]));
    let reply = said["answers"][0].as_str().unwrap_or_default();
    assert!(reply.contains("already been claimed by someone else"), "{said}");
    assert_eq!(ticket(&foyer, &id, "t-1").await["user_id"], fan.user_id.as_str());
    assert_eq!(membership(&foyer, &room, &fan).await.as_deref(), Some("join"));

    // The ticket revoked: the seat goes with it.
    foyer.revoke(&id, &["t-1"]).await;
    wait_membership(&foyer, &room, &fan, "leave").await;
    assert!(!foyer.log().contains(&email), "the address appears in the trace-level log");
    assert!(!foyer.log().contains(code.replace('-', "").as_str()), "the claim code appears in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_are_answered_politely_then_throttled_and_a_typo_is_told_apart() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let guesser = hs.create_user("guesser").await;
    let id = unique("guess");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer
        .accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket("t-1", &address("g"))]}))
        .await;
    let code = ticket(&foyer, &id, "t-1").await["claim"]["code"].as_str().expect("a code").to_owned();
    // A typo: one symbol changed, which the check symbol catches.
    let mut typo: Vec<char> = code.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();
    // Well-formed codes of no ticket: another deployment's (the check symbol holds).
    let strangers: Vec<String> = (0..6).map(foreign_code).collect();
    let mut texts = vec![format!("!claim {typo}")];
    texts.extend(strangers.iter().map(|c| format!("!claim {c}")));
    texts.push(format!("!claim {code}"));
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let bot = foyer.slot.bot_user_id();
    let said = tokio::task::block_in_place(|| nio_claim(&guesser, &hs.url, &bot, &texts));
    let answers: Vec<&str> = said["answers"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(answers[0].contains("has a typo"), "{said}");
    for (i, answer) in answers[1..6].iter().enumerate() {
        assert!(answer.contains("that code doesn't work"), "wrong code {i}: {said}");
    }
    assert!(answers[6].contains("Please wait") && answers[6].contains("minutes"), "the sixth: {said}");
    // Throttled, even the right code waits: nothing is looked at.
    assert!(answers[7].contains("Please wait"), "{said}");
    assert_eq!(ticket(&foyer, &id, "t-1").await["state"], "unclaimed");
}

/// A well-formed code Foyer never made for this deployment: derived under another key.
pub(crate) fn foreign_code(i: u32) -> String {
    let key = foyer::model::ClaimKey::from_secret(format!("not this deployment {i}").as_bytes());
    let reservation = foyer::model::ReservationId::parse("elsewhere").unwrap();
    let ticket = foyer::model::ExternalId::parse("t").unwrap();
    foyer::model::ClaimCode::derive(&key, &reservation, &ticket).to_string()
}

#[tokio::test]
async fn a_knock_with_the_code_gets_in_and_a_knock_with_a_wrong_one_is_refused() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start_with(|yaml| yaml + "rooms:\n  join_rule: knock\n", &[]).await;
    let (fan, eve) = (hs.create_user("knocker").await, hs.create_user("eve").await);
    let id = unique("knockclaim");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer
        .accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket("t-1", &address("k"))]}))
        .await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    let code = ticket(&foyer, &id, "t-1").await["claim"]["code"].as_str().expect("a code").to_owned();

    let knock = format!("/_matrix/client/v3/knock/{}", enc(&foyer.alias(&id)));
    let reason = json!({"reason": format!("Hi! My ticket code is {code}")});
    let (status, body) = fan.request(reqwest::Method::POST, &knock, Some(reason)).await;
    assert_eq!(status, 200, "{body}");
    fan.join_once_invited(&room, Duration::from_secs(30)).await;
    let bound = ticket(&foyer, &id, "t-1").await;
    assert_eq!((&bound["state"], &bound["user_id"]), (&json!("bound"), &json!(fan.user_id)), "{bound}");

    let wrong = json!({"reason": format!("my code is {}", foreign_code(9))});
    let (status, body) = eve.request(reqwest::Method::POST, &knock, Some(wrong)).await;
    assert_eq!(status, 200, "{body}");
    wait_membership(&foyer, &room, &eve, "leave").await;
    assert_ne!(eve.join(&room).await.0, 200, "eve cannot join");
}

#[tokio::test]
async fn a_ticket_moved_to_another_holder_invites_them_and_removes_the_first() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let (alice, bob) = (hs.create_user("first").await, hs.create_user("second").await);
    let id = unique("move");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t-1", &alice.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    alice.join_once_invited(&room, Duration::from_secs(30)).await;

    foyer.grant(&id, &[("t-1", &bob.user_id)]).await;
    bob.join_once_invited(&room, Duration::from_secs(30)).await;
    wait_membership(&foyer, &room, &alice, "leave").await;
    assert_eq!(ticket(&foyer, &id, "t-1").await["user_id"], bob.user_id.as_str());
}

#[tokio::test]
async fn the_claim_page_shows_the_show_and_the_line_to_send() {
    let foyer = TestFoyer::start_with(
        |yaml| yaml.replace("homeserver:\n", "homeserver:\n  signup_url: https://signup.example.org/register\n"),
        &[],
    )
    .await;
    let id = unique("page");
    let mut reservation = open_reservation(&id, &[], 1);
    reservation["title"] = json!("Jazz <b>Night</b> & Friends");
    foyer.accept("reservation.created", reservation).await;
    foyer
        .accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket("t-1", &address("p"))]}))
        .await;
    let claim = ticket(&foyer, &id, "t-1").await["claim"].clone();
    let (url, command) = (claim["url"].as_str().unwrap(), claim["command"].as_str().unwrap());

    let browser = Browser::start().await;
    browser.goto(url).await;
    let heading = eventually(Duration::from_secs(10), "the claim page", || async { browser.text("h1").await }).await;
    assert_eq!(heading, "Jazz <b>Night</b> & Friends", "the title shows as text");
    let line = browser.text("code.command").await.expect("the line to send");
    assert_eq!(line, command);
    let source = browser.source().await;
    assert!(source.contains("https://signup.example.org/register"), "{source}");
    assert!(source.contains(&format!("https://matrix.to/#/{}", foyer.slot.bot_user_id())), "{source}");
    let shot = crate::common::repo_root().join("target/test-artifacts/claim-page.png");
    browser.screenshot(&shot).await;
    eprintln!("[claim] screenshot saved to {}", shot.display());

    // A code that does not work: one page, 404, nothing about which codes exist.
    let unknown = url.replace(&url[url.len() - 15..], &foreign_code(1).replace('-', ""));
    let resp = reqwest::get(&unknown).await.unwrap();
    assert_eq!(resp.status(), 404);
    let text = resp.text().await.unwrap();
    assert!(text.contains("This claim link does not work"), "{text}");
    let mistyped = reqwest::get(format!("{}/claim/not-a-code", foyer.base_url)).await.unwrap();
    assert_eq!(mistyped.status(), 404);
    assert_eq!(mistyped.text().await.unwrap(), text, "every code that does not work gets the same page");
    assert!(!foyer.log().contains(&url[url.len() - 15..]), "the code appears in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bot_leaves_a_strangers_direct_chat_once_idle() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start_with(|yaml| yaml, &[("FOYER_DIRECT_CHAT_IDLE_SECS", "2")]).await;
    let fan = hs.create_user("idler").await;
    let bot = foyer.slot.bot_user_id();
    // The chat is opened and the bot joins; nothing is said after.
    let opened = tokio::task::block_in_place(|| nio_claim(&fan, &hs.url, &bot, &[]));
    let dm = opened["dm"].as_str().expect("the direct chat").to_owned();
    // The inbox looks for idle chats at least every 30 s.
    eventually(Duration::from_secs(90), "the bot to leave the idle direct chat", || async {
        let event = fan.member_event(&dm, &bot).await?;
        (event["membership"] == "leave").then_some(())
    })
    .await;
    // Foyer logs the leave once the homeserver has answered, which may be after the fan
    // saw it.
    eventually(Duration::from_secs(10), "the leave logged", || async {
        foyer.log().contains("left an idle direct chat").then_some(())
    })
    .await;
}

/// An email ticket granted in an open reservation; returns its claim code.
async fn email_ticket_code(foyer: &TestFoyer, id: &str) -> String {
    foyer.accept("reservation.created", open_reservation(id, &[], 1)).await;
    let tickets = json!({"reservation_id": id, "tickets": [email_ticket("t-1", &address("fan"))]});
    foyer.accept("ticket.granted", tickets).await;
    ticket(foyer, id, "t-1").await["claim"]["code"].as_str().expect("a code").to_owned()
}

/// Contract §7: other users' wrong codes never lock out a user who has not failed. Fans
/// sign up on the homeserver Foyer serves, so ten throwaway accounts there sending five
/// wrong codes each (50, what once held back the whole server for an hour) must not.
#[tokio::test(flavor = "multi_thread")]
async fn other_users_wrong_codes_never_lock_out_a_fan_who_has_not_failed() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let id = unique("lockout");
    let code = email_ticket_code(&foyer, &id).await;
    let bot = foyer.slot.bot_user_id();
    let mut guessers = tokio::task::JoinSet::new();
    for g in 0..10u32 {
        let (guesser, bot) = (hs.create_user(&format!("thrower{g}")).await, bot.clone());
        guessers.spawn(async move {
            let dm = guesser.open_direct_chat(&bot).await;
            for i in 0..5 {
                let answer = guesser.ask(&dm, &format!("!claim {}", foreign_code(100 + g * 5 + i))).await;
                assert!(answer.contains("that code doesn't work"), "guesser {g}, code {i}: {answer}");
            }
        });
    }
    while let Some(done) = guessers.join_next().await {
        done.expect("a guesser");
    }
    let fan = hs.create_user("innocent").await;
    let dm = fan.open_direct_chat(&bot).await;
    let answer = fan.ask(&dm, &format!("!claim {code}")).await;
    assert!(answer.contains("is claimed"), "the fan is not held back by the others: {answer}");
    assert_eq!(ticket(&foyer, &id, "t-1").await["user_id"], fan.user_id.as_str());
}

/// Knocks with a code count against the same throttle as `!claim`: after five wrong
/// codes in knocks, even the right one is not looked at, while a fan who never failed
/// still gets in with it.
#[tokio::test]
async fn knock_claims_are_throttled_as_claim_messages_are() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start_with(|yaml| yaml + "rooms:\n  join_rule: knock\n", &[]).await;
    let (guesser, fan) = (hs.create_user("knockguess").await, hs.create_user("knockfan").await);
    let id = unique("knockthrottle");
    let code = email_ticket_code(&foyer, &id).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    let knock = format!("/_matrix/client/v3/knock/{}", enc(&foyer.alias(&id)));
    let knock_with = |who: &TestUser, code: String| {
        let (who, knock) = (who.clone(), knock.clone());
        async move {
            let (status, body) =
                who.request(reqwest::Method::POST, &knock, Some(json!({"reason": format!("my code: {code}")}))).await;
            assert_eq!(status, 200, "{body}");
        }
    };
    for i in 0..5 {
        knock_with(&guesser, foreign_code(200 + i)).await;
        wait_membership(&foyer, &room, &guesser, "leave").await; // refused
    }
    // The sixth knock carries the right code: refused like the others, the ticket unclaimed.
    knock_with(&guesser, code.clone()).await;
    let answered = eventually(Duration::from_secs(30), "the sixth knock answered", || async {
        membership(&foyer, &room, &guesser).await.filter(|m| m != "knock")
    })
    .await;
    assert_eq!(answered, "leave", "the right code after five wrong ones is not looked at");
    assert_eq!(ticket(&foyer, &id, "t-1").await["state"], "unclaimed");
    eventually(Duration::from_secs(10), "the throttled knock logged", || async {
        foyer.log().contains("claim code in a knock not looked at").then_some(())
    })
    .await;

    knock_with(&fan, code).await;
    fan.join_once_invited(&room, Duration::from_secs(30)).await;
    assert_eq!(ticket(&foyer, &id, "t-1").await["user_id"], fan.user_id.as_str());
}

/// A `!claim` waits in the admin inbox (here: Foyer dies before answering it) as its
/// code's hash: neither the database nor its write-ahead log holds the code, in any
/// form. Started again, Foyer claims the ticket from what it kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_claim_waiting_in_the_inbox_keeps_no_code_in_plain_text() {
    let hs = Synapse::shared();
    let mut foyer = TestFoyer::start_with(|yaml| yaml, &[("FOYER_FAILPOINTS", "admin_before_answer")]).await;
    let id = unique("atrest");
    let code = email_ticket_code(&foyer, &id).await;
    let fan = hs.create_user("atrest").await;
    let dm = fan.open_direct_chat(&foyer.slot.bot_user_id()).await;
    let (status, sent) = fan.send_text(&dm, &format!("!claim {code}")).await;
    assert_eq!(status, 200, "{sent}");
    assert_ne!(foyer.wait_exit(Duration::from_secs(30)).await, 0, "the failpoint aborts before the answer");

    let db = foyer.dir().join("foyer.db");
    assert_eq!(sqlite_query(&db, "SELECT COUNT(*) FROM admin_inbox").trim(), "1", "the claim waits in the inbox");
    let plain = code.replace('-', "");
    for file in ["foyer.db", "foyer.db-wal"] {
        let bytes = std::fs::read(foyer.dir().join(file)).unwrap_or_default();
        for form in [code.as_str(), plain.as_str(), &code.to_lowercase(), &plain.to_lowercase()] {
            let found = bytes.windows(form.len()).any(|w| w == form.as_bytes());
            assert!(!found, "{file} holds the claim code as {form}");
        }
    }

    foyer.restart(&[]);
    foyer.wait_ready().await;
    // The first start made the claim before it died; the second answers it.
    eventually(Duration::from_secs(30), "the claim answered after the restart", || async {
        fan.notices(&dm).await.iter().any(|n| n.contains("is already yours") && n.contains(&id)).then_some(())
    })
    .await;
    assert_eq!(ticket(&foyer, &id, "t-1").await["user_id"], fan.user_id.as_str());
}
