//! Discovery, JWKS and `/agent-info` handlers.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::{BearerError, internal_error};
use super::extract::bearer_from_header;
use super::oauth::org_or_404;
use super::state::AppState;
use crate::config::JWKS_MAX_AGE_SECS;
use crate::oauth::error::OAuthError;
use crate::oauth::form::FormParams;
use crate::oidc::{agent_info, discovery};

/// Public, cacheable JSON readable from any origin (relying parties in browsers fetch these).
/// `cache_control` is a `public, max-age=N` value built once ([`JWKS_CACHE_CONTROL`],
/// [`DISCOVERY_CACHE_CONTROL`]): nothing is formatted per request.
fn public_json(body: impl Into<axum::body::Body>, cache_control: &'static str) -> Response {
    let mut resp = Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// Discovery documents change only with a release; an hour of caching is safe.
const DISCOVERY_CACHE_CONTROL: &str = "public, max-age=3600";
/// [`JWKS_MAX_AGE_SECS`] as a header value.
const JWKS_CACHE_CONTROL: &str = "public, max-age=300";
const _: () = assert!(
    JWKS_MAX_AGE_SECS == 300,
    "JWKS_CACHE_CONTROL must say JWKS_MAX_AGE_SECS"
);

async fn discovery_doc(state: &AppState, slug: &str) -> Response {
    let org = match org_or_404(state, slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    // A hit costs no allocation (the key is looked up as a `&str`).
    let bytes = match state.discovery.get(org.id.as_str()).await {
        Some(b) => b,
        None => {
            state
                .discovery
                .get_with(org.id.to_string(), async move {
                    let v = discovery::metadata(&org, &discovery::advertised_scopes());
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
                })
                .await
        }
    };
    public_json(bytes, DISCOVERY_CACHE_CONTROL)
}

/// `GET {iss}/.well-known/openid-configuration` (OIDC Discovery 1.0 §4).
pub async fn openid_configuration_get(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Response {
    discovery_doc(&state, &slug).await
}

/// `GET /.well-known/oauth-authorization-server/orgs/{slug}` (RFC 8414 §3.1: the well-known
/// segment goes between the host and the issuer's path).
pub async fn oauth_metadata_get(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Response {
    discovery_doc(&state, &slug).await
}

/// `GET {iss}/jwks.json`: every pending, active and retired key (RFC 7517 §5).
pub async fn jwks_get(State(state): State<AppState>, Path(slug): Path<String>) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let now = state.idp.clock.now();
    match state.idp.keys.org_keys(&org, now).await {
        Ok(keys) => public_json(Bytes::from_owner(keys.jwks_json(now)), JWKS_CACHE_CONTROL),
        Err(e) => {
            tracing::error!(error = %e, "loading organization keys failed");
            internal_error()
        }
    }
}

async fn agent_info_for(
    state: &AppState,
    slug: &str,
    token: Option<crate::model::Secret>,
) -> Response {
    let org = match org_or_404(state, slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(token) = token else {
        return BearerError(None).into_response();
    };
    let now = state.idp.clock.now();
    match agent_info::agent_info(&state.idp.oauth, &org, token.expose(), now).await {
        Ok(v) => {
            let mut resp = axum::Json(v).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            tracing::info!(
                event = "bearer.refused",
                org = %org.slug,
                error = e.code.as_str(),
                "agent-info refused a bearer token"
            );
            BearerError(Some(e)).into_response()
        }
    }
}

/// `GET {iss}/agent-info` with `Authorization: Bearer`.
pub async fn agent_info_get(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    agent_info_for(&state, &slug, bearer_from_header(&headers)).await
}

/// `POST {iss}/agent-info`: header, or `access_token` in a form body (RFC 6750 §2.2), not both.
pub async fn agent_info_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let from_header = bearer_from_header(&headers);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let from_body = if is_form {
        match FormParams::parse(&body) {
            Ok(f) => f.secret("access_token"),
            Err(e) => return BearerError(Some(e)).into_response(),
        }
    } else {
        None
    };
    let token = match (from_header, from_body) {
        (Some(_), Some(_)) => {
            return BearerError(Some(OAuthError::invalid_request(
                "send the access token one way only",
            )))
            .into_response();
        }
        (a, b) => a.or(b),
    };
    agent_info_for(&state, &slug, token).await
}
