//! Calendar feeds (docs/calendar.md) against a real Synapse, each feed read by a real
//! iCalendar parser (the `icalendar` package, `tests/client/read_feed.py`): a channel's
//! feed keeps each show's `UID` while its `SEQUENCE` grows with each reschedule, marks a
//! cancelled show `CANCELLED`, and wants the API token unless `calendar.public`; a
//! holder's signed feed lists only their shows, stops once their last ticket is revoked,
//! and a rotated `calendar.feed_key` revokes every URL. (`calendar` is checked like
//! every other section: `config_cli.rs`.)

use std::process::{Command, Stdio};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::common::{
    enc,
    foyer::TestFoyer,
    random_token, repo_root,
    synapse::{SERVER_NAME, Synapse},
    unique,
};

/// A time `days` and `minutes` from now, whole seconds, as the webhook wants it.
fn from_now(days: i64, minutes: i64) -> String {
    (Utc::now() + Duration::days(days) + Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A reservation in `channel` (when given), ten days from now: no room opens while the
/// test runs.
fn show(id: &str, revision: u64, channel: Option<(&str, &str)>, starts: &str, ends: &str) -> Value {
    let mut show = json!({
        "reservation_id": id, "revision": revision, "title": format!("Show {id}"),
        "starts_at": starts, "ends_at": ends,
    });
    if let Some((channel_id, name)) = channel {
        show["channel"] = json!({"id": channel_id, "name": name});
    }
    show
}

/// `GET path` with the bearer `token` when given: status, content type, body.
async fn get(foyer: &TestFoyer, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = foyer.http.get(format!("{}{path}", foyer.base_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.expect("a calendar request");
    let status = answer.status().as_u16();
    let kind = answer.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, kind, answer.text().await.expect("its body"))
}

/// The feed at `path`, read by the `icalendar` package, after checking what a parser
/// forgives: CRLF line ends and lines of at most 75 octets.
async fn feed(foyer: &TestFoyer, path: &str, token: Option<&str>) -> Value {
    let (status, kind, body) = get(foyer, path, token).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(kind, "text/calendar; charset=utf-8", "{path}");
    assert!(body.ends_with("\r\n") && !body.replace("\r\n", "").contains(['\r', '\n']), "not CRLF: {body:?}");
    for line in body.split("\r\n") {
        assert!(line.len() <= 75, "a line of {} octets: {line:?}", line.len());
    }
    parse(&body)
}

/// `tests/client/read_feed.py` on `body`: its JSON.
fn parse(body: &str) -> Value {
    use std::io::Write as _;
    let python = repo_root().join("target/synapse-venv/bin/python");
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/client/read_feed.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the iCalendar parser (scripts/install-synapse.sh installs it)");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("feed the parser");
    let out = child.wait_with_output().expect("the parser's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the parser refused the feed: {}\n{body}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The event of `id` in a parsed feed.
fn event<'f>(feed: &'f Value, id: &str, server: &str) -> &'f Value {
    let uid = format!("{id}@{server}");
    let events = feed["events"].as_array().expect("events");
    events.iter().find(|e| e["uid"] == uid.as_str()).unwrap_or_else(|| panic!("no event {uid} in {feed}"))
}

/// The reservation ids of a parsed feed's events, in order.
fn shows(feed: &Value, server: &str) -> Vec<String> {
    let suffix = format!("@{server}");
    let events = feed["events"].as_array().expect("events");
    events.iter().map(|e| e["uid"].as_str().unwrap().strip_suffix(&suffix).unwrap().to_owned()).collect()
}

fn utc(text: &str) -> String {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `id` as a path segment: `enc` is form encoding, whose `+` for a space a path keeps as
/// a `+` (a `+` of the id itself is `%2B` already).
fn segment(id: &str) -> String {
    enc(id).replace('+', "%20")
}

fn server() -> String {
    SERVER_NAME.to_owned()
}

#[tokio::test]
async fn a_channel_feed_keeps_each_uid_and_counts_reschedules_and_cancellations() {
    let foyer = TestFoyer::start().await;
    let token = foyer.slot.api_token.clone();
    let server = server();
    let channel = unique("jazz club/");
    let name = "Jazz, Blues; and \\ more";
    let (a, b, elsewhere) = (unique("cal-a"), unique("cal-b"), unique("cal-other"));
    let (starts, ends) = (from_now(10, 0), from_now(10, 120));
    let mut first = show(&a, 1, Some((&channel, name)), &starts, &ends);
    first["description"] = json!("Two sets,\nwith a break; bring friends.");
    first["stream_url"] = json!("https://watch.example.org/jazz?set=1&b=2");
    foyer.accept("reservation.created", first.clone()).await;
    foyer.accept("reservation.created", show(&b, 1, Some((&channel, name)), &from_now(12, 0), &from_now(12, 60))).await;
    let other = show(&elsewhere, 1, Some((&unique("rock"), "Rock")), &starts, &ends);
    foyer.accept("reservation.created", other).await;

    let path = format!("/calendar/{}.ics", segment(&channel));
    let (status, _, body) = get(&foyer, &path, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("FOYER_UNAUTHORIZED"), "{body}");
    let (status, _, _) = get(&foyer, &path, Some("not-the-token-of-this-foyer-at-all")).await;
    assert_eq!(status, 401);

    let before = feed(&foyer, &path, Some(&token)).await;
    assert_eq!(before["version"], "2.0", "{before}");
    assert_eq!(before["name"], name, "{before}");
    assert_eq!((before["refresh"].as_str(), before["refresh_value"].as_str()), (Some("PT1H"), Some("DURATION")));
    assert_eq!(before["ttl"], "PT1H");
    assert_eq!(shows(&before, &server), vec![a.clone(), b.clone()], "the channel's shows only, earliest first");
    let shown = event(&before, &a, &server);
    assert_eq!(shown["sequence"], 0, "{shown}");
    assert_eq!(shown["status"], "CONFIRMED", "{shown}");
    assert_eq!(shown["summary"], format!("Show {a}"));
    assert_eq!(shown["description"], "Two sets,\nwith a break; bring friends.");
    assert_eq!(shown["url"], "https://watch.example.org/jazz?set=1&b=2");
    assert_eq!((shown["dtstart"].as_str().unwrap(), shown["dtend"].as_str().unwrap()), (&*utc(&starts), &*utc(&ends)));
    let stamped = DateTime::parse_from_rfc3339(shown["dtstamp"].as_str().unwrap()).unwrap();
    assert!((Utc::now() - stamped.with_timezone(&Utc)).num_seconds().abs() < 120, "DTSTAMP is when it was recorded");

    // A new title alone is no reschedule; a new start is one, and so is a new end.
    let mut renamed = first.clone();
    renamed["revision"] = json!(2);
    renamed["title"] = json!("Friday Jazz");
    foyer.accept("reservation.updated", renamed.clone()).await;
    let after = feed(&foyer, &path, Some(&token)).await;
    assert_eq!(event(&after, &a, &server)["sequence"], 0, "{after}");
    assert_eq!(event(&after, &a, &server)["summary"], "Friday Jazz");
    let moved_start = from_now(11, 30);
    let mut moved = renamed.clone();
    moved["revision"] = json!(3);
    moved["starts_at"] = json!(moved_start);
    moved["ends_at"] = json!(from_now(11, 150));
    foyer.accept("reservation.updated", moved.clone()).await;
    let after = feed(&foyer, &path, Some(&token)).await;
    let shown = event(&after, &a, &server);
    assert_eq!(shown["sequence"], 1, "{after}");
    assert_eq!(shown["dtstart"].as_str(), Some(&*utc(&moved_start)));
    // The same update again (a retry with a new webhook id) moves nothing.
    foyer.accept("reservation.updated", moved.clone()).await;
    assert_eq!(event(&feed(&foyer, &path, Some(&token)).await, &a, &server)["sequence"], 1);
    moved["revision"] = json!(4);
    moved["ends_at"] = json!(from_now(11, 180));
    foyer.accept("reservation.updated", moved).await;
    assert_eq!(event(&feed(&foyer, &path, Some(&token)).await, &a, &server)["sequence"], 2);

    foyer.accept("reservation.cancelled", json!({"reservation_id": b, "reason": "the band is ill"})).await;
    let after = feed(&foyer, &path, Some(&token)).await;
    assert_eq!(event(&after, &b, &server)["status"], "CANCELLED", "{after}");
    assert_eq!(event(&after, &a, &server)["status"], "CONFIRMED", "{after}");
    assert_eq!(shows(&after, &server), vec![a.clone(), b.clone()], "a cancelled show stays, struck out");

    let (status, _, body) = get(&foyer, &format!("/calendar/{}.ics", segment(&unique("nobody"))), Some(&token)).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = get(&foyer, &format!("/calendar/{}", segment(&channel)), Some(&token)).await;
    assert_eq!(status, 404, "without .ics");

    // Without calendar.feed_key, holders have no feed and tickets no calendar_url.
    let fan = Synapse::shared().create_user("fan").await;
    foyer.grant(&a, &[("t1", fan.user_id.as_str())]).await;
    let (_, tickets) =
        foyer.request(reqwest::Method::GET, &format!("/api/v1/reservations/{a}/tickets"), Some(&token), None).await;
    assert_eq!(tickets["tickets"][0]["calendar_url"], Value::Null, "{tickets}");
}

#[tokio::test]
async fn a_public_calendar_needs_no_token() {
    let foyer = TestFoyer::start_with(|yaml| format!("{yaml}calendar:\n  public: true\n"), &[]).await;
    let channel = unique("open-mic");
    let id = unique("cal-public");
    foyer
        .accept("reservation.created", show(&id, 1, Some((&channel, "Open Mic")), &from_now(10, 0), &from_now(10, 60)))
        .await;
    let path = format!("/calendar/{}.ics", segment(&channel));
    let read = feed(&foyer, &path, None).await;
    assert_eq!(shows(&read, &server()), vec![id], "{read}");
    assert_eq!(read["name"], "Open Mic");
    let (status, _, _) = get(&foyer, &format!("/calendar/{}.ics", segment(&unique("nobody"))), None).await;
    assert_eq!(status, 404);
}

/// The `calendar_url` of each ticket of reservation `id`, by ticket id.
async fn calendar_urls(foyer: &TestFoyer, id: &str) -> Vec<(String, Value)> {
    let path = format!("/api/v1/reservations/{id}/tickets");
    let (status, body) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 200, "{body}");
    let tickets = body["tickets"].as_array().expect("tickets");
    tickets.iter().map(|t| (t["ticket_id"].as_str().unwrap().to_owned(), t["calendar_url"].clone())).collect()
}

/// The path of the holder feed URL of `ticket` in reservation `id`.
async fn holder_path(foyer: &TestFoyer, id: &str, ticket: &str) -> String {
    let urls = calendar_urls(foyer, id).await;
    let url = urls.iter().find(|(t, _)| t == ticket).and_then(|(_, url)| url.as_str()).unwrap_or_else(|| {
        panic!("no calendar_url for ticket {ticket} of {id}: {urls:?}");
    });
    let path = url.strip_prefix(&foyer.base_url).unwrap_or_else(|| panic!("{url} is not under {}", foyer.base_url));
    assert!(path.starts_with("/calendar/holder/") && path.ends_with(".ics"), "{path}");
    path.to_owned()
}

#[tokio::test]
async fn a_holders_feed_lists_only_their_shows_and_stops_when_revoked_or_rotated() {
    let first_key = random_token();
    let foyer_key = [("FOYER_CALENDAR_FEED_KEY", first_key.as_str())];
    let mut foyer = TestFoyer::start_with(|yaml| yaml, &foyer_key).await;
    let server = server();
    let (alice, bob) = (Synapse::shared().create_user("alice").await, Synapse::shared().create_user("bob").await);
    let channel = unique("chan");
    let (one, two, three) = (unique("cal-h1"), unique("cal-h2"), unique("cal-h3"));
    for (n, id) in [&one, &two, &three].into_iter().enumerate() {
        let day = 10 + n as i64;
        let show = show(id, 1, Some((&channel, "Chan")), &from_now(day, 0), &from_now(day, 60));
        foyer.accept("reservation.created", show).await;
    }
    foyer.grant(&one, &[("a1", alice.user_id.as_str()), ("b1", bob.user_id.as_str())]).await;
    foyer.grant(&two, &[("b2", bob.user_id.as_str())]).await;
    foyer.grant(&three, &[("a3", alice.user_id.as_str())]).await;
    foyer
        .accept(
            "ticket.granted",
            json!({"reservation_id": one, "tickets": [{"ticket_id": "e1", "email": "carol@example.org"}]}),
        )
        .await;

    let alices = holder_path(&foyer, &one, "a1").await;
    assert_eq!(alices, holder_path(&foyer, &three, "a3").await, "one URL per holder");
    let bobs = holder_path(&foyer, &two, "b2").await;
    assert_ne!(alices, bobs);
    let email = calendar_urls(&foyer, &one).await.into_iter().find(|(t, _)| t == "e1").unwrap().1;
    assert_eq!(email, Value::Null, "an email ticket has no holder with a Matrix ID yet");
    // Nothing personal but the user ID, and never the email: the token is the user ID
    // and its MAC.
    let token = alices.trim_start_matches("/calendar/holder/").trim_end_matches(".ics");
    let (user, mac) = token.split_once('.').unwrap_or_else(|| panic!("{token} is not <user>.<mac>"));
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    assert_eq!(base64::Engine::decode(&b64, user).ok(), Some(alice.user_id.clone().into_bytes()), "{alices}");
    assert_eq!(base64::Engine::decode(&b64, mac).map(|m| m.len()).ok(), Some(16), "a truncated HMAC-SHA256: {alices}");

    let read = feed(&foyer, &alices, None).await;
    assert_eq!(shows(&read, &server), vec![one.clone(), three.clone()], "alice's shows only: {read}");
    assert_eq!(read["name"], format!("My shows on {server}"));
    assert_eq!(shows(&feed(&foyer, &bobs, None).await, &server), vec![one.clone(), two.clone()]);

    // A token altered, made for another user, or not one at all: 404 alike.
    let token = alices.trim_start_matches("/calendar/holder/").trim_end_matches(".ics").to_owned();
    let (user_part, mac) = token.split_once('.').unwrap();
    let bob_token = bobs.trim_start_matches("/calendar/holder/").trim_end_matches(".ics");
    let forged = format!("/calendar/holder/{}.{mac}.ics", bob_token.split_once('.').unwrap().0);
    let other = if mac.starts_with('A') { 'B' } else { 'A' };
    let flipped = format!("/calendar/holder/{user_part}.{other}{}.ics", &mac[1..]);
    for bad in [forged.as_str(), flipped.as_str(), "/calendar/holder/nothing.ics", &alices[..alices.len() - 4]] {
        let (status, _, body) = get(&foyer, bad, None).await;
        assert_eq!(status, 404, "{bad}: {body}");
    }

    // Revoked one by one: the feed follows, then stops.
    foyer.revoke(&one, &["a1"]).await;
    assert_eq!(shows(&feed(&foyer, &alices, None).await, &server), vec![three.clone()]);
    foyer.revoke(&three, &["a3"]).await;
    let (status, _, body) = get(&foyer, &alices, None).await;
    assert_eq!(status, 404, "nothing of alice's is active: {body}");
    assert_eq!(calendar_urls(&foyer, &three).await[0].1, Value::Null, "a revoked ticket has no calendar_url");

    // The token is never logged, though each of these requests logged a line in its span.
    let log = foyer.log();
    assert!(log.contains("holder feed served") && log.contains("holder feed refused"), "{log}");
    assert!(log.contains("/calendar/holder/[token]"), "the requests' paths, without the token: {log}");
    assert!(!log.contains(&token) && !log.contains(mac) && !log.contains(user_part), "a feed token in the log");

    // A new key: every old URL answers 404, the tickets endpoint gives new ones.
    let second_key = random_token();
    foyer.kill_and_restart_with(&[("FOYER_CALENDAR_FEED_KEY", second_key.as_str())], true).await;
    let (status, _, _) = get(&foyer, &bobs, None).await;
    assert_eq!(status, 404, "the URL made under the old key");
    let renewed = holder_path(&foyer, &two, "b2").await;
    assert_ne!(renewed, bobs);
    assert_eq!(shows(&feed(&foyer, &renewed, None).await, &server), vec![one, two]);
}
