//! Web fans' users as Matrix tells of them (docs/web-chat.md, "Web fans in Matrix"):
//! their joins and leaves are recorded, and a ban of one bans the viewer from the
//! reservation's chat: their web sessions end, and the web chat refuses them a new one.
//! An unban lifts it. A ban or unban by a host or moderator (not the bot, whose follow
//! a command) is written in the moderation record. Read from the membership facts of an
//! appservice transaction, before its 200, so a ban is never lost.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ruma::OwnedUserId;

use crate::{
    http::AppState,
    model::{
        ActionReason, Actor, EndReason, Membership, ModeratedMember, ModerationAction, NewAction, Removal,
        ReservationId, ViewerKey, naming,
    },
    store::{MembershipFact, Store, StoreError},
};

/// Follows web users' memberships in their own reservation's room: a join or a leave is
/// recorded (the web chat joins the user again on the fan's next message after a kick
/// or a leave), and a ban bans the viewer, an unban lifts it. A membership elsewhere (a
/// room the web user was never meant to be in), or of a web user Foyer never made,
/// changes nothing. To be called before the facts are stored: an unban is a leave after
/// a ban.
pub(in crate::http) async fn follow(
    state: &AppState, facts: &[MembershipFact], now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let store = state.store.as_ref();
    // Each member's membership as the facts before it in this transaction left it.
    let mut latest: BTreeMap<&OwnedUserId, Membership> = BTreeMap::new();
    for fact in facts {
        let user = &fact.user_id;
        let was = latest.insert(user, fact.membership);
        let followed = matches!(fact.membership, Membership::Join | Membership::Leave | Membership::Ban);
        if !followed {
            continue;
        }
        record_ban(state, fact, was, now).await?;
        // A Matrix member's ban bars their tickets whether or not the web chat is on.
        let server = &state.config.homeserver.server_name;
        let web = state.config.webchat.as_ref().is_some_and(|w| naming::is_web_user(&w.puppet_prefix, server, user));
        if !web {
            holder(state, fact, was, now).await?;
            continue;
        }
        let Some(web_user) = store.web_user_by_id(user).await? else { continue };
        let (reservation, viewer) = (&web_user.reservation, &web_user.viewer);
        let lifecycle = store.lifecycle_state(reservation).await?;
        if lifecycle.room.room_id.as_ref().is_none_or(|room| room.as_str() != fact.room_id) {
            continue;
        }
        let by_another = fact.sender != user.as_str();
        match fact.membership {
            Membership::Join => {
                store.web_user_joined(user, now).await?;
            }
            Membership::Ban => {
                let event_id = ruma::EventId::parse(&fact.event_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                store.web_user_removed(user, Removal::Kicked, now).await?;
                // The ban is the ticket's only while this web user is its holder's: a
                // former holder banned after the ticket moved on leaves the new one be.
                if let ViewerKey::Ticket(ticket) = viewer
                    && store.ticket_generation(reservation, ticket).await? != Some(web_user.holder_generation)
                {
                    tracing::info!(reservation_id = %reservation, "a former holder's web user was banned; the ticket's holder now is not");
                    continue;
                }
                store.ban_viewer(reservation, viewer, &event_id, now).await?;
                store.end_web_sessions(reservation, viewer, EndReason::Banned, now).await?;
                tracing::info!(reservation_id = %reservation, "a web fan was banned from the chat");
            }
            _ if by_another => {
                // A leave sent by another is an unban when the web user was banned, else a kick.
                let banned =
                    was.or_else(|| lifecycle.room.members.get(user).map(|m| m.membership)) == Some(Membership::Ban);
                if banned && store.unban_viewer(reservation, viewer).await? {
                    tracing::info!(reservation_id = %reservation, "a web fan's ban was lifted");
                } else if !banned {
                    store.web_user_removed(user, Removal::Kicked, now).await?;
                }
            }
            _ => {
                store.web_user_removed(user, Removal::Left, now).await?;
            }
        }
    }
    Ok(())
}

/// A Matrix member's ban in a reservation's room, by a host or a moderator (only they
/// may ban), bars the tickets they hold there, as a web user's ban does; an unban (a
/// leave by another after the ban) lifts it (docs/moderation.md).
async fn holder(
    state: &AppState, fact: &MembershipFact, was: Option<Membership>, now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let store = state.store.as_ref();
    let unban = fact.membership == Membership::Leave && fact.sender != fact.user_id.as_str();
    if fact.membership != Membership::Ban && !unban {
        return Ok(());
    }
    let Ok(room) = ruma::RoomId::parse(&fact.room_id) else { return Ok(()) };
    let Some(reservation) = store.reservation_of_room(&room).await? else { return Ok(()) };
    if fact.membership == Membership::Ban {
        let event_id = ruma::EventId::parse(&fact.event_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tickets = store.ban_holder(&reservation, &fact.user_id, &event_id, now).await?;
        if tickets > 0 {
            tracing::info!(reservation_id = %reservation, tickets, "a banned member's tickets are barred from the show");
        }
        return Ok(());
    }
    let banned = membership_before(store, &reservation, fact, was).await? == Some(Membership::Ban);
    if banned && store.unban_holder(&reservation, &fact.user_id).await? > 0 {
        tracing::info!(reservation_id = %reservation, "a member's ban was lifted: their tickets are no longer barred");
    }
    Ok(())
}

/// The member's membership before `fact`: as the facts before it in the same
/// transaction left it (`was`), else as stored.
async fn membership_before(
    store: &dyn Store, reservation: &ReservationId, fact: &MembershipFact, was: Option<Membership>,
) -> Result<Option<Membership>, StoreError> {
    if was.is_some() {
        return Ok(was);
    }
    let lifecycle = store.lifecycle_state(reservation).await?;
    Ok(lifecycle.room.members.get(&fact.user_id).map(|m| m.membership))
}

/// A ban or an unban in a reservation's room by a member, not the bot (a host or a
/// moderator in Element: only they may ban there), goes into the moderation record with
/// them as its actor, once by its membership event. The bot's own bans and unbans follow
/// `!foyer ban` and `unban`, which record them by the command (`admin`'s room commands).
async fn record_ban(
    state: &AppState, fact: &MembershipFact, was: Option<Membership>, now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let store = state.store.as_ref();
    let by_another = fact.sender != fact.user_id.as_str();
    let (ban, leave) = (fact.membership == Membership::Ban, fact.membership == Membership::Leave && by_another);
    if !(ban || leave) || fact.sender == state.config.bot_user_id().as_str() {
        return Ok(());
    }
    let (Ok(room), Ok(sender)) = (ruma::RoomId::parse(&fact.room_id), ruma::UserId::parse(&fact.sender)) else {
        return Ok(());
    };
    let Some(reservation) = store.reservation_of_room(&room).await? else { return Ok(()) };
    // A leave by another is an unban only after a ban; else it is a kick.
    if leave && membership_before(store, &reservation, fact, was).await? != Some(Membership::Ban) {
        return Ok(());
    }
    let event_id = Some(ruma::EventId::parse(&fact.event_id).map_err(|e| StoreError::Corrupt(e.to_string()))?);
    let web = store.web_user_by_id(&fact.user_id).await?.filter(|web| web.reservation == reservation);
    let member = ModeratedMember::user(fact.user_id.clone(), web.map(|web| web.viewer));
    let action =
        if ban { ModerationAction::Ban { member, event_id } } else { ModerationAction::Unban { member, event_id } };
    let action = NewAction {
        reservation,
        action,
        actor: Actor::Member(sender),
        reason: ActionReason::lossy(fact.reason.as_deref().unwrap_or_default()),
        at: now,
    };
    if store.record_action(&action).await? {
        tracing::info!(reservation_id = %action.reservation, action = action.action.kind().as_str(), "a moderator's ban in Matrix recorded");
    }
    Ok(())
}
