//! Organizations (tenants), their agents, secrets and who may see what.

pub mod access;
pub mod agents;
pub mod cimd;
pub mod clients;
pub mod enrollments;
pub mod orgs;
pub mod policy;
pub mod principals;
pub mod registration;

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::ephemeral::{DynBus, Invalidation};
use crate::jose::KeySet;
pub use crate::model::{AgentStatus, AuthMethod};
use crate::remote::value_size;
use crate::storage::{AgentRecord, AgentStore, OrgRecord, OrgStore, StorageError};

/// An agent as the domain uses it: its stored record (with typed fields, read through `Deref`).
#[derive(Debug, Clone)]
pub struct Agent {
    pub record: AgentRecord,
    /// The inline `jwks`, parsed once when the agent is loaded (empty without one).
    pub key_set: KeySet,
    /// For a client described by a Client ID Metadata Document (see [`cimd`]): the host of its
    /// `client_id` URL, which nothing verified (the consent screen says so). `None` for every
    /// registered client.
    pub unverified_host: Option<String>,
}

impl Agent {
    pub fn from_record(record: AgentRecord) -> Self {
        let key_set = record
            .jwks
            .as_ref()
            .map(KeySet::from_jwks)
            .unwrap_or_default();
        Agent {
            record,
            key_set,
            unverified_host: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }
    /// The OAuth `client_id` is the agent id.
    pub fn client_id(&self) -> &str {
        &self.record.id
    }

    /// Has the agent's `expires_at` passed at `now`?
    pub fn is_expired(&self, now: i64) -> bool {
        self.record.expires_at.is_some_and(|e| now >= e)
    }

    /// Is its DID deactivated at `now` (revoked, or expired)?
    pub fn is_deactivated(&self, now: i64) -> bool {
        self.record.status == AgentStatus::Revoked || self.is_expired(now)
    }
}

impl Agent {
    /// An estimate of the bytes this agent holds (its record and parsed keys), for cache budgets.
    pub fn weight(&self) -> usize {
        let r = &self.record;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        let bytes = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::capacity);
        // The inline JWK Set twice: as JSON, and as the key set parsed from it.
        let jwks = r.jwks.as_ref().map_or(0, |j| 2 * value_size(j));
        std::mem::size_of::<Agent>()
            + r.name.capacity()
            + opt(&r.description)
            + r.did.capacity()
            + r.scopes.iter().map(|s| 24 + s.capacity()).sum::<usize>()
            + bytes(&r.secret_digest)
            + bytes(&r.prev_secret_digest)
            + jwks
            + opt(&r.jwks_uri)
            + 64
    }
}

/// What a cached lookup weighs: the key's bytes, the value's (none for an absent entry) and a
/// fixed share for the entry itself. Absent entries are keyed by attacker input (unknown slugs,
/// `client_id`s, issuers), so they count too.
pub fn entry_weight(key_bytes: usize, value_bytes: usize) -> u32 {
    u32::try_from(key_bytes + value_bytes + CACHE_ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

/// Fixed cost counted for every cache entry (moka's bookkeeping, the `Option<Arc<_>>`).
pub const CACHE_ENTRY_OVERHEAD: usize = 128;
/// What the cached agents may weigh in total (estimated bytes), by default.
pub const AGENT_CACHE_BUDGET: u64 = 64 * 1024 * 1024;
/// What the cached organizations may weigh in total, by default.
pub const ORG_CACHE_BUDGET: u64 = 8 * 1024 * 1024;

fn org_weight(o: &OrgRecord) -> usize {
    std::mem::size_of::<OrgRecord>()
        + o.slug.capacity()
        + o.name.capacity()
        + o.issuer.capacity()
        + o.did.capacity()
        + o.dek_wrapped.capacity()
}

impl std::ops::Deref for Agent {
    type Target = AgentRecord;
    fn deref(&self) -> &AgentRecord {
        &self.record
    }
}

/// Read-through caches of organizations (by slug) and agents (by org and id), shared by every
/// request. Absent entries are cached too, so unknown slugs do not each cost a query; both
/// caches are bounded by the estimated bytes of their entries ([`AGENT_CACHE_BUDGET`],
/// [`ORG_CACHE_BUDGET`]), absent ones included, not by a number of entries.
///
/// Every change made here invalidates these caches at once. Entries live [`CACHE_TTL_LOCAL`]
/// when other instances could change the same database without telling us (PostgreSQL without
/// Redis), and [`CACHE_TTL_SHARED`] when every change reaches us: through Redis, or because this
/// process owns the database (embedded SQLite serves one instance; the CLI only rotates keys,
/// which live in the key cache).
pub struct Directory {
    org_store: Arc<dyn OrgStore>,
    agent_store: Arc<dyn AgentStore>,
    bus: DynBus,
    orgs: Cache<String, Option<Arc<OrgRecord>>>,
    /// By (organization UUID, agent UUID) as numbers: a lookup builds its key without
    /// allocating (two `String`s per token request before).
    agents: Cache<(u128, u128), Option<Arc<Agent>>>,
    /// Invalidations of either cache ([`crate::ephemeral::Generation`]).
    generation: crate::ephemeral::Generation,
}

/// The weight of an agent cache key: two UUIDs and the entry's fixed share.
const AGENT_KEY_WEIGHT: usize = 32 + 48;

/// Only the canonical form (36 characters, lowercase) maps to a key: one number must stand for
/// one string, or a lookup of `ABC...` would share (and could poison with an absence) the entry
/// of `abc...`.
fn agent_key(org_id: &str, agent_id: &str) -> Option<(u128, u128)> {
    if !crate::model::is_uuid(org_id) || !crate::model::is_uuid(agent_id) {
        return None;
    }
    let org = uuid::Uuid::try_parse(org_id).ok()?;
    let agent = uuid::Uuid::try_parse(agent_id).ok()?;
    Some((org.as_u128(), agent.as_u128()))
}

pub const CACHE_TTL_LOCAL: Duration = Duration::from_secs(3);
pub const CACHE_TTL_SHARED: Duration = Duration::from_secs(60);

/// How long a directory entry may live: [`CACHE_TTL_SHARED`] when every change reaches this
/// instance (a shared bus, or the embedded SQLite database only this process serves), else
/// [`CACHE_TTL_LOCAL`].
pub fn cache_ttl(bus: &DynBus, backend: &str) -> Duration {
    if bus.is_shared() || backend == "sqlite" {
        CACHE_TTL_SHARED
    } else {
        CACHE_TTL_LOCAL
    }
}

impl Directory {
    pub fn new(
        org_store: Arc<dyn OrgStore>,
        agent_store: Arc<dyn AgentStore>,
        bus: DynBus,
        ttl: Duration,
    ) -> Self {
        Self::with_budgets(
            org_store,
            agent_store,
            bus,
            ttl,
            ORG_CACHE_BUDGET,
            AGENT_CACHE_BUDGET,
        )
    }

    /// A directory whose caches weigh at most `org_bytes` and `agent_bytes` (estimated).
    pub fn with_budgets(
        org_store: Arc<dyn OrgStore>,
        agent_store: Arc<dyn AgentStore>,
        bus: DynBus,
        ttl: Duration,
        org_bytes: u64,
        agent_bytes: u64,
    ) -> Self {
        Self {
            org_store,
            agent_store,
            bus,
            orgs: Cache::builder()
                .max_capacity(org_bytes)
                .weigher(|slug: &String, o: &Option<Arc<OrgRecord>>| {
                    entry_weight(slug.len(), o.as_deref().map_or(0, org_weight))
                })
                .time_to_live(ttl)
                .build(),
            agents: Cache::builder()
                .max_capacity(agent_bytes)
                .weigher(|_: &(u128, u128), a: &Option<Arc<Agent>>| {
                    entry_weight(AGENT_KEY_WEIGHT, a.as_deref().map_or(0, Agent::weight))
                })
                .time_to_live(ttl)
                .build(),
            generation: Default::default(),
        }
    }

    /// The estimated bytes the cached organizations and agents hold now.
    pub async fn weighted_size(&self) -> (u64, u64) {
        self.orgs.run_pending_tasks().await;
        self.agents.run_pending_tasks().await;
        (self.orgs.weighted_size(), self.agents.weighted_size())
    }

    /// Forget everything (the invalidation bus reconnected: what was missed is unknown).
    pub fn invalidate_all(&self) {
        self.generation.bump();
        self.orgs.invalidate_all();
        self.agents.invalidate_all();
    }

    /// The organizations' storage (writes go through it, then [`Directory::invalidate`]).
    pub fn org_store(&self) -> &dyn OrgStore {
        self.org_store.as_ref()
    }

    /// The agents' storage (writes go through it, then [`Directory::invalidate`]).
    pub fn agent_store(&self) -> &dyn AgentStore {
        self.agent_store.as_ref()
    }

    pub async fn org(&self, slug: &str) -> Result<Option<Arc<OrgRecord>>, StorageError> {
        if crate::model::OrgSlug::parse(slug).is_none() {
            return Ok(None);
        }
        // Hot path: a hit costs no allocation.
        if let Some(hit) = self.orgs.get(slug).await {
            return Ok(hit);
        }
        let orgs = self.org_store.clone();
        let noted = self.generation.current();
        let found = self
            .orgs
            .try_get_with(slug.to_owned(), async move {
                Ok(orgs.by_slug(slug).await?.map(Arc::new))
            })
            .await
            .map_err(|e: Arc<StorageError>| StorageError::Other(e.to_string()))?;
        if self.generation.moved_since(noted) {
            self.orgs.invalidate(slug).await;
        }
        Ok(found)
    }

    pub async fn agent(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Option<Arc<Agent>>, StorageError> {
        if !crate::model::is_uuid(agent_id) {
            return Ok(None);
        }
        let Some(key) = agent_key(org_id, agent_id) else {
            // Not an organization id we made (every one is a UUID): nothing to cache.
            return Ok(self
                .agent_store
                .get(org_id, agent_id)
                .await?
                .map(|r| Arc::new(Agent::from_record(r))));
        };
        if let Some(hit) = self.agents.get(&key).await {
            return Ok(hit);
        }
        let agents = self.agent_store.clone();
        let noted = self.generation.current();
        let found = self
            .agents
            .try_get_with(key, async move {
                Ok(agents
                    .get(org_id, agent_id)
                    .await?
                    .map(|r| Arc::new(Agent::from_record(r))))
            })
            .await
            .map_err(|e: Arc<StorageError>| StorageError::Other(e.to_string()))?;
        if self.generation.moved_since(noted) {
            self.agents.invalidate(&key).await;
        }
        Ok(found)
    }

    /// Forget locally, then tell the other instances.
    pub async fn invalidate(&self, inv: Invalidation) {
        self.apply(&inv).await;
        self.bus.publish(&inv).await;
    }

    /// Forget locally (also called for invalidations heard from other instances).
    pub async fn apply(&self, inv: &Invalidation) {
        match inv {
            Invalidation::Org { slug } => {
                self.generation.bump();
                self.orgs.invalidate(slug).await
            }
            Invalidation::Agent { org_id, agent_id } => {
                if let Some(key) = agent_key(org_id, agent_id) {
                    self.generation.bump();
                    self.agents.invalidate(&key).await
                }
            }
            Invalidation::Partner { .. }
            | Invalidation::Keys { .. }
            | Invalidation::Policy { .. }
            | Invalidation::Revoked { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ephemeral::LocalBus;
    use crate::storage::Stores;
    use crate::storage::testing::temp_db;

    /// One string, one key: a non-canonical spelling of an id never shares a cache entry.
    #[test]
    fn agent_keys_only_for_canonical_ids() {
        let org = "0196a000-0000-7000-8000-000000000001";
        let agent = "0196b000-0000-7000-8000-00000000000a";
        assert!(agent_key(org, agent).is_some());
        assert_eq!(agent_key(&org.to_uppercase(), agent), None);
        assert_eq!(agent_key(org, &agent.to_uppercase()), None);
        assert_eq!(agent_key(org, &agent.replace('-', "")), None);
        assert_eq!(agent_key("some-org", agent), None);
    }

    /// Unknown `client_id`s are attacker input: their cached absences stay within the budget by
    /// weight, however many there are (before, up to 1,000,000 entries were kept).
    #[tokio::test]
    async fn absent_lookups_are_bounded_by_weight() {
        let t = temp_db().await;
        let stores = Stores::new(t.db.clone());
        let budget = 256 * 1024;
        let dir = Directory::with_budgets(
            stores.orgs.clone(),
            stores.agents.clone(),
            Arc::new(LocalBus),
            Duration::from_secs(60),
            budget,
            budget,
        );
        let n = 5_000;
        let org = uuid::Uuid::new_v4().to_string();
        for i in 0..n {
            let id = uuid::Uuid::new_v4().to_string();
            assert!(dir.agent(&org, &id).await.unwrap().is_none());
            assert!(dir.org(&format!("org-{i}")).await.unwrap().is_none());
        }
        let (orgs, agents) = dir.weighted_size().await;
        assert!(orgs <= budget && agents <= budget, "{orgs} {agents}");
        // The weight is real: each absent agent counts its key and the fixed share.
        let one = u64::from(entry_weight(AGENT_KEY_WEIGHT, 0));
        assert!(
            dir.agents.entry_count() <= budget / one,
            "{} entries",
            dir.agents.entry_count()
        );
        assert!(dir.agents.entry_count() < n / 2);
    }
}
