//! Token, introspection and revocation handlers: extract, call the domain, map.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::error::OAuthResponse;
use super::extract::OAuthForm;
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
            Err(OAuthResponse(OAuthError::server_error()).into_response())
        }
    }
}

pub async fn token_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthForm, OAuthResponse>,
) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = state.idp.clock.now();
    match crate::oauth::token::token(
        &state.idp,
        &org,
        req.authorization.as_deref(),
        &req.form,
        now,
    )
    .await
    {
        Ok(t) => Json(t).into_response(),
        Err(e) => {
            tracing::debug!(error = %e.code.as_str(), "token request refused");
            OAuthResponse(e).into_response()
        }
    }
}

pub async fn introspect_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthForm, OAuthResponse>,
) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = state.idp.clock.now();
    match crate::oauth::introspect::introspect(
        &state.idp,
        &org,
        req.authorization.as_deref(),
        &req.form,
        now,
    )
    .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => OAuthResponse(e).into_response(),
    }
}

pub async fn revoke_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    req: Result<OAuthForm, OAuthResponse>,
) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = state.idp.clock.now();
    match crate::oauth::revoke::revoke(
        &state.idp,
        &org,
        req.authorization.as_deref(),
        &req.form,
        now,
    )
    .await
    {
        Ok(()) => axum::http::StatusCode::OK.into_response(),
        Err(e) => OAuthResponse(e).into_response(),
    }
}
