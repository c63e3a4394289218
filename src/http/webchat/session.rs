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
//! Or a claim code typed into the page (`{"reservation_id", "claim_code"}`): a session of
//! 24 hours for the code's ticket, named as the platform named the ticket's holder, with
//! wrong codes throttled by the client's address (`webchat::address`).
//!
//! After the archive only a viewer token gets in, to a read-only session, while the
//! transcript is kept; the store no longer knows an archived show's claim codes.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::bearer::unavailable;
use crate::{
    config::WebchatConfig,
    http::{AppState, error},
    model::{
        ClaimCode, DisplayName, NewWebSession, ReservationId, ReservationRecord, SessionHash, SessionSource, TicketId,
        ViewerKey, ViewerSub, WebRole, naming,
    },
    webchat::{Protected, Viewer, address, imitates, log::BOT_NAME, token},
    words,
};

/// The largest request body: a token of [`token::MAX_TOKEN_BYTES`] and a little more.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
struct Request {
    token: Option<String>,
    reservation_id: Option<String>,
    claim_code: Option<String>,
}

/// Who a request let in, before the checks both ways share.
struct Admitted {
    reservation: ReservationId,
    record: ReservationRecord,
    viewer: ViewerKey,
    generation: i64,
    name: DisplayName,
    source: SessionSource,
    expires_at: DateTime<Utc>,
}

pub async fn create(
    State(state): State<AppState>, peer: Option<Extension<ConnectInfo<SocketAddr>>>, headers: HeaderMap, body: Bytes,
) -> Response {
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
    let now = Utc::now();
    let admitted = match (request.token, request.claim_code) {
        (Some(jwt), _) => by_token(&state, webchat, jwt, page, now).await,
        (None, Some(code)) => {
            let Some(page) = page else {
                return bad_request("send the page's reservation_id with the claim code");
            };
            // Without a peer (a router driven in a unit test) all share one address.
            let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(ConnectInfo(peer))| peer.ip());
            let forwarded: Vec<&str> =
                headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
            let client = address::client(peer, &forwarded, |a| webchat.trusts_proxy(a));
            by_claim_code(&state, address::throttle_key(client), &code, page, now).await
        }
        (None, None) => return bad_request("send the viewer token as {\"token\": \"…\"}"),
    };
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    match state.store.viewer_banned(&admitted.reservation, &admitted.viewer).await {
        Ok(false) => {}
        Ok(true) => return forbidden("FOYER_VIEWER_BANNED", "you are banned from this show's chat"),
        Err(e) => return unavailable(&e),
    }
    // The hosts' and moderators' names as the room knows them, and the bot's.
    let mut protected = vec![BOT_NAME.to_owned()];
    if let Some(room) = admitted.record.room_id.as_deref().and_then(|r| ruma::RoomId::parse(r).ok()) {
        match state.store.member_names(&room, &admitted.record.reservation.staff()).await {
            Ok(names) => protected.extend(names.into_iter().map(|(_, name)| name)),
            Err(e) => return unavailable(&e),
        }
    }
    let names: Vec<&str> = protected.iter().map(String::as_str).collect();
    if let Some(imitated) = imitates(admitted.name.as_str(), &names) {
        let why = match imitated {
            Protected::Name(_) => "it looks like the name of a host, a moderator or Foyer's bot".to_owned(),
            role @ Protected::Role(_) => role.to_string(),
        };
        return forbidden("FOYER_NAME_IMITATES", format!("the name cannot be used in this chat: {why}"));
    }
    // The key the fan's own messages will carry, so that the page offers Delete on them.
    let me_key = {
        let server = &state.config.homeserver.server_name;
        let key = state.config.web_key();
        let Admitted { reservation, viewer, generation, .. } = &admitted;
        let user = naming::web_user_id(&key, &webchat.puppet_prefix, reservation, viewer, *generation, server);
        naming::sender_key(&key, reservation, &user)
    };
    // The show's longest message, which the page counts down to.
    let defaults = &state.config.rooms.rules;
    let max_length = admitted.record.reservation.rules(defaults).map_or(defaults.max_length, |r| r.max_length);
    // The page says so throughout (docs/replay.md, "Public archive").
    let public_archive = admitted.record.reservation.archive.is_public();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let Admitted { reservation, viewer, generation, name, source, expires_at, .. } = admitted;
    let session = NewWebSession {
        holder_generation: generation,
        hash: SessionHash::of_secret(&secret),
        reservation,
        viewer,
        name: name.clone(),
        role: WebRole::Web,
        source,
        created_at: now,
        expires_at,
    };
    if let Err(e) = state.store.create_web_session(&session).await {
        return unavailable(&e);
    }
    metrics::counter!("foyer_webchat_sessions_total", "result" => "opened").increment(1);
    Json(json!({
        "session": secret,
        "expires_at": expires_at.to_rfc3339(),
        "me": {"name": name.as_str(), "role": WebRole::Web.as_str(), "max_length": max_length, "key": me_key,
               "public_archive": public_archive},
    }))
    .into_response()
}

/// A viewer token from the platform: verified for the page's reservation (or the one it
/// names), its ticket granted and not revoked, or its `sub` a viewer id.
async fn by_token(
    state: &AppState, webchat: &WebchatConfig, jwt: String, page: Option<ReservationId>, now: DateTime<Utc>,
) -> Result<Admitted, Response> {
    // The reservation the page shows, else the one the token names (its signature is
    // checked next, with every other claim).
    let page = page.or_else(|| named_reservation(&jwt)).unwrap_or_else(unnamed);
    let viewer = match token::verify(&jwt, &webchat.token_secrets, &page, now) {
        Ok(viewer) => viewer,
        Err(e) => {
            tracing::info!(errcode = e.errcode(), "a viewer token was refused");
            metrics::counter!("foyer_webchat_sessions_total", "result" => "refused").increment(1);
            return Err(error(e.status(), e.errcode(), e.to_string()));
        }
    };
    let record = known_reservation(state, &viewer.reservation).await?;
    if record.archived {
        transcript_kept(state, &viewer.reservation).await?;
    }
    let (key_of_viewer, generation) = match &viewer.who {
        Viewer::Ticket(ticket) => {
            match state.store.ticket_revoked(&viewer.reservation, ticket).await {
                Ok(Some(false)) => {}
                Ok(Some(true)) => return Err(forbidden("FOYER_TICKET_REVOKED", "this ticket was revoked")),
                Ok(None) => {
                    return Err(forbidden(
                        "FOYER_TICKET_UNKNOWN",
                        "this ticket is not one the platform granted for this show",
                    ));
                }
                Err(e) => return Err(unavailable(&e)),
            }
            (ViewerKey::Ticket(ticket.clone()), current_generation(state, &viewer.reservation, ticket).await?)
        }
        Viewer::Platform(sub) => match ViewerSub::parse(sub) {
            Ok(sub) => (ViewerKey::Platform(sub), 0),
            Err(_) => return Err(forbidden("FOYER_TOKEN_VIEWER", "the viewer token's sub is not a viewer id")),
        },
    };
    Ok(Admitted {
        reservation: viewer.reservation,
        record,
        viewer: key_of_viewer,
        generation,
        name: viewer.name,
        source: SessionSource::Token,
        expires_at: viewer.expires_at,
    })
}

/// A claim code typed into the page (the one in the fan's email):
/// throttled by the client's address as `!claim` is by user; a code that names no
/// ticket counts against the address, a mistyped one (its checksum) or one for another
/// show does not, since neither is a guess that found nothing. Binds nothing in Matrix.
async fn by_claim_code(
    state: &AppState, client: IpAddr, code: &str, page: ReservationId, now: DateTime<Utc>,
) -> Result<Admitted, Response> {
    let refused = |status, errcode, message: &str| {
        tracing::info!(errcode, "a claim code was refused in the web chat");
        metrics::counter!("foyer_webchat_sessions_total", "result" => "refused").increment(1);
        error(status, errcode, message)
    };
    if let Err(throttled) = state.web_claims.check(&client, Instant::now()) {
        let wait = throttled.wait();
        tracing::info!(wait_s = wait.as_secs(), "a claim code in the web chat was throttled");
        metrics::counter!("foyer_webchat_sessions_total", "result" => "throttled").increment(1);
        let body = json!({
            "errcode": "FOYER_CLAIM_THROTTLED",
            "error": words::web::claim_throttled(wait),
            "retry_after_ms": u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        });
        let retry_after = wait.as_secs().max(1).to_string();
        return Err((StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry_after)], Json(body)).into_response());
    }
    let code = match ClaimCode::parse(code) {
        Ok(code) => code,
        Err(e) => return Err(refused(StatusCode::UNAUTHORIZED, "FOYER_CLAIM_CODE_MISTYPED", &e.to_string())),
    };
    let status = match state.store.claim_status(&code.hash()).await {
        Ok(Some(status)) => status,
        Ok(None) => {
            // Counted all the same: on an archived show's page, a guess still must not
            // go unthrottled (a good code of another show answers otherwise).
            state.web_claims.wrong(&client, Instant::now());
            // The store forgets an archived show's codes; on its page the fan learns why
            // theirs stopped working, whatever code they typed.
            return Err(match state.store.reservation(&page).await {
                Ok(Some(record)) if record.archived => {
                    refused(StatusCode::FORBIDDEN, "FOYER_CHAT_ARCHIVED", words::web::CLAIM_CODE_ARCHIVED)
                }
                Ok(_) => refused(StatusCode::UNAUTHORIZED, "FOYER_CLAIM_CODE_UNKNOWN", words::web::CLAIM_CODE_UNKNOWN),
                Err(e) => unavailable(&e),
            });
        }
        Err(e) => return Err(unavailable(&e)),
    };
    if status.reservation_id != page {
        return Err(refused(StatusCode::FORBIDDEN, "FOYER_WRONG_RESERVATION", words::web::CLAIM_CODE_OTHER_SHOW));
    }
    let record = known_reservation(state, &page).await?;
    let generation = current_generation(state, &page, &status.ticket_id).await?;
    let name = status.display_name.unwrap_or_else(words::web::unnamed_fan);
    Ok(Admitted {
        reservation: page,
        record,
        viewer: ViewerKey::Ticket(status.ticket_id),
        generation,
        name,
        source: SessionSource::ClaimCode,
        expires_at: now + chrono::Duration::hours(24),
    })
}

async fn known_reservation(state: &AppState, id: &ReservationId) -> Result<ReservationRecord, Response> {
    match state.store.reservation(id).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            "FOYER_RESERVATION_UNKNOWN",
            "the viewer token is for a reservation Foyer does not know (yet)",
        )),
        Err(e) => Err(unavailable(&e)),
    }
}

/// After the archive a viewer token opens a read-only session (the replay beside the
/// recording, docs/replay.md) for as long as the transcript it replays is kept.
async fn transcript_kept(state: &AppState, id: &ReservationId) -> Result<(), Response> {
    match state.store.transcript(id).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(forbidden("FOYER_CHAT_ARCHIVED", words::web::ARCHIVED_WITHOUT_TRANSCRIPT)),
        Err(e) => Err(unavailable(&e)),
    }
}

/// Which holder the ticket is with now: a later move ends the session.
async fn current_generation(state: &AppState, id: &ReservationId, ticket: &TicketId) -> Result<i64, Response> {
    match state.store.ticket_generation(id, ticket).await {
        Ok(Some(generation)) => Ok(generation),
        Ok(None) => Err(forbidden("FOYER_TICKET_REVOKED", "this ticket was revoked")),
        Err(e) => Err(unavailable(&e)),
    }
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
