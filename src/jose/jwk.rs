//! JWKs (RFC 7517) as verification keys, parsed once when a key set is loaded or cached, and
//! the one key filter that decides which keys may verify a given JWS.

use std::sync::Arc;

use base64::prelude::*;
use serde_json::Value;

use super::JwsAlg;

/// Every JWK member that makes a key private or symmetric: RSA private parameters
/// (RFC 7518 §6.3.2: `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`), the EC and OKP private key `d`
/// (RFC 7518 §6.2.2, RFC 8037 §2), and the `oct` key value `k` (RFC 7518 §6.4.1).
/// A JWK carrying any of them is never accepted, stored as a verification key or published.
pub const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Does this JWK carry private or symmetric key material?
pub fn is_private(jwk: &Value) -> bool {
    PRIVATE_MEMBERS.iter().any(|m| jwk.get(m).is_some())
}

/// The key types we verify with: `kty` and, for EC and OKP, `crv` together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// Why a JWK is not a usable public verification key, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("kty must be EC, RSA or OKP")]
    Kty,
    #[error("contains private key material")]
    Private,
    #[error("is not a usable public key")]
    Unusable,
    /// `use` other than `sig`, or an `alg` that is not an allowed asymmetric algorithm of the
    /// key's type: the key filter ([`VerifyingKey::fits`]) would never let it verify anything.
    #[error("is not a signature key (use must be sig; alg an allowed algorithm of its type)")]
    NotForSignatures,
}

/// A public JWK parsed into a verification key, with the members the key filter reads.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    /// The JWK's own `alg` (RFC 7517 §4.4), when it names one.
    pub alg: Option<String>,
    pub key_type: KeyType,
    /// `use` absent or `sig` (RFC 7517 §4.2): the key may verify signatures.
    pub for_signing: bool,
    pub(super) key: jsonwebtoken::DecodingKey,
    /// EC and Ed25519 keys, parsed once into aws-lc: `jsonwebtoken` parses (and checks) the
    /// public key again on every verification, which cost as much as a tenth of an ES256
    /// verification. RSA keys go through `jsonwebtoken`.
    pub(super) parsed: Option<aws_lc_rs::signature::ParsedPublicKey>,
}

impl VerifyingKey {
    /// Parses a public JWK: `kty` EC (P-256, P-384), RSA or OKP (Ed25519); no private or
    /// symmetric members; an EC point that lies on its curve and an Ed25519 key of 32 bytes
    /// (`jsonwebtoken` takes any bytes there and fails only when verifying).
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwkError> {
        let s = |m: &str| jwk.get(m).and_then(Value::as_str);
        let kty = s("kty").unwrap_or("");
        if !matches!(kty, "EC" | "RSA" | "OKP") {
            return Err(JwkError::Kty);
        }
        if is_private(jwk) {
            return Err(JwkError::Private);
        }
        // RFC 7517 §4.2, §4.4, §4.5: string members when present.
        if ["kid", "alg", "use"]
            .iter()
            .any(|m| jwk.get(m).is_some_and(|v| !v.is_string()))
        {
            return Err(JwkError::Unusable);
        }
        let bytes = |m: &str| s(m).and_then(|v| BASE64_URL_SAFE_NO_PAD.decode(v).ok());
        let unusable = |_| JwkError::Unusable;
        let (key_type, key, parsed) = match (kty, s("crv")) {
            ("RSA", _) => {
                let (Some(n), Some(e)) = (s("n"), s("e")) else {
                    return Err(JwkError::Unusable);
                };
                (
                    KeyType::Rsa,
                    jsonwebtoken::DecodingKey::from_rsa_components(n, e).map_err(unusable)?,
                    None,
                )
            }
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                use aws_lc_rs::signature::{
                    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ParsedPublicKey,
                    VerificationAlgorithm,
                };
                let (Some(x), Some(y)) = (bytes("x"), bytes("y")) else {
                    return Err(JwkError::Unusable);
                };
                let (t, alg, len): (_, &'static dyn VerificationAlgorithm, _) = if crv == "P-256" {
                    (KeyType::P256, &ECDSA_P256_SHA256_FIXED, 32)
                } else {
                    (KeyType::P384, &ECDSA_P384_SHA384_FIXED, 48)
                };
                let point = [&[4u8][..], &x, &y].concat();
                if x.len() != len || y.len() != len {
                    return Err(JwkError::Unusable);
                }
                let parsed = ParsedPublicKey::new(alg, point).map_err(|_| JwkError::Unusable)?;
                let (x, y) = (s("x").unwrap_or(""), s("y").unwrap_or(""));
                (
                    t,
                    jsonwebtoken::DecodingKey::from_ec_components(x, y).map_err(unusable)?,
                    Some(parsed),
                )
            }
            ("OKP", Some("Ed25519")) => {
                use aws_lc_rs::signature::{ED25519, ParsedPublicKey};
                let x = bytes("x").ok_or(JwkError::Unusable)?;
                if x.len() != 32 {
                    return Err(JwkError::Unusable);
                }
                let parsed = ParsedPublicKey::new(&ED25519, &x).map_err(|_| JwkError::Unusable)?;
                (
                    KeyType::Ed25519,
                    jsonwebtoken::DecodingKey::from_ed_components(s("x").unwrap_or(""))
                        .map_err(unusable)?,
                    Some(parsed),
                )
            }
            _ => return Err(JwkError::Unusable),
        };
        Ok(VerifyingKey {
            kid: s("kid").map(str::to_owned),
            alg: s("alg").map(str::to_owned),
            key_type,
            for_signing: s("use").is_none_or(|u| u == "sig"),
            key,
            parsed,
        })
    }

    /// The one key filter: may this key verify a JWS whose header names `kid` and `alg`?
    /// The `kid` matches when the header names one (RFC 7515 §4.1.4); the key's type fits the
    /// alg (no RSA key for ES256, no P-384 key for ES256); `use`, when present, is `sig`
    /// (RFC 7517 §4.2); the key's own `alg`, when present, is the header's (RFC 7517 §4.4).
    pub fn fits(&self, kid: Option<&str>, alg: JwsAlg) -> bool {
        kid.is_none_or(|k| self.kid.as_deref() == Some(k))
            && alg.key_type() == self.key_type
            && self.for_signing
            && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
    }
}

/// A JWK Set parsed once into verification keys. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Arc<[VerifyingKey]>,
}

impl KeySet {
    /// The usable keys of a JWK Set (`{"keys": [...]}`); private, symmetric, malformed and
    /// unsupported keys are skipped (a foreign set may hold encryption keys, or keys of types
    /// we do not verify with, next to the ones that matter). Not a set: no keys.
    pub fn from_jwks(jwks: &Value) -> Self {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .map(|ks| {
                ks.iter()
                    .filter_map(|k| VerifyingKey::from_jwk(k).ok())
                    .collect()
            })
            .unwrap_or_default();
        KeySet { keys }
    }

    /// Every key of a JWK Set, or the index of the first that is not a usable public key and
    /// why (for registration, which refuses rather than skips).
    pub fn from_jwks_strict(keys: &[Value]) -> Result<Self, (usize, JwkError)> {
        let keys =
            keys.iter()
                .enumerate()
                .map(|(i, k)| {
                    let key = VerifyingKey::from_jwk(k).map_err(|e| (i, e))?;
                    let alg_fits = key.alg.as_deref().is_none_or(|a| {
                        JwsAlg::parse(a).is_some_and(|a| a.key_type() == key.key_type)
                    });
                    if key.for_signing && alg_fits {
                        Ok(key)
                    } else {
                        Err((i, JwkError::NotForSignatures))
                    }
                })
                .collect::<Result<_, _>>()?;
        Ok(KeySet { keys })
    }

    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
