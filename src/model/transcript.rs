//! A room's transcript (contract §9): the messages members saw, read from the room's
//! history at archive and kept in the store a page at a time. [`Reader`] turns the
//! room's events, oldest first, into what the store writes; it holds the members'
//! display names, never the messages.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId,
    events::{
        AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, MessageLikeEvent, StateEvent,
        room::{
            member::MembershipState,
            message::{MessageType, Relation},
        },
    },
    serde::Raw,
};

/// One message of a transcript, with its latest edit applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptLine {
    /// Its place in the room's order, from 0.
    pub seq: u64,
    pub event_id: OwnedEventId,
    pub sender: OwnedUserId,
    /// The sender's display name when they sent it; none when they had none.
    pub display_name: Option<String>,
    pub sent_at: DateTime<Utc>,
    /// The plain-text body (`body`, never `formatted_body`: members' HTML is not kept).
    pub body: String,
    /// Sent by Foyer's bot (its notices).
    pub notice: bool,
}

/// What one event adds to a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscriptEntry {
    Line(TranscriptLine),
    /// An edit: the line `event_id` sent by `sender` now reads `body`. An edit by anyone
    /// else than the original's sender is no edit (the spec's rule), which the store
    /// checks by `sender`.
    Edit {
        event_id: OwnedEventId,
        sender: OwnedUserId,
        body: String,
    },
}

/// A transcript made: where from, how many messages, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub room_id: OwnedRoomId,
    pub messages: u64,
    pub made_at: DateTime<Utc>,
}

/// What `room.archived` says of the room's transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchivedTranscript {
    /// None was wanted (`rooms.transcript`, `chat.transcript`).
    NotWanted,
    /// Made: where the platform reads it, and how many messages it holds.
    Made { url: String, messages: u64 },
    /// Wanted, but the room was archived without it, and why.
    Missing { error: String },
}

/// Reads a room's events oldest first. Display names are tracked from the members'
/// joins as they come, so each line carries the name its sender had at the time.
pub struct Reader {
    bot: OwnedUserId,
    names: HashMap<OwnedUserId, String>,
    next_seq: u64,
}

impl Reader {
    pub fn new(bot: OwnedUserId) -> Self {
        Self { bot, names: HashMap::new(), next_seq: 0 }
    }

    /// Lines made so far.
    pub fn lines(&self) -> u64 {
        self.next_seq
    }

    /// What `event` adds, if anything: a message is a line, an edit changes one; a
    /// redacted message, other events and events that do not parse add none.
    pub fn read(&mut self, event: &Raw<AnyTimelineEvent>) -> Option<TranscriptEntry> {
        match event.deserialize().ok()? {
            AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(member))) => {
                // A join (also a profile change, which is a join again) sets the name;
                // a join without one clears it.
                if member.content.membership == MembershipState::Join {
                    let user = OwnedUserId::try_from(member.state_key.as_str()).ok()?;
                    match member.content.displayname.filter(|n| !n.trim().is_empty()) {
                        Some(name) => self.names.insert(user, name),
                        None => self.names.remove(&user),
                    };
                }
                None
            }
            AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(MessageLikeEvent::Original(message))) => {
                let content = message.content;
                if let Some(Relation::Replacement(edit)) = content.relates_to {
                    return Some(TranscriptEntry::Edit {
                        event_id: edit.event_id,
                        sender: message.sender,
                        body: body(&edit.new_content.msgtype),
                    });
                }
                let sent_at = DateTime::from_timestamp_millis(i64::from(message.origin_server_ts.0))?;
                let line = TranscriptLine {
                    seq: self.next_seq,
                    display_name: self.names.get(&message.sender).cloned(),
                    notice: message.sender == self.bot,
                    event_id: message.event_id,
                    sender: message.sender,
                    sent_at,
                    body: body(&content.msgtype),
                };
                self.next_seq += 1;
                Some(TranscriptEntry::Line(line))
            }
            _ => None,
        }
    }
}

/// A message's text: text, notices and emotes by their body, any other kind (an image, a
/// file) by its body too, which names it.
fn body(msgtype: &MessageType) -> String {
    msgtype.body().to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn raw(event: Value) -> Raw<AnyTimelineEvent> {
        Raw::from_json(serde_json::value::to_raw_value(&event).unwrap())
    }

    fn event(id: &str, sender: &str, kind: &str, content: Value) -> Value {
        json!({"event_id": id, "sender": sender, "type": kind, "content": content,
               "origin_server_ts": 1_800_000_000_000u64, "room_id": "!r:example.org"})
    }

    fn join(user: &str, name: Option<&str>) -> Raw<AnyTimelineEvent> {
        let mut e = event("$join", user, "m.room.member", json!({"membership": "join", "displayname": name}));
        e["state_key"] = json!(user);
        raw(e)
    }

    fn text(id: &str, sender: &str, body: &str) -> Raw<AnyTimelineEvent> {
        raw(event(id, sender, "m.room.message", json!({"msgtype": "m.text", "body": body})))
    }

    #[test]
    fn messages_carry_the_name_of_their_time_and_edits_and_redactions_are_told_apart() {
        let (alice, bot) = ("@alice:example.org", "@foyer:example.org");
        let mut reader = Reader::new(OwnedUserId::try_from(bot).unwrap());
        let line = |entry: Option<TranscriptEntry>| match entry {
            Some(TranscriptEntry::Line(line)) => line,
            other => panic!("not a line: {other:?}"),
        };
        assert_eq!(reader.read(&join(alice, Some("Alice"))), None);
        let first = line(reader.read(&text("$1", alice, "hello <b>all</b>")));
        assert_eq!((first.seq, first.display_name.as_deref(), first.notice), (0, Some("Alice"), false));
        assert_eq!(first.body, "hello <b>all</b>");
        assert_eq!(first.sent_at.timestamp_millis(), 1_800_000_000_000);
        reader.read(&join(alice, Some("Alice B.")));
        assert_eq!(line(reader.read(&text("$2", alice, "renamed"))).display_name.as_deref(), Some("Alice B."));
        reader.read(&join(alice, None));
        assert_eq!(line(reader.read(&text("$3", alice, "no name"))).display_name, None);
        let notice = raw(event("$4", bot, "m.room.message", json!({"msgtype": "m.notice", "body": "open"})));
        assert!(line(reader.read(&notice)).notice, "the bot's notice is marked");
        let emote = raw(event("$5", alice, "m.room.message", json!({"msgtype": "m.emote", "body": "waves"})));
        assert_eq!(line(reader.read(&emote)).body, "waves");
        let edit = raw(event(
            "$6",
            alice,
            "m.room.message",
            json!({
                "msgtype": "m.text", "body": "* hello everyone",
                "m.new_content": {"msgtype": "m.text", "body": "hello everyone"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"}
            }),
        ));
        assert_eq!(
            reader.read(&edit),
            Some(TranscriptEntry::Edit {
                event_id: "$1".try_into().unwrap(),
                sender: alice.try_into().unwrap(),
                body: "hello everyone".into()
            })
        );
        let mut redacted = event("$7", alice, "m.room.message", json!({}));
        redacted["unsigned"] = json!({"redacted_because": event("$8", bot, "m.room.redaction", json!({}))});
        assert_eq!(reader.read(&raw(redacted)), None, "a redacted message is left out");
        assert_eq!(reader.read(&raw(event("$9", alice, "m.reaction", json!({})))), None);
        assert_eq!(reader.lines(), 5);
    }
}
