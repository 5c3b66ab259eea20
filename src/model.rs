//! Validated identifiers, secret wrappers, token algorithms and the clock.
//!
//! Nothing here knows about HTTP or SQL; every other module builds on these types.

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

/// Does `s` look like an id we generate (a lowercase hyphenated UUID)? Used to reject garbage
/// path segments before they reach storage or a cache.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok() && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// A new, time-ordered identifier (UUIDv7), used for organizations, agents and token `jti`s.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
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
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// RFC 3339 form of a Unix time, for JSON answers.
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
    }

    #[test]
    fn uuid_v7_carries_millis() {
        let before = SystemClock.now_ms();
        let id = new_id();
        let ms = uuid_v7_millis(&id).unwrap();
        assert!(ms >= before - 1 && ms <= SystemClock.now_ms() + 1);
        assert!(is_uuid(&id));
        assert!(!is_uuid("../etc"));
    }
}
