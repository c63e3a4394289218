//! Foyer's own events to the platform (contract §9), received by a real receiver: an HTTP
//! server in the test that checks every request's signature with the `standardwebhooks`
//! crate and answers what the test tells it to.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::common::{eventually, foyer::TestFoyer, synapse::Synapse, unique};
use crate::lifecycle::{created_at, reservation};
use crate::operations::{ask, direct_chat};

/// The platform's Standard Webhooks secret in these tests.
pub(crate) const PLATFORM_SECRET: &str = "whsec_Zm95ZXItb3V0Ym94LXRlc3Qtc2VjcmV0LTMyYnl0ZQ==";
/// The retry schedule in milliseconds where it says seconds (5 s → 10 ms, 5 min → 0.6 s,
/// 30 min → 3.6 s, 2 h → 14.4 s): the tests see a few retries in seconds.
const RETRY_SCALE: &str = "0.002";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) id: String,
    kind: String,
    reservation: String,
    pub(crate) body: Value,
    /// The signature checked out (`standardwebhooks::Webhook::verify`).
    pub(crate) valid: bool,
    pub(crate) status: u16,
    at: DateTime<Utc>,
}

type Answer = Box<dyn FnMut(&Attempt, &[Attempt]) -> u16 + Send>;

#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<Attempt>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Receiver {
    /// Listens on a loopback port; `answer` picks each status, given the request and the
    /// ones before it. A request whose signature does not verify is answered 401.
    pub(crate) async fn start(answer: impl FnMut(&Attempt, &[Attempt]) -> u16 + Send + 'static) -> Receiver {
        let receiver =
            Receiver { url: String::new(), seen: Arc::default(), answer: Arc::new(Mutex::new(Box::new(answer))) };
        let app = Router::new().route("/hooks/foyer", post(receive)).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let url = format!("http://{}/hooks/foyer", listener.local_addr().expect("its address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, ..receiver }
    }

    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        self.seen.lock().unwrap().clone()
    }

    /// The reservation's events the receiver took (a 2xx), in the order it took them.
    fn delivered(&self, reservation: &str) -> Vec<Attempt> {
        let seen = self.attempts();
        seen.into_iter().filter(|a| a.reservation == reservation && (200..300).contains(&a.status)).collect()
    }

    fn types(attempts: &[Attempt]) -> Vec<String> {
        attempts.iter().map(|a| a.kind.clone()).collect()
    }

    /// Waits until the reservation's delivered events are `types`, in that order.
    async fn wait_for(&self, reservation: &str, types: &[&str], limit: Duration) -> Vec<Attempt> {
        eventually(limit, &format!("{reservation}'s events {types:?}"), || async {
            let delivered = self.delivered(reservation);
            (Self::types(&delivered) == types).then_some(delivered)
        })
        .await
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let webhook = standardwebhooks::Webhook::new(PLATFORM_SECRET).expect("the secret");
    let valid = webhook.verify(&body, &headers).is_ok();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut attempt = Attempt {
        id: header("webhook-id"),
        kind: json["type"].as_str().unwrap_or("").to_owned(),
        reservation: json["data"]["reservation_id"].as_str().unwrap_or("").to_owned(),
        body: json,
        valid,
        status: 401,
        at: Utc::now(),
    };
    let mut seen = receiver.seen.lock().unwrap();
    if valid {
        attempt.status = (receiver.answer.lock().unwrap())(&attempt, &seen);
    }
    eprintln!("[receiver] {} {} {} -> {}", attempt.id, attempt.kind, attempt.reservation, attempt.status);
    let status = StatusCode::from_u16(attempt.status).expect("a status");
    seen.push(attempt);
    status
}

/// Foyer with `platform` pointing at the receiver, retries scaled down, and `admin` (if
/// any) among its admins.
pub(crate) async fn foyer_for(receiver: &Receiver, admin: Option<&str>) -> TestFoyer {
    let platform = format!("platform:\n  webhook_url: {}\n  webhook_secret: \"{PLATFORM_SECRET}\"\n", receiver.url);
    let admins = admin.map(|a| format!("admins: [\"{a}\"]\n")).unwrap_or_default();
    TestFoyer::start_with(move |yaml| yaml + &platform + &admins, &[("FOYER_OUTBOX_RETRY_SCALE", RETRY_SCALE)]).await
}

/// The times the test's reservations give: `starts_in` from `t0`, lasting `lasts`, with
/// `open_before` and `close_after` of one second each.
fn due(t0: DateTime<Utc>, starts_in: f64, lasts: f64) -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |s: f64| t0 + chrono::Duration::milliseconds((s * 1000.0) as i64);
    (at(starts_in - 1.0), at(starts_in + lasts + 1.0))
}

/// A reservation's events arrive in order, each once, each signed, each with its own
/// `webhook-id`, and say what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_hears_each_event_once_in_order_signed() {
    let receiver = Receiver::start(|_, _| 204).await;
    let foyer = foyer_for(&receiver, None).await;
    let id = unique("heard");
    // A ticket for a server that does not exist: its holder cannot be invited (the invite
    // takes seconds to fail, well within the show's ten).
    foyer.grant(&id, &[("t-remote", "@bob:unreachable.invalid")]).await;
    foyer.accept("reservation.created", reservation(&id, 2.0, 10.0, 1, 1, &[])).await;

    let expected = ["room.opened", "ticket.uninvitable", "room.archived"];
    let delivered = receiver.wait_for(&id, &expected, Duration::from_secs(60)).await;
    let attempts = receiver.attempts();
    assert!(attempts.iter().all(|a| a.valid), "every signature verifies: {attempts:?}");
    let ids: BTreeSet<&str> = delivered.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), expected.len(), "a webhook-id per event: {delivered:?}");
    // Each once: the counter saw as many deliveries as the receiver, and nothing waits.
    eventually(Duration::from_secs(10), "the outbox to be empty", || async {
        (foyer.metric("foyer_outbox_depth").await == 0.0).then_some(())
    })
    .await;
    let mine: Vec<Attempt> = receiver.attempts().into_iter().filter(|a| a.reservation == id).collect();
    assert_eq!(mine.len(), expected.len(), "each event sent once: {mine:?}");
    let counted = foyer.metric("foyer_outbox_events_total{type=\"room.opened\",result=\"delivered\"}").await;
    assert_eq!(counted, 1.0);

    let room_id = foyer.room_id(&id, Duration::from_secs(5)).await;
    let opened = &delivered[0].body;
    assert_eq!(opened["data"]["room_id"], room_id.as_str());
    assert_eq!(opened["data"]["room_alias"], foyer.alias(&id).as_str());
    assert!(opened["data"]["matrix_to"].as_str().unwrap().starts_with("https://matrix.to/#/"), "{opened}");
    assert!(opened["data"]["opened_at"].is_string(), "{opened}");
    let uninvitable = &delivered[1].body;
    assert_eq!(uninvitable["data"]["ticket_id"], "t-remote", "{uninvitable}");
    assert!(uninvitable["data"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{uninvitable}");
    let archived = &delivered[2].body;
    assert_eq!(archived["data"]["room_id"], room_id.as_str());
    assert_eq!(archived["data"]["mode"], "read_only");
    assert!(archived["data"]["archived_at"].is_string(), "{archived}");
}

/// The platform answers 503 until it has seen four attempts, and Foyer is SIGKILLed
/// while it does: every event still arrives, in order, with its first `webhook-id`, and
/// the room opened and archived when due all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_platform_and_a_crash_lose_nothing_and_delay_nothing() {
    const FAILING: usize = 4;
    let receiver = Receiver::start(|_, before| if before.len() < FAILING { 503 } else { 200 }).await;
    let mut foyer = foyer_for(&receiver, None).await;
    let id = unique("unheard");
    let t0 = Utc::now();
    let (starts_in, lasts) = (3.0, 4.0);
    let (opens_at, archives_at) = due(t0, starts_in, lasts);
    foyer.accept("reservation.created", reservation(&id, starts_in, lasts, 1, 1, &[])).await;

    eventually(Duration::from_secs(30), "two failed attempts", || async {
        (receiver.attempts().len() >= 2).then_some(())
    })
    .await;
    // SIGKILL, and a start with the same (scaled) schedule.
    foyer.kill_and_restart_with(&[("FOYER_OUTBOX_RETRY_SCALE", RETRY_SCALE)], true).await;
    let restarted = Utc::now();

    // The lifecycle runs on while the platform fails: archived, and seen so, before the
    // platform ever took an event.
    let archived_seen = eventually(Duration::from_secs(60), "the archived phase", || async {
        (foyer.reservation(&id).await.1["phase"] == "archived").then(Utc::now)
    })
    .await;
    let delivered = receiver.wait_for(&id, &["room.opened", "room.archived"], Duration::from_secs(120)).await;
    let attempts = receiver.attempts();
    assert!(attempts.iter().all(|a| a.valid), "{attempts:?}");
    let first_taken = attempts.iter().find(|a| a.status == 200).expect("a delivery").at;
    assert!(attempts.iter().filter(|a| a.status == 503).count() >= FAILING, "{attempts:?}");
    let room_id = foyer.room_id(&id, Duration::from_secs(5)).await;
    let created = created_at(&foyer, &room_id).await;
    assert!(
        created < first_taken,
        "the room was created ({created}) before the platform took anything ({first_taken})"
    );
    assert!(created < opens_at + chrono::Duration::seconds(10), "the room opened late: {created}, due {opens_at}");
    assert!(
        archived_seen < first_taken,
        "archived ({archived_seen}) before the platform took anything ({first_taken})"
    );
    assert!(
        archived_seen < archives_at + chrono::Duration::seconds(20),
        "archived late: {archived_seen}, due {archives_at}"
    );
    // Every attempt at an event carried its first webhook-id, the one finally taken.
    for event in &delivered {
        let tries: Vec<&Attempt> = attempts.iter().filter(|a| a.reservation == id && a.kind == event.kind).collect();
        assert!(tries.iter().all(|a| a.id == event.id), "{} changed its webhook-id: {tries:?}", event.kind);
    }
    assert!(
        attempts.iter().any(|a| a.at > restarted && a.kind == "room.opened"),
        "tried after the crash: {attempts:?}"
    );
}

/// A `410 Gone` stops every delivery until an admin resumes it; another 4xx drops that
/// event alone, and the next is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pauses_until_resumed_and_other_refusals_drop_one_event() {
    let admin = Synapse::shared().create_user("outboxadmin").await;
    let (gone, later, refused) = (unique("gone"), unique("later"), unique("refused"));
    let answers = (gone.clone(), refused.clone());
    let receiver = Receiver::start(move |attempt, before| {
        let first_of_gone = attempt.reservation == answers.0 && before.iter().all(|a| a.reservation != answers.0);
        let refused_opening = attempt.reservation == answers.1 && attempt.kind == "room.opened";
        if first_of_gone {
            410
        } else if refused_opening {
            400
        } else {
            200
        }
    })
    .await;
    let foyer = foyer_for(&receiver, Some(&admin.user_id)).await;
    let bot = foyer.slot.bot_user_id();
    let dm = direct_chat(&foyer, &admin).await;

    foyer.accept("reservation.created", reservation(&gone, 1.0, 3600.0, 1, 1, &[])).await;
    eventually(Duration::from_secs(30), "the 410", || async {
        receiver.attempts().iter().any(|a| a.status == 410).then_some(())
    })
    .await;
    // Another reservation's event is written while paused, and not sent.
    foyer.accept("reservation.created", reservation(&later, 1.0, 3600.0, 1, 1, &[])).await;
    foyer.room_id(&later, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(20), "both events waiting", || async {
        (foyer.metric("foyer_outbox_depth").await == 2.0).then_some(())
    })
    .await;
    let state = ask(&admin, &bot, &dm, "!foyer outbox").await;
    let text = state["body"].as_str().unwrap();
    assert!(text.contains("paused") && text.contains("2 event(s) waiting"), "{text}");
    let status_page = foyer.http.get(format!("{}/status", foyer.base_url)).bearer_auth(&foyer.slot.api_token);
    let status_page = status_page.send().await.expect("/status").text().await.expect("its text");
    assert!(status_page.contains("id=outbox-state>paused"), "the status page shows the pause: {status_page}");
    assert_eq!(receiver.attempts().len(), 1, "nothing sent while paused: {:?}", receiver.attempts());
    assert_eq!(foyer.metric("foyer_outbox_events_total{type=\"room.opened\",result=\"paused\"}").await, 1.0);

    let resumed = ask(&admin, &bot, &dm, "!foyer outbox resume").await;
    assert!(resumed["body"].as_str().unwrap().contains("resumed"), "{resumed}");
    let gone_opened = receiver.wait_for(&gone, &["room.opened"], Duration::from_secs(20)).await;
    let first = receiver.attempts()[0].clone();
    assert_eq!(gone_opened[0].id, first.id, "the paused event is sent with its webhook-id");
    receiver.wait_for(&later, &["room.opened"], Duration::from_secs(20)).await;

    // A 400 drops room.opened; room.archived, behind it, is still delivered.
    foyer.accept("reservation.created", reservation(&refused, 1.0, 2.0, 1, 1, &[])).await;
    receiver.wait_for(&refused, &["room.archived"], Duration::from_secs(60)).await;
    let tries: Vec<Attempt> = receiver.attempts().into_iter().filter(|a| a.reservation == refused).collect();
    assert_eq!(Receiver::types(&tries), ["room.opened", "room.archived"], "the refused one not retried: {tries:?}");
    assert_eq!(tries[0].status, 400);
    assert_eq!(foyer.metric("foyer_outbox_events_total{type=\"room.opened\",result=\"dropped\"}").await, 1.0);
}

/// A web fan reports a member's message from the chat beside the player
/// (docs/web-chat.md, "Reports"): the platform hears `message.reported` once, with the
/// message as the chat showed it and the reporter's ticket, however often the fan
/// reports it; a message the chat never showed cannot be reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_fans_report_reaches_the_platform_once_with_the_message_as_shown() {
    use crate::web_chat::{mint, now};
    let receiver = Receiver::start(|_, _| 204).await;
    let foyer = foyer_for(&receiver, None).await;
    let hs = Synapse::shared();
    let id = unique("reported");
    let member = hs.create_user("member").await;
    foyer.accept("reservation.created", crate::common::foyer::open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t-member", member.user_id.as_str())]).await;
    let web_ticket = serde_json::json!({"ticket_id": "t-web", "email": "reporter@example.org"});
    foyer.accept("ticket.granted", serde_json::json!({"reservation_id": id, "tickets": [web_ticket]})).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    member.join_once_invited(&room_id, Duration::from_secs(30)).await;
    let claims = serde_json::json!({
        "aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": id, "tid": "t-web", "name": "Reporter",
    });
    let token = mint(crate::common::foyer::WEBCHAT_SECRET, claims);
    let chat = crate::common::webchat::ChatClient::of(&foyer).keeping(&["reporter@example.org"]);
    let (status, opened, text) = chat.session(&serde_json::json!({"token": token})).await;
    assert_eq!(status, 200, "{text}");
    let session = opened["session"].as_str().expect("a session").to_owned();
    let report = |event_id: String, reason: &'static str| {
        let (chat, session) = (chat.clone(), session.clone());
        async move {
            let (status, _, text) =
                chat.report(&session, &serde_json::json!({"event_id": event_id, "reason": reason})).await;
            (status, text)
        }
    };

    let (status, _) = report(format!("$never-shown-{id}"), "spam").await;
    assert_eq!(status, 404, "a message the chat never showed");
    let mut reported = Vec::new();
    for text in ["buy cheap followers", "and again"] {
        let (status, sent) = member.send_text(&room_id, text).await;
        assert_eq!(status, 200, "{sent}");
        let event_id = sent["event_id"].as_str().unwrap().to_owned();
        // The message is reportable once the homeserver's transaction logged it.
        let (status, answer) = eventually(Duration::from_secs(30), "the message in the chat's log", || {
            let report = report(event_id.clone(), "spam");
            async move { Some(report.await).filter(|(status, _)| *status != 404) }
        })
        .await;
        assert_eq!(status, 200, "{answer}");
        // Again, as a fan who clicks twice: answered the same, heard once.
        let (status, again) = report(event_id.clone(), "spam").await;
        assert_eq!((status, again), (200, answer));
        reported.push((event_id, text));
    }

    let heard =
        receiver.wait_for(&id, &["room.opened", "message.reported", "message.reported"], Duration::from_secs(30));
    let heard = heard.await;
    for (attempt, (event_id, text)) in heard[1..].iter().zip(&reported) {
        let data = &attempt.body["data"];
        assert_eq!(data["event_id"], event_id.as_str(), "{data}");
        assert_eq!(data["reason"], "spam", "{data}");
        assert_eq!(data["reporter"], serde_json::json!({"ticket_id": "t-web"}), "{data}");
        assert_eq!(data["message"]["body"], *text, "{data}");
        assert_eq!(data["message"]["sender_role"], "fan", "{data}");
        assert!(data["message"]["sender_name"].as_str().is_some_and(|n| !n.is_empty()), "{data}");
        assert!(!data.to_string().contains("reporter@example.org"), "no email: {data}");
    }
}
