//! Who may call what, what never reaches the log, and rooms that are not Foyer's.

use std::time::Duration;

use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, WEBHOOK_SECRET, chrono_now, envelope, sign_webhook},
    random_token,
    synapse::Synapse,
    unique,
    users::TestUser,
};

/// A reservation whose room opens at once (it starts in two hours, the chat opens three
/// hours before), so no reminder or start falls inside a test.
fn opening_now(id: &str) -> Value {
    let now = Utc::now();
    let at = |d: chrono::Duration| (now + d).to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({
        "reservation_id": id, "revision": 1, "title": format!("Show {id}"),
        "starts_at": at(chrono::Duration::hours(2)), "ends_at": at(chrono::Duration::hours(3)),
        "stream_url": "https://stream.example.org/watch/security",
        "chat": {"open_before_seconds": 3 * 3600, "close_after_seconds": 600},
    })
}

/// Waits until the room's opening is done: its notice, the last of its steps (see
/// `lifecycle::plan`), is in the room as `member` sees it. Foyer does no more work on the
/// homeserver for this reservation until something changes.
async fn wait_opened(member: &TestUser, room_id: &str) {
    eventually(Duration::from_secs(15), "the opening notice, the last step of the opening", || async {
        member.notices(room_id).await.iter().any(|n| n.contains("is open")).then_some(())
    })
    .await;
}

/// The read API's view once it reports `joined` members.
async fn wait_joined(foyer: &TestFoyer, id: &str, joined: u64) -> Value {
    eventually(Duration::from_secs(15), &format!("{joined} joined member(s) of {id}"), || async {
        let (status, r) = foyer.reservation(id).await;
        (status == 200 && r["members"]["joined"] == joined).then_some(r)
    })
    .await
}

/// The room's current members (`user_id` → membership), as `viewer` sees them.
async fn members(viewer: &TestUser, room_id: &str) -> Vec<(String, String)> {
    let (status, body) = viewer.get(&format!("/_matrix/client/v3/rooms/{}/members", enc(room_id))).await;
    assert_eq!(status, 200, "members of {room_id}: {body}");
    let mut members: Vec<(String, String)> = body["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["state_key"].as_str().unwrap_or_default().into(),
                e["content"]["membership"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    members.sort();
    members
}

/// Every sample of Foyer's own work on the homeserver: lifecycle steps, done or failed.
async fn work_done(foyer: &TestFoyer) -> Vec<String> {
    foyer
        .metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with("foyer_lifecycle_steps_total"))
        .map(str::to_owned)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A real reservation whose room is open and settled, and what the tests that end by
/// showing nothing changed compare against.
struct Settled {
    id: String,
    room: String,
    /// The read API's record, once `bob` has joined.
    record: Value,
    members: Vec<(String, String)>,
    work: Vec<String>,
}

/// Opens a real reservation with `bob` holding a ticket, joined, and waits until Foyer
/// has nothing left to do for it.
async fn settled_room(foyer: &TestFoyer, bob: &TestUser) -> Settled {
    let id = unique("real");
    foyer.accept("reservation.created", opening_now(&id)).await;
    foyer.grant(&id, &[("t-bob", &bob.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    bob.join_once_invited(&room, Duration::from_secs(15)).await;
    let record = wait_joined(foyer, &id, 1).await;
    wait_opened(bob, &room).await;
    let members = members(&TestUser::bot(&foyer.slot), &room).await;
    let work = work_done(foyer).await;
    Settled { id, room, record, members, work }
}

const MEMBER_EVENTS: &str = r#"foyer_homeserver_events_total{type="m.room.member"}"#;
const ACCEPTED_TXNS: &str = r#"foyer_appservice_transactions_total{result="accepted"}"#;

/// One raw request: status, `WWW-Authenticate` and the body as JSON (or `Null`).
async fn call(
    foyer: &TestFoyer, method: Method, path: &str, authorization: Option<&str>, body: Option<&Value>,
) -> (u16, Option<String>, Value) {
    let mut req = foyer.http.request(method, format!("{}{path}", foyer.base_url));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.expect("foyer request");
    let status = resp.status().as_u16();
    let www = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap_or_default().to_owned());
    let text = resp.text().await.unwrap_or_default();
    (status, www, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Realm {
    Api,
    Homeserver,
}

#[tokio::test]
async fn every_route_but_health_and_webhook_needs_its_token() {
    let foyer = TestFoyer::start().await;
    let slot = foyer.slot.clone();
    // A reservation far in the future: a refused answer must not show any of it.
    let id = unique("secret-show");
    let mut far = opening_now(&id);
    far["starts_at"] = json!("2030-01-01T19:00:00Z");
    far["ends_at"] = json!("2030-01-01T21:00:00Z");
    foyer.accept("reservation.created", far).await;

    let empty_txn = json!({"events": []});
    let routes: Vec<(Method, String, Option<Value>, Realm, u16)> = vec![
        (Method::GET, "/api/v1/reservations".into(), None, Realm::Api, 200),
        (Method::GET, "/api/v1/reservations?phase=scheduled".into(), None, Realm::Api, 200),
        (Method::GET, format!("/api/v1/reservations/{id}"), None, Realm::Api, 200),
        (Method::GET, "/api/v1/reservations/no-such-show".into(), None, Realm::Api, 404),
        (Method::GET, "/metrics".into(), None, Realm::Api, 200),
        (Method::PUT, "/_matrix/app/v1/transactions/{txn}".into(), Some(empty_txn), Realm::Homeserver, 200),
        (Method::GET, "/_matrix/app/v1/users/@nobody:localhost".into(), None, Realm::Homeserver, 404),
        (Method::GET, "/_matrix/app/v1/rooms/%23nobody:localhost".into(), None, Realm::Homeserver, 404),
        (Method::POST, "/_matrix/app/v1/ping".into(), Some(json!({"transaction_id": "t"})), Realm::Homeserver, 200),
        // The appservice fallback sits behind the token too: unknown routes leak nothing.
        (Method::GET, "/_matrix/app/v1/thirdparty/protocol/x".into(), None, Realm::Homeserver, 404),
    ];

    let same_length_wrong = random_token();
    assert_eq!(same_length_wrong.len(), slot.api_token.len());
    let pings_before = foyer.metric("foyer_appservice_pings_total").await;
    let txns_before = foyer.metric(ACCEPTED_TXNS).await;
    let mut right_txns = 0.0;
    let mut right_pings = 0.0;
    let mut txn_counter = 0;
    for (method, path, body, realm, ok_status) in &routes {
        let right = match realm {
            Realm::Api => &slot.api_token,
            Realm::Homeserver => &slot.hs_token,
        };
        let other_realm = match realm {
            Realm::Api => &slot.hs_token,
            Realm::Homeserver => &slot.api_token,
        };
        let mut last_char_flipped = right.clone();
        let flipped = if last_char_flipped.ends_with('x') { "y" } else { "x" };
        last_char_flipped.replace_range(right.len() - 1.., flipped);
        let refused_headers: Vec<(&str, Option<String>)> = vec![
            ("no Authorization", None),
            ("a wrong token of the same length", Some(format!("Bearer {same_length_wrong}"))),
            ("the right token with its last char changed", Some(format!("Bearer {last_char_flipped}"))),
            ("a prefix of the right token", Some(format!("Bearer {}", &right[..right.len() - 1]))),
            ("the right token plus a char", Some(format!("Bearer {right}x"))),
            ("the other realm's token", Some(format!("Bearer {other_realm}"))),
            ("the as_token", Some(format!("Bearer {}", slot.as_token))),
            ("the right token under Basic", Some(format!("Basic {right}"))),
            ("the right token without a scheme", Some(right.clone())),
            ("an empty bearer", Some("Bearer ".into())),
        ];
        let with_query = |token: &str| {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}access_token={token}")
        };
        let mut cases: Vec<(String, String, Option<String>)> =
            refused_headers.into_iter().map(|(what, auth)| (what.to_owned(), path.clone(), auth)).collect();
        // Foyer reads only the Authorization header; ?access_token= never authenticates.
        cases.push(("the right token as ?access_token=".into(), with_query(right), None));
        cases.push(("the other realm's token as ?access_token=".into(), with_query(other_realm), None));
        cases.push(("the as_token as ?access_token=".into(), with_query(&slot.as_token), None));
        cases.push((
            "a wrong header with the right ?access_token=".into(),
            with_query(right),
            Some(format!("Bearer {same_length_wrong}")),
        ));

        for (what, path, auth) in cases {
            txn_counter += 1;
            let path = path.replace("{txn}", &format!("refused-{txn_counter}"));
            let (status, www, answer) = call(&foyer, method.clone(), &path, auth.as_deref(), body.as_ref()).await;
            match realm {
                Realm::Api => {
                    assert_eq!(
                        (status, answer["errcode"].as_str()),
                        (401, Some("FOYER_UNAUTHORIZED")),
                        "{method} {path} with {what}: {answer}"
                    );
                    assert_eq!(www.as_deref(), Some("Bearer"), "{method} {path} with {what}: WWW-Authenticate");
                }
                Realm::Homeserver => assert_eq!(
                    (status, answer["errcode"].as_str()),
                    (403, Some("M_FORBIDDEN")),
                    "{method} {path} with {what}: {answer}"
                ),
            }
            assert!(!answer.to_string().contains(&id), "{method} {path} with {what} shows the reservation: {answer}");
        }

        txn_counter += 1;
        let path = path.replace("{txn}", &format!("right-{txn_counter}"));
        for auth in [format!("Bearer {right}"), format!("bearer {right}")] {
            let (status, _, answer) = call(&foyer, method.clone(), &path, Some(&auth), body.as_ref()).await;
            assert_eq!(status, *ok_status, "{method} {path} with the right token: {answer}");
            if path.contains("/transactions/") {
                right_txns += 1.0;
            }
            if path.ends_with("/ping") {
                right_pings += 1.0;
            }
            if path.contains(&id) {
                assert_eq!(answer["reservation_id"], json!(id), "{answer}");
            }
        }
    }
    // The same empty transaction id twice is a duplicate: one accepted per route visit.
    let txns_after = foyer.metric(ACCEPTED_TXNS).await;
    assert_eq!(txns_after - txns_before, right_txns / 2.0, "only the right hs_token's transactions count");
    let pings_after = foyer.metric("foyer_appservice_pings_total").await;
    assert_eq!(pings_after - pings_before, right_pings, "only the right hs_token's pings count");

    // Health answers anyone; the webhook is authenticated by its signature, not by tokens.
    for path in ["/health/live", "/health/ready"] {
        let (status, _, answer) = call(&foyer, Method::GET, path, None, None).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let (status, _, _) = call(&foyer, Method::GET, path, Some(&format!("Bearer {same_length_wrong}")), None).await;
        assert_eq!(status, 200, "{path} with a wrong token");
    }
    let envelope =
        json!({"type": "reservation.cancelled", "timestamp": "2026-11-24T10:00:00Z", "data": {"reservation_id": id}});
    for token in [&slot.api_token, &slot.hs_token, &slot.as_token] {
        let (status, _, answer) =
            call(&foyer, Method::POST, "/webhooks/v1/events", Some(&format!("Bearer {token}")), Some(&envelope)).await;
        assert_eq!((status, answer["errcode"].as_str()), (401, Some("FOYER_BAD_SIGNATURE")), "{answer}");
    }
    assert_eq!(foyer.reservation(&id).await.1["phase"], "scheduled", "no unsigned webhook took effect");
}

/// Every form in which a secret could leak: the string itself, and a webhook key's
/// bytes as base64 (padded, unpadded, URL-safe), lowercase hex and a Rust byte list.
fn secret_forms(label: &str, secret: &str) -> Vec<(String, String)> {
    let mut forms = vec![(label.to_owned(), secret.to_owned())];
    if let Some(key) = secret.strip_prefix("whsec_") {
        let bytes = base64::engine::general_purpose::STANDARD.decode(key).expect("webhook key is base64");
        assert!(bytes.len() >= 16, "{label}");
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            forms.push((format!("{label} key as base64"), engine.encode(&bytes)));
        }
        forms.push((format!("{label} key as hex"), hex::encode(&bytes)));
        forms.push((
            format!("{label} key as a byte list"),
            format!("{:?}", &bytes[..8]).trim_end_matches(']').to_owned(),
        ));
    }
    forms
}

#[tokio::test]
async fn secrets_never_reach_the_log_even_at_trace() {
    let hs = Synapse::shared();
    let admin = hs.create_admin().await;
    let admin_token = admin.access_token.clone();
    let extra = format!("rooms:\n  archive_mode: delete\nsynapse_admin:\n  token: {admin_token}\n");
    let foyer = TestFoyer::start_with(move |yaml| yaml + &extra, &[("RUST_LOG", "trace")]).await;
    let alice = hs.create_user("alice").await;

    // The secrets, as the config the harness wrote holds them.
    let config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(foyer.dir().join("config.yaml")).expect("config")).expect("yaml");
    let text = |v: &serde_yaml::Value| v.as_str().expect("a secret string").to_owned();
    let mut secrets = vec![
        ("as_token".to_owned(), text(&config["appservice"]["as_token"])),
        ("hs_token".to_owned(), text(&config["appservice"]["hs_token"])),
        ("api.token".to_owned(), text(&config["api"]["token"])),
        ("synapse_admin.token".to_owned(), text(&config["synapse_admin"]["token"])),
    ];
    let webhook_secrets = config["webhooks"]["secrets"].as_sequence().expect("webhooks.secrets");
    assert!(!webhook_secrets.is_empty());
    for (i, s) in webhook_secrets.iter().enumerate() {
        secrets.extend(secret_forms(&format!("webhooks.secrets[{i}]"), &text(s)));
    }
    assert_eq!(secrets[0].1, foyer.slot.as_token);
    assert_eq!(secrets[3].1, admin_token);
    assert!(secrets.iter().any(|(_, s)| s == WEBHOOK_SECRET));

    // The whole scenario: open, tickets, reads, refusals, a join, live, cancel (delete).
    let id = unique("trace");
    foyer.accept("reservation.created", opening_now(&id)).await;
    foyer.grant(&id, &[("t-alice", &alice.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    let api = Some(foyer.slot.api_token.as_str());
    assert_eq!(foyer.request(Method::GET, "/api/v1/reservations?phase=open", api, None).await.0, 200);
    assert_eq!(foyer.reservation(&id).await.0, 200);
    assert!(foyer.metrics_text().await.contains("foyer_webhooks_total"));

    let other_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 24]>());
    let body = envelope("stream.started", json!({"reservation_id": id}));
    let now = chrono_now();
    let bad = sign_webhook(&format!("whsec_{other_key}"), "msg_bad", now, &body);
    let (status, answer) = foyer
        .post_webhook(
            &[("webhook-id", "msg_bad"), ("webhook-timestamp", &now.to_string()), ("webhook-signature", &bad)],
            "application/json",
            body,
        )
        .await;
    assert_eq!((status, answer["errcode"].as_str()), (401, Some("FOYER_BAD_SIGNATURE")), "{answer}");
    let wrong = random_token();
    assert_eq!(foyer.request(Method::GET, &format!("/api/v1/reservations/{id}"), Some(&wrong), None).await.0, 401);
    let (status, _) = foyer.request(Method::PUT, "/_matrix/app/v1/transactions/x", Some(&wrong), Some(json!({}))).await;
    assert_eq!(status, 403);

    alice.join_once_invited(&room, Duration::from_secs(15)).await;
    wait_joined(&foyer, &id, 1).await; // Synapse pushed the join in a transaction
    // A fan claims an email ticket with `!claim` as the code is printed, hyphenated: the
    // code is a secret in that form and in the one without hyphens (URLs, the store).
    let email = json!({"ticket_id": "t-email", "email": format!("{}@fans.example.org", unique("fan"))});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email]})).await;
    let path = format!("/api/v1/reservations/{id}/tickets");
    let (status, listed) = foyer.request(Method::GET, &path, api, None).await;
    assert_eq!(status, 200, "{listed}");
    let code = listed["tickets"].as_array().and_then(|t| t.iter().find_map(|t| t["claim"]["code"].as_str()));
    let code = code.expect("the email ticket's claim code").to_owned();
    assert_eq!(code.matches('-').count(), 2, "printed hyphenated: {code}");
    let fan = hs.create_user("fan").await;
    let dm = fan.open_direct_chat(&foyer.slot.bot_user_id()).await;
    let answer = fan.ask(&dm, &format!("!claim {code}")).await;
    assert!(answer.contains("is claimed"), "{answer}");
    secrets.push(("a claim code, hyphenated".to_owned(), code.clone()));
    secrets.push(("a claim code".to_owned(), code.replace('-', "")));
    foyer.accept("stream.started", json!({"reservation_id": id})).await;
    eventually(Duration::from_secs(15), "phase live", || async {
        (foyer.reservation(&id).await.1["phase"] == "live").then_some(())
    })
    .await;
    foyer.accept("reservation.cancelled", json!({"reservation_id": id, "reason": "a test"})).await;
    eventually(Duration::from_secs(30), "the cancelled room deleted through the admin API", || async {
        let (status, _) = admin.get(&format!("/_synapse/admin/v1/rooms/{}", enc(&room))).await;
        (status == 404).then_some(())
    })
    .await;
    assert_eq!(foyer.reservation(&id).await.1["phase"], "cancelled");
    // The archive's last line: logged once the deletion is done, maybe after we saw it.
    eventually(Duration::from_secs(15), "the archive's last line in the log", || async {
        foyer.log().contains("room archived").then_some(())
    })
    .await;

    let log = foyer.log();
    let trace_lines = log.lines().filter(|l| l.contains(" TRACE ")).count();
    eprintln!("trace log: {} bytes, {} lines, {trace_lines} TRACE lines", log.len(), log.lines().count());
    assert!(trace_lines >= 20 && log.len() >= 30_000, "the log did not run at trace: {trace_lines} TRACE lines");
    assert!(log.contains(&room) && log.contains(&id), "the log covers the scenario");
    assert!(log.contains(&alice.user_id) && log.contains("homeserver event"), "the log shows Synapse's transaction");
    for (label, secret) in &secrets {
        if let Some(at) = log.find(secret.as_str()) {
            let line = log[..at].rsplit('\n').next().unwrap_or_default();
            panic!("{label} is in the log, after: {line:?}");
        }
    }
}

#[tokio::test]
async fn the_bot_ignores_rooms_it_does_not_manage() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (alice, bob, carol) =
        (hs.create_user("alice").await, hs.create_user("bob").await, hs.create_user("carol").await);
    let bot = TestUser::bot(&foyer.slot);
    let bot_id = foyer.slot.bot_user_id();

    // A real reservation with bob holding a ticket, joined.
    let Settled { id, room: real_room, record: before, members: real_members_before, work: work_before } =
        settled_room(&foyer, &bob).await;
    let member_events_before = foyer.metric(MEMBER_EVENTS).await;

    // Alice's own room, dressed up as the reservation's.
    let foreign = alice.create_room(&[]).await;
    for text in ["hello bot", "!join", &format!("please open {id}")] {
        assert_eq!(alice.send_text(&foreign, text).await.0, 200);
    }
    let fake =
        json!({"reservation_id": id, "title": "Fake", "starts_at": before["starts_at"], "ends_at": before["ends_at"]});
    let path = format!("/_matrix/client/v3/rooms/{}/state/org.foyer.reservation/", enc(&foreign));
    let (status, answer) = alice.request(Method::PUT, &path, Some(fake)).await;
    assert_eq!(status, 200, "fake state: {answer}");
    for user in [&bob.user_id, &carol.user_id, &bot_id] {
        let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&foreign));
        let (status, answer) = alice.request(Method::POST, &invite, Some(json!({"user_id": user}))).await;
        assert_eq!(status, 200, "invite {user}: {answer}");
    }
    assert_eq!(alice.send_text(&foreign, "are you there?").await.0, 200);

    // Synapse pushes the bot's invite: Foyer has processed it once the counter moves.
    eventually(Duration::from_secs(15), "the bot's invite to reach Foyer", || async {
        (foyer.metric(MEMBER_EVENTS).await > member_events_before).then_some(())
    })
    .await;
    // Hand Foyer the whole foreign timeline too, as if the bot had been in the room.
    let timeline = alice.messages(&foreign).await;
    assert!(timeline.iter().any(|e| e["type"] == "org.foyer.reservation"), "{timeline:?}");
    let txn = json!({"events": timeline.iter().rev().map(|e| {
        let mut e = e.clone();
        e["room_id"] = json!(foreign);
        e
    }).collect::<Vec<_>>()});
    let hs_token = Some(foyer.slot.hs_token.as_str());
    let (status, answer) = foyer
        .request(Method::PUT, &format!("/_matrix/app/v1/transactions/replay-{}", random_token()), hs_token, Some(txn))
        .await;
    assert_eq!((status, answer), (200, json!({})));
    tokio::time::sleep(Duration::from_secs(4)).await; // only to prove nothing follows

    assert_eq!(alice.membership_of(&foreign, &bot_id).await.as_deref(), Some("invite"), "the bot never joined");
    let (status, joined) = bot.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(status, 200);
    assert!(!joined["joined_rooms"].as_array().unwrap().contains(&json!(foreign)), "{joined}");
    let timeline = alice.messages(&foreign).await;
    let by_bot: Vec<&Value> = timeline.iter().filter(|e| e["sender"] == json!(bot_id)).collect();
    assert!(by_bot.is_empty(), "the bot sent events in a foreign room: {by_bot:?}");
    for (user, want) in [(&bob.user_id, "invite"), (&carol.user_id, "invite"), (&alice.user_id, "join")] {
        assert_eq!(alice.membership_of(&foreign, user).await.as_deref(), Some(want), "{user} in the foreign room");
    }

    let (status, after) = foyer.reservation(&id).await;
    assert_eq!(status, 200);
    assert_eq!(after, before, "the real reservation is unchanged");
    assert_eq!(members(&bot, &real_room).await, real_members_before, "the real room's members are unchanged");
    assert_eq!(work_done(&foyer).await, work_before, "Foyer did no work on the homeserver");
    let (_, list) = foyer.request(Method::GET, "/api/v1/reservations", Some(&foyer.slot.api_token), None).await;
    assert_eq!(list["reservations"].as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test]
async fn appservice_events_for_foreign_rooms_change_nothing() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (alice, bob) = (hs.create_user("alice").await, hs.create_user("bob").await);
    let bot = TestUser::bot(&foyer.slot);

    let Settled { id, room: real_room, record: before, members: real_members_before, work: work_before } =
        settled_room(&foyer, &bob).await;

    // Bob joins and leaves an unrelated room; in one the bot sits (joined by the test with
    // the as_token, not by Foyer), so Synapse pushes his membership to Foyer.
    let plain = alice.create_room(&[bob.user_id.as_str()]).await;
    let watched = alice.create_room(&[bob.user_id.as_str(), foyer.slot.bot_user_id().as_str()]).await;
    assert_eq!(bot.join(&watched).await.0, 200);
    for room in [&plain, &watched] {
        assert_eq!(bob.join(room).await.0, 200);
        let leave = format!("/_matrix/client/v3/rooms/{}/leave", enc(room));
        assert_eq!(bob.request(Method::POST, &leave, Some(json!({}))).await.0, 200);
    }
    // Foyer logs each event of a transaction it accepted, after recording its facts.
    eventually(Duration::from_secs(15), "bob's leave of the watched room to reach Foyer", || async {
        foyer
            .log()
            .lines()
            .any(|l| {
                l.contains("homeserver event")
                    && l.contains(&watched)
                    && l.contains(&bob.user_id)
                    && l.contains("membership=\"leave\"")
            })
            .then_some(())
    })
    .await;

    // And straight from an impostor-free "homeserver": member events of a foreign room
    // naming the ticket holder.
    let foreign = "!not-foyers-room:localhost";
    let member = |n: usize, user: &str, membership: &str| {
        json!({
            "event_id": format!("$foreign-{n}-{}", random_token()), "room_id": foreign, "type": "m.room.member",
            "sender": user, "state_key": user, "content": {"membership": membership},
            "origin_server_ts": Utc::now().timestamp_millis(),
        })
    };
    let events = vec![
        member(1, &bob.user_id, "invite"),
        member(2, &bob.user_id, "join"),
        member(3, &bob.user_id, "leave"),
        member(4, &bob.user_id, "ban"),
        member(5, &alice.user_id, "join"),
        member(6, &bob.user_id, "knock"),
    ];
    let accepted_before = foyer.metric(ACCEPTED_TXNS).await;
    let member_events_before = foyer.metric(MEMBER_EVENTS).await;
    let path = format!("/_matrix/app/v1/transactions/foreign-{}", random_token());
    let (status, answer) =
        foyer.request(Method::PUT, &path, Some(&foyer.slot.hs_token), Some(json!({"events": events}))).await;
    assert_eq!((status, answer), (200, json!({})));
    assert_eq!(foyer.metric(ACCEPTED_TXNS).await, accepted_before + 1.0);
    assert_eq!(foyer.metric(MEMBER_EVENTS).await, member_events_before + 6.0, "all six events were read");
    tokio::time::sleep(Duration::from_secs(3)).await; // only to prove nothing follows

    let (status, after) = foyer.reservation(&id).await;
    assert_eq!(status, 200);
    assert_eq!(after, before, "the real reservation is unchanged");
    assert_eq!(after["members"], json!({"invited": 0, "joined": 1, "holders_joined": 1}));
    assert_eq!(members(&bot, &real_room).await, real_members_before, "nobody was kicked or invited");
    assert_eq!(bot.membership_of(&real_room, &bob.user_id).await.as_deref(), Some("join"));
    assert_eq!(work_done(&foyer).await, work_before, "Foyer did no work on the homeserver");
    let by_bot = alice.messages(&watched).await.into_iter().filter(|e| e["sender"] == json!(bot.user_id)).count();
    assert_eq!(by_bot, 1, "the bot's only event in the watched room is the test's join");
}
