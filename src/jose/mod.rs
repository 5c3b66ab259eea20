//! JOSE in one place: the algorithm allow-list, JWK parsing into verification keys, the one
//! JWS verifier (header rules, signature, registered claims against an injected `now`) and
//! the one JWS signer (compact, and detached for agent cards).
//!
//! Depends only on `model` and external crates, so `keys`, `tokens`, `oauth`, `federation`
//! and `did` all build on it. Callers keep their own error vocabularies: each maps
//! [`JoseError`] onto its codes (client authentication onto `invalid_client` messages,
//! federation onto `VerifyError`, our own tokens onto `AccessTokenError`).
//!
//! Specifications: RFC 7515 (JWS), RFC 7517 (JWK), RFC 7518 (algorithms), RFC 7519 (JWT
//! claims), RFC 8037 (EdDSA), RFC 8725 (JWT best current practice).

mod alg;
mod header;
mod jwk;
mod sign;
mod verify;

pub use alg::{ALG_NAMES, JwsAlg};
pub use header::{JoseHeader, MAX_JWS_LEN, parse_header, typ_is};
pub use jwk::{JwkError, KeySet, KeyType, PRIVATE_MEMBERS, VerifyingKey, is_private};
pub use sign::{DetachedJws, Header, JwsSigner, SignError, sign, sign_detached};
pub use verify::{Claim, Expectations, Jws, Origin, Typ, exp_seconds, parse, verify};

/// Clock-skew allowance, in seconds, for times stamped by another party's clock (`exp`, `nbf`,
/// `iat` of client assertions and partner assertions).
///
/// 30 s, not 60: it was 60 for client assertions and 30 for partner assertions. NTP-synced
/// hosts differ by milliseconds, so 30 s covers any sane deployment; every extra second is a
/// second an expired or stolen assertion still passes, and federation (where the
/// stricter value was chosen) is the path "verified as strictly as a bank would" in this
/// code base. RFC 7519 §4.1.4 allows "some small leeway, usually no more than a few minutes".
pub const LEEWAY: i64 = 30;

/// Why a JWS was refused. Callers map these onto their protocol's codes and messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Not a compact JWS, longer than [`MAX_JWS_LEN`], or a header that is not a JSON object
    /// with a string `alg`.
    #[error("not a compact JWS")]
    Malformed,
    /// `crit` is present (RFC 7515 §4.1.11: we understand no extension).
    #[error("the crit header names extensions this server does not understand")]
    Crit,
    /// `typ` breaks the caller's rule ([`Typ`]).
    #[error("the typ header is not acceptable here")]
    WrongType,
    /// `alg` is not in the asymmetric allow-list (`none`, HMAC, unknown).
    #[error("alg must be one of {}", ALG_NAMES.join(", "))]
    UnsupportedAlg,
    /// The payload is not base64url JSON, or its claims do not have the caller's shape.
    #[error("the claims are malformed")]
    MalformedClaims,
    /// No key of the set fits the header's `kid` and `alg` ([`VerifyingKey::fits`]).
    #[error("no key matches the kid and alg")]
    UnknownKey,
    /// Keys fit, none verifies the signature.
    #[error("the signature does not verify")]
    BadSignature,
    /// A claim the caller requires is absent.
    #[error("the claim {0} is missing")]
    MissingClaim(&'static str),
    /// A registered claim has the wrong type (a NumericDate that is not an integer, an `aud`
    /// that is neither a string nor an array of strings).
    #[error("the claim {0} is malformed")]
    BadClaim(&'static str),
    /// `exp` has passed (RFC 7519 §4.1.4).
    #[error("expired")]
    Expired,
    /// `nbf` is ahead (RFC 7519 §4.1.5).
    #[error("not yet valid")]
    NotYetValid,
    /// `iat` is ahead.
    #[error("iat is in the future")]
    IatInFuture,
    /// `aud` names none of the expected audiences (RFC 7519 §4.1.3).
    #[error("aud does not name this recipient")]
    InvalidAudience,
    /// `exp` is further ahead than the caller's maximum lifetime allows.
    #[error("the token lives longer than allowed")]
    LifetimeTooLong,
}

#[cfg(test)]
mod tests;
