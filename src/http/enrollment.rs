//! `/api/v1/orgs/{org}/enrollment-tokens`: enrollment tokens (RFC 7591 initial access tokens
//! for agent runtimes registering at `{iss}/oauth2/register`), the agents each enrolled, and
//! their revocation together. The token is in the answer that created it only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::admin::{ApiResult, ListResponse, ObjectPath, OrgPath, Page, page};
use super::extract::{Admin, ApiJson, ApiQuery};
use super::openapi::{Authenticated, BadQuery, Forbidden, Invalid, JsonBody, NotFound};
use super::state::AppState;
use crate::admin_error::AdminError;
use crate::tenancy::agents::{self, AgentResponse};
use crate::tenancy::enrollments::{self, EnrollmentResponse, NewEnrollment, RevokedAgents};

/// Enrollment token ids are 32 lowercase hex digits; anything else names none.
fn check_id(id: &str) -> Result<(), AdminError> {
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(AdminError::NotFound)
    }
}

/// Makes an enrollment token: an agent runtime registers at `{iss}/oauth2/register` with it as
/// the `Bearer` initial access token and its own public key. `token` is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/enrollment-tokens",
    tag = "enrollment-tokens",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath),
    request_body = NewEnrollment,
    responses(
        (status = 201, description = "The enrollment token, with `token` (shown once)", body = EnrollmentResponse),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid,
    ),
)]
pub async fn enrollment_tokens_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiJson(body): ApiJson<NewEnrollment>,
) -> ApiResult {
    let (rec, token) = s.idp.enrollments.create(&p, &org, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(enrollments::view(&rec, Some(&token))),
    )
        .into_response())
}

/// The organization's enrollment tokens (revoked and expired ones too), never the tokens.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/enrollment-tokens",
    tag = "enrollment-tokens",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath, Page),
    responses(
        (status = 200, description = "A page of enrollment tokens", body = ListResponse<EnrollmentResponse>),
        Authenticated, Forbidden, NotFound, BadQuery, Invalid,
    ),
)]
pub async fn enrollment_tokens_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult {
    let limit = q.limit()?;
    let items = s
        .idp
        .enrollments
        .list(&p, &org, q.after.as_deref(), limit)
        .await?;
    Ok(Json(page(
        items,
        limit,
        |r| r.id.as_str(),
        |r| enrollments::view(r, None),
    ))
    .into_response())
}

/// One enrollment token, never the token itself.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/enrollment-tokens/{id}",
    tag = "enrollment-tokens",
    extensions(("x-agentidp-role" = json!("member"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The enrollment token", body = EnrollmentResponse),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn enrollment_token_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    check_id(&id)?;
    let rec = s.idp.enrollments.get(&p, &org, &id).await?;
    Ok(Json(enrollments::view(&rec, None)).into_response())
}

/// Revokes the enrollment token: no registration uses it from now on. The agents it enrolled
/// keep working (see `revoke-agents`).
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/enrollment-tokens/{id}",
    tag = "enrollment-tokens",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 204, description = "Revoked"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn enrollment_token_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    check_id(&id)?;
    s.idp.enrollments.revoke(&p, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The agents the enrollment token enrolled (revoked ones too), a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/enrollment-tokens/{id}/agents",
    tag = "enrollment-tokens",
    extensions(("x-agentidp-role" = json!("member"))),
    params(ObjectPath, Page),
    responses(
        (status = 200, description = "A page of agents", body = ListResponse<AgentResponse>),
        Authenticated, Forbidden, NotFound, BadQuery, Invalid,
    ),
)]
pub async fn enrollment_token_agents_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult {
    let limit = q.limit()?;
    check_id(&id)?;
    let items = s
        .idp
        .enrollments
        .agents(&p, &org, &id, q.after.as_deref(), limit)
        .await?;
    Ok(Json(page(
        items,
        limit,
        |a| a.id(),
        |a| agents::view(a, Some(&org), None),
    ))
    .into_response())
}

/// Revokes every agent the enrollment token enrolled (final, as agent revocation: their tokens
/// stop introspecting as active at once).
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/enrollment-tokens/{id}/revoke-agents",
    tag = "enrollment-tokens",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "How many agents were revoked", body = RevokedAgents),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn enrollment_token_revoke_agents_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    check_id(&id)?;
    let revoked = s
        .idp
        .enrollments
        .revoke_agents(&p, &org, &id, &s.idp.agents)
        .await?;
    Ok(Json(RevokedAgents { revoked }).into_response())
}
