//! Organizations (tenants), their agents, secrets and who may see what.

pub mod access;
pub mod agents;
pub mod orgs;

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use serde_json::Value;

use crate::ephemeral::{DynBus, Invalidation};
use crate::model::Alg;
use crate::storage::{AgentRecord, DynStore, OrgRecord, StorageError};

/// Agent lifecycle. `Revoked` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Active,
    Suspended,
    Revoked,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// RFC 7591 `token_endpoint_auth_method` values we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 3] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
    pub fn uses_secret(self) -> bool {
        self != AuthMethod::PrivateKeyJwt
    }
}

/// An agent with its stored fields parsed.
#[derive(Debug, Clone)]
pub struct Agent {
    pub record: AgentRecord,
    pub scopes: Vec<String>,
    pub status: AgentStatus,
    pub auth_method: AuthMethod,
    pub access_token_alg: Alg,
    pub id_token_alg: Alg,
    pub jwks: Option<Value>,
}

impl Agent {
    pub fn from_record(record: AgentRecord) -> Result<Self, StorageError> {
        let bad = |what: &str| StorageError::Other(format!("agent {}: bad {what}", record.id));
        Ok(Agent {
            scopes: serde_json::from_str(&record.scopes).map_err(|_| bad("scopes"))?,
            status: AgentStatus::parse(&record.status).ok_or_else(|| bad("status"))?,
            auth_method: AuthMethod::parse(&record.auth_method)
                .ok_or_else(|| bad("auth_method"))?,
            access_token_alg: Alg::parse(&record.access_token_alg)
                .ok_or_else(|| bad("access_token_alg"))?,
            id_token_alg: Alg::parse(&record.id_token_alg).ok_or_else(|| bad("id_token_alg"))?,
            jwks: match &record.jwks {
                Some(s) => Some(serde_json::from_str(s).map_err(|_| bad("jwks"))?),
                None => None,
            },
            record,
        })
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }
    /// The OAuth `client_id` is the agent id.
    pub fn client_id(&self) -> &str {
        &self.record.id
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
    store: DynStore,
    bus: DynBus,
    orgs: Cache<String, Option<Arc<OrgRecord>>>,
    agents: Cache<(String, String), Option<Arc<Agent>>>,
    partners: Cache<(String, String), Option<Arc<crate::federation::Partner>>>,
}

pub const CACHE_TTL_LOCAL: Duration = Duration::from_secs(3);
pub const CACHE_TTL_SHARED: Duration = Duration::from_secs(60);

impl Directory {
    pub fn new(store: DynStore, bus: DynBus) -> Self {
        let ttl = if bus.is_shared() || store.backend() == "sqlite" {
            CACHE_TTL_SHARED
        } else {
            CACHE_TTL_LOCAL
        };
        Self {
            store,
            bus,
            orgs: Cache::builder()
                .max_capacity(50_000)
                .time_to_live(ttl)
                .build(),
            agents: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl)
                .build(),
            partners: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub async fn org(&self, slug: &str) -> Result<Option<Arc<OrgRecord>>, StorageError> {
        if crate::model::OrgSlug::parse(slug).is_none() {
            return Ok(None);
        }
        // Hot path: a hit costs no allocation.
        if let Some(hit) = self.orgs.get(slug).await {
            return Ok(hit);
        }
        let store = self.store.clone();
        self.orgs
            .try_get_with(slug.to_owned(), async move {
                Ok(store.org_by_slug(slug).await?.map(Arc::new))
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
        let store = self.store.clone();
        self.agents
            .try_get_with((org_id.to_owned(), agent_id.to_owned()), async move {
                match store.agent_get(org_id, agent_id).await? {
                    Some(r) => Ok(Some(Arc::new(Agent::from_record(r)?))),
                    None => Ok(None),
                }
            })
            .await
            .map_err(|e: Arc<StorageError>| StorageError::Other(e.to_string()))
    }

    /// The partner of `org_id` with this issuer.
    pub async fn partner(
        &self,
        org_id: &str,
        issuer: &str,
    ) -> Result<Option<Arc<crate::federation::Partner>>, StorageError> {
        if issuer.len() > 2048 {
            return Ok(None);
        }
        let store = self.store.clone();
        self.partners
            .try_get_with((org_id.to_owned(), issuer.to_owned()), async move {
                match store.partner_by_issuer(org_id, issuer).await? {
                    Some(r) => Ok(Some(Arc::new(crate::federation::Partner::from_record(r)?))),
                    None => Ok(None),
                }
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
            Invalidation::Partner { org_id, issuer } => {
                self.partners
                    .invalidate(&(org_id.clone(), issuer.clone()))
                    .await
            }
            Invalidation::Keys { .. } => {}
        }
    }
}
