//! JWS signing (RFC 7515 §5.1): the one place a protected header and a payload become a
//! signing input and a signature. Compact serialization for tokens and proofs; a detached
//! payload (RFC 7515 Appendix F) for agent cards, whose payload the verifier rebuilds.

use base64::prelude::*;
use serde::Serialize;

/// A private key that signs JWS signing inputs. Implemented by `keys::LoadedKey`, so this
/// module needs no knowledge of key storage.
pub trait JwsSigner {
    /// The JWS `alg` (RFC 7518 §3.1) the signatures are made with.
    fn alg(&self) -> &str;
    /// The key's `kid`, written into the header unless [`Header::kid`] names another.
    fn kid(&self) -> &str;
    /// The JWS signature over `signing_input` (for ECDSA: fixed-width r || s, RFC 7518 §3.4).
    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the header or claims do not serialize")]
    Encode,
    #[error("the key did not sign")]
    Key,
}

/// The protected header members besides `alg` (always the signer's).
#[derive(Debug, Clone, Copy, Default)]
pub struct Header<'a> {
    /// `typ` (RFC 7515 §4.1.9), e.g. `at+jwt`.
    pub typ: Option<&'a str>,
    /// `kid` when it is not the signer's own (a DID URL for proofs).
    pub kid: Option<&'a str>,
    /// `jku` (RFC 7515 §4.1.2): where a verifier finds the key set.
    pub jku: Option<&'a str>,
}

impl<'a> Header<'a> {
    pub fn typ(typ: &'a str) -> Self {
        Header {
            typ: Some(typ),
            ..Header::default()
        }
    }
}

#[derive(Serialize)]
struct Protected<'a> {
    alg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    jku: Option<&'a str>,
}

/// `BASE64URL(header) || '.' || BASE64URL(payload)` (RFC 7515 §5.1 step 6) with room for the
/// signature, and the signature over it.
fn signed<S: JwsSigner + ?Sized>(
    signer: &S,
    header: &Header<'_>,
    payload: &[u8],
) -> Result<(String, Vec<u8>), SignError> {
    let protected = serde_json::to_vec(&Protected {
        alg: signer.alg(),
        typ: header.typ,
        kid: header.kid.unwrap_or_else(|| signer.kid()),
        jku: header.jku,
    })
    .map_err(|_| SignError::Encode)?;
    // Base64 grows by 4/3; an RSA-3072 signature is 384 bytes, 512 once encoded.
    let mut input = String::with_capacity((protected.len() + payload.len()) * 4 / 3 + 520);
    BASE64_URL_SAFE_NO_PAD.encode_string(&protected, &mut input);
    input.push('.');
    BASE64_URL_SAFE_NO_PAD.encode_string(payload, &mut input);
    let sig = signer.sign(input.as_bytes())?;
    Ok((input, sig))
}

/// Signs `claims` as a compact JWS (RFC 7515 §7.1).
pub fn sign<S: JwsSigner + ?Sized, T: Serialize + ?Sized>(
    signer: &S,
    header: &Header<'_>,
    claims: &T,
) -> Result<String, SignError> {
    let payload = serde_json::to_vec(claims).map_err(|_| SignError::Encode)?;
    let (mut out, sig) = signed(signer, header, &payload)?;
    out.push('.');
    BASE64_URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
    Ok(out)
}

/// A JWS with a detached payload (RFC 7515 Appendix F), in the JSON serialization's
/// member names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetachedJws {
    pub protected: String,
    pub signature: String,
}

/// Signs `payload` (bytes the verifier reconstructs, e.g. a JCS form) without carrying it.
pub fn sign_detached<S: JwsSigner + ?Sized>(
    signer: &S,
    header: &Header<'_>,
    payload: &[u8],
) -> Result<DetachedJws, SignError> {
    let (mut input, sig) = signed(signer, header, payload)?;
    let dot = input.find('.').unwrap_or(input.len());
    input.truncate(dot);
    Ok(DetachedJws {
        protected: input,
        signature: BASE64_URL_SAFE_NO_PAD.encode(sig),
    })
}
