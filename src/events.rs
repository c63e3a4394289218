//! Events pushed by the homeserver, as Foyer reads them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    /// Reads an event from a transaction; events without an id, room or type are skipped.
    pub fn from_json(value: Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let event = Self {
            event_id: text("event_id")?,
            room_id: text("room_id")?,
            kind: text("type")?,
            sender: text("sender").unwrap_or_default(),
            state_key: text("state_key"),
            content: value.get("content").cloned().unwrap_or(Value::Null),
        };
        Some(event)
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
}
