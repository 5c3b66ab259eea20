//! `POST {iss}/federation/verify` and the partner admin API.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::admin::{
    ApiResult, IfMatchHeader, ListResponse, ObjectPath, OrgPath, Page, if_match, with_etag,
};
use super::error::{ApiError, BearerError, internal_error};
use super::extract::{Admin, ApiJson, ApiQuery, ClientIp, bearer_from_header};
use super::oauth::org_or_404;
use super::openapi::{
    Authenticated, BadQuery, Conflict, Forbidden, Invalid, JsonBody, NotFound, Precondition,
};
use super::state::AppState;
use crate::federation::partners::{self, PartnerInput, PartnerResponse};
use crate::federation::verify;
use crate::limiter::Subject;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    assertion: String,
}

/// Verifies a partner assertion. The caller is one of the organization's agents (Bearer access
/// token) or the platform. A verified assertion is spent: it cannot be verified or exchanged again.
pub async fn verify_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<ApiJson<VerifyRequest>, ApiError>,
) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    // The platform token is accepted here too, so a wrong token counts against the address's
    // failed authentications like at the admin API (issue 9 point 7).
    let subjects = [Subject::Ip(ip)];
    if let Some(retry) = state.auth_failures.refused(&subjects) {
        tracing::info!(event = "federation.rate_limited", client_ip = %ip, retry_after = retry.0, "verify request refused: too many failed authentications");
        crate::telemetry::auth_failure("verifier", "rate_limited");
        return super::error::oauth_rate_limited(retry);
    }
    let Some(token) = bearer_from_header(&headers) else {
        return BearerError(None).into_response();
    };
    let now = state.idp.clock.now();
    let platform = matches!(
        state.idp.principals.authenticate(&token, ip).await,
        Ok(p) if p.is_platform()
    );
    if !platform
        && let Err(e) = state
            .idp
            .oauth
            .authorize_verifier(&org, token.expose(), now)
            .await
    {
        state.auth_failures.failed(&subjects).await;
        tracing::info!(event = "federation.unauthorized", client_ip = %ip, "verify request refused: the bearer token is not valid here");
        crate::telemetry::auth_failure("verifier", "invalid_token");
        return BearerError(Some(e)).into_response();
    }
    let req = match body {
        Ok(ApiJson(r)) => r,
        Err(e) => return e.into_response(),
    };
    let answer = match state
        .idp
        .oauth
        .verifier
        .verify(&org, &req.assertion, now)
        .await
    {
        Ok(v) => json!({
            "valid": true,
            "partner": {"id": v.partner.record.id, "issuer": v.partner.record.issuer, "name": v.partner.record.name},
            "subject": v.subject,
            "claims": v.claims,
            "local_claims": v.local_claims,
        }),
        Err(verify::VerifyError::Internal) => return internal_error(),
        Err(e) => json!({"valid": false, "error": e.code(), "error_description": e.to_string()}),
    };
    let mut resp = Json(answer).into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// Registers a partner by `issuer` with `jwks_uri`, `jwks` or `did`, or by `issuer` alone (its
/// `jwks_uri` discovered from its metadata).
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/partners",
    tag = "partners",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath),
    request_body = PartnerInput,
    responses(
        (status = 201, description = "The partner", body = PartnerResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict,
    ),
)]
pub async fn partners_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiJson(body): ApiJson<PartnerInput>,
) -> ApiResult {
    let partner = s.idp.partner_admin.create(&p, &org, body).await?;
    Ok(with_etag(
        StatusCode::CREATED,
        partners::view(&partner),
        partner.record.version,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/partners",
    tag = "partners",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath, Page),
    responses(
        (status = 200, description = "A page of partners", body = ListResponse<PartnerResponse>),
        Authenticated, Forbidden, NotFound, BadQuery, Invalid,
    ),
)]
pub async fn partners_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult {
    let limit = q.limit()?;
    let items = s
        .idp
        .partner_admin
        .list(&p, &org, q.after.as_deref(), limit)
        .await?;
    Ok(Json(super::admin::page(
        items,
        limit,
        |p| p.record.id.as_str(),
        partners::view,
    ))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/partners/{id}",
    tag = "partners",
    extensions(("x-agentidp-role" = json!("member"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The partner", body = PartnerResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn partner_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    Ok(partner_answer(
        &s.idp.partner_admin.get(&p, &org, &id).await?,
    ))
}

/// Changes the given fields only (`issuer` never changes).
#[utoipa::path(
    patch,
    path = "/api/v1/orgs/{org}/partners/{id}",
    tag = "partners",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath, IfMatchHeader),
    request_body = PartnerInput,
    responses(
        (status = 200, description = "The partner", body = PartnerResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict, Precondition,
    ),
)]
pub async fn partner_patch(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PartnerInput>,
) -> ApiResult {
    let pre = if_match(&headers)?;
    let partner = s
        .idp
        .partner_admin
        .update(&p, &org, &id, body, pre.as_ref())
        .await?;
    Ok(partner_answer(&partner))
}

/// 200 with the partner and its `ETag`.
fn partner_answer(partner: &crate::federation::Partner) -> Response {
    with_etag(
        StatusCode::OK,
        partners::view(partner),
        partner.record.version,
    )
}

#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/partners/{id}",
    tag = "partners",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 204, description = "Deleted"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn partner_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    s.idp.partner_admin.delete(&p, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_enabled(
    s: AppState,
    p: crate::tenancy::access::Principal,
    org: String,
    id: String,
    enabled: bool,
) -> ApiResult {
    let input = PartnerInput {
        enabled: Some(enabled),
        ..Default::default()
    };
    Ok(partner_answer(
        &s.idp
            .partner_admin
            .update(&p, &org, &id, input, None)
            .await?,
    ))
}

/// Disables the partner: its assertions are refused until it is enabled.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/partners/{id}/disable",
    tag = "partners",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The partner", body = PartnerResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn partner_disable_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    set_enabled(s, p, org, id, false).await
}

/// Enables the partner.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/partners/{id}/enable",
    tag = "partners",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The partner", body = PartnerResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn partner_enable_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    set_enabled(s, p, org, id, true).await
}
