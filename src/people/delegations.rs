//! A person's delegation grants to agents (issue 12 point 9), as admins manage them through the
//! admin API and the person on their account page: list, grant (an admin for the person; the
//! person themselves by consenting to the agent in the code flow), revoke (tokens issued under
//! the grant stop at once: see `oauth::grants::delegation`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admin_error::AdminError;
use crate::model::{ClientKind, Clock, rfc3339};
use crate::storage::{DelegationRecord, DelegationStore, Event, OrgRecord, UserStatus, UserStore};
use crate::tenancy::Directory;
use crate::tenancy::access::{Action, Principal};

/// The longest a grant given through the admin API may last (one year).
pub const MAX_GRANT_SECS: i64 = 366 * 86_400;

/// `POST .../users/{id}/delegations` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDelegation {
    /// An agent of the organization.
    pub agent_id: String,
    /// 1 to 100 of the agent's registered scopes.
    pub scopes: Vec<String>,
    /// RFC 3339, in the future and at most a year ahead; absent: until revoked.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DelegationResponse {
    pub id: String,
    pub user_id: String,
    pub agent_id: String,
    pub scopes: Vec<String>,
    /// `consent` or the admin who granted it.
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
    /// Not revoked and not expired.
    pub active: bool,
}

pub fn view(d: &DelegationRecord, now: i64) -> DelegationResponse {
    DelegationResponse {
        id: d.id.clone(),
        user_id: d.user_id.clone(),
        agent_id: d.agent_id.clone(),
        scopes: d.scopes.clone(),
        created_by: d.created_by.clone(),
        created_at: rfc3339(d.created_at),
        expires_at: d.expires_at.map(rfc3339),
        revoked_at: d.revoked_at.map(rfc3339),
        active: d.in_force(now),
    }
}

pub struct Delegations {
    pub store: Arc<dyn DelegationStore>,
    pub users: Arc<dyn UserStore>,
    pub directory: Arc<Directory>,
    pub clock: Arc<dyn Clock>,
}

fn event(d: &DelegationRecord, kind: &'static str, actor: &str, at: i64) -> Event {
    Event {
        org_id: Some(d.org_id.clone()),
        kind,
        subject: d.id.clone(),
        data: serde_json::json!({
            "user_id": d.user_id, "agent_id": d.agent_id, "scopes": d.scopes, "by": actor,
        }),
        at,
    }
}

impl Delegations {
    async fn person(&self, org: &OrgRecord, user_id: &str) -> Result<(), AdminError> {
        self.users
            .user(&org.id, user_id)
            .await?
            .ok_or(AdminError::NotFound)
            .map(|_| ())
    }

    pub async fn list(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        user_id: &str,
    ) -> Result<Vec<DelegationRecord>, AdminError> {
        principal.check(&org.id, Action::Write)?;
        self.person(org, user_id).await?;
        Ok(self.store.user_delegations(&org.id, user_id).await?)
    }

    /// An admin grants `input` on behalf of the person.
    pub async fn grant(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        user_id: &str,
        input: NewDelegation,
    ) -> Result<DelegationRecord, AdminError> {
        principal.check(&org.id, Action::Write)?;
        let user = self
            .users
            .user(&org.id, user_id)
            .await?
            .ok_or(AdminError::NotFound)?;
        if user.status != UserStatus::Active {
            return Err(AdminError::Conflict("the person is suspended".into()));
        }
        let agent = match crate::model::is_uuid(&input.agent_id) {
            true => self.directory.agent(&org.id, &input.agent_id).await?,
            false => None,
        }
        .filter(|a| a.kind == ClientKind::Agent)
        .ok_or_else(|| AdminError::field("agent_id", "is not an agent of this organization"))?;
        if input.scopes.is_empty() || input.scopes.len() > 100 {
            return Err(AdminError::field("scopes", "must list 1 to 100 scopes"));
        }
        let mut scopes: Vec<String> = Vec::new();
        for s in input.scopes {
            if !agent.scopes.contains(&s) {
                return Err(AdminError::field(
                    "scopes",
                    format!(
                        "{:?} is not one of the agent's registered scopes",
                        s.chars().take(80).collect::<String>()
                    ),
                ));
            }
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        let now = self.clock.now();
        let expires_at = match input.expires_at {
            None => None,
            Some(t) => {
                let at = crate::model::parse_rfc3339(&t).ok_or_else(|| {
                    AdminError::field("expires_at", "must be an RFC 3339 date-time")
                })?;
                if at <= now || at > now + MAX_GRANT_SECS {
                    return Err(AdminError::field(
                        "expires_at",
                        "must be in the future and at most a year ahead",
                    ));
                }
                Some(at)
            }
        };
        let d = DelegationRecord {
            org_id: org.id.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id,
            agent_id: agent.client_id().to_owned(),
            scopes,
            created_at: now,
            created_by: principal.actor(),
            expires_at,
            revoked_at: None,
        };
        self.store
            .create_delegation(
                &d,
                &event(&d, "delegation.created", &principal.actor(), now),
            )
            .await?;
        Ok(d)
    }

    /// Revokes a grant of the person (an admin); `NotFound` for another person's or a revoked
    /// one.
    pub async fn revoke(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        user_id: &str,
        id: &str,
    ) -> Result<(), AdminError> {
        principal.check(&org.id, Action::Write)?;
        self.revoke_of(&org.id, user_id, id, &principal.actor())
            .await
    }

    /// Revokes a grant of `user_id` (the person on their account page, or an admin).
    pub async fn revoke_of(
        &self,
        org_id: &str,
        user_id: &str,
        id: &str,
        actor: &str,
    ) -> Result<(), AdminError> {
        let d = self
            .store
            .delegation(org_id, id)
            .await?
            .filter(|d| d.user_id == user_id && d.revoked_at.is_none())
            .ok_or(AdminError::NotFound)?;
        let now = self.clock.now();
        if self
            .store
            .revoke_delegation(
                org_id,
                id,
                now,
                &event(&d, "delegation.revoked", actor, now),
            )
            .await?
        {
            Ok(())
        } else {
            Err(AdminError::NotFound)
        }
    }
}
