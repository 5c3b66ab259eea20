//! Verification of partner assertions. Each check has its own error code:
//! the issuer is a registered, enabled partner of this organization; the signature uses an
//! allowed asymmetric alg and a key from that partner's keys (`jku`, `x5u`, `jwk` headers are
//! never used; `crit` is rejected); `aud` meets the partner's allowed audiences; `exp` is present,
//! not past, and within the partner's maximum lifetime; `nbf`/`iat` are sane within a small
//! leeway; the `(iss, jti)` has never been seen (single use everywhere: verifying spends it).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Partner, PartnerDirectory, issuer_did};
use crate::did::resolver::Resolver;
use crate::ephemeral::{DynReplay, ReplayCache};
use crate::jose::{self, Claim, Expectations, JoseError, KeySet, LEEWAY, Origin, Typ};
use crate::remote::RemoteJson;
use crate::storage::OrgRecord;

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
    /// Present but not what RFC 7519 says it is (a string `iat`, an array `nbf`): refused, never
    /// taken as absent.
    #[error("the claim {0} is malformed")]
    InvalidClaim(&'static str),
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
            VerifyError::InvalidClaim(_) => "invalid_claim",
            VerifyError::Replayed => "replayed",
            VerifyError::Internal => "server_error",
        }
    }
}

/// The federation code for each way the JWS fails.
fn refused(e: JoseError) -> VerifyError {
    match e {
        JoseError::Malformed | JoseError::MalformedClaims => VerifyError::Malformed,
        JoseError::Crit => VerifyError::Crit,
        // Not reached: partner assertions may have any `typ`.
        JoseError::WrongType => VerifyError::Malformed,
        JoseError::UnsupportedAlg => VerifyError::UnsupportedAlg(jose::ALG_NAMES.join(", ")),
        JoseError::UnknownKey => VerifyError::UnknownKey,
        JoseError::BadSignature => VerifyError::BadSignature,
        JoseError::MissingClaim(c) => VerifyError::MissingClaim(c),
        JoseError::BadClaim(c) => VerifyError::InvalidClaim(c),
        JoseError::Expired => VerifyError::Expired,
        JoseError::NotYetValid => VerifyError::NotYetValid,
        JoseError::IatInFuture => VerifyError::IatInFuture,
        JoseError::InvalidAudience => VerifyError::InvalidAudience,
        JoseError::LifetimeTooLong => VerifyError::LifetimeTooLong,
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
    pub async fn spend(&self, replay: &dyn ReplayCache, now: i64) -> Result<(), VerifyError> {
        let fresh = replay
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

/// Verification of partner assertions, over what it needs: the partners' directory, their
/// cached key sets and DID documents, the DID resolver, and the single-use markers.
pub struct Verifier {
    pub partners: Arc<PartnerDirectory>,
    pub partner_jwks: Arc<RemoteJson>,
    pub did_docs: Arc<RemoteJson>,
    pub resolver: Arc<Resolver>,
    pub replay: DynReplay,
}

impl Verifier {
    /// The keys of a partner, parsed once per cached copy: inline (parsed with the partner),
    /// fetched from its `jwks_uri` (cached, refreshed on unknown `kid` at most once per interval),
    /// or read from its DID document.
    async fn partner_keys(
        &self,
        partner: &Partner,
        refresh: bool,
        now: i64,
    ) -> Result<KeySet, VerifyError> {
        if partner.jwks.is_some() {
            return Ok(partner.key_set.clone());
        }
        if let Some(uri) = &partner.record.jwks_uri {
            let e = if refresh {
                self.partner_jwks.refresh(uri).await
            } else {
                self.partner_jwks.get(uri).await
            };
            return e
                .map(|e| e.key_set(KeySet::from_jwks))
                .map_err(|_| VerifyError::KeysUnavailable);
        }
        if let Some(did) = &partner.record.did {
            let web_url = crate::did::parse_did(did)
                .filter(|d| d.method == "web")
                .and_then(|d| crate::did::did_web_url(d.msid));
            if refresh && let Some(url) = &web_url {
                let _ = self.did_docs.refresh(url).await;
            }
            let doc = self
                .resolver
                .resolve(did, now, || true)
                .await
                .map_err(|_| VerifyError::KeysUnavailable)?;
            let did_keys = |d: &Value| KeySet::from_jwks(&jwks_from_did_document(d));
            // A foreign did:web document is served from the cache: its keys are parsed once and
            // kept with the cached copy, used only if it is the very document resolved. (Our own
            // DIDs are rendered per call; did:key and did:jwk are decoded from the DID itself.)
            if let Some(url) = &web_url
                && let Some(entry) = self.did_docs.cached(url).await
                && entry.doc == doc.document
            {
                return Ok(entry.key_set(did_keys));
            }
            return Ok(did_keys(&doc.document));
        }
        Err(VerifyError::KeysUnavailable)
    }

    /// Verifies `assertion` for `org` and spends its `(iss, jti)`.
    pub async fn verify(
        &self,
        org: &OrgRecord,
        assertion: &str,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let v = self.check(org, assertion, now).await?;
        v.spend(self.replay.as_ref(), now).await?;
        Ok(v)
    }

    /// Every check of [`verify`] except spending. The returned assertion is not yet single-use:
    /// the caller must [`Verified::spend`] it before acting on it.
    pub async fn check(
        &self,
        org: &OrgRecord,
        assertion: &str,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        // Any `typ`: partners send their access tokens, ID tokens and plain JWTs. `exp` is
        // required; the audience and lifetime are the partner's, so they are set once it is known.
        let mut expect = Expectations {
            typ: Typ::Any,
            required: &[Claim::Exp],
            audience: None,
            max_lifetime: None,
            origin: Origin::Foreign,
        };
        let jws = jose::parse(assertion, &expect).map_err(refused)?;
        // The (unverified) issuer selects the partner and so the keys; the signature then binds it.
        let unverified: Map<String, Value> = jws.unverified_claims().map_err(refused)?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(VerifyError::MissingClaim("iss"))?;
        let partner = self
            .partners
            .partner(&org.id, iss)
            .await
            .map_err(|_| VerifyError::Internal)?
            .ok_or(VerifyError::UnknownIssuer)?;
        if !partner.enabled {
            return Err(VerifyError::PartnerDisabled);
        }
        let audiences: Vec<&str> = partner
            .allowed_audiences
            .iter()
            .map(String::as_str)
            .collect();
        expect.audience = Some(&audiences);
        expect.max_lifetime = Some(partner.record.max_assertion_lifetime);

        let keys = self.partner_keys(&partner, false, now).await?;
        let mut outcome = jws.verify::<Map<String, Value>>(&keys, &expect, now);
        if outcome == Err(JoseError::UnknownKey) {
            // Unknown kid: the partner may have rotated. One refresh, shared and rate-limited.
            let keys = self.partner_keys(&partner, true, now).await?;
            outcome = jws.verify(&keys, &expect, now);
        }
        let claims = outcome.map_err(refused)?;
        // A NumericDate may be fractional (RFC 7519 §2); the verifier has checked it.
        let exp = claims
            .get("exp")
            .and_then(jose::exp_seconds)
            .ok_or(VerifyError::MissingClaim("exp"))?;
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty() && j.len() <= 256 && !j.chars().any(char::is_control))
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

    /// Issue 9 point 10: a string `iat` (or any malformed time) in a partner assertion was
    /// reported as a missing claim; it is a malformed one, refused with its own code.
    #[test]
    fn a_malformed_time_is_refused_not_taken_as_absent() {
        let e = refused(JoseError::BadClaim("iat"));
        assert_eq!(e, VerifyError::InvalidClaim("iat"));
        assert_eq!(e.code(), "invalid_claim");
        assert_eq!(e.to_string(), "the claim iat is malformed");
        assert_eq!(
            refused(JoseError::MissingClaim("exp")).code(),
            "missing_claim"
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
