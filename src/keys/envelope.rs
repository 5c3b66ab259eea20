//! Keys at rest: the master key, per-organization data keys (envelope encryption) and the keyed
//! digest used for server-generated secrets.
//!
//! Layout: `master key --wraps--> org data key --seals--> private signing keys`. The wrapped data
//! key records the master-key version, so rotating the master key re-wraps data keys only.
//! Every AES-256-GCM seal uses a fresh random 96-bit nonce and associated data that binds the
//! ciphertext to its row (org id, kid, alg): a ciphertext copied to another row fails to open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::prelude::*;

use crate::model::Secret;

/// Current master-key version written into new wrapped data keys.
pub const MASTER_KEY_VERSION: i64 = 1;
/// Current version of the secret-digest key, stored next to each digest.
pub const DIGEST_KEY_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    #[error("ciphertext does not open under this key and context")]
    Open,
    #[error("no master key of version {0} is configured")]
    UnknownVersion(i64),
    #[error("random generator failed")]
    Random,
}

/// Fill a fresh buffer with `N` random bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // SystemRandom only fails when the OS has no entropy source; nothing sane can continue then.
    SystemRandom::new()
        .fill(&mut buf)
        .unwrap_or_else(|_| panic!("system random generator unavailable"));
    buf
}

/// A 256-bit random value as base64url: client secrets and the bootstrap token.
pub fn random_token() -> Secret {
    Secret::new(BASE64_URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// The 32-byte master key.
pub struct MasterKey {
    version: i64,
    key: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(v{}, [redacted])", self.version)
    }
}

impl MasterKey {
    pub fn from_base64(b64: &str) -> Result<Self, EnvelopeError> {
        let raw = BASE64_STANDARD
            .decode(b64.trim())
            .or_else(|_| BASE64_URL_SAFE_NO_PAD.decode(b64.trim()))
            .map_err(|_| EnvelopeError::BadMasterKey)?;
        let key: [u8; 32] = raw.try_into().map_err(|_| EnvelopeError::BadMasterKey)?;
        Ok(Self {
            version: MASTER_KEY_VERSION,
            key,
        })
    }

    pub fn generate() -> Self {
        Self {
            version: MASTER_KEY_VERSION,
            key: random_bytes(),
        }
    }

    pub fn to_base64(&self) -> Secret {
        Secret::new(BASE64_STANDARD.encode(self.key))
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    fn derive(&self, label: &[u8]) -> [u8; 32] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
        let tag = hmac::sign(&k, label);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// A value stored in the database so a wrong key stops start-up with a clear error
    /// instead of failing later on the first decryption.
    pub fn check_value(&self) -> String {
        BASE64_URL_SAFE_NO_PAD.encode(self.derive(b"agentidp/master-key-check/v1"))
    }

    /// The key for keyed digests of server-generated secrets (client secrets, bootstrap token).
    pub fn digester(&self) -> SecretDigester {
        SecretDigester {
            version: DIGEST_KEY_VERSION,
            key: hmac::Key::new(
                hmac::HMAC_SHA256,
                &self.derive(b"agentidp/secret-digest/v1"),
            ),
        }
    }

    /// Wrap a fresh data key for `org_id`; returns (wrapped bytes, data key).
    pub fn new_data_key(&self, org_id: &str) -> (Vec<u8>, DataKey) {
        let dek: [u8; 32] = random_bytes();
        let wrapped = seal(&self.key, &dek_aad(org_id, self.version), &dek);
        (wrapped, DataKey(dek))
    }

    pub fn unwrap_data_key(
        &self,
        org_id: &str,
        version: i64,
        wrapped: &[u8],
    ) -> Result<DataKey, EnvelopeError> {
        if version != self.version {
            return Err(EnvelopeError::UnknownVersion(version));
        }
        let raw = open(&self.key, &dek_aad(org_id, version), wrapped)?;
        let dek: [u8; 32] = raw.try_into().map_err(|_| EnvelopeError::Open)?;
        Ok(DataKey(dek))
    }
}

fn dek_aad(org_id: &str, version: i64) -> Vec<u8> {
    format!("agentidp/dek/v{version}/{org_id}").into_bytes()
}

/// An organization's data key; seals its private signing keys.
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn seal_private_key(&self, org_id: &str, kid: &str, alg: &str, pkcs8: &[u8]) -> Vec<u8> {
        seal(&self.0, &key_aad(org_id, kid, alg), pkcs8)
    }
    pub fn open_private_key(
        &self,
        org_id: &str,
        kid: &str,
        alg: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        open(&self.0, &key_aad(org_id, kid, alg), sealed)
    }
}

fn key_aad(org_id: &str, kid: &str, alg: &str) -> Vec<u8> {
    format!("agentidp/signing-key/v1/{org_id}/{kid}/{alg}").into_bytes()
}

/// nonce || ciphertext || tag
fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES key"));
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::from(aad),
        &mut buf,
    )
    .expect("AES-GCM seal of a short buffer");
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&buf);
    out
}

fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(EnvelopeError::Open);
    }
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| EnvelopeError::Open)?);
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| EnvelopeError::Open)?;
    let mut buf = ct.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| EnvelopeError::Open)?;
    Ok(plain.to_vec())
}

/// HMAC-SHA-256 digests of server-generated, 256-bit secrets. A slow password hash buys nothing
/// for values with 256 bits of entropy and would cost ~17 ms on the token endpoint's hot path.
pub struct SecretDigester {
    version: i64,
    key: hmac::Key,
}

impl SecretDigester {
    pub fn version(&self) -> i64 {
        self.version
    }
    pub fn digest(&self, secret: &str) -> Vec<u8> {
        hmac::sign(&self.key, secret.as_bytes()).as_ref().to_vec()
    }
    /// Constant-time comparison of `secret`'s digest with a stored one.
    pub fn verify(&self, secret: &str, version: i64, stored: &[u8]) -> bool {
        version == self.version && hmac::verify(&self.key, secret.as_bytes(), stored).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_key_round_trip_and_binding() {
        let mk = MasterKey::generate();
        let (wrapped, dek) = mk.new_data_key("org1");
        let sealed = dek.seal_private_key("org1", "kid1", "ES256", b"private");
        let dek2 = mk
            .unwrap_data_key("org1", MASTER_KEY_VERSION, &wrapped)
            .unwrap();
        assert_eq!(
            dek2.open_private_key("org1", "kid1", "ES256", &sealed)
                .unwrap(),
            b"private"
        );
        // moved to another row: fails
        assert!(
            dek2.open_private_key("org2", "kid1", "ES256", &sealed)
                .is_err()
        );
        assert!(
            dek2.open_private_key("org1", "kid2", "ES256", &sealed)
                .is_err()
        );
        assert!(
            dek2.open_private_key("org1", "kid1", "RS256", &sealed)
                .is_err()
        );
        assert!(
            mk.unwrap_data_key("org2", MASTER_KEY_VERSION, &wrapped)
                .is_err()
        );
        // another master key: fails
        assert!(
            MasterKey::generate()
                .unwrap_data_key("org1", MASTER_KEY_VERSION, &wrapped)
                .is_err()
        );
        // fresh nonce each time
        assert_ne!(
            dek.seal_private_key("o", "k", "a", b"x"),
            dek.seal_private_key("o", "k", "a", b"x")
        );
        assert!(dek.open_private_key("o", "k", "a", b"short").is_err());
    }

    #[test]
    fn digests_verify_in_constant_time_api() {
        let mk = MasterKey::generate();
        let d = mk.digester();
        let s = random_token();
        let stored = d.digest(s.expose());
        assert!(d.verify(s.expose(), DIGEST_KEY_VERSION, &stored));
        assert!(!d.verify("other", DIGEST_KEY_VERSION, &stored));
        assert!(!d.verify(s.expose(), DIGEST_KEY_VERSION + 1, &stored));
        assert!(
            !MasterKey::generate()
                .digester()
                .verify(s.expose(), DIGEST_KEY_VERSION, &stored)
        );
    }

    #[test]
    fn master_key_parsing() {
        let mk = MasterKey::generate();
        let again = MasterKey::from_base64(mk.to_base64().expose()).unwrap();
        assert_eq!(mk.check_value(), again.check_value());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("!!!").is_err());
    }
}
