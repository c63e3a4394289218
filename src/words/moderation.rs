//! What the bot tells a show's hosts and moderators about their commands in the show's
//! room (docs/moderation.md, "Commands in the room"), in its direct chat with them: the
//! help, what each command did, what was refused and why, and each mistake.

use chrono::{DateTime, Utc};
use ruma::UserId;

use super::{Answer, human_time};
use crate::{config::format_duration, html::escape, model::ChatMode};

/// The name of the bot's direct chat with a host or moderator.
pub const STAFF_CHAT_NAME: &str = "Foyer moderation";

/// The reason the bot gives when it redacts a command from the show's room.
pub const COMMAND_REDACTED: &str = "moderation command";

/// The reason a ban gives in Matrix when the moderator gave none.
pub const BANNED_BY_COMMAND: &str = "banned by a moderator";

/// `!foyer help` in a show's room.
pub fn help() -> Answer {
    let commands = [
        ("!foyer slow <duration>|off", "members wait that long between messages (like 30s or 2m; at most 1d)"),
        ("!foyer mode open|reactions|hosts", "who may post: everyone, reactions only, hosts and moderators only"),
        ("!foyer timeout <user> <duration> [reason]", "the member cannot post for that long"),
        ("!foyer untimeout <user>", "ends their timeout now"),
        ("!foyer ban <user> [reason]", "bans them from the show, with the ticket they came by"),
        ("!foyer unban <user>", "lifts their ban"),
        ("!foyer help", "this list"),
    ];
    let head = "Moderation commands, to write in the show's room (the bot removes them there and answers here):";
    let foot =
        "A <user> is a full Matrix ID, like @fan:example.org. Hosts and moderators cannot be timed out or banned.";
    let text = std::iter::once(head.to_owned())
        .chain(commands.iter().map(|(c, what)| format!("• {c} — {what}")))
        .chain(std::iter::once(foot.to_owned()))
        .collect::<Vec<_>>()
        .join("\n");
    let items: String =
        commands.iter().map(|(c, what)| format!("<li><code>{}</code> — {}</li>", escape(c), escape(what))).collect();
    let html = format!("<p>{}</p><ul>{items}</ul><p>{}</p>", escape(head), escape(foot));
    Answer { text, html }
}

/// Slow mode set (0: off).
pub fn slow_set(seconds: u32) -> Answer {
    Answer::plain(match seconds {
        0 => "Slow mode is off.".to_owned(),
        s => format!(
            "Slow mode is on: members wait {} between messages.",
            format_duration(std::time::Duration::from_secs(u64::from(s)))
        ),
    })
}

/// The mode set.
pub fn mode_set(mode: ChatMode) -> Answer {
    Answer::plain(match mode {
        ChatMode::Open => "The chat is open: everyone may post.",
        ChatMode::ReactionsOnly => "Reactions only: members may react and answer polls, not post.",
        ChatMode::HostsOnly => "Hosts only: only hosts and moderators may post.",
    })
}

/// A member timed out until `until`.
pub fn timed_out(user: &UserId, seconds: u32, until: DateTime<Utc>) -> Answer {
    let length = format_duration(std::time::Duration::from_secs(u64::from(seconds)));
    Answer::plain(format!("`{user}` is timed out for {length}, until {}.", human_time(until)))
}

/// A timeout lifted, or none was running.
pub fn timeout_lifted(user: &UserId, was_running: bool) -> Answer {
    Answer::plain(if was_running {
        format!("`{user}`'s timeout is over: they may post again.")
    } else {
        format!("`{user}` was not timed out; nothing to lift.")
    })
}

/// A member banned.
pub fn banned(user: &UserId) -> Answer {
    Answer::plain(format!(
        "`{user}` is banned from the show, and so is the ticket they came by: whoever claims it is kept out."
    ))
}

/// A member's ban lifted.
pub fn unbanned(user: &UserId) -> Answer {
    Answer::plain(format!("`{user}`'s ban is lifted; their ticket lets them in again."))
}

/// Who cannot be timed out or banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untouchable {
    /// A host or moderator of the show.
    Staff,
    /// Foyer's bot.
    Bot,
}

/// A timeout or a ban refused: nothing was done.
pub fn refused(verb: &str, user: &UserId, who: Untouchable) -> Answer {
    let why = match who {
        Untouchable::Staff => "is a host or moderator of this show; ask the platform to change the show's moderators",
        Untouchable::Bot => "is Foyer's bot, which runs the room",
    };
    Answer::plain(format!("Not done: `{user}` {why}. Nothing changed (`!foyer {verb}`)."))
}

/// A timeout for someone who is not in the room: probably a typo.
pub fn not_a_member(user: &UserId) -> Answer {
    Answer::plain(format!("`{user}` is not a member of this show's room; check the Matrix ID. Nothing changed."))
}

/// The homeserver refused the bot's ban or unban.
pub fn homeserver_refused(verb: &str, user: &UserId, error: &dyn std::fmt::Display) -> Answer {
    Answer::plain(format!("The homeserver refused to {verb} `{user}`: {error}. Nothing changed."))
}

/// A command that failed on data that does not read back (the room is gone, say).
pub fn cannot_do(error: &dyn std::fmt::Display) -> Answer {
    Answer::plain(format!("Foyer cannot do that now: {error}"))
}

/// What is wrong with a `!foyer` line in a show's room, said in the direct chat.
pub mod mistake {
    pub fn unknown(verb: &str) -> String {
        format!("`!foyer {verb}` is not a command in a show's room. Try `!foyer help`.")
    }

    pub fn too_many_words(verb: &str, usage: &str) -> String {
        format!("`!foyer {verb}` takes nothing more: write `{usage}`.")
    }

    pub fn needs(verb: &str, usage: &str) -> String {
        format!("`!foyer {verb}` needs more: write `{usage}`, like {}.", example(verb))
    }

    fn example(verb: &str) -> &'static str {
        match verb {
            "slow" => "`!foyer slow 30s` or `!foyer slow off`",
            "mode" => "`!foyer mode hosts`",
            "timeout" => "`!foyer timeout @fan:example.org 10m spamming`",
            "ban" => "`!foyer ban @fan:example.org`",
            _ => "`!foyer help`",
        }
    }

    pub fn not_a_user(word: &str, error: &str) -> String {
        format!("{word:?} is not a full Matrix ID (like `@fan:example.org`): {error}.")
    }

    pub fn not_a_mode(word: &str) -> String {
        format!("{word:?} is not a mode; use open, reactions or hosts.")
    }

    pub fn bad_duration(error: &str) -> String {
        format!("{error}.")
    }

    pub fn whole_seconds(word: &str) -> String {
        format!("{word:?} is not whole seconds; write it like 30s, 10m or 1h.")
    }

    pub fn too_long(what: &str, word: &str, max: &str) -> String {
        format!("{word:?} is too long for {what}: at most {max}.")
    }

    pub fn zero_timeout() -> String {
        "A timeout lasts at least 1s; to end one, write `!foyer untimeout <user>`.".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_lists_every_room_command_and_marks_code() {
        let help = help();
        for verb in ["slow", "mode", "timeout", "untimeout", "ban", "unban", "help"] {
            assert!(help.text.contains(&format!("• !foyer {verb}")), "{verb}: {}", help.text);
        }
        assert!(help.html.contains("<code>!foyer ban &lt;user&gt; [reason]</code>"), "{}", help.html);
    }
}
