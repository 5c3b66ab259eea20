//! The token endpoint (RFC 6749 §3.2): authenticate the client, then dispatch on `grant_type`.

use serde::Serialize;

use super::client_auth::{authenticate, presented};
use super::error::{ErrorCode, OAuthError};
use super::form::FormParams;
use super::grants;
use super::grants::federated::{GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE};
use crate::idp::Idp;
use crate::storage::OrgRecord;

pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";

/// The grant types this server supports, as listed in discovery.
pub const GRANT_TYPES: [&str; 3] = [
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
}

/// Handles one token request. `authorization` is the raw Authorization header, if any.
pub async fn token(
    idp: &Idp,
    org: &OrgRecord,
    authorization: Option<&str>,
    form: &FormParams,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let grant_type = form.require("grant_type")?;
    match grant_type {
        GRANT_CLIENT_CREDENTIALS => {
            let p = presented(authorization, form)?;
            let used_basic = p.used_basic();
            let agent = authenticate(idp, org, p, now, "/oauth2/token").await?;
            grants::client_credentials::issue(idp, org, &agent, form, now)
                .await
                .map_err(|e| e.with_basic(used_basic))
        }
        GRANT_JWT_BEARER | GRANT_TOKEN_EXCHANGE => {
            grants::federated::exchange(idp, org, authorization, form, grant_type, now).await
        }
        other => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!(
                "grant_type {:?} is not supported",
                other.chars().take(80).collect::<String>()
            ),
        )),
    }
}
