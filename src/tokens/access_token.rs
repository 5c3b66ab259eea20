//! RFC 9068 JWT access tokens: minting and validation for our own endpoints.

use serde::{Deserialize, Serialize};

use super::{Audience, HeaderError, parse_header, typ_is};
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

impl From<HeaderError> for AccessTokenError {
    fn from(_: HeaderError) -> Self {
        AccessTokenError::Malformed
    }
}

/// Validates a token as an access token of this organization (RFC 9068 §4): `typ` at+jwt, a kid
/// among the organization's published keys with a matching alg, signature, issuer, expiry.
/// State checks (revocation, agent status) are the caller's.
pub fn validate(
    keys: &OrgKeys,
    issuer: &str,
    token: &str,
    now: i64,
) -> Result<AccessClaims, AccessTokenError> {
    let header = parse_header(token)?;
    if !typ_is(header.typ.as_deref(), TYP) {
        return Err(AccessTokenError::WrongType);
    }
    let kid = header.kid.as_deref().ok_or(AccessTokenError::UnknownKey)?;
    let key = keys
        .published(kid, now)
        .ok_or(AccessTokenError::UnknownKey)?;
    // The alg is the key's, never the header's choice: no `none`, no HMAC keyed with a public key.
    if header.alg != key.alg.as_str() {
        return Err(AccessTokenError::Invalid);
    }
    let alg = match key.alg {
        crate::model::Alg::ES256 => jsonwebtoken::Algorithm::ES256,
        crate::model::Alg::RS256 => jsonwebtoken::Algorithm::RS256,
        crate::model::Alg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
    };
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_exp = false; // checked below against our clock
    v.validate_aud = false; // any audience: we are the issuer answering for our own token
    v.set_required_spec_claims(&["exp", "iss", "sub", "iat"]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &v)
        .map_err(|_| AccessTokenError::Invalid)?;
    let claims = data.claims;
    if claims.iss != issuer || claims.org_id.as_deref().is_some_and(|o| o != keys.org_id) {
        return Err(AccessTokenError::WrongIssuer);
    }
    if claims.exp <= now {
        return Err(AccessTokenError::Expired);
    }
    Ok(claims)
}
