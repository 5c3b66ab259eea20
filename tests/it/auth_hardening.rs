//! Issue 9, the authentication points: client authentication says nothing about a client's
//! status before its credentials are proven (point 12), OAuth error descriptions keep RFC 6749
//! §5.2's character set (point 12), failed authentication is rate-limited per client IP and per
//! client (point 7).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::on_all_backends;
use crate::support::*;

/// RFC 6749 §5.2 `error_description`: %x20-21 / %x23-5B / %x5D-7E.
fn assert_description_charset(v: &Value) {
    let d = v["error_description"].as_str().expect("a description");
    assert!(
        d.chars()
            .all(|c| matches!(c as u32, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
        "outside RFC 6749 §5.2: {d:?}"
    );
}

/// Client ids are public: before the secret is checked, a suspended client and a wrong secret
/// read the same; only the holder of the secret learns that the client is not active.
async fn client_status_is_told_only_after_authentication(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/agents/{}/suspend", org.slug, agent.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let wrong = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((&agent.client_id, "not-the-secret")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let wrong = assert_oauth_error(wrong, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let unknown = app
        .post_form(
            &org,
            "/oauth2/token",
            Some(("no-such-client", "not-the-secret")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let unknown = assert_oauth_error(unknown, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(wrong["error_description"], unknown["error_description"]);

    let right = app.token_response(&org, &agent, &[]).await;
    let right = assert_oauth_error(right, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(
        right["error_description"], "the client is not active",
        "{right}"
    );
}

/// Every description an OAuth endpoint answers keeps RFC 6749 §5.2's character set, also when it
/// quotes what the client sent (`scope "admin:everything"` was answered with its quotes).
async fn oauth_error_descriptions_keep_the_character_set(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let secret = agent.secret.clone().unwrap();
    let basic = Some((agent.client_id.as_str(), secret.as_str()));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "admin:everything"),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "r\"e\\a\u{202e}d"),
            ],
            "invalid_scope",
        ),
        (
            vec![("grant_type", "x\"y\\z\u{e9}")],
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("a\"b", "1"),
                ("a\"b", "2"),
            ],
            "invalid_request",
        ),
    ];
    for (form, code) in cases {
        let resp = app.post_form(&org, "/oauth2/token", basic, &form).await;
        let v = assert_oauth_error(resp, StatusCode::BAD_REQUEST, code).await;
        assert_description_charset(&v);
    }
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            basic,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "admin:everything"),
            ],
        )
        .await;
    let v = assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;
    assert_eq!(
        v["error_description"],
        "scope 'admin:everything' is not allowed for this client"
    );
}

async fn wrong_secret(app: &TestApp, org: &TestOrg, agent: &TestAgent) -> reqwest::Response {
    app.post_form(
        org,
        "/oauth2/token",
        Some((&agent.client_id, "not-the-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await
}

async fn admin_get(app: &TestApp, token: &str, xff: Option<&str>) -> reqwest::Response {
    // By address, not by public URL: two instances of one deployment share that.
    let url = format!("http://{}/api/v1/orgs", app.addr);
    let mut req = app.http.get(url).bearer_auth(token);
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    req.send().await.unwrap()
}

/// Asserts a 429 with a whole number of seconds in `Retry-After`; returns the JSON body.
async fn assert_429(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let (_, v) = json_of(resp).await;
    assert_description_charset(&v);
    v
}

/// Issue 9 point 7: failed client and admin authentications from one address are braked
/// (`AGENTIDP_AUTH_FAILURE_LIMIT` per minute): past the limit every attempt from the address is
/// answered 429 with `Retry-After` before its credentials are looked at, the right ones too,
/// until the injected clock has passed enough time. Before, 13,531 wrong admin tokens in 8 s
/// never met a 429.
async fn failed_authentication_is_limited_per_ip(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth_failure_limit = 5).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    // Successes do not count.
    for _ in 0..10 {
        app.token(&org, &agent, &[]).await;
    }
    for _ in 0..3 {
        assert_oauth_error(
            wrong_secret(&app, &org, &agent).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        )
        .await;
    }
    for _ in 0..2 {
        let resp = admin_get(&app, "not-the-admin-token", None).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // Five failures (client and admin together): the next attempt is refused unread.
    let v = assert_429(app.token_response(&org, &agent, &[]).await).await;
    assert_eq!(v["error"], "slow_down", "{v}");
    let v = assert_429(admin_get(&app, &app.token, None).await).await;
    assert_eq!(v["error"], "rate_limited", "{v}");

    // One interval (60 s / 5) later one more attempt is allowed; a quiet minute restores all.
    app.advance(Duration::from_secs(12));
    app.token(&org, &agent, &[]).await;
    assert_oauth_error(
        wrong_secret(&app, &org, &agent).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert_429(app.token_response(&org, &agent, &[]).await).await;
    app.advance(Duration::from_secs(60));
    app.token(&org, &agent, &[]).await;
    let (st, _) = app.admin(Method::GET, "/api/v1/orgs", None).await;
    assert_eq!(st, StatusCode::OK);

    // The failures are counted for /metrics.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for kind in ["client", "admin"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("agentidp_auth_failures_total")
                    && l.contains(&format!("kind=\"{kind}\""))),
            "{kind}: {metrics}"
        );
    }
}

/// `AGENTIDP_AUTH_FAILURE_LIMIT=0` turns the per-IP limit off; the per-client limit (100, then
/// one per 6 s, from all addresses together) stays on, and braking one client leaves the others alone.
async fn failed_authentication_is_limited_per_client(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth_failure_limit = 0).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let other = app.create_agent(&org, &["read"]).await;
    // At least the allowance of 100 is answered 401; then 429 (the server clock also moves
    // with the wall clock, one failure back per 6 s, so the loop stops at the first 429).
    let mut failures = 0;
    loop {
        let resp = wrong_secret(&app, &org, &agent).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        failures += 1;
        assert!(failures <= 120, "never limited");
    }
    assert!(failures >= 100, "limited after {failures}");
    // The right secret too, now; the other client and admin calls from the same address are
    // not braked (the per-IP limit is off).
    let v = assert_429(app.token_response(&org, &agent, &[]).await).await;
    assert_eq!(v["error"], "slow_down");
    app.token(&org, &other, &[]).await;
    for _ in 0..3 {
        assert_eq!(
            admin_get(&app, "wrong", None).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    app.advance(Duration::from_secs(7));
    app.token(&org, &agent, &[]).await;
}

/// The client address is the socket peer; `X-Forwarded-For` is believed only from
/// `AGENTIDP_TRUSTED_PROXIES`, so a client cannot dodge the limit by inventing addresses, and
/// behind a trusted proxy each client has its own count.
async fn the_limit_follows_the_client_address(backend: Backend) {
    let untrusted = spawn_app_with(backend.clone(), |s| s.auth_failure_limit = 2).await;
    for i in 0..2 {
        let r = admin_get(&untrusted, "wrong", Some(&format!("203.0.113.{i}"))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_429(admin_get(&untrusted, "wrong", Some("203.0.113.99")).await).await;
    drop(untrusted);

    let proxied = spawn_app_with(backend, |s| {
        s.auth_failure_limit = 2;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for _ in 0..2 {
        let r = admin_get(&proxied, "wrong", Some("198.51.100.1, 203.0.113.1")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_429(admin_get(&proxied, &proxied.token, Some("203.0.113.1")).await).await;
    let ok = admin_get(&proxied, &proxied.token, Some("203.0.113.1, 203.0.113.2")).await;
    assert_eq!(ok.status(), StatusCode::OK);
}

/// The security log of this test binary: INFO events of the HTTP edge only (so other tests add
/// little), kept in memory. Installed once, for the whole process.
fn security_log() -> &'static std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                // `agentidp::http` also enables the request span (it carries the request id).
                "agentidp::http=info",
            ))
            .with_ansi(false)
            .with_writer(move || Writer(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
}

struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 9 point 19: a failed client authentication and an admin 401 are logged at INFO with
/// the request id, the client id and address, and never the secret or token that was tried.
async fn authentication_failures_are_logged_without_secrets(backend: Backend) {
    let log = security_log();
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((&agent.client_id, "wrong-secret-do-not-log-1")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let client_request = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = admin_get(&app, "wrong-admin-token-do-not-log-2", None).await;
    let admin_request = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Every admin change is logged with its route and status (never its body).
    let resp = app
        .http
        .post(format!(
            "http://{}/api/v1/orgs/{}/agents/{}/rotate-secret",
            app.addr, org.slug, agent.id
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    let change_request = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (st, rotated) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    let new_secret = rotated["client_secret"]
        .as_str()
        .expect("the new secret")
        .to_owned();

    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let line = |id: &str| {
        text.lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no log line with request id {id}:\n{text}"))
            .to_owned()
    };
    let client = line(&client_request);
    assert!(
        client.contains(" INFO ")
            && client.contains("client.authentication_failed")
            && client.contains(&agent.client_id)
            && client.contains("client_ip=127.0.0.1"),
        "{client}"
    );
    let admin = line(&admin_request);
    assert!(
        admin.contains(" INFO ") && admin.contains("admin.unauthorized"),
        "{admin}"
    );
    let change = line(&change_request);
    assert!(
        change.contains(" INFO ")
            && change.contains("admin.change")
            && change.contains("route=/api/v1/orgs/{org}/agents/{id}/rotate-secret")
            && change.contains("status=200"),
        "{change}"
    );
    assert!(!text.contains("do-not-log"), "a secret reached the log");
    assert!(!text.contains(&new_secret), "a new secret reached the log");
    assert!(
        !text.contains(&app.token),
        "the admin token reached the log"
    );
}

/// `/federation/verify` takes the platform token as well as agents' access tokens: a wrong
/// bearer there counts against the address too (review finding: it was never braked, so the
/// platform token could be guessed there without a 429).
async fn wrong_bearers_at_federation_verify_are_braked(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth_failure_limit = 3).await;
    let org = app.create_org().await;
    let url = format!("{}/orgs/{}/federation/verify", app.base, org.slug);
    let verify = |token: String| {
        app.http
            .post(&url)
            .bearer_auth(token)
            .json(&serde_json::json!({"assertion": "a.b.c"}))
            .send()
    };
    for i in 0..3 {
        let resp = verify(format!("wrong-{i}")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // Over the limit: refused before the token is looked at, the right one too.
    let resp = verify(app.token.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    app.advance(Duration::from_secs(61));
    let resp = verify(app.token.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

on_all_backends!(
    wrong_bearers_at_federation_verify_are_braked,
    authentication_failures_are_logged_without_secrets,
    client_status_is_told_only_after_authentication,
    oauth_error_descriptions_keep_the_character_set,
    failed_authentication_is_limited_per_ip,
    failed_authentication_is_limited_per_client,
    the_limit_follows_the_client_address,
);

/// With Redis, instances share the count: failures spent at one instance brake the address at
/// the other after at most one attempt there (which learns the shared state), with no Redis call
/// on any successful request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_the_failure_count_through_redis() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let Backend::Postgres {
        redis_url: Some(_), ..
    } = &backend
    else {
        return;
    };
    let (mut settings, cleanup) = test_settings(&backend).await;
    settings.auth_failure_limit = 3;
    let clock = std::sync::Arc::new(agentidp::model::OffsetClock::new());
    let one = spawn_with_clock(settings.clone(), Some(cleanup), clock.clone()).await;
    let mut s2 = settings.clone();
    s2.public_url = Some(one.base.clone());
    let two = spawn_with_clock(s2, None, clock).await;

    for _ in 0..3 {
        assert_eq!(
            admin_get(&one, "wrong", None).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_429(admin_get(&one, &one.token, None).await).await;
    // The second instance has seen no failure: one more attempt, refused, teaches it.
    assert_eq!(
        admin_get(&two, "wrong", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_429(admin_get(&two, &two.token, None).await).await;
    one.advance(Duration::from_secs(21));
    assert_eq!(
        admin_get(&two, &two.token, None).await.status(),
        StatusCode::OK
    );
}
