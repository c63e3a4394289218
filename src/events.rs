//! Events pushed by the homeserver, as Foyer reads them.

use std::{borrow::Cow, collections::BTreeMap};

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId,
    events::{
        TimelineEventType,
        room::{
            member::{MembershipState, RoomMemberEventContent},
            message::RoomMessageEventContent,
        },
    },
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};

/// The room and state event types of the Matrix spec (client-server API) that a
/// homeserver can push to an appservice: the label values of
/// `foyer_homeserver_events_total` besides `other`.
const SPEC_EVENT_TYPES: &[&str] = &[
    // State events.
    "m.room.create",
    "m.room.member",
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.aliases",
    "m.room.pinned_events",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.tombstone",
    "m.room.third_party_invite",
    "m.space.child",
    "m.space.parent",
    "m.policy.rule.user",
    "m.policy.rule.room",
    "m.policy.rule.server",
    // Room (message) events.
    "m.room.message",
    "m.room.encrypted",
    "m.room.redaction",
    "m.reaction",
    "m.sticker",
    "m.poll.start",
    "m.poll.response",
    "m.poll.end",
    "m.call.invite",
    "m.call.candidates",
    "m.call.answer",
    "m.call.select_answer",
    "m.call.negotiate",
    "m.call.reject",
    "m.call.hangup",
    "m.call.sdp_stream_metadata_changed",
    "m.key.verification.ready",
    "m.key.verification.start",
    "m.key.verification.accept",
    "m.key.verification.key",
    "m.key.verification.mac",
    "m.key.verification.cancel",
    "m.key.verification.done",
];

/// A homeserver event as it came, loosely typed: a malformed event must never make the
/// homeserver's transaction fail. What the admin inbox keeps, serialized in the event's
/// own shape; read into an [`InboundEvent`] to be acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HomeserverEvent {
    pub event_id: String,
    pub room_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    #[serde(default)]
    pub content: Value,
}

impl HomeserverEvent {
    /// Reads one event of a transaction from its own JSON text; `None` (after a log line)
    /// for an event that is not an object with an id, a room and a type.
    ///
    /// A member can post content nested deeper than serde_json reads into a `Value`
    /// (128 levels; Synapse accepts about 124 inside `content`). Such content is read
    /// shallowly: its top-level fields that can be read are kept, the rest dropped, so a
    /// membership or a command beside a hostile field is still seen.
    pub fn from_raw(raw: &RawValue) -> Option<Self> {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            event_id: Option<Cow<'a, str>>,
            #[serde(borrow)]
            room_id: Option<Cow<'a, str>>,
            #[serde(rename = "type", borrow)]
            kind: Option<Cow<'a, str>>,
            #[serde(borrow)]
            sender: Option<Cow<'a, str>>,
            #[serde(borrow)]
            state_key: Option<Cow<'a, str>>,
            #[serde(borrow)]
            content: Option<&'a RawValue>,
        }
        let envelope: Envelope<'_> = match serde_json::from_str(raw.get()) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "skipped a homeserver event that cannot be read");
                return None;
            }
        };
        let (Some(event_id), Some(room_id), Some(kind)) = (envelope.event_id, envelope.room_id, envelope.kind) else {
            tracing::warn!("skipped a homeserver event without an event_id, room_id or type");
            return None;
        };
        Some(Self {
            event_id: event_id.into_owned(),
            room_id: room_id.into_owned(),
            kind: kind.into_owned(),
            sender: envelope.sender.map(Cow::into_owned).unwrap_or_default(),
            state_key: envelope.state_key.map(Cow::into_owned),
            content: envelope.content.map(content).unwrap_or(Value::Null),
        })
    }

    /// Reads an event from a JSON value (tests and tools).
    pub fn from_json(value: Value) -> Option<Self> {
        let raw = serde_json::value::to_raw_value(&value).ok()?;
        Self::from_raw(&raw)
    }

    /// A bounded label for metrics: the spec's event types as they are, any other as
    /// `other`. A fixed list, not a prefix: each label value is a time series kept for
    /// the life of the process, and anyone in a room can send `m.x1`, `m.x2`, …
    pub fn type_label(&self) -> &'static str {
        type_label(&self.kind)
    }
}

fn type_label(kind: &str) -> &'static str {
    SPEC_EVENT_TYPES.iter().find(|t| **t == kind).copied().unwrap_or("other")
}

/// A homeserver event as Foyer acts on it: the types it acts on read into ruma's types,
/// their ids checked; any other type left as it came.
#[derive(Debug, Clone)]
pub enum InboundEvent {
    /// `m.room.member`.
    Member(MemberEvent),
    /// `m.room.message`.
    Message(MessageEvent),
    /// Any other type: counted and logged, never acted on.
    Other(HomeserverEvent),
}

/// An `m.room.member` event.
#[derive(Debug, Clone)]
pub struct MemberEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    /// Whose membership it is (the state key).
    pub user_id: OwnedUserId,
    pub content: RoomMemberEventContent,
}

/// An `m.room.message` event.
#[derive(Debug, Clone)]
pub struct MessageEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub content: RoomMessageEventContent,
}

impl InboundEvent {
    /// Reads one event of a transaction from its own JSON text ([`HomeserverEvent::from_raw`],
    /// then [`InboundEvent::read`]); `None`, after a log line, for an event skipped.
    pub fn from_raw(raw: &RawValue) -> Option<Self> {
        Self::read(HomeserverEvent::from_raw(raw)?)
    }

    /// Reads an event from a JSON value (tests and tools).
    pub fn from_json(value: Value) -> Option<Self> {
        Self::read(HomeserverEvent::from_json(value)?)
    }

    /// Reads an event of a type Foyer acts on into ruma's types; `None`, after a log line
    /// with its event id, when its ids or its content do not read as that type's, just as
    /// an event that cannot be read at all is skipped.
    ///
    /// A member content with a field of the wrong type beside a well-formed membership
    /// keeps what Foyer reads of it (membership, reason, `is_direct`), as content too deep
    /// keeps its readable fields: the door must see every join of a member, however they
    /// dress it.
    pub fn read(event: HomeserverEvent) -> Option<Self> {
        let read = match TimelineEventType::from(event.kind.as_str()) {
            TimelineEventType::RoomMember => Self::member(&event).map(Self::Member),
            TimelineEventType::RoomMessage => Self::message(&event).map(Self::Message),
            _ => return Some(Self::Other(event)),
        };
        read.map_err(|e| {
            tracing::warn!(event_id = %event.event_id, kind = %event.kind, error = %e, "skipped a homeserver event that cannot be read as its type");
        })
        .ok()
    }

    fn member(event: &HomeserverEvent) -> Result<MemberEvent, Unreadable> {
        let user_id = event.state_key.as_deref().ok_or(Unreadable::NoStateKey)?;
        let content = match RoomMemberEventContent::deserialize(&event.content) {
            Ok(content) => content,
            Err(e) => {
                let membership = event.content.get("membership").ok_or(Unreadable::Content(e))?;
                let mut content = RoomMemberEventContent::new(MembershipState::deserialize(membership)?);
                content.reason = event.content.get("reason").and_then(Value::as_str).map(str::to_owned);
                content.is_direct = event.content.get("is_direct").and_then(Value::as_bool);
                tracing::debug!(event_id = %event.event_id, "read only the membership of a member event with a malformed field");
                content
            }
        };
        Ok(MemberEvent {
            event_id: OwnedEventId::try_from(event.event_id.as_str())?,
            room_id: OwnedRoomId::try_from(event.room_id.as_str())?,
            sender: OwnedUserId::try_from(event.sender.as_str())?,
            user_id: OwnedUserId::try_from(user_id)?,
            content,
        })
    }

    fn message(event: &HomeserverEvent) -> Result<MessageEvent, Unreadable> {
        Ok(MessageEvent {
            event_id: OwnedEventId::try_from(event.event_id.as_str())?,
            room_id: OwnedRoomId::try_from(event.room_id.as_str())?,
            sender: OwnedUserId::try_from(event.sender.as_str())?,
            content: RoomMessageEventContent::deserialize(&event.content)?,
        })
    }

    pub fn event_id(&self) -> &str {
        match self {
            Self::Member(member) => member.event_id.as_str(),
            Self::Message(message) => message.event_id.as_str(),
            Self::Other(event) => &event.event_id,
        }
    }

    /// The metric label of the event's type ([`HomeserverEvent::type_label`]).
    pub fn type_label(&self) -> &'static str {
        match self {
            Self::Member(_) => type_label("m.room.member"),
            Self::Message(_) => type_label("m.room.message"),
            Self::Other(event) => event.type_label(),
        }
    }

    /// The event as the admin inbox keeps it: in its own shape, with the content as
    /// read (fields Foyer does not know are not kept).
    pub fn stored(&self) -> HomeserverEvent {
        let to_value = |content: Result<Value, serde_json::Error>| content.unwrap_or(Value::Null);
        match self {
            Self::Member(member) => HomeserverEvent {
                event_id: member.event_id.to_string(),
                room_id: member.room_id.to_string(),
                kind: TimelineEventType::RoomMember.to_string(),
                sender: member.sender.to_string(),
                state_key: Some(member.user_id.to_string()),
                content: to_value(serde_json::to_value(&member.content)),
            },
            Self::Message(message) => HomeserverEvent {
                event_id: message.event_id.to_string(),
                room_id: message.room_id.to_string(),
                kind: TimelineEventType::RoomMessage.to_string(),
                sender: message.sender.to_string(),
                state_key: None,
                content: to_value(serde_json::to_value(&message.content)),
            },
            Self::Other(event) => event.clone(),
        }
    }

    /// One debug line per event; the event itself is otherwise only read for membership.
    pub fn log(&self) {
        let (event_id, room_id, kind, sender, membership) = match self {
            Self::Member(m) => (
                m.event_id.as_str(),
                m.room_id.as_str(),
                "m.room.member",
                m.sender.as_str(),
                m.content.membership.as_str(),
            ),
            Self::Message(m) => (m.event_id.as_str(), m.room_id.as_str(), "m.room.message", m.sender.as_str(), ""),
            Self::Other(e) => (e.event_id.as_str(), e.room_id.as_str(), e.kind.as_str(), e.sender.as_str(), ""),
        };
        tracing::debug!(
            event_id = %event_id,
            room_id = %room_id,
            kind = %kind,
            sender = %sender,
            membership,
            "homeserver event"
        );
    }
}

/// Why an event of a type Foyer acts on is skipped.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("a member event without a state key")]
    NoStateKey,
    #[error("an id that is not one: {0}")]
    Id(#[from] ruma::IdParseError),
    #[error("content that is not the type's: {0}")]
    Content(#[from] serde_json::Error),
}

/// How deep a content's top-level field may nest to be kept. serde_json reads 128 levels,
/// and ruma's types read content again from its text, a level or two deeper than the
/// `Value` it came in: a field near the limit would make a well-formed membership or
/// command unreadable as its type. Far beyond anything Foyer reads.
const KEPT_DEPTH: usize = 100;

/// An event's content as a `Value`; content too deep to read whole, or too deep to be read
/// again as its type ([`KEPT_DEPTH`]), keeps the top-level fields that can be read and are
/// not too deep (skipping a value never recurses, so the map always reads).
fn content(raw: &RawValue) -> Value {
    if let Ok(value) = serde_json::from_str::<Value>(raw.get())
        && depth(&value) <= KEPT_DEPTH
    {
        return value;
    }
    let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
        return Value::Null;
    };
    let kept: serde_json::Map<String, Value> = fields
        .into_iter()
        .filter_map(|(key, value)| Some((key, serde_json::from_str(value.get()).ok()?)))
        .filter(|(_, value)| depth(value) < KEPT_DEPTH)
        .collect();
    Value::Object(kept)
}

/// How many arrays and objects deep `value` nests (a `Value` is at most 128 deep, so the
/// recursion is bounded).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn of_type(kind: &str) -> HomeserverEvent {
        HomeserverEvent::from_json(json!({"event_id": "$e", "room_id": "!r:example.org", "type": kind})).unwrap()
    }

    #[test]
    fn metric_labels_are_the_spec_types_or_other() {
        for kind in SPEC_EVENT_TYPES {
            assert_eq!(of_type(kind).type_label(), *kind);
        }
        assert_eq!(of_type("m.room.message").type_label(), "m.room.message");
        // Made-up `m.` types would each be a new series for the life of the process.
        for kind in ["m.x1", "m.x2", "m.room.messagex", "m.", "M.ROOM.MESSAGE", "org.example.custom", ""] {
            assert_eq!(of_type(kind).type_label(), "other", "{kind}");
        }
        let labels: std::collections::BTreeSet<_> =
            (0..10_000).map(|i| of_type(&format!("m.x{i}")).type_label()).collect();
        assert_eq!(labels.len(), 1, "{labels:?}");
    }

    /// `{"a":{"a":…{"a":1}…}}`, `depth` objects deep.
    fn nested(depth: usize) -> String {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    }

    #[test]
    fn content_too_deep_for_a_value_keeps_its_readable_fields() {
        let text = format!(
            r#"{{"event_id":"$m","room_id":"!r:x","type":"m.room.member","state_key":"@a:x","sender":"@a:x",
               "content":{{"membership":"join","displayname":"A","deep":{}}}}}"#,
            nested(200)
        );
        let raw: Box<RawValue> = serde_json::from_str(&text).unwrap();
        let event = HomeserverEvent::from_raw(&raw).expect("the event reads");
        assert!(event.content.get("deep").is_none(), "the part too deep to read is dropped");
        let Some(InboundEvent::Member(member)) = InboundEvent::from_raw(&raw) else { panic!("a member event") };
        assert_eq!(member.content.membership, MembershipState::Join);
        assert_eq!(member.content.displayname.as_deref(), Some("A"));
    }

    #[test]
    fn a_membership_or_a_command_beside_a_hostile_field_of_any_depth_is_read() {
        for depth in 1..=200 {
            let member = format!(
                r#"{{"event_id":"$m","room_id":"!r:x","type":"m.room.member","state_key":"@a:x","sender":"@a:x",
                   "content":{{"membership":"leave","deep":{}}}}}"#,
                nested(depth)
            );
            let raw: Box<RawValue> = serde_json::from_str(&member).unwrap();
            let read = InboundEvent::from_raw(&raw);
            let Some(InboundEvent::Member(member)) = read else { panic!("depth {depth}: {read:?}") };
            assert_eq!(member.content.membership, MembershipState::Leave, "depth {depth}");
            let message = format!(
                r#"{{"event_id":"$c","room_id":"!r:x","type":"m.room.message","sender":"@a:x",
                   "content":{{"msgtype":"m.text","body":"!foyer help","deep":{}}}}}"#,
                nested(depth)
            );
            let raw: Box<RawValue> = serde_json::from_str(&message).unwrap();
            let read = InboundEvent::from_raw(&raw);
            let Some(InboundEvent::Message(message)) = read else { panic!("depth {depth}: {read:?}") };
            assert_eq!(message.content.body(), "!foyer help", "depth {depth}");
        }
    }

    #[test]
    fn events_without_id_room_or_type_are_skipped() {
        for text in [r#"{"room_id":"!r:x","type":"m.room.message"}"#, r#"[1,2]"#, r#"{"event_id":5}"#] {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            assert!(HomeserverEvent::from_raw(&raw).is_none(), "{text}");
        }
    }
}
