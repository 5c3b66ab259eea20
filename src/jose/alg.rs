//! The JWS algorithm allow-list: asymmetric algorithms only (RFC 8725 §3.1, §3.2), so `none`
//! and HMAC keyed with a public key can never verify.

use super::jwk::KeyType;
use crate::model::Alg;

/// A JWS `alg` we verify (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The allow-list by name, as published in discovery
/// (`token_endpoint_auth_signing_alg_values_supported`).
pub const ALG_NAMES: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl JwsAlg {
    pub const ALL: [JwsAlg; 9] = [
        JwsAlg::RS256,
        JwsAlg::RS384,
        JwsAlg::RS512,
        JwsAlg::PS256,
        JwsAlg::PS384,
        JwsAlg::PS512,
        JwsAlg::ES256,
        JwsAlg::ES384,
        JwsAlg::EdDSA,
    ];

    /// The allow-listed alg of this name; `None` for `none`, HMAC and anything unknown.
    /// Names are case-sensitive (RFC 7515 §4.1.1).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::RS256 => "RS256",
            JwsAlg::RS384 => "RS384",
            JwsAlg::RS512 => "RS512",
            JwsAlg::PS256 => "PS256",
            JwsAlg::PS384 => "PS384",
            JwsAlg::PS512 => "PS512",
            JwsAlg::ES256 => "ES256",
            JwsAlg::ES384 => "ES384",
            JwsAlg::EdDSA => "EdDSA",
        }
    }

    pub(super) fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            JwsAlg::RS256 => A::RS256,
            JwsAlg::RS384 => A::RS384,
            JwsAlg::RS512 => A::RS512,
            JwsAlg::PS256 => A::PS256,
            JwsAlg::PS384 => A::PS384,
            JwsAlg::PS512 => A::PS512,
            JwsAlg::ES256 => A::ES256,
            JwsAlg::ES384 => A::ES384,
            JwsAlg::EdDSA => A::EdDSA,
        }
    }

    /// The key type this alg verifies with (RFC 7518 §3.3, §3.4, §3.5; RFC 8037 §3.1).
    pub fn key_type(self) -> KeyType {
        match self {
            JwsAlg::ES256 => KeyType::P256,
            JwsAlg::ES384 => KeyType::P384,
            JwsAlg::EdDSA => KeyType::Ed25519,
            _ => KeyType::Rsa,
        }
    }
}

impl From<Alg> for JwsAlg {
    fn from(a: Alg) -> Self {
        match a {
            Alg::ES256 => JwsAlg::ES256,
            Alg::RS256 => JwsAlg::RS256,
            Alg::EdDSA => JwsAlg::EdDSA,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_parse_agree() {
        assert_eq!(JwsAlg::ALL.map(JwsAlg::as_str), ALG_NAMES);
        for a in JwsAlg::ALL {
            assert_eq!(JwsAlg::parse(a.as_str()), Some(a));
        }
        for refused in [
            "none", "None", "HS256", "HS384", "HS512", "es256", "ES512", "",
        ] {
            assert_eq!(JwsAlg::parse(refused), None, "{refused}");
        }
        for a in Alg::ALL {
            assert_eq!(JwsAlg::from(a).as_str(), a.as_str());
        }
    }
}
