//! `!claim CODE` in a direct chat with the bot (contract §7). Anyone may open one: a fan
//! with only an email address and a fresh Matrix account is who this is for. So the bot
//! answers strangers here, and nothing else but `!foyer help`.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, UserId, api::client::membership::leave_room};

use super::{Answer, Services};
use crate::{
    matrix::{MatrixClient, MatrixError},
    model::{BoundHow, ClaimCode, ClaimCodeError, ClaimOutcome, ReservationId, naming},
    schedule,
    store::StoreError,
};

/// Wrong codes a user may send in an hour; the next is not even looked at.
const WRONG_PER_USER: usize = 5;
/// Wrong codes from all the users of one server in an hour: someone registering
/// accounts to guess on is stopped at their server.
const WRONG_PER_SERVER: usize = 50;
const WINDOW: Duration = Duration::from_secs(3600);

/// Wrong codes by user and by server, over the last hour. In memory: with several
/// instances each counts its own, which still bounds guessing (70-bit codes make it
/// hopeless anyway); the throttle is for a clear answer, not the codes' safety.
#[derive(Default)]
pub struct Throttle {
    wrong: Mutex<Wrong>,
}

#[derive(Default)]
struct Wrong {
    by_user: HashMap<OwnedUserId, VecDeque<Instant>>,
    by_server: HashMap<OwnedServerName, VecDeque<Instant>>,
}

fn recent(times: &mut VecDeque<Instant>, now: Instant) -> usize {
    while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
        times.pop_front();
    }
    times.len()
}

impl Throttle {
    /// `Err(wait)` when `user` (or their server) sent too many wrong codes of late.
    fn check(&self, user: &UserId, now: Instant) -> Result<(), Duration> {
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        let Wrong { by_user, by_server } = &mut *wrong;
        for (times, limit) in
            [(by_user.get_mut(user), WRONG_PER_USER), (by_server.get_mut(user.server_name()), WRONG_PER_SERVER)]
        {
            if let Some(times) = times
                && recent(times, now) >= limit
            {
                let oldest = times.front().copied().unwrap_or(now);
                return Err(WINDOW.saturating_sub(now.duration_since(oldest)));
            }
        }
        Ok(())
    }

    fn wrong(&self, user: &UserId, now: Instant) {
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        wrong.by_user.entry(user.to_owned()).or_default().push_back(now);
        wrong.by_server.entry(user.server_name().to_owned()).or_default().push_back(now);
        // Forget users who stopped long ago, so the map does not grow for ever.
        if wrong.by_user.len() > 10_000 {
            wrong.by_user.retain(|_, times| recent(times, now) > 0);
            wrong.by_server.retain(|_, times| recent(times, now) > 0);
        }
    }
}

/// A stranger's direct chat unused this long is left: it served its claim. Tests set
/// `FOYER_DIRECT_CHAT_IDLE_SECS` to watch it happen.
fn idle_after() -> Duration {
    let secs = std::env::var("FOYER_DIRECT_CHAT_IDLE_SECS").ok().and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(24 * 3600))
}

/// Leaves the direct chats strangers opened that have been idle for a day. A chat the
/// homeserver cannot leave now stays for the next round.
pub async fn leave_idle(services: &Services, client: &MatrixClient) -> Result<(), StoreError> {
    let before = Utc::now() - chrono::Duration::from_std(idle_after()).unwrap_or(chrono::Duration::days(1));
    for room in services.store.idle_direct_chats(before, 32).await? {
        let Ok(room_id) = OwnedRoomId::try_from(room.as_str()) else {
            services.store.forget_direct_chat(&room).await?;
            continue;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        match client.send(leave_room::v3::Request::new(room_id.clone()), None, deadline).await {
            Ok(_) | Err(MatrixError::Api { status: 403 | 404, .. }) => {
                tracing::info!(room_id = %room_id, "left an idle direct chat");
                services.store.forget_direct_chat(&room).await?;
            }
            Err(e) => {
                tracing::warn!(room_id = %room_id, error = %e, "cannot leave an idle direct chat now");
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The claim line, `!claim ...`, read from a message: `None` when the message is not
/// one.
pub fn parse(body: &str) -> Option<Result<ClaimCode, ClaimCodeError>> {
    let mut words = body.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("!claim") {
        return None;
    }
    let rest: Vec<&str> = words.collect();
    Some(ClaimCode::parse(&rest.concat()))
}

/// What `!foyer help` says to someone who is not an admin.
pub fn help() -> Answer {
    Answer::plain(
        "Hello! I'm Foyer, the bot that opens the chat rooms of live shows. \
        If you have a ticket, send `!claim` followed by your claim code \
        (it looks like `ABCDE-FGHJK-MNPQR`) and I'll invite you to the show's room.",
    )
}

/// Claims the ticket `code` names for `sender` and says what happened, in words.
pub async fn claim(
    services: &Services,
    sender: &UserId,
    code: Result<ClaimCode, ClaimCodeError>,
    now: DateTime<Utc>,
) -> Result<Answer, StoreError> {
    let clock = Instant::now();
    if let Err(wait) = services.claims.check(sender, clock) {
        metrics::counter!("foyer_claims_total", "how" => "direct_message", "result" => "throttled").increment(1);
        let minutes = wait.as_secs().div_ceil(60).max(1);
        return Ok(Answer::plain(format!(
            "That's a lot of codes that didn't work. Please wait {minutes} minutes before trying again, \
            and check the code in your ticket's email."
        )));
    }
    let code = match code {
        Ok(code) => code,
        Err(ClaimCodeError::Typo) => {
            metrics::counter!("foyer_claims_total", "how" => "direct_message", "result" => "typo").increment(1);
            return Ok(Answer::plain(
                "That code has a typo: one of its letters or digits is wrong, or two are swapped. \
                Please copy it again from your ticket.",
            ));
        }
        Err(ClaimCodeError::Malformed) => {
            return Ok(Answer::plain("Send `!claim` followed by your claim code, like `!claim ABCDE-FGHJK-MNPQR`."));
        }
    };
    let outcome = services.store.claim_ticket(&code.hash(), sender, BoundHow::DirectMessage, None, now).await?;
    let label = outcome.label();
    metrics::counter!("foyer_claims_total", "how" => "direct_message", "result" => label).increment(1);
    tracing::info!(user_id = %sender, result = label, "claim by direct message");
    let (reservation_id, fresh) = match outcome {
        ClaimOutcome::Claimed { reservation_id, .. } => (reservation_id, true),
        ClaimOutcome::AlreadyYours { reservation_id, .. } => (reservation_id, false),
        ClaimOutcome::TakenByOther => {
            return Ok(Answer::plain(
                "This ticket has already been claimed by someone else, who keeps it. \
                If it is yours, please contact the organiser of the show.",
            ));
        }
        ClaimOutcome::Unusable => {
            services.claims.wrong(sender, clock);
            return Ok(Answer::plain(
                "Sorry, that code doesn't work: no ticket that can still be claimed has it. \
                Please check the code in your ticket's email.",
            ));
        }
    };
    if fresh {
        services.wake.notify_one();
    }
    claimed(services, &reservation_id, fresh, now).await
}

/// "Your ticket for Friday Night Jazz is yours", with when the room opens or its link.
async fn claimed(
    services: &Services,
    reservation_id: &str,
    fresh: bool,
    now: DateTime<Utc>,
) -> Result<Answer, StoreError> {
    let done = if fresh { "Done! Your ticket" } else { "Your ticket is already yours:" };
    let record = match ReservationId::parse(reservation_id) {
        Ok(id) => services.store.reservation(&id).await?,
        Err(_) => None,
    };
    let Some(record) = record else {
        // Tickets may come before their show's details.
        return Ok(Answer::plain(format!("{done} is claimed. I'll invite you when the show's room opens.")));
    };
    let r = &record.reservation;
    let (times, status) = schedule::at(&record, &services.config.rooms, now);
    let alias = services.config.room_alias(&r.id);
    let link = naming::matrix_to(&alias);
    let when = match status.phase {
        schedule::Phase::Scheduled => format!(
            "The room opens {} ({}); I'll invite you then.",
            schedule::relative(now, times.opens_at),
            schedule::human_time(times.opens_at)
        ),
        schedule::Phase::Open | schedule::Phase::Live | schedule::Phase::Ended => {
            format!("The room is open: look for my invite, or go to {link}")
        }
        schedule::Phase::Archived | schedule::Phase::Cancelled => "The room is closed now.".to_owned(),
    };
    let what = if fresh {
        format!("{done} for “{}” is claimed.", r.title.as_str())
    } else {
        format!("{done} “{}”.", r.title.as_str())
    };
    Ok(Answer::plain(format!(
        "{what} It starts {} ({}). {when}",
        schedule::relative(now, r.starts_at),
        schedule::human_time(r.starts_at)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::user;

    #[test]
    fn five_wrong_codes_an_hour_per_user_then_a_wait() {
        let throttle = Throttle::default();
        let (alice, bob) = (user("alice"), user("bob"));
        let start = Instant::now();
        for i in 0..WRONG_PER_USER {
            assert!(throttle.check(&alice, start).is_ok(), "attempt {i}");
            throttle.wrong(&alice, start);
        }
        let wait = throttle.check(&alice, start + Duration::from_secs(60)).unwrap_err();
        assert_eq!(wait, WINDOW - Duration::from_secs(60));
        assert!(throttle.check(&bob, start).is_ok(), "another user of the server still may");
        assert!(throttle.check(&alice, start + WINDOW).is_ok(), "an hour later");
    }

    #[test]
    fn a_server_whose_users_guess_is_stopped() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for i in 0..WRONG_PER_SERVER {
            throttle.wrong(&user(&format!("guesser{i}")), now);
        }
        assert!(throttle.check(&user("fresh"), now).is_err());
        let elsewhere = OwnedUserId::try_from("@fan:elsewhere.org").unwrap();
        assert!(throttle.check(&elsewhere, now).is_ok());
    }

    #[test]
    fn the_claim_line_is_read_however_the_code_is_typed() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("!claim"), Some(Err(ClaimCodeError::Malformed)));
        assert_eq!(parse("!claimx ABC"), None);
        let key = crate::model::ClaimKey::from_secret(b"k");
        let id = ReservationId::parse("jazz").unwrap();
        let code = ClaimCode::derive(&key, &id, &crate::model::ExternalId::parse("t").unwrap());
        let spaced = code.to_string().replace('-', " ").to_lowercase();
        assert_eq!(parse(&format!("!CLAIM {spaced}")), Some(Ok(code.clone())));
        assert_eq!(parse(&format!("  !claim   {code}  ")), Some(Ok(code)));
    }
}
