//! Signing keys: generation, RFC 7517 public JWKs, RFC 7638 thumbprint `kid`s, and compact
//! JWS signing with key pairs parsed once and cached (the token endpoint's hot path).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::prelude::*;
use serde_json::{Value, json};

use crate::model::Alg;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("key generation failed")]
    Generate,
    #[error("stored private key is malformed")]
    BadPrivateKey,
    #[error("signing failed")]
    Sign,
}

impl From<crate::jose::SignError> for SigningError {
    fn from(_: crate::jose::SignError) -> Self {
        SigningError::Sign
    }
}

/// A freshly generated key: its `kid`, public JWK and PKCS#8 private key (to be sealed).
pub struct GeneratedKey {
    pub kid: String,
    pub alg: Alg,
    pub public_jwk: Value,
    pub pkcs8: Vec<u8>,
}

/// Generate a key of `alg`: P-256 for ES256, RSA 3072 for RS256, Ed25519 for EdDSA.
/// RSA generation takes about half a second: call it off the async workers.
pub fn generate(alg: Alg) -> Result<GeneratedKey, SigningError> {
    let pkcs8 = match alg {
        Alg::ES256 => EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map_err(|_| SigningError::Generate)?
            .as_ref()
            .to_vec(),
        Alg::EdDSA => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map_err(|_| SigningError::Generate)?
            .as_ref()
            .to_vec(),
        Alg::RS256 => {
            let kp = RsaKeyPair::generate(KeySize::Rsa3072).map_err(|_| SigningError::Generate)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der =
                kp.as_der().map_err(|_| SigningError::Generate)?;
            der.as_ref().to_vec()
        }
    };
    let signer = Signer::from_pkcs8(alg, &pkcs8)?;
    let public_jwk = signer.public_jwk();
    let kid = thumbprint(&public_jwk);
    let public_jwk = with_metadata(public_jwk, &kid, alg);
    Ok(GeneratedKey {
        kid,
        alg,
        public_jwk,
        pkcs8,
    })
}

fn b64(bytes: &[u8]) -> String {
    BASE64_URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace.
pub fn thumbprint(jwk: &Value) -> String {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str).unwrap_or("");
    let canonical = match s("kty") {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv"),
            s("x"),
            s("y")
        ),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, s("crv"), s("x")),
        other => format!(r#"{{"kty":"{other}"}}"#),
    };
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

fn with_metadata(mut jwk: Value, kid: &str, alg: Alg) -> Value {
    if let Value::Object(m) = &mut jwk {
        m.insert("kid".into(), Value::String(kid.to_owned()));
        m.insert("alg".into(), Value::String(alg.as_str().to_owned()));
        m.insert("use".into(), Value::String("sig".into()));
    }
    jwk
}

/// A parsed private key, ready to sign.
pub enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl Signer {
    pub fn from_pkcs8(alg: Alg, pkcs8: &[u8]) -> Result<Self, SigningError> {
        Ok(match alg {
            Alg::ES256 => Signer::Es256(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| SigningError::BadPrivateKey)?,
            ),
            Alg::RS256 => Signer::Rs256(
                RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| SigningError::BadPrivateKey)?,
            ),
            Alg::EdDSA => Signer::EdDsa(
                Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| SigningError::BadPrivateKey)?,
            ),
        })
    }

    /// The public half as a JWK (without `kid`/`alg`/`use`).
    pub fn public_jwk(&self) -> Value {
        match self {
            Signer::Es256(k) => {
                // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
            Signer::Rs256(k) => {
                let pk = k.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64(pk.exponent().big_endian_without_leading_zero()),
                })
            }
            Signer::EdDsa(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        }
    }

    /// The JWS signature over `signing_input` (RFC 7515 §5.1), in JWS form
    /// (ECDSA as fixed-width r || s, RFC 7518 §3.4).
    pub fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SigningError> {
        match self {
            Signer::Es256(k) => k
                .sign(&SystemRandom::new(), signing_input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SigningError::Sign),
            Signer::Rs256(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    signing_input,
                    &mut sig,
                )
                .map_err(|_| SigningError::Sign)?;
                Ok(sig)
            }
            Signer::EdDsa(k) => Ok(k.sign(signing_input).as_ref().to_vec()),
        }
    }
}

/// A private key parsed on first use. An organization's key set is re-read whenever its cache
/// entry expires (`KEY_CACHE_TTL`, 30 s) or is invalidated, and
/// most organizations never sign with RSA (ID tokens only), so an RSA-3072 key is parsed (and
/// validated, ~1 ms) only when it first signs, not whenever the set is loaded.
pub struct LazySigner {
    alg: Alg,
    pkcs8: Vec<u8>,
    parsed: std::sync::OnceLock<Option<Signer>>,
}

impl LazySigner {
    pub fn new(alg: Alg, pkcs8: Vec<u8>) -> Self {
        Self {
            alg,
            pkcs8,
            parsed: std::sync::OnceLock::new(),
        }
    }

    pub fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SigningError> {
        let sign = || {
            self.parsed
                .get_or_init(|| Signer::from_pkcs8(self.alg, &self.pkcs8).ok())
                .as_ref()
                .ok_or(SigningError::BadPrivateKey)?
                .sign(signing_input)
        };
        // An RSA-3072 signature (and the first parse) takes about a millisecond: on a runtime
        // worker that would stall every other request it serves, so the worker's other tasks
        // are handed to another thread meanwhile. ES256 and EdDSA (tens of microseconds) stay
        // inline: the hand-over would cost more than they do.
        if self.alg == Alg::RS256 && on_multi_thread_runtime() {
            tokio::task::block_in_place(sign)
        } else {
            sign()
        }
    }
}

/// `block_in_place` is only allowed on the multi-threaded runtime (it panics on the
/// current-thread one, which tests and tools may use).
fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1 example key and its thumbprint.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn lazy_signer_parses_on_first_use() {
        let g = generate(Alg::EdDSA).unwrap();
        let lazy = LazySigner::new(Alg::EdDSA, g.pkcs8.clone());
        let eager = Signer::from_pkcs8(Alg::EdDSA, &g.pkcs8).unwrap();
        // Ed25519 signatures are deterministic.
        assert_eq!(lazy.sign(b"x").unwrap(), eager.sign(b"x").unwrap());
        assert!(
            LazySigner::new(Alg::ES256, b"garbage".to_vec())
                .sign(b"x")
                .is_err()
        );
    }

    /// RS256 signing does not hold a runtime worker: with one worker, a task signing RSA back
    /// to back (as a burst of token requests might, between awaits) leaves another task on the
    /// same runtime free to run. Before, the ticker below stalled for the whole burst.
    #[test]
    fn rs256_signing_leaves_the_runtime_free() {
        let g = generate(Alg::RS256).unwrap();
        let lazy = std::sync::Arc::new(LazySigner::new(Alg::RS256, g.pkcs8));
        lazy.sign(b"warm").unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let max_gap = rt.block_on(async move {
            let ticker = tokio::spawn(async {
                let mut max = std::time::Duration::ZERO;
                let mut last = std::time::Instant::now();
                for _ in 0..60 {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    max = max.max(last.elapsed());
                    last = std::time::Instant::now();
                }
                max
            });
            tokio::task::yield_now().await;
            let signer = tokio::spawn(async move {
                let start = std::time::Instant::now();
                // No await in here: only block_in_place lets the ticker run meanwhile.
                while start.elapsed() < std::time::Duration::from_millis(400) {
                    lazy.sign(b"payload").unwrap();
                }
            });
            signer.await.unwrap();
            ticker.await.unwrap()
        });
        assert!(
            max_gap < std::time::Duration::from_millis(250),
            "the runtime stalled for {max_gap:?} while RSA signed"
        );
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        for alg in [Alg::ES256, Alg::EdDSA] {
            let g = generate(alg).unwrap();
            assert_eq!(g.kid, thumbprint(&g.public_jwk));
            let s = Signer::from_pkcs8(alg, &g.pkcs8).unwrap();
            let sig = s.sign(b"abc").unwrap();
            let (valg, pubkey): (&dyn signature::VerificationAlgorithm, Vec<u8>) = match &s {
                Signer::Es256(k) => (
                    &signature::ECDSA_P256_SHA256_FIXED,
                    k.public_key().as_ref().to_vec(),
                ),
                Signer::EdDsa(k) => (&signature::ED25519, k.public_key().as_ref().to_vec()),
                Signer::Rs256(_) => unreachable!(),
            };
            signature::UnparsedPublicKey::new(valg, &pubkey)
                .verify(b"abc", &sig)
                .unwrap();
        }
    }
}
