//! Strangers' direct chats with the bot, kept to what they are for: claiming a ticket
//! (docs/fans-without-matrix-id.md). An invite's stripped state cannot be trusted (the inviter's server
//! writes what it likes there, and it holds no member count), so the bot joins, reads
//! the room itself, and leaves at once unless it is a chat of two that nobody can walk
//! into. A user has a few such chats open at most, and all together are bounded: the
//! longest idle ends first. Nothing is counted per server, since fans share one. The bot
//! leaves a chat that grows past two or that its opener left, and answers anyone but an
//! admin at a bounded pace in each room.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::Utc;
use ruma::{
    OwnedRoomId, RoomId, UserId,
    api::client::{
        membership::{get_member_events, leave_room},
        state::get_state_event_for_key,
    },
    events::{StateEventType, room::member::MembershipState},
};
use serde_json::Value;

use super::{Services, Unfinished};
use crate::{
    events::MemberEvent,
    matrix::{MatrixClient, MatrixError, rooms},
};

/// Direct chats one user may have open with the bot: enough to claim, and to lose a chat
/// in a client; the next invite is declined.
const PER_USER: u64 = 3;
/// Strangers' direct chats open at once, all users together, unless the tests set
/// `FOYER_DIRECT_CHATS_MAX`.
const OPEN_AT_MOST: u64 = 5_000;
/// Answers the bot gives in one room in a burst, and then one each this often.
const ANSWER_BURST: f64 = 10.0;
const ANSWER_EVERY: Duration = Duration::from_secs(6);
/// Rooms whose answers are paced, remembered at most (those whose burst came back are
/// forgotten first).
const PACED_ROOMS: usize = 20_000;

fn open_at_most() -> u64 {
    let set = std::env::var("FOYER_DIRECT_CHATS_MAX").ok().and_then(|s| s.parse().ok());
    set.unwrap_or(OPEN_AT_MOST).max(1)
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(30)
}

/// A stranger invited the bot to a room marked as a direct chat: declined when they have
/// [`PER_USER`] open already; else joined, and left at once unless it is a direct chat
/// (see [`not_direct`]); else kept, after the longest idle chats ended if all together
/// are more than allowed. The chat is recorded as soon as the bot is in it, so a room it
/// could not check yet is still left once idle.
pub(super) async fn invited(
    state: &Services, client: &MatrixClient, room_id: &OwnedRoomId, opener: &UserId,
) -> Result<(), Unfinished> {
    // A chat recorded already is this invite tried again, or the bot invited back.
    let again = state.store.direct_chat_opener(room_id).await?.is_some();
    let mine = state.store.direct_chat_counts(opener).await?.of_user;
    if mine >= PER_USER && !again {
        leave(client, room_id).await?; // declines the invite
        metrics::counter!("foyer_direct_chats_total", "result" => "declined").increment(1);
        tracing::info!(room_id = %room_id, user_id = %opener, open = mine, "declined a direct chat: the user has as many open as allowed");
        return Ok(());
    }
    rooms::join(client, room_id).await?;
    state.store.direct_chat_active(room_id, opener, Utc::now()).await?;
    let why = match not_direct(client, room_id, &state.config.bot_user_id(), opener).await {
        Ok(why) => why,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => {
            tracing::warn!(room_id = %room_id, error = %e, "cannot read a room marked direct");
            Some("the bot cannot read it")
        }
    };
    if let Some(why) = why {
        leave(client, room_id).await?;
        state.store.forget_direct_chat(room_id).await?;
        metrics::counter!("foyer_direct_chats_total", "result" => "not_direct").increment(1);
        tracing::info!(room_id = %room_id, user_id = %opener, why, "left a room marked direct that is not a direct chat");
        return Ok(());
    }
    let open = state.store.direct_chat_counts(opener).await?.open;
    let most = open_at_most();
    if open > most {
        let ended = end_longest_idle(state, client, open - most).await?;
        tracing::info!(ended, open, "ended the longest idle direct chats: too many open");
    }
    metrics::counter!("foyer_direct_chats_total", "result" => "joined").increment(1);
    tracing::info!(room_id = %room_id, user_id = %opener, "joined a direct chat");
    Ok(())
}

/// Why the room is no direct chat between the bot and `opener`, read from the room
/// itself: someone else is in it or invited, `opener` is not in it, or anyone may join
/// it without an invite. `None` when it is one.
async fn not_direct(
    client: &MatrixClient, room_id: &OwnedRoomId, bot: &UserId, opener: &UserId,
) -> Result<Option<&'static str>, MatrixError> {
    let members = client.send(get_member_events::v3::Request::new(room_id.clone()), None, deadline()).await?;
    let (mut others, mut opener_in) = (0, false);
    for event in members.chunk {
        let Ok(event) = event.deserialize_as::<Value>() else { continue };
        let member = event["state_key"].as_str().unwrap_or_default();
        let membership = event["content"]["membership"].as_str().unwrap_or_default();
        match (member, membership) {
            (m, _) if m == bot.as_str() => {}
            (m, "join") if m == opener.as_str() => opener_in = true,
            (_, "join" | "invite" | "knock") => others += 1,
            _ => {}
        }
    }
    if others > 0 {
        return Ok(Some("it has more than two members"));
    }
    if !opener_in {
        return Ok(Some("whoever invited the bot is not in it"));
    }
    let request =
        get_state_event_for_key::v3::Request::new(room_id.clone(), StateEventType::RoomJoinRules, String::new());
    let rule = match client.send(request, None, deadline()).await {
        Ok(found) => serde_json::from_str::<Value>(found.event_or_content.get())
            .ok()
            .and_then(|c| c["join_rule"].as_str().map(str::to_owned)),
        // A room without join rules is one nobody may join uninvited.
        Err(MatrixError::Api { status: 404, .. }) => None,
        Err(e) => return Err(e),
    };
    match rule.as_deref() {
        None | Some("invite" | "knock" | "private") => Ok(None),
        Some(_) => Ok(Some("anyone may join it without an invite")),
    }
}

/// Why a membership change in a stranger's direct chat that `opener` opened ends it:
/// someone else is in it or on their way in, or `opener` left. `None` when it does not.
pub(super) fn change_ends_chat(event: &MemberEvent, bot: &UserId, opener: &str) -> Option<&'static str> {
    let member = &event.user_id;
    if member == bot {
        return None;
    }
    match event.content.membership {
        MembershipState::Join | MembershipState::Invite | MembershipState::Knock if member != opener => {
            Some("it grew past two members")
        }
        MembershipState::Leave | MembershipState::Ban if member == opener => Some("whoever opened it left"),
        _ => None,
    }
}

/// A membership changed in a room with the bot in it: ends the chat when it is a
/// stranger's direct chat and the change ends it ([`change_ends_chat`]).
pub(super) async fn member_changed(
    state: &Services, client: &MatrixClient, event: &MemberEvent,
) -> Result<(), Unfinished> {
    let room_id = &event.room_id;
    let Some(opener) = state.store.direct_chat_opener(room_id).await? else { return Ok(()) };
    let Some(why) = change_ends_chat(event, &state.config.bot_user_id(), opener.as_str()) else { return Ok(()) };
    leave(client, room_id).await?;
    state.store.forget_direct_chat(room_id).await?;
    metrics::counter!("foyer_direct_chats_total", "result" => "left").increment(1);
    tracing::info!(room_id = %room_id, why, "left a direct chat");
    Ok(())
}

/// Ends up to `count` of the longest idle direct chats; returns how many ended.
async fn end_longest_idle(state: &Services, client: &MatrixClient, count: u64) -> Result<u64, Unfinished> {
    let limit = u32::try_from(count).unwrap_or(u32::MAX);
    let far = Utc::now() + chrono::Duration::days(36_500);
    let mut ended = 0;
    for room_id in state.store.idle_direct_chats(far, limit).await? {
        leave(client, &room_id).await?;
        tracing::info!(room_id = %room_id, "left the longest idle direct chat: too many open");
        state.store.forget_direct_chat(&room_id).await?;
        ended += 1;
    }
    Ok(ended)
}

/// The bot leaves the room (or declines its invite); a room it is not in is left already.
pub(super) async fn leave(client: &MatrixClient, room_id: &RoomId) -> Result<(), MatrixError> {
    match client.send(leave_room::v3::Request::new(room_id.to_owned()), None, deadline()).await {
        Ok(_) | Err(MatrixError::Api { status: 403 | 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The bot's answers to anyone but an admin, paced per room: [`ANSWER_BURST`] at once,
/// then one every [`ANSWER_EVERY`]; what comes faster goes unanswered (and undone). In
/// memory, per instance.
#[derive(Default)]
pub struct Pace {
    rooms: Mutex<HashMap<OwnedRoomId, (f64, Instant)>>,
}

impl Pace {
    /// Whether the bot may answer in `room_id` now; counts the answer when it may.
    pub fn allow(&self, room_id: &RoomId, now: Instant) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let refill = |(tokens, at): (f64, Instant)| {
            let earned = now.saturating_duration_since(at).as_secs_f64() / ANSWER_EVERY.as_secs_f64();
            (tokens + earned).min(ANSWER_BURST)
        };
        if rooms.len() >= PACED_ROOMS && !rooms.contains_key(room_id) {
            rooms.retain(|_, bucket| refill(*bucket) < ANSWER_BURST);
            if rooms.len() >= PACED_ROOMS {
                // Every room is mid-burst: the one paced longest ago gets a fresh one.
                let stalest = rooms.iter().min_by_key(|(_, (_, at))| *at).map(|(room, _)| room.clone());
                if let Some(stalest) = stalest {
                    rooms.remove(&stalest);
                }
            }
        }
        let tokens = rooms.get(room_id).map_or(ANSWER_BURST, |bucket| refill(*bucket));
        if tokens < 1.0 {
            return false;
        }
        rooms.insert(room_id.to_owned(), (tokens - 1.0, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{events::InboundEvent, test_support::user};

    #[test]
    fn answers_come_in_a_burst_then_at_a_pace_per_room() {
        let pace = Pace::default();
        let (dm, other) = (RoomId::parse("!dm:example.org").unwrap(), RoomId::parse("!other:example.org").unwrap());
        let start = Instant::now();
        let burst = (0..20).filter(|_| pace.allow(&dm, start)).count();
        assert_eq!(burst, ANSWER_BURST as usize);
        assert!(pace.allow(&other, start), "another room is paced on its own");
        assert!(!pace.allow(&dm, start + ANSWER_EVERY / 2));
        assert!(pace.allow(&dm, start + ANSWER_EVERY), "one more once its time came");
        assert!(!pace.allow(&dm, start + ANSWER_EVERY));
    }

    #[test]
    fn a_chat_ends_when_someone_else_comes_in_or_its_opener_leaves() {
        let (bot, opener, carol) = (user("foyer"), user("fan"), user("carol"));
        let member = |who: &ruma::OwnedUserId, membership: &str| {
            let event = json!({"event_id": "$e", "room_id": "!dm:example.org", "type": "m.room.member",
                "sender": opener, "state_key": who, "content": {"membership": membership}});
            match InboundEvent::from_json(event) {
                Some(InboundEvent::Member(member)) => member,
                other => panic!("not a member event: {other:?}"),
            }
        };
        let ends = |e: MemberEvent| change_ends_chat(&e, &bot, opener.as_str());
        assert_eq!(ends(member(&carol, "invite")), Some("it grew past two members"));
        assert_eq!(ends(member(&carol, "join")), Some("it grew past two members"));
        assert_eq!(ends(member(&opener, "leave")), Some("whoever opened it left"));
        assert_eq!(ends(member(&carol, "leave")), None, "someone who was refused leaving");
        assert_eq!(ends(member(&opener, "join")), None, "the opener's own join");
        assert_eq!(ends(member(&bot, "join")), None, "the bot itself");
    }
}
