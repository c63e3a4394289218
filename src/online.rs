//! `foyer check-config --online`: the live deployment, checked the way `serve` will use
//! it, one verdict per check with what to fix. Nothing is changed: the bot is not
//! registered, the database is read in a read-only connection and not migrated.

use std::{net::SocketAddr, time::Duration};

use axum::{Json, Router, http::HeaderMap, response::IntoResponse, routing::post};
use chrono::Utc;
use ruma::api::SupportedVersions;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use ruma::api::client::account::get_username_availability;

use crate::{
    config::{AutoJoin, Config},
    http::has_token,
    matrix::{
        HandshakeError, MatrixClient, MatrixError,
        handshake::{ping, whoami},
        synapse_admin::SynapseAdmin,
    },
    store::{SchemaState, StoreError, inspect_schema, largest_show_to_come, latest_version},
};

/// How long one check waits for the homeserver or the database.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(String),
    /// What is wrong, and what to do about it.
    Fail(String),
    /// Not run, because an earlier check failed; why.
    Skipped(String),
    /// Advice: what the deployment's settings mean, and what to set.
    Note(String),
}

/// One line of the report.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (mark, text) = match &self.verdict {
            Verdict::Pass(t) => ("ok  ", t),
            Verdict::Fail(t) => ("FAIL", t),
            Verdict::Skipped(t) => ("skip", t),
            Verdict::Note(t) => ("note", t),
        };
        write!(f, "  {mark}  {:<14} {text}", self.name)
    }
}

/// What `check` found: a verdict per check, and advice (each a [`Verdict::Note`]),
/// which fails nothing.
#[derive(Debug)]
pub struct Report {
    pub checks: Vec<Check>,
    pub advice: Vec<Check>,
}

/// Synapse's default `rc_joins_per_room`: joins a second into one room, after a burst.
const SYNAPSE_JOINS_PER_SECOND: u64 = 1;
const SYNAPSE_JOIN_BURST: u64 = 10;

/// With `rooms.auto_join: off`, what Synapse's default join limit means for the largest
/// show to come (`show`: its id and active tickets, when the database tells), else for
/// a show of 300: holders who join by themselves get in one a second after the burst.
/// The homeserver's own setting cannot be read from here, so the default is named.
fn join_advice(show: Option<(impl std::fmt::Display, u64)>) -> Check {
    let wait = |holders: u64| holders.saturating_sub(SYNAPSE_JOIN_BURST) / SYNAPSE_JOINS_PER_SECOND;
    let limit = format!(
        "at Synapse's default join limit (rc_joins_per_room: {SYNAPSE_JOINS_PER_SECOND} a second into a room, burst {SYNAPSE_JOIN_BURST})"
    );
    let text = match show {
        Some((id, tickets)) => format!(
            "rooms.auto_join is off: the largest show to come, {id}, has {tickets} active tickets; {limit} its holders need about {} s to join by themselves, refused (429) meanwhile; set rooms.auto_join: local (README, Big shows)",
            wait(tickets)
        ),
        None => format!(
            "rooms.auto_join is off: {limit} holders who join by themselves get in one a second after the first {SYNAPSE_JOIN_BURST} (300 holders: about {} s), refused (429) meanwhile; for big shows set rooms.auto_join: local (README, Big shows)",
            wait(300)
        ),
    };
    Check { name: "joins", verdict: Verdict::Note(text) }
}

/// Who holds a listen address (`appservice.listen`, `appservice.homeserver_listen`).
enum Listen {
    /// Nobody: this check holds it now, to stand in for Foyer in the ping.
    Free(tokio::net::TcpListener),
    /// A running Foyer (its `/health/live` answers).
    Foyer,
    /// Another program, or the address cannot be bound (the message says why).
    Unusable(String),
}

impl Listen {
    fn verdict(&self, addr: SocketAddr) -> Verdict {
        match self {
            Listen::Free(_) => Verdict::Pass(format!("{addr} is free: foyer serve can listen there")),
            Listen::Foyer => Verdict::Pass(format!("{addr} is in use by a running Foyer")),
            Listen::Unusable(why) => Verdict::Fail(why.clone()),
        }
    }
}

#[derive(Deserialize)]
struct Versions {
    versions: Vec<String>,
}

/// Runs every check, in the order the report lists them, and gives the advice.
pub async fn check(config: &Config) -> Report {
    let (checks, schema) = checks(config).await;
    let mut advice = Vec::new();
    if config.rooms.auto_join == AutoJoin::Off {
        // Advice only: a database that cannot be read (its check says why) gives the
        // general line.
        let show = match schema {
            Some(SchemaState::Current) => {
                match tokio::time::timeout(CHECK_TIMEOUT, largest_show_to_come(&config.database, Utc::now())).await {
                    Ok(Ok(show)) => show,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "check-config: cannot read the largest show to come");
                        None
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        advice.push(join_advice(show));
    }
    Report { checks, advice }
}

/// Every check, and where the database's schema stands when it could be read.
async fn checks(config: &Config) -> (Vec<Check>, Option<SchemaState>) {
    let http = match reqwest::Client::builder()
        .timeout(CHECK_TIMEOUT)
        .user_agent(concat!("foyer/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            let verdict = Verdict::Fail(format!("cannot build an HTTP client: {e}"));
            return (vec![Check { name: "homeserver", verdict }], None);
        }
    };
    let main_listen = listen(config.appservice.listen, "appservice.listen", &http).await;
    // The ping reaches whichever listener the registration names: the homeserver API's
    // own when there is one.
    let (listen, homeserver_listen) = match &config.appservice.homeserver_listener {
        Some(own) => (listen(own.listen, "appservice.homeserver_listen", &http).await, Some(main_listen)),
        None => (main_listen, None),
    };
    let (homeserver, versions) = homeserver(config, &http).await;
    let mut checks = vec![Check { name: "homeserver", verdict: homeserver }];

    let client = versions.map(|versions| {
        let supported = SupportedVersions::from_parts(&versions, &Default::default());
        MatrixClient::new(http.clone(), &config.homeserver.url, config.appservice.as_token.clone(), supported)
    });
    let as_token = match &client {
        None => Verdict::Skipped("the homeserver does not answer".into()),
        // One attempt: the deadline is now.
        Some(client) => match whoami(config, client, Instant::now()).await {
            Ok(bot) => Verdict::Pass(format!("accepted: the homeserver takes us for {bot}")),
            Err(e) => Verdict::Fail(e.to_string()),
        },
    };
    let token_ok = matches!(as_token, Verdict::Pass(_));
    checks.push(Check { name: "as_token", verdict: as_token });

    let listen_verdict = match (&config.appservice.homeserver_listener, &homeserver_listen) {
        (Some(own), Some(main)) => match (main.verdict(config.appservice.listen), listen.verdict(own.listen)) {
            (Verdict::Pass(main), Verdict::Pass(own)) => Verdict::Pass(format!("{main}; homeserver API: {own}")),
            (Verdict::Fail(why), _) | (_, Verdict::Fail(why)) => Verdict::Fail(why),
            (other, _) => other,
        },
        _ => listen.verdict(config.appservice.listen),
    };
    let listen_key = if config.appservice.homeserver_listener.is_some() {
        "appservice.homeserver_listen"
    } else {
        "appservice.listen"
    };
    let ping = match (&client, listen) {
        (None, _) => Verdict::Skipped("the homeserver does not answer".into()),
        (Some(_), _) if !token_ok => Verdict::Skipped("the as_token check did not pass".into()),
        (Some(_), Listen::Unusable(_)) => Verdict::Skipped(format!("{listen_key} is not usable (see listen)")),
        (Some(client), Listen::Foyer) => ping_verdict(config, client, "Foyer").await,
        (Some(client), Listen::Free(listener)) => {
            let stand_in = tokio::spawn(stand_in(listener, config.appservice.hs_token.clone()));
            let verdict = ping_verdict(config, client, "this check, standing in for Foyer, which is not running").await;
            stand_in.abort();
            verdict
        }
    };
    checks.push(Check { name: "ping", verdict: ping });
    let web_users = match &client {
        _ if config.webchat.is_none() => Verdict::Pass("webchat is not set: no web fans' namespace needed".into()),
        None => Verdict::Skipped("the homeserver does not answer".into()),
        Some(_) if !token_ok => Verdict::Skipped("the as_token check did not pass".into()),
        Some(client) => web_users(config, client).await,
    };
    checks.push(Check { name: "webchat", verdict: web_users });
    let (database, schema) = database(config).await;
    checks.push(Check { name: "database", verdict: database });
    let admin = match &client {
        None if config.synapse_admin.is_some() => Verdict::Skipped("the homeserver does not answer".into()),
        _ => synapse_admin(config, &http).await,
    };
    checks.push(Check { name: "synapse_admin", verdict: admin });
    checks.push(Check { name: "listen", verdict: listen_verdict });
    (checks, schema)
}

async fn homeserver(config: &Config, http: &reqwest::Client) -> (Verdict, Option<Vec<String>>) {
    let base = config.homeserver.url.as_str().trim_end_matches('/');
    let url = format!("{base}/_matrix/client/versions");
    let fail = |detail: String| Verdict::Fail(HandshakeError::NotMatrix { url: base.to_owned(), detail }.to_string());
    match http.get(&url).send().await {
        Err(e) => (
            Verdict::Fail(format!(
                "the homeserver at {base} does not answer ({}); check that it is running and that homeserver.url is right",
                crate::matrix::error_chain(&e)
            )),
            None,
        ),
        Ok(resp) if !resp.status().is_success() => {
            (fail(format!("/_matrix/client/versions answered {}", resp.status())), None)
        }
        Ok(resp) => match resp.json::<Versions>().await {
            Ok(body) => {
                let newest = body.versions.last().cloned().unwrap_or_default();
                (Verdict::Pass(format!("{base} answers (Matrix up to {newest})")), Some(body.versions))
            }
            Err(e) => (fail(format!("/_matrix/client/versions: {e}")), None),
        },
    }
}

async fn ping_verdict(config: &Config, client: &MatrixClient, answered_by: &str) -> Verdict {
    let txn = format!("foyer-check-{:016x}", rand::random::<u64>()).into();
    match ping(config, client, txn, Instant::now()).await {
        Ok(Some(took)) => Verdict::Pass(format!(
            "the homeserver loaded the registration and reached {} in {} ms (answered by {answered_by})",
            config.registration_url(),
            took.as_millis()
        )),
        Ok(None) => Verdict::Pass("the homeserver does not implement the appservice ping; not checked".into()),
        Err(e) => Verdict::Fail(e.to_string()),
    }
}

/// Answers the homeserver's ping in Foyer's place, as Foyer does: only with the hs_token.
async fn stand_in(listener: tokio::net::TcpListener, hs_token: crate::secret::Secret) {
    let app = Router::new().route(
        "/_matrix/app/v1/ping",
        post(move |headers: HeaderMap| async move {
            if has_token(&headers, &hs_token) {
                Json(json!({})).into_response()
            } else {
                crate::http::error(axum::http::StatusCode::FORBIDDEN, "M_FORBIDDEN", "Bad or missing hs_token")
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::debug!(error = %e, "the stand-in for the ping stopped");
    }
}

/// Whether the loaded registration gives Foyer the web fans' users namespace, asked
/// without changing anything: `whoami` acting as a user of the namespace that no fan
/// has. Synapse refuses it either way, but says which: "cannot masquerade" (not ours)
/// or "has not registered this user" (ours). Another homeserver's answer is read from
/// `register/available`: `M_EXCLUSIVE` when an appservice holds the name.
async fn web_users(config: &Config, client: &MatrixClient) -> Verdict {
    let (Some(probe), Some(regex)) = (config.web_user_probe(), config.web_user_regex()) else {
        return Verdict::Pass("webchat is not set: no web fans' namespace needed".into());
    };
    let ours = Verdict::Pass(format!("the homeserver gives Foyer the web fans' namespace {regex}"));
    let lacks = Verdict::Fail(format!(
        "the loaded registration lacks the web fans' namespace {regex} (webchat.puppet_prefix): regenerate it with `foyer generate-registration`, give it to the homeserver and restart the homeserver"
    ));
    let answer = match client.send_once(ruma::api::client::account::whoami::v3::Request::new(), Some(&probe)).await {
        Ok(_) => return ours,
        Err(MatrixError::Api { status: 403, message, .. }) if message.contains("masquerade") => return lacks,
        Err(MatrixError::Api { status: 403, message, .. }) if message.contains("not registered") => return ours,
        Err(e) => e,
    };
    match client.send_once(get_username_availability::v3::Request::new(probe.localpart().to_owned()), None).await {
        Ok(resp) if resp.available => lacks,
        Err(e) if e.errcode() == Some("M_EXCLUSIVE") => Verdict::Pass(format!(
            "an appservice holds the web fans' namespace {regex} (the homeserver does not say which)"
        )),
        Ok(_) | Err(_) => Verdict::Fail(format!(
            "cannot tell whether the homeserver gives Foyer the web fans' namespace {regex} ({answer}); check that the loaded registration has it"
        )),
    }
}

/// The database's verdict, and where its schema stands when it could be read.
async fn database(config: &Config) -> (Verdict, Option<SchemaState>) {
    let shown = config.database_display();
    let latest = latest_version();
    let inspected = tokio::time::timeout(CHECK_TIMEOUT, inspect_schema(&config.database)).await;
    let verdict = match &inspected {
        Err(_) => Verdict::Fail(format!(
            "{shown} did not answer within {}s; check database.url and that the database server is running",
            CHECK_TIMEOUT.as_secs()
        )),
        Ok(Ok(SchemaState::Empty)) => Verdict::Pass(format!(
            "{shown} opens and has no Foyer schema yet: foyer serve creates it (version {latest})"
        )),
        Ok(Ok(SchemaState::Behind { at })) => Verdict::Pass(format!(
            "{shown} opens at schema version {at}: foyer serve migrates it to {latest} (back it up first)"
        )),
        Ok(Ok(SchemaState::Current)) => {
            Verdict::Pass(format!("{shown} opens at schema version {latest}, this Foyer's"))
        }
        Ok(Err(StoreError::Schema(e))) => Verdict::Fail(format!("{shown}: {e}")),
        Ok(Err(StoreError::Open(detail))) => Verdict::Fail(format!(
            "cannot open {shown} ({detail}); check database.url, and that the database server is running and the file or database is readable"
        )),
        Ok(Err(e)) => Verdict::Fail(format!("{shown}: {e}; check database.url")),
    };
    (verdict, inspected.ok().and_then(Result::ok))
}

async fn synapse_admin(config: &Config, http: &reqwest::Client) -> Verdict {
    let Some(admin) = &config.synapse_admin else {
        return Verdict::Pass("not set (needed only for archive_mode: delete and email tickets)".into());
    };
    let admin = SynapseAdmin {
        http: http.clone(),
        base_url: config.homeserver.url.as_str().trim_end_matches('/').to_owned(),
        token: admin.token.clone(),
    };
    match admin.check_admin(&config.bot_user_id()).await {
        Ok(()) => Verdict::Pass("a server admin's token".into()),
        Err(crate::matrix::MatrixError::Api { status: 401, errcode, .. }) => Verdict::Fail(format!(
            "the homeserver does not know synapse_admin.token ({errcode}); log in as a server admin and put that access token there"
        )),
        Err(crate::matrix::MatrixError::Api { status: 403, errcode, .. }) => Verdict::Fail(format!(
            "synapse_admin.token is not a server admin's ({errcode}); make its user an admin (synapse's register_new_matrix_user --admin, or the admin API) or use an admin's token"
        )),
        Err(crate::matrix::MatrixError::Api { status: 404, .. }) => Verdict::Fail(
            "the homeserver has no Synapse admin API at homeserver.url; set synapse_admin only on Synapse, with the admin API reachable".into(),
        ),
        Err(e) => Verdict::Fail(format!("the Synapse admin API failed ({e})")),
    }
}

/// Who holds `addr` (the config's `key`) now.
async fn listen(addr: SocketAddr, key: &str, http: &reqwest::Client) -> Listen {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Listen::Free(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if is_foyer(http, addr).await {
                Listen::Foyer
            } else {
                let url = if key == "appservice.listen" { "appservice.url" } else { "appservice.homeserver_url" };
                Listen::Unusable(format!(
                    "{addr} is in use by another program, not Foyer; stop it, or pick another {key} (and {url}, then regenerate the registration)"
                ))
            }
        }
        Err(e) => Listen::Unusable(format!(
            "cannot listen on {addr} ({e}); pick an address of this machine and a port above 1023 for {key}"
        )),
    }
}

/// Whether a Foyer answers at `addr`: its `/health/live` says `{"status": "live"}`.
async fn is_foyer(http: &reqwest::Client, addr: SocketAddr) -> bool {
    // Short: a program that holds the port but never answers is not Foyer either.
    let probe = http.get(format!("http://{addr}/health/live")).timeout(Duration::from_secs(3));
    let Ok(resp) = probe.send().await else { return false };
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    body == json!({"status": "live"})
}
