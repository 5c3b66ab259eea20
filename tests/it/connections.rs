//! The connection attack (issue 9, point 2) as tests with bounds: idle, half-sent and trickling
//! connections are closed within the header-read timeout, idle keep-alive connections within the
//! idle timeout, the connection cap holds, and other clients are served all along, over plain
//! HTTP and over TLS (HTTP/2 included). Plus the body-limit answers of point 11.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{Backend, TestApp, spawn_app_with, temp_dir};

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Slack on every upper bound: a loaded machine is slow, never early.
const SLACK: Duration = Duration::from_secs(4);

async fn spawn_bounded(tweak: impl FnOnce(&mut agentidp::config::Settings)) -> TestApp {
    spawn_app_with(Backend::Sqlite, |s| {
        s.header_read_timeout_secs = HEADER_TIMEOUT.as_secs();
        s.idle_timeout_secs = IDLE_TIMEOUT.as_secs();
        tweak(s);
    })
    .await
}

/// Waits until the server closes `stream` (a read sees EOF or a reset), at most `bound`;
/// returns how long that took from `since`. Whatever the server sends first is read and
/// dropped.
async fn closed_within(stream: &mut TcpStream, since: Instant, bound: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    let deadline = since + bound;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open {bound:?} later"),
            Ok(Ok(0)) | Ok(Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

/// A stream of `/healthz` requests, each on a new connection, until `stop`; counts the
/// successes and fails loudly on any failure.
fn keep_serving(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut served = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = http
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .expect("another client is served meanwhile");
            assert_eq!(r.status(), StatusCode::OK);
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        served
    })
}

/// Idle, half-sent and trickling connections are closed after the header-read timeout; an idle
/// keep-alive connection after the idle timeout (not earlier); a healthy client is served
/// throughout. On the previous server (`axum::serve`, no timer) every one stayed open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_connections_are_closed_while_others_are_served() {
    let app = spawn_bounded(|_| {}).await;
    let stop = Arc::new(AtomicBool::new(false));
    let healthy = keep_serving(app.addr, stop.clone());

    let opened = Instant::now();
    // Connected, never a byte.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    // The request line and one header, never the blank line.
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // One byte every 200 ms: each byte arrives well within any per-read timeout.
    let trickle = TcpStream::connect(app.addr).await.unwrap();
    let (mut trickle_r, mut trickle_w) = trickle.into_split();
    let trickler = tokio::spawn(async move {
        let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".to_vec();
        for b in request.into_iter().chain(std::iter::repeat(b'a')) {
            if trickle_w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // An HTTP/2 client (prior knowledge, RFC 9113 §3.3) that sends its preface and an empty
    // SETTINGS frame, then no request.
    let mut h2_idle = TcpStream::connect(app.addr).await.unwrap();
    h2_idle
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();

    let bound = HEADER_TIMEOUT + SLACK;
    for (name, s) in [
        ("idle", &mut idle),
        ("half-sent headers", &mut half),
        ("HTTP/2 without a request", &mut h2_idle),
    ] {
        let took = closed_within(s, opened, bound).await;
        assert!(
            took + Duration::from_millis(100) >= HEADER_TIMEOUT,
            "{name}: closed after {took:?}, before the header-read timeout"
        );
    }
    let mut buf = [0u8; 1024];
    let r = tokio::time::timeout_at(opened + bound, trickle_r.read(&mut buf))
        .await
        .expect("the trickling connection is still open");
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "the trickle got an answer: {r:?}"
    );
    trickler.abort();

    // Keep-alive: one request answered, then quiet. Closed after the idle timeout, not at the
    // header-read timeout.
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\"ok\"") {
        let n = tokio::time::timeout(SLACK, kept.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let answered = Instant::now();
    let took = closed_within(&mut kept, answered, IDLE_TIMEOUT + SLACK).await;
    assert!(
        took + Duration::from_millis(100) >= IDLE_TIMEOUT,
        "an idle keep-alive connection was closed after {took:?}, before the idle timeout"
    );

    stop.store(true, Ordering::Relaxed);
    let served = healthy.await.unwrap();
    assert!(served >= 5, "only {served} healthy requests were served");
}

/// With `AGENTIDP_MAX_CONNECTIONS=4`, four idle sockets fill the server: a fifth client is
/// answered only once the header-read timeout has freed a slot, and then it is. The previous
/// server accepted every socket (300 idle ones exhausted a 256 file-descriptor limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_frees_slots() {
    let header = Duration::from_secs(2);
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.header_read_timeout_secs = header.as_secs();
        s.max_connections = 4;
    })
    .await;
    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let http = reqwest::Client::builder()
        .timeout(header + SLACK)
        .build()
        .unwrap();
    let r = http.get(app.url("/healthz")).send().await.unwrap();
    let waited = opened.elapsed();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        waited + Duration::from_millis(200) >= header,
        "answered after {waited:?} with every slot taken: the cap did not hold"
    );
    for s in &mut idle {
        closed_within(s, opened, header + SLACK).await;
    }
    // Slots are free again: served at once.
    let t = Instant::now();
    let r = http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(t.elapsed() < header, "{:?}", t.elapsed());
}

/// At the cap, connections idle between keep-alive requests give way to new clients (pooled
/// client connections would otherwise hold every slot until the idle timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_make_room_at_the_cap() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.max_connections = 4;
        s.idle_timeout_secs = 600;
        s.header_read_timeout_secs = 600;
    })
    .await;
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..4 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("\"ok\"") {
            let n = tokio::time::timeout(SLACK, s.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed before answering");
            got.extend_from_slice(&buf[..n]);
        }
        kept.push(s);
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(SLACK)
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = http
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("served although every slot held an idle keep-alive connection");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let t = Instant::now();
    let mut closed = 0;
    for s in &mut kept {
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 1,
        "no idle connection gave way ({:?})",
        t.elapsed()
    );
}

/// A self-signed certificate for `localhost` as PEM files.
struct Cert(PathBuf);

impl Cert {
    fn localhost() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = temp_dir();
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        Self(dir)
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Over TLS: a client that never starts (or never finishes) its handshake is closed within the
/// header-read timeout; HTTP/2 (ALPN `h2`) serves many requests on one connection, and after
/// the idle timeout closed the connection the client simply reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_are_bounded_and_http2_keeps_working() {
    let cert = Cert::localhost();
    let (c, k) = (cert.0.join("cert.pem"), cert.0.join("key.pem"));
    let app = spawn_bounded(|s| {
        s.tls_cert = Some(c);
        s.tls_key = Some(k);
    })
    .await;
    assert!(app.base.starts_with("https://"), "{}", app.base);

    let opened = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    // The first bytes of a TLS record header, never the rest of the ClientHello.
    let mut partial = TcpStream::connect(app.addr).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    for s in [&mut silent, &mut partial] {
        let took = closed_within(s, opened, HEADER_TIMEOUT + SLACK).await;
        assert!(
            took + Duration::from_millis(100) >= HEADER_TIMEOUT,
            "{took:?}"
        );
    }

    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(SLACK)
        .build()
        .unwrap();
    for round in 0..2 {
        for _ in 0..5 {
            let r = http.get(app.url("/healthz")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.version(), reqwest::Version::HTTP_2, "round {round}");
        }
        if round == 0 {
            // Past the idle timeout: the server sends GOAWAY and closes.
            tokio::time::sleep(IDLE_TIMEOUT + Duration::from_millis(1500)).await;
        }
    }
    let (st, v) = app.admin(reqwest::Method::GET, "/api/v1/orgs", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// Writes `head` (a request's head, maybe with part of its body) on a new connection and reads
/// the answer: status and JSON body. Bounded by `bound`.
async fn raw_request(addr: SocketAddr, head: &str, bound: Duration) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + bound;
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((h, body)) = text.split_once("\r\n\r\n") {
            let len = h
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                let status = h[9..12].parse().unwrap();
                let ct = h
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-type")
                            .then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default();
                let v = serde_json::from_str(&body[..len]).unwrap_or(Value::Null);
                return (status, ct, v);
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!("no answer within {bound:?} to:\n{head}"),
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "closed without a full answer to:\n{head}\n{}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends 96 KiB as a chunked body (no declared length). A server that answers before reading
/// a body and closes races the client still writing it (hyper's client then reports
/// `IncompleteMessage` about 1 time in 100, with `axum::serve` as with this server): such a
/// transport failure is retried, a wrong answer is not.
async fn send_chunked(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    content_type: Option<&str>,
) -> reqwest::Response {
    let mut last = None;
    for _ in 0..5 {
        let chunk = bytes::Bytes::from(vec![b'a'; 16 * 1024]);
        let stream =
            futures_util::stream::iter(std::iter::repeat_n(chunk, 6).map(Ok::<_, std::io::Error>));
        let mut req = http
            .request(method.parse().unwrap(), url)
            .bearer_auth(token)
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        match req.send().await {
            Ok(r) => return r,
            Err(e) => last = Some(e),
        }
    }
    panic!("{method} {url}: {last:?}")
}

/// Issue 9 point 11: a declared `Content-Length` over the 64 KiB limit is answered 413 at once
/// (it waited 30 s for a 503), and every 413, also for a chunked body on `/agent-info` and
/// rotate-secret (plain text before), is JSON `{"error","error_description"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_at_once_as_json() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let slug = &org.slug;
    let routes = [
        (
            "POST",
            format!("/orgs/{slug}/oauth2/token"),
            "application/x-www-form-urlencoded",
        ),
        (
            "POST",
            format!("/orgs/{slug}/oauth2/introspect"),
            "application/x-www-form-urlencoded",
        ),
        (
            "POST",
            format!("/orgs/{slug}/oauth2/revoke"),
            "application/x-www-form-urlencoded",
        ),
        (
            "POST",
            format!("/orgs/{slug}/agent-proof"),
            "application/x-www-form-urlencoded",
        ),
        (
            "POST",
            format!("/orgs/{slug}/agent-info"),
            "application/x-www-form-urlencoded",
        ),
        (
            "POST",
            format!("/orgs/{slug}/federation/verify"),
            "application/json",
        ),
        ("POST", "/api/v1/orgs".to_owned(), "application/json"),
        (
            "POST",
            format!("/api/v1/orgs/{slug}/agents"),
            "application/json",
        ),
        (
            "PATCH",
            format!("/api/v1/orgs/{slug}/agents/{}", agent.id),
            "application/json",
        ),
        (
            "POST",
            format!("/api/v1/orgs/{slug}/agents/{}/rotate-secret", agent.id),
            "application/json",
        ),
        (
            "PUT",
            format!("/api/v1/orgs/{slug}/agents/{}/card", agent.id),
            "application/json",
        ),
        (
            "POST",
            format!("/api/v1/orgs/{slug}/partners"),
            "application/json",
        ),
    ];
    for (method, path, ct) in &routes {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: {ct}\r\nContent-Length: 100000\r\n\r\n",
            app.token
        );
        let t = Instant::now();
        let (status, got_ct, v) = raw_request(app.addr, &head, Duration::from_secs(5)).await;
        assert_eq!(status, 413, "{method} {path}: {v}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(
            got_ct.starts_with("application/json"),
            "{method} {path}: {got_ct}"
        );
        assert_eq!(v["error"], "invalid_request", "{method} {path}: {v}");
        assert!(v["error_description"].is_string(), "{method} {path}: {v}");
    }

    // Chunked (no declared length) and over the limit: stopped while reading, still JSON.
    for (method, path, ct) in &routes {
        let r = send_chunked(&app.http, method, &app.url(path), &app.token, Some(ct)).await;
        let status = r.status();
        let got_ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        // A route may refuse the garbage for another reason first (400): never as plain text.
        assert!(
            got_ct.starts_with("application/json"),
            "{method} {path}: {status} {got_ct} {text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["error"].is_string(), "{method} {path}: {v}");
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            assert_eq!(v["error"], "invalid_request", "{method} {path}: {v}");
        }
    }
    for path in [
        format!("/orgs/{slug}/agent-info"),
        format!("/api/v1/orgs/{slug}/agents/{}/rotate-secret", agent.id),
    ] {
        let r = send_chunked(&app.http, "POST", &app.url(&path), &app.token, None).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let v: Value = r.json().await.expect("a JSON 413");
        assert_eq!(v["error"], "invalid_request", "{path}: {v}");
    }
}

/// One HTTP/2 frame (RFC 9113 §4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A client that stops reading at the HTTP/2 level (reviewer's finding on issue 9 point 2): it
/// opens a stream with a flow-control window of zero (SETTINGS_INITIAL_WINDOW_SIZE = 0, RFC 9113
/// §6.5.2) so the response body can never be sent, and answers every PING so keep-alive sees a
/// live peer. Before the stall deadline the connection held its slot forever (the watchdog set no
/// deadline while a request was in flight); now it is closed after the stall timeout (request
/// timeout + header-read timeout), and other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http2_response_does_not_hold_its_connection() {
    let app = spawn_bounded(|s| s.request_timeout_secs = 1).await;
    let stall = Duration::from_secs(1) + HEADER_TIMEOUT;
    let stop = Arc::new(AtomicBool::new(false));
    let healthy = keep_serving(app.addr, stop.clone());

    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[0x00, 0x04, 0, 0, 0, 0])); // INITIAL_WINDOW_SIZE = 0
    let path = b"/.well-known/did.json";
    let mut block = vec![0x82, 0x86, 0x44, u8::try_from(path.len()).unwrap()];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x41, 9]);
    block.extend_from_slice(b"localhost");
    out.extend(h2_frame(0x1, 0x4 | 0x1, 1, &block)); // HEADERS, END_HEADERS | END_STREAM
    s.write_all(&out).await.unwrap();
    let since = Instant::now();

    // Read frames: acknowledge SETTINGS, answer PINGs, never open the window.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (mut got_headers, mut got_data) = (false, false);
    let bound = stall + SLACK;
    let closed_after = loop {
        match tokio::time::timeout_at(since + bound, s.read(&mut chunk)).await {
            Err(_) => panic!("the stalled connection is still open {bound:?} later"),
            Ok(Ok(0)) | Ok(Err(_)) => break since.elapsed(),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match (kind, flags & 1) {
                (0x4, 0) => {
                    let _ = s.write_all(&h2_frame(0x4, 0x1, 0, &[])).await;
                }
                (0x6, 0) => {
                    let _ = s.write_all(&h2_frame(0x6, 0x1, 0, &payload)).await;
                }
                (0x1, _) => got_headers = true,
                (0x0, _) if !payload.is_empty() => got_data = true,
                _ => {}
            }
        }
    };
    assert!(got_headers, "the response headers were sent");
    assert!(!got_data, "no DATA was sent into a zero window");
    assert!(
        closed_after >= stall - Duration::from_millis(200),
        "closed after {closed_after:?}, before the stall timeout {stall:?}"
    );

    stop.store(true, Ordering::Relaxed);
    assert!(
        healthy.await.unwrap() > 0,
        "other clients were served meanwhile"
    );
}
