//! The token endpoint (RFC 6749 §3.2). The edge has already read the client credentials (a
//! malformed `Authorization: Basic` header, or more than one authentication method, is refused
//! there, before `grant_type` is looked at); this reads `grant_type` (an unknown one is
//! `unsupported_grant_type`, §5.2) and dispatches to the grant, which authenticates the client
//! as it requires: always for client credentials (§4.4.2), when credentials were sent for the
//! JWT bearer grant and token exchange (RFC 7523 §3.1, RFC 8693 §2.1).

use super::client_auth::ClientCredentials;
use super::error::{ErrorCode, OAuthError};
use super::form::FormParams;
use super::wire::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE, TokenResponse,
};
use crate::oauth::OAuth;
use crate::storage::OrgRecord;

impl OAuth {
    /// Handles one token request.
    pub async fn token(
        &self,
        org: &OrgRecord,
        client: ClientCredentials,
        form: &FormParams,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = form.require("grant_type")?;
        match grant_type {
            GRANT_CLIENT_CREDENTIALS => {
                let (agent, policy) = self
                    .clients
                    .authenticate_with_policy(org, client, now, "/oauth2/token")
                    .await?;
                if !crate::tenancy::clients::allows_grant(&agent.record, GRANT_CLIENT_CREDENTIALS) {
                    return Err(OAuthError::new(
                        ErrorCode::UnauthorizedClient,
                        "this client is not registered for the client_credentials grant",
                    ));
                }
                self.issue_client_credentials(org, &agent, &policy, form, now)
                    .await
            }
            GRANT_AUTHORIZATION_CODE => self.redeem_code(org, client, form, now).await,
            GRANT_REFRESH_TOKEN => self.refresh(org, client, form, now).await,
            GRANT_JWT_BEARER | GRANT_TOKEN_EXCHANGE => {
                self.exchange(org, client, form, grant_type, now).await
            }
            other => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type '{}' is not supported",
                    other.chars().take(80).collect::<String>()
                ),
            )),
        }
    }
}
