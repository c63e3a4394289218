//! Doors open at scale: how long N local ticket holders take to be in their room after
//! `opens_at`, on a Synapse with its default room limits (`rc_joins_per_room`: one join a
//! second, burst 10). Four ways, one after the other, each in a room of its own: every
//! holder accepting their invite at the same moment; each as their invite arrives; each
//! at a random time across the open window; Foyer joining them itself (`rooms.auto_join:
//! local`), while a host joins by themselves in the middle of the window.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::{
    common::{
        enc, eventually,
        foyer::{TestFoyer, metric_in},
        percentile,
        synapse::Synapse,
        unique,
        users::{Accepted, TestUser},
    },
    measure::{machine, write_section},
};

/// Synapse's default `rc_joins_per_room`, which this benchmark leaves as it is.
const ROOM_JOINS_PER_SECOND: f64 = 1.0;
const ROOM_JOIN_BURST: f64 = 10.0;
/// Foyer's default `rooms.join_pace`, which the auto-join run leaves as it is.
const JOIN_PACE: f64 = 0.8;
/// From the reservation's webhook to its doors: time for Foyer to store it and its tickets.
const LEAD: i64 = 15;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// Members of the room with this membership, as the bot sees them.
async fn members(bot: &TestUser, room: &str, membership: &str) -> BTreeSet<String> {
    let path = format!("/_matrix/client/v3/rooms/{}/members?membership={membership}", enc(room));
    let (status, body) = bot.get(&path).await;
    assert_eq!(status, 200, "members of {room}: {body}");
    let chunk = body["chunk"].as_array().cloned().unwrap_or_default();
    chunk.iter().filter_map(|e| e["state_key"].as_str().map(str::to_owned)).collect()
}

/// When each of `users` joined the room, by the homeserver's clock (`origin_server_ts` of
/// their current `m.room.member` join event, unix ms).
async fn join_times(bot: &TestUser, room: &str, users: &BTreeSet<String>) -> BTreeMap<String, i64> {
    let state = bot.room_state(room).await.expect("the bot sees its room's state");
    state
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "join")
        .filter_map(|e| {
            let user = e["state_key"].as_str()?;
            users.contains(user).then(|| (user.to_owned(), e["origin_server_ts"].as_i64().unwrap_or(0)))
        })
        .collect()
}

/// Requests Synapse answered 429 on a join (its access log: `Processed request: … 429
/// "POST /_matrix/client/v3/join/…`), from byte `from` of its log on.
fn refused_joins_in_log(synapse: &Synapse, from: usize) -> usize {
    let log = std::fs::read(synapse.log_path()).unwrap_or_default();
    let log = String::from_utf8_lossy(log.get(from..).unwrap_or_default());
    log.lines().filter(|l| l.contains(" 429 \"POST ") && l.contains("/join/")).count()
}

fn log_len(synapse: &Synapse) -> usize {
    std::fs::metadata(synapse.log_path()).map_or(0, |m| m.len() as usize)
}

/// A reservation of `holders` whose doors open `LEAD` seconds from now and whose show
/// starts `window` later; returns (reservation id, doors, start).
async fn book(
    foyer: &TestFoyer, holders: &[TestUser], hosts: &[&str], window: Duration,
) -> (String, DateTime<Utc>, DateTime<Utc>) {
    let id = unique("doors");
    // Whole seconds, as the webhook carries them.
    let doors = DateTime::from_timestamp(Utc::now().timestamp() + LEAD, 0).expect("a time");
    let starts = doors + chrono::Duration::from_std(window).expect("window");
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    foyer
        .accept(
            "reservation.created",
            json!({"reservation_id": id, "title": "Doors", "starts_at": at(starts),
                   "ends_at": at(starts + chrono::Duration::hours(1)), "hosts": hosts,
                   "chat": {"open_before_seconds": window.as_secs()}}),
        )
        .await;
    let tickets: Vec<Value> =
        holders.iter().enumerate().map(|(i, u)| json!({"ticket_id": format!("t{i}"), "user_id": u.user_id})).collect();
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": tickets})).await;
    (id, doors, starts)
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

/// The figures of one way in.
struct Run {
    way: &'static str,
    /// Seconds from the doors until the last holder joined (homeserver's clock).
    all_in: f64,
    /// Holders joined by `starts_at`.
    by_start: usize,
    /// Seconds from the doors until the first holder joined.
    first_in: f64,
    refusals: u32,
    /// p50, p99 and max of a holder's own time from first request to being in.
    waits: Option<(Duration, Duration, Duration)>,
    synapse_refusals: usize,
    note: String,
}

impl Run {
    fn row(&self, n: usize) -> String {
        let waits = self.waits.map_or("no client action".to_owned(), |(p50, p99, max)| {
            format!("{:.1} s / {:.1} s / {:.1} s", p50.as_secs_f64(), p99.as_secs_f64(), max.as_secs_f64())
        });
        format!(
            "| {} | {:.0} s | {:.0} s | {:.2} | {}/{n} | {} | {} | {waits} |",
            self.way,
            self.first_in,
            self.all_in,
            (n as f64 - 1.0) / (self.all_in - self.first_in).max(0.001),
            self.by_start,
            self.refusals,
            self.synapse_refusals
        )
    }
}

/// Reads when every holder joined, once all of them are in (or fails after `limit`).
async fn settle(
    bot: &TestUser, room: &str, holders: &[TestUser], doors: DateTime<Utc>, starts: DateTime<Utc>, limit: Duration,
) -> (f64, f64, usize) {
    let ids: BTreeSet<String> = holders.iter().map(|u| u.user_id.clone()).collect();
    let times = eventually(limit, &format!("all {} holders joined in {room}", ids.len()), || async {
        let joined = members(bot, room, "join").await;
        if !ids.is_subset(&joined) {
            return None;
        }
        Some(join_times(bot, room, &ids).await)
    })
    .await;
    let doors_ms = doors.timestamp_millis();
    let seconds = |ms: i64| (ms - doors_ms) as f64 / 1000.0;
    let last = times.values().max().copied().unwrap_or(doors_ms);
    let first = times.values().min().copied().unwrap_or(doors_ms);
    let by_start = times.values().filter(|&&t| t <= starts.timestamp_millis()).count();
    (seconds(first), seconds(last), by_start)
}

fn waits(entries: &[Accepted]) -> Option<(Duration, Duration, Duration)> {
    let mut took: Vec<Duration> = entries.iter().map(|e| e.took).collect();
    took.sort();
    Some((percentile(&took, 50.0), percentile(&took, 99.0), *took.last()?))
}

/// When the holders of [`at_the_doors`] ask to join.
#[derive(Clone, Copy, PartialEq)]
enum Moment {
    /// All at the same moment, once every invite is there.
    Together,
    /// Each as soon as their own invite arrives, as a fan waiting in Element would.
    OnArrival,
    /// Each at a random time across the open window.
    Random,
}

/// The ways without `auto_join`: every holder accepts their invite as `moment` says.
async fn at_the_doors(
    foyer: &TestFoyer, synapse: &Synapse, holders: &[TestUser], window: Duration, moment: Moment,
) -> Run {
    use rand::Rng as _;
    let bot = TestUser::bot(&foyer.slot);
    let log_from = log_len(synapse);
    let (id, doors, starts) = book(foyer, holders, &[], window).await;
    let room = foyer.room_id(&id, Duration::from_secs(LEAD as u64 + 60)).await;
    let limit = window + Duration::from_secs(1800);
    let mut clients = Vec::with_capacity(holders.len());
    let accept = |user: TestUser| {
        let (room, bot) = (room.clone(), bot.clone());
        async move { user.accept_invite(&room, &bot, limit).await }
    };
    if moment == Moment::Random {
        for user in holders.iter().cloned() {
            let at = doors + chrono::Duration::milliseconds(rand::rng().random_range(0..window.as_millis() as i64));
            let accepting = accept(user);
            clients.push(tokio::spawn(async move {
                sleep_until(at).await;
                accepting.await
            }));
        }
    } else {
        // One reader of the room's invites for all, rather than one per holder: each
        // accepts once the invites their `moment` waits for are there.
        let (waiting, spawned) = (RefCell::new(holders.to_vec()), RefCell::new(Vec::new()));
        let (waiting, spawned, accept, bot, room) = (&waiting, &spawned, &accept, &bot, &room);
        eventually(Duration::from_secs(300), "every holder's invite", || async move {
            let invited = members(bot, room, "invite").await;
            let mut waiting = waiting.borrow_mut();
            let arrived = match moment {
                Moment::Together if waiting.iter().all(|u| invited.contains(&u.user_id)) => {
                    std::mem::take(&mut *waiting)
                }
                Moment::Together | Moment::Random => Vec::new(),
                Moment::OnArrival => {
                    let (arrived, rest) =
                        std::mem::take(&mut *waiting).into_iter().partition(|u| invited.contains(&u.user_id));
                    *waiting = rest;
                    arrived
                }
            };
            spawned.borrow_mut().extend(arrived.into_iter().map(|user| tokio::spawn(accept(user))));
            waiting.is_empty().then_some(())
        })
        .await;
        clients = spawned.take();
    }
    let invited_after = (Utc::now() - doors).num_milliseconds() as f64 / 1000.0;
    let mut entries = Vec::with_capacity(holders.len());
    for client in clients {
        entries.push(client.await.expect("a holder's client"));
    }
    let (first_in, all_in, by_start) = settle(&bot, &room, holders, doors, starts, Duration::from_secs(60)).await;
    let (way, note) = match moment {
        Moment::Together => {
            ("all accept at the same moment", format!("every invite was out by {invited_after:.0} s after the doors"))
        }
        Moment::OnArrival => (
            "each accepts as their invite arrives",
            format!("every invite was out by {invited_after:.0} s after the doors"),
        ),
        Moment::Random => ("each accepts at a random time in the window", String::new()),
    };
    Run {
        way,
        all_in,
        by_start,
        first_in,
        refusals: entries.iter().map(|e| e.refusals).sum(),
        waits: waits(&entries),
        synapse_refusals: refused_joins_in_log(synapse, log_from),
        note,
    }
}

/// `auto_join`: Foyer joins the holders itself; a host joins by themselves mid-window.
/// Returns the run, the host's own join and Foyer's `foyer_joins_total` for holders.
async fn auto_join(
    foyer: &TestFoyer, synapse: &Synapse, holders: &[TestUser], host: &TestUser, window: Duration,
) -> (Run, Accepted, usize, String) {
    let bot = TestUser::bot(&foyer.slot);
    let log_from = log_len(synapse);
    let (id, doors, starts) = book(foyer, holders, &[&host.user_id], window).await;
    let room = foyer.room_id(&id, Duration::from_secs(LEAD as u64 + 60)).await;
    sleep_until(doors + chrono::Duration::from_std(window / 2).expect("half the window")).await;
    let host_entry = host.accept_invite(&room, &bot, Duration::from_secs(600)).await;
    let joined_at_host = members(&bot, &room, "join").await.len();
    let limit = (starts - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(600);
    let (first_in, all_in, by_start) = settle(&bot, &room, holders, doors, starts, limit).await;
    let text = foyer.metrics_text().await;
    let joins = ["joined", "refused", "failed"]
        .iter()
        .map(|r| {
            let sample = format!("foyer_joins_total{{kind=\"holder\",result=\"{r}\"}}");
            format!("{r} {}", metric_in(&text, &sample).map_or("absent".to_owned(), |v| format!("{v:.0}")))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let run = Run {
        way: "`auto_join: local` (the 429s: the host's)",
        all_in,
        by_start,
        first_in,
        refusals: host_entry.refusals,
        waits: None,
        synapse_refusals: refused_joins_in_log(synapse, log_from),
        note: String::new(),
    };
    (run, host_entry, joined_at_host, joins)
}

/// Synapse's version, as its admin API tells a server admin.
async fn synapse_version(admin: &TestUser) -> String {
    let (status, body) = admin.get("/_synapse/admin/v1/server_version").await;
    assert_eq!(status, 200, "server_version: {body}");
    body["server_version"].as_str().unwrap_or("(unknown)").to_owned()
}

#[tokio::test]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench_doors() {
    let n = env_number("FOYER_BENCH_DOORS_HOLDERS", 300) as usize;
    let window = Duration::from_secs(env_number("FOYER_BENCH_DOORS_WINDOW_SECONDS", 420));
    let ways = std::env::var("FOYER_BENCH_DOORS_WAYS").unwrap_or_else(|_| "together,arrival,spread,auto".to_owned());
    let ways: BTreeSet<&str> = ways.split(',').map(str::trim).collect();
    // Two Foyers (the invites of today, and auto-join) on a Synapse of its own whose only
    // raised limits are registering and logging in.
    let synapse = Synapse::dedicated_with_default_limits(2);
    let doorkeeper = synapse.create_admin().await;
    let mut holders = Vec::with_capacity(4 * n);
    for _ in 0..4 * n {
        holders.push(synapse.create_user("holder").await);
    }
    let host = synapse.create_user("host").await;
    let started = |slot: crate::common::synapse::Slot, extra: String| async move {
        let foyer = TestFoyer::spawn(slot.clone(), &(slot.config_yaml() + &extra));
        foyer.wait_ready().await;
        foyer
    };
    let inviting = started(synapse.take_slot(), String::new()).await;
    let mut runs = Vec::new();
    if ways.contains("together") {
        runs.push(at_the_doors(&inviting, &synapse, &holders[..n], window, Moment::Together).await);
    }
    if ways.contains("arrival") {
        runs.push(at_the_doors(&inviting, &synapse, &holders[n..2 * n], window, Moment::OnArrival).await);
    }
    if ways.contains("spread") {
        runs.push(at_the_doors(&inviting, &synapse, &holders[2 * n..3 * n], window, Moment::Random).await);
    }
    drop(inviting);
    let mut host_line = String::new();
    if ways.contains("auto") {
        let config = format!("rooms:\n  auto_join: local\nsynapse_admin:\n  token: {}\n", doorkeeper.access_token);
        let joining = started(synapse.take_slot(), config).await;
        let (run, host_entry, in_room, joins) = auto_join(&joining, &synapse, &holders[3 * n..], &host, window).await;
        host_line = format!(
            "\n\nThe host joined by themselves at the middle of the auto-join window (once their invite was there): \
             {:.1} s from their first request to being in, {} answers 429 first, {in_room} members in the room \
             then. Foyer's `foyer_joins_total{{kind=\"holder\"}}`: {joins}.",
            host_entry.took.as_secs_f64(),
            host_entry.refusals,
        );
        runs.push(run);
    }
    let version = synapse_version(&doorkeeper).await;
    let pace_bound = (n as f64 - 1.0) / JOIN_PACE;
    let budget_bound = (n as f64 - ROOM_JOIN_BURST).max(0.0) / ROOM_JOINS_PER_SECOND;
    let rows: Vec<String> = runs.iter().map(|r| r.row(n)).collect();
    let notes: String =
        runs.iter().filter(|r| !r.note.is_empty()).map(|r| format!("{}: {}.\n", r.way, r.note)).collect();
    let body = format!(
        "## Doors open at scale\n\n\
         {n} local ticket holders per way, each way in a room of its own, one after the other; the open window \
         (`open_before`) is {window_s} s. Times are from the doors (`opens_at`) by the homeserver's clock \
         (`origin_server_ts` of each holder's join event). The holders' clients retry a 429 after its \
         `retry_after_ms`, as Element does, each once their invite is there (as the bot sees it).\n\n\
         | way | first in | all in | joins a second, first to last | in by `starts_at` | 429s seen by clients | 429s on `/join` in Synapse's log | a holder's own wait p50 / p99 / max |\n\
         |---|---|---|---|---|---|---|---|\n{rows}\n\n{notes}{host_line}\n\n\
         **The homeserver.** Synapse {version} of its own (`Synapse::dedicated_with_default_limits`), with \
         Synapse's default limits except two: `rc_registration` and `rc_login` are raised, because the harness \
         registers {users} users through the shared-secret admin API (the holders' tokens come from that \
         registration; nobody logs in). Neither touches a room. Every room and membership limit is the default: \
         `rc_joins_per_room` ({ROOM_JOINS_PER_SECOND}/s, burst {ROOM_JOIN_BURST}), `rc_joins.local` (0.1/s, burst \
         10 per user), `rc_invites` (per room 0.3/s burst 10, per user 0.003/s burst 5, per issuer 0.3/s burst 10), \
         `rc_message` (0.2/s, burst 10). What Synapse 1.163 does with them (`handlers/room_member.py`, \
         `api/ratelimiting.py`, `handlers/message.py`, `rest/admin/rooms.py`):\n\
         - A local user's join is checked against the room's bucket (`_join_rate_per_room_limiter.ratelimit(…, \
         key=room_id, update=False)` in `update_membership`), after their own per-user bucket \
         (`_join_rate_limiter_local.ratelimit(requester)`, which counts the attempt even when the room then refuses \
         it).\n\
         - The room's bucket is filled by every new join in the room, whoever made it and whether checked or not: \
         `handlers/message.py` calls `notify_user_joined_room` for each join event, and \
         `RoomMemberHandler._on_user_joined_room` records it (`record_action(key=room_id)`).\n\
         - Foyer's registration says `rate_limited: false`, so `Ratelimiter.can_do_action` lets the bot's own \
         invites, messages and room creation through unchecked; the raised-or-not `rc_invites` and `rc_message` \
         do not bind it.\n\
         - The admin join (`POST /_synapse/admin/v1/join/{{room}}`) sends its invite and join with \
         `ratelimit=False`: never checked, but counted in the room's bucket like any join.\n\n\
         **What bounds it.** At {ROOM_JOINS_PER_SECOND} join a second after a burst of {ROOM_JOIN_BURST}, the \
         last of {n} holders who ask one after another gets in no sooner than {budget_bound:.0} s after the first. \
         The room's check is made before a join waits its turn in the room's queue (`member_linearizer`), and the \
         join is counted only once persisted, so requests that arrive within the same moment are checked against \
         the same bucket. Foyer's pace ({JOIN_PACE}/s) takes {pace_bound:.0} s for {n} holders and leaves 0.2 of \
         a join a second of the room's budget to people's own joins.\n\n\
         Measured {}.",
        machine(),
        window_s = window.as_secs(),
        rows = rows.join("\n"),
        users = 4 * n + 2,
    );
    println!("{body}");
    write_section("doors", &body);
}
