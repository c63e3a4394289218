//! When a reservation's room opens and closes, and which phase it is in: pure functions
//! of the recorded facts, the config and an injected `now`. The read API and the
//! lifecycle both use them, so they never disagree.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::{config::RoomsConfig, model::ReservationRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before `opens_at`.
    Scheduled,
    /// The room is open; the stream is not live yet.
    Open,
    Live,
    /// After the end, before `archives_at`.
    Ended,
    Archived,
    Cancelled,
}

impl Phase {
    pub const ALL: [Phase; 6] = [Self::Scheduled, Self::Open, Self::Live, Self::Ended, Self::Archived, Self::Cancelled];

    /// Every phase's name, comma-separated, for messages that list them.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Open => "open",
            Self::Live => "live",
            Self::Ended => "ended",
            Self::Archived => "archived",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }
}

/// The times that matter for one reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub opens_at: DateTime<Utc>,
    /// The later of `ends_at` and an observed `stream.ended`; while the stream is live,
    /// `ends_at + max_overrun` (the latest it may keep the room).
    pub end: DateTime<Utc>,
    pub archives_at: DateTime<Utc>,
    pub live: bool,
}

fn seconds(s: u32) -> Duration {
    Duration::seconds(i64::from(s))
}

fn duration(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

pub fn schedule(record: &ReservationRecord, rooms: &RoomsConfig) -> Schedule {
    let r = &record.reservation;
    let s = &record.signals;
    let open_before = r.open_before_seconds.map(seconds).unwrap_or_else(|| duration(rooms.open_before));
    let close_after = r.close_after_seconds.map(seconds).unwrap_or_else(|| duration(rooms.close_after));
    let live = match (s.stream_started_at, s.stream_ended_at) {
        (Some(started), Some(ended)) => started > ended,
        (Some(_), None) => true,
        _ => false,
    };
    let end = if live {
        r.ends_at + duration(rooms.max_overrun)
    } else {
        s.stream_ended_at.map_or(r.ends_at, |ended| ended.max(r.ends_at))
    };
    // An admin's `open` or `archive` brings the time forward, never back.
    let opens_at = s.admin_opened_at.map_or(r.starts_at - open_before, |at| at.min(r.starts_at - open_before));
    let archives_at = s.admin_archived_at.map_or(end + close_after, |at| at.min(end + close_after));
    Schedule { opens_at, end, archives_at, live }
}

/// A reservation's phase as the read API, the status page and `!foyer` report it: never
/// an effect that has not happened. `open`, `live` and `ended` need a room that exists,
/// and `archived` the archive step done; while such an effect is due but not done, the
/// phase before it stays and `opening` or `archiving` says what is coming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    /// The room is due to open but does not exist yet.
    pub opening: bool,
    /// The room is due to be archived (or, cancelled, closed) but that is not done yet.
    pub archiving: bool,
}

/// A reservation's times, and its status at `now` as its record tells it.
pub fn at(record: &ReservationRecord, rooms: &RoomsConfig, now: DateTime<Utc>) -> (Schedule, Status) {
    let times = schedule(record, rooms);
    (times, status(record, &times, now))
}

/// The status at `now`: the phase the facts and the clock call for ([`due_phase`]),
/// held back to what has been done in the room.
pub fn status(record: &ReservationRecord, times: &Schedule, now: DateTime<Utc>) -> Status {
    let room = record.room_id.is_some();
    let due = due_phase(record, times, now);
    let (phase, opening, archiving) = match due {
        Phase::Cancelled => (Phase::Cancelled, false, room && !record.archived),
        _ if record.archived => (Phase::Archived, false, false),
        Phase::Archived if room => (before_archive(record, times, now), false, true),
        // A room that never existed has nothing to archive.
        Phase::Archived => (Phase::Archived, false, false),
        Phase::Open | Phase::Live | Phase::Ended if room => (due, false, false),
        Phase::Open | Phase::Live | Phase::Ended => (Phase::Scheduled, should_be_open(record, times, now), false),
        // A room opened before a reschedule moved `opens_at` later stays open.
        Phase::Scheduled => (if room { Phase::Open } else { Phase::Scheduled }, false, false),
    };
    Status { phase, opening, archiving }
}

/// The phase of an existing room past `archives_at` whose archive is not done yet.
fn before_archive(record: &ReservationRecord, times: &Schedule, now: DateTime<Utc>) -> Phase {
    if times.live {
        Phase::Live
    } else if record.signals.stream_ended_at.is_some() || now >= times.end {
        Phase::Ended
    } else {
        Phase::Open
    }
}

/// Whether the room should exist at `now` (before `archives_at`): the stream is live, or
/// the room's window has begun and the stream has not ended. Judged by the end signal's
/// own time, not by when it arrived: a reschedule that comes after the stream's end must
/// lead to the same room as one that came before it.
pub fn should_be_open(record: &ReservationRecord, times: &Schedule, now: DateTime<Utc>) -> bool {
    let ended_before_opening = !times.live && record.signals.stream_ended_at.is_some_and(|e| e < times.opens_at);
    times.live || (now >= times.opens_at && now < times.end && !ended_before_opening)
}

/// The phase the facts and the clock call for at `now`, whatever has been done in the
/// room (see [`status`] for what is reported).
pub fn due_phase(record: &ReservationRecord, schedule: &Schedule, now: DateTime<Utc>) -> Phase {
    let ended_observed = record.signals.stream_ended_at.is_some();
    if record.signals.cancelled_at.is_some() {
        Phase::Cancelled
    } else if now >= schedule.archives_at {
        Phase::Archived
    } else if schedule.live {
        Phase::Live
    } else if now < schedule.opens_at && record.signals.stream_started_at.is_none() {
        // An early start opened the room at once; it stays open after that stream ends.
        Phase::Scheduled
    } else if ended_observed || now >= schedule.end {
        Phase::Ended
    } else {
        Phase::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::Signals,
        test_support::{self, rooms, t},
    };

    fn record(signals: Signals) -> ReservationRecord {
        test_support::record(signals, vec![])
    }

    #[test]
    fn an_admins_open_and_archive_bring_the_times_forward_never_back() {
        let plain = schedule(&record(Signals::default()), &rooms());
        let early = record(Signals {
            admin_opened_at: Some(t(12, 0)),
            admin_archived_at: Some(t(20, 0)),
            ..Default::default()
        });
        let s = schedule(&early, &rooms());
        assert_eq!((s.opens_at, s.archives_at), (t(12, 0), t(20, 0)));
        assert_eq!(due_phase(&early, &s, t(12, 0)), Phase::Open);
        assert_eq!(due_phase(&early, &s, t(20, 0)), Phase::Archived);
        let late = record(Signals {
            admin_opened_at: Some(t(23, 0)),
            admin_archived_at: Some(t(23, 0)),
            ..Default::default()
        });
        let s = schedule(&late, &rooms());
        assert_eq!((s.opens_at, s.archives_at), (plain.opens_at, plain.archives_at));
    }

    #[test]
    fn phases_at_every_boundary_without_stream_signals() {
        let rec = record(Signals::default());
        let s = schedule(&rec, &rooms());
        assert_eq!((s.opens_at, s.end, s.archives_at), (t(18, 30), t(21, 0), t(22, 0)));
        let cases = [
            (t(18, 29), Phase::Scheduled),
            (t(18, 30), Phase::Open),
            (t(20, 59), Phase::Open),
            (t(21, 0), Phase::Ended),
            (t(21, 59), Phase::Ended),
            (t(22, 0), Phase::Archived),
        ];
        for (now, want) in cases {
            assert_eq!(due_phase(&rec, &s, now), want, "at {now}");
        }
    }

    #[test]
    fn overrides_replace_the_config_margins() {
        let mut rec = record(Signals::default());
        rec.reservation.open_before_seconds = Some(900);
        rec.reservation.close_after_seconds = Some(0);
        let s = schedule(&rec, &rooms());
        assert_eq!((s.opens_at, s.archives_at), (t(18, 45), t(21, 0)));
    }

    #[test]
    fn a_live_stream_keeps_the_room_up_to_max_overrun() {
        let rec = record(Signals { stream_started_at: Some(t(19, 1)), ..Default::default() });
        let s = schedule(&rec, &rooms());
        assert!(s.live);
        assert_eq!(s.archives_at, t(21, 0) + Duration::hours(7));
        assert_eq!(due_phase(&rec, &s, t(23, 0)), Phase::Live);
    }

    #[test]
    fn an_observed_end_after_ends_at_moves_the_archive() {
        let rec = record(Signals {
            stream_started_at: Some(t(19, 0)),
            stream_ended_at: Some(t(21, 30)),
            ..Default::default()
        });
        let s = schedule(&rec, &rooms());
        assert_eq!((s.end, s.archives_at, s.live), (t(21, 30), t(22, 30), false));
        assert_eq!(due_phase(&rec, &s, t(21, 45)), Phase::Ended);
        // An early end keeps ends_at as the end, but the phase says ended.
        let early = record(Signals {
            stream_started_at: Some(t(19, 0)),
            stream_ended_at: Some(t(20, 0)),
            ..Default::default()
        });
        let s = schedule(&early, &rooms());
        assert_eq!(s.archives_at, t(22, 0));
        assert_eq!(due_phase(&early, &s, t(20, 30)), Phase::Ended);
    }

    #[test]
    fn a_restart_after_an_end_is_live_again() {
        let rec = record(Signals {
            stream_started_at: Some(t(20, 10)),
            stream_ended_at: Some(t(20, 0)),
            ..Default::default()
        });
        let s = schedule(&rec, &rooms());
        assert!(s.live);
        assert_eq!(due_phase(&rec, &s, t(20, 15)), Phase::Live);
    }

    #[test]
    fn an_early_start_is_live_before_opens_at() {
        let rec = record(Signals { stream_started_at: Some(t(18, 0)), ..Default::default() });
        let s = schedule(&rec, &rooms());
        assert_eq!(due_phase(&rec, &s, t(18, 1)), Phase::Live);
    }

    #[test]
    fn an_early_stream_that_already_ended_leaves_the_room_ended_not_scheduled() {
        let rec = record(Signals {
            stream_started_at: Some(t(17, 0)),
            stream_ended_at: Some(t(17, 10)),
            ..Default::default()
        });
        let s = schedule(&rec, &rooms());
        assert_eq!(due_phase(&rec, &s, t(17, 20)), Phase::Ended);
    }

    #[test]
    fn cancelled_and_archived_win() {
        let rec = record(Signals { cancelled_at: Some(t(12, 0)), ..Default::default() });
        let s = schedule(&rec, &rooms());
        assert_eq!(due_phase(&rec, &s, t(19, 0)), Phase::Cancelled);
    }

    /// A record whose room exists (or not) and was archived (or not).
    fn with_room(mut rec: ReservationRecord, room: bool, archived: bool) -> ReservationRecord {
        rec.room_id = room.then(|| "!room:example.org".to_owned());
        rec.archived = archived;
        rec
    }

    fn status_at(rec: &ReservationRecord, now: DateTime<Utc>) -> (Phase, bool, bool) {
        let Status { phase, opening, archiving } = status(rec, &schedule(rec, &rooms()), now);
        (phase, opening, archiving)
    }

    #[test]
    fn a_phase_never_claims_an_effect_that_has_not_happened() {
        use Phase::*;
        let plain = record(Signals::default());
        // 18:30 opens, 21:00 ends, 22:00 archives.
        let cases = [
            // No room yet: scheduled, opening once due.
            (false, false, t(18, 0), (Scheduled, false, false)),
            (false, false, t(18, 30), (Scheduled, true, false)),
            (false, false, t(21, 30), (Scheduled, false, false)),
            // A room that never existed has nothing to archive.
            (false, false, t(22, 0), (Archived, false, false)),
            // The room exists: the phase by time, until archives_at.
            (true, false, t(18, 30), (Open, false, false)),
            (true, false, t(21, 30), (Ended, false, false)),
            // Past archives_at: ended and archiving, until the archive step is recorded.
            (true, false, t(22, 0), (Ended, false, true)),
            (true, true, t(22, 0), (Archived, false, false)),
            (true, true, t(19, 0), (Archived, false, false)),
        ];
        for (room, archived, now, want) in cases {
            assert_eq!(
                status_at(&with_room(plain.clone(), room, archived), now),
                want,
                "room {room}, archived {archived}, at {now}"
            );
        }
        // An admin's archive of an open room: open and archiving until it is done.
        let early = record(Signals { admin_archived_at: Some(t(19, 0)), ..Default::default() });
        assert_eq!(status_at(&with_room(early.clone(), true, false), t(19, 0)), (Open, false, true));
        assert_eq!(status_at(&with_room(early, true, true), t(19, 0)), (Archived, false, false));
        // Live past max_overrun's archive time but not archived yet: still live.
        let live = record(Signals { stream_started_at: Some(t(19, 1)), ..Default::default() });
        assert_eq!(status_at(&with_room(live, true, false), t(21, 0) + Duration::hours(8)), (Live, false, true));
        // Cancelled: cancelled, and archiving while its room is not archived.
        let cancelled = record(Signals { cancelled_at: Some(t(19, 0)), ..Default::default() });
        assert_eq!(status_at(&with_room(cancelled.clone(), true, false), t(19, 5)), (Cancelled, false, true));
        assert_eq!(status_at(&with_room(cancelled.clone(), true, true), t(19, 5)), (Cancelled, false, false));
        assert_eq!(status_at(&with_room(cancelled, false, false), t(19, 5)), (Cancelled, false, false));
        // A room opened before a reschedule moved opens_at later stays open.
        assert_eq!(status_at(&with_room(plain, true, false), t(12, 0)), (Open, false, false));
    }
}
