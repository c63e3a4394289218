//! Matrix users acting through the client-server API: registered on Synapse, the bot
//! of a slot, and the matrix-nio client.

use std::{
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use super::{
    enc, eventually, random_token, repo_root,
    synapse::{Slot, Synapse},
};

/// What a user's client saw accepting an invite ([`TestUser::accept_invite`]).
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// From the first join request until the one answered 200.
    pub took: Duration,
    /// Answers 429 before it.
    pub refusals: u32,
}

static USER_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Synapse {
    /// Registers a fresh user through the shared-secret admin API.
    pub async fn create_user(&self, name: &str) -> TestUser {
        self.register(name, false).await
    }

    /// A Synapse server admin, for the admin API.
    pub async fn create_admin(&self) -> TestUser {
        self.register("admin", true).await
    }

    async fn register(&self, name: &str, admin: bool) -> TestUser {
        let n = USER_COUNTER.fetch_add(1, Ordering::SeqCst);
        let localpart = format!("{name}{n}_{:04x}", rand::random::<u16>());
        let password = random_token();
        let http = reqwest::Client::new();
        let register_url = format!("{}/_synapse/admin/v1/register", self.url);
        let nonce: Value = http.get(&register_url).send().await.expect("nonce").json().await.expect("nonce json");
        let nonce = nonce["nonce"].as_str().expect("nonce").to_owned();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.shared_secret.as_bytes()).expect("hmac key");
        let role = if admin { "admin" } else { "notadmin" };
        mac.update(format!("{nonce}\0{localpart}\0{password}\0{role}").as_bytes());
        let mac = hex::encode(mac.finalize().into_bytes());
        let body = json!({"nonce": nonce, "username": localpart, "password": password, "admin": admin, "mac": mac});
        let resp = http.post(&register_url).json(&body).send().await.expect("register");
        let status = resp.status();
        let body: Value = resp.json().await.expect("register json");
        assert!(status.is_success(), "register {localpart}: {status} {body}");
        let (user_id, access_token) = (body["user_id"].as_str().expect("user_id"), body["access_token"].as_str());
        // Neither ever reaches a browser: every web chat answer a test reads is checked.
        super::webchat::keep_private([user_id, access_token.expect("access_token")]);
        TestUser {
            user_id: user_id.to_owned(),
            access_token: access_token.expect("access_token").to_owned(),
            password,
            homeserver: self.url.clone(),
            http,
        }
    }
}

/// A user acting through the client-server API, as Element would.
#[derive(Clone)]
pub struct TestUser {
    pub user_id: String,
    pub access_token: String,
    /// Empty for the bot, which has no password.
    pub password: String,
    homeserver: String,
    http: reqwest::Client,
}

impl TestUser {
    /// Sends a client-server request and returns (status, JSON body).
    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.homeserver)).bearer_auth(&self.access_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("homeserver request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The bot of a slot, acting with the slot's as_token.
    pub fn bot(slot: &Slot) -> TestUser {
        TestUser {
            user_id: slot.bot_user_id(),
            access_token: slot.as_token.clone(),
            password: String::new(),
            homeserver: slot.homeserver_url.clone(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    /// Resolves a room alias: `Some(room_id)`, or `None` when the alias is unknown.
    pub async fn resolve_alias(&self, alias: &str) -> Option<String> {
        let (status, body) = self.get(&format!("/_matrix/client/v3/directory/room/{}", enc(alias))).await;
        (status == 200).then(|| body["room_id"].as_str().expect("room_id").to_owned())
    }

    pub async fn join(&self, room_id: &str) -> (u16, Value) {
        self.request(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{}", enc(room_id)), Some(json!({}))).await
    }

    /// Joins the room once the invite has arrived (a join before it is refused).
    pub async fn join_once_invited(&self, room_id: &str, limit: Duration) {
        eventually(limit, &format!("an invite for {} to join {room_id} with", self.user_id), || async {
            (self.join(room_id).await.0 == 200).then_some(())
        })
        .await;
    }

    /// Accepts the invite as Element does, once `viewer` (a member) sees it: a 429 is asked
    /// again when its `retry_after_ms` has passed. That is the homeserver saying when its
    /// budget has room; asking sooner is only refused again, and counted against the user.
    /// Fails on any other answer, or after `limit`.
    pub async fn accept_invite(&self, room_id: &str, viewer: &TestUser, limit: Duration) -> Accepted {
        let invited = format!("{}'s invite to {room_id}", self.user_id);
        eventually(limit, &invited, || async {
            (viewer.membership_of(room_id, &self.user_id).await.as_deref() == Some("invite")).then_some(())
        })
        .await;
        let started = std::time::Instant::now();
        let mut refusals = 0;
        loop {
            let (status, body) = self.join(room_id).await;
            match status {
                200 => return Accepted { took: started.elapsed(), refusals },
                429 => refusals += 1,
                _ => panic!("{} joining {room_id}: {status} {body}", self.user_id),
            }
            assert!(started.elapsed() < limit, "{} not in {room_id} after {limit:?}", self.user_id);
            tokio::time::sleep(Duration::from_millis(body["retry_after_ms"].as_u64().unwrap_or(1000))).await;
        }
    }

    pub async fn send_text(&self, room_id: &str, text: &str) -> (u16, Value) {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(room_id), random_token());
        self.request(reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": text}))).await
    }

    /// A state event's content (empty state key), or `None` when the user cannot see it or
    /// it is unset.
    pub async fn state(&self, room_id: &str, kind: &str) -> Option<Value> {
        self.state_event(room_id, kind, "").await
    }

    /// The content of the state event `kind` with `state_key`, or `None` as for [`Self::state`].
    pub async fn state_event(&self, room_id: &str, kind: &str, state_key: &str) -> Option<Value> {
        let path = format!("/_matrix/client/v3/rooms/{}/state/{kind}/{}", enc(room_id), enc(state_key));
        let (status, body) = self.get(&path).await;
        (status == 200).then_some(body)
    }

    /// The room's state events, or `None` when the user cannot see them.
    pub async fn room_state(&self, room_id: &str) -> Option<Vec<Value>> {
        let (status, body) = self.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(room_id))).await;
        (status == 200).then(|| body.as_array().cloned().unwrap_or_default())
    }

    /// `user_id`'s `m.room.member` event content in the room as this user sees it
    /// (`membership`, `reason`), or `None` when unknown.
    pub async fn member_event(&self, room_id: &str, user_id: &str) -> Option<Value> {
        self.state_event(room_id, "m.room.member", user_id).await
    }

    /// `user_id`'s membership in the room (`invite`, `join`, `leave`…) as this user sees
    /// it, or `None` when unknown.
    pub async fn membership_of(&self, room_id: &str, user_id: &str) -> Option<String> {
        let event = self.member_event(room_id, user_id).await?;
        Some(event["membership"].as_str().unwrap_or_default().to_owned())
    }

    /// The room's timeline, newest first (up to 1000 events).
    pub async fn messages(&self, room_id: &str) -> Vec<Value> {
        let (status, body) =
            self.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000", enc(room_id))).await;
        assert_eq!(status, 200, "messages: {body}");
        body["chunk"].as_array().cloned().unwrap_or_default()
    }

    /// The sender of the room's message with this body, once this user sees it.
    pub async fn sender_of(&self, room_id: &str, body: &str) -> String {
        super::eventually(Duration::from_secs(30), &format!("the message {body:?} in the room"), || async {
            let events = self.messages(room_id).await;
            events.iter().find(|e| e["content"]["body"] == body).and_then(|e| e["sender"].as_str().map(str::to_owned))
        })
        .await
    }

    /// Bans `user_id` from the room, as a moderator does in Element.
    pub async fn ban(&self, room_id: &str, user_id: &str) {
        let path = format!("/_matrix/client/v3/rooms/{}/ban", enc(room_id));
        let (status, answer) =
            self.request(reqwest::Method::POST, &path, Some(serde_json::json!({"user_id": user_id}))).await;
        assert_eq!(status, 200, "ban {user_id}: {answer}");
    }

    /// The bodies of the room's messages, newest first.
    pub async fn bodies(&self, room_id: &str) -> Vec<String> {
        self.messages(room_id).await.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
    }

    /// The bodies of the room's notices (the bot's `m.notice` messages), newest first.
    pub async fn notices(&self, room_id: &str) -> Vec<String> {
        let notices = self.messages(room_id).await.into_iter().filter(|e| e["content"]["msgtype"] == "m.notice");
        notices.filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
    }

    /// Rooms this user is invited to, from an initial sync. Synapse caches identical
    /// sync requests for minutes, so each asks with a filter of its own.
    pub async fn invited_rooms(&self) -> Vec<String> {
        let filter = json!({"event_fields": ["type", "content", "state_key", "sender", random_token()]});
        let (status, body) =
            self.get(&format!("/_matrix/client/v3/sync?timeout=0&filter={}", enc(&filter.to_string()))).await;
        assert_eq!(status, 200, "sync: {body}");
        body["rooms"]["invite"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Invites `bot` to a new room marked as a direct chat (the invite's `is_direct`), as
    /// Element does with `trusted_private_chat`, or with another `preset`; returns the
    /// room id without waiting for the bot.
    pub async fn invite_to_direct_chat(&self, bot: &str, preset: &str) -> String {
        let body = json!({"invite": [bot], "is_direct": true, "preset": preset});
        let (status, body) = self.request(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(body)).await;
        assert_eq!(status, 200, "createRoom: {body}");
        body["room_id"].as_str().expect("room_id").to_owned()
    }

    /// Opens a direct chat with `bot` as Element does and waits until the bot joined it.
    pub async fn open_direct_chat(&self, bot: &str) -> String {
        let dm = self.invite_to_direct_chat(bot, "trusted_private_chat").await;
        eventually(Duration::from_secs(30), &format!("{bot} to join {dm}"), || async {
            (self.membership_of(&dm, bot).await.as_deref() == Some("join")).then_some(())
        })
        .await;
        dm
    }

    /// Sends `text` in the room and waits for one more notice there (the bot's answer);
    /// returns the newest notice.
    pub async fn ask(&self, room_id: &str, text: &str) -> String {
        let before = self.notices(room_id).await.len();
        let (status, sent) = self.send_text(room_id, text).await;
        assert_eq!(status, 200, "{sent}");
        eventually(Duration::from_secs(30), &format!("an answer to {text:?} in {room_id}"), || async {
            let notices = self.notices(room_id).await;
            (notices.len() > before).then(|| notices[0].clone())
        })
        .await
    }

    pub async fn create_room(&self, invite: &[&str]) -> String {
        let (status, body) =
            self.request(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(json!({"invite": invite}))).await;
        assert_eq!(status, 200, "createRoom: {body}");
        body["room_id"].as_str().expect("room_id").to_owned()
    }
}

/// Runs `tests/client/ticket_holder.py` (matrix-nio) as `user`; returns its JSON report.
pub fn nio_client(user: &TestUser, homeserver: &str, room_id: &str, mode: &str) -> Value {
    ticket_holder(user, homeserver, room_id, mode, &[])
}

/// Opens a direct chat with the bot as `user` through matrix-nio (as Element does: an
/// invite marked `is_direct`) and sends each of `texts`, waiting for each answer;
/// returns `{"dm": room_id, "answers": [...]}`.
pub fn nio_claim(user: &TestUser, homeserver: &str, bot: &str, texts: &[&str]) -> Value {
    ticket_holder(user, homeserver, bot, "claim", texts)
}

/// Posts `text` to a room `user` has joined, through matrix-nio; returns the event id and
/// the homeserver's time for it (`origin_server_ts`, unix milliseconds).
pub fn nio_say(user: &TestUser, homeserver: &str, room_id: &str, text: &str) -> (String, i64) {
    let said = ticket_holder(user, homeserver, room_id, "say", &[text]);
    let event_id = said["event_id"].as_str().unwrap_or_else(|| panic!("an event id: {said}"));
    (event_id.to_owned(), said["origin_server_ts"].as_i64().unwrap_or_else(|| panic!("a time: {said}")))
}

/// `ticket_holder.py HOMESERVER USER_ID PASSWORD TARGET MODE ARGS...`: its last line,
/// the JSON report.
fn ticket_holder(user: &TestUser, homeserver: &str, target: &str, mode: &str, args: &[&str]) -> Value {
    let python = repo_root().join("target/synapse-venv/bin/python");
    let out = Command::new(python)
        .arg(repo_root().join("tests/client/ticket_holder.py"))
        .args([homeserver, &user.user_id, &user.password, target, mode])
        .args(args)
        .output()
        .expect("run the matrix-nio client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nio client failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}
