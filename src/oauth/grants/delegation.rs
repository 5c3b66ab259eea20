//! Delegation from a person to an agent (issue 12 point 9; OpenID Foundation guidance:
//! delegation, not impersonation): RFC 8693 token exchange with a person's access token of this
//! organization as `subject_token`, by an agent authenticating as itself (or presenting its own
//! access token as `actor_token`). The answer is a token with `sub` = the person and `act` =
//! `{"sub": <the agent's DID>}` (§4.1), when a delegation grant of the person to that agent is in
//! force, and `invalid_grant` otherwise.
//!
//! - Scopes only narrow: the grant's scopes ∩ the subject token's scopes, and a `scope` asked for
//!   must lie within that (`invalid_scope` otherwise).
//! - A delegated token may be exchanged again by another agent the person delegated to: `act`
//!   nests (the current actor outermost, §4.1), at most [`MAX_DEPTH`] actors.
//! - The token names every grant of its chain (`dlg`); revoking any of them ends it at once
//!   (`OAuth::active_token` checks each), and it never outlives the subject token or a grant.

use serde_json::json;

use crate::model::{ClientKind, new_id};
use crate::oauth::client_auth::ClientCredentials;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::form::FormParams;
use crate::oauth::grants::federated::{TT_ACCESS_TOKEN, TT_JWT};
use crate::oauth::wire::TokenResponse;
use crate::oauth::{Holder, OAuth};
use crate::storage::OrgRecord;
use crate::tenancy::Agent;
use crate::tokens::Audience;
use crate::tokens::access_token::{self, AccessClaims};

/// The most actors one delegated token may name.
pub const MAX_DEPTH: usize = 3;

/// How many actors an `act` claim names.
pub fn depth(act: Option<&serde_json::Value>) -> usize {
    let mut n = 0;
    let mut cur = act;
    while let Some(a) = cur {
        n += 1;
        cur = a.get("act");
        if n > 16 {
            break;
        }
    }
    n
}

/// Is `token` (unverified) an access token this organization issued? Then a token exchange
/// with it is a delegation, not a partner's assertion.
pub fn is_own_access_token(org: &OrgRecord, token: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    let expect = crate::jose::Expectations {
        typ: crate::jose::Typ::Is(access_token::TYP),
        required: &[],
        audience: None,
        max_lifetime: None,
        origin: crate::jose::Origin::Ours,
    };
    crate::jose::parse(token, &expect)
        .ok()
        .and_then(|j| j.unverified_claims::<Iss>().ok())
        .is_some_and(|c| c.iss == org.issuer)
}

/// The audience of a delegated token: the subject token's, without the admin API (an agent
/// never acts in the person's admin role); the issuer when nothing else is left.
fn delegated_audience(aud: &Audience, issuer: &str, admin_api: &str) -> Audience {
    let kept: Vec<String> = aud
        .iter()
        .filter(|a| a.trim_end_matches('/') != admin_api)
        .map(str::to_owned)
        .collect();
    if kept.is_empty() {
        Audience::One(issuer.to_owned())
    } else {
        Audience::from_vec(kept)
    }
}

impl OAuth {
    /// The token exchange of a person's token for an agent acting for them.
    pub async fn delegate(
        &self,
        org: &OrgRecord,
        credentials: ClientCredentials,
        form: &FormParams,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let subject = form.require("subject_token")?;
        let tt = form.require("subject_token_type")?;
        if tt != TT_ACCESS_TOKEN && tt != TT_JWT {
            return Err(OAuthError::invalid_request(
                "subject_token_type must be access_token or jwt for a person's token",
            ));
        }
        // The actor: the authenticated agent, or the holder of actor_token, or both agreeing.
        let authenticated = match credentials {
            ClientCredentials::None { .. } => None,
            other => Some(
                self.clients
                    .authenticate_with_policy(org, other, now, "/oauth2/token")
                    .await?,
            ),
        };
        let from_actor_token = match form.get("actor_token") {
            None => None,
            Some(t) => {
                let tt = form.require("actor_token_type")?;
                if tt != TT_ACCESS_TOKEN && tt != TT_JWT {
                    return Err(OAuthError::invalid_request(
                        "actor_token_type must be access_token or jwt",
                    ));
                }
                match self.active_token(org, t, now).await {
                    Ok((_, Holder::Agent(a))) => Some(a),
                    Ok(_) => {
                        return Err(OAuthError::invalid_grant(
                            "the actor_token is not an agent's own token",
                        ));
                    }
                    Err(crate::oauth::TokenStateError::Unavailable) => {
                        return Err(OAuthError::server_error());
                    }
                    Err(e) => {
                        return Err(OAuthError::invalid_grant(format!("actor_token: {e}")));
                    }
                }
            }
        };
        let (actor, policy) = match (authenticated, from_actor_token) {
            (Some((a, p)), Some(b)) => {
                if a.client_id() != b.client_id() {
                    return Err(OAuthError::invalid_grant(
                        "the actor_token is not the authenticated client's",
                    ));
                }
                (a, p)
            }
            (Some((a, p)), None) => (a, p),
            (None, Some(b)) => {
                let p = self
                    .clients
                    .policies
                    .get(&org.id)
                    .await
                    .map_err(|_| OAuthError::server_error())?;
                (b, p)
            }
            (None, None) => {
                return Err(OAuthError::invalid_client(
                    "the acting agent must authenticate (or send its token as actor_token)",
                ));
            }
        };
        if !crate::tenancy::clients::allows_grant(
            &actor.record,
            crate::tenancy::clients::TOKEN_EXCHANGE,
        ) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this agent is not registered for token exchange",
            ));
        }
        if actor.kind != ClientKind::Agent {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "only an agent acts for a person",
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

        // The subject: a person's token in force (maybe already delegated).
        let (claims, holder) = match self.active_token(org, subject, now).await {
            Ok(x) => x,
            Err(crate::oauth::TokenStateError::Unavailable) => {
                return Err(OAuthError::server_error());
            }
            Err(e) => return Err(OAuthError::invalid_grant(format!("subject_token: {e}"))),
        };
        let Holder::Person { user, .. } = holder else {
            return Err(OAuthError::invalid_grant(
                "the subject_token is not a person's token",
            ));
        };
        if depth(claims.act.as_ref()) >= MAX_DEPTH {
            return Err(OAuthError::invalid_grant(format!(
                "a delegation chain names at most {MAX_DEPTH} actors"
            )));
        }
        let grants = self
            .delegations
            .delegations_in_force(&org.id, &user.id, actor.client_id(), now)
            .await
            .map_err(|_| OAuthError::server_error())?;
        let Some(grant) = grants.first() else {
            return Err(OAuthError::invalid_grant(
                "no delegation grant of this person to this agent is in force",
            ));
        };
        let held: Vec<&str> = claims
            .scope
            .as_deref()
            .map(|s| s.split(' ').filter(|x| !x.is_empty()).collect())
            .unwrap_or_default();
        let allowed: Vec<String> = grant
            .scopes
            .iter()
            .filter(|s| held.contains(&s.as_str()))
            .cloned()
            .collect();
        let scopes: Vec<String> = match form.get("scope") {
            None => allowed.clone(),
            Some(req) => {
                let mut out: Vec<String> = Vec::new();
                for s in req.split(' ').filter(|s| !s.is_empty()) {
                    if !allowed.iter().any(|a| a == s) {
                        return Err(OAuthError::new(
                            ErrorCode::InvalidScope,
                            format!(
                                "scope '{}' is neither the subject token's nor delegated",
                                s.chars().take(80).collect::<String>()
                            ),
                        ));
                    }
                    if !out.iter().any(|o| o == s) {
                        out.push(s.to_owned());
                    }
                }
                out
            }
        };
        if scopes.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "the delegation and the subject token have no scope in common",
            ));
        }
        self.delegated_token(org, &actor, &user.id, &claims, grant, &scopes, &policy, now)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn delegated_token(
        &self,
        org: &OrgRecord,
        actor: &Agent,
        person: &str,
        subject: &AccessClaims,
        grant: &crate::storage::DelegationRecord,
        scopes: &[String],
        policy: &crate::tenancy::policy::Policy,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let mut exp = now + policy.cap_ttl(self.access_token_ttl);
        exp = exp.min(subject.exp);
        if let Some(e) = grant.expires_at {
            exp = exp.min(e);
        }
        let act = match &subject.act {
            None => json!({ "sub": actor.record.did }),
            Some(prev) => json!({ "sub": actor.record.did, "act": prev }),
        };
        let mut dlg = subject.dlg.clone().unwrap_or_default();
        dlg.push(grant.id.clone());
        let claims = AccessClaims {
            iss: org.issuer.clone(),
            sub: person.to_owned(),
            aud: delegated_audience(&subject.aud, &org.issuer, &self.admin_api()),
            exp,
            iat: now,
            jti: new_id(self.clock.now_ms()),
            client_id: actor.client_id().to_owned(),
            scope: Some(scopes.join(" ")),
            org_id: Some(org.id.to_string()),
            did: None,
            agent_name: Some(actor.record.name.clone()),
            federated: None,
            act: Some(act),
            dlg: Some(dlg),
        };
        let keys = self
            .keys
            .org_keys(org, now)
            .await
            .map_err(|_| OAuthError::server_error())?;
        let key = keys
            .signing_key(actor.access_token_alg, now)
            .ok_or_else(OAuthError::server_error)?;
        let access_token = crate::tokens::sign(key, access_token::TYP, &claims)
            .map_err(|_| OAuthError::server_error())?;
        metrics::counter!("agentidp_tokens_issued_total", "grant" => "delegation", "alg" => actor.access_token_alg.as_str())
            .increment(1);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: (exp - now).max(1),
            scope: Some(scopes.join(" ")),
            id_token: None,
            issued_token_type: Some(TT_ACCESS_TOKEN),
            refresh_token: None,
        })
    }
}
