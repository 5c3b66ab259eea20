//! Background jobs. The work of each job is one `tick` function of what it needs and `now`,
//! called by the scheduler loop here, by the CLI (`agentidp keys rotate`) and by tests, which
//! pass time by choosing `now` instead of sleeping. The loops stop with the server's stop signal.
//!
//! Jobs that act on the shared database are [`LEADER_JOBS`]: each runs on the leader only
//! ([`super::leader`]), at once when an instance becomes leader and then every period; a new one
//! is one more row there, a `tick(&Idp, now)` function. The others keep state of this instance
//! and run on every instance.
//!
//! | job | tick | period | where |
//! | --- | --- | --- | --- |
//! | leadership (the database's leader lock) | `leader::spawn_lease` | 2 s | every instance |
//! | purge: expired revocations and replay markers in the database | [`purge_tick`] | 5 min | leader |
//! | housekeeping: idle per-IP limiter state, idle rate-limit keys, the failure brake, the in-memory revoked tokens (expired dropped; reloaded after an overflow) | — | 5 min | every instance |
//! | rate limits shared through Redis: this instance's admitted events added to the shared TATs, the others' learned (only with Redis) | `RateLimiter::sync` | 5 ms | every instance |
//! | metrics upkeep (histogram buckets) | `PrometheusHandle::run_upkeep` | 5 s | every instance |
//! | key rotation (on demand: `agentidp keys rotate`) | [`rotate_keys_tick`] | — | the CLI |
//! | cache invalidation from other instances (Redis pub/sub, not a tick; every cache emptied on each (re)subscribe and each second while down) | `RedisEphemeral::listen` | — | every instance |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::leader::{self, Leadership};
use super::startup::open_database;
use crate::config::Settings;
use crate::ephemeral::Invalidation;
use crate::ephemeral::redis_backend::RedisEphemeral;
use crate::http::AppState;
use crate::idp::Idp;
use crate::keys::KeyService;
use crate::model::{Clock, SystemClock};
use crate::storage::{StorageResult, Stores};

/// How often housekeeping runs.
pub const PURGE_PERIOD: Duration = Duration::from_secs(300);
const METRICS_UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// Deletes revocations and single-use markers that expired before `now`; the number removed.
pub async fn purge_tick(stores: &Stores, now: i64) -> StorageResult<u64> {
    stores.replay.purge_expired(now).await
}

/// A leader-only job's tick: its work at `now`, answering how many things it handled.
pub type Tick = for<'a> fn(&'a Idp, i64) -> BoxFuture<'a, anyhow::Result<u64>>;

/// A job that acts on the shared database, run by the leader only.
pub struct LeaderJob {
    /// Its name in logs and in `agentidp_job_runs_total{job}`.
    pub name: &'static str,
    pub period: Duration,
    pub tick: Tick,
}

/// Every leader-only job (expiry sweeps and later schedules plug in here).
pub const LEADER_JOBS: &[LeaderJob] = &[LeaderJob {
    name: "purge_expired",
    period: PURGE_PERIOD,
    tick: purge_job,
}];

fn purge_job(idp: &Idp, now: i64) -> BoxFuture<'_, anyhow::Result<u64>> {
    Box::pin(async move { Ok(purge_tick(&idp.stores, now).await?) })
}

/// Runs `job` every period while `leadership` says this instance leads: at once on becoming
/// leader, never while following; until `stop` changes.
fn while_leading(
    job: &'static LeaderJob,
    idp: Arc<Idp>,
    leadership: &Leadership,
    stop: &watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut leads = leadership.subscribe();
    let mut stop = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = leads.wait_for(|l| *l) => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = stop.changed() => return,
            }
            let mut interval = tokio::time::interval(job.period);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    r = leads.changed() => {
                        if r.is_err() || !*leads.borrow_and_update() {
                            break;
                        }
                        continue;
                    }
                    _ = stop.changed() => return,
                }
                let outcome = match (job.tick)(&idp, idp.clock.now()).await {
                    Ok(n) => {
                        tracing::debug!(job = job.name, handled = n, "job ran");
                        "ok"
                    }
                    Err(e) => {
                        tracing::warn!(job = job.name, error = %e, "job failed");
                        "error"
                    }
                };
                metrics::counter!("agentidp_job_runs_total", "job" => job.name, "outcome" => outcome)
                    .increment(1);
            }
        }
    })
}

/// New signing keys for every organization, or only `only` (a slug); per organization, its slug
/// and the new keys as `ALG KID`.
pub async fn rotate_keys_tick(
    keys: &KeyService,
    stores: &Stores,
    only: Option<&str>,
    now: i64,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let slugs: Vec<String> = match only {
        Some(s) => vec![s.to_owned()],
        None => stores
            .orgs
            .all_ids()
            .await?
            .into_iter()
            .map(|(_, s)| s)
            .collect(),
    };
    let mut out = Vec::new();
    for slug in slugs {
        let org = stores
            .orgs
            .by_slug(&slug)
            .await?
            .ok_or_else(|| anyhow!("no organization {slug:?}"))?;
        let new = keys
            .rotate(&org, now)
            .await
            .map_err(|e| anyhow!("{slug}: {e}"))?;
        out.push((
            slug,
            new.into_iter()
                .map(|k| format!("{} {}", k.alg, k.kid))
                .collect(),
        ));
    }
    Ok(out)
}

/// `agentidp keys rotate [--org SLUG]`: opens the database and runs [`rotate_keys_tick`] once.
pub async fn rotate_keys_cli(
    settings: &Settings,
    org: Option<&str>,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let (stores, master) = open_database(settings).await?;
    let keys = KeyService::new(
        stores.keys.clone(),
        Arc::new(master),
        settings.key_activation_delay(),
        settings.access_token_ttl_secs,
    );
    rotate_keys_tick(&keys, &stores, org, SystemClock.now()).await
}

/// Runs `tick` every `period` (the first run at once) until `stop` changes.
fn every<F, Fut>(period: Duration, stop: &watch::Receiver<bool>, mut tick: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = interval.tick() => tick().await,
                _ = stop.changed() => break,
            }
        }
    })
}

/// Starts every background job of a serving instance.
pub fn spawn_all(
    state: &AppState,
    redis: Option<RedisEphemeral>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();

    tasks.push(leader::spawn_lease(
        state.idp.stores.meta.leader_lock(),
        state.leader.clone(),
        stop,
    ));
    for job in LEADER_JOBS {
        tasks.push(while_leading(job, state.idp.clone(), &state.leader, stop));
    }

    let idp = state.idp.clone();
    let limiter = state.foreign_resolution_limit.clone();
    let auth_failures = state.auth_failures.clone();
    let rate_limiter = state.rate_limiter.clone();
    tasks.push(every(PURGE_PERIOD, stop, move || {
        let (idp, limiter) = (idp.clone(), limiter.clone());
        auth_failures.prune();
        rate_limiter.prune();
        async move {
            limiter.retain_recent();
            if let Err(e) = idp.oauth.revocations.purge().await {
                tracing::warn!(error = %e, "reloading the revoked tokens failed");
            }
        }
    }));

    // Rate limits shared through Redis: what this instance admitted goes to the shared counts,
    // and it learns the others', every few milliseconds (see `limiter::RateLimiter`).
    if state.rate_limiter.shared_up().is_some() {
        let rate_limiter = state.rate_limiter.clone();
        tasks.push(every(crate::limiter::SYNC_PERIOD, stop, move || {
            let rate_limiter = rate_limiter.clone();
            async move { rate_limiter.sync().await }
        }));
    }

    if let Some(h) = state.metrics.clone() {
        tasks.push(every(METRICS_UPKEEP_PERIOD, stop, move || {
            let h = h.clone();
            async move { h.run_upkeep() }
        }));
    }

    if let Some(redis) = redis {
        let idp = state.idp.clone();
        let resync_idp = state.idp.clone();
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            redis
                .listen(
                    move |inv| {
                        let idp = idp.clone();
                        async move {
                            if let Invalidation::Keys { org_id } = &inv {
                                idp.keys.invalidate(org_id).await;
                            }
                            idp.directory.apply(&inv).await;
                            idp.partners.apply(&inv).await;
                            idp.policies.apply(&inv).await;
                            idp.oauth.revocations.apply(&inv);
                        }
                    },
                    // (Re)subscribed, or the subscription is down: invalidations may have been
                    // missed, so nothing the bus would invalidate stays cached, and the revoked
                    // tokens are reloaded (misses read the database until then).
                    move |subscribed| {
                        resync_idp.directory.invalidate_all();
                        resync_idp.partners.invalidate_all();
                        resync_idp.policies.invalidate_all();
                        resync_idp.keys.invalidate_all();
                        resync_idp.oauth.revocations.bus_changed(subscribed);
                    },
                    async move {
                        let _ = stop.changed().await;
                    },
                )
                .await;
        }));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::temp_db;

    const T: i64 = 1_767_225_600;

    /// Housekeeping passes time by its `now` argument: nothing expires before its instant, and
    /// everything that expired is gone after one tick.
    #[tokio::test]
    async fn purge_tick_removes_exactly_what_expired() {
        let t = temp_db().await;
        let stores = Stores::new(t.db.clone());
        stores.replay.revoke("org", "jti-1", T + 60).await.unwrap();
        stores
            .replay
            .revoke("org", "jti-2", T + 3600)
            .await
            .unwrap();
        assert!(
            stores
                .replay
                .set_if_absent("marker", T + 60, T)
                .await
                .unwrap()
        );

        assert_eq!(purge_tick(&stores, T + 59).await.unwrap(), 0);
        assert!(stores.replay.is_revoked("org", "jti-1").await.unwrap());
        assert!(
            !stores
                .replay
                .set_if_absent("marker", T + 60, T + 59)
                .await
                .unwrap()
        );

        assert_eq!(purge_tick(&stores, T + 61).await.unwrap(), 2);
        assert!(!stores.replay.is_revoked("org", "jti-1").await.unwrap());
        assert!(stores.replay.is_revoked("org", "jti-2").await.unwrap());
        assert!(
            stores
                .replay
                .set_if_absent("marker", T + 120, T + 61)
                .await
                .unwrap()
        );
        assert_eq!(purge_tick(&stores, T + 61).await.unwrap(), 0, "idempotent");
    }

    /// Key rotation as the CLI runs it, at a chosen instant: one organization or all, and an
    /// unknown slug is an error naming it.
    #[tokio::test]
    async fn rotate_keys_tick_rotates_the_named_organizations() {
        use crate::keys::MasterKey;
        use crate::storage::{Event, OrgRecord};
        let t = temp_db().await;
        let stores = Stores::new(t.db.clone());
        let keys = KeyService::new(stores.keys.clone(), Arc::new(MasterKey::generate()), 0, 900);
        for slug in ["a", "b"] {
            let id = crate::model::OrgId::generate(T * 1000);
            let (dek_wrapped, dek) = keys.master().new_data_key(&id);
            let first = KeyService::generate_records(&id, Arc::new(dek), T, T)
                .await
                .unwrap();
            let org = OrgRecord {
                id: id.clone(),
                slug: slug.into(),
                name: slug.into(),
                issuer: format!("https://idp.example/orgs/{slug}"),
                did: format!("did:web:idp.example:orgs:{slug}"),
                dek_wrapped,
                dek_mk_version: keys.master().version(),
                created_at: T,
                updated_at: T,
            };
            let ev = Event {
                org_id: Some(id.clone()),
                kind: "org.created",
                subject: id.to_string(),
                data: serde_json::json!({}),
                at: T,
            };
            stores.orgs.create(&org, &first, &ev).await.unwrap();
        }
        let one = rotate_keys_tick(&keys, &stores, Some("a"), T + 10)
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].0.as_str(), one[0].1.len()), ("a", 3), "{one:?}");
        let all = rotate_keys_tick(&keys, &stores, None, T + 20)
            .await
            .unwrap();
        let mut slugs: Vec<&str> = all.iter().map(|(s, _)| s.as_str()).collect();
        slugs.sort_unstable();
        assert_eq!(slugs, ["a", "b"]);
        let err = rotate_keys_tick(&keys, &stores, Some("nope"), T + 30)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }
}
