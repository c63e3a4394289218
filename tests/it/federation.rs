//! Holders on other servers, one of which is dead, against a real Synapse: Synapse
//! answers an invite to `unreachable.invalid` with 502 "Can't connect to server" after
//! about 4.5 s (its own four tries), holding the room's membership lock meanwhile.

use std::time::Duration;

use chrono::Utc;

use crate::common::{
    eventually,
    foyer::{TestFoyer, open_reservation},
    synapse::Synapse,
    unique,
    users::TestUser,
};

/// Invites Foyer sent to the homeserver (each try of each, local ones included).
const INVITES_SENT: &str = r#"foyer_homeserver_request_duration_seconds_count{endpoint="invite_user"}"#;
/// Invites Foyer tried again inside a step.
const INVITES_RETRIED: &str = r#"foyer_homeserver_retries_total{endpoint="invite_user"}"#;

async fn uninvitable(foyer: &TestFoyer, id: &str) -> u64 {
    foyer.reservation(id).await.1["tickets"]["uninvitable"].as_u64().unwrap_or(0)
}

/// The issue's check: with a dead server's holder among them, a local holder granted
/// afterwards is invited at once, before the dead holder's second try (on main, the
/// invite was tried three times in a row, 4.5 s each, and the others waited).
#[tokio::test]
async fn a_local_holder_granted_after_a_dead_one_is_invited_before_its_second_try() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (alice, carol) = (hs.create_user("alice").await, hs.create_user("carol").await);
    let id = unique("deadfed");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t-dead", "@x:unreachable.invalid"), ("t-alice", &alice.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(15)).await;
    let bot = TestUser::bot(&foyer.slot);
    // Granted while the dead holder's first try is under way (or just after).
    let granted = Utc::now();
    foyer.grant(&id, &[("t-carol", &carol.user_id)]).await;
    eventually(Duration::from_secs(30), "carol to be invited", || async {
        let member = bot.member_event(&room, &carol.user_id).await.unwrap_or_default();
        (member["membership"] == "invite").then_some(())
    })
    .await;
    let took = Utc::now() - granted;
    let metrics = foyer.metrics_text().await;
    let value = |sample| crate::common::foyer::metric_in(&metrics, sample).unwrap_or(0.0);
    eprintln!(
        "carol invited {} ms after her grant; invites sent {}, retried {}",
        took.num_milliseconds(),
        value(INVITES_SENT),
        value(INVITES_RETRIED)
    );
    // The dead holder was tried once: no retry inside the step, and the second try waits
    // for the server's backoff (30 s).
    assert_eq!(value(INVITES_RETRIED), 0.0, "no invite is retried inside a step:\n{metrics}");
    assert_eq!(value(r#"foyer_remote_invites_total{result="server_failed"}"#), 1.0, "{metrics}");
    assert!(took < chrono::Duration::seconds(9), "carol waited {} ms", took.num_milliseconds());
    eventually(Duration::from_secs(15), "the dead holder's failure to be recorded", || async {
        (uninvitable(&foyer, &id).await == 1).then_some(())
    })
    .await;
}

/// Twenty holders on one dead server: the server is tried once, and the other nineteen
/// are recorded as not tried, within its backoff.
#[tokio::test]
async fn twenty_holders_on_one_dead_server_cost_one_try() {
    let foyer = TestFoyer::start().await;
    let id = unique("deadfans");
    let fans: Vec<(String, String)> =
        (0..20).map(|i| (format!("t-{i}"), format!("@fan{i}:unreachable.invalid"))).collect();
    let tickets: Vec<(&str, &str)> = fans.iter().map(|(t, u)| (t.as_str(), u.as_str())).collect();
    foyer.grant(&id, &tickets).await;
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.room_id(&id, Duration::from_secs(15)).await;
    eventually(Duration::from_secs(60), "all 20 holders to be recorded uninvitable", || async {
        (uninvitable(&foyer, &id).await == 20).then_some(())
    })
    .await;
    let metrics = foyer.metrics_text().await;
    let value = |sample| crate::common::foyer::metric_in(&metrics, sample).unwrap_or(0.0);
    // The room has no host and no local holder: every invite sent was to the dead server.
    assert_eq!(value(INVITES_SENT), 1.0, "one try for the server, not one per holder:\n{metrics}");
    assert_eq!(value(r#"foyer_remote_invites_total{result="server_failed"}"#), 1.0, "{metrics}");
    assert_eq!(value(r#"foyer_remote_invites_total{result="deferred"}"#), 19.0, "{metrics}");
    // Foyer says so once, not once per holder.
    let log = foyer.log();
    assert_eq!(log.matches("a server failed an invite").count(), 1, "{log}");
}
