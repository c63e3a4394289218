//! The public archive (contract §12, docs/replay.md "Public archive") against a real
//! Synapse: a show made public before its room opened is told so, and after the archive
//! its page and replays are readable without auth (CORS for the allowed origins,
//! `noindex` unless indexable), names only, with `!foyer anonymous` honoured; a private
//! one answers 404 exactly as an unknown one does and cannot turn public once open; a
//! takedown makes it 404 at once. The page is also read in a real Chromium.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::{
    browser::Browser,
    common::{
        enc, eventually,
        foyer::{TestFoyer, WEBCHAT_ORIGIN, WEBCHAT_SECRET},
        synapse::Synapse,
        unique,
        users::TestUser,
        webchat::{assert_private, mint, now},
    },
};

/// What the opening notice of a public chat says (`words::room::PUBLIC_ARCHIVE`).
const PUBLIC: &str = "This chat will be public";
/// The acknowledgement of `!foyer anonymous` (`words::room::ANONYMOUS_ACKNOWLEDGED`).
const ANONYMOUS_ACK: &str = "Done: you appear as \"a fan\" in this chat's public archive and replay.";

/// A reservation whose room opens at once and stays open until it is cancelled, with
/// `chat` as its chat's settings.
fn reservation(id: &str, revision: u64, chat: Value) -> Value {
    let now = Utc::now();
    let at = |s: i64| (now + chrono::Duration::seconds(s)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut chat = chat;
    chat["open_before_seconds"] = json!(3600);
    json!({
        "reservation_id": id, "revision": revision, "title": format!("Show {id}"),
        "starts_at": at(600), "ends_at": at(4200), "chat": chat,
    })
}

/// `GET path` without auth, from `origin` when given: status, headers, body.
async fn public(foyer: &TestFoyer, path: &str, origin: Option<&str>) -> (u16, HeaderMap, String) {
    let mut request = foyer.http.get(format!("{}{path}", foyer.base_url));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let answer = request.send().await.expect("a public archive request");
    let (status, headers) = (answer.status().as_u16(), answer.headers().clone());
    (status, headers, answer.text().await.expect("its body"))
}

/// The three public routes of reservation `id`.
fn routes(id: &str) -> [String; 3] {
    [format!("/archive/{id}"), format!("/archive/{id}/replay.json"), format!("/archive/{id}/replay.vtt")]
}

/// Sets `user`'s display name and waits until the room's member event carries it.
async fn rename(user: &TestUser, watcher: &TestUser, room: &str, name: &str) {
    let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(&user.user_id));
    let (status, body) = user.request(reqwest::Method::PUT, &path, Some(json!({"displayname": name}))).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(30), "the new name in the room", || async {
        (watcher.member_event(room, &user.user_id).await?["displayname"] == name).then_some(())
    })
    .await;
}

/// Cancels the reservation (its room is archived at once) and waits for the archive.
async fn archive(foyer: &TestFoyer, id: &str) {
    foyer.accept("reservation.cancelled", json!({"reservation_id": id})).await;
    let path = format!("/api/v1/reservations/{id}/transcript");
    eventually(Duration::from_secs(60), "the archive, with its transcript", || async {
        let (status, _) = foyer.request(reqwest::Method::GET, &path, Some(&foyer.slot.api_token), None).await;
        // The transcript is made first, then the room archived (`archiving` until then).
        let (_, view) = foyer.reservation(id).await;
        (status == 200 && view["phase"] == "cancelled" && view.get("archiving").is_none()).then_some(())
    })
    .await;
}

/// `(name, body, offset_ms)` of each message of a JSON replay.
fn lines(replay: &Value) -> Vec<(String, String, i64)> {
    let messages = replay["messages"].as_array().unwrap_or_else(|| panic!("messages: {replay}"));
    messages
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["body"].as_str().unwrap().to_owned(),
                m["offset_ms"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_archive_is_read_without_auth_names_only_with_anonymous_members_as_a_fan_until_taken_down() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (ann, bo) = (hs.create_user("ann").await, hs.create_user("bo").await);
    let id = unique("public");
    let chat = json!({"archive": "public", "replay_offset_ms": 1500});
    foyer.accept("reservation.created", reservation(&id, 1, chat)).await;
    foyer.grant(&id, &[("t-ann", &ann.user_id), ("t-bo", &bo.user_id)]).await;
    foyer
        .accept(
            "ticket.granted",
            json!({"reservation_id": id, "tickets": [{"ticket_id": "t-web", "email": "web@example.org"}]}),
        )
        .await;
    // Another public show, indexable, whose archive is read without `noindex`.
    let indexable = unique("indexable");
    let chat = json!({"archive": "public", "archive_indexable": true});
    foyer.accept("reservation.created", reservation(&indexable, 1, chat)).await;

    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    ann.join_once_invited(&room, Duration::from_secs(30)).await;
    bo.join_once_invited(&room, Duration::from_secs(30)).await;
    // Told before anyone speaks, in the opening notice.
    eventually(Duration::from_secs(30), "the opening notice saying the chat is public", || async {
        ann.notices(&room).await.iter().any(|n| n.contains("is open") && n.contains(PUBLIC)).then_some(())
    })
    .await;
    let (_, view) = foyer.reservation(&id).await;
    assert_eq!(
        (&view["archive"], &view["archive_indexable"], &view["replay_offset_ms"]),
        (&json!("public"), &json!(false), &json!(1500))
    );
    rename(&ann, &bo, &room, "Ann Archive").await;
    rename(&bo, &ann, &room, "Bo Hidden").await;

    // `!foyer anonymous` from a member who is neither host nor moderator: acknowledged in
    // the command's place (its redaction's reason), and nothing else said in the room.
    let (status, sent) = bo.send_text(&room, "!foyer anonymous").await;
    assert_eq!(status, 200, "{sent}");
    let command = sent["event_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), "the command acknowledged", || async {
        let events = bo.messages(&room).await;
        let event = events.iter().find(|e| e["event_id"] == command.as_str())?;
        (event["unsigned"]["redacted_because"]["content"]["reason"] == ANONYMOUS_ACK).then_some(())
    })
    .await;
    for (who, body) in [(&ann, "hello from Ann"), (&bo, "hello from Bo")] {
        let (status, sent) = who.send_text(&room, body).await;
        assert_eq!(status, 200, "{sent}");
    }

    // The web page says the chat will be public: the session tells it, Chromium shows it.
    let claims = json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": id, "tid": "t-web", "name": "Wes"});
    let token = mint(WEBCHAT_SECRET, claims);
    let browser = Browser::start().await;
    browser.goto(&format!("{}/chat/{id}#token={token}", foyer.base_url)).await;
    let shown = eventually(Duration::from_secs(30), "the page's public-archive line", || async {
        let text = browser
            .execute(
                "const p = document.getElementById('public-archive'); return p && !p.hidden ? p.textContent : null;",
            )
            .await;
        text.as_str().map(str::to_owned)
    })
    .await;
    assert!(shown.contains(PUBLIC) && shown.contains("!foyer anonymous"), "{shown}");

    // Not archived yet: not public yet.
    for path in routes(&id) {
        assert_eq!(public(&foyer, &path, None).await.0, 404, "{path} before the archive");
    }
    archive(&foyer, &id).await;
    archive(&foyer, &indexable).await;
    let want = vec![
        ("Ann Archive".to_owned(), "hello from Ann".to_owned(), 1500),
        ("a fan".to_owned(), "hello from Bo".to_owned(), 1500),
    ];

    // The page, without auth: names only, the anonymous member as "a fan".
    let [page, json_path, vtt_path] = routes(&id);
    let (status, headers, body) = public(&foyer, &page, Some(WEBCHAT_ORIGIN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(
        body.contains("Ann Archive") && body.contains("hello from Ann") && body.contains("hello from Bo"),
        "{body}"
    );
    assert!(body.contains("a fan") && !body.contains("Bo Hidden"), "the anonymous member is a fan: {body}");
    assert!(!body.contains("!foyer anonymous"), "the command is not in the archive: {body}");
    assert_private(&page, &body, &[ann.user_id.clone(), bo.user_id.clone()]);

    // The replays: the read API's bodies (shifted by `replay_offset_ms`), named as the page.
    let (status, headers, body) = public(&foyer, &json_path, Some(WEBCHAT_ORIGIN)).await;
    assert_eq!(status, 200, "{body}");
    let replay: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(lines(&replay), want, "{replay}");
    assert_eq!(replay["reservation_id"], id.as_str());
    let (status, authed) = foyer
        .request(reqwest::Method::GET, &format!("/api/v1/reservations/{id}/replay"), Some(&foyer.slot.api_token), None)
        .await;
    assert_eq!(status, 200, "{authed}");
    let names: Vec<String> = lines(&authed).into_iter().map(|(name, _, offset)| format!("{name}@{offset}")).collect();
    assert_eq!(names, ["Ann Archive@1500", "Bo Hidden@1500"], "the API keeps real names: {authed}");
    let (status, vtt_headers, vtt) = public(&foyer, &vtt_path, Some(WEBCHAT_ORIGIN)).await;
    assert_eq!(status, 200, "{vtt}");
    assert_eq!(vtt_headers["content-type"], "text/vtt; charset=utf-8");
    assert!(
        vtt.starts_with("WEBVTT")
            && vtt.contains("<v a fan>hello from Bo")
            && vtt.contains("<v Ann Archive>hello from Ann"),
        "{vtt}"
    );
    assert!(vtt.contains("00:00:01.500 --> "), "shifted by 1.5 s: {vtt}");

    // CORS for the allowed origin only; noindex, since not indexable.
    for (path, headers) in [(&json_path, &headers), (&vtt_path, &vtt_headers)] {
        assert_eq!(headers["access-control-allow-origin"], WEBCHAT_ORIGIN, "{path}");
        assert_eq!(headers["x-robots-tag"], "noindex", "{path}");
    }
    let (status, headers, _) = public(&foyer, &vtt_path, Some("https://elsewhere.example")).await;
    assert_eq!(status, 200);
    assert!(headers.get("access-control-allow-origin").is_none(), "another origin: {headers:?}");
    let [indexable_page, ..] = routes(&indexable);
    let (status, headers, body) = public(&foyer, &indexable_page, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.get("x-robots-tag").is_none(), "indexable: {headers:?}");

    // No Matrix ID in any public answer.
    for path in routes(&id).iter().chain(&routes(&indexable)) {
        let (_, _, body) = public(&foyer, path, Some(WEBCHAT_ORIGIN)).await;
        assert_private(path, &body, &[ann.user_id.clone(), bo.user_id.clone()]);
    }

    // The page in a real browser: its rows, names and messages.
    browser.goto(&format!("{}{page}", foyer.base_url)).await;
    let rows = browser
        .execute("return [...document.querySelectorAll('tr')].slice(1).map(r => [r.cells[1].textContent, r.cells[2].textContent]);")
        .await;
    assert_eq!(rows, json!([["Ann Archive", "hello from Ann"], ["a fan", "hello from Bo"]]), "as Chromium reads it");
    drop(browser);

    // Taken down: behind the API token, then 404 at once, as for an unknown reservation.
    let takedown = format!("/api/v1/reservations/{id}/archive");
    let (status, _) = foyer.request(reqwest::Method::DELETE, &takedown, None, None).await;
    assert_eq!(status, 401, "the takedown needs the API token");
    assert_eq!(public(&foyer, &page, None).await.0, 200, "still public after a refused takedown");
    let (status, body) = foyer.request(reqwest::Method::DELETE, &takedown, Some(&foyer.slot.api_token), None).await;
    assert_eq!(status, 204, "{body}");
    let unknown = public(&foyer, &format!("/archive/{}", unique("unknown")), None).await;
    for path in routes(&id) {
        let (status, _, body) = public(&foyer, &path, Some(WEBCHAT_ORIGIN)).await;
        assert_eq!((status, &body), (404, &unknown.2), "{path} after the takedown");
    }
    let (status, _) = foyer
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/reservations/{}/archive", unique("unknown")),
            Some(&foyer.slot.api_token),
            None,
        )
        .await;
    assert_eq!(status, 404, "no takedown of an unknown reservation");
}

#[tokio::test]
async fn a_private_archive_is_404_like_an_unknown_one_and_cannot_turn_public_once_its_room_is_open() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let fan = hs.create_user("fan").await;
    let id = unique("private");
    // Transcribed, so that only its being private keeps it from the public.
    foyer.accept("reservation.created", reservation(&id, 1, json!({"transcript": true}))).await;
    foyer.grant(&id, &[("t-fan", &fan.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    fan.join_once_invited(&room, Duration::from_secs(30)).await;
    let notices = eventually(Duration::from_secs(30), "the opening notice", || async {
        let notices = fan.notices(&room).await;
        notices.iter().any(|n| n.contains("is open")).then_some(notices)
    })
    .await;
    assert!(!notices.iter().any(|n| n.contains(PUBLIC)), "a private chat is not said to be public: {notices:?}");
    let (status, sent) = fan.send_text(&room, "said in private").await;
    assert_eq!(status, 200, "{sent}");

    // Too late to become public: refused by name, and nothing changes.
    let (status, body) = foyer
        .send_webhook("reservation.updated", reservation(&id, 2, json!({"archive": "public", "transcript": true})))
        .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("data.chat.archive: "), "{body}");
    let (_, view) = foyer.reservation(&id).await;
    assert_eq!((&view["archive"], &view["revision"]), (&json!("private"), &json!(1)), "{view}");

    // A public show may become private at any time, even once open.
    let was_public = unique("was-public");
    foyer.accept("reservation.created", reservation(&was_public, 1, json!({"archive": "public"}))).await;
    foyer.room_id(&was_public, Duration::from_secs(30)).await;
    foyer.accept("reservation.updated", reservation(&was_public, 2, json!({"transcript": true}))).await;
    assert_eq!(foyer.reservation(&was_public).await.1["archive"], "private");

    archive(&foyer, &id).await;
    archive(&foyer, &was_public).await;
    let unknown = unique("unknown");
    for (private, unknown) in routes(&id).iter().chain(&routes(&was_public)).zip(routes(&unknown).iter().cycle()) {
        let (status, headers, body) = public(&foyer, private, Some(WEBCHAT_ORIGIN)).await;
        let (unknown_status, _, unknown_body) = public(&foyer, unknown, None).await;
        assert_eq!((status, &body), (404, &unknown_body), "{private} answers as {unknown} does");
        assert_eq!(unknown_status, 404);
        assert!(headers.get("access-control-allow-origin").is_none(), "{private}: {headers:?}");
    }
}
