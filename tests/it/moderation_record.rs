//! The moderation record as the platform reads it (docs/moderation.md):
//! `GET /api/v1/reservations/{id}/moderation`, paged, behind the API token, with web
//! fans' reports in it, each once.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{
    eventually,
    foyer::{TestFoyer, WEBCHAT_SECRET, open_reservation},
    synapse::Synapse,
    unique,
    users::TestUser,
    webchat::{ChatClient, mint, now},
};

/// A page of the record, with the token given.
async fn record(foyer: &TestFoyer, id: &str, query: &str, token: Option<&str>) -> (u16, Value) {
    let path = format!("/api/v1/reservations/{id}/moderation{query}");
    foyer.request(Method::GET, &path, token, None).await
}

/// A reservation's room with a member, and a web fan of ticket `t-web` (an email ticket)
/// in its chat, who reports the member's messages.
struct Chat {
    member: TestUser,
    room_id: String,
    chat: ChatClient,
    session: String,
}

impl Chat {
    /// Creates reservation `id` from `reservation` and waits until its room is open.
    async fn open(foyer: &TestFoyer, id: &str, reservation: Value) -> Chat {
        let member = Synapse::shared().create_user("member").await;
        foyer.accept("reservation.created", reservation).await;
        foyer.grant(id, &[("t-member", member.user_id.as_str())]).await;
        let web_ticket = json!({"ticket_id": "t-web", "email": "recorder@example.org"});
        foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [web_ticket]})).await;
        let room_id = foyer.room_id(id, Duration::from_secs(30)).await;
        member.join_once_invited(&room_id, Duration::from_secs(30)).await;
        let claims =
            json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": id, "tid": "t-web", "name": "Fan"});
        let chat = ChatClient::of(foyer).keeping(&["recorder@example.org"]);
        let (status, opened, text) = chat.session(&json!({"token": mint(WEBCHAT_SECRET, claims)})).await;
        assert_eq!(status, 200, "{text}");
        let session = opened["session"].as_str().expect("a session").to_owned();
        Chat { member, room_id, chat, session }
    }

    /// The member says `text` and the fan reports it with `reason`; its event id.
    async fn report_new_message(&self, text: &str, reason: &str) -> String {
        let (status, sent) = self.member.send_text(&self.room_id, text).await;
        assert_eq!(status, 200, "{sent}");
        let event_id = sent["event_id"].as_str().unwrap().to_owned();
        let body = json!({"event_id": event_id, "reason": reason});
        // Reportable once the homeserver's transaction logged it.
        eventually(Duration::from_secs(30), "the message in the chat's log", || {
            let (chat, session, body) = (self.chat.clone(), self.session.clone(), body.clone());
            async move {
                let (status, _, text) = chat.report(&session, &body).await;
                assert!(status == 200 || status == 404, "{status}: {text}");
                (status == 200).then_some(())
            }
        })
        .await;
        event_id
    }
}

/// A web fan reports three messages (one twice): the record holds three reports, oldest
/// first, with the fan's ticket as the actor, in pages of two; the metric counts three.
/// A wrong or missing token is refused, an unknown reservation is 404, a cursor that is
/// not one is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_fans_reports_are_in_the_moderation_record_a_page_at_a_time() {
    let foyer = TestFoyer::start().await;
    let id = unique("record");
    let room = Chat::open(&foyer, &id, open_reservation(&id, &[], 1)).await;
    let token = foyer.slot.api_token.clone();

    let (status, empty) = record(&foyer, &id, "", Some(&token)).await;
    assert_eq!((status, empty), (200, json!({"entries": [], "next": null})));

    let mut reported = Vec::new();
    for (text, reason) in [("first", "spam"), ("second", ""), ("third", "rude")] {
        reported.push((room.report_new_message(text, reason).await, reason));
    }
    // The first reported again, as a fan who clicks twice: no second entry.
    let again = json!({"event_id": reported[0].0, "reason": "spam"});
    let (status, _, text) = room.chat.report(&room.session, &again).await;
    assert_eq!(status, 200, "{text}");

    let (status, first) = record(&foyer, &id, "?limit=2", Some(&token)).await;
    assert_eq!(status, 200, "{first}");
    let next = first["next"].as_str().expect("a next page").to_owned();
    let (status, second) = record(&foyer, &id, &format!("?limit=2&after={next}"), Some(&token)).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["next"], Value::Null, "the last page: {second}");
    let entries: Vec<Value> =
        [&first, &second].iter().flat_map(|page| page["entries"].as_array().unwrap().clone()).collect();
    assert_eq!(entries.len(), 3, "three reports, the repeated one once: {entries:?}");
    for (entry, (event_id, reason)) in entries.iter().zip(&reported) {
        assert_eq!(entry["action"], "report", "{entry}");
        assert_eq!(entry["actor"], json!({"kind": "viewer", "ticket_id": "t-web"}), "{entry}");
        assert_eq!(entry["event_id"], event_id.as_str(), "oldest first: {entry}");
        assert_eq!(entry["reason"], *reason, "{entry}");
        assert_eq!((&entry["member"], &entry["details"]), (&Value::Null, &json!({})), "{entry}");
        assert!(entry["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{entry}");
    }
    let (_, whole) = record(&foyer, &id, "", Some(&token)).await;
    assert_eq!(whole["entries"].as_array().unwrap(), &entries, "one page of all is the same");
    let counted = "foyer_moderation_actions_total{action=\"report\",rule=\"\"}";
    assert_eq!(foyer.metric(counted).await, 3.0, "each report counted once");

    for wrong in [Some("not-the-token"), None] {
        let (status, refused) = record(&foyer, &id, "", wrong).await;
        assert_eq!(status, 401, "{wrong:?}: {refused}");
        assert!(!refused.to_string().contains("t-web"), "nothing of the record: {refused}");
    }
    let (status, unknown) = record(&foyer, &unique("no-such"), "", Some(&token)).await;
    assert_eq!((status, unknown["errcode"].as_str()), (404, Some("FOYER_NOT_FOUND")), "{unknown}");
    let (status, bad) = record(&foyer, &id, "?after=yesterday", Some(&token)).await;
    assert_eq!((status, bad["errcode"].as_str()), (400, Some("FOYER_BAD_QUERY")), "{bad}");
    assert!(bad["error"].as_str().is_some_and(|e| e.contains("after")), "names the parameter: {bad}");
}

/// The record is kept as long as transcripts: once the room has been archived longer
/// than `rooms.transcript_retention` (its least, a minute, here), the sweep at Foyer's
/// next start deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_goes_once_the_archive_is_older_than_the_transcripts_retention() {
    let retention = |yaml: String| yaml + "rooms:\n  transcript_retention: 1m\n";
    let mut foyer = TestFoyer::start_with(retention, &[]).await;
    let token = foyer.slot.api_token.clone();
    let id = unique("kept");
    // Open a second after it is sent, archived a second after its 25 s.
    let room = Chat::open(&foyer, &id, crate::lifecycle::reservation(&id, 1.0, 25.0, 1, 1, &[])).await;
    room.report_new_message("spam", "spam").await;
    let (_, kept) = record(&foyer, &id, "", Some(&token)).await;
    assert_eq!(kept["entries"].as_array().map(Vec::len), Some(1), "{kept}");

    eventually(Duration::from_secs(90), "the room archived", || async {
        (foyer.reservation(&id).await.1["phase"] == "archived").then_some(())
    })
    .await;
    foyer.kill_and_restart().await;
    let (_, young) = record(&foyer, &id, "", Some(&token)).await;
    assert_eq!(young["entries"].as_array().map(Vec::len), Some(1), "kept within the retention: {young}");
    // Archived two minutes earlier than it was, past the minute of retention, as if that
    // time had gone by (the test does not wait it out); the sweep runs at the start.
    foyer.kill();
    let db = foyer.dir().join("foyer.db");
    let backdate = format!("UPDATE lifecycle SET archived_at = archived_at - 120000 WHERE reservation_id = '{id}'");
    crate::common::foyer::sqlite_exec(&db, &backdate);
    foyer.restart(&[]);
    foyer.wait_ready().await;
    eventually(Duration::from_secs(30), "the record deleted by the sweep", || async {
        let (status, page) = record(&foyer, &id, "", Some(&token)).await;
        (status == 200 && page["entries"] == json!([])).then_some(())
    })
    .await;
}
