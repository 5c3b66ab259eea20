//! People's sign-in sessions (`sessions`, a tenant table). The cookie is the credential; only
//! its keyed digest is stored. A session ends when it is ended (sign-out, an admin, a password
//! change), when its absolute end passes, or when it has been idle longer than the
//! organization's idle timeout (decided by the caller from `last_seen_at`).

use async_trait::async_trait;

use super::{Db, Scope, ScopedPool, StorageResult, db_err, from_json, on_db, to_json_list};
use crate::model::OrgId;

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub org_id: OrgId,
    pub id: String,
    pub digest: Vec<u8>,
    pub digest_version: i64,
    pub user_id: String,
    pub auth_time: i64,
    /// RFC 8176 authentication method references (`pwd`, later `fed`).
    pub amr: Vec<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub ip: String,
    pub user_agent: String,
    pub ended_at: Option<i64>,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn create_session(&self, s: &SessionRecord) -> StorageResult<()>;
    /// The session, ended or not.
    async fn session(&self, org_id: &str, id: &str) -> StorageResult<Option<SessionRecord>>;
    /// Moves `last_seen_at` forward (never back).
    async fn touch_session(&self, org_id: &str, id: &str, at: i64) -> StorageResult<()>;
    /// Ends one session; `false` if it was not live.
    async fn end_session(&self, org_id: &str, id: &str, at: i64) -> StorageResult<bool>;
    /// Ends every live session of the user (but `except`); how many.
    async fn end_user_sessions(
        &self,
        org_id: &str,
        user_id: &str,
        except: Option<&str>,
        at: i64,
    ) -> StorageResult<u64>;
    /// The user's sessions not ended and not past their absolute end at `now`, newest first (at
    /// most 100).
    async fn user_sessions(
        &self,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> StorageResult<Vec<SessionRecord>>;
    /// Deletes sessions that ended or expired before `before`; how many.
    async fn purge_sessions(&self, before: i64) -> StorageResult<u64>;
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    org_id: String,
    id: String,
    digest: Vec<u8>,
    digest_version: i64,
    user_id: String,
    auth_time: i64,
    amr: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    ip: String,
    user_agent: String,
    ended_at: Option<i64>,
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = super::StorageError;
    fn try_from(r: SessionRow) -> StorageResult<Self> {
        Ok(SessionRecord {
            amr: from_json(&r.amr, "amr")?,
            org_id: r.org_id.into(),
            id: r.id,
            digest: r.digest,
            digest_version: r.digest_version,
            user_id: r.user_id,
            auth_time: r.auth_time,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
            ip: r.ip,
            user_agent: r.user_agent,
            ended_at: r.ended_at,
        })
    }
}

macro_rules! columns {
    () => {
        "org_id, id, digest, digest_version, user_id, auth_time, amr, created_at, last_seen_at, \
         expires_at, ip, user_agent, ended_at"
    };
}

#[async_trait]
impl SessionStore for Db {
    async fn create_session(&self, s: &SessionRecord) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut c = pool.begin_in(Scope::Org(s.org_id.as_str())).await?;
            sqlx::query(concat!(
                "INSERT INTO sessions (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ))
            .bind(s.org_id.as_str())
            .bind(&s.id)
            .bind(&s.digest)
            .bind(s.digest_version)
            .bind(&s.user_id)
            .bind(s.auth_time)
            .bind(to_json_list(&s.amr))
            .bind(s.created_at)
            .bind(s.last_seen_at)
            .bind(s.expires_at)
            .bind(&s.ip)
            .bind(&s.user_agent)
            .bind(s.ended_at)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
            c.commit().await.map_err(db_err)?;
            Ok(())
        })
    }

    async fn session(&self, org_id: &str, id: &str) -> StorageResult<Option<SessionRecord>> {
        let row: Option<SessionRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM sessions WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn touch_session(&self, org_id: &str, id: &str, at: i64) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut c = pool.begin_in(Scope::Org(org_id)).await?;
            sqlx::query(
                "UPDATE sessions SET last_seen_at = $3 WHERE org_id = $1 AND id = $2 \
                 AND last_seen_at < $3",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
            c.commit().await.map_err(db_err)?;
            Ok(())
        })
    }

    async fn end_session(&self, org_id: &str, id: &str, at: i64) -> StorageResult<bool> {
        on_db!(self, |pool| {
            let mut c = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query(
                "UPDATE sessions SET ended_at = $3 WHERE org_id = $1 AND id = $2 \
                 AND ended_at IS NULL",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .execute(&mut *c)
            .await
            .map_err(db_err)?
            .rows_affected();
            c.commit().await.map_err(db_err)?;
            Ok(n > 0)
        })
    }

    async fn end_user_sessions(
        &self,
        org_id: &str,
        user_id: &str,
        except: Option<&str>,
        at: i64,
    ) -> StorageResult<u64> {
        on_db!(self, |pool| {
            let mut c = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query(
                "UPDATE sessions SET ended_at = $3 WHERE org_id = $1 AND user_id = $2 \
                 AND ended_at IS NULL AND ($4 IS NULL OR id <> $4)",
            )
            .bind(org_id)
            .bind(user_id)
            .bind(at)
            .bind(except)
            .execute(&mut *c)
            .await
            .map_err(db_err)?
            .rows_affected();
            c.commit().await.map_err(db_err)?;
            Ok(n)
        })
    }

    async fn user_sessions(
        &self,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> StorageResult<Vec<SessionRecord>> {
        let rows: Vec<SessionRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM sessions WHERE org_id = $1 AND user_id = $2 AND ended_at IS NULL \
                 AND expires_at > $3 ORDER BY created_at DESC, id DESC LIMIT 100"
            ))
            .bind(org_id)
            .bind(user_id)
            .bind(now)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn purge_sessions(&self, before: i64) -> StorageResult<u64> {
        on_db!(self, |pool| {
            let mut c = pool.begin_in(Scope::Platform).await?;
            let n = sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR ended_at < $1")
                .bind(before)
                .execute(&mut *c)
                .await
                .map_err(db_err)?
                .rows_affected();
            c.commit().await.map_err(db_err)?;
            Ok(n)
        })
    }
}
