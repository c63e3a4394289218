//! `scripts/demo` as a newcomer runs it, five times faster (`FOYER_DEMO_SPEED=5`) and on
//! free ports: its own Synapse and Foyer start, the showcase reservation is seeded, alice
//! is invited to its room, and the "live" notice is posted there. Beside her, Robin, a fan
//! with only a browser, opens the watch page whose link the demo prints: a mock player
//! and the chat, framed from Foyer across sites in a real Chromium; Robin and alice see
//! each other's messages.

use std::{
    os::unix::process::CommandExt as _,
    process::{Child, Command},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    browser::{Browser, wait_for_message},
    common::{
        eventually, foyer_bin, free_port, read_tail, repo_root,
        webchat::{ChatClient, Sse},
    },
};

/// Five times faster: the room is open for 21 s (from 12 s after the showcase starts to
/// 33 s), time enough for a browser to start and the fan to write, on a loaded machine.
const SPEED: &str = "5";

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
    let (hs_port, foyer_port, watch_port) = (free_port(), free_port(), free_port());
    let log_path = dir.path().join("demo.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new("bash")
        .arg(repo_root().join("scripts/demo"))
        .env("FOYER_DEMO_DIR", dir.path().join("state"))
        .env("FOYER_DEMO_HS_PORT", hs_port.to_string())
        .env("FOYER_DEMO_PORT", foyer_port.to_string())
        .env("FOYER_DEMO_WATCH_PORT", watch_port.to_string())
        .env("FOYER_DEMO_SPEED", SPEED)
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

    // The watch page whose link the showcase prints, on another origin than Foyer's: a
    // mock player, and the chat framed with Robin's viewer token.
    let link = log().split("is at: ").nth(1).and_then(|rest| rest.split_whitespace().next()).map(str::to_owned);
    assert_eq!(link, Some(format!("http://localhost:{watch_port}/")), "the watch page's link; {}", log());
    let link = link.unwrap_or_default();
    let page = http.get(&link).send().await.expect("the watch page");
    assert_eq!(page.status(), 200, "the watch page is served; {}", log());
    let page = page.text().await.expect("the watch page's text");
    assert!(page.contains("id=\"player\""), "a mock player on the watch page: {page}");
    let foyer = format!("http://127.0.0.1:{foyer_port}");
    let framed = format!("<iframe src=\"{foyer}/chat/{reservation}#token=");
    let viewer_token = page.split(&framed).nth(1).and_then(|rest| rest.split('"').next());
    let viewer_token = viewer_token.unwrap_or_else(|| panic!("the chat framed with a token: {page}")).to_owned();

    // Foyer takes the token the demo minted: Robin gets a session. Every answer is checked
    // for the demo's secrets, alice's access token and Robin's email.
    let secrets = std::fs::read_to_string(dir.path().join("state/secrets.env")).expect("the demo's secrets.env");
    let mut private: Vec<&str> = secrets.lines().filter_map(|line| Some(line.split_once('=')?.1)).collect();
    private.extend([token.as_str(), "robin@example.org"]);
    let chat = ChatClient::new(&foyer, &private);
    assert_eq!(chat.get(&format!("/chat/{reservation}")).await.0, 200, "the chat's page");
    let (status, answer, text) = chat.session(&json!({"token": viewer_token, "reservation_id": reservation})).await;
    assert_eq!((status, answer["me"]["name"].as_str()), (200, Some("Robin")), "{text}");
    let session = answer["session"].as_str().expect("a session").to_owned();
    let robin_key = answer["me"]["key"].clone();

    // Robin opens the link in a browser that blocks third-party cookies: the framed chat
    // starts and shows the show's phase.
    let browser = Browser::start_blocking_third_party_cookies().await;
    browser.resize(1100, 760).await;
    browser.goto(&link).await;
    assert!(browser.enter_frame(0).await, "the chat's frame on the watch page");
    eventually(Duration::from_secs(30), "the framed chat to show the phase", || async {
        browser.text("#phase").await.filter(|phase| !phase.is_empty())
    })
    .await;

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
    let messages = format!("{hs}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", crate::common::enc(&room));
    let timeline = || async {
        let page: Value = http.get(&messages).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        page["chunk"].as_array().cloned()
    };

    // Once the room is open, Robin writes on the watch page (Enter sends). Alice sees it
    // in the room, from Robin's web user with the web mark, and answers; Robin sees her
    // answer by her name.
    eventually(Duration::from_secs(30), "the framed chat to say the room is open", || async {
        matches!(browser.text("#phase").await.as_deref(), Some("Open" | "Live")).then_some(())
    })
    .await;
    let said = "Hello from the watch page!";
    browser.type_into("#body", &format!("{said}\u{E007}")).await;
    let sender = eventually(Duration::from_secs(30), "Robin's message in alice's room", || async {
        let events = timeline().await?;
        let event = events.iter().find(|e| e["content"]["body"] == said)?;
        event["sender"].as_str().map(str::to_owned)
    })
    .await;
    let member = format!(
        "{hs}/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        crate::common::enc(&room),
        crate::common::enc(&sender)
    );
    let member: Value = http.get(member).bearer_auth(&token).send().await.expect("member").json().await.expect("json");
    assert_eq!(member["displayname"], "Robin (web)", "{member}");
    let answer = "Hi Robin, from Element!";
    let send = format!("{hs}/_matrix/client/v3/rooms/{}/send/m.room.message/demo-1", crate::common::enc(&room));
    let body = json!({"msgtype": "m.text", "body": answer});
    let sent = http.put(send).bearer_auth(&token).json(&body).send().await.expect("alice answers");
    assert_eq!(sent.status(), 200, "alice's answer is sent");
    wait_for_message(&browser, "alice", answer).await;
    let shot = repo_root().join("target/test-artifacts/demo-watch-page.png");
    browser.screenshot(&shot).await;
    eprintln!("[demo] the watch page: {}", shot.display());
    drop(browser);

    // Robin's session reads both messages from the stream; what it holds is checked too.
    let (status, stream) = chat.stream(&session, None).await;
    assert_eq!(status, 200, "Robin's stream");
    let mut stream = stream.unwrap_or_else(|refused| panic!("Robin's stream: {refused}"));
    let events = stream.until("alice's answer", |e| e.event == "message" && e.data["body"] == answer).await;
    let mine =
        |e: &Sse| e.data["body"] == said && e.data["sender"]["key"] == robin_key && e.data["sender"]["role"] == "web";
    assert!(events.iter().any(mine), "Robin's own message, by Robin's key: {events:?}");
    drop(stream);

    // The showcase sends stream.started on its timer; Foyer posts the live notice.
    eventually(Duration::from_secs(60), "the live notice in the showcase room", || async {
        let chunk = timeline().await?;
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
