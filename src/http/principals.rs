//! `/api/v1/orgs/{org}/api-keys`: an organization's API keys (INTERFACE.md "Organization
//! administration"). The key itself is in the answer of its creation or rotation only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::admin::{ApiResult, ListResponse, OrgPath, Page, page};
use super::error::{ApiError, ErrorResponse};
use super::extract::{Admin, ApiJson, ApiQuery};
use super::openapi::{Authenticated, BadQuery, Forbidden, Invalid, JsonBody, NotFound};
use super::state::AppState;
use crate::tenancy::access::Action;
use crate::tenancy::orgs;
use crate::tenancy::principals::{self, ApiKeyResponse, NewApiKey};

/// `{org}` and `{id}` of `/api/v1/orgs/{org}/api-keys/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyIdPath {
    /// The organization's slug.
    pub org: String,
    /// The API key's id.
    pub id: String,
}

/// Creates an API key with a role never above the caller's; the key is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/api-keys",
    tag = "api-keys",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "The API key, with `key` (shown once)", body = ApiKeyResponse),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid,
    ),
)]
pub async fn api_keys_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiJson(body): ApiJson<NewApiKey>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    let (key, secret) = s.idp.principals.create_api_key(&p, &org, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(principals::view(&key, Some(&secret))),
    )
        .into_response())
}

/// The organization's API keys that are not revoked (never the keys themselves), with when and
/// from where each was last used.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/api-keys",
    tag = "api-keys",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath, Page),
    responses(
        (status = 200, description = "A page of API keys", body = ListResponse<ApiKeyResponse>),
        Authenticated, Forbidden, NotFound, BadQuery, Invalid,
    ),
)]
pub async fn api_keys_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult {
    let limit = q.limit()?;
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Read).await?;
    let items = s
        .idp
        .principals
        .list_api_keys(&p, &org, q.after.as_deref(), limit)
        .await?;
    Ok(Json(page(
        items,
        limit,
        |k| k.id.as_str(),
        |k| principals::view(k, None),
    ))
    .into_response())
}

/// Revokes the API key at once, on every instance.
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/api-keys/{id}",
    tag = "api-keys",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(KeyIdPath),
    responses(
        (status = 204, description = "Revoked"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn api_key_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(KeyIdPath { org, id }): Path<KeyIdPath>,
) -> ApiResult {
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    s.idp.principals.revoke_api_key(&p, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../api-keys/{id}/rotate` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working, 0 to 604800 seconds; without, it stops at once.
    grace_period_secs: Option<i64>,
}

/// A new key for the API key (same id, role and restrictions), shown in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/api-keys/{id}/rotate",
    tag = "api-keys",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(KeyIdPath),
    request_body(content = Option<RotateKey>, description = "Optional: an empty body rotates without a grace period (the Content-Type is not checked)", content_type = "application/json"),
    responses(
        (status = 200, description = "The API key with its new `key`", body = ApiKeyResponse),
        (status = 400, description = "Malformed JSON or an unknown or mistyped field", body = ErrorResponse),
        (status = 413, description = "A body over 64 KiB", body = ErrorResponse),
        Authenticated, Forbidden, NotFound, Invalid,
    ),
)]
pub async fn api_key_rotate_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(KeyIdPath { org, id }): Path<KeyIdPath>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "invalid_request",
            "the request body is unreadable or too large",
        )
    })?;
    let grace = super::admin::optional_body::<RotateKey>(&body)?.and_then(|b| b.grace_period_secs);
    let org = orgs::visible(&s.idp.directory, &p, &org, Action::Write).await?;
    let (key, secret) = s
        .idp
        .principals
        .rotate_api_key(&p, &org, &id, grace)
        .await?;
    Ok(Json(principals::view(&key, Some(&secret))).into_response())
}
