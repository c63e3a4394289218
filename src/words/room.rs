//! What Foyer says in a reservation's room and its channel's space: the notices, as plain
//! text and HTML, the topic, the stream link, and the reasons members read when they
//! are removed. The steps that post them are in `lifecycle::perform` and `matrix::rooms`.

use chrono::{DateTime, Utc};

use super::{human_time, in_words};
use crate::{
    html::escape,
    model::{KickReason, ReservationRecord},
    schedule::Schedule,
};

/// What members are told when their chat is saved (`rooms.transcript`, `chat.transcript`).
pub const TRANSCRIPT_SAVED: &str = "This chat will be saved when the room closes.";

/// What members are told when their chat will be published after the show
/// (`chat.archive: public`), before anyone speaks.
pub const PUBLIC_ARCHIVE: &str = "This chat will be public: after the show, anyone can read it and replay it beside the recording, with your display name. Write \"!foyer anonymous\" to appear there as \"a fan\".";

/// The notice that the room is open, with the start time, and whether the chat will be
/// saved (`transcript`) or published (`chat.archive: public`): members are told before
/// they write.
pub fn opening_notice(record: &ReservationRecord, transcript: bool) -> (String, String) {
    let r = &record.reservation;
    let when = human_time(r.starts_at);
    let saved = if transcript { format!(" {TRANSCRIPT_SAVED}") } else { String::new() };
    let saved = if r.archive.is_public() { format!("{saved} {PUBLIC_ARCHIVE}") } else { saved };
    let text = format!("The chat for “{}” is open. The stream starts {when}.{saved}", r.title.as_str());
    let html = format!(
        "The chat for <b>{}</b> is open. The stream starts {when}.{}",
        escape(r.title.as_str()),
        escape(&saved)
    );
    (text, html)
}

/// The notice that the chat will be saved, when transcripts were switched on after the
/// opening notice (which says so itself when they are on then).
pub fn transcript_notice() -> (String, String) {
    (format!("📝 {TRANSCRIPT_SAVED}"), format!("📝 {}", escape(TRANSCRIPT_SAVED)))
}

/// The notice that the stream went live.
pub fn live_notice(record: &ReservationRecord) -> (String, String) {
    let title = record.reservation.title.as_str();
    (format!("🔴 “{title}” is live now!"), format!("🔴 <b>{}</b> is live now!", escape(title)))
}

/// The notice that the stream ended, with when the chat closes.
pub fn ended_notice(times: &Schedule) -> (String, String) {
    let text = format!("The stream has ended. This chat closes {}.", human_time(times.archives_at));
    (text.clone(), escape(&text))
}

/// The countdown before the start, `secs` before it.
pub fn reminder_notice(record: &ReservationRecord, secs: u64) -> (String, String) {
    let when = human_time(record.reservation.starts_at);
    let text = format!("⏰ The stream starts {} ({when}).", in_words(secs));
    (text.clone(), escape(&text))
}

/// The warning before the chat closes.
pub fn closing_warning(times: &Schedule, now: DateTime<Utc>) -> (String, String) {
    let left = ((times.archives_at - now).num_milliseconds().max(0) as u64).div_ceil(1000);
    let text = format!("This chat closes {} ({}).", in_words(left), human_time(times.archives_at));
    (text.clone(), escape(&text))
}

/// The last notice: the reservation was cancelled (with its reason) or has ended.
pub fn closing_notice(record: &ReservationRecord, cancelled: bool) -> (String, String) {
    let r = &record.reservation;
    let title = r.title.as_str();
    if cancelled {
        let reason = record.signals.cancel_reason.as_deref().map(|why| format!(" ({why})")).unwrap_or_default();
        let text = format!("“{title}” was cancelled{reason}. This chat is now closed.");
        let html = format!("<b>{}</b> was cancelled{}. This chat is now closed.", escape(title), escape(&reason));
        (text, html)
    } else {
        let text = format!("“{title}” has ended and this chat is now closed. Thanks for watching!");
        let html = format!("<b>{}</b> has ended and this chat is now closed. Thanks for watching!", escape(title));
        (text, html)
    }
}

/// The room topic: the start time and where to watch; then live; then when it closes.
/// The room is created with it and the planner keeps it so.
pub fn topic(record: &ReservationRecord, times: &Schedule) -> String {
    let r = &record.reservation;
    let watch = r.stream_url.as_ref().map(|u| format!(" · Watch: {}", u.as_str())).unwrap_or_default();
    if times.live {
        format!("🔴 Live now{watch}")
    } else if record.signals.stream_ended_at.is_some() {
        format!("The stream has ended · This chat closes {}", human_time(times.archives_at))
    } else {
        format!("Starts {}{watch}", human_time(r.starts_at))
    }
}

/// The pinned message with the stream's link, for clients without widgets.
pub fn stream_link(url: &str) -> (String, String) {
    (format!("📺 Watch the stream: {url}"), format!("📺 Watch the stream: <a href=\"{0}\">{0}</a>", escape(url)))
}

/// The name of the stream's widget beside the chat.
pub const STREAM_WIDGET: &str = "Live stream";

/// The topic of a channel's space.
pub fn space_topic(channel_name: &str) -> String {
    format!("Live chats of {channel_name}")
}

/// A web fan's display name in Matrix: their own, marked as written from the web chat
/// beside the player, so that Matrix members tell them from accounts of their own.
pub fn web_display_name(name: &str) -> String {
    format!("{name}{WEB_MARK}")
}

/// The end of a web fan's display name in Matrix ([`web_display_name`]).
pub const WEB_MARK: &str = " (web)";

/// The name a replay or public archive gives a member who has none, or who asked to be
/// anonymous there (docs/replay.md).
pub const ANONYMOUS_NAME: &str = "a fan";

/// The reason of the redaction of a member's `!foyer anonymous`: the acknowledgement
/// they see, in place of their command.
pub const ANONYMOUS_ACKNOWLEDGED: &str = "Done: you appear as \"a fan\" in this chat's public archive and replay.";

/// Why a member is removed from a room that has closed (a `kick` archive).
pub const CLOSED: &str = "This chat has closed.";

/// Why a member is removed from the room, or a knock refused.
pub fn kick_reason(reason: KickReason) -> &'static str {
    match reason {
        KickReason::TicketRevoked => "Your ticket was revoked",
        KickReason::NoTicket => "This chat is for ticket holders",
        KickReason::KnockRefused => "This chat is for ticket holders; get a ticket to join",
    }
}

/// The reason the bot gives when it redacts a member's message that broke one of the
/// show's rules: the rule by its name (as the rules and the record call it), and why.
pub fn broke_rule(rule: crate::model::Rule, why: &str) -> String {
    format!("Broke this chat's rule {}: {why}", rule.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::Signals, test_support};

    #[test]
    fn the_opening_notice_says_the_chat_is_saved_only_when_it_is() {
        let record = test_support::record(Signals::default(), vec![]);
        let (text, html) = opening_notice(&record, true);
        assert!(text.ends_with(TRANSCRIPT_SAVED), "{text}");
        assert!(html.ends_with(TRANSCRIPT_SAVED), "{html}");
        let (text, html) = opening_notice(&record, false);
        assert!(!text.contains("saved") && !html.contains("saved"), "{text}");
        assert!(!text.contains("public"), "{text}");
    }

    #[test]
    fn the_opening_notice_says_a_public_chat_is_public() {
        let mut record = test_support::record(Signals::default(), vec![]);
        record.reservation.archive = crate::model::Archive::Public { indexable: false };
        let (text, html) = opening_notice(&record, true);
        assert!(text.ends_with(PUBLIC_ARCHIVE) && text.contains(TRANSCRIPT_SAVED), "{text}");
        assert!(html.contains("This chat will be public") && html.contains("&quot;a fan&quot;"), "{html}");
    }
}
