//! What Foyer forgets, hourly: the homeserver's event ids it has seen, transcripts and
//! moderation records past their retention, the addresses of tickets whose reservation never came, web chat
//! sessions that are over and the oldest of each room's web chat log. Each is kept only
//! as long as its purpose needs.

use chrono::{DateTime, Duration, Utc};

use crate::{
    config::Config,
    model::ORPHAN_EMAILS_KEPT,
    store::{Store, StoreError},
};

/// How many entries of each room's web chat log are kept: what a reader reconnecting
/// with `Last-Event-ID` may ask for; one asking for older gets `reset` and the last 50.
pub const WEB_LOG_KEPT: u32 = 1000;

/// One sweep at `now`; a failure is logged and tried again at the next.
pub(super) async fn sweep(store: &dyn Store, config: &Config, now: DateTime<Utc>) {
    // Homeserver retries come within minutes; a week of event ids is plenty.
    let seen = store.prune_seen_events(now - Duration::days(7)).await;
    logged(seen, "forgot old homeserver event ids", "cannot prune old event ids");
    // Transcripts are members' words, kept rooms.transcript_retention and no
    // longer; checked hourly, so one goes within the hour after it is due.
    let retention = Duration::from_std(config.rooms.transcript_retention).unwrap_or(Duration::MAX);
    let before = now.checked_sub_signed(retention).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let transcripts = store.prune_transcripts(before).await;
    logged(transcripts, "deleted transcripts past their retention", "cannot delete old transcripts");
    // The moderation record names members and what they wrote of; it goes with them.
    let record = store.prune_moderation_record(before).await;
    logged(record, "deleted moderation records past their retention", "cannot delete old moderation records");
    // An address is kept for its reservation's room; one that never came
    // gives no reason to keep it (docs/fans-without-matrix-id.md).
    let orphans = store.forget_orphan_emails(now - ORPHAN_EMAILS_KEPT).await;
    let (done, failed) =
        ("erased the addresses of tickets whose reservation never came", "cannot erase orphan addresses");
    logged(orphans, done, failed);
    // An ended web session is kept a day, so that its bearer is told why it ended.
    let sessions = store.prune_web_sessions(now - Duration::days(1)).await;
    logged(sessions, "forgot web chat sessions that are over", "cannot forget old web chat sessions");
    let log = store.prune_web_log(WEB_LOG_KEPT).await;
    logged(log, "trimmed the web chat logs", "cannot trim the web chat logs");
    // Posts matter to slow mode and duplicates for at most a day (the longest window).
    let max_window = Duration::seconds(crate::model::MAX_RULE_SECONDS as i64);
    let posts = store.prune_posts(now - max_window).await;
    logged(posts, "forgot chat posts older than any rule's window", "cannot forget old chat posts");
    // An ended timeout matters a day longer at most: strikes before it do not count again.
    let timeouts = store.prune_timeouts(now - max_window).await;
    logged(timeouts, "forgot timeouts that ended", "cannot forget ended timeouts");
}

/// One line for what a sweep did (nothing to do says nothing), or why it could not.
fn logged(result: Result<u64, StoreError>, done: &str, failed: &str) {
    match result {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "{done}"),
        Err(e) => tracing::warn!(error = %e, "{failed}"),
    }
}
