//! RFC 6749 §4.4 client credentials: an RFC 9068 access token for the agent itself, and an
//! OpenID Connect ID token when `openid` is granted.

use crate::model::{Alg, new_id};
use crate::oauth::OAuth;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::form::FormParams;
use crate::oauth::wire::TokenResponse;
use crate::storage::OrgRecord;
use crate::tenancy::Agent;
use crate::tenancy::agents::valid_scope_token;
use crate::tenancy::policy::Policy;
use crate::tokens::access_token::{self, AccessClaims};
use crate::tokens::{Audience, id_token};

/// The granted scopes: those requested, each allowed to the agent (`invalid_scope` otherwise);
/// with no `scope` parameter, every allowed scope except `openid` (RFC 6749 §3.3 lets the server
/// pick a default), so the plain request never pays for an RS256 ID token.
pub fn granted_scopes(agent: &Agent, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
    match requested {
        None => Ok(agent
            .scopes
            .iter()
            .filter(|s| *s != "openid")
            .cloned()
            .collect()),
        Some(req) => {
            let mut out: Vec<String> = Vec::new();
            for s in req.split(' ').filter(|s| !s.is_empty()) {
                if !valid_scope_token(s) {
                    return Err(OAuthError::new(ErrorCode::InvalidScope, "malformed scope"));
                }
                if !agent.scopes.iter().any(|a| a == s) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("scope '{s}' is not allowed for this client"),
                    ));
                }
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
            Ok(out)
        }
    }
}

/// Audiences from `resource` (RFC 8707 §2: absolute URIs without a fragment) and `audience`
/// (RFC 8693 §2.1: logical names); the issuer when neither is given.
pub fn audiences(org: &OrgRecord, form: &FormParams) -> Result<Vec<String>, OAuthError> {
    let mut aud = Vec::new();
    for r in form.all("resource") {
        let ok = url::Url::parse(&r).is_ok_and(|u| u.fragment().is_none());
        if !ok {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource must be an absolute URI without a fragment",
            ));
        }
        aud.push(r);
    }
    aud.extend(form.all("audience"));
    if aud.len() > 10 || aud.iter().any(|a| a.len() > 512) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "too many or too long audiences",
        ));
    }
    if aud.is_empty() {
        aud.push(org.issuer.clone());
    }
    let mut seen = std::collections::HashSet::new();
    aud.retain(|a| seen.insert(a.clone()));
    Ok(aud)
}

impl OAuth {
    pub async fn issue_client_credentials(
        &self,
        org: &OrgRecord,
        agent: &Agent,
        policy: &Policy,
        form: &FormParams,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let scopes = granted_scopes(agent, form.get("scope"))?;
        let aud = audiences(org, form)?;
        let ttl = agent
            .record
            .access_token_ttl
            .map_or(self.access_token_ttl, |t| t.min(self.access_token_ttl));
        // Capped by the organization's policy, and never past the agent's expiry (which the
        // client authentication checked is still ahead).
        let mut ttl = policy.cap_ttl(ttl);
        if let Some(exp) = agent.record.expires_at {
            ttl = ttl.min(exp.saturating_sub(now)).max(1);
        }
        let keys = self
            .keys
            .org_keys(org, now)
            .await
            .map_err(|_| OAuthError::server_error())?;
        let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
        let claims = AccessClaims {
            iss: org.issuer.clone(),
            sub: agent.client_id().to_owned(),
            aud: Audience::from_vec(aud),
            exp: now + ttl,
            iat: now,
            jti: new_id(self.clock.now_ms()),
            client_id: agent.client_id().to_owned(),
            scope: scope.clone(),
            org_id: Some(org.id.to_string()),
            did: Some(agent.record.did.clone()),
            agent_name: Some(agent.record.name.clone()),
            federated: None,
        };
        let at_key = keys
            .signing_key(agent.access_token_alg, now)
            .ok_or_else(OAuthError::server_error)?;
        let access_token = crate::tokens::sign(at_key, access_token::TYP, &claims)
            .map_err(|_| OAuthError::server_error())?;
        metrics::counter!("agentidp_tokens_issued_total", "grant" => "client_credentials", "alg" => agent.access_token_alg.as_str())
        .increment(1);

        let id_token = if scopes.iter().any(|s| s == "openid") {
            let idc = id_token::IdClaims {
                iss: &org.issuer,
                sub: agent.client_id(),
                aud: agent.client_id(),
                azp: agent.client_id(),
                exp: now + ttl,
                iat: now,
                auth_time: now,
                jti: new_id(self.clock.now_ms()),
                org_id: &org.id,
                did: &agent.record.did,
                agent_name: &agent.record.name,
                name: &agent.record.name,
            };
            let alg: Alg = agent.id_token_alg;
            let key = keys
                .signing_key(alg, now)
                .ok_or_else(OAuthError::server_error)?;
            Some(
                crate::tokens::sign(key, id_token::TYP, &idc)
                    .map_err(|_| OAuthError::server_error())?,
            )
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            scope,
            id_token,
            issued_token_type: None,
            refresh_token: None,
        })
    }
}
