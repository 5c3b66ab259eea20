//! Organization signing keys (`signing_keys`). A key's state at any instant is computed from its
//! four times (see `keys::KeyState`), so every instance agrees without messages.

use async_trait::async_trait;
use sqlx::{Database, Encode, Executor, IntoArguments, Transaction, Type};

use super::outbox::{self, Event};
use super::{
    Db, Scope, ScopedPool, StorageError, StorageResult, conflict, db_err, on_db, parse_stored,
};
use crate::model::{Alg, OrgId};

/// A signing key row.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub org_id: OrgId,
    pub kid: String,
    pub alg: Alg,
    pub public_jwk: String,
    /// The PKCS#8 private key sealed under the organization's data key.
    pub private_enc: Vec<u8>,
    pub created_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub removed_at: Option<i64>,
}

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The organization's keys not yet removed at `now`, by activation time.
    async fn list(&self, org_id: &str, now: i64) -> StorageResult<Vec<KeyRecord>>;
    /// Inserts `new_keys` and sets `(kid, retires_at, removed_at)` on old ones, atomically.
    /// `Conflict { what: "kid" }` if a new kid exists.
    async fn rotate(
        &self,
        org_id: &str,
        new_keys: &[KeyRecord],
        retire: &[(String, i64, i64)],
        event: &Event,
    ) -> StorageResult<()>;
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

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StorageError;
    fn try_from(r: KeyRow) -> StorageResult<Self> {
        Ok(KeyRecord {
            alg: parse_stored(&r.alg, "key alg", Alg::parse)?,
            org_id: r.org_id.into(),
            kid: r.kid,
            public_jwk: r.public_jwk,
            private_enc: r.private_enc,
            created_at: r.created_at,
            activates_at: r.activates_at,
            retires_at: r.retires_at,
            removed_at: r.removed_at,
        })
    }
}

/// Inserts `k` inside `tx` (used by rotation and by organization creation).
pub(super) async fn insert<DB>(tx: &mut Transaction<'_, DB>, k: &KeyRecord) -> StorageResult<()>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
{
    sqlx::query(
        "INSERT INTO signing_keys (org_id, kid, alg, public_jwk, private_enc, created_at, \
         activates_at, retires_at, removed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(k.org_id.as_str())
    .bind(k.kid.as_str())
    .bind(k.alg.as_str())
    .bind(k.public_jwk.as_str())
    .bind(k.private_enc.as_slice())
    .bind(k.created_at)
    .bind(k.activates_at)
    .bind(k.retires_at)
    .bind(k.removed_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict("kid"))?;
    Ok(())
}

#[async_trait]
impl KeyStore for Db {
    async fn list(&self, org_id: &str, now: i64) -> StorageResult<Vec<KeyRecord>> {
        let rows: Vec<KeyRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(
                "SELECT org_id, kid, alg, public_jwk, private_enc, created_at, activates_at, \
                 retires_at, removed_at FROM signing_keys \
                 WHERE org_id = $1 AND (removed_at IS NULL OR removed_at > $2) \
                 ORDER BY activates_at, kid",
            )
            .bind(org_id)
            .bind(now)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        // A row this version cannot read (an algorithm it does not know, say from a newer
        // version) is left out with a warning: one such key must not take the organization's
        // whole key set, and so its token, JWKS and DID endpoints, down.
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let kid = r.kid.clone();
                match KeyRecord::try_from(r) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        tracing::warn!(org_id, kid = %kid, error = %e, "skipping an unreadable signing key");
                        None
                    }
                }
            })
            .collect())
    }

    async fn rotate(
        &self,
        org_id: &str,
        new_keys: &[KeyRecord],
        retire: &[(String, i64, i64)],
        event: &Event,
    ) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            for (kid, retires_at, removed_at) in retire {
                sqlx::query(
                    "UPDATE signing_keys SET retires_at = $1, removed_at = $2 \
                     WHERE org_id = $3 AND kid = $4",
                )
                .bind(retires_at)
                .bind(removed_at)
                .bind(org_id)
                .bind(kid)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            for k in new_keys {
                insert(&mut tx, k).await?;
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::testing::*;
    use super::super::{OrgRecord, OrgStore};
    use super::*;

    pub fn key(org_id: &OrgId, kid: &str, alg: Alg) -> KeyRecord {
        KeyRecord {
            org_id: org_id.clone(),
            kid: kid.to_owned(),
            alg,
            public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
            private_enc: vec![1, 0, 255],
            created_at: 1,
            activates_at: 10,
            retires_at: None,
            removed_at: None,
        }
    }

    #[tokio::test]
    async fn rotation_retires_inserts_and_rolls_back_on_a_taken_kid() {
        let t = temp_db().await;
        let (orgs, keys): (&dyn OrgStore, &dyn KeyStore) = (&t.db, &t.db);
        let org = OrgRecord::sample("keys");
        let old = key(&org.id, "old", Alg::RS256);
        let created = event(None, "org.created", "o", 1);
        orgs.create(&org, std::slice::from_ref(&old), &created)
            .await
            .unwrap();
        assert_eq!(
            keys.list(&org.id, 0).await.unwrap(),
            std::slice::from_ref(&old)
        );

        let new = key(&org.id, "new", Alg::EdDSA);
        keys.rotate(
            &org.id,
            std::slice::from_ref(&new),
            &[("old".into(), 100, 200)],
            &event(None, "keys.rotated", "o", 2),
        )
        .await
        .unwrap();
        let listed = keys.list(&org.id, 199).await.unwrap();
        assert_eq!(listed.len(), 2);
        let got_old = listed.iter().find(|k| k.kid == "old").unwrap();
        assert_eq!(
            (got_old.retires_at, got_old.removed_at),
            (Some(100), Some(200))
        );
        assert_eq!(
            keys.list(&org.id, 200).await.unwrap(),
            std::slice::from_ref(&new)
        );

        let e = keys
            .rotate(
                &org.id,
                std::slice::from_ref(&new),
                &[("new".into(), 5, 5)],
                &event(None, "keys.rotated", "o", 3),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StorageError::Conflict { what: "kid" }), "{e:?}");
        assert_eq!(keys.list(&org.id, 200).await.unwrap(), [new], "rolled back");
    }

    #[tokio::test]
    async fn a_key_row_with_an_unknown_alg_is_skipped_not_fatal() {
        let t = temp_db().await;
        let (orgs, keys): (&dyn OrgStore, &dyn KeyStore) = (&t.db, &t.db);
        let org = OrgRecord::sample("algs");
        let created = event(None, "org.created", "o", 1);
        let good = key(&org.id, "good", Alg::EdDSA);
        orgs.create(
            &org,
            &[key(&org.id, "k", Alg::ES256), good.clone()],
            &created,
        )
        .await
        .unwrap();
        let Db::Sqlite(pool) = &t.db else {
            unreachable!("temp_db is SQLite")
        };
        sqlx::query("UPDATE signing_keys SET alg = 'HS256' WHERE kid = 'k'")
            .execute(pool)
            .await
            .unwrap();
        // The unreadable row is left out (and logged); the organization keeps its other keys.
        assert_eq!(keys.list(&org.id, 0).await.unwrap(), [good]);
    }
}
