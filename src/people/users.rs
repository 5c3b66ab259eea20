//! The user use cases of the admin API: create, list, read, change, delete.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::passwords::{Passwords, check_policy};
use super::{may_manage, normalize_email, parse_person_role};
use crate::admin_error::AdminError;
use crate::keys::SecretDigester;
use crate::mail::MailQueue;
use crate::model::{Clock, Role, Secret, rfc3339};
use crate::storage::{
    Event, OrgRecord, Refused, StorageError, TransferStore, UserChange, UserFilter, UserLinkStore,
    UserRecord, UserStatus, UserStore, WriteError,
};
use crate::tenancy::access::{AccessError, Action, Principal};
use crate::tenancy::orgs::validate_name;

/// The people use cases, over their stores, the password hasher, the digester of link tokens,
/// the mail queue (`None`: no SMTP, links go back to the admin who asked) and the clock.
pub struct People {
    pub store: Arc<dyn UserStore>,
    pub links: Arc<dyn UserLinkStore>,
    pub transfers: Arc<dyn TransferStore>,
    pub passwords: Arc<Passwords>,
    pub digester: Arc<SecretDigester>,
    pub mail: Option<Arc<MailQueue>>,
    pub clock: Arc<dyn Clock>,
}

/// `POST /api/v1/orgs/{org}/users` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// An email address (at most 254 bytes), unique in the organization regardless of case.
    pub email: String,
    /// 1 to 200 printable characters.
    pub name: String,
    /// `owner`, `admin` or `member` (default `member`); an admin may not make an owner.
    pub role: Option<String>,
    /// 12 to 256 bytes; without, the account has no password yet.
    #[schema(format = Password)]
    pub password: Option<String>,
}

/// `PATCH /api/v1/orgs/{org}/users/{id}` body: what to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub name: Option<String>,
    /// `owner`, `admin` or `member`.
    pub role: Option<String>,
    /// `active` or `suspended`.
    pub status: Option<String>,
}

/// A user as the admin API shows it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub status: UserStatus,
    pub email_verified: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// When the person last set their password through a reset link (absent: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub password_changed_at: Option<String>,
}

pub fn view(u: &UserRecord) -> UserResponse {
    UserResponse {
        id: u.id.clone(),
        email: u.email.clone(),
        name: u.name.clone(),
        role: u.role,
        status: u.status,
        email_verified: u.email_verified,
        created_at: rfc3339(u.created_at),
        updated_at: rfc3339(u.updated_at),
        password_changed_at: u.password_changed_at.map(rfc3339),
    }
}

pub(crate) fn refused(e: WriteError) -> AdminError {
    match e {
        WriteError::Storage(s) => s.into(),
        WriteError::Refused(Refused::LastOwner) => AdminError::Conflict(
            "this is the organization's last active owner: it cannot be deleted, demoted or \
             suspended; make another user an owner first"
                .into(),
        ),
        WriteError::Refused(Refused::TooManyInvites) => AdminError::Conflict(format!(
            "this address already has {} pending invites (across every organization); \
             revoke some or wait for them to expire",
            crate::storage::MAX_PENDING_INVITES
        )),
        WriteError::Refused(Refused::AlreadyInvited) => AdminError::Conflict(
            "this address already has a pending invite of this organization; revoke it first"
                .into(),
        ),
        WriteError::Refused(Refused::AlreadyMember) => {
            AdminError::Conflict("this address is already a user of the organization".into())
        }
        WriteError::Refused(
            Refused::InviteClosed | Refused::LinkClosed | Refused::TransferClosed,
        ) => AdminError::NotFound,
        WriteError::Refused(Refused::TransferPending) => {
            AdminError::Conflict("the organization already has a pending ownership transfer".into())
        }
        WriteError::Refused(Refused::NotEligible) => AdminError::Conflict(
            "the user is not an active admin or member of the organization".into(),
        ),
    }
}

pub(crate) fn person_role(field: &'static str, s: &str) -> Result<Role, AdminError> {
    parse_person_role(s).ok_or_else(|| AdminError::field(field, "must be owner, admin or member"))
}

/// A password that passes the policy, as a secret.
pub(crate) fn password(field: &'static str, pw: &str) -> Result<Secret, AdminError> {
    check_policy(pw).map_err(|m| AdminError::field(field, m))?;
    Ok(Secret::new(pw))
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The outbox event of a change to `user`.
pub(crate) fn event(user: &UserRecord, kind: &'static str, actor: &str, at: i64) -> Event {
    Event {
        org_id: Some(user.org_id.clone()),
        kind,
        subject: user.id.clone(),
        data: json!({
            "id": user.id, "email": user.email, "name": user.name, "role": user.role.as_str(),
            "status": user.status.as_str(), "actor": actor,
        }),
        at,
    }
}

impl People {
    pub async fn create_user(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        input: NewUser,
    ) -> Result<UserRecord, AdminError> {
        principal
            .check(&org.id, Action::Write)
            .map_err(AdminError::from)?;
        let (email, email_normalized) =
            normalize_email(&input.email).map_err(|m| AdminError::field("email", m))?;
        self.check_deliverable("email", &email)?;
        validate_name("name", &input.name)?;
        let role = match input.role.as_deref() {
            None => Role::Member,
            Some(r) => person_role("role", r)?,
        };
        may_manage(principal, &org.id, role, role).map_err(|e| match e {
            AccessError::Forbidden => AdminError::field(
                "role",
                "must not be above the caller's role (only an owner makes an owner)",
            ),
            AccessError::NotFound => AdminError::NotFound,
        })?;
        let password_hash = match input.password.as_deref() {
            None => None,
            Some(pw) => Some(
                self.passwords
                    .hash(&password("password", pw)?)
                    .await
                    .map_err(|e| AdminError::Internal(e.to_string()))?,
            ),
        };
        let now = self.clock.now();
        let user = UserRecord {
            org_id: org.id.clone(),
            id: new_id(),
            email,
            email_normalized,
            name: input.name.trim().to_owned(),
            role,
            status: UserStatus::Active,
            password_hash,
            email_verified: false,
            created_at: now,
            updated_at: now,
            password_changed_at: None,
        };
        // With SMTP the new address gets a verification link: its place in the queue first, so
        // a full queue refuses the creation rather than losing the mail.
        let slot = self.mail_slot()?;
        let ev = event(&user, "user.created", &principal.actor(), now);
        self.store.create_user(&user, &ev).await?;
        self.verify_new_user(org, &user, slot).await;
        Ok(user)
    }

    pub async fn list_users(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        filter: &UserFilter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UserRecord>, AdminError> {
        principal
            .check(&org.id, Action::Read)
            .map_err(AdminError::from)?;
        Ok(self.store.list_users(&org.id, filter, after, limit).await?)
    }

    pub async fn user(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        id: &str,
    ) -> Result<UserRecord, AdminError> {
        principal
            .check(&org.id, Action::Read)
            .map_err(AdminError::from)?;
        self.store
            .user(&org.id, id)
            .await?
            .ok_or(AdminError::NotFound)
    }

    pub async fn update_user(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        id: &str,
        patch: UserPatch,
    ) -> Result<UserRecord, AdminError> {
        let old = self.user(principal, org, id).await?;
        let role = match patch.role.as_deref() {
            None => old.role,
            Some(r) => person_role("role", r)?,
        };
        let status = match patch.status.as_deref() {
            None => old.status,
            Some(s) => UserStatus::parse(s)
                .ok_or_else(|| AdminError::field("status", "must be active or suspended"))?,
        };
        let name = match patch.name.as_deref() {
            None => old.name.clone(),
            Some(n) => {
                validate_name("name", n)?;
                n.trim().to_owned()
            }
        };
        may_manage(principal, &org.id, old.role, role).map_err(AdminError::from)?;
        let now = self.clock.now();
        let change = UserChange {
            name,
            role,
            status,
            updated_at: now,
        };
        let mut after = old.clone();
        after.name.clone_from(&change.name);
        after.role = role;
        after.status = status;
        let ev = event(&after, "user.updated", &principal.actor(), now);
        self.store
            .update_user(&org.id, id, (old.role, old.status), &change, &ev)
            .await
            .map_err(refused)
    }

    pub async fn delete_user(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        id: &str,
    ) -> Result<(), AdminError> {
        let old = self.user(principal, org, id).await?;
        may_manage(principal, &org.id, old.role, old.role).map_err(AdminError::from)?;
        let now = self.clock.now();
        let ev = event(&old, "user.deleted", &principal.actor(), now);
        self.store
            .delete_user(&org.id, id, (old.role, old.status), &ev)
            .await
            .map_err(|e| match e {
                WriteError::Storage(StorageError::Stale) => AdminError::Conflict(
                    "the user was changed by a concurrent request; retry".into(),
                ),
                other => refused(other),
            })
    }
}
