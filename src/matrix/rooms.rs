//! The Matrix calls on rooms, one function per lifecycle step (create or adopt, invite,
//! kick, state, power levels, spaces, the stream link, archive) and the messages the bot
//! posts. Each is idempotent: repeating it after a crash changes nothing that the first
//! run already did. What the notices say is decided in `lifecycle::notices`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedTransactionId, OwnedUserId, UserId,
    api::client::{
        alias::{delete_alias, get_alias},
        membership::{get_member_events, invite_user, join_room_by_id, kick_user, leave_room},
        message::{get_message_events, send_message_event},
        room::create_room::{self, RoomPowerLevelsContentOverride},
        state::get_state_event_for_key,
    },
    events::{
        EmptyStateKey, InitialStateEvent, MessageLikeEventType, StateEventContent, StateEventType, TimelineEventType,
        room::{
            guest_access::{GuestAccess, RoomGuestAccessEventContent},
            history_visibility::{HistoryVisibility, RoomHistoryVisibilityEventContent},
            join_rules::{JoinRule, RoomJoinRulesEventContent},
            message::RoomMessageEventContent,
            name::RoomNameEventContent,
            pinned_events::RoomPinnedEventsEventContent,
            topic::{RoomTopicEventContent, TopicContentBlock},
        },
        space::{child::SpaceChildEventContent, parent::SpaceParentEventContent},
    },
    room::RoomType,
    serde::Raw,
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{MatrixClient, MatrixError, synapse_admin::SynapseAdmin};
use crate::{
    config::{self, ArchiveMode, Config},
    html::escape,
    model::{ReservationRecord, naming},
    schedule::{self, Schedule},
};

/// Deadline for one step's retries before the reservation is retried later as a whole.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

fn deadline() -> Instant {
    Instant::now() + STEP_DEADLINE
}

fn raw<T>(value: Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(&value).expect("a JSON value always serializes"))
}

// The power levels Foyer gives and requires, named once.

/// Everyone's level, and what posting takes while the room is open.
pub const MEMBER: i32 = 0;
/// The hosts' level, and what inviting, kicking, banning, redacting and changing the
/// room's state take.
pub const MODERATOR: i32 = 50;
/// The bot's level (implicit for the creator in room versions that privilege creators),
/// what the room's sensitive state takes, and what everything takes once archived.
pub const ADMIN: i32 = 100;

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
    client: &MatrixClient,
    room_id: &OwnedRoomId,
    content: &C,
) -> Result<(), MatrixError> {
    client.put_state(room_id, &EmptyStateKey, content, deadline()).await
}

/// Puts custom state (see [`CustomState`]).
async fn put_custom(
    client: &MatrixClient,
    room_id: &OwnedRoomId,
    event_type: &'static str,
    state_key: &str,
    content: Value,
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

/// The `org.foyer.reservation` state: the reservation's facts for clients and widgets.
fn reservation_state(record: &ReservationRecord, times: &Schedule) -> Value {
    let r = &record.reservation;
    json!({
        "reservation_id": r.id.as_str(),
        "title": r.title.as_str(),
        "starts_at": r.starts_at.to_rfc3339(),
        "ends_at": r.ends_at.to_rfc3339(),
        "opens_at": times.opens_at.to_rfc3339(),
        "archives_at": times.archives_at.to_rfc3339(),
        "stream_url": r.stream_url.as_ref().map(|u| u.as_str()),
    })
}

/// The room's power levels at creation: the bot [`ADMIN`] (unlisted where the room
/// version makes the creator top already, as it must be), hosts [`MODERATOR`], everyone
/// else [`MEMBER`]. Every level is set, none left to the homeserver's defaults (which its
/// config may change).
fn power_levels(
    config: &Config,
    record: &ReservationRecord,
    creators_privileged: bool,
) -> Raw<RoomPowerLevelsContentOverride> {
    let mut levels = RoomPowerLevelsContentOverride::new();
    levels.users = record.reservation.hosts.iter().map(|host| (host.clone(), MODERATOR.into())).collect();
    if !creators_privileged {
        levels.users.insert(config.bot_user_id(), ADMIN.into());
    }
    levels.users_default = Some(MEMBER.into());
    levels.events_default = Some(MEMBER.into());
    for level in [&mut levels.state_default, &mut levels.invite, &mut levels.kick, &mut levels.ban, &mut levels.redact]
    {
        *level = Some(MODERATOR.into());
    }
    levels.events = [
        TimelineEventType::RoomPowerLevels,
        TimelineEventType::RoomHistoryVisibility,
        TimelineEventType::RoomTombstone,
        TimelineEventType::RoomServerAcl,
        TimelineEventType::RoomEncryption,
        MARKER.into(),
    ]
    .into_iter()
    .map(|kind| (kind, ADMIN.into()))
    .collect();
    let mut levels = serde_json::to_value(levels).expect("power levels always serialize");
    // ruma leaves an empty users map out; sent empty, it replaces the users the
    // homeserver's defaults (or its `default_power_level_content_override`) would list.
    levels.as_object_mut().expect("power levels are an object").entry("users").or_insert_with(|| json!({}));
    raw(levels)
}

/// How long a room holding a reservation's alias may lack Foyer's marker before Foyer
/// takes it for abandoned, when a `createRoom` for it may still be running. Synapse sets
/// the alias before the room's first events, so a createRoom still running looks just
/// like one a homeserver restart stopped half-way. Where Foyer can tell (see
/// `Lifecycle::patience`), it waits far less.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);
/// The wait when the instance that began the room is gone: only a request the
/// homeserver was still finishing for it can complete the room, within seconds.
pub const CREATOR_GONE_GRACE: Duration = Duration::from_secs(5);

/// Rooms seen holding an alias without Foyer's marker, with when this process first
/// saw each and how long it decided then to wait. Forgetting them (a restart) only makes
/// Foyer wait longer.
#[derive(Default)]
pub struct UnmarkedRooms(std::sync::Mutex<std::collections::HashMap<OwnedRoomId, (Instant, Duration)>>);

impl UnmarkedRooms {
    /// How long `room` has been seen unmarked, and the patience: decided at first sight,
    /// shortened (never lengthened) by what later looks learn, such as an outage.
    fn seen_for(&self, room: &OwnedRoomId, patience: Duration) -> (Duration, Duration) {
        let mut seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = seen.entry(room.clone()).or_insert_with(|| (Instant::now(), patience));
        entry.1 = entry.1.min(patience);
        (entry.0.elapsed(), entry.1)
    }

    fn forget(&self, room: &OwnedRoomId) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(room);
    }
}

/// How long this attempt waits for a room found holding the alias without Foyer's
/// marker, and when the attempt began.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub wait: Duration,
    pub began_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error(
        "{room_id} holds {alias} but has no Foyer marker yet; waiting up to {wait_s} s more for its creation to finish"
    )]
    Unfinished { alias: OwnedRoomAliasId, room_id: OwnedRoomId, wait_s: u64 },
}

/// Creates the room with its fixed alias, or adopts the room that already holds the
/// alias (Foyer created it and crashed before recording its id). A room holding the
/// alias without Foyer's marker is given up after `patience`, or at once if the
/// homeserver was seen down since this attempt `began_at`: whatever was creating that room
/// died with it (only this attempt could have been, as the lease is ours).
pub async fn create_or_adopt(
    client: &MatrixClient,
    config: &Config,
    record: &ReservationRecord,
    times: &Schedule,
    creators_privileged: bool,
    unmarked: &UnmarkedRooms,
    patience: Patience,
) -> Result<OwnedRoomId, OpenError> {
    let alias = config.room_alias(&record.reservation.id);
    let mut req = create_room::v3::Request::new();
    req.room_alias_name = Some(alias.alias().to_owned());
    req.name = Some(record.reservation.title.as_str().to_owned());
    req.topic = Some(schedule::topic(record, times));
    req.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    req.power_level_content_override = Some(power_levels(config, record, creators_privileged));
    let join_rule = match config.rooms.join_rule {
        config::JoinRule::Invite => JoinRule::Invite,
        config::JoinRule::Knock => JoinRule::Knock,
    };
    let [history, guests] = history_and_guests();
    req.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomJoinRulesEventContent::new(join_rule)).to_raw_any(),
        history,
        guests,
        raw(json!({"type": MARKER, "state_key": "", "content": reservation_state(record, times)})),
    ];
    match client.send(req.clone(), None, deadline()).await {
        Ok(resp) => return Ok(resp.room_id),
        Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => {}
        Err(e) => return Err(e.into()),
    }
    let holder = client.send(get_alias::v3::Request::new(alias.clone()), None, deadline()).await?.room_id;
    // Foyer's marker is among the room's first state. A room without it (or that the
    // bot is not in) is still being created, or its creation stopped half-way, as when
    // the homeserver is stopped during createRoom. Such a room never works (invites
    // fail), so once it has stayed unmarked past its patience the alias moves on.
    match state(client, &holder, MARKER).await {
        Ok(_) => {
            unmarked.forget(&holder);
            tracing::info!(reservation_id = %record.reservation.id, room_id = %holder, %alias, "adopted the room that holds the alias");
            Ok(holder)
        }
        Err(MatrixError::Api { status: 403 | 404, .. }) => {
            let patience = if client.seen_down_since(patience.began_at) { Duration::ZERO } else { patience.wait };
            let (seen_for, patience) = unmarked.seen_for(&holder, patience);
            if seen_for < patience {
                let wait_s = (patience - seen_for).as_secs().max(1);
                return Err(OpenError::Unfinished { alias, room_id: holder, wait_s });
            }
            tracing::warn!(reservation_id = %record.reservation.id, room_id = %holder, %alias, "the room holding the alias was left half-created; creating a new one");
            match client.send(delete_alias::v3::Request::new(alias), None, deadline()).await {
                Ok(_) => {}
                Err(e) if e.errcode() == Some("M_NOT_FOUND") => {}
                Err(e) => return Err(e.into()),
            }
            unmarked.forget(&holder);
            Ok(client.send(req, None, deadline()).await?.room_id)
        }
        Err(e) => Err(e.into()),
    }
}

/// Deadline for one invite's retries. Shorter than a step's: an invite is one membership
/// change among many, and its holder is tried again later on their own.
const INVITE_DEADLINE: Duration = Duration::from_secs(10);

fn invite_request(room_id: &OwnedRoomId, user: &OwnedUserId) -> invite_user::v3::Request {
    invite_user::v3::Request::new(
        room_id.clone(),
        invite_user::v3::InvitationRecipient::UserId(invite_user::v3::InviteUserId::new(user.clone())),
    )
}

/// Someone already in the room is invited: what we wanted.
fn already_in(result: Result<invite_user::v3::Response, MatrixError>) -> Result<(), MatrixError> {
    match result {
        Ok(_) => Ok(()),
        Err(MatrixError::Api { status: 403, message, .. }) if message.contains("already in the room") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Invites a user, retrying the homeserver's passing failures; someone already in the
/// room is done.
pub async fn invite(client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId) -> Result<(), MatrixError> {
    already_in(client.send(invite_request(room_id, user), None, Instant::now() + INVITE_DEADLINE).await)
}

/// Invites a user of another server with one request, never retried here. Synapse sends
/// the invite to that server inside the room's membership lock (and inside its own
/// limit of membership changes per appservice), for up to a minute per try when that
/// server hangs; asking again at once would only keep the room's other invites waiting
/// longer. The caller keeps the failure against the holder and their server.
pub async fn invite_once(client: &MatrixClient, room_id: &OwnedRoomId, user: &OwnedUserId) -> Result<(), MatrixError> {
    already_in(client.send_once(invite_request(room_id, user), None).await)
}

/// Posts an `m.notice` (plain text and HTML) as `bot`, once per transaction id (derived
/// from the notice's purpose): see [`message`].
pub async fn notice(
    client: &MatrixClient,
    bot: &UserId,
    room_id: &OwnedRoomId,
    txn: &str,
    text: &str,
    html: &str,
) -> Result<(), MatrixError> {
    message(client, bot, room_id, txn, RoomMessageEventContent::notice_html(text, html)).await.map(|_| ())
}

/// The content key that carries a message's transaction id, so that it can be found.
const TXN_KEY: &str = "org.foyer.txn";

/// Posts a message once per transaction id. The homeserver deduplicates a repeated
/// transaction id only while it remembers it (Synapse: in memory, for about 30 minutes),
/// so a crash between posting and recording followed by a homeserver restart would post
/// it twice; the bot's latest messages are looked through first for one carrying it.
async fn message(
    client: &MatrixClient,
    bot: &UserId,
    room_id: &OwnedRoomId,
    txn: &str,
    content: RoomMessageEventContent,
) -> Result<ruma::OwnedEventId, MatrixError> {
    match already_sent(client, bot, room_id, txn).await {
        Ok(Some(sent)) => {
            tracing::info!(room_id = %room_id, event_id = %sent, "message already posted before a restart; not posted again");
            return Ok(sent);
        }
        Ok(None) => {}
        Err(e) if e.is_transient() => return Err(e),
        // Reading the room is refused (a room the bot cannot read back): post as before.
        Err(e) => tracing::warn!(room_id = %room_id, error = %e, "cannot look for an earlier copy of a message"),
    }
    // The transaction id rides in the content under a key of Foyer's, which ruma's type
    // has no field for.
    let mut content = serde_json::to_value(content).expect("a message always serializes");
    content[TXN_KEY] = json!(txn);
    let txn_id: OwnedTransactionId = txn.into();
    let req = send_message_event::v3::Request::new_raw(
        room_id.clone(),
        txn_id,
        MessageLikeEventType::RoomMessage,
        raw(content),
    );
    client.send(req, None, deadline()).await.map(|r| r.event_id)
}

/// The bot's message carrying transaction id `txn` among its latest in the room.
async fn already_sent(
    client: &MatrixClient,
    bot: &UserId,
    room_id: &OwnedRoomId,
    txn: &str,
) -> Result<Option<ruma::OwnedEventId>, MatrixError> {
    let mut req = get_message_events::v3::Request::new(room_id.clone(), ruma::api::Direction::Backward);
    req.limit = ruma::UInt::from(20u32);
    req.filter.senders = Some(vec![bot.to_owned()]);
    req.filter.types = Some(vec!["m.room.message".to_owned()]);
    let resp = client.send(req, None, deadline()).await?;
    Ok(resp.chunk.iter().find_map(|event| {
        let event = event.deserialize_as::<Value>().ok()?;
        if event["content"][TXN_KEY].as_str() != Some(txn) {
            return None;
        }
        ruma::OwnedEventId::try_from(event["event_id"].as_str()?).ok()
    }))
}

pub async fn set_name(client: &MatrixClient, room_id: &OwnedRoomId, name: &str) -> Result<(), MatrixError> {
    put(client, room_id, &RoomNameEventContent::new(name.to_owned())).await
}

pub async fn set_topic(client: &MatrixClient, room_id: &OwnedRoomId, topic: &str) -> Result<(), MatrixError> {
    let mut content = RoomTopicEventContent::new(topic.to_owned());
    // The plain `topic` only, as Foyer has always sent it: ruma's constructor would add
    // the same text again as an `m.topic` block.
    content.topic_block = TopicContentBlock::default();
    put(client, room_id, &content).await
}

/// Power levels as the room holds them, read and written whole (see `set_hosts`).
const POWER_LEVELS: &str = "m.room.power_levels";

/// Element's room widgets, keyed by widget id, and their layout: no ruma types.
const WIDGETS: &str = "im.vector.modular.widgets";
const WIDGET_LAYOUT: &str = "io.element.widgets.layout";

/// The stream beside the chat: a room widget for the player, pinned to the top in
/// Element, and a pinned message with the link for clients without widgets. With no
/// `stream_url`, all three are cleared.
pub async fn set_stream_link(
    client: &MatrixClient,
    config: &Config,
    record: &ReservationRecord,
    room_id: &OwnedRoomId,
) -> Result<(), MatrixError> {
    let r = &record.reservation;
    let Some(url) = r.stream_url.as_ref().map(|u| u.as_str()) else {
        put_custom(client, room_id, WIDGETS, naming::WIDGET_ID, json!({})).await?;
        put_custom(client, room_id, WIDGET_LAYOUT, "", json!({"widgets": {}})).await?;
        return put(client, room_id, &RoomPinnedEventsEventContent::new(vec![])).await;
    };
    let widget = json!({
        "type": "m.custom",
        "url": url,
        "name": "Live stream",
        "id": naming::WIDGET_ID,
        "creatorUserId": config.bot_user_id(),
        "waitForIframeLoad": true,
        "data": {"title": r.title.as_str()},
    });
    put_custom(client, room_id, WIDGETS, naming::WIDGET_ID, widget).await?;
    // The player fills the top of the room in Element, in percent of the room's view.
    let layout = json!({"widgets": {naming::WIDGET_ID: {"container": "top", "index": 0, "width": 100, "height": 50}}});
    put_custom(client, room_id, WIDGET_LAYOUT, "", layout).await?;
    let text = format!("📺 Watch the stream: {url}");
    let html = format!("📺 Watch the stream: <a href=\"{0}\">{0}</a>", escape(url));
    let txn = naming::stream_link_txn(&r.id, url);
    let link = RoomMessageEventContent::text_html(text, html);
    let event_id = message(client, &config.bot_user_id(), room_id, &txn, link).await?;
    put(client, room_id, &RoomPinnedEventsEventContent::new(vec![event_id])).await
}

/// The content of the room's state event `kind` (with an empty state key), as JSON.
async fn state(client: &MatrixClient, room_id: &OwnedRoomId, kind: &str) -> Result<Value, MatrixError> {
    let req = get_state_event_for_key::v3::Request::new(room_id.clone(), StateEventType::from(kind), String::new());
    let resp = client.send(req, None, deadline()).await?;
    serde_json::from_str(resp.event_or_content.get())
        .map_err(|e| MatrixError::BadResponse { endpoint: format!("{kind} state"), message: e.to_string() })
}

/// Makes the room's moderators the reservation's hosts: new hosts up to [`MODERATOR`],
/// removed ones back to the default. Read-modify-write, as a state PUT replaces the whole
/// event.
///
/// On the raw JSON, not ruma's `RoomPowerLevelsEventContent`: reading into that type
/// drops keys it does not know (Synapse's `historical`, future ones) and writing it back
/// leaves out every level equal to the spec's default, so the event would change in
/// ways this step never meant.
pub async fn set_hosts(
    client: &MatrixClient,
    room_id: &OwnedRoomId,
    before: &std::collections::BTreeSet<OwnedUserId>,
    hosts: &std::collections::BTreeSet<OwnedUserId>,
) -> Result<(), MatrixError> {
    let mut levels = state(client, room_id, POWER_LEVELS).await?;
    let users = levels["users"].as_object_mut().ok_or_else(|| MatrixError::BadResponse {
        endpoint: "m.room.power_levels state".into(),
        message: "no users map".into(),
    })?;
    for gone in before.difference(hosts) {
        if users.get(gone.as_str()).and_then(Value::as_i64) == Some(MODERATOR.into()) {
            users.remove(gone.as_str());
        }
    }
    for host in hosts {
        users.insert(host.to_string(), json!(MODERATOR));
    }
    put_custom(client, room_id, POWER_LEVELS, "", levels).await
}

/// Kicks a member (or refuses a knock) with a reason; someone already gone is done.
pub async fn kick(
    client: &MatrixClient,
    room_id: &OwnedRoomId,
    user: &OwnedUserId,
    reason: &str,
) -> Result<(), MatrixError> {
    let mut req = kick_user::v3::Request::new(room_id.clone(), user.clone());
    req.reason = Some(reason.to_owned());
    match client.send(req, None, deadline()).await {
        Ok(_) => Ok(()),
        Err(MatrixError::Api { status: 403, message, .. }) if message.contains("not in the room") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the channel's space (or adopts the one holding its alias).
pub async fn ensure_space(
    client: &MatrixClient,
    config: &Config,
    channel: &crate::model::Channel,
) -> Result<OwnedRoomId, MatrixError> {
    let localpart = config.space_alias_localpart(channel.id.as_str());
    let mut req = create_room::v3::Request::new();
    req.room_alias_name = Some(localpart);
    req.name = Some(channel.name.as_str().to_owned());
    req.topic = Some(format!("Live chats of {}", channel.name.as_str()));
    req.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    let mut creation = create_room::v3::CreationContent::new();
    creation.room_type = Some(RoomType::Space);
    req.creation_content = Some(Raw::new(&creation).expect("creation content always serializes"));
    req.initial_state = history_and_guests().into();
    match client.send(req, None, deadline()).await {
        Ok(resp) => Ok(resp.room_id),
        Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => {
            let alias = config
                .space_alias(channel.id.as_str())
                .map_err(|e| MatrixError::Request { endpoint: "space alias".into(), message: e.to_string() })?;
            Ok(client.send(get_alias::v3::Request::new(alias), None, deadline()).await?.room_id)
        }
        Err(e) => Err(e),
    }
}

/// Lists the room in the space: `m.space.child` in the space, `m.space.parent` in the room.
pub async fn link_space(
    client: &MatrixClient,
    config: &Config,
    space: &OwnedRoomId,
    room_id: &OwnedRoomId,
) -> Result<(), MatrixError> {
    let via: Vec<OwnedServerName> = vec![config.homeserver.server_name.clone()];
    let child = SpaceChildEventContent::new(via.clone());
    client.put_state(space, room_id, &child, deadline()).await?;
    let mut parent = SpaceParentEventContent::new(via);
    parent.canonical = true;
    client.put_state(room_id, space, &parent, deadline()).await
}

/// Takes the room out of the space (an `m.space.child` without `via`).
pub async fn unlink_space(
    client: &MatrixClient,
    space: &OwnedRoomId,
    room_id: &OwnedRoomId,
) -> Result<(), MatrixError> {
    // Empty content, as the spec removes a child: ruma's type always writes a `via` key
    // (an empty list), and readers check for the key.
    put_custom(client, space, "m.space.child", room_id.as_str(), json!({})).await
}

/// Archives the room per `rooms.archive_mode`.
pub async fn archive(
    client: &MatrixClient,
    admin: Option<&SynapseAdmin>,
    config: &Config,
    record: &ReservationRecord,
    room_id: &OwnedRoomId,
) -> Result<(), MatrixError> {
    if config.rooms.archive_mode == ArchiveMode::Delete {
        let admin = admin.ok_or_else(|| MatrixError::Request {
            endpoint: "room delete".into(),
            message: "synapse_admin.token is not configured".into(),
        })?;
        return admin.delete_room(room_id).await;
    }
    // Read-modify-write: a state PUT replaces the whole event, so keep what is there
    // and raise every threshold below ADMIN to ADMIN; only the bot may post or change
    // state. On the raw JSON, for the reasons given at `set_hosts`.
    let mut levels = state(client, room_id, POWER_LEVELS).await?;
    for key in ["events_default", "state_default", "invite"] {
        levels[key] = json!(ADMIN);
    }
    if let Some(events) = levels.get_mut("events").and_then(Value::as_object_mut) {
        for level in events.values_mut() {
            if level.as_i64().is_none_or(|l| l < ADMIN.into()) {
                *level = json!(ADMIN);
            }
        }
    }
    put_custom(client, room_id, POWER_LEVELS, "", levels).await?;
    put(client, room_id, &RoomJoinRulesEventContent::new(JoinRule::Invite)).await?;
    match client.send(delete_alias::v3::Request::new(config.room_alias(&record.reservation.id)), None, deadline()).await
    {
        Ok(_) => {}
        Err(e) if e.errcode() == Some("M_NOT_FOUND") => {}
        Err(e) => return Err(e),
    }
    if config.rooms.archive_mode == ArchiveMode::Kick {
        let bot = config.bot_user_id();
        let members = client.send(get_member_events::v3::Request::new(room_id.clone()), None, deadline()).await?;
        for event in members.chunk {
            let Ok(event) = event.deserialize_as::<Value>() else {
                continue;
            };
            let member = event["state_key"].as_str().unwrap_or_default();
            let membership = event["content"]["membership"].as_str().unwrap_or_default();
            if member == bot.as_str() || !matches!(membership, "join" | "invite" | "knock") {
                continue;
            }
            let Ok(user) = OwnedUserId::try_from(member) else {
                continue;
            };
            let mut req = kick_user::v3::Request::new(room_id.clone(), user);
            req.reason = Some("This chat has closed.".into());
            client.send(req, None, deadline()).await?;
        }
        match client.send(leave_room::v3::Request::new(room_id.clone()), None, deadline()).await {
            Ok(_) => {}
            Err(MatrixError::Api { status: 403 | 404, .. }) => {} // already gone
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The bot joins a room it was invited to (by an admin, for commands).
pub async fn join(client: &MatrixClient, room_id: &OwnedRoomId) -> Result<(), MatrixError> {
    client.send(join_room_by_id::v3::Request::new(room_id.clone()), None, deadline()).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{Json, Router, body::Bytes, http::Method, http::Uri};
    use ruma::api::{MatrixVersion, SupportedVersions};

    use super::*;
    use crate::{config::Placeholders, model::StreamUrl, secret::Secret, test_support};

    /// One request the stand-in saw: method, percent-decoded path, JSON body (`null` for none).
    type Call = (String, String, Value);

    fn decoded(path: &str) -> String {
        url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }

    /// A homeserver stand-in that records every request and answers what the room
    /// steps need: a created room, state writes, no earlier messages, and power levels
    /// like Synapse's (with a key ruma does not know, `historical`, a tombstone above the
    /// admin level, and a former host): its own numbers are written out, Foyer's named.
    async fn stand_in() -> (MatrixClient, Arc<Mutex<Vec<Call>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
            let path = decoded(uri.path());
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock().unwrap().push((method.to_string(), path.clone(), body));
            let answer = match (method.as_str(), path.as_str()) {
                ("POST", p) if p.ends_with("/createRoom") => json!({"room_id": "!room:example.org"}),
                ("GET", p) if p.ends_with("/state/m.room.power_levels/") => json!({
                    "users": {"@old:example.org": MODERATOR, "@admin:example.org": 100},
                    "users_default": 0, "events_default": 0, "state_default": 50, "invite": 50,
                    "kick": 50, "ban": 50, "redact": 50, "historical": 100,
                    "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.tombstone": 150},
                }),
                ("GET", p) if p.ends_with("/messages") => json!({"chunk": [], "start": "s"}),
                ("PUT", p) if p.contains("/send/") => json!({"event_id": "$link"}),
                ("PUT", _) => json!({"event_id": "$state"}),
                _ => json!({}),
            };
            async move { Json(answer) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let versions = SupportedVersions { versions: [MatrixVersion::V1_11].into(), features: Default::default() };
        (MatrixClient::new(reqwest::Client::new(), &url, Secret::new("t".repeat(40)), versions), calls)
    }

    fn config() -> Config {
        let yaml = include_str!("../../config.example.yaml");
        let (dir, env) = (std::path::Path::new("."), |_: &str| None);
        crate::config::from_yaml_str(yaml, "example", dir, &env, Placeholders::Allow).expect("valid")
    }

    fn user(id: &str) -> OwnedUserId {
        OwnedUserId::try_from(id).unwrap()
    }

    /// What each step puts on the wire, compared with the JSON Foyer sent before its
    /// content was typed: the room's power levels, join rule, widget and pins must not
    /// change, and a read-modify-write keeps what it did not set.
    #[tokio::test]
    async fn each_step_sends_the_content_it_always_sent() {
        let (client, calls) = stand_in().await;
        let config = config();
        let room = OwnedRoomId::try_from("!room:example.org").unwrap();
        let space = OwnedRoomId::try_from("!space:example.org").unwrap();
        let host = user("@host:example.org");
        let mut record = test_support::record(Default::default(), vec![host.clone()]);
        record.reservation.stream_url = Some(StreamUrl::parse("https://stream.example.org/watch?a=1&b=<2>").unwrap());
        let times = schedule::schedule(&record, &config.rooms);
        let patience = Patience { wait: ABANDONED_AFTER, began_at: Utc::now() };
        let unmarked = UnmarkedRooms::default();
        let bot = config.bot_user_id();
        let take = || std::mem::take(&mut *calls.lock().unwrap());

        // Created in a room version without privileged creators: the bot is listed.
        create_or_adopt(&client, &config, &record, &times, false, &unmarked, patience).await.unwrap();
        let created = take();
        assert_eq!(created.len(), 1, "{created:?}");
        let (method, path, body) = &created[0];
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/_matrix/client/v3/createRoom"));
        let levels = json!({
            "users": {"@host:example.org": MODERATOR, "@foyer:example.org": ADMIN},
            "users_default": MEMBER, "events_default": MEMBER, "state_default": MODERATOR,
            "invite": MODERATOR, "kick": MODERATOR, "ban": MODERATOR, "redact": MODERATOR,
            "events": {
                "m.room.power_levels": ADMIN, "m.room.history_visibility": ADMIN, "m.room.tombstone": ADMIN,
                "m.room.server_acl": ADMIN, "m.room.encryption": ADMIN, "org.foyer.reservation": ADMIN,
            },
        });
        let marker = json!({
            "reservation_id": "jazz", "title": "Jazz",
            "starts_at": "2026-11-27T19:00:00+00:00", "ends_at": "2026-11-27T21:00:00+00:00",
            "opens_at": "2026-11-27T18:30:00+00:00", "archives_at": "2026-11-27T22:00:00+00:00",
            "stream_url": "https://stream.example.org/watch?a=1&b=%3C2%3E",
        });
        assert_eq!(
            body,
            &json!({
                "room_alias_name": "live_jazz",
                "name": "Jazz",
                "topic": "Starts Fri 27 Nov 2026, 19:00 UTC · Watch: https://stream.example.org/watch?a=1&b=%3C2%3E",
                "preset": "private_chat",
                "power_level_content_override": levels,
                "initial_state": [
                    {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
                    {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}},
                    {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
                    {"type": "org.foyer.reservation", "state_key": "", "content": marker},
                ],
            })
        );
        // Where creators are privileged and there are no hosts, an empty users map still
        // replaces whatever users the homeserver's defaults would list.
        record.reservation.hosts.clear();
        create_or_adopt(&client, &config, &record, &times, true, &unmarked, patience).await.unwrap();
        assert_eq!(take()[0].2["power_level_content_override"]["users"], json!({}));

        let channel = crate::model::Channel {
            id: crate::model::ExternalId::parse("blue").unwrap(),
            name: crate::model::Title::parse("Blue").unwrap(),
        };
        ensure_space(&client, &config, &channel).await.unwrap();
        assert_eq!(
            take()[0].2,
            json!({
                "room_alias_name": "live_+blue",
                "name": "Blue",
                "topic": "Live chats of Blue",
                "preset": "private_chat",
                "creation_content": {"type": "m.space"},
                "initial_state": [
                    {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}},
                    {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
                ],
            })
        );

        set_name(&client, &room, "New name").await.unwrap();
        set_topic(&client, &room, "New topic").await.unwrap();
        link_space(&client, &config, &space, &room).await.unwrap();
        unlink_space(&client, &space, &room).await.unwrap();
        let state = "/_matrix/client/v3/rooms";
        let put = |path: String, body: Value| ("PUT".to_owned(), path, body);
        assert_eq!(
            take(),
            vec![
                put(format!("{state}/!room:example.org/state/m.room.name/"), json!({"name": "New name"})),
                put(format!("{state}/!room:example.org/state/m.room.topic/"), json!({"topic": "New topic"})),
                put(
                    format!("{state}/!space:example.org/state/m.space.child/!room:example.org"),
                    json!({"via": ["example.org"]})
                ),
                put(
                    format!("{state}/!room:example.org/state/m.space.parent/!space:example.org"),
                    json!({"via": ["example.org"], "canonical": true})
                ),
                put(format!("{state}/!space:example.org/state/m.space.child/!room:example.org"), json!({})),
            ]
        );

        set_stream_link(&client, &config, &record, &room).await.unwrap();
        let url = "https://stream.example.org/watch?a=1&b=%3C2%3E";
        let txn = naming::stream_link_txn(&record.reservation.id, url);
        let calls_made = take();
        let sent: Vec<&Call> = calls_made.iter().filter(|(method, ..)| method == "PUT").collect();
        assert_eq!(
            sent,
            vec![
                &put(
                    format!("{state}/!room:example.org/state/im.vector.modular.widgets/foyer_stream"),
                    json!({
                        "type": "m.custom", "url": url, "name": "Live stream", "id": "foyer_stream",
                        "creatorUserId": "@foyer:example.org", "waitForIframeLoad": true, "data": {"title": "Jazz"},
                    })
                ),
                &put(
                    format!("{state}/!room:example.org/state/io.element.widgets.layout/"),
                    json!({"widgets": {"foyer_stream": {"container": "top", "index": 0, "width": 100, "height": 50}}})
                ),
                &put(
                    format!("{state}/!room:example.org/send/m.room.message/{txn}"),
                    json!({
                        "msgtype": "m.text", "body": format!("📺 Watch the stream: {url}"),
                        "format": "org.matrix.custom.html",
                        "formatted_body": "📺 Watch the stream: <a href=\"https://stream.example.org/watch?a=1&amp;b=%3C2%3E\">https://stream.example.org/watch?a=1&amp;b=%3C2%3E</a>",
                        "org.foyer.txn": txn,
                    })
                ),
                &put(format!("{state}/!room:example.org/state/m.room.pinned_events/"), json!({"pinned": ["$link"]})),
            ]
        );
        record.reservation.stream_url = None;
        set_stream_link(&client, &config, &record, &room).await.unwrap();
        assert_eq!(
            take(),
            vec![
                put(format!("{state}/!room:example.org/state/im.vector.modular.widgets/foyer_stream"), json!({})),
                put(format!("{state}/!room:example.org/state/io.element.widgets.layout/"), json!({"widgets": {}})),
                put(format!("{state}/!room:example.org/state/m.room.pinned_events/"), json!({"pinned": []})),
            ]
        );

        notice(&client, &bot, &room, "foyer-open-jazz", "Open & <b>", "Open &amp; &lt;b&gt;").await.unwrap();
        let posted = take().pop().unwrap();
        assert_eq!(
            posted,
            put(
                format!("{state}/!room:example.org/send/m.room.message/foyer-open-jazz"),
                json!({
                    "msgtype": "m.notice", "body": "Open & <b>", "format": "org.matrix.custom.html",
                    "formatted_body": "Open &amp; &lt;b&gt;", "org.foyer.txn": "foyer-open-jazz",
                })
            )
        );

        // Read-modify-write: `@old` (a host no more) drops to the default, `@admin` (not a
        // host's level) stays, and every key the room had, `historical` too, is kept.
        let before = [user("@old:example.org"), user("@admin:example.org")].into();
        set_hosts(&client, &room, &before, &[host.clone()].into()).await.unwrap();
        let written = take().pop().unwrap();
        assert_eq!(
            written,
            put(
                format!("{state}/!room:example.org/state/m.room.power_levels/"),
                json!({
                    "users": {"@admin:example.org": 100, "@host:example.org": MODERATOR},
                    "users_default": 0, "events_default": 0, "state_default": 50, "invite": 50,
                    "kick": 50, "ban": 50, "redact": 50, "historical": 100,
                    "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.tombstone": 150},
                })
            )
        );

        // The archive raises every threshold below 100 to 100, keeps the rest, closes the
        // door and frees the alias.
        archive(&client, None, &config, &record, &room).await.unwrap();
        assert_eq!(
            take(),
            vec![
                ("GET".to_owned(), format!("{state}/!room:example.org/state/m.room.power_levels/"), Value::Null),
                put(
                    format!("{state}/!room:example.org/state/m.room.power_levels/"),
                    json!({
                        "users": {"@old:example.org": MODERATOR, "@admin:example.org": 100},
                        "users_default": 0, "events_default": ADMIN, "state_default": ADMIN, "invite": ADMIN,
                        "kick": 50, "ban": 50, "redact": 50, "historical": 100,
                        "events": {"m.room.name": ADMIN, "m.room.power_levels": 100, "m.room.tombstone": 150},
                    })
                ),
                put(format!("{state}/!room:example.org/state/m.room.join_rules/"), json!({"join_rule": "invite"})),
                ("DELETE".to_owned(), "/_matrix/client/v3/directory/room/#live_jazz:example.org".to_owned(), json!({})),
            ]
        );
    }

    #[test]
    fn an_unmarked_rooms_patience_only_shrinks() {
        // Learning of an outage later shortens the wait; a later, longer guess never
        // lengthens it.
        let rooms = UnmarkedRooms::default();
        let room = OwnedRoomId::try_from("!half:example.org").unwrap();
        assert_eq!(rooms.seen_for(&room, ABANDONED_AFTER).1, ABANDONED_AFTER);
        assert_eq!(rooms.seen_for(&room, CREATOR_GONE_GRACE).1, CREATOR_GONE_GRACE);
        assert_eq!(rooms.seen_for(&room, Duration::ZERO).1, Duration::ZERO);
        assert_eq!(rooms.seen_for(&room, ABANDONED_AFTER).1, Duration::ZERO);
    }
}
