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

/// The target of the per-request access log line (`request finished`).
pub const ACCESS_LOG_TARGET: &str = "agentidp::access";

/// The filter when `RUST_LOG` is unset: `info`, without the per-request access log. A line per
/// request cost more than everything else the cached GETs do (a formatted line and a `write`
/// each: 185 MB of log in a 30-second benchmark); like Keycloak's HTTP access log it is opt-in:
/// `RUST_LOG=info` (or `...,agentidp::access=info`) turns it on. Admin changes, refused
/// credentials and 5xx answers are logged either way.
pub const DEFAULT_LOG_FILTER: &str = "info,agentidp::access=off";

/// The log filter of `RUST_LOG` ([`DEFAULT_LOG_FILTER`] when unset or empty); an invalid one is an
/// error naming the variable, its value and the expected form.
pub fn log_filter(rust_log: Option<&str>) -> Result<EnvFilter, String> {
    match rust_log.map(str::trim) {
        None | Some("") => Ok(EnvFilter::new(DEFAULT_LOG_FILTER)),
        Some(v) => EnvFilter::builder().parse(v).map_err(|e| {
            format!(
                "RUST_LOG={v:?} is not a valid log filter ({e}); use a level (error, warn, info, \
                 debug, trace) or directives such as RUST_LOG=info,agentidp=debug"
            )
        }),
    }
}

/// Buckets (seconds) of every latency histogram: sub-millisecond token requests up to the
/// request timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// The process-wide Prometheus recorder (the `metrics` facade is global by design); every app
/// in the process renders from the same handle. Histograms (not summaries), `# HELP` for every
/// metric, and `agentidp_build_info{version} 1`.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe_metrics();
            metrics::gauge!("agentidp_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .clone()
}

/// Every metric the process emits, with its help text (a metric without a description gets no
/// `# HELP` line).
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "agentidp_build_info",
        "Always 1; the version label names the running build"
    );
    describe_counter!(
        "agentidp_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "agentidp_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's headers to its response, by route template"
    );
    describe_gauge!(
        "agentidp_http_open_connections",
        "Client connections open now, by listener"
    );
    describe_counter!(
        "agentidp_http_connections_closed_total",
        "Connections the server closed for a bound (header_timeout, idle_timeout, response_stalled, capacity, tls_handshake_timeout, tls_handshake_failed), by listener"
    );
    describe_counter!(
        "agentidp_tokens_issued_total",
        "Access tokens issued, by grant and signing algorithm"
    );
    describe_counter!(
        AUTH_FAILURES,
        "Failed authentications, by kind (client, admin, ...) and reason"
    );
    describe_gauge!(
        "agentidp_leader",
        "1 while this instance leads the background jobs of the shared database, else 0"
    );
    describe_counter!(
        "agentidp_job_runs_total",
        "Runs of the leader-only background jobs, by job and outcome (ok, error)"
    );
    describe_counter!(
        "agentidp_mail_total",
        "Mail (invites, verification, reset, ownership transfer links), by kind and outcome (sent, failed, queue_full)"
    );
}

const AUTH_FAILURES: &str = "agentidp_auth_failures_total";

/// Counts one failed authentication: `kind` is who tried (`client` for OAuth client
/// authentication, `admin` for the admin API), `reason` why it failed (`unknown_client`,
/// `invalid_secret`, `invalid_assertion`, `invalid_token`, ...). Both are static strings so an
/// attacker cannot grow the label set.
pub fn auth_failure(kind: &'static str, reason: &'static str) {
    metrics::counter!(AUTH_FAILURES, "kind" => kind, "reason" => reason).increment(1);
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

    /// The exported text has a `# HELP` for each metric, histogram buckets (not summary
    /// quantiles), the build-info gauge and the auth-failure counter by kind and reason.
    #[test]
    fn metrics_text_has_help_buckets_build_info_and_failures() {
        let h = metrics_handle().expect("the recorder installs");
        auth_failure("client", "invalid_secret");
        auth_failure("client", "invalid_secret");
        metrics::histogram!("agentidp_http_request_duration_seconds", "route" => "/unit-test")
            .record(0.003);
        let text = h.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}:\n{text}"
            );
        }
        assert!(
            text.contains("# TYPE agentidp_http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(
                "agentidp_http_request_duration_seconds_bucket{route=\"/unit-test\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("quantile="), "{text}");
        assert!(
            text.contains(&format!(
                "agentidp_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "agentidp_auth_failures_total{kind=\"client\",reason=\"invalid_secret\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("# HELP agentidp_auth_failures_total "),
            "{text}"
        );
    }
}
