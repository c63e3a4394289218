//! The planner's tests: what [`plan`](super::plan) decides for each kind of recorded state,
//! and properties that hold for any.

use chrono::Duration;
use proptest::prelude::*;

use ruma::OwnedRoomId;

use super::*;
use crate::{
    model::{InviteFailure, Member, Signals, StepRecord},
    test_support::{self, rooms, t, user},
};

/// The door: who is kicked, who is invited again, which knocks are answered.
mod door;
/// Doors open at scale: holders joined by Foyer, the doorkeeper.
mod doors;
/// Who may speak: modes and timeouts.
mod speech;

fn room_id() -> OwnedRoomId {
    OwnedRoomId::try_from("!room:example.org").unwrap()
}

/// 19:00–21:00, opens 18:30, archived 22:00; host @dj.
fn record(signals: Signals) -> ReservationRecord {
    test_support::record(signals, vec![user("dj")])
}

fn holders(names: &[&str]) -> Audience {
    Audience { holders: names.iter().map(|n| user(n)).collect(), ..Audience::default() }
}

fn bot() -> OwnedUserId {
    user("foyer")
}

/// The user of `synapse_admin.token`.
fn doorkeeper() -> OwnedUserId {
    user("keeper")
}

fn member(membership: Membership, invited_by: Option<&str>) -> Member {
    Member { membership, invited_by: invited_by.map(user) }
}

fn space() -> OwnedRoomId {
    OwnedRoomId::try_from("!space:example.org").unwrap()
}

fn in_room(steps: Vec<Step>) -> Work {
    Work::InRoom { room: room_id(), steps }
}

/// The steps planned in the room, none when there is nothing to do.
fn steps(plan: &Plan) -> Vec<Step> {
    match &plan.work {
        Work::InRoom { steps, .. } => steps.clone(),
        Work::Nothing => vec![],
        Work::Open => panic!("no steps: the room is to be opened first"),
    }
}

/// The records the success of `work` is recorded with, as `perform` makes them (the
/// room and the space it creates being [`room_id`] and [`space`]).
fn records(work: &Work, rec: &ReservationRecord, config: &RoomsConfig) -> Vec<StepRecord> {
    let hosts: BTreeSet<_> = rec.reservation.hosts.iter().cloned().collect();
    let steps = match work {
        Work::Nothing => return vec![],
        Work::Open => {
            let (name, topic) =
                (rec.reservation.title.as_str().to_owned(), topic(rec, &schedule::schedule(rec, &rooms())));
            let created = StepRecord::RoomCreated { room_id: room_id(), hosts, name, topic };
            return vec![StepRecord::CreateBegan { by: "test".into() }, created];
        }
        Work::InRoom { steps, .. } => steps,
    };
    let one = |step: &Step| match step {
        Step::SetHosts => StepRecord::HostsApplied(hosts.clone()),
        Step::SetSpeech { speech, .. } => StepRecord::SpeechApplied(speech.clone()),
        Step::SetName(name) => StepRecord::NameSet(name.clone()),
        Step::SetTopic(topic) => StepRecord::TopicSet(topic.clone()),
        Step::SetStreamLink => {
            StepRecord::StreamLinkSet(rec.reservation.stream_url.as_ref().map(|u| u.as_str().to_owned()))
        }
        Step::EnsureSpace(channel) => StepRecord::SpaceEnsured {
            channel_id: channel.id.as_str().to_owned(),
            space: space(),
            name: channel.name.as_str().to_owned(),
        },
        Step::LinkSpace(space) => StepRecord::SpaceLinked(Some(space.clone())),
        Step::UnlinkSpace(_) => StepRecord::SpaceLinked(None),
        Step::Invite(user) | Step::Join(user) => StepRecord::Invited { user_id: user.clone() },
        Step::AdmitDoorkeeper => StepRecord::DoorkeeperAdmitted { user_id: doorkeeper() },
        Step::AcceptKnock(user) => {
            StepRecord::Member { user_id: user.clone(), membership: Membership::Invite, invited_by: Some(bot()) }
        }
        Step::Kick(user, _) => {
            StepRecord::Member { user_id: user.clone(), membership: Membership::Leave, invited_by: None }
        }
        Step::PostOpeningNotice => StepRecord::OpeningNoticeSent,
        Step::PostTranscriptNotice => StepRecord::TranscriptNoticeSent,
        Step::PostLiveNotice(at) => StepRecord::LiveNoticeSent(*at),
        Step::PostEndedNotice(at) => StepRecord::EndedNoticeSent(*at),
        Step::PostReminder(secs) => StepRecord::ReminderSent(*secs),
        Step::PostClosingWarning => StepRecord::ClosingWarningSent,
        Step::PostClosingNotice(_) => StepRecord::ClosingNoticeSent,
        Step::Transcribe => StepRecord::TranscriptMade { messages: 3 },
        Step::Archive => StepRecord::Archived,
    };
    // The second record some steps' success is kept with.
    let also = |step: &Step| match step {
        Step::Kick(user, _) => Some(StepRecord::InviteForgotten { user_id: user.clone() }),
        Step::Join(user) => Some(StepRecord::Member {
            user_id: user.clone(),
            membership: Membership::Join,
            invited_by: Some(doorkeeper()),
        }),
        Step::PostOpeningNotice if rec.reservation.wants_transcript(config.transcript) => {
            Some(StepRecord::TranscriptNoticeSent)
        }
        _ => None,
    };
    steps.iter().flat_map(|step| std::iter::once(one(step)).chain(also(step))).collect()
}

/// Records the success of `work` in `room`, planned with [`rooms`].
fn apply(room: &mut RoomState, work: &Work, rec: &ReservationRecord) {
    apply_with(room, work, rec, &rooms());
}

/// Records the success of `work` in `room`, planned with `config`.
fn apply_with(room: &mut RoomState, work: &Work, rec: &ReservationRecord, config: &RoomsConfig) {
    for done in records(work, rec, config) {
        room.apply(&done);
    }
}

fn opened(invited: &[&str]) -> RoomState {
    RoomState {
        room_id: Some(room_id()),
        invited: invited.iter().map(|n| user(n)).collect(),
        opening_notice_sent: true,
        hosts_applied: [user("dj")].into(),
        name_applied: Some("Jazz".into()),
        topic_applied: Some("Starts Fri 27 Nov 2026, 19:00 UTC".into()),
        ..Default::default()
    }
}

#[test]
fn nothing_before_opens_at_then_everything_at_once() {
    let rec = record(Signals::default());
    let before = plan(Some(&rec), &holders(&["alice"]), &RoomState::default(), &rooms(), t(18, 29));
    assert_eq!(before, Plan { work: Work::Nothing, next_due_at: Some(t(18, 30)) });
    let (audience, mut room) = (holders(&["alice", "dj"]), RoomState::default());
    let at = plan(Some(&rec), &audience, &room, &rooms(), t(18, 30));
    assert_eq!(at.work, Work::Open);
    apply(&mut room, &at.work, &rec);
    let then = plan(Some(&rec), &audience, &room, &rooms(), t(18, 30));
    assert_eq!(steps(&then), vec![Step::Invite(user("dj")), Step::Invite(user("alice")), Step::PostOpeningNotice]);
    assert_eq!(then.next_due_at, Some(t(18, 50)), "the 10-minute reminder is next");
}

#[test]
fn a_reservation_arriving_late_opens_at_once_unless_it_ended() {
    let rec = record(Signals::default());
    let during = plan(Some(&rec), &holders(&[]), &RoomState::default(), &rooms(), t(20, 0));
    assert_eq!(during.work, Work::Open);
    for now in [t(21, 0), t(21, 30), t(23, 0)] {
        let after = plan(Some(&rec), &holders(&[]), &RoomState::default(), &rooms(), now);
        assert_eq!(after, Plan { work: Work::Nothing, next_due_at: None }, "at {now}");
    }
}

#[test]
fn an_open_room_invites_late_holders_only() {
    let rec = record(Signals::default());
    let p = plan(Some(&rec), &holders(&["alice", "bob"]), &opened(&["dj", "alice"]), &rooms(), t(19, 30));
    assert_eq!(p, Plan { work: in_room(vec![Step::Invite(user("bob"))]), next_due_at: Some(t(21, 55)) });
}

#[test]
fn archives_at_archives_at() {
    let rec = record(Signals::default());
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &opened(&["dj"]), &rooms(), t(21, 54))), vec![]);
    let warning = plan(Some(&rec), &holders(&[]), &opened(&["dj"]), &rooms(), t(21, 55));
    assert_eq!(steps(&warning), vec![Step::PostClosingWarning], "5 minutes before archives_at");
    let p = plan(Some(&rec), &holders(&[]), &opened(&["dj"]), &rooms(), t(22, 0));
    assert_eq!(steps(&p), vec![Step::PostClosingNotice(CloseReason::Ended), Step::Archive]);
    let mut archived = opened(&["dj"]);
    archived.archived = true;
    assert_eq!(
        plan(Some(&rec), &holders(&[]), &archived, &rooms(), t(22, 0)),
        Plan { work: Work::Nothing, next_due_at: None }
    );
}

#[test]
fn cancellation_before_opening_never_opens_and_while_open_archives_now() {
    let rec = record(Signals { cancelled_at: Some(t(12, 0)), ..Default::default() });
    assert_eq!(steps(&plan(Some(&rec), &holders(&["a"]), &RoomState::default(), &rooms(), t(18, 45))), vec![]);
    let p = plan(Some(&rec), &holders(&["a"]), &opened(&["dj"]), &rooms(), t(19, 0));
    assert_eq!(steps(&p), vec![Step::PostClosingNotice(CloseReason::Cancelled), Step::Archive]);
}

#[test]
fn an_early_stream_start_opens_at_once() {
    let rec = record(Signals { stream_started_at: Some(t(17, 0)), ..Default::default() });
    let p = plan(Some(&rec), &holders(&[]), &RoomState::default(), &rooms(), t(17, 1));
    assert_eq!(p.work, Work::Open);
}

#[test]
fn a_reschedule_moves_the_opening() {
    let mut rec = record(Signals::default());
    rec.reservation.starts_at = t(20, 0);
    rec.reservation.ends_at = t(22, 0);
    let p = plan(Some(&rec), &holders(&[]), &RoomState::default(), &rooms(), t(18, 30));
    assert_eq!(p, Plan { work: Work::Nothing, next_due_at: Some(t(19, 30)) });
}

#[test]
fn facts_without_a_reservation_wait() {
    assert_eq!(
        plan(None, &holders(&["a"]), &RoomState::default(), &rooms(), t(19, 0)),
        Plan { work: Work::Nothing, next_due_at: None }
    );
}

#[test]
fn host_changes_set_power_levels_and_invite_new_hosts() {
    let mut rec = record(Signals::default());
    rec.reservation.hosts = vec![user("mc")];
    let p = plan(Some(&rec), &holders(&[]), &opened(&["dj"]), &rooms(), t(19, 30));
    assert_eq!(steps(&p), vec![Step::SetHosts, Step::Invite(user("mc"))]);
}

#[test]
fn moderators_are_set_and_invited_as_hosts_are_and_keep_their_guests() {
    let mut rec = record(Signals::default());
    rec.reservation.moderators = vec![user("mod"), user("dj")];
    let p = plan(Some(&rec), &holders(&[]), &opened(&["dj"]), &rooms(), t(19, 30));
    assert_eq!(steps(&p), vec![Step::SetHosts, Step::Invite(user("mod"))], "dj is a host already: once");
    assert_eq!(rec.reservation.staff(), vec![user("dj"), user("mod")]);
    // Once applied and invited, nothing more to do.
    let mut room = opened(&["dj", "mod"]);
    room.hosts_applied = [user("dj"), user("mod")].into();
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &rooms(), t(19, 31))), vec![]);
}

#[test]
fn reminders_are_posted_once_when_due() {
    let rec = record(Signals::default());
    let mut room = opened(&["dj"]);
    let early = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 45));
    assert_eq!(early, Plan { work: Work::Nothing, next_due_at: Some(t(18, 50)) });
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 50))), vec![Step::PostReminder(600)]);
    room.reminders_sent.insert(600);
    assert_eq!(plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 55)).next_due_at, Some(t(21, 55)));
}

#[test]
fn stream_signals_bring_notices_and_topics() {
    let live = record(Signals { stream_started_at: Some(t(19, 2)), ..Default::default() });
    let p = plan(Some(&live), &holders(&[]), &opened(&["dj"]), &rooms(), t(19, 3));
    assert_eq!(steps(&p), vec![Step::SetTopic("🔴 Live now".into()), Step::PostLiveNotice(t(19, 2))]);
    let ended =
        record(Signals { stream_started_at: Some(t(19, 2)), stream_ended_at: Some(t(21, 10)), ..Default::default() });
    let mut room = opened(&["dj"]);
    room.live_notice_for = Some(t(19, 2));
    let p = plan(Some(&ended), &holders(&[]), &room, &rooms(), t(21, 11));
    assert_eq!(
        steps(&p),
        vec![
            Step::SetTopic("The stream has ended · This chat closes Fri 27 Nov 2026, 22:10 UTC".into()),
            Step::PostEndedNotice(t(21, 10))
        ]
    );
    // A restart after the end is live again, with a new notice.
    let restarted =
        record(Signals { stream_started_at: Some(t(21, 20)), stream_ended_at: Some(t(21, 10)), ..Default::default() });
    room.ended_notice_for = Some(t(21, 10));
    let p = plan(Some(&restarted), &holders(&[]), &room, &rooms(), t(21, 21));
    assert!(steps(&p).contains(&Step::PostLiveNotice(t(21, 20))), "{p:?}");
}

/// `s` seconds into a show at 20:00.
fn secs(s: i64) -> DateTime<Utc> {
    t(20, 0) + Duration::seconds(s)
}

/// The stream's latest start and end, in [`secs`].
fn signals(started: i64, ended: Option<i64>) -> Signals {
    Signals { stream_started_at: Some(secs(started)), stream_ended_at: ended.map(secs), ..Default::default() }
}

#[test]
fn a_drop_shorter_than_the_reconnect_grace_posts_no_ended_and_no_second_live_notice() {
    let mut room = opened(&["dj"]);
    room.live_notice_for = Some(secs(0));
    room.topic_applied = Some("🔴 Live now".into());
    // Down at 60 s: the "ended" notice waits out the grace (10 s).
    let down = record(signals(0, Some(60)));
    let p = plan(Some(&down), &holders(&[]), &room, &rooms(), secs(61));
    assert!(!steps(&p).iter().any(|s| matches!(s, Step::PostEndedNotice(_))), "{p:?}");
    assert_eq!(p.next_due_at, Some(secs(70)), "looked at again when the grace is over");
    // Up again at 65 s: the same show going on.
    let back = record(signals(65, Some(60)));
    let p = plan(Some(&back), &holders(&[]), &room, &rooms(), secs(66));
    assert_eq!(steps(&p), vec![], "{p:?}");
    // Down for longer than the grace: "ended", then a new "live" when it is back.
    let p = plan(Some(&down), &holders(&[]), &room, &rooms(), secs(70));
    assert!(steps(&p).contains(&Step::PostEndedNotice(secs(60))), "{p:?}");
    room.ended_notice_for = Some(secs(60));
    let later = record(signals(90, Some(60)));
    let p = plan(Some(&later), &holders(&[]), &room, &rooms(), secs(91));
    assert!(steps(&p).contains(&Step::PostLiveNotice(secs(90))), "{p:?}");
}

#[test]
fn a_start_or_an_end_reported_again_posts_no_second_notice() {
    let mut room = opened(&["dj"]);
    room.topic_applied = Some("🔴 Live now".into());
    // The streaming server told of the start at 0 s and "live" was posted; the platform
    // tells of the same start at 2 s (the latest start is kept).
    room.live_notice_for = Some(secs(0));
    let again = record(signals(2, None));
    assert_eq!(steps(&plan(Some(&again), &holders(&[]), &room, &rooms(), secs(3))), vec![]);
    // An end before the noticed start (an earlier stream's) makes it no new start either.
    let again = record(signals(2, Some(-600)));
    assert_eq!(steps(&plan(Some(&again), &holders(&[]), &room, &rooms(), secs(3))), vec![]);

    // The server's end at 60 s was told once the grace was over; the platform tells of the
    // same end at 90 s, with no start in between.
    room.topic_applied = None;
    room.ended_notice_for = Some(secs(60));
    let again = record(signals(2, Some(90)));
    let p = plan(Some(&again), &holders(&[]), &room, &rooms(), secs(120));
    assert!(!steps(&p).iter().any(|s| matches!(s, Step::PostEndedNotice(_))), "{p:?}");
    // A start after the noticed end and a new end: a new "ended" notice.
    let restarted = record(signals(70, Some(90)));
    let p = plan(Some(&restarted), &holders(&[]), &room, &rooms(), secs(120));
    assert!(steps(&p).contains(&Step::PostEndedNotice(secs(90))), "{p:?}");
}

#[test]
fn a_stream_end_keeps_the_room_shut_only_if_it_came_before_the_opening() {
    // Opens at 18:30. A short stream at 18:40–18:45 reported before a late reschedule
    // arrived: the room opens all the same, as if the reschedule had come first.
    let after =
        record(Signals { stream_started_at: Some(t(18, 40)), stream_ended_at: Some(t(18, 45)), ..Default::default() });
    let p = plan(Some(&after), &holders(&[]), &RoomState::default(), &rooms(), t(18, 50));
    assert_eq!(p.work, Work::Open, "{p:?}");
    // A stream over before 18:30: no room.
    let before =
        record(Signals { stream_started_at: Some(t(18, 0)), stream_ended_at: Some(t(18, 10)), ..Default::default() });
    let p = plan(Some(&before), &holders(&[]), &RoomState::default(), &rooms(), t(18, 50));
    assert_eq!(steps(&p), vec![], "{p:?}");
}

#[test]
fn someone_foyer_removed_is_invited_again_with_a_new_ticket() {
    let rec = record(Signals::default());
    let alice = user("alice");
    let mut room = opened(&[]);
    room.invited.insert(alice.clone());
    room.members.insert(alice.clone(), member(Membership::Join, None));
    let p = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 40));
    assert!(steps(&p).contains(&Step::Kick(alice.clone(), KickReason::NoTicket)), "{p:?}");
    apply(&mut room, &in_room(vec![Step::Kick(alice.clone(), KickReason::NoTicket)]), &rec);
    let p = plan(Some(&rec), &holders(&["alice"]), &room, &rooms(), t(18, 41));
    assert!(steps(&p).contains(&Step::Invite(alice)), "{p:?}");
}

#[test]
fn a_new_title_renames_the_open_room_once() {
    let mut rec = record(Signals::default());
    let mut room = opened(&["dj"]);
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 40))), vec![]);
    // A room opened before names were recorded (an upgrade) is named once.
    let upgraded = RoomState { name_applied: None, ..room.clone() };
    let p = plan(Some(&rec), &holders(&[]), &upgraded, &rooms(), t(18, 40));
    assert_eq!(steps(&p), vec![Step::SetName("Jazz".into())]);
    rec.reservation.title = crate::model::Title::parse("Jazz at Midnight").unwrap();
    let p = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 40));
    assert_eq!(steps(&p), vec![Step::SetName("Jazz at Midnight".into())]);
    apply(&mut room, &p.work, &rec);
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 41))), vec![]);
    // Not after the archive (the planner stops at an archived room): it keeps its name.
    room.archived = true;
    rec.reservation.title = crate::model::Title::parse("Jazz, again").unwrap();
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &rooms(), t(22, 30))), vec![]);
}

#[test]
fn a_stream_url_brings_the_widget_and_link() {
    let mut rec = record(Signals::default());
    rec.reservation.stream_url = Some(crate::model::StreamUrl::parse("https://s.example.org/w").unwrap());
    let mut room = RoomState::default();
    let p = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 30));
    assert_eq!(p.work, Work::Open);
    apply(&mut room, &p.work, &rec);
    let then = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 30));
    assert_eq!(steps(&then)[..1], [Step::SetStreamLink]);
}

#[test]
fn a_channel_room_is_listed_in_its_space_until_archived() {
    let mut rec = record(Signals::default());
    rec.reservation.channel = Some(crate::model::Channel {
        id: crate::model::ExternalId::parse("blue-room").unwrap(),
        name: crate::model::Title::parse("The Blue Room").unwrap(),
    });
    // Opened, then the space alone (the steps after it need its id), then linked.
    let mut room = RoomState::default();
    let p = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 30));
    assert_eq!(p, Plan { work: Work::Open, next_due_at: Some(t(18, 30)) });
    apply(&mut room, &p.work, &rec);
    let channel = rec.reservation.channel.clone().unwrap();
    let p = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 30));
    assert_eq!(p, Plan { work: in_room(vec![Step::EnsureSpace(channel)]), next_due_at: Some(t(18, 30)) });
    apply(&mut room, &p.work, &rec);
    let p = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(18, 30));
    assert_eq!(steps(&p)[..1], [Step::LinkSpace(space())]);
    let mut room = opened(&["dj"]);
    room.space = Some(space());
    room.space_linked = room.space.clone();
    room.closing_warning_sent = true;
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &rooms(), t(19, 0))), vec![]);
    let close = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(22, 0));
    assert_eq!(
        steps(&close),
        vec![Step::PostClosingNotice(CloseReason::Ended), Step::UnlinkSpace(space()), Step::Archive]
    );
}

#[test]
fn a_transcript_is_made_before_the_archive_and_waited_for_at_most_transcript_wait() {
    let mut rec = record(Signals::default());
    let mut config = rooms();
    let archive = |rec: &ReservationRecord, room: &RoomState, config: &RoomsConfig, now| {
        steps(&plan(Some(rec), &holders(&[]), room, config, now))
    };
    let closing = vec![Step::PostClosingNotice(CloseReason::Ended), Step::Archive];
    // Off by default: no transcript.
    assert_eq!(archive(&rec, &opened(&["dj"]), &config, t(22, 0)), closing);
    // On: after the closing notice (which it holds), before the archive.
    config.transcript = true;
    let with_transcript = vec![Step::PostClosingNotice(CloseReason::Ended), Step::Transcribe, Step::Archive];
    assert_eq!(archive(&rec, &opened(&["dj"]), &config, t(22, 0)), with_transcript);
    // Tried however late the round comes (a Foyer that was down when it was due)...
    let mut room = opened(&["dj"]);
    room.closing_notice_sent = true;
    assert_eq!(archive(&rec, &room, &config, t(23, 30)), vec![Step::Transcribe, Step::Archive]);
    // ...and still planned (its failures retried) until transcript_wait (10 minutes)
    // has passed since the first failure; then the room is archived without it.
    let failed = StepRecord::TranscriptFailed { at: t(22, 1), error: "502 Bad Gateway".into() };
    room.apply(&failed);
    room.apply(&StepRecord::TranscriptFailed { at: t(22, 5), error: "502 again".into() });
    assert_eq!((room.transcript_failed_at, room.transcript_error.as_deref()), (Some(t(22, 1)), Some("502 again")));
    assert_eq!(archive(&rec, &room, &config, t(22, 10)), vec![Step::Transcribe, Step::Archive]);
    assert_eq!(archive(&rec, &room, &config, t(22, 11)), vec![Step::Archive]);
    // With no wait at all, the first failure gives up.
    let no_wait = RoomsConfig { transcript_wait: std::time::Duration::ZERO, ..config.clone() };
    assert_eq!(archive(&rec, &room, &no_wait, t(22, 1)), vec![Step::Archive]);
    // Made: never again.
    let mut made = opened(&["dj"]);
    apply(&mut made, &in_room(vec![Step::Transcribe]), &rec);
    assert!(made.transcript_made);
    assert_eq!(archive(&rec, &made, &config, t(22, 0)), closing);
    let room = RoomState { transcript_failed_at: None, transcript_error: None, ..room };
    // The reservation's own choice wins either way.
    rec.reservation.transcript = Some(false);
    assert_eq!(archive(&rec, &room, &config, t(22, 0)), vec![Step::Archive]);
    config.transcript = false;
    rec.reservation.transcript = Some(true);
    assert_eq!(archive(&rec, &room, &config, t(22, 0)), vec![Step::Transcribe, Step::Archive]);
}

#[test]
fn a_transcript_switched_on_while_open_is_announced_once() {
    let mut rec = record(Signals::default());
    let mut config = rooms();
    // Opened with transcripts off: the opening notice did not say the chat is saved.
    let mut room = RoomState::default();
    let p = plan(Some(&rec), &holders(&[]), &room, &config, t(18, 30));
    apply_with(&mut room, &p.work, &rec, &config);
    let p = plan(Some(&rec), &holders(&[]), &room, &config, t(18, 30));
    assert!(steps(&p).contains(&Step::PostOpeningNotice), "{p:?}");
    apply_with(&mut room, &p.work, &rec, &config);
    assert!(!room.transcript_notice_sent);
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &config, t(18, 40))), vec![]);
    // chat.transcript switched on by a reservation.updated: the notice now, once.
    rec.reservation.transcript = Some(true);
    let p = plan(Some(&rec), &holders(&[]), &room, &config, t(18, 41));
    assert_eq!(steps(&p), vec![Step::PostTranscriptNotice]);
    apply_with(&mut room, &p.work, &rec, &config);
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &config, t(18, 42))), vec![]);
    // Off and on again: members were told already.
    rec.reservation.transcript = Some(false);
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &config, t(18, 43))), vec![]);
    rec.reservation.transcript = Some(true);
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &config, t(18, 44))), vec![]);
    // On from the start (here by rooms.transcript): the opening notice says so, and no
    // second notice follows.
    rec.reservation.transcript = None;
    config.transcript = true;
    let mut room = RoomState::default();
    for at in [t(18, 30), t(18, 30), t(18, 31)] {
        let p = plan(Some(&rec), &holders(&[]), &room, &config, at);
        assert!(!steps_or_open(&p).contains(&Step::PostTranscriptNotice), "{p:?}");
        apply_with(&mut room, &p.work, &rec, &config);
    }
    assert!(room.opening_notice_sent && room.transcript_notice_sent);
    // Not when the room closes: the closing steps are all that is left.
    let mut closing = opened(&["dj"]);
    closing.transcript_notice_sent = false;
    let p = plan(Some(&rec), &holders(&[]), &closing, &config, t(22, 0));
    assert!(!steps(&p).contains(&Step::PostTranscriptNotice), "{p:?}");
}

/// The steps planned in the room, none for opening it or for nothing.
fn steps_or_open(plan: &Plan) -> Vec<Step> {
    match &plan.work {
        Work::InRoom { steps, .. } => steps.clone(),
        Work::Nothing | Work::Open => vec![],
    }
}

proptest! {
    /// Once a plan's work is recorded done, planning again at the same moment soon
    /// yields none.
    #[test]
    fn applying_a_plan_leaves_nothing_to_do(
        minutes in -120i64..600,
        start_offset in -60i64..60,
        end_offset in -60i64..300,
        cancelled in any::<bool>(),
        ended in any::<bool>(),
        names in proptest::collection::btree_set("[a-e]", 0..5),
        invited in proptest::collection::btree_set("[a-e]", 0..5),
        created in any::<bool>(),
        members in proptest::collection::btree_map("[a-g]", (0usize..5, proptest::option::of("dj|[a-g]")), 0..6),
        revoked in proptest::collection::btree_set("[a-g]", 0..3),
        hosts_changed in any::<bool>(),
        channel in any::<bool>(),
        transcript in any::<bool>(),
        auto_join in any::<bool>(),
    ) {
        let auto_join = if auto_join { crate::model::AutoJoin::Local } else { crate::model::AutoJoin::Off };
        let config = RoomsConfig { transcript, auto_join, ..rooms() };
        let now = t(19, 0) + Duration::minutes(minutes);
        let signals = Signals {
            cancelled_at: cancelled.then_some(t(12, 0)),
            stream_started_at: (start_offset > 0).then(|| t(19, 0) + Duration::minutes(start_offset)),
            stream_ended_at: ended.then(|| t(21, 0) + Duration::minutes(end_offset)),
            ..Default::default()
        };
        let mut rec = record(signals);
        if hosts_changed {
            rec.reservation.hosts = vec![user("mc")];
        }
        if channel {
            rec.reservation.channel = Some(crate::model::Channel {
                id: crate::model::ExternalId::parse("blue-room").unwrap(),
                name: crate::model::Title::parse("The Blue Room").unwrap(),
            });
        }
        let audience = Audience {
            holders: names.iter().map(|n| user(n)).collect(),
            revoked: revoked.iter().map(|n| user(n)).collect(),
            ..Audience::default()
        };
        let mut room = if created { opened(&[]) } else { RoomState::default() };
        room.invited = invited.iter().map(|n| user(n)).collect();
        let kinds = [Membership::Invite, Membership::Join, Membership::Knock, Membership::Leave, Membership::Ban];
        for (name, (kind, by)) in &members {
            room.members.insert(user(name), member(kinds[*kind], by.as_deref()));
        }
        // Plan, record the work's success, plan again: at the same moment that comes to
        // nothing within four rounds (opening the room, ensuring its space, letting the
        // doorkeeper in, the rest).
        let (mut rounds, mut opened) = (0, 0);
        loop {
            let p = plan(Some(&rec), &audience, &room, &config, now);
            if p.work == Work::Nothing {
                break;
            }
            prop_assert!(rounds < 4, "still {:?} after {} rounds", p.work, rounds);
            opened += usize::from(p.work == Work::Open);
            apply_with(&mut room, &p.work, &rec, &config);
            rounds += 1;
        }
        // And the room is never created twice.
        prop_assert!(opened <= 1);
    }
}
