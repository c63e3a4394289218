//! Events pushed by the homeserver, as Foyer reads them.

use std::{borrow::Cow, collections::BTreeMap};

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

/// The parts of a homeserver event Foyer reads. Events are kept loosely typed here:
/// a malformed event must never make the homeserver's transaction fail. Serialized in
/// the event's own shape (for the admin inbox).
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
        SPEC_EVENT_TYPES.iter().find(|t| **t == self.kind).copied().unwrap_or("other")
    }

    /// `content.membership` of an `m.room.member` event.
    pub fn membership(&self) -> Option<&str> {
        (self.kind == "m.room.member").then(|| self.content.get("membership").and_then(Value::as_str)).flatten()
    }
}

impl HomeserverEvent {
    /// One debug line per event; the event itself is otherwise only read for membership.
    pub fn log(&self) {
        tracing::debug!(
            event_id = %self.event_id,
            room_id = %self.room_id,
            kind = %self.kind,
            sender = %self.sender,
            membership = self.membership().unwrap_or(""),
            "homeserver event"
        );
    }
}

/// An event's content as a `Value`; content too deep to read whole keeps the top-level
/// fields that can be read (skipping a value never recurses, so the map always reads).
fn content(raw: &RawValue) -> Value {
    if let Ok(value) = serde_json::from_str(raw.get()) {
        return value;
    }
    let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
        return Value::Null;
    };
    let kept: serde_json::Map<String, Value> =
        fields.into_iter().filter_map(|(key, value)| Some((key, serde_json::from_str(value.get()).ok()?))).collect();
    Value::Object(kept)
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
        assert_eq!(event.membership(), Some("join"));
        assert_eq!(event.content["displayname"], "A");
        assert!(event.content.get("deep").is_none(), "the part too deep to read is dropped");
    }

    #[test]
    fn events_without_id_room_or_type_are_skipped() {
        for text in [r#"{"room_id":"!r:x","type":"m.room.message"}"#, r#"[1,2]"#, r#"{"event_id":5}"#] {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            assert!(HomeserverEvent::from_raw(&raw).is_none(), "{text}");
        }
    }
}
