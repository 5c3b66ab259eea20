//! Organizations (tenants), their agents, secrets and who may see what.

pub mod access;
pub mod agents;
pub mod orgs;

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::ephemeral::{DynBus, Invalidation};
use crate::jose::KeySet;
pub use crate::model::{AgentStatus, AuthMethod};
use crate::storage::{AgentRecord, AgentStore, OrgRecord, OrgStore, StorageError};

/// An agent as the domain uses it: its stored record (with typed fields, read through `Deref`).
#[derive(Debug, Clone)]
pub struct Agent {
    pub record: AgentRecord,
    /// The inline `jwks`, parsed once when the agent is loaded (empty without one).
    pub key_set: KeySet,
}

impl Agent {
    pub fn from_record(record: AgentRecord) -> Self {
        let key_set = record
            .jwks
            .as_ref()
            .map(KeySet::from_jwks)
            .unwrap_or_default();
        Agent { record, key_set }
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }
    /// The OAuth `client_id` is the agent id.
    pub fn client_id(&self) -> &str {
        &self.record.id
    }
}

impl std::ops::Deref for Agent {
    type Target = AgentRecord;
    fn deref(&self) -> &AgentRecord {
        &self.record
    }
}

/// Read-through caches of organizations (by slug) and agents (by org and id), shared by every
/// request. Absent entries are cached too, so unknown slugs do not each cost a query.
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
    agents: Cache<(String, String), Option<Arc<Agent>>>,
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
        Self {
            org_store,
            agent_store,
            bus,
            orgs: Cache::builder()
                .max_capacity(50_000)
                .time_to_live(ttl)
                .build(),
            agents: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl)
                .build(),
        }
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
        self.orgs
            .try_get_with(slug.to_owned(), async move {
                Ok(orgs.by_slug(slug).await?.map(Arc::new))
            })
            .await
            .map_err(|e: Arc<StorageError>| StorageError::Other(e.to_string()))
    }

    pub async fn agent(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Option<Arc<Agent>>, StorageError> {
        if !crate::model::is_uuid(agent_id) {
            return Ok(None);
        }
        if let Some(hit) = self
            .agents
            .get(&(org_id.to_owned(), agent_id.to_owned()))
            .await
        {
            return Ok(hit);
        }
        let agents = self.agent_store.clone();
        self.agents
            .try_get_with((org_id.to_owned(), agent_id.to_owned()), async move {
                Ok(agents
                    .get(org_id, agent_id)
                    .await?
                    .map(|r| Arc::new(Agent::from_record(r))))
            })
            .await
            .map_err(|e: Arc<StorageError>| StorageError::Other(e.to_string()))
    }

    /// Forget locally, then tell the other instances.
    pub async fn invalidate(&self, inv: Invalidation) {
        self.apply(&inv).await;
        self.bus.publish(&inv).await;
    }

    /// Forget locally (also called for invalidations heard from other instances).
    pub async fn apply(&self, inv: &Invalidation) {
        match inv {
            Invalidation::Org { slug } => self.orgs.invalidate(slug).await,
            Invalidation::Agent { org_id, agent_id } => {
                self.agents
                    .invalidate(&(org_id.clone(), agent_id.clone()))
                    .await
            }
            Invalidation::Partner { .. } | Invalidation::Keys { .. } => {}
        }
    }
}
