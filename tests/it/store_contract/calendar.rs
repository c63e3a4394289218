//! What calendar feeds read (docs/calendar.md), on both backends: the reschedule count
//! the upsert keeps (a new start or end counts once; a new title, a duplicate or a stale
//! revision never), a channel's reservations in the feed's window, and a holder's, which
//! end once nothing of theirs is active.

use chrono::{DateTime, Duration as Span, Utc};
use foyer::{
    model::{
        Channel, ExternalId, Holder, Reservation, ReservationId, Revision, StepRecord, Ticket, Title, WebhookEvent,
        calendar::{CalendarEntry, FeedWindow},
    },
    store::{Outcome, Receipt, Store},
};

use super::{alice, each_backend, receipt, upsert, user};

/// Reservation `id` in channel `channel` at revision `revision`, from `starts` for an hour.
fn show(id: &str, channel: &str, revision: u64, title: &str, starts: DateTime<Utc>) -> WebhookEvent {
    let WebhookEvent::Upsert(template) = upsert(revision) else { unreachable!("upsert is an upsert") };
    WebhookEvent::Upsert(Box::new(Reservation {
        id: ReservationId::parse(id).unwrap(),
        revision: Some(Revision(revision)),
        title: Title::parse(title).unwrap(),
        starts_at: starts,
        ends_at: starts + Span::hours(1),
        channel: Some(Channel { id: ExternalId::parse(channel).unwrap(), name: Title::parse("Blue Room").unwrap() }),
        ..*template
    }))
}

/// The channel's entry of reservation `id`, read now.
async fn entry(store: &dyn Store, channel: &str, id: &str) -> CalendarEntry {
    let calendar = store.channel_calendar(channel, FeedWindow::at(Utc::now())).await.unwrap().expect("the channel");
    calendar.entries.into_iter().find(|e| e.id.as_str() == id).unwrap_or_else(|| panic!("no {id}"))
}

/// A time to the second, as webhooks give them (the store keeps milliseconds).
fn later(days: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() + days * 86_400, 0).unwrap()
}

#[tokio::test]
async fn a_reschedule_counts_once_and_nothing_else_counts() {
    each_backend(|store, backend| async move {
        let starts = later(10);
        // Each webhook received a second after the one before, so that each stamp tells
        // which webhook made it.
        let t0 = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let at = |n: i64| t0 + Span::seconds(n);
        let record = |webhook: &'static str, event: WebhookEvent| {
            let store = store.clone();
            let n: i64 = webhook[1..].parse().unwrap();
            async move { store.record_webhook(&Receipt { webhook_id: webhook, received_at: at(n) }, &event).await.unwrap() }
        };
        assert_eq!(record("s1", show("jazz", "blue", 1, "Jazz", starts)).await, Outcome::Accepted);
        let first = entry(store.as_ref(), "blue", "jazz").await;
        assert_eq!((first.reschedules, first.cancelled), (0, false), "{backend}");
        // A new title, same times: no reschedule.
        record("s2", show("jazz", "blue", 2, "Jazz night", starts)).await;
        let renamed = entry(store.as_ref(), "blue", "jazz").await;
        assert_eq!((renamed.reschedules, renamed.title.as_str()), (0, "Jazz night"), "{backend}");
        assert_eq!((first.recorded_at, renamed.recorded_at), (at(1), at(2)), "{backend}: stamped by the rename");
        // A new start: one.
        let moved = starts + Span::hours(2);
        record("s3", show("jazz", "blue", 3, "Jazz night", moved)).await;
        assert_eq!(entry(store.as_ref(), "blue", "jazz").await.reschedules, 1, "{backend}");
        // The same webhook again, and an older revision with other times: nothing.
        assert_eq!(record("s3", show("jazz", "blue", 3, "Jazz night", later(20))).await, Outcome::Duplicate);
        assert_eq!(record("s4", show("jazz", "blue", 2, "Jazz night", later(30))).await, Outcome::Stale);
        // The same times at a newer revision: nothing either.
        record("s5", show("jazz", "blue", 4, "Jazz night", moved)).await;
        let kept = entry(store.as_ref(), "blue", "jazz").await;
        assert_eq!((kept.reschedules, kept.starts_at), (1, moved), "{backend}");
        // A new end alone: one more.
        let WebhookEvent::Upsert(mut longer) = show("jazz", "blue", 5, "Jazz night", moved) else { unreachable!() };
        longer.ends_at = moved + Span::hours(3);
        record("s6", WebhookEvent::Upsert(longer)).await;
        assert_eq!(entry(store.as_ref(), "blue", "jazz").await.reschedules, 2, "{backend}");
        // Cancelled: marked, and stamped by the cancellation.
        record("s7", WebhookEvent::Cancelled { id: ReservationId::parse("jazz").unwrap(), reason: None }).await;
        let cancelled = entry(store.as_ref(), "blue", "jazz").await;
        assert!(cancelled.cancelled && cancelled.recorded_at == at(7), "{backend}: {cancelled:?}");
        assert_eq!(cancelled.reschedules, 2, "{backend}");
    })
    .await;
}

#[tokio::test]
async fn a_channel_feed_lists_its_window_earliest_first() {
    each_backend(|store, backend| async move {
        let now = Utc::now();
        let shows = [
            ("long-ago", now - Span::days(120)),
            ("last-month", now - Span::days(30)),
            ("next-week", now + Span::days(7)),
            ("tomorrow", now + Span::days(1)),
        ];
        for (n, (id, starts)) in shows.into_iter().enumerate() {
            store.record_webhook(&receipt(&format!("w{n}")), &show(id, "blue", 1, "Show", starts)).await.unwrap();
        }
        store.record_webhook(&receipt("other"), &show("elsewhere", "red", 1, "Show", now)).await.unwrap();
        let calendar = store.channel_calendar("blue", FeedWindow::at(now)).await.unwrap().expect("blue");
        assert_eq!(calendar.name.as_str(), "Blue Room", "{backend}");
        let ids: Vec<&str> = calendar.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["last-month", "tomorrow", "next-week"], "{backend}");
        let bounded = FeedWindow { limit: 2, ..FeedWindow::at(now) };
        let calendar = store.channel_calendar("blue", bounded).await.unwrap().expect("blue");
        let ids: Vec<&str> = calendar.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["last-month", "tomorrow"], "{backend}: the earliest, under the cap");
        assert_eq!(store.channel_calendar("green", FeedWindow::at(now)).await.unwrap(), None, "{backend}");
    })
    .await;
}

#[tokio::test]
async fn a_holders_feed_lists_their_shows_until_none_is_active() {
    each_backend(|store, backend| async move {
        let now = Utc::now();
        let (bob, window) = (user("bob"), FeedWindow::at(now));
        let grant = |n: &str, id: &str, holder: Holder| WebhookEvent::TicketsGranted {
            id: ReservationId::parse(id).unwrap(),
            tickets: vec![Ticket { id: ExternalId::parse(n).unwrap(), holder }],
        };
        let revoke = |n: &str, id: &str| WebhookEvent::TicketsRevoked {
            id: ReservationId::parse(id).unwrap(),
            ticket_ids: vec![ExternalId::parse(n).unwrap()],
        };
        let cancel = |id: &str| WebhookEvent::Cancelled { id: ReservationId::parse(id).unwrap(), reason: None };
        let events = [
            show("past", "blue", 1, "Past", now - Span::hours(3)),
            show("soon", "blue", 1, "Soon", now + Span::days(1)),
            show("later", "red", 1, "Later", now + Span::days(2)),
            grant("p", "past", Holder::User(alice())),
            grant("s", "soon", Holder::User(alice())),
            grant("l", "later", Holder::User(alice())),
            grant("b", "later", Holder::User(bob.clone())),
        ];
        for (n, event) in events.iter().enumerate() {
            store.record_webhook(&receipt(&format!("h{n}")), event).await.unwrap();
        }
        let ids = |entries: Option<Vec<CalendarEntry>>| {
            entries.map(|e| e.into_iter().map(|e| e.id.as_str().to_owned()).collect::<Vec<_>>())
        };
        let alices = store.holder_calendar(&alice(), window, now).await.unwrap();
        assert_eq!(ids(alices), Some(vec!["past".into(), "soon".into(), "later".into()]), "{backend}");
        assert_eq!(ids(store.holder_calendar(&bob, window, now).await.unwrap()), Some(vec!["later".into()]));
        assert_eq!(store.holder_calendar(&user("carol"), window, now).await.unwrap(), None, "{backend}");

        // Revoked and archived: left out, or no longer active.
        store.record_webhook(&receipt("r1"), &revoke("l", "later")).await.unwrap();
        store.record_step(&ReservationId::parse("past").unwrap(), &StepRecord::Archived, now).await.unwrap();
        let alices = store.holder_calendar(&alice(), window, now).await.unwrap();
        assert_eq!(ids(alices), Some(vec!["past".into(), "soon".into()]), "{backend}: listed while one is active");
        // A cancelled show keeps the feed until it would have started, to tell of it.
        store.record_webhook(&receipt("c1"), &cancel("soon")).await.unwrap();
        let alices = store.holder_calendar(&alice(), window, now).await.unwrap().expect("still active");
        assert!(alices.iter().any(|e| e.id.as_str() == "soon" && e.cancelled), "{backend}: {alices:?}");
        let after_its_start = now + Span::days(1) + Span::minutes(1);
        assert_eq!(store.holder_calendar(&alice(), window, after_its_start).await.unwrap(), None, "{backend}");
        // Bob's last ticket revoked: nothing.
        store.record_webhook(&receipt("r2"), &revoke("b", "later")).await.unwrap();
        assert_eq!(store.holder_calendar(&bob, window, now).await.unwrap(), None, "{backend}");
    })
    .await;
}
