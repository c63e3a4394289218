//! `/ingest/v1/...`: streaming servers speak to Foyer in their own formats (contract §8).

pub mod owncast;

use axum::{Router, routing::post};

use super::AppState;

pub fn router() -> Router<AppState> {
    // Shown from the start (at zero), so /metrics lists the family before Owncast calls.
    metrics::counter!("foyer_ingest_owncast_total", "event" => "unknown", "result" => "unknown_channel").increment(0);
    Router::new().route("/owncast/{channel_id}", post(owncast::receive))
}
