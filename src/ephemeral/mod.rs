//! Short-lived shared state: single-use markers (replay protection) and cache invalidation.
//!
//! Without Redis, markers live in the database (a restart does not forget them) and invalidation
//! is local to the process (other instances rely on short cache lifetimes). With Redis, markers are
//! `SET NX PXAT` and invalidations are published to every instance.

pub mod redis_backend;

use std::sync::Arc;

use async_trait::async_trait;

use crate::storage::ReplayStore;

#[derive(Debug, thiserror::Error)]
#[error("ephemeral store unavailable: {0}")]
pub struct EphemeralError(pub String);

/// Atomic set-if-absent of single-use markers.
#[async_trait]
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `key` until `expires_at` (Unix seconds). `Ok(true)` when newly recorded,
    /// `Ok(false)` when a live marker exists: the caller is seeing a replay.
    async fn set_if_absent(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, EphemeralError>;
}

/// Markers in the database (the embedded default).
pub struct DbReplayCache(pub Arc<dyn ReplayStore>);

#[async_trait]
impl ReplayCache for DbReplayCache {
    async fn set_if_absent(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, EphemeralError> {
        self.0
            .set_if_absent(key, expires_at, now)
            .await
            .map_err(|e| EphemeralError(e.to_string()))
    }
}

/// What a cache must forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Org { slug: String },
    Agent { org_id: String, agent_id: String },
    Keys { org_id: String },
    Partner { org_id: String, issuer: String },
}

impl Invalidation {
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Org { slug } => format!("org {slug}"),
            Invalidation::Agent { org_id, agent_id } => format!("agent {org_id} {agent_id}"),
            Invalidation::Keys { org_id } => format!("keys {org_id}"),
            Invalidation::Partner { org_id, issuer } => format!("partner {org_id} {issuer}"),
        }
    }
    pub fn decode(s: &str) -> Option<Self> {
        let mut it = s.split(' ');
        let inv = match (it.next()?, it.next(), it.next()) {
            ("org", Some(slug), None) => Invalidation::Org {
                slug: slug.to_owned(),
            },
            ("agent", Some(o), Some(a)) => Invalidation::Agent {
                org_id: o.to_owned(),
                agent_id: a.to_owned(),
            },
            ("keys", Some(o), None) => Invalidation::Keys {
                org_id: o.to_owned(),
            },
            ("partner", Some(o), Some(i)) => Invalidation::Partner {
                org_id: o.to_owned(),
                issuer: i.to_owned(),
            },
            _ => return None,
        };
        it.next().is_none().then_some(inv)
    }
}

/// Broadcasts invalidations to the other instances (the local caches are cleared by the caller).
#[async_trait]
pub trait InvalidationBus: Send + Sync + 'static {
    async fn publish(&self, inv: &Invalidation);
    /// True when other instances hear what is published (caches may then live longer).
    fn is_shared(&self) -> bool;
}

/// No other instance to tell.
pub struct LocalBus;

#[async_trait]
impl InvalidationBus for LocalBus {
    async fn publish(&self, _inv: &Invalidation) {}
    fn is_shared(&self) -> bool {
        false
    }
}

pub type DynReplay = Arc<dyn ReplayCache>;
pub type DynBus = Arc<dyn InvalidationBus>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidation_round_trip() {
        for inv in [
            Invalidation::Org {
                slug: "acme".into(),
            },
            Invalidation::Agent {
                org_id: "o".into(),
                agent_id: "a".into(),
            },
            Invalidation::Keys { org_id: "o".into() },
            Invalidation::Partner {
                org_id: "o".into(),
                issuer: "https://p.example/orgs/x".into(),
            },
        ] {
            assert_eq!(Invalidation::decode(&inv.encode()), Some(inv));
        }
        assert_eq!(Invalidation::decode("agent x"), None);
        assert_eq!(Invalidation::decode("keys a b"), None);
        assert_eq!(Invalidation::decode(""), None);
    }
}
