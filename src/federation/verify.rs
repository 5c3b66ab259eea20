//! Verification of partner assertions. Each check has its own error code:
//! the issuer is a registered, enabled partner of this organization; the signature uses an
//! allowed asymmetric alg and a key from that partner's keys (`jku`, `x5u`, `jwk` headers are
//! never used; `crit` is rejected); `aud` meets the partner's allowed audiences; `exp` is present,
//! not past, and within the partner's maximum lifetime; `nbf`/`iat` are sane within a small
//! leeway; the `(iss, jti)` has never been seen (single use everywhere: verifying spends it).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Partner, issuer_did};
use crate::idp::Idp;
use crate::oauth::client_auth::{ASSERTION_ALGS, assertion_alg, jwk_decoding_key};
use crate::storage::OrgRecord;
use crate::tokens::{HeaderError, parse_header};

/// Clock-skew allowance.
pub const LEEWAY: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the assertion is not a well-formed JWS")]
    Malformed,
    #[error("alg must be one of the asymmetric algorithms {0}")]
    UnsupportedAlg(String),
    #[error("the assertion has a crit header this server does not understand")]
    Crit,
    #[error("the issuer is not a registered partner of this organization")]
    UnknownIssuer,
    #[error("the partner is disabled")]
    PartnerDisabled,
    #[error("no key of the partner matches the assertion's kid and alg")]
    UnknownKey,
    #[error("the partner's keys could not be obtained")]
    KeysUnavailable,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("aud does not name this organization (or an allowed audience)")]
    InvalidAudience,
    #[error("the assertion has expired")]
    Expired,
    #[error("the assertion is not valid yet (nbf)")]
    NotYetValid,
    #[error("iat is in the future")]
    IatInFuture,
    #[error("the assertion lives longer than the partner's maximum lifetime")]
    LifetimeTooLong,
    #[error("the assertion lacks the required claim {0}")]
    MissingClaim(&'static str),
    #[error("the assertion was already used (jti replay)")]
    Replayed,
    #[error("internal error")]
    Internal,
}

impl VerifyError {
    /// The machine-readable code of `/federation/verify` answers.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Malformed => "malformed_assertion",
            VerifyError::UnsupportedAlg(_) => "unsupported_algorithm",
            VerifyError::Crit => "unsupported_critical_header",
            VerifyError::UnknownIssuer => "unknown_issuer",
            VerifyError::PartnerDisabled => "partner_disabled",
            VerifyError::UnknownKey => "unknown_key",
            VerifyError::KeysUnavailable => "keys_unavailable",
            VerifyError::BadSignature => "invalid_signature",
            VerifyError::InvalidAudience => "invalid_audience",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
            VerifyError::IatInFuture => "invalid_iat",
            VerifyError::LifetimeTooLong => "lifetime_too_long",
            VerifyError::MissingClaim(_) => "missing_claim",
            VerifyError::Replayed => "replayed",
            VerifyError::Internal => "server_error",
        }
    }
}

/// A verified assertion.
#[derive(Debug, Clone)]
pub struct Verified {
    pub partner: Arc<Partner>,
    pub claims: Map<String, Value>,
    /// Partner claims renamed by the partner's claim mapping.
    pub local_claims: Map<String, Value>,
    /// The foreign subject: its DID when that DID lies under the partner issuer's did:web path,
    /// else `partner-issuer#sub`.
    pub subject: String,
    /// The single-use marker (`(iss, jti)`) and how long it must be kept.
    replay_key: String,
    replay_until: i64,
}

impl Verified {
    /// Spends the assertion: from now on it is `replayed` everywhere. Call only once every other
    /// check of the caller has passed, so a refused request spends nothing.
    pub async fn spend(&self, idp: &Idp, now: i64) -> Result<(), VerifyError> {
        let fresh = idp
            .replay
            .set_if_absent(&self.replay_key, self.replay_until, now)
            .await
            .map_err(|_| VerifyError::Internal)?;
        if fresh {
            Ok(())
        } else {
            Err(VerifyError::Replayed)
        }
    }
}

/// The JWK Set of a partner: inline, fetched from its `jwks_uri` (cached, refreshed on unknown
/// `kid` at most once per interval), or read from its DID document.
async fn partner_keys(
    idp: &Idp,
    partner: &Partner,
    refresh: bool,
    now: i64,
) -> Result<Value, VerifyError> {
    if let Some(j) = &partner.jwks {
        return Ok(j.clone());
    }
    if let Some(uri) = &partner.record.jwks_uri {
        let e = if refresh {
            idp.partner_jwks.refresh(uri).await
        } else {
            idp.partner_jwks.get(uri).await
        };
        return e
            .map(|e| e.doc.clone())
            .map_err(|_| VerifyError::KeysUnavailable);
    }
    if let Some(did) = &partner.record.did {
        if refresh
            && let Some(url) =
                crate::did::parse_did(did).and_then(|d| crate::did::did_web_url(d.msid))
        {
            let _ = idp.did_docs.refresh(&url).await;
        }
        let doc = crate::did::resolver::resolve(idp, did, now, || true)
            .await
            .map_err(|_| VerifyError::KeysUnavailable)?;
        return Ok(jwks_from_did_document(&doc.document));
    }
    Err(VerifyError::KeysUnavailable)
}

/// The verification methods of a DID document as a JWK Set, `kid` = the method id's fragment.
pub fn jwks_from_did_document(doc: &Value) -> Value {
    use base64::prelude::*;
    let mut keys = Vec::new();
    for vm in doc
        .get("verificationMethod")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(kid) = vm
            .get("id")
            .and_then(Value::as_str)
            .and_then(|i| i.rsplit_once('#'))
            .map(|(_, f)| f)
        else {
            continue;
        };
        if let Some(jwk) = vm.get("publicKeyJwk").and_then(Value::as_object) {
            let mut jwk = jwk.clone();
            jwk.insert("kid".into(), Value::String(kid.to_owned()));
            keys.push(Value::Object(jwk));
        } else if let Some(mb) = vm.get("publicKeyMultibase").and_then(Value::as_str)
            && let Some(raw) = mb
                .strip_prefix('z')
                .and_then(|b| bs58::decode(b).into_vec().ok())
            && raw.len() == 34
            && raw[..2] == [0xed, 0x01]
        {
            keys.push(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": BASE64_URL_SAFE_NO_PAD.encode(&raw[2..]), "kid": kid}));
        }
    }
    serde_json::json!({ "keys": keys })
}

fn matching_keys<'a>(jwks: &'a Value, kid: Option<&str>, alg: &str) -> Vec<&'a Value> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
        .filter(|k| {
            k.get("alg")
                .and_then(Value::as_str)
                .is_none_or(|a| a == alg)
        })
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .collect()
}

/// Verifies `assertion` for `org` and spends its `(iss, jti)`.
pub async fn verify(
    idp: &Idp,
    org: &OrgRecord,
    assertion: &str,
    now: i64,
) -> Result<Verified, VerifyError> {
    let v = check(idp, org, assertion, now).await?;
    v.spend(idp, now).await?;
    Ok(v)
}

/// Every check of [`verify`] except spending. The returned assertion is not yet single-use:
/// the caller must [`Verified::spend`] it before acting on it.
pub async fn check(
    idp: &Idp,
    org: &OrgRecord,
    assertion: &str,
    now: i64,
) -> Result<Verified, VerifyError> {
    let header = parse_header(assertion).map_err(|e| match e {
        HeaderError::Malformed => VerifyError::Malformed,
        HeaderError::Crit => VerifyError::Crit,
    })?;
    let alg = assertion_alg(&header.alg)
        .ok_or_else(|| VerifyError::UnsupportedAlg(ASSERTION_ALGS.join(", ")))?;
    // The (unverified) issuer selects the partner and so the keys; the signature then binds it.
    let unverified: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
        .map_err(|_| VerifyError::Malformed)?;
    let iss = unverified
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(VerifyError::MissingClaim("iss"))?;
    let partner = idp
        .directory
        .partner(&org.id, iss)
        .await
        .map_err(|_| VerifyError::Internal)?
        .ok_or(VerifyError::UnknownIssuer)?;
    if !partner.enabled {
        return Err(VerifyError::PartnerDisabled);
    }

    let mut v = jsonwebtoken::Validation::new(alg);
    v.leeway = LEEWAY as u64;
    v.validate_nbf = true;
    v.validate_aud = false; // checked below against the partner's allowed audiences
    v.set_required_spec_claims(&["exp"]);
    v.set_issuer(&[iss]);

    let kid = header.kid.as_deref();
    let try_keys =
        |jwks: &Value| -> Option<Result<Map<String, Value>, jsonwebtoken::errors::Error>> {
            let mut last = None;
            for k in matching_keys(jwks, kid, &header.alg) {
                let Some(dk) = jwk_decoding_key(k) else {
                    continue;
                };
                match jsonwebtoken::decode::<Map<String, Value>>(assertion, &dk, &v) {
                    Ok(d) => return Some(Ok(d.claims)),
                    Err(e) => last = Some(Err(e)),
                }
            }
            last
        };
    let mut outcome = try_keys(&partner_keys(idp, &partner, false, now).await?);
    if outcome.is_none() {
        // Unknown kid: the partner may have rotated. One refresh, shared and rate-limited.
        outcome = try_keys(&partner_keys(idp, &partner, true, now).await?);
    }
    use jsonwebtoken::errors::ErrorKind as K;
    let claims = match outcome {
        None => return Err(VerifyError::UnknownKey),
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            return Err(match e.kind() {
                K::ExpiredSignature => VerifyError::Expired,
                K::ImmatureSignature => VerifyError::NotYetValid,
                K::MissingRequiredClaim(_) => VerifyError::MissingClaim("exp"),
                K::InvalidIssuer => VerifyError::UnknownIssuer,
                K::InvalidSignature
                | K::InvalidEcdsaKey
                | K::InvalidRsaKey(_)
                | K::InvalidAlgorithm => VerifyError::BadSignature,
                K::Json(_) | K::Utf8(_) | K::Base64(_) | K::InvalidToken => VerifyError::Malformed,
                _ => VerifyError::BadSignature,
            });
        }
    };

    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => partner.allowed_audiences.contains(a),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .any(|a| partner.allowed_audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(VerifyError::InvalidAudience);
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(VerifyError::MissingClaim("exp"))?;
    // Saturating: the times are the partner's numbers, anything an i64 holds.
    if exp.saturating_add(LEEWAY) <= now {
        return Err(VerifyError::Expired);
    }
    let iat = claims.get("iat").and_then(Value::as_i64);
    if iat.is_some_and(|i| i > now.saturating_add(LEEWAY)) {
        return Err(VerifyError::IatInFuture);
    }
    let max = partner.record.max_assertion_lifetime;
    if exp.saturating_sub(now) > max + LEEWAY || iat.is_some_and(|i| exp.saturating_sub(i) > max) {
        return Err(VerifyError::LifetimeTooLong);
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(VerifyError::MissingClaim("jti"))?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(VerifyError::MissingClaim("sub"))?
        .to_owned();

    // Single use everywhere: keyed by (iss, jti) alone, kept until the assertion could no longer pass.
    let replay_key = format!("partner-assertion:{iss}:{jti}");

    let subject = federated_subject(iss, &sub, claims.get("did").and_then(Value::as_str));
    let local_claims: Map<String, Value> = partner
        .claim_mapping
        .iter()
        .filter_map(|(from, to)| claims.get(from).map(|v| (to.clone(), v.clone())))
        .collect();
    Ok(Verified {
        partner,
        claims,
        local_claims,
        subject,
        replay_key,
        replay_until: exp.saturating_add(LEEWAY),
    })
}

/// The local subject for a foreign identity.
pub fn federated_subject(iss: &str, sub: &str, did: Option<&str>) -> String {
    if let Some(prefix) = issuer_did(iss) {
        let under = |d: &str| d.starts_with(&format!("{prefix}:"));
        if let Some(d) = did.filter(|d| under(d)) {
            return d.to_owned();
        }
        if under(sub) {
            return sub.to_owned();
        }
    }
    format!("{iss}#{sub}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        let iss = "https://b.example:8443/orgs/acme";
        let did = "did:web:b.example%3A8443:orgs:acme:agents:1";
        assert_eq!(federated_subject(iss, "1", Some(did)), did);
        assert_eq!(federated_subject(iss, did, None), did);
        assert_eq!(
            federated_subject(iss, "1", Some("did:web:evil.example:orgs:acme:agents:1")),
            format!("{iss}#1")
        );
        assert_eq!(
            federated_subject(
                iss,
                "1",
                Some("did:web:b.example%3A8443:orgs:acmex:agents:1")
            ),
            format!("{iss}#1")
        );
    }

    #[test]
    fn did_document_keys() {
        let doc = serde_json::json!({"verificationMethod": [
            {"id": "did:web:x#k1", "type": "JsonWebKey2020", "publicKeyJwk": {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}},
            {"id": "did:web:x#k2", "type": "Multikey", "publicKeyMultibase": crate::did::document::ed25519_multibase(&[7u8; 32])},
        ]});
        let jwks = jwks_from_did_document(&doc);
        assert_eq!(jwks["keys"][0]["kid"], "k1");
        assert_eq!(jwks["keys"][1]["crv"], "Ed25519");
        assert_eq!(jwks["keys"][1]["kid"], "k2");
    }
}
