//! Reading an admin's message: a `!foyer` command, or an answer saying what is wrong
//! with it.

use crate::{model::ReservationId, schedule::Phase, store::AdminAction, words::admin::mistake};

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
}
