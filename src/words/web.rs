//! What the chat API tells a web fan (docs/web-chat.md). The page shows these sentences
//! as they come, after "Could not start the chat: " or "Not sent: ".

use crate::model::EndReason;

/// Why a fan's session no longer works.
pub fn session_ended(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Revoked => "your ticket was cancelled, so this chat session has ended",
        EndReason::Moved => "your ticket now belongs to someone else, so this chat session has ended",
        EndReason::Banned => "you are banned from this chat",
    }
}

/// A claim code that names no ticket Foyer can seat: it tells nothing about which exist.
pub const CLAIM_CODE_UNKNOWN: &str = "this claim code does not open any show's chat: check it against your ticket's email (a cancelled ticket's or an ended show's code no longer works)";

/// A good code typed into another show's page.
pub const CLAIM_CODE_OTHER_SHOW: &str = "this claim code is for another show: open the chat beside that show";

/// A claim code typed into an archived show's page: only the platform's watch page (its
/// viewer token) opens the read-only replay after the archive.
pub const CLAIM_CODE_ARCHIVED: &str = "this show's chat is archived, and a claim code no longer opens it: watch the recording on the platform's page to see the chat replayed beside it";

/// A viewer token for an archived show whose transcript is no longer kept (or was never made).
pub const ARCHIVED_WITHOUT_TRANSCRIPT: &str =
    "this show's chat is archived and its transcript is not kept, so there is no chat to replay";

/// The replay asked for before the show has ended.
pub const REPLAY_NOT_YET: &str = "the chat's replay opens when the show has ended";

/// Too many wrong codes from one address of late.
pub fn claim_throttled(wait: std::time::Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    format!("too many wrong claim codes from your network; try again in {minutes} {unit}")
}

/// The name of a claim code's fan when the platform gave their ticket none.
pub fn unnamed_fan() -> crate::model::DisplayName {
    crate::model::DisplayName::parse("Ticket holder").expect("a display name")
}

/// A message refused by one of the show's rules (`reason` names it, with its limit).
pub fn broke_rule(reason: &str) -> String {
    format!("This chat's rules: {reason}.")
}

/// A fan's first message while many are being let into the room.
pub fn room_busy(wait: std::time::Duration) -> String {
    let seconds = wait.as_secs_f64().ceil().max(1.0);
    format!("Many fans are coming in right now; send your message again in {seconds} s.")
}

/// A timed-out fan's message, refused: when they may write again.
pub fn timed_out(wait: std::time::Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    format!("You are timed out in this chat; you can write again in {minutes} min.")
}
