//! A room's transcript (docs/transcripts.md): the messages members saw, read from the room's
//! history at archive and kept in the store a page at a time. [`Reader`] turns the
//! room's events, oldest first, into what the store writes; it holds the members'
//! display names, never the messages.
//!
//! A transcript keeps at most [`TRANSCRIPT_MAX_LINES`] messages and
//! [`TRANSCRIPT_MAX_BYTES`] of names and bodies: a room is a place strangers write in,
//! and every byte kept is stored for `rooms.transcript_retention` and served on every
//! GET. A chat that reaches either cap is kept up to there, and ends with a line of
//! Foyer's saying so ([`TranscriptLine::is_cut`]); nothing after it is kept.

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

/// The most messages a transcript keeps (documented in docs/transcripts.md).
pub const TRANSCRIPT_MAX_LINES: u64 = 100_000;
/// The most bytes of display names and bodies a transcript keeps, edits' bodies
/// counted too (so the stored transcript is never larger, whatever is edited): 32 MiB.
pub const TRANSCRIPT_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// The event id of the line that ends a transcript cut at a cap. Never a homeserver's:
/// an event id of room versions 1 and 2 holds a `:server`, and one of later versions is
/// 43 characters of unpadded base64 (and the line is Foyer's own, which no remote server
/// can send).
const CUT_EVENT_ID: &str = "$foyer-transcript-cut";

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

impl TranscriptLine {
    /// The line that ends a transcript cut at a cap, at `seq` (after the last message
    /// kept), sent by Foyer (`bot`) when the first message left out was.
    pub fn cut(seq: u64, bot: OwnedUserId, sent_at: DateTime<Utc>) -> Self {
        let body = format!(
            "The transcript stops here: the chat reached the cap of {} messages or {} MiB of \
             names and text that a transcript keeps. Later messages are not kept.",
            thousands(TRANSCRIPT_MAX_LINES),
            TRANSCRIPT_MAX_BYTES / (1024 * 1024),
        );
        let event_id = OwnedEventId::try_from(CUT_EVENT_ID).expect("a valid event id");
        Self { seq, event_id, sender: bot, display_name: None, sent_at, body, notice: true }
    }

    /// Whether this is the line that ends a transcript cut at a cap (not a message).
    pub fn is_cut(&self) -> bool {
        self.notice && self.event_id.as_str() == CUT_EVENT_ID
    }
}

/// `100000` as `100,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
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
    /// Bytes of names and bodies given so far, edits included.
    bytes: u64,
    max_lines: u64,
    max_bytes: u64,
    /// A cap was reached: the line saying so was given, nothing more will be.
    cut: bool,
}

impl Reader {
    pub fn new(bot: OwnedUserId) -> Self {
        Self::with_caps(bot, TRANSCRIPT_MAX_LINES, TRANSCRIPT_MAX_BYTES)
    }

    fn with_caps(bot: OwnedUserId, max_lines: u64, max_bytes: u64) -> Self {
        Self { bot, names: HashMap::new(), next_seq: 0, bytes: 0, max_lines, max_bytes, cut: false }
    }

    /// Messages made so far (the line of a cut is none).
    pub fn lines(&self) -> u64 {
        self.next_seq
    }

    /// Whether a cap was reached: the rest of the room adds nothing, so its reading can
    /// stop.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// Whether `bytes` more (and a line more, for a message) fit under the caps. When
    /// they do not, the transcript is cut, and what the event adds is the line saying so.
    fn fits(&mut self, bytes: usize, line: bool, sent_at: DateTime<Utc>) -> Result<(), TranscriptEntry> {
        let bytes = bytes as u64;
        if self.next_seq + u64::from(line) <= self.max_lines && self.bytes + bytes <= self.max_bytes {
            self.bytes += bytes;
            return Ok(());
        }
        self.cut = true;
        Err(TranscriptEntry::Line(TranscriptLine::cut(self.next_seq, self.bot.clone(), sent_at)))
    }

    /// What `event` adds, if anything: a message is a line, an edit changes one; a
    /// redacted message, other events and events that do not parse add none. The message
    /// or edit that would pass a cap adds the line that ends the transcript instead, and
    /// nothing adds anything after it.
    pub fn read(&mut self, event: &Raw<AnyTimelineEvent>) -> Option<TranscriptEntry> {
        if self.cut {
            return None;
        }
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
                let sent_at = DateTime::from_timestamp_millis(i64::from(message.origin_server_ts.0))?;
                if let Some(Relation::Replacement(edit)) = content.relates_to {
                    let body = body(&edit.new_content.msgtype);
                    if let Err(cut) = self.fits(body.len(), false, sent_at) {
                        return Some(cut);
                    }
                    return Some(TranscriptEntry::Edit { event_id: edit.event_id, sender: message.sender, body });
                }
                let (body, display_name) = (body(&content.msgtype), self.names.get(&message.sender).cloned());
                if let Err(cut) = self.fits(body.len() + display_name.as_ref().map_or(0, String::len), true, sent_at) {
                    return Some(cut);
                }
                let line = TranscriptLine {
                    seq: self.next_seq,
                    display_name,
                    notice: message.sender == self.bot,
                    event_id: message.event_id,
                    sender: message.sender,
                    sent_at,
                    body,
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

    fn line_of(entry: Option<TranscriptEntry>) -> TranscriptLine {
        match entry {
            Some(TranscriptEntry::Line(line)) => line,
            other => panic!("not a line: {other:?}"),
        }
    }

    #[test]
    fn a_transcript_is_cut_at_its_cap_of_lines_with_a_line_saying_so() {
        let bot = OwnedUserId::try_from("@foyer:example.org").unwrap();
        let mut reader = Reader::with_caps(bot.clone(), 3, u64::MAX);
        for n in 0..3 {
            assert!(!line_of(reader.read(&text(&format!("${n}"), "@a:example.org", "hi"))).is_cut());
        }
        let cut = line_of(reader.read(&text("$3", "@a:example.org", "one too many")));
        assert!(cut.is_cut() && cut.notice && cut.sender == bot, "{cut:?}");
        assert_eq!((cut.seq, cut.event_id.as_str()), (3, CUT_EVENT_ID));
        assert!(cut.body.starts_with("The transcript stops here"), "{}", cut.body);
        assert!(reader.is_cut());
        // Nothing after the cut: no message, no edit, no second cut line.
        assert_eq!(reader.read(&text("$4", "@a:example.org", "later")), None);
        let edit = raw(event(
            "$5",
            "@a:example.org",
            "m.room.message",
            json!({"msgtype": "m.text", "body": "* x", "m.new_content": {"msgtype": "m.text", "body": "x"},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": "$0"}}),
        ));
        assert_eq!(reader.read(&edit), None);
        assert_eq!(reader.lines(), 3, "the cut's line is no message");
    }

    #[test]
    fn a_transcript_is_cut_at_its_cap_of_bytes_names_and_edits_counted() {
        let bot = OwnedUserId::try_from("@foyer:example.org").unwrap();
        let mut reader = Reader::with_caps(bot, u64::MAX, 20);
        reader.read(&join("@a:example.org", Some("Ann")));
        // 3 (name) + 5 (body): 8 bytes.
        assert!(!line_of(reader.read(&text("$1", "@a:example.org", "hello"))).is_cut());
        // An edit counts its body: 8 + 10 = 18.
        let edit = |id: &str, body: &str| {
            raw(event(
                id,
                "@a:example.org",
                "m.room.message",
                json!({"msgtype": "m.text", "body": format!("* {body}"),
                       "m.new_content": {"msgtype": "m.text", "body": body},
                       "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"}}),
            ))
        };
        assert!(matches!(reader.read(&edit("$2", "hello all!")), Some(TranscriptEntry::Edit { .. })));
        // 18 + 3 + 0 = 21 > 20: an empty message with a name no longer fits.
        let cut = line_of(reader.read(&text("$3", "@a:example.org", "")));
        assert!(cut.is_cut() && cut.seq == 1, "{cut:?}");
        assert_eq!(reader.read(&text("$4", "@a:example.org", "")), None);

        // An edit that would pass the cap cuts it too.
        let mut reader = Reader::with_caps(OwnedUserId::try_from("@foyer:example.org").unwrap(), u64::MAX, 10);
        line_of(reader.read(&text("$1", "@a:example.org", "hello")));
        assert!(line_of(reader.read(&edit("$2", "hello all!"))).is_cut());
        assert_eq!(reader.lines(), 1);
    }

    #[test]
    fn the_caps_are_what_the_transcripts_page_says() {
        assert_eq!((TRANSCRIPT_MAX_LINES, TRANSCRIPT_MAX_BYTES), (100_000, 33_554_432));
        let cut = TranscriptLine::cut(7, "@foyer:example.org".try_into().unwrap(), Utc::now());
        assert!(cut.body.contains("100,000 messages or 32 MiB"), "{}", cut.body);
        let page = include_str!("../../docs/transcripts.md");
        assert!(page.contains("100,000 messages") && page.contains("32 MiB"), "docs/transcripts.md names the caps");
    }
}
