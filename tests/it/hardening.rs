//! Nothing from outside can jam Foyer: slow and many clients are cut off in bounded
//! time while webhooks and the homeserver still get through, oversized bodies are
//! refused before they are read, and the status page's session ends when the admin
//! logs out, expires, and cannot be ended from another site.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use foyer::{http::status::cookie_value, model::SessionId, secret::Secret};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, open_reservation, sqlite_query, valid_config_yaml},
    foyer_bin, random_token,
    synapse::Synapse,
    unique,
    users::TestUser,
};

/// A reservation a month away: accepting it makes Foyer do nothing on the homeserver.
fn far_reservation() -> Value {
    let at = |days: i64| (Utc::now() + chrono::Duration::days(days)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let id = unique("far");
    json!({"reservation_id": id, "title": format!("Show {id}"), "starts_at": at(30), "ends_at": at(31)})
}

async fn connect(foyer: &TestFoyer) -> TcpStream {
    TcpStream::connect(("127.0.0.1", foyer.slot.port)).await.expect("connect to foyer")
}

/// The start of a webhook whose body (`length` bytes announced) never arrives in full.
/// Its signature headers are as good as headers alone can be (a current timestamp, a
/// `v1` signature), so that Foyer starts reading its body.
fn stalled_webhook(length: usize) -> String {
    format!(
        "POST /webhooks/v1/events HTTP/1.1\r\nHost: foyer\r\nContent-Type: application/json\r\n\
         webhook-id: msg_stalled\r\nwebhook-timestamp: {}\r\nwebhook-signature: v1,AAAA\r\n\
         Content-Length: {length}\r\n\r\n{{\"type\": \"reservation.created\", ",
        Utc::now().timestamp()
    )
}

/// Reads until Foyer closes the connection, for at most `limit`: what it sent before,
/// or `None` if the connection was still open at the end.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut received)).await {
        Ok(Ok(_)) => Some(String::from_utf8_lossy(&received).into_owned()),
        // Closed while our bytes were unread on its side: a reset, still a close.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&received).into_owned())
        }
        Ok(Err(e)) => panic!("reading from foyer: {e}"),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_disconnected() {
    let foyer = TestFoyer::start_with(|yaml| yaml, &[("FOYER_HTTP_HEADER_TIMEOUT_MS", "1000")]).await;
    let mut half = connect(&foyer).await;
    let mut silent = connect(&foyer).await;
    let started = Instant::now();
    half.write_all(b"POST /webhooks/v1/events HTTP/1.1\r\nHost: foyer\r\nContent-Ty").await.expect("write");

    let answer = read_until_closed(&mut half, Duration::from_secs(15)).await;
    assert!(answer.is_some(), "still connected 15 s after half its headers (header timeout: 1 s)");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed by the timeout, not at once: {answer:?}");
    let answer = read_until_closed(&mut silent, Duration::from_secs(15)).await;
    assert!(answer.is_some(), "a connection that never sent a byte is still open after 15 s");

    // And Foyer still serves.
    assert_eq!(foyer.send_webhook("reservation.created", far_reservation()).await.0, 202);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_cut_off_while_webhooks_go_on() {
    let foyer = TestFoyer::start_with(|yaml| yaml, &[("FOYER_HTTP_BODY_TIMEOUT_MS", "2000")]).await;
    let mut slow = connect(&foyer).await;
    slow.write_all(stalled_webhook(1_048_000).as_bytes()).await.expect("write");

    // Meanwhile a normal signed webhook is stored.
    let (status, answer) = foyer.send_webhook("reservation.created", far_reservation()).await;
    assert_eq!(status, 202, "{answer}");

    let answer = read_until_closed(&mut slow, Duration::from_secs(15))
        .await
        .expect("still connected 15 s after a body that stalled (body timeout: 2 s)");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("FOYER_TIMEOUT"), "{answer}");
}

#[tokio::test]
async fn many_slow_clients_neither_stop_webhooks_nor_stay_connected() {
    let env = [("FOYER_HTTP_HEADER_TIMEOUT_MS", "2000"), ("FOYER_HTTP_BODY_TIMEOUT_MS", "3000")];
    let foyer = TestFoyer::start_with(|yaml| yaml, &env).await;
    // 300 clients: silent, stalled in their headers, stalled in a body they announced.
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut stream = connect(&foyer).await;
        match i % 3 {
            0 => {}
            1 => stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: fo").await.expect("write"),
            _ => stream.write_all(stalled_webhook(1_000_000).as_bytes()).await.expect("write"),
        }
        slow.push(stream);
    }

    let (status, answer) = foyer.send_webhook("reservation.created", far_reservation()).await;
    assert_eq!(status, 202, "a webhook among 300 slow clients: {answer}");
    let txn = format!("/_matrix/app/v1/transactions/hardening-{}", random_token());
    let (status, answer) =
        foyer.request(Method::PUT, &txn, Some(&foyer.slot.hs_token), Some(json!({"events": []}))).await;
    assert_eq!((status, answer), (200, json!({})), "a homeserver transaction among them");

    // Every one of them is cut off within its timeout, all at once.
    let mut reads = tokio::task::JoinSet::new();
    for (i, mut stream) in slow.into_iter().enumerate() {
        reads.spawn(async move { (i, read_until_closed(&mut stream, Duration::from_secs(30)).await) });
    }
    let mut open = Vec::new();
    while let Some(read) = reads.join_next().await {
        let (i, answer) = read.expect("a read task");
        if answer.is_none() {
            open.push(i);
        }
    }
    let first: Vec<usize> = open.iter().copied().take(10).collect();
    assert!(open.is_empty(), "{} of 300 slow clients still connected after 30 s, first {first:?}", open.len());
}

#[tokio::test]
async fn over_the_in_flight_limit_requests_get_503_at_once_but_the_homeserver_gets_through() {
    let env = [("FOYER_HTTP_MAX_IN_FLIGHT", "4"), ("FOYER_HTTP_BODY_TIMEOUT_MS", "10000")];
    let foyer = TestFoyer::start_with(|yaml| yaml, &env).await;
    // Stalled webhooks, one after the other, until one is refused: then the ones before
    // hold every place (nothing else is sent meanwhile).
    let mut holding = Vec::new();
    let refused = loop {
        assert!(holding.len() < 20, "20 stalled webhooks in flight, none refused (limit: 4)");
        let mut stream = connect(&foyer).await;
        stream.write_all(stalled_webhook(1000).as_bytes()).await.expect("write");
        match read_until_closed(&mut stream, Duration::from_millis(300)).await {
            Some(answer) => break answer,
            None => holding.push(stream),
        }
    };
    assert!(refused.starts_with("HTTP/1.1 503 ") && refused.contains("FOYER_UNAVAILABLE"), "{refused}");
    // A webhook now is refused at once, not queued (it would wait 10 s for a place).
    let started = Instant::now();
    let (status, answer) = foyer.send_webhook("reservation.created", far_reservation()).await;
    assert_eq!((status, answer["errcode"].as_str()), (503, Some("FOYER_UNAVAILABLE")), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "refused after {:?}", started.elapsed());

    // The homeserver, health checks and metrics have a reserve.
    let txn = format!("/_matrix/app/v1/transactions/busy-{}", random_token());
    let (status, answer) =
        foyer.request(Method::PUT, &txn, Some(&foyer.slot.hs_token), Some(json!({"events": []}))).await;
    assert_eq!((status, answer), (200, json!({})));
    assert_eq!(foyer.request(Method::GET, "/health/live", None, None).await.0, 200);
    assert!(foyer.metric(r#"foyer_http_refused_total{reason="busy"}"#).await >= 2.0);

    // Exactly four were in flight; once their bodies time out, webhooks are stored again.
    let mut timed_out = 0;
    for mut stream in holding {
        let answer = read_until_closed(&mut stream, Duration::from_secs(20)).await.expect("cut off");
        timed_out += usize::from(answer.starts_with("HTTP/1.1 408 "));
    }
    assert_eq!(timed_out, 4, "stalled webhooks in flight until their body timeout");
    let (status, answer) = foyer.send_webhook("reservation.created", far_reservation()).await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_before_it_is_sent() {
    let foyer = TestFoyer::start().await;
    let hs = format!("Authorization: Bearer {}\r\n", foyer.slot.hs_token);
    let cases = [
        ("POST /webhooks/v1/events", String::new(), 1024 * 1024 + 1, "FOYER_TOO_LARGE"),
        ("POST /webhooks/v1/events", String::new(), 50 * 1024 * 1024, "FOYER_TOO_LARGE"),
        ("PUT /_matrix/app/v1/transactions/huge", hs, 32 * 1024 * 1024 + 1, "M_TOO_LARGE"),
        ("POST /status/login", String::new(), 4097, "FOYER_TOO_LARGE"),
    ];
    for (request, auth, length, errcode) in cases {
        let mut stream = connect(&foyer).await;
        let head = format!(
            "{request} HTTP/1.1\r\nHost: foyer\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let answer = read_until_closed(&mut stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{request} announcing {length} bytes: no answer in 10 s without its body"));
        assert!(answer.starts_with("HTTP/1.1 413 "), "{request} announcing {length} bytes: {answer}");
        assert!(answer.contains(errcode), "{answer}");
    }

    // Exactly 1 MiB is read (and refused for its signature, not its size).
    let body = vec![b' '; 1024 * 1024];
    let now = Utc::now().timestamp().to_string();
    let headers = [("webhook-id", "msg_big"), ("webhook-timestamp", now.as_str()), ("webhook-signature", "v1,AAAA")];
    let (status, answer) = foyer.post_webhook(&headers, "application/json", body).await;
    assert_eq!((status, answer["errcode"].as_str()), (401, Some("FOYER_BAD_SIGNATURE")), "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("no signature matches")), "{answer}");
}

/// A client that keeps no cookies and follows no redirects: each test says what it sends.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Logs in to the status page; returns the `Set-Cookie` line.
async fn log_in(foyer: &TestFoyer) -> String {
    let resp = plain_client()
        .post(format!("{}/status/login", foyer.base_url))
        .form(&[("token", foyer.slot.api_token.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 303, "a login with the right token");
    resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("a Set-Cookie after login").to_owned()
}

/// `name=value` of a `Set-Cookie` line.
fn cookie_pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().expect("a cookie").trim()
}

/// The status of `GET /status` with this `Cookie` header.
async fn page_with(foyer: &TestFoyer, cookie: &str) -> u16 {
    let resp = plain_client().get(format!("{}/status", foyer.base_url)).header("cookie", cookie).send().await;
    resp.expect("GET /status").status().as_u16()
}

/// `POST /status/logout` with this `Cookie` header and these extra headers.
async fn log_out(foyer: &TestFoyer, cookie: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let mut req = plain_client().post(format!("{}/status/logout", foyer.base_url)).header("cookie", cookie);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("logout");
    let set_cookie = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (resp.status().as_u16(), set_cookie)
}

#[tokio::test]
async fn a_logged_out_cookie_replayed_is_refused_even_after_a_restart() {
    let mut foyer = TestFoyer::start().await;
    let kept = log_in(&foyer).await;
    let ended = log_in(&foyer).await;
    // Over http (a local install): a plain name, no Secure (a browser would drop it).
    assert!(ended.starts_with("foyer_status="), "{ended}");
    assert!(ended.contains("; Path=/;") && ended.contains("HttpOnly") && ended.contains("SameSite=Strict"), "{ended}");
    assert!(ended.contains("Max-Age=43200") && !ended.contains("Secure"), "{ended}");
    let (kept, ended) = (cookie_pair(&kept).to_owned(), cookie_pair(&ended).to_owned());
    assert_ne!(kept, ended, "each login is a session of its own");
    assert_eq!(page_with(&foyer, &ended).await, 200);

    let (status, cleared) = log_out(&foyer, &ended, &[("origin", &foyer.base_url)]).await;
    assert_eq!(status, 303);
    assert!(
        cleared.as_deref().is_some_and(|c| c.starts_with("foyer_status=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert_eq!(page_with(&foyer, &ended).await, 401, "the logged-out cookie, replayed");
    assert_eq!(page_with(&foyer, &kept).await, 200, "another session goes on");

    foyer.kill_and_restart().await;
    assert_eq!(page_with(&foyer, &ended).await, 401, "the logged-out cookie, replayed after a restart");
    assert_eq!(page_with(&foyer, &kept).await, 200, "a live session outlives the restart");
}

#[tokio::test]
async fn an_expired_or_forged_cookie_is_refused() {
    let foyer = TestFoyer::start().await;
    let cookie = log_in(&foyer).await;
    let value = cookie_pair(&cookie).strip_prefix("foyer_status=").expect("the cookie's value").to_owned();
    let id = SessionId::parse(value.split('.').next().unwrap_or_default()).expect("a session id");
    let token = Secret::new(foyer.slot.api_token.clone());
    // The same live session, in cookies made with the right key: taken while the issue
    // time is recent, refused once it is over 12 h old.
    let fresh = cookie_value(&token, &id, Utc::now() - chrono::Duration::hours(11));
    assert_eq!(page_with(&foyer, &format!("foyer_status={fresh}")).await, 200);
    let expired = cookie_value(&token, &id, Utc::now() - chrono::Duration::hours(12) - chrono::Duration::minutes(1));
    assert_eq!(page_with(&foyer, &format!("foyer_status={expired}")).await, 401, "a cookie over 12 h old");
    // A session Foyer never started, under the right key; and the right session under another key.
    let unknown = cookie_value(&token, &SessionId::random(), Utc::now());
    assert_eq!(page_with(&foyer, &format!("foyer_status={unknown}")).await, 401, "a session never started");
    let other_key = cookie_value(&Secret::new(random_token()), &id, Utc::now());
    assert_eq!(page_with(&foyer, &format!("foyer_status={other_key}")).await, 401, "another key");
    assert_eq!(page_with(&foyer, cookie_pair(&cookie)).await, 200, "the cookie as issued still works");
}

#[tokio::test]
async fn a_logout_from_another_site_is_refused() {
    let foyer = TestFoyer::start().await;
    let cookie = cookie_pair(&log_in(&foyer).await).to_owned();
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("sec-fetch-site", "cross-site"), ("origin", foyer.base_url.as_str())],
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        vec![],
    ] {
        let (status, set_cookie) = log_out(&foyer, &cookie, &headers).await;
        assert_eq!((status, set_cookie), (403, None), "a logout with {headers:?}");
        assert_eq!(page_with(&foyer, &cookie).await, 200, "still logged in after a logout with {headers:?}");
    }
    let get = plain_client().get(format!("{}/status/logout", foyer.base_url)).header("cookie", &cookie).send().await;
    assert_eq!(get.expect("GET logout").status(), 405, "a link cannot log out");
    assert_eq!(page_with(&foyer, &cookie).await, 200);

    // What the page's own form sends.
    assert_eq!(log_out(&foyer, &cookie, &[("sec-fetch-site", "same-origin")]).await.0, 303);
    assert_eq!(page_with(&foyer, &cookie).await, 401);
}

#[tokio::test]
async fn over_https_the_session_cookie_is_secure_and_host_only() {
    let foyer = TestFoyer::start_with(
        |yaml| {
            let port = yaml.split("listen: 127.0.0.1:").nth(1).and_then(|r| r.lines().next()).expect("the listen port");
            yaml.replace(&format!("url: http://127.0.0.1:{port}"), &format!("url: https://127.0.0.1:{port}"))
        },
        &[],
    )
    .await;
    let set_cookie = log_in(&foyer).await;
    assert!(set_cookie.starts_with("__Host-foyer_status="), "{set_cookie}");
    for flag in ["; Path=/;", "; Secure", "; HttpOnly", "; SameSite=Strict", "; Max-Age=43200"] {
        assert!(set_cookie.contains(flag), "{flag} missing: {set_cookie}");
    }
    assert!(!set_cookie.to_ascii_lowercase().contains("domain="), "{set_cookie}");
    let pair = cookie_pair(&set_cookie);
    assert_eq!(page_with(&foyer, pair).await, 200);
    // The same value under the plain name (which an http page of the domain could set) is not taken.
    let plain = pair.replacen("__Host-", "", 1);
    assert_eq!(page_with(&foyer, &plain).await, 401);
    // The page's own form over https: an https Origin of this host.
    let origin = foyer.base_url.replace("http://", "https://");
    assert_eq!(log_out(&foyer, pair, &[("origin", &foyer.base_url)]).await.0, 403, "an http origin");
    let (status, cleared) = log_out(&foyer, pair, &[("origin", &origin)]).await;
    assert_eq!(status, 303);
    assert!(cleared.as_deref().is_some_and(|c| c.starts_with("__Host-foyer_status=;") && c.contains("; Secure")));
    assert_eq!(page_with(&foyer, pair).await, 401);
}

#[tokio::test]
async fn a_large_login_body_is_refused() {
    let foyer = TestFoyer::start().await;
    let long = "x".repeat(8 * 1024);
    let resp = plain_client()
        .post(format!("{}/status/login", foyer.base_url))
        .form(&[("token", long.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 413, "an 8 KiB login form");
    // Sent in chunks (no Content-Length to refuse it by), it is refused as it is read.
    let mut stream = connect(&foyer).await;
    let mut request = "POST /status/login HTTP/1.1\r\nHost: foyer\r\nConnection: close\r\n\
                       Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_owned();
    request.push_str(&format!("6\r\ntoken=\r\n{:x}\r\n{long}\r\n0\r\n\r\n", long.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 413 "), "an 8 KiB login form, chunked: {answer}");
    log_in(&foyer).await; // a normal login still works
}

#[test]
fn a_limit_that_is_not_a_number_stops_serve_with_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), valid_config_yaml()).expect("write config");
    let out = std::process::Command::new(foyer_bin())
        .args(["serve", "-c", "config.yaml"])
        .current_dir(dir.path())
        .env("FOYER_HTTP_MAX_IN_FLIGHT", "many")
        .output()
        .expect("run foyer serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FOYER_HTTP_MAX_IN_FLIGHT must be a whole number above 0, not \"many\""), "{stderr}");
    assert!(!dir.path().join("foyer.db").exists(), "nothing was opened");
}

/// How often a stranger asks something to keep its connection. This is the attack being
/// tested, not a wait: it is far below the 10 s after which Foyer closes an idle
/// connection, so a busy machine that stretches it changes nothing; what the test checks
/// it polls for.
const STRANGER_PACE: Duration = Duration::from_millis(500);

/// A stranger's keep-alive client from 127.0.0.2 (Synapse and the test are on 127.0.0.1):
/// connects to `port` and asks for `/health/live` every [`STRANGER_PACE`] for as long as
/// it runs, so its connection is never idle long enough to be closed. Beyond the
/// connection cap it waits, connected, in the kernel's backlog, and takes the first slot
/// that frees.
async fn keep_alive_stranger(port: u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.2:0".parse().expect("address")).expect("bind 127.0.0.2");
    let Ok(mut stream) = socket.connect(([127, 0, 0, 1], port).into()).await else { return };
    let mut buffer = vec![0u8; 4096];
    loop {
        if stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: foyer\r\n\r\n").await.is_err() {
            return;
        }
        // One answer (small, one read), or none while this client waits in the backlog.
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        tokio::time::sleep(STRANGER_PACE).await;
    }
}

/// Synapse's record of the appservice's state (`up`, `down`), if it has one.
fn appservice_state(as_id: &str) -> String {
    let db = Synapse::shared().log_path().with_file_name("homeserver.db");
    sqlite_query(&db, &format!("SELECT state FROM application_services_state WHERE as_id = '{as_id}'"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn strangers_holding_every_connection_do_not_keep_the_homeserver_out() {
    const CAP: usize = 16;
    let hs = Synapse::shared();
    let env = [("FOYER_HTTP_MAX_CONNECTIONS", "16"), ("FOYER_HTTP_HEADER_TIMEOUT_MS", "3000")];
    let foyer = TestFoyer::start_with_homeserver_listener(|yaml| yaml + "rooms:\n  join_rule: knock\n", &env).await;
    let main_port: u16 = foyer.base_url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("main port");
    // Before the strangers come: an open room, and an email ticket's claim code.
    let fan = hs.create_user("crowded").await;
    let id = unique("crowded");
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    let ticket = json!({"ticket_id": "t-1", "email": "crowded@example.org"});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [ticket]})).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    let path = format!("/api/v1/reservations/{id}/tickets");
    let (status, tickets) = foyer.request(Method::GET, &path, Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 200, "{tickets}");
    let code = tickets.to_string();
    let code =
        tickets["tickets"][0]["claim"]["code"].as_str().unwrap_or_else(|| panic!("no code in {code}")).to_owned();

    // check-config --online checks both listeners, and the ping lands on the homeserver's.
    let online = std::process::Command::new(foyer_bin())
        .args(["check-config", "--online", "-c", "config.yaml"])
        .current_dir(foyer.dir())
        .output()
        .expect("check-config --online");
    let report = String::from_utf8_lossy(&online.stdout);
    assert!(online.status.success(), "{report}{}", String::from_utf8_lossy(&online.stderr));
    let own = foyer.homeserver_listener_url();
    assert!(report.contains(&format!("reached {own}/ in ")), "the ping names the homeserver's listener:\n{report}");
    assert!(
        report.contains(&format!("homeserver API: {} is in use by a running Foyer", &own["http://".len()..])),
        "{report}"
    );

    // Twice the cap of strangers' keep-alive clients.
    let mut strangers = tokio::task::JoinSet::new();
    for _ in 0..2 * CAP {
        strangers.spawn(keep_alive_stranger(main_port));
    }
    // The main listener is full: its own count says so, and a newcomer gets no answer.
    let monitor = reqwest::Client::new();
    let metrics_url = format!("{}/metrics", foyer.homeserver_listener_url());
    let connections = r#"foyer_http_connections{listener="main"}"#;
    eventually(Duration::from_secs(15), "the strangers hold every connection", || async {
        let text = monitor.get(&metrics_url).bearer_auth(&foyer.slot.api_token).send().await.ok()?.text().await.ok()?;
        let open = crate::common::foyer::metric_in(&text, connections)?;
        (open >= CAP as f64).then_some(())
    })
    .await;
    let newcomer = monitor.get(format!("{}/health/live", foyer.base_url)).timeout(Duration::from_secs(2)).send().await;
    assert!(newcomer.is_err(), "the main listener answered a newcomer: the strangers do not hold it ({newcomer:?})");

    // Synapse reaches Foyer all the same: the ping...
    let bot = TestUser::bot(&foyer.slot);
    let ping = format!("/_matrix/client/v1/appservice/{}/ping", foyer.slot.id);
    let (status, answer) =
        bot.request(Method::POST, &ping, Some(json!({"transaction_id": format!("crowd-{}", random_token())}))).await;
    assert_eq!(status, 200, "the homeserver's ping among the strangers: {answer}");
    // ...and a fan's knock reaches Foyer in a transaction, and Foyer acts on it.
    let knock = format!("/_matrix/client/v3/knock/{}", enc(&foyer.alias(&id)));
    let (status, body) = fan.request(Method::POST, &knock, Some(json!({"reason": format!("my code is {code}")}))).await;
    assert_eq!(status, 200, "{body}");
    fan.join_once_invited(&room, Duration::from_secs(30)).await;
    assert_ne!(appservice_state(&foyer.slot.id), "down", "Synapse marked the appservice down");

    // The strangers were there all along.
    assert!(strangers.try_join_next().is_none(), "a stranger's client gave up");
    let text = monitor.get(&metrics_url).bearer_auth(&foyer.slot.api_token).send().await.expect("metrics");
    let open = crate::common::foyer::metric_in(&text.text().await.expect("text"), connections);
    assert_eq!(open, Some(CAP as f64), "the strangers still hold the main listener");
}

/// The head of a chunked POST to `path` and its first chunk of `first` bytes; the rest
/// never comes.
fn stalled_chunked(path: &str, headers: &str, content_type: &str, first: usize) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: foyer\r\n{headers}Content-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{first:x}\r\n"
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b' ', first));
    request.extend_from_slice(b"\r\n");
    request
}

/// Sends `body` chunked (8 KiB a chunk, no length declared) and reads the answer until
/// Foyer closes the connection.
async fn send_chunked(foyer: &TestFoyer, path: &str, headers: &str, content_type: &str, body: &[u8]) -> String {
    let mut stream = connect(foyer).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: foyer\r\n{headers}Content-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    for chunk in body.chunks(8192) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        // Foyer may answer and close before the last chunk: what it said is read below.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    read_until_closed(&mut stream, Duration::from_secs(10)).await.expect("an answer in 10 s")
}

const OWNCAST_CHANNEL: &str = "hardening-channel";

/// Foyer with an ingest token and an Owncast channel, and a body timeout of `body_ms`.
async fn foyer_with_hooks(token: &str, env: &[(&str, &str)]) -> TestFoyer {
    let ingest = format!("ingest:\n  token: {token}\n  owncast:\n    {OWNCAST_CHANNEL}: {}\n", random_token());
    TestFoyer::start_with(move |yaml| yaml + &ingest, env).await
}

#[tokio::test]
async fn a_sender_without_the_token_or_a_well_formed_signature_is_refused_before_its_body() {
    let token = random_token();
    let foyer = foyer_with_hooks(&token, &[("FOYER_HTTP_BODY_TIMEOUT_MS", "20000")]).await;
    let now = Utc::now().timestamp();
    let cases = [
        ("/ingest/v1/rtmp?token=wrong", String::new(), "application/x-www-form-urlencoded", "403 ", "FOYER_BAD_TOKEN"),
        ("/ingest/v1/rtmp", String::new(), "application/json", "403 ", "FOYER_BAD_TOKEN"),
        ("/webhooks/v1/events", String::new(), "application/json", "401 ", "webhook-id header is missing"),
        (
            "/webhooks/v1/events",
            "webhook-id: msg_1\r\nwebhook-timestamp: 1\r\nwebhook-signature: v1,AAAA\r\n".to_owned(),
            "application/json",
            "401 ",
            "beyond the tolerance",
        ),
        (
            &*format!("/ingest/v1/owncast/{OWNCAST_CHANNEL}"),
            String::new(),
            "application/json",
            "401 ",
            "owncast-signature header is missing",
        ),
        (
            &*format!("/ingest/v1/owncast/{OWNCAST_CHANNEL}"),
            format!("owncast-signature: t={}.s=00\r\n", now - 3600),
            "application/json",
            "401 ",
            "beyond 300",
        ),
    ];
    for (path, headers, content_type, status, says) in cases {
        let mut stream = connect(&foyer).await;
        stream.write_all(&stalled_chunked(path, &headers, content_type, 1000)).await.expect("write");
        let asked = Instant::now();
        let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        let answer = answer.unwrap_or_else(|| panic!("{path}: no answer in 5 s while its body stalls"));
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{path} {headers:?}: {answer}");
        assert!(answer.contains(says), "{path} {headers:?}: {answer}");
        assert!(asked.elapsed() < Duration::from_secs(3), "{path}: answered after {:?}", asked.elapsed());
    }
}

#[tokio::test]
async fn ingest_bodies_over_64_kib_are_refused_chunked_or_not() {
    let token = random_token();
    let foyer = foyer_with_hooks(&token, &[]).await;
    // A chunked body (no length to refuse it by): the form with 100 KiB of padding.
    let padded = format!("call=publish&name=key_{}&pad={}", random_token(), "x".repeat(100 * 1024));
    let path = format!("/ingest/v1/rtmp?token={token}");
    let answer = send_chunked(&foyer, &path, "", "application/x-www-form-urlencoded", padded.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413 ") && answer.contains("FOYER_TOO_LARGE"), "{answer}");

    // Owncast's, its header well formed and current, so that only its size is wrong.
    let body = format!(r#"{{"type":"STREAM_STARTED","eventData":{{"id":"x"}},"pad":"{}"}}"#, " ".repeat(100 * 1024));
    let signature = format!("owncast-signature: t={}.s=00\r\n", Utc::now().timestamp());
    let path = format!("/ingest/v1/owncast/{OWNCAST_CHANNEL}");
    let answer = send_chunked(&foyer, &path, &signature, "application/json", body.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413 ") && answer.contains("FOYER_TOO_LARGE"), "{answer}");

    // A declared length over it is refused before it is sent.
    let mut stream = connect(&foyer).await;
    let head = format!(
        "POST /ingest/v1/rtmp?token={token} HTTP/1.1\r\nHost: foyer\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 + 1
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await.expect("an answer without the body");
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
}

#[tokio::test]
async fn bodies_buffered_at_once_have_one_budget_and_over_it_the_answer_is_503_at_once() {
    let env = [("FOYER_HTTP_BODY_BUDGET_BYTES", "100000"), ("FOYER_HTTP_BODY_TIMEOUT_MS", "4000")];
    let foyer = TestFoyer::start_with(|yaml| yaml, &env).await;
    // Two webhooks whose headers pass what headers can prove, each 45,000 bytes into a
    // body that stalls: 90,000 of the 100,000 bytes held.
    let headers = format!(
        "webhook-id: msg_held\r\nwebhook-timestamp: {}\r\nwebhook-signature: v1,AAAA\r\n",
        Utc::now().timestamp()
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&foyer).await;
        stream
            .write_all(&stalled_chunked("/webhooks/v1/events", &headers, "application/json", 45_000))
            .await
            .expect("write");
        held.push(stream);
    }
    // A signed webhook of 20,000 bytes does not fit: 503 at once, nothing stored.
    let mut body = crate::common::foyer::envelope("reservation.created", far_reservation());
    body.extend(std::iter::repeat_n(b' ', 20_000 - body.len()));
    let sender = crate::common::foyer::Sender::new(&foyer.base_url);
    let asked = Instant::now();
    let (status, answer) = eventually(Duration::from_secs(10), "the budget full", || async {
        let (status, answer) = sender.attempt(&format!("msg_{}", random_token()), &body).await.ok()?;
        (status == 503).then_some((status, answer))
    })
    .await;
    assert_eq!((status, answer["errcode"].as_str()), (503, Some("FOYER_UNAVAILABLE")), "{answer}");
    assert!(asked.elapsed() < Duration::from_secs(3), "refused after {:?}", asked.elapsed());
    assert!(foyer.metric(r#"foyer_http_refused_total{reason="body_budget"}"#).await >= 1.0);

    // Once the stalled ones are cut off, their bytes are free again.
    for mut stream in held {
        let answer = read_until_closed(&mut stream, Duration::from_secs(15)).await.expect("cut off");
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    }
    let delivery = sender.deliver(&format!("msg_{}", random_token()), &body, Duration::from_secs(10)).await;
    assert_eq!(delivery.status, 202);
}

/// `docs/security.md`'s reverse-proxy site for nginx, between its markers.
fn readme_proxy_site() -> String {
    let readme =
        std::fs::read_to_string(crate::common::repo_root().join("docs/security.md")).expect("docs/security.md");
    let (_, rest) = readme.split_once("<!-- nginx-proxy:begin -->").expect("docs/security.md marks its proxy site");
    let (block, _) = rest.split_once("<!-- nginx-proxy:end -->").expect("docs/security.md ends its proxy site");
    let block = block.trim().strip_prefix("```nginx").and_then(|b| b.strip_suffix("```")).expect("a fenced block");
    block.trim().to_owned()
}

#[tokio::test]
async fn the_readmes_reverse_proxy_site_lets_through_only_what_each_caller_needs() {
    assert!(
        std::path::Path::new("/usr/sbin/nginx").exists(),
        "nginx is not installed: run scripts/install-nginx-rtmp.sh"
    );
    let foyer = TestFoyer::start_with_homeserver_listener(|yaml| yaml, &[]).await;
    let upstream = foyer.base_url.trim_start_matches("http://").to_owned();
    let site = readme_proxy_site();
    // The page's own addresses must be there to be replaced: the two cannot drift apart.
    for needle in ["listen 443 ssl;", "server 127.0.0.1:29330;", "ssl_certificate "] {
        assert!(site.contains(needle), "docs/security.md's proxy site should contain {needle:?}:\n{site}");
    }
    let port = crate::common::free_port();
    let site: String = site
        .lines()
        .filter(|line| !line.trim_start().starts_with("ssl_certificate"))
        .map(|line| {
            line.replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port};"))
                .replace("server 127.0.0.1:29330;", &format!("server {upstream};"))
                + "\n"
        })
        .collect();
    let dir = tempfile::Builder::new().prefix("foyer-proxy-").tempdir().expect("tempdir");
    let at = |name: &str| dir.path().join(name).display().to_string();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {pid};\nerror_log {log} info;\nevents {{ worker_connections 64; }}\n\
         http {{\naccess_log off;\nclient_body_temp_path {body};\nproxy_temp_path {proxy};\n{site}}}\n",
        pid = at("nginx.pid"),
        log = at("error.log"),
        body = at("body"),
        proxy = at("proxy"),
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
    let _nginx = tokio::process::Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(dir.path())
        .args(["-c", "nginx.conf", "-e", "stderr"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("start nginx");
    let proxy = format!("http://127.0.0.1:{port}");
    let nginx_log = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    eventually(Duration::from_secs(10), "nginx to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
    })
    .await;

    // Public: the platform's webhooks, the fans' claim pages, answered by Foyer (which
    // gives every answer an x-request-id).
    let sender = crate::common::foyer::Sender::new(&proxy);
    let body = crate::common::foyer::envelope("reservation.created", far_reservation());
    let delivery = sender.deliver(&format!("msg_{}", random_token()), &body, Duration::from_secs(10)).await;
    assert_eq!(delivery.status, 202, "a webhook through the proxy; nginx said:\n{}", nginx_log());
    let http = reqwest::Client::new();
    let claim = http.get(format!("{proxy}/claim/AAAA-BBBB-CCCC-DDDD")).send().await.expect("claim page");
    assert!(claim.headers().contains_key("x-request-id"), "the claim page reached Foyer: {claim:?}");

    // The rest, from an address the site does not allow (the test's), stops at nginx.
    let hs = format!("Bearer {}", foyer.slot.hs_token);
    let api = format!("Bearer {}", foyer.slot.api_token);
    for (method, path, auth, status) in [
        (Method::POST, "/ingest/v1/rtmp", "", 403),
        (Method::GET, "/api/v1/reservations", api.as_str(), 403),
        (Method::GET, "/status", api.as_str(), 403),
        (Method::PUT, "/_matrix/app/v1/transactions/through-the-proxy", hs.as_str(), 404),
        (Method::GET, "/metrics", api.as_str(), 404),
        (Method::GET, "/health/ready", "", 404),
    ] {
        let mut request = http.request(method.clone(), format!("{proxy}{path}")).json(&json!({"events": []}));
        if !auth.is_empty() {
            request = request.header("authorization", auth);
        }
        let resp = request.send().await.expect("through the proxy");
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        assert!(!resp.headers().contains_key("x-request-id"), "{method} {path} reached Foyer through the proxy");
    }
}
