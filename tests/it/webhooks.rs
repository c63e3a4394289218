//! `POST /webhooks/v1/events` and the read API, against a real Foyer process.
//! "Nothing stored" is checked twice: the reservation is unknown to the read API, and
//! the same `webhook-id` is still free (a valid retry gets 202, not `duplicate`).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{
    eventually,
    foyer::{Sender, TestFoyer, WEBHOOK_SECRET, chrono_now, envelope, sign_webhook},
    random_token, unique,
};

/// Webhook headers as (name, value) pairs.
type Headers<'a> = Vec<(&'a str, &'a str)>;

fn jazz(id: &str) -> Value {
    json!({
        "reservation_id": id, "revision": 3, "title": "Friday Night Jazz",
        "description": "Live from the Blue Room",
        "starts_at": "2029-11-27T19:00:00Z", "ends_at": "2029-11-27T21:00:00Z",
        "stream_url": "https://stream.example.org/watch/jazz",
        "channel": {"id": "blue-room", "name": "The Blue Room"},
        "hosts": ["@dj:localhost"],
        "chat": {"open_before_seconds": 900, "close_after_seconds": 1800}
    })
}

/// Asserts that the reservation is unknown and that `webhook_id` was not consumed.
async fn assert_nothing_stored(foyer: &TestFoyer, webhook_id: &str, reservation_id: &str) {
    let (status, body) = foyer.reservation(reservation_id).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("FOYER_NOT_FOUND")), "{body}");
    let (status, body) = foyer.send_webhook_as(webhook_id, "reservation.created", jazz(reservation_id)).await;
    assert_eq!((status, body), (202, json!({"status": "accepted"})), "the webhook-id was recorded by a rejected event");
}

#[tokio::test]
async fn a_signed_reservation_is_stored_and_read_back() {
    let foyer = TestFoyer::start().await;
    let id = unique("jazz");
    let (status, body) = foyer.send_webhook("reservation.created", jazz(&id)).await;
    assert_eq!((status, body), (202, json!({"status": "accepted"})));
    let (status, r) = foyer.reservation(&id).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["reservation_id"], id.as_str());
    assert_eq!(r["title"], "Friday Night Jazz");
    assert_eq!(r["starts_at"], "2029-11-27T19:00:00Z");
    assert_eq!(r["ends_at"], "2029-11-27T21:00:00Z");
    assert_eq!(r["opens_at"], "2029-11-27T18:45:00Z", "chat.open_before_seconds: 900");
    assert_eq!(r["archives_at"], "2029-11-27T21:30:00Z", "chat.close_after_seconds: 1800");
    assert_eq!(r["phase"], "scheduled");
    assert_eq!(r["room_id"], Value::Null);
    assert_eq!(r["room_alias"], foyer.alias(&id));
    assert_eq!(
        r["tickets"],
        json!({"active": 0, "revoked": 0, "uninvitable": 0, "unclaimed": 0, "claimed": 0, "holders": 0})
    );
    assert_eq!(r["members"], json!({"invited": 0, "joined": 0, "holders_joined": 0}));
    assert!(foyer.metric(r#"foyer_webhooks_total{type="reservation.created",result="accepted"}"#).await >= 1.0);
}

#[tokio::test]
async fn bad_signatures_get_401_and_store_nothing() {
    let foyer = TestFoyer::start().await;
    let id = unique("sig");
    let body = envelope("reservation.created", jazz(&id));
    let now = chrono_now();
    let wid = format!("msg_{}", random_token());
    let good = sign_webhook(WEBHOOK_SECRET, &wid, now, &body);
    let wrong_secret = sign_webhook("whsec_c2VjcmV0LXRoYXQtaXMtbm90LWNvbmZpZ3VyZWQ=", &wid, now, &body);
    let old = now - 301;
    let stale_sig = sign_webhook(WEBHOOK_SECRET, &wid, old, &body);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'J').unwrap();
    tampered[at] = b'j';
    let v2 = good.replacen("v1,", "v2,", 1);
    let ts = now.to_string();
    let old_ts = old.to_string();
    let cases: Vec<(&str, Headers, Vec<u8>, &str)> = vec![
        (
            "tampered body",
            vec![("webhook-id", &wid), ("webhook-timestamp", &ts), ("webhook-signature", &good)],
            tampered,
            "no signature matches",
        ),
        (
            "wrong secret",
            vec![("webhook-id", &wid), ("webhook-timestamp", &ts), ("webhook-signature", &wrong_secret)],
            body.clone(),
            "no signature matches",
        ),
        (
            "outside tolerance",
            vec![("webhook-id", &wid), ("webhook-timestamp", &old_ts), ("webhook-signature", &stale_sig)],
            body.clone(),
            "tolerance",
        ),
        (
            "no webhook-id",
            vec![("webhook-timestamp", &ts), ("webhook-signature", &good)],
            body.clone(),
            "webhook-id header is missing",
        ),
        (
            "no timestamp",
            vec![("webhook-id", &wid), ("webhook-signature", &good)],
            body.clone(),
            "webhook-timestamp header is missing",
        ),
        (
            "no signature",
            vec![("webhook-id", &wid), ("webhook-timestamp", &ts)],
            body.clone(),
            "webhook-signature header is missing",
        ),
        (
            "unsupported version",
            vec![("webhook-id", &wid), ("webhook-timestamp", &ts), ("webhook-signature", &v2)],
            body.clone(),
            "no v1 signature",
        ),
    ];
    for (what, headers, body, needle) in cases {
        let (status, answer) = foyer.post_webhook(&headers, "application/json", body).await;
        assert_eq!((status, answer["errcode"].as_str()), (401, Some("FOYER_BAD_SIGNATURE")), "{what}: {answer}");
        assert!(answer["error"].as_str().unwrap_or_default().contains(needle), "{what}: {answer}");
    }
    assert_nothing_stored(&foyer, &wid, &id).await;
}

#[tokio::test]
async fn each_rule_gets_a_400_naming_the_field_and_stores_nothing() {
    let foyer = TestFoyer::start().await;
    let too_many_tickets: Vec<Value> =
        (0..1001).map(|i| json!({"ticket_id": format!("t{i}"), "user_id": "@a:localhost"})).collect();
    let too_many_ids: Vec<Value> = (0..1001).map(|i| json!(format!("t{i}"))).collect();
    // (event type, field to set in a valid body (None = remove), value, expected path)
    let upsert: Vec<(&str, Option<Value>, &str)> = vec![
        ("reservation_id", None, "data.reservation_id"),
        ("reservation_id", Some(json!("has space")), "data.reservation_id"),
        ("reservation_id", Some(json!("x".repeat(129))), "data.reservation_id"),
        ("revision", Some(json!(-1)), "data.revision"),
        ("revision", Some(json!("3")), "data.revision"),
        ("revision", Some(json!(18446744073709551616.0)), "data.revision"),
        ("title", None, "data.title"),
        ("title", Some(json!("")), "data.title"),
        ("title", Some(json!("t".repeat(256))), "data.title"),
        ("description", Some(json!("d".repeat(4001))), "data.description"),
        ("starts_at", None, "data.starts_at"),
        ("starts_at", Some(json!("2029-11-27 19:00")), "data.starts_at"),
        ("starts_at", Some(json!("2029-11-27T19:00:00")), "data.starts_at"),
        ("ends_at", Some(json!("2029-11-27T18:00:00Z")), "data.ends_at"),
        ("ends_at", Some(json!("2029-12-05T19:00:01Z")), "data.ends_at"),
        ("stream_url", Some(json!("ftp://stream.example.org/x")), "data.stream_url"),
        ("channel", Some(json!("blue-room")), "data.channel"),
        ("channel", Some(json!({"id": "blue-room"})), "data.channel.name"),
        ("hosts", Some(json!(["@dj:localhost", "dj"])), "data.hosts[1]"),
        ("hosts", Some(json!("@dj:localhost")), "data.hosts"),
        ("chat", Some(json!({"open_before_seconds": 604801})), "data.chat.open_before_seconds"),
        ("chat", Some(json!({"close_after_seconds": -5})), "data.chat.close_after_seconds"),
    ];
    let mut cases: Vec<(String, String, Value, String)> = Vec::new();
    for (field, value, path) in upsert {
        let id = unique("rule");
        let mut data = jazz(&id);
        match value {
            Some(v) => data[field] = v,
            None => {
                data.as_object_mut().unwrap().remove(field);
            }
        }
        cases.push((id, "reservation.created".into(), data, path.into()));
    }
    let others: Vec<(&str, Value, &str)> = vec![
        ("reservation.cancelled", json!({"reason": "x"}), "data.reservation_id"),
        ("reservation.cancelled", json!({"reservation_id": "ok", "reason": "r".repeat(1001)}), "data.reason"),
        ("ticket.granted", json!({"reservation_id": "ok", "tickets": []}), "data.tickets"),
        ("ticket.granted", json!({"reservation_id": "ok", "tickets": too_many_tickets}), "data.tickets"),
        (
            "ticket.granted",
            json!({"reservation_id": "ok", "tickets": [{"ticket_id": "t", "user_id": "alice"}]}),
            "data.tickets[0].user_id",
        ),
        (
            "ticket.granted",
            json!({"reservation_id": "ok", "tickets": [{"user_id": "@a:localhost"}]}),
            "data.tickets[0].ticket_id",
        ),
        ("ticket.revoked", json!({"reservation_id": "ok", "ticket_ids": []}), "data.ticket_ids"),
        ("ticket.revoked", json!({"reservation_id": "ok", "ticket_ids": too_many_ids}), "data.ticket_ids"),
        ("ticket.revoked", json!({"reservation_id": "ok", "ticket_ids": [7]}), "data.ticket_ids[0]"),
        ("stream.started", json!({"reservation_id": "ok", "at": "yesterday"}), "data.at"),
        ("stream.ended", json!({"reservation_id": "bad id"}), "data.reservation_id"),
        ("reservation.deleted", json!({"reservation_id": "ok"}), "type"),
    ];
    for (kind, data, path) in others {
        cases.push((unique("other"), kind.into(), data, path.into()));
    }
    for (id, kind, data, path) in cases {
        let wid = format!("msg_{}", random_token());
        let (status, answer) = foyer.send_webhook_as(&wid, &kind, data.clone()).await;
        assert_eq!((status, answer["errcode"].as_str()), (400, Some("FOYER_BAD_PAYLOAD")), "{kind} {data}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.starts_with(&format!("{path}: ")), "{kind}: {message:?} should name {path}");
        assert_nothing_stored(&foyer, &wid, &id).await;
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400() {
    let foyer = TestFoyer::start().await;
    let wid = format!("msg_{}", random_token());
    let body = b"{not json".to_vec();
    let now = chrono_now();
    let sig = sign_webhook(WEBHOOK_SECRET, &wid, now, &body);
    let ts = now.to_string();
    let headers =
        [("webhook-id", wid.as_str()), ("webhook-timestamp", ts.as_str()), ("webhook-signature", sig.as_str())];
    let (status, answer) = foyer.post_webhook(&headers, "application/json", body).await;
    assert_eq!((status, answer["errcode"].as_str()), (400, Some("FOYER_BAD_PAYLOAD")), "{answer}");
    assert!(answer["error"].as_str().unwrap_or_default().starts_with("body: "), "{answer}");
}

#[tokio::test]
async fn duplicates_and_stale_revisions_change_nothing() {
    let foyer = TestFoyer::start().await;
    let id = unique("rev");
    let wid = format!("msg_{}", random_token());
    assert_eq!(foyer.send_webhook_as(&wid, "reservation.created", jazz(&id)).await.0, 202);
    let mut renamed = jazz(&id);
    renamed["title"] = json!("Renamed");
    renamed["revision"] = json!(9);
    let (status, body) = foyer.send_webhook_as(&wid, "reservation.updated", renamed).await;
    assert_eq!((status, body), (200, json!({"status": "duplicate"})));
    assert_eq!(foyer.reservation(&id).await.1["title"], "Friday Night Jazz");

    let mut older = jazz(&id);
    older["revision"] = json!(2);
    older["title"] = json!("Older");
    let (status, body) = foyer.send_webhook("reservation.updated", older).await;
    assert_eq!((status, body), (200, json!({"status": "stale"})));
    assert_eq!(foyer.reservation(&id).await.1["title"], "Friday Night Jazz");

    let mut newer = jazz(&id);
    newer["revision"] = json!(4);
    newer["title"] = json!("Newer");
    newer["starts_at"] = json!("2029-11-28T19:00:00Z");
    newer["ends_at"] = json!("2029-11-28T20:00:00Z");
    foyer.accept("reservation.updated", newer).await;
    let (_, r) = foyer.reservation(&id).await;
    assert_eq!((r["title"].as_str(), r["revision"].as_u64()), (Some("Newer"), Some(4)));
    assert_eq!(r["opens_at"], "2029-11-28T18:45:00Z", "a reschedule moves the opening");
}

/// Contract §3 and §7: a cancellation erases the tickets' addresses and stops their
/// codes, and a grant after it is answered `closed` and stores nothing.
#[tokio::test]
async fn grants_after_a_cancellation_are_closed_and_its_addresses_are_erased() {
    let foyer = TestFoyer::start().await;
    let id = unique("closed");
    foyer.accept("reservation.created", jazz(&id)).await;
    let fan = json!({"ticket_id": "t-1", "email": "fan@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [fan]})).await;
    let tickets = || async {
        let path = format!("/api/v1/reservations/{id}/tickets");
        foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await.1["tickets"].clone()
    };
    assert_eq!(tickets().await[0]["email_masked"], "f***@example.org");
    foyer.accept("reservation.cancelled", json!({"reservation_id": id})).await;
    let erased = tickets().await;
    assert_eq!((&erased[0]["email_masked"], &erased[0]["claim"]), (&json!(null), &json!(null)), "{erased}");

    let late = json!({"reservation_id": id, "tickets": [{"ticket_id": "t-2", "email": "late@example.org"}]});
    let (status, body) = foyer.send_webhook("ticket.granted", late).await;
    assert_eq!((status, body), (200, json!({"status": "closed"})));
    assert_eq!(tickets().await.as_array().map(Vec::len), Some(1), "nothing stored");
}

#[tokio::test]
async fn tickets_sent_before_their_reservation_count_once_it_arrives() {
    let foyer = TestFoyer::start().await;
    let id = unique("early");
    let grant = json!({"reservation_id": id, "tickets": [
        {"ticket_id": "t-1", "user_id": "@alice:localhost"},
        {"ticket_id": "t-2", "user_id": "@bob:localhost"},
        {"ticket_id": "t-3", "user_id": "@carol:localhost"}]});
    foyer.accept("ticket.granted", grant.clone()).await;
    // A revocation that overtakes its grant still wins.
    let revoke = json!({"reservation_id": id, "ticket_ids": ["t-3", "t-4"]});
    foyer.accept("ticket.revoked", revoke).await;
    foyer
        .accept(
            "ticket.granted",
            json!({"reservation_id": id, "tickets": [{"ticket_id": "t-4", "user_id": "@dave:localhost"}]}),
        )
        .await;
    assert_eq!(foyer.reservation(&id).await.0, 404, "no reservation yet");
    // An update before the create upserts.
    foyer.accept("reservation.updated", jazz(&id)).await;
    let (_, r) = foyer.reservation(&id).await;
    assert_eq!(
        r["tickets"],
        json!({"active": 2, "revoked": 2, "uninvitable": 0, "unclaimed": 0, "claimed": 0, "holders": 2}),
        "{r}"
    );
    // The same grant again (a new delivery of old news) changes nothing.
    foyer.accept("ticket.granted", grant).await;
    assert_eq!(
        foyer.reservation(&id).await.1["tickets"],
        json!({"active": 2, "revoked": 2, "uninvitable": 0, "unclaimed": 0, "claimed": 0, "holders": 2})
    );
}

#[tokio::test]
async fn cancellation_and_stream_signals_set_the_phase() {
    let foyer = TestFoyer::start().await;
    let live = unique("live");
    foyer.accept("reservation.created", jazz(&live)).await;
    foyer.accept("stream.started", json!({"reservation_id": live})).await;
    // Live needs the room, which the early start opens at once; until then it is opening.
    let first = foyer.reservation(&live).await.1;
    let room = first["room_id"].is_string();
    assert!(
        (room && first["phase"] == "live") || (!room && first["phase"] == "scheduled" && first["opening"] == true),
        "{first}"
    );
    eventually(Duration::from_secs(20), "live once the room exists", || async {
        let now = foyer.reservation(&live).await.1;
        (now["phase"] == "live").then_some(())
    })
    .await;
    assert!(foyer.reservation(&live).await.1["room_id"].is_string(), "live with a room");
    foyer.accept("stream.ended", json!({"reservation_id": live})).await;
    assert_eq!(foyer.reservation(&live).await.1["phase"], "ended");

    let cancelled = unique("cancel");
    // The cancellation overtakes the creation; the reservation is still cancelled.
    foyer.accept("reservation.cancelled", json!({"reservation_id": cancelled, "reason": "ill"})).await;
    foyer.accept("reservation.created", jazz(&cancelled)).await;
    assert_eq!(foyer.reservation(&cancelled).await.1["phase"], "cancelled");

    let (status, list) =
        foyer.request(Method::GET, "/api/v1/reservations?phase=cancelled", Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> =
        list["reservations"].as_array().unwrap().iter().filter_map(|r| r["reservation_id"].as_str()).collect();
    assert_eq!(ids, vec![cancelled.as_str()]);
}

#[tokio::test]
async fn the_read_api_needs_its_token_and_pages() {
    let foyer = TestFoyer::start().await;
    for token in [None, Some(foyer.slot.hs_token.as_str())] {
        let (status, body) = foyer.request(Method::GET, "/api/v1/reservations/x", token, None).await;
        assert_eq!((status, body["errcode"].as_str()), (401, Some("FOYER_UNAUTHORIZED")));
    }
    for i in 0..5 {
        foyer.accept("reservation.created", jazz(&format!("page-{i}"))).await;
    }
    let token = Some(foyer.slot.api_token.as_str());
    let mut seen = Vec::new();
    let mut path = "/api/v1/reservations?limit=2".to_owned();
    loop {
        let (status, page) = foyer.request(Method::GET, &path, token, None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["reservations"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|r| r["reservation_id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/reservations?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..5).map(|i| format!("page-{i}")).collect::<Vec<_>>());
    let (status, body) = foyer.request(Method::GET, "/api/v1/reservations?phase=soon", token, None).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("FOYER_BAD_QUERY")));
}

#[tokio::test]
async fn oversized_bodies_get_413_and_other_content_types_415() {
    let foyer = TestFoyer::start().await;
    let big = vec![b' '; 2 * 1024 * 1024];
    let (status, body) = foyer.post_webhook(&[], "application/json", big).await;
    assert_eq!((status, body["errcode"].as_str()), (413, Some("FOYER_TOO_LARGE")), "{body}");
    let (status, body) = foyer.post_webhook(&[], "text/plain", b"{}".to_vec()).await;
    assert_eq!((status, body["errcode"].as_str()), (415, Some("FOYER_BAD_CONTENT_TYPE")), "{body}");
}

#[tokio::test]
async fn a_locked_database_gets_503_and_the_retry_succeeds() {
    let mut foyer = TestFoyer::start().await;
    // Another process holds SQLite's write lock past Foyer's busy timeout.
    let mut locker = std::process::Command::new("python3")
        .args(["-c", "import sqlite3, sys, time\nc = sqlite3.connect('foyer.db', isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\nsys.stdin.read()"])
        .current_dir(foyer.dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(locker.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let id = unique("locked");
    let wid = format!("msg_{}", random_token());
    let (status, body) = foyer.send_webhook_as(&wid, "reservation.created", jazz(&id)).await;
    assert_eq!((status, body["errcode"].as_str()), (503, Some("FOYER_UNAVAILABLE")), "{body}");
    assert!(foyer.child_is_running(), "no crash:\n{}", foyer.log());
    // A platform's sender retries the same webhook-id until it gets a 2xx.
    let sender = Sender::new(&foyer.base_url);
    let body = envelope("reservation.created", jazz(&id));
    let retrying = tokio::spawn(async move { sender.deliver(&wid, &body, Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(locker.stdin.take());
    locker.wait().unwrap();
    let delivery = retrying.await.expect("sender");
    assert_eq!(delivery.status, 202, "the sender's retry is accepted: {delivery:?}");
    assert_eq!(foyer.reservation(&id).await.0, 200);
    assert!(!foyer.log().contains("panicked"));
}

#[tokio::test]
async fn sigkill_right_after_a_202_loses_nothing() {
    let mut foyer = TestFoyer::start().await;
    let id = unique("durable");
    foyer.accept("reservation.created", jazz(&id)).await;
    foyer
        .accept(
            "ticket.granted",
            json!({"reservation_id": id, "tickets": [{"ticket_id": "t", "user_id": "@a:localhost"}]}),
        )
        .await;
    foyer.kill_and_restart().await;
    let (status, r) = foyer.reservation(&id).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["title"].as_str(), r["tickets"]["active"].as_u64()), (Some("Friday Night Jazz"), Some(1)));
}

#[tokio::test]
async fn the_readme_sender_script_is_accepted() {
    let foyer = TestFoyer::start().await;
    let id = unique("script");
    let out = std::process::Command::new("python3")
        .arg(crate::common::repo_root().join("scripts/send-webhook"))
        .args(["--url", &foyer.base_url, "--secret", WEBHOOK_SECRET, "reservation.created", &jazz(&id).to_string()])
        .output()
        .expect("run scripts/send-webhook");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with("202 "), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(foyer.reservation(&id).await.0, 200);
}

#[tokio::test]
async fn the_bot_is_never_a_host_or_a_ticket_holder() {
    let foyer = TestFoyer::start().await;
    let bot = foyer.slot.bot_user_id();

    let id = unique("bothost");
    let mut data = jazz(&id);
    data["hosts"] = json!(["@dj:localhost", bot]);
    let wid = format!("msg_{}", random_token());
    let (status, answer) = foyer.send_webhook_as(&wid, "reservation.created", data).await;
    assert_eq!((status, answer["errcode"].as_str()), (400, Some("FOYER_BAD_PAYLOAD")), "{answer}");
    let message = answer["error"].as_str().unwrap_or_default();
    assert_eq!(message, format!("data.hosts[1]: {bot} is Foyer's own bot, never a host or ticket holder"));
    assert_nothing_stored(&foyer, &wid, &id).await;

    // A batch with the bot in it is refused whole: alice's ticket is not kept either.
    let id = unique("botticket");
    let tickets = json!([{"ticket_id": "t-1", "user_id": "@alice:localhost"}, {"ticket_id": "t-2", "user_id": bot}]);
    let wid = format!("msg_{}", random_token());
    let (status, answer) =
        foyer.send_webhook_as(&wid, "ticket.granted", json!({"reservation_id": id, "tickets": tickets})).await;
    assert_eq!((status, answer["errcode"].as_str()), (400, Some("FOYER_BAD_PAYLOAD")), "{answer}");
    let message = answer["error"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("data.tickets[1].user_id: {bot} is Foyer's own bot")), "{message}");
    assert_nothing_stored(&foyer, &wid, &id).await;
    let (_, r) = foyer.reservation(&id).await;
    assert_eq!(
        r["tickets"],
        json!({"active": 0, "revoked": 0, "uninvitable": 0, "unclaimed": 0, "claimed": 0, "holders": 0}),
        "a ticket of the refused batch was kept"
    );
}

#[tokio::test]
async fn plain_http_stream_urls_need_rooms_allow_http_stream_urls() {
    let http = |id: &str| {
        let mut data = jazz(id);
        data["stream_url"] = json!("http://stream.example.org/watch/jazz");
        data
    };
    let strict = TestFoyer::start().await;
    let id = unique("http");
    let wid = format!("msg_{}", random_token());
    let (status, answer) = strict.send_webhook_as(&wid, "reservation.created", http(&id)).await;
    assert_eq!((status, answer["errcode"].as_str()), (400, Some("FOYER_BAD_PAYLOAD")), "{answer}");
    let message = answer["error"].as_str().unwrap_or_default();
    assert!(message.starts_with("data.stream_url: must be an https:// URL"), "{message}");
    assert!(message.contains("rooms.allow_http_stream_urls"), "{message}");
    assert_nothing_stored(&strict, &wid, &id).await;

    let lenient = TestFoyer::start_with(|yaml| yaml + "rooms:\n  allow_http_stream_urls: true\n", &[]).await;
    let id = unique("http");
    lenient.accept("reservation.created", http(&id)).await;
    // Stored as sent, and read back (a stricter reading would make the row unreadable).
    let (status, r) = lenient.reservation(&id).await;
    assert_eq!((status, r["title"].as_str()), (200, Some("Friday Night Jazz")), "{r}");
}
