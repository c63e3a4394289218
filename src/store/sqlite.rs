//! SQLite, the embedded default: WAL, `synchronous=FULL` (a commit survives power
//! loss), foreign keys, a busy timeout; writes take the lock up front (`BEGIN IMMEDIATE`)
//! so two writers never deadlock upgrading a read lock.
//!
//! Webhooks are written by group commit: one writer task takes every webhook waiting
//! in its queue, records them all in one transaction (each under a savepoint of its
//! own only if one of them fails), commits (one fsync) and only then answers each. A webhook's 2xx still means committed, and a
//! burst costs one fsync per batch instead of one per webhook.

use std::{collections::BTreeMap, str::FromStr as _, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, OwnedUserId};
use sqlx::{
    Row as _, SqliteConnection, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous},
};
use tokio::sync::{mpsc, oneshot};

use super::{
    AdminAction, Claim, CreateBegan, LifecycleState, MemberCounts, MembershipFact, Outcome, Receipt, ReservationRecord,
    Signals, StepRecord, Store, StoreError, TicketCounts, TicketRow, from_millis, to_millis,
};
use crate::events::HomeserverEvent;
use crate::model::SessionId;
use crate::model::{
    Channel, Description, ExternalId, Reservation, ReservationId, Revision, StreamUrl, Title, WebhookEvent,
};
use crate::model::{InviteFailure, Member, Membership};

/// Numbered migrations, applied in order once each; never edit a released one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_lifecycle.sql")),
    (3, include_str!("../../migrations/sqlite/0003_members.sql")),
    (4, include_str!("../../migrations/sqlite/0004_stream.sql")),
    (5, include_str!("../../migrations/sqlite/0005_spaces.sql")),
    (6, include_str!("../../migrations/sqlite/0006_lease_owner.sql")),
    (7, include_str!("../../migrations/sqlite/0007_next_wake_index.sql")),
    (8, include_str!("../../migrations/sqlite/0008_admin_actions.sql")),
    (9, include_str!("../../migrations/sqlite/0009_admin_inbox.sql")),
    (10, include_str!("../../migrations/sqlite/0010_room_name.sql")),
    (11, include_str!("../../migrations/sqlite/0011_holder_invites.sql")),
    (12, include_str!("../../migrations/sqlite/0012_status_sessions.sql")),
];

pub struct SqliteStore {
    pool: SqlitePool,
    intake: mpsc::Sender<Job>,
}

/// Webhooks waiting for the writer beyond this many get 503 at once; the sender retries.
const INTAKE_QUEUE: usize = 4096;
/// At most this many webhooks share one commit.
const INTAKE_BATCH: usize = 512;

/// One webhook waiting for the group-commit writer.
struct Job {
    webhook_id: String,
    received_at: DateTime<Utc>,
    event: WebhookEvent,
    done: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The writer: drains the queue into batches until every sender is gone.
async fn group_commit(pool: SqlitePool, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(INTAKE_BATCH);
    while jobs.recv_many(&mut batch, INTAKE_BATCH).await > 0 {
        metrics::histogram!("foyer_intake_batch_size").record(batch.len() as f64);
        match commit_batch(&pool, &batch).await {
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
}

/// Records every job of the batch in one transaction and commits once.
///
/// Each statement is a round trip to sqlx's SQLite thread, and those hand-offs, not
/// SQLite, are what bounds intake (BENCHMARKS.md, "Webhook intake"), so the first pass
/// takes no savepoints. Should a job fail (input is validated before, so this is rare),
/// that transaction is rolled back and the batch redone with a savepoint per job
/// (`isolated`), so that only the failing one fails.
async fn commit_batch(pool: &SqlitePool, batch: &[Job]) -> Result<Vec<Result<Outcome, StoreError>>, sqlx::Error> {
    match commit(pool, batch, false).await? {
        Some(outcomes) => Ok(outcomes),
        None => Ok(commit(pool, batch, true).await?.unwrap_or_default()),
    }
}

/// One pass over the batch; `None` when a job failed outside a savepoint (the
/// transaction is then rolled back), which only happens when not `isolated`.
async fn commit(
    pool: &SqlitePool,
    batch: &[Job],
    isolated: bool,
) -> Result<Option<Vec<Result<Outcome, StoreError>>>, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    // Reservations with new facts, each due at its earliest webhook's arrival.
    let mut due: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for job in batch {
        if isolated {
            sqlx::query("SAVEPOINT webhook").execute(&mut *tx).await?;
        }
        match record(&mut tx, &job.webhook_id, job.received_at, &job.event).await {
            Ok(outcome) => {
                if outcome == Outcome::Accepted {
                    let at = due.entry(job.event.reservation_id().as_str()).or_insert(job.received_at);
                    *at = (*at).min(job.received_at);
                }
                outcomes.push(Ok(outcome));
            }
            Err(e) if isolated => {
                sqlx::query("ROLLBACK TO webhook").execute(&mut *tx).await?;
                outcomes.push(Err(unavailable(e)));
            }
            Err(e) => {
                tracing::warn!(webhook_id = %job.webhook_id, error = %e, "a webhook failed in a batch; redoing the batch one savepoint per webhook");
                tx.rollback().await?;
                return Ok(None);
            }
        }
        if isolated {
            sqlx::query("RELEASE webhook").execute(&mut *tx).await?;
        }
    }
    // New facts: plan these reservations again now, once each however many webhooks
    // of the batch concern them. The version bump tells a worker holding a lease that
    // what it planned from is already outdated.
    for (reservation_id, at) in due {
        sqlx::query(
            "INSERT INTO lifecycle (reservation_id, next_due_at, facts_version) VALUES (?, ?, 1)
             ON CONFLICT (reservation_id) DO UPDATE SET
                next_due_at = excluded.next_due_at, facts_version = lifecycle.facts_version + 1",
        )
        .bind(reservation_id)
        .bind(to_millis(at))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Some(outcomes))
}

/// One webhook inside the writer's transaction; the batch makes its reservation due.
async fn record(
    conn: &mut SqliteConnection,
    webhook_id: &str,
    received_at: DateTime<Utc>,
    event: &WebhookEvent,
) -> Result<Outcome, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO webhook_receipts (webhook_id, event_type, reservation_id, outcome, received_at)
         VALUES (?, ?, ?, 'accepted', ?) ON CONFLICT (webhook_id) DO NOTHING",
    )
    .bind(webhook_id)
    .bind(event.kind())
    .bind(event.reservation_id().as_str())
    .bind(to_millis(received_at))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Outcome::Duplicate);
    }
    let outcome = apply(&mut *conn, event, received_at).await?;
    if outcome == Outcome::Stale {
        sqlx::query("UPDATE webhook_receipts SET outcome = 'stale' WHERE webhook_id = ?")
            .bind(webhook_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(outcome)
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    pub async fn open(config: &crate::config::DatabaseConfig) -> Result<Self, StoreError> {
        let url = config.url.expose();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections.unwrap_or(4))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("{url}: {e}")))?;
        let (intake, jobs) = mpsc::channel(INTAKE_QUEUE);
        tokio::spawn(group_commit(pool.clone(), jobs));
        let store = Self { pool, intake };
        store.migrate().await?;
        // One Foyer per SQLite database: leases left by a previous run of this process
        // (a crash) are ours, and nothing else holds any. Release them now, so steps due
        // while Foyer was down run at once instead of after the lease expires.
        sqlx::query("UPDATE lifecycle SET locked_until = NULL WHERE locked_until IS NOT NULL")
            .execute(&store.pool)
            .await
            .map_err(|e| StoreError::Open(format!("releasing old leases: {e}")))?;
        Ok(store)
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let open_err = |e: sqlx::Error| StoreError::Open(format!("migrating: {e}"));
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(open_err)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS foyer_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(open_err)?;
        let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM foyer_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(open_err)?;
        let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if current > latest {
            return Err(StoreError::Open(format!(
                "the database has schema version {current}, newer than this Foyer knows ({latest}); run a newer Foyer"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(open_err)?;
            sqlx::query("INSERT INTO foyer_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(to_millis(Utc::now()))
                .execute(&mut *tx)
                .await
                .map_err(open_err)?;
            tracing::info!(version, "applied database migration");
        }
        tx.commit().await.map_err(open_err)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn record_webhook(&self, receipt: &Receipt<'_>, event: &WebhookEvent) -> Result<Outcome, StoreError> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            webhook_id: receipt.webhook_id.to_owned(),
            received_at: receipt.received_at,
            event: event.clone(),
            done,
        };
        self.intake.try_send(job).map_err(|e| {
            StoreError::Unavailable(match e {
                mpsc::error::TrySendError::Full(_) => format!("{INTAKE_QUEUE} webhooks are waiting to be written"),
                mpsc::error::TrySendError::Closed(_) => "the webhook writer has stopped".to_owned(),
            })
        })?;
        answer.await.map_err(|_| StoreError::Unavailable("the webhook writer has stopped".into()))?
    }

    async fn reservation(&self, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError> {
        let row =
            sqlx::query(SELECT_RECORD_BY_ID).bind(id.as_str()).fetch_optional(&self.pool).await.map_err(unavailable)?;
        row.map(|r| record_from_row(&r)).transpose()
    }

    async fn reservations_by_id(&self, ids: &[ReservationId]) -> Result<Vec<ReservationRecord>, StoreError> {
        let ids = serde_json::to_string(&ids.iter().map(ReservationId::as_str).collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(SELECT_RECORDS_BY_IDS).bind(ids).fetch_all(&self.pool).await.map_err(unavailable)?;
        // One unreadable row is left out rather than failing the others (the status page).
        let read = rows.iter().map(|row| (row.try_get("reservation_id").unwrap_or_default(), record_from_row(row)));
        Ok(super::readable_records(read))
    }

    async fn reservations_after(
        &self,
        after: Option<&ReservationId>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        records_after(&self.pool, SELECT_RECORDS_AFTER, after, limit).await
    }

    async fn schedules_after(
        &self,
        after: Option<&ReservationId>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        records_after(&self.pool, SELECT_SCHEDULES_AFTER, after, limit).await
    }

    async fn record_memberships(&self, facts: &[MembershipFact], now: DateTime<Utc>) -> Result<usize, StoreError> {
        if facts.is_empty() {
            return Ok(0);
        }
        let now_ms = to_millis(now);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let mut applied = 0;
        for fact in facts {
            let reservation: Option<String> =
                sqlx::query_scalar("SELECT reservation_id FROM lifecycle WHERE room_id = ?")
                    .bind(&fact.room_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            let Some(reservation) = reservation else { continue }; // not a room of ours
            let fresh = sqlx::query("INSERT INTO seen_events (event_id, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(&fact.event_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?
                .rows_affected();
            if fresh == 0 {
                continue;
            }
            let invited_by = (fact.membership == Membership::Invite).then_some(fact.sender.as_str());
            sqlx::query(
                "INSERT INTO room_members (room_id, user_id, membership, invited_by, event_id, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET
                    membership = excluded.membership,
                    invited_by = COALESCE(excluded.invited_by, room_members.invited_by),
                    event_id = excluded.event_id, updated_at = excluded.updated_at",
            )
            .bind(&fact.room_id)
            .bind(fact.user_id.as_str())
            .bind(fact.membership.as_str())
            .bind(invited_by)
            .bind(&fact.event_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            sqlx::query(
                "UPDATE lifecycle SET next_due_at = ?, facts_version = facts_version + 1 WHERE reservation_id = ?",
            )
            .bind(now_ms)
            .bind(&reservation)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            applied += 1;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(applied)
    }

    async fn prune_seen_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut pruned = 0;
        for sql in super::PRUNE {
            let done = sqlx::query(sql).bind(to_millis(before)).execute(&self.pool).await.map_err(unavailable)?;
            pruned += done.rows_affected();
        }
        Ok(pruned)
    }

    async fn claim(
        &self,
        id: &ReservationId,
        now: DateTime<Utc>,
        lease: Duration,
        owner: &str,
    ) -> Result<Option<Claim>, StoreError> {
        let now_ms = to_millis(now);
        let claimed: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE lifecycle SET locked_until = ?, locked_by = ?
             WHERE reservation_id = ? AND (locked_until IS NULL OR locked_until <= ?)
             RETURNING facts_version, attempts",
        )
        .bind(now_ms + lease.as_millis() as i64)
        .bind(owner)
        .bind(id.as_str())
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(claimed.map(|(facts_version, attempts)| Claim {
            reservation_id: id.clone(),
            facts_version,
            owner: owner.to_owned(),
            due_at: None,
            attempts: super::attempts(attempts),
        }))
    }

    async fn renew(&self, claim: &Claim, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE lifecycle SET locked_until = ? WHERE reservation_id = ? AND locked_by = ?")
            .bind(to_millis(until))
            .bind(claim.reservation_id.as_str())
            .bind(claim.owner.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
        owner: &str,
    ) -> Result<Vec<Claim>, StoreError> {
        let now_ms = to_millis(now);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let rows = sqlx::query(
            "SELECT reservation_id, facts_version, next_due_at, attempts FROM lifecycle
             WHERE next_due_at <= ? AND (locked_until IS NULL OR locked_until <= ?)
             ORDER BY next_due_at LIMIT ?",
        )
        .bind(now_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("reservation_id").map_err(unavailable)?;
            sqlx::query("UPDATE lifecycle SET locked_until = ?, locked_by = ? WHERE reservation_id = ?")
                .bind(now_ms + lease.as_millis() as i64)
                .bind(owner)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            claims.push(Claim {
                reservation_id: ReservationId::parse(&id)
                    .map_err(|e| StoreError::Corrupt(format!("lifecycle {id}: {e}")))?,
                facts_version: row.try_get("facts_version").map_err(unavailable)?,
                owner: owner.to_owned(),
                due_at: Some(from_millis(row.try_get("next_due_at").map_err(unavailable)?)?),
                attempts: super::attempts(row.try_get("attempts").map_err(unavailable)?),
            });
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(claims)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let due: Option<i64> = sqlx::query_scalar(
            // A leased row is due again when its lease runs out, not before.
            "SELECT MIN(CASE WHEN locked_until > next_due_at THEN locked_until ELSE next_due_at END)
             FROM lifecycle WHERE next_due_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        due.map(from_millis).transpose()
    }

    async fn lifecycle_state(&self, id: &ReservationId) -> Result<LifecycleState, StoreError> {
        let corrupt = |e: String| StoreError::Corrupt(format!("lifecycle {id}: {e}"));
        let row = sqlx::query(
            "SELECT room_id, opening_notice_sent, closing_notice_sent, archived_at, attempts, hosts_applied,
                name_applied, topic_applied, stream_url_applied, live_notice_for, ended_notice_for, reminders_sent,
                closing_warning_sent, space_linked, create_began_by, create_began_at,
                (SELECT sp.room_id FROM spaces sp JOIN reservations r ON r.channel_id = sp.channel_id
                 WHERE r.reservation_id = lifecycle.reservation_id) AS space
             FROM lifecycle WHERE reservation_id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut state = LifecycleState::default();
        if let Some(row) = row {
            let room_id: Option<String> = row.try_get("room_id").map_err(unavailable)?;
            state.room.room_id =
                room_id.map(|r| OwnedRoomId::try_from(r).map_err(|e| corrupt(e.to_string()))).transpose()?;
            state.room.opening_notice_sent = row.try_get::<i64, _>("opening_notice_sent").map_err(unavailable)? != 0;
            state.room.closing_notice_sent = row.try_get::<i64, _>("closing_notice_sent").map_err(unavailable)? != 0;
            state.room.archived = row.try_get::<Option<i64>, _>("archived_at").map_err(unavailable)?.is_some();
            let hosts: Option<String> = row.try_get("hosts_applied").map_err(unavailable)?;
            state.room.hosts_applied = match hosts {
                Some(json) => serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))?,
                None => Default::default(),
            };
            state.room.name_applied = row.try_get("name_applied").map_err(unavailable)?;
            state.room.topic_applied = row.try_get("topic_applied").map_err(unavailable)?;
            state.room.stream_url_applied = row.try_get("stream_url_applied").map_err(unavailable)?;
            let time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
                row.try_get::<Option<i64>, _>(col).map_err(unavailable)?.map(from_millis).transpose()
            };
            state.room.live_notice_for = time("live_notice_for")?;
            state.room.ended_notice_for = time("ended_notice_for")?;
            let reminders: Option<String> = row.try_get("reminders_sent").map_err(unavailable)?;
            state.room.reminders_sent = match reminders {
                Some(json) => serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))?,
                None => Default::default(),
            };
            state.room.closing_warning_sent = row.try_get::<i64, _>("closing_warning_sent").map_err(unavailable)? != 0;
            let room_of = |col: &str| -> Result<Option<OwnedRoomId>, StoreError> {
                let id: Option<String> = row.try_get(col).map_err(unavailable)?;
                id.map(|r| OwnedRoomId::try_from(r).map_err(|e| corrupt(e.to_string()))).transpose()
            };
            state.room.space = room_of("space")?;
            state.room.space_linked = room_of("space_linked")?;
            state.attempts = super::attempts(row.try_get("attempts").map_err(unavailable)?);
            let began_by: Option<String> = row.try_get("create_began_by").map_err(unavailable)?;
            if let (Some(by), Some(at)) = (began_by, time("create_began_at")?) {
                state.create_began = Some(CreateBegan { by, at });
            }
        }
        let invites =
            sqlx::query("SELECT user_id, failure, attempts, retry_at FROM room_invites WHERE reservation_id = ?")
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        let holders: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM tickets
             WHERE reservation_id = ? AND user_id IS NOT NULL AND revoked_at IS NULL",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let revoked: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM tickets WHERE reservation_id = ? AND user_id IS NOT NULL
             GROUP BY user_id HAVING SUM(revoked_at IS NULL) = 0",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let parse_user = |u: String| OwnedUserId::try_from(u).map_err(|e| corrupt(e.to_string()));
        for row in invites {
            let user = parse_user(row.try_get("user_id").map_err(unavailable)?)?;
            match row.try_get::<Option<String>, _>("failure").map_err(unavailable)? {
                None => {
                    state.room.invited.insert(user);
                }
                Some(error) => {
                    let attempts = super::attempts(row.try_get("attempts").map_err(unavailable)?);
                    // Rows from before per-holder backoff have no retry time: due now.
                    let retry_at = row.try_get::<Option<i64>, _>("retry_at").map_err(unavailable)?.unwrap_or(0);
                    let failure = InviteFailure { error, attempts, retry_at: from_millis(retry_at)? };
                    state.room.invite_failures.insert(user, failure);
                }
            }
        }
        state.audience.holders = holders.into_iter().map(parse_user).collect::<Result<_, _>>()?;
        state.audience.revoked = revoked.into_iter().map(parse_user).collect::<Result<_, _>>()?;
        if let Some(room_id) = &state.room.room_id {
            let rows = sqlx::query("SELECT user_id, membership, invited_by FROM room_members WHERE room_id = ?")
                .bind(room_id.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
            for row in rows {
                let user = parse_user(row.try_get("user_id").map_err(unavailable)?)?;
                let membership: String = row.try_get("membership").map_err(unavailable)?;
                let Some(membership) = Membership::parse(&membership) else { continue };
                let invited_by: Option<String> = row.try_get("invited_by").map_err(unavailable)?;
                let invited_by = invited_by.and_then(|u| OwnedUserId::try_from(u).ok());
                state.room.members.insert(user, Member { membership, invited_by });
            }
        }
        Ok(state)
    }

    async fn manages_room(&self, room_id: &str) -> Result<bool, StoreError> {
        manages_room(&self.pool, room_id).await
    }

    async fn admin_action(
        &self,
        id: &ReservationId,
        action: AdminAction,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        record_admin_action(&self.pool, id, action, now).await
    }

    async fn queue_admin_events(&self, events: &[HomeserverEvent], now: DateTime<Utc>) -> Result<(), StoreError> {
        queue_admin_events(&self.pool, events, now).await
    }

    async fn admin_inbox(&self, limit: u32) -> Result<Vec<super::QueuedAdminEvent>, StoreError> {
        admin_inbox(&self.pool, limit).await
    }

    async fn forget_admin_event(&self, event_id: &str) -> Result<(), StoreError> {
        forget_admin_event(&self.pool, event_id).await
    }

    async fn record_step(&self, id: &ReservationId, step: &StepRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
        let rid = id.as_str();
        let query = match step {
            StepRecord::RoomCreated { room_id, hosts, name, topic } => sqlx::query(
                "UPDATE lifecycle SET room_id = ?, hosts_applied = ?, name_applied = ?, topic_applied = ? WHERE reservation_id = ?",
            )
            .bind(room_id.as_str())
            .bind(json_users(hosts))
            .bind(name.as_str())
            .bind(topic.as_str())
            .bind(rid),
            StepRecord::NameSet(name) => {
                sqlx::query("UPDATE lifecycle SET name_applied = ? WHERE reservation_id = ?")
                    .bind(name.as_str())
                    .bind(rid)
            }
            StepRecord::TopicSet(topic) => {
                sqlx::query("UPDATE lifecycle SET topic_applied = ? WHERE reservation_id = ?")
                    .bind(topic.as_str())
                    .bind(rid)
            }
            StepRecord::StreamLinkSet(url) => {
                sqlx::query("UPDATE lifecycle SET stream_url_applied = ? WHERE reservation_id = ?")
                    .bind(url.as_deref())
                    .bind(rid)
            }
            StepRecord::LiveNoticeSent(at) => {
                sqlx::query("UPDATE lifecycle SET live_notice_for = ? WHERE reservation_id = ?")
                    .bind(to_millis(*at))
                    .bind(rid)
            }
            StepRecord::EndedNoticeSent(at) => {
                sqlx::query("UPDATE lifecycle SET ended_notice_for = ? WHERE reservation_id = ?")
                    .bind(to_millis(*at))
                    .bind(rid)
            }
            StepRecord::ReminderSent(secs) => sqlx::query(
                "UPDATE lifecycle SET reminders_sent = json_insert(COALESCE(reminders_sent, '[]'), '$[#]', ?)
                 WHERE reservation_id = ?",
            )
            .bind(*secs as i64)
            .bind(rid),
            StepRecord::SpaceEnsured { channel_id, space, name } => sqlx::query(
                "INSERT INTO spaces (channel_id, room_id, name) VALUES (?, ?, ?)
                 ON CONFLICT (channel_id) DO UPDATE SET room_id = excluded.room_id, name = excluded.name",
            )
            .bind(channel_id.as_str())
            .bind(space.as_str())
            .bind(name.as_str()),
            StepRecord::SpaceLinked(space) => {
                sqlx::query("UPDATE lifecycle SET space_linked = ? WHERE reservation_id = ?")
                    .bind(space.as_ref().map(|s| s.as_str()))
                    .bind(rid)
            }
            StepRecord::ClosingWarningSent => {
                sqlx::query("UPDATE lifecycle SET closing_warning_sent = 1 WHERE reservation_id = ?").bind(rid)
            }
            StepRecord::HostsApplied(hosts) => {
                sqlx::query("UPDATE lifecycle SET hosts_applied = ? WHERE reservation_id = ?")
                    .bind(json_users(hosts))
                    .bind(rid)
            }
            StepRecord::Member { user_id, membership, invited_by } => sqlx::query(
                "INSERT INTO room_members (room_id, user_id, membership, invited_by, event_id, updated_at)
                 SELECT room_id, ?, ?, ?, NULL, ? FROM lifecycle WHERE reservation_id = ? AND room_id IS NOT NULL
                 ON CONFLICT (room_id, user_id) DO UPDATE SET
                    membership = excluded.membership,
                    invited_by = COALESCE(excluded.invited_by, room_members.invited_by),
                    updated_at = excluded.updated_at",
            )
            .bind(user_id.as_str())
            .bind(membership.as_str())
            .bind(invited_by.as_ref().map(|u| u.as_str()))
            .bind(to_millis(now))
            .bind(rid),
            StepRecord::Invited { user_id } => {
                // The invite is a membership fact at once: the homeserver's event about
                // it may never come (Synapse drops queued appservice events when it
                // stops). A later event from the homeserver still wins.
                sqlx::query(
                    "INSERT INTO room_members (room_id, user_id, membership, invited_by, event_id, updated_at)
                     SELECT room_id, ?, 'invite', NULL, NULL, ? FROM lifecycle WHERE reservation_id = ? AND room_id IS NOT NULL
                     ON CONFLICT (room_id, user_id) DO UPDATE SET membership = 'invite', updated_at = excluded.updated_at
                     WHERE room_members.membership = 'leave'",
                )
                .bind(user_id.as_str())
                .bind(to_millis(now))
                .bind(rid)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                sqlx::query(
                    "INSERT INTO room_invites (reservation_id, user_id, invited_at, failure, attempts, retry_at)
                     VALUES ($1, $2, $3, NULL, 0, NULL)
                     ON CONFLICT (reservation_id, user_id) DO UPDATE SET
                        invited_at = excluded.invited_at, failure = NULL, attempts = 0, retry_at = NULL",
                )
                .bind(rid)
                .bind(user_id.as_str())
                .bind(to_millis(now))
            }
            StepRecord::InviteFailed { user_id, failure } => sqlx::query(
                "INSERT INTO room_invites (reservation_id, user_id, invited_at, failure, attempts, retry_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (reservation_id, user_id) DO UPDATE SET
                    invited_at = excluded.invited_at, failure = excluded.failure,
                    attempts = excluded.attempts, retry_at = excluded.retry_at",
            )
            .bind(rid)
            .bind(user_id.as_str())
            .bind(to_millis(now))
            .bind(failure.error.as_str())
            .bind(i64::from(failure.attempts))
            .bind(to_millis(failure.retry_at)),
            StepRecord::CreateBegan { by } => {
                sqlx::query("UPDATE lifecycle SET create_began_by = $1, create_began_at = $2 WHERE reservation_id = $3")
                    .bind(by.as_str())
                    .bind(to_millis(now))
                    .bind(rid)
            }
            StepRecord::InviteForgotten { user_id } => {
                sqlx::query("DELETE FROM room_invites WHERE reservation_id = ? AND user_id = ?")
                    .bind(rid)
                    .bind(user_id.as_str())
            }
            StepRecord::OpeningNoticeSent => {
                sqlx::query("UPDATE lifecycle SET opening_notice_sent = 1 WHERE reservation_id = ?").bind(rid)
            }
            StepRecord::ClosingNoticeSent => {
                sqlx::query("UPDATE lifecycle SET closing_notice_sent = 1 WHERE reservation_id = ?").bind(rid)
            }
            StepRecord::Archived => sqlx::query("UPDATE lifecycle SET archived_at = ? WHERE reservation_id = ?")
                .bind(to_millis(now))
                .bind(rid),
        };
        query.execute(&self.pool).await.map_err(unavailable)?;
        Ok(())
    }

    async fn tickets(&self, id: &ReservationId, after: &str, limit: u32) -> Result<Vec<TicketRow>, StoreError> {
        let rows = sqlx::query(super::TICKETS_PAGE)
            .bind(id.as_str())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(TicketRow {
                    ticket_id: row.try_get("ticket_id").map_err(unavailable)?,
                    user_id: row.try_get("user_id").map_err(unavailable)?,
                    revoked: row.try_get("revoked").map_err(unavailable)?,
                    invite_error: row.try_get("failure").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn invite_failures(&self, id: &ReservationId, limit: u32) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as(super::INVITE_FAILURES)
            .bind(id.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn holds_live_lease(&self, owner: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let found: Option<i32> = sqlx::query_scalar(super::HOLDS_LIVE_LEASE)
            .bind(owner)
            .bind(to_millis(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(found.is_some())
    }

    async fn release(
        &self,
        claim: &Claim,
        next_due_at: Option<DateTime<Utc>>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE lifecycle SET locked_until = NULL,
                next_due_at = CASE WHEN facts_version = ? THEN ? ELSE ? END,
                attempts = CASE WHEN ? IS NULL THEN 0 ELSE attempts + 1 END,
                last_error = ?
             WHERE reservation_id = ? AND locked_by = ?",
        )
        .bind(claim.facts_version)
        .bind(next_due_at.map(to_millis))
        .bind(to_millis(now))
        .bind(error)
        .bind(error)
        .bind(claim.reservation_id.as_str())
        .bind(claim.owner.as_str())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn start_status_session(
        &self,
        id: &SessionId,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        sqlx::query("DELETE FROM status_sessions WHERE expires_at <= ?")
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query("INSERT INTO status_sessions (session_id, created_at, expires_at) VALUES (?, ?, ?)")
            .bind(id.as_str())
            .bind(to_millis(now))
            .bind(to_millis(expires_at))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn status_session_live(&self, id: &SessionId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM status_sessions WHERE session_id = ? AND expires_at > ?")
                .bind(id.as_str())
                .bind(to_millis(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(found.is_some())
    }

    async fn end_status_session(&self, id: &SessionId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM status_sessions WHERE session_id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Applies one event's effect inside the caller's transaction.
async fn apply(conn: &mut SqliteConnection, event: &WebhookEvent, now: DateTime<Utc>) -> Result<Outcome, sqlx::Error> {
    match event {
        WebhookEvent::Upsert(r) => {
            let stored: Option<Option<i64>> =
                sqlx::query_scalar("SELECT revision FROM reservations WHERE reservation_id = ?")
                    .bind(r.id.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
            if let (Some(Some(stored)), Some(incoming)) = (stored, r.revision)
                && (incoming.0 as i64) < stored
            {
                return Ok(Outcome::Stale);
            }
            let hosts = serde_json::to_string(&r.hosts).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query(
                "INSERT INTO reservations (reservation_id, revision, title, description, starts_at, ends_at, stream_url,
                    channel_id, channel_name, hosts, open_before_seconds, close_after_seconds, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (reservation_id) DO UPDATE SET
                    revision = COALESCE(excluded.revision, reservations.revision),
                    title = excluded.title, description = excluded.description,
                    starts_at = excluded.starts_at, ends_at = excluded.ends_at, stream_url = excluded.stream_url,
                    channel_id = excluded.channel_id, channel_name = excluded.channel_name, hosts = excluded.hosts,
                    open_before_seconds = excluded.open_before_seconds,
                    close_after_seconds = excluded.close_after_seconds, updated_at = excluded.updated_at",
            )
            .bind(r.id.as_str())
            .bind(r.revision.map(|v| v.0 as i64))
            .bind(r.title.as_str())
            .bind(r.description.as_ref().map(Description::as_str))
            .bind(to_millis(r.starts_at))
            .bind(to_millis(r.ends_at))
            .bind(r.stream_url.as_ref().map(StreamUrl::as_str))
            .bind(r.channel.as_ref().map(|c| c.id.as_str()))
            .bind(r.channel.as_ref().map(|c| c.name.as_str()))
            .bind(hosts)
            .bind(r.open_before_seconds)
            .bind(r.close_after_seconds)
            .bind(to_millis(now))
            .execute(&mut *conn)
            .await?;
        }
        WebhookEvent::Cancelled { id, reason } => {
            sqlx::query(
                "INSERT INTO reservation_signals (reservation_id, cancelled_at, cancel_reason) VALUES (?, ?, ?)
                 ON CONFLICT (reservation_id) DO UPDATE SET
                    cancelled_at = COALESCE(reservation_signals.cancelled_at, excluded.cancelled_at),
                    cancel_reason = COALESCE(reservation_signals.cancel_reason, excluded.cancel_reason)",
            )
            .bind(id.as_str())
            .bind(to_millis(now))
            .bind(reason.as_deref())
            .execute(&mut *conn)
            .await?;
        }
        WebhookEvent::TicketsGranted { id, tickets } => {
            for ticket in tickets {
                sqlx::query(
                    "INSERT INTO tickets (reservation_id, ticket_id, user_id, granted_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (reservation_id, ticket_id) DO UPDATE SET
                        user_id = excluded.user_id,
                        granted_at = COALESCE(tickets.granted_at, excluded.granted_at)",
                )
                .bind(id.as_str())
                .bind(ticket.id.as_str())
                .bind(ticket.user_id.as_str())
                .bind(to_millis(now))
                .execute(&mut *conn)
                .await?;
            }
        }
        WebhookEvent::TicketsRevoked { id, ticket_ids } => {
            for ticket_id in ticket_ids {
                sqlx::query(
                    "INSERT INTO tickets (reservation_id, ticket_id, revoked_at) VALUES (?, ?, ?)
                     ON CONFLICT (reservation_id, ticket_id) DO UPDATE SET
                        revoked_at = COALESCE(tickets.revoked_at, excluded.revoked_at)",
                )
                .bind(id.as_str())
                .bind(ticket_id.as_str())
                .bind(to_millis(now))
                .execute(&mut *conn)
                .await?;
            }
        }
        WebhookEvent::StreamStarted { id, at } => {
            sqlx::query(
                "INSERT INTO reservation_signals (reservation_id, stream_started_at) VALUES (?, ?)
                 ON CONFLICT (reservation_id) DO UPDATE SET
                    stream_started_at = MAX(COALESCE(reservation_signals.stream_started_at, 0), excluded.stream_started_at)",
            )
            .bind(id.as_str())
            .bind(to_millis(*at))
            .execute(&mut *conn)
            .await?;
        }
        WebhookEvent::StreamEnded { id, at } => {
            sqlx::query(
                "INSERT INTO reservation_signals (reservation_id, stream_ended_at) VALUES (?, ?)
                 ON CONFLICT (reservation_id) DO UPDATE SET
                    stream_ended_at = MAX(COALESCE(reservation_signals.stream_ended_at, 0), excluded.stream_ended_at)",
            )
            .bind(id.as_str())
            .bind(to_millis(*at))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(Outcome::Accepted)
}

fn json_users(users: &std::collections::BTreeSet<OwnedUserId>) -> String {
    serde_json::to_string(users).expect("user IDs always serialize")
}

const SELECT_RECORD_BY_ID: &str = super::select_records!("WHERE r.reservation_id = ?");
/// The ids come as one JSON array, so the statement stays the same for any number.
const SELECT_RECORDS_BY_IDS: &str =
    super::select_records!("WHERE r.reservation_id IN (SELECT value FROM json_each(?))");
const SELECT_RECORDS_AFTER: &str =
    super::select_records!("WHERE r.reservation_id > ? ORDER BY r.reservation_id LIMIT ?");

const SELECT_SCHEDULES_AFTER: &str =
    super::select_schedules!("WHERE r.reservation_id > ? ORDER BY r.reservation_id LIMIT ?");

super::record_from_row!(record_from_row, SqliteRow);
super::shared_fns!(SqlitePool, begin_with("BEGIN IMMEDIATE"), "?1", "?2", "?3");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{DatabaseConfig, DatabaseKind},
        model::{Ticket, TicketId},
        secret::Secret,
        test_support::{t, user},
    };

    async fn store(dir: &tempfile::TempDir) -> SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("foyer.db").display());
        let config = DatabaseConfig {
            url: Secret::new(url),
            kind: DatabaseKind::Sqlite,
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
        };
        SqliteStore::open(&config).await.expect("open")
    }

    fn job(webhook_id: &str, ticket: &str) -> (Job, oneshot::Receiver<Result<Outcome, StoreError>>) {
        let (done, answer) = oneshot::channel();
        let event = WebhookEvent::TicketsGranted {
            id: ReservationId::parse("jazz").unwrap(),
            tickets: vec![Ticket { id: TicketId::parse(ticket).unwrap(), user_id: user("fan") }],
        };
        (Job { webhook_id: webhook_id.into(), received_at: t(12, 0), event, done }, answer)
    }

    /// A fault SQLite raises for the webhook `bad` only, as a full disk or a bug might.
    async fn refuse_webhook_bad(store: &SqliteStore) {
        sqlx::query(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON webhook_receipts WHEN NEW.webhook_id = 'bad'
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END",
        )
        .execute(&store.pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_webhook_failing_in_a_batch_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        refuse_webhook_bad(&store).await;
        let (jobs, answers): (Vec<_>, Vec<_>) = [job("a", "t1"), job("bad", "t2"), job("c", "t3")].into_iter().unzip();
        let outcomes = commit_batch(&store.pool, &jobs).await.expect("the batch commits");
        assert!(matches!(outcomes[0], Ok(Outcome::Accepted)), "{:?}", outcomes[0]);
        assert!(matches!(outcomes[1], Err(StoreError::Unavailable(_))), "{:?}", outcomes[1]);
        assert!(matches!(outcomes[2], Ok(Outcome::Accepted)), "{:?}", outcomes[2]);
        drop(answers);
        let stored: Vec<String> = sqlx::query_scalar("SELECT webhook_id FROM webhook_receipts ORDER BY webhook_id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(stored, ["a", "c"]);
        let tickets: Vec<String> = sqlx::query_scalar("SELECT ticket_id FROM tickets ORDER BY ticket_id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(tickets, ["t1", "t3"], "the failing webhook's ticket is not stored");
    }

    #[tokio::test]
    async fn a_batch_makes_each_reservation_due_once_at_its_first_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        refuse_webhook_bad(&store).await;
        let on = |webhook_id: &str, reservation: &str, ticket: &str, at| {
            let (mut job, answer) = job(webhook_id, ticket);
            let WebhookEvent::TicketsGranted { id, .. } = &mut job.event else { unreachable!() };
            *id = ReservationId::parse(reservation).unwrap();
            job.received_at = at;
            (job, answer)
        };
        let batch = [
            on("a", "jazz", "t1", t(12, 2)),
            on("b", "jazz", "t2", t(12, 1)),
            on("c", "jazz", "t3", t(12, 3)),
            on("d", "blues", "t4", t(12, 5)),
            on("bad", "folk", "t5", t(12, 0)),
        ];
        let (jobs, _answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let outcomes = commit_batch(&store.pool, &jobs).await.expect("the batch commits");
        assert!(outcomes[4].is_err() && outcomes[..4].iter().all(Result::is_ok), "{outcomes:?}");
        let due: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT reservation_id, next_due_at, facts_version FROM lifecycle ORDER BY reservation_id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        assert_eq!(due, [("blues".into(), ms(t(12, 5)), 1), ("jazz".into(), ms(t(12, 1)), 1)], "folk's failed");
    }

    #[tokio::test]
    async fn an_unreadable_admin_inbox_row_is_reported_beside_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let event = HomeserverEvent {
            event_id: "$good".into(),
            room_id: "!dm:example.org".into(),
            kind: "m.room.message".into(),
            sender: "@admin:example.org".into(),
            state_key: None,
            content: serde_json::json!({"body": "!foyer help"}),
        };
        sqlx::query("INSERT INTO admin_inbox (event_id, event, received_at) VALUES ('$bad', '{\"type\":', 0)")
            .execute(&store.pool)
            .await
            .unwrap();
        store.queue_admin_events(std::slice::from_ref(&event), t(12, 0)).await.unwrap();
        let inbox = store.admin_inbox(10).await.expect("the inbox reads");
        assert_eq!(inbox.len(), 2);
        assert!(inbox[0].event.as_ref().is_err_and(|e| e.starts_with("cannot be read")), "{inbox:?}");
        assert_eq!((inbox[1].event.as_ref(), inbox[1].received_at), (Ok(&event), t(12, 0)));
    }

    #[tokio::test]
    async fn a_batch_without_failures_commits_every_webhook_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let (jobs, _answers): (Vec<_>, Vec<_>) = [job("a", "t1"), job("a", "t1"), job("b", "t2")].into_iter().unzip();
        let outcomes = commit_batch(&store.pool, &jobs).await.expect("the batch commits");
        let outcomes: Vec<_> = outcomes.into_iter().map(|o| o.expect("stored")).collect();
        assert_eq!(outcomes, [Outcome::Accepted, Outcome::Duplicate, Outcome::Accepted]);
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_receipts").fetch_one(&store.pool).await.unwrap();
        assert_eq!(count, 2);
        // Without a failure (no savepoints) the reservation is made due once, too.
        let due: Vec<(i64, i64)> =
            sqlx::query_as("SELECT next_due_at, facts_version FROM lifecycle").fetch_all(&store.pool).await.unwrap();
        assert_eq!(due, [(t(12, 0).timestamp_millis(), 1)]);
    }
}
