//! The chat on the recording's timeline (docs/replay.md), against a real Synapse: the
//! platform's stream starts and ends make the segments, and each message sits at its
//! offset on the recording's clock (before the first start `pre_show` at 0, in a gap at
//! the instant the stream resumed); edits are applied and redacted messages left out;
//! the WebVTT reads back through ffmpeg; after the archive it comes from the transcript.

use std::time::Duration;

use chrono::{SecondsFormat, TimeZone, Utc};
use serde_json::{Value, json};

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, open_reservation},
    random_token,
    synapse::Synapse,
    unique,
    users::TestUser,
};

/// Sends a text; its event id and the homeserver's time for it, in unix milliseconds.
async fn say(user: &TestUser, room: &str, body: &str) -> (String, i64) {
    let (status, sent) = user.send_text(room, body).await;
    assert_eq!(status, 200, "{sent}");
    let event_id = sent["event_id"].as_str().expect("event_id").to_owned();
    let (status, event) = user.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(&event_id))).await;
    assert_eq!(status, 200, "{event}");
    (event_id, event["origin_server_ts"].as_i64().expect("origin_server_ts"))
}

fn at(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) async fn replay(foyer: &TestFoyer, id: &str, format: &str) -> reqwest::Response {
    let url = format!("{}/api/v1/reservations/{id}/replay?format={format}", foyer.base_url);
    reqwest::Client::new().get(url).bearer_auth(&foyer.slot.api_token).send().await.expect("replay")
}

/// `(name, body, offset_ms, pre_show)` of each message of the JSON replay.
fn lines(replay: &Value) -> Vec<(String, String, i64, bool)> {
    let messages = replay["messages"].as_array().expect("messages");
    messages
        .iter()
        .map(|m| {
            let text = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (text("name"), text("body"), m["offset_ms"].as_i64().unwrap(), m["pre_show"].as_bool().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn messages_sit_on_the_recordings_clock_with_gaps_closed_up_and_the_vtt_reads_back() {
    let foyer = TestFoyer::start().await;
    let hs = Synapse::shared();
    let (host, fan) = (hs.create_user("host").await, hs.create_user("fan").await);
    let id = unique("replay");
    let mut reservation = open_reservation(&id, &[host.user_id.as_str()], 1);
    reservation["chat"] = json!({"transcript": true});
    foyer.accept("reservation.created", reservation).await;
    foyer.grant(&id, &[("t-fan", &fan.user_id)]).await;
    let room = foyer.room_id(&id, Duration::from_secs(30)).await;
    host.join_once_invited(&room, Duration::from_secs(30)).await;
    fan.join_once_invited(&room, Duration::from_secs(30)).await;
    let (status, _) = fan
        .request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&fan.user_id)),
            Some(json!({"displayname": "Fan <One>"})),
        )
        .await;
    assert_eq!(status, 200);
    // Synapse updates the member event in the room after answering: the name counts from it.
    eventually(Duration::from_secs(30), "the fan's new name in the room", || async {
        let member = host.member_event(&room, &fan.user_id).await?;
        (member["displayname"] == "Fan <One>").then_some(())
    })
    .await;

    let (_, before) = say(&fan, &room, "before the show").await;
    let (one_id, one) = say(&fan, &room, "one").await;
    let (oops_id, _) = say(&fan, &room, "oops").await;
    let (_, gap) = say(&fan, &room, "said in the gap --> & <b>").await;
    let (_, two) = say(&fan, &room, "two").await;
    // The stream's edges between the messages, as the platform reports them afterwards.
    let (s1, e1, s2) = ((before + one) / 2, (one + gap) / 2, (gap + two) / 2);
    assert!(before < s1 && s1 < one && one < e1 && e1 < gap && gap < s2 && s2 < two, "distinct instants");
    for (kind, edge) in [("stream.started", s1), ("stream.ended", e1), ("stream.started", s2)] {
        foyer.accept(kind, json!({"reservation_id": id, "at": at(edge)})).await;
    }
    // The platform reports the first start twice (and its streaming server a moment later).
    foyer.accept("stream.started", json!({"reservation_id": id, "at": at(s1 + 1)})).await;
    // An edit is applied; a redacted message is left out.
    let edit = json!({"msgtype": "m.text", "body": "* one!", "m.new_content": {"msgtype": "m.text", "body": "one!"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": one_id}});
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(&room), random_token());
    assert_eq!(fan.request(reqwest::Method::PUT, &path, Some(edit)).await.0, 200);
    let path = format!("/_matrix/client/v3/rooms/{}/redact/{}/{}", enc(&room), enc(&oops_id), random_token());
    assert_eq!(host.request(reqwest::Method::PUT, &path, Some(json!({}))).await.0, 200);

    let want = vec![
        ("Fan <One>".to_owned(), "before the show".to_owned(), 0, true),
        ("Fan <One>".to_owned(), "one!".to_owned(), one - s1, false),
        ("Fan <One>".to_owned(), "said in the gap --> & <b>".to_owned(), e1 - s1, false),
        ("Fan <One>".to_owned(), "two".to_owned(), (e1 - s1) + (two - s2), false),
    ];
    let during: Value = eventually(Duration::from_secs(30), "the edit and the redaction in the replay", || async {
        let body: Value = replay(&foyer, &id, "json").await.json().await.ok()?;
        (lines(&body) == want).then_some(body)
    })
    .await;
    assert_eq!(during["segments"].as_array().map(Vec::len), Some(2), "{during}");
    assert_eq!(during["segments"][1]["offset_ms"], e1 - s1, "{during}");
    assert!(!during.to_string().contains(&fan.user_id), "no Matrix ID: {during}");
    let (status, view) = foyer.reservation(&id).await;
    assert_eq!((status, &view["segments"]), (200, &during["segments"]), "the view lists the segments");

    // The WebVTT, read back by ffmpeg.
    let answer = replay(&foyer, &id, "vtt").await;
    assert_eq!(answer.headers()["content-type"], "text/vtt; charset=utf-8");
    let vtt = answer.text().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("replay.vtt"), dir.path().join("replay.srt"));
    std::fs::write(&input, &vtt).unwrap();
    let converted =
        std::process::Command::new("ffmpeg").args(["-loglevel", "error", "-y", "-i"]).arg(&input).arg(&output).output();
    let converted = converted.expect("ffmpeg (scripts/install-nginx-rtmp.sh installs it)");
    assert!(
        converted.status.success(),
        "ffmpeg read the WebVTT: {}\n{vtt}",
        String::from_utf8_lossy(&converted.stderr)
    );
    let srt = std::fs::read_to_string(&output).unwrap();
    let timing = |line: &&str| line.len() > 17 && line.as_bytes()[2] == b':' && line[12..].starts_with(" --> ");
    assert_eq!(srt.lines().filter(timing).count(), 4, "one cue per message: {srt}");
    // The escapes read back as the text (ffmpeg's SRT then makes its own of `<b>`).
    assert!(srt.contains("said in the gap --> & "), "{srt}");
    let cue = |ms: i64| {
        let t = chrono::Duration::milliseconds(ms);
        format!("{:02}:{:02}:{:02},{:03}", t.num_hours(), t.num_minutes() % 60, t.num_seconds() % 60, ms % 1000)
    };
    assert!(srt.contains(&cue(one - s1)), "the second cue at {}: {srt}", cue(one - s1));

    // After the archive, the same replay from the transcript.
    foyer.accept("reservation.cancelled", json!({"reservation_id": id})).await;
    eventually(Duration::from_secs(60), "the archive", || async {
        (foyer.reservation(&id).await.1["phase"] == "cancelled").then_some(())
    })
    .await;
    let after: Value = eventually(Duration::from_secs(30), "the replay from the transcript", || async {
        let (status, transcript) = foyer
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/reservations/{id}/transcript"),
                Some(&foyer.slot.api_token),
                None,
            )
            .await;
        (status == 200).then_some(transcript)?;
        replay(&foyer, &id, "json").await.json::<Value>().await.ok()
    })
    .await;
    assert_eq!(lines(&after), want, "{after}");
}
