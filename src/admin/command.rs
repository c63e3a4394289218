//! Reading an admin's message: a `!foyer` command, or an answer saying what is wrong
//! with it; and a host's or moderator's `!foyer` line in their show's room
//! ([`parse_room`]).

use ruma::OwnedUserId;

use crate::{
    config::parse_duration,
    model::{ActionReason, ChatMode, ReservationId, TimeoutLength, moderation::MAX_TIMEOUT_SECONDS, rules},
    schedule::Phase,
    store::AdminAction,
    words::{admin::mistake, moderation::mistake as room_mistake},
};

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
        return Some(Err(mistake::one_word_at_most(&verb)));
    }
    let id = |arg: Option<&str>| match arg {
        None => Err(mistake::needs_id(&verb)),
        Some(id) => ReservationId::parse(id).map_err(|e| mistake::not_an_id(id, &e.to_string())),
    };
    Some(match (verb.as_str(), arg) {
        ("help", None) => Ok(Command::Help),
        ("list", None) => Ok(Command::List(None)),
        ("list", Some(p)) => match Phase::parse(p) {
            Some(phase) => Ok(Command::List(Some(phase))),
            None => Err(mistake::not_a_phase(p)),
        },
        ("show", _) => id(arg).map(Command::Show),
        ("open", _) => id(arg).map(|id| Command::Act(AdminAction::OpenNow, id)),
        ("archive", _) => id(arg).map(|id| Command::Act(AdminAction::ArchiveNow, id)),
        ("retry", _) => id(arg).map(|id| Command::Act(AdminAction::Retry, id)),
        ("outbox", None) => Ok(Command::Outbox),
        ("outbox", Some(w)) if w.eq_ignore_ascii_case("resume") => Ok(Command::OutboxResume),
        ("outbox", Some(w)) => Err(mistake::not_an_outbox_command(w)),
        ("help", Some(_)) => Err(mistake::help_takes_nothing()),
        _ => Err(mistake::unknown(&verb)),
    })
}

/// A host's or moderator's command in their show's room (docs/moderation.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomCommand {
    Help,
    /// Slow mode, in seconds between a member's messages; 0 is off.
    Slow(u32),
    Mode(ChatMode),
    Timeout {
        user: OwnedUserId,
        length: TimeoutLength,
        reason: ActionReason,
    },
    Untimeout(OwnedUserId),
    Ban {
        user: OwnedUserId,
        reason: ActionReason,
    },
    Unban(OwnedUserId),
}

/// The next word of `text` and what follows it (its spaces kept: a reason is free text).
fn next_word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (end > 0).then(|| (&text[..end], &text[end..]))
}

/// A duration in whole seconds, at most `max`, for `what` (`slow mode`, `a timeout`).
fn seconds(word: &str, what: &str, max: u64) -> Result<u32, String> {
    let duration = parse_duration(word).map_err(|e| room_mistake::bad_duration(&e))?;
    if duration.subsec_nanos() != 0 {
        return Err(room_mistake::whole_seconds(word));
    }
    match u32::try_from(duration.as_secs()) {
        Ok(s) if u64::from(s) <= max => Ok(s),
        _ => Err(room_mistake::too_long(
            what,
            word,
            &crate::config::format_duration(std::time::Duration::from_secs(max)),
        )),
    }
}

/// Whether a line in a show's room is `!foyer anonymous`: any member's, not a
/// moderation command (docs/replay.md, "Public archive").
pub fn is_anonymous(body: &str) -> bool {
    let mut words = body.split_whitespace();
    let first = words.next().is_some_and(|w| w.eq_ignore_ascii_case("!foyer"));
    let verb = words.next().is_some_and(|w| w.eq_ignore_ascii_case("anonymous"));
    first && verb && words.next().is_none()
}

/// Reads a line in a show's room: `None` when it is not a `!foyer` command, `Err` with
/// what is wrong when it is one but cannot be done as written.
pub fn parse_room(body: &str) -> Option<Result<RoomCommand, String>> {
    let (first, rest) = next_word(body)?;
    if !first.eq_ignore_ascii_case("!foyer") {
        return None;
    }
    let Some((verb, rest)) = next_word(rest) else { return Some(Ok(RoomCommand::Help)) };
    let verb = verb.to_ascii_lowercase();
    let usage = match verb.as_str() {
        "help" => "!foyer help",
        "slow" => "!foyer slow <duration>|off",
        "mode" => "!foyer mode open|reactions|hosts",
        "timeout" => "!foyer timeout <user> <duration> [reason]",
        "untimeout" => "!foyer untimeout <user>",
        "ban" => "!foyer ban <user> [reason]",
        "unban" => "!foyer unban <user>",
        _ => return Some(Err(room_mistake::unknown(&verb))),
    };
    let needs = || room_mistake::needs(&verb, usage);
    let user = |word: &str| OwnedUserId::try_from(word).map_err(|e| room_mistake::not_a_user(word, &e.to_string()));
    let (arg, rest) = next_word(rest).map_or((None, ""), |(w, r)| (Some(w), r));
    let reason = ActionReason::lossy(rest);
    // Only a timeout's and a ban's last words are free text.
    let takes_reason = matches!(verb.as_str(), "timeout" | "ban");
    if (!takes_reason && next_word(rest).is_some()) || (verb == "help" && arg.is_some()) {
        return Some(Err(room_mistake::too_many_words(&verb, usage)));
    }
    Some(match (verb.as_str(), arg) {
        ("help", _) => Ok(RoomCommand::Help),
        (_, None) => Err(needs()),
        ("slow", Some(off)) if off.eq_ignore_ascii_case("off") => Ok(RoomCommand::Slow(0)),
        ("slow", Some(word)) => seconds(word, "slow mode", rules::MAX_RULE_SECONDS).map(RoomCommand::Slow),
        ("mode", Some(word)) => match word.to_ascii_lowercase().as_str() {
            "open" => Ok(RoomCommand::Mode(ChatMode::Open)),
            "reactions" => Ok(RoomCommand::Mode(ChatMode::ReactionsOnly)),
            "hosts" => Ok(RoomCommand::Mode(ChatMode::HostsOnly)),
            _ => Err(room_mistake::not_a_mode(word)),
        },
        ("timeout", Some(who)) => (|| {
            let user = user(who)?;
            let (word, rest) = next_word(rest).ok_or_else(needs)?;
            let seconds = seconds(word, "a timeout", u64::from(MAX_TIMEOUT_SECONDS))?;
            let length = TimeoutLength::seconds(seconds).map_err(|_| room_mistake::zero_timeout())?;
            Ok(RoomCommand::Timeout { user, length, reason: ActionReason::lossy(rest) })
        })(),
        ("untimeout", Some(who)) => user(who).map(RoomCommand::Untimeout),
        ("ban", Some(who)) => user(who).map(|user| RoomCommand::Ban { user, reason }),
        ("unban", Some(who)) => user(who).map(RoomCommand::Unban),
        _ => Err(room_mistake::unknown(&verb)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ReservationId {
        ReservationId::parse(s).unwrap()
    }

    #[test]
    fn anonymous_is_the_one_line_alone() {
        for yes in ["!foyer anonymous", "  !FOYER   Anonymous ", "!foyer anonymous\n"] {
            assert!(is_anonymous(yes), "{yes:?}");
        }
        for no in ["!foyer anonymous please", "!foyer anon", "anonymous", "!foyerx anonymous", "!foyer help"] {
            assert!(!is_anonymous(no), "{no:?}");
        }
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

    fn fan() -> OwnedUserId {
        OwnedUserId::try_from("@fan:example.org").unwrap()
    }

    #[test]
    fn room_commands_parse_with_their_durations_users_and_reasons() {
        let room = |body: &str| parse_room(body).expect("for foyer").expect("understood");
        assert_eq!(parse_room("hello"), None);
        assert_eq!(parse_room("!claim ABCDE"), None);
        assert_eq!(room("!foyer"), RoomCommand::Help);
        assert_eq!(room("!FOYER help"), RoomCommand::Help);
        assert_eq!(room("!foyer slow 30s"), RoomCommand::Slow(30));
        assert_eq!(room("!foyer slow 2m"), RoomCommand::Slow(120));
        assert_eq!(room("!foyer slow OFF"), RoomCommand::Slow(0));
        assert_eq!(room("!foyer slow 0s"), RoomCommand::Slow(0));
        assert_eq!(room("!foyer mode reactions"), RoomCommand::Mode(ChatMode::ReactionsOnly));
        assert_eq!(room("!foyer Mode Hosts"), RoomCommand::Mode(ChatMode::HostsOnly));
        assert_eq!(room("!foyer mode open"), RoomCommand::Mode(ChatMode::Open));
        let length = TimeoutLength::seconds(600).unwrap();
        assert_eq!(
            room("!foyer timeout @fan:example.org 10m  spamming   links "),
            RoomCommand::Timeout { user: fan(), length, reason: ActionReason::lossy("spamming   links") }
        );
        assert_eq!(
            room("!foyer timeout @fan:example.org 10m"),
            RoomCommand::Timeout { user: fan(), length, reason: ActionReason::default() }
        );
        assert_eq!(room("!foyer untimeout @fan:example.org"), RoomCommand::Untimeout(fan()));
        assert_eq!(
            room("!foyer ban @fan:example.org slurs"),
            RoomCommand::Ban { user: fan(), reason: ActionReason::lossy("slurs") }
        );
        assert_eq!(room("!foyer unban @fan:example.org"), RoomCommand::Unban(fan()));
    }

    #[test]
    fn a_bad_room_command_says_what_is_wrong() {
        let err = |body: &str| parse_room(body).expect("for foyer").expect_err("refused");
        let cases = [
            ("!foyer list", "`!foyer list` is not a command in a show's room"),
            ("!foyer slow", "needs more: write `!foyer slow <duration>|off`"),
            ("!foyer slow fast", "\"fast\" is not a duration"),
            ("!foyer slow 1500ms", "\"1500ms\" is not whole seconds"),
            ("!foyer slow 2d", "\"2d\" is too long for slow mode: at most 1d"),
            ("!foyer slow 30s please", "`!foyer slow` takes nothing more"),
            ("!foyer mode quiet", "\"quiet\" is not a mode; use open, reactions or hosts"),
            ("!foyer mode", "`!foyer mode` needs more"),
            ("!foyer timeout fan 10m", "\"fan\" is not a full Matrix ID"),
            ("!foyer timeout @fan:example.org", "`!foyer timeout` needs more"),
            ("!foyer timeout @fan:example.org 0s", "A timeout lasts at least 1s"),
            ("!foyer timeout @fan:example.org 400d", "too long for a timeout"),
            ("!foyer ban", "`!foyer ban` needs more"),
            ("!foyer ban @fan", "\"@fan\" is not a full Matrix ID"),
            ("!foyer unban @fan:example.org now", "`!foyer unban` takes nothing more"),
            ("!foyer help me", "`!foyer help` takes nothing more"),
        ];
        for (body, want) in cases {
            assert!(err(body).contains(want), "{body}: {}", err(body));
        }
    }
}
