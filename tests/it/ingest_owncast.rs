//! Owncast's webhooks (contract §8) against a running Foyer and a real Synapse. The
//! requests are built as Owncast 0.3 builds them: the JSON of its docs' examples
//! (`{"type": ..., "eventData": {...}}`), signed as its `services/webhooks/auth.go` signs
//! (`owncast-signature: t=<unix>.s=<hex HMAC-SHA256 over "<t>.<body>">`), computed here
//! independently of Foyer's code.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{eventually, foyer::TestFoyer, random_token, synapse::Synapse, unique, users::TestUser};

const CHANNEL: &str = "blue-room";
const SECRET: &str = "owncast-webhook-secret-of-the-blue-room";

async fn start() -> TestFoyer {
    TestFoyer::start_with(|y| y + &format!("ingest:\n  owncast:\n    {CHANNEL}: {SECRET}\n"), &[]).await
}

fn at(seconds: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A reservation of the channel: starts in `starts_in` s, its room opens 60 s before.
fn reservation(id: &str, starts_in: i64) -> Value {
    json!({
        "reservation_id": id, "revision": 1, "title": format!("Show {id}"),
        "starts_at": at(starts_in), "ends_at": at(starts_in + 3600),
        "channel": {"id": CHANNEL, "name": "The Blue Room"},
        "chat": {"open_before_seconds": 60, "close_after_seconds": 60}
    })
}

/// An Owncast event body, shaped like the examples in Owncast's webhook docs.
fn owncast_event(kind: &str) -> Vec<u8> {
    let body = json!({
        "type": kind,
        "eventData": {
            "id": random_token(),
            "name": "Owncast",
            "serverURL": "https://stream.example.com",
            "status": {"online": kind != "STREAM_STOPPED", "streamTitle": "", "viewerCount": 0, "versionNumber": "0.3.0"},
            "streamTitle": "",
            "summary": "Welcome to your new Owncast server!",
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        }
    });
    serde_json::to_vec(&body).unwrap()
}

/// `t=<unix>.s=<hex HMAC-SHA256(secret, "<t>.<body>")>`, as Owncast's `generateSignature`.
fn owncast_signature(secret: &str, body: &[u8]) -> String {
    let t = Utc::now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t}.s={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(foyer: &TestFoyer, channel: &str, signature: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = foyer
        .http
        .post(format!("{}/ingest/v1/owncast/{channel}", foyer.base_url))
        .header("content-type", "application/json");
    if let Some(signature) = signature {
        req = req.header("owncast-signature", signature);
    }
    let resp = req.body(body).send().await.expect("post owncast webhook");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends an Owncast event of `kind`, signed with the channel's secret.
async fn send(foyer: &TestFoyer, kind: &str) -> (u16, Value) {
    let body = owncast_event(kind);
    let signature = owncast_signature(SECRET, &body);
    post(foyer, CHANNEL, Some(&signature), body).await
}

async fn open_room(foyer: &TestFoyer, id: &str, fan: &TestUser) -> String {
    foyer.grant(id, &[("t", &fan.user_id)]).await;
    let room = foyer.room_id(id, Duration::from_secs(15)).await;
    fan.join_once_invited(&room, Duration::from_secs(10)).await;
    room
}

async fn wait_notice(fan: &TestUser, room: &str, needle: &str) -> Vec<String> {
    eventually(Duration::from_secs(15), needle, || async {
        let all = fan.notices(room).await;
        all.iter().any(|n| n.contains(needle)).then_some(all)
    })
    .await
}

#[tokio::test]
async fn stream_started_goes_live_once_and_stream_stopped_ends_it() {
    let foyer = start().await;
    let fan = Synapse::shared().create_user("fan").await;
    let id = unique("owncast");
    foyer.accept("reservation.created", reservation(&id, -30)).await;
    let room = open_room(&foyer, &id, &fan).await;

    let (status, body) = send(&foyer, "STREAM_STARTED").await;
    assert_eq!((status, &body["status"]), (202, &json!("accepted")), "{body}");
    wait_notice(&fan, &room, "is live now").await;
    assert_eq!(foyer.reservation(&id).await.1["phase"], "live");

    // Owncast announcing the same stream again is absorbed: no second live notice.
    let (status, body) = send(&foyer, "STREAM_STARTED").await;
    assert_eq!((status, &body["status"]), (200, &json!("duplicate")), "{body}");
    // The title is the platform's: Owncast's change of it is ignored.
    let (status, body) = send(&foyer, "STREAM_TITLE_UPDATED").await;
    assert_eq!((status, &body["status"]), (200, &json!("ignored")), "{body}");

    let (status, body) = send(&foyer, "STREAM_STOPPED").await;
    assert_eq!((status, &body["status"]), (202, &json!("accepted")), "{body}");
    let all = wait_notice(&fan, &room, "The stream has ended").await;
    assert_eq!(all.iter().filter(|n| n.contains("is live now")).count(), 1, "one live notice: {all:?}");
    assert_eq!(foyer.reservation(&id).await.1["phase"], "ended");
    // A second stop finds nothing live.
    let (status, body) = send(&foyer, "STREAM_STOPPED").await;
    assert_eq!((status, &body["status"]), (200, &json!("not_live")), "{body}");
    let metric = r#"foyer_ingest_owncast_total{event="stream_started",result="accepted"}"#;
    assert_eq!(foyer.metric(metric).await, 1.0);
}

#[tokio::test]
async fn a_bad_signature_or_an_unknown_channel_gets_401_and_records_nothing() {
    let foyer = start().await;
    let id = unique("owncast_bad");
    foyer.accept("reservation.created", reservation(&id, -30)).await;

    let body = owncast_event("STREAM_STARTED");
    let wrong = owncast_signature("not-the-channel-secret", &body);
    let right = owncast_signature(SECRET, &body);
    let stale = {
        let t = Utc::now().timestamp() - 600;
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&body);
        format!("t={t}.s={}", hex::encode(mac.finalize().into_bytes()))
    };
    let tampered = {
        let mut b = body.clone();
        b.extend_from_slice(b" ");
        b
    };
    let refused = [
        post(&foyer, CHANNEL, Some(&wrong), body.clone()).await,
        post(&foyer, CHANNEL, None, body.clone()).await,
        post(&foyer, CHANNEL, Some(&stale), body.clone()).await,
        post(&foyer, CHANNEL, Some(&right), tampered).await,
        post(&foyer, "another-channel", Some(&right), body.clone()).await,
    ];
    for (status, answer) in &refused {
        assert_eq!((*status, &answer["errcode"]), (401, &json!("FOYER_BAD_SIGNATURE")), "{answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    }
    let (_, r) = foyer.reservation(&id).await;
    assert_ne!(r["phase"], "live", "nothing recorded: {r}");
    let log = foyer.log();
    assert!(!log.contains(SECRET), "the secret is never logged");
    // The same request, rightly signed, is taken: the refusals were for the signature.
    let (status, answer) = post(&foyer, CHANNEL, Some(&right), body).await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test]
async fn a_start_with_no_reservation_in_its_window_is_answered_200_and_logged() {
    let foyer = start().await;
    let id = unique("owncast_later");
    // Its room opens in about two hours: not in its window now.
    foyer.accept("reservation.created", reservation(&id, 7200)).await;

    let (status, body) = send(&foyer, "STREAM_STARTED").await;
    assert_eq!((status, &body["status"]), (200, &json!("no_reservation")), "{body}");
    eventually(Duration::from_secs(5), "the log line", || async {
        foyer.log().contains("no reservation of this channel is in its window now").then_some(())
    })
    .await;
    let (_, r) = foyer.reservation(&id).await;
    assert_eq!(r["phase"], "scheduled", "nothing recorded: {r}");
    assert_eq!(r["room_id"], Value::Null, "no room opened early: {r}");
}
