//! The one implementation of [`Store`], generic over the database. What differs between
//! SQLite and PostgreSQL is behind [`Dialect`] (`dialect.rs`); the
//! statements are in `sql.rs` and reading rows back in `rows.rs`, but for recording
//! steps and reading the room back, which are in `room.rs`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ruma::UserId;
use sqlx::{Encode, Executor, Type};

use super::{
    AdminAction, Claim, ClaimHasher, LifecycleState, MembershipFact, Outbound, Outcome, QueuedAdminEvent, Receipt,
    ReservationRecord, StepRecord, Store, StoreError, TicketRow,
    dialect::{Dialect, Due, SqlStore},
    intake,
    rows::{self, Read},
    sql, to_millis,
};
use crate::events::HomeserverEvent;
use crate::model::Membership;
use crate::model::SessionId;
use crate::model::{
    BoundHow, ClaimOutcome, ClaimStatus, Email, ReservationId, StreamKeyHash, Transcript, TranscriptEntry,
    TranscriptLine, WebhookEvent,
};
use crate::outbox::{
    OutboundEvent,
    send::{Outbox, OutboxClaim, OutboxResult, OutboxStatus},
};

// The bounds say what the code binds: the few types the schema uses.
impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> Option<i64>: Encode<'q, D>,
    for<'s> &'s str: Encode<'s, D> + Type<D>,
    for<'s> Option<&'s str>: Encode<'s, D>,
{
    /// [`Dialect::reservation`] through the pool.
    pub(super) async fn reservation_from_pool(
        &self,
        id: &ReservationId,
    ) -> Result<Option<ReservationRecord>, StoreError> {
        let row = sqlx::query(sql::RECORD_BY_ID).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::record).transpose()
    }

    /// A page of reservations after `after`, read with `query` (with or without counts).
    /// Rows that do not read back are left out (`readable_records`) and the page is
    /// filled up from the rows after them: a short page still means the last one.
    async fn records_after(
        &self,
        query: &'static str,
        after: Option<&ReservationId>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        // The raw id, not a parsed one: an unreadable row's id may not parse either.
        let mut cursor = after.map_or_else(String::new, |id| id.as_str().to_owned());
        let mut records = Vec::new();
        loop {
            let want = limit as usize - records.len();
            let page = sqlx::query(query).bind(cursor.as_str()).bind(want as i64).fetch_all(&self.pool).await?;
            let mut read = Vec::with_capacity(page.len());
            for row in &page {
                read.push((row.text("reservation_id")?, rows::record(row)));
            }
            let Some((last, _)) = read.last() else { break };
            cursor = last.clone();
            records.extend(super::readable_records(read));
            if page.len() < want || records.len() == limit as usize {
                break;
            }
        }
        Ok(records)
    }
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> Option<i64>: Encode<'q, D>,
    for<'s> &'s str: Encode<'s, D> + Type<D>,
    for<'s> Option<&'s str>: Encode<'s, D>,
{
    async fn record_webhook(&self, receipt: &Receipt<'_>, event: &WebhookEvent) -> Result<Outcome, StoreError> {
        D::record_webhook(self, receipt, event).await
    }

    async fn reservation(&self, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError> {
        D::reservation(self, id).await
    }

    async fn reservations_by_stream_key(&self, key: &StreamKeyHash) -> Result<Vec<ReservationRecord>, StoreError> {
        let found = sqlx::query(sql::RECORDS_BY_STREAM_KEY).bind(key.as_str()).fetch_all(&self.pool).await?;
        found.iter().map(rows::record).collect()
    }

    async fn reservations_by_id(&self, ids: &[ReservationId]) -> Result<Vec<ReservationRecord>, StoreError> {
        let found = D::records_by_id(ids)?.fetch_all(&self.pool).await?;
        // One unreadable row is left out rather than failing the others (the status page).
        let read = found.iter().map(|row| (row.text("reservation_id").unwrap_or_default(), rows::record(row)));
        Ok(super::readable_records(read))
    }

    async fn reservations_after(
        &self,
        after: Option<&ReservationId>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        self.records_after(sql::RECORDS_AFTER, after, limit).await
    }

    async fn schedules_after(
        &self,
        after: Option<&ReservationId>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        self.records_after(sql::SCHEDULES_AFTER, after, limit).await
    }

    async fn channel_reservations(
        &self,
        channel_id: &str,
        starts_by: DateTime<Utc>,
        ends_from: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        let found = sqlx::query(sql::CHANNEL_AROUND)
            .bind(channel_id)
            .bind(to_millis(starts_by))
            .bind(to_millis(ends_from))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let read = found.iter().map(|row| (row.text("reservation_id").unwrap_or_default(), rows::record(row)));
        Ok(super::readable_records(read))
    }

    async fn record_memberships(&self, facts: &[MembershipFact], now: DateTime<Utc>) -> Result<usize, StoreError> {
        if facts.is_empty() {
            return Ok(0);
        }
        let now = to_millis(now);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let mut applied = 0;
        for fact in facts {
            let found =
                sqlx::query(sql::RESERVATION_OF_ROOM).bind(fact.room_id.as_str()).fetch_optional(&mut *tx).await?;
            let Some(reservation) = found.map(|row| row.text("reservation_id")).transpose()? else {
                continue; // not a room of ours
            };
            let fresh = sqlx::query(sql::SEEN_EVENT).bind(fact.event_id.as_str()).bind(now).execute(&mut *tx).await?;
            if D::rows_affected(&fresh) == 0 {
                continue;
            }
            if let (Membership::Knock, Some(hash)) = (fact.membership, &fact.knock_claim) {
                let only_in = ReservationId::parse(&reservation).ok();
                let outcome =
                    claim(&mut tx, self.outbox, hash, &fact.user_id, BoundHow::Knock, only_in.as_ref(), now).await?;
                tracing::info!(room_id = %fact.room_id, user_id = %fact.user_id, outcome = outcome.label(), "claim code in a knock");
                metrics::counter!("foyer_claims_total", "how" => "knock", "result" => outcome.label()).increment(1);
            }
            let invited_by = (fact.membership == Membership::Invite).then_some(fact.sender.as_str());
            sqlx::query(sql::MEMBER_EVENT)
                .bind(fact.room_id.as_str())
                .bind(fact.user_id.as_str())
                .bind(fact.membership.as_str())
                .bind(invited_by)
                .bind(fact.event_id.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql::FACTS_CHANGED).bind(now).bind(reservation.as_str()).execute(&mut *tx).await?;
            applied += 1;
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn prune_seen_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut pruned = 0;
        for statement in sql::PRUNE {
            let done = sqlx::query(statement).bind(to_millis(before)).execute(&self.pool).await?;
            pruned += D::rows_affected(&done);
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
        let now = to_millis(now);
        let claimed = sqlx::query(sql::CLAIM)
            .bind(now + lease.as_millis() as i64)
            .bind(owner)
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = claimed else { return Ok(None) };
        Ok(Some(Claim {
            reservation_id: id.clone(),
            facts_version: row.int("facts_version")?,
            owner: owner.to_owned(),
            due_at: None,
            attempts: super::attempts(row.int("attempts")?),
        }))
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
        owner: &str,
    ) -> Result<Vec<Claim>, StoreError> {
        let now = to_millis(now);
        let due = Due { now, until: now + lease.as_millis() as i64, limit: i64::from(limit), owner };
        D::claim_due(self, due).await
    }

    async fn renew(&self, claim: &Claim, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::RENEW)
            .bind(to_millis(until))
            .bind(claim.reservation_id.as_str())
            .bind(claim.owner.as_str())
            .execute(&self.pool)
            .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query(sql::NEXT_DUE).fetch_one(&self.pool).await?.opt_time("due")
    }

    async fn lifecycle_state(&self, id: &ReservationId) -> Result<LifecycleState, StoreError> {
        self.read_lifecycle(id, true).await
    }

    async fn planning(&self, id: &ReservationId) -> Result<(Option<ReservationRecord>, LifecycleState), StoreError> {
        let row = sqlx::query(sql::RECORD_TO_PLAN).bind(id.as_str()).fetch_optional(&self.pool).await?;
        let record = row.as_ref().map(rows::record).transpose()?;
        Ok((record, self.read_lifecycle(id, false).await?))
    }

    async fn manages_room(&self, room_id: &str) -> Result<bool, StoreError> {
        self.exists(sql::MANAGED_ROOM, room_id, None).await
    }

    async fn admin_action(
        &self,
        id: &ReservationId,
        action: AdminAction,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (id, now) = (id.as_str(), to_millis(now));
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        if sqlx::query(sql::RESERVATION_EXISTS).bind(id).fetch_optional(&mut *tx).await?.is_none() {
            return Ok(false);
        }
        let signal = match action {
            AdminAction::OpenNow => Some(sql::ADMIN_OPEN),
            AdminAction::ArchiveNow => Some(sql::ADMIN_ARCHIVE),
            AdminAction::Retry => None,
        };
        if let Some(signal) = signal {
            sqlx::query(signal).bind(id).bind(now).execute(&mut *tx).await?;
        }
        sqlx::query(sql::ADMIN_DUE).bind(id).bind(now).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn queue_admin_events(&self, events: &[HomeserverEvent], now: DateTime<Utc>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        for event in events {
            let text = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let query = sqlx::query(sql::QUEUE_ADMIN_EVENT).bind(event.event_id.as_str()).bind(text.as_str());
            query.bind(to_millis(now)).execute(&mut *tx).await?;
        }
        Ok(tx.commit().await?)
    }

    async fn admin_inbox(&self, limit: u32) -> Result<Vec<QueuedAdminEvent>, StoreError> {
        let found = sqlx::query(sql::ADMIN_INBOX).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        found.iter().map(rows::admin_event).collect()
    }

    async fn renew_claim_hashes(&self, fingerprint: &str, hash: &ClaimHasher) -> Result<u64, StoreError> {
        const NAME: &str = "claim_key";
        let made_with = sqlx::query(sql::SETTING).bind(NAME).fetch_optional(&self.pool).await?;
        if made_with.map(|row| row.text("value")).transpose()?.as_deref() == Some(fingerprint) {
            return Ok(0);
        }
        // Page by page, each its own write: a crash part way leaves the fingerprint
        // unwritten, so the next start goes through them again.
        let (mut after, mut renewed) = ((String::new(), String::new()), 0);
        loop {
            let page = sqlx::query(sql::CLAIM_HASHES)
                .bind(after.0.as_str())
                .bind(after.1.as_str())
                .bind(1000i64)
                .fetch_all(&self.pool)
                .await?;
            let Some(last) = page.last() else { break };
            after = (last.text("reservation_id")?, last.text("ticket_id")?);
            let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
            for row in &page {
                let (reservation, ticket) = (row.text("reservation_id")?, row.text("ticket_id")?);
                let (generation, email) = (row.int("holder_generation")?, row.opt_text("email")?);
                let Some(new) = hash(&reservation, &ticket, generation, email.as_deref()) else { continue };
                if new != (row.opt_text("claim_hash")?, row.opt_text("holder_digest")?) {
                    let query = sqlx::query(sql::SET_CLAIM_HASH).bind(new.0.as_deref()).bind(new.1.as_deref());
                    query.bind(reservation.as_str()).bind(ticket.as_str()).execute(&mut *tx).await?;
                    renewed += 1;
                }
            }
            tx.commit().await?;
        }
        sqlx::query(sql::SET_SETTING).bind(NAME).bind(fingerprint).execute(&self.pool).await?;
        Ok(renewed)
    }

    async fn lookups_due(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(ReservationId, String, Email)>, StoreError> {
        let query = sqlx::query(sql::LOOKUPS_DUE).bind(to_millis(before)).bind(i64::from(limit));
        let rows = query.fetch_all(&self.pool).await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let reservation = row.text("reservation_id")?;
            // What was checked on the way in reads back; a row that does not is skipped
            // (and never named: it holds an address).
            let (Ok(id), Ok(email)) = (ReservationId::parse(&reservation), Email::parse(&row.text("email")?)) else {
                tracing::warn!(reservation_id = %reservation, "an email ticket does not read back; not looked up");
                continue;
            };
            due.push((id, row.text("ticket_id")?, email));
        }
        Ok(due)
    }

    async fn looked_up(
        &self,
        reservation: &ReservationId,
        ticket: &str,
        found: Option<&UserId>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (rid, now) = (reservation.as_str(), to_millis(at));
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sqlx::query(sql::LOOKED_UP).bind(now).bind(rid).bind(ticket).execute(&mut *tx).await?;
        let mut bound = false;
        if let Some(user) = found {
            let query = sqlx::query(sql::BIND_TICKET).bind(user.as_str()).bind(BoundHow::Lookup.as_str()).bind(now);
            bound = D::rows_affected(&query.bind(rid).bind(ticket).execute(&mut *tx).await?) > 0;
            if bound {
                sqlx::query(sql::FACTS_ARRIVED).bind(rid).bind(now).execute(&mut *tx).await?;
                let event = OutboundEvent::ticket_claimed(reservation, ticket, user, BoundHow::Lookup, at);
                write_event::<D>(&mut *tx, self.outbox, &event, now).await?;
            }
        }
        tx.commit().await?;
        self.wake_sender(bound);
        Ok(bound)
    }

    async fn direct_chat_active(&self, room_id: &str, user: &UserId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let query = sqlx::query(sql::DIRECT_CHAT_ACTIVE).bind(room_id).bind(user.as_str()).bind(to_millis(now));
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn direct_chat_used(&self, room_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(sql::DIRECT_CHAT_USED).bind(room_id).bind(to_millis(now)).execute(&self.pool).await?;
        Ok(())
    }

    async fn idle_direct_chats(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<String>, StoreError> {
        let query = sqlx::query(sql::IDLE_DIRECT_CHATS).bind(to_millis(before)).bind(i64::from(limit));
        query.fetch_all(&self.pool).await?.iter().map(|row| row.text("room_id")).collect()
    }

    async fn forget_direct_chat(&self, room_id: &str) -> Result<(), StoreError> {
        sqlx::query(sql::FORGET_DIRECT_CHAT).bind(room_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn direct_chat_opener(&self, room_id: &str) -> Result<Option<String>, StoreError> {
        let found = sqlx::query(sql::DIRECT_CHAT_OPENER).bind(room_id).fetch_optional(&self.pool).await?;
        found.map(|row| row.text("user_id")).transpose()
    }

    async fn direct_chat_counts(&self, user: &UserId) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(sql::DIRECT_CHAT_COUNTS).bind(user.as_str()).fetch_one(&self.pool).await?;
        let count = |col: &str| row.int(col).map(|n| u64::try_from(n).unwrap_or_default());
        Ok((count("of_user")?, count("open")?))
    }

    async fn forget_admin_event(&self, event_id: &str) -> Result<(), StoreError> {
        sqlx::query(sql::FORGET_ADMIN_EVENT).bind(event_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn record_step_with_event(
        &self,
        id: &ReservationId,
        step: &StepRecord,
        event: Option<&OutboundEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_step(id, step, event, now).await
    }

    async fn clear_transcript(&self, id: &ReservationId) -> Result<(), StoreError> {
        self.clear_transcript_lines(id).await
    }

    async fn write_transcript(&self, id: &ReservationId, entries: &[TranscriptEntry]) -> Result<(), StoreError> {
        self.write_transcript_page(id, entries).await
    }

    async fn transcript(&self, id: &ReservationId) -> Result<Option<Transcript>, StoreError> {
        self.read_transcript(id).await
    }

    async fn transcript_lines(
        &self,
        id: &ReservationId,
        after: Option<u64>,
        max_lines: u32,
        max_bytes: u64,
    ) -> Result<Vec<TranscriptLine>, StoreError> {
        self.read_transcript_lines(id, after, max_lines, max_bytes).await
    }

    async fn prune_transcripts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.delete_transcripts(before).await
    }

    async fn forget_orphan_emails(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(sql::FORGET_ORPHANS).bind(to_millis(before)).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }

    async fn outbox_events(&self) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let found = sqlx::query(sql::OUTBOX_EVENTS).fetch_all(&self.pool).await?;
        found
            .iter()
            .map(|row| {
                Ok((row.text("reservation_id")?, row.text("type")?, row.text("event_id")?, row.text("payload")?))
            })
            .collect()
    }

    async fn claim_ticket(
        &self,
        claim_hash: &str,
        user: &UserId,
        how: BoundHow,
        only_in: Option<&ReservationId>,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let outcome = claim(&mut tx, self.outbox, claim_hash, user, how, only_in, to_millis(now)).await?;
        tx.commit().await?;
        self.wake_sender(matches!(outcome, ClaimOutcome::Claimed { .. }));
        Ok(outcome)
    }

    async fn claim_status(&self, claim_hash: &str) -> Result<Option<ClaimStatus>, StoreError> {
        let Some(row) = sqlx::query(sql::CLAIMABLE).bind(claim_hash).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        if row.flag("revoked")? || row.flag("archived")? {
            return Ok(None);
        }
        Ok(Some(ClaimStatus {
            reservation_id: row.text("reservation_id")?,
            ticket_id: row.text("ticket_id")?,
            holder: row.opt_text("user_id")?,
        }))
    }

    async fn tickets(&self, id: &ReservationId, after: &str, limit: u32) -> Result<Vec<TicketRow>, StoreError> {
        let query = sqlx::query(sql::TICKETS_PAGE).bind(id.as_str()).bind(after).bind(i64::from(limit));
        query.fetch_all(&self.pool).await?.iter().map(rows::ticket).collect()
    }

    async fn invite_failures(&self, id: &ReservationId, limit: u32) -> Result<Vec<(String, String)>, StoreError> {
        let query = sqlx::query(sql::INVITE_FAILURES).bind(id.as_str()).bind(i64::from(limit));
        let found = query.fetch_all(&self.pool).await?;
        found.iter().map(|row| Ok((row.text("user_id")?, row.text("failure")?))).collect()
    }

    async fn holds_live_lease(&self, owner: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.exists(sql::HOLDS_LIVE_LEASE, owner, Some(now)).await
    }

    async fn release_with_event(
        &self,
        claim: &Claim,
        next_due_at: Option<DateTime<Utc>>,
        error: Option<&str>,
        event: Option<&OutboundEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = to_millis(now);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let released = sqlx::query(sql::RELEASE)
            .bind(claim.facts_version)
            .bind(next_due_at.map(to_millis))
            .bind(now)
            .bind(error)
            .bind(claim.reservation_id.as_str())
            .bind(claim.owner.as_str())
            .execute(&mut *tx)
            .await?;
        // A lease lost to another instance: its holder tells of what it finds.
        if let Some(event) = event
            && D::rows_affected(&released) > 0
        {
            write_event::<D>(&mut *tx, self.outbox, event, now).await?;
        }
        tx.commit().await?;
        self.wake_sender(event.is_some());
        Ok(())
    }

    async fn start_status_session(
        &self,
        id: &SessionId,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sqlx::query(sql::DROP_EXPIRED_SESSIONS).bind(to_millis(now)).execute(&mut *tx).await?;
        sqlx::query(sql::START_SESSION)
            .bind(id.as_str())
            .bind(to_millis(now))
            .bind(to_millis(expires_at))
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }

    async fn status_session_live(&self, id: &SessionId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.exists(sql::SESSION_LIVE, id.as_str(), Some(now)).await
    }

    async fn end_status_session(&self, id: &SessionId) -> Result<(), StoreError> {
        sqlx::query(sql::END_SESSION).bind(id.as_str()).execute(&self.pool).await?;
        Ok(())
    }
}

/// The sender's side of the store ([`Outbox`], declared with the sender).
#[async_trait]
impl<D: Dialect> Outbox for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> Option<i64>: Encode<'q, D>,
    for<'s> &'s str: Encode<'s, D> + Type<D>,
    for<'s> Option<&'s str>: Encode<'s, D>,
{
    type Error = StoreError;

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
        owner: &str,
    ) -> Result<Vec<OutboxClaim>, StoreError> {
        let now = to_millis(now);
        let claimed = sqlx::query(D::OUTBOX_CLAIM)
            .bind(owner)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut claims = claimed
            .iter()
            .map(|row| {
                Ok(OutboxClaim {
                    seq: row.int("seq")?,
                    event_id: row.text("event_id")?,
                    reservation_id: row.text("reservation_id")?,
                    kind: row.text("type")?,
                    payload: row.text("payload")?,
                    attempts: super::attempts(row.int("attempts")?),
                    owner: owner.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING gives no order: oldest first, as claimed.
        claims.sort_by_key(|c| c.seq);
        Ok(claims)
    }

    async fn finish_outbox(
        &self,
        claim: &OutboxClaim,
        result: &OutboxResult,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = to_millis(now);
        let (state, next, error, finished) = match result {
            OutboxResult::Delivered => ("delivered", now, None, Some(now)),
            OutboxResult::Retry { at, error } => ("pending", to_millis(*at), Some(error), None),
            OutboxResult::Failed { error } => ("failed", now, Some(error), Some(now)),
            OutboxResult::Dropped { error } => ("dropped", now, Some(error), Some(now)),
            OutboxResult::Paused { error } => ("paused", now, Some(error), None),
        };
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let done = sqlx::query(sql::OUTBOX_FINISH)
            .bind(state)
            .bind(next)
            .bind(error.map(String::as_str))
            .bind(finished)
            .bind(claim.seq)
            .bind(claim.owner.as_str())
            .execute(&mut *tx)
            .await?;
        let held = D::rows_affected(&done) == 1;
        if held && matches!(result, OutboxResult::Paused { .. }) {
            sqlx::query(sql::SET_SETTING).bind(sql::OUTBOX_PAUSED).bind("1").execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(held)
    }

    async fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let row = sqlx::query(sql::OUTBOX_DEPTH).fetch_one(&self.pool).await?;
        let flag = sqlx::query(sql::SETTING).bind(sql::OUTBOX_PAUSED).fetch_optional(&self.pool).await?;
        Ok(OutboxStatus {
            depth: u64::try_from(row.int("depth")?).unwrap_or(0),
            oldest: row.opt_time("oldest")?,
            paused: flag.map(|row| row.text("value")).transpose()?.as_deref() == Some("1"),
        })
    }

    async fn resume_outbox(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let flag = sqlx::query(sql::SETTING).bind(sql::OUTBOX_PAUSED).fetch_optional(&mut *tx).await?;
        let was_paused = flag.map(|row| row.text("value")).transpose()?.as_deref() == Some("1");
        sqlx::query(sql::SET_SETTING).bind(sql::OUTBOX_PAUSED).bind("0").execute(&mut *tx).await?;
        sqlx::query(sql::OUTBOX_UNPAUSE).bind(to_millis(now)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(was_paused)
    }
}

/// A claim inside a write transaction: the ticket a code names is bound to `user` if it
/// may be, and its reservation made due.
async fn claim<D: Dialect>(
    tx: &mut sqlx::Transaction<'_, D>,
    outbox: Outbound,
    claim_hash: &str,
    user: &UserId,
    how: BoundHow,
    only_in: Option<&ReservationId>,
    now: i64,
) -> Result<ClaimOutcome, StoreError>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> Option<i64>: Encode<'q, D>,
    for<'s> &'s str: Encode<'s, D> + Type<D>,
    for<'s> Option<&'s str>: Encode<'s, D>,
{
    let Some(row) = sqlx::query(sql::CLAIMABLE).bind(claim_hash).fetch_optional(&mut **tx).await? else {
        return Ok(ClaimOutcome::Unusable);
    };
    let (reservation_id, ticket_id) = (row.text("reservation_id")?, row.text("ticket_id")?);
    if row.flag("revoked")? || row.flag("archived")? || only_in.is_some_and(|id| id.as_str() != reservation_id) {
        return Ok(ClaimOutcome::Unusable);
    }
    match row.opt_text("user_id")? {
        Some(holder) if holder == user.as_str() => return Ok(ClaimOutcome::AlreadyYours { reservation_id, ticket_id }),
        Some(_) => return Ok(ClaimOutcome::TakenByOther),
        None => {}
    }
    let bound = sqlx::query(sql::BIND_TICKET)
        .bind(user.as_str())
        .bind(how.as_str())
        .bind(now)
        .bind(reservation_id.as_str())
        .bind(ticket_id.as_str())
        .execute(&mut **tx)
        .await?;
    if D::rows_affected(&bound) == 0 {
        // Bound by someone else between the read and the write (PostgreSQL).
        return Ok(ClaimOutcome::TakenByOther);
    }
    sqlx::query(sql::FACTS_ARRIVED).bind(reservation_id.as_str()).bind(now).execute(&mut **tx).await?;
    if let (Outbound::Write, Ok(id)) = (outbox, ReservationId::parse(&reservation_id)) {
        let event = OutboundEvent::ticket_claimed(&id, &ticket_id, user, how, super::from_millis(now)?);
        write_event::<D>(&mut **tx, outbox, &event, now).await?;
    }
    Ok(ClaimOutcome::Claimed { reservation_id, ticket_id })
}

/// [`intake::write_event`] on a sqlx connection.
pub(super) async fn write_event<D: Dialect>(
    conn: &mut D::Connection,
    outbox: Outbound,
    event: &OutboundEvent,
    now: i64,
) -> Result<(), StoreError>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> Option<i64>: Encode<'q, D>,
    for<'s> &'s str: Encode<'s, D> + Type<D>,
    for<'s> Option<&'s str>: Encode<'s, D>,
{
    intake::write_event(&mut intake::Sqlx::<D>(conn), outbox, event, now).await
}
