//! Who may speak: the mode and the timeouts in the power levels, from what is true now.

use serde_json::json;

use super::*;
use crate::model::{ChatMode, RulesOverride, Speech};

fn mode(rec: &mut ReservationRecord, mode: &str) {
    rec.reservation.rules = RulesOverride::parse(&json!({"mode": mode}), "chat.rules").unwrap();
}

fn speech(mode: ChatMode, silenced: &[&str]) -> Speech {
    Speech { mode, silenced: silenced.iter().map(|n| user(n)).collect() }
}

#[test]
fn a_mode_is_set_once_and_set_back_when_it_changes_back() {
    let mut rec = record(Signals::default());
    let mut room = opened(&["dj"]);
    mode(&mut rec, "hosts_only");
    let set = speech(ChatMode::HostsOnly, &[]);
    let p = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(19, 30));
    assert_eq!(steps(&p), vec![Step::SetSpeech { speech: set.clone(), lifted: Default::default() }]);
    room.speech_applied = set;
    assert_eq!(steps(&plan(Some(&rec), &holders(&[]), &room, &rooms(), t(19, 31))), vec![]);
    mode(&mut rec, "open");
    let back = speech(ChatMode::Open, &[]);
    let p = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(19, 32));
    assert_eq!(steps(&p), vec![Step::SetSpeech { speech: back, lifted: Default::default() }]);
}

#[test]
fn a_timeout_silences_until_it_ends_then_is_lifted_and_recorded_with_its_end() {
    let rec = record(Signals::default());
    let mut room = opened(&["dj", "fan"]);
    let mut audience = holders(&["fan"]);
    audience.timeouts.insert(user("fan"), t(19, 40));
    let p = plan(Some(&rec), &audience, &room, &rooms(), t(19, 30));
    assert_eq!(
        steps(&p),
        vec![Step::SetSpeech { speech: speech(ChatMode::Open, &["fan"]), lifted: Default::default() }]
    );
    assert_eq!(p.next_due_at, Some(t(19, 40)), "looked at again when the timeout ends");
    room.speech_applied = speech(ChatMode::Open, &["fan"]);
    let quiet = plan(Some(&rec), &audience, &room, &rooms(), t(19, 35));
    assert_eq!(quiet, Plan { work: Work::Nothing, next_due_at: Some(t(19, 40)) });
    let p = plan(Some(&rec), &audience, &room, &rooms(), t(19, 40));
    let lifted = [(user("fan"), t(19, 40))].into();
    assert_eq!(steps(&p), vec![Step::SetSpeech { speech: speech(ChatMode::Open, &[]), lifted }]);
}

#[test]
fn a_timeout_ending_during_hosts_only_keeps_the_mode() {
    let mut rec = record(Signals::default());
    mode(&mut rec, "hosts_only");
    let mut room = opened(&["dj", "fan"]);
    room.speech_applied = speech(ChatMode::HostsOnly, &["fan"]);
    let mut audience = holders(&["fan"]);
    audience.timeouts.insert(user("fan"), t(19, 40));
    let p = plan(Some(&rec), &audience, &room, &rooms(), t(19, 41));
    let lifted = [(user("fan"), t(19, 40))].into();
    assert_eq!(steps(&p), vec![Step::SetSpeech { speech: speech(ChatMode::HostsOnly, &[]), lifted }]);
}

#[test]
fn hosts_and_moderators_are_never_silenced() {
    let mut rec = record(Signals::default());
    rec.reservation.moderators = vec![user("mod")];
    let mut room = opened(&["dj"]);
    room.hosts_applied = [user("dj"), user("mod")].into();
    room.invited.insert(user("mod"));
    let mut audience = holders(&[]);
    audience.timeouts.insert(user("mod"), t(19, 40));
    assert_eq!(steps(&plan(Some(&rec), &audience, &room, &rooms(), t(19, 30))), vec![]);
}

#[test]
fn the_timeouts_held_fit_the_power_levels_event_those_ending_first_first() {
    let now = t(19, 30);
    let long = |i: usize| user(&format!("{i:0>200}"));
    let timeouts = (0..400).map(|i| (long(i), now + Duration::minutes(1 + i as i64))).collect();
    let held = Speech::at(ChatMode::Open, &timeouts, &Default::default(), now);
    let bytes: usize = held.silenced.iter().map(|u| u.as_str().len() + 8).sum();
    assert!(bytes <= crate::model::SILENCED_BYTES, "{bytes}");
    assert!(held.silenced.len() > 200 && held.silenced.len() < 400, "{}", held.silenced.len());
    assert!(held.silenced.contains(&long(0)) && !held.silenced.contains(&long(399)));
}
