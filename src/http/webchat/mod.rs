//! `GET /chat/{reservation_id}`: the chat beside the player (docs/web-chat.md), a page
//! made to sit in an `<iframe>` of the platform's watch page. One HTML document, its
//! script and its style, all in `assets/` and built into the binary; nothing is loaded
//! from anywhere else and no build step runs.
//!
//! The document is the same for every reservation: the script reads the reservation's
//! id from the address and asks the chat API (`/chat/v1/…`), which alone says whether
//! the fan may read it. So the page reads no database, tells nothing about which
//! reservations exist, and costs next to nothing when a show's audience opens it at
//! once; an id of the wrong shape gets the JSON 404 of any unknown route. The script and
//! style are served under names carrying a hash of their content, so they can be cached
//! for good, while the document is never stored (a stale one would name old assets).
//!
//! The document names `webchat.allowed_origins` (`foyer-player-origins`): after the
//! show the script follows the player's time (`foyer.time` messages) from those origins
//! only, and shows the chat's replay (`replay.rs`) up to it.
//!
//! The sentences the page shows live in the script (`WORDS`, at its top): the client
//! builds every state it shows, so its words stay beside it, one object to translate.
//! Without a `webchat` section every route here answers the JSON 404.

mod bearer;
pub mod hub;
pub(super) mod members;
mod messages;
mod replay;
mod reports;
pub mod session;
pub mod stream;

use std::sync::LazyLock;

use axum::{
    extract::{Path, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

pub use self::messages::{remove as remove_message, send as send_message};
use crate::{config::WebchatConfig, http::AppState, model::ReservationId};

const HTML: &str = include_str!("assets/chat.html");
const SCRIPT: &str = include_str!("assets/chat.js");
const STYLE: &str = include_str!("assets/chat.css");

/// One file the page loads, under its content-hashed name.
struct Asset {
    name: String,
    content_type: &'static str,
    body: &'static str,
}

impl Asset {
    /// `chat.<first 16 hex digits of the SHA-256>.<ext>`.
    fn new(ext: &str, content_type: &'static str, body: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self { name: format!("chat.{hash}.{ext}"), content_type, body }
    }
}

/// The script and the style, and the document naming them.
struct Built {
    assets: [Asset; 2],
    page: String,
}

static BUILT: LazyLock<Built> = LazyLock::new(|| {
    let script = Asset::new("js", "text/javascript; charset=utf-8", SCRIPT);
    let style = Asset::new("css", "text/css; charset=utf-8", STYLE);
    let page = HTML.replace("{js}", &script.name).replace("{css}", &style.name);
    Built { assets: [script, style], page }
});

/// The document's Content-Security-Policy: its own script and style only, requests to
/// Foyer only, no image, no form posted anywhere, and framed only by the allowed origins.
pub fn policy(webchat: &WebchatConfig) -> String {
    let ancestors: Vec<&str> = webchat.allowed_origins.iter().map(|o| o.as_str()).collect();
    let ancestors = if ancestors.is_empty() { "'none'".to_owned() } else { ancestors.join(" ") };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'none'; \
         base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )
}

/// The page for `reservation_id`, or the JSON 404 when web chat is off or the id cannot
/// be one. No `X-Frame-Options`: it cannot name origins, and `frame-ancestors` rules.
pub fn page_answer(webchat: Option<&WebchatConfig>, reservation_id: &str) -> Response {
    let Some(webchat) = webchat else { return not_found() };
    if ReservationId::parse(reservation_id).is_err() {
        return not_found();
    }
    let Ok(policy) = HeaderValue::from_str(&policy(webchat)) else { return not_found() };
    // The origins the page takes the player's time from: those that may frame it.
    let origins: Vec<&str> = webchat.allowed_origins.iter().map(|o| o.as_str()).collect();
    let page = BUILT.page.replace("{origins}", &attribute(&origins.join(" ")));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (HeaderName::from_static("x-robots-tag"), HeaderValue::from_static("noindex")),
        (header::CONTENT_SECURITY_POLICY, policy),
    ];
    (StatusCode::OK, headers, page).into_response()
}

/// Text made safe inside a double-quoted HTML attribute (an origin holds none of these
/// characters, but the document does not rely on it).
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The script or the style by its hashed name; cached for a year, since another content
/// has another name.
pub fn asset_answer(webchat: Option<&WebchatConfig>, file: &str) -> Response {
    let found = BUILT.assets.iter().find(|a| a.name == file);
    let (Some(_), Some(asset)) = (webchat, found) else { return not_found() };
    let headers = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (StatusCode::OK, headers, asset.body).into_response()
}

fn not_found() -> Response {
    super::error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "Unrecognized request")
}

pub(crate) async fn page(State(state): State<AppState>, Path(reservation_id): Path<String>) -> Response {
    page_answer(state.config.webchat.as_ref(), &reservation_id)
}

pub(crate) async fn asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    asset_answer(state.config.webchat.as_ref(), &file)
}

/// This module's routes, one of the tables [`super::ROUTES`] lists: a route is added
/// here, beside its handler, and in `docs/openapi.yaml`.
#[rustfmt::skip]
pub(super) const ROUTES: &[super::Route] = super::route_table![Webchat:
    GET "/chat/{reservation_id}" => page,
    GET "/chat/assets/{file}" => asset,
    POST "/chat/v1/messages" => send_message,
    DELETE "/chat/v1/messages/{event_id}" => remove_message,
    POST "/chat/v1/reports" => reports::report [axum::extract::DefaultBodyLimit::max(reports::MAX_BODY_BYTES)],
    GET "/chat/v1/replay" => replay::replay,
    POST "/chat/v1/session" => session::create [axum::extract::DefaultBodyLimit::max(session::MAX_BODY_BYTES)],
    GET "/chat/v1/stream" => stream::stream,
];

#[cfg(test)]
mod tests;
