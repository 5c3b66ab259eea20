//! did:web identifiers, DID documents, DID resolution (DIF Universal Resolver HTTP binding), agent
//! cards and proofs of control, checked the way an outside party would: documents are compared
//! with the JWKS, thumbprints are recomputed here, card signatures and proof JWTs are verified with
//! independent code from nothing but published documents, foreign did:web documents are served by
//! a real HTTPS server in the test, and every served document is validated against the JSON
//! Schemas in `well-known/`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agentidp::keys::signing::generate;
use agentidp::model::Alg;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use base64::prelude::*;
use jsonschema::Validator;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::support::*;

const CTX_DID: &str = "https://www.w3.org/ns/did/v1";
const CTX_JWS_2020: &str = "https://w3id.org/security/suites/jws-2020/v1";
const CTX_MULTIKEY: &str = "https://w3id.org/security/multikey/v1";
const DID_JSON: &str = "application/did+json";
const DID_LD_JSON: &str = "application/did+ld+json";
const RESOLUTION_CT: &str = "application/ld+json;profile=\"https://w3id.org/did-resolution\"";

// ---------------------------------------------------------------------------------------------
// JSON Schemas

const DID_DOCUMENT_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/well-known/did-document.schema.json"
);
const RESOLUTION_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/well-known/did-resolution-result.schema.json"
);
const CARD_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/well-known/agent-card.schema.json"
);

struct Schemas {
    document: Validator,
    resolution: Validator,
    card: Validator,
}

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| Schemas {
        document: crate::schemas::load(DID_DOCUMENT_SCHEMA),
        resolution: crate::schemas::load(RESOLUTION_SCHEMA),
        card: crate::schemas::load(CARD_SCHEMA),
    })
}

#[track_caller]
fn assert_valid(v: &Validator, doc: &Value, what: &str) {
    let errs: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("at {}: {e}", e.instance_path))
        .collect();
    assert!(
        errs.is_empty(),
        "{what} does not match its schema: {errs:#?}\n{doc:#}"
    );
}

#[track_caller]
fn assert_invalid(v: &Validator, doc: &Value, why: &str) {
    assert!(!v.is_valid(doc), "the schema accepts {why}:\n{doc:#}");
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn b64(b: &[u8]) -> String {
    BASE64_URL_SAFE_NO_PAD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    BASE64_URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// RFC 7638 thumbprint, computed here independently of the server.
fn rfc7638(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str().unwrap() {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        other => panic!("unexpected kty {other}"),
    };
    let mut s = String::from("{");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("\"{m}\":\"{}\"", jwk[*m].as_str().unwrap()));
    }
    s.push('}');
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()).as_ref())
}

/// A DID as the DIF binding wants it in the path: the whole DID percent-encoded once (so a
/// `%3A` inside the DID travels as `%253A`).
fn encode_did(did: &str) -> String {
    percent_encoding::utf8_percent_encode(did, percent_encoding::NON_ALPHANUMERIC).to_string()
}

struct Fetched {
    status: StatusCode,
    content_type: String,
    body: Value,
}

async fn fetch(app: &TestApp, url: &str, accept: Option<&str>) -> Fetched {
    let mut req = app.http.get(url);
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let resp = req.send().await.unwrap();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let (status, body) = json_of(resp).await;
    Fetched {
        status,
        content_type,
        body,
    }
}

/// `GET /1.0/identifiers/{did}` with the DID fully percent-encoded.
async fn resolve(app: &TestApp, did: &str, accept: Option<&str>) -> Fetched {
    fetch(
        app,
        &app.url(&format!("/1.0/identifiers/{}", encode_did(did))),
        accept,
    )
    .await
}

/// Resolves, expects success and a schema-valid result, returns it.
#[track_caller]
fn expect_resolved(r: &Fetched, did: &str) -> Value {
    assert_eq!(r.status, StatusCode::OK, "resolving {did}: {}", r.body);
    assert_eq!(r.content_type, RESOLUTION_CT, "{did}");
    assert_valid(&schemas().resolution, &r.body, "a resolution result");
    assert_eq!(r.body["didDocument"]["id"], did, "{}", r.body);
    assert_eq!(
        r.body["didResolutionMetadata"]["contentType"], DID_LD_JSON,
        "{}",
        r.body
    );
    assert!(r.body["didResolutionMetadata"].get("error").is_none());
    r.body["didDocument"].clone()
}

/// Resolves, expects the binding error `code` with `status`.
async fn expect_resolution_error(app: &TestApp, did: &str, status: StatusCode, code: &str) {
    let r = resolve(app, did, None).await;
    assert_eq!(r.status, status, "resolving {did:?}: {}", r.body);
    assert_eq!(r.content_type, RESOLUTION_CT, "{did:?}");
    assert_eq!(
        r.body["didResolutionMetadata"]["error"], code,
        "resolving {did:?}: {}",
        r.body
    );
    assert!(r.body["didDocument"].is_null(), "{}", r.body);
    assert_valid(&schemas().resolution, &r.body, "an error resolution result");
}

fn rfc3339_secs(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a date-time string"))
        .expect("RFC 3339")
        .timestamp()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn vm_ids(doc: &Value) -> Vec<String> {
    doc["verificationMethod"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn service_endpoint<'a>(doc: &'a Value, ty: &str) -> &'a Value {
    let svcs = doc["service"].as_array().expect("services");
    let s = svcs
        .iter()
        .find(|s| s["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} service in {doc:#}"));
    assert!(
        s["id"]
            .as_str()
            .unwrap()
            .starts_with(doc["id"].as_str().unwrap()),
        "{s}"
    );
    &s["serviceEndpoint"]
}

async fn rotate(app: &TestApp, org: &TestOrg) {
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/rotate", org.slug),
            None,
        )
        .await;
    assert!(st.is_success(), "{st} {v}");
}

/// A registered public key whose `kid` is NOT its thumbprint (the document must use the
/// thumbprint anyway).
fn agent_key(alg: Alg, kid: &str) -> Value {
    let mut jwk = generate(alg).expect("key generation").public_jwk;
    jwk["kid"] = json!(kid);
    jwk
}

async fn keyed_agent(app: &TestApp, org: &TestOrg, keys: &[Value]) -> TestAgent {
    app.create_agent_with(
        org,
        json!({"name": "keyed agent", "scopes": ["read"],
               "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": keys}}),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Identifiers

async fn identifiers_follow_the_did_web_scheme(backend: Backend) {
    let app = spawn_app(backend).await;
    let port = app.addr.port();
    let instance = format!("did:web:localhost%3A{port}");
    let org = app.create_org().await;
    assert_eq!(org.did, format!("{instance}:orgs:{}", org.slug));
    let agent = app.create_agent(&org, &["read"]).await;
    assert_eq!(agent.did, format!("{}:agents:{}", org.did, agent.id));

    // The admin API returns it on read too, and tokens carry it as `did`.
    let (st, v) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/agents/{}", org.slug, agent.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["did"], agent.did);
    let tok = app.token(&org, &agent, &[]).await;
    let claims = jwt_claims(tok["access_token"].as_str().unwrap());
    assert_eq!(claims["did"], agent.did, "{claims}");

    // The instance document lives at /.well-known/did.json.
    let f = fetch(&app, &app.url("/.well-known/did.json"), None).await;
    assert_eq!(f.status, StatusCode::OK, "{}", f.body);
    assert_eq!(f.content_type, DID_JSON);
    assert_eq!(f.body["id"], instance);
    assert_valid(&schemas().document, &f.body, "the instance document");
    let r = resolve(&app, &instance, None).await;
    assert_eq!(expect_resolved(&r, &instance), f.body);
}

on_all_backends!(identifiers_follow_the_did_web_scheme);

/// A DID pasted into the resolver's URL exactly as printed (`%3A` not encoded again) resolves,
/// like the binding's encoded forms (`%253A`, or every character encoded).
async fn printed_dids_resolve_as_pasted(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;
    let instance = format!("did:web:localhost%3A{}", app.addr.port());
    for did in [&instance, &org.did, &agent.did] {
        assert!(did.contains("%3A"), "{did}");
        for path in [did.clone(), did.replace('%', "%25"), encode_did(did)] {
            let r = fetch(&app, &app.url(&format!("/1.0/identifiers/{path}")), None).await;
            assert_eq!(expect_resolved(&r, did)["id"], did.as_str(), "{path}");
        }
    }
}

on_all_backends!(printed_dids_resolve_as_pasted);

// ---------------------------------------------------------------------------------------------
// Documents

async fn agent_document_lists_its_own_keys_and_the_org_assertion_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let org_kids = kids(&org_jwks(&app, &org).await);
    let org_key_urls: BTreeSet<String> = org_kids
        .iter()
        .map(|k| format!("{}#{k}", org.did))
        .collect();

    let ec = agent_key(Alg::ES256, "my-ec-key");
    let ed = agent_key(Alg::EdDSA, "my-ed-key");
    let rsa = agent_key(Alg::RS256, "my-rsa-key");
    let agent = keyed_agent(&app, &org, &[ec.clone(), ed.clone(), rsa.clone()]).await;
    let url = format!("{}/agents/{}/did.json", org.issuer, agent.id);

    let f = fetch(&app, &url, None).await;
    assert_eq!(f.status, StatusCode::OK, "{}", f.body);
    assert_eq!(f.content_type, DID_JSON);
    let doc = f.body;
    assert_valid(
        &schemas().document,
        &doc,
        "a private_key_jwt agent's document",
    );
    let ctx = strs(&doc["@context"]);
    assert_eq!(ctx[0], CTX_DID);
    for c in [CTX_JWS_2020, CTX_MULTIKEY] {
        assert!(ctx.iter().any(|x| x == c), "no {c} in {ctx:?}");
    }
    assert_eq!(doc["id"], agent.did);
    assert_eq!(doc["controller"], org.did);

    let vms = doc["verificationMethod"].as_array().unwrap();
    assert_eq!(vms.len(), 3, "{doc:#}");
    for jwk in [&ec, &ed, &rsa] {
        let id = format!("{}#{}", agent.did, rfc7638(jwk));
        let vm = vms
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no method {id} in {doc:#}"));
        assert_eq!(vm["controller"], agent.did);
        if jwk["kty"] == "OKP" {
            assert_eq!(vm["type"], "Multikey");
            assert!(vm.get("publicKeyJwk").is_none());
            let mb = vm["publicKeyMultibase"].as_str().unwrap();
            let raw = bs58::decode(mb.strip_prefix('z').expect("base58btc"))
                .into_vec()
                .unwrap();
            assert_eq!(&raw[..2], &[0xed, 0x01], "ed25519-pub multicodec");
            assert_eq!(raw[2..], unb64(jwk["x"].as_str().unwrap())[..]);
        } else {
            assert_eq!(vm["type"], "JsonWebKey2020");
            let pk = &vm["publicKeyJwk"];
            for m in ["kty", "crv", "x", "y", "n", "e"] {
                assert_eq!(pk.get(m), jwk.get(m), "{m} of {pk}");
            }
            assert!(pk.get("d").is_none());
        }
    }
    let own: BTreeSet<String> = vm_ids(&doc).into_iter().collect();
    let authn: BTreeSet<String> = strs(&doc["authentication"]).into_iter().collect();
    assert_eq!(authn, own);
    let assertion: BTreeSet<String> = strs(&doc["assertionMethod"]).into_iter().collect();
    assert_eq!(
        assertion,
        own.union(&org_key_urls).cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        service_endpoint(&doc, "OpenIdConnectIssuer"),
        &json!(org.issuer)
    );
    assert_eq!(
        service_endpoint(&doc, "AgentInfo"),
        &json!(format!("{}/agent-info", org.issuer))
    );
    assert_eq!(
        service_endpoint(&doc, "A2AAgentCard"),
        &json!(format!("{}/agents/{}/card", org.issuer, agent.id))
    );

    // The JSON-LD media type when asked for.
    let f = fetch(&app, &url, Some(DID_LD_JSON)).await;
    assert_eq!(f.status, StatusCode::OK);
    assert_eq!(f.content_type, DID_LD_JSON);
    assert_eq!(f.body, doc);

    // A secret-based agent has no keys of its own: only the organization's assertion keys.
    let plain = app.create_agent(&org, &["read"]).await;
    let f = fetch(
        &app,
        &format!("{}/agents/{}/did.json", org.issuer, plain.id),
        None,
    )
    .await;
    assert_eq!(f.status, StatusCode::OK, "{}", f.body);
    let doc = f.body;
    assert_valid(&schemas().document, &doc, "a secret-based agent's document");
    assert_eq!(doc["id"], plain.did);
    assert!(vm_ids(&doc).is_empty(), "{doc:#}");
    assert!(strs(&doc["authentication"]).is_empty(), "{doc:#}");
    let assertion: BTreeSet<String> = strs(&doc["assertionMethod"]).into_iter().collect();
    assert_eq!(assertion, org_key_urls);
}

on_all_backends!(agent_document_lists_its_own_keys_and_the_org_assertion_keys);

async fn org_document_publishes_the_jwks_under_the_same_kids(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let set = org_jwks(&app, &org).await;
    let f = fetch(&app, &format!("{}/did.json", org.issuer), None).await;
    assert_eq!(f.status, StatusCode::OK, "{}", f.body);
    assert_eq!(f.content_type, DID_JSON);
    let doc = f.body;
    assert_valid(&schemas().document, &doc, "an organization's document");
    assert_eq!(doc["id"], org.did);
    assert_eq!(
        doc["controller"],
        format!("did:web:localhost%3A{}", app.addr.port())
    );
    assert_eq!(
        service_endpoint(&doc, "OpenIdConnectIssuer"),
        &json!(org.issuer)
    );

    let prefix = format!("{}#", org.did);
    let fragments: BTreeSet<String> = vm_ids(&doc)
        .iter()
        .map(|id| {
            id.strip_prefix(&prefix)
                .expect("a method of the org")
                .to_owned()
        })
        .collect();
    assert_eq!(fragments, kids(&set), "{doc:#}\n{set:#}");
    for key in set["keys"].as_array().unwrap() {
        let id = format!("{prefix}{}", key["kid"].as_str().unwrap());
        let vm = doc["verificationMethod"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap();
        assert_eq!(vm["controller"], org.did);
        if key["kty"] == "OKP" {
            assert_eq!(vm["type"], "Multikey");
            let raw = bs58::decode(&vm["publicKeyMultibase"].as_str().unwrap()[1..])
                .into_vec()
                .unwrap();
            assert_eq!(raw[2..], unb64(key["x"].as_str().unwrap())[..]);
        } else {
            assert_eq!(vm["type"], "JsonWebKey2020");
            for m in ["kty", "crv", "x", "y", "n", "e"] {
                assert_eq!(vm["publicKeyJwk"].get(m), key.get(m), "{m}");
            }
        }
    }
    let ids: BTreeSet<String> = vm_ids(&doc).into_iter().collect();
    for rel in ["authentication", "assertionMethod"] {
        let r: BTreeSet<String> = strs(&doc[rel]).into_iter().collect();
        assert_eq!(r, ids, "{rel}");
    }
}

on_all_backends!(org_document_publishes_the_jwks_under_the_same_kids);

// ---------------------------------------------------------------------------------------------
// Resolution

async fn universal_resolver_binding_answers_resolution_results(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;
    for (did, url) in [
        (org.did.clone(), format!("{}/did.json", org.issuer)),
        (
            agent.did.clone(),
            format!("{}/agents/{}/did.json", org.issuer, agent.id),
        ),
    ] {
        let served = fetch(&app, &url, None).await.body;
        let r = resolve(&app, &did, None).await;
        assert_eq!(expect_resolved(&r, &did), served);
        assert_eq!(r.body["@context"], "https://w3id.org/did-resolution/v1");
        let meta = &r.body["didDocumentMetadata"];
        let (created, updated) = (
            rfc3339_secs(&meta["created"]),
            rfc3339_secs(&meta["updated"]),
        );
        let now = chrono::Utc::now().timestamp();
        assert!(
            created <= updated && updated <= now + 1 && now - created < 120,
            "{meta}"
        );
        assert!(meta.get("deactivated").is_none(), "{meta}");

        // The form most clients send: only `%` escaped, colons left as they are.
        let f = fetch(
            &app,
            &app.url(&format!("/1.0/identifiers/{}", did.replace('%', "%25"))),
            None,
        )
        .await;
        assert_eq!(expect_resolved(&f, &did), served);

        // Asking for a DID document media type gets the bare document.
        for accept in [DID_JSON, DID_LD_JSON] {
            let b = resolve(&app, &did, Some(accept)).await;
            assert_eq!(b.status, StatusCode::OK, "{}", b.body);
            assert_eq!(b.content_type, accept);
            assert_eq!(b.body, served);
        }
    }
}

on_all_backends!(universal_resolver_binding_answers_resolution_results);

async fn unknown_malformed_and_unsupported_dids_get_binding_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;

    // Unknown agent and unknown organization.
    let ghost = uuid::Uuid::new_v4().to_string();
    for url in [
        format!("{}/agents/{ghost}/did.json", org.issuer),
        app.url("/orgs/no-such-org/did.json"),
        app.url(&format!("/orgs/no-such-org/agents/{}/did.json", agent.id)),
        format!("{}/agents/{ghost}/card", org.issuer),
    ] {
        let (st, v) = app.get_json(&url).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{url}: {v}");
    }
    expect_resolution_error(
        &app,
        &format!("{}:agents:{ghost}", org.did),
        StatusCode::NOT_FOUND,
        "notFound",
    )
    .await;
    let instance = format!("did:web:localhost%3A{}", app.addr.port());
    expect_resolution_error(
        &app,
        &format!("{instance}:orgs:no-such-org"),
        StatusCode::NOT_FOUND,
        "notFound",
    )
    .await;

    // Anything else under the instance's own DID is ours to answer, and we serve no such
    // document: notFound, without fetching ourselves.
    for did in [
        format!("{instance}:somewhere"),
        format!("{}:agents", org.did),
        format!("{}:agents:{}:extra", org.did, agent.id),
        format!("{}:keys:{}", org.did, agent.id),
    ] {
        expect_resolution_error(&app, &did, StatusCode::NOT_FOUND, "notFound").await;
    }

    // The same agent id asked under another organization: as if it did not exist.
    for url in [
        format!("{}/agents/{}/did.json", other.issuer, agent.id),
        format!("{}/agents/{}/card", other.issuer, agent.id),
    ] {
        let (st, v) = app.get_json(&url).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{url}: {v}");
    }
    expect_resolution_error(
        &app,
        &format!("{}:agents:{}", other.did, agent.id),
        StatusCode::NOT_FOUND,
        "notFound",
    )
    .await;

    // Malformed DIDs.
    for bad in [
        "not-a-did",
        "did:web",
        "did:web:",
        "did:Web:example.com",
        "did:web:exa mple.com",
        "did:web:example.com:",
        "did:web:%zz",
        "did:web:example.com#frag",
        "did:key:not-multibase",
        "did:jwk:!!!",
    ] {
        expect_resolution_error(&app, bad, StatusCode::BAD_REQUEST, "invalidDid").await;
    }
    let long = format!("did:web:{}", "a".repeat(5000));
    expect_resolution_error(&app, &long, StatusCode::BAD_REQUEST, "invalidDid").await;

    // Methods we do not resolve.
    for did in ["did:example:123456789abcdefghi", "did:ion:EiClkZMDxPKqC9c"] {
        expect_resolution_error(&app, did, StatusCode::NOT_IMPLEMENTED, "methodNotSupported").await;
    }
}

on_all_backends!(unknown_malformed_and_unsupported_dids_get_binding_errors);

async fn did_key_and_did_jwk_resolve_locally(backend: Backend) {
    let app = spawn_app(backend).await;
    // did:key specification, Ed25519 example.
    let did = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    let doc = expect_resolved(&resolve(&app, did, None).await, did);
    assert_valid(&schemas().document, &doc, "a did:key document");
    let vm = &doc["verificationMethod"][0];
    assert_eq!(vm["id"], format!("{did}#{}", &did[8..]));
    assert_eq!(vm["type"], "Multikey");
    assert_eq!(vm["publicKeyMultibase"], &did[8..]);
    assert_eq!(doc["assertionMethod"], json!([vm["id"]]));

    // did:jwk specification, P-256 example.
    let jwk = json!({"crv": "P-256", "kty": "EC",
        "x": "acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0",
        "y": "_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE"});
    let did = format!(
        "did:jwk:{}",
        b64(serde_json::to_string(&jwk).unwrap().as_bytes())
    );
    let doc = expect_resolved(&resolve(&app, &did, None).await, &did);
    assert_valid(&schemas().document, &doc, "a did:jwk document");
    let vm = &doc["verificationMethod"][0];
    assert_eq!(vm["id"], format!("{did}#0"));
    assert_eq!(vm["publicKeyJwk"], jwk);

    // A did:jwk carrying a private key is refused.
    let private = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[1; 32]), "d": b64(&[2; 32])});
    let did = format!("did:jwk:{}", b64(private.to_string().as_bytes()));
    expect_resolution_error(&app, &did, StatusCode::BAD_REQUEST, "invalidDid").await;
}

on_all_backends!(did_key_and_did_jwk_resolve_locally);

// ---------------------------------------------------------------------------------------------
// Lifecycle

async fn revoked_agent_is_deactivated_and_suspended_agent_is_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;
    let url = format!("{}/agents/{}/did.json", org.issuer, agent.id);
    let base = format!("/api/v1/orgs/{}/agents/{}", org.slug, agent.id);

    let (st, v) = app
        .admin(Method::POST, &format!("{base}/suspend"), None)
        .await;
    assert!(st.is_success(), "{st} {v}");
    let f = fetch(&app, &url, None).await;
    assert_eq!(
        f.status,
        StatusCode::OK,
        "a suspended agent's DID stays: {}",
        f.body
    );
    let r = resolve(&app, &agent.did, None).await;
    expect_resolved(&r, &agent.did);
    assert!(
        r.body["didDocumentMetadata"].get("deactivated").is_none(),
        "{}",
        r.body
    );

    let (st, v) = app
        .admin(Method::POST, &format!("{base}/revoke"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let f = fetch(&app, &url, None).await;
    assert_eq!(f.status, StatusCode::GONE, "{}", f.body);
    let r = resolve(&app, &agent.did, None).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    assert_eq!(r.content_type, RESOLUTION_CT);
    assert_valid(
        &schemas().resolution,
        &r.body,
        "a deactivated DID's resolution",
    );
    assert_eq!(
        r.body["didDocumentMetadata"]["deactivated"], true,
        "{}",
        r.body
    );
    assert_eq!(r.body["didDocument"]["id"], agent.did);
    assert!(vm_ids(&r.body["didDocument"]).is_empty());
    assert!(
        r.body["didDocument"].get("assertionMethod").is_none(),
        "{}",
        r.body
    );
    let bare = resolve(&app, &agent.did, Some(DID_JSON)).await;
    assert_eq!(bare.status, StatusCode::GONE);
    // A revoked agent has no card and can no longer prove control.
    let (st, _) = app
        .get_json(&format!("{}/agents/{}/card", org.issuer, agent.id))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let resp = app
        .post_form(
            &org,
            "/agent-proof",
            Some((&agent.client_id, agent.secret.as_deref().unwrap())),
            &[],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

on_all_backends!(revoked_agent_is_deactivated_and_suspended_agent_is_not);

async fn key_rotation_updates_did_metadata_and_the_card_signer(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;
    let before_jwks = org_jwks(&app, &org).await;
    let org_before = resolve(&app, &org.did, None).await.body;
    let agent_before = resolve(&app, &agent.did, None).await.body;
    let card_url = format!("{}/agents/{}/card", org.issuer, agent.id);
    let (_, card_before) = app.get_json(&card_url).await;
    let kid_before = verify_card(&card_before, &before_jwks, &org.issuer).unwrap();

    // Timestamps have one-second resolution: pass a second on the server's clock.
    app.advance(Duration::from_millis(1100));
    rotate(&app, &org).await;

    let after_jwks = org_jwks(&app, &org).await;
    let new_kids: BTreeSet<String> = kids(&after_jwks)
        .difference(&kids(&before_jwks))
        .cloned()
        .collect();
    assert_eq!(new_kids.len(), 3, "{after_jwks}");
    for (before, did) in [(&org_before, &org.did), (&agent_before, &agent.did)] {
        let after = resolve(&app, did, None).await;
        let doc = expect_resolved(&after, did);
        let (m0, m1) = (
            &before["didDocumentMetadata"],
            &after.body["didDocumentMetadata"],
        );
        assert_eq!(m0["created"], m1["created"]);
        assert!(
            rfc3339_secs(&m1["updated"]) > rfc3339_secs(&m0["updated"]),
            "updated did not move: {m0} -> {m1}"
        );
        let assertion = strs(&doc["assertionMethod"]);
        for kid in &new_kids {
            assert!(
                assertion.contains(&format!("{}#{kid}", org.did)),
                "{kid} not in {assertion:?}"
            );
        }
    }
    // The organization's document follows the JWKS, old and new keys alike.
    let org_doc = resolve(&app, &org.did, None).await.body["didDocument"].clone();
    let fragments: BTreeSet<String> = vm_ids(&org_doc)
        .iter()
        .map(|id| id.rsplit_once('#').unwrap().1.to_owned())
        .collect();
    assert_eq!(fragments, kids(&after_jwks));
    let (st, card_after) = app.get_json(&card_url).await;
    assert_eq!(st, StatusCode::OK);
    let kid_after = verify_card(&card_after, &after_jwks, &org.issuer).unwrap();
    assert_ne!(
        kid_after, kid_before,
        "the card is still signed by the old key"
    );
    assert!(
        new_kids.contains(&kid_after),
        "{kid_after} is not a new key"
    );
}

on_all_backends!(key_rotation_updates_did_metadata_and_the_card_signer);

// ---------------------------------------------------------------------------------------------
// Agent cards

/// Verifies the card's detached JWS with the organization's JWKS, as a relying party would;
/// returns the signing `kid`.
fn verify_card(card: &Value, jwks: &Value, issuer: &str) -> Result<String, String> {
    let sigs = card["signatures"].as_array().ok_or("no signatures")?;
    if sigs.len() != 1 {
        return Err(format!("{} signatures", sigs.len()));
    }
    let protected = sigs[0]["protected"].as_str().ok_or("no protected header")?;
    let header: Value = serde_json::from_slice(&unb64(protected)).map_err(|e| e.to_string())?;
    if header["alg"] != "ES256" || header["typ"] != "JOSE" {
        return Err(format!("unexpected header {header}"));
    }
    if header["jku"] != format!("{issuer}/jwks.json") {
        return Err(format!("jku {}", header["jku"]));
    }
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or(format!("kid {kid} is not in the JWKS"))?;
    let mut point = vec![0x04];
    point.extend(unb64(key["x"].as_str().unwrap()));
    point.extend(unb64(key["y"].as_str().unwrap()));
    let mut unsigned = card.clone();
    unsigned.as_object_mut().unwrap().remove("signatures");
    let payload = serde_json_canonicalizer::to_vec(&unsigned).map_err(|e| e.to_string())?;
    let signing_input = format!("{protected}.{}", b64(&payload));
    let sig = unb64(sigs[0]["signature"].as_str().ok_or("no signature")?);
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &point,
    )
    .verify(signing_input.as_bytes(), &sig)
    .map_err(|_| "bad signature".to_owned())?;
    Ok(kid.to_owned())
}

async fn agent_card_is_an_a2a_card_signed_by_the_org(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read", "write"]).await;
    let set = org_jwks(&app, &org).await;
    let card_url = format!("{}/agents/{}/card", org.issuer, agent.id);
    let meta_path = format!("/api/v1/orgs/{}/agents/{}/card", org.slug, agent.id);

    // Defaults before anything is set.
    let (st, card) = app.get_json(&card_url).await;
    assert_eq!(st, StatusCode::OK, "{card}");
    assert_valid(&schemas().card, &card, "a default agent card");
    // No `url` until the operator sets the agent's A2A endpoint: the card's own URL is no endpoint.
    assert_eq!(card.get("url"), None, "{card}");
    assert_eq!(card["skills"], json!([]));
    verify_card(&card, &set, &org.issuer).unwrap();

    let meta = json!({
        "version": "2.1.0",
        "url": "https://agents.example.com/a2a/v1",
        "documentation_url": "https://agents.example.com/docs",
        "skills": [{"id": "summarize", "name": "Summarize", "description": "Summarizes text",
                    "tags": ["text", "nlp"], "examples": ["summarize this memo"]}],
        "capabilities": {"streaming": true, "pushNotifications": false, "stateTransitionHistory": true},
        "default_input_modes": ["text/plain", "application/json"],
        "default_output_modes": ["text/plain"],
    });
    let (st, v) = app.admin(Method::PUT, &meta_path, Some(meta.clone())).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, meta);
    let (st, v) = app.admin(Method::GET, &meta_path, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, meta);
    // Bad metadata is refused and changes nothing.
    let (st, v) = app
        .admin(
            Method::PUT,
            &meta_path,
            Some(json!({"url": "ftp://x.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = app
        .admin(Method::PUT, &meta_path, Some(json!({"skillz": []})))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    let (st, card) = app.get_json(&card_url).await;
    assert_eq!(st, StatusCode::OK, "{card}");
    assert_valid(&schemas().card, &card, "an agent card");
    assert_eq!(card["protocolVersion"], "0.3.0");
    assert_eq!(card["name"], "test agent");
    assert!(card["description"].is_string());
    assert_eq!(card["url"], meta["url"]);
    assert_eq!(card["documentationUrl"], meta["documentation_url"]);
    assert_eq!(card["version"], "2.1.0");
    assert_eq!(card["provider"]["url"], org.issuer);
    assert_eq!(card["provider"]["organization"], "Test Org");
    assert_eq!(card["capabilities"], meta["capabilities"]);
    assert_eq!(card["skills"], meta["skills"]);
    assert_eq!(card["defaultInputModes"], meta["default_input_modes"]);
    assert_eq!(card["defaultOutputModes"], meta["default_output_modes"]);
    let schemes = card["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes.len(), 1);
    let (name, scheme) = schemes.iter().next().unwrap();
    assert_eq!(scheme["type"], "oauth2");
    let cc = &scheme["flows"]["clientCredentials"];
    assert_eq!(cc["tokenUrl"], format!("{}/oauth2/token", org.issuer));
    let scopes: BTreeSet<&str> = cc["scopes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(scopes, BTreeSet::from(["read", "write"]));
    assert_eq!(card["security"][0][name], json!(["read", "write"]));
    assert_eq!(card["did"], agent.did);
    assert_eq!(card["authors"], json!(["Test Org"]));
    rfc3339_secs(&card["created_at"]);
    assert_eq!(card["locators"][0]["url"], card_url);

    // The signature is the organization's, over the JCS form of the rest of the card.
    let kid = verify_card(&card, &set, &org.issuer).unwrap();
    assert!(kids(&set).contains(&kid));
    let header: Value =
        serde_json::from_slice(&unb64(card["signatures"][0]["protected"].as_str().unwrap()))
            .unwrap();
    assert_eq!(header["jku"], format!("{}/jwks.json", org.issuer));
    // ... so the check fails on any change, and on another organization's keys.
    let mut forged = card.clone();
    forged["skills"][0]["name"] = json!("Exfiltrate");
    assert_eq!(
        verify_card(&forged, &set, &org.issuer).unwrap_err(),
        "bad signature"
    );
    let mut forged = card.clone();
    forged["url"] = json!("https://evil.example/a2a");
    assert!(verify_card(&forged, &set, &org.issuer).is_err());
    let other = app.create_org().await;
    assert!(verify_card(&card, &org_jwks(&app, &other).await, &org.issuer).is_err());
}

on_all_backends!(agent_card_is_an_a2a_card_signed_by_the_org);

// ---------------------------------------------------------------------------------------------
// Proof of control

/// Verifies a proof JWT from DID documents alone: resolve `sub` and `iss` through the resolver,
/// check the header `kid` is an assertion method of the agent and a verification method of the
/// organization, turn that method into a key, verify signature and claims.
async fn verify_proof_from_dids(app: &TestApp, proof: &str, aud: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(proof).map_err(|e| e.to_string())?;
    let claims = jwt_claims(proof);
    let sub = claims["sub"].as_str().ok_or("no sub")?;
    let iss = claims["iss"].as_str().ok_or("no iss")?;
    let kid = header.kid.clone().ok_or("no kid")?;

    let r = resolve(app, sub, None).await;
    if r.status != StatusCode::OK {
        return Err(format!("sub does not resolve: {}", r.body));
    }
    let agent_doc = &r.body["didDocument"];
    if agent_doc["controller"] != iss {
        return Err("iss does not control sub".into());
    }
    if !strs(&agent_doc["assertionMethod"]).contains(&kid) {
        return Err(format!("{kid} is not an assertion method of {sub}"));
    }
    let r = resolve(app, iss, None).await;
    if r.status != StatusCode::OK {
        return Err(format!("iss does not resolve: {}", r.body));
    }
    let org_doc = &r.body["didDocument"];
    let vm = org_doc["verificationMethod"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == kid)
        .ok_or(format!("{kid} is not a verification method of {iss}"))?;
    if vm["controller"] != iss {
        return Err("the method is not the issuer's".into());
    }
    let key = if let Some(jwk) = vm.get("publicKeyJwk") {
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(jwk.clone()).map_err(|e| e.to_string())?;
        jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?
    } else {
        let mb = vm["publicKeyMultibase"].as_str().ok_or("no key")?;
        let raw = bs58::decode(&mb[1..])
            .into_vec()
            .map_err(|e| e.to_string())?;
        if raw[..2] != [0xed, 0x01] {
            return Err("not an Ed25519 multikey".into());
        }
        jsonwebtoken::DecodingKey::from_ed_components(&b64(&raw[2..])).map_err(|e| e.to_string())?
    };
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[iss]);
    v.sub = Some(sub.to_owned());
    v.set_audience(&[aud]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud", "nbf"]);
    v.validate_nbf = true;
    jsonwebtoken::decode::<Value>(proof, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

async fn proof_of_control_verifies_from_did_documents_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    for alg in ["ES256", "EdDSA", "RS256"] {
        let agent = app
            .create_agent_with(
                &org,
                json!({"name": "prover", "scopes": [], "access_token_signed_response_alg": alg}),
            )
            .await;
        let aud = "https://verifier.example/api";
        let nonce = format!("n-{}", uuid::Uuid::new_v4().simple());
        let resp = app
            .post_form(
                &org,
                "/agent-proof",
                Some((&agent.client_id, agent.secret.as_deref().unwrap())),
                &[("aud", aud), ("nonce", &nonce)],
            )
            .await;
        assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
        let (st, body) = json_of(resp).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let proof = body["proof"].as_str().expect("a proof");
        let header = jwt_header(proof);
        assert_eq!(header["typ"], "agent-proof+jwt");
        assert_eq!(header["alg"], alg);
        let kid = header["kid"].as_str().unwrap();
        assert!(kid.starts_with(&format!("{}#", org.did)), "{kid}");

        let claims = verify_proof_from_dids(&app, proof, aud)
            .await
            .unwrap_or_else(|e| panic!("{alg} proof does not verify: {e}"));
        assert_eq!(claims["iss"], org.did);
        assert_eq!(claims["sub"], agent.did);
        assert_eq!(claims["aud"], aud);
        assert_eq!(claims["nonce"], nonce);
        let (iat, nbf, exp) = (
            claims["iat"].as_i64().unwrap(),
            claims["nbf"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert!(nbf <= iat && exp - iat == 300, "{claims}");
        assert!((chrono::Utc::now().timestamp() - iat).abs() < 60);
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

        // The same check refuses a tampered proof and one for another audience.
        let parts: Vec<&str> = proof.split('.').collect();
        let mut forged_claims = claims.clone();
        forged_claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 3600);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(forged_claims.to_string().as_bytes()),
            parts[2]
        );
        assert!(verify_proof_from_dids(&app, &forged, aud).await.is_err());
        assert!(
            verify_proof_from_dids(&app, proof, "https://other.example")
                .await
                .is_err()
        );
    }

    // Client authentication is that of the token endpoint.
    let agent = app.create_agent(&org, &[]).await;
    let resp = app
        .post_form(&org, "/agent-proof", Some((&agent.client_id, "wrong")), &[])
        .await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let resp = app.post_form(&org, "/agent-proof", None, &[]).await;
    assert!(resp.status().is_client_error());
    // Another organization's issuer does not know the agent.
    let other = app.create_org().await;
    let resp = app
        .post_form(
            &other,
            "/agent-proof",
            Some((&agent.client_id, agent.secret.as_deref().unwrap())),
            &[],
        )
        .await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Without aud and nonce the proof has neither.
    let resp = app
        .post_form(
            &org,
            "/agent-proof",
            Some((&agent.client_id, agent.secret.as_deref().unwrap())),
            &[],
        )
        .await;
    let (st, body) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let claims = jwt_claims(body["proof"].as_str().unwrap());
    assert!(
        claims.get("aud").is_none() && claims.get("nonce").is_none(),
        "{claims}"
    );
}

on_all_backends!(proof_of_control_verifies_from_did_documents_alone);

// ---------------------------------------------------------------------------------------------
// Foreign did:web over HTTPS

/// A self-signed certificate for `localhost`, written as PEM files in a temporary directory.
struct TestCert {
    dir: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl TestCert {
    fn localhost() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = temp_dir();
        let cert_pem = ck.cert.pem();
        let key_pem = ck.signing_key.serialize_pem();
        std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &key_pem).unwrap();
        Self {
            dir,
            cert_pem,
            key_pem,
        }
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone)]
struct ForeignState {
    port: u16,
    good_hits: Arc<AtomicUsize>,
    produced: Arc<AtomicUsize>,
}

const HUGE_CHUNK: usize = 64 * 1024;
const HUGE_CHUNKS: usize = 1024; // 64 MiB

fn foreign_doc(did: &str) -> Value {
    json!({
        "@context": [CTX_DID, CTX_JWS_2020],
        "id": did,
        "verificationMethod": [{
            "id": format!("{did}#key-1"), "type": "JsonWebKey2020", "controller": did,
            "publicKeyJwk": {"kty": "EC", "crv": "P-256",
                "x": "acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0",
                "y": "_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE"}
        }],
        "assertionMethod": [format!("{did}#key-1")],
    })
}

fn did_json(v: &Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, DID_JSON),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        v.to_string(),
    )
        .into_response()
}

async fn foreign_handler(State(st): State<ForeignState>, uri: Uri) -> Response {
    let did = |path: &str| format!("did:web:localhost%3A{}{path}", st.port);
    match uri.path() {
        "/.well-known/did.json" => did_json(&foreign_doc(&did(""))),
        "/good/did.json" => {
            st.good_hits.fetch_add(1, Ordering::SeqCst);
            did_json(&foreign_doc(&did(":good")))
        }
        "/slow/did.json" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            did_json(&foreign_doc(&did(":slow")))
        }
        "/huge/did.json" => {
            let produced = st.produced.clone();
            let chunks = futures_util::stream::iter((0..HUGE_CHUNKS).map(move |_| {
                produced.fetch_add(HUGE_CHUNK, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from(vec![b' '; HUGE_CHUNK]))
            }));
            (
                [(header::CONTENT_TYPE, DID_JSON)],
                Body::from_stream(chunks),
            )
                .into_response()
        }
        "/garbage/did.json" => (
            [(header::CONTENT_TYPE, DID_JSON)],
            "<html><body>definitely not a DID document</body></html>",
        )
            .into_response(),
        "/wrong-id/did.json" => did_json(&foreign_doc("did:web:elsewhere.example")),
        _ => (StatusCode::NOT_FOUND, "no such document").into_response(),
    }
}

/// A did:web host on `localhost` over HTTPS (with a self-signed certificate), or plain HTTP.
struct ForeignHost {
    port: u16,
    state: ForeignState,
    task: tokio::task::JoinHandle<()>,
}

impl ForeignHost {
    async fn start(tls: Option<&TestCert>) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = ForeignState {
            port,
            good_hits: Arc::default(),
            produced: Arc::default(),
        };
        let router = axum::Router::new()
            .fallback(foreign_handler)
            .with_state(state.clone());
        let task = match tls {
            Some(cert) => {
                let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                    cert.cert_pem.clone().into_bytes(),
                    cert.key_pem.clone().into_bytes(),
                )
                .await
                .unwrap();
                let server = axum_server::tls_rustls::from_tcp_rustls(listener, config).unwrap();
                tokio::spawn(async move {
                    let _ = server
                        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
                        .await;
                })
            }
            None => {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router).await;
                })
            }
        };
        Self { port, state, task }
    }

    fn did(&self, path: &str) -> String {
        format!("did:web:localhost%3A{}{path}", self.port)
    }
}

impl Drop for ForeignHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn foreign_did_web_is_fetched_over_https_within_limits(backend: Backend) {
    let cert = TestCert::localhost();
    let host = ForeignHost::start(Some(&cert)).await;
    let ca = cert.cert_file();
    let app = spawn_app_with(backend.clone(), |s| s.outbound_ca_file = Some(ca.clone())).await;

    // A good document resolves, and is then served from the cache.
    for did in [host.did(":good"), host.did("")] {
        let r = resolve(&app, &did, None).await;
        let doc = expect_resolved(&r, &did);
        assert_eq!(doc, foreign_doc(&did));
        assert_valid(&schemas().document, &doc, "a foreign document");
        let bare = resolve(&app, &did, Some(DID_JSON)).await;
        assert_eq!(bare.status, StatusCode::OK);
        assert_eq!(bare.body, foreign_doc(&did));
    }
    assert_eq!(host.state.good_hits.load(Ordering::SeqCst), 1, "not cached");

    // A missing document is notFound.
    expect_resolution_error(
        &app,
        &host.did(":nobody"),
        StatusCode::NOT_FOUND,
        "notFound",
    )
    .await;

    // Garbage and a document for another DID fail cleanly: the host answered with no usable
    // DID document, a gateway error (not a 500: nothing failed here).
    for path in [":garbage", ":wrong-id"] {
        expect_resolution_error(
            &app,
            &host.did(path),
            StatusCode::BAD_GATEWAY,
            "invalidDidDocument",
        )
        .await;
    }

    // A huge body is cut off at the cap, long before it ends and well within the time limit.
    let t = Instant::now();
    expect_resolution_error(
        &app,
        &host.did(":huge"),
        StatusCode::BAD_GATEWAY,
        "invalidDidDocument",
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let produced = host.state.produced.load(Ordering::SeqCst);
    assert!(
        produced < HUGE_CHUNK * HUGE_CHUNKS / 2,
        "the whole body was read ({produced} bytes)"
    );

    // A server that never answers is given up on after the 5 s limit.
    let t = Instant::now();
    expect_resolution_error(
        &app,
        &host.did(":slow"),
        StatusCode::GATEWAY_TIMEOUT,
        "notFound",
    )
    .await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );
    // The server is still fine.
    let (st, _) = app.get_json(&app.url("/healthz")).await;
    assert_eq!(st, StatusCode::OK);

    // HTTPS only: the same documents over plain HTTP (even on loopback) do not resolve.
    let plain = ForeignHost::start(None).await;
    expect_resolution_error(
        &app,
        &plain.did(":good"),
        StatusCode::BAD_GATEWAY,
        "notFound",
    )
    .await;
    assert_eq!(plain.state.good_hits.load(Ordering::SeqCst), 0);

    // Without AGENTIDP_ALLOW_INSECURE_LOOPBACK a loopback host is refused, HTTPS or not.
    let guarded = spawn_app_with(backend.clone(), |s| {
        s.outbound_ca_file = Some(ca.clone());
        s.allow_insecure_loopback = false;
    })
    .await;
    // The SSRF guard's refusal is notFound (404), whatever the reason, as for a private literal.
    expect_resolution_error(
        &guarded,
        &host.did(":good"),
        StatusCode::NOT_FOUND,
        "notFound",
    )
    .await;
    for did in ["did:web:10.0.0.1", "did:web:169.254.169.254:latest"] {
        expect_resolution_error(&guarded, did, StatusCode::NOT_FOUND, "notFound").await;
    }
    assert_eq!(host.state.good_hits.load(Ordering::SeqCst), 1);

    // Without the CA file the self-signed certificate is not trusted.
    let untrusting = spawn_app(backend).await;
    expect_resolution_error(
        &untrusting,
        &host.did(":good"),
        StatusCode::BAD_GATEWAY,
        "notFound",
    )
    .await;
}

on_all_backends!(foreign_did_web_is_fetched_over_https_within_limits);

async fn foreign_resolutions_are_rate_limited_per_client(backend: Backend) {
    let cert = TestCert::localhost();
    let host = ForeignHost::start(Some(&cert)).await;
    let ca = cert.cert_file();
    let app = spawn_app_with(backend, |s| s.outbound_ca_file = Some(ca.clone())).await;
    let org = app.create_org().await;
    let good = host.did(":good");
    expect_resolved(&resolve(&app, &good, None).await, &good);

    // 40 resolutions of distinct uncached foreign DIDs at once: the burst is 20 (one already
    // spent), refilled at 5 per second.
    let t = Instant::now();
    let results = futures_util::future::join_all((0..40).map(|i| {
        let app = &app;
        let did = host.did(&format!(":n{i}"));
        async move { resolve(app, &did, None).await }
    }))
    .await;
    let elapsed = t.elapsed().as_secs_f64();
    let limited: Vec<&Fetched> = results
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    for r in &limited {
        assert_eq!(
            r.body["didResolutionMetadata"]["error"], "rateLimited",
            "{}",
            r.body
        );
        assert_valid(&schemas().resolution, &r.body, "a rateLimited result");
    }
    for r in results
        .iter()
        .filter(|r| r.status != StatusCode::TOO_MANY_REQUESTS)
    {
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    }
    let allowed = 40 - limited.len();
    assert!(!limited.is_empty(), "no resolution was rate-limited");
    assert!(
        (allowed as f64) <= 19.0 + 5.0 * elapsed + 1.0,
        "{allowed} foreign fetches allowed in {elapsed:.2} s"
    );

    // What needs no fetch is never limited: own DIDs, did:key, cached documents.
    expect_resolved(&resolve(&app, &org.did, None).await, &org.did);
    let key = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    expect_resolved(&resolve(&app, key, None).await, key);
    expect_resolved(&resolve(&app, &good, None).await, &good);
    // Still limited for new foreign DIDs right away: of ten more at once, some are refused
    // (the limiter runs on real time and refills 5 per second, so on a loaded machine one of
    // them may already have been granted again; not all ten).
    let more = futures_util::future::join_all((0..10).map(|i| {
        let app = &app;
        let did = host.did(&format!(":another{i}"));
        async move { resolve(app, &did, None).await }
    }))
    .await;
    assert!(
        more.iter()
            .any(|r| r.status == StatusCode::TOO_MANY_REQUESTS),
        "none of ten further foreign resolutions was limited"
    );
}

on_all_backends!(foreign_resolutions_are_rate_limited_per_client);

async fn instance_served_over_tls_resolves_through_another_instance(backend: Backend) {
    let cert = TestCert::localhost();
    let (c, k) = (cert.cert_file(), cert.key_file());
    let first = spawn_app_with(backend.clone(), |s| {
        s.tls_cert = Some(c.clone());
        s.tls_key = Some(k.clone());
    })
    .await;
    let port = first.addr.port();
    assert_eq!(first.base, format!("https://localhost:{port}"));
    let org = first.create_org().await;
    assert_eq!(
        org.did,
        format!("did:web:localhost%3A{port}:orgs:{}", org.slug)
    );
    let agent = first.create_agent(&org, &[]).await;

    let ca = cert.cert_file();
    let second = spawn_app_with(backend, |s| s.outbound_ca_file = Some(ca.clone())).await;
    for (did, url) in [
        (org.did.clone(), format!("{}/did.json", org.issuer)),
        (
            agent.did.clone(),
            format!("{}/agents/{}/did.json", org.issuer, agent.id),
        ),
        (
            format!("did:web:localhost%3A{port}"),
            first.url("/.well-known/did.json"),
        ),
    ] {
        let served = fetch(&first, &url, None).await;
        assert_eq!(served.status, StatusCode::OK, "{}", served.body);
        let r = resolve(&second, &did, None).await;
        assert_eq!(expect_resolved(&r, &did), served.body);
    }
}

on_all_backends!(instance_served_over_tls_resolves_through_another_instance);

// ---------------------------------------------------------------------------------------------
// The schemas reject what they exist to catch.

fn sample_document() -> Value {
    let did = "did:web:idp.example.com%3A8443:orgs:acme:agents:a1";
    let org = "did:web:idp.example.com%3A8443:orgs:acme";
    json!({
        "@context": [CTX_DID, CTX_JWS_2020, CTX_MULTIKEY],
        "id": did,
        "controller": org,
        "verificationMethod": [
            {"id": format!("{did}#ec"), "type": "JsonWebKey2020", "controller": did,
             "publicKeyJwk": {"kty": "EC", "crv": "P-256",
                "x": "acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0",
                "y": "_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE"}},
            {"id": format!("{did}#ed"), "type": "Multikey", "controller": did,
             "publicKeyMultibase": "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"}
        ],
        "authentication": [format!("{did}#ec"), format!("{did}#ed")],
        "assertionMethod": [format!("{did}#ec"), format!("{org}#orgkey")],
        "service": [{"id": format!("{did}#agent-card"), "type": "A2AAgentCard",
                     "serviceEndpoint": "https://idp.example.com:8443/orgs/acme/agents/a1/card"}]
    })
}

fn edit(v: &Value, f: impl FnOnce(&mut Value)) -> Value {
    let mut v = v.clone();
    f(&mut v);
    v
}

#[test]
fn did_document_schema_rejects_broken_documents() {
    let s = &schemas().document;
    let good = sample_document();
    assert_valid(s, &good, "the sample document");
    let cases = [
        (
            "no id",
            edit(&good, |d| drop(d.as_object_mut().unwrap().remove("id"))),
        ),
        (
            "an id that is not a DID",
            edit(&good, |d| d["id"] = json!("https://idp.example.com")),
        ),
        (
            "an upper-case method",
            edit(&good, |d| d["id"] = json!("did:WEB:example.com")),
        ),
        (
            "no @context",
            edit(&good, |d| {
                drop(d.as_object_mut().unwrap().remove("@context"))
            }),
        ),
        (
            "a first context that is not DID v1",
            edit(&good, |d| d["@context"] = json!([CTX_JWS_2020, CTX_DID])),
        ),
        (
            "a method without controller",
            edit(&good, |d| {
                drop(
                    d["verificationMethod"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("controller"),
                )
            }),
        ),
        (
            "a method without type",
            edit(&good, |d| {
                drop(
                    d["verificationMethod"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("type"),
                )
            }),
        ),
        (
            "a method without a key",
            edit(&good, |d| {
                drop(
                    d["verificationMethod"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("publicKeyJwk"),
                )
            }),
        ),
        (
            "a method with two key forms",
            edit(&good, |d| {
                d["verificationMethod"][0]["publicKeyMultibase"] = json!("z6Mk")
            }),
        ),
        (
            "a private JWK member",
            edit(&good, |d| {
                d["verificationMethod"][0]["publicKeyJwk"]["d"] = json!("c2VjcmV0")
            }),
        ),
        (
            "a symmetric key",
            edit(&good, |d| {
                d["verificationMethod"][0]["publicKeyJwk"] = json!({"kty": "oct", "k": "c2VjcmV0"})
            }),
        ),
        (
            "an EC key without y",
            edit(&good, |d| {
                drop(
                    d["verificationMethod"][0]["publicKeyJwk"]
                        .as_object_mut()
                        .unwrap()
                        .remove("y"),
                )
            }),
        ),
        (
            "a Multikey with a JWK",
            edit(&good, |d| {
                d["verificationMethod"][0]["type"] = json!("Multikey")
            }),
        ),
        (
            "a multibase key that is not base58btc",
            edit(&good, |d| {
                d["verificationMethod"][1]["publicKeyMultibase"] = json!("uAAAA")
            }),
        ),
        (
            "a method id without fragment",
            edit(&good, |d| {
                d["verificationMethod"][0]["id"] = json!("did:web:x.example")
            }),
        ),
        (
            "a relationship entry that is a number",
            edit(&good, |d| d["assertionMethod"] = json!([1])),
        ),
        (
            "a relationship that is not an array",
            edit(&good, |d| {
                d["authentication"] = json!("did:web:x.example#k")
            }),
        ),
        (
            "a service without endpoint",
            edit(&good, |d| {
                drop(
                    d["service"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("serviceEndpoint"),
                )
            }),
        ),
        (
            "a service without type",
            edit(&good, |d| {
                drop(d["service"][0].as_object_mut().unwrap().remove("type"))
            }),
        ),
        (
            "a controller that is not a DID",
            edit(&good, |d| d["controller"] = json!("acme")),
        ),
    ];
    for (why, doc) in &cases {
        assert_invalid(s, doc, why);
    }
}

#[test]
fn did_resolution_result_schema_rejects_broken_results() {
    let s = &schemas().resolution;
    let good = json!({
        "@context": "https://w3id.org/did-resolution/v1",
        "didDocument": sample_document(),
        "didResolutionMetadata": {"contentType": DID_LD_JSON},
        "didDocumentMetadata": {"created": "2025-01-02T03:04:05Z", "updated": "2025-01-02T03:04:06Z"},
    });
    assert_valid(s, &good, "the sample result");
    let error = json!({"didDocument": null, "didResolutionMetadata": {"error": "notFound"}, "didDocumentMetadata": {}});
    assert_valid(s, &error, "an error result");
    let cases = [
        (
            "no didDocument",
            edit(&good, |r| {
                drop(r.as_object_mut().unwrap().remove("didDocument"))
            }),
        ),
        (
            "no didResolutionMetadata",
            edit(&good, |r| {
                drop(r.as_object_mut().unwrap().remove("didResolutionMetadata"))
            }),
        ),
        (
            "no didDocumentMetadata",
            edit(&good, |r| {
                drop(r.as_object_mut().unwrap().remove("didDocumentMetadata"))
            }),
        ),
        (
            "an error with a document",
            edit(&good, |r| {
                r["didResolutionMetadata"] = json!({"error": "notFound"})
            }),
        ),
        (
            "success without a document",
            edit(&good, |r| r["didDocument"] = Value::Null),
        ),
        (
            "neither contentType nor error",
            edit(&good, |r| r["didResolutionMetadata"] = json!({})),
        ),
        (
            "an unknown content type",
            edit(&good, |r| {
                r["didResolutionMetadata"]["contentType"] = json!("text/html")
            }),
        ),
        (
            "a created that is not RFC 3339",
            edit(&good, |r| {
                r["didDocumentMetadata"]["created"] = json!("yesterday")
            }),
        ),
        (
            "deactivated as a string",
            edit(&good, |r| {
                r["didDocumentMetadata"]["deactivated"] = json!("true")
            }),
        ),
        (
            "a broken document",
            edit(&good, |r| r["didDocument"]["id"] = json!("not a did")),
        ),
        (
            "an error code with a space",
            edit(&error, |r| {
                r["didResolutionMetadata"]["error"] = json!("not found")
            }),
        ),
    ];
    for (why, doc) in &cases {
        assert_invalid(s, doc, why);
    }
}

#[test]
fn agent_card_schema_rejects_broken_cards() {
    let s = &schemas().card;
    let good = json!({
        "protocolVersion": "0.3.0",
        "name": "bot",
        "description": "",
        "url": "https://idp.example.com/orgs/acme/agents/a1/card",
        "version": "1.0.0",
        "provider": {"organization": "Acme", "url": "https://idp.example.com/orgs/acme"},
        "capabilities": {"streaming": false, "pushNotifications": false, "stateTransitionHistory": false},
        "securitySchemes": {"agentidp": {"type": "oauth2", "flows": {"clientCredentials": {
            "tokenUrl": "https://idp.example.com/orgs/acme/oauth2/token", "scopes": {"read": ""}}}}},
        "security": [{"agentidp": ["read"]}],
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [{"id": "s", "name": "S", "description": "", "tags": []}],
        "did": "did:web:idp.example.com:orgs:acme:agents:a1",
        "authors": ["Acme"],
        "created_at": "2025-01-02T03:04:05Z",
        "locators": [{"type": "agent-card", "url": "https://idp.example.com/orgs/acme/agents/a1/card"}],
        "signatures": [{"protected": "eyJhbGciOiJFUzI1NiJ9", "signature": "c2ln"}],
    });
    assert_valid(s, &good, "the sample card");
    let mut cases: Vec<(String, Value)> = Vec::new();
    for req in [
        "protocolVersion",
        "name",
        "description",
        "version",
        "capabilities",
        "defaultInputModes",
        "defaultOutputModes",
        "skills",
    ] {
        cases.push((
            format!("no {req}"),
            edit(&good, |c| drop(c.as_object_mut().unwrap().remove(req))),
        ));
    }
    let more = [
        (
            "a relative url",
            edit(&good, |c| c["url"] = json!("/orgs/acme/agents/a1/card")),
        ),
        (
            "a skill without id",
            edit(&good, |c| {
                drop(c["skills"][0].as_object_mut().unwrap().remove("id"))
            }),
        ),
        (
            "a skill without tags",
            edit(&good, |c| {
                drop(c["skills"][0].as_object_mut().unwrap().remove("tags"))
            }),
        ),
        (
            "a capability that is not a boolean",
            edit(&good, |c| c["capabilities"]["streaming"] = json!("yes")),
        ),
        (
            "an oauth2 scheme without flows",
            edit(&good, |c| {
                drop(
                    c["securitySchemes"]["agentidp"]
                        .as_object_mut()
                        .unwrap()
                        .remove("flows"),
                )
            }),
        ),
        (
            "a token URL that is not a URL",
            edit(&good, |c| {
                c["securitySchemes"]["agentidp"]["flows"]["clientCredentials"]["tokenUrl"] =
                    json!("token")
            }),
        ),
        (
            "a signature that is not base64url",
            edit(&good, |c| {
                c["signatures"][0]["signature"] = json!("c2ln+/==")
            }),
        ),
        (
            "a signature without protected header",
            edit(&good, |c| {
                drop(
                    c["signatures"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("protected"),
                )
            }),
        ),
        (
            "an empty signatures array",
            edit(&good, |c| c["signatures"] = json!([])),
        ),
        (
            "a did that is not a DID",
            edit(&good, |c| c["did"] = json!("agent-a1")),
        ),
        (
            "a mode that is not a media type",
            edit(&good, |c| c["defaultInputModes"] = json!(["text"])),
        ),
    ];
    cases.extend(more.into_iter().map(|(w, c)| (w.to_owned(), c)));
    for (why, doc) in &cases {
        assert_invalid(s, doc, why);
    }
}
