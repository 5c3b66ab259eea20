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
    let jws = jose::parse(token, &EXPECT)?;
    let kid = jws.kid().ok_or(AccessTokenError::UnknownKey)?;
    let key = keys
        .published(kid, now)
        .ok_or(AccessTokenError::UnknownKey)?;
    let claims: AccessClaims =
        jws.verify_with([&key.verifying], &EXPECT, now)
            .map_err(|e| match e {
                // The kid is ours but its key is of another alg than the header's.
                JoseError::UnknownKey => AccessTokenError::Invalid,
                e => e.into(),
            })?;
    if claims.iss != issuer || claims.org_id.as_deref().is_some_and(|o| o != keys.org_id) {
        return Err(AccessTokenError::WrongIssuer);
    }
    Ok(claims)
}
