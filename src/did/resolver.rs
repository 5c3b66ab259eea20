//! DID resolution (W3C DID Core §7.1; DIF Universal Resolver HTTP binding at the edge).
//!
//! Our own DIDs are answered from storage and never leave the process; `did:key` and `did:jwk`
//! are decoded locally; a foreign `did:web` is fetched through the hardened fetcher (SSRF guard,
//! time and size limits) and cached honouring `Cache-Control`; any other method is
//! `methodNotSupported`.

use base64::prelude::*;
use serde_json::{Value, json};

use super::document::{self, DocMeta, deactivated_document};
use super::rendered::{self, Deps, RenderedDoc};
use super::{OwnDid, own_did, parse_did};
use std::sync::Arc;

use crate::fetch::FetchError;
use crate::keys::KeyService;
use crate::remote::RemoteJson;
use crate::tenancy::AgentStatus;
use crate::tenancy::Directory;

/// DID resolution errors (DID Resolution §7.1.2 / DID Spec Registries codes), each with the HTTP
/// status of the DIF Universal Resolver binding.
///
/// A foreign did:web that cannot be resolved is never a 500 (nothing failed here; the cause goes
/// to the log, not to the caller):
/// - the host answers 404 or 410, or the DID points where this resolver may not go (a private or
///   loopback address, plain HTTP: the SSRF guard): `notFound`, 404. The resolver "was unable to
///   find the DID document"; a distinct answer for refused targets would make it an oracle of
///   the internal network.
/// - the host cannot be reached, times out or answers another error status: `notFound` with 502
///   Bad Gateway, or 504 Gateway Timeout (RFC 9110 §15.6.3, §15.6.5). The code is the registered
///   one for "unable to find the document"; the 5xx gateway status says the failure is upstream
///   and worth retrying, which 404 would deny.
/// - the host answers with something that is no DID document for this DID (not JSON, too large
///   or too complex, another `id`): `invalidDidDocument` (DID Spec Registries), 502.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("invalidDid")]
    InvalidDid,
    #[error("notFound")]
    NotFound,
    #[error("methodNotSupported")]
    MethodNotSupported,
    /// Resolving a foreign DID is refused for now (the client's or the instance's fetch budget).
    #[error("rateLimited")]
    RateLimited,
    /// The foreign host could not be reached or failed (`timeout`: it did not answer in time).
    #[error("notFound: {cause}")]
    Unreachable { timeout: bool, cause: String },
    /// The foreign host answered with no usable DID document.
    #[error("invalidDidDocument: {0}")]
    InvalidDocument(String),
    #[error("internalError: {0}")]
    Internal(String),
}

impl ResolveError {
    pub fn code(&self) -> &'static str {
        match self {
            ResolveError::InvalidDid => "invalidDid",
            ResolveError::NotFound | ResolveError::Unreachable { .. } => "notFound",
            ResolveError::MethodNotSupported => "methodNotSupported",
            ResolveError::RateLimited => "rateLimited",
            ResolveError::InvalidDocument(_) => "invalidDidDocument",
            ResolveError::Internal(_) => "internalError",
        }
    }

    /// A failed fetch of a foreign did:web document, as a resolution error (see the type).
    pub fn from_fetch(e: FetchError) -> Self {
        match e {
            FetchError::Status(404 | 410) | FetchError::Forbidden(_) => ResolveError::NotFound,
            FetchError::Timeout => ResolveError::Unreachable {
                timeout: true,
                cause: e.to_string(),
            },
            FetchError::Transport(_) | FetchError::Status(_) => ResolveError::Unreachable {
                timeout: false,
                cause: e.to_string(),
            },
            FetchError::TooLarge(_) | FetchError::NotJson | FetchError::TooComplex => {
                ResolveError::InvalidDocument(e.to_string())
            }
        }
    }
}

/// The instance-wide budget of foreign did:web fetches (on top of the per-client limit at the
/// edge): at most this many per second, in bursts of [`FOREIGN_FETCH_BURST`], whoever asks.
pub const FOREIGN_FETCHES_PER_SEC: u32 = 20;
pub const FOREIGN_FETCH_BURST: u32 = 40;

/// A fresh instance-wide budget of foreign fetches.
pub fn foreign_fetch_budget() -> governor::DefaultDirectRateLimiter {
    let n = |v: u32| std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN);
    governor::RateLimiter::direct(
        governor::Quota::per_second(n(FOREIGN_FETCHES_PER_SEC)).allow_burst(n(FOREIGN_FETCH_BURST)),
    )
}

/// A resolved document with its metadata (`None` where the method has none, e.g. did:key).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub document: Value,
    pub meta: Option<DocMeta>,
}

/// DID resolution over what it needs: the directory and keys (our own DIDs are answered from
/// them, never fetched), the cached agents' key sets and foreign did:web documents, and the
/// instance's DID and base URL.
pub struct Resolver {
    pub directory: Arc<Directory>,
    pub keys: Arc<KeyService>,
    pub agent_jwks: Arc<RemoteJson>,
    pub did_docs: Arc<RemoteJson>,
    pub instance_did: String,
    /// The public base URL, without a trailing slash.
    pub base: String,
    /// The instance-wide budget of foreign fetches ([`foreign_fetch_budget`]).
    pub foreign_budget: governor::DefaultDirectRateLimiter,
    /// Pre-rendered organization and agent documents ([`super::rendered`]), by the UUID of the
    /// organization or agent, bounded by bytes ([`RENDERED_BUDGET`]).
    pub rendered: moka::future::Cache<DocKey, Arc<RenderedDoc>>,
    /// The instance document: it changes only with the public URL (a restart).
    pub instance_rendered: std::sync::OnceLock<Arc<RenderedDoc>>,
}

/// Bytes of pre-rendered documents kept (about 3 KB per organization or agent document).
pub const RENDERED_BUDGET: u64 = 16 * 1024 * 1024;

/// Which rendered document: an organization's or an agent's, by its UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKey {
    Org(u128),
    Agent(u128),
}

/// The rendered-document cache of a [`Resolver`].
pub fn rendered_cache() -> moka::future::Cache<DocKey, Arc<RenderedDoc>> {
    moka::future::Cache::builder()
        .max_capacity(RENDERED_BUDGET)
        .weigher(|_: &DocKey, d: &Arc<RenderedDoc>| d.weight())
        .build()
}

/// The metadata of a deactivated agent DID: updated when it was revoked (its last change) or
/// when it expired, whichever is later.
fn deactivated_meta(agent: &crate::tenancy::Agent) -> DocMeta {
    let r = &agent.record;
    let updated = match (agent.status, r.expires_at) {
        (AgentStatus::Revoked, _) | (_, None) => r.updated_at,
        (_, Some(exp)) => r.updated_at.max(exp),
    };
    DocMeta {
        created: r.created_at,
        updated,
        deactivated: true,
    }
}

fn uuid_key(id: &str) -> Option<u128> {
    uuid::Uuid::try_parse(id).ok().map(|u| u.as_u128())
}

impl Resolver {
    async fn own_org(&self, slug: &str) -> Result<Arc<crate::storage::OrgRecord>, ResolveError> {
        self.directory
            .org(slug)
            .await
            .map_err(|e| ResolveError::Internal(e.to_string()))?
            .ok_or(ResolveError::NotFound)
    }

    async fn own_agent(
        &self,
        org: &crate::storage::OrgRecord,
        agent_id: &str,
    ) -> Result<Arc<crate::tenancy::Agent>, ResolveError> {
        // An app (a people-facing client) has no DID.
        self.directory
            .agent(&org.id, agent_id)
            .await
            .map_err(|e| ResolveError::Internal(e.to_string()))?
            .filter(|a| a.kind == crate::model::ClientKind::Agent)
            .ok_or(ResolveError::NotFound)
    }

    async fn own_keys(
        &self,
        org: &crate::storage::OrgRecord,
        now: i64,
    ) -> Result<Arc<crate::keys::OrgKeys>, ResolveError> {
        self.keys
            .org_keys(org, now)
            .await
            .map_err(|e| ResolveError::Internal(e.to_string()))
    }

    /// The cached rendering under `key`, if it was made from `deps` and is valid at `now`.
    async fn current_rendering(
        &self,
        key: Option<DocKey>,
        deps: &Deps,
        now: i64,
    ) -> Option<Arc<RenderedDoc>> {
        let hit = self.rendered.get(&key?).await?;
        hit.is_current(deps, now).then_some(hit)
    }

    /// Our own DID documents, pre-rendered ([`super::rendered`]): rendered again only when the
    /// organization, its keys, the agent or its fetched key set changed, or a key changed state.
    pub async fn render_own(
        &self,
        which: OwnDid,
        now: i64,
    ) -> Result<Arc<RenderedDoc>, ResolveError> {
        let (key, deps) = match &which {
            OwnDid::Instance => {
                let doc = self.instance_rendered.get_or_init(|| {
                    let d = document::instance_document(&self.instance_did, &self.base);
                    Arc::new(rendered::render(
                        Deps::default(),
                        &d,
                        None,
                        i64::MIN,
                        i64::MAX,
                    ))
                });
                return Ok(doc.clone());
            }
            OwnDid::Org { slug } => {
                let org = self.own_org(slug).await?;
                let keys = self.own_keys(&org, now).await?;
                let key = uuid_key(&org.id).map(DocKey::Org);
                let deps = Deps::new(Some(&org), Some(&keys), None, None);
                if let Some(hit) = self.current_rendering(key, &deps, now).await {
                    return Ok(hit);
                }
                let (doc, meta) = document::org_document(&org, &self.instance_did, &keys, now);
                let r = rendered::render(deps, &doc, Some(meta), now, keys.next_transition(now));
                (key, r)
            }
            OwnDid::Agent { slug, agent_id } => {
                let org = self.own_org(slug).await?;
                let agent = self.own_agent(&org, agent_id).await?;
                let key = uuid_key(agent.id()).map(DocKey::Agent);
                if agent.is_deactivated(now) {
                    let deps = Deps::new(Some(&org), None, Some(&agent), None);
                    if let Some(hit) = self.current_rendering(key, &deps, now).await {
                        return Ok(hit);
                    }
                    let meta = deactivated_meta(&agent);
                    let doc = deactivated_document(&agent.record.did);
                    // An expired agent's rendering is valid from its expiry on (a revoked one's
                    // always): a changed expiry is another agent object, rendered again.
                    let from = match agent.status {
                        AgentStatus::Revoked => i64::MIN,
                        _ => agent.record.expires_at.unwrap_or(i64::MIN),
                    };
                    (
                        key,
                        rendered::render(deps, &doc, Some(meta), from, i64::MAX),
                    )
                } else {
                    let keys = self.own_keys(&org, now).await?;
                    // A jwks_uri agent's keys come from the last fetched copy: resolving our own
                    // DIDs never makes an outbound request.
                    let remote = match &agent.record.jwks_uri {
                        Some(uri) => self.agent_jwks.cached(uri).await,
                        None => None,
                    };
                    let deps = Deps::new(Some(&org), Some(&keys), Some(&agent), remote.as_ref());
                    if let Some(hit) = self.current_rendering(key, &deps, now).await {
                        return Ok(hit);
                    }
                    let jwks = agent.jwks.as_ref().or(remote.as_ref().map(|e| &e.doc));
                    let (doc, meta) = document::agent_document(&org, &keys, &agent, jwks, now);
                    // Never past the agent's expiry: then its DID is deactivated.
                    let until = keys
                        .next_transition(now)
                        .min(agent.record.expires_at.unwrap_or(i64::MAX));
                    (key, rendered::render(deps, &doc, Some(meta), now, until))
                }
            }
        };
        let deps = Arc::new(deps);
        if let Some(k) = key {
            self.rendered.insert(k, deps.clone()).await;
        }
        Ok(deps)
    }

    /// Our own DID documents: the instance's, an organization's, an agent's.
    pub async fn resolve_own(&self, which: OwnDid, now: i64) -> Result<Resolved, ResolveError> {
        match which {
            OwnDid::Instance => Ok(Resolved {
                document: document::instance_document(&self.instance_did, &self.base),
                meta: None,
            }),
            OwnDid::Org { slug } => {
                let org = self.own_org(&slug).await?;
                let keys = self.own_keys(&org, now).await?;
                let (doc, meta) = document::org_document(&org, &self.instance_did, &keys, now);
                Ok(Resolved {
                    document: doc,
                    meta: Some(meta),
                })
            }
            OwnDid::Agent { slug, agent_id } => {
                let org = self.own_org(&slug).await?;
                let agent = self.own_agent(&org, &agent_id).await?;
                if agent.is_deactivated(now) {
                    return Ok(Resolved {
                        document: deactivated_document(&agent.record.did),
                        meta: Some(deactivated_meta(&agent)),
                    });
                }
                let keys = self.own_keys(&org, now).await?;
                // A jwks_uri agent's keys come from the last fetched copy: resolving our own DIDs
                // never makes an outbound request.
                let remote = match &agent.record.jwks_uri {
                    Some(uri) => self.agent_jwks.cached(uri).await.map(|e| e.doc.clone()),
                    None => None,
                };
                let jwks = agent.jwks.as_ref().or(remote.as_ref());
                let (doc, meta) = document::agent_document(&org, &keys, &agent, jwks, now);
                Ok(Resolved {
                    document: doc,
                    meta: Some(meta),
                })
            }
        }
    }

    /// Resolves any DID for anyone who asks (the public resolver endpoint): a foreign did:web
    /// fetch needs the client's budget (`may_fetch`) and then the instance's, so one client's
    /// refused requests do not spend what others may use. (Partner verification calls
    /// [`Resolver::resolve`] and is not held back by strangers' requests.)
    pub async fn resolve_public(
        &self,
        did: &str,
        now: i64,
        may_fetch: impl FnOnce() -> bool,
    ) -> Result<Resolved, ResolveError> {
        self.resolve(did, now, || {
            may_fetch() && self.foreign_budget.check().is_ok()
        })
        .await
    }

    /// Resolves any DID. `may_fetch` is asked before a foreign did:web is fetched (rate limiting).
    pub async fn resolve(
        &self,
        did: &str,
        now: i64,
        may_fetch: impl FnOnce() -> bool,
    ) -> Result<Resolved, ResolveError> {
        let parsed = parse_did(did).ok_or(ResolveError::InvalidDid)?;
        if let Some(which) = own_did(&self.instance_did, did) {
            return self.resolve_own(which, now).await;
        }
        // Any other DID below our own is one we do not serve: never fetch ourselves for it.
        if did
            .strip_prefix(self.instance_did.as_str())
            .is_some_and(|rest| rest.starts_with(':'))
        {
            return Err(ResolveError::NotFound);
        }
        match parsed.method {
            "key" => did_key(did, parsed.msid).map(|d| Resolved {
                document: d,
                meta: None,
            }),
            "jwk" => did_jwk(did, parsed.msid).map(|d| Resolved {
                document: d,
                meta: None,
            }),
            "web" => {
                let url = super::did_web_url(parsed.msid).ok_or(ResolveError::InvalidDid)?;
                if self.did_docs.cached(&url).await.is_none() && !may_fetch() {
                    return Err(ResolveError::RateLimited);
                }
                let entry = self
                    .did_docs
                    .get(&url)
                    .await
                    .map_err(ResolveError::from_fetch)?;
                if entry.doc.get("id").and_then(Value::as_str) != Some(did) {
                    return Err(ResolveError::InvalidDocument(
                        "the document's id is not the DID asked for".into(),
                    ));
                }
                Ok(Resolved {
                    document: entry.doc.clone(),
                    meta: None,
                })
            }
            _ => Err(ResolveError::MethodNotSupported),
        }
    }
}

/// Multicodec prefixes (varint-encoded) of the public-key types did:key uses.
const MULTICODECS: [(&[u8], usize, bool); 5] = [
    (&[0xed, 0x01], 32, true),  // ed25519-pub
    (&[0x80, 0x24], 33, true),  // p256-pub (compressed)
    (&[0x81, 0x24], 49, true),  // p384-pub (compressed)
    (&[0xe7, 0x01], 33, true),  // secp256k1-pub (compressed)
    (&[0xec, 0x01], 32, false), // x25519-pub (key agreement only)
];

/// did:key (W3C CCG did:key §3.1.2): one Multikey verification method, `{did}#{msid}`.
fn did_key(did: &str, msid: &str) -> Result<Value, ResolveError> {
    let b58 = msid.strip_prefix('z').ok_or(ResolveError::InvalidDid)?;
    let raw = bs58::decode(b58)
        .into_vec()
        .map_err(|_| ResolveError::InvalidDid)?;
    let (_, _, signing) = MULTICODECS
        .iter()
        .find(|(prefix, len, _)| raw.starts_with(prefix) && raw.len() == prefix.len() + len)
        .ok_or(ResolveError::InvalidDid)?;
    let vm_id = format!("{did}#{msid}");
    let vm =
        json!({"id": vm_id, "type": "Multikey", "controller": did, "publicKeyMultibase": msid});
    let mut doc = json!({
        "@context": [document::CONTEXT_DID, document::CONTEXT_MULTIKEY],
        "id": did,
        "verificationMethod": [vm],
    });
    let rels: &[&str] = if *signing {
        &[
            "authentication",
            "assertionMethod",
            "capabilityInvocation",
            "capabilityDelegation",
        ]
    } else {
        &["keyAgreement"]
    };
    for r in rels {
        doc[*r] = json!([vm_id]);
    }
    Ok(doc)
}

/// did:jwk (did:jwk spec §2.2): the base64url-encoded public JWK, method `{did}#0`.
fn did_jwk(did: &str, msid: &str) -> Result<Value, ResolveError> {
    let raw = BASE64_URL_SAFE_NO_PAD
        .decode(msid)
        .map_err(|_| ResolveError::InvalidDid)?;
    let jwk: Value = serde_json::from_slice(&raw).map_err(|_| ResolveError::InvalidDid)?;
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(ResolveError::InvalidDid)?;
    if !matches!(kty, "EC" | "RSA" | "OKP") || crate::jose::is_private(&jwk) {
        return Err(ResolveError::InvalidDid);
    }
    let vm_id = format!("{did}#0");
    let mut doc = json!({
        "@context": [document::CONTEXT_DID, document::CONTEXT_JWS_2020],
        "id": did,
        "verificationMethod": [{"id": vm_id, "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": jwk}],
    });
    let use_ = jwk.get("use").and_then(Value::as_str);
    if use_ != Some("enc") {
        for r in [
            "authentication",
            "assertionMethod",
            "capabilityInvocation",
            "capabilityDelegation",
        ] {
            doc[r] = json!([vm_id]);
        }
    }
    if use_ != Some("sig") {
        doc["keyAgreement"] = json!([vm_id]);
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_key_ed25519_vector() {
        // From the did:key specification's Ed25519 example.
        let did = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
        let doc = did_key(did, &did[8..]).unwrap();
        assert_eq!(
            doc["verificationMethod"][0]["id"],
            format!("{did}#z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK")
        );
        assert_eq!(
            doc["assertionMethod"][0],
            doc["verificationMethod"][0]["id"]
        );
        assert!(did_key("did:key:z123", "z123").is_err());
        assert!(did_key("did:key:abc", "abc").is_err());
    }

    #[test]
    fn did_jwk_vector() {
        // did:jwk specification example (P-256).
        let did = "did:jwk:eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6ImFjYklRaXVNczNpOF91c3pFakoydHBUdFJNNEVVM3l6OTFQSDZDZEgyVjAiLCJ5IjoiX0tjeUxqOXZXTXB0bm1LdG00NkdxRHo4d2Y3NEk1TEtncmwyR3pIM25TRSJ9";
        let doc = did_jwk(did, &did[8..]).unwrap();
        assert_eq!(doc["verificationMethod"][0]["publicKeyJwk"]["crv"], "P-256");
        assert_eq!(doc["verificationMethod"][0]["id"], format!("{did}#0"));
        let private =
            BASE64_URL_SAFE_NO_PAD.encode(r#"{"kty":"OKP","crv":"Ed25519","x":"AA","d":"AA"}"#);
        assert_eq!(
            did_jwk("did:jwk:x", &private).unwrap_err(),
            ResolveError::InvalidDid
        );
        assert_eq!(
            did_jwk("did:jwk:x", "!!").unwrap_err(),
            ResolveError::InvalidDid
        );
    }
}
