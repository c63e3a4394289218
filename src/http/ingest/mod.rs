//! `/ingest/v1/...`: streaming servers speak to Foyer over their own hooks (docs/streaming-servers.md),
//! none of which is Standard Webhooks. What they report is recorded like the platform's
//! `stream.*` webhooks, through the same store path.

pub mod owncast;
pub mod rtmp;

use axum::Router;

use super::AppState;

use crate::config::IngestConfig;

/// The largest body a streaming server's hook may send, chunked or not: nginx-rtmp's
/// form and SRS's JSON are a few hundred bytes, Owncast's events a few KB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: &AppState) -> Router<AppState> {
    // Shown from the start (at zero), so /metrics lists the families before any server calls.
    metrics::counter!("foyer_ingest_owncast_total", "event" => "unknown", "result" => "unknown_channel").increment(0);
    metrics::counter!("foyer_ingest_publishes_total", "server" => "nginx", "result" => "allowed").increment(0);
    super::routes(super::Group::Ingest, state)
}

/// Whether a hook's query string carries `ingest.token` as `token=` (compared in
/// constant time), or no token is configured. The query is never logged: the request
/// span logs the path alone.
pub fn token_ok(config: &IngestConfig, query: Option<&str>) -> bool {
    let Some(expected) = &config.token else { return true };
    let given = query.and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token"));
    given.is_some_and(|(_, token)| expected.matches(token.as_bytes()))
}

/// This module's routes, one of the tables [`super::ROUTES`] lists: a route is added
/// here, beside its handler, and in `docs/openapi.yaml`.
#[rustfmt::skip]
pub(super) const ROUTES: &[super::Route] = super::route_table![Ingest:
    POST "/ingest/v1/rtmp" => rtmp::hook,
    POST "/ingest/v1/owncast/{channel_id}" => owncast::receive,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn the_token_is_required_only_when_configured() {
        let open = IngestConfig::default();
        assert!(token_ok(&open, None));
        let config = IngestConfig { token: Some(Secret::new("t0ken-with-+-and-%")), ..Default::default() };
        assert!(token_ok(&config, Some("a=1&token=t0ken-with-%2B-and-%25")));
        assert!(!token_ok(&config, Some("token=t0ken-with-+-and-%")), "+ decodes to a space");
        assert!(!token_ok(&config, Some("token=t0ken")));
        assert!(!token_ok(&config, Some("tok=t0ken-with-%2B-and-%25")));
        assert!(!token_ok(&config, None));
    }
}
