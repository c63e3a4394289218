//! Admin commands in Matrix. Users listed in `admins` invite the bot to a room (a
//! direct chat, usually) and write `!foyer help`, `list [phase]`, `show <id>`,
//! `open <id>`, `archive <id>` or `retry <id>`; the bot answers with a notice (HTML and
//! plain text). Anyone else who tries gets a polite refusal. Anyone may also open a
//! direct chat with the bot to claim a ticket with `!claim CODE` ([`claim`]); the bot
//! checks that it is one, answers claims only there, and leaves it once it is idle, grows
//! or is left ([`direct`]). Other invites from people who are not admins are left
//! unanswered. In a reservation's room, `!foyer` is its hosts' and moderators' room
//! commands (`slow`, `mode`, `timeout`, `ban` …), answered in the bot's direct chat
//! with them, and nobody else's. Answers are paced per room.
//!
//! The appservice transaction keeps the events that concern this module in the store's
//! admin inbox before it is answered; [`serve`] handles them and drops each once done.
//!
//! One file a job: `inbox.rs` (what the inbox keeps, and the worker that answers it),
//! `command.rs` (reading `!foyer` commands), `run.rs` (running them; the answers' words
//! are in `words::admin`), `moderate.rs` (the room commands, their words in
//! `words::moderation`); `claim.rs` and `direct.rs` serve strangers. This file holds the
//! services they share.

pub mod claim;
mod command;
pub mod direct;
mod inbox;
mod moderate;
mod run;

pub use crate::words::{
    Answer,
    admin::{REFUSAL, help},
};
pub use command::{Command, RoomCommand, is_anonymous, parse, parse_room};
use inbox::Unfinished;
pub use inbox::{concerns, kept_in_inbox, serve};
pub use run::run;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::{config::Config, store::Store};

/// What the admin commands need, handed in by `startup` (not the HTTP state: commands
/// arrive through the appservice API but are worked off on their own).
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// Wakes the lifecycle after an admin's action is stored.
    pub wake: Arc<Notify>,
    /// Woken when a homeserver transaction queued admin events.
    pub inbox: Arc<Notify>,
    /// Wakes the outbox's sender after `!foyer outbox resume`.
    pub outbox: Arc<Notify>,
    /// Wrong claim codes of late, by user; knocks count here too.
    pub claims: Arc<claim::Throttle>,
    /// The pace of the bot's answers, per room.
    pub pace: Arc<direct::Pace>,
}
