//! Validated identifiers, typed ids, agent status and auth method, secret wrappers, token
//! algorithms and the clock.
//!
//! Nothing here knows about HTTP or SQL; every other module builds on these types.

pub mod did;

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that must never reach a log line: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where the value is really needed (digest, signature, one-time display).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An organization slug: `^[a-z0-9][a-z0-9-]{0,62}$` (INTERFACE.md), immutable and never reused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrgSlug(String);

impl OrgSlug {
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        ok.then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Declares a string identifier newtype: `Deref<Target = str>`, `Display`, serde-transparent, so
/// it reads like the `String` it wraps while keeping organization, agent and partner ids apart.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new, time-ordered id (UUIDv7) stamped with `now_ms` of the injected clock.
            pub fn generate(now_ms: i64) -> Self {
                Self(new_id(now_ms))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Wraps a stored or already-checked id; it is not validated again.
        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// An organization's id (a UUIDv7 we generated; never its slug).
    OrgId
);
string_id!(
    /// An agent's id, which is also its OAuth `client_id`.
    AgentId
);
string_id!(
    /// A federation partner's id.
    PartnerId
);

/// A role in an organization (INTERFACE.md "Organization administration"). `Owner`, `Admin` and
/// `Member` are ranked; `Scim` is outside the ranking: an API key for the SCIM endpoints only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Scim,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Scim => "scim",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            "scim" => Some(Self::Scim),
            _ => None,
        }
    }
    /// The rank of a ranked role (`None` for `Scim`): owner 3, admin 2, member 1.
    pub fn rank(self) -> Option<u8> {
        match self {
            Role::Owner => Some(3),
            Role::Admin => Some(2),
            Role::Member => Some(1),
            Role::Scim => None,
        }
    }
    /// Whether a holder of `self` may act as `needed` requires: ranked roles include the ones
    /// below them; `Scim` satisfies only `Scim` (and nothing satisfies `Scim` but `Scim`, owners
    /// included: the SCIM endpoints take SCIM keys, people use the admin API).
    pub fn satisfies(self, needed: Role) -> bool {
        match (self.rank(), needed.rank()) {
            (Some(have), Some(need)) => have >= need,
            _ => self == needed,
        }
    }
}

/// A person's account status (issue 12). Only `active` users will sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Suspended,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "suspended" => Some(UserStatus::Suspended),
            _ => None,
        }
    }
}

/// Agent lifecycle. `Revoked` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Active,
    Suspended,
    Revoked,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// RFC 7591 `token_endpoint_auth_method` values we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// A public client (RFC 7591 §2, `none`): a native or browser app of the authorization code
    /// flow, which cannot keep a secret; PKCE binds its codes. Never an agent.
    None,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
    ];
    /// The methods that authenticate a client (all but `none`): what introspection and
    /// revocation accept.
    pub const AUTHENTICATING: [AuthMethod; 3] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

/// What a client of an organization is: an agent (a workload with a DID, its own identity) or an
/// app (a people-facing application of the authorization code flow: a web, native or browser
/// app, or an MCP client; no DID, its tokens speak for the person who signed in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    Agent,
    App,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Agent => "agent",
            ClientKind::App => "app",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [ClientKind::Agent, ClientKind::App]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Does `s` look like an id we generate (a lowercase hyphenated UUID)? Used to reject garbage
/// path segments before they reach storage or a cache.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok() && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// A new, time-ordered identifier (UUIDv7, RFC 9562 §5.7) stamped with `now_ms` from the injected
/// [`Clock`]: organizations, agents, partners and token `jti`s. A token's `jti` carries its issue
/// instant in milliseconds, compared with an agent's "tokens valid after" instant, so both must
/// come from the same clock. The 74 bits below the millisecond are random (RFC 9562 §6.2 method
/// "fixed bit-length dedicated counter" is not used: several clocks may run in one process in
/// tests, and ids need no order within a millisecond).
pub fn new_id(now_ms: i64) -> String {
    let ms = u64::try_from(now_ms).unwrap_or(0);
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
    uuid::Uuid::new_v7(ts).hyphenated().to_string()
}

/// The millisecond timestamp inside a UUIDv7 we generated (used to order a token's issue time
/// against an agent's "tokens valid after" instant with sub-second precision).
pub fn uuid_v7_millis(s: &str) -> Option<i64> {
    let u = uuid::Uuid::try_parse(s).ok()?;
    let (secs, nanos) = u.get_timestamp()?.to_unix();
    Some(secs as i64 * 1000 + (nanos / 1_000_000) as i64)
}

/// JWS algorithms we sign with (RFC 7518 §3.1, RFC 8037 §3.1 for `EdDSA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Alg {
    ES256,
    RS256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::ES256, Alg::RS256, Alg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
            Alg::EdDSA => "EdDSA",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Alg::ES256),
            "RS256" => Some(Alg::RS256),
            "EdDSA" => Some(Alg::EdDSA),
            _ => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Source of the current time. Handlers read it once per request and pass `now` down,
/// so domain logic is testable with fixed instants.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
    /// Microseconds since the Unix epoch (rate limits: 45,000 events a second are 22 µs apart).
    /// By default the milliseconds, scaled.
    fn now_us(&self) -> i64 {
        self.now_ms().saturating_mul(1000)
    }
}

/// The wall clock: the one place the process reads the system time.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
    fn now_us(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}

/// The wall clock plus an offset that only grows: integration tests run a real server on it and
/// pass time with [`OffsetClock::advance`] instead of sleeping (rate-limit windows, cache
/// freshness, key schedules), while everything else sees ordinary, moving time.
#[derive(Debug, Default)]
pub struct OffsetClock(std::sync::atomic::AtomicI64);

impl OffsetClock {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        SystemClock
            .now_ms()
            .saturating_add(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
    fn now_us(&self) -> i64 {
        SystemClock.now_us().saturating_add(
            self.0
                .load(std::sync::atomic::Ordering::SeqCst)
                .saturating_mul(1000),
        )
    }
}

/// RFC 3339 form of a Unix time, for JSON answers.
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A Unix time from an RFC 3339 timestamp (any offset; fractions of a second dropped).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(parse_rfc3339("2026-12-01T10:00:00Z"), Some(1_796_119_200));
        assert_eq!(parse_rfc3339(&rfc3339(1_796_119_200)), Some(1_796_119_200));
        assert_eq!(
            parse_rfc3339("2026-12-01T11:00:00+01:00"),
            Some(1_796_119_200)
        );
        assert_eq!(parse_rfc3339("tomorrow"), None);
    }

    #[test]
    fn slug_rules() {
        assert!(OrgSlug::parse("acme").is_some());
        assert!(OrgSlug::parse("0-a").is_some());
        assert!(OrgSlug::parse(&"a".repeat(63)).is_some());
        assert!(OrgSlug::parse(&"a".repeat(64)).is_none());
        assert!(OrgSlug::parse("-acme").is_none());
        assert!(OrgSlug::parse("Acme").is_none());
        assert!(OrgSlug::parse("").is_none());
        assert!(OrgSlug::parse("a_b").is_none());
    }

    #[test]
    fn typed_ids_read_like_strings_and_serialize_bare() {
        let id = OrgId::from("0196a000-0000-7000-8000-000000000001");
        let s: &str = &id;
        assert_eq!(s, "0196a000-0000-7000-8000-000000000001");
        assert_eq!(id.to_string(), s);
        assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!(s));
        assert_eq!(
            serde_json::from_str::<OrgId>(&format!("{s:?}")).unwrap(),
            id
        );
        assert_eq!(String::from(id.clone()), s);
        assert!(is_uuid(&AgentId::generate(1_767_225_600_000)));
        assert_ne!(PartnerId::generate(0), PartnerId::generate(0));
    }

    #[test]
    fn status_and_auth_method_round_trip_and_reject_unknown() {
        for st in [
            AgentStatus::Active,
            AgentStatus::Suspended,
            AgentStatus::Revoked,
        ] {
            assert_eq!(AgentStatus::parse(st.as_str()), Some(st));
        }
        for m in AuthMethod::ALL {
            assert_eq!(AuthMethod::parse(m.as_str()), Some(m));
        }
        assert_eq!(AgentStatus::parse("Active"), None);
        assert_eq!(AuthMethod::parse("None"), None);
        assert!(!AuthMethod::PrivateKeyJwt.uses_secret());
        assert!(AuthMethod::ClientSecretPost.uses_secret());
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
    }

    #[test]
    fn uuid_v7_carries_millis() {
        let at = 1_767_225_600_123; // 2026-01-01T00:00:00.123Z
        let id = new_id(at);
        assert_eq!(uuid_v7_millis(&id), Some(at));
        assert!(new_id(at + 1) > id, "ordered by millisecond");
        assert_ne!(new_id(at), id);
        assert!(is_uuid(&id));
        assert!(!is_uuid("../etc"));
    }
}
