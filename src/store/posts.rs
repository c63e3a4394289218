//! What each sender posted of late ([`PostStore`], docs/moderation.md): what slow mode
//! and duplicates are judged by, on every instance alike. A sender is a web viewer or a
//! Matrix member; a post is named by the page's `txn_id` or the event id, so a retry of
//! one post is never a second.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;

use super::{
    StoreError,
    dialect::{SqlStore, on_both_databases},
    rows::Read,
    to_millis,
};
use crate::model::ReservationId;

/// `(reservation_id, sender, post, at, digest)`; the same post again adds nothing.
const RECORD: &str = "INSERT INTO chat_posts (reservation_id, sender, post, at, digest) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (reservation_id, sender, post) DO NOTHING";
/// `(reservation_id, sender, post)`.
const KNOWN: &str = "SELECT 1 FROM chat_posts WHERE reservation_id = $1 AND sender = $2 AND post = $3";
/// `(reservation_id, sender, since)`: the newest first.
const SINCE: &str = "SELECT at, digest FROM chat_posts WHERE reservation_id = $1 AND sender = $2 AND at >= $3
    ORDER BY at DESC LIMIT 1000";
const PRUNE: &str = "DELETE FROM chat_posts WHERE at < $1";

/// Senders' recent posts in each reservation's chat.
#[async_trait]
pub trait PostStore: Send + Sync {
    /// Whether this post (by its `txn_id` or event id) is recorded already: a retry.
    async fn post_known(&self, reservation: &ReservationId, sender: &str, post: &str) -> Result<bool, StoreError>;

    /// The sender's posts since `since`, newest first: when, and the digest of the body.
    async fn posts_since(
        &self, reservation: &ReservationId, sender: &str, since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, String)>, StoreError>;

    /// Records a post (once).
    async fn record_post(
        &self, reservation: &ReservationId, sender: &str, post: &str, at: DateTime<Utc>, digest: &str,
    ) -> Result<(), StoreError>;

    /// Forgets posts made before `before`; returns how many.
    async fn prune_posts(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl PostStore for SqlStore<D> {
    async fn post_known(&self, reservation: &ReservationId, sender: &str, post: &str) -> Result<bool, StoreError> {
        let query = sqlx::query(KNOWN).bind(reservation.as_str()).bind(sender).bind(post);
        Ok(query.fetch_optional(&self.pool).await?.is_some())
    }

    async fn posts_since(
        &self, reservation: &ReservationId, sender: &str, since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        let query = sqlx::query(SINCE).bind(reservation.as_str()).bind(sender).bind(to_millis(since));
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((super::from_millis(row.int("at")?)?, row.text("digest")?))).collect()
    }

    async fn record_post(
        &self, reservation: &ReservationId, sender: &str, post: &str, at: DateTime<Utc>, digest: &str,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(RECORD).bind(reservation.as_str()).bind(sender).bind(post);
        query.bind(to_millis(at)).bind(digest).execute(&self.pool).await?;
        Ok(())
    }

    async fn prune_posts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(PRUNE).bind(to_millis(before)).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }
}
