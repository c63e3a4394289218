//! A reservation's room in the store: what [`LifecycleStore::record_step`] writes for each
//! [`StepRecord`], and how the lifecycle row and the room's invites and members read back
//! ([`LifecycleStore::lifecycle_state`]). A step that records something new has its statement and
//! its column's decoding here, and nowhere else in the store. `RoomState::apply` (in
//! `model/room.rs`) is the same rule; the store contract test holds both databases to it.

use macro_rules_attribute::apply;
use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::{
    CreateBegan, LifecycleState, MembershipFact, Outbound, ReservationRecord, StepRecord, StoreError, attempts,
    dialect::{SqlStore, on_both_databases},
    from_millis,
    outbox::write_event,
    reservations,
    rows::{Read, corrupt, parsed},
    tickets::claim,
    to_millis,
};
use crate::model::{
    Access, Audience, BoundHow, FailingInvite, InviteFailure, Member, Membership, ReservationId, Speech,
};
use crate::outbox::OutboundEvent;

// What `record_step` writes, one statement per record (the reservation id is the last
// parameter where there is one). `Invited` writes two; `ReminderSent`'s JSON append is
// the dialect's own (`Dialect::REMINDER_SENT`).

const ROOM_CREATED: &str = "UPDATE lifecycle
    SET room_id = $1, hosts_applied = $2, name_applied = $3, topic_applied = $4 WHERE reservation_id = $5";
const NAME_SET: &str = "UPDATE lifecycle SET name_applied = $1 WHERE reservation_id = $2";
const TOPIC_SET: &str = "UPDATE lifecycle SET topic_applied = $1 WHERE reservation_id = $2";
const STREAM_LINK_SET: &str = "UPDATE lifecycle SET stream_url_applied = $1 WHERE reservation_id = $2";
const LIVE_NOTICE_SENT: &str = "UPDATE lifecycle SET live_notice_for = $1 WHERE reservation_id = $2";
const ENDED_NOTICE_SENT: &str = "UPDATE lifecycle SET ended_notice_for = $1 WHERE reservation_id = $2";
/// `(channel_id, space room_id, name)`.
const SPACE_ENSURED: &str = "INSERT INTO spaces (channel_id, room_id, name) VALUES ($1, $2, $3)
    ON CONFLICT (channel_id) DO UPDATE SET room_id = excluded.room_id, name = excluded.name";
const SPACE_LINKED: &str = "UPDATE lifecycle SET space_linked = $1 WHERE reservation_id = $2";
const CLOSING_WARNING_SENT: &str = "UPDATE lifecycle SET closing_warning_sent = 1 WHERE reservation_id = $1";
const HOSTS_APPLIED: &str = "UPDATE lifecycle SET hosts_applied = $1 WHERE reservation_id = $2";
const SPEECH_APPLIED: &str = "UPDATE lifecycle SET speech_applied = $1 WHERE reservation_id = $2";
/// Only in a room that exists, as `RoomState::apply` says.
const ACCESS_APPLIED: &str =
    "UPDATE lifecycle SET access_applied = $1 WHERE reservation_id = $2 AND room_id IS NOT NULL";
/// `(reservation_id, announcement, at)`.
const ANNOUNCED: &str = "INSERT INTO announcements (reservation_id, announcement, posted_at) VALUES ($1, $2, $3)
    ON CONFLICT (reservation_id, announcement) DO NOTHING";
const ANNOUNCEMENTS: &str = "SELECT announcement FROM announcements WHERE reservation_id = $1";
const DOORKEEPER_ADMITTED: &str =
    "UPDATE lifecycle SET doorkeeper = $1 WHERE reservation_id = $2 AND room_id IS NOT NULL";
/// Foyer's own membership change in the reservation's room, if it has one:
/// `(user_id, membership, invited_by, at, reservation_id)`. The casts give PostgreSQL
/// the parameters' types, which it cannot infer in a `SELECT` list.
const MEMBER: &str = "INSERT INTO room_members
        (room_id, user_id, membership, invited_by, event_id, updated_at)
    SELECT room_id, CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), NULL, CAST($4 AS BIGINT)
    FROM lifecycle WHERE reservation_id = $5 AND room_id IS NOT NULL
    ON CONFLICT (room_id, user_id) DO UPDATE SET
        membership = excluded.membership,
        invited_by = COALESCE(excluded.invited_by, room_members.invited_by),
        updated_at = excluded.updated_at";
/// The invite is a membership fact at once: the homeserver's event about it may never
/// come (Synapse drops queued appservice events when it stops). A later event from the
/// homeserver still wins: `(user_id, at, reservation_id)`.
const INVITED_MEMBER: &str = "INSERT INTO room_members
        (room_id, user_id, membership, invited_by, event_id, updated_at)
    SELECT room_id, CAST($1 AS TEXT), 'invite', NULL, NULL, CAST($2 AS BIGINT)
    FROM lifecycle WHERE reservation_id = $3 AND room_id IS NOT NULL
    ON CONFLICT (room_id, user_id) DO UPDATE SET membership = 'invite', updated_at = excluded.updated_at
    WHERE room_members.membership = 'leave'";
/// Invited, never again: `(reservation_id, user_id, at)`.
const INVITED: &str = "INSERT INTO room_invites
        (reservation_id, user_id, invited_at, failure, attempts, retry_at)
    VALUES ($1, $2, $3, NULL, 0, NULL)
    ON CONFLICT (reservation_id, user_id) DO UPDATE SET
        invited_at = excluded.invited_at, failure = NULL, attempts = 0, retry_at = NULL";
/// `(reservation_id, user_id, at, error, attempts, retry_at)`.
const INVITE_FAILED: &str = "INSERT INTO room_invites
        (reservation_id, user_id, invited_at, failure, attempts, retry_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (reservation_id, user_id) DO UPDATE SET
        invited_at = excluded.invited_at, failure = excluded.failure,
        attempts = excluded.attempts, retry_at = excluded.retry_at";
const CREATE_BEGAN: &str = "UPDATE lifecycle SET create_began_by = $1, create_began_at = $2 WHERE reservation_id = $3";
/// The tickets a holder's failed invite leaves unusable: `(reservation_id, user_id)`.
const TICKETS_OF_USER: &str =
    "SELECT ticket_id FROM tickets WHERE reservation_id = $1 AND user_id = $2 AND revoked_at IS NULL";
/// `(reservation_id, user_id)`.
const INVITE_FORGOTTEN: &str = "DELETE FROM room_invites WHERE reservation_id = $1 AND user_id = $2";
const OPENING_NOTICE_SENT: &str = "UPDATE lifecycle SET opening_notice_sent = 1 WHERE reservation_id = $1";
const TRANSCRIPT_NOTICE_SENT: &str = "UPDATE lifecycle SET transcript_notice_sent = 1 WHERE reservation_id = $1";
const CLOSING_NOTICE_SENT: &str = "UPDATE lifecycle SET closing_notice_sent = 1 WHERE reservation_id = $1";
const ARCHIVED: &str = "UPDATE lifecycle SET archived_at = $1 WHERE reservation_id = $2";
/// The transcript's mark, for the room the reservation has: `(messages, at, reservation_id)`.
/// Its lines were written before (`transcript.rs`).
const TRANSCRIPT_MADE: &str = "INSERT INTO transcripts (reservation_id, room_id, messages, made_at)
    SELECT reservation_id, room_id, CAST($1 AS BIGINT), CAST($2 AS BIGINT)
    FROM lifecycle WHERE reservation_id = $3 AND room_id IS NOT NULL
    ON CONFLICT (reservation_id) DO UPDATE SET
        room_id = excluded.room_id, messages = excluded.messages, made_at = excluded.made_at";
/// `(at, error, reservation_id)`: the first failure's time is kept.
const TRANSCRIPT_FAILED: &str = "UPDATE lifecycle
    SET transcript_failed_at = COALESCE(transcript_failed_at, $1), transcript_error = $2 WHERE reservation_id = $3";
const FORGET_EMAILS: &str = "UPDATE tickets SET email = NULL, display_name = NULL
    WHERE reservation_id = $1 AND (email IS NOT NULL OR display_name IS NOT NULL)";

// What `lifecycle_state` reads.

const LIFECYCLE: &str =
    "SELECT room_id, opening_notice_sent, transcript_notice_sent, closing_notice_sent, archived_at, attempts,
        hosts_applied, speech_applied, name_applied, topic_applied, stream_url_applied, live_notice_for, ended_notice_for,
        reminders_sent, closing_warning_sent, space_linked, create_began_by, create_began_at,
        transcript_failed_at, transcript_error, doorkeeper, access_applied,
        (SELECT sp.announcements_room_id FROM spaces sp JOIN reservations r ON r.channel_id = sp.channel_id
         WHERE r.reservation_id = lifecycle.reservation_id) AS announcements_room,
        (SELECT t.made_at FROM transcripts t WHERE t.reservation_id = lifecycle.reservation_id) AS transcript_made_at,
        (SELECT sp.room_id FROM spaces sp JOIN reservations r ON r.channel_id = sp.channel_id
         WHERE r.reservation_id = lifecycle.reservation_id) AS space
    FROM lifecycle WHERE reservation_id = $1";
const ROOM_INVITES: &str = "SELECT user_id, failure, attempts, retry_at FROM room_invites WHERE reservation_id = $1";
/// Users with at least one live ticket that is not banned from the show (a ban of its web
/// user bars the ticket, whoever holds it: docs/moderation.md).
const HOLDERS: &str = "SELECT DISTINCT user_id FROM tickets t
    WHERE reservation_id = $1 AND user_id IS NOT NULL AND revoked_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM webchat_bans b WHERE b.reservation_id = t.reservation_id
            AND b.viewer_kind = 'ticket' AND b.viewer_value = t.ticket_id)";
/// Users all of whose tickets are revoked.
const REVOKED: &str = "SELECT user_id FROM tickets WHERE reservation_id = $1 AND user_id IS NOT NULL
    GROUP BY user_id HAVING COUNT(revoked_at) = COUNT(*)";
/// The reservation's web users, each with where it stands: `ok` (may be in the room),
/// `banned`, `revoked` (its ticket), `moved` (its ticket has another holder now) or
/// `no_ticket`.
const WEB_USERS: &str = "SELECT w.user_id,
        CASE WHEN b.reservation_id IS NOT NULL THEN 'banned'
            WHEN w.viewer_kind = 'platform' THEN 'ok'
            WHEN t.ticket_id IS NULL THEN 'no_ticket'
            WHEN t.revoked_at IS NOT NULL THEN 'revoked'
            WHEN t.holder_generation <> w.holder_generation THEN 'moved'
            ELSE 'ok' END AS standing
    FROM webchat_users w
    LEFT JOIN webchat_bans b ON b.reservation_id = w.reservation_id AND b.viewer_kind = w.viewer_kind
        AND b.viewer_value = w.viewer_value
    LEFT JOIN tickets t ON w.viewer_kind = 'ticket' AND t.reservation_id = w.reservation_id
        AND t.ticket_id = w.viewer_value
    WHERE w.reservation_id = $1";
/// Matrix members' timeouts, running or ended, each with its end.
const TIMEOUTS: &str = "SELECT user_id, until FROM chat_timeouts WHERE reservation_id = $1 AND user_id IS NOT NULL";
const ROOM_MEMBERS: &str = "SELECT user_id, membership, invited_by FROM room_members WHERE room_id = $1";

#[apply(on_both_databases!)]
impl SqlStore<D> {
    /// [`LifecycleStore::lifecycle_state`]; without a room, the audience only if `audience`
    /// ([`LifecycleStore::planning`]).
    pub(super) async fn read_lifecycle(
        &self, id: &ReservationId, audience: bool,
    ) -> Result<LifecycleState, StoreError> {
        let row = sqlx::query(LIFECYCLE).bind(id.as_str()).fetch_optional(&self.pool).await?;
        let invites = sqlx::query(ROOM_INVITES).bind(id.as_str()).fetch_all(&self.pool).await?;
        let users = async |query: &'static str| -> Result<Vec<String>, StoreError> {
            let found = sqlx::query(query).bind(id.as_str()).fetch_all(&self.pool).await?;
            found.iter().map(|row| row.text("user_id")).collect()
        };
        let has_room = row.as_ref().map(|row| row.opt_text("room_id")).transpose()?.flatten().is_some();
        let mut state = lifecycle(id, row.as_ref(), &invites)?;
        if audience || has_room {
            let web = sqlx::query(WEB_USERS).bind(id.as_str()).fetch_all(&self.pool).await?;
            let web = web.iter().map(|row| Ok((row.text("user_id")?, row.text("standing")?)));
            let web = web.collect::<Result<Vec<_>, StoreError>>()?;
            state.audience = self::audience(id, users(HOLDERS).await?, users(REVOKED).await?, web)?;
            let timeouts = sqlx::query(TIMEOUTS).bind(id.as_str()).fetch_all(&self.pool).await?;
            for row in &timeouts {
                let user = OwnedUserId::try_from(row.text("user_id")?).map_err(|e| corrupt("a timeout", e))?;
                state.audience.timeouts.insert(user, from_millis(row.int("until")?)?);
            }
        }
        let rows = sqlx::query(ANNOUNCEMENTS).bind(id.as_str()).fetch_all(&self.pool).await?;
        state.room.announced = rows.iter().map(|row| row.text("announcement")).collect::<Result<_, _>>()?;
        if let Some(room_id) = &state.room.room_id {
            let rows = sqlx::query(ROOM_MEMBERS).bind(room_id.as_str()).fetch_all(&self.pool).await?;
            members(&mut state, &rows)?;
        }
        Ok(state)
    }
}

/// Who may be in the reservation's room, from the users of [`HOLDERS`] and [`REVOKED`] and
/// the web users of [`WEB_USERS`] with their standing.
fn audience(
    id: &ReservationId, holders: Vec<String>, revoked: Vec<String>, web: Vec<(String, String)>,
) -> Result<Audience, StoreError> {
    let what = format!("lifecycle {id}");
    let user = |u: String| OwnedUserId::try_from(u).map_err(|e| corrupt(&what, e));
    let mut audience = Audience {
        holders: holders.into_iter().map(user).collect::<Result<_, _>>()?,
        revoked: revoked.into_iter().map(user).collect::<Result<_, _>>()?,
        web: Default::default(),
        timeouts: Default::default(),
    };
    for (web_user, standing) in web {
        let web_user = user(web_user)?;
        match standing.as_str() {
            "ok" => audience.web.insert(web_user),
            "banned" | "revoked" => audience.revoked.insert(web_user),
            // A former holder's web user goes like a Matrix member whose ticket moved.
            _ => false,
        };
    }
    Ok(audience)
}

/// One reservation's lifecycle, from a row of [`LIFECYCLE`] and its [`ROOM_INVITES`]; the
/// audience ([`audience`]) and the room's members ([`members`]) come after.
fn lifecycle(id: &ReservationId, row: Option<&impl Read>, invites: &[impl Read]) -> Result<LifecycleState, StoreError> {
    let what = format!("lifecycle {id}");
    let corrupt = |e: &dyn std::fmt::Display| corrupt(&what, e);
    let room_of = |id: Option<String>| id.map(|r| OwnedRoomId::try_from(r).map_err(|e| corrupt(&e))).transpose();
    let user = |u: String| OwnedUserId::try_from(u).map_err(|e| corrupt(&e));
    let mut state = LifecycleState::default();
    if let Some(row) = row {
        let room = &mut state.room;
        room.room_id = room_of(row.opt_text("room_id")?)?;
        room.opening_notice_sent = row.int("opening_notice_sent")? != 0;
        room.transcript_notice_sent = row.int("transcript_notice_sent")? != 0;
        room.closing_notice_sent = row.int("closing_notice_sent")? != 0;
        room.archived = row.opt_int("archived_at")?.is_some();
        room.hosts_applied = json(row.opt_text("hosts_applied")?).map_err(|e| corrupt(&e))?;
        room.speech_applied = match row.opt_text("speech_applied")? {
            Some(text) => Speech::from_json(&text).map_err(|e| corrupt(&e))?,
            None => Speech::default(),
        };
        room.name_applied = row.opt_text("name_applied")?;
        room.topic_applied = row.opt_text("topic_applied")?;
        room.stream_url_applied = row.opt_text("stream_url_applied")?;
        room.live_notice_for = row.opt_time("live_notice_for")?;
        room.ended_notice_for = row.opt_time("ended_notice_for")?;
        room.reminders_sent = json(row.opt_text("reminders_sent")?).map_err(|e| corrupt(&e))?;
        room.closing_warning_sent = row.int("closing_warning_sent")? != 0;
        room.space = room_of(row.opt_text("space")?)?;
        room.space_linked = room_of(row.opt_text("space_linked")?)?;
        room.transcript_made = row.opt_int("transcript_made_at")?.is_some();
        room.transcript_failed_at = row.opt_time("transcript_failed_at")?;
        room.transcript_error = row.opt_text("transcript_error")?;
        room.doorkeeper = row.opt_text("doorkeeper")?.map(user).transpose()?;
        room.access_applied = match row.opt_text("access_applied")? {
            Some(text) => Access::parse(&text).map_err(|e| corrupt(&e))?,
            None => Access::default(),
        };
        room.announcements_room = room_of(row.opt_text("announcements_room")?)?;
        state.attempts = attempts(row.int("attempts")?);
        if let (Some(by), Some(at)) = (row.opt_text("create_began_by")?, row.opt_time("create_began_at")?) {
            state.create_began = Some(CreateBegan { by, at });
        }
    }
    for row in invites {
        let invited = user(row.text("user_id")?)?;
        match row.opt_text("failure")? {
            None => {
                state.room.invited.insert(invited);
            }
            Some(error) => {
                let attempts = attempts(row.int("attempts")?);
                // Rows from before per-holder backoff have no retry time: due now.
                let retry_at = from_millis(row.opt_int("retry_at")?.unwrap_or(0))?;
                state.room.invite_failures.insert(invited, InviteFailure { error, attempts, retry_at });
            }
        }
    }
    Ok(state)
}

/// A JSON column; empty (`NULL`) is the empty set.
fn json<T: serde::de::DeserializeOwned + Default>(text: Option<String>) -> Result<T, serde_json::Error> {
    text.map_or_else(|| Ok(T::default()), |t| serde_json::from_str(&t))
}

/// The room's members from rows of [`ROOM_MEMBERS`] into `state`; a membership Foyer
/// does not know is passed over.
fn members(state: &mut LifecycleState, rows: &[impl Read]) -> Result<(), StoreError> {
    for row in rows {
        let id = row.text("user_id")?;
        let user = OwnedUserId::try_from(id).map_err(|e| corrupt("room member", e))?;
        let Some(membership) = Membership::parse(&row.text("membership")?) else { continue };
        let invited_by = row.opt_text("invited_by")?.and_then(|u| OwnedUserId::try_from(u).ok());
        state.room.members.insert(user, Member { membership, invited_by });
    }
    Ok(())
}

/// Holders and hosts whose invite keeps failing: `(reservation_id, limit)`.
const INVITE_FAILURES: &str = "SELECT user_id, failure FROM room_invites
    WHERE reservation_id = $1 AND failure IS NOT NULL ORDER BY user_id LIMIT $2";
// Homeserver events.

const RESERVATION_OF_ROOM: &str = "SELECT reservation_id FROM lifecycle WHERE room_id = $1";
/// Whether `$1` is a reservation's room or a channel space.
const MANAGED_ROOM: &str =
    "SELECT 1 FROM lifecycle WHERE room_id = $1 UNION ALL SELECT 1 FROM spaces WHERE room_id = $1 LIMIT 1";
/// An event id, once: `(event_id, at)`.
const SEEN_EVENT: &str = "INSERT INTO seen_events (event_id, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING";
/// A membership event: `(room_id, user_id, membership, invited_by, event_id, at, display_name)`.
const MEMBER_EVENT: &str = "INSERT INTO room_members
        (room_id, user_id, membership, invited_by, event_id, updated_at, display_name)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (room_id, user_id) DO UPDATE SET
        membership = excluded.membership,
        invited_by = COALESCE(excluded.invited_by, room_members.invited_by),
        event_id = excluded.event_id, updated_at = excluded.updated_at, display_name = excluded.display_name";
/// The display name of one member of a room, if their last member event gave one:
/// `(room_id, user_id)`.
const MEMBER_NAME: &str = "SELECT display_name FROM room_members WHERE room_id = $1 AND user_id = $2";
/// A known reservation has new facts: `(at, reservation_id)`.
const FACTS_CHANGED: &str =
    "UPDATE lifecycle SET next_due_at = $1, facts_version = facts_version + 1 WHERE reservation_id = $2";
/// What [`LifecycleStore::prune_seen_events`] deletes, each statement bound to `before`.
const PRUNE: [&str; 2] = [
    "DELETE FROM seen_events WHERE seen_at < $1",
    "DELETE FROM room_members WHERE membership = 'leave' AND updated_at < $1",
];

/// What planning reads of a reservation ([`LifecycleStore::planning`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planning {
    /// The reservation, its counts left at zero; `None` before its details came.
    pub record: Option<ReservationRecord>,
    /// Its lifecycle, the audience only once the room exists.
    pub state: LifecycleState,
}

/// A reservation's room: its lifecycle state, the steps recorded, and the homeserver's
/// membership events.
#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Records membership events for rooms Foyer manages, once per event id, and makes
    /// their reservations due. Other rooms' events are ignored. Returns how many applied.
    async fn record_memberships(&self, facts: &[MembershipFact], now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Forgets homeserver event ids seen before `before` (retries come within minutes),
    /// and members who left before then (a knock flood's refusals, among others).
    async fn prune_seen_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn lifecycle_state(&self, id: &ReservationId) -> Result<LifecycleState, StoreError>;

    /// What planning reads: [`super::ReservationStore::reservation`] with its counts left at zero, and
    /// [`Self::lifecycle_state`] with the audience only once the room exists. No plan
    /// looks at either before; counting and reading every holder at each new ticket
    /// would make a reservation granted one ticket at a time cost tickets² reads.
    async fn planning(&self, id: &ReservationId) -> Result<Planning, StoreError>;

    /// Whether `room_id` is a reservation's room or a channel space.
    async fn manages_room(&self, room_id: &RoomId) -> Result<bool, StoreError>;

    /// The reservation whose room `room_id` is, if it is one's.
    async fn reservation_of_room(&self, room_id: &RoomId) -> Result<Option<ReservationId>, StoreError>;

    /// The display names of those of `users` whose last member event in `room_id` gave
    /// one; the others are left out.
    async fn member_names(
        &self, room_id: &RoomId, users: &[OwnedUserId],
    ) -> Result<Vec<(OwnedUserId, String)>, StoreError>;

    /// Records one step's outcome at once, so a crash right after it repeats nothing.
    async fn record_step(&self, id: &ReservationId, step: &StepRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.record_step_with_event(id, step, None, now).await
    }

    /// [`Self::record_step`], and `event` into the outbox in the same transaction: the
    /// platform hears of the fact if and only if it is recorded. An event whose
    /// `once_key` is in the outbox already is not written again.
    async fn record_step_with_event(
        &self, id: &ReservationId, step: &StepRecord, event: Option<&OutboundEvent>, now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Users whose invite to the reservation's room keeps failing, with the last error.
    async fn invite_failures(&self, id: &ReservationId, limit: u32) -> Result<Vec<FailingInvite>, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl LifecycleStore for SqlStore<D> {
    async fn record_memberships(&self, facts: &[MembershipFact], now: DateTime<Utc>) -> Result<usize, StoreError> {
        if facts.is_empty() {
            return Ok(0);
        }
        let now = to_millis(now);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let mut applied = 0;
        for fact in facts {
            let found = sqlx::query(RESERVATION_OF_ROOM).bind(fact.room_id.as_str()).fetch_optional(&mut *tx).await?;
            let Some(reservation) = found.map(|row| row.text("reservation_id")).transpose()? else {
                continue; // not a room of ours
            };
            let fresh = sqlx::query(SEEN_EVENT).bind(fact.event_id.as_str()).bind(now).execute(&mut *tx).await?;
            if D::rows_affected(&fresh) == 0 {
                continue;
            }
            if let (Membership::Knock, Some(hash)) = (fact.membership, &fact.knock_claim) {
                let only_in = ReservationId::parse(&reservation).ok();
                let outcome =
                    claim(&mut tx, &self.outbox, hash, &fact.user_id, BoundHow::Knock, only_in.as_ref(), now).await?;
                let (room_id, user_id) = (&fact.room_id, &fact.user_id);
                tracing::info!(%room_id, %user_id, outcome = outcome.label(), "claim code in a knock");
                metrics::counter!("foyer_claims_total", "how" => "knock", "result" => outcome.label()).increment(1);
            }
            let invited_by = (fact.membership == Membership::Invite).then_some(fact.sender.as_str());
            sqlx::query(MEMBER_EVENT)
                .bind(fact.room_id.as_str())
                .bind(fact.user_id.as_str())
                .bind(fact.membership.as_str())
                .bind(invited_by)
                .bind(fact.event_id.as_str())
                .bind(now)
                .bind(fact.display_name.as_deref())
                .execute(&mut *tx)
                .await?;
            sqlx::query(FACTS_CHANGED).bind(now).bind(reservation.as_str()).execute(&mut *tx).await?;
            applied += 1;
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn prune_seen_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut pruned = 0;
        for statement in PRUNE {
            let done = sqlx::query(statement).bind(to_millis(before)).execute(&self.pool).await?;
            pruned += D::rows_affected(&done);
        }
        Ok(pruned)
    }

    async fn lifecycle_state(&self, id: &ReservationId) -> Result<LifecycleState, StoreError> {
        self.read_lifecycle(id, true).await
    }

    async fn planning(&self, id: &ReservationId) -> Result<Planning, StoreError> {
        let row = sqlx::query(reservations::RECORD_TO_PLAN).bind(id.as_str()).fetch_optional(&self.pool).await?;
        let record = row.as_ref().map(reservations::record).transpose()?;
        Ok(Planning { record, state: self.read_lifecycle(id, false).await? })
    }

    async fn manages_room(&self, room_id: &RoomId) -> Result<bool, StoreError> {
        self.exists(MANAGED_ROOM, room_id.as_str(), None).await
    }

    async fn reservation_of_room(&self, room_id: &RoomId) -> Result<Option<ReservationId>, StoreError> {
        let found = sqlx::query(RESERVATION_OF_ROOM).bind(room_id.as_str()).fetch_optional(&self.pool).await?;
        found.map(|row| parsed(&row, "reservation_id", ReservationId::parse)).transpose()
    }

    async fn member_names(
        &self, room_id: &RoomId, users: &[OwnedUserId],
    ) -> Result<Vec<(OwnedUserId, String)>, StoreError> {
        let mut names = Vec::new();
        for user in users {
            let query = sqlx::query(MEMBER_NAME).bind(room_id.as_str()).bind(user.as_str());
            if let Some(row) = query.fetch_optional(&self.pool).await?
                && let Some(name) = row.opt_text("display_name")?
            {
                names.push((user.clone(), name));
            }
        }
        Ok(names)
    }

    async fn record_step_with_event(
        &self, id: &ReservationId, step: &StepRecord, event: Option<&OutboundEvent>, now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (rid, at, now) = (id.as_str(), now, to_millis(now));
        // One transaction: a record of two statements, and its outbound event, are
        // written whole or not at all.
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let users_json =
            |users: &BTreeSet<OwnedUserId>| serde_json::to_string(users).expect("user IDs always serialize");
        let speech_json;
        let query = match step {
            StepRecord::RoomCreated { room_id, hosts, name, topic } => sqlx::query(ROOM_CREATED)
                .bind(room_id.as_str())
                .bind(users_json(hosts).as_str())
                .bind(name.as_str())
                .bind(topic.as_str())
                .bind(rid),
            StepRecord::NameSet(name) => sqlx::query(NAME_SET).bind(name.as_str()).bind(rid),
            StepRecord::TopicSet(topic) => sqlx::query(TOPIC_SET).bind(topic.as_str()).bind(rid),
            StepRecord::StreamLinkSet(url) => sqlx::query(STREAM_LINK_SET).bind(url.as_deref()).bind(rid),
            StepRecord::LiveNoticeSent(at) => sqlx::query(LIVE_NOTICE_SENT).bind(to_millis(*at)).bind(rid),
            StepRecord::EndedNoticeSent(at) => sqlx::query(ENDED_NOTICE_SENT).bind(to_millis(*at)).bind(rid),
            StepRecord::ReminderSent(secs) => sqlx::query(D::REMINDER_SENT).bind(*secs as i64).bind(rid),
            StepRecord::SpaceEnsured { channel_id, space, name } => {
                sqlx::query(SPACE_ENSURED).bind(channel_id.as_str()).bind(space.as_str()).bind(name.as_str())
            }
            StepRecord::SpaceLinked(space) => {
                sqlx::query(SPACE_LINKED).bind(space.as_ref().map(|s| s.as_str())).bind(rid)
            }
            StepRecord::ClosingWarningSent => sqlx::query(CLOSING_WARNING_SENT).bind(rid),
            StepRecord::HostsApplied(hosts) => sqlx::query(HOSTS_APPLIED).bind(users_json(hosts).as_str()).bind(rid),
            StepRecord::AccessApplied(access) => sqlx::query(ACCESS_APPLIED).bind(access.as_str()).bind(rid),
            StepRecord::Announced(key) => sqlx::query(ANNOUNCED).bind(rid).bind(key.as_str()).bind(now),
            StepRecord::DoorkeeperAdmitted { user_id } => {
                sqlx::query(DOORKEEPER_ADMITTED).bind(user_id.as_str()).bind(rid)
            }
            StepRecord::SpeechApplied(speech) => {
                speech_json = speech.to_json();
                sqlx::query(SPEECH_APPLIED).bind(speech_json.as_str()).bind(rid)
            }
            StepRecord::Member { user_id, membership, invited_by } => sqlx::query(MEMBER)
                .bind(user_id.as_str())
                .bind(membership.as_str())
                .bind(invited_by.as_ref().map(|u| u.as_str()))
                .bind(now)
                .bind(rid),
            StepRecord::Invited { user_id } => {
                let member = sqlx::query(INVITED_MEMBER).bind(user_id.as_str()).bind(now).bind(rid);
                member.execute(&mut *tx).await?;
                sqlx::query(INVITED).bind(rid).bind(user_id.as_str()).bind(now)
            }
            StepRecord::InviteFailed { user_id, failure } => sqlx::query(INVITE_FAILED)
                .bind(rid)
                .bind(user_id.as_str())
                .bind(now)
                .bind(failure.error.as_str())
                .bind(i64::from(failure.attempts))
                .bind(to_millis(failure.retry_at)),
            StepRecord::CreateBegan { by } => sqlx::query(CREATE_BEGAN).bind(by.as_str()).bind(now).bind(rid),
            StepRecord::InviteForgotten { user_id } => sqlx::query(INVITE_FORGOTTEN).bind(rid).bind(user_id.as_str()),
            StepRecord::OpeningNoticeSent => sqlx::query(OPENING_NOTICE_SENT).bind(rid),
            StepRecord::TranscriptNoticeSent => sqlx::query(TRANSCRIPT_NOTICE_SENT).bind(rid),
            StepRecord::ClosingNoticeSent => sqlx::query(CLOSING_NOTICE_SENT).bind(rid),
            StepRecord::Archived => {
                // The show is over: its holders' emails are no longer needed.
                sqlx::query(FORGET_EMAILS).bind(rid).execute(&mut *tx).await?;
                sqlx::query(ARCHIVED).bind(now).bind(rid)
            }
            StepRecord::TranscriptMade { messages } => {
                sqlx::query(TRANSCRIPT_MADE).bind(*messages as i64).bind(now).bind(rid)
            }
            StepRecord::TranscriptFailed { at, error } => {
                sqlx::query(TRANSCRIPT_FAILED).bind(to_millis(*at)).bind(error.as_str()).bind(rid)
            }
        };
        query.execute(&mut *tx).await?;
        let mut wrote = false;
        if let Some(event) = event {
            write_event::<D>(&mut *tx, &self.outbox, event, now).await?;
            wrote = self.outbox.writes();
        }
        // The platform hears, once per ticket and error, which tickets cannot be used.
        if let (Some(user_id), Outbound::Write(_)) = (OutboundEvent::holder_of_step(step), &self.outbox) {
            let tickets = sqlx::query(TICKETS_OF_USER).bind(rid).bind(user_id.as_str()).fetch_all(&mut *tx).await?;
            for row in &tickets {
                let ticket = row.text("ticket_id")?;
                if let Some(event) = OutboundEvent::for_ticket(id, step, &ticket, at) {
                    write_event::<D>(&mut *tx, &self.outbox, &event, now).await?;
                    wrote = true;
                }
            }
        }
        tx.commit().await?;
        self.outbox.wake_sender(wrote);
        Ok(())
    }

    async fn invite_failures(&self, id: &ReservationId, limit: u32) -> Result<Vec<FailingInvite>, StoreError> {
        let query = sqlx::query(INVITE_FAILURES).bind(id.as_str()).bind(i64::from(limit));
        let found = query.fetch_all(&self.pool).await?;
        let failing = |row: &<D as sqlx::Database>::Row| {
            let user_id = parsed(row, "user_id", |u: &str| UserId::parse(u))?;
            Ok(FailingInvite { user_id, error: row.text("failure")? })
        };
        found.iter().map(failing).collect()
    }
}
