//! Short-lived token state kept in the database: RFC 7009 revocations (kept until the token
//! would have expired anyway) and single-use markers (private_key_jwt `jti`s, partner
//! assertions) when no Redis is configured; and their purge.

use std::collections::HashSet;

use async_trait::async_trait;

use super::{Db, Scope, Scoped, ScopedPool, StorageResult, db_err, on_db};

/// One single-use marker to record: `key` until `expires_at`, as seen at `now` (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub key: String,
    pub expires_at: i64,
    pub now: i64,
}

/// A revocation still in force: the organization, the token's `jti`, its `exp`.
pub type Revocation = (String, String, i64);

/// Insert, or take over a marker that has already expired: one atomic statement per marker.
const SET_MARKER: &str = "INSERT INTO replay_markers (key, expires_at) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE replay_markers.expires_at <= $3";

/// Rows per multi-row marker statement (two parameters each, under SQLite's and PostgreSQL's
/// parameter limits).
const MARKERS_PER_STATEMENT: usize = 500;

/// `INSERT ... VALUES ($1, $2), ($3, $4), ... ON CONFLICT ... WHERE expired RETURNING key` for
/// `n` distinct keys; the last parameter is `now`. The same text on both backends.
fn many_markers_sql(n: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(64 + n * 16 + 160);
    sql.push_str("INSERT INTO replay_markers (key, expires_at) VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "(${}, ${})", 2 * i + 1, 2 * i + 2);
    }
    let _ = write!(
        sql,
        " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
         WHERE replay_markers.expires_at <= ${} RETURNING key",
        2 * n + 1
    );
    sql
}

#[async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Records the revocation of token `jti` of `org_id` until `expires_at`; revoking twice is fine.
    async fn revoke(&self, org_id: &str, jti: &str, expires_at: i64) -> StorageResult<()>;
    async fn is_revoked(&self, org_id: &str, jti: &str) -> StorageResult<bool>;
    /// Atomic set-if-absent of a single-use marker until `expires_at` (seconds). `true` when this
    /// call set it, `false` when a live marker already existed (a replay).
    async fn set_if_absent(&self, key: &str, expires_at: i64, now: i64) -> StorageResult<bool>;
    /// [`ReplayStore::set_if_absent`] for many markers in ONE transaction (one commit): answers,
    /// in order, `true` for each marker this call set, `false` for a replay. Within `markers` the
    /// first occurrence of a key wins and the later ones are replays. All or nothing: on an error
    /// nothing was recorded.
    async fn set_many_if_absent(&self, markers: &[Marker]) -> StorageResult<Vec<bool>>;
    /// Every revocation that has not expired at `now` (`expires_at >= now`).
    async fn live_revocations(&self, now: i64) -> StorageResult<Vec<Revocation>>;
    /// Deletes expired revocations and markers; answers how many.
    async fn purge_expired(&self, now: i64) -> StorageResult<u64>;
}

#[async_trait]
impl ReplayStore for Db {
    async fn revoke(&self, org_id: &str, jti: &str, expires_at: i64) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query(
                "INSERT INTO revoked_tokens (org_id, jti, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (org_id, jti) DO NOTHING",
            )
            .bind(org_id)
            .bind(jti)
            .bind(expires_at)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
            c.finish().await?;
        });
        Ok(())
    }

    async fn is_revoked(&self, org_id: &str, jti: &str) -> StorageResult<bool> {
        let n: i64 = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens WHERE org_id = $1 AND jti = $2")
                .bind(org_id)
                .bind(jti)
                .fetch_one(&mut *c)
                .await
                .map_err(db_err)?
        });
        Ok(n > 0)
    }

    async fn set_if_absent(&self, key: &str, expires_at: i64, now: i64) -> StorageResult<bool> {
        // One atomic statement: insert, or take over a marker that has already expired.
        let n = on_db!(self, |pool| {
            sqlx::query(SET_MARKER)
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

    async fn set_many_if_absent(&self, markers: &[Marker]) -> StorageResult<Vec<bool>> {
        let mut fresh = vec![false; markers.len()];
        // The first occurrence of each key is written; a later one is a replay of it.
        let mut seen = HashSet::with_capacity(markers.len());
        let mut order: Vec<usize> = (0..markers.len())
            .filter(|&i| seen.insert(markers[i].key.as_str()))
            .collect();
        // Written in key order: two instances' batches on PostgreSQL lock the same keys in the
        // same order, so they wait for each other instead of deadlocking.
        order.sort_unstable_by(|&a, &b| markers[a].key.cmp(&markers[b].key));
        if order.is_empty() {
            return Ok(fresh);
        }
        // One multi-row upsert per chunk, `RETURNING` the keys it set (inserted, or taken over
        // from an expired marker): a statement per marker cost a round trip to the SQLite
        // worker thread (two context switches) each. A marker counts as expired against the
        // earliest `now` of the chunk (never later than any caller's clock: fails closed).
        let mut set: HashSet<String> = HashSet::with_capacity(order.len());
        on_db!(self, |pool| {
            let mut tx = pool.begin().await.map_err(db_err)?;
            for chunk in order.chunks(MARKERS_PER_STATEMENT) {
                let now = chunk
                    .iter()
                    .map(|&i| markers[i].now)
                    .min()
                    .unwrap_or(i64::MIN);
                // Audited: built from placeholders and fixed text only, never from input.
                let sql = sqlx::AssertSqlSafe(many_markers_sql(chunk.len()));
                let mut q = sqlx::query_scalar::<_, String>(sql);
                for &i in chunk {
                    q = q.bind(&markers[i].key).bind(markers[i].expires_at);
                }
                let keys = q.bind(now).fetch_all(&mut *tx).await.map_err(db_err)?;
                set.extend(keys);
            }
            tx.commit().await.map_err(db_err)?;
        });
        for &i in &order {
            fresh[i] = set.contains(markers[i].key.as_str());
        }
        Ok(fresh)
    }

    async fn live_revocations(&self, now: i64) -> StorageResult<Vec<Revocation>> {
        let rows: Vec<(String, String, i64)> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Platform).await?;
            sqlx::query_as(
                "SELECT org_id, jti, expires_at FROM revoked_tokens WHERE expires_at >= $1",
            )
            .bind(now)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        Ok(rows)
    }

    async fn purge_expired(&self, now: i64) -> StorageResult<u64> {
        on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Platform).await?;
            let a = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *c)
                .await
                .map_err(db_err)?
                .rows_affected();
            let b = sqlx::query("DELETE FROM replay_markers WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *c)
                .await
                .map_err(db_err)?
                .rows_affected();
            c.finish().await?;
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

    fn marker(key: &str, expires_at: i64, now: i64) -> Marker {
        Marker {
            key: key.into(),
            expires_at,
            now,
        }
    }

    /// One transaction for many markers: the first of a key wins, a live marker is a replay, an
    /// expired one is taken over; and the revocations still in force are listed.
    #[tokio::test]
    async fn many_markers_in_one_transaction() {
        let t = temp_db().await;
        let s: &dyn ReplayStore = &t.db;
        assert!(s.set_if_absent("live", 500, 100).await.unwrap());
        assert!(s.set_if_absent("old", 150, 100).await.unwrap());
        let got = s
            .set_many_if_absent(&[
                marker("b", 500, 200),
                marker("a", 500, 200),
                marker("b", 500, 200),
                marker("live", 500, 200),
                marker("old", 500, 200),
            ])
            .await
            .unwrap();
        assert_eq!(got, [true, true, false, false, true]);
        assert!(!s.set_if_absent("a", 600, 201).await.unwrap(), "committed");
        assert_eq!(s.set_many_if_absent(&[]).await.unwrap(), Vec::<bool>::new());

        s.revoke("o", "gone", 99).await.unwrap();
        s.revoke("o", "j", 300).await.unwrap();
        assert_eq!(
            s.live_revocations(100).await.unwrap(),
            [("o".to_owned(), "j".to_owned(), 300)]
        );
    }
}
