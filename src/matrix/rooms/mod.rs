//! The Matrix calls on rooms, one function per lifecycle step (create or adopt, invite,
//! kick, state, power levels, spaces, the stream link, archive) and the messages the bot
//! posts. Each is idempotent: repeating it after a crash changes nothing that the first
//! run already did. What the notices say is worded in `words::room`.
//!
//! One file a job: `create.rs` (the room and its alias), `members.rs` (invite, kick,
//! join), `messages.rs` (posting once), `details.rs` (name and topic), `power.rs` (the
//! levels), `stream.rs` (widget and pinned link), `spaces.rs` (the channel's space),
//! `archive.rs`, `web_users.rs` (web fans' users: register, name, join, send, redact),
//! `direct.rs` (the bot's direct chats with hosts and moderators), `doors.rs` (holders
//! joined by the admin join, and the pace of Foyer's joins).
//! This file holds what they share: the step deadline, raw JSON, Foyer's
//! marker, the initial state rooms and spaces share, and
//! the state writes and reads.

mod archive;
mod create;
mod details;
mod direct;
mod doors;
mod members;
mod messages;
mod power;
mod spaces;
mod stream;
#[cfg(test)]
mod tests;
mod web_users;

pub use archive::archive;
pub use create::{ABANDONED_AFTER, CREATOR_GONE_GRACE, OpenError, Patience, UnmarkedRooms, create_or_adopt};
pub use details::{set_access, set_name, set_topic};
pub use direct::{membership, open_direct_chat};
pub use doors::{JoinPacer, admit_doorkeeper, doorkeeper, join_holder};
pub use members::{ban, invite, invite_once, join, kick, redact, unban};
pub use messages::notice;
pub use power::{ADMIN, MEMBER, MODERATOR, TIMED_OUT, set_hosts, set_speech};
pub use spaces::{ensure_announcements, ensure_space, link_space, unlink_space};
pub use stream::set_stream_link;
pub use web_users::{
    clear_web_name, join_web_user, redact_as_web_user, register_web_user, send_as_web_user, set_web_name,
};

use std::time::Duration;

use ruma::{
    OwnedRoomId,
    api::client::state::get_state_event_for_key,
    events::{
        EmptyStateKey, InitialStateEvent, StateEventContent, StateEventType,
        room::{
            guest_access::{GuestAccess, RoomGuestAccessEventContent},
            history_visibility::{HistoryVisibility, RoomHistoryVisibilityEventContent},
        },
    },
    serde::Raw,
};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::{MatrixClient, MatrixError};

/// Deadline for one step's retries before the reservation is retried later as a whole.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

fn deadline() -> Instant {
    Instant::now() + STEP_DEADLINE
}

fn raw<T>(value: Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(&value).expect("a JSON value always serializes"))
}

/// The event type of Foyer's marker, the reservation's facts as room state.
const MARKER: &str = "org.foyer.reservation";

/// State content ruma has no type for (Element's widget and its layout, Foyer's marker,
/// a space child's removal) is JSON, each made in one place in this file; this carries
/// its event type to [`MatrixClient::put_state`].
#[derive(Serialize)]
#[serde(transparent)]
struct CustomState {
    #[serde(skip)]
    event_type: &'static str,
    content: Value,
}

impl StateEventContent for CustomState {
    type StateKey = String;

    fn event_type(&self) -> StateEventType {
        self.event_type.into()
    }
}

/// Puts one state event with an empty state key.
async fn put<C: StateEventContent<StateKey = EmptyStateKey>>(
    client: &MatrixClient, room_id: &OwnedRoomId, content: &C,
) -> Result<(), MatrixError> {
    client.put_state(room_id, &EmptyStateKey, content, deadline()).await
}

/// Puts custom state (see [`CustomState`]).
async fn put_custom(
    client: &MatrixClient, room_id: &OwnedRoomId, event_type: &'static str, state_key: &str, content: Value,
) -> Result<(), MatrixError> {
    client.put_state(room_id, &state_key.to_owned(), &CustomState { event_type, content }, deadline()).await
}

/// The room's history is visible to members from before they joined; no guests. Rooms
/// and spaces are created with both.
fn history_and_guests() -> [Raw<ruma::events::AnyInitialStateEvent>; 2] {
    [
        InitialStateEvent::with_empty_state_key(RoomHistoryVisibilityEventContent::new(HistoryVisibility::Shared))
            .to_raw_any(),
        InitialStateEvent::with_empty_state_key(RoomGuestAccessEventContent::new(GuestAccess::Forbidden)).to_raw_any(),
    ]
}

/// Power levels as the room holds them, read and written whole (see `set_hosts`).
const POWER_LEVELS: &str = "m.room.power_levels";

/// The content of the room's state event `kind` (with an empty state key), as JSON.
async fn state(client: &MatrixClient, room_id: &OwnedRoomId, kind: &str) -> Result<Value, MatrixError> {
    let req = get_state_event_for_key::v3::Request::new(room_id.clone(), StateEventType::from(kind), String::new());
    let resp = client.send(req, None, deadline()).await?;
    serde_json::from_str(resp.event_or_content.get())
        .map_err(|e| MatrixError::BadResponse { endpoint: format!("{kind} state"), message: e.to_string() })
}
