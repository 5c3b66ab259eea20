//! Federation partners (`partners`): other issuers whose signed assertions an organization
//! accepts. One partner per issuer and organization.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

use super::outbox::{self, Event};
use super::{
    Db, Scope, ScopedPool, StorageError, StorageResult, conflict, db_err, from_json, on_db,
    to_json_list,
};
use crate::model::{OrgId, PartnerId};

/// A federation partner of an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerRecord {
    pub org_id: OrgId,
    pub id: PartnerId,
    pub issuer: String,
    pub name: Option<String>,
    /// At most one of `jwks_uri`, `jwks` and `did` is where the partner's keys come from.
    pub jwks_uri: Option<String>,
    /// An inline JWK Set.
    pub jwks: Option<Value>,
    pub did: Option<String>,
    pub allowed_scopes: Vec<String>,
    pub allowed_audiences: Vec<String>,
    pub max_assertion_lifetime: i64,
    /// Partner claim name -> local claim name.
    pub claim_mapping: BTreeMap<String, String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Incremented by every write; [`PartnerStore::update`] writes only over the version it was
    /// read at (optimistic concurrency). The admin API's `ETag`.
    pub version: i64,
}

#[async_trait]
pub trait PartnerStore: Send + Sync + 'static {
    /// `Conflict { what: "partner issuer" }` if the organization has a partner with this issuer.
    async fn create(&self, p: &PartnerRecord, event: &Event) -> StorageResult<()>;
    async fn get(&self, org_id: &str, id: &str) -> StorageResult<Option<PartnerRecord>>;
    async fn by_issuer(&self, org_id: &str, issuer: &str) -> StorageResult<Option<PartnerRecord>>;
    /// The organization's partners ordered by id, after the cursor.
    async fn list(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<PartnerRecord>>;
    /// Writes every mutable column (not the issuer) if the stored row is still at `p.version`
    /// (and increments it). `Stale` if another write came first (read again and redo the
    /// change); `NotFound` if it is gone.
    async fn update(&self, p: &PartnerRecord, event: &Event) -> StorageResult<()>;
    async fn delete(&self, org_id: &str, id: &str, event: &Event) -> StorageResult<()>;
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
    version: i64,
}

impl TryFrom<PartnerRow> for PartnerRecord {
    type Error = StorageError;
    fn try_from(r: PartnerRow) -> StorageResult<Self> {
        let bad = |e: StorageError| StorageError::Other(format!("partner {}: {e}", r.id));
        Ok(PartnerRecord {
            jwks: match &r.jwks {
                Some(j) => Some(from_json(j, "jwks").map_err(bad)?),
                None => None,
            },
            allowed_scopes: from_json(&r.allowed_scopes, "allowed_scopes").map_err(bad)?,
            allowed_audiences: from_json(&r.allowed_audiences, "allowed_audiences").map_err(bad)?,
            claim_mapping: from_json(&r.claim_mapping, "claim_mapping").map_err(bad)?,
            enabled: match r.enabled {
                0 => false,
                1 => true,
                _ => {
                    return Err(bad(StorageError::Other(
                        "stored enabled is not 0 or 1".into(),
                    )));
                }
            },
            org_id: r.org_id.into(),
            id: r.id.into(),
            issuer: r.issuer,
            name: r.name,
            jwks_uri: r.jwks_uri,
            did: r.did,
            max_assertion_lifetime: r.max_assertion_lifetime,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
        })
    }
}

/// The columns, in `PartnerRow` order (a literal, so statements stay `&'static str`).
macro_rules! columns {
    () => {
        "org_id, id, issuer, name, jwks_uri, jwks, did, allowed_scopes, allowed_audiences, \
         max_assertion_lifetime, claim_mapping, enabled, created_at, updated_at, version"
    };
}

fn mapping_json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

#[async_trait]
impl PartnerStore for Db {
    async fn create(&self, p: &PartnerRecord, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(p.org_id.as_str())).await?;
            sqlx::query(concat!(
                "INSERT INTO partners (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ))
            .bind(p.org_id.as_str())
            .bind(p.id.as_str())
            .bind(&p.issuer)
            .bind(&p.name)
            .bind(&p.jwks_uri)
            .bind(p.jwks.as_ref().map(Value::to_string))
            .bind(&p.did)
            .bind(to_json_list(&p.allowed_scopes))
            .bind(to_json_list(&p.allowed_audiences))
            .bind(p.max_assertion_lifetime)
            .bind(mapping_json(&p.claim_mapping))
            .bind(i64::from(p.enabled))
            .bind(p.created_at)
            .bind(p.updated_at)
            .bind(p.version)
            .execute(&mut *tx)
            .await
            .map_err(conflict("partner issuer"))?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn get(&self, org_id: &str, id: &str) -> StorageResult<Option<PartnerRecord>> {
        let row: Option<PartnerRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM partners WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn by_issuer(&self, org_id: &str, issuer: &str) -> StorageResult<Option<PartnerRecord>> {
        let row: Option<PartnerRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM partners WHERE org_id = $1 AND issuer = $2"
            ))
            .bind(org_id)
            .bind(issuer)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn list(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<PartnerRecord>> {
        let rows: Vec<PartnerRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM partners WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
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

    async fn update(&self, p: &PartnerRecord, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(p.org_id.as_str())).await?;
            let n = sqlx::query(
                "UPDATE partners SET name = $3, jwks_uri = $4, jwks = $5, did = $6, \
                 allowed_scopes = $7, allowed_audiences = $8, max_assertion_lifetime = $9, \
                 claim_mapping = $10, enabled = $11, updated_at = $12, version = version + 1 \
                 WHERE org_id = $1 AND id = $2 AND version = $13",
            )
            .bind(p.org_id.as_str())
            .bind(p.id.as_str())
            .bind(&p.name)
            .bind(&p.jwks_uri)
            .bind(p.jwks.as_ref().map(Value::to_string))
            .bind(&p.did)
            .bind(to_json_list(&p.allowed_scopes))
            .bind(to_json_list(&p.allowed_audiences))
            .bind(p.max_assertion_lifetime)
            .bind(mapping_json(&p.claim_mapping))
            .bind(i64::from(p.enabled))
            .bind(p.updated_at)
            .bind(p.version)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n == 0 {
                let live: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM partners WHERE org_id = $1 AND id = $2",
                )
                .bind(p.org_id.as_str())
                .bind(p.id.as_str())
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

    async fn delete(&self, org_id: &str, id: &str, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let n = sqlx::query("DELETE FROM partners WHERE org_id = $1 AND id = $2")
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::testing::*;
    use super::super::{OrgRecord, OrgStore};
    use super::*;

    pub fn partner(org_id: &OrgId, issuer: &str) -> PartnerRecord {
        PartnerRecord {
            org_id: org_id.clone(),
            id: PartnerId::generate(1_767_225_600_000),
            issuer: issuer.to_owned(),
            name: Some("P".into()),
            jwks_uri: None,
            jwks: Some(serde_json::json!({"keys": []})),
            did: None,
            allowed_scopes: vec!["read".into()],
            allowed_audiences: vec!["https://idp.example/orgs/x".into()],
            max_assertion_lifetime: 300,
            claim_mapping: BTreeMap::from([("email".into(), "partner_email".into())]),
            enabled: true,
            created_at: 1,
            updated_at: 1,
            version: 1,
        }
    }

    #[tokio::test]
    async fn one_partner_per_issuer_and_typed_fields_round_trip() {
        let t = temp_db().await;
        let org = OrgRecord::sample("fed");
        OrgStore::create(&t.db, &org, &[], &event(None, "org.created", "o", 0))
            .await
            .unwrap();
        let partners: &dyn PartnerStore = &t.db;
        let p = partner(&org.id, "https://p.example");
        partners
            .create(&p, &event(None, "partner.created", &p.id, 1))
            .await
            .unwrap();
        assert_eq!(partners.get(&org.id, &p.id).await.unwrap(), Some(p.clone()));
        let e = partners
            .create(
                &partner(&org.id, "https://p.example"),
                &event(None, "partner.created", "x", 2),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                StorageError::Conflict {
                    what: "partner issuer"
                }
            ),
            "{e:?}"
        );
        let mut u = p.clone();
        u.enabled = false;
        u.jwks = None;
        u.jwks_uri = Some("https://p.example/jwks".into());
        u.claim_mapping.clear();
        partners
            .update(&u, &event(None, "partner.disabled", &p.id, 3))
            .await
            .unwrap();
        u.version += 1;
        assert_eq!(
            partners
                .by_issuer(&org.id, "https://p.example")
                .await
                .unwrap(),
            Some(u.clone())
        );
        assert_eq!(partners.list(&org.id, None, 10).await.unwrap(), [u]);
        partners
            .delete(&org.id, &p.id, &event(None, "partner.deleted", &p.id, 4))
            .await
            .unwrap();
        assert!(matches!(
            partners
                .delete(&org.id, &p.id, &event(None, "partner.deleted", &p.id, 5))
                .await,
            Err(StorageError::NotFound)
        ));
    }
}
