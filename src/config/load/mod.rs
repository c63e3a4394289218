//! The YAML walker behind [`Config::load`]: collects every problem with its key path.
//!
//! This file holds the walker and the top level, section by section; `values.rs` the
//! building blocks that read one key of a mapping with its key path (strings, URLs,
//! durations, flags, choices, unknown keys); `sections.rs` each section's keys;
//! `secrets.rs` tokens and secrets from the file, a `_file` or the environment;
//! `webchat.rs` the `webchat` section.

mod secrets;
mod sections;
mod values;
mod webchat;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_yaml::{Mapping, Value};

use super::{
    ArchiveMode, CalendarConfig, Config, ConfigError, DatabaseConfig, DatabaseKind, IngestConfig, LogFormat,
    LoggingConfig, Placeholders, Problem, SynapseAdminConfig,
};
use secrets::SecretKey;

use crate::{model::AutoJoin, secret::Secret};

/// Parses and validates config text. `env` looks up environment variables (injected so
/// tests need not touch the process environment).
pub fn from_yaml_str(
    text: &str, display_path: &str, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>, placeholders: Placeholders,
) -> Result<Config, ConfigError> {
    let root: Value = serde_yaml::from_str(text)
        .map_err(|e| ConfigError::Yaml { path: display_path.to_owned(), message: e.to_string() })?;
    let mut walker =
        Walker { problems: Vec::new(), env, base_dir: base_dir.to_owned(), placeholders, secret_sources: Vec::new() };
    let empty = Mapping::new();
    let root_map = match &root {
        Value::Mapping(map) => map,
        Value::Null => &empty,
        _ => {
            walker.problem("(top level)", "must be a mapping of sections (homeserver, appservice, …)");
            &empty
        }
    };
    let config = walker.config(root_map);
    match config {
        Some(config) if walker.problems.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid { path: display_path.to_owned(), problems: walker.problems }),
    }
}

/// A mapping being read; remembers which keys were asked for, so the rest are unknown.
struct Section<'y> {
    path: String,
    map: &'y Mapping,
    known: BTreeSet<&'static str>,
}

impl<'y> Section<'y> {
    fn new(path: &str, map: &'y Mapping) -> Self {
        Self { path: path.to_owned(), map, known: BTreeSet::new() }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// The value at `key`, treating an explicit `null` as absent.
    fn get(&mut self, key: &'static str) -> Option<&'y Value> {
        self.known.insert(key);
        self.map.get(key).filter(|v| !v.is_null())
    }
}

struct Walker<'e> {
    problems: Vec<Problem>,
    env: &'e dyn Fn(&str) -> Option<String>,
    base_dir: PathBuf,
    placeholders: Placeholders,
    secret_sources: Vec<(String, String)>,
}

impl Walker<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), message: message.into() });
    }

    fn config(&mut self, root: &Mapping) -> Option<Config> {
        let mut top = Section::new("", root);
        let homeserver = self.section(&mut top, "homeserver", true).map(|mut s| {
            let r = self.homeserver(&mut s);
            self.finish(s);
            r
        });
        let server_name = homeserver.as_ref().and_then(|h| h.as_ref().map(|h| h.server_name.clone()));
        let appservice = self.section(&mut top, "appservice", true).map(|mut s| {
            let r = self.appservice(&mut s, server_name.as_deref());
            self.finish(s);
            r
        });
        let database = match self.section(&mut top, "database", false) {
            Some(mut s) => {
                let r = self.database(&mut s);
                self.finish(s);
                r
            }
            None => Some(DatabaseConfig {
                url: Secret::new(sqlite_relative_to("sqlite://foyer.db", &self.base_dir)),
                kind: DatabaseKind::Sqlite,
                max_connections: None,
                acquire_timeout: Duration::from_secs(10),
            }),
        };
        let webhooks = self.section(&mut top, "webhooks", true).map(|mut s| {
            let r = self.webhooks(&mut s);
            self.finish(s);
            r
        });
        let api = self.section(&mut top, "api", true).map(|mut s| {
            let r = self.api(&mut s);
            self.finish(s);
            r
        });
        let empty = Mapping::new();
        // Read without the section too: the token may come from FOYER_INGEST_TOKEN alone.
        let mut ingest_section =
            self.section(&mut top, "ingest", false).unwrap_or_else(|| Section::new("ingest", &empty));
        let token = self.secret(&mut ingest_section, SecretKey::INGEST_TOKEN, false);
        let owncast = self.owncast(&mut ingest_section);
        let grace_range = Duration::ZERO..=Duration::from_secs(600);
        let reconnect_grace =
            self.duration(&mut ingest_section, "reconnect_grace", Duration::from_secs(10), grace_range);
        self.finish(ingest_section);
        let ingest = owncast.map(|owncast| IngestConfig { token, owncast });
        let platform = match self.section(&mut top, "platform", false) {
            Some(mut s) => {
                let r = self.platform(&mut s);
                self.finish(s);
                r
            }
            None => Some(None),
        };
        let webchat = match self.section(&mut top, "webchat", false) {
            Some(mut s) => {
                let r = self.webchat(&mut s, appservice.as_ref().and_then(Option::as_ref));
                self.finish(s);
                r.map(Some)
            }
            None => Some(None),
        };
        let mut rooms_section = self.section(&mut top, "rooms", false).unwrap_or_else(|| Section::new("rooms", &empty));
        let rooms = self.rooms(&mut rooms_section, server_name.as_deref());
        self.finish(rooms_section);
        let mut series_section =
            self.section(&mut top, "series", false).unwrap_or_else(|| Section::new("series", &empty));
        let series = self.series(&mut series_section);
        self.finish(series_section);
        let synapse_admin = self.section(&mut top, "synapse_admin", false).map(|mut s| {
            let r = self.secret(&mut s, SecretKey::SYNAPSE_ADMIN_TOKEN, true);
            self.finish(s);
            r.map(|token| SynapseAdminConfig { token })
        });
        // Read without the section too: the key may come from FOYER_CALENDAR_FEED_KEY alone.
        let mut calendar_section =
            self.section(&mut top, "calendar", false).unwrap_or_else(|| Section::new("calendar", &empty));
        let calendar_public = self.flag(&mut calendar_section, "public", false);
        let feed_key = self.secret(&mut calendar_section, SecretKey::CALENDAR_FEED_KEY, false);
        self.finish(calendar_section);
        let mut logging_section =
            self.section(&mut top, "logging", false).unwrap_or_else(|| Section::new("logging", &empty));
        let format = self.choice(
            &mut logging_section,
            "format",
            LogFormat::Pretty,
            &[("pretty", LogFormat::Pretty), ("json", LogFormat::Json)],
        );
        self.finish(logging_section);
        let admins = self.admins(&mut top, server_name.as_deref());
        self.finish(top);

        let mut rooms = rooms?;
        rooms.reconnect_grace = reconnect_grace?;
        let synapse_admin = synapse_admin.flatten();
        if rooms.archive_mode == ArchiveMode::Delete && synapse_admin.is_none() {
            self.problem(
                "synapse_admin.token",
                "is required when rooms.archive_mode is delete (rooms are deleted through the Synapse admin API)",
            );
        }
        rooms.admin_join = synapse_admin.is_some();
        if rooms.auto_join == AutoJoin::Local && synapse_admin.is_none() {
            self.problem(
                "synapse_admin.token",
                "is required when rooms.auto_join is local (holders are joined through the Synapse admin API, by that token's user)",
            );
        }
        let appservice = appservice??;
        if appservice.as_token == appservice.hs_token {
            self.problem("appservice.hs_token", "must differ from appservice.as_token");
        }
        Some(Config {
            homeserver: homeserver??,
            appservice,
            database: database?,
            webhooks: webhooks??,
            api: api??,
            rooms,
            series: series?,
            synapse_admin,
            calendar: CalendarConfig { public: calendar_public?, feed_key },
            ingest: ingest?,
            platform: platform?,
            webchat: webchat?,
            logging: LoggingConfig { format: format? },
            admins: admins?,
            secret_sources: std::mem::take(&mut self.secret_sources),
        })
    }
}

/// Resolves a relative SQLite path against the config file's directory, like every
/// other path in the config: `sqlite://foyer.db` next to `/etc/foyer/config.yaml` is
/// `/etc/foyer/foyer.db`, wherever Foyer is started from.
fn sqlite_relative_to(url: &str, base_dir: &Path) -> String {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let (path, query) = rest.split_once('?').map_or((rest, None), |(p, q)| (p, Some(q)));
    if path.is_empty() || path.starts_with(':') || Path::new(path).is_absolute() || base_dir.as_os_str().is_empty() {
        return url.to_owned();
    }
    let joined = base_dir.join(path);
    match query {
        Some(q) => format!("sqlite://{}?{q}", joined.display()),
        None => format!("sqlite://{}", joined.display()),
    }
}
