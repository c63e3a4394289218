//! Each section of the config read key by key: homeserver, appservice, database,
//! webhooks, platform, ingest (Owncast), admins, api and rooms.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use base64::Engine as _;
use ruma::ServerName;
use serde_yaml::Value;
use url::Url;

use super::{Section, Walker, secrets::SecretKey, sqlite_relative_to};
use crate::{
    config::{
        ApiConfig, AppserviceConfig, ArchiveMode, DatabaseConfig, DatabaseKind, HomeserverConfig, HomeserverListener,
        JoinPace, JoinRule, PLACEHOLDER_MARK, Placeholders, PlatformConfig, RoomsConfig, SeriesConfig, WebhookKey,
        WebhooksConfig,
    },
    model::{AutoJoin, ChatRules, RulesOverride},
    secret::Secret,
};

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
const YEAR: Duration = Duration::from_secs(366 * 24 * 3600);

impl Walker<'_> {
    /// `series`: how far ahead occurrences are made, from a minute (tests) to a year.
    pub(super) fn series(&mut self, s: &mut Section<'_>) -> Option<SeriesConfig> {
        let horizon = self.duration(s, "horizon", SeriesConfig::default().horizon, Duration::from_secs(60)..=YEAR);
        Some(SeriesConfig { horizon: horizon? })
    }

    pub(super) fn homeserver(&mut self, s: &mut Section<'_>) -> Option<HomeserverConfig> {
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

    pub(super) fn appservice(
        &mut self, s: &mut Section<'_>, server_name: Option<&ServerName>,
    ) -> Option<AppserviceConfig> {
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
        let as_token = self.secret(s, SecretKey::AS_TOKEN, true);
        let hs_token = self.secret(s, SecretKey::HS_TOKEN, true);
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
    pub(super) fn homeserver_listener(
        &mut self, s: &mut Section<'_>, listen: Option<SocketAddr>,
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

    pub(super) fn database(&mut self, s: &mut Section<'_>) -> Option<DatabaseConfig> {
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
        let url = self.secret_value(s, SecretKey::DATABASE_URL, false)?;
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

    pub(super) fn webhooks(&mut self, s: &mut Section<'_>) -> Option<WebhooksConfig> {
        let tolerance = self.duration(
            s,
            "tolerance",
            Duration::from_secs(300),
            Duration::from_secs(1)..=Duration::from_secs(24 * 3600),
        );
        let path = s.key_path("secrets");
        let (values, source) = self.secret_list(s, "secrets", "FOYER_WEBHOOK_SECRETS")?;
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
    pub(super) fn webhook_key(&mut self, at: &str, value: &str) -> Option<WebhookKey> {
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
    pub(super) fn platform(&mut self, s: &mut Section<'_>) -> Option<Option<PlatformConfig>> {
        let url = self.webhook_url(s);
        let secret = self.secret_value(s, SecretKey::WEBHOOK_SECRET, true);
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
    pub(super) fn webhook_url(&mut self, s: &mut Section<'_>) -> Option<Url> {
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
    pub(super) fn owncast(&mut self, s: &mut Section<'_>) -> Option<BTreeMap<String, Secret>> {
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
    pub(super) fn admins(
        &mut self, s: &mut Section<'_>, server_name: Option<&ServerName>,
    ) -> Option<Vec<ruma::OwnedUserId>> {
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

    pub(super) fn api(&mut self, s: &mut Section<'_>) -> Option<ApiConfig> {
        self.secret(s, SecretKey::API_TOKEN, true).map(|token| ApiConfig { token })
    }

    /// `rooms.rules`: the chat rules every show starts from (`model::rules`), as a
    /// reservation's `chat.rules` writes them, checked the same way.
    fn rules(&mut self, s: &mut Section<'_>) -> Option<ChatRules> {
        let Some(value) = s.get("rules") else { return Some(ChatRules::default()) };
        let path = s.key_path("rules");
        let json = match serde_json::to_value(value) {
            Ok(json) => json,
            Err(e) => {
                self.problem(path, format!("must be a mapping of rules: {e}"));
                return None;
            }
        };
        match RulesOverride::parse(&json, &path).and_then(|over| ChatRules::default().with(&over)) {
            Ok(rules) => Some(rules),
            Err(e) => {
                self.problem(e.path, e.message);
                None
            }
        }
    }

    /// `rooms.join_pace`: joins a second, a number.
    fn join_pace(&mut self, s: &mut Section<'_>) -> Option<JoinPace> {
        let Some(value) = s.get("join_pace") else { return Some(JoinPace::default()) };
        match value
            .as_f64()
            .ok_or_else(|| "must be a number of joins a second, like 0.8".to_owned())
            .and_then(JoinPace::new)
        {
            Ok(pace) => Some(pace),
            Err(message) => {
                self.problem(s.key_path("join_pace"), message);
                None
            }
        }
    }

    /// `server_name` is `homeserver.server_name`, `None` when that is wrong (and
    /// reported).
    pub(super) fn rooms(&mut self, s: &mut Section<'_>, server_name: Option<&ServerName>) -> Option<RoomsConfig> {
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
        // 24 hours and 15 minutes before: the followers' reminders (docs/followers.md); the
        // ones after the room opens are also its countdown notices.
        let reminders = vec![Duration::from_secs(24 * 3600), Duration::from_secs(15 * 60)];
        let reminders = self.durations(s, "reminders", reminders, Duration::from_secs(1)..=WEEK);
        let closing_warning = self.duration(s, "closing_warning", Duration::from_secs(300), Duration::ZERO..=WEEK);
        let allow_http_stream_urls = self.flag(s, "allow_http_stream_urls", false);
        let transcript = self.on_off(s, "transcript", false);
        let transcript_retention =
            self.duration(s, "transcript_retention", Duration::from_secs(30 * 86400), Duration::from_secs(60)..=YEAR);
        let transcript_wait = self.duration(s, "transcript_wait", Duration::from_secs(600), Duration::ZERO..=WEEK);
        let rules = self.rules(s);
        let auto_join =
            self.choice(s, "auto_join", AutoJoin::Off, &[("off", AutoJoin::Off), ("local", AutoJoin::Local)]);
        let join_pace = self.join_pace(s);
        Some(RoomsConfig {
            auto_join: auto_join?,
            join_pace: join_pace?,
            rules: rules?,
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
            // Read from the `ingest` section (config/load/mod.rs).
            reconnect_grace: Duration::from_secs(10),
            server_name: server_name?.to_owned(),
            // Set from the `synapse_admin` section (config/load/mod.rs).
            admin_join: false,
        })
    }
}
