//! Ownership transfers (`ownership_transfers`, a tenant table): an owner names an active admin
//! or member, who accepts within a week. At most one pending per organization (a partial unique
//! index, and the check under the organization's lock). Accepting changes both roles in one
//! transaction, under the same organization lock as every change of a user (see
//! `storage::users`), and the last-owner rule is checked before it commits.

use async_trait::async_trait;

use super::outbox::{self, Event};
use super::users::{Refused, WriteError, WriteResult, active_owners, lock_org};
use super::{Db, Scope, ScopedPool, StorageError, StorageResult, db_err, on_db, parse_stored};
use crate::model::OrgId;

/// The state of a transfer as stored (a pending one past its expiry is shown as expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Pending => "pending",
            TransferState::Accepted => "accepted",
            TransferState::Revoked => "revoked",
            TransferState::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => TransferState::Pending,
            "accepted" => TransferState::Accepted,
            "revoked" => TransferState::Revoked,
            "expired" => TransferState::Expired,
            _ => return None,
        })
    }
}

/// A transfer as stored: never its token, only a keyed digest of it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRecord {
    pub org_id: OrgId,
    pub id: String,
    /// The person who becomes an owner.
    pub user_id: String,
    /// The owner who hands over and becomes an admin, when a person.
    pub from_user_id: Option<String>,
    /// The principal that started it (`platform`, `admin_token:ID`, `api_key:ID`).
    pub initiated_by: String,
    pub digest: Vec<u8>,
    pub digest_version: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub state: TransferState,
    pub closed_at: Option<i64>,
}

/// The events of an acceptance: the transfer's, the promotion's and, when the owner who
/// handed over was still one, the demotion's.
pub struct AcceptanceEvents {
    pub accepted: Event,
    pub promoted: Event,
    pub demoted: Option<Event>,
}

#[async_trait]
pub trait TransferStore: Send + Sync + 'static {
    /// Records a pending transfer: [`Refused::TransferPending`] when the organization has one
    /// (not expired at `t.created_at`; an expired one is closed as `expired` first),
    /// [`Refused::NotEligible`] when the named user is not an active admin or member.
    async fn create_transfer(&self, t: &TransferRecord, event: &Event) -> WriteResult<()>;
    async fn transfer(&self, org_id: &str, id: &str) -> StorageResult<Option<TransferRecord>>;
    /// The organization's pending transfer not expired at `now`.
    async fn pending_transfer(
        &self,
        org_id: &str,
        now: i64,
    ) -> StorageResult<Option<TransferRecord>>;
    /// Revokes the pending transfer (not expired at `at`); [`Refused::TransferClosed`] when it
    /// is not pending any more.
    async fn revoke_transfer(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        event: &Event,
    ) -> WriteResult<()>;
    /// Accepts it: the named user becomes an owner (refused with [`Refused::NotEligible`] when
    /// no longer an active admin or member), the owner who handed over (when it is still an
    /// active owner) an admin, the transfer `accepted`; all or nothing.
    /// [`Refused::TransferClosed`] when it is not pending any more (or expired at `at`).
    async fn accept_transfer(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        events: &AcceptanceEvents,
    ) -> WriteResult<()>;
}

#[derive(sqlx::FromRow)]
struct TransferRow {
    org_id: String,
    id: String,
    user_id: String,
    from_user_id: Option<String>,
    initiated_by: String,
    digest: Vec<u8>,
    digest_version: i64,
    created_at: i64,
    expires_at: i64,
    state: String,
    closed_at: Option<i64>,
}

impl TryFrom<TransferRow> for TransferRecord {
    type Error = StorageError;
    fn try_from(r: TransferRow) -> StorageResult<Self> {
        Ok(TransferRecord {
            state: parse_stored(&r.state, "transfer state", TransferState::parse)?,
            org_id: r.org_id.into(),
            id: r.id,
            user_id: r.user_id,
            from_user_id: r.from_user_id,
            initiated_by: r.initiated_by,
            digest: r.digest,
            digest_version: r.digest_version,
            created_at: r.created_at,
            expires_at: r.expires_at,
            closed_at: r.closed_at,
        })
    }
}

macro_rules! transfer_columns {
    () => {
        "org_id, id, user_id, from_user_id, initiated_by, digest, digest_version, created_at, \
         expires_at, state, closed_at"
    };
}

#[async_trait]
impl TransferStore for Db {
    async fn create_transfer(&self, t: &TransferRecord, event: &Event) -> WriteResult<()> {
        let org_id = t.org_id.as_str();
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            lock_org!(tx, org_id);
            // A pending one that expired makes room (closed at its expiry).
            sqlx::query(
                "UPDATE ownership_transfers SET state = 'expired', closed_at = expires_at \
                 WHERE org_id = $1 AND state = 'pending' AND expires_at <= $2",
            )
            .bind(org_id)
            .bind(t.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM ownership_transfers WHERE org_id = $1 AND state = 'pending'",
            )
            .bind(org_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if pending > 0 {
                return Err(WriteError::Refused(Refused::TransferPending));
            }
            let eligible: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM users WHERE org_id = $1 AND id = $2 \
                 AND status = 'active' AND role IN ('admin', 'member')",
            )
            .bind(org_id)
            .bind(&t.user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if eligible == 0 {
                return Err(WriteError::Refused(Refused::NotEligible));
            }
            sqlx::query(concat!(
                "INSERT INTO ownership_transfers (",
                transfer_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ))
            .bind(org_id)
            .bind(&t.id)
            .bind(&t.user_id)
            .bind(&t.from_user_id)
            .bind(&t.initiated_by)
            .bind(&t.digest)
            .bind(t.digest_version)
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(t.state.as_str())
            .bind(t.closed_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match db_err(e) {
                // The partial unique index: another request created one meanwhile.
                StorageError::Conflict { .. } => WriteError::Refused(Refused::TransferPending),
                other => WriteError::Storage(other),
            })?;
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)?;
        });
        Ok(())
    }

    async fn transfer(&self, org_id: &str, id: &str) -> StorageResult<Option<TransferRecord>> {
        let row: Option<TransferRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                transfer_columns!(),
                " FROM ownership_transfers WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn pending_transfer(
        &self,
        org_id: &str,
        now: i64,
    ) -> StorageResult<Option<TransferRecord>> {
        let row: Option<TransferRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                transfer_columns!(),
                " FROM ownership_transfers WHERE org_id = $1 AND state = 'pending' \
                 AND expires_at > $2"
            ))
            .bind(org_id)
            .bind(now)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn revoke_transfer(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        event: &Event,
    ) -> WriteResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            let done = sqlx::query(
                "UPDATE ownership_transfers SET state = 'revoked', closed_at = $3 \
                 WHERE org_id = $1 AND id = $2 AND state = 'pending' AND expires_at > $3",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err(WriteError::Refused(Refused::TransferClosed));
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)?;
        });
        Ok(())
    }

    async fn accept_transfer(
        &self,
        org_id: &str,
        id: &str,
        at: i64,
        events: &AcceptanceEvents,
    ) -> WriteResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            lock_org!(tx, org_id);
            let claimed: Option<(String, Option<String>)> = sqlx::query_as(
                "UPDATE ownership_transfers SET state = 'accepted', closed_at = $3 \
                 WHERE org_id = $1 AND id = $2 AND state = 'pending' AND expires_at > $3 \
                 RETURNING user_id, from_user_id",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some((user_id, from_user_id)) = claimed else {
                return Err(WriteError::Refused(Refused::TransferClosed));
            };
            let promoted = sqlx::query(
                "UPDATE users SET role = 'owner', updated_at = $3 WHERE org_id = $1 AND id = $2 \
                 AND status = 'active' AND role IN ('admin', 'member')",
            )
            .bind(org_id)
            .bind(&user_id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if promoted.rows_affected() == 0 {
                return Err(WriteError::Refused(Refused::NotEligible));
            }
            outbox::append(&mut tx, &events.accepted).await?;
            outbox::append(&mut tx, &events.promoted).await?;
            if let Some(from) = &from_user_id {
                let demoted = sqlx::query(
                    "UPDATE users SET role = 'admin', updated_at = $3 WHERE org_id = $1 \
                     AND id = $2 AND role = 'owner' AND status = 'active'",
                )
                .bind(org_id)
                .bind(from)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                if demoted.rows_affected() > 0
                    && let Some(ev) = &events.demoted
                {
                    outbox::append(&mut tx, ev).await?;
                }
            }
            // The rule every change of a role keeps (the new owner counts).
            if active_owners!(tx, org_id) == 0 {
                return Err(WriteError::Refused(Refused::LastOwner));
            }
            tx.commit().await.map_err(db_err)?;
        });
        Ok(())
    }
}
