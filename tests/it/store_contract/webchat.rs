//! The web chat's store (contract §10), on both backends: sessions, the room log and its
//! sequence, web users, bans.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Duration as Span, TimeZone as _, Utc};
use foyer::{
    config::{DatabaseConfig, DatabaseKind},
    model::{
        DisplayName, EndReason, ExternalId, Holder, LogKind, LogPayload, LoggedEntry, NewLogEntry, NewWebSession,
        NewWebUser, Removal, ReservationId, SessionHash, SessionSource, SessionState, Ticket, TicketId, ViewerKey,
        ViewerSub, WebRole, WebhookEvent,
    },
    secret::Secret,
    store::{self, LogAppended, MAX_WEB_LOG_PAGE, Outbound, Outcome, Receipt, Store, StoreError},
};
use ruma::{OwnedEventId, OwnedUserId};

use super::{each_backend, hand_edit, jazz};
use crate::common::postgres::fresh_postgres_database;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2099, 11, 27, 19, 0, 0).unwrap()
}

fn ticket(id: &str) -> ViewerKey {
    ViewerKey::Ticket(TicketId::parse(id).unwrap())
}

fn platform(sub: &str) -> ViewerKey {
    ViewerKey::Platform(ViewerSub::parse(sub).unwrap())
}

fn blues() -> ReservationId {
    ReservationId::parse("blues").unwrap()
}

fn session(secret: &str, reservation: ReservationId, viewer: ViewerKey, hours: i64) -> NewWebSession {
    NewWebSession {
        hash: SessionHash::of_secret(secret),
        reservation,
        viewer,
        holder_generation: 0,
        name: DisplayName::parse("Fan").unwrap(),
        role: WebRole::Web,
        source: SessionSource::Token,
        created_at: t0(),
        expires_at: t0() + Span::hours(hours),
    }
}

fn event(id: &str) -> Option<OwnedEventId> {
    Some(OwnedEventId::try_from(format!("${id}")).unwrap())
}

fn entry(event_id: Option<OwnedEventId>, kind: LogKind, body: &str) -> NewLogEntry {
    NewLogEntry {
        event_id,
        kind,
        payload: LogPayload::new(&serde_json::json!({ "body": body })).unwrap(),
        origin_ts: t0() + Span::milliseconds(body.len() as i64),
    }
}

fn seqs(entries: &[LoggedEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

fn user(name: &str) -> OwnedUserId {
    OwnedUserId::try_from(format!("@_foyer_web_{name}:example.org")).unwrap()
}

fn web_user(reservation: ReservationId, viewer: ViewerKey, id: &str) -> NewWebUser {
    NewWebUser {
        reservation,
        viewer,
        holder_generation: 0,
        user_id: user(id),
        display_name: DisplayName::parse("Fan").unwrap(),
        registered_at: t0(),
    }
}

/// A SQLite file in `dir` and a fresh PostgreSQL database: (backend, url, kind).
pub(super) async fn databases(dir: &tempfile::TempDir) -> [(&'static str, String, DatabaseKind); 2] {
    [
        ("sqlite", format!("sqlite://{}", dir.path().join("foyer.db").display()), DatabaseKind::Sqlite),
        ("postgres", fresh_postgres_database().await, DatabaseKind::Postgres),
    ]
}

pub(super) fn config(url: &str, kind: DatabaseKind) -> DatabaseConfig {
    DatabaseConfig { url: Secret::new(url), kind, max_connections: Some(4), acquire_timeout: Duration::from_secs(30) }
}

/// Two stores of each backend on one database, as two instances are.
async fn each_backend_twice<F, Fut>(check: F)
where
    F: Fn(Arc<dyn Store>, Arc<dyn Store>, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    for (backend, url, kind) in databases(&dir).await {
        let config = config(&url, kind);
        let a = store::open(&config, Outbound::Skip).await.expect(backend);
        let b = store::open(&config, Outbound::Skip).await.expect(backend);
        check(a, b, backend).await;
    }
}

#[tokio::test]
async fn web_sessions_are_found_by_hash_and_say_why_they_stopped() {
    each_backend(|store, backend| async move {
        let now = t0() + Span::minutes(5);
        let fan = session("s1", jazz(), ticket("t-1"), 24);
        let other = session("s2", jazz(), ticket("t-2"), 24);
        let elsewhere = session("s3", blues(), ticket("t-1"), 24);
        let free = NewWebSession { source: SessionSource::ClaimCode, ..session("s4", jazz(), platform("v-9"), 1) };
        for s in [&fan, &other, &elsewhere, &free] {
            store.create_web_session(s).await.unwrap();
        }
        assert!(store.web_session(&SessionHash::of_secret("nope"), now).await.unwrap().is_none(), "{backend}");
        let read = store.web_session(&fan.hash, now).await.unwrap().expect("stored");
        assert_eq!((&read.session, read.state), (&fan, SessionState::Live), "{backend}: read back as made");
        assert_eq!((read.session.role, read.session.created_at), (WebRole::Web, t0()), "{backend}");
        let read = store.web_session(&free.hash, now).await.unwrap().unwrap();
        assert_eq!((&read.session, read.state), (&free, SessionState::Live), "{backend}");
        assert_eq!(read.session.source, SessionSource::ClaimCode, "{backend}");
        let expired = store.web_session(&free.hash, t0() + Span::hours(1)).await.unwrap().unwrap();
        assert_eq!(expired.state, SessionState::Expired, "{backend}: at its expires_at");

        // The ticket is revoked: its sessions in this reservation end, no other.
        assert_eq!(store.end_web_sessions(&jazz(), &ticket("t-1"), EndReason::Revoked, now).await.unwrap(), 1);
        assert_eq!(store.end_web_sessions(&jazz(), &ticket("t-1"), EndReason::Moved, now).await.unwrap(), 0);
        let ended = SessionState::Ended { at: now, reason: EndReason::Revoked };
        assert_eq!(store.web_session(&fan.hash, now).await.unwrap().unwrap().state, ended, "{backend}");
        // Streams hear of it by reservation, after a time.
        let since = now - Span::seconds(1);
        let heard = store.ended_web_sessions(&jazz(), since).await.unwrap();
        assert_eq!(heard, [(fan.hash.clone(), EndReason::Revoked, now)], "{backend}");
        assert!(store.ended_web_sessions(&jazz(), now).await.unwrap().is_empty(), "{backend}: not after");
        assert!(store.ended_web_sessions(&blues(), since).await.unwrap().is_empty(), "{backend}: another's");
        let later = t0() + Span::hours(30);
        assert_eq!(store.web_session(&fan.hash, later).await.unwrap().unwrap().state, ended, "{backend}");
        for live in [&other, &elsewhere] {
            assert_eq!(store.web_session(&live.hash, now).await.unwrap().unwrap().state, SessionState::Live);
        }
        // An expired session is not ended again.
        let expired_end = store.end_web_sessions(&jazz(), &platform("v-9"), EndReason::Banned, later).await;
        assert_eq!(expired_end.unwrap(), 0, "{backend}");

        // Pruning forgets what ended or expired before the given time.
        assert_eq!(store.prune_web_sessions(now).await.unwrap(), 0, "{backend}");
        assert_eq!(store.prune_web_sessions(now + Span::seconds(1)).await.unwrap(), 1, "{backend}: the ended one");
        assert!(store.web_session(&fan.hash, now).await.unwrap().is_none(), "{backend}");
        assert_eq!(store.prune_web_sessions(t0() + Span::hours(2)).await.unwrap(), 1, "{backend}: the expired one");
        assert!(store.web_session(&other.hash, now).await.unwrap().is_some(), "{backend}");
    })
    .await;
}

#[tokio::test]
async fn the_room_log_counts_without_gaps_logs_an_event_once_and_reads_by_seq() {
    each_backend(|store, backend| async move {
        let now = t0() + Span::seconds(1);
        assert!(store.append_web_log(&jazz(), &[], now).await.unwrap().is_empty(), "{backend}");
        assert_eq!(store.web_log_head(&jazz()).await.unwrap(), 0, "{backend}");
        assert_eq!(store.web_log_oldest_seq(&jazz()).await.unwrap(), None, "{backend}");
        assert!(store.web_log_last(&jazz(), 50).await.unwrap().is_empty(), "{backend}");

        let first = [
            entry(event("a"), LogKind::Message, "one"),
            entry(None, LogKind::Phase, "live"),
            entry(event("b"), LogKind::Edit, "one!"),
        ];
        let logged = store.append_web_log(&jazz(), &first, now).await.unwrap();
        assert_eq!(seqs(&logged), [1, 2, 3], "{backend}");
        let read = store.web_log_after(&jazz(), 0, 10).await.unwrap();
        assert_eq!(read, logged, "{backend}: read back as appended");
        assert_eq!((read[1].event_id.clone(), read[1].kind, read[1].logged_at), (None, LogKind::Phase, now));
        assert_eq!(read[2].payload.as_str(), r#"{"body":"one!"}"#, "{backend}");
        assert_eq!(read[2].origin_ts, t0() + Span::milliseconds(4), "{backend}");

        // A homeserver's retry appends nothing; an event twice in one batch is logged once;
        // another phase change without an event is logged again.
        let again = [
            entry(event("a"), LogKind::Message, "one"),
            entry(event("c"), LogKind::Redaction, "x"),
            entry(event("c"), LogKind::Redaction, "x"),
            entry(None, LogKind::Phase, "live"),
        ];
        let logged = store.append_web_log(&jazz(), &again, now).await.unwrap();
        assert_eq!(seqs(&logged), [4, 5], "{backend}");
        assert_eq!((logged[0].event_id.clone(), logged[1].event_id.clone()), (event("c"), None), "{backend}");
        assert!(store.append_web_log(&jazz(), &first[..1], now).await.unwrap().is_empty(), "{backend}");
        assert_eq!(store.web_log_head(&jazz()).await.unwrap(), 5, "{backend}: a retry takes no seq");

        // Each reservation counts on its own; the same event may be in both.
        let other = store.append_web_log(&blues(), &first[..1], now).await.unwrap();
        assert_eq!(seqs(&other), [1], "{backend}");

        assert_eq!(seqs(&store.web_log_after(&jazz(), 3, 10).await.unwrap()), [4, 5], "{backend}");
        assert_eq!(seqs(&store.web_log_after(&jazz(), 0, 2).await.unwrap()), [1, 2], "{backend}");
        assert!(store.web_log_after(&jazz(), 5, 10).await.unwrap().is_empty(), "{backend}");
        assert!(store.web_log_after(&jazz(), u64::MAX, 10).await.unwrap().is_empty(), "{backend}");
        assert_eq!(seqs(&store.web_log_last(&jazz(), 2).await.unwrap()), [4, 5], "{backend}: oldest first");
        assert_eq!(seqs(&store.web_log_last(&jazz(), 50).await.unwrap()), [1, 2, 3, 4, 5], "{backend}");
        assert!(store.web_log_last(&jazz(), 0).await.unwrap().is_empty(), "{backend}");
        assert_eq!(store.web_log_oldest_seq(&jazz()).await.unwrap(), Some(1), "{backend}");

        // Pruning keeps the newest of each log; the head stays, and seqs go on from it.
        assert_eq!(store.prune_web_log(2).await.unwrap(), 3, "{backend}");
        assert_eq!(store.prune_web_log(2).await.unwrap(), 0, "{backend}");
        assert_eq!(store.web_log_oldest_seq(&jazz()).await.unwrap(), Some(4), "{backend}");
        assert_eq!(store.web_log_oldest_seq(&blues()).await.unwrap(), Some(1), "{backend}: shorter than kept");
        assert_eq!(store.web_log_head(&jazz()).await.unwrap(), 5, "{backend}");
        assert_eq!(seqs(&store.web_log_after(&jazz(), 0, 10).await.unwrap()), [4, 5], "{backend}");
        let next = store.append_web_log(&jazz(), &[entry(event("d"), LogKind::Notice, "n")], now).await.unwrap();
        assert_eq!(seqs(&next), [6], "{backend}");
        // An event pruned away is no longer known: a late retry of it is logged anew.
        assert_eq!(seqs(&store.append_web_log(&jazz(), &first[..1], now).await.unwrap()), [7], "{backend}");
        assert_eq!(store.prune_web_log(0).await.unwrap(), 5, "{backend}: keep none");
        assert_eq!(store.web_log_head(&jazz()).await.unwrap(), 7, "{backend}");
    })
    .await;
}

#[tokio::test]
async fn a_read_of_the_room_log_is_bounded() {
    each_backend(|store, backend| async move {
        let many: Vec<NewLogEntry> = (0..MAX_WEB_LOG_PAGE + 5).map(|_| entry(None, LogKind::Member, "m")).collect();
        let logged = store.append_web_log(&jazz(), &many, t0()).await.unwrap();
        assert_eq!(logged.len(), many.len(), "{backend}");
        let page = store.web_log_after(&jazz(), 0, u32::MAX).await.unwrap();
        assert_eq!(page.len() as u32, MAX_WEB_LOG_PAGE, "{backend}");
        let last = store.web_log_last(&jazz(), u32::MAX).await.unwrap();
        assert_eq!(last.len() as u32, MAX_WEB_LOG_PAGE, "{backend}");
        assert_eq!(last.last().map(|e| e.seq), Some(u64::from(MAX_WEB_LOG_PAGE) + 5), "{backend}: the newest");
    })
    .await;
}

/// Two instances appending to one reservation at once, the homeserver's retries among
/// them: every event once, seqs 1 to n without a gap.
#[tokio::test]
async fn instances_appending_at_once_share_one_gap_free_sequence() {
    each_backend_twice(|a, b, backend| async move {
        let batch = |i: usize| {
            vec![
                entry(event(&format!("e{i}")), LogKind::Message, "m"),
                entry(event(&format!("e{}", i / 2)), LogKind::Message, "retried"),
                entry(None, LogKind::Phase, "p"),
            ]
        };
        let appends = (0..16).map(|i| {
            let (store, entries) = (if i % 2 == 0 { a.clone() } else { b.clone() }, batch(i));
            async move { store.append_web_log(&jazz(), &entries, t0()).await }
        });
        let results = futures_util::future::join_all(appends).await;
        let appended: usize = results.into_iter().map(|r| r.expect(backend).len()).sum();
        let log = a.web_log_after(&jazz(), 0, 1000).await.unwrap();
        assert_eq!(appended, log.len(), "{backend}: what was said appended is what is there");
        assert_eq!(seqs(&log), (1..=log.len() as u64).collect::<Vec<_>>(), "{backend}: no gap");
        let mut events: Vec<_> = log.iter().filter_map(|e| e.event_id.clone()).collect();
        events.sort();
        events.dedup();
        assert_eq!(events.len(), 16, "{backend}: e0 to e15");
        assert_eq!(log.len(), 16 + 16, "{backend}: each event once, and each phase change");
        assert_eq!(b.web_log_head(&jazz()).await.unwrap(), 32, "{backend}");
    })
    .await;
}

/// On PostgreSQL an append that commits is told to every instance listening, with its
/// reservation, in the order of the commits; one that appends nothing (a retry of an
/// event logged already) tells nothing. SQLite has no other instance to tell.
#[tokio::test]
async fn an_append_is_told_to_the_instances_listening_when_it_commits() {
    each_backend_twice(|a, b, backend| async move {
        let Some(mut heard) = b.web_log_appends() else {
            assert_eq!(backend, "sqlite", "only SQLite tells nothing");
            return;
        };
        let next = async |heard: &mut tokio::sync::mpsc::Receiver<LogAppended>| {
            tokio::time::timeout(Duration::from_secs(10), heard.recv()).await.ok().flatten()
        };
        // The listener connects on its own: A appends until B hears one.
        let mut i = 0;
        loop {
            i += 1;
            a.append_web_log(&jazz(), &[entry(event(&format!("j{i}")), LogKind::Message, "m")], t0()).await.unwrap();
            match tokio::time::timeout(Duration::from_millis(200), heard.recv()).await {
                Ok(told) => {
                    assert_eq!(told, Some(LogAppended::To(jazz())), "{backend}");
                    break;
                }
                Err(_) => assert!(i < 50, "{backend}: no append told in {i} tries"),
            }
        }
        // A retry of an event logged already appends nothing and tells nothing: after
        // it, the next told is blues's.
        let retry = a.append_web_log(&jazz(), &[entry(event("j1"), LogKind::Message, "m")], t0()).await.unwrap();
        assert!(retry.is_empty(), "{backend}");
        a.append_web_log(&blues(), &[entry(event("b1"), LogKind::Message, "m")], t0()).await.unwrap();
        loop {
            match next(&mut heard).await {
                // A try told later than the wait for it.
                Some(LogAppended::To(r)) if r == jazz() => {}
                told => {
                    assert_eq!(told, Some(LogAppended::To(blues())), "{backend}");
                    break;
                }
            }
        }
        let retry = a.append_web_log(&jazz(), &[entry(event("j1"), LogKind::Message, "m")], t0()).await.unwrap();
        assert!(retry.is_empty(), "{backend}");
        b.append_web_log(&blues(), &[entry(event("b2"), LogKind::Message, "m")], t0()).await.unwrap();
        assert_eq!(next(&mut heard).await, Some(LogAppended::To(blues())), "{backend}: its own appends too");
    })
    .await;
}

/// A listener whose connection is lost (here ended by the server) says appends may have
/// gone untold, listens again on a new one, and tells the appends after.
#[tokio::test]
async fn a_lost_listener_says_so_and_listens_again() {
    let url = fresh_postgres_database().await;
    let config = config(&url, DatabaseKind::Postgres);
    let a = store::open(&config, Outbound::Skip).await.unwrap();
    let b = store::open(&config, Outbound::Skip).await.unwrap();
    let mut heard = b.web_log_appends().expect("PostgreSQL tells of appends");
    // Appends until one is told (the listener connects on its own, and again after a
    // loss); what was told before it, of earlier tries, is left out.
    let appended_until_told = async |heard: &mut tokio::sync::mpsc::Receiver<LogAppended>, tag: &str| {
        for i in 0..50 {
            a.append_web_log(&jazz(), &[entry(event(&format!("{tag}{i}")), LogKind::Message, "m")], t0())
                .await
                .unwrap();
            if let Ok(told) = tokio::time::timeout(Duration::from_millis(200), heard.recv()).await {
                assert_eq!(told, Some(LogAppended::To(jazz())));
                return;
            }
        }
        panic!("no append told in 50 tries");
    };
    appended_until_told(&mut heard, "first").await;
    hand_edit(
        &url,
        DatabaseKind::Postgres,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .await;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), heard.recv()).await {
            Ok(Some(LogAppended::Untold)) => break,
            // An earlier try's, told late.
            Ok(Some(LogAppended::To(r))) if r == jazz() => {}
            other => panic!("the loss was not told: {other:?}"),
        }
    }
    appended_until_told(&mut heard, "again").await;
}

#[tokio::test]
async fn a_viewer_has_one_web_user_whichever_instance_registers_it() {
    each_backend_twice(|a, b, backend| async move {
        assert!(a.web_user(&jazz(), &ticket("t-1"), 0).await.unwrap().is_none(), "{backend}");
        // Two instances race to register the same viewer, each with an id of its own.
        let (first, second) = futures_util::future::join(
            a.put_web_user(&web_user(jazz(), ticket("t-1"), "aaa")),
            b.put_web_user(&web_user(jazz(), ticket("t-1"), "bbb")),
        )
        .await;
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first, second, "{backend}: both end with the one kept");
        let loser = if first.user_id == user("aaa") { user("bbb") } else { user("aaa") };
        assert!(a.web_user_by_id(&loser).await.unwrap().is_none(), "{backend}");
        assert_eq!(a.web_user(&jazz(), &ticket("t-1"), 0).await.unwrap().as_ref(), Some(&first), "{backend}");
        assert_eq!(b.web_user_by_id(&first.user_id).await.unwrap().as_ref(), Some(&first), "{backend}");
        assert_eq!((first.reservation.clone(), first.viewer.clone()), (jazz(), ticket("t-1")), "{backend}");
        assert_eq!(first.display_name.as_ref().map(DisplayName::as_str), Some("Fan"), "{backend}");
        assert_eq!((first.registered_at, first.joined_at, first.removed), (t0(), None, None), "{backend}");

        // The same ticket in another reservation, and a free show's viewer, are others.
        let free = a.put_web_user(&web_user(jazz(), platform("t-1"), "ccc")).await.unwrap();
        assert_eq!(free.user_id, user("ccc"), "{backend}");
        a.put_web_user(&web_user(blues(), ticket("t-1"), "ddd")).await.unwrap();
        // A Matrix ID that is another viewer's is refused.
        let taken = a.put_web_user(&web_user(jazz(), ticket("t-9"), "ccc")).await;
        assert!(matches!(taken, Err(StoreError::Refused { .. })), "{backend}: {taken:?}");
        assert!(a.web_user(&jazz(), &ticket("t-9"), 0).await.unwrap().is_none(), "{backend}");

        let (joined, kicked) = (t0() + Span::minutes(1), t0() + Span::minutes(2));
        assert!(a.web_user_joined(&first.user_id, joined).await.unwrap(), "{backend}");
        let read = a.web_user_by_id(&first.user_id).await.unwrap().unwrap();
        assert_eq!((read.joined_at, read.removed), (Some(joined), None), "{backend}");
        assert!(a.web_user_removed(&first.user_id, Removal::Kicked, kicked).await.unwrap(), "{backend}");
        let read = a.web_user_by_id(&first.user_id).await.unwrap().unwrap();
        assert_eq!((read.joined_at, read.removed), (Some(joined), Some((Removal::Kicked, kicked))), "{backend}");
        assert!(a.web_user_joined(&first.user_id, kicked).await.unwrap(), "{backend}");
        assert_eq!(a.web_user_by_id(&first.user_id).await.unwrap().unwrap().removed, None, "{backend}");
        assert!(a.web_user_removed(&free.user_id, Removal::Left, kicked).await.unwrap(), "{backend}");
        let read = a.web_user_by_id(&free.user_id).await.unwrap().unwrap();
        assert_eq!(read.removed, Some((Removal::Left, kicked)), "{backend}");
        assert!(!a.web_user_joined(&user("nobody"), joined).await.unwrap(), "{backend}: no web user");
        assert!(!a.web_user_removed(&user("nobody"), Removal::Left, joined).await.unwrap(), "{backend}");

        // The archive clears the names of this reservation's web users only: first it
        // asks which still have one.
        let mut named = vec![first.user_id.clone(), free.user_id.clone()];
        named.sort();
        assert_eq!(a.named_web_users(&jazz()).await.unwrap(), named, "{backend}");
        assert_eq!(a.clear_web_user_names(&jazz()).await.unwrap(), 2, "{backend}");
        assert_eq!(a.named_web_users(&jazz()).await.unwrap(), Vec::<ruma::OwnedUserId>::new(), "{backend}");
        assert_eq!(a.named_web_users(&blues()).await.unwrap(), [user("ddd")], "{backend}");
        assert_eq!(a.clear_web_user_names(&jazz()).await.unwrap(), 0, "{backend}");
        assert_eq!(a.web_user(&jazz(), &ticket("t-1"), 0).await.unwrap().unwrap().display_name, None, "{backend}");
        assert!(a.web_user(&blues(), &ticket("t-1"), 0).await.unwrap().unwrap().display_name.is_some(), "{backend}");
        // Registering again after the archive returns the user kept, nameless.
        let again = a.put_web_user(&web_user(jazz(), ticket("t-1"), "eee")).await.unwrap();
        assert_eq!((again.user_id, again.display_name), (first.user_id, None), "{backend}");
    })
    .await;
}

#[tokio::test]
async fn a_ban_holds_for_its_viewer_in_its_reservation_until_lifted() {
    each_backend(|store, backend| async move {
        let ban = OwnedEventId::try_from("$ban").unwrap();
        assert!(!store.viewer_banned(&jazz(), &ticket("t-1")).await.unwrap(), "{backend}");
        assert!(store.ban_viewer(&jazz(), &ticket("t-1"), &ban, t0()).await.unwrap(), "{backend}");
        assert!(!store.ban_viewer(&jazz(), &ticket("t-1"), &ban, t0()).await.unwrap(), "{backend}: once");
        assert!(store.ban_viewer(&jazz(), &platform("v-1"), &ban, t0()).await.unwrap(), "{backend}");
        assert!(store.viewer_banned(&jazz(), &ticket("t-1")).await.unwrap(), "{backend}");
        assert!(store.viewer_banned(&jazz(), &platform("v-1")).await.unwrap(), "{backend}");
        for (reservation, viewer) in [(blues(), ticket("t-1")), (jazz(), ticket("t-2")), (jazz(), platform("t-1"))] {
            assert!(!store.viewer_banned(&reservation, &viewer).await.unwrap(), "{backend}: {viewer:?}");
        }
        assert!(store.unban_viewer(&jazz(), &ticket("t-1")).await.unwrap(), "{backend}");
        assert!(!store.unban_viewer(&jazz(), &ticket("t-1")).await.unwrap(), "{backend}");
        assert!(!store.viewer_banned(&jazz(), &ticket("t-1")).await.unwrap(), "{backend}");
        assert!(store.viewer_banned(&jazz(), &platform("v-1")).await.unwrap(), "{backend}");
    })
    .await;
}

/// A row that does not read back is `Corrupt`, never a panic.
#[tokio::test]
async fn an_unreadable_webchat_row_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url, kind) in databases(&dir).await {
        let store = store::open(&config(&url, kind), Outbound::Skip).await.expect(backend);
        let fan = session("s1", jazz(), ticket("t-1"), 24);
        store.create_web_session(&fan).await.unwrap();
        store.append_web_log(&jazz(), &[entry(None, LogKind::Phase, "p")], t0()).await.unwrap();
        store.put_web_user(&web_user(jazz(), ticket("t-1"), "aaa")).await.unwrap();
        hand_edit(&url, kind, "UPDATE webchat_sessions SET role = 'admin'").await;
        hand_edit(&url, kind, "UPDATE webchat_log SET payload = '{'").await;
        hand_edit(&url, kind, "UPDATE webchat_users SET viewer_kind = 'email'").await;
        let read = store.web_session(&fan.hash, t0()).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{backend}: {read:?}");
        let read = store.web_log_last(&jazz(), 50).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{backend}: {read:?}");
        let read = store.web_user_by_id(&user("aaa")).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{backend}: {read:?}");
    }
}

/// A ticket of jazz held by `@<holder>:example.org`.
fn held(ticket: &str, holder: &str) -> Ticket {
    let holder = OwnedUserId::try_from(format!("@{holder}:example.org")).unwrap();
    Ticket { id: ExternalId::parse(ticket).unwrap(), holder: Holder::User(holder) }
}

async fn webhook(store: &dyn Store, webhook_id: &str, event: WebhookEvent) {
    let receipt = Receipt { webhook_id, received_at: t0() };
    assert_eq!(store.record_webhook(&receipt, &event).await.unwrap(), Outcome::Accepted, "{webhook_id}");
}

fn grant(tickets: Vec<Ticket>) -> WebhookEvent {
    WebhookEvent::TicketsGranted { id: jazz(), tickets }
}

fn revoke(ticket: &str) -> WebhookEvent {
    WebhookEvent::TicketsRevoked { id: jazz(), ticket_ids: vec![ExternalId::parse(ticket).unwrap()] }
}

#[tokio::test]
async fn the_audience_counts_the_web_users_of_current_holders_and_platform_viewers() {
    each_backend(|store, backend| async move {
        webhook(&*store, "g", grant(vec![held("t-dana", "dana"), held("t-erin", "erin"), held("t-finn", "finn")]))
            .await;
        webhook(&*store, "g2", grant(vec![held("t-gail", "gail")])).await;
        let ban = OwnedEventId::try_from("$ban").unwrap();
        for (viewer, id) in [
            (ticket("t-dana"), "dana"),
            (ticket("t-erin"), "erin"),
            (ticket("t-finn"), "finn"),
            (ticket("t-gail"), "gail"),
            (ticket("t-none"), "none"),
            (platform("v-1"), "v1"),
        ] {
            store.put_web_user(&web_user(jazz(), viewer, id)).await.unwrap();
        }
        // Another reservation's web user is not in this one's audience.
        store.put_web_user(&web_user(blues(), ticket("t-dana"), "blues")).await.unwrap();
        let state = store.lifecycle_state(&jazz()).await.unwrap();
        let all: std::collections::BTreeSet<_> = ["dana", "erin", "finn", "gail", "v1"].map(user).into();
        assert_eq!(state.audience.web, all, "{backend}: t-none has no ticket");

        // Erin's ticket is revoked, Finn's moves to Hal, Gail is banned.
        webhook(&*store, "r", revoke("t-erin")).await;
        webhook(&*store, "m", grant(vec![held("t-finn", "hal")])).await;
        store.ban_viewer(&jazz(), &ticket("t-gail"), &ban, t0()).await.unwrap();
        let state = store.lifecycle_state(&jazz()).await.unwrap();
        assert_eq!(state.audience.web, ["dana", "v1"].map(user).into(), "{backend}");
        assert!(state.audience.revoked.contains(&user("erin")) && state.audience.revoked.contains(&user("gail")));
        assert!(!state.audience.revoked.contains(&user("finn")), "{backend}: moved, not revoked");
        assert!(!state.audience.holders.iter().any(|u| u.localpart().starts_with("_foyer_web_")), "{backend}");

        // The ticket's generation: Hal's web user is another, and may be there.
        let generation = |t: &str| {
            let store = store.clone();
            let t = TicketId::parse(t).unwrap();
            async move { store.ticket_generation(&jazz(), &t).await.unwrap() }
        };
        assert_eq!(generation("t-dana").await, Some(0), "{backend}");
        assert_eq!(generation("t-finn").await, Some(1), "{backend}");
        assert_eq!((generation("t-erin").await, generation("t-none").await), (None, None), "{backend}");
        let hal = NewWebUser { holder_generation: 1, ..web_user(jazz(), ticket("t-finn"), "hal") };
        assert_eq!(store.put_web_user(&hal).await.unwrap().holder_generation, 1, "{backend}");
        assert_eq!(store.web_user(&jazz(), &ticket("t-finn"), 0).await.unwrap().unwrap().user_id, user("finn"));
        assert_eq!(store.web_user(&jazz(), &ticket("t-finn"), 1).await.unwrap().unwrap().user_id, user("hal"));
        let state = store.lifecycle_state(&jazz()).await.unwrap();
        assert_eq!(state.audience.web, ["dana", "hal", "v1"].map(user).into(), "{backend}");
        // Lifting the ban lets Gail's stay again.
        store.unban_viewer(&jazz(), &ticket("t-gail")).await.unwrap();
        assert!(store.lifecycle_state(&jazz()).await.unwrap().audience.web.contains(&user("gail")), "{backend}");
    })
    .await;
}

#[tokio::test]
async fn revoking_or_moving_a_ticket_ends_its_web_sessions_with_the_fact() {
    use foyer::model::{ClaimKey, Email, EmailClaim};
    let key = ClaimKey::from_secret(b"contract");
    each_backend(|store, backend| {
        let key = &key;
        async move {
            let email = Email::parse("fan@example.org").unwrap();
            let t4 = ExternalId::parse("t-4").unwrap();
            let claim = EmailClaim::new(key, &jazz(), &t4, &email);
            let by_email = Ticket { id: t4, holder: Holder::Email { claim, email, display_name: None } };
            webhook(&*store, "g", grant(vec![held("t-1", "ann"), held("t-2", "bo"), held("t-3", "cy"), by_email]))
                .await;
            let sessions = [
                session("s1", jazz(), ticket("t-1"), 24),
                session("s2", jazz(), ticket("t-2"), 24),
                session("s3", jazz(), ticket("t-3"), 24),
                session("s4", jazz(), ticket("t-4"), 24),
                session("s5", blues(), ticket("t-1"), 24),
            ];
            for s in &sessions {
                store.create_web_session(s).await.unwrap();
            }
            store.put_web_user(&web_user(jazz(), ticket("t-4"), "dee")).await.unwrap();
            webhook(&*store, "r", revoke("t-1")).await;
            // t-2 moves; t-3 is granted to its holder again; t-4's email holder is given
            // their user ID (a correction: the same holder, a new generation).
            webhook(&*store, "m", grant(vec![held("t-2", "eve"), held("t-3", "cy"), held("t-4", "dee")])).await;
            let state = |i: usize| {
                let store = store.clone();
                let hash = sessions[i].hash.clone();
                async move { store.web_session(&hash, t0()).await.unwrap().unwrap() }
            };
            assert_eq!(state(0).await.state, SessionState::Ended { at: t0(), reason: EndReason::Revoked }, "{backend}");
            assert_eq!(state(1).await.state, SessionState::Ended { at: t0(), reason: EndReason::Moved }, "{backend}");
            assert_eq!(state(2).await.state, SessionState::Live, "{backend}: the same holder again");
            let corrected = state(3).await;
            assert_eq!((corrected.state, corrected.session.holder_generation), (SessionState::Live, 1), "{backend}");
            assert_eq!(state(4).await.state, SessionState::Live, "{backend}: another reservation's");
            // The corrected holder keeps their web user, now of the ticket's generation.
            let t4 = TicketId::parse("t-4").unwrap();
            assert_eq!(store.ticket_generation(&jazz(), &t4).await.unwrap(), Some(1), "{backend}");
            assert!(store.web_user(&jazz(), &ticket("t-4"), 0).await.unwrap().is_none(), "{backend}");
            assert_eq!(store.web_user(&jazz(), &ticket("t-4"), 1).await.unwrap().unwrap().user_id, user("dee"));
            assert!(store.lifecycle_state(&jazz()).await.unwrap().audience.web.contains(&user("dee")), "{backend}");
            // A revocation heard again ends nothing new.
            webhook(&*store, "r2", revoke("t-1")).await;
            assert_eq!(state(0).await.state, SessionState::Ended { at: t0(), reason: EndReason::Revoked }, "{backend}");
        }
    })
    .await;
}
