//! `webchat:` (docs/web-chat.md): the chat beside the player. Its values as types that cannot
//! hold a wrong one: the pages that may frame the chat ([`Origin`]), the proxies whose
//! forwarded address is believed ([`TrustedProxy`]), and the web fans' localpart prefix.

use std::{fmt, net::IpAddr};

use url::Url;

use crate::secret::Secret;

/// The default of `webchat.puppet_prefix`: web fans are `@_foyer_web_<opaque>:<server>`.
pub const DEFAULT_PUPPET_PREFIX: &str = "_foyer_web_";

/// `webchat`: present means web chat is on.
#[derive(Debug, Clone)]
pub struct WebchatConfig {
    /// The HS256 keys viewer tokens are signed with, each at least 32 characters; a
    /// token signed with any of them is taken, so a new one can be added before the
    /// platform switches to it (rotation).
    pub token_secrets: Vec<Secret>,
    /// The pages that may frame the chat and talk to it.
    pub allowed_origins: Vec<Origin>,
    /// Web fans' localparts start with it (`webchat.puppet_prefix`).
    pub puppet_prefix: String,
    /// Only a connection from one of these is believed about the client's address
    /// (`X-Forwarded-For`); empty believes no one.
    pub trusted_proxies: Vec<TrustedProxy>,
}

impl WebchatConfig {
    /// Whether a browser's `Origin` header names one of the allowed pages.
    pub fn allows_origin(&self, header: &str) -> bool {
        self.allowed_origins.iter().any(|o| o.as_str() == header)
    }

    /// Whether a connection from `peer` may tell the client's address.
    pub fn trusts_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|p| p.contains(peer))
    }
}

/// A web origin, `scheme://host[:port]`, as a browser sends it in `Origin`: lowercase
/// host, no default port, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// Parses an origin written in the config. Refuses a path (even a lone trailing
    /// `/`), a query, a fragment, user info, a wildcard and schemes other than http(s).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains('*') {
            return Err(format!("{text:?} is a wildcard; list each origin, like https://platform.example.org"));
        }
        let url =
            Url::parse(text).map_err(|e| format!("{text:?} is not an origin ({e}); write scheme://host[:port]"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?} must start with https:// (or http://)"));
        }
        if url.host_str().is_none() {
            return Err(format!("{text:?} has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?} must not carry a user name or password"));
        }
        // The URL parser writes "/" for no path at all: the text tells them apart.
        let after_scheme = text.split_once("://").map_or("/", |(_, rest)| rest);
        if url.path() != "/" || after_scheme.contains('/') || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?} must be an origin, scheme://host[:port], with no path, trailing slash, query or fragment"
            ));
        }
        Ok(Self(url.origin().ascii_serialization()))
    }

    /// As a browser writes it in `Origin` (and as `frame-ancestors` takes it).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An address or a network (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`) of a reverse proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

impl TrustedProxy {
    /// Parses `IP` or `IP/prefix`; the address bits past the prefix must be zero, so
    /// that `10.0.0.1/8` (likely a typo) is not read as all of `10.0.0.0/8`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr =
            addr.trim().parse().map_err(|_| format!("{text:?} is not an IP address or a network like 10.0.0.0/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{text:?}: the prefix length must be a number from 0 to {max}")),
            },
        };
        let proxy = Self { network, prefix };
        if proxy.masked(network) != network {
            return Err(format!(
                "{text:?} has address bits past the /{prefix}; write the network, {}/{prefix}",
                proxy.masked(network)
            ));
        }
        Ok(proxy)
    }

    /// Whether `peer` is this address or in this network. An IPv4 address seen as
    /// IPv6 (`::ffff:10.0.0.5`, from a dual-stack listener) counts as the IPv4 one.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        peer.is_ipv4() == self.network.is_ipv4() && self.masked(peer) == self.network
    }

    fn masked(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_kept_as_a_browser_sends_them() {
        let ok = |t: &str| Origin::parse(t).unwrap().as_str().to_owned();
        assert_eq!(ok("https://platform.example.org"), "https://platform.example.org");
        assert_eq!(ok("https://Platform.Example.ORG"), "https://platform.example.org");
        assert_eq!(ok("https://platform.example.org:443"), "https://platform.example.org");
        assert_eq!(ok("http://localhost:8080"), "http://localhost:8080");
        assert_eq!(ok("https://[::1]:8443"), "https://[::1]:8443");
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_the_reason() {
        let err = |t: &str| Origin::parse(t).unwrap_err();
        assert!(err("https://platform.example.org/").contains("trailing slash"), "{}", err("https://a.org/"));
        assert!(err("https://platform.example.org/watch").contains("no path"));
        assert!(err("https://platform.example.org?x=1").contains("query"));
        assert!(err("https://platform.example.org#top").contains("fragment"));
        assert!(err("*").contains("wildcard"));
        assert!(err("https://*.example.org").contains("wildcard"));
        assert!(err("ftp://example.org").contains("https://"));
        assert!(err("https://user:pw@example.org").contains("user name"));
        assert!(err("platform.example.org").contains("not an origin"));
        assert!(err("file:///etc").contains("https://"));
    }

    #[test]
    fn proxies_are_addresses_or_networks() {
        let p = TrustedProxy::parse("10.0.0.0/8").unwrap();
        assert!(p.contains("10.1.2.3".parse().unwrap()));
        assert!(p.contains("::ffff:10.1.2.3".parse().unwrap()), "an IPv4-mapped peer is the IPv4 one");
        assert!(!p.contains("11.0.0.1".parse().unwrap()));
        assert!(!p.contains("::a01:203".parse().unwrap()), "an IPv6 address is not in an IPv4 network");
        let one = TrustedProxy::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6 = TrustedProxy::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all = TrustedProxy::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert_eq!(TrustedProxy::parse("::1").unwrap().to_string(), "::1/128");
    }

    #[test]
    fn bad_proxies_are_refused_with_the_reason() {
        let err = |t: &str| TrustedProxy::parse(t).unwrap_err();
        assert!(err("10.0.0.1/8").contains("10.0.0.0/8"), "{}", err("10.0.0.1/8"));
        assert!(err("10.0.0.0/33").contains("0 to 32"));
        assert!(err("fd00::/129").contains("0 to 128"));
        assert!(err("proxy.local").contains("not an IP address"));
        assert!(err("10.0.0.0/x").contains("prefix length"));
    }
}
