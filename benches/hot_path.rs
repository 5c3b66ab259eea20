//! Micro-benchmarks of the token endpoint's and the document endpoints' hot-path pieces, with
//! Criterion: `cargo bench --bench hot_path` (add `-- --quick` for a short pass, or a filter such
//! as `-- sign/`). What each group measures is in `benches/README.md`.

use std::hint::black_box;
use std::sync::Arc;

use agentidp::did::{card, document};
use agentidp::jose;
use agentidp::keys::signing;
use agentidp::keys::{KeyService, LoadedKey, MasterKey, OrgKeys};
use agentidp::model::{Alg, AuthMethod};
use agentidp::storage::{AgentRecord, OrgRecord};
use agentidp::tenancy::Agent;
use agentidp::tokens::access_token::{self, AccessClaims};
use agentidp::tokens::{self, Audience};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

const ISSUER: &str = "https://idp.example/orgs/acme";
const NOW: i64 = 1_900_000_000;

fn loaded_key(alg: Alg) -> LoadedKey {
    let g = signing::generate(alg).expect("key generation");
    LoadedKey::new(
        g.kid.clone(),
        alg,
        g.public_jwk.to_string(),
        g.pkcs8.clone(),
        0,
        None,
        None,
        0,
    )
}

/// The claims the token endpoint signs for a client-credentials request.
fn access_claims() -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        sub: "0196b000-0000-7000-8000-000000000001".into(),
        aud: Audience::One(ISSUER.into()),
        exp: NOW + 900,
        iat: NOW,
        jti: agentidp::model::new_id(agentidp::model::Clock::now_ms(
            &agentidp::model::SystemClock,
        )),
        client_id: "0196b000-0000-7000-8000-000000000001".into(),
        scope: Some("invoices:read orders:write".into()),
        org_id: Some("0196a000-0000-7000-8000-000000000001".into()),
        did: Some(
            "did:web:idp.example:orgs:acme:agents:0196b000-0000-7000-8000-000000000001".into(),
        ),
        agent_name: Some("billing-bot".into()),
        federated: None,
        act: None,
        dlg: None,
    }
}

fn sign(c: &mut Criterion) {
    let claims = access_claims();
    let mut g = c.benchmark_group("sign");
    g.throughput(Throughput::Elements(1));
    for alg in Alg::ALL {
        let key = loaded_key(alg);
        g.bench_function(format!("access_token/{alg}"), |b| {
            b.iter(|| {
                tokens::sign(black_box(&key), access_token::TYP, black_box(&claims)).expect("sign")
            })
        });
    }
    g.finish();
}

fn secret_digest(c: &mut Criterion) {
    let digester = MasterKey::generate().digester();
    let secret = agentidp::keys::envelope::random_token();
    let stored = digester.digest(secret.expose());
    let mut g = c.benchmark_group("secret");
    g.throughput(Throughput::Elements(1));
    g.bench_function("digest_verify/hmac_sha256", |b| {
        b.iter(|| {
            assert!(digester.verify(
                black_box(secret.expose()),
                digester.version(),
                black_box(&stored)
            ))
        })
    });
    g.finish();
}

#[derive(Serialize, Deserialize)]
struct Assertion {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: String,
}

fn assertion_verify(c: &mut Criterion) {
    // A private_key_jwt client assertion (RFC 7523), verified as the token endpoint does: the
    // agent's key set parsed once (when the agent is cached), the one JOSE verifier per request.
    let key = loaded_key(Alg::ES256);
    let client = "0196b000-0000-7000-8000-000000000001";
    let claims = Assertion {
        iss: client.into(),
        sub: client.into(),
        aud: ISSUER.into(),
        exp: NOW + 3600,
        iat: NOW,
        jti: "a-unique-jti".into(),
    };
    let jwt = tokens::sign(&key, "JWT", &claims).expect("sign");
    let keys = jose::KeySet::from_jwks(&serde_json::json!({ "keys": [key.public_jwk_value()] }));
    let token_endpoint = format!("{ISSUER}/oauth2/token");
    let audience = [ISSUER, token_endpoint.as_str()];
    let expect = jose::Expectations {
        typ: jose::Typ::Not(access_token::TYP),
        required: &[
            jose::Claim::Exp,
            jose::Claim::Iss,
            jose::Claim::Sub,
            jose::Claim::Aud,
        ],
        audience: Some(&audience),
        max_lifetime: Some(3600),
        origin: jose::Origin::Foreign,
    };
    let mut g = c.benchmark_group("assertion");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify/ES256", |b| {
        b.iter(|| jose::verify::<Assertion>(black_box(&jwt), &keys, &expect, NOW).expect("verify"))
    });
    g.finish();
}

/// An organization with its three keys, loaded the way the server loads them (from a database,
/// through `KeyService`), and one agent.
struct Fixture {
    org: OrgRecord,
    keys: Arc<OrgKeys>,
    agent: Agent,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture() -> Fixture {
    // OrgKeys has a private cache field, so it is built by the library itself: an organization
    // written to a throw-away SQLite file, read back through KeyService.
    let dir = std::env::temp_dir().join(format!("agentidp-hot-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir = TempDir(dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let url = format!("sqlite://{}/bench.db", dir.0.display());
        let db = agentidp::storage::open(&url).await.expect("store");
        db.migrate().await.expect("migrate");
        let store = agentidp::storage::Stores::new(db);
        let master = Arc::new(MasterKey::generate());
        let public_url = url::Url::parse("https://idp.example").expect("url");
        let id = agentidp::model::new_id(agentidp::model::Clock::now_ms(
            &agentidp::model::SystemClock,
        ));
        let (dek_wrapped, dek) = master.new_data_key(&id);
        let records = KeyService::generate_records(&id, Arc::new(dek), 0, 0)
            .await
            .expect("keys");
        let org = OrgRecord {
            id: id.as_str().into(),
            slug: "acme".into(),
            name: "Acme".into(),
            issuer: ISSUER.into(),
            did: agentidp::did::org_did(&public_url, "acme"),
            dek_wrapped,
            dek_mk_version: master.version(),
            created_at: 0,
            updated_at: 0,
        };
        let event = agentidp::storage::Event {
            org_id: Some(org.id.clone()),
            kind: "org.created",
            subject: id.clone(),
            data: serde_json::json!({}),
            at: 0,
        };
        store
            .orgs
            .create(&org, &records, &event)
            .await
            .expect("org");
        let keys = KeyService::new(store.keys.clone(), master, 0, 900)
            .org_keys(&org, NOW)
            .await
            .expect("org keys");
        let agent_id = agentidp::model::new_id(agentidp::model::Clock::now_ms(
            &agentidp::model::SystemClock,
        ));
        let mut record = AgentRecord::new(
            org.id.clone(),
            agent_id.clone().into(),
            agentidp::did::agent_did(&org.did, &agent_id),
            "billing-bot".into(),
            AuthMethod::ClientSecretBasic,
            0,
        );
        record.description = Some("Reads invoices".into());
        record.scopes = vec![
            "invoices:read".into(),
            "orders:write".into(),
            "openid".into(),
        ];
        let agent = Agent::from_record(record);
        Fixture {
            org,
            keys,
            agent,
            _dir: dir,
        }
    })
}

fn did_documents(c: &mut Criterion) {
    let f = fixture();
    let instance = "did:web:idp.example";
    let mut g = c.benchmark_group("did_document");
    g.throughput(Throughput::Elements(1));
    g.bench_function("agent/render+serialize", |b| {
        b.iter(|| {
            let (doc, _) =
                document::agent_document(&f.org, &f.keys, black_box(&f.agent), None, NOW);
            serde_json::to_vec(&doc).expect("json")
        })
    });
    g.bench_function("org/render+serialize", |b| {
        b.iter(|| {
            let (doc, _) = document::org_document(black_box(&f.org), instance, &f.keys, NOW);
            serde_json::to_vec(&doc).expect("json")
        })
    });
    g.bench_function("jwks/cached", |b| {
        b.iter(|| f.keys.jwks_json(black_box(NOW)))
    });
    g.finish();

    let meta = card::CardMeta {
        version: Some("2.1.0".into()),
        skills: (0..3)
            .map(|i| card::Skill {
                id: format!("skill-{i}"),
                name: format!("Skill {i}"),
                description: "Answers questions about invoices".into(),
                tags: vec!["billing".into(), "invoices".into()],
                examples: vec!["What is the total of invoice 42?".into()],
            })
            .collect(),
        ..Default::default()
    };
    let unsigned = card::card(&f.org, &f.agent, &meta);
    let es256 = f
        .keys
        .signing_key(Alg::ES256, NOW)
        .expect("ES256 key")
        .clone();
    let jwks_uri = format!("{ISSUER}/jwks.json");
    let mut g = c.benchmark_group("card");
    g.throughput(Throughput::Elements(1));
    g.bench_function("jcs", |b| {
        b.iter(|| serde_json_canonicalizer::to_vec(black_box(&unsigned)).expect("jcs"))
    });
    g.bench_function("render+jcs+sign/ES256", |b| {
        b.iter(|| {
            card::sign(
                card::card(&f.org, black_box(&f.agent), &meta),
                &es256,
                &jwks_uri,
            )
            .expect("sign")
        })
    });
    g.finish();

    // What /agent-info and /federation/verify pay first: validating one of our access tokens.
    let token = tokens::sign(&es256, access_token::TYP, &{
        let mut c = access_claims();
        c.org_id = Some(f.org.id.to_string());
        c.exp = i64::MAX / 2;
        c
    })
    .expect("token");
    let mut g = c.benchmark_group("access_token");
    g.throughput(Throughput::Elements(1));
    g.bench_function("validate/ES256", |b| {
        b.iter(|| access_token::validate(&f.keys, ISSUER, black_box(&token), NOW).expect("valid"))
    });
    g.finish();
}

criterion_group!(
    benches,
    sign,
    secret_digest,
    assertion_verify,
    did_documents
);
criterion_main!(benches);
