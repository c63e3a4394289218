//! Hands freed heap back to the system. A burst of large webhooks (a thousand tickets
//! each, many at once) leaves glibc holding tens of MiB it no longer uses: in a run of
//! the memory benchmark without this, 49 MiB held with 2.3 MiB in use after 1M tickets
//! (BENCHMARKS.md, "Changes these benchmarks led to").
//! `malloc_trim` returns the free pages; it costs little when there is nothing to give.

use std::time::Duration;

const EVERY: Duration = Duration::from_secs(10);

/// Trims every [`EVERY`] until `stop` turns true.
pub async fn trim_periodically(mut stop: tokio::sync::watch::Receiver<bool>) {
    metrics::counter!("foyer_memory_trims_total").increment(0);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => trim(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas;
    // it takes the arenas' locks and has no preconditions on the caller.
    unsafe {
        libc::malloc_trim(0);
    }
    metrics::counter!("foyer_memory_trims_total").increment(1);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
