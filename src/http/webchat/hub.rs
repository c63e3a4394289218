//! The readers' hub (docs/web-chat.md, "The stream"): one feed per reservation that has
//! readers, in memory, fanning the room log out to every stream of this instance.
//!
//! A feed is a task that reads the log's new entries from the store (woken by this
//! instance's appservice handler after an append; on PostgreSQL by the database, when
//! any instance's append commits; and every second, in case a wake went missing) and
//! sends each once to a `tokio::sync::broadcast` that every stream listens to: a
//! thousand readers cost one read per new entry, and the homeserver nothing. The same task tells the streams
//! of sessions ended (their ticket revoked or moved, their viewer banned) and of the
//! reservation's phase. It ends when its last reader leaves, or at shutdown.
//!
//! It also logs the homeserver's transactions ([`record`]): the room events of managed
//! rooms become entries (`webchat::log`), appended before the transaction is answered.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use ruma::{
    OwnedRoomId, OwnedUserId,
    events::{AnyTimelineEvent, TimelineEventType},
    serde::Raw,
};
use serde_json::value::RawValue;
use tokio::sync::{Notify, broadcast, watch};

use crate::{
    config::Config,
    matrix::{MatrixClient, MatrixError},
    model::{EndReason, LoggedEntry, NewLogEntry, ReservationId, SessionHash},
    schedule::{self, Phase},
    store::{LogAppended, Store, StoreError},
    webchat::log,
    words,
};

/// How often a feed looks for entries it was not woken for (another instance's, on
/// SQLite, or whose notice was lost), and for ended sessions.
pub const POLL: Duration = Duration::from_secs(1);
/// The messages an empty log is refilled with ([`Hub::refill`]): what a first reader
/// is shown.
const REFILL: u32 = 50;
/// How long a refill may wait for the homeserver.
const REFILL_TIME: Duration = Duration::from_secs(10);
/// How often a feed reads its reservation's phase again.
const PHASE_EVERY: Duration = Duration::from_secs(5);
/// Entries a slow stream may fall behind before it is told to start again (`reset`).
const BACKLOG: usize = 256;
/// The most entries a feed reads at once.
const PAGE: u32 = 500;

/// What a feed sends its streams.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A new log entry, in seq order, with its event's `data` made once for every
    /// stream ([`entry_data`]): a thousand readers share one rendering.
    Entry(LoggedEntry, String),
    /// A session of this reservation ended: its stream closes with the reason.
    Ended { session: SessionHash, reason: EndReason },
}

/// A reservation's phase as the stream tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseNow {
    pub phase: Phase,
    pub opens_at: DateTime<Utc>,
}

/// Every feed of this instance.
pub struct Hub {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    feeds: Mutex<HashMap<ReservationId, Arc<Feed>>>,
    stop: watch::Receiver<bool>,
    /// The reservations whose empty log this instance has refilled ([`Hub::refill`]), or
    /// is refilling: once each.
    refilled: Mutex<HashSet<ReservationId>>,
    /// Whether the hub listens to the database for appends yet: from its first reader on.
    listening: AtomicBool,
    /// The pages' replays, made once for all of an instance's readers (`replay.rs`).
    pub(super) replays: super::replay::Replays,
}

/// One reservation's feed, shared by its streams and its task.
struct Feed {
    frames: broadcast::Sender<Arc<Frame>>,
    phase: watch::Receiver<Option<PhaseNow>>,
    wake: Notify,
}

/// A stream's share of a feed.
pub struct Subscription {
    pub frames: broadcast::Receiver<Arc<Frame>>,
    pub phase: watch::Receiver<Option<PhaseNow>>,
    /// Turns true at shutdown: the stream ends at once.
    pub stop: watch::Receiver<bool>,
}

impl Hub {
    pub fn new(store: Arc<dyn Store>, config: Arc<Config>, stop: watch::Receiver<bool>) -> Hub {
        Hub {
            store,
            config,
            feeds: Mutex::default(),
            stop,
            refilled: Mutex::default(),
            listening: AtomicBool::new(false),
            replays: super::replay::Replays::default(),
        }
    }

    /// Joins the reservation's feed, starting it if it has no reader yet. A stream
    /// subscribes before it reads its backlog, so that nothing falls between the two.
    pub async fn subscribe(self: &Arc<Self>, reservation: &ReservationId) -> Result<Subscription, StoreError> {
        if !self.listening.swap(true, Ordering::Relaxed) {
            tokio::spawn(self.clone().hear_appends());
        }
        if let Some(subscription) = self.existing(reservation) {
            return Ok(subscription);
        }
        // The feed starts after what is logged now: its first reader reads up to here
        // (or further) from the store itself.
        let head = self.store.web_log_head(reservation).await?;
        let mut feeds = self.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let feed = feeds.entry(reservation.clone()).or_insert_with(|| {
            let (frames, _) = broadcast::channel(BACKLOG);
            let (phase_tx, phase) = watch::channel(None);
            let feed = Arc::new(Feed { frames, phase, wake: Notify::new() });
            tokio::spawn(self.clone().run(reservation.clone(), feed.clone(), phase_tx, head));
            feed
        });
        Ok(self.share(feed))
    }

    fn existing(&self, reservation: &ReservationId) -> Option<Subscription> {
        let feeds = self.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        feeds.get(reservation).map(|feed| self.share(feed))
    }

    fn share(&self, feed: &Feed) -> Subscription {
        Subscription { frames: feed.frames.subscribe(), phase: feed.phase.clone(), stop: self.stop.clone() }
    }

    /// Fills the reservation's log from the room's latest messages on the homeserver
    /// (`/messages`) when it has none, once per reservation and instance: a room that was
    /// open before web chat was configured, or before Foyer kept the log (an upgrade),
    /// has no entries, since the log is written from the transactions as they come. The
    /// entries are logged as a transaction's would be, so a reader sees who said what,
    /// by name. A log with entries is never refilled: the homeserver's transactions are
    /// logged before they are answered, so a restart misses none of them. A failure is
    /// logged, and the next reader tries again.
    pub async fn refill(&self, reservation: &ReservationId, client: &MatrixClient) {
        let first = self.refilled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(reservation.clone());
        if !first {
            return;
        }
        if let Err(e) = self.refill_now(reservation, client).await {
            tracing::warn!(%reservation, error = %e, "cannot refill the web chat's log from the homeserver");
            self.refilled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(reservation);
        }
    }

    async fn refill_now(&self, reservation: &ReservationId, client: &MatrixClient) -> Result<(), RefillError> {
        if self.store.web_log_head(reservation).await? > 0 {
            return Ok(());
        }
        let Some(found) = self.store.reservation(reservation).await? else { return Ok(()) };
        let Some(room_id) = found.room_id.as_deref().and_then(|r| ruma::RoomId::parse(r).ok()) else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + REFILL_TIME;
        let raws = client.latest_messages(&room_id, REFILL, deadline).await?;
        let events: Vec<AnyTimelineEvent> = raws.iter().filter_map(|raw| raw.deserialize().ok()).collect();
        let logged = record(self.store.as_ref(), self, &self.config, &events, Utc::now()).await?;
        tracing::info!(%reservation, logged, "the web chat's empty log was refilled from the homeserver");
        Ok(())
    }

    /// Wakes the reservation's feed, if it has readers: entries were appended.
    pub fn wake(&self, reservation: &ReservationId) {
        let feeds = self.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(feed) = feeds.get(reservation) {
            feed.wake.notify_one();
        }
    }

    /// Wakes every feed: appends may have gone untold.
    fn wake_all(&self) {
        let feeds = self.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for feed in feeds.values() {
            feed.wake.notify_one();
        }
    }

    /// Wakes the feeds of the appends the database tells of (any instance's: on
    /// PostgreSQL), until shutdown. Nothing to hear on SQLite.
    async fn hear_appends(self: Arc<Self>) {
        let Some(mut appends) = self.store.web_log_appends() else { return };
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                heard = appends.recv() => match heard {
                    Some(LogAppended::To(reservation)) => self.wake(&reservation),
                    Some(LogAppended::Untold) => self.wake_all(),
                    None => break,
                },
                () = stopped(&mut stop) => break,
            }
        }
    }

    /// How many reservations have a feed on this instance.
    pub fn feeds(&self) -> usize {
        self.feeds.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// A feed's task: until its last reader leaves or shutdown.
    async fn run(
        self: Arc<Self>, reservation: ReservationId, feed: Arc<Feed>, phase: watch::Sender<Option<PhaseNow>>,
        mut last: u64,
    ) {
        let mut stop = self.stop.clone();
        let mut ended_since = Utc::now() - chrono::Duration::seconds(5);
        let mut phase_read: Option<tokio::time::Instant> = None;
        tracing::debug!(%reservation, "web chat feed started");
        loop {
            if phase_read.is_none_or(|at| at.elapsed() >= PHASE_EVERY) {
                phase_read = Some(tokio::time::Instant::now());
                match self.phase(&reservation).await {
                    Ok(now) => {
                        phase.send_if_modified(|old| std::mem::replace(old, now) != now);
                    }
                    Err(e) => tracing::warn!(%reservation, error = %e, "cannot read the phase for the web chat"),
                }
            }
            match self.forward(&reservation, &feed, last, &mut ended_since).await {
                Ok(seq) => last = seq,
                Err(e) => tracing::warn!(%reservation, error = %e, "cannot read the web chat log; trying again"),
            }
            tokio::select! {
                () = feed.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                () = stopped(&mut stop) => break,
            }
            // The last reader gone: the feed ends, unless one joined meanwhile (they
            // join under this lock).
            let mut feeds = self.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if feed.frames.receiver_count() == 0 {
                feeds.remove(&reservation);
                break;
            }
        }
        tracing::debug!(%reservation, "web chat feed ended");
    }

    /// Sends the entries after `last` and the sessions ended since `ended_since`;
    /// returns the last seq sent.
    async fn forward(
        &self, reservation: &ReservationId, feed: &Feed, mut last: u64, ended_since: &mut DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if self.store.web_log_head(reservation).await? > last {
            loop {
                let entries = self.store.web_log_after(reservation, last, PAGE).await?;
                let full = entries.len() == PAGE as usize;
                for entry in entries {
                    last = entry.seq;
                    let data = entry_data(&entry);
                    let _ = feed.frames.send(Arc::new(Frame::Entry(entry, data)));
                }
                if !full {
                    break;
                }
            }
        }
        for (session, reason, at) in self.store.ended_web_sessions(reservation, *ended_since).await? {
            *ended_since = at;
            let _ = feed.frames.send(Arc::new(Frame::Ended { session, reason }));
        }
        Ok(last)
    }

    async fn phase(&self, reservation: &ReservationId) -> Result<Option<PhaseNow>, StoreError> {
        let Some(record) = self.store.reservation(reservation).await? else { return Ok(None) };
        let (times, status) = schedule::at(&record, &self.config.rooms, Utc::now());
        Ok(Some(PhaseNow { phase: status.phase, opens_at: times.opens_at }))
    }
}

/// Why a refill failed.
#[derive(Debug, thiserror::Error)]
enum RefillError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the homeserver did not give the room's messages: {0}")]
    Homeserver(#[from] MatrixError),
}

/// An entry's SSE `data`: its payload with its `seq`.
pub fn entry_data(entry: &LoggedEntry) -> String {
    let mut data: serde_json::Value =
        serde_json::from_str(entry.payload.as_str()).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(fields) = data.as_object_mut() {
        fields.insert("seq".into(), serde_json::json!(entry.seq));
    }
    data.to_string()
}

/// Returns once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The events of a transaction that may make log entries: room messages and
/// redactions, read with ruma's types (an event that does not read as its type is left
/// out, as the appservice handler leaves it out).
pub fn loggable(raws: &[&RawValue]) -> Vec<AnyTimelineEvent> {
    raws.iter()
        .filter_map(|raw| {
            let raw = Raw::<AnyTimelineEvent>::from_json((*raw).to_owned());
            let kind = raw.get_field::<TimelineEventType>("type").ok()??;
            matches!(kind, TimelineEventType::RoomMessage | TimelineEventType::RoomRedaction)
                .then(|| raw.deserialize().ok())
                .flatten()
        })
        .collect()
}

/// Logs a transaction's room events for the web chat: each managed room's messages,
/// edits, redactions and the bot's notices become entries of its reservation's log, in
/// order; an event logged already (a retry) is not logged again. Wakes the feeds of the
/// reservations that got entries. Only with `webchat` configured.
pub async fn record(
    store: &dyn Store, hub: &Hub, config: &Config, events: &[AnyTimelineEvent], now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let Some(webchat) = &config.webchat else { return Ok(0) };
    if events.is_empty() {
        return Ok(0);
    }
    let mut rooms: Vec<(OwnedRoomId, Vec<&AnyTimelineEvent>)> = Vec::new();
    for event in events {
        match rooms.iter_mut().find(|(room, _)| room == event.room_id()) {
            Some((_, list)) => list.push(event),
            None => rooms.push((event.room_id().to_owned(), vec![event])),
        }
    }
    let key = config.web_key();
    let bot = config.bot_user_id();
    let mut logged = 0;
    for (room_id, events) in rooms {
        let Some(reservation) = store.reservation_of_room(&room_id).await? else { continue };
        let (hosts, moderators) = match store.reservation(&reservation).await? {
            Some(record) => (record.reservation.hosts, record.reservation.moderators),
            None => (Vec::new(), Vec::new()),
        };
        let mut users: Vec<OwnedUserId> = Vec::new();
        for event in &events {
            for user in log::users_named(event) {
                if !users.contains(&user) {
                    users.push(user);
                }
            }
        }
        let names: HashMap<OwnedUserId, String> = store.member_names(&room_id, &users).await?.into_iter().collect();
        let room = log::Room {
            reservation: &reservation,
            bot: &bot,
            hosts: &hosts,
            moderators: &moderators,
            puppet_prefix: &webchat.puppet_prefix,
            names: &names,
            key: &key,
            web_mark: words::room::WEB_MARK,
        };
        let entries: Vec<NewLogEntry> = events.iter().filter_map(|event| log::entry(event, &room)).collect();
        let appended = store.append_web_log(&reservation, &entries, now).await?;
        if !appended.is_empty() {
            logged += appended.len();
            hub.wake(&reservation);
        }
    }
    Ok(logged)
}
