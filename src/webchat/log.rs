//! The room log the web chat is served from (docs/web-chat.md, "The stream"): a
//! reservation's room events, as the homeserver pushes them to Foyer, turned into log
//! entries. Pure: the caller reads the events and the names, and appends the entries.
//!
//! What a browser may see is decided here, once, before anything is stored:
//!
//! - a sender is a per-room key ([`naming::sender_key`], a keyed hash: not computable from the
//!   Matrix ID without the key), a name and a role, never a Matrix ID;
//! - bodies are the plain `body` (never `formatted_body`, never HTML), with a reply's
//!   fallback (the quoted `> <@user> …` lines and the blank line after them) removed,
//!   and every Matrix user ID in them replaced by the member's name;
//! - text only: `m.text`, `m.emote` and `m.notice`; images, files and the rest are left
//!   out;
//! - an edit (`m.replace`) is an `edit` of the original with the new body; a redaction is
//!   a `redaction` of the event it names; the bot's notices are `notice`s.
//!
//! The payloads are the stream's `data` without `seq`, which the log hands out.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ruma::{
    OwnedEventId, OwnedUserId, UserId,
    events::{
        AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent,
        room::{
            message::{MessageType, Relation, RoomMessageEventContent},
            redaction::RoomRedactionEvent,
        },
    },
};
use serde_json::json;

use crate::model::{
    LogKind, LogPayload, NewLogEntry, ReservationId, WebRole,
    naming::{self, WebKey},
};

/// The name shown for a sender whose member event gave none (never their Matrix ID).
pub const UNNAMED: &str = "someone";

/// The name shown for Foyer's bot when its member event gave none.
pub const BOT_NAME: &str = "Foyer";

/// The longest body kept, in characters; a longer one is cut and ends with `…`.
pub const MAX_BODY_CHARS: usize = 4000;

/// What the conversion needs to know of the room besides the event.
#[derive(Debug, Clone, Copy)]
pub struct Room<'a> {
    pub reservation: &'a ReservationId,
    /// Foyer's bot: its role is `bot`, its `m.notice`s are `notice`s.
    pub bot: &'a UserId,
    /// The reservation's hosts: their role is `host`.
    pub hosts: &'a [OwnedUserId],
    /// The reservation's moderators (`chat.moderators`): their role is `moderator`.
    pub moderators: &'a [OwnedUserId],
    /// `webchat.puppet_prefix`: a sender whose localpart starts with it is a web fan.
    pub puppet_prefix: &'a str,
    /// Members' display names, by user: the sender's and those named in bodies.
    pub names: &'a HashMap<OwnedUserId, String>,
    pub key: &'a WebKey,
    /// What Foyer appends to a web fan's name in Matrix (`words::room::WEB_MARK`): the
    /// page shows their name without it, beside its own badge for the role.
    pub web_mark: &'a str,
}

impl Room<'_> {
    pub fn role(&self, user: &UserId) -> WebRole {
        if user == self.bot {
            WebRole::Bot
        } else if self.hosts.iter().any(|h| h == user) {
            WebRole::Host
        } else if self.moderators.iter().any(|m| m == user) {
            WebRole::Moderator
        } else if !self.puppet_prefix.is_empty() && user.localpart().starts_with(self.puppet_prefix) {
            WebRole::Web
        } else {
            WebRole::Fan
        }
    }

    /// A member's name as shown: from their member event, else a word (never the ID).
    pub fn name(&self, user: &UserId) -> String {
        match self.names.get(user) {
            Some(name) if self.role(user) == WebRole::Web && !self.web_mark.is_empty() => {
                name.strip_suffix(self.web_mark).unwrap_or(name).to_owned()
            }
            Some(name) => name.clone(),
            None if user == self.bot => BOT_NAME.to_owned(),
            None => UNNAMED.to_owned(),
        }
    }

    fn sender(&self, user: &UserId) -> serde_json::Value {
        json!({"key": naming::sender_key(self.key, self.reservation, user), "name": self.name(user), "role": self.role(user).as_str()})
    }

    /// `body` with each Matrix user ID in it replaced by that member's name.
    fn plain(&self, body: &str) -> String {
        let mut out = String::with_capacity(body.len());
        let mut rest = body;
        while let Some((before, id, after)) = next_user_id(rest) {
            out.push_str(before);
            out.push_str(&self.name(&id));
            rest = after;
        }
        out.push_str(rest);
        bounded(&out)
    }
}

/// The users whose names converting `event` needs: its sender and the user IDs in its
/// bodies.
pub fn users_named(event: &AnyTimelineEvent) -> Vec<OwnedUserId> {
    let mut users = vec![event.sender().to_owned()];
    if let AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(MessageLikeEvent::Original(message))) = event
    {
        let mut bodies = vec![message.content.body()];
        if let Some(Relation::Replacement(replacement)) = &message.content.relates_to {
            bodies.push(replacement.new_content.msgtype.body());
        }
        for body in bodies {
            let mut rest = body;
            while let Some((_, id, after)) = next_user_id(rest) {
                if !users.contains(&id) {
                    users.push(id);
                }
                rest = after;
            }
        }
    }
    users
}

/// The log entry `event` makes, if any: a text message, an edit of one, a redaction, or
/// one of the bot's notices. Other events (state, reactions, images…) make none.
pub fn entry(event: &AnyTimelineEvent, room: &Room<'_>) -> Option<NewLogEntry> {
    let AnyTimelineEvent::MessageLike(event) = event else { return None };
    let origin_ts = timestamp(event.origin_server_ts());
    let (kind, payload) = match event {
        AnyMessageLikeEvent::RoomMessage(MessageLikeEvent::Original(message)) => {
            let ts = origin_ts.timestamp_millis();
            message_entry(&message.event_id, &message.sender, &message.content, ts, room)?
        }
        AnyMessageLikeEvent::RoomRedaction(RoomRedactionEvent::Original(redaction)) => {
            let redacts = redaction.content.redacts.as_ref().or(redaction.redacts.as_ref())?;
            // Who redacted: the page removes a message only for its sender or a host (a
            // redaction another member sends is allowed into the room, then not applied).
            (LogKind::Redaction, json!({"event_id": redacts, "sender": room.sender(&redaction.sender)}))
        }
        _ => return None,
    };
    Some(NewLogEntry {
        event_id: Some(event.event_id().to_owned()),
        kind,
        payload: LogPayload::new(&payload).ok()?,
        origin_ts,
    })
}

fn message_entry(
    event_id: &OwnedEventId, sender: &UserId, content: &RoomMessageEventContent, ts: i64, room: &Room<'_>,
) -> Option<(LogKind, serde_json::Value)> {
    if let Some(Relation::Replacement(replacement)) = &content.relates_to {
        let body = text_body(&replacement.new_content.msgtype, sender, room)?;
        // Who edited: the page applies an edit only from the original's sender, as Matrix
        // clients do (anyone may send an `m.replace`).
        let edit = json!({"event_id": replacement.event_id, "body": body, "sender": room.sender(sender)});
        return Some((LogKind::Edit, edit));
    }
    let replying = match &content.relates_to {
        Some(Relation::Reply(_)) => true,
        Some(Relation::Thread(thread)) => thread.in_reply_to.is_some() && !thread.is_falling_back,
        _ => false,
    };
    let mut body = text_body(&content.msgtype, sender, room)?;
    if replying {
        body = without_reply_fallback(&body).to_owned();
    }
    // The bot's notices are set apart (the page shows them as announcements); both carry
    // the same fields.
    let kind = if matches!(content.msgtype, MessageType::Notice(_)) && sender == room.bot {
        LogKind::Notice
    } else {
        LogKind::Message
    };
    let sender = room.sender(sender);
    Some((kind, json!({"event_id": event_id, "sender": sender, "body": body, "ts": ts})))
}

/// The plain body of a text, emote or notice message (an emote as `* name body`);
/// `None` for other kinds.
fn text_body(msgtype: &MessageType, sender: &UserId, room: &Room<'_>) -> Option<String> {
    match msgtype {
        MessageType::Text(text) => Some(room.plain(&text.body)),
        MessageType::Notice(notice) => Some(room.plain(&notice.body)),
        MessageType::Emote(emote) => Some(room.plain(&format!("* {} {}", room.name(sender), emote.body))),
        _ => None,
    }
}

/// A reply's body without its fallback: the leading lines quoted with `>` and the blank
/// line after them (the Matrix spec's reply fallback, still sent by older clients).
pub fn without_reply_fallback(body: &str) -> &str {
    if !body.starts_with('>') {
        return body;
    }
    let mut rest = body;
    while rest.starts_with('>') {
        rest = rest.split_once('\n').map_or("", |(_, after)| after);
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

/// The next Matrix user ID in `text` (`@localpart:server`, starting the text or after a
/// character that is not a letter or a digit, so that `bob@example.org` is no ID), as
/// the text before it, the ID and the text after it.
fn next_user_id(text: &str) -> Option<(&str, OwnedUserId, &str)> {
    let mut from = 0;
    while let Some(found) = text[from..].find('@') {
        let at = from + found;
        from = at + 1;
        if text[..at].chars().next_back().is_some_and(char::is_alphanumeric) {
            continue;
        }
        let candidate = &text[at..];
        let colon = candidate.find(':')?;
        let localpart = &candidate[1..colon];
        if localpart.is_empty() || !localpart.bytes().all(is_localpart_byte) {
            continue;
        }
        let server_len = candidate[colon + 1..].bytes().take_while(|&b| is_server_byte(b)).count();
        // A sentence's full stop or a port's lone colon is not part of the server name.
        let server = candidate[colon + 1..colon + 1 + server_len].trim_end_matches(['.', ':']);
        if server.is_empty() {
            continue;
        }
        let end = colon + 1 + server.len();
        if let Ok(id) = UserId::parse(&candidate[..end]) {
            return Some((&text[..at], id, &text[at + end..]));
        }
    }
    None
}

fn is_localpart_byte(b: u8) -> bool {
    // The historical user ID grammar, which is wider than today's; upper case included.
    b.is_ascii_alphanumeric() || b"._=-/+".contains(&b)
}

fn is_server_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b".-:[]".contains(&b)
}

/// At most [`MAX_BODY_CHARS`] characters.
fn bounded(body: &str) -> String {
    match body.char_indices().nth(MAX_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_owned(),
    }
}

fn timestamp(ts: ruma::MilliSecondsSinceUnixEpoch) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::from(ts.get())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use ruma::{serde::Raw, user_id};
    use serde_json::Value;

    use super::*;

    fn event(value: Value) -> AnyTimelineEvent {
        let mut value = value;
        let fields = value.as_object_mut().unwrap();
        fields.entry("room_id").or_insert(json!("!room:example.org"));
        fields.entry("origin_server_ts").or_insert(json!(1_800_000_000_000_i64));
        fields.entry("sender").or_insert(json!("@alice:example.org"));
        fields.entry("type").or_insert(json!("m.room.message"));
        Raw::<AnyTimelineEvent>::from_json(serde_json::value::to_raw_value(&value).unwrap()).deserialize().unwrap()
    }

    fn message(id: &str, content: Value) -> AnyTimelineEvent {
        event(json!({"event_id": id, "content": content}))
    }

    struct Fixture {
        reservation: ReservationId,
        hosts: Vec<OwnedUserId>,
        moderators: Vec<OwnedUserId>,
        names: HashMap<OwnedUserId, String>,
        key: WebKey,
    }

    impl Fixture {
        fn new() -> Self {
            let names = [
                ("@alice:example.org", "Alice"),
                ("@dj:example.org", "DJ Kool"),
                ("@_web_x1:example.org", "Zoe (web)"),
                ("@carl:example.org", "Carl (web)"),
            ]
            .into_iter()
            .map(|(id, name)| (OwnedUserId::try_from(id).unwrap(), name.to_owned()))
            .collect();
            Fixture {
                reservation: ReservationId::parse("jazz").unwrap(),
                hosts: vec![OwnedUserId::try_from("@dj:example.org").unwrap()],
                moderators: vec![OwnedUserId::try_from("@mod:example.org").unwrap()],
                names,
                key: WebKey::from_secret(b"as-token-0123456789"),
            }
        }

        fn room(&self) -> Room<'_> {
            Room {
                reservation: &self.reservation,
                bot: user_id!("@foyer:example.org"),
                hosts: &self.hosts,
                moderators: &self.moderators,
                puppet_prefix: "_web_",
                names: &self.names,
                key: &self.key,
                web_mark: " (web)",
            }
        }

        fn data(&self, event: &AnyTimelineEvent) -> Option<(LogKind, Value)> {
            let entry = entry(event, &self.room())?;
            Some((entry.kind, serde_json::from_str(entry.payload.as_str()).unwrap()))
        }
    }

    #[test]
    fn a_text_message_names_its_sender_by_key_name_and_role_never_by_id() {
        let f = Fixture::new();
        let (kind, data) = f
            .data(&message(
                "$m1",
                json!({"msgtype": "m.text", "body": "hello",
            "format": "org.matrix.custom.html", "formatted_body": "<b>hello</b>"}),
            ))
            .unwrap();
        assert_eq!(kind, LogKind::Message);
        let key = naming::sender_key(&f.key, &f.reservation, user_id!("@alice:example.org"));
        assert_eq!(
            data,
            json!({"event_id": "$m1", "sender": {"key": key, "name": "Alice", "role": "fan"}, "body": "hello",
                   "ts": 1_800_000_000_000_i64})
        );
        assert!(!data.to_string().contains("@alice"));
        let entry = entry(&message("$m1", json!({"msgtype": "m.text", "body": "x"})), &f.room()).unwrap();
        assert_eq!(entry.event_id.unwrap().as_str(), "$m1");
        assert_eq!(entry.origin_ts.timestamp_millis(), 1_800_000_000_000);
    }

    #[test]
    fn roles_are_bot_host_web_or_fan() {
        let f = Fixture::new();
        let room = f.room();
        assert_eq!(room.role(user_id!("@foyer:example.org")), WebRole::Bot);
        assert_eq!(room.role(user_id!("@dj:example.org")), WebRole::Host);
        assert_eq!(room.role(user_id!("@_web_x1:example.org")), WebRole::Web);
        assert_eq!(room.role(user_id!("@mod:example.org")), WebRole::Moderator);
        assert_eq!(room.role(user_id!("@bob:example.org")), WebRole::Fan);
        // A sender without a name is a word, not their ID.
        let sent = event(json!({"event_id": "$m", "sender": "@bob:example.org",
            "content": {"msgtype": "m.text", "body": "hi"}}));
        let (_, data) = f.data(&sent).unwrap();
        assert_eq!(data["sender"]["name"], UNNAMED);
        // A web fan's mark is the page's badge, not part of the name; a member who wrote
        // it into their own name keeps it.
        assert_eq!(room.name(user_id!("@_web_x1:example.org")), "Zoe");
        assert_eq!(room.name(user_id!("@carl:example.org")), "Carl (web)");
    }

    #[test]
    fn user_ids_in_bodies_become_names_and_emails_stay() {
        let f = Fixture::new();
        let body =
            "@dj:example.org: play it again, and @stranger:example.org too (mail bob@example.org). @alice:example.org.";
        let (_, data) = f.data(&message("$m", json!({"msgtype": "m.text", "body": body}))).unwrap();
        assert_eq!(data["body"], "DJ Kool: play it again, and someone too (mail bob@example.org). Alice.");
        let ids = users_named(&message("$m", json!({"msgtype": "m.text", "body": body})));
        let ids: Vec<&str> = ids.iter().map(|u| u.as_str()).collect();
        assert_eq!(ids, ["@alice:example.org", "@dj:example.org", "@stranger:example.org"]);
        let link = "see https://matrix.to/#/@alice:example.org";
        let (_, data) = f.data(&message("$m", json!({"msgtype": "m.text", "body": link}))).unwrap();
        assert_eq!(data["body"], "see https://matrix.to/#/Alice");
        for plain in ["@ alone", "an @:x", "@a", "email a@b:c", "100% @"] {
            let (_, data) = f.data(&message("$m", json!({"msgtype": "m.text", "body": plain}))).unwrap();
            assert_eq!(data["body"], plain);
        }
    }

    #[test]
    fn a_replys_fallback_is_removed() {
        let f = Fixture::new();
        let content = json!({"msgtype": "m.text",
            "body": "> <@dj:example.org> what key?\n> second line\n\nB flat, @dj:example.org",
            "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}}});
        let (_, data) = f.data(&message("$r", content)).unwrap();
        assert_eq!(data["body"], "B flat, DJ Kool");
        // Without a reply relation, a quote is the member's text.
        let quote = json!({"msgtype": "m.text", "body": "> a quote\n\nmine"});
        assert_eq!(f.data(&message("$q2", quote)).unwrap().1["body"], "> a quote\n\nmine");
        assert_eq!(without_reply_fallback("> only a quote"), "");
        assert_eq!(without_reply_fallback("no fallback"), "no fallback");
    }

    #[test]
    fn an_edit_is_the_originals_new_body() {
        let f = Fixture::new();
        let content = json!({"msgtype": "m.text", "body": "* hello @dj:example.org",
            "m.new_content": {"msgtype": "m.text", "body": "hello @dj:example.org"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}});
        let (kind, data) = f.data(&message("$e", content)).unwrap();
        assert_eq!(kind, LogKind::Edit);
        assert_eq!((&data["event_id"], &data["body"]), (&json!("$orig"), &json!("hello DJ Kool")));
        assert_eq!(
            data["sender"],
            f.data(&message("$m", json!({"msgtype": "m.text", "body": "x"}))).unwrap().1["sender"]
        );
    }

    #[test]
    fn a_redaction_names_the_event_it_removes_in_every_room_version() {
        let f = Fixture::new();
        let old = event(json!({"event_id": "$x", "type": "m.room.redaction", "redacts": "$gone", "content": {}}));
        let v11 = event(json!({"event_id": "$y", "type": "m.room.redaction", "content": {"redacts": "$gone"}}));
        for redaction in [old, v11] {
            let (kind, data) = f.data(&redaction).unwrap();
            assert_eq!((kind, &data["event_id"]), (LogKind::Redaction, &json!("$gone")));
            assert!(data["sender"]["key"].is_string(), "who redacted: {data}");
        }
    }

    #[test]
    fn the_bots_notices_are_notices_and_emotes_read_as_actions() {
        let f = Fixture::new();
        let notice = event(json!({"event_id": "$n", "sender": "@foyer:example.org",
            "content": {"msgtype": "m.notice", "body": "🔴 Live now"}}));
        let bot = UserId::parse("@foyer:example.org").unwrap();
        let sender = json!({"key": naming::sender_key(&f.key, &f.reservation, &bot), "name": "Foyer", "role": "bot"});
        assert_eq!(
            f.data(&notice),
            Some((
                LogKind::Notice,
                json!({"event_id": "$n", "sender": sender, "body": "🔴 Live now", "ts": 1_800_000_000_000_i64})
            ))
        );
        // Another member's bot notice is a message of theirs.
        let theirs = message("$n2", json!({"msgtype": "m.notice", "body": "beep"}));
        assert_eq!(f.data(&theirs).unwrap().0, LogKind::Message);
        let emote = message("$em", json!({"msgtype": "m.emote", "body": "waves"}));
        assert_eq!(f.data(&emote).unwrap().1["body"], "* Alice waves");
    }

    #[test]
    fn images_files_state_and_reactions_make_no_entry() {
        let f = Fixture::new();
        for content in [
            json!({"msgtype": "m.image", "body": "cat.png", "url": "mxc://example.org/abc"}),
            json!({"msgtype": "m.file", "body": "a.pdf", "url": "mxc://example.org/abc"}),
            json!({"msgtype": "org.example.custom", "body": "x"}),
        ] {
            assert_eq!(f.data(&message("$i", content)), None);
        }
        let reaction = event(json!({"event_id": "$re", "type": "m.reaction",
            "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$m", "key": "👍"}}}));
        let topic =
            event(json!({"event_id": "$t", "type": "m.room.topic", "state_key": "", "content": {"topic": "x"}}));
        assert_eq!(f.data(&reaction), None);
        assert_eq!(f.data(&topic), None);
    }

    #[test]
    fn html_stays_text_and_long_bodies_are_cut() {
        let f = Fixture::new();
        let content = json!({"msgtype": "m.text", "body": "<script>alert(1)</script>",
            "format": "org.matrix.custom.html", "formatted_body": "<img src=x onerror=alert(1)>"});
        assert_eq!(f.data(&message("$h", content)).unwrap().1["body"], "<script>alert(1)</script>");
        let long = "é".repeat(MAX_BODY_CHARS + 10);
        let body = f.data(&message("$l", json!({"msgtype": "m.text", "body": long}))).unwrap().1["body"].clone();
        assert_eq!(body.as_str().unwrap().chars().count(), MAX_BODY_CHARS + 1);
    }
}
