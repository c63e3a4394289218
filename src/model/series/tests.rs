use super::*;
use crate::model::{Archive, RulesOverride, Title};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn local(text: &str) -> NaiveDateTime {
    parse_local(text).unwrap()
}

fn berlin() -> chrono_tz::Tz {
    parse_tzid("Europe/Berlin").unwrap()
}

fn daily(dtstart: &str) -> Recurrence {
    Recurrence::new("FREQ=DAILY", local(dtstart), berlin(), 3600, vec![], vec![]).unwrap()
}

fn id() -> SeriesId {
    SeriesId::parse("jazz-fridays").unwrap()
}

fn starts(expansion: &Expansion) -> Vec<DateTime<Utc>> {
    expansion.occurrences.iter().map(|o| o.starts_at).collect()
}

#[test]
fn twenty_hundred_in_berlin_stays_twenty_hundred_across_the_end_of_dst() {
    // Summer time (UTC+2) ends on 25 Oct 2026 at 03:00 local; then UTC+1.
    let expansion = daily("2026-10-23T20:00:00").expand(&id(), utc("2026-10-23T00:00:00Z"), TimeDelta::days(4));
    assert_eq!(
        starts(&expansion),
        [
            utc("2026-10-23T18:00:00Z"),
            utc("2026-10-24T18:00:00Z"),
            utc("2026-10-25T19:00:00Z"),
            utc("2026-10-26T19:00:00Z")
        ]
    );
    for o in &expansion.occurrences {
        assert_eq!(o.starts_at.with_timezone(&berlin()).format("%H:%M").to_string(), "20:00");
        assert_eq!(o.ends_at - o.starts_at, TimeDelta::hours(1));
    }
    let ids: Vec<_> = expansion.occurrences.iter().map(|o| o.id.as_str().to_owned()).collect();
    assert_eq!(ids[2], "jazz-fridays.20261025T1900Z");
    assert_eq!(expansion.complete_until, utc("2026-10-27T00:00:00Z"));
}

#[test]
fn a_time_in_the_spring_gap_moves_forward_by_the_gap() {
    // 29 Mar 2026: 02:00 local jumps to 03:00, so 02:30 does not exist.
    let expansion = daily("2026-03-28T02:30:00").expand(&id(), utc("2026-03-27T00:00:00Z"), TimeDelta::days(4));
    assert_eq!(
        starts(&expansion),
        [utc("2026-03-28T01:30:00Z"), utc("2026-03-29T01:30:00Z"), utc("2026-03-30T00:30:00Z")]
    );
    let moved = expansion.occurrences[1].starts_at.with_timezone(&berlin());
    assert_eq!(moved.format("%H:%M %z").to_string(), "03:30 +0200");
}

#[test]
fn a_repeated_hour_takes_its_first_instant() {
    // 25 Oct 2026: 02:30 local happens at 00:30Z (summer time) and again at 01:30Z.
    assert_eq!(place(local("2026-10-25T02:30:00"), berlin()), utc("2026-10-25T00:30:00Z"));
    let expansion = daily("2026-10-25T02:30:00").expand(&id(), utc("2026-10-24T00:00:00Z"), TimeDelta::days(2));
    assert_eq!(starts(&expansion), [utc("2026-10-25T00:30:00Z")]);
}

#[test]
fn the_horizon_and_the_bounds_hold() {
    let now = utc("2026-12-01T12:00:00Z");
    // Daily from a week ago, a horizon of 10 days: past ones left out, 10 ahead.
    let expansion = daily("2026-11-24T20:00:00").expand(&id(), now, TimeDelta::days(10));
    assert_eq!(expansion.occurrences.len(), 10);
    assert_eq!(expansion.occurrences[0].starts_at, utc("2026-12-01T19:00:00Z"));
    assert!(expansion.occurrences.iter().all(|o| o.original_start <= now + TimeDelta::days(10)));
    // Every minute for 60 days: only the first 100, and what is known ends at the 100th.
    let minutely =
        Recurrence::new("FREQ=MINUTELY", local("2026-12-01T13:00:00"), berlin(), 60, vec![], vec![]).unwrap();
    let expansion = minutely.expand(&id(), now, TimeDelta::days(60));
    assert_eq!(expansion.occurrences.len(), MAX_OCCURRENCES);
    assert_eq!(expansion.complete_until, expansion.occurrences[99].original_start);
    // Every second since a month ago: bounded in its steps, however far behind.
    let secondly = Recurrence::new("FREQ=SECONDLY", local("2026-11-01T00:00:00"), berlin(), 1, vec![], vec![]).unwrap();
    let expansion = secondly.expand(&id(), now, TimeDelta::days(60));
    assert!(expansion.occurrences.is_empty());
    assert!(expansion.complete_until < now);
    // A COUNT that runs out: nothing later will come.
    let three =
        Recurrence::new("FREQ=DAILY;COUNT=3", local("2026-12-02T20:00:00"), berlin(), 60, vec![], vec![]).unwrap();
    let expansion = three.expand(&id(), now, TimeDelta::days(60));
    assert_eq!(expansion.occurrences.len(), 3);
    assert_eq!(expansion.complete_until, DateTime::<Utc>::MAX_UTC);
}

#[test]
fn an_exdate_drops_its_occurrence_and_an_override_keeps_its_id() {
    let now = utc("2026-12-01T12:00:00Z");
    let moved =
        Override::new(local("2026-12-03T20:00:00"), utc("2026-12-03T21:00:00Z"), utc("2026-12-03T23:00:00Z")).unwrap();
    let recurrence = Recurrence::new(
        "FREQ=DAILY;COUNT=4",
        local("2026-12-01T20:00:00"),
        berlin(),
        3600,
        vec![local("2026-12-02T20:00:00")],
        vec![moved],
    )
    .unwrap();
    let expansion = recurrence.expand(&id(), now, TimeDelta::days(60));
    let got: Vec<_> = expansion.occurrences.iter().map(|o| (o.id.as_str(), o.starts_at, o.moved)).collect();
    assert_eq!(
        got,
        [
            ("jazz-fridays.20261201T1900Z", utc("2026-12-01T19:00:00Z"), false),
            ("jazz-fridays.20261203T1900Z", utc("2026-12-03T21:00:00Z"), true),
            ("jazz-fridays.20261204T1900Z", utc("2026-12-04T19:00:00Z"), false),
        ]
    );
    assert_eq!(expansion.occurrences[1].ends_at, utc("2026-12-03T23:00:00Z"));
}

#[test]
fn occurrences_are_reservations_of_the_template() {
    let template = Reservation {
        id: id().as_reservation_id().clone(),
        revision: None,
        title: Title::parse("Jazz").unwrap(),
        description: None,
        starts_at: utc("2026-12-01T19:00:00Z"),
        ends_at: utc("2026-12-01T20:00:00Z"),
        stream_url: None,
        channel: None,
        hosts: vec![],
        open_before_seconds: Some(60),
        close_after_seconds: None,
        transcript: None,
        stream_key: None,
        rules: RulesOverride::default(),
        moderators: vec![],
        archive: Archive::default(),
        replay_offset: None,
        auto_join: None,
        access: Default::default(),
    };
    let series = Series { id: id(), revision: None, recurrence: daily("2026-12-01T20:00:00"), template };
    let expansion = series.recurrence.expand(&series.id, utc("2026-12-02T00:00:00Z"), TimeDelta::days(1));
    let r = series.reservation(&expansion.occurrences[0]);
    assert_eq!(r.id.as_str(), "jazz-fridays.20261202T1900Z");
    assert_eq!((r.starts_at, r.ends_at), (utc("2026-12-02T19:00:00Z"), utc("2026-12-02T20:00:00Z")));
    assert_eq!((r.title.as_str(), r.open_before_seconds), ("Jazz", Some(60)));
}

#[test]
fn bad_values_are_refused_with_their_field() {
    let bad = |rrule: &str, duration| {
        Recurrence::new(rrule, local("2026-12-01T20:00:00"), berlin(), duration, vec![], vec![])
    };
    assert_eq!(bad("FREQ=FORTNIGHTLY", 60).unwrap_err().field, "rrule");
    assert_eq!(bad("RRULE:FREQ=DAILY", 60).unwrap_err().field, "rrule");
    assert_eq!(bad("FREQ=DAILY", 0).unwrap_err().field, "duration_seconds");
    assert_eq!(bad("FREQ=DAILY", 7 * 24 * 3600 + 1).unwrap_err().field, "duration_seconds");
    assert!(parse_tzid("Mars/Olympus").unwrap_err().contains("IANA"));
    assert!(parse_local("2026-12-01T20:00:00Z").is_err());
    assert!(SeriesId::parse(&"s".repeat(113)).is_ok());
    assert!(SeriesId::parse(&"s".repeat(114)).unwrap_err().contains("adds 15"));
    assert!(SeriesId::parse("a/b").is_err());
    let longest = SeriesId::parse(&"s".repeat(113)).unwrap();
    assert_eq!(longest.occurrence_id(utc("2026-12-01T19:00:00Z")).as_str().len(), 128);
}
