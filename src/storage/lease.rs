//! Leadership of the background jobs that act on the shared database (purges, expiry sweeps):
//! one instance at a time. PostgreSQL: a session advisory lock held on one dedicated connection
//! (not from the pool), so the lock lives exactly as long as that connection: an instance that
//! dies, or loses its connection, loses the lock with it and the server hands it to the next
//! instance that asks. SQLite: one process owns the file, so it always leads.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::{Db, PG_CONNECT_TIMEOUT, StorageError, StorageResult, db_err, pg_connect_error};

/// The advisory lock's key ("agentidp" in ASCII). Advisory locks are per database, so
/// deployments in other databases of the cluster never contend for it.
const LEADER_LOCK_KEY: i64 = 0x6167_656e_7469_6470;

/// How long one check of the held connection, or one attempt to take the lock, may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader lock of one instance. [`LeaderLock::refresh`] is called every few seconds.
pub struct LeaderLock(Inner);

enum Inner {
    Always,
    Postgres(Box<PgLease>),
}

/// The connection options, the dedicated connection (when open) and whether it holds the lock.
struct PgLease {
    opts: PgConnectOptions,
    conn: Option<PgConnection>,
    held: bool,
}

impl LeaderLock {
    pub(super) fn new(db: &Db) -> Self {
        match db {
            Db::Sqlite(_) => LeaderLock(Inner::Always),
            Db::Postgres(pool) => LeaderLock(Inner::Postgres(Box::new(PgLease {
                opts: (*pool.connect_options()).clone(),
                conn: None,
                held: false,
            }))),
        }
    }

    /// Whether this instance leads now: checks that the connection holding the lock is alive,
    /// or tries to take the lock (connecting first when needed). An error (the connection lost,
    /// the database unreachable) means not leading; the next call starts over.
    pub async fn refresh(&mut self) -> StorageResult<bool> {
        let Inner::Postgres(lease) = &mut self.0 else {
            return Ok(true);
        };
        let PgLease { opts, conn, held } = &mut **lease;
        if conn.is_none() {
            *held = false;
            let c = tokio::time::timeout(PG_CONNECT_TIMEOUT, PgConnection::connect_with(opts))
                .await
                .map_err(|_| StorageError::Unavailable("no answer from PostgreSQL".into()))?
                .map_err(|e| pg_connect_error(opts, e))?;
            *conn = Some(c);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(false);
        };
        let attempt = async {
            if *held {
                sqlx::query("SELECT 1").execute(&mut *c).await.map(|_| true)
            } else {
                sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                    .bind(LEADER_LOCK_KEY)
                    .fetch_one(&mut *c)
                    .await
            }
        };
        let r = match tokio::time::timeout(CHECK_TIMEOUT, attempt).await {
            Ok(r) => r.map_err(db_err),
            Err(_) => Err(StorageError::Unavailable(
                "the leader lock's connection did not answer".into(),
            )),
        };
        match r {
            Ok(leads) => {
                *held = leads;
                Ok(leads)
            }
            Err(e) => {
                // Dropping the connection closes its socket: whatever it held is released.
                *conn = None;
                *held = false;
                Err(e)
            }
        }
    }

    /// Gives leadership up (the instance stops): closes the connection, which releases the lock.
    pub async fn release(self) {
        if let Inner::Postgres(lease) = self.0
            && let Some(c) = lease.conn
        {
            let _ = c.close().await;
        }
    }
}
