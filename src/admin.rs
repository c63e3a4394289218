//! Admin commands in Matrix. Users listed in `admins` invite the bot to a room (a
//! direct chat, usually) and write `!foyer help`, `list [phase]`, `show <id>`,
//! `open <id>`, `archive <id>` or `retry <id>`; the bot answers with a notice (HTML and
//! plain text). Anyone else who tries gets a polite refusal; invites from people who
//! are not admins are left unanswered. Reservation rooms are never used for this.

use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, RoomId};

use crate::{
    api,
    events::HomeserverEvent,
    http::AppState,
    lifecycle::room::{self, escape},
    reservation::ReservationId,
    schedule::{self, Phase},
    store::{AdminAction, ReservationRecord, StoreError},
};

/// Lines of `!foyer list` at most; the read API pages through the rest.
const LIST_LIMIT: usize = 25;

/// A parsed `!foyer` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    List(Option<Phase>),
    Show(ReservationId),
    Act(AdminAction, ReservationId),
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
            None => Err(format!("{p:?} is not a phase; use one of {}.", phase_names())),
        },
        ("show", _) => id(arg).map(Command::Show),
        ("open", _) => id(arg).map(|id| Command::Act(AdminAction::OpenNow, id)),
        ("archive", _) => id(arg).map(|id| Command::Act(AdminAction::ArchiveNow, id)),
        ("retry", _) => id(arg).map(|id| Command::Act(AdminAction::Retry, id)),
        ("help", Some(_)) => Err("`!foyer help` takes no argument.".to_owned()),
        _ => Err(format!("I don't know `{verb}`. Try `!foyer help`.")),
    })
}

fn phase_names() -> String {
    Phase::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
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
    ];
    let text = std::iter::once("Foyer admin commands:".to_owned())
        .chain(commands.iter().map(|(c, what)| format!("• {c} — {what}")))
        .chain(std::iter::once(format!("Phases: {}.", phase_names())))
        .collect::<Vec<_>>()
        .join("\n");
    let items: String =
        commands.iter().map(|(c, what)| format!("<li><code>{}</code> — {}</li>", escape(c), escape(what))).collect();
    let html = format!("<p>Foyer admin commands:</p><ul>{items}</ul><p>Phases: {}.</p>", escape(&phase_names()));
    Answer { text, html }
}

pub const REFUSAL: &str = "Sorry, only Foyer's admins can use its commands. \
    If you need one, ask your homeserver admin to add you to `admins` in Foyer's config.";

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

async fn list(state: &AppState, only: Option<Phase>, now: DateTime<Utc>) -> Result<Answer, StoreError> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    api::each_reservation(state, now, |phase, record| {
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

fn show(state: &AppState, record: &ReservationRecord, now: DateTime<Utc>) -> Answer {
    let config = &state.config;
    let r = &record.reservation;
    let times = schedule::schedule(record, &config.rooms);
    let phase = schedule::phase(record, &times, now, record.archived);
    let alias = room::alias(config, record);
    let room = match &record.room_id {
        Some(room_id) => format!("{room_id} ({alias}) https://matrix.to/#/{alias}"),
        None => format!("not created yet; will be {alias}"),
    };
    let rows = [
        ("Title", r.title.as_str().to_owned()),
        ("Phase", phase.as_str().to_owned()),
        ("Starts", format!("{} ({})", schedule::human_time(r.starts_at), schedule::relative(now, r.starts_at))),
        ("Ends", schedule::human_time(r.ends_at)),
        ("Opens", format!("{} ({})", schedule::human_time(times.opens_at), schedule::relative(now, times.opens_at))),
        (
            "Archives",
            format!("{} ({})", schedule::human_time(times.archives_at), schedule::relative(now, times.archives_at)),
        ),
        ("Room", room),
        ("Tickets", format!("{} active, {} revoked", record.tickets.active, record.tickets.revoked)),
        ("Members", format!("{} joined, {} invited", record.members.joined, record.members.invited)),
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

/// Runs a command for an admin.
pub async fn run(state: &AppState, command: Command, now: DateTime<Utc>) -> Result<Answer, StoreError> {
    let not_found = |id: &ReservationId| Answer::plain(format!("There is no reservation `{}`.", id.as_str()));
    match command {
        Command::Help => Ok(help()),
        Command::List(only) => list(state, only, now).await,
        Command::Show(id) => Ok(match state.store.reservation(&id).await? {
            Some(record) => show(state, &record, now),
            None => not_found(&id),
        }),
        Command::Act(action, id) => {
            let Some(record) = state.store.reservation(&id).await? else { return Ok(not_found(&id)) };
            let times = schedule::schedule(&record, &state.config.rooms);
            let phase = schedule::phase(&record, &times, now, record.archived);
            let refused = match (action, phase) {
                (_, Phase::Cancelled) => Some("is cancelled"),
                (AdminAction::OpenNow | AdminAction::ArchiveNow, Phase::Archived) => Some("is already archived"),
                (AdminAction::OpenNow, Phase::Open | Phase::Live | Phase::Ended) if record.room_id.is_some() => {
                    Some("is already open")
                }
                (AdminAction::OpenNow, Phase::Ended) => Some("has ended without a room; its room never opens"),
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

/// Whether an event may be an admin's: an invite (of anyone; the bot's is picked out
/// later) or a message that starts with `!foyer`.
pub fn concerns(event: &HomeserverEvent) -> bool {
    event.membership() == Some("invite")
        || (event.kind == "m.room.message"
            && event.content.get("body").and_then(|b| b.as_str()).is_some_and(|b| parse(b).is_some()))
}

/// Handles the events of one transaction that concern admin commands: invites of the
/// bot, and `!foyer` messages in rooms that are not reservation rooms. Runs after the
/// transaction was answered; a crash meanwhile loses a command, which the admin repeats.
pub async fn handle(state: AppState, events: Vec<HomeserverEvent>) {
    let Some(lifecycle) = state.lifecycle.get().cloned() else { return };
    let client = &lifecycle.client;
    let bot = state.config.bot_user_id();
    for event in events {
        if event.sender == bot.as_str() {
            continue;
        }
        let Ok(room_id) = RoomId::parse(&event.room_id) else { continue };
        let is_admin = state.config.admins.iter().any(|a| a.as_str() == event.sender);
        if event.membership() == Some("invite") && event.state_key.as_deref() == Some(bot.as_str()) {
            // Only an admin's invite is taken; others are left alone, since the bot never
            // acts in a room it has no business in.
            if is_admin {
                match room::join(client, &room_id.to_owned()).await {
                    Ok(()) => tracing::info!(room_id = %room_id, sender = %event.sender, "joined an admin's room"),
                    Err(e) => tracing::warn!(room_id = %room_id, error = %e, "cannot join an admin's room"),
                }
            }
            continue;
        }
        if event.kind != "m.room.message" {
            continue;
        }
        let Some(parsed) = event.content.get("body").and_then(|b| b.as_str()).and_then(parse) else { continue };
        match state.store.manages_room(room_id.as_str()).await {
            Ok(false) => {}
            Ok(true) => continue, // never in a reservation's room
            Err(e) => {
                tracing::warn!(room_id = %room_id, error = %e, "cannot tell whether a room is Foyer's; command ignored");
                continue;
            }
        }
        let answer = match (is_admin, parsed) {
            (false, _) => Answer::plain(REFUSAL),
            (true, Err(help)) => Answer::plain(help),
            (true, Ok(command)) => {
                tracing::info!(room_id = %room_id, sender = %event.sender, command = ?command, "admin command");
                match run(&state, command, Utc::now()).await {
                    Ok(answer) => answer,
                    Err(e) => Answer::plain(format!("The database cannot answer now ({e}); try again in a moment.")),
                }
            }
        };
        reply(client, &room_id, &event.event_id, &answer).await;
    }
}

async fn reply(client: &crate::matrix::MatrixClient, room_id: &OwnedRoomId, event_id: &str, answer: &Answer) {
    // The transaction id follows the command, so a redelivered command is answered once.
    let txn = format!("foyer-admin-{event_id}");
    if let Err(e) = room::notice(client, room_id, &txn, &answer.text, &answer.html).await {
        tracing::warn!(room_id = %room_id, error = %e, "cannot answer an admin command");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ReservationId {
        ReservationId::parse(s).unwrap()
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
    }

    #[test]
    fn answers_escape_html_and_mark_code() {
        let a = Answer::plain("No `<b>` here & there");
        assert_eq!(a.html, "No <code>&lt;b&gt;</code> here &amp; there");
        assert!(help().html.contains("<code>!foyer open &lt;reservation_id&gt;</code>"));
        assert!(help().text.contains("• !foyer retry <reservation_id> — try its failing step again now"));
    }
}
