//! The hostile-input corpus: webhooks built to break a parser, a signature check or a
//! store. Each gets its exact status, errcode and the message naming what is wrong; the
//! store's full dump is the same before and after the whole corpus, and Foyer still
//! serves.

use serde_json::{Value, json};

use base64::Engine as _;

use crate::common::{
    eventually,
    foyer::{TestFoyer, WEBHOOK_SECRET, chrono_now, envelope, metric_in, sqlite_query},
    random_token, unique,
};

/// One hostile request and the answer it must get.
struct Case {
    name: &'static str,
    /// Header pairs; `None` signs `body` properly with a fresh `webhook-id`.
    headers: Option<Vec<(String, String)>>,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    errcode: &'static str,
    /// A part of the `error` message: the field path and the rule.
    error: String,
}

impl Case {
    fn signed(name: &'static str, body: Vec<u8>, error: impl Into<String>) -> Self {
        Case {
            name,
            headers: None,
            content_type: "application/json",
            body,
            status: 400,
            errcode: "FOYER_BAD_PAYLOAD",
            error: error.into(),
        }
    }

    fn unsigned(name: &'static str, headers: Vec<(String, String)>, body: Vec<u8>, error: &str) -> Self {
        Case {
            name,
            headers: Some(headers),
            content_type: "application/json",
            body,
            status: 401,
            errcode: "FOYER_BAD_SIGNATURE",
            error: error.into(),
        }
    }
}

/// Text with the envelope ([`envelope`]) around a raw `data` object, for what `json!`
/// cannot write.
fn raw_envelope(kind: &str, data: &str) -> Vec<u8> {
    format!(r#"{{"type": "{kind}", "timestamp": "2026-11-24T10:00:00Z", "data": {data}}}"#).into_bytes()
}

fn reservation(id: &str) -> Value {
    json!({
        "reservation_id": id, "revision": 5, "title": "Hostile Night",
        "starts_at": "2029-11-27T19:00:00Z", "ends_at": "2029-11-27T21:00:00Z",
        "hosts": ["@dj:localhost"],
    })
}

/// The reservation with one field replaced.
fn with(id: &str, field: &str, value: Value) -> Vec<u8> {
    let mut data = reservation(id);
    data[field] = value;
    envelope("reservation.updated", data)
}

fn headers(id: &str, timestamp: &str, signature: &str) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.into()),
        ("webhook-signature".into(), signature.into()),
    ]
}

/// Headers signed at `timestamp` (seconds) for `body`, then passed through `edit`.
fn signed_at(timestamp: i64, body: &[u8], edit: impl FnOnce(String) -> String) -> Vec<(String, String)> {
    let id = format!("msg_{}", random_token());
    // Foyer's own signer: the `standardwebhooks` crate refuses to sign bodies that are not UTF-8.
    let key = base64::engine::general_purpose::STANDARD.decode(&WEBHOOK_SECRET["whsec_".len()..]).expect("secret");
    let signature =
        edit(foyer::http::webhooks::signature::sign(&foyer::config::WebhookKey::new(key), &id, timestamp, body));
    headers(&id, &timestamp.to_string(), &signature)
}

/// `bot` is the user ID of the Foyer under test.
fn corpus(id: &str, bot: &str) -> Vec<Case> {
    let deep_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let tickets = |n: usize| {
        let items: Vec<Value> =
            (0..n).map(|i| json!({"ticket_id": format!("t-{i}"), "user_id": format!("@u{i}:localhost")})).collect();
        envelope("ticket.granted", json!({"reservation_id": id, "tickets": items}))
    };
    let ticket_for = |user: &str| {
        envelope("ticket.granted", json!({"reservation_id": id, "tickets": [{"ticket_id": "t-1", "user_id": user}]}))
    };
    let now = chrono_now();
    let valid = envelope("stream.started", json!({"reservation_id": id}));
    vec![
        // Structure and encoding.
        Case::signed("arrays nested 10,000 deep", deep_arrays.into_bytes(), "body: is not valid JSON (recursion limit"),
        Case::signed(
            "objects nested 10,000 deep in data",
            raw_envelope("reservation.updated", &deep_objects).to_vec(),
            "body: is not valid JSON (recursion limit",
        ),
        Case::signed(
            "invalid UTF-8 inside a string",
            [&raw_envelope("stream.started", r#"{"reservation_id": "x"#)[..], b"\xff\xfe\"}"].concat().to_vec(),
            "body: is not valid JSON",
        ),
        Case::signed("invalid UTF-8 outside strings", b"{\"type\" \xc0\xaf: 1}".to_vec(), "body: is not valid JSON"),
        Case::signed(
            "a lone high surrogate",
            raw_envelope("reservation.updated", &format!(r#"{{"reservation_id": "{id}", "title": "\ud800"}}"#)),
            "body: is not valid JSON (unexpected end of hex escape",
        ),
        Case::signed(
            "a lone low surrogate",
            raw_envelope("reservation.updated", &format!(r#"{{"reservation_id": "{id}", "title": "a\udc00"}}"#)),
            "body: is not valid JSON",
        ),
        Case::signed(
            "a duplicate key in the envelope",
            format!(r#"{{"type": "stream.started", "type": "stream.ended", "timestamp": "2026-11-24T10:00:00Z", "data": {{"reservation_id": "{id}"}}}}"#).into_bytes(),
            r#"body: is not valid JSON (duplicate key "type""#,
        ),
        Case::signed(
            "a duplicate revision",
            raw_envelope(
                "reservation.updated",
                &format!(r#"{{"reservation_id": "{id}", "revision": 1, "revision": 99, "title": "x", "starts_at": "2029-11-27T19:00:00Z", "ends_at": "2029-11-27T21:00:00Z"}}"#),
            ),
            r#"duplicate key "revision""#,
        ),
        Case::signed(
            "a ticket smuggling a second user_id",
            raw_envelope(
                "ticket.granted",
                &format!(r#"{{"reservation_id": "{id}", "tickets": [{{"ticket_id": "t", "user_id": "@a:localhost", "user_id": "@mallory:localhost"}}]}}"#),
            ),
            r#"duplicate key "user_id""#,
        ),
        Case::signed("an empty body", Vec::new(), "body: is not valid JSON"),
        Case::signed("a JSON null", b"null".to_vec(), "body: must be a JSON object"),
        Case::signed("a top-level array", b"[1, 2]".to_vec(), "body: must be a JSON object"),
        Case::signed(
            "trailing bytes after the object",
            [&valid[..], b" {}"].concat(),
            "body: is not valid JSON (trailing characters",
        ),
        Case::signed("a NaN literal", raw_envelope("stream.started", r#"{"reservation_id": NaN}"#), "body: is not valid JSON"),
        Case::signed("a byte-order mark", [&b"\xef\xbb\xbf"[..], &valid[..]].concat(), "body: is not valid JSON"),
        // Strings.
        Case::signed("a 900,000-character title", with(id, "title", json!("x".repeat(900_000))), "data.title: must be 1 to 255 characters (it has 900000)"),
        Case::signed(
            "a 100,000-character reservation id",
            envelope("stream.started", json!({"reservation_id": "r".repeat(100_000)})),
            "data.reservation_id: must be 1 to 128 characters",
        ),
        Case::signed("a 4,001-character description", with(id, "description", json!("d".repeat(4001))), "data.description: must be at most 4000 characters"),
        Case::signed("a NUL in the title", with(id, "title", json!("Hostile\u{0}Night")), "data.title: must not contain control characters"),
        Case::signed(
            "a homoglyph reservation id",
            envelope("stream.started", json!({"reservation_id": "j\u{430}zz"})),
            "data.reservation_id: must be 1 to 128 characters of A-Z",
        ),
        Case::signed(
            "a path in the reservation id",
            envelope("stream.started", json!({"reservation_id": "../../etc/passwd"})),
            "data.reservation_id: must be 1 to 128 characters of A-Z",
        ),
        Case::signed("a javascript: stream URL", with(id, "stream_url", json!("javascript:alert(1)")), "data.stream_url: must be an https:// URL"),
        Case::signed("a plain http stream URL", with(id, "stream_url", json!("http://stream.example.org/w")), "data.stream_url: must be an https:// URL"),
        Case::signed(
            "a 3,000-character stream URL",
            with(id, "stream_url", json!(format!("https://example.org/{}", "a".repeat(3000)))),
            "data.stream_url: must be at most 2048 characters",
        ),
        Case::signed(
            "a stream URL of 1,020 characters, 6,020 once percent-encoded",
            with(id, "stream_url", json!(format!("https://example.org/{}", "é".repeat(1000)))),
            "data.stream_url: must be at most 2048 characters once normalised (percent-encoded); it has 6020",
        ),
        Case::signed(
            "a stream URL with a template variable",
            with(id, "stream_url", json!("https://stream.example.org/w?viewer=$matrix_user_id")),
            "data.stream_url: must not contain '$' or '%24'",
        ),
        Case::signed(
            "a stream URL with a percent-encoded template variable",
            with(id, "stream_url", json!("https://stream.example.org/w?viewer=%24matrix_user_id")),
            "data.stream_url: must not contain '$' or '%24'",
        ),
        Case::signed(
            "a stream URL with user-info",
            with(id, "stream_url", json!("https://stream.example.org@evil.example.net/w")),
            "data.stream_url: must not carry user-info",
        ),
        // Numbers.
        Case::signed("revision 2^64 - 1", with(id, "revision", json!(u64::MAX)), "data.revision: must be at most 9223372036854775807"),
        Case::signed(
            "revision 2^64",
            String::from_utf8(with(id, "revision", json!(0))).expect("utf8").replace(r#""revision":0"#, r#""revision":18446744073709551616"#).into_bytes(),
            "data.revision: must be an unsigned integer",
        ),
        Case::signed(
            "revision 1e400",
            String::from_utf8(with(id, "revision", json!(0))).expect("utf8").replace(r#""revision":0"#, r#""revision":1e400"#).into_bytes(),
            "body: is not valid JSON (number out of range",
        ),
        Case::signed("revision -1", with(id, "revision", json!(-1)), "data.revision: must be an unsigned integer"),
        Case::signed("revision 2^63", with(id, "revision", json!(1u64 << 63)), "data.revision: must be at most"),
        Case::signed("revision as a string", with(id, "revision", json!("6")), "data.revision: must be an unsigned integer"),
        Case::signed("revision 6.5", with(id, "revision", json!(6.5)), "data.revision: must be an unsigned integer"),
        Case::signed(
            "a negative open_before_seconds",
            with(id, "chat", json!({"open_before_seconds": -5})),
            "data.chat.open_before_seconds: must be an unsigned integer",
        ),
        Case::signed(
            "close_after_seconds past 2^32",
            with(id, "chat", json!({"close_after_seconds": 1u64 << 33})),
            "data.chat.close_after_seconds: must be at most 604800",
        ),
        // Dates.
        Case::signed("a date without a zone", with(id, "starts_at", json!("2029-11-27T19:00:00")), "data.starts_at: must be an RFC 3339 date-time with a zone"),
        Case::signed("a leap second", with(id, "starts_at", json!("2029-11-27T18:59:60Z")), "data.starts_at: must not be a leap second"),
        Case::signed("year 9999", with(id, "ends_at", json!("9999-12-31T23:59:59Z")), "data.ends_at: must be within 5 years of now"),
        Case::signed("year 1", with(id, "starts_at", json!("0001-01-01T00:00:00Z")), "data.starts_at: must be within 5 years of now"),
        Case::signed("February 30th", with(id, "starts_at", json!("2029-02-30T19:00:00Z")), "data.starts_at: must be an RFC 3339"),
        Case::signed("an end before the start", with(id, "ends_at", json!("2029-11-27T18:00:00Z")), "data.ends_at: must be after data.starts_at"),
        Case::signed(
            "an envelope timestamp in words",
            br#"{"type": "stream.started", "timestamp": "yesterday", "data": {"reservation_id": "x"}}"#.to_vec(),
            "timestamp: must be an RFC 3339",
        ),
        Case::signed(
            "a stream start in month 13",
            envelope("stream.started", json!({"reservation_id": id, "at": "2026-13-01T00:00:00Z"})),
            "data.at: must be an RFC 3339",
        ),
        Case::signed(
            "a stream end an hour ahead",
            envelope("stream.ended", json!({"reservation_id": id, "at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()})),
            "data.at: must not be more than 5 minutes ahead of now",
        ),
        // Users and batches.
        Case::signed("a user id with a space in its server name", ticket_for("@alice:exa mple.org"), "data.tickets[0].user_id: \"@alice:exa mple.org\" is not a valid Matrix user ID"),
        Case::signed("a user id with an empty server name", ticket_for("@alice:"), "data.tickets[0].user_id:"),
        Case::signed("a user id with a port past 65535", ticket_for("@alice:localhost:99999"), "data.tickets[0].user_id:"),
        Case::signed("a user id with an unclosed IPv6 server", ticket_for("@alice:[::1"), "data.tickets[0].user_id:"),
        Case::signed("a user id without its sigil", ticket_for("alice:localhost"), "data.tickets[0].user_id:"),
        Case::signed("a host without a server name", with(id, "hosts", json!(["@dj"])), "data.hosts[0]:"),
        Case::signed("the bot as a host", with(id, "hosts", json!([bot])), format!("data.hosts[0]: {bot} is Foyer's own bot")),
        Case::signed("the bot as a ticket holder", ticket_for(bot), format!("data.tickets[0].user_id: {bot} is Foyer's own bot")),
        Case::signed("1,001 tickets", tickets(1001), "data.tickets: must hold 1 to 1000 items (it has 1001)"),
        Case::signed(
            "1,001 revoked ticket ids",
            envelope("ticket.revoked", json!({"reservation_id": id, "ticket_ids": vec!["t"; 1001]})),
            "data.ticket_ids: must hold 1 to 1000 items (it has 1001)",
        ),
        Case::signed("101 hosts", with(id, "hosts", json!((0..101).map(|i| format!("@h{i}:localhost")).collect::<Vec<_>>())), "data.hosts: must hold at most 100"),
        Case::signed("an empty ticket batch", tickets(0), "data.tickets: must hold 1 to 1000 items (it has 0)"),
        Case::signed(
            "a ticket that is a string",
            envelope("ticket.granted", json!({"reservation_id": id, "tickets": ["@alice:localhost"]})),
            "data.tickets[0]: must be a JSON object",
        ),
        Case::signed("an unknown event type", envelope("reservation.deleted", json!({"reservation_id": id})), "type: \"reservation.deleted\" is not a known event type"),
        Case::signed("an event type in other case", envelope("Stream.Started", json!({"reservation_id": id})), "type: \"Stream.Started\" is not a known event type"),
        // Signatures.
        Case::unsigned(
            "a signature with a space after the comma",
            signed_at(now, &valid, |s| s.replacen("v1,", "v1, ", 1)),
            valid.clone(),
            "no signature matches",
        ),
        Case::unsigned(
            "a signature with a space inside the base64",
            signed_at(now, &valid, |s| format!("{} {}", &s[..10], &s[10..])),
            valid.clone(),
            "has no v1 signature",
        ),
        Case::unsigned("a replay 10 minutes old", signed_at(now - 600, &valid, |s| s), valid.clone(), "beyond the tolerance"),
        Case::unsigned("a replay from 10 minutes ahead", signed_at(now + 600, &valid, |s| s), valid.clone(), "beyond the tolerance"),
        Case::unsigned("a timestamp in milliseconds", signed_at(now * 1000, &valid, |s| s), valid.clone(), "webhook-timestamp header is not valid"),
        Case::unsigned("a negative timestamp", headers("msg_neg", "-5", "v1,AAAA"), valid.clone(), "webhook-timestamp header is not valid"),
        Case::unsigned("a timestamp in exponent form", headers("msg_exp", "1.7e9", "v1,AAAA"), valid.clone(), "webhook-timestamp header is not valid"),
        Case::unsigned("a webhook-id with a space", signed_at(now, &valid, |s| s).into_iter().map(|(k, v)| if k == "webhook-id" { (k, format!("{v} x")) } else { (k, v) }).collect(), valid.clone(), "webhook-id header is not valid"),
        Case::unsigned("a 300-character webhook-id", headers(&"i".repeat(300), &now.to_string(), "v1,AAAA"), valid.clone(), "webhook-id header is not valid"),
        Case::unsigned("a tampered body", signed_at(now, &valid, |s| s), envelope("stream.ended", json!({"reservation_id": id})), "no signature matches"),
        Case::unsigned("only a v2 signature", signed_at(now, &valid, |s| s.replacen("v1,", "v2,", 1)), valid.clone(), "has no v1 signature"),
        Case::unsigned(
            "no signature header",
            signed_at(now, &valid, |s| s).into_iter().filter(|(k, _)| k != "webhook-signature").collect(),
            valid.clone(),
            "webhook-signature header is missing",
        ),
        // Envelope of the request.
        Case {
            name: "text/plain",
            headers: None,
            content_type: "text/plain",
            body: valid.clone(),
            status: 415,
            errcode: "FOYER_BAD_CONTENT_TYPE",
            error: "Content-Type must be application/json".into(),
        },
        Case {
            name: "application/json-patch+json",
            headers: None,
            content_type: "application/json-patch+json",
            body: valid.clone(),
            status: 415,
            errcode: "FOYER_BAD_CONTENT_TYPE",
            error: "Content-Type must be application/json".into(),
        },
        Case {
            name: "a 2 MiB body",
            headers: None,
            content_type: "application/json",
            body: with(id, "description", json!("z".repeat(2 << 20))),
            status: 413,
            errcode: "FOYER_TOO_LARGE",
            error: "the body is over 1048576 bytes".into(),
        },
    ]
}

/// Every row of every table, as text: equal dumps mean nothing changed.
fn dump(foyer: &TestFoyer) -> String {
    let db = foyer.dir().join("foyer.db");
    let tables = sqlite_query(&db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
    tables.lines().map(|table| format!("{table}:\n{}", sqlite_query(&db, &format!("SELECT * FROM {table}")))).collect()
}

#[tokio::test]
async fn the_hostile_corpus_gets_exact_4xx_and_changes_nothing() {
    if std::env::var("FOYER_TEST_STORE").as_deref() == Ok("postgres") {
        return; // The dump reads the SQLite file; the corpus never reaches the store anyway.
    }
    let foyer = TestFoyer::start().await;
    let id = unique("hostile");
    foyer.accept("reservation.created", reservation(&id)).await;
    let before = dump(&foyer);
    assert!(before.contains(&id), "the dump sees the stored reservation");

    let corpus = corpus(&id, &foyer.slot.bot_user_id());
    assert!(corpus.len() >= 40, "the corpus holds {} inputs", corpus.len());
    let mut wrong = Vec::new();
    for case in &corpus {
        let (status, body) = match &case.headers {
            Some(headers) => {
                let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                foyer.post_webhook(&pairs, case.content_type, case.body.clone()).await
            }
            None => {
                let pairs = signed_at(chrono_now(), &case.body, |s| s);
                let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                foyer.post_webhook(&pairs, case.content_type, case.body.clone()).await
            }
        };
        let error = body["error"].as_str().unwrap_or_default();
        if status != case.status || body["errcode"] != case.errcode || !error.contains(&case.error) {
            wrong.push(format!(
                "{}: got {status} {body}, want {} {} {:?}",
                case.name, case.status, case.errcode, case.error
            ));
        }
    }
    assert!(wrong.is_empty(), "{} of {} inputs got the wrong answer:\n{}", wrong.len(), corpus.len(), wrong.join("\n"));

    assert_eq!(dump(&foyer), before, "a rejected webhook changed the store");
    let (status, r) = foyer.reservation(&id).await;
    assert_eq!((status, &r["title"]), (200, &json!("Hostile Night")));
    assert_eq!(crate::common::http_status(foyer.slot.port, "/health/live"), Some(200));
    foyer.accept("stream.started", json!({"reservation_id": id})).await;
    println!("hostile corpus: {} inputs, each refused with its exact answer; store unchanged", corpus.len());
}

/// What the homeserver pushes is outside input too: a sender with a newline and an ESC
/// sequence stays on its one log line, and made-up `m.` event types share the `other`
/// label instead of adding a metric series each.
#[tokio::test]
async fn homeserver_events_forge_no_log_lines_and_no_metric_series() {
    let foyer = TestFoyer::start().await;
    let forged = "2026-01-01T00:00:00.000000Z ERROR forged: the database is gone";
    let sender = format!("@mallory:localhost\n{forged}\x1b[2J");
    let events: Vec<Value> = (0..3)
        .map(|i| {
            json!({"event_id": format!("$hostile{i}-{}", random_token()), "room_id": "!elsewhere:localhost",
                   "type": format!("m.x{i}"), "sender": sender, "content": {}})
        })
        .collect();
    let path = format!("/_matrix/app/v1/transactions/hostile-{}", random_token());
    let (status, answer) =
        foyer.request(reqwest::Method::PUT, &path, Some(&foyer.slot.hs_token), Some(json!({"events": events}))).await;
    assert_eq!(status, 200, "{answer}");

    let log = eventually(std::time::Duration::from_secs(10), "the three events in the log", || async {
        let log = foyer.log();
        (log.lines().filter(|l| l.contains("homeserver event") && l.contains("@mallory")).count() == 3).then_some(log)
    })
    .await;
    assert!(!log.lines().any(|l| l.starts_with(forged)), "a forged line:\n{log}");
    assert!(!log.contains('\x1b'), "a raw ESC in the log:\n{log}");
    let line = log.lines().find(|l| l.contains("homeserver event") && l.contains("@mallory")).unwrap_or_default();
    assert!(line.contains(&format!("@mallory:localhost\\n{forged}\\x1b[2J")), "{line}");

    let metrics = foyer.metrics_text().await;
    let other = metric_in(&metrics, r#"foyer_homeserver_events_total{type="other"}"#).unwrap_or(0.0);
    assert!(other >= 3.0, "{metrics}");
    assert!(!metrics.contains(r#"type="m.x0""#), "{metrics}");
}
