//! `{iss}/oauth2/register` (RFC 7591 §3) and the client configuration endpoint
//! `{iss}/oauth2/register/{client_id}` (RFC 7592 §2: `GET`, `PUT`, `DELETE` with the registration
//! access token as `Bearer`). The rules live in `tenancy::registration`; here: the organization
//! (404 when unknown), the bearer token, the body, the limits and the mapping of refusals to
//! RFC 7591 §3.2.2 (400 `{"error", "error_description"}`) and RFC 6750 §3 (401 with
//! `WWW-Authenticate: Bearer`).
//!
//! Limits: a body over 64 KiB is 413 (the edge's limit); failed tokens count against the
//! client address's failed-authentication brake (as client authentication does), and
//! registrations without a token (open registration) are limited per client address.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{oauth_rate_limited, oauth_too_many_requests, rate_limit_headers};
use super::extract::ClientIp;
use super::oauth::org_or_404;
use super::state::AppState;
use crate::limiter::{Decision, Limit, Subject};
use crate::storage::OrgRecord;
use crate::tenancy::registration::RegistrationError;

/// Open registrations (no initial access token) per client address: a burst of 20, then one a
/// second.
pub const OPEN_REGISTRATION_LIMIT: Limit = Limit {
    per_second: 1,
    burst: 20,
};

/// The bearer token of `Authorization` (RFC 6750 §2.1): `Ok(None)` without the header,
/// `Err(())` for another scheme or a malformed value.
fn bearer(headers: &HeaderMap) -> Result<Option<String>, ()> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?;
    let (scheme, token) = v.split_once(' ').ok_or(())?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > 512 {
        return Err(());
    }
    Ok(Some(token.to_owned()))
}

fn error_response(org: &OrgRecord, e: &RegistrationError) -> Response {
    let (status, challenge) = match e {
        RegistrationError::InvalidToken(m) => (
            StatusCode::UNAUTHORIZED,
            Some(format!(
                "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
                org.issuer,
                m.replace(['"', '\\'], "'")
            )),
        ),
        RegistrationError::TokenRequired(_) => (
            StatusCode::UNAUTHORIZED,
            Some(format!("Bearer realm=\"{}\"", org.issuer)),
        ),
        RegistrationError::Disabled => (StatusCode::FORBIDDEN, None),
        RegistrationError::Internal(m) => {
            tracing::error!(error = %m, "client registration failed");
            (StatusCode::INTERNAL_SERVER_ERROR, None)
        }
        _ => (StatusCode::BAD_REQUEST, None),
    };
    let description = match e {
        RegistrationError::Internal(_) => "internal error".to_owned(),
        other => other.to_string(),
    };
    let mut resp = (
        status,
        Json(json!({"error": e.code(), "error_description": description})),
    )
        .into_response();
    if let Some(c) = challenge
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The JSON body of a `POST` or `PUT` (RFC 7591 §3.1: `application/json`), or the answer
/// refusing it.
fn json_body(
    org: &OrgRecord,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Box<Response>> {
    let refuse = |m: &str| {
        Box::new(error_response(
            org,
            &RegistrationError::InvalidClientMetadata(m.into()),
        ))
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Box::new(super::payload_too_large()));
        }
        Err(_) => return Err(refuse("the request body is unreadable")),
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(refuse(
            "the body must be a JSON object with Content-Type: application/json (RFC 7591 §3.1)",
        ));
    }
    Ok(body)
}

/// Counts a refused token against the address (the failed-authentication brake).
async fn note_failure(
    state: &AppState,
    org: &OrgRecord,
    ip: std::net::IpAddr,
    e: &RegistrationError,
) {
    if matches!(e, RegistrationError::InvalidToken(_)) {
        state.auth_failures.failed(&[Subject::Ip(ip)]).await;
        tracing::info!(event = "registration.token_refused", org = %org.slug, client_ip = %ip, reason = %e, "registration token refused");
        crate::telemetry::auth_failure("client", "invalid_token");
    }
}

/// RFC 7591 §3.1: registers a client.
pub async fn register_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Some(retry) = state.auth_failures.refused(&[Subject::Ip(ip)]) {
        return oauth_rate_limited(retry);
    }
    let token = match bearer(&headers) {
        Ok(t) => t,
        Err(()) => {
            let e = RegistrationError::InvalidToken("malformed Authorization header".into());
            note_failure(&state, &org, ip, &e).await;
            return error_response(&org, &e);
        }
    };
    let body = match json_body(&org, &headers, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if token.is_none() {
        let key = format!("register:{}", Subject::Ip(ip).key());
        let d = state.rate_limiter.check(&key, OPEN_REGISTRATION_LIMIT);
        if matches!(d, Decision::Limited { .. }) {
            let mut resp = oauth_too_many_requests(&d);
            rate_limit_headers(resp.headers_mut(), &d, "register");
            return resp;
        }
    }
    match state
        .idp
        .registrations
        .register(&org, token.as_deref(), &body)
        .await
    {
        Ok(v) => {
            tracing::info!(event = "client.registered", org = %org.slug, client_id = %v["client_id"].as_str().unwrap_or(""), client_ip = %ip, enrolled = token.is_some(), "client registered");
            (StatusCode::CREATED, Json(v)).into_response()
        }
        Err(e) => {
            note_failure(&state, &org, ip, &e).await;
            error_response(&org, &e)
        }
    }
}

/// The request's registration access token, or the response refusing it.
async fn management_token(
    state: &AppState,
    org: &OrgRecord,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
) -> Result<Option<String>, Response> {
    if let Some(retry) = state.auth_failures.refused(&[Subject::Ip(ip)]) {
        return Err(oauth_rate_limited(retry));
    }
    match bearer(headers) {
        Ok(t) => Ok(t),
        Err(()) => {
            let e = RegistrationError::InvalidToken("malformed Authorization header".into());
            note_failure(state, org, ip, &e).await;
            Err(error_response(org, &e))
        }
    }
}

/// RFC 7592 §2.1: reads the registration.
pub async fn client_get(
    State(state): State<AppState>,
    Path((slug, client_id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let token = match management_token(&state, &org, ip, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match state
        .idp
        .registrations
        .read(&org, &client_id, token.as_deref())
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            note_failure(&state, &org, ip, &e).await;
            error_response(&org, &e)
        }
    }
}

/// RFC 7592 §2.2: replaces the registration's metadata.
pub async fn client_put(
    State(state): State<AppState>,
    Path((slug, client_id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let token = match management_token(&state, &org, ip, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let body = match json_body(&org, &headers, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match state
        .idp
        .registrations
        .update(&org, &client_id, token.as_deref(), &body)
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            note_failure(&state, &org, ip, &e).await;
            error_response(&org, &e)
        }
    }
}

/// RFC 7592 §2.3: deletes the client.
pub async fn client_delete(
    State(state): State<AppState>,
    Path((slug, client_id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let org = match org_or_404(&state, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let token = match management_token(&state, &org, ip, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match state
        .idp
        .registrations
        .delete(&org, &client_id, token.as_deref())
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            note_failure(&state, &org, ip, &e).await;
            error_response(&org, &e)
        }
    }
}
