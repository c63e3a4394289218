//! A channel's followers in the store (docs/followers.md), on both backends: a channel
//! with followers is to be furnished with its rooms; followers are let in once and taken
//! out once; following again undoes a removal not yet carried out; the channel's shows are
//! planned again once its rooms are made; a reservation's
//! arrival time and what was announced of it read back.

use chrono::Utc;
use foyer::{
    model::{Channel, ExternalId, StepRecord, Title, WebhookEvent},
    store::FollowerChange,
};
use ruma::{OwnedRoomId, OwnedUserId};

use super::{each_backend, receipt, upsert_in_channel};

fn channel() -> ExternalId {
    ExternalId::parse("blue-room").unwrap()
}

fn fan(name: &str) -> OwnedUserId {
    OwnedUserId::try_from(format!("@{name}:example.org")).unwrap()
}

fn followed(user: &str) -> WebhookEvent {
    WebhookEvent::FollowerAdded { channel: channel(), user: fan(user) }
}

fn unfollowed(user: &str) -> WebhookEvent {
    WebhookEvent::FollowerRemoved { channel: channel(), user: fan(user) }
}

#[tokio::test]
async fn followers_are_let_in_once_and_taken_out_once() {
    each_backend(|store, backend| async move {
        store.record_webhook(&receipt("f1"), &followed("ann")).await.unwrap();
        store.record_webhook(&receipt("f2"), &followed("bob")).await.unwrap();
        // No rooms yet: the channel is to be furnished, named by its id until a show names it.
        let todo = store.channels_to_furnish(10).await.unwrap();
        assert_eq!(todo.len(), 1, "{backend}");
        assert_eq!((todo[0].channel.name.as_str(), todo[0].space.as_ref()), ("blue-room", None), "{backend}");
        assert!(store.pending_followers(10).await.unwrap().is_empty(), "{backend}: nowhere to invite them yet");
        store.record_webhook(&receipt("r1"), &upsert_in_channel("show-1", "blue-room")).await.unwrap();
        assert_eq!(store.channels_to_furnish(10).await.unwrap()[0].channel.name.as_str(), "The Blue Room");
        // The show is planned and sleeps until its doors.
        let (now, lease) = (Utc::now(), std::time::Duration::from_secs(60));
        let claims = store.claim_due(now, lease, 10, "worker").await.unwrap();
        assert_eq!(claims.len(), 1, "{backend}");
        store.release(&claims[0], Some(now + chrono::Duration::hours(5)), None, now).await.unwrap();
        assert!(store.next_due_at().await.unwrap().unwrap() > now + chrono::Duration::hours(4), "{backend}");

        let (space, news) =
            (OwnedRoomId::try_from("!space:example.org").unwrap(), OwnedRoomId::try_from("!news:example.org").unwrap());
        let blue = Channel { id: channel(), name: Title::parse("The Blue Room").unwrap() };
        store.channel_rooms_made(&blue, &space, &news).await.unwrap();
        assert!(store.channels_to_furnish(10).await.unwrap().is_empty(), "{backend}");
        // What waited for the announcements room is planned again at once.
        let due = store.next_due_at().await.unwrap().unwrap();
        assert!(due <= Utc::now(), "{backend}: the channel's show is due now, not at its doors: {due}");
        let pending = store.pending_followers(10).await.unwrap();
        assert_eq!(pending.len(), 2, "{backend}");
        assert!(pending.iter().all(|p| p.change == FollowerChange::LetIn && p.announcements == news), "{backend}");
        store.follower_let_in(&channel(), &fan("ann"), Utc::now()).await.unwrap();
        assert_eq!(store.pending_followers(10).await.unwrap().len(), 1, "{backend}: Ann is in");

        // Bob leaves before he was let in: nobody to kick. Ann leaves, then follows again
        // before it was carried out: she stays.
        store.record_webhook(&receipt("f3"), &unfollowed("bob")).await.unwrap();
        store.record_webhook(&receipt("f4"), &unfollowed("ann")).await.unwrap();
        let changes: Vec<_> = store.pending_followers(10).await.unwrap().into_iter().map(|p| p.change).collect();
        assert!(changes.contains(&FollowerChange::TakeOut { invited: false }), "{backend}: {changes:?}");
        assert!(changes.contains(&FollowerChange::TakeOut { invited: true }), "{backend}: {changes:?}");
        store.record_webhook(&receipt("f5"), &followed("ann")).await.unwrap();
        store.follower_gone(&channel(), &fan("bob")).await.unwrap();
        assert!(store.pending_followers(10).await.unwrap().is_empty(), "{backend}");
        assert_eq!(store.followers(&channel()).await.unwrap(), vec![fan("ann")], "{backend}");
        // A follower gone is gone only if still removed.
        store.follower_gone(&channel(), &fan("ann")).await.unwrap();
        assert_eq!(store.followers(&channel()).await.unwrap(), vec![fan("ann")], "{backend}");
    })
    .await;
}

#[tokio::test]
async fn a_reservations_arrival_and_its_announcements_read_back() {
    each_backend(|store, backend| async move {
        let before = Utc::now() - chrono::Duration::seconds(1);
        store.record_webhook(&receipt("r1"), &upsert_in_channel("show-1", "blue-room")).await.unwrap();
        let id = foyer::model::ReservationId::parse("show-1").unwrap();
        let first = store.reservation(&id).await.unwrap().unwrap().signals.first_seen_at.expect("arrival");
        assert!(first >= before, "{backend}");
        // An update keeps the first arrival.
        store.record_webhook(&receipt("r2"), &upsert_in_channel("show-1", "blue-room")).await.unwrap();
        assert_eq!(store.reservation(&id).await.unwrap().unwrap().signals.first_seen_at, Some(first), "{backend}");
        for key in ["live", "live", "reminder:900:4099999999"] {
            store.record_step(&id, &StepRecord::Announced(key.into()), Utc::now()).await.unwrap();
        }
        let announced = store.lifecycle_state(&id).await.unwrap().room.announced;
        assert_eq!(announced, ["live".to_owned(), "reminder:900:4099999999".to_owned()].into(), "{backend}");
    })
    .await;
}
