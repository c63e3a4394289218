//! Transcripts (contract §9) against a real Synapse: members post, edit and redact
//! through matrix-nio, and the transcript Foyer makes at archive equals what a member
//! sees then, in JSON, HTML and text.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::common::{
    enc, eventually,
    foyer::TestFoyer,
    standin::StandIn,
    synapse::Synapse,
    unique,
    users::{TestUser, nio_client},
};

/// What the opening notice tells members (`lifecycle::notices::TRANSCRIPT_SAVED`).
const SAVED: &str = "This chat will be saved when the room closes.";

/// A reservation whose room opens at once and stays open until it is cancelled.
fn reservation(id: &str) -> Value {
    let now = Utc::now();
    let at = |s: i64| (now + chrono::Duration::seconds(s)).to_rfc3339_opts(SecondsFormat::Millis, true);
    json!({
        "reservation_id": id, "revision": 1, "title": format!("Show {id}"),
        "starts_at": at(600), "ends_at": at(4200),
        "chat": {"open_before_seconds": 3600, "close_after_seconds": 60}
    })
}

/// Opens the room of a new reservation with tickets for `users`, each joined.
async fn open_with(foyer: &TestFoyer, users: &[&TestUser]) -> (String, String) {
    open_with_moderators(foyer, users, &[]).await
}

/// [`open_with`], with `moderators` in `chat.moderators` (exempt from the chat's rules).
async fn open_with_moderators(foyer: &TestFoyer, users: &[&TestUser], moderators: &[&TestUser]) -> (String, String) {
    let id = unique("transcript");
    let mut created = reservation(&id);
    created["chat"]["moderators"] = json!(moderators.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>());
    foyer.accept("reservation.created", created).await;
    let tickets: Vec<(String, &str)> =
        users.iter().enumerate().map(|(i, u)| (format!("{id}-t{i}"), u.user_id.as_str())).collect();
    let tickets: Vec<(&str, &str)> = tickets.iter().map(|(t, u)| (t.as_str(), *u)).collect();
    foyer.grant(&id, &tickets).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(20)).await;
    for user in users {
        user.join_once_invited(&room_id, Duration::from_secs(20)).await;
    }
    (id, room_id)
}

/// Cancels the reservation, which closes and archives its room at once.
async fn cancel(foyer: &TestFoyer, id: &str) {
    let (status, body) = foyer.send_webhook("reservation.cancelled", json!({"reservation_id": id})).await;
    assert_eq!(status, 202, "{body}");
}

/// The transcript in `format` (`None`: the default, JSON): status and body text.
async fn transcript(foyer: &TestFoyer, id: &str, format: Option<&str>, token: Option<&str>) -> (u16, String, String) {
    let query = format.map(|f| format!("?format={f}")).unwrap_or_default();
    let mut req = foyer.http.get(format!("{}/api/v1/reservations/{id}/transcript{query}", foyer.base_url));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("transcript request");
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, content_type, resp.text().await.expect("transcript body"))
}

/// Waits for the transcript (made at archive) and returns it as JSON.
async fn made(foyer: &TestFoyer, id: &str) -> Value {
    let token = foyer.slot.api_token.clone();
    eventually(Duration::from_secs(60), "the transcript", || async {
        let (status, _, body) = transcript(foyer, id, None, Some(&token)).await;
        (status == 200).then(|| serde_json::from_str::<Value>(&body).expect("the transcript is JSON"))
    })
    .await
}

/// The room's messages as `member` sees them now, oldest first: `(event_id, sender,
/// body)`, each with its latest edit by its sender, edits and redacted messages left out.
/// Read by hand from the client-server API, not by Foyer's code.
async fn as_seen_by(member: &TestUser, room_id: &str) -> Vec<(String, String, String)> {
    let mut events = member.messages(room_id).await;
    events.reverse();
    let messages: Vec<&Value> = events.iter().filter(|e| e["type"] == "m.room.message").collect();
    let mut edits: HashMap<String, (String, String)> = HashMap::new();
    for e in &messages {
        if e["content"]["m.relates_to"]["rel_type"] == "m.replace" {
            let original = e["content"]["m.relates_to"]["event_id"].as_str().unwrap().to_owned();
            let body = e["content"]["m.new_content"]["body"].as_str().unwrap().to_owned();
            edits.insert(original, (e["sender"].as_str().unwrap().to_owned(), body));
        }
    }
    messages
        .iter()
        .filter(|e| e["content"]["m.relates_to"]["rel_type"] != "m.replace")
        .filter(|e| e["unsigned"].get("redacted_because").is_none() && e["content"].get("body").is_some())
        .map(|e| {
            let (id, sender) = (e["event_id"].as_str().unwrap(), e["sender"].as_str().unwrap());
            let body = match edits.get(id) {
                Some((by, body)) if by == sender => body.clone(),
                _ => e["content"]["body"].as_str().unwrap().to_owned(),
            };
            (id.to_owned(), sender.to_owned(), body)
        })
        .collect()
}

fn utc(ts: &str) -> String {
    let t = DateTime::parse_from_rfc3339(ts).expect("an RFC 3339 ts").with_timezone(&Utc);
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[tokio::test]
async fn a_transcript_equals_what_a_member_sees_in_json_html_and_text() {
    let foyer = TestFoyer::start_with(|yaml| yaml + "rooms:\n  transcript: on\n", &[]).await;
    let hs = Synapse::shared();
    let (alice, bob) = (hs.create_user("alice").await, hs.create_user("bob").await);
    let (id, room_id) = open_with(&foyer, &[&alice, &bob]).await;
    // Members are told before they write.
    eventually(Duration::from_secs(20), "the opening notice", || async {
        alice.notices(&room_id).await.iter().any(|n| n.contains("is open") && n.ends_with(SAVED)).then_some(())
    })
    .await;
    let (status, _, body) = transcript(&foyer, &id, None, Some(&foyer.slot.api_token)).await;
    assert_eq!(status, 404, "no transcript while the room is open: {body}");
    assert!(body.contains("FOYER_NOT_FOUND") && body.contains(&id), "{body}");

    let (status, body) = bob.send_text(&room_id, "hello from bob").await;
    assert_eq!(status, 200, "{body}");
    let sent = nio_client(&alice, &hs.url, &room_id, "converse");
    assert!(sent["renamed"].is_string(), "{sent}");
    cancel(&foyer, &id).await;
    let json = made(&foyer, &id).await;
    let seen = as_seen_by(&alice, &room_id).await;

    // JSON: every message a member sees, in order, as they see it; nothing else.
    assert_eq!(json["reservation_id"], id.as_str());
    assert_eq!(json["room_id"], room_id.as_str());
    let lines = json["messages"].as_array().expect("messages");
    let got: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (text("event_id"), text("sender"), text("body"))
        })
        .collect();
    assert_eq!(got, seen, "the transcript is what a member sees");
    let bodies: Vec<&str> = got.iter().map(|(_, _, b)| b.as_str()).collect();
    assert!(bodies.contains(&"final words") && !bodies.contains(&"first draft"), "the edit applied: {bodies:?}");
    assert!(!bodies.iter().any(|b| b.contains("secret")), "the redacted message left out: {bodies:?}");
    let line = |key: &str| {
        let event_id = sent[key].as_str().unwrap();
        lines.iter().find(|l| l["event_id"] == event_id).unwrap_or_else(|| panic!("no line {key}: {json}"))
    };
    assert_eq!(line("html")["body"], "<b>bold</b> <script>alert(1)</script>");
    assert_eq!(line("draft")["display_name"], "Early Name", "the name at the time");
    assert_eq!(line("renamed")["display_name"], "Later Name", "the name at the time");
    assert_eq!(line("renamed")["body"], "waves");
    // Foyer's notices are marked, and only they: the opening one and the closing one.
    let bot = format!("@{}:", foyer.slot.sender_localpart);
    for l in lines {
        let by_bot = l["sender"].as_str().unwrap().starts_with(&bot);
        assert_eq!(l["notice"] == true, by_bot, "only the bot's messages are marked: {l}");
    }
    let notices: Vec<&Value> = lines.iter().filter(|l| l["notice"] == true).collect();
    assert!(notices.first().is_some_and(|n| n["body"].as_str().unwrap().ends_with(SAVED)), "{json}");
    assert!(notices.last().is_some_and(|n| n["body"].as_str().unwrap().contains("was cancelled")), "{json}");

    // Text: one line per message, time in UTC, name and user id.
    let (status, content_type, text) = transcript(&foyer, &id, Some("text"), Some(&foyer.slot.api_token)).await;
    assert_eq!((status, content_type.as_str()), (200, "text/plain; charset=utf-8"));
    let expected: String = lines
        .iter()
        .map(|l| {
            let sender = l["sender"].as_str().unwrap();
            let who = match l["display_name"].as_str() {
                Some(name) => format!("{name} ({sender})"),
                None => sender.to_owned(),
            };
            format!("[{}] {who}: {}\n", utc(l["ts"].as_str().unwrap()), l["body"].as_str().unwrap())
        })
        .collect();
    assert_eq!(text, expected);
    assert!(text.contains(&format!("Early Name ({}): <b>bold</b> <script>alert(1)</script>\n", alice.user_id)));

    // HTML: members' markup shows as text; each time in UTC.
    let (status, content_type, page) = transcript(&foyer, &id, Some("html"), Some(&foyer.slot.api_token)).await;
    assert_eq!((status, content_type.as_str()), (200, "text/html; charset=utf-8"));
    assert!(!page.contains("<script") && !page.contains("<b>bold"), "member HTML is not markup: {page}");
    assert!(page.contains("&lt;b&gt;bold&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    for l in lines {
        assert!(page.contains(&format!(">{}</time>", utc(l["ts"].as_str().unwrap()))), "{page}");
    }
    assert!(page.contains("Later Name") && page.contains("final words"), "{page}");

    // Bad asks: a format that does not exist, no token, no transcript.
    let (status, _, body) = transcript(&foyer, &id, Some("pdf"), Some(&foyer.slot.api_token)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("FOYER_BAD_QUERY") && body.contains("\\\"pdf\\\" is not one of json, html, text"), "{body}");
    assert_eq!(transcript(&foyer, &id, None, None).await.0, 401);
    let (status, _, body) = transcript(&foyer, "no-such-show", None, Some(&foyer.slot.api_token)).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn with_archive_mode_delete_the_transcript_is_made_before_the_purge() {
    let admin = Synapse::shared().create_admin().await;
    let token = admin.access_token.clone();
    let foyer = TestFoyer::start_with(
        move |yaml| {
            yaml + &format!("rooms:\n  archive_mode: delete\n  transcript: on\nsynapse_admin:\n  token: {token}\n")
        },
        &[],
    )
    .await;
    let bob = Synapse::shared().create_user("bob").await;
    let (id, room_id) = open_with(&foyer, &[&bob]).await;
    for text in ["one", "two", "three"] {
        assert_eq!(bob.send_text(&room_id, text).await.0, 200);
    }
    cancel(&foyer, &id).await;
    eventually(Duration::from_secs(60), "the room to be purged", || async {
        (admin.get(&format!("/_synapse/admin/v1/rooms/{}", enc(&room_id))).await.0 == 404).then_some(())
    })
    .await;
    let json = made(&foyer, &id).await;
    let from_bob: Vec<&str> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["sender"] == bob.user_id.as_str())
        .map(|l| l["body"].as_str().unwrap())
        .collect();
    assert_eq!(from_bob, ["one", "two", "three"], "{json}");
}

/// The `room.archived` bodies in a Foyer's outbox (its SQLite database), as they will be
/// sent.
async fn archived_events(foyer: &TestFoyer) -> Vec<Value> {
    let url = format!("sqlite://{}", foyer.dir().join("foyer.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("the test Foyer's database");
    let rows: Vec<(String,)> = sqlx::query_as("SELECT payload FROM outbox WHERE type = 'room.archived' ORDER BY seq")
        .fetch_all(&pool)
        .await
        .expect("the outbox");
    pool.close().await;
    rows.iter().map(|(payload,)| serde_json::from_str(payload).expect("a JSON payload")).collect()
}

/// A homeserver that cannot give the room's history (502): the transcript is retried,
/// made when the homeserver comes back within `rooms.transcript_wait`; when it does not,
/// the room is archived without it after the wait, and `room.archived` says why.
#[tokio::test]
async fn a_transcript_the_homeserver_cannot_give_is_retried_then_given_up_after_the_wait() {
    let hs = StandIn::start().await;
    let slot = hs.slot();
    let yaml = slot.config_yaml()
        + "rooms:\n  transcript: on\n  transcript_wait: 4s\n"
        + "platform:\n  webhook_url: http://127.0.0.1:9/events\n  webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n";
    let foyer = TestFoyer::spawn(slot, &yaml);
    foyer.wait_ready().await;
    let (back, gone) = (unique("back"), unique("gone"));
    for id in [&back, &gone] {
        foyer.accept("reservation.created", reservation(id)).await;
    }
    eventually(Duration::from_secs(30), "both rooms", || async {
        let mut open = true;
        for id in [&back, &gone] {
            open &= foyer.reservation(id).await.1["room_id"].is_string();
        }
        open.then_some(())
    })
    .await;
    let failures = || hs.calls().get("GET messages forward (502)").copied().unwrap_or(0);

    // Down, then back within the wait: retried, and made.
    hs.history_down(true);
    cancel(&foyer, &back).await;
    eventually(Duration::from_secs(60), "a failed attempt", || async { (failures() > 0).then_some(()) }).await;
    assert_eq!(transcript(&foyer, &back, None, Some(&foyer.slot.api_token)).await.0, 404, "not made while down");
    hs.history_down(false);
    let made = made(&foyer, &back).await;
    assert_eq!(made["messages"], json!([]), "the stand-in's room has no messages: {made}");

    // Down for longer than the wait: archived without it, and room.archived says so.
    hs.history_down(true);
    let before = failures();
    cancel(&foyer, &gone).await;
    eventually(Duration::from_secs(90), "the archive without a transcript", || async {
        (foyer.reservation(&gone).await.1["phase"] == "cancelled"
            && archived_events(&foyer).await.iter().any(|e| e["data"]["reservation_id"] == gone.as_str()))
        .then_some(())
    })
    .await;
    assert!(failures() > before, "the transcript was tried");
    assert_eq!(transcript(&foyer, &gone, None, Some(&foyer.slot.api_token)).await.0, 404);
    let events = archived_events(&foyer).await;
    let data =
        |id: &str| events.iter().find(|e| e["data"]["reservation_id"] == id).expect("room.archived")["data"].clone();
    let without = data(&gone);
    assert!(without["transcript"].is_null(), "{without}");
    let error = without["transcript_error"].as_str().expect("a transcript_error");
    assert!(error.contains("rooms.transcript_wait (4s)") && error.contains("502"), "{error}");
    let with = data(&back);
    assert_eq!(with["transcript"]["messages"], 0, "{with}");
    let url = format!("http://127.0.0.1:{}/api/v1/reservations/{back}/transcript", foyer.slot.port);
    assert_eq!(with["transcript"]["url"], url.as_str(), "{with}");
}

/// Every way a reader may break a line: what a member writes in a name or a body.
const LINE_BREAKS: [char; 8] = ['\n', '\r', '\u{0B}', '\u{0C}', '\u{1C}', '\u{85}', '\u{2028}', '\u{2029}'];

/// A display name and bodies that carry line breaks of every kind followed by a line of
/// their own making: the text transcript keeps each message on one line (the breaks
/// escaped), so no member can make what reads as a message of someone else.
#[tokio::test]
async fn the_text_transcript_cannot_be_forged_with_names_or_line_breaks() {
    let foyer = TestFoyer::start_with(|yaml| yaml + "rooms:\n  transcript: on\n", &[]).await;
    let mallory = Synapse::shared().create_user("mallory").await;
    let (id, room_id) = open_with(&foyer, &[&mallory]).await;
    let forged = "[2026-12-01 20:00:09 UTC] Foyer (@foyer:example.org): refunds at evil.example";
    // A name of this room only (a join again, with a name), as any member may set.
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room_id), enc(&mallory.user_id));
    let name = format!("Mallory\n{forged}");
    let (status, body) =
        mallory.request(reqwest::Method::PUT, &path, Some(json!({"membership": "join", "displayname": name}))).await;
    assert_eq!(status, 200, "{body}");
    for brk in LINE_BREAKS {
        let (status, body) = mallory.send_text(&room_id, &format!("hi{brk}{forged}")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(mallory.send_text(&room_id, r"C:\new").await.0, 200);
    cancel(&foyer, &id).await;
    let json = made(&foyer, &id).await;
    let lines = json["messages"].as_array().expect("messages");
    let from_mallory: Vec<&Value> = lines.iter().filter(|l| l["sender"] == mallory.user_id.as_str()).collect();
    assert_eq!(from_mallory.len(), LINE_BREAKS.len() + 1, "{json}");
    assert!(from_mallory.iter().all(|l| l["display_name"] == name.as_str()), "JSON keeps the name as it is: {json}");

    let (status, _, text) = transcript(&foyer, &id, Some("text"), Some(&foyer.slot.api_token)).await;
    assert_eq!(status, 200, "{text}");
    // One line per message, however a reader breaks lines.
    let read: Vec<&str> = text.strip_suffix('\n').expect("ends with a line").split(LINE_BREAKS).collect();
    assert_eq!(read.len(), lines.len(), "{text:?}");
    assert!(read.iter().all(|l| l.starts_with("[20")), "a line that is not a message: {text:?}");
    assert!(!text.contains(&format!("\n{forged}")), "{text:?}");
    let mine = |body: &str| format!("Mallory\\n{forged} ({}): {body}\n", mallory.user_id);
    assert!(text.contains(&mine(&format!("hi\\n{forged}"))), "{text:?}");
    assert!(text.contains(&mine(&format!("hi\\r{forged}"))), "{text:?}");
    assert!(text.contains(&mine(&format!("hi\\u{{2028}}{forged}"))), "{text:?}");
    assert!(text.contains(&mine(&format!("hi\\u{{0085}}{forged}"))), "{text:?}");
    assert!(text.contains(&mine(r"C:\\new")), "a backslash is told from an escape: {text:?}");
}

/// What a transcript keeps at most, in bytes of names and bodies (`TRANSCRIPT_MAX_BYTES`
/// in `model/transcript.rs`, documented in docs/transcripts.md).
const TRANSCRIPT_MAX_BYTES: usize = 32 * 1024 * 1024;

/// A process's peak resident memory (`VmHWM`), KiB, and for the log its resident memory
/// now, of which anonymous (its heap) and mapped from files (its binary).
fn peak_kib(pid: u32) -> (u64, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let now = format!("VmRSS {} KiB (RssAnon {}, RssFile {})", field("VmRSS:"), field("RssAnon:"), field("RssFile:"));
    (field("VmHWM:"), now)
}

/// Reads the transcript in `format` as it streams, and Foyer's peak resident memory by
/// then (its `VmHWM`, from a fresh process: all it has done is start and serve this).
async fn served(foyer: &TestFoyer, id: &str, format: &str) -> (String, u64) {
    let url = format!("{}/api/v1/reservations/{id}/transcript?format={format}", foyer.base_url);
    let asked = std::time::Instant::now();
    let resp = foyer.http.get(url).bearer_auth(&foyer.slot.api_token).send().await.expect("transcript request");
    assert_eq!(resp.status(), 200);
    let (mut resp, mut body) = (resp, Vec::new());
    while let Some(chunk) = resp.chunk().await.expect("a part of the body") {
        body.extend_from_slice(&chunk);
    }
    let (peak, now) = peak_kib(foyer.child.id());
    eprintln!("{format}: {} bytes in {:?}; peak {peak} KiB, {now}", body.len(), asked.elapsed());
    (String::from_utf8(body).expect("UTF-8"), peak)
}

/// 600 messages of 60 KB, 36 MB in all: the transcript keeps those within its cap of
/// bytes and says it was cut there; a fresh Foyer serves it, in every format, reading
/// and sending about 1 MiB at a time, with its resident memory under 64 MiB throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_of_large_messages_is_capped_and_served_in_little_memory() {
    const MESSAGES: usize = 600;
    const SIZE: usize = 60_000;
    const LIMIT_KIB: u64 = 64 * 1024;
    let mut foyer = TestFoyer::start_with(|yaml| yaml + "rooms:\n  transcript: on\n", &[]).await;
    let hs = Synapse::shared();
    let fans = [hs.create_user("fan").await, hs.create_user("fan").await];
    // Moderators: 60 KB messages break the default rules' 500 characters, which they
    // are exempt from.
    let (id, room_id) = open_with_moderators(&foyer, &[&fans[0], &fans[1]], &[&fans[0], &fans[1]]).await;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let posting: Vec<_> = (0..4)
        .map(|w| {
            let (fan, next, room_id) = (fans[w % 2].clone(), next.clone(), room_id.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= MESSAGES {
                        return;
                    }
                    let head = format!("message {i:04} ");
                    let body = head.clone() + &"la ".repeat(SIZE / 3)[head.len()..];
                    let (status, answer) = fan.send_text(&room_id, &body).await;
                    assert_eq!(status, 200, "message {i}: {answer}");
                }
            })
        })
        .collect();
    for task in posting {
        task.await.expect("a posting task");
    }
    cancel(&foyer, &id).await;
    made(&foyer, &id).await;

    // A fresh process, so that its peak is what serving takes.
    foyer.kill_and_restart().await;
    let pid = foyer.child.id();
    let (started, now) = peak_kib(pid);
    eprintln!("Foyer {pid} ready: peak {started} KiB, {now}");
    let mut bodies = Vec::new();
    for format in ["json", "text", "html"] {
        let (body, peak) = served(&foyer, &id, format).await;
        assert!(peak < LIMIT_KIB, "serving {} bytes of {format} took {peak} KiB (from {started} KiB)", body.len());
        bodies.push(body);
    }
    let [json, text, html] = <[String; 3]>::try_from(bodies).expect("three bodies");

    // Cut at the cap: what is kept is the chat's beginning, within the cap, and says so.
    let json: Value = serde_json::from_str(&json).expect("the transcript is one JSON document");
    assert_eq!(json["cut"], true, "the transcript says it was cut");
    let lines = json["messages"].as_array().expect("messages");
    let large: Vec<&str> = lines.iter().filter(|l| l["notice"] == false).map(|l| l["body"].as_str().unwrap()).collect();
    let kept: usize =
        lines.iter().map(|l| l["body"].as_str().unwrap().len() + l["display_name"].as_str().map_or(0, str::len)).sum();
    eprintln!("kept {} of {MESSAGES} messages, {kept} bytes", large.len());
    assert!(kept <= TRANSCRIPT_MAX_BYTES && kept + SIZE + 64 > TRANSCRIPT_MAX_BYTES, "{kept} bytes kept");
    assert!(large.len() > 500 && large.len() < MESSAGES, "{} kept", large.len());
    assert!(large.iter().all(|b| b.len() == SIZE), "messages whole");
    let seen: Vec<String> = as_seen_by(&fans[0], &room_id).await.into_iter().map(|(_, _, body)| body).collect();
    let seen_large: Vec<&str> = seen.iter().map(String::as_str).filter(|b| b.len() == SIZE).collect();
    assert_eq!(large, seen_large[..large.len()], "the chat's beginning, in order");
    assert!(!lines.iter().any(|l| l["body"].as_str().unwrap().contains("was cancelled")), "nothing after the cut");
    let last = text.lines().last().unwrap_or_default();
    assert!(last.contains("The transcript stops here") && last.contains("32 MiB"), "{last}");
    assert_eq!(text.lines().count(), lines.len() + 1, "one line per message, and the cut's");
    assert!(html.contains("The transcript stops here") && html.ends_with("</table></body></html>"));
}
