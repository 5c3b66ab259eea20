//! Metrics and access logs (issue 9, points 12 and 19): every answer is counted, also the
//! timeout's 503; `/metrics` has `# HELP` for every metric, histograms with buckets and the
//! build-info gauge, optionally on a listener of its own; access logs carry numeric latency.
//!
//! The metrics recorder is process-wide (every test server in this binary shares it), so the
//! assertions look for lines of their own route or compare before and after.

use std::sync::Arc;
use std::time::Duration;

use agentidp::app::App;
use agentidp::model::OffsetClock;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Backend, spawn_app_with, test_settings};

async fn metrics_text(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

/// The value of the first sample line that starts with `prefix` and contains every `part`.
fn sample(text: &str, prefix: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A request the request timeout answers 503 is counted under its route (point 12: the metrics
/// layer sat inside the timeout layer, so such answers were never counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_requests_are_counted() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.request_timeout_secs = 1).await;
    let route = "/api/v1/orgs";
    let labels = [
        "method=\"POST\"",
        &format!("route=\"{route}\""),
        "status=\"503\"",
    ];
    let before = sample(
        &metrics_text(&app.http, &app.url("/metrics")).await,
        "agentidp_http_requests_total{",
        &labels,
    )
    .unwrap_or(0.0);

    // Headers and a part of the declared body, then nothing: the handler waits for the rest
    // until the request timeout answers.
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/orgs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"slug\":",
        app.token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answered by the request timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    let text = metrics_text(&app.http, &app.url("/metrics")).await;
    let after = sample(&text, "agentidp_http_requests_total{", &labels)
        .unwrap_or_else(|| panic!("the 503 of {route} is not counted:\n{text}"));
    assert!(after >= before + 1.0, "{before} -> {after}");
}

/// `/metrics`: `# HELP` for every metric, latency histograms with `_bucket` lines (not summary
/// quantiles), `agentidp_build_info{version=...} 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_help_histograms_and_build_info() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let text = metrics_text(&app.http, &app.url("/metrics")).await;
    check_exposition(&text);
}

fn check_exposition(text: &str) {
    let types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(types.contains(&"agentidp_http_requests_total"), "{text}");
    for name in &types {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no # HELP for {name}:\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE agentidp_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("agentidp_http_request_duration_seconds_bucket{")
                && l.contains("route=\"/healthz\"")
        ),
        "{text}"
    );
    assert!(!text.contains("quantile=\""), "a summary:\n{text}");
    let build = format!(
        "agentidp_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.lines().any(|l| l == build), "no {build}:\n{text}");
}

/// With `AGENTIDP_METRICS_BIND`, `/metrics` is served on that listener only; the main listener
/// answers 404 for it (and serves everything else as before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_metrics_listener_serves_metrics_and_the_main_one_does_not() {
    let (mut settings, cleanup) = test_settings(&Backend::Sqlite).await;
    settings.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    let startup = App::build_with_clock(settings, Arc::new(OffsetClock::new()))
        .await
        .expect("app builds");
    let app = startup.app;
    let main = app.local_addr();
    let metrics = app.metrics_addr().expect("a metrics listener");
    assert_ne!(main, metrics);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();

    let r = http
        .get(format!("http://{main}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(format!("http://{main}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let text = metrics_text(&http, &format!("http://{metrics}/metrics")).await;
    check_exposition(&text);
    let r = http
        .get(format!("http://{metrics}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "only /metrics there");

    // Both listeners stop on the one shutdown signal.
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(metrics).await.is_err());
    drop(cleanup);
}

/// The next JSON log line of the child, at most 30 s away.
async fn next<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut tokio::io::Lines<R>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a log line within 30 s")
        .unwrap()
        .expect("the server is running");
    serde_json::from_str(&line).unwrap_or(Value::Null)
}

/// With `RUST_LOG=info` every answered request leaves an access-log line with its status and latency as
/// numbers (`latency_ms`), and the request id of its span (point 19: the latency was a string
/// such as `"123 μs"`, at DEBUG). The real binary with JSON logs, so no other test's logging
/// interferes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs_carry_numeric_latency() {
    use tokio::io::AsyncBufReadExt;

    let dir = crate::support::temp_dir();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agentidp"))
        .arg("serve")
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AGENTIDP_BIND", "127.0.0.1:0")
        .env("AGENTIDP_DATA_DIR", dir.join("data"))
        .env(
            "AGENTIDP_BOOTSTRAP_TOKEN",
            "access-log-token-0123456789abcdef",
        )
        .env("AGENTIDP_LOG_FORMAT", "json")
        // The access log is opt-in: RUST_LOG unset leaves it off (telemetry::DEFAULT_LOG_FILTER).
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn agentidp");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let v = next(&mut lines).await;
        if let Some(a) = v["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("listening on "))
        {
            break a.to_owned();
        }
    };
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let line = loop {
        let v = next(&mut lines).await;
        if v["span"]["request_id"] == request_id.as_str() && v.get("latency_ms").is_some() {
            break v;
        }
    };
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["latency_ms"].is_f64(), "{line}");
    assert!(line["latency_ms"].as_f64().unwrap() >= 0.0, "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["path"], "/healthz", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Request methods are arbitrary tokens (RFC 9110 §9.1): an unknown one is counted as `other`,
/// so a client sending `FOO1`, `FOO2`, ... cannot grow the series without bound (review finding:
/// each became a label value of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_do_not_become_label_values() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    for i in 0..3 {
        let m = reqwest::Method::from_bytes(format!("FOO{i}X").as_bytes()).unwrap();
        let _ = app
            .http
            .request(m, app.url("/healthz"))
            .send()
            .await
            .unwrap();
    }
    let text = metrics_text(&app.http, &app.url("/metrics")).await;
    assert!(!text.contains("FOO0X"), "{text}");
    assert!(
        sample(
            &text,
            "agentidp_http_requests_total{",
            &["method=\"other\"", "route=\"/healthz\""]
        )
        .is_some_and(|n| n >= 3.0),
        "{text}"
    );
}
