//! What the authorization code flow grants (tenant tables): authorization codes
//! (`authorization_codes`), people's consents (`consents`) and refresh tokens
//! (`refresh_tokens`). Codes and refresh tokens are credentials: only their keyed digests are
//! stored.
//!
//! Single use is decided by the database: redeeming a code and rotating a refresh token are an
//! `UPDATE ... WHERE used_at IS NULL` that only one transaction can win. The loser learns what the
//! winner was issued (a code's access token and refresh family; a refresh token's family) so the
//! caller can revoke it (RFC 6749 §4.1.2, RFC 9700 §4.14.2).

use async_trait::async_trait;

use super::{
    Db, Scope, ScopedPool, StorageError, StorageResult, db_err, from_json, on_db, to_json_list,
};
use crate::model::OrgId;

#[derive(Debug, Clone, PartialEq)]
pub struct CodeRecord {
    pub org_id: OrgId,
    pub id: String,
    pub digest: Vec<u8>,
    pub digest_version: i64,
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub redirect_uri: String,
    /// The S256 `code_challenge` (RFC 7636 §4.2).
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    /// RFC 8707 resources the tokens are for.
    pub resource: Vec<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub access_jti: Option<String>,
    pub access_exp: Option<i64>,
    pub refresh_family: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRecord {
    pub org_id: OrgId,
    pub user_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefreshRecord {
    pub org_id: OrgId,
    pub id: String,
    pub family_id: String,
    pub digest: Vec<u8>,
    pub digest_version: i64,
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub scopes: Vec<String>,
    pub resource: Vec<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub created_at: i64,
    /// This token's idle end.
    pub expires_at: i64,
    /// The family's absolute end.
    pub family_expires_at: i64,
    pub access_jti: String,
    pub access_exp: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What redeeming a code did.
#[derive(Debug, Clone, PartialEq)]
pub enum Redeemed {
    /// This call used it.
    Now,
    /// It had been used before: what that redemption was issued.
    Before(Box<CodeRecord>),
    /// No such code.
    Missing,
}

/// What rotating a refresh token did.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotated {
    /// The old token is used, the new one stored.
    Now,
    /// The old token had been used or revoked: its whole family is revoked now, and these access
    /// tokens (`jti`, `exp`) were issued in it.
    Reused(Vec<(String, i64)>),
}

#[async_trait]
pub trait GrantStore: Send + Sync + 'static {
    async fn create_code(&self, c: &CodeRecord) -> StorageResult<()>;
    async fn code(&self, org_id: &str, id: &str) -> StorageResult<Option<CodeRecord>>;
    /// Marks the code used at `at`, recording what it is redeemed for, if nobody did before.
    async fn redeem_code(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        access_jti: &str,
        access_exp: i64,
        refresh_family: Option<&str>,
    ) -> StorageResult<Redeemed>;

    async fn consent(
        &self,
        org_id: &str,
        user_id: &str,
        client_id: &str,
    ) -> StorageResult<Option<ConsentRecord>>;
    /// Creates or replaces the person's consent for the client.
    async fn put_consent(&self, c: &ConsentRecord) -> StorageResult<()>;

    async fn create_refresh(&self, r: &RefreshRecord) -> StorageResult<()>;
    async fn refresh(&self, org_id: &str, id: &str) -> StorageResult<Option<RefreshRecord>>;
    /// Uses `old_id` at `at` and stores `new` in the same transaction; a token already used or
    /// revoked revokes its family instead ([`Rotated::Reused`]).
    async fn rotate_refresh(
        &self,
        org_id: &str,
        old_id: &str,
        at: i64,
        new: &RefreshRecord,
    ) -> StorageResult<Rotated>;
    /// Revokes every token of the family; the access tokens issued in it.
    async fn revoke_family(
        &self,
        org_id: &str,
        family_id: &str,
        at: i64,
    ) -> StorageResult<Vec<(String, i64)>>;
    /// Revokes every refresh token of the user (of one client, or all); the access tokens
    /// issued with them.
    async fn revoke_user_refresh(
        &self,
        org_id: &str,
        user_id: &str,
        client_id: Option<&str>,
        at: i64,
    ) -> StorageResult<Vec<(String, i64)>>;
    /// Deletes codes and refresh tokens that expired before `before`; how many.
    async fn purge_grants(&self, before: i64) -> StorageResult<u64>;
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    org_id: String,
    id: String,
    digest: Vec<u8>,
    digest_version: i64,
    client_id: String,
    user_id: String,
    session_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    nonce: Option<String>,
    resource: String,
    auth_time: i64,
    amr: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    access_jti: Option<String>,
    access_exp: Option<i64>,
    refresh_family: Option<String>,
}

impl TryFrom<CodeRow> for CodeRecord {
    type Error = StorageError;
    fn try_from(r: CodeRow) -> StorageResult<Self> {
        Ok(CodeRecord {
            scopes: from_json(&r.scope, "scope")?,
            resource: from_json(&r.resource, "resource")?,
            amr: from_json(&r.amr, "amr")?,
            org_id: r.org_id.into(),
            id: r.id,
            digest: r.digest,
            digest_version: r.digest_version,
            client_id: r.client_id,
            user_id: r.user_id,
            session_id: r.session_id,
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            nonce: r.nonce,
            auth_time: r.auth_time,
            created_at: r.created_at,
            expires_at: r.expires_at,
            used_at: r.used_at,
            access_jti: r.access_jti,
            access_exp: r.access_exp,
            refresh_family: r.refresh_family,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ConsentRow {
    org_id: String,
    user_id: String,
    client_id: String,
    scopes: String,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    org_id: String,
    id: String,
    family_id: String,
    digest: Vec<u8>,
    digest_version: i64,
    client_id: String,
    user_id: String,
    session_id: String,
    scope: String,
    resource: String,
    auth_time: i64,
    amr: String,
    created_at: i64,
    expires_at: i64,
    family_expires_at: i64,
    access_jti: String,
    access_exp: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<RefreshRow> for RefreshRecord {
    type Error = StorageError;
    fn try_from(r: RefreshRow) -> StorageResult<Self> {
        Ok(RefreshRecord {
            scopes: from_json(&r.scope, "scope")?,
            resource: from_json(&r.resource, "resource")?,
            amr: from_json(&r.amr, "amr")?,
            org_id: r.org_id.into(),
            id: r.id,
            family_id: r.family_id,
            digest: r.digest,
            digest_version: r.digest_version,
            client_id: r.client_id,
            user_id: r.user_id,
            session_id: r.session_id,
            auth_time: r.auth_time,
            created_at: r.created_at,
            expires_at: r.expires_at,
            family_expires_at: r.family_expires_at,
            access_jti: r.access_jti,
            access_exp: r.access_exp,
            used_at: r.used_at,
            revoked_at: r.revoked_at,
        })
    }
}

macro_rules! code_columns {
    () => {
        "org_id, id, digest, digest_version, client_id, user_id, session_id, redirect_uri, \
         code_challenge, scope, nonce, resource, auth_time, amr, created_at, expires_at, used_at, \
         access_jti, access_exp, refresh_family"
    };
}

macro_rules! refresh_columns {
    () => {
        "org_id, id, family_id, digest, digest_version, client_id, user_id, session_id, scope, \
         resource, auth_time, amr, created_at, expires_at, family_expires_at, access_jti, \
         access_exp, used_at, revoked_at"
    };
}

/// Inserts a refresh token on any executor (a connection or a transaction).
macro_rules! insert_refresh {
    ($conn:expr, $r:expr) => {
        sqlx::query(concat!(
            "INSERT INTO refresh_tokens (",
            refresh_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19)"
        ))
        .bind($r.org_id.as_str())
        .bind(&$r.id)
        .bind(&$r.family_id)
        .bind(&$r.digest)
        .bind($r.digest_version)
        .bind(&$r.client_id)
        .bind(&$r.user_id)
        .bind(&$r.session_id)
        .bind(to_json_list(&$r.scopes))
        .bind(to_json_list(&$r.resource))
        .bind($r.auth_time)
        .bind(to_json_list(&$r.amr))
        .bind($r.created_at)
        .bind($r.expires_at)
        .bind($r.family_expires_at)
        .bind(&$r.access_jti)
        .bind($r.access_exp)
        .bind($r.used_at)
        .bind($r.revoked_at)
        .execute($conn)
        .await
        .map_err(db_err)
    };
}

#[async_trait]
impl GrantStore for Db {
    async fn create_code(&self, c: &CodeRecord) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut conn = pool.begin_in(Scope::Org(c.org_id.as_str())).await?;
            sqlx::query(concat!(
                "INSERT INTO authorization_codes (",
                code_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18, $19, $20)"
            ))
            .bind(c.org_id.as_str())
            .bind(&c.id)
            .bind(&c.digest)
            .bind(c.digest_version)
            .bind(&c.client_id)
            .bind(&c.user_id)
            .bind(&c.session_id)
            .bind(&c.redirect_uri)
            .bind(&c.code_challenge)
            .bind(to_json_list(&c.scopes))
            .bind(&c.nonce)
            .bind(to_json_list(&c.resource))
            .bind(c.auth_time)
            .bind(to_json_list(&c.amr))
            .bind(c.created_at)
            .bind(c.expires_at)
            .bind(c.used_at)
            .bind(&c.access_jti)
            .bind(c.access_exp)
            .bind(&c.refresh_family)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
            conn.commit().await.map_err(db_err)?;
            Ok(())
        })
    }

    async fn code(&self, org_id: &str, id: &str) -> StorageResult<Option<CodeRecord>> {
        let row: Option<CodeRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                code_columns!(),
                " FROM authorization_codes WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn redeem_code(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        access_jti: &str,
        access_exp: i64,
        refresh_family: Option<&str>,
    ) -> StorageResult<Redeemed> {
        let n = on_db!(self, |pool| {
            let mut c = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query(
                "UPDATE authorization_codes SET used_at = $3, access_jti = $4, access_exp = $5, \
                 refresh_family = $6 WHERE org_id = $1 AND id = $2 AND used_at IS NULL",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .bind(access_jti)
            .bind(access_exp)
            .bind(refresh_family)
            .execute(&mut *c)
            .await
            .map_err(db_err)?
            .rows_affected();
            c.commit().await.map_err(db_err)?;
            n
        });
        if n > 0 {
            return Ok(Redeemed::Now);
        }
        Ok(match self.code(org_id, id).await? {
            Some(c) => Redeemed::Before(Box::new(c)),
            None => Redeemed::Missing,
        })
    }

    async fn consent(
        &self,
        org_id: &str,
        user_id: &str,
        client_id: &str,
    ) -> StorageResult<Option<ConsentRecord>> {
        let row: Option<ConsentRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(
                "SELECT org_id, user_id, client_id, scopes, created_at, updated_at FROM consents \
                 WHERE org_id = $1 AND user_id = $2 AND client_id = $3",
            )
            .bind(org_id)
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(|r| {
            Ok(ConsentRecord {
                scopes: from_json(&r.scopes, "scopes")?,
                org_id: r.org_id.into(),
                user_id: r.user_id,
                client_id: r.client_id,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
        })
        .transpose()
    }

    async fn put_consent(&self, c: &ConsentRecord) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut conn = pool.begin_in(Scope::Org(c.org_id.as_str())).await?;
            sqlx::query(
                "INSERT INTO consents (org_id, user_id, client_id, scopes, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, user_id, client_id) \
                 DO UPDATE SET scopes = excluded.scopes, updated_at = excluded.updated_at",
            )
            .bind(c.org_id.as_str())
            .bind(&c.user_id)
            .bind(&c.client_id)
            .bind(to_json_list(&c.scopes))
            .bind(c.created_at)
            .bind(c.updated_at)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
            conn.commit().await.map_err(db_err)?;
            Ok(())
        })
    }

    async fn create_refresh(&self, r: &RefreshRecord) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut c = pool.begin_in(Scope::Org(r.org_id.as_str())).await?;
            insert_refresh!(&mut *c, r)?;
            c.commit().await.map_err(db_err)?;
            Ok(())
        })
    }

    async fn refresh(&self, org_id: &str, id: &str) -> StorageResult<Option<RefreshRecord>> {
        let row: Option<RefreshRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                refresh_columns!(),
                " FROM refresh_tokens WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn rotate_refresh(
        &self,
        org_id: &str,
        old_id: &str,
        at: i64,
        new: &RefreshRecord,
    ) -> StorageResult<Rotated> {
        let won = on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $3 WHERE org_id = $1 AND id = $2 \
                 AND used_at IS NULL AND revoked_at IS NULL",
            )
            .bind(org_id)
            .bind(old_id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n > 0 {
                insert_refresh!(&mut *tx, new)?;
                tx.commit().await.map_err(db_err)?;
            }
            n > 0
        });
        if won {
            return Ok(Rotated::Now);
        }
        let Some(old) = self.refresh(org_id, old_id).await? else {
            return Ok(Rotated::Reused(Vec::new()));
        };
        Ok(Rotated::Reused(
            self.revoke_family(org_id, &old.family_id, at).await?,
        ))
    }

    async fn revoke_family(
        &self,
        org_id: &str,
        family_id: &str,
        at: i64,
    ) -> StorageResult<Vec<(String, i64)>> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $3 WHERE org_id = $1 AND family_id = $2 \
                 AND revoked_at IS NULL",
            )
            .bind(org_id)
            .bind(family_id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let issued: Vec<(String, i64)> = sqlx::query_as(
                "SELECT access_jti, access_exp FROM refresh_tokens WHERE org_id = $1 \
                 AND family_id = $2 AND access_exp > $3",
            )
            .bind(org_id)
            .bind(family_id)
            .bind(at)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(issued)
        })
    }

    async fn revoke_user_refresh(
        &self,
        org_id: &str,
        user_id: &str,
        client_id: Option<&str>,
        at: i64,
    ) -> StorageResult<Vec<(String, i64)>> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let issued: Vec<(String, i64)> = sqlx::query_as(
                "SELECT access_jti, access_exp FROM refresh_tokens WHERE org_id = $1 \
                 AND user_id = $2 AND ($3 IS NULL OR client_id = $3) AND access_exp > $4 \
                 AND revoked_at IS NULL",
            )
            .bind(org_id)
            .bind(user_id)
            .bind(client_id)
            .bind(at)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $4 WHERE org_id = $1 AND user_id = $2 \
                 AND ($3 IS NULL OR client_id = $3) AND revoked_at IS NULL",
            )
            .bind(org_id)
            .bind(user_id)
            .bind(client_id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(issued)
        })
    }

    async fn purge_grants(&self, before: i64) -> StorageResult<u64> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Platform).await?;
            let a = sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            let b = sqlx::query(
                "DELETE FROM refresh_tokens WHERE family_expires_at < $1 \
                 AND access_exp < $1",
            )
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            tx.commit().await.map_err(db_err)?;
            Ok(a + b)
        })
    }
}
