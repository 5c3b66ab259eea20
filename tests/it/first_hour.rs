//! A newcomer's first hour, run with the real binary (the helpers of [`super::startup`]): a
//! failed first start creates nothing and loses no bootstrap token, commands other than `serve`
//! never create an instance, every start-up error names its cause and the way out, the
//! insecure-loopback switch warns, and `scripts/two-instances` (the README's "Two instances on
//! one laptop") works end to end.

use std::path::Path;

use reqwest::{Method, StatusCode};

use super::startup::{Finished, TempDir, new_master_key, refs, run, start};
use crate::support::{Backend, PgDatabase, random_slug};

/// A port that nobody listens on (bound, read, released).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Asserts a refused start: non-zero, nothing on stdout, `needles` all in stderr.
fn assert_refused(out: &Finished, needles: &[&str]) {
    assert!(!out.status.success(), "expected a refusal: {out:?}");
    assert_eq!(out.stdout, "", "nothing printed on a refused start");
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "the error names {n:?}:\n{}",
            out.stderr
        );
    }
}

/// The entries of `dir` (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// First starts that fail on an unreachable Redis, a missing outbound CA file, an unreadable TLS
/// certificate and a taken port create nothing: no data directory, no master key, no database.
/// The next good start prints the bootstrap token, which works. (Before, the database and master
/// key were created first and the token's digest was recorded before Redis and the CA file were
/// checked: the next start printed nothing and the token was lost.) A lost token is recovered by
/// restarting with `AGENTIDP_BOOTSTRAP_TOKEN`, which replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_start_creates_nothing_and_loses_no_token() {
    let dir = TempDir::new();
    let data_dir = dir.join_str("data");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let garbage = garbage.to_str().unwrap().to_owned();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let redis = format!("redis://127.0.0.1:{}", dead_port());
    let missing_ca = dir.join_str("no-such-ca.pem");

    let base = [
        ("AGENTIDP_BIND", "127.0.0.1:0"),
        ("AGENTIDP_DATA_DIR", data_dir.as_str()),
        ("AGENTIDP_PUBLIC_URL", "http://localhost:8080"),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut e: Vec<(&str, String)> = base.iter().map(|(k, v)| (*k, v.to_string())).collect();
        for (k, v) in extra {
            e.retain(|(ek, _)| ek != k);
            e.push((k, v.to_string()));
        }
        e
    };
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "unreachable Redis",
            with(&[("AGENTIDP_REDIS_URL", &redis)]),
            vec!["AGENTIDP_REDIS_URL", "onnection refused"],
        ),
        (
            "missing CA file",
            with(&[("AGENTIDP_OUTBOUND_CA_FILE", &missing_ca)]),
            vec!["AGENTIDP_OUTBOUND_CA_FILE", missing_ca.as_str()],
        ),
        (
            "bad TLS file",
            with(&[
                ("AGENTIDP_TLS_CERT", &garbage),
                ("AGENTIDP_TLS_KEY", &garbage),
            ]),
            vec!["AGENTIDP_TLS_CERT", garbage.as_str()],
        ),
        (
            "taken port",
            with(&[("AGENTIDP_BIND", &taken)]),
            vec![taken.as_str(), "AGENTIDP_BIND"],
        ),
    ];
    for (what, env, needles) in &cases {
        let out = run(dir.path(), &["serve"], &refs(env)).await;
        assert_refused(&out, needles);
        assert!(
            !Path::new(&data_dir).exists(),
            "a first start failing on {what} left {data_dir} behind: {:?}\n{}",
            entries(Path::new(&data_dir)),
            out.stderr
        );
    }

    // The first good start prints the token, and it works.
    let server = start(dir.path(), &["serve"], &refs(&with(&[]))).await;
    let line = server.first_stdout_line().await;
    let token = line.split_whitespace().last().unwrap().to_owned();
    assert!(token.len() >= 32, "{line}");
    server.create_org(&token, &random_slug()).await;
    assert!(server.stop().await.status.success());

    // Recovery of a lost token: AGENTIDP_BOOTSTRAP_TOKEN replaces it, and stays after a restart
    // without the variable.
    let chosen = format!("recovered-{}", uuid::Uuid::new_v4().simple());
    let server = start(
        dir.path(),
        &["serve"],
        &refs(&with(&[("AGENTIDP_BOOTSTRAP_TOKEN", &chosen)])),
    )
    .await;
    server.create_org(&chosen, &random_slug()).await;
    let (st, _) = server
        .admin(Method::GET, "/api/v1/orgs", &token, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the lost token is replaced");
    assert!(server.stop().await.status.success());
    let server = start(dir.path(), &["serve"], &refs(&with(&[]))).await;
    let (st, v) = server
        .admin(Method::GET, "/api/v1/orgs", &chosen, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let done = server.stop().await;
    assert_eq!(done.stdout, "", "no new token once one is recorded");
    assert!(
        done.stderr.contains("AGENTIDP_BOOTSTRAP_TOKEN"),
        "a restart says how to recover a lost token:\n{}",
        done.stderr
    );
}

/// `migrate` and `keys rotate` in a directory with no instance refuse, naming the data directory
/// and the way out, and create nothing (they used to create `./data` with a new master key and
/// exit 0); with an instance whose master key file is gone they refuse without writing a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_other_than_serve_never_create_an_instance() {
    let dir = TempDir::new();
    for args in [&["migrate"][..], &["keys", "rotate"][..]] {
        let out = run(dir.path(), args, &[]).await;
        let data = std::fs::canonicalize(dir.path()).unwrap().join("data");
        assert_refused(
            &out,
            &[
                data.to_str().unwrap(),
                "AGENTIDP_DATA_DIR",
                "agentidp serve",
            ],
        );
        assert!(
            entries(dir.path()).is_empty(),
            "agentidp {args:?} created {:?}",
            entries(dir.path())
        );
    }
    let elsewhere = dir.join_str("elsewhere");
    let out = run(
        dir.path(),
        &["keys", "rotate", "--data-dir", &elsewhere],
        &[],
    )
    .await;
    assert_refused(&out, &[&elsewhere]);
    let db = dir.join_str("other.db");
    let out = run(
        dir.path(),
        &["migrate"],
        &[("AGENTIDP_DATABASE_URL", &format!("sqlite://{db}"))],
    )
    .await;
    assert_refused(&out, &[&db, "AGENTIDP_DATABASE_URL"]);
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    // An instance, then its master key file lost: refused, and no new key is written.
    let data_dir = dir.join_str("data");
    let env = [
        ("AGENTIDP_BIND", "127.0.0.1:0"),
        ("AGENTIDP_DATA_DIR", data_dir.as_str()),
    ];
    let server = start(dir.path(), &["serve"], &env).await;
    assert!(server.stop().await.status.success());
    let out = run(dir.path(), &["migrate"], &env).await;
    assert!(out.status.success(), "migrate on an instance: {out:?}");
    std::fs::remove_file(dir.join("data/master.key")).unwrap();
    for args in [&["migrate"][..], &["keys", "rotate"][..], &["serve"][..]] {
        let out = run(dir.path(), args, &env).await;
        assert_refused(&out, &["master.key", "AGENTIDP_MASTER_KEY"]);
        assert!(
            !dir.join("data/master.key").exists(),
            "agentidp {args:?} wrote a new master key over a database made with another"
        );
    }
}

/// Every start-up error names its cause: a dead PostgreSQL port is "connection refused" at once
/// (not a pool timeout after 10 s), an unopenable SQLite file is named, an invalid value from
/// the environment names the variable, an invalid `RUST_LOG` is refused, and a missing or
/// malformed master key says how to make one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_name_their_cause() {
    let dir = TempDir::new();
    let key = new_master_key();

    let pg = format!("postgres://agentidp:pw@127.0.0.1:{}/x", dead_port());
    let started = std::time::Instant::now();
    let out = run(
        dir.path(),
        &["migrate"],
        &[
            ("AGENTIDP_DATABASE_URL", &pg),
            ("AGENTIDP_MASTER_KEY", &key),
        ],
    )
    .await;
    assert_refused(&out, &["onnection refused", "127.0.0.1:"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    let file = dir.join_str("no/such/dir/x.db");
    let out = run(
        dir.path(),
        &["serve"],
        &[
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            ("AGENTIDP_DATABASE_URL", &format!("sqlite://{file}")),
        ],
    )
    .await;
    assert_refused(&out, &[&file]);

    let out = run(
        dir.path(),
        &["serve"],
        &[("AGENTIDP_ACCESS_TOKEN_TTL_SECS", "abc")],
    )
    .await;
    assert_refused(&out, &["'AGENTIDP_ACCESS_TOKEN_TTL_SECS'"]);
    let out = run(
        dir.path(),
        &["serve", "--access-token-ttl-secs", "abc"],
        &[],
    )
    .await;
    assert_refused(&out, &["--access-token-ttl-secs"]);

    let out = run(
        dir.path(),
        &["serve"],
        &[("AGENTIDP_BIND", "127.0.0.1:0"), ("RUST_LOG", "@@@")],
    )
    .await;
    assert_refused(&out, &["RUST_LOG", "@@@"]);

    let out = run(
        dir.path(),
        &["serve"],
        &[
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            ("AGENTIDP_MASTER_KEY", "AAAA"),
        ],
    )
    .await;
    assert_refused(&out, &["AGENTIDP_MASTER_KEY", "openssl rand -base64 32"]);
    let out = run(
        dir.path(),
        &["serve"],
        &[
            ("AGENTIDP_BIND", "127.0.0.1:0"),
            ("AGENTIDP_DATABASE_URL", "postgres://127.0.0.1:1/x"),
        ],
    )
    .await;
    assert_refused(&out, &["AGENTIDP_MASTER_KEY", "openssl rand -base64 32"]);
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

/// PostgreSQL without a master key is refused before anything touches the database: the schema
/// stays empty (the migrations used to run first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_master_key_fails_before_migrating() {
    let Some(Backend::Postgres { admin_url, .. }) = Backend::postgres() else {
        return;
    };
    let db = PgDatabase::create(&admin_url).await;
    let dir = TempDir::new();
    let env = [
        ("AGENTIDP_BIND", "127.0.0.1:0"),
        ("AGENTIDP_DATABASE_URL", db.url.as_str()),
    ];
    let tables = || async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        n
    };
    for args in [&["serve"][..], &["migrate"][..]] {
        let out = run(dir.path(), args, &env).await;
        assert_refused(&out, &["AGENTIDP_MASTER_KEY"]);
        assert_eq!(tables().await, 0, "agentidp {args:?} touched the schema");
    }
    // With a key, `keys rotate` still refuses an empty database (it is no instance) and leaves
    // it untouched.
    let key = new_master_key();
    let out = run(
        dir.path(),
        &["keys", "rotate"],
        &[
            ("AGENTIDP_DATABASE_URL", db.url.as_str()),
            ("AGENTIDP_MASTER_KEY", key.as_str()),
        ],
    )
    .await;
    assert_refused(&out, &["no agentidp instance", "agentidp migrate"]);
    assert_eq!(tables().await, 0, "keys rotate touched the schema");
}

/// With `AGENTIDP_ALLOW_INSECURE_LOOPBACK` on, start-up logs a warning saying what it allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_loopback_warns_at_start() {
    let dir = TempDir::new();
    let data_dir = dir.join_str("data");
    let env = [
        ("AGENTIDP_BIND", "127.0.0.1:0"),
        ("AGENTIDP_DATA_DIR", data_dir.as_str()),
        ("AGENTIDP_PUBLIC_URL", "http://localhost:8080"),
        ("AGENTIDP_LOG_FORMAT", "json"),
        ("AGENTIDP_ALLOW_INSECURE_LOOPBACK", "true"),
    ];
    let server = start(dir.path(), &["serve"], &env).await;
    let done = server.stop().await;
    let warned = done.stderr.lines().any(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        v["level"] == "WARN"
            && v["message"].as_str().is_some_and(|m| {
                m.contains("AGENTIDP_ALLOW_INSECURE_LOOPBACK") && m.contains("loopback")
            })
    });
    assert!(warned, "no warning:\n{}", done.stderr);

    // Off (the default): no such warning.
    let env_off = [
        ("AGENTIDP_BIND", "127.0.0.1:0"),
        ("AGENTIDP_DATA_DIR", data_dir.as_str()),
        ("AGENTIDP_PUBLIC_URL", "http://localhost:8080"),
    ];
    let server = start(dir.path(), &["serve"], &env_off).await;
    let done = server.stop().await;
    assert!(
        !done
            .stderr
            .contains("AGENTIDP_ALLOW_INSECURE_LOOPBACK is on"),
        "{}",
        done.stderr
    );
}

/// `scripts/two-instances` (the README's "Two instances on one laptop") runs end to end with the
/// binary under test: two HTTPS instances, partners both ways, a federated token exchange,
/// `/federation/verify` and a did:web resolution across them. About 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_script_works() {
    for tool in ["openssl", "curl", "jq", "bash"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "scripts/two-instances needs {tool}"
            );
            eprintln!("skipped: no {tool}");
            return;
        }
    }
    let dir = TempDir::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/two-instances");
    let work = dir.join("two");
    let a = dead_port();
    let b = std::iter::repeat_with(dead_port).find(|p| *p != a).unwrap();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new("bash")
            .arg(&script)
            .arg(&work)
            .env("AGENTIDP_BIN", env!("CARGO_BIN_EXE_agentidp"))
            .env("PORT_A", a.to_string())
            .env("PORT_B", b.to_string())
            .env("KEEP_RUNNING", "0")
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the script finishes within 2 minutes")
    .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("done: federation between A and B works"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("\"iss\": \"https://localhost:{b}/orgs/beta\"")),
        "{stdout}"
    );
    assert!(stdout.contains("\"valid\": true"), "{stdout}");
    assert!(
        stdout.contains(&format!("\"id\": \"did:web:localhost%3A{a}:orgs:alpha\"")),
        "{stdout}"
    );
    // Both instances were stopped (KEEP_RUNNING=0): their ports are free again.
    for port in [a, b] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still taken"
        );
    }
}
