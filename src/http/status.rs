//! `GET /status`: a server-rendered page for the admin at 3 a.m. It lists reservations
//! by phase with countdowns, member counts, room links and the last error of a failing
//! reservation, refreshes itself, and needs no JavaScript.
//!
//! It is guarded by `api.token`. A bearer token works, for `curl`; a browser logs in with
//! a form and gets a session cookie: a random session id and its issue time, with a MAC
//! keyed by a key derived from the token (the cookie never holds the token). A cookie
//! counts while its MAC holds (so a new `api.token` logs everyone out), for
//! [`SESSION_TTL`] from its issue, and while its session is in the store: logging out
//! deletes the session there, so a copy of the cookie is dead on every instance and
//! after a restart. When admins reach Foyer over https (`appservice.public_url`, the
//! address browsers use, whatever the homeserver uses) the cookie is `Secure` and named
//! with the `__Host-` prefix. Logging out takes a POST from Foyer's own page, so another
//! site cannot log the admin out. Every answer under `/status` carries [`POLICY`]: the
//! pages run no script, load nothing, post only to Foyer, and no site may frame them
//! (a framed login form or Log out button could be clicked through).

use std::collections::HashMap;

use axum::{
    Form, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use url::Url;

use crate::{
    config::Config,
    html::{document, escape},
    http::{AppState, has_token},
    model::{ReservationId, ReservationRecord, SessionId, naming},
    outbox::send::OutboxStatus,
    query,
    schedule::{self, Phase},
    secret::Secret,
    store::StoreError,
};

/// The cookie's name over http (a local install).
const COOKIE: &str = "foyer_status";
/// Its name over https: the browser then keeps it for this host only, sends it over
/// https only, and lets no other subdomain set or shadow it.
const HOST_COOKIE: &str = "__Host-foyer_status";
/// How long a login lasts: the cookie's `Max-Age`, and the age past which the server
/// refuses it whatever the browser kept.
const SESSION_TTL: TimeDelta = TimeDelta::hours(12);
/// A cookie issued this far ahead of this instance's clock is still taken: the clocks
/// of instances sharing a database differ a little.
const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(60);
/// The login form's largest body: a token of a few hundred bytes fits many times over.
pub const MAX_LOGIN_BYTES: usize = 4096;
/// Seconds between the page's own refreshes.
const REFRESH: u32 = 5;
/// Rows shown per phase; the read API lists the rest.
const ROWS: usize = 100;
/// Holders who cannot be invited named per reservation; `!foyer show` and the tickets
/// listing name the rest.
const NAMED_FAILURES: u32 = 5;

/// The Content-Security-Policy of every answer under `/status`: no script, nothing
/// loaded, the inline style, forms posted to Foyer only, and never framed.
pub const POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/status", get(page))
        .route("/status/login", post(login).layer(DefaultBodyLimit::max(MAX_LOGIN_BYTES)))
        .route("/status/logout", post(logout))
        .layer(axum::middleware::map_response(with_policy))
}

/// [`POLICY`] on an answer, and `X-Frame-Options` for browsers that predate
/// `frame-ancestors`.
async fn with_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The MAC of a cookie's `<session id>.<issue time>`, as hex, under a key derived from
/// the API token (a key of its own, so the MAC says nothing about the token).
fn cookie_mac(token: &Secret, signed: &str) -> String {
    let mut key = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes()).expect("HMAC takes keys of any length");
    key.update(b"foyer status page cookie key v2");
    let key = key.finalize().into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(signed.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A cookie's value: `<session id>.<issue time in Unix seconds>.<MAC of both>`.
pub fn cookie_value(token: &Secret, id: &SessionId, issued_at: DateTime<Utc>) -> String {
    let signed = format!("{}.{}", id.as_str(), issued_at.timestamp());
    let mac = cookie_mac(token, &signed);
    format!("{signed}.{mac}")
}

/// Why a cookie is not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Refused {
    #[error("it is not a cookie Foyer makes")]
    Malformed,
    #[error("its MAC does not match (forged, or made under another api.token)")]
    BadMac,
    #[error("it is older than the session lifetime")]
    Expired,
    #[error("it was issued in the future")]
    FromTheFuture,
}

/// The session a cookie's value names, if its MAC holds and it is not expired at `now`.
/// (Whether the session was ended is for the store to say.)
fn verify(token: &Secret, value: &str, now: DateTime<Utc>) -> Result<SessionId, Refused> {
    let (signed, mac) = value.rsplit_once('.').ok_or(Refused::Malformed)?;
    let (id, issued) = signed.split_once('.').ok_or(Refused::Malformed)?;
    let id = SessionId::parse(id).ok_or(Refused::Malformed)?;
    // Digits only, so that one issue time has one spelling.
    if issued.is_empty() || issued.len() > 12 || !issued.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refused::Malformed);
    }
    if !Secret::new(cookie_mac(token, signed)).matches(mac.as_bytes()) {
        return Err(Refused::BadMac);
    }
    let issued_at = issued.parse().ok().and_then(|secs| DateTime::from_timestamp(secs, 0)).ok_or(Refused::Malformed)?;
    if issued_at > now + CLOCK_SKEW {
        return Err(Refused::FromTheFuture);
    }
    if now - issued_at >= SESSION_TTL {
        return Err(Refused::Expired);
    }
    Ok(id)
}

/// Whether admins reach Foyer over https: the scheme of `appservice.public_url`, where
/// browsers reach it (default `appservice.url`). `appservice.url` is how the homeserver
/// reaches Foyer, often plain http on the host behind an https proxy.
fn served_over_https(config: &Config) -> bool {
    config.public_url().scheme() == "https"
}

/// The `Set-Cookie` value for a session cookie (`max_age` 0 removes it). The `__Host-`
/// prefix requires `Secure` and `Path=/`; the cookie is only read by `/status`.
fn set_cookie(https: bool, value: &str, max_age: TimeDelta) -> String {
    let (name, secure) = if https { (HOST_COOKIE, "; Secure") } else { (COOKIE, "") };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}; Max-Age={}", max_age.num_seconds())
}

/// The sessions named by the request's cookies (under this deployment's cookie name)
/// whose MAC and age hold. Several: a browser may hold an outdated cookie too.
fn sessions(headers: &HeaderMap, config: &Config, now: DateTime<Utc>) -> Vec<SessionId> {
    let name = if served_over_https(config) { HOST_COOKIE } else { COOKIE };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .filter_map(|(_, value)| match verify(&config.api.token, value, now) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::debug!(reason = %e, "status page: a session cookie refused");
                None
            }
        })
        .collect()
}

/// Whether the request carries the cookie of a live session.
async fn has_session(state: &AppState, headers: &HeaderMap, now: DateTime<Utc>) -> Result<bool, StoreError> {
    for id in sessions(headers, &state.config, now) {
        if state.store.status_session_live(&id, now).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn header_text<K: header::AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a request comes from Foyer's own page. Browsers say where a request comes
/// from in `Sec-Fetch-Site`: `same-origin`, or `none` when the user made it (a
/// bookmark). Older ones send only `Origin`, which must then be this host (the request's
/// `Host`, `appservice.public_url` or `appservice.url`). With neither, the request is not
/// from a browser's form, and only a browser has a cookie to end: refused.
fn same_origin(headers: &HeaderMap, config: &Config) -> bool {
    if let Some(site) = header_text(headers, "sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = header_text(headers, header::ORIGIN).and_then(|o| Url::parse(o).ok()) else {
        return false;
    };
    if served_over_https(config) && origin.scheme() != "https" {
        return false;
    }
    let Some(host) = origin.host_str() else { return false };
    let authority = match origin.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    origin.origin() == config.public_url().origin()
        || origin.origin() == config.appservice.url.origin()
        || header_text(headers, header::HOST) == Some(&authority)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let token = &state.config.api.token;
    if !token.matches(form.token.trim().as_bytes()) {
        tracing::warn!("status page: a login with a wrong token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the API token (`api.token` in Foyer's config)."),
        );
    }
    let (id, now) = (SessionId::random(), Utc::now());
    if let Err(e) = state.store.start_status_session(&id, now, now + SESSION_TTL).await {
        tracing::error!(error = %e, "status page: cannot store a new session");
        return login_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("The database cannot be written now, so no login can be recorded; try again in a moment."),
        );
    }
    tracing::info!("status page: logged in");
    let cookie = set_cookie(served_over_https(&state.config), &cookie_value(token, &id, now), SESSION_TTL);
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/status".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers, &state.config) {
        tracing::warn!("status page: a logout that did not come from the page refused");
        let body = "<h1>Foyer status</h1><p class=error role=alert>This logout did not come from Foyer's \
                    status page, so it was refused. Use the Log out button on the page.</p>";
        return (StatusCode::FORBIDDEN, Html(document("Foyer status", "", body))).into_response();
    }
    let now = Utc::now();
    for id in sessions(&headers, &state.config, now) {
        if let Err(e) = state.store.end_status_session(&id).await {
            tracing::error!(error = %e, "status page: cannot end a session");
            let body = "<h1>Foyer status</h1><p class=error role=alert>The database cannot be written now, \
                        so the session could not be ended. Try logging out again in a moment.</p>";
            return (StatusCode::SERVICE_UNAVAILABLE, Html(document("Foyer status", "", body))).into_response();
        }
        tracing::info!("status page: logged out");
    }
    let cookie = set_cookie(served_over_https(&state.config), "", TimeDelta::zero());
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/status".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    let problem = problem.map(|p| format!("<p class=error role=alert>{}</p>", escape(p))).unwrap_or_default();
    let body = format!(
        "<h1>Foyer status</h1>{problem}\
         <form method=post action=/status/login>\
         <label>API token <input name=token type=password autocomplete=current-password autofocus required></label> \
         <button type=submit>Log in</button></form>\
         <p class=hint>The token is <code>api.token</code> in Foyer's config.</p>"
    );
    (status, Html(document("Foyer status — log in", "", &body))).into_response()
}

/// The page when the database cannot be read; it tries again by itself.
fn unavailable(e: StoreError) -> Response {
    tracing::error!(error = %e, "status page: store unavailable");
    let body =
        "<h1>Foyer status</h1><p class=error>The database cannot be read now; this page tries again by itself.</p>";
    let head = format!("<meta http-equiv=refresh content={REFRESH}>");
    (StatusCode::SERVICE_UNAVAILABLE, Html(document("Foyer status", &head, body))).into_response()
}

struct Row<'a> {
    record: &'a ReservationRecord,
    phase: Phase,
    /// Holders whose invite keeps failing, with the last error.
    cannot_invite: &'a [(String, String)],
}

async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = Utc::now();
    if !has_token(&headers, &state.config.api.token) {
        match has_session(&state, &headers, now).await {
            Ok(true) => {}
            Ok(false) => return login_page(StatusCode::UNAUTHORIZED, None),
            Err(e) => return unavailable(e),
        }
    }
    // The walk reads light rows (no counts); the rows shown are then read in full, at once.
    let mut counts: Vec<(Phase, usize)> = Phase::ALL.iter().map(|p| (*p, 0)).collect();
    let (mut shown, mut failing, mut failing_total) = (Vec::new(), Vec::new(), 0);
    let listed = query::each_reservation(state.store.as_ref(), &state.config.rooms, now, |phase, record| {
        let id = &record.reservation.id;
        if let Some(c) = counts.iter_mut().find(|(p, _)| *p == phase) {
            c.1 += 1;
            if c.1 <= ROWS {
                shown.push((phase, id.clone()));
            }
        }
        if record.last_error.is_some() {
            failing_total += 1;
            if failing.len() < ROWS {
                failing.push((phase, id.clone()));
            }
        }
    })
    .await;
    let read = match listed {
        Ok(()) => {
            let ids: Vec<ReservationId> = shown.iter().chain(&failing).map(|(_, id)| id.clone()).collect();
            state.store.reservations_by_id(&ids).await
        }
        Err(e) => Err(e),
    };
    let full: HashMap<ReservationId, ReservationRecord> = match read {
        Ok(records) => records.into_iter().map(|r| (r.reservation.id.clone(), r)).collect(),
        Err(e) => return unavailable(e),
    };
    // Holders who cannot be invited are named, for the few reservations that have any.
    let mut cannot_invite: HashMap<ReservationId, Vec<(String, String)>> = HashMap::new();
    for record in full.values().filter(|r| r.tickets.uninvitable > 0).take(ROWS) {
        let id = &record.reservation.id;
        match state.store.invite_failures(id, NAMED_FAILURES).await {
            Ok(failures) => {
                cannot_invite.insert(id.clone(), failures);
            }
            Err(e) => tracing::warn!(reservation_id = %id, error = %e, "status page: cannot read the invite failures"),
        }
    }
    let rows = |list: &[(Phase, ReservationId)]| -> Vec<Row> {
        list.iter()
            .filter_map(|(phase, id)| {
                let cannot_invite = cannot_invite.get(id).map_or(&[][..], Vec::as_slice);
                Some(Row { record: full.get(id)?, phase: *phase, cannot_invite })
            })
            .collect()
    };
    let failing = Failing { rows: rows(&failing), total: failing_total };
    let outbox = match state.store.outbox_status().await {
        Ok(outbox) => outbox_line(&outbox, state.config.platform.is_some(), now),
        Err(e) => return unavailable(e),
    };
    Html(render(&state, &rows(&shown), &failing, &counts, &outbox, now)).into_response()
}

/// Failing reservations: how many there are, and the first of them in full.
struct Failing<'a> {
    rows: Vec<Row<'a>>,
    total: usize,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The outbox's paragraph: whether events reach the platform, how many wait and since when.
fn outbox_line(status: &OutboxStatus, configured: bool, now: DateTime<Utc>) -> String {
    if !configured {
        return "<p class=muted id=outbox>Outbox: no <code>platform.webhook_url</code>; no events are sent.</p>"
            .to_owned();
    }
    let state = if status.paused {
        "<b class=error id=outbox-state>paused</b> (the platform answered 410 Gone; \
         <code>!foyer outbox resume</code> sends again)"
    } else {
        "<span id=outbox-state>sending</span>"
    };
    let oldest = match status.oldest {
        Some(at) => format!(", the oldest written {}", schedule::relative(now, at)),
        None => String::new(),
    };
    format!("<p id=outbox>Outbox: {state} · <b id=outbox-depth>{}</b> waiting{oldest}</p>", status.depth)
}

fn render(
    state: &AppState,
    rows: &[Row],
    failing: &Failing,
    counts: &[(Phase, usize)],
    outbox: &str,
    now: DateTime<Utc>,
) -> String {
    let config = &state.config;
    let ready = state.ready.read().map(|r| r.is_some()).unwrap_or(false);
    let summary: String = counts
        .iter()
        .map(|(p, n)| format!("<span><a href=#{p}>{p}</a>: <b id=count-{p}>{n}</b></span>", p = p.as_str()))
        .collect();
    let mut body = format!(
        "<h1>Foyer status</h1>\
         <p class=muted>{bot} on {hs} · {state} · as of <time datetime={now_iso}>{now_h}</time> · refreshes every {REFRESH} s</p>\
         <form method=post action=/status/logout><button type=submit>Log out</button></form>\
         <p class=summary>{summary}<span>failing: <b id=count-failing>{failing}</b></span></p>",
        bot = escape(config.bot_user_id().as_str()),
        hs = escape(config.homeserver.url.as_str()),
        state = if ready { "ready" } else { "<b class=error>waiting for the homeserver</b>" },
        now_iso = time(now),
        now_h = schedule::human_time(now),
        failing = failing.total,
    );
    body.push_str(outbox);
    if !failing.rows.is_empty() {
        body.push_str("<h2 id=failing class=error>Failing</h2><table><tr><th>Reservation</th><th>Phase</th><th>Attempts</th><th>Last error</th></tr>");
        for row in &failing.rows {
            let r = &row.record.reservation;
            body.push_str(&format!(
                "<tr class=failing><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(r.id.as_str()),
                row.phase.as_str(),
                row.record.attempts,
                escape(row.record.last_error.as_deref().unwrap_or(""))
            ));
        }
        body.push_str("</table>");
    }
    for (phase, count) in counts {
        let p = phase.as_str();
        body.push_str(&format!("<h2 id={p}>{} ({count})</h2>", capitalized(p)));
        let in_phase: Vec<&Row> = rows.iter().filter(|r| r.phase == *phase).collect();
        if in_phase.is_empty() {
            body.push_str("<p class=muted>None.</p>");
            continue;
        }
        body.push_str(
            "<table><tr><th>Reservation</th><th>Title</th><th>Opens</th><th>Archives</th>\
             <th>Members</th><th>Tickets</th><th>Room</th><th>Last error</th></tr>",
        );
        for row in &in_phase {
            body.push_str(&table_row(state, row, now));
        }
        body.push_str("</table>");
        if *count > in_phase.len() {
            body.push_str(&format!(
                "<p class=muted>and {} more; <code>GET /api/v1/reservations?phase={p}</code> lists all.</p>",
                count - in_phase.len()
            ));
        }
    }
    let head = format!("<meta http-equiv=refresh content={REFRESH}>");
    document("Foyer status", &head, &body)
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn table_row(state: &AppState, row: &Row, now: DateTime<Utc>) -> String {
    let record = row.record;
    let r = &record.reservation;
    let times = schedule::schedule(record, &state.config.rooms);
    let when = |t: DateTime<Utc>| {
        format!(
            "<time datetime={}>{}</time><br><span class=muted>{}</span>",
            time(t),
            schedule::relative(now, t),
            schedule::human_time(t)
        )
    };
    let room_alias = state.config.room_alias(&record.reservation.id);
    let room = match &record.room_id {
        Some(_) => {
            format!("<a href=\"{}\">{}</a>", escape(&naming::matrix_to(&room_alias)), escape(room_alias.as_str()))
        }
        None => "<span class=muted>not yet</span>".to_owned(),
    };
    let error = record.last_error.as_deref().map(escape).unwrap_or_default();
    let mut tickets = record.tickets.active.to_string();
    if record.tickets.unclaimed > 0 {
        // Counted, never listed: an unclaimed ticket is known by an email address.
        tickets.push_str(&format!("<br><span class=muted>{} unclaimed</span>", record.tickets.unclaimed));
    }
    if record.tickets.uninvitable > 0 {
        let names: Vec<String> = row
            .cannot_invite
            .iter()
            .map(|(user, why)| format!("<code>{}</code> ({})", escape(user), escape(why)))
            .collect();
        tickets.push_str(&format!(
            "<br><span class=error>{} cannot be invited: {}</span>",
            record.tickets.uninvitable,
            names.join(", ")
        ));
    }
    format!(
        "<tr id=\"r-{id}\" data-phase={phase}{class}><td><code>{id}</code></td><td>{title}</td><td>{opens}</td><td>{archives}</td>\
         <td>{joined} joined, {invited} invited</td><td>{active}</td><td>{room}</td><td class=error>{error}</td></tr>",
        id = escape(r.id.as_str()),
        phase = row.phase.as_str(),
        class = if record.last_error.is_some() { " class=failing" } else { "" },
        title = escape(r.title.as_str()),
        opens = when(times.opens_at),
        archives = when(times.archives_at),
        joined = record.members.joined,
        invited = record.members.invited,
        active = tickets,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Secret {
        Secret::new("a".repeat(40))
    }

    fn config(url: &str) -> Config {
        let yaml =
            include_str!("../../config.example.yaml").replace("url: http://127.0.0.1:29330", &format!("url: {url}"));
        let (dir, env) = (std::path::Path::new("."), |_: &str| None);
        crate::config::from_yaml_str(&yaml, "example", dir, &env, crate::config::Placeholders::Allow).expect("valid")
    }

    /// A config where browsers reach Foyer at `public` and the homeserver at `url`.
    fn config_public(url: &str, public: &str) -> Config {
        let yaml = include_str!("../../config.example.yaml")
            .replace("url: http://127.0.0.1:29330", &format!("url: {url}"))
            .replace("# public_url: https://foyer.example.org", &format!("public_url: {public}"));
        let (dir, env) = (std::path::Path::new("."), |_: &str| None);
        crate::config::from_yaml_str(&yaml, "example", dir, &env, crate::config::Placeholders::Allow).expect("valid")
    }

    fn cookie_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_outbox_line_says_paused_and_how_many_wait() {
        let now = Utc::now();
        let status = OutboxStatus { depth: 2, oldest: Some(now - TimeDelta::seconds(90)), paused: true };
        let line = outbox_line(&status, true, now);
        assert!(line.contains("id=outbox-state>paused</b>"), "{line}");
        assert!(line.contains("<b id=outbox-depth>2</b> waiting, the oldest written 1 min ago"), "{line}");
        let idle = outbox_line(&OutboxStatus::default(), true, now);
        assert!(idle.contains(">sending<") && idle.contains("<b id=outbox-depth>0</b> waiting</p>"), "{idle}");
        assert!(outbox_line(&status, false, now).contains("no events are sent"));
    }

    #[test]
    fn a_cookie_holds_a_session_and_its_time_never_the_token() {
        let (id, now) = (SessionId::random(), Utc::now());
        let value = cookie_value(&token(), &id, now);
        let parts: Vec<&str> = value.split('.').collect();
        assert_eq!(parts.len(), 3, "{value}");
        assert_eq!((parts[0], parts[1]), (id.as_str(), now.timestamp().to_string().as_str()));
        assert_eq!(parts[2].len(), 64);
        assert!(!value.contains(&"a".repeat(8)), "{value}");
        assert_ne!(SessionId::random(), id, "random");
        assert_eq!(verify(&token(), &value, now), Ok(id.clone()));
        assert_eq!(verify(&Secret::new("b".repeat(40)), &value, now), Err(Refused::BadMac), "another api.token");
    }

    #[test]
    fn a_cookie_expires_after_the_session_lifetime() {
        let (id, issued) = (SessionId::random(), Utc::now());
        let value = cookie_value(&token(), &id, issued);
        let just_before = issued + SESSION_TTL - TimeDelta::seconds(1);
        assert_eq!(verify(&token(), &value, just_before), Ok(id));
        assert_eq!(verify(&token(), &value, issued + SESSION_TTL), Err(Refused::Expired));
        assert_eq!(verify(&token(), &value, issued + TimeDelta::days(7)), Err(Refused::Expired));
        // Nor is a cookie issued well ahead of this clock taken.
        assert_eq!(verify(&token(), &value, issued - CLOCK_SKEW - TimeDelta::seconds(1)), Err(Refused::FromTheFuture));
    }

    #[test]
    fn a_changed_cookie_is_refused() {
        let (id, issued) = (SessionId::random(), Utc::now());
        let value = cookie_value(&token(), &id, issued);
        let (signed, mac) = value.rsplit_once('.').unwrap();
        let later = format!("{}.{}.{mac}", id.as_str(), issued.timestamp() + 3600);
        assert_eq!(verify(&token(), &later, issued), Err(Refused::BadMac), "a later issue time");
        let other = format!("{}.{}.{mac}", SessionId::random().as_str(), issued.timestamp());
        assert_eq!(verify(&token(), &other, issued), Err(Refused::BadMac), "another session");
        let padded = format!("{}.0{}.{mac}", id.as_str(), issued.timestamp());
        assert_eq!(verify(&token(), &padded, issued), Err(Refused::BadMac), "one time, one spelling");
        let upper = format!("{signed}.{}", mac.to_uppercase());
        assert_eq!(verify(&token(), &upper, issued), Err(Refused::BadMac));
        // What the cookie held before sessions: a MAC of the token alone.
        for bad in [
            "",
            "x",
            &"ab".repeat(32),
            "..",
            &format!("{signed}."),
            &format!("{signed}.{mac}.x"),
            &format!("x.1.{mac}"),
        ] {
            assert!(verify(&token(), bad, issued).is_err(), "{bad:?}");
        }
        let plus = format!("{}.+{}.{mac}", id.as_str(), issued.timestamp());
        assert_eq!(verify(&token(), &plus, issued), Err(Refused::Malformed));
    }

    #[test]
    fn the_cookie_is_secure_and_host_only_over_https() {
        assert_eq!(
            set_cookie(true, "v", SESSION_TTL),
            "__Host-foyer_status=v; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=43200"
        );
        assert_eq!(
            set_cookie(false, "v", SESSION_TTL),
            "foyer_status=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"
        );
        assert!(served_over_https(&config("https://foyer.example.org")));
        assert!(!served_over_https(&config("http://127.0.0.1:29330")));
        // Browsers come through an https proxy, the homeserver over http on the host:
        // the browsers' scheme decides.
        assert!(served_over_https(&config_public("http://127.0.0.1:29330", "https://foyer.example.org")));
        assert!(!served_over_https(&config_public("https://foyer.internal", "http://foyer.example.org")));

        // Each deployment reads its own name only: over https a plain cookie (which any
        // http page of the domain could have set) is not taken.
        let now = Utc::now();
        let value = cookie_value(&config("https://foyer.example.org").api.token, &SessionId::random(), now);
        for (url, name, taken) in [
            ("https://foyer.example.org", HOST_COOKIE, true),
            ("https://foyer.example.org", COOKIE, false),
            ("http://127.0.0.1:29330", COOKIE, true),
            ("http://127.0.0.1:29330", HOST_COOKIE, false),
        ] {
            let headers = cookie_header(&format!("other=1; {name}={value}"));
            assert_eq!(sessions(&headers, &config(url), now).len(), usize::from(taken), "{name} on {url}");
        }
        // A browser may hold an outdated cookie beside the current one.
        let headers = cookie_header(&format!("{COOKIE}={}; {COOKIE}={value}", "f".repeat(64)));
        assert_eq!(sessions(&headers, &config("http://127.0.0.1:29330"), now).len(), 1);
    }

    #[test]
    fn only_the_page_itself_may_log_out() {
        let http = config("http://127.0.0.1:29330");
        let https = config("https://foyer.example.org");
        let public = config_public("http://127.0.0.1:29330", "https://foyer.example.org");
        let request = |pairs: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            headers
        };
        let host = ("host", "127.0.0.1:29330");
        for (headers, config, allowed) in [
            (request(&[("sec-fetch-site", "same-origin")]), &http, true),
            (request(&[("sec-fetch-site", "none")]), &http, true),
            (request(&[("sec-fetch-site", "cross-site")]), &http, false),
            (request(&[("sec-fetch-site", "same-site")]), &http, false),
            // Sec-Fetch-Site, when sent, decides.
            (request(&[("sec-fetch-site", "cross-site"), ("origin", "http://127.0.0.1:29330"), host]), &http, false),
            (request(&[("origin", "http://127.0.0.1:29330"), host]), &http, true),
            (request(&[("origin", "http://localhost:8080"), ("host", "localhost:8080")]), &http, true),
            (request(&[("origin", "https://evil.example"), host]), &http, false),
            (request(&[("origin", "http://127.0.0.1:29331"), host]), &http, false),
            (request(&[("origin", "null"), host]), &http, false),
            (request(&[host]), &http, false),
            (request(&[]), &http, false),
            // Behind a proxy that rewrites Host, appservice.url names the origin.
            (request(&[("origin", "https://foyer.example.org"), ("host", "10.0.0.5:29330")]), &https, true),
            (request(&[("origin", "http://foyer.example.org"), ("host", "foyer.example.org")]), &https, false),
            // With a public URL apart, it names the origin too.
            (request(&[("origin", "https://foyer.example.org"), ("host", "127.0.0.1:29330")]), &public, true),
            (request(&[("origin", "http://foyer.example.org"), ("host", "foyer.example.org")]), &public, false),
        ] {
            assert_eq!(same_origin(&headers, config), allowed, "{headers:?}");
        }
    }
}
