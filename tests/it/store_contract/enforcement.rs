//! Enforcing the rules in the store (docs/moderation.md), on both backends: a breach is
//! recorded once, with its strike, its redaction and the timeout its strikes bring, in
//! one transaction; strikes count only since the last timeout; redactions come each
//! room's oldest first; timeouts are read by the planner and lifted; what moderators set
//! over the rules holds until the platform changes the rules.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, TimeZone as _, Utc};
use foyer::{
    model::{
        ActionReason, Actor, ChatMode, ModeratedMember, ModerationAction, NewAction, Rule, RulesOverride, StepRecord,
        Strikes, TicketId, TimeoutLength, ViewerKey, WebhookEvent,
    },
    store::{Breach, Store, TimeoutOrder},
};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde_json::json;

use super::{each_backend, jazz, receipt, upsert};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2099, 11, 27, 19, 0, 0).unwrap()
}

fn room(n: u32) -> OwnedRoomId {
    OwnedRoomId::try_from(format!("!room{n}:example.org")).unwrap()
}

fn event(id: &str) -> OwnedEventId {
    OwnedEventId::try_from(format!("${id}:example.org")).unwrap()
}

fn fan() -> OwnedUserId {
    OwnedUserId::try_from("@fan:example.org").unwrap()
}

fn strikes() -> Strikes {
    Strikes { count: 2, within: Duration::from_secs(300), timeout: Duration::from_secs(600) }
}

/// A breach by the fan in room 1 (`message`) or on the web (`None`), `seconds` after t0.
fn breach(message: Option<&str>, seconds: i64) -> Breach {
    let member = match message {
        Some(_) => ModeratedMember::user(fan(), None),
        None => ModeratedMember::web_viewer(ViewerKey::Ticket(TicketId::parse("t-1").unwrap())),
    };
    Breach {
        reservation: jazz(),
        member,
        rule: Rule::BlockedWords,
        reason: ActionReason::lossy("Broke this chat's rule blocked_words"),
        message: message.map(|m| (room(1), event(m))),
        strikes: strikes(),
        at: t0() + Span::seconds(seconds),
    }
}

/// The kinds of entry in the record, sorted (entries of one instant come in the order of
/// their ids).
async fn kinds(store: &dyn Store) -> Vec<String> {
    let record = store.moderation_record(&jazz(), None, 100).await.unwrap();
    let mut kinds: Vec<String> = record.iter().map(|r| r.entry.kind.as_str().to_owned()).collect();
    kinds.sort();
    kinds
}

#[tokio::test]
async fn a_breach_is_recorded_once_with_its_redaction_and_the_strike_that_times_out() {
    each_backend(|store, backend| async move {
        let first = store.record_breach(&breach(Some("m1"), 0)).await.unwrap();
        assert!(first.new && first.timed_out_until.is_none(), "{backend}: {first:?}");
        let again = store.record_breach(&breach(Some("m1"), 5)).await.unwrap();
        assert!(!again.new, "{backend}: the homeserver sent it again: nothing new");
        let second = store.record_breach(&breach(Some("m2"), 10)).await.unwrap();
        let until = t0() + Span::seconds(610);
        assert_eq!(second.timed_out_until, Some(until), "{backend}: the second strike times out");
        assert_eq!(kinds(store.as_ref()).await, ["rule", "rule", "timeout"], "{backend}");
        let events = store.outbox_events().await.unwrap();
        assert_eq!(events.len(), 3, "{backend}: one member.moderated each");
        let member = ModeratedMember::user(fan(), None);
        let running = store.timed_out_until(&jazz(), &member, t0() + Span::seconds(11)).await.unwrap();
        assert_eq!(running, Some(until), "{backend}");
        assert_eq!(store.timed_out_until(&jazz(), &member, until).await.unwrap(), None, "{backend}: ended");
        // The planner reads the timeout with the room's audience.
        store
            .record_step(
                &jazz(),
                &StepRecord::RoomCreated {
                    room_id: room(1),
                    hosts: Default::default(),
                    name: "Jazz".into(),
                    topic: String::new(),
                },
                t0(),
            )
            .await
            .unwrap();
        let state = store.lifecycle_state(&jazz()).await.unwrap();
        assert_eq!(state.audience.timeouts.get(&fan()), Some(&until), "{backend}");

        // Breaking more while timed out times out no more; strikes before the timeout do
        // not count after it: one more breach after it is a first strike again.
        let during = store.record_breach(&breach(Some("m3"), 20)).await.unwrap();
        assert!(during.new && during.timed_out_until.is_none(), "{backend}: {during:?}");
        let after = store.record_breach(&breach(Some("m4"), 620)).await.unwrap();
        assert!(after.new && after.timed_out_until.is_none(), "{backend}: a first strike since: {after:?}");
        let next = store.record_breach(&breach(Some("m5"), 630)).await.unwrap();
        assert!(next.timed_out_until.is_some(), "{backend}: the second since times out again");

        assert_eq!(store.prune_timeouts(t0() + Span::seconds(2000)).await.unwrap(), 1, "{backend}");
        assert!(store.lifecycle_state(&jazz()).await.unwrap().audience.timeouts.is_empty(), "{backend}");
    })
    .await;
}

#[tokio::test]
async fn a_web_fans_breach_counts_by_their_ticket_and_queues_no_redaction() {
    each_backend(|store, backend| async move {
        store.record_breach(&breach(None, 0)).await.unwrap();
        let second = store.record_breach(&breach(None, 1)).await.unwrap();
        assert!(second.timed_out_until.is_some(), "{backend}: two strikes by the ticket");
        assert!(store.pending_redactions(10, 10).await.unwrap().is_empty(), "{backend}");
        let viewer = ModeratedMember::web_viewer(ViewerKey::Ticket(TicketId::parse("t-1").unwrap()));
        assert!(store.timed_out_until(&jazz(), &viewer, t0() + Span::seconds(2)).await.unwrap().is_some(), "{backend}");
        let matrix = ModeratedMember::user(fan(), None);
        assert!(store.timed_out_until(&jazz(), &matrix, t0()).await.unwrap().is_none(), "{backend}: another member");
    })
    .await;
}

#[tokio::test]
async fn redactions_come_each_rooms_oldest_first_and_go_once_done() {
    each_backend(|store, backend| async move {
        let lots = Strikes { count: 100, ..strikes() };
        for (n, (room_n, seconds)) in [(1, 0), (1, 1), (1, 2), (2, 3), (3, 4)].into_iter().enumerate() {
            let mut b = breach(Some(&format!("e{n}")), seconds);
            b.message = Some((room(room_n), event(&format!("e{n}"))));
            b.strikes = lots;
            store.record_breach(&b).await.unwrap();
        }
        let pending = store.pending_redactions(10, 1).await.unwrap();
        let found: Vec<(String, String)> =
            pending.iter().map(|p| (p.room_id.to_string(), p.event_id.to_string())).collect();
        let want = [(room(1), event("e0")), (room(2), event("e3")), (room(3), event("e4"))]
            .map(|(r, e)| (r.to_string(), e.to_string()));
        assert_eq!(found, want, "{backend}: one per room, a flood in room 1 keeps no other waiting");
        // Two a room: every room's first, then every room's second.
        let two = store.pending_redactions(4, 2).await.unwrap();
        let order: Vec<String> = two.iter().map(|p| p.event_id.to_string()).collect();
        let want = ["e0", "e3", "e4", "e1"].map(|e| event(e).to_string());
        assert_eq!(order, want, "{backend}: round-robin, at most the limit");
        assert_eq!(pending[0].member, fan(), "{backend}");
        assert_eq!(pending[0].rule, Rule::BlockedWords, "{backend}");
        let done = NewAction {
            reservation: jazz(),
            action: ModerationAction::Redaction {
                member: ModeratedMember::user(fan(), None),
                event_id: event("e0"),
                rule: Some(Rule::BlockedWords),
            },
            actor: Actor::Bot,
            reason: ActionReason::default(),
            at: t0(),
        };
        store.redaction_done(&event("e0"), Some(&done)).await.unwrap();
        store.redaction_done(&event("e0"), Some(&done)).await.unwrap();
        let next = store.pending_redactions(1, 1).await.unwrap();
        assert_eq!(next[0].event_id, event("e1"), "{backend}: room 1's next");
        let redactions = kinds(store.as_ref()).await.iter().filter(|k| *k == "redaction").count();
        assert_eq!(redactions, 1, "{backend}: recorded once");
    })
    .await;
}

#[tokio::test]
async fn a_timeout_by_command_replaces_the_last_and_is_lifted_once() {
    each_backend(|store, backend| async move {
        let order = |seconds: i64, command: &str| TimeoutOrder {
            reservation: jazz(),
            member: ModeratedMember::user(fan(), None),
            actor: Actor::Member(OwnedUserId::try_from("@mod:example.org").unwrap()),
            reason: ActionReason::lossy("calm down"),
            event_id: Some(event(command)),
            at: t0() + Span::seconds(seconds),
        };
        assert!(store.time_out(&order(0, "c1"), TimeoutLength::seconds(60).unwrap()).await.unwrap(), "{backend}");
        assert!(store.time_out(&order(10, "c2"), TimeoutLength::seconds(600).unwrap()).await.unwrap(), "{backend}");
        let member = ModeratedMember::user(fan(), None);
        let until = store.timed_out_until(&jazz(), &member, t0() + Span::seconds(100)).await.unwrap();
        assert_eq!(until, Some(t0() + Span::seconds(610)), "{backend}: the newer replaces the older");
        assert!(store.lift_timeout(&order(20, "c3")).await.unwrap(), "{backend}");
        assert!(!store.lift_timeout(&order(21, "c4")).await.unwrap(), "{backend}: none running");
        assert_eq!(store.timed_out_until(&jazz(), &member, t0() + Span::seconds(20)).await.unwrap(), None);
        assert_eq!(kinds(store.as_ref()).await, ["timeout", "timeout", "untimeout"], "{backend}");
    })
    .await;
}

#[tokio::test]
async fn rules_set_in_the_room_hold_until_the_platform_changes_the_rules() {
    each_backend(|store, backend| async move {
        let with_rules = |revision: u64, rules: serde_json::Value| {
            let WebhookEvent::Upsert(mut reservation) = upsert(revision) else { unreachable!() };
            reservation.rules = RulesOverride::parse(&rules, "chat.rules").unwrap();
            WebhookEvent::Upsert(reservation)
        };
        store.record_webhook(&receipt("r1"), &with_rules(1, json!({"max_length": 100}))).await.unwrap();
        let created =
            StepRecord::RoomCreated { room_id: room(1), hosts: Default::default(), name: "J".into(), topic: "".into() };
        store.record_step(&jazz(), &created, t0()).await.unwrap();
        let in_room = store.reservation_in_room(&room(1)).await.unwrap().expect("the room's reservation");
        assert_eq!(in_room.reservation.id, jazz(), "{backend}");
        assert!(store.reservation_in_room(&room(2)).await.unwrap().is_none(), "{backend}: not a room of ours");
        let set = |seconds: i64, rules: serde_json::Value, action: ModerationAction| {
            let store = store.clone();
            async move {
                let action = NewAction {
                    reservation: jazz(),
                    action,
                    actor: Actor::Member(OwnedUserId::try_from("@mod:example.org").unwrap()),
                    reason: ActionReason::default(),
                    at: t0() + Span::seconds(seconds),
                };
                store.set_room_rules(&RulesOverride::parse(&rules, "command").unwrap(), &action).await.unwrap();
            }
        };
        set(0, json!({"mode": "hosts_only"}), ModerationAction::Mode { mode: ChatMode::HostsOnly, event_id: None })
            .await;
        set(1, json!({"slow_mode_seconds": 30}), ModerationAction::Slow { seconds: 30, event_id: None }).await;
        let rules = |store: std::sync::Arc<dyn Store>| async move {
            let record = store.reservation(&jazz()).await.unwrap().unwrap();
            record.reservation.rules(&Default::default()).unwrap()
        };
        let now = rules(store.clone()).await;
        assert_eq!((now.mode, now.slow_mode.as_secs(), now.max_length), (ChatMode::HostsOnly, 30, 100), "{backend}");
        assert_eq!(kinds(store.as_ref()).await, ["mode", "slow"], "{backend}");
        // The platform sends the same rules again (a title change): what was set holds.
        store.record_webhook(&receipt("r2"), &with_rules(2, json!({"max_length": 100}))).await.unwrap();
        assert_eq!(rules(store.clone()).await.mode, ChatMode::HostsOnly, "{backend}");
        // New rules from the platform are its newer word: what was set is let go.
        store.record_webhook(&receipt("r3"), &with_rules(3, json!({"max_length": 50}))).await.unwrap();
        let now = rules(store.clone()).await;
        assert_eq!((now.mode, now.slow_mode.as_secs(), now.max_length), (ChatMode::Open, 0, 50), "{backend}");
    })
    .await;
}
