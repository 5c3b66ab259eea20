//! Logging (tracing: text or JSON lines on stderr, filtered by `RUST_LOG`) and the metrics recorder.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber. Logs go to stderr so standard output stays free for the
/// one-time bootstrap token.
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: piped into a file or a log collector they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder (the `metrics` facade is global by design); every app
/// in the process renders from the same handle.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// Counts a failed (or refused) authentication: `kind` is `client` or `admin`, `reason` one of a
/// few fixed words (`invalid_client`, `invalid_token`, `rate_limited`): never request text, so
/// the label values stay bounded.
pub fn auth_failure(kind: &'static str, reason: &'static str) {
    metrics::counter!("agentidp_auth_failures_total", "kind" => kind, "reason" => reason)
        .increment(1);
}
