//! Whose address a request comes from, for the claim form's per-address throttle
//! (docs/web-chat.md, "Getting in").
//!
//! Behind a reverse proxy every connection comes from the proxy, so its
//! `X-Forwarded-For` is read, but only from a peer in `webchat.trusted_proxies`: anyone
//! else could write any address there and never be throttled. The list is read from the
//! right, past the trusted proxies, because each proxy appends the address it saw and
//! only the entries they appended can be believed; the leftmost is what the client said.

use std::net::{IpAddr, Ipv6Addr};

/// The client's address: the connection's `peer`, or, when `trusted(peer)`, the
/// rightmost address in `forwarded` (the `X-Forwarded-For` values, in order) that is not
/// itself a trusted proxy. An entry that is not an address ends the walk there: what is
/// left of it cannot be believed.
pub fn client(peer: IpAddr, forwarded: &[&str], trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    if !trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded.iter().rev().flat_map(|value| value.rsplit(',')) {
        let Some(address) = parse(entry) else { return client };
        client = address;
        if !trusted(address) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, IPv6 possibly in brackets, IPv4 possibly with
/// a port as some proxies write it.
fn parse(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Some(inside) = entry.strip_prefix('[').and_then(|e| e.split_once(']')) {
        return inside.0.parse::<Ipv6Addr>().ok().map(|a| IpAddr::V6(a).to_canonical());
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// What the throttle counts wrong codes by: an IPv4 address, or an IPv6 address's /64,
/// since one home or one server is given a whole /64 and could walk through it.
pub fn throttle_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(address: IpAddr) -> bool {
        matches!(address, IpAddr::V4(v4) if v4.octets()[0] == 10)
    }

    #[test]
    fn a_peer_that_is_no_trusted_proxy_is_the_client_whatever_it_forwards() {
        assert_eq!(client(ip("203.0.113.9"), &["198.51.100.1"], proxies), ip("203.0.113.9"));
        assert_eq!(client(ip("203.0.113.9"), &[], proxies), ip("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client() {
        // The client claims to be 1.1.1.1; the first proxy saw 198.51.100.7.
        let forwarded = ["1.1.1.1, 198.51.100.7", "10.0.0.2"];
        assert_eq!(client(ip("10.0.0.1"), &forwarded, proxies), ip("198.51.100.7"));
        assert_eq!(client(ip("10.0.0.1"), &["198.51.100.7"], proxies), ip("198.51.100.7"));
        // Only proxies in the list: the leftmost is the best there is.
        assert_eq!(client(ip("10.0.0.1"), &["10.0.0.3, 10.0.0.2"], proxies), ip("10.0.0.3"));
        // No header from a proxy: the proxy itself.
        assert_eq!(client(ip("10.0.0.1"), &[], proxies), ip("10.0.0.1"));
    }

    #[test]
    fn entries_are_read_as_proxies_write_them_and_garbage_stops_the_walk() {
        assert_eq!(client(ip("10.0.0.1"), &["[2001:db8::1]:443"], proxies), ip("2001:db8::1"));
        assert_eq!(client(ip("10.0.0.1"), &["198.51.100.7:5000"], proxies), ip("198.51.100.7"));
        assert_eq!(client(ip("10.0.0.1"), &["::ffff:198.51.100.7"], proxies), ip("198.51.100.7"));
        // Garbage to the left of a believed entry is never reached; garbage where the
        // client should be leaves the last proxy as the client.
        assert_eq!(client(ip("10.0.0.1"), &["junk, 198.51.100.7"], proxies), ip("198.51.100.7"));
        assert_eq!(client(ip("10.0.0.1"), &["198.51.100.7, junk"], proxies), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(throttle_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(throttle_key(ip("2001:db8:1:2:bbbb::9")), throttle_key(ip("2001:db8:1:2:aaaa::1")));
        assert_eq!(throttle_key(ip("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(throttle_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
    }
}
