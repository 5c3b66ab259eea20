//! Outbound proxies and the SSRF guard (issue 9 point 4). Its own test binary with one test,
//! because it sets `HTTP(S)_PROXY` for the whole process.
//!
//! A fake proxy records every request line it is sent (`CONNECT host:port` for HTTPS) and
//! answers 502. The environment's proxy variables must never be used (a proxy resolves the
//! target itself, past the guard: before the fix the server sent `CONNECT
//! metadata.google.internal:443` to it); an explicit `AGENTIDP_OUTBOUND_PROXY` is used, and only
//! for targets the guard allows.

use std::sync::{Arc, Mutex};

use agentidp::fetch::{FetchError, FetchPolicy, Fetcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy that records request lines and refuses everything.
async fn fake_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                if let Some(line) = text.lines().next() {
                    log.lock().unwrap().push(line.to_owned());
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (port, seen)
}

fn take(seen: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut *seen.lock().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_holds_with_proxies() {
    let (port, seen) = fake_proxy().await;
    let proxy = format!("http://127.0.0.1:{port}");
    // SAFETY: the only test of this binary, set before any other thread reads the environment.
    unsafe {
        for v in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
        ] {
            std::env::set_var(v, &proxy);
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }

    // 1. Without AGENTIDP_OUTBOUND_PROXY the environment's proxy is never asked.
    let plain = Fetcher::new(FetchPolicy::new(false)).unwrap();
    for url in [
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://example.invalid/jwks.json",
    ] {
        assert!(plain.get(url, "*/*").await.is_err(), "{url}");
    }
    assert_eq!(take(&seen), Vec::<String>::new(), "the env proxy was used");

    // 2. With an explicit proxy, targets the guard refuses never reach it: names resolving to
    //    loopback or private addresses, and private literals.
    let proxied = Fetcher::with_options(
        FetchPolicy::new(false),
        &[],
        Some(&format!("http://localhost:{port}")),
    )
    .unwrap();
    for url in [
        "https://localhost:8443/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "http://93.184.216.34/not-https",
    ] {
        let r = proxied.get(url, "*/*").await;
        assert!(
            matches!(r, Err(FetchError::Forbidden(_))),
            "{url}: {:?}",
            r.err()
        );
    }
    assert_eq!(
        take(&seen),
        Vec::<String>::new(),
        "a refused target reached the proxy"
    );

    // 3. A target the guard allows goes through the proxy (named `localhost` here: the proxy's
    //    own name is exempt from the guard, the operator chose it).
    let r = proxied.get("https://93.184.216.34/jwks.json", "*/*").await;
    assert!(
        r.is_err(),
        "the fake proxy refuses everything: {:?}",
        r.err()
    );
    assert_eq!(take(&seen), ["CONNECT 93.184.216.34:443 HTTP/1.1"]);

    // 4. And with loopback allowed (tests, development), a loopback name is checked, allowed,
    //    and proxied.
    let dev = Fetcher::with_options(FetchPolicy::new(true), &[], Some(&proxy)).unwrap();
    let _ = dev.get("https://localhost:8443/x", "*/*").await;
    assert_eq!(take(&seen), ["CONNECT localhost:8443 HTTP/1.1"]);
}
