//! Wire types of the token endpoint shared by its grants: the registered grant type URIs and the
//! successful response (RFC 6749 §5.1, RFC 8693 §2.2.1).

use serde::Serialize;

/// RFC 6749 §4.4.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 7523 §2.1.
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 8693 §2.1.
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 6749 §4.1.3.
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
/// RFC 6749 §6.
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";

/// The grant types this server supports, as listed in discovery (and as clients are registered
/// with: `tenancy::clients::GRANT_TYPES`, the same set).
pub const GRANT_TYPES: [&str; 5] = [
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
];

/// RFC 6749 §5.1 successful response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// RFC 8693 §2.2.1, token exchange only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    /// RFC 6749 §5.1 (code and refresh grants with `offline_access`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}
