//! Request limits (issue 11 point 4): per client at the token endpoint, per principal on the
//! admin API, per client IP on the public endpoints; 429 with `Retry-After` and the RateLimit
//! fields (draft-ietf-httpapi-ratelimit-headers-11); shared by instances through Redis, and
//! per instance while Redis is down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentidp::config::RateLimitSetting;
use agentidp::limiter::Limit;
use agentidp::model::OffsetClock;
use reqwest::{Method, StatusCode};

use crate::on_all_backends;
use crate::private_key_jwt::{ClientKey, assertion_claims, register, token_with_assertion};
use crate::support::*;

fn limit(per_second: u32, burst: u32) -> RateLimitSetting {
    RateLimitSetting(Some(Limit { per_second, burst }))
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The org as seen through another instance (same issuer path, that instance's address).
fn via(app: &TestApp, org: &TestOrg) -> TestOrg {
    TestOrg {
        issuer: format!("http://{}/orgs/{}", app.addr, org.slug),
        ..org.clone()
    }
}

/// A client over its limit is answered 429 with `Retry-After`, the RateLimit fields and the
/// OAuth `slow_down` body, before anything is verified; another client of the same organization
/// is not affected; failed authentications do not spend a client's allowance (they are the
/// failure brake's); time (the injected clock) brings the allowance back.
async fn a_client_over_its_limit_is_refused_alone(backend: Backend) {
    let (mut settings, cleanup) = test_settings(&backend).await;
    // One a second, three at once.
    settings.token_rate_limit = limit(1, 3);
    let app = spawn_with_clock(settings, Some(cleanup), Arc::new(OffsetClock::new())).await;
    let org = app.create_org().await;
    let a = app.create_agent(&org, &[]).await;
    let b = app.create_agent(&org, &[]).await;

    // Wrong secrets for a's client id: refused, and not counted against a.
    for _ in 0..3 {
        let resp = app
            .post_form(
                &org,
                "/oauth2/token",
                Some((&a.client_id, "wrong")),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let resp = app.token_response(&org, &a, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "ratelimit-policy"), Some("token;q=3;w=3"));
        seen.push(header(&resp, "ratelimit").unwrap_or_default().to_owned());
    }
    assert!(seen[0].starts_with("token;r=2;"), "{seen:?}");
    assert!(seen[2].starts_with("token;r=0;"), "{seen:?}");

    let resp = app.token_response(&org, &a, &[]).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(header(&resp, "ratelimit-policy"), Some("token;q=3;w=3"));
    assert_eq!(header(&resp, "ratelimit"), Some("token;r=0;t=1"));
    assert_eq!(header(&resp, "cache-control"), Some("no-store"));
    let (_, body) = json_of(resp).await;
    assert_eq!(body["error"], "slow_down", "{body}");
    assert!(body["error_description"].as_str().is_some(), "{body}");

    // The other client of the organization is not affected.
    app.token(&org, &b, &[]).await;
    // A second later a has one more.
    app.advance(Duration::from_secs(1));
    app.token(&org, &a, &[]).await;
    assert_eq!(
        app.token_response(&org, &a, &[]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // The public endpoints are not limited by default and carry no RateLimit fields.
    let resp = app
        .http
        .get(format!("{}/.well-known/openid-configuration", org.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "ratelimit"), None);
}

/// Each admin principal has its own limit (`AGENTIDP_ADMIN_RATE_LIMIT`): the platform token is
/// answered 429 past it, in the admin error format.
async fn the_admin_api_is_limited_per_principal(backend: Backend) {
    let (mut settings, cleanup) = test_settings(&backend).await;
    settings.admin_rate_limit = limit(1, 5);
    let app = spawn_with_clock(settings, Some(cleanup), Arc::new(OffsetClock::new())).await;
    // Two of the platform's five: an organization and an API key of it.
    let org = app.create_org().await;
    let key = crate::api_keys::api_key(
        &app,
        &org,
        serde_json::json!({"name": "k", "role": "member"}),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    // The rest of the burst (the clock runs: creating an organization may take long enough
    // for one more to accrue, so go on until refused, within a few calls).
    let mut calls = 0;
    let resp = loop {
        let resp = app
            .http
            .get(app.url("/api/v1/orgs"))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        if resp.status() != StatusCode::OK {
            break resp;
        }
        calls += 1;
        assert!(calls <= 6, "the platform principal was never limited");
    };
    assert!(calls >= 3, "limited after {calls} calls: the burst is 5");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(header(&resp, "ratelimit-policy"), Some("admin;q=5;w=5"));
    assert_eq!(header(&resp, "ratelimit"), Some("admin;r=0;t=1"));
    let (_, body) = json_of(resp).await;
    assert_eq!(body["error"], "rate_limited", "{body}");
    // The API key is another principal, with its own allowance.
    let (st, v) = crate::api_keys::call(&app, &key, Method::GET, "/api/v1/orgs", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A wrong token is not that principal: it is a 401, as always.
    let resp = app
        .http
        .get(app.url("/api/v1/orgs"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    app.advance(Duration::from_secs(1));
    let (st, v) = app.admin(Method::GET, "/api/v1/orgs", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// With `AGENTIDP_IP_RATE_LIMIT` on, the public documents are limited per client IP (with the
/// RateLimit fields on every answer); health checks are not.
async fn public_endpoints_are_limited_per_ip_when_on(backend: Backend) {
    let (mut settings, cleanup) = test_settings(&backend).await;
    settings.ip_rate_limit = limit(1, 3);
    let app = spawn_with_clock(settings, Some(cleanup), Arc::new(OffsetClock::new())).await;
    let get = |path: &str| app.http.get(app.url(path)).send();
    for i in 0..3 {
        let resp = get("/.well-known/did.json").await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "call {i}");
        assert_eq!(header(&resp, "ratelimit-policy"), Some("ip;q=3;w=3"));
    }
    let resp = get("/.well-known/did.json").await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(header(&resp, "ratelimit"), Some("ip;r=0;t=1"));
    let (_, body) = json_of(resp).await;
    assert_eq!(body["error"], "rate_limited", "{body}");
    // Another public document from the same address: the same limit.
    let resp = get("/1.0/identifiers/did:web:example.com").await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // Health checks are never limited.
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    app.advance(Duration::from_secs(1));
    assert_eq!(
        get("/.well-known/did.json").await.unwrap().status(),
        StatusCode::OK
    );
}

/// An organization's policy `token_rate_limit` overrides the default for its clients (also a
/// default that is off), at once, and only for that organization.
async fn an_organizations_policy_sets_its_clients_limit(backend: Backend) {
    let (mut settings, cleanup) = test_settings(&backend).await;
    settings.token_rate_limit = RateLimitSetting(None);
    let app = spawn_with_clock(settings, Some(cleanup), Arc::new(OffsetClock::new())).await;
    let org = app.create_org().await;
    let free = app.create_org().await;
    let a = app.create_agent(&org, &[]).await;
    let f = app.create_agent(&free, &[]).await;
    let (st, v) = app
        .admin(
            Method::PUT,
            &format!("/api/v1/orgs/{}/policy", org.slug),
            Some(serde_json::json!({"token_rate_limit": {"per_second": 1, "burst": 2}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for _ in 0..2 {
        assert_eq!(
            app.token_response(&org, &a, &[]).await.status(),
            StatusCode::OK
        );
    }
    let resp = app.token_response(&org, &a, &[]).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&resp, "ratelimit-policy"), Some("token;q=2;w=2"));
    // Another organization keeps the default (off).
    for _ in 0..5 {
        assert_eq!(
            app.token_response(&free, &f, &[]).await.status(),
            StatusCode::OK
        );
    }
}

on_all_backends!(
    an_organizations_policy_sets_its_clients_limit,
    a_client_over_its_limit_is_refused_alone,
    the_admin_api_is_limited_per_principal,
    public_endpoints_are_limited_per_ip_when_on,
);

/// Polls `check` until it holds, or panics after `limit`.
async fn eventually<F: AsyncFnMut() -> bool>(limit: Duration, mut check: F) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Long enough for the background synchronisation (every 5 ms) to have run.
async fn synchronised() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Two instances on one PostgreSQL + Redis share one client's limit: three tokens through each
/// spend the burst of six, and then both refuse (each instance alone would give three more),
/// within the documented error (an instance that has not heard of the other's last events may
/// admit one before its next synchronisation tells it); the clock brings it back on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_one_limit_through_redis() {
    let Some(
        backend @ Backend::Postgres {
            redis_url: Some(_), ..
        },
    ) = Backend::postgres()
    else {
        return;
    };
    let (mut settings, cleanup) = test_settings(&backend).await;
    settings.token_rate_limit = limit(1, 6);
    let clock = Arc::new(OffsetClock::new());
    let one = spawn_with_clock(settings.clone(), Some(cleanup), clock.clone()).await;
    let mut s2 = settings.clone();
    s2.public_url = Some(one.base.clone());
    let two = spawn_with_clock(s2, None, clock.clone()).await;
    let org = one.create_org().await;
    let agent = one.create_agent(&org, &[]).await;
    let org2 = via(&two, &org);

    for _ in 0..3 {
        one.token(&org, &agent, &[]).await;
        two.token(&org2, &agent, &[]).await;
    }
    synchronised().await;
    let mut extra = 0;
    for (app, org) in [(&one, &org), (&two, &org2)] {
        let mut refused = false;
        for _ in 0..4 {
            let resp = app.token_response(org, &agent, &[]).await;
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(header(&resp, "ratelimit-policy"), Some("token;q=6;w=6"));
                refused = true;
                break;
            }
            assert_eq!(resp.status(), StatusCode::OK);
            extra += 1;
            synchronised().await;
        }
        assert!(refused, "{} never refused", app.base);
    }
    assert!(
        extra <= 2,
        "{extra} tokens past the shared limit (6 unshared)"
    );
    one.advance(Duration::from_secs(10));
    one.token(&org, &agent, &[]).await;
    two.token(&org2, &agent, &[]).await;
}

/// A redis-server of this test's own on a free port (never the shared one): started, killed,
/// started again on the same port.
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self {
            port,
            dir: temp_dir(),
            child: None,
        };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (this test needs it installed)");
        self.child = Some(child);
        // Up when it accepts a connection.
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Redis down: tokens are still issued, limits still hold (per instance), `/readyz` stays 200
/// and says Redis is down; Redis back on the same port: `/readyz` says so and limits are
/// shared again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_degrades_and_recovers() {
    let Some(Backend::Postgres { admin_url, .. }) = Backend::postgres() else {
        return;
    };
    let mut redis = OwnRedis::start();
    let backend = Backend::Postgres {
        admin_url,
        redis_url: Some(redis.url()),
    };
    let (mut settings, cleanup) = test_settings(&backend).await;
    settings.token_rate_limit = limit(1, 3);
    let app = spawn_with_clock(settings, Some(cleanup), Arc::new(OffsetClock::new())).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;
    app.token(&org, &agent, &[]).await;
    let key = ClientKey::es256();
    let jwt_agent = register(&app, &org, &key).await;
    let (st, ready) = app.get_json(&app.url("/readyz")).await;
    assert_eq!(
        (st, &ready["redis"]),
        (StatusCode::OK, &"up".into()),
        "{ready}"
    );

    redis.kill();
    // private_key_jwt keeps working: the assertion's marker goes to the database, and it is
    // still single-use.
    let spent = key.sign(&assertion_claims(&jwt_agent.client_id, &org.issuer));
    let resp = token_with_assertion(&app, &org, &spent).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "Redis down: {:?}",
        resp.text().await
    );
    assert_oauth_error(
        token_with_assertion(&app, &org, &spent).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    // Tokens keep coming (from a fresh allowance), the limit holds in process.
    app.advance(Duration::from_secs(5));
    for _ in 0..3 {
        app.token(&org, &agent, &[]).await;
    }
    let resp = app.token_response(&org, &agent, &[]).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&resp, "ratelimit"), Some("token;r=0;t=1"));
    let (st, ready) = app.get_json(&app.url("/readyz")).await;
    assert_eq!(st, StatusCode::OK, "{ready}");
    assert_eq!(ready["redis"], "down", "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["rate_limits"], "per instance", "{ready}");
    // Admin changes still work (the invalidation bus is best effort while down).
    let other = app.create_agent(&org, &[]).await;
    app.token(&org, &other, &[]).await;

    redis.restart();
    eventually(Duration::from_secs(20), async || {
        let (_, ready) = app.get_json(&app.url("/readyz")).await;
        ready["redis"] == "up"
    })
    .await;
    let (_, ready) = app.get_json(&app.url("/readyz")).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    // Redis never saw the assertion spent during the outage; it is refused all the same.
    assert_oauth_error(
        token_with_assertion(&app, &org, &spent).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    let fresh = key.sign(&assertion_claims(&jwt_agent.client_id, &org.issuer));
    assert_eq!(
        token_with_assertion(&app, &org, &fresh).await.status(),
        StatusCode::OK
    );
    // Limits reach Redis again: the key of this client appears there.
    app.advance(Duration::from_secs(5));
    app.token(&org, &agent, &[]).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    eventually(Duration::from_secs(10), async || {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("agentidp:rate:*")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        keys.iter().any(|k| k.ends_with(&agent.client_id))
    })
    .await;
}
