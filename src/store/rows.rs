//! Reading rows back into Foyer's types, once for both databases: through [`Read`],
//! which either backend's row implements (the lifecycle row's own decoding is in
//! `room.rs`). A value that does not read back (a hand
//! edit, a bug) is `StoreError::Corrupt`.

use chrono::{DateTime, Utc};
use ruma::OwnedUserId;
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{
    Claim, MemberCounts, QueuedAdminEvent, ReservationRecord, Signals, StoreError, TicketCounts, TicketRow, attempts,
    from_millis,
};
use crate::model::{
    Channel, Description, ExternalId, Reservation, ReservationId, Revision, StreamKeyHash, StreamUrl, Title,
};

/// A row's columns, by name, as the few types the schema uses on both databases.
pub trait Read {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, col: &str) -> Result<bool, StoreError>;

    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_int(col)?.map(from_millis).transpose()
    }
}

impl<R> Read for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> Result<String, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(col)?)
    }
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A reservation record from a row of `sql::records!`'s shape.
pub(super) fn record(row: &(impl Read + ?Sized)) -> Result<ReservationRecord, StoreError> {
    let id = ReservationId::parse(&row.text("reservation_id")?).map_err(|e| corrupt("reservation_id", e))?;
    let hosts: Vec<OwnedUserId> = serde_json::from_str(&row.text("hosts")?).map_err(|e| corrupt("hosts", e))?;
    let channel = match (row.opt_text("channel_id")?, row.opt_text("channel_name")?) {
        (Some(cid), Some(name)) => Some(Channel {
            id: ExternalId::parse(&cid).map_err(|e| corrupt("channel_id", e))?,
            name: Title::parse(&name).map_err(|e| corrupt("channel_name", e))?,
        }),
        _ => None,
    };
    let reservation = Reservation {
        id,
        revision: row.opt_int("revision")?.map(|v| Revision(v as u64)),
        title: Title::parse(&row.text("title")?).map_err(|e| corrupt("title", e))?,
        description: row
            .opt_text("description")?
            .map(|d| Description::parse(&d).map_err(|e| corrupt("description", e)))
            .transpose()?,
        starts_at: from_millis(row.int("starts_at")?)?,
        ends_at: from_millis(row.int("ends_at")?)?,
        stream_url: row
            .opt_text("stream_url")?
            .map(|u| StreamUrl::parse(&u).map_err(|e| corrupt("stream_url", e)))
            .transpose()?,
        channel,
        hosts,
        open_before_seconds: row.opt_int("open_before_seconds")?.map(|s| s as u32),
        close_after_seconds: row.opt_int("close_after_seconds")?.map(|s| s as u32),
        transcript: row.opt_int("transcript")?.map(|t| t != 0),
        stream_key: row
            .opt_text("stream_key_hash")?
            .map(|h| StreamKeyHash::parse(&h).map_err(|e| corrupt("stream_key_hash", e)))
            .transpose()?,
    };
    let signals = Signals {
        cancelled_at: row.opt_time("cancelled_at")?,
        cancel_reason: row.opt_text("cancel_reason")?,
        stream_started_at: row.opt_time("stream_started_at")?,
        stream_ended_at: row.opt_time("stream_ended_at")?,
        admin_opened_at: row.opt_time("admin_opened_at")?,
        admin_archived_at: row.opt_time("admin_archived_at")?,
    };
    let tickets = TicketCounts {
        active: row.int("tickets_active")? as u64,
        revoked: row.int("tickets_revoked")? as u64,
        uninvitable: row.int("tickets_uninvitable")? as u64,
        unclaimed: row.int("tickets_unclaimed")? as u64,
        claimed: row.int("tickets_claimed")? as u64,
    };
    Ok(ReservationRecord {
        reservation,
        signals,
        tickets,
        room_id: row.opt_text("room_id")?,
        members: MemberCounts {
            invited: row.int("members_invited")? as u64,
            joined: row.int("members_joined")? as u64,
        },
        archived: row.opt_time("archived_at")?.is_some(),
        last_error: row.opt_text("last_error")?,
        attempts: row.opt_int("attempts")?.unwrap_or(0) as u32,
    })
}

/// A claim of due work from a row of `(reservation_id, facts_version, next_due_at, attempts)`.
pub(super) fn due_claim(row: &impl Read, owner: &str) -> Result<Claim, StoreError> {
    let id = row.text("reservation_id")?;
    Ok(Claim {
        reservation_id: ReservationId::parse(&id).map_err(|e| corrupt(&format!("lifecycle {id}"), e))?,
        facts_version: row.int("facts_version")?,
        owner: owner.to_owned(),
        due_at: Some(from_millis(row.int("next_due_at")?)?),
        attempts: attempts(row.int("attempts")?),
    })
}

/// A row of `sql::TICKETS_PAGE`.
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

/// A row of `sql::ADMIN_INBOX`; an event whose text does not read back is kept as an
/// error, so that one row cannot stop the others.
pub(super) fn admin_event(row: &impl Read) -> Result<QueuedAdminEvent, StoreError> {
    let event = serde_json::from_str(&row.text("event")?).map_err(|e| format!("cannot be read: {e}"));
    Ok(QueuedAdminEvent { event_id: row.text("event_id")?, received_at: from_millis(row.int("received_at")?)?, event })
}
