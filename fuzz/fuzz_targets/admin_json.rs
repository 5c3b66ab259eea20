//! The admin API's JSON bodies, end to end: a real server (embedded SQLite in a temporary
//! directory) runs in this process, and each input is one request to one of the admin calls
//! that take a body. Whatever the body, the answer is never a 5xx (a panic in a handler is
//! answered 500 by the server and fails here) and every error is the JSON error shape.
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use agentidp::app::App;
use agentidp::config::Settings;
use agentidp::model::Secret;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const TOKEN: &str = "fuzz-admin-token-0123456789abcdef0123456789";

struct Server {
    addr: SocketAddr,
    agent: String,
    partner: String,
}

/// One request, `Connection: close`; the status and the body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect to the fuzzed server");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("the server answers");
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => out[i + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

fn id_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).expect("a JSON answer");
    v["id"].as_str().expect("an id").to_owned()
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let dir = std::env::temp_dir()
                    .join(format!("agentidp-fuzz-{}", std::process::id()));
                let mut s = Settings::defaults();
                s.bind = "127.0.0.1:0".parse().unwrap();
                s.data_dir = dir;
                s.bootstrap_token = Some(Secret::new(TOKEN.to_owned()));
                let startup = App::build(s).await.expect("the server starts");
                tx.send(startup.app.local_addr()).unwrap();
                let _ = startup.app.run_until_stopped(std::future::pending()).await;
            });
        });
        let addr = rx.recv().expect("the server thread reports its address");
        let (st, _) = request(addr, "POST", "/api/v1/orgs", br#"{"slug":"fuzz","name":"Fuzz"}"#);
        assert!(st == 201 || st == 409, "create org: {st}");
        let (st, body) = request(
            addr,
            "POST",
            "/api/v1/orgs/fuzz/agents",
            br#"{"name":"a","scopes":["read"]}"#,
        );
        assert_eq!(st, 201, "create agent");
        let agent = id_of(&body);
        let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"p1"}]}"#;
        let (st, body) = request(
            addr,
            "POST",
            "/api/v1/orgs/fuzz/partners",
            format!(r#"{{"issuer":"https://partner.example/orgs/x","jwks":{jwks}}}"#).as_bytes(),
        );
        assert_eq!(st, 201, "create partner: {}", String::from_utf8_lossy(&body));
        let partner = id_of(&body);
        Server {
            addr,
            agent,
            partner,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let s = server();
    let (a, p) = (&s.agent, &s.partner);
    let (method, path) = match sel % 8 {
        0 => ("POST", "/api/v1/orgs".to_owned()),
        1 => ("PATCH", "/api/v1/orgs/fuzz".to_owned()),
        2 => ("POST", "/api/v1/orgs/fuzz/agents".to_owned()),
        3 => ("PATCH", format!("/api/v1/orgs/fuzz/agents/{a}")),
        4 => (
            "POST",
            format!("/api/v1/orgs/fuzz/agents/{a}/rotate-secret"),
        ),
        5 => ("PUT", format!("/api/v1/orgs/fuzz/agents/{a}/card")),
        6 => ("POST", "/api/v1/orgs/fuzz/partners".to_owned()),
        _ => ("PATCH", format!("/api/v1/orgs/fuzz/partners/{p}")),
    };
    let (status, answer) = request(s.addr, method, &path, body);
    assert!(
        status < 500,
        "{method} {path} answered {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    if status >= 400 {
        let v: Value = serde_json::from_slice(&answer).unwrap_or_else(|_| {
            panic!(
                "{status} without a JSON body: {}",
                String::from_utf8_lossy(&answer)
            )
        });
        assert!(
            v["error"].is_string() && v["error_description"].is_string(),
            "{v}"
        );
    }
});
