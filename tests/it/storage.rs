//! Storage conformance: the same contract checked directly against `agentidp::storage::open` on
//! SQLite and on PostgreSQL (each over a fresh database, removed at the end).

use std::collections::HashSet;
use std::path::PathBuf;

use agentidp::model::{AgentId, AgentStatus, Alg, AuthMethod, ClientKind, OrgId, PartnerId};
use agentidp::storage::{
    AgentRecord, Db, Event, KeyRecord, OrgRecord, PartnerRecord, StorageError, StoredEvent, Stores,
    open,
};
use serde_json::json;

use crate::on_all_backends;
use crate::support::*;

/// A fresh database of one backend: a SQLite file in a temporary directory, or a uniquely named
/// PostgreSQL database. Dropping it removes the database (also when the test panics).
struct FreshDb {
    url: String,
    dir: PathBuf,
    _pg: Option<PgDatabase>,
}

impl FreshDb {
    async fn new(backend: Backend) -> Self {
        let dir = temp_dir();
        match backend {
            Backend::Sqlite => FreshDb {
                url: format!("sqlite://{}/t.db", dir.display()),
                dir,
                _pg: None,
            },
            Backend::Postgres { admin_url, .. } => {
                let pg = PgDatabase::create(&admin_url).await;
                FreshDb {
                    url: pg.url.clone(),
                    dir,
                    _pg: Some(pg),
                }
            }
        }
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Opens a fresh database of `backend` and its stores; keep the last value alive while using them.
async fn fresh_store(backend: Backend) -> (Db, Stores, FreshDb) {
    let fresh = FreshDb::new(backend).await;
    let db = open(&fresh.url).await.expect("the database opens");
    (db.clone(), Stores::new(db), fresh)
}

fn uid() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn org(slug: &str) -> OrgRecord {
    let id = OrgId::from(uid());
    OrgRecord {
        id: id.clone(),
        slug: slug.to_owned(),
        name: format!("Org {slug}"),
        issuer: format!("https://idp.example.com/orgs/{slug}/{id}"),
        did: format!("did:web:idp.example.com:orgs:{slug}:{id}"),
        dek_wrapped: vec![0, 1, 2, 255, 254, 0],
        dek_mk_version: 3,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_001,
    }
}

fn key(org_id: &OrgId, kid: &str, alg: &str, removed_at: Option<i64>) -> KeyRecord {
    KeyRecord {
        org_id: org_id.clone(),
        kid: kid.to_owned(),
        alg: Alg::parse(alg).expect("a known alg"),
        public_jwk: format!(r#"{{"kty":"EC","kid":"{kid}"}}"#),
        private_enc: vec![9, 0, 8, 255],
        created_at: 1_700_000_000,
        activates_at: 1_700_000_010,
        retires_at: removed_at.map(|r| r - 100),
        removed_at,
    }
}

fn agent(org_id: &OrgId) -> AgentRecord {
    let id = AgentId::from(uid());
    AgentRecord {
        org_id: org_id.clone(),
        id: id.clone(),
        name: "Agent ünïcødé 🤖 'quoted' \"double\"".into(),
        description: Some("line one\nline two\t'; DROP TABLE agents; --".into()),
        did: format!("did:web:idp.example.com:orgs:x:agents:{id}"),
        scopes: vec!["read".into(), "write:all".into()],
        status: AgentStatus::Active,
        auth_method: AuthMethod::ClientSecretBasic,
        secret_digest: Some(vec![0, 0, 1, 2, 3, 255]),
        secret_digest_version: Some(2),
        prev_secret_digest: Some(vec![255; 32]),
        prev_secret_version: Some(1),
        prev_secret_expires_at: Some(i64::MAX),
        secret_created_at: Some(1_700_000_100),
        prev_secret_created_at: Some(i64::MIN),
        expires_at: Some(i64::MAX),
        jwks: Some(json!({"keys": [], "ünï": "'\"; --"})),
        jwks_uri: Some("https://agent.example/jwks.json".into()),
        access_token_alg: Alg::EdDSA,
        id_token_alg: Alg::RS256,
        access_token_ttl: Some(300),
        tokens_valid_after_ms: i64::MIN + 1,
        created_at: 1_700_000_100,
        updated_at: 1_700_000_101,
        version: 1,
        kind: ClientKind::Agent,
        redirect_uris: vec!["http://127.0.0.1/cb?x='\"".into()],
        post_logout_redirect_uris: vec!["https://app.example/bye".into()],
        grant_types: vec!["client_credentials".into(), "authorization_code".into()],
        enrollment_id: Some("0123456789abcdef0123456789abcdef".into()),
        registration_digest: Some(vec![9; 32]),
        registration_digest_version: Some(1),
    }
}

fn ev(org_id: Option<&OrgId>, kind: &'static str, subject: &str, at: i64) -> Event {
    Event {
        org_id: org_id.cloned(),
        kind,
        subject: subject.to_owned(),
        data: json!({"kind": kind, "n": at}),
        at,
    }
}

fn kinds(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

async fn migrations_are_idempotent(backend: Backend) {
    let (db, store, _fresh) = fresh_store(backend).await;
    db.migrate().await.expect("first migration");
    db.migrate().await.expect("second migration is a no-op");
    db.ping().await.unwrap();
    // Data survives a re-run of the migrations.
    store.meta.set("k", "v1").await.unwrap();
    store.meta.set("k", "v2").await.unwrap();
    db.migrate().await.expect("third migration");
    assert_eq!(store.meta.get("k").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(store.meta.get("absent").await.unwrap(), None);
}

async fn markers_are_single_use_until_expiry(backend: Backend) {
    let (db, store, _fresh) = fresh_store(backend).await;
    db.migrate().await.unwrap();
    let now = 1_000;
    assert!(
        store
            .replay
            .set_if_absent("m", now + 60, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .replay
            .set_if_absent("m", now + 60, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .replay
            .set_if_absent("m", now + 600, now + 59)
            .await
            .unwrap(),
        "a live marker is not taken over, even with a later expiry"
    );
    assert!(
        store
            .replay
            .set_if_absent("other", now + 60, now)
            .await
            .unwrap(),
        "markers are per key"
    );
    // Past its expiry the key is free again, and the new marker is live until its own expiry.
    assert!(
        store
            .replay
            .set_if_absent("m", now + 1_000, now + 61)
            .await
            .unwrap()
    );
    assert!(
        !store
            .replay
            .set_if_absent("m", now + 2_000, now + 999)
            .await
            .unwrap()
    );

    // Under concurrency exactly one caller wins.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.replay.set_if_absent("race", now + 60, now).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().expect("no storage error under contention") {
            wins += 1;
        }
    }
    assert_eq!(
        wins, 1,
        "exactly one of 50 concurrent callers sets the marker"
    );
}

async fn orgs_slugs_are_never_reused(backend: Backend) {
    let (db, store, _fresh) = fresh_store(backend).await;
    db.migrate().await.unwrap();
    let a = org("acme");
    let keys = [
        key(&a.id, "k-es", "ES256", None),
        key(&a.id, "k-rs", "RS256", None),
    ];
    store
        .orgs
        .create(&a, &keys, &ev(Some(&a.id), "org.created", &a.id, 1))
        .await
        .unwrap();
    assert_eq!(store.orgs.by_slug("acme").await.unwrap(), Some(a.clone()));
    assert_eq!(store.orgs.by_slug("nope").await.unwrap(), None);
    assert_eq!(
        store.keys.list(&a.id, 1_700_000_000).await.unwrap(),
        keys.to_vec()
    );

    // Same slug, everything else new: a conflict, and nothing of it is written (no key, no event).
    let dup = org("acme");
    let dup_keys = [key(&dup.id, "k-dup", "ES256", None)];
    let e = store
        .orgs
        .create(
            &dup,
            &dup_keys,
            &ev(Some(&dup.id), "org.created", &dup.id, 2),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::Conflict { what: "slug" }),
        "{e:?}"
    );
    assert!(store.keys.list(&dup.id, 0).await.unwrap().is_empty());
    // A failure after the organization row was written (a duplicate key) rolls it back too.
    let half = org("half");
    let twice = [
        key(&half.id, "same", "ES256", None),
        key(&half.id, "same", "ES256", None),
    ];
    let e = store
        .orgs
        .create(
            &half,
            &twice,
            &ev(Some(&half.id), "org.created", &half.id, 2),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict { what: "kid" }), "{e:?}");
    assert_eq!(store.orgs.by_slug("half").await.unwrap(), None);
    assert!(store.keys.list(&half.id, 0).await.unwrap().is_empty());

    let b = org("beta");
    store
        .orgs
        .create(&b, &[], &ev(Some(&b.id), "org.created", &b.id, 3))
        .await
        .unwrap();
    let mut ids = vec![a.id.clone(), b.id.clone()];
    ids.sort();
    let listed: Vec<OrgId> = store
        .orgs
        .list(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(listed, ids);
    let page2 = store.orgs.list(Some(ids[0].as_str()), 10).await.unwrap();
    assert_eq!(page2.len(), 1);
    assert_eq!(page2[0].id, ids[1]);

    store
        .orgs
        .rename(
            &b.id,
            "Beta Renamed",
            50,
            &ev(Some(&b.id), "org.renamed", &b.id, 4),
        )
        .await
        .unwrap();
    let renamed = store.orgs.by_slug("beta").await.unwrap().unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.updated_at),
        ("Beta Renamed", 50)
    );

    store
        .orgs
        .delete(&a.id, 100, &ev(Some(&a.id), "org.deleted", &a.id, 5))
        .await
        .unwrap();
    assert_eq!(store.orgs.by_slug("acme").await.unwrap(), None);
    assert!(
        store.keys.list(&a.id, 100).await.unwrap().is_empty(),
        "a deleted organization publishes no key"
    );
    assert!(
        !store
            .orgs
            .all_ids()
            .await
            .unwrap()
            .iter()
            .any(|(id, _)| *id == a.id)
    );
    assert_eq!(store.orgs.list(None, 10).await.unwrap().len(), 1);
    // The tombstone keeps the slug: a newcomer cannot take it.
    let again = org("acme");
    let e = store
        .orgs
        .create(
            &again,
            &[],
            &ev(Some(&again.id), "org.created", &again.id, 6),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::Conflict { what: "slug" }),
        "{e:?}"
    );
    assert!(matches!(
        store
            .orgs
            .delete(&a.id, 101, &ev(Some(&a.id), "org.deleted", &a.id, 7))
            .await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store
            .orgs
            .rename(&a.id, "x", 102, &ev(Some(&a.id), "org.renamed", &a.id, 8))
            .await,
        Err(StorageError::NotFound)
    ));

    // Only the successful mutations wrote their events, in order, with their data.
    let events = store.outbox.after(0, 100).await.unwrap();
    assert_eq!(
        kinds(&events),
        ["org.created", "org.created", "org.renamed", "org.deleted"]
    );
    let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [a.id.as_str(), b.id.as_str(), b.id.as_str(), a.id.as_str()]
    );
    let e0 = &events[0];
    assert_eq!(e0.org_id.as_deref(), Some(a.id.as_str()));
    assert_eq!(e0.created_at, 1);
    assert_eq!(e0.data, json!({"kind": "org.created", "n": 1}));
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let tail = store.outbox.after(events[1].id, 100).await.unwrap();
    assert_eq!(kinds(&tail), ["org.renamed", "org.deleted"]);
    assert_eq!(store.outbox.after(0, 2).await.unwrap().len(), 2);
}

async fn agents_round_trip_and_stay_in_their_org(backend: Backend) {
    let (db, store, _fresh) = fresh_store(backend).await;
    db.migrate().await.unwrap();
    let o = org("home");
    let other = org("other");
    store
        .orgs
        .create(&o, &[], &ev(Some(&o.id), "org.created", &o.id, 1))
        .await
        .unwrap();
    store
        .orgs
        .create(
            &other,
            &[],
            &ev(Some(&other.id), "org.created", &other.id, 2),
        )
        .await
        .unwrap();

    let a = agent(&o.id);
    store
        .agents
        .create(&a, &ev(Some(&o.id), "agent.created", &a.id, 3))
        .await
        .unwrap();
    assert_eq!(
        store.agents.get(&o.id, &a.id).await.unwrap(),
        Some(a.clone())
    );
    // The same id again in the same org is a conflict.
    let e = store
        .agents
        .create(&a, &ev(Some(&o.id), "agent.created", &a.id, 4))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::Conflict { what: "agent id" }),
        "{e:?}"
    );

    // Every nullable field also round-trips as NULL.
    let mut bare = agent(&o.id);
    bare.description = None;
    bare.secret_digest = None;
    bare.secret_digest_version = None;
    bare.prev_secret_digest = None;
    bare.prev_secret_version = None;
    bare.prev_secret_expires_at = None;
    bare.jwks = None;
    bare.jwks_uri = None;
    bare.access_token_ttl = None;
    bare.auth_method = AuthMethod::PrivateKeyJwt;
    store
        .agents
        .create(&bare, &ev(Some(&o.id), "agent.created", &bare.id, 5))
        .await
        .unwrap();
    assert_eq!(
        store.agents.get(&o.id, &bare.id).await.unwrap(),
        Some(bare.clone())
    );

    // Update every mutable column, Some -> other Some and Some -> None.
    let mut u = a.clone();
    u.name = "renamed".into();
    u.description = None;
    u.scopes = vec![];
    u.status = AgentStatus::Suspended;
    u.auth_method = AuthMethod::ClientSecretPost;
    u.secret_digest = Some(vec![7; 32]);
    u.secret_digest_version = Some(3);
    u.prev_secret_digest = None;
    u.prev_secret_version = None;
    u.prev_secret_expires_at = None;
    u.jwks = None;
    u.jwks_uri = None;
    u.access_token_alg = Alg::ES256;
    u.id_token_alg = Alg::EdDSA;
    u.access_token_ttl = None;
    u.tokens_valid_after_ms = 1_700_000_200_123;
    u.updated_at = 1_700_000_200;
    store
        .agents
        .update(&u, &ev(Some(&o.id), "agent.updated", &a.id, 6))
        .await
        .unwrap();
    // A second write over the version read is stale: someone else wrote first.
    assert!(matches!(
        store
            .agents
            .update(&u, &ev(Some(&o.id), "agent.updated", &a.id, 6))
            .await,
        Err(StorageError::Stale)
    ));
    u.version += 1;
    assert_eq!(
        store.agents.get(&o.id, &a.id).await.unwrap(),
        Some(u.clone())
    );

    // Tenant scoping: the other organization sees nothing of it and cannot change it.
    assert_eq!(store.agents.get(&other.id, &a.id).await.unwrap(), None);
    assert!(
        store
            .agents
            .list(&other.id, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let mut foreign = u.clone();
    foreign.org_id = other.id.clone();
    foreign.name = "hijacked".into();
    assert!(matches!(
        store
            .agents
            .update(&foreign, &ev(Some(&other.id), "agent.updated", &a.id, 7))
            .await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store
            .agents
            .delete(
                &other.id,
                &a.id,
                8,
                &ev(Some(&other.id), "agent.deleted", &a.id, 8)
            )
            .await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        store.agents.get(&o.id, &a.id).await.unwrap(),
        Some(u.clone())
    );

    // Listing: ordered by id, paged by cursor.
    let mut ids = vec![a.id.clone(), bare.id.clone()];
    ids.sort();
    let listed: Vec<AgentId> = store
        .agents
        .list(&o.id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, ids);
    let page = store.agents.list(&o.id, None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    let rest = store
        .agents
        .list(&o.id, Some(page[0].id.as_str()), 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0].id, page[0].id);

    // Revocation is final: once stored as revoked, no update goes through.
    let mut revoked = u.clone();
    revoked.status = AgentStatus::Revoked;
    revoked.updated_at += 1;
    store
        .agents
        .update(&revoked, &ev(Some(&o.id), "agent.revoked", &a.id, 9))
        .await
        .unwrap();
    let mut revive = revoked.clone();
    revive.status = AgentStatus::Active;
    assert!(matches!(
        store
            .agents
            .update(&revive, &ev(Some(&o.id), "agent.updated", &a.id, 10))
            .await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        store
            .agents
            .get(&o.id, &a.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AgentStatus::Revoked
    );

    // Delete tombstones: gone from get and list, and further changes are NotFound.
    store
        .agents
        .delete(
            &o.id,
            &bare.id,
            500,
            &ev(Some(&o.id), "agent.deleted", &bare.id, 11),
        )
        .await
        .unwrap();
    assert_eq!(store.agents.get(&o.id, &bare.id).await.unwrap(), None);
    assert_eq!(store.agents.list(&o.id, None, 100).await.unwrap().len(), 1);
    assert!(matches!(
        store
            .agents
            .update(&bare, &ev(Some(&o.id), "agent.updated", &bare.id, 12))
            .await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store
            .agents
            .delete(
                &o.id,
                &bare.id,
                501,
                &ev(Some(&o.id), "agent.deleted", &bare.id, 13)
            )
            .await,
        Err(StorageError::NotFound)
    ));

    // Deleting the organization takes its live agents with it.
    store
        .orgs
        .delete(&o.id, 600, &ev(Some(&o.id), "org.deleted", &o.id, 14))
        .await
        .unwrap();
    assert_eq!(store.agents.get(&o.id, &a.id).await.unwrap(), None);

    let events = store.outbox.after(0, 100).await.unwrap();
    assert_eq!(
        kinds(&events),
        [
            "org.created",
            "org.created",
            "agent.created",
            "agent.created",
            "agent.updated",
            "agent.revoked",
            "agent.deleted",
            "org.deleted",
        ]
    );
    let at: Vec<i64> = events.iter().map(|e| e.created_at).collect();
    assert_eq!(
        at,
        [1, 2, 3, 5, 6, 9, 11, 14],
        "events of failed calls were kept"
    );
}

async fn keys_rotate_atomically(backend: Backend) {
    let (db, store, _fresh) = fresh_store(backend).await;
    db.migrate().await.unwrap();
    let o = org("keys");
    let other = org("keys-other");
    store
        .orgs
        .create(
            &o,
            &[key(&o.id, "old", "ES256", None)],
            &ev(Some(&o.id), "org.created", &o.id, 1),
        )
        .await
        .unwrap();
    store
        .orgs
        .create(
            &other,
            &[key(&other.id, "theirs", "ES256", None)],
            &ev(Some(&other.id), "org.created", &other.id, 2),
        )
        .await
        .unwrap();
    let new = key(&o.id, "new", "ES256", None);
    store
        .keys
        .rotate(
            &o.id,
            std::slice::from_ref(&new),
            &[("old".into(), 1_000, 2_000)],
            &ev(Some(&o.id), "keys.rotated", &o.id, 3),
        )
        .await
        .unwrap();
    let kids = |v: Vec<KeyRecord>| v.into_iter().map(|k| k.kid).collect::<HashSet<_>>();
    assert_eq!(
        kids(store.keys.list(&o.id, 1_999).await.unwrap()),
        HashSet::from(["old".to_owned(), "new".to_owned()])
    );
    let old = store
        .keys
        .list(&o.id, 1_999)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.kid == "old")
        .unwrap();
    assert_eq!((old.retires_at, old.removed_at), (Some(1_000), Some(2_000)));
    assert_eq!(
        kids(store.keys.list(&o.id, 2_000).await.unwrap()),
        HashSet::from(["new".to_owned()]),
        "a key is gone from its removal time"
    );
    // Another organization's retire list does not touch this one's keys.
    store
        .keys
        .rotate(
            &other.id,
            &[],
            &[("new".into(), 1, 1)],
            &ev(Some(&other.id), "keys.rotated", &other.id, 4),
        )
        .await
        .unwrap();
    assert_eq!(
        kids(store.keys.list(&o.id, 2_000).await.unwrap()),
        HashSet::from(["new".to_owned()])
    );
    // A rotation that fails (duplicate kid) changes nothing and writes no event.
    let e = store
        .keys
        .rotate(
            &o.id,
            std::slice::from_ref(&new),
            &[("new".into(), 5, 5)],
            &ev(Some(&o.id), "keys.rotated", &o.id, 5),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Conflict { what: "kid" }), "{e:?}");
    assert_eq!(
        kids(store.keys.list(&o.id, 2_000).await.unwrap()),
        HashSet::from(["new".to_owned()]),
        "the failed rotation's retirement was rolled back"
    );
    assert_eq!(
        kinds(&store.outbox.after(0, 100).await.unwrap()),
        ["org.created", "org.created", "keys.rotated", "keys.rotated"]
    );
}

async fn revocations_are_scoped_and_purged(backend: Backend) {
    let (db, store, _fresh) = fresh_store(backend).await;
    db.migrate().await.unwrap();
    let now = 10_000;
    store
        .replay
        .revoke("org-a", "jti-1", now + 100)
        .await
        .unwrap();
    store
        .replay
        .revoke("org-a", "jti-1", now + 100)
        .await
        .expect("revoking twice is fine");
    store
        .replay
        .revoke("org-a", "jti-old", now - 1)
        .await
        .unwrap();
    store
        .replay
        .revoke("org-b", "jti-2", now + 100)
        .await
        .unwrap();
    assert!(store.replay.is_revoked("org-a", "jti-1").await.unwrap());
    assert!(!store.replay.is_revoked("org-b", "jti-1").await.unwrap());
    assert!(!store.replay.is_revoked("org-a", "jti-2").await.unwrap());
    assert!(store.replay.is_revoked("org-b", "jti-2").await.unwrap());
    assert!(!store.replay.is_revoked("org-a", "unknown").await.unwrap());

    assert!(
        store
            .replay
            .set_if_absent("live", now + 100, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .replay
            .set_if_absent("dead", now - 1, now - 50)
            .await
            .unwrap()
    );
    let o = org("purge");
    store
        .orgs
        .create(&o, &[], &ev(Some(&o.id), "org.created", &o.id, 1))
        .await
        .unwrap();

    assert_eq!(
        store.replay.purge_expired(now).await.unwrap(),
        2,
        "one expired revocation and one expired marker"
    );
    assert_eq!(store.replay.purge_expired(now).await.unwrap(), 0);
    assert!(!store.replay.is_revoked("org-a", "jti-old").await.unwrap());
    assert!(store.replay.is_revoked("org-a", "jti-1").await.unwrap());
    assert!(store.replay.is_revoked("org-b", "jti-2").await.unwrap());
    assert!(
        !store
            .replay
            .set_if_absent("live", now + 100, now)
            .await
            .unwrap(),
        "a live marker survives the purge"
    );
    assert!(store.orgs.by_slug("purge").await.unwrap().is_some());
    assert_eq!(store.outbox.after(0, 100).await.unwrap().len(), 1);
    // Everything has expired a long time later.
    assert_eq!(store.replay.purge_expired(now + 1_000).await.unwrap(), 3);
    assert!(!store.replay.is_revoked("org-a", "jti-1").await.unwrap());
}

fn partner(org_id: &OrgId, issuer: &str) -> PartnerRecord {
    PartnerRecord {
        org_id: org_id.clone(),
        id: PartnerId::from(uid()),
        issuer: issuer.to_owned(),
        name: Some("Partner 'ü'".into()),
        jwks_uri: None,
        jwks: Some(json!({"keys": [{"kty": "EC", "crv": "P-256"}]})),
        did: None,
        allowed_scopes: vec!["read".into(), "write:all".into()],
        allowed_audiences: vec!["https://idp.example.com/orgs/x".into()],
        max_assertion_lifetime: 600,
        claim_mapping: [("email".to_owned(), "partner_email".to_owned())].into(),
        enabled: true,
        created_at: 1_700_000_300,
        updated_at: 1_700_000_301,
        version: 1,
    }
}

async fn partners_round_trip_and_stay_in_their_org(backend: Backend) {
    let (db, store, _fresh) = fresh_store(backend).await;
    db.migrate().await.unwrap();
    let o = org("fed-home");
    let other = org("fed-other");
    for (n, x) in [&o, &other].into_iter().enumerate() {
        store
            .orgs
            .create(x, &[], &ev(Some(&x.id), "org.created", &x.id, n as i64))
            .await
            .unwrap();
    }
    let p = partner(&o.id, "https://partner.example/orgs/x");
    store
        .partners
        .create(&p, &ev(Some(&o.id), "partner.created", &p.id, 2))
        .await
        .unwrap();
    assert_eq!(
        store.partners.get(&o.id, &p.id).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        store.partners.by_issuer(&o.id, &p.issuer).await.unwrap(),
        Some(p.clone())
    );
    // One partner per issuer in an organization; the conflict names what is taken.
    let e = store
        .partners
        .create(
            &partner(&o.id, &p.issuer),
            &ev(Some(&o.id), "partner.created", "dup", 3),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StorageError::Conflict {
                what: "partner issuer"
            }
        ),
        "{e:?}"
    );
    // Another organization may trust the same issuer, and sees nothing of this one's partner.
    let theirs = partner(&other.id, &p.issuer);
    store
        .partners
        .create(
            &theirs,
            &ev(Some(&other.id), "partner.created", &theirs.id, 4),
        )
        .await
        .unwrap();
    assert_eq!(store.partners.get(&other.id, &p.id).await.unwrap(), None);
    assert_eq!(
        store.partners.list(&other.id, None, 10).await.unwrap(),
        std::slice::from_ref(&theirs)
    );
    let mut foreign = p.clone();
    foreign.org_id = other.id.clone();
    assert!(matches!(
        store
            .partners
            .update(&foreign, &ev(Some(&other.id), "partner.updated", &p.id, 5))
            .await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store
            .partners
            .delete(
                &other.id,
                &p.id,
                &ev(Some(&other.id), "partner.deleted", &p.id, 6)
            )
            .await,
        Err(StorageError::NotFound)
    ));

    // Every mutable column: Some -> None, None -> Some, the typed ones to other values.
    let mut u = p.clone();
    u.name = None;
    u.jwks = None;
    u.jwks_uri = Some("https://partner.example/jwks".into());
    u.did = Some("did:web:partner.example".into());
    u.allowed_scopes = vec![];
    u.allowed_audiences = vec!["a".into(), "b".into()];
    u.max_assertion_lifetime = 60;
    u.claim_mapping.clear();
    u.enabled = false;
    u.updated_at += 10;
    store
        .partners
        .update(&u, &ev(Some(&o.id), "partner.disabled", &p.id, 7))
        .await
        .unwrap();
    assert!(matches!(
        store
            .partners
            .update(&u, &ev(Some(&o.id), "partner.updated", &p.id, 7))
            .await,
        Err(StorageError::Stale)
    ));
    u.version += 1;
    assert_eq!(
        store.partners.get(&o.id, &p.id).await.unwrap(),
        Some(u.clone())
    );

    let second = partner(&o.id, "https://second.example");
    store
        .partners
        .create(&second, &ev(Some(&o.id), "partner.created", &second.id, 8))
        .await
        .unwrap();
    let page = store.partners.list(&o.id, None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    let rest = store
        .partners
        .list(&o.id, Some(page[0].id.as_str()), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0].id, page[0].id);

    store
        .partners
        .delete(&o.id, &p.id, &ev(Some(&o.id), "partner.deleted", &p.id, 9))
        .await
        .unwrap();
    assert_eq!(
        store.partners.by_issuer(&o.id, &p.issuer).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .partners
            .by_issuer(&other.id, &p.issuer)
            .await
            .unwrap(),
        Some(theirs)
    );
    let at: Vec<i64> = store
        .outbox
        .after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.created_at)
        .collect();
    assert_eq!(
        at,
        [0, 1, 2, 4, 7, 8, 9],
        "only successful calls wrote events"
    );
}

async fn agent_cards_follow_their_agent(backend: Backend) {
    let (db, store, _fresh) = fresh_store(backend).await;
    db.migrate().await.unwrap();
    let o = org("cards");
    store
        .orgs
        .create(&o, &[], &ev(Some(&o.id), "org.created", &o.id, 1))
        .await
        .unwrap();
    let a = agent(&o.id);
    store
        .agents
        .create(&a, &ev(Some(&o.id), "agent.created", &a.id, 2))
        .await
        .unwrap();
    assert_eq!(store.agents.card(&o.id, &a.id).await.unwrap(), None);
    let card = r#"{"skills":[{"id":"ünï"}]}"#;
    store
        .agents
        .set_card(
            &o.id,
            &a.id,
            card,
            50,
            &ev(Some(&o.id), "agent.card_updated", &a.id, 3),
        )
        .await
        .unwrap();
    store
        .agents
        .set_card(
            &o.id,
            &a.id,
            "{}",
            60,
            &ev(Some(&o.id), "agent.card_updated", &a.id, 4),
        )
        .await
        .unwrap();
    assert_eq!(
        store.agents.card(&o.id, &a.id).await.unwrap(),
        Some(("{}".to_owned(), 60))
    );
    assert_eq!(
        store
            .agents
            .get(&o.id, &a.id)
            .await
            .unwrap()
            .unwrap()
            .updated_at,
        60,
        "setting the card touches the agent"
    );
    let other = org("cards-other");
    store
        .orgs
        .create(
            &other,
            &[],
            &ev(Some(&other.id), "org.created", &other.id, 5),
        )
        .await
        .unwrap();
    assert_eq!(store.agents.card(&other.id, &a.id).await.unwrap(), None);
    assert!(matches!(
        store
            .agents
            .set_card(
                &other.id,
                &a.id,
                "{}",
                70,
                &ev(Some(&other.id), "agent.card_updated", &a.id, 6)
            )
            .await,
        Err(StorageError::NotFound)
    ));
    store
        .agents
        .delete(
            &o.id,
            &a.id,
            80,
            &ev(Some(&o.id), "agent.deleted", &a.id, 7),
        )
        .await
        .unwrap();
    assert_eq!(store.agents.card(&o.id, &a.id).await.unwrap(), None);
    assert!(matches!(
        store
            .agents
            .set_card(
                &o.id,
                &a.id,
                "{}",
                90,
                &ev(Some(&o.id), "agent.card_updated", &a.id, 8)
            )
            .await,
        Err(StorageError::NotFound)
    ));
}

on_all_backends!(
    migrations_are_idempotent,
    markers_are_single_use_until_expiry,
    orgs_slugs_are_never_reused,
    agents_round_trip_and_stay_in_their_org,
    keys_rotate_atomically,
    revocations_are_scoped_and_purged,
    partners_round_trip_and_stay_in_their_org,
    agent_cards_follow_their_agent
);
