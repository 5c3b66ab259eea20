//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OIDC Core §9): agents register
//! public keys (inline `jwks` or a `jwks_uri`) and sign single-use assertions. Key pairs are
//! generated here with aws-lc-rs and assertions are signed by hand, so every header can be forged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::attacks::{b64, compact, hs256};
use crate::on_all_backends;
use crate::support::*;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

enum Pair {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A client's key pair with its `kid`.
pub struct ClientKey {
    pair: Pair,
    pub kid: String,
}

impl ClientKey {
    pub fn es256() -> Self {
        Self {
            pair: Pair::Es256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()),
            kid: format!("es-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn ed25519() -> Self {
        Self {
            pair: Pair::Ed25519(Ed25519KeyPair::generate().unwrap()),
            kid: format!("ed-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Es256(_) => "ES256",
            Pair::Ed25519(_) => "EdDSA",
        }
    }

    /// The raw public key: the uncompressed point for P-256, the 32 bytes for Ed25519.
    pub fn public_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Es256(k) => k.public_key().as_ref().to_vec(),
            Pair::Ed25519(k) => k.public_key().as_ref().to_vec(),
        }
    }

    pub fn public_jwk(&self) -> Value {
        let p = self.public_bytes();
        match self.pair {
            Pair::Es256(_) => json!({
                "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
                "x": b64(&p[1..33]), "y": b64(&p[33..65]),
            }),
            Pair::Ed25519(_) => json!({
                "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA", "use": "sig",
                "x": b64(&p),
            }),
        }
    }

    pub fn jwks(&self) -> Value {
        json!({"keys": [self.public_jwk()]})
    }

    /// The default header: `{alg, kid, typ: JWT}`.
    pub fn header(&self) -> Value {
        json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"})
    }

    /// Signs exactly this header and payload.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let unsigned = compact(header, claims, b"");
        let input = unsigned.trim_end_matches('.');
        let sig = match &self.pair {
            Pair::Es256(k) => k
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Pair::Ed25519(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&self.header(), claims)
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 7523 §3 claims: iss = sub = client_id, the given audience, five minutes, a fresh jti.
pub fn assertion_claims(client_id: &str, aud: &str) -> Value {
    let now = now();
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + 300,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// A client_credentials request authenticated by `assertion`.
pub async fn token_with_assertion(app: &TestApp, org: &TestOrg, assertion: &str) -> Response {
    app.post_form(
        org,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
    )
    .await
}

async fn assert_accepted(
    app: &TestApp,
    org: &TestOrg,
    agent: &TestAgent,
    assertion: &str,
) -> Value {
    let (st, t) = json_of(token_with_assertion(app, org, assertion).await).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let c = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], agent.client_id);
    assert_eq!(c["client_id"], agent.client_id);
    t
}

async fn assert_refused(app: &TestApp, org: &TestOrg, assertion: &str, why: &str) {
    let resp = token_with_assertion(app, org, assertion).await;
    let (st, v) = json_of(resp).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{why}: {v}");
    assert_eq!(v["error"], "invalid_client", "{why}: {v}");
    assert!(v["error_description"].is_string(), "{why}: {v}");
}

pub async fn register(app: &TestApp, org: &TestOrg, key: &ClientKey) -> TestAgent {
    let agent = app
        .create_agent_with(
            org,
            json!({"name": "jwt bot", "scopes": ["read"],
                   "token_endpoint_auth_method": "private_key_jwt", "jwks": key.jwks()}),
        )
        .await;
    assert!(
        agent.secret.is_none(),
        "no secret for private_key_jwt: {}",
        agent.body
    );
    assert_eq!(agent.body["token_endpoint_auth_method"], "private_key_jwt");
    agent
}

async fn es256_and_eddsa_assertions_get_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let token_endpoint = format!("{}/oauth2/token", org.issuer);
    for key in [ClientKey::es256(), ClientKey::ed25519()] {
        let agent = register(&app, &org, &key).await;
        // aud = the issuer, and aud = the token endpoint URL (RFC 7523 §3, OIDC Core §9).
        for aud in [org.issuer.as_str(), token_endpoint.as_str()] {
            let t = assert_accepted(
                &app,
                &org,
                &agent,
                &key.sign(&assertion_claims(&agent.client_id, aud)),
            )
            .await;
            assert_eq!(t["token_type"], "Bearer");
            let (st, info, _) = app
                .agent_info(&org, t["access_token"].as_str().unwrap())
                .await;
            assert_eq!(st, StatusCode::OK, "{info}");
            assert_eq!(info["sub"], agent.client_id);
        }
        // aud as an array holding the issuer; client_id repeated in the form.
        let mut c = assertion_claims(&agent.client_id, &org.issuer);
        c["aud"] = json!([org.issuer]);
        let resp = app
            .post_form(
                &org,
                "/oauth2/token",
                None,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &agent.client_id),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", &key.sign(&c)),
                ],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

async fn replayed_assertion_is_invalid_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key = ClientKey::es256();
    let agent = register(&app, &org, &key).await;
    let assertion = key.sign(&assertion_claims(&agent.client_id, &org.issuer));
    assert_accepted(&app, &org, &agent, &assertion).await;
    assert_refused(&app, &org, &assertion, "replay").await;
    assert_refused(&app, &org, &assertion, "second replay").await;

    // The same jti in a newly signed assertion is a replay too.
    let mut c = jwt_claims(&assertion);
    c["exp"] = json!(now() + 200);
    assert_refused(&app, &org, &key.sign(&c), "same jti, new signature").await;

    // A fresh jti works.
    assert_accepted(
        &app,
        &org,
        &agent,
        &key.sign(&assertion_claims(&agent.client_id, &org.issuer)),
    )
    .await;
    // The jti is scoped to the client: another agent may use the same value.
    let key2 = ClientKey::ed25519();
    let agent2 = register(&app, &org, &key2).await;
    let mut c2 = assertion_claims(&agent2.client_id, &org.issuer);
    c2["jti"] = c["jti"].clone();
    assert_accepted(&app, &org, &agent2, &key2.sign(&c2)).await;
}

async fn expired_or_long_lived_assertion_is_invalid_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key = ClientKey::es256();
    let agent = register(&app, &org, &key).await;
    let id = agent.client_id.as_str();
    let now = now();

    let mut expired = assertion_claims(id, &org.issuer);
    expired["iat"] = json!(now - 600);
    expired["exp"] = json!(now - 300);
    assert_refused(&app, &org, &key.sign(&expired), "expired").await;

    let mut long = assertion_claims(id, &org.issuer);
    long["exp"] = json!(now + 7200);
    assert_refused(&app, &org, &key.sign(&long), "exp two hours ahead").await;

    let mut no_exp = assertion_claims(id, &org.issuer);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_refused(&app, &org, &key.sign(&no_exp), "no exp").await;

    let mut future_iat = assertion_claims(id, &org.issuer);
    future_iat["iat"] = json!(now + 600);
    assert_refused(&app, &org, &key.sign(&future_iat), "iat in the future").await;

    let mut no_jti = assertion_claims(id, &org.issuer);
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_refused(&app, &org, &key.sign(&no_jti), "no jti").await;

    let mut nbf = assertion_claims(id, &org.issuer);
    nbf["nbf"] = json!(now + 600);
    assert_refused(&app, &org, &key.sign(&nbf), "not yet valid").await;

    // One clock-skew leeway (30 s, as for partner assertions): expired 35 s ago is refused,
    // 10 s ago is still inside it.
    let mut past_leeway = assertion_claims(id, &org.issuer);
    past_leeway["iat"] = json!(now - 300);
    past_leeway["exp"] = json!(now - 35);
    assert_refused(
        &app,
        &org,
        &key.sign(&past_leeway),
        "expired beyond the leeway",
    )
    .await;
    let mut in_leeway = assertion_claims(id, &org.issuer);
    in_leeway["iat"] = json!(now - 300);
    in_leeway["exp"] = json!(now - 10);
    assert_accepted(&app, &org, &agent, &key.sign(&in_leeway)).await;

    // The lifetime bound holds from iat too: issued 50 minutes ago, valid for 20 more.
    let mut long_from_iat = assertion_claims(id, &org.issuer);
    long_from_iat["iat"] = json!(now - 3000);
    long_from_iat["exp"] = json!(now + 1200);
    assert_refused(
        &app,
        &org,
        &key.sign(&long_from_iat),
        "lives longer than an hour",
    )
    .await;

    // Just under the one-hour bound is fine.
    let mut hour = assertion_claims(id, &org.issuer);
    hour["exp"] = json!(now + 3500);
    assert_accepted(&app, &org, &agent, &key.sign(&hour)).await;
}

async fn assertion_for_another_audience_is_invalid_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let key = ClientKey::ed25519();
    let agent = register(&app, &org, &key).await;
    for aud in [
        "https://elsewhere.example/".to_owned(),
        other.issuer.clone(),
        format!("{}/oauth2/token", other.issuer),
        format!("{}/oauth2/introspect", org.issuer),
        format!("{}/", org.issuer),
        app.base.clone(),
    ] {
        let a = key.sign(&assertion_claims(&agent.client_id, &aud));
        assert_refused(&app, &org, &a, &aud).await;
    }
    let mut no_aud = assertion_claims(&agent.client_id, &org.issuer);
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_refused(&app, &org, &key.sign(&no_aud), "no aud").await;
    // The right assertion at another organization's endpoint: the client is unknown there.
    let a = key.sign(&assertion_claims(&agent.client_id, &other.issuer));
    assert_refused(&app, &other, &a, "another organization's token endpoint").await;
    assert_accepted(
        &app,
        &org,
        &agent,
        &key.sign(&assertion_claims(&agent.client_id, &org.issuer)),
    )
    .await;
}

async fn assertion_signed_by_another_key_is_invalid_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key = ClientKey::es256();
    let agent = register(&app, &org, &key).await;
    let victim_key = ClientKey::es256();
    let victim = register(&app, &org, &victim_key).await;

    let attacker = ClientKey::es256();
    let claims = assertion_claims(&agent.client_id, &org.issuer);
    // Another key, with the registered kid in its header and without a kid.
    assert_refused(
        &app,
        &org,
        &attacker.sign_with_header(&json!({"alg": "ES256", "kid": key.kid}), &claims),
        "another key, registered kid",
    )
    .await;
    assert_refused(
        &app,
        &org,
        &attacker.sign_with_header(&json!({"alg": "ES256"}), &claims),
        "another key, no kid",
    )
    .await;
    // The agent's own key cannot speak for another agent (sub names the victim).
    let as_victim = assertion_claims(&victim.client_id, &org.issuer);
    assert_refused(&app, &org, &key.sign(&as_victim), "another client's sub").await;
    // iss and sub must both be the client.
    let mut split = assertion_claims(&agent.client_id, &org.issuer);
    split["iss"] = json!(victim.client_id);
    assert_refused(&app, &org, &key.sign(&split), "iss is another client").await;
    // The right key, wrong curve/alg claim in the header.
    assert_refused(
        &app,
        &org,
        &key.sign_with_header(&json!({"alg": "EdDSA", "kid": key.kid}), &claims),
        "header alg does not fit the key",
    )
    .await;

    assert_accepted(&app, &org, &agent, &key.sign(&claims)).await;
    assert_accepted(
        &app,
        &org,
        &victim,
        &victim_key.sign(&assertion_claims(&victim.client_id, &org.issuer)),
    )
    .await;
}

async fn forged_assertion_headers_are_invalid_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key = ClientKey::es256();
    let agent = register(&app, &org, &key).await;
    let fresh = || assertion_claims(&agent.client_id, &org.issuer);

    // A correctly signed assertion typed as an access token.
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let h = json!({"alg": "ES256", "kid": key.kid, "typ": typ});
        assert_refused(&app, &org, &key.sign_with_header(&h, &fresh()), typ).await;
    }
    // alg none, with and without a signature.
    for alg in ["none", "None"] {
        let h = json!({"alg": alg, "kid": key.kid});
        assert_refused(&app, &org, &compact(&h, &fresh(), b""), alg).await;
        let signed = key.sign(&fresh());
        let sig = signed.rsplit('.').next().unwrap();
        let c = compact(&h, &fresh(), b"");
        assert_refused(&app, &org, &format!("{}{sig}", c), "none with a signature").await;
    }
    // HS256 keyed with the public key's bytes or JWK.
    let p = key.public_bytes();
    let jwk = key.public_jwk();
    for secret in [
        p.clone(),
        p[1..].to_vec(),
        p[1..33].to_vec(),
        jwk.to_string().into_bytes(),
        key.jwks().to_string().into_bytes(),
        jwk["x"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        for h in [
            json!({"alg": "HS256", "kid": key.kid}),
            json!({"alg": "HS256"}),
        ] {
            assert_refused(&app, &org, &hs256(&secret, &h, &fresh()), "HS256").await;
        }
    }
    // A crit header naming an extension the server cannot understand (RFC 7515 §4.1.11).
    for h in [
        json!({"alg": "ES256", "kid": key.kid, "crit": ["exp"], "exp": now() + 60}),
        json!({"alg": "ES256", "kid": key.kid, "crit": ["b64"], "b64": true}),
    ] {
        assert_refused(&app, &org, &key.sign_with_header(&h, &fresh()), "crit").await;
    }
    // Not a JWS at all, and an embedded jwk header naming the attacker's key.
    assert_refused(&app, &org, "not-a-jwt", "garbage").await;
    let attacker = ClientKey::es256();
    let h = json!({"alg": "ES256", "kid": attacker.kid, "jwk": attacker.public_jwk()});
    assert_refused(
        &app,
        &org,
        &attacker.sign_with_header(&h, &fresh()),
        "embedded jwk",
    )
    .await;

    // The wrong assertion type is a malformed request.
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                ),
                ("client_assertion", &key.sign(&fresh())),
            ],
        )
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;

    assert_accepted(&app, &org, &agent, &key.sign(&fresh())).await;
}

/// A tiny JWKS server on 127.0.0.1:0 whose key set can be replaced; counts the fetches.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub jwks: Arc<RwLock<Value>>,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(jwks: Value) -> Self {
        let jwks = Arc::new(RwLock::new(jwks));
        let hits = Arc::new(AtomicUsize::new(0));
        let (j, h) = (jwks.clone(), hits.clone());
        let router = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (j, h) = (j.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    axum::Json(j.read().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            addr,
            jwks,
            hits,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    pub fn serve(&self, jwks: Value) {
        *self.jwks.write().unwrap() = jwks;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jku_header_never_selects_the_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key = ClientKey::es256();
    let agent = register(&app, &org, &key).await;
    let attacker = ClientKey::es256();
    let evil = JwksServer::start(attacker.jwks()).await;

    // The registered key signs, a bogus jku is present: the registered key decides, so it works.
    let h = json!({"alg": "ES256", "kid": key.kid, "jku": "http://127.0.0.1:9/nowhere.json"});
    assert_accepted(
        &app,
        &org,
        &agent,
        &key.sign_with_header(&h, &assertion_claims(&agent.client_id, &org.issuer)),
    )
    .await;
    let h = json!({"alg": "ES256", "kid": key.kid, "jku": evil.url()});
    assert_accepted(
        &app,
        &org,
        &agent,
        &key.sign_with_header(&h, &assertion_claims(&agent.client_id, &org.issuer)),
    )
    .await;

    // The attacker's key, with jku (and x5u) pointing to a JWKS that holds it: refused.
    for h in [
        json!({"alg": "ES256", "kid": attacker.kid, "jku": evil.url()}),
        json!({"alg": "ES256", "kid": key.kid, "jku": evil.url()}),
        json!({"alg": "ES256", "jku": evil.url()}),
        json!({"alg": "ES256", "kid": attacker.kid, "x5u": evil.url()}),
    ] {
        let a = attacker.sign_with_header(&h, &assertion_claims(&agent.client_id, &org.issuer));
        assert_refused(&app, &org, &a, &h.to_string()).await;
    }
    assert_eq!(evil.hits(), 0, "the server never fetched a jku");
}

async fn registration_rejects_unusable_key_sets(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let path = format!("/api/v1/orgs/{}/agents", org.slug);
    let key = ClientKey::es256();
    let mut private = key.public_jwk();
    private["d"] = json!(b64(&[7u8; 32]));
    let ed = ClientKey::ed25519();
    let mut ed_private = ed.public_jwk();
    ed_private["d"] = json!(b64(&[9u8; 32]));

    for (body, field) in [
        (json!({"keys": [private]}), "jwks"),
        (json!({"keys": [key.public_jwk(), ed_private]}), "jwks"),
        (
            json!({"keys": [{"kty": "oct", "k": b64(b"shared secret"), "kid": "h"}]}),
            "jwks",
        ),
        (json!({"keys": []}), "jwks"),
        (
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}),
            "jwks",
        ),
        (key.public_jwk(), "jwks"),
    ] {
        let (st, v) = app
            .admin(
                Method::POST,
                &path,
                Some(json!({"name": "bot", "scopes": [], "token_endpoint_auth_method": "private_key_jwt", "jwks": body})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field, "{v}");
        assert!(
            !v.to_string().contains(&b64(&[7u8; 32])),
            "never echo a private key: {v}"
        );
    }
    // private_key_jwt without any key, and jwks_uri outside what may be fetched.
    for (extra, field) in [
        (json!({}), "jwks"),
        (json!({"jwks_uri": "http://example.com/jwks"}), "jwks_uri"),
        (json!({"jwks_uri": "https://10.0.0.1/jwks"}), "jwks_uri"),
        (
            json!({"jwks_uri": "https://169.254.169.254/latest"}),
            "jwks_uri",
        ),
        (json!({"jwks_uri": "file:///etc/passwd"}), "jwks_uri"),
        (json!({"jwks_uri": "not a url"}), "jwks_uri"),
    ] {
        let mut body =
            json!({"name": "bot", "scopes": [], "token_endpoint_auth_method": "private_key_jwt"});
        for (k, val) in extra.as_object().unwrap() {
            body[k] = val.clone();
        }
        let (st, v) = app.admin(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field, "{v}");
    }
    let (_, list) = app.admin(Method::GET, &path, None).await;
    assert_eq!(list["items"], json!([]), "nothing was registered: {list}");
}

async fn secret_and_key_clients_do_not_mix(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key = ClientKey::es256();
    let jwt_agent = register(&app, &org, &key).await;
    let secret_agent = app.create_agent(&org, &["read"]).await;

    // A secret-based client cannot authenticate with an assertion (it registered no key).
    let a = key.sign(&assertion_claims(&secret_agent.client_id, &org.issuer));
    assert_refused(&app, &org, &a, "assertion for a secret client").await;
    // A private_key_jwt client has no secret to present.
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((&jwt_agent.client_id, "guess")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Assertion plus a secret: two methods at once.
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((
                &secret_agent.client_id,
                secret_agent.secret.as_deref().unwrap(),
            )),
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                (
                    "client_assertion",
                    &key.sign(&assertion_claims(&jwt_agent.client_id, &org.issuer)),
                ),
            ],
        )
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Rotating the secret of a key-based agent is a conflict.
    let (st, v) = app
        .admin(
            Method::POST,
            &format!(
                "/api/v1/orgs/{}/agents/{}/rotate-secret",
                org.slug, jwt_agent.id
            ),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // GET shows the registered public keys, never a secret.
    let (st, v) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/agents/{}", org.slug, jwt_agent.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["jwks"], key.jwks());
    assert!(v.get("client_secret").is_none());

    assert_accepted(
        &app,
        &org,
        &jwt_agent,
        &key.sign(&assertion_claims(&jwt_agent.client_id, &org.issuer)),
    )
    .await;
}

async fn jwks_uri_agent_rotates_its_key_without_admin_call(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key1 = ClientKey::es256();
    let server = JwksServer::start(key1.jwks()).await;
    let agent = app
        .create_agent_with(
            &org,
            json!({"name": "remote keys", "scopes": ["read"],
                   "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": server.url()}),
        )
        .await;
    assert!(agent.secret.is_none());
    assert_eq!(agent.body["jwks_uri"], server.url());
    let id = agent.client_id.clone();

    assert_accepted(
        &app,
        &org,
        &agent,
        &key1.sign(&assertion_claims(&id, &org.issuer)),
    )
    .await;
    assert_eq!(server.hits(), 1);
    // Cached: a second token costs no fetch.
    assert_accepted(
        &app,
        &org,
        &agent,
        &key1.sign(&assertion_claims(&id, &org.issuer)),
    )
    .await;
    assert_eq!(server.hits(), 1);

    // The agent rotates: its endpoint now serves only a new key (another algorithm, too).
    let key2 = ClientKey::ed25519();
    server.serve(key2.jwks());
    // Refetches for unknown kids are rate-limited per URI (one per 10 s since the last fetch
    // attempt): within that window the new kid is refused without a fetch; once the window has
    // passed on the server's clock, the new kid is accepted on first use, without any admin call.
    let (_, v) = json_of(
        token_with_assertion(&app, &org, &key2.sign(&assertion_claims(&id, &org.issuer))).await,
    )
    .await;
    assert_eq!(v["error"], "invalid_client", "{v}");
    assert_eq!(server.hits(), 1, "no refetch within the window");
    app.advance(std::time::Duration::from_secs(11));
    assert_accepted(
        &app,
        &org,
        &agent,
        &key2.sign(&assertion_claims(&id, &org.issuer)),
    )
    .await;
    assert_eq!(server.hits(), 2);
    // The key the agent withdrew no longer authenticates it.
    assert_refused(
        &app,
        &org,
        &key1.sign(&assertion_claims(&id, &org.issuer)),
        "withdrawn key",
    )
    .await;
    // A key never published at the URI does not either.
    let stranger = ClientKey::es256();
    assert_refused(
        &app,
        &org,
        &stranger.sign(&assertion_claims(&id, &org.issuer)),
        "unknown key",
    )
    .await;
    assert_accepted(
        &app,
        &org,
        &agent,
        &key2.sign(&assertion_claims(&id, &org.issuer)),
    )
    .await;
}

on_all_backends!(
    es256_and_eddsa_assertions_get_tokens,
    replayed_assertion_is_invalid_client,
    expired_or_long_lived_assertion_is_invalid_client,
    assertion_for_another_audience_is_invalid_client,
    assertion_signed_by_another_key_is_invalid_client,
    forged_assertion_headers_are_invalid_client,
    jku_header_never_selects_the_key,
    registration_rejects_unusable_key_sets,
    secret_and_key_clients_do_not_mix,
    jwks_uri_agent_rotates_its_key_without_admin_call,
);
