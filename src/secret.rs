//! Secrets: tokens and webhook keys that must never reach a log line.

use std::fmt;

use subtle::ConstantTimeEq;

/// A secret string. `Debug` and `Display` print `[redacted]`; the value is only
/// reachable through [`Secret::expose`], so leaking it takes a visible call.
#[derive(Clone)]
pub struct Secret(String);

/// Equality in constant time too, so comparing two secrets never leaks a prefix.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a candidate in time independent of where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(candidate).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("hunter2hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    }

    #[test]
    fn matches_only_the_exact_value() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd"));
        assert!(!s.matches(b"ab"));
        assert!(!s.matches(b"abcd"));
    }

    /// Each place that reads a secret's value, with why. A comparison written with
    /// `expose() ==` would be a timing leak: every comparison goes through
    /// [`Secret::matches`] (constant time), so a new `expose()` must be reviewed here.
    #[test]
    fn every_read_of_a_secret_is_reviewed() {
        let reviewed: &[(&str, usize, &str)] = &[
            ("src/registration.rs", 2, "writes as_token and hs_token into the registration file"),
            (
                "src/config/mod.rs",
                4,
                "parses the database URL to show it without its password; derives the claim-code key and the web users' key (model::naming::WebKey) from as_token, and the holders' feed key (model::calendar::FeedKey) from calendar.feed_key",
            ),
            (
                "src/config/load/sections.rs",
                2,
                "checks the database URL's scheme; decodes platform.webhook_secret into its signing key",
            ),
            ("src/config/load/secrets.rs", 1, "checks a secret's length and placeholder"),
            ("src/matrix/mod.rs", 1, "sends as_token to the homeserver"),
            ("src/store/sqlite.rs", 1, "opens the database"),
            ("src/store/postgres.rs", 1, "opens the database"),
            (
                "src/store/schema.rs",
                2,
                "opens the database to read its schema version, touching nothing (check-config --online)",
            ),
            ("src/matrix/synapse_admin.rs", 1, "sends the Synapse admin token to the admin API"),
            ("src/http/ingest/owncast.rs", 1, "keys the HMAC of an Owncast webhook with its channel's secret"),
            ("src/webchat/token.rs", 1, "keys the HMAC of a viewer token with each of webchat.token_secrets"),
            (
                "src/http/status/session.rs",
                1,
                "derives the status page cookie's MAC key from api.token (never in the cookie)",
            ),
        ];
        let mut found = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("secret.rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let n = text.matches(".expose()").count();
                    if n > 0 {
                        let relative = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display().to_string();
                        found.push((relative, n));
                    }
                }
            }
        }
        found.sort();
        let mut expected: Vec<(String, usize)> = reviewed.iter().map(|(f, n, _)| ((*f).to_owned(), *n)).collect();
        expected.sort();
        assert_eq!(
            found, expected,
            "a read of a secret's value was added or removed: review it, then update this list"
        );
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(Secret::new("abc"), Secret::new("abc"));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
    }
}
