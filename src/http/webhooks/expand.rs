//! Series expanded again as time passes (docs/series.md): each active series' `data`, as
//! it was sent, is parsed again at `now` under the same rules as a webhook, and the
//! occurrences that came within `series.horizon` since are added. The store adds only
//! those not stored yet, each once, so instances running this side by side, or one
//! restarted, add nothing twice and tell the platform once.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use super::payload::{Rules, stored_series};
use crate::store::{Store, Windows};

/// How often series are expanded again: a tenth of the horizon (an occurrence is made
/// long before it opens), between 5 seconds (test-sized horizons) and an hour.
pub fn period(horizon: Duration) -> Duration {
    (horizon / 10).clamp(Duration::from_secs(5), Duration::from_secs(3600))
}

/// Expands every active series at `now`; returns how many occurrences were added.
pub async fn extend_all(store: &dyn Store, rules: &Rules, windows: Windows, now: DateTime<Utc>) -> usize {
    let active = match store.active_series().await {
        Ok(active) => active,
        Err(e) => {
            tracing::warn!(error = %e, "series not expanded: the store cannot be read now");
            return 0;
        }
    };
    let mut added = 0;
    for (id, definition) in active {
        // Parsed as it was accepted; a config changed since (say, http stream URLs no
        // longer allowed) may refuse it now: then it stays as it is, and says why.
        let upsert = match stored_series(&definition, now, rules) {
            Ok(upsert) => upsert,
            Err(e) => {
                tracing::warn!(series_id = %id, error = %e, "series not expanded: it no longer reads under this config");
                continue;
            }
        };
        match store.extend_series(&upsert, now, windows).await {
            Ok(n) => added += n,
            Err(e) => tracing::warn!(series_id = %id, error = %e, "series not expanded now; tried again later"),
        }
    }
    added
}

/// Runs [`extend_all`] every [`period`] until `stop`, waking the lifecycle when it added.
pub async fn serve(
    store: Arc<dyn Store>, rules: Rules, windows: Windows, wake: Arc<Notify>, mut stop: watch::Receiver<bool>,
) {
    let every = period(rules.series_horizon.to_std().unwrap_or_default());
    loop {
        if extend_all(store.as_ref(), &rules, windows, Utc::now()).await > 0 {
            wake.notify_one();
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
