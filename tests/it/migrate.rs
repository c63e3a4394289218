//! `foyer migrate-store`: a SQLite deployment's state, copied into PostgreSQL, reads back
//! the same through the store.

use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use foyer::{
    config::{DatabaseConfig, DatabaseKind},
    events::HomeserverEvent,
    model::{
        DisplayName, ExternalId, Holder, LogKind, LogPayload, LoggedEntry, Membership, NewLogEntry, NewWebUser,
        Reservation, ReservationId, StepRecord, Ticket, TicketId, Title, ViewerKey, WebhookEvent,
    },
    secret::Secret,
    store::{self, MembershipFact, Receipt},
};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use crate::common::{foyer_bin, postgres::fresh_postgres_database};

fn database(url: &str, kind: DatabaseKind) -> DatabaseConfig {
    DatabaseConfig { url: Secret::new(url), kind, max_connections: None, acquire_timeout: Duration::from_secs(10) }
}

fn seqs(entries: &[LoggedEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn a_sqlite_deployment_moves_to_postgres_intact() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("foyer.db").display());
    let sqlite = store::open(&database(&sqlite_url, DatabaseKind::Sqlite), store::Outbound::Skip).await.unwrap();
    let id = ReservationId::parse("jazz").unwrap();
    let alice = OwnedUserId::try_from("@alice:example.org").unwrap();
    let at = |h| Utc.with_ymd_and_hms(2099, 11, 27, h, 0, 0).unwrap();
    let upsert = WebhookEvent::Upsert(Box::new(Reservation {
        id: id.clone(),
        revision: None,
        title: Title::parse("Jazz").unwrap(),
        description: None,
        starts_at: at(19),
        ends_at: at(21),
        stream_url: None,
        channel: None,
        hosts: vec![alice.clone()],
        open_before_seconds: Some(600),
        close_after_seconds: None,
        transcript: None,
        stream_key: None,
        rules: Default::default(),
        moderators: Vec::new(),
        archive: Default::default(),
        replay_offset: None,
        auto_join: None,
    }));
    let receipt = |id| Receipt { webhook_id: id, received_at: Utc::now() };
    sqlite.record_webhook(&receipt("a"), &upsert).await.unwrap();
    let ticket = Ticket { id: ExternalId::parse("t-1").unwrap(), holder: Holder::User(alice.clone()) };
    sqlite
        .record_webhook(&receipt("b"), &WebhookEvent::TicketsGranted { id: id.clone(), tickets: vec![ticket] })
        .await
        .unwrap();
    let room = OwnedRoomId::try_from("!room:example.org").unwrap();
    let created = StepRecord::RoomCreated {
        room_id: room.clone(),
        hosts: [alice.clone()].into(),
        name: "Jazz".into(),
        topic: "t".into(),
    };
    sqlite.record_step(&id, &created, Utc::now()).await.unwrap();
    sqlite.record_step(&id, &StepRecord::ReminderSent(600), Utc::now()).await.unwrap();
    let fact = MembershipFact {
        event_id: "$1".into(),
        room_id: room.to_string(),
        user_id: alice.clone(),
        membership: Membership::Join,
        sender: alice.to_string(),
        display_name: None,
        knock_claim: None,
        reason: None,
    };
    sqlite.record_memberships(&[fact], Utc::now()).await.unwrap();
    let command = |event_id: &str| HomeserverEvent {
        event_id: event_id.into(),
        room_id: "!dm:example.org".into(),
        kind: "m.room.message".into(),
        sender: alice.to_string(),
        state_key: None,
        content: serde_json::json!({"msgtype": "m.text", "body": "!foyer list"}),
    };
    sqlite.queue_admin_events(&[command("$first"), command("$second")], Utc::now()).await.unwrap();
    sqlite.forget_admin_event("$first").await.unwrap();
    // The web chat's log (with its head), users and bans move; its sessions do not.
    let fan = ViewerKey::Ticket(TicketId::parse("t-1").unwrap());
    let phase = NewLogEntry {
        event_id: None,
        kind: LogKind::Phase,
        payload: LogPayload::parse(r#"{"phase":"live"}"#).unwrap(),
        origin_ts: at(19),
    };
    let log = sqlite.append_web_log(&id, std::slice::from_ref(&phase), at(19)).await.unwrap();
    let web_user = NewWebUser {
        reservation: id.clone(),
        viewer: fan.clone(),
        holder_generation: 2,
        user_id: OwnedUserId::try_from("@_foyer_web_x:example.org").unwrap(),
        display_name: DisplayName::parse("Fan").unwrap(),
        registered_at: at(19),
    };
    let web_user = sqlite.put_web_user(&web_user).await.unwrap();
    sqlite.ban_viewer(&id, &fan, &OwnedEventId::try_from("$ban").unwrap(), at(19)).await.unwrap();
    // Read last: the banned fan's web user is part of what the door reads.
    let before = (sqlite.reservation(&id).await.unwrap(), sqlite.lifecycle_state(&id).await.unwrap());
    assert!(before.1.audience.revoked.contains(&web_user.user_id));
    drop(sqlite);

    let postgres_url = fresh_postgres_database().await;
    let run = |from: &str, to: &str| {
        std::process::Command::new(foyer_bin()).args(["migrate-store", "--from", from, "--to", to]).output().unwrap()
    };
    let out = run(&sqlite_url, &postgres_url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("reservations: 1 rows") && stdout.contains("room_members: 1 rows"), "{stdout}");
    assert!(!stdout.contains(&postgres_url), "the target URL is not echoed");

    let postgres = store::open(&database(&postgres_url, DatabaseKind::Postgres), store::Outbound::Skip).await.unwrap();
    let after = (postgres.reservation(&id).await.unwrap(), postgres.lifecycle_state(&id).await.unwrap());
    assert_eq!(after, before);
    assert_eq!(postgres.web_log_after(&id, 0, 10).await.unwrap(), log);
    assert_eq!(seqs(&postgres.append_web_log(&id, &[phase], at(20)).await.unwrap()), [2], "seqs go on");
    assert_eq!(postgres.web_user(&id, &fan, 2).await.unwrap(), Some(web_user));
    assert!(postgres.viewer_banned(&id, &fan).await.unwrap());
    // A command still waiting in the inbox moves too, and later ones queue after it.
    postgres.queue_admin_events(&[command("$third")], Utc::now()).await.unwrap();
    let inbox: Vec<_> =
        postgres.admin_inbox(10).await.unwrap().into_iter().map(|q| q.event.expect("readable")).collect();
    assert_eq!(inbox, [command("$second"), command("$third")]);

    let again = run(&sqlite_url, &postgres_url);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds Foyer data"));
    let wrong = run(&postgres_url, &sqlite_url);
    assert_eq!(wrong.status.code(), Some(1));
}
