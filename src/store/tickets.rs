//! Tickets and their claims in the store: binding a ticket to whoever holds its code
//! ([`claim`], also from a knock in `room.rs`), claim hashes renewed under a new key,
//! lookups of email holders, and pages of tickets ([`TicketStore`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::UserId;

use super::{
    ClaimHasher, Outbound, RenewedClaim, StoreError, TicketRow,
    dialect::{SqlStore, on_both_databases},
    outbox::write_event,
    rows::{Read, opt_parsed, parsed},
    sql, to_millis,
};
use crate::model::{BoundHow, ClaimOutcome, ClaimStatus, DisplayName, Email, ReservationId, TicketId};
use crate::outbox::OutboundEvent;

/// The addresses of tickets whose reservation has not come since `$1`, erased with
/// their codes; the tickets stay (docs/fans-without-matrix-id.md): `(before)`.
const FORGET_ORPHANS: &str = "UPDATE tickets SET email = NULL, display_name = NULL, claim_hash = NULL
    WHERE email IS NOT NULL AND granted_at < $1
        AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.reservation_id = tickets.reservation_id)";
/// A ticket page: `(reservation_id, after ticket_id, limit)`.
const TICKETS_PAGE: &str = "SELECT t.ticket_id, t.user_id, t.revoked_at IS NOT NULL AS revoked, i.failure,
        t.email, t.claim_hash IS NOT NULL AS has_claim, t.bound_how, t.holder_generation, t.holder_digest
    FROM tickets t
    LEFT JOIN room_invites i ON i.reservation_id = t.reservation_id AND i.user_id = t.user_id
    WHERE t.reservation_id = $1 AND t.ticket_id > $2
    ORDER BY t.ticket_id LIMIT $3";
/// Whether a ticket is revoked: `(reservation_id, ticket_id)`.
const TICKET_REVOKED: &str =
    "SELECT revoked_at IS NOT NULL AS revoked FROM tickets WHERE reservation_id = $1 AND ticket_id = $2";
/// The ticket a claim code names, and whether it can still be claimed: `(claim_hash)`.
const CLAIMABLE: &str = "SELECT t.reservation_id, t.ticket_id, t.user_id, t.display_name,
        t.revoked_at IS NOT NULL AS revoked, l.archived_at IS NOT NULL AS archived,
        EXISTS (SELECT 1 FROM webchat_bans b WHERE b.reservation_id = t.reservation_id
            AND b.viewer_kind = 'ticket' AND b.viewer_value = t.ticket_id) AS banned
    FROM tickets t LEFT JOIN lifecycle l ON l.reservation_id = t.reservation_id
    WHERE t.claim_hash = $1";
/// Binds an unbound, unrevoked ticket and forgets its email:
/// `(user_id, how, at, reservation_id, ticket_id)`.
const BIND_TICKET: &str = "UPDATE tickets
    SET user_id = $1, bound_how = $2, bound_at = $3, email = NULL, display_name = NULL
    WHERE reservation_id = $4 AND ticket_id = $5 AND user_id IS NULL AND revoked_at IS NULL";
/// Email tickets to look up on the homeserver: never looked up (just arrived), not since
/// their room was opened, or not since `$1` while it is open; the longest waiting first:
/// `(before, limit)`.
const LOOKUPS_DUE: &str = "SELECT t.reservation_id, t.ticket_id, t.email FROM tickets t
    LEFT JOIN lifecycle l ON l.reservation_id = t.reservation_id
    WHERE t.user_id IS NULL AND t.email IS NOT NULL AND t.revoked_at IS NULL
        AND (t.looked_up_at IS NULL
            OR (l.room_id IS NOT NULL AND l.archived_at IS NULL
                AND (t.looked_up_at < $1 OR t.looked_up_at < l.create_began_at)))
    ORDER BY COALESCE(t.looked_up_at, 0) LIMIT $2";
/// `(at, reservation_id, ticket_id)`.
const LOOKED_UP: &str = "UPDATE tickets SET looked_up_at = $1 WHERE reservation_id = $2 AND ticket_id = $3";
/// Tickets with a claim hash, a page after `(reservation_id, ticket_id)`:
/// `(after reservation, after ticket, limit)`.
const CLAIM_HASHES: &str = "SELECT reservation_id, ticket_id, claim_hash, holder_digest, holder_generation,
        email FROM tickets
    WHERE (claim_hash IS NOT NULL OR holder_digest IS NOT NULL)
        AND (reservation_id > $1 OR (reservation_id = $1 AND ticket_id > $2))
    ORDER BY reservation_id, ticket_id LIMIT $3";
/// `(hash, digest, reservation_id, ticket_id)`.
const SET_CLAIM_HASH: &str =
    "UPDATE tickets SET claim_hash = $1, holder_digest = $2 WHERE reservation_id = $3 AND ticket_id = $4";

/// An email ticket due a lookup on the homeserver ([`TicketStore::lookups_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupDue {
    pub reservation_id: ReservationId,
    pub ticket_id: TicketId,
    pub email: Email,
}

/// Tickets and their claims: claim codes, lookups of email holders, pages of tickets.
#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Erases the addresses (and codes) of email tickets granted before `before` whose
    /// reservation never came; the tickets stay. Returns how many.
    async fn forget_orphan_emails(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Binds the ticket whose claim code hashes to `claim_hash` to `user`, unless it is
    /// revoked, its reservation archived, or someone else holds it; makes its reservation
    /// due, so the holder is invited as soon as the room is open. `only_in` limits the
    /// claim to one reservation (a knock claims a seat in the room knocked on).
    async fn claim_ticket(
        &self, claim_hash: &str, user: &UserId, how: BoundHow, only_in: Option<&ReservationId>, now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Makes every stored claim hash the one `key` gives (`hash(reservation, ticket)`),
    /// unless the hashes were made with the key `fingerprint` names already; returns how
    /// many changed. Run at start: a new `as_token` is a new key.
    async fn renew_claim_hashes(&self, fingerprint: &str, hash: &ClaimHasher) -> Result<u64, StoreError>;

    /// Email tickets due a lookup on the homeserver (see `lifecycle::lookups`): never
    /// looked up, or not since `before` while their room is open, at most `limit`.
    async fn lookups_due(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<LookupDue>, StoreError>;

    /// The homeserver was asked about this ticket's email now; `found` is the user who
    /// has it bound, whom the ticket is then bound to (its email forgotten, its
    /// reservation due). `true` when it was bound.
    async fn looked_up(
        &self, reservation: &ReservationId, ticket: &TicketId, found: Option<&UserId>, now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The ticket a claim code's hash names, unless it was revoked or its reservation
    /// archived (a code that no longer works reads like one that never did).
    async fn claim_status(&self, claim_hash: &str) -> Result<Option<ClaimStatus>, StoreError>;

    /// A reservation's tickets ordered by id, after `after`, at most `limit`.
    async fn tickets(&self, id: &ReservationId, after: &str, limit: u32) -> Result<Vec<TicketRow>, StoreError>;

    /// Whether the reservation's ticket is revoked; `None` if the platform never granted
    /// (nor revoked) it.
    async fn ticket_revoked(&self, id: &ReservationId, ticket: &TicketId) -> Result<Option<bool>, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl TicketStore for SqlStore<D> {
    async fn forget_orphan_emails(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(FORGET_ORPHANS).bind(to_millis(before)).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }

    async fn claim_ticket(
        &self, claim_hash: &str, user: &UserId, how: BoundHow, only_in: Option<&ReservationId>, now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let outcome = claim(&mut tx, &self.outbox, claim_hash, user, how, only_in, to_millis(now)).await?;
        tx.commit().await?;
        self.outbox.wake_sender(matches!(outcome, ClaimOutcome::Claimed { .. }));
        Ok(outcome)
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
            let page = sqlx::query(CLAIM_HASHES)
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
                // Ids that do not parse are left as they are; an address that does not
                // has no digest.
                let (Ok(reservation_id), Ok(ticket_id)) =
                    (ReservationId::parse(&reservation), TicketId::parse(&ticket))
                else {
                    continue;
                };
                let email = row.opt_text("email")?.and_then(|e| Email::parse(&e).ok());
                let new = hash(&reservation_id, &ticket_id, row.int("holder_generation")?, email.as_ref());
                let stored = RenewedClaim { hash: row.opt_text("claim_hash")?, digest: row.opt_text("holder_digest")? };
                if new != stored {
                    let query = sqlx::query(SET_CLAIM_HASH).bind(new.hash.as_deref()).bind(new.digest.as_deref());
                    query.bind(reservation.as_str()).bind(ticket.as_str()).execute(&mut *tx).await?;
                    renewed += 1;
                }
            }
            tx.commit().await?;
        }
        sqlx::query(sql::SET_SETTING).bind(NAME).bind(fingerprint).execute(&self.pool).await?;
        Ok(renewed)
    }

    async fn lookups_due(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<LookupDue>, StoreError> {
        let query = sqlx::query(LOOKUPS_DUE).bind(to_millis(before)).bind(i64::from(limit));
        let rows = query.fetch_all(&self.pool).await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let reservation = row.text("reservation_id")?;
            // What was checked on the way in reads back; a row that does not is skipped
            // (and never named: it holds an address).
            let (Ok(reservation_id), Ok(ticket_id), Ok(email)) = (
                ReservationId::parse(&reservation),
                TicketId::parse(&row.text("ticket_id")?),
                Email::parse(&row.text("email")?),
            ) else {
                tracing::warn!(reservation_id = %reservation, "an email ticket does not read back; not looked up");
                continue;
            };
            due.push(LookupDue { reservation_id, ticket_id, email });
        }
        Ok(due)
    }

    async fn looked_up(
        &self, reservation: &ReservationId, ticket: &TicketId, found: Option<&UserId>, at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (rid, now) = (reservation.as_str(), to_millis(at));
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sqlx::query(LOOKED_UP).bind(now).bind(rid).bind(ticket.as_str()).execute(&mut *tx).await?;
        let mut bound = false;
        if let Some(user) = found {
            let query = sqlx::query(BIND_TICKET).bind(user.as_str()).bind(BoundHow::Lookup.as_str()).bind(now);
            bound = D::rows_affected(&query.bind(rid).bind(ticket.as_str()).execute(&mut *tx).await?) > 0;
            if bound {
                sqlx::query(sql::FACTS_ARRIVED).bind(rid).bind(now).execute(&mut *tx).await?;
                let event = OutboundEvent::ticket_claimed(reservation, ticket.as_str(), user, BoundHow::Lookup, at);
                write_event::<D>(&mut *tx, &self.outbox, &event, now).await?;
            }
        }
        tx.commit().await?;
        self.outbox.wake_sender(bound);
        Ok(bound)
    }

    async fn claim_status(&self, claim_hash: &str) -> Result<Option<ClaimStatus>, StoreError> {
        let Some(row) = sqlx::query(CLAIMABLE).bind(claim_hash).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        if row.flag("revoked")? || row.flag("archived")? {
            return Ok(None);
        }
        Ok(Some(ClaimStatus {
            reservation_id: parsed(&row, "reservation_id", ReservationId::parse)?,
            ticket_id: parsed(&row, "ticket_id", TicketId::parse)?,
            holder: opt_parsed(&row, "user_id", |s: &str| UserId::parse(s))?,
            display_name: opt_parsed(&row, "display_name", DisplayName::parse)?,
        }))
    }

    async fn tickets(&self, id: &ReservationId, after: &str, limit: u32) -> Result<Vec<TicketRow>, StoreError> {
        let query = sqlx::query(TICKETS_PAGE).bind(id.as_str()).bind(after).bind(i64::from(limit));
        query.fetch_all(&self.pool).await?.iter().map(ticket).collect()
    }

    async fn ticket_revoked(&self, id: &ReservationId, ticket: &TicketId) -> Result<Option<bool>, StoreError> {
        let query = sqlx::query(TICKET_REVOKED).bind(id.as_str()).bind(ticket.as_str());
        query.fetch_optional(&self.pool).await?.map(|row| row.flag("revoked")).transpose()
    }
}

/// A claim inside a write transaction: the ticket a code names is bound to `user` if it
/// may be, and its reservation made due.
#[apply(on_both_databases!)]
pub(super) async fn claim(
    tx: &mut sqlx::Transaction<'_, D>, outbox: &Outbound, claim_hash: &str, user: &UserId, how: BoundHow,
    only_in: Option<&ReservationId>, now: i64,
) -> Result<ClaimOutcome, StoreError> {
    let Some(row) = sqlx::query(CLAIMABLE).bind(claim_hash).fetch_optional(&mut **tx).await? else {
        return Ok(ClaimOutcome::Unusable);
    };
    let reservation_id = parsed(&row, "reservation_id", ReservationId::parse)?;
    let ticket_id = parsed(&row, "ticket_id", TicketId::parse)?;
    // A banned ticket stays out of its show, whoever claims it (docs/moderation.md).
    let banned = row.flag("banned")?;
    if banned || row.flag("revoked")? || row.flag("archived")? || only_in.is_some_and(|id| *id != reservation_id) {
        return Ok(ClaimOutcome::Unusable);
    }
    match row.opt_text("user_id")? {
        Some(holder) if holder == user.as_str() => {
            return Ok(ClaimOutcome::AlreadyYours { reservation_id, ticket_id });
        }
        Some(_) => return Ok(ClaimOutcome::TakenByOther),
        None => {}
    }
    let bound = sqlx::query(BIND_TICKET)
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
    if outbox.writes() {
        let event =
            OutboundEvent::ticket_claimed(&reservation_id, ticket_id.as_str(), user, how, super::from_millis(now)?);
        write_event::<D>(&mut **tx, outbox, &event, now).await?;
    }
    Ok(ClaimOutcome::Claimed { reservation_id, ticket_id })
}

/// A row of `TICKETS_PAGE`.
pub(super) fn ticket(row: &impl Read) -> Result<TicketRow, StoreError> {
    Ok(TicketRow {
        ticket_id: row.text("ticket_id")?,
        user_id: row.opt_text("user_id")?,
        revoked: row.flag("revoked")?,
        invite_error: row.opt_text("failure")?,
        // The address itself never leaves the store this way.
        email_masked: row.opt_text("email")?.as_deref().map(crate::model::mask),
        has_claim: row.flag("has_claim")?,
        bound_how: row.opt_text("bound_how")?,
        holder_generation: row.int("holder_generation")?,
        holder_digest: row.opt_text("holder_digest")?.map(crate::model::HolderDigest::stored),
    })
}
