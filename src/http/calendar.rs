//! Calendar feeds (docs/calendar.md): a channel's schedule at
//! `/calendar/<channel_id>.ics`, behind `api.token` unless `calendar.public`, and each
//! ticket holder's own shows at `/calendar/holder/<token>.ics`, a URL signed with
//! `calendar.feed_key`. Both are RFC 5545, written by the `icalendar` crate ([`feed`]).

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use icalendar::{Calendar, Component as _, Event, EventLike as _, EventStatus, Property};
use ruma::{ServerName, UserId};
use url::Url;

use crate::{
    http::{AppState, error, has_token, store_unavailable, unauthorized},
    model::{
        ExternalId,
        calendar::{CalendarEntry, FeedKey, FeedWindow, HolderFeedToken},
    },
    words,
};

/// Where holders' feeds are: their paths carry a token, which logs leave out.
pub const HOLDER_FEEDS: &str = "/calendar/holder/";

/// How often a calendar app should fetch a feed again (`REFRESH-INTERVAL`).
const REFRESH: &str = "PT1H";

/// A holder's own feed's URL under Foyer's public URL, for the tickets endpoint.
pub fn holder_feed_url(public_url: &Url, key: &FeedKey, user: &UserId) -> String {
    let token = HolderFeedToken::new(key, user);
    format!("{}{HOLDER_FEEDS}{}.ics", public_url.as_str().trim_end_matches('/'), token.as_str())
}

/// The feed: one `VEVENT` per entry, each with a stable `UID` (`<reservation_id>@<server
/// name>`), its `SEQUENCE` the number of reschedules, `STATUS:CANCELLED` once cancelled;
/// times in UTC. The crate escapes text values and folds lines at 75 octets with CRLF.
pub fn feed(name: &str, server: &ServerName, entries: &[CalendarEntry]) -> String {
    let mut calendar = Calendar::empty();
    calendar
        .append_property(Property::new("VERSION", "2.0"))
        .append_property(Property::new("PRODID", "-//Foyer//Calendar feed//EN"))
        .append_property(Property::new("CALSCALE", "GREGORIAN"))
        .append_property(Property::new("METHOD", "PUBLISH"))
        .append_property(Property::new("X-WR-CALNAME", name))
        .append_property(Property::new("REFRESH-INTERVAL", REFRESH).add_parameter("VALUE", "DURATION").done())
        .append_property(Property::new("X-PUBLISHED-TTL", REFRESH));
    for entry in entries {
        let mut event = Event::with_uid(&format!("{}@{server}", entry.id.as_str()));
        event
            .timestamp(entry.recorded_at)
            .starts(entry.starts_at)
            .ends(entry.ends_at)
            .summary(entry.title.as_str())
            .sequence(entry.reschedules)
            .status(if entry.cancelled { EventStatus::Cancelled } else { EventStatus::Confirmed });
        if let Some(description) = &entry.description {
            event.description(description.as_str());
        }
        if let Some(url) = &entry.stream_url {
            event.url(url.as_str());
        }
        calendar.push(event.done());
    }
    calendar.to_string()
}

fn ics(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/calendar; charset=utf-8")], body).into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "FOYER_NOT_FOUND", "no such calendar")
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    store_unavailable("calendar", e)
}

/// `GET /calendar/{channel_id}.ics` (the router's parameter is the last segment whole:
/// it cannot split a segment). The token is checked first, so that a stranger cannot
/// tell a channel Foyer knows from one it does not.
pub(super) async fn channel(State(state): State<AppState>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    if !state.config.calendar.public && !has_token(&headers, &state.config.api.token) {
        return unauthorized();
    }
    let Some(channel) = file.strip_suffix(".ics").and_then(|id| ExternalId::parse(id).ok()) else {
        return not_found();
    };
    match state.store.channel_calendar(channel.as_str(), FeedWindow::at(Utc::now())).await {
        Ok(Some(calendar)) => {
            ics(feed(calendar.name.as_str(), &state.config.homeserver.server_name, &calendar.entries))
        }
        Ok(None) => not_found(),
        Err(e) => unavailable(e),
    }
}

/// `GET /calendar/holder/{token}.ics`: 404 alike for a token that does not verify (made
/// under another key, altered, or not one), without `calendar.feed_key`, and once
/// nothing of the holder's is active.
pub(super) async fn holder(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    // Each line is logged in the request's span, whose path hides the token
    // (`logged_path`); the user is not named either.
    let Some(key) = state.config.feed_key() else {
        tracing::debug!("holder feed refused: calendar.feed_key is not set");
        return not_found();
    };
    let Some(token) = file.strip_suffix(".ics") else { return not_found() };
    let user = match HolderFeedToken::verify(&key, token) {
        Ok(user) => user,
        Err(e) => {
            tracing::debug!(reason = %e, "holder feed refused");
            return not_found();
        }
    };
    let now = Utc::now();
    match state.store.holder_calendar(&user, FeedWindow::at(now), now).await {
        Ok(Some(entries)) => {
            tracing::debug!(events = entries.len(), "holder feed served");
            let server = &state.config.homeserver.server_name;
            ics(feed(&words::calendar::holder_calendar_name(server.as_str()), server, &entries))
        }
        Ok(None) => {
            tracing::debug!("holder feed refused: nothing of the holder's is active");
            not_found()
        }
        Err(e) => unavailable(e),
    }
}

/// This module's routes, one of the tables [`super::ROUTES`] lists. A path parameter
/// is a whole segment, so the `.ics` is the handler's to strip.
#[rustfmt::skip]
pub(super) const ROUTES: &[super::Route] = super::route_table![Calendar:
    GET "/calendar/{channel_feed}" => channel,
    GET "/calendar/holder/{holder_feed}" => holder,
];

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone as _};

    use super::*;
    use crate::model::{Description, ReservationId, StreamUrl, Title};

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2099, 11, 27, h, m, 0).unwrap()
    }

    fn entry(id: &str) -> CalendarEntry {
        CalendarEntry {
            id: ReservationId::parse(id).unwrap(),
            title: Title::parse("Friday Night Jazz").unwrap(),
            description: None,
            starts_at: at(19, 0),
            ends_at: at(21, 30),
            stream_url: None,
            reschedules: 0,
            recorded_at: at(12, 5),
            cancelled: false,
        }
    }

    fn server() -> ruma::OwnedServerName {
        ServerName::parse("example.org").unwrap()
    }

    /// The content lines as a parser sees them: unfolded.
    fn unfolded(text: &str) -> Vec<String> {
        text.replace("\r\n ", "").split("\r\n").map(str::to_owned).collect()
    }

    #[test]
    fn a_feed_is_a_calendar_of_one_event_a_reservation() {
        let text = feed("Jazz & Co", &server(), &[entry("jazz-1"), entry("jazz-2")]);
        assert!(text.ends_with("END:VCALENDAR\r\n"), "{text}");
        assert!(!text.replace("\r\n", "").contains('\n'), "every line ends in CRLF: {text:?}");
        let lines = unfolded(&text);
        for want in [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//Foyer//Calendar feed//EN",
            "X-WR-CALNAME:Jazz & Co",
            "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
            "X-PUBLISHED-TTL:PT1H",
            "UID:jazz-1@example.org",
            "UID:jazz-2@example.org",
            "DTSTAMP:20991127T120500Z",
            "DTSTART:20991127T190000Z",
            "DTEND:20991127T213000Z",
            "SUMMARY:Friday Night Jazz",
            "SEQUENCE:0",
            "STATUS:CONFIRMED",
        ] {
            assert!(lines.iter().any(|l| l == want), "no line {want:?} in {text}");
        }
        assert_eq!(lines.iter().filter(|l| *l == "BEGIN:VEVENT").count(), 2);
        assert!(!lines.iter().any(|l| l.starts_with("URL") || l.starts_with("DESCRIPTION")), "{text}");
    }

    #[test]
    fn reschedules_are_the_sequence_and_a_cancelled_show_says_so() {
        let moved = CalendarEntry { reschedules: 3, cancelled: true, ..entry("jazz") };
        let lines = unfolded(&feed("Jazz", &server(), &[moved]));
        assert!(lines.iter().any(|l| l == "SEQUENCE:3"), "{lines:?}");
        assert!(lines.iter().any(|l| l == "STATUS:CANCELLED"), "{lines:?}");
        assert!(!lines.iter().any(|l| l == "STATUS:CONFIRMED"), "{lines:?}");
    }

    #[test]
    fn text_is_escaped() {
        let tricky = CalendarEntry {
            title: Title::parse("Jazz, blues; and \\ more").unwrap(),
            description: Some(Description::parse("Line one\nLine two, with; all\\").unwrap()),
            stream_url: Some(StreamUrl::parse("https://watch.example.org/jazz?a=1&b=2").unwrap()),
            ..entry("jazz")
        };
        let lines = unfolded(&feed("A; B, C", &server(), &[tricky]));
        for want in [
            r"SUMMARY:Jazz\, blues\; and \\ more",
            r"DESCRIPTION:Line one\nLine two\, with\; all\\",
            "URL:https://watch.example.org/jazz?a=1&b=2",
            r"X-WR-CALNAME:A\; B\, C",
        ] {
            assert!(lines.iter().any(|l| l == want), "no line {want:?} in {lines:?}");
        }
    }

    #[test]
    fn long_lines_are_folded_at_75_octets_on_character_boundaries() {
        let title = "Ünïcödé ".repeat(30);
        let long = CalendarEntry {
            title: Title::parse(title.trim()).unwrap(),
            description: Some(Description::parse(&"d".repeat(400)).unwrap()),
            ..entry("jazz")
        };
        let text = feed("Jazz", &server(), &[long]);
        for line in text.split("\r\n") {
            assert!(line.len() <= 75, "a line of {} octets: {line:?}", line.len());
        }
        // Folding is undone by a parser: the title comes back whole.
        assert!(unfolded(&text).iter().any(|l| *l == format!("SUMMARY:{}", title.trim())), "{text}");
        assert!(text.contains("\r\n "), "long lines are folded: {text}");
    }

    #[test]
    fn a_holder_feed_url_carries_a_token_that_verifies() {
        let key = FeedKey::from_secret(b"a feed key of at least thirty-two chars");
        let user = UserId::parse("@alice:example.org").unwrap();
        let url = holder_feed_url(&Url::parse("https://foyer.example.org/").unwrap(), &key, &user);
        let token = url.strip_prefix("https://foyer.example.org/calendar/holder/").unwrap();
        let token = token.strip_suffix(".ics").unwrap();
        assert_eq!(HolderFeedToken::verify(&key, token), Ok(user));
        assert_eq!(crate::http::logged_path(&url["https://foyer.example.org".len()..]), "/calendar/holder/[token]");
    }
}
