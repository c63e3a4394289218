//! Logs: one line per meaningful event, to stderr. `RUST_LOG` sets the filter;
//! `logging.format` chooses lines for people (`pretty`) or JSON objects (`json`).
//!
//! A JSON line carries the event's fields (`reservation_id`, `room_id`, …) under
//! `fields` and the enclosing spans, such as an HTTP request's `request_id`, under
//! `spans`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        LogFormat::Pretty => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(true).try_init(),
    };
}
