//! Ownership transfer with acceptance (issue 12 point 2): an owner names an active admin or
//! member of the organization; the named person accepts within [`TRANSFER_TTL_SECS`], either
//! through the admin API as themselves (`POST .../ownership-transfer/accept`, once people are
//! principals) or through the single-use link `{iss}/ownership-transfer/{token}` that is mailed
//! to them (or handed to the owner once, without SMTP). One pending transfer per organization;
//! an owner revokes it. On acceptance, in one transaction: the named person becomes an owner,
//! the owner who handed over (`from_user_id`) an admin; the last-owner rule holds throughout.
//!
//! Who hands over: the calling person once people are principals; an owner API key or the
//! platform names that owner with `from_user_id` (without it nobody steps down: the named
//! person becomes an owner beside the others).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::links::{LinkError, link_url};
use super::may_manage;
use super::users::{People, event, refused};
use crate::admin_error::AdminError;
use crate::model::{Role, Secret, rfc3339};
use crate::storage::{
    AcceptanceEvents, Event, OrgRecord, Refused, TransferRecord, TransferState, UserRecord,
    UserStatus, WriteError,
};
use crate::tenancy::access::{AccessError, Action, Principal};

/// How long a transfer waits for its acceptance: 7 days.
pub const TRANSFER_TTL_SECS: i64 = 7 * 24 * 3600;
const TOKEN_PREFIX: &str = "aidp_o_";

/// `POST /api/v1/orgs/{org}/ownership-transfer` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    /// The person who is to become an owner: an active admin or member of the organization.
    pub user_id: String,
    /// The owner who hands over and becomes an admin on acceptance: an active owner. Only for
    /// a caller that is not a person (an API key, the platform); a person hands over their own
    /// ownership. Without it nobody steps down.
    pub from_user_id: Option<String>,
}

/// The state of a transfer.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransferStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

/// An ownership transfer as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferResponse {
    pub id: String,
    /// The person who becomes an owner.
    pub user_id: String,
    /// The owner who becomes an admin, when one was named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_user_id: Option<String>,
    /// The principal that started it: `platform`, `admin_token:ID` or `api_key:ID`.
    pub initiated_by: String,
    pub state: TransferStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The link to hand to the named person (`{iss}/ownership-transfer/{token}`): in the answer
    /// that started the transfer, only when no SMTP is configured (otherwise it was mailed to
    /// them); never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_url: Option<String>,
}

pub fn view(t: &TransferRecord, now: i64, accept_url: Option<&Secret>) -> TransferResponse {
    let state = match t.state {
        TransferState::Pending if t.expires_at <= now => TransferStatus::Expired,
        TransferState::Pending => TransferStatus::Pending,
        TransferState::Accepted => TransferStatus::Accepted,
        TransferState::Revoked => TransferStatus::Revoked,
        TransferState::Expired => TransferStatus::Expired,
    };
    TransferResponse {
        id: t.id.clone(),
        user_id: t.user_id.clone(),
        from_user_id: t.from_user_id.clone(),
        initiated_by: t.initiated_by.clone(),
        state,
        created_at: rfc3339(t.created_at),
        expires_at: rfc3339(t.expires_at),
        accept_url: accept_url.map(|u| u.expose().to_owned()),
    }
}

/// The person a principal is, if it is one (a person signed in to the admin API).
pub fn person_of(principal: &Principal) -> Option<&str> {
    match principal {
        Principal::Platform { .. } | Principal::ApiKey { .. } => None,
        Principal::User { id, .. } => Some(id),
    }
}

fn transfer_event(t: &TransferRecord, kind: &'static str, actor: &str, at: i64) -> Event {
    Event {
        org_id: Some(t.org_id.clone()),
        kind,
        subject: t.id.clone(),
        data: serde_json::json!({
            "id": t.id, "user_id": t.user_id, "from_user_id": t.from_user_id,
            "initiated_by": t.initiated_by, "actor": actor,
        }),
        at,
    }
}

fn transfer_refused(e: WriteError) -> AdminError {
    match e {
        WriteError::Refused(Refused::TransferPending) => AdminError::Conflict(
            "the organization already has a pending ownership transfer; revoke it first".into(),
        ),
        WriteError::Refused(Refused::TransferClosed) => AdminError::NotFound,
        WriteError::Refused(Refused::NotEligible) => AdminError::Conflict(
            "the named user is no longer an active admin or member of the organization".into(),
        ),
        other => refused(other),
    }
}

impl People {
    /// May `principal` start or revoke a transfer? An owner only (an owner API key's previous
    /// secret does not, as it manages no people).
    fn owner_only(principal: &Principal, org: &OrgRecord) -> Result<(), AdminError> {
        principal
            .check(&org.id, Action::Own)
            .map_err(AdminError::from)?;
        may_manage(principal, &org.id, Role::Owner, Role::Owner).map_err(AdminError::from)
    }

    /// Starts a transfer to `input.user_id`; the link is in the answer only without SMTP.
    pub async fn start_transfer(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        input: NewTransfer,
    ) -> Result<(TransferRecord, Option<Secret>), AdminError> {
        Self::owner_only(principal, org)?;
        let named = self
            .store
            .user(&org.id, &input.user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active && u.role != Role::Owner)
            .ok_or_else(|| {
                AdminError::field(
                    "user_id",
                    "must name an active admin or member of the organization",
                )
            })?;
        let from = match (person_of(principal), input.from_user_id) {
            (Some(_), Some(_)) => {
                return Err(AdminError::field(
                    "from_user_id",
                    "a person hands over their own ownership: leave it out",
                ));
            }
            (Some(me), None) => Some(me.to_owned()),
            (None, Some(from)) => Some(from),
            (None, None) => None,
        };
        if let Some(from) = &from {
            let owner = self.store.user(&org.id, from).await?;
            if !owner.is_some_and(|u| u.role == Role::Owner && u.status == UserStatus::Active) {
                return Err(AdminError::field(
                    "from_user_id",
                    "must name an active owner of the organization",
                ));
            }
        }
        let slot = self.mail_slot()?;
        let now = self.clock.now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let token = crate::tenancy::principals::new_token(TOKEN_PREFIX, &id);
        let t = TransferRecord {
            org_id: org.id.clone(),
            id,
            user_id: named.id.clone(),
            from_user_id: from,
            initiated_by: principal.actor(),
            digest: self.digester.digest(token.expose()),
            digest_version: self.digester.version(),
            created_at: now,
            expires_at: now + TRANSFER_TTL_SECS,
            state: TransferState::Pending,
            closed_at: None,
        };
        let ev = transfer_event(&t, "ownership_transfer.started", &principal.actor(), now);
        self.transfers
            .create_transfer(&t, &ev)
            .await
            .map_err(transfer_refused)?;
        let url = link_url(org, "ownership-transfer", &token);
        let body = format!(
            "Hello {name},\n\nyou are asked to become an owner of {org}. To accept, open this \
             link and press the button (valid for 7 days):\n\n{url}\n\nIf you do not want to, \
             ignore this message.\n",
            name = named.name,
            org = org.name,
            url = url.expose(),
        );
        let subject = format!("Become an owner of {}", org.name);
        let url = Self::deliver(slot, "ownership_transfer", &named.email, subject, body, url);
        Ok((t, url))
    }

    /// The organization's pending transfer (404 when there is none).
    pub async fn pending_transfer(
        &self,
        principal: &Principal,
        org: &OrgRecord,
    ) -> Result<TransferRecord, AdminError> {
        principal
            .check(&org.id, Action::Read)
            .map_err(AdminError::from)?;
        self.transfers
            .pending_transfer(&org.id, self.clock.now())
            .await?
            .ok_or(AdminError::NotFound)
    }

    /// Revokes the pending transfer: its link stops working at once.
    pub async fn revoke_transfer(
        &self,
        principal: &Principal,
        org: &OrgRecord,
    ) -> Result<(), AdminError> {
        Self::owner_only(principal, org)?;
        let t = self.pending_transfer(principal, org).await?;
        let now = self.clock.now();
        let ev = transfer_event(&t, "ownership_transfer.revoked", &principal.actor(), now);
        self.transfers
            .revoke_transfer(&org.id, &t.id, now, &ev)
            .await
            .map_err(transfer_refused)
    }

    /// The named person accepts through the admin API, as themselves.
    pub async fn accept_transfer_as(
        &self,
        principal: &Principal,
        org: &OrgRecord,
    ) -> Result<TransferRecord, AdminError> {
        let t = self.pending_transfer(principal, org).await?;
        match person_of(principal) {
            Some(me) if me == t.user_id => {}
            _ => {
                return Err(AdminError::from(AccessError::Forbidden));
            }
        }
        self.accept(org, t, &principal.actor())
            .await
            .map_err(transfer_refused)
    }

    /// The pending transfer a link's token names, and the person it names (the link's page).
    pub async fn open_transfer(
        &self,
        org: &OrgRecord,
        token: &Secret,
    ) -> Result<(TransferRecord, UserRecord), LinkError> {
        let t = token.expose();
        let id = crate::tenancy::principals::token_id(t, TOKEN_PREFIX).ok_or(LinkError::Unknown)?;
        let transfer = self
            .transfers
            .transfer(&org.id, id)
            .await?
            .ok_or(LinkError::Unknown)?;
        if !self
            .digester
            .verify(t, transfer.digest_version, &transfer.digest)
        {
            return Err(LinkError::Unknown);
        }
        if transfer.state != TransferState::Pending || transfer.expires_at <= self.clock.now() {
            return Err(LinkError::Closed);
        }
        let user = self
            .store
            .user(&org.id, &transfer.user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active && u.role != Role::Owner)
            .ok_or(LinkError::Closed)?;
        Ok((transfer, user))
    }

    /// The named person accepts through the link.
    pub async fn accept_transfer_link(
        &self,
        org: &OrgRecord,
        token: &Secret,
    ) -> Result<TransferRecord, LinkError> {
        let (t, _) = self.open_transfer(org, token).await?;
        let actor = format!("link:{}", t.id);
        match self.accept(org, t, &actor).await {
            Ok(t) => Ok(t),
            Err(WriteError::Refused(Refused::TransferClosed | Refused::NotEligible)) => {
                Err(LinkError::Closed)
            }
            Err(e) => Err(LinkError::Internal(e.to_string())),
        }
    }

    async fn accept(
        &self,
        org: &OrgRecord,
        t: TransferRecord,
        actor: &str,
    ) -> Result<TransferRecord, WriteError> {
        let now = self.clock.now();
        let named = self.store.user(&org.id, &t.user_id).await?;
        let Some(mut named) = named else {
            return Err(WriteError::Refused(Refused::NotEligible));
        };
        named.role = Role::Owner;
        let demoted = match &t.from_user_id {
            Some(from) => self.store.user(&org.id, from).await?.map(|mut u| {
                u.role = Role::Admin;
                event(&u, "user.updated", actor, now)
            }),
            None => None,
        };
        let events = AcceptanceEvents {
            accepted: transfer_event(&t, "ownership_transfer.accepted", actor, now),
            promoted: event(&named, "user.updated", actor, now),
            demoted,
        };
        self.transfers
            .accept_transfer(&org.id, &t.id, now, &events)
            .await?;
        Ok(TransferRecord {
            state: TransferState::Accepted,
            closed_at: Some(now),
            ..t
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_principal_is_a_person_yet() {
        assert_eq!(person_of(&Principal::Platform { token_id: None }), None);
    }
}
