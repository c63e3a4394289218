//! Tokens and secrets: read from the key, a `<key>_file` or the environment (which
//! wins), with where each came from recorded; tokens checked for length and for the
//! example's placeholder.

use serde_yaml::Value;

use super::{Section, Walker};
use crate::{
    config::{PLACEHOLDER_MARK, Placeholders},
    secret::Secret,
};

const MIN_TOKEN_LEN: usize = 32;

/// A secret's key in its section, the `_file` key beside it that names a file holding it,
/// and the environment variable that wins over both.
#[derive(Debug, Clone, Copy)]
pub(super) struct SecretKey {
    key: &'static str,
    file_key: &'static str,
    env_var: &'static str,
}

impl SecretKey {
    pub(super) const AS_TOKEN: Self = Self::new("as_token", "as_token_file", "FOYER_AS_TOKEN");
    pub(super) const HS_TOKEN: Self = Self::new("hs_token", "hs_token_file", "FOYER_HS_TOKEN");
    pub(super) const API_TOKEN: Self = Self::new("token", "token_file", "FOYER_API_TOKEN");
    pub(super) const INGEST_TOKEN: Self = Self::new("token", "token_file", "FOYER_INGEST_TOKEN");
    pub(super) const SYNAPSE_ADMIN_TOKEN: Self = Self::new("token", "token_file", "FOYER_SYNAPSE_ADMIN_TOKEN");
    pub(super) const CALENDAR_FEED_KEY: Self = Self::new("feed_key", "feed_key_file", "FOYER_CALENDAR_FEED_KEY");
    pub(super) const DATABASE_URL: Self = Self::new("url", "url_file", "FOYER_DATABASE_URL");
    pub(super) const WEBHOOK_SECRET: Self =
        Self::new("webhook_secret", "webhook_secret_file", "FOYER_PLATFORM_WEBHOOK_SECRET");

    const fn new(key: &'static str, file_key: &'static str, env_var: &'static str) -> Self {
        Self { key, file_key, env_var }
    }
}

impl Walker<'_> {
    /// A token: from `<key>`, `<key>_file`, or the environment variable (which wins).
    /// Tokens need at least 32 characters and must not be the example's placeholder.
    pub(super) fn secret(&mut self, s: &mut Section<'_>, secret: SecretKey, required: bool) -> Option<Secret> {
        let path = s.key_path(secret.key);
        let secret = self.secret_value(s, secret, required)?;
        self.checked_token(&path, secret)
    }

    /// A token's checks: at least 32 characters, no whitespace, not the example's
    /// placeholder (unless placeholders are allowed). `path` names it in a problem.
    pub(super) fn checked_token(&mut self, path: &str, secret: Secret) -> Option<Secret> {
        let value = secret.expose();
        if value.contains(PLACEHOLDER_MARK) {
            if self.placeholders == Placeholders::Refuse {
                self.placeholder_problem(path, "openssl rand -hex 32");
                return None;
            }
        } else if value.chars().count() < MIN_TOKEN_LEN {
            self.problem(
                path,
                format!("must be at least {MIN_TOKEN_LEN} characters (it has {})", value.chars().count()),
            );
            return None;
        } else if value.chars().any(char::is_whitespace) {
            self.problem(path, "must not contain whitespace");
            return None;
        }
        Some(secret)
    }

    pub(super) fn placeholder_problem(&mut self, path: &str, generate: &str) {
        self.problem(path, format!(
            "still holds the placeholder from config.example.yaml ({PLACEHOLDER_MARK}…); put a random value there, for example from `{generate}`"
        ));
    }

    /// Reads a secret's raw value from its three possible sources, records which one.
    pub(super) fn secret_value(&mut self, s: &mut Section<'_>, secret: SecretKey, required: bool) -> Option<Secret> {
        let SecretKey { key, file_key, env_var } = secret;
        let path = s.key_path(key);
        let inline = s.get(key).is_some().then(|| self.string(s, key, true)).flatten();
        let from_file = s.get(file_key).is_some().then(|| self.string(s, file_key, true)).flatten();
        if s.get(key).is_some() && s.get(file_key).is_some() {
            self.problem(&path, format!("give either {key} or {file_key}, not both"));
            return None;
        }
        if let Some(value) = (self.env)(env_var) {
            self.secret_sources.push((path, format!("environment variable {env_var}")));
            return Some(Secret::new(value.trim()));
        }
        if let Some(file) = from_file {
            let full = self.base_dir.join(&file);
            return match std::fs::read_to_string(&full) {
                Ok(text) if !text.trim().is_empty() => {
                    self.secret_sources.push((path, format!("file {}", full.display())));
                    Some(Secret::new(text.trim()))
                }
                Ok(_) => {
                    self.problem(s.key_path(file_key), format!("file {} is empty", full.display()));
                    None
                }
                Err(e) => {
                    self.problem(s.key_path(file_key), format!("cannot read {}: {e}", full.display()));
                    None
                }
            };
        }
        if let Some(value) = inline {
            self.secret_sources.push((path, "config file".into()));
            return Some(Secret::new(value));
        }
        if required && !self.problems.iter().any(|p| p.path.starts_with(&path)) {
            self.problem(path, format!("is missing (give {key}, {file_key}, or the environment variable {env_var})"));
        }
        None
    }

    /// A list of secrets: `<key>` (a list), `<key>_file` (one per line) or the
    /// environment variable (separated by commas or whitespace, and winning), like
    /// `webhooks.secrets` and `FOYER_WEBHOOK_SECRETS`. With where they came from.
    pub(super) fn secret_list(
        &mut self, s: &mut Section<'_>, key: &'static str, env_var: &str,
    ) -> Option<(Vec<String>, String)> {
        let (file_key, example) = match key {
            "secrets" => ("secrets_file", "[\"whsec_...\"]"),
            "token_secrets" => ("token_secrets_file", "[\"<at least 32 characters>\"]"),
            _ => unreachable!("every list of secrets has a _file twin"),
        };
        let path = s.key_path(key);
        let inline = s.get(key);
        let file = s.get(file_key);
        if inline.is_some() && file.is_some() {
            self.problem(&path, format!("give either {key} or {file_key}, not both"));
            return None;
        }
        if let Some(value) = (self.env)(env_var) {
            let list = value.split(|c: char| c == ',' || c.is_whitespace()).filter(|v| !v.is_empty());
            return Some((list.map(str::to_owned).collect(), format!("environment variable {env_var}")));
        }
        if file.is_some() {
            let file = self.string(s, file_key, true)?;
            let full = self.base_dir.join(&file);
            return match std::fs::read_to_string(&full) {
                Ok(text) => Some((
                    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
                    format!("file {}", full.display()),
                )),
                Err(e) => {
                    self.problem(s.key_path(file_key), format!("cannot read {}: {e}", full.display()));
                    None
                }
            };
        }
        match inline {
            Some(Value::Sequence(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(v) => out.push(v.clone()),
                        _ => self.problem(format!("{path}[{i}]"), "must be a string"),
                    }
                }
                (out.len() == items.len()).then_some((out, "config file".into()))
            }
            Some(_) => {
                self.problem(path, format!("must be a list of secrets, like {example}"));
                None
            }
            None => {
                self.problem(
                    path,
                    format!("is missing (give {key}, {file_key}, or the environment variable {env_var})"),
                );
                None
            }
        }
    }
}
