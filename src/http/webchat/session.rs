//! `POST /chat/v1/session` (docs/web-chat.md, "Getting in"): a viewer token from the
//! platform becomes a session, a bearer valid on every instance until the token's `exp`.
//!
//! The token is verified (`webchat::token::verify`) for the reservation it names in
//! `rid`, or for the `reservation_id` sent beside it (the page's), which it must then
//! name. Then, in this order: the reservation must be known (404), the ticket granted and
//! not revoked (403), the viewer not banned (403), the name not one that imitates a
//! host's or the bot's (403). Each refusal is `{"errcode", "error"}` with a sentence
//! naming why; neither the token nor a secret is ever in an answer or a log.
//!
//! The session's secret is 32 random bytes (base64url); the store keeps only its hash.
//! A claim code typed into the page (`{"reservation_id", "claim_code"}`) is not taken
//! yet: it is answered 501 in words.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::bearer::unavailable;
use super::messages::MAX_LENGTH;
use crate::{
    http::{AppState, error},
    model::{NewWebSession, ReservationId, SessionHash, SessionSource, ViewerKey, ViewerSub, WebRole, naming},
    webchat::{Protected, Viewer, imitates, log::BOT_NAME, token},
};

/// The largest request body: a token of [`token::MAX_TOKEN_BYTES`] and a little more.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
struct Request {
    token: Option<String>,
    reservation_id: Option<String>,
    claim_code: Option<String>,
}

pub async fn create(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(webchat) = &state.config.webchat else {
        return error(StatusCode::NOT_FOUND, "FOYER_WEBCHAT_OFF", "web chat is not configured on this Foyer");
    };
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => return bad_request("the body must be a JSON object: {\"token\": \"…\"}"),
    };
    let page = match request.reservation_id.as_deref().map(ReservationId::parse) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return bad_request("reservation_id is not a reservation id"),
        None => None,
    };
    let Some(jwt) = request.token else {
        if request.claim_code.is_some() {
            return error(
                StatusCode::NOT_IMPLEMENTED,
                "FOYER_NOT_YET",
                "getting in with a claim code is not built yet; use the viewer token from the platform",
            );
        }
        return bad_request("send the viewer token as {\"token\": \"…\"}");
    };
    let now = Utc::now();
    // The reservation the page shows, else the one the token names (its signature is
    // checked next, with every other claim).
    let page = page.or_else(|| named_reservation(&jwt)).unwrap_or_else(unnamed);
    let viewer = match token::verify(&jwt, &webchat.token_secrets, &page, now) {
        Ok(viewer) => viewer,
        Err(e) => {
            tracing::info!(errcode = e.errcode(), "a viewer token was refused");
            metrics::counter!("foyer_webchat_sessions_total", "result" => "refused").increment(1);
            return error(e.status(), e.errcode(), e.to_string());
        }
    };
    let record = match state.store.reservation(&viewer.reservation).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "FOYER_RESERVATION_UNKNOWN",
                "the viewer token is for a reservation Foyer does not know (yet)",
            );
        }
        Err(e) => return unavailable(&e),
    };
    let (key_of_viewer, generation) = match &viewer.who {
        Viewer::Ticket(ticket) => {
            match state.store.ticket_revoked(&viewer.reservation, ticket).await {
                Ok(Some(false)) => {}
                Ok(Some(true)) => return forbidden("FOYER_TICKET_REVOKED", "this ticket was revoked"),
                Ok(None) => {
                    return forbidden(
                        "FOYER_TICKET_UNKNOWN",
                        "this ticket is not one the platform granted for this show",
                    );
                }
                Err(e) => return unavailable(&e),
            }
            // Which holder the ticket is with now: a move ends this session.
            let generation = match state.store.ticket_generation(&viewer.reservation, ticket).await {
                Ok(Some(generation)) => generation,
                Ok(None) => return forbidden("FOYER_TICKET_REVOKED", "this ticket was revoked"),
                Err(e) => return unavailable(&e),
            };
            (ViewerKey::Ticket(ticket.clone()), generation)
        }
        Viewer::Platform(sub) => match ViewerSub::parse(sub) {
            Ok(sub) => (ViewerKey::Platform(sub), 0),
            Err(_) => return forbidden("FOYER_TOKEN_VIEWER", "the viewer token's sub is not a viewer id"),
        },
    };
    match state.store.viewer_banned(&viewer.reservation, &key_of_viewer).await {
        Ok(false) => {}
        Ok(true) => return forbidden("FOYER_VIEWER_BANNED", "you are banned from this show's chat"),
        Err(e) => return unavailable(&e),
    }
    // The hosts' names as the room knows them, and the bot's.
    let mut protected = vec![BOT_NAME.to_owned()];
    if let Some(room) = record.room_id.as_deref().and_then(|r| ruma::RoomId::parse(r).ok()) {
        match state.store.member_names(&room, &record.reservation.hosts).await {
            Ok(names) => protected.extend(names.into_iter().map(|(_, name)| name)),
            Err(e) => return unavailable(&e),
        }
    }
    let names: Vec<&str> = protected.iter().map(String::as_str).collect();
    if let Some(imitated) = imitates(viewer.name.as_str(), &names) {
        let why = match imitated {
            Protected::Name(_) => "it looks like the name of a host or of Foyer's bot".to_owned(),
            role @ Protected::Role(_) => role.to_string(),
        };
        return forbidden("FOYER_NAME_IMITATES", format!("the name cannot be used in this chat: {why}"));
    }
    // The key the fan's own messages will carry, so that the page offers Delete on them.
    let me_key = state.config.webchat.as_ref().map(|webchat| {
        let server = &state.config.homeserver.server_name;
        let key = state.config.web_key();
        let user =
            naming::web_user_id(&key, &webchat.puppet_prefix, &viewer.reservation, &key_of_viewer, generation, server);
        naming::sender_key(&key, &viewer.reservation, &user)
    });
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let session = NewWebSession {
        holder_generation: generation,
        hash: SessionHash::of_secret(&secret),
        reservation: viewer.reservation.clone(),
        viewer: key_of_viewer,
        name: viewer.name.clone(),
        role: WebRole::Web,
        source: SessionSource::Token,
        created_at: now,
        expires_at: viewer.expires_at,
    };
    if let Err(e) = state.store.create_web_session(&session).await {
        return unavailable(&e);
    }
    metrics::counter!("foyer_webchat_sessions_total", "result" => "opened").increment(1);
    Json(json!({
        "session": secret,
        "expires_at": viewer.expires_at.to_rfc3339(),
        "me": {"name": viewer.name.as_str(), "role": WebRole::Web.as_str(), "max_length": MAX_LENGTH, "key": me_key},
    }))
    .into_response()
}

/// The `rid` a token's claims name, read without checking anything: only to know which
/// reservation to verify it for.
fn named_reservation(jwt: &str) -> Option<ReservationId> {
    let claims = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    ReservationId::parse(claims.get("rid")?.as_str()?).ok()
}

/// A reservation no token names: verifying for it fails on the token's own fault
/// (malformed, signature, a missing `rid`).
fn unnamed() -> ReservationId {
    ReservationId::parse("-").expect("a reservation id")
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "FOYER_BAD_REQUEST", message)
}

fn forbidden(errcode: &str, message: impl Into<String>) -> Response {
    metrics::counter!("foyer_webchat_sessions_total", "result" => "refused").increment(1);
    error(StatusCode::FORBIDDEN, errcode, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservation_a_token_names_is_read_without_trusting_it() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"rid":"jazz","aud":"foyer"}"#);
        assert_eq!(named_reservation(&format!("x.{claims}.y")), Some(ReservationId::parse("jazz").unwrap()));
        assert_eq!(named_reservation("no dots"), None);
        assert_eq!(named_reservation("a.!!.b"), None);
        let _ = unnamed();
    }
}
