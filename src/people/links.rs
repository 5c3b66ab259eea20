//! Email verification and password reset by single-use links, and the mail of every people
//! link (invites, these, ownership transfers).
//!
//! A link is `{iss}/verify-email/{token}` ([`VERIFY_TTL_SECS`]) or
//! `{iss}/password-reset/{token}` ([`RESET_TTL_SECS`]); the token has the shape of every
//! credential of ours (`aidp_v_` or `aidp_r_` + the link's id + `_` + 256 random bits), only an
//! HMAC-SHA-256 digest of it is stored and compared in constant time, and it is never logged.
//! With SMTP configured the link is mailed to the user's address; without, the admin who asked
//! gets it in the answer, once. A link changes nothing when it is opened (mail scanners fetch
//! links): only the form it shows, submitted, uses it. Another organization's token, a
//! malformed or a wrong one are all [`LinkError::Unknown`].

use serde::Serialize;
use utoipa::ToSchema;

use super::may_manage;
use super::users::{People, event, password};
use crate::admin_error::AdminError;
use crate::mail::{Mail, MailError, MailSlot};
use crate::model::{Secret, rfc3339};
use crate::storage::{
    LinkPurpose, LinkRecord, OrgRecord, Refused, StorageError, UserFilter, UserRecord, UserStatus,
    WriteError,
};
use crate::tenancy::access::{Action, Principal};

/// How long an email verification link is valid: 24 hours.
pub const VERIFY_TTL_SECS: i64 = 24 * 3600;
/// How long a password reset link is valid: 30 minutes.
pub const RESET_TTL_SECS: i64 = 30 * 60;
const VERIFY_PREFIX: &str = "aidp_v_";
const RESET_PREFIX: &str = "aidp_r_";

/// The answer of `POST .../users/{id}/verify-email` and `.../password-reset`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkResponse {
    pub user_id: String,
    /// `verify_email` or `password_reset`.
    pub purpose: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Whether the link was mailed to the user's address (SMTP is configured).
    pub mailed: bool,
    /// The link, when it was not mailed: shown once, never again; whoever holds it may use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

pub fn view(l: &LinkRecord, url: Option<&Secret>) -> LinkResponse {
    LinkResponse {
        user_id: l.user_id.clone(),
        purpose: l.purpose.as_str().to_owned(),
        expires_at: rfc3339(l.expires_at),
        mailed: url.is_none(),
        url: url.map(|u| u.expose().to_owned()),
    }
}

/// Why a link's page refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No such link (malformed, unknown, wrong secret, another organization's or purpose's).
    #[error("no such link")]
    Unknown,
    /// Used, expired, or its user is gone, suspended or has another address now.
    #[error("this link is no longer valid")]
    Closed,
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    /// Mail cannot be taken right now (the queue is full): nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StorageError> for LinkError {
    fn from(e: StorageError) -> Self {
        LinkError::Internal(e.to_string())
    }
}

impl From<MailError> for AdminError {
    fn from(e: MailError) -> Self {
        match e {
            MailError::QueueFull | MailError::Stopped => AdminError::Unavailable(format!(
                "{e}; nothing was changed (the link would not have reached its recipient)"
            )),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

fn prefix(p: LinkPurpose) -> &'static str {
    match p {
        LinkPurpose::VerifyEmail => VERIFY_PREFIX,
        LinkPurpose::PasswordReset => RESET_PREFIX,
    }
}

fn path(p: LinkPurpose) -> &'static str {
    match p {
        LinkPurpose::VerifyEmail => "verify-email",
        LinkPurpose::PasswordReset => "password-reset",
    }
}

/// `{iss}/{path}/{token}`.
pub(crate) fn link_url(org: &OrgRecord, path: &str, token: &Secret) -> Secret {
    Secret::new(format!(
        "{}/{path}/{}",
        org.issuer.trim_end_matches('/'),
        token.expose()
    ))
}

impl People {
    /// A place in the mail queue when mail is configured (`Ok(None)`: it is not; the link
    /// goes back to the caller). Taken before anything is written, so a full queue changes
    /// nothing.
    pub(crate) fn mail_slot(&self) -> Result<Option<MailSlot>, MailError> {
        self.mail.as_ref().map(|q| q.reserve()).transpose()
    }

    /// With mail configured: refuses an address SMTP cannot deliver to (`field` names it),
    /// before anything is written.
    pub(crate) fn check_deliverable(
        &self,
        field: &'static str,
        addr: &str,
    ) -> Result<(), AdminError> {
        if self.mail.is_some() && !crate::mail::deliverable(addr) {
            return Err(AdminError::field(
                field,
                "is not an address mail can be delivered to",
            ));
        }
        Ok(())
    }

    /// Mails `body` (which holds `url`) through `slot`, or hands `url` back.
    pub(crate) fn deliver(
        slot: Option<MailSlot>,
        kind: &'static str,
        to: &str,
        subject: String,
        body: String,
        url: Secret,
    ) -> Option<Secret> {
        match slot {
            Some(slot) => {
                slot.send(Mail {
                    kind,
                    to: to.to_owned(),
                    subject,
                    body: Secret::new(body),
                });
                None
            }
            None => Some(url),
        }
    }

    /// Makes a link of `purpose` for `user` and mails it (or hands it back).
    async fn issue_link(
        &self,
        org: &OrgRecord,
        user: &UserRecord,
        purpose: LinkPurpose,
        slot: Option<MailSlot>,
    ) -> Result<(LinkRecord, Option<Secret>), StorageError> {
        let now = self.clock.now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let token = crate::tenancy::principals::new_token(prefix(purpose), &id);
        let ttl = match purpose {
            LinkPurpose::VerifyEmail => VERIFY_TTL_SECS,
            LinkPurpose::PasswordReset => RESET_TTL_SECS,
        };
        let link = LinkRecord {
            org_id: org.id.clone(),
            id,
            user_id: user.id.clone(),
            purpose,
            email_normalized: user.email_normalized.clone(),
            digest: self.digester.digest(token.expose()),
            digest_version: self.digester.version(),
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
        };
        self.links.create_link(&link).await?;
        let url = link_url(org, path(purpose), &token);
        let (subject, body) = match purpose {
            LinkPurpose::VerifyEmail => (
                format!("Confirm your email address for {}", org.name),
                format!(
                    "Hello {name},\n\nconfirm that {email} is your address for {org} by opening \
                     this link and pressing the button (valid for 24 hours):\n\n{url}\n\nIf you \
                     did not expect this message, ignore it.\n",
                    name = user.name,
                    email = user.email,
                    org = org.name,
                    url = url.expose(),
                ),
            ),
            LinkPurpose::PasswordReset => (
                format!("Reset your password for {}", org.name),
                format!(
                    "Hello {name},\n\nsomeone asked to reset the password of {email} at {org}. \
                     To choose a new one, open this link (valid for 30 minutes, once):\n\n{url}\
                     \n\nIf it was not you, ignore this message: your password stays as it is.\n",
                    name = user.name,
                    email = user.email,
                    org = org.name,
                    url = url.expose(),
                ),
            ),
        };
        let kind = purpose.as_str();
        Ok((
            link,
            Self::deliver(slot, kind, &user.email, subject, body, url),
        ))
    }

    /// After creating an account without a verified address: mails it a verification link
    /// (nothing without SMTP; the admin asks for one with `POST .../verify-email`).
    pub(crate) async fn verify_new_user(
        &self,
        org: &OrgRecord,
        user: &UserRecord,
        slot: Option<MailSlot>,
    ) {
        if slot.is_none() || user.email_verified {
            return;
        }
        if let Err(e) = self
            .issue_link(org, user, LinkPurpose::VerifyEmail, slot)
            .await
        {
            // The account exists; the admin can send the link again.
            tracing::warn!(error = %e, "the verification link of a new user could not be made");
        }
    }

    /// An admin's `POST .../users/{id}/verify-email` or `.../password-reset`.
    pub async fn send_link(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        user_id: &str,
        purpose: LinkPurpose,
    ) -> Result<(LinkRecord, Option<Secret>), AdminError> {
        principal
            .check(&org.id, Action::Write)
            .map_err(AdminError::from)?;
        let user = self.user(principal, org, user_id).await?;
        may_manage(principal, &org.id, user.role, user.role).map_err(AdminError::from)?;
        if user.status != UserStatus::Active {
            return Err(AdminError::Conflict(
                "the user is suspended: activate the account first".into(),
            ));
        }
        if purpose == LinkPurpose::VerifyEmail && user.email_verified {
            return Err(AdminError::Conflict(
                "the user's address is already verified".into(),
            ));
        }
        let slot = self.mail_slot()?;
        Ok(self.issue_link(org, &user, purpose, slot).await?)
    }

    /// The self-service "forgot password" form: mails a reset link when `email` is an active
    /// user of the organization, and does nothing otherwise; the caller answers alike either
    /// way. Needs mail (without, there is no way to reach the person).
    pub async fn forgot_password(&self, org: &OrgRecord, email: &str) -> Result<(), LinkError> {
        // The place in the queue first, for every address: a full queue answers the same for
        // known and unknown ones.
        let slot = match self.mail_slot() {
            Ok(Some(slot)) => slot,
            Ok(None) => return Ok(()),
            Err(e) => return Err(LinkError::Unavailable(e.to_string())),
        };
        let Ok((_, normalized)) = super::normalize_email(email) else {
            return Ok(());
        };
        let filter = UserFilter {
            email: Some(normalized),
            role: None,
            status: Some(UserStatus::Active),
        };
        let found = self.store.list_users(&org.id, &filter, None, 1).await?;
        if let Some(user) = found.first() {
            self.issue_link(org, user, LinkPurpose::PasswordReset, Some(slot))
                .await?;
        }
        Ok(())
    }

    /// The link a token names and its user, or why not (the link's page).
    pub async fn open_link(
        &self,
        org: &OrgRecord,
        purpose: LinkPurpose,
        token: &Secret,
    ) -> Result<(LinkRecord, UserRecord), LinkError> {
        let t = token.expose();
        let id =
            crate::tenancy::principals::token_id(t, prefix(purpose)).ok_or(LinkError::Unknown)?;
        let link = self
            .links
            .link(&org.id, id)
            .await?
            .filter(|l| l.purpose == purpose)
            .ok_or(LinkError::Unknown)?;
        if !self.digester.verify(t, link.digest_version, &link.digest) {
            return Err(LinkError::Unknown);
        }
        if link.used_at.is_some() || link.expires_at <= self.clock.now() {
            return Err(LinkError::Closed);
        }
        let user = self
            .store
            .user(&org.id, &link.user_id)
            .await?
            .filter(|u| {
                u.status == UserStatus::Active && u.email_normalized == link.email_normalized
            })
            .ok_or(LinkError::Closed)?;
        Ok((link, user))
    }

    /// Uses a verification link: the address is verified.
    pub async fn verify_email(
        &self,
        org: &OrgRecord,
        token: &Secret,
    ) -> Result<UserRecord, LinkError> {
        let (link, user) = self.open_link(org, LinkPurpose::VerifyEmail, token).await?;
        self.use_link(org, &link, &user, None, "user.email_verified")
            .await
    }

    /// Uses a reset link: the password becomes `pw` (the policy of
    /// [`super::passwords::check_policy`]), `password_changed_at` now, the address verified,
    /// and the user's other reset links end.
    pub async fn reset_password(
        &self,
        org: &OrgRecord,
        token: &Secret,
        pw: &str,
    ) -> Result<UserRecord, LinkError> {
        let (link, user) = self
            .open_link(org, LinkPurpose::PasswordReset, token)
            .await?;
        let pw = password("password", pw).map_err(|e| match e {
            AdminError::Field { field, message } => LinkError::Field { field, message },
            other => LinkError::Internal(other.to_string()),
        })?;
        let hash = self
            .passwords
            .hash(&pw)
            .await
            .map_err(|e| LinkError::Internal(e.to_string()))?;
        self.use_link(org, &link, &user, Some(&hash), "user.password_reset")
            .await
    }

    async fn use_link(
        &self,
        org: &OrgRecord,
        link: &LinkRecord,
        user: &UserRecord,
        hash: Option<&str>,
        kind: &'static str,
    ) -> Result<UserRecord, LinkError> {
        let now = self.clock.now();
        let ev = event(user, kind, &format!("link:{}", link.id), now);
        match self.links.use_link(&org.id, &link.id, hash, now, &ev).await {
            Ok(u) => Ok(u),
            Err(WriteError::Refused(Refused::LinkClosed)) => Err(LinkError::Closed),
            Err(WriteError::Refused(r)) => Err(LinkError::Internal(format!("refused: {r:?}"))),
            Err(WriteError::Storage(e)) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_purpose_has_its_own_prefix() {
        let id = "0123456789abcdef0123456789abcdef";
        let v = crate::tenancy::principals::new_token(VERIFY_PREFIX, id);
        let pid = |p| crate::tenancy::principals::token_id(v.expose(), prefix(p)).is_some();
        assert!(pid(LinkPurpose::VerifyEmail));
        assert!(!pid(LinkPurpose::PasswordReset));
    }
}
