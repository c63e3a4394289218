//! What the bot answers, in plain text and HTML: the help, the refusal, and the words
//! of `list`, `show` and `outbox`.

use chrono::{DateTime, Utc};

use crate::{
    html::escape,
    model::{ReservationRecord, naming},
    outbox::send::OutboxStatus,
    schedule::{self, Phase},
    store::FailingInvite,
};

use super::Services;

/// An answer: plain text and its HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub html: String,
}

impl Answer {
    pub(super) fn plain(text: impl Into<String>) -> Self {
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
pub(super) fn line(
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

pub(super) fn show(
    state: &Services,
    record: &ReservationRecord,
    failures: &[FailingInvite],
    now: DateTime<Utc>,
) -> Answer {
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

/// `!foyer outbox`'s answer.
pub(super) fn outbox(status: &OutboxStatus, configured: bool, now: DateTime<Utc>) -> Answer {
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

#[cfg(test)]
mod tests {
    use super::*;

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
