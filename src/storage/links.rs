//! Single-use links of a user (`user_links`, a tenant table): email verification and password
//! reset. Only a keyed digest of a link's token is stored. A link is used once: using it is an
//! `UPDATE ... WHERE used_at IS NULL AND expires_at > now` that only one transaction can win,
//! and what it does to the user happens in the same transaction.

use async_trait::async_trait;

use super::outbox::{self, Event};
use super::users::{Refused, UserRecord, WriteError, WriteResult, user_columns};
use super::{Db, Scope, ScopedPool, StorageError, StorageResult, db_err, on_db, parse_stored};
use crate::model::OrgId;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Marks the address verified.
    VerifyEmail,
    /// Sets a new password (and marks the address verified: the link went to it).
    PasswordReset,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::VerifyEmail => "verify_email",
            LinkPurpose::PasswordReset => "password_reset",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "verify_email" => LinkPurpose::VerifyEmail,
            "password_reset" => LinkPurpose::PasswordReset,
            _ => return None,
        })
    }
}

/// A link as stored: never its token.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRecord {
    pub org_id: OrgId,
    pub id: String,
    pub user_id: String,
    pub purpose: LinkPurpose,
    /// The address it was made for: it changes nothing for a user with another one.
    pub email_normalized: String,
    pub digest: Vec<u8>,
    pub digest_version: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

#[async_trait]
pub trait UserLinkStore: Send + Sync + 'static {
    /// Records a new link, and forgets the user's used or expired links of that purpose (so
    /// the table holds per user only what the rate limits let through in one lifetime).
    async fn create_link(&self, link: &LinkRecord) -> StorageResult<()>;
    async fn link(&self, org_id: &str, id: &str) -> StorageResult<Option<LinkRecord>>;
    /// Uses an unused link not expired at `at`: for [`LinkPurpose::VerifyEmail`] marks the
    /// user's address verified; for [`LinkPurpose::PasswordReset`] sets `password_hash`,
    /// `password_changed_at = at`, marks the address verified and ends every other unused
    /// reset link of the user. [`Refused::LinkClosed`] when the link is used, expired, or its
    /// user is gone, suspended or has another address now (nothing is written then).
    async fn use_link(
        &self,
        org_id: &str,
        id: &str,
        password_hash: Option<&str>,
        at: i64,
        event: &Event,
    ) -> WriteResult<UserRecord>;
}

#[derive(sqlx::FromRow)]
struct LinkRow {
    org_id: String,
    id: String,
    user_id: String,
    purpose: String,
    email_normalized: String,
    digest: Vec<u8>,
    digest_version: i64,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl TryFrom<LinkRow> for LinkRecord {
    type Error = StorageError;
    fn try_from(r: LinkRow) -> StorageResult<Self> {
        Ok(LinkRecord {
            purpose: parse_stored(&r.purpose, "link purpose", LinkPurpose::parse)?,
            org_id: r.org_id.into(),
            id: r.id,
            user_id: r.user_id,
            email_normalized: r.email_normalized,
            digest: r.digest,
            digest_version: r.digest_version,
            created_at: r.created_at,
            expires_at: r.expires_at,
            used_at: r.used_at,
        })
    }
}

macro_rules! link_columns {
    () => {
        "org_id, id, user_id, purpose, email_normalized, digest, digest_version, created_at, \
         expires_at, used_at"
    };
}

#[async_trait]
impl UserLinkStore for Db {
    async fn create_link(&self, l: &LinkRecord) -> StorageResult<()> {
        on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(l.org_id.as_str())).await?;
            sqlx::query(
                "DELETE FROM user_links WHERE org_id = $1 AND user_id = $2 AND purpose = $3 \
                 AND (used_at IS NOT NULL OR expires_at <= $4)",
            )
            .bind(l.org_id.as_str())
            .bind(&l.user_id)
            .bind(l.purpose.as_str())
            .bind(l.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(concat!(
                "INSERT INTO user_links (",
                link_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(l.org_id.as_str())
            .bind(&l.id)
            .bind(&l.user_id)
            .bind(l.purpose.as_str())
            .bind(&l.email_normalized)
            .bind(&l.digest)
            .bind(l.digest_version)
            .bind(l.created_at)
            .bind(l.expires_at)
            .bind(l.used_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)
        })
    }

    async fn link(&self, org_id: &str, id: &str) -> StorageResult<Option<LinkRecord>> {
        let row: Option<LinkRow> = on_db!(self, |pool| {
            let mut c = pool.scoped(Scope::Org(org_id)).await?;
            sqlx::query_as(concat!(
                "SELECT ",
                link_columns!(),
                " FROM user_links WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db_err)?
        });
        row.map(TryInto::try_into).transpose()
    }

    async fn use_link(
        &self,
        org_id: &str,
        id: &str,
        password_hash: Option<&str>,
        at: i64,
        event: &Event,
    ) -> WriteResult<UserRecord> {
        let row: super::users::UserRow = on_db!(self, |pool| {
            let mut tx = pool.begin_in(Scope::Org(org_id)).await?;
            // The first statement writes: only one of two concurrent uses gets the row.
            let claimed: Option<(String, String, String)> = sqlx::query_as(
                "UPDATE user_links SET used_at = $3 \
                 WHERE org_id = $1 AND id = $2 AND used_at IS NULL AND expires_at > $3 \
                 RETURNING user_id, purpose, email_normalized",
            )
            .bind(org_id)
            .bind(id)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some((user_id, purpose, email)) = claimed else {
                return Err(WriteError::Refused(Refused::LinkClosed));
            };
            let purpose = parse_stored(&purpose, "link purpose", LinkPurpose::parse)?;
            let reset = purpose == LinkPurpose::PasswordReset;
            if reset != password_hash.is_some() {
                return Err(WriteError::Refused(Refused::LinkClosed));
            }
            let user: Option<super::users::UserRow> = sqlx::query_as(concat!(
                "UPDATE users SET email_verified = 1, updated_at = $4, \
                 password_hash = CASE WHEN $5 THEN $6 ELSE password_hash END, \
                 password_changed_at = CASE WHEN $5 THEN $4 ELSE password_changed_at END \
                 WHERE org_id = $1 AND id = $2 AND email_normalized = $3 AND status = 'active' \
                 RETURNING ",
                user_columns!()
            ))
            .bind(org_id)
            .bind(&user_id)
            .bind(&email)
            .bind(at)
            .bind(reset)
            .bind(password_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some(user) = user else {
                return Err(WriteError::Refused(Refused::LinkClosed));
            };
            if reset {
                // Every other reset link of the user ends with this one (OWASP's Forgot
                // Password Cheat Sheet: using a token invalidates the outstanding ones).
                sqlx::query(
                    "UPDATE user_links SET used_at = $3 WHERE org_id = $1 AND user_id = $2 \
                     AND purpose = 'password_reset' AND used_at IS NULL",
                )
                .bind(org_id)
                .bind(&user_id)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            outbox::append(&mut tx, event).await?;
            tx.commit().await.map_err(db_err)?;
            user
        });
        Ok(row.try_into()?)
    }
}
