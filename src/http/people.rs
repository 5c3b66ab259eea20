//! `/api/v1/orgs/{org}/users` and `/api/v1/orgs/{org}/invites`: an organization's people
//! (INTERFACE.md "People and the authorization server"). Passwords and invite tokens are never
//! in an answer, except the invite link in the answer that created it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;

use super::admin::{ApiResult, ListResponse, ObjectPath, OrgPath, Page, page};
use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiQuery};
use super::openapi::{
    Authenticated, BadQuery, Conflict, Forbidden, Invalid, JsonBody, NotFound, Unavailable,
};
use super::state::AppState;
use crate::model::UserStatus;
use crate::people::invites::{self, InviteResponse, NewInvite};
use crate::people::links::{self, LinkResponse};
use crate::people::transfers::{self, NewTransfer, TransferResponse};
use crate::people::users::{self, NewUser, UserPatch, UserResponse};
use crate::people::{normalize_email, parse_person_role};
use crate::storage::{LinkPurpose, UserFilter};
use crate::tenancy::access::Action;
use crate::tenancy::orgs;

/// `GET .../users` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500, value_type = Option<i64>)]
    pub limit: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    /// Only the user with this email (compared case-insensitively).
    pub email: Option<String>,
    /// Only users with this role: `owner`, `admin` or `member`.
    #[param(value_type = Option<String>)]
    pub role: Option<String>,
    /// Only users with this status: `active` or `suspended`.
    #[param(value_type = Option<UserStatus>)]
    pub status: Option<String>,
}

impl UserQuery {
    fn filter(&self) -> Result<UserFilter, ApiError> {
        let email = match self.email.as_deref() {
            None => None,
            Some(e) => Some(
                normalize_email(e)
                    .map_err(|m| ApiError::invalid_field("email", m))?
                    .1,
            ),
        };
        let role = match self.role.as_deref() {
            None => None,
            Some(r) => Some(parse_person_role(r).ok_or_else(|| {
                ApiError::invalid_field("role", "must be owner, admin or member")
            })?),
        };
        let status =
            match self.status.as_deref() {
                None => None,
                Some(s) => Some(UserStatus::parse(s).ok_or_else(|| {
                    ApiError::invalid_field("status", "must be active or suspended")
                })?),
            };
        Ok(UserFilter {
            email,
            role,
            status,
        })
    }
}

/// Creates a user of the organization. An admin may create admins and members; only an owner
/// (or the platform) creates an owner. With SMTP configured the new address is mailed a
/// verification link (503 when the mail queue is full: nothing is created).
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/users",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath),
    request_body = NewUser,
    responses(
        (status = 201, description = "The user (never the password)", body = UserResponse),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict, Unavailable,
    ),
)]
pub async fn users_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    let user = s.idp.people.create_user(&p, &org, body).await?;
    Ok((StatusCode::CREATED, Json(users::view(&user))).into_response())
}

/// The organization's users, a page at a time, optionally filtered.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/users",
    tag = "users",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath, UserQuery),
    responses(
        (status = 200, description = "A page of users", body = ListResponse<UserResponse>),
        Authenticated, Forbidden, NotFound, BadQuery, Invalid,
    ),
)]
pub async fn users_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult {
    let limit = Page {
        limit: q.limit.clone(),
        after: None,
    }
    .limit()?;
    let filter = q.filter()?;
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Read).await?;
    let items = s
        .idp
        .people
        .list_users(&p, &org, &filter, q.after.as_deref(), limit)
        .await?;
    Ok(Json(page(items, limit, |u| u.id.as_str(), users::view)).into_response())
}

/// The user.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/users/{id}",
    tag = "users",
    extensions(("x-agentidp-role" = json!("member"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The user", body = UserResponse),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn user_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Read).await?;
    let user = s.idp.people.user(&p, &org, &id).await?;
    Ok(Json(users::view(&user)).into_response())
}

/// Changes the user's name, role or status. An admin changes admins and members only (and
/// makes no owner); the organization's last active owner is neither demoted nor suspended
/// (409).
#[utoipa::path(
    patch,
    path = "/api/v1/orgs/{org}/users/{id}",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The user", body = UserResponse),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict,
    ),
)]
pub async fn user_patch(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
    ApiJson(body): ApiJson<UserPatch>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    let user = s.idp.people.update_user(&p, &org, &id, body).await?;
    Ok(Json(users::view(&user)).into_response())
}

/// Deletes the user. An admin deletes admins and members only; the organization's last active
/// owner is not deleted (409).
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/users/{id}",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 204, description = "Deleted"),
        Authenticated, Forbidden, NotFound, Conflict,
    ),
)]
pub async fn user_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    s.idp.people.delete_user(&p, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Invites an email address with a role (never above the inviter's; only an owner invites an
/// owner). With SMTP configured the link is mailed to the address and the answer has no
/// `accept_url`; without, the answer's `accept_url` is shown once: hand it to the invitee. At
/// most 100 pending invites per address across the instance (409 beyond); an address that is
/// already a user of the organization is 409.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/invites",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath),
    request_body = NewInvite,
    responses(
        (status = 201, description = "The invite, with `accept_url` (shown once) when no SMTP is configured; it expires after 30 days", body = InviteResponse),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict, Unavailable,
    ),
)]
pub async fn invites_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiJson(body): ApiJson<NewInvite>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    let (invite, url) = s.idp.people.create_invite(&p, &org, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(invites::view(&invite, url.as_ref())),
    )
        .into_response())
}

/// The organization's pending invites (not expired, accepted, declined or revoked), never their
/// links.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/invites",
    tag = "users",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath, Page),
    responses(
        (status = 200, description = "A page of pending invites", body = ListResponse<InviteResponse>),
        Authenticated, Forbidden, NotFound, BadQuery, Invalid,
    ),
)]
pub async fn invites_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult {
    let limit = q.limit()?;
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Read).await?;
    let items = s
        .idp
        .people
        .list_invites(&p, &org, q.after.as_deref(), limit)
        .await?;
    Ok(Json(page(
        items,
        limit,
        |i| i.id.as_str(),
        |i| invites::view(i, None),
    ))
    .into_response())
}

/// Revokes a pending invite: its link stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/invites/{id}",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 204, description = "Revoked"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn invite_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    s.idp.people.revoke_invite(&p, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `.../users/{id}/sessions/{session_id}` path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    /// The organization's slug.
    pub org: String,
    /// The user's id.
    pub id: String,
    /// The session's id.
    pub session_id: String,
}

/// The person's sign-in sessions in force (newest first, at most 100). (A person sees and ends
/// their own at `{iss}/account`.)
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/users/{id}/sessions",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The sessions", body = Vec<crate::people::sessions::SessionResponse>),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn user_sessions_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Read).await?;
    let list = s.idp.sessions.list_for(&p, &org, &id).await?;
    let items: Vec<_> = list.iter().map(crate::people::sessions::view).collect();
    Ok(Json(items).into_response())
}

/// Ends every session of the person (they must sign in again everywhere).
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/users/{id}/sessions",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 204, description = "Ended"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn user_sessions_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Read).await?;
    s.idp.sessions.end_for(&p, &org, &id, None).await?;
    s.idp.oauth.revoke_person(&org, &id).await.map_err(|_| {
        crate::admin_error::AdminError::Internal("revoking the refresh tokens failed".into())
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Ends one session of the person.
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/users/{id}/sessions/{session_id}",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(SessionPath),
    responses(
        (status = 204, description = "Ended"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn user_session_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(SessionPath {
        org,
        id,
        session_id,
    }): Path<SessionPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Read).await?;
    s.idp
        .sessions
        .end_for(&p, &org, &id, Some(&session_id))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn send_link(
    s: &AppState,
    p: &crate::tenancy::access::Principal,
    org: &str,
    id: &str,
    purpose: LinkPurpose,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, p, org, Action::Write).await?;
    let (link, url) = s.idp.people.send_link(p, &org, id, purpose).await?;
    Ok((StatusCode::CREATED, Json(links::view(&link, url.as_ref()))).into_response())
}

/// Sends the user an email verification link (`{iss}/verify-email/{token}`, single use, valid
/// 24 hours): mailed with SMTP configured; without, the answer's `url` is shown once. 409 when
/// the address is already verified or the user is suspended.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/users/{id}/verify-email",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 201, description = "A link was made: mailed (`mailed: true`) or in `url`, once", body = LinkResponse),
        Authenticated, Forbidden, NotFound, Conflict, Unavailable,
    ),
)]
pub async fn user_verify_email_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    send_link(&s, &p, &org, &id, LinkPurpose::VerifyEmail).await
}

/// Sends the user a password reset link (`{iss}/password-reset/{token}`, single use, valid 30
/// minutes; using it ends the user's other reset links, sets `password_changed_at` and marks
/// the address verified): mailed with SMTP configured; without, the answer's `url` is shown
/// once. 409 when the user is suspended.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/users/{id}/password-reset",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 201, description = "A link was made: mailed (`mailed: true`) or in `url`, once", body = LinkResponse),
        Authenticated, Forbidden, NotFound, Conflict, Unavailable,
    ),
)]
pub async fn user_password_reset_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    send_link(&s, &p, &org, &id, LinkPurpose::PasswordReset).await
}

/// Starts an ownership transfer (owner only): `user_id` names an active admin or member, who
/// accepts within 7 days (`POST .../ownership-transfer/accept` as themselves, or the link
/// `{iss}/ownership-transfer/{token}`, mailed to them with SMTP configured, else in the
/// answer's `accept_url`, once). On acceptance the named person becomes an owner and
/// `from_user_id` (the owner handing over; a person calling hands over their own) an admin.
/// One pending transfer per organization (409 while one is).
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/ownership-transfer",
    tag = "users",
    extensions(("x-agentidp-role" = json!("owner"))),
    params(OrgPath),
    request_body = NewTransfer,
    responses(
        (status = 201, description = "The pending transfer, with `accept_url` (shown once) when no SMTP is configured", body = TransferResponse),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict, Unavailable,
    ),
)]
pub async fn ownership_transfer_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiJson(body): ApiJson<NewTransfer>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Own).await?;
    let (t, url) = s.idp.people.start_transfer(&p, &org, body).await?;
    let now = s.idp.clock.now();
    Ok((
        StatusCode::CREATED,
        Json(transfers::view(&t, now, url.as_ref())),
    )
        .into_response())
}

/// The organization's pending ownership transfer (404 when there is none).
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/ownership-transfer",
    tag = "users",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath),
    responses(
        (status = 200, description = "The pending transfer (never its link)", body = TransferResponse),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn ownership_transfer_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Read).await?;
    let t = s.idp.people.pending_transfer(&p, &org).await?;
    Ok(Json(transfers::view(&t, s.idp.clock.now(), None)).into_response())
}

/// Revokes the pending ownership transfer (owner only): its link stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/ownership-transfer",
    tag = "users",
    extensions(("x-agentidp-role" = json!("owner"))),
    params(OrgPath),
    responses(
        (status = 204, description = "Revoked"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn ownership_transfer_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Own).await?;
    s.idp.people.revoke_transfer(&p, &org).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The person named by the pending transfer accepts it, as themselves (a person's access
/// token for the admin API; any other principal gets 403): they become an owner and the owner
/// who handed over an admin, in one transaction.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/ownership-transfer/accept",
    tag = "users",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath),
    responses(
        (status = 200, description = "The accepted transfer", body = TransferResponse),
        Authenticated, Forbidden, NotFound, Conflict,
    ),
)]
pub async fn ownership_transfer_accept_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Read).await?;
    let t = s.idp.people.accept_transfer_as(&p, &org).await?;
    Ok(Json(transfers::view(&t, s.idp.clock.now(), None)).into_response())
}

/// `.../users/{id}/delegations/{delegation_id}` path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DelegationPath {
    /// The organization's slug.
    pub org: String,
    /// The user's id.
    pub id: String,
    /// The delegation grant's id.
    pub delegation_id: String,
}

/// The person's delegation grants to agents, revoked ones too (newest first). The person sees
/// and revokes their own at `{iss}/account`.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/users/{id}/delegations",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The grants", body = Vec<crate::people::delegations::DelegationResponse>),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn user_delegations_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    let list = s.idp.delegations.list(&p, &org, &id).await?;
    let now = s.idp.clock.now();
    let items: Vec<_> = list
        .iter()
        .map(|d| crate::people::delegations::view(d, now))
        .collect();
    Ok(Json(items).into_response())
}

/// Grants an agent a bounded part of the person's authority (scopes among the agent's, an
/// optional end): the agent may then exchange the person's tokens for tokens that act for them
/// (RFC 8693, `act`).
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/users/{id}/delegations",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    request_body = crate::people::delegations::NewDelegation,
    responses(
        (status = 201, description = "The grant", body = crate::people::delegations::DelegationResponse),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict,
    ),
)]
pub async fn user_delegations_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
    ApiJson(body): ApiJson<crate::people::delegations::NewDelegation>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    let d = s.idp.delegations.grant(&p, &org, &id, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::people::delegations::view(&d, s.idp.clock.now())),
    )
        .into_response())
}

/// Revokes the grant: no more exchanges, and the tokens issued under it stop at once.
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/users/{id}/delegations/{delegation_id}",
    tag = "users",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(DelegationPath),
    responses(
        (status = 204, description = "Revoked"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn user_delegation_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(DelegationPath {
        org,
        id,
        delegation_id,
    }): Path<DelegationPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    s.idp
        .delegations
        .revoke(&p, &org, &id, &delegation_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
