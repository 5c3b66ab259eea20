//! The assembled domain: storage, caches, keys and settings that every use case needs.
//! Built once by `app`, shared by every request; nothing here knows about HTTP.

use std::sync::Arc;

use url::Url;

use crate::ephemeral::DynReplay;
use crate::fetch::Fetcher;
use crate::keys::{KeyService, SecretDigester};
use crate::model::Clock;
use crate::remote::RemoteJson;
use crate::storage::Stores;
use crate::tenancy::Directory;

pub struct Idp {
    pub stores: Stores,
    pub directory: Directory,
    pub keys: KeyService,
    pub digester: SecretDigester,
    pub replay: DynReplay,
    pub fetcher: Fetcher,
    pub agent_jwks: RemoteJson,
    /// Partners' JWK Sets.
    pub partner_jwks: RemoteJson,
    /// Foreign did:web documents.
    pub did_docs: RemoteJson,
    /// Signed agent cards by (org id, agent id, signing kid).
    pub cards: moka::future::Cache<(String, String, String), bytes::Bytes>,
    pub clock: Arc<dyn Clock>,
    /// The public base URL, without a trailing slash.
    pub public_url: Url,
    /// The instance's did:web, derived from the public URL.
    pub instance_did: String,
    pub access_token_ttl: i64,
}

impl Idp {
    /// `https://host[/path]` without a trailing `/`.
    pub fn base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }

    pub fn issuer_for(&self, slug: &str) -> String {
        format!("{}/orgs/{slug}", self.base())
    }
}

/// Normalizes a public URL (no query, no fragment, no trailing slash).
pub fn parse_public_url(s: &str) -> Result<Url, String> {
    let mut u = Url::parse(s).map_err(|e| format!("AGENTIDP_PUBLIC_URL {s:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!(
            "AGENTIDP_PUBLIC_URL {s:?} must be an http(s) URL with a host"
        ));
    }
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return Err(format!(
            "AGENTIDP_PUBLIC_URL {s:?} must not carry credentials, a query or a fragment"
        ));
    }
    let path = u.path().trim_end_matches('/').to_owned();
    u.set_path(&path);
    Ok(u)
}
