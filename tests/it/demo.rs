//! `scripts/demo` as a newcomer runs it, ten times faster (`FOYER_DEMO_SPEED=10`) and on
//! free ports: its own Synapse and Foyer start, the showcase reservation is seeded, alice
//! is invited to its room, and the "live" notice is posted there.

use std::{
    os::unix::process::CommandExt as _,
    process::{Child, Command},
    time::Duration,
};

use serde_json::{Value, json};

use crate::common::{eventually, foyer_bin, free_port, read_tail, repo_root};

/// The demo's process group, stopped as Ctrl-C would when dropped.
struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        // SIGTERM to the group: the demo's trap stops Foyer, Synapse and the showcase.
        // (Not `kill -TERM -PID`: procps reads that as a signal to every process.)
        if let Ok(group) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group, nothing else.
            unsafe { libc::kill(-group, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_invites_alice_and_goes_live_by_itself() {
    let dir = tempfile::Builder::new().prefix("foyer-demo-").tempdir().expect("tempdir");
    let (hs_port, foyer_port) = (free_port(), free_port());
    let log_path = dir.path().join("demo.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new("bash")
        .arg(repo_root().join("scripts/demo"))
        .env("FOYER_DEMO_DIR", dir.path().join("state"))
        .env("FOYER_DEMO_HS_PORT", hs_port.to_string())
        .env("FOYER_DEMO_PORT", foyer_port.to_string())
        .env("FOYER_DEMO_SPEED", "10")
        .env("FOYER_BIN", foyer_bin())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("bash scripts/demo");
    let _demo = Demo { child };
    let http = reqwest::Client::new();
    let log = || read_tail(&log_path);

    // The showcase names its reservation when it seeds it.
    let reservation = eventually(Duration::from_secs(120), "the showcase seeded", || async {
        let text = std::fs::read_to_string(&log_path).ok()?;
        let line = text.lines().find(|l| l.contains("The showcase, reservation "))?;
        let id = line.split("reservation ").nth(1)?.split(' ').next()?.to_owned();
        text.contains("showcase: ticket.granted -> 2").then_some(id)
    })
    .await;

    let hs = format!("http://127.0.0.1:{hs_port}");
    let login = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "alice-demo-password",
    });
    let response = http.post(format!("{hs}/_matrix/client/v3/login")).json(&login).send().await.expect("login");
    assert_eq!(response.status(), 200, "alice logs in as the demo says; {}", log());
    let token =
        response.json::<Value>().await.expect("login answer")["access_token"].as_str().expect("token").to_owned();

    // Alice is invited to the showcase's room (its name says which). Each sync goes on
    // from the last one: Synapse answers a repeated initial sync from a cache.
    let since = std::sync::Mutex::new(String::new());
    let room = eventually(Duration::from_secs(60), "alice invited to the showcase room", || async {
        let after = since.lock().unwrap().clone();
        let since_part = if after.is_empty() { String::new() } else { format!("&since={after}") };
        let url = format!("{hs}/_matrix/client/v3/sync?timeout=0{since_part}");
        let sync: Value = http.get(url).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        *since.lock().unwrap() = sync["next_batch"].as_str()?.to_owned();
        let invites = sync["rooms"]["invite"].as_object()?;
        invites.iter().find_map(|(room_id, invite)| {
            let events = invite["invite_state"]["events"].as_array()?;
            let named = events.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Foyer showcase");
            named.then(|| room_id.clone())
        })
    })
    .await;
    let join = format!("{hs}/_matrix/client/v3/join/{}", crate::common::enc(&room));
    let joined = http.post(join).bearer_auth(&token).json(&json!({})).send().await.expect("join");
    assert_eq!(joined.status(), 200, "alice joins the room she was invited to");

    // The showcase sends stream.started on its timer; Foyer posts the live notice.
    let messages = format!("{hs}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", crate::common::enc(&room));
    eventually(Duration::from_secs(60), "the live notice in the showcase room", || async {
        let page: Value = http.get(&messages).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        let chunk = page["chunk"].as_array()?;
        chunk
            .iter()
            .any(|e| {
                e["content"]["msgtype"] == "m.notice" && e["content"]["body"] == "🔴 “Foyer showcase” is live now!"
            })
            .then_some(())
    })
    .await;
    assert!(log().contains("showcase: stream.started -> 2"), "the showcase sent stream.started: {}", log());
    assert!(!reservation.is_empty());
}
