//! What is announced of a reservation in its channel's announcements room (docs/followers.md),
//! each once: reminders at `rooms.reminders` before the start, "moved to …" when a
//! reminded show is rescheduled, "cancelled" when a reminded show is, "live now", and the
//! room's link when it is open to the channel or to anyone. Pure, like the planner.

use chrono::{DateTime, Utc};

use crate::{
    config::RoomsConfig,
    model::{Access, Announcement, ReservationRecord, RoomState},
    schedule,
};

/// The announcements due now, in order, and when to look again.
pub fn announcements(
    record: &ReservationRecord, room: &RoomState, rooms: &RoomsConfig, now: DateTime<Utc>,
) -> (Vec<Announcement>, Option<DateTime<Utc>>) {
    // Only a channel has followers to tell.
    if record.reservation.channel.is_none() {
        return (Vec::new(), None);
    }
    let posted = |a: &Announcement| room.announced.contains(&a.key());
    let reminded: Vec<i64> = room.announced.iter().filter_map(|key| Announcement::reminded_start(key)).collect();
    let mut due = Vec::new();
    if record.signals.cancelled_at.is_some() {
        // Those who were reminded hear it is off; nobody else needs to.
        if !reminded.is_empty() && !posted(&Announcement::Cancelled) {
            due.push(Announcement::Cancelled);
        }
        return (due, None);
    }
    if room.archived {
        return (due, None);
    }
    let starts_at = record.reservation.starts_at;
    let times = schedule::schedule(record, rooms);
    let mut next: Option<DateTime<Utc>> = None;
    let moved = Announcement::Moved { to: starts_at };
    if now < starts_at && reminded.iter().any(|&at| at != starts_at.timestamp()) && !posted(&moved) {
        due.push(moved);
    }
    if now < starts_at && record.signals.stream_started_at.is_none() {
        // Farthest first, so that after a pause the reminders still come in their order.
        let mut before: Vec<u64> = rooms.reminders.iter().map(|d| d.as_secs()).collect();
        before.sort_unstable_by(|a, b| b.cmp(a));
        before.dedup();
        for before_secs in before {
            let at = starts_at - chrono::Duration::seconds(before_secs as i64);
            let reminder = Announcement::Reminder { before_secs, starts_at };
            // A reminder whose time had passed when the reservation arrived is skipped.
            if posted(&reminder) || record.signals.first_seen_at.is_some_and(|seen| at < seen) {
                continue;
            }
            if now >= at {
                due.push(reminder);
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
    }
    if times.live && !posted(&Announcement::Live) {
        due.push(Announcement::Live);
    }
    if record.reservation.access != Access::Tickets && room.room_id.is_some() && !posted(&Announcement::Open) {
        due.push(Announcement::Open);
    }
    (due, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Signals, StepRecord},
        test_support::{record, rooms, t},
    };

    /// Reminders 24 h and 15 min before; the reservation (19:00) arrived the day before.
    fn config() -> RoomsConfig {
        let minutes = |m: u64| std::time::Duration::from_secs(m * 60);
        RoomsConfig { reminders: vec![minutes(24 * 60), minutes(15)], ..rooms() }
    }

    fn arrived(at: DateTime<Utc>) -> ReservationRecord {
        let mut rec = record(Signals { first_seen_at: Some(at), ..Signals::default() }, vec![]);
        rec.reservation.channel = Some(crate::model::Channel {
            id: crate::model::ExternalId::parse("blue-room").unwrap(),
            name: crate::model::Title::parse("The Blue Room").unwrap(),
        });
        rec
    }

    fn post(room: &mut RoomState, due: &[Announcement]) {
        for a in due {
            room.apply(&StepRecord::Announced(a.key()));
        }
    }

    #[test]
    fn each_reminder_goes_once_at_its_time_and_one_past_at_arrival_is_skipped() {
        let day_before = t(19, 0) - chrono::Duration::days(1);
        let rec = arrived(day_before - chrono::Duration::hours(1));
        let mut room = RoomState::default();
        let (due, next) = announcements(&rec, &room, &config(), day_before - chrono::Duration::minutes(1));
        assert_eq!((due, next), (vec![], Some(day_before)));
        let (due, next) = announcements(&rec, &room, &config(), day_before);
        assert_eq!(due, vec![Announcement::Reminder { before_secs: 86_400, starts_at: t(19, 0) }]);
        assert_eq!(next, Some(t(18, 45)));
        post(&mut room, &due);
        assert_eq!(announcements(&rec, &room, &config(), day_before).0, vec![]);
        let (due, next) = announcements(&rec, &room, &config(), t(18, 45));
        assert_eq!((due.len(), next), (1, None));
        // Arriving an hour before the start: only the 15-minute reminder is to come.
        let late = arrived(t(18, 0));
        assert_eq!(announcements(&late, &RoomState::default(), &config(), t(18, 1)), (vec![], Some(t(18, 45))));
    }

    #[test]
    fn a_reminded_show_that_moves_says_so_and_reminds_at_its_new_time_only() {
        let mut rec = arrived(t(9, 0));
        let mut room = RoomState::default();
        let (due, _) = announcements(&rec, &room, &config(), t(18, 45));
        post(&mut room, &due);
        rec.reservation.starts_at = t(20, 0);
        rec.reservation.ends_at = t(22, 0);
        let (due, next) = announcements(&rec, &room, &config(), t(18, 50));
        assert_eq!(due, vec![Announcement::Moved { to: t(20, 0) }]);
        assert_eq!(next, Some(t(19, 45)));
        post(&mut room, &due);
        assert_eq!(announcements(&rec, &room, &config(), t(18, 51)).0, vec![]);
        // Cancelled: one line, as someone was reminded.
        rec.signals.cancelled_at = Some(t(19, 0));
        let (due, _) = announcements(&rec, &room, &config(), t(19, 1));
        assert_eq!(due, vec![Announcement::Cancelled]);
        post(&mut room, &due);
        assert_eq!(announcements(&rec, &room, &config(), t(19, 2)), (vec![], None));
        // A show nobody was reminded of is cancelled without a word.
        let mut quiet = arrived(t(9, 0));
        quiet.signals.cancelled_at = Some(t(10, 0));
        assert_eq!(announcements(&quiet, &RoomState::default(), &config(), t(10, 1)), (vec![], None));
    }

    #[test]
    fn live_is_told_once_and_an_open_rooms_link_once_it_exists() {
        let mut rec = arrived(t(9, 0));
        rec.signals.stream_started_at = Some(t(19, 2));
        rec.reservation.access = Access::Public;
        let mut room = RoomState::default();
        assert_eq!(announcements(&rec, &room, &config(), t(19, 3)).0, vec![Announcement::Live]);
        room.room_id = Some("!room:example.org".try_into().unwrap());
        let (due, _) = announcements(&rec, &room, &config(), t(19, 3));
        assert_eq!(due, vec![Announcement::Live, Announcement::Open]);
        post(&mut room, &due);
        assert_eq!(announcements(&rec, &room, &config(), t(19, 4)).0, vec![]);
    }
}
