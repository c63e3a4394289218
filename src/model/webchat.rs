//! The chat beside the player (docs/web-chat.md) as the store keeps it:
//! who a viewer is ([`ViewerKey`]), their sessions ([`WebSession`]), the room's log that
//! readers are served from ([`LoggedEntry`]), and the Matrix users Foyer registers for
//! web fans ([`WebUser`]). Emails and claim codes are never part of any of them.

use std::fmt;

use chrono::{DateTime, Utc};
use ruma::{OwnedEventId, OwnedUserId};
use sha2::{Digest as _, Sha256};

use super::{DisplayName, ReservationId, TicketId};

/// The longest platform viewer id (`sub`), in Unicode characters.
pub const MAX_VIEWER_SUB_CHARS: usize = 255;

/// The largest log entry's payload, in bytes: a Matrix event's own cap (64 KiB).
pub const MAX_LOG_PAYLOAD_BYTES: usize = 64 * 1024;

/// A free show's viewer, by the platform's own id (a viewer token's `sub`): 1 to
/// [`MAX_VIEWER_SUB_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewerSub(String);

impl ViewerSub {
    pub fn parse(value: &str) -> Result<Self, String> {
        let n = value.chars().count();
        if n == 0 || n > MAX_VIEWER_SUB_CHARS || value.chars().any(char::is_control) {
            return Err(format!("must be 1 to {MAX_VIEWER_SUB_CHARS} characters without control characters"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whom a web session, a web user or a ban is for, within one reservation: a ticket, or
/// for a free show the platform's viewer id. Stored as a kind and a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ViewerKey {
    Ticket(TicketId),
    Platform(ViewerSub),
}

impl ViewerKey {
    /// The stored kind: `ticket` or `platform`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ticket(_) => "ticket",
            Self::Platform(_) => "platform",
        }
    }

    /// The stored value: the ticket id or the viewer id.
    pub fn value(&self) -> &str {
        match self {
            Self::Ticket(id) => id.as_str(),
            Self::Platform(sub) => sub.as_str(),
        }
    }

    /// A key read back from its kind and value.
    pub fn parse(kind: &str, value: &str) -> Result<Self, String> {
        match kind {
            "ticket" => TicketId::parse(value).map(Self::Ticket),
            "platform" => ViewerSub::parse(value).map(Self::Platform),
            other => Err(format!("unknown viewer kind {other:?}")),
        }
    }
}

/// Defines a closed set of names, each stored as its text (also the moderation record's).
macro_rules! named {
    ($(#[$attr:meta])* $name:ident { $($(#[$vattr:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vattr])* $variant),+
        }

        impl $name {
            /// Every name, in the order declared.
            #[allow(dead_code)]
            pub const ALL: &[$name] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(concat!("unknown ", stringify!($name), " {:?}"), other)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(super) use named;

named! {
    /// A sender's role as the page shows it beside their name; a web session's is
    /// [`WebRole::Web`].
    WebRole { Host = "host", Moderator = "moderator", Fan = "fan", Web = "web", Bot = "bot" }
}

named! {
    /// How a web session got in: a viewer token from the platform, or a claim code typed
    /// into the page.
    SessionSource { Token = "token", ClaimCode = "claim_code" }
}

named! {
    /// Why a web session was ended before it expired: its ticket was revoked or moved to
    /// another holder, or its viewer was banned.
    EndReason { Revoked = "revoked", Moved = "moved", Banned = "banned" }
}

named! {
    /// What a room log entry is; its payload is the caller's, per kind.
    LogKind {
        Message = "message",
        Edit = "edit",
        Redaction = "redaction",
        Notice = "notice",
        Phase = "phase",
        Member = "member",
    }
}

named! {
    /// How a web user left the room: by leaving, or kicked (then Foyer does not join it
    /// again on its own).
    Removal { Left = "left", Kicked = "kicked" }
}

/// A web session's id as stored: the SHA-256 of its secret, 64 lowercase hex digits.
/// The store never sees the secret. Not a secret itself, but an id: a session is found
/// by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionHash(String);

impl SessionHash {
    /// The hash of a session's secret (the bearer the browser holds).
    pub fn of_secret(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn parse(hex: &str) -> Result<Self, String> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(hex.to_owned()))
        } else {
            Err("must be 64 lowercase hex digits".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A web session to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebSession {
    pub hash: SessionHash,
    pub reservation: ReservationId,
    pub viewer: ViewerKey,
    /// The ticket's holder generation when the session was made (0 for a platform
    /// viewer): a session of an earlier holder is not the current holder's.
    pub holder_generation: i64,
    pub name: DisplayName,
    pub role: WebRole,
    pub source: SessionSource,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Where a web session stands at the time it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Live,
    /// Its `expires_at` has passed.
    Expired,
    /// Ended before it expired, and why.
    Ended {
        at: DateTime<Utc>,
        reason: EndReason,
    },
}

/// A web session as stored, with its state when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// As it was recorded.
    pub session: NewWebSession,
    pub state: SessionState,
}

/// A log entry's payload: JSON text the caller builds (what the stream sends for the
/// entry), at most [`MAX_LOG_PAYLOAD_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPayload(String);

impl LogPayload {
    pub fn new(value: &serde_json::Value) -> Result<Self, String> {
        Self::parse(&value.to_string())
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_LOG_PAYLOAD_BYTES {
            return Err(format!("must be at most {MAX_LOG_PAYLOAD_BYTES} bytes"));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| format!("must be JSON: {e}"))?;
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An entry to append to a reservation's room log. With an `event_id`, the entry is
/// appended once however often the homeserver delivers the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogEntry {
    /// The Matrix event it comes from; `None` for Foyer's own (a phase change).
    pub event_id: Option<OwnedEventId>,
    pub kind: LogKind,
    pub payload: LogPayload,
    /// The event's `origin_server_ts` (or, for Foyer's own, when it happened).
    pub origin_ts: DateTime<Utc>,
}

/// An entry of a reservation's room log, with its place in it: `seq` counts from 1 in
/// each reservation, without gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEntry {
    pub seq: u64,
    pub event_id: Option<OwnedEventId>,
    pub kind: LogKind,
    pub payload: LogPayload,
    pub origin_ts: DateTime<Utc>,
    pub logged_at: DateTime<Utc>,
}

/// A web fan's Matrix user to record, once they first write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebUser {
    pub reservation: ReservationId,
    pub viewer: ViewerKey,
    /// The ticket's holder generation it is for (0 for a platform viewer): each holder of
    /// a ticket that moved has their own web user.
    pub holder_generation: i64,
    pub user_id: OwnedUserId,
    pub display_name: DisplayName,
    pub registered_at: DateTime<Utc>,
}

/// A web fan's Matrix user, in one reservation's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebUser {
    pub reservation: ReservationId,
    pub viewer: ViewerKey,
    pub holder_generation: i64,
    pub user_id: OwnedUserId,
    /// `None` once cleared at the archive.
    pub display_name: Option<DisplayName>,
    pub registered_at: DateTime<Utc>,
    /// When it last joined the room, if it did.
    pub joined_at: Option<DateTime<Utc>>,
    /// When it last left or was kicked, and how, if it has not joined since.
    pub removed: Option<(Removal, DateTime<Utc>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_keys_read_back_from_kind_and_value() {
        let keys = [
            ViewerKey::Ticket(TicketId::parse("t-1").unwrap()),
            ViewerKey::Platform(ViewerSub::parse("viewer-981").unwrap()),
        ];
        for key in keys {
            assert_eq!(ViewerKey::parse(key.kind(), key.value()).unwrap(), key);
        }
        assert!(ViewerKey::parse("email", "a@b.c").is_err());
        assert!(ViewerKey::parse("platform", "").is_err());
        assert!(ViewerSub::parse(&"é".repeat(255)).is_ok() && ViewerSub::parse(&"é".repeat(256)).is_err());
        assert!(ViewerSub::parse("a\nb").is_err());
    }

    #[test]
    fn names_read_back_and_unknown_ones_are_refused() {
        for role in [WebRole::Host, WebRole::Moderator, WebRole::Fan, WebRole::Web, WebRole::Bot] {
            assert_eq!(WebRole::parse(role.as_str()), Ok(role));
        }
        for kind in [LogKind::Message, LogKind::Edit, LogKind::Redaction, LogKind::Notice, LogKind::Phase] {
            assert_eq!(LogKind::parse(&kind.to_string()), Ok(kind));
        }
        assert_eq!(SessionSource::parse("claim_code"), Ok(SessionSource::ClaimCode));
        assert_eq!(EndReason::parse("moved"), Ok(EndReason::Moved));
        assert_eq!(Removal::parse("kicked"), Ok(Removal::Kicked));
        assert!(WebRole::parse("admin").unwrap_err().contains("WebRole"));
        assert!(LogKind::parse("Message").is_err());
    }

    #[test]
    fn a_session_hash_is_the_secrets_sha256_in_hex() {
        let hash = SessionHash::of_secret("abc");
        assert_eq!(hash.as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(SessionHash::parse(hash.as_str()), Ok(hash));
        assert!(SessionHash::parse(&"A".repeat(64)).is_err() && SessionHash::parse("ab").is_err());
    }

    #[test]
    fn a_payload_is_bounded_json() {
        let payload = LogPayload::new(&serde_json::json!({"body": "hi"})).unwrap();
        assert_eq!(payload.as_str(), r#"{"body":"hi"}"#);
        assert!(LogPayload::parse("{").is_err());
        let big = format!("\"{}\"", "x".repeat(MAX_LOG_PAYLOAD_BYTES));
        assert!(LogPayload::parse(&big).is_err());
    }
}
