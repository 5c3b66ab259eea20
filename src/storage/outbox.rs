//! The transactional outbox (`events`): every mutation writes the domain [`Event`] it causes in
//! the same transaction as the change, with [`append`]; readers page through them in order.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{Database, Encode, Executor, IntoArguments, Transaction, Type};

use super::{Db, Scope, ScopedPool, StorageResult, db_err, from_json, on_db};
use crate::model::OrgId;

/// A domain event written to the outbox in the same transaction as the change it records.
#[derive(Debug, Clone)]
pub struct Event {
    pub org_id: Option<OrgId>,
    pub kind: &'static str,
    pub subject: String,
    pub data: Value,
    pub at: i64,
}

/// A stored event, as read back from the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub org_id: Option<OrgId>,
    pub kind: String,
    pub subject: String,
    pub data: Value,
    pub created_at: i64,
}

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Events after `after_id`, oldest first.
    async fn after(&self, after_id: i64, limit: i64) -> StorageResult<Vec<StoredEvent>>;
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    org_id: Option<String>,
    kind: String,
    subject: String,
    data: String,
    created_at: i64,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = super::StorageError;
    fn try_from(r: EventRow) -> StorageResult<Self> {
        Ok(StoredEvent {
            data: from_json(&r.data, "event data")?,
            id: r.id,
            org_id: r.org_id.map(OrgId::from),
            kind: r.kind,
            subject: r.subject,
            created_at: r.created_at,
        })
    }
}

/// Writes `ev` inside `tx`: the one outbox insert every mutation of every aggregate uses.
/// Generic over the backend, so it is written once for both.
pub(super) async fn append<DB>(tx: &mut Transaction<'_, DB>, ev: &Event) -> StorageResult<()>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
{
    sqlx::query(
        "INSERT INTO events (org_id, kind, subject, data, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ev.org_id.as_deref())
    .bind(ev.kind)
    .bind(ev.subject.as_str())
    .bind(ev.data.to_string())
    .bind(ev.at)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl Outbox for Db {
    async fn after(&self, after_id: i64, limit: i64) -> StorageResult<Vec<StoredEvent>> {
        let rows: Vec<EventRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Platform).await?;
            sqlx::query_as(
                "SELECT id, org_id, kind, subject, data, created_at FROM events \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after_id)
            .bind(limit)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn events_are_appended_in_order_and_paged() {
        let t = temp_db().await;
        let Db::Sqlite(pool) = &t.db else {
            unreachable!("temp_db is SQLite")
        };
        let mut tx = pool.begin().await.unwrap();
        append(&mut tx, &event(Some("o1"), "a.one", "s1", 10))
            .await
            .unwrap();
        append(&mut tx, &event(None, "a.two", "s2", 11))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // A rolled-back transaction leaves no event.
        let mut tx = pool.begin().await.unwrap();
        append(&mut tx, &event(None, "a.lost", "s3", 12))
            .await
            .unwrap();
        tx.rollback().await.unwrap();

        let all = t.db.after(0, 10).await.unwrap();
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["a.one", "a.two"]);
        assert_eq!(all[0].org_id.as_deref(), Some("o1"));
        assert_eq!(all[1].org_id, None);
        assert_eq!(all[0].data, serde_json::json!({"n": 10}));
        assert_eq!((all[0].created_at, all[0].subject.as_str()), (10, "s1"));
        assert_eq!(t.db.after(all[0].id, 10).await.unwrap().len(), 1);
        assert_eq!(t.db.after(0, 1).await.unwrap().len(), 1);
    }
}
