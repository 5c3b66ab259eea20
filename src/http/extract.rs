//! Request extractors: they turn headers and bodies into plain values for the domain, and reject
//! bad input in the format of the endpoint's spec (never axum's plain-text rejections).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use serde::de::DeserializeOwned;

use super::error::{ApiError, OAuthResponse};
use super::state::AppState;
use crate::model::Secret;
use crate::oauth::error::OAuthError;
use crate::oauth::form::FormParams;
use crate::tenancy::access::Principal;

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

/// The raw Authorization header, if it is visible ASCII.
pub fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A form-encoded OAuth request body (RFC 6749 §3.2), with the Authorization header.
pub struct OAuthForm {
    pub form: FormParams,
    pub authorization: Option<String>,
}

impl FromRequest<AppState> for OAuthForm {
    type Rejection = OAuthResponse;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let authorization = authorization(req.headers());
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            OAuthError::invalid_request("the request body is unreadable or too large")
        })?;
        Ok(Self {
            form: FormParams::parse(&body)?,
            authorization,
        })
    }
}

/// A JSON admin body, parsed so errors name the offending field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "application/json") {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "Content-Type must be application/json",
            ));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("the request body is unreadable or too large"))?;
        // NUL cannot be stored in PostgreSQL text and has no business in any admin field.
        if body.windows(6).any(|w| w.eq_ignore_ascii_case(br"\u0000")) {
            return Err(ApiError::bad_request(
                r"NUL characters (\u0000) are not accepted",
            ));
        }
        let de = &mut serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(de)
            .map(ApiJson)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." || path.is_empty() {
                    ApiError::bad_request(format!("malformed JSON: {inner}"))
                } else {
                    ApiError::bad_request(format!("{path}: {inner}"))
                }
            })
    }
}

/// An admin query string, rejected as an admin API error (400 `invalid_request`), not as axum's
/// plain text.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// The bearer token of a request to a protected resource: header (RFC 6750 §2.1); for POST also
/// a form body parameter (§2.2). Query parameters are not accepted (they end up in logs).
pub fn bearer_from_header(headers: &HeaderMap) -> Option<Secret> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Secret::new(token.trim()))
}

/// The authenticated admin principal.
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_from_header(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        state
            .admin_principal(&token)
            .map(Admin)
            .ok_or_else(ApiError::unauthorized)
    }
}
