//! did:web documents, DID resolution (DIF Universal Resolver HTTP binding), agent cards and
//! proofs of control.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::admin::{ApiResult, ObjectPath};
use super::error::{ApiError, internal_error};
use super::extract::{Admin, ApiJson};
use super::oauth::org_or_404;
use super::openapi::{Authenticated, Conflict, Forbidden, Invalid, JsonBody, NotFound};
use super::state::AppState;
use crate::did::OwnDid;
use crate::did::card::CardMeta;
use crate::did::resolver::ResolveError;

const DID_JSON: &str = "application/did+json";
use crate::did::rendered::DID_LD_JSON;
const RESOLUTION_RESULT: &str = "application/ld+json;profile=\"https://w3id.org/did-resolution\"";

/// `application/did+ld+json` when the client asks for it, else `application/did+json`.
fn did_media_type(headers: &HeaderMap) -> &'static str {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains(DID_LD_JSON) {
        DID_LD_JSON
    } else {
        DID_JSON
    }
}

fn json_with(
    status: StatusCode,
    content_type: &'static str,
    body: &Value,
    cache: &'static str,
) -> Response {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    rendered_response(status, content_type, bytes, cache)
}

/// DID documents change with key rotation and lifecycle; a minute of caching is safe because a
/// new key is published long before it signs.
const DID_CACHE: &str = "public, max-age=60";

/// A pre-rendered document as an answer.
fn rendered_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    cache: &'static str,
) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

async fn serve_own(state: &AppState, which: OwnDid, headers: &HeaderMap) -> Response {
    let now = state.idp.clock.now();
    match state.idp.resolver.render_own(which, now).await {
        // did:web §3.2.4 Deactivate: the document is no longer served.
        Ok(r) if r.deactivated() => (
            StatusCode::GONE,
            Json(json!({"error": "deactivated", "error_description": "this DID is deactivated"})),
        )
            .into_response(),
        Ok(r) => rendered_response(
            StatusCode::OK,
            did_media_type(headers),
            r.document.clone(),
            DID_CACHE,
        ),
        Err(ResolveError::NotFound) => super::not_found().await.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a DID document failed");
            internal_error()
        }
    }
}

/// `GET /.well-known/did.json`: the instance's document.
pub async fn instance_did_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    serve_own(&state, OwnDid::Instance, &headers).await
}

/// `GET {iss}/did.json`: the organization's document.
pub async fn org_did_get(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve_own(&state, OwnDid::Org { slug }, &headers).await
}

/// `GET {iss}/agents/{id}/did.json`: an agent's document.
pub async fn agent_did_get(
    State(state): State<AppState>,
    Path((slug, agent_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve_own(&state, OwnDid::Agent { slug, agent_id }, &headers).await
}

/// `GET /1.0/identifiers/{did}` (DIF Universal Resolver HTTP binding). The path is
/// percent-decoded once (the binding encodes the DID, so `%3A` arrives as `%253A`), unless it
/// already is a DID as printed (`did:web:localhost%3A8443`): see [`crate::did::did_from_path`].
/// `Accept: application/did+json` or `application/did+ld+json` gets the bare document; anything
/// else the full resolution result. Errors and their statuses: [`ResolveError`].
pub async fn identifiers_get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let now = state.idp.clock.now();
    let limiter = state.foreign_resolution_limit.clone();
    // The raw segment (axum's path extractors decode it, which would change a printed DID).
    let did = uri
        .path()
        .strip_prefix("/1.0/identifiers/")
        .and_then(crate::did::did_from_path);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bare = accept.contains(DID_JSON) || accept.contains(DID_LD_JSON);
    // Our own DIDs: pre-rendered, both as the bare document and as the resolution result.
    if let Some(which) = did
        .as_deref()
        .and_then(|d| crate::did::own_did(&state.idp.resolver.instance_did, d))
        && let Ok(r) = state.idp.resolver.render_own(which, now).await
    {
        let status = if r.deactivated() {
            StatusCode::GONE
        } else {
            StatusCode::OK
        };
        if bare {
            let ct = if accept.contains(DID_LD_JSON) {
                DID_LD_JSON
            } else {
                DID_JSON
            };
            return rendered_response(status, ct, r.document.clone(), DID_CACHE);
        }
        return rendered_response(status, RESOLUTION_RESULT, r.resolution.clone(), "no-store");
    }
    let result = match &did {
        Some(did) => {
            state
                .idp
                .resolver
                .resolve_public(did, now, || limiter.check_key(&peer.ip()).is_ok())
                .await
        }
        None => Err(ResolveError::InvalidDid),
    };
    let (status, doc, meta, error) = match result {
        Ok(r) => {
            let deactivated = r.meta.is_some_and(|m| m.deactivated);
            let status = if deactivated {
                StatusCode::GONE
            } else {
                StatusCode::OK
            };
            (status, Some(r.document), r.meta, None)
        }
        Err(e) => {
            let status = match e {
                ResolveError::InvalidDid => StatusCode::BAD_REQUEST,
                ResolveError::NotFound => StatusCode::NOT_FOUND,
                ResolveError::MethodNotSupported => StatusCode::NOT_IMPLEMENTED,
                ResolveError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                // A remote failure is not ours: a gateway status, the cause in the log.
                ResolveError::Unreachable { timeout, ref cause } => {
                    tracing::info!(error = %cause, "a foreign DID could not be resolved");
                    if timeout {
                        StatusCode::GATEWAY_TIMEOUT
                    } else {
                        StatusCode::BAD_GATEWAY
                    }
                }
                ResolveError::InvalidDocument(ref m) => {
                    tracing::info!(error = %m, "a foreign DID's document is unusable");
                    StatusCode::BAD_GATEWAY
                }
                ResolveError::Internal(ref m) => {
                    tracing::error!(error = %m, "DID resolution failed");
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            (status, None, None, Some(e.code()))
        }
    };
    if bare && let Some(d) = &doc {
        let ct = if accept.contains(DID_LD_JSON) {
            DID_LD_JSON
        } else {
            DID_JSON
        };
        return json_with(status, ct, d, DID_CACHE);
    }
    let body = crate::did::rendered::resolution_result(doc.as_ref(), meta, error);
    json_with(status, RESOLUTION_RESULT, &body, "no-store")
}

/// `GET {iss}/agents/{id}/card`: the signed agent card. Signed with the organization's active
/// key when served (and cached briefly), so a card never outlives its key.
pub async fn agent_card_get(
    State(state): State<AppState>,
    Path((slug, agent_id)): Path<(String, String)>,
) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let now = state.idp.clock.now();
    match state.idp.cards.signed(&org, &agent_id, now).await {
        Ok(Some(bytes)) => {
            let mut resp = bytes.into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(DID_CACHE));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            resp
        }
        Ok(None) => super::not_found().await.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering an agent card failed");
            internal_error()
        }
    }
}

/// The agent's card metadata (defaults when none was set).
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/agents/{id}/card",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("member"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The card metadata", body = CardMeta),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn agent_card_meta_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    Ok(Json(s.idp.cards.get_meta(&p, &org, &id).await?).into_response())
}

/// Replaces the agent's card metadata; the signed card at `{iss}/agents/{id}/card` shows it.
#[utoipa::path(
    put,
    path = "/api/v1/orgs/{org}/agents/{id}/card",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    request_body = CardMeta,
    responses(
        (status = 200, description = "The card metadata", body = CardMeta),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict,
    ),
)]
pub async fn agent_card_meta_put(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
    ApiJson(meta): ApiJson<CardMeta>,
) -> ApiResult {
    let meta = s
        .idp
        .cards
        .set_meta(&p, &org, &id, meta)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(meta).into_response())
}
