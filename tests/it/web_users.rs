//! Web fans' users on a real Synapse (docs/web-chat.md): registered in the slot's
//! namespace without a login, named with the web mark, joined to an open room, posting
//! once per transaction id and redacting their own messages, through Foyer's one Matrix
//! client acting as them; and the door of a running Foyer keeping the web users of
//! current holders and removing one whose ticket is revoked.

use std::{sync::Arc, time::Duration};

use foyer::{
    config::{Config, DatabaseKind, Placeholders},
    matrix::{MatrixClient, rooms},
    model::{
        DisplayName, EndReason, NewWebSession, NewWebUser, ReservationId, SessionHash, SessionSource, SessionState,
        ViewerKey, WebRole, naming::web_user_id,
    },
    secret::Secret,
    store::{self, Store},
};
use ruma::{OwnedRoomId, OwnedUserId, api::SupportedVersions};
use serde_json::{Value, json};

use crate::{
    claims::email_ticket,
    common::{
        enc, eventually,
        foyer::{TestFoyer, open_reservation},
        synapse::Synapse,
        unique,
        users::TestUser,
    },
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

/// The web user of ticket `ticket` of reservation `id`, for its first holder.
fn web_user(config: &Config, id: &str, ticket: &str) -> OwnedUserId {
    let prefix = &config.webchat.as_ref().expect("the harness turns web chat on").puppet_prefix;
    let (id, viewer) = (ReservationId::parse(id).unwrap(), ViewerKey::parse("ticket", ticket).unwrap());
    web_user_id(&config.web_key(), prefix, &id, &viewer, 0, &config.homeserver.server_name)
}

/// The running Foyer's store, opened beside it (its SQLite file is relative to its directory).
async fn store_of(foyer: &TestFoyer, config: &Config) -> Arc<dyn Store> {
    let mut database = config.database.clone();
    if database.kind == DatabaseKind::Sqlite {
        database.url = Secret::new(format!("sqlite://{}", foyer.dir().join("foyer.db").display()));
    }
    store::open(&database, store::Outbound::Skip).await.expect("the test Foyer's store")
}

/// Records the web user of ticket `ticket` of reservation `id`, as the web chat does on a
/// fan's first message, and makes it in Matrix, named `name` and joined to `room`.
async fn web_fan(
    (client, config, store): (&MatrixClient, &Config, &dyn Store), id: &str, ticket: &str, name: &str,
    room: &OwnedRoomId,
) -> OwnedUserId {
    let user = web_user(config, id, ticket);
    let fan = NewWebUser {
        reservation: ReservationId::parse(id).unwrap(),
        viewer: ViewerKey::parse("ticket", ticket).unwrap(),
        holder_generation: 0,
        user_id: user.clone(),
        display_name: DisplayName::parse(name).unwrap(),
        registered_at: chrono::Utc::now(),
    };
    store.put_web_user(&fan).await.expect("recorded");
    // Each call twice: the second changes nothing and succeeds.
    for _ in 0..2 {
        rooms::register_web_user(client, &user).await.expect("register");
        rooms::set_web_name(client, &user, name).await.expect("name");
        rooms::join_web_user(client, room, &user).await.expect("join");
    }
    user
}

/// Email tickets of reservation `id` that no one claims: the web fans'.
async fn grant_by_email(foyer: &TestFoyer, id: &str, tickets: &[&str]) {
    let tickets: Vec<Value> =
        tickets.iter().map(|t| email_ticket(t, &format!("{}@example.org", unique("web")))).collect();
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": tickets})).await;
}

/// Waits until Foyer has heard that `joined` members joined the room (the bot aside), then
/// until two rounds of planning after that are done (two renames, one after the other):
/// whatever the door decides about those members, it has done.
async fn door_has_looked(foyer: &TestFoyer, member: &TestUser, room: &str, id: &str, joined: u64) {
    eventually(Duration::from_secs(20), "Foyer to hear of the joins", || async {
        (foyer.reservation(id).await.1["members"]["joined"] == joined).then_some(())
    })
    .await;
    for revision in [2, 3] {
        let mut update = open_reservation(id, &[], revision);
        update["title"] = json!(format!("Show {id} ({revision})"));
        foyer.accept("reservation.updated", update).await;
        eventually(Duration::from_secs(20), "the room to be renamed", || async {
            (member.state(room, "m.room.name").await?["name"] == format!("Show {id} ({revision})")).then_some(())
        })
        .await;
    }
}

/// An open show's room with Alice (a ticket of her own) and the web users of Dana's and
/// Erin's email tickets joined, with what the test needs of the running Foyer.
struct Show {
    foyer: TestFoyer,
    alice: TestUser,
    id: String,
    room: String,
    room_id: OwnedRoomId,
    client: MatrixClient,
    config: Config,
    store: Arc<dyn Store>,
    dana: OwnedUserId,
    erin: OwnedUserId,
}

async fn show_with_web_fans() -> Show {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let alice = hs.create_user("alice").await;
    let id = unique("web");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t-alice", &alice.user_id)]).await;
    grant_by_email(&foyer, &id, &["t-dana", "t-erin"]).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    alice.join_once_invited(&room, Duration::from_secs(30)).await;
    let room_id = OwnedRoomId::try_from(room.as_str()).unwrap();

    let (client, config) = client_of(&foyer).await;
    let store = store_of(&foyer, &config).await;
    let with = (&client, &config, store.as_ref());
    let dana = web_fan(with, &id, "t-dana", "Dana", &room_id).await;
    let erin = web_fan(with, &id, "t-erin", "Erin", &room_id).await;
    Show { foyer, alice, id, room, room_id, client, config, store, dana, erin }
}

#[tokio::test]
async fn a_web_fan_joins_with_the_mark_and_posts_once_per_transaction() {
    let Show { foyer, alice, id, room, room_id, client, dana, erin, .. } = show_with_web_fans().await;
    assert!(dana.localpart().starts_with(&foyer.slot.puppet_prefix), "{dana}");
    // The running Foyer's door lets the web fans of current holders stay.
    door_has_looked(&foyer, &alice, &room, &id, 3).await;
    for fan in [&dana, &erin] {
        assert_eq!(alice.membership_of(&room, fan.as_str()).await.as_deref(), Some("join"), "{fan}");
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
async fn a_web_fan_whose_ticket_is_revoked_is_removed_and_one_banned_in_matrix_is_banned_from_the_chat() {
    let Show { foyer, alice, id, room, config, store, dana, erin, .. } = show_with_web_fans().await;
    eventually(Duration::from_secs(20), "Foyer to hear of the joins", || async {
        (foyer.reservation(&id).await.1["members"]["joined"] == 3).then_some(())
    })
    .await;

    foyer.revoke(&id, &["t-erin"]).await;
    // Alice sees Erin's web user kicked by the bot, with the reason in words.
    let kicked = eventually(Duration::from_secs(20), "erin's web user to be kicked", || async {
        let member = alice.member_event(&room, erin.as_str()).await?;
        (member["membership"] == "leave").then_some(member)
    })
    .await;
    assert_eq!(kicked["reason"], "Your ticket was revoked", "{kicked}");
    let event = alice.messages(&room).await.into_iter().find(|e| {
        e["type"] == "m.room.member" && e["state_key"] == erin.as_str() && e["content"]["membership"] == "leave"
    });
    assert_eq!(event.expect("the kick")["sender"], config.bot_user_id().as_str());
    // Dana's ticket is still held: her web user stays.
    door_has_looked(&foyer, &alice, &room, &id, 2).await;
    assert_eq!(alice.membership_of(&room, dana.as_str()).await.as_deref(), Some("join"));

    // The bot bans Dana's web user in Matrix: Dana is banned from the chat and her web
    // session ends; an unban lifts it.
    let (reservation, viewer) = (ReservationId::parse(&id).unwrap(), ViewerKey::parse("ticket", "t-dana").unwrap());
    let now = chrono::Utc::now();
    let session = NewWebSession {
        hash: SessionHash::of_secret(&unique("secret")),
        reservation: reservation.clone(),
        viewer: viewer.clone(),
        holder_generation: 0,
        name: DisplayName::parse("Dana").unwrap(),
        role: WebRole::Web,
        source: SessionSource::Token,
        created_at: now,
        expires_at: now + chrono::Duration::hours(1),
    };
    store.create_web_session(&session).await.unwrap();
    let bot = TestUser::bot(&foyer.slot);
    let moderate = async |action: &str| {
        let path = format!("/_matrix/client/v3/rooms/{}/{action}", enc(&room));
        let (status, body) = bot.request(reqwest::Method::POST, &path, Some(json!({"user_id": dana.as_str()}))).await;
        assert_eq!(status, 200, "{action}: {body}");
    };
    moderate("ban").await;
    let ended = eventually(Duration::from_secs(20), "dana's session to end", || async {
        let read = store.web_session(&session.hash, chrono::Utc::now()).await.unwrap()?;
        matches!(read.state, SessionState::Ended { reason: EndReason::Banned, .. }).then_some(())
    });
    ended.await;
    assert!(store.viewer_banned(&reservation, &viewer).await.unwrap());
    moderate("unban").await;
    eventually(Duration::from_secs(20), "dana's ban to be lifted", || async {
        (!store.viewer_banned(&reservation, &viewer).await.unwrap()).then_some(())
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
