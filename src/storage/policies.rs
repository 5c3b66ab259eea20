//! Organization policies (`org_policies`): one JSON document per organization, parsed strictly
//! by the domain (`tenancy::policy`). No row is the default policy (no restriction), at
//! version 0. Every write replaces the document over the version it was read at (optimistic
//! concurrency) and writes its outbox event in the same transaction.

use async_trait::async_trait;

use super::outbox::{self, Event};
use super::{Db, Scope, ScopedPool, StorageError, StorageResult, db_err, on_db};
use crate::model::OrgId;

/// A stored policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRecord {
    pub org_id: OrgId,
    /// The policy as JSON (the domain's serialization of it).
    pub document: String,
    /// 1 after the first write, incremented by each; the admin API's `ETag`.
    pub version: i64,
    pub updated_at: i64,
}

#[async_trait]
pub trait PolicyStore: Send + Sync + 'static {
    /// The organization's stored policy, `None` when it never had one (the default).
    async fn get(&self, org_id: &str) -> StorageResult<Option<PolicyRecord>>;
    /// Writes `document` if the stored policy is still at `expected_version` (0: none stored
    /// yet), with `event`, in one transaction; answers the new version. `Stale` if another
    /// write came first.
    async fn put(
        &self,
        org_id: &str,
        document: &str,
        expected_version: i64,
        at: i64,
        event: &Event,
    ) -> StorageResult<i64>;
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    org_id: String,
    policy: String,
    version: i64,
    updated_at: i64,
}

#[async_trait]
impl PolicyStore for Db {
    async fn get(&self, org_id: &str) -> StorageResult<Option<PolicyRecord>> {
        let row: Option<PolicyRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(
                "SELECT org_id, policy, version, updated_at FROM org_policies WHERE org_id = $1",
            )
            .bind(org_id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        Ok(row.map(|r| PolicyRecord {
            org_id: r.org_id.into(),
            document: r.policy,
            version: r.version,
            updated_at: r.updated_at,
        }))
    }

    async fn put(
        &self,
        org_id: &str,
        document: &str,
        expected_version: i64,
        at: i64,
        event: &Event,
    ) -> StorageResult<i64> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let n = if expected_version == 0 {
                // The first write: a concurrent first write makes this insert a no-op.
                sqlx::query(
                    "INSERT INTO org_policies (org_id, policy, version, updated_at) \
                     VALUES ($1, $2, 1, $3) ON CONFLICT (org_id) DO NOTHING",
                )
                .bind(org_id)
                .bind(document)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected()
            } else {
                sqlx::query(
                    "UPDATE org_policies SET policy = $2, updated_at = $3, version = version + 1 \
                     WHERE org_id = $1 AND version = $4",
                )
                .bind(org_id)
                .bind(document)
                .bind(at)
                .bind(expected_version)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected()
            };
            if n == 0 {
                return Err(StorageError::Stale);
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(expected_version + 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{OrgRecord, OrgStore};
    use super::*;

    #[tokio::test]
    async fn put_over_the_version_read_and_nothing_else() {
        let t = temp_db().await;
        let org = OrgRecord::sample("policies");
        OrgStore::create(&t.db, &org, &[], &event(None, "org.created", "o", 0))
            .await
            .unwrap();
        let store: &dyn PolicyStore = &t.db;
        assert_eq!(store.get(&org.id).await.unwrap(), None);
        let ev = |n| event(Some(&org.id), "policy.updated", &org.id, n);
        assert_eq!(store.put(&org.id, "{}", 0, 10, &ev(10)).await.unwrap(), 1);
        // A second "first" write lost the race.
        assert!(matches!(
            store.put(&org.id, "{\"x\":1}", 0, 11, &ev(11)).await,
            Err(StorageError::Stale)
        ));
        assert_eq!(
            store
                .put(&org.id, "{\"max_agents\":3}", 1, 12, &ev(12))
                .await
                .unwrap(),
            2
        );
        assert!(matches!(
            store.put(&org.id, "{}", 1, 13, &ev(13)).await,
            Err(StorageError::Stale)
        ));
        let got = store.get(&org.id).await.unwrap().unwrap();
        assert_eq!(got.document, "{\"max_agents\":3}");
        assert_eq!((got.version, got.updated_at), (2, 12));
        // Each successful write left exactly one event.
        let events = crate::storage::Outbox::after(&t.db, 0, 100).await.unwrap();
        assert_eq!(
            events.iter().filter(|e| e.kind == "policy.updated").count(),
            2
        );
    }
}
