//! The two SQL backends. The statements are portable (`$N` placeholders work in both SQLite and
//! PostgreSQL; upserts use `ON CONFLICT`), so one implementation is instantiated for each pool type
//! by the `sql_store!` macro instead of being written twice. Dialect differences live in the
//! migrations (`migrations/sqlite`, `migrations/postgres`) and in pool set-up.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::*;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

fn map_err(e: sqlx::Error) -> StorageError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StorageError::Conflict(db.message().to_owned())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StorageError::Unavailable(e.to_string()),
        other => StorageError::Other(other.to_string()),
    }
}

/// Opens the database named by `url` (`sqlite:` or `postgres:`).
pub async fn open(url: &str) -> StorageResult<DynStore> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(open_postgres(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(open_sqlite(url).await?))
    } else {
        Err(StorageError::Other(
            "database URL must start with sqlite: or postgres:".into(),
        ))
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
}

pub struct PgStore {
    pool: PgPool,
}

pub async fn open_sqlite(url: &str) -> StorageResult<SqliteStore> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(map_err)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
        .map_err(map_err)?;
    Ok(SqliteStore { pool })
}

pub async fn open_postgres(url: &str) -> StorageResult<PgStore> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(map_err)?;
    Ok(PgStore { pool })
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: String,
    slug: String,
    name: String,
    issuer: String,
    did: String,
    dek_wrapped: Vec<u8>,
    dek_mk_version: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<OrgRow> for OrgRecord {
    fn from(r: OrgRow) -> Self {
        OrgRecord {
            id: r.id,
            slug: r.slug,
            name: r.name,
            issuer: r.issuer,
            did: r.did,
            dek_wrapped: r.dek_wrapped,
            dek_mk_version: r.dek_mk_version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    org_id: String,
    kid: String,
    alg: String,
    public_jwk: String,
    private_enc: Vec<u8>,
    created_at: i64,
    activates_at: i64,
    retires_at: Option<i64>,
    removed_at: Option<i64>,
}

impl From<KeyRow> for KeyRecord {
    fn from(r: KeyRow) -> Self {
        KeyRecord {
            org_id: r.org_id,
            kid: r.kid,
            alg: r.alg,
            public_jwk: r.public_jwk,
            private_enc: r.private_enc,
            created_at: r.created_at,
            activates_at: r.activates_at,
            retires_at: r.retires_at,
            removed_at: r.removed_at,
        }
    }
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
}

impl From<AgentRow> for AgentRecord {
    fn from(r: AgentRow) -> Self {
        AgentRecord {
            org_id: r.org_id,
            id: r.id,
            name: r.name,
            description: r.description,
            did: r.did,
            scopes: r.scopes,
            status: r.status,
            auth_method: r.auth_method,
            secret_digest: r.secret_digest,
            secret_digest_version: r.secret_digest_version,
            prev_secret_digest: r.prev_secret_digest,
            prev_secret_version: r.prev_secret_version,
            prev_secret_expires_at: r.prev_secret_expires_at,
            jwks: r.jwks,
            jwks_uri: r.jwks_uri,
            access_token_alg: r.access_token_alg,
            id_token_alg: r.id_token_alg,
            access_token_ttl: r.access_token_ttl,
            tokens_valid_after_ms: r.tokens_valid_after_ms,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct PartnerRow {
    org_id: String,
    id: String,
    issuer: String,
    name: Option<String>,
    jwks_uri: Option<String>,
    jwks: Option<String>,
    did: Option<String>,
    allowed_scopes: String,
    allowed_audiences: String,
    max_assertion_lifetime: i64,
    claim_mapping: String,
    enabled: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<PartnerRow> for PartnerRecord {
    fn from(r: PartnerRow) -> Self {
        PartnerRecord {
            org_id: r.org_id,
            id: r.id,
            issuer: r.issuer,
            name: r.name,
            jwks_uri: r.jwks_uri,
            jwks: r.jwks,
            did: r.did,
            allowed_scopes: r.allowed_scopes,
            allowed_audiences: r.allowed_audiences,
            max_assertion_lifetime: r.max_assertion_lifetime,
            claim_mapping: r.claim_mapping,
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const PARTNER_COLS: &str = "org_id, id, issuer, name, jwks_uri, jwks, did, allowed_scopes, allowed_audiences, \
     max_assertion_lifetime, claim_mapping, enabled, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    org_id: Option<String>,
    kind: String,
    subject: String,
    data: String,
    created_at: i64,
}

const ORG_COLS: &str =
    "id, slug, name, issuer, did, dek_wrapped, dek_mk_version, created_at, updated_at";
const AGENT_COLS: &str = "org_id, id, name, description, did, scopes, status, auth_method, secret_digest, \
     secret_digest_version, prev_secret_digest, prev_secret_version, prev_secret_expires_at, jwks, jwks_uri, \
     access_token_alg, id_token_alg, access_token_ttl, tokens_valid_after_ms, created_at, updated_at";
const KEY_COLS: &str =
    "org_id, kid, alg, public_jwk, private_enc, created_at, activates_at, retires_at, removed_at";

/// Builds a `'static` SQL string once (sqlx 0.9 takes only static or explicitly-audited SQL).
macro_rules! static_sql {
    ($($part:expr),+ $(,)?) => {{
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| [$($part),+].concat());
        sqlx::AssertSqlSafe(SQL.as_str())
    }};
}

macro_rules! insert_event {
    ($tx:expr, $ev:expr) => {
        sqlx::query("INSERT INTO events (org_id, kind, subject, data, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind($ev.org_id.as_deref())
            .bind($ev.kind)
            .bind(&$ev.subject)
            .bind($ev.data.to_string())
            .bind($ev.at)
            .execute(&mut *$tx)
            .await
            .map_err(map_err)?
    };
}

macro_rules! sql_store {
    ($store:ident, $backend:literal, $migrator:ident) => {
        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> StorageResult<()> {
                $migrator.run(&self.pool).await.map_err(|e| StorageError::Other(format!("migration failed: {e}")))
            }

            async fn ping(&self) -> StorageResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err)?;
                Ok(())
            }

            async fn meta_get(&self, key: &str) -> StorageResult<Option<String>> {
                sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)
            }

            async fn meta_set(&self, key: &str, value: &str) -> StorageResult<()> {
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn org_create(&self, org: &OrgRecord, keys: &[KeyRecord], event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(static_sql!("INSERT INTO orgs (", ORG_COLS, ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
                    .bind(&org.id)
                    .bind(&org.slug)
                    .bind(&org.name)
                    .bind(&org.issuer)
                    .bind(&org.did)
                    .bind(&org.dek_wrapped)
                    .bind(org.dek_mk_version)
                    .bind(org.created_at)
                    .bind(org.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                for k in keys {
                    insert_key(&mut tx, k).await?;
                }
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn org_by_slug(&self, slug: &str) -> StorageResult<Option<OrgRecord>> {
                let row = sqlx::query_as::<_, OrgRow>(static_sql!(
                    "SELECT ", ORG_COLS, " FROM orgs WHERE slug = $1 AND deleted_at IS NULL"
                ))
                .bind(slug)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(Into::into))
            }

            async fn org_list(&self, after: Option<&str>, limit: i64) -> StorageResult<Vec<OrgRecord>> {
                let rows = sqlx::query_as::<_, OrgRow>(static_sql!(
                    "SELECT ", ORG_COLS, " FROM orgs WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT $2"
                ))
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn org_all_ids(&self) -> StorageResult<Vec<(String, String)>> {
                sqlx::query_as::<_, (String, String)>("SELECT id, slug FROM orgs WHERE deleted_at IS NULL ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)
            }

            async fn org_update_name(&self, org_id: &str, name: &str, at: i64, event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let n = sqlx::query("UPDATE orgs SET name = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL")
                    .bind(name)
                    .bind(at)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                if n == 0 {
                    return Err(StorageError::NotFound);
                }
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn org_delete(&self, org_id: &str, at: i64, event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let n = sqlx::query("UPDATE orgs SET deleted_at = $1, updated_at = $1 WHERE id = $2 AND deleted_at IS NULL")
                    .bind(at)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                if n == 0 {
                    return Err(StorageError::NotFound);
                }
                sqlx::query("UPDATE agents SET deleted_at = $1, status = 'revoked' WHERE org_id = $2 AND deleted_at IS NULL")
                    .bind(at)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                sqlx::query("UPDATE signing_keys SET removed_at = $1 WHERE org_id = $2 AND removed_at IS NULL")
                    .bind(at)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn org_rebase(&self, moves: &[(String, String, String)], event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                for (id, issuer, did) in moves {
                    sqlx::query("UPDATE orgs SET issuer = $1, did = $2 WHERE id = $3")
                        .bind(issuer)
                        .bind(did)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn keys_for_org(&self, org_id: &str, now: i64) -> StorageResult<Vec<KeyRecord>> {
                let rows = sqlx::query_as::<_, KeyRow>(static_sql!(
                    "SELECT ", KEY_COLS, " FROM signing_keys WHERE org_id = $1 AND (removed_at IS NULL OR removed_at > $2) \
                     ORDER BY activates_at, kid"
                ))
                .bind(org_id)
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn keys_rotate(
                &self,
                org_id: &str,
                new_keys: &[KeyRecord],
                retire: &[(String, i64, i64)],
                event: &Event,
            ) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                for (kid, retires_at, removed_at) in retire {
                    sqlx::query("UPDATE signing_keys SET retires_at = $1, removed_at = $2 WHERE org_id = $3 AND kid = $4")
                        .bind(retires_at)
                        .bind(removed_at)
                        .bind(org_id)
                        .bind(kid)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                for k in new_keys {
                    insert_key(&mut tx, k).await?;
                }
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn agent_create(&self, a: &AgentRecord, event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(static_sql!(
                    "INSERT INTO agents (", AGENT_COLS, ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                     $13, $14, $15, $16, $17, $18, $19, $20, $21)"
                ))
                .bind(&a.org_id)
                .bind(&a.id)
                .bind(&a.name)
                .bind(&a.description)
                .bind(&a.did)
                .bind(&a.scopes)
                .bind(&a.status)
                .bind(&a.auth_method)
                .bind(&a.secret_digest)
                .bind(a.secret_digest_version)
                .bind(&a.prev_secret_digest)
                .bind(a.prev_secret_version)
                .bind(a.prev_secret_expires_at)
                .bind(&a.jwks)
                .bind(&a.jwks_uri)
                .bind(&a.access_token_alg)
                .bind(&a.id_token_alg)
                .bind(a.access_token_ttl)
                .bind(a.tokens_valid_after_ms)
                .bind(a.created_at)
                .bind(a.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn agent_get(&self, org_id: &str, id: &str) -> StorageResult<Option<AgentRecord>> {
                let row = sqlx::query_as::<_, AgentRow>(static_sql!(
                    "SELECT ", AGENT_COLS, " FROM agents WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
                ))
                .bind(org_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(Into::into))
            }

            async fn agent_list(&self, org_id: &str, after: Option<&str>, limit: i64) -> StorageResult<Vec<AgentRecord>> {
                let rows = sqlx::query_as::<_, AgentRow>(static_sql!(
                    "SELECT ", AGENT_COLS, " FROM agents WHERE org_id = $1 AND deleted_at IS NULL AND id > $2 \
                     ORDER BY id LIMIT $3"
                ))
                .bind(org_id)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn agent_update(&self, a: &AgentRecord, event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let n = sqlx::query(
                    "UPDATE agents SET name = $3, description = $4, scopes = $5, status = $6, auth_method = $7, \
                     secret_digest = $8, secret_digest_version = $9, prev_secret_digest = $10, prev_secret_version = $11, \
                     prev_secret_expires_at = $12, jwks = $13, jwks_uri = $14, access_token_alg = $15, id_token_alg = $16, \
                     access_token_ttl = $17, tokens_valid_after_ms = $18, updated_at = $19 \
                     WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL AND status <> 'revoked'",
                )
                .bind(&a.org_id)
                .bind(&a.id)
                .bind(&a.name)
                .bind(&a.description)
                .bind(&a.scopes)
                .bind(&a.status)
                .bind(&a.auth_method)
                .bind(&a.secret_digest)
                .bind(a.secret_digest_version)
                .bind(&a.prev_secret_digest)
                .bind(a.prev_secret_version)
                .bind(a.prev_secret_expires_at)
                .bind(&a.jwks)
                .bind(&a.jwks_uri)
                .bind(&a.access_token_alg)
                .bind(&a.id_token_alg)
                .bind(a.access_token_ttl)
                .bind(a.tokens_valid_after_ms)
                .bind(a.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if n == 0 {
                    return Err(StorageError::NotFound);
                }
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn agent_delete(&self, org_id: &str, id: &str, at: i64, event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let n = sqlx::query(
                    "UPDATE agents SET deleted_at = $1, updated_at = $1, status = 'revoked', tokens_valid_after_ms = $2 \
                     WHERE org_id = $3 AND id = $4 AND deleted_at IS NULL",
                )
                .bind(at)
                .bind(at.saturating_mul(1000))
                .bind(org_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if n == 0 {
                    return Err(StorageError::NotFound);
                }
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn agent_card_get(&self, org_id: &str, agent_id: &str) -> StorageResult<Option<(String, i64)>> {
                sqlx::query_as::<_, (String, i64)>(
                    "SELECT c.card, c.updated_at FROM agent_cards c JOIN agents a ON a.org_id = c.org_id AND a.id = c.agent_id \
                     WHERE c.org_id = $1 AND c.agent_id = $2 AND a.deleted_at IS NULL",
                )
                .bind(org_id)
                .bind(agent_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)
            }

            async fn agent_card_set(&self, org_id: &str, agent_id: &str, card: &str, at: i64, event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let live = sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM agents WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL AND status <> 'revoked'",
                )
                .bind(org_id)
                .bind(agent_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
                if live == 0 {
                    return Err(StorageError::NotFound);
                }
                sqlx::query(
                    "INSERT INTO agent_cards (org_id, agent_id, card, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (org_id, agent_id) DO UPDATE SET card = excluded.card, updated_at = excluded.updated_at",
                )
                .bind(org_id)
                .bind(agent_id)
                .bind(card)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                sqlx::query("UPDATE agents SET updated_at = $1 WHERE org_id = $2 AND id = $3")
                    .bind(at)
                    .bind(org_id)
                    .bind(agent_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn partner_create(&self, p: &PartnerRecord, event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(static_sql!(
                    "INSERT INTO partners (", PARTNER_COLS, ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                ))
                .bind(&p.org_id)
                .bind(&p.id)
                .bind(&p.issuer)
                .bind(&p.name)
                .bind(&p.jwks_uri)
                .bind(&p.jwks)
                .bind(&p.did)
                .bind(&p.allowed_scopes)
                .bind(&p.allowed_audiences)
                .bind(p.max_assertion_lifetime)
                .bind(&p.claim_mapping)
                .bind(p.enabled)
                .bind(p.created_at)
                .bind(p.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn partner_get(&self, org_id: &str, id: &str) -> StorageResult<Option<PartnerRecord>> {
                let row = sqlx::query_as::<_, PartnerRow>(static_sql!("SELECT ", PARTNER_COLS, " FROM partners WHERE org_id = $1 AND id = $2"))
                    .bind(org_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(row.map(Into::into))
            }

            async fn partner_by_issuer(&self, org_id: &str, issuer: &str) -> StorageResult<Option<PartnerRecord>> {
                let row = sqlx::query_as::<_, PartnerRow>(static_sql!("SELECT ", PARTNER_COLS, " FROM partners WHERE org_id = $1 AND issuer = $2"))
                    .bind(org_id)
                    .bind(issuer)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(row.map(Into::into))
            }

            async fn partner_list(&self, org_id: &str, after: Option<&str>, limit: i64) -> StorageResult<Vec<PartnerRecord>> {
                let rows = sqlx::query_as::<_, PartnerRow>(static_sql!(
                    "SELECT ", PARTNER_COLS, " FROM partners WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                ))
                .bind(org_id)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn partner_update(&self, p: &PartnerRecord, event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let n = sqlx::query(
                    "UPDATE partners SET name = $3, jwks_uri = $4, jwks = $5, did = $6, allowed_scopes = $7, \
                     allowed_audiences = $8, max_assertion_lifetime = $9, claim_mapping = $10, enabled = $11, updated_at = $12 \
                     WHERE org_id = $1 AND id = $2",
                )
                .bind(&p.org_id)
                .bind(&p.id)
                .bind(&p.name)
                .bind(&p.jwks_uri)
                .bind(&p.jwks)
                .bind(&p.did)
                .bind(&p.allowed_scopes)
                .bind(&p.allowed_audiences)
                .bind(p.max_assertion_lifetime)
                .bind(&p.claim_mapping)
                .bind(p.enabled)
                .bind(p.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if n == 0 {
                    return Err(StorageError::NotFound);
                }
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn partner_delete(&self, org_id: &str, id: &str, event: &Event) -> StorageResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let n = sqlx::query("DELETE FROM partners WHERE org_id = $1 AND id = $2")
                    .bind(org_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                if n == 0 {
                    return Err(StorageError::NotFound);
                }
                insert_event!(tx, event);
                tx.commit().await.map_err(map_err)
            }

            async fn token_revoke(&self, org_id: &str, jti: &str, expires_at: i64) -> StorageResult<()> {
                sqlx::query(
                    "INSERT INTO revoked_tokens (org_id, jti, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (org_id, jti) DO NOTHING",
                )
                .bind(org_id)
                .bind(jti)
                .bind(expires_at)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn token_is_revoked(&self, org_id: &str, jti: &str) -> StorageResult<bool> {
                let n = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM revoked_tokens WHERE org_id = $1 AND jti = $2")
                    .bind(org_id)
                    .bind(jti)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(n > 0)
            }

            async fn marker_set_if_absent(&self, key: &str, expires_at: i64, now: i64) -> StorageResult<bool> {
                // One atomic statement: insert, or take over a marker that has already expired.
                let n = sqlx::query(
                    "INSERT INTO replay_markers (key, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE replay_markers.expires_at <= $3",
                )
                .bind(key)
                .bind(expires_at)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(n == 1)
            }

            async fn purge_expired(&self, now: i64) -> StorageResult<u64> {
                let a = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                let b = sqlx::query("DELETE FROM replay_markers WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                Ok(a + b)
            }

            async fn events_after(&self, after_id: i64, limit: i64) -> StorageResult<Vec<StoredEvent>> {
                let rows = sqlx::query_as::<_, EventRow>(
                    "SELECT id, org_id, kind, subject, data, created_at FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| StoredEvent {
                        id: r.id,
                        org_id: r.org_id,
                        kind: r.kind,
                        subject: r.subject,
                        data: r.data,
                        created_at: r.created_at,
                    })
                    .collect())
            }
        }
    };
}

macro_rules! insert_key_fn {
    ($db:ty) => {
        async fn insert_key(
            tx: &mut sqlx::Transaction<'_, $db>,
            k: &KeyRecord,
        ) -> StorageResult<()> {
            sqlx::query(static_sql!(
                "INSERT INTO signing_keys (",
                KEY_COLS,
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(&k.org_id)
            .bind(&k.kid)
            .bind(&k.alg)
            .bind(&k.public_jwk)
            .bind(&k.private_enc)
            .bind(k.created_at)
            .bind(k.activates_at)
            .bind(k.retires_at)
            .bind(k.removed_at)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
            Ok(())
        }
    };
}

mod sqlite_impl {
    use super::*;
    insert_key_fn!(sqlx::Sqlite);
    sql_store!(SqliteStore, "sqlite", SQLITE_MIGRATIONS);
}

mod postgres_impl {
    use super::*;
    insert_key_fn!(sqlx::Postgres);
    sql_store!(PgStore, "postgres", POSTGRES_MIGRATIONS);
}
