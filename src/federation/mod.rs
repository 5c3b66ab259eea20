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
/// partner counterpart of `tenancy::Directory` (same lifetimes, same invalidation bus).
pub struct PartnerDirectory {
    store: Arc<dyn PartnerStore>,
    bus: DynBus,
    cache: Cache<(String, String), Option<Arc<Partner>>>,
}

impl PartnerDirectory {
    pub fn new(store: Arc<dyn PartnerStore>, bus: DynBus, ttl: Duration) -> Self {
        Self {
            store,
            bus,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
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
        self.cache
            .try_get_with((org_id.to_owned(), issuer.to_owned()), async move {
                Ok(store
                    .by_issuer(org_id, issuer)
                    .await?
                    .map(|r| Arc::new(Partner::from_record(r))))
            })
            .await
            .map_err(|e: Arc<StorageError>| StorageError::Other(e.to_string()))
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
