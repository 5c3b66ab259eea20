//! OpenID Connect ID tokens (OIDC Core §2) for agents: `sub` is the client id, equal to
//! `/agent-info`'s `sub`; `aud` is the client id and `azp` names it too.

use serde::Serialize;

/// The claims of an agent's ID token.
#[derive(Debug, Clone, Serialize)]
pub struct IdClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub azp: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    /// Unique per token, so a partner can enforce single use when it accepts our ID tokens
    /// as federation assertions (RFC 8693 `id_token` subject tokens).
    pub jti: String,
    pub org_id: &'a str,
    pub did: &'a str,
    pub agent_name: &'a str,
    pub name: &'a str,
}

/// ID tokens carry `typ: JWT` (RFC 7519 §5.1), so they are never taken for access tokens.
pub const TYP: &str = "JWT";

/// The claims of a person's ID token (OIDC Core §2, §3.1.3.6): `sub` is the user id; `email`,
/// `email_verified` and `name` only with the `email` and `profile` scopes (§5.4).
#[derive(Debug, Clone, Serialize)]
pub struct PersonIdClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub azp: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    pub jti: String,
    /// RFC 8176 methods (`pwd`).
    pub amr: &'a [String],
    /// The session id (OIDC Front-/Back-Channel Logout `sid`).
    pub sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    pub org_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

/// What RP-Initiated Logout reads from an `id_token_hint` (OpenID Connect RP-Initiated Logout
/// 1.0 §2).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HintClaims {
    pub iss: String,
    pub sub: String,
    pub aud: super::Audience,
    #[serde(default)]
    pub sid: Option<String>,
    pub iat: i64,
}

/// How old an `id_token_hint` may be: the spec lets an expired one be accepted (it only names
/// who to sign out), within bounds.
pub const HINT_MAX_AGE: i64 = 30 * 86_400;

/// An ID token of this organization as a logout hint: our `typ` and a published key's valid
/// signature; expiry is not held against it (§2: "The OP need not be listed as an audience ...
/// [and] SHOULD accept ID Tokens ... even when expired"), its issue time must lie within
/// [`HINT_MAX_AGE`]. `None` for anything else.
pub fn verify_hint(
    keys: &crate::keys::OrgKeys,
    issuer: &str,
    token: &str,
    now: i64,
) -> Option<HintClaims> {
    use crate::jose::{Claim, Expectations, Origin, Typ};
    const EXPECT: Expectations<'static> = Expectations {
        typ: Typ::Is(TYP),
        required: &[Claim::Iss, Claim::Sub, Claim::Iat],
        audience: None,
        max_lifetime: None,
        origin: Origin::Ours,
    };
    let jws = crate::jose::parse(token, &EXPECT).ok()?;
    let unverified: HintClaims = jws.unverified_claims().ok()?;
    if unverified.iat > now + 60 || now - unverified.iat > HINT_MAX_AGE {
        return None;
    }
    let key = keys.published(jws.kid()?, now)?;
    // Verified as of its issue time: the signature is checked, its expiry is not.
    let claims: HintClaims = jws
        .verify_with([key.verifying()?], &EXPECT, unverified.iat)
        .ok()?;
    (claims.iss == issuer).then_some(claims)
}
