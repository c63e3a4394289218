//! Recurring series on a real Synapse (docs/series.md): each occurrence is a reservation
//! with a room of its own, opened at its own time; the platform hears the ids from
//! `series.expanded` and the read API; an exdate cancels one and archives its room; an
//! override moves one and keeps its id, its tickets and its room.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::claims::{membership, ticket};
use crate::common::{eventually, foyer::TestFoyer, synapse::Synapse, unique};
use crate::lifecycle::created_at;
use crate::outbox::{PLATFORM_SECRET, Receiver, foyer_for};

/// `at` as a wall-clock time in Berlin, as `dtstart` and `exdates` are written.
fn berlin(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono_tz::Europe::Berlin).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Every two minutes from `first`, three times, `lasting` seconds each.
fn every_two_minutes(series_id: &str, revision: u64, first: DateTime<Utc>, lasting: u64, open_before: u64) -> Value {
    json!({
        "series_id": series_id, "revision": revision, "rrule": "FREQ=MINUTELY;INTERVAL=2;COUNT=3",
        "dtstart": berlin(first), "tzid": "Europe/Berlin", "duration_seconds": lasting,
        "title": "Every two minutes", "stream_url": "https://stream.example.org/watch/series",
        "chat": {"open_before_seconds": open_before, "close_after_seconds": 30}
    })
}

/// The id of the occurrence that starts at `at`.
fn occurrence(series_id: &str, at: DateTime<Utc>) -> String {
    format!("{series_id}.{}", at.format("%Y%m%dT%H%MZ"))
}

async fn series_view(foyer: &TestFoyer, series_id: &str) -> Value {
    let path = format!("/api/v1/series/{series_id}");
    let (status, body) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The occurrences told in `series_id`'s `series.expanded` events, each delivery once
/// (a delivery retried after a crash has the same `webhook-id`).
fn told(receiver: &Receiver, series_id: &str) -> Vec<Vec<String>> {
    let mut seen = std::collections::BTreeSet::new();
    receiver
        .attempts()
        .into_iter()
        .filter(|a| a.body["type"] == "series.expanded" && a.body["data"]["series_id"] == series_id)
        .filter(|a| seen.insert(a.id.clone()))
        .map(|a| {
            let occurrences = a.body["data"]["occurrences"].as_array().cloned().unwrap_or_default();
            occurrences.iter().map(|o| o["reservation_id"].as_str().unwrap_or("").to_owned()).collect()
        })
        .collect()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("RFC 3339").with_timezone(&Utc)
}

/// Three occurrences, three reservations, three rooms, each created at its own
/// `opens_at`; the platform hears the three ids once, and the read API lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_opens_each_occurrence_at_its_own_time() {
    let receiver = Receiver::start(|_, _| 204).await;
    let foyer = foyer_for(&receiver, None).await;
    let series_id = unique("every2");
    // The first opens in 5 s (115 s before its start), the others 2 and 4 minutes later.
    let first = Utc::now() + TimeDelta::seconds(120);
    let starts = [0, 2, 4].map(|m| first + TimeDelta::minutes(m));
    let ids = starts.map(|t| occurrence(&series_id, t));
    foyer.accept("series.upserted", every_two_minutes(&series_id, 1, first, 60, 115)).await;

    let told = eventually(Duration::from_secs(30), "series.expanded", || async {
        let attempts = receiver.attempts();
        let mine: Vec<_> = attempts
            .into_iter()
            .filter(|a| a.body["type"] == "series.expanded" && a.body["data"]["series_id"] == series_id.as_str())
            .collect();
        (!mine.is_empty()).then_some(mine)
    })
    .await;
    assert_eq!(told.len(), 1, "told once: {told:?}");
    assert!(told[0].valid, "signed");
    let told_ids: Vec<&str> = told[0].body["data"]["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["reservation_id"].as_str().unwrap())
        .collect();
    assert_eq!(told_ids, ids, "{}", told[0].body);

    let view = series_view(&foyer, &series_id).await;
    let listed: Vec<(&str, DateTime<Utc>, bool)> = view["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["reservation_id"].as_str().unwrap(), time(&o["starts_at"]), o["cancelled"].as_bool().unwrap()))
        .collect();
    let truncated = |t: DateTime<Utc>| DateTime::from_timestamp(t.timestamp(), 0).unwrap();
    let expected: Vec<_> = ids.iter().zip(starts).map(|(id, t)| (id.as_str(), truncated(t), false)).collect();
    assert_eq!(listed, expected, "{view}");

    let mut rooms = Vec::new();
    for id in &ids {
        let room = foyer.room_id(id, Duration::from_secs(300)).await;
        let (_, shown) = foyer.reservation(id).await;
        let opens_at = time(&shown["opens_at"]);
        let created = created_at(&foyer, &room).await;
        let early = (opens_at - created).num_milliseconds();
        let late = (created - opens_at).num_milliseconds();
        assert!(early <= 1000, "{id}: its room was created {early} ms before its opens_at");
        assert!(late <= 15_000, "{id}: its room was created {late} ms after its opens_at");
        rooms.push(room);
    }
    rooms.sort();
    rooms.dedup();
    assert_eq!(rooms.len(), 3, "a room each");
    // Minutes after the first, with every room made, still one series.expanded: the
    // task that looks again found nothing new to tell.
    let again = receiver
        .attempts()
        .into_iter()
        .filter(|a| a.body["type"] == "series.expanded" && a.body["data"]["series_id"] == series_id.as_str())
        .count();
    assert_eq!(again, 1, "told once");
}

/// All three open at once; a ticket is granted to the first; then the series is sent
/// again with the first moved and the second taken out: the first keeps its id, its
/// ticket, its room and its holder; the second is cancelled and its room archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_keeps_its_occurrence_and_an_exdate_cancels_one() {
    let foyer = TestFoyer::start().await;
    let alice = Synapse::shared().create_user("alice").await;
    let series_id = unique("moved");
    let first = Utc::now() + TimeDelta::seconds(60);
    let starts = [0, 2, 4].map(|m| first + TimeDelta::minutes(m));
    let ids = starts.map(|t| occurrence(&series_id, t));
    foyer.accept("series.upserted", every_two_minutes(&series_id, 1, first, 60, 900)).await;
    let room = foyer.room_id(&ids[0], Duration::from_secs(60)).await;
    let second_room = foyer.room_id(&ids[1], Duration::from_secs(60)).await;
    foyer.grant(&ids[0], &[("t-1", &alice.user_id)]).await;
    alice.join_once_invited(&room, Duration::from_secs(30)).await;

    let moved_to = first + TimeDelta::minutes(10);
    let mut changed = every_two_minutes(&series_id, 2, first, 60, 900);
    changed["exdates"] = json!([berlin(starts[1])]);
    changed["overrides"] = json!([{
        "original_start": berlin(first),
        "starts_at": moved_to.to_rfc3339(),
        "ends_at": (moved_to + TimeDelta::minutes(1)).to_rfc3339(),
    }]);
    foyer.accept("series.upserted", changed).await;

    let view = series_view(&foyer, &series_id).await;
    let occurrences = view["occurrences"].as_array().unwrap();
    let listed: Vec<(&str, bool)> = occurrences
        .iter()
        .map(|o| (o["reservation_id"].as_str().unwrap(), o["cancelled"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, [(ids[0].as_str(), false), (ids[1].as_str(), true), (ids[2].as_str(), false)], "{view}");
    assert_eq!(time(&occurrences[0]["starts_at"]).timestamp(), moved_to.timestamp(), "{view}");

    let (_, shown) = foyer.reservation(&ids[0]).await;
    assert_eq!(time(&shown["starts_at"]).timestamp(), moved_to.timestamp(), "{shown}");
    assert_eq!(shown["room_id"], room.as_str(), "the same room");
    assert_eq!(ticket(&foyer, &ids[0], "t-1").await["state"], "bound", "the ticket stays");
    assert_eq!(membership(&foyer, &room, &alice).await.as_deref(), Some("join"), "the holder stays");

    eventually(Duration::from_secs(60), "the taken-out occurrence's room archived", || async {
        let (_, shown) = foyer.reservation(&ids[1]).await;
        (shown["phase"] == "cancelled" && shown.get("archiving").is_none()).then_some(())
    })
    .await;
    let (_, shown) = foyer.reservation(&ids[1]).await;
    assert_eq!(shown["room_id"], second_room.as_str(), "{shown}");
}

/// With a horizon of a minute, a series is made one occurrence at a time as each comes
/// within it, by the task that looks again (every 6 s here), each told once, also by a
/// Foyer killed and started again between two. A broken field is a 400 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_keeps_expanding_as_time_passes_each_once_across_a_restart() {
    let receiver = Receiver::start(|_, _| 204).await;
    let platform = format!("platform:\n  webhook_url: {}\n  webhook_secret: \"{PLATFORM_SECRET}\"\n", receiver.url);
    let mut foyer = TestFoyer::start_with(move |yaml| yaml + &platform + "series:\n  horizon: 1m\n", &[]).await;
    let series_id = unique("later");
    let mut broken = every_two_minutes(&series_id, 1, Utc::now(), 60, 30);
    broken["tzid"] = json!("Mars/Olympus");
    let (status, body) = foyer.send_webhook("series.upserted", broken).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("data.tzid: "), "{body}");
    assert_eq!(
        foyer
            .request(reqwest::Method::GET, &format!("/api/v1/series/{series_id}"), Some(&foyer.slot.api_token), None)
            .await
            .0,
        404
    );

    // The first starts in 30 s, within the horizon; the second and third come within it
    // 90 s and 210 s from now.
    let first = Utc::now() + TimeDelta::seconds(30);
    let ids = [0, 2, 4].map(|m| occurrence(&series_id, first + TimeDelta::minutes(m)));
    foyer.accept("series.upserted", every_two_minutes(&series_id, 1, first, 60, 30)).await;
    let listed = |view: Value| -> Vec<String> {
        view["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["reservation_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(series_view(&foyer, &series_id).await), ids[..1], "only the first is within a minute");
    eventually(Duration::from_secs(150), "the second occurrence", || async {
        (listed(series_view(&foyer, &series_id).await).len() == 2).then_some(())
    })
    .await;
    foyer.kill_and_restart().await;
    eventually(Duration::from_secs(180), "the third occurrence, from the restarted Foyer", || async {
        (listed(series_view(&foyer, &series_id).await) == ids).then_some(())
    })
    .await;
    let all = eventually(Duration::from_secs(60), "the three told", || async {
        let told = told(&receiver, &series_id);
        (told.iter().flatten().count() >= 3).then_some(told)
    })
    .await;
    assert_eq!(all, ids.map(|id| vec![id]), "each told once, in its own series.expanded");
}
