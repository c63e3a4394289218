//! What the outbox's state is, as the admin command (`!foyer outbox`) and the status page
//! both tell it: one reading of [`OutboxStatus`], worded in `words`.

use chrono::{DateTime, Utc};

use super::send::OutboxStatus;

/// The outbox at a glance, said the same way wherever it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxReport {
    /// No `platform.webhook_url`: no events are written or sent.
    Off,
    /// Events are written and sent, or held after a `410 Gone` (`paused`).
    On {
        paused: bool,
        /// Events waiting (pending or paused).
        waiting: u64,
        /// When the oldest of them was written, and now: how long it has waited.
        oldest: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    },
}

impl OutboxReport {
    /// The report of `status` at `now`, with or without a platform to send to.
    pub fn new(status: &OutboxStatus, configured: bool, now: DateTime<Utc>) -> Self {
        if !configured {
            return Self::Off;
        }
        Self::On { paused: status.paused, waiting: status.depth, oldest: status.oldest, now }
    }
}
