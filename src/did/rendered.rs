//! Our own DID documents, pre-rendered: the serialized document and the serialized DIF resolution
//! result are kept with the objects they were rendered from, so a request for an unchanged
//! document costs the directory and key-cache lookups it needs anyway and then copies no bytes.
//!
//! Invalidation is by identity, not by message: a rendering remembers (weakly) the organization
//! record, the key set, the agent and the fetched `jwks_uri` copy it was made from, and the
//! instant the next key changes state. Every change to any of them (a rotation, a revoked key,
//! a renamed or deleted organization, an updated or suspended agent, a refreshed `jwks_uri`)
//! replaces that object in its cache, so the next request sees a different object and renders
//! again; a key that becomes active or leaves the JWKS with time ends the rendering's validity.
//! `Weak` keeps the old allocation's address from being reused while the rendering lives, so two
//! different objects can never compare equal.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde_json::{Value, json};

use super::document::DocMeta;
use crate::keys::OrgKeys;
use crate::model::rfc3339;
use crate::remote::RemoteEntry;
use crate::storage::OrgRecord;
use crate::tenancy::Agent;

/// The media type of the resolution result's `contentType` (DID Resolution §7.1.2).
pub const DID_LD_JSON: &str = "application/did+ld+json";

/// A rendered own DID document.
pub struct RenderedDoc {
    deps: Deps,
    /// Valid while `from <= now < until` (the key set's next state change).
    from: i64,
    until: i64,
    /// The DID document itself (`application/did+json`).
    pub document: Bytes,
    /// The DIF Universal Resolver resolution result wrapping it.
    pub resolution: Bytes,
    pub meta: Option<DocMeta>,
}

impl RenderedDoc {
    pub fn deactivated(&self) -> bool {
        self.meta.is_some_and(|m| m.deactivated)
    }

    /// Estimated bytes held (the cache's weigher).
    pub fn weight(&self) -> u32 {
        let n = self.document.len() + self.resolution.len() + 160;
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub(crate) fn is_current(&self, deps: &Deps, now: i64) -> bool {
        now >= self.from && now < self.until && self.deps.same_as(deps)
    }
}

/// Weak references to what a rendering was made from.
#[derive(Default)]
pub(crate) struct Deps {
    org: Option<Weak<OrgRecord>>,
    keys: Option<Weak<OrgKeys>>,
    agent: Option<Weak<Agent>>,
    remote: Option<Weak<RemoteEntry>>,
}

fn same<T>(a: &Option<Weak<T>>, b: &Option<Weak<T>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Weak::ptr_eq(a, b),
        _ => false,
    }
}

impl Deps {
    pub(crate) fn new(
        org: Option<&Arc<OrgRecord>>,
        keys: Option<&Arc<OrgKeys>>,
        agent: Option<&Arc<Agent>>,
        remote: Option<&Arc<RemoteEntry>>,
    ) -> Self {
        Deps {
            org: org.map(Arc::downgrade),
            keys: keys.map(Arc::downgrade),
            agent: agent.map(Arc::downgrade),
            remote: remote.map(Arc::downgrade),
        }
    }

    fn same_as(&self, other: &Deps) -> bool {
        same(&self.org, &other.org)
            && same(&self.keys, &other.keys)
            && same(&self.agent, &other.agent)
            && same(&self.remote, &other.remote)
    }
}

/// `didDocumentMetadata` (DID Core §7.1.3): created, updated, and deactivated when it is.
pub fn metadata_json(meta: Option<DocMeta>) -> Value {
    match meta {
        None => json!({}),
        Some(m) => {
            let mut v = json!({"created": rfc3339(m.created), "updated": rfc3339(m.updated)});
            if m.deactivated {
                v["deactivated"] = json!(true);
            }
            v
        }
    }
}

/// The DIF Universal Resolver resolution result: the document (or none) with its resolution and
/// document metadata; `error` is the DID Resolution error code of a failure.
pub fn resolution_result(
    document: Option<&Value>,
    meta: Option<DocMeta>,
    error: Option<&str>,
) -> Value {
    let mut resolution_meta = json!({});
    match error {
        Some(code) => resolution_meta["error"] = json!(code),
        None => resolution_meta["contentType"] = json!(DID_LD_JSON),
    }
    json!({
        "@context": "https://w3id.org/did-resolution/v1",
        "didDocument": document,
        "didResolutionMetadata": resolution_meta,
        "didDocumentMetadata": metadata_json(meta),
    })
}

/// Renders `document` once into both forms.
pub(crate) fn render(
    deps: Deps,
    document: &Value,
    meta: Option<DocMeta>,
    from: i64,
    until: i64,
) -> RenderedDoc {
    RenderedDoc {
        deps,
        from,
        until,
        document: Bytes::from(serde_json::to_vec(document).unwrap_or_default()),
        resolution: Bytes::from(
            serde_json::to_vec(&resolution_result(Some(document), meta, None)).unwrap_or_default(),
        ),
        meta,
    }
}
