//! Matrix members' messages against their show's rules, as a homeserver transaction
//! brings them and before it is answered: a message that breaks one is recorded as a
//! breach (its strike, its redaction queued, maybe a timeout) in the store, so that a
//! crash loses none and the homeserver's retry adds none.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ruma::{
    OwnedRoomId, OwnedUserId,
    events::room::message::{FormattedBody, MessageType, Relation},
};

use crate::{
    config::Config,
    events::{InboundEvent, MessageEvent},
    model::{ActionReason, ChatRules, ModeratedMember, Recent, ReservationId, naming, post_digest},
    store::{Breach, Store, StoreError},
    words,
};

/// What screening a transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Screened {
    /// Messages that broke a rule, recorded now: their redactions are queued.
    pub breaches: usize,
    /// Of those, the ones that timed their sender out: the lifecycle has work.
    pub timeouts: usize,
}

/// A reservation's room as screening needs it: the rules in force, and who is exempt.
struct Show {
    reservation: ReservationId,
    rules: ChatRules,
    staff: Vec<OwnedUserId>,
}

/// Checks every message in `events` from a Matrix member of a reservation's room against
/// the show's rules. Exempt: the bot, web fans' users (their posts were checked at the
/// gateway, docs/web-chat.md), hosts and moderators. Slow mode and duplicates are
/// judged by what the member posted before, so each message that keeps the rules is
/// recorded as a post; an edit is judged by its new content alone.
pub async fn screen(
    store: &dyn Store, config: &Config, events: &[InboundEvent], now: DateTime<Utc>,
) -> Result<Screened, StoreError> {
    let bot = config.bot_user_id();
    let web = config.webchat.as_ref().map(|w| (w.puppet_prefix.as_str(), &config.homeserver.server_name));
    let mut shows: HashMap<&OwnedRoomId, Option<Show>> = HashMap::new();
    let mut screened = Screened::default();
    for event in events {
        let InboundEvent::Message(message) = event else { continue };
        let sender = &message.sender;
        if *sender == bot || web.is_some_and(|(prefix, server)| naming::is_web_user(prefix, server, sender)) {
            continue;
        }
        let show = match shows.get(&message.room_id) {
            Some(show) => show,
            None => {
                let show = show_of(store, config, message).await?;
                shows.entry(&message.room_id).or_insert(show)
            }
        };
        let Some(show) = show.as_ref().filter(|show| !show.staff.contains(sender)) else { continue };
        if let Some(breach) = judge(store, show, message, now).await? {
            let outcome = store.record_breach(&breach).await?;
            if outcome.new {
                screened.breaches += 1;
                tracing::info!(reservation_id = %show.reservation, event_id = %message.event_id, rule = breach.rule.as_str(), "a member's message broke a rule; it will be redacted");
            }
            if outcome.timed_out_until.is_some() {
                screened.timeouts += 1;
                tracing::info!(reservation_id = %show.reservation, "a member was timed out after their strikes");
            }
        }
    }
    Ok(screened)
}

/// The show whose room this is, if it is one and is not archived; its rules as they
/// stand (a show whose stored rules do not read is not screened, and says so).
async fn show_of(store: &dyn Store, config: &Config, message: &MessageEvent) -> Result<Option<Show>, StoreError> {
    let Some(record) = store.reservation_in_room(&message.room_id).await?.filter(|r| !r.archived) else {
        return Ok(None);
    };
    let reservation = record.reservation.id.clone();
    match record.reservation.rules(&config.rooms.rules) {
        Ok(rules) => Ok(Some(Show { reservation, rules, staff: record.reservation.staff() })),
        Err(e) => {
            tracing::error!(reservation_id = %reservation, error = %e, "a show's stored rules cannot be read; its messages are not screened");
            Ok(None)
        }
    }
}

/// The breach `message` is, if it breaks a rule; a message that keeps them is recorded
/// as the member's post when slow mode or duplicates will look back at it.
async fn judge(
    store: &dyn Store, show: &Show, message: &MessageEvent, now: DateTime<Utc>,
) -> Result<Option<Breach>, StoreError> {
    let rules = &show.rules;
    let member = ModeratedMember::user(message.sender.clone(), None);
    let sender = member.sender_key();
    let (texts, edit) = match &message.content.relates_to {
        Some(Relation::Replacement(replacement)) => (texts(&replacement.new_content.msgtype), true),
        _ => (texts(&message.content.msgtype), false),
    };
    let memory = chrono::Duration::from_std(rules.memory()).unwrap_or(chrono::Duration::zero());
    let looks_back = !edit && !memory.is_zero();
    let post = message.event_id.as_str();
    // A message the homeserver sends again was judged the first time.
    if looks_back && store.post_known(&show.reservation, &sender, post).await? {
        return Ok(None);
    }
    let recent = if looks_back {
        let posts = store.posts_since(&show.reservation, &sender, now - memory).await?;
        let ago = |at: DateTime<Utc>| (now - at).to_std().unwrap_or_default();
        Recent {
            last_post_ago: posts.first().map(|(at, _)| ago(*at)),
            digests: posts.iter().filter(|(at, _)| ago(*at) < rules.duplicate_window).map(|(_, d)| d.clone()).collect(),
        }
    } else {
        Recent::default()
    };
    match rules.check(&texts, &recent) {
        Ok(()) => {
            if looks_back {
                let digest = post_digest(texts.first().copied().unwrap_or_default());
                store.record_post(&show.reservation, &sender, post, now, &digest).await?;
            }
            Ok(None)
        }
        Err(broken) => Ok(Some(Breach {
            reservation: show.reservation.clone(),
            member,
            rule: broken.rule,
            reason: ActionReason::lossy(&words::room::broke_rule(broken.rule, &broken.reason)),
            message: Some((message.room_id.clone(), message.event_id.clone())),
            strikes: rules.strikes,
            at: now,
        })),
    }
}

/// What the rules read of a message: its body and formatted body, or a file's caption
/// (a file's name is not its sender's words).
fn texts(msgtype: &MessageType) -> Vec<&str> {
    match msgtype {
        MessageType::Text(m) => both(Some(&m.body), m.formatted.as_ref()),
        MessageType::Notice(m) => both(Some(&m.body), m.formatted.as_ref()),
        MessageType::Emote(m) => both(Some(&m.body), m.formatted.as_ref()),
        MessageType::Image(m) => both(m.caption(), m.formatted_caption()),
        MessageType::File(m) => both(m.caption(), m.formatted_caption()),
        MessageType::Audio(m) => both(m.caption(), m.formatted_caption()),
        MessageType::Video(m) => both(m.caption(), m.formatted_caption()),
        other => vec![other.body()],
    }
}

/// A plain text and its HTML, those there are, the plain one first.
fn both<'a>(plain: Option<&'a str>, html: Option<&'a FormattedBody>) -> Vec<&'a str> {
    plain.into_iter().chain(html.map(|f| f.body.as_str())).collect()
}
