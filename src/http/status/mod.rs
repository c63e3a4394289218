//! `GET /status`: a server-rendered page for the admin at 3 a.m. It lists reservations
//! by phase with countdowns, member counts, room links and the last error of a failing
//! reservation, refreshes itself, and needs no JavaScript.
//!
//! It is guarded by `api.token`. A bearer token works, for `curl`; a browser logs in with
//! a form and gets a session cookie: a random session id and its issue time, with a MAC
//! keyed by a key derived from the token (the cookie never holds the token). A cookie
//! counts while its MAC holds (so a new `api.token` logs everyone out), for
//! [`session::SESSION_TTL`] from its issue, and while its session is in the store: logging out
//! deletes the session there, so a copy of the cookie is dead on every instance and
//! after a restart. When admins reach Foyer over https (`appservice.public_url`, the
//! address browsers use, whatever the homeserver uses) the cookie is `Secure` and named
//! with the `__Host-` prefix. Logging out takes a POST from Foyer's own page, so another
//! site cannot log the admin out. Every answer under `/status` carries [`POLICY`]: the
//! pages run no script, load nothing, post only to Foyer, and no site may frame them
//! (a framed login form or Log out button could be clicked through).
//!
//! This file holds the routes and the policy on every answer; `session.rs` the login,
//! the cookie and the logout; `page.rs` the page itself, read from the store and
//! rendered.

mod page;
mod session;

pub use session::cookie_value;

use axum::{
    Router,
    http::{HeaderValue, header},
    response::Response,
};

use crate::http::AppState;
pub(crate) use page::page;
pub(crate) use session::{login, logout};

/// The login form's largest body: a token of a few hundred bytes fits many times over.
pub const MAX_LOGIN_BYTES: usize = 4096;

/// The Content-Security-Policy of every answer under `/status`: no script, nothing
/// loaded, the inline style, forms posted to Foyer only, and never framed.
pub const POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: &AppState) -> Router<AppState> {
    crate::http::routes(crate::http::Group::Status, state).layer(axum::middleware::map_response(with_policy))
}

/// [`POLICY`] on an answer, and `X-Frame-Options` for browsers that predate
/// `frame-ancestors`.
async fn with_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// This module's routes, one of the tables [`super::ROUTES`] lists: a route is added
/// here, beside its handler, and in `docs/openapi.yaml`.
#[rustfmt::skip]
pub(super) const ROUTES: &[super::Route] = super::route_table![Status:
    GET "/status" => page,
    POST "/status/login" => login [axum::extract::DefaultBodyLimit::max(MAX_LOGIN_BYTES)],
    POST "/status/logout" => logout,
];
