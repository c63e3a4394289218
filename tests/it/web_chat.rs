//! The chat beside the player (docs/web-chat.md), against a real Synapse:
//! viewer tokens become sessions or are refused with their reason, and a session's
//! Server-Sent Events stream shows what a Matrix member posts, by name and never by
//! Matrix ID, and picks up after a Foyer restart with `Last-Event-ID`, missing and
//! repeating nothing. Every body `/chat/` answers is read through `ChatClient`, which checks
//! it for what it must not hold.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{
    foyer::{TestFoyer, open_reservation},
    synapse::Synapse,
    unique,
    webchat::{ChatClient, Sse},
};

/// Every test Foyer's token secret (its slot's `webchat` section).
const SECRET: &str = crate::common::foyer::WEBCHAT_SECRET;

pub(crate) use crate::common::webchat::{is_message, mint, now};

fn claims(rid: &str, tid: &str) -> Value {
    json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": rid, "tid": tid, "name": "Web Fan"})
}

#[tokio::test]
async fn viewer_tokens_open_sessions_whose_stream_shows_the_room_by_name_across_a_restart() {
    let hs = Synapse::shared();
    let mut foyer = TestFoyer::start().await;
    let id = unique("webchat");
    let member = hs.create_user("member").await;
    let name = format!("Ada {}", &id[id.len() - 4..]);
    let (status, body) = member
        .request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/profile/{}/displayname", crate::common::enc(&member.user_id)),
            Some(json!({"displayname": name})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    let ticket = format!("{id}-t1");
    foyer.grant(&id, &[(&format!("{id}-t0"), member.user_id.as_str())]).await;
    // The web fan's ticket: an email ticket, as a platform grants one to a fan without
    // a Matrix ID.
    let email_ticket = json!({"ticket_id": ticket, "email": "web.fan@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket]})).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    member.join_once_invited(&room_id, Duration::from_secs(30)).await;
    // Every answer is checked for the slot's tokens, every test user's ID and token, and
    // the fan's email (`ChatClient`).
    let chat = ChatClient::of(&foyer).keeping(&["web.fan@example.org"]);

    // Refused tokens, each with its reason.
    let refusals = [
        (
            json!({"aud": "foyer", "iat": now() - 7200, "exp": now() - 3600, "rid": id, "tid": ticket, "name": "W"}),
            SECRET,
            401,
            "FOYER_TOKEN_EXPIRED",
        ),
        (
            json!({"aud": "youtube", "iat": now(), "exp": now() + 60, "rid": id, "tid": ticket, "name": "W"}),
            SECRET,
            401,
            "FOYER_TOKEN_AUDIENCE",
        ),
        (claims(&id, &ticket), "another-secret-0123456789abcdef0123456789", 401, "FOYER_TOKEN_SIGNATURE"),
        (claims(&id, "no-such-ticket"), SECRET, 403, "FOYER_TICKET_UNKNOWN"),
        (claims("no-such-show", &ticket), SECRET, 404, "FOYER_RESERVATION_UNKNOWN"),
        (
            json!({"aud": "foyer", "iat": now(), "exp": now() + 60, "rid": id, "tid": ticket, "name": "H0st"}),
            SECRET,
            403,
            "FOYER_NAME_IMITATES",
        ),
    ];
    for (claims, secret, status, errcode) in refusals {
        let (got, answer, text) = chat.session(&json!({"token": mint(secret, claims)})).await;
        assert_eq!((got, answer["errcode"].as_str()), (status, Some(errcode)), "{text}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{text}");
    }
    let (got, answer, text) =
        chat.session(&json!({"token": mint(SECRET, claims(&id, &ticket)), "reservation_id": "another-show"})).await;
    assert_eq!((got, answer["errcode"].as_str()), (403, Some("FOYER_TOKEN_RESERVATION")), "{text}");

    // A valid one opens a session.
    let (got, answer, text) = chat.session(&json!({"token": mint(SECRET, claims(&id, &ticket))})).await;
    assert_eq!(got, 200, "{text}");
    let me = &answer["me"];
    assert_eq!(
        (&me["name"], &me["role"], &me["max_length"]),
        (&json!("Web Fan"), &json!("web"), &json!(500)),
        "{text}"
    );
    assert_eq!(me["key"].as_str().map(str::len), Some(12), "{text}");
    let session = answer["session"].as_str().unwrap().to_owned();
    assert!(answer["expires_at"].is_string(), "{text}");

    let (status, _) = chat.stream("not-a-session", None).await;
    assert_eq!(status, 401);

    // The stream shows the phase, then what a member posts, by name.
    let (status, reader) = chat.stream(&session, None).await;
    assert_eq!(status, 200);
    let mut reader = reader.unwrap();
    let first = reader.next(Duration::from_secs(30)).await.expect("the phase");
    assert_eq!((first.event.as_str(), first.id), ("phase", None), "{first:?}");
    // The backlog (the bot's notices so far), then `ready`: what follows is new.
    let backlog = reader.until("the end of the backlog", |e: &Sse| e.event == "ready").await;
    assert!(backlog.iter().all(|e| e.event == "notice" || e.event == "ready"), "{backlog:?}");
    let (status, sent) = member.send_text(&room_id, &format!("hello from {}", member.user_id)).await;
    assert_eq!(status, 200, "{sent}");
    let expected = format!("hello from {name}");
    let seen = reader.until("the member's message", is_message(&expected)).await;
    let message = seen.last().unwrap().clone();
    assert_eq!(message.data["sender"]["name"], name.as_str(), "{message:?}");
    assert_eq!(message.data["sender"]["role"], "fan", "{message:?}");
    assert_eq!(message.data["sender"]["key"].as_str().map(str::len), Some(12), "{message:?}");
    assert_eq!(message.data["event_id"], sent["event_id"], "{message:?}");
    let first_seq = message.id.expect("an id");
    assert_eq!(message.data["seq"], first_seq, "{message:?}");
    drop(reader);

    // Foyer restarts; meanwhile two more messages. A reconnect with the last id gets
    // exactly those, in order.
    foyer.kill();
    for text in ["second", "third"] {
        let (status, sent) = member.send_text(&room_id, text).await;
        assert_eq!(status, 200, "{sent}");
    }
    foyer.restart(&[]);
    foyer.wait_ready().await;
    let (status, reader) = chat.stream(&session, Some(first_seq)).await;
    assert_eq!(status, 200);
    let mut reader = reader.unwrap();
    let seen = reader.until("the third message", is_message("third")).await;
    let entries: Vec<&Sse> = seen.iter().filter(|e| e.id.is_some()).collect();
    let texts: Vec<&str> = entries.iter().map(|e| e.data["body"].as_str().unwrap()).collect();
    assert_eq!(texts, ["second", "third"], "{seen:?}");
    let ids: Vec<u64> = entries.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, [first_seq + 1, first_seq + 2], "{seen:?}");
    // And nothing more comes but live events.
    let (status, sent) = member.send_text(&room_id, "fourth").await;
    assert_eq!(status, 200, "{sent}");
    let seen = reader.until("the fourth message", is_message("fourth")).await;
    assert_eq!(seen.iter().filter(|e| e.id.is_some()).count(), 1, "{seen:?}");
    drop(reader);

    // A reader from the start gets the backlog, oldest first.
    let (_, reader) = chat.stream(&session, None).await;
    let mut reader = reader.unwrap();
    let seen = reader.until("the backlog", is_message("fourth")).await;
    let texts: Vec<&str> =
        seen.iter().filter(|e| e.event == "message").map(|e| e.data["body"].as_str().unwrap()).collect();
    assert_eq!(texts, [expected.as_str(), "second", "third", "fourth"], "{seen:?}");
    drop(reader);

    // SIGTERM with a stream open: the stream ends and Foyer exits, without waiting out
    // the 30 s grace for requests under way.
    let (_, reader) = chat.stream(&session, None).await;
    let mut reader = reader.unwrap();
    let backlog = reader.until("the end of the backlog", |e: &Sse| e.event == "ready").await;
    assert!(backlog.iter().any(|e| e.data["body"] == "fourth"), "{backlog:?}");
    let asked = Instant::now();
    foyer.signal("TERM");
    assert_eq!(foyer.wait_exit(Duration::from_secs(20)).await, 0, "{}", foyer.log());
    assert!(asked.elapsed() < Duration::from_secs(10), "shutdown took {:?}", asked.elapsed());
    assert_eq!(reader.next(Duration::from_secs(5)).await, None, "the stream ended");
}

#[tokio::test]
async fn a_web_fan_writes_in_the_room_as_a_marked_web_user_and_a_retry_sends_nothing_new() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let id = unique("webwrite");
    let member = hs.create_user("member").await;
    // The member hosts the show: a host may kick.
    foyer.accept("reservation.created", open_reservation(&id, &[member.user_id.as_str()], 1)).await;
    let ticket = format!("{id}-t1");
    let email_ticket = json!({"ticket_id": ticket, "email": "zoe@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket]})).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    member.join_once_invited(&room_id, Duration::from_secs(30)).await;
    let chat = ChatClient::of(&foyer).keeping(&["zoe@example.org"]);
    let zoe = format!("Zoe {}", &id[id.len() - 4..]);
    let token =
        mint(SECRET, json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": id, "tid": ticket, "name": zoe}));
    let (got, answer, text) = chat.session(&json!({"token": token})).await;
    assert_eq!(got, 200, "{text}");
    let session = answer["session"].as_str().unwrap().to_owned();
    let my_key = answer["me"]["key"].as_str().unwrap().to_owned();

    // Refused before anything reaches the room, each named.
    let (got, answer, text) = chat.post_message(&session, &json!({"txn_id": "t 1", "body": "hi"})).await;
    assert_eq!((got, answer["errcode"].as_str()), (400, Some("FOYER_BAD_MESSAGE")), "{text}");
    let long = "é".repeat(501);
    let (got, answer, text) = chat.post_message(&session, &json!({"txn_id": "t0", "body": long})).await;
    assert_eq!((got, answer["errcode"].as_str()), (422, Some("FOYER_RULE")), "{text}");
    let (got, _, text) = chat.post_message("no-session", &json!({"txn_id": "t0", "body": "hi"})).await;
    assert_eq!(got, 401, "{text}");

    // The first message makes the web user; the same txn_id again sends nothing new.
    let body = format!("hello from the watch page {id}");
    let (got, first, text) = chat.post_message(&session, &json!({"txn_id": "t1", "body": body})).await;
    assert_eq!(got, 200, "{text}");
    let (got, again, text) = chat.post_message(&session, &json!({"txn_id": "t1", "body": body})).await;
    assert_eq!((got, &again["event_id"]), (200, &first["event_id"]), "{text}");
    let event_id = first["event_id"].as_str().unwrap().to_owned();

    // The Matrix member sees it once, from a web user named with the web mark.
    let sender =
        crate::common::eventually(Duration::from_secs(30), "the member sees the web fan's message", || async {
            let events = member.messages(&room_id).await;
            let copies: Vec<&Value> = events.iter().filter(|e| e["content"]["body"] == body.as_str()).collect();
            (copies.len() == 1).then(|| copies[0]["sender"].as_str().unwrap().to_owned())
        })
        .await;
    assert_eq!(copies_of(&member.messages(&room_id).await, &body), 1);
    let named = member.member_event(&room_id, &sender).await.expect("the web user's member event");
    assert_eq!(
        (named["membership"].as_str(), named["displayname"].as_str()),
        (Some("join"), Some(format!("{zoe} (web)").as_str()))
    );

    // The stream shows it as the fan's own (their key), and the web user stays in the
    // room while Foyer runs: a second message goes through.
    let (status, reader) = chat.stream(&session, None).await;
    assert_eq!(status, 200);
    let mut reader = reader.unwrap();
    let seen = reader.until("the fan's own message", is_message(&body)).await;
    let mine = seen.last().unwrap();
    assert_eq!(
        (mine.data["sender"]["key"].as_str(), mine.data["sender"]["role"].as_str()),
        (Some(my_key.as_str()), Some("web"))
    );
    assert_eq!(mine.data["event_id"], event_id.as_str());
    let second = format!("still here {id}");
    let (got, _, text) = chat.post_message(&session, &json!({"txn_id": "t2", "body": second})).await;
    assert_eq!(got, 200, "{text}");
    reader.until("the second message", is_message(&second)).await;
    assert_eq!(member.membership_of(&room_id, &sender).await.as_deref(), Some("join"));

    // A host kicks the web user (a kick, not a ban): the fan's next message brings it back
    // once Foyer has heard of the kick. The same txn_id is sent until then, so that the
    // message goes out once.
    let kick = json!({"user_id": sender, "reason": "cool down"});
    let (status, body) = member
        .request(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/kick", crate::common::enc(&room_id)),
            Some(kick),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let third = format!("back again {id}");
    crate::common::eventually(Duration::from_secs(30), "the fan's message after the kick", || async {
        let (got, _, _) = chat.post_message(&session, &json!({"txn_id": "t3", "body": third})).await;
        (got == 200).then_some(())
    })
    .await;
    reader.until("the message after the kick", is_message(&third)).await;
    assert_eq!(member.membership_of(&room_id, &sender).await.as_deref(), Some("join"));
    assert_eq!(copies_of(&member.messages(&room_id).await, &third), 1);

    // The fan removes their own message; the stream says so.
    let (got, _, text) = chat.delete_message(&session, &event_id).await;
    assert_eq!(got, 200, "{text}");
    reader.until("the redaction", |e: &Sse| e.event == "redaction" && e.data["event_id"] == event_id.as_str()).await;

    // The show is cancelled, so the room is archived: the web user keeps no name of the fan.
    foyer.accept("reservation.cancelled", json!({"reservation_id": id, "reason": "called off"})).await;
    crate::common::eventually(Duration::from_secs(30), "the web user's name cleared", || async {
        let event = member.member_event(&room_id, &sender).await?;
        event["displayname"].as_str().is_none_or(|n| !n.contains("Zoe")).then_some(())
    })
    .await;
}

fn copies_of(events: &[Value], body: &str) -> usize {
    events.iter().filter(|e| e["content"]["body"] == body).count()
}

/// A room whose log is empty (open before `webchat` was configured, or before Foyer kept
/// the log) is refilled from the homeserver's latest messages for its first reader,
/// shown by name, each once.
#[tokio::test]
async fn an_empty_log_is_refilled_from_the_homeserver_for_its_first_reader() {
    let hs = Synapse::shared();
    let mut foyer = TestFoyer::start().await;
    let id = unique("webrefill");
    let member = hs.create_user("member").await;
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[(&format!("{id}-t0"), member.user_id.as_str())]).await;
    let ticket = format!("{id}-t1");
    let email_ticket = json!({"ticket_id": ticket, "email": "refill@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket]})).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    member.join_once_invited(&room_id, Duration::from_secs(30)).await;
    let (status, sent) = member.send_text(&room_id, "said before the log").await;
    assert_eq!(status, 200, "{sent}");
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    // Logged from the homeserver's transaction; then the log is emptied while Foyer is
    // down, as a deployment that turns web chat on finds it.
    let db = foyer.dir().join("foyer.db");
    let logged = format!("SELECT COUNT(*) FROM webchat_log WHERE event_id = '{event_id}'");
    crate::common::eventually(Duration::from_secs(30), "the message logged", || async {
        (crate::common::foyer::sqlite_query(&db, &logged).trim() == "1").then_some(())
    })
    .await;
    foyer.kill();
    for table in ["webchat_log", "webchat_log_heads"] {
        crate::common::foyer::sqlite_exec(&db, &format!("DELETE FROM {table} WHERE reservation_id = '{id}'"));
    }
    foyer.restart(&[]);
    foyer.wait_ready().await;

    let chat = ChatClient::of(&foyer).keeping(&["refill@example.org"]);
    let (got, answer, text) = chat.session(&json!({"token": mint(SECRET, claims(&id, &ticket))})).await;
    assert_eq!(got, 200, "{text}");
    let session = answer["session"].as_str().unwrap().to_owned();
    let (status, reader) = chat.stream(&session, None).await;
    assert_eq!(status, 200);
    let backlog = reader.unwrap().until("the end of the backlog", |e: &Sse| e.event == "ready").await;
    let said: Vec<&Sse> = backlog.iter().filter(|e| e.data["event_id"] == event_id.as_str()).collect();
    assert_eq!(said.len(), 1, "the member's message, once: {backlog:?}");
    assert_eq!(said[0].data["body"], "said before the log", "{backlog:?}");
    assert_eq!(said[0].data["sender"]["role"], "fan", "{backlog:?}");
    assert!(backlog.iter().any(|e| e.event == "notice"), "the bot's notices too: {backlog:?}");
    // A second reader finds the log filled: nothing is logged twice.
    let (_, reader) = chat.stream(&session, None).await;
    let again = reader.unwrap().until("the end of the backlog", |e: &Sse| e.event == "ready").await;
    let ids = |events: &[Sse]| events.iter().filter_map(|e| e.id).collect::<Vec<u64>>();
    assert_eq!(ids(&again), ids(&backlog), "the same entries");
}

/// A ban of a web user in Matrix bans its ticket in the reservation, not its holder:
/// once the ticket moves to another holder, their tokens are refused too.
#[tokio::test]
async fn a_ban_follows_the_ticket_to_its_next_holder() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let id = unique("webban");
    let host = hs.create_user("host").await;
    foyer.accept("reservation.created", open_reservation(&id, &[host.user_id.as_str()], 1)).await;
    let ticket = format!("{id}-t1");
    let email_ticket = json!({"ticket_id": ticket, "email": "ann@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket]})).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    host.join_once_invited(&room_id, Duration::from_secs(30)).await;
    let chat = ChatClient::of(&foyer).keeping(&["ann@example.org", "bea@example.org"]);
    let token = |name: &str| {
        let claims = json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": id, "tid": ticket, "name": name});
        json!({"token": mint(SECRET, claims)})
    };

    // Ann writes, so her web user is in the room; the host bans it.
    let (got, answer, text) = chat.session(&token("Ann")).await;
    assert_eq!(got, 200, "{text}");
    let session = answer["session"].as_str().unwrap().to_owned();
    let body = format!("hello from Ann {id}");
    let (got, _, text) = chat.post_message(&session, &json!({"txn_id": "a1", "body": body})).await;
    assert_eq!(got, 200, "{text}");
    let web_user = host.sender_of(&room_id, &body).await;
    host.ban(&room_id, &web_user).await;
    crate::common::eventually(Duration::from_secs(30), "Ann's ticket to be banned", || async {
        let (got, answer, _) = chat.session(&token("Ann")).await;
        (got == 403 && answer["errcode"] == "FOYER_VIEWER_BANNED").then_some(())
    })
    .await;

    // The ticket moves to Bea (committed before the 202): her tokens name the same
    // ticket, and are refused as Ann's are.
    let next_holder = json!({"ticket_id": ticket, "email": "bea@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [next_holder]})).await;
    assert!(foyer.log().contains("ticket moved to another holder"), "the grant was not a move");
    let (got, answer, text) = chat.session(&token("Bea")).await;
    assert_eq!((got, answer["errcode"].as_str()), (403, Some("FOYER_VIEWER_BANNED")), "{text}");
}

/// The other way round: a former holder's web user banned after the ticket moved on
/// bans that user, not the ticket, whose new holder chats on.
#[tokio::test]
async fn a_former_holders_ban_leaves_the_ticket_with_its_new_holder() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let id = unique("webexban");
    let host = hs.create_user("host").await;
    foyer.accept("reservation.created", open_reservation(&id, &[host.user_id.as_str()], 1)).await;
    let ticket = format!("{id}-t1");
    let email_ticket = json!({"ticket_id": ticket, "email": "cy@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket]})).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    host.join_once_invited(&room_id, Duration::from_secs(30)).await;
    let chat = ChatClient::of(&foyer).keeping(&["cy@example.org", "di@example.org"]);
    let token = |name: &str| {
        let claims = json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": id, "tid": ticket, "name": name});
        json!({"token": mint(SECRET, claims)})
    };
    let (got, answer, text) = chat.session(&token("Cy")).await;
    assert_eq!(got, 200, "{text}");
    let session = answer["session"].as_str().unwrap().to_owned();
    let body = format!("hello from Cy {id}");
    let (got, _, text) = chat.post_message(&session, &json!({"txn_id": "c1", "body": body})).await;
    assert_eq!(got, 200, "{text}");
    let cy_user = host.sender_of(&room_id, &body).await;

    // The ticket moves to Di; then the host bans Cy's web user, and the homeserver tells
    // Foyer (the ban is in Foyer's log once its transaction is handled).
    let next_holder = json!({"ticket_id": ticket, "email": "di@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [next_holder]})).await;
    host.ban(&room_id, &cy_user).await;
    crate::common::eventually(Duration::from_secs(30), "the ban handled", || async {
        let log = foyer.log();
        (log.contains("a web fan was banned") || log.contains("a former holder's web user was banned")).then_some(())
    })
    .await;
    let (got, answer, text) = chat.session(&token("Di")).await;
    assert_eq!(got, 200, "{text}");
    let di = answer["session"].as_str().unwrap().to_owned();
    let (got, _, text) = chat.post_message(&di, &json!({"txn_id": "d1", "body": "Di here"})).await;
    assert_eq!(got, 200, "the new holder writes: {text}");
}
