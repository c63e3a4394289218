//! `/ingest/v1/...`: streaming servers speak to Foyer in their own formats (contract §8).

pub mod owncast;

use axum::{Router, routing::post};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/owncast/{channel_id}", post(owncast::receive))
}
