//! Agent enrollment (issue 12 point 8): an admin makes an enrollment token; agent runtimes
//! register at `{iss}/oauth2/register` with it as the RFC 7591 initial access token and their
//! own public key, then authenticate with `private_key_jwt`; the token's uses, expiry and
//! revocation bound registrations, and the agents it enrolled are listed and revoked together.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::private_key_jwt::{ClientKey, assertion_claims, token_with_assertion};
use crate::registration::{register, register_agent};
use crate::support::*;

/// Makes an enrollment token; returns the answer (with `token`).
pub async fn enrollment_token(app: &TestApp, org: &TestOrg, body: Value) -> Value {
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/enrollment-tokens", org.slug),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(v["token"].as_str().unwrap().starts_with("aidp_e_"), "{v}");
    v
}

/// A client-credentials token for `client_id` signed by `key`.
async fn key_token(app: &TestApp, org: &TestOrg, client_id: &str, key: &ClientKey) -> Value {
    let a = key.sign(&assertion_claims(client_id, &org.issuer));
    let (st, v) = json_of(token_with_assertion(app, org, &a).await).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn an_enrolled_agent_gets_tokens_with_its_own_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let e = enrollment_token(
        &app,
        &org,
        json!({"name": "fleet-", "max_uses": 3, "scopes": ["read", "write"]}),
    )
    .await;
    assert_eq!(e["uses"], 0);
    assert_eq!(e["max_uses"], 3);
    assert_eq!(e["name"], "fleet-");
    assert_eq!(e["revoked_at"], Value::Null);
    let token = e["token"].as_str().unwrap();
    let key = ClientKey::es256();
    let agent = register_agent(
        &app,
        &org,
        token,
        json!({"client_name": "host-1", "jwks": key.jwks(), "scope": "read admin",
               "logo_uri": "https://ignored.example/logo.png", "x-unknown": {"a": 1}}),
    )
    .await;
    let client_id = agent["client_id"].as_str().unwrap();
    assert!(agent.get("client_secret").is_none(), "{agent}");
    assert!(agent.get("client_secret_expires_at").is_none(), "{agent}");
    assert_eq!(agent["client_name"], "fleet-host-1");
    assert_eq!(agent["scope"], "read", "requested ∩ ceiling: {agent}");
    assert_eq!(agent["token_endpoint_auth_method"], "private_key_jwt");
    assert!(
        agent.get("logo_uri").is_none(),
        "unknown metadata is ignored"
    );
    assert!(agent["client_id_issued_at"].is_i64());
    assert_eq!(
        agent["registration_client_uri"],
        format!("{}/oauth2/register/{client_id}", org.issuer)
    );
    assert!(
        agent["did"].as_str().unwrap().ends_with(client_id),
        "{agent}"
    );

    // The agent authenticates with its key (RFC 7523) and gets its scopes.
    let t = key_token(&app, &org, client_id, &key).await;
    let claims = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], client_id);
    assert_eq!(t["scope"], "read");

    // Without `scope` the whole ceiling; the use is counted; the admin sees the agents.
    let key2 = ClientKey::ed25519();
    let second = register_agent(&app, &org, token, json!({"jwks": key2.jwks()})).await;
    assert_eq!(second["scope"], "read write");
    assert!(
        second["client_name"]
            .as_str()
            .unwrap()
            .starts_with("fleet-agent-")
    );
    let path = format!(
        "/api/v1/orgs/{}/enrollment-tokens/{}",
        org.slug,
        e["id"].as_str().unwrap()
    );
    let (st, got) = app.admin(Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["uses"], 2);
    assert!(got.get("token").is_none(), "shown once: {got}");
    let (st, list) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/enrollment-tokens", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("token").is_none());
    let (st, enrolled) = app
        .admin(Method::GET, &format!("{path}/agents"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{enrolled}");
    let ids: Vec<&str> = enrolled["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&client_id));
    assert_eq!(enrolled["items"][0]["enrollment_id"], e["id"]);
    assert_eq!(
        enrolled["items"][0]["name"].as_str().unwrap().get(..6),
        Some("fleet-")
    );
    // An agent made by an admin is not among them.
    app.create_agent(&org, &["read"]).await;
    let (_, enrolled) = app
        .admin(Method::GET, &format!("{path}/agents"), None)
        .await;
    assert_eq!(enrolled["items"].as_array().unwrap().len(), 2);
}

/// Asserts an RFC 6750 §3.1 `invalid_token` refusal.
fn assert_invalid_token(st: StatusCode, v: &Value, challenge: Option<&str>) {
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "invalid_token", "{v}");
    let c = challenge.expect("a WWW-Authenticate challenge");
    assert!(
        c.starts_with("Bearer ") && c.contains("error=\"invalid_token\""),
        "{c}"
    );
}

async fn used_up_expired_and_revoked_tokens_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let body = || json!({"jwks": ClientKey::es256().jwks()});

    let once = enrollment_token(&app, &org, json!({})).await;
    assert_eq!(once["max_uses"], 1, "the default");
    let once = once["token"].as_str().unwrap();
    register_agent(&app, &org, once, body()).await;
    let (st, v, c) = register(&app, &org, Some(once), &body()).await;
    assert_invalid_token(st, &v, c.as_deref());
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("no uses left"),
        "{v}"
    );

    let short = enrollment_token(&app, &org, json!({"expires_in_secs": 60, "max_uses": 5})).await;
    let short = short["token"].as_str().unwrap();
    app.advance(std::time::Duration::from_secs(61));
    let (st, v, c) = register(&app, &org, Some(short), &body()).await;
    assert_invalid_token(st, &v, c.as_deref());
    assert!(
        v["error_description"].as_str().unwrap().contains("expired"),
        "{v}"
    );

    let revoked = enrollment_token(&app, &org, json!({"max_uses": 5})).await;
    let path = format!(
        "/api/v1/orgs/{}/enrollment-tokens/{}",
        org.slug,
        revoked["id"].as_str().unwrap()
    );
    let revoked = revoked["token"].as_str().unwrap();
    register_agent(&app, &org, revoked, body()).await;
    let (st, _) = app.admin(Method::DELETE, &path, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v, c) = register(&app, &org, Some(revoked), &body()).await;
    assert_invalid_token(st, &v, c.as_deref());
    let (_, got) = app.admin(Method::GET, &path, None).await;
    assert!(got["revoked_at"].is_string(), "{got}");
    assert_eq!(got["uses"], 1);

    // A wrong secret of a real token's id, a made-up token, another scheme.
    let live = enrollment_token(&app, &org, json!({"max_uses": 5})).await;
    let live = live["token"].as_str().unwrap();
    let last = if live.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &live[..live.len() - 1]);
    for bad in [forged.as_str(), "aidp_e_nothing", "garbage"] {
        let (st, v, c) = register(&app, &org, Some(bad), &body()).await;
        assert_invalid_token(st, &v, c.as_deref());
    }
    let resp = app
        .http
        .post(format!("{}/oauth2/register", org.issuer))
        .basic_auth("a", Some("b"))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // An enrolled agent never gets a secret and must bring its key.
    for (md, why) in [
        (
            json!({"token_endpoint_auth_method": "client_secret_basic"}),
            "secret method",
        ),
        (json!({"client_name": "no key"}), "no key"),
        (
            json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            "a symmetric key",
        ),
        (
            json!({"jwks": ClientKey::es256().jwks(), "redirect_uris": ["https://a.example/cb"]}),
            "code flow",
        ),
        (
            json!({"jwks": ClientKey::es256().jwks(), "grant_types": ["refresh_token"]}),
            "refresh grant",
        ),
        (
            json!({"jwks": ClientKey::es256().jwks(), "scope": "bad\"scope"}),
            "bad scope",
        ),
    ] {
        let (st, v, _) = register(&app, &org, Some(live), &md).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{why}: {v}");
        assert_eq!(v["error"], "invalid_client_metadata", "{why}: {v}");
    }
    // Refusals used nothing.
    let (_, list) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/enrollment-tokens", org.slug),
            None,
        )
        .await;
    let live_row = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["max_uses"] == 5 && t["revoked_at"].is_null() && t["uses"] == 0);
    assert!(live_row.is_some(), "{list}");
}

async fn another_organizations_token_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_org().await;
    let b = app.create_org().await;
    let t = enrollment_token(&app, &a, json!({"max_uses": 2})).await;
    let (st, v, c) = register(
        &app,
        &b,
        Some(t["token"].as_str().unwrap()),
        &json!({"jwks": ClientKey::es256().jwks()}),
    )
    .await;
    assert_invalid_token(st, &v, c.as_deref());
    // And its admin view is another organization's object: 404.
    let (st, _) = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/orgs/{}/enrollment-tokens/{}",
                b.slug,
                t["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn revoking_the_enrolled_agents_ends_their_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let rs = app.create_agent(&org, &[]).await;
    let e = enrollment_token(&app, &org, json!({"max_uses": 5, "scopes": ["read"]})).await;
    let token = e["token"].as_str().unwrap();
    let mut access = Vec::new();
    for _ in 0..2 {
        let key = ClientKey::es256();
        let a = register_agent(&app, &org, token, json!({"jwks": key.jwks()})).await;
        let t = key_token(&app, &org, a["client_id"].as_str().unwrap(), &key).await;
        let at = t["access_token"].as_str().unwrap().to_owned();
        assert_eq!(app.introspect(&org, &rs, &at).await["active"], true);
        access.push(at);
    }
    let path = format!(
        "/api/v1/orgs/{}/enrollment-tokens/{}",
        org.slug,
        e["id"].as_str().unwrap()
    );
    let (st, v) = app
        .admin(Method::POST, &format!("{path}/revoke-agents"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["revoked"], 2);
    for at in &access {
        assert_eq!(app.introspect(&org, &rs, at).await["active"], false);
    }
    let (_, enrolled) = app
        .admin(Method::GET, &format!("{path}/agents"), None)
        .await;
    for a in enrolled["items"].as_array().unwrap() {
        assert_eq!(a["status"], "revoked", "{a}");
    }
    // The admin's own agent is untouched; a second call revokes nothing more.
    assert_eq!(app.token(&org, &rs, &[]).await["token_type"], "Bearer");
    let (_, v) = app
        .admin(Method::POST, &format!("{path}/revoke-agents"), None)
        .await;
    assert_eq!(v["revoked"], 0);
}

/// Concurrent registrations cannot both take the last use: exactly `max_uses` succeed.
async fn the_last_use_is_taken_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let e = enrollment_token(&app, &org, json!({"max_uses": 3})).await;
    let token = e["token"].as_str().unwrap().to_owned();
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (app, org, token) = (app.clone(), org.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            register(
                &app,
                &org,
                Some(&token),
                &json!({"jwks": ClientKey::es256().jwks()}),
            )
            .await
            .0
        }));
    }
    let mut created = 0;
    for t in tasks {
        let st = t.await.unwrap();
        assert!(
            st == StatusCode::CREATED || st == StatusCode::UNAUTHORIZED,
            "{st}"
        );
        created += usize::from(st == StatusCode::CREATED);
    }
    assert_eq!(created, 3);
    let (_, got) = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/orgs/{}/enrollment-tokens/{}",
                org.slug,
                e["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(got["uses"], 3);
}

async fn the_organization_policy_still_applies(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let e = enrollment_token(&app, &org, json!({"max_uses": 10, "scopes": ["read"]})).await;
    let token = e["token"].as_str().unwrap();
    let policy = format!("/api/v1/orgs/{}/policy", org.slug);
    let (st, v) = app
        .admin(
            Method::PUT,
            &policy,
            Some(json!({"allowed_auth_methods": ["client_secret_basic"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v, _) = register(
        &app,
        &org,
        Some(token),
        &json!({"jwks": ClientKey::es256().jwks()}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_client_metadata");
    let (st, _) = app
        .admin(Method::PUT, &policy, Some(json!({"max_agents": 0})))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v, _) = register(
        &app,
        &org,
        Some(token),
        &json!({"jwks": ClientKey::es256().jwks()}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("max_agents"),
        "{v}"
    );
    // Refusals took no use.
    let (_, got) = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/orgs/{}/enrollment-tokens/{}",
                org.slug,
                e["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(got["uses"], 0);
    // The ceiling must fit the policy when the token is made.
    let (st, _) = app
        .admin(
            Method::PUT,
            &policy,
            Some(json!({"allowed_scopes": ["read"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/enrollment-tokens", org.slug),
            Some(json!({"scopes": ["write"]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "scopes");
    for (body, field) in [
        (json!({"max_uses": 0}), "max_uses"),
        (json!({"max_uses": 10001}), "max_uses"),
        (json!({"expires_in_secs": 2_592_001}), "expires_in_secs"),
        (json!({"expires_in_secs": 1}), "expires_in_secs"),
        (json!({"name": "a\u{202e}b"}), "name"),
    ] {
        let (st, v) = app
            .admin(
                Method::POST,
                &format!("/api/v1/orgs/{}/enrollment-tokens", org.slug),
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], field, "{v}");
    }
}

on_all_backends!(
    an_enrolled_agent_gets_tokens_with_its_own_key,
    used_up_expired_and_revoked_tokens_are_refused,
    another_organizations_token_is_refused,
    revoking_the_enrolled_agents_ends_their_tokens,
    the_last_use_is_taken_once,
    the_organization_policy_still_applies,
);
