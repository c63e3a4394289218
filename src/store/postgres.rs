//! PostgreSQL, for deployments that run several Foyer instances on one database: the
//! same facts and lifecycle state as SQLite. Claims take rows with `FOR UPDATE SKIP
//! LOCKED`, so instances never work on the same reservation at once; a dead instance's
//! leases simply expire.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, OwnedUserId};
use sqlx::{
    PgConnection, PgPool, Row as _,
    postgres::{PgPoolOptions, PgRow},
};

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
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_next_wake_index.sql")),
    (3, include_str!("../../migrations/postgres/0003_admin_actions.sql")),
    (4, include_str!("../../migrations/postgres/0004_admin_inbox.sql")),
    (5, include_str!("../../migrations/postgres/0005_room_name.sql")),
    (6, include_str!("../../migrations/postgres/0006_holder_invites.sql")),
    (7, include_str!("../../migrations/postgres/0007_status_sessions.sql")),
];

pub struct PostgresStore {
    pool: PgPool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl PostgresStore {
    pub async fn open(config: &crate::config::DatabaseConfig) -> Result<Self, StoreError> {
        let url = config.url.expose();
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.unwrap_or(16))
            .acquire_timeout(config.acquire_timeout)
            .connect(url)
            .await
            .map_err(|e| StoreError::Open(format!("PostgreSQL: {e}")))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let open_err = |e: sqlx::Error| StoreError::Open(format!("migrating: {e}"));
        let mut tx = self.pool.begin().await.map_err(open_err)?;
        // Several instances may start at once: one migrates, the others wait.
        sqlx::query("SELECT pg_advisory_xact_lock(7417011)").execute(&mut *tx).await.map_err(open_err)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS foyer_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
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
            sqlx::query("INSERT INTO foyer_migrations (version, applied_at) VALUES ($1, $2)")
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
impl Store for PostgresStore {
    async fn record_webhook(&self, receipt: &Receipt<'_>, event: &WebhookEvent) -> Result<Outcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let inserted = sqlx::query(
            "INSERT INTO webhook_receipts (webhook_id, event_type, reservation_id, outcome, received_at)
             VALUES ($1, $2, $3, 'accepted', $4) ON CONFLICT (webhook_id) DO NOTHING",
        )
        .bind(receipt.webhook_id)
        .bind(event.kind())
        .bind(event.reservation_id().as_str())
        .bind(to_millis(receipt.received_at))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if inserted == 0 {
            return Ok(Outcome::Duplicate);
        }
        let outcome = apply(&mut tx, event, receipt.received_at).await.map_err(unavailable)?;
        if outcome == Outcome::Accepted {
            // New facts: plan this reservation again now. The version bump tells a
            // worker holding a lease that what it planned from is already outdated.
            sqlx::query(
                "INSERT INTO lifecycle (reservation_id, next_due_at, facts_version) VALUES ($1, $2, 1)
                 ON CONFLICT (reservation_id) DO UPDATE SET
                    next_due_at = excluded.next_due_at, facts_version = lifecycle.facts_version + 1",
            )
            .bind(event.reservation_id().as_str())
            .bind(to_millis(receipt.received_at))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        if outcome == Outcome::Stale {
            sqlx::query("UPDATE webhook_receipts SET outcome = 'stale' WHERE webhook_id = $1")
                .bind(receipt.webhook_id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(outcome)
    }

    async fn reservation(&self, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError> {
        let row =
            sqlx::query(SELECT_RECORD_BY_ID).bind(id.as_str()).fetch_optional(&self.pool).await.map_err(unavailable)?;
        row.map(|r| record_from_row(&r)).transpose()
    }

    async fn reservations_by_id(&self, ids: &[ReservationId]) -> Result<Vec<ReservationRecord>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(ReservationId::as_str).collect();
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let mut applied = 0;
        for fact in facts {
            let reservation: Option<String> =
                sqlx::query_scalar("SELECT reservation_id FROM lifecycle WHERE room_id = $1")
                    .bind(&fact.room_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            let Some(reservation) = reservation else { continue }; // not a room of ours
            let fresh =
                sqlx::query("INSERT INTO seen_events (event_id, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
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
                 VALUES ($1, $2, $3, $4, $5, $6)
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
                "UPDATE lifecycle SET next_due_at = $1, facts_version = facts_version + 1 WHERE reservation_id = $2",
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
            "UPDATE lifecycle SET locked_until = $1, locked_by = $2
             WHERE reservation_id = $3 AND (locked_until IS NULL OR locked_until <= $4)
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
        let done = sqlx::query("UPDATE lifecycle SET locked_until = $1 WHERE reservation_id = $2 AND locked_by = $3")
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
        let rows = sqlx::query(
            "UPDATE lifecycle SET locked_until = $1, locked_by = $4
             WHERE reservation_id IN (
                SELECT reservation_id FROM lifecycle
                WHERE next_due_at <= $2 AND (locked_until IS NULL OR locked_until <= $2)
                ORDER BY next_due_at LIMIT $3
                FOR UPDATE SKIP LOCKED)
             RETURNING reservation_id, facts_version, next_due_at, attempts",
        )
        .bind(now_ms + lease.as_millis() as i64)
        .bind(now_ms)
        .bind(i64::from(limit))
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("reservation_id").map_err(unavailable)?;
                Ok(Claim {
                    reservation_id: ReservationId::parse(&id)
                        .map_err(|e| StoreError::Corrupt(format!("lifecycle {id}: {e}")))?,
                    facts_version: row.try_get("facts_version").map_err(unavailable)?,
                    owner: owner.to_owned(),
                    due_at: Some(from_millis(row.try_get("next_due_at").map_err(unavailable)?)?),
                    attempts: super::attempts(row.try_get("attempts").map_err(unavailable)?),
                })
            })
            .collect()
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
             FROM lifecycle WHERE reservation_id = $1",
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
            sqlx::query("SELECT user_id, failure, attempts, retry_at FROM room_invites WHERE reservation_id = $1")
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        let holders: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM tickets
             WHERE reservation_id = $1 AND user_id IS NOT NULL AND revoked_at IS NULL",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let revoked: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM tickets WHERE reservation_id = $1 AND user_id IS NOT NULL
             GROUP BY user_id HAVING bool_and(revoked_at IS NOT NULL)",
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
            let rows = sqlx::query("SELECT user_id, membership, invited_by FROM room_members WHERE room_id = $1")
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
                "UPDATE lifecycle SET room_id = $1, hosts_applied = $2, name_applied = $3, topic_applied = $4 WHERE reservation_id = $5",
            )
            .bind(room_id.as_str())
            .bind(json_users(hosts))
            .bind(name.as_str())
            .bind(topic.as_str())
            .bind(rid),
            StepRecord::NameSet(name) => {
                sqlx::query("UPDATE lifecycle SET name_applied = $1 WHERE reservation_id = $2")
                    .bind(name.as_str())
                    .bind(rid)
            }
            StepRecord::TopicSet(topic) => {
                sqlx::query("UPDATE lifecycle SET topic_applied = $1 WHERE reservation_id = $2")
                    .bind(topic.as_str())
                    .bind(rid)
            }
            StepRecord::StreamLinkSet(url) => {
                sqlx::query("UPDATE lifecycle SET stream_url_applied = $1 WHERE reservation_id = $2")
                    .bind(url.as_deref())
                    .bind(rid)
            }
            StepRecord::LiveNoticeSent(at) => {
                sqlx::query("UPDATE lifecycle SET live_notice_for = $1 WHERE reservation_id = $2")
                    .bind(to_millis(*at))
                    .bind(rid)
            }
            StepRecord::EndedNoticeSent(at) => {
                sqlx::query("UPDATE lifecycle SET ended_notice_for = $1 WHERE reservation_id = $2")
                    .bind(to_millis(*at))
                    .bind(rid)
            }
            StepRecord::ReminderSent(secs) => sqlx::query(
                "UPDATE lifecycle SET reminders_sent = (COALESCE(reminders_sent, '[]')::jsonb || to_jsonb($1::bigint))::text
                 WHERE reservation_id = $2",
            )
            .bind(*secs as i64)
            .bind(rid),
            StepRecord::SpaceEnsured { channel_id, space, name } => sqlx::query(
                "INSERT INTO spaces (channel_id, room_id, name) VALUES ($1, $2, $3)
                 ON CONFLICT (channel_id) DO UPDATE SET room_id = excluded.room_id, name = excluded.name",
            )
            .bind(channel_id.as_str())
            .bind(space.as_str())
            .bind(name.as_str()),
            StepRecord::SpaceLinked(space) => {
                sqlx::query("UPDATE lifecycle SET space_linked = $1 WHERE reservation_id = $2")
                    .bind(space.as_ref().map(|s| s.as_str()))
                    .bind(rid)
            }
            StepRecord::ClosingWarningSent => {
                sqlx::query("UPDATE lifecycle SET closing_warning_sent = 1 WHERE reservation_id = $1").bind(rid)
            }
            StepRecord::HostsApplied(hosts) => {
                sqlx::query("UPDATE lifecycle SET hosts_applied = $1 WHERE reservation_id = $2")
                    .bind(json_users(hosts))
                    .bind(rid)
            }
            StepRecord::Member { user_id, membership, invited_by } => sqlx::query(
                "INSERT INTO room_members (room_id, user_id, membership, invited_by, event_id, updated_at)
                 SELECT room_id, $1::text, $2::text, $3::text, NULL, $4::bigint FROM lifecycle WHERE reservation_id = $5 AND room_id IS NOT NULL
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
                     SELECT room_id, $1, 'invite', NULL, NULL, $2 FROM lifecycle WHERE reservation_id = $3 AND room_id IS NOT NULL
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
                sqlx::query("DELETE FROM room_invites WHERE reservation_id = $1 AND user_id = $2")
                    .bind(rid)
                    .bind(user_id.as_str())
            }
            StepRecord::OpeningNoticeSent => {
                sqlx::query("UPDATE lifecycle SET opening_notice_sent = 1 WHERE reservation_id = $1").bind(rid)
            }
            StepRecord::ClosingNoticeSent => {
                sqlx::query("UPDATE lifecycle SET closing_notice_sent = 1 WHERE reservation_id = $1").bind(rid)
            }
            StepRecord::Archived => sqlx::query("UPDATE lifecycle SET archived_at = $1 WHERE reservation_id = $2")
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
                next_due_at = CASE WHEN facts_version = $1 THEN $2 ELSE $3 END,
                attempts = CASE WHEN $4::text IS NULL THEN 0 ELSE attempts + 1 END,
                last_error = $5
             WHERE reservation_id = $6 AND locked_by = $7",
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("DELETE FROM status_sessions WHERE expires_at <= $1")
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query("INSERT INTO status_sessions (session_id, created_at, expires_at) VALUES ($1, $2, $3)")
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
            sqlx::query_scalar("SELECT 1 FROM status_sessions WHERE session_id = $1 AND expires_at > $2")
                .bind(id.as_str())
                .bind(to_millis(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(found.is_some())
    }

    async fn end_status_session(&self, id: &SessionId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM status_sessions WHERE session_id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Applies one event's effect inside the caller's transaction.
async fn apply(conn: &mut PgConnection, event: &WebhookEvent, now: DateTime<Utc>) -> Result<Outcome, sqlx::Error> {
    match event {
        WebhookEvent::Upsert(r) => {
            let stored: Option<Option<i64>> =
                sqlx::query_scalar("SELECT revision FROM reservations WHERE reservation_id = $1")
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
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
            .bind(r.open_before_seconds.map(i64::from))
            .bind(r.close_after_seconds.map(i64::from))
            .bind(to_millis(now))
            .execute(&mut *conn)
            .await?;
        }
        WebhookEvent::Cancelled { id, reason } => {
            sqlx::query(
                "INSERT INTO reservation_signals (reservation_id, cancelled_at, cancel_reason) VALUES ($1, $2, $3)
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
                    "INSERT INTO tickets (reservation_id, ticket_id, user_id, granted_at) VALUES ($1, $2, $3, $4)
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
                    "INSERT INTO tickets (reservation_id, ticket_id, revoked_at) VALUES ($1, $2, $3)
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
                "INSERT INTO reservation_signals (reservation_id, stream_started_at) VALUES ($1, $2)
                 ON CONFLICT (reservation_id) DO UPDATE SET
                    stream_started_at = GREATEST(COALESCE(reservation_signals.stream_started_at, 0), excluded.stream_started_at)",
            )
            .bind(id.as_str())
            .bind(to_millis(*at))
            .execute(&mut *conn)
            .await?;
        }
        WebhookEvent::StreamEnded { id, at } => {
            sqlx::query(
                "INSERT INTO reservation_signals (reservation_id, stream_ended_at) VALUES ($1, $2)
                 ON CONFLICT (reservation_id) DO UPDATE SET
                    stream_ended_at = GREATEST(COALESCE(reservation_signals.stream_ended_at, 0), excluded.stream_ended_at)",
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

const SELECT_RECORD_BY_ID: &str = super::select_records!("WHERE r.reservation_id = $1");
const SELECT_RECORDS_BY_IDS: &str = super::select_records!("WHERE r.reservation_id = ANY($1)");
const SELECT_RECORDS_AFTER: &str =
    super::select_records!("WHERE r.reservation_id > $1 ORDER BY r.reservation_id LIMIT $2");

const SELECT_SCHEDULES_AFTER: &str =
    super::select_schedules!("WHERE r.reservation_id > $1 ORDER BY r.reservation_id LIMIT $2");

super::record_from_row!(record_from_row, PgRow);
super::shared_fns!(PgPool, begin(), "$1", "$2", "$3");
