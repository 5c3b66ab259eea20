//! `/api/v1/orgs/{org}/clients`: the organization's people-facing apps (clients of the
//! authorization code flow: web, native and browser apps, MCP clients). They are the same
//! records as agents (one authentication path, cache and revocation path), of kind `app`, without
//! a DID; an app's id answers 404 under `/agents` and an agent's here.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::admin::{
    AgentQuery, ApiResult, IfMatchHeader, ListResponse, ObjectPath, OrgPath, Page, RotateSecret,
    agent_answer, if_match, optional_body, page, with_etag,
};
use super::error::{ApiError, ErrorResponse};
use super::extract::{Admin, ApiJson, ApiQuery};
use super::openapi::{
    Authenticated, BadQuery, Conflict, Forbidden, Invalid, JsonBody, NotFound, Precondition,
};
use super::state::AppState;
use crate::tenancy::agents::{self, AgentInput, AgentResponse};

/// Registers an app: confidential (`client_secret_basic` by default, the secret in this answer
/// only; or `private_key_jwt`) or public (`token_endpoint_auth_method: none`, PKCE only).
/// `name`, `scopes` and `redirect_uris` are required; `grant_types` defaults to
/// `authorization_code` and `refresh_token`.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/clients",
    tag = "clients",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath),
    request_body = AgentInput,
    responses(
        (status = 201, description = "The client, with its secret when confidential", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid,
    ),
)]
pub async fn clients_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiJson(body): ApiJson<AgentInput>,
) -> ApiResult {
    let (client, secret) = s.idp.apps.create(&p, &org, body).await?;
    Ok(with_etag(
        StatusCode::CREATED,
        agents::view(&client, Some(&org), secret.as_ref()),
        client.version,
    ))
}

/// The organization's apps, a page at a time, optionally filtered.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/clients",
    tag = "clients",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath, AgentQuery),
    responses(
        (status = 200, description = "A page of clients", body = ListResponse<AgentResponse>),
        Authenticated, Forbidden, NotFound, BadQuery, Invalid,
    ),
)]
pub async fn clients_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiQuery(q): ApiQuery<AgentQuery>,
) -> ApiResult {
    let limit = Page {
        limit: q.limit.clone(),
        after: None,
    }
    .limit()?;
    let filter = q.filter()?;
    let items = s
        .idp
        .apps
        .list(&p, &org, q.after.as_deref(), limit, &filter)
        .await?;
    Ok(Json(page(
        items,
        limit,
        |a| a.id(),
        |a| agents::view(a, Some(&org), None),
    ))
    .into_response())
}

/// The client, never its secret.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/clients/{id}",
    tag = "clients",
    extensions(("x-agentidp-role" = json!("member"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The client", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn client_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    let client = s.idp.apps.get(&p, &org, &id).await?;
    Ok(agent_answer(&client, &org))
}

/// Changes the given fields only (a list given replaces the stored one).
#[utoipa::path(
    patch,
    path = "/api/v1/orgs/{org}/clients/{id}",
    tag = "clients",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath, IfMatchHeader),
    request_body = AgentInput,
    responses(
        (status = 200, description = "The client", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict, Precondition,
    ),
)]
pub async fn client_patch(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AgentInput>,
) -> ApiResult {
    let pre = if_match(&headers)?;
    let client = s.idp.apps.update(&p, &org, &id, body, pre.as_ref()).await?;
    Ok(agent_answer(&client, &org))
}

/// Deletes the client: it gets no more tokens and the tokens issued to it are inactive.
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/clients/{id}",
    tag = "clients",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 204, description = "Deleted"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn client_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    s.idp.apps.delete(&p, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Issues a new client secret (confidential clients), shown in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/clients/{id}/rotate-secret",
    tag = "clients",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    request_body(content = Option<RotateSecret>, description = "Optional: an empty body rotates without a grace period (the Content-Type is not checked)", content_type = "application/json"),
    responses(
        (status = 200, description = "The client with its new `client_secret`", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        (status = 400, description = "Malformed JSON or an unknown or mistyped field", body = ErrorResponse),
        (status = 413, description = "A body over 64 KiB", body = ErrorResponse),
        Authenticated, Forbidden, NotFound, Invalid, Conflict,
    ),
)]
pub async fn client_rotate_secret_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "invalid_request",
            "the request body is unreadable or too large",
        )
    })?;
    let grace = optional_body::<RotateSecret>(&body)?.and_then(|b| b.grace_period_secs);
    let (client, secret) = s.idp.apps.rotate_secret(&p, &org, &id, grace).await?;
    Ok(with_etag(
        StatusCode::OK,
        agents::view(&client, Some(&org), Some(&secret)),
        client.version,
    ))
}
