//! Federation: an organization registers partner issuers (another agentidp organization, or any
//! OIDC issuer) and accepts their signed assertions, verified as strictly as a bank would, and
//! exchanges them for local tokens (RFC 7523 §2.1, RFC 8693).

pub mod partners;
pub mod verify;

use crate::jose::KeySet;
use crate::storage::PartnerRecord;

/// Default maximum assertion lifetime: above our default access-token lifetime, so two agentidp
/// instances federate out of the box.
pub const DEFAULT_MAX_ASSERTION_LIFETIME: i64 = 3600;

/// A partner as the domain uses it: its stored record (with typed fields, read through `Deref`).
#[derive(Debug, Clone)]
pub struct Partner {
    pub record: PartnerRecord,
    /// The inline `jwks`, parsed once when the partner is loaded (empty without one).
    pub key_set: KeySet,
}

impl Partner {
    pub fn from_record(record: PartnerRecord) -> Self {
        let key_set = record
            .jwks
            .as_ref()
            .map(KeySet::from_jwks)
            .unwrap_or_default();
        Partner { record, key_set }
    }
}

impl std::ops::Deref for Partner {
    type Target = PartnerRecord;
    fn deref(&self) -> &PartnerRecord {
        &self.record
    }
}

/// The did:web an issuer URL corresponds to (`https://h:p/orgs/x` -> `did:web:h%3Ap:orgs:x`).
pub fn issuer_did(issuer: &str) -> Option<String> {
    let u = url::Url::parse(issuer).ok()?;
    Some(crate::did::instance_did(&u))
}
