//! The status page itself: reservations by phase, the failing ones, the outbox, read
//! from the store and rendered as HTML that refreshes itself.

use std::collections::HashMap;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};

use super::session::{has_session, login_page};
use crate::{
    html::{document, escape},
    http::{AppState, has_token},
    model::{ReservationId, ReservationRecord, naming},
    outbox::send::OutboxStatus,
    query,
    schedule::{self, Phase},
    store::{FailingInvite, StoreError},
};

/// Seconds between the page's own refreshes.
const REFRESH: u32 = 5;
/// Rows shown per phase; the read API lists the rest.
const ROWS: usize = 100;
/// Holders who cannot be invited named per reservation; `!foyer show` and the tickets
/// listing name the rest.
const NAMED_FAILURES: u32 = 5;

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
    cannot_invite: &'a [FailingInvite],
}

pub(crate) async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
    let mut cannot_invite: HashMap<ReservationId, Vec<FailingInvite>> = HashMap::new();
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
            .map(|f| format!("<code>{}</code> ({})", escape(f.user_id.as_str()), escape(&f.error)))
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
    use chrono::TimeDelta;

    use super::*;

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
}
