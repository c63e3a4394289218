//! `!claim CODE` in a direct chat with the bot (docs/fans-without-matrix-id.md). Anyone may open one: a fan
//! with only an email address and a fresh Matrix account is who this is for. So the bot
//! answers strangers here, and nothing else but `!foyer help`.

use std::{
    borrow::Borrow,
    collections::{HashMap, VecDeque},
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use ruma::{OwnedUserId, UserId, api::client::membership::leave_room};
use serde_json::{Value, json};

use super::{Answer, Services};
use crate::{
    matrix::{MatrixClient, MatrixError},
    model::{BoundHow, ClaimCode, ClaimCodeError, ClaimOutcome, ReservationId},
    store::{MembershipFact, Store, StoreError},
    words,
};

/// Wrong codes a user may send in an hour; the next is not even looked at.
const WRONG_PER_USER: usize = 5;
/// Wrong codes from everyone in an hour beyond which a user who has sent a wrong code
/// of late waits too: many accounts guessing a few codes each are slowed down, while a
/// user who has not failed is never held back by anyone else's failures (docs/fans-without-matrix-id.md).
/// Fans usually share the homeserver Foyer serves, so nothing is counted per server.
const WRONG_FROM_ALL: usize = 1_000;
/// Users whose wrong codes are remembered at most (a few hundred bytes each): the
/// throttle's memory stays bounded however many accounts guess. When full, the user
/// whose last wrong code is the oldest is forgotten first.
const TRACKED_USERS: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(3600);

/// Wrong claim codes over the last hour, by user and from all users together; shared by
/// `!claim` and knocks. The web chat's claim form keeps one of its own keyed by the
/// client's address (`K`), with the same rules. In memory: with several instances each
/// counts its own, which still bounds guessing (70-bit codes make it hopeless anyway);
/// the throttle is for a clear answer and bounded work, not the codes' safety.
pub struct Throttle<K = OwnedUserId> {
    wrong: Mutex<Wrong<K>>,
}

impl<K> Default for Throttle<K> {
    fn default() -> Self {
        Self { wrong: Mutex::new(Wrong { by_user: HashMap::new(), all: VecDeque::new() }) }
    }
}

struct Wrong<K> {
    /// Each user's wrong codes in the window, oldest first, at most [`WRONG_PER_USER`].
    by_user: HashMap<K, VecDeque<Instant>>,
    /// The latest wrong codes from anyone, oldest first, at most [`WRONG_FROM_ALL`]:
    /// enough to tell whether that many came in the window.
    all: VecDeque<Instant>,
}

/// Why a claim is not looked at now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// The user sent [`WRONG_PER_USER`] wrong codes in the window.
    Yours { wait: Duration },
    /// The user sent a wrong code of late while many users do.
    Everyone { wait: Duration },
}

impl Throttled {
    pub fn wait(self) -> Duration {
        match self {
            Self::Yours { wait } | Self::Everyone { wait } => wait,
        }
    }
}

fn recent(times: &mut VecDeque<Instant>, now: Instant) -> usize {
    while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
        times.pop_front();
    }
    times.len()
}

/// How long until `at` leaves the window.
fn until_out(at: Instant, now: Instant) -> Duration {
    WINDOW.saturating_sub(now.duration_since(at))
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// `Err` when `user` sent too many wrong codes of late, or sent one while everyone
    /// together sent too many. A user with no wrong code in the window always passes.
    pub fn check<Q>(&self, user: &Q, now: Instant) -> Result<(), Throttled>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        let Wrong { by_user, all } = &mut *wrong;
        let Some(mine) = by_user.get_mut(user) else { return Ok(()) };
        let (count, oldest, newest) = (recent(mine, now), mine.front().copied(), mine.back().copied());
        let (Some(oldest), Some(newest)) = (oldest, newest) else { return Ok(()) };
        if count >= WRONG_PER_USER {
            return Err(Throttled::Yours { wait: until_out(oldest, now) });
        }
        if recent(all, now) >= WRONG_FROM_ALL {
            // Until the flood ebbs, or this user's own wrong codes are out of the window.
            let ebbs = all.front().map_or(Duration::ZERO, |t| until_out(*t, now));
            return Err(Throttled::Everyone { wait: ebbs.min(until_out(newest, now)) });
        }
        Ok(())
    }

    /// Counts a code that named no ticket that can be claimed.
    pub fn wrong<Q>(&self, user: &Q, now: Instant)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        let Wrong { by_user, all } = &mut *wrong;
        all.push_back(now);
        if all.len() > WRONG_FROM_ALL {
            all.pop_front();
        }
        if !by_user.contains_key(user) && by_user.len() >= TRACKED_USERS {
            by_user.retain(|_, times| recent(times, now) > 0);
            if by_user.len() >= TRACKED_USERS {
                let stalest = by_user.iter().min_by_key(|(_, times)| times.back().copied()).map(|(u, _)| u.clone());
                if let Some(stalest) = stalest {
                    by_user.remove::<K>(&stalest);
                }
            }
        }
        let mine = by_user.entry(user.to_owned()).or_default();
        mine.push_back(now);
        if mine.len() > WRONG_PER_USER {
            mine.pop_front();
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.wrong.lock().map(|w| w.by_user.len()).unwrap_or_default()
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
    for room_id in services.store.idle_direct_chats(before, 32).await? {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        match client.send(leave_room::v3::Request::new(room_id.clone()), None, deadline).await {
            Ok(_) | Err(MatrixError::Api { status: 403 | 404, .. }) => {
                tracing::info!(room_id = %room_id, "left an idle direct chat");
                services.store.forget_direct_chat(&room_id).await?;
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

/// The hash of a well-formed claim code: what finds its ticket, and all the inbox keeps
/// of it. Only 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeHash(String);

impl CodeHash {
    pub fn of(code: &ClaimCode) -> Self {
        Self(code.hash())
    }

    fn parse(text: &str) -> Option<Self> {
        let hex = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        hex.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where the inbox keeps a claim line's parsed form, in the message's content.
const KEPT: &str = "foyer.claim";
/// What the inbox keeps of the body: never the code.
const KEPT_BODY: &str = "!claim [kept as its hash]";

/// A message's content as the admin inbox keeps it: a claim line's code replaced by its
/// hash, or by what is wrong with it, so no code rests in the database in plain text
/// (docs/fans-without-matrix-id.md). Other content is kept as it came. `None` when it is no claim line.
pub fn kept_content(content: &Value) -> Option<Value> {
    let parsed = parse(content.get("body")?.as_str()?)?;
    let kept = match parsed {
        Ok(code) => json!({"hash": CodeHash::of(&code).as_str()}),
        Err(ClaimCodeError::Typo) => json!("typo"),
        Err(ClaimCodeError::Malformed) => json!("malformed"),
    };
    Some(json!({"msgtype": "m.text", "body": KEPT_BODY, KEPT: kept}))
}

/// The claim line of a message from the inbox: what [`kept_content`] kept, or, in a
/// message kept before this was so, the line itself. `None` when it is no claim line.
pub fn from_inbox(content: &Value) -> Option<Result<CodeHash, ClaimCodeError>> {
    let body = content.get("body")?.as_str()?;
    if body == KEPT_BODY {
        let kept = content.get(KEPT)?;
        return Some(match kept.get("hash").and_then(Value::as_str).and_then(CodeHash::parse) {
            Some(hash) => Ok(hash),
            None if kept == "typo" => Err(ClaimCodeError::Typo),
            None => Err(ClaimCodeError::Malformed),
        });
    }
    parse(body).map(|parsed| parsed.map(|code| CodeHash::of(&code)))
}

/// Knock claims go through the same throttle as `!claim` (docs/fans-without-matrix-id.md). A throttled
/// user's code is not looked at, so the knock stays an ordinary one (refused unless they
/// hold a ticket); a code that names no ticket that can be claimed counts as a wrong one.
/// Run on the transaction's facts before they are stored.
pub async fn screen_knocks(
    throttle: &Throttle, store: &dyn Store, facts: &mut [MembershipFact],
) -> Result<(), StoreError> {
    for fact in facts.iter_mut() {
        let Some(hash) = &fact.knock_claim else { continue };
        let now = Instant::now();
        if let Err(throttled) = throttle.check(&fact.user_id, now) {
            metrics::counter!("foyer_claims_total", "how" => "knock", "result" => "throttled").increment(1);
            tracing::info!(
                room_id = %fact.room_id,
                user_id = %fact.user_id,
                wait_s = throttled.wait().as_secs(),
                "claim code in a knock not looked at: too many wrong codes"
            );
            fact.knock_claim = None;
        } else if store.claim_status(hash).await?.is_none() {
            throttle.wrong(&fact.user_id, now);
        }
    }
    Ok(())
}

/// What `!foyer help` says to someone who is not an admin.
pub use crate::words::claim::help;

/// Claims the ticket `code` names for `sender` and says what happened, in words.
pub async fn claim(
    services: &Services, sender: &UserId, code: Result<CodeHash, ClaimCodeError>, now: DateTime<Utc>,
) -> Result<Answer, StoreError> {
    let clock = Instant::now();
    if let Err(throttled) = services.claims.check(sender, clock) {
        metrics::counter!("foyer_claims_total", "how" => "direct_message", "result" => "throttled").increment(1);
        let minutes = throttled.wait().as_secs().div_ceil(60).max(1);
        let by_everyone = matches!(throttled, Throttled::Everyone { .. });
        return Ok(words::claim::throttled(by_everyone, minutes));
    }
    let code = match code {
        Ok(code) => code,
        Err(ClaimCodeError::Typo) => {
            metrics::counter!("foyer_claims_total", "how" => "direct_message", "result" => "typo").increment(1);
            return Ok(words::claim::typo());
        }
        Err(ClaimCodeError::Malformed) => {
            return Ok(words::claim::malformed());
        }
    };
    let outcome = services.store.claim_ticket(code.as_str(), sender, BoundHow::DirectMessage, None, now).await?;
    let label = outcome.label();
    metrics::counter!("foyer_claims_total", "how" => "direct_message", "result" => label).increment(1);
    tracing::info!(user_id = %sender, result = label, "claim by direct message");
    let (reservation_id, fresh) = match outcome {
        ClaimOutcome::Claimed { reservation_id, .. } => (reservation_id, true),
        ClaimOutcome::AlreadyYours { reservation_id, .. } => (reservation_id, false),
        ClaimOutcome::TakenByOther => {
            return Ok(words::claim::taken_by_other());
        }
        ClaimOutcome::Unusable => {
            services.claims.wrong(sender, clock);
            return Ok(words::claim::unusable());
        }
    };
    if fresh {
        services.wake.notify_one();
    }
    claimed(services, &reservation_id, fresh, now).await
}

/// The answer to a claim that worked (`fresh`) or was already the sender's: the show and
/// its room, read from the store.
async fn claimed(
    services: &Services, reservation_id: &ReservationId, fresh: bool, now: DateTime<Utc>,
) -> Result<Answer, StoreError> {
    let record = services.store.reservation(reservation_id).await?;
    Ok(words::claim::claimed(&services.config, record.as_ref(), fresh, now))
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
        let refused = throttle.check(&alice, start + Duration::from_secs(60)).unwrap_err();
        assert_eq!(refused, Throttled::Yours { wait: WINDOW - Duration::from_secs(60) });
        assert!(throttle.check(&bob, start).is_ok(), "another user of the server still may");
        assert!(throttle.check(&alice, start + WINDOW).is_ok(), "an hour later");
    }

    #[test]
    fn other_users_wrong_codes_never_hold_back_a_user_who_has_not_failed() {
        let throttle = Throttle::default();
        let now = Instant::now();
        // Far more guessers on the fans' own server than it takes to flood the count.
        for i in 0..(2 * WRONG_FROM_ALL / WRONG_PER_USER) {
            let guesser = user(&format!("guesser{i}"));
            for _ in 0..WRONG_PER_USER {
                throttle.wrong(&guesser, now);
            }
        }
        assert!(throttle.check(&user("fresh"), now).is_ok(), "a fan who never failed");
        // One who failed once waits while the flood lasts, never longer than their own
        // wrong code stays counted.
        let later = now + Duration::from_secs(600);
        throttle.wrong(&user("once"), later);
        let refused = throttle.check(&user("once"), later).unwrap_err();
        assert!(matches!(refused, Throttled::Everyone { .. }), "{refused:?}");
        assert_eq!(refused.wait(), WINDOW - Duration::from_secs(600), "until the flood's oldest leaves the window");
        assert!(throttle.check(&user("once"), now + WINDOW).is_ok(), "the flood is over");
    }

    #[test]
    fn the_throttle_remembers_a_bounded_number_of_users() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for i in 0..(TRACKED_USERS + 50) {
            throttle.wrong(&user(&format!("g{i}")), start + Duration::from_millis(i as u64));
        }
        assert_eq!(throttle.tracked(), TRACKED_USERS);
        // The stalest were forgotten first (a flood holds back only those remembered);
        // the latest are still counted.
        let now = start + WINDOW / 2;
        assert!(throttle.check(&user("g0"), now).is_ok(), "forgotten");
        let latest = user(&format!("g{}", TRACKED_USERS + 49));
        assert!(matches!(throttle.check(&latest, now), Err(Throttled::Everyone { .. })));
        for _ in 1..WRONG_PER_USER {
            throttle.wrong(&latest, now);
        }
        assert!(matches!(throttle.check(&latest, now), Err(Throttled::Yours { .. })));
    }

    #[test]
    fn the_inbox_keeps_a_claim_line_as_the_codes_hash_never_the_code() {
        let key = crate::model::ClaimKey::from_secret(b"k");
        let id = ReservationId::parse("jazz").unwrap();
        let code = ClaimCode::derive(&key, &id, &crate::model::ExternalId::parse("t").unwrap());
        let content = json!({"msgtype": "m.text", "body": format!("!claim {code}")});
        let kept = kept_content(&content).expect("a claim line");
        let text = kept.to_string();
        assert!(!text.contains(code.as_str()) && !text.contains(&code.to_string()), "{text}");
        assert_eq!(from_inbox(&kept), Some(Ok(CodeHash::of(&code))));
        assert_eq!(from_inbox(&content), Some(Ok(CodeHash::of(&code))), "kept before the inbox kept hashes");
        let mut typo = code.to_string();
        typo.replace_range(0..1, if typo.starts_with('A') { "B" } else { "A" });
        let typo = kept_content(&json!({"body": format!("!claim {typo}")})).unwrap();
        assert_eq!(from_inbox(&typo), Some(Err(ClaimCodeError::Typo)));
        let bare = kept_content(&json!({"body": "!claim"})).unwrap();
        assert_eq!(from_inbox(&bare), Some(Err(ClaimCodeError::Malformed)));
        assert_eq!(kept_content(&json!({"body": "!foyer help"})), None);
        assert_eq!(from_inbox(&json!({"body": "hello"})), None);
        let forged = json!({"body": KEPT_BODY, KEPT: {"hash": "not a hash"}});
        assert_eq!(from_inbox(&forged), Some(Err(ClaimCodeError::Malformed)));
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
