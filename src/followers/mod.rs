//! A channel's followers (docs/followers.md): the worker that gives a
//! channel with followers its space and its announcements room, and lets each follower
//! in, or takes them out, as `follower.added` and `follower.removed` recorded.
//!
//! Each change is idempotent on the homeserver (an invite to someone invited, a kick of
//! someone gone, a room found by its alias), so several instances may do the same round;
//! what is told in the announcements room is the lifecycle's, once per reservation
//! (`lifecycle/plan/announce.rs`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::Utc;
use tokio::time::Instant;

use crate::{
    config::Config,
    matrix::{MatrixClient, MatrixError, rooms},
    model::ExternalId,
    store::{ChannelRooms, FollowerChange, PendingFollower, Store, StoreError},
    words,
};

/// How often the worker looks for followers to let in or take out.
const EVERY: Duration = Duration::from_secs(2);
/// Followers worked on per round, and channels furnished.
const ROUND: u32 = 500;
/// A follower whose change failed is left alone this long before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
enum FollowerError {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Followers {
    pub store: Arc<dyn Store>,
    pub client: MatrixClient,
    pub config: Arc<Config>,
    /// Followers whose change failed of late, until when they are left alone: one who
    /// cannot be invited never holds back the others.
    failed: HashMap<(ExternalId, ruma::OwnedUserId), Instant>,
}

impl Followers {
    pub fn new(store: Arc<dyn Store>, client: MatrixClient, config: Arc<Config>) -> Self {
        Self { store, client, config, failed: HashMap::new() }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "cannot read the followers to let in; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }

    async fn round(&mut self) -> Result<(), StoreError> {
        for channel in self.store.channels_to_furnish(ROUND).await? {
            if let Err(e) = self.furnish(&channel).await {
                tracing::warn!(channel_id = %channel.channel.id.as_str(), error = %e, "cannot make the channel's rooms; retrying");
            }
        }
        let now = Instant::now();
        self.failed.retain(|_, until| *until > now);
        for pending in self.store.pending_followers(ROUND).await? {
            let key = (pending.channel_id.clone(), pending.user_id.clone());
            if self.failed.contains_key(&key) {
                continue;
            }
            if let Err(e) = self.apply(&pending).await {
                tracing::warn!(channel_id = %pending.channel_id.as_str(), user_id = %pending.user_id, error = %e, "cannot change a follower's rooms; trying again later");
                self.failed.insert(key, Instant::now() + RETRY_AFTER);
            }
        }
        Ok(())
    }

    /// The channel's space and announcements room, made or adopted, the second listed in
    /// the first.
    async fn furnish(&self, channel: &ChannelRooms) -> Result<(), FollowerError> {
        let space = match &channel.space {
            Some(space) => space.clone(),
            None => rooms::ensure_space(&self.client, &self.config, &channel.channel).await?,
        };
        let announcements = match &channel.announcements {
            Some(room) => room.clone(),
            None => rooms::ensure_announcements(&self.client, &self.config, &channel.channel).await?,
        };
        rooms::link_space(&self.client, &self.config, &space, &announcements).await?;
        self.store.channel_rooms_made(&channel.channel, &space, &announcements).await?;
        tracing::info!(channel_id = %channel.channel.id.as_str(), space = %space, announcements = %announcements, "the channel's rooms are ready for its followers");
        Ok(())
    }

    async fn apply(&self, pending: &PendingFollower) -> Result<(), FollowerError> {
        let (channel, user) = (&pending.channel_id, &pending.user_id);
        match pending.change {
            FollowerChange::LetIn => {
                rooms::invite(&self.client, &pending.space, user).await?;
                rooms::invite(&self.client, &pending.announcements, user).await?;
                self.store.follower_let_in(channel, user, Utc::now()).await?;
                tracing::info!(channel_id = %channel.as_str(), user_id = %user, "a follower was invited to the channel's rooms");
            }
            FollowerChange::TakeOut { invited } => {
                if invited {
                    let why = words::announce::unfollowed();
                    rooms::kick(&self.client, &pending.announcements, user, why).await?;
                    rooms::kick(&self.client, &pending.space, user, why).await?;
                }
                self.store.follower_gone(channel, user).await?;
                tracing::info!(channel_id = %channel.as_str(), user_id = %user, "a follower was taken out of the channel's rooms");
            }
        }
        Ok(())
    }
}
