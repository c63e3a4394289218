//! Events pushed by the homeserver, as Foyer reads them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

    /// A bounded label for metrics: spec event types as they are, custom ones as `other`.
    pub fn type_label(&self) -> String {
        if self.kind.starts_with("m.") && self.kind.len() <= 64 { self.kind.clone() } else { "other".into() }
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
