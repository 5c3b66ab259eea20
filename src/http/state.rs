//! Application state shared by every handler: the domain (`Idp`) plus edge-only pieces.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::idp::Idp;

/// Cloned by every extractor of every request: one reference count, not one per field (the
/// clone and drop of the fields' handles showed as 2.7% of a JWKS request's profile).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub idp: Arc<Idp>,
    /// Whether this instance leads the background jobs (`/readyz`, `agentidp_leader`).
    pub leader: crate::app::leader::Leadership,
    pub metrics: Option<PrometheusHandle>,
    /// Serialized discovery documents by organization id.
    pub discovery: moka::future::Cache<String, axum::body::Bytes>,
    /// Per-client-address limit on resolutions that fetch a foreign DID (no open proxy).
    pub foreign_resolution_limit: Arc<governor::DefaultKeyedRateLimiter<std::net::IpAddr>>,
    /// The brake on failed authentication (client and admin), per client IP and per client.
    pub auth_failures: Arc<crate::limiter::FailureLimiter>,
    /// The general request limits (per client at the token endpoint, per admin principal, per
    /// client IP on the public endpoints) and the limits in force.
    pub rate_limiter: Arc<crate::limiter::RateLimiter>,
    pub limits: crate::limiter::Limits,
    /// Redis, when configured (`/readyz` reports whether it answers).
    pub redis: Option<crate::ephemeral::redis_backend::RedisEphemeral>,
    /// `AGENTIDP_TRUSTED_PROXIES`: peers whose `Forwarded`/`X-Forwarded-For` are believed.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// How long a request may take before it is answered 503 (`AGENTIDP_REQUEST_TIMEOUT_SECS`).
    pub request_timeout: std::time::Duration,
    /// Whether the main router serves `/metrics` (not when `AGENTIDP_METRICS_BIND` gives it a
    /// listener of its own).
    pub metrics_on_main: bool,
}
