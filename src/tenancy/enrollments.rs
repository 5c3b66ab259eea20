//! Enrollment tokens (issue 12 point 8): an admin makes one (shown once; an expiry, a maximum
//! number of uses, a scope ceiling and a name prefix); an agent runtime registers itself at
//! `{iss}/oauth2/register` with it as the RFC 7591 initial access token and its own public key
//! (see [`super::registration`]), so no secret crosses the wire. Revoking the token stops further
//! registrations at once; the agents it enrolled are listed and revoked together.
//!
//! A token is `aidp_e_` + its id (32 hex) + `_` + 256 random bits (base64url); only an
//! HMAC-SHA-256 digest of it is stored and compared in constant time.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::access::{Action, Principal};
use super::agents::{Agents, valid_scope_token, validate_text};
use super::policy::Policies;
use super::{Agent, AgentStatus, Directory, orgs};
use crate::admin_error::AdminError;
use crate::keys::SecretDigester;
use crate::model::{ClientKind, Clock, Secret, rfc3339};
use crate::storage::{AgentFilter, EnrollmentRecord, EnrollmentStore, Event, OrgRecord};

pub const TOKEN_PREFIX: &str = "aidp_e_";
/// Lifetime of a token made without `expires_in_secs`: 24 hours.
pub const DEFAULT_TTL_SECS: i64 = 24 * 3600;
/// The longest lifetime: 30 days.
pub const MAX_TTL_SECS: i64 = 30 * 24 * 3600;
/// `max_uses` between 1 and this (default 1).
pub const MAX_USES: i64 = 10_000;
/// The longest name prefix.
pub const MAX_PREFIX_CHARS: usize = 100;

/// `POST /api/v1/orgs/{org}/enrollment-tokens` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollment {
    /// The name prefix of the agents it enrolls (at most 100 characters; an agent's name is
    /// the prefix followed by its `client_name`).
    pub name: Option<String>,
    /// How many agents it may enroll, 1 to 10000 (default 1).
    #[schema(minimum = 1, maximum = 10000)]
    pub max_uses: Option<i64>,
    /// Its lifetime, 60 s to 30 days (default 24 hours).
    #[schema(minimum = 60, maximum = 2592000)]
    pub expires_in_secs: Option<i64>,
    /// The ceiling of the enrolled agents' scopes (RFC 6749 §3.3 tokens, at most 100; default
    /// none); within the organization policy's `allowed_scopes`.
    pub scopes: Option<Vec<String>>,
}

/// An enrollment token as the admin API shows it; `token` only in the answer that created it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentResponse {
    pub id: String,
    /// The initial access token (RFC 7591 §3): shown in this answer only, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub token: Option<String>,
    /// The name prefix of the agents it enrolls.
    pub name: String,
    pub max_uses: i64,
    /// How many agents it enrolled.
    pub uses: i64,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub scopes: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was revoked (null: it was not).
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
}

pub fn view(r: &EnrollmentRecord, token: Option<&Secret>) -> EnrollmentResponse {
    EnrollmentResponse {
        id: r.id.clone(),
        token: token.map(|t| t.expose().to_owned()),
        name: r.name.clone(),
        max_uses: r.max_uses,
        uses: r.uses,
        expires_at: rfc3339(r.expires_at),
        scopes: r.scopes.clone(),
        created_at: rfc3339(r.created_at),
        revoked_at: r.revoked_at.map(rfc3339),
    }
}

/// `POST .../enrollment-tokens/{id}/revoke-agents` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedAgents {
    /// How many agents were revoked now (those already revoked are not counted).
    pub revoked: u64,
}

/// Why an initial access token was refused (every case is RFC 6750 `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollmentError {
    #[error("unknown initial access token")]
    Unknown,
    #[error("the enrollment token is revoked")]
    Revoked,
    #[error("the enrollment token has expired")]
    Expired,
    #[error("the enrollment token has no uses left")]
    Exhausted,
    #[error("internal error: {0}")]
    Internal(String),
}

/// The enrollment-token use cases.
#[derive(Clone)]
pub struct Enrollments {
    pub store: Arc<dyn EnrollmentStore>,
    pub directory: Arc<Directory>,
    pub digester: Arc<SecretDigester>,
    pub policies: Arc<Policies>,
    pub clock: Arc<dyn Clock>,
}

fn event(r: &EnrollmentRecord, kind: &'static str, at: i64) -> Event {
    Event {
        org_id: Some(r.org_id.clone()),
        kind,
        subject: r.id.clone(),
        data: json!({"name": r.name, "max_uses": r.max_uses}),
        at,
    }
}

impl Enrollments {
    /// Makes a token; the token itself is in the answer only.
    pub async fn create(
        &self,
        principal: &Principal,
        org_slug: &str,
        input: NewEnrollment,
    ) -> Result<(EnrollmentRecord, Secret), AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Write).await?;
        let name = input.name.unwrap_or_default();
        validate_text("name", &name, MAX_PREFIX_CHARS)?;
        if name.contains(['\n', '\r', '\t']) {
            return Err(AdminError::field("name", "must be on one line"));
        }
        let max_uses = input.max_uses.unwrap_or(1);
        if !(1..=MAX_USES).contains(&max_uses) {
            return Err(AdminError::field(
                "max_uses",
                format!("must be between 1 and {MAX_USES}"),
            ));
        }
        let ttl = input.expires_in_secs.unwrap_or(DEFAULT_TTL_SECS);
        if !(60..=MAX_TTL_SECS).contains(&ttl) {
            return Err(AdminError::field(
                "expires_in_secs",
                format!("must be between 60 and {MAX_TTL_SECS} (30 days)"),
            ));
        }
        let mut scopes = input.scopes.unwrap_or_default();
        if scopes.len() > 100 {
            return Err(AdminError::field("scopes", "at most 100 scopes"));
        }
        if let Some(bad) = scopes.iter().find(|s| !valid_scope_token(s)) {
            return Err(AdminError::field(
                "scopes",
                format!("{bad:?} is not a valid scope token (RFC 6749 §3.3)"),
            ));
        }
        let policy = self.policies.get(&org.id).await?;
        if let Some(bad) = scopes.iter().find(|s| !policy.allows_scope(s)) {
            return Err(AdminError::field(
                "scopes",
                format!("{bad:?} is outside the organization policy's allowed_scopes"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        scopes.retain(|s| seen.insert(s.clone()));
        let now = self.clock.now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let token = super::principals::new_token(TOKEN_PREFIX, &id);
        let rec = EnrollmentRecord {
            org_id: org.id.clone(),
            id,
            name,
            digest: self.digester.digest(token.expose()),
            digest_version: self.digester.version(),
            scopes,
            max_uses,
            uses: 0,
            expires_at: now.saturating_add(ttl),
            created_at: now,
            created_by: principal.actor(),
            revoked_at: None,
        };
        self.store
            .create_enrollment(&rec, &event(&rec, "enrollment_token.created", now))
            .await?;
        Ok((rec, token))
    }

    pub async fn list(
        &self,
        principal: &Principal,
        org_slug: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EnrollmentRecord>, AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Read).await?;
        Ok(self.store.enrollments(&org.id, after, limit).await?)
    }

    pub async fn get(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
    ) -> Result<EnrollmentRecord, AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Read).await?;
        self.store
            .enrollment(&org.id, id)
            .await?
            .ok_or(AdminError::NotFound)
    }

    /// Revokes the token: no registration uses it from now on (its agents keep working; see
    /// [`Enrollments::revoke_agents`]). Revoking a revoked token changes nothing.
    pub async fn revoke(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
    ) -> Result<EnrollmentRecord, AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Write).await?;
        let now = self.clock.now();
        let Some(rec) = self.store.enrollment(&org.id, id).await? else {
            return Err(AdminError::NotFound);
        };
        Ok(self
            .store
            .revoke_enrollment(
                &org.id,
                id,
                now,
                &event(&rec, "enrollment_token.revoked", now),
            )
            .await?)
    }

    /// A page of the agents the token enrolled (revoked ones too).
    pub async fn agents(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Agent>, AdminError> {
        let rec = self.get(principal, org_slug, id).await?;
        let filter = AgentFilter {
            enrollment_id: Some(rec.id),
            kind: Some(ClientKind::Agent),
            ..AgentFilter::default()
        };
        let rows = self
            .directory
            .agent_store()
            .list_filtered(&rec.org_id, after, limit, &filter)
            .await?;
        Ok(rows.into_iter().map(Agent::from_record).collect())
    }

    /// Revokes every agent the token enrolled, as agent revocation does (final; their tokens
    /// stop introspecting as active at once); answers how many were revoked now.
    pub async fn revoke_agents(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
        agents: &Agents,
    ) -> Result<u64, AdminError> {
        principal_may_write(self, principal, org_slug).await?;
        let mut after: Option<String> = None;
        let mut revoked = 0;
        loop {
            let page = self
                .agents(principal, org_slug, id, after.as_deref(), 500)
                .await?;
            for a in &page {
                if a.status != AgentStatus::Revoked {
                    match agents
                        .set_status(principal, org_slug, a.id(), AgentStatus::Revoked)
                        .await
                    {
                        Ok(_) => revoked += 1,
                        // Deleted or revoked meanwhile.
                        Err(AdminError::NotFound | AdminError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            if page.len() < 500 {
                break;
            }
            after = page.last().map(|a| a.id().to_owned());
        }
        Ok(revoked)
    }

    /// The usable token `token` of `org` (the holder's side): known, its digest matching, not
    /// revoked, not expired, with a use left. Whether the use is still there when the agent is
    /// created is decided again in that transaction.
    pub async fn open(
        &self,
        org: &OrgRecord,
        token: &str,
    ) -> Result<EnrollmentRecord, EnrollmentError> {
        let id =
            super::principals::token_id(token, TOKEN_PREFIX).ok_or(EnrollmentError::Unknown)?;
        let rec = self
            .store
            .enrollment(&org.id, id)
            .await
            .map_err(|e| EnrollmentError::Internal(e.to_string()))?
            .ok_or(EnrollmentError::Unknown)?;
        if !self.digester.verify(token, rec.digest_version, &rec.digest) {
            return Err(EnrollmentError::Unknown);
        }
        if rec.revoked_at.is_some() {
            return Err(EnrollmentError::Revoked);
        }
        if rec.expires_at <= self.clock.now() {
            return Err(EnrollmentError::Expired);
        }
        if rec.uses >= rec.max_uses {
            return Err(EnrollmentError::Exhausted);
        }
        Ok(rec)
    }
}

async fn principal_may_write(
    e: &Enrollments,
    principal: &Principal,
    org_slug: &str,
) -> Result<(), AdminError> {
    orgs::visible(&e.directory, principal, org_slug, Action::Write)
        .await
        .map(|_| ())
}
