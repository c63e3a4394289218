//! The names Foyer gives things on the homeserver, and links to them. Every alias Foyer
//! uses is made (or read back) here, and every web user's ID and sender key.

use hmac::{Hmac, Mac};
use ruma::{IdParseError, OwnedRoomAliasId, OwnedUserId, RoomAliasId, ServerName, UserId};
use sha2::Sha256;
use url::Url;

use super::{ClaimCode, ReservationId, ViewerKey};

/// A reservation's room alias: `#<alias_prefix><reservation_id>:<server_name>`.
pub fn room_alias(prefix: &str, id: &ReservationId, server: &ServerName) -> OwnedRoomAliasId {
    RoomAliasId::parse(format!("#{prefix}{id}:{server}")).expect("prefix, reservation id and server name are validated")
}

/// The reservation a room alias of ours names, if it is one.
pub fn reservation_of_alias(prefix: &str, server: &ServerName, alias: &str) -> Option<ReservationId> {
    let (localpart, alias_server) = alias.strip_prefix('#')?.split_once(':')?;
    if alias_server != server.as_str() {
        return None;
    }
    ReservationId::parse(localpart.strip_prefix(prefix)?).ok()
}

/// The localpart of a channel space's alias: `<alias_prefix>+<channel_id>`. `+` never
/// occurs in reservation ids, so it cannot collide with a room's alias; characters unfit
/// for an alias are replaced, with a stable hash of the id to keep channels apart.
pub fn space_alias_localpart(prefix: &str, channel_id: &str) -> String {
    let safe: String =
        channel_id.chars().map(|c| if c.is_ascii_alphanumeric() || "._=-".contains(c) { c } else { '_' }).collect();
    let suffix = if safe == channel_id { String::new() } else { format!("-{:012x}", fingerprint(channel_id) >> 16) };
    format!("{prefix}+{safe}{suffix}")
}

/// The localpart of a channel's announcements room's alias: its space's and
/// `+announcements` (a space's never holds a second `+`).
pub fn announcements_alias_localpart(prefix: &str, channel_id: &str) -> String {
    format!("{}+announcements", space_alias_localpart(prefix, channel_id))
}

/// A channel space's alias: `#<space_alias_localpart>:<server_name>`. Channel ids come
/// from webhooks, so one long enough makes an alias Matrix refuses (over 255 bytes).
pub fn space_alias(prefix: &str, channel_id: &str, server: &ServerName) -> Result<OwnedRoomAliasId, IdParseError> {
    RoomAliasId::parse(format!("#{}:{server}", space_alias_localpart(prefix, channel_id)))
}

/// The state key of the stream player's widget (`im.vector.modular.widgets`).
pub const WIDGET_ID: &str = "foyer_stream";

/// The transaction id of the pinned stream link message: one per reservation and stream
/// URL, so a new URL posts a new link and a repeated step finds the one it posted.
pub fn stream_link_txn(id: &ReservationId, url: &str) -> String {
    format!("foyer-link-{id}-{:016x}", fingerprint(url))
}

/// A matrix.to link to a room by its alias, `#` and `:` percent-encoded as matrix.to
/// expects in the fragment's identifier.
pub fn matrix_to(alias: &RoomAliasId) -> String {
    format!("https://matrix.to/#/{}", alias.as_str().replace('#', "%23").replace(':', "%3A"))
}

/// The first 64 bits of the text's SHA-256: stable across releases and machines, unlike
/// `DefaultHasher`, so names and transaction ids made from it never change.
pub fn fingerprint(text: &str) -> u64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
}

/// A claim code's page, `GET /claim/{code}` under Foyer's public URL.
pub fn claim_url(public_url: &Url, code: &ClaimCode) -> String {
    format!("{}/claim/{}", public_url.as_str().trim_end_matches('/'), code.as_str())
}

/// A reservation's transcript in the read API, under Foyer's public URL (the API token
/// is needed to read it).
pub fn transcript_url(public_url: &Url, id: &ReservationId) -> String {
    format!("{}/api/v1/reservations/{}/transcript", public_url.as_str().trim_end_matches('/'), id.as_str())
}

/// The exact line a holder sends the bot to claim a ticket.
pub fn claim_command(code: &ClaimCode) -> String {
    format!("!claim {code}")
}

/// The key web users' IDs and the browser's sender keys are derived with (see
/// [`web_user_id`], [`sender_key`]). Like the claim key it comes from `as_token`: the same
/// on every instance and across restarts; rotating `as_token` gives every fan a new web
/// user.
#[derive(Clone)]
pub struct WebKey([u8; 32]);

impl WebKey {
    /// A key from a secret of the deployment; the label keeps it apart from every other
    /// use of that secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"foyer web users v1");
        Self(mac.finalize().into_bytes().into())
    }

    /// The MAC of `label` and `parts` under this key, lengths first so that no two lists
    /// of parts feed the same bytes.
    fn mac(&self, label: &str, parts: &[&str]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(label.as_bytes());
        mac.update(b"\0");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for WebKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebKey([redacted])")
    }
}

/// Symbols of the opaque part of a web user's localpart: 20 of 5 bits, 100 bits.
const WEB_USER_SYMBOLS: usize = 20;
/// Symbols of a sender key: 12 of 5 bits, 60 bits.
const SENDER_KEY_SYMBOLS: usize = 12;

/// A web fan's localpart: `<puppet_prefix><opaque>`, the opaque part 20 symbols of
/// lowercase base 32 from a keyed hash of the reservation, the viewer and the ticket's
/// holder generation (`tickets.holder_generation`; 0 for a platform viewer), so that it
/// cannot be told from the ticket, is the same wherever and whenever it is made, and
/// each holder of a ticket that moved has their own.
pub fn web_user_localpart(
    key: &WebKey, prefix: &str, reservation: &ReservationId, viewer: &ViewerKey, generation: i64,
) -> String {
    let generation = generation.to_string();
    let digest = key.mac("web user", &[reservation.as_str(), viewer.kind(), viewer.value(), &generation]);
    format!("{prefix}{}", base32(&digest, WEB_USER_SYMBOLS))
}

/// A web fan's user ID, `@<web_user_localpart>:<server_name>`.
pub fn web_user_id(
    key: &WebKey, prefix: &str, reservation: &ReservationId, viewer: &ViewerKey, generation: i64, server: &ServerName,
) -> OwnedUserId {
    UserId::parse(format!("@{}:{server}", web_user_localpart(key, prefix, reservation, viewer, generation)))
        .expect("the prefix is validated and the opaque part is base 32")
}

/// Whether `user` is a web fan of this deployment: on our server, in the namespace.
pub fn is_web_user(prefix: &str, server: &ServerName, user: &UserId) -> bool {
    user.server_name() == server && user.localpart().starts_with(prefix)
}

/// The exclusive users namespace the registration gives Foyer for web fans:
/// `^@<puppet_prefix>.*:<server_name>$`, both parts escaped (Synapse anchors namespace
/// regexes at the start only, so the `$` matters).
pub fn web_user_regex(prefix: &str, server: &ServerName) -> String {
    format!("^@{}.*:{}$", regex::escape(prefix), regex::escape(server.as_str()))
}

/// A localpart in the namespace that no web fan has (no opaque part is this short), for
/// asking the homeserver about the namespace without touching a fan.
pub fn web_user_probe(prefix: &str) -> String {
    format!("{prefix}probe")
}

/// What the browser sees instead of a member's Matrix ID: 12 symbols of a keyed hash of
/// the reservation and the user ID, the same for the member throughout the room's chat,
/// different in another reservation's, and not computable from the ID without the key.
pub fn sender_key(key: &WebKey, reservation: &ReservationId, user: &UserId) -> String {
    base32(&key.mac("sender", &[reservation.as_str(), user.as_str()]), SENDER_KEY_SYMBOLS)
}

/// The transaction id a web fan's message is sent with: from their web user and the
/// page's `txn_id`. The homeserver deduplicates an appservice's transactions by path
/// alone (Synapse: path and appservice, not the user it acts as), so two fans' equal
/// `txn_id`s in one room must not make the same id.
pub fn web_message_txn(user: &UserId, txn_id: &str) -> String {
    format!("foyer-web-{:016x}", fingerprint(&format!("{}\0{txn_id}", user.as_str())))
}

/// The transaction id of a web fan's redaction of their own message `event_id`.
pub fn web_redaction_txn(user: &UserId, event_id: &str) -> String {
    format!("foyer-web-redact-{:016x}", fingerprint(&format!("{}\0{event_id}", user.as_str())))
}

/// RFC 4648's base 32 alphabet in lowercase: every symbol may stand in a localpart.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The first `symbols` (at most 51) symbols of `bytes` in lowercase base 32.
fn base32(bytes: &[u8; 32], symbols: usize) -> String {
    let mut out = String::with_capacity(symbols);
    for i in 0..symbols {
        let bit = i * 5;
        let pair = u16::from_be_bytes([bytes[bit / 8], bytes.get(bit / 8 + 1).copied().unwrap_or(0)]);
        let value = (pair >> (11 - bit % 8)) & 0x1f;
        out.push(BASE32[value as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_links_encode_the_alias() {
        let alias = RoomAliasId::parse("#live_jazz:example.org").unwrap();
        assert_eq!(matrix_to(&alias), "https://matrix.to/#/%23live_jazz%3Aexample.org");
    }

    #[test]
    fn room_aliases_read_back_to_their_reservation() {
        let server = <&ServerName>::try_from("example.org").unwrap();
        let id = ReservationId::parse("jazz-1").unwrap();
        let alias = room_alias("live_", &id, server);
        assert_eq!(alias.as_str(), "#live_jazz-1:example.org");
        assert_eq!(reservation_of_alias("live_", server, alias.as_str()), Some(id));
        assert_eq!(reservation_of_alias("live_", server, "#live_jazz-1:other.org"), None);
        assert_eq!(reservation_of_alias("live_", server, "#other_jazz-1:example.org"), None);
    }

    #[test]
    fn space_aliases_and_link_transactions_use_a_stable_hash() {
        assert_eq!(space_alias_localpart("live_", "blue-room"), "live_+blue-room");
        assert_eq!(space_alias_localpart("live_", "Blue Room!"), "live_+Blue_Room_-ef6ef59ae345");
        assert_ne!(space_alias_localpart("live_", "Blue Room?"), space_alias_localpart("live_", "Blue Room!"));
        assert_eq!(fingerprint("https://stream.example.org/watch/jazz"), 0x67f3b1b68826dfb1);
        let server = <&ServerName>::try_from("example.org").unwrap();
        assert_eq!(space_alias("live_", "blue-room", server).unwrap().as_str(), "#live_+blue-room:example.org");
        let id = ReservationId::parse("jazz").unwrap();
        assert_eq!(stream_link_txn(&id, "https://stream.example.org/watch/jazz"), "foyer-link-jazz-67f3b1b68826dfb1");
    }

    fn web(key: &WebKey, reservation: &str, viewer: &ViewerKey) -> String {
        web_user_localpart(key, "_foyer_web_", &ReservationId::parse(reservation).unwrap(), viewer, 0)
    }

    #[test]
    fn web_users_are_opaque_stable_and_apart() {
        let key = WebKey::from_secret(b"an as_token of some length");
        let t1 = ViewerKey::parse("ticket", "t-1").unwrap();
        let t2 = ViewerKey::parse("ticket", "t-2").unwrap();
        let one = web(&key, "jazz", &t1);
        // The same wherever and whenever it is made: pinned (checked against Python's hmac and base64).
        assert_eq!(one, "_foyer_web_cujchb4owxe3dhkukxqq");
        assert_eq!(one, web(&WebKey::from_secret(b"an as_token of some length"), "jazz", &t1));
        let opaque = one.strip_prefix("_foyer_web_").unwrap();
        assert_eq!(opaque.len(), 20);
        assert!(opaque.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{opaque}");
        assert!(!opaque.contains("t-1") && !opaque.contains("jazz"));
        // Another ticket, reservation, kind of viewer or key: another user.
        let others = [
            web(&key, "jazz", &t2),
            web(&key, "blues", &t1),
            web(&key, "jazz", &ViewerKey::parse("platform", "t-1").unwrap()),
            web(&WebKey::from_secret(b"another as_token"), "jazz", &t1),
        ];
        // The ticket's next holder (it moved): another user, pinned too.
        let moved = web_user_localpart(&key, "_foyer_web_", &ReservationId::parse("jazz").unwrap(), &t1, 1);
        assert_eq!(moved, "_foyer_web_5hd2dd4kq5awi3uo4z5k");
        for other in &others {
            assert_ne!(&one, other);
        }
        let server = <&ServerName>::try_from("example.org").unwrap();
        let id = web_user_id(&key, "_foyer_web_", &ReservationId::parse("jazz").unwrap(), &t1, 0, server);
        assert_eq!(id.as_str(), format!("@{one}:example.org"));
        assert!(is_web_user("_foyer_web_", server, &id));
        assert!(!is_web_user("_foyer_web_", server, &UserId::parse("@alice:example.org").unwrap()));
        assert!(!is_web_user("_foyer_web_", server, &UserId::parse(format!("@{one}:other.org")).unwrap()));
        assert!(format!("{key:?}").contains("redacted"));
    }

    #[test]
    fn the_namespace_matches_web_users_only() {
        let server = <&ServerName>::try_from("chat.example.org").unwrap();
        assert_eq!(web_user_regex("_foyer_web_", server), r"^@_foyer_web_.*:chat\.example\.org$");
        assert_eq!(web_user_regex("web.fan+", server), r"^@web\.fan\+.*:chat\.example\.org$");
        let pattern = regex::Regex::new(&web_user_regex("web.fan+", server)).unwrap();
        assert!(pattern.is_match("@web.fan+abc:chat.example.org"));
        assert!(!pattern.is_match("@webxfan+abc:chat.example.org"));
        assert!(!pattern.is_match("@web.fan+abc:chat.example.org.evil"));
        assert!(pattern.is_match(&format!("@{}:chat.example.org", web_user_probe("web.fan+"))));
    }

    #[test]
    fn sender_keys_are_short_per_room_and_not_the_id() {
        let key = WebKey::from_secret(b"an as_token of some length");
        let alice = UserId::parse("@alice:example.org").unwrap();
        let jazz = ReservationId::parse("jazz").unwrap();
        let k = sender_key(&key, &jazz, &alice);
        assert_eq!(k.len(), 12);
        assert_eq!(k, sender_key(&key, &jazz, &alice));
        assert!(!k.contains("alice"));
        assert_ne!(k, sender_key(&key, &ReservationId::parse("blues").unwrap(), &alice));
        assert_ne!(k, sender_key(&key, &jazz, &UserId::parse("@bob:example.org").unwrap()));
        assert_ne!(k, sender_key(&WebKey::from_secret(b"another"), &jazz, &alice));
    }

    #[test]
    fn web_transactions_are_apart_per_user() {
        let a = UserId::parse("@_foyer_web_aaaa:example.org").unwrap();
        let b = UserId::parse("@_foyer_web_bbbb:example.org").unwrap();
        assert_eq!(web_message_txn(&a, "1"), web_message_txn(&a, "1"));
        assert_ne!(web_message_txn(&a, "1"), web_message_txn(&b, "1"), "two fans' equal txn_ids");
        assert_ne!(web_message_txn(&a, "1"), web_message_txn(&a, "2"));
        assert_ne!(web_redaction_txn(&a, "$e"), web_redaction_txn(&b, "$e"));
        assert!(web_message_txn(&a, "1").starts_with("foyer-web-"));
    }

    #[test]
    fn base32_takes_five_bits_a_symbol() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0b0000_1000;
        bytes[1] = 0b1000_0000;
        // 00001 00010 00000 ...
        assert_eq!(base32(&bytes, 4), "bcaa");
        assert_eq!(base32(&[0xff; 32], 51), "7".repeat(51));
    }
}
