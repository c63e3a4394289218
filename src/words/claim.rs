//! What a fan reads when claiming a ticket: the bot's answers to `!claim` and `!foyer
//! help` in a direct chat (docs/fans-without-matrix-id.md), and the claim page (`GET /claim/{code}`).

use chrono::{DateTime, Utc};

use super::{Answer, human_time, relative};
use crate::{
    config::Config,
    html::{document, escape},
    model::{ClaimCode, ReservationRecord, naming},
    schedule::{self, Phase},
};

/// What `!foyer help` says to someone who is not an admin.
pub fn help() -> Answer {
    Answer::plain(
        "Hello! I'm Foyer, the bot that opens the chat rooms of live shows. \
        If you have a ticket, send `!claim` followed by your claim code \
        (it looks like `ABCDE-FGHJK-MNPQR`) and I'll invite you to the show's room.",
    )
}

/// The claim is not looked at: the user sent too many wrong codes (`by_everyone`: one,
/// while many users do); they may try again in `minutes`.
pub fn throttled(by_everyone: bool, minutes: u64) -> Answer {
    let why = if by_everyone {
        "Many codes that didn't work were sent lately, and one of yours didn't work either."
    } else {
        "That's a lot of codes that didn't work."
    };
    Answer::plain(format!(
        "{why} Please wait {minutes} minutes before trying again, and check the code in your ticket's email."
    ))
}

/// The code's check character does not match.
pub fn typo() -> Answer {
    Answer::plain(
        "That code has a typo: one of its letters or digits is wrong, or two are swapped. \
        Please copy it again from your ticket.",
    )
}

/// `!claim` without anything like a code.
pub fn malformed() -> Answer {
    Answer::plain("Send `!claim` followed by your claim code, like `!claim ABCDE-FGHJK-MNPQR`.")
}

/// The ticket is someone else's.
pub fn taken_by_other() -> Answer {
    Answer::plain(
        "This ticket has already been claimed by someone else, who keeps it. \
        If it is yours, please contact the organiser of the show.",
    )
}

/// No ticket that can be claimed has the code.
pub fn unusable() -> Answer {
    Answer::plain(
        "Sorry, that code doesn't work: no ticket that can still be claimed has it. \
        Please check the code in your ticket's email.",
    )
}

/// "Your ticket for Friday Night Jazz is yours", with when the room opens or its link;
/// `fresh` when claimed just now, `record` when the show's details are known.
pub fn claimed(config: &Config, record: Option<&ReservationRecord>, fresh: bool, now: DateTime<Utc>) -> Answer {
    let done = if fresh { "Done! Your ticket" } else { "Your ticket is already yours:" };
    let Some(record) = record else {
        // Tickets may come before their show's details.
        return Answer::plain(format!("{done} is claimed. I'll invite you when the show's room opens."));
    };
    let r = &record.reservation;
    let (times, status) = schedule::at(record, &config.rooms, now);
    let alias = config.room_alias(&r.id);
    let link = naming::matrix_to(&alias);
    let when = match status.phase {
        Phase::Scheduled => format!(
            "The room opens {} ({}); I'll invite you then.",
            relative(now, times.opens_at),
            human_time(times.opens_at)
        ),
        Phase::Open | Phase::Live | Phase::Ended => format!("The room is open: look for my invite, or go to {link}"),
        Phase::Archived | Phase::Cancelled => "The room is closed now.".to_owned(),
    };
    let what = if fresh {
        format!("{done} for “{}” is claimed.", r.title.as_str())
    } else {
        format!("{done} “{}”.", r.title.as_str())
    };
    Answer::plain(format!("{what} It starts {} ({}). {when}", relative(now, r.starts_at), human_time(r.starts_at)))
}

/// The claim page of a code that does not work, whatever the reason.
pub fn page_not_found(config: &Config) -> String {
    let body = format!(
        "<h1>This claim link does not work</h1>\
         <p>There is no ticket to claim with this code: it may have been mistyped, the ticket \
         revoked, or the show may be over. Please check the link in your ticket's email, or ask \
         the organiser of the show.</p>{}",
        signup(config)
    );
    document("Claim a ticket", "", &body)
}

/// The claim page when the database cannot be read.
pub fn page_unavailable() -> String {
    let body = "<h1>Please try again in a minute</h1><p>This page cannot be shown right now.</p>";
    document("Claim a ticket", "", body)
}

fn signup(config: &Config) -> String {
    match &config.homeserver.signup_url {
        Some(url) => format!(
            "<h2>No Matrix account yet?</h2><p><a href=\"{}\">Create one on {}</a>, then come back to this page.</p>",
            escape(url.as_str()),
            escape(config.homeserver.server_name.as_str())
        ),
        None => String::new(),
    }
}

/// The claim page of `code`: the show (`record`, when known), who holds the ticket
/// (`holder`), and how to claim it.
pub fn page(
    config: &Config, code: &ClaimCode, record: Option<&ReservationRecord>, holder: Option<&str>, now: DateTime<Utc>,
) -> String {
    let bot = config.bot_user_id();
    let show = match record {
        Some(record) => {
            let r = &record.reservation;
            format!(
                "<h1>{}</h1><p>Starts {} (<time datetime=\"{}\">{}</time>).</p>",
                escape(r.title.as_str()),
                escape(&relative(now, r.starts_at)),
                r.starts_at.to_rfc3339(),
                escape(&human_time(r.starts_at)),
            )
        }
        None => "<h1>Your ticket</h1><p>The show's details are not known yet.</p>".to_owned(),
    };
    let room = record.map(|record| {
        let alias = config.room_alias(&record.reservation.id);
        let (_, status) = schedule::at(record, &config.rooms, now);
        (naming::matrix_to(&alias), alias, status.phase)
    });
    let claimed = match (holder, &room) {
        (Some(holder), Some((link, alias, phase))) => {
            let open = matches!(phase, Phase::Open | Phase::Live | Phase::Ended);
            let when = if open { "The chat room is open" } else { "The chat room opens before the show" };
            format!(
                "<p><b>This ticket is claimed by <code>{}</code>.</b> {when}: <a href=\"{}\">{}</a>.</p>",
                escape(holder),
                escape(link),
                escape(alias.as_str())
            )
        }
        (Some(holder), None) => format!("<p><b>This ticket is claimed by <code>{}</code>.</b></p>", escape(holder)),
        (None, _) => String::new(),
    };
    let command = naming::claim_command(code);
    let bot_link = format!("https://matrix.to/#/{bot}");
    let how = format!(
        "<h2>Claim it from your Matrix account</h2>\
         <ol><li>Open a direct chat with <a href=\"{}\"><code>{}</code></a> (in Element: “Start chat”).</li>\
         <li>Send exactly this message:<br><code class=command>{}</code></li>\
         <li>I invite you to the show's chat room: at once if it is open, otherwise when it opens.</li></ol>",
        escape(&bot_link),
        escape(bot.as_str()),
        escape(&command),
    );
    let body = format!("{show}{claimed}{how}{}", signup(config));
    document("Claim your ticket", "", &body)
}
