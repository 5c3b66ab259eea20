//! Proof of control: a short-lived JWT, signed by the organization's key, whose `sub` is the
//! agent's DID. A verifier holding only the DID documents (agent -> organization) checks it:
//! resolve `sub`, find the header `kid` (a DID URL of the organization, listed in the agent
//! document's `assertionMethod`), resolve `iss` (the organization DID, the agent's controller)
//! for that key, verify the signature and the times.

use serde::Serialize;

use crate::jose::Header;
use crate::keys::{LoadedKey, SigningError};
use crate::model::new_id;

/// `typ` of proof JWTs: never confused with access or ID tokens.
pub const TYP: &str = "agent-proof+jwt";
/// Proofs are short-lived.
pub const LIFETIME_SECS: i64 = 300;

#[derive(Debug, Serialize)]
struct ProofClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    /// The OAuth issuer of the organization, for verifiers that also speak OIDC.
    issuer: &'a str,
    client_id: &'a str,
}

/// Signs a proof for `agent_did` with the organization key `key`; the header `kid` is the key's
/// DID URL `{org_did}#{kid}`.
#[allow(clippy::too_many_arguments)]
pub fn mint(
    key: &LoadedKey,
    org_did: &str,
    issuer: &str,
    agent_did: &str,
    client_id: &str,
    aud: Option<&str>,
    nonce: Option<&str>,
    now: i64,
) -> Result<String, SigningError> {
    let kid = format!("{org_did}#{}", key.kid);
    let claims = ProofClaims {
        iss: org_did,
        sub: agent_did,
        aud,
        nonce,
        iat: now,
        nbf: now,
        exp: now + LIFETIME_SECS,
        jti: new_id(now.saturating_mul(1000)),
        issuer,
        client_id,
    };
    let header = Header {
        typ: Some(TYP),
        kid: Some(&kid),
        jku: None,
    };
    Ok(crate::jose::sign(key, &header, &claims)?)
}
