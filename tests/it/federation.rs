//! Federation between issuers, checked from outside: two real agentidp instances trust each
//! other's organizations (registered by discovery or by DID), a plain OIDC issuer served by the
//! test itself (its JWKS, its metadata, its assertions minted here with `jsonwebtoken`), forged
//! and misused assertions each answered with their own code and spending nothing, a flood of
//! unknown `kid`s that must not turn into a flood of fetches, and a partner whose JWKS endpoint
//! goes down.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use base64::prelude::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::on_all_backends;
use crate::support::*;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TT_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const TT_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const TT_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// The server refreshes a partner's JWKS at most once per this interval (per URI), counted from
/// its previous fetch attempt (`agentidp::remote::REFRESH_INTERVAL` is 10 s), plus a second.
const PAST_REFRESH_WINDOW: Duration = Duration::from_secs(11);

// ---------------------------------------------------------------------------------------------
// Keys and assertions minted by the test

fn b64(bytes: impl AsRef<[u8]>) -> String {
    BASE64_URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn new_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A compact JWS over exactly this header and these claims.
fn jws(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap();
    format!("{msg}.{sig}")
}

/// An ES256 key pair of a partner (or an attacker), generated with aws-lc-rs.
struct TestKey {
    kid: String,
    encoding: EncodingKey,
    /// The public key as a JWK (with `kid`, `alg`, `use`).
    jwk: Value,
    /// The uncompressed public point (`04 || x || y`).
    public_point: Vec<u8>,
}

impl TestKey {
    fn generate() -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        assert_eq!(point.len(), 65);
        let der = pair.to_pkcs8v1().unwrap();
        let kid = format!("k-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
            "kid": kid, "alg": "ES256", "use": "sig",
        });
        Self {
            kid,
            encoding: EncodingKey::from_ec_der(der.as_ref()),
            jwk,
            public_point: point,
        }
    }

    fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// Signs with the usual header `{alg: ES256, typ: JWT, kid}`.
    fn sign(&self, claims: &Value) -> String {
        self.sign_with(
            &json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }

    /// Signs with exactly this header (ES256 signature whatever the header says).
    fn sign_with(&self, header: &Value, claims: &Value) -> String {
        jws(header, claims, &self.encoding, Algorithm::ES256)
    }
}

/// Claims of a well-formed assertion: five minutes of life, a fresh `jti`.
fn assertion_claims(iss: &str, aud: &str, sub: &str) -> Value {
    let now = now();
    json!({"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + 300, "jti": new_jti()})
}

// ---------------------------------------------------------------------------------------------
// A partner that is not agentidp: a JWKS and metadata served by the test

#[derive(Clone)]
struct PartnerState {
    base: String,
    jwks: Arc<Mutex<Value>>,
    jwks_hits: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
}

async fn partner_handler(State(st): State<PartnerState>, uri: Uri) -> Response {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let base = st.base.clone();
    let metadata = |issuer: String| {
        (
            [(header::CONTENT_TYPE, "application/json")],
            json!({
                "issuer": issuer,
                "jwks_uri": format!("{base}/jwks.json"),
                "token_endpoint": format!("{issuer}/token"),
                "response_types_supported": ["code"],
            })
            .to_string(),
        )
            .into_response()
    };
    match uri.path() {
        "/jwks.json" => {
            st.jwks_hits.fetch_add(1, Ordering::SeqCst);
            let jwks = st.jwks.lock().unwrap().to_string();
            (
                [
                    (header::CONTENT_TYPE, "application/jwk-set+json"),
                    (header::CACHE_CONTROL, "max-age=300"),
                ],
                jwks,
            )
                .into_response()
        }
        // OIDC Discovery for the issuer `base`, and for `base/disc`.
        "/.well-known/openid-configuration" => metadata(st.base.clone()),
        "/disc/.well-known/openid-configuration" => metadata(format!("{}/disc", st.base)),
        // RFC 8414 §3.1 only, for `base/as`.
        "/.well-known/oauth-authorization-server/as" => metadata(format!("{}/as", st.base)),
        // Metadata that names another issuer than the one it is fetched for.
        "/liar/.well-known/openid-configuration" => metadata(format!("{}/someone-else", st.base)),
        _ => (axum::http::StatusCode::NOT_FOUND, "not here").into_response(),
    }
}

/// An HTTP server on 127.0.0.1:0 playing a foreign issuer (or an attacker).
struct PartnerServer {
    base: String,
    state: PartnerState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PartnerServer {
    async fn start(jwks: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = PartnerState {
            base: base.clone(),
            jwks: Arc::new(Mutex::new(jwks)),
            jwks_hits: Arc::default(),
            hits: Arc::default(),
        };
        let router = axum::Router::new()
            .fallback(partner_handler)
            .with_state(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            base,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Stops serving: the listener closes and open connections are shut down.
    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let stopped = tokio::time::timeout(Duration::from_secs(10), task).await;
            assert!(stopped.is_ok(), "the partner server did not stop");
        }
    }
}

impl Drop for PartnerServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

async fn register(app: &TestApp, org: &TestOrg, body: Value) -> (StatusCode, Value) {
    app.admin(
        Method::POST,
        &format!("/api/v1/orgs/{}/partners", org.slug),
        Some(body),
    )
    .await
}

async fn register_ok(app: &TestApp, org: &TestOrg, body: Value) -> Value {
    let (st, v) = register(app, org, body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

fn partner_path(org: &TestOrg, id: &str, rest: &str) -> String {
    format!("/api/v1/orgs/{}/partners/{id}{rest}", org.slug)
}

/// Asserts a 422 naming `field`.
fn assert_field_error(st: StatusCode, v: &Value, field: &str) {
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], field, "{v}");
    assert!(v["error_description"].is_string(), "{v}");
}

/// `POST {iss}/federation/verify`; asserts the 200 and `no-store`.
async fn verify(app: &TestApp, org: &TestOrg, bearer: &str, assertion: &str) -> Value {
    let resp = app
        .http
        .post(format!("{}/federation/verify", org.issuer))
        .bearer_auth(bearer)
        .json(&json!({"assertion": assertion}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let (st, v) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn expect_valid(v: &Value) {
    assert_eq!(v["valid"], true, "{v}");
    assert!(v.get("error").is_none(), "{v}");
}

fn expect_invalid(v: &Value, code: &str) {
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"], code, "{v}");
    assert!(v["error_description"].is_string(), "{v}");
    assert!(
        v.get("claims").is_none() && v.get("subject").is_none(),
        "{v}"
    );
}

/// The JWT bearer grant (RFC 7523 §2.1) without client authentication.
async fn jwt_bearer(
    app: &TestApp,
    org: &TestOrg,
    assertion: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
    form.extend_from_slice(extra);
    json_of(app.post_form(org, "/oauth2/token", None, &form).await).await
}

/// Token exchange (RFC 8693 §2.1) without client authentication.
async fn token_exchange(
    app: &TestApp,
    org: &TestOrg,
    subject_token: &str,
    subject_token_type: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject_token),
        ("subject_token_type", subject_token_type),
    ];
    form.extend_from_slice(extra);
    json_of(app.post_form(org, "/oauth2/token", None, &form).await).await
}

/// An `invalid_grant` whose description carries the verification code.
fn expect_invalid_grant(st: StatusCode, v: &Value, code: &str) {
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_grant", "{v}");
    assert!(
        v["error_description"].as_str().unwrap().contains(code),
        "expected {code}: {v}"
    );
}

/// Verifies a token of `org` with `jsonwebtoken` against the served JWKS, as a resource server
/// would, and returns its claims.
async fn verify_local_token(app: &TestApp, org: &TestOrg, token: &str) -> Value {
    let (st, jwks) = app.get_json(&format!("{}/jwks.json", org.issuer)).await;
    assert_eq!(st, StatusCode::OK);
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[&org.issuer]);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

/// An access token of `agent` (client credentials) for the audience `aud`.
async fn token_for(app: &TestApp, org: &TestOrg, agent: &TestAgent, aud: &str) -> String {
    let t = app.token(org, agent, &[("audience", aud)]).await;
    t["access_token"].as_str().unwrap().to_owned()
}

/// Passes the refresh window (10 s per URI since the last fetch attempt) on `app`'s clock.
fn pass_refresh_window(app: &TestApp) {
    app.advance(PAST_REFRESH_WINDOW);
}

// ---------------------------------------------------------------------------------------------
// 1. Two agentidp instances

async fn two_agentidp_instances_federate_both_ways_through_rotation_and_disabling(
    backend: Backend,
) {
    let a = spawn_app(backend.clone()).await;
    let b = spawn_app(backend).await;
    let org_a = a.create_org().await;
    let org_b = b.create_org().await;

    // Discovery lists the two grants.
    for (app, org) in [(&a, &org_a), (&b, &org_b)] {
        let (st, meta) = app
            .get_json(&format!("{}/.well-known/openid-configuration", org.issuer))
            .await;
        assert_eq!(st, StatusCode::OK);
        let grants = meta["grant_types_supported"].as_array().unwrap();
        for g in ["client_credentials", JWT_BEARER, TOKEN_EXCHANGE] {
            assert!(grants.contains(&json!(g)), "{g} missing: {meta}");
        }
    }

    // Each registers the other's organization by its issuer alone: the metadata is discovered.
    let a_at_b = register_ok(&b, &org_b, json!({"issuer": org_a.issuer, "name": "Org A"})).await;
    assert_eq!(a_at_b["issuer"], org_a.issuer);
    assert_eq!(a_at_b["name"], "Org A");
    assert_eq!(a_at_b["jwks_uri"], format!("{}/jwks.json", org_a.issuer));
    assert_eq!(a_at_b["allowed_scopes"], json!([]));
    assert_eq!(
        a_at_b["allowed_audiences"],
        json!([org_b.issuer, format!("{}/oauth2/token", org_b.issuer)])
    );
    assert_eq!(a_at_b["max_assertion_lifetime_secs"], 3600);
    assert_eq!(a_at_b["claim_mapping"], json!({}));
    assert_eq!(a_at_b["enabled"], true);
    let a_at_b_id = a_at_b["id"].as_str().unwrap().to_owned();
    let b_at_a = register_ok(&a, &org_a, json!({"issuer": org_b.issuer})).await;
    assert_eq!(b_at_a["jwks_uri"], format!("{}/jwks.json", org_b.issuer));

    let agent_a = a.create_agent(&org_a, &["read"]).await;

    // An A token for B's audience verifies at B: the subject is the A agent's DID.
    let t1 = token_for(&a, &org_a, &agent_a, &org_b.issuer).await;
    let v = verify(&b, &org_b, &b.token, &t1).await;
    // B fetched A's JWKS for the first time just now.
    expect_valid(&v);
    assert_eq!(v["subject"], agent_a.did);
    assert_eq!(v["partner"]["id"], a_at_b_id);
    assert_eq!(v["partner"]["issuer"], org_a.issuer);
    assert_eq!(v["partner"]["name"], "Org A");
    assert_eq!(v["claims"]["iss"], org_a.issuer);
    assert_eq!(v["claims"]["sub"], agent_a.client_id);
    assert_eq!(v["claims"]["did"], agent_a.did);
    assert_eq!(v["claims"]["aud"], org_b.issuer);
    assert_eq!(v["claims"]["org_id"], org_a.id);
    assert_eq!(v["local_claims"], json!({}));
    // ... and is spent everywhere.
    expect_invalid(&verify(&b, &org_b, &b.token, &t1).await, "replayed");
    let (st, e) = jwt_bearer(&b, &org_b, &t1, &[]).await;
    expect_invalid_grant(st, &e, "replayed");

    // An A token is not a B token: B's resources take it only once exchanged.
    let t2 = token_for(&a, &org_a, &agent_a, &org_b.issuer).await;
    let (st, _, _) = b.agent_info(&org_b, &t2).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // JWT bearer grant at B: a B token for the federated identity.
    let (st, tok) = jwt_bearer(&b, &org_b, &t2, &[]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 900);
    assert!(tok.get("scope").is_none(), "no scope allowed yet: {tok}");
    assert!(tok.get("issued_token_type").is_none(), "{tok}");
    let b_token = tok["access_token"].as_str().unwrap().to_owned();
    let c = verify_local_token(&b, &org_b, &b_token).await;
    assert_eq!(c["iss"], org_b.issuer);
    assert_eq!(c["sub"], agent_a.did);
    assert_eq!(c["did"], agent_a.did);
    assert_eq!(c["aud"], org_b.issuer);
    assert_eq!(
        c["federated"],
        json!({"iss": org_a.issuer, "sub": agent_a.client_id})
    );
    assert!(c.get("org_id").is_none(), "no local membership: {c}");
    let (st, info, _) = b.agent_info(&org_b, &b_token).await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], agent_a.did);
    assert_eq!(info["iss"], org_b.issuer);
    assert_eq!(
        info["federated"],
        json!({"iss": org_a.issuer, "sub": agent_a.client_id})
    );
    assert_eq!(info["partner"]["id"], a_at_b_id);
    assert_eq!(info["partner"]["issuer"], org_a.issuer);
    assert!(info.get("org_id").is_none(), "{info}");
    // B's resource servers see it active through introspection.
    let b_resource = b.create_agent(&org_b, &[]).await;
    let intro = b.introspect(&org_b, &b_resource, &b_token).await;
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["sub"], agent_a.did);
    assert_eq!(
        intro["federated"],
        json!({"iss": org_a.issuer, "sub": agent_a.client_id})
    );
    assert_eq!(intro["org_id"], Value::Null);

    // Token exchange, with scopes within the partner's allowed scopes.
    let (st, p) = b
        .admin(
            Method::PATCH,
            &partner_path(&org_b, &a_at_b_id, ""),
            Some(json!({"allowed_scopes": ["read", "write"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["allowed_scopes"], json!(["read", "write"]));
    let t3 = token_for(&a, &org_a, &agent_a, &org_b.issuer).await;
    let (st, tok) = token_exchange(&b, &org_b, &t3, TT_ACCESS_TOKEN, &[("scope", "read")]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["issued_token_type"], TT_ACCESS_TOKEN);
    assert_eq!(tok["scope"], "read");
    let (st, info, _) = b
        .agent_info(&org_b, tok["access_token"].as_str().unwrap())
        .await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(info["scope"], "read");
    assert_eq!(info["sub"], agent_a.did);
    let t4 = token_for(&a, &org_a, &agent_a, &org_b.issuer).await;
    let (st, e) =
        token_exchange(&b, &org_b, &t4, TT_ACCESS_TOKEN, &[("scope", "read admin")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"], "invalid_scope", "{e}");
    let t5 = token_for(&a, &org_a, &agent_a, &org_b.issuer).await;
    let (st, tok) = token_exchange(&b, &org_b, &t5, TT_JWT, &[]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["scope"], "read write", "default: every allowed scope");

    // A rotates its keys; with activation delay 0 its new tokens carry the new kid.
    let old_kid = jwt_header(&t5)["kid"].clone();
    let (st, v) = a
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/rotate", org_a.slug),
            None,
        )
        .await;
    assert!(st.is_success(), "{st} {v}");
    let t6 = token_for(&a, &org_a, &agent_a, &org_b.issuer).await;
    assert_ne!(jwt_header(&t6)["kid"], old_kid);
    // B refetches a partner's JWKS for an unknown kid, but at most once per 10 s per URI
    // (REFRESH_INTERVAL), counted from its previous fetch attempt: its first fetch, during the
    // first verification above. Within that window the new kid is unknown to B (nothing spent);
    // once 11 s have passed on B's clock since that fetch, B refetches once and knows the new key.
    expect_invalid(&verify(&b, &org_b, &b.token, &t6).await, "unknown_key");
    pass_refresh_window(&b);
    let v = verify(&b, &org_b, &b.token, &t6).await;
    expect_valid(&v);
    assert_eq!(v["subject"], agent_a.did);
    let t7 = token_for(&a, &org_a, &agent_a, &org_b.issuer).await;
    let (st, tok) = jwt_bearer(&b, &org_b, &t7, &[]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let rotated_b_token = tok["access_token"].as_str().unwrap().to_owned();
    let (st, _, _) = b.agent_info(&org_b, &rotated_b_token).await;
    assert_eq!(st, StatusCode::OK);

    // B disables A: assertions are refused, and B tokens already issued for A's agents stop.
    let (st, p) = b
        .admin(
            Method::POST,
            &partner_path(&org_b, &a_at_b_id, "/disable"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["enabled"], false);
    let t8 = token_for(&a, &org_a, &agent_a, &org_b.issuer).await;
    expect_invalid(&verify(&b, &org_b, &b.token, &t8).await, "partner_disabled");
    let (st, e) = jwt_bearer(&b, &org_b, &t8, &[]).await;
    expect_invalid_grant(st, &e, "partner_disabled");
    for tok in [&b_token, &rotated_b_token] {
        let (st, info, challenge) = b.agent_info(&org_b, tok).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{info}");
        assert!(
            challenge.unwrap_or_default().contains("invalid_token"),
            "RFC 6750 challenge"
        );
        let intro = b.introspect(&org_b, &b_resource, tok).await;
        assert_eq!(intro, json!({"active": false}));
    }

    // The reverse direction: a B agent at A, verified with one of A's agents as the caller.
    let agent_b = b.create_agent(&org_b, &[]).await;
    let caller = token_for(&a, &org_a, &agent_a, &org_a.issuer).await;
    let u1 = token_for(&b, &org_b, &agent_b, &org_a.issuer).await;
    let v = verify(&a, &org_a, &caller, &u1).await;
    expect_valid(&v);
    assert_eq!(v["subject"], agent_b.did);
    assert_eq!(v["partner"]["id"], b_at_a["id"]);
    assert_eq!(v["claims"]["sub"], agent_b.client_id);
    let u2 = token_for(&b, &org_b, &agent_b, &org_a.issuer).await;
    let (st, tok) = jwt_bearer(&a, &org_a, &u2, &[]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let (st, info, _) = a
        .agent_info(&org_a, tok["access_token"].as_str().unwrap())
        .await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], agent_b.did);
    assert_eq!(
        info["federated"],
        json!({"iss": org_b.issuer, "sub": agent_b.client_id})
    );
    assert_eq!(info["partner"]["id"], b_at_a["id"]);
}

on_all_backends!(two_agentidp_instances_federate_both_ways_through_rotation_and_disabling);

// ---------------------------------------------------------------------------------------------
// 2. A partner that is not agentidp

async fn a_foreign_issuer_federates_by_jwks_uri_inline_jwks_or_discovered_metadata(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key = TestKey::generate();
    let srv = PartnerServer::start(key.jwks()).await;

    // By issuer and jwks_uri: the JWKS is fetched once, to check it.
    let p = register_ok(
        &app,
        &org,
        json!({"issuer": srv.base, "jwks_uri": srv.url("/jwks.json"), "name": "Plain IdP",
               "allowed_scopes": ["read", "write"], "claim_mapping": {"email": "partner_email"}}),
    )
    .await;
    assert_eq!(p["jwks_uri"], srv.url("/jwks.json"));
    assert_eq!(srv.jwks_hits(), 1);

    let mut c = assertion_claims(&srv.base, &org.issuer, "agent-7");
    c["email"] = json!("a7@partner.example");
    let v = verify(&app, &org, &app.token, &key.sign(&c)).await;
    expect_valid(&v);
    assert_eq!(v["subject"], format!("{}#agent-7", srv.base));
    assert_eq!(v["partner"]["id"], p["id"]);
    assert_eq!(v["claims"], c);
    assert_eq!(
        v["local_claims"],
        json!({"partner_email": "a7@partner.example"})
    );

    // JWT bearer grant.
    let c = assertion_claims(&srv.base, &org.issuer, "agent-7");
    let (st, tok) = jwt_bearer(&app, &org, &key.sign(&c), &[("scope", "write")]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["scope"], "write");
    let at = tok["access_token"].as_str().unwrap();
    let claims = verify_local_token(&app, &org, at).await;
    assert_eq!(claims["sub"], format!("{}#agent-7", srv.base));
    assert_eq!(
        claims["federated"],
        json!({"iss": srv.base, "sub": "agent-7"})
    );
    assert!(
        claims.get("did").is_none() && claims.get("org_id").is_none(),
        "{claims}"
    );
    let (st, info, _) = app.agent_info(&org, at).await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(
        info["federated"],
        json!({"iss": srv.base, "sub": "agent-7"})
    );
    assert_eq!(info["partner"]["name"], "Plain IdP");

    // Token exchange with each accepted subject token type; the default scope is all allowed.
    for tt in [TT_JWT, TT_ID_TOKEN, TT_ACCESS_TOKEN] {
        let c = assertion_claims(&srv.base, &org.issuer, "agent-7");
        let (st, tok) = token_exchange(&app, &org, &key.sign(&c), tt, &[]).await;
        assert_eq!(st, StatusCode::OK, "{tt}: {tok}");
        assert_eq!(tok["issued_token_type"], TT_ACCESS_TOKEN);
        assert_eq!(tok["scope"], "read write");
    }
    // Scope beyond the allowed ones; a subject token type that is not accepted; client
    // credentials that are sent must be valid.
    let c = assertion_claims(&srv.base, &org.issuer, "agent-7");
    let (st, e) = token_exchange(&app, &org, &key.sign(&c), TT_JWT, &[("scope", "admin")]).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{e}"
    );
    let c = assertion_claims(&srv.base, &org.issuer, "agent-7");
    let assertion = key.sign(&c);
    let (st, e) = token_exchange(
        &app,
        &org,
        &assertion,
        "urn:ietf:params:oauth:token-type:saml2",
        &[],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{e}"
    );
    let (st, e) = token_exchange(
        &app,
        &org,
        &assertion,
        TT_JWT,
        &[("client_id", "nobody"), ("client_secret", "wrong")],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{e}"
    );
    // Neither refusal looked at (and so spent) the assertion.
    let (st, tok) = token_exchange(&app, &org, &assertion, TT_JWT, &[]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(
        srv.jwks_hits(),
        1,
        "every verification used the cached JWKS"
    );

    // A second partner with its keys inline: no network at all.
    let key2 = TestKey::generate();
    let inline_iss = "https://inline.partner.example/tenant";
    let p2 = register_ok(
        &app,
        &org,
        json!({"issuer": inline_iss, "jwks": key2.jwks()}),
    )
    .await;
    assert_eq!(p2["jwks"], key2.jwks());
    assert_eq!(p2["jwks_uri"], Value::Null);
    let v = verify(
        &app,
        &org,
        &app.token,
        &key2.sign(&assertion_claims(inline_iss, &org.issuer, "bot")),
    )
    .await;
    expect_valid(&v);
    assert_eq!(v["subject"], format!("{inline_iss}#bot"));
    assert_eq!(v["partner"]["id"], p2["id"]);
    // Each partner's keys are its own: the first partner's key does not sign for the second.
    let v = verify(
        &app,
        &org,
        &app.token,
        &key.sign(&assertion_claims(inline_iss, &org.issuer, "bot")),
    )
    .await;
    expect_invalid(&v, "unknown_key");

    // By issuer alone: OIDC Discovery at {issuer}/.well-known/openid-configuration ...
    let org2 = app.create_org().await;
    let p3 = register_ok(&app, &org2, json!({"issuer": srv.base})).await;
    assert_eq!(p3["jwks_uri"], srv.url("/jwks.json"));
    let v = verify(
        &app,
        &org2,
        &app.token,
        &key.sign(&assertion_claims(&srv.base, &org2.issuer, "x")),
    )
    .await;
    expect_valid(&v);
    let disc = srv.url("/disc");
    let p4 = register_ok(&app, &org, json!({"issuer": disc})).await;
    assert_eq!(p4["jwks_uri"], srv.url("/jwks.json"));
    let v = verify(
        &app,
        &org,
        &app.token,
        &key.sign(&assertion_claims(&disc, &org.issuer, "x")),
    )
    .await;
    expect_valid(&v);
    assert_eq!(v["partner"]["id"], p4["id"]);
    // ... then RFC 8414 §3.1 (well-known segment before the issuer's path).
    let p5 = register_ok(&app, &org, json!({"issuer": srv.url("/as")})).await;
    assert_eq!(p5["jwks_uri"], srv.url("/jwks.json"));
    // Metadata naming another issuer, or none at all: refused, nothing registered.
    for path in ["/liar", "/nothing"] {
        let (st, e) = register(&app, &org, json!({"issuer": srv.url(path)})).await;
        assert_field_error(st, &e, "issuer");
    }
    let (st, list) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/partners", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut issuers: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["issuer"].as_str().unwrap())
        .collect();
    issuers.sort_unstable();
    let mut expected = vec![srv.base.as_str(), inline_iss, disc.as_str()];
    let as_iss = srv.url("/as");
    expected.push(&as_iss);
    expected.sort_unstable();
    assert_eq!(issuers, expected);
}

on_all_backends!(a_foreign_issuer_federates_by_jwks_uri_inline_jwks_or_discovered_metadata);

// ---------------------------------------------------------------------------------------------
// 3. Attacks

/// A partner registered by `jwks_uri` on a fresh instance.
struct Fixture {
    app: TestApp,
    org: TestOrg,
    key: TestKey,
    srv: PartnerServer,
    partner: Value,
}

async fn fixture(backend: Backend) -> Fixture {
    // Above the flood test's 1,000 concurrent requests: at the connection cap the server closes
    // idle keep-alive connections, and a pooled client that reuses one at that moment sees
    // IncompleteMessage (RFC 9112 §9.6 allows the close; reqwest does not retry a POST). The
    // cap has tests of its own (connections.rs); these are about JWKS fetching.
    let app = spawn_app_with(backend, |s| s.max_connections = 4096).await;
    let org = app.create_org().await;
    let key = TestKey::generate();
    let srv = PartnerServer::start(key.jwks()).await;
    let partner = register_ok(
        &app,
        &org,
        json!({"issuer": srv.base, "jwks_uri": srv.url("/jwks.json")}),
    )
    .await;
    Fixture {
        app,
        org,
        key,
        srv,
        partner,
    }
}

impl Fixture {
    fn claims(&self) -> Value {
        assertion_claims(&self.srv.base, &self.org.issuer, "agent-7")
    }

    fn with_jti(&self, jti: &str) -> Value {
        let mut c = self.claims();
        c["jti"] = json!(jti);
        c
    }

    async fn verify(&self, assertion: &str) -> Value {
        verify(&self.app, &self.org, &self.app.token, assertion).await
    }
}

async fn forged_and_misused_assertions_get_their_own_code_and_spend_nothing(backend: Backend) {
    let f = fixture(backend).await;
    let attacker_key = TestKey::generate();
    let attacker = PartnerServer::start(attacker_key.jwks()).await;
    let other_org = f.app.create_org().await;
    let now = now();

    // Each case: a rejected assertion carrying `jti`, and its expected code.
    let mut cases: Vec<(&str, String, Option<String>, &str)> = Vec::new();
    let mut case = |name: &'static str, make: &dyn Fn(Value) -> String, code: &'static str| {
        let jti = new_jti();
        let c = f.with_jti(&jti);
        cases.push((name, make(c), Some(jti), code));
    };
    let key = &f.key;
    case(
        "tampered payload",
        &|c| {
            let good = key.sign(&c);
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            let mut forged = c.clone();
            forged["sub"] = json!("admin");
            parts[1] = b64(forged.to_string());
            parts.join(".")
        },
        "invalid_signature",
    );
    let unregistered = f.srv.url("/unregistered");
    case(
        "unregistered issuer",
        &|mut c| {
            c["iss"] = json!(unregistered);
            key.sign(&c)
        },
        "unknown_issuer",
    );
    case(
        "expired",
        &|mut c| {
            c["iat"] = json!(now - 600);
            c["exp"] = json!(now - 120);
            key.sign(&c)
        },
        "expired",
    );
    case(
        "lifetime beyond the partner's maximum",
        &|mut c| {
            c["exp"] = json!(now + 3600 + 600);
            key.sign(&c)
        },
        "lifetime_too_long",
    );
    case(
        "lifetime beyond the maximum, without iat",
        &|mut c| {
            c.as_object_mut().unwrap().remove("iat");
            c["exp"] = json!(now + 3600 + 600);
            key.sign(&c)
        },
        "lifetime_too_long",
    );
    case(
        "exp at the end of time",
        &|mut c| {
            c["exp"] = json!(i64::MAX);
            key.sign(&c)
        },
        "lifetime_too_long",
    );
    case(
        "iat at the beginning of time",
        &|mut c| {
            c["iat"] = json!(i64::MIN);
            key.sign(&c)
        },
        "lifetime_too_long",
    );
    case(
        "nbf in the future",
        &|mut c| {
            c["nbf"] = json!(now + 600);
            c["exp"] = json!(now + 900);
            key.sign(&c)
        },
        "not_yet_valid",
    );
    case(
        "iat in the future",
        &|mut c| {
            c["iat"] = json!(now + 600);
            c["exp"] = json!(now + 900);
            key.sign(&c)
        },
        "invalid_iat",
    );
    case(
        "alg none",
        &|c| {
            let h = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
            format!("{}.{}.", b64(h.to_string()), b64(c.to_string()))
        },
        "unsupported_algorithm",
    );
    case(
        "HS256 keyed with the partner's public key point",
        &|c| {
            let h = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid});
            jws(
                &h,
                &c,
                &EncodingKey::from_secret(&key.public_point),
                Algorithm::HS256,
            )
        },
        "unsupported_algorithm",
    );
    case(
        "HS256 keyed with the partner's public JWK",
        &|c| {
            let h = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid});
            let secret = key.jwk.to_string();
            jws(
                &h,
                &c,
                &EncodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            )
        },
        "unsupported_algorithm",
    );
    let jku = attacker.url("/jwks.json");
    case(
        "jku to the attacker's JWKS, attacker's kid",
        &|c| {
            let h = json!({"alg": "ES256", "typ": "JWT", "kid": attacker_key.kid, "jku": jku});
            attacker_key.sign_with(&h, &c)
        },
        "unknown_key",
    );
    case(
        "jku to the attacker's JWKS, partner's kid",
        &|c| {
            let h = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid, "jku": jku});
            attacker_key.sign_with(&h, &c)
        },
        "invalid_signature",
    );
    case(
        "attacker's key embedded as jwk header",
        &|c| {
            let h = json!({"alg": "ES256", "typ": "JWT", "jwk": attacker_key.jwk});
            attacker_key.sign_with(&h, &c)
        },
        "invalid_signature",
    );
    case(
        "x5u to the attacker",
        &|c| {
            let h = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid, "x5u": attacker.url("/cert.pem")});
            attacker_key.sign_with(&h, &c)
        },
        "invalid_signature",
    );
    case(
        "crit header",
        &|c| {
            let h = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid, "crit": ["exp"]});
            key.sign_with(&h, &c)
        },
        "unsupported_critical_header",
    );
    case(
        "aud of another service",
        &|mut c| {
            c["aud"] = json!("https://elsewhere.example/api");
            key.sign(&c)
        },
        "invalid_audience",
    );
    let other_iss = other_org.issuer.clone();
    case(
        "aud of another organization on the same instance",
        &|mut c| {
            c["aud"] = json!([other_iss]);
            key.sign(&c)
        },
        "invalid_audience",
    );
    case(
        "no aud",
        &|mut c| {
            c.as_object_mut().unwrap().remove("aud");
            key.sign(&c)
        },
        "invalid_audience",
    );
    case(
        "no exp",
        &|mut c| {
            c.as_object_mut().unwrap().remove("exp");
            key.sign(&c)
        },
        "missing_claim",
    );
    case(
        "no sub",
        &|mut c| {
            c.as_object_mut().unwrap().remove("sub");
            key.sign(&c)
        },
        "missing_claim",
    );
    case(
        "unknown kid",
        &|c| {
            let h = json!({"alg": "ES256", "typ": "JWT", "kid": "no-such-kid"});
            key.sign_with(&h, &c)
        },
        "unknown_key",
    );
    let mut no_jti = f.claims();
    no_jti.as_object_mut().unwrap().remove("jti");
    cases.push(("no jti", f.key.sign(&no_jti), None, "missing_claim"));
    cases.push(("not a JWS", "not.a-jws".into(), None, "malformed_assertion"));

    for (name, assertion, jti, code) in &cases {
        let v = f.verify(assertion).await;
        assert_eq!(v["error"], *code, "{name}: {v}");
        expect_invalid(&v, code);
        let (st, e) = jwt_bearer(&f.app, &f.org, assertion, &[]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{name}: {e}");
        expect_invalid_grant(st, &e, code);
        // Nothing was spent: a correct assertion with the same jti verifies.
        if let Some(jti) = jti {
            let v = f.verify(&f.key.sign(&f.with_jti(jti))).await;
            assert_eq!(v["valid"], true, "{name}: the jti was spent: {v}");
        }
    }
    assert_eq!(attacker.hits(), 0, "jku/x5u must never be fetched");

    // Replay: a verified assertion is spent at verify and at the token endpoint, and an
    // exchanged one at verify.
    let good = f.key.sign(&f.claims());
    expect_valid(&f.verify(&good).await);
    expect_invalid(&f.verify(&good).await, "replayed");
    let (st, e) = jwt_bearer(&f.app, &f.org, &good, &[]).await;
    expect_invalid_grant(st, &e, "replayed");
    let good = f.key.sign(&f.claims());
    let (st, tok) = jwt_bearer(&f.app, &f.org, &good, &[]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    expect_invalid(&f.verify(&good).await, "replayed");
    let (st, e) = token_exchange(&f.app, &f.org, &good, TT_JWT, &[]).await;
    expect_invalid_grant(st, &e, "replayed");

    // The partner itself is unchanged.
    let (st, p) = f
        .app
        .admin(
            Method::GET,
            &partner_path(&f.org, f.partner["id"].as_str().unwrap(), ""),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(p, f.partner);
}

on_all_backends!(forged_and_misused_assertions_get_their_own_code_and_spend_nothing);

async fn a_partner_of_one_organization_is_unknown_to_another(backend: Backend) {
    let f = fixture(backend).await;
    let (app, org_x) = (&f.app, &f.org);
    let org_y = app.create_org().await;
    let id = f.partner["id"].as_str().unwrap();

    // An assertion naming both organizations: at Y its issuer is nobody.
    let mut c = f.claims();
    c["aud"] = json!([org_x.issuer, org_y.issuer]);
    let assertion = f.key.sign(&c);
    expect_invalid(
        &verify(app, &org_y, &app.token, &assertion).await,
        "unknown_issuer",
    );
    let (st, e) = jwt_bearer(app, &org_y, &assertion, &[]).await;
    expect_invalid_grant(st, &e, "unknown_issuer");

    // Y cannot see or touch X's partner.
    for (method, rest, body) in [
        (Method::GET, "", None),
        (Method::PATCH, "", Some(json!({"enabled": false}))),
        (Method::DELETE, "", None),
        (Method::POST, "/disable", None),
        (Method::POST, "/enable", None),
    ] {
        let (st, v) = app
            .admin(method.clone(), &partner_path(&org_y, id, rest), body)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{method} {rest}: {v}");
    }
    let (st, p) = app
        .admin(Method::GET, &partner_path(org_x, id, ""), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(p, f.partner, "unchanged");

    // Y's refusal spent nothing: X accepts the assertion, which is then spent everywhere,
    // even at Y once Y registers the same issuer.
    expect_valid(&f.verify(&assertion).await);
    register_ok(
        app,
        &org_y,
        json!({"issuer": f.srv.base, "jwks_uri": f.srv.url("/jwks.json")}),
    )
    .await;
    expect_invalid(
        &verify(app, &org_y, &app.token, &assertion).await,
        "replayed",
    );
    let mut c = f.claims();
    c["aud"] = json!(org_y.issuer);
    expect_valid(&verify(app, &org_y, &app.token, &f.key.sign(&c)).await);
}

on_all_backends!(a_partner_of_one_organization_is_unknown_to_another);

async fn only_the_organizations_agents_or_the_platform_may_verify(backend: Backend) {
    let f = fixture(backend).await;
    let (app, org) = (&f.app, &f.org);
    let agent = app.create_agent(org, &[]).await;
    let other_org = app.create_org().await;
    let stranger = app.create_agent(&other_org, &[]).await;
    let assertion = f.key.sign(&f.claims());
    let url = format!("{}/federation/verify", org.issuer);
    let body = json!({"assertion": assertion});

    let resp = app.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    let stranger_token = token_for(app, &other_org, &stranger, &other_org.issuer).await;
    let (st, fed) = jwt_bearer(app, org, &f.key.sign(&f.claims()), &[]).await;
    assert_eq!(st, StatusCode::OK, "{fed}");
    for bearer in [
        "not-a-token",
        stranger_token.as_str(),
        fed["access_token"].as_str().unwrap(),
    ] {
        let resp = app
            .http
            .post(&url)
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bearer}");
    }
    // A body without an assertion is a client error.
    let own = token_for(app, org, &agent, &org.issuer).await;
    let resp = app
        .http
        .post(&url)
        .bearer_auth(&own)
        .json(&json!({"jwt": assertion}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
    // None of the refused calls spent the assertion; the organization's own agent may verify.
    let v = verify(app, org, &own, &assertion).await;
    expect_valid(&v);
}

on_all_backends!(only_the_organizations_agents_or_the_platform_may_verify);

async fn a_flood_of_unknown_kids_fetches_the_partner_jwks_at_most_twice(backend: Backend) {
    let f = fixture(backend).await;
    assert_eq!(f.srv.jwks_hits(), 1, "fetched once at registration");
    expect_valid(&f.verify(&f.key.sign(&f.claims())).await);
    assert_eq!(f.srv.jwks_hits(), 1, "served from the cache");

    // Wait until the registration fetch no longer rate-limits refreshes (10 s per URI), so that
    // the flood is entitled to exactly one refresh, which all 1,000 callers must share.
    pass_refresh_window(&f.app);
    let assertions: Vec<String> = (0..1000)
        .map(|_| {
            let h = json!({"alg": "ES256", "typ": "JWT", "kid": format!("unknown-{}", new_jti())});
            f.key.sign_with(&h, &f.claims())
        })
        .collect();
    let answers = futures_util::future::join_all(assertions.iter().map(|a| f.verify(a))).await;
    for v in &answers {
        expect_invalid(v, "unknown_key");
    }
    let hits = f.srv.jwks_hits();
    assert!(hits <= 2, "the partner's JWKS was fetched {hits} times");
    assert_eq!(
        hits, 2,
        "an unknown kid past the window triggers one refresh"
    );
    // The known key still verifies.
    expect_valid(&f.verify(&f.key.sign(&f.claims())).await);
}

on_all_backends!(a_flood_of_unknown_kids_fetches_the_partner_jwks_at_most_twice);

// ---------------------------------------------------------------------------------------------
// 4. Partner administration

async fn partners_are_listed_read_updated_and_deleted_with_validated_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let other_org = app.create_org().await;
    let base = format!("/api/v1/orgs/{}/partners", org.slug);
    let keys: Vec<TestKey> = (0..3).map(|_| TestKey::generate()).collect();
    let issuers: Vec<String> = (0..3)
        .map(|i| format!("https://p{i}.partner.example/orgs/x"))
        .collect();

    let mut created = Vec::new();
    for (k, iss) in keys.iter().zip(&issuers) {
        created.push(register_ok(&app, &org, json!({"issuer": iss, "jwks": k.jwks()})).await);
    }
    let ids: Vec<&str> = created.iter().map(|p| p["id"].as_str().unwrap()).collect();

    // Listing, paged by `limit` and `after`.
    let (st, page1) = app
        .admin(Method::GET, &format!("{base}?limit=2"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{page1}");
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let next = page1["next"].as_str().expect("a next cursor");
    let (st, page2) = app
        .admin(Method::GET, &format!("{base}?limit=2&after={next}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{page2}");
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2["next"], Value::Null);
    let mut listed: Vec<Value> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["items"].as_array().unwrap())
        .cloned()
        .collect();
    listed.sort_by_key(|p| p["id"].as_str().unwrap().to_owned());
    let mut expected = created.clone();
    expected.sort_by_key(|p| p["id"].as_str().unwrap().to_owned());
    assert_eq!(listed, expected);
    let (st, e) = app
        .admin(Method::GET, &format!("{base}?limit=0"), None)
        .await;
    assert_field_error(st, &e, "limit");

    // Reading one.
    let (st, got) = app
        .admin(Method::GET, &partner_path(&org, ids[0], ""), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got, created[0]);

    // Updating: only the given fields change.
    let patch = json!({
        "name": "Partner Zero", "allowed_scopes": ["read"], "allowed_audiences": ["https://api.example.com"],
        "max_assertion_lifetime_secs": 600, "claim_mapping": {"email": "partner_email"},
    });
    let (st, up) = app
        .admin(Method::PATCH, &partner_path(&org, ids[0], ""), Some(patch))
        .await;
    assert_eq!(st, StatusCode::OK, "{up}");
    assert_eq!(up["name"], "Partner Zero");
    assert_eq!(up["allowed_scopes"], json!(["read"]));
    assert_eq!(up["allowed_audiences"], json!(["https://api.example.com"]));
    assert_eq!(up["max_assertion_lifetime_secs"], 600);
    assert_eq!(up["claim_mapping"], json!({"email": "partner_email"}));
    assert_eq!(up["issuer"], created[0]["issuer"]);
    assert_eq!(up["jwks"], created[0]["jwks"]);
    let (_, got) = app
        .admin(Method::GET, &partner_path(&org, ids[0], ""), None)
        .await;
    assert_eq!(got, up);
    // The new settings are in force: an assertion for the new audience, living 15 minutes, is
    // too long-lived now, and a 5-minute one is accepted with its claims mapped.
    let iss = &issuers[0];
    let mut c = assertion_claims(iss, "https://api.example.com", "s");
    c["exp"] = json!(now() + 900);
    expect_invalid(
        &verify(&app, &org, &app.token, &keys[0].sign(&c)).await,
        "lifetime_too_long",
    );
    let mut c = assertion_claims(iss, "https://api.example.com", "s");
    c["email"] = json!("s@p0.example");
    let v = verify(&app, &org, &app.token, &keys[0].sign(&c)).await;
    expect_valid(&v);
    assert_eq!(v["local_claims"], json!({"partner_email": "s@p0.example"}));
    expect_invalid(
        &verify(
            &app,
            &org,
            &app.token,
            &keys[0].sign(&assertion_claims(iss, &org.issuer, "s")),
        )
        .await,
        "invalid_audience",
    );

    // Validation errors name the field, and change nothing.
    let k = &keys[0];
    let mut private = k.jwk.clone();
    private["d"] = json!(b64([7u8; 32]));
    let bad_creates = [
        (json!({"jwks": k.jwks()}), "issuer"),
        (json!({"issuer": "not a url", "jwks": k.jwks()}), "issuer"),
        (
            json!({"issuer": "https://q.example/x?a=b", "jwks": k.jwks()}),
            "issuer",
        ),
        (
            json!({"issuer": "http://plain.example/x", "jwks": k.jwks()}),
            "issuer",
        ),
        (json!({"issuer": org.issuer, "jwks": k.jwks()}), "issuer"),
        (
            json!({"issuer": "https://q.example/x", "jwks": {"keys": [private.clone()]}}),
            "jwks",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks": {"keys": []}}),
            "jwks",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            "jwks",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks_uri": "http://127.0.0.1:1/jwks.json"}),
            "jwks_uri",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks_uri": "http://10.0.0.1/jwks.json"}),
            "jwks_uri",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks": k.jwks(), "jwks_uri": "https://q.example/jwks"}),
            "jwks_uri",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks": k.jwks(), "allowed_scopes": ["has space"]}),
            "allowed_scopes",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks": k.jwks(), "allowed_audiences": []}),
            "allowed_audiences",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks": k.jwks(), "max_assertion_lifetime_secs": 0}),
            "max_assertion_lifetime_secs",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks": k.jwks(), "max_assertion_lifetime_secs": 86_401}),
            "max_assertion_lifetime_secs",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks": k.jwks(), "claim_mapping": {"email": "sub"}}),
            "claim_mapping",
        ),
        (
            json!({"issuer": "https://q.example/x", "jwks": k.jwks(), "name": ""}),
            "name",
        ),
    ];
    for (body, field) in bad_creates {
        let (st, e) = register(&app, &org, body.clone()).await;
        assert_eq!(e["field"], field, "{body}: {e}");
        assert_field_error(st, &e, field);
    }
    // A NUL in the issuer (PostgreSQL text cannot hold one) is refused, never a 500.
    let (st, e) = register(
        &app,
        &org,
        json!({"issuer": "https://q.example/\u{0}x", "jwks": k.jwks()}),
    )
    .await;
    assert!(st.is_client_error(), "NUL: {st} {e}");
    let (st, e) = register(
        &app,
        &org,
        json!({"issuer": "https://q.example/x", "jwks": k.jwks(), "colour": "red"}),
    )
    .await;
    assert!(
        st.is_client_error() && st != StatusCode::CREATED,
        "unknown field: {st} {e}"
    );
    for (body, field) in [
        (json!({"issuer": "https://other.example/x"}), "issuer"),
        (json!({"allowed_audiences": []}), "allowed_audiences"),
        (json!({"jwks": {"keys": [private]}}), "jwks"),
    ] {
        let (st, e) = app
            .admin(
                Method::PATCH,
                &partner_path(&org, ids[1], ""),
                Some(body.clone()),
            )
            .await;
        assert_field_error(st, &e, field);
    }
    let (_, got) = app
        .admin(Method::GET, &partner_path(&org, ids[1], ""), None)
        .await;
    assert_eq!(got, created[1], "refused updates changed nothing");

    // A duplicate issuer conflicts.
    let (st, e) = register(
        &app,
        &org,
        json!({"issuer": issuers[1], "jwks": keys[2].jwks()}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    let (_, all) = app.admin(Method::GET, &base, None).await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        3,
        "no partner was added: {all}"
    );

    // Another organization's partner, or no partner at all, is 404.
    for id in [ids[1], "0190a0a0-0000-7000-8000-000000000000", "not-an-id"] {
        let (st, _) = app
            .admin(Method::GET, &partner_path(&other_org, id, ""), None)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{id}");
        let (st, _) = app
            .admin(Method::DELETE, &partner_path(&other_org, id, ""), None)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{id}");
    }
    let (st, _) = app
        .admin(
            Method::GET,
            &partner_path(&org, "0190a0a0-0000-7000-8000-000000000000", ""),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Disabled at creation; enabled later.
    let k3 = TestKey::generate();
    let iss3 = "https://p3.partner.example/orgs/x";
    let p3 = register_ok(
        &app,
        &org,
        json!({"issuer": iss3, "jwks": k3.jwks(), "enabled": false}),
    )
    .await;
    assert_eq!(p3["enabled"], false);
    let c = assertion_claims(iss3, &org.issuer, "s");
    expect_invalid(
        &verify(&app, &org, &app.token, &k3.sign(&c)).await,
        "partner_disabled",
    );
    let (st, p) = app
        .admin(
            Method::POST,
            &partner_path(&org, p3["id"].as_str().unwrap(), "/enable"),
            None,
        )
        .await;
    assert_eq!((st, &p["enabled"]), (StatusCode::OK, &json!(true)), "{p}");
    expect_valid(&verify(&app, &org, &app.token, &k3.sign(&c)).await);

    // Deleting: gone from the API, its assertions refused; the issuer may be registered again.
    let (st, _) = app
        .admin(Method::DELETE, &partner_path(&org, ids[2], ""), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app
        .admin(Method::GET, &partner_path(&org, ids[2], ""), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = app
        .admin(Method::DELETE, &partner_path(&org, ids[2], ""), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let c = assertion_claims(&issuers[2], &org.issuer, "s");
    expect_invalid(
        &verify(&app, &org, &app.token, &keys[2].sign(&c)).await,
        "unknown_issuer",
    );
    register_ok(
        &app,
        &org,
        json!({"issuer": issuers[2], "jwks": keys[2].jwks()}),
    )
    .await;
    expect_valid(&verify(&app, &org, &app.token, &keys[2].sign(&c)).await);
}

on_all_backends!(partners_are_listed_read_updated_and_deleted_with_validated_fields);

/// A self-signed certificate for `localhost`, as PEM files in a temporary directory.
struct TestCert {
    dir: PathBuf,
}

impl TestCert {
    fn localhost() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = temp_dir();
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        Self { dir }
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn a_partner_registered_by_did_is_verified_with_keys_from_its_did_document(backend: Backend) {
    // did:web resolves over HTTPS only: A serves TLS on https://localhost:PORT, B trusts its
    // certificate.
    let cert = TestCert::localhost();
    let (c, k, ca) = (
        cert.dir.join("cert.pem"),
        cert.dir.join("key.pem"),
        cert.dir.join("cert.pem"),
    );
    let a = spawn_app_with(backend.clone(), |s| {
        s.tls_cert = Some(c);
        s.tls_key = Some(k);
    })
    .await;
    assert!(a.base.starts_with("https://localhost:"), "{}", a.base);
    let b = spawn_app_with(backend, |s| s.outbound_ca_file = Some(ca)).await;
    let org_a = a.create_org().await;
    let org_a2 = a.create_org().await;
    let org_b = b.create_org().await;

    // A DID whose document does not name the issuer, or that does not resolve: refused.
    let (st, e) = register(
        &b,
        &org_b,
        json!({"issuer": org_a2.issuer, "did": org_a.did}),
    )
    .await;
    assert_field_error(st, &e, "did");
    let missing = format!(
        "{}:orgs:no-such-org",
        org_a.did.split(":orgs:").next().unwrap()
    );
    let (st, e) = register(&b, &org_b, json!({"issuer": org_a2.issuer, "did": missing})).await;
    assert_field_error(st, &e, "did");

    let p = register_ok(
        &b,
        &org_b,
        json!({"issuer": org_a.issuer, "did": org_a.did}),
    )
    .await;
    assert_eq!(p["did"], org_a.did);
    assert_eq!(p["jwks_uri"], Value::Null);

    let agent = a.create_agent(&org_a, &[]).await;
    let t = token_for(&a, &org_a, &agent, &org_b.issuer).await;
    let v = verify(&b, &org_b, &b.token, &t).await;
    expect_valid(&v);
    assert_eq!(v["subject"], agent.did);
    assert_eq!(v["partner"]["id"], p["id"]);
    let t = token_for(&a, &org_a, &agent, &org_b.issuer).await;
    let (st, tok) = jwt_bearer(&b, &org_b, &t, &[]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let (st, info, _) = b
        .agent_info(&org_b, tok["access_token"].as_str().unwrap())
        .await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], agent.did);

    // After A rotates, B re-resolves the DID document for the new kid (once the 10 s refresh
    // window since its resolution at registration has passed).
    let (st, v) = a
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/rotate", org_a.slug),
            None,
        )
        .await;
    assert!(st.is_success(), "{st} {v}");
    pass_refresh_window(&b);
    let t = token_for(&a, &org_a, &agent, &org_b.issuer).await;
    expect_valid(&verify(&b, &org_b, &b.token, &t).await);
}

on_all_backends!(a_partner_registered_by_did_is_verified_with_keys_from_its_did_document);

// ---------------------------------------------------------------------------------------------
// 5. A partner JWKS endpoint that goes down

async fn cached_partner_keys_keep_verifying_while_the_jwks_endpoint_is_down(backend: Backend) {
    let mut f = fixture(backend).await;
    expect_valid(&f.verify(&f.key.sign(&f.claims())).await);
    let jwks_uri = f.srv.url("/jwks.json");
    f.srv.stop().await;
    assert!(
        reqwest::get(&jwks_uri).await.is_err(),
        "the JWKS endpoint is down"
    );

    expect_valid(&f.verify(&f.key.sign(&f.claims())).await);
    // Past the refresh window an unknown kid makes the server try the endpoint again; the
    // failure leaves the cached set in use: the kid is unknown (not keys_unavailable) and the
    // known key keeps verifying, at verify and at the token endpoint.
    pass_refresh_window(&f.app);
    let h = json!({"alg": "ES256", "typ": "JWT", "kid": "rotated-away"});
    expect_invalid(
        &f.verify(&f.key.sign_with(&h, &f.claims())).await,
        "unknown_key",
    );
    expect_valid(&f.verify(&f.key.sign(&f.claims())).await);
    let (st, tok) = jwt_bearer(&f.app, &f.org, &f.key.sign(&f.claims()), &[]).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
}

on_all_backends!(cached_partner_keys_keep_verifying_while_the_jwks_endpoint_is_down);

// ---------------------------------------------------------------------------------------------
// 10. A refused exchange spends nothing, and there is no re-federation

async fn refused_exchanges_spend_nothing_and_cannot_target_other_issuers(backend: Backend) {
    let f = fixture(backend).await;
    // A token for another issuer would pass our vouching on to a third party: refused.
    let assertion = f.key.sign(&f.claims());
    for (param, value) in [
        ("audience", "https://c.example/orgs/x"),
        ("resource", "https://c.example/orgs/x"),
    ] {
        let (st, v) = jwt_bearer(&f.app, &f.org, &assertion, &[(param, value)]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"], "invalid_target", "{v}");
    }
    // A scope beyond the partner's allowed scopes: refused too.
    let (st, v) = jwt_bearer(&f.app, &f.org, &assertion, &[("scope", "admin")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_scope", "{v}");
    // None of the refusals spent the assertion: it is exchanged now, for this organization.
    let (st, v) = jwt_bearer(&f.app, &f.org, &assertion, &[("audience", &f.org.issuer)]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        jwt_claims(v["access_token"].as_str().unwrap())["aud"],
        f.org.issuer
    );
    // And once exchanged it is spent.
    let (st, v) = jwt_bearer(&f.app, &f.org, &assertion, &[]).await;
    expect_invalid_grant(st, &v, "replayed");
}

on_all_backends!(refused_exchanges_spend_nothing_and_cannot_target_other_issuers);
