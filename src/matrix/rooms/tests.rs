//! What each room step puts on the wire, against a homeserver stand-in.

use std::sync::{Arc, Mutex};

use axum::{Json, Router, body::Bytes, http::Method, http::Uri};
use chrono::Utc;
use ruma::{
    OwnedRoomId, OwnedUserId,
    api::{MatrixVersion, SupportedVersions},
};
use serde_json::{Value, json};

use super::*;
use crate::{
    config::{Config, Placeholders},
    matrix::MatrixClient,
    model::{StreamUrl, naming},
    schedule,
    secret::Secret,
    test_support,
};

/// One request the stand-in saw: method, percent-decoded path, JSON body (`null` for none).
type Call = (String, String, Value);

fn decoded(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A homeserver stand-in that records every request and answers what the room
/// steps need: a created room, state writes, no earlier messages, and power levels
/// like Synapse's (with a key ruma does not know, `historical`, a tombstone above the
/// admin level, and a former host): its own numbers are written out, Foyer's named.
async fn stand_in() -> (MatrixClient, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let app = Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
        let path = decoded(uri.path());
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        seen.lock().unwrap().push((method.to_string(), path.clone(), body));
        let answer = match (method.as_str(), path.as_str()) {
            ("POST", p) if p.ends_with("/createRoom") => json!({"room_id": "!room:example.org"}),
            ("GET", p) if p.ends_with("/state/m.room.power_levels/") => json!({
                "users": {"@old:example.org": MODERATOR, "@admin:example.org": 100},
                "users_default": 0, "events_default": 0, "state_default": 50, "invite": 50,
                "kick": 50, "ban": 50, "redact": 50, "historical": 100,
                "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.tombstone": 150},
            }),
            ("GET", p) if p.ends_with("/messages") => json!({"chunk": [], "start": "s"}),
            ("PUT", p) if p.contains("/send/") => json!({"event_id": "$link"}),
            ("PUT", _) => json!({"event_id": "$state"}),
            _ => json!({}),
        };
        async move { Json(answer) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let versions = SupportedVersions { versions: [MatrixVersion::V1_11].into(), features: Default::default() };
    (MatrixClient::new(reqwest::Client::new(), &url, Secret::new("t".repeat(40)), versions), calls)
}

fn config() -> Config {
    let yaml = include_str!("../../../config.example.yaml");
    let (dir, env) = (std::path::Path::new("."), |_: &str| None);
    crate::config::from_yaml_str(yaml, "example", dir, &env, Placeholders::Allow).expect("valid")
}

fn user(id: &str) -> OwnedUserId {
    OwnedUserId::try_from(id).unwrap()
}

/// What each step puts on the wire, compared with the JSON Foyer sent before its
/// content was typed: the room's power levels, join rule, widget and pins must not
/// change, and a read-modify-write keeps what it did not set.
#[tokio::test]
async fn each_step_sends_the_content_it_always_sent() {
    let (client, calls) = stand_in().await;
    let config = config();
    let room = OwnedRoomId::try_from("!room:example.org").unwrap();
    let space = OwnedRoomId::try_from("!space:example.org").unwrap();
    let host = user("@host:example.org");
    let mut record = test_support::record(Default::default(), vec![host.clone()]);
    record.reservation.stream_url = Some(StreamUrl::parse("https://stream.example.org/watch?a=1&b=<2>").unwrap());
    let times = schedule::schedule(&record, &config.rooms);
    let patience = Patience { wait: ABANDONED_AFTER, began_at: Utc::now() };
    let unmarked = UnmarkedRooms::default();
    let bot = config.bot_user_id();
    let take = || std::mem::take(&mut *calls.lock().unwrap());

    // Created in a room version without privileged creators: the bot is listed.
    create_or_adopt(&client, &config, &record, &times, false, &unmarked, patience).await.unwrap();
    let created = take();
    assert_eq!(created.len(), 1, "{created:?}");
    let (method, path, body) = &created[0];
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/_matrix/client/v3/createRoom"));
    let levels = json!({
        "users": {"@host:example.org": MODERATOR, "@foyer:example.org": ADMIN},
        "users_default": MEMBER, "events_default": MEMBER, "state_default": MODERATOR,
        "invite": MODERATOR, "kick": MODERATOR, "ban": MODERATOR, "redact": MODERATOR,
        "events": {
            "m.room.power_levels": ADMIN, "m.room.history_visibility": ADMIN, "m.room.tombstone": ADMIN,
            "m.room.server_acl": ADMIN, "m.room.encryption": ADMIN, "org.foyer.reservation": ADMIN,
        },
    });
    let marker = json!({
        "reservation_id": "jazz", "title": "Jazz",
        "starts_at": "2026-11-27T19:00:00+00:00", "ends_at": "2026-11-27T21:00:00+00:00",
        "opens_at": "2026-11-27T18:30:00+00:00", "archives_at": "2026-11-27T22:00:00+00:00",
        "stream_url": "https://stream.example.org/watch?a=1&b=%3C2%3E",
    });
    assert_eq!(
        body,
        &json!({
            "room_alias_name": "live_jazz",
            "name": "Jazz",
            "topic": "Starts Fri 27 Nov 2026, 19:00 UTC · Watch: https://stream.example.org/watch?a=1&b=%3C2%3E",
            "preset": "private_chat",
            "power_level_content_override": levels,
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}},
                {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
                {"type": "org.foyer.reservation", "state_key": "", "content": marker},
            ],
        })
    );
    // Where creators are privileged and there are no hosts, an empty users map still
    // replaces whatever users the homeserver's defaults would list.
    record.reservation.hosts.clear();
    create_or_adopt(&client, &config, &record, &times, true, &unmarked, patience).await.unwrap();
    assert_eq!(take()[0].2["power_level_content_override"]["users"], json!({}));

    let channel = crate::model::Channel {
        id: crate::model::ExternalId::parse("blue").unwrap(),
        name: crate::model::Title::parse("Blue").unwrap(),
    };
    ensure_space(&client, &config, &channel).await.unwrap();
    assert_eq!(
        take()[0].2,
        json!({
            "room_alias_name": "live_+blue",
            "name": "Blue",
            "topic": "Live chats of Blue",
            "preset": "private_chat",
            "creation_content": {"type": "m.space"},
            "initial_state": [
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}},
                {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
            ],
        })
    );

    set_name(&client, &room, "New name").await.unwrap();
    set_topic(&client, &room, "New topic").await.unwrap();
    link_space(&client, &config, &space, &room).await.unwrap();
    unlink_space(&client, &space, &room).await.unwrap();
    let state = "/_matrix/client/v3/rooms";
    let put = |path: String, body: Value| ("PUT".to_owned(), path, body);
    assert_eq!(
        take(),
        vec![
            put(format!("{state}/!room:example.org/state/m.room.name/"), json!({"name": "New name"})),
            put(format!("{state}/!room:example.org/state/m.room.topic/"), json!({"topic": "New topic"})),
            put(
                format!("{state}/!space:example.org/state/m.space.child/!room:example.org"),
                json!({"via": ["example.org"]})
            ),
            put(
                format!("{state}/!room:example.org/state/m.space.parent/!space:example.org"),
                json!({"via": ["example.org"], "canonical": true})
            ),
            put(format!("{state}/!space:example.org/state/m.space.child/!room:example.org"), json!({})),
        ]
    );

    set_stream_link(&client, &config, &record, &room).await.unwrap();
    let url = "https://stream.example.org/watch?a=1&b=%3C2%3E";
    let txn = naming::stream_link_txn(&record.reservation.id, url);
    let calls_made = take();
    let sent: Vec<&Call> = calls_made.iter().filter(|(method, ..)| method == "PUT").collect();
    assert_eq!(
        sent,
        vec![
            &put(
                format!("{state}/!room:example.org/state/im.vector.modular.widgets/foyer_stream"),
                json!({
                    "type": "m.custom", "url": url, "name": "Live stream", "id": "foyer_stream",
                    "creatorUserId": "@foyer:example.org", "waitForIframeLoad": true, "data": {"title": "Jazz"},
                })
            ),
            &put(
                format!("{state}/!room:example.org/state/io.element.widgets.layout/"),
                json!({"widgets": {"foyer_stream": {"container": "top", "index": 0, "width": 100, "height": 50}}})
            ),
            &put(
                format!("{state}/!room:example.org/send/m.room.message/{txn}"),
                json!({
                    "msgtype": "m.text", "body": format!("📺 Watch the stream: {url}"),
                    "format": "org.matrix.custom.html",
                    "formatted_body": "📺 Watch the stream: <a href=\"https://stream.example.org/watch?a=1&amp;b=%3C2%3E\">https://stream.example.org/watch?a=1&amp;b=%3C2%3E</a>",
                    "org.foyer.txn": txn,
                })
            ),
            &put(format!("{state}/!room:example.org/state/m.room.pinned_events/"), json!({"pinned": ["$link"]})),
        ]
    );
    record.reservation.stream_url = None;
    set_stream_link(&client, &config, &record, &room).await.unwrap();
    assert_eq!(
        take(),
        vec![
            put(format!("{state}/!room:example.org/state/im.vector.modular.widgets/foyer_stream"), json!({})),
            put(format!("{state}/!room:example.org/state/io.element.widgets.layout/"), json!({"widgets": {}})),
            put(format!("{state}/!room:example.org/state/m.room.pinned_events/"), json!({"pinned": []})),
        ]
    );

    notice(&client, &bot, &room, "foyer-open-jazz", "Open & <b>", "Open &amp; &lt;b&gt;").await.unwrap();
    let posted = take().pop().unwrap();
    assert_eq!(
        posted,
        put(
            format!("{state}/!room:example.org/send/m.room.message/foyer-open-jazz"),
            json!({
                "msgtype": "m.notice", "body": "Open & <b>", "format": "org.matrix.custom.html",
                "formatted_body": "Open &amp; &lt;b&gt;", "org.foyer.txn": "foyer-open-jazz",
            })
        )
    );

    // Read-modify-write: `@old` (a host no more) drops to the default, `@admin` (not a
    // host's level) stays, and every key the room had, `historical` too, is kept.
    let before = [user("@old:example.org"), user("@admin:example.org")].into();
    set_hosts(&client, &room, &before, &[host.clone()].into()).await.unwrap();
    let written = take().pop().unwrap();
    assert_eq!(
        written,
        put(
            format!("{state}/!room:example.org/state/m.room.power_levels/"),
            json!({
                "users": {"@admin:example.org": 100, "@host:example.org": MODERATOR},
                "users_default": 0, "events_default": 0, "state_default": 50, "invite": 50,
                "kick": 50, "ban": 50, "redact": 50, "historical": 100,
                "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.tombstone": 150},
            })
        )
    );

    // The archive raises every threshold below 100 to 100, keeps the rest, closes the
    // door and frees the alias.
    archive(&client, None, &config, &record, &room).await.unwrap();
    assert_eq!(
        take(),
        vec![
            ("GET".to_owned(), format!("{state}/!room:example.org/state/m.room.power_levels/"), Value::Null),
            put(
                format!("{state}/!room:example.org/state/m.room.power_levels/"),
                json!({
                    "users": {"@old:example.org": MODERATOR, "@admin:example.org": 100},
                    "users_default": 0, "events_default": ADMIN, "state_default": ADMIN, "invite": ADMIN,
                    "kick": 50, "ban": 50, "redact": 50, "historical": 100,
                    "events": {"m.room.name": ADMIN, "m.room.power_levels": 100, "m.room.tombstone": 150},
                })
            ),
            put(format!("{state}/!room:example.org/state/m.room.join_rules/"), json!({"join_rule": "invite"})),
            ("DELETE".to_owned(), "/_matrix/client/v3/directory/room/#live_jazz:example.org".to_owned(), json!({})),
        ]
    );
}
