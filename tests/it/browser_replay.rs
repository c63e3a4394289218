//! The chat beside the recording (docs/web-chat.md, "Replay beside the recording"):
//! after the show the framed page follows the player's time, which the watch page sends
//! as `foyer.time` messages, and shows the messages said up to it, fewer after a seek
//! back; a page that may not frame the chat is not heard. After the archive a viewer
//! token still opens a read-only session, and a claim code does not.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    browser::{Browser, foyer_framed_by},
    common::{
        enc, eventually,
        foyer::{TestFoyer, WEBCHAT_SECRET, open_reservation},
        synapse::Synapse,
        unique,
        users::TestUser,
        webchat::{ChatClient, mint, now},
    },
};

/// Sends a text; the homeserver's time for it, in unix milliseconds.
async fn say(user: &TestUser, room: &str, body: &str) -> i64 {
    let (status, sent) = user.send_text(room, body).await;
    assert_eq!(status, 200, "{sent}");
    let event_id = sent["event_id"].as_str().expect("event_id");
    let (status, event) = user.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(event_id))).await;
    assert_eq!(status, 200, "{event}");
    event["origin_server_ts"].as_i64().expect("origin_server_ts")
}

fn at(ms: i64) -> String {
    use chrono::TimeZone;
    chrono::Utc.timestamp_millis_opt(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn set_name(user: &TestUser, name: &str) {
    let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(&user.user_id));
    let (status, body) = user.request(reqwest::Method::PUT, &path, Some(json!({ "displayname": name }))).await;
    assert_eq!(status, 200, "{body}");
}

/// The replay list of the chat's frame (the watch page's first): each shown line's name
/// and body, or `None` while the list is hidden.
const REPLAY_SHOWN: &str = "const list = document.getElementById('replay');
    if (!list || list.hidden) return null;
    return Array.from(list.children, (li) => [li.querySelector('.name').textContent, li.querySelector('.body').textContent]);";

/// A real Synapse and Foyer, and Chromium showing the platform's watch page (another
/// site, third-party cookies blocked) with a `<video>` and the chat framed beside it. A
/// member speaks before the stream starts and twice during it; the stream's start and
/// end are reported, so the show has ended and the recording has a clock. The watch page
/// tells the frame the video's time on `seeked`, as the README's example does: the frame
/// shows exactly the messages said up to it (the one before the show always), and fewer
/// after a seek back. A page of a site not in `webchat.allowed_origins`, framed in the
/// same watch page, sends a time too: it changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_framed_chat_follows_the_players_time_and_only_from_an_allowed_page() {
    use axum::{Router, response::Html, routing::get};

    let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let allowed_base = format!("http://localhost:{}", allowed.local_addr().expect("its address").port());
    let elsewhere_base = format!("http://localhost:{}", elsewhere.local_addr().expect("its address").port());
    let foyer = foyer_framed_by(&allowed_base).await;

    let id = unique("replaypage");
    let suffix = &id[id.len() - 4..];
    let member = Synapse::shared().create_user("member").await;
    let ada = format!("Ada {suffix}");
    set_name(&member, &ada).await;
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[(&format!("{id}-t0"), member.user_id.as_str())]).await;
    let ticket = format!("{id}-t1");
    let email_ticket = json!({ "ticket_id": ticket, "email": "rewatch@example.org" });
    foyer.accept("ticket.granted", json!({ "reservation_id": id, "tickets": [email_ticket] })).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    member.join_once_invited(&room, Duration::from_secs(30)).await;

    // Said before the stream, then twice during it; the stream's edges as the platform
    // reports them, between and after the messages.
    let (early, first, second) =
        (format!("doors open {suffix}"), format!("it starts {suffix}"), format!("encore {suffix}"));
    let before = say(&member, &room, &early).await;
    let one = say(&member, &room, &first).await;
    let two = say(&member, &room, &second).await;
    let (started, ended) = ((before + one) / 2, two + 1);
    assert!(before < started && started < one && one < two, "distinct instants: {before} {one} {two}");
    foyer.accept("stream.started", json!({ "reservation_id": id, "at": at(started) })).await;
    foyer.accept("stream.ended", json!({ "reservation_id": id, "at": at(ended) })).await;
    let (offset_one, offset_two) = (one - started, two - started);
    eventually(Duration::from_secs(30), "the ended phase", || async {
        (foyer.reservation(&id).await.1["phase"] == "ended").then_some(())
    })
    .await;

    // The watch page: a player, the chat framed beside it with a viewer token, and a page
    // of another site. The page tells the chat the player's time as the README says.
    let claims =
        json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": id, "tid": ticket, "name": "Rewatcher"});
    let token = mint(WEBCHAT_SECRET, claims);
    let chat = format!("{}/chat/{id}", foyer.base_url);
    let watch_page = format!(
        "<!doctype html><title>Rewatch</title>\
         <video id=player width=320 height=180 controls></video>\
         <iframe id=chat src=\"{chat}#token={token}\" width=320 height=480></iframe>\
         <iframe src=\"{elsewhere_base}/other\" width=80 height=40></iframe>\
         <script>\
         const video = document.getElementById('player');\
         const frame = document.getElementById('chat');\
         const tell = () => frame.contentWindow.postMessage(\
           {{type: 'foyer.time', seconds: video.currentTime}}, '{origin}');\
         video.addEventListener('timeupdate', tell);\
         video.addEventListener('seeked', tell);\
         </script>",
        origin = foyer.base_url.trim_end_matches('/'),
    );
    let app = Router::new()
        .route("/", get(move || async move { Html(watch_page) }))
        .route("/other", get(|| async { Html("<!doctype html><title>Other</title>another site") }));
    let servers = [
        tokio::spawn(axum::serve(allowed, app.clone()).into_future()),
        tokio::spawn(axum::serve(elsewhere, app).into_future()),
    ];
    let browser = Browser::start_blocking_third_party_cookies().await;
    browser.goto(&format!("{allowed_base}/")).await;
    eventually(Duration::from_secs(30), "the frame to say the show has ended", || async {
        let phase = browser.execute_in_frame(0, "return document.getElementById('phase').textContent;").await?;
        (phase == "The show has ended.").then_some(())
    })
    .await;

    // The player moves to a time: the video's current time (a video without media keeps
    // the time it is set to) and its `seeked`, as a viewer's seek makes them. Half a
    // millisecond after a message's offset, so that it is said by then.
    let after = |offset_ms: i64| (offset_ms as f64 + 0.5) / 1000.0;
    let seek = |seconds: f64| {
        let script = format!(
            "const v = document.getElementById('player'); v.currentTime = {seconds}; v.dispatchEvent(new Event('seeked'));"
        );
        let browser = &browser;
        async move {
            browser.execute(&script).await;
        }
    };
    let line = |body: &str| json!([ada, body]);
    let shows = |want: Vec<Value>, what: &'static str| {
        let browser = &browser;
        async move {
            let want = Value::Array(want);
            eventually(Duration::from_secs(30), what, || async {
                let shown = browser.execute_in_frame(0, REPLAY_SHOWN).await.unwrap_or(Value::Null);
                (shown == want).then_some(())
            })
            .await;
        }
    };

    seek(after(offset_one)).await;
    shows(vec![line(&early), line(&first)], "up to the first message of the stream").await;
    seek(after(offset_two)).await;
    shows(vec![line(&early), line(&first), line(&second)], "up to the second").await;
    // The viewer seeks back: fewer.
    seek(after(offset_one)).await;
    shows(vec![line(&early), line(&first)], "after a seek back").await;
    seek(0.0).await;
    shows(vec![line(&early)], "at the recording's start, the message before the show").await;
    seek(after(offset_two)).await;
    let all = vec![line(&early), line(&first), line(&second)];
    let moved = Instant::now();
    shows(all.clone(), "forward again").await;
    let heard_in = moved.elapsed();

    // The page of the other site, framed beside the chat, sends the recording's start:
    // nothing moves, for many times as long as a time from the watch page took.
    let other = "parent.frames[0].postMessage({type: 'foyer.time', seconds: 0}, '*'); return location.origin;";
    let sent_from = browser.execute_in_frame(1, other).await.expect("the other site's frame");
    assert_eq!(sent_from, Value::String(elsewhere_base.clone()), "the other frame is the other site");
    let watch = Duration::from_secs(2).max(heard_in * 10);
    let until = Instant::now() + watch;
    while Instant::now() < until {
        let shown = browser.execute_in_frame(0, REPLAY_SHOWN).await.unwrap_or(Value::Null);
        assert_eq!(shown, Value::Array(all.clone()), "a time from a page not allowed moved the chat");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Names only: no Matrix ID, no token in the frame.
    let markup = browser.execute_in_frame(0, "return document.documentElement.outerHTML;").await;
    let markup = markup.and_then(|m| m.as_str().map(str::to_owned)).expect("the frame's markup");
    for secret in [member.user_id.as_str(), &token, &foyer.slot.bot_user_id()] {
        assert!(!markup.contains(secret), "{secret} in the frame");
    }
    let shot = crate::common::repo_root().join("target/test-artifacts/web-chat-replay.png");
    browser.screenshot(&shot).await;
    drop(browser);
    for server in servers {
        server.abort();
    }
}

/// After the archive, a viewer token for the show opens a session: the stream says the
/// chat is archived and replays its messages, `GET /chat/v1/replay` gives them by name
/// from the transcript, and writing is refused. The claim code of the show's email
/// ticket, which opened a session before, is refused with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_archive_a_viewer_token_reads_and_a_claim_code_is_refused() {
    let foyer = TestFoyer::start().await;
    let member = Synapse::shared().create_user("member").await;
    let id = unique("replayarch");
    let name = format!("Bea {}", &id[id.len() - 4..]);
    set_name(&member, &name).await;
    // Open at once, archived a second after its 16 s, with a transcript.
    let mut reservation = crate::lifecycle::reservation(&id, 1.0, 15.0, 1, 1, &[]);
    reservation["chat"]["transcript"] = json!(true);
    foyer.accept("reservation.created", reservation).await;
    foyer.grant(&id, &[("t-member", member.user_id.as_str())]).await;
    let email = crate::claims::address("rewatch");
    let email_ticket = json!({ "ticket_id": "t-web", "email": email, "display_name": "Cy" });
    foyer.accept("ticket.granted", json!({ "reservation_id": id, "tickets": [email_ticket] })).await;
    let code = crate::claims::ticket(&foyer, &id, "t-web").await["claim"]["code"].as_str().expect("a code").to_owned();
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    member.join_once_invited(&room, Duration::from_secs(30)).await;
    let said = format!("see you at the replay {id}");
    say(&member, &room, &said).await;

    let chat = ChatClient::of(&foyer).keeping(&[email.as_str()]);
    let token = || {
        let claims =
            json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": id, "tid": "t-web", "name": "Cy"});
        json!({ "token": mint(WEBCHAT_SECRET, claims), "reservation_id": id })
    };
    let by_code = json!({ "reservation_id": id, "claim_code": code });
    // Before the archive both get in; the replay waits for the show's end.
    let (status, _, text) = chat.session(&by_code).await;
    assert_eq!(status, 200, "the claim code opens the chat before the archive: {text}");
    let (status, open, text) = chat.session(&token()).await;
    assert_eq!(status, 200, "{text}");
    let early = open["session"].as_str().expect("a session");
    let (status, answer, text) = chat.request(reqwest::Method::GET, "/chat/v1/replay", Some(early), None).await;
    assert_eq!((status, answer["errcode"].as_str()), (409, Some("FOYER_REPLAY_NOT_YET")), "{text}");

    eventually(Duration::from_secs(90), "the room archived", || async {
        (foyer.reservation(&id).await.1["phase"] == "archived").then_some(())
    })
    .await;

    // A viewer token: a session that reads.
    let (status, answer, text) = chat.session(&token()).await;
    assert_eq!(status, 200, "a viewer token opens a session after the archive: {text}");
    let session = answer["session"].as_str().expect("a session").to_owned();
    let (_, stream) = chat.stream(&session, None).await;
    let mut stream = stream.unwrap_or_else(|refused| panic!("the stream after the archive: {refused}"));
    stream.until("the archived phase", |e| e.event == "phase" && e.data["phase"] == "archived").await;
    stream.until("the message, replayed", |e| e.event == "message" && e.data["body"] == said.as_str()).await;
    let (status, replay, text) = chat.request(reqwest::Method::GET, "/chat/v1/replay", Some(&session), None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(replay["phase"], "archived", "{replay}");
    let lines: Vec<(&str, &str)> = replay["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["name"].as_str().unwrap_or_default(), m["body"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(lines, vec![(name.as_str(), said.as_str())], "{replay}");
    assert!(!text.contains(&member.user_id), "{text}");
    // Read only.
    let (status, refused, text) =
        chat.post_message(&session, &json!({ "txn_id": "late", "body": "anyone here?" })).await;
    assert_eq!((status, refused["errcode"].as_str()), (403, Some("FOYER_CLOSED")), "{text}");

    // The claim code: refused, saying why.
    let (status, refused, text) = chat.session(&by_code).await;
    assert_eq!((status, refused["errcode"].as_str()), (403, Some("FOYER_CHAT_ARCHIVED")), "{text}");
    let why = refused["error"].as_str().unwrap_or_default();
    assert!(why.contains("archived") && why.contains("claim code"), "{why}");
}
