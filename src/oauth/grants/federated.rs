//! Partner assertions exchanged for local access tokens: the JWT bearer grant (RFC 7523 §2.1)
//! and token exchange (RFC 8693 §2.1). Client authentication is optional on both (RFC 7523 §3.1,
//! RFC 8693 §2.1); when credentials are sent they must be valid.
//!
//! The local token's `sub` is the foreign identity (its DID when that lies under the partner
//! issuer's did:web path, else `partner-issuer#sub`); the `federated` claim records the partner
//! issuer and the original subject; there is no `org_id` (no local membership); scopes are at most
//! the partner's allowed scopes.

use super::client_credentials::audiences;
use crate::federation::verify::VerifyError;
use crate::model::new_id;
use crate::oauth::OAuth;
use crate::oauth::client_auth::ClientCredentials;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::form::FormParams;
use crate::oauth::wire::{GRANT_JWT_BEARER, TokenResponse};
use crate::storage::OrgRecord;
use crate::tenancy::agents::valid_scope_token;
use crate::tokens::Audience;
use crate::tokens::access_token::{self, AccessClaims, FederatedClaim};

/// RFC 8693 §3 token type identifiers.
pub const TT_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TT_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TT_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

fn grant_error(e: VerifyError) -> OAuthError {
    match e {
        VerifyError::Internal => OAuthError::server_error(),
        other => OAuthError::invalid_grant(format!("{}: {other}", other.code())),
    }
}

impl OAuth {
    /// Handles both grants; `grant_type` has been matched by the caller.
    pub async fn exchange(
        &self,
        org: &OrgRecord,
        credentials: ClientCredentials,
        form: &FormParams,
        grant_type: &str,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        // The organization's policy (its token-lifetime cap) comes with the client
        // authentication, or is looked up alone: one in-memory lookup either way.
        let (client, policy) = match credentials {
            ClientCredentials::None { .. } => (
                None,
                self.clients
                    .policies
                    .get(&org.id)
                    .await
                    .map_err(|_| OAuthError::server_error())?,
            ),
            other => {
                let (agent, policy) = self
                    .clients
                    .authenticate_with_policy(org, other, now, "/oauth2/token")
                    .await?;
                (Some(agent), policy)
            }
        };

        let (assertion, token_exchange) = if grant_type == GRANT_JWT_BEARER {
            (form.require("assertion")?, false)
        } else {
            let token = form.require("subject_token")?;
            let tt = form.require("subject_token_type")?;
            if ![TT_JWT, TT_ACCESS_TOKEN, TT_ID_TOKEN].contains(&tt) {
                return Err(OAuthError::invalid_request(format!(
                    "subject_token_type must be one of {TT_JWT}, {TT_ACCESS_TOKEN}, {TT_ID_TOKEN}"
                )));
            }
            if form.get("actor_token").is_some() {
                return Err(OAuthError::invalid_request(
                    "actor_token (delegation) is not supported",
                ));
            }
            if let Some(rt) = form.get("requested_token_type")
                && rt != TT_ACCESS_TOKEN
                && rt != TT_JWT
            {
                return Err(OAuthError::invalid_request(
                    "requested_token_type must be access_token or jwt",
                ));
            }
            (token, true)
        };

        let verified = self
            .verifier
            .check(org, assertion, now)
            .await
            .map_err(grant_error)?;
        let partner = &verified.partner;

        let scopes: Vec<String> = match form.get("scope") {
            None => partner.allowed_scopes.clone(),
            Some(req) => {
                let mut out: Vec<String> = Vec::new();
                for s in req.split(' ').filter(|s| !s.is_empty()) {
                    if !valid_scope_token(s) || !partner.allowed_scopes.iter().any(|a| a == s) {
                        return Err(OAuthError::new(
                            ErrorCode::InvalidScope,
                            format!("scope '{s}' is not allowed for this partner"),
                        ));
                    }
                    if !out.iter().any(|o| o == s) {
                        out.push(s.to_owned());
                    }
                }
                out
            }
        };
        let aud = audiences(org, form)?;
        // No re-federation: a federated identity gets tokens for this organization only, never
        // tokens addressed to another issuer that would pass our vouching on to a third party.
        if aud.iter().any(|a| *a != org.issuer) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "tokens for a federated identity are addressed to this organization only",
            ));
        }
        // Every check passed: only now is the assertion spent.
        verified
            .spend(self.replay.as_ref(), now)
            .await
            .map_err(grant_error)?;
        let ttl = policy.cap_ttl(self.access_token_ttl);
        let key = self.signing_key(org, crate::model::Alg::ES256, now).await?;
        let foreign_sub = verified
            .claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
        let claims = AccessClaims {
            iss: org.issuer.clone(),
            sub: verified.subject.clone(),
            aud: Audience::from_vec(aud),
            exp: now + ttl,
            iat: now,
            jti: new_id(self.clock.now_ms()),
            client_id: client.as_ref().map_or_else(
                || partner.record.issuer.clone(),
                |c| c.client_id().to_owned(),
            ),
            scope: scope.clone(),
            org_id: None,
            did: verified
                .subject
                .starts_with("did:")
                .then(|| verified.subject.clone()),
            agent_name: None,
            federated: Some(FederatedClaim {
                iss: partner.record.issuer.clone(),
                sub: foreign_sub,
            }),
        };
        let access_token = crate::tokens::sign(&key, access_token::TYP, &claims)
            .map_err(|_| OAuthError::server_error())?;
        metrics::counter!("agentidp_tokens_issued_total", "grant" => if token_exchange { "token_exchange" } else { "jwt_bearer" }, "alg" => "ES256")
        .increment(1);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            scope,
            id_token: None,
            issued_token_type: token_exchange.then_some(TT_ACCESS_TOKEN),
            refresh_token: None,
        })
    }
}
