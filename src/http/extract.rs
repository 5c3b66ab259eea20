//! Request extractors: they turn headers and bodies into plain values for the domain, and reject
//! bad input in the format of the endpoint's spec (never axum's plain-text rejections).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use base64::prelude::*;
use serde::de::DeserializeOwned;

use super::error::{ApiError, OAuthResponse};
use super::state::AppState;
use crate::model::Secret;
use crate::oauth::client_auth::ClientCredentials;
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

/// The `Authorization: Basic` credentials of a request (RFC 7617), decoded as RFC 6749 §2.3.1
/// says: base64 of `client_id:client_secret`, each part form-urlencoded before being joined.
/// `None` when the header is absent or names another scheme; an error when it is Basic but
/// malformed.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, Secret)>, OAuthError> {
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let h = h.as_bytes();
    if h.len() <= 6 || !h[..6].eq_ignore_ascii_case(b"basic ") {
        return Ok(None);
    }
    let h = std::str::from_utf8(h).map_err(|_| bad())?;
    let raw = BASE64_STANDARD.decode(h[6..].trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    Ok(Some((form_decode(id), Secret::new(form_decode(secret)))))
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A form-encoded OAuth request body (RFC 6749 §3.2) and the client credentials it carries
/// (Authorization header or form members). Malformed input is rejected as the endpoint's own
/// OAuth error, never axum's plain-text rejection.
pub struct OAuthRequest {
    pub form: FormParams,
    pub client: ClientCredentials,
    /// The request authenticated with the Authorization header (decides the §5.2 401 challenge).
    pub basic: bool,
}

impl FromRequest<AppState> for OAuthRequest {
    type Rejection = OAuthResponse;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let basic = basic_credentials(req.headers()).map_err(|e| OAuthResponse::new(e, true))?;
        let used_basic = basic.is_some();
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            OAuthResponse::new(
                OAuthError::invalid_request("the request body is unreadable or too large"),
                used_basic,
            )
        })?;
        let form = FormParams::parse(&body).map_err(|e| OAuthResponse::new(e, used_basic))?;
        let client = ClientCredentials::from_request(basic, &form)
            .map_err(|e| OAuthResponse::new(e, used_basic))?;
        Ok(Self {
            form,
            client,
            basic: used_basic,
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
        ApiError::require_object(&body, false)?;
        let de = &mut serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(de)
            .map(ApiJson)
            .map_err(ApiError::from_json)
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

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::basic_credentials;

    fn with_authorization(v: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        h
    }

    /// RFC 6749 §2.3.1: both parts form-urlencoded before base64; another scheme, or a header
    /// with bytes outside ASCII that is not Basic, is not client authentication at all.
    #[test]
    fn basic_credentials_are_decoded_and_other_schemes_ignored() {
        use base64::prelude::*;
        let b = BASE64_STANDARD.encode("a%3Ab:s%2Bc+d");
        let (id, secret) = basic_credentials(&with_authorization(format!("Basic {b}").as_bytes()))
            .unwrap()
            .unwrap();
        assert_eq!((id.as_str(), secret.expose()), ("a:b", "s+c d"));
        assert!(basic_credentials(&HeaderMap::new()).unwrap().is_none());
        assert!(
            basic_credentials(&with_authorization(b"Bearer x"))
                .unwrap()
                .is_none()
        );
        assert!(
            basic_credentials(&with_authorization("Bearer é".as_bytes()))
                .unwrap()
                .is_none()
        );
        for bad in [
            &b"Basic !!!"[..],
            b"Basic bm9jb2xvbg==",
            "Basic é".as_bytes(),
        ] {
            let e = basic_credentials(&with_authorization(bad)).unwrap_err();
            assert_eq!(e.code.as_str(), "invalid_client", "{bad:?}");
        }
    }
}
