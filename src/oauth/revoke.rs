//! RFC 7009 token revocation of access and refresh tokens. Only the client a token was issued
//! to may revoke it (§2.1; a public client by its client_id); an invalid or unknown token
//! answers 200 all the same (§2.2).

use super::client_auth::ClientCredentials;
use super::error::{ErrorCode, OAuthError};
use super::form::FormParams;
use crate::oauth::OAuth;
use crate::storage::OrgRecord;
use crate::tokens::access_token;

impl OAuth {
    pub async fn revoke(
        &self,
        org: &OrgRecord,
        client: ClientCredentials,
        form: &FormParams,
        now: i64,
    ) -> Result<(), OAuthError> {
        // §2.1: a public client (the code flow's `none`) identifies itself by its client_id.
        let (caller, _) = self
            .clients
            .authenticate_or_public(org, client, now, "/oauth2/revoke")
            .await?;
        let token = form.require("token")?;
        // A refresh token (§2.1 `token_type_hint` is only a hint): its whole family, and the
        // access tokens issued in it.
        if token.starts_with(super::grants::code::REFRESH_PREFIX) {
            let Ok(rec) = self.refresh_record(org, token).await else {
                return Ok(());
            };
            if rec.client_id != caller.client_id() {
                return Err(OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    "the token was issued to another client",
                ));
            }
            let issued = self
                .grants
                .revoke_family(&org.id, &rec.family_id, now)
                .await
                .map_err(|_| OAuthError::server_error())?;
            self.revoke_issued(org, &issued).await;
            return Ok(());
        }
        let keys = self
            .keys
            .org_keys(org, now)
            .await
            .map_err(|_| OAuthError::server_error())?;
        let claims = match access_token::validate(&keys, &org.issuer, token, now) {
            Ok(c) => c,
            // Expired, foreign, malformed: nothing to revoke (RFC 7009 §2.2: still 200).
            Err(_) => return Ok(()),
        };
        if claims.client_id != caller.client_id() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the token was issued to another client",
            ));
        }
        // The database, then this instance's set, then every other instance.
        self.revocations
            .revoke(&org.id, &claims.jti, claims.exp)
            .await
            .map_err(|_| OAuthError::server_error())?;
        Ok(())
    }
}
