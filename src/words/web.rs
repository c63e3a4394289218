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
