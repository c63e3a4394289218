//! The names Foyer gives things on the homeserver, and links to them. Every alias Foyer
//! uses is made (or read back) here.

use ruma::{IdParseError, OwnedRoomAliasId, RoomAliasId, ServerName};

use url::Url;

use super::{ClaimCode, ReservationId};

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
}
