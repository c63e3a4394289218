//! The bot's redactions of messages that broke a rule, from the queue the homeserver's
//! transactions fill (`store::EnforcementStore`): each room's oldest first, a few at a
//! time per room and many rooms at once, taken round-robin, so that a flood in one room
//! is worked off at a bounded pace and never keeps another's waiting. A redaction is
//! dropped from the queue once done, and recorded then; one that fails for a reason that
//! passes stays.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use futures_util::future::join_all;
use tokio::sync::{Notify, watch};

use crate::{
    matrix::{MatrixClient, rooms},
    model::{ActionReason, Actor, ModeratedMember, ModerationAction, NewAction},
    store::{PendingRedaction, Store, StoreError},
};

/// Redactions in flight at once, in all rooms.
const AT_ONCE: u32 = 32;
/// Redactions in flight at once in one room: the homeserver writes a room's events one
/// after another, so more would only queue there, while a few hide each request's round
/// trip.
const PER_ROOM: u32 = 8;
/// How long the queue waits after a failure that may pass (the homeserver or the
/// database is down).
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often the queue is looked at without a wake-up: another instance's transactions
/// fill it too.
const POLL_EVERY: Duration = Duration::from_secs(5);

/// Works off the queue until `stop`: at once (what a crash left), whenever a transaction
/// queued a redaction (`wake`), and every few seconds.
pub async fn serve(store: Arc<dyn Store>, client: MatrixClient, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        let pause = loop {
            match round(store.as_ref(), &client).await {
                Ok(true) => continue,
                Ok(false) => break POLL_EVERY,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot redact now; tried again in 5 s");
                    break RETRY_AFTER;
                }
            }
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// A few redactions in each room that has some to do; whether any was done (more may
/// wait).
async fn round(store: &dyn Store, client: &MatrixClient) -> Result<bool, StoreError> {
    let batch = store.pending_redactions(AT_ONCE, PER_ROOM).await?;
    let done = join_all(batch.iter().map(|p| rooms::redact(client, &p.room_id, &p.event_id, &p.reason))).await;
    let mut progressed = false;
    for (pending, result) in batch.iter().zip(done) {
        match result {
            Ok(()) => {
                store.redaction_done(&pending.event_id, Some(&recorded(pending))).await?;
                let waited = (Utc::now() - pending.queued_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("foyer_moderation_redaction_delay_seconds").record(waited);
                tracing::info!(reservation_id = %pending.reservation, event_id = %pending.event_id, rule = pending.rule.as_str(), "redacted a message that broke a rule");
                progressed = true;
            }
            // The homeserver unreachable, overloaded or failing: tried again.
            Err(e) if e.is_transient() => {
                tracing::warn!(reservation_id = %pending.reservation, error = %e, "cannot redact a message now; tried again");
            }
            Err(e) => {
                // Refused for good (the room is gone, the bot lost its power): waiting
                // would only keep this room's other redactions behind it.
                store.redaction_done(&pending.event_id, None).await?;
                tracing::warn!(reservation_id = %pending.reservation, event_id = %pending.event_id, error = %e, "the homeserver refuses this redaction; dropped");
                progressed = true;
            }
        }
    }
    Ok(progressed)
}

/// The record of a redaction done for a rule.
fn recorded(pending: &PendingRedaction) -> NewAction {
    NewAction {
        reservation: pending.reservation.clone(),
        action: ModerationAction::Redaction {
            member: ModeratedMember::user(pending.member.clone(), None),
            event_id: pending.event_id.clone(),
            rule: Some(pending.rule),
        },
        actor: Actor::Bot,
        reason: ActionReason::lossy(&pending.reason),
        at: Utc::now(),
    }
}
