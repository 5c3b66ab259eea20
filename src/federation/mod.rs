//! Federation: an organization registers partner issuers (another agentidp organization, or any
//! OIDC issuer) and accepts their signed assertions, verified as strictly as a bank would, and
//! exchanges them for local tokens (RFC 7523 §2.1, RFC 8693).

pub mod partners;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::ephemeral::{DynBus, Invalidation};
use crate::jose::KeySet;
use crate::storage::{PartnerRecord, PartnerStore, StorageError};

/// Default maximum assertion lifetime: above our default access-token lifetime, so two agentidp
/// instances federate out of the box.
pub const DEFAULT_MAX_ASSERTION_LIFETIME: i64 = 3600;

/// A partner as the domain uses it: its stored record (with typed fields, read through `Deref`).
#[derive(Debug, Clone)]
pub struct Partner {
    pub record: PartnerRecord,
    /// The inline `jwks`, parsed once when the partner is loaded (empty without one).
    pub key_set: KeySet,
}

impl Partner {
    pub fn from_record(record: PartnerRecord) -> Self {
        let key_set = record
            .jwks
            .as_ref()
            .map(KeySet::from_jwks)
            .unwrap_or_default();
        Partner { record, key_set }
    }
}

impl std::ops::Deref for Partner {
    type Target = PartnerRecord;
    fn deref(&self) -> &PartnerRecord {
        &self.record
    }
}

/// Read-through cache of partners by (organization, issuer), shared by every verification; the
/// partner counterpart of `tenancy::Directory` (same lifetimes, same invalidation bus). Unknown
/// issuers (attacker input at the jwt-bearer grant) are cached as absent; the cache is bounded by
/// the estimated bytes of its entries ([`PARTNER_CACHE_BUDGET`]), not by a number of entries.
pub struct PartnerDirectory {
    store: Arc<dyn PartnerStore>,
    bus: DynBus,
    cache: Cache<(String, String), Option<Arc<Partner>>>,
    /// [`crate::ephemeral::Generation`]: a load racing an invalidation is not kept.
    generation: crate::ephemeral::Generation,
}

/// What the cached partners may weigh in total (estimated bytes), by default.
pub const PARTNER_CACHE_BUDGET: u64 = 16 * 1024 * 1024;

impl Partner {
    /// An estimate of the bytes this partner holds (its record and parsed keys).
    pub fn weight(&self) -> usize {
        let r = &self.record;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        let strs = |v: &Vec<String>| v.iter().map(|s| 24 + s.capacity()).sum::<usize>();
        std::mem::size_of::<Partner>()
            + r.issuer.capacity()
            + opt(&r.name)
            + opt(&r.jwks_uri)
            + r.jwks
                .as_ref()
                .map_or(0, |j| 2 * crate::remote::value_size(j))
            + opt(&r.did)
            + strs(&r.allowed_scopes)
            + strs(&r.allowed_audiences)
            + r.claim_mapping
                .iter()
                .map(|(k, v)| 80 + k.capacity() + v.capacity())
                .sum::<usize>()
    }
}

impl PartnerDirectory {
    pub fn new(store: Arc<dyn PartnerStore>, bus: DynBus, ttl: Duration) -> Self {
        Self::with_budget(store, bus, ttl, PARTNER_CACHE_BUDGET)
    }

    /// A directory whose cache weighs at most `bytes` (estimated).
    pub fn with_budget(
        store: Arc<dyn PartnerStore>,
        bus: DynBus,
        ttl: Duration,
        bytes: u64,
    ) -> Self {
        Self {
            store,
            bus,
            cache: Cache::builder()
                .max_capacity(bytes)
                .weigher(|(org, iss): &(String, String), p: &Option<Arc<Partner>>| {
                    crate::tenancy::entry_weight(
                        org.len() + iss.len() + 48,
                        p.as_deref().map_or(0, Partner::weight),
                    )
                })
                .time_to_live(ttl)
                .build(),
            generation: Default::default(),
        }
    }

    /// The estimated bytes the cached partners hold now.
    pub async fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.weighted_size()
    }

    /// Forget everything (the invalidation bus reconnected: what was missed is unknown).
    pub fn invalidate_all(&self) {
        self.generation.bump();
        self.cache.invalidate_all();
    }

    /// The partners' storage (writes go through it, then [`PartnerDirectory::invalidate`]).
    pub fn store(&self) -> &dyn PartnerStore {
        self.store.as_ref()
    }

    /// The partner of `org_id` with this issuer.
    pub async fn partner(
        &self,
        org_id: &str,
        issuer: &str,
    ) -> Result<Option<Arc<Partner>>, StorageError> {
        if issuer.len() > 2048 {
            return Ok(None);
        }
        let store = self.store.clone();
        let noted = self.generation.current();
        let found = self
            .cache
            .try_get_with((org_id.to_owned(), issuer.to_owned()), async move {
                Ok(store
                    .by_issuer(org_id, issuer)
                    .await?
                    .map(|r| Arc::new(Partner::from_record(r))))
            })
            .await
            .map_err(|e: Arc<StorageError>| StorageError::Other(e.to_string()))?;
        if self.generation.moved_since(noted) {
            self.cache
                .invalidate(&(org_id.to_owned(), issuer.to_owned()))
                .await;
        }
        Ok(found)
    }

    /// Forget locally, then tell the other instances.
    pub async fn invalidate(&self, org_id: &str, issuer: &str) {
        let inv = Invalidation::Partner {
            org_id: org_id.to_owned(),
            issuer: issuer.to_owned(),
        };
        self.apply(&inv).await;
        self.bus.publish(&inv).await;
    }

    /// Forget locally (also called for invalidations heard from other instances).
    pub async fn apply(&self, inv: &Invalidation) {
        if let Invalidation::Partner { org_id, issuer } = inv {
            self.generation.bump();
            self.cache
                .invalidate(&(org_id.clone(), issuer.clone()))
                .await;
        }
    }
}

/// The did:web an issuer URL corresponds to (`https://h:p/orgs/x` -> `did:web:h%3Ap:orgs:x`).
pub fn issuer_did(issuer: &str) -> Option<String> {
    let u = url::Url::parse(issuer).ok()?;
    Some(crate::model::did::instance_did(&u))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ephemeral::LocalBus;
    use crate::storage::Stores;
    use crate::storage::testing::temp_db;

    /// Unknown issuers at the jwt-bearer grant (2.6 KB of `iss` each, before up to 100,000
    /// entries): their cached absences stay within the budget by weight.
    #[tokio::test]
    async fn unknown_issuers_are_bounded_by_weight() {
        let t = temp_db().await;
        let stores = Stores::new(t.db.clone());
        let budget = 256 * 1024;
        let dir = PartnerDirectory::with_budget(
            stores.partners.clone(),
            Arc::new(LocalBus),
            Duration::from_secs(60),
            budget,
        );
        let n = 1_000;
        for i in 0..n {
            let iss = format!("https://{}.example/{i}", "x".repeat(2000));
            assert!(dir.partner("some-org", &iss).await.unwrap().is_none());
        }
        let used = dir.weighted_size().await;
        assert!(used <= budget, "{used}");
        assert!(dir.cache.entry_count() < 200, "{}", dir.cache.entry_count());
    }
}
