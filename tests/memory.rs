//! The memory attack of issue 9 point 1, as a test with a bound. Its own test binary with one
//! test, so no other test moves this process's RSS meanwhile.
//!
//! An unauthenticated client resolves many foreign did:web DIDs through `/1.0/identifiers`,
//! each pointing at a 240 KB document: half are 120,000 small numbers (a parsed
//! `serde_json::Value` of such a document costs about 16 times its size), half one long string
//! (small as a tree, but each is kept). The requests come from several loopback addresses, as
//! an attacker with a few addresses would, so the per-client limit does not hold them back.
//! Before the fix, 120 such resolutions took RSS from 20 MB to about 476 MB, and it stayed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentidp::app::App;
use agentidp::config::Settings;
use agentidp::model::{Secret, SystemClock};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// Documents of each kind resolved.
const DOCS: usize = 120;
/// Size of each document.
const DOC_BYTES: usize = 240 * 1024;
/// The bound on RSS growth: the cache budgets (16 MiB of documents, counted twice with the
/// recent attempts) plus room for the allocator. The unfixed code grows by over 400 MiB.
const MAX_GROWTH_MB: u64 = 100;

fn rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024
}

fn foreign_did(port: u16, path: &str) -> String {
    format!("did:web:localhost%3A{port}:{path}")
}

/// `/n{i}/did.json`: the DID's document padded with small numbers; `/s{i}/did.json`: padded
/// with one long string.
fn document(port: u16, uri: &Uri) -> Response {
    let Some(name) = uri
        .path()
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix("/did.json"))
    else {
        return (StatusCode::NOT_FOUND, "no").into_response();
    };
    let id = foreign_did(port, name);
    let head = format!(r#"{{"id":"{id}","@context":["https://www.w3.org/ns/did/v1"],"pad":"#);
    let mut body = String::with_capacity(DOC_BYTES + 128);
    body.push_str(&head);
    if name.starts_with('n') {
        body.push('[');
        while body.len() < DOC_BYTES {
            body.push_str("0,");
        }
        body.push_str("0]}");
    } else {
        body.push('"');
        body.push_str(&"a".repeat(DOC_BYTES - head.len()));
        body.push_str("\"}");
    }
    (
        [
            (header::CONTENT_TYPE, "application/did+json"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_did_documents_do_not_exhaust_memory() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir =
        std::env::temp_dir().join(format!("agentidp-memory-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    // The foreign host: HTTPS on localhost with a self-signed certificate the server trusts.
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        ck.cert.pem().into_bytes(),
        ck.signing_key.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let router = axum::Router::new().fallback(move |uri: Uri| async move { document(port, &uri) });
    let server = axum_server::tls_rustls::from_tcp_rustls(listener, tls).unwrap();
    let foreign = tokio::spawn(async move {
        let _ = server
            .serve(router.into_make_service_with_connect_info::<SocketAddr>())
            .await;
    });

    // The server under attack.
    let mut s = Settings::defaults();
    s.bind = "127.0.0.1:0".parse().unwrap();
    s.data_dir = dir.join("data");
    s.bootstrap_token = Some(Secret::new(format!(
        "memory-test-admin-{}",
        uuid::Uuid::new_v4().simple()
    )));
    s.allow_insecure_loopback = true;
    s.outbound_ca_file = Some(ca);
    let app = App::build_with_clock(s, Arc::new(SystemClock))
        .await
        .expect("app builds")
        .app;
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    // Clients on several loopback addresses (the per-client limit is 20 at once).
    let clients: Vec<reqwest::Client> = (2..14u8)
        .map(|i| {
            reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .no_proxy()
                .build()
                .unwrap()
        })
        .collect();
    let resolve = async |n: usize, name: &str| -> StatusCode {
        let did = foreign_did(port, name);
        let url = format!("http://{addr}/1.0/identifiers/{}", did.replace('%', "%25"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = clients[n % clients.len()]
                .get(&url)
                .send()
                .await
                .expect("the server answers")
                .status();
            // Over a budget: try again shortly, as a patient attacker would.
            if st != StatusCode::TOO_MANY_REQUESTS || Instant::now() > deadline {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // Warm up (connection pools, TLS, the allocator's arenas), then measure.
    for i in 0..4 {
        resolve(i, &format!("s-warm{i}")).await;
        resolve(i, &format!("n-warm{i}")).await;
    }
    let before = rss_mb();

    let mut statuses = Vec::new();
    for round in 0..DOCS / 4 {
        let batch = futures_util::future::join_all((0..4).flat_map(|j| {
            let i = round * 4 + j;
            let resolve = &resolve;
            [
                Box::pin(async move { (true, resolve(i, &format!("n{i}")).await) })
                    as std::pin::Pin<Box<dyn Future<Output = (bool, StatusCode)>>>,
                Box::pin(async move { (false, resolve(i + 1, &format!("s{i}")).await) }),
            ]
        }))
        .await;
        statuses.extend(batch);
    }
    let after = rss_mb();

    let growth = after.saturating_sub(before);
    eprintln!("RSS {before} MB -> {after} MB after {DOCS} + {DOCS} foreign resolutions");
    assert!(
        growth < MAX_GROWTH_MB,
        "RSS grew by {growth} MB (from {before} to {after} MB) over {} foreign resolutions",
        2 * DOCS
    );

    let numbers: Vec<StatusCode> = statuses.iter().filter(|s| s.0).map(|s| s.1).collect();
    let strings: Vec<StatusCode> = statuses.iter().filter(|s| !s.0).map(|s| s.1).collect();
    assert_eq!(numbers.len(), DOCS);
    // A document of 120,000 values is refused as too complex: a bad gateway answer, never kept.
    assert!(
        numbers.iter().all(|s| *s == StatusCode::BAD_GATEWAY),
        "{numbers:?}"
    );
    // A long string is a fine document: resolved, and kept within the cache's budget.
    assert!(strings.iter().all(|s| *s == StatusCode::OK), "{strings:?}");
    let _ = stop.send(());
    let _ = served.await;
    foreign.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
