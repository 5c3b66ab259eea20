//! Organizations (`orgs`). Never hard-deleted: a deleted row stays as a tombstone so its slug,
//! issuer and DID are never handed to a newcomer. Creation writes the first keys, deletion
//! revokes the agents and removes the keys, each in the same transaction.

use async_trait::async_trait;

use super::keys::{self, KeyRecord};
use super::outbox::{self, Event};
use super::{Db, Scope, ScopedPool, StorageResult, conflict, db_err, on_db};
use crate::model::OrgId;

/// An organization as stored. `issuer` and `did` are fixed at creation.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgRecord {
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    pub issuer: String,
    pub did: String,
    /// The organization's data key, wrapped by the master key of `dek_mk_version`.
    pub dek_wrapped: Vec<u8>,
    pub dek_mk_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[async_trait]
pub trait OrgStore: Send + Sync + 'static {
    /// Creates the organization with its first keys. `Conflict { what: "slug" }` if the slug was
    /// ever used; `Conflict { what: "kid" }` on a duplicate key; nothing is written then.
    async fn create(&self, org: &OrgRecord, keys: &[KeyRecord], event: &Event)
    -> StorageResult<()>;
    /// The live organization with this slug.
    async fn by_slug(&self, slug: &str) -> StorageResult<Option<OrgRecord>>;
    /// The live organization with this id.
    async fn by_id(&self, id: &str) -> StorageResult<Option<OrgRecord>>;
    /// Live organizations ordered by id, after the cursor.
    async fn list(&self, after: Option<&str>, limit: i64) -> StorageResult<Vec<OrgRecord>>;
    /// `(id, slug)` of every live organization, by id.
    async fn all_ids(&self) -> StorageResult<Vec<(OrgId, String)>>;
    /// `NotFound` if the organization is gone.
    async fn rename(&self, org_id: &str, name: &str, at: i64, event: &Event) -> StorageResult<()>;
    /// Tombstones the organization: its slug, issuer and DID are never reused; its agents are
    /// revoked and its keys removed.
    async fn delete(&self, org_id: &str, at: i64, event: &Event) -> StorageResult<()>;
    /// Rewrites organizations' `(id, issuer, did)` (an explicit move of the public URL).
    async fn rebase(&self, moves: &[(OrgId, String, String)], event: &Event) -> StorageResult<()>;
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
            id: r.id.into(),
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

#[async_trait]
impl OrgStore for Db {
    async fn create(
        &self,
        org: &OrgRecord,
        keys: &[KeyRecord],
        event: &Event,
    ) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org.id.as_str())).await?;
            // The id is fresh and issuer and DID derive from the slug: a taken slug is the
            // conflict a caller can cause.
            sqlx::query(
                "INSERT INTO orgs (id, slug, name, issuer, did, dek_wrapped, dek_mk_version, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(org.id.as_str())
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
            .map_err(conflict("slug"))?;
            for k in keys {
                keys::insert(&mut tx, k).await?;
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn by_slug(&self, slug: &str) -> StorageResult<Option<OrgRecord>> {
        let row: Option<OrgRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Platform).await?;
            sqlx::query_as(
                "SELECT id, slug, name, issuer, did, dek_wrapped, dek_mk_version, created_at, \
                 updated_at FROM orgs WHERE slug = $1 AND deleted_at IS NULL",
            )
            .bind(slug)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        Ok(row.map(Into::into))
    }

    async fn by_id(&self, id: &str) -> StorageResult<Option<OrgRecord>> {
        let row: Option<OrgRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(id)).await?;
            sqlx::query_as(
                "SELECT id, slug, name, issuer, did, dek_wrapped, dek_mk_version, created_at, \
                 updated_at FROM orgs WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        Ok(row.map(Into::into))
    }

    async fn list(&self, after: Option<&str>, limit: i64) -> StorageResult<Vec<OrgRecord>> {
        let rows: Vec<OrgRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Platform).await?;
            sqlx::query_as(
                "SELECT id, slug, name, issuer, did, dek_wrapped, dek_mk_version, created_at, \
                 updated_at FROM orgs WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn all_ids(&self) -> StorageResult<Vec<(OrgId, String)>> {
        let rows: Vec<(String, String)> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Platform).await?;
            sqlx::query_as("SELECT id, slug FROM orgs WHERE deleted_at IS NULL ORDER BY id")
                .fetch_all(&mut *c)
                .await
                .map_err(db_err)?
        });
        Ok(rows
            .into_iter()
            .map(|(id, slug)| (id.into(), slug))
            .collect())
    }

    async fn rename(&self, org_id: &str, name: &str, at: i64, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query(
                "UPDATE orgs SET name = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL",
            )
            .bind(name)
            .bind(at)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n == 0 {
                return Err(super::StorageError::NotFound);
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn delete(&self, org_id: &str, at: i64, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query(
                "UPDATE orgs SET deleted_at = $1, updated_at = $1 \
                 WHERE id = $2 AND deleted_at IS NULL",
            )
            .bind(at)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n == 0 {
                return Err(super::StorageError::NotFound);
            }
            sqlx::query(
                "UPDATE agents SET deleted_at = $1, status = 'revoked' \
                 WHERE org_id = $2 AND deleted_at IS NULL",
            )
            .bind(at)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "UPDATE signing_keys SET removed_at = $1 WHERE org_id = $2 AND removed_at IS NULL",
            )
            .bind(at)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            // Its API keys, people, pending invites, links and transfers die with it (they could reach nothing,
            // but a live credential of a deleted organization is a finding in every review).
            for statement in [
                "UPDATE api_keys SET revoked_at = $1 WHERE org_id = $2 AND revoked_at IS NULL",
                "UPDATE users SET status = 'suspended', updated_at = $1 WHERE org_id = $2",
                "UPDATE invites SET state = 'revoked', closed_at = $1 \
                 WHERE org_id = $2 AND state = 'pending'",
                "UPDATE user_links SET used_at = $1 WHERE org_id = $2 AND used_at IS NULL",
                "UPDATE ownership_transfers SET state = 'revoked', closed_at = $1 \
                 WHERE org_id = $2 AND state = 'pending'",
            ] {
                sqlx::query(statement)
                    .bind(at)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn rebase(&self, moves: &[(OrgId, String, String)], event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Platform).await?;
            for (id, issuer, did) in moves {
                sqlx::query("UPDATE orgs SET issuer = $1, did = $2 WHERE id = $3")
                    .bind(issuer)
                    .bind(did)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict("issuer"))?;
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }
}

#[cfg(test)]
impl OrgRecord {
    /// A valid record with a fresh id (unit tests of every aggregate).
    pub fn sample(slug: &str) -> Self {
        OrgRecord {
            id: OrgId::generate(1_767_225_600_000),
            slug: slug.to_owned(),
            name: format!("Org {slug}"),
            issuer: format!("https://idp.example/orgs/{slug}"),
            did: format!("did:web:idp.example:orgs:{slug}"),
            dek_wrapped: vec![0, 1, 255],
            dek_mk_version: 1,
            created_at: 1,
            updated_at: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Outbox, StorageError};
    use super::*;

    #[tokio::test]
    async fn a_slug_is_never_reused_and_failures_write_nothing() {
        let t = temp_db().await;
        let orgs: &dyn OrgStore = &t.db;
        let a = OrgRecord::sample("acme");
        orgs.create(&a, &[], &event(None, "org.created", "a", 1))
            .await
            .unwrap();
        assert_eq!(orgs.by_slug("acme").await.unwrap(), Some(a.clone()));
        let mut dup = OrgRecord::sample("acme");
        dup.issuer.push_str("/other");
        dup.did.push_str(":other");
        let e = orgs
            .create(&dup, &[], &event(None, "org.created", "d", 2))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StorageError::Conflict { what: "slug" }),
            "{e:?}"
        );
        orgs.delete(&a.id, 5, &event(None, "org.deleted", "a", 3))
            .await
            .unwrap();
        assert_eq!(orgs.by_slug("acme").await.unwrap(), None);
        let e = orgs
            .create(&dup, &[], &event(None, "org.created", "d", 4))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StorageError::Conflict { what: "slug" }),
            "the tombstone keeps the slug: {e:?}"
        );
        let kinds: Vec<String> = Outbox::after(&t.db, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["org.created", "org.deleted"]);
    }

    #[tokio::test]
    async fn rename_rebase_and_ids() {
        let t = temp_db().await;
        let orgs: &dyn OrgStore = &t.db;
        let a = OrgRecord::sample("a");
        orgs.create(&a, &[], &event(None, "org.created", "a", 1))
            .await
            .unwrap();
        orgs.rename(&a.id, "Renamed", 9, &event(None, "org.updated", "a", 2))
            .await
            .unwrap();
        let got = orgs.by_slug("a").await.unwrap().unwrap();
        assert_eq!((got.name.as_str(), got.updated_at), ("Renamed", 9));
        assert!(matches!(
            orgs.rename("nope", "x", 1, &event(None, "org.updated", "x", 3))
                .await,
            Err(StorageError::NotFound)
        ));
        assert_eq!(orgs.all_ids().await.unwrap(), [(a.id.clone(), "a".into())]);
        let moved = (
            a.id.clone(),
            "https://new.example/orgs/a".to_owned(),
            "did:web:new.example:orgs:a".to_owned(),
        );
        orgs.rebase(
            std::slice::from_ref(&moved),
            &event(None, "instance.moved", "x", 4),
        )
        .await
        .unwrap();
        let got = orgs.by_slug("a").await.unwrap().unwrap();
        assert_eq!((got.issuer, got.did), (moved.1, moved.2));
        assert_eq!(orgs.list(None, 10).await.unwrap().len(), 1);
        assert!(orgs.list(Some(&a.id), 10).await.unwrap().is_empty());
    }
}
