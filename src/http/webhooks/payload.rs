//! Webhook bodies into domain types. Every error names the field path that breaks a
//! rule, like `data.tickets[3].user_id: is not a valid Matrix user ID`.

use chrono::{DateTime, TimeDelta, Timelike as _, Utc};
use ruma::{OwnedUserId, UserId};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::model::{
    Access, Archive, AutoJoin, Channel, ClaimKey, Description, DisplayName, Email, EmailClaim, ExternalId, Holder,
    MAX_SPAN_SECONDS, MAX_STEPS, Override, Recurrence, ReplayOffset, Reservation, ReservationId, Revision,
    RulesOverride, Series, SeriesId, SeriesUpsert, StreamKey, StreamUrl, Ticket, Title, WebhookEvent, parse_local,
    parse_reason, parse_tzid,
};

const MAX_BATCH: usize = 1000;
const MAX_HOSTS: usize = 100;
/// A stream signal's `at` may be this far ahead of Foyer's clock (skew), no further.
const MAX_SIGNAL_AHEAD_MINUTES: i64 = 5;
/// Dates further than this from now are a sender's bug (year 9999, year 1), not a plan.
const MAX_YEARS_FROM_NOW: i64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PayloadError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> PayloadError {
    PayloadError { path: path.into(), message: message.into() }
}

/// The rules of a payload that come from the config.
#[derive(Clone)]
pub struct Rules {
    /// `rooms.allow_http_stream_urls`: plain `http` stream URLs are accepted.
    pub allow_http_stream_urls: bool,
    /// The appservice's bot, which is never a host or a ticket holder.
    pub bot: Option<OwnedUserId>,
    /// What an email ticket's claim code is derived with; the store keeps its hash.
    pub claim_key: ClaimKey,
    /// `synapse_admin.token` is configured: `chat.auto_join: local` can be done.
    pub admin_join: bool,
    /// `series.horizon`: how far ahead a series is expanded.
    pub series_horizon: TimeDelta,
}

/// No bot known, https stream URLs only, and a claim key no deployment has.
impl Default for Rules {
    fn default() -> Self {
        Self {
            allow_http_stream_urls: false,
            bot: None,
            claim_key: ClaimKey::from_secret(b""),
            admin_join: false,
            series_horizon: horizon(crate::config::SeriesConfig::default().horizon),
        }
    }
}

impl Rules {
    pub fn from_config(config: &Config) -> Self {
        Self {
            allow_http_stream_urls: config.rooms.allow_http_stream_urls,
            bot: Some(config.bot_user_id()),
            claim_key: config.claim_key(),
            admin_join: config.synapse_admin.is_some(),
            series_horizon: horizon(config.series.horizon),
        }
    }

    /// Why `user` can be neither a host nor a ticket holder: it is one of the
    /// appservice's own users, which Foyer acts as and never invites. The registration
    /// has no user namespace (`registration.rs`), so that is the bot alone; a namespace
    /// added there is checked here too.
    fn appservice_user(&self, user: &UserId) -> Option<String> {
        (self.bot.as_deref() == Some(user)).then(|| format!("{user} is Foyer's own bot, never a host or ticket holder"))
    }

    /// A user ID that is not one of the appservice's users.
    fn outside_user(&self, value: &str) -> Result<OwnedUserId, String> {
        let user = user_id(value)?;
        match self.appservice_user(&user) {
            Some(why) => Err(why),
            None => Ok(user),
        }
    }
}

/// `series.horizon` as chrono reckons; the config bounds it to a year.
fn horizon(configured: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(configured).unwrap_or(TimeDelta::days(366))
}

/// A JSON object being read, with its path for messages.
struct Object<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Object<'a> {
    fn new(path: impl Into<String>, value: &'a Value) -> Result<Self, PayloadError> {
        let path = path.into();
        match value {
            Value::Object(map) => Ok(Self { path, map }),
            _ => Err(err(path, "must be a JSON object")),
        }
    }

    fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// A present, non-null value.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &str) -> Result<&'a Value, PayloadError> {
        self.get(key).ok_or_else(|| err(self.at(key), "is missing"))
    }

    fn string(&self, key: &str) -> Result<&'a str, PayloadError> {
        self.required(key)?.as_str().ok_or_else(|| err(self.at(key), "must be a string"))
    }

    fn opt_string(&self, key: &str) -> Result<Option<&'a str>, PayloadError> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| err(self.at(key), "must be a string"))).transpose()
    }

    fn parse<T>(&self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, PayloadError> {
        parse(self.string(key)?).map_err(|m| err(self.at(key), m))
    }

    fn opt_parse<T>(
        &self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, PayloadError> {
        self.opt_string(key)?.map(|s| parse(s).map_err(|m| err(self.at(key), m))).transpose()
    }

    fn reservation_id(&self) -> Result<ReservationId, PayloadError> {
        self.parse("reservation_id", ReservationId::parse)
    }

    /// An array of 1 to `max` items.
    fn array(&self, key: &str, max: usize) -> Result<&'a Vec<Value>, PayloadError> {
        let items = self.required(key)?.as_array().ok_or_else(|| err(self.at(key), "must be an array"))?;
        if items.is_empty() || items.len() > max {
            return Err(err(self.at(key), format!("must hold 1 to {max} items (it has {})", items.len())));
        }
        Ok(items)
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, PayloadError> {
        self.get(key).map(|v| v.as_bool().ok_or_else(|| err(self.at(key), "must be true or false"))).transpose()
    }

    /// An optional integer, signed, checked by `parse`.
    fn opt_int<T>(&self, key: &str, parse: impl FnOnce(i64) -> Result<T, String>) -> Result<Option<T>, PayloadError> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let n = value.as_i64().ok_or_else(|| err(self.at(key), "must be an integer"))?;
        parse(n).map(Some).map_err(|m| err(self.at(key), m))
    }

    fn unsigned(&self, key: &str, max: u64) -> Result<Option<u64>, PayloadError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            Some(_) => Err(err(self.at(key), format!("must be at most {max}"))),
            None => Err(err(self.at(key), "must be an unsigned integer")),
        }
    }
}

/// An RFC 3339 date-time with a zone, not a leap second, within
/// [`MAX_YEARS_FROM_NOW`] of `now`.
fn time(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 date-time with a zone, like 2026-11-27T19:00:00Z".to_owned())?;
    // chrono represents a leap second as a nanosecond count of one second or more.
    if t.nanosecond() >= 1_000_000_000 {
        return Err("must not be a leap second (:60)".into());
    }
    if (t - now).abs() > TimeDelta::days(365 * MAX_YEARS_FROM_NOW + 1) {
        return Err(format!("must be within {MAX_YEARS_FROM_NOW} years of now"));
    }
    Ok(t)
}

/// A JSON value that refuses duplicate object keys: with `{"revision": 1, "revision": 9}`
/// a sender and Foyer could read different values, so the body is refused instead.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let Strict(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

fn user_id(value: &str) -> Result<OwnedUserId, String> {
    UserId::parse(value).map_err(|e| format!("{value:?} is not a valid Matrix user ID ({e})"))
}

/// Parses a verified body under the default [`Rules`] (https stream URLs only, no bot
/// known). `now` fills the default of `stream.*`'s `at`.
pub fn parse(body: &[u8], now: DateTime<Utc>) -> Result<WebhookEvent, PayloadError> {
    parse_typed(body, now, &Rules::default()).map(|(_, event)| event)
}

/// Like [`parse`] under `rules`, with the event type as sent: `reservation.created` and
/// `reservation.updated` are one [`WebhookEvent::Upsert`], told apart only here.
pub fn parse_typed(
    body: &[u8], now: DateTime<Utc>, rules: &Rules,
) -> Result<(&'static str, WebhookEvent), PayloadError> {
    let Strict(value) = serde_json::from_slice(body).map_err(|e| err("body", format!("is not valid JSON ({e})")))?;
    let envelope = Object::new("body", &value)?;
    let kind = envelope.string("type").map_err(|e| err("type", e.message))?;
    envelope.get("timestamp").map(|_| ()).ok_or_else(|| err("timestamp", "is missing"))?;
    envelope.parse("timestamp", |v| time(v, now)).map_err(|e| err("timestamp", e.message))?;
    let data = Object::new("data", envelope.get("data").ok_or_else(|| err("data", "is missing"))?)?;
    let event = match kind {
        "reservation.created" | "reservation.updated" => {
            reservation(&data, now, rules).map(|r| WebhookEvent::Upsert(Box::new(r)))
        }
        "reservation.cancelled" => {
            Ok(WebhookEvent::Cancelled { id: data.reservation_id()?, reason: data.opt_parse("reason", parse_reason)? })
        }
        "ticket.granted" => {
            let id = data.reservation_id()?;
            let items = data.array("tickets", MAX_BATCH)?;
            let tickets = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let ticket = Object::new(format!("data.tickets[{i}]"), item)?;
                    let ticket_id = ticket.parse("ticket_id", ExternalId::parse)?;
                    // `user_id` wins over `email`; an email is checked even then, so a
                    // platform's mistake is told, but not kept.
                    let user = ticket.opt_parse("user_id", |v| rules.outside_user(v))?;
                    let email = ticket.opt_parse("email", Email::parse)?;
                    let display_name = ticket.opt_parse("display_name", DisplayName::parse)?;
                    let holder = match (user, email) {
                        (Some(user), _) => Holder::User(user),
                        (None, Some(email)) => Holder::Email {
                            claim: EmailClaim::new(&rules.claim_key, &id, &ticket_id, &email),
                            email,
                            display_name,
                        },
                        (None, None) => {
                            return Err(err(ticket.at("user_id"), "is missing (a ticket needs a user_id or an email)"));
                        }
                    };
                    Ok(Ticket { id: ticket_id, holder })
                })
                .collect::<Result<_, PayloadError>>()?;
            Ok(WebhookEvent::TicketsGranted { id, tickets })
        }
        "ticket.revoked" => {
            let id = data.reservation_id()?;
            let items = data.array("ticket_ids", MAX_BATCH)?;
            let ticket_ids = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let path = format!("data.ticket_ids[{i}]");
                    let text = item.as_str().ok_or_else(|| err(&path, "must be a string"))?;
                    ExternalId::parse(text).map_err(|m| err(&path, m))
                })
                .collect::<Result<_, PayloadError>>()?;
            Ok(WebhookEvent::TicketsRevoked { id, ticket_ids })
        }
        "series.upserted" => series(&data, now, rules).map(|s| WebhookEvent::SeriesUpserted(Box::new(s))),
        "series.cancelled" => Ok(WebhookEvent::SeriesCancelled {
            id: data.parse("series_id", SeriesId::parse)?,
            reason: data.opt_parse("reason", parse_reason)?,
        }),
        "stream.started" | "stream.ended" => {
            let id = data.reservation_id()?;
            let at = data.opt_parse("at", |v| time(v, now))?.unwrap_or(now);
            if at > now + TimeDelta::minutes(MAX_SIGNAL_AHEAD_MINUTES) {
                return Err(err(
                    "data.at",
                    format!(
                        "must not be more than {MAX_SIGNAL_AHEAD_MINUTES} minutes ahead of now: a stream signal reports what happened"
                    ),
                ));
            }
            Ok(if kind == "stream.started" {
                WebhookEvent::StreamStarted { id, at }
            } else {
                WebhookEvent::StreamEnded { id, at }
            })
        }
        "follower.added" | "follower.removed" => {
            let channel = data.parse("channel_id", ExternalId::parse)?;
            let user = data.parse("user_id", |v| rules.outside_user(v))?;
            Ok(if kind == "follower.added" {
                WebhookEvent::FollowerAdded { channel, user }
            } else {
                WebhookEvent::FollowerRemoved { channel, user }
            })
        }
        other => Err(err(
            "type",
            format!(
                "{other:?} is not a known event type (reservation.created, reservation.updated, reservation.cancelled, ticket.granted, ticket.revoked, stream.started, stream.ended, series.upserted, series.cancelled, follower.added, follower.removed)"
            ),
        )),
    }?;
    let sent = match (&event, kind) {
        (WebhookEvent::Upsert(_), "reservation.created") => "reservation.created",
        (WebhookEvent::Upsert(_), _) => "reservation.updated",
        (other, _) => other.kind(),
    };
    Ok((sent, event))
}

fn reservation(data: &Object<'_>, now: DateTime<Utc>, rules: &Rules) -> Result<Reservation, PayloadError> {
    let id = data.reservation_id()?;
    let revision = data.unsigned("revision", i64::MAX as u64)?.map(Revision);
    let title = data.parse("title", Title::parse)?;
    let description = data.opt_parse("description", Description::parse)?;
    let starts_at = data.parse("starts_at", |v| time(v, now))?;
    let ends_at = data.parse("ends_at", |v| time(v, now))?;
    if ends_at <= starts_at {
        return Err(err("data.ends_at", "must be after data.starts_at"));
    }
    if (ends_at - starts_at).num_seconds() > MAX_SPAN_SECONDS {
        return Err(err("data.ends_at", "must be at most 7 days after data.starts_at"));
    }
    details(data, rules, Core { id, revision, title, description, starts_at, ends_at })
}

/// What an occurrence of a series does not share with the others, or a reservation
/// is not told the same way: read before [`details`] adds the rest.
struct Core {
    id: ReservationId,
    revision: Option<Revision>,
    title: Title,
    description: Option<Description>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

/// The most `exdates` and `overrides` a series may carry.
const MAX_SERIES_DATES: usize = 1000;

/// `series.upserted`'s `data` at `now`: the series, its expansion within
/// `rules.series_horizon`, and the `data` as sent (kept to expand it again later).
fn series(data: &Object<'_>, now: DateTime<Utc>, rules: &Rules) -> Result<SeriesUpsert, PayloadError> {
    let id = data.parse("series_id", SeriesId::parse)?;
    let rrule = data.string("rrule")?;
    let dtstart = data.parse("dtstart", parse_local)?;
    let tz = data.parse("tzid", parse_tzid)?;
    let duration = data
        .unsigned("duration_seconds", MAX_SPAN_SECONDS as u64)?
        .ok_or_else(|| err(data.at("duration_seconds"), "is missing"))?;
    let exdates = optional_items(data, "exdates")?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("data.exdates[{i}]");
            item.as_str()
                .ok_or_else(|| err(&path, "must be a string"))
                .and_then(|v| parse_local(v).map_err(|m| err(&path, m)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let overrides = optional_items(data, "overrides")?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let o = Object::new(format!("data.overrides[{i}]"), item)?;
            let original_start = o.parse("original_start", parse_local)?;
            let starts_at = o.parse("starts_at", |v| time(v, now))?;
            let ends_at = o.parse("ends_at", |v| time(v, now))?;
            Override::new(original_start, starts_at, ends_at).map_err(|m| err(o.at("ends_at"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let recurrence = Recurrence::new(rrule, dtstart, tz, duration, exdates, overrides)
        .map_err(|e| err(data.at(e.field), e.message))?;
    let first = recurrence.place(dtstart);
    if first - now > TimeDelta::days(365 * MAX_YEARS_FROM_NOW + 1) {
        return Err(err(data.at("dtstart"), format!("must be within {MAX_YEARS_FROM_NOW} years of now")));
    }
    let core = Core {
        id: id.as_reservation_id().clone(),
        revision: data.unsigned("revision", i64::MAX as u64)?.map(Revision),
        title: data.parse("title", Title::parse)?,
        description: data.opt_parse("description", Description::parse)?,
        starts_at: first,
        ends_at: first + TimeDelta::seconds(duration as i64),
    };
    let template = details(data, rules, core)?;
    let series = Series { revision: template.revision, id, recurrence, template };
    let expansion = series.recurrence.expand(&series.id, now, rules.series_horizon);
    if expansion.complete_until < now {
        return Err(err(
            data.at("dtstart"),
            format!(
                "is too far back: the rule's first {MAX_STEPS} occurrences are all before now; start the series later"
            ),
        ));
    }
    let definition = Value::Object(data.map.clone()).to_string();
    Ok(SeriesUpsert { series, expansion, definition })
}

/// A series kept by the store (its `data` as sent), expanded again at `now`.
pub fn stored_series(definition: &str, now: DateTime<Utc>, rules: &Rules) -> Result<SeriesUpsert, PayloadError> {
    let value: Value = serde_json::from_str(definition).map_err(|e| err("data", format!("is not JSON ({e})")))?;
    series(&Object::new("data", &value)?, now, rules)
}

/// An optional array of at most [`MAX_SERIES_DATES`] items (absent: none).
fn optional_items<'a>(data: &Object<'a>, key: &str) -> Result<&'a [Value], PayloadError> {
    match data.get(key) {
        None => Ok(&[]),
        Some(Value::Array(items)) if items.len() <= MAX_SERIES_DATES => Ok(items),
        Some(Value::Array(_)) => Err(err(data.at(key), format!("must hold at most {MAX_SERIES_DATES} items"))),
        Some(_) => Err(err(data.at(key), "must be an array")),
    }
}

/// A reservation from its [`Core`] and the fields `reservation.created` and
/// `series.upserted` read alike.
fn details(data: &Object<'_>, rules: &Rules, core: Core) -> Result<Reservation, PayloadError> {
    let Core { id, revision, title, description, starts_at, ends_at } = core;
    let stream_url = data.opt_parse("stream_url", |v| StreamUrl::parse_incoming(v, rules.allow_http_stream_urls))?;
    let channel = data
        .get("channel")
        .map(|v| {
            let c = Object::new("data.channel", v)?;
            Ok::<_, PayloadError>(Channel {
                id: c.parse("id", ExternalId::parse)?,
                name: c.parse("name", Title::parse)?,
            })
        })
        .transpose()?;
    let hosts = users(data.get("hosts"), "data.hosts", rules)?;
    // Absent means no key: an upsert describes the whole reservation, so a platform
    // that drops the key from an update withdraws it (as it would a stream_url).
    let stream_key = data
        .get("ingest")
        .map(|v| Object::new("data.ingest", v)?.opt_parse("stream_key", StreamKey::parse))
        .transpose()?
        .flatten();
    let mut reservation = Reservation {
        id,
        revision,
        title,
        description,
        starts_at,
        ends_at,
        stream_url,
        channel,
        hosts,
        open_before_seconds: None,
        close_after_seconds: None,
        transcript: None,
        stream_key: stream_key.as_ref().map(StreamKey::hash),
        rules: RulesOverride::default(),
        moderators: Vec::new(),
        archive: Archive::default(),
        replay_offset: None,
        auto_join: None,
        access: Access::default(),
    };
    if let Some(v) = data.get("chat") {
        chat(&mut reservation, &Object::new("data.chat", v)?, rules)?;
    }
    Ok(reservation)
}

/// A reservation's `chat` settings into `r`.
fn chat(r: &mut Reservation, chat: &Object<'_>, rules: &Rules) -> Result<(), PayloadError> {
    let max = MAX_SPAN_SECONDS as u64;
    r.transcript = chat.opt_bool("transcript")?;
    if let Some(v) = chat.get("rules") {
        r.rules = RulesOverride::parse(v, "data.chat.rules").map_err(|e| err(e.path, e.message))?;
    }
    r.moderators = users(chat.get("moderators"), "data.chat.moderators", rules)?;
    r.open_before_seconds = chat.unsigned("open_before_seconds", max)?.map(|s| s as u32);
    r.close_after_seconds = chat.unsigned("close_after_seconds", max)?.map(|s| s as u32);
    let indexable = chat.opt_bool("archive_indexable")?.unwrap_or(false);
    r.archive = chat.opt_parse("archive", |v| Archive::parse(v, indexable))?.unwrap_or_default();
    r.replay_offset = chat.opt_int("replay_offset_ms", ReplayOffset::parse)?;
    r.auto_join = chat.opt_parse("auto_join", AutoJoin::parse)?;
    if r.auto_join == Some(AutoJoin::Local) && !rules.admin_join {
        let why = "local needs synapse_admin.token in Foyer's config (holders are joined through the Synapse admin API); ask the homeserver's admin, or send off";
        return Err(err("data.chat.auto_join", why));
    }
    r.access = chat.opt_parse("access", Access::parse)?.unwrap_or_default();
    if r.access == Access::Channel && r.channel.is_none() {
        let why = "channel needs the reservation's data.channel, whose space's members may join";
        return Err(err("data.chat.access", why));
    }
    Ok(())
}

/// A list of Matrix users from outside the appservice's namespace (`hosts`,
/// `chat.moderators`), each once, at most [`MAX_HOSTS`].
fn users(value: Option<&Value>, path: &str, rules: &Rules) -> Result<Vec<OwnedUserId>, PayloadError> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() > MAX_HOSTS => {
            Err(err(path, format!("must hold at most {MAX_HOSTS} user IDs")))
        }
        Some(Value::Array(items)) => {
            let mut users: Vec<OwnedUserId> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                let text = item.as_str().ok_or_else(|| err(&at, "must be a string"))?;
                let user = rules.outside_user(text).map_err(|m| err(&at, m))?;
                if !users.contains(&user) {
                    users.push(user);
                }
            }
            Ok(users)
        }
        Some(_) => Err(err(path, "must be an array of Matrix user IDs")),
    }
}

#[cfg(test)]
mod tests;
