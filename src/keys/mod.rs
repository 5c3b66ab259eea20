//! Organization signing keys: creation, the key-lifecycle state machine, a lazy per-organization
//! cache of decrypted key pairs, JWKS rendering and rotation.
//!
//! Lifecycle as data: each key row has created / activates-at / retires-at / removed-at times and
//! its state is computed from them at `now`, so every instance agrees without messages.
//! A new key is published (pending) before it signs; a retired key stays published until every
//! token it signed has expired (RFC 7517 consumers cache JWKS for `max-age`).

pub mod envelope;
pub mod signing;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use moka::future::Cache;
use serde_json::Value;

use crate::model::Alg;
use crate::storage::{Event, KeyRecord, KeyStore, OrgRecord, StorageError};
pub use envelope::{DataKey, MasterKey, SecretDigester};
pub use signing::{Signer, SigningError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("key material does not open: {0}")]
    Envelope(#[from] envelope::EnvelopeError),
    #[error("no active {0} key")]
    NoActiveKey(Alg),
    #[error("key generation task failed")]
    Join,
}

/// The state of a key at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// Published and signing.
    Active,
    /// Published so tokens it signed still verify; no longer signing.
    Retired,
    /// Neither published nor signing.
    Gone,
}

pub fn key_state(
    activates_at: i64,
    retires_at: Option<i64>,
    removed_at: Option<i64>,
    now: i64,
) -> KeyState {
    if removed_at.is_some_and(|r| now >= r) {
        KeyState::Gone
    } else if retires_at.is_some_and(|r| now >= r) {
        KeyState::Retired
    } else if now < activates_at {
        KeyState::Pending
    } else {
        KeyState::Active
    }
}

/// A decrypted key, ready to sign and verify. Loaded for every organization in use (10,000
/// organizations: 30,000 of these), so what is rarely needed is kept in its smallest form: the
/// public JWK as its stored JSON text (the JWKS is these joined; DID documents parse it when
/// they are rendered), the private key as PKCS#8 until it first signs, the public key parsed
/// when it first verifies (the token endpoint only signs).
pub struct LoadedKey {
    pub kid: String,
    pub alg: Alg,
    /// The public JWK as stored: compact JSON with its members in order, as `serde_json` wrote it.
    pub public_jwk: Box<str>,
    /// Parsed on first use.
    pub signer: signing::LazySigner,
    verifying: std::sync::OnceLock<Option<crate::jose::VerifyingKey>>,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub removed_at: Option<i64>,
    pub created_at: i64,
}

impl LoadedKey {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kid: String,
        alg: Alg,
        public_jwk: String,
        pkcs8: Vec<u8>,
        activates_at: i64,
        retires_at: Option<i64>,
        removed_at: Option<i64>,
        created_at: i64,
    ) -> Self {
        Self {
            kid,
            alg,
            public_jwk: public_jwk.into_boxed_str(),
            signer: signing::LazySigner::new(alg, pkcs8),
            verifying: std::sync::OnceLock::new(),
            activates_at,
            retires_at,
            removed_at,
            created_at,
        }
    }

    /// The public key, parsed on first use (`None` if the stored JWK does not parse: then
    /// nothing verifies against it).
    pub fn verifying(&self) -> Option<&crate::jose::VerifyingKey> {
        self.verifying
            .get_or_init(|| {
                serde_json::from_str::<Value>(&self.public_jwk)
                    .ok()
                    .and_then(|v| crate::jose::VerifyingKey::from_jwk(&v).ok())
            })
            .as_ref()
    }

    /// The public JWK as a JSON value (parsed for each call: for rendering, which is cached).
    pub fn public_jwk_value(&self) -> Value {
        serde_json::from_str(&self.public_jwk).unwrap_or(Value::Null)
    }

    pub fn state(&self, now: i64) -> KeyState {
        key_state(self.activates_at, self.retires_at, self.removed_at, now)
    }
    pub fn is_published(&self, now: i64) -> bool {
        self.state(now) != KeyState::Gone
    }
}

/// A serialized JWKS valid from one instant until the next key-state change.
struct RenderedJwks {
    from: i64,
    until: i64,
    bytes: Arc<[u8]>,
}

/// One organization's keys, as loaded from storage.
pub struct OrgKeys {
    pub org_id: String,
    pub keys: Vec<Arc<LoadedKey>>,
    jwks_cache: RwLock<Option<RenderedJwks>>,
}

impl OrgKeys {
    /// The key that signs for `alg` at `now`: the most recently activated active key.
    pub fn signing_key(&self, alg: Alg, now: i64) -> Option<&Arc<LoadedKey>> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.state(now) == KeyState::Active)
            .max_by_key(|k| (k.activates_at, k.created_at))
    }

    /// A published key by `kid` (verification accepts pending, active and retired keys).
    pub fn published(&self, kid: &str, now: i64) -> Option<&Arc<LoadedKey>> {
        self.keys
            .iter()
            .find(|k| k.kid == kid && k.is_published(now))
    }

    /// The earliest future instant at which some key changes state.
    pub fn next_transition(&self, now: i64) -> i64 {
        self.keys
            .iter()
            .flat_map(|k| [Some(k.activates_at), k.retires_at, k.removed_at])
            .flatten()
            .filter(|t| *t > now)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// The RFC 7517 JWK Set of every published key, serialized once per state change.
    pub fn jwks_json(&self, now: i64) -> Arc<[u8]> {
        if let Ok(guard) = self.jwks_cache.read()
            && let Some(r) = guard.as_ref()
            && now >= r.from
            && now < r.until
        {
            return r.bytes.clone();
        }
        // The stored JWKs joined: the same bytes `serde_json` would write for the set, since
        // each was written by it.
        let mut out = String::from(r#"{"keys":["#);
        for (i, k) in self.keys.iter().filter(|k| k.is_published(now)).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&k.public_jwk);
        }
        out.push_str("]}");
        let bytes: Arc<[u8]> = out.into_bytes().into();
        if let Ok(mut guard) = self.jwks_cache.write() {
            *guard = Some(RenderedJwks {
                from: now,
                until: self.next_transition(now),
                bytes: bytes.clone(),
            });
        }
        bytes
    }
}

/// Creates, caches and rotates organization keys.
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    master: Arc<MasterKey>,
    cache: Cache<String, Arc<OrgKeys>>,
    activation_delay: i64,
    max_token_lifetime: i64,
    loads: std::sync::atomic::AtomicU64,
    /// [`crate::ephemeral::Generation`]: a load racing an invalidation is not kept.
    generation: crate::ephemeral::Generation,
}

/// How long a loaded key set is trusted before it is re-read: a key rotated by another instance
/// or the CLI is seen within this time, well inside the activation delay.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// Leeway added after a retired key's last token expires before the key leaves the JWKS.
const REMOVAL_LEEWAY_SECS: i64 = 120;

impl KeyService {
    pub fn new(
        store: Arc<dyn KeyStore>,
        master: Arc<MasterKey>,
        activation_delay: i64,
        max_token_lifetime: i64,
    ) -> Self {
        Self {
            store,
            master,
            cache: Cache::builder()
                .max_capacity(20_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            activation_delay,
            max_token_lifetime,
            loads: std::sync::atomic::AtomicU64::new(0),
            generation: Default::default(),
        }
    }

    /// The organization's key rows not yet removed (for the admin view).
    pub async fn records(&self, org_id: &str, now: i64) -> Result<Vec<KeyRecord>, KeyError> {
        Ok(self.store.list(org_id, now).await?)
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Generates one key per alg and seals it under `dek`. RSA generation runs on the blocking pool.
    pub async fn generate_records(
        org_id: &str,
        dek: Arc<DataKey>,
        now: i64,
        activates_at: i64,
    ) -> Result<Vec<KeyRecord>, KeyError> {
        let mut records = Vec::with_capacity(3);
        for alg in Alg::ALL {
            let g = tokio::task::spawn_blocking(move || signing::generate(alg))
                .await
                .map_err(|_| KeyError::Join)??;
            records.push(KeyRecord {
                org_id: org_id.into(),
                kid: g.kid.clone(),
                alg,
                public_jwk: g.public_jwk.to_string(),
                private_enc: dek.seal_private_key(org_id, &g.kid, alg.as_str(), &g.pkcs8),
                created_at: now,
                activates_at,
                retires_at: None,
                removed_at: None,
            });
        }
        Ok(records)
    }

    /// The keys of `org`, loaded and decrypted on first use and cached. Single-flight: callers
    /// missing at once share one load (one read, one decryption of each key).
    pub async fn org_keys(&self, org: &OrgRecord, now: i64) -> Result<Arc<OrgKeys>, KeyError> {
        if let Some(k) = self.cache.get(org.id.as_str()).await {
            return Ok(k);
        }
        let noted = self.generation.current();
        let found = self
            .cache
            .try_get_with(org.id.to_string(), async {
                self.load(org, now).await.map(Arc::new)
            })
            .await
            .map_err(|e: Arc<KeyError>| match Arc::try_unwrap(e) {
                Ok(e) => e,
                // Shared with another waiter: the storage error's text is what is left to give.
                Err(shared) => KeyError::Storage(StorageError::Other(shared.to_string())),
            })?;
        if self.generation.moved_since(noted) {
            self.cache.invalidate(org.id.as_str()).await;
        }
        Ok(found)
    }

    /// How many times key sets were loaded (read and decrypted) since start.
    pub fn loads(&self) -> u64 {
        self.loads.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn load(&self, org: &OrgRecord, now: i64) -> Result<OrgKeys, KeyError> {
        self.loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let records = self.store.list(&org.id, now).await?;
        let dek = self
            .master
            .unwrap_data_key(&org.id, org.dek_mk_version, &org.dek_wrapped)?;
        let mut keys = Vec::with_capacity(records.len());
        for r in records {
            let alg = r.alg;
            let pkcs8 = dek.open_private_key(&org.id, &r.kid, alg.as_str(), &r.private_enc)?;
            keys.push(Arc::new(LoadedKey::new(
                r.kid,
                alg,
                r.public_jwk,
                pkcs8,
                r.activates_at,
                r.retires_at,
                r.removed_at,
                r.created_at,
            )));
        }
        Ok(OrgKeys {
            org_id: org.id.to_string(),
            keys,
            jwks_cache: RwLock::new(None),
        })
    }

    /// Forget the cached keys of an organization (after a rotation here or elsewhere).
    pub async fn invalidate(&self, org_id: &str) {
        self.generation.bump();
        self.cache.invalidate(org_id).await;
    }

    /// Forget every cached key set (the invalidation bus reconnected).
    pub fn invalidate_all(&self) {
        self.generation.bump();
        self.cache.invalidate_all();
    }

    /// Rotates every alg of `org`: new keys are published now and sign after the activation delay;
    /// current keys retire when the new ones activate and leave the JWKS once their last token has expired.
    pub async fn rotate(&self, org: &OrgRecord, now: i64) -> Result<Vec<KeyRecord>, KeyError> {
        let dek = Arc::new(self.master.unwrap_data_key(
            &org.id,
            org.dek_mk_version,
            &org.dek_wrapped,
        )?);
        let activates_at = now + self.activation_delay;
        let new_keys = Self::generate_records(&org.id, dek, now, activates_at).await?;
        let removed_at = activates_at + self.max_token_lifetime + REMOVAL_LEEWAY_SECS;
        let retire: Vec<(String, i64, i64)> = self
            .store
            .list(&org.id, now)
            .await?
            .into_iter()
            .filter(|k| k.retires_at.is_none_or(|r| r > activates_at))
            .map(|k| (k.kid, activates_at, removed_at))
            .collect();
        let event = Event {
            org_id: Some(org.id.clone()),
            kind: "keys.rotated",
            subject: org.id.to_string(),
            data: serde_json::json!({
                "new_kids": new_keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
                "activates_at": activates_at,
                "retired_kids": retire.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            }),
            at: now,
        };
        self.store
            .rotate(&org.id, &new_keys, &retire, &event)
            .await?;
        self.invalidate(&org.id).await;
        Ok(new_keys)
    }
}

/// A loaded key signs JWSs for [`crate::jose::sign`].
/// What revoking a key did: the key, and the key that replaced it when it was the one signing
/// for its algorithm (active at once, without the pre-publication delay).
pub struct Revoked {
    pub kid: String,
    pub alg: Alg,
    pub replacement: Option<KeyRecord>,
}

impl KeyService {
    /// Revokes a compromised key of `org` at `now`: it leaves the JWKS and the DID document at
    /// once (removed, not retired), so tokens it signed no longer verify. When it was the key
    /// signing for its algorithm, a new key of that algorithm signs from `now` on: relying
    /// parties fetch the JWKS again on an unknown `kid`, and waiting out the activation delay
    /// would leave the algorithm without a key. `Ok(None)`: no such published key.
    pub async fn revoke(
        &self,
        org: &OrgRecord,
        kid: &str,
        now: i64,
    ) -> Result<Option<Revoked>, KeyError> {
        let records = self.store.list(&org.id, now).await?;
        let Some(target) = records.iter().find(|k| k.kid == kid) else {
            return Ok(None);
        };
        let was_signing = key_state(
            target.activates_at,
            target.retires_at,
            target.removed_at,
            now,
        ) == KeyState::Active
            && records
                .iter()
                .filter(|k| {
                    k.alg == target.alg
                        && key_state(k.activates_at, k.retires_at, k.removed_at, now)
                            == KeyState::Active
                })
                .max_by_key(|k| (k.activates_at, k.created_at))
                .is_some_and(|k| k.kid == target.kid);
        let replacement = if was_signing {
            let dek = Arc::new(self.master.unwrap_data_key(
                &org.id,
                org.dek_mk_version,
                &org.dek_wrapped,
            )?);
            let alg = target.alg;
            let g = tokio::task::spawn_blocking(move || signing::generate(alg))
                .await
                .map_err(|_| KeyError::Join)??;
            Some(KeyRecord {
                org_id: org.id.clone(),
                kid: g.kid.clone(),
                alg,
                public_jwk: g.public_jwk.to_string(),
                private_enc: dek.seal_private_key(&org.id, &g.kid, alg.as_str(), &g.pkcs8),
                created_at: now,
                activates_at: now,
                retires_at: None,
                removed_at: None,
            })
        } else {
            None
        };
        let event = Event {
            org_id: Some(org.id.clone()),
            kind: "key.revoked",
            subject: target.kid.clone(),
            data: serde_json::json!({
                "kid": target.kid,
                "alg": target.alg.as_str(),
                "replacement_kid": replacement.as_ref().map(|k| k.kid.as_str()),
            }),
            at: now,
        };
        let retire = [(
            target.kid.clone(),
            now.min(target.retires_at.unwrap_or(now)),
            now,
        )];
        self.store
            .rotate(&org.id, replacement.as_slice(), &retire, &event)
            .await?;
        self.invalidate(&org.id).await;
        Ok(Some(Revoked {
            kid: target.kid.clone(),
            alg: target.alg,
            replacement,
        }))
    }
}

impl crate::jose::JwsSigner for LoadedKey {
    fn alg(&self) -> &str {
        self.alg.as_str()
    }
    fn kid(&self) -> &str {
        &self.kid
    }
    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, crate::jose::SignError> {
        self.signer
            .sign(signing_input)
            .map_err(|_| crate::jose::SignError::Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent misses share one load: the key rows are read and decrypted once, not once
    /// per caller.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_load_the_keys_once() {
        use crate::storage::Stores;
        use crate::storage::testing::temp_db;
        const T: i64 = 1_767_225_600;
        let t = temp_db().await;
        let stores = Stores::new(t.db.clone());
        let keys = Arc::new(KeyService::new(
            stores.keys.clone(),
            Arc::new(MasterKey::generate()),
            0,
            900,
        ));
        let id = crate::model::OrgId::generate(T * 1000);
        let (dek_wrapped, dek) = keys.master().new_data_key(&id);
        let first = KeyService::generate_records(&id, Arc::new(dek), T, T)
            .await
            .unwrap();
        let org = OrgRecord {
            id: id.clone(),
            slug: "acme".into(),
            name: "acme".into(),
            issuer: "https://idp.example/orgs/acme".into(),
            did: "did:web:idp.example:orgs:acme".into(),
            dek_wrapped,
            dek_mk_version: keys.master().version(),
            created_at: T,
            updated_at: T,
        };
        let ev = Event {
            org_id: Some(id.clone()),
            kind: "org.created",
            subject: id.to_string(),
            data: serde_json::json!({}),
            at: T,
        };
        stores.orgs.create(&org, &first, &ev).await.unwrap();

        let org = Arc::new(org);
        let all = futures_util::future::join_all((0..32).map(|_| {
            let (keys, org) = (keys.clone(), org.clone());
            tokio::spawn(async move { keys.org_keys(&org, T).await.map(|k| k.keys.len()) })
        }))
        .await;
        for r in all {
            assert_eq!(r.unwrap().unwrap(), 3);
        }
        assert_eq!(keys.loads(), 1, "every concurrent miss loaded the keys");
        keys.invalidate_all();
        keys.org_keys(&org, T).await.unwrap();
        assert_eq!(keys.loads(), 2);
    }

    #[test]
    fn lifecycle_states() {
        assert_eq!(key_state(100, None, None, 50), KeyState::Pending);
        assert_eq!(key_state(100, None, None, 100), KeyState::Active);
        assert_eq!(key_state(100, Some(200), Some(300), 199), KeyState::Active);
        assert_eq!(key_state(100, Some(200), Some(300), 200), KeyState::Retired);
        assert_eq!(key_state(100, Some(200), Some(300), 300), KeyState::Gone);
    }
}
