//! Web fans' users on a real Synapse (docs/web-chat.md): registered in the slot's
//! namespace without a login, named with the web mark, joined to an open room, posting
//! once per transaction id and redacting their own messages, through Foyer's one Matrix
//! client acting as them.

use std::time::Duration;

use foyer::{
    config::{Config, Placeholders},
    matrix::{MatrixClient, rooms},
    model::{ReservationId, ViewerKey, naming::web_user_id},
};
use ruma::{OwnedRoomId, OwnedUserId, api::SupportedVersions};
use serde_json::Value;

use crate::common::{
    eventually,
    foyer::{TestFoyer, open_reservation},
    synapse::Synapse,
    unique,
};

/// Foyer's Matrix client for the test Foyer's config, and the config.
async fn client_of(foyer: &TestFoyer) -> (MatrixClient, Config) {
    let config = Config::load(&foyer.dir().join("config.yaml"), Placeholders::Refuse).expect("the test config loads");
    let http = reqwest::Client::new();
    let url = format!("{}/_matrix/client/versions", config.homeserver.url.as_str().trim_end_matches('/'));
    let versions: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    let versions: Vec<String> = serde_json::from_value(versions["versions"].clone()).unwrap();
    let supported = SupportedVersions::from_parts(&versions, &Default::default());
    (MatrixClient::new(http, &config.homeserver.url, config.appservice.as_token.clone(), supported), config)
}

/// The web user of ticket `ticket` of reservation `id`.
fn web_user(config: &Config, id: &str, ticket: &str) -> OwnedUserId {
    let prefix = &config.webchat.as_ref().expect("the harness turns web chat on").puppet_prefix;
    let (id, viewer) = (ReservationId::parse(id).unwrap(), ViewerKey::parse("ticket", ticket).unwrap());
    web_user_id(&config.web_key(), prefix, &id, &viewer, &config.homeserver.server_name)
}

#[tokio::test]
async fn a_web_fan_joins_with_the_mark_and_posts_once_per_transaction() {
    let hs = Synapse::shared();
    let mut foyer = TestFoyer::start().await;
    let alice = hs.create_user("alice").await;
    let id = unique("web");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t-alice", &alice.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    alice.join_once_invited(&room, Duration::from_secs(30)).await;
    let room_id = OwnedRoomId::try_from(room.as_str()).unwrap();
    // The room is open; from here only Matrix is under test. A running Foyer would plan
    // the web users out as members with no ticket until the store counts them among the
    // reservation's audience.
    foyer.kill();

    let (client, config) = client_of(&foyer).await;
    let (dana, erin) = (web_user(&config, &id, "t-dana"), web_user(&config, &id, "t-erin"));
    assert!(dana.localpart().starts_with(&foyer.slot.puppet_prefix), "{dana}");
    for (user, name) in [(&dana, "Dana"), (&erin, "Erin")] {
        // Each call twice: the second changes nothing and succeeds.
        for _ in 0..2 {
            rooms::register_web_user(&client, user).await.expect("register");
            rooms::set_web_name(&client, user, name).await.expect("name");
            rooms::join_web_user(&client, &room_id, user).await.expect("join");
        }
    }

    let first = rooms::send_as_web_user(&client, &room_id, &dana, "txn-1", "hello from the web").await.unwrap();
    let again = rooms::send_as_web_user(&client, &room_id, &dana, "txn-1", "hello from the web").await.unwrap();
    assert_eq!(first, again, "the same txn_id again is the same event");
    // Another fan's equal txn_id is their own message, not Dana's event.
    let erins = rooms::send_as_web_user(&client, &room_id, &erin, "txn-1", "and from me").await.unwrap();
    assert_ne!(erins, first);

    // A Matrix member sees the message once, from the web user, named with the mark.
    let seen = eventually(Duration::from_secs(10), "alice to see the web fans' messages", || async {
        let messages = alice.messages(&room).await;
        let from_web: Vec<Value> =
            messages.into_iter().filter(|e| e["type"] == "m.room.message" && e["sender"] != alice.user_id).collect();
        let bodies: Vec<&str> = from_web.iter().filter_map(|e| e["content"]["body"].as_str()).collect();
        (bodies.contains(&"hello from the web") && bodies.contains(&"and from me")).then_some(from_web)
    })
    .await;
    let dana_said: Vec<&Value> = seen.iter().filter(|e| e["content"]["body"] == "hello from the web").collect();
    assert_eq!(dana_said.len(), 1, "{seen:?}");
    assert_eq!(dana_said[0]["sender"], dana.as_str());
    assert_eq!(dana_said[0]["event_id"], first.as_str());
    assert_eq!(dana_said[0]["content"]["msgtype"], "m.text");
    let member = alice.member_event(&room, dana.as_str()).await.expect("dana's membership");
    assert_eq!(member["membership"], "join", "{member}");
    assert_eq!(member["displayname"], "Dana (web)", "{member}");

    // Dana takes the message back; Alice sees it redacted.
    rooms::redact_as_web_user(&client, &room_id, &dana, &first).await.expect("redact");
    rooms::redact_as_web_user(&client, &room_id, &dana, &first).await.expect("redact again");
    eventually(Duration::from_secs(10), "alice to see the message redacted", || async {
        let messages = alice.messages(&room).await;
        let event = messages.iter().find(|e| e["event_id"] == first.as_str())?;
        (event["content"].as_object().is_some_and(|c| c.is_empty())).then_some(())
    })
    .await;

    // At the archive the name is cleared: the member event no longer names the fan.
    rooms::clear_web_name(&client, &dana).await.expect("clear");
    eventually(Duration::from_secs(10), "dana's name to be cleared", || async {
        let member = alice.member_event(&room, dana.as_str()).await?;
        (member["displayname"] != "Dana (web)").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_user_outside_the_namespace_cannot_be_acted_as() {
    let foyer = TestFoyer::start().await;
    let (client, config) = client_of(&foyer).await;
    // A name in no namespace of this Foyer's (another slot's web fan would do too).
    let other = ruma::UserId::parse(format!("@stranger_{}:{}", "a".repeat(20), config.homeserver.server_name)).unwrap();
    let err = rooms::register_web_user(&client, &other).await.unwrap_err();
    assert_eq!(err.errcode(), Some("M_EXCLUSIVE"), "{err}");
}
