//! Start-up handshake: is the homeserver there, does it know our token, can it reach us?
//!
//! Each failure becomes one sentence that tells the admin what to check.

use std::{collections::BTreeMap, time::Duration};

use ruma::api::{
    SupportedVersions,
    client::{
        account::{register, whoami},
        appservice::request_ping,
    },
};
use ruma::{OwnedTransactionId, OwnedUserId};
use serde::Deserialize;
use tokio::time::Instant;

use super::{Backoff, MatrixClient, MatrixError, error_chain};
use crate::config::{Config, format_duration};

/// What the handshake learnt, for logs and `/health/ready`.
#[derive(Debug, Clone)]
pub struct HandshakeReport {
    pub versions: Vec<String>,
    pub bot: OwnedUserId,
    /// The homeserver's round trip to our `/_matrix/app/v1/ping`; `None` when the
    /// homeserver does not implement the ping endpoint.
    pub ping: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(
        "the homeserver at {url} did not answer within {timeout} ({attempts} attempts, last error: {last}); check that it is running and that homeserver.url is right"
    )]
    Unreachable { url: String, timeout: String, attempts: u32, last: String },
    #[error("{url} does not answer like a Matrix homeserver ({detail}); check homeserver.url")]
    NotMatrix { url: String, detail: String },
    #[error(
        "the homeserver rejected our as_token ({errcode}): the registration file is not loaded (list it in app_service_config_files and restart the homeserver) or its as_token differs from appservice.as_token"
    )]
    AsTokenRejected { errcode: String },
    #[error(
        "the homeserver says our bot is {actual}, but the config makes it {expected}; check homeserver.server_name and appservice.sender_localpart"
    )]
    WrongBot { expected: String, actual: String },
    #[error("the homeserver refused to register the bot {bot}: {source}")]
    BotRegistration { bot: String, source: MatrixError },
    #[error(
        "the homeserver cannot reach Foyer at {url} ({detail}); check appservice.url in the registration and that Foyer listens there (appservice.listen)"
    )]
    CannotReachUs { url: String, detail: String },
    #[error(
        "the homeserver reached {url} but got an error ({detail}); is another program listening there, or does the loaded registration's hs_token differ from appservice.hs_token?"
    )]
    PingRejected { url: String, detail: String },
    #[error(
        "the homeserver has no appservice with id {id:?} for our as_token; check that appservice.id matches the id in the loaded registration file"
    )]
    WrongAppserviceId { id: String },
    #[error(
        "the homeserver's registration for {id:?} has no url; regenerate it with `foyer generate-registration` and restart the homeserver"
    )]
    UrlNotSet { id: String },
    #[error("{step} failed: {source}")]
    Failed { step: &'static str, source: MatrixError },
}

#[derive(Debug, Deserialize)]
struct VersionsBody {
    versions: Vec<String>,
    #[serde(default)]
    unstable_features: BTreeMap<String, bool>,
}

/// Runs the three start-up checks. `ping_txn` is echoed by the homeserver to our
/// `/_matrix/app/v1/ping`, which must already be listening.
pub async fn handshake(
    config: &Config, http: reqwest::Client, ping_txn: OwnedTransactionId,
) -> Result<(MatrixClient, HandshakeReport), HandshakeError> {
    let deadline = Instant::now() + config.homeserver.startup_timeout;
    let versions = wait_for_versions(config, &http, deadline).await?;
    tracing::info!(versions = %versions.versions.join(","), "homeserver is up");
    let supported = SupportedVersions::from_parts(&versions.versions, &versions.unstable_features);
    let client = MatrixClient::new(http, &config.homeserver.url, config.appservice.as_token.clone(), supported);

    let bot = ensure_bot(config, &client, deadline).await?;
    tracing::info!(bot = %bot, "bot user checked");

    let ping = ping(config, &client, ping_txn, deadline).await?;
    match ping {
        Some(d) => tracing::info!(duration_ms = d.as_millis() as u64, "homeserver pinged Foyer"),
        None => tracing::warn!("homeserver does not implement the appservice ping; skipped"),
    }
    Ok((client, HandshakeReport { versions: versions.versions, bot, ping }))
}

async fn wait_for_versions(
    config: &Config, http: &reqwest::Client, deadline: Instant,
) -> Result<VersionsBody, HandshakeError> {
    let base = config.homeserver.url.as_str().trim_end_matches('/');
    let url = format!("{base}/_matrix/client/versions");
    let mut backoff = Backoff::default();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match http.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => {
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| HandshakeError::NotMatrix { url: url.clone(), detail: error_chain(&e) })?;
                return serde_json::from_slice(&body).map_err(|e| HandshakeError::NotMatrix {
                    url: url.clone(),
                    detail: format!("/_matrix/client/versions: {e}"),
                });
            }
            Ok(resp) if resp.status().is_server_error() => format!("status {}", resp.status()),
            Ok(resp) => {
                return Err(HandshakeError::NotMatrix {
                    url,
                    detail: format!("/_matrix/client/versions answered {}", resp.status()),
                });
            }
            Err(e) => error_chain(&e),
        };
        // Use the whole startup_timeout: the last attempt is made at the deadline.
        let now = Instant::now();
        if now >= deadline {
            return Err(HandshakeError::Unreachable {
                url: base.to_owned(),
                timeout: format_duration(config.homeserver.startup_timeout),
                attempts,
                last,
            });
        }
        let wait = backoff.next_wait().min(deadline - now);
        tracing::info!(
            attempt = attempts,
            error = %last,
            retry_in_ms = wait.as_millis() as u64,
            "homeserver not answering yet"
        );
        tokio::time::sleep(wait).await;
    }
}

/// `whoami` as the bot checks our token and identity; then the bot is registered
/// (`m.login.application_service`) unless it exists: Synapse answers `whoami` for the
/// sender even before the user exists, so only registration tells.
async fn ensure_bot(config: &Config, client: &MatrixClient, deadline: Instant) -> Result<OwnedUserId, HandshakeError> {
    let user_id = whoami(config, client, deadline).await?;
    let expected = config.bot_user_id();
    let mut req = register::v3::Request::new();
    req.username = Some(config.appservice.sender_localpart.clone());
    req.login_type = Some(register::LoginType::ApplicationService);
    req.inhibit_login = true;
    match client.send(req, None, deadline).await {
        Ok(_) => tracing::info!(bot = %expected, "registered the bot user"),
        Err(e) if e.errcode() == Some("M_USER_IN_USE") => {}
        Err(source) => {
            return Err(HandshakeError::BotRegistration { bot: expected.to_string(), source });
        }
    }
    Ok(user_id)
}

/// `whoami` with the as_token: the homeserver knows the token, and takes us for our bot.
pub(crate) async fn whoami(
    config: &Config, client: &MatrixClient, deadline: Instant,
) -> Result<OwnedUserId, HandshakeError> {
    let expected = config.bot_user_id();
    let user_id = match client.send(whoami::v3::Request::new(), None, deadline).await {
        Ok(resp) => resp.user_id,
        Err(MatrixError::Api { status: 401, errcode, .. }) => return Err(HandshakeError::AsTokenRejected { errcode }),
        Err(source) => {
            return Err(HandshakeError::Failed { step: "whoami", source });
        }
    };
    if user_id != expected {
        return Err(HandshakeError::WrongBot { expected: expected.to_string(), actual: user_id.to_string() });
    }
    Ok(user_id)
}

/// Asks the homeserver to ping our `/_matrix/app/v1/ping`: its round trip, or `None`
/// when it does not implement the ping.
pub(crate) async fn ping(
    config: &Config, client: &MatrixClient, txn: OwnedTransactionId, deadline: Instant,
) -> Result<Option<Duration>, HandshakeError> {
    let id = config.appservice.id.clone();
    let url = config.registration_url().to_string();
    let mut req = request_ping::v1::Request::new(id.clone());
    req.transaction_id = Some(txn);
    match client.send(req, None, deadline).await {
        Ok(resp) => Ok(Some(resp.duration)),
        Err(e) => {
            let detail = e.to_string();
            match (e.errcode(), &e) {
                (Some("M_UNRECOGNIZED"), MatrixError::Api { status: 404 | 405, .. }) => Ok(None),
                (Some("M_CONNECTION_FAILED" | "M_CONNECTION_TIMEOUT"), _) => {
                    Err(HandshakeError::CannotReachUs { url, detail })
                }
                (Some("M_BAD_STATUS"), _) => Err(HandshakeError::PingRejected { url, detail }),
                (Some("M_FORBIDDEN"), _) => Err(HandshakeError::WrongAppserviceId { id }),
                (Some("M_URL_NOT_SET"), _) => Err(HandshakeError::UrlNotSet { id }),
                _ => Err(HandshakeError::Failed { step: "appservice ping", source: e }),
            }
        }
    }
}
