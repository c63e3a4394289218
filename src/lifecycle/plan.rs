//! The planner: what should be true on the homeserver now, and when to look again.
//! Pure: facts, recorded room state, config and `now` in; the work to do now and a due
//! time out.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, OwnedUserId};

use crate::{
    config::RoomsConfig,
    model::{Audience, AutoJoin, CloseReason, KickReason, Membership, ReservationRecord, RoomState, Speech, Step},
    schedule,
};

// The planner compares the topic it words with the applied one.
use crate::words::room::topic;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub work: Work,
    /// When to plan again once `work` is done, if nothing changes before; `None` when
    /// nothing is left to do. After work that decides the next round (opening the room,
    /// ensuring its space) that is `now`.
    pub next_due_at: Option<DateTime<Utc>>,
}

/// What to do now, with what the worker needs to do it: steps in the room come with its
/// id, so the worker never performs one without a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    Nothing,
    /// Create the room with its fixed alias, or adopt the room that holds it; the steps in
    /// it are the next round's.
    Open,
    /// These steps, in this order, in the reservation's room.
    InRoom {
        room: OwnedRoomId,
        steps: Vec<Step>,
    },
}

/// Plans one reservation.
pub fn plan(
    record: Option<&ReservationRecord>, audience: &Audience, room: &RoomState, rooms: &RoomsConfig, now: DateTime<Utc>,
) -> Plan {
    let idle = Plan { work: Work::Nothing, next_due_at: None };
    // Tickets or signals whose reservation has not arrived yet: nothing to do.
    let Some(record) = record else { return idle };
    if room.archived {
        return idle;
    }
    let times = schedule::schedule(record, rooms);
    let in_room = |room_id: &OwnedRoomId, steps: Vec<Step>, next_due_at| {
        let work = if steps.is_empty() { Work::Nothing } else { Work::InRoom { room: room_id.clone(), steps } };
        Plan { work, next_due_at }
    };
    let close = |room_id: &OwnedRoomId, reason| {
        let mut steps = Vec::new();
        if !room.closing_notice_sent {
            steps.push(Step::PostClosingNotice(reason));
        }
        if let Some(linked) = &room.space_linked {
            steps.push(Step::UnlinkSpace(linked.clone()));
        }
        // The transcript comes before the archive, which may kick everyone or delete the
        // room, and after the closing notice, which it holds. A transcript the homeserver
        // cannot give fails its step, retried as any; once `transcript_wait` has passed
        // since it first failed, the room is archived without it. (Counted from the first
        // failure, not from when the archive was due: a Foyer that was down at that time
        // still tries.)
        let waited = chrono::Duration::from_std(rooms.transcript_wait).unwrap_or(chrono::Duration::MAX);
        let given_up = room
            .transcript_failed_at
            .is_some_and(|first| now >= first.checked_add_signed(waited).unwrap_or(DateTime::<Utc>::MAX_UTC));
        if record.reservation.wants_transcript(rooms.transcript) && !room.transcript_made && !given_up {
            steps.push(Step::Transcribe);
        }
        steps.push(Step::Archive);
        in_room(room_id, steps, None)
    };

    if record.signals.cancelled_at.is_some() {
        // A cancelled reservation never opens; an open one closes at once.
        return room.room_id.as_ref().map_or(idle, |r| close(r, CloseReason::Cancelled));
    }
    if now >= times.archives_at {
        return room.room_id.as_ref().map_or(idle, |r| close(r, CloseReason::Ended));
    }

    let Some(room_id) = &room.room_id else {
        if schedule::should_be_open(record, &times, now) {
            return Plan { work: Work::Open, next_due_at: Some(now) };
        }
        // Not yet (or never: the stream ended before the room was due to open).
        let next_due_at = (now < times.opens_at).then_some(times.opens_at);
        return Plan { work: Work::Nothing, next_due_at };
    };

    let mut steps = Vec::new();
    // Hosts and moderators alike: power 50, invited, their guests welcome.
    let staff = record.reservation.staff();
    let hosts: BTreeSet<OwnedUserId> = staff.iter().cloned().collect();
    if room.hosts_applied != hosts {
        steps.push(Step::SetHosts);
    }
    // Who may speak: the mode in force and the timeouts running now (docs/moderation.md).
    // Rules that do not read back leave the room as it is.
    let speech = record.reservation.rules(&rooms.rules).ok();
    let speech = speech.map(|rules| Speech::at(rules.mode, &audience.timeouts, &hosts, now));
    if let Some(speech) = speech.filter(|speech| *speech != room.speech_applied) {
        let ended = |user: &OwnedUserId| {
            audience.timeouts.get(user).filter(|until| **until <= now).map(|until| (user.clone(), *until))
        };
        let lifted = room.speech_applied.silenced.difference(&speech.silenced).filter_map(ended).collect();
        steps.push(Step::SetSpeech { speech, lifted });
    }
    let title = record.reservation.title.as_str();
    if room.name_applied.as_deref() != Some(title) {
        steps.push(Step::SetName(title.to_owned()));
    }
    let desired_topic = topic(record, &times);
    if room.topic_applied.as_deref() != Some(desired_topic.as_str()) {
        steps.push(Step::SetTopic(desired_topic));
    }
    if let Some(channel) = &record.reservation.channel {
        let Some(space) = &room.space else {
            // The steps after this one need the space's id (linking, inviting to it too):
            // they are the next round's.
            steps.push(Step::EnsureSpace(channel.clone()));
            return in_room(room_id, steps, Some(now));
        };
        if room.space_linked.as_ref() != Some(space) {
            steps.push(Step::LinkSpace(space.clone()));
        }
    }
    let stream_url = record.reservation.stream_url.as_ref().map(|u| u.as_str());
    if room.stream_url_applied.as_deref() != stream_url {
        steps.push(Step::SetStreamLink);
    }
    let holders = &audience.holders;
    // With auto_join, local holders are joined by Foyer through the homeserver's admin
    // join, which invites from the doorkeeper first: it is let in before them. Hosts and
    // moderators are invited (they come when they choose), and so is anyone of another
    // server (the admin join is for local users only).
    let auto_join = rooms.admin_join && record.reservation.auto_join(rooms.auto_join) == AutoJoin::Local;
    let doorkeeper_in = room.doorkeeper.as_ref().is_some_and(|keeper| {
        room.members.get(keeper).is_none_or(|m| matches!(m.membership, Membership::Join | Membership::Invite))
    });
    let mut queued = BTreeSet::new();
    let mut invite_retry: Option<DateTime<Utc>> = None;
    for user in staff.iter().chain(holders.iter()) {
        if room.invited.contains(user) {
            continue;
        }
        if let Some(failure) = room.invite_failures.get(user).filter(|f| f.retry_at > now) {
            invite_retry = Some(invite_retry.map_or(failure.retry_at, |t| t.min(failure.retry_at)));
            continue;
        }
        if !queued.insert(user.clone()) {
            continue;
        }
        let joined_by_foyer = auto_join && user.server_name() == rooms.server_name && !hosts.contains(user);
        match (joined_by_foyer, doorkeeper_in) {
            (false, _) => steps.push(Step::Invite(user.clone())),
            (true, true) => steps.push(Step::Join(user.clone())),
            // The joins are the next round's, once the doorkeeper is in.
            (true, false) if !steps.contains(&Step::AdmitDoorkeeper) => steps.push(Step::AdmitDoorkeeper),
            (true, false) => {}
        }
    }
    if !room.opening_notice_sent {
        steps.push(Step::PostOpeningNotice);
    } else if record.reservation.wants_transcript(rooms.transcript) && !room.transcript_notice_sent {
        // Switched on while the room is open: members are told before more is said.
        steps.push(Step::PostTranscriptNotice);
    }
    let signals = &record.signals;
    // A stream down for less than `ingest.reconnect_grace` and up again is the same show
    // going on (a publisher's reconnect): no "ended" notice, and no second "live". A start
    // with no end since the one told of is that start reported again (the platform and
    // its streaming server both report it; the latest is kept), and so is an end with no
    // start since the one told of.
    let grace = chrono::Duration::from_std(rooms.reconnect_grace).unwrap_or_default();
    let mut ended_due = None;
    match (times.live, signals.stream_started_at, signals.stream_ended_at) {
        (true, Some(started), ended) if room.live_notice_for != Some(started) => {
            let resumed = room.live_notice_for.is_some_and(|before| match ended {
                Some(e) if e > before => started - e < grace && room.ended_notice_for != Some(e),
                _ => true,
            });
            if !resumed {
                steps.push(Step::PostLiveNotice(started));
            }
        }
        (false, started, Some(ended))
            if room.ended_notice_for.is_none_or(|before| started.is_some_and(|s| s > before)) =>
        {
            if now >= ended + grace {
                steps.push(Step::PostEndedNotice(ended));
            } else {
                ended_due = Some(ended + grace);
            }
        }
        _ => {}
    }
    let mut next_due_at = invite_retry.map_or(times.archives_at, |t| t.min(times.archives_at));
    if let Some(due) = ended_due {
        next_due_at = next_due_at.min(due);
    }
    // A timeout is lifted when it ends.
    if let Some(ends) = audience.timeouts.values().filter(|until| **until > now).min() {
        next_due_at = next_due_at.min(*ends);
    }
    let starts_at = record.reservation.starts_at;
    if !times.live && signals.stream_ended_at.is_none() {
        for reminder in &rooms.reminders {
            let secs = reminder.as_secs();
            let due = starts_at - chrono::Duration::seconds(secs as i64);
            // A reminder due before the room opened would repeat the opening notice.
            if due < times.opens_at || room.reminders_sent.contains(&secs) || now >= starts_at {
                continue;
            }
            if now >= due {
                steps.push(Step::PostReminder(secs));
            } else {
                next_due_at = next_due_at.min(due);
            }
        }
    }
    if !rooms.closing_warning.is_zero() && !room.closing_warning_sent {
        let due = times.archives_at - chrono::Duration::seconds(rooms.closing_warning.as_secs() as i64);
        if now >= due {
            steps.push(Step::PostClosingWarning);
        } else {
            next_due_at = next_due_at.min(due);
        }
    }
    // The door: knocks are answered; anyone present who may not be is removed. A guest
    // invited by a host may stay, and so may a web fan's user the web chat joined.
    for (user, member) in &room.members {
        let entitled = holders.contains(user)
            || hosts.contains(user)
            || audience.web.contains(user)
            || room.doorkeeper.as_ref() == Some(user);
        match member.membership {
            Membership::Knock if entitled => steps.push(Step::AcceptKnock(user.clone())),
            Membership::Knock => steps.push(Step::Kick(user.clone(), KickReason::KnockRefused)),
            Membership::Join | Membership::Invite => {
                let host_guest = member.invited_by.as_ref().is_some_and(|by| hosts.contains(by));
                if !entitled && !host_guest {
                    let reason =
                        if audience.revoked.contains(user) { KickReason::TicketRevoked } else { KickReason::NoTicket };
                    steps.push(Step::Kick(user.clone(), reason));
                }
            }
            Membership::Leave | Membership::Ban => {}
        }
    }
    in_room(room_id, steps, Some(next_due_at))
}

#[cfg(test)]
mod tests;
