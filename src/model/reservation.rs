//! Domain types: values that cannot be invalid once built. Each `parse` names the rule
//! that a bad value breaks; callers add the field path.

use std::fmt;

use super::{ChatRules, RulesError, RulesOverride, SeriesId, SeriesUpsert, Ticket};

use chrono::{DateTime, Utc};
use ruma::OwnedUserId;
use url::Url;

/// Longest span between `starts_at` and `ends_at`, and longest `chat.*` override.
pub const MAX_SPAN_SECONDS: i64 = 7 * 24 * 3600;

/// `1–128` characters of `A-Z a-z 0-9 . _ = -`: safe inside a room alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(String);

impl ReservationId {
    pub fn parse(value: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '-');
        if value.is_empty() || value.len() > 128 || !value.chars().all(ok_char) {
            return Err("must be 1 to 128 characters of A-Z a-z 0-9 . _ = -".into());
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The platform's version counter of a reservation; older revisions are stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Revision(pub u64);

/// Text with a length limit in characters, optionally required to be non-empty.
fn bounded_text(value: &str, min: usize, max: usize) -> Result<String, String> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(if min > 0 {
            format!("must be {min} to {max} characters (it has {n})")
        } else {
            format!("must be at most {max} characters (it has {n})")
        });
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("must not contain control characters".into());
    }
    Ok(value.to_owned())
}

/// An identifier chosen by the platform (ticket, channel): 1–128 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() || value.chars().count() > 128 || value.chars().any(char::is_control) {
            return Err("must be 1 to 128 characters without control characters".into());
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub type TicketId = ExternalId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(value: &str) -> Result<Self, String> {
        bounded_text(value, 1, 255).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(value: &str) -> Result<Self, String> {
        bounded_text(value, 0, 4000).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A free-text reason (cancellation), at most 1000 characters.
pub fn parse_reason(value: &str) -> Result<String, String> {
    bounded_text(value, 0, 1000)
}

/// Longest stream URL, counted on its normalised (stored) form.
pub const MAX_STREAM_URL_CHARS: usize = 2048;

/// An `http` or `https` URL with a host, in its normalised form (the `url` crate's
/// serialization: percent-encoded, so always ASCII).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamUrl(Url);

impl StreamUrl {
    /// A URL as stored: checked by [`StreamUrl::parse_incoming`] when it came in, perhaps
    /// under other rules (an `http` URL stored while `rooms.allow_http_stream_urls` was
    /// on, a longer one stored by an older Foyer), so only its shape is checked here:
    /// reading back must not fail on a row that was valid when written.
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = Url::parse(value).map_err(|e| format!("is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("must be an http:// or https:// URL".into());
        }
        Ok(Self(url))
    }

    /// A URL from a webhook. Element shows it as a room widget, which every member's
    /// client loads, so it must not leak who watches: no `$` (Element fills in template
    /// variables such as `$matrix_user_id`, also when written `%24`), no user-info
    /// (`https://legit@evil/` reads as `legit` but goes to `evil`), `https` unless
    /// `allow_http`. The length counts the form that is stored and read back.
    pub fn parse_incoming(value: &str, allow_http: bool) -> Result<Self, String> {
        let url = Url::parse(value).map_err(|e| format!("is not a URL ({e})"))?;
        let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
        if !scheme_ok || url.host_str().is_none() {
            return Err(if allow_http {
                "must be an http:// or https:// URL".into()
            } else {
                "must be an https:// URL (plain http:// only with rooms.allow_http_stream_urls: true)".into()
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry user-info (a user name or password before the host)".into());
        }
        let normalised = url.as_str();
        if normalised.contains('$') || normalised.contains("%24") {
            return Err(
                "must not contain '$' or '%24': Element fills in template variables like $matrix_user_id, which tell the stream host who watches"
                    .into(),
            );
        }
        if normalised.len() > MAX_STREAM_URL_CHARS {
            return Err(format!(
                "must be at most {MAX_STREAM_URL_CHARS} characters once normalised (percent-encoded); it has {}",
                normalised.len()
            ));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A streaming server's stream key (`ingest.stream_key`): 16–128 characters of
/// `A-Z a-z 0-9 _ -`. It is as good as the right to publish, so `Debug` and `Display`
/// never print it and only its [`StreamKeyHash`] is kept.
#[derive(Clone)]
pub struct StreamKey(String);

impl StreamKey {
    pub fn parse(value: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
        // The message never quotes the value: a near-miss key is still a secret.
        if value.len() < 16 || value.len() > 128 || !value.chars().all(ok_char) {
            return Err("must be 16 to 128 characters of A-Z a-z 0-9 _ -".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// SHA-256, unsalted: keys are long random strings chosen by the platform, so a
    /// fast hash is enough, and it must find the reservation from the key alone.
    pub fn hash(&self) -> StreamKeyHash {
        use fmt::Write as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.0.as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest {
            let _ = write!(hex, "{byte:02x}");
        }
        StreamKeyHash(hex)
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey([redacted])")
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The stored form of a [`StreamKey`]: its SHA-256, hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKeyHash(String);

impl StreamKeyHash {
    /// A hash as stored: 64 lowercase hex digits.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() != 64 || !value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("must be 64 lowercase hex digits (a SHA-256)".into());
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: ExternalId,
    pub name: Title,
}

/// A reservation as the platform last described it (`reservation.created`/`updated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub revision: Option<Revision>,
    pub title: Title,
    pub description: Option<Description>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub stream_url: Option<StreamUrl>,
    pub channel: Option<Channel>,
    pub hosts: Vec<OwnedUserId>,
    /// Per-reservation `chat.open_before_seconds`, overriding `rooms.open_before`.
    pub open_before_seconds: Option<u32>,
    /// Per-reservation `chat.close_after_seconds`, overriding `rooms.close_after`.
    pub close_after_seconds: Option<u32>,
    /// Per-reservation `chat.transcript`, overriding `rooms.transcript`.
    pub transcript: Option<bool>,
    /// The hash of `ingest.stream_key`, which a streaming server's publish hook names.
    pub stream_key: Option<StreamKeyHash>,
    /// Per-reservation `chat.rules`, overriding `rooms.rules` field by field.
    pub rules: RulesOverride,
    /// `chat.moderators`: Matrix users who keep the chat civil for the platform.
    pub moderators: Vec<OwnedUserId>,
    /// `chat.archive` and `chat.archive_indexable`: whether the chat is published after
    /// the archive (docs/replay.md, "Public archive").
    pub archive: Archive,
    /// `chat.replay_offset_ms`: shifts every offset of the replay.
    pub replay_offset: Option<ReplayOffset>,
    /// Per-reservation `chat.auto_join`, overriding `rooms.auto_join`.
    pub auto_join: Option<AutoJoin>,
    /// `chat.access`: who may join its room.
    pub access: Access,
}

impl Reservation {
    /// The rules in force in its chat: `defaults` (`rooms.rules`) with its own
    /// `chat.rules` applied. Only a corrupt stored copy can fail.
    pub fn rules(&self, defaults: &ChatRules) -> Result<ChatRules, RulesError> {
        defaults.with(&self.rules)
    }

    /// Its hosts and then its moderators, each once: those at power 50 in its room,
    /// invited with the holders, exempt from the chat's rules, whose guests may stay.
    pub fn staff(&self) -> Vec<OwnedUserId> {
        let mut staff = self.hosts.clone();
        staff.extend(self.moderators.iter().filter(|m| !self.hosts.contains(m)).cloned());
        staff
    }

    /// How its local holders get into the room: its own `chat.auto_join`, else
    /// `rooms.auto_join` (`default`).
    pub fn auto_join(&self, default: AutoJoin) -> AutoJoin {
        self.auto_join.unwrap_or(default)
    }

    /// Whether its chat is saved at archive: its own `chat.transcript`, else
    /// `rooms.transcript` (`default`).
    pub fn wants_transcript(&self, default: bool) -> bool {
        // A public archive is the transcript, published: members were told so.
        self.archive.is_public() || self.transcript.unwrap_or(default)
    }
}

/// `chat.access` (docs/followers.md): who may join a reservation's room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Access {
    /// Ticket holders (and hosts, and web fans for their tickets): the default.
    #[default]
    Tickets,
    /// Members of the channel's space as well (a restricted join rule): its followers
    /// and the holders of its shows' tickets.
    Channel,
    /// Anyone (a public join rule); still archived on time.
    Public,
}

impl Access {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "tickets" => Ok(Self::Tickets),
            "channel" => Ok(Self::Channel),
            "public" => Ok(Self::Public),
            other => Err(format!("{other:?} is not one of tickets, channel, public")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tickets => "tickets",
            Self::Channel => "channel",
            Self::Public => "public",
        }
    }
}

/// `rooms.auto_join` and `chat.auto_join` (README, "Big shows"): whether Foyer joins the
/// local ticket holders itself, through the homeserver's admin join, instead of inviting
/// them. An admin's join skips a user's own invite blocking, so it is the admin's choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AutoJoin {
    #[default]
    Off,
    Local,
}

impl AutoJoin {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "off" => Ok(Self::Off),
            "local" => Ok(Self::Local),
            other => Err(format!("{other:?} is not one of local, off")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Local => "local",
        }
    }
}

/// `chat.archive`: whether the chat is published once the room is archived. Public is
/// chosen before anyone speaks (the room opens): messages sent under a private chat's
/// promise are never made public after the fact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Archive {
    #[default]
    Private,
    /// `indexable`: `chat.archive_indexable`, search engines may index it.
    Public { indexable: bool },
}

impl Archive {
    pub fn is_public(self) -> bool {
        matches!(self, Self::Public { .. })
    }

    pub fn parse(value: &str, indexable: bool) -> Result<Self, String> {
        match value {
            "private" => Ok(Self::Private),
            "public" => Ok(Self::Public { indexable }),
            other => Err(format!("{other:?} is not one of public, private")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public { .. } => "public",
        }
    }

    pub fn indexable(self) -> bool {
        matches!(self, Self::Public { indexable: true })
    }
}

/// `chat.replay_offset_ms`: milliseconds added to every offset of the replay (the
/// recording may begin before or after the stream's first start), within a day either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOffset(i64);

impl ReplayOffset {
    pub const MAX_MS: i64 = 86_400_000;

    pub fn parse(ms: i64) -> Result<Self, String> {
        if !(-Self::MAX_MS..=Self::MAX_MS).contains(&ms) {
            return Err(format!("must be within ±{} (a day, in milliseconds)", Self::MAX_MS));
        }
        Ok(Self(ms))
    }

    pub fn ms(self) -> i64 {
        self.0
    }
}

/// One verified, validated webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// `reservation.created` and `reservation.updated`: both upsert the whole reservation.
    Upsert(Box<Reservation>),
    Cancelled {
        id: ReservationId,
        reason: Option<String>,
    },
    TicketsGranted {
        id: ReservationId,
        tickets: Vec<Ticket>,
    },
    TicketsRevoked {
        id: ReservationId,
        ticket_ids: Vec<TicketId>,
    },
    StreamStarted {
        id: ReservationId,
        at: DateTime<Utc>,
    },
    StreamEnded {
        id: ReservationId,
        at: DateTime<Utc>,
    },
    /// `follower.added`: a Matrix user follows the channel (docs/followers.md).
    FollowerAdded {
        channel: ExternalId,
        user: OwnedUserId,
    },
    /// `follower.removed`.
    FollowerRemoved {
        channel: ExternalId,
        user: OwnedUserId,
    },
    /// `series.upserted`: a series, and its occurrences as reservations (`model::series`).
    SeriesUpserted(Box<SeriesUpsert>),
    /// `series.cancelled`: every occurrence that has not ended is cancelled.
    SeriesCancelled {
        id: SeriesId,
        reason: Option<String>,
    },
}

impl WebhookEvent {
    /// The reservation whose facts it carries; `None` for a channel's followers.
    pub fn reservation_id(&self) -> Option<&ReservationId> {
        match self {
            Self::Upsert(r) => Some(&r.id),
            Self::Cancelled { id, .. }
            | Self::TicketsGranted { id, .. }
            | Self::TicketsRevoked { id, .. }
            | Self::StreamStarted { id, .. }
            | Self::StreamEnded { id, .. } => Some(id),
            // A series' own id keys its receipts and its `series.expanded` events.
            Self::SeriesUpserted(s) => Some(s.series.id.as_reservation_id()),
            Self::SeriesCancelled { id, .. } => Some(id.as_reservation_id()),
            Self::FollowerAdded { .. } | Self::FollowerRemoved { .. } => None,
        }
    }

    /// What it is about, in receipts and logs: the reservation's id, the series', or the
    /// channel's. Webhooks about one subject are recorded in their order.
    pub fn subject(&self) -> &str {
        match self {
            Self::FollowerAdded { channel, .. } | Self::FollowerRemoved { channel, .. } => channel.as_str(),
            other => other.reservation_id().map_or("", ReservationId::as_str),
        }
    }

    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Upsert(_) => "reservation.upsert",
            Self::Cancelled { .. } => "reservation.cancelled",
            Self::TicketsGranted { .. } => "ticket.granted",
            Self::TicketsRevoked { .. } => "ticket.revoked",
            Self::StreamStarted { .. } => "stream.started",
            Self::StreamEnded { .. } => "stream.ended",
            Self::FollowerAdded { .. } => "follower.added",
            Self::FollowerRemoved { .. } => "follower.removed",
            Self::SeriesUpserted(_) => "series.upserted",
            Self::SeriesCancelled { .. } => "series.cancelled",
        }
    }
}

/// Facts about a reservation that are not part of its description: what its events
/// (cancellation, the stream's start and end) and admins' commands recorded, as the
/// store reads them back. A new kind of fact is a field here beside its event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signals {
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub stream_started_at: Option<DateTime<Utc>>,
    pub stream_ended_at: Option<DateTime<Utc>>,
    /// When the reservation first arrived; `None` for one stored before that was kept.
    pub first_seen_at: Option<DateTime<Utc>>,
    /// An admin asked to open the room now (`!foyer open`).
    pub admin_opened_at: Option<DateTime<Utc>>,
    /// An admin asked to archive the room now (`!foyer archive`).
    pub admin_archived_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_ids_follow_the_contract() {
        for ok in ["a", "jazz-2026-11-27", "A.b_c=d-e", &"x".repeat(128)] {
            assert!(ReservationId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "slash/", "colon:", "é", &"x".repeat(129)] {
            assert!(ReservationId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_keys_follow_the_contract_and_never_print() {
        for ok in ["abcdefghijklmnop", "A-Z_a-z_0-9-key-", &"k".repeat(128)] {
            assert!(StreamKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in
            ["abcdefghijklmno", "has space in it!!", "dots.are.not.allowed", "é-is-not-ascii-key", &"k".repeat(129)]
        {
            let e = StreamKey::parse(bad).unwrap_err();
            assert!(!e.contains(bad), "the message quotes the key: {e}");
        }
        let key = StreamKey::parse("live_secret_key_0123").unwrap();
        let shown = format!("{key} {key:?}");
        assert!(!shown.contains("live_secret_key_0123"), "{shown}");
        // SHA-256 of the key, hex: `printf %s live_secret_key_0123 | sha256sum`.
        let hash = key.hash();
        assert_eq!(hash.as_str(), "d16c019a9a4df2a0f13f362f4b8f5bb4d9d8a645bee9e31e23d3b319b820b049");
        assert_eq!(StreamKeyHash::parse(hash.as_str()), Ok(hash.clone()));
        assert_eq!(hash, StreamKey::parse("live_secret_key_0123").unwrap().hash());
        assert_ne!(hash, StreamKey::parse("live_secret_key_0124").unwrap().hash());
    }

    #[test]
    fn archives_and_replay_offsets_follow_the_contract() {
        assert_eq!(Archive::parse("public", true), Ok(Archive::Public { indexable: true }));
        assert_eq!(Archive::parse("private", true), Ok(Archive::Private));
        assert!(!Archive::Private.indexable() && Archive::default() == Archive::Private);
        assert!(Archive::parse("Public", false).unwrap_err().contains("public, private"));
        for ok in [0, -86_400_000, 86_400_000, 1500] {
            assert_eq!(ReplayOffset::parse(ok).map(ReplayOffset::ms), Ok(ok));
        }
        for bad in [86_400_001, -86_400_001, i64::MIN] {
            assert!(ReplayOffset::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn titles_count_characters_not_bytes() {
        assert!(Title::parse(&"é".repeat(255)).is_ok());
        assert!(Title::parse(&"é".repeat(256)).is_err());
        assert!(Title::parse("").is_err());
        assert!(Title::parse("bell\u{7}").is_err());
    }

    #[test]
    fn stream_urls_are_http_or_https() {
        assert!(StreamUrl::parse("https://stream.example.org/watch/jazz").is_ok());
        for bad in ["ftp://x.org/a", "javascript:alert(1)", "not a url", "https://"] {
            assert!(StreamUrl::parse(bad).is_err(), "{bad}");
            assert!(StreamUrl::parse_incoming(bad, true).is_err(), "{bad}");
            assert!(StreamUrl::parse_incoming(bad, false).is_err(), "{bad}");
        }
        let e = StreamUrl::parse_incoming("javascript:alert(1)", false).unwrap_err();
        assert!(e.starts_with("must be an https:// URL"), "{e}");
    }

    #[test]
    fn incoming_stream_urls_are_https_unless_http_is_allowed() {
        let url = "http://stream.example.org/watch/jazz";
        let refused = StreamUrl::parse_incoming(url, false).unwrap_err();
        assert!(refused.contains("rooms.allow_http_stream_urls"), "{refused}");
        assert_eq!(StreamUrl::parse_incoming(url, true).unwrap().as_str(), url);
        assert!(StreamUrl::parse_incoming("https://stream.example.org/watch/jazz", false).is_ok());
        // Stored while allowed: it still reads back.
        assert_eq!(StreamUrl::parse(url).unwrap().as_str(), url);
    }

    #[test]
    fn incoming_stream_urls_carry_no_user_info() {
        for bad in ["https://legit@evil.example/", "https://user:pass@evil.example/", "https://:pass@evil.example/"] {
            let e = StreamUrl::parse_incoming(bad, false).unwrap_err();
            assert!(e.contains("user-info"), "{bad}: {e}");
        }
    }

    #[test]
    fn incoming_stream_urls_carry_no_template_variables() {
        for bad in [
            "https://s.example.org/w?u=$matrix_user_id",
            "https://s.example.org/$matrix_display_name",
            "https://s.example.org/w#$matrix_room_id",
            "https://s.example.org/w?u=%24matrix_user_id",
        ] {
            let e = StreamUrl::parse_incoming(bad, false).unwrap_err();
            assert!(e.contains("'$'"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_length_limit_counts_the_normalised_form() {
        // 1000 `é` are 1000 characters as sent, 6000 once percent-encoded: stored and
        // read back as 6000, so refused on the way in.
        let long = format!("https://s.example.org/{}", "é".repeat(1000));
        assert!(long.chars().count() < MAX_STREAM_URL_CHARS);
        let e = StreamUrl::parse_incoming(&long, false).unwrap_err();
        assert!(e.contains("once normalised") && e.contains("it has 6022"), "{e}");
        // Exactly at the limit once normalised: accepted, and what is stored reads back.
        let prefix = "https://s.example.org/";
        let fits = format!("{prefix}{}", "%C3%A9".repeat((MAX_STREAM_URL_CHARS - prefix.len()) / 6));
        let fits = format!("{fits}{}", "a".repeat(MAX_STREAM_URL_CHARS - fits.len()));
        let url = StreamUrl::parse_incoming(&fits, false).unwrap();
        assert_eq!(url.as_str().len(), MAX_STREAM_URL_CHARS);
        assert_eq!(StreamUrl::parse(url.as_str()).unwrap(), url);
        assert!(StreamUrl::parse_incoming(&format!("{fits}a"), false).is_err());
    }
}
