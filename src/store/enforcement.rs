//! Enforcing a show's rules in the store ([`EnforcementStore`], docs/moderation.md): a
//! broken rule with its strike, the redaction it queues and the timeout it may bring, in
//! one transaction; timeouts set and lifted by command; what the room's moderators set
//! by command over the reservation's rules.
//!
//! Each write that changes who may speak makes the reservation due, so that the
//! lifecycle brings the room's power levels in line at once (`Step::SetSpeech`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::{
    StoreError,
    dialect::{SqlStore, on_both_databases},
    from_millis,
    moderation::{counted_action, write_action},
    rows::{Read, corrupt},
    sql, to_millis,
};
use crate::model::{
    ActionReason, Actor, ModeratedMember, ModerationAction, NewAction, ReservationId, Rule, RulesOverride, Strikes,
    TimeoutLength,
};

/// `(event_id, reservation_id, room_id, rule, reason, member, queued_at)`.
const QUEUE_REDACTION: &str = "INSERT INTO chat_redactions
        (event_id, reservation_id, room_id, rule, reason, member, queued_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING";
/// `(limit, per_room)`: each room's oldest `per_room`, taken round-robin (every room's
/// first, then every room's second…), so that a room flooded with redactions to do never
/// keeps another's waiting.
const PENDING_REDACTIONS: &str = "SELECT event_id, reservation_id, room_id, rule, reason, member, queued_at FROM (
        SELECT c.*, ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY queued_at, event_id) AS place
        FROM chat_redactions c) ranked
    WHERE place <= $2 ORDER BY place, queued_at, event_id LIMIT $1";
const REDACTION_DONE: &str = "DELETE FROM chat_redactions WHERE event_id = $1";
/// `(reservation_id, member, since)`: a Matrix member's strikes since then.
const MEMBER_STRIKES: &str = "SELECT COUNT(*) AS strikes FROM moderation_record
    WHERE reservation_id = $1 AND member = $2 AND action = 'rule' AND at >= $3";
/// `(reservation_id, viewer kind, viewer value, since)`: a web fan's strikes since then.
const VIEWER_STRIKES: &str = "SELECT COUNT(*) AS strikes FROM moderation_record
    WHERE reservation_id = $1 AND member IS NULL AND member_viewer_kind = $2 AND member_viewer = $3
        AND action = 'rule' AND at >= $4";
/// `(reservation_id, sender)`.
const TIMEOUT: &str = "SELECT user_id, since, until FROM chat_timeouts WHERE reservation_id = $1 AND sender = $2";
/// `(reservation_id, sender, user_id, since, until)`: a new timeout replaces the last.
const SET_TIMEOUT: &str = "INSERT INTO chat_timeouts (reservation_id, sender, user_id, since, until)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (reservation_id, sender) DO UPDATE SET
        user_id = excluded.user_id, since = excluded.since, until = excluded.until";
/// `(until, reservation_id, sender)`: ends a timeout now.
const END_TIMEOUT: &str = "UPDATE chat_timeouts SET until = $1 WHERE reservation_id = $2 AND sender = $3";
const PRUNE_TIMEOUTS: &str = "DELETE FROM chat_timeouts WHERE until < $1";
/// `(reservation_id)`: the lifecycle's `rules_set` and the `chat_rules` it was set over.
const RULES_SET: &str = "SELECT l.rules_set, l.rules_set_over, r.chat_rules FROM lifecycle l
    JOIN reservations r ON r.reservation_id = l.reservation_id WHERE l.reservation_id = $1";
/// `(rules_set, rules_set_over, reservation_id)`.
const SET_RULES: &str = "UPDATE lifecycle SET rules_set = $1, rules_set_over = $2 WHERE reservation_id = $3";

/// A message or a web post that broke a rule, as [`EnforcementStore::record_breach`]
/// records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub reservation: ReservationId,
    pub member: ModeratedMember,
    pub rule: Rule,
    pub reason: ActionReason,
    /// The Matrix message to redact; none for a web post refused before it was sent.
    pub message: Option<(OwnedRoomId, OwnedEventId)>,
    pub strikes: Strikes,
    pub at: DateTime<Utc>,
}

/// What recording a breach did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreachOutcome {
    /// Recorded now; `false` for one recorded before (the homeserver sent it again).
    pub new: bool,
    /// The strike that timed the member out, until then.
    pub timed_out_until: Option<DateTime<Utc>>,
}

/// A message the bot is to redact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRedaction {
    pub event_id: OwnedEventId,
    pub reservation: ReservationId,
    pub room_id: OwnedRoomId,
    pub rule: Rule,
    /// The redaction's reason, naming the rule.
    pub reason: String,
    pub member: OwnedUserId,
    pub queued_at: DateTime<Utc>,
}

/// A timeout a host or moderator gives, or lifts, by command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutOrder {
    pub reservation: ReservationId,
    pub member: ModeratedMember,
    pub actor: Actor,
    pub reason: ActionReason,
    /// The command.
    pub event_id: Option<OwnedEventId>,
    pub at: DateTime<Utc>,
}

/// Timeouts, strikes, redactions to do, and the rules set in a room.
#[async_trait]
pub trait EnforcementStore: Send + Sync {
    /// Records a broken rule, once: its strike (`member.moderated`), the redaction it
    /// queues for a Matrix message, and, when it is the member's `strikes.count`th within
    /// `strikes.within` since their last timeout, a timeout of `strikes.timeout` from
    /// `at` (recorded, and the reservation made due). One transaction: all or nothing.
    async fn record_breach(&self, breach: &Breach) -> Result<BreachOutcome, StoreError>;

    /// Times a member out for `length` from `order.at`, replacing a timeout they had;
    /// recorded, and the reservation made due. `false` when recorded before.
    async fn time_out(&self, order: &TimeoutOrder, length: TimeoutLength) -> Result<bool, StoreError>;

    /// Ends the member's timeout at `order.at`, if one is running; recorded, and the
    /// reservation made due. `false` when none was.
    async fn lift_timeout(&self, order: &TimeoutOrder) -> Result<bool, StoreError>;

    /// When the member's timeout ends, if one is running at `now`.
    async fn timed_out_until(
        &self, reservation: &ReservationId, member: &ModeratedMember, now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Redactions to do: each room's oldest `per_room`, round-robin across rooms, at
    /// most `limit` in all.
    async fn pending_redactions(&self, limit: u32, per_room: u32) -> Result<Vec<PendingRedaction>, StoreError>;

    /// The redaction is done (or cannot be: the event is gone); recorded with `action`
    /// when there is one, in the same transaction.
    async fn redaction_done(&self, event_id: &OwnedEventId, action: Option<&NewAction>) -> Result<(), StoreError>;

    /// Sets `rules` over what the room's hosts and moderators set before (a field at a
    /// time), records `action` (`mode`, `slow`) and makes the reservation due.
    async fn set_room_rules(&self, rules: &RulesOverride, action: &NewAction) -> Result<(), StoreError>;

    /// Forgets timeouts that ended before `before`; returns how many.
    async fn prune_timeouts(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl EnforcementStore for SqlStore<D> {
    async fn record_breach(&self, breach: &Breach) -> Result<BreachOutcome, StoreError> {
        let strike = NewAction {
            reservation: breach.reservation.clone(),
            action: ModerationAction::Rule {
                rule: breach.rule,
                member: breach.member.clone(),
                event_id: breach.message.as_ref().map(|(_, event)| event.clone()),
            },
            actor: Actor::Bot,
            reason: breach.reason.clone(),
            at: breach.at,
        };
        let (reservation, at) = (breach.reservation.as_str(), to_millis(breach.at));
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        if !write_action::<D>(&mut *tx, &self.outbox, &strike).await? {
            return Ok(BreachOutcome::default());
        }
        if let (Some((room, event)), Some(user)) = (&breach.message, breach.member.user_id()) {
            sqlx::query(QUEUE_REDACTION)
                .bind(event.as_str())
                .bind(reservation)
                .bind(room.as_str())
                .bind(breach.rule.as_str())
                .bind(breach.reason.as_str())
                .bind(user.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        // Strikes count within the window, and only since the last timeout ended.
        let sender = breach.member.sender_key();
        let last = sqlx::query(TIMEOUT).bind(reservation).bind(sender.as_str()).fetch_optional(&mut *tx).await?;
        let last_until = last.as_ref().map(|row| row.int("until")).transpose()?;
        let window = chrono::Duration::from_std(breach.strikes.within).unwrap_or(chrono::Duration::MAX);
        let since = to_millis(breach.at.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC));
        let since = since.max(last_until.unwrap_or(i64::MIN));
        let strikes = match (breach.member.user_id(), breach.member.viewer()) {
            (Some(user), _) => {
                sqlx::query(MEMBER_STRIKES)
                    .bind(reservation)
                    .bind(user.as_str())
                    .bind(since)
                    .fetch_one(&mut *tx)
                    .await?
            }
            (None, Some(viewer)) => {
                let query = sqlx::query(VIEWER_STRIKES).bind(reservation).bind(viewer.kind()).bind(viewer.value());
                query.bind(since).fetch_one(&mut *tx).await?
            }
            (None, None) => return Err(corrupt("a breach", "it names no member")),
        }
        .int("strikes")?;
        let running = last_until.is_some_and(|until| until > at);
        let mut outcome = BreachOutcome { new: true, timed_out_until: None };
        let mut timeout = None;
        if !running && strikes >= i64::from(breach.strikes.count) {
            let seconds = u32::try_from(breach.strikes.timeout.as_secs()).unwrap_or(u32::MAX);
            let length = TimeoutLength::seconds(seconds).map_err(|e| corrupt("a show's strikes", e))?;
            let order = TimeoutOrder {
                reservation: breach.reservation.clone(),
                member: breach.member.clone(),
                actor: Actor::Bot,
                reason: breach.reason.clone(),
                event_id: None,
                at: breach.at,
            };
            let (action, until) = write_timeout::<D>(&mut *tx, &self.outbox, &order, length).await?;
            outcome.timed_out_until = Some(until);
            timeout = Some(action);
        }
        tx.commit().await?;
        self.outbox.wake_sender(self.outbox.writes());
        counted_action(&strike);
        if let Some(action) = &timeout {
            counted_action(action);
        }
        Ok(outcome)
    }

    async fn time_out(&self, order: &TimeoutOrder, length: TimeoutLength) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let (action, _) = write_timeout::<D>(&mut *tx, &self.outbox, order, length).await?;
        tx.commit().await?;
        self.outbox.wake_sender(self.outbox.writes());
        counted_action(&action);
        Ok(true)
    }

    async fn lift_timeout(&self, order: &TimeoutOrder) -> Result<bool, StoreError> {
        let (reservation, sender) = (order.reservation.as_str(), order.member.sender_key());
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let row = sqlx::query(TIMEOUT).bind(reservation).bind(sender.as_str()).fetch_optional(&mut *tx).await?;
        let until = row.as_ref().map(|row| row.int("until")).transpose()?;
        if until.is_none_or(|until| until <= to_millis(order.at)) {
            return Ok(false);
        }
        let at = to_millis(order.at);
        sqlx::query(END_TIMEOUT).bind(at).bind(reservation).bind(sender.as_str()).execute(&mut *tx).await?;
        let action = NewAction {
            reservation: order.reservation.clone(),
            // It ends now: the lifecycle, lifting it in the room, records the same
            // untimeout (by its end), which is this one.
            action: ModerationAction::Untimeout {
                member: order.member.clone(),
                until: order.at,
                event_id: order.event_id.clone(),
            },
            actor: order.actor.clone(),
            reason: order.reason.clone(),
            at: order.at,
        };
        write_action::<D>(&mut *tx, &self.outbox, &action).await?;
        sqlx::query(sql::FACTS_ARRIVED).bind(reservation).bind(at).execute(&mut *tx).await?;
        tx.commit().await?;
        self.outbox.wake_sender(self.outbox.writes());
        counted_action(&action);
        Ok(true)
    }

    async fn timed_out_until(
        &self, reservation: &ReservationId, member: &ModeratedMember, now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sender = member.sender_key();
        let query = sqlx::query(TIMEOUT).bind(reservation.as_str()).bind(sender.as_str());
        match query.fetch_optional(&self.pool).await? {
            Some(row) if row.int("until")? > to_millis(now) => Ok(Some(from_millis(row.int("until")?)?)),
            _ => Ok(None),
        }
    }

    async fn pending_redactions(&self, limit: u32, per_room: u32) -> Result<Vec<PendingRedaction>, StoreError> {
        let query = sqlx::query(PENDING_REDACTIONS).bind(i64::from(limit)).bind(i64::from(per_room));
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(pending).collect()
    }

    async fn redaction_done(&self, event_id: &OwnedEventId, action: Option<&NewAction>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sqlx::query(REDACTION_DONE).bind(event_id.as_str()).execute(&mut *tx).await?;
        let new = match action {
            Some(action) => write_action::<D>(&mut *tx, &self.outbox, action).await?,
            None => false,
        };
        tx.commit().await?;
        if let Some(action) = action.filter(|_| new) {
            self.outbox.wake_sender(self.outbox.writes());
            counted_action(action);
        }
        Ok(())
    }

    async fn set_room_rules(&self, rules: &RulesOverride, action: &NewAction) -> Result<(), StoreError> {
        let reservation = action.reservation.as_str();
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let Some(row) = sqlx::query(RULES_SET).bind(reservation).fetch_optional(&mut *tx).await? else {
            return Err(StoreError::Refused { path: "reservation_id", message: format!("{reservation} has no room") });
        };
        let given = row.opt_text("chat_rules")?;
        // What was set over an older `chat.rules` is forgotten: the platform's word is newer.
        let before = match row.opt_text("rules_set")? {
            Some(set) if row.opt_text("rules_set_over")? == given => {
                let json = serde_json::from_str(&set).map_err(|e| corrupt("rules_set", e))?;
                RulesOverride::parse(&json, "rules_set").map_err(|e| corrupt("rules_set", e))?
            }
            _ => RulesOverride::default(),
        };
        let set = before.then(rules).to_json().to_string();
        sqlx::query(SET_RULES).bind(set.as_str()).bind(given.as_deref()).bind(reservation).execute(&mut *tx).await?;
        let new = write_action::<D>(&mut *tx, &self.outbox, action).await?;
        sqlx::query(sql::FACTS_ARRIVED).bind(reservation).bind(to_millis(action.at)).execute(&mut *tx).await?;
        tx.commit().await?;
        if new {
            self.outbox.wake_sender(self.outbox.writes());
            counted_action(action);
        }
        Ok(())
    }

    async fn prune_timeouts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(PRUNE_TIMEOUTS).bind(to_millis(before)).execute(&self.pool).await?;
        Ok(D::rows_affected(&done))
    }
}

/// Writes a timeout of `length` from `order.at` and its record in the caller's
/// transaction, and makes the reservation due; the action (to count once committed) and
/// when it ends.
#[apply(on_both_databases!)]
async fn write_timeout(
    conn: &mut D::Connection, outbox: &super::Outbound, order: &TimeoutOrder, length: TimeoutLength,
) -> Result<(NewAction, DateTime<Utc>), StoreError> {
    let until = order.at + chrono::Duration::seconds(i64::from(length.as_seconds()));
    let (reservation, sender) = (order.reservation.as_str(), order.member.sender_key());
    sqlx::query(SET_TIMEOUT)
        .bind(reservation)
        .bind(sender.as_str())
        .bind(order.member.user_id().map(|u| u.as_str()))
        .bind(to_millis(order.at))
        .bind(to_millis(until))
        .execute(&mut *conn)
        .await?;
    let action = NewAction {
        reservation: order.reservation.clone(),
        action: ModerationAction::Timeout {
            member: order.member.clone(),
            duration: length,
            until,
            event_id: order.event_id.clone(),
        },
        actor: order.actor.clone(),
        reason: order.reason.clone(),
        at: order.at,
    };
    write_action::<D>(&mut *conn, outbox, &action).await?;
    sqlx::query(sql::FACTS_ARRIVED).bind(reservation).bind(to_millis(order.at)).execute(&mut *conn).await?;
    Ok((action, until))
}

/// A row of [`PENDING_REDACTIONS`].
fn pending(row: &impl Read) -> Result<PendingRedaction, StoreError> {
    let what = "a queued redaction";
    Ok(PendingRedaction {
        event_id: OwnedEventId::try_from(row.text("event_id")?).map_err(|e| corrupt(what, e))?,
        reservation: ReservationId::parse(&row.text("reservation_id")?).map_err(|e| corrupt(what, e))?,
        room_id: OwnedRoomId::try_from(row.text("room_id")?).map_err(|e| corrupt(what, e))?,
        rule: Rule::parse(&row.text("rule")?).map_err(|e| corrupt(what, e))?,
        reason: row.text("reason")?,
        member: OwnedUserId::try_from(row.text("member")?).map_err(|e| corrupt(what, e))?,
        queued_at: from_millis(row.int("queued_at")?)?,
    })
}
