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
use crate::oauth::OAuth;
use crate::oauth::client_auth::ClientCredentials;
use crate::oauth::error::OAuthError;
use crate::oauth::form::FormParams;
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

/// One OAuth endpoint call: the organization (404 when unknown), the parsed request (its own
/// OAuth error when malformed), the clock read once, `call`, and the mapping of its answer (a
/// refusal in the RFC's format, its 401 challenge decided by how the client authenticated).
async fn handle<T>(
    state: &AppState,
    slug: &str,
    req: Result<OAuthRequest, OAuthResponse>,
    call: impl AsyncFnOnce(
        &OAuth,
        &OrgRecord,
        ClientCredentials,
        &FormParams,
        i64,
    ) -> Result<T, OAuthError>,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    let org = match org_or_404(state, slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = state.idp.clock.now();
    match call(&state.idp.oauth, &org, req.client, &req.form, now).await {
        Ok(v) => ok(v),
        Err(e) => {
            tracing::debug!(error = %e.code.as_str(), "OAuth request refused");
            OAuthResponse::new(e, req.basic).into_response()
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
    handle(&state, &slug, req, OAuth::token, json_ok).await
}

/// `POST {iss}/oauth2/introspect` (RFC 7662 §2).
pub async fn introspect_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    handle(&state, &slug, req, OAuth::introspect, json_ok).await
}

/// `POST {iss}/oauth2/revoke` (RFC 7009 §2.1); success is 200 with no body (§2.2).
pub async fn revoke_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    handle(&state, &slug, req, OAuth::revoke, |()| {
        StatusCode::OK.into_response()
    })
    .await
}

/// `POST {iss}/agent-proof`: a proof-of-control JWT for the authenticated agent.
pub async fn agent_proof_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    handle(&state, &slug, req, OAuth::agent_proof, json_ok).await
}
