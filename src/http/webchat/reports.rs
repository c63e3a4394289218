//! `POST /chat/v1/reports`: a web fan reports a message to the moderators (docs/web-chat.md,
//! "Reports"). The report goes into the moderation record and out to the platform as
//! `message.reported`, in one transaction; the same fan reporting the same message again
//! adds nothing and is answered the same. Only a message the chat showed can be reported:
//! one in the reservation's room log.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use ruma::{EventId, OwnedEventId};
use serde_json::{Value, json};

use super::bearer::{live_session, unavailable};
use crate::{
    http::{AppState, error},
    model::{NewReport, ReportReason, ReportedMessage},
};

/// The largest request body: an event id and a reason of 500 characters, with room.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

pub async fn report(State(state): State<AppState>, headers: HeaderMap, raw: Bytes) -> Response {
    let session = match live_session(&state, &headers).await {
        Ok((_, session)) => session.session,
        Err(answer) => return answer,
    };
    let (event_id, reason) = match parse(&raw) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, "FOYER_BAD_REPORT", message),
    };
    let entry = match state.store.logged_message(&session.reservation, &event_id).await {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            return error(StatusCode::NOT_FOUND, "FOYER_MESSAGE_UNKNOWN", "there is no such message in this chat");
        }
        Err(e) => return unavailable(&e),
    };
    let shown: Value = serde_json::from_str(entry.payload.as_str()).unwrap_or_default();
    let text = |pointer: &str| shown.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
    let report = NewReport {
        reservation: session.reservation.clone(),
        event_id: event_id.clone(),
        reporter: session.viewer.clone(),
        reason,
        message: ReportedMessage {
            sender_name: text("/sender/name"),
            sender_role: text("/sender/role"),
            body: text("/body"),
            origin_ts: entry.origin_ts,
        },
        at: Utc::now(),
    };
    match state.store.record_report(&report).await {
        Ok(new) => {
            let result = if new { "recorded" } else { "again" };
            metrics::counter!("foyer_web_reports_total", "result" => result).increment(1);
            tracing::info!(reservation_id = %session.reservation, event_id = %event_id, result, "a web fan reported a message");
            Json(json!({ "event_id": event_id })).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// Reads `{"event_id", "reason"}` (`reason` may be left out), naming what is wrong.
fn parse(raw: &[u8]) -> Result<(OwnedEventId, ReportReason), String> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| format!("the body is not JSON: {e}"))?;
    let event_id = value.get("event_id").and_then(Value::as_str).ok_or("event_id must be a string")?;
    let event_id = EventId::parse(event_id).map_err(|_| "event_id is not an event id".to_owned())?;
    let reason = match value.get("reason") {
        None | Some(Value::Null) => "",
        Some(Value::String(reason)) => reason,
        Some(_) => return Err("reason must be a string".to_owned()),
    };
    Ok((event_id, ReportReason::parse(reason)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_a_message_and_may_say_why() {
        let (id, reason) = parse(br#"{"event_id": "$abc:example.org", "reason": "spam"}"#).unwrap();
        assert_eq!((id.as_str(), reason.as_str()), ("$abc:example.org", "spam"));
        assert_eq!(parse(br#"{"event_id": "$abc"}"#).unwrap().1.as_str(), "");
        for (body, says) in [
            (&br#"{"reason": "x"}"#[..], "event_id must be a string"),
            (br#"{"event_id": "abc"}"#, "event_id is not an event id"),
            (br#"{"event_id": "$a", "reason": 5}"#, "reason must be a string"),
            (br#"[]"#, "event_id must be a string"),
            (b"nope", "the body is not JSON"),
        ] {
            let refused = parse(body).unwrap_err();
            assert!(refused.contains(says), "{refused}");
        }
        let long = format!(r#"{{"event_id": "$a", "reason": "{}"}}"#, "x".repeat(501));
        assert!(parse(long.as_bytes()).unwrap_err().contains("limit is 500"));
    }
}
