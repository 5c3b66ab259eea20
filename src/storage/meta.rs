//! Instance metadata (`meta`: the recorded public URL, the master-key check value, the bootstrap
//! token digest) and the health of the database itself.

use async_trait::async_trait;

use super::{Db, LeaderLock, StorageResult, db_err, on_db};

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn get(&self, key: &str) -> StorageResult<Option<String>>;
    /// Sets `key`, replacing any earlier value.
    async fn set(&self, key: &str, value: &str) -> StorageResult<()>;
    /// Raises the integer `key` to `value` unless it already holds more (one statement, so
    /// concurrent raises never lower it).
    async fn raise(&self, key: &str, value: i64) -> StorageResult<()>;
    /// Sets `key` unless it is set, and answers the value it holds afterwards (this one, or the
    /// one another instance recorded first).
    async fn get_or_insert(&self, key: &str, value: &str) -> StorageResult<String>;
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// One round trip to the database (readiness).
    async fn ping(&self) -> StorageResult<()>;
    /// A new leader lock of this database for the background jobs (see [`LeaderLock`]).
    fn leader_lock(&self) -> LeaderLock;
}

#[async_trait]
impl MetaStore for Db {
    async fn get(&self, key: &str) -> StorageResult<Option<String>> {
        on_db!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(db_err)
        })
    }

    async fn set(&self, key: &str, value: &str) -> StorageResult<()> {
        on_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(pool)
            .await
            .map_err(db_err)?;
        });
        Ok(())
    }

    async fn raise(&self, key: &str, value: i64) -> StorageResult<()> {
        on_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE \
                 SET value = CASE WHEN CAST(excluded.value AS BIGINT) > CAST(meta.value AS BIGINT) \
                 THEN excluded.value ELSE meta.value END",
            )
            .bind(key)
            .bind(value.to_string())
            .execute(pool)
            .await
            .map_err(db_err)?;
        });
        Ok(())
    }

    async fn get_or_insert(&self, key: &str, value: &str) -> StorageResult<String> {
        on_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .execute(pool)
            .await
            .map_err(db_err)?;
        });
        self.get(key).await?.ok_or(super::StorageError::NotFound)
    }

    fn backend(&self) -> &'static str {
        Db::backend(self)
    }

    async fn ping(&self) -> StorageResult<()> {
        Db::ping(self).await
    }

    fn leader_lock(&self) -> LeaderLock {
        Db::leader_lock(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn set_replaces_and_survives_migration() {
        let t = temp_db().await;
        let meta: &dyn MetaStore = &t.db;
        assert_eq!(meta.get("k").await.unwrap(), None);
        meta.set("k", "v1").await.unwrap();
        meta.set("k", "v2").await.unwrap();
        t.db.migrate().await.unwrap();
        assert_eq!(meta.get("k").await.unwrap().as_deref(), Some("v2"));
        assert_eq!(meta.get_or_insert("id", "first").await.unwrap(), "first");
        meta.raise("until", 100).await.unwrap();
        meta.raise("until", 50).await.unwrap();
        assert_eq!(meta.get("until").await.unwrap().as_deref(), Some("100"));
        meta.raise("until", 1000).await.unwrap();
        assert_eq!(meta.get("until").await.unwrap().as_deref(), Some("1000"));
        assert_eq!(meta.get_or_insert("id", "second").await.unwrap(), "first");
        assert_eq!(meta.backend(), "sqlite");
        meta.ping().await.unwrap();
    }
}
