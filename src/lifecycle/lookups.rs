//! Email tickets found on the homeserver (docs/fans-without-matrix-id.md). With `synapse_admin.token`,
//! Foyer asks Synapse which of its users has a ticket's email bound: when the ticket
//! arrives, and again every few minutes while the room is open (people add an email to
//! their account later, or register only when the show nears). A user found is the
//! holder from then on, invited like any other.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::{Notify, watch};

use crate::{
    matrix::{MatrixError, synapse_admin::SynapseAdmin},
    store::{LookupDue, Store, StoreError},
};

/// How often an open room's unbound email tickets are looked up again.
pub const AGAIN_AFTER: Duration = Duration::from_secs(300);
/// How often the worker looks for tickets to look up: a new ticket waits at most this.
const POLL_EVERY: Duration = Duration::from_secs(5);
/// Lookups per round; more due go on at once in the next round. Synapse answers each
/// from an index, so the pace is the round trip.
const PER_ROUND: u32 = 50;
/// After the homeserver failed a lookup, the next round waits this long.
const AFTER_FAILURE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}

/// Looks up email tickets until `stop`. `wake` is the lifecycle's: a bound ticket's
/// holder is invited as soon as their room is open.
pub async fn serve(
    store: Arc<dyn Store>, admin: Arc<SynapseAdmin>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>,
) {
    loop {
        let pause = match round(store.as_ref(), &admin, &wake).await {
            Ok(true) => Duration::ZERO,
            Ok(false) => POLL_EVERY,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = AFTER_FAILURE.as_secs(), "cannot look up email tickets now");
                AFTER_FAILURE
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// One round; `true` when more are due at once.
async fn round(store: &dyn Store, admin: &SynapseAdmin, wake: &Notify) -> Result<bool, RoundError> {
    let before = Utc::now() - chrono::Duration::from_std(AGAIN_AFTER).unwrap_or_default();
    let due = store.lookups_due(before, PER_ROUND).await?;
    for LookupDue { reservation_id: reservation, ticket_id: ticket, email } in &due {
        let found = match admin.user_by_email(email).await {
            Ok(found) => found,
            Err(e) if e.is_transient() => {
                metrics::counter!("foyer_email_lookups_total", "result" => "failed").increment(1);
                return Err(e.into());
            }
            // A refusal that will not pass (a token that is not an admin's): this ticket
            // waits its turn again, the others are not held back.
            Err(e) => {
                metrics::counter!("foyer_email_lookups_total", "result" => "failed").increment(1);
                tracing::warn!(reservation_id = %reservation, ticket_id = %ticket.as_str(), error = %e, "cannot look up a ticket's email");
                store.looked_up(reservation, ticket, None, Utc::now()).await?;
                continue;
            }
        };
        let bound = store.looked_up(reservation, ticket, found.as_deref(), Utc::now()).await?;
        let result = match (&found, bound) {
            (Some(_), true) => "bound",
            (Some(_), false) => "already_bound",
            (None, _) => "not_found",
        };
        metrics::counter!("foyer_email_lookups_total", "result" => result).increment(1);
        if bound {
            tracing::info!(reservation_id = %reservation, ticket_id = %ticket.as_str(), user_id = ?found, "email ticket bound to the homeserver's user with that email");
            wake.notify_one();
        }
    }
    Ok(due.len() == PER_ROUND as usize)
}
