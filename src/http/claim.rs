//! `GET /claim/{code}`: the page a fan reaches from the link in their ticket's email
//! (contract §7). Server-rendered, no script: it says which show the ticket is for, the
//! exact line to send the bot and where, and what to do without a Matrix account. A code
//! that does not work (unknown, revoked, archived, mistyped) gets one 404 page that
//! tells nothing about which codes exist.

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use chrono::Utc;

use crate::{
    config::Config,
    html::{document, escape},
    http::AppState,
    model::{ClaimCode, ReservationRecord, naming},
    schedule::{self, Phase},
};

pub fn router(state: &AppState) -> Router<AppState> {
    super::routes(super::Group::Claim, state)
}

/// The claim page's Content-Security-Policy: it runs nothing, loads nothing, has no
/// form, and no other site may frame it (a framed page could be dressed up as another's
/// and its code read off by a fan).
pub const POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The code is in the URL: the page is neither cached, nor indexed, nor passed on as a
/// referrer; it runs nothing and loads nothing, and is never framed.
fn answer(status: StatusCode, body: String) -> Response {
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::HeaderName::from_static("x-robots-tag"), "noindex"),
        (header::CONTENT_SECURITY_POLICY, POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (status, headers, Html(body)).into_response()
}

fn not_found(config: &Config) -> Response {
    tracing::info!(result = "not_found", "claim page");
    metrics::counter!("foyer_claim_pages_total", "result" => "not_found").increment(1);
    let body = format!(
        "<h1>This claim link does not work</h1>\
         <p>There is no ticket to claim with this code: it may have been mistyped, the ticket \
         revoked, or the show may be over. Please check the link in your ticket's email, or ask \
         the organiser of the show.</p>{}",
        signup(config)
    );
    answer(StatusCode::NOT_FOUND, document("Claim a ticket", "", &body))
}

fn signup(config: &Config) -> String {
    match &config.homeserver.signup_url {
        Some(url) => format!(
            "<h2>No Matrix account yet?</h2><p><a href=\"{}\">Create one on {}</a>, then come back to this page.</p>",
            escape(url.as_str()),
            escape(config.homeserver.server_name.as_str())
        ),
        None => String::new(),
    }
}

pub(super) async fn page(State(state): State<AppState>, Path(code): Path<String>) -> Response {
    let config = &state.config;
    let Ok(code) = ClaimCode::parse(&code) else { return not_found(config) };
    let status = match state.store.claim_status(&code.hash()).await {
        Ok(Some(status)) => status,
        Ok(None) => return not_found(config),
        Err(e) => {
            tracing::error!(error = %e, "claim page: store unavailable");
            let body = "<h1>Please try again in a minute</h1><p>This page cannot be shown right now.</p>";
            return answer(StatusCode::SERVICE_UNAVAILABLE, document("Claim a ticket", "", body));
        }
    };
    let record = state.store.reservation(&status.reservation_id).await.ok().flatten();
    let result = if status.holder.is_some() { "claimed" } else { "unclaimed" };
    tracing::info!(reservation_id = %status.reservation_id, result, "claim page");
    metrics::counter!("foyer_claim_pages_total", "result" => result).increment(1);
    let body = render(config, &code, record.as_ref(), status.holder.as_ref().map(|h| h.as_str()));
    answer(StatusCode::OK, document("Claim your ticket", "", &body))
}

fn render(config: &Config, code: &ClaimCode, record: Option<&ReservationRecord>, holder: Option<&str>) -> String {
    let now = Utc::now();
    let bot = config.bot_user_id();
    let show = match record {
        Some(record) => {
            let r = &record.reservation;
            format!(
                "<h1>{}</h1><p>Starts {} (<time datetime=\"{}\">{}</time>).</p>",
                escape(r.title.as_str()),
                escape(&schedule::relative(now, r.starts_at)),
                r.starts_at.to_rfc3339(),
                escape(&schedule::human_time(r.starts_at)),
            )
        }
        None => "<h1>Your ticket</h1><p>The show's details are not known yet.</p>".to_owned(),
    };
    let room = record.map(|record| {
        let alias = config.room_alias(&record.reservation.id);
        let (_, status) = schedule::at(record, &config.rooms, now);
        (naming::matrix_to(&alias), alias, status.phase)
    });
    let claimed = match (holder, &room) {
        (Some(holder), Some((link, alias, phase))) => {
            let open = matches!(phase, Phase::Open | Phase::Live | Phase::Ended);
            let when = if open { "The chat room is open" } else { "The chat room opens before the show" };
            format!(
                "<p><b>This ticket is claimed by <code>{}</code>.</b> {when}: <a href=\"{}\">{}</a>.</p>",
                escape(holder),
                escape(link),
                escape(alias.as_str())
            )
        }
        (Some(holder), None) => format!("<p><b>This ticket is claimed by <code>{}</code>.</b></p>", escape(holder)),
        (None, _) => String::new(),
    };
    let command = naming::claim_command(code);
    let bot_link = format!("https://matrix.to/#/{bot}");
    let how = format!(
        "<h2>Claim it from your Matrix account</h2>\
         <ol><li>Open a direct chat with <a href=\"{}\"><code>{}</code></a> (in Element: “Start chat”).</li>\
         <li>Send exactly this message:<br><code class=command>{}</code></li>\
         <li>I invite you to the show's chat room: at once if it is open, otherwise when it opens.</li></ol>",
        escape(&bot_link),
        escape(bot.as_str()),
        escape(&command),
    );
    format!("{show}{claimed}{how}{}", signup(config))
}
