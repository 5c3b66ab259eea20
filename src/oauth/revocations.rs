//! The revoked access tokens (RFC 7009), held in memory so that checking a token
//! (introspection, `/agent-info`, the verifier's caller) reads no database.
//!
//! The database stays the record: a revocation is written there first (durable), then added to
//! this instance's set, then published on the bus ([`Invalidation::Revoked`]) so that every
//! other instance adds it too. The set is keyed by (organization, `jti`), each entry kept until
//! the token's `exp` (then dropped: an expired token is refused anyway), and bounded by the
//! estimated bytes of its entries ([`REVOCATION_BUDGET`]).
//!
//! A lookup that misses answers "not revoked" only while the set is known to hold every
//! revocation in force ([`RevocationList::is_revoked`]); otherwise it asks the database, so it
//! never fails open:
//!
//! - the set overflowed its budget (a revocation was not kept): misses go to the database until a
//!   reload (the housekeeping job tries one) fits again;
//! - with Redis, the bus subscription is down, or was (re)made and the set is still being
//!   reloaded from the database: what was published meanwhile may be missing;
//! - PostgreSQL without Redis ([`Mode::Unshared`]): other instances revoke without telling us,
//!   so every lookup asks the database, as before.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::ephemeral::{DynBus, Invalidation};
use crate::model::Clock;
use crate::storage::{ReplayStore, StorageError, StorageResult};

/// What the revoked-token set may weigh (estimated bytes), by default: some 200,000 revocations.
pub const REVOCATION_BUDGET: usize = 32 * 1024 * 1024;
/// Fixed cost counted per revoked token (the `String`, the `exp`, the hash table's slot).
const ENTRY_OVERHEAD: usize = 64;
/// Fixed cost counted per organization holding revoked tokens (its key and inner table).
const ORG_OVERHEAD: usize = 128;

/// Who else may revoke tokens of this database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nobody: this process owns the database (embedded SQLite). The set is the truth once
    /// loaded.
    Owned,
    /// Other instances, and they tell us over a shared bus (Redis): the set is the truth while
    /// the subscription is up and was followed by a reload.
    Shared,
    /// Other instances, without telling us (PostgreSQL without Redis): the set is never enough,
    /// every lookup reads the database.
    Unshared,
}

impl Mode {
    /// The mode for a deployment: its bus and its database backend (`sqlite`, `postgres`).
    pub fn of(bus: &DynBus, backend: &str) -> Self {
        if bus.is_shared() {
            Mode::Shared
        } else if backend == "sqlite" {
            Mode::Owned
        } else {
            Mode::Unshared
        }
    }
}

#[derive(Default)]
struct State {
    /// Organization id → `jti` → `exp`.
    by_org: HashMap<String, HashMap<String, i64>>,
    bytes: usize,
    /// Bumped whenever the set may have missed a revocation (it overflowed, the bus went down or
    /// was remade): a reload that started before completes nothing.
    epoch: u64,
    /// Holds every revocation in force: a reload completed and nothing was missed since.
    complete: bool,
    /// The bus subscription is up (always, in [`Mode::Owned`]).
    bus_up: bool,
    /// When expired entries were last dropped (seconds).
    swept_at: i64,
}

impl State {
    fn contains(&self, org_id: &str, jti: &str) -> bool {
        self.by_org.get(org_id).is_some_and(|m| m.contains_key(jti))
    }

    /// Adds a revocation; `false` when it does not fit (the set is then incomplete).
    fn insert(&mut self, org_id: &str, jti: &str, exp: i64, now: i64, budget: usize) -> bool {
        if exp < now {
            return true;
        }
        if let Some(e) = self.by_org.get_mut(org_id).and_then(|m| m.get_mut(jti)) {
            *e = (*e).max(exp);
            return true;
        }
        let org_cost = if self.by_org.contains_key(org_id) {
            0
        } else {
            org_id.len() + ORG_OVERHEAD
        };
        let cost = org_cost + jti.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > budget && self.swept_at != now {
            self.sweep(now);
        }
        if self.bytes + cost > budget {
            self.epoch += 1;
            self.complete = false;
            return false;
        }
        self.by_org
            .entry(org_id.to_owned())
            .or_default()
            .insert(jti.to_owned(), exp);
        self.bytes += cost;
        true
    }

    /// Drops the entries that expired before `now`.
    fn sweep(&mut self, now: i64) {
        self.swept_at = now;
        let mut freed = 0;
        self.by_org.retain(|org_id, m| {
            m.retain(|jti, exp| {
                let keep = *exp >= now;
                if !keep {
                    freed += jti.len() + ENTRY_OVERHEAD;
                }
                keep
            });
            if m.is_empty() {
                freed += org_id.len() + ORG_OVERHEAD;
            }
            !m.is_empty()
        });
        self.bytes -= freed;
    }

    /// The bus went down or came up: what was published meanwhile may be missing.
    fn missed(&mut self, bus_up: bool) {
        self.bus_up = bus_up;
        self.epoch += 1;
        self.complete = false;
    }
}

/// The revocation list: the database, this instance's set of revoked tokens, the bus.
pub struct RevocationList {
    store: Arc<dyn ReplayStore>,
    bus: DynBus,
    clock: Arc<dyn Clock>,
    mode: Mode,
    budget: usize,
    state: RwLock<State>,
}

impl RevocationList {
    /// An empty, incomplete list (every lookup reads the database until [`Self::reload`]).
    pub fn new(
        store: Arc<dyn ReplayStore>,
        bus: DynBus,
        clock: Arc<dyn Clock>,
        mode: Mode,
    ) -> Self {
        Self::with_budget(store, bus, clock, mode, REVOCATION_BUDGET)
    }

    /// A list whose set weighs at most `budget` estimated bytes.
    pub fn with_budget(
        store: Arc<dyn ReplayStore>,
        bus: DynBus,
        clock: Arc<dyn Clock>,
        mode: Mode,
        budget: usize,
    ) -> Self {
        Self {
            store,
            bus,
            clock,
            mode,
            budget,
            state: RwLock::new(State {
                bus_up: mode == Mode::Owned,
                ..State::default()
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Is token `jti` of `org_id` revoked? From memory when the set holds every revocation in
    /// force; from the database otherwise (see the module's documentation: never fails open).
    pub async fn is_revoked(&self, org_id: &str, jti: &str) -> StorageResult<bool> {
        if self.mode != Mode::Unshared {
            let s = self.read();
            if s.contains(org_id, jti) {
                return Ok(true);
            }
            if s.complete && s.bus_up {
                return Ok(false);
            }
        }
        self.store.is_revoked(org_id, jti).await
    }

    /// Revokes token `jti` of `org_id` until `exp`: the database first (an error there is the
    /// caller's, and nothing else happened), then this instance's set, then every other instance.
    ///
    /// A publication that fails is an error too, although the revocation is recorded and in force
    /// here: the other instances, still subscribed, would not learn it (until housekeeping's
    /// reload), so the client is told to try again (revoking twice is fine).
    pub async fn revoke(&self, org_id: &str, jti: &str, exp: i64) -> StorageResult<()> {
        self.store.revoke(org_id, jti, exp).await?;
        self.learn(org_id, jti, exp);
        self.bus
            .try_publish(&Invalidation::Revoked {
                org_id: org_id.to_owned(),
                jti: jti.to_owned(),
                exp,
            })
            .await
            .map_err(|e| StorageError::Unavailable(format!("publishing the revocation: {e}")))
    }

    /// Takes in a revocation heard from another instance (other invalidations are not ours).
    pub fn apply(&self, inv: &Invalidation) {
        if let Invalidation::Revoked { org_id, jti, exp } = inv {
            self.learn(org_id, jti, *exp);
        }
    }

    fn learn(&self, org_id: &str, jti: &str, exp: i64) {
        if self.mode == Mode::Unshared {
            return;
        }
        let now = self.clock.now();
        if !self.write().insert(org_id, jti, exp, now, self.budget) {
            tracing::warn!(
                budget = self.budget,
                "the revoked-token set is full: lookups that miss it read the database"
            );
        }
    }

    /// Loads every revocation in force from the database into the set. The set is complete
    /// afterwards when everything fitted and nothing was missed meanwhile (no overflow, no change
    /// of the bus); else lookups that miss keep reading the database.
    pub async fn reload(&self) -> StorageResult<()> {
        if self.mode == Mode::Unshared {
            return Ok(());
        }
        let epoch = self.read().epoch;
        let now = self.clock.now();
        let rows = self.store.live_revocations(now).await?;
        let mut s = self.write();
        let mut fitted = true;
        for (org_id, jti, exp) in &rows {
            fitted &= s.insert(org_id, jti, *exp, now, self.budget);
        }
        if fitted && s.epoch == epoch {
            s.complete = true;
        }
        Ok(())
    }

    /// The bus subscription came up (`true`: reload, then trust the set) or went down (`false`:
    /// read the database on a miss until it is back).
    pub fn bus_changed(self: &Arc<Self>, up: bool) {
        if self.mode != Mode::Shared {
            return;
        }
        self.write().missed(up);
        if up {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.reload().await {
                    tracing::warn!(error = %e, "reloading revoked tokens failed; lookups read the database");
                }
            });
        }
    }

    /// Housekeeping: drops expired entries; reloads an incomplete set (after an overflow) whose
    /// bus is up, in case it fits now; and otherwise reloads anyway (merging what a failed
    /// publication elsewhere, or another process on the same SQLite file, may have kept from us).
    pub async fn purge(&self) -> StorageResult<()> {
        let now = self.clock.now();
        let retry = {
            let mut s = self.write();
            s.sweep(now);
            // Owned (SQLite) too: nothing stops a second process on the same file (a restart
            // overlapping the old one's drain), whose revocations would otherwise never be seen.
            s.bus_up && (!s.complete || self.mode != Mode::Unshared)
        };
        if retry { self.reload().await } else { Ok(()) }
    }

    /// Whether a miss is answered from memory (for tests and metrics).
    pub fn is_complete(&self) -> bool {
        let s = self.read();
        self.mode != Mode::Unshared && s.complete && s.bus_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ephemeral::LocalBus;
    use crate::model::OffsetClock;
    use crate::storage::testing::temp_db;

    /// Counts the database's `is_revoked` lookups.
    struct Counting {
        inner: crate::storage::Db,
        lookups: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ReplayStore for Counting {
        async fn revoke(&self, o: &str, j: &str, e: i64) -> StorageResult<()> {
            self.inner.revoke(o, j, e).await
        }
        async fn is_revoked(&self, o: &str, j: &str) -> StorageResult<bool> {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.is_revoked(o, j).await
        }
        async fn set_if_absent(&self, k: &str, e: i64, n: i64) -> StorageResult<bool> {
            self.inner.set_if_absent(k, e, n).await
        }
        async fn set_many_if_absent(
            &self,
            m: &[crate::storage::Marker],
        ) -> StorageResult<Vec<bool>> {
            self.inner.set_many_if_absent(m).await
        }
        async fn live_revocations(
            &self,
            now: i64,
        ) -> StorageResult<Vec<crate::storage::Revocation>> {
            self.inner.live_revocations(now).await
        }
        async fn purge_expired(&self, now: i64) -> StorageResult<u64> {
            self.inner.purge_expired(now).await
        }
    }

    impl Counting {
        fn lookups(&self) -> usize {
            self.lookups.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    struct Setup {
        store: Arc<Counting>,
        list: Arc<RevocationList>,
        clock: Arc<OffsetClock>,
        _db: crate::storage::testing::TempDb,
    }

    async fn setup(mode: Mode, budget: usize) -> Setup {
        let t = temp_db().await;
        let store = Arc::new(Counting {
            inner: t.db.clone(),
            lookups: Default::default(),
        });
        let clock = Arc::new(OffsetClock::new());
        let list = Arc::new(RevocationList::with_budget(
            store.clone(),
            Arc::new(LocalBus),
            clock.clone(),
            mode,
            budget,
        ));
        Setup {
            store,
            list,
            clock,
            _db: t,
        }
    }

    fn far() -> i64 {
        OffsetClock::new().now() + 3600
    }

    /// Loaded from the database at start, then answered from memory: hits and misses read no
    /// database; a revocation made here is known at once.
    #[tokio::test]
    async fn loaded_set_answers_without_the_database() {
        let Setup {
            store, list, _db, ..
        } = setup(Mode::Owned, REVOCATION_BUDGET).await;
        store.inner.revoke("o", "before", far()).await.unwrap();
        assert!(!list.is_complete(), "nothing is trusted before the load");
        assert!(list.is_revoked("o", "before").await.unwrap());
        assert_eq!(store.lookups(), 1);
        list.reload().await.unwrap();
        assert!(list.is_complete());
        assert!(list.is_revoked("o", "before").await.unwrap());
        assert!(!list.is_revoked("o", "other").await.unwrap());
        assert!(
            !list.is_revoked("p", "before").await.unwrap(),
            "scoped by org"
        );
        list.revoke("o", "now", far()).await.unwrap();
        assert!(list.is_revoked("o", "now").await.unwrap());
        assert_eq!(store.lookups(), 1, "no database read once loaded");
        assert!(store.inner.is_revoked("o", "now").await.unwrap(), "durable");
    }

    /// A set over its budget is not trusted: a miss falls back to the database (a revocation
    /// that did not fit is still found), and a reload after the entries expired trusts it again.
    #[tokio::test]
    async fn an_overflowed_set_falls_back_to_the_database() {
        // Room for about two entries.
        let budget = ORG_OVERHEAD + 2 * (36 + ENTRY_OVERHEAD) + 10;
        let Setup {
            store,
            list,
            clock,
            _db,
        } = setup(Mode::Owned, budget).await;
        list.reload().await.unwrap();
        let now = clock.now();
        let jti = |i: i64| format!("{i:036}");
        for i in 0..5 {
            list.revoke("org", &jti(i), now + 10 + 100 * i)
                .await
                .unwrap();
        }
        assert!(!list.is_complete(), "overflowed");
        let before = store.lookups();
        // The last ones did not fit: found through the database, never "not revoked".
        assert!(list.is_revoked("org", &jti(4)).await.unwrap());
        assert!(list.is_revoked("org", &jti(3)).await.unwrap());
        assert!(!list.is_revoked("org", "unknown").await.unwrap());
        assert_eq!(store.lookups(), before + 3, "every miss read the database");
        // The first ones are in memory: no read.
        assert!(list.is_revoked("org", &jti(0)).await.unwrap());
        assert_eq!(store.lookups(), before + 3);

        // Housekeeping while everything is still in force: the reload overflows again.
        list.purge().await.unwrap();
        assert!(!list.is_complete());
        // Once all but two have expired, housekeeping's reload fits: trusted again.
        clock.advance(std::time::Duration::from_secs(250));
        store.inner.purge_expired(clock.now()).await.unwrap();
        list.purge().await.unwrap();
        assert!(list.is_complete());
        let before = store.lookups();
        assert!(list.is_revoked("org", &jti(3)).await.unwrap());
        assert!(list.is_revoked("org", &jti(4)).await.unwrap());
        assert!(!list.is_revoked("org", "unknown").await.unwrap());
        assert_eq!(store.lookups(), before, "answered from memory");
    }

    /// PostgreSQL without Redis: others revoke without telling us, so every lookup reads the
    /// database, even for a token revoked here.
    #[tokio::test]
    async fn unshared_mode_always_reads_the_database() {
        let Setup {
            store, list, _db, ..
        } = setup(Mode::Unshared, REVOCATION_BUDGET).await;
        list.reload().await.unwrap();
        list.revoke("o", "j", far()).await.unwrap();
        assert!(list.is_revoked("o", "j").await.unwrap());
        assert!(!list.is_revoked("o", "k").await.unwrap());
        assert_eq!(store.lookups(), 2);
        assert!(!list.is_complete());
    }

    /// With a shared bus the set is trusted only after the subscription came up and the reload
    /// that followed finished; while it is down, misses read the database.
    #[tokio::test]
    async fn shared_mode_trusts_the_set_only_while_subscribed() {
        let Setup {
            store, list, _db, ..
        } = setup(Mode::Shared, REVOCATION_BUDGET).await;
        list.reload().await.unwrap();
        assert!(!list.is_complete(), "loaded, but not yet subscribed");
        // Up: a reload is spawned; run one here too, to wait for it.
        list.write().missed(true);
        store.inner.revoke("o", "meanwhile", far()).await.unwrap();
        list.reload().await.unwrap();
        assert!(list.is_complete());
        assert!(list.is_revoked("o", "meanwhile").await.unwrap());
        let before = store.lookups();
        list.apply(&Invalidation::Revoked {
            org_id: "o".into(),
            jti: "heard".into(),
            exp: far(),
        });
        assert!(list.is_revoked("o", "heard").await.unwrap());
        assert!(!list.is_revoked("o", "x").await.unwrap());
        assert_eq!(store.lookups(), before);
        // Down: a miss reads the database.
        list.bus_changed(false);
        assert!(!list.is_revoked("o", "x").await.unwrap());
        assert_eq!(store.lookups(), before + 1);
    }

    /// A publication that fails makes the revocation an error for its client (to try again),
    /// although it is recorded and in force here.
    #[tokio::test]
    async fn a_failed_publication_is_reported() {
        struct Broken;
        #[async_trait::async_trait]
        impl crate::ephemeral::InvalidationBus for Broken {
            async fn publish(&self, _: &Invalidation) {}
            async fn try_publish(
                &self,
                _: &Invalidation,
            ) -> Result<(), crate::ephemeral::EphemeralError> {
                Err(crate::ephemeral::EphemeralError("connection reset".into()))
            }
            fn is_shared(&self) -> bool {
                true
            }
        }
        let t = temp_db().await;
        let list = RevocationList::new(
            Arc::new(t.db.clone()),
            Arc::new(Broken),
            Arc::new(OffsetClock::new()),
            Mode::Shared,
        );
        let e = list.revoke("o", "j", far()).await.unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
        assert!(t.db.is_revoked("o", "j").await.unwrap(), "durable");
        assert!(list.is_revoked("o", "j").await.unwrap());
    }
}
