//! Logging (tracing: text or JSON lines on stderr, filtered by `RUST_LOG`) and the metrics recorder.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber. Logs go to stderr so standard output stays free for the
/// one-time bootstrap token. An invalid `RUST_LOG` is refused (it used to be ignored silently,
/// leaving the operator at `info` without a word).
pub fn init_logging(format: &str) -> Result<(), String> {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref())?;
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
    Ok(())
}

/// The log filter of `RUST_LOG` (`info` when unset or empty); an invalid one is an error naming
/// the variable, its value and the expected form.
pub fn log_filter(rust_log: Option<&str>) -> Result<EnvFilter, String> {
    match rust_log.map(str::trim) {
        None | Some("") => Ok(EnvFilter::new("info")),
        Some(v) => EnvFilter::builder().parse(v).map_err(|e| {
            format!(
                "RUST_LOG={v:?} is not a valid log filter ({e}); use a level (error, warn, info, \
                 debug, trace) or directives such as RUST_LOG=info,agentidp=debug"
            )
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_rust_log_is_refused_by_name() {
        let e = log_filter(Some("@@@")).unwrap_err();
        assert!(e.contains("RUST_LOG") && e.contains("@@@"), "{e}");
        assert!(log_filter(Some("info,agentidp=debug")).is_ok());
        assert!(log_filter(Some("trace")).is_ok());
        assert!(log_filter(None).is_ok());
        assert!(log_filter(Some("")).is_ok());
    }
}
