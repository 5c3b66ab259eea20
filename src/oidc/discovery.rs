//! Provider metadata. Every URL listed is routed (a test walks them all), and every capability
//! listed is implemented; nothing more.

use serde_json::{Value, json};

use crate::jose::ALG_NAMES;
use crate::oauth::wire::GRANT_TYPES;
use crate::storage::OrgRecord;
use crate::tenancy::AuthMethod;

/// Claims that `/agent-info`, access tokens and ID tokens carry.
pub const CLAIMS: [&str; 19] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "azp",
    "client_id",
    "scope",
    "org_id",
    "did",
    "agent_name",
    "name",
    "email",
    "email_verified",
    "amr",
    "sid",
    "nonce",
    "act",
];

/// The metadata shared by OIDC Discovery (§3) and RFC 8414 (§2).
///
/// People sign in through the authorization code flow with PKCE `S256` (RFC 9207 `iss` in every
/// authorization response); agents use the token endpoint.
pub fn metadata(org: &OrgRecord, scopes: &[String]) -> Value {
    let iss = &org.issuer;
    json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth2/authorize"),
        "token_endpoint": format!("{iss}/oauth2/token"),
        "end_session_endpoint": format!("{iss}/oauth2/logout"),
        "jwks_uri": format!("{iss}/jwks.json"),
        "userinfo_endpoint": format!("{iss}/agent-info"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        // RFC 7591 (RFC 8414 §2), management per RFC 7592 at each registration's URI.
        "registration_endpoint": format!("{iss}/oauth2/register"),
        // draft-ietf-oauth-client-id-metadata-document: an https `client_id` is fetched.
        "client_id_metadata_document_supported": true,
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "scopes_supported": scopes,
        "claims_supported": CLAIMS,
        "subject_types_supported": ["public"],
        "token_endpoint_auth_methods_supported": AuthMethod::ALL.map(AuthMethod::as_str),
        "token_endpoint_auth_signing_alg_values_supported": ALG_NAMES,
        "introspection_endpoint_auth_methods_supported": AuthMethod::AUTHENTICATING.map(AuthMethod::as_str),
        "introspection_endpoint_auth_signing_alg_values_supported": ALG_NAMES,
        "revocation_endpoint_auth_methods_supported": AuthMethod::ALL.map(AuthMethod::as_str),
        "revocation_endpoint_auth_signing_alg_values_supported": ALG_NAMES,
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "userinfo_signing_alg_values_supported": [],
        "access_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "did": org.did,
    })
}

/// Scopes advertised: `openid` plus the standard ones we honour. Agent-specific scopes are
/// configured per agent and are not enumerated (OIDC Discovery §3 allows listing a subset).
pub fn advertised_scopes() -> Vec<String> {
    crate::oauth::authorize::OIDC_SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}
