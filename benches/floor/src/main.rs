//! The floor of agentidp's benchmarks: the least an HTTP token endpoint can do on this stack
//! (axum, tokio, aws-lc-rs), so that `benches/run` can report agentidp's throughput as a fraction
//! of what the machine allows.
//!
//! - `POST /token` (ES256) and `POST /token-eddsa` (EdDSA): parse the form and the Basic header,
//!   compare one HMAC-SHA-256 digest of the secret (constant time), sign one RFC 9068 access token
//!   with a key pair parsed once at start-up, answer the JSON token response.
//! - `GET /fixed`: a fixed JSON document (about the size of an OIDC discovery document), the floor
//!   of discovery, JWKS and DID documents.
//! - `GET /verify-es256` (`verify_es256`, with `FLOOR_VERIFY_JWKS`): verify one ES256 JWT from the
//!   `Authorization: Bearer` header (split, base64url-decode the three parts, parse the header
//!   and the claims with serde_json, check the signature with a public key parsed once at
//!   start-up, check `typ` = `at+jwt`, `exp`, `iss` and `aud`), answer a fixed JSON document the size of
//!   agentidp's `/agent-info` answer: the floor of `/agent-info`, introspection and federation
//!   verify's bearer check.
//! - `POST /assert-es256` (`assert_es256`, with `FLOOR_CLIENT_JWKS`): parse the form
//!   (`grant_type`, `client_assertion_type`, `client_assertion`), verify the ES256 client
//!   assertion as above against the client's key (parsed once; `iss` = `sub` = the client id,
//!   `aud` = the issuer, a `jti` present but not remembered: no replay store), then sign and
//!   answer an access token exactly as `/token` does: the floor of `private_key_jwt`, the
//!   jwt-bearer grant and federation verify.
//!
//! Configuration (environment): `FLOOR_BIND` (default `127.0.0.1:8090`), `FLOOR_CLIENT_ID`
//! (default `bench`), `FLOOR_CLIENT_SECRET` (default `bench-secret`), `FLOOR_VERIFY_JWKS` and
//! `FLOOR_CLIENT_JWKS` (paths of JWK Sets holding one P-256 key each, as `agentidp-bench key`
//! writes them; without one the matching endpoint is not served). The issuer (`iss` of the
//! tokens the floor signs, and the `iss` and `aud` it expects) is `http://{FLOOR_BIND}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, ParsedPublicKey};
use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::prelude::*;
use serde::{Deserialize, Serialize};

const TTL: u64 = 900;

/// A discovery-sized fixed JSON document.
const FIXED: &str = r#"{"issuer":"http://localhost:8090/orgs/bench","jwks_uri":"http://localhost:8090/orgs/bench/jwks.json","token_endpoint":"http://localhost:8090/orgs/bench/oauth2/token","introspection_endpoint":"http://localhost:8090/orgs/bench/oauth2/introspect","revocation_endpoint":"http://localhost:8090/orgs/bench/oauth2/revoke","userinfo_endpoint":"http://localhost:8090/orgs/bench/agent-info","grant_types_supported":["client_credentials","urn:ietf:params:oauth:grant-type:jwt-bearer","urn:ietf:params:oauth:grant-type:token-exchange"],"response_types_supported":[],"token_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post","private_key_jwt"],"token_endpoint_auth_signing_alg_values_supported":["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","EdDSA"],"id_token_signing_alg_values_supported":["RS256","ES256","EdDSA"],"subject_types_supported":["public"],"scopes_supported":["openid"],"claims_supported":["iss","sub","aud","exp","iat","jti","client_id","scope","org_id","did","agent_name","name"],"code_challenge_methods_supported":["S256"]}"#;

enum Key {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

struct Signing {
    key: Key,
    /// base64url of the fixed JOSE header `{alg, typ, kid}`.
    header_b64: String,
}

/// An ES256 public key parsed once, and its `kid`.
struct Verifier {
    key: ParsedPublicKey,
    kid: String,
}

struct Floor {
    client_id: String,
    /// The key of `/verify-es256`'s bearer tokens.
    bearer: Option<Verifier>,
    /// The client's key, for `/assert-es256`'s client assertions.
    client_key: Option<Verifier>,
    digest_key: hmac::Key,
    stored_digest: Vec<u8>,
    es256: Signing,
    eddsa: Signing,
    issuer: String,
    rng: SystemRandom,
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct AssertForm {
    grant_type: String,
    client_assertion_type: String,
    client_assertion: String,
    #[serde(default)]
    scope: Option<String>,
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A fixed JSON document the size of agentidp's `/agent-info` answer.
const AGENT_INFO: &str = r#"{"sub":"did:web:localhost%3A8090:orgs:bench:agents:0196b000-0000-7000-8000-000000000000","client_id":"0196b000-0000-7000-8000-000000000000","name":"es256","agent_name":"es256","did":"did:web:localhost%3A8090:orgs:bench:agents:0196b000-0000-7000-8000-000000000000","org_id":"0196a000-0000-7000-8000-000000000000","org":"bench","iss":"http://localhost:8090/orgs/bench","scope":"bench:read","description":null,"status":"active"}"#;

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Aud {
    One(String),
    Many(Vec<String>),
}

/// The claims every check needs; the others are parsed over and dropped.
#[derive(Deserialize)]
struct JwtClaims {
    iss: String,
    #[serde(default)]
    sub: Option<String>,
    aud: Aud,
    exp: u64,
    #[serde(default)]
    jti: Option<String>,
}

/// Verifies a compact ES256 JWS signed by `v` and checks `typ` (when `typ` is given: RFC 9068
/// access tokens), `exp`, `iss` and `aud` (no leeway, no `nbf`, no replay store): what any
/// verifier must do at the least.
fn verify_jwt(
    v: &Verifier,
    jwt: &str,
    typ: Option<&str>,
    iss: &str,
    aud: &str,
    now: u64,
) -> Option<JwtClaims> {
    let mut parts = jwt.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: JoseHeader =
        serde_json::from_slice(&BASE64_URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.alg != "ES256"
        || header.kid.is_some_and(|k| k != v.kid)
        || typ.is_some_and(|t| header.typ.as_deref() != Some(t))
    {
        return None;
    }
    let claims: JwtClaims = serde_json::from_slice(&BASE64_URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let sig = BASE64_URL_SAFE_NO_PAD.decode(s).ok()?;
    v.key
        .verify_sig(&jwt.as_bytes()[..h.len() + 1 + c.len()], &sig)
        .ok()?;
    let aud_ok = match &claims.aud {
        Aud::One(a) => a == aud,
        Aud::Many(v) => v.iter().any(|a| a == aud),
    };
    (claims.exp > now && claims.iss == iss && aud_ok).then_some(claims)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    jti: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

fn error(status: StatusCode, code: &'static str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        format!(r#"{{"error":"{code}"}}"#),
    )
        .into_response()
}

/// The client id and secret of a `Basic` Authorization header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if h.len() <= 6 || !h[..6].eq_ignore_ascii_case("basic ") {
        return None;
    }
    let raw = BASE64_STANDARD.decode(h[6..].trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn issue(floor: &Floor, signing: &Signing, headers: &HeaderMap, form: &TokenForm) -> Response {
    if form.grant_type != "client_credentials" {
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let Some((id, secret)) = basic(headers) else {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let id_ok = id == floor.client_id;
    let secret_ok =
        hmac::verify(&floor.digest_key, secret.as_bytes(), &floor.stored_digest).is_ok();
    if !(id_ok && secret_ok) {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    sign_token(floor, signing, &id, form.scope.as_deref())
}

/// Signs one access token for `id` and answers the token response.
fn sign_token(floor: &Floor, signing: &Signing, id: &str, scope: Option<&str>) -> Response {
    let now = unix_now();
    let mut jti_raw = [0u8; 16];
    if floor.rng.fill(&mut jti_raw).is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    }
    let jti = BASE64_URL_SAFE_NO_PAD.encode(jti_raw);
    let claims = Claims {
        iss: &floor.issuer,
        sub: id,
        aud: &floor.issuer,
        exp: now + TTL,
        iat: now,
        jti: &jti,
        client_id: id,
        scope,
    };
    let Ok(payload) = serde_json::to_vec(&claims) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    let mut token = String::with_capacity(signing.header_b64.len() + payload.len() * 4 / 3 + 100);
    token.push_str(&signing.header_b64);
    token.push('.');
    BASE64_URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let sig = match &signing.key {
        Key::Es256(k) => match k.sign(&floor.rng, token.as_bytes()) {
            Ok(s) => s.as_ref().to_vec(),
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        },
        Key::EdDsa(k) => k.sign(token.as_bytes()).as_ref().to_vec(),
    };
    token.push('.');
    BASE64_URL_SAFE_NO_PAD.encode_string(&sig, &mut token);
    let body = serde_json::to_vec(&TokenResponse {
        access_token: &token,
        token_type: "Bearer",
        expires_in: TTL,
        scope,
    })
    .unwrap_or_default();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

async fn token_es256(
    State(floor): State<Arc<Floor>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    issue(&floor, &floor.es256, &headers, &form)
}

async fn token_eddsa(
    State(floor): State<Arc<Floor>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    issue(&floor, &floor.eddsa, &headers, &form)
}

async fn verify_es256(State(floor): State<Arc<Floor>>, headers: HeaderMap) -> Response {
    let Some(v) = &floor.bearer else {
        return error(StatusCode::NOT_FOUND, "not_configured");
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer "))
        .map(|h| h[7..].trim());
    let Some(token) = token else {
        return error(StatusCode::UNAUTHORIZED, "invalid_token");
    };
    if verify_jwt(
        v,
        token,
        Some("at+jwt"),
        &floor.issuer,
        &floor.issuer,
        unix_now(),
    )
    .is_none()
    {
        return error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        AGENT_INFO,
    )
        .into_response()
}

async fn assert_es256(State(floor): State<Arc<Floor>>, Form(form): Form<AssertForm>) -> Response {
    let Some(v) = &floor.client_key else {
        return error(StatusCode::NOT_FOUND, "not_configured");
    };
    if form.grant_type != "client_credentials" {
        return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if form.client_assertion_type != ASSERTION_TYPE {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let ok = verify_jwt(
        v,
        &form.client_assertion,
        None,
        &floor.client_id,
        &floor.issuer,
        unix_now(),
    )
    .is_some_and(|c| c.sub.as_deref() == Some(&floor.client_id) && c.jti.is_some());
    if !ok {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    sign_token(
        &floor,
        &floor.es256,
        &floor.client_id,
        form.scope.as_deref(),
    )
}

/// The first key of a JWK Set file: a P-256 public key, parsed once.
fn load_verifier(path: &str) -> Result<Verifier, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    let set: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let jwk = &set["keys"][0];
    let field = |k: &str| {
        jwk[k]
            .as_str()
            .ok_or_else(|| format!("{path}: the first key has no {k}"))
    };
    if field("kty")? != "EC" || field("crv")? != "P-256" {
        return Err(format!("{path}: the first key is not a P-256 key"));
    }
    let coord = |k: &str| -> Result<Vec<u8>, String> {
        BASE64_URL_SAFE_NO_PAD
            .decode(field(k)?)
            .map_err(|e| format!("{path}: {k}: {e}"))
    };
    let point = [vec![4u8], coord("x")?, coord("y")?].concat();
    let key = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
        .map_err(|_| format!("{path}: not a P-256 point"))?;
    Ok(Verifier {
        key,
        kid: field("kid")?.to_owned(),
    })
}

async fn fixed() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        FIXED,
    )
        .into_response()
}

fn signing(key: Key, alg: &str, kid: &str) -> Signing {
    let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#);
    Signing {
        key,
        header_b64: BASE64_URL_SAFE_NO_PAD.encode(header),
    }
}

fn build(
    client_id: String,
    secret: &str,
    issuer: String,
    bearer: Option<Verifier>,
    client_key: Option<Verifier>,
) -> Result<Floor, String> {
    let rng = SystemRandom::new();
    let mut digest_key = [0u8; 32];
    rng.fill(&mut digest_key).map_err(|_| "random generator")?;
    let digest_key = hmac::Key::new(hmac::HMAC_SHA256, &digest_key);
    let stored_digest = hmac::sign(&digest_key, secret.as_bytes()).as_ref().to_vec();
    let es = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
        .and_then(|k| k.to_pkcs8v1())
        .map_err(|_| "ES256 key generation")?;
    // Parsed from PKCS#8 once, as agentidp caches its decrypted keys.
    let es = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, es.as_ref())
        .map_err(|_| "ES256 key parsing")?;
    let ed = Ed25519KeyPair::generate().map_err(|_| "Ed25519 key generation")?;
    Ok(Floor {
        client_id,
        bearer,
        client_key,
        digest_key,
        stored_digest,
        es256: signing(Key::Es256(es), "ES256", "floor-es256"),
        eddsa: signing(Key::EdDsa(ed), "EdDSA", "floor-eddsa"),
        issuer,
        rng,
    })
}

fn router(floor: Arc<Floor>) -> Router {
    Router::new()
        .route("/token", post(token_es256))
        .route("/token-eddsa", post(token_eddsa))
        .route("/fixed", get(fixed))
        .route("/verify-es256", get(verify_es256))
        .route("/assert-es256", post(assert_es256))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(floor)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let bind: SocketAddr = env("FLOOR_BIND", "127.0.0.1:8090").parse()?;
    let client_id = env("FLOOR_CLIENT_ID", "bench");
    let secret = env("FLOOR_CLIENT_SECRET", "bench-secret");
    let verifier = |k: &str| std::env::var(k).ok().map(|p| load_verifier(&p)).transpose();
    let (bearer, client_key) = (
        verifier("FLOOR_VERIFY_JWKS")?,
        verifier("FLOOR_CLIENT_JWKS")?,
    );
    let floor = Arc::new(build(
        client_id,
        &secret,
        format!("http://{bind}"),
        bearer,
        client_key,
    )?);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    eprintln!("agentidp-floor listening on {}", listener.local_addr()?);
    axum::serve(listener, router(floor))
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}
