//! Principals of the admin API besides the bootstrap token: organization API keys (`api_keys`,
//! a tenant table) and platform admin tokens (`admin_tokens`). Only keyed digests are stored.
//! Revocation is a timestamp, never a deletion: the list and the audit trail keep the key.

use async_trait::async_trait;

use super::outbox::{self, Event};
use super::{
    Db, Scope, ScopedPool, StorageError, StorageResult, db_err, from_json, on_db, parse_stored,
    to_json_list,
};
use crate::model::{OrgId, Role};

/// An organization API key as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub org_id: OrgId,
    pub id: String,
    pub name: String,
    pub role: Role,
    pub digest: Vec<u8>,
    pub digest_version: i64,
    /// The secret before the last rotation, accepted until `prev_expires_at`.
    pub prev_digest: Option<Vec<u8>>,
    pub prev_digest_version: Option<i64>,
    pub prev_expires_at: Option<i64>,
    /// CIDRs the key may be used from, as given (empty: anywhere).
    pub allowed_cidrs: Vec<String>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    /// Who created it (`platform`, `platform:ID` or `api_key:ID`).
    pub created_by: String,
    pub rotated_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<i64>,
}

/// A platform admin token as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminTokenRecord {
    pub id: String,
    pub name: String,
    pub digest: Vec<u8>,
    pub digest_version: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A new secret for an API key: its digest, and until when the previous one stays valid
/// (`None`: not at all).
pub struct Rotation<'a> {
    pub digest: &'a [u8],
    pub digest_version: i64,
    pub prev_valid_until: Option<i64>,
    pub at: i64,
}

#[async_trait]
pub trait PrincipalStore: Send + Sync + 'static {
    async fn create_api_key(&self, key: &ApiKeyRecord, event: &Event) -> StorageResult<()>;
    /// The key with this id, of any organization, revoked or not (the caller decides).
    async fn api_key(&self, id: &str) -> StorageResult<Option<ApiKeyRecord>>;
    /// The organization's keys that are not revoked, by id, after the cursor.
    async fn list_api_keys(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<ApiKeyRecord>>;
    /// `NotFound` unless the key exists in this organization and is not revoked.
    async fn rotate_api_key(
        &self,
        org_id: &str,
        id: &str,
        r: &Rotation<'_>,
        event: &Event,
    ) -> StorageResult<()>;
    /// `NotFound` unless the key exists in this organization and is not revoked.
    async fn revoke_api_key(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<()>;
    /// Records a use (best effort, written at most about once a minute per key by the caller).
    async fn touch_api_key(&self, id: &str, at: i64, ip: &str) -> StorageResult<()>;

    async fn create_admin_token(&self, t: &AdminTokenRecord, event: &Event) -> StorageResult<()>;
    async fn admin_token(&self, id: &str) -> StorageResult<Option<AdminTokenRecord>>;
    /// Every platform admin token, revoked ones included, by id.
    async fn admin_tokens(&self) -> StorageResult<Vec<AdminTokenRecord>>;
    /// `NotFound` unless the token exists and is not revoked.
    async fn revoke_admin_token(&self, id: &str, at: i64, event: &Event) -> StorageResult<()>;
    async fn touch_admin_token(&self, id: &str, at: i64) -> StorageResult<()>;
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    org_id: String,
    id: String,
    name: String,
    role: String,
    digest: Vec<u8>,
    digest_version: i64,
    prev_digest: Option<Vec<u8>>,
    prev_digest_version: Option<i64>,
    prev_expires_at: Option<i64>,
    allowed_cidrs: String,
    expires_at: Option<i64>,
    created_at: i64,
    created_by: String,
    rotated_at: Option<i64>,
    last_used_at: Option<i64>,
    last_used_ip: Option<String>,
    revoked_at: Option<i64>,
}

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StorageError;
    fn try_from(r: ApiKeyRow) -> StorageResult<Self> {
        Ok(ApiKeyRecord {
            role: parse_stored(&r.role, "api key role", Role::parse)?,
            allowed_cidrs: from_json(&r.allowed_cidrs, "allowed_cidrs")?,
            org_id: r.org_id.into(),
            id: r.id,
            name: r.name,
            digest: r.digest,
            digest_version: r.digest_version,
            prev_digest: r.prev_digest,
            prev_digest_version: r.prev_digest_version,
            prev_expires_at: r.prev_expires_at,
            expires_at: r.expires_at,
            created_at: r.created_at,
            created_by: r.created_by,
            rotated_at: r.rotated_at,
            last_used_at: r.last_used_at,
            last_used_ip: r.last_used_ip,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AdminTokenRow {
    id: String,
    name: String,
    digest: Vec<u8>,
    digest_version: i64,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<AdminTokenRow> for AdminTokenRecord {
    fn from(r: AdminTokenRow) -> Self {
        AdminTokenRecord {
            id: r.id,
            name: r.name,
            digest: r.digest,
            digest_version: r.digest_version,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

macro_rules! key_columns {
    () => {
        "org_id, id, name, role, digest, digest_version, prev_digest, prev_digest_version, \
         prev_expires_at, allowed_cidrs, expires_at, created_at, created_by, rotated_at, \
         last_used_at, last_used_ip, revoked_at"
    };
}

macro_rules! token_columns {
    () => {
        "id, name, digest, digest_version, created_at, last_used_at, revoked_at"
    };
}

/// `NotFound` when an UPDATE matched no row.
fn one_row(rows: u64) -> StorageResult<()> {
    if rows == 0 {
        Err(StorageError::NotFound)
    } else {
        Ok(())
    }
}

#[async_trait]
impl PrincipalStore for Db {
    async fn create_api_key(&self, k: &ApiKeyRecord, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(k.org_id.as_str())).await?;
            sqlx::query(concat!(
                "INSERT INTO api_keys (",
                key_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17)"
            ))
            .bind(k.org_id.as_str())
            .bind(&k.id)
            .bind(&k.name)
            .bind(k.role.as_str())
            .bind(&k.digest)
            .bind(k.digest_version)
            .bind(&k.prev_digest)
            .bind(k.prev_digest_version)
            .bind(k.prev_expires_at)
            .bind(to_json_list(&k.allowed_cidrs))
            .bind(k.expires_at)
            .bind(k.created_at)
            .bind(&k.created_by)
            .bind(k.rotated_at)
            .bind(k.last_used_at)
            .bind(&k.last_used_ip)
            .bind(k.revoked_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn api_key(&self, id: &str) -> StorageResult<Option<ApiKeyRecord>> {
        let row: Option<ApiKeyRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Platform).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn list_api_keys(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE org_id = $1 AND id > $2 AND revoked_at IS NULL \
                 ORDER BY id LIMIT $3"
            ))
            .bind(org_id)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn rotate_api_key(
        &self,
        org_id: &str,
        id: &str,
        r: &Rotation<'_>,
        event: &Event,
    ) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            // With a grace period the current secret becomes the previous one; without, the
            // previous one is dropped as well.
            let done = sqlx::query(
                "UPDATE api_keys SET \
                 prev_digest = CASE WHEN $3 IS NULL THEN NULL ELSE digest END, \
                 prev_digest_version = CASE WHEN $3 IS NULL THEN NULL ELSE digest_version END, \
                 prev_expires_at = $3, digest = $4, digest_version = $5, rotated_at = $6 \
                 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
            )
            .bind(org_id)
            .bind(id)
            .bind(r.prev_valid_until)
            .bind(r.digest)
            .bind(r.digest_version)
            .bind(r.at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            one_row(done.rows_affected())?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn revoke_api_key(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        event: &Event,
    ) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let done = sqlx::query(
                "UPDATE api_keys SET revoked_at = $3 \
                 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            one_row(done.rows_affected())?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn touch_api_key(&self, id: &str, at: i64, ip: &str) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut c = pool.begin_in(Scope::Platform).await?;
            sqlx::query("UPDATE api_keys SET last_used_at = $2, last_used_ip = $3 WHERE id = $1")
                .bind(id)
                .bind(at)
                .bind(ip)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
            c.commit().await.map_err(db_err)?;
        });
        Ok(())
    }

    async fn create_admin_token(&self, t: &AdminTokenRecord, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Platform).await?;
            sqlx::query(concat!(
                "INSERT INTO admin_tokens (",
                token_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(&t.id)
            .bind(&t.name)
            .bind(&t.digest)
            .bind(t.digest_version)
            .bind(t.created_at)
            .bind(t.last_used_at)
            .bind(t.revoked_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn admin_token(&self, id: &str) -> StorageResult<Option<AdminTokenRecord>> {
        let row: Option<AdminTokenRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Platform).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                token_columns!(),
                " FROM admin_tokens WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        Ok(row.map(Into::into))
    }

    async fn admin_tokens(&self) -> StorageResult<Vec<AdminTokenRecord>> {
        let rows: Vec<AdminTokenRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Platform).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                token_columns!(),
                " FROM admin_tokens ORDER BY id"
            ))
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn revoke_admin_token(&self, id: &str, at: i64, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Platform).await?;
            let done = sqlx::query(
                "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            one_row(done.rows_affected())?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn touch_admin_token(&self, id: &str, at: i64) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut c = pool.begin_in(Scope::Platform).await?;
            sqlx::query("UPDATE admin_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
            c.commit().await.map_err(db_err)?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::storage::{OrgStore, Stores};

    async fn org(db: &Db) -> OrgId {
        let id = OrgId::from(uuid::Uuid::new_v4().to_string());
        let rec = crate::storage::OrgRecord {
            id: id.clone(),
            slug: format!("s{}", uuid::Uuid::new_v4().simple()),
            name: "n".into(),
            issuer: format!("https://x/{}", uuid::Uuid::new_v4()),
            did: format!("did:web:x:{}", uuid::Uuid::new_v4()),
            dek_wrapped: vec![1],
            dek_mk_version: 1,
            created_at: 1,
            updated_at: 1,
        };
        OrgStore::create(
            db,
            &rec,
            &[],
            &event(Some(id.as_str()), "org.created", "o", 1),
        )
        .await
        .unwrap();
        id
    }

    fn key(org_id: &OrgId, id: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            org_id: org_id.clone(),
            id: id.into(),
            name: "ci".into(),
            role: Role::Admin,
            digest: vec![1, 2],
            digest_version: 1,
            prev_digest: None,
            prev_digest_version: None,
            prev_expires_at: None,
            allowed_cidrs: vec!["10.0.0.0/8".into()],
            expires_at: Some(99),
            created_at: 5,
            created_by: "platform".into(),
            rotated_at: None,
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn api_keys_round_trip_rotate_and_revoke() {
        let t = temp_db().await;
        let db = &t.db;
        let _ = Stores::new(db.clone());
        let o = org(db).await;
        let ev = |k| event(Some(o.as_str()), k, "k", 1);
        let k = key(&o, "k1");
        db.create_api_key(&k, &ev("api_key.created")).await.unwrap();
        assert_eq!(db.api_key("k1").await.unwrap(), Some(k.clone()));
        assert_eq!(db.list_api_keys(o.as_str(), None, 10).await.unwrap(), [k]);
        // Another organization's key is not found through this one.
        let other = org(db).await;
        let rot = Rotation {
            digest: &[9],
            digest_version: 1,
            prev_valid_until: Some(50),
            at: 7,
        };
        assert!(matches!(
            db.rotate_api_key(other.as_str(), "k1", &rot, &ev("x"))
                .await,
            Err(StorageError::NotFound)
        ));
        db.rotate_api_key(o.as_str(), "k1", &rot, &ev("api_key.rotated"))
            .await
            .unwrap();
        let got = db.api_key("k1").await.unwrap().unwrap();
        assert_eq!(got.digest, [9]);
        assert_eq!(got.prev_digest.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!((got.prev_expires_at, got.rotated_at), (Some(50), Some(7)));
        db.touch_api_key("k1", 8, "10.1.2.3").await.unwrap();
        let got = db.api_key("k1").await.unwrap().unwrap();
        assert_eq!(got.last_used_ip.as_deref(), Some("10.1.2.3"));
        db.revoke_api_key(o.as_str(), "k1", 9, &ev("api_key.revoked"))
            .await
            .unwrap();
        assert!(matches!(
            db.revoke_api_key(o.as_str(), "k1", 9, &ev("api_key.revoked"))
                .await,
            Err(StorageError::NotFound)
        ));
        assert!(
            db.list_api_keys(o.as_str(), None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(db.api_key("k1").await.unwrap().unwrap().revoked_at, Some(9));
    }

    #[tokio::test]
    async fn admin_tokens_round_trip_and_revoke() {
        let t = temp_db().await;
        let db = &t.db;
        let rec = AdminTokenRecord {
            id: "t1".into(),
            name: "ops".into(),
            digest: vec![3],
            digest_version: 1,
            created_at: 1,
            last_used_at: None,
            revoked_at: None,
        };
        let ev = event(None, "admin_token.created", "t1", 1);
        db.create_admin_token(&rec, &ev).await.unwrap();
        assert_eq!(db.admin_tokens().await.unwrap(), std::slice::from_ref(&rec));
        db.touch_admin_token("t1", 4).await.unwrap();
        db.revoke_admin_token("t1", 5, &ev).await.unwrap();
        assert!(matches!(
            db.revoke_admin_token("t1", 5, &ev).await,
            Err(StorageError::NotFound)
        ));
        let got = db.admin_token("t1").await.unwrap().unwrap();
        assert_eq!((got.last_used_at, got.revoked_at), (Some(4), Some(5)));
    }
}
