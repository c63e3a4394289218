//! What Foyer forgets, hourly: the homeserver's event ids it has seen, transcripts past
//! their retention, and the addresses of tickets whose reservation never came. Each is
//! kept only as long as its purpose needs.

use chrono::{DateTime, Utc};

use crate::{config::Config, model::ORPHAN_EMAILS_KEPT, store::Store};

/// One sweep at `now`; a failure is logged and tried again at the next.
pub(super) async fn sweep(store: &dyn Store, config: &Config, now: DateTime<Utc>) {
    // Homeserver retries come within minutes; a week of event ids is plenty.
    match store.prune_seen_events(now - chrono::Duration::days(7)).await {
        Ok(n) if n > 0 => tracing::info!(events = n, "forgot old homeserver event ids"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot prune old event ids"),
    }
    // Transcripts are members' words, kept rooms.transcript_retention and no
    // longer; checked hourly, so one goes within the hour after it is due.
    let retention = chrono::Duration::from_std(config.rooms.transcript_retention).unwrap_or(chrono::Duration::MAX);
    let before = now.checked_sub_signed(retention).unwrap_or(DateTime::<Utc>::MIN_UTC);
    match store.prune_transcripts(before).await {
        Ok(n) if n > 0 => tracing::info!(transcripts = n, "deleted transcripts past their retention"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot delete old transcripts"),
    }
    // An address is kept for its reservation's room; one that never came
    // gives no reason to keep it (docs/fans-without-matrix-id.md).
    match store.forget_orphan_emails(now - ORPHAN_EMAILS_KEPT).await {
        Ok(n) if n > 0 => {
            tracing::info!(tickets = n, "erased the addresses of tickets whose reservation never came")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot erase the addresses of orphan tickets"),
    }
}
