//! Delegation grants (`delegations`, a tenant table): a person lets an agent act for them with
//! at most some scopes. Creating and revoking one write their outbox event in the same
//! transaction.

use async_trait::async_trait;

use super::outbox::{self, Event};
use super::{Db, Scope, ScopedPool, StorageResult, db_err, from_json, on_db, to_json_list};
use crate::model::OrgId;

#[derive(Debug, Clone, PartialEq)]
pub struct DelegationRecord {
    pub org_id: OrgId,
    pub id: String,
    pub user_id: String,
    pub agent_id: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    /// `consent` (the person, in the code flow), or the admin principal's actor name.
    pub created_by: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl DelegationRecord {
    /// Not revoked and not expired at `now`.
    pub fn in_force(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

#[async_trait]
pub trait DelegationStore: Send + Sync + 'static {
    async fn create_delegation(&self, d: &DelegationRecord, event: &Event) -> StorageResult<()>;
    async fn delegation(&self, org_id: &str, id: &str) -> StorageResult<Option<DelegationRecord>>;
    /// The person's grants, newest first (at most 500), revoked ones too.
    async fn user_delegations(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> StorageResult<Vec<DelegationRecord>>;
    /// The person's grants to the agent in force at `now`, newest first.
    async fn delegations_in_force(
        &self,
        org_id: &str,
        user_id: &str,
        agent_id: &str,
        now: i64,
    ) -> StorageResult<Vec<DelegationRecord>>;
    /// Revokes a grant not revoked yet; `false` if there was none.
    async fn revoke_delegation(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<bool>;
}

#[derive(sqlx::FromRow)]
struct Row {
    org_id: String,
    id: String,
    user_id: String,
    agent_id: String,
    scopes: String,
    created_at: i64,
    created_by: String,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<Row> for DelegationRecord {
    type Error = super::StorageError;
    fn try_from(r: Row) -> StorageResult<Self> {
        Ok(DelegationRecord {
            scopes: from_json(&r.scopes, "scopes")?,
            org_id: r.org_id.into(),
            id: r.id,
            user_id: r.user_id,
            agent_id: r.agent_id,
            created_at: r.created_at,
            created_by: r.created_by,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
}

macro_rules! columns {
    () => {
        "org_id, id, user_id, agent_id, scopes, created_at, created_by, expires_at, revoked_at"
    };
}

#[async_trait]
impl DelegationStore for Db {
    async fn create_delegation(&self, d: &DelegationRecord, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(d.org_id.as_str())).await?;
            sqlx::query(concat!(
                "INSERT INTO delegations (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(d.org_id.as_str())
            .bind(&d.id)
            .bind(&d.user_id)
            .bind(&d.agent_id)
            .bind(to_json_list(&d.scopes))
            .bind(d.created_at)
            .bind(&d.created_by)
            .bind(d.expires_at)
            .bind(d.revoked_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn delegation(&self, org_id: &str, id: &str) -> StorageResult<Option<DelegationRecord>> {
        let row: Option<Row> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM delegations WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn user_delegations(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> StorageResult<Vec<DelegationRecord>> {
        let rows: Vec<Row> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM delegations WHERE org_id = $1 AND user_id = $2 \
                 ORDER BY created_at DESC, id DESC LIMIT 500"
            ))
            .bind(org_id)
            .bind(user_id)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn delegations_in_force(
        &self,
        org_id: &str,
        user_id: &str,
        agent_id: &str,
        now: i64,
    ) -> StorageResult<Vec<DelegationRecord>> {
        let rows: Vec<Row> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM delegations WHERE org_id = $1 AND user_id = $2 AND agent_id = $3 \
                 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4) \
                 ORDER BY created_at DESC, id DESC LIMIT 100"
            ))
            .bind(org_id)
            .bind(user_id)
            .bind(agent_id)
            .bind(now)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn revoke_delegation(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<bool> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query(
                "UPDATE delegations SET revoked_at = $3 WHERE org_id = $1 AND id = $2 \
                 AND revoked_at IS NULL",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n > 0 {
                outbox::append(&mut tx, event).await?;
            }
            tx.commit().await.map_err(db_err)?;
            Ok(n > 0)
        })
    }
}
