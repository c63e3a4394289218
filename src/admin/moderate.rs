//! Hosts' and moderators' commands in their show's room (docs/moderation.md, "Commands
//! in the room"): `!foyer slow`, `mode`, `timeout`, `untimeout`, `ban`, `unban`, `help`.
//! Anyone else's `!foyer` there is ignored, with no echo, but for `!foyer anonymous`,
//! which any member may send ([`anonymous`]). The bot acts, removes the
//! command from the room, and answers in its direct chat with the one who wrote it, so
//! that the audience does not see moderation at work.
//!
//! Handled again after a crash, a command does nothing twice: each action is recorded by
//! the command's event id ([`NewAction::identity`]), a timeout runs from when the inbox
//! received the command (so a retry computes the same end), the redaction's and the
//! answer's transaction ids follow the command's event id.

use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, OwnedUserId, UserId, events::room::member::MembershipState};
use serde_json::json;

use super::{Services, Unfinished, command::RoomCommand, is_anonymous, parse_room};
use crate::{
    events::MessageEvent,
    matrix::{MatrixClient, MatrixError, rooms},
    model::{ActionReason, Actor, ModeratedMember, ModerationAction, NewAction, ReservationId, RulesOverride},
    store::{StoreError, TimeoutOrder},
    words::{
        Answer,
        moderation::{self as words, Untouchable},
    },
};

/// The command's show and who wrote it.
struct Context<'a> {
    reservation: ReservationId,
    room_id: &'a OwnedRoomId,
    sender: &'a OwnedUserId,
    staff: Vec<OwnedUserId>,
    command_id: &'a ruma::EventId,
    received_at: DateTime<Utc>,
}

/// Handles a `!foyer` line in a reservation's room: `received_at` is when the inbox
/// kept it. Fails only for what may pass.
pub(super) async fn handle(
    state: &Services, client: &MatrixClient, message: &MessageEvent, received_at: DateTime<Utc>,
) -> Result<(), Unfinished> {
    let Some(parsed) = parse_room(message.content.body()) else { return Ok(()) };
    let Some(reservation) = state.store.reservation_of_room(&message.room_id).await? else { return Ok(()) };
    if is_anonymous(message.content.body()) {
        return anonymous(state, client, message, &reservation, received_at).await;
    }
    let Some(record) = state.store.reservation(&reservation).await? else { return Ok(()) };
    let staff = record.reservation.staff();
    if !staff.contains(&message.sender) {
        return Ok(()); // no echo: the room does not learn that `!foyer` means anything
    }
    let context = Context {
        reservation,
        room_id: &message.room_id,
        sender: &message.sender,
        staff,
        command_id: &message.event_id,
        received_at,
    };
    let answer = match parsed {
        Err(mistake) => Answer::plain(mistake),
        Ok(command) => {
            tracing::info!(room_id = %message.room_id, sender = %message.sender, command = ?command, "room command");
            match run(state, client, &context, command).await {
                Ok(answer) => answer,
                Err(Unfinished::Store(e @ StoreError::Unavailable(_))) => return Err(e.into()),
                Err(Unfinished::Matrix(e)) if e.is_transient() => return Err(e.into()),
                Err(e) => words::cannot_do(&e),
            }
        }
    };
    // Out of the audience's sight, whatever it was: a mistake as much as an action.
    rooms::redact(client, &message.room_id, &message.event_id, words::COMMAND_REDACTED).await?;
    crate::failpoint::hit("room_command_before_answer");
    let chat = staff_chat(state, client, &message.sender).await?;
    let txn = format!("foyer-moderation-{}", message.event_id);
    rooms::notice(client, &state.config.bot_user_id(), &chat, &txn, &answer.text, &answer.html).await?;
    crate::failpoint::hit("room_command_after_answer");
    Ok(())
}

/// `!foyer anonymous`, from any member: they appear as "a fan" in the show's public
/// archive and its replay without auth. Recorded, then acknowledged in the member's own
/// view alone: the command is redacted with the acknowledgement as the reason, which
/// their client shows in its place; the room sees a removed message and nothing more,
/// and the command is not in the transcript either.
async fn anonymous(
    state: &Services, client: &MatrixClient, message: &MessageEvent, reservation: &ReservationId,
    received_at: DateTime<Utc>,
) -> Result<(), Unfinished> {
    state.store.make_anonymous(reservation, &message.sender, received_at).await?;
    tracing::info!(room_id = %message.room_id, reservation_id = %reservation, "a member chose to be anonymous in the public archive");
    let acknowledged = crate::words::room::ANONYMOUS_ACKNOWLEDGED;
    rooms::redact(client, &message.room_id, &message.event_id, acknowledged).await?;
    Ok(())
}

/// Does what the command asks; its answer.
async fn run(
    state: &Services, client: &MatrixClient, at: &Context<'_>, command: RoomCommand,
) -> Result<Answer, Unfinished> {
    let action = |action: ModerationAction, reason: ActionReason| NewAction {
        reservation: at.reservation.clone(),
        action,
        actor: Actor::Member(at.sender.clone()),
        reason,
        at: at.received_at,
    };
    let event_id = Some(at.command_id.to_owned());
    match command {
        RoomCommand::Help => Ok(words::help()),
        RoomCommand::Slow(seconds) => {
            let set = action(ModerationAction::Slow { seconds, event_id }, ActionReason::default());
            set_rules(state, json!({"slow_mode_seconds": seconds}), &set).await?;
            Ok(words::slow_set(seconds))
        }
        RoomCommand::Mode(mode) => {
            let set = action(ModerationAction::Mode { mode, event_id }, ActionReason::default());
            set_rules(state, json!({"mode": mode.as_str()}), &set).await?;
            Ok(words::mode_set(mode))
        }
        RoomCommand::Timeout { user, length, reason } => {
            if let Some(refused) = untouchable(state, at, "timeout", &user) {
                return Ok(refused);
            }
            let room = state.store.lifecycle_state(&at.reservation).await?.room;
            if !room.members.contains_key(&user) {
                return Ok(words::not_a_member(&user));
            }
            let order = order(state, at, &user, reason).await?;
            state.store.time_out(&order, length).await?;
            state.wake.notify_one();
            let until = order.at + chrono::Duration::seconds(i64::from(length.as_seconds()));
            Ok(words::timed_out(&user, length.as_seconds(), until))
        }
        RoomCommand::Untimeout(user) => {
            let order = order(state, at, &user, ActionReason::default()).await?;
            let lifted = state.store.lift_timeout(&order).await?;
            if lifted {
                state.wake.notify_one();
            }
            Ok(words::timeout_lifted(&user, lifted))
        }
        RoomCommand::Ban { user, reason } => {
            if let Some(refused) = untouchable(state, at, "ban", &user) {
                return Ok(refused);
            }
            let said = if reason.as_str().is_empty() { words::BANNED_BY_COMMAND } else { reason.as_str() };
            // Banned first, recorded after: the record never holds a ban the homeserver
            // refused. The bot's ban event binds the ticket (`http::webchat::members`),
            // which records no second ban: this one is the command's.
            if let Some(refused) = refusal(rooms::ban(client, at.room_id, &user, said).await, "ban", &user)? {
                return Ok(refused);
            }
            let member = member(state, &at.reservation, &user, true).await?;
            state.store.record_action(&action(ModerationAction::Ban { member, event_id }, reason)).await?;
            Ok(words::banned(&user))
        }
        RoomCommand::Unban(user) => {
            if let Some(refused) = refusal(rooms::unban(client, at.room_id, &user).await, "unban", &user)? {
                return Ok(refused);
            }
            let member = member(state, &at.reservation, &user, true).await?;
            let unban = action(ModerationAction::Unban { member, event_id }, ActionReason::default());
            state.store.record_action(&unban).await?;
            Ok(words::unbanned(&user))
        }
    }
}

/// Sets `rules` over what the room's staff set before, recorded as `action`, and wakes
/// the lifecycle to bring the power levels in line.
async fn set_rules(state: &Services, rules: serde_json::Value, action: &NewAction) -> Result<(), StoreError> {
    let rules = RulesOverride::parse(&rules, "command").map_err(|e| StoreError::Corrupt(e.to_string()))?;
    state.store.set_room_rules(&rules, action).await?;
    state.wake.notify_one();
    Ok(())
}

/// Hosts, moderators and the bot are not timed out or banned by command.
fn untouchable(state: &Services, at: &Context<'_>, verb: &str, user: &UserId) -> Option<Answer> {
    let who = if user == state.config.bot_user_id() {
        Untouchable::Bot
    } else if at.staff.iter().any(|s| s == user) {
        Untouchable::Staff
    } else {
        return None;
    };
    Some(words::refused(verb, user, who))
}

/// The homeserver's lasting refusal of a ban or unban, as the answer; what may pass, as
/// the error that retries the command.
fn refusal(done: Result<(), MatrixError>, verb: &str, user: &UserId) -> Result<Option<Answer>, MatrixError> {
    match done {
        Ok(()) => Ok(None),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => Ok(Some(words::homeserver_refused(verb, user, &e))),
    }
}

/// Whom a command is about. A web fan's user is known by their ticket or `sub`: a ban
/// names both, while a timeout is the viewer's, whom the web chat refuses before sending
/// as it does after strikes (`with_user`: whether the Matrix ID is kept too).
async fn member(
    state: &Services, reservation: &ReservationId, user: &OwnedUserId, with_user: bool,
) -> Result<ModeratedMember, StoreError> {
    let web = state.store.web_user_by_id(user).await?.filter(|web| &web.reservation == reservation);
    Ok(match web {
        Some(web) if !with_user => ModeratedMember::web_viewer(web.viewer),
        Some(web) => ModeratedMember::user(user.clone(), Some(web.viewer)),
        None => ModeratedMember::user(user.clone(), None),
    })
}

/// A timeout given or lifted by the command.
async fn order(
    state: &Services, at: &Context<'_>, user: &OwnedUserId, reason: ActionReason,
) -> Result<TimeoutOrder, StoreError> {
    Ok(TimeoutOrder {
        reservation: at.reservation.clone(),
        member: member(state, &at.reservation, user, false).await?,
        actor: Actor::Member(at.sender.clone()),
        reason,
        event_id: Some(at.command_id.to_owned()),
        at: at.received_at,
    })
}

/// The bot's direct chat with `user`: the one it opened before while they are still in
/// it (joined or invited), else a new one, remembered at once.
async fn staff_chat(state: &Services, client: &MatrixClient, user: &OwnedUserId) -> Result<OwnedRoomId, Unfinished> {
    if let Some(room) = state.store.staff_chat(user).await? {
        match rooms::membership(client, &room, user).await {
            Ok(Some(MembershipState::Join | MembershipState::Invite)) => return Ok(room),
            Err(e) if e.is_transient() => return Err(e.into()),
            // They left it (or the bot can no longer read it): a new one.
            _ => tracing::info!(room_id = %room, "a moderator's direct chat is gone; opening another"),
        }
    }
    let room = rooms::open_direct_chat(client, user, words::STAFF_CHAT_NAME).await?;
    state.store.remember_staff_chat(user, &room, Utc::now()).await?;
    tracing::info!(room_id = %room, "opened a direct chat with a host or moderator");
    Ok(room)
}
