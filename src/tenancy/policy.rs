//! Organization policy: what an organization allows its agents (a ceiling on scopes, the
//! token-endpoint auth methods, the longest access-token lifetime, the oldest client secret, how
//! many agents) and its settings read by other parts (the CIDRs its admin API may be used from,
//! the token endpoint's rate limit, dynamic registration).
//!
//! - [`PolicyDocument`] is the wire and stored form (`GET`/`PUT /api/v1/orgs/{org}/policy`);
//!   [`Policy::parse`] validates it strictly into the typed [`Policy`] (every member optional:
//!   absent or `null` is no restriction).
//! - [`Policies`] is the cache every request reads: `get` of a cached organization is one moka
//!   lookup and an `Arc` clone (no database round trip, no allocation). Each change invalidates
//!   the entry here and, through the bus ([`Invalidation::Policy`]), on every other instance.
//! - Enforcement lives here as plain functions of a [`Policy`] (testable without HTTP): agent
//!   registrations and updates are checked against it ([`Policy::check_agent`]); existing agents
//!   that violate a new policy are reported ([`Policy::agent_violations`]) and keep working,
//!   except where the token endpoint enforces the policy at once (auth method, secret age,
//!   lifetime cap: see `oauth::client_auth`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::access::{Action, Principal};
use super::agents::valid_scope_token;
use super::{AuthMethod, Directory, entry_weight, orgs};
use crate::admin_error::{AdminError, IfMatch};
use crate::ephemeral::{DynBus, Invalidation};
use crate::model::{Clock, rfc3339};
use crate::storage::{AgentFilter, AgentRecord, Event, PolicyStore, StorageError};

/// What the cached policies may weigh in total (estimated bytes).
pub const POLICY_CACHE_BUDGET: u64 = 8 * 1024 * 1024;
/// Most allowed scopes, admin CIDRs.
pub const MAX_ALLOWED_SCOPES: usize = 1000;
pub const MAX_ADMIN_CIDRS: usize = 100;
/// `max_agents` at most.
pub const MAX_AGENTS_LIMIT: i64 = 10_000_000;
/// `max_secret_age_secs` between a minute and 100 years.
pub const SECRET_AGE_RANGE: (i64, i64) = (60, 100 * 365 * 86_400);
/// `token_rate_limit` members between 1 and this.
pub const RATE_LIMIT_MAX: u32 = 1_000_000;
/// At most this many violating agents are listed in a report (the rest are counted).
pub const REPORT_LIMIT: usize = 1000;

/// Who may register agents without an admin (RFC 7591); stored only, used by the next issue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DynamicRegistration {
    #[default]
    Off,
    InitialAccessToken,
    Open,
}

/// The token endpoint's rate limit per client of this organization (GCRA: a sustained rate and
/// a burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRateLimit {
    /// Requests per second, 1 to 1000000.
    pub per_second: u32,
    /// Requests allowed at once above the rate, 1 to 1000000.
    pub burst: u32,
}

/// How people's sign-in sessions behave. Absent members: the defaults ([`SessionPolicy::DEFAULT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionPolicy {
    /// A session unused this long ends (300 s to 30 days; default 7200).
    #[schema(minimum = 300, maximum = 2592000)]
    pub idle_timeout_secs: Option<i64>,
    /// A session ends this long after sign-in, used or not (300 s to 90 days; default 86400).
    #[schema(minimum = 300, maximum = 7776000)]
    pub absolute_timeout_secs: Option<i64>,
    /// Sensitive actions (consenting to a client, delegating to an agent) need a sign-in at
    /// most this old, else the person signs in again (60 s to 1 day; default 900).
    #[schema(minimum = 60, maximum = 86400)]
    pub reauthenticate_after_secs: Option<i64>,
    /// One session per person: signing in ends the person's other sessions (default false).
    pub single_session: Option<bool>,
}

/// The session rules in force (every member decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRules {
    pub idle_timeout_secs: i64,
    pub absolute_timeout_secs: i64,
    pub reauthenticate_after_secs: i64,
    pub single_session: bool,
}

impl SessionPolicy {
    pub const DEFAULT: SessionRules = SessionRules {
        idle_timeout_secs: 7200,
        absolute_timeout_secs: 86_400,
        reauthenticate_after_secs: 900,
        single_session: false,
    };
}

/// An organization's policy as the admin API reads and writes it (and as it is stored). Every
/// member is optional: absent or `null` means no restriction. `PUT` replaces the whole policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The most live (not revoked) agents the organization may have, 0 to 10000000.
    #[schema(minimum = 0, maximum = 10000000)]
    pub max_agents: Option<i64>,
    /// A ceiling on the scopes an agent may be given (RFC 6749 §3.3 tokens, at most 1000).
    pub allowed_scopes: Option<Vec<String>>,
    /// The token-endpoint auth methods agents may use (`client_secret_basic`,
    /// `client_secret_post`, `private_key_jwt`; at least one). Agents whose method is not listed
    /// are refused at the token endpoint with `invalid_client`.
    #[schema(value_type = Option<Vec<AuthMethod>>)]
    pub allowed_auth_methods: Option<Vec<String>>,
    /// The longest access-token lifetime, 1 to the instance default; issued tokens are capped.
    #[schema(minimum = 1)]
    pub max_access_token_ttl_secs: Option<i64>,
    /// The oldest a client secret may be (60 s to 100 years); older secrets are refused with
    /// `invalid_client` until rotated.
    #[schema(minimum = 60)]
    pub max_secret_age_secs: Option<i64>,
    /// CIDRs from which this organization's admin API may be used (1 to 100, e.g.
    /// `10.0.0.0/8`, `2001:db8::/32`; no host bits).
    pub admin_allowed_cidrs: Option<Vec<String>>,
    /// The token endpoint's limit per client; null: the instance's default.
    pub token_rate_limit: Option<TokenRateLimit>,
    /// `off` (the default), `initial_access_token` or `open`.
    #[schema(value_type = Option<DynamicRegistration>)]
    pub dynamic_registration: Option<DynamicRegistration>,
    /// People's sessions; null: the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionPolicy>,
    /// The RFC 8707 resources (`https` URLs; a resource below one's path matches too) that
    /// tokens of the authorization code flow may be addressed to, besides the organization's
    /// issuer and the admin API (1 to 100); null: any `https` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_resources: Option<Vec<String>>,
}

/// A validated policy, as every check reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// The stored version (0: never written, the default); the `ETag`.
    pub version: i64,
    pub updated_at: Option<i64>,
    pub max_agents: Option<i64>,
    /// Sorted and without repeats.
    pub allowed_scopes: Option<Vec<String>>,
    pub allowed_auth_methods: Option<Vec<AuthMethod>>,
    pub max_access_token_ttl_secs: Option<i64>,
    pub max_secret_age_secs: Option<i64>,
    pub admin_allowed_cidrs: Option<Vec<IpNet>>,
    pub token_rate_limit: Option<TokenRateLimit>,
    pub dynamic_registration: DynamicRegistration,
    pub session: Option<SessionPolicy>,
    pub allowed_resources: Option<Vec<String>>,
}

/// One rule an agent breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Violation {
    /// The policy member: `allowed_scopes`, `allowed_auth_methods`,
    /// `max_access_token_ttl_secs` or `max_secret_age_secs`.
    pub rule: &'static str,
    pub description: String,
}

/// An existing agent that violates the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AgentViolations {
    pub id: String,
    pub name: String,
    pub violations: Vec<Violation>,
}

/// What existing agents a new policy does not fit. They are not changed: they keep working
/// (except where the token endpoint enforces the policy itself: a disallowed auth method or an
/// expired secret is refused, lifetimes are capped) until an admin changes them; new
/// registrations and updates must comply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ViolationReport {
    /// Agents breaking a rule (at most 1000; see `truncated`).
    pub agents: Vec<AgentViolations>,
    /// True when more agents violate the policy than are listed.
    pub truncated: bool,
    /// Live (not revoked) agents now.
    pub live_agents: i64,
    /// True when `live_agents` is above `max_agents`: no agent can be registered until some
    /// are revoked or deleted.
    pub over_max_agents: bool,
}

/// `GET`/`PUT .../policy` answer: the whole policy (every member, null: no restriction); after
/// a `PUT` also what existing agents violate it. No `deny_unknown_fields` here (an answer).
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyResponse {
    #[schema(required = true)]
    pub max_agents: Option<i64>,
    #[schema(required = true)]
    pub allowed_scopes: Option<Vec<String>>,
    #[schema(required = true, value_type = Option<Vec<AuthMethod>>)]
    pub allowed_auth_methods: Option<Vec<String>>,
    #[schema(required = true)]
    pub max_access_token_ttl_secs: Option<i64>,
    #[schema(required = true)]
    pub max_secret_age_secs: Option<i64>,
    #[schema(required = true)]
    pub admin_allowed_cidrs: Option<Vec<String>>,
    #[schema(required = true)]
    pub token_rate_limit: Option<TokenRateLimit>,
    pub dynamic_registration: DynamicRegistration,
    /// People's sessions (null: the defaults).
    #[schema(required = true)]
    pub session: Option<SessionPolicy>,
    #[schema(required = true)]
    pub allowed_resources: Option<Vec<String>>,
    /// When it was last changed (null: never, the default policy).
    #[schema(required = true, format = DateTime)]
    pub updated_at: Option<String>,
    /// Only in the answer to `PUT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub violations: Option<ViolationReport>,
}

fn dedup_sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

impl Policy {
    /// Validates a document: every member in range, `field` naming the first bad one.
    /// `max_token_ttl` is the instance's default access-token lifetime (the ceiling of
    /// `max_access_token_ttl_secs`).
    pub fn parse(doc: &PolicyDocument, max_token_ttl: i64) -> Result<Policy, AdminError> {
        let mut p = Policy {
            dynamic_registration: doc.dynamic_registration.unwrap_or_default(),
            token_rate_limit: doc.token_rate_limit,
            session: doc.session,
            allowed_resources: doc.allowed_resources.clone(),
            ..Policy::default()
        };
        if let Some(n) = doc.max_agents {
            if !(0..=MAX_AGENTS_LIMIT).contains(&n) {
                return Err(AdminError::field(
                    "max_agents",
                    format!("must be between 0 and {MAX_AGENTS_LIMIT}"),
                ));
            }
            p.max_agents = Some(n);
        }
        if let Some(scopes) = &doc.allowed_scopes {
            if scopes.len() > MAX_ALLOWED_SCOPES {
                return Err(AdminError::field(
                    "allowed_scopes",
                    format!("at most {MAX_ALLOWED_SCOPES} scopes"),
                ));
            }
            if let Some(bad) = scopes.iter().find(|s| !valid_scope_token(s)) {
                return Err(AdminError::field(
                    "allowed_scopes",
                    format!("{bad:?} is not a valid scope token (RFC 6749 §3.3)"),
                ));
            }
            p.allowed_scopes = Some(dedup_sorted(scopes.clone()));
        }
        if let Some(methods) = &doc.allowed_auth_methods {
            if methods.is_empty() {
                return Err(AdminError::field(
                    "allowed_auth_methods",
                    "must name at least one method (null: no restriction)",
                ));
            }
            let mut parsed = Vec::with_capacity(methods.len());
            for m in methods {
                parsed.push(AuthMethod::parse(m).ok_or_else(|| {
                    AdminError::field(
                        "allowed_auth_methods",
                        format!(
                            "{m:?} is not client_secret_basic, client_secret_post, private_key_jwt or none"
                        ),
                    )
                })?);
            }
            parsed.sort_by_key(|m| m.as_str());
            parsed.dedup();
            p.allowed_auth_methods = Some(parsed);
        }
        if let Some(ttl) = doc.max_access_token_ttl_secs {
            if !(1..=max_token_ttl).contains(&ttl) {
                return Err(AdminError::field(
                    "max_access_token_ttl_secs",
                    format!("must be between 1 and the instance default {max_token_ttl}"),
                ));
            }
            p.max_access_token_ttl_secs = Some(ttl);
        }
        if let Some(age) = doc.max_secret_age_secs {
            let (lo, hi) = SECRET_AGE_RANGE;
            if !(lo..=hi).contains(&age) {
                return Err(AdminError::field(
                    "max_secret_age_secs",
                    format!("must be between {lo} and {hi}"),
                ));
            }
            p.max_secret_age_secs = Some(age);
        }
        if let Some(cidrs) = &doc.admin_allowed_cidrs {
            if cidrs.is_empty() || cidrs.len() > MAX_ADMIN_CIDRS {
                return Err(AdminError::field(
                    "admin_allowed_cidrs",
                    format!("must list 1 to {MAX_ADMIN_CIDRS} CIDRs (null: no restriction)"),
                ));
            }
            let mut nets = Vec::with_capacity(cidrs.len());
            for c in cidrs {
                let net: IpNet = c.trim().parse().map_err(|_| {
                    AdminError::field(
                        "admin_allowed_cidrs",
                        format!("{c:?} is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32"),
                    )
                })?;
                if net.trunc() != net {
                    return Err(AdminError::field(
                        "admin_allowed_cidrs",
                        format!("{c:?} has host bits set; the network is {}", net.trunc()),
                    ));
                }
                nets.push(net);
            }
            p.admin_allowed_cidrs = Some(dedup_sorted(nets));
        }
        if let Some(l) = doc.token_rate_limit {
            for (field, v) in [
                ("token_rate_limit.per_second", l.per_second),
                ("token_rate_limit.burst", l.burst),
            ] {
                if !(1..=RATE_LIMIT_MAX).contains(&v) {
                    return Err(AdminError::field(
                        field,
                        format!("must be between 1 and {RATE_LIMIT_MAX}"),
                    ));
                }
            }
        }
        if let Some(list) = &doc.allowed_resources {
            if list.is_empty() || list.len() > 100 {
                return Err(AdminError::field(
                    "allowed_resources",
                    "must list 1 to 100 resources (null: any https resource)",
                ));
            }
            for r in list {
                let ok = r.len() <= 512
                    && r.starts_with("https://")
                    && url::Url::parse(r).is_ok_and(|u| {
                        u.fragment().is_none() && u.query().is_none() && u.has_host()
                    });
                if !ok {
                    return Err(AdminError::field(
                        "allowed_resources",
                        format!(
                            "{:?} is not an https URL without query or fragment",
                            r.chars().take(80).collect::<String>()
                        ),
                    ));
                }
            }
        }
        if let Some(sp) = doc.session {
            for (field, v, lo, hi) in [
                (
                    "session.idle_timeout_secs",
                    sp.idle_timeout_secs,
                    300,
                    2_592_000,
                ),
                (
                    "session.absolute_timeout_secs",
                    sp.absolute_timeout_secs,
                    300,
                    7_776_000,
                ),
                (
                    "session.reauthenticate_after_secs",
                    sp.reauthenticate_after_secs,
                    60,
                    86_400,
                ),
            ] {
                if let Some(v) = v
                    && !(lo..=hi).contains(&v)
                {
                    return Err(AdminError::field(
                        field,
                        format!("must be between {lo} and {hi}"),
                    ));
                }
            }
        }
        Ok(p)
    }

    /// The document form (normalized: sorted, without repeats).
    pub fn document(&self) -> PolicyDocument {
        PolicyDocument {
            max_agents: self.max_agents,
            allowed_scopes: self.allowed_scopes.clone(),
            allowed_auth_methods: self
                .allowed_auth_methods
                .as_ref()
                .map(|m| m.iter().map(|m| m.as_str().to_owned()).collect()),
            max_access_token_ttl_secs: self.max_access_token_ttl_secs,
            max_secret_age_secs: self.max_secret_age_secs,
            admin_allowed_cidrs: self
                .admin_allowed_cidrs
                .as_ref()
                .map(|n| n.iter().map(IpNet::to_string).collect()),
            token_rate_limit: self.token_rate_limit,
            dynamic_registration: Some(self.dynamic_registration),
            session: self.session,
            allowed_resources: self.allowed_resources.clone(),
        }
    }

    /// The admin view.
    pub fn view(&self, violations: Option<ViolationReport>) -> PolicyResponse {
        let d = self.document();
        PolicyResponse {
            max_agents: d.max_agents,
            allowed_scopes: d.allowed_scopes,
            allowed_auth_methods: d.allowed_auth_methods,
            max_access_token_ttl_secs: d.max_access_token_ttl_secs,
            max_secret_age_secs: d.max_secret_age_secs,
            admin_allowed_cidrs: d.admin_allowed_cidrs,
            token_rate_limit: d.token_rate_limit,
            dynamic_registration: self.dynamic_registration,
            session: d.session,
            allowed_resources: d.allowed_resources,
            updated_at: self.updated_at.map(rfc3339),
            violations,
        }
    }

    /// The session rules in force: the policy's, the defaults where it says nothing.
    pub fn sessions(&self) -> SessionRules {
        let d = SessionPolicy::DEFAULT;
        let Some(sp) = self.session else {
            return d;
        };
        SessionRules {
            idle_timeout_secs: sp.idle_timeout_secs.unwrap_or(d.idle_timeout_secs),
            absolute_timeout_secs: sp.absolute_timeout_secs.unwrap_or(d.absolute_timeout_secs),
            reauthenticate_after_secs: sp
                .reauthenticate_after_secs
                .unwrap_or(d.reauthenticate_after_secs),
            single_session: sp.single_session.unwrap_or(d.single_session),
        }
    }

    /// May agents authenticate with `m`?
    pub fn allows_auth_method(&self, m: AuthMethod) -> bool {
        self.allowed_auth_methods
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&m))
    }

    /// May an agent be given `scope`?
    pub fn allows_scope(&self, scope: &str) -> bool {
        self.allowed_scopes
            .as_ref()
            .is_none_or(|allowed| allowed.binary_search_by(|s| s.as_str().cmp(scope)).is_ok())
    }

    /// A token lifetime capped by the policy.
    pub fn cap_ttl(&self, ttl: i64) -> i64 {
        self.max_access_token_ttl_secs.map_or(ttl, |m| ttl.min(m))
    }

    /// When a secret issued at `created_at` expires under this policy (`None`: it does not;
    /// a secret of unknown age never expires).
    pub fn secret_expires_at(&self, created_at: Option<i64>) -> Option<i64> {
        Some(created_at?.saturating_add(self.max_secret_age_secs?))
    }

    /// Is `ip` within `admin_allowed_cidrs` (always, without a list)? For the admin API's
    /// check (made by the principal's authentication, not here).
    pub fn admin_ip_allowed(&self, ip: IpAddr) -> bool {
        self.admin_allowed_cidrs
            .as_ref()
            .is_none_or(|nets| nets.iter().any(|n| n.contains(&ip)))
    }

    /// The rules a registered agent breaks now.
    pub fn agent_violations(&self, a: &AgentRecord, now: i64) -> Vec<Violation> {
        let mut out = Vec::new();
        let outside: Vec<&str> = a
            .scopes
            .iter()
            .filter(|s| !self.allows_scope(s))
            .map(String::as_str)
            .collect();
        if !outside.is_empty() {
            out.push(Violation {
                rule: "allowed_scopes",
                description: format!("scopes outside allowed_scopes: {}", outside.join(" ")),
            });
        }
        if !self.allows_auth_method(a.auth_method) {
            out.push(Violation {
                rule: "allowed_auth_methods",
                description: format!(
                    "{} is not allowed: the agent is refused at the token endpoint",
                    a.auth_method.as_str()
                ),
            });
        }
        if let (Some(ttl), Some(max)) = (a.access_token_ttl, self.max_access_token_ttl_secs)
            && ttl > max
        {
            out.push(Violation {
                rule: "max_access_token_ttl_secs",
                description: format!(
                    "access_token_ttl_secs {ttl} is above {max}: its tokens are capped at {max}"
                ),
            });
        }
        if a.auth_method.uses_secret()
            && let Some(exp) = self.secret_expires_at(a.secret_created_at)
            && exp <= now
        {
            out.push(Violation {
                rule: "max_secret_age_secs",
                description: format!(
                    "the client secret expired at {} (issued {}): rotate it",
                    rfc3339(exp),
                    rfc3339(a.secret_created_at.unwrap_or_default())
                ),
            });
        }
        out
    }

    /// Checks a registration (`changed` None: every rule) or an update (only the rules of the
    /// fields it changes, so an agent that predates the policy can still be renamed or fixed one
    /// field at a time). The error names the agent's field.
    pub fn check_agent(&self, a: &AgentRecord, changed: Option<&[&str]>) -> Result<(), AdminError> {
        let touches = |f: &str| changed.is_none_or(|c| c.contains(&f));
        if touches("scopes")
            && let Some(bad) = a.scopes.iter().find(|s| !self.allows_scope(s))
        {
            return Err(AdminError::field(
                "scopes",
                format!("{bad:?} is outside the organization policy's allowed_scopes"),
            ));
        }
        if (touches("token_endpoint_auth_method") || touches("jwks") || touches("jwks_uri"))
            && !self.allows_auth_method(a.auth_method)
        {
            return Err(AdminError::field(
                "token_endpoint_auth_method",
                format!(
                    "{} is not in the organization policy's allowed_auth_methods",
                    a.auth_method.as_str()
                ),
            ));
        }
        if touches("access_token_ttl_secs")
            && let (Some(ttl), Some(max)) = (a.access_token_ttl, self.max_access_token_ttl_secs)
            && ttl > max
        {
            return Err(AdminError::field(
                "access_token_ttl_secs",
                format!(
                    "must be at most the organization policy's max_access_token_ttl_secs {max}"
                ),
            ));
        }
        Ok(())
    }

    /// Estimated bytes held (the cache's weigher).
    fn weight(&self) -> usize {
        std::mem::size_of::<Policy>()
            + self
                .allowed_scopes
                .as_ref()
                .map_or(0, |s| s.iter().map(|s| 24 + s.capacity()).sum())
            + self.allowed_auth_methods.as_ref().map_or(0, |m| m.len())
            + self
                .admin_allowed_cidrs
                .as_ref()
                .map_or(0, |n| n.len() * std::mem::size_of::<IpNet>())
    }
}

/// The cache key of an organization: its UUID as a number (a lookup allocates nothing). Only the
/// canonical spelling maps to a key (see `tenancy::agent_key`).
fn org_key(org_id: &str) -> Option<u128> {
    if !crate::model::is_uuid(org_id) {
        return None;
    }
    uuid::Uuid::try_parse(org_id).ok().map(|u| u.as_u128())
}

/// Every organization's policy, read through a cache bounded by bytes. An organization without
/// a stored policy shares one default `Arc`.
pub struct Policies {
    store: Arc<dyn PolicyStore>,
    bus: DynBus,
    cache: Cache<u128, Arc<Policy>>,
    default: Arc<Policy>,
    /// [`crate::ephemeral::Generation`]: a load racing an invalidation is not kept.
    generation: crate::ephemeral::Generation,
}

impl Policies {
    /// `ttl` as the directory's ([`super::cache_ttl`]): long when every change reaches this
    /// instance, short otherwise.
    pub fn new(store: Arc<dyn PolicyStore>, bus: DynBus, ttl: Duration) -> Self {
        Self::with_budget(store, bus, ttl, POLICY_CACHE_BUDGET)
    }

    pub fn with_budget(
        store: Arc<dyn PolicyStore>,
        bus: DynBus,
        ttl: Duration,
        bytes: u64,
    ) -> Self {
        Policies {
            store,
            bus,
            cache: Cache::builder()
                .max_capacity(bytes)
                .weigher(|_: &u128, p: &Arc<Policy>| entry_weight(16, p.weight()))
                .time_to_live(ttl)
                .build(),
            default: Arc::new(Policy::default()),
            generation: Default::default(),
        }
    }

    /// The organization's policy: from memory when cached (an `Arc` clone), else read once
    /// (concurrent misses share the read).
    pub async fn get(&self, org_id: &str) -> Result<Arc<Policy>, StorageError> {
        let Some(key) = org_key(org_id) else {
            return self.load(org_id).await;
        };
        if let Some(hit) = self.cache.get(&key).await {
            return Ok(hit);
        }
        let noted = self.generation.current();
        let found = self
            .cache
            .try_get_with(key, self.load(org_id))
            .await
            .map_err(|e: Arc<StorageError>| StorageError::Other(e.to_string()))?;
        if self.generation.moved_since(noted) {
            self.cache.invalidate(&key).await;
        }
        Ok(found)
    }

    /// Reads the stored policy (the default when none is stored), bypassing the cache.
    pub async fn load(&self, org_id: &str) -> Result<Arc<Policy>, StorageError> {
        match self.store.get(org_id).await? {
            None => Ok(self.default.clone()),
            Some(rec) => {
                let doc: PolicyDocument = serde_json::from_str(&rec.document).map_err(|e| {
                    StorageError::Other(format!("stored policy of {org_id} is not valid: {e}"))
                })?;
                // The instance's lifetime is no ceiling of a stored policy (it may have changed
                // since): tokens are capped by both anyway.
                let mut p = Policy::parse(&doc, i64::MAX).map_err(|e| {
                    StorageError::Other(format!("stored policy of {org_id} is not valid: {e}"))
                })?;
                p.version = rec.version;
                p.updated_at = Some(rec.updated_at);
                Ok(Arc::new(p))
            }
        }
    }

    /// Forget locally, then tell the other instances.
    pub async fn invalidate(&self, org_id: &str) {
        let inv = Invalidation::Policy {
            org_id: org_id.to_owned(),
        };
        self.apply(&inv).await;
        self.bus.publish(&inv).await;
    }

    /// Forget locally (also for invalidations heard from other instances).
    pub async fn apply(&self, inv: &Invalidation) {
        if let Invalidation::Policy { org_id } = inv
            && let Some(key) = org_key(org_id)
        {
            self.generation.bump();
            self.cache.invalidate(&key).await;
        }
    }

    /// Forget everything (the bus reconnected: what was missed is unknown).
    pub fn invalidate_all(&self) {
        self.generation.bump();
        self.cache.invalidate_all();
    }
}

/// The policy admin use cases (`GET`/`PUT .../policy`).
pub struct OrgPolicies {
    pub directory: Arc<Directory>,
    pub policies: Arc<Policies>,
    pub store: Arc<dyn PolicyStore>,
    /// The instance's default access-token lifetime (the ceiling of the policy's).
    pub max_token_ttl: i64,
    /// The instance's token rate limit (`AGENTIDP_TOKEN_RATE_LIMIT`, `None` when off): the
    /// ceiling of a policy's `token_rate_limit` (an organization may lower its clients' limit,
    /// never raise it above the operator's; the token endpoint also clamps a stored one to it,
    /// for policies stored before the operator lowered it).
    pub token_rate_ceiling: Option<TokenRateLimit>,
    pub clock: Arc<dyn Clock>,
}

/// How often a policy write is redone on a fresh read when a concurrent write came first.
const ATTEMPTS: usize = 8;

impl OrgPolicies {
    /// The organization's current policy (read from the database, not the cache: an admin reads
    /// what is stored, with its version).
    pub async fn get(
        &self,
        principal: &Principal,
        org_slug: &str,
    ) -> Result<Arc<Policy>, AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Read).await?;
        Ok(self.policies.load(&org.id).await?)
    }

    /// Replaces the whole policy (validated first: on any error nothing changes); with
    /// `if_match` only over the version it names. Answers the new policy and the existing
    /// agents that violate it (reported, not changed).
    pub async fn put(
        &self,
        principal: &Principal,
        org_slug: &str,
        doc: &PolicyDocument,
        if_match: Option<&IfMatch>,
    ) -> Result<(Arc<Policy>, ViolationReport), AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Write).await?;
        let mut policy = Policy::parse(doc, self.max_token_ttl)?;
        if let (Some(set), Some(ceiling)) = (policy.token_rate_limit, self.token_rate_ceiling) {
            for (field, value, max) in [
                (
                    "token_rate_limit.per_second",
                    set.per_second,
                    ceiling.per_second,
                ),
                ("token_rate_limit.burst", set.burst, ceiling.burst),
            ] {
                if value > max {
                    return Err(AdminError::field(
                        field,
                        format!(
                            "at most {max}, the instance's AGENTIDP_TOKEN_RATE_LIMIT (the operator raises that to allow more)"
                        ),
                    ));
                }
            }
        }
        let stored = serde_json::to_string(&policy.document())
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        for _ in 0..ATTEMPTS {
            let current = self.policies.load(&org.id).await?;
            if let Some(m) = if_match {
                m.check(current.version)?;
            }
            // Who may use the admin API from where is the owners' to decide: an admin fencing
            // the owners out could not be removed by them (review finding).
            if current.admin_allowed_cidrs != policy.admin_allowed_cidrs {
                principal
                    .check(&org.id, Action::Own)
                    .map_err(|_| AdminError::Forbidden)?;
            }
            let now = self.clock.now();
            let ev = Event {
                org_id: Some(org.id.clone()),
                kind: "policy.updated",
                subject: org.id.to_string(),
                data: json!({ "version": current.version + 1 }),
                at: now,
            };
            match self
                .store
                .put(&org.id, &stored, current.version, now, &ev)
                .await
            {
                Err(StorageError::Stale) => continue,
                Err(e) => return Err(e.into()),
                Ok(version) => {
                    policy.version = version;
                    policy.updated_at = Some(now);
                    self.policies.invalidate(&org.id).await;
                    let report = self.report(&org.id, &policy, now).await?;
                    return Ok((Arc::new(policy), report));
                }
            }
        }
        Err(AdminError::Conflict(
            "the policy is being changed by many concurrent requests; retry".into(),
        ))
    }

    /// Which live agents of the organization violate `policy` now.
    pub async fn report(
        &self,
        org_id: &str,
        policy: &Policy,
        now: i64,
    ) -> Result<ViolationReport, AdminError> {
        let store = self.directory.agent_store();
        let mut report = ViolationReport::default();
        let mut after: Option<String> = None;
        let page = 500;
        loop {
            let rows = store
                .list_filtered(org_id, after.as_deref(), page, &AgentFilter::default())
                .await?;
            for a in &rows {
                if a.status == super::AgentStatus::Revoked {
                    continue;
                }
                report.live_agents += 1;
                let violations = policy.agent_violations(a, now);
                if violations.is_empty() {
                    continue;
                }
                if report.agents.len() < REPORT_LIMIT {
                    report.agents.push(AgentViolations {
                        id: a.id.to_string(),
                        name: a.name.clone(),
                        violations,
                    });
                } else {
                    report.truncated = true;
                }
            }
            if (rows.len() as i64) < page {
                break;
            }
            after = rows.last().map(|a| a.id.to_string());
        }
        report.over_max_agents = policy.max_agents.is_some_and(|m| report.live_agents > m);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentId, OrgId};
    use crate::storage::PolicyRecord;

    const NOW: i64 = 1_767_225_600;

    fn doc(v: serde_json::Value) -> Result<PolicyDocument, serde_json::Error> {
        serde_json::from_value(v)
    }

    fn field_of(e: AdminError) -> (&'static str, String) {
        match e {
            AdminError::Field { field, message } => (field, message),
            other => panic!("not a field error: {other:?}"),
        }
    }

    fn agent(scopes: &[&str], method: AuthMethod) -> AgentRecord {
        let mut a = AgentRecord::new(
            OrgId::from("0196a000-0000-7000-8000-000000000001"),
            AgentId::generate(NOW * 1000),
            "did:web:x".into(),
            "a".into(),
            method,
            NOW,
        );
        a.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        a.secret_created_at = Some(NOW);
        a
    }

    #[test]
    fn the_default_restricts_nothing() {
        let p = Policy::parse(&PolicyDocument::default(), 900).unwrap();
        assert_eq!(p, Policy::default());
        assert!(p.allows_scope("anything"));
        assert!(p.allows_auth_method(AuthMethod::PrivateKeyJwt));
        assert_eq!(p.cap_ttl(900), 900);
        assert_eq!(p.secret_expires_at(Some(NOW)), None);
        assert!(p.admin_ip_allowed("203.0.113.9".parse().unwrap()));
        let a = agent(&["read"], AuthMethod::ClientSecretBasic);
        assert!(p.agent_violations(&a, NOW + 10 * 365 * 86_400).is_empty());
        assert!(p.check_agent(&a, None).is_ok());
        // The whole policy, every member present.
        let v = serde_json::to_value(p.view(None)).unwrap();
        for k in [
            "max_agents",
            "allowed_scopes",
            "allowed_auth_methods",
            "max_access_token_ttl_secs",
            "max_secret_age_secs",
            "admin_allowed_cidrs",
            "token_rate_limit",
            "updated_at",
        ] {
            assert!(v[k].is_null(), "{k}: {v}");
        }
        assert_eq!(v["dynamic_registration"], "off");
        assert!(v.get("violations").is_none());
    }

    #[test]
    fn bad_documents_name_their_field() {
        for (body, field) in [
            (json!({"max_agents": -1}), "max_agents"),
            (json!({"max_agents": 10_000_001}), "max_agents"),
            (
                json!({"allowed_scopes": ["ok", "bad scope"]}),
                "allowed_scopes",
            ),
            (json!({"allowed_auth_methods": []}), "allowed_auth_methods"),
            (
                json!({"allowed_auth_methods": ["tls_client_auth"]}),
                "allowed_auth_methods",
            ),
            (
                json!({"max_access_token_ttl_secs": 0}),
                "max_access_token_ttl_secs",
            ),
            (
                json!({"max_access_token_ttl_secs": 901}),
                "max_access_token_ttl_secs",
            ),
            (json!({"max_secret_age_secs": 59}), "max_secret_age_secs"),
            (json!({"admin_allowed_cidrs": []}), "admin_allowed_cidrs"),
            (
                json!({"admin_allowed_cidrs": ["10.0.0.0"]}),
                "admin_allowed_cidrs",
            ),
            (
                json!({"admin_allowed_cidrs": ["10.0.0.1/8"]}),
                "admin_allowed_cidrs",
            ),
            (
                json!({"admin_allowed_cidrs": ["nope/3"]}),
                "admin_allowed_cidrs",
            ),
            (
                json!({"token_rate_limit": {"per_second": 0, "burst": 1}}),
                "token_rate_limit.per_second",
            ),
            (
                json!({"token_rate_limit": {"per_second": 1, "burst": 0}}),
                "token_rate_limit.burst",
            ),
        ] {
            let d = doc(body.clone()).unwrap();
            let (f, msg) = field_of(Policy::parse(&d, 900).unwrap_err());
            assert_eq!(f, field, "{body}: {msg}");
        }
        let (_, msg) = field_of(
            Policy::parse(
                &doc(json!({"admin_allowed_cidrs": ["10.0.0.1/8"]})).unwrap(),
                900,
            )
            .unwrap_err(),
        );
        assert!(msg.contains("10.0.0.0/8"), "{msg}");
        // Unknown members and variants are refused by the deserializer.
        assert!(doc(json!({"max_agent": 1})).is_err());
        assert!(doc(json!({"dynamic_registration": "sometimes"})).is_err());
        assert!(doc(json!({"token_rate_limit": {"per_second": 1}})).is_err());
        assert!(doc(json!({"token_rate_limit": {"per_second": 1, "burst": 1, "x": 1}})).is_err());
    }

    #[test]
    fn a_document_round_trips_normalized() {
        let d = doc(json!({
            "max_agents": 3,
            "allowed_scopes": ["write", "read", "read"],
            "allowed_auth_methods": ["private_key_jwt", "client_secret_basic"],
            "max_access_token_ttl_secs": 300,
            "max_secret_age_secs": 86400,
            "admin_allowed_cidrs": ["2001:db8::/32", "10.0.0.0/8"],
            "token_rate_limit": {"per_second": 50, "burst": 100},
            "dynamic_registration": "initial_access_token",
        }))
        .unwrap();
        let p = Policy::parse(&d, 900).unwrap();
        let back = p.document();
        assert_eq!(
            back.allowed_scopes.as_deref(),
            Some(&["read".to_owned(), "write".to_owned()][..])
        );
        assert_eq!(Policy::parse(&back, 900).unwrap(), p);
        assert!(p.admin_ip_allowed("10.1.2.3".parse().unwrap()));
        assert!(p.admin_ip_allowed("2001:db8::1".parse().unwrap()));
        assert!(!p.admin_ip_allowed("192.0.2.1".parse().unwrap()));
        assert_eq!(p.cap_ttl(900), 300);
        assert_eq!(p.cap_ttl(60), 60);
        assert_eq!(
            p.dynamic_registration,
            DynamicRegistration::InitialAccessToken
        );
    }

    #[test]
    fn agents_are_checked_and_reported() {
        let p = Policy::parse(
            &doc(json!({
                "allowed_scopes": ["read"],
                "allowed_auth_methods": ["private_key_jwt"],
                "max_access_token_ttl_secs": 300,
                "max_secret_age_secs": 3600,
            }))
            .unwrap(),
            900,
        )
        .unwrap();
        let mut a = agent(&["read", "write"], AuthMethod::ClientSecretBasic);
        a.access_token_ttl = Some(600);
        // A registration: the first broken rule, named by the agent's field.
        let (f, _) = field_of(p.check_agent(&a, None).unwrap_err());
        assert_eq!(f, "scopes");
        // An update touching only the name passes; one touching the TTL does not.
        assert!(p.check_agent(&a, Some(&["name"])).is_ok());
        let (f, _) = field_of(
            p.check_agent(&a, Some(&["access_token_ttl_secs"]))
                .unwrap_err(),
        );
        assert_eq!(f, "access_token_ttl_secs");
        let (f, _) = field_of(
            p.check_agent(&a, Some(&["token_endpoint_auth_method"]))
                .unwrap_err(),
        );
        assert_eq!(f, "token_endpoint_auth_method");
        // The report lists every rule; the secret's age only once it passed.
        let rules = |now| -> Vec<&'static str> {
            p.agent_violations(&a, now).iter().map(|v| v.rule).collect()
        };
        assert_eq!(
            rules(NOW + 3599),
            [
                "allowed_scopes",
                "allowed_auth_methods",
                "max_access_token_ttl_secs"
            ]
        );
        assert_eq!(rules(NOW + 3600).last(), Some(&"max_secret_age_secs"));
        assert_eq!(p.secret_expires_at(Some(NOW)), Some(NOW + 3600));
        let ok = agent(&["read"], AuthMethod::PrivateKeyJwt);
        assert!(p.check_agent(&ok, None).is_ok());
        assert!(
            p.agent_violations(&ok, NOW + 10_000).is_empty(),
            "no secret, no age"
        );
    }

    #[tokio::test]
    async fn the_cache_answers_without_the_store_until_invalidated() {
        use crate::ephemeral::LocalBus;
        use crate::storage::testing::{event, temp_db};
        use crate::storage::{OrgRecord, OrgStore};
        let t = temp_db().await;
        let org = OrgRecord::sample("pol");
        OrgStore::create(&t.db, &org, &[], &event(None, "org.created", "o", 0))
            .await
            .unwrap();
        let store: Arc<dyn PolicyStore> = Arc::new(t.db.clone());
        let policies = Policies::new(store.clone(), Arc::new(LocalBus), Duration::from_secs(60));
        let first = policies.get(&org.id).await.unwrap();
        assert_eq!(first.version, 0);
        let ev = event(Some(&org.id), "policy.updated", &org.id, 1);
        store
            .put(&org.id, r#"{"max_agents":2}"#, 0, 1, &ev)
            .await
            .unwrap();
        // Cached: the same Arc, the write unseen.
        let again = policies.get(&org.id).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        policies.invalidate(&org.id).await;
        let fresh = policies.get(&org.id).await.unwrap();
        assert_eq!((fresh.version, fresh.max_agents), (1, Some(2)));
        // An invalidation heard from the bus does the same.
        store
            .put(&org.id, r#"{"max_agents":5}"#, 1, 2, &ev)
            .await
            .unwrap();
        policies
            .apply(&Invalidation::Policy {
                org_id: org.id.to_string(),
            })
            .await;
        assert_eq!(policies.get(&org.id).await.unwrap().max_agents, Some(5));
    }

    /// A store whose reads can be held between reading and answering, to place an
    /// invalidation exactly inside a cache miss.
    struct HeldStore {
        doc: std::sync::Mutex<Option<PolicyRecord>>,
        /// When set, a read answers what it read only once `release` is notified.
        hold: std::sync::atomic::AtomicBool,
        read: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl PolicyStore for HeldStore {
        async fn get(&self, _: &str) -> crate::storage::StorageResult<Option<PolicyRecord>> {
            let found = self.doc.lock().unwrap().clone();
            if self.hold.swap(false, std::sync::atomic::Ordering::SeqCst) {
                self.read.notify_one();
                self.release.notified().await;
            }
            Ok(found)
        }
        async fn put(
            &self,
            _: &str,
            _: &str,
            _: i64,
            _: i64,
            _: &crate::storage::Event,
        ) -> crate::storage::StorageResult<i64> {
            unreachable!("not used")
        }
    }

    /// A policy change whose invalidation lands while a miss is loading the old policy: the
    /// old one is answered to that request only, never kept (before, it was cached for the
    /// whole lifetime, so the change did not apply here for minutes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalidation_during_a_load_is_not_lost() {
        let org = "0196a000-0000-7000-8000-000000000001";
        let record = |max_agents: i64, version: i64| PolicyRecord {
            org_id: OrgId::from(org.to_owned()),
            document: serde_json::json!({"max_agents": max_agents}).to_string(),
            version,
            updated_at: 1,
        };
        let store = Arc::new(HeldStore {
            doc: std::sync::Mutex::new(Some(record(5, 1))),
            hold: std::sync::atomic::AtomicBool::new(true),
            read: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
        });
        let policies = Arc::new(Policies::new(
            store.clone(),
            Arc::new(crate::ephemeral::LocalBus),
            std::time::Duration::from_secs(3600),
        ));
        let miss = tokio::spawn({
            let policies = policies.clone();
            async move { policies.get(org).await.unwrap().max_agents }
        });
        store.read.notified().await;
        // The change commits and is invalidated while the miss holds the old document.
        *store.doc.lock().unwrap() = Some(record(7, 2));
        policies
            .apply(&Invalidation::Policy {
                org_id: org.to_owned(),
            })
            .await;
        store.release.notify_one();
        assert_eq!(
            miss.await.unwrap(),
            Some(5),
            "the racing request saw the old one"
        );
        assert_eq!(policies.get(org).await.unwrap().max_agents, Some(7));
    }
}
