//! Agents (`agents`: OAuth clients with a DID) and their card metadata (`agent_cards`). A deleted
//! agent stays as a revoked tombstone; revocation is final, so no update reaches a revoked row.

use async_trait::async_trait;
use serde_json::Value;

use super::outbox::{self, Event};
use super::{
    Db, Scope, ScopedPool, StorageError, StorageResult, conflict, db_err, from_json, on_db,
    parse_stored, to_json_list,
};
use crate::model::{AgentId, AgentStatus, Alg, AuthMethod, ClientKind, OrgId};

/// An agent as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub org_id: OrgId,
    pub id: AgentId,
    pub name: String,
    pub description: Option<String>,
    pub did: String,
    pub scopes: Vec<String>,
    pub status: AgentStatus,
    pub auth_method: AuthMethod,
    pub secret_digest: Option<Vec<u8>>,
    pub secret_digest_version: Option<i64>,
    pub prev_secret_digest: Option<Vec<u8>>,
    pub prev_secret_version: Option<i64>,
    pub prev_secret_expires_at: Option<i64>,
    /// When the current secret was issued (registration or rotation), Unix seconds.
    pub secret_created_at: Option<i64>,
    /// When the previous secret (valid during a rotation's grace period) was issued.
    pub prev_secret_created_at: Option<i64>,
    /// After this instant (Unix seconds) the agent gets no tokens and its DID is deactivated.
    pub expires_at: Option<i64>,
    /// A registered JWK Set (`private_key_jwt`).
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub access_token_alg: Alg,
    pub id_token_alg: Alg,
    pub access_token_ttl: Option<i64>,
    /// Tokens issued at or before this instant (ms) are no longer valid.
    pub tokens_valid_after_ms: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Incremented by every write; [`AgentStore::update`] writes only over the version it was
    /// read at (optimistic concurrency). The admin API's `ETag`.
    pub version: i64,
    /// An agent, or a people-facing app (no DID).
    pub kind: ClientKind,
    /// The exact redirect URIs of the authorization code flow (RFC 6749 §3.1.2).
    pub redirect_uris: Vec<String>,
    /// Where RP-Initiated Logout may send the browser back to.
    pub post_logout_redirect_uris: Vec<String>,
    /// The grant types the client may use; empty on an agent: the agent grants (client
    /// credentials, JWT bearer, token exchange).
    pub grant_types: Vec<String>,
    /// The enrollment token that enrolled it (at `{iss}/oauth2/register`), if any.
    pub enrollment_id: Option<String>,
    /// The keyed digest (and its key version) of its RFC 7592 registration access token: only
    /// for clients registered at `{iss}/oauth2/register`. Set at creation, never changed.
    pub registration_digest: Option<Vec<u8>>,
    pub registration_digest_version: Option<i64>,
}

impl AgentRecord {
    /// A newly registered, active agent with the registration defaults: no description, scopes,
    /// secrets or keys; ES256 access tokens, RS256 ID tokens, the instance's token lifetime.
    pub fn new(
        org_id: OrgId,
        id: AgentId,
        did: String,
        name: String,
        auth_method: AuthMethod,
        now: i64,
    ) -> Self {
        AgentRecord {
            org_id,
            id,
            name,
            description: None,
            did,
            scopes: Vec::new(),
            status: AgentStatus::Active,
            auth_method,
            secret_digest: None,
            secret_digest_version: None,
            prev_secret_digest: None,
            prev_secret_version: None,
            prev_secret_expires_at: None,
            secret_created_at: None,
            prev_secret_created_at: None,
            expires_at: None,
            jwks: None,
            jwks_uri: None,
            access_token_alg: Alg::ES256,
            id_token_alg: Alg::RS256,
            access_token_ttl: None,
            tokens_valid_after_ms: 0,
            created_at: now,
            updated_at: now,
            version: 1,
            kind: ClientKind::Agent,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: Vec::new(),
            enrollment_id: None,
            registration_digest: None,
            registration_digest_version: None,
        }
    }
}

/// Which agents a listing returns (every given condition holds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFilter {
    pub status: Option<AgentStatus>,
    /// Agents with an `expires_at` before this instant (Unix seconds).
    pub expiring_before: Option<i64>,
    /// Agents whose name contains this text, compared case-insensitively (`LOWER` of the
    /// database: ASCII letters on SQLite, the database's locale on PostgreSQL).
    pub name_contains: Option<String>,
    /// Only agents, or only apps.
    pub kind: Option<ClientKind>,
    /// Only the clients this enrollment token enrolled.
    pub enrollment_id: Option<String>,
}

/// `s` as a `LIKE` pattern matching any text that contains it (`\` escapes `%`, `_`, `\`).
fn contains_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// `Conflict { what: "agent id" }` if the organization has an agent with this id.
    async fn create(&self, agent: &AgentRecord, event: &Event) -> StorageResult<()> {
        self.create_within(agent, event, None).await.map(|_| ())
    }
    /// Like [`AgentStore::create`], but only while the organization has fewer than `max_live`
    /// live (not deleted, not revoked) clients of the new one's kind, counted in the same transaction under a lock on
    /// the organization's row (concurrent creations cannot both take the last place). `false`:
    /// the limit is reached, nothing was written.
    async fn create_within(
        &self,
        agent: &AgentRecord,
        event: &Event,
        max_live: Option<i64>,
    ) -> StorageResult<bool>;
    /// Creates `agent` as enrolled by its `enrollment_id` token, in one transaction: the token
    /// must be unrevoked, unexpired at `now` and below its `max_uses` (its `uses` counted up
    /// here, so two concurrent registrations cannot both take the last use), and the
    /// organization below `max_live` live clients of the agent's kind (as
    /// [`AgentStore::create_within`]). A refusal writes nothing.
    async fn enroll(
        &self,
        agent: &AgentRecord,
        event: &Event,
        max_live: Option<i64>,
        now: i64,
    ) -> StorageResult<Result<(), super::EnrollRefusal>>;
    /// The live (not deleted) agent.
    async fn get(&self, org_id: &str, id: &str) -> StorageResult<Option<AgentRecord>>;
    /// Live agents of the organization ordered by id, after the cursor.
    async fn list(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<AgentRecord>> {
        self.list_filtered(org_id, after, limit, &AgentFilter::default())
            .await
    }
    /// Live agents of the organization that pass `filter`, ordered by id, after the cursor.
    async fn list_filtered(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
        filter: &AgentFilter,
    ) -> StorageResult<Vec<AgentRecord>>;
    /// How many live (not deleted, not revoked) agents the organization has.
    async fn count_live(&self, org_id: &str) -> StorageResult<i64>;
    /// Writes every mutable column if the stored row is still at `agent.version` (and increments
    /// it). `Stale` if another write came first (read again and redo the change: a blind write
    /// would undo it, e.g. a suspension or a secret rotation); `NotFound` if the agent is gone or
    /// revoked.
    async fn update(&self, agent: &AgentRecord, event: &Event) -> StorageResult<()>;
    /// Tombstones the agent (revoked, its tokens invalid from `at`).
    async fn delete(&self, org_id: &str, id: &str, at: i64, event: &Event) -> StorageResult<()>;
    /// The agent's card metadata (JSON) and when it was set.
    async fn card(&self, org_id: &str, agent_id: &str) -> StorageResult<Option<(String, i64)>>;
    /// Replaces the card metadata of a live, unrevoked agent (`NotFound` otherwise).
    async fn set_card(
        &self,
        org_id: &str,
        agent_id: &str,
        card: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<()>;
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    org_id: String,
    id: String,
    name: String,
    description: Option<String>,
    did: String,
    scopes: String,
    status: String,
    auth_method: String,
    secret_digest: Option<Vec<u8>>,
    secret_digest_version: Option<i64>,
    prev_secret_digest: Option<Vec<u8>>,
    prev_secret_version: Option<i64>,
    prev_secret_expires_at: Option<i64>,
    jwks: Option<String>,
    jwks_uri: Option<String>,
    access_token_alg: String,
    id_token_alg: String,
    access_token_ttl: Option<i64>,
    tokens_valid_after_ms: i64,
    created_at: i64,
    updated_at: i64,
    version: i64,
    secret_created_at: Option<i64>,
    prev_secret_created_at: Option<i64>,
    expires_at: Option<i64>,
    kind: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    grant_types: String,
    enrollment_id: Option<String>,
    registration_digest: Option<Vec<u8>>,
    registration_digest_version: Option<i64>,
}

impl TryFrom<AgentRow> for AgentRecord {
    type Error = StorageError;
    fn try_from(r: AgentRow) -> StorageResult<Self> {
        let bad = |e: StorageError| StorageError::Other(format!("agent {}: {e}", r.id));
        Ok(AgentRecord {
            scopes: from_json(&r.scopes, "scopes").map_err(bad)?,
            status: parse_stored(&r.status, "status", AgentStatus::parse).map_err(bad)?,
            auth_method: parse_stored(&r.auth_method, "auth_method", AuthMethod::parse)
                .map_err(bad)?,
            jwks: match &r.jwks {
                Some(j) => Some(from_json(j, "jwks").map_err(bad)?),
                None => None,
            },
            access_token_alg: parse_stored(&r.access_token_alg, "access_token_alg", Alg::parse)
                .map_err(bad)?,
            id_token_alg: parse_stored(&r.id_token_alg, "id_token_alg", Alg::parse).map_err(bad)?,
            kind: parse_stored(&r.kind, "kind", ClientKind::parse).map_err(bad)?,
            redirect_uris: from_json(&r.redirect_uris, "redirect_uris").map_err(bad)?,
            post_logout_redirect_uris: from_json(
                &r.post_logout_redirect_uris,
                "post_logout_redirect_uris",
            )
            .map_err(bad)?,
            grant_types: from_json(&r.grant_types, "grant_types").map_err(bad)?,
            org_id: r.org_id.into(),
            id: r.id.into(),
            name: r.name,
            description: r.description,
            did: r.did,
            secret_digest: r.secret_digest,
            secret_digest_version: r.secret_digest_version,
            prev_secret_digest: r.prev_secret_digest,
            prev_secret_version: r.prev_secret_version,
            prev_secret_expires_at: r.prev_secret_expires_at,
            jwks_uri: r.jwks_uri,
            access_token_ttl: r.access_token_ttl,
            tokens_valid_after_ms: r.tokens_valid_after_ms,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
            secret_created_at: r.secret_created_at,
            prev_secret_created_at: r.prev_secret_created_at,
            expires_at: r.expires_at,
            enrollment_id: r.enrollment_id,
            registration_digest: r.registration_digest,
            registration_digest_version: r.registration_digest_version,
        })
    }
}

/// The selected columns, in `AgentRow` order (a literal, so statements stay `&'static str`).
macro_rules! columns {
    () => {
        "org_id, id, name, description, did, scopes, status, auth_method, secret_digest, \
         secret_digest_version, prev_secret_digest, prev_secret_version, prev_secret_expires_at, \
         jwks, jwks_uri, access_token_alg, id_token_alg, access_token_ttl, tokens_valid_after_ms, \
         created_at, updated_at, version, secret_created_at, prev_secret_created_at, expires_at, \
         kind, redirect_uris, post_logout_redirect_uris, grant_types, enrollment_id, \
         registration_digest, registration_digest_version"
    };
}

/// Inserts agent `$a` in transaction `$tx` (in an [`on_db!`] body: written once, compiled for
/// both backends).
macro_rules! insert_agent {
    ($tx:expr, $a:expr) => {{
        let a: &AgentRecord = $a;
        sqlx::query(concat!(
            "INSERT INTO agents (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                 $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, \
                 $30, $31, $32)"
        ))
        .bind(a.org_id.as_str())
        .bind(a.id.as_str())
        .bind(&a.name)
        .bind(&a.description)
        .bind(&a.did)
        .bind(to_json_list(&a.scopes))
        .bind(a.status.as_str())
        .bind(a.auth_method.as_str())
        .bind(&a.secret_digest)
        .bind(a.secret_digest_version)
        .bind(&a.prev_secret_digest)
        .bind(a.prev_secret_version)
        .bind(a.prev_secret_expires_at)
        .bind(a.jwks.as_ref().map(Value::to_string))
        .bind(&a.jwks_uri)
        .bind(a.access_token_alg.as_str())
        .bind(a.id_token_alg.as_str())
        .bind(a.access_token_ttl)
        .bind(a.tokens_valid_after_ms)
        .bind(a.created_at)
        .bind(a.updated_at)
        .bind(a.version)
        .bind(a.secret_created_at)
        .bind(a.prev_secret_created_at)
        .bind(a.expires_at)
        .bind(a.kind.as_str())
        .bind(to_json_list(&a.redirect_uris))
        .bind(to_json_list(&a.post_logout_redirect_uris))
        .bind(to_json_list(&a.grant_types))
        .bind(&a.enrollment_id)
        .bind(&a.registration_digest)
        .bind(a.registration_digest_version)
        .execute(&mut *$tx)
        .await
        .map_err(conflict("agent id"))?;
    }};
}

/// Takes the organization's write lock and counts its live clients of `$kind`: `true` when
/// there are fewer than `$max` (in an [`on_db!`] body, inside transaction `$tx`).
macro_rules! below_max {
    ($tx:expr, $org_id:expr, $kind:expr, $max:expr) => {{
        // A write first: PostgreSQL locks the organization's row, SQLite takes its one
        // write lock, so the count below cannot change before this commits.
        sqlx::query("UPDATE orgs SET updated_at = updated_at WHERE id = $1")
            .bind($org_id)
            .execute(&mut *$tx)
            .await
            .map_err(db_err)?;
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM agents WHERE org_id = $1 \
             AND deleted_at IS NULL AND status <> 'revoked' AND kind = $2",
        )
        .bind($org_id)
        .bind($kind)
        .fetch_one(&mut *$tx)
        .await
        .map_err(db_err)?;
        live < $max
    }};
}

#[async_trait]
impl AgentStore for Db {
    async fn create_within(
        &self,
        a: &AgentRecord,
        event: &Event,
        max_live: Option<i64>,
    ) -> StorageResult<bool> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(a.org_id.as_str())).await?;
            if let Some(max) = max_live
                && !below_max!(tx, a.org_id.as_str(), a.kind.as_str(), max)
            {
                return Ok(false);
            }
            insert_agent!(tx, a);
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(true)
        })
    }

    async fn enroll(
        &self,
        a: &AgentRecord,
        event: &Event,
        max_live: Option<i64>,
        now: i64,
    ) -> StorageResult<Result<(), super::EnrollRefusal>> {
        use super::EnrollRefusal;
        let Some(token) = a.enrollment_id.as_deref() else {
            return Ok(Err(EnrollRefusal::Unknown));
        };
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(a.org_id.as_str())).await?;
            // The organization's lock first (as every creation takes it), then the token's row.
            if let Some(max) = max_live
                && !below_max!(tx, a.org_id.as_str(), a.kind.as_str(), max)
            {
                return Ok(Err(EnrollRefusal::MaxAgents));
            }
            let n = sqlx::query(
                "UPDATE enrollment_tokens SET uses = uses + 1 WHERE org_id = $1 AND id = $2 \
                 AND revoked_at IS NULL AND expires_at > $3 AND uses < max_uses",
            )
            .bind(a.org_id.as_str())
            .bind(token)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n == 0 {
                let row: Option<(Option<i64>, i64, i64, i64)> = sqlx::query_as(
                    "SELECT revoked_at, expires_at, uses, max_uses FROM enrollment_tokens \
                     WHERE org_id = $1 AND id = $2",
                )
                .bind(a.org_id.as_str())
                .bind(token)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                return Ok(Err(match row {
                    None => EnrollRefusal::Unknown,
                    Some((Some(_), ..)) => EnrollRefusal::Revoked,
                    Some((None, exp, ..)) if exp <= now => EnrollRefusal::Expired,
                    Some(_) => EnrollRefusal::Exhausted,
                }));
            }
            insert_agent!(tx, a);
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(Ok(()))
        })
    }

    async fn get(&self, org_id: &str, id: &str) -> StorageResult<Option<AgentRecord>> {
        let row: Option<AgentRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM agents WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn list_filtered(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
        f: &AgentFilter,
    ) -> StorageResult<Vec<AgentRecord>> {
        let name = f.name_contains.as_deref().map(contains_pattern);
        let rows: Vec<AgentRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM agents WHERE org_id = $1 AND deleted_at IS NULL AND id > $2 \
                 AND ($4 IS NULL OR status = $4) \
                 AND ($5 IS NULL OR (expires_at IS NOT NULL AND expires_at < $5)) \
                 AND ($6 IS NULL OR LOWER(name) LIKE $6 ESCAPE '\\') \
                 AND ($7 IS NULL OR kind = $7) \
                 AND ($8 IS NULL OR enrollment_id = $8) \
                 ORDER BY id LIMIT $3"
            ))
            .bind(org_id)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .bind(f.status.map(AgentStatus::as_str))
            .bind(f.expiring_before)
            .bind(name.as_deref())
            .bind(f.kind.map(ClientKind::as_str))
            .bind(f.enrollment_id.as_deref())
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn count_live(&self, org_id: &str) -> StorageResult<i64> {
        on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM agents WHERE org_id = $1 \
                 AND deleted_at IS NULL AND status <> 'revoked'",
            )
            .bind(org_id)
            .fetch_one(&mut *c)
            .await
            .map_err(db_err)
        })
    }

    async fn update(&self, a: &AgentRecord, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(a.org_id.as_str())).await?;
            let n = sqlx::query(
                "UPDATE agents SET name = $3, description = $4, scopes = $5, status = $6, \
                 auth_method = $7, secret_digest = $8, secret_digest_version = $9, \
                 prev_secret_digest = $10, prev_secret_version = $11, \
                 prev_secret_expires_at = $12, jwks = $13, jwks_uri = $14, \
                 access_token_alg = $15, id_token_alg = $16, access_token_ttl = $17, \
                 tokens_valid_after_ms = $18, updated_at = $19, secret_created_at = $21, \
                 prev_secret_created_at = $22, expires_at = $23, redirect_uris = $24, \
                 post_logout_redirect_uris = $25, grant_types = $26, version = version + 1 \
                 WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL AND status <> 'revoked' \
                 AND version = $20",
            )
            .bind(a.org_id.as_str())
            .bind(a.id.as_str())
            .bind(&a.name)
            .bind(&a.description)
            .bind(to_json_list(&a.scopes))
            .bind(a.status.as_str())
            .bind(a.auth_method.as_str())
            .bind(&a.secret_digest)
            .bind(a.secret_digest_version)
            .bind(&a.prev_secret_digest)
            .bind(a.prev_secret_version)
            .bind(a.prev_secret_expires_at)
            .bind(a.jwks.as_ref().map(Value::to_string))
            .bind(&a.jwks_uri)
            .bind(a.access_token_alg.as_str())
            .bind(a.id_token_alg.as_str())
            .bind(a.access_token_ttl)
            .bind(a.tokens_valid_after_ms)
            .bind(a.updated_at)
            .bind(a.version)
            .bind(a.secret_created_at)
            .bind(a.prev_secret_created_at)
            .bind(a.expires_at)
            .bind(to_json_list(&a.redirect_uris))
            .bind(to_json_list(&a.post_logout_redirect_uris))
            .bind(to_json_list(&a.grant_types))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n == 0 {
                let live: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM agents WHERE org_id = $1 AND id = $2 \
                     AND deleted_at IS NULL AND status <> 'revoked'",
                )
                .bind(a.org_id.as_str())
                .bind(a.id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
                return Err(if live == 0 {
                    StorageError::NotFound
                } else {
                    StorageError::Stale
                });
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn delete(&self, org_id: &str, id: &str, at: i64, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query(
                "UPDATE agents SET deleted_at = $1, updated_at = $1, status = 'revoked', \
                 tokens_valid_after_ms = $2, version = version + 1 WHERE org_id = $3 AND id = $4 AND deleted_at IS NULL",
            )
            .bind(at)
            .bind(at.saturating_mul(1000))
            .bind(org_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n == 0 {
                return Err(StorageError::NotFound);
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn card(&self, org_id: &str, agent_id: &str) -> StorageResult<Option<(String, i64)>> {
        on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(
                "SELECT c.card, c.updated_at FROM agent_cards c \
                 JOIN agents a ON a.org_id = c.org_id AND a.id = c.agent_id \
                 WHERE c.org_id = $1 AND c.agent_id = $2 AND a.deleted_at IS NULL",
            )
            .bind(org_id)
            .bind(agent_id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)
        })
    }

    async fn set_card(
        &self,
        org_id: &str,
        agent_id: &str,
        card: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM agents WHERE org_id = $1 AND id = $2 \
                 AND deleted_at IS NULL AND status <> 'revoked'",
            )
            .bind(org_id)
            .bind(agent_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if live == 0 {
                return Err(StorageError::NotFound);
            }
            sqlx::query(
                "INSERT INTO agent_cards (org_id, agent_id, card, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, agent_id) \
                 DO UPDATE SET card = excluded.card, updated_at = excluded.updated_at",
            )
            .bind(org_id)
            .bind(agent_id)
            .bind(card)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "UPDATE agents SET updated_at = $1, version = version + 1 \
                 WHERE org_id = $2 AND id = $3",
            )
            .bind(at)
            .bind(org_id)
            .bind(agent_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{OrgRecord, OrgStore};
    use super::*;

    fn agent(org_id: &OrgId) -> AgentRecord {
        AgentRecord {
            org_id: org_id.clone(),
            id: AgentId::generate(1_767_225_600_000),
            name: "a".into(),
            description: None,
            did: "did:web:idp.example:orgs:x:agents:a".into(),
            scopes: vec!["read".into(), "write:all".into()],
            status: AgentStatus::Active,
            auth_method: AuthMethod::PrivateKeyJwt,
            secret_digest: None,
            secret_digest_version: None,
            prev_secret_digest: None,
            prev_secret_version: None,
            prev_secret_expires_at: None,
            secret_created_at: None,
            prev_secret_created_at: None,
            expires_at: Some(1_767_225_600),
            jwks: Some(serde_json::json!({"keys": [{"kty": "OKP"}]})),
            jwks_uri: None,
            access_token_alg: Alg::EdDSA,
            id_token_alg: Alg::RS256,
            access_token_ttl: Some(60),
            tokens_valid_after_ms: 0,
            created_at: 1,
            updated_at: 1,
            version: 1,
            kind: ClientKind::App,
            redirect_uris: vec!["https://app.example/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec!["authorization_code".into()],
            enrollment_id: None,
            registration_digest: Some(vec![1, 2, 3]),
            registration_digest_version: Some(1),
        }
    }

    async fn with_org(t: &TempDb) -> OrgRecord {
        let org = OrgRecord::sample("agents");
        OrgStore::create(&t.db, &org, &[], &event(None, "org.created", "o", 0))
            .await
            .unwrap();
        org
    }

    #[tokio::test]
    async fn typed_fields_round_trip_and_revocation_is_final() {
        let t = temp_db().await;
        let org = with_org(&t).await;
        let agents: &dyn AgentStore = &t.db;
        let a = agent(&org.id);
        agents
            .create(&a, &event(None, "agent.created", &a.id, 1))
            .await
            .unwrap();
        assert_eq!(agents.get(&org.id, &a.id).await.unwrap(), Some(a.clone()));
        let e = agents
            .create(&a, &event(None, "agent.created", &a.id, 2))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StorageError::Conflict { what: "agent id" }),
            "{e:?}"
        );

        let mut revoked = a.clone();
        revoked.status = AgentStatus::Revoked;
        agents
            .update(&revoked, &event(None, "agent.revoked", &a.id, 3))
            .await
            .unwrap();
        let mut revive = revoked.clone();
        revive.status = AgentStatus::Active;
        assert!(matches!(
            agents
                .update(&revive, &event(None, "agent.updated", &a.id, 4))
                .await,
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            agents
                .set_card(
                    &org.id,
                    &a.id,
                    "{}",
                    5,
                    &event(None, "agent.card_updated", &a.id, 5)
                )
                .await,
            Err(StorageError::NotFound)
        ));
    }

    #[tokio::test]
    async fn cards_are_set_read_and_gone_with_the_agent() {
        let t = temp_db().await;
        let org = with_org(&t).await;
        let agents: &dyn AgentStore = &t.db;
        let a = agent(&org.id);
        agents
            .create(&a, &event(None, "agent.created", &a.id, 1))
            .await
            .unwrap();
        assert_eq!(agents.card(&org.id, &a.id).await.unwrap(), None);
        for (n, card) in [r#"{"v":1}"#, r#"{"v":2}"#].into_iter().enumerate() {
            let at = 10 + n as i64;
            agents
                .set_card(
                    &org.id,
                    &a.id,
                    card,
                    at,
                    &event(None, "agent.card_updated", &a.id, at),
                )
                .await
                .unwrap();
        }
        assert_eq!(
            agents.card(&org.id, &a.id).await.unwrap(),
            Some((r#"{"v":2}"#.to_owned(), 11))
        );
        assert_eq!(
            agents
                .get(&org.id, &a.id)
                .await
                .unwrap()
                .unwrap()
                .updated_at,
            11
        );
        agents
            .delete(&org.id, &a.id, 20, &event(None, "agent.deleted", &a.id, 20))
            .await
            .unwrap();
        assert_eq!(agents.card(&org.id, &a.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_unknown_stored_value_is_an_error_not_a_panic() {
        let t = temp_db().await;
        let org = with_org(&t).await;
        let agents: &dyn AgentStore = &t.db;
        let a = agent(&org.id);
        agents
            .create(&a, &event(None, "agent.created", &a.id, 1))
            .await
            .unwrap();
        let Db::Sqlite(pool) = &t.db else {
            unreachable!("temp_db is SQLite")
        };
        let set = |column: &str, value: &str| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE agents SET {column} = '{value}'"
            )))
        };
        for (column, bad, good) in [
            ("status", "paused", "active"),
            ("auth_method", "tls_client_auth", "private_key_jwt"),
            ("scopes", "read write", "[]"),
            ("jwks", "{", "{}"),
            ("access_token_alg", "none", "ES256"),
            ("id_token_alg", "HS256", "RS256"),
        ] {
            set(column, bad).execute(pool).await.unwrap();
            let e = agents.get(&org.id, &a.id).await.unwrap_err();
            assert!(
                matches!(&e, StorageError::Other(m) if m.contains(a.id.as_str())),
                "{column}: {e:?}"
            );
            set(column, good).execute(pool).await.unwrap();
            assert!(agents.get(&org.id, &a.id).await.is_ok(), "{column}");
        }
    }
}
