//! The admin inbox: which events of a transaction it keeps, and the worker that works
//! through it, joining rooms and answering commands and claims.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use ruma::{OwnedUserId, RoomId, UserId};
use tokio::sync::watch;

use super::{Answer, Command, REFUSAL, Services, claim, direct, parse, run};
use crate::{
    events::HomeserverEvent,
    matrix::{MatrixClient, MatrixError, rooms},
    store::{Store, StoreError},
};

/// Whether an event goes to the admin inbox: an admin's invite of the bot, anyone's
/// invite of the bot to a direct chat (to claim a ticket), or a `!foyer` or `!claim`
/// message from anyone but the bot (a stranger's `!foyer` is answered with a refusal).
/// Other invites never do, since the bot does not act in rooms it has no business in.
pub fn concerns(event: &HomeserverEvent, bot: &UserId, admins: &[OwnedUserId]) -> bool {
    if event.sender == bot.as_str() {
        return false;
    }
    if event.membership() == Some("invite") {
        let direct = event.content.get("is_direct").and_then(|d| d.as_bool()) == Some(true);
        return event.state_key.as_deref() == Some(bot.as_str()) && (direct || is_admin(admins, &event.sender));
    }
    event.kind == "m.room.message"
        && event
            .content
            .get("body")
            .and_then(|b| b.as_str())
            .is_some_and(|b| parse(b).is_some() || claim::parse(b).is_some())
}

/// What of a transaction's `events` the admin inbox keeps, as it keeps it: the events
/// [`concerns`] takes, a claim line kept as its code's hash (no code rests in plain
/// text, contract §7), and the membership changes that end a stranger's direct chat
/// ([`direct::change_ends_chat`]; one look in the store per room with such changes).
pub async fn kept_in_inbox(
    events: &[HomeserverEvent],
    bot: &UserId,
    admins: &[OwnedUserId],
    store: &dyn Store,
) -> Result<Vec<HomeserverEvent>, StoreError> {
    let mut kept = Vec::new();
    let mut openers: HashMap<&str, Option<OwnedUserId>> = HashMap::new();
    for event in events {
        if concerns(event, bot, admins) {
            let mut event = event.clone();
            if event.kind == "m.room.message"
                && let Some(content) = claim::kept_content(&event.content)
            {
                event.content = content;
            }
            kept.push(event);
            continue;
        }
        let member = event.kind == "m.room.member" && event.state_key.as_deref() != Some(bot.as_str());
        if !member || !matches!(event.membership(), Some("join" | "invite" | "knock" | "leave" | "ban")) {
            continue;
        }
        let opener = match openers.get(event.room_id.as_str()) {
            Some(opener) => opener.clone(),
            None => {
                let opener = match RoomId::parse(&event.room_id) {
                    Ok(room_id) => store.direct_chat_opener(&room_id).await?,
                    Err(_) => None,
                };
                openers.insert(event.room_id.as_str(), opener.clone());
                opener
            }
        };
        if opener.is_some_and(|opener| direct::change_ends_chat(event, bot, opener.as_str()).is_some()) {
            kept.push(event.clone());
        }
    }
    Ok(kept)
}

fn is_admin(admins: &[OwnedUserId], user: &str) -> bool {
    admins.iter().any(|a| a.as_str() == user)
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
                Ok(event) => handle(state, client, event).await,
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

/// Handles one inbox event: joins an admin's room or a stranger's direct chat, leaves a
/// direct chat that ended, or answers a command. Fails only for what may pass; what the
/// homeserver refuses for good is logged and dropped.
async fn handle(state: &Services, client: &MatrixClient, event: &HomeserverEvent) -> Result<(), Unfinished> {
    let Ok(room_id) = RoomId::parse(&event.room_id) else { return Ok(()) };
    let settle = |outcome: Result<(), Unfinished>, what: &str| match outcome {
        Err(Unfinished::Matrix(e)) if !e.is_transient() => {
            tracing::warn!(room_id = %room_id, error = %e, "cannot {what}; dropped");
            Ok(())
        }
        other => other,
    };
    let admin = is_admin(&state.config.admins, &event.sender);
    let sender = UserId::parse(&event.sender).ok();
    if event.kind == "m.room.member" {
        let bot = state.config.bot_user_id();
        if event.state_key.as_deref() != Some(bot.as_str()) {
            return settle(direct::member_changed(state, client, event).await, "leave a direct chat");
        }
        if event.membership() != Some("invite") {
            return Ok(());
        }
        let joined = match (admin, &sender) {
            (true, _) => rooms::join(client, &room_id).await.map_err(Unfinished::from).map(|()| {
                // An admin's room stays: it is never counted or left.
                tracing::info!(room_id = %room_id, sender = %event.sender, "joined an admin's room");
            }),
            (false, Some(sender)) => direct::invited(state, client, &room_id, sender).await,
            (false, None) => Ok(()),
        };
        return settle(joined, "join a direct chat");
    }
    let Some(body) = event.content.get("body").and_then(|b| b.as_str()) else { return Ok(()) };
    let (parsed, claimed) = (parse(body), claim::from_inbox(&event.content));
    if (parsed.is_none() && claimed.is_none()) || state.store.manages_room(&room_id).await? {
        return Ok(()); // never in a reservation's room
    }
    // Claims are answered only in a stranger's direct chat that the bot checked was one.
    if claimed.is_some() && state.store.direct_chat_opener(&room_id).await?.is_none() {
        tracing::info!(room_id = %room_id, "a claim outside a direct chat; not answered");
        return Ok(());
    }
    // Admins are trusted with the bot's voice; everyone else is answered at a pace.
    if !admin && !state.pace.allow(&room_id, std::time::Instant::now()) {
        metrics::counter!("foyer_admin_answers_held_back_total").increment(1);
        tracing::info!(room_id = %room_id, "answer held back: each room is answered at a bounded pace");
        return Ok(());
    }
    let answer = match (admin, parsed, claimed, &sender) {
        (_, _, Some(code), Some(sender)) => {
            state.store.direct_chat_used(&room_id, Utc::now()).await?;
            match claim::claim(state, sender, code, Utc::now()).await {
                Ok(answer) => answer,
                Err(e @ StoreError::Unavailable(_)) => return Err(e.into()),
                Err(e) => Answer::plain(format!("Foyer cannot answer that: {e}")),
            }
        }
        (_, None, _, _) => return Ok(()),
        (false, Some(Ok(Command::Help)), _, _) => claim::help(),
        (false, Some(_), _, _) => Answer::plain(REFUSAL),
        (true, Some(Err(help)), _, _) => Answer::plain(help),
        (true, Some(Ok(command)), _, _) => {
            tracing::info!(room_id = %room_id, sender = %event.sender, command = ?command, "admin command");
            match run(state, command, Utc::now()).await {
                Ok(answer) => answer,
                // The database is back soon: the command waits for it.
                Err(e @ StoreError::Unavailable(_)) => return Err(e.into()),
                // Data that does not read back stays so; waiting would block the commands after it.
                Err(e) => Answer::plain(format!("Foyer cannot answer that: {e}")),
            }
        }
    };
    crate::failpoint::hit("admin_before_answer");
    // The transaction id follows the command, so a command handled again is answered once.
    let txn = format!("foyer-admin-{}", event.event_id);
    let sent = rooms::notice(client, &state.config.bot_user_id(), &room_id, &txn, &answer.text, &answer.html).await;
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
        let taken = |e: HomeserverEvent| concerns(&e, &bot, &admins);
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
