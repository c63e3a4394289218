//! Recurring series in the store (docs/series.md), on both backends: an upsert writes
//! each occurrence as a reservation and tells the platform once, a changed series updates
//! the occurrences that have not ended and cancels those taken out (ended ones are left
//! alone), extending as time passes adds each occurrence once however many instances try,
//! `series.cancelled` cancels the rest; a stream key is shared only across windows that
//! do not overlap.

use chrono::{DateTime, TimeZone as _, Utc};
use foyer::{
    http::webhooks::payload::{Rules, parse_typed, stored_series},
    model::{Reservation, ReservationId, SeriesId, SeriesRecord, StreamKey, WebhookEvent},
    store::{Outcome, Receipt, Store, StoreError, Windows},
};
use serde_json::{Value, json};

use super::{each_backend, upsert};

fn day(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2099, 11, d, h, 0, 0).unwrap()
}

const WINDOWS: Windows = Windows { open_before_seconds: 900, close_after_seconds: 1800 };

/// Daily at 20:00 UTC from 25 Nov 2099, an hour long, with a stream key.
fn nightly(revision: u64, title: &str, exdates: &[&str]) -> Value {
    json!({
        "series_id": "nightly", "revision": revision, "rrule": "FREQ=DAILY",
        "dtstart": "2099-11-25T20:00:00", "tzid": "UTC", "duration_seconds": 3600,
        "exdates": exdates, "title": title, "ingest": {"stream_key": "series_key_0123456789"},
    })
}

fn rules() -> Rules {
    Rules { series_horizon: chrono::TimeDelta::days(5), ..Rules::default() }
}

fn event(kind: &str, data: Value, now: DateTime<Utc>) -> WebhookEvent {
    let body = serde_json::to_vec(&json!({"type": kind, "timestamp": now.to_rfc3339(), "data": data})).unwrap();
    parse_typed(&body, now, &rules()).unwrap().1
}

async fn record(store: &dyn Store, id: &str, event: &WebhookEvent, at: DateTime<Utc>) -> Outcome {
    store.record_webhook_within(&Receipt { webhook_id: id, received_at: at }, event, WINDOWS).await.unwrap()
}

/// `(day of November or 30 + day of December, cancelled)` of each stored occurrence.
fn days(series: &SeriesRecord) -> Vec<(String, bool)> {
    series.occurrences.iter().map(|o| (o.id.as_str().replace("nightly.2099", ""), o.cancelled)).collect()
}

fn occurrence(id: &str) -> ReservationId {
    ReservationId::parse(&format!("nightly.2099{id}")).unwrap()
}

/// The occurrences each `series.expanded` in the outbox told of.
async fn told(store: &dyn Store) -> Vec<Vec<String>> {
    let events = store.outbox_events().await.unwrap();
    events
        .iter()
        .filter(|e| e.kind == "series.expanded")
        .map(|e| {
            let body: Value = serde_json::from_str(&e.payload).unwrap();
            assert_eq!(body["data"]["series_id"], "nightly");
            let occurrences = body["data"]["occurrences"].as_array().unwrap();
            occurrences.iter().map(|o| o["reservation_id"].as_str().unwrap().replace("nightly.2099", "")).collect()
        })
        .collect()
}

#[tokio::test]
async fn a_series_expands_changes_extends_and_cancels() {
    each_backend(|store, backend| async move {
        let id = SeriesId::parse("nightly").unwrap();
        assert!(store.series(&id).await.unwrap().is_none(), "{backend}");
        // 27 Nov, 00:00: the 25th and 26th have ended; five within the horizon.
        let first = event("series.upserted", nightly(1, "Nightly", &[]), day(27, 0));
        assert_eq!(record(store.as_ref(), "s1", &first, day(27, 0)).await, Outcome::Accepted, "{backend}");
        let series = store.series(&id).await.unwrap().unwrap();
        let expected = ["1127T2000Z", "1128T2000Z", "1129T2000Z", "1130T2000Z", "1201T2000Z"];
        assert_eq!(days(&series), expected.map(|d| (d.to_owned(), false)), "{backend}");
        assert_eq!(told(store.as_ref()).await, [expected.map(str::to_owned).to_vec()], "{backend}");
        let r = store.reservation(&occurrence("1128T2000Z")).await.unwrap().unwrap();
        assert_eq!((r.reservation.title.as_str(), r.reservation.starts_at), ("Nightly", day(28, 20)), "{backend}");
        // The same delivery again, and an older revision, change nothing.
        assert_eq!(record(store.as_ref(), "s1", &first, day(27, 0)).await, Outcome::Duplicate, "{backend}");

        // 28 Nov, 00:00, revision 2: a new title, the 27th (ended) and the 29th taken out.
        let second = event(
            "series.upserted",
            nightly(2, "Nightly Jazz", &["2099-11-27T20:00:00", "2099-11-29T20:00:00"]),
            day(28, 0),
        );
        assert_eq!(record(store.as_ref(), "s2", &second, day(28, 0)).await, Outcome::Accepted, "{backend}");
        let stale = event("series.upserted", nightly(1, "Old", &[]), day(28, 0));
        assert_eq!(record(store.as_ref(), "s-old", &stale, day(28, 0)).await, Outcome::Stale, "{backend}");
        let series = store.series(&id).await.unwrap().unwrap();
        let cancelled: Vec<_> = days(&series).into_iter().filter(|(_, c)| *c).map(|(d, _)| d).collect();
        assert_eq!(cancelled, ["1129T2000Z"], "{backend}: the ended 27th is left alone");
        assert_eq!(series.occurrences.len(), 6, "{backend}: the horizon reached 2 Dec");
        let r = store.reservation(&occurrence("1128T2000Z")).await.unwrap().unwrap();
        assert_eq!(r.reservation.title.as_str(), "Nightly Jazz", "{backend}");
        let ended = store.reservation(&occurrence("1127T2000Z")).await.unwrap().unwrap();
        assert_eq!((ended.reservation.title.as_str(), ended.signals.cancelled_at), ("Nightly", None), "{backend}");
        assert_eq!(told(store.as_ref()).await.last().unwrap(), &["1202T2000Z"], "{backend}: only what was added");

        // 29 Nov, 00:00: two instances extend at once; 3 Dec is added once, told once.
        let (stored_id, definition) = store.active_series().await.unwrap().pop().unwrap();
        assert_eq!(stored_id, id, "{backend}");
        let again = stored_series(&definition, day(29, 0), &rules()).unwrap();
        let (a, b) = tokio::join!(
            store.extend_series(&again, day(29, 0), WINDOWS),
            store.extend_series(&again, day(29, 0), WINDOWS),
        );
        assert_eq!(a.unwrap() + b.unwrap(), 1, "{backend}");
        assert_eq!(told(store.as_ref()).await.len(), 3, "{backend}");
        assert_eq!(told(store.as_ref()).await.last().unwrap(), &["1203T2000Z"], "{backend}");
        let added = store.reservation(&occurrence("1203T2000Z")).await.unwrap().unwrap();
        assert_eq!(added.reservation.title.as_str(), "Nightly Jazz", "{backend}");
        let cancelled = store.reservation(&occurrence("1129T2000Z")).await.unwrap().unwrap();
        assert!(cancelled.signals.cancelled_at.is_some(), "{backend}: extending does not bring it back");

        // 30 Nov, 20:30: the series is cancelled; the 30th (on air) and later ones go,
        // the 28th (ended) stays.
        let cancel = event("series.cancelled", json!({"series_id": "nightly", "reason": "over"}), day(30, 20));
        let at = day(30, 20) + chrono::TimeDelta::minutes(30);
        assert_eq!(record(store.as_ref(), "s3", &cancel, at).await, Outcome::Accepted, "{backend}");
        let series = store.series(&id).await.unwrap().unwrap();
        assert!(series.cancelled_at.is_some(), "{backend}");
        let open: Vec<_> = days(&series).into_iter().filter(|(_, c)| !*c).map(|(d, _)| d).collect();
        assert_eq!(open, ["1127T2000Z", "1128T2000Z"], "{backend}");
        let r = store.reservation(&occurrence("1130T2000Z")).await.unwrap().unwrap();
        assert_eq!(r.signals.cancel_reason.as_deref(), Some("over"), "{backend}");
        assert!(store.active_series().await.unwrap().is_empty(), "{backend}: nothing more to expand");
        // An extension read before the cancellation and written after it adds nothing
        // (4 and 5 Dec came within the horizon since).
        let read_before = stored_series(&definition, day(30, 21), &rules()).unwrap();
        assert_eq!(store.extend_series(&read_before, day(30, 21), WINDOWS).await.unwrap(), 0, "{backend}");
        assert_eq!(store.series(&id).await.unwrap().unwrap().occurrences.len(), 7, "{backend}");
        // An upsert after the cancellation is kept, and makes nothing.
        let late = event("series.upserted", nightly(3, "Back", &[]), at);
        assert_eq!(record(store.as_ref(), "s4", &late, at).await, Outcome::Accepted, "{backend}");
        assert_eq!(store.series(&id).await.unwrap().unwrap().occurrences.len(), 7, "{backend}");
    })
    .await;
}

/// docs/series.md, "One stream key": a stream key is refused only between active reservations whose windows
/// `[opens_at, archives_at)` overlap; a series' occurrences share theirs.
#[tokio::test]
async fn a_stream_key_is_shared_only_across_windows_that_do_not_overlap() {
    each_backend(|store, backend| async move {
        let first = event("series.upserted", nightly(1, "Nightly", &[]), day(27, 0));
        assert_eq!(record(store.as_ref(), "s1", &first, day(27, 0)).await, Outcome::Accepted, "{backend}");
        let key = StreamKey::parse("series_key_0123456789").unwrap().hash();
        assert_eq!(store.reservations_by_stream_key(&key).await.unwrap().len(), 5, "{backend}");
        // A show with the key: 27 Nov 22:00–23:00 opens at 21:45, while the 20:00 one
        // (archived at 21:30) is over: accepted. One at 21:00 overlaps it: refused.
        let show_on = |id: &str, d: u32, h: u32| {
            let WebhookEvent::Upsert(mut r) = upsert(1) else { unreachable!("upsert is an upsert") };
            *r = Reservation {
                id: ReservationId::parse(id).unwrap(),
                starts_at: day(d, h),
                ends_at: day(d, h) + chrono::TimeDelta::hours(1),
                open_before_seconds: None,
                stream_key: Some(key.clone()),
                ..*r
            };
            WebhookEvent::Upsert(r)
        };
        let show = |id: &str, h: u32| show_on(id, 27, h);
        assert_eq!(record(store.as_ref(), "late", &show("late", 22), day(27, 0)).await, Outcome::Accepted, "{backend}");
        let receipt = Receipt { webhook_id: "early", received_at: day(27, 0) };
        let refused = store.record_webhook_within(&receipt, &show("early", 21), WINDOWS).await;
        match refused {
            Err(StoreError::Refused { path, message }) => {
                assert_eq!(path, "data.ingest.stream_key", "{backend}");
                assert!(message.contains("overlaps"), "{backend}: {message}");
            }
            other => panic!("{backend}: {other:?}"),
        }
        // 28 Nov, 03:00 overlaps nothing under the config's windows; under the widest
        // (no config at hand, 7 days each way) it overlaps every show with the key.
        let night = show_on("night", 28, 3);
        let at = |id| Receipt { webhook_id: id, received_at: day(27, 0) };
        let widest = store.record_webhook(&at("wide"), &night).await;
        assert!(matches!(widest, Err(StoreError::Refused { .. })), "{backend}: {widest:?}");
        let within = store.record_webhook_within(&at("within"), &night, WINDOWS).await;
        assert_eq!(within.ok(), Some(Outcome::Accepted), "{backend}: free under the config's windows");
    })
    .await;
}
