//! Every error-to-response mapping of the HTTP edge.
//!
//! - OAuth endpoints: RFC 6749 §5.2 JSON; 400 by default, 401 with `WWW-Authenticate: Basic` for
//!   `invalid_client` when the client used the Authorization header (and 401 without it too, as
//!   most servers do), 500 for `server_error`.
//! - Bearer-protected resources (`/agent-info`): RFC 6750 §3 `WWW-Authenticate: Bearer` challenges.
//! - Admin API: [`ErrorResponse`] with 400/401/403/404/409/412/413/415/422/500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::admin_error::AdminError;
use crate::oauth::error::{ErrorCode, OAuthError};

/// The one body of every 500 the server answers, whatever the endpoint (the cause goes to the
/// log with the request id, never to the client).
pub fn internal_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "server_error", "error_description": INTERNAL_ERROR})),
    )
        .into_response()
}

/// The description of every 500.
pub const INTERNAL_ERROR: &str = "internal error";

/// An OAuth endpoint's error response. `basic`: the request carried `Authorization: Basic`
/// credentials, so an `invalid_client` answer is a 401 whose challenge matches the scheme the
/// client used (RFC 6749 §5.2). Decided here, at the edge, from the request.
pub struct OAuthResponse {
    pub error: OAuthError,
    pub basic: bool,
}

impl OAuthResponse {
    pub fn new(error: OAuthError, basic: bool) -> Self {
        Self { error, basic }
    }
}

impl From<OAuthError> for OAuthResponse {
    fn from(error: OAuthError) -> Self {
        Self::new(error, false)
    }
}

fn quote(s: &str) -> String {
    // RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
    s.chars()
        .filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
        .collect()
}

impl IntoResponse for OAuthResponse {
    fn into_response(self) -> Response {
        let e = self.error;
        if e.code == ErrorCode::ServerError {
            return internal_error();
        }
        let status = match e.code {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = json!({"error": e.code.as_str(), "error_description": e.description});
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if e.code == ErrorCode::InvalidClient {
            let v = if self.basic {
                "Basic realm=\"agentidp\", charset=\"UTF-8\""
            } else {
                "Basic realm=\"agentidp\""
            };
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        resp
    }
}

/// Too many failed authentications from this client IP or for this client, at an OAuth endpoint.
///
/// RFC 6749 has no error code for it, so: HTTP 429 (RFC 6585 §4) with `Retry-After` (RFC 9110
/// §10.2.3), which every HTTP client understands, and the RFC 6749 §5.2 JSON body with
/// `slow_down`, the one registered OAuth error code for the token endpoint that means "you are
/// asking too fast" (RFC 8628 §3.5, IANA "OAuth Extensions Error Registry", usage location
/// "token endpoint response"). Not `invalid_request` (the request is well-formed) and not
/// `invalid_client` (the credentials were not even looked at: answering 401 would tell a
/// guesser nothing new but make a correct client think its secret is wrong). Keycloak, for
/// comparison, has no brake on client credentials (keycloak/keycloak#30077) and hides a user's
/// temporary lockout behind 400 `invalid_grant` "Invalid user credentials" (#48273): a client
/// cannot tell it from a wrong password and keeps retrying.
pub fn oauth_rate_limited(retry: crate::limiter::RetryAfter) -> Response {
    let body = json!({
        "error": "slow_down",
        "error_description": "too many failed authentications; retry later",
    });
    rate_limited_response(body, retry)
}

/// The admin API's answer to too many failed authentications from one client IP.
pub fn admin_rate_limited(retry: crate::limiter::RetryAfter) -> Response {
    let body = json!({
        "error": "rate_limited",
        "error_description": "too many failed authentications from this address; retry later",
    });
    rate_limited_response(body, retry)
}

/// The RateLimit fields of a limited endpoint's answer (draft-ietf-httpapi-ratelimit-headers-11:
/// `RateLimit-Policy: NAME;q=BURST;w=SECONDS` and `RateLimit: NAME;r=REMAINING;t=SECONDS`,
/// both structured fields, RFC 9651), under the policy name `policy` (`token`, `admin`, `ip`).
pub fn rate_limit_headers(
    h: &mut axum::http::HeaderMap,
    d: &crate::limiter::Decision,
    policy: &str,
) {
    if let Ok(v) = HeaderValue::from_str(&d.policy_field(policy)) {
        h.insert("ratelimit-policy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&d.limit_field(policy)) {
        h.insert("ratelimit", v);
    }
}

/// A client over its request limit at an OAuth endpoint (`AGENTIDP_TOKEN_RATE_LIMIT` or its
/// organization's): 429 with `Retry-After`, the RateLimit fields and the RFC 6749 §5.2 body with
/// `slow_down`, exactly like the failure brake's answer ([`oauth_rate_limited`]).
pub fn oauth_too_many_requests(d: &crate::limiter::Decision) -> Response {
    let body = json!({
        "error": "slow_down",
        "error_description": "too many requests for this client; retry later",
    });
    limited_response(body, d, "token")
}

/// An admin principal over its request limit (`AGENTIDP_ADMIN_RATE_LIMIT`).
pub fn admin_too_many_requests(d: &crate::limiter::Decision) -> Response {
    let body = json!({
        "error": "rate_limited",
        "error_description": "too many requests for this principal; retry later",
    });
    limited_response(body, d, "admin")
}

/// A client IP over its request limit on the public endpoints (`AGENTIDP_IP_RATE_LIMIT`).
pub fn ip_too_many_requests(d: &crate::limiter::Decision) -> Response {
    let body = json!({
        "error": "rate_limited",
        "error_description": "too many requests from this address; retry later",
    });
    limited_response(body, d, "ip")
}

fn limited_response(
    body: serde_json::Value,
    d: &crate::limiter::Decision,
    policy: &str,
) -> Response {
    let retry = match d {
        crate::limiter::Decision::Limited { retry_after, .. } => *retry_after,
        crate::limiter::Decision::Allowed { .. } => crate::limiter::RetryAfter(1),
    };
    let mut resp = rate_limited_response(body, retry);
    rate_limit_headers(resp.headers_mut(), d, policy);
    resp
}

fn rate_limited_response(body: serde_json::Value, retry: crate::limiter::RetryAfter) -> Response {
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry.0));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An RFC 6750 error from a Bearer-protected resource. `None` code: no credentials were sent
/// (§3.1: the challenge then carries no error code).
pub struct BearerError(pub Option<OAuthError>);

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        if self
            .0
            .as_ref()
            .is_some_and(|e| e.code == ErrorCode::ServerError)
        {
            return internal_error();
        }
        let (status, challenge, body) = match &self.0 {
            None => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"agentidp\"".to_owned(),
                json!({"error": "invalid_request", "error_description": "a Bearer access token is required"}),
            ),
            Some(e) => {
                let status = match e.code {
                    ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
                    ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
                    _ => StatusCode::BAD_REQUEST,
                };
                (
                    status,
                    format!(
                        "Bearer realm=\"agentidp\", error=\"{}\", error_description=\"{}\"",
                        e.code.as_str(),
                        quote(&e.description)
                    ),
                    json!({"error": e.code.as_str(), "error_description": e.description}),
                )
            }
        };
        let mut resp = (status, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// The body of every admin API error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// `invalid_request` (400, 413, 415), `unauthorized` (401), `forbidden` (403), `not_found`
    /// (404), `conflict` (409), `precondition_failed` (412), `invalid_field` (422), `rate_limited`
    /// (429) or `server_error` (500).
    #[schema(value_type = String, example = "invalid_field")]
    pub error: &'static str,
    pub error_description: String,
    /// With `invalid_field`: the request field (or query parameter) that failed validation, as
    /// a path into the body for nested fields (`skills[0].id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, nullable = false)]
    pub field: Option<String>,
}

/// An admin API error.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            field: None,
        }
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin bearer token is required",
        )
    }
    pub fn forbidden(d: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", d)
    }
    pub fn unavailable(d: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            d,
        )
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such object")
    }
    pub fn bad_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    /// 422 `invalid_field` naming `field`.
    pub fn invalid_field(field: impl Into<String>, d: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            description: format!("{field}: {}", d.into()),
            field: Some(field),
        }
    }

    /// Every admin body is a JSON object: refuses anything else before it is read as one (serde
    /// would read a struct from an array, field by position). `null` is allowed when `nullable`.
    pub fn require_object(body: &[u8], nullable: bool) -> Result<(), Self> {
        let start = body.iter().position(|b| !b.is_ascii_whitespace());
        if start.is_some_and(|i| body[i] == b'{') {
            return Ok(());
        }
        match serde_json::from_slice::<serde_json::Value>(body) {
            Err(e) => Err(Self::bad_request(format!(
                "the body is not valid JSON: {e}"
            ))),
            Ok(serde_json::Value::Null) if nullable => Ok(()),
            Ok(_) => Err(Self::bad_request(
                "the body is not the JSON object this call takes",
            )),
        }
    }

    /// The one rule for a JSON body that does not deserialize (every admin body): a body that is
    /// not JSON, not an object, or has a member the call does not take is 400 `invalid_request`
    /// (naming that member in `field`); a known field that is missing or of the wrong type is 422
    /// `invalid_field` naming it, as a field that fails validation is.
    pub fn from_json(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        use serde_json::error::Category;
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Io | Category::Syntax | Category::Eof => {
                Self::bad_request(format!("the body is not valid JSON: {inner}"))
            }
            Category::Data => {
                let msg = inner.to_string();
                // serde names a missing field only in its message ("missing field `name`"),
                // at the path of the object that lacks it; an unknown or mistyped field is at
                // its own path.
                let missing = msg
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split_once('`'))
                    .map(|(name, _)| name.to_owned());
                let unknown = msg
                    .strip_prefix("unknown field `")
                    .and_then(|rest| rest.split_once('`'))
                    .map(|(name, _)| name.to_owned());
                let top = path == "." || path.is_empty() || path == "?";
                let field = match (missing, top) {
                    (Some(n), true) => Some(n),
                    (Some(n), false) => Some(format!("{path}.{n}")),
                    (None, false) => Some(path),
                    (None, true) => unknown,
                };
                match field {
                    // A member the call does not take: the body is not one for this call (a
                    // typo must not be silently ignored), 400, but naming the member.
                    Some(f) if msg.starts_with("unknown field `") => Self {
                        field: Some(f),
                        ..Self::bad_request(format!(
                            "the body is not the JSON object this call takes: {msg}"
                        ))
                    },
                    Some(f) => Self::invalid_field(f, msg),
                    None => Self::bad_request(format!(
                        "the body is not the JSON object this call takes: {msg}"
                    )),
                }
            }
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Field { field, message } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_field",
                description: format!("{field}: {message}"),
                field: Some(field.to_owned()),
            },
            AdminError::NotFound => ApiError::not_found(),
            AdminError::Forbidden => {
                // Security log (issue 9 point 19): the request span carries the request id.
                tracing::info!(
                    event = "admin.forbidden",
                    "admin request refused: not allowed for this principal"
                );
                crate::telemetry::auth_failure("admin", "forbidden");
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "not allowed for this principal",
                )
            }
            AdminError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            AdminError::Policy(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "policy_violation", m)
            }
            AdminError::PreconditionFailed => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the object changed: If-Match does not match its current ETag",
            ),
            AdminError::Unavailable(m) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                m,
            ),
            AdminError::Internal(m) => {
                tracing::error!(error = %m, "admin request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    INTERNAL_ERROR,
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: self.code,
            error_description: self.description,
            field: self.field,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"agentidp-admin\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        resp
    }
}
