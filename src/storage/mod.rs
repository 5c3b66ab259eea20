//! Storage: one narrow interface, two SQL backends (SQLite embedded, PostgreSQL scale-out).
//!
//! Every tenant table carries `org_id` and every query of tenant data is scoped by it. Mutations
//! take the domain [`Event`] they cause and write it in the same transaction (outbox).

mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

pub use sql::{open, open_postgres, open_sqlite};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Other(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// An organization as stored. `issuer` and `did` are fixed at creation.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgRecord {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub issuer: String,
    pub did: String,
    pub dek_wrapped: Vec<u8>,
    pub dek_mk_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A signing key row. Its state at any instant is computed from the four times
/// (see `keys::KeyState`), so every instance agrees without messages.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub org_id: String,
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    pub private_enc: Vec<u8>,
    pub created_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub removed_at: Option<i64>,
}

/// An agent (an OAuth client with a DID) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub org_id: String,
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub did: String,
    /// JSON array of scope strings.
    pub scopes: String,
    pub status: String,
    pub auth_method: String,
    pub secret_digest: Option<Vec<u8>>,
    pub secret_digest_version: Option<i64>,
    pub prev_secret_digest: Option<Vec<u8>>,
    pub prev_secret_version: Option<i64>,
    pub prev_secret_expires_at: Option<i64>,
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub access_token_alg: String,
    pub id_token_alg: String,
    pub access_token_ttl: Option<i64>,
    pub tokens_valid_after_ms: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A federation partner of an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerRecord {
    pub org_id: String,
    pub id: String,
    pub issuer: String,
    pub name: Option<String>,
    pub jwks_uri: Option<String>,
    /// Inline JWK Set (JSON).
    pub jwks: Option<String>,
    pub did: Option<String>,
    /// JSON array.
    pub allowed_scopes: String,
    /// JSON array.
    pub allowed_audiences: String,
    pub max_assertion_lifetime: i64,
    /// JSON object: partner claim name -> local claim name.
    pub claim_mapping: String,
    /// 1 or 0.
    pub enabled: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A domain event written to the outbox in the same transaction as the change it records.
#[derive(Debug, Clone)]
pub struct Event {
    pub org_id: Option<String>,
    pub kind: &'static str,
    pub subject: String,
    pub data: Value,
    pub at: i64,
}

/// A stored event, as read back from the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub org_id: Option<String>,
    pub kind: String,
    pub subject: String,
    pub data: String,
    pub created_at: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> StorageResult<()>;
    async fn ping(&self) -> StorageResult<()>;

    async fn meta_get(&self, key: &str) -> StorageResult<Option<String>>;
    async fn meta_set(&self, key: &str, value: &str) -> StorageResult<()>;

    /// Creates the organization with its first keys. `Conflict` if the slug was ever used.
    async fn org_create(
        &self,
        org: &OrgRecord,
        keys: &[KeyRecord],
        event: &Event,
    ) -> StorageResult<()>;
    async fn org_by_slug(&self, slug: &str) -> StorageResult<Option<OrgRecord>>;
    /// Live organizations ordered by id, after the cursor.
    async fn org_list(&self, after: Option<&str>, limit: i64) -> StorageResult<Vec<OrgRecord>>;
    async fn org_all_ids(&self) -> StorageResult<Vec<(String, String)>>;
    async fn org_update_name(
        &self,
        org_id: &str,
        name: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<()>;
    /// Tombstones the organization: its slug, issuer and DID are never reused.
    async fn org_delete(&self, org_id: &str, at: i64, event: &Event) -> StorageResult<()>;
    /// Rewrites every organization's issuer and DID from one public URL to another (an explicit move).
    async fn org_rebase(
        &self,
        moves: &[(String, String, String)],
        event: &Event,
    ) -> StorageResult<()>;

    /// Keys not yet removed.
    async fn keys_for_org(&self, org_id: &str, now: i64) -> StorageResult<Vec<KeyRecord>>;
    /// Inserts new keys and sets retire/remove times on old ones, atomically.
    async fn keys_rotate(
        &self,
        org_id: &str,
        new_keys: &[KeyRecord],
        retire: &[(String, i64, i64)],
        event: &Event,
    ) -> StorageResult<()>;

    async fn agent_create(&self, agent: &AgentRecord, event: &Event) -> StorageResult<()>;
    async fn agent_get(&self, org_id: &str, id: &str) -> StorageResult<Option<AgentRecord>>;
    async fn agent_list(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<AgentRecord>>;
    /// Writes every mutable column of the agent. `NotFound` if it is gone.
    async fn agent_update(&self, agent: &AgentRecord, event: &Event) -> StorageResult<()>;
    /// Tombstones the agent.
    async fn agent_delete(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<()>;

    /// The agent's card metadata (JSON) and when it was set.
    async fn agent_card_get(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> StorageResult<Option<(String, i64)>>;
    async fn agent_card_set(
        &self,
        org_id: &str,
        agent_id: &str,
        card: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<()>;

    /// `Conflict` if the organization already has a partner with this issuer.
    async fn partner_create(&self, p: &PartnerRecord, event: &Event) -> StorageResult<()>;
    async fn partner_get(&self, org_id: &str, id: &str) -> StorageResult<Option<PartnerRecord>>;
    async fn partner_by_issuer(
        &self,
        org_id: &str,
        issuer: &str,
    ) -> StorageResult<Option<PartnerRecord>>;
    async fn partner_list(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<PartnerRecord>>;
    async fn partner_update(&self, p: &PartnerRecord, event: &Event) -> StorageResult<()>;
    async fn partner_delete(&self, org_id: &str, id: &str, event: &Event) -> StorageResult<()>;

    async fn token_revoke(&self, org_id: &str, jti: &str, expires_at: i64) -> StorageResult<()>;
    async fn token_is_revoked(&self, org_id: &str, jti: &str) -> StorageResult<bool>;

    /// Atomic set-if-absent of a single-use marker until `expires_at` (seconds). `true` when this
    /// call set it, `false` when a live marker already existed (a replay).
    async fn marker_set_if_absent(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> StorageResult<bool>;

    /// Deletes expired revocations and markers.
    async fn purge_expired(&self, now: i64) -> StorageResult<u64>;

    /// Outbox events after `after_id`, oldest first.
    async fn events_after(&self, after_id: i64, limit: i64) -> StorageResult<Vec<StoredEvent>>;
}

pub type DynStore = Arc<dyn Store>;
