//! JSON documents published by others (agents' `jwks_uri`, foreign did:web documents; partner
//! metadata and keys, later), fetched through the hardened fetcher and cached honouring
//! `Cache-Control` within bounds.
//!
//! Fetches are single-flight and rate-limited per URI: every caller that needs a fetch within
//! [`REFRESH_INTERVAL`] shares the one attempt's outcome, so a flood of unknown `kid`s causes at
//! most one fetch per interval. When the endpoint fails, the last good copy keeps serving until
//! it is stale, then verification fails closed.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use moka::future::Cache;
use serde_json::Value;

use crate::fetch::{FetchError, Fetcher};
use crate::jose::KeySet;

pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
const MIN_FRESH: Duration = Duration::from_secs(60);
const MAX_FRESH: Duration = Duration::from_secs(3600);
const DEFAULT_FRESH: Duration = Duration::from_secs(300);
/// How long past freshness a copy may still be used while its endpoint fails.
const STALE_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct RemoteEntry {
    pub doc: Value,
    fresh_until: Instant,
    stale_until: Instant,
    /// The document's keys, parsed on first use and kept as long as the document.
    keys: OnceLock<KeySet>,
}

impl RemoteEntry {
    /// The document's verification keys, parsed by `parse` once per fetched copy (not per
    /// request). Each cache holds one kind of document, so its callers pass the same `parse`
    /// (a JWK Set's, or a DID document's).
    pub fn key_set(&self, parse: impl FnOnce(&Value) -> KeySet) -> KeySet {
        self.keys.get_or_init(|| parse(&self.doc)).clone()
    }
}

pub struct RemoteJson {
    fetcher: Fetcher,
    /// Media type asked for.
    accept: &'static str,
    /// Shape check: a fetched document failing it counts as a failed fetch.
    check: fn(&Value) -> bool,
    latest: Cache<String, Arc<RemoteEntry>>,
    attempts: Cache<String, Result<Arc<RemoteEntry>, FetchError>>,
}

/// A JWK Set: `{"keys": [...]}`.
pub fn is_jwks(v: &Value) -> bool {
    v.get("keys").is_some_and(Value::is_array)
}

impl RemoteJson {
    pub fn new(fetcher: Fetcher, accept: &'static str, check: fn(&Value) -> bool) -> Self {
        Self {
            fetcher,
            accept,
            check,
            latest: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(MAX_FRESH + STALE_GRACE)
                .build(),
            attempts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REFRESH_INTERVAL)
                .build(),
        }
    }

    /// The cached copy, fresh or stale, without fetching.
    pub async fn cached(&self, uri: &str) -> Option<Arc<RemoteEntry>> {
        self.latest
            .get(uri)
            .await
            .filter(|e| Instant::now() < e.stale_until)
    }

    /// The document at `uri`: cached while fresh, else fetched (once per interval).
    pub async fn get(&self, uri: &str) -> Result<Arc<RemoteEntry>, FetchError> {
        if let Some(e) = self.latest.get(uri).await
            && Instant::now() < e.fresh_until
        {
            return Ok(e);
        }
        self.refresh(uri).await
    }

    /// A fetch for a `kid` the cached set lacks; rate-limited like every fetch.
    pub async fn refresh(&self, uri: &str) -> Result<Arc<RemoteEntry>, FetchError> {
        let fetcher = self.fetcher.clone();
        let (accept, check) = (self.accept, self.check);
        let owned = uri.to_owned();
        let attempt = self
            .attempts
            .get_with(uri.to_owned(), async move {
                let fetched = fetcher.get(&owned, accept).await?;
                let doc: Value =
                    serde_json::from_slice(&fetched.body).map_err(|_| FetchError::NotJson)?;
                if !check(&doc) {
                    return Err(FetchError::NotJson);
                }
                let max_age = fetched.max_age;
                let fresh = max_age
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_FRESH)
                    .clamp(MIN_FRESH, MAX_FRESH);
                let now = Instant::now();
                Ok(Arc::new(RemoteEntry {
                    keys: OnceLock::new(),
                    doc,
                    fresh_until: now + fresh,
                    stale_until: now + fresh + STALE_GRACE,
                }))
            })
            .await;
        match attempt {
            Ok(e) => {
                let newer = match self.latest.get(uri).await {
                    Some(old) => !Arc::ptr_eq(&old, &e),
                    None => true,
                };
                if newer {
                    self.latest.insert(uri.to_owned(), e.clone()).await;
                }
                Ok(e)
            }
            Err(err) => match self.latest.get(uri).await {
                Some(old) if Instant::now() < old.stale_until => {
                    tracing::warn!(error = %err, "fetch failed; using the cached copy");
                    Ok(old)
                }
                _ => Err(err),
            },
        }
    }

    /// Forget a URI (its owner changed registration).
    pub async fn forget(&self, uri: &str) {
        self.latest.invalidate(uri).await;
        self.attempts.invalidate(uri).await;
    }
}
