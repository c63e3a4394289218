//! Admin commands in Matrix. Users listed in `admins` invite the bot to a room (a
//! direct chat, usually) and write `!foyer help`, `list [phase]`, `show <id>`,
//! `open <id>`, `archive <id>` or `retry <id>`; the bot answers with a notice (HTML and
//! plain text). Anyone else who tries gets a polite refusal. Anyone may also open a
//! direct chat with the bot to claim a ticket with `!claim CODE` ([`claim`]); the bot
//! checks that it is one, answers claims only there, and leaves it once it is idle, grows
//! or is left ([`direct`]). Other invites from people who are not admins are left
//! unanswered. Reservation rooms are never used for this. Answers are paced per room.
//!
//! The appservice transaction keeps the events that concern this module in the store's
//! admin inbox before it is answered; [`serve`] handles them and drops each once done.

pub mod claim;
pub mod direct;

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use ruma::{OwnedUserId, RoomId, UserId};
use tokio::sync::{Notify, watch};

use crate::{
    config::Config,
    events::HomeserverEvent,
    html::escape,
    matrix::{MatrixClient, MatrixError, rooms},
    model::{ReservationId, ReservationRecord, naming},
    outbox::send::OutboxStatus,
    query,
    schedule::{self, Phase},
    store::{AdminAction, Store, StoreError},
};

/// What the admin commands need, handed in by `startup` (not the HTTP state: commands
/// arrive through the appservice API but are worked off on their own).
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// Wakes the lifecycle after an admin's action is stored.
    pub wake: Arc<Notify>,
    /// Woken when a homeserver transaction queued admin events.
    pub inbox: Arc<Notify>,
    /// Wrong claim codes of late, by user; knocks count here too.
    pub claims: Arc<claim::Throttle>,
    /// The pace of the bot's answers, per room.
    pub pace: Arc<direct::Pace>,
}

/// Lines of `!foyer list` at most; the read API pages through the rest.
const LIST_LIMIT: usize = 25;

/// A parsed `!foyer` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    List(Option<Phase>),
    Show(ReservationId),
    Act(AdminAction, ReservationId),
    /// `!foyer outbox`: the outbound events' state.
    Outbox,
    /// `!foyer outbox resume`: ends a pause a `410` began.
    OutboxResume,
}

/// Reads a message body: `None` when it is not meant for Foyer, `Err` with a helpful
/// answer when it is but cannot be understood.
pub fn parse(body: &str) -> Option<Result<Command, String>> {
    let mut words = body.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("!foyer") {
        return None;
    }
    let verb = words.next().unwrap_or("help").to_ascii_lowercase();
    let arg = words.next();
    if words.next().is_some() {
        return Some(Err(format!("`!foyer {verb}` takes one word at most. Try `!foyer help`.")));
    }
    let id = |arg: Option<&str>| match arg {
        None => Err(format!("`!foyer {verb}` needs a reservation id, like `!foyer {verb} jazz-night`.")),
        Some(id) => ReservationId::parse(id).map_err(|e| format!("{id:?} is not a reservation id: {e}.")),
    };
    Some(match (verb.as_str(), arg) {
        ("help", None) => Ok(Command::Help),
        ("list", None) => Ok(Command::List(None)),
        ("list", Some(p)) => match Phase::parse(p) {
            Some(phase) => Ok(Command::List(Some(phase))),
            None => Err(format!("{p:?} is not a phase; use one of {}.", Phase::names())),
        },
        ("show", _) => id(arg).map(Command::Show),
        ("open", _) => id(arg).map(|id| Command::Act(AdminAction::OpenNow, id)),
        ("archive", _) => id(arg).map(|id| Command::Act(AdminAction::ArchiveNow, id)),
        ("retry", _) => id(arg).map(|id| Command::Act(AdminAction::Retry, id)),
        ("outbox", None) => Ok(Command::Outbox),
        ("outbox", Some(w)) if w.eq_ignore_ascii_case("resume") => Ok(Command::OutboxResume),
        ("outbox", Some(w)) => {
            Err(format!("{w:?} is not an outbox command; use `!foyer outbox` or `!foyer outbox resume`."))
        }
        ("help", Some(_)) => Err("`!foyer help` takes no argument.".to_owned()),
        _ => Err(format!("I don't know `{verb}`. Try `!foyer help`.")),
    })
}

/// An answer: plain text and its HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub html: String,
}

impl Answer {
    fn plain(text: impl Into<String>) -> Self {
        let text = text.into();
        let html = code_spans(&escape(&text));
        Self { text, html }
    }
}

/// `a `b` c` → `a <code>b</code> c` (the text is already escaped).
fn code_spans(escaped: &str) -> String {
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

pub fn help() -> Answer {
    let commands = [
        ("!foyer help", "this list"),
        ("!foyer list [phase]", "reservations, optionally only one phase"),
        ("!foyer show <reservation_id>", "one reservation: times, room, members, last error"),
        ("!foyer open <reservation_id>", "open its room now"),
        ("!foyer archive <reservation_id>", "archive its room now"),
        ("!foyer retry <reservation_id>", "try its failing step again now"),
        ("!foyer outbox", "the events to the platform: waiting, oldest, paused or not"),
        ("!foyer outbox resume", "send again after the platform answered 410 Gone"),
    ];
    let text = std::iter::once("Foyer admin commands:".to_owned())
        .chain(commands.iter().map(|(c, what)| format!("• {c} — {what}")))
        .chain(std::iter::once(format!("Phases: {}.", Phase::names())))
        .collect::<Vec<_>>()
        .join("\n");
    let items: String =
        commands.iter().map(|(c, what)| format!("<li><code>{}</code> — {}</li>", escape(c), escape(what))).collect();
    let html = format!("<p>Foyer admin commands:</p><ul>{items}</ul><p>Phases: {}.</p>", escape(&Phase::names()));
    Answer { text, html }
}

pub const REFUSAL: &str = "Sorry, only Foyer's admins can use its commands. \
    If you need one, ask your homeserver admin to add you to `admins` in Foyer's config.";

/// `3 active, 1 revoked`, and how many holders cannot be invited.
fn tickets_words(record: &ReservationRecord) -> String {
    let t = &record.tickets;
    let uninvitable = if t.uninvitable > 0 { format!(", {} cannot be invited", t.uninvitable) } else { String::new() };
    let unclaimed = if t.unclaimed > 0 { format!(", {} unclaimed", t.unclaimed) } else { String::new() };
    format!("{} active, {} revoked{unclaimed}{uninvitable}", t.active, t.revoked)
}

/// A phase as `!foyer show` says it: `scheduled (opening)`, `ended (archiving)`.
fn phase_words(status: schedule::Status) -> String {
    let coming = match (status.opening, status.archiving) {
        (true, _) => " (opening)",
        (_, true) => " (archiving)",
        _ => "",
    };
    format!("{}{coming}", status.phase.as_str())
}

/// One reservation's line in `list`.
fn line(
    record: &ReservationRecord,
    phase: Phase,
    now: DateTime<Utc>,
    config: &crate::config::Config,
) -> (String, String) {
    let times = schedule::schedule(record, &config.rooms);
    let r = &record.reservation;
    let when = match phase {
        Phase::Scheduled => format!("opens {}", schedule::relative(now, times.opens_at)),
        Phase::Open | Phase::Live | Phase::Ended => format!("archives {}", schedule::relative(now, times.archives_at)),
        Phase::Archived | Phase::Cancelled => format!("starts_at {}", schedule::human_time(r.starts_at)),
    };
    let failing = record.last_error.as_ref().map(|_| " — failing").unwrap_or("");
    let text = format!("{} — {} — {} — {when}{failing}", r.id.as_str(), r.title.as_str(), phase.as_str());
    let html = format!(
        "<code>{}</code> — {} — <b>{}</b> — {}{}",
        escape(r.id.as_str()),
        escape(r.title.as_str()),
        phase.as_str(),
        escape(&when),
        if failing.is_empty() { "" } else { " — <b>failing</b>" }
    );
    (text, html)
}

async fn list(state: &Services, only: Option<Phase>, now: DateTime<Utc>) -> Result<Answer, StoreError> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    query::each_reservation(state.store.as_ref(), &state.config.rooms, now, |phase, record| {
        if only.is_none_or(|want| want == phase) {
            total += 1;
            if lines.len() < LIST_LIMIT {
                lines.push(line(record, phase, now, &state.config));
            }
        }
    })
    .await?;
    let what = only.map_or("reservations".to_owned(), |p| format!("{} reservations", p.as_str()));
    if lines.is_empty() {
        return Ok(Answer::plain(format!("No {what}.")));
    }
    let more = if total > lines.len() {
        format!(" (the first {}; the read API lists all)", lines.len())
    } else {
        String::new()
    };
    let head = format!("{total} {what}{more}:");
    let text =
        std::iter::once(head.clone()).chain(lines.iter().map(|(t, _)| format!("• {t}"))).collect::<Vec<_>>().join("\n");
    let items: String = lines.iter().map(|(_, h)| format!("<li>{h}</li>")).collect();
    Ok(Answer { text, html: format!("<p>{}</p><ul>{items}</ul>", escape(&head)) })
}

/// How many holders who cannot be invited `show` names.
const SHOWN_FAILURES: u32 = 20;

fn show(state: &Services, record: &ReservationRecord, failures: &[(String, String)], now: DateTime<Utc>) -> Answer {
    let config = &state.config;
    let r = &record.reservation;
    let (times, status) = schedule::at(record, &config.rooms, now);
    let alias = config.room_alias(&r.id);
    let room = match &record.room_id {
        Some(room_id) => format!("{room_id} ({alias}) {}", naming::matrix_to(&alias)),
        None => format!("not created yet; will be {alias}"),
    };
    let rows = [
        ("Title", r.title.as_str().to_owned()),
        ("Phase", phase_words(status)),
        ("Starts", format!("{} ({})", schedule::human_time(r.starts_at), schedule::relative(now, r.starts_at))),
        ("Ends", schedule::human_time(r.ends_at)),
        ("Opens", format!("{} ({})", schedule::human_time(times.opens_at), schedule::relative(now, times.opens_at))),
        (
            "Archives",
            format!("{} ({})", schedule::human_time(times.archives_at), schedule::relative(now, times.archives_at)),
        ),
        ("Room", room),
        ("Tickets", tickets_words(record)),
        ("Members", format!("{} joined, {} invited", record.members.joined, record.members.invited)),
        (
            "Cannot invite",
            if failures.is_empty() {
                "nobody".to_owned()
            } else {
                failures.iter().map(|(user, error)| format!("{user} ({error})")).collect::<Vec<_>>().join("; ")
            },
        ),
        (
            "Last error",
            match &record.last_error {
                Some(e) => format!(
                    "{e} ({} failed attempts; `!foyer retry {}` tries again now)",
                    record.attempts,
                    r.id.as_str()
                ),
                None => "none".to_owned(),
            },
        ),
    ];
    let text = std::iter::once(format!("Reservation {}", r.id.as_str()))
        .chain(rows.iter().map(|(k, v)| format!("{k}: {v}")))
        .collect::<Vec<_>>()
        .join("\n");
    let items: String =
        rows.iter().map(|(k, v)| format!("<tr><th>{k}</th><td>{}</td></tr>", code_spans(&escape(v)))).collect();
    let html = format!("<p>Reservation <code>{}</code></p><table>{items}</table>", escape(r.id.as_str()));
    Answer { text, html }
}

/// `!foyer outbox`'s answer.
fn outbox(status: &OutboxStatus, configured: bool, now: DateTime<Utc>) -> Answer {
    if !configured {
        return Answer::plain("No `platform.webhook_url` is configured: Foyer sends no events.");
    }
    let state = if status.paused {
        "paused (the platform answered 410 Gone); `!foyer outbox resume` sends again"
    } else {
        "sending"
    };
    let oldest = match status.oldest {
        Some(at) => format!(", the oldest written {}", schedule::relative(now, at)),
        None => String::new(),
    };
    Answer::plain(format!("Outbox: {state}; {} event(s) waiting{oldest}.", status.depth))
}

/// Runs a command for an admin.
pub async fn run(state: &Services, command: Command, now: DateTime<Utc>) -> Result<Answer, StoreError> {
    let not_found = |id: &ReservationId| Answer::plain(format!("There is no reservation `{}`.", id.as_str()));
    match command {
        Command::Help => Ok(help()),
        Command::List(only) => list(state, only, now).await,
        Command::Show(id) => Ok(match state.store.reservation(&id).await? {
            Some(record) => show(state, &record, &state.store.invite_failures(&id, SHOWN_FAILURES).await?, now),
            None => not_found(&id),
        }),
        Command::Outbox => Ok(outbox(&state.store.outbox_status().await?, state.config.platform.is_some(), now)),
        Command::OutboxResume => {
            let was_paused = state.store.resume_outbox(now).await?;
            crate::outbox::send::wake();
            tracing::info!(was_paused, "admin resumed the outbox");
            Ok(Answer::plain(if was_paused {
                "Delivery to the platform resumed: the paused events are sent now."
            } else {
                "Delivery to the platform was not paused; nothing to resume."
            }))
        }
        Command::Act(action, id) => {
            let Some(record) = state.store.reservation(&id).await? else { return Ok(not_found(&id)) };
            let (times, status) = schedule::at(&record, &state.config.rooms, now);
            let due = schedule::due_phase(&record, &times, now);
            let refused = match (action, status.phase) {
                (_, Phase::Cancelled) => Some("is cancelled"),
                (AdminAction::OpenNow | AdminAction::ArchiveNow, Phase::Archived) => Some("is already archived"),
                (AdminAction::OpenNow, Phase::Open | Phase::Live | Phase::Ended) if record.room_id.is_some() => {
                    Some("is already open")
                }
                (AdminAction::OpenNow, _) if due == Phase::Ended && record.room_id.is_none() => {
                    Some("has ended without a room; its room never opens")
                }
                _ => None,
            };
            if let Some(why) = refused {
                return Ok(Answer::plain(format!("`{}` {why}; nothing to do.", id.as_str())));
            }
            if !state.store.admin_action(&id, action, now).await? {
                return Ok(not_found(&id));
            }
            state.wake.notify_one();
            tracing::info!(reservation_id = %id, action = ?action, "admin command recorded");
            let done = match action {
                AdminAction::OpenNow => "Opening the room of `{id}` now.",
                AdminAction::ArchiveNow => "Archiving the room of `{id}` now.",
                AdminAction::Retry => "Retrying `{id}` now.",
            };
            Ok(Answer::plain(done.replace("{id}", id.as_str())))
        }
    }
}

/// Whether an event goes to the admin inbox: an admin's invite of the bot, anyone's
/// invite of the bot to a direct chat (to claim a ticket), or a `!foyer` or `!claim`
/// message from anyone but the bot (a stranger's `!foyer` is answered with a refusal).
/// Other invites never do, since the bot does not act in rooms it has no business in.
pub fn concerns(event: &HomeserverEvent, bot: &UserId, admins: &[OwnedUserId]) -> bool {
    if event.sender == bot.as_str() {
        return false;
    }
    if event.membership() == Some("invite") {
        let direct = event.content.get("is_direct").and_then(|d| d.as_bool()) == Some(true);
        return event.state_key.as_deref() == Some(bot.as_str()) && (direct || is_admin(admins, &event.sender));
    }
    event.kind == "m.room.message"
        && event
            .content
            .get("body")
            .and_then(|b| b.as_str())
            .is_some_and(|b| parse(b).is_some() || claim::parse(b).is_some())
}

/// What of a transaction's `events` the admin inbox keeps, as it keeps it: the events
/// [`concerns`] takes, a claim line kept as its code's hash (no code rests in plain
/// text, contract §7), and the membership changes that end a stranger's direct chat
/// ([`direct::change_ends_chat`]; one look in the store per room with such changes).
pub async fn kept_in_inbox(
    events: &[HomeserverEvent],
    bot: &UserId,
    admins: &[OwnedUserId],
    store: &dyn Store,
) -> Result<Vec<HomeserverEvent>, StoreError> {
    let mut kept = Vec::new();
    let mut openers: HashMap<&str, Option<String>> = HashMap::new();
    for event in events {
        if concerns(event, bot, admins) {
            let mut event = event.clone();
            if event.kind == "m.room.message"
                && let Some(content) = claim::kept_content(&event.content)
            {
                event.content = content;
            }
            kept.push(event);
            continue;
        }
        let member = event.kind == "m.room.member" && event.state_key.as_deref() != Some(bot.as_str());
        if !member || !matches!(event.membership(), Some("join" | "invite" | "knock" | "leave" | "ban")) {
            continue;
        }
        let opener = match openers.get(event.room_id.as_str()) {
            Some(opener) => opener.clone(),
            None => {
                let opener = store.direct_chat_opener(&event.room_id).await?;
                openers.insert(event.room_id.as_str(), opener.clone());
                opener
            }
        };
        if opener.is_some_and(|opener| direct::change_ends_chat(event, bot, &opener).is_some()) {
            kept.push(event.clone());
        }
    }
    Ok(kept)
}

fn is_admin(admins: &[OwnedUserId], user: &str) -> bool {
    admins.iter().any(|a| a.as_str() == user)
}

/// How long the inbox waits before trying an event again that failed for a reason
/// that passes (the homeserver or the database is down).
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// An event still failing this long after it came is given up (logged and dropped),
/// so that, say, an invite to a room whose server is gone does not wait for ever.
const GIVE_UP_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// How often the inbox looks without being woken: another instance, or one that died,
/// may have queued what nobody woke this one for.
const POLL_EVERY: Duration = Duration::from_secs(30);
/// Events read from the inbox at a time.
const PAGE: u32 = 32;

/// Why the inbox stopped short; the event stays and is tried again.
#[derive(Debug, thiserror::Error)]
enum Unfinished {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}

/// Works through the admin inbox until `stop`: at once (what a crash left behind) and
/// whenever a transaction queues events (`Services::admin_wake`). The appservice
/// transaction stores the events before it is answered and each is dropped only once
/// handled, so a crash loses no command. One handled twice is answered once: the
/// answer's transaction id is the command's event id, and Synapse keeps transaction
/// ids for about 30 minutes (not across its own restarts).
pub async fn serve(state: Services, client: MatrixClient, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = claim::leave_idle(&state, &client).await {
            tracing::warn!(error = %e, "cannot look for idle direct chats now");
        }
        let retry = match drain(&state, &client).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = RETRY_AFTER.as_secs(), "cannot finish an admin command now");
                Some(RETRY_AFTER)
            }
        };
        tokio::select! {
            _ = state.inbox.notified() => {}
            _ = tokio::time::sleep(retry.unwrap_or(POLL_EVERY)) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Handles every event in the inbox once; the first failure that may pass is returned
/// after the rest were tried, and its event stays for the next round.
async fn drain(state: &Services, client: &MatrixClient) -> Result<(), Unfinished> {
    loop {
        let page = state.store.admin_inbox(PAGE).await?;
        let full = page.len() == PAGE as usize;
        let mut waiting = None;
        for queued in page {
            let outcome = match &queued.event {
                Ok(event) => handle(state, client, event).await,
                Err(e) => {
                    tracing::error!(event_id = %queued.event_id, error = %e, "an admin inbox event is unreadable; dropped");
                    Ok(())
                }
            };
            match outcome {
                Ok(()) => {}
                Err(e) if Utc::now() - queued.received_at < GIVE_UP_AFTER => {
                    waiting.get_or_insert(e);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(event_id = %queued.event_id, error = %e, "an admin event still fails after 10 minutes; dropped");
                }
            }
            state.store.forget_admin_event(&queued.event_id).await?;
        }
        match waiting {
            Some(e) => return Err(e),
            None if !full => return Ok(()),
            None => {}
        }
    }
}

/// Handles one inbox event: joins an admin's room or a stranger's direct chat, leaves a
/// direct chat that ended, or answers a command. Fails only for what may pass; what the
/// homeserver refuses for good is logged and dropped.
async fn handle(state: &Services, client: &MatrixClient, event: &HomeserverEvent) -> Result<(), Unfinished> {
    let Ok(room_id) = RoomId::parse(&event.room_id) else { return Ok(()) };
    let settle = |outcome: Result<(), Unfinished>, what: &str| match outcome {
        Err(Unfinished::Matrix(e)) if !e.is_transient() => {
            tracing::warn!(room_id = %room_id, error = %e, "cannot {what}; dropped");
            Ok(())
        }
        other => other,
    };
    let admin = is_admin(&state.config.admins, &event.sender);
    let sender = UserId::parse(&event.sender).ok();
    if event.kind == "m.room.member" {
        let bot = state.config.bot_user_id();
        if event.state_key.as_deref() != Some(bot.as_str()) {
            return settle(direct::member_changed(state, client, event).await, "leave a direct chat");
        }
        if event.membership() != Some("invite") {
            return Ok(());
        }
        let joined = match (admin, &sender) {
            (true, _) => rooms::join(client, &room_id).await.map_err(Unfinished::from).map(|()| {
                // An admin's room stays: it is never counted or left.
                tracing::info!(room_id = %room_id, sender = %event.sender, "joined an admin's room");
            }),
            (false, Some(sender)) => direct::invited(state, client, &room_id, sender).await,
            (false, None) => Ok(()),
        };
        return settle(joined, "join a direct chat");
    }
    let Some(body) = event.content.get("body").and_then(|b| b.as_str()) else { return Ok(()) };
    let (parsed, claimed) = (parse(body), claim::from_inbox(&event.content));
    if (parsed.is_none() && claimed.is_none()) || state.store.manages_room(room_id.as_str()).await? {
        return Ok(()); // never in a reservation's room
    }
    // Claims are answered only in a stranger's direct chat that the bot checked was one.
    if claimed.is_some() && state.store.direct_chat_opener(room_id.as_str()).await?.is_none() {
        tracing::info!(room_id = %room_id, "a claim outside a direct chat; not answered");
        return Ok(());
    }
    // Admins are trusted with the bot's voice; everyone else is answered at a pace.
    if !admin && !state.pace.allow(&room_id, std::time::Instant::now()) {
        metrics::counter!("foyer_admin_answers_held_back_total").increment(1);
        tracing::info!(room_id = %room_id, "answer held back: each room is answered at a bounded pace");
        return Ok(());
    }
    let answer = match (admin, parsed, claimed, &sender) {
        (_, _, Some(code), Some(sender)) => {
            state.store.direct_chat_used(room_id.as_str(), Utc::now()).await?;
            match claim::claim(state, sender, code, Utc::now()).await {
                Ok(answer) => answer,
                Err(e @ StoreError::Unavailable(_)) => return Err(e.into()),
                Err(e) => Answer::plain(format!("Foyer cannot answer that: {e}")),
            }
        }
        (_, None, _, _) => return Ok(()),
        (false, Some(Ok(Command::Help)), _, _) => claim::help(),
        (false, Some(_), _, _) => Answer::plain(REFUSAL),
        (true, Some(Err(help)), _, _) => Answer::plain(help),
        (true, Some(Ok(command)), _, _) => {
            tracing::info!(room_id = %room_id, sender = %event.sender, command = ?command, "admin command");
            match run(state, command, Utc::now()).await {
                Ok(answer) => answer,
                // The database is back soon: the command waits for it.
                Err(e @ StoreError::Unavailable(_)) => return Err(e.into()),
                // Data that does not read back stays so; waiting would block the commands after it.
                Err(e) => Answer::plain(format!("Foyer cannot answer that: {e}")),
            }
        }
    };
    crate::failpoint::hit("admin_before_answer");
    // The transaction id follows the command, so a command handled again is answered once.
    let txn = format!("foyer-admin-{}", event.event_id);
    let sent = rooms::notice(client, &state.config.bot_user_id(), &room_id, &txn, &answer.text, &answer.html).await;
    settle(sent.map_err(Unfinished::from), "answer an admin command")?;
    crate::failpoint::hit("admin_after_answer");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_support::user;

    fn id(s: &str) -> ReservationId {
        ReservationId::parse(s).unwrap()
    }

    #[test]
    fn the_inbox_takes_admins_invites_of_the_bot_and_commands_from_anyone_but_the_bot() {
        let (bot, admin, stranger) = (user("foyer"), user("admin"), user("stranger"));
        let admins = [admin.clone()];
        let event = |sender: &OwnedUserId, kind: &str, state_key: Option<&OwnedUserId>, content| HomeserverEvent {
            event_id: "$e".into(),
            room_id: "!dm:example.org".into(),
            kind: kind.into(),
            sender: sender.to_string(),
            state_key: state_key.map(|u| u.to_string()),
            content,
        };
        let invite = |sender, invitee| event(sender, "m.room.member", Some(invitee), json!({"membership": "invite"}));
        let says =
            |sender, body: &str| event(sender, "m.room.message", None, json!({"msgtype": "m.text", "body": body}));
        let taken = |e: HomeserverEvent| concerns(&e, &bot, &admins);
        assert!(taken(invite(&admin, &bot)));
        assert!(!taken(invite(&stranger, &bot)), "a stranger's invite is left alone");
        let direct = event(&stranger, "m.room.member", Some(&bot), json!({"membership": "invite", "is_direct": true}));
        assert!(taken(direct), "but not a direct chat: anyone may claim a ticket");
        assert!(taken(says(&stranger, "!claim ABCDE-FGHJK-MNPQR")));
        assert!(taken(says(&stranger, "!claim")), "answered with how to claim");
        assert!(!taken(invite(&admin, &stranger)), "only invites of the bot");
        assert!(taken(says(&admin, "!foyer list")));
        assert!(taken(says(&stranger, "!foyer open jazz")), "a stranger is refused, so it is taken");
        assert!(taken(says(&admin, "!foyer dance")), "answered with help");
        assert!(!taken(says(&admin, "hello")));
        assert!(!taken(says(&bot, "!foyer help")), "never the bot's own messages");
    }

    #[test]
    fn commands_parse_and_other_messages_are_not_for_foyer() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("!foyerx help"), None);
        assert_eq!(parse("!foyer"), Some(Ok(Command::Help)));
        assert_eq!(parse("!FOYER Help"), Some(Ok(Command::Help)));
        assert_eq!(parse("!foyer list"), Some(Ok(Command::List(None))));
        assert_eq!(parse("!foyer list open"), Some(Ok(Command::List(Some(Phase::Open)))));
        assert_eq!(parse("!foyer show jazz"), Some(Ok(Command::Show(id("jazz")))));
        assert_eq!(parse("  !foyer   open  jazz "), Some(Ok(Command::Act(AdminAction::OpenNow, id("jazz")))));
        assert_eq!(parse("!foyer archive jazz"), Some(Ok(Command::Act(AdminAction::ArchiveNow, id("jazz")))));
        assert_eq!(parse("!foyer retry jazz"), Some(Ok(Command::Act(AdminAction::Retry, id("jazz")))));
        assert_eq!(parse("!foyer outbox"), Some(Ok(Command::Outbox)));
        assert_eq!(parse("!foyer outbox Resume"), Some(Ok(Command::OutboxResume)));
    }

    #[test]
    fn bad_commands_get_an_answer_that_says_what_is_wrong() {
        let err = |body: &str| parse(body).expect("for foyer").expect_err("refused");
        assert!(
            err("!foyer list soon").contains("\"soon\" is not a phase; use one of scheduled"),
            "{}",
            err("!foyer list soon")
        );
        assert!(err("!foyer show").contains("needs a reservation id"));
        assert!(err("!foyer open a/b").contains("is not a reservation id"));
        assert!(err("!foyer dance").contains("I don't know `dance`"));
        assert!(err("!foyer show a b").contains("takes one word at most"));
        assert!(err("!foyer outbox flush").contains("\"flush\" is not an outbox command"));
    }

    #[test]
    fn the_outbox_answer_says_paused_and_how_many_wait() {
        let now = Utc::now();
        let status = OutboxStatus { depth: 3, oldest: Some(now - chrono::Duration::minutes(5)), paused: true };
        let text = outbox(&status, true, now).text;
        assert!(text.contains("paused") && text.contains("`!foyer outbox resume`"), "{text}");
        assert!(text.contains("3 event(s) waiting, the oldest written 5 min ago"), "{text}");
        let idle = outbox(&OutboxStatus::default(), true, now).text;
        assert_eq!(idle, "Outbox: sending; 0 event(s) waiting.");
        assert!(outbox(&status, false, now).text.contains("No `platform.webhook_url`"));
    }

    #[test]
    fn answers_escape_html_and_mark_code() {
        let a = Answer::plain("No `<b>` here & there");
        assert_eq!(a.html, "No <code>&lt;b&gt;</code> here &amp; there");
        assert!(help().html.contains("<code>!foyer open &lt;reservation_id&gt;</code>"));
        assert!(help().text.contains("• !foyer retry <reservation_id> — try its failing step again now"));
    }
}
