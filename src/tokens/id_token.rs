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
