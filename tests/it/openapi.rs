//! The admin API's OpenAPI 3.1 document (`GET /api/v1/openapi.json`) against the router and
//! against real responses:
//! - every operation of the document is routed to a handler, and a documented path answers 405
//!   to every method the document does not list for it;
//! - no admin route is registered outside the document (a scan of the source);
//! - a flow through every operation (and the error cases) answers only statuses the document
//!   declares, with bodies that match the declared schemas, which are closed for the test (a
//!   field the document does not name fails).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::private_key_jwt::ClientKey;
use crate::support::*;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The served document, with a record of which (method, path template, status) were checked.
struct Spec {
    doc: Value,
    /// `components`, with every object schema that names its properties closed.
    closed: Value,
    seen: BTreeSet<(String, String, u16)>,
}

/// Sets `additionalProperties: false` on every object schema that lists properties and says
/// nothing about others, so an undocumented field in a response fails validation.
fn close(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            m.values_mut().for_each(close);
        }
        Value::Array(a) => a.iter_mut().for_each(close),
        _ => {}
    }
}

impl Spec {
    async fn load(app: &TestApp) -> Self {
        let resp = app
            .http
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let doc: Value = resp.json().await.unwrap();
        let mut closed = doc["components"].clone();
        close(&mut closed);
        Spec {
            doc,
            closed,
            seen: BTreeSet::new(),
        }
    }

    /// Every (method, path template) of the document.
    fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for m in METHODS {
                if item.get(m).is_some() {
                    out.push((m.to_owned(), path.clone()));
                }
            }
        }
        out
    }

    /// The documented path template that `path` (without its query) instantiates: literal
    /// segments must be equal, `{param}` segments match any one segment.
    fn template(&self, path: &str) -> String {
        let path = path.split('?').next().unwrap();
        let segs: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, &String)> = None;
        for t in self.doc["paths"].as_object().unwrap().keys() {
            let ts: Vec<&str> = t.split('/').collect();
            if ts.len() != segs.len() {
                continue;
            }
            let mut literal = 0;
            let fits = ts.iter().zip(&segs).all(|(t, s)| {
                if t.starts_with('{') {
                    true
                } else {
                    literal += 1;
                    t == s
                }
            });
            if fits && best.is_none_or(|(l, _)| literal > l) {
                best = Some((literal, t));
            }
        }
        best.unwrap_or_else(|| panic!("{path} is not in the document"))
            .1
            .clone()
    }

    /// Checks one real response against the document: the status is declared for the
    /// operation, and the body matches the schema declared for that status.
    fn check(
        &mut self,
        method: &Method,
        path: &str,
        status: StatusCode,
        content_type: Option<&str>,
        body: &Value,
    ) {
        let template = self.template(path);
        let m = method.as_str().to_lowercase();
        let op = &self.doc["paths"][&template][&m];
        assert!(op.is_object(), "{m} {template} is not in the document");
        let code = status.as_u16();
        let declared = &op["responses"][code.to_string()];
        assert!(
            declared.is_object(),
            "{m} {path} answered {code}, which the document does not declare for {template}: {body}"
        );
        match declared["content"].as_object() {
            None => assert!(
                body.is_null(),
                "{m} {path} {code}: the document declares no body, got {body}"
            ),
            Some(content) => {
                let ct = content_type.unwrap_or("");
                let schema = &content.get(ct).unwrap_or_else(|| {
                    panic!("{m} {path} {code}: content type {ct:?} is not declared")
                })["schema"];
                let root = json!({
                    "$schema": DRAFT_2020_12,
                    "allOf": [schema],
                    "components": self.closed,
                });
                let v = jsonschema::validator_for(&root)
                    .unwrap_or_else(|e| panic!("{m} {template} {code}: schema: {e}"));
                let errs: Vec<String> = v
                    .iter_errors(body)
                    .map(|e| format!("at {:?}: {e}", e.instance_path.to_string()))
                    .collect();
                assert!(
                    errs.is_empty(),
                    "{m} {path} {code} does not match the document: {errs:#?}\n{body:#}"
                );
            }
        }
        self.seen.insert((m, template, code));
    }
}

/// A test server plus its document; every request goes through `Spec::check`.
struct Flow {
    app: TestApp,
    spec: Spec,
}

impl Flow {
    async fn start(backend: Backend) -> Self {
        let app = spawn_app(backend).await;
        let spec = Spec::load(&app).await;
        Flow { app, spec }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        let mut req = self.app.http.request(method.clone(), self.app.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((ct, bytes)) = body {
            req = req.header("content-type", ct).body(bytes);
        }
        let resp = req.send().await.unwrap();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let (st, v) = json_of(resp).await;
        self.spec.check(&method, path, st, ct.as_deref(), &v);
        (st, v)
    }

    /// An admin call with the platform token and an optional JSON body.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.app.token.clone();
        let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
        self.send(method, path, Some(&token), body).await
    }

    #[track_caller]
    fn expect(&self, got: (StatusCode, Value), want: StatusCode) -> Value {
        assert_eq!(got.0, want, "{}", got.1);
        got.1
    }

    async fn ok(&mut self, method: Method, path: &str, body: Option<Value>, want: u16) -> Value {
        let got = self.call(method.clone(), path, body).await;
        assert_eq!(got.0.as_u16(), want, "{method} {path}: {}", got.1);
        got.1
    }

    async fn err(&mut self, method: Method, path: &str, body: Option<Value>, want: u16) -> Value {
        let v = self.ok(method, path, body, want).await;
        assert!(v["error"].is_string(), "{v}");
        v
    }
}

async fn responses_match_the_document(backend: Backend) {
    let mut f = Flow::start(backend).await;
    let (get, post, put, patch, delete) = (
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    );

    // The document itself.
    f.ok(get.clone(), "/api/v1/openapi.json", None, 200).await;

    // Organizations.
    let slug = random_slug();
    let org = f
        .ok(
            post.clone(),
            "/api/v1/orgs",
            Some(json!({"slug": slug, "name": "Acme"})),
            201,
        )
        .await;
    assert_eq!(org["slug"], slug);
    let other = random_slug();
    f.ok(
        post.clone(),
        "/api/v1/orgs",
        Some(json!({"slug": other, "name": "Other"})),
        201,
    )
    .await;
    let v = f
        .err(
            post.clone(),
            "/api/v1/orgs",
            Some(json!({"slug": slug, "name": "Again"})),
            409,
        )
        .await;
    assert_eq!(v["error"], "conflict");
    let v = f
        .err(
            post.clone(),
            "/api/v1/orgs",
            Some(json!({"slug": "Not A Slug", "name": "x"})),
            422,
        )
        .await;
    assert_eq!(v["field"], "slug");
    f.err(
        post.clone(),
        "/api/v1/orgs",
        Some(json!({"slug": random_slug(), "name": "x", "colour": "red"})),
        400,
    )
    .await;
    let token = f.app.token.clone();
    let got = f
        .send(
            post.clone(),
            "/api/v1/orgs",
            Some(&token),
            Some(("application/json", b"{\"slug\":".to_vec())),
        )
        .await;
    f.expect(got, StatusCode::BAD_REQUEST);
    let got = f
        .send(
            post.clone(),
            "/api/v1/orgs",
            Some(&token),
            Some(("text/plain", b"{}".to_vec())),
        )
        .await;
    f.expect(got, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let got = f.send(get.clone(), "/api/v1/orgs", None, None).await;
    assert_eq!(
        f.expect(got, StatusCode::UNAUTHORIZED)["error"],
        "unauthorized"
    );
    let got = f
        .send(get.clone(), "/api/v1/orgs", Some("not-a-token"), None)
        .await;
    f.expect(got, StatusCode::UNAUTHORIZED);

    let page = f.ok(get.clone(), "/api/v1/orgs?limit=1", None, 200).await;
    let next = page["next"].as_str().expect("a full page has a cursor");
    f.ok(
        get.clone(),
        &format!("/api/v1/orgs?limit=1&after={next}"),
        None,
        200,
    )
    .await;
    let v = f
        .err(get.clone(), "/api/v1/orgs?limit=many", None, 422)
        .await;
    assert_eq!(v["field"], "limit");
    let v = f.err(get.clone(), "/api/v1/orgs?limit=0", None, 422).await;
    assert_eq!(v["field"], "limit");

    let o = format!("/api/v1/orgs/{slug}");
    f.ok(get.clone(), &o, None, 200).await;
    f.err(
        get.clone(),
        &format!("/api/v1/orgs/{}", random_slug()),
        None,
        404,
    )
    .await;
    f.ok(patch.clone(), &o, Some(json!({"name": "Acme Corp"})), 200)
        .await;
    f.err(patch.clone(), &o, Some(json!({"name": " "})), 422)
        .await;

    // Keys.
    let keys = f.ok(get.clone(), &format!("{o}/keys"), None, 200).await;
    assert!(!keys["keys"].as_array().unwrap().is_empty(), "{keys}");
    let rotated = f
        .ok(post.clone(), &format!("{o}/keys/rotate"), None, 201)
        .await;
    assert!(!rotated["keys"].as_array().unwrap().is_empty(), "{rotated}");
    f.err(
        post.clone(),
        &format!("/api/v1/orgs/{}/keys/rotate", random_slug()),
        None,
        404,
    )
    .await;

    let pending = rotated["keys"][0]["kid"].as_str().unwrap().to_owned();
    let revoked = f
        .ok(
            post.clone(),
            &format!("{o}/keys/{pending}/revoke"),
            None,
            200,
        )
        .await;
    assert_eq!(revoked["kid"], pending.as_str());
    f.err(
        post.clone(),
        &format!("{o}/keys/{pending}/revoke"),
        None,
        404,
    )
    .await;

    // API keys: created (the key shown once), listed, rotated, used where their role does not
    // reach (403), revoked.
    let api_keys = format!("{o}/api-keys");
    let key = f
        .ok(
            post.clone(),
            &api_keys,
            Some(json!({"name": "reader", "role": "member", "allowed_cidrs": ["127.0.0.1/32"]})),
            201,
        )
        .await;
    let key_id = key["id"].as_str().unwrap().to_owned();
    f.err(
        post.clone(),
        &api_keys,
        Some(json!({"name": "x", "role": "superuser"})),
        422,
    )
    .await;
    let listed = f.ok(get.clone(), &api_keys, None, 200).await;
    assert_eq!(listed["items"][0]["id"], key_id.as_str());
    let rotated_key = f
        .ok(
            post.clone(),
            &format!("{api_keys}/{key_id}/rotate"),
            Some(json!({"grace_period_secs": 60})),
            200,
        )
        .await;
    let member_key = rotated_key["key"].as_str().unwrap().to_owned();
    let refused = f
        .send(
            post.clone(),
            &format!("{o}/keys/rotate"),
            Some(&member_key),
            None,
        )
        .await;
    assert_eq!(
        f.expect(refused, StatusCode::FORBIDDEN)["error"],
        "forbidden"
    );
    f.ok(delete.clone(), &format!("{api_keys}/{key_id}"), None, 204)
        .await;
    f.err(delete.clone(), &format!("{api_keys}/{key_id}"), None, 404)
        .await;

    // Agents: with a secret, with an inline JWK Set, with a jwks_uri.
    let agents = format!("{o}/agents");
    let secret_agent = f
        .ok(
            post.clone(),
            &agents,
            Some(json!({"name": "worker", "scopes": ["read", "write"]})),
            201,
        )
        .await;
    assert!(secret_agent["client_secret"].is_string(), "{secret_agent}");
    let key = ClientKey::es256();
    let jwks_agent = f
        .ok(
            post.clone(),
            &agents,
            Some(json!({
                "name": "signer", "scopes": ["read"], "description": "signs its assertions",
                "token_endpoint_auth_method": "private_key_jwt", "jwks": key.jwks(),
            })),
            201,
        )
        .await;
    assert!(jwks_agent.get("client_secret").is_none(), "{jwks_agent}");
    assert_eq!(jwks_agent["jwks"], key.jwks());
    let uri_agent = f
        .ok(
            post.clone(),
            &agents,
            Some(json!({
                "name": "remote", "scopes": [],
                "jwks_uri": "https://keys.example.com/jwks.json",
            })),
            201,
        )
        .await;
    let v = f
        .err(post.clone(), &agents, Some(json!({"scopes": []})), 422)
        .await;
    assert_eq!(v["field"], "name");
    f.err(
        post.clone(),
        &format!("/api/v1/orgs/{}/agents", random_slug()),
        Some(json!({"name": "x", "scopes": []})),
        404,
    )
    .await;

    let page = f
        .ok(get.clone(), &format!("{agents}?limit=2"), None, 200)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().expect("cursor").to_owned();
    let last = f
        .ok(
            get.clone(),
            &format!("{agents}?limit=2&after={next}"),
            None,
            200,
        )
        .await;
    assert!(last["next"].is_null(), "{last}");
    f.err(get.clone(), &format!("{agents}?limit=x"), None, 422)
        .await;
    f.err(get.clone(), &format!("{agents}?limit=501"), None, 422)
        .await;
    let filtered = f
        .ok(
            get.clone(),
            &format!("{agents}?status=active&name=WORK&expiring_before=2999-01-01T00:00:00Z"),
            None,
            200,
        )
        .await;
    assert!(
        filtered["items"].as_array().unwrap().is_empty(),
        "{filtered}"
    );
    let v = f
        .err(get.clone(), &format!("{agents}?status=paused"), None, 422)
        .await;
    assert_eq!(v["field"], "status");
    f.err(get.clone(), &format!("{agents}?colour=red"), None, 400)
        .await;

    // The organization's policy: read, replaced (with the report of violating agents), refused.
    let pol = format!("{o}/policy");
    let p0 = f.ok(get.clone(), &pol, None, 200).await;
    assert_eq!(p0["dynamic_registration"], "off", "{p0}");
    let p1 = f
        .ok(
            put.clone(),
            &pol,
            Some(json!({
                "max_agents": 1, "allowed_scopes": ["read"], "max_secret_age_secs": 86400,
                "token_rate_limit": {"per_second": 100, "burst": 200},
                "dynamic_registration": "open",
            })),
            200,
        )
        .await;
    assert_eq!(p1["violations"]["over_max_agents"], true, "{p1}");
    assert!(
        !p1["violations"]["agents"].as_array().unwrap().is_empty(),
        "{p1}"
    );
    f.ok(get.clone(), &pol, None, 200).await;
    let v = f
        .err(put.clone(), &pol, Some(json!({"max_agents": -1})), 422)
        .await;
    assert_eq!(v["field"], "max_agents");
    f.err(put.clone(), &pol, Some(json!({"colour": 1})), 400)
        .await;
    f.err(
        get.clone(),
        &format!("/api/v1/orgs/{}/policy", random_slug()),
        None,
        404,
    )
    .await;
    // Back to no restriction: the rest of this flow registers and changes agents freely.
    f.ok(put.clone(), &pol, Some(json!({})), 200).await;

    let a = format!("{agents}/{}", secret_agent["id"].as_str().unwrap());
    let k = format!("{agents}/{}", jwks_agent["id"].as_str().unwrap());
    let u = format!("{agents}/{}", uri_agent["id"].as_str().unwrap());
    let read = f.ok(get.clone(), &a, None, 200).await;
    assert!(read.get("client_secret").is_none(), "{read}");
    f.ok(get.clone(), &k, None, 200).await;
    f.err(
        get.clone(),
        &format!("{agents}/{}", uuid::Uuid::new_v4()),
        None,
        404,
    )
    .await;
    f.ok(
        patch.clone(),
        &a,
        Some(json!({"description": "does work", "access_token_ttl_secs": 60})),
        200,
    )
    .await;
    let v = f
        .err(
            patch.clone(),
            &a,
            Some(json!({"scopes": ["two words"]})),
            422,
        )
        .await;
    assert_eq!(v["field"], "scopes");
    let got = f
        .send(
            patch.clone(),
            &a,
            Some(&token),
            Some(("application/x-www-form-urlencoded", b"name=x".to_vec())),
        )
        .await;
    f.expect(got, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Lifecycle.
    let s = f.ok(post.clone(), &format!("{a}/suspend"), None, 200).await;
    assert_eq!(s["status"], "suspended");
    let s = f
        .ok(post.clone(), &format!("{a}/reactivate"), None, 200)
        .await;
    assert_eq!(s["status"], "active");

    // Secret rotation: no body, a grace period, and the errors.
    let r = f
        .ok(post.clone(), &format!("{a}/rotate-secret"), None, 200)
        .await;
    assert!(r["client_secret"].is_string(), "{r}");
    let r = f
        .ok(
            post.clone(),
            &format!("{a}/rotate-secret"),
            Some(json!({"grace_period_secs": 60})),
            200,
        )
        .await;
    assert!(r["previous_secret_expires_at"].is_string(), "{r}");
    let got = f
        .send(
            post.clone(),
            &format!("{a}/rotate-secret"),
            Some(&token),
            Some(("application/json", b"null".to_vec())),
        )
        .await;
    assert!(f.expect(got, StatusCode::OK)["client_secret"].is_string());
    f.err(
        post.clone(),
        &format!("{a}/rotate-secret"),
        Some(json!({"grace": 60})),
        400,
    )
    .await;
    let v = f
        .err(
            post.clone(),
            &format!("{a}/rotate-secret"),
            Some(json!({"grace_period_secs": -1})),
            422,
        )
        .await;
    assert_eq!(v["field"], "grace_period_secs");
    let big = format!(
        "{{\"grace_period_secs\": 1, \"pad\": \"{}\"}}",
        "x".repeat(70_000)
    );
    let got = f
        .send(
            post.clone(),
            &format!("{a}/rotate-secret"),
            Some(&token),
            Some(("application/json", big.into_bytes())),
        )
        .await;
    f.expect(got, StatusCode::PAYLOAD_TOO_LARGE);
    f.err(post.clone(), &format!("{k}/rotate-secret"), None, 409)
        .await;

    // Card metadata.
    let card = f.ok(get.clone(), &format!("{k}/card"), None, 200).await;
    assert_eq!(card["skills"], json!([]), "{card}");
    let meta = json!({
        "version": "1.2.0",
        "url": "https://agents.example.com/signer",
        "skills": [{"id": "sign", "name": "Sign", "description": "signs", "tags": ["crypto"]}],
        "capabilities": {"streaming": true},
        "default_input_modes": ["application/json"],
    });
    f.ok(put.clone(), &format!("{k}/card"), Some(meta), 200)
        .await;
    let v = f
        .err(
            put.clone(),
            &format!("{k}/card"),
            Some(json!({"url": "ftp://x"})),
            422,
        )
        .await;
    assert_eq!(v["field"], "url");
    f.err(
        put.clone(),
        &format!("{k}/card"),
        Some(json!({"colour": 1})),
        400,
    )
    .await;

    // Revocation is final.
    let r = f.ok(post.clone(), &format!("{k}/revoke"), None, 200).await;
    assert_eq!(r["status"], "revoked");
    f.err(patch.clone(), &k, Some(json!({"name": "again"})), 409)
        .await;
    f.err(post.clone(), &format!("{k}/suspend"), None, 409)
        .await;
    f.err(post.clone(), &format!("{k}/reactivate"), None, 409)
        .await;
    f.err(
        put.clone(),
        &format!("{k}/card"),
        Some(json!({"version": "2"})),
        409,
    )
    .await;
    f.ok(delete.clone(), &u, None, 204).await;
    f.err(get.clone(), &u, None, 404).await;
    f.err(post.clone(), &format!("{u}/revoke"), None, 404).await;

    // Partners.
    let partners = format!("{o}/partners");
    let pkey = ClientKey::ed25519();
    let issuer = "https://partner.example.com/orgs/p";
    let partner = f
        .ok(
            post.clone(),
            &partners,
            Some(json!({"issuer": issuer, "jwks": pkey.jwks(), "name": "Partner"})),
            201,
        )
        .await;
    f.ok(
        post.clone(),
        &partners,
        Some(json!({"issuer": "https://second.example.com", "jwks": pkey.jwks()})),
        201,
    )
    .await;
    f.err(
        post.clone(),
        &partners,
        Some(json!({"issuer": issuer, "jwks": pkey.jwks()})),
        409,
    )
    .await;
    let v = f
        .err(
            post.clone(),
            &partners,
            Some(json!({"jwks": pkey.jwks()})),
            422,
        )
        .await;
    assert_eq!(v["field"], "issuer");
    let page = f
        .ok(get.clone(), &format!("{partners}?limit=1"), None, 200)
        .await;
    let next = page["next"].as_str().expect("cursor").to_owned();
    f.ok(
        get.clone(),
        &format!("{partners}?limit=1&after={next}"),
        None,
        200,
    )
    .await;
    f.err(
        get.clone(),
        &format!("{partners}?after=1&limit=-"),
        None,
        422,
    )
    .await;
    let p = format!("{partners}/{}", partner["id"].as_str().unwrap());
    f.ok(get.clone(), &p, None, 200).await;
    f.ok(
        patch.clone(),
        &p,
        Some(json!({
            "name": "Partner Inc", "allowed_scopes": ["read"],
            "claim_mapping": {"email": "partner_email"}, "max_assertion_lifetime_secs": 600,
        })),
        200,
    )
    .await;
    let v = f
        .err(
            patch.clone(),
            &p,
            Some(json!({"max_assertion_lifetime_secs": 0})),
            422,
        )
        .await;
    assert_eq!(v["field"], "max_assertion_lifetime_secs");
    let d = f.ok(post.clone(), &format!("{p}/disable"), None, 200).await;
    assert_eq!(d["enabled"], false);
    let e = f.ok(post.clone(), &format!("{p}/enable"), None, 200).await;
    assert_eq!(e["enabled"], true);
    f.ok(delete.clone(), &p, None, 204).await;
    f.err(get.clone(), &p, None, 404).await;
    f.err(post.clone(), &format!("{p}/enable"), None, 404).await;

    // People: users and invites.
    let users = format!("{o}/users");
    let owner = f
        .ok(
            post.clone(),
            &users,
            Some(json!({"email": "Owner@Example.com", "name": "Owner", "role": "owner", "password": "correct horse battery"})),
            201,
        )
        .await;
    let person = f
        .ok(
            post.clone(),
            &users,
            Some(json!({"email": "person@example.com", "name": "Person"})),
            201,
        )
        .await;
    f.err(
        post.clone(),
        &users,
        Some(json!({"email": "OWNER@example.com", "name": "Twin"})),
        409,
    )
    .await;
    let v = f
        .err(
            post.clone(),
            &users,
            Some(json!({"email": "x@example.com", "name": "x", "password": "short"})),
            422,
        )
        .await;
    assert_eq!(v["field"], "password");
    f.err(
        post.clone(),
        &users,
        Some(json!({"email": "x@example.com", "name": "x", "hash": 1})),
        400,
    )
    .await;
    f.ok(
        get.clone(),
        &format!("{users}?role=owner&status=active&email=owner@example.com"),
        None,
        200,
    )
    .await;
    f.err(get.clone(), &format!("{users}?role=scim"), None, 422)
        .await;
    let owner_path = format!("{users}/{}", owner["id"].as_str().unwrap());
    let person_path = format!("{users}/{}", person["id"].as_str().unwrap());
    f.ok(get.clone(), &owner_path, None, 200).await;
    f.ok(
        patch.clone(),
        &person_path,
        Some(json!({"role": "admin", "name": "P"})),
        200,
    )
    .await;
    let v = f
        .err(
            patch.clone(),
            &owner_path,
            Some(json!({"role": "member"})),
            409,
        )
        .await;
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("last active owner"),
        "{v}"
    );
    f.err(delete.clone(), &owner_path, None, 409).await;
    f.ok(delete.clone(), &person_path, None, 204).await;
    f.err(get.clone(), &person_path, None, 404).await;
    let invites = format!("{o}/invites");
    let inv = f
        .ok(
            post.clone(),
            &invites,
            Some(json!({"email": "invitee@example.com", "role": "member"})),
            201,
        )
        .await;
    assert!(inv["accept_url"].is_string(), "{inv}");
    f.err(
        post.clone(),
        &invites,
        Some(json!({"email": "owner@example.com", "role": "member"})),
        409,
    )
    .await;
    f.err(
        post.clone(),
        &invites,
        Some(json!({"email": "x@example.com", "role": "scim"})),
        422,
    )
    .await;
    f.ok(get.clone(), &invites, None, 200).await;
    let inv_path = format!("{invites}/{}", inv["id"].as_str().unwrap());
    f.ok(delete.clone(), &inv_path, None, 204).await;
    f.err(delete.clone(), &inv_path, None, 404).await;

    // A person's sessions: listed, one ended, all ended.
    let test_org = TestOrg {
        slug: slug.clone(),
        id: org["id"].as_str().unwrap().to_owned(),
        issuer: org["issuer"].as_str().unwrap().to_owned(),
        did: org["did"].as_str().unwrap().to_owned(),
    };
    let (uid, sid) = super::signin::session_fixture(&f.app, &test_org).await;
    let sessions = format!("{o}/users/{uid}/sessions");
    let list = f.ok(get.clone(), &sessions, None, 200).await;
    assert_eq!(list[0]["id"], sid, "{list}");
    f.ok(delete.clone(), &format!("{sessions}/{sid}"), None, 204)
        .await;
    f.err(delete.clone(), &format!("{sessions}/{sid}"), None, 404)
        .await;
    f.ok(delete.clone(), &sessions, None, 204).await;
    // A person's delegation grants: granted, listed, revoked.
    let (duid, gid) = super::delegation::grant_fixture(&f.app, &test_org).await;
    let grants = format!("{o}/users/{duid}/delegations");
    f.ok(get.clone(), &grants, None, 200).await;
    f.err(
        post.clone(),
        &grants,
        Some(json!({"agent_id": "nope", "scopes": ["read"]})),
        422,
    )
    .await;
    let agent2 = f.app.create_agent(&test_org, &["read"]).await;
    f.ok(
        post.clone(),
        &grants,
        Some(json!({"agent_id": agent2.id, "scopes": ["read"]})),
        201,
    )
    .await;
    f.ok(delete.clone(), &format!("{grants}/{gid}"), None, 204)
        .await;
    f.err(delete.clone(), &format!("{grants}/{gid}"), None, 404)
        .await;

    // Apps: registered (confidential and public), read, listed, changed, rotated, deleted.
    let clients = format!("{o}/clients");
    let web = f
        .ok(
            post.clone(),
            &clients,
            Some(json!({"name": "web", "scopes": ["openid"], "redirect_uris": ["https://app.example/cb"]})),
            201,
        )
        .await;
    assert!(web["client_secret"].is_string(), "{web}");
    f.ok(
        post.clone(),
        &clients,
        Some(
            json!({"name": "cli", "scopes": [], "token_endpoint_auth_method": "none",
                    "redirect_uris": ["http://127.0.0.1/cb"]}),
        ),
        201,
    )
    .await;
    f.err(
        post.clone(),
        &clients,
        Some(json!({"name": "bad", "scopes": [], "redirect_uris": ["http://app.example/cb"]})),
        422,
    )
    .await;
    f.ok(get.clone(), &clients, None, 200).await;
    let web_path = format!("{clients}/{}", web["id"].as_str().unwrap());
    f.ok(get.clone(), &web_path, None, 200).await;
    f.ok(
        patch.clone(),
        &web_path,
        Some(json!({"post_logout_redirect_uris": ["https://app.example/bye"]})),
        200,
    )
    .await;
    f.ok(
        post.clone(),
        &format!("{web_path}/rotate-secret"),
        None,
        200,
    )
    .await;
    f.ok(delete.clone(), &web_path, None, 204).await;
    f.err(get.clone(), &web_path, None, 404).await;
    // A user's links, and the ownership transfer (no SMTP here: the links come back once).
    let member = f
        .ok(
            post.clone(),
            &users,
            Some(json!({"email": "member2@example.com", "name": "M", "password": super::users::PASSWORD})),
            201,
        )
        .await;
    let member_id = member["id"].as_str().unwrap();
    let member_path = format!("{users}/{member_id}");
    let v = f
        .ok(
            post.clone(),
            &format!("{member_path}/verify-email"),
            None,
            201,
        )
        .await;
    assert!(v["url"].is_string(), "{v}");
    f.ok(
        post.clone(),
        &format!("{member_path}/password-reset"),
        None,
        201,
    )
    .await;
    let nobody = format!("{users}/{}", uuid::Uuid::new_v4());
    f.err(post.clone(), &format!("{nobody}/verify-email"), None, 404)
        .await;
    f.err(post.clone(), &format!("{nobody}/password-reset"), None, 404)
        .await;
    let transfer = format!("{o}/ownership-transfer");
    f.err(get.clone(), &transfer, None, 404).await;
    let owner_id = owner["id"].as_str().unwrap();
    f.err(
        post.clone(),
        &transfer,
        Some(json!({"user_id": owner_id})),
        422,
    )
    .await;
    let t = f
        .ok(
            post.clone(),
            &transfer,
            Some(json!({"user_id": member_id, "from_user_id": owner_id})),
            201,
        )
        .await;
    assert!(t["accept_url"].is_string(), "{t}");
    f.err(
        post.clone(),
        &transfer,
        Some(json!({"user_id": member_id})),
        409,
    )
    .await;
    f.ok(get.clone(), &transfer, None, 200).await;
    // Only the person named accepts through the API: the platform cannot, the person's own
    // admin-API token (through the sign-in pages) can.
    f.err(post.clone(), &format!("{transfer}/accept"), None, 403)
        .await;
    f.ok(delete.clone(), &transfer, None, 204).await;
    f.err(delete.clone(), &transfer, None, 404).await;
    f.ok(
        post.clone(),
        &transfer,
        Some(json!({"user_id": member_id, "from_user_id": owner_id})),
        201,
    )
    .await;
    let person = super::signin::admin_api_token(&f.app, &test_org, "member2@example.com").await;
    let got = f
        .send(
            post.clone(),
            &format!("{transfer}/accept"),
            Some(&person),
            None,
        )
        .await;
    let accepted = f.expect(got, StatusCode::OK);
    assert_eq!(accepted["state"], "accepted", "{accepted}");

    // Enrollment tokens: made, listed, read, an agent enrolled with one, its agents listed and
    // revoked, the token revoked.
    let tokens = format!("{o}/enrollment-tokens");
    let et = f
        .ok(
            post.clone(),
            &tokens,
            Some(json!({"name": "fleet-", "max_uses": 2, "expires_in_secs": 3600, "scopes": ["read"]})),
            201,
        )
        .await;
    assert!(et["token"].is_string(), "{et}");
    f.err(post.clone(), &tokens, Some(json!({"max_uses": 0})), 422)
        .await;
    f.err(post.clone(), &tokens, Some(json!({"uses": 1})), 400)
        .await;
    f.ok(get.clone(), &tokens, None, 200).await;
    let et_path = format!("{tokens}/{}", et["id"].as_str().unwrap());
    f.ok(get.clone(), &et_path, None, 200).await;
    f.err(get.clone(), &format!("{tokens}/nothex"), None, 404)
        .await;
    let issuer = format!("{}/orgs/{slug}", f.app.base);
    let enrolled = f
        .app
        .http
        .post(format!("{issuer}/oauth2/register"))
        .bearer_auth(et["token"].as_str().unwrap())
        .json(&json!({"client_name": "host", "jwks": ClientKey::es256().jwks()}))
        .send()
        .await
        .unwrap();
    assert_eq!(enrolled.status(), StatusCode::CREATED);
    let agents_of = f
        .ok(get.clone(), &format!("{et_path}/agents"), None, 200)
        .await;
    assert_eq!(
        agents_of["items"].as_array().unwrap().len(),
        1,
        "{agents_of}"
    );
    let r = f
        .ok(post.clone(), &format!("{et_path}/revoke-agents"), None, 200)
        .await;
    assert_eq!(r["revoked"], 1);
    f.ok(delete.clone(), &et_path, None, 204).await;
    f.err(
        delete.clone(),
        &format!("{tokens}/{}", "0".repeat(32)),
        None,
        404,
    )
    .await;

    // Deleting the organization.
    let gone = format!("/api/v1/orgs/{other}");
    f.ok(delete.clone(), &gone, None, 204).await;
    f.err(get.clone(), &gone, None, 404).await;
    f.err(delete.clone(), &gone, None, 404).await;

    // Every operation answered with success at least once, and every error status the admin
    // API can give today was seen (500 needs a failing database).
    let seen = &f.spec.seen;
    for (m, t) in f.spec.operations() {
        assert!(
            seen.iter()
                .any(|(sm, st, code)| *sm == m && *st == t && (200..300).contains(code)),
            "{m} {t} was not exercised with success"
        );
    }
    let codes: BTreeSet<u16> = seen.iter().map(|(_, _, c)| *c).collect();
    for want in [400, 401, 403, 404, 409, 413, 415, 422] {
        assert!(codes.contains(&want), "no {want} was checked: {codes:?}");
    }
}

/// A concrete path for a template: slugs and ids that exist nowhere.
fn instantiate(template: &str) -> String {
    template
        .replace("{org}", &random_slug())
        .replace("{id}", &uuid::Uuid::new_v4().to_string())
}

async fn every_documented_operation_is_routed(backend: Backend) {
    let app = spawn_app(backend).await;
    let spec = Spec::load(&app).await;
    let ops = spec.operations();
    assert!(ops.len() >= 25, "{} operations", ops.len());
    let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (m, t) in &ops {
        by_path.entry(t.clone()).or_default().push(m.clone());
        let op = &spec.doc["paths"][t][m];
        let public = op["security"] == json!([{}]);
        let path = instantiate(t);
        let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let resp = app
            .http
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let (st, v) = json_of(resp).await;
        if public {
            assert_eq!(st, StatusCode::OK, "{m} {t} (public): {v}");
        } else {
            // The handler's Admin extractor answered: not the router's 404 or 405 fallback.
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {t}: {v}");
            assert_eq!(v["error"], "unauthorized", "{m} {t}: {v}");
            assert_eq!(
                challenge.as_deref(),
                Some("Bearer realm=\"agentidp-admin\""),
                "{m} {t}"
            );
            assert!(
                op["responses"]["401"].is_object(),
                "{m} {t} answers 401 but does not declare it"
            );
        }
    }
    // The reverse on each documented path: a method the document does not list is not routed.
    for (t, methods) in &by_path {
        for m in METHODS.iter().filter(|m| !methods.iter().any(|x| x == *m)) {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            let resp = app
                .http
                .request(method, app.url(&instantiate(t)))
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            let (st, v) = json_of(resp).await;
            assert_eq!(
                st,
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} {t} is routed but not in the document: {v}"
            );
        }
    }
}

async fn document_describes_the_admin_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let spec = Spec::load(&app).await;
    let doc = &spec.doc;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    // What is served is what the code generates.
    assert_eq!(
        doc,
        &serde_json::to_value(agentidp::http::openapi::document()).unwrap()
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes[agentidp::http::openapi::BEARER],
        json!({"type": "http", "scheme": "bearer", "description": schemes[agentidp::http::openapi::BEARER]["description"]})
    );
    assert_eq!(
        doc["security"],
        json!([{ (agentidp::http::openapi::BEARER): [] }])
    );
    // Every schema is a valid 2020-12 schema (OpenAPI 3.1's dialect).
    for (name, s) in doc["components"]["schemas"].as_object().unwrap() {
        let mut s = s.clone();
        s["$schema"] = json!(DRAFT_2020_12);
        if let Err(e) = jsonschema::meta::validate(&s) {
            panic!("schema {name} is not valid 2020-12: {e}");
        }
    }
    for (m, t) in spec.operations() {
        let op = &doc["paths"][&t][&m];
        // Path parameters: exactly those of the template.
        let in_template: BTreeSet<String> = t
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(in_template, declared, "{m} {t}: path parameters");
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{m} {t}: tags"
        );
        // Every error answer is the admin error shape.
        for (code, r) in op["responses"].as_object().unwrap() {
            if code.starts_with('4') || code.starts_with('5') {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorResponse",
                    "{m} {t} {code}"
                );
            }
        }
        if op["security"] != json!([{}]) {
            for code in ["401", "500"] {
                assert!(op["responses"][code].is_object(), "{m} {t} lacks {code}");
            }
        }
        if t.starts_with("/api/v1/orgs/{org}") {
            assert!(op["responses"]["404"].is_object(), "{m} {t} lacks 404");
        }
        if op.get("requestBody").is_some() {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{m} {t}: request schema");
        }
    }
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// No admin route is registered outside `http::openapi::admin_routes`: the only string literals
/// in the source that start with `/api` are the `path = "..."` of `#[utoipa::path]` operations,
/// each of them in the document. (A plain `.route("/api/v1/...", ...)`, a `.nest("/api", ...)`
/// or a path kept in a constant all put such a literal elsewhere.)
#[test]
fn no_admin_route_outside_the_document() {
    let doc = serde_json::to_value(agentidp::http::openapi::document()).unwrap();
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut bad = Vec::new();
    let mut operations = BTreeSet::new();
    for (file, text) in &files {
        for (at, _) in text.match_indices("\"/api") {
            let line = line_of(text, at);
            let before = text[..at].trim_end();
            let literal: String = text[at + 1..].chars().take_while(|c| *c != '"').collect();
            if before.ends_with("path =") {
                operations.insert(literal.clone());
                if !documented.contains(literal.as_str()) {
                    bad.push(format!(
                        "{file}:{line}: operation {literal:?} is not registered in http::openapi::admin_routes"
                    ));
                }
            } else {
                bad.push(format!(
                    "{file}:{line}: {literal:?} outside a #[utoipa::path]: register admin routes with routes!(...) in http::openapi::admin_routes"
                ));
            }
        }
        for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
            for (at, _) in text.match_indices(call) {
                let arg: String = text[at + call.len()..]
                    .chars()
                    .take_while(|c| *c != ',' && *c != ')')
                    .collect();
                if arg.contains("api") {
                    bad.push(format!(
                        "{file}:{}: {call}{}...) registers an admin route outside the document",
                        line_of(text, at),
                        arg.trim()
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let operations: BTreeSet<&str> = operations.iter().map(String::as_str).collect();
    assert_eq!(operations, documented, "the scan saw every documented path");
}

on_all_backends!(
    responses_match_the_document,
    every_documented_operation_is_routed,
    document_describes_the_admin_api,
);
