//! Short-lived shared state: single-use markers (replay protection) and cache invalidation.
//!
//! Without Redis, markers live in the database (a restart does not forget them), written by a
//! group-commit task ([`batch`]: one transaction for every marker queued meanwhile), and
//! invalidation is local to the process (other instances rely on short cache lifetimes). With
//! Redis, markers are `SET NX PXAT` and invalidations are published to every instance.

pub mod batch;
pub mod redis_backend;

use std::sync::Arc;

use async_trait::async_trait;

use crate::storage::{Marker, ReplayStore};

#[derive(Debug, thiserror::Error)]
#[error("ephemeral store unavailable: {0}")]
pub struct EphemeralError(pub String);

/// Atomic set-if-absent of single-use markers.
#[async_trait]
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `key` until `expires_at` (Unix seconds). `Ok(true)` when newly recorded,
    /// `Ok(false)` when a live marker exists: the caller is seeing a replay.
    async fn set_if_absent(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, EphemeralError>;
}

/// Markers in the database (the embedded default), with group commit: concurrent requests'
/// markers are written in one transaction ([`ReplayStore::set_many_if_absent`]), each request
/// answered once that transaction has committed. A failed transaction fails every request of its
/// batch (closed, as a failed single write did).
pub struct DbReplayCache {
    /// Each marker's own answer: a bad marker retried alone fails alone.
    batcher: batch::Batcher<Marker, Result<bool, String>>,
}

/// Most markers written in one transaction.
pub const MARKER_BATCH: usize = 512;
/// Most markers waiting for the writer; further callers wait for room.
pub const MARKER_QUEUE: usize = 4 * MARKER_BATCH;

impl DbReplayCache {
    /// Starts the writer task (on the current Tokio runtime); it stops when this is dropped.
    pub fn new(store: Arc<dyn ReplayStore>) -> Self {
        let batcher = batch::Batcher::spawn(MARKER_QUEUE, MARKER_BATCH, move |markers| {
            let store = store.clone();
            async move {
                match store.set_many_if_absent(&markers).await {
                    Ok(r) => Ok(r.into_iter().map(Ok).collect()),
                    // One bad marker must not fail every other caller of its batch (other
                    // organizations' requests among them): the markers are tried one by one, each
                    // caller is answered from its own statement, and only the bad one fails.
                    Err(e) if markers.len() > 1 => {
                        tracing::warn!(error = %e, markers = markers.len(), "a marker batch failed; retrying its markers one by one");
                        let mut out = Vec::with_capacity(markers.len());
                        for m in &markers {
                            out.push(
                                store
                                    .set_if_absent(&m.key, m.expires_at, m.now)
                                    .await
                                    .map_err(|e| e.to_string()),
                            );
                        }
                        Ok(out)
                    }
                    Err(e) => Err(EphemeralError(e.to_string())),
                }
            }
        });
        Self { batcher }
    }
}

#[async_trait]
impl ReplayCache for DbReplayCache {
    async fn set_if_absent(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, EphemeralError> {
        self.batcher
            .submit(Marker {
                key: key.to_owned(),
                expires_at,
                now,
            })
            .await?
            .map_err(EphemeralError)
    }
}

/// Redis markers with the database's as the fallback (the scale-out mode's replay cache).
///
/// While Redis fails (an error, or no answer within the Redis backend's bound) markers go to
/// the database, which every instance shares too, so an assertion is still single-use across
/// instances and the token endpoint keeps serving `private_key_jwt` and jwt-bearer. Markers
/// written to the database live until their own `exp`; until the last of them has expired every
/// marker set in Redis is also set in the database, so an assertion first spent in the database
/// cannot be spent again in Redis. That window ("database markers may be live until") is shared:
/// raised in the database's `meta` by whoever writes a database marker, and read by every
/// instance at most once a second, so it holds across instances (one that never saw Redis fail,
/// or was restarted) and across restarts (review finding).
///
/// What this cannot cover, and is documented as the outage's degradation: an assertion spent in
/// Redis just before the outage is unknown to the database, so it could be spent once more
/// during the outage, within its own lifetime (at most the assertion lifetime we accept).
pub struct FailoverReplay {
    primary: DynReplay,
    fallback: DynReplay,
    shared: Arc<dyn crate::storage::MetaStore>,
    /// Unix seconds until which database markers may be live (0: none), as this instance knows.
    live_until: Arc<std::sync::atomic::AtomicI64>,
    /// The window this instance last raised in the database.
    raised: std::sync::atomic::AtomicI64,
    /// Unix seconds of the last read of the shared window.
    read_at: std::sync::atomic::AtomicI64,
}

/// The `meta` row of the shared window.
pub const META_FALLBACK_UNTIL: &str = "replay_fallback_until";
/// A raise covers this much more than the marker that caused it, so that an outage costs one
/// `meta` write per this many seconds of assertion lifetimes, not one per request.
const RAISE_AHEAD_SECS: i64 = 300;

impl FailoverReplay {
    pub fn new(
        primary: DynReplay,
        fallback: DynReplay,
        shared: Arc<dyn crate::storage::MetaStore>,
    ) -> Self {
        Self {
            primary,
            fallback,
            shared,
            live_until: Default::default(),
            raised: Default::default(),
            read_at: Default::default(),
        }
    }

    /// Reads the shared window (in the background, at most once a second).
    fn refresh(&self, now: i64) {
        use std::sync::atomic::Ordering;
        let last = self.read_at.load(Ordering::Relaxed);
        if now <= last
            || self
                .read_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (shared, live_until) = (self.shared.clone(), self.live_until.clone());
        tokio::spawn(async move {
            if let Err(e) = read_window(shared.as_ref(), &live_until).await {
                tracing::warn!(error = %e, "reading the replay fallback window failed");
            }
        });
    }

    /// Reads the shared window now (the first marker after start: a restarted instance must
    /// know the window before it answers from Redis alone).
    async fn load(&self) -> Result<(), EphemeralError> {
        read_window(self.shared.as_ref(), &self.live_until)
            .await
            .map_err(|e| EphemeralError(e.to_string()))
    }
}

/// Raises `live_until` to the shared window recorded in `meta` (nothing recorded: unchanged).
async fn read_window(
    shared: &dyn crate::storage::MetaStore,
    live_until: &std::sync::atomic::AtomicI64,
) -> crate::storage::StorageResult<()> {
    if let Some(until) = shared
        .get(META_FALLBACK_UNTIL)
        .await?
        .and_then(|v| v.parse::<i64>().ok())
    {
        live_until.fetch_max(until, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

#[async_trait]
impl ReplayCache for FailoverReplay {
    async fn set_if_absent(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, EphemeralError> {
        use std::sync::atomic::Ordering;
        if self.read_at.load(Ordering::Relaxed) == 0 {
            self.load().await?;
            self.read_at.fetch_max(now, Ordering::Relaxed);
        } else {
            self.refresh(now);
        }
        match self.primary.set_if_absent(key, expires_at, now).await {
            Ok(false) => Ok(false),
            Ok(true) => {
                if now < self.live_until.load(Ordering::Relaxed) {
                    // Database markers may be live: this one may be among them.
                    self.fallback.set_if_absent(key, expires_at, now).await
                } else {
                    Ok(true)
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis refused a replay marker; using the database's markers");
                // The window first, then the marker: no instance may stop checking the database
                // while a marker written there is live.
                if expires_at > self.raised.load(Ordering::Relaxed) {
                    let until = expires_at.saturating_add(RAISE_AHEAD_SECS);
                    self.shared
                        .raise(META_FALLBACK_UNTIL, until)
                        .await
                        .map_err(|e| EphemeralError(e.to_string()))?;
                    self.raised.fetch_max(until, Ordering::Relaxed);
                    self.live_until.fetch_max(until, Ordering::Relaxed);
                }
                self.fallback.set_if_absent(key, expires_at, now).await
            }
        }
    }
}

/// A cache's invalidation count, against the race of a miss with an invalidation.
///
/// A miss reads the store and then inserts what it read; an invalidation that runs between the
/// read and the insert removes nothing (the entry is not there yet), and the value read before
/// the change would then be served until its lifetime ends (a suspended agent still getting
/// tokens for a minute). So an invalidation bumps the count before it removes, a miss notes the
/// count before it reads, and a miss that sees the count moved while it loaded removes what it
/// inserted: the next lookup reads again.
#[derive(Debug, Default)]
pub struct Generation(std::sync::atomic::AtomicU64);

impl Generation {
    /// The count now: note it before reading the store.
    pub fn current(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// An invalidation is about to remove entries.
    pub fn bump(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    /// Whether an invalidation ran since `noted` (the loaded value may predate it).
    pub fn moved_since(&self, noted: u64) -> bool {
        self.current() != noted
    }
}

/// What a cache must forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Org {
        slug: String,
    },
    Agent {
        org_id: String,
        agent_id: String,
    },
    Keys {
        org_id: String,
    },
    Partner {
        org_id: String,
        issuer: String,
    },
    /// The organization's policy changed.
    Policy {
        org_id: String,
    },
    /// Not a cache entry to forget but a fact to learn: the access token `jti` of `org_id` is
    /// revoked until its `exp`.
    Revoked {
        org_id: String,
        jti: String,
        exp: i64,
    },
}

impl Invalidation {
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Org { slug } => format!("org {slug}"),
            Invalidation::Agent { org_id, agent_id } => format!("agent {org_id} {agent_id}"),
            Invalidation::Keys { org_id } => format!("keys {org_id}"),
            Invalidation::Policy { org_id } => format!("policy {org_id}"),
            Invalidation::Partner { org_id, issuer } => format!("partner {org_id} {issuer}"),
            Invalidation::Revoked { org_id, jti, exp } => format!("revoked {org_id} {jti} {exp}"),
        }
    }
    pub fn decode(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split(' ').collect();
        Some(match parts.as_slice() {
            ["org", slug] => Invalidation::Org {
                slug: (*slug).to_owned(),
            },
            ["agent", o, a] => Invalidation::Agent {
                org_id: (*o).to_owned(),
                agent_id: (*a).to_owned(),
            },
            ["keys", o] => Invalidation::Keys {
                org_id: (*o).to_owned(),
            },
            ["policy", o] => Invalidation::Policy {
                org_id: (*o).to_owned(),
            },
            ["partner", o, i] => Invalidation::Partner {
                org_id: (*o).to_owned(),
                issuer: (*i).to_owned(),
            },
            ["revoked", o, j, exp] => Invalidation::Revoked {
                org_id: (*o).to_owned(),
                jti: (*j).to_owned(),
                exp: exp.parse().ok()?,
            },
            _ => return None,
        })
    }
}

/// Broadcasts invalidations to the other instances (the local caches are cleared by the caller).
#[async_trait]
pub trait InvalidationBus: Send + Sync + 'static {
    async fn publish(&self, inv: &Invalidation);
    /// Like [`InvalidationBus::publish`], but says whether the message went out, for what must
    /// not be missed silently (a revocation).
    async fn try_publish(&self, inv: &Invalidation) -> Result<(), EphemeralError> {
        self.publish(inv).await;
        Ok(())
    }
    /// True when other instances hear what is published (caches may then live longer).
    fn is_shared(&self) -> bool;
}

/// No other instance to tell.
pub struct LocalBus;

#[async_trait]
impl InvalidationBus for LocalBus {
    async fn publish(&self, _inv: &Invalidation) {}
    fn is_shared(&self) -> bool {
        false
    }
}

pub type DynReplay = Arc<dyn ReplayCache>;
pub type DynBus = Arc<dyn InvalidationBus>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidation_round_trip() {
        for inv in [
            Invalidation::Org {
                slug: "acme".into(),
            },
            Invalidation::Agent {
                org_id: "o".into(),
                agent_id: "a".into(),
            },
            Invalidation::Keys { org_id: "o".into() },
            Invalidation::Policy {
                org_id: "0196a000-0000-7000-8000-000000000001".into(),
            },
            Invalidation::Partner {
                org_id: "o".into(),
                issuer: "https://p.example/orgs/x".into(),
            },
            Invalidation::Revoked {
                org_id: "o".into(),
                jti: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                exp: 1_767_225_600,
            },
        ] {
            assert_eq!(Invalidation::decode(&inv.encode()), Some(inv));
        }
        assert_eq!(Invalidation::decode("agent x"), None);
        // The subscription heartbeat is no invalidation.
        assert_eq!(Invalidation::decode("heartbeat"), None);
        assert_eq!(Invalidation::decode("keys a b"), None);
        assert_eq!(Invalidation::decode("policy"), None);
        assert_eq!(Invalidation::decode("policy a b"), None);
        assert_eq!(Invalidation::decode(""), None);
        assert_eq!(Invalidation::decode("revoked o j"), None);
        assert_eq!(Invalidation::decode("revoked o j soon"), None);
        assert_eq!(Invalidation::decode("revoked o j 1 2"), None);
    }

    /// Markers in memory, for [`FailoverReplay`]'s parts: handles share the set (one Redis, or
    /// one database, seen by several instances); `down` makes this handle's calls fail.
    #[derive(Default, Clone)]
    struct Memory {
        set: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
        down: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Memory {
        fn handle(&self) -> Self {
            Self {
                set: self.set.clone(),
                down: Default::default(),
            }
        }
        fn down(&self, down: bool) {
            self.down.store(down, std::sync::atomic::Ordering::Relaxed);
        }
        fn has(&self, key: &str) -> bool {
            self.set.lock().unwrap().contains(key)
        }
    }

    #[async_trait]
    impl ReplayCache for Memory {
        async fn set_if_absent(&self, key: &str, _: i64, _: i64) -> Result<bool, EphemeralError> {
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(EphemeralError("down".into()));
            }
            Ok(self.set.lock().unwrap().insert(key.to_owned()))
        }
    }

    /// Redis down: markers go to the database and stay single-use there; Redis back: a marker
    /// spent during the outage is still refused while outage markers may be live, by this
    /// instance and by one that starts later (the window is shared through `meta`); once the
    /// window has passed Redis alone answers.
    #[tokio::test]
    async fn failover_markers_stay_single_use_across_an_outage() {
        let t = crate::storage::testing::temp_db().await;
        let meta: Arc<dyn crate::storage::MetaStore> = Arc::new(t.db.clone());
        let redis = Memory::default();
        let db = Memory::default();
        let a = FailoverReplay::new(Arc::new(redis.handle()), Arc::new(db.clone()), meta.clone());
        let a_redis = redis.clone();
        assert!(a.set_if_absent("before", 100, 1).await.unwrap());
        assert!(!a.set_if_absent("before", 100, 1).await.unwrap());
        assert!(!db.has("before"), "healthy: Redis only");

        // `a`'s handle of Redis fails (an outage, or a partition of `a` alone).
        let a = FailoverReplay::new(
            Arc::new(a_redis.clone()),
            Arc::new(db.clone()),
            meta.clone(),
        );
        a_redis.down(true);
        assert!(a.set_if_absent("during", 300, 10).await.unwrap());
        assert!(db.has("during"));
        assert!(
            !a.set_if_absent("during", 300, 11).await.unwrap(),
            "replay during the outage"
        );
        db.down(true);
        assert!(
            a.set_if_absent("x", 300, 12).await.is_err(),
            "both down: closed"
        );
        db.down(false);
        a_redis.down(false);
        // Redis does not know "during"; the database does.
        assert!(
            !a.set_if_absent("during", 300, 20).await.unwrap(),
            "replay after the outage"
        );
        assert!(a.set_if_absent("after", 400, 21).await.unwrap());
        assert!(db.has("after"), "written to both while outage markers live");

        // Another instance, started after the outage, reads the window before it answers.
        let b = FailoverReplay::new(Arc::new(redis.handle()), Arc::new(db.clone()), meta.clone());
        assert!(
            !b.set_if_absent("during", 300, 30).await.unwrap(),
            "a replay at another instance"
        );
        // The window (the last outage marker's exp, 300, plus RAISE_AHEAD_SECS) passed.
        let later = 300 + RAISE_AHEAD_SECS;
        assert!(b.set_if_absent("later", later + 100, later).await.unwrap());
        assert!(!db.has("later"), "Redis alone again");
    }

    /// The database-backed markers under concurrent callers: one key is set exactly once, many
    /// keys are all set, and what was set is a replay for the next caller.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn db_markers_under_concurrent_callers() {
        let t = crate::storage::testing::temp_db().await;
        let cache = Arc::new(DbReplayCache::new(Arc::new(t.db.clone())));
        let mut same = Vec::new();
        let mut distinct = Vec::new();
        for i in 0..64 {
            let c = cache.clone();
            same.push(tokio::spawn(async move {
                c.set_if_absent("one", 500, 100).await
            }));
            let c = cache.clone();
            distinct.push(tokio::spawn(async move {
                c.set_if_absent(&format!("k{i}"), 500, 100).await
            }));
        }
        let mut fresh = 0;
        for h in same {
            fresh += usize::from(h.await.unwrap().unwrap());
        }
        assert_eq!(fresh, 1);
        for h in distinct {
            assert!(h.await.unwrap().unwrap());
        }
        assert!(!cache.set_if_absent("k7", 500, 101).await.unwrap());
    }

    /// A store that cannot write answers every waiting caller with an error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn db_markers_fail_closed() {
        use crate::storage::{Revocation, StorageError, StorageResult};
        struct Down;
        #[async_trait]
        impl ReplayStore for Down {
            async fn revoke(&self, _: &str, _: &str, _: i64) -> StorageResult<()> {
                Err(StorageError::Unavailable("down".into()))
            }
            async fn is_revoked(&self, _: &str, _: &str) -> StorageResult<bool> {
                Err(StorageError::Unavailable("down".into()))
            }
            async fn set_if_absent(&self, _: &str, _: i64, _: i64) -> StorageResult<bool> {
                Err(StorageError::Unavailable("down".into()))
            }
            async fn set_many_if_absent(&self, _: &[Marker]) -> StorageResult<Vec<bool>> {
                Err(StorageError::Unavailable("disk I/O error".into()))
            }
            async fn live_revocations(&self, _: i64) -> StorageResult<Vec<Revocation>> {
                Err(StorageError::Unavailable("down".into()))
            }
            async fn purge_expired(&self, _: i64) -> StorageResult<u64> {
                Err(StorageError::Unavailable("down".into()))
            }
        }
        let cache = Arc::new(DbReplayCache::new(Arc::new(Down)));
        let calls: Vec<_> = (0..20)
            .map(|i| {
                let c = cache.clone();
                tokio::spawn(async move { c.set_if_absent(&format!("k{i}"), 500, 100).await })
            })
            .collect();
        for h in calls {
            let e = h.await.unwrap().unwrap_err();
            // The batch's error, or (retried one by one) each marker's own.
            let e = e.to_string();
            assert!(e.contains("disk I/O error") || e.contains("down"), "{e}");
        }
    }

    /// One marker the store refuses (PostgreSQL refuses NUL in text) fails only its own caller,
    /// not the others of its batch (review finding: every caller of the batch got an error).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_marker_fails_alone() {
        use crate::storage::{Revocation, StorageError, StorageResult};
        struct Picky(crate::storage::Db);
        #[async_trait]
        impl ReplayStore for Picky {
            async fn revoke(&self, o: &str, j: &str, e: i64) -> StorageResult<()> {
                self.0.revoke(o, j, e).await
            }
            async fn is_revoked(&self, o: &str, j: &str) -> StorageResult<bool> {
                self.0.is_revoked(o, j).await
            }
            async fn set_if_absent(&self, k: &str, e: i64, n: i64) -> StorageResult<bool> {
                if k.contains('\0') {
                    return Err(StorageError::Other("invalid byte sequence".into()));
                }
                self.0.set_if_absent(k, e, n).await
            }
            async fn set_many_if_absent(&self, m: &[Marker]) -> StorageResult<Vec<bool>> {
                if m.iter().any(|m| m.key.contains('\0')) {
                    return Err(StorageError::Other("invalid byte sequence".into()));
                }
                self.0.set_many_if_absent(m).await
            }
            async fn live_revocations(&self, now: i64) -> StorageResult<Vec<Revocation>> {
                self.0.live_revocations(now).await
            }
            async fn purge_expired(&self, now: i64) -> StorageResult<u64> {
                self.0.purge_expired(now).await
            }
        }
        let t = crate::storage::testing::temp_db().await;
        let cache = Arc::new(DbReplayCache::new(Arc::new(Picky(t.db.clone()))));
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let c = cache.clone();
                let key = if i == 7 {
                    "bad\0key".to_owned()
                } else {
                    format!("k{i}")
                };
                tokio::spawn(async move { (i, c.set_if_absent(&key, 500, 100).await) })
            })
            .collect();
        for h in calls {
            match h.await.unwrap() {
                (7, r) => assert!(r.is_err(), "the bad marker must fail"),
                (i, r) => assert!(r.unwrap(), "marker {i} failed with the bad one"),
            }
        }
        // Every good marker went in: a second use is a replay.
        assert!(!cache.set_if_absent("k3", 500, 101).await.unwrap());
    }
}
