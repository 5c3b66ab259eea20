//! Scale-out mode: two instances over one PostgreSQL database and one Redis act as one.
//! A change made through one instance takes effect at the other at once, through Redis
//! invalidation, not after the 60 s cache lifetime that Redis mode allows.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::support::*;

/// The org as seen through the second instance (same issuer path, that instance's address).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_state_and_invalidate_each_other() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let Backend::Postgres {
        redis_url: Some(_), ..
    } = &backend
    else {
        // Without Redis, instances only converge after the short local cache lifetime.
        return;
    };
    let (settings, cleanup) = test_settings(&backend).await;
    let one = spawn_with_settings(settings.clone(), Some(cleanup)).await;
    let mut s2 = settings.clone();
    s2.public_url = Some(one.base.clone());
    let two = spawn_with_settings(s2, None).await;

    let org = one.create_org().await;
    let agent = one.create_agent(&org, &["read"]).await;
    let org2 = via(&two, &org);

    // The second instance serves the organization created through the first, and its token
    // verifies at the first: same keys, same issuer.
    let t = two.token(&org2, &agent, &[]).await;
    let token = t["access_token"].as_str().unwrap().to_owned();
    let (st, info, _) = one.agent_info(&org, &token).await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(jwt_claims(&token)["iss"], org.issuer);

    // Suspension through the first instance stops the second at once (its agent cache is warm
    // and would otherwise be trusted for a minute).
    let (st, _) = one
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/agents/{}/suspend", org.slug, agent.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let took = eventually(Duration::from_secs(5), async || {
        two.token_response(&org2, &agent, &[]).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let intro = two
        .introspect(&org2, &one.create_agent(&org, &[]).await, &token)
        .await;
    assert_eq!(intro["active"], false);

    // Key rotation through the first instance shows in the second's JWKS at once (its key cache
    // would otherwise be trusted for 30 s).
    let (_, before) = two.get_json(&format!("{}/jwks.json", org2.issuer)).await;
    assert_eq!(before["keys"].as_array().unwrap().len(), 3);
    let (st, _) = one
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/rotate", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let took = eventually(Duration::from_secs(5), async || {
        let (_, jwks) = two.get_json(&format!("{}/jwks.json", org2.issuer)).await;
        jwks["keys"].as_array().unwrap().len() == 6
    })
    .await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// After the invalidation subscription is lost (Redis restarted, a network blip), what was
/// published meanwhile never arrives; the instance must not trust its caches across the gap.
/// Here every pub/sub connection is killed, an agent is suspended through the first instance
/// at once (its message reaches nobody), and the second instance must refuse the agent within
/// seconds, not serve it from its warm cache for the 60 s lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_does_not_keep_stale_agents() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let Backend::Postgres {
        redis_url: Some(redis_url),
        ..
    } = &backend
    else {
        return;
    };
    let (settings, cleanup) = test_settings(&backend).await;
    let one = spawn_with_settings(settings.clone(), Some(cleanup)).await;
    let mut s2 = settings.clone();
    s2.public_url = Some(one.base.clone());
    let two = spawn_with_settings(s2, None).await;
    let org = one.create_org().await;
    let agent = one.create_agent(&org, &["read"]).await;
    let org2 = via(&two, &org);
    // The second instance's caches are warm.
    two.token(&org2, &agent, &[]).await;

    // Every subscriber on this Redis loses its subscription (other tests' instances too: they
    // resubscribe and resynchronise like this one).
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(killed >= 1, "no subscriber was connected");
    let (st, _) = one
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/agents/{}/suspend", org.slug, agent.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    eventually(Duration::from_secs(10), async || {
        two.token_response(&org2, &agent, &[]).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
}
