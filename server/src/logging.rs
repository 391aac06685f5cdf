//! Logs: JSON lines on standard output, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the JSON-lines subscriber. Each line carries the fields of the spans it happened
/// in, so a request's lines carry its `request_id`. Calling it twice does nothing the second
/// time (the first subscriber stays).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(std::io::stdout)
        .try_init();
}
