//! Calendars (docs/calendar.md): what a feed lists of a reservation ([`CalendarEntry`]),
//! which reservations a feed lists ([`FeedWindow`]), and the signed token of a holder's
//! own feed ([`FeedKey`], [`HolderFeedToken`]).

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use ruma::{OwnedUserId, UserId};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Description, ReservationId, StreamUrl, Title};

/// One reservation as a calendar shows it: one `VEVENT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarEntry {
    pub id: ReservationId,
    pub title: Title,
    pub description: Option<Description>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub stream_url: Option<StreamUrl>,
    /// How many times the platform moved its start or end (`SEQUENCE`).
    pub reschedules: u32,
    /// When Foyer last recorded something the event shows: the latest description, or
    /// the cancellation if later (`DTSTAMP`).
    pub recorded_at: DateTime<Utc>,
    pub cancelled: bool,
}

/// Which reservations a feed lists: those that ended at most [`FeedWindow::PAST_DAYS`]
/// days ago or end later, the earliest first, at most [`FeedWindow::MAX_EVENTS`]; a
/// channel with more upcoming shows than that lists its nearest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedWindow {
    pub ends_from: DateTime<Utc>,
    pub limit: u32,
}

impl FeedWindow {
    pub const PAST_DAYS: i64 = 90;
    pub const MAX_EVENTS: u32 = 500;

    pub fn at(now: DateTime<Utc>) -> Self {
        Self { ends_from: now - Duration::days(Self::PAST_DAYS), limit: Self::MAX_EVENTS }
    }
}

/// The key holders' feed tokens are signed with, from `calendar.feed_key`: a new key
/// makes every token made under the old one fail, so rotating it revokes every URL.
#[derive(Clone)]
pub struct FeedKey([u8; 32]);

impl FeedKey {
    /// The key from `calendar.feed_key`; the label keeps it apart from any other use of
    /// that secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"foyer calendar feeds v1");
        Self(mac.finalize().into_bytes().into())
    }

    fn mac(&self, user: &UserId) -> [u8; MAC_BYTES] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"holder feed\0");
        mac.update(user.as_str().as_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        full[..MAC_BYTES].try_into().expect("a SHA-256 MAC has 32 bytes")
    }
}

impl std::fmt::Debug for FeedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedKey([redacted])")
    }
}

/// 128 bits of MAC: enough that a token cannot be guessed, short enough for a URL.
const MAC_BYTES: usize = 16;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A holder's feed token: `<user ID, base64url>.<its MAC under the feed key, base64url>`.
/// It names the holder and nothing else (no email, no ticket), is the same on every
/// instance and across restarts, and stops working when the key changes. Whoever has
/// the URL can read the feed, as with any calendar subscription link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderFeedToken(String);

/// Why a token is refused; every case answers the same 404, so the reason is for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedTokenError {
    #[error("the token is not <user>.<mac> in base64url")]
    Malformed,
    #[error("the token's user is not a Matrix user ID")]
    NotAUser,
    #[error("the token was not signed with the current feed key")]
    BadMac,
}

impl HolderFeedToken {
    /// `user`'s token under `key`.
    pub fn new(key: &FeedKey, user: &UserId) -> Self {
        Self(format!("{}.{}", B64.encode(user.as_str()), B64.encode(key.mac(user))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user a token was made for under `key`; the MAC compared in constant time.
    pub fn verify(key: &FeedKey, token: &str) -> Result<OwnedUserId, FeedTokenError> {
        let (user, mac) = token.split_once('.').ok_or(FeedTokenError::Malformed)?;
        // A Matrix user ID has at most 255 bytes: nothing longer is decoded.
        if user.len() > 340 {
            return Err(FeedTokenError::Malformed);
        }
        let user = B64.decode(user).map_err(|_| FeedTokenError::Malformed)?;
        let mac = B64.decode(mac).map_err(|_| FeedTokenError::Malformed)?;
        let user = String::from_utf8(user).map_err(|_| FeedTokenError::NotAUser)?;
        let user = UserId::parse(user).map_err(|_| FeedTokenError::NotAUser)?;
        if bool::from(key.mac(&user).as_slice().ct_eq(&mac)) { Ok(user) } else { Err(FeedTokenError::BadMac) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> OwnedUserId {
        UserId::parse("@alice:example.org").unwrap()
    }

    #[test]
    fn a_token_names_its_user_under_its_key_only() {
        let key = FeedKey::from_secret(b"first key of at least thirty-two chars");
        let token = HolderFeedToken::new(&key, &alice());
        assert_eq!(HolderFeedToken::verify(&key, token.as_str()), Ok(alice()));
        assert_eq!(token, HolderFeedToken::new(&key, &alice()), "the same on every call");
        let rotated = FeedKey::from_secret(b"second key of at least thirty-two chars");
        assert_eq!(HolderFeedToken::verify(&rotated, token.as_str()), Err(FeedTokenError::BadMac));
        // Only URL-safe characters, nothing to escape in a path segment.
        assert!(token.as_str().chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{token:?}");
    }

    #[test]
    fn a_token_for_another_user_or_altered_fails() {
        let key = FeedKey::from_secret(b"first key of at least thirty-two chars");
        let token = HolderFeedToken::new(&key, &alice());
        let (_, mac) = token.as_str().split_once('.').unwrap();
        let bob = B64.encode("@bob:example.org");
        assert_eq!(HolderFeedToken::verify(&key, &format!("{bob}.{mac}")), Err(FeedTokenError::BadMac));
        let short = &token.as_str()[..token.as_str().len() - 2];
        assert_eq!(HolderFeedToken::verify(&key, short), Err(FeedTokenError::BadMac));
        assert_eq!(HolderFeedToken::verify(&key, "no-dot"), Err(FeedTokenError::Malformed));
        assert_eq!(HolderFeedToken::verify(&key, "!!.!!"), Err(FeedTokenError::Malformed));
        let not_a_user = format!("{}.{mac}", B64.encode("alice"));
        assert_eq!(HolderFeedToken::verify(&key, &not_a_user), Err(FeedTokenError::NotAUser));
    }

    #[test]
    fn the_window_is_ninety_days_back_and_bounded() {
        let now = Utc::now();
        let window = FeedWindow::at(now);
        assert_eq!(now - window.ends_from, Duration::days(90));
        assert_eq!(window.limit, 500);
    }
}
