//! `GET /status`: a server-rendered page for the admin at 3 a.m. It lists reservations
//! by phase with countdowns, member counts, room links and the last error of a failing
//! reservation, refreshes itself, and needs no JavaScript.
//!
//! It is guarded by `api.token`: a login form sets a cookie holding a MAC of the token
//! (never the token itself), so changing the token logs everyone out. A bearer token
//! works too, for `curl`.

use std::collections::HashMap;

use axum::{
    Form, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::{
    api,
    http::{AppState, has_token},
    lifecycle::room::{self, alias, escape},
    reservation::ReservationId,
    schedule::{self, Phase},
    secret::Secret,
    store::ReservationRecord,
};

const COOKIE: &str = "foyer_status";
/// The login form's largest body: a token of a few hundred bytes fits many times over.
pub const MAX_LOGIN_BYTES: usize = 4096;
/// Seconds between the page's own refreshes.
const REFRESH: u32 = 5;
/// Rows shown per phase; the read API lists the rest.
const ROWS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/status", get(page))
        .route("/status/login", post(login).layer(DefaultBodyLimit::max(MAX_LOGIN_BYTES)))
        .route("/status/logout", post(logout))
}

/// The cookie's value: HMAC-SHA256 of a fixed label under the API token.
fn session_value(token: &Secret) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"foyer status page session v1");
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn has_session(headers: &HeaderMap, token: &Secret) -> bool {
    let expected = Secret::new(session_value(token));
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && expected.matches(value.as_bytes()))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    if !state.config.api.token.matches(form.token.trim().as_bytes()) {
        tracing::warn!("status page: a login with a wrong token");
        return login_page(Some("That is not the API token (`api.token` in Foyer's config)."));
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/status; HttpOnly; SameSite=Strict; Max-Age=604800",
        session_value(&state.config.api.token)
    );
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/status".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/status; HttpOnly; SameSite=Strict; Max-Age=0");
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/status".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

fn login_page(problem: Option<&str>) -> Response {
    let problem = problem.map(|p| format!("<p class=error role=alert>{}</p>", escape(p))).unwrap_or_default();
    let body = format!(
        "<h1>Foyer status</h1>{problem}\
         <form method=post action=/status/login>\
         <label>API token <input name=token type=password autocomplete=current-password autofocus required></label> \
         <button type=submit>Log in</button></form>\
         <p class=hint>The token is <code>api.token</code> in Foyer's config.</p>"
    );
    (StatusCode::UNAUTHORIZED, Html(document("Foyer status — log in", "", &body))).into_response()
}

fn document(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">{head}<title>{}</title><style>{STYLE}</style></head>\
         <body>{body}</body></html>",
        escape(title)
    )
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1b1b;background:#fafafa}\
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #e3e3e3;vertical-align:top}\
th{font-weight:600;background:#f0f0f0}code{font-size:.9em}.error{color:#a40000}.muted{color:#666}\
.failing td{background:#fff1f0}form{margin:.3rem 0}.summary span{margin-right:1rem}";

struct Row<'a> {
    record: &'a ReservationRecord,
    phase: Phase,
}

async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = &state.config.api.token;
    if !has_session(&headers, token) && !has_token(&headers, token) {
        return login_page(None);
    }
    let now = Utc::now();
    // The walk reads light rows (no counts); the rows shown are then read in full, at once.
    let mut counts: Vec<(Phase, usize)> = Phase::ALL.iter().map(|p| (*p, 0)).collect();
    let (mut shown, mut failing, mut failing_total) = (Vec::new(), Vec::new(), 0);
    let listed = api::each_reservation(&state, now, |phase, record| {
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
        Err(e) => {
            tracing::error!(error = %e, "status page: store unavailable");
            let body = "<h1>Foyer status</h1><p class=error>The database cannot be read now; this page tries again by itself.</p>";
            let head = format!("<meta http-equiv=refresh content={REFRESH}>");
            return (StatusCode::SERVICE_UNAVAILABLE, Html(document("Foyer status", &head, body))).into_response();
        }
    };
    let rows = |list: &[(Phase, ReservationId)]| -> Vec<Row> {
        list.iter().filter_map(|(phase, id)| Some(Row { record: full.get(id)?, phase: *phase })).collect()
    };
    let failing = Failing { rows: rows(&failing), total: failing_total };
    Html(render(&state, &rows(&shown), &failing, &counts, now)).into_response()
}

/// Failing reservations: how many there are, and the first of them in full.
struct Failing<'a> {
    rows: Vec<Row<'a>>,
    total: usize,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn render(state: &AppState, rows: &[Row], failing: &Failing, counts: &[(Phase, usize)], now: DateTime<Utc>) -> String {
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
    let room_alias = alias(&state.config, record);
    let room = match &record.room_id {
        Some(_) => format!("<a href=\"{}\">{}</a>", escape(&room::matrix_to(&room_alias)), escape(room_alias.as_str())),
        None => "<span class=muted>not yet</span>".to_owned(),
    };
    let error = record.last_error.as_deref().map(escape).unwrap_or_default();
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
        active = record.tickets.active,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_a_mac_of_the_token_never_the_token() {
        let token = Secret::new("a".repeat(40));
        let value = session_value(&token);
        assert_eq!(value.len(), 64);
        assert!(!value.contains(&"a".repeat(8)));
        assert_ne!(value, session_value(&Secret::new("b".repeat(40))));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, format!("other=1; {COOKIE}={value}").parse().unwrap());
        assert!(has_session(&headers, &token));
        assert!(!has_session(&headers, &Secret::new("b".repeat(40))));
        headers.insert(header::COOKIE, format!("{COOKIE}={}", "a".repeat(40)).parse().unwrap());
        assert!(!has_session(&headers, &token), "the token itself is not a session");
    }
}
