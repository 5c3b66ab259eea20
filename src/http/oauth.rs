//! OAuth endpoints of `{iss}`: token (RFC 6749 §3.2), introspection (RFC 7662), revocation
//! (RFC 7009) and agent proofs. Each handler: the organization (404 when unknown), the request
//! with its client credentials (its own OAuth error when malformed), one domain call, the mapping.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::{OAuthResponse, internal_error};
use super::extract::OAuthRequest;
use super::state::AppState;
use crate::oauth::error::OAuthError;
use crate::storage::OrgRecord;

/// The organization behind `{iss}`; an unknown one is a 404 like any unknown path.
pub async fn org_or_404(state: &AppState, slug: &str) -> Result<Arc<OrgRecord>, Response> {
    match state.idp.directory.org(slug).await {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(super::not_found().await.into_response()),
        Err(e) => {
            tracing::error!(error = %e, "organization lookup failed");
            Err(internal_error())
        }
    }
}

/// The organization and the parsed request, or the response that refuses them.
async fn org_and_request(
    state: &AppState,
    slug: &str,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Result<(Arc<OrgRecord>, OAuthRequest), Response> {
    let org = org_or_404(state, slug).await?;
    let req = req.map_err(IntoResponse::into_response)?;
    Ok((org, req))
}

/// The domain's answer as a response; a refusal in the endpoint's RFC format.
fn respond<T>(basic: bool, r: Result<T, OAuthError>, ok: impl FnOnce(T) -> Response) -> Response {
    match r {
        Ok(v) => ok(v),
        Err(e) => {
            tracing::debug!(error = %e.code.as_str(), "OAuth request refused");
            OAuthResponse::new(e, basic).into_response()
        }
    }
}

fn json_ok<T: serde::Serialize>(v: T) -> Response {
    Json(v).into_response()
}

/// `POST {iss}/oauth2/token` (RFC 6749 §3.2).
pub async fn token_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    let (org, req) = match org_and_request(&state, &slug, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = state.idp.clock.now();
    let r = state
        .idp
        .oauth
        .token(&org, req.client, &req.form, now)
        .await;
    respond(req.basic, r, json_ok)
}

/// `POST {iss}/oauth2/introspect` (RFC 7662 §2).
pub async fn introspect_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    let (org, req) = match org_and_request(&state, &slug, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = state.idp.clock.now();
    let r = state
        .idp
        .oauth
        .introspect(&org, req.client, &req.form, now)
        .await;
    respond(req.basic, r, json_ok)
}

/// `POST {iss}/oauth2/revoke` (RFC 7009 §2.1); success is 200 with no body (§2.2).
pub async fn revoke_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    let (org, req) = match org_and_request(&state, &slug, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = state.idp.clock.now();
    let r = state
        .idp
        .oauth
        .revoke(&org, req.client, &req.form, now)
        .await;
    respond(req.basic, r, |()| StatusCode::OK.into_response())
}

/// `POST {iss}/agent-proof`: a proof-of-control JWT for the authenticated agent.
pub async fn agent_proof_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    let (org, req) = match org_and_request(&state, &slug, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = state.idp.clock.now();
    let r = state
        .idp
        .oauth
        .agent_proof(&org, req.client, &req.form, now)
        .await;
    respond(req.basic, r, json_ok)
}
