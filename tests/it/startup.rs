//! The real `agentidp` binary, run as an operator would: a clean environment, a working
//! directory of its own, `127.0.0.1:0`, the bound address read back from the `listening on ADDR`
//! log line, SIGTERM to stop. Covers first start (bootstrap token, master key, data directory),
//! restarts, every setting as a flag, the recorded public URL, PostgreSQL's master-key check,
//! graceful drain, secret-free logs, the `keys rotate` command and the operational endpoints.
//!
//! Every child is killed when its guard drops and every wait is bounded, so a broken server fails
//! a test instead of hanging the suite.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::support::{Backend, PgDatabase, json_of, jwt_claims, jwt_header, random_slug, temp_dir};

/// Bound on a server becoming ready, a stop, or a one-shot command.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// Lines of one output stream of a child, collected as they arrive.
#[derive(Clone, Default)]
pub(crate) struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(stream: impl AsyncRead + Unpin + Send + 'static) -> (Self, JoinHandle<()>) {
        let lines = Lines::default();
        let sink = lines.clone();
        let task = tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.0.lock().unwrap().push(line);
            }
        });
        (lines, task)
    }

    pub(crate) fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn text(&self) -> String {
        self.all().join("\n")
    }
}

/// A command for the binary: cleared environment (only `PATH`, `HOME` and coverage variables
/// survive, so no `AGENTIDP_*` or `RUST_LOG` of the parent leaks in), `dir` as working directory.
pub(crate) fn agentidp(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentidp"));
    c.args(args).current_dir(dir).env_clear();
    for (k, v) in std::env::vars_os() {
        let keep = k == "PATH"
            || k == "HOME"
            || k.to_str()
                .is_some_and(|k| k.starts_with("LLVM_PROFILE") || k.starts_with("CARGO_LLVM_COV"));
        if keep {
            c.env(k, v);
        }
    }
    c.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// What a finished process left behind.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs a one-shot command (`migrate`, `keys rotate`, a `serve` that must refuse to start) to
/// its end, at most [`WAIT`].
pub(crate) async fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let out = tokio::time::timeout(WAIT, agentidp(dir, args, env).output())
        .await
        .unwrap_or_else(|_| panic!("agentidp {args:?} did not finish within {WAIT:?}"))
        .expect("agentidp runs");
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The address of a `listening on ADDR` log line, text or JSON.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    const MARK: &str = "listening on ";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '\x1b')
        .collect();
    addr.parse().ok()
}

/// A running `agentidp serve`. Dropping it kills the process.
pub(crate) struct Server {
    child: Child,
    pid: u32,
    pub(crate) addr: SocketAddr,
    /// `http://ADDR`: where to reach it (the public URL may name another host).
    base: String,
    stdout: Lines,
    pub(crate) stderr: Lines,
    readers: Vec<JoinHandle<()>>,
    pub(crate) http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts `agentidp ARGS` (a `serve`) and waits for its `listening on ADDR` line.
pub(crate) async fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = agentidp(dir, args, env).spawn().expect("spawn agentidp");
    let pid = child.id().expect("a running child has a pid");
    let (stdout, out_task) = Lines::collect(child.stdout.take().unwrap());
    let (stderr, err_task) = Lines::collect(child.stderr.take().unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    let addr = loop {
        if let Some(a) = stderr.all().iter().find_map(|l| listening_addr(l)) {
            break a;
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Let the readers drain what the process wrote before it died.
            let _ = tokio::time::timeout(Duration::from_secs(5), err_task).await;
            panic!(
                "agentidp {args:?} exited with {status} before listening:\n{}",
                stderr.text()
            );
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "agentidp {args:?} did not log `listening on` within {WAIT:?}:\n{}",
                stderr.text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Server {
        child,
        pid,
        addr,
        base: format!("http://{addr}"),
        stdout,
        stderr,
        readers: vec![out_task, err_task],
        http: reqwest::Client::builder().timeout(WAIT).build().unwrap(),
    }
}

async fn sigterm(pid: u32) {
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(st.success(), "kill -TERM {pid} failed");
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The first stdout line, waiting (bounded) for it to arrive.
    pub(crate) async fn first_stdout_line(&self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.stdout.all().into_iter().next() {
                return l;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing on stdout; stderr:\n{}",
                self.stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until some stderr line contains `needle`.
    pub(crate) async fn wait_for_log(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.stderr.all().iter().any(|l| l.contains(needle)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line contains {needle:?}:\n{}",
                self.stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits (bounded) for the exit and for both streams to be read to the end.
    pub(crate) async fn stop(mut self) -> Finished {
        sigterm(self.pid).await;
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "agentidp did not exit within {WAIT:?} of SIGTERM:\n{}",
                    self.stderr.text()
                )
            })
            .expect("wait for agentidp");
        for r in std::mem::take(&mut self.readers) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        Finished {
            status,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }

    /// An admin API call with `token`; the raw response.
    pub(crate) async fn admin_response(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    pub(crate) async fn admin(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        json_of(self.admin_response(method, path, token, body).await).await
    }

    /// Creates organization `slug`; asserts 201 and returns the answer.
    pub(crate) async fn create_org(&self, token: &str, slug: &str) -> Value {
        let (st, v) = self
            .admin(
                Method::POST,
                "/api/v1/orgs",
                token,
                Some(json!({"slug": slug, "name": "Startup Test"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert_eq!(v["slug"], slug, "{v}");
        v
    }

    pub(crate) async fn get_org(&self, token: &str, slug: &str) -> (StatusCode, Value) {
        self.admin(Method::GET, &format!("/api/v1/orgs/{slug}"), token, None)
            .await
    }

    /// Creates an agent with a client secret; asserts 201 and returns the answer.
    async fn create_agent(&self, token: &str, slug: &str, scopes: &[&str]) -> Value {
        let (st, v) = self
            .admin(
                Method::POST,
                &format!("/api/v1/orgs/{slug}/agents"),
                token,
                Some(json!({"name": "startup bot", "scopes": scopes})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert!(v["client_secret"].is_string(), "{v}");
        v
    }

    /// The kids of the organization's JWKS, sorted.
    async fn jwks_kids(&self, slug: &str) -> Vec<String> {
        let (st, v) = json_of(
            self.http
                .get(self.url(&format!("/orgs/{slug}/jwks.json")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let mut kids: Vec<String> = v["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .map(|k| k["kid"].as_str().expect("every key has a kid").to_owned())
            .collect();
        kids.sort();
        kids
    }

    /// client_credentials with client_secret_basic; the raw response.
    async fn token_basic(
        &self,
        slug: &str,
        client_id: &str,
        secret: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        self.http
            .post(self.url(&format!("/orgs/{slug}/oauth2/token")))
            .basic_auth(client_id, Some(secret))
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

pub(crate) fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

pub(crate) fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
            assert!(v.is_object(), "log line is not a JSON object: {l}");
            v
        })
        .collect()
}

pub(crate) fn refs<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub(crate) fn new_master_key() -> String {
    agentidp::keys::MasterKey::generate()
        .to_base64()
        .expose()
        .to_owned()
}

/// A test directory removed when the test ends (the servers using it are stopped first: declare
/// it before them).
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        TempDir(temp_dir())
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
    pub(crate) fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    pub(crate) fn join_str(&self, p: &str) -> String {
        self.join(p).to_str().expect("UTF-8 temp path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// No configuration but the bind address: `./data` is created with a 0600 master key and the
/// SQLite file, the log says where; the generated admin token is printed once on stdout and never
/// logged; SIGTERM exits 0 with a shutdown log; a restart prints nothing and keeps the token, the
/// organizations and their keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_bootstrap_token_once() {
    let dir = TempDir::new();
    let server = start(dir.path(), &["serve"], &[("AGENTIDP_BIND", "127.0.0.1:0")]).await;
    let port = server.addr.port();

    // The token: one stdout line, outside the log stream.
    let line = server.first_stdout_line().await;
    let token = line
        .split_whitespace()
        .last()
        .expect("the token is on the line")
        .to_owned();
    assert!(token.len() >= 32, "a strong token: {line}");

    // The data directory of the embedded default, under the working directory.
    let data = dir.join("data");
    assert!(data.join("agentidp.db").is_file(), "SQLite file in ./data");
    assert_eq!(
        mode_of(&data.join("master.key")),
        0o600,
        "master key readable by its owner only"
    );
    assert_eq!(
        mode_of(&data),
        0o700,
        "the data directory is its owner's only"
    );
    let master_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    let canonical = std::fs::canonicalize(&data).unwrap();
    server.wait_for_log("data lives in").await;
    assert!(
        server.stderr.text().contains(canonical.to_str().unwrap()),
        "the log names the data directory {}:\n{}",
        canonical.display(),
        server.stderr.text()
    );

    // The token works (and the admin API does check it).
    let slug = random_slug();
    let org = server.create_org(&token, &slug).await;
    // The database and the WAL files it writes are its owner's only (the WAL exists once a
    // write happened).
    for f in ["agentidp.db", "agentidp.db-wal", "agentidp.db-shm"] {
        assert_eq!(mode_of(&data.join(f)), 0o600, "{f}");
    }
    assert_eq!(
        org["issuer"],
        format!("http://localhost:{port}/orgs/{slug}"),
        "default public URL is http://localhost:PORT"
    );
    let (st, _) = server
        .admin(
            Method::POST,
            "/api/v1/orgs",
            "not-the-token",
            Some(json!({"slug": random_slug(), "name": "x"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let kids = server.jwks_kids(&slug).await;
    assert_eq!(kids.len(), 3, "{kids:?}");

    let first = server.stop().await;
    assert!(first.status.success(), "SIGTERM exits 0: {first:?}");
    assert_eq!(
        first.stdout.lines().count(),
        1,
        "exactly one stdout line: {:?}",
        first.stdout
    );
    assert!(first.stdout.contains(&token));
    assert!(
        !first.stderr.contains(&token),
        "the bootstrap token is in the log"
    );
    assert!(
        !first.stderr.contains(master_key.trim()),
        "master key logged"
    );
    assert!(
        first.stderr.contains("shutting down"),
        "a shutdown is logged:\n{}",
        first.stderr
    );
    // Plain text logs to a pipe carry no terminal colour codes.
    assert!(
        !first.stderr.contains('\x1b'),
        "ANSI escape codes in piped logs:\n{}",
        first.stderr
    );

    // Restart on the same data. The default public URL derives from the bound port, so a restart
    // on another free port names the recorded URL (re-binding the old port could race with other
    // tests for it).
    let recorded = format!("http://localhost:{port}");
    let server = start(
        dir.path(),
        &["serve"],
        &[
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            ("AGENTIDP_PUBLIC_URL", &recorded),
        ],
    )
    .await;
    let (st, again) = server.get_org(&token, &slug).await;
    assert_eq!(st, StatusCode::OK, "the old token still works: {again}");
    assert_eq!(again["id"], org["id"]);
    assert_eq!(again["issuer"], org["issuer"]);
    assert_eq!(again["did"], org["did"]);
    assert_eq!(server.jwks_kids(&slug).await, kids, "same signing keys");
    assert_eq!(
        std::fs::read_to_string(data.join("master.key")).unwrap(),
        master_key,
        "the master key is kept"
    );
    let second = server.stop().await;
    assert!(second.status.success(), "{second:?}");
    assert_eq!(second.stdout, "", "a restart prints nothing");
    assert!(!second.stderr.contains(&token));
    assert!(
        !second.stderr.contains("generated a new master key"),
        "{}",
        second.stderr
    );
}

/// A token given through `AGENTIDP_BOOTSTRAP_TOKEN` is never printed nor logged, works, and stays
/// valid after a restart without the variable (no new token is generated then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_bootstrap_token_is_never_printed() {
    let dir = TempDir::new();
    let token = format!("configured-{}", uuid::Uuid::new_v4().simple());
    let data_dir = dir.join_str("d");
    let common = [
        ("AGENTIDP_BIND", "127.0.0.1:0"),
        ("AGENTIDP_DATA_DIR", data_dir.as_str()),
        ("AGENTIDP_PUBLIC_URL", "http://localhost:8080"),
        ("AGENTIDP_LOG_FORMAT", "json"),
    ];
    let mut env = common.to_vec();
    env.push(("AGENTIDP_BOOTSTRAP_TOKEN", &token));
    let server = start(dir.path(), &["serve"], &env).await;
    let slug = random_slug();
    server.create_org(&token, &slug).await;
    let done = server.stop().await;
    assert!(done.status.success(), "{done:?}");
    assert_eq!(done.stdout, "", "a configured token is never printed");
    assert!(!done.stderr.contains(&token), "token in the log");

    let server = start(dir.path(), &["serve"], &common).await;
    let (st, v) = server.get_org(&token, &slug).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let done = server.stop().await;
    assert!(done.status.success(), "{done:?}");
    assert_eq!(done.stdout, "", "no new token once one is recorded");
    assert!(!done.stderr.contains(&token));
}

/// Every setting used here comes from a flag only (the environment is empty) and takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_works_as_a_flag() {
    let dir = TempDir::new();
    let data_dir = dir.join_str("flagdata");
    let token = format!("flag-{}", uuid::Uuid::new_v4().simple());
    let server = start(
        dir.path(),
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
            "--public-url",
            "http://localhost:1234",
            "--bootstrap-token",
            &token,
            "--access-token-ttl-secs",
            "60",
            "--key-activation-delay-secs",
            "7",
            "--allow-insecure-loopback",
            "--log-format",
            "json",
        ],
        &[],
    )
    .await;

    // --data-dir
    assert!(Path::new(&data_dir).join("agentidp.db").is_file());
    assert!(Path::new(&data_dir).join("master.key").is_file());
    assert!(!dir.join("data").exists(), "the default ./data is not used");

    // --public-url and --bootstrap-token
    let slug = random_slug();
    let org = server.create_org(&token, &slug).await;
    let issuer = format!("http://localhost:1234/orgs/{slug}");
    assert_eq!(org["issuer"], issuer);
    assert_eq!(org["did"], format!("did:web:localhost%3A1234:orgs:{slug}"));
    let (st, disco) = json_of(
        server
            .http
            .get(server.url(&format!("/orgs/{slug}/.well-known/openid-configuration")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{disco}");
    assert_eq!(disco["issuer"], issuer);
    assert_eq!(disco["token_endpoint"], format!("{issuer}/oauth2/token"));

    // --access-token-ttl-secs
    let agent = server.create_agent(&token, &slug, &["read"]).await;
    let (st, t) = json_of(
        server
            .token_basic(
                &slug,
                agent["client_id"].as_str().unwrap(),
                agent["client_secret"].as_str().unwrap(),
                &[],
            )
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["expires_in"], 60, "{t}");
    let claims = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["iss"], issuer);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );

    // --key-activation-delay-secs: a rotated key is published 7 s before it signs.
    let (st, rotated) = server
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{slug}/keys/rotate"),
            &token,
            None,
        )
        .await;
    assert!(st.is_success(), "{st} {rotated}");
    let (st, keys) = server
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{slug}/keys"),
            &token,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{keys}");
    let pending: Vec<&Value> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "pending")
        .collect();
    assert_eq!(pending.len(), 3, "{keys}");
    for k in pending {
        let at = |f: &str| {
            chrono::DateTime::parse_from_rfc3339(k[f].as_str().unwrap())
                .unwrap()
                .timestamp()
        };
        assert_eq!(at("activates_at") - at("created_at"), 7, "{k}");
    }

    // --log-format json
    let done = server.stop().await;
    assert!(done.status.success(), "{done:?}");
    assert_eq!(done.stdout, "", "a configured token is never printed");
    let lines = json_lines(&done.stderr);
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on"))),
        "{}",
        done.stderr
    );
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    assert!(!done.stderr.contains(&token));
}

/// The public URL recorded at first start is enforced; `--move-public-url` moves every issuer and
/// DID on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_change_is_refused_unless_moved() {
    let dir = TempDir::new();
    let token = format!("move-{}", uuid::Uuid::new_v4().simple());
    let data_dir = dir.join_str("data");
    let env = |url: &'static str| {
        vec![
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            ("AGENTIDP_DATA_DIR", data_dir.as_str()),
            ("AGENTIDP_BOOTSTRAP_TOKEN", token.as_str()),
            ("AGENTIDP_PUBLIC_URL", url),
        ]
    };
    let a = "http://a.example:1";
    let b = "http://b.example:2";

    let server = start(dir.path(), &["serve"], &env(a)).await;
    let slug = random_slug();
    let org = server.create_org(&token, &slug).await;
    assert_eq!(org["issuer"], format!("{a}/orgs/{slug}"));
    assert!(server.stop().await.status.success());

    // Another URL: refused, naming both and the way out.
    let refused = run(dir.path(), &["serve"], &env(b)).await;
    assert!(!refused.status.success(), "{refused:?}");
    for needle in [a, b, "--move-public-url"] {
        assert!(
            refused.stderr.contains(needle),
            "the refusal names {needle}:\n{}",
            refused.stderr
        );
    }
    assert_eq!(refused.stdout, "");

    // On purpose.
    let server = start(dir.path(), &["serve", "--move-public-url"], &env(b)).await;
    let (st, moved) = server.get_org(&token, &slug).await;
    assert_eq!(st, StatusCode::OK, "{moved}");
    assert_eq!(moved["id"], org["id"]);
    assert_eq!(moved["issuer"], format!("{b}/orgs/{slug}"));
    assert_eq!(moved["did"], format!("did:web:b.example%3A2:orgs:{slug}"));
    let (st, disco) = json_of(
        server
            .http
            .get(server.url(&format!("/orgs/{slug}/.well-known/openid-configuration")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{disco}");
    assert_eq!(disco["issuer"], format!("{b}/orgs/{slug}"));
    assert!(server.stop().await.status.success());

    // The new URL is now the recorded one: it starts without the flag, the old one is refused.
    let server = start(dir.path(), &["serve"], &env(b)).await;
    assert!(server.stop().await.status.success());
    let refused = run(dir.path(), &["serve"], &env(a)).await;
    assert!(!refused.status.success(), "{refused:?}");
}

/// PostgreSQL: the master key is required, checked against the database, and `migrate` works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_requires_master_key_and_checks_it() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let Backend::Postgres { admin_url, .. } = backend else {
        unreachable!("Backend::postgres() is PostgreSQL")
    };
    // A fresh database, dropped when `db` drops (after the servers below: declared first).
    let db = PgDatabase::create(&admin_url).await;
    let db_url = db.url.clone();
    let dir = TempDir::new();
    let key1 = new_master_key();
    let key2 = new_master_key();
    assert_ne!(key1, key2);
    let base = vec![
        ("AGENTIDP_BIND", "127.0.0.1:0"),
        ("AGENTIDP_DATABASE_URL", db_url.as_str()),
        ("AGENTIDP_PUBLIC_URL", "http://localhost:8080"),
    ];
    let with_key = |key: &str| {
        let mut e: Vec<(&str, String)> = base.iter().map(|(a, b)| (*a, b.to_string())).collect();
        e.push(("AGENTIDP_MASTER_KEY", key.to_owned()));
        e
    };

    // No key: refused, naming the variable.
    let out = run(dir.path(), &["serve"], &base).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("AGENTIDP_MASTER_KEY"), "{}", out.stderr);
    let out = run(dir.path(), &["migrate"], &base).await;
    assert!(!out.status.success(), "migrate without a key: {out:?}");
    assert!(out.stderr.contains("AGENTIDP_MASTER_KEY"), "{}", out.stderr);
    // Not a key at all.
    let out = run(dir.path(), &["serve"], &refs(&with_key("AAAA"))).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("AGENTIDP_MASTER_KEY"), "{}", out.stderr);

    // The right key: migrate, then serve.
    let env = with_key(&key1);
    let env_refs = refs(&env);
    let out = run(dir.path(), &["migrate"], &env_refs).await;
    assert!(out.status.success(), "migrate: {out:?}");
    let server = start(dir.path(), &["serve"], &env_refs).await;
    let token = server.first_stdout_line().await;
    let token = token.split_whitespace().last().unwrap().to_owned();
    let (st, ready) = json_of(server.http.get(server.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{ready}");
    assert_eq!(ready["database"], "postgres", "{ready}");
    let slug = random_slug();
    server.create_org(&token, &slug).await;
    let kids = server.jwks_kids(&slug).await;
    let done = server.stop().await;
    assert!(done.status.success(), "{done:?}");
    assert!(!done.stderr.contains(&key1), "master key logged");
    assert!(
        !dir.join("data").exists(),
        "with PostgreSQL nothing is generated into a data directory"
    );

    // Another valid key: refused with a clear error, whichever way it is given.
    let out = run(dir.path(), &["serve", "--master-key", &key2], &base).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("master key does not match"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&key2), "master key echoed");
    let out = run(dir.path(), &["migrate"], &refs(&with_key(&key2))).await;
    assert!(!out.status.success(), "migrate with the wrong key: {out:?}");

    // The right key again: everything is there and decrypts.
    let server = start(dir.path(), &["serve"], &env_refs).await;
    let (st, v) = server.get_org(&token, &slug).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(server.jwks_kids(&slug).await, kids);
    let done = server.stop().await;
    assert!(done.status.success(), "{done:?}");
    assert_eq!(done.stdout, "", "the token was generated once");
}

/// SIGTERM while a request is in flight: the server stops accepting, lets the request finish with
/// success, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    use futures_util::StreamExt;

    let dir = TempDir::new();
    let token = format!("drain-{}", uuid::Uuid::new_v4().simple());
    let data_dir = dir.join_str("data");
    let mut server = start(
        dir.path(),
        &["serve"],
        &[
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            ("AGENTIDP_DATA_DIR", &data_dir),
            ("AGENTIDP_BOOTSTRAP_TOKEN", &token),
            ("AGENTIDP_LOG_FORMAT", "json"),
        ],
    )
    .await;
    // An established connection, so the in-flight request is certainly accepted by the server.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(WAIT)
        .build()
        .unwrap();
    let st = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(st.status(), StatusCode::OK);

    // Create an organization with a body sent in two halves; the second waits for `release`.
    let slug = random_slug();
    let body = json!({"slug": slug, "name": "Drain"})
        .to_string()
        .into_bytes();
    let len = body.len();
    let (head, tail) = body.split_at(len / 2);
    let (head, tail) = (head.to_vec(), tail.to_vec());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let stream = futures_util::stream::once(async move {
        let _ = started_tx.send(());
        Ok::<_, std::io::Error>(head)
    })
    .chain(futures_util::stream::once(async move {
        let _ = release_rx.await;
        Ok::<_, std::io::Error>(tail)
    }));
    let req = http
        .post(server.url("/api/v1/orgs"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("content-length", len.to_string())
        .body(reqwest::Body::wrap_stream(stream));
    let in_flight = tokio::spawn(async move { json_of(req.send().await.unwrap()).await });
    tokio::time::timeout(Duration::from_secs(10), started_rx)
        .await
        .expect("the request body starts")
        .unwrap();
    // Headers and half the body are on the wire; give the server a moment to read them.
    tokio::time::sleep(Duration::from_millis(300)).await;

    sigterm(server.pid).await;
    server.wait_for_log("shutting down").await;
    // No new connections while draining.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(server.addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with a request in flight:\n{}",
        server.stderr.text()
    );
    assert!(!in_flight.is_finished(), "the request was not in flight");

    release_tx.send(()).unwrap();
    let (st, v) = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("the in-flight request completes")
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["slug"], slug);

    let status = tokio::time::timeout(WAIT, server.child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert!(status.success(), "{status}");
    let _ = tokio::time::timeout(Duration::from_secs(5), server.readers.pop().unwrap()).await;
    assert!(
        server.stderr.text().contains("stopped"),
        "{}",
        server.stderr.text()
    );

    // The organization is really stored.
    let server = start(
        dir.path(),
        &["serve"],
        &[
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            (
                "AGENTIDP_PUBLIC_URL",
                &format!("http://localhost:{}", server.addr.port()),
            ),
            ("AGENTIDP_DATA_DIR", &data_dir),
            ("AGENTIDP_BOOTSTRAP_TOKEN", &token),
        ],
    )
    .await;
    let (st, v) = server.get_org(&token, &slug).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(server.stop().await.status.success());
}

/// SIGTERM with a client that never finishes its request: the drain is bounded by
/// [`agentidp::app::DRAIN_TIMEOUT`], after which the process exits 0 anyway (an orchestrator's
/// rolling restart must not hang on one stalled connection). Takes about `DRAIN_TIMEOUT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drain_is_bounded_for_stalled_clients() {
    use tokio::io::AsyncWriteExt;

    let dir = TempDir::new();
    let data_dir = dir.join_str("data");
    let mut server = start(
        dir.path(),
        &["serve"],
        &[
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            ("AGENTIDP_DATA_DIR", &data_dir),
            (
                "AGENTIDP_BOOTSTRAP_TOKEN",
                "stalled-client-token-0123456789abcdef",
            ),
            // Longer than the drain: the header-read timeout must not close the client first.
            ("AGENTIDP_HEADER_READ_TIMEOUT_SECS", "120"),
        ],
    )
    .await;
    // Half a request: the request line and one header, never the end of the headers.
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"POST /api/v1/orgs HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    stalled.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = tokio::time::Instant::now();
    sigterm(server.pid).await;
    server.wait_for_log("shutting down").await;
    let bound = agentidp::app::DRAIN_TIMEOUT + Duration::from_secs(15);
    let status = tokio::time::timeout(bound, server.child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "still running {bound:?} after SIGTERM with a stalled client:\n{}",
                server.stderr.text()
            )
        })
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        signalled.elapsed() + Duration::from_secs(1) >= agentidp::app::DRAIN_TIMEOUT,
        "gave up on the in-flight connection before the drain timeout"
    );
    drop(stalled);
}

/// At the most verbose level, a full flow leaves no secret in the logs; every request's lines
/// carry its request id, which is also the `x-request-id` of the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_secrets() {
    let dir = TempDir::new();
    let server = start(
        dir.path(),
        &["serve"],
        &[
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            ("AGENTIDP_LOG_FORMAT", "json"),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    let bootstrap = server.first_stdout_line().await;
    let bootstrap = bootstrap.split_whitespace().last().unwrap().to_owned();
    let master_key = std::fs::read_to_string(dir.join("data/master.key")).unwrap();

    let mut request_ids = Vec::new();
    let mut id_of = |resp: &reqwest::Response| {
        let id = resp
            .headers()
            .get("x-request-id")
            .expect("every response carries x-request-id")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(!id.is_empty());
        request_ids.push(id);
    };

    // Organization and agent.
    let slug = random_slug();
    let resp = server
        .admin_response(
            Method::POST,
            "/api/v1/orgs",
            &bootstrap,
            Some(json!({"slug": slug, "name": "Logs"})),
        )
        .await;
    id_of(&resp);
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = server
        .admin_response(
            Method::POST,
            &format!("/api/v1/orgs/{slug}/agents"),
            &bootstrap,
            Some(json!({"name": "logged bot", "scopes": ["read", "openid"]})),
        )
        .await;
    id_of(&resp);
    let (st, agent) = json_of(resp).await;
    assert_eq!(st, StatusCode::CREATED, "{agent}");
    let client_id = agent["client_id"].as_str().unwrap().to_owned();
    let secret = agent["client_secret"].as_str().unwrap().to_owned();
    let basic = BASE64_STANDARD.encode(format!("{client_id}:{secret}"));

    // Token with client_secret_basic, with an ID token.
    let resp = server
        .token_basic(&slug, &client_id, &secret, &[("scope", "openid read")])
        .await;
    id_of(&resp);
    let (st, t1) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{t1}");
    let at1 = t1["access_token"].as_str().unwrap().to_owned();
    let id_token = t1["id_token"].as_str().expect("an ID token").to_owned();

    // Token with client_secret_post.
    let resp = server
        .http
        .post(server.url(&format!("/orgs/{slug}/oauth2/token")))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .unwrap();
    id_of(&resp);
    let (st, t2) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{t2}");
    let at2 = t2["access_token"].as_str().unwrap().to_owned();

    let form_call = |endpoint: &str, token: &str| {
        server
            .http
            .post(server.url(&format!("/orgs/{slug}/oauth2/{endpoint}")))
            .basic_auth(&client_id, Some(&secret))
            .form(&[("token", token.to_owned())])
            .send()
    };

    // Introspection, agent-info, revocation, introspection of the revoked token.
    let resp = form_call("introspect", &at1).await.unwrap();
    id_of(&resp);
    let (st, v) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["active"], true, "{v}");
    let resp = server
        .http
        .get(server.url(&format!("/orgs/{slug}/agent-info")))
        .bearer_auth(&at1)
        .send()
        .await
        .unwrap();
    id_of(&resp);
    let (st, v) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let resp = form_call("revoke", &at2).await.unwrap();
    id_of(&resp);
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = form_call("introspect", &at2).await.unwrap();
    id_of(&resp);
    let (st, v) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["active"], false, "{v}");

    // A wrong secret (a typo of a real one is a secret too) and a secret in a query string.
    let wrong = format!("{secret}x");
    let resp = server.token_basic(&slug, &client_id, &wrong, &[]).await;
    id_of(&resp);
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let query_secret = format!("q{}", uuid::Uuid::new_v4().simple());
    let resp = server
        .http
        .get(server.url(&format!("/healthz?access_token={query_secret}")))
        .send()
        .await
        .unwrap();
    id_of(&resp);

    let done = server.stop().await;
    assert!(done.status.success(), "{done:?}");
    let log = done.stderr;
    let sig = |jwt: &str| jwt.rsplit('.').next().unwrap().to_owned();
    let forbidden = [
        ("bootstrap token", bootstrap.clone()),
        ("master key", master_key.trim().to_owned()),
        ("client secret", secret.clone()),
        ("wrong client secret", wrong.clone()),
        ("Basic credentials", basic.clone()),
        ("access token (basic)", at1.clone()),
        ("access token signature (basic)", sig(&at1)),
        ("access token (post)", at2.clone()),
        ("access token signature (post)", sig(&at2)),
        ("ID token", id_token.clone()),
        ("ID token signature", sig(&id_token)),
        ("query string secret", query_secret.clone()),
    ];
    for (what, value) in &forbidden {
        assert!(value.len() >= 16, "{what} too short to search: {value}");
        if let Some(line) = log.lines().find(|l| l.contains(value.as_str())) {
            panic!("the log carries the {what}: {line}");
        }
    }

    // Request ids: every line in a request span has one; every response's id is logged.
    let lines = json_lines(&log);
    let in_request: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "request")
        .collect();
    assert!(
        !in_request.is_empty(),
        "no request log lines at trace level"
    );
    for l in &in_request {
        assert!(
            l["span"]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "a request log line without a request id: {l}"
        );
    }
    for id in &request_ids {
        assert!(
            in_request
                .iter()
                .any(|l| l["span"]["request_id"] == id.as_str()),
            "no log line carries request id {id}"
        );
    }
    let distinct: std::collections::HashSet<&String> = request_ids.iter().collect();
    assert_eq!(distinct.len(), request_ids.len(), "request ids are unique");
}

/// `agentidp keys rotate` over the data directory, with the server stopped or running: new kids
/// printed, published (pending) next to the old ones, which keep signing until activation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_cli() {
    let dir = TempDir::new();
    let token = format!("keys-{}", uuid::Uuid::new_v4().simple());
    let data_dir = dir.join_str("data");
    let env = [
        ("AGENTIDP_BIND", "127.0.0.1:0"),
        ("AGENTIDP_DATA_DIR", data_dir.as_str()),
        ("AGENTIDP_BOOTSTRAP_TOKEN", token.as_str()),
        ("AGENTIDP_PUBLIC_URL", "http://localhost:8080"),
    ];
    let server = start(dir.path(), &["serve"], &env).await;
    let slug = random_slug();
    server.create_org(&token, &slug).await;
    let agent = server.create_agent(&token, &slug, &["read"]).await;
    let (client_id, secret) = (
        agent["client_id"].as_str().unwrap().to_owned(),
        agent["client_secret"].as_str().unwrap().to_owned(),
    );
    let old = server.jwks_kids(&slug).await;
    assert_eq!(old.len(), 3);
    assert!(server.stop().await.status.success());

    // Server stopped.
    let out = run(dir.path(), &["keys", "rotate", "--org", &slug], &env).await;
    assert!(out.status.success(), "{out:?}");
    let printed: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        printed.len(),
        1,
        "one line per organization: {:?}",
        out.stdout
    );
    let new: Vec<String> = printed[0]
        .strip_prefix(&format!("{slug}: "))
        .unwrap_or_else(|| panic!("line names the org: {}", printed[0]))
        .split(", ")
        .map(|k| k.split_whitespace().last().unwrap().to_owned())
        .collect();
    assert_eq!(new.len(), 3, "a key per algorithm: {new:?}");
    assert!(new.iter().all(|k| !old.contains(k)), "{new:?} vs {old:?}");

    let server = start(dir.path(), &["serve"], &env).await;
    let published = server.jwks_kids(&slug).await;
    for k in old.iter().chain(&new) {
        assert!(published.contains(k), "{k} not in the JWKS {published:?}");
    }
    assert_eq!(published.len(), 6);
    let (st, keys) = server
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{slug}/keys"),
            &token,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{keys}");
    for k in keys["keys"].as_array().unwrap() {
        let kid = k["kid"].as_str().unwrap().to_owned();
        let expect = if new.contains(&kid) {
            "pending"
        } else {
            "active"
        };
        assert_eq!(k["state"], expect, "{k}");
    }
    // The pending keys do not sign yet.
    let (st, t) = json_of(server.token_basic(&slug, &client_id, &secret, &[]).await).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let kid = jwt_header(t["access_token"].as_str().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(old.contains(&kid), "signed with {kid}, not an old key");

    // Server running: every organization, through the same SQLite file.
    let out = run(dir.path(), &["keys", "rotate"], &env).await;
    assert!(out.status.success(), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{slug}: ")))
        .unwrap_or_else(|| panic!("the org is rotated: {:?}", out.stdout));
    let newer: Vec<String> = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split(", ")
        .map(|k| k.split_whitespace().last().unwrap().to_owned())
        .collect();
    let (st, keys) = server
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{slug}/keys"),
            &token,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{keys}");
    let listed: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    for k in &newer {
        assert!(listed.contains(&k.as_str()), "{k} not listed: {keys}");
    }

    // An unknown organization.
    let out = run(
        dir.path(),
        &["keys", "rotate", "--org", "no-such-org"],
        &env,
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("no-such-org"), "{}", out.stderr);
    assert_eq!(out.stdout, "");

    assert!(server.stop().await.status.success());
}

/// Liveness, readiness (naming the database) and Prometheus metrics by route template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let dir = TempDir::new();
    let data_dir = dir.join_str("data");
    let server = start(
        dir.path(),
        &["serve"],
        &[
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            ("AGENTIDP_DATA_DIR", &data_dir),
            (
                "AGENTIDP_BOOTSTRAP_TOKEN",
                "health-check-token-0123456789abcdef",
            ),
        ],
    )
    .await;
    let get = |path: &str| server.http.get(server.url(path)).send();

    let (st, v) = json_of(get("/healthz").await.unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok");
    let (st, v) = json_of(get("/readyz").await.unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["database"], "sqlite", "{v}");

    let unknown = format!("/nowhere-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(get(&unknown).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);

    let resp = get("/metrics").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("# TYPE agentidp_http_requests_total counter"),
        "{text}"
    );
    let healthz = text
        .lines()
        .find(|l| {
            l.starts_with("agentidp_http_requests_total{")
                && l.contains("route=\"/healthz\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no /healthz counter:\n{text}"));
    let count: f64 = healthz.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 2.0, "{healthz}");
    assert!(
        text.lines().any(|l| l.starts_with("agentidp_http_requests_total{")
            && l.contains("status=\"404\"")),
        "{text}"
    );
    assert!(
        !text.contains(&unknown),
        "a raw path became a label value:\n{text}"
    );
    assert!(server.stop().await.status.success());
}

/// `serve --help` shows which variables are set, never their values: database and Redis URLs
/// carry passwords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_never_prints_secret_values() {
    let dir = TempDir::new();
    let out = run(
        dir.path(),
        &["serve", "--help"],
        &[
            (
                "AGENTIDP_DATABASE_URL",
                "postgres://u:db-pass-1234@127.0.0.1/x",
            ),
            ("AGENTIDP_REDIS_URL", "redis://:redis-pass-5678@127.0.0.1"),
            ("AGENTIDP_MASTER_KEY", "master-key-9012"),
            ("AGENTIDP_BOOTSTRAP_TOKEN", "bootstrap-3456"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("AGENTIDP_DATABASE_URL"),
        "{}",
        out.stdout
    );
    for secret in [
        "db-pass-1234",
        "redis-pass-5678",
        "master-key-9012",
        "bootstrap-3456",
    ] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} in --help:\n{}",
            out.stdout
        );
        assert!(
            !out.stderr.contains(secret),
            "{secret} in --help:\n{}",
            out.stderr
        );
    }
}
