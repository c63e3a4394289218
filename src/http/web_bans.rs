//! A ban of a web fan's user in Matrix bans the viewer from the reservation's chat
//! (docs/web-chat.md, "Web fans in Matrix"): their web sessions end, and the web chat
//! refuses them a new one. An unban lifts it. Read from the membership facts of an
//! appservice transaction, before its 200, so a ban is never lost.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ruma::OwnedUserId;

use crate::{
    http::AppState,
    model::{EndReason, Membership, naming},
    store::{MembershipFact, StoreError},
};

/// Bans or unbans the viewers whose web users the facts ban or unban in their own
/// reservation's room. A ban elsewhere (a room the web user was never meant to be in)
/// changes nothing; nor does a kick, or a web user Foyer never made. To be called before
/// the facts are stored: an unban is a leave after a ban.
pub(super) async fn follow(state: &AppState, facts: &[MembershipFact], now: DateTime<Utc>) -> Result<(), StoreError> {
    let Some(webchat) = &state.config.webchat else { return Ok(()) };
    let (store, prefix, server) = (state.store.as_ref(), &webchat.puppet_prefix, &state.config.homeserver.server_name);
    // Each web user's membership as the facts before it in this transaction left it.
    let mut latest: BTreeMap<&OwnedUserId, Membership> = BTreeMap::new();
    for fact in facts {
        let user = &fact.user_id;
        let was = latest.insert(user, fact.membership);
        let unban = fact.membership == Membership::Leave && fact.sender != user.as_str();
        if !naming::is_web_user(prefix, server, user) || !(fact.membership == Membership::Ban || unban) {
            continue;
        }
        let Some(web_user) = store.web_user_by_id(user).await? else { continue };
        let (reservation, viewer) = (&web_user.reservation, &web_user.viewer);
        let lifecycle = store.lifecycle_state(reservation).await?;
        if lifecycle.room.room_id.as_ref().is_none_or(|room| room.as_str() != fact.room_id) {
            continue;
        }
        if fact.membership == Membership::Ban {
            let event_id = ruma::EventId::parse(&fact.event_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            store.ban_viewer(reservation, viewer, &event_id, now).await?;
            store.end_web_sessions(reservation, viewer, EndReason::Banned, now).await?;
            tracing::info!(reservation_id = %reservation, "a web fan was banned from the chat");
        } else {
            // A leave sent by another is an unban when the web user was banned, else a kick.
            let banned =
                was.or_else(|| lifecycle.room.members.get(user).map(|m| m.membership)) == Some(Membership::Ban);
            if banned && store.unban_viewer(reservation, viewer).await? {
                tracing::info!(reservation_id = %reservation, "a web fan's ban was lifted");
            }
        }
    }
    Ok(())
}
