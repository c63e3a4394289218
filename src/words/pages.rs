//! The status page (`GET /status`) as the admin reads it: the page itself, its login and
//! logout answers, and the outbox's paragraph; and the HTML transcript's heading. The
//! claim page is in `claim.rs`.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{human_time, relative};
use crate::{
    config::Config,
    html::{document, document_start, escape},
    model::{FailingInvite, ReservationId, ReservationRecord, naming},
    outbox::OutboxReport,
    schedule::{self, Phase},
};

/// One reservation's row on the page.
pub struct Row<'a> {
    pub record: &'a ReservationRecord,
    pub phase: Phase,
    /// Holders whose invite keeps failing, with the last error.
    pub cannot_invite: &'a [FailingInvite],
}

/// Failing reservations: how many there are, and the first of them in full.
pub struct Failing<'a> {
    pub rows: Vec<Row<'a>>,
    pub total: usize,
}

/// What the page shows: the rows by phase (at most some per phase, `counts` saying how
/// many there are), the failing ones, the outbox, and whether the homeserver is ready.
pub struct Status<'a> {
    pub rows: &'a [Row<'a>],
    pub failing: &'a Failing<'a>,
    pub counts: &'a [(Phase, usize)],
    pub outbox: &'a OutboxReport,
    pub ready: bool,
    /// Seconds between the page's own refreshes.
    pub refresh: u32,
}

fn refresh_head(refresh: u32) -> String {
    format!("<meta http-equiv=refresh content={refresh}>")
}

/// The page when the database cannot be read; it tries again by itself.
pub fn status_unavailable(refresh: u32) -> String {
    let body =
        "<h1>Foyer status</h1><p class=error>The database cannot be read now; this page tries again by itself.</p>";
    document("Foyer status", &refresh_head(refresh), body)
}

/// Why a login did not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginProblem {
    WrongToken,
    CannotWrite,
}

/// The login form, with what went wrong with the last try.
pub fn login(problem: Option<LoginProblem>) -> String {
    let problem = problem.map(|p| match p {
        LoginProblem::WrongToken => "That is not the API token (`api.token` in Foyer's config).",
        LoginProblem::CannotWrite => {
            "The database cannot be written now, so no login can be recorded; try again in a moment."
        }
    });
    let problem = problem.map(|p| format!("<p class=error role=alert>{}</p>", escape(p))).unwrap_or_default();
    let body = format!(
        "<h1>Foyer status</h1>{problem}\
         <form method=post action=/status/login>\
         <label>API token <input name=token type=password autocomplete=current-password autofocus required></label> \
         <button type=submit>Log in</button></form>\
         <p class=hint>The token is <code>api.token</code> in Foyer's config.</p>"
    );
    document("Foyer status — log in", "", &body)
}

/// A logout that did not come from the page, refused.
pub fn logout_refused() -> String {
    let body = "<h1>Foyer status</h1><p class=error role=alert>This logout did not come from Foyer's \
                status page, so it was refused. Use the Log out button on the page.</p>";
    document("Foyer status", "", body)
}

/// A logout whose session could not be ended.
pub fn logout_failed() -> String {
    let body = "<h1>Foyer status</h1><p class=error role=alert>The database cannot be written now, \
                so the session could not be ended. Try logging out again in a moment.</p>";
    document("Foyer status", "", body)
}

/// The HTML transcript of reservation `id` up to its first line: the room, how many
/// messages, when it was saved (`made`, as the lines' times read).
pub fn transcript_start(id: &ReservationId, room_id: &str, messages: impl std::fmt::Display, made: &str) -> String {
    let title = format!("Transcript of {id}");
    format!(
        "{}<h1>{}</h1><p class=muted>Room <code>{}</code>, {} messages, saved {made}.</p><table>\
         <tr><th>Time (UTC)</th><th>Who</th><th>Message</th></tr>",
        document_start(&title, ""),
        escape(&title),
        escape(room_id),
        messages,
    )
}

/// A show's public archive (docs/replay.md, "Public archive"): its title, how many
/// messages, and the table of the messages, whose rows `lines` are (each escaped by the
/// caller), names only.
pub fn public_archive(title: &str, messages: usize, lines: &str) -> String {
    let heading = format!("Chat of “{title}”");
    let body = format!(
        "<h1>{}</h1><p class=muted>The public archive of this show's chat ({messages} {}). \
         Members were told before they wrote that it would be public.</p><table>\
         <tr><th>Time (UTC)</th><th>Who</th><th>Message</th></tr>{lines}</table>",
        escape(&heading),
        if messages == 1 { "message" } else { "messages" },
    );
    document(&heading, "", &body)
}

/// What marks Foyer's own notices in the HTML transcript, after the sender.
pub const TRANSCRIPT_NOTICE: &str = " <span class=muted>(Foyer's notice)</span>";

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The outbox's paragraph: whether events reach the platform, how many wait and since when.
pub fn outbox(report: &OutboxReport) -> String {
    let OutboxReport::On { paused, waiting, oldest, now } = *report else {
        return "<p class=muted id=outbox>Outbox: no <code>platform.webhook_url</code>; no events are sent.</p>"
            .to_owned();
    };
    let state = if paused {
        "<b class=error id=outbox-state>paused</b> (the platform answered 410 Gone; \
         <code>!foyer outbox resume</code> sends again)"
    } else {
        "<span id=outbox-state>sending</span>"
    };
    let oldest = match oldest {
        Some(at) => format!(", the oldest written {}", relative(now, at)),
        None => String::new(),
    };
    format!("<p id=outbox>Outbox: {state} · <b id=outbox-depth>{waiting}</b> waiting{oldest}</p>")
}

/// The status page.
pub fn status(config: &Config, page: &Status, now: DateTime<Utc>) -> String {
    let Status { rows, failing, counts, outbox: report, ready, refresh } = *page;
    let summary: String = counts
        .iter()
        .map(|(p, n)| format!("<span><a href=#{p}>{p}</a>: <b id=count-{p}>{n}</b></span>", p = p.as_str()))
        .collect();
    let mut body = format!(
        "<h1>Foyer status</h1>\
         <p class=muted>{bot} on {hs} · {state} · as of <time datetime={now_iso}>{now_h}</time> · refreshes every {refresh} s</p>\
         <form method=post action=/status/logout><button type=submit>Log out</button></form>\
         <p class=summary>{summary}<span>failing: <b id=count-failing>{failing}</b></span></p>",
        bot = escape(config.bot_user_id().as_str()),
        hs = escape(config.homeserver.url.as_str()),
        state = if ready { "ready" } else { "<b class=error>waiting for the homeserver</b>" },
        now_iso = time(now),
        now_h = human_time(now),
        failing = failing.total,
    );
    body.push_str(&outbox(report));
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
            body.push_str(&table_row(config, row, now));
        }
        body.push_str("</table>");
        if *count > in_phase.len() {
            body.push_str(&format!(
                "<p class=muted>and {} more; <code>GET /api/v1/reservations?phase={p}</code> lists all.</p>",
                count - in_phase.len()
            ));
        }
    }
    document("Foyer status", &refresh_head(refresh), &body)
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn table_row(config: &Config, row: &Row, now: DateTime<Utc>) -> String {
    let record = row.record;
    let r = &record.reservation;
    let times = schedule::schedule(record, &config.rooms);
    let when = |t: DateTime<Utc>| {
        format!("<time datetime={}>{}</time><br><span class=muted>{}</span>", time(t), relative(now, t), human_time(t))
    };
    let room_alias = config.room_alias(&record.reservation.id);
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
         <td>{holders_in}{joined} joined, {invited} invited</td><td>{active}</td><td>{room}</td><td class=error>{error}</td></tr>",
        id = escape(r.id.as_str()),
        phase = row.phase.as_str(),
        class = if record.last_error.is_some() { " class=failing" } else { "" },
        title = escape(r.title.as_str()),
        opens = when(times.opens_at),
        archives = when(times.archives_at),
        holders_in = holders_in(row),
        joined = record.members.joined,
        invited = record.members.invited,
        active = tickets,
    )
}

/// While the room is open (before and during the show): how many of the people holding
/// a ticket are in, over how many there are. The holders are counted by Matrix ID, not
/// by ticket: a fan with two tickets joins once, and an unclaimed email ticket has no
/// one to join yet (the Tickets column counts it), so the figure reaches n/n once
/// everyone who can be in is in. Hosts, moderators, web fans and the doorkeeper, without a
/// ticket, are only in "joined".
fn holders_in(row: &Row) -> String {
    if !matches!(row.phase, Phase::Open | Phase::Live) {
        return String::new();
    }
    let (members, tickets) = (&row.record.members, &row.record.tickets);
    format!("<b class=holders-in>{}/{}</b> holders in<br>", members.holders_joined, tickets.holders)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::outbox::send::OutboxStatus;

    #[test]
    fn the_outbox_line_says_paused_and_how_many_wait() {
        let now = Utc::now();
        let status = OutboxStatus { depth: 2, oldest: Some(now - TimeDelta::seconds(90)), paused: true };
        let line = outbox(&OutboxReport::new(&status, true, now));
        assert!(line.contains("id=outbox-state>paused</b>"), "{line}");
        assert!(line.contains("<b id=outbox-depth>2</b> waiting, the oldest written 1 min ago"), "{line}");
        let idle = outbox(&OutboxReport::new(&OutboxStatus::default(), true, now));
        assert!(idle.contains(">sending<") && idle.contains("<b id=outbox-depth>0</b> waiting</p>"), "{idle}");
        assert!(outbox(&OutboxReport::new(&status, false, now)).contains("no events are sent"));
    }

    #[test]
    fn an_open_room_shows_its_holders_in_over_its_holders() {
        let mut record = crate::test_support::record(Default::default(), vec![]);
        record.tickets.holders = 3;
        record.members.holders_joined = 2;
        let row = |phase| Row { record: &record, phase, cannot_invite: &[] };
        for phase in [Phase::Open, Phase::Live] {
            assert_eq!(holders_in(&row(phase)), "<b class=holders-in>2/3</b> holders in<br>");
        }
        for phase in [Phase::Scheduled, Phase::Ended, Phase::Archived, Phase::Cancelled] {
            assert_eq!(holders_in(&row(phase)), "", "{phase:?}");
        }
    }
}
