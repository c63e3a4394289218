//! Every sentence a member, a fan, an admin in Matrix or a page's visitor reads: room
//! notices and the room's own texts (`room.rs`), the answers to `!claim` and the claim
//! page (`claim.rs`), the admin commands' answers (`admin.rs`), the room commands' answers
//! to hosts and moderators (`moderation.rs`), a holder's calendar feed's name
//! (`calendar.rs`), the status page and its
//! login (`pages.rs`), and the words for times (here). Each is a function of typed
//! arguments returning text, HTML or both; callers build no sentence of their own, so
//! another language is one module away. Errors for operators (logs, JSON errors of the
//! HTTP API) are not here.
//!
//! Import rule: this module imports only `model`, `html` (all escaping is there),
//! `config` and `schedule` (for what a reservation's times are) and the outbox's report
//! type (`outbox::OutboxReport`); nothing that does I/O, and nothing that imports it.

pub mod admin;
pub mod announce;
pub mod calendar;
pub mod claim;
pub mod moderation;
pub mod pages;
pub mod room;
pub mod web;

use chrono::{DateTime, Utc};

use crate::html::escape;

/// An answer in Matrix: plain text and its HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub html: String,
}

impl Answer {
    /// `text` as is, and as HTML with its `code` spans marked.
    pub fn plain(text: impl Into<String>) -> Self {
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

/// How far `t` is from `now`, as people say it: `in 3 h 20 min`, `12 min ago`,
/// `in 2 d 4 h`, `in 45 s`. Two units at most, rounded down.
pub fn relative(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let n = secs.unsigned_abs();
    let (d, h, m, s) = (n / 86_400, n % 86_400 / 3600, n % 3600 / 60, n % 60);
    let amount = match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    };
    if secs >= 0 { format!("in {amount}") } else { format!("{amount} ago") }
}

/// A time as people read it in a room: `Fri 27 Nov 2026, 19:00 UTC`.
pub fn human_time(t: DateTime<Utc>) -> String {
    t.format("%a %-d %b %Y, %H:%M UTC").to_string()
}

/// "in 10 minutes", "in 1 minute", "in 30 seconds".
fn in_words(secs: u64) -> String {
    let (n, unit) = if secs < 60 { (secs, "second") } else { (secs.div_ceil(60), "minute") };
    format!("in {n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::test_support::t;

    #[test]
    fn relative_times_read_as_people_say_them() {
        let now = t(12, 0);
        let cases = [
            (now + Duration::seconds(45), "in 45 s"),
            (now + Duration::seconds(59 * 60 + 59), "in 59 min"),
            (now + Duration::minutes(200), "in 3 h 20 min"),
            (now + Duration::hours(2), "in 2 h"),
            (now + Duration::hours(52), "in 2 d 4 h"),
            (now + Duration::days(3), "in 3 d"),
            (now - Duration::minutes(12), "12 min ago"),
            (now, "in 0 s"),
        ];
        for (at, want) in cases {
            assert_eq!(relative(now, at), want);
        }
    }

    #[test]
    fn answers_escape_html_and_mark_code() {
        let a = Answer::plain("No `<b>` here & there");
        assert_eq!(a.html, "No <code>&lt;b&gt;</code> here &amp; there");
    }
}
