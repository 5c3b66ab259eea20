//! Short-lived token state kept in the database: RFC 7009 revocations (kept until the token
//! would have expired anyway) and single-use markers (private_key_jwt `jti`s, partner
//! assertions) when no Redis is configured; and their purge.

use async_trait::async_trait;

use super::{Db, StorageResult, db_err, on_db};

#[async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Records the revocation of token `jti` of `org_id` until `expires_at`; revoking twice is fine.
    async fn revoke(&self, org_id: &str, jti: &str, expires_at: i64) -> StorageResult<()>;
    async fn is_revoked(&self, org_id: &str, jti: &str) -> StorageResult<bool>;
    /// Atomic set-if-absent of a single-use marker until `expires_at` (seconds). `true` when this
    /// call set it, `false` when a live marker already existed (a replay).
    async fn set_if_absent(&self, key: &str, expires_at: i64, now: i64) -> StorageResult<bool>;
    /// Deletes expired revocations and markers; answers how many.
    async fn purge_expired(&self, now: i64) -> StorageResult<u64>;
}

#[async_trait]
impl ReplayStore for Db {
    async fn revoke(&self, org_id: &str, jti: &str, expires_at: i64) -> StorageResult<()> {
        on_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO revoked_tokens (org_id, jti, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (org_id, jti) DO NOTHING",
            )
            .bind(org_id)
            .bind(jti)
            .bind(expires_at)
            .execute(pool)
            .await
            .map_err(db_err)?;
        });
        Ok(())
    }

    async fn is_revoked(&self, org_id: &str, jti: &str) -> StorageResult<bool> {
        let n: i64 = on_db!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens WHERE org_id = $1 AND jti = $2")
                .bind(org_id)
                .bind(jti)
                .fetch_one(pool)
                .await
                .map_err(db_err)?
        });
        Ok(n > 0)
    }

    async fn set_if_absent(&self, key: &str, expires_at: i64, now: i64) -> StorageResult<bool> {
        // One atomic statement: insert, or take over a marker that has already expired.
        let n = on_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO replay_markers (key, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE replay_markers.expires_at <= $3",
            )
            .bind(key)
            .bind(expires_at)
            .bind(now)
            .execute(pool)
            .await
            .map_err(db_err)?
            .rows_affected()
        });
        Ok(n == 1)
    }

    async fn purge_expired(&self, now: i64) -> StorageResult<u64> {
        on_db!(self, |pool| {
            let a = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await
                .map_err(db_err)?
                .rows_affected();
            let b = sqlx::query("DELETE FROM replay_markers WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await
                .map_err(db_err)?
                .rows_affected();
            Ok(a + b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn markers_and_revocations_expire() {
        let t = temp_db().await;
        let s: &dyn ReplayStore = &t.db;
        assert!(s.set_if_absent("m", 160, 100).await.unwrap());
        assert!(!s.set_if_absent("m", 160, 159).await.unwrap(), "a replay");
        assert!(
            s.set_if_absent("m", 300, 160).await.unwrap(),
            "expired: free"
        );
        s.revoke("o", "j", 150).await.unwrap();
        s.revoke("o", "j", 150).await.unwrap();
        assert!(s.is_revoked("o", "j").await.unwrap());
        assert!(!s.is_revoked("p", "j").await.unwrap(), "scoped by org");
        assert_eq!(s.purge_expired(200).await.unwrap(), 1, "the revocation");
        assert!(!s.is_revoked("o", "j").await.unwrap());
        assert_eq!(s.purge_expired(301).await.unwrap(), 1, "the marker");
    }
}
