//! Two Foyer instances on one PostgreSQL and one Synapse (docs/moderation.md, "Strikes
//! and timeouts"): a member's strikes reach instance A (the homeserver's transactions go
//! there), A is killed while the timeout runs, and B lifts it on time: the lift is
//! planned from the stored timeout, by whichever instance holds the reservation then.

use std::time::Duration;

use serde_json::json;

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, open_reservation},
    free_port,
    postgres::fresh_postgres_database,
    random_token,
    synapse::Synapse,
    unique,
};

#[tokio::test]
async fn a_timeout_set_by_one_instance_is_lifted_on_time_by_another_when_the_first_is_gone() {
    let synapse = Synapse::dedicated(1);
    let slot = synapse.take_slot();
    let database = fresh_postgres_database().await;
    let config = slot.config_yaml().replace("url: sqlite://foyer.db", &format!("url: {database}"));
    let mut a = TestFoyer::spawn(slot.clone(), &config);
    a.wait_ready().await;
    let port = free_port();
    let own = config.replace(&format!("listen: 127.0.0.1:{}", slot.port), &format!("listen: 127.0.0.1:{port}"));
    let mut b = TestFoyer::spawn(slot.clone(), &own);
    b.base_url = format!("http://127.0.0.1:{port}");
    b.wait_ready().await;

    let (host, fan) = (synapse.create_user("host").await, synapse.create_user("fan").await);
    let id = unique("timeoutinst");
    let mut reservation = open_reservation(&id, &[host.user_id.as_str()], 1);
    reservation["chat"] = json!({"rules": {"blocked_words": ["spam"], "strikes": {"count": 1, "within_seconds": 60, "timeout_seconds": 20}}});
    a.accept("reservation.created", reservation).await;
    a.grant(&id, &[("t-fan", fan.user_id.as_str())]).await;
    let room = a.room_id(&id, Duration::from_secs(60)).await;
    host.join_once_invited(&room, Duration::from_secs(30)).await;
    fan.join_once_invited(&room, Duration::from_secs(30)).await;

    let level = || async {
        let levels = host.state(&room, "m.room.power_levels").await.expect("power levels");
        levels["users"][fan.user_id.as_str()].as_i64()
    };
    let (status, sent) = fan.send_text(&room, "spam").await;
    assert_eq!(status, 200, "{sent}");
    eventually(Duration::from_secs(30), "the fan timed out", || async { (level().await == Some(-1)).then_some(()) })
        .await;
    // A, which took the strike and set the timeout, is gone; B must lift it.
    a.child.kill().expect("SIGKILL instance A");
    eventually(Duration::from_secs(90), "the timeout lifted by B", || async { level().await.is_none().then_some(()) })
        .await;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(&room), random_token());
    let (status, answer) =
        fan.request(reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": "back"}))).await;
    assert_eq!(status, 200, "the fan may post again: {answer}");
    let (status, record) = b
        .request(reqwest::Method::GET, &format!("/api/v1/reservations/{id}/moderation"), Some(&slot.api_token), None)
        .await;
    assert_eq!(status, 200, "{record}");
    let actions: Vec<&str> =
        record["entries"].as_array().expect("entries").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"timeout") && actions.contains(&"untimeout"), "{record}");
    assert!(b.log().contains("who may speak updated"), "B lifted it: {}", b.log());
}
