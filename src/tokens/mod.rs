//! JWT minting and validation shared by the OAuth and OIDC endpoints: RFC 9068 access tokens
//! and OIDC ID tokens, signed and verified through [`crate::jose`].

pub mod access_token;
pub mod id_token;

use serde::{Deserialize, Serialize};

use crate::keys::{LoadedKey, SigningError};

/// Signs `claims` as a compact JWS with `key`, header `{alg, typ, kid}`.
pub fn sign<T: Serialize>(key: &LoadedKey, typ: &str, claims: &T) -> Result<String, SigningError> {
    Ok(crate::jose::sign(
        key,
        &crate::jose::Header::typ(typ),
        claims,
    )?)
}

/// `aud` as a JSON string when single, an array when several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn from_vec(mut v: Vec<String>) -> Self {
        if v.len() == 1 {
            Audience::One(v.remove(0))
        } else {
            Audience::Many(v)
        }
    }
    pub fn contains(&self, s: &str) -> bool {
        match self {
            Audience::One(a) => a == s,
            Audience::Many(v) => v.iter().any(|a| a == s),
        }
    }
    pub fn iter(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Audience::One(a) => Box::new(std::iter::once(a.as_str())),
            Audience::Many(v) => Box::new(v.iter().map(String::as_str)),
        }
    }
}
