//! JSON documents published by others (agents' and partners' JWK Sets, foreign did:web
//! documents), fetched through the hardened fetcher and cached honouring `Cache-Control` within
//! bounds. Partner discovery metadata is fetched once, at registration, without this cache.
//!
//! Fetches are single-flight and rate-limited per URI: every caller that needs a fetch within
//! [`REFRESH_INTERVAL`] shares the one attempt's outcome, so a flood of unknown `kid`s causes at
//! most one fetch per interval. When the endpoint fails, the last good copy keeps serving until
//! it is stale, then verification fails closed.
//!
//! Memory: a document is refused before parsing when it is too complex
//! ([`crate::fetch::check_json_complexity`]), and each cache is bounded by an estimate of the
//! bytes its entries hold (the parsed tree, the raw size as a stand-in for the keys parsed from
//! it, the URI), not by a number of entries: [`DEFAULT_BUDGET_BYTES`] unless set otherwise.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use moka::future::Cache;
use serde_json::Value;

use crate::fetch::{FetchError, Fetcher, check_json_complexity};
use crate::jose::KeySet;
use crate::model::Clock;

pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
const MIN_FRESH: Duration = Duration::from_secs(60);
const MAX_FRESH: Duration = Duration::from_secs(3600);
const DEFAULT_FRESH: Duration = Duration::from_secs(300);
/// How long past freshness a copy may still be used while its endpoint fails.
const STALE_GRACE: Duration = Duration::from_secs(3600);
/// What one cache's entries may weigh in total (estimated bytes), by default.
pub const DEFAULT_BUDGET_BYTES: u64 = 16 * 1024 * 1024;
/// Fixed cost counted for every entry (the entry, its timestamps, moka's bookkeeping).
const ENTRY_OVERHEAD: usize = 256;

/// An estimate of the heap bytes a parsed JSON value holds (the value itself included).
pub fn value_size(v: &Value) -> usize {
    const V: usize = std::mem::size_of::<Value>();
    match v {
        Value::String(s) => V + s.capacity(),
        Value::Array(a) => {
            V + (a.capacity() - a.len()) * V + a.iter().map(value_size).sum::<usize>()
        }
        // A map entry: the key string, the value, and the tree's per-entry share.
        Value::Object(m) => {
            V + m
                .iter()
                .map(|(k, v)| std::mem::size_of::<String>() + k.capacity() + 32 + value_size(v))
                .sum::<usize>()
        }
        _ => V,
    }
}

/// A fetched document and, in milliseconds of the injected clock, until when it is fresh and
/// until when it may still serve while its endpoint fails.
#[derive(Debug)]
pub struct RemoteEntry {
    pub doc: Value,
    /// Estimated bytes held: the parsed document, plus its raw size for the key set parsed
    /// from it later.
    weight: u32,
    fresh_until: i64,
    stale_until: i64,
    /// The document's keys, parsed on first use and kept as long as the document.
    keys: OnceLock<KeySet>,
}

impl RemoteEntry {
    /// What this entry counts against its cache's budget (estimated bytes).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The document's verification keys, parsed by `parse` once per fetched copy (not per
    /// request). Each cache holds one kind of document, so its callers pass the same `parse`
    /// (a JWK Set's, or a DID document's).
    pub fn key_set(&self, parse: impl FnOnce(&Value) -> KeySet) -> KeySet {
        self.keys.get_or_init(|| parse(&self.doc)).clone()
    }
}

/// One fetch attempt's outcome, shared by every caller within [`REFRESH_INTERVAL`] of `at`.
#[derive(Clone)]
struct Attempt {
    at: i64,
    outcome: Result<Arc<RemoteEntry>, FetchError>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub struct RemoteJson {
    fetcher: Fetcher,
    /// Media type asked for.
    accept: &'static str,
    /// Shape check: a fetched document failing it counts as a failed fetch.
    check: fn(&Value) -> bool,
    latest: Cache<String, Arc<RemoteEntry>>,
    /// Bounded in memory by moka's time-to-live; the interval itself is judged by `clock`.
    attempts: Cache<String, Attempt>,
    clock: Arc<dyn Clock>,
}

/// The host of a URI, for logs (never its path or query).
fn host_of(uri: &str) -> String {
    url::Url::parse(uri)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_default()
}

/// A JWK Set: `{"keys": [...]}`.
pub fn is_jwks(v: &Value) -> bool {
    v.get("keys").is_some_and(Value::is_array)
}

impl RemoteJson {
    pub fn new(
        fetcher: Fetcher,
        accept: &'static str,
        check: fn(&Value) -> bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_budget(fetcher, accept, check, clock, DEFAULT_BUDGET_BYTES)
    }

    /// A cache whose entries weigh at most `budget_bytes` in total (estimated). Recent attempts
    /// are bounded the same way: a failed attempt weighs little, a successful one shares its
    /// document with `latest` and is counted again (an over-estimate, on the safe side).
    pub fn with_budget(
        fetcher: Fetcher,
        accept: &'static str,
        check: fn(&Value) -> bool,
        clock: Arc<dyn Clock>,
        budget_bytes: u64,
    ) -> Self {
        Self {
            fetcher,
            accept,
            check,
            clock,
            latest: Cache::builder()
                .max_capacity(budget_bytes)
                .weigher(|uri: &String, e: &Arc<RemoteEntry>| {
                    e.weight
                        .saturating_add(u32::try_from(uri.len()).unwrap_or(u32::MAX))
                })
                .time_to_live(MAX_FRESH + STALE_GRACE)
                .build(),
            attempts: Cache::builder()
                .max_capacity(budget_bytes)
                .weigher(|uri: &String, a: &Attempt| {
                    let doc = match &a.outcome {
                        Ok(e) => e.weight,
                        Err(_) => ENTRY_OVERHEAD as u32,
                    };
                    doc.saturating_add(u32::try_from(uri.len()).unwrap_or(u32::MAX))
                })
                .time_to_live(REFRESH_INTERVAL)
                .build(),
        }
    }

    /// The estimated bytes the cached documents hold now (after pending evictions).
    pub async fn weighted_size(&self) -> u64 {
        self.latest.run_pending_tasks().await;
        self.latest.weighted_size()
    }

    /// The cached copy, fresh or stale, without fetching.
    pub async fn cached(&self, uri: &str) -> Option<Arc<RemoteEntry>> {
        self.latest
            .get(uri)
            .await
            .filter(|e| self.clock.now_ms() < e.stale_until)
    }

    /// The document at `uri`: cached while fresh, else fetched (once per interval).
    pub async fn get(&self, uri: &str) -> Result<Arc<RemoteEntry>, FetchError> {
        if let Some(e) = self.latest.get(uri).await
            && self.clock.now_ms() < e.fresh_until
        {
            return Ok(e);
        }
        self.refresh(uri).await
    }

    /// A fetch for a `kid` the cached set lacks; rate-limited like every fetch.
    pub async fn refresh(&self, uri: &str) -> Result<Arc<RemoteEntry>, FetchError> {
        let now = self.clock.now_ms();
        // An attempt older than the interval (by the injected clock) no longer rate-limits.
        if let Some(a) = self.attempts.get(uri).await
            && now.saturating_sub(a.at) >= ms(REFRESH_INTERVAL)
        {
            self.attempts.invalidate(uri).await;
        }
        let fetcher = self.fetcher.clone();
        let (accept, check) = (self.accept, self.check);
        let owned = uri.to_owned();
        let attempt = self
            .attempts
            .get_with(uri.to_owned(), async move {
                let outcome = async {
                    let fetched = fetcher.get(&owned, accept).await?;
                    let refused = |e: FetchError| {
                        tracing::warn!(host = %host_of(&owned), error = %e, "fetched document refused");
                        e
                    };
                    check_json_complexity(&fetched.body).map_err(refused)?;
                    let doc: Value = serde_json::from_slice(&fetched.body)
                        .map_err(|_| refused(FetchError::NotJson))?;
                    if !check(&doc) {
                        return Err(refused(FetchError::NotJson));
                    }
                    let weight = value_size(&doc)
                        .saturating_add(fetched.body.len())
                        .saturating_add(ENTRY_OVERHEAD);
                    let fresh = fetched
                        .max_age
                        .map(Duration::from_secs)
                        .unwrap_or(DEFAULT_FRESH)
                        .clamp(MIN_FRESH, MAX_FRESH);
                    Ok(Arc::new(RemoteEntry {
                        keys: OnceLock::new(),
                        doc,
                        weight: u32::try_from(weight).unwrap_or(u32::MAX),
                        fresh_until: now.saturating_add(ms(fresh)),
                        stale_until: now.saturating_add(ms(fresh + STALE_GRACE)),
                    }))
                }
                .await;
                Attempt { at: now, outcome }
            })
            .await;
        match attempt.outcome {
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
                Some(old) if self.clock.now_ms() < old.stale_until => {
                    tracing::warn!(host = %host_of(uri), error = %err, "fetch failed; using the cached copy");
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
