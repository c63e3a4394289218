//! Hosts' and moderators' commands in their show's room (docs/moderation.md, "Commands in
//! the room"), against a real Synapse: `!foyer mode`, `timeout`, `untimeout`, `ban`,
//! `unban` and `help` from a moderator act (the homeserver itself refuses what they
//! forbid), the command leaves the room, and the answer comes in the bot's direct chat
//! with the moderator; a fan's command is ignored; each action is in the moderation
//! record with the moderator as its actor, a ban once, whether by command or in Element.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{
    enc, eventually,
    foyer::{TestFoyer, WEBCHAT_SECRET, open_reservation, sqlite_query},
    synapse::Synapse,
    unique,
    users::TestUser,
    webchat::{ChatClient, mint, now, session_for},
};

const LIMIT: Duration = Duration::from_secs(30);

/// A show's open room with its host, a moderator and two fans holding tickets
/// `t-fan` and `t-other`, all joined.
struct Show {
    foyer: TestFoyer,
    id: String,
    room: String,
    dj: TestUser,
    modo: TestUser,
    fan: TestUser,
    other: TestUser,
}

impl Show {
    async fn open(name: &str) -> Show {
        let foyer = TestFoyer::start().await;
        let hs = Synapse::shared();
        let (dj, modo) = (hs.create_user("dj").await, hs.create_user("modo").await);
        let (fan, other) = (hs.create_user("fan").await, hs.create_user("other").await);
        let id = unique(name);
        let mut reservation = open_reservation(&id, &[&dj.user_id], 1);
        reservation["chat"] = json!({"moderators": [modo.user_id]});
        foyer.accept("reservation.created", reservation).await;
        foyer.grant(&id, &[("t-fan", &fan.user_id), ("t-other", &other.user_id)]).await;
        let room = foyer.room_id(&id, LIMIT).await;
        for user in [&dj, &modo, &fan, &other] {
            user.join_once_invited(&room, LIMIT).await;
        }
        Show { foyer, id, room, dj, modo, fan, other }
    }

    /// `user` writes `text` in the show's room; its event id.
    async fn says(&self, user: &TestUser, text: &str) -> String {
        let (status, sent) = user.send_text(&self.room, text).await;
        assert_eq!(status, 200, "{text}: {sent}");
        sent["event_id"].as_str().expect("an event id").to_owned()
    }

    /// Waits until `user` may post (`true`: the homeserver takes a message) or may not
    /// (`false`: it refuses with 403).
    async fn wait_posting(&self, user: &TestUser, allowed: bool) {
        let what = format!("{} {} post", user.user_id, if allowed { "may" } else { "may not" });
        eventually(LIMIT, &what, || async {
            let (status, answer) = user.send_text(&self.room, "is anyone there?").await;
            assert!(status == 200 || status == 403, "{status}: {answer}");
            ((status == 200) == allowed).then_some(())
        })
        .await;
    }

    /// The bot's answer holding `want` in its direct chat with `user`: the chat is joined
    /// once its invite comes. Its room and the answer.
    async fn answer(&self, user: &TestUser, want: &str) -> (String, String) {
        eventually(LIMIT, &format!("an answer with {want:?} for {}", user.user_id), || async {
            for invited in user.invited_rooms().await {
                user.join(&invited).await;
            }
            let (_, joined) = user.get("/_matrix/client/v3/joined_rooms").await;
            for room in joined["joined_rooms"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if room == self.room {
                    continue;
                }
                if let Some(notice) = user.notices(room).await.into_iter().find(|n| n.contains(want)) {
                    return Some((room.to_owned(), notice));
                }
            }
            None
        })
        .await
    }

    /// Whether the event is redacted, as `user` sees it.
    async fn redacted(&self, user: &TestUser, event_id: &str) -> bool {
        let path = format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&self.room), enc(event_id));
        let (status, event) = user.get(&path).await;
        assert_eq!(status, 200, "{event}");
        event["unsigned"].get("redacted_because").is_some() && event["content"].get("body").is_none()
    }

    /// The moderation record's entries of `action`.
    async fn recorded(&self, action: &str) -> Vec<Value> {
        let path = format!("/api/v1/reservations/{}/moderation", self.id);
        let (status, record) = self.foyer.request(Method::GET, &path, Some(&self.foyer.slot.api_token), None).await;
        assert_eq!(status, 200, "{record}");
        record["entries"].as_array().unwrap().iter().filter(|e| e["action"] == action).cloned().collect()
    }

    /// A web session for the ticket: its status and errcode.
    async fn web_session(&self, ticket: &str) -> (u16, Value) {
        let claims =
            json!({"aud": "foyer", "iat": now(), "exp": now() + 600, "rid": self.id, "tid": ticket, "name": "Fan"});
        let (status, answer, _) =
            ChatClient::of(&self.foyer).session(&json!({"token": mint(WEBCHAT_SECRET, claims)})).await;
        (status, answer["errcode"].clone())
    }
}

fn member_actor(user: &TestUser) -> Value {
    json!({"kind": "member", "user_id": user.user_id})
}

/// A fan's `!foyer mode hosts` is ignored with no echo; a moderator's `!foyer help` is
/// answered in the bot's direct chat with them only; `!foyer mode hosts` makes the
/// homeserver refuse the fan's messages (the moderator still posts), `!foyer mode open`
/// lets them in again. Each command leaves the room; each mode is recorded with the
/// moderator as its actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_closes_and_opens_the_chat_and_a_fans_command_is_ignored() {
    let show = Show::open("modcmd").await;
    let fans = show.says(&show.fan, "!foyer mode hosts").await;
    // The inbox works in order: once the help is answered, the fan's line was handled.
    let help = show.says(&show.modo, "!foyer help").await;
    let (dm, listed) = show.answer(&show.modo, "Moderation commands").await;
    assert!(listed.contains("!foyer timeout <user> <duration> [reason]"), "{listed}");
    assert!(show.redacted(&show.fan, &help).await, "the moderator's command left the room");
    assert!(!show.redacted(&show.fan, &fans).await, "the fan's line stays, as any message");
    let notices = show.fan.notices(&show.room).await;
    assert!(notices.iter().all(|n| !n.contains("!foyer") && !n.contains("Moderation")), "no echo: {notices:?}");
    show.wait_posting(&show.fan, true).await; // the fan's command changed nothing
    assert_eq!(show.recorded("mode").await, Vec::<Value>::new(), "nothing recorded for the fan's line");
    let bot = TestUser::bot(&show.foyer.slot);
    assert_eq!(show.modo.membership_of(&dm, &bot.user_id).await.as_deref(), Some("join"), "the bot's own chat");
    // In that chat, the moderator (no admin) is told how the room commands go.
    let there = show.modo.ask(&dm, "!foyer help").await;
    assert!(there.starts_with("Moderation commands, to write in the show's room"), "{there}");

    let hosts = show.says(&show.modo, "!foyer mode hosts").await;
    show.wait_posting(&show.fan, false).await;
    let (again, said) = show.answer(&show.modo, "Hosts only").await;
    assert_eq!(again, dm, "the same direct chat, reused: {said}");
    assert!(show.redacted(&show.fan, &hosts).await, "the command left the room");
    show.says(&show.modo, "moderators still speak").await;

    let open = show.says(&show.modo, "!foyer Mode open").await;
    show.wait_posting(&show.fan, true).await;
    show.answer(&show.modo, "The chat is open").await;
    let modes = show.recorded("mode").await;
    let seen: Vec<_> = modes.iter().map(|m| (&m["details"]["mode"], &m["event_id"], &m["actor"])).collect();
    let actor = member_actor(&show.modo);
    assert_eq!(
        seen,
        vec![(&json!("hosts_only"), &json!(hosts), &actor), (&json!("open"), &json!(open), &actor)],
        "{modes:?}"
    );
}

/// `!foyer timeout @fan 1m` makes the homeserver refuse the fan's messages and
/// `!foyer untimeout @fan` lets them post again; a timeout of the host or the bot is
/// refused, and a user that is not a full Matrix ID is named as the mistake, each in the
/// moderator's direct chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_times_a_fan_out_and_lifts_it_but_never_a_host() {
    let show = Show::open("modtimeout").await;
    let fan = &show.fan.user_id;
    show.says(&show.modo, &format!("!foyer timeout {fan} 1m too loud")).await;
    show.wait_posting(&show.fan, false).await;
    show.answer(&show.modo, &format!("`{fan}` is timed out for 1m")).await;
    show.wait_posting(&show.other, true).await; // only the fan

    show.says(&show.modo, &format!("!foyer timeout {} 1m", show.dj.user_id)).await;
    show.answer(&show.modo, "is a host or moderator of this show").await;
    let bot = TestUser::bot(&show.foyer.slot);
    show.says(&show.modo, &format!("!foyer ban {}", bot.user_id)).await;
    show.answer(&show.modo, "is Foyer's bot").await;
    show.says(&show.modo, "!foyer timeout fan 1m").await;
    show.answer(&show.modo, "\"fan\" is not a full Matrix ID").await;
    show.says(&show.dj, "the host still speaks").await;

    show.says(&show.modo, &format!("!foyer untimeout {fan}")).await;
    show.wait_posting(&show.fan, true).await;
    show.answer(&show.modo, "timeout is over").await;
    let timeouts = show.recorded("timeout").await;
    assert_eq!(timeouts.len(), 1, "the fan's alone: {timeouts:?}");
    let timeout = &timeouts[0];
    assert_eq!(
        (&timeout["actor"], &timeout["member"]["user_id"], &timeout["reason"], &timeout["details"]["seconds"]),
        (&member_actor(&show.modo), &json!(fan), &json!("too loud"), &json!(60)),
        "{timeout}"
    );
    // The moderator's lifting, once: the lifecycle, lifting it in the room, records the
    // same untimeout (the timeout's end is the command's instant), which adds nothing.
    let lifted = show.recorded("untimeout").await;
    assert_eq!(lifted.len(), 1, "{lifted:?}");
    let by_modo: Vec<_> = lifted.iter().filter(|e| e["actor"] == member_actor(&show.modo)).collect();
    assert_eq!(by_modo.len(), 1, "{lifted:?}");
    assert_eq!(by_modo[0]["member"]["user_id"], json!(fan), "{lifted:?}");
}

/// `!foyer ban @fan spam` bans the fan in Matrix with the reason and binds their ticket
/// (a web session for it is refused), recorded once with the moderator as actor, not a
/// second time for the bot's own ban event; a host's ban in Element is recorded once
/// with the host as actor; `!foyer unban` lets the ticket back in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderators_ban_binds_the_ticket_and_is_recorded_once() {
    let show = Show::open("modban").await;
    let fan = &show.fan.user_id;
    let command = show.says(&show.modo, &format!("!foyer ban {fan} spam")).await;
    eventually(LIMIT, "the fan banned", || async {
        (show.dj.membership_of(&show.room, fan).await.as_deref() == Some("ban")).then_some(())
    })
    .await;
    let ban = show.dj.member_event(&show.room, fan).await.expect("the ban");
    assert_eq!(ban["reason"], "spam", "{ban}");
    eventually(LIMIT, "the fan's ticket barred from the web chat", || async {
        (show.web_session("t-fan").await == (403, json!("FOYER_VIEWER_BANNED"))).then_some(())
    })
    .await;
    show.answer(&show.modo, &format!("`{fan}` is banned")).await;
    // The bot's ban event was followed (the ticket is barred): still one ban recorded.
    let bans = show.recorded("ban").await;
    assert_eq!(bans.len(), 1, "once, by the command: {bans:?}");
    assert_eq!(
        (&bans[0]["actor"], &bans[0]["member"]["user_id"], &bans[0]["event_id"], &bans[0]["reason"]),
        (&member_actor(&show.modo), &json!(fan), &json!(command), &json!("spam")),
        "{bans:?}"
    );
    assert!(show.redacted(&show.dj, &command).await, "the command left the room");

    // A host's own ban in Element: recorded with the host as its actor, once.
    show.dj.ban(&show.room, &show.other.user_id).await;
    let by_host = eventually(LIMIT, "the host's ban in the record", || async {
        let bans = show.recorded("ban").await;
        (bans.len() > 1).then_some(bans)
    })
    .await;
    assert_eq!(by_host.len(), 2, "{by_host:?}");
    assert_eq!(
        (&by_host[1]["actor"], &by_host[1]["member"]["user_id"]),
        (&member_actor(&show.dj), &json!(show.other.user_id)),
        "{by_host:?}"
    );

    show.says(&show.modo, &format!("!foyer unban {fan}")).await;
    eventually(LIMIT, "the fan's ticket let in again", || async {
        (show.web_session("t-fan").await.0 == 200).then_some(())
    })
    .await;
    show.answer(&show.modo, "ban is lifted").await;
    let unbans = show.recorded("unban").await;
    assert_eq!(unbans.len(), 1, "{unbans:?}");
    assert_eq!(unbans[0]["actor"], member_actor(&show.modo), "{unbans:?}");
}

/// Foyer dies after acting on `!foyer timeout` and before answering, then again after
/// answering and before dropping the command from its inbox; the third start handles it
/// once more: one timeout recorded (it ends when the first computed), one direct chat,
/// one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_handled_again_after_a_crash_acts_and_answers_once() {
    let mut show = Show::open("modcrash").await;
    show.foyer.kill_and_restart_with(&[("FOYER_FAILPOINTS", "room_command_before_answer")], true).await;
    let fan = show.fan.user_id.clone();
    show.says(&show.modo, &format!("!foyer timeout {fan} 10m")).await;
    assert_ne!(show.foyer.wait_exit(Duration::from_secs(20)).await, 0, "the failpoint aborts");
    show.foyer.restart(&[("FOYER_FAILPOINTS", "room_command_after_answer")]);
    assert_ne!(show.foyer.wait_exit(Duration::from_secs(60)).await, 0, "the failpoint aborts");
    show.foyer.restart(&[]);
    show.foyer.wait_ready().await;
    eventually(LIMIT, "the inbox to be empty", || async {
        let left = sqlite_query(&show.foyer.dir().join("foyer.db"), "SELECT COUNT(*) FROM admin_inbox");
        (left.trim() == "0").then_some(())
    })
    .await;
    show.wait_posting(&show.fan, false).await;
    let (dm, _) = show.answer(&show.modo, &format!("`{fan}` is timed out for 10m")).await;
    assert_eq!(show.modo.notices(&dm).await.len(), 1, "one answer");
    let (_, joined) = show.modo.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(
        joined["joined_rooms"].as_array().map(Vec::len),
        Some(2),
        "the show's room and one direct chat: {joined}"
    );
    let timeouts = show.recorded("timeout").await;
    assert_eq!(timeouts.len(), 1, "one timeout: {timeouts:?}");
}

/// `!foyer slow 30s` puts slow mode on at once: a web fan's second post within 30 s is
/// refused 429 naming it. `!foyer slow off` ends it. Both are recorded with the
/// moderator as actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderators_slow_mode_holds_back_a_fans_second_post() {
    let show = Show::open("modslow").await;
    let ticket = json!({"ticket_id": "t-web", "email": "slow@example.org"});
    show.foyer.accept("ticket.granted", json!({"reservation_id": show.id, "tickets": [ticket]})).await;
    let chat = ChatClient::of(&show.foyer).keeping(&["slow@example.org"]);
    let session = session_for(&show.foyer, &show.id, "t-web", "Sam").await;
    let post = |txn: &'static str| {
        let (chat, session) = (chat.clone(), session.clone());
        async move {
            let (status, answer, _) = chat.post_message(&session, &json!({"txn_id": txn, "body": txn})).await;
            (status, answer["rule"].clone())
        }
    };

    show.says(&show.modo, "!foyer slow 30s").await;
    show.answer(&show.modo, "Slow mode is on: members wait 30s").await;
    assert_eq!(post("one").await.0, 200);
    assert_eq!(post("two").await, (429, json!("slow_mode")));

    show.says(&show.modo, "!foyer slow off").await;
    show.answer(&show.modo, "Slow mode is off").await;
    assert_eq!(post("three").await.0, 200);
    let slow = show.recorded("slow").await;
    let seen: Vec<_> = slow.iter().map(|e| (&e["details"]["seconds"], &e["actor"])).collect();
    let actor = member_actor(&show.modo);
    assert_eq!(seen, vec![(&json!(30), &actor), (&json!(0), &actor)], "{slow:?}");
}
