//! Federation: an organization registers partner issuers (another agentidp organization, or any
//! OIDC issuer) and accepts their signed assertions, verified as strictly as a bank would, and
//! exchanges them for local tokens (RFC 7523 §2.1, RFC 8693).

pub mod partners;
pub mod verify;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::jose::KeySet;
use crate::storage::{PartnerRecord, StorageError};

/// Default maximum assertion lifetime: above our default access-token lifetime, so two agentidp
/// instances federate out of the box.
pub const DEFAULT_MAX_ASSERTION_LIFETIME: i64 = 3600;

/// A partner with its stored fields parsed.
#[derive(Debug, Clone)]
pub struct Partner {
    pub record: PartnerRecord,
    pub allowed_scopes: Vec<String>,
    pub allowed_audiences: Vec<String>,
    pub claim_mapping: BTreeMap<String, String>,
    pub jwks: Option<Value>,
    /// The inline `jwks`, parsed once when the partner is loaded (empty without one).
    pub key_set: KeySet,
    pub enabled: bool,
}

impl Partner {
    pub fn from_record(record: PartnerRecord) -> Result<Self, StorageError> {
        let bad = |what: &str| StorageError::Other(format!("partner {}: bad {what}", record.id));
        let jwks: Option<Value> = match &record.jwks {
            Some(j) => Some(serde_json::from_str(j).map_err(|_| bad("jwks"))?),
            None => None,
        };
        Ok(Partner {
            allowed_scopes: serde_json::from_str(&record.allowed_scopes)
                .map_err(|_| bad("allowed_scopes"))?,
            allowed_audiences: serde_json::from_str(&record.allowed_audiences)
                .map_err(|_| bad("allowed_audiences"))?,
            claim_mapping: serde_json::from_str(&record.claim_mapping)
                .map_err(|_| bad("claim_mapping"))?,
            key_set: jwks.as_ref().map(KeySet::from_jwks).unwrap_or_default(),
            jwks,
            enabled: record.enabled != 0,
            record,
        })
    }
}

/// The did:web an issuer URL corresponds to (`https://h:p/orgs/x` -> `did:web:h%3Ap:orgs:x`).
pub fn issuer_did(issuer: &str) -> Option<String> {
    let u = url::Url::parse(issuer).ok()?;
    Some(crate::did::instance_did(&u))
}
