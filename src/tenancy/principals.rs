//! Admin credentials: who a bearer token on the admin API is ([`Principals::authenticate`]),
//! organization API keys (create, list, rotate, revoke) and platform admin tokens.
//!
//! Formats (recognizable, so secret scanners can find leaked ones): an API key is
//! `aidp_k_` + its id (32 hex) + `_` + 43 characters of base64url (256 random bits); a platform
//! admin token is `aidp_p_` + id + `_` + secret. The id finds the row; only an HMAC-SHA-256
//! digest of the whole token is stored and compared in constant time. Every admin request reads
//! the row (the admin API is not a hot path), so a revocation holds on every instance at once,
//! with or without Redis, including one made by the CLI.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::access::{Action, Principal, Role};
use super::orgs::validate_name;
use crate::admin_error::AdminError;
use crate::keys::SecretDigester;
use crate::keys::envelope::random_token;
use crate::model::{Clock, Secret, parse_rfc3339, rfc3339};
use crate::storage::{
    AdminTokenRecord, ApiKeyRecord, Event, MetaStore, OrgRecord, PrincipalStore, Rotation,
    StorageError,
};

/// The `meta` row holding the bootstrap token's digest (`VERSION:BASE64URL`). Deleting it
/// (`agentidp admin-token revoke bootstrap`) retires the bootstrap token without a restart.
pub const META_BOOTSTRAP: &str = "bootstrap_token_digest";
/// The prefix of [`META_BOOTSTRAP`] once the bootstrap token is retired: `retired:` and the
/// digest it had. No new token is generated at the next start, and the same token configured
/// again (`AGENTIDP_BOOTSTRAP_TOKEN` left in every instance's environment) stays retired; only a
/// different configured token, an explicit choice, brings a bootstrap token back.
pub const BOOTSTRAP_RETIRED: &str = "retired";

/// How [`META_BOOTSTRAP`] records a digest: `VERSION:BASE64URL`.
pub fn bootstrap_record(version: i64, digest: &[u8]) -> String {
    use base64::prelude::*;
    format!("{version}:{}", BASE64_URL_SAFE_NO_PAD.encode(digest))
}

/// Whether a recorded [`META_BOOTSTRAP`] value is a retirement.
pub fn is_retired(recorded: &str) -> bool {
    recorded == BOOTSTRAP_RETIRED || recorded.starts_with("retired:")
}

const API_KEY_PREFIX: &str = "aidp_k_";
const ADMIN_TOKEN_PREFIX: &str = "aidp_p_";
/// A use is written back at most this often per credential (seconds), or when the address
/// changes: `last_used_at` is for people, not for accounting.
const TOUCH_EVERY: i64 = 60;
/// The most CIDRs one key may list.
const MAX_CIDRS: usize = 64;
/// The longest grace period of a rotated key (seven days).
const MAX_GRACE: i64 = 7 * 24 * 3600;

/// Why an admin token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: unknown, malformed, revoked or expired (`reason` goes to the log only; the client
    /// learns nothing about which).
    Unauthenticated(&'static str),
    /// 403: a key used from outside its `allowed_cidrs`.
    AddressNotAllowed,
    /// 503: the database could not be asked.
    Unavailable,
}

pub struct Principals {
    pub store: Arc<dyn PrincipalStore>,
    pub meta: Arc<dyn MetaStore>,
    pub digester: Arc<SecretDigester>,
    /// Digest (and its key version) of the bootstrap token, as recorded at start-up.
    pub bootstrap: (i64, Vec<u8>),
    /// [`bootstrap_record`] of it: the bootstrap token is accepted only while the database still
    /// records exactly this (not retired, not replaced by another instance's new token).
    bootstrap_recorded: String,
    pub clock: Arc<dyn Clock>,
    /// When each credential's use was last written, and from where (bounded).
    pub touched: moka::future::Cache<String, (i64, IpAddr)>,
}

/// Splits `aidp_k_<id>_<secret>` (any credential of this shape: API keys, admin tokens,
/// invite links): the id, if the token has this prefix and shape.
pub(crate) fn token_id<'a>(token: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = token.strip_prefix(prefix)?;
    let (id, secret) = rest.split_at_checked(32)?;
    let secret = secret.strip_prefix('_')?;
    (id.bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && !secret.is_empty())
    .then_some(id)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new credential of `prefix` for `id`.
pub(crate) fn new_token(prefix: &str, id: &str) -> Secret {
    Secret::new(format!("{prefix}{id}_{}", random_token().expose()))
}

/// Whether `ip` is inside one of `cidrs` (an empty list allows every address). A stored entry
/// that no longer parses allows nothing.
pub fn address_allowed(cidrs: &[String], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    cidrs.is_empty()
        || cidrs
            .iter()
            .filter_map(|c| parse_cidr(c))
            .any(|n| n.contains(&ip))
}

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address (a host route).
pub fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Validates a list of CIDRs for `field`, returning them in canonical form.
pub fn validate_cidrs(field: &'static str, list: &[String]) -> Result<Vec<String>, AdminError> {
    if list.len() > MAX_CIDRS {
        return Err(AdminError::field(
            field,
            format!("at most {MAX_CIDRS} entries"),
        ));
    }
    list.iter()
        .map(|c| {
            parse_cidr(c).map(|n| n.trunc().to_string()).ok_or_else(|| {
                AdminError::field(
                    field,
                    format!("{c:?} is not a CIDR such as 10.0.0.0/8 or an IP address"),
                )
            })
        })
        .collect()
}

/// Whether every network of `inner` lies inside one of `outer` (an empty `outer`: anywhere; an
/// empty `inner` is anywhere, so only within an empty `outer`).
pub fn cidrs_within(inner: &[String], outer: &[String]) -> bool {
    if outer.is_empty() {
        return true;
    }
    let outer: Vec<ipnet::IpNet> = outer.iter().filter_map(|c| parse_cidr(c)).collect();
    !inner.is_empty()
        && inner
            .iter()
            .all(|c| parse_cidr(c).is_some_and(|n| outer.iter().any(|o| o.contains(&n))))
}

/// Whether `key` is restricted at least as much as `actor`: its CIDRs within the actor's, and
/// expiring no later.
fn reaches_no_further(key: &ApiKeyRecord, actor: &ApiKeyRecord) -> bool {
    let expiry_ok = match (key.expires_at, actor.expires_at) {
        (_, None) => true,
        (Some(k), Some(a)) => k <= a,
        (None, Some(_)) => false,
    };
    expiry_ok && cidrs_within(&key.allowed_cidrs, &actor.allowed_cidrs)
}

/// `POST /api/v1/orgs/{org}/api-keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// 1 to 200 printable characters.
    pub name: String,
    /// `owner`, `admin`, `member` or `scim`; never above the creator's own role.
    pub role: String,
    /// RFC 3339, in the future; without, the key does not expire.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// CIDRs (or single addresses) the key may be used from; without, anywhere.
    pub allowed_cidrs: Option<Vec<String>>,
}

/// An API key as the admin API shows it: never its secret, except `key` in the answer that
/// created or rotated it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    pub id: String,
    /// The key itself: in the answer of its creation or rotation only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub name: String,
    pub role: Role,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    pub allowed_cidrs: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// `platform`, `admin_token:ID` or `api_key:ID`.
    pub created_by: String,
    #[schema(format = DateTime)]
    pub rotated_at: Option<String>,
    /// Until when the secret before the last rotation is still accepted.
    #[schema(format = DateTime)]
    pub previous_key_valid_until: Option<String>,
    /// Updated at most once a minute (and when the address changes).
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    pub last_used_ip: Option<String>,
}

pub fn view(k: &ApiKeyRecord, key: Option<&Secret>) -> ApiKeyResponse {
    ApiKeyResponse {
        id: k.id.clone(),
        key: key.map(|s| s.expose().to_owned()),
        name: k.name.clone(),
        role: k.role,
        expires_at: k.expires_at.map(rfc3339),
        allowed_cidrs: k.allowed_cidrs.clone(),
        created_at: rfc3339(k.created_at),
        created_by: k.created_by.clone(),
        rotated_at: k.rotated_at.map(rfc3339),
        previous_key_valid_until: k.prev_expires_at.map(rfc3339),
        last_used_at: k.last_used_at.map(rfc3339),
        last_used_ip: k.last_used_ip.clone(),
    }
}

impl Principals {
    pub fn new(
        store: Arc<dyn PrincipalStore>,
        meta: Arc<dyn MetaStore>,
        digester: Arc<SecretDigester>,
        bootstrap: (i64, Vec<u8>),
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            meta,
            digester,
            bootstrap_recorded: bootstrap_record(bootstrap.0, &bootstrap.1),
            bootstrap,
            clock,
            touched: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(3600))
                .build(),
        }
    }

    /// The principal of an admin bearer token used from `ip`.
    pub async fn authenticate(&self, token: &Secret, ip: IpAddr) -> Result<Principal, Refusal> {
        let t = token.expose();
        let now = self.clock.now();
        let unavailable = |_: StorageError| Refusal::Unavailable;
        if let Some(id) = token_id(t, API_KEY_PREFIX) {
            let key = self
                .store
                .api_key(id)
                .await
                .map_err(unavailable)?
                .ok_or(Refusal::Unauthenticated("unknown api key"))?;
            let current = self.digester.verify(t, key.digest_version, &key.digest);
            let previous = !current
                && key.prev_expires_at.is_some_and(|until| now < until)
                && match (&key.prev_digest, key.prev_digest_version) {
                    (Some(d), Some(v)) => self.digester.verify(t, v, d),
                    _ => false,
                };
            if !current && !previous {
                return Err(Refusal::Unauthenticated("unknown api key"));
            }
            if key.revoked_at.is_some() {
                return Err(Refusal::Unauthenticated("revoked api key"));
            }
            if key.expires_at.is_some_and(|e| e <= now) {
                return Err(Refusal::Unauthenticated("expired api key"));
            }
            if !address_allowed(&key.allowed_cidrs, ip) {
                return Err(Refusal::AddressNotAllowed);
            }
            if self.due(&key.id, now, ip).await {
                let _ = self
                    .store
                    .touch_api_key(&key.id, now, &ip.to_string())
                    .await;
            }
            return Ok(Principal::ApiKey {
                id: key.id,
                org_id: key.org_id.to_string(),
                role: key.role,
                previous_secret: previous,
            });
        }
        if let Some(id) = token_id(t, ADMIN_TOKEN_PREFIX) {
            let rec = self
                .store
                .admin_token(id)
                .await
                .map_err(unavailable)?
                .ok_or(Refusal::Unauthenticated("unknown admin token"))?;
            if !self.digester.verify(t, rec.digest_version, &rec.digest) {
                return Err(Refusal::Unauthenticated("unknown admin token"));
            }
            if rec.revoked_at.is_some() {
                return Err(Refusal::Unauthenticated("revoked admin token"));
            }
            if self.due(&rec.id, now, ip).await {
                let _ = self.store.touch_admin_token(&rec.id, now).await;
            }
            return Ok(Principal::Platform {
                token_id: Some(rec.id),
            });
        }
        let (version, digest) = &self.bootstrap;
        if !self.digester.verify(t, *version, digest) {
            return Err(Refusal::Unauthenticated("unknown token"));
        }
        // Retired (`agentidp admin-token revoke bootstrap`) or replaced (an instance started
        // with another AGENTIDP_BOOTSTRAP_TOKEN) since this instance started?
        match self.meta.get(META_BOOTSTRAP).await.map_err(unavailable)? {
            Some(v) if v == self.bootstrap_recorded => Ok(Principal::Platform { token_id: None }),
            _ => Err(Refusal::Unauthenticated(
                "retired or replaced bootstrap token",
            )),
        }
    }

    /// Whether a use of `id` at `now` from `ip` should be written back.
    async fn due(&self, id: &str, now: i64, ip: IpAddr) -> bool {
        let due = self
            .touched
            .get(id)
            .await
            .is_none_or(|(at, from)| now - at >= TOUCH_EVERY || from != ip);
        if due {
            self.touched.insert(id.to_owned(), (now, ip)).await;
        }
        due
    }

    /// Creates an API key of `org`; the key is in the answer only.
    pub async fn create_api_key(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        input: NewApiKey,
    ) -> Result<(ApiKeyRecord, Secret), AdminError> {
        principal
            .check(&org.id, Action::Write)
            .map_err(AdminError::from)?;
        validate_name("name", &input.name)?;
        let role = Role::parse(&input.role)
            .ok_or_else(|| AdminError::field("role", "must be owner, admin, member or scim"))?;
        principal.may_grant(&org.id, role).map_err(|_| {
            AdminError::field("role", "must not be above the role of the key's creator")
        })?;
        let now = self.clock.now();
        let expires_at: Option<i64> = match input.expires_at.as_deref() {
            None => None,
            Some(s) => match parse_rfc3339(s) {
                Some(t) if t > now => Some(t),
                Some(_) => return Err(AdminError::field("expires_at", "must be in the future")),
                None => {
                    return Err(AdminError::field(
                        "expires_at",
                        "must be an RFC 3339 date-time such as 2027-01-31T00:00:00Z",
                    ));
                }
            },
        };
        let mut allowed_cidrs =
            validate_cidrs("allowed_cidrs", &input.allowed_cidrs.unwrap_or_default())?;
        let mut expires_at = expires_at;
        // A key never makes a key that reaches further than itself: not from more addresses,
        // not for longer (unset, they default to its own), or a key fenced to 10.0.0.0/8 that
        // expires tomorrow could mint itself a permanent, unfenced twin (review finding).
        if let Some(creator) = self.creator_key(principal).await? {
            if allowed_cidrs.is_empty() {
                allowed_cidrs.clone_from(&creator.allowed_cidrs);
            } else if !cidrs_within(&allowed_cidrs, &creator.allowed_cidrs) {
                return Err(AdminError::field(
                    "allowed_cidrs",
                    "must lie within the creating key's own allowed_cidrs",
                ));
            }
            match (expires_at, creator.expires_at) {
                (None, limit) => expires_at = limit,
                (Some(e), Some(limit)) if e > limit => {
                    return Err(AdminError::field(
                        "expires_at",
                        "must not be after the creating key's own expiry",
                    ));
                }
                _ => {}
            }
        }
        let id = new_id();
        let secret = new_token(API_KEY_PREFIX, &id);
        let rec = ApiKeyRecord {
            org_id: org.id.clone(),
            id: id.clone(),
            name: input.name.trim().to_owned(),
            role,
            digest: self.digester.digest(secret.expose()),
            digest_version: self.digester.version(),
            prev_digest: None,
            prev_digest_version: None,
            prev_expires_at: None,
            allowed_cidrs,
            expires_at,
            created_at: now,
            created_by: principal.actor(),
            rotated_at: None,
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
        };
        let event = self.event(org, "api_key.created", &rec, principal, now);
        self.store.create_api_key(&rec, &event).await?;
        Ok((rec, secret))
    }

    pub async fn list_api_keys(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApiKeyRecord>, AdminError> {
        principal
            .check(&org.id, Action::Read)
            .map_err(AdminError::from)?;
        Ok(self.store.list_api_keys(&org.id, after, limit).await?)
    }

    /// The record of the API key acting, when an API key is (`None` for a platform admin).
    /// A key presented with its previous secret may not manage keys at all.
    async fn creator_key(&self, principal: &Principal) -> Result<Option<ApiKeyRecord>, AdminError> {
        match principal {
            // A person's reach is their role's, as the platform's is everything.
            Principal::Platform { .. } | Principal::User { .. } => Ok(None),
            Principal::ApiKey {
                previous_secret: true,
                ..
            } => Err(AdminError::Forbidden),
            Principal::ApiKey { id, .. } => Ok(Some(
                self.store.api_key(id).await?.ok_or(AdminError::Forbidden)?,
            )),
        }
    }

    /// A key of `org` the principal may manage: not above its own role, nor reaching further
    /// (addresses, lifetime) than the key acting.
    async fn manageable(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        id: &str,
    ) -> Result<ApiKeyRecord, AdminError> {
        principal
            .check(&org.id, Action::Write)
            .map_err(AdminError::from)?;
        let key = self
            .store
            .api_key(id)
            .await?
            .filter(|k| k.org_id == org.id && k.revoked_at.is_none())
            .ok_or(AdminError::NotFound)?;
        principal
            .may_grant(&org.id, key.role)
            .map_err(AdminError::from)?;
        if let Some(creator) = self.creator_key(principal).await?
            && !reaches_no_further(&key, &creator)
        {
            // Rotating it would hand this caller a key that reaches further than its own.
            return Err(AdminError::Forbidden);
        }
        Ok(key)
    }

    /// A new secret for the key; the old one keeps working for `grace_secs` (0 to 7 days;
    /// without, it stops at once).
    pub async fn rotate_api_key(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        id: &str,
        grace_secs: Option<i64>,
    ) -> Result<(ApiKeyRecord, Secret), AdminError> {
        if grace_secs.is_some_and(|g| !(0..=MAX_GRACE).contains(&g)) {
            return Err(AdminError::field(
                "grace_period_secs",
                format!("must be between 0 and {MAX_GRACE}"),
            ));
        }
        let key = self.manageable(principal, org, id).await?;
        let now = self.clock.now();
        let secret = new_token(API_KEY_PREFIX, &key.id);
        let digest = self.digester.digest(secret.expose());
        let prev_valid_until = grace_secs.filter(|g| *g > 0).map(|g| now + g);
        let event = self.event(org, "api_key.rotated", &key, principal, now);
        self.store
            .rotate_api_key(
                &org.id,
                &key.id,
                &Rotation {
                    digest: &digest,
                    digest_version: self.digester.version(),
                    prev_valid_until,
                    at: now,
                },
                &event,
            )
            .await?;
        let rec = self
            .store
            .api_key(&key.id)
            .await?
            .ok_or(AdminError::NotFound)?;
        Ok((rec, secret))
    }

    /// Revokes the key at once (every instance reads the row on each request).
    pub async fn revoke_api_key(
        &self,
        principal: &Principal,
        org: &OrgRecord,
        id: &str,
    ) -> Result<(), AdminError> {
        let key = self.manageable(principal, org, id).await?;
        let now = self.clock.now();
        let event = self.event(org, "api_key.revoked", &key, principal, now);
        Ok(self
            .store
            .revoke_api_key(&org.id, &key.id, now, &event)
            .await?)
    }

    fn event(
        &self,
        org: &OrgRecord,
        kind: &'static str,
        key: &ApiKeyRecord,
        principal: &Principal,
        at: i64,
    ) -> Event {
        Event {
            org_id: Some(org.id.clone()),
            kind,
            subject: key.id.clone(),
            data: json!({"id": key.id, "name": key.name, "role": key.role.as_str(), "actor": principal.actor()}),
            at,
        }
    }

    /// `agentidp admin-token create`: a new platform admin token, shown once.
    pub async fn create_admin_token(
        &self,
        name: &str,
    ) -> Result<(AdminTokenRecord, Secret), AdminError> {
        validate_name("name", name)?;
        let now = self.clock.now();
        let id = new_id();
        let secret = new_token(ADMIN_TOKEN_PREFIX, &id);
        let rec = AdminTokenRecord {
            id: id.clone(),
            name: name.trim().to_owned(),
            digest: self.digester.digest(secret.expose()),
            digest_version: self.digester.version(),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        let event = Event {
            org_id: None,
            kind: "admin_token.created",
            subject: id,
            data: json!({"name": rec.name}),
            at: now,
        };
        self.store.create_admin_token(&rec, &event).await?;
        Ok((rec, secret))
    }

    pub async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, AdminError> {
        Ok(self.store.admin_tokens().await?)
    }

    /// Revokes a platform admin token; `bootstrap` retires the bootstrap token.
    pub async fn revoke_admin_token(&self, id: &str) -> Result<(), AdminError> {
        if id == "bootstrap" {
            return match self.meta.get(META_BOOTSTRAP).await? {
                Some(v) if !is_retired(&v) => Ok(self
                    .meta
                    .set(META_BOOTSTRAP, &format!("{BOOTSTRAP_RETIRED}:{v}"))
                    .await?),
                _ => Err(AdminError::NotFound),
            };
        }
        let event = Event {
            org_id: None,
            kind: "admin_token.revoked",
            subject: id.to_owned(),
            data: json!({}),
            at: self.clock.now(),
        };
        Ok(self
            .store
            .revoke_admin_token(id, self.clock.now(), &event)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            token_id(&format!("aidp_k_{id}_s3cr_et"), API_KEY_PREFIX),
            Some(id)
        );
        assert_eq!(token_id(&format!("aidp_k_{id}_"), API_KEY_PREFIX), None);
        assert_eq!(token_id(&format!("aidp_k_{id}x"), API_KEY_PREFIX), None);
        assert_eq!(token_id(&format!("aidp_p_{id}_s"), API_KEY_PREFIX), None);
        assert_eq!(
            token_id(&format!("aidp_k_{}_s", id.to_uppercase()), API_KEY_PREFIX),
            None
        );
        assert_eq!(token_id("aidp_k_é", API_KEY_PREFIX), None);
        let t = new_token(API_KEY_PREFIX, id);
        assert_eq!(token_id(t.expose(), API_KEY_PREFIX), Some(id));
        assert_eq!(t.expose().len(), 7 + 32 + 1 + 43);
    }

    #[test]
    fn narrower_cidrs_lie_within() {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(cidrs_within(
            &v(&["10.1.0.0/16", "10.2.3.4/32"]),
            &v(&["10.0.0.0/8"])
        ));
        assert!(!cidrs_within(&v(&["0.0.0.0/0"]), &v(&["10.0.0.0/8"])));
        assert!(
            !cidrs_within(&[], &v(&["10.0.0.0/8"])),
            "anywhere is not within a fence"
        );
        assert!(cidrs_within(&[], &[]));
        assert!(cidrs_within(&v(&["192.0.2.0/24"]), &[]));
        assert!(!cidrs_within(&v(&["2001:db8::/32"]), &v(&["10.0.0.0/8"])));
    }

    #[test]
    fn cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let list = vec!["10.0.0.0/8".to_string(), "2001:db8::1".to_string()];
        assert!(address_allowed(&list, ip("10.2.3.4")));
        assert!(address_allowed(&list, ip("::ffff:10.2.3.4")));
        assert!(address_allowed(&list, ip("2001:db8::1")));
        assert!(!address_allowed(&list, ip("2001:db8::2")));
        assert!(!address_allowed(&list, ip("127.0.0.1")));
        assert!(address_allowed(&[], ip("127.0.0.1")));
        assert!(!address_allowed(&["garbage".into()], ip("127.0.0.1")));
        assert_eq!(
            validate_cidrs("f", &["10.1.2.3/8".into(), "192.0.2.1".into()]).unwrap(),
            ["10.0.0.0/8", "192.0.2.1/32"]
        );
        assert!(validate_cidrs("f", &["10.0.0.0/33".into()]).is_err());
        assert!(validate_cidrs("f", &vec!["10.0.0.0/8".to_string(); 65]).is_err());
    }
}
