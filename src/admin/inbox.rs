//! The admin inbox: which events of a transaction it keeps, and the worker that works
//! through it, joining rooms and answering commands and claims.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use ruma::{OwnedUserId, UserId, events::room::member::MembershipState};
use tokio::sync::watch;

use super::{Answer, Command, REFUSAL, Services, claim, direct, moderate, parse, run};
use crate::{
    events::{HomeserverEvent, InboundEvent},
    matrix::{MatrixClient, MatrixError, rooms},
    store::{Store, StoreError},
};

/// Whether an event goes to the admin inbox: an admin's invite of the bot, anyone's
/// invite of the bot to a direct chat (to claim a ticket), or a `!foyer` or `!claim`
/// message from anyone but the bot (a stranger's `!foyer` is answered with a refusal).
/// Other invites never do, since the bot does not act in rooms it has no business in.
pub fn concerns(event: &InboundEvent, bot: &UserId, admins: &[OwnedUserId]) -> bool {
    match event {
        InboundEvent::Member(member) => {
            let direct = member.content.is_direct == Some(true);
            member.sender != bot
                && member.content.membership == MembershipState::Invite
                && member.user_id == bot
                && (direct || is_admin(admins, &member.sender))
        }
        InboundEvent::Message(message) => {
            let body = message.content.body();
            message.sender != bot && (parse(body).is_some() || claim::parse(body).is_some())
        }
        InboundEvent::Other(_) => false,
    }
}

/// What of a transaction's `events` the admin inbox keeps, as it keeps it: the events
/// [`concerns`] takes, a claim line kept as its code's hash (no code rests in plain
/// text, docs/fans-without-matrix-id.md), and the membership changes that end a stranger's direct chat
/// ([`direct::change_ends_chat`]; one look in the store per room with such changes).
pub async fn kept_in_inbox(
    events: &[InboundEvent], bot: &UserId, admins: &[OwnedUserId], store: &dyn Store,
) -> Result<Vec<HomeserverEvent>, StoreError> {
    let mut kept = Vec::new();
    let mut openers: HashMap<&str, Option<OwnedUserId>> = HashMap::new();
    for event in events {
        if concerns(event, bot, admins) {
            let mut stored = event.stored();
            if let InboundEvent::Message(_) = event
                && let Some(content) = claim::kept_content(&stored.content)
            {
                stored.content = content;
            }
            kept.push(stored);
            continue;
        }
        let InboundEvent::Member(member) = event else { continue };
        let changed = matches!(
            member.content.membership,
            MembershipState::Join
                | MembershipState::Invite
                | MembershipState::Knock
                | MembershipState::Leave
                | MembershipState::Ban
        );
        if member.user_id == bot || !changed {
            continue;
        }
        let opener = match openers.get(member.room_id.as_str()) {
            Some(opener) => opener.clone(),
            None => {
                let opener = store.direct_chat_opener(&member.room_id).await?;
                openers.insert(member.room_id.as_str(), opener.clone());
                opener
            }
        };
        if opener.is_some_and(|opener| direct::change_ends_chat(member, bot, opener.as_str()).is_some()) {
            kept.push(event.stored());
        }
    }
    Ok(kept)
}

fn is_admin(admins: &[OwnedUserId], user: &UserId) -> bool {
    admins.iter().any(|a| a == user)
}

/// How long the inbox waits before trying an event again that failed for a reason
/// that passes (the homeserver or the database is down).
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// An event still failing this long after it came is given up (logged and dropped),
/// so that, say, an invite to a room whose server is gone does not wait for ever.
const GIVE_UP_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// How often the inbox looks without being woken: another instance, or one that died,
/// may have queued what nobody woke this one for.
const POLL_EVERY: Duration = Duration::from_secs(30);
/// Events read from the inbox at a time.
const PAGE: u32 = 32;

/// Why the inbox stopped short; the event stays and is tried again.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unfinished {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}

/// Works through the admin inbox until `stop`: at once (what a crash left behind) and
/// whenever a transaction queues events (`Services::admin_wake`). The appservice
/// transaction stores the events before it is answered and each is dropped only once
/// handled, so a crash loses no command. One handled twice is answered once: the
/// answer's transaction id is the command's event id, and Synapse keeps transaction
/// ids for about 30 minutes (not across its own restarts).
pub async fn serve(state: Services, client: MatrixClient, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = claim::leave_idle(&state, &client).await {
            tracing::warn!(error = %e, "cannot look for idle direct chats now");
        }
        let retry = match drain(&state, &client).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = RETRY_AFTER.as_secs(), "cannot finish an admin command now");
                Some(RETRY_AFTER)
            }
        };
        tokio::select! {
            _ = state.inbox.notified() => {}
            _ = tokio::time::sleep(retry.unwrap_or(POLL_EVERY)) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Handles every event in the inbox once; the first failure that may pass is returned
/// after the rest were tried, and its event stays for the next round.
async fn drain(state: &Services, client: &MatrixClient) -> Result<(), Unfinished> {
    loop {
        let page = state.store.admin_inbox(PAGE).await?;
        let full = page.len() == PAGE as usize;
        let mut waiting = None;
        for queued in page {
            let outcome = match &queued.event {
                Ok(event) => handle(state, client, event, queued.received_at).await,
                Err(e) => {
                    tracing::error!(event_id = %queued.event_id, error = %e, "an admin inbox event is unreadable; dropped");
                    Ok(())
                }
            };
            match outcome {
                Ok(()) => {}
                Err(e) if Utc::now() - queued.received_at < GIVE_UP_AFTER => {
                    waiting.get_or_insert(e);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(event_id = %queued.event_id, error = %e, "an admin event still fails after 10 minutes; dropped");
                }
            }
            state.store.forget_admin_event(&queued.event_id).await?;
        }
        match waiting {
            Some(e) => return Err(e),
            None if !full => return Ok(()),
            None => {}
        }
    }
}

/// Handles one inbox event (kept at `received_at`): joins an admin's room or a
/// stranger's direct chat, leaves a direct chat that ended, answers a command, or runs a
/// host's or moderator's command in their show's room. Fails only for what may pass; what the
/// homeserver refuses for good is logged and dropped, and so is an event that does not
/// read as its type.
async fn handle(
    state: &Services, client: &MatrixClient, queued: &HomeserverEvent, received_at: chrono::DateTime<Utc>,
) -> Result<(), Unfinished> {
    let Some(event) = InboundEvent::read(queued.clone()) else { return Ok(()) };
    let room_id = match &event {
        InboundEvent::Member(member) => &member.room_id,
        InboundEvent::Message(message) => &message.room_id,
        InboundEvent::Other(_) => return Ok(()),
    };
    let settle = |outcome: Result<(), Unfinished>, what: &str| match outcome {
        Err(Unfinished::Matrix(e)) if !e.is_transient() => {
            tracing::warn!(room_id = %room_id, error = %e, "cannot {what}; dropped");
            Ok(())
        }
        other => other,
    };
    let message = match &event {
        InboundEvent::Member(member) => {
            if member.user_id != state.config.bot_user_id() {
                return settle(direct::member_changed(state, client, member).await, "leave a direct chat");
            }
            if member.content.membership != MembershipState::Invite {
                return Ok(());
            }
            let joined = if is_admin(&state.config.admins, &member.sender) {
                rooms::join(client, room_id).await.map_err(Unfinished::from).map(|()| {
                    // An admin's room stays: it is never counted or left.
                    tracing::info!(room_id = %room_id, sender = %member.sender, "joined an admin's room");
                })
            } else {
                direct::invited(state, client, room_id, &member.sender).await
            };
            return settle(joined, "join a direct chat");
        }
        InboundEvent::Message(message) => message,
        InboundEvent::Other(_) => return Ok(()),
    };
    let (sender, admin) = (&message.sender, is_admin(&state.config.admins, &message.sender));
    // The claim line as the inbox kept it: its code's hash, in a field of the content.
    let (parsed, claimed) = (parse(message.content.body()), claim::from_inbox(&queued.content));
    if parsed.is_none() && claimed.is_none() {
        return Ok(());
    }
    // A reservation's room has its own commands, its hosts' and moderators' alone.
    if state.store.manages_room(room_id).await? {
        return settle(moderate::handle(state, client, message, received_at).await, "answer a room command");
    }
    // Claims are answered only in a stranger's direct chat that the bot checked was one.
    if claimed.is_some() && state.store.direct_chat_opener(room_id).await?.is_none() {
        tracing::info!(room_id = %room_id, "a claim outside a direct chat; not answered");
        return Ok(());
    }
    // Admins are trusted with the bot's voice; everyone else is answered at a pace.
    if !admin && !state.pace.allow(room_id, std::time::Instant::now()) {
        metrics::counter!("foyer_admin_answers_held_back_total").increment(1);
        tracing::info!(room_id = %room_id, "answer held back: each room is answered at a bounded pace");
        return Ok(());
    }
    // A host's or moderator's `!foyer` in the bot's direct chat with them: where their
    // room commands are answered, so it tells them where and how to write those.
    let in_staff_chat = !admin
        && claimed.is_none()
        && state.store.staff_chat(sender).await?.is_some_and(|chat| chat.as_str() == room_id.as_str());
    let answer = match (admin, parsed, claimed) {
        (_, _, Some(code)) => {
            state.store.direct_chat_used(room_id, Utc::now()).await?;
            match claim::claim(state, sender, code, Utc::now()).await {
                Ok(answer) => answer,
                Err(e @ StoreError::Unavailable(_)) => return Err(e.into()),
                Err(e) => crate::words::admin::cannot_answer(&e),
            }
        }
        (_, None, _) => return Ok(()),
        (false, Some(_), _) if in_staff_chat => crate::words::moderation::help(),
        (false, Some(Ok(Command::Help)), _) => claim::help(),
        (false, Some(_), _) => Answer::plain(REFUSAL),
        (true, Some(Err(help)), _) => Answer::plain(help),
        (true, Some(Ok(command)), _) => {
            tracing::info!(room_id = %room_id, sender = %sender, command = ?command, "admin command");
            match run(state, command, Utc::now()).await {
                Ok(answer) => answer,
                // The database is back soon: the command waits for it.
                Err(e @ StoreError::Unavailable(_)) => return Err(e.into()),
                // Data that does not read back stays so; waiting would block the commands after it.
                Err(e) => crate::words::admin::cannot_answer(&e),
            }
        }
    };
    crate::failpoint::hit("admin_before_answer");
    // The transaction id follows the command, so a command handled again is answered once.
    let txn = format!("foyer-admin-{}", message.event_id);
    let sent = rooms::notice(client, &state.config.bot_user_id(), room_id, &txn, &answer.text, &answer.html).await;
    settle(sent.map_err(Unfinished::from), "answer an admin command")?;
    crate::failpoint::hit("admin_after_answer");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_support::user;

    #[test]
    fn the_inbox_takes_admins_invites_of_the_bot_and_commands_from_anyone_but_the_bot() {
        let (bot, admin, stranger) = (user("foyer"), user("admin"), user("stranger"));
        let admins = [admin.clone()];
        let event = |sender: &OwnedUserId, kind: &str, state_key: Option<&OwnedUserId>, content| HomeserverEvent {
            event_id: "$e".into(),
            room_id: "!dm:example.org".into(),
            kind: kind.into(),
            sender: sender.to_string(),
            state_key: state_key.map(|u| u.to_string()),
            content,
        };
        let invite = |sender, invitee| event(sender, "m.room.member", Some(invitee), json!({"membership": "invite"}));
        let says =
            |sender, body: &str| event(sender, "m.room.message", None, json!({"msgtype": "m.text", "body": body}));
        let taken = |e: HomeserverEvent| concerns(&InboundEvent::read(e).expect("reads"), &bot, &admins);
        assert!(taken(invite(&admin, &bot)));
        assert!(!taken(invite(&stranger, &bot)), "a stranger's invite is left alone");
        let direct = event(&stranger, "m.room.member", Some(&bot), json!({"membership": "invite", "is_direct": true}));
        assert!(taken(direct), "but not a direct chat: anyone may claim a ticket");
        assert!(taken(says(&stranger, "!claim ABCDE-FGHJK-MNPQR")));
        assert!(taken(says(&stranger, "!claim")), "answered with how to claim");
        assert!(!taken(invite(&admin, &stranger)), "only invites of the bot");
        assert!(taken(says(&admin, "!foyer list")));
        assert!(taken(says(&stranger, "!foyer open jazz")), "a stranger is refused, so it is taken");
        assert!(taken(says(&admin, "!foyer dance")), "answered with help");
        assert!(!taken(says(&admin, "hello")));
        assert!(!taken(says(&bot, "!foyer help")), "never the bot's own messages");
    }
}
