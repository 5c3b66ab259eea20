//! Short-lived token state across restarts and instances: single-use markers (private_key_jwt
//! `jti`s, written by the group-commit writer without Redis) and revocations (held in memory by
//! every instance, the database being the record).

use std::time::{Duration, Instant};

use agentidp::config::Settings;
use reqwest::StatusCode;
use serde_json::Value;

use crate::on_all_backends;
use crate::private_key_jwt::{ClientKey, assertion_claims, register, token_with_assertion};
use crate::support::*;

/// The org as seen through another instance (same issuer, that instance's address).
fn via(app: &TestApp, org: &TestOrg) -> TestOrg {
    TestOrg {
        issuer: format!("http://{}/orgs/{}", app.addr, org.slug),
        ..org.clone()
    }
}

/// Polls `check` until it holds; returns how long that took, or panics after `limit`.
async fn eventually<F: AsyncFnMut() -> bool>(limit: Duration, mut check: F) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// A first instance over `backend` whose database outlives it: its settings and the cleanup
/// to hand to whichever instance comes last.
async fn first_instance(backend: &Backend) -> (TestApp, Settings, Cleanup) {
    let (settings, cleanup) = test_settings(backend).await;
    let app = spawn_with_settings(settings.clone(), None).await;
    (app, settings, cleanup)
}

/// Another instance on the same database (and data directory) under the same public URL.
async fn same_database(first: &TestApp, settings: &Settings, cleanup: Option<Cleanup>) -> TestApp {
    let mut s = settings.clone();
    s.public_url = Some(first.base.clone());
    spawn_with_settings(s, cleanup).await
}

async fn assert_assertion_refused(app: &TestApp, org: &TestOrg, assertion: &str, why: &str) {
    let (st, v) = json_of(token_with_assertion(app, org, assertion).await).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{why}: {v}");
    assert_eq!(v["error"], "invalid_client", "{why}: {v}");
}

async fn assert_assertion_accepted(app: &TestApp, org: &TestOrg, assertion: &str) -> Value {
    let (st, v) = json_of(token_with_assertion(app, org, assertion).await).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn access_token(t: &Value) -> String {
    t["access_token"].as_str().unwrap().to_owned()
}

async fn revoke(app: &TestApp, org: &TestOrg, owner: &TestAgent, token: &str) {
    let resp = app
        .post_form(
            org,
            "/oauth2/revoke",
            Some((&owner.client_id, owner.secret.as_deref().unwrap())),
            &[("token", token)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A private_key_jwt assertion spent before a restart is still spent after it: the marker was
/// committed to the database (or Redis) before the token was issued.
async fn replayed_assertion_fails_after_restart(backend: Backend) {
    let (one, settings, cleanup) = first_instance(&backend).await;
    let org = one.create_org().await;
    let key = ClientKey::es256();
    let agent = register(&one, &org, &key).await;
    let assertion = key.sign(&assertion_claims(&agent.client_id, &org.issuer));
    assert_assertion_accepted(&one, &org, &assertion).await;
    let base = one.base.clone();
    drop(one);

    let mut s = settings.clone();
    s.public_url = Some(base);
    let two = spawn_with_settings(s, Some(cleanup)).await;
    let org2 = via(&two, &org);
    assert_assertion_refused(&two, &org2, &assertion, "replay after a restart").await;
    // The restarted server takes fresh assertions.
    let fresh = key.sign(&assertion_claims(&agent.client_id, &org.issuer));
    assert_assertion_accepted(&two, &org2, &fresh).await;
    assert_assertion_refused(&two, &org2, &fresh, "replay").await;
}

/// Many concurrent requests with one assertion (group commit puts them in the same batches):
/// exactly one gets a token; and many distinct assertions all do.
async fn concurrent_replays_get_one_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key = ClientKey::ed25519();
    let agent = register(&app, &org, &key).await;
    let assertion = key.sign(&assertion_claims(&agent.client_id, &org.issuer));
    let fresh: Vec<String> = (0..16)
        .map(|_| key.sign(&assertion_claims(&agent.client_id, &org.issuer)))
        .collect();
    let same = futures_util::future::join_all(
        (0..16).map(|_| token_with_assertion(&app, &org, &assertion)),
    );
    let distinct =
        futures_util::future::join_all(fresh.iter().map(|a| token_with_assertion(&app, &org, a)));
    let (same, distinct) = tokio::join!(same, distinct);
    let ok = same.iter().filter(|r| r.status() == StatusCode::OK).count();
    assert_eq!(ok, 1, "one assertion, one token");
    assert!(
        same.iter()
            .all(|r| matches!(r.status(), StatusCode::OK | StatusCode::UNAUTHORIZED))
    );
    assert!(distinct.iter().all(|r| r.status() == StatusCode::OK));
}

/// A revoked token stays revoked after a restart: the new process loads the revocations in
/// force from the database; a token that was not revoked still works.
async fn revocation_survives_a_restart(backend: Backend) {
    let (one, settings, cleanup) = first_instance(&backend).await;
    let org = one.create_org().await;
    let rs = one.create_agent(&org, &[]).await;
    let agent = one.create_agent(&org, &["read"]).await;
    let revoked = access_token(&one.token(&org, &agent, &[]).await);
    let kept = access_token(&one.token(&org, &agent, &[]).await);
    revoke(&one, &org, &agent, &revoked).await;
    assert_eq!(one.introspect(&org, &rs, &revoked).await["active"], false);
    let base = one.base.clone();
    drop(one);

    let mut s = settings.clone();
    s.public_url = Some(base);
    let two = spawn_with_settings(s, Some(cleanup)).await;
    let org2 = via(&two, &org);
    let i = two.introspect(&org2, &rs, &revoked).await;
    assert_eq!(i["active"], false, "{i}");
    let (st, v, _) = two.agent_info(&org2, &revoked).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(two.introspect(&org2, &rs, &kept).await["active"], true);
    let (st, v, _) = two.agent_info(&org2, &kept).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

on_all_backends!(
    replayed_assertion_fails_after_restart,
    concurrent_replays_get_one_token,
    revocation_survives_a_restart,
);

/// Two instances on one PostgreSQL database (with Redis when configured): an assertion spent at
/// one is a replay at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_across_two_instances_fails() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let (one, settings, cleanup) = first_instance(&backend).await;
    let two = same_database(&one, &settings, Some(cleanup)).await;
    let org = one.create_org().await;
    let org2 = via(&two, &org);
    let key = ClientKey::es256();
    let agent = register(&one, &org, &key).await;

    let assertion = key.sign(&assertion_claims(&agent.client_id, &org.issuer));
    assert_assertion_accepted(&one, &org, &assertion).await;
    assert_assertion_refused(&two, &org2, &assertion, "replay at the other instance").await;
    let other = key.sign(&assertion_claims(&agent.client_id, &org.issuer));
    assert_assertion_accepted(&two, &org2, &other).await;
    assert_assertion_refused(&one, &org, &other, "replay back at the first").await;
}

/// Two instances on one PostgreSQL database: a token revoked through the first stops being
/// active at the second at once, at introspection and at `/agent-info`, although the second has
/// just answered for it (warm caches). With Redis the second learns it over the bus (its set is
/// in memory); without, it reads the database for every lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_at_one_instance_is_dead_at_the_other() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let (one, settings, cleanup) = first_instance(&backend).await;
    let two = same_database(&one, &settings, Some(cleanup)).await;
    let org = one.create_org().await;
    let org2 = via(&two, &org);
    let rs = one.create_agent(&org, &[]).await;
    let agent = one.create_agent(&org, &["read"]).await;
    let token = access_token(&two.token(&org2, &agent, &[]).await);
    let kept = access_token(&two.token(&org2, &agent, &[]).await);
    // The second instance's caches are warm and it holds the token active.
    assert_eq!(two.introspect(&org2, &rs, &token).await["active"], true);
    let (st, v, _) = two.agent_info(&org2, &token).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    revoke(&one, &org, &agent, &token).await;
    let took = eventually(Duration::from_secs(5), async || {
        two.introspect(&org2, &rs, &token).await["active"] == false
    })
    .await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let (st, v, _) = two.agent_info(&org2, &token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // Only that token.
    assert_eq!(two.introspect(&org2, &rs, &kept).await["active"], true);

    // Revoked through the second, dead at the first (the other direction of the bus).
    revoke(&two, &org2, &agent, &kept).await;
    let took = eventually(Duration::from_secs(5), async || {
        one.agent_info(&org, &kept).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(one.introspect(&org, &rs, &kept).await["active"], false);
}
