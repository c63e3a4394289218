//! The payload parser's tests: each event read into domain types, each broken rule named
//! by its field path, and no input, however broken, a panic.

use serde_json::json;

use super::*;

fn envelope(kind: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": kind, "timestamp": "2026-11-24T10:00:00Z", "data": data})).unwrap()
}

fn jazz() -> Value {
    json!({
        "reservation_id": "jazz-2026-11-27", "revision": 3, "title": "Friday Night Jazz",
        "description": "Live from the Blue Room",
        "starts_at": "2026-11-27T19:00:00Z", "ends_at": "2026-11-27T21:00:00+00:00",
        "stream_url": "https://stream.example.org/watch/jazz",
        "channel": {"id": "blue-room", "name": "The Blue Room"},
        "hosts": ["@dj:example.org"],
        "chat": {"open_before_seconds": 900, "close_after_seconds": 1800}
    })
}

#[test]
fn the_type_as_sent_tells_created_from_updated() {
    let sent = |kind: &str, data| parse_typed(&envelope(kind, data), Utc::now(), &Rules::default()).unwrap().0;
    assert_eq!(sent("reservation.created", jazz()), "reservation.created");
    assert_eq!(sent("reservation.updated", jazz()), "reservation.updated");
    let id = json!({"reservation_id": "jazz"});
    assert_eq!(sent("reservation.cancelled", id.clone()), "reservation.cancelled");
    assert_eq!(sent("stream.started", id), "stream.started");
}

#[test]
fn the_contract_example_parses() {
    let WebhookEvent::Upsert(r) = parse(&envelope("reservation.updated", jazz()), Utc::now()).unwrap() else {
        panic!("not an upsert")
    };
    assert_eq!(r.id.as_str(), "jazz-2026-11-27");
    assert_eq!(r.revision, Some(Revision(3)));
    assert_eq!(r.hosts.len(), 1);
    assert_eq!((r.open_before_seconds, r.close_after_seconds), (Some(900), Some(1800)));
    assert_eq!(r.transcript, None, "rooms.transcript decides");
    assert_eq!(r.channel.unwrap().name.as_str(), "The Blue Room");
}

#[test]
fn stream_at_defaults_to_now() {
    let now = Utc::now();
    let event = parse(&envelope("stream.started", json!({"reservation_id": "a"})), now).unwrap();
    assert_eq!(event, WebhookEvent::StreamStarted { id: ReservationId::parse("a").unwrap(), at: now });
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    assert_eq!(parse(deep.as_bytes(), Utc::now()).unwrap_err().path, "body");
}

fn path_of(body: &[u8]) -> String {
    parse(body, Utc::now()).unwrap_err().path
}

#[test]
fn duplicate_keys_are_refused_at_any_depth() {
    let top = br#"{"type":"stream.started","type":"stream.ended","timestamp":"2026-11-24T10:00:00Z","data":{}}"#;
    let e = parse(top, Utc::now()).unwrap_err();
    assert_eq!(e.path, "body");
    assert!(e.message.contains(r#"duplicate key "type""#), "{e}");
    let nested = br#"{"type":"stream.started","timestamp":"2026-11-24T10:00:00Z","data":{"reservation_id":"a","reservation_id":"b"}}"#;
    assert!(parse(nested, Utc::now()).unwrap_err().message.contains("duplicate key"));
}

#[test]
fn times_must_be_plausible() {
    let with_start = |start: &str| {
        let mut data = jazz();
        data["starts_at"] = json!(start);
        envelope("reservation.created", data)
    };
    for bad in [
        "2026-11-27T19:00:00",     // no zone
        "2026-11-27T18:59:60Z",    // leap second
        "9999-11-27T19:00:00Z",    // year 9999
        "0001-11-27T19:00:00Z",    // year 1
        "2026-02-30T19:00:00Z",    // no such day
        "+002026-11-27T19:00:00Z", // expanded year
    ] {
        let e = parse(&with_start(bad), Utc::now());
        assert_eq!(e.map_err(|e| e.path).unwrap_err(), "data.starts_at", "{bad}");
    }
    assert!(parse(&with_start("2026-11-27T18:59:59.999+01:00"), Utc::now()).is_ok());
}

#[test]
fn revisions_are_unsigned_and_fit_the_store() {
    for (revision, ok) in [
        ("0", true),
        ("9223372036854775807", true),
        ("9223372036854775808", false),
        ("18446744073709551616", false),
        ("-1", false),
        ("1.5", false),
        ("1e3", false),
    ] {
        let body = String::from_utf8(envelope("reservation.created", jazz()))
            .unwrap()
            .replace(r#""revision":3"#, &format!(r#""revision":{revision}"#));
        assert_eq!(parse(body.as_bytes(), Utc::now()).is_ok(), ok, "{revision}");
        if !ok {
            assert_eq!(path_of(body.as_bytes()), "data.revision");
        }
    }
}

fn rules(allow_http_stream_urls: bool) -> Rules {
    Rules {
        allow_http_stream_urls,
        bot: Some(OwnedUserId::try_from("@foyer:example.org").unwrap()),
        ..Rules::default()
    }
}

/// The error of `data` with `field` set to `value`, as a reservation.
fn refused(field: &str, value: Value, rules: &Rules) -> PayloadError {
    let mut data = jazz();
    data[field] = value;
    parse_typed(&envelope("reservation.created", data), Utc::now(), rules).unwrap_err()
}

#[test]
fn stream_urls_are_checked_by_the_rules_and_named() {
    let strict = rules(false);
    for (url, rule) in [
        ("http://stream.example.org/watch", "must be an https:// URL"),
        ("https://legit@evil.example/watch", "must not carry user-info"),
        ("https://stream.example.org/watch?u=$matrix_user_id", "must not contain '$'"),
        ("https://stream.example.org/watch?u=%24matrix_user_id", "must not contain '$'"),
    ] {
        let e = refused("stream_url", json!(url), &strict);
        assert_eq!(e.path, "data.stream_url", "{url}");
        assert!(e.message.contains(rule), "{url}: {e}");
    }
    let long = format!("https://stream.example.org/{}", "é".repeat(1000));
    let e = refused("stream_url", json!(long), &strict);
    assert_eq!(
        e.to_string(),
        "data.stream_url: must be at most 2048 characters once normalised (percent-encoded); it has 6027"
    );

    let mut data = jazz();
    data["stream_url"] = json!("http://stream.example.org/watch");
    let body = envelope("reservation.created", data);
    let (_, WebhookEvent::Upsert(r)) = parse_typed(&body, Utc::now(), &rules(true)).unwrap() else {
        panic!("not an upsert")
    };
    assert_eq!(r.stream_url.unwrap().as_str(), "http://stream.example.org/watch");
}

#[test]
fn a_stream_key_is_kept_as_its_hash_and_named_when_wrong() {
    let strict = rules(false);
    for (ingest, message) in [
        (json!("key"), "data.ingest: must be a JSON object"),
        (json!({"stream_key": 7}), "data.ingest.stream_key: must be a string"),
        (json!({"stream_key": "short"}), "data.ingest.stream_key: must be 16 to 128 characters of A-Z a-z 0-9 _ -"),
    ] {
        assert_eq!(refused("ingest", ingest.clone(), &strict).to_string(), message, "{ingest}");
    }
    let upsert = |ingest: Option<Value>| {
        let mut data = jazz();
        if let Some(ingest) = ingest {
            data["ingest"] = ingest;
        }
        let body = envelope("reservation.updated", data);
        let (_, WebhookEvent::Upsert(r)) = parse_typed(&body, Utc::now(), &strict).unwrap() else {
            panic!("not an upsert")
        };
        r.stream_key
    };
    let key = "live_secret_key_0123";
    let hash = upsert(Some(json!({"stream_key": key}))).expect("a key");
    assert_eq!(hash, StreamKey::parse(key).unwrap().hash());
    // Absent, or an ingest without a key: the reservation has none.
    assert_eq!(upsert(None), None);
    assert_eq!(upsert(Some(json!({}))), None);
}

#[test]
fn chat_transcript_is_true_false_or_left_to_the_config() {
    let strict = rules(false);
    for bad in [json!("yes"), json!(1), json!({})] {
        let chat = json!({"transcript": bad});
        let message = refused("chat", chat.clone(), &strict).to_string();
        assert_eq!(message, "data.chat.transcript: must be true or false", "{chat}");
    }
    let transcript = |chat: Value| {
        let mut data = jazz();
        data["chat"] = chat;
        let body = envelope("reservation.updated", data);
        let (_, WebhookEvent::Upsert(r)) = parse_typed(&body, Utc::now(), &strict).unwrap() else {
            panic!("not an upsert")
        };
        r.transcript
    };
    assert_eq!(transcript(json!({"transcript": true})), Some(true));
    assert_eq!(transcript(json!({"transcript": false})), Some(false));
    assert_eq!(transcript(json!({"transcript": null})), None);
}

#[test]
fn chat_archive_and_replay_offset_are_checked_by_name() {
    let strict = rules(false);
    let upsert = |chat: Value| {
        let mut data = jazz();
        data["chat"] = chat;
        let (_, WebhookEvent::Upsert(r)) =
            parse_typed(&envelope("reservation.updated", data), Utc::now(), &strict).unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("not an upsert")
        };
        (r.archive, r.replay_offset.map(ReplayOffset::ms))
    };
    assert_eq!(upsert(json!({})), (Archive::Private, None), "private unless chosen");
    assert_eq!(upsert(json!({"archive": "public"})), (Archive::Public { indexable: false }, None));
    let chosen = json!({"archive": "public", "archive_indexable": true, "replay_offset_ms": -2500});
    assert_eq!(upsert(chosen), (Archive::Public { indexable: true }, Some(-2500)));
    for (chat, path) in [
        (json!({"archive": "open"}), "data.chat.archive"),
        (json!({"archive": true}), "data.chat.archive"),
        (json!({"archive_indexable": "yes"}), "data.chat.archive_indexable"),
        (json!({"replay_offset_ms": 86_400_001}), "data.chat.replay_offset_ms"),
        (json!({"replay_offset_ms": 1.5}), "data.chat.replay_offset_ms"),
        (json!({"replay_offset_ms": "10"}), "data.chat.replay_offset_ms"),
    ] {
        assert_eq!(refused("chat", chat.clone(), &strict).path, path, "{chat}");
    }
}

#[test]
fn a_ticket_has_a_user_id_or_an_email_and_each_is_checked() {
    let rules = rules(false);
    let granted = |tickets: Value| {
        let data = json!({"reservation_id": "jazz", "tickets": tickets});
        parse_typed(&envelope("ticket.granted", data), Utc::now(), &rules)
    };
    let (_, WebhookEvent::TicketsGranted { tickets, .. }) = granted(json!([
        {"ticket_id": "t-1", "email": "Fan@Example.org", "display_name": "Fan"},
        {"ticket_id": "t-2", "user_id": "@alice:example.org", "email": "alice@example.org"},
    ]))
    .unwrap() else {
        panic!("not a grant")
    };
    let Holder::Email { email, display_name, claim } = &tickets[0].holder else { panic!("{tickets:?}") };
    assert_eq!(email.address(), "fan@example.org");
    assert_eq!(display_name.as_ref().map(|n| n.as_str()), Some("Fan"));
    let (jazz, ticket) = (ReservationId::parse("jazz").unwrap(), &tickets[0].id);
    let code = crate::model::ClaimCode::derive(&rules.claim_key, &jazz, ticket);
    assert_eq!(claim.hash(0), code.hash());
    let moved = crate::model::ClaimCode::derive_moved(&rules.claim_key, &jazz, ticket, &claim.digest);
    assert_eq!(claim.hash(1), moved.hash());
    assert_ne!(claim.hash(0), claim.hash(1));
    // Both given: the user ID wins and the email is not kept.
    assert_eq!(tickets[1].holder, Holder::User(OwnedUserId::try_from("@alice:example.org").unwrap()));

    for (ticket, path, rule) in [
        (json!({"ticket_id": "t"}), "data.tickets[0].user_id", "a ticket needs a user_id or an email"),
        (json!({"ticket_id": "t", "email": "not an address"}), "data.tickets[0].email", "must not contain spaces"),
        (json!({"ticket_id": "t", "email": "fan@"}), "data.tickets[0].email", "name@domain"),
        (json!({"ticket_id": "t", "email": 7}), "data.tickets[0].email", "must be a string"),
        (json!({"ticket_id": "t", "email": "a@b.org", "display_name": ""}), "data.tickets[0].display_name", "1 to 255"),
        (json!({"ticket_id": "t", "user_id": "alice", "email": "a@b.org"}), "data.tickets[0].user_id", "not a valid"),
    ] {
        let e = granted(json!([ticket])).unwrap_err();
        assert_eq!(e.path, path, "{ticket}");
        assert!(e.message.contains(rule), "{ticket}: {e}");
    }
    // The address is personal data: an error names the field, never the value.
    let e = granted(json!([{"ticket_id": "t", "email": "secret person@example.org"}])).unwrap_err();
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn the_bot_is_never_a_host_or_a_ticket_holder() {
    let rules = rules(false);
    let e = refused("hosts", json!(["@dj:example.org", "@foyer:example.org"]), &rules);
    assert_eq!(e.path, "data.hosts[1]");
    assert!(e.message.contains("@foyer:example.org is Foyer's own bot"), "{e}");

    let tickets = json!({"reservation_id": "jazz", "tickets": [
        {"ticket_id": "t-1", "user_id": "@alice:example.org"},
        {"ticket_id": "t-2", "user_id": "@foyer:example.org"},
    ]});
    let e = parse_typed(&envelope("ticket.granted", tickets), Utc::now(), &rules).unwrap_err();
    assert_eq!(e.path, "data.tickets[1].user_id");
    assert!(e.message.contains("never a host or ticket holder"), "{e}");

    // Another server's `foyer` is someone else.
    let ok = json!({"reservation_id": "jazz", "tickets": [{"ticket_id": "t", "user_id": "@foyer:elsewhere.org"}]});
    assert!(parse_typed(&envelope("ticket.granted", ok), Utc::now(), &rules).is_ok());
}

#[test]
fn broken_text_is_not_json() {
    assert_eq!(path_of(b"{\"type\": \"\xff\xfe\"}"), "body");
    assert_eq!(path_of(br#"{"type": "\ud800", "timestamp": "2026-11-24T10:00:00Z", "data": {}}"#), "body");
    assert_eq!(path_of(b""), "body");
}

/// The fuzzer's seeds are valid webhooks; any input the fuzzer found crashing is kept
/// in `fuzz/regressions/payload/` and must never panic again.
#[test]
fn fuzz_seeds_parse_and_kept_crashes_do_not_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let files = |dir: &str| -> Vec<Vec<u8>> {
        std::fs::read_dir(root.join(dir))
            .map(|entries| entries.map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect())
            .unwrap_or_default()
    };
    let seeds = files("seeds/payload");
    assert!(seeds.len() >= 6, "the seeds are in fuzz/seeds/payload");
    for seed in seeds {
        assert!(parse(&seed, Utc::now()).is_ok(), "{}", String::from_utf8_lossy(&seed));
    }
    for input in files("regressions/payload") {
        let _ = parse(&input, Utc::now());
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse(&bytes, Utc::now());
    }

    #[test]
    fn mangled_valid_bodies_never_panic(cut in 0usize..600, byte in proptest::num::u8::ANY) {
        let mut body = envelope("reservation.created", jazz());
        let at = cut % body.len();
        body[at] = byte;
        let _ = parse(&body, Utc::now());
        body.truncate(at);
        let _ = parse(&body, Utc::now());
    }
}

#[test]
fn chat_auto_join_is_taken_only_where_the_admin_join_can_do_it() {
    let with_admin = Rules { admin_join: true, ..rules(false) };
    let auto_join = |chat: Value, rules: &Rules| {
        let mut data = jazz();
        data["chat"] = chat;
        match parse_typed(&envelope("reservation.created", data), Utc::now(), rules) {
            Ok((_, WebhookEvent::Upsert(r))) => Ok(r.auto_join),
            Ok(_) => panic!("not an upsert"),
            Err(e) => Err((e.path, e.message)),
        }
    };
    assert_eq!(auto_join(json!({}), &with_admin), Ok(None));
    assert_eq!(auto_join(json!({"auto_join": "local"}), &with_admin), Ok(Some(AutoJoin::Local)));
    assert_eq!(auto_join(json!({"auto_join": "off"}), &rules(false)), Ok(Some(AutoJoin::Off)));
    let (path, message) = auto_join(json!({"auto_join": "local"}), &rules(false)).unwrap_err();
    assert_eq!(path, "data.chat.auto_join");
    assert!(message.contains("synapse_admin.token"), "{message}");
    let (path, message) = auto_join(json!({"auto_join": "everyone"}), &with_admin).unwrap_err();
    assert_eq!((path.as_str(), message.as_str()), ("data.chat.auto_join", "\"everyone\" is not one of local, off"));
}

fn fridays() -> Value {
    json!({
        "series_id": "jazz-fridays", "revision": 1, "rrule": "FREQ=WEEKLY;BYDAY=FR",
        "dtstart": "2026-12-04T20:00:00", "tzid": "Europe/Berlin", "duration_seconds": 7200,
        "exdates": ["2026-12-11T20:00:00"],
        "overrides": [{"original_start": "2026-12-18T20:00:00",
                       "starts_at": "2026-12-18T21:00:00Z", "ends_at": "2026-12-18T22:00:00Z"}],
        "title": "Friday Night Jazz", "ingest": {"stream_key": "sk_9f2c4e7a1b3d5f60"},
        "chat": {"open_before_seconds": 60}
    })
}

#[test]
fn a_series_is_expanded_when_it_arrives() {
    let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
    let rules = Rules { series_horizon: TimeDelta::days(21), ..Rules::default() };
    let (kind, event) = parse_typed(&envelope("series.upserted", fridays()), now, &rules).unwrap();
    let WebhookEvent::SeriesUpserted(upsert) = event else { panic!("not a series") };
    assert_eq!(kind, "series.upserted");
    let ids: Vec<_> = upsert.expansion.occurrences.iter().map(|o| (o.id.as_str(), o.starts_at)).collect();
    assert_eq!(
        ids,
        [
            ("jazz-fridays.20261204T1900Z", "2026-12-04T19:00:00Z".parse().unwrap()),
            ("jazz-fridays.20261218T1900Z", "2026-12-18T21:00:00Z".parse().unwrap()),
        ]
    );
    let first = upsert.series.reservation(&upsert.expansion.occurrences[0]);
    assert_eq!((first.title.as_str(), first.open_before_seconds), ("Friday Night Jazz", Some(60)));
    assert!(first.stream_key.is_some());
    let kept: Value = serde_json::from_str(&upsert.definition).unwrap();
    assert_eq!(kept, fridays(), "the data is kept as sent");
    assert_eq!(stored_series(&upsert.definition, now, &rules).unwrap(), *upsert);
    let cancelled = parse(&envelope("series.cancelled", json!({"series_id": "jazz-fridays"})), now).unwrap();
    assert_eq!(cancelled.kind(), "series.cancelled");
    assert_eq!(cancelled.subject(), "jazz-fridays");
}

#[test]
fn each_broken_series_field_is_named() {
    let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
    let path = |change: &dyn Fn(&mut Value)| {
        let mut data = fridays();
        change(&mut data);
        parse(&envelope("series.upserted", data), now).unwrap_err().path
    };
    assert_eq!(path(&|d| d["series_id"] = json!("x".repeat(114))), "data.series_id");
    assert_eq!(path(&|d| d["rrule"] = json!("FREQ=FORTNIGHTLY")), "data.rrule");
    assert_eq!(path(&|d| d["rrule"] = json!("RRULE:FREQ=DAILY")), "data.rrule");
    assert_eq!(path(&|d| d["dtstart"] = json!("2026-12-04T20:00:00Z")), "data.dtstart");
    assert_eq!(path(&|d| d["tzid"] = json!("Europe/Atlantis")), "data.tzid");
    assert_eq!(path(&|d| d["dtstart"] = json!("9999-12-04T20:00:00")), "data.dtstart");
    assert_eq!(path(&|d| d["duration_seconds"] = json!(0)), "data.duration_seconds");
    assert_eq!(
        path(&|d| d.as_object_mut().unwrap().remove("duration_seconds").map(drop).unwrap()),
        "data.duration_seconds"
    );
    assert_eq!(path(&|d| d["exdates"] = json!(["2026-12-11T20:00:00", "x", "2026-12-25"])), "data.exdates[1]");
    assert_eq!(path(&|d| d["overrides"][0]["ends_at"] = json!("2026-12-18T20:00:00Z")), "data.overrides[0].ends_at");
    assert_eq!(path(&|d| d["overrides"][0]["original_start"] = json!(5)), "data.overrides[0].original_start");
    assert_eq!(path(&|d| d["title"] = json!("")), "data.title");
    assert_eq!(path(&|d| d["ingest"]["stream_key"] = json!("short")), "data.ingest.stream_key");
    // Every minute since a month ago: the bound on steps is reached before now.
    let far_back = |d: &mut Value| {
        d["rrule"] = json!("FREQ=MINUTELY");
        d["dtstart"] = json!("2026-11-01T00:00:00");
    };
    assert_eq!(path(&far_back), "data.dtstart");
    let rrule_says = {
        let mut data = fridays();
        data["rrule"] = json!("FREQ=WEEKLY;BYDAY=XX");
        parse(&envelope("series.upserted", data), now).unwrap_err().message
    };
    assert!(rrule_says.contains("BYDAY") || rrule_says.to_lowercase().contains("weekday"), "{rrule_says}");
}
