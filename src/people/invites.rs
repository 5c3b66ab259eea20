//! Invites: an admin invites an email address with a role; the invitee opens the link, and
//! accepts (creating the account, with a password) or declines.
//!
//! The link `{iss}/invites/{token}` is the whole credential: the token is `aidp_i_` + the
//! invite's id (32 hex) + `_` + 256 random bits (base64url), mailed to the address (SMTP) or
//! shown once to the admin who asked (no SMTP), never logged (the access log redacts it); only an HMAC-SHA-256 digest of it is
//! stored and compared in constant time. An invite is pending until it is accepted, declined,
//! revoked or [`INVITE_TTL_SECS`] pass; then it changes nothing any more.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::users::{People, event, new_id, password, person_role, refused};
use super::{may_manage, normalize_email};
use crate::admin_error::AdminError;
use crate::model::{Role, Secret, rfc3339};
use crate::storage::{
    InviteRecord, InviteState, OrgRecord, Refused, StorageError, UserRecord, UserStatus, WriteError,
};
use crate::tenancy::access::{AccessError, Action, Principal};
use crate::tenancy::orgs::validate_name;

/// How long an invite stays valid: 30 days.
pub const INVITE_TTL_SECS: i64 = 30 * 24 * 3600;
const TOKEN_PREFIX: &str = "aidp_i_";

/// `POST /api/v1/orgs/{org}/invites` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// The address invited (at most 254 bytes).
    pub email: String,
    /// `owner`, `admin` or `member`: never above the inviter's role.
    pub role: String,
}

/// An invite as the admin API shows it. `accept_url` only in the answer that created it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteResponse {
    pub id: String,
    pub email: String,
    pub role: Role,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// `platform`, `admin_token:ID` or `api_key:ID`.
    pub created_by: String,
    /// The link to hand to the invitee (`{iss}/invites/{token}`): in the answer of the creation
    /// only, and only when no SMTP is configured (otherwise it was mailed to the invitee);
    /// never again; whoever holds it may accept the invite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_url: Option<String>,
}

pub fn view(i: &InviteRecord, accept_url: Option<&Secret>) -> InviteResponse {
    InviteResponse {
        id: i.id.clone(),
        email: i.email.clone(),
        role: i.role,
        expires_at: rfc3339(i.expires_at),
        created_at: rfc3339(i.created_at),
        created_by: i.created_by.clone(),
        accept_url: accept_url.map(|s| s.expose().to_owned()),
    }
}

/// Why the invitee's side refused.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    /// No such invite (a malformed or unknown token, or another organization's).
    #[error("no such invite")]
    Unknown,
    /// Accepted, declined, revoked or expired: it changes nothing any more.
    #[error("this invite is no longer valid")]
    Closed,
    /// A form field failed validation.
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    /// The address became a user of the organization meanwhile.
    #[error("this address is already a user of the organization")]
    AlreadyMember,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StorageError> for InviteError {
    fn from(e: StorageError) -> Self {
        InviteError::Internal(e.to_string())
    }
}

/// The id inside a well-formed invite token (the shape of every credential of ours; a wrong
/// secret is then refused by its digest).
fn token_id(token: &str) -> Option<&str> {
    crate::tenancy::principals::token_id(token, TOKEN_PREFIX)
}

impl People {
    /// Invites `input.email` with `input.role`; the link is mailed to the address (SMTP) or
    /// in the answer only (`Some`).
    pub async fn create_invite(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        input: NewInvite,
    ) -> Result<(InviteRecord, Option<Secret>), AdminError> {
        principal
            .check(&org.id, Action::Write)
            .map_err(AdminError::from)?;
        let (email, email_normalized) =
            normalize_email(&input.email).map_err(|m| AdminError::field("email", m))?;
        self.check_deliverable("email", &email)?;
        let role = person_role("role", &input.role)?;
        may_manage(principal, &org.id, role, role).map_err(|e| match e {
            AccessError::Forbidden => AdminError::field(
                "role",
                "must not be above the inviter's role (only an owner invites an owner)",
            ),
            AccessError::NotFound => AdminError::NotFound,
        })?;
        let slot = self.mail_slot()?;
        let now = self.clock.now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let token = crate::tenancy::principals::new_token(TOKEN_PREFIX, &id);
        let invite = InviteRecord {
            org_id: org.id.clone(),
            id,
            email,
            email_normalized,
            role,
            digest: self.digester.digest(token.expose()),
            digest_version: self.digester.version(),
            created_at: now,
            created_by: principal.actor(),
            expires_at: now + INVITE_TTL_SECS,
            state: InviteState::Pending,
            closed_at: None,
            user_id: None,
        };
        self.store
            .create_invite(&invite, now)
            .await
            .map_err(refused)?;
        let url = super::links::link_url(org, "invites", &token);
        let body = format!(
            "Hello,\n\nyou are invited to join {org} as {role}. Open this link to accept or \
             decline (valid for 30 days):\n\n{url}\n\nIf you did not expect this message, \
             ignore it.\n",
            org = org.name,
            role = invite.role.as_str(),
            url = url.expose(),
        );
        let subject = format!("You are invited to {}", org.name);
        let url = Self::deliver(slot, "invite", &invite.email, subject, body, url);
        Ok((invite, url))
    }

    /// The organization's pending invites (never their tokens).
    pub async fn list_invites(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InviteRecord>, AdminError> {
        principal
            .check(&org.id, Action::Read)
            .map_err(AdminError::from)?;
        Ok(self
            .store
            .pending_invites(&org.id, self.clock.now(), after, limit)
            .await?)
    }

    /// Revokes a pending invite: its link stops working at once.
    pub async fn revoke_invite(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        id: &str,
    ) -> Result<(), AdminError> {
        principal
            .check(&org.id, Action::Write)
            .map_err(AdminError::from)?;
        let now = self.clock.now();
        let invite = self
            .store
            .invite(&org.id, id)
            .await?
            .filter(|i| i.state == InviteState::Pending && i.expires_at > now)
            .ok_or(AdminError::NotFound)?;
        may_manage(principal, &org.id, invite.role, invite.role).map_err(AdminError::from)?;
        self.store
            .close_invite(&org.id, id, InviteState::Revoked, now)
            .await
            .map_err(refused)
    }

    /// The pending invite a token names, or why not (the invitee's page).
    pub async fn open_invite(
        &self,
        org: &OrgRecord,
        token: &Secret,
    ) -> Result<InviteRecord, InviteError> {
        let t = token.expose();
        let id = token_id(t).ok_or(InviteError::Unknown)?;
        let invite = self
            .store
            .invite(&org.id, id)
            .await?
            .ok_or(InviteError::Unknown)?;
        if !self
            .digester
            .verify(t, invite.digest_version, &invite.digest)
        {
            return Err(InviteError::Unknown);
        }
        if invite.state != InviteState::Pending || invite.expires_at <= self.clock.now() {
            return Err(InviteError::Closed);
        }
        Ok(invite)
    }

    /// Accepts the invite: creates the account with `name` and `password`, active, with the
    /// invite's email and role. At most one of concurrent acceptances creates it.
    pub async fn accept_invite(
        &self,
        org: &OrgRecord,
        token: &Secret,
        name: &str,
        pw: &str,
    ) -> Result<UserRecord, InviteError> {
        let invite = self.open_invite(org, token).await?;
        let field = |e: AdminError| match e {
            AdminError::Field { field, message } => InviteError::Field { field, message },
            other => InviteError::Internal(other.to_string()),
        };
        validate_name("name", name).map_err(field)?;
        let pw = password("password", pw).map_err(field)?;
        let hash = self
            .passwords
            .hash(&pw)
            .await
            .map_err(|e| InviteError::Internal(e.to_string()))?;
        let now = self.clock.now();
        let user = UserRecord {
            org_id: org.id.clone(),
            id: new_id(),
            email: invite.email.clone(),
            email_normalized: invite.email_normalized.clone(),
            name: name.trim().to_owned(),
            role: invite.role,
            status: UserStatus::Active,
            password_hash: Some(hash),
            // The link went to this address's holder: mailed (SMTP), holding it proves the
            // address as a verification link does; handed over by the admin (no SMTP), this
            // trusts the admin to give it to that address's owner.
            email_verified: true,
            created_at: now,
            updated_at: now,
            password_changed_at: None,
        };
        let ev = event(&user, "user.created", &format!("invite:{}", invite.id), now);
        match self
            .store
            .accept_invite(&org.id, &invite.id, &user, now, &ev)
            .await
        {
            Ok(()) => Ok(user),
            Err(WriteError::Refused(Refused::InviteClosed)) => Err(InviteError::Closed),
            Err(WriteError::Storage(StorageError::Conflict { .. })) => {
                Err(InviteError::AlreadyMember)
            }
            Err(other) => Err(InviteError::Internal(other.to_string())),
        }
    }

    /// Declines the invite: it changes nothing any more.
    pub async fn decline_invite(&self, org: &OrgRecord, token: &Secret) -> Result<(), InviteError> {
        let invite = self.open_invite(org, token).await?;
        match self
            .store
            .close_invite(&org.id, &invite.id, InviteState::Declined, self.clock.now())
            .await
        {
            Ok(()) => Ok(()),
            Err(WriteError::Refused(_)) => Err(InviteError::Closed),
            Err(WriteError::Storage(e)) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::envelope::random_token;

    #[test]
    fn token_shapes() {
        let id = "0123456789abcdef0123456789abcdef";
        let secret = random_token();
        let t = format!("aidp_i_{id}_{}", secret.expose());
        assert_eq!(token_id(&t), Some(id));
        assert_eq!(token_id(&format!("aidp_k_{id}_{}", secret.expose())), None);
        assert_eq!(token_id(&format!("aidp_i_{id}_")), None);
        assert_eq!(
            token_id(&format!("aidp_i_{}_{}", id.to_uppercase(), secret.expose())),
            None
        );
        assert_eq!(token_id("aidp_i_é"), None);
        assert_eq!(token_id(""), None);
    }
}
