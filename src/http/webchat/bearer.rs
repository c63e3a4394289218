//! The web chat's bearer: the session a request names in `Authorization: Bearer
//! <session>`, found by its hash, and the one answer for each way it can be missing.
//! Every route of the chat API that acts for a fan starts here.

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use chrono::Utc;

use crate::{
    http::{AppState, bearer_token, error},
    model::{SessionHash, SessionState, WebSession},
    store::StoreError,
    words,
};

/// The live session the request's bearer names, with its hash, or the 401 saying why
/// there is none (missing, unknown, expired, ended), or a 503.
pub(super) async fn live_session(state: &AppState, headers: &HeaderMap) -> Result<(SessionHash, WebSession), Response> {
    let Some(secret) = bearer_token(headers).and_then(|t| std::str::from_utf8(t).ok()) else {
        return Err(unauthorized("FOYER_SESSION_MISSING", "send the session as Authorization: Bearer <session>"));
    };
    let hash = SessionHash::of_secret(secret);
    let session = match state.store.web_session(&hash, Utc::now()).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return Err(unauthorized(
                "FOYER_SESSION_UNKNOWN",
                "this session is unknown or was forgotten; get a new one",
            ));
        }
        Err(e) => return Err(unavailable(&e)),
    };
    match session.state {
        SessionState::Live => Ok((hash, session)),
        SessionState::Expired => {
            let at = session.session.expires_at.to_rfc3339();
            Err(unauthorized("FOYER_SESSION_EXPIRED", format!("this session expired at {at}; get a new one")))
        }
        SessionState::Ended { reason, .. } => {
            Err(unauthorized("FOYER_SESSION_ENDED", words::web::session_ended(reason)))
        }
    }
}

fn unauthorized(errcode: &str, message: impl Into<String>) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, errcode, message);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// The store cannot answer: a 503 the page retries after a second.
pub(super) fn unavailable(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "web chat: the store cannot answer");
    let mut response =
        error(StatusCode::SERVICE_UNAVAILABLE, "FOYER_UNAVAILABLE", "Foyer cannot answer now; retry in a moment");
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}
