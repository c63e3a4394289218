//! The seeded chaos test. A random but reproducible history of reservations, updates,
//! reschedules, cancellations, ticket grants and revocations and stream signals is
//! delivered duplicated and out of order by a sender that retries on errors, while Foyer
//! is SIGKILLed and restarted and Synapse is stopped and started. At the end, Synapse's
//! state (rooms, members, power levels, archive state, aliases, notices) is compared with
//! the state computed from the history alone; any difference fails.
//!
//! `FOYER_CHAOS_SEED=<u64>` replays a run; the seed is printed either way.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Value, json};

use crate::common::{
    enc,
    foyer::{Delivery, Sender, TestFoyer, envelope},
    random_token,
    synapse::{Slot, Synapse},
    users::TestUser,
};

const RESERVATIONS: usize = 18;
const USERS: usize = 7;
/// A user who holds one ticket per reservation, always revoked (possibly before its
/// grant arrives), never a host and accepting invites: every open room must end without
/// them, so every run checks revocation.
const REVOKEE: usize = USERS - 1;
/// Deliveries and faults happen within this window.
const WINDOW: Duration = Duration::from_secs(60);

/// What a reservation's final revision makes of it by the time the state is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Opens during the window and stays open.
    Open,
    /// Opens, ends and is archived during the window.
    Archived,
    /// Starts tomorrow: no room.
    Scheduled,
}

/// The history of one reservation, and what it must come to.
struct Model {
    id: String,
    fate: Fate,
    cancelled: bool,
    hosts: BTreeSet<usize>,
    /// ticket id -> holder (index into the users).
    granted: BTreeMap<String, usize>,
    revoked: BTreeSet<String>,
}

impl Model {
    /// Users who must be invited or joined while the room is open.
    fn expected_members(&self) -> BTreeSet<usize> {
        let holders = self.granted.iter().filter(|(t, _)| !self.revoked.contains(*t)).map(|(_, u)| *u);
        holders.chain(self.hosts.iter().copied()).collect()
    }

    /// Everyone the history ever named: an archived room may hold no one else.
    fn ever_named(&self, all_hosts: &BTreeSet<usize>) -> BTreeSet<usize> {
        self.granted.values().copied().chain(all_hosts.iter().copied()).collect()
    }
}

/// One webhook to deliver `at` after the window opens.
struct Event {
    at: Duration,
    webhook_id: String,
    body: Vec<u8>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn secs(n: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((n * 1000.0) as i64)
}

/// Builds the history: the models (the expected outcome) and the events (what is sent).
fn history(
    rng: &mut StdRng, run: &str, t0: DateTime<Utc>, users: &[TestUser],
) -> (Vec<Model>, Vec<Event>, BTreeMap<String, BTreeSet<usize>>) {
    let mut models = Vec::new();
    let mut events = Vec::new();
    let mut hosts_ever: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let window = WINDOW.as_secs_f64();
    let at = |rng: &mut StdRng, from: f64, to: f64| Duration::from_secs_f64(rng.random_range(from..to));
    let push = |events: &mut Vec<Event>, when: Duration, kind: &str, data: Value| {
        events.push(Event { at: when, webhook_id: format!("chaos-{}", random_token()), body: envelope(kind, data) });
    };
    for n in 0..RESERVATIONS {
        let id = format!("chaos-{run}-{n:02}");
        let fate = [Fate::Open, Fate::Archived, Fate::Scheduled][n % 3];
        // The final revision's times; earlier revisions only ever open and end later.
        let (opens, open_before, length, close_after) = match fate {
            Fate::Open => (rng.random_range(3.0..40.0), 30.0, 7200.0, 600.0),
            Fate::Archived => (rng.random_range(2.0..15.0), 5.0, rng.random_range(8.0..16.0), 5.0),
            Fate::Scheduled => (86_400.0, 1800.0, 3600.0, 600.0),
        };
        let revisions = rng.random_range(1..=3u64);
        let mut hosts_seen = BTreeSet::new();
        let mut final_hosts = BTreeSet::new();
        for revision in 1..=revisions {
            let later = if revision == revisions { 0.0 } else { rng.random_range(5.0..120.0) };
            let starts = t0 + secs(opens + later + open_before);
            let hosts: BTreeSet<usize> = (0..REVOKEE).filter(|_| rng.random_bool(0.2)).collect();
            hosts_seen.extend(hosts.iter().copied());
            if revision == revisions {
                final_hosts = hosts.clone();
            }
            let data = json!({
                "reservation_id": id, "revision": revision, "title": format!("Chaos {id}"),
                "starts_at": rfc3339(starts), "ends_at": rfc3339(starts + secs(length + later)),
                "stream_url": format!("https://stream.example.org/{id}/{revision}"),
                "hosts": hosts.iter().map(|u| users[*u].user_id.clone()).collect::<Vec<_>>(),
                "chat": {"open_before_seconds": open_before as u64, "close_after_seconds": close_after as u64},
            });
            let kind = if revision == 1 { "reservation.created" } else { "reservation.updated" };
            push(&mut events, at(rng, 0.0, window * 0.5), kind, data);
        }
        hosts_ever.insert(id.clone(), hosts_seen);

        let mut granted = BTreeMap::new();
        let mut revoked = BTreeSet::new();
        for t in 0..rng.random_range(1..=8) {
            let ticket = format!("t{t}");
            let holder = rng.random_range(0..REVOKEE);
            granted.insert(ticket.clone(), holder);
            let data =
                json!({"reservation_id": id, "tickets": [{"ticket_id": ticket, "user_id": users[holder].user_id}]});
            push(&mut events, at(rng, 0.0, window * 0.8), "ticket.granted", data);
            if rng.random_bool(0.3) {
                revoked.insert(ticket.clone());
                push(
                    &mut events,
                    at(rng, 0.0, window * 0.8),
                    "ticket.revoked",
                    json!({"reservation_id": id, "ticket_ids": [ticket]}),
                );
            }
        }

        granted.insert("t-revoked".to_owned(), REVOKEE);
        revoked.insert("t-revoked".to_owned());
        let data =
            json!({"reservation_id": id, "tickets": [{"ticket_id": "t-revoked", "user_id": users[REVOKEE].user_id}]});
        push(&mut events, at(rng, 0.0, window * 0.8), "ticket.granted", data);
        let data = json!({"reservation_id": id, "ticket_ids": ["t-revoked"]});
        push(&mut events, at(rng, 0.0, window * 0.8), "ticket.revoked", data);

        // A stream that starts up to 5 s after the opening and ends 3–8 s later, before the
        // scheduled end (so the end stays `ends_at`); each signal is sent at or after its
        // time, as a platform would, and may still overtake others.
        if fate != Fate::Scheduled && rng.random_bool(0.5) {
            let started = opens + rng.random_range(0.0..5.0);
            let ended = started + rng.random_range(3.0..8.0);
            for (kind, when) in [("stream.started", started), ("stream.ended", ended)] {
                let data = json!({"reservation_id": id, "at": rfc3339(t0 + secs(when))});
                push(&mut events, at(rng, when, when + 5.0), kind, data);
            }
        }
        let cancelled = rng.random_bool(0.25);
        if cancelled {
            push(
                &mut events,
                at(rng, 0.0, window * 0.8),
                "reservation.cancelled",
                json!({"reservation_id": id, "reason": "chaos"}),
            );
        }
        models.push(Model { id, fate, cancelled, hosts: final_hosts, granted, revoked });
    }
    // Duplicates: the same webhook-id again later (a retry after a lost answer), and the
    // same content under a new id (a platform that re-sends).
    let originals = events.len();
    for i in 0..originals {
        if rng.random_bool(0.2) {
            let again = Event {
                at: at(rng, 0.0, window * 0.9),
                webhook_id: events[i].webhook_id.clone(),
                body: events[i].body.clone(),
            };
            events.push(again);
        }
        if rng.random_bool(0.1) {
            let copy = Event {
                at: at(rng, 0.0, window * 0.9),
                webhook_id: format!("chaos-{}", random_token()),
                body: events[i].body.clone(),
            };
            events.push(copy);
        }
    }
    events.shuffle(rng);
    (models, events, hosts_ever)
}

/// Joins every room `user` is invited to, as a ticket holder clicking "Accept" would;
/// errors (Synapse down) are ignored.
async fn accept_invites(http: &reqwest::Client, homeserver: &str, user: &TestUser) {
    let filter = json!({"event_fields": ["type", random_token()]}).to_string();
    let url = format!("{homeserver}/_matrix/client/v3/sync?timeout=0&filter={}", enc(&filter));
    let Ok(resp) = http.get(url).bearer_auth(&user.access_token).send().await else { return };
    let Ok(body) = resp.json::<Value>().await else { return };
    let rooms: Vec<String> =
        body["rooms"]["invite"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    for room in rooms {
        let url = format!("{homeserver}/_matrix/client/v3/join/{}", enc(&room));
        let _ = http.post(url).bearer_auth(&user.access_token).json(&json!({})).send().await;
    }
}

/// Compares Synapse with the history: returns the differences and the number of rooms
/// compared. The bot stays in every room it made (read_only archives keep it), so its
/// joined rooms are all of Foyer's rooms.
async fn compare_with_synapse(
    foyer: &TestFoyer, slot: &Slot, models: &[Model], users: &[TestUser],
    hosts_ever: &BTreeMap<String, BTreeSet<usize>>,
) -> (Vec<String>, usize) {
    let bot = TestUser::bot(slot);
    let mut differences: Vec<String> = Vec::new();
    let mut rooms_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (_, joined) = bot.get("/_matrix/client/v3/joined_rooms").await;
    for room in joined["joined_rooms"].as_array().expect("joined_rooms") {
        let room = room.as_str().expect("room id").to_owned();
        let state = bot.state(&room, "org.foyer.reservation").await;
        if let Some(id) = state.as_ref().and_then(|s| s["reservation_id"].as_str()) {
            rooms_of.entry(id.to_owned()).or_default().push(room);
        }
    }
    let user_index = |user_id: &str| users.iter().position(|u| u.user_id == user_id);
    let mut checked_rooms = 0;
    for m in models {
        let rooms = rooms_of.get(&m.id).cloned().unwrap_or_default();
        let alias = slot.alias(&m.id);
        let resolved = bot.resolve_alias(&alias).await;
        let mut diff =
            |what: String| differences.push(format!("{} ({:?}, cancelled {}): {what}", m.id, m.fate, m.cancelled));
        // An archived or cancelled reservation may never have had its room: its final
        // revision or its cancellation may have arrived before it opened.
        let allowed = match (m.cancelled, m.fate) {
            (false, Fate::Open) => 1..=1,
            (_, Fate::Scheduled) => 0..=0,
            _ => 0..=1,
        };
        if !allowed.contains(&rooms.len()) {
            diff(format!("{} rooms: {rooms:?}", rooms.len()));
        }
        let (_, record) = foyer.reservation(&m.id).await;
        if record["room_id"].as_str() != rooms.first().map(String::as_str) {
            diff(format!("read API room_id {} but Synapse has {rooms:?}", record["room_id"]));
        }
        let open = !m.cancelled && m.fate == Fate::Open;
        match (&resolved, open) {
            (Some(r), true) if rooms.first() == Some(r) => {}
            (None, false) => {}
            _ => diff(format!("alias {alias} resolves to {resolved:?}")),
        }
        for room in &rooms {
            checked_rooms += 1;
            let (_, state) = bot.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(room))).await;
            let mut members = BTreeSet::new();
            let mut strangers = Vec::new();
            for event in state.as_array().cloned().unwrap_or_default() {
                if event["type"] != "m.room.member" || event["state_key"] == slot.bot_user_id() {
                    continue;
                }
                if matches!(event["content"]["membership"].as_str(), Some("invite" | "join")) {
                    let who = event["state_key"].as_str().unwrap_or_default();
                    match user_index(who) {
                        Some(u) => {
                            members.insert(u);
                        }
                        None => strangers.push(who.to_owned()),
                    }
                }
            }
            if !strangers.is_empty() {
                diff(format!("strangers in {room}: {strangers:?}"));
            }
            let levels = bot.state(room, "m.room.power_levels").await.unwrap_or_default();
            let rule = bot.state(room, "m.room.join_rules").await.unwrap_or_default()["join_rule"].clone();
            if open {
                if members != m.expected_members() {
                    diff(format!("members {members:?}, expected {:?}", m.expected_members()));
                }
                let mut moderators: BTreeSet<usize> = BTreeSet::new();
                for (user, level) in levels["users"].as_object().cloned().unwrap_or_default() {
                    if user == slot.bot_user_id() {
                        continue;
                    }
                    match (user_index(&user), level.as_i64()) {
                        (Some(u), Some(50)) => {
                            moderators.insert(u);
                        }
                        (Some(_), Some(0)) => {}
                        _ => diff(format!("power level {level} for {user}")),
                    }
                }
                if moderators != m.hosts {
                    diff(format!("moderators {moderators:?}, hosts {:?}", m.hosts));
                }
                if rule == "public" {
                    diff("an open room is public".into());
                }
            } else {
                let ever = m.ever_named(&hosts_ever[&m.id]);
                if !members.is_subset(&ever) {
                    diff(format!("archived room holds {members:?}, never named beyond {ever:?}"));
                }
                if levels["events_default"] != 100 || levels["invite"] != 100 || rule != "invite" {
                    diff(format!(
                        "not archived: events_default {}, invite {}, join rule {rule}",
                        levels["events_default"], levels["invite"]
                    ));
                }
            }
            // Nothing duplicated: no notice of the bot twice.
            let mut notices = BTreeMap::<String, usize>::new();
            for event in bot.messages(room).await {
                if event["sender"] == slot.bot_user_id() && event["content"]["msgtype"] == "m.notice" {
                    *notices.entry(event["content"]["body"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
                }
            }
            let twice: Vec<_> = notices.iter().filter(|(_, n)| **n > 1).collect();
            if !twice.is_empty() {
                diff(format!("notices posted more than once: {twice:?}"));
            }
        }
    }
    (differences, checked_rooms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seeded_history_with_crashes_and_outages_ends_in_the_expected_state() {
    let _heavy = crate::HEAVY.lock().await;
    let seed: u64 = std::env::var("FOYER_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("chaos: seed {seed} (rerun with FOYER_CHAOS_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let synapse = Arc::new(Synapse::dedicated(1));
    let slot = synapse.take_slot();
    let mut foyer = TestFoyer::spawn(slot.clone(), &slot.config_yaml());
    foyer.wait_ready().await;
    let mut users = Vec::new();
    for _ in 0..USERS {
        users.push(synapse.create_user("chaos").await);
    }

    let run = format!("{seed:x}");
    let run = &run[run.len().saturating_sub(6)..];
    let t0 = Utc::now() + chrono::Duration::seconds(2);
    let (models, events, hosts_ever) = history(&mut rng, run, t0, &users);
    let kills: Vec<Duration> = {
        let mut k: Vec<Duration> = (0..5).map(|_| Duration::from_secs_f64(rng.random_range(4.0..55.0))).collect();
        k.sort();
        k
    };
    let downs: Vec<Duration> = kills.iter().map(|_| Duration::from_secs_f64(rng.random_range(0.2..2.0))).collect();
    let outage_at = Duration::from_secs_f64(rng.random_range(8.0..40.0));
    let outage_for = Duration::from_secs_f64(rng.random_range(2.0..6.0));
    let joiners: Vec<usize> = (0..USERS).filter(|u| u % 2 == 0).collect();

    // Deliveries, each retried by the sender until it gets a 2xx.
    let started = Instant::now() + (t0 - Utc::now()).to_std().unwrap_or_default();
    let sender = Sender::new(&foyer.base_url);
    let deliveries: Vec<_> = events
        .iter()
        .map(|event| {
            let (sender, id, body, due) =
                (sender.clone(), event.webhook_id.clone(), event.body.clone(), started + event.at);
            tokio::spawn(async move {
                tokio::time::sleep_until(due.into()).await;
                sender.deliver(&id, &body, Duration::from_secs(180)).await
            })
        })
        .collect();

    // Faults: Synapse stops and starts; Foyer is SIGKILLed and restarted.
    let outage = {
        let synapse = synapse.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until((started + outage_at).into()).await;
            tokio::task::spawn_blocking(move || {
                synapse.stop();
                std::thread::sleep(outage_for);
                synapse.start_again();
            })
            .await
            .expect("synapse restart");
        })
    };
    let stop_joining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let joining = {
        let (stop, homeserver) = (stop_joining.clone(), synapse.url.clone());
        let joiners: Vec<TestUser> = joiners.iter().map(|u| users[*u].clone()).collect();
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for user in &joiners {
                    accept_invites(&http, &homeserver, user).await;
                }
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
        })
    };
    for (kill, down) in kills.iter().zip(downs.clone()) {
        tokio::time::sleep_until((started + *kill).into()).await;
        foyer.kill();
        tokio::time::sleep(down).await;
        foyer.restart(&[]);
    }
    let mut sent: Vec<Delivery> = Vec::new();
    for delivery in deliveries {
        sent.push(delivery.await.expect("delivery"));
    }
    outage.await.expect("outage");
    foyer.wait_ready().await;
    let delivered = started.elapsed();

    // Quiet: every reservation reaches the phase its history gives, with its members, and
    // Synapse holds what the history gives. The read API can be ahead of the homeserver (a
    // cancellation is `cancelled` at once, its room archived a moment later), so Synapse is
    // compared until it agrees or the time is up; what still differs then fails the test.
    let deadline = Instant::now() + Duration::from_secs(240);
    let (differences, checked_rooms) = loop {
        let mut waiting = Vec::new();
        for m in &models {
            let (_, r) = foyer.reservation(&m.id).await;
            let phase = r["phase"].as_str().unwrap_or("unknown").to_owned();
            let members = r["members"]["invited"].as_u64().unwrap_or(0) + r["members"]["joined"].as_u64().unwrap_or(0);
            let ready = match (m.cancelled, m.fate) {
                (true, _) => phase == "cancelled",
                (false, Fate::Scheduled) => phase == "scheduled",
                (false, Fate::Archived) => phase == "archived",
                (false, Fate::Open) => {
                    matches!(phase.as_str(), "open" | "live" | "ended") && members == m.expected_members().len() as u64
                }
            };
            if !ready {
                waiting.push(format!(
                    "{} ({:?}, cancelled {}): {phase}, {members} members; expected {:?} (hosts {:?}, granted {:?}, revoked {:?}); record {r}",
                    m.id, m.fate, m.cancelled, m.expected_members(), m.hosts, m.granted, m.revoked
                ));
            }
        }
        if waiting.is_empty() {
            let (differences, checked_rooms) = compare_with_synapse(&foyer, &slot, &models, &users, &hosts_ever).await;
            if differences.is_empty() || Instant::now() >= deadline {
                break (differences, checked_rooms);
            }
        } else {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: not settled after 240 s: {waiting:#?}\nlog:\n{}",
                foyer.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    stop_joining.store(true, std::sync::atomic::Ordering::SeqCst);
    joining.await.expect("joiner");
    let settled = started.elapsed();

    let retried = sent.iter().filter(|d| d.attempts > 1).count();
    let unavailable: u32 = sent.iter().map(|d| d.unavailable).sum();
    let connection_errors: u32 = sent.iter().map(|d| d.connection_errors).sum();
    let duplicates = sent.iter().filter(|d| d.status == 200).count();
    let fates = |f: Fate| models.iter().filter(|m| m.fate == f && !m.cancelled).count();
    println!(
        "chaos: seed {seed}: {} reservations ({} open, {} archived, {} scheduled, {} cancelled), {} webhooks delivered \
         ({duplicates} answered duplicate or stale), {retried} retried ({unavailable} 503s, {connection_errors} connection errors); \
         faults: Foyer SIGKILLed {} times at {kills:.1?}, down for {downs:.1?}, Synapse down {outage_for:.1?} at {outage_at:.1?}; \
         delivered in {:.1}s, settled in {:.1}s; {checked_rooms} rooms compared; differences: {}",
        models.len(),
        fates(Fate::Open),
        fates(Fate::Archived),
        fates(Fate::Scheduled),
        models.iter().filter(|m| m.cancelled).count(),
        sent.len(),
        kills.len(),
        delivered.as_secs_f64(),
        settled.as_secs_f64(),
        differences.len(),
    );
    // What made settling slow, if it was: the steps that failed and when they were retried.
    let log = foyer.log();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("lifecycle step failed")).collect();
    println!("chaos: {} lifecycle steps failed and were retried; the last:", failed.len());
    for line in failed.iter().rev().take(8).rev() {
        println!("chaos:   {line}");
    }
    assert!(differences.is_empty(), "seed {seed}: Synapse differs from the history:\n{}", differences.join("\n"));
}
