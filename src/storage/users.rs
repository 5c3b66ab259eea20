//! People of an organization (`users`, a tenant table) and invites to become one (`invites`).
//!
//! The rules that need more than one row are enforced here, inside the transaction of the
//! write, so they hold under concurrent requests on every backend:
//! - the last active owner of an organization is neither demoted, suspended nor deleted: every
//!   change of a user first locks the organization's row (a no-op `UPDATE orgs`: a row lock on
//!   PostgreSQL, the database's one write lock on SQLite), writes only if the user still has the
//!   role and status the caller decided on (`expected`), and counts the active owners left
//!   before it commits;
//! - at most [`MAX_PENDING_INVITES`] pending invites per address across the instance: the count
//!   and the insert run in one platform-scope transaction, serialized per address by a
//!   transaction-level advisory lock on PostgreSQL (and by the write lock on SQLite);
//! - an invite is used once: accepting and declining are an `UPDATE ... WHERE state =
//!   'pending'` that only one transaction can win, and the account is created in the same
//!   transaction as the acceptance.

use async_trait::async_trait;

use super::outbox::{self, Event};
use super::{
    Db, Scope, ScopedPool, StorageError, StorageResult, conflict, db_err, on_db, parse_stored,
};
pub use crate::model::UserStatus;
use crate::model::{OrgId, Role};

/// The most pending (not expired, not accepted, declined or revoked) invites one email address
/// may have across the instance (every organization).
pub const MAX_PENDING_INVITES: i64 = 100;

/// A user account as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub org_id: OrgId,
    pub id: String,
    /// As given (trimmed).
    pub email: String,
    /// Trimmed and lower-cased: unique per organization.
    pub email_normalized: String,
    pub name: String,
    /// `owner`, `admin` or `member` (never `scim`).
    pub role: Role,
    pub status: UserStatus,
    /// An argon2id PHC string; `None`: no password set (cannot sign in with one).
    pub password_hash: Option<String>,
    pub email_verified: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the person last set their password through a reset link (`None`: never): sessions
    /// that began before it are over.
    pub password_changed_at: Option<i64>,
}

/// What [`UserStore::list_users`] keeps.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// The normalized email, compared exactly.
    pub email: Option<String>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

/// The mutable fields of a user, as they are to be after a change.
#[derive(Debug, Clone)]
pub struct UserChange {
    pub name: String,
    pub role: Role,
    pub status: UserStatus,
    pub updated_at: i64,
}

/// The state of an invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    Pending,
    Accepted,
    Declined,
    Revoked,
}

impl InviteState {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteState::Pending => "pending",
            InviteState::Accepted => "accepted",
            InviteState::Declined => "declined",
            InviteState::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => InviteState::Pending,
            "accepted" => InviteState::Accepted,
            "declined" => InviteState::Declined,
            "revoked" => InviteState::Revoked,
            _ => return None,
        })
    }
}

/// An invite as stored: never its token, only a keyed digest of it.
#[derive(Debug, Clone, PartialEq)]
pub struct InviteRecord {
    pub org_id: OrgId,
    pub id: String,
    pub email: String,
    pub email_normalized: String,
    pub role: Role,
    pub digest: Vec<u8>,
    pub digest_version: i64,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: i64,
    pub state: InviteState,
    pub closed_at: Option<i64>,
    pub user_id: Option<String>,
}

/// Why a write was refused by a rule of the data (not a storage failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The change would leave the organization without an active owner.
    LastOwner,
    /// The address already has [`MAX_PENDING_INVITES`] pending invites.
    TooManyInvites,
    /// The address already has a pending invite of this organization (one each: one tenant
    /// alone cannot fill an address's instance-wide cap and block every other, review finding).
    AlreadyInvited,
    /// The address is already a user of the organization.
    AlreadyMember,
    /// The invite is no longer pending (accepted, declined, revoked) or has expired.
    InviteClosed,
    /// The link is used or expired, or its user is gone, suspended or has another address.
    LinkClosed,
    /// The organization already has a pending ownership transfer.
    TransferPending,
    /// The transfer is no longer pending (accepted, revoked) or has expired.
    TransferClosed,
    /// The person named by a transfer is not (or no longer) an active admin or member.
    NotEligible,
}

/// A write's outcome: done, refused by a rule, or a storage error.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("refused: {0:?}")]
    Refused(Refused),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Storage(db_err(e))
    }
}

pub type WriteResult<T> = Result<T, WriteError>;

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// `Conflict { what: "a user with this email" }` when the normalized email is taken.
    async fn create_user(&self, user: &UserRecord, event: &Event) -> StorageResult<()>;
    /// The user with this id in this organization.
    async fn user(&self, org_id: &str, id: &str) -> StorageResult<Option<UserRecord>>;
    /// The organization's users passing `filter`, by id, after the cursor.
    async fn list_users(
        &self,
        org_id: &str,
        filter: &UserFilter,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<UserRecord>>;
    /// Writes `change` if the user still has the `expected` role and status (`Stale`
    /// otherwise, `NotFound` if it is gone); refused with [`Refused::LastOwner`] when that
    /// leaves no active owner while it was one.
    async fn update_user(
        &self,
        org_id: &str,
        id: &str,
        expected: (Role, UserStatus),
        change: &UserChange,
        event: &Event,
    ) -> WriteResult<UserRecord>;
    /// Deletes the user under the same conditions as [`UserStore::update_user`].
    async fn delete_user(
        &self,
        org_id: &str,
        id: &str,
        expected: (Role, UserStatus),
        event: &Event,
    ) -> WriteResult<()>;

    /// Records a new pending invite, refused when the address is a user of the organization or
    /// has [`MAX_PENDING_INVITES`] pending invites (not expired at `now`) across the instance.
    async fn create_invite(&self, invite: &InviteRecord, now: i64) -> WriteResult<()>;
    async fn invite(&self, org_id: &str, id: &str) -> StorageResult<Option<InviteRecord>>;
    /// Pending invites not expired at `now`, by id, after the cursor.
    async fn pending_invites(
        &self,
        org_id: &str,
        now: i64,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<InviteRecord>>;
    /// Closes a pending invite (not expired at `at`) as `state` (declined or revoked);
    /// [`Refused::InviteClosed`] when it is not pending any more.
    async fn close_invite(
        &self,
        org_id: &str,
        id: &str,
        state: InviteState,
        at: i64,
    ) -> WriteResult<()>;
    /// Accepts a pending invite (not expired at `at`) and creates `user` in the same
    /// transaction: [`Refused::InviteClosed`] when another request came first (or it expired),
    /// `Conflict` when the email became a user meanwhile (the invite stays pending).
    async fn accept_invite(
        &self,
        org_id: &str,
        id: &str,
        user: &UserRecord,
        at: i64,
        event: &Event,
    ) -> WriteResult<()>;
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    org_id: String,
    id: String,
    email: String,
    email_normalized: String,
    name: String,
    role: String,
    status: String,
    password_hash: Option<String>,
    email_verified: i64,
    created_at: i64,
    updated_at: i64,
    password_changed_at: Option<i64>,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = StorageError;
    fn try_from(r: UserRow) -> StorageResult<Self> {
        Ok(UserRecord {
            role: parse_stored(&r.role, "user role", Role::parse)?,
            status: parse_stored(&r.status, "user status", UserStatus::parse)?,
            email_verified: match r.email_verified {
                0 => false,
                1 => true,
                _ => {
                    return Err(StorageError::Other(
                        "stored email_verified is not 0 or 1".into(),
                    ));
                }
            },
            org_id: r.org_id.into(),
            id: r.id,
            email: r.email,
            email_normalized: r.email_normalized,
            name: r.name,
            password_hash: r.password_hash,
            created_at: r.created_at,
            updated_at: r.updated_at,
            password_changed_at: r.password_changed_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct InviteRow {
    org_id: String,
    id: String,
    email: String,
    email_normalized: String,
    role: String,
    digest: Vec<u8>,
    digest_version: i64,
    created_at: i64,
    created_by: String,
    expires_at: i64,
    state: String,
    closed_at: Option<i64>,
    user_id: Option<String>,
}

impl TryFrom<InviteRow> for InviteRecord {
    type Error = StorageError;
    fn try_from(r: InviteRow) -> StorageResult<Self> {
        Ok(InviteRecord {
            role: parse_stored(&r.role, "invite role", Role::parse)?,
            state: parse_stored(&r.state, "invite state", InviteState::parse)?,
            org_id: r.org_id.into(),
            id: r.id,
            email: r.email,
            email_normalized: r.email_normalized,
            digest: r.digest,
            digest_version: r.digest_version,
            created_at: r.created_at,
            created_by: r.created_by,
            expires_at: r.expires_at,
            closed_at: r.closed_at,
            user_id: r.user_id,
        })
    }
}

macro_rules! user_columns {
    () => {
        "org_id, id, email, email_normalized, name, role, status, password_hash, email_verified, \
         created_at, updated_at, password_changed_at"
    };
}

macro_rules! invite_columns {
    () => {
        "org_id, id, email, email_normalized, role, digest, digest_version, created_at, \
         created_by, expires_at, state, closed_at, user_id"
    };
}

const EMAIL_TAKEN: &str = "a user with this email";

/// Locks the organization's row for the rest of the transaction (see the module documentation):
/// the first statement of every transaction that changes a user, so that it also holds SQLite's
/// write lock before it reads anything.
macro_rules! lock_org {
    ($tx:expr, $org_id:expr) => {
        sqlx::query("UPDATE orgs SET updated_at = updated_at WHERE id = $1")
            .bind($org_id)
            .execute(&mut *$tx)
            .await
            .map_err(db_err)?
    };
}

macro_rules! insert_user {
    ($tx:expr, $u:expr) => {
        sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind($u.org_id.as_str())
        .bind(&$u.id)
        .bind(&$u.email)
        .bind(&$u.email_normalized)
        .bind(&$u.name)
        .bind($u.role.as_str())
        .bind($u.status.as_str())
        .bind(&$u.password_hash)
        .bind(i64::from($u.email_verified))
        .bind($u.created_at)
        .bind($u.updated_at)
        .bind($u.password_changed_at)
        .execute(&mut *$tx)
        .await
        .map_err(conflict(EMAIL_TAKEN))?
    };
}

/// After a change that removed an active owner: how many are left (the transaction's view).
macro_rules! active_owners {
    ($tx:expr, $org_id:expr) => {{
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE org_id = $1 AND role = 'owner' AND status = 'active'",
        )
        .bind($org_id)
        .fetch_one(&mut *$tx)
        .await
        .map_err(db_err)?;
        n
    }};
}

/// Whether the user (when it exists) no longer has the expected role and status.
macro_rules! missing_or_stale {
    ($tx:expr, $org_id:expr, $id:expr) => {{
        let found: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE org_id = $1 AND id = $2")
                .bind($org_id)
                .bind($id)
                .fetch_one(&mut *$tx)
                .await
                .map_err(db_err)?;
        if found > 0 {
            StorageError::Stale
        } else {
            StorageError::NotFound
        }
    }};
}

pub(super) use {active_owners, lock_org, user_columns};

fn was_active_owner(expected: (Role, UserStatus)) -> bool {
    expected == (Role::Owner, UserStatus::Active)
}

#[async_trait]
impl UserStore for Db {
    async fn create_user(&self, u: &UserRecord, event: &Event) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(u.org_id.as_str())).await?;
            insert_user!(tx, u);
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn user(&self, org_id: &str, id: &str) -> StorageResult<Option<UserRecord>> {
        let row: Option<UserRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn list_users(
        &self,
        org_id: &str,
        f: &UserFilter,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<UserRecord>> {
        let rows: Vec<UserRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE org_id = $1 AND id > $2 \
                 AND ($4 IS NULL OR email_normalized = $4) \
                 AND ($5 IS NULL OR role = $5) \
                 AND ($6 IS NULL OR status = $6) \
                 ORDER BY id LIMIT $3"
            ))
            .bind(org_id)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .bind(f.email.as_deref())
            .bind(f.role.map(Role::as_str))
            .bind(f.status.map(UserStatus::as_str))
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn update_user(
        &self,
        org_id: &str,
        id: &str,
        expected: (Role, UserStatus),
        ch: &UserChange,
        event: &Event,
    ) -> WriteResult<UserRecord> {
        let row: UserRow = on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            lock_org!(tx, org_id);
            let row: Option<UserRow> = sqlx::query_as(concat!(
                "UPDATE users SET name = $5, role = $6, status = $7, updated_at = $8 \
                 WHERE org_id = $1 AND id = $2 AND role = $3 AND status = $4 RETURNING ",
                user_columns!()
            ))
            .bind(org_id)
            .bind(id)
            .bind(expected.0.as_str())
            .bind(expected.1.as_str())
            .bind(&ch.name)
            .bind(ch.role.as_str())
            .bind(ch.status.as_str())
            .bind(ch.updated_at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some(row) = row else {
                return Err(missing_or_stale!(tx, org_id, id).into());
            };
            let still = (ch.role, ch.status) == (Role::Owner, UserStatus::Active);
            if was_active_owner(expected) && !still && active_owners!(tx, org_id) == 0 {
                return Err(WriteError::Refused(Refused::LastOwner));
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)?;
            row
        });
        Ok(row.try_into()?)
    }

    async fn delete_user(
        &self,
        org_id: &str,
        id: &str,
        expected: (Role, UserStatus),
        event: &Event,
    ) -> WriteResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            lock_org!(tx, org_id);
            let done = sqlx::query(
                "DELETE FROM users WHERE org_id = $1 AND id = $2 AND role = $3 AND status = $4",
            )
            .bind(org_id)
            .bind(id)
            .bind(expected.0.as_str())
            .bind(expected.1.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err(missing_or_stale!(tx, org_id, id).into());
            }
            if was_active_owner(expected) && active_owners!(tx, org_id) == 0 {
                return Err(WriteError::Refused(Refused::LastOwner));
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)?;
        });
        Ok(())
    }

    async fn create_invite(&self, i: &InviteRecord, now: i64) -> WriteResult<()> {
        let postgres = self.backend() == "postgres";
        on_db!(self, |pool| {
            // Platform scope: the cap counts the address's invites of every organization.
            let mut tx = pool.begin_in(Scope::Platform).await?;
            lock_org!(tx, i.org_id.as_str());
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(&i.email_normalized)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            let member: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM users WHERE org_id = $1 AND email_normalized = $2",
            )
            .bind(i.org_id.as_str())
            .bind(&i.email_normalized)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if member > 0 {
                return Err(WriteError::Refused(Refused::AlreadyMember));
            }
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM invites WHERE email_normalized = $1 AND state = 'pending' \
                 AND expires_at > $2 \
                 AND org_id IN (SELECT id FROM orgs WHERE deleted_at IS NULL)",
            )
            .bind(&i.email_normalized)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            let here: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM invites WHERE org_id = $1 AND email_normalized = $2 \
                 AND state = 'pending' AND expires_at > $3",
            )
            .bind(i.org_id.as_str())
            .bind(&i.email_normalized)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if here > 0 {
                return Err(WriteError::Refused(Refused::AlreadyInvited));
            }
            if pending >= MAX_PENDING_INVITES {
                return Err(WriteError::Refused(Refused::TooManyInvites));
            }
            sqlx::query(concat!(
                "INSERT INTO invites (",
                invite_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ))
            .bind(i.org_id.as_str())
            .bind(&i.id)
            .bind(&i.email)
            .bind(&i.email_normalized)
            .bind(i.role.as_str())
            .bind(&i.digest)
            .bind(i.digest_version)
            .bind(i.created_at)
            .bind(&i.created_by)
            .bind(i.expires_at)
            .bind(i.state.as_str())
            .bind(i.closed_at)
            .bind(&i.user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
        });
        Ok(())
    }

    async fn invite(&self, org_id: &str, id: &str) -> StorageResult<Option<InviteRecord>> {
        let row: Option<InviteRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                invite_columns!(),
                " FROM invites WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn pending_invites(
        &self,
        org_id: &str,
        now: i64,
        after: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<InviteRecord>> {
        let rows: Vec<InviteRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                invite_columns!(),
                " FROM invites WHERE org_id = $1 AND state = 'pending' AND expires_at > $2 \
                 AND id > $3 ORDER BY id LIMIT $4"
            ))
            .bind(org_id)
            .bind(now)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn close_invite(
        &self,
        org_id: &str,
        id: &str,
        state: InviteState,
        at: i64,
    ) -> WriteResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let done = sqlx::query(
                "UPDATE invites SET state = $3, closed_at = $4 \
                 WHERE org_id = $1 AND id = $2 AND state = 'pending' AND expires_at > $4",
            )
            .bind(org_id)
            .bind(id)
            .bind(state.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err(WriteError::Refused(Refused::InviteClosed));
            }
            tx.commit().await.map_err(db_err)?;
        });
        Ok(())
    }

    async fn accept_invite(
        &self,
        org_id: &str,
        id: &str,
        user: &UserRecord,
        at: i64,
        event: &Event,
    ) -> WriteResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            // The first statement writes: only one of two concurrent acceptances gets the row
            // (PostgreSQL re-checks `state` after waiting for the other's lock).
            let done = sqlx::query(
                "UPDATE invites SET state = 'accepted', closed_at = $3, user_id = $4 \
                 WHERE org_id = $1 AND id = $2 AND state = 'pending' AND expires_at > $3",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .bind(&user.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err(WriteError::Refused(Refused::InviteClosed));
            }
            insert_user!(tx, user);
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::storage::{OrgStore, Outbox};

    async fn org(db: &Db) -> OrgId {
        let id = OrgId::from(uuid::Uuid::new_v4().to_string());
        let rec = crate::storage::OrgRecord {
            id: id.clone(),
            slug: format!("s{}", uuid::Uuid::new_v4().simple()),
            name: "n".into(),
            issuer: format!("https://x/{}", uuid::Uuid::new_v4()),
            did: format!("did:web:x:{}", uuid::Uuid::new_v4()),
            dek_wrapped: vec![1],
            dek_mk_version: 1,
            created_at: 1,
            updated_at: 1,
        };
        OrgStore::create(
            db,
            &rec,
            &[],
            &event(Some(id.as_str()), "org.created", "o", 1),
        )
        .await
        .unwrap();
        id
    }

    fn user(org_id: &OrgId, role: Role, email: &str) -> UserRecord {
        UserRecord {
            org_id: org_id.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            email: email.into(),
            email_normalized: email.to_lowercase(),
            name: "n".into(),
            role,
            status: UserStatus::Active,
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            email_verified: true,
            created_at: 2,
            updated_at: 2,
            password_changed_at: None,
        }
    }

    async fn kinds(db: &Db) -> Vec<String> {
        Outbox::after(db, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    #[tokio::test]
    async fn changes_write_their_event_and_refusals_nothing() {
        let t = temp_db().await;
        let db = &t.db;
        let o = org(db).await;
        let ev = |k| event(Some(o.as_str()), k, "u", 3);
        let a = user(&o, Role::Owner, "A@x.example");
        db.create_user(&a, &ev("user.created")).await.unwrap();
        assert_eq!(db.user(&o, &a.id).await.unwrap(), Some(a.clone()));
        let twin = user(&o, Role::Member, "a@X.example");
        assert!(matches!(
            db.create_user(&twin, &ev("user.created")).await,
            Err(StorageError::Conflict { what: EMAIL_TAKEN })
        ));
        // The last active owner stays one; the refusal writes neither the change nor its event.
        let demote = UserChange {
            name: "n".into(),
            role: Role::Member,
            status: UserStatus::Active,
            updated_at: 4,
        };
        let owner = (Role::Owner, UserStatus::Active);
        assert!(matches!(
            db.update_user(&o, &a.id, owner, &demote, &ev("user.updated"))
                .await,
            Err(WriteError::Refused(Refused::LastOwner))
        ));
        assert!(matches!(
            db.delete_user(&o, &a.id, owner, &ev("user.deleted")).await,
            Err(WriteError::Refused(Refused::LastOwner))
        ));
        assert_eq!(db.user(&o, &a.id).await.unwrap(), Some(a.clone()));
        // The caller's view of the user is stale: nothing written.
        assert!(matches!(
            db.update_user(
                &o,
                &a.id,
                (Role::Admin, UserStatus::Active),
                &demote,
                &ev("user.updated")
            )
            .await,
            Err(WriteError::Storage(StorageError::Stale))
        ));
        assert!(matches!(
            db.delete_user(&o, "nobody", owner, &ev("user.deleted"))
                .await,
            Err(WriteError::Storage(StorageError::NotFound))
        ));
        assert_eq!(kinds(db).await, ["org.created", "user.created"]);
        // With a second owner the first one goes.
        let b = user(&o, Role::Owner, "b@x.example");
        db.create_user(&b, &ev("user.created")).await.unwrap();
        let done = db
            .update_user(&o, &a.id, owner, &demote, &ev("user.updated"))
            .await
            .unwrap();
        assert_eq!((done.role, done.updated_at), (Role::Member, 4));
        db.delete_user(
            &o,
            &a.id,
            (Role::Member, UserStatus::Active),
            &ev("user.deleted"),
        )
        .await
        .unwrap();
        assert_eq!(
            kinds(db).await,
            [
                "org.created",
                "user.created",
                "user.created",
                "user.updated",
                "user.deleted"
            ]
        );
        // Another organization sees none of it.
        let other = org(db).await;
        assert_eq!(db.user(&other, &b.id).await.unwrap(), None);
        let all = UserFilter::default();
        assert!(
            db.list_users(&other, &all, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(db.list_users(&o, &all, None, 10).await.unwrap(), [b]);
    }
}
