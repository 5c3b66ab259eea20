//! Leadership of the background jobs: two real `agentidp serve` processes on one fresh
//! PostgreSQL database; exactly one leads (`/readyz` and the `agentidp_leader` gauge), and when
//! it is killed (SIGKILL: no goodbye, the lock goes with its session) the other leads within a
//! few seconds and runs the leader-only jobs. PostgreSQL only: skipped without
//! `AGENTIDP_TEST_DATABASE_URL`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::startup::{Server, TempDir, new_master_key, start};
use crate::support::*;

fn as_pairs<'a>(e: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    e.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn readyz(s: &Server) -> Value {
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

async fn leads(s: &Server) -> bool {
    readyz(s).await["leader"]
        .as_bool()
        .expect("/readyz says whether it leads")
}

async fn metrics(s: &Server) -> String {
    s.http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls until `check` holds, at most `limit`; how long it took.
async fn within<F: AsyncFnMut() -> bool>(limit: Duration, what: &str, mut check: F) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_it_moves_when_the_leader_is_killed() {
    let Some(Backend::Postgres { admin_url, .. }) = Backend::postgres() else {
        return;
    };
    let pg = PgDatabase::create(&admin_url).await;
    let key = new_master_key();
    let token = format!("leader-test-{}", uuid::Uuid::new_v4().simple());
    let (d1, d2) = (TempDir::new(), TempDir::new());
    let env = |dir: &TempDir| {
        vec![
            ("AGENTIDP_BIND", "127.0.0.1:0".to_owned()),
            ("AGENTIDP_DATA_DIR", dir.join_str("data")),
            ("AGENTIDP_DATABASE_URL", pg.url.clone()),
            ("AGENTIDP_MASTER_KEY", key.clone()),
            ("AGENTIDP_BOOTSTRAP_TOKEN", token.clone()),
            ("AGENTIDP_PUBLIC_URL", "http://localhost:8080".to_owned()),
        ]
    };
    let (e1, e2) = (env(&d1), env(&d2));
    let one = start(d1.path(), &["serve"], &as_pairs(&e1)).await;
    let two = start(d2.path(), &["serve"], &as_pairs(&e2)).await;

    // Exactly one leads, and goes on being the only one across several lease periods.
    within(Duration::from_secs(15), "a leader", async || {
        leads(&one).await || leads(&two).await
    })
    .await;
    for _ in 0..10 {
        let (l1, l2) = (leads(&one).await, leads(&two).await);
        assert!(l1 ^ l2, "exactly one leader: one {l1}, two {l2}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (leader, follower) = if leads(&one).await {
        (one, two)
    } else {
        (two, one)
    };
    assert!(
        metrics(&leader).await.contains("agentidp_leader 1"),
        "{}",
        metrics(&leader).await
    );
    let before = metrics(&follower).await;
    assert!(before.contains("agentidp_leader 0"), "{before}");
    assert!(
        !before.contains("agentidp_job_runs_total{job=\"purge_expired\""),
        "a follower ran a leader-only job:\n{before}"
    );

    // SIGKILL (the guard's drop): the follower takes over within a few seconds, and runs the
    // leader-only jobs at once.
    drop(leader);
    let took = within(Duration::from_secs(20), "the follower leads", async || {
        leads(&follower).await
    })
    .await;
    assert!(took < Duration::from_secs(10), "took {took:?}");
    within(
        Duration::from_secs(10),
        "the purge runs on the new leader",
        async || {
            metrics(&follower)
                .await
                .contains("agentidp_job_runs_total{job=\"purge_expired\",outcome=\"ok\"}")
        },
    )
    .await;
    assert!(metrics(&follower).await.contains("agentidp_leader 1"));
    eprintln!("leadership moved {took:?} after the leader was killed");
    drop(follower);
    drop(pg);
}
