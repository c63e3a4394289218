//! What a channel's followers read in its announcements room (docs/followers.md), and
//! that room's name and topic.

use chrono::{DateTime, Utc};

use super::{human_time, in_words};
use crate::{html::escape, model::ReservationRecord};

/// The announcements room's name.
pub fn room_name(channel_name: &str) -> String {
    format!("{channel_name} · announcements")
}

pub fn room_topic(channel_name: &str) -> String {
    format!("Reminders and live notices of {channel_name}'s shows. Only Foyer posts here.")
}

/// A link, as text and as HTML.
fn linked(label: &str, url: &str) -> (String, String) {
    (format!("{label}: {url}"), format!("{label}: <a href=\"{0}\">{0}</a>", escape(url)))
}

fn with_links(text: String, links: &[(&str, &str)]) -> (String, String) {
    let mut html = escape(&text);
    let mut plain = text;
    for (label, url) in links {
        let (t, h) = linked(label, url);
        plain.push_str(&format!(" {t}"));
        html.push_str(&format!(" {h}"));
    }
    (plain, html)
}

/// A reminder `before_secs` before the start, with the room's link.
pub fn reminder(record: &ReservationRecord, before_secs: u64, chat: &str) -> (String, String) {
    let title = record.reservation.title.as_str();
    let when = human_time(record.reservation.starts_at);
    let soon = if before_secs >= 3600 && before_secs.is_multiple_of(3600) {
        let hours = before_secs / 3600;
        format!("in {hours} hour{}", if hours == 1 { "" } else { "s" })
    } else {
        in_words(before_secs)
    };
    with_links(format!("⏰ “{title}” starts {soon} ({when})."), &[("Chat", chat)])
}

/// A reminded show moved.
pub fn moved(record: &ReservationRecord, to: DateTime<Utc>) -> (String, String) {
    let title = record.reservation.title.as_str();
    with_links(format!("📅 “{title}” has moved to {}.", human_time(to)), &[])
}

/// A reminded show was cancelled.
pub fn cancelled(record: &ReservationRecord) -> (String, String) {
    let title = record.reservation.title.as_str();
    with_links(format!("“{title}” is cancelled."), &[])
}

/// Live now, with the room's link and the watch page's.
pub fn live(record: &ReservationRecord, chat: &str) -> (String, String) {
    let title = record.reservation.title.as_str();
    let mut links = vec![("Chat", chat)];
    if let Some(url) = &record.reservation.stream_url {
        links.push(("Watch", url.as_str()));
    }
    with_links(format!("🔴 “{title}” is live now!"), &links)
}

/// The chat is open to the channel's followers, or to anyone.
pub fn open(record: &ReservationRecord, chat: &str, to_anyone: bool) -> (String, String) {
    let title = record.reservation.title.as_str();
    let who = if to_anyone { "everyone" } else { "the channel's followers" };
    with_links(format!("💬 The chat of “{title}” is open to {who}."), &[("Join", chat)])
}

/// Why a follower leaves the channel's rooms.
pub fn unfollowed() -> &'static str {
    "No longer following this channel."
}
