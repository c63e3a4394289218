//! Getting into the web chat with a claim code (docs/web-chat.md, "Getting in"), against
//! a real Synapse: the code from a fan's email opens a session named as the platform
//! named the holder, binding nothing in Matrix; wrong codes are refused with their reason
//! and throttled by the client's address, which is read from `X-Forwarded-For` only when
//! the connection comes from a trusted proxy.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    claims::{address, foreign_code, ticket},
    common::{
        foyer::{TestFoyer, open_reservation},
        unique,
        webchat::ChatClient,
    },
};

/// `POST /chat/v1/session` with `body`, as from `forwarded_for` when given.
async fn post_session(foyer: &TestFoyer, body: Value, forwarded_for: Option<&str>) -> (u16, Value, String) {
    let chat = ChatClient::of(foyer);
    match forwarded_for {
        Some(client) => chat.forwarded_for(client).session(&body).await,
        None => chat.session(&body).await,
    }
}

/// An open reservation with one email ticket, `t-1`, named "A Fan"; its claim code.
async fn show_with_email_ticket(foyer: &TestFoyer, id: &str) -> String {
    foyer.accept("reservation.created", open_reservation(id, &[], 1)).await;
    let granted = json!({"ticket_id": "t-1", "email": address("webfan"), "display_name": "A Fan"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [granted]})).await;
    ticket(foyer, id, "t-1").await["claim"]["code"].as_str().expect("a code").to_owned()
}

#[tokio::test]
async fn a_claim_code_opens_a_session_named_as_the_ticket_and_binds_nothing_in_matrix() {
    let foyer = TestFoyer::start().await;
    let id = unique("webclaim");
    let code = show_with_email_ticket(&foyer, &id).await;
    let other = unique("webclaim-other");
    foyer.accept("reservation.created", open_reservation(&other, &[], 1)).await;
    foyer.room_id(&id, Duration::from_secs(30)).await;

    // Refusals first, each with its reason; none of them is a session.
    let mistyped = {
        let mut chars: Vec<char> = code.chars().collect();
        chars.swap(0, 1);
        if chars[0] == chars[1] {
            chars.swap(0, 2);
        }
        chars.into_iter().collect::<String>()
    };
    for (body, status, errcode) in [
        (json!({"reservation_id": id, "claim_code": mistyped}), 401, "FOYER_CLAIM_CODE_MISTYPED"),
        (json!({"reservation_id": id, "claim_code": foreign_code(1)}), 401, "FOYER_CLAIM_CODE_UNKNOWN"),
        (json!({"reservation_id": other, "claim_code": code}), 403, "FOYER_WRONG_RESERVATION"),
        (json!({"claim_code": code}), 400, "FOYER_BAD_REQUEST"),
    ] {
        let (got, answer, text) = post_session(&foyer, body.clone(), None).await;
        assert_eq!((got, answer["errcode"].as_str()), (status, Some(errcode)), "{body}: {text}");
        assert!(answer["error"].as_str().is_some_and(|e| e.len() > 20), "a reason in words: {text}");
        assert!(answer.get("session").is_none(), "{text}");
        assert!(!text.contains(&code), "the code is never echoed: {text}");
    }

    // The code as the fan types it, in lower case with spaces for dashes.
    let typed = code.to_lowercase().replace('-', " ");
    let (got, answer, text) = post_session(&foyer, json!({"reservation_id": id, "claim_code": typed}), None).await;
    assert_eq!(got, 200, "{text}");
    assert_eq!(answer["me"]["name"], "A Fan", "{text}");
    assert!(!text.contains("fans.example.org"), "no email in the answer: {text}");
    let expires = chrono::DateTime::parse_from_rfc3339(answer["expires_at"].as_str().unwrap()).unwrap();
    let hours = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "a claim-code session lasts 24 h, not {hours} h");
    let session = answer["session"].as_str().unwrap().to_owned();

    // The session writes in the room; the ticket stays claimable in a Matrix client.
    let chat = ChatClient::of(&foyer).keeping(&[&code]);
    let (got, _, text) = chat.post_message(&session, &json!({"txn_id": "c1", "body": "hello"})).await;
    assert_eq!(got, 200, "{text}");
    let seen = ticket(&foyer, &id, "t-1").await;
    assert_eq!(seen["state"], "unclaimed", "{seen}");
    assert_eq!(seen["claim"]["code"], code.as_str(), "the same code still claims it: {seen}");

    // A revoked ticket's code opens nothing more.
    foyer.revoke(&id, &["t-1"]).await;
    let (got, answer, text) = post_session(&foyer, json!({"reservation_id": id, "claim_code": code}), None).await;
    assert_eq!((got, answer["errcode"].as_str()), (401, Some("FOYER_CLAIM_CODE_UNKNOWN")), "{text}");
}

/// Five wrong codes from one address, then the sixth attempt is not looked at, even a
/// right one; another address is not held back. Behind a trusted proxy the address is
/// the forwarded one; from anyone else `X-Forwarded-For` is ignored, so a guesser cannot
/// write a new address on each try.
#[tokio::test]
async fn wrong_codes_are_throttled_by_address_read_from_trusted_proxies_only() {
    let trusting = |yaml: String| yaml.replace("webchat:\n", "webchat:\n  trusted_proxies: [\"127.0.0.1\"]\n");
    let behind_proxy = TestFoyer::start_with(trusting, &[]).await;
    let id = unique("webthrottle");
    let code = show_with_email_ticket(&behind_proxy, &id).await;
    let right = json!({"reservation_id": id, "claim_code": code});
    for i in 0..5 {
        let wrong = json!({"reservation_id": id, "claim_code": foreign_code(10 + i)});
        let (got, _, text) = post_session(&behind_proxy, wrong, Some("198.51.100.1")).await;
        assert_eq!(got, 401, "wrong code {i}: {text}");
    }
    let (got, answer, text) = post_session(&behind_proxy, right.clone(), Some("198.51.100.1")).await;
    assert_eq!((got, answer["errcode"].as_str()), (429, Some("FOYER_CLAIM_THROTTLED")), "{text}");
    assert!(answer["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{text}");
    assert!(answer["error"].as_str().unwrap().contains("try again in"), "{text}");
    // A proxy appends what it saw: the client's own claim (left) is not believed.
    let (got, _, text) = post_session(&behind_proxy, right.clone(), Some("198.51.100.1, 198.51.100.2")).await;
    assert_eq!(got, 200, "another address is not held back: {text}");
    let (got, _, text) = post_session(&behind_proxy, right.clone(), Some("198.51.100.2, 198.51.100.1")).await;
    assert_eq!(got, 429, "the address the proxy saw is the one counted: {text}");

    // No trusted proxy: every try counts against the connection's own address.
    let direct = TestFoyer::start().await;
    let id = unique("webthrottle-direct");
    let code = show_with_email_ticket(&direct, &id).await;
    for i in 0..5 {
        let wrong = json!({"reservation_id": id, "claim_code": foreign_code(20 + i)});
        let (got, _, text) = post_session(&direct, wrong, Some(&format!("198.51.100.{}", 10 + i))).await;
        assert_eq!(got, 401, "wrong code {i}: {text}");
    }
    let right = json!({"reservation_id": id, "claim_code": code});
    let (got, _, text) = post_session(&direct, right, Some("198.51.100.99")).await;
    assert_eq!(got, 429, "a forwarded address from no trusted proxy is ignored: {text}");
}

/// A ban the ticket carries: a fan in on a claim code is banned by a host in Element;
/// then `!claim` with the same code from a Matrix account is refused, and so is a new web
/// session with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_web_fans_code_opens_nothing_more_in_matrix_or_on_the_web() {
    let hs = crate::common::synapse::Synapse::shared();
    let foyer = TestFoyer::start().await;
    let id = unique("webbanclaim");
    let host = hs.create_user("host").await;
    foyer.accept("reservation.created", open_reservation(&id, &[host.user_id.as_str()], 1)).await;
    let email = address("banned");
    let granted = json!({"ticket_id": "t-1", "email": email, "display_name": "Mallory"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [granted]})).await;
    let code = ticket(&foyer, &id, "t-1").await["claim"]["code"].as_str().expect("a code").to_owned();
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    host.join_once_invited(&room_id, Duration::from_secs(30)).await;
    let chat = ChatClient::of(&foyer).keeping(&[&email, &code]);
    let (got, answer, text) = chat.session(&json!({"reservation_id": id, "claim_code": code})).await;
    assert_eq!(got, 200, "{text}");
    let session = answer["session"].as_str().unwrap().to_owned();
    let body = format!("rude words {id}");
    let (got, _, text) = chat.post_message(&session, &json!({"txn_id": "m1", "body": body})).await;
    assert_eq!(got, 200, "{text}");
    let web_user = host.sender_of(&room_id, &body).await;
    host.ban(&room_id, &web_user).await;
    crate::common::eventually(Duration::from_secs(30), "the ticket banned", || async {
        let (got, answer, _) = chat.session(&json!({"reservation_id": id, "claim_code": code})).await;
        (got == 403 && answer["errcode"] == "FOYER_VIEWER_BANNED").then_some(())
    })
    .await;

    // The same code from a Matrix account: refused; the ticket stays unbound.
    let claimer = hs.create_user("claimer").await;
    let bot = foyer.slot.bot_user_id();
    let line = format!("!claim {code}");
    let said = tokio::task::block_in_place(|| crate::common::users::nio_claim(&claimer, &hs.url, &bot, &[&line]));
    let answer = said["answers"][0].as_str().unwrap_or_default();
    assert!(answer.contains("that code doesn't work"), "{said}");
    assert_eq!(ticket(&foyer, &id, "t-1").await["state"], "unclaimed");
}
