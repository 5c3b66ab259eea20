//! Storage: one module per aggregate, each owning its records, its SQL and its tests, over two
//! SQL backends (SQLite embedded, PostgreSQL scale-out).
//!
//! - [`Db`] is the opened database (one pool of either backend). Every aggregate trait is
//!   implemented for it, and [`Stores`] hands the rest of the code one `Arc<dyn …>` per aggregate.
//! - The SQL is portable (`$N` placeholders work in SQLite and PostgreSQL; upserts use
//!   `ON CONFLICT`) and written once per method: [`on_db!`] expands the body once per pool type,
//!   so it is ordinary code that rustfmt formats and the compiler checks. Dialect differences
//!   live in the migrations (`migrations/sqlite`, `migrations/postgres`) and in [`open`].
//! - Every tenant table carries `org_id` and every query of tenant data is scoped by it.
//!   Mutations take the domain [`Event`] they cause and write it in the same transaction
//!   ([`outbox`]).
//! - Row-level security (PostgreSQL, migration `0007_rls`) enforces that scope a second time, as
//!   defence in depth against a query that forgets its `org_id`. The pool's connections run as
//!   the role `agentidp_app` (no `BYPASSRLS`, not the tables' owner; `FORCE ROW LEVEL SECURITY`
//!   covers the owner too): [`open`] makes sure the role exists and that the connecting user may
//!   `SET ROLE` to it, and every pooled connection does so on connect; migrations and the leader
//!   lock use a direct connection as the connecting user. Every tenant table's policy admits a
//!   row only when the transaction's setting `agentidp.org_id` names its organization, or when
//!   the transaction declared platform scope (`agentidp.scope = 'platform'`). Both settings are
//!   transaction-local (`set_config(…, true)`): a statement outside such a transaction sees no
//!   row of any organization and can write none. Every store method opens its statements with
//!   [`ScopedPool::begin_in`] (a transaction) or [`ScopedPool::scoped`] (a connection for one
//!   statement or a few reads) and a [`Scope`]: [`Scope::Org`] for one organization's data,
//!   [`Scope::Platform`] only for the statements that are platform-wide by nature — an
//!   organization by its slug (the id is not known yet), listing organizations, `all_ids`,
//!   re-basing every issuer, the outbox relay, the revocations in force and the purge of
//!   expired ones, an API key by its id and its last use (the id in the bearer key is all an
//!   admin request has before it is authenticated), creating an invite (its cap counts the
//!   address's pending invites in every organization), the platform admin tokens (their events
//!   have no organization), and the purge of ended sessions, used codes and dead refresh tokens. Tables without `org_id` (`meta`, `replay_markers`,
//!   `admin_tokens`) are not tenant data and have no policy. On SQLite (one process, no roles) the scope is not recorded and the
//!   statements run exactly as before: a plain transaction, or the pool.
//! - Rows (`*Row`, private to their module) are parsed strictly into records (`*Record`): an
//!   unknown stored value is [`StorageError::Other`], never a panic.
//!
//! Adding an aggregate (users, memberships, api keys, audit, webhooks, sessions …): a new
//! `storage/<name>.rs` with its record, its row, a `<Name>Store` trait implemented for `Db` with
//! [`on_db!`], and its tests; a field in [`Stores`]; its tables in a new migration of both folders.

mod agents;
mod delegations;
mod enrollments;
mod grants;
mod keys;
mod lease;
mod links;
mod meta;
mod orgs;
mod outbox;
mod partners;
mod policies;
mod principals;
mod replay;
mod sessions;
mod transfers;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use agents::{AgentFilter, AgentRecord, AgentStore};
pub use delegations::{DelegationRecord, DelegationStore};
pub use enrollments::{EnrollRefusal, EnrollmentRecord, EnrollmentStore};
pub use grants::{CodeRecord, ConsentRecord, GrantStore, Redeemed, RefreshRecord, Rotated};
pub use keys::{KeyRecord, KeyStore};
pub use lease::LeaderLock;
pub use links::{LinkPurpose, LinkRecord, UserLinkStore};
pub use meta::MetaStore;
pub use orgs::{OrgRecord, OrgStore};
pub use outbox::{Event, Outbox, StoredEvent};
pub use partners::{PartnerRecord, PartnerStore};
pub use policies::{PolicyRecord, PolicyStore};
pub use principals::{AdminTokenRecord, ApiKeyRecord, PrincipalStore, Rotation};
pub use replay::{Marker, ReplayStore, Revocation};
pub use sessions::{SessionRecord, SessionStore};
pub use transfers::{AcceptanceEvents, TransferRecord, TransferState, TransferStore};
pub use users::{
    InviteRecord, InviteState, MAX_PENDING_INVITES, Refused, UserChange, UserFilter, UserRecord,
    UserStatus, UserStore, WriteError, WriteResult,
};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    /// A unique constraint: `what` names the taken thing ("slug", "partner issuer", …), never the
    /// database's own text, so it may reach a client.
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    /// An optimistic-concurrency write found the row at another version than the one it read:
    /// someone changed it in between. Read it again and redo the change.
    #[error("the row changed since it was read")]
    Stale,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Other(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// The opened database. Cheap to clone (a pool is a handle).
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `body` once per backend with `pool` bound to that backend's pool (`&SqlitePool` or
/// `&PgPool`): the SQL is written once and compiled for both. The closure shape is only syntax
/// (it keeps rustfmt formatting the body); the body runs inline, so `?` and `return` leave the
/// enclosing function.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::storage::Db::Sqlite($pool) => $body,
            $crate::storage::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// Whose rows a statement may see and write under PostgreSQL's row-level security (see the
/// module documentation and `migrations/postgres/0007_rls.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    /// One organization's rows (`agentidp.org_id`).
    Org(&'a str),
    /// Every organization's rows (`agentidp.scope = 'platform'`): only for the platform-wide
    /// statements listed in the module documentation.
    Platform,
}

/// The role every pooled PostgreSQL connection runs as (created by [`open`] and by migration
/// `0007_rls`; roles are cluster-wide, so every agentidp database of a cluster shares it).
pub const APP_ROLE: &str = "agentidp_app";

/// An organization id that can be written into the `BEGIN` statement as a literal (ids are
/// generated UUIDs; anything else is bound as a parameter in a statement of its own).
fn literal_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A connection for the statements of one [`Scope`] that need no transaction of their own (one
/// read, a few reads, one single-statement write). On PostgreSQL it is a transaction whose first
/// statement set the scope: [`Scoped::finish`] commits a write; a read just drops it (sqlx queues
/// the `ROLLBACK` and sends it with the ping it makes when the connection goes back to the pool,
/// off the caller's path). On SQLite it is a pooled connection in autocommit, as before.
pub(crate) trait Scoped: Send {
    fn finish(self) -> impl std::future::Future<Output = StorageResult<()>> + Send;
}

impl Scoped for sqlx::pool::PoolConnection<sqlx::Sqlite> {
    async fn finish(self) -> StorageResult<()> {
        Ok(())
    }
}

impl Scoped for sqlx::Transaction<'static, sqlx::Postgres> {
    async fn finish(self) -> StorageResult<()> {
        self.commit().await.map_err(db_err)
    }
}

/// The one way store methods reach a pool, so that every PostgreSQL statement on tenant tables
/// runs in a transaction that set its [`Scope`] first. Written once per backend, used inside
/// [`on_db!`] bodies.
pub(crate) trait ScopedPool {
    type Db: sqlx::Database;
    type Conn: Scoped
        + std::ops::DerefMut<Target = <Self::Db as sqlx::Database>::Connection>
        + Send
        + 'static;
    /// A transaction in `scope` (PostgreSQL: `BEGIN` and the setting in one round trip).
    fn begin_in(
        &self,
        scope: Scope<'_>,
    ) -> impl std::future::Future<Output = StorageResult<sqlx::Transaction<'static, Self::Db>>> + Send;
    /// A connection in `scope` (see [`Scoped`]).
    fn scoped(
        &self,
        scope: Scope<'_>,
    ) -> impl std::future::Future<Output = StorageResult<Self::Conn>> + Send;
}

impl ScopedPool for SqlitePool {
    type Db = sqlx::Sqlite;
    type Conn = sqlx::pool::PoolConnection<sqlx::Sqlite>;
    async fn begin_in(
        &self,
        _: Scope<'_>,
    ) -> StorageResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.begin().await.map_err(db_err)
    }
    async fn scoped(&self, _: Scope<'_>) -> StorageResult<Self::Conn> {
        self.acquire().await.map_err(db_err)
    }
}

impl ScopedPool for PgPool {
    type Db = sqlx::Postgres;
    type Conn = sqlx::Transaction<'static, sqlx::Postgres>;
    async fn begin_in(
        &self,
        scope: Scope<'_>,
    ) -> StorageResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        match scope {
            Scope::Platform => self
                .begin_with("BEGIN; SELECT set_config('agentidp.scope', 'platform', true)")
                .await
                .map_err(db_err),
            // Audited: the id is checked to be letters, digits, '-' and '_' only.
            Scope::Org(id) if literal_safe(id) => self
                .begin_with(sqlx::AssertSqlSafe(format!(
                    "BEGIN; SELECT set_config('agentidp.org_id', '{id}', true)"
                )))
                .await
                .map_err(db_err),
            Scope::Org(id) => {
                let mut tx = self.begin().await.map_err(db_err)?;
                sqlx::query("SELECT set_config('agentidp.org_id', $1, true)")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                Ok(tx)
            }
        }
    }
    async fn scoped(&self, scope: Scope<'_>) -> StorageResult<Self::Conn> {
        self.begin_in(scope).await
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Opens the database named by `url` (`sqlite:` or `postgres:`). Does not migrate. A failure
/// says what could not be opened and why, never the URL's password: the PostgreSQL host, port
/// and database with the server's or the socket's reason (one direct connection is tried first,
/// so a refused connection is reported at once instead of as a pool timeout), the SQLite file's
/// path.
pub async fn open(url: &str) -> StorageResult<Db> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        use sqlx::Connection;
        let opts = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| StorageError::Other(format!("invalid PostgreSQL URL: {e}")))?;
        let probe = tokio::time::timeout(
            PG_CONNECT_TIMEOUT,
            sqlx::postgres::PgConnection::connect_with(&opts),
        )
        .await
        .map_err(|_| {
            StorageError::Unavailable(format!(
                "no answer from PostgreSQL at {} within {} s",
                pg_where(&opts),
                PG_CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| pg_connect_error(&opts, e))?;
        let mut probe = probe;
        let ensured = ensure_app_role(&mut probe).await;
        let _ = probe.close().await;
        ensured?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            // Every pooled connection runs as the application role, under row-level security.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("SET ROLE agentidp_app").await.map(|_| ())
                })
            })
            .connect_with(opts.clone())
            .await
            .map_err(|e| pg_connect_error(&opts, e))?;
        Ok(Db::Postgres(pool))
    } else if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StorageError::Other(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let file = opts.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| sqlite_open_error(&file, e))?;
        Ok(Db::Sqlite(pool))
    } else {
        Err(StorageError::Other(
            "database URL must start with sqlite: or postgres:".into(),
        ))
    }
}

/// Makes sure [`APP_ROLE`] exists, has neither `SUPERUSER` nor `BYPASSRLS`, and that the
/// connecting user may `SET ROLE` to it (granting itself the membership when it may), on the
/// direct connection as the connecting user, before the pool connects as that role. Roles are
/// cluster-wide and databases of one cluster may run this at the same moment: a role created
/// meanwhile by another is fine. A user that may not create the role or take it gets a message
/// saying what a superuser must run once.
async fn ensure_app_role(conn: &mut sqlx::postgres::PgConnection) -> StorageResult<()> {
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    let remedy = format!(
        "as a superuser run once per cluster: CREATE ROLE {APP_ROLE} NOLOGIN; GRANT {APP_ROLE} TO \"{user}\";"
    );
    let found: Option<(bool, bool)> =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(APP_ROLE)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    match found {
        Some((false, false)) => {}
        Some(_) => {
            return Err(StorageError::Other(format!(
                "the PostgreSQL role {APP_ROLE} has SUPERUSER or BYPASSRLS, which would switch \
                 row-level security off; run ALTER ROLE {APP_ROLE} NOSUPERUSER NOBYPASSRLS"
            )));
        }
        None => {
            let created = sqlx::query(
                "CREATE ROLE agentidp_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
            )
            .execute(&mut *conn)
            .await;
            match created {
                Ok(_) => {}
                // Created at the same moment by another database of this cluster.
                Err(sqlx::Error::Database(d))
                    if matches!(d.code().as_deref(), Some("42710" | "23505")) => {}
                Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42501") => {
                    return Err(StorageError::Unavailable(format!(
                        "PostgreSQL user {user:?} may not create the role {APP_ROLE} that agentidp \
                         runs its queries as (so that row-level security applies to them); {remedy}"
                    )));
                }
                Err(e) => return Err(db_err(e)),
            }
        }
    }
    let set_role = "SET ROLE agentidp_app";
    if sqlx::query(set_role).execute(&mut *conn).await.is_err() {
        // A user that created the role (CREATEROLE) may grant it to itself.
        let granted = sqlx::query("GRANT agentidp_app TO CURRENT_USER")
            .execute(&mut *conn)
            .await;
        if granted.is_err() || sqlx::query(set_role).execute(&mut *conn).await.is_err() {
            return Err(StorageError::Unavailable(format!(
                "PostgreSQL user {user:?} may not SET ROLE {APP_ROLE}, the role agentidp runs its \
                 queries as (so that row-level security applies to them); {remedy}"
            )));
        }
    }
    sqlx::query("RESET ROLE")
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// How long the first, direct connection to PostgreSQL may take.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The file a `sqlite:` URL names (`None` for an in-memory database or another scheme).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") {
        return None;
    }
    let opts = SqliteConnectOptions::from_str(url).ok()?;
    let file = opts.get_filename();
    let name = file.to_string_lossy();
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    (!in_memory && !name.is_empty() && !name.starts_with(':')).then(|| file.to_owned())
}

/// `host:port/database` of a PostgreSQL connection (never the user's password).
fn pg_where(opts: &sqlx::postgres::PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or(opts.get_username())
    )
}

/// A failed connection to PostgreSQL, with its cause: the socket's error, or the server's own
/// message (a missing database says how to create it).
fn pg_connect_error(opts: &sqlx::postgres::PgConnectOptions, e: sqlx::Error) -> StorageError {
    let at = pg_where(opts);
    match e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("3D000") => {
            let db = opts.get_database().unwrap_or(opts.get_username());
            StorageError::Unavailable(format!(
                "database {db:?} does not exist on {host}:{port}; create it with `createdb -h {host} -p {port} {db}`",
                host = opts.get_host(),
                port = opts.get_port(),
            ))
        }
        sqlx::Error::Database(d) => StorageError::Unavailable(format!(
            "PostgreSQL at {at} refused the connection: {} (SQLSTATE {})",
            d.message(),
            d.code().as_deref().unwrap_or("?")
        )),
        sqlx::Error::Io(io) => {
            StorageError::Unavailable(format!("cannot connect to PostgreSQL at {at}: {io}"))
        }
        sqlx::Error::Tls(t) => {
            StorageError::Unavailable(format!("TLS to PostgreSQL at {at} failed: {t}"))
        }
        other => {
            StorageError::Unavailable(format!("cannot connect to PostgreSQL at {at}: {other}"))
        }
    }
}

/// A SQLite file that could not be opened, named, with the usual cause of SQLite's terse code 14.
fn sqlite_open_error(file: &std::path::Path, e: sqlx::Error) -> StorageError {
    let reason = match &e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    };
    let hint = match &e {
        // SQLITE_CANTOPEN (14) and its extended codes.
        sqlx::Error::Database(d)
            if d.code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == 14) =>
        {
            " (its directory must exist and be writable by this user: SQLite creates the \
             -wal and -shm files next to it)"
        }
        _ => "",
    };
    StorageError::Unavailable(format!(
        "cannot open SQLite database {}: {reason}{hint}",
        file.display()
    ))
}

impl Db {
    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Applies the pending migrations of this backend's folder. On PostgreSQL they run on a
    /// direct connection as the connecting user (the schema's owner), not as the pool's
    /// application role.
    pub async fn migrate(&self) -> StorageResult<()> {
        let r = match self {
            Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            Db::Postgres(pool) => {
                let mut conn = owner_connection(pool).await?;
                let r = POSTGRES_MIGRATIONS.run(&mut conn).await;
                use sqlx::Connection;
                let _ = conn.close().await;
                r
            }
        };
        r.map_err(|e| StorageError::Other(format!("migration failed: {e}")))
    }

    /// The instance metadata `key` read before migrating (the master key's check value): as the
    /// connecting user on PostgreSQL (the application role has no rights on a database that is
    /// not migrated yet), and `None` when there is no `meta` table yet (a new database).
    pub async fn meta_before_migration(&self, key: &str) -> StorageResult<Option<String>> {
        const SQL: &str = "SELECT value FROM meta WHERE key = $1";
        let r: Result<Option<String>, sqlx::Error> = match self {
            Db::Sqlite(pool) => sqlx::query_scalar(SQL).bind(key).fetch_optional(pool).await,
            Db::Postgres(pool) => {
                let mut conn = owner_connection(pool).await?;
                let r = sqlx::query_scalar(SQL)
                    .bind(key)
                    .fetch_optional(&mut conn)
                    .await;
                use sqlx::Connection;
                let _ = conn.close().await;
                r
            }
        };
        match r {
            Ok(v) => Ok(v),
            Err(sqlx::Error::Database(d))
                if d.code().as_deref() == Some("42P01")
                    || d.message().contains("no such table") =>
            {
                Ok(None)
            }
            Err(e) => Err(db_err(e)),
        }
    }

    /// Exclusive leadership of this database's background jobs (see [`LeaderLock`]).
    pub fn leader_lock(&self) -> LeaderLock {
        LeaderLock::new(self)
    }

    /// One round trip (readiness).
    pub async fn ping(&self) -> StorageResult<()> {
        on_db!(self, |pool| {
            sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map_err(db_err)?;
        });
        Ok(())
    }
}

/// A direct connection to the pool's database as the connecting user (no `SET ROLE`).
async fn owner_connection(pool: &PgPool) -> StorageResult<sqlx::postgres::PgConnection> {
    use sqlx::Connection;
    let opts = pool.connect_options();
    tokio::time::timeout(
        PG_CONNECT_TIMEOUT,
        sqlx::postgres::PgConnection::connect_with(&opts),
    )
    .await
    .map_err(|_| {
        StorageError::Unavailable(format!(
            "no answer from PostgreSQL at {} within {} s",
            pg_where(&opts),
            PG_CONNECT_TIMEOUT.as_secs()
        ))
    })?
    .map_err(|e| pg_connect_error(&opts, e))
}

/// Every aggregate's store, built from one [`Db`]; what the rest of the code holds.
#[derive(Clone)]
pub struct Stores {
    pub orgs: Arc<dyn OrgStore>,
    pub agents: Arc<dyn AgentStore>,
    pub keys: Arc<dyn KeyStore>,
    pub partners: Arc<dyn PartnerStore>,
    pub principals: Arc<dyn PrincipalStore>,
    pub policies: Arc<dyn PolicyStore>,
    pub replay: Arc<dyn ReplayStore>,
    pub users: Arc<dyn UserStore>,
    pub enrollments: Arc<dyn EnrollmentStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub delegations: Arc<dyn DelegationStore>,
    pub grants: Arc<dyn GrantStore>,
    pub links: Arc<dyn UserLinkStore>,
    pub transfers: Arc<dyn TransferStore>,
    pub outbox: Arc<dyn Outbox>,
    pub meta: Arc<dyn MetaStore>,
}

impl Stores {
    pub fn new(db: Db) -> Self {
        Self {
            orgs: Arc::new(db.clone()),
            agents: Arc::new(db.clone()),
            keys: Arc::new(db.clone()),
            partners: Arc::new(db.clone()),
            principals: Arc::new(db.clone()),
            policies: Arc::new(db.clone()),
            replay: Arc::new(db.clone()),
            users: Arc::new(db.clone()),
            enrollments: Arc::new(db.clone()),
            sessions: Arc::new(db.clone()),
            delegations: Arc::new(db.clone()),
            grants: Arc::new(db.clone()),
            links: Arc::new(db.clone()),
            transfers: Arc::new(db.clone()),
            outbox: Arc::new(db.clone()),
            meta: Arc::new(db),
        }
    }
}

/// Maps a driver error. Statements whose unique constraint has a meaning name it with
/// [`conflict`]; any other unique violation is a `Conflict` on a "record" (still never the
/// database's text).
fn db_err(e: sqlx::Error) -> StorageError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StorageError::Conflict { what: "record" }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StorageError::Unavailable(e.to_string()),
        other => StorageError::Other(other.to_string()),
    }
}

/// For a statement whose unique constraint means "`what` is taken" (realworld's
/// `on_constraint`, decided where the statement is written): a unique violation becomes
/// `Conflict { what }`, anything else goes through [`db_err`].
fn conflict(what: &'static str) -> impl Fn(sqlx::Error) -> StorageError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StorageError::Conflict { what },
        _ => db_err(e),
    }
}

/// A JSON array of strings as stored in a TEXT column.
fn to_json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Parses a stored JSON column strictly; `what` names it in the error.
fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> StorageResult<T> {
    serde_json::from_str(s).map_err(|_| StorageError::Other(format!("stored {what} is not valid")))
}

/// Parses a stored enum column strictly.
fn parse_stored<T>(s: &str, what: &str, parse: impl FnOnce(&str) -> Option<T>) -> StorageResult<T> {
    parse(s).ok_or_else(|| StorageError::Other(format!("stored {what} {s:?} is unknown")))
}

#[cfg(test)]
pub(crate) mod testing {
    //! A fresh SQLite database per test (a temporary file, removed on drop).

    use super::*;

    pub struct TempDb {
        pub db: Db,
        dir: std::path::PathBuf,
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub async fn temp_db() -> TempDb {
        let dir =
            std::env::temp_dir().join(format!("agentidp-unit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = open(&format!("sqlite://{}/t.db", dir.display()))
            .await
            .expect("open");
        db.migrate().await.expect("migrate");
        TempDb { db, dir }
    }

    pub fn event(org_id: Option<&str>, kind: &'static str, subject: &str, at: i64) -> Event {
        Event {
            org_id: org_id.map(Into::into),
            kind,
            subject: subject.to_owned(),
            data: serde_json::json!({"n": at}),
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[tokio::test]
    async fn open_migrate_ping() {
        let t = temp_db().await;
        assert_eq!(t.db.backend(), "sqlite");
        t.db.migrate().await.expect("a second migration is a no-op");
        t.db.ping().await.unwrap();
        assert!(matches!(
            open("mysql://x").await,
            Err(StorageError::Other(_))
        ));
    }

    /// An unopenable SQLite file is named in the error (SQLite's own text is only `unable to
    /// open database file`).
    #[tokio::test]
    async fn an_unopenable_sqlite_file_is_named() {
        let dir =
            std::env::temp_dir().join(format!("agentidp-nodir-{}", uuid::Uuid::new_v4().simple()));
        let file = dir.join("missing").join("x.db");
        let e = open(&format!("sqlite://{}", file.display()))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains("writable"), "{msg}");
        assert_eq!(
            sqlite_file(&format!("sqlite://{}", file.display())),
            Some(file)
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
    }

    /// A PostgreSQL port nobody listens on is "connection refused" at once, not a pool timeout.
    #[tokio::test]
    async fn a_dead_postgres_port_is_refused_at_once() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let started = std::time::Instant::now();
        let e = open(&format!("postgres://u:hunter2@127.0.0.1:{port}/x"))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
        assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    /// A missing PostgreSQL database is named with the command that creates it (needs
    /// `AGENTIDP_TEST_DATABASE_URL`; skipped without it).
    #[tokio::test]
    async fn a_missing_postgres_database_says_how_to_create_it() {
        let Ok(base) = std::env::var("AGENTIDP_TEST_DATABASE_URL") else {
            return;
        };
        let mut url = url::Url::parse(&base).unwrap();
        let name = format!("agentidp_missing_{}", uuid::Uuid::new_v4().simple());
        url.set_path(&name);
        let msg = open(url.as_str()).await.unwrap_err().to_string();
        assert!(
            msg.contains(&format!("database \"{name}\" does not exist on")),
            "{msg}"
        );
        assert!(msg.contains("createdb") && msg.contains(&name), "{msg}");
        assert!(!msg.contains("at line"), "{msg}");
    }

    #[test]
    fn stored_values_parse_strictly() {
        assert_eq!(
            from_json::<Vec<String>>(r#"["a","b"]"#, "scopes").unwrap(),
            ["a", "b"]
        );
        assert!(matches!(
            from_json::<Vec<String>>("{", "scopes"),
            Err(StorageError::Other(_))
        ));
        assert!(matches!(
            parse_stored("paused", "status", crate::model::AgentStatus::parse),
            Err(StorageError::Other(m)) if m.contains("paused")
        ));
        assert_eq!(to_json_list(&["x".into()]), r#"["x"]"#);
    }
}
