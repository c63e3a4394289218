//! `foyer serve`'s start-up handshake against a real Synapse, and its failures.

use std::time::Duration;

use reqwest::Method;

/// The version Cargo.toml gives, which Foyer reports.
const VERSION: &str = env!("CARGO_PKG_VERSION");

use crate::common::{
    foyer::TestFoyer,
    git_commit, random_token,
    synapse::{Slot, Synapse},
};

#[tokio::test]
async fn serve_completes_the_handshake_and_synapse_pings_foyer() {
    let foyer = TestFoyer::start().await;
    let (status, ready) = foyer.request(Method::GET, "/health/ready", None, None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!((ready["version"].as_str(), ready["commit"].as_str()), (Some(VERSION), Some(&*git_commit())), "{ready}");
    assert_eq!(ready["bot"], foyer.slot.bot_user_id().as_str());
    assert!(ready["ping_ms"].is_u64(), "Synapse answered the ping with duration_ms: {ready}");
    let log = foyer.log();
    assert!(log.contains("homeserver ping received"), "our ping endpoint was called:\n{log}");
    assert!(log.contains("homeserver pinged Foyer") && log.contains("duration_ms"), "{log}");
    assert_eq!(foyer.metric("foyer_appservice_pings_total").await, 1.0);
    assert_eq!(foyer.metric("foyer_ready").await, 1.0);
    let build_info = format!("foyer_build_info{{version=\"{VERSION}\",commit=\"{}\"}}", git_commit());
    assert_eq!(foyer.metric(&build_info).await, 1.0, "{}", foyer.metrics_text().await);
}

/// Runs `foyer serve` with `yaml`, expects exit 2 with no panic, and returns the last
/// line of its output: the one clear sentence the admin reads.
async fn serve_fails_with_exit_2(slot: Slot, yaml: &str) -> String {
    let mut foyer = TestFoyer::spawn(slot, yaml);
    let code = foyer.wait_exit(Duration::from_secs(40)).await;
    let log = foyer.log();
    assert_eq!(code, 2, "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let last = log.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("foyer: "), "{last:?}");
    last
}

#[tokio::test]
async fn a_homeserver_that_is_not_running_exits_2_after_bounded_retries() {
    let slot = Synapse::shared().take_slot();
    // Nothing listens on port 1 (a privileged port no test binds): connection refused.
    let dead = "http://127.0.0.1:1".to_owned();
    let yaml =
        slot.config_yaml().replace(&slot.homeserver_url, &dead).replace("startup_timeout: 30s", "startup_timeout: 2s");
    let started = std::time::Instant::now();
    let last = serve_fails_with_exit_2(slot, &yaml).await;
    assert!(started.elapsed() >= Duration::from_millis(1900), "it kept retrying for the whole startup_timeout: {last}");
    assert!(
        last.starts_with("foyer: the homeserver at")
            && last.contains("did not answer within 2s")
            && last.contains("attempts"),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_wrong_as_token_exits_2_naming_the_registration() {
    let slot = Synapse::shared().take_slot();
    let yaml = slot.config_yaml().replace(&slot.as_token, &random_token());
    let last = serve_fails_with_exit_2(slot, &yaml).await;
    assert!(last.contains("rejected our as_token") && last.contains("app_service_config_files"), "{last:?}");
}

#[tokio::test]
async fn a_homeserver_that_cannot_reach_foyer_exits_2() {
    // Synapse's registration points at the slot's port; Foyer listens elsewhere.
    let slot = Synapse::shared().take_slot();
    // Same port on another loopback address: Synapse's connection is refused.
    let yaml = slot
        .config_yaml()
        .replace(&format!("listen: 127.0.0.1:{}", slot.port), &format!("listen: 127.0.0.2:{}", slot.port));
    let last = serve_fails_with_exit_2(slot, &yaml).await;
    assert!(last.contains("the homeserver cannot reach Foyer at"), "{last:?}");
}

#[tokio::test]
async fn a_wrong_hs_token_fails_the_ping_and_exits_2() {
    let slot = Synapse::shared().take_slot();
    let yaml = slot.config_yaml().replace(&slot.hs_token, &random_token());
    let last = serve_fails_with_exit_2(slot, &yaml).await;
    assert!(last.contains("got an error") && last.contains("hs_token"), "{last:?}");
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut foyer = TestFoyer::start().await;
    foyer.signal("TERM");
    let code = foyer.wait_exit(Duration::from_secs(20)).await;
    let log = foyer.log();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("SIGTERM received") && log.contains("shut down"), "{log}");
}
