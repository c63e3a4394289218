//! The moderation record's store (docs/moderation.md), on both backends:
//! each action once, with its outbound event in the same transaction; pages oldest first;
//! forgotten with the transcripts.

use chrono::{DateTime, Duration as Span, TimeZone as _, Utc};
use foyer::{
    config::DatabaseKind,
    model::{
        ActionKind, ActionReason, Actor, ChatMode, ModeratedMember, ModerationAction, NewAction, NewReport,
        RecordCursor, ReportReason, ReportedMessage, ReservationId, Rule, StepRecord, TicketId, TimeoutLength,
        ViewerKey, ViewerSub,
    },
    store::{self, Outbound},
};
use ruma::{OwnedEventId, OwnedUserId};
use serde_json::{Value, json};

use super::{each_backend, each_backend_with, hand_edit, jazz, receipt, upsert_in_channel};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2099, 11, 27, 19, 0, 0).unwrap()
}

fn event(id: &str) -> OwnedEventId {
    OwnedEventId::try_from(format!("${id}:example.org")).unwrap()
}

fn ada() -> ModeratedMember {
    let user = OwnedUserId::try_from("@ada:example.org").unwrap();
    ModeratedMember::user(user, Some(ViewerKey::Ticket(TicketId::parse("t-7").unwrap())))
}

fn moderator() -> Actor {
    Actor::Member(OwnedUserId::try_from("@mod:example.org").unwrap())
}

fn new_action(reservation: ReservationId, action: ModerationAction, actor: Actor, seconds: i64) -> NewAction {
    NewAction {
        reservation,
        action,
        actor,
        reason: ActionReason::parse("spam links").unwrap(),
        at: t0() + Span::seconds(seconds),
    }
}

fn timeout(seconds: i64) -> NewAction {
    let action = ModerationAction::Timeout {
        member: ada(),
        duration: TimeoutLength::seconds(600).unwrap(),
        until: t0() + Span::seconds(600),
        event_id: Some(event("cmd")),
    };
    new_action(jazz(), action, moderator(), seconds)
}

fn report(reporter: &str, seconds: i64) -> NewReport {
    NewReport {
        reservation: jazz(),
        event_id: event("spam"),
        reporter: ViewerKey::Ticket(TicketId::parse(reporter).unwrap()),
        reason: ReportReason::parse("spam").unwrap(),
        message: ReportedMessage {
            sender_name: "Ada".into(),
            sender_role: "fan".into(),
            body: "buy cheap followers".into(),
            origin_ts: t0(),
        },
        at: t0() + Span::seconds(seconds),
    }
}

fn data(payload: &str) -> Value {
    serde_json::from_str::<Value>(payload).unwrap()["data"].clone()
}

/// An action is recorded once, whoever records it again and when; the first record
/// writes `member.moderated` (a report: `message.reported`), a second writes nothing.
#[tokio::test]
async fn an_action_is_recorded_once_with_one_event_for_the_platform() {
    each_backend(|store, backend| async move {
        assert!(store.record_action(&timeout(0)).await.unwrap(), "{backend}: new");
        // The same timeout recorded again (a retry, a second instance), a moment later.
        assert!(!store.record_action(&timeout(3)).await.unwrap(), "{backend}: again");
        assert!(store.record_report(&report("t-2", 1)).await.unwrap(), "{backend}");
        assert!(!store.record_report(&report("t-2", 2)).await.unwrap(), "{backend}: reported again");
        assert!(store.record_report(&report("t-3", 2)).await.unwrap(), "{backend}: another fan's report");

        let events = store.outbox_events().await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["member.moderated", "message.reported", "message.reported"], "{backend}");
        let data = data(&events[0].payload);
        assert_eq!(data["reservation_id"], "jazz", "{backend}");
        assert_eq!(data["action"], "timeout", "{backend}");
        assert_eq!(data["actor"], json!({"kind": "member", "user_id": "@mod:example.org"}), "{backend}");
        assert_eq!(data["member"], json!({"user_id": "@ada:example.org", "ticket_id": "t-7"}), "{backend}");
        assert_eq!(data["event_id"], "$cmd:example.org", "{backend}");
        assert_eq!(data["reason"], "spam links", "{backend}");
        assert_eq!(data["details"], json!({"seconds": 600, "until": "2099-11-27T19:10:00.000Z"}), "{backend}");
        assert_eq!(data["at"], "2099-11-27T19:00:00.000Z", "{backend}: the first record's time");

        let page = store.moderation_record(&jazz(), None, 10).await.unwrap();
        let kinds: Vec<ActionKind> = page.iter().map(|r| r.entry.kind).collect();
        assert_eq!(kinds, [ActionKind::Timeout, ActionKind::Report, ActionKind::Report], "{backend}");
        assert_eq!(page[0].entry, timeout(0).entry(), "{backend}: read back as recorded");
        let reported = &page[1].entry;
        assert_eq!(reported.actor, Actor::Viewer(ViewerKey::Ticket(TicketId::parse("t-2").unwrap())), "{backend}");
        assert_eq!((reported.member.as_ref(), reported.event_id.clone()), (None, Some(event("spam"))), "{backend}");
    })
    .await;
}

/// Without a platform nothing goes to the outbox, and the action is still recorded once.
#[tokio::test]
async fn without_a_platform_the_record_is_kept_and_nothing_is_sent() {
    each_backend_with(Outbound::Skip, |store, backend| async move {
        assert!(store.record_action(&timeout(0)).await.unwrap(), "{backend}");
        assert!(!store.record_action(&timeout(0)).await.unwrap(), "{backend}");
        assert!(store.outbox_events().await.unwrap().is_empty(), "{backend}");
        assert_eq!(store.moderation_record(&jazz(), None, 10).await.unwrap().len(), 1, "{backend}");
    })
    .await;
}

/// The action and its event are one transaction: when the event cannot be written (an
/// outbox that refuses every row, by a trigger), the action is not recorded either, and
/// recording it once the outbox takes rows again records both.
#[tokio::test]
async fn an_action_is_not_recorded_without_its_event() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url, kind) in super::webchat::databases(&dir).await {
        let store = store::open(&super::webchat::config(&url, kind), Outbound::write()).await.expect(backend);
        match kind {
            DatabaseKind::Sqlite => {
                let refuse =
                    "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END";
                hand_edit(&url, kind, refuse).await;
            }
            DatabaseKind::Postgres => {
                let function = "CREATE FUNCTION refuse_outbox() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql";
                hand_edit(&url, kind, function).await;
                let trigger = "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse_outbox()";
                hand_edit(&url, kind, trigger).await;
            }
        }
        assert!(store.record_action(&timeout(0)).await.is_err(), "{backend}: the event cannot be written");
        assert!(store.record_report(&report("t-2", 0)).await.is_err(), "{backend}");
        assert!(store.moderation_record(&jazz(), None, 10).await.unwrap().is_empty(), "{backend}: nor the action");
        let drop = match kind {
            DatabaseKind::Sqlite => "DROP TRIGGER refuse_outbox",
            DatabaseKind::Postgres => "DROP TRIGGER refuse_outbox ON outbox",
        };
        hand_edit(&url, kind, drop).await;
        assert!(store.record_action(&timeout(0)).await.unwrap(), "{backend}: new, as it was never recorded");
        assert_eq!(store.outbox_events().await.unwrap().len(), 1, "{backend}");
        assert_eq!(store.moderation_record(&jazz(), None, 10).await.unwrap().len(), 1, "{backend}");
    }
}

/// Pages of the record: oldest first (ties in time in a stable order), each from the
/// previous one's last entry, only the reservation's own; every kind reads back.
#[tokio::test]
async fn the_record_is_read_oldest_first_a_page_at_a_time() {
    each_backend(|store, backend| async move {
        let blues = ReservationId::parse("blues").unwrap();
        let sub = ViewerKey::Platform(ViewerSub::parse("viewer-9").unwrap());
        let actions = [
            (ModerationAction::Rule { rule: Rule::Links, member: ada(), event_id: Some(event("m1")) }, Actor::Bot, 5),
            (
                ModerationAction::Redaction { member: ada(), event_id: event("m1"), rule: Some(Rule::Links) },
                Actor::Bot,
                5,
            ),
            (
                ModerationAction::Rule {
                    rule: Rule::MaxLength,
                    member: ModeratedMember::web_viewer(sub.clone()),
                    event_id: None,
                },
                Actor::Bot,
                1,
            ),
            (ModerationAction::Mode { mode: ChatMode::HostsOnly, event_id: Some(event("c1")) }, moderator(), 9),
            (ModerationAction::Slow { seconds: 0, event_id: None }, moderator(), 7),
            (ModerationAction::Ban { member: ada(), event_id: Some(event("b1")) }, moderator(), 8),
            (
                ModerationAction::Untimeout { member: ada(), until: t0() + Span::seconds(600), event_id: None },
                Actor::Bot,
                3,
            ),
            (ModerationAction::Unban { member: ada(), event_id: Some(event("u1")) }, moderator(), 10),
        ];
        for (action, actor, seconds) in &actions {
            let new = new_action(jazz(), action.clone(), actor.clone(), *seconds);
            assert!(store.record_action(&new).await.unwrap(), "{backend}: {action:?}");
        }
        let elsewhere = ModerationAction::Slow { seconds: 30, event_id: None };
        store.record_action(&new_action(blues.clone(), elsewhere, moderator(), 0)).await.unwrap();

        let mut pages = Vec::new();
        let mut after: Option<RecordCursor> = None;
        loop {
            let page = store.moderation_record(&jazz(), after.as_ref(), 3).await.unwrap();
            after = page.last().map(|r| r.cursor.clone());
            pages.push(page.iter().map(|r| r.entry.clone()).collect::<Vec<_>>());
            if page.len() < 3 {
                break;
            }
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2], "{backend}");
        let read: Vec<_> = pages.concat();
        let mut expected: Vec<_> =
            actions.iter().map(|(a, actor, s)| new_action(jazz(), a.clone(), actor.clone(), *s).entry()).collect();
        expected.sort_by_key(|e| e.at);
        let times = |entries: &[foyer::model::ModerationEntry]| entries.iter().map(|e| e.at).collect::<Vec<_>>();
        assert_eq!(times(&read), times(&expected), "{backend}: oldest first");
        for entry in &expected {
            assert!(read.contains(entry), "{backend}: {entry:?} reads back as recorded");
        }
        // The two at the same instant come in the same order every time.
        let again = store.moderation_record(&jazz(), None, 100).await.unwrap();
        assert_eq!(again.iter().map(|r| r.entry.clone()).collect::<Vec<_>>(), read, "{backend}");
        let theirs = store.moderation_record(&blues, None, 100).await.unwrap();
        assert_eq!(theirs.len(), 1, "{backend}: another reservation's record is its own");
        let unknown = ReservationId::parse("no-such").unwrap();
        assert!(store.moderation_record(&unknown, None, 100).await.unwrap().is_empty(), "{backend}");
    })
    .await;
}

/// The record is kept as long as transcripts: deleted for reservations archived before
/// the time given, kept for later ones and those not archived.
#[tokio::test]
async fn the_record_goes_with_the_archive_after_the_retention() {
    each_backend(|store, backend| async move {
        let archived_at = t0() + Span::hours(2);
        let folk = ReservationId::parse("folk").unwrap();
        store.record_webhook(&receipt("j"), &upsert_in_channel("jazz", "blue-room")).await.unwrap();
        store.record_webhook(&receipt("f"), &upsert_in_channel("folk", "green-room")).await.unwrap();
        store.record_action(&timeout(0)).await.unwrap();
        store.record_report(&report("t-2", 1)).await.unwrap();
        let folks = new_action(folk.clone(), ModerationAction::Slow { seconds: 10, event_id: None }, moderator(), 0);
        store.record_action(&folks).await.unwrap();
        store.record_step(&jazz(), &StepRecord::Archived, archived_at).await.unwrap();

        assert_eq!(store.prune_moderation_record(archived_at).await.unwrap(), 0, "{backend}: not yet");
        assert_eq!(store.moderation_record(&jazz(), None, 10).await.unwrap().len(), 2, "{backend}");
        let later = archived_at + Span::milliseconds(1);
        assert_eq!(store.prune_moderation_record(later).await.unwrap(), 2, "{backend}");
        assert!(store.moderation_record(&jazz(), None, 10).await.unwrap().is_empty(), "{backend}");
        assert_eq!(store.moderation_record(&folk, None, 10).await.unwrap().len(), 1, "{backend}: not archived");
        assert_eq!(store.prune_moderation_record(later).await.unwrap(), 0, "{backend}");
    })
    .await;
}
