//! RFC 9068 JWT access tokens: minting and validation for our own endpoints.

use serde::{Deserialize, Serialize};

use super::Audience;
use crate::jose::{self, Claim, Expectations, JoseError, Origin, Typ};
use crate::keys::OrgKeys;

/// RFC 9068 §2.2 claims plus the agent claims we add.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// For client credentials, the client id (RFC 9068 §2.2).
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The organization the agent belongs to; absent on federated tokens (no local membership).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// Set on tokens obtained by exchanging a partner's assertion: who vouched, for whom.
    /// A dedicated claim: `act` is reserved for delegation (RFC 8693 §4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<FederatedClaim>,
    /// RFC 8693 §4.1: the agent acting for the person `sub` (its DID), nested for a chain (the
    /// current actor outermost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<serde_json::Value>,
    /// The delegation grants the token was issued under (each must stay in force).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlg: Option<Vec<String>>,
}

/// The partner issuer and the subject it asserted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedClaim {
    pub iss: String,
    pub sub: String,
}

/// `typ` of access tokens (RFC 9068 §2.1).
pub const TYP: &str = "at+jwt";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    #[error("malformed token")]
    Malformed,
    #[error("not an access token (typ must be at+jwt)")]
    WrongType,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid signature or claims")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token of another issuer")]
    WrongIssuer,
}

impl From<JoseError> for AccessTokenError {
    fn from(e: JoseError) -> Self {
        match e {
            JoseError::Malformed | JoseError::Crit => AccessTokenError::Malformed,
            JoseError::WrongType => AccessTokenError::WrongType,
            JoseError::UnknownKey => AccessTokenError::UnknownKey,
            JoseError::Expired => AccessTokenError::Expired,
            _ => AccessTokenError::Invalid,
        }
    }
}

/// RFC 9068 §4: `typ` at+jwt; `exp`, `iss`, `sub`, `iat` present; any audience (we are the
/// issuer answering for our own token); times stamped by our clock.
const EXPECT: Expectations<'static> = Expectations {
    typ: Typ::Is(TYP),
    required: &[Claim::Exp, Claim::Iss, Claim::Sub, Claim::Iat],
    audience: None,
    max_lifetime: None,
    origin: Origin::Ours,
};

/// Validates a token as an access token of this organization (RFC 9068 §4): `typ` at+jwt, a kid
/// among the organization's published keys whose alg is the header's (never the header's choice
/// alone: no `none`, no HMAC keyed with a public key), signature, expiry, issuer.
/// State checks (revocation, agent status) are the caller's.
pub fn validate(
    keys: &OrgKeys,
    issuer: &str,
    token: &str,
    now: i64,
) -> Result<AccessClaims, AccessTokenError> {
    validate_with_kid(keys, issuer, token, now).map(|(c, _)| c)
}

/// [`validate`], also answering the `kid` of the key that signed.
fn validate_with_kid(
    keys: &OrgKeys,
    issuer: &str,
    token: &str,
    now: i64,
) -> Result<(AccessClaims, String), AccessTokenError> {
    let jws = jose::parse(token, &EXPECT)?;
    let kid = jws.kid().ok_or(AccessTokenError::UnknownKey)?;
    let key = keys
        .published(kid, now)
        .ok_or(AccessTokenError::UnknownKey)?;
    let claims: AccessClaims = jws
        .verify_with(
            [key.verifying().ok_or(AccessTokenError::Invalid)?],
            &EXPECT,
            now,
        )
        .map_err(|e| match e {
            // The kid is ours but its key is of another alg than the header's.
            JoseError::UnknownKey => AccessTokenError::Invalid,
            e => e.into(),
        })?;
    if claims.iss != issuer || claims.org_id.as_deref().is_some_and(|o| o != keys.org_id) {
        return Err(AccessTokenError::WrongIssuer);
    }
    Ok((claims, kid.to_owned()))
}

/// Access tokens whose signature and claims were verified, so a token presented again (an agent
/// calls `/agent-info` or a relying party introspects the same token many times in its life) is
/// not verified again: an ES256 verification is most of what such a request costs. The same
/// idea as Envoy's `jwt_authn` JWT cache.
///
/// Only tokens that passed [`validate`] enter (a forged or malformed token is verified in full
/// every time, so garbage cannot fill the cache); a hit is the exact same bytes and answers only
/// while the token is unexpired, for the same key set object it was verified against
/// (`Weak::ptr_eq`: a rotated, revoked or reloaded key set is a new object, and another
/// organization's keys are another object), and while its signing key is still published.
/// Bounded by bytes ([`VERIFIED_BUDGET`]). State checks (revocation, the agent's status) are not
/// cached here: the caller makes them on every request.
pub struct VerifiedTokens {
    cache: moka::future::Cache<String, std::sync::Arc<Verified>>,
}

struct Verified {
    claims: std::sync::Arc<AccessClaims>,
    keys: std::sync::Weak<OrgKeys>,
    kid: String,
    /// When it was verified (with an injected clock moved back, a hit must not predate it).
    at: i64,
}

/// Bytes of verified tokens kept (about 1.5 KB each: 10,000 tokens).
pub const VERIFIED_BUDGET: u64 = 16 * 1024 * 1024;

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::with_budget(VERIFIED_BUDGET)
    }
}

impl VerifiedTokens {
    pub fn with_budget(bytes: u64) -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .max_capacity(bytes)
                .weigher(|token: &String, v: &std::sync::Arc<Verified>| {
                    let c = &v.claims;
                    let n = token.len() * 2
                        + 256
                        + c.iss.len()
                        + c.sub.len()
                        + c.jti.len()
                        + c.client_id.len()
                        + c.scope.as_ref().map_or(0, String::len)
                        + c.did.as_ref().map_or(0, String::len)
                        + c.agent_name.as_ref().map_or(0, String::len);
                    u32::try_from(n).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }

    /// [`validate`], answered from the cache when this token was verified against this key set.
    pub async fn validate(
        &self,
        keys: &std::sync::Arc<OrgKeys>,
        issuer: &str,
        token: &str,
        now: i64,
    ) -> Result<std::sync::Arc<AccessClaims>, AccessTokenError> {
        if let Some(v) = self.cache.get(token).await {
            let same_keys = std::ptr::eq(v.keys.as_ptr(), std::sync::Arc::as_ptr(keys));
            if same_keys
                && now >= v.at
                && now < v.claims.exp
                && v.claims.iss == issuer
                && keys.published(&v.kid, now).is_some()
            {
                return Ok(v.claims.clone());
            }
        }
        let (claims, kid) = validate_with_kid(keys, issuer, token, now)?;
        let claims = std::sync::Arc::new(claims);
        self.cache
            .insert(
                token.to_owned(),
                std::sync::Arc::new(Verified {
                    claims: claims.clone(),
                    keys: std::sync::Arc::downgrade(keys),
                    kid,
                    at: now,
                }),
            )
            .await;
        Ok(claims)
    }
}
