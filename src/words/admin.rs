//! What the bot answers admins in Matrix: the help, the refusal to others, the commands'
//! mistakes, and the words of `list`, `show`, `outbox` and the actions.

use chrono::{DateTime, Utc};

use super::{Answer, code_spans, human_time, relative};
use crate::{
    config::Config,
    html::escape,
    model::{FailingInvite, ReservationId, ReservationRecord, naming},
    outbox::OutboxReport,
    schedule::{self, Phase},
};

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

/// What is wrong with a `!foyer` line, said to the admin who wrote it.
pub mod mistake {
    use super::Phase;

    pub fn one_word_at_most(verb: &str) -> String {
        format!("`!foyer {verb}` takes one word at most. Try `!foyer help`.")
    }

    pub fn needs_id(verb: &str) -> String {
        format!("`!foyer {verb}` needs a reservation id, like `!foyer {verb} jazz-night`.")
    }

    pub fn not_an_id(id: &str, error: &str) -> String {
        format!("{id:?} is not a reservation id: {error}.")
    }

    pub fn not_a_phase(word: &str) -> String {
        format!("{word:?} is not a phase; use one of {}.", Phase::names())
    }

    pub fn not_an_outbox_command(word: &str) -> String {
        format!("{word:?} is not an outbox command; use `!foyer outbox` or `!foyer outbox resume`.")
    }

    pub fn help_takes_nothing() -> String {
        "`!foyer help` takes no argument.".to_owned()
    }

    pub fn unknown(verb: &str) -> String {
        format!("I don't know `{verb}`. Try `!foyer help`.")
    }
}

/// A command or claim that failed on data that does not read back, with the error.
pub fn cannot_answer(error: &dyn std::fmt::Display) -> Answer {
    Answer::plain(format!("Foyer cannot answer that: {error}"))
}

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

/// One reservation's line in `list`, as text and HTML.
pub fn line(record: &ReservationRecord, phase: Phase, now: DateTime<Utc>, config: &Config) -> (String, String) {
    let times = schedule::schedule(record, &config.rooms);
    let r = &record.reservation;
    let when = match phase {
        Phase::Scheduled => format!("opens {}", relative(now, times.opens_at)),
        Phase::Open | Phase::Live | Phase::Ended => format!("archives {}", relative(now, times.archives_at)),
        Phase::Archived | Phase::Cancelled => format!("starts_at {}", human_time(r.starts_at)),
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

/// `list`'s answer: `total` reservations (of phase `only`, if given), of which `lines`
/// are shown (see [`line`]).
pub fn list(only: Option<Phase>, total: usize, lines: &[(String, String)]) -> Answer {
    let what = only.map_or("reservations".to_owned(), |p| format!("{} reservations", p.as_str()));
    if lines.is_empty() {
        return Answer::plain(format!("No {what}."));
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
    Answer { text, html: format!("<p>{}</p><ul>{items}</ul>", escape(&head)) }
}

/// `show`'s answer: one reservation in full, with the holders who cannot be invited
/// (`failures`: user and error).
pub fn show(config: &Config, record: &ReservationRecord, failures: &[FailingInvite], now: DateTime<Utc>) -> Answer {
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
        ("Starts", format!("{} ({})", human_time(r.starts_at), relative(now, r.starts_at))),
        ("Ends", human_time(r.ends_at)),
        ("Opens", format!("{} ({})", human_time(times.opens_at), relative(now, times.opens_at))),
        ("Archives", format!("{} ({})", human_time(times.archives_at), relative(now, times.archives_at))),
        ("Room", room),
        ("Tickets", tickets_words(record)),
        ("Members", format!("{} joined, {} invited", record.members.joined, record.members.invited)),
        (
            "Cannot invite",
            if failures.is_empty() {
                "nobody".to_owned()
            } else {
                failures.iter().map(|f| format!("{} ({})", f.user_id, f.error)).collect::<Vec<_>>().join("; ")
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

/// There is no reservation `id`.
pub fn not_found(id: &ReservationId) -> Answer {
    Answer::plain(format!("There is no reservation `{}`.", id.as_str()))
}

/// `!foyer outbox`'s answer.
pub fn outbox(report: &OutboxReport) -> Answer {
    let OutboxReport::On { paused, waiting, oldest, now } = *report else {
        return Answer::plain("No `platform.webhook_url` is configured: Foyer sends no events.");
    };
    let state =
        if paused { "paused (the platform answered 410 Gone); `!foyer outbox resume` sends again" } else { "sending" };
    let oldest = match oldest {
        Some(at) => format!(", the oldest written {}", relative(now, at)),
        None => String::new(),
    };
    Answer::plain(format!("Outbox: {state}; {waiting} event(s) waiting{oldest}."))
}

/// `!foyer outbox resume`'s answer: whether delivery was paused.
pub fn outbox_resumed(was_paused: bool) -> Answer {
    Answer::plain(if was_paused {
        "Delivery to the platform resumed: the paused events are sent now."
    } else {
        "Delivery to the platform was not paused; nothing to resume."
    })
}

/// Why an action cannot be done on a reservation in its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Cancelled,
    AlreadyArchived,
    AlreadyOpen,
    EndedWithoutRoom,
}

/// An action refused: nothing is done.
pub fn action_refused(id: &ReservationId, why: Refused) -> Answer {
    let why = match why {
        Refused::Cancelled => "is cancelled",
        Refused::AlreadyArchived => "is already archived",
        Refused::AlreadyOpen => "is already open",
        Refused::EndedWithoutRoom => "has ended without a room; its room never opens",
    };
    Answer::plain(format!("`{}` {why}; nothing to do.", id.as_str()))
}

/// `open` recorded: the lifecycle opens the room now.
pub fn opening_now(id: &ReservationId) -> Answer {
    Answer::plain(format!("Opening the room of `{}` now.", id.as_str()))
}

/// `archive` recorded: the lifecycle archives the room now.
pub fn archiving_now(id: &ReservationId) -> Answer {
    Answer::plain(format!("Archiving the room of `{}` now.", id.as_str()))
}

/// `retry` recorded: the lifecycle tries again now.
pub fn retrying_now(id: &ReservationId) -> Answer {
    Answer::plain(format!("Retrying `{}` now.", id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::send::OutboxStatus;

    #[test]
    fn the_outbox_answer_says_paused_and_how_many_wait() {
        let now = Utc::now();
        let status = OutboxStatus { depth: 3, oldest: Some(now - chrono::Duration::minutes(5)), paused: true };
        let text = outbox(&OutboxReport::new(&status, true, now)).text;
        assert!(text.contains("paused") && text.contains("`!foyer outbox resume`"), "{text}");
        assert!(text.contains("3 event(s) waiting, the oldest written 5 min ago"), "{text}");
        let idle = outbox(&OutboxReport::new(&OutboxStatus::default(), true, now)).text;
        assert_eq!(idle, "Outbox: sending; 0 event(s) waiting.");
        assert!(outbox(&OutboxReport::new(&status, false, now)).text.contains("No `platform.webhook_url`"));
    }

    #[test]
    fn the_help_marks_code() {
        assert!(help().html.contains("<code>!foyer open &lt;reservation_id&gt;</code>"));
        assert!(help().text.contains("• !foyer retry <reservation_id> — try its failing step again now"));
    }
}
