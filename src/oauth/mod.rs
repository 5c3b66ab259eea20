//! OAuth 2.0 endpoints of each organization's issuer: token (RFC 6749 §4.4 client credentials),
//! introspection (RFC 7662) and revocation (RFC 7009), with client authentication.

pub mod authorize;
pub mod client_auth;
pub mod error;
pub mod form;
pub mod grants;
pub mod introspect;
pub mod logout;
pub mod proof;
pub mod revocations;
pub mod revoke;
pub mod token;
pub mod wire;

use std::sync::Arc;

use crate::ephemeral::DynReplay;
use crate::federation::PartnerDirectory;
use crate::federation::verify::Verifier;
use crate::keys::KeyService;
use crate::model::Clock;
use crate::storage::OrgRecord;
use crate::tenancy::Directory;
use crate::tenancy::{Agent, AgentStatus};
use crate::tokens::access_token::{self, AccessClaims, AccessTokenError};
use error::OAuthError;

/// Why an access token is not (or no longer) good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenStateError {
    #[error(transparent)]
    Token(#[from] AccessTokenError),
    #[error("token revoked")]
    Revoked,
    #[error("the agent is not active")]
    AgentInactive,
    #[error("the agent has expired")]
    AgentExpired,
    /// The agent was suspended, revoked or had its secret rotated (without a grace period) after
    /// the token was issued: such tokens stay dead, also after a reactivation (README, "Agent
    /// lifecycle").
    #[error("the token was issued before the agent was last suspended or its secret rotated")]
    IssuedBeforeCutoff,
    #[error("the partner that vouched for this identity is disabled or no longer registered")]
    PartnerInactive,
    #[error("the person is suspended or no longer a user")]
    PersonInactive,
    #[error("storage unavailable")]
    Unavailable,
}

/// The OAuth use cases of every organization's issuer, over what they need: client
/// authentication, the directories of agents and partners (whom a token speaks for), the
/// organization keys, the revocation list, the partner-assertion verifier and its single-use
/// markers, the default token lifetime and the clock (a token's `jti` carries its issue instant
/// in milliseconds).
pub struct OAuth {
    pub clients: client_auth::ClientAuth,
    pub directory: Arc<Directory>,
    pub partners: Arc<PartnerDirectory>,
    pub keys: Arc<KeyService>,
    /// Access tokens already verified (signature and claims), by their bytes.
    pub verified: access_token::VerifiedTokens,
    pub revocations: Arc<revocations::RevocationList>,
    pub verifier: Arc<Verifier>,
    pub replay: DynReplay,
    pub access_token_ttl: i64,
    pub clock: Arc<dyn Clock>,
    /// Codes, consents and refresh tokens of the authorization code flow.
    pub grants: Arc<dyn crate::storage::GrantStore>,
    /// People, whom their tokens speak for.
    pub users: Arc<dyn crate::storage::UserStore>,
    /// The instance's public URL (no trailing slash): the admin API is below it.
    pub public_url: String,
}

impl OAuth {
    /// The organization's active signing key for `alg`. Every organization has one per
    /// algorithm at every instant, so its absence (or a key-store failure) is a server error.
    async fn signing_key(
        &self,
        org: &OrgRecord,
        alg: crate::model::Alg,
        now: i64,
    ) -> Result<Arc<crate::keys::LoadedKey>, OAuthError> {
        let keys = self
            .keys
            .org_keys(org, now)
            .await
            .map_err(|_| OAuthError::server_error())?;
        keys.signing_key(alg, now)
            .cloned()
            .ok_or_else(OAuthError::server_error)
    }

    /// Validates an access token of `org` and checks that it is still in force: not revoked, its
    /// agent active, issued after the agent's "tokens valid after" instant. The revocation check
    /// reads memory, not the database, where that cannot fail open
    /// ([`revocations::RevocationList::is_revoked`]).
    pub async fn active_token(
        &self,
        org: &OrgRecord,
        token: &str,
        now: i64,
    ) -> Result<(Arc<AccessClaims>, Holder), TokenStateError> {
        let keys = self
            .keys
            .org_keys(org, now)
            .await
            .map_err(|_| TokenStateError::Unavailable)?;
        // A token verified before against this very key set is not verified again
        // ([`access_token::VerifiedTokens`]); every state check below is made every time.
        let claims = self
            .verified
            .validate(&keys, &org.issuer, token, now)
            .await?;
        let holder = match &claims.federated {
            // A federated identity: good while its partner is registered and enabled.
            Some(f) => {
                let partner = self
                    .partners
                    .partner(&org.id, &f.iss)
                    .await
                    .map_err(|_| TokenStateError::Unavailable)?
                    .filter(|p| p.enabled)
                    .ok_or(TokenStateError::PartnerInactive)?;
                Holder::Federated(partner)
            }
            None => {
                let agent = self
                    .directory
                    .agent(&org.id, &claims.client_id)
                    .await
                    .map_err(|_| TokenStateError::Unavailable)?
                    .ok_or(TokenStateError::AgentInactive)?;
                if agent.status != AgentStatus::Active {
                    return Err(TokenStateError::AgentInactive);
                }
                if agent.is_expired(now) {
                    return Err(TokenStateError::AgentExpired);
                }
                let issued_ms = crate::model::uuid_v7_millis(&claims.jti)
                    .unwrap_or(claims.iat.saturating_mul(1000));
                if issued_ms <= agent.record.tokens_valid_after_ms {
                    return Err(TokenStateError::IssuedBeforeCutoff);
                }
                if claims.sub == claims.client_id {
                    Holder::Agent(agent)
                } else {
                    // A person's token, issued to this client: good while the person is active.
                    let user = self
                        .users
                        .user(&org.id, &claims.sub)
                        .await
                        .map_err(|_| TokenStateError::Unavailable)?
                        .filter(|u| u.status == crate::storage::UserStatus::Active)
                        .ok_or(TokenStateError::PersonInactive)?;
                    Holder::Person {
                        client: agent,
                        user: Arc::new(user),
                    }
                }
            }
        };
        if self
            .revocations
            .is_revoked(&org.id, &claims.jti)
            .await
            .map_err(|_| TokenStateError::Unavailable)?
        {
            return Err(TokenStateError::Revoked);
        }
        Ok((claims, holder))
    }

    /// May the bearer of `token` call `{iss}/federation/verify`? One of the organization's agents
    /// with an access token in force may; a federated identity may not (it would let a partner
    /// launder its own assertions through us). The platform admin is admitted by the edge.
    pub async fn authorize_verifier(
        &self,
        org: &OrgRecord,
        token: &str,
        now: i64,
    ) -> Result<(), OAuthError> {
        match self.active_token(org, token, now).await? {
            (_, Holder::Agent(_)) => Ok(()),
            (_, Holder::Federated(_)) => Err(OAuthError::invalid_token(
                "a federated identity cannot verify assertions",
            )),
            (_, Holder::Person { .. }) => Err(OAuthError::invalid_token(
                "a person's token cannot verify assertions",
            )),
        }
    }
}

/// Whom an access token speaks for.
#[derive(Debug, Clone)]
pub enum Holder {
    /// A local agent.
    Agent(Arc<Agent>),
    /// A foreign identity vouched for by this partner.
    Federated(Arc<crate::federation::Partner>),
    /// A person of the organization, through the client they signed in to.
    Person {
        client: Arc<Agent>,
        user: Arc<crate::storage::UserRecord>,
    },
}

impl From<TokenStateError> for OAuthError {
    fn from(e: TokenStateError) -> Self {
        match e {
            TokenStateError::Unavailable => OAuthError::server_error(),
            other => OAuthError::invalid_token(other.to_string()),
        }
    }
}
