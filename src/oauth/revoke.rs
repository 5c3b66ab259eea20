//! RFC 7009 token revocation. Only the client a token was issued to may revoke it (§2.1);
//! an invalid or unknown token answers 200 all the same (§2.2).

use super::client_auth::{authenticate, presented};
use super::error::{ErrorCode, OAuthError};
use super::form::FormParams;
use crate::idp::Idp;
use crate::storage::OrgRecord;
use crate::tokens::access_token::{self, AccessTokenError};

pub async fn revoke(
    idp: &Idp,
    org: &OrgRecord,
    authorization: Option<&str>,
    form: &FormParams,
    now: i64,
) -> Result<(), OAuthError> {
    let p = presented(authorization, form)?;
    let used_basic = p.used_basic();
    let caller = authenticate(idp, org, p, now, "/oauth2/revoke").await?;
    let token = form
        .require("token")
        .map_err(|e| e.with_basic(used_basic))?;
    let keys = idp
        .keys
        .org_keys(org, now)
        .await
        .map_err(|_| OAuthError::server_error())?;
    let claims = match access_token::validate(&keys, &org.issuer, token, now) {
        Ok(c) => c,
        // Expired, foreign, malformed: nothing to revoke.
        Err(AccessTokenError::Expired | _) => return Ok(()),
    };
    if claims.client_id != caller.client_id() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was issued to another client",
        )
        .with_basic(used_basic));
    }
    idp.stores
        .replay
        .revoke(&org.id, &claims.jti, claims.exp)
        .await
        .map_err(|_| OAuthError::server_error())?;
    Ok(())
}
