//! The config file: typed, validated as a whole, every problem named by its key path.
//!
//! Loading walks the YAML tree by hand instead of using `#[serde(deny_unknown_fields)]`,
//! so that one run reports *every* problem (unknown keys, missing keys, bad values)
//! rather than stopping at the first.

mod duration;
mod load;
mod webchat;

use std::{fmt, net::SocketAddr, path::Path, time::Duration};

use ruma::{OwnedRoomAliasId, OwnedServerName, OwnedUserId, UserId};
use url::Url;

pub use self::duration::{format_duration, parse_duration};
pub use self::load::from_yaml_str;
pub use self::webchat::{DEFAULT_PUPPET_PREFIX, Origin, TrustedProxy, WebchatConfig};
/// `rooms.auto_join`'s values, for the modules that read the config but not the model
/// (`online`).
pub use crate::model::AutoJoin;
use crate::{
    model::{ReservationId, naming},
    secret::Secret,
};

/// Marks the values in `config.example.yaml` that must be replaced before serving.
pub const PLACEHOLDER_MARK: &str = "CHANGE_ME";

#[derive(Debug, Clone)]
pub struct Config {
    pub homeserver: HomeserverConfig,
    pub appservice: AppserviceConfig,
    pub database: DatabaseConfig,
    pub webhooks: WebhooksConfig,
    pub api: ApiConfig,
    pub ingest: IngestConfig,
    /// Where Foyer sends its own events (docs/hearing-back.md); `None` sends none.
    pub platform: Option<PlatformConfig>,
    /// The chat beside the player (docs/web-chat.md); `None` is web chat off.
    pub webchat: Option<WebchatConfig>,
    pub rooms: RoomsConfig,
    pub series: SeriesConfig,
    pub synapse_admin: Option<SynapseAdminConfig>,
    pub calendar: CalendarConfig,
    pub logging: LoggingConfig,
    /// Users who may give the bot `!foyer` commands in a direct room.
    pub admins: Vec<ruma::OwnedUserId>,
    /// Where each secret came from (`config`, a file, an environment variable), for
    /// `check-config`'s summary. Never the secret itself.
    pub secret_sources: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct HomeserverConfig {
    pub url: Url,
    pub server_name: OwnedServerName,
    /// How long `serve` waits for the homeserver at start-up before giving up (exit 2).
    pub startup_timeout: Duration,
    /// Where people without an account sign up; the claim page links to it.
    pub signup_url: Option<Url>,
}

#[derive(Debug, Clone)]
pub struct AppserviceConfig {
    pub id: String,
    /// The main listener: webhooks, ingest, read API, pages, health and metrics, and the
    /// homeserver API unless it has a listener of its own.
    pub listen: SocketAddr,
    /// `appservice.homeserver_listen`: the homeserver API's own listener, which no
    /// stranger's connections can fill.
    pub homeserver_listener: Option<HomeserverListener>,
    /// How the homeserver reaches the main listener (the registration's `url` unless
    /// the homeserver API has a listener of its own); the public pages' default URL.
    pub url: Url,
    /// Where people reach Foyer's public pages (the claim page); `url` when not set.
    pub public_url: Option<Url>,
    pub as_token: Secret,
    pub hs_token: Secret,
    pub sender_localpart: String,
    pub alias_prefix: String,
}

/// The homeserver API's own listener: where it listens, and the URL the homeserver
/// reaches it at (the registration's `url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeserverListener {
    pub listen: SocketAddr,
    /// `appservice.homeserver_url`, by default `http://<listen>`.
    pub url: Url,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// May carry a password (PostgreSQL), hence a secret.
    pub url: Secret,
    pub kind: DatabaseKind,
    /// Connections in the pool; `None` for the backend's default (SQLite 4, PostgreSQL 16).
    pub max_connections: Option<u32>,
    /// How long a query waits for a free connection before the request gets a 503.
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    pub secrets: Vec<WebhookKey>,
    pub tolerance: Duration,
}

/// The HMAC key of one Standard Webhooks secret: the base64-decoded part after `whsec_`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookKey(Vec<u8>);

impl WebhookKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookKey([redacted])")
    }
}

/// `platform`: the endpoint Foyer's outbound events go to, and the Standard Webhooks
/// secret they are signed with. Both or neither: an unsigned event could be forged.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub webhook_url: Url,
    pub webhook_secret: WebhookKey,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub token: Secret,
}

/// Calendar feeds (docs/calendar.md); the section is optional.
#[derive(Debug, Clone, Default)]
pub struct CalendarConfig {
    /// `calendar.public`: channels' feeds are read without the API token (a ticketed
    /// show's schedule may not be public, so this is off by default).
    pub public: bool,
    /// `calendar.feed_key`: signs holders' own feed URLs; without it holders have none.
    pub feed_key: Option<Secret>,
}

/// Streaming servers' hooks (`/ingest/v1/...`, docs/streaming-servers.md).
#[derive(Debug, Clone, Default)]
pub struct IngestConfig {
    /// When set, a publish hook's URL must carry it as `?token=`.
    pub token: Option<Secret>,
    /// `ingest.owncast`: each Owncast channel's webhook secret, by channel id (the
    /// reservation's `channel.id`). A channel not listed cannot send Owncast webhooks.
    pub owncast: std::collections::BTreeMap<String, Secret>,
}

/// `series`: recurring series (docs/series.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesConfig {
    /// `series.horizon` (default 60 days): how far ahead a series' occurrences are made.
    pub horizon: Duration,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        Self { horizon: Duration::from_secs(60 * 24 * 3600) }
    }
}

#[derive(Debug, Clone)]
pub struct RoomsConfig {
    pub open_before: Duration,
    pub close_after: Duration,
    pub max_overrun: Duration,
    pub archive_mode: ArchiveMode,
    pub join_rule: JoinRule,
    /// Countdown notices this long before `starts_at`.
    pub reminders: Vec<Duration>,
    /// A warning this long before `archives_at`; zero for none.
    pub closing_warning: Duration,
    /// Whether a reservation's `stream_url` may be plain `http` (default: `https` only).
    pub allow_http_stream_urls: bool,
    /// `ingest.reconnect_grace` (default 10 s), which planning needs: a stream down for
    /// less than it and up again posts no "ended" or "live" notice (docs/replay.md).
    pub reconnect_grace: Duration,
    /// Whether rooms' chats are saved at archive (`rooms.transcript: on`) unless a
    /// reservation's `chat.transcript` says otherwise.
    pub transcript: bool,
    /// How long a transcript is kept after it was made.
    pub transcript_retention: Duration,
    /// How long the archive waits for a transcript that cannot be made, after the
    /// archive was due; then the room is archived without one.
    pub transcript_wait: Duration,
    /// The chat rules every show starts from; a reservation's `chat.rules` overrides them.
    pub rules: crate::model::ChatRules,
    /// Whether Foyer joins local ticket holders itself (through the Synapse admin join)
    /// unless a reservation's `chat.auto_join` says otherwise.
    pub auto_join: crate::model::AutoJoin,
    /// How fast Foyer's own joins (auto-joins, web fans' users) go into one room.
    pub join_pace: JoinPace,
    /// `synapse_admin.token` is configured, which `auto_join` needs: without it holders
    /// are invited whatever a reservation asks.
    pub admin_join: bool,
    /// `homeserver.server_name`, which planning needs: only this server's users can be
    /// joined by its admin API (`auto_join`).
    pub server_name: ruma::OwnedServerName,
}

/// `rooms.join_pace`: Foyer's own joins a second into one room. Synapse counts every join
/// into a room against `rc_joins_per_room` (by default one a second, ten at once), those it
/// does not check too; below that rate, a person's own join still gets through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JoinPace(f64);

impl JoinPace {
    pub const MAX: f64 = 1000.0;

    pub fn new(per_second: f64) -> Result<Self, String> {
        if !(per_second > 0.0 && per_second <= Self::MAX) {
            return Err(format!("must be a number of joins a second above 0 and at most {}", Self::MAX));
        }
        Ok(Self(per_second))
    }

    pub fn per_second(self) -> f64 {
        self.0
    }

    /// The time between two of Foyer's joins into one room.
    pub fn interval(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.0)
    }
}

impl Default for JoinPace {
    fn default() -> Self {
        Self(0.8)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggingConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveMode {
    ReadOnly,
    Kick,
    Delete,
}

impl ArchiveMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read_only",
            Self::Kick => "kick",
            Self::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRule {
    Invite,
    Knock,
}

impl JoinRule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Knock => "knock",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SynapseAdminConfig {
    pub token: Secret,
}

/// Whether values copied unchanged from `config.example.yaml` are acceptable.
/// `generate-registration` allows them (so the example's registration can be made);
/// `serve` and `check-config` refuse them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    Allow,
    Refuse,
}

/// One thing wrong with a config, at a key path such as `appservice.as_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is not valid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("config file {path} has {} problem{}", problems.len(), if problems.len() == 1 { "" } else { "s" })]
    Invalid { path: String, problems: Vec<Problem> },
}

impl Config {
    /// Reads and validates a config file. Relative `*_file` paths are resolved against
    /// the config file's directory; secrets may be overridden by environment variables.
    pub fn load(path: &Path, placeholders: Placeholders) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: display.clone(), source })?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        from_yaml_str(&text, &display, base_dir, &env, placeholders)
    }

    /// The bot's user ID, `@<sender_localpart>:<server_name>`.
    pub fn bot_user_id(&self) -> OwnedUserId {
        UserId::parse(format!("@{}:{}", self.appservice.sender_localpart, self.homeserver.server_name))
            .expect("sender_localpart and server_name are validated at load")
    }

    /// The key claim codes are derived with. It comes from `as_token`, which every
    /// deployment has and keeps secret: no new secret to manage. Rotating `as_token`
    /// changes every code: codes handed out before no longer work.
    pub fn claim_key(&self) -> crate::model::ClaimKey {
        crate::model::ClaimKey::from_secret(self.appservice.as_token.expose().as_bytes())
    }

    /// The key web fans' user IDs and the browser's sender keys are derived with, from
    /// `as_token` as the claim key is (`model::naming::WebKey`).
    pub fn web_key(&self) -> crate::model::naming::WebKey {
        crate::model::naming::WebKey::from_secret(self.appservice.as_token.expose().as_bytes())
    }

    /// The key holders' feed URLs are signed with, when `calendar.feed_key` is set: a
    /// secret of its own, so that rotating it revokes those URLs and nothing else.
    pub fn feed_key(&self) -> Option<crate::model::calendar::FeedKey> {
        let secret = self.calendar.feed_key.as_ref()?;
        Some(crate::model::calendar::FeedKey::from_secret(secret.expose().as_bytes()))
    }

    /// The exclusive users namespace of web fans (`webchat.puppet_prefix`), when web chat
    /// is on.
    pub fn web_user_regex(&self) -> Option<String> {
        let webchat = self.webchat.as_ref()?;
        Some(crate::model::naming::web_user_regex(&webchat.puppet_prefix, &self.homeserver.server_name))
    }

    /// A user of the web fans' namespace that no fan has (`model::naming::web_user_probe`),
    /// for asking the homeserver about the namespace; `None` when web chat is off.
    pub fn web_user_probe(&self) -> Option<OwnedUserId> {
        let webchat = self.webchat.as_ref()?;
        let localpart = crate::model::naming::web_user_probe(&webchat.puppet_prefix);
        Some(
            UserId::parse(format!("@{localpart}:{}", self.homeserver.server_name))
                .expect("puppet_prefix and server_name are validated at load"),
        )
    }

    /// Where the homeserver sends its transactions (the registration's `url`): the
    /// homeserver API's own listener when there is one, else `appservice.url`.
    pub fn registration_url(&self) -> &Url {
        self.appservice.homeserver_listener.as_ref().map_or(&self.appservice.url, |l| &l.url)
    }

    /// What `check-config` warns about: settings that work but leave a door open.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut warnings = Vec::new();
        let listen = self.appservice.listen;
        if self.ingest.token.is_none() && !listen.ip().is_loopback() {
            warnings.push(Problem {
                path: "ingest.token".into(),
                message: format!(
                    "is not set, and appservice.listen ({listen}) is not a loopback address: whoever reaches it can call the publish hooks (/ingest/v1/rtmp) and try stream keys; set ingest.token and add ?token=<it> to the hook URLs"
                ),
            });
        }
        if self.appservice.homeserver_listener.is_none() && !listen.ip().is_loopback() {
            warnings.push(Problem {
                path: "appservice.homeserver_listen".into(),
                message: format!(
                    "is not set, and appservice.listen ({listen}) is not a loopback address: whoever reaches it can hold every connection and keep the homeserver's transactions waiting; give the homeserver API a listener of its own (docs/security.md, \"Behind a reverse proxy\")"
                ),
            });
        }
        warnings
    }

    /// Where Foyer's public pages are: `appservice.public_url`, else `appservice.url`.
    pub fn public_url(&self) -> &Url {
        self.appservice.public_url.as_ref().unwrap_or(&self.appservice.url)
    }

    /// A reservation's room alias (see [`naming::room_alias`]).
    pub fn room_alias(&self, id: &ReservationId) -> OwnedRoomAliasId {
        naming::room_alias(&self.appservice.alias_prefix, id, &self.homeserver.server_name)
    }

    /// The reservation an alias of ours names, if it is one.
    pub fn reservation_of_alias(&self, alias: &str) -> Option<ReservationId> {
        naming::reservation_of_alias(&self.appservice.alias_prefix, &self.homeserver.server_name, alias)
    }

    /// The localpart of a channel space's alias (see [`naming::space_alias_localpart`]).
    pub fn space_alias_localpart(&self, channel_id: &str) -> String {
        naming::space_alias_localpart(&self.appservice.alias_prefix, channel_id)
    }

    /// The localpart of a channel's announcements room's alias.
    pub fn announcements_alias_localpart(&self, channel_id: &str) -> String {
        naming::announcements_alias_localpart(&self.appservice.alias_prefix, channel_id)
    }

    /// A channel space's alias (see [`naming::space_alias`]).
    pub fn space_alias(&self, channel_id: &str) -> Result<OwnedRoomAliasId, ruma::IdParseError> {
        naming::space_alias(&self.appservice.alias_prefix, channel_id, &self.homeserver.server_name)
    }

    /// The room alias pattern for `check-config`'s summary.
    pub fn alias_pattern(&self) -> String {
        format!("#{}<reservation_id>:{}", self.appservice.alias_prefix, self.homeserver.server_name)
    }

    /// The database URL with any password masked, for logs and summaries: the one in
    /// the user-info and the one a PostgreSQL URL may carry as a query parameter
    /// (`?password=`, also `sslpassword`).
    pub fn database_display(&self) -> String {
        let raw = self.database.url.expose();
        let Ok(mut url) = Url::parse(raw) else {
            // Where a password would be is unknown: show none of it rather than all.
            return match self.database.kind {
                DatabaseKind::Sqlite => raw.to_owned(),
                DatabaseKind::Postgres => "postgres://… (not shown: it does not parse as a URL)".to_owned(),
            };
        };
        let secret = |key: &str| key.to_ascii_lowercase().contains("password");
        let in_query = url.query_pairs().any(|(key, _)| secret(&key));
        if url.password().is_none() && !in_query {
            return raw.to_owned();
        }
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        if in_query {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if secret(&key) { "***".to_owned() } else { value.into_owned() };
                    (key.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_database(database_url: &str) -> Config {
        let yaml = format!(
            "homeserver: {{url: 'http://127.0.0.1:8008', server_name: example.org}}
appservice: {{url: 'http://127.0.0.1:29330', as_token: CHANGE_ME_a, hs_token: CHANGE_ME_b, sender_localpart: foyer, alias_prefix: live_}}
database: {{url: '{database_url}'}}
webhooks: {{secrets: [whsec_CHANGE_ME]}}
api: {{token: CHANGE_ME_c}}
"
        );
        from_yaml_str(&yaml, "test", Path::new(""), &|_| None, Placeholders::Allow).unwrap()
    }

    #[test]
    fn database_passwords_are_masked_in_the_user_info_and_the_query() {
        let shown = |url: &str| with_database(url).database_display();
        assert_eq!(shown("postgres://foyer:hunter2@db.example.org/foyer"), "postgres://foyer:***@db.example.org/foyer");
        assert_eq!(
            shown("postgres://db.example.org/foyer?user=foyer&password=hunter2&sslmode=require"),
            "postgres://db.example.org/foyer?user=foyer&password=***&sslmode=require"
        );
        assert_eq!(
            shown("postgresql://foyer:hunter1@db/foyer?Password=hunter2&sslpassword=hunter3"),
            "postgresql://foyer:***@db/foyer?Password=***&sslpassword=***"
        );
        // Nothing to mask: shown exactly as written.
        assert_eq!(shown("postgres://foyer@db/foyer?sslmode=require"), "postgres://foyer@db/foyer?sslmode=require");
        assert_eq!(shown("sqlite:///var/lib/foyer/foyer.db"), "sqlite:///var/lib/foyer/foyer.db");
        // Not a URL at all: not shown, since the password's place is unknown.
        let broken = shown("postgres://foyer:hunter2@db:port/foyer");
        assert!(!broken.contains("hunter2"), "{broken}");
    }
}
