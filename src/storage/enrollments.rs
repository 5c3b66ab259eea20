//! Enrollment tokens (`enrollment_tokens`): RFC 7591 initial access tokens an admin hands to agent
//! runtimes. Only a keyed digest of a token is stored. Using one (counting it against
//! `max_uses`, within its expiry, unrevoked) happens in the transaction that creates the agent:
//! [`super::AgentStore::enroll`].

use async_trait::async_trait;

use super::outbox::{self, Event};
use super::{
    Db, Scope, ScopedPool, StorageError, StorageResult, conflict, db_err, from_json, on_db,
    to_json_list,
};
use crate::model::OrgId;

/// An enrollment token as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentRecord {
    pub org_id: OrgId,
    /// 32 lowercase hex digits (inside the token itself).
    pub id: String,
    /// The name prefix of the agents it enrolls (may be empty).
    pub name: String,
    pub digest: Vec<u8>,
    pub digest_version: i64,
    /// The ceiling of the enrolled agents' scopes.
    pub scopes: Vec<String>,
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: i64,
    pub created_at: i64,
    /// `platform`, `admin_token:ID` or `api_key:ID`.
    pub created_by: String,
    pub revoked_at: Option<i64>,
}

/// Why a registration could not use an enrollment token (nothing was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollRefusal {
    /// No such token in the organization.
    Unknown,
    Revoked,
    Expired,
    /// `uses` reached `max_uses`.
    Exhausted,
    /// The organization has its limit of live agents.
    MaxAgents,
}

#[async_trait]
pub trait EnrollmentStore: Send + Sync + 'static {
    /// `Conflict { what: "enrollment token id" }` if the id is taken.
    async fn create_enrollment(&self, rec: &EnrollmentRecord, event: &Event) -> StorageResult<()>;
    async fn enrollment(&self, org_id: &str, id: &str) -> StorageResult<Option<EnrollmentRecord>>;
    /// The organization's tokens (revoked and expired ones too) ordered by id, after the cursor.
    async fn enrollments(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<EnrollmentRecord>>;
    /// Sets `revoked_at` (kept when already revoked) and answers the record; `NotFound` when
    /// there is no such token.
    async fn revoke_enrollment(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<EnrollmentRecord>;
}

#[derive(sqlx::FromRow)]
struct EnrollmentRow {
    org_id: String,
    id: String,
    name: String,
    digest: Vec<u8>,
    digest_version: i64,
    scopes: String,
    max_uses: i64,
    uses: i64,
    expires_at: i64,
    created_at: i64,
    created_by: String,
    revoked_at: Option<i64>,
}

impl TryFrom<EnrollmentRow> for EnrollmentRecord {
    type Error = StorageError;
    fn try_from(r: EnrollmentRow) -> StorageResult<Self> {
        Ok(EnrollmentRecord {
            scopes: from_json(&r.scopes, "scopes")
                .map_err(|e| StorageError::Other(format!("enrollment token {}: {e}", r.id)))?,
            org_id: r.org_id.into(),
            id: r.id,
            name: r.name,
            digest: r.digest,
            digest_version: r.digest_version,
            max_uses: r.max_uses,
            uses: r.uses,
            expires_at: r.expires_at,
            created_at: r.created_at,
            created_by: r.created_by,
            revoked_at: r.revoked_at,
        })
    }
}

/// The selected columns, in `EnrollmentRow` order (a literal, so statements stay `&'static str`).
macro_rules! columns {
    () => {
        "org_id, id, name, digest, digest_version, scopes, max_uses, uses, expires_at, \
         created_at, created_by, revoked_at"
    };
}

#[async_trait]
impl EnrollmentStore for Db {
    async fn create_enrollment(&self, r: &EnrollmentRecord, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(r.org_id.as_str())).await?;
            sqlx::query(
                "INSERT INTO enrollment_tokens (org_id, id, name, digest, digest_version, scopes, \
                 max_uses, uses, expires_at, created_at, created_by, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(r.org_id.as_str())
            .bind(&r.id)
            .bind(&r.name)
            .bind(&r.digest)
            .bind(r.digest_version)
            .bind(to_json_list(&r.scopes))
            .bind(r.max_uses)
            .bind(r.uses)
            .bind(r.expires_at)
            .bind(r.created_at)
            .bind(&r.created_by)
            .bind(r.revoked_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict("enrollment token id"))?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn enrollment(&self, org_id: &str, id: &str) -> StorageResult<Option<EnrollmentRecord>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM enrollment_tokens WHERE org_id = $1 AND id = $2"
        );
        let row: Option<EnrollmentRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(sql)
                .bind(org_id)
                .bind(id)
                .fetch_optional(&mut *c)
                .await
                .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn enrollments(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<EnrollmentRecord>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM enrollment_tokens WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<EnrollmentRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(sql)
                .bind(org_id)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&mut *c)
                .await
                .map_err(db_err)?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn revoke_enrollment(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<EnrollmentRecord> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM enrollment_tokens WHERE org_id = $1 AND id = $2"
        );
        let row: EnrollmentRow = on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query(
                "UPDATE enrollment_tokens SET revoked_at = $3 \
                 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            let row: Option<EnrollmentRow> = sqlx::query_as(sql)
                .bind(org_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            let Some(row) = row else {
                return Err(StorageError::NotFound);
            };
            if n > 0 {
                outbox::append(&mut tx, event).await?;
            }
            tx.commit().await.map_err(db_err)?;
            row
        });
        row.try_into()
    }
}
