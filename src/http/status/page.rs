//! The status page itself: reservations by phase, the failing ones, the outbox, read
//! from the store; its words and HTML are in `words::pages`.

use std::collections::HashMap;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};
use chrono::Utc;

use super::session::{has_session, login_page};
use crate::{
    http::{AppState, has_token},
    model::{FailingInvite, ReservationId, ReservationRecord},
    outbox::OutboxReport,
    query,
    schedule::Phase,
    store::StoreError,
    words::pages::{self, Failing, Row},
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
    (StatusCode::SERVICE_UNAVAILABLE, Html(pages::status_unavailable(REFRESH))).into_response()
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
        Ok(outbox) => OutboxReport::new(&outbox, state.config.platform.is_some(), now),
        Err(e) => return unavailable(e),
    };
    let ready = state.ready.read().map(|r| r.is_some()).unwrap_or(false);
    let page = pages::Status {
        rows: &rows(&shown),
        failing: &failing,
        counts: &counts,
        outbox: &outbox,
        ready,
        refresh: REFRESH,
    };
    Html(pages::status(&state.config, &page, now)).into_response()
}
