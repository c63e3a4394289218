//! `foyer serve`: bind, serve, shake hands with the homeserver, run until a signal.

use std::sync::{Arc, Mutex, RwLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ruma::OwnedTransactionId;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    config::Config,
    http::{self, AppState, Shared},
    matrix::{self, HandshakeError},
    model::{ClaimCode, Email, ReservationId, TicketId},
    store::{Outbound, RenewedClaim},
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind { addr: std::net::SocketAddr, key: &'static str, source: std::io::Error },
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("the HTTP server failed: {0}")]
    Server(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Limits(#[from] http::server::LimitsError),
}

/// The process-wide Prometheus recorder, installed once.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Homeserver latency and the time to answer its transactions as histograms
            // (aggregatable across instances, and a bucket bounds the slowest); the other
            // timings stay summaries with quantiles.
            const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
            let mut builder = PrometheusBuilder::new();
            for name in ["foyer_homeserver_request_duration_seconds", "foyer_appservice_transaction_seconds"] {
                let matcher = Matcher::Full(name.into());
                builder = builder.set_buckets_for_metric(matcher, BUCKETS).expect("the buckets are not empty");
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours stays empty.
            if metrics::set_global_recorder(recorder).is_ok() {
                crate::metrics_help::describe_all();
            }
            handle
        })
        .clone()
}

/// Runs Foyer until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let config = Arc::new(config);
    // Before the limits are read: the connection cap follows the open-files limit.
    let open_files = http::server::raise_open_files_limit();
    let limits = http::server::Limits::from_env(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))?;
    let max_connections = limits.max_connections;
    // What check-config warns about, in the log of every start too.
    for warning in config.warnings() {
        tracing::warn!(key = %warning.path, "{}", warning.message);
    }
    // Woken by the store when a commit writes an event, and by `!foyer outbox resume`.
    let outbox_wake = Arc::new(tokio::sync::Notify::new());
    let outbound = Outbound::when(config.platform.is_some(), &outbox_wake);
    let store = crate::store::open(&config.database, outbound).await?;
    tracing::info!(database = %config.database_display(), "store opened");
    // Said once the store is open: a start refused before says its one reason alone.
    match open_files {
        http::server::OpenFiles::Raised { from, to } => {
            tracing::info!(open_files = to, raised_from = from, max_connections, "open files limit raised");
        }
        http::server::OpenFiles::Kept(limit) => {
            tracing::info!(open_files = ?limit, max_connections, "open files limit at its hard limit");
        }
        http::server::OpenFiles::Refused { limit, wanted, error } => tracing::warn!(
            open_files = limit, wanted, max_connections, %error,
            "cannot raise the open files limit: fewer web chat viewers fit (raise LimitNOFILE)"
        ),
    }
    let key = config.claim_key();
    let fingerprint = key.fingerprint();
    let hash = move |reservation: &ReservationId, ticket: &TicketId, generation: i64, email: Option<&Email>| {
        let digest = email.map(|e| key.holder_digest(e));
        let code = ClaimCode::of_holder(&key, reservation, ticket, generation, digest.as_ref());
        RenewedClaim { hash: code.map(|c| c.hash()), digest: digest.map(|d| d.as_str().to_owned()) }
    };
    let renewed = store.renew_claim_hashes(&fingerprint, &hash).await?;
    if renewed > 0 {
        tracing::info!(renewed, "claim codes renewed for a new as_token (codes handed out before no longer work)");
    }
    let addr = config.appservice.listen;
    let listener =
        TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, key: "appservice.listen", source })?;
    let homeserver_listener = match &config.appservice.homeserver_listener {
        Some(own) => Some(TcpListener::bind(own.listen).await.map_err(|source| ServeError::Bind {
            addr: own.listen,
            key: "appservice.homeserver_listen",
            source,
        })?),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState::new(Shared {
        chat: Arc::new(http::webchat::hub::Hub::new(store.clone(), config.clone(), stop_rx.clone())),
        webhook_rules: crate::http::webhooks::payload::Rules::from_config(&config),
        config: config.clone(),
        ready: Arc::new(RwLock::new(None)),
        transactions: Arc::new(Mutex::new(Default::default())),
        metrics: metrics_handle(),
        store,
        wake: Arc::new(tokio::sync::Notify::new()),
        admin_wake: Arc::new(tokio::sync::Notify::new()),
        redactions: Arc::new(tokio::sync::Notify::new()),
        lifecycle: Default::default(),
        phases_counted_at: Default::default(),
        claims: Default::default(),
        web_claims: Default::default(),
    });
    // Which build answers, for a dashboard to show and an alert to join on.
    let build = [("version", crate::build_info::VERSION), ("commit", crate::build_info::COMMIT)];
    metrics::gauge!("foyer_build_info", &build).set(1.0);
    // Families that move only on a fan's rare act are shown at zero from the start, so
    // that a dashboard (and an operator's first look at /metrics) finds every one.
    for how in ["direct_message", "knock"] {
        metrics::counter!("foyer_claims_total", "how" => how, "result" => "claimed").increment(0);
    }
    metrics::counter!("foyer_email_lookups_total", "result" => "bound").increment(0);
    metrics::counter!("foyer_claim_pages_total", "result" => "unclaimed").increment(0);
    metrics::counter!("foyer_direct_chats_total", "result" => "joined").increment(0);
    metrics::counter!("foyer_admin_answers_held_back_total").increment(0);
    metrics::counter!("foyer_moderation_actions_total", "action" => "report", "rule" => "").increment(0);
    metrics::counter!("foyer_webchat_sessions_total", "result" => "opened").increment(0);
    metrics::gauge!("foyer_webchat_streams").increment(0.0);
    metrics::counter!("foyer_webchat_resets_total").increment(0);
    metrics::counter!("foyer_web_messages_total", "result" => "sent").increment(0);
    metrics::counter!("foyer_web_reports_total", "result" => "recorded").increment(0);
    crate::outbox::send::register_metrics();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    tokio::spawn(crate::memory::trim_periodically(stop_rx.clone()));
    let app = http::router(state.clone(), &limits);
    let server = tokio::spawn({
        let (limits, stop_rx) = (limits.clone(), stop_rx.clone());
        async move { http::server::serve(listener, http::server::Listener::Main, app, &limits, stop_rx).await }
    });
    // The homeserver's own listener, if configured: its connections are its own, so a
    // stranger holding every connection of the main one cannot delay a transaction.
    let homeserver_server = homeserver_listener.map(|listener| {
        let app = http::homeserver_router(state.clone(), &limits);
        let (limits, stop_rx) = (limits.clone(), stop_rx.clone());
        let which = http::server::Listener::Homeserver;
        tracing::info!(
            addr = %listener.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string()),
            max_connections = which.max_connections(&limits),
            "listening for the homeserver"
        );
        tokio::spawn(async move { http::server::serve(listener, which, app, &limits, stop_rx).await })
    });
    tracing::info!(
        %addr,
        homeserver = %config.homeserver.url,
        header_timeout = ?limits.header_timeout,
        body_timeout = ?limits.body_timeout,
        max_in_flight = limits.max_in_flight,
        max_connections = limits.max_connections,
        "listening"
    );

    let http_client = reqwest::Client::builder()
        .timeout(matrix::REQUEST_TIMEOUT)
        .user_agent(concat!("foyer/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ServeError::Client(e.to_string()))?;
    let ping_txn: OwnedTransactionId = format!("foyer-ping-{:016x}", rand::random::<u64>()).into();
    let mut handshake_stop = stop_rx.clone();
    tokio::select! {
        result = matrix::handshake(&config, http_client, ping_txn) => {
            let (client, report) = result?;
            let admin = config.synapse_admin.as_ref().map(|a| {
                Arc::new(crate::matrix::synapse_admin::SynapseAdmin {
                    http: client.http().clone(),
                    base_url: config.homeserver.url.as_str().trim_end_matches('/').to_owned(),
                    token: a.token.clone(),
                })
            });
            if let Some(admin) = &admin {
                let lookups = crate::lifecycle::lookups::serve(
                    state.store.clone(),
                    admin.clone(),
                    state.wake.clone(),
                    stop_rx.clone(),
                );
                tokio::spawn(lookups);
            }
            let lifecycle = Arc::new(crate::lifecycle::Lifecycle {
                store: state.store.clone(),
                client,
                config: config.clone(),
                admin,
                wake: state.wake.clone(),
                creators_privileged: Default::default(),
                doorkeeper: Default::default(),
                unmarked: Default::default(),
                knocks: Default::default(),
                remote: Default::default(),
                joins: Arc::new(crate::matrix::rooms::JoinPacer::new(config.rooms.join_pace)),
                instance: format!("foyer-{}-{:08x}", std::process::id(), rand::random::<u32>()),
            });
            if let Some(platform) = &config.platform {
                let sender = crate::outbox::send::run(
                    state.store.clone(),
                    platform.clone(),
                    lifecycle.instance.clone(),
                    outbox_wake.clone(),
                    stop_rx.clone(),
                );
                tokio::spawn(sender);
            }
            let _ = state.lifecycle.set(lifecycle.clone());
            let admin_client = lifecycle.client.clone();
            let redactor = crate::moderation::redactor::serve(
                state.store.clone(),
                lifecycle.client.clone(),
                state.redactions.clone(),
                stop_rx.clone(),
            );
            tokio::spawn(redactor);
            let followers =
                crate::followers::Followers::new(state.store.clone(), lifecycle.client.clone(), config.clone());
            tokio::spawn(followers.run(stop_rx.clone()));
            tokio::spawn(lifecycle.run(stop_rx.clone()));
            tokio::spawn(http::webhooks::expand::serve(
                state.store.clone(),
                state.webhook_rules.clone(),
                crate::store::Windows::of_config(&config.rooms),
                state.wake.clone(),
                stop_rx.clone(),
            ));
            let admin = crate::admin::Services {
                config: config.clone(),
                store: state.store.clone(),
                wake: state.wake.clone(),
                inbox: state.admin_wake.clone(),
                outbox: outbox_wake.clone(),
                claims: state.claims.clone(),
                pace: Default::default(),
            };
            tokio::spawn(crate::admin::serve(admin, admin_client, stop_rx.clone()));
            tracing::info!(bot = %report.bot, "ready");
            metrics::gauge!("foyer_ready").set(1.0);
            if let Ok(mut ready) = state.ready.write() {
                *ready = Some(report);
            }
        }
        _ = handshake_stop.wait_for(|stop| *stop) => {
            tracing::info!("stopped during start-up");
        }
    }

    let served = server.await;
    if let Some(homeserver_server) = homeserver_server {
        let _ = homeserver_server.await;
    }
    drop(state);
    tracing::info!("shut down");
    served.map_err(|join| ServeError::Server(std::io::Error::other(join.to_string())))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
