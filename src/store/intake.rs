//! Recording webhooks by group commit, written once for both databases: the queue, a
//! batch's pass (receipt, effect, outbox event, one facts bump per reservation), and the
//! answers.
//!
//! PostgreSQL's writer tasks record a batch through a sqlx connection ([`Sqlx`]); SQLite's
//! writer thread straight on a connection of its own (`sqlite.rs`), because a round trip
//! to sqlx's SQLite thread for each statement was most of what a webhook cost
//! (BENCHMARKS.md, "Intake, step by step"). [`Writes`] is what both give: the statements
//! and rules below are the same for either.

use macro_rules_attribute::apply;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Encode, Type};
use tokio::sync::{mpsc, oneshot};

use super::{
    Outbound, Outcome, Receipt, StoreError, Windows,
    dialect::{Dialect, on_both_databases},
    rows::{Read, opt_parsed},
    sql, to_millis,
};
use crate::model::{
    AutoJoin, BoundHow, Description, EndReason, Grant, HeldTicket, Holder, ReplayOffset, Reservation, ReservationId,
    StreamKeyHash, StreamUrl, Ticket, WebhookEvent, grant, replay::Edge,
};
use crate::outbox::OutboundEvent;

// The statements of recording a webhook.

/// A webhook's receipt, once per `webhook-id`: `(webhook_id, event_type, reservation_id, received_at)`.
const RECEIPT: &str = "INSERT INTO webhook_receipts (webhook_id, event_type, reservation_id, outcome, received_at)
    VALUES ($1, $2, $3, 'accepted', $4) ON CONFLICT (webhook_id) DO NOTHING";
const RECEIPT_STALE: &str = "UPDATE webhook_receipts SET outcome = 'stale' WHERE webhook_id = $1";
/// New tickets or revocations: like [`FACTS_ARRIVED`] once the room exists. Before, they
/// change no plan (`lifecycle/plan.rs` reads the audience only in a room), so nothing is
/// made due: tickets sold ahead of a show cost no planning each. The version still moves,
/// so a worker opening the room right now plans again before it lets go (its release
/// sees the change), and the new holders are invited: `(reservation_id, at)`.
const TICKETS_ARRIVED: &str = "UPDATE lifecycle SET facts_version = facts_version + 1,
        next_due_at = CASE WHEN room_id IS NOT NULL THEN $2 ELSE next_due_at END
    WHERE reservation_id = $1";
const REVISION: &str = "SELECT revision FROM reservations WHERE reservation_id = $1";
/// A reservation's description, kept at its stored revision when the new one has none.
/// A new start or end counts one more reschedule (a calendar's `SEQUENCE`), in this
/// statement, so that no two upserts can count one move twice or miss one.
const UPSERT_RESERVATION: &str = "INSERT INTO reservations (reservation_id, revision, title, description,
        starts_at, ends_at, stream_url, channel_id, channel_name, hosts, open_before_seconds, close_after_seconds,
        updated_at, stream_key_hash, transcript, chat_rules, moderators, archive_public, archive_indexable,
        replay_offset_ms, auto_join, access, first_seen_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $13)
    ON CONFLICT (reservation_id) DO UPDATE SET
        revision = COALESCE(excluded.revision, reservations.revision),
        title = excluded.title, description = excluded.description,
        starts_at = excluded.starts_at, ends_at = excluded.ends_at, stream_url = excluded.stream_url,
        channel_id = excluded.channel_id, channel_name = excluded.channel_name, hosts = excluded.hosts,
        open_before_seconds = excluded.open_before_seconds,
        close_after_seconds = excluded.close_after_seconds, updated_at = excluded.updated_at,
        stream_key_hash = excluded.stream_key_hash, transcript = excluded.transcript,
        chat_rules = excluded.chat_rules, moderators = excluded.moderators,
        archive_public = excluded.archive_public, archive_indexable = excluded.archive_indexable,
        replay_offset_ms = excluded.replay_offset_ms, auto_join = excluded.auto_join,
        access = excluded.access,
        reschedules = reservations.reschedules + CASE
            WHEN reservations.starts_at <> excluded.starts_at OR reservations.ends_at <> excluded.ends_at THEN 1
            ELSE 0 END";
/// `(channel_id, user_id, at)`: following again undoes a removal not yet carried out.
const FOLLOWER_ADDED: &str = "INSERT INTO followers (channel_id, user_id, added_at) VALUES ($1, $2, $3)
    ON CONFLICT (channel_id, user_id) DO UPDATE SET removed_at = NULL";
/// `(channel_id, user_id, at)`: the first removal counts.
const FOLLOWER_REMOVED: &str =
    "UPDATE followers SET removed_at = $3 WHERE channel_id = $1 AND user_id = $2 AND removed_at IS NULL";
/// Whether the reservation's room is open (or was) while its chat is not public:
/// then it may not become public (docs/replay.md). `(reservation_id)`.
const OPENED_PRIVATE: &str = "SELECT 1 FROM lifecycle l
    LEFT JOIN reservations r ON r.reservation_id = l.reservation_id
    WHERE l.reservation_id = $1 AND l.room_id IS NOT NULL AND COALESCE(r.archive_public, 0) = 0";
/// Another active reservation (neither cancelled nor archived) with this stream key
/// whose scheduled window `[opens_at, archives_at)` overlaps this one's (docs/series.md: a
/// series reuses its key): `(stream_key_hash, reservation_id, opens_at, archives_at,
/// open_before, close_after)`, the last two the config's seconds for a reservation
/// without its own `chat.*`.
const STREAM_KEY_TAKEN: &str = "SELECT r.reservation_id FROM reservations r
    LEFT JOIN reservation_signals s ON s.reservation_id = r.reservation_id
    LEFT JOIN lifecycle l ON l.reservation_id = r.reservation_id
    WHERE r.stream_key_hash = $1 AND r.reservation_id <> $2
        AND s.cancelled_at IS NULL AND l.archived_at IS NULL
        AND r.starts_at - COALESCE(r.open_before_seconds, $5) * 1000 < $4
        AND r.ends_at + COALESCE(r.close_after_seconds, $6) * 1000 > $3
    LIMIT 1";
/// The first cancellation counts: `(reservation_id, at, reason)`.
const CANCEL: &str = "INSERT INTO reservation_signals (reservation_id, cancelled_at, cancel_reason)
    VALUES ($1, $2, $3)
    ON CONFLICT (reservation_id) DO UPDATE SET
        cancelled_at = COALESCE(reservation_signals.cancelled_at, excluded.cancelled_at),
        cancel_reason = COALESCE(reservation_signals.cancel_reason, excluded.cancel_reason)";
/// What a grant decides on (`model::grant`): `(reservation_id, ticket_id)`.
const TICKET_HELD: &str = "SELECT user_id, email, holder_digest, bound_how IS NOT NULL AS bound,
        revoked_at IS NOT NULL AS revoked, holder_generation
    FROM tickets WHERE reservation_id = $1 AND ticket_id = $2";
/// A ticket's holder, as a grant decided: `(reservation_id, ticket_id, user_id, email,
/// display_name, claim_hash, holder_digest, holder_generation, bound_how, at)`. Every
/// column of the holder is written, so nothing of the former one stays; a new email
/// holder is looked up on the homeserver afresh. The first grant's time is kept.
const HOLD_TICKET: &str = "INSERT INTO tickets
        (reservation_id, ticket_id, user_id, email, display_name, claim_hash, holder_digest, holder_generation,
         bound_how, bound_at, granted_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $9 IS NULL THEN NULL ELSE $10 END, $10)
    ON CONFLICT (reservation_id, ticket_id) DO UPDATE SET
        user_id = excluded.user_id, email = excluded.email, display_name = excluded.display_name,
        claim_hash = excluded.claim_hash, holder_digest = excluded.holder_digest,
        holder_generation = excluded.holder_generation, bound_how = excluded.bound_how,
        bound_at = excluded.bound_at, looked_up_at = NULL,
        granted_at = COALESCE(tickets.granted_at, excluded.granted_at)";
/// Whether `ticket.granted` for `$1` comes too late: its reservation is cancelled or archived.
const RESERVATION_CLOSED: &str = "SELECT 1 FROM reservation_signals s WHERE s.reservation_id = $1
        AND s.cancelled_at IS NOT NULL
    UNION ALL SELECT 1 FROM lifecycle l WHERE l.reservation_id = $1 AND l.archived_at IS NOT NULL
    LIMIT 1";
/// A cancellation ends what the addresses and codes of its tickets were for: `(reservation_id)`.
const FORGET_CANCELLED: &str = "UPDATE tickets SET email = NULL, display_name = NULL, claim_hash = NULL
    WHERE reservation_id = $1 AND (email IS NOT NULL OR display_name IS NOT NULL OR claim_hash IS NOT NULL)";
/// Drops a receipt again: `(webhook_id)`, for a grant that came too late and stores nothing.
const RECEIPT_FORGET: &str = "DELETE FROM webhook_receipts WHERE webhook_id = $1";
/// `(reservation_id, ticket_id, at)`; the first revocation counts.
const REVOKE_TICKET: &str = "INSERT INTO tickets (reservation_id, ticket_id, revoked_at) VALUES ($1, $2, $3)
    ON CONFLICT (reservation_id, ticket_id) DO UPDATE SET revoked_at = COALESCE(tickets.revoked_at, excluded.revoked_at)";
/// The web sessions of a ticket end with it (docs/web-chat.md): `(reservation_id,
/// ticket_id, at, reason)`, `reason` `revoked` or `moved`.
const END_TICKET_SESSIONS: &str = "UPDATE webchat_sessions SET ended_at = $3, ended_reason = $4
    WHERE reservation_id = $1 AND viewer_kind = 'ticket' AND viewer_value = $2 AND ended_at IS NULL
        AND expires_at > $3";
/// A correction binds the same holder: their web user and sessions carry over to the
/// ticket's new generation. `(reservation_id, ticket_id, from, to)`.
const CARRY_WEB_USER: &str = "UPDATE webchat_users SET holder_generation = $4
    WHERE reservation_id = $1 AND viewer_kind = 'ticket' AND viewer_value = $2 AND holder_generation = $3";
const CARRY_WEB_SESSIONS: &str = "UPDATE webchat_sessions SET holder_generation = $4
    WHERE reservation_id = $1 AND viewer_kind = 'ticket' AND viewer_value = $2 AND holder_generation = $3";
/// `(reservation_id, at)`; the latest start counts (`CASE`, since SQLite has no `GREATEST`).
const STREAM_STARTED: &str = "INSERT INTO reservation_signals (reservation_id, stream_started_at)
    VALUES ($1, $2)
    ON CONFLICT (reservation_id) DO UPDATE SET stream_started_at =
        CASE WHEN COALESCE(reservation_signals.stream_started_at, 0) > excluded.stream_started_at
        THEN COALESCE(reservation_signals.stream_started_at, 0) ELSE excluded.stream_started_at END";
/// `(reservation_id, at)`; the latest end counts.
const STREAM_ENDED: &str = "INSERT INTO reservation_signals (reservation_id, stream_ended_at)
    VALUES ($1, $2)
    ON CONFLICT (reservation_id) DO UPDATE SET stream_ended_at =
        CASE WHEN COALESCE(reservation_signals.stream_ended_at, 0) > excluded.stream_ended_at
        THEN COALESCE(reservation_signals.stream_ended_at, 0) ELSE excluded.stream_ended_at END";
/// `(reservation_id, edge, at)`: a start or end as reported, once (`model::replay`).
const STREAM_EDGE: &str = "INSERT INTO stream_edges (reservation_id, edge, at) VALUES ($1, $2, $3)
    ON CONFLICT (reservation_id, edge, at) DO NOTHING";
/// One outbound event into the outbox, once per `once_key` (NULL never conflicts):
/// `(event_id, reservation_id, type, payload, once_key, created_at)`, due at once.
const OUTBOX_INSERT: &str = "INSERT INTO outbox
        (event_id, reservation_id, type, payload, once_key, created_at, next_attempt_at)
    VALUES ($1, $2, $3, $4, $5, $6, $6)
    ON CONFLICT DO NOTHING";

/// A value bound to a statement: the two types the schema uses, either of them NULL.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Int(Some(n))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(n: Option<i64>) -> Self {
        Arg::Int(n)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(Some(s))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(s: Option<&'a str>) -> Self {
        Arg::Text(s)
    }
}

/// A connection inside a write transaction, as recording needs it. Statements use `$1`,
/// `$2`… for their arguments, in the order given.
pub(super) trait Writes {
    /// Held until the transaction ends, so that two writes of one stream key cannot both
    /// find it free (`$1`, its hash); `None` where writes are one at a time already.
    const LOCK_STREAM_KEY: Option<&'static str>;

    /// Runs `sql`; returns the rows it changed.
    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError>;

    /// Runs `sql` and reads its first row, if any, with `read`.
    async fn fetch_optional<T>(
        &mut self, sql: &'static str, args: &[Arg<'_>], read: impl FnOnce(&dyn Read) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError>;
}

/// A sqlx connection of database `D`.
pub(super) struct Sqlx<'c, D: Dialect>(pub &'c mut D::Connection);

fn bind<'q, D>(
    mut query: sqlx::query::Query<'q, D, <D as sqlx::Database>::Arguments>, args: &[Arg<'q>],
) -> sqlx::query::Query<'q, D, <D as sqlx::Database>::Arguments>
where
    D: Dialect,
    i64: Encode<'q, D> + Type<D>,
    Option<i64>: Encode<'q, D>,
    &'q str: Encode<'q, D> + Type<D>,
    Option<&'q str>: Encode<'q, D>,
{
    for arg in args {
        query = match *arg {
            Arg::Int(n) => query.bind(n),
            Arg::Text(s) => query.bind(s),
        };
    }
    query
}

#[apply(on_both_databases!)]
impl Writes for Sqlx<'_, D> {
    const LOCK_STREAM_KEY: Option<&'static str> = D::LOCK_STREAM_KEY;

    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let done = bind(sqlx::query(sql), args).execute(&mut *self.0).await?;
        Ok(D::rows_affected(&done))
    }

    async fn fetch_optional<T>(
        &mut self, sql: &'static str, args: &[Arg<'_>], read: impl FnOnce(&dyn Read) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let row = bind(sqlx::query(sql), args).fetch_optional(&mut *self.0).await?;
        row.as_ref().map(|row| read(row)).transpose()
    }
}

/// Webhooks waiting for the group-commit writer beyond this many get 503 at once; the
/// sender retries.
pub(super) const INTAKE_QUEUE: usize = 4096;
/// At most this many webhooks share one commit.
pub(super) const INTAKE_BATCH: usize = 512;

/// One webhook waiting for the group-commit writer.
pub struct Job {
    pub webhook_id: String,
    pub received_at: DateTime<Utc>,
    pub event: WebhookEvent,
    pub outbox: Outbound,
    /// The config's windows, for the stream-key rule.
    pub windows: Windows,
    pub done: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// Hands a webhook to the group-commit writer and waits for its commit.
pub(super) async fn queue(
    writer: &mpsc::Sender<Job>, receipt: &Receipt<'_>, event: &WebhookEvent, outbox: Outbound, windows: Windows,
) -> Result<Outcome, StoreError> {
    let (done, answer) = oneshot::channel();
    let job = Job {
        webhook_id: receipt.webhook_id.to_owned(),
        received_at: receipt.received_at,
        event: event.clone(),
        outbox,
        windows,
        done,
    };
    writer.try_send(job).map_err(|e| {
        StoreError::Unavailable(match e {
            mpsc::error::TrySendError::Full(_) => format!("{INTAKE_QUEUE} webhooks are waiting to be written"),
            mpsc::error::TrySendError::Closed(_) => "the webhook writer has stopped".to_owned(),
        })
    })?;
    answer.await.map_err(|_| StoreError::Unavailable("the webhook writer has stopped".into()))?
}

/// Records how long a batch's `COMMIT` took, from `started`: its durable write (the WAL's
/// `fsync` on SQLite, its flush on PostgreSQL). A webhook waits for the commit under way
/// and then for its own, so this is most of intake's latency.
pub(super) fn committed(started: std::time::Instant) {
    metrics::histogram!("foyer_intake_commit_seconds").record(started.elapsed().as_secs_f64());
}

/// Answers every job of a batch with its outcome, or all with the batch's error.
pub(super) fn answer(batch: &mut Vec<Job>, outcomes: Result<Vec<Result<Outcome, StoreError>>, StoreError>) {
    metrics::histogram!("foyer_intake_batch_size").record(batch.len() as f64);
    match outcomes {
        Ok(outcomes) => {
            for (job, outcome) in batch.drain(..).zip(outcomes) {
                let _ = job.done.send(outcome);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, webhooks = batch.len(), "webhook batch not committed");
            for job in batch.drain(..) {
                let _ = job.done.send(Err(StoreError::Unavailable(e.to_string())));
            }
        }
    }
}

/// Records every job of a batch inside the caller's transaction, then makes each
/// reservation with new facts due once, however many webhooks concern it. `None` when a
/// job failed outside a savepoint: the caller rolls back and calls again `isolated`,
/// with a savepoint per job, so that only the failing one fails. (The first pass takes
/// none: input is validated before, so a failure is rare, and a savepoint costs two
/// statements a webhook.)
pub(super) async fn record_batch(
    w: &mut impl Writes, batch: &[Job], isolated: bool,
) -> Result<Option<Vec<Result<Outcome, StoreError>>>, StoreError> {
    let mut outcomes: Vec<Option<Result<Outcome, StoreError>>> = batch.iter().map(|_| None).collect();
    // Reservations with new facts, each due at its earliest webhook's arrival, and
    // whether they were all tickets.
    let mut due: BTreeMap<&str, (DateTime<Utc>, bool)> = BTreeMap::new();
    // In the reservations' order (each one's webhooks in theirs): two batches on
    // PostgreSQL then lock the rows they share in one order, and cannot deadlock.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch[i].event.subject());
    for i in order {
        let job = &batch[i];
        if isolated {
            w.execute("SAVEPOINT webhook", &[]).await?;
        }
        match record(w, job).await {
            Ok(outcome) => {
                // A series' occurrences were made due as they were written; a channel's
                // followers make no reservation due (the followers' worker looks at them).
                if let (Outcome::Accepted, Some(id)) = (outcome, job.event.reservation_id())
                    && !series_event(&job.event)
                {
                    let tickets_only = tickets_only(&job.event);
                    let (at, all_tickets) = due.entry(id.as_str()).or_insert((job.received_at, true));
                    (*at, *all_tickets) = ((*at).min(job.received_at), *all_tickets && tickets_only);
                }
                outcomes[i] = Some(Ok(outcome));
            }
            Err(e) if isolated => {
                w.execute("ROLLBACK TO SAVEPOINT webhook", &[]).await?;
                outcomes[i] = Some(Err(e));
            }
            Err(e) => {
                tracing::warn!(webhook_id = %job.webhook_id, error = %e, "a webhook failed in a batch; redoing the batch one savepoint per webhook");
                return Ok(None);
            }
        }
        if isolated {
            w.execute("RELEASE SAVEPOINT webhook", &[]).await?;
        }
    }
    for (reservation_id, (at, tickets_only)) in due {
        facts_arrived(w, reservation_id, at, tickets_only).await?;
    }
    Ok(Some(outcomes.into_iter().flatten().collect()))
}

/// One webhook inside the caller's transaction: its receipt (`Duplicate` when there is
/// one) and its effect. The caller makes the reservation due ([`facts_arrived`]).
pub(super) async fn record(w: &mut impl Writes, job: &Job) -> Result<Outcome, StoreError> {
    let Job { webhook_id, received_at, event, outbox, windows, .. } = job;
    let (webhook_id, received_at) = (webhook_id.as_str(), *received_at);
    let receipt = [webhook_id.into(), event.kind().into(), event.subject().into(), to_millis(received_at).into()];
    if w.execute(RECEIPT, &receipt).await? == 0 {
        return Ok(Outcome::Duplicate);
    }
    let outcome = apply(w, event, received_at, outbox, *windows).await?;
    match outcome {
        Outcome::Stale => _ = w.execute(RECEIPT_STALE, &[webhook_id.into()]).await?,
        // Nothing is stored of a grant that came too late, not even its receipt.
        Outcome::Closed => _ = w.execute(RECEIPT_FORGET, &[webhook_id.into()]).await?,
        Outcome::Accepted | Outcome::Duplicate => {}
    }
    Ok(outcome)
}

/// New facts about `reservation_id`, from `at`: plan it again, or only once its room
/// exists when they are all tickets (`TICKETS_ARRIVED`, `tickets_only`).
pub(super) async fn facts_arrived(
    w: &mut impl Writes, reservation_id: &str, at: DateTime<Utc>, tickets_only: bool,
) -> Result<(), StoreError> {
    let statement = if tickets_only { TICKETS_ARRIVED } else { sql::FACTS_ARRIVED };
    w.execute(statement, &[reservation_id.into(), to_millis(at).into()]).await?;
    Ok(())
}

/// Whether `event` concerns a series, whose id is no reservation's (`store/series.rs`).
fn series_event(event: &WebhookEvent) -> bool {
    matches!(event, WebhookEvent::SeriesUpserted(_) | WebhookEvent::SeriesCancelled { .. })
}

/// Whether `event` only grants or revokes tickets (see [`facts_arrived`]).
pub(super) fn tickets_only(event: &WebhookEvent) -> bool {
    matches!(event, WebhookEvent::TicketsGranted { .. } | WebhookEvent::TicketsRevoked { .. })
}

/// Applies one event's effect inside the caller's transaction.
async fn apply(
    w: &mut impl Writes, event: &WebhookEvent, at: DateTime<Utc>, outbox: &Outbound, windows: Windows,
) -> Result<Outcome, StoreError> {
    let now = to_millis(at);
    match event {
        WebhookEvent::Upsert(r) => return upsert(w, r, now, windows).await,
        WebhookEvent::SeriesUpserted(upsert) => {
            return super::series::record_upsert(w, upsert, at, outbox, windows).await;
        }
        WebhookEvent::SeriesCancelled { id, reason } => {
            super::series::record_cancel(w, id, reason.as_deref(), now).await?;
        }
        WebhookEvent::FollowerAdded { channel, user } => {
            w.execute(FOLLOWER_ADDED, &[channel.as_str().into(), user.as_str().into(), now.into()]).await?;
        }
        WebhookEvent::FollowerRemoved { channel, user } => {
            w.execute(FOLLOWER_REMOVED, &[channel.as_str().into(), user.as_str().into(), now.into()]).await?;
        }
        WebhookEvent::Cancelled { id, reason } => {
            w.execute(CANCEL, &[id.as_str().into(), now.into(), reason.as_deref().into()]).await?;
            w.execute(FORGET_CANCELLED, &[id.as_str().into()]).await?;
        }
        WebhookEvent::TicketsGranted { id, tickets } => {
            if w.fetch_optional(RESERVATION_CLOSED, &[id.as_str().into()], |_| Ok(())).await?.is_some() {
                return Ok(Outcome::Closed);
            }
            for ticket in tickets {
                grant_ticket(w, id, ticket, now, at, outbox).await?;
            }
        }
        WebhookEvent::TicketsRevoked { id, ticket_ids } => {
            for ticket_id in ticket_ids {
                let key = [id.as_str().into(), ticket_id.as_str().into(), now.into()];
                w.execute(REVOKE_TICKET, &key).await?;
                let revoked = [key[0], key[1], key[2], EndReason::Revoked.as_str().into()];
                w.execute(END_TICKET_SESSIONS, &revoked).await?;
            }
        }
        WebhookEvent::StreamStarted { id, at } => {
            w.execute(STREAM_STARTED, &[id.as_str().into(), to_millis(*at).into()]).await?;
            w.execute(STREAM_EDGE, &[id.as_str().into(), Edge::Start.as_str().into(), to_millis(*at).into()]).await?;
        }
        WebhookEvent::StreamEnded { id, at } => {
            w.execute(STREAM_ENDED, &[id.as_str().into(), to_millis(*at).into()]).await?;
            w.execute(STREAM_EDGE, &[id.as_str().into(), Edge::End.as_str().into(), to_millis(*at).into()]).await?;
        }
    }
    Ok(Outcome::Accepted)
}

/// A reservation's whole description, as `reservation.created` and each occurrence of a
/// series write it (the caller makes it due): `Stale` when the stored revision is newer.
pub(super) async fn upsert(
    w: &mut impl Writes, r: &Reservation, now: i64, windows: Windows,
) -> Result<Outcome, StoreError> {
    let stored = w.fetch_optional(REVISION, &[r.id.as_str().into()], |row| row.opt_int("revision")).await?;
    if let (Some(stored), Some(incoming)) = (stored.flatten(), r.revision)
        && (incoming.0 as i64) < stored
    {
        return Ok(Outcome::Stale);
    }
    if let Some(key) = &r.stream_key {
        if let Some(lock) = lock_stream_key(w) {
            w.execute(lock, &[key.as_str().into()]).await?;
        }
        let (opens_at, archives_at) = windows.of(r);
        let args = [
            key.as_str().into(),
            r.id.as_str().into(),
            to_millis(opens_at).into(),
            to_millis(archives_at).into(),
            windows.open_before_seconds.into(),
            windows.close_after_seconds.into(),
        ];
        if w.fetch_optional(STREAM_KEY_TAKEN, &args, |_| Ok(())).await?.is_some() {
            // Rolls the receipt back too: a refused event changes nothing.
            return Err(StoreError::Refused {
                path: "data.ingest.stream_key",
                message: "is already the stream key of another active reservation whose window (opens_at to archives_at) overlaps this one's".into(),
            });
        }
    }
    if r.archive.is_public() && w.fetch_optional(OPENED_PRIVATE, &[r.id.as_str().into()], |_| Ok(())).await?.is_some() {
        // Members spoke under the promise of a private chat: it stays so.
        return Err(StoreError::Refused {
            path: "data.chat.archive",
            message: "can become \"public\" only before the room opens; this room opened as private".into(),
        });
    }
    let hosts = serde_json::to_string(&r.hosts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let moderators = serde_json::to_string(&r.moderators).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let chat_rules = (!r.rules.is_empty()).then(|| r.rules.to_json().to_string());
    let args = [
        r.id.as_str().into(),
        r.revision.map(|v| v.0 as i64).into(),
        r.title.as_str().into(),
        r.description.as_ref().map(Description::as_str).into(),
        to_millis(r.starts_at).into(),
        to_millis(r.ends_at).into(),
        r.stream_url.as_ref().map(StreamUrl::as_str).into(),
        r.channel.as_ref().map(|c| c.id.as_str()).into(),
        r.channel.as_ref().map(|c| c.name.as_str()).into(),
        hosts.as_str().into(),
        r.open_before_seconds.map(i64::from).into(),
        r.close_after_seconds.map(i64::from).into(),
        now.into(),
        r.stream_key.as_ref().map(StreamKeyHash::as_str).into(),
        r.transcript.map(i64::from).into(),
        chat_rules.as_deref().into(),
        moderators.as_str().into(),
        i64::from(r.archive.is_public()).into(),
        i64::from(r.archive.indexable()).into(),
        r.replay_offset.map(ReplayOffset::ms).into(),
        r.auto_join.map(AutoJoin::as_str).into(),
        r.access.as_str().into(),
    ];
    w.execute(UPSERT_RESERVATION, &args).await?;
    Ok(Outcome::Accepted)
}

/// Grants one ticket as `model::grant` decides: a new ticket, the same holder again
/// (nothing), a correction, a move to another holder, or an erased address restored.
async fn grant_ticket(
    w: &mut impl Writes, id: &ReservationId, ticket: &Ticket, now: i64, at: DateTime<Utc>, outbox: &Outbound,
) -> Result<(), StoreError> {
    let key = [id.as_str().into(), ticket.id.as_str().into()];
    let held = w
        .fetch_optional(TICKET_HELD, &key, |row| {
            Ok(HeldTicket {
                user_id: opt_parsed(row, "user_id", |s: &str| ruma::UserId::parse(s))?,
                email: row.opt_text("email")?,
                digest: row.opt_text("holder_digest")?,
                bound: row.flag("bound")?,
                revoked: row.flag("revoked")?,
                generation: row.int("holder_generation")?,
            })
        })
        .await?;
    let decision = grant(held.as_ref(), &ticket.holder);
    let (generation, bound_how) = match decision {
        Grant::Unchanged => return Ok(()),
        Grant::New => (0, None),
        Grant::Move { generation } | Grant::Restore { generation } => (generation, None),
        Grant::Correction { generation } => (generation, Some(BoundHow::Correction)),
    };
    let (user, email, display_name, claim_hash, digest) = match &ticket.holder {
        Holder::User(user) => (Some(user.as_str()), None, None, None, None),
        Holder::Email { email, display_name, claim } => (
            None,
            Some(email.address()),
            display_name.as_ref().map(|n| n.as_str()),
            Some(claim.hash(generation)),
            Some(claim.digest.as_str()),
        ),
    };
    let args = [
        id.as_str().into(),
        ticket.id.as_str().into(),
        user.into(),
        email.into(),
        display_name.into(),
        claim_hash.into(),
        digest.into(),
        generation.into(),
        bound_how.map(BoundHow::as_str).into(),
        now.into(),
    ];
    w.execute(HOLD_TICKET, &args).await?;
    // The web chat follows the holder: a move ends the former holder's sessions (their
    // web user is planned out of the room); a correction keeps the same holder's.
    match (decision, &held) {
        (Grant::Move { .. }, _) => {
            w.execute(END_TICKET_SESSIONS, &[key[0], key[1], now.into(), EndReason::Moved.as_str().into()]).await?;
        }
        (Grant::Correction { generation }, Some(held)) => {
            let carry = [key[0], key[1], held.generation.into(), generation.into()];
            w.execute(CARRY_WEB_USER, &carry).await?;
            w.execute(CARRY_WEB_SESSIONS, &carry).await?;
        }
        _ => {}
    }
    // An email ticket sent again with its holder's user ID was bound just now: the
    // platform hears of it like of any other claim.
    if let (Some(how), Holder::User(user)) = (bound_how, &ticket.holder) {
        let event = OutboundEvent::ticket_claimed(id, ticket.id.as_str(), user, how, at);
        write_event(w, outbox, &event, now).await?;
    }
    if held.is_some() && bound_how.is_none() {
        tracing::info!(reservation_id = %id, ticket_id = %ticket.id.as_str(), generation, "ticket moved to another holder");
    }
    Ok(())
}

/// `W`'s stream-key lock, if it takes one.
fn lock_stream_key<W: Writes>(_: &W) -> Option<&'static str> {
    W::LOCK_STREAM_KEY
}

/// Writes `event` to the outbox in the caller's transaction, if events are written at
/// all (`now` is when it was made, and due). One whose `once_key` is there adds nothing.
pub(super) async fn write_event(
    w: &mut impl Writes, outbox: &Outbound, event: &OutboundEvent, now: i64,
) -> Result<(), StoreError> {
    if !outbox.writes() {
        return Ok(());
    }
    let args = [
        event.id.as_str().into(),
        event.reservation_id.as_str().into(),
        event.kind.as_str().into(),
        event.body.as_str().into(),
        event.once_key.as_deref().into(),
        now.into(),
    ];
    w.execute(OUTBOX_INSERT, &args).await?;
    Ok(())
}

/// Runs a future that never waits: recording on SQLite's writer thread, whose
/// [`Writes`] does its work in place.
pub(super) fn now_or_never<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => unreachable!("the SQLite writer's statements never wait"),
    }
}
