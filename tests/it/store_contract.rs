//! The store's promises, checked on every backend: SQLite (a file) and PostgreSQL (a
//! database of its own on the test binary's server).

use std::time::Duration;

use chrono::{DateTime, Duration as Span, TimeZone as _, Utc};
use foyer::{
    config::{DatabaseConfig, DatabaseKind},
    events::HomeserverEvent,
    model::{
        Access, Archive, Channel, ChatMode, ExternalId, Holder, InviteFailure, Membership, ReplayOffset, Reservation,
        ReservationId, ReservationRecord, Revision, RoomState, SessionId, Speech, StepRecord, StreamKey, Ticket, Title,
        WebhookEvent,
    },
    secret::Secret,
    store::{self, AdminAction, Counts, MembershipFact, Outbound, Outcome, Receipt, Store, StoreError},
};
use proptest::{prelude::*, strategy::ValueTree as _, test_runner::TestRunner};
use ruma::{OwnedRoomId, OwnedUserId};

use crate::common::postgres::fresh_postgres_database;

mod calendar;
mod enforcement;
mod followers;
mod moderation;
mod series;
mod webchat;

/// Runs `check` against a fresh store of each backend, writing outbound events.
async fn each_backend<F, Fut>(check: F)
where
    F: Fn(std::sync::Arc<dyn Store>, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    each_backend_with(Outbound::write(), check).await
}

async fn each_backend_with<F, Fut>(outbox: Outbound, check: F)
where
    F: Fn(std::sync::Arc<dyn Store>, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = DatabaseConfig {
        url: Secret::new(format!("sqlite://{}", dir.path().join("foyer.db").display())),
        kind: DatabaseKind::Sqlite,
        max_connections: None,
        acquire_timeout: Duration::from_secs(10),
    };
    check(store::open(&sqlite, outbox.clone()).await.expect("sqlite store"), "sqlite").await;
    let postgres = DatabaseConfig {
        url: Secret::new(fresh_postgres_database().await),
        kind: DatabaseKind::Postgres,
        max_connections: Some(4),
        acquire_timeout: Duration::from_secs(10),
    };
    check(store::open(&postgres, outbox).await.expect("postgres store"), "postgres").await;
}

fn jazz() -> ReservationId {
    ReservationId::parse("jazz").unwrap()
}

fn ticket_id(id: &str) -> ExternalId {
    ExternalId::parse(id).unwrap()
}

fn alice() -> OwnedUserId {
    OwnedUserId::try_from("@alice:example.org").unwrap()
}

fn upsert(revision: u64) -> WebhookEvent {
    let t = |h| Utc.with_ymd_and_hms(2099, 11, 27, h, 0, 0).unwrap();
    WebhookEvent::Upsert(Box::new(Reservation {
        id: jazz(),
        revision: Some(Revision(revision)),
        title: Title::parse(&format!("Jazz {revision}")).unwrap(),
        description: None,
        starts_at: t(19),
        ends_at: t(21),
        stream_url: None,
        channel: None,
        hosts: vec![],
        open_before_seconds: Some(900),
        close_after_seconds: None,
        transcript: Some(true),
        stream_key: None,
        rules: Default::default(),
        moderators: Vec::new(),
        archive: Default::default(),
        replay_offset: None,
        auto_join: None,
        access: Default::default(),
    }))
}

fn receipt(id: &str) -> Receipt<'_> {
    Receipt { webhook_id: id, received_at: Utc::now() }
}

#[tokio::test]
async fn webhook_ids_and_revisions_decide_what_is_applied() {
    each_backend(|store, backend| async move {
        assert_eq!(store.record_webhook(&receipt("a"), &upsert(3)).await.unwrap(), Outcome::Accepted, "{backend}");
        assert_eq!(store.record_webhook(&receipt("a"), &upsert(9)).await.unwrap(), Outcome::Duplicate, "{backend}");
        assert_eq!(store.record_webhook(&receipt("b"), &upsert(2)).await.unwrap(), Outcome::Stale, "{backend}");
        let record = store.reservation(&jazz()).await.unwrap().unwrap();
        assert_eq!(record.reservation.title.as_str(), "Jazz 3", "{backend}");
        assert_eq!(record.reservation.open_before_seconds, Some(900), "{backend}");
        assert_eq!(record.reservation.transcript, Some(true), "chat.transcript: {backend}");
        let ticket = Ticket { id: ExternalId::parse("t").unwrap(), holder: Holder::User(alice()) };
        let grant = WebhookEvent::TicketsGranted { id: jazz(), tickets: vec![ticket] };
        store.record_webhook(&receipt("c"), &grant).await.unwrap();
        let revoke = WebhookEvent::TicketsRevoked { id: jazz(), ticket_ids: vec![ExternalId::parse("t").unwrap()] };
        store.record_webhook(&receipt("d"), &revoke).await.unwrap();
        let state = store.lifecycle_state(&jazz()).await.unwrap();
        assert!(state.audience.holders.is_empty() && state.audience.revoked.contains(&alice()), "{backend}");
        let page = store.reservations_after(None, 10, Counts::Counted).await.unwrap();
        assert_eq!(page.len(), 1, "{backend}");
        assert_eq!(page[0].tickets.revoked, 1, "{backend}");
        // The walk for phases carries the same facts without the counts.
        let light = store.reservations_after(None, 10, Counts::Zero).await.unwrap();
        assert_eq!(light.len(), 1, "{backend}");
        assert_eq!((light[0].tickets.revoked, light[0].members.invited), (0, 0), "{backend}");
        assert_eq!(light[0].reservation, page[0].reservation, "{backend}");
        assert_eq!(light[0].signals, page[0].signals, "{backend}");
        assert_eq!((&light[0].room_id, light[0].archived), (&page[0].room_id, page[0].archived), "{backend}");
        // Several by id at once, with their counts; unknown ids are left out.
        let missing = ReservationId::parse("no-such").unwrap();
        let by_id = store.reservations_by_id(&[missing.clone(), jazz()]).await.unwrap();
        assert_eq!(by_id, page, "{backend}");
        assert!(store.reservations_by_id(&[missing]).await.unwrap().is_empty(), "{backend}");
        assert!(store.reservations_by_id(&[]).await.unwrap().is_empty(), "{backend}");
    })
    .await;
}

/// A stream key is held by one active reservation at most, also when several writes of
/// it race (PostgreSQL writes them in transactions of their own, at once); a refused write
/// keeps nothing, not even its receipt; a cancelled reservation lets its key go.
#[tokio::test]
async fn a_stream_key_is_held_by_one_active_reservation() {
    each_backend(|store, backend| async move {
        let key = StreamKey::parse("live_secret_key_0123").unwrap().hash();
        let with_key = |name: &str| {
            let WebhookEvent::Upsert(mut r) = upsert(1) else { unreachable!("upsert is an upsert") };
            r.id = ReservationId::parse(name).unwrap();
            r.stream_key = Some(key.clone());
            WebhookEvent::Upsert(r)
        };
        // Connections opened first, so that the racers' transactions overlap rather than
        // queue for a connection each.
        let warm = (0..4).map(|_| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move { store.reservations_by_stream_key(&key).await })
        });
        for warm in warm.collect::<Vec<_>>() {
            warm.await.unwrap().unwrap();
        }
        let racers = (0..8).map(|i| {
            let store = store.clone();
            let event = with_key(&format!("racer-{i}"));
            tokio::spawn(async move { store.record_webhook(&receipt(&format!("race-{i}")), &event).await })
        });
        let mut accepted = Vec::new();
        for (i, racer) in racers.collect::<Vec<_>>().into_iter().enumerate() {
            match racer.await.unwrap() {
                Ok(outcome) => accepted.push((i, outcome)),
                Err(StoreError::Refused { path, .. }) => assert_eq!(path, "data.ingest.stream_key", "{backend}"),
                Err(e) => panic!("{backend}: {e}"),
            }
        }
        assert_eq!(accepted.len(), 1, "{backend}: one racer holds the key: {accepted:?}");
        let (winner, _) = accepted[0];
        let holders = store.reservations_by_stream_key(&key).await.unwrap();
        assert_eq!(holders.len(), 1, "{backend}");
        assert_eq!(holders[0].reservation.id.as_str(), format!("racer-{winner}"), "{backend}");
        // The same reservation may write its key again.
        let again = store.record_webhook(&receipt("again"), &with_key(&format!("racer-{winner}"))).await;
        assert_eq!(again.unwrap(), Outcome::Accepted, "{backend}");
        // Once the holder is cancelled, a refused delivery goes through, the same id.
        let loser = (0..8).find(|i| *i != winner).unwrap();
        let cancel =
            WebhookEvent::Cancelled { id: ReservationId::parse(&format!("racer-{winner}")).unwrap(), reason: None };
        store.record_webhook(&receipt("cancel"), &cancel).await.unwrap();
        let retried =
            store.record_webhook(&receipt(&format!("race-{loser}")), &with_key(&format!("racer-{loser}"))).await;
        assert_eq!(retried.unwrap(), Outcome::Accepted, "{backend}: the refused receipt was not kept");
        assert_eq!(store.reservations_by_stream_key(&key).await.unwrap().len(), 2, "{backend}: one of them cancelled");
    })
    .await;
}

/// `chat.archive` (docs/replay.md, "Public archive"): public only while the room does
/// not exist, private at any time; its choices, takedown and anonymous members read back.
#[tokio::test]
async fn a_chat_becomes_public_only_before_its_room_opens() {
    each_backend(|store, backend| async move {
        let with = |revision, archive, offset: Option<i64>| {
            let WebhookEvent::Upsert(mut r) = upsert(revision) else { unreachable!("upsert is an upsert") };
            r.archive = archive;
            r.replay_offset = offset.map(|ms| ReplayOffset::parse(ms).unwrap());
            WebhookEvent::Upsert(r)
        };
        let public = Archive::Public { indexable: true };
        store.record_webhook(&receipt("a"), &with(1, Archive::Private, None)).await.unwrap();
        store.record_webhook(&receipt("b"), &with(2, public, Some(-1500))).await.unwrap();
        let read = store.reservation(&jazz()).await.unwrap().unwrap().reservation;
        assert_eq!((read.archive, read.replay_offset.map(ReplayOffset::ms)), (public, Some(-1500)), "{backend}");
        // Its room opens as public: it may stay public, or become private.
        let claim = store.claim(&jazz(), Utc::now(), Duration::from_secs(60), "one").await.unwrap().expect("claimed");
        let room = OwnedRoomId::try_from("!public:example.org").unwrap();
        let created =
            StepRecord::RoomCreated { room_id: room, hosts: [].into(), name: "Jazz".into(), topic: "t".into() };
        store.record_step(&jazz(), &created, Utc::now()).await.unwrap();
        store.release(&claim, None, None, Utc::now()).await.unwrap();
        assert_eq!(store.record_webhook(&receipt("c"), &with(3, public, None)).await.unwrap(), Outcome::Accepted);
        assert_eq!(
            store.record_webhook(&receipt("d"), &with(4, Archive::Private, None)).await.unwrap(),
            Outcome::Accepted
        );
        // Private once open: public no more, and the refusal changes nothing.
        match store.record_webhook(&receipt("e"), &with(5, public, Some(10))).await {
            Err(StoreError::Refused { path, .. }) => assert_eq!(path, "data.chat.archive", "{backend}"),
            other => panic!("{backend}: {other:?}"),
        }
        let read = store.reservation(&jazz()).await.unwrap().unwrap();
        assert_eq!(
            (read.reservation.archive, read.reservation.revision),
            (Archive::Private, Some(Revision(4))),
            "{backend}"
        );
        assert_eq!(
            store.record_webhook(&receipt("e"), &with(5, Archive::Private, None)).await.unwrap(),
            Outcome::Accepted,
            "{backend}: the refused receipt was not kept"
        );

        assert!(!store.archive_taken_down(&jazz()).await.unwrap(), "{backend}");
        store.take_down_archive(&jazz(), Utc::now()).await.unwrap();
        store.take_down_archive(&jazz(), Utc::now()).await.unwrap();
        assert!(store.archive_taken_down(&jazz()).await.unwrap(), "{backend}");
        assert!(store.anonymous_members(&jazz()).await.unwrap().is_empty(), "{backend}");
        store.make_anonymous(&jazz(), &alice(), Utc::now()).await.unwrap();
        store.make_anonymous(&jazz(), &alice(), Utc::now()).await.unwrap();
        assert_eq!(store.anonymous_members(&jazz()).await.unwrap(), vec![alice()], "{backend}");
        // Who asked to be anonymous goes with the transcripts, past their retention after
        // the archive.
        store.record_step(&jazz(), &StepRecord::Archived, Utc::now()).await.unwrap();
        store.prune_transcripts(Utc::now() - chrono::Duration::days(1)).await.unwrap();
        assert_eq!(store.anonymous_members(&jazz()).await.unwrap(), vec![alice()], "{backend}: not yet");
        store.prune_transcripts(Utc::now() + chrono::Duration::days(1)).await.unwrap();
        assert!(store.anonymous_members(&jazz()).await.unwrap().is_empty(), "{backend}: pruned");
    })
    .await;
}

#[tokio::test]
async fn leases_exclude_others_and_new_facts_keep_a_reservation_due() {
    each_backend(|store, backend| async move {
        let lease = Duration::from_secs(60);
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        // After the webhook: it is due from its arrival, which a `now` read before it may precede.
        let now = Utc::now();
        let claims = store.claim_due(now, lease, 10, "one").await.unwrap();
        assert_eq!(claims.len(), 1, "{backend}");
        assert!(store.claim_due(now, lease, 10, "two").await.unwrap().is_empty(), "{backend}: leased");
        assert!(store.claim(&jazz(), now, lease, "two").await.unwrap().is_none(), "{backend}: leased");
        assert!(store.renew(&claims[0], now + Span::seconds(30)).await.unwrap(), "{backend}: the owner renews");

        // New facts during the lease keep the reservation due when it is released.
        store.record_webhook(&receipt("b"), &upsert(2)).await.unwrap();
        store.release(&claims[0], Some(now + Span::hours(5)), None, now).await.unwrap();
        let due = store.next_due_at().await.unwrap().unwrap();
        assert!(due <= Utc::now(), "{backend}: due now, not in 5 hours: {due}");

        // An expired lease is taken over, and the old owner can neither renew nor release it.
        let first = store.claim_due(Utc::now(), lease, 10, "one").await.unwrap().remove(0);
        let later = Utc::now() + Span::seconds(61);
        let second = store.claim_due(later, lease, 10, "two").await.unwrap().remove(0);
        assert!(!store.renew(&first, later + Span::seconds(30)).await.unwrap(), "{backend}: lost");
        store.release(&first, None, None, later).await.unwrap();
        assert!(store.claim(&jazz(), later, lease, "three").await.unwrap().is_none(), "{backend}: still two's");
        store.release(&second, Some(now + Span::hours(5)), Some("boom"), later).await.unwrap();
        assert!(store.next_due_at().await.unwrap().unwrap() > now + Span::hours(4), "{backend}");
        assert_eq!(store.lifecycle_state(&jazz()).await.unwrap().attempts, 1, "{backend}");
        // A claim carries the failures so far, for the backoff of the next one.
        let again = store.claim(&jazz(), later, lease, "four").await.unwrap().expect("released");
        assert_eq!((again.attempts, again.due_at), (1, None), "{backend}");
        store.release(&again, Some(later), None, later).await.unwrap();
        let due = store.claim_due(later, lease, 10, "five").await.unwrap();
        assert_eq!(due.iter().map(|c| c.attempts).collect::<Vec<_>>(), [0], "{backend}: a success resets them");
    })
    .await;
}

#[tokio::test]
async fn tickets_make_a_reservation_due_only_once_its_room_exists() {
    each_backend(|store, backend| async move {
        let lease = std::time::Duration::from_secs(60);
        let grant = |n: &str| {
            let ticket = Ticket { id: ExternalId::parse(n).unwrap(), holder: Holder::User(alice()) };
            WebhookEvent::TicketsGranted { id: jazz(), tickets: vec![ticket] }
        };
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let now = Utc::now();
        let claim = store.claim_due(now, lease, 10, "one").await.unwrap().remove(0);
        let opens_at = now + chrono::Duration::hours(1);
        store.release(&claim, Some(opens_at), None, now).await.unwrap();
        // Before the room: a ticket changes no plan, so nothing is due before opens_at.
        store.record_webhook(&receipt("b"), &grant("t1")).await.unwrap();
        assert!(store.claim_due(Utc::now(), lease, 10, "one").await.unwrap().is_empty(), "{backend}: not due");
        let due = store.next_due_at().await.unwrap().unwrap();
        assert_eq!(due.timestamp_millis(), opens_at.timestamp_millis(), "{backend}");
        // A worker opening the room right then: its release sees the ticket and plans again.
        let claim = store.claim(&jazz(), Utc::now(), lease, "one").await.unwrap().expect("claimed");
        store.record_webhook(&receipt("c"), &grant("t2")).await.unwrap();
        let room = OwnedRoomId::try_from("!opened:example.org").unwrap();
        let created =
            StepRecord::RoomCreated { room_id: room, hosts: [].into(), name: "Jazz 1".into(), topic: "t".into() };
        store.record_step(&jazz(), &created, Utc::now()).await.unwrap();
        store.release(&claim, None, None, Utc::now()).await.unwrap();
        let again = store.claim_due(Utc::now(), lease, 10, "one").await.unwrap();
        assert_eq!(again.len(), 1, "{backend}: due again");
        store.release(&again[0], None, None, Utc::now()).await.unwrap();
        assert!(store.claim_due(Utc::now(), lease, 10, "one").await.unwrap().is_empty(), "{backend}: planned");
        // With the room: a ticket makes it due at once.
        store.record_webhook(&receipt("d"), &grant("t3")).await.unwrap();
        assert_eq!(store.claim_due(Utc::now(), lease, 10, "one").await.unwrap().len(), 1, "{backend}: due now");
    })
    .await;
}

#[tokio::test]
async fn planning_reads_neither_counts_nor_the_audience_before_the_room_exists() {
    each_backend(|store, backend| async move {
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let ticket = Ticket { id: ExternalId::parse("t").unwrap(), holder: Holder::User(alice()) };
        store
            .record_webhook(&receipt("b"), &WebhookEvent::TicketsGranted { id: jazz(), tickets: vec![ticket] })
            .await
            .unwrap();
        let full = store.lifecycle_state(&jazz()).await.unwrap();
        assert_eq!(full.audience.holders, [alice()].into(), "{backend}");
        let store::Planning { record, state: before } = store.planning(&jazz()).await.unwrap();
        assert!(before.audience.holders.is_empty(), "{backend}: no room, no audience read");
        assert_eq!(before.room, full.room, "{backend}: the rest is the same");
        let mut counted = store.reservation(&jazz()).await.unwrap().unwrap();
        assert_eq!(counted.tickets.active, 1, "{backend}");
        counted.tickets = Default::default();
        assert_eq!(record, Some(counted), "{backend}: the record, without its counts");
        let room = OwnedRoomId::try_from("!planned:example.org").unwrap();
        let created =
            StepRecord::RoomCreated { room_id: room, hosts: [].into(), name: "Jazz 1".into(), topic: "t".into() };
        store.record_step(&jazz(), &created, Utc::now()).await.unwrap();
        let after = store.planning(&jazz()).await.unwrap().state;
        assert_eq!(after, store.lifecycle_state(&jazz()).await.unwrap(), "{backend}: with a room, everything");
        assert_eq!(after.audience.holders, [alice()].into(), "{backend}");
    })
    .await;
}

#[tokio::test]
async fn steps_and_membership_facts_are_recorded_once() {
    each_backend(|store, backend| async move {
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let room = OwnedRoomId::try_from("!room:example.org").unwrap();
        let now = Utc::now();
        assert!(!store.manages_room(&room).await.unwrap(), "{backend}: not yet");
        let created = StepRecord::RoomCreated {
            room_id: room.clone(),
            hosts: [alice()].into(),
            name: "Jazz 1".into(),
            topic: "t".into(),
        };
        for step in [
            created,
            StepRecord::Invited { user_id: alice() },
            StepRecord::OpeningNoticeSent,
            StepRecord::ReminderSent(600),
            StepRecord::ReminderSent(60),
            StepRecord::LiveNoticeSent(now),
            StepRecord::StreamLinkSet(Some("https://s.example.org".into())),
            StepRecord::SpaceEnsured { channel_id: "blue".into(), space: room.clone(), name: "Blue".into() },
            StepRecord::SpaceLinked(Some(room.clone())),
        ] {
            store.record_step(&jazz(), &step, now).await.unwrap();
        }
        let state = store.lifecycle_state(&jazz()).await.unwrap().room;
        assert_eq!(state.room_id.as_ref(), Some(&room), "{backend}");
        assert!(store.manages_room(&room).await.unwrap(), "{backend}: its room");
        assert!(
            !store.manages_room(&OwnedRoomId::try_from("!other:example.org").unwrap()).await.unwrap(),
            "{backend}: a foreign room"
        );
        assert!(state.invited.contains(&alice()) && state.opening_notice_sent, "{backend}");
        assert_eq!(state.reminders_sent, [60, 600].into(), "{backend}");
        assert_eq!(state.live_notice_for.map(|t| t.timestamp_millis()), Some(now.timestamp_millis()), "{backend}");
        assert_eq!(state.topic_applied.as_deref(), Some("t"), "{backend}");
        assert_eq!(state.name_applied.as_deref(), Some("Jazz 1"), "{backend}");
        store.record_step(&jazz(), &StepRecord::NameSet("Jazz 2".into()), now).await.unwrap();
        let renamed = store.lifecycle_state(&jazz()).await.unwrap().room.name_applied;
        assert_eq!(renamed.as_deref(), Some("Jazz 2"), "{backend}");
        assert_eq!(state.space_linked.as_ref(), Some(&room), "{backend}");

        let fact = |event: &str, room: &str| MembershipFact {
            event_id: event.into(),
            room_id: room.into(),
            user_id: alice(),
            membership: Membership::Join,
            sender: alice().to_string(),
            display_name: None,
            knock_claim: None,
            reason: None,
        };
        let join = fact("$1", "!room:example.org");
        assert_eq!(store.record_memberships(std::slice::from_ref(&join), now).await.unwrap(), 1, "{backend}");
        assert_eq!(store.record_memberships(&[join], now).await.unwrap(), 0, "{backend}: same event id");
        assert_eq!(store.record_memberships(&[fact("$2", "!other:example.org")], now).await.unwrap(), 0, "{backend}");
        let record = store.reservation(&jazz()).await.unwrap().unwrap();
        assert_eq!((record.members.joined, record.members.invited), (1, 0), "{backend}");
        // A refused knocker's row (a leave) is forgotten with the old event ids.
        let refused = OwnedUserId::try_from("@knocker:example.org").unwrap();
        let leave = StepRecord::Member { user_id: refused, membership: Membership::Leave, invited_by: None };
        store.record_step(&jazz(), &leave, now).await.unwrap();
        assert_eq!(
            store.prune_seen_events(now + Span::seconds(1)).await.unwrap(),
            2,
            "{backend}: an event id, a leave"
        );
        let record = store.reservation(&jazz()).await.unwrap().unwrap();
        assert_eq!((record.members.joined, record.members.invited), (1, 0), "{backend}: the members stay");
    })
    .await;
}

/// `members.holders_joined` counts the joined members who hold an active ticket, once
/// each, against `tickets.holders`: not the hosts or anyone else without a ticket, not a
/// holder whose ticket was revoked, not a holder who is only invited or has left; the
/// reads for phases leave both at zero.
#[tokio::test]
async fn joined_holders_are_counted_once_against_the_holders() {
    use foyer::model::{ClaimKey, Email, EmailClaim};
    each_backend(|store, backend| async move {
        let now = Utc::now();
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let room = OwnedRoomId::try_from("!doors:example.org").unwrap();
        let created = StepRecord::RoomCreated {
            room_id: room.clone(),
            hosts: [user("host")].into(),
            name: "J".into(),
            topic: "t".into(),
        };
        store.record_step(&jazz(), &created, now).await.unwrap();
        let held = |id: &str, name: &str| Ticket { id: ticket_id(id), holder: Holder::User(user(name)) };
        let (key, email) = (ClaimKey::from_secret(b"contract"), Email::parse("fan@example.org").unwrap());
        let claim = EmailClaim::new(&key, &jazz(), &ticket_id("t-mail"), &email);
        let unclaimed = Ticket { id: ticket_id("t-mail"), holder: Holder::Email { claim, email, display_name: None } };
        // Bob holds two tickets; Carol's is revoked below; the email ticket has no holder yet.
        let tickets = vec![
            held("t-ann", "ann"),
            held("t-bob-1", "bob"),
            held("t-bob-2", "bob"),
            held("t-carol", "carol"),
            held("t-dan", "dan"),
            held("t-eve", "eve"),
            unclaimed,
        ];
        store.record_webhook(&receipt("g"), &WebhookEvent::TicketsGranted { id: jazz(), tickets }).await.unwrap();
        let revoke = WebhookEvent::TicketsRevoked { id: jazz(), ticket_ids: vec![ticket_id("t-carol")] };
        store.record_webhook(&receipt("r"), &revoke).await.unwrap();
        let facts: Vec<MembershipFact> = [
            ("ann", Membership::Join),
            ("bob", Membership::Join),
            ("carol", Membership::Join),
            ("dan", Membership::Invite),
            ("eve", Membership::Leave),
            ("host", Membership::Join),
            ("doorkeeper", Membership::Join),
        ]
        .into_iter()
        .enumerate()
        .map(|(n, (name, membership))| MembershipFact {
            event_id: format!("$doors{n}"),
            room_id: room.to_string(),
            user_id: user(name),
            membership,
            sender: user(name).to_string(),
            display_name: None,
            knock_claim: None,
            reason: None,
        })
        .collect();
        assert_eq!(store.record_memberships(&facts, now).await.unwrap(), facts.len(), "{backend}");
        let record = store.reservation(&jazz()).await.unwrap().unwrap();
        assert_eq!(
            (record.tickets.active, record.tickets.holders),
            (6, 4),
            "{backend}: ann, bob twice, dan, eve, the email"
        );
        assert_eq!(
            (record.members.joined, record.members.invited, record.members.holders_joined),
            (5, 1, 2),
            "{backend}: ann and bob of the five joined"
        );
        let listed = store.reservations_by_id(&[jazz()]).await.unwrap();
        assert_eq!(listed[0].members.holders_joined, 2, "{backend}: the status page's read");
        let page = store.reservations_after(None, 10, Counts::Counted).await.unwrap();
        assert_eq!((page[0].members.holders_joined, page[0].tickets.holders), (2, 4), "{backend}: the list");
        let light = store.reservations_after(None, 10, Counts::Zero).await.unwrap();
        assert_eq!((light[0].members.holders_joined, light[0].tickets.holders), (0, 0), "{backend}: phases");
    })
    .await;
}

/// Members' names come with their member events and are read back by room; a room
/// names its reservation; a ticket is known with whether it is revoked.
#[tokio::test]
async fn member_names_rooms_and_tickets_are_read_for_the_web_chat() {
    each_backend(|store, backend| async move {
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let room = OwnedRoomId::try_from("!named:example.org").unwrap();
        assert_eq!(store.reservation_of_room(&room).await.unwrap(), None, "{backend}: no room yet");
        let created =
            StepRecord::RoomCreated { room_id: room.clone(), hosts: [].into(), name: "Jazz".into(), topic: "t".into() };
        store.record_step(&jazz(), &created, Utc::now()).await.unwrap();
        assert_eq!(store.reservation_of_room(&room).await.unwrap(), Some(jazz()), "{backend}");
        let fact = |event: &str, user: &OwnedUserId, membership, name: Option<&str>| MembershipFact {
            event_id: event.into(),
            room_id: room.to_string(),
            user_id: user.clone(),
            membership,
            sender: user.to_string(),
            display_name: name.map(str::to_owned),
            knock_claim: None,
            reason: None,
        };
        let (bob, carol) = (user("bob"), user("carol"));
        let facts = [
            fact("$n1", &alice(), Membership::Join, Some("Alice")),
            fact("$n2", &bob, Membership::Join, Some("Bob")),
            fact("$n3", &alice(), Membership::Join, Some("Alice Renamed")),
            fact("$n4", &carol, Membership::Join, None),
        ];
        assert_eq!(store.record_memberships(&facts, Utc::now()).await.unwrap(), 4, "{backend}");
        let asked = [alice(), bob.clone(), carol.clone(), user("nobody")];
        let mut names = store.member_names(&room, &asked).await.unwrap();
        names.sort();
        assert_eq!(names, [(alice(), "Alice Renamed".to_owned()), (bob.clone(), "Bob".to_owned())], "{backend}");
        let other = OwnedRoomId::try_from("!other:example.org").unwrap();
        assert!(store.member_names(&other, &asked).await.unwrap().is_empty(), "{backend}: another room");
        // A leave without a name forgets it.
        store.record_memberships(&[fact("$n5", &bob, Membership::Leave, None)], Utc::now()).await.unwrap();
        assert!(store.member_names(&room, std::slice::from_ref(&bob)).await.unwrap().is_empty(), "{backend}");

        let t1 = foyer::model::TicketId::parse("t1").unwrap();
        assert_eq!(store.ticket_revoked(&jazz(), &t1).await.unwrap(), None, "{backend}: never granted");
        let ticket = Ticket { id: ticket_id("t1"), holder: Holder::User(alice()) };
        let granted = WebhookEvent::TicketsGranted { id: jazz(), tickets: vec![ticket] };
        store.record_webhook(&receipt("b"), &granted).await.unwrap();
        assert_eq!(store.ticket_revoked(&jazz(), &t1).await.unwrap(), Some(false), "{backend}");
        let revoked = WebhookEvent::TicketsRevoked { id: jazz(), ticket_ids: vec![t1.clone()] };
        store.record_webhook(&receipt("c"), &revoked).await.unwrap();
        assert_eq!(store.ticket_revoked(&jazz(), &t1).await.unwrap(), Some(true), "{backend}");
    })
    .await;
}

/// A reservation of its own, in a channel of its own (the space a `SpaceEnsured` names is
/// the reservation's only if it is for the reservation's channel).
fn upsert_in_channel(id: &str, channel: &str) -> WebhookEvent {
    let WebhookEvent::Upsert(mut reservation) = upsert(1) else { unreachable!("upsert is an upsert") };
    reservation.id = ReservationId::parse(id).unwrap();
    reservation.channel =
        Some(Channel { id: ExternalId::parse(channel).unwrap(), name: Title::parse("The Blue Room").unwrap() });
    WebhookEvent::Upsert(reservation)
}

fn user(name: &str) -> OwnedUserId {
    OwnedUserId::try_from(format!("@{name}:example.org")).unwrap()
}

/// A time as the store keeps it: to the millisecond.
fn ms(at: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at).unwrap()
}

/// Every kind of record, each rule of them exercised: before the room exists and after,
/// repeated, overwritten and undone.
fn every_record(room: &OwnedRoomId, space: &OwnedRoomId, channel: &str) -> Vec<StepRecord> {
    let (alice, bob, carol, dave) = (user("alice"), user("bob"), user("carol"), user("dave"));
    let member = |user_id: &OwnedUserId, membership, invited_by: Option<OwnedUserId>| StepRecord::Member {
        user_id: user_id.clone(),
        membership,
        invited_by,
    };
    let first = InviteFailure::after(None, "502 unreachable".into(), ms(4_000_000_000_000));
    let second = InviteFailure::after(Some(&first), "502 again".into(), ms(4_000_000_060_000));
    vec![
        // No room yet: a membership has nowhere to go; an invite is still remembered.
        member(&alice, Membership::Knock, None),
        // Nor has a transcript.
        StepRecord::TranscriptMade { messages: 0 },
        StepRecord::Invited { user_id: bob.clone() },
        StepRecord::CreateBegan { by: "one".into() },
        StepRecord::RoomCreated {
            room_id: room.clone(),
            hosts: [user("dj")].into(),
            name: "Jazz".into(),
            topic: "Starts at 19:00".into(),
        },
        StepRecord::NameSet("Jazz at Midnight".into()),
        StepRecord::TopicSet("🔴 Live now".into()),
        StepRecord::StreamLinkSet(Some("https://s.example.org/w".into())),
        StepRecord::LiveNoticeSent(ms(4_000_000_000_123)),
        StepRecord::EndedNoticeSent(ms(4_000_000_900_456)),
        StepRecord::ReminderSent(600),
        StepRecord::ReminderSent(60),
        StepRecord::ReminderSent(600),
        StepRecord::ClosingWarningSent,
        StepRecord::SpaceEnsured { channel_id: channel.into(), space: space.clone(), name: "The Blue Room".into() },
        StepRecord::SpaceLinked(Some(space.clone())),
        StepRecord::HostsApplied([user("dj"), user("mc")].into()),
        StepRecord::SpeechApplied(Speech { mode: ChatMode::HostsOnly, silenced: [user("eve")].into() }),
        StepRecord::SpeechApplied(Speech { mode: ChatMode::ReactionsOnly, silenced: Default::default() }),
        // Who invited a member is kept until a record says otherwise.
        member(&alice, Membership::Knock, None),
        member(&alice, Membership::Invite, Some(user("foyer"))),
        member(&alice, Membership::Join, None),
        // An invite is a membership at once, but never undoes more than a leave.
        StepRecord::Invited { user_id: alice.clone() },
        StepRecord::Invited { user_id: carol.clone() },
        member(&carol, Membership::Leave, None),
        StepRecord::Invited { user_id: carol.clone() },
        member(&dave, Membership::Ban, Some(user("mc"))),
        StepRecord::InviteFailed { user_id: dave.clone(), failure: first },
        StepRecord::InviteFailed { user_id: dave.clone(), failure: second.clone() },
        StepRecord::Invited { user_id: dave.clone() },
        StepRecord::InviteFailed { user_id: dave.clone(), failure: second },
        StepRecord::InviteForgotten { user_id: dave },
        StepRecord::DoorkeeperAdmitted { user_id: user("keeper") },
        StepRecord::AccessApplied(Access::Channel),
        StepRecord::Announced("reminder:900:1795460400".into()),
        StepRecord::Announced("live".into()),
        member(&carol, Membership::Leave, None),
        StepRecord::InviteForgotten { user_id: carol },
        StepRecord::OpeningNoticeSent,
        StepRecord::TranscriptNoticeSent,
        StepRecord::StreamLinkSet(None),
        StepRecord::ClosingNoticeSent,
        StepRecord::SpaceLinked(None),
        StepRecord::TranscriptFailed { at: ms(4_000_000_100_000), error: "502 Bad Gateway".into() },
        StepRecord::TranscriptFailed { at: ms(4_000_000_200_000), error: "refused".into() },
        StepRecord::TranscriptMade { messages: 12 },
        StepRecord::TranscriptMade { messages: 13 },
        StepRecord::Archived,
    ]
}

/// Kinds of [`StepRecord`].
const RECORD_KINDS: usize = 26;

/// A record's kind, numbered: a new kind does not compile here until it has the next
/// number (and [`RECORD_KINDS`] counts it), and then fails the test until
/// [`every_record`] has one.
fn record_kind(record: &StepRecord) -> usize {
    match record {
        StepRecord::RoomCreated { .. } => 0,
        StepRecord::NameSet(_) => 1,
        StepRecord::TopicSet(_) => 2,
        StepRecord::StreamLinkSet(_) => 3,
        StepRecord::LiveNoticeSent(_) => 4,
        StepRecord::EndedNoticeSent(_) => 5,
        StepRecord::ReminderSent(_) => 6,
        StepRecord::ClosingWarningSent => 7,
        StepRecord::SpaceEnsured { .. } => 8,
        StepRecord::SpaceLinked(_) => 9,
        StepRecord::HostsApplied(_) => 10,
        StepRecord::Member { .. } => 11,
        StepRecord::Invited { .. } => 12,
        StepRecord::InviteFailed { .. } => 13,
        StepRecord::CreateBegan { .. } => 14,
        StepRecord::InviteForgotten { .. } => 15,
        StepRecord::OpeningNoticeSent => 16,
        StepRecord::ClosingNoticeSent => 17,
        StepRecord::Archived => 18,
        StepRecord::TranscriptMade { .. } => 19,
        StepRecord::TranscriptFailed { .. } => 20,
        StepRecord::TranscriptNoticeSent => 21,
        StepRecord::SpeechApplied(_) => 22,
        StepRecord::DoorkeeperAdmitted { .. } => 23,
        StepRecord::AccessApplied(_) => 24,
        StepRecord::Announced(_) => 25,
    }
}

/// Any record for the reservation whose room is `room` and whose channel is `channel`.
fn any_record(room: OwnedRoomId, channel: String) -> impl Strategy<Value = StepRecord> {
    let any_user = || (0..4usize).prop_map(|i| user(["alice", "bob", "carol", "dave"][i]));
    let text = || "[a-z ]{0,8}";
    let time = || (0i64..4_000_000_000_000).prop_map(ms);
    let space =
        || prop_oneof![Just("!space-1:example.org"), Just("!space-2:example.org")].prop_map(|s| s.parse().unwrap());
    let membership = prop_oneof![
        Just(Membership::Invite),
        Just(Membership::Join),
        Just(Membership::Knock),
        Just(Membership::Leave),
        Just(Membership::Ban)
    ];
    let failure =
        (text(), 1u32..20, time()).prop_map(|(error, attempts, retry_at)| InviteFailure { error, attempts, retry_at });
    prop_oneof![
        (proptest::collection::btree_set(any_user(), 0..3), text(), text()).prop_map(move |(hosts, name, topic)| {
            StepRecord::RoomCreated { room_id: room.clone(), hosts, name, topic }
        }),
        text().prop_map(StepRecord::NameSet),
        text().prop_map(StepRecord::TopicSet),
        proptest::option::of(text()).prop_map(StepRecord::StreamLinkSet),
        time().prop_map(StepRecord::LiveNoticeSent),
        time().prop_map(StepRecord::EndedNoticeSent),
        (0u64..100_000).prop_map(StepRecord::ReminderSent),
        Just(StepRecord::ClosingWarningSent),
        any_user().prop_map(|user_id| StepRecord::DoorkeeperAdmitted { user_id }),
        prop_oneof![Just(Access::Tickets), Just(Access::Channel), Just(Access::Public)]
            .prop_map(StepRecord::AccessApplied),
        (space(), text()).prop_map(move |(space, name)| StepRecord::SpaceEnsured {
            channel_id: channel.clone(),
            space,
            name
        }),
        proptest::option::of(space()).prop_map(StepRecord::SpaceLinked),
        proptest::collection::btree_set(any_user(), 0..3).prop_map(StepRecord::HostsApplied),
        (0..3usize, proptest::collection::btree_set(any_user(), 0..3)).prop_map(|(mode, silenced)| {
            let mode = [ChatMode::Open, ChatMode::ReactionsOnly, ChatMode::HostsOnly][mode];
            StepRecord::SpeechApplied(Speech { mode, silenced })
        }),
        (any_user(), membership, proptest::option::of(any_user()))
            .prop_map(|(user_id, membership, invited_by)| StepRecord::Member { user_id, membership, invited_by }),
        any_user().prop_map(|user_id| StepRecord::Invited { user_id }),
        (any_user(), failure).prop_map(|(user_id, failure)| StepRecord::InviteFailed { user_id, failure }),
        text().prop_map(|by| StepRecord::CreateBegan { by }),
        any_user().prop_map(|user_id| StepRecord::InviteForgotten { user_id }),
        Just(StepRecord::OpeningNoticeSent),
        Just(StepRecord::TranscriptNoticeSent),
        Just(StepRecord::ClosingNoticeSent),
        Just(StepRecord::Archived),
        (0u64..100_000).prop_map(|messages| StepRecord::TranscriptMade { messages }),
        (time(), text()).prop_map(|(at, error)| StepRecord::TranscriptFailed { at, error }),
    ]
}

/// Records `records` one by one for reservation `id`; after each, the room the store reads
/// back is the one `RoomState::apply` makes of the same records.
async fn records_read_back_as_applied(store: &dyn Store, backend: &str, id: &str, records: &[StepRecord]) {
    let id = ReservationId::parse(id).unwrap();
    let mut expected = RoomState::default();
    assert_eq!(store.lifecycle_state(&id).await.unwrap().room, expected, "{backend} {id}: before any record");
    for (n, record) in records.iter().enumerate() {
        store.record_step(&id, record, Utc::now()).await.unwrap();
        expected.apply(record);
        let stored = store.lifecycle_state(&id).await.unwrap().room;
        assert_eq!(stored, expected, "{backend} {id}: after record {n}, {record:?}, of {records:#?}");
    }
}

/// The store records each kind of step the way `RoomState::apply` says (the rule the
/// planner's tests use), on both databases: a fixed sequence with every record, then
/// random ones.
#[tokio::test]
async fn each_record_reads_back_as_room_state_apply_says() {
    let room = |n: usize| OwnedRoomId::try_from(format!("!room-{n}:example.org")).unwrap();
    let space = OwnedRoomId::try_from("!space:example.org").unwrap();
    let fixed = every_record(&room(0), &space, "channel-0");
    let covered: std::collections::BTreeSet<usize> = fixed.iter().map(record_kind).collect();
    assert_eq!(covered, (0..RECORD_KINDS).collect(), "every kind of record is in `every_record`");
    let mut runner = TestRunner::deterministic();
    let random: Vec<Vec<StepRecord>> = (1..=4)
        .map(|n| {
            let records = proptest::collection::vec(any_record(room(n), format!("channel-{n}")), 30);
            records.new_tree(&mut runner).expect("a sequence").current()
        })
        .collect();
    let sequences: Vec<Vec<StepRecord>> = std::iter::once(fixed).chain(random).collect();
    each_backend(|store, backend| {
        let sequences = sequences.clone();
        async move {
            for (n, records) in sequences.iter().enumerate() {
                let id = format!("r-{n}");
                let webhook_id = format!("w-{n}");
                store
                    .record_webhook(&receipt(&webhook_id), &upsert_in_channel(&id, &format!("channel-{n}")))
                    .await
                    .unwrap();
                records_read_back_as_applied(store.as_ref(), backend, &id, records).await;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn each_holder_has_their_own_invite_outcome_and_backoff() {
    each_backend(|store, backend| async move {
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let bob = OwnedUserId::try_from("@bob:unreachable.invalid").unwrap();
        let tickets = ["t-1", "t-2", "t-3"]
            .iter()
            .zip([alice(), bob.clone(), alice()])
            .map(|(id, user_id)| Ticket { id: ExternalId::parse(id).unwrap(), holder: Holder::User(user_id) })
            .collect();
        store.record_webhook(&receipt("b"), &WebhookEvent::TicketsGranted { id: jazz(), tickets }).await.unwrap();
        let room = OwnedRoomId::try_from("!room:example.org").unwrap();
        let created = StepRecord::RoomCreated { room_id: room, hosts: [].into(), name: "J".into(), topic: "t".into() };
        let now = Utc.timestamp_millis_opt(Utc::now().timestamp_millis()).unwrap();
        store.record_step(&jazz(), &created, now).await.unwrap();
        store.record_step(&jazz(), &StepRecord::Invited { user_id: alice() }, now).await.unwrap();
        let first = InviteFailure::after(None, "502 M_UNKNOWN: unreachable".into(), now);
        let failed = StepRecord::InviteFailed { user_id: bob.clone(), failure: first.clone() };
        store.record_step(&jazz(), &failed, now).await.unwrap();

        let state = store.lifecycle_state(&jazz()).await.unwrap().room;
        assert!(state.invited.contains(&alice()) && !state.invited.contains(&bob), "{backend}");
        assert_eq!(state.invite_failures.get(&bob), Some(&first), "{backend}");
        let record = store.reservation(&jazz()).await.unwrap().unwrap();
        assert_eq!((record.tickets.active, record.tickets.uninvitable), (3, 1), "{backend}");
        let listed = store.tickets(&jazz(), "", 10).await.unwrap();
        let view: Vec<_> = listed.iter().map(|t| (t.ticket_id.as_str(), t.invite_error.is_some())).collect();
        assert_eq!(view, [("t-1", false), ("t-2", true), ("t-3", false)], "{backend}");
        assert_eq!(store.tickets(&jazz(), "t-1", 1).await.unwrap()[0].ticket_id, "t-2", "{backend}: paged");
        let failures = store.invite_failures(&jazz(), 10).await.unwrap();
        assert_eq!(
            failures,
            [foyer::model::FailingInvite { user_id: bob.clone(), error: first.error.clone() }],
            "{backend}"
        );

        // Failing again backs off further; a success clears the failure.
        let second = InviteFailure::after(Some(&first), "502 again".into(), now);
        assert!(second.retry_at > first.retry_at && second.attempts == 2, "{backend}");
        store
            .record_step(&jazz(), &StepRecord::InviteFailed { user_id: bob.clone(), failure: second.clone() }, now)
            .await
            .unwrap();
        assert_eq!(store.lifecycle_state(&jazz()).await.unwrap().room.invite_failures.get(&bob), Some(&second));
        store.record_step(&jazz(), &StepRecord::Invited { user_id: bob.clone() }, now).await.unwrap();
        let state = store.lifecycle_state(&jazz()).await.unwrap().room;
        assert!(state.invited.contains(&bob) && state.invite_failures.is_empty(), "{backend}");
        assert_eq!(store.reservation(&jazz()).await.unwrap().unwrap().tickets.uninvitable, 0, "{backend}");
    })
    .await;
}

#[tokio::test]
async fn who_began_a_room_and_whether_they_hold_a_lease_are_known() {
    each_backend(|store, backend| async move {
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let now = Utc::now();
        assert_eq!(store.lifecycle_state(&jazz()).await.unwrap().create_began, None, "{backend}");
        let claims = store.claim_due(now, Duration::from_secs(60), 10, "one").await.unwrap();
        assert_eq!(claims.len(), 1, "{backend}");
        store.record_step(&jazz(), &StepRecord::CreateBegan { by: "one".into() }, now).await.unwrap();
        let began = store.lifecycle_state(&jazz()).await.unwrap().create_began.expect("recorded");
        assert_eq!((began.by.as_str(), began.at.timestamp_millis()), ("one", now.timestamp_millis()), "{backend}");
        assert!(store.holds_live_lease("one", now).await.unwrap(), "{backend}: working");
        assert!(!store.holds_live_lease("two", now).await.unwrap(), "{backend}: another holds none");
        assert!(!store.holds_live_lease("one", now + Span::minutes(2)).await.unwrap(), "{backend}: ran out");
        store.release(&claims[0], None, None, now).await.unwrap();
        assert!(!store.holds_live_lease("one", now).await.unwrap(), "{backend}: released");
    })
    .await;
}

#[tokio::test]
async fn admin_actions_are_kept_as_facts_and_make_the_reservation_due() {
    each_backend(|store, backend| async move {
        assert!(!store.admin_action(&jazz(), AdminAction::OpenNow, Utc::now()).await.unwrap(), "{backend}: unknown");
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let (first, later) = (Utc::now(), Utc::now() + Span::minutes(5));
        let claims = store.claim_due(first, Duration::from_secs(60), 10, "one").await.unwrap();
        store.release(&claims[0], None, Some("boom"), first).await.unwrap();
        assert_eq!(store.lifecycle_state(&jazz()).await.unwrap().attempts, 1, "{backend}");

        assert!(store.admin_action(&jazz(), AdminAction::OpenNow, first).await.unwrap(), "{backend}");
        assert!(store.admin_action(&jazz(), AdminAction::OpenNow, later).await.unwrap(), "{backend}");
        assert!(store.admin_action(&jazz(), AdminAction::ArchiveNow, later).await.unwrap(), "{backend}");
        let signals = store.reservation(&jazz()).await.unwrap().unwrap().signals;
        let ms = |t: chrono::DateTime<Utc>| t.timestamp_millis();
        assert_eq!(signals.admin_opened_at.map(ms), Some(ms(first)), "{backend}: the first request counts");
        assert_eq!(signals.admin_archived_at.map(ms), Some(ms(later)), "{backend}");
        assert_eq!(store.lifecycle_state(&jazz()).await.unwrap().attempts, 0, "{backend}: failures forgotten");
        assert_eq!(
            store.claim_due(later, Duration::from_secs(60), 10, "two").await.unwrap().len(),
            1,
            "{backend}: due"
        );
    })
    .await;
}

#[tokio::test]
async fn the_admin_inbox_keeps_events_once_in_order_until_forgotten() {
    each_backend(|store, backend| async move {
        let event = |id: &str, body: &str| HomeserverEvent {
            event_id: id.into(),
            room_id: "!dm:example.org".into(),
            kind: "m.room.message".into(),
            sender: alice().to_string(),
            state_key: None,
            content: serde_json::json!({"msgtype": "m.text", "body": body}),
        };
        let invite = HomeserverEvent {
            kind: "m.room.member".into(),
            state_key: Some("@foyer:example.org".into()),
            content: serde_json::json!({"membership": "invite"}),
            ..event("$invite", "")
        };
        let inbox = |limit| {
            let store = store.clone();
            async move {
                let queued = store.admin_inbox(limit).await.unwrap();
                queued.into_iter().map(|q| q.event.expect("readable")).collect::<Vec<_>>()
            }
        };
        assert!(inbox(10).await.is_empty(), "{backend}");
        let (list, show) = (event("$list", "!foyer list"), event("$show", "!foyer show jazz"));
        let (first, later) = (Utc::now() - Span::minutes(1), Utc::now());
        store.queue_admin_events(&[invite.clone(), list.clone()], first).await.unwrap();
        store.queue_admin_events(&[list.clone(), show.clone()], later).await.unwrap();
        assert_eq!(inbox(10).await, [invite.clone(), list.clone(), show.clone()], "{backend}");
        assert_eq!(inbox(2).await, [invite.clone(), list.clone()], "{backend}: at most 2");
        let arrived: Vec<i64> =
            store.admin_inbox(10).await.unwrap().iter().map(|q| q.received_at.timestamp_millis()).collect();
        let ms = |t: chrono::DateTime<Utc>| t.timestamp_millis();
        assert_eq!(arrived, [ms(first), ms(first), ms(later)], "{backend}: kept once, with its first arrival");
        store.forget_admin_event("$list").await.unwrap();
        store.forget_admin_event("$unknown").await.unwrap();
        assert_eq!(inbox(10).await, [invite, show], "{backend}: the rest, in order");
    })
    .await;
}

#[tokio::test]
async fn direct_chats_are_known_by_room_and_counted_per_user_and_in_all() {
    each_backend(|store, backend| async move {
        let bob = OwnedUserId::try_from("@bob:example.org").unwrap();
        let now = Utc::now();
        let room = |id: &str| OwnedRoomId::try_from(id).unwrap();
        assert_eq!(
            store.direct_chat_counts(&alice()).await.unwrap(),
            store::DirectChatCounts { of_user: 0, open: 0 },
            "{backend}"
        );
        assert_eq!(store.direct_chat_opener(&room("!a1:example.org")).await.unwrap(), None, "{backend}");
        store.direct_chat_active(&room("!a1:example.org"), &alice(), now - Span::minutes(2)).await.unwrap();
        store.direct_chat_active(&room("!a2:example.org"), &alice(), now - Span::minutes(1)).await.unwrap();
        store.direct_chat_active(&room("!b1:example.org"), &bob, now).await.unwrap();
        assert_eq!(
            store.direct_chat_counts(&alice()).await.unwrap(),
            store::DirectChatCounts { of_user: 2, open: 3 },
            "{backend}"
        );
        assert_eq!(
            store.direct_chat_counts(&bob).await.unwrap(),
            store::DirectChatCounts { of_user: 1, open: 3 },
            "{backend}"
        );
        let opener = store.direct_chat_opener(&room("!a2:example.org")).await.unwrap();
        assert_eq!(opener, Some(alice()), "{backend}");
        // The longest idle first, whatever the bound.
        let far = now + Span::days(36_500);
        assert_eq!(store.idle_direct_chats(far, 1).await.unwrap(), [room("!a1:example.org")], "{backend}");
        store.forget_direct_chat(&room("!a1:example.org")).await.unwrap();
        assert_eq!(
            store.direct_chat_counts(&alice()).await.unwrap(),
            store::DirectChatCounts { of_user: 1, open: 2 },
            "{backend}"
        );
        assert_eq!(store.direct_chat_opener(&room("!a1:example.org")).await.unwrap(), None, "{backend}");
    })
    .await;
}

/// The bot's direct chat with a host or moderator: none at first, one a user, a new one
/// in place of the old.
#[tokio::test]
async fn a_staff_chat_is_one_a_user_and_a_new_one_replaces_it() {
    each_backend(|store, backend| async move {
        let room = |id: &str| OwnedRoomId::try_from(id).unwrap();
        let bob = OwnedUserId::try_from("@bob:example.org").unwrap();
        assert_eq!(store.staff_chat(&alice()).await.unwrap(), None, "{backend}");
        store.remember_staff_chat(&alice(), &room("!s1:example.org"), Utc::now()).await.unwrap();
        store.remember_staff_chat(&bob, &room("!s2:example.org"), Utc::now()).await.unwrap();
        assert_eq!(store.staff_chat(&alice()).await.unwrap(), Some(room("!s1:example.org")), "{backend}");
        store.remember_staff_chat(&alice(), &room("!s3:example.org"), Utc::now()).await.unwrap();
        assert_eq!(store.staff_chat(&alice()).await.unwrap(), Some(room("!s3:example.org")), "{backend}");
        assert_eq!(store.staff_chat(&bob).await.unwrap(), Some(room("!s2:example.org")), "{backend}");
    })
    .await;
}

/// Runs one raw statement on the store's database, as a hand edit would.
async fn hand_edit(url: &str, kind: DatabaseKind, sql: &'static str) {
    use sqlx::Connection as _;
    match kind {
        DatabaseKind::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(url).await.expect("open the SQLite file");
            sqlx::query(sql).execute(&mut db).await.expect(sql);
        }
        DatabaseKind::Postgres => {
            let mut db = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
            sqlx::query(sql).execute(&mut db).await.expect(sql);
        }
    }
}

/// A row that does not read back (a hand edit, a bug) is left out of every page and list
/// instead of failing it, and a page is filled up with the rows after it.
/// A SQLite file in `dir` and a fresh PostgreSQL database: each backend's name, URL and kind.
async fn databases(dir: &std::path::Path) -> [(&'static str, String, DatabaseKind); 2] {
    [
        ("sqlite", format!("sqlite://{}", dir.join("foyer.db").display()), DatabaseKind::Sqlite),
        ("postgres", fresh_postgres_database().await, DatabaseKind::Postgres),
    ]
}

/// What `check-config --online` reads in its own read-only connection: the show to
/// come with the most active tickets; not one that has started, is cancelled, whose
/// tickets are revoked, or whose own `chat.auto_join` is local.
#[tokio::test]
async fn the_largest_show_to_come_is_read_by_its_active_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    for (backend, url, kind) in databases(dir.path()).await {
        let config = DatabaseConfig {
            url: Secret::new(url),
            kind,
            max_connections: Some(4),
            acquire_timeout: Duration::from_secs(10),
        };
        let store = store::open(&config, Outbound::write()).await.expect(backend);
        assert_eq!(store::largest_show_to_come(&config, now).await.unwrap(), None, "{backend}: no show");
        // (id, tickets, starts in hours): "started" began an hour ago.
        let shows =
            [("small", 3, 2), ("big", 6, 2), ("started", 9, -1), ("gone", 9, 2), ("revoked", 9, 2), ("joined", 9, 2)];
        for (name, tickets, starts_in) in shows {
            let WebhookEvent::Upsert(mut reservation) = upsert(1) else { unreachable!("upsert is an upsert") };
            reservation.id = ReservationId::parse(name).unwrap();
            reservation.starts_at = now + Span::hours(starts_in);
            if name == "joined" {
                reservation.auto_join = Some(foyer::model::AutoJoin::Local);
            }
            store.record_webhook(&receipt(&format!("u-{name}")), &WebhookEvent::Upsert(reservation)).await.unwrap();
            let tickets = (0..tickets)
                .map(|n| Ticket { id: ticket_id(&format!("t-{n}")), holder: Holder::User(user(&format!("fan{n}"))) })
                .collect();
            let grant = WebhookEvent::TicketsGranted { id: ReservationId::parse(name).unwrap(), tickets };
            store.record_webhook(&receipt(&format!("g-{name}")), &grant).await.unwrap();
        }
        let cancel = WebhookEvent::Cancelled { id: ReservationId::parse("gone").unwrap(), reason: None };
        store.record_webhook(&receipt("c"), &cancel).await.unwrap();
        let ids = (0..5).map(|n| ticket_id(&format!("t-{n}"))).collect();
        let revoke = WebhookEvent::TicketsRevoked { id: ReservationId::parse("revoked").unwrap(), ticket_ids: ids };
        store.record_webhook(&receipt("r"), &revoke).await.unwrap();
        let largest = store::largest_show_to_come(&config, now).await.unwrap();
        assert_eq!(largest, Some((ReservationId::parse("big").unwrap(), 6)), "{backend}");
    }
}

#[tokio::test]
async fn an_unreadable_row_is_left_out_of_pages_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let backends = databases(dir.path()).await;
    let id = |s: &str| ReservationId::parse(s).unwrap();
    let ids = |records: Vec<ReservationRecord>| {
        let mut ids: Vec<String> = records.iter().map(|r| r.reservation.id.as_str().to_owned()).collect();
        ids.sort();
        ids
    };
    for (backend, url, kind) in backends {
        let config = DatabaseConfig {
            url: Secret::new(url.clone()),
            kind,
            max_connections: Some(4),
            acquire_timeout: Duration::from_secs(10),
        };
        let store = store::open(&config, Outbound::write()).await.expect(backend);
        for name in ["a", "b", "c", "d"] {
            let WebhookEvent::Upsert(mut reservation) = upsert(1) else { unreachable!("upsert is an upsert") };
            reservation.id = id(name);
            let webhook_id = format!("w-{name}");
            store.record_webhook(&receipt(&webhook_id), &WebhookEvent::Upsert(reservation)).await.unwrap();
        }
        hand_edit(&url, kind, "UPDATE reservations SET stream_url = 'not a url' WHERE reservation_id = 'b'").await;
        hand_edit(&url, kind, "UPDATE reservations SET title = '' WHERE reservation_id = 'c'").await;

        assert_eq!(ids(store.reservations_after(None, 10, Counts::Counted).await.unwrap()), ["a", "d"], "{backend}");
        // Pages of 2 and 1 are filled past the two unreadable rows, so a short page is
        // still the last one.
        assert_eq!(ids(store.reservations_after(None, 2, Counts::Counted).await.unwrap()), ["a", "d"], "{backend}");
        assert_eq!(ids(store.reservations_after(None, 2, Counts::Zero).await.unwrap()), ["a", "d"], "{backend}");
        assert_eq!(
            ids(store.reservations_after(Some(&id("a")), 1, Counts::Counted).await.unwrap()),
            ["d"],
            "{backend}"
        );
        assert!(store.reservations_after(Some(&id("d")), 2, Counts::Zero).await.unwrap().is_empty(), "{backend}");
        let all = [id("a"), id("b"), id("c"), id("d")];
        assert_eq!(ids(store.reservations_by_id(&all).await.unwrap()), ["a", "d"], "{backend}");
        // Read alone, the reservation still says what is wrong with it.
        let alone = store.reservation(&id("b")).await;
        assert!(matches!(alone, Err(store::StoreError::Corrupt(_))), "{backend}: {alone:?}");
    }
}

#[tokio::test]
async fn status_sessions_live_until_ended_or_expired() {
    each_backend(|store, backend| async move {
        let now = Utc::now();
        let (long, short, later) = (SessionId::random(), SessionId::random(), SessionId::random());
        assert!(!store.status_session_live(&long, now).await.unwrap(), "{backend}: never started");
        store.start_status_session(&long, now, now + Span::hours(12)).await.unwrap();
        store.start_status_session(&short, now, now + Span::hours(1)).await.unwrap();
        assert!(store.status_session_live(&long, now).await.unwrap(), "{backend}");
        assert!(store.status_session_live(&short, now + Span::minutes(59)).await.unwrap(), "{backend}");
        assert!(!store.status_session_live(&short, now + Span::hours(1)).await.unwrap(), "{backend}: expired");

        store.end_status_session(&long).await.unwrap();
        assert!(!store.status_session_live(&long, now).await.unwrap(), "{backend}: ended");
        store.end_status_session(&long).await.unwrap();
        store.end_status_session(&SessionId::random()).await.unwrap();

        // A login two hours on forgets the expired session: gone even for an earlier `now`.
        store.start_status_session(&later, now + Span::hours(2), now + Span::hours(14)).await.unwrap();
        assert!(!store.status_session_live(&short, now).await.unwrap(), "{backend}: pruned");
        assert!(store.status_session_live(&later, now + Span::hours(2)).await.unwrap(), "{backend}");
    })
    .await;
}

#[tokio::test]
async fn email_tickets_are_bound_by_a_claim_once_and_forget_their_address() {
    use foyer::model::{BoundHow, ClaimCode, ClaimKey, ClaimOutcome, DisplayName, Email, EmailClaim};
    let key = ClaimKey::from_secret(b"contract");
    let code = |ticket: &str| ClaimCode::derive(&key, &jazz(), &ExternalId::parse(ticket).unwrap());
    let email_ticket = |ticket: &str, address: &str| Ticket {
        id: ExternalId::parse(ticket).unwrap(),
        holder: Holder::Email {
            claim: EmailClaim::new(&key, &jazz(), &ExternalId::parse(ticket).unwrap(), &Email::parse(address).unwrap()),
            email: Email::parse(address).unwrap(),
            display_name: Some(DisplayName::parse("Fan").unwrap()),
        },
    };
    let user = |name: &str| OwnedUserId::try_from(format!("@{name}:example.org")).unwrap();
    each_backend(|store, backend| {
        let (email_ticket, code, user) = (&email_ticket, &code, &user);
        async move {
            let now = Utc::now();
            let grant = |tickets| WebhookEvent::TicketsGranted { id: jazz(), tickets };
            store.record_webhook(&receipt("r"), &upsert(1)).await.unwrap();
            let first = vec![
                email_ticket("t-1", "fan@example.org"),
                email_ticket("t-2", "other@example.org"),
                Ticket { id: ExternalId::parse("t-3").unwrap(), holder: Holder::User(user("bob")) },
            ];
            store.record_webhook(&receipt("g1"), &grant(first)).await.unwrap();
            let counts = store.reservation(&jazz()).await.unwrap().unwrap().tickets;
            assert_eq!((counts.active, counts.unclaimed, counts.claimed), (3, 2, 0), "{backend}");
            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            assert_eq!(listed[0].state(), "unclaimed", "{backend}");
            assert_eq!(listed[0].email_masked.as_deref(), Some("f***@example.org"), "{backend}");
            let holders = store.lifecycle_state(&jazz()).await.unwrap().audience.holders;
            assert_eq!(holders, [user("bob")].into(), "{backend}");

            let claim = |hash: String, who: &str| {
                let store = store.clone();
                let who = user(who);
                async move { store.claim_ticket(&hash, &who, BoundHow::DirectMessage, None, now).await.unwrap() }
            };
            let t1 = || ClaimOutcome::Claimed { reservation_id: jazz(), ticket_id: ticket_id("t-1") };
            assert_eq!(claim(code("t-1").hash(), "alice").await, t1(), "{backend}");
            let again = ClaimOutcome::AlreadyYours { reservation_id: jazz(), ticket_id: ticket_id("t-1") };
            assert_eq!(claim(code("t-1").hash(), "alice").await, again, "{backend}");
            assert_eq!(claim(code("t-1").hash(), "mallory").await, ClaimOutcome::TakenByOther, "{backend}");
            assert_eq!(claim(code("nope").hash(), "mallory").await, ClaimOutcome::Unusable, "{backend}");
            let elsewhere = ReservationId::parse("rock").unwrap();
            let (hash, eve) = (code("t-2").hash(), user("eve"));
            let knock = store.claim_ticket(&hash, &eve, BoundHow::Knock, Some(&elsewhere), now).await.unwrap();
            assert_eq!(knock, ClaimOutcome::Unusable, "{backend}: another room's knock");

            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            assert_eq!(listed[0].state(), "bound", "{backend}");
            assert_eq!(listed[0].user_id.as_deref(), Some("@alice:example.org"), "{backend}");
            assert_eq!(listed[0].email_masked, None, "{backend}: the address is forgotten once bound");
            assert_eq!(listed[0].bound_how.as_deref(), Some("direct_message"), "{backend}");
            let holders = store.lifecycle_state(&jazz()).await.unwrap().audience.holders;
            assert_eq!(holders, [user("alice"), user("bob")].into(), "{backend}");

            // The platform sending the email ticket again does not unbind it; a user ID
            // corrects an unbound one.
            let again = vec![
                email_ticket("t-1", "fan@example.org"),
                Ticket { id: ExternalId::parse("t-2").unwrap(), holder: Holder::User(user("carol")) },
            ];
            store.record_webhook(&receipt("g2"), &grant(again)).await.unwrap();
            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            assert_eq!(listed[0].user_id.as_deref(), Some("@alice:example.org"), "{backend}");
            assert_eq!(listed[0].email_masked, None, "{backend}");
            assert_eq!(listed[1].user_id.as_deref(), Some("@carol:example.org"), "{backend}");
            assert_eq!(listed[1].bound_how.as_deref(), Some("correction"), "{backend}");
            let counts = store.reservation(&jazz()).await.unwrap().unwrap().tickets;
            assert_eq!((counts.active, counts.unclaimed, counts.claimed), (3, 0, 2), "{backend}");

            // A revoked ticket's code no longer works, even for its holder.
            let revoke =
                WebhookEvent::TicketsRevoked { id: jazz(), ticket_ids: vec![ExternalId::parse("t-2").unwrap()] };
            store.record_webhook(&receipt("v"), &revoke).await.unwrap();
            assert_eq!(claim(code("t-2").hash(), "carol").await, ClaimOutcome::Unusable, "{backend}");

            // Archived: the addresses are forgotten and the codes stop working.
            store.record_webhook(&receipt("g3"), &grant(vec![email_ticket("t-4", "late@example.org")])).await.unwrap();
            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            assert_eq!(listed[3].email_masked.as_deref(), Some("l***@example.org"), "{backend}");
            store.record_step(&jazz(), &StepRecord::Archived, now).await.unwrap();
            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            assert_eq!(listed[3].email_masked, None, "{backend}: the address is forgotten at the archive");
            assert_eq!(claim(code("t-4").hash(), "alice").await, ClaimOutcome::Unusable, "{backend}");
        }
    })
    .await;
}

/// Contract §3 and §7: a grant to another holder moves the ticket, whoever held it and
/// however it was bound; the former holder's code stops working and a new email holder
/// has a new one; the same holder again changes nothing.
#[tokio::test]
async fn a_ticket_moves_to_another_holder_in_every_direction() {
    use foyer::model::{BoundHow, ClaimCode, ClaimKey, ClaimOutcome, Email, EmailClaim};
    let key = ClaimKey::from_secret(b"contract");
    let t = |ticket: &str| ExternalId::parse(ticket).unwrap();
    let to_email = |ticket: &str, address: &str| {
        let email = Email::parse(address).unwrap();
        Ticket {
            id: t(ticket),
            holder: Holder::Email {
                claim: EmailClaim::new(&key, &jazz(), &t(ticket), &email),
                email,
                display_name: None,
            },
        }
    };
    let user = |name: &str| OwnedUserId::try_from(format!("@{name}:example.org")).unwrap();
    let to_user = |ticket: &str, name: &str| Ticket { id: t(ticket), holder: Holder::User(user(name)) };
    // The code the tickets endpoint shows for a ticket now, if any.
    let shown = |store: std::sync::Arc<dyn Store>, ticket: &'static str| {
        let key = key.clone();
        async move {
            let rows = store.tickets(&jazz(), "", 100).await.unwrap();
            let row = rows.into_iter().find(|r| r.ticket_id == ticket).unwrap();
            (row.state() == "unclaimed")
                .then(|| {
                    ClaimCode::of_holder(&key, &jazz(), &t(ticket), row.holder_generation, row.holder_digest.as_ref())
                })
                .flatten()
        }
    };
    each_backend(|store, backend| {
        let (to_email, to_user, user, shown) = (&to_email, &to_user, &user, &shown);
        async move {
            let now = Utc::now();
            let n = std::sync::atomic::AtomicU32::new(0);
            let grant = |tickets: Vec<Ticket>| {
                let (store, id) = (store.clone(), format!("g{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
                async move {
                    let event = WebhookEvent::TicketsGranted { id: jazz(), tickets };
                    store.record_webhook(&receipt(&id), &event).await.unwrap()
                }
            };
            let claim = |code: &ClaimCode, who: &str| {
                let (store, hash, who) = (store.clone(), code.hash(), user(who));
                async move { store.claim_ticket(&hash, &who, BoundHow::DirectMessage, None, now).await.unwrap() }
            };
            let holders = || {
                let store = store.clone();
                async move { store.lifecycle_state(&jazz()).await.unwrap().audience.holders }
            };
            store.record_webhook(&receipt("r"), &upsert(1)).await.unwrap();
            grant(vec![
                to_user("uu", "ann"),
                to_user("ue", "ben"),
                to_email("ee", "a@x.org"),
                to_email("ec", "c@x.org"),
                to_email("eu", "e@x.org"),
            ])
            .await;
            let (ee, ec, eu) = (
                shown(store.clone(), "ee").await.unwrap(),
                shown(store.clone(), "ec").await.unwrap(),
                shown(store.clone(), "eu").await.unwrap(),
            );
            assert!(matches!(claim(&ec, "cid").await, ClaimOutcome::Claimed { .. }), "{backend}");
            assert!(matches!(claim(&eu, "eve").await, ClaimOutcome::Claimed { .. }), "{backend}");
            assert_eq!(holders().await, [user("ann"), user("ben"), user("cid"), user("eve")].into(), "{backend}");

            // The same holders again: nothing changes, every code stays.
            let same = vec![to_user("uu", "ann"), to_email("ee", "a@x.org"), to_email("ec", "c@x.org")];
            assert_eq!(grant(same).await, Outcome::Accepted, "{backend}");
            assert_eq!(shown(store.clone(), "ee").await, Some(ee.clone()), "{backend}: the same code");
            assert_eq!(holders().await, [user("ann"), user("ben"), user("cid"), user("eve")].into(), "{backend}");

            // user→user, user→email, email→email (unclaimed and claimed), email→user.
            grant(vec![
                to_user("uu", "uma"),
                to_email("ue", "b@y.org"),
                to_email("ee", "a2@y.org"),
                to_email("ec", "c2@y.org"),
                to_user("eu", "fay"),
            ])
            .await;
            assert_eq!(
                holders().await,
                [user("uma"), user("fay")].into(),
                "{backend}: the former holders lost their seats"
            );
            for (old, who) in [(&ee, "zed"), (&ec, "cid"), (&eu, "eve")] {
                assert_eq!(claim(old, who).await, ClaimOutcome::Unusable, "{backend}: an old code stops working");
            }
            let (ue2, ee2, ec2) = (
                shown(store.clone(), "ue").await.expect("a new email holder has a code"),
                shown(store.clone(), "ee").await.expect("a new email holder has a code"),
                shown(store.clone(), "ec").await.expect("a new email holder has a code"),
            );
            assert_ne!(ee2, ee, "{backend}");
            assert_ne!(ec2, ec, "{backend}");
            assert_eq!(shown(store.clone(), "eu").await, None, "{backend}: a user's ticket has no code");
            assert!(matches!(claim(&ee2, "ada").await, ClaimOutcome::Claimed { .. }), "{backend}");
            assert!(matches!(claim(&ue2, "bea").await, ClaimOutcome::Claimed { .. }), "{backend}");
            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            let eu_row = listed.iter().find(|r| r.ticket_id == "eu").unwrap();
            assert_eq!(eu_row.bound_how, None, "{backend}: moved from a claimer, not a correction of them");
            let ec_row = listed.iter().find(|r| r.ticket_id == "ec").unwrap();
            assert_eq!((ec_row.user_id.as_deref(), ec_row.state()), (None, "unclaimed"), "{backend}");
            assert_eq!(ec_row.email_masked.as_deref(), Some("c***@y.org"), "{backend}");
            assert_eq!(holders().await, [user("uma"), user("fay"), user("ada"), user("bea")].into(), "{backend}");
            // A moved ticket granted again to its new claimed holder stays theirs.
            grant(vec![to_email("ee", "a2@y.org")]).await;
            assert!(holders().await.contains(&user("ada")), "{backend}");
            // An unbound email ticket given its holder's user ID is a correction; the
            // code is not needed any more.
            grant(vec![to_user("ec", "cy")]).await;
            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            let ec_row = listed.iter().find(|r| r.ticket_id == "ec").unwrap();
            assert_eq!(ec_row.bound_how.as_deref(), Some("correction"), "{backend}");
            assert_eq!(claim(&ec2, "cy").await, ClaimOutcome::Unusable, "{backend}");
        }
    })
    .await;
}

/// Contract §3 and §7: a grant for a reservation archived or cancelled stores nothing
/// and says so; a cancellation erases addresses and stops codes; an orphan ticket's
/// address is erased after a while, the ticket kept.
#[tokio::test]
async fn addresses_and_codes_go_when_their_reservation_does() {
    use foyer::model::{BoundHow, ClaimCode, ClaimKey, ClaimOutcome, Email, EmailClaim};
    let key = ClaimKey::from_secret(b"contract");
    let email_ticket = |reservation: &ReservationId, address: &str| {
        let (email, id) = (Email::parse(address).unwrap(), ExternalId::parse("t-1").unwrap());
        let claim = EmailClaim::new(&key, reservation, &id, &email);
        Ticket { id, holder: Holder::Email { claim, email, display_name: None } }
    };
    let code = |reservation: &ReservationId| ClaimCode::derive(&key, reservation, &ExternalId::parse("t-1").unwrap());
    each_backend(|store, backend| {
        let (email_ticket, code) = (&email_ticket, &code);
        async move {
            let now = Utc::now();
            let grant = |id: ReservationId, address: &str| WebhookEvent::TicketsGranted {
                id: id.clone(),
                tickets: vec![email_ticket(&id, address)],
            };
            let claim = |id: &ReservationId| {
                let (store, hash) = (store.clone(), code(id).hash());
                async move { store.claim_ticket(&hash, &alice(), BoundHow::DirectMessage, None, now).await.unwrap() }
            };
            // Cancelled: the address and the code go, and later grants are closed.
            store.record_webhook(&receipt("r"), &upsert(1)).await.unwrap();
            store.record_webhook(&receipt("g1"), &grant(jazz(), "fan@example.org")).await.unwrap();
            let cancel = WebhookEvent::Cancelled { id: jazz(), reason: None };
            store.record_webhook(&receipt("c"), &cancel).await.unwrap();
            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            assert_eq!(listed[0].email_masked, None, "{backend}: erased at the cancellation");
            assert_eq!(claim(&jazz()).await, ClaimOutcome::Unusable, "{backend}");
            let late = grant(jazz(), "late@example.org");
            assert_eq!(store.record_webhook(&receipt("g2"), &late).await.unwrap(), Outcome::Closed, "{backend}");
            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            assert_eq!((listed.len(), listed[0].email_masked.as_deref()), (1, None), "{backend}: nothing stored");
            assert_eq!(store.lookups_due(now + Span::days(1), 10).await.unwrap(), vec![], "{backend}: no lookup");
            // Not even the receipt: sent again, it is closed again, not a duplicate.
            assert_eq!(store.record_webhook(&receipt("g2"), &late).await.unwrap(), Outcome::Closed, "{backend}");

            // Archived: the same answer.
            let rock = ReservationId::parse("rock").unwrap();
            let WebhookEvent::Upsert(mut r) = upsert(1) else { unreachable!() };
            r.id = rock.clone();
            store.record_webhook(&receipt("rock"), &WebhookEvent::Upsert(r)).await.unwrap();
            store.record_step(&rock, &StepRecord::Archived, now).await.unwrap();
            let late = grant(rock.clone(), "late@example.org");
            assert_eq!(store.record_webhook(&receipt("g3"), &late).await.unwrap(), Outcome::Closed, "{backend}");
            assert_eq!(store.tickets(&rock, "", 10).await.unwrap(), vec![], "{backend}");

            // An orphan: kept until its time, then its address and code go, not the ticket.
            let folk = ReservationId::parse("folk").unwrap();
            let early = grant(folk.clone(), "early@example.org");
            assert_eq!(store.record_webhook(&receipt("g4"), &early).await.unwrap(), Outcome::Accepted, "{backend}");
            let granted = Utc::now();
            assert_eq!(store.forget_orphan_emails(granted - Span::seconds(60)).await.unwrap(), 0, "{backend}");
            assert_eq!(store.forget_orphan_emails(granted + Span::seconds(60)).await.unwrap(), 1, "{backend}");
            let listed = store.tickets(&folk, "", 10).await.unwrap();
            assert_eq!((listed.len(), listed[0].email_masked.as_deref()), (1, None), "{backend}: the ticket stays");
            assert_eq!(claim(&folk).await, ClaimOutcome::Unusable, "{backend}");
            // A reservation's own tickets are not orphans.
            let pop = ReservationId::parse("pop").unwrap();
            let WebhookEvent::Upsert(mut r) = upsert(1) else { unreachable!() };
            r.id = pop.clone();
            store.record_webhook(&receipt("pop"), &WebhookEvent::Upsert(r)).await.unwrap();
            store.record_webhook(&receipt("g5"), &grant(pop, "x@example.org")).await.unwrap();
            assert_eq!(store.forget_orphan_emails(granted + Span::days(30)).await.unwrap(), 0, "{backend}");
        }
    })
    .await;
}

#[tokio::test]
async fn claim_hashes_follow_a_new_key_once() {
    use foyer::model::{BoundHow, ClaimCode, ClaimKey, ClaimOutcome, Email, EmailClaim};
    let (old, new) = (ClaimKey::from_secret(b"old as_token"), ClaimKey::from_secret(b"new as_token"));
    let ticket = ExternalId::parse("t-1").unwrap();
    let old_code = ClaimCode::derive(&old, &jazz(), &ticket);
    let new_code = ClaimCode::derive(&new, &jazz(), &ticket);
    each_backend(|store, backend| {
        let (old, new, ticket, old_code, new_code) = (&old, &new, &ticket, &old_code, &new_code);
        async move {
            let hasher = |key: &ClaimKey| {
                let key = key.clone();
                move |r: &ReservationId, t: &ExternalId, generation: i64, email: Option<&Email>| {
                    let digest = email.map(|e| key.holder_digest(e));
                    let code = ClaimCode::of_holder(&key, r, t, generation, digest.as_ref());
                    store::RenewedClaim { hash: code.map(|c| c.hash()), digest: digest.map(|d| d.as_str().to_owned()) }
                }
            };
            assert_eq!(store.renew_claim_hashes(&old.fingerprint(), &hasher(old)).await.unwrap(), 0, "{backend}");
            let email = Email::parse("fan@example.org").unwrap();
            let holder =
                Holder::Email { claim: EmailClaim::new(old, &jazz(), ticket, &email), email, display_name: None };
            let grant =
                WebhookEvent::TicketsGranted { id: jazz(), tickets: vec![Ticket { id: ticket.clone(), holder }] };
            store.record_webhook(&receipt("g"), &grant).await.unwrap();
            // The same key: nothing to do, and nothing read.
            assert_eq!(store.renew_claim_hashes(&old.fingerprint(), &hasher(old)).await.unwrap(), 0, "{backend}");
            assert_eq!(store.renew_claim_hashes(&new.fingerprint(), &hasher(new)).await.unwrap(), 1, "{backend}");
            assert_eq!(store.renew_claim_hashes(&new.fingerprint(), &hasher(new)).await.unwrap(), 0, "{backend}");
            let claim = |code: &ClaimCode| {
                let (store, hash) = (store.clone(), code.hash());
                async move { store.claim_ticket(&hash, &alice(), BoundHow::DirectMessage, None, Utc::now()).await }
            };
            assert_eq!(claim(old_code).await.unwrap(), ClaimOutcome::Unusable, "{backend}");
            let claimed = ClaimOutcome::Claimed { reservation_id: jazz(), ticket_id: ticket_id("t-1") };
            assert_eq!(claim(new_code).await.unwrap(), claimed, "{backend}");
        }
    })
    .await;
}

#[tokio::test]
async fn email_tickets_are_looked_up_on_arrival_at_the_opening_and_then_at_a_pace() {
    use foyer::model::{ClaimKey, Email, EmailClaim};
    let key = ClaimKey::from_secret(b"contract");
    each_backend(|store, backend| {
        let key = &key;
        async move {
            let t0 = Utc::now();
            let ticket = ExternalId::parse("t-1").unwrap();
            let email = Email::parse("fan@example.org").unwrap();
            let holder =
                Holder::Email { claim: EmailClaim::new(key, &jazz(), &ticket, &email), email, display_name: None };
            store.record_webhook(&receipt("r"), &upsert(1)).await.unwrap();
            let grant = WebhookEvent::TicketsGranted { id: jazz(), tickets: vec![Ticket { id: ticket, holder }] };
            store.record_webhook(&receipt("g"), &grant).await.unwrap();
            let due = |before| {
                let store = store.clone();
                async move {
                    let found = store.lookups_due(before, 10).await.unwrap();
                    found
                        .into_iter()
                        .map(|d| {
                            (
                                d.reservation_id.as_str().to_owned(),
                                d.ticket_id.as_str().to_owned(),
                                d.email.address().to_owned(),
                            )
                        })
                        .collect::<Vec<_>>()
                }
            };
            let fan = vec![("jazz".to_owned(), "t-1".to_owned(), "fan@example.org".to_owned())];
            assert_eq!(due(t0).await, fan, "{backend}: on arrival");
            assert!(!store.looked_up(&jazz(), &ticket_id("t-1"), None, t0).await.unwrap(), "{backend}");
            assert_eq!(due(t0).await, vec![], "{backend}: not again before the room opens");
            let opened = t0 + Span::seconds(60);
            store.record_step(&jazz(), &StepRecord::CreateBegan { by: "me".into() }, opened).await.unwrap();
            let room = StepRecord::RoomCreated {
                room_id: OwnedRoomId::try_from("!room:example.org").unwrap(),
                hosts: Default::default(),
                name: "Jazz".into(),
                topic: String::new(),
            };
            store.record_step(&jazz(), &room, opened).await.unwrap();
            assert_eq!(due(t0).await, fan, "{backend}: when the room opens");
            assert!(!store.looked_up(&jazz(), &ticket_id("t-1"), None, opened).await.unwrap(), "{backend}");
            assert_eq!(due(opened - Span::seconds(1)).await, vec![], "{backend}");
            assert_eq!(due(opened + Span::seconds(1)).await, fan, "{backend}: again at the pace's interval");
            assert!(
                store.looked_up(&jazz(), &ticket_id("t-1"), Some(&alice()), opened).await.unwrap(),
                "{backend}: bound"
            );
            assert_eq!(due(opened + Span::seconds(600)).await, vec![], "{backend}: a bound ticket is never looked up");
            let listed = store.tickets(&jazz(), "", 10).await.unwrap();
            assert_eq!(listed[0].bound_how.as_deref(), Some("lookup"), "{backend}");
            assert_eq!(listed[0].email_masked, None, "{backend}");
        }
    })
    .await;
}

/// An outbound event is written with its fact, in its transaction, and once per fact:
/// a step recorded again (a retry after a crash) adds no second event.
#[tokio::test]
async fn each_fact_writes_its_outbound_event_once() {
    use foyer::{config::ArchiveMode, model::ArchivedTranscript, outbox::OutboundEvent};
    each_backend(|store, backend| async move {
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let room = OwnedRoomId::try_from("!room:example.org").unwrap();
        let alias = ruma::OwnedRoomAliasId::try_from("#live_jazz:example.org").unwrap();
        let created =
            StepRecord::RoomCreated { room_id: room.clone(), hosts: [].into(), name: "J".into(), topic: "t".into() };
        let now = Utc::now();
        let opened = OutboundEvent::room_opened(&jazz(), &room, &alias, now);
        store.record_step_with_event(&jazz(), &created, Some(&opened), now).await.unwrap();
        // Recorded again, with an event made again (a new webhook-id): still one.
        let again = OutboundEvent::room_opened(&jazz(), &room, &alias, now);
        assert_ne!(again.id, opened.id);
        store.record_step_with_event(&jazz(), &created, Some(&again), now).await.unwrap();
        // A step without an event writes none.
        store.record_step(&jazz(), &StepRecord::OpeningNoticeSent, now).await.unwrap();
        let made = ArchivedTranscript::Made { url: "https://foyer.example.org/t".into(), messages: 7 };
        let archived = |at| OutboundEvent::room_archived(&jazz(), Some(&room), ArchiveMode::Kick, &made, at);
        store.record_step_with_event(&jazz(), &StepRecord::Archived, Some(&archived(now)), now).await.unwrap();
        store.record_step_with_event(&jazz(), &StepRecord::Archived, Some(&archived(now)), now).await.unwrap();

        let events = store.outbox_events().await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| (e.reservation_id.as_str(), e.kind.as_str())).collect();
        assert_eq!(kinds, [("jazz", "room.opened"), ("jazz", "room.archived")], "{backend}");
        assert_eq!(events[0].webhook_id, opened.id, "{backend}: the first write's webhook-id is kept");
        let body: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
        assert_eq!(body["type"], "room.opened", "{backend}");
        assert_eq!(body["data"]["room_id"], "!room:example.org", "{backend}");
        assert_eq!(body["data"]["room_alias"], "#live_jazz:example.org", "{backend}");
        assert_eq!(body["data"]["matrix_to"], "https://matrix.to/#/%23live_jazz:example.org", "{backend}");
        let body: serde_json::Value = serde_json::from_str(&events[1].payload).unwrap();
        assert_eq!(body["data"]["mode"], "kick", "{backend}");
        assert_eq!(
            body["data"]["transcript"],
            serde_json::json!({"url": "https://foyer.example.org/t", "messages": 7})
        );
        assert!(store.lifecycle_state(&jazz()).await.unwrap().room.archived, "{backend}: the fact is there too");
    })
    .await;
}

/// Claims of every kind, a holder who cannot be invited, and a reservation failing and
/// recovering each write their event with the fact, once; without a platform, none.
#[tokio::test]
async fn claims_failed_invites_and_failures_write_their_events_once() {
    use foyer::model::{BoundHow, ClaimCode, ClaimKey, Email, EmailClaim};
    use foyer::outbox::OutboundEvent;
    let key = ClaimKey::from_secret(b"contract");
    let code = |ticket: &str| ClaimCode::derive(&key, &jazz(), &ExternalId::parse(ticket).unwrap());
    let email_ticket = |ticket: &str| Ticket {
        id: ExternalId::parse(ticket).unwrap(),
        holder: Holder::Email {
            claim: EmailClaim::new(
                &key,
                &jazz(),
                &ExternalId::parse(ticket).unwrap(),
                &Email::parse(&format!("{ticket}@example.org")).unwrap(),
            ),
            email: Email::parse(&format!("{ticket}@example.org")).unwrap(),
            display_name: None,
        },
    };
    let user = |name: &str| OwnedUserId::try_from(format!("@{name}:example.org")).unwrap();
    let user_ticket =
        |ticket: &str, name: &str| Ticket { id: ExternalId::parse(ticket).unwrap(), holder: Holder::User(user(name)) };
    let scenario = |store: std::sync::Arc<dyn Store>| {
        let (email_ticket, code, user, user_ticket) = (&email_ticket, &code, &user, &user_ticket);
        async move {
            let now = Utc::now();
            let grant = |tickets| WebhookEvent::TicketsGranted { id: jazz(), tickets };
            store.record_webhook(&receipt("r"), &upsert(1)).await.unwrap();
            let tickets =
                vec![email_ticket("dm"), email_ticket("lookup"), email_ticket("fix"), user_ticket("u", "bob")];
            store.record_webhook(&receipt("g1"), &grant(tickets)).await.unwrap();
            // A direct message's claim, twice (the second finds it already yours).
            for _ in 0..2 {
                store.claim_ticket(&code("dm").hash(), &user("ann"), BoundHow::DirectMessage, None, now).await.unwrap();
            }
            store.looked_up(&jazz(), &ticket_id("lookup"), Some(&user("lou")), now).await.unwrap();
            // The platform corrects an email ticket with a user ID, and sends it again.
            for receipt_id in ["g2", "g3"] {
                store.record_webhook(&receipt(receipt_id), &grant(vec![user_ticket("fix", "fay")])).await.unwrap();
            }
            // Bob cannot be invited: twice with one error, then with another.
            for error in ["M_FORBIDDEN: no", "M_FORBIDDEN: no", "M_UNKNOWN: down"] {
                let failure = InviteFailure::after(None, error.into(), now);
                let failed = StepRecord::InviteFailed { user_id: user("bob"), failure };
                store.record_step(&jazz(), &failed, now).await.unwrap();
            }
            // Failing, then recovered; a release by an owner who lost the lease writes nothing.
            let lease = Duration::from_secs(60);
            let claim = store.claim(&jazz(), now, lease, "one").await.unwrap().expect("free");
            let failing = OutboundEvent::reservation_failing(&jazz(), "invite", "boom", 3, now);
            store.release_with_event(&claim, Some(now), Some("boom"), Some(&failing), now).await.unwrap();
            let recovered = OutboundEvent::reservation_recovered(&jazz(), 3, now);
            store.release_with_event(&claim, None, None, Some(&recovered), now).await.unwrap();
            let claim = store.claim(&jazz(), now, lease, "two").await.unwrap().expect("released");
            store.release_with_event(&claim, None, None, Some(&recovered), now).await.unwrap();
            store.outbox_events().await.unwrap()
        }
    };
    each_backend(|store, backend| async move {
        let events = scenario(store).await;
        let data = |i: usize| serde_json::from_str::<serde_json::Value>(&events[i].payload).unwrap()["data"].clone();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "ticket.claimed",
                "ticket.claimed",
                "ticket.claimed",
                "ticket.uninvitable",
                "ticket.uninvitable",
                "reservation.failing",
                "reservation.recovered"
            ],
            "{backend}: {events:?}"
        );
        let claimed: Vec<_> = (0..3)
            .map(|i| (data(i)["ticket_id"].clone(), data(i)["user_id"].clone(), data(i)["how"].clone()))
            .collect();
        let expected = [
            ("dm", "@ann:example.org", "direct_message"),
            ("lookup", "@lou:example.org", "lookup"),
            ("fix", "@fay:example.org", "correction"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(t, u, h)| (serde_json::json!(t), serde_json::json!(u), serde_json::json!(h)))
            .collect();
        assert_eq!(claimed, expected, "{backend}");
        assert_eq!(
            (data(3)["ticket_id"].as_str(), data(3)["error"].as_str()),
            (Some("u"), Some("M_FORBIDDEN: no")),
            "{backend}"
        );
        assert_eq!(data(4)["error"], "M_UNKNOWN: down", "{backend}");
        assert_eq!((data(5)["step"].as_str(), data(5)["attempts"].as_u64()), (Some("invite"), Some(3)), "{backend}");
        assert!(events.iter().all(|e| e.reservation_id == jazz()), "{backend}");
    })
    .await;
    each_backend_with(Outbound::Skip, |store, backend| async move {
        assert_eq!(scenario(store).await, [], "{backend}: no platform, no events");
    })
    .await;
}

/// The sender's leases: the oldest undelivered row of each reservation only, one holder
/// at a time, retried when due, a dropped row no longer in the way, and nothing at all
/// while a `410` has paused delivery.
#[tokio::test]
async fn the_outbox_is_leased_oldest_first_per_reservation() {
    use foyer::{
        config::ArchiveMode,
        outbox::{
            OutboundEvent,
            send::{OutboxClaim, OutboxResult},
        },
    };
    each_backend(|store, backend| async move {
        let t0 = Utc::now();
        let lease = Duration::from_secs(30);
        let blues = ReservationId::parse("blues").unwrap();
        let room = OwnedRoomId::try_from("!room:example.org").unwrap();
        let alias = ruma::OwnedRoomAliasId::try_from("#live_x:example.org").unwrap();
        let write = |id: ReservationId, event: OutboundEvent| {
            let store = store.clone();
            async move { store.record_step_with_event(&id, &StepRecord::OpeningNoticeSent, Some(&event), t0).await }
        };
        write(jazz(), OutboundEvent::room_opened(&jazz(), &room, &alias, t0)).await.unwrap();
        write(blues.clone(), OutboundEvent::room_opened(&blues, &room, &alias, t0)).await.unwrap();
        let unwanted = foyer::model::ArchivedTranscript::NotWanted;
        write(jazz(), OutboundEvent::room_archived(&jazz(), Some(&room), ArchiveMode::Kick, &unwanted, t0))
            .await
            .unwrap();
        let claim = |at, owner: &'static str| {
            let store = store.clone();
            async move { store.claim_outbox(at, lease, 10, owner).await.unwrap() }
        };
        let what = |claims: &[OutboxClaim]| {
            claims.iter().map(|c| format!("{} {} {}", c.reservation_id, c.kind, c.attempts)).collect::<Vec<_>>()
        };

        let first = claim(t0, "a").await;
        assert_eq!(what(&first), ["jazz room.opened 0", "blues room.opened 0"], "{backend}: oldest of each");
        assert!(claim(t0, "b").await.is_empty(), "{backend}: leased rows, and a row behind one, are not claimed");
        let retry = OutboxResult::Retry { at: t0 + Span::seconds(60), error: "HTTP 503".into() };
        let mut stolen = first[0].clone();
        stolen.owner = "b".into();
        assert!(!store.finish_outbox(&stolen, &retry, t0).await.unwrap(), "{backend}: only the holder finishes");
        assert!(store.finish_outbox(&first[0], &retry, t0).await.unwrap(), "{backend}");
        assert!(claim(t0 + Span::seconds(31), "b").await.iter().all(|c| c.reservation_id == "blues"), "{backend}");

        // At t0 + 61 s: jazz's retry is due, and blues's lease (taken again by b) ran out at + 61.
        let second = claim(t0 + Span::seconds(62), "c").await;
        assert_eq!(what(&second), ["jazz room.opened 1", "blues room.opened 0"], "{backend}: same rows again");
        assert_eq!(second[0].event_id, first[0].event_id, "{backend}: the webhook-id is kept");
        let now = t0 + Span::seconds(62);
        let dropped = OutboxResult::Dropped { error: "HTTP 400".into() };
        assert!(store.finish_outbox(&second[0], &dropped, now).await.unwrap(), "{backend}");
        let gone = OutboxResult::Paused { error: "HTTP 410".into() };
        assert!(store.finish_outbox(&second[1], &gone, now).await.unwrap(), "{backend}");
        let status = store.outbox_status().await.unwrap();
        assert!(status.paused, "{backend}");
        assert_eq!(status.depth, 2, "{backend}: jazz's room.archived and blues's paused row");
        assert_eq!(status.oldest.map(|t| t.timestamp_millis()), Some(t0.timestamp_millis()), "{backend}");
        assert!(claim(now + Span::days(2), "c").await.is_empty(), "{backend}: nothing while paused");

        assert!(store.resume_outbox(now).await.unwrap(), "{backend}: it was paused");
        let third = claim(now, "c").await;
        assert_eq!(
            what(&third),
            ["blues room.opened 1", "jazz room.archived 0"],
            "{backend}: a dropped row no longer blocks"
        );
        for c in &third {
            assert!(store.finish_outbox(c, &OutboxResult::Delivered, now).await.unwrap(), "{backend}");
        }
        let status = store.outbox_status().await.unwrap();
        assert_eq!((status.depth, status.oldest, status.paused), (0, None, false), "{backend}");
        assert!(!store.resume_outbox(now).await.unwrap(), "{backend}: resuming what runs changes nothing");
        assert!(claim(now + Span::days(2), "c").await.is_empty(), "{backend}: delivered rows are done");
    })
    .await;
}

/// Instances claiming at once never both hold one row (PostgreSQL's `SKIP LOCKED`;
/// SQLite writes one at a time).
#[tokio::test]
async fn concurrent_outbox_claims_never_share_a_row() {
    use foyer::outbox::OutboundEvent;
    each_backend(|store, backend| async move {
        let now = Utc::now();
        let room = OwnedRoomId::try_from("!room:example.org").unwrap();
        let alias = ruma::OwnedRoomAliasId::try_from("#live_x:example.org").unwrap();
        for i in 0..40 {
            let id = ReservationId::parse(&format!("r{i}")).unwrap();
            let event = OutboundEvent::room_opened(&id, &room, &alias, now);
            store.record_step_with_event(&id, &StepRecord::OpeningNoticeSent, Some(&event), now).await.unwrap();
        }
        let lease = Duration::from_secs(30);
        let claims =
            futures_util::future::join_all(["a", "b", "c", "d"].map(|owner| store.claim_outbox(now, lease, 40, owner)))
                .await;
        let mut seqs: Vec<i64> = claims.into_iter().flat_map(|c| c.unwrap()).map(|c| c.seq).collect();
        let claimed = seqs.len();
        seqs.sort();
        seqs.dedup();
        assert_eq!(seqs.len(), claimed, "{backend}: a row claimed twice");
        assert_eq!(claimed, 40, "{backend}: every row claimed by someone");
    })
    .await;
}

/// A transcript is written a page at a time (edits change their original's line, by its
/// sender only), served only once made, a page at a time in the room's order; made again
/// from the start after a failure; and deleted with its lines after the retention,
/// measured from when it was made (an injected time), as are the lines of a room
/// archived without one.
#[tokio::test]
async fn transcripts_are_written_by_page_served_once_made_and_deleted_after_retention() {
    use foyer::model::{TranscriptEntry, TranscriptLine};
    each_backend(|store, backend| async move {
        let line = |seq: u64, sender: &OwnedUserId, body: &str| {
            TranscriptEntry::Line(TranscriptLine {
                seq,
                event_id: format!("$e{seq}").try_into().unwrap(),
                sender: sender.clone(),
                display_name: seq.is_multiple_of(2).then(|| format!("Name {seq}")),
                sent_at: ms(4_000_000_000_000 + seq as i64),
                body: body.into(),
                notice: sender.as_str() == "@foyer:example.org",
            })
        };
        let edit = |seq: u64, sender: &OwnedUserId, body: &str| TranscriptEntry::Edit {
            event_id: format!("$e{seq}").try_into().unwrap(),
            sender: sender.clone(),
            body: body.into(),
        };
        let (bot, bob) = (user("foyer"), user("bob"));
        store.record_webhook(&receipt("a"), &upsert(1)).await.unwrap();
        let room = OwnedRoomId::try_from("!room:example.org").unwrap();
        let created =
            StepRecord::RoomCreated { room_id: room.clone(), hosts: [].into(), name: "J".into(), topic: "t".into() };
        let made_at = ms(4_100_000_000_000);
        store.record_step(&jazz(), &created, made_at).await.unwrap();
        // A first attempt, cut short: its lines are never served, and a new one starts over.
        store.write_transcript(&jazz(), &[line(0, &alice(), "lost")]).await.unwrap();
        assert_eq!(store.transcript(&jazz()).await.unwrap(), None, "{backend}: not made");
        store.clear_transcript(&jazz()).await.unwrap();
        store
            .write_transcript(&jazz(), &[line(0, &bot, "open"), line(1, &alice(), "helo"), edit(1, &alice(), "hello")])
            .await
            .unwrap();
        // A later page edits a line of an earlier one; an edit by someone else is no edit.
        let page = [line(2, &bob, "hi"), edit(1, &alice(), "hello all"), edit(2, &alice(), "not bob's")];
        store.write_transcript(&jazz(), &page).await.unwrap();
        store.write_transcript(&jazz(), &[]).await.unwrap();
        store.record_step(&jazz(), &StepRecord::TranscriptMade { messages: 3 }, made_at).await.unwrap();
        let made = store.transcript(&jazz()).await.unwrap().expect("made");
        assert_eq!((made.room_id, made.messages, made.made_at), (room, 3, made_at), "{backend}");
        assert!(store.lifecycle_state(&jazz()).await.unwrap().room.transcript_made, "{backend}");
        let first = store.transcript_lines(&jazz(), None, 2, u64::MAX).await.unwrap();
        let rest = store.transcript_lines(&jazz(), Some(first[1].seq), 2, u64::MAX).await.unwrap();
        let all: Vec<_> = first.iter().chain(&rest).map(|l| (l.seq, l.sender.as_str(), l.body.as_str())).collect();
        assert_eq!(
            all,
            [(0, "@foyer:example.org", "open"), (1, "@alice:example.org", "hello all"), (2, "@bob:example.org", "hi")],
            "{backend}"
        );
        assert!(first[0].notice && !first[1].notice, "{backend}: the bot's notice is marked");
        assert_eq!(first[0].display_name.as_deref(), Some("Name 0"), "{backend}");
        assert_eq!(first[1].display_name, None, "{backend}");
        assert_eq!(first[1].sent_at, ms(4_000_000_000_001), "{backend}");
        assert_eq!(first[1].event_id.as_str(), "$e1", "{backend}");
        // A page is bounded in bytes of names and bodies too, and holds at least one line:
        // line 0 is 10 bytes ("Name 0", "open"), 1 is 9 ("hello all"), 2 is 8 ("Name 2", "hi").
        let page = |after: Option<u64>, max_bytes: u64| {
            let store = store.clone();
            async move {
                let lines = store.transcript_lines(&jazz(), after, 10, max_bytes).await.unwrap();
                lines.iter().map(|l| l.seq).collect::<Vec<u64>>()
            }
        };
        assert_eq!(page(None, 19).await, [0, 1], "{backend}");
        assert_eq!(page(None, 18).await, [0], "{backend}");
        assert_eq!(page(None, 1).await, [0], "{backend}: one line longer than a page is a page");
        assert_eq!(page(Some(0), 17).await, [1, 2], "{backend}");
        assert_eq!(page(Some(2), 17).await, Vec::<u64>::new(), "{backend}");
        // Another reservation, archived without its transcript (cut short).
        let folk = ReservationId::parse("folk").unwrap();
        store.record_webhook(&receipt("f"), &upsert_in_channel("folk", "blue-room")).await.unwrap();
        store.write_transcript(&folk, &[line(0, &alice(), "ééé"), line(1, &alice(), "x")]).await.unwrap();
        // Bytes, not characters: line 0 is 12 bytes ("Name 0", "ééé"), 9 characters.
        let folk_page = store.transcript_lines(&folk, None, 10, 12).await.unwrap();
        assert_eq!(folk_page.iter().map(|l| l.seq).collect::<Vec<_>>(), [0], "{backend}");
        store.record_step(&folk, &StepRecord::Archived, made_at).await.unwrap();
        // Retention: kept until made_at, deleted after, lines and all.
        assert_eq!(store.prune_transcripts(made_at).await.unwrap(), 0, "{backend}");
        assert!(store.transcript(&jazz()).await.unwrap().is_some(), "{backend}");
        assert_eq!(store.transcript_lines(&folk, None, 10, u64::MAX).await.unwrap().len(), 2, "{backend}");
        assert_eq!(store.prune_transcripts(made_at + Span::milliseconds(1)).await.unwrap(), 1, "{backend}");
        assert_eq!(store.transcript(&jazz()).await.unwrap(), None, "{backend}");
        assert!(store.transcript_lines(&jazz(), None, 10, u64::MAX).await.unwrap().is_empty(), "{backend}");
        assert!(store.transcript_lines(&folk, None, 10, u64::MAX).await.unwrap().is_empty(), "{backend}");
    })
    .await;
}
