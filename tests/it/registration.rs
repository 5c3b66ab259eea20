//! Dynamic client registration (RFC 7591) at `{iss}/oauth2/register`, its management (RFC 7592)
//! at the returned `registration_client_uri`, the organization policy that opens or closes it,
//! bad bodies, and the Client ID Metadata Document lookup (`Clients::lookup`) against a real
//! HTTP server serving documents.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agentidp::fetch::FetchError;
use agentidp::model::ClientKind;
use agentidp::tenancy::cimd::LookupError;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::enrollment::enrollment_token;
use crate::on_all_backends;
use crate::private_key_jwt::{ClientKey, assertion_claims, token_with_assertion};
use crate::support::*;

/// `POST {iss}/oauth2/register` with `body`; the status, the JSON and `WWW-Authenticate`.
pub async fn register(
    app: &TestApp,
    org: &TestOrg,
    bearer: Option<&str>,
    body: &Value,
) -> (StatusCode, Value, Option<String>) {
    let mut req = app
        .http
        .post(format!("{}/oauth2/register", org.issuer))
        .json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    with_challenge(req.send().await.unwrap()).await
}

async fn with_challenge(resp: reqwest::Response) -> (StatusCode, Value, Option<String>) {
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let (st, v) = json_of(resp).await;
    (st, v, challenge)
}

/// Registers an agent with an enrollment token; asserts 201.
pub async fn register_agent(app: &TestApp, org: &TestOrg, token: &str, body: Value) -> Value {
    let (st, v, _) = register(app, org, Some(token), &body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

async fn set_registration(app: &TestApp, org: &TestOrg, mode: &str) {
    let (st, v) = app
        .admin(
            Method::PUT,
            &format!("/api/v1/orgs/{}/policy", org.slug),
            Some(json!({"dynamic_registration": mode})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// A call at the client configuration endpoint.
async fn manage(
    app: &TestApp,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = app.http.request(method, uri);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    with_challenge(req.send().await.unwrap()).await
}

async fn the_policy_decides_registration_without_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let public = json!({"client_name": "MCP client", "redirect_uris": ["http://127.0.0.1/callback"],
                        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
                        "response_types": ["code"], "scope": "openid", "client_uri": "https://ignored.example"});
    // off (the default): 403.
    let (st, v, _) = register(&app, &org, None, &public).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "access_denied");
    assert!(v["error_description"].is_string());
    // initial_access_token: 401 with a Bearer challenge.
    set_registration(&app, &org, "initial_access_token").await;
    let (st, v, c) = register(&app, &org, None, &public).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "invalid_token");
    assert!(c.unwrap().starts_with("Bearer realm="));
    // ... but an enrollment token registers an agent.
    let e = enrollment_token(&app, &org, json!({})).await;
    register_agent(
        &app,
        &org,
        e["token"].as_str().unwrap(),
        json!({"jwks": ClientKey::es256().jwks()}),
    )
    .await;

    // open: anyone registers an app.
    set_registration(&app, &org, "open").await;
    let (st, v, _) = register(&app, &org, None, &public).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(v.get("client_secret").is_none(), "public: {v}");
    assert_eq!(v["token_endpoint_auth_method"], "none");
    assert_eq!(v["redirect_uris"], json!(["http://127.0.0.1/callback"]));
    assert_eq!(
        v["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(v["response_types"], json!(["code"]));
    assert_eq!(v["scope"], "openid");
    assert!(v.get("did").is_none(), "an app has no DID: {v}");
    assert!(v.get("client_uri").is_none());
    // The admin sees it among the organization's clients.
    let (st, c) = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/orgs/{}/clients/{}",
                org.slug,
                v["client_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["name"], "MCP client");

    // Confidential by default (RFC 7591 §2): the secret once, not expiring.
    let (st, v, _) = register(
        &app,
        &org,
        None,
        &json!({"redirect_uris": ["https://app.example/cb"]}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["token_endpoint_auth_method"], "client_secret_basic");
    assert!(v["client_secret"].is_string(), "{v}");
    assert_eq!(v["client_secret_expires_at"], 0);
    assert_eq!(v["grant_types"], json!(["authorization_code"]));

    // RFC 7591 §3.2.2 errors.
    for (md, code) in [
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"client_name": "no redirect"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "tls_client_auth"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": "https://app.example/cb"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "client_name": "a\u{202e}b"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "client_id": "mine"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "software_statement": "eyJhbGciOiJub25lIn0.e30."}),
            "invalid_software_statement",
        ),
    ] {
        let (st, v, _) = register(&app, &org, None, &md).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{md}: {v}");
        assert_eq!(v["error"], code, "{md}: {v}");
        assert!(v["error_description"].is_string(), "{v}");
    }
    // Another organization's policy is its own.
    let other = app.create_org().await;
    let (st, _, _) = register(&app, &other, None, &public).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

async fn rfc7592_reads_updates_and_deletes_a_registration(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    set_registration(&app, &org, "open").await;
    let (st, reg, _) = register(
        &app,
        &org,
        None,
        &json!({"client_name": "web", "redirect_uris": ["https://app.example/cb"]}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    let uri = reg["registration_client_uri"].as_str().unwrap();
    let rat = reg["registration_access_token"].as_str().unwrap();
    assert!(rat.starts_with("aidp_r_"));
    let client_id = reg["client_id"].as_str().unwrap();

    // Read (RFC 7592 §2.1).
    let (st, got, _) = manage(&app, Method::GET, uri, Some(rat), None).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["client_id"], client_id);
    assert_eq!(got["redirect_uris"], reg["redirect_uris"]);
    assert!(got.get("client_secret").is_none(), "only a digest is kept");
    assert_eq!(got["client_secret_expires_at"], 0);

    // A wrong, missing or another client's token: 401 with a challenge.
    let (_, other, _) = register(
        &app,
        &org,
        None,
        &json!({"redirect_uris": ["https://other.example/cb"]}),
    )
    .await;
    let other_rat = other["registration_access_token"].as_str().unwrap();
    let last = if rat.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &rat[..rat.len() - 1]);
    for bad in [Some(other_rat), Some(forged.as_str()), Some("nope"), None] {
        for m in [Method::GET, Method::DELETE] {
            let (st, v, c) = manage(&app, m.clone(), uri, bad, None).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {bad:?}: {v}");
            assert_eq!(v["error"], "invalid_token");
            assert!(c.unwrap().starts_with("Bearer "), "{m}");
        }
    }
    // Another organization's issuer does not know the client.
    let org2 = app.create_org().await;
    let (st, _, _) = manage(
        &app,
        Method::GET,
        &format!("{}/oauth2/register/{client_id}", org2.issuer),
        Some(rat),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Update (RFC 7592 §2.2): the whole metadata, with the client_id.
    let new = json!({"client_id": client_id, "client_name": "web 2",
                     "redirect_uris": ["https://app.example/cb2", "http://localhost:8080/cb"],
                     "grant_types": ["authorization_code", "refresh_token"]});
    let (st, up, _) = manage(&app, Method::PUT, uri, Some(rat), Some(&new)).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    assert_eq!(up["client_name"], "web 2");
    assert_eq!(up["redirect_uris"], new["redirect_uris"]);
    assert_eq!(up["registration_access_token"], rat);
    let (_, got, _) = manage(&app, Method::GET, uri, Some(rat), None).await;
    assert_eq!(got["grant_types"], new["grant_types"]);
    for (body, why) in [
        (
            json!({"client_name": "x", "redirect_uris": ["https://a.example/cb"]}),
            "no client_id",
        ),
        (
            json!({"client_id": other["client_id"], "redirect_uris": ["https://a.example/cb"]}),
            "another client_id",
        ),
        (
            json!({"client_id": client_id, "redirect_uris": ["https://a.example/cb"], "registration_access_token": rat}),
            "the token",
        ),
        (
            json!({"client_id": client_id, "redirect_uris": ["https://a.example/cb"], "client_secret": "wrong"}),
            "a wrong secret",
        ),
        (
            json!({"client_id": client_id, "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"}),
            "a switch to public",
        ),
    ] {
        let (st, v, _) = manage(&app, Method::PUT, uri, Some(rat), Some(&body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{why}: {v}");
        assert_eq!(v["error"], "invalid_client_metadata", "{why}: {v}");
    }
    let (st, v, _) = manage(
        &app,
        Method::PUT,
        uri,
        Some(rat),
        Some(&json!({"client_id": client_id, "redirect_uris": ["http://evil.example/cb"]})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_redirect_uri");
    // The right secret may be sent (RFC 7592 §2.2).
    let (st, v, _) = manage(
        &app,
        Method::PUT,
        uri,
        Some(rat),
        Some(
            &json!({"client_id": client_id, "redirect_uris": ["https://app.example/cb"],
                      "client_secret": reg["client_secret"]}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Delete (RFC 7592 §2.3): then every call is 401, and the admin sees no client.
    let (st, _, _) = manage(&app, Method::DELETE, uri, Some(rat), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = manage(&app, Method::GET, uri, Some(rat), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/clients/{client_id}", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// An enrolled agent replaces its key through RFC 7592; the new key authenticates, the old
/// does not; its scopes stay within the token's ceiling.
async fn an_enrolled_agent_rotates_its_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let e = enrollment_token(&app, &org, json!({"name": "ci-", "scopes": ["read"]})).await;
    let old = ClientKey::es256();
    let reg = register_agent(
        &app,
        &org,
        e["token"].as_str().unwrap(),
        json!({"client_name": "runner", "jwks": old.jwks()}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap();
    let uri = reg["registration_client_uri"].as_str().unwrap();
    let rat = reg["registration_access_token"].as_str().unwrap();
    let new = ClientKey::ed25519();
    let (st, up, _) = manage(
        &app,
        Method::PUT,
        uri,
        Some(rat),
        Some(&json!({"client_id": client_id, "client_name": "runner", "jwks": new.jwks(), "scope": "read write"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{up}");
    assert_eq!(up["client_name"], "ci-runner");
    assert_eq!(up["scope"], "read");
    let ok = new.sign(&assertion_claims(client_id, &org.issuer));
    let (st, v) = json_of(token_with_assertion(&app, &org, &ok).await).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let stale = old.sign(&assertion_claims(client_id, &org.issuer));
    let (st, v) = json_of(token_with_assertion(&app, &org, &stale).await).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // Asking for a secret is refused.
    let (st, v, _) = manage(
        &app,
        Method::PUT,
        uri,
        Some(rat),
        Some(&json!({"client_id": client_id, "token_endpoint_auth_method": "client_secret_post"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
}

/// Malformed, huge, duplicated or mistyped bodies are 4xx (400, or 413 over 64 KiB), never 500.
async fn bad_bodies_are_refused_never_500(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    set_registration(&app, &org, "open").await;
    let e = enrollment_token(&app, &org, json!({"max_uses": 100})).await;
    let token = e["token"].as_str().unwrap().to_owned();
    let deep = format!("{{\"a\": {}1{}}}", "[".repeat(200), "]".repeat(200));
    let many = format!("{{\"a\": [{}0]}}", "0,".repeat(20_000));
    let huge = format!(
        "{{\"client_name\": \"{}\", \"redirect_uris\": [\"https://a.example/cb\"]}}",
        "x".repeat(70 * 1024)
    );
    let bodies: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("truncated", "{\"redirect_uris\": [".into()),
        ("array", "[]".into()),
        ("null", "null".into()),
        ("string", "\"x\"".into()),
        ("deep", deep),
        ("many", many),
        (
            "duplicated",
            r#"{"redirect_uris": ["https://a.example/cb"], "redirect_uris": ["https://b.example/cb"]}"#.into(),
        ),
        (
            "nul",
            r#"{"redirect_uris": ["https://a.example/cb"], "client_name": "a\u0000"}"#.into(),
        ),
        (
            "nul in an ignored member",
            r#"{"redirect_uris": ["https://a.example/cb"], "tos_uri": "\u0000"}"#.into(),
        ),
        (
            "mistyped",
            r#"{"redirect_uris": [1], "grant_types": "authorization_code"}"#.into(),
        ),
        ("invalid utf-8", "{\"client_name\": \"\u{FFFD}\"".into()),
        ("huge", huge),
    ];
    for bearer in [None, Some(token.as_str())] {
        for (why, body) in &bodies {
            let mut req = app
                .http
                .post(format!("{}/oauth2/register", org.issuer))
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            let st = resp.status();
            let (_, v) = json_of(resp).await;
            if *why == "huge" {
                assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{why}: {v}");
            } else {
                assert_eq!(st, StatusCode::BAD_REQUEST, "{why} {bearer:?}: {v}");
                assert_eq!(v["error"], "invalid_client_metadata", "{why}: {v}");
            }
        }
        // Not JSON at all.
        let mut req = app
            .http
            .post(format!("{}/oauth2/register", org.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("redirect_uris=https://a.example/cb");
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let (st, v) = json_of(req.send().await.unwrap()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"], "invalid_client_metadata");
    }
    // An unknown organization is 404; a client id that is no UUID is 401.
    let resp = app
        .http
        .post(app.url("/orgs/nosuchorg/oauth2/register"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (st, _, _) = manage(
        &app,
        Method::GET,
        &format!("{}/oauth2/register/..%2F..%00", org.issuer),
        Some("aidp_r_x"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

async fn open_registration_is_limited_per_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    set_registration(&app, &org, "open").await;
    let body =
        json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"});
    let mut limited = None;
    for i in 0..40 {
        let resp = app
            .http
            .post(format!("{}/oauth2/register", org.issuer))
            .json(&body)
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(resp.headers().get("retry-after").is_some());
            limited = Some(i);
            break;
        }
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let at = limited.expect("a burst of open registrations is limited");
    assert!(at >= 20, "the burst is 20: limited at {at}");
}

/// Discovery lists the registration endpoint and CIMD support.
async fn discovery_lists_registration(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    for path in [
        format!("{}/.well-known/openid-configuration", org.issuer),
        app.url(&format!(
            "/.well-known/oauth-authorization-server/orgs/{}",
            org.slug
        )),
    ] {
        let (st, d) = app.get_json(&path).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            d["registration_endpoint"],
            format!("{}/oauth2/register", org.issuer)
        );
        assert_eq!(d["client_id_metadata_document_supported"], true);
    }
}

/// Documents by name: the body, the `Cache-Control` value, a delay in seconds.
type Docs = Arc<RwLock<std::collections::HashMap<String, (String, Option<String>, u64)>>>;

/// Serves client metadata documents on 127.0.0.1: `GET /{name}` answers what was set for it
/// (body, `Cache-Control`, delay), counting requests per name.
struct DocServer {
    addr: SocketAddr,
    docs: Docs,
    hits: Arc<RwLock<std::collections::HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl DocServer {
    async fn start() -> Self {
        let docs: Docs = Default::default();
        let hits: Arc<RwLock<std::collections::HashMap<String, usize>>> = Default::default();
        let total = Arc::new(AtomicUsize::new(0));
        let (d, h, t) = (docs.clone(), hits.clone(), total.clone());
        let router = axum::Router::new().route(
            "/{name}",
            axum::routing::get(
                move |axum::extract::Path(name): axum::extract::Path<String>| {
                    let (d, h, t) = (d.clone(), h.clone(), t.clone());
                    async move {
                        use axum::response::IntoResponse;
                        t.fetch_add(1, Ordering::SeqCst);
                        *h.write().unwrap().entry(name.clone()).or_default() += 1;
                        let found = d.read().unwrap().get(&name).cloned();
                        let Some((body, cc, delay)) = found else {
                            return axum::http::StatusCode::NOT_FOUND.into_response();
                        };
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_secs(delay)).await;
                        }
                        let mut resp = (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                            .into_response();
                        if let Some(cc) = cc {
                            resp.headers_mut()
                                .insert(axum::http::header::CACHE_CONTROL, cc.parse().unwrap());
                        }
                        resp
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        DocServer {
            addr,
            docs,
            hits,
            total,
            task,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    fn set(&self, name: &str, body: String, cache_control: Option<&str>, delay_secs: u64) {
        self.docs.write().unwrap().insert(
            name.to_owned(),
            (body, cache_control.map(str::to_owned), delay_secs),
        );
    }

    /// A document describing a public client of `name`, naming `client_id`.
    fn set_client(&self, name: &str, client_id: &str, redirect: &str, cc: Option<&str>) {
        self.set(
            name,
            json!({"client_id": client_id, "client_name": format!("MCP {name}"),
                   "redirect_uris": [redirect], "token_endpoint_auth_method": "none",
                   "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                   "scope": "openid offline_access", "logo_uri": "https://ignored.example/l.png"})
            .to_string(),
            cc,
            0,
        );
    }

    fn hits(&self, name: &str) -> usize {
        self.hits.read().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn client_id_metadata_documents_are_fetched_checked_and_cached(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let rec = app.idp.directory.org(&org.slug).await.unwrap().unwrap();
    let clients = &app.idp.clients;
    let docs = DocServer::start().await;

    // A good document: a client of kind app whose id is the URL, host unverified.
    let good = docs.url("good");
    docs.set_client("good", &good, "http://127.0.0.1/cb", Some("max-age=120"));
    let c = clients
        .lookup(&rec, &good)
        .await
        .unwrap()
        .expect("a client");
    assert_eq!(c.id(), good);
    assert_eq!(c.client_id(), good);
    assert_eq!(c.kind, ClientKind::App);
    assert_eq!(c.unverified_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(c.redirect_uris, ["http://127.0.0.1/cb"]);
    assert_eq!(c.grant_types, ["authorization_code", "refresh_token"]);
    assert_eq!(c.auth_method.as_str(), "none");
    assert_eq!(c.name, "MCP good");
    assert_eq!(c.scopes, ["openid", "offline_access"]);
    assert!(c.secret_digest.is_none() && c.did.is_empty());
    assert!(
        agentidp::tenancy::clients::find_redirect(&c.redirect_uris, "http://127.0.0.1:5555/cb")
            .is_some()
    );

    // Cached per max-age on the injected clock: no fetch until 120 s have passed.
    assert_eq!(docs.hits("good"), 1);
    clients.lookup(&rec, &good).await.unwrap().unwrap();
    app.advance(Duration::from_secs(100));
    clients.lookup(&rec, &good).await.unwrap().unwrap();
    assert_eq!(docs.hits("good"), 1);
    app.advance(Duration::from_secs(30));
    clients.lookup(&rec, &good).await.unwrap().unwrap();
    assert_eq!(docs.hits("good"), 2);
    // A changed document is seen after its max-age: now it lies, and is refused.
    docs.set_client(
        "good",
        "https://other.example/client",
        "http://127.0.0.1/cb",
        Some("max-age=120"),
    );
    app.advance(Duration::from_secs(121));
    let e = clients.lookup(&rec, &good).await.unwrap_err();
    assert!(
        matches!(
            e,
            LookupError::Invalid {
                field: "client_id",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(docs.hits("good"), 3);

    // A document that lies about its client_id.
    let liar = docs.url("liar");
    docs.set_client("liar", &docs.url("good"), "http://127.0.0.1/cb", None);
    let e = clients.lookup(&rec, &liar).await.unwrap_err();
    assert!(
        matches!(
            e,
            LookupError::Invalid {
                field: "client_id",
                ..
            }
        ),
        "{e:?}"
    );
    // One whose client_id differs only by a trailing slash.
    let slash = docs.url("slash");
    docs.set_client("slash", &format!("{slash}/"), "http://127.0.0.1/cb", None);
    let e = clients.lookup(&rec, &slash).await.unwrap_err();
    assert!(
        matches!(
            e,
            LookupError::Invalid {
                field: "client_id",
                ..
            }
        ),
        "{e:?}"
    );

    // Bad redirect URIs.
    for (i, r) in [
        "http://evil.example/cb",
        "javascript:alert(1)",
        "https://a.example/cb#f",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("redirect{i}");
        let u = docs.url(&name);
        docs.set_client(&name, &u, r, None);
        let e = clients.lookup(&rec, &u).await.unwrap_err();
        assert!(
            matches!(
                e,
                LookupError::Invalid {
                    field: "redirect_uris",
                    ..
                }
            ),
            "{r}: {e:?}"
        );
    }
    // A secret in a public document; a secret method; a confidential grant.
    for (name, extra, field) in [
        (
            "secret",
            json!({"client_secret": "s3cret"}),
            "token_endpoint_auth_method",
        ),
        (
            "basic",
            json!({"token_endpoint_auth_method": "client_secret_basic"}),
            "token_endpoint_auth_method",
        ),
        (
            "cc",
            json!({"grant_types": ["client_credentials"]}),
            "grant_types",
        ),
        (
            "pkj",
            json!({"token_endpoint_auth_method": "private_key_jwt"}),
            "jwks",
        ),
        ("noredirect", json!({"redirect_uris": []}), "redirect_uris"),
    ] {
        let u = docs.url(name);
        let mut d = json!({"client_id": u, "redirect_uris": ["https://app.example/cb"]});
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        docs.set(name, d.to_string(), None, 0);
        let e = clients.lookup(&rec, &u).await.unwrap_err();
        assert!(
            matches!(&e, LookupError::Invalid { field: f, .. } if *f == field),
            "{name}: {e:?}"
        );
    }
    // private_key_jwt with a key is fine.
    let pkj = docs.url("pkj-ok");
    docs.set(
        "pkj-ok",
        json!({"client_id": pkj, "redirect_uris": ["https://app.example/cb"],
               "token_endpoint_auth_method": "private_key_jwt", "jwks": ClientKey::es256().jwks()})
        .to_string(),
        None,
        0,
    );
    let c = clients.lookup(&rec, &pkj).await.unwrap().unwrap();
    assert_eq!(c.auth_method.as_str(), "private_key_jwt");
    assert!(!c.key_set.is_empty());

    // Too large (over 5 KiB), slow (over the time cap), missing, not JSON.
    let large = docs.url("large");
    docs.set(
        "large",
        json!({"client_id": large, "redirect_uris": ["https://app.example/cb"], "pad": "x".repeat(6000)})
            .to_string(),
        None,
        0,
    );
    let e = clients.lookup(&rec, &large).await.unwrap_err();
    assert!(
        matches!(e, LookupError::Fetch(FetchError::TooLarge(_))),
        "{e:?}"
    );
    let slow = docs.url("slow");
    docs.set("slow", json!({"client_id": slow}).to_string(), None, 10);
    let started = std::time::Instant::now();
    let e = clients.lookup(&rec, &slow).await.unwrap_err();
    assert!(
        matches!(e, LookupError::Fetch(FetchError::Timeout)),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let e = clients
        .lookup(&rec, &docs.url("missing"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, LookupError::Fetch(FetchError::Status(404))),
        "{e:?}"
    );
    docs.set("text", "not json".into(), None, 0);
    let e = clients.lookup(&rec, &docs.url("text")).await.unwrap_err();
    assert!(
        matches!(e, LookupError::Fetch(FetchError::NotJson)),
        "{e:?}"
    );

    // URLs that cannot name a document; the SSRF guard.
    for bad in [
        format!("http://{}", docs.addr),
        format!("http://{}/", docs.addr),
        format!("http://{}/a/../good", docs.addr),
        format!("http://{}/good?x=1", docs.addr),
        format!("http://{}/good#x", docs.addr),
        format!("http://user@{}/good", docs.addr),
    ] {
        let e = clients.lookup(&rec, &bad).await.unwrap_err();
        assert!(
            matches!(
                e,
                LookupError::Invalid {
                    field: "client_id",
                    ..
                }
            ),
            "{bad}: {e:?}"
        );
    }
    let before = docs.total.load(Ordering::SeqCst);
    for ssrf in [
        "https://10.0.0.1/client",
        "https://169.254.169.254/latest",
        "http://example.com/client",
    ] {
        let e = clients.lookup(&rec, ssrf).await.unwrap_err();
        assert!(
            matches!(e, LookupError::Fetch(FetchError::Forbidden(_))),
            "{ssrf}: {e:?}"
        );
    }
    assert_eq!(docs.total.load(Ordering::SeqCst), before);

    // A stored client by its UUID; unknown ids.
    let (st, web) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/clients", org.slug),
            Some(json!({"name": "web", "scopes": [], "redirect_uris": ["https://app.example/cb"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{web}");
    let id = web["id"].as_str().unwrap();
    let c = clients.lookup(&rec, id).await.unwrap().unwrap();
    assert_eq!(c.id(), id);
    assert!(c.unverified_host.is_none());
    assert!(
        clients
            .lookup(&rec, &uuid::Uuid::new_v4().to_string())
            .await
            .unwrap()
            .is_none()
    );
    for unknown in ["", "urn:x", "client", "ftp://x.example/c"] {
        assert!(
            clients.lookup(&rec, unknown).await.unwrap().is_none(),
            "{unknown}"
        );
    }
    // Another organization's client is unknown here.
    let other = app.create_org().await;
    let other_rec = app.idp.directory.org(&other.slug).await.unwrap().unwrap();
    assert!(clients.lookup(&other_rec, id).await.unwrap().is_none());
    // The organization's policy applies to documents too.
    let (st, _) = app
        .admin(
            Method::PUT,
            &format!("/api/v1/orgs/{}/policy", org.slug),
            Some(json!({"allowed_scopes": ["openid"], "allowed_auth_methods": ["none", "client_secret_basic"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let fresh = docs.url("fresh");
    docs.set_client("fresh", &fresh, "http://127.0.0.1/cb", None);
    let c = clients.lookup(&rec, &fresh).await.unwrap().unwrap();
    assert_eq!(c.scopes, ["openid"]);
    let e = clients.lookup(&rec, &pkj).await.unwrap_err();
    assert!(
        matches!(
            e,
            LookupError::Invalid {
                field: "token_endpoint_auth_method",
                ..
            }
        ),
        "{e:?}"
    );
}

/// An MCP client named only by its Client ID Metadata Document signs a person in: the consent
/// screen says its host is unverified, the code is bound to the document's redirect URI and
/// redeemed by the URL as a public client; a document that lies about its client_id is never
/// redirected to.
async fn a_metadata_document_client_completes_the_code_flow(backend: Backend) {
    use super::signin::{Browser, VERIFIER, challenge, hidden, query_of};
    let app = spawn_app(backend).await;
    let s = super::signin::setup(&app).await;
    let docs = DocServer::start().await;
    let id = docs.url("mcp");
    docs.set_client("mcp", &id, "http://127.0.0.1/mcp-cb", Some("max-age=60"));
    let authorize = |client_id: &str| {
        let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.org.issuer)).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", "http://127.0.0.1/mcp-cb")
            .append_pair("scope", "openid offline_access")
            .append_pair("state", "m")
            .append_pair("code_challenge", &challenge(VERIFIER))
            .append_pair("code_challenge_method", "S256");
        u.to_string()
    };
    let mut b = Browser::new();
    let a = b.get(&authorize(&id)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let page = b.get(a.location.as_deref().unwrap()).await;
    let consent = b
        .post(
            &format!("{}/login", s.org.issuer),
            &[
                ("email", "ada@example.com"),
                ("password", super::users::PASSWORD),
                ("csrf", &hidden(&page.body, "csrf")),
                ("authorize", &hidden(&page.body, "authorize")),
            ],
            None,
        )
        .await;
    assert!(
        consent.body.contains("Unverified application"),
        "{}",
        consent.body
    );
    assert!(consent.body.contains("127.0.0.1"));
    let done = b
        .post(
            &format!("{}/consent", s.org.issuer),
            &[
                ("authorize", &hidden(&consent.body, "authorize")),
                ("csrf", &hidden(&consent.body, "csrf")),
                ("decision", "allow"),
            ],
            None,
        )
        .await;
    let q = query_of(done.location.as_deref().unwrap());
    let (st, t) = json_of(
        app.post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", "http://127.0.0.1/mcp-cb"),
                ("client_id", &id),
                ("code_verifier", VERIFIER),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(
        jwt_claims(t["access_token"].as_str().unwrap())["client_id"],
        id.as_str()
    );
    assert!(t["refresh_token"].is_string());
    // An unverified client's errors are shown, not redirected (no open redirector).
    let no_pkce =
        authorize(&id).replace("code_challenge_method=S256", "code_challenge_method=plain");
    let a = b.get(&no_pkce).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.location.is_none());
    // A document that names another client_id, or another redirect URI than the request's.
    let liar = docs.url("liar");
    docs.set_client(
        "liar",
        &docs.url("someone-else"),
        "http://127.0.0.1/mcp-cb",
        None,
    );
    let a = b.get(&authorize(&liar)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.location.is_none());
    let other = docs.url("other-cb");
    docs.set_client("other-cb", &other, "http://127.0.0.1/elsewhere", None);
    let a = b.get(&authorize(&other)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.location.is_none());
}

on_all_backends!(
    a_metadata_document_client_completes_the_code_flow,
    the_policy_decides_registration_without_a_token,
    rfc7592_reads_updates_and_deletes_a_registration,
    an_enrolled_agent_rotates_its_key,
    bad_bodies_are_refused_never_500,
    open_registration_is_limited_per_address,
    discovery_lists_registration,
    client_id_metadata_documents_are_fetched_checked_and_cached,
);
