//! The YAML walker behind [`Config::load`]: collects every problem with its key path.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use base64::Engine as _;
use ruma::ServerName;
use serde_yaml::{Mapping, Value};
use url::Url;

use super::{
    ApiConfig, AppserviceConfig, ArchiveMode, Config, ConfigError, DatabaseConfig, DatabaseKind, HomeserverConfig,
    HomeserverListener, IngestConfig, JoinRule, LogFormat, LoggingConfig, PLACEHOLDER_MARK, Placeholders,
    PlatformConfig, Problem, RoomsConfig, SynapseAdminConfig, WebhookKey, WebhooksConfig, parse_duration,
};
use crate::secret::Secret;

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
const YEAR: Duration = Duration::from_secs(366 * 24 * 3600);
const MIN_TOKEN_LEN: usize = 32;

/// Parses and validates config text. `env` looks up environment variables (injected so
/// tests need not touch the process environment).
pub fn from_yaml_str(
    text: &str,
    display_path: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    placeholders: Placeholders,
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
        let token = self.secret(&mut ingest_section, "token", "FOYER_INGEST_TOKEN", false);
        let owncast = self.owncast(&mut ingest_section);
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
        let mut rooms_section = self.section(&mut top, "rooms", false).unwrap_or_else(|| Section::new("rooms", &empty));
        let rooms = self.rooms(&mut rooms_section);
        self.finish(rooms_section);
        let synapse_admin = self.section(&mut top, "synapse_admin", false).map(|mut s| {
            let r = self.secret(&mut s, "token", "FOYER_SYNAPSE_ADMIN_TOKEN", true);
            self.finish(s);
            r.map(|token| SynapseAdminConfig { token })
        });
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

        let rooms = rooms?;
        let synapse_admin = synapse_admin.flatten();
        if rooms.archive_mode == ArchiveMode::Delete && synapse_admin.is_none() {
            self.problem(
                "synapse_admin.token",
                "is required when rooms.archive_mode is delete (rooms are deleted through the Synapse admin API)",
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
            synapse_admin,
            ingest: ingest?,
            platform: platform?,
            logging: LoggingConfig { format: format? },
            admins: admins?,
            secret_sources: std::mem::take(&mut self.secret_sources),
        })
    }

    fn homeserver(&mut self, s: &mut Section<'_>) -> Option<HomeserverConfig> {
        let url = self.url(s, "url");
        let server_name = self.string(s, "server_name", true).and_then(|name| match ServerName::parse(&name) {
            Ok(server_name) => Some(server_name),
            Err(e) => {
                self.problem(s.key_path("server_name"), format!("{name:?} is not a valid Matrix server name ({e})"));
                None
            }
        });
        let startup_timeout = self.duration(
            s,
            "startup_timeout",
            Duration::from_secs(60),
            Duration::from_secs(1)..=Duration::from_secs(3600),
        );
        let signup_url = self.opt_url(s, "signup_url");
        Some(HomeserverConfig {
            url: url?,
            server_name: server_name?,
            startup_timeout: startup_timeout?,
            signup_url: signup_url?,
        })
    }

    fn appservice(&mut self, s: &mut Section<'_>, server_name: Option<&ServerName>) -> Option<AppserviceConfig> {
        let id = self.name(
            s,
            "id",
            "foyer",
            64,
            |c| c.is_ascii_alphanumeric() || "._-".contains(c),
            "letters, digits, '.', '_' and '-'",
        );
        let listen = self.string(s, "listen", false).unwrap_or_else(|| "127.0.0.1:29330".into());
        let listen = match listen.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(
                    s.key_path("listen"),
                    format!("{listen:?} is not an address; write IP:port, like 127.0.0.1:29330 or [::1]:29330"),
                );
                None
            }
        };
        let url = self.url(s, "url");
        let homeserver_listener = self.homeserver_listener(s, listen);
        let public_url = self.opt_url(s, "public_url");
        let as_token = self.secret(s, "as_token", "FOYER_AS_TOKEN", true);
        let hs_token = self.secret(s, "hs_token", "FOYER_HS_TOKEN", true);
        let sender = self.name(
            s,
            "sender_localpart",
            "foyer",
            255,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-/+".contains(c),
            "lowercase letters, digits and ._=-/+",
        );
        if let (Some(sender), Some(server_name)) = (&sender, server_name)
            && ruma::UserId::parse(format!("@{sender}:{server_name}")).is_err()
        {
            self.problem(
                s.key_path("sender_localpart"),
                format!("@{sender}:{server_name} is not a valid Matrix user ID"),
            );
        }
        let prefix = self.name(
            s,
            "alias_prefix",
            "live_",
            64,
            |c| c.is_ascii_alphanumeric() || "._=-".contains(c),
            "letters, digits and ._=-",
        );
        Some(AppserviceConfig {
            id: id?,
            listen: listen?,
            homeserver_listener: homeserver_listener?,
            public_url: public_url?.or_else(|| url.clone()),
            url: url?,
            as_token: as_token?,
            hs_token: hs_token?,
            sender_localpart: sender?,
            alias_prefix: prefix?,
        })
    }

    /// `appservice.homeserver_listen` and `appservice.homeserver_url`: the homeserver
    /// API's own listener, if any. `listen` is the main listener's address, when valid.
    fn homeserver_listener(
        &mut self,
        s: &mut Section<'_>,
        listen: Option<SocketAddr>,
    ) -> Option<Option<HomeserverListener>> {
        let url = self.opt_url(s, "homeserver_url");
        let Some(text) = self.string(s, "homeserver_listen", false) else {
            if matches!(url, Some(Some(_))) {
                self.problem(
                    s.key_path("homeserver_url"),
                    "is set but appservice.homeserver_listen is not; set both, or neither (the homeserver then uses appservice.url)",
                );
                return None;
            }
            return url.map(|_| None);
        };
        let Ok(addr) = text.parse::<SocketAddr>() else {
            self.problem(
                s.key_path("homeserver_listen"),
                format!("{text:?} is not an address; write IP:port, like 127.0.0.1:29331 or [::1]:29331"),
            );
            return None;
        };
        if let Some(main) = listen
            && main.port() == addr.port()
            && (main.ip() == addr.ip() || main.ip().is_unspecified() || addr.ip().is_unspecified())
        {
            self.problem(
                s.key_path("homeserver_listen"),
                format!("{addr} is appservice.listen's address too; give the homeserver API a port of its own"),
            );
            return None;
        }
        let url = match url? {
            Some(url) => url,
            None if addr.ip().is_unspecified() => {
                self.problem(
                    s.key_path("homeserver_url"),
                    format!(
                        "is required when appservice.homeserver_listen ({addr}) listens on every address: write the URL the homeserver reaches it at, like http://10.0.0.5:{}",
                        addr.port()
                    ),
                );
                return None;
            }
            // SocketAddr writes an IPv6 address in brackets, as a URL needs it.
            None => Url::parse(&format!("http://{addr}")).ok()?,
        };
        Some(Some(HomeserverListener { listen: addr, url }))
    }

    fn database(&mut self, s: &mut Section<'_>) -> Option<DatabaseConfig> {
        let max_connections = match s.get("max_connections") {
            None => Some(None),
            Some(v) => match v.as_u64() {
                Some(n @ 1..=500) => Some(Some(n as u32)),
                _ => {
                    self.problem(s.key_path("max_connections"), "must be a whole number from 1 to 500");
                    None
                }
            },
        };
        let acquire_timeout = self.duration(
            s,
            "acquire_timeout",
            Duration::from_secs(10),
            Duration::from_millis(100)..=Duration::from_secs(300),
        );
        let url = self.secret_value(s, "url", "FOYER_DATABASE_URL", false)?;
        let text = url.expose();
        let (url, kind) = if text.starts_with("sqlite:") {
            (Secret::new(sqlite_relative_to(text, &self.base_dir)), DatabaseKind::Sqlite)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            (url, DatabaseKind::Postgres)
        } else {
            self.problem(s.key_path("url"), "must start with sqlite:// or postgres://");
            return None;
        };
        Some(DatabaseConfig { url, kind, max_connections: max_connections?, acquire_timeout: acquire_timeout? })
    }

    fn webhooks(&mut self, s: &mut Section<'_>) -> Option<WebhooksConfig> {
        let tolerance = self.duration(
            s,
            "tolerance",
            Duration::from_secs(300),
            Duration::from_secs(1)..=Duration::from_secs(24 * 3600),
        );
        let path = s.key_path("secrets");
        let (values, source) = self.secret_list(s)?;
        self.secret_sources.push((path.clone(), source));
        if values.is_empty() {
            self.problem(&path, "must list at least one secret");
            return None;
        }
        let mut keys = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let at = format!("{path}[{i}]");
            if value.contains(PLACEHOLDER_MARK) {
                if self.placeholders == Placeholders::Refuse {
                    self.placeholder_problem(&at, "echo whsec_$(openssl rand -base64 32)");
                }
                keys.push(WebhookKey::new(value.as_bytes().to_vec()));
                continue;
            }
            if let Some(key) = self.webhook_key(&at, value) {
                keys.push(key);
            }
        }
        (keys.len() == values.len()).then_some(())?;
        Some(WebhooksConfig { secrets: keys, tolerance: tolerance? })
    }

    /// A Standard Webhooks secret (`whsec_` and base64 of at least 16 bytes) as its key.
    fn webhook_key(&mut self, at: &str, value: &str) -> Option<WebhookKey> {
        let Some(b64) = value.strip_prefix("whsec_") else {
            self.problem(at, "must start with whsec_ (a Standard Webhooks secret)");
            return None;
        };
        match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(bytes) if bytes.len() >= 16 => Some(WebhookKey::new(bytes)),
            Ok(bytes) => {
                self.problem(at, format!("key is {} bytes; use at least 16 (24 or 32 is usual)", bytes.len()));
                None
            }
            Err(_) => {
                self.problem(at, "the part after whsec_ is not valid base64");
                None
            }
        }
    }

    /// `platform`: `webhook_url` and `webhook_secret` (or `webhook_secret_file`, or
    /// `FOYER_PLATFORM_WEBHOOK_SECRET`), both required once the section is there.
    fn platform(&mut self, s: &mut Section<'_>) -> Option<Option<PlatformConfig>> {
        let url = self.webhook_url(s);
        let secret = self.secret_value(s, "webhook_secret", "FOYER_PLATFORM_WEBHOOK_SECRET", true);
        let path = s.key_path("webhook_secret");
        let key = secret.and_then(|secret| {
            let value = secret.expose();
            if value.contains(PLACEHOLDER_MARK) {
                if self.placeholders == Placeholders::Refuse {
                    self.placeholder_problem(&path, "echo whsec_$(openssl rand -base64 32)");
                    return None;
                }
                return Some(WebhookKey::new(value.as_bytes().to_vec()));
            }
            self.webhook_key(&path, value)
        });
        Some(Some(PlatformConfig { webhook_url: url?, webhook_secret: key? }))
    }

    /// `platform.webhook_url`: an http(s) URL with a host. Unlike a base URL it may carry
    /// a query (some receivers route by it); a fragment is never sent, so it is refused.
    fn webhook_url(&mut self, s: &mut Section<'_>) -> Option<Url> {
        let text = self.string(s, "webhook_url", true)?;
        let path = s.key_path("webhook_url");
        match Url::parse(&text) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                self.problem(path, format!("{text:?} must be an http:// or https:// URL"));
                None
            }
            Ok(url) if url.host_str().is_none() || url.fragment().is_some() => {
                self.problem(path, format!("{text:?} must have a host and no fragment"));
                None
            }
            Ok(url) => Some(url),
            Err(e) => {
                self.problem(path, format!("{text:?} is not a URL ({e})"));
                None
            }
        }
    }

    /// `ingest.owncast`: a mapping of channel id to that channel's Owncast webhook secret
    /// (the one Owncast's admin shows for the webhook), each a string or
    /// `{secret_file: /path}`. `FOYER_OWNCAST_SECRETS` (`channel=secret` pairs separated
    /// by commas or whitespace) replaces the whole mapping, like `FOYER_WEBHOOK_SECRETS`.
    fn owncast(&mut self, s: &mut Section<'_>) -> Option<BTreeMap<String, Secret>> {
        let path = s.key_path("owncast");
        let value = s.get("owncast");
        // (channel, key path, secret), checked together below.
        let mut entries: Vec<(String, String, String)> = Vec::new();
        if let Some(text) = (self.env)("FOYER_OWNCAST_SECRETS") {
            for pair in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|p| !p.is_empty()) {
                let Some((channel, secret)) = pair.split_once('=') else {
                    // The pair is not shown: it may be a secret without its channel.
                    self.problem(&path, "FOYER_OWNCAST_SECRETS must hold channel=secret pairs");
                    return None;
                };
                let at = format!("{path}.{channel}");
                self.secret_sources.push((at.clone(), "environment variable FOYER_OWNCAST_SECRETS".into()));
                entries.push((channel.to_owned(), at, secret.to_owned()));
            }
        } else {
            match value {
                None => {}
                Some(Value::Mapping(map)) => {
                    for (key, item) in map {
                        let Some(channel) = key.as_str() else {
                            self.problem(format!("{path}.{key:?}"), "channel ids must be strings");
                            continue;
                        };
                        let at = format!("{path}.{channel}");
                        match item {
                            Value::String(secret) => {
                                self.secret_sources.push((at.clone(), "config file".into()));
                                entries.push((channel.to_owned(), at, secret.trim().to_owned()));
                            }
                            Value::Mapping(m) if m.len() == 1 && m.get("secret_file").is_some_and(Value::is_string) => {
                                let file = m.get("secret_file").and_then(Value::as_str).unwrap_or_default();
                                let full = self.base_dir.join(file);
                                match std::fs::read_to_string(&full) {
                                    Ok(text) => {
                                        self.secret_sources.push((at.clone(), format!("file {}", full.display())));
                                        entries.push((channel.to_owned(), at, text.trim().to_owned()));
                                    }
                                    Err(e) => self.problem(
                                        format!("{at}.secret_file"),
                                        format!("cannot read {}: {e}", full.display()),
                                    ),
                                }
                            }
                            _ => {
                                self.problem(at, "must be the channel's Owncast webhook secret or {secret_file: /path}")
                            }
                        }
                    }
                }
                Some(_) => self.problem(&path, "must map channel ids to Owncast webhook secrets"),
            }
        }
        let before = self.problems.len();
        let mut secrets = BTreeMap::new();
        for (channel, at, secret) in entries {
            if let Err(e) = crate::model::ExternalId::parse(&channel) {
                self.problem(&at, format!("channel id {e}"));
            } else if secret.is_empty() {
                self.problem(&at, "is empty");
            } else if secret.contains(PLACEHOLDER_MARK) && self.placeholders == Placeholders::Refuse {
                self.placeholder_problem(&at, "Owncast's admin, Integrations → Webhooks");
            } else if secrets.insert(channel, Secret::new(secret)).is_some() {
                self.problem(&at, "is given twice");
            }
        }
        (self.problems.len() == before).then_some(secrets)
    }

    /// `admins`: Matrix user IDs, any server (an admin may live on another homeserver).
    fn admins(&mut self, s: &mut Section<'_>, server_name: Option<&ServerName>) -> Option<Vec<ruma::OwnedUserId>> {
        let Some(value) = s.get("admins") else { return Some(Vec::new()) };
        let Value::Sequence(items) = value else {
            let example = server_name.map_or("example.org".to_owned(), |n| n.to_string());
            self.problem(
                s.key_path("admins"),
                format!("must be a list of Matrix user IDs, like [\"@alice:{example}\"]"),
            );
            return None;
        };
        let mut admins = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", s.key_path("admins"));
            match item.as_str().map(ruma::UserId::parse) {
                Some(Ok(user)) => admins.push(user),
                Some(Err(e)) => {
                    self.problem(path, format!("{:?} is not a Matrix user ID ({e})", item.as_str().unwrap_or("")))
                }
                None => self.problem(path, "must be a Matrix user ID in quotes, like \"@alice:example.org\""),
            }
        }
        (admins.len() == items.len()).then_some(admins)
    }

    fn api(&mut self, s: &mut Section<'_>) -> Option<ApiConfig> {
        self.secret(s, "token", "FOYER_API_TOKEN", true).map(|token| ApiConfig { token })
    }

    fn rooms(&mut self, s: &mut Section<'_>) -> Option<RoomsConfig> {
        let week = Duration::ZERO..=WEEK;
        let open_before = self.duration(s, "open_before", Duration::from_secs(30 * 60), week.clone());
        let close_after = self.duration(s, "close_after", Duration::from_secs(3600), week.clone());
        let max_overrun = self.duration(s, "max_overrun", Duration::from_secs(6 * 3600), week);
        let archive_mode = self.choice(
            s,
            "archive_mode",
            ArchiveMode::ReadOnly,
            &[("read_only", ArchiveMode::ReadOnly), ("kick", ArchiveMode::Kick), ("delete", ArchiveMode::Delete)],
        );
        let join_rule =
            self.choice(s, "join_rule", JoinRule::Invite, &[("invite", JoinRule::Invite), ("knock", JoinRule::Knock)]);
        let reminders = self.durations(s, "reminders", vec![Duration::from_secs(600)], Duration::from_secs(1)..=WEEK);
        let closing_warning = self.duration(s, "closing_warning", Duration::from_secs(300), Duration::ZERO..=WEEK);
        let allow_http_stream_urls = self.flag(s, "allow_http_stream_urls", false);
        let transcript = self.on_off(s, "transcript", false);
        let transcript_retention =
            self.duration(s, "transcript_retention", Duration::from_secs(30 * 86400), Duration::from_secs(60)..=YEAR);
        let transcript_wait = self.duration(s, "transcript_wait", Duration::from_secs(600), Duration::ZERO..=WEEK);
        Some(RoomsConfig {
            transcript: transcript?,
            transcript_retention: transcript_retention?,
            transcript_wait: transcript_wait?,
            reminders: reminders?,
            closing_warning: closing_warning?,
            open_before: open_before?,
            close_after: close_after?,
            max_overrun: max_overrun?,
            archive_mode: archive_mode?,
            join_rule: join_rule?,
            allow_http_stream_urls: allow_http_stream_urls?,
        })
    }

    // ---- building blocks ----

    fn section<'y>(&mut self, parent: &mut Section<'y>, key: &'static str, required: bool) -> Option<Section<'y>> {
        let path = parent.key_path(key);
        match parent.get(key) {
            Some(Value::Mapping(map)) => Some(Section::new(&path, map)),
            Some(_) => {
                self.problem(path, "must be a mapping of keys");
                None
            }
            None if required => {
                self.problem(path, "is missing (a required section)");
                None
            }
            None => None,
        }
    }

    /// Reports every key of the section that nothing asked for.
    fn finish(&mut self, section: Section<'_>) {
        for key in section.map.keys() {
            let Some(name) = key.as_str() else {
                self.problem(section.key_path(&format!("{key:?}")), "keys must be strings");
                continue;
            };
            if section.known.contains(name) {
                continue;
            }
            let hint = closest(name, &section.known).map(|k| format!(" (did you mean {k}?)")).unwrap_or_default();
            self.problem(section.key_path(name), format!("unknown key{hint}"));
        }
    }

    fn string(&mut self, s: &mut Section<'_>, key: &'static str, required: bool) -> Option<String> {
        match s.get(key) {
            Some(Value::String(v)) if v.trim().is_empty() => {
                self.problem(s.key_path(key), "is empty");
                None
            }
            Some(Value::String(v)) => Some(v.clone()),
            Some(_) => {
                self.problem(s.key_path(key), "must be a string (put it in quotes)");
                None
            }
            None if required => {
                self.problem(s.key_path(key), "is missing");
                None
            }
            None => None,
        }
    }

    /// An identifier-like string (with a default) made of the allowed characters.
    fn name(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        default: &str,
        max_len: usize,
        allowed: impl Fn(char) -> bool,
        described: &str,
    ) -> Option<String> {
        let value = self.string(s, key, false).unwrap_or_else(|| default.to_owned());
        if value.chars().count() > max_len || !value.chars().all(allowed) {
            self.problem(s.key_path(key), format!("{value:?} must be 1 to {max_len} characters: {described}"));
            return None;
        }
        Some(value)
    }

    /// An optional base URL: `Some(None)` when absent, `None` when given but wrong.
    fn opt_url(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<Option<Url>> {
        if s.get(key).is_none() {
            return Some(None);
        }
        self.url(s, key).map(Some)
    }

    fn url(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<Url> {
        let text = self.string(s, key, true)?;
        match Url::parse(&text) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                self.problem(s.key_path(key), format!("{text:?} must be an http:// or https:// URL"));
                None
            }
            Ok(url) if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() => {
                self.problem(
                    s.key_path(key),
                    format!("{text:?} must be a base URL with a host and without query or fragment"),
                );
                None
            }
            Ok(url) => Some(url),
            Err(e) => {
                self.problem(s.key_path(key), format!("{text:?} is not a URL ({e})"));
                None
            }
        }
    }

    fn duration(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Option<Duration> {
        let Some(value) = s.get(key) else {
            return Some(default);
        };
        let Value::String(text) = value else {
            self.problem(s.key_path(key), "must be a duration string with a unit, like 90s, 30m or 2h");
            return None;
        };
        match parse_duration(text) {
            Ok(d) if range.contains(&d) => Some(d),
            Ok(_) => {
                self.problem(
                    s.key_path(key),
                    format!(
                        "{text} is out of range; use {} to {}",
                        super::format_duration(*range.start()),
                        super::format_duration(*range.end())
                    ),
                );
                None
            }
            Err(message) => {
                self.problem(s.key_path(key), message);
                None
            }
        }
    }

    /// A list of durations, like `[10m, 1h]`.
    fn durations(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        default: Vec<Duration>,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Option<Vec<Duration>> {
        let Some(value) = s.get(key) else { return Some(default) };
        let Value::Sequence(items) = value else {
            self.problem(s.key_path(key), "must be a list of durations, like [10m, 1h]");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", s.key_path(key));
            match item.as_str().map(parse_duration) {
                Some(Ok(d)) if range.contains(&d) => out.push(d),
                Some(Ok(_)) => self.problem(
                    path,
                    format!(
                        "is out of range; use {} to {}",
                        super::format_duration(*range.start()),
                        super::format_duration(*range.end())
                    ),
                ),
                Some(Err(message)) => self.problem(path, message),
                None => self.problem(path, "must be a duration string with a unit, like 10m"),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    /// `true` or `false` (YAML booleans, not `yes`/`no` strings), with a default.
    fn flag(&mut self, s: &mut Section<'_>, key: &'static str, default: bool) -> Option<bool> {
        match s.get(key) {
            None => Some(default),
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.problem(s.key_path(key), "must be true or false");
                None
            }
        }
    }

    /// `on` or `off` (YAML 1.1's booleans, which admins write, are taken too).
    fn on_off(&mut self, s: &mut Section<'_>, key: &'static str, default: bool) -> Option<bool> {
        match s.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => self.choice(s, key, default, &[("on", true), ("off", false)]),
        }
    }

    fn choice<T: Copy>(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        default: T,
        options: &[(&str, T)],
    ) -> Option<T> {
        let Some(text) = self.string(s, key, false) else {
            return (!self.problems.iter().any(|p| p.path == s.key_path(key))).then_some(default);
        };
        let found = options.iter().find(|(name, _)| *name == text).map(|(_, v)| *v);
        if found.is_none() {
            let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
            self.problem(s.key_path(key), format!("{text:?} is not one of: {}", names.join(", ")));
        }
        found
    }

    /// A token: from `<key>`, `<key>_file`, or the environment variable (which wins).
    /// Tokens need at least 32 characters and must not be the example's placeholder.
    fn secret(&mut self, s: &mut Section<'_>, key: &'static str, env_var: &str, required: bool) -> Option<Secret> {
        let secret = self.secret_value(s, key, env_var, required)?;
        let path = s.key_path(key);
        let value = secret.expose();
        if value.contains(PLACEHOLDER_MARK) {
            if self.placeholders == Placeholders::Refuse {
                self.placeholder_problem(&path, "openssl rand -hex 32");
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

    fn placeholder_problem(&mut self, path: &str, generate: &str) {
        self.problem(path, format!(
            "still holds the placeholder from config.example.yaml ({PLACEHOLDER_MARK}…); put a random value there, for example from `{generate}`"
        ));
    }

    /// Reads a secret's raw value from its three possible sources, records which one.
    fn secret_value(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        env_var: &str,
        required: bool,
    ) -> Option<Secret> {
        let file_key: &'static str = match key {
            "as_token" => "as_token_file",
            "hs_token" => "hs_token_file",
            "token" => "token_file",
            "url" => "url_file",
            "webhook_secret" => "webhook_secret_file",
            _ => unreachable!("every secret key has a _file twin"),
        };
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

    /// `webhooks.secrets` (a list), `secrets_file` (one per line) or
    /// `FOYER_WEBHOOK_SECRETS` (separated by commas or whitespace).
    fn secret_list(&mut self, s: &mut Section<'_>) -> Option<(Vec<String>, String)> {
        let path = s.key_path("secrets");
        let inline = s.get("secrets");
        let file = s.get("secrets_file");
        if inline.is_some() && file.is_some() {
            self.problem(&path, "give either secrets or secrets_file, not both");
            return None;
        }
        if let Some(value) = (self.env)("FOYER_WEBHOOK_SECRETS") {
            let list = value.split(|c: char| c == ',' || c.is_whitespace()).filter(|v| !v.is_empty());
            return Some((list.map(str::to_owned).collect(), "environment variable FOYER_WEBHOOK_SECRETS".into()));
        }
        if file.is_some() {
            let file = self.string(s, "secrets_file", true)?;
            let full = self.base_dir.join(&file);
            return match std::fs::read_to_string(&full) {
                Ok(text) => Some((
                    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
                    format!("file {}", full.display()),
                )),
                Err(e) => {
                    self.problem(s.key_path("secrets_file"), format!("cannot read {}: {e}", full.display()));
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
                self.problem(path, "must be a list of secrets, like [\"whsec_...\"]");
                None
            }
            None => {
                self.problem(
                    path,
                    "is missing (give secrets, secrets_file, or the environment variable FOYER_WEBHOOK_SECRETS)",
                );
                None
            }
        }
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

/// The known key nearest to a misspelt one, if it is near enough to be a typo.
fn closest<'k>(name: &str, known: &BTreeSet<&'k str>) -> Option<&'k str> {
    known.iter().map(|k| (edit_distance(name, k), *k)).filter(|(d, k)| *d <= 2.max(k.len() / 4)).min().map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
