//! Readers of the web chat cost the homeserver nothing (docs/web-chat.md, "The
//! stream"): a thousand viewers connected to one reservation's stream, against a real
//! Synapse, add no member to the room and no request from Foyer to the homeserver, while
//! a Matrix member's message reaches every one of them.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::mpsc,
};

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, open_reservation},
    synapse::Synapse,
    unique,
    users::TestUser,
    webchat::session_for,
};

const READERS: usize = 1000;
/// Readers share sessions, as a few viewers with many tabs would.
const SESSIONS: usize = 10;

/// Raises this process's soft limit on open files to its hard limit, so that it and
/// the Foyer it starts (which inherits it) can hold the readers' connections.
fn raise_open_files(needed: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) and setrlimit(2) only read and write the struct on this stack.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0, "getrlimit");
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit");
        }
    }
    assert!(limit.rlim_cur >= needed, "the test needs {needed} open files; `ulimit -Hn` is {}", limit.rlim_max);
}

/// What a reader tells the test.
#[derive(Debug)]
enum Told {
    /// Its backlog is read: what comes next is new.
    Ready,
    /// The message came.
    Read,
    Failed(String),
}

/// One viewer's stream on a plain TCP connection (a thousand HTTP clients would cost the
/// test more than Foyer): tells `Ready`, then `Read` once `needle` has come, then stays
/// connected until the test ends it; or `Failed`. Keeps only the last few bytes it read.
async fn reader(addr: String, session: String, needle: Arc<str>, told: mpsc::Sender<Told>) {
    if let Err(e) = read_stream(&addr, &session, &needle, &told).await {
        let _ = told.send(Told::Failed(e)).await;
    }
}

async fn read_stream(addr: &str, session: &str, needle: &str, told: &mpsc::Sender<Told>) -> Result<(), String> {
    let mut stream = TcpStream::connect(&addr).await.map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET /chat/v1/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {session}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    let mut window: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut looking_for: &[u8] = b"event: ready";
    let mut answered = false;
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("the stream ended: {}", String::from_utf8_lossy(&window)));
        }
        window.extend_from_slice(&chunk[..n]);
        if !answered {
            if !window.starts_with(b"HTTP/1.1 200") {
                return Err(format!("refused: {}", String::from_utf8_lossy(&window)));
            }
            answered = true;
        }
        if window.windows(looking_for.len()).any(|w| w == looking_for) {
            if looking_for == b"event: ready" {
                let _ = told.send(Told::Ready).await;
                looking_for = needle.as_bytes();
                window.clear();
                continue;
            }
            let _ = told.send(Told::Read).await;
            // Stays connected until the test is done with it.
            while stream.read(&mut chunk).await.is_ok_and(|n| n > 0) {}
            return Ok(());
        }
        let keep = window.len().saturating_sub(looking_for.len());
        window.drain(..keep);
    }
}

/// Foyer's requests to the homeserver so far, each endpoint's count (its metrics).
async fn homeserver_requests(foyer: &TestFoyer) -> Vec<(String, f64)> {
    let text = foyer.metrics_text().await;
    text.lines()
        .filter(|line| line.starts_with("foyer_homeserver_request_duration_seconds_count"))
        .filter_map(|line| line.rsplit_once(' ').map(|(name, n)| (name.to_owned(), n.parse().unwrap_or(-1.0))))
        .collect()
}

/// The room's joined members, as Synapse says.
async fn joined(member: &TestUser, room: &str) -> BTreeSet<String> {
    let (status, body) = member.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room))).await;
    assert_eq!(status, 200, "{body}");
    body["joined"].as_object().expect("joined").keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_readers_add_no_member_and_no_homeserver_request() {
    // Each side holds the readers' connections, and more: Foyer keeps 320 descriptors
    // out of its connection cap, and this binary runs other tests beside this one.
    raise_open_files(READERS as u64 + 1024);
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let member = hs.create_user("member").await;
    let id = unique("readers");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[("t-member", member.user_id.as_str())]).await;
    let tickets: Vec<_> = (0..SESSIONS)
        .map(|i| json!({"ticket_id": format!("t-web-{i}"), "email": format!("fan{i}@example.org")}))
        .collect();
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": tickets})).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    member.join_once_invited(&room, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(20), "Foyer to hear of the member's join", || async {
        (foyer.reservation(&id).await.1["members"]["joined"] == 1).then_some(())
    })
    .await;
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        sessions.push(session_for(&foyer, &id, &format!("t-web-{i}"), &format!("Fan {i}")).await);
    }

    let members_before = joined(&member, &room).await;
    let bot = TestUser::bot(&foyer.slot);
    assert_eq!(members_before, BTreeSet::from([bot.user_id.clone(), member.user_id.clone()]));
    let requests_before = homeserver_requests(&foyer).await;
    assert!(requests_before.iter().any(|(_, n)| *n > 0.0), "Foyer counts its requests: {requests_before:?}");

    // A thousand readers connect and read their backlog.
    let addr = foyer.base_url.trim_start_matches("http://").to_owned();
    let needle: Arc<str> = Arc::from(format!("for every reader {id}").as_str());
    let (told_tx, mut told) = mpsc::channel(2 * READERS);
    let readers: Vec<_> = (0..READERS)
        .map(|i| tokio::spawn(reader(addr.clone(), sessions[i % SESSIONS].clone(), needle.clone(), told_tx.clone())))
        .collect();
    drop(told_tx);
    let mut wait_for_all = async |what: &str, expected: fn(&Told) -> bool| {
        for n in 0..READERS {
            let heard = tokio::time::timeout(Duration::from_secs(60), told.recv()).await;
            let heard = heard.unwrap_or_else(|_| panic!("only {n} of {READERS} readers {what} in 60 s"));
            match heard {
                Some(heard) if expected(&heard) => {}
                Some(Told::Failed(why)) => panic!("{n} of {READERS} readers {what}, then one failed: {why}"),
                other => panic!("{n} of {READERS} readers {what}, then {other:?}"),
            }
        }
    };
    wait_for_all("read their backlog", |t| matches!(t, Told::Ready)).await;

    // A member's message reaches every one of them.
    let (status, sent) = member.send_text(&room, &needle).await;
    assert_eq!(status, 200, "{sent}");
    wait_for_all("read the message", |t| matches!(t, Told::Read)).await;

    // Meanwhile no one joined, and Foyer asked the homeserver nothing.
    assert_eq!(joined(&member, &room).await, members_before, "the room's members");
    assert_eq!(homeserver_requests(&foyer).await, requests_before, "Foyer's requests to the homeserver");
    for reader in readers {
        reader.abort();
    }
}
