//! Organization API keys and platform admin tokens (issue 11 point 2): created with a role never
//! above the creator's, shown once, listed with their last use, rotated with a grace period,
//! revoked at once (on every instance), useless on another organization's paths and from an
//! address outside their CIDRs; platform admin tokens made and revoked by the CLI.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;
use crate::{on_all_backends, on_postgres};

/// `method path` with `token`; status and JSON body (`Null` when there is none).
pub async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    json_of(req.send().await.unwrap()).await
}

/// Creates an API key of `org` with the platform token; its JSON (with `key`).
pub async fn api_key(app: &TestApp, org: &TestOrg, body: Value) -> Value {
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/api-keys", org.slug),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

async fn keys_are_principals_with_a_role(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let admin = api_key(&app, &org, json!({"name": "ci", "role": "admin"})).await;
    let secret = admin["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("aidp_k_"), "{admin}");
    assert_eq!(admin["role"], "admin");
    assert_eq!(admin["created_by"], "platform");

    // It reads and changes its own organization...
    let (st, v) = call(
        &app,
        &secret,
        Method::GET,
        &format!("/api/v1/orgs/{}", org.slug),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(
        &app,
        &secret,
        Method::POST,
        &format!("/api/v1/orgs/{}/agents", org.slug),
        Some(json!({"name": "made by a key", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // ...sees only its organization in the list...
    let (st, v) = call(&app, &secret, Method::GET, "/api/v1/orgs", None).await;
    assert_eq!(st, StatusCode::OK);
    let slugs: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, [org.slug.as_str()]);
    // ...another organization's objects are 404, exactly like missing ones...
    let (st, v) = call(
        &app,
        &secret,
        Method::GET,
        &format!("/api/v1/orgs/{}", other.slug),
        None,
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, _) = call(&app, &secret, Method::GET, "/api/v1/orgs/no-such-org", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // ...and it may not create organizations, nor keys above its role.
    let (st, _) = call(
        &app,
        &secret,
        Method::POST,
        "/api/v1/orgs",
        Some(json!({"slug": random_slug(), "name": "x"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = call(
        &app,
        &secret,
        Method::POST,
        &format!("/api/v1/orgs/{}/api-keys", org.slug),
        Some(json!({"name": "escalate", "role": "owner"})),
    )
    .await;
    assert_eq!(
        (st, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("role")),
        "{v}"
    );
    let (st, member) = call(
        &app,
        &secret,
        Method::POST,
        &format!("/api/v1/orgs/{}/api-keys", org.slug),
        Some(json!({"name": "reader", "role": "member"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{member}");
    assert_eq!(
        member["created_by"],
        format!("api_key:{}", admin["id"].as_str().unwrap())
    );
    let member_key = member["key"].as_str().unwrap();
    // A member reads, never changes.
    let (st, _) = call(
        &app,
        member_key,
        Method::GET,
        &format!("/api/v1/orgs/{}/agents", org.slug),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = call(
        &app,
        member_key,
        Method::POST,
        &format!("/api/v1/orgs/{}/agents", org.slug),
        Some(json!({"name": "no", "scopes": []})),
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{v}"
    );

    // The list never shows a key, and shows when and from where each was last used.
    let (st, list) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/api-keys", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(!list.to_string().contains("aidp_k_"), "{list}");
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == admin["id"])
        .unwrap()
        .clone();
    assert!(listed["last_used_at"].is_string(), "{listed}");
    assert_eq!(listed["last_used_ip"], "127.0.0.1");
    assert!(listed.get("key").is_none());

    // Bad input changes nothing.
    for (body, field) in [
        (json!({"name": "x", "role": "root"}), "role"),
        (
            json!({"name": "x", "role": "admin", "expires_at": "yesterday"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "role": "admin", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "role": "admin", "allowed_cidrs": ["10.0.0.0/33"]}),
            "allowed_cidrs",
        ),
        (json!({"name": "", "role": "admin"}), "name"),
    ] {
        let (st, v) = app
            .admin(
                Method::POST,
                &format!("/api/v1/orgs/{}/api-keys", org.slug),
                Some(body),
            )
            .await;
        assert_eq!(
            (st, v["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{v}"
        );
    }
    let (_, after) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/api-keys", org.slug),
            None,
        )
        .await;
    assert_eq!(after["items"].as_array().unwrap().len(), 2);
}

async fn rotation_grace_revocation_expiry_and_cidrs(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let k = api_key(&app, &org, json!({"name": "rot", "role": "admin"})).await;
    let id = k["id"].as_str().unwrap();
    let old = k["key"].as_str().unwrap().to_owned();
    let org_path = format!("/api/v1/orgs/{}", org.slug);
    let (st, rotated) = app
        .admin(
            Method::POST,
            &format!("{org_path}/api-keys/{id}/rotate"),
            Some(json!({"grace_period_secs": 300})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["id"], id);
    assert!(rotated["previous_key_valid_until"].is_string());
    // Both work during the grace period; the old one stops after it.
    for t in [&old, &new] {
        assert_eq!(
            call(&app, t, Method::GET, &org_path, None).await.0,
            StatusCode::OK
        );
    }
    // The old secret (it may have leaked: that is why it was rotated) may not manage keys: it
    // cannot rotate its key out from under the owner, nor mint another.
    let (st, v) = call(
        &app,
        &old,
        Method::POST,
        &format!("{org_path}/api-keys/{id}/rotate"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = call(
        &app,
        &old,
        Method::POST,
        &format!("{org_path}/api-keys"),
        Some(json!({"name": "twin", "role": "member"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        call(&app, &new, Method::GET, &org_path, None).await.0,
        StatusCode::OK
    );
    app.advance(Duration::from_secs(301));
    assert_eq!(
        call(&app, &old, Method::GET, &org_path, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, &new, Method::GET, &org_path, None).await.0,
        StatusCode::OK
    );
    // Rotation without a grace period: the old one stops at once.
    let (_, again) = app
        .admin(
            Method::POST,
            &format!("{org_path}/api-keys/{id}/rotate"),
            None,
        )
        .await;
    assert_eq!(
        call(&app, &new, Method::GET, &org_path, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let newest = again["key"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&app, &newest, Method::GET, &org_path, None).await.0,
        StatusCode::OK
    );
    // Revoked: refused at once; revoking again is 404.
    let (st, _) = app
        .admin(Method::DELETE, &format!("{org_path}/api-keys/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = call(&app, &newest, Method::GET, &org_path, None).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (st, _) = app
        .admin(Method::DELETE, &format!("{org_path}/api-keys/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Expiry.
    let at = agentidp::model::rfc3339(agentidp::model::Clock::now(app.clock.as_ref()) + 60);
    let exp = api_key(
        &app,
        &org,
        json!({"name": "short", "role": "member", "expires_at": at}),
    )
    .await;
    let exp_key = exp["key"].as_str().unwrap();
    assert_eq!(
        call(&app, exp_key, Method::GET, &org_path, None).await.0,
        StatusCode::OK
    );
    app.advance(Duration::from_secs(61));
    assert_eq!(
        call(&app, exp_key, Method::GET, &org_path, None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A key allowed only from 10.0.0.0/8 is refused from 127.0.0.1 (403) and changes nothing.
    let fenced = api_key(
        &app,
        &org,
        json!({"name": "fenced", "role": "owner", "allowed_cidrs": ["10.0.0.0/8"]}),
    )
    .await;
    assert_eq!(fenced["allowed_cidrs"], json!(["10.0.0.0/8"]));
    let (st, v) = call(
        &app,
        fenced["key"].as_str().unwrap(),
        Method::DELETE,
        &org_path,
        None,
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{v}"
    );
    assert_eq!(
        app.admin(Method::GET, &org_path, None).await.0,
        StatusCode::OK
    );
    let localhost = api_key(
        &app,
        &org,
        json!({"name": "here", "role": "member", "allowed_cidrs": ["127.0.0.1"]}),
    )
    .await;
    assert_eq!(
        call(
            &app,
            localhost["key"].as_str().unwrap(),
            Method::GET,
            &org_path,
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    // A well-formed key that does not exist, and a tampered one.
    let forged = format!("aidp_k_{}_AAAA", uuid::Uuid::new_v4().simple());
    assert_eq!(
        call(&app, &forged, Method::GET, &org_path, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let mut tampered = localhost["key"].as_str().unwrap().to_owned();
    tampered.pop();
    tampered.push('x');
    assert_eq!(
        call(&app, &tampered, Method::GET, &org_path, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// A revocation made on one instance holds on another at its next request (both read the key's
/// row; PostgreSQL only).
async fn revoked_on_one_instance_refused_by_the_other(backend: Backend) {
    let (a, b) = two_instances(backend).await;
    let org = a.create_org().await;
    let k = api_key(&a, &org, json!({"name": "shared", "role": "admin"})).await;
    let key = k["key"].as_str().unwrap();
    let org_path = format!("/api/v1/orgs/{}", org.slug);
    assert_eq!(
        call(&b, key, Method::GET, &org_path, None).await.0,
        StatusCode::OK
    );
    let (st, _) = a
        .admin(
            Method::DELETE,
            &format!("{org_path}/api-keys/{}", k["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&b, key, Method::GET, &org_path, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// Platform admin tokens from the CLI: created (shown once), used, listed, revoked (refused at
/// once by the running server); the bootstrap token retired without a restart, and not
/// regenerated at the next start.
async fn admin_tokens_from_the_cli(backend: Backend) {
    use agentidp::config::AdminTokenCommand as Cmd;
    let (settings, cleanup) = test_settings(&backend).await;
    let app = spawn_with_settings(settings.clone(), Some(cleanup)).await;
    let out = agentidp::app::admin_token_cli(&Cmd::Create {
        name: "ops laptop".into(),
        settings: settings.clone(),
    })
    .await
    .unwrap();
    let token = out.lines().last().unwrap().trim().to_owned();
    assert!(token.starts_with("aidp_p_"), "{out}");
    let (st, v) = call(
        &app,
        &token,
        Method::POST,
        "/api/v1/orgs",
        Some(json!({"slug": random_slug(), "name": "By token"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let list = agentidp::app::admin_token_cli(&Cmd::List {
        settings: settings.clone(),
    })
    .await
    .unwrap();
    assert!(
        list.contains("ops laptop") && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(&token), "{list}");
    let id = token.strip_prefix("aidp_p_").unwrap()[..32].to_owned();
    agentidp::app::admin_token_cli(&Cmd::Revoke {
        id: id.clone(),
        settings: settings.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        call(&app, &token, Method::GET, "/api/v1/orgs", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        agentidp::app::admin_token_cli(&Cmd::Revoke {
            id,
            settings: settings.clone()
        })
        .await
        .is_err()
    );
    // The bootstrap token retires without a restart.
    assert_eq!(
        app.admin(Method::GET, "/api/v1/orgs", None).await.0,
        StatusCode::OK
    );
    agentidp::app::admin_token_cli(&Cmd::Revoke {
        id: "bootstrap".into(),
        settings: settings.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        app.admin(Method::GET, "/api/v1/orgs", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let list = agentidp::app::admin_token_cli(&Cmd::List {
        settings: settings.clone(),
    })
    .await
    .unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("bootstrap") && l.ends_with("retired")),
        "{list}"
    );
    // Started again with the same AGENTIDP_BOOTSTRAP_TOKEN (every instance of a fleet has it):
    // it stays retired, there and here.
    let mut same = settings.clone();
    same.bind = "127.0.0.1:0".parse().unwrap();
    same.public_url = Some(app.base.clone());
    let second = spawn_with_settings(same, None).await;
    assert_eq!(direct(&second, &app.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.admin(Method::GET, "/api/v1/orgs", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Started again without AGENTIDP_BOOTSTRAP_TOKEN: no new bootstrap token is made.
    let mut again = settings.clone();
    again.bootstrap_token = None;
    again.bind = "127.0.0.1:0".parse().unwrap();
    again.public_url = Some(app.base.clone());
    let startup = agentidp::app::App::build(again)
        .await
        .expect("a second start");
    assert!(startup.new_bootstrap_token.is_none());
    drop(startup);
    // A different token is the operator's explicit choice: it works, and replaces the old one
    // also in instances that started with it.
    let mut fresh = settings.clone();
    fresh.bind = "127.0.0.1:0".parse().unwrap();
    fresh.public_url = Some(app.base.clone());
    fresh.bootstrap_token = Some(agentidp::model::Secret::new(
        "a-new-bootstrap-token-0123456789",
    ));
    let third = spawn_with_settings(fresh, None).await;
    let list = agentidp::app::admin_token_cli(&Cmd::List {
        settings: settings.clone(),
    })
    .await
    .unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("bootstrap") && l.ends_with("active")),
        "{list}"
    );
    assert_eq!(
        direct(&third, "a-new-bootstrap-token-0123456789").await,
        StatusCode::OK
    );
    // The first instance still refuses its (retired) token.
    assert_eq!(direct(&app, &app.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(direct(&second, &app.token).await, StatusCode::UNAUTHORIZED);
}

/// `GET /api/v1/orgs` at this very instance (its socket address: instances sharing a public URL
/// share `base`).
async fn direct(app: &TestApp, token: &str) -> StatusCode {
    app.http
        .get(format!("http://{}/api/v1/orgs", app.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// The organization's policy `admin_allowed_cidrs` fences its own principals out from other
/// addresses (403, nothing changes); the platform admin stays outside the fence and can lift it.
async fn the_policy_fences_the_admin_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let owner = api_key(&app, &org, json!({"name": "o", "role": "owner"})).await;
    let key = owner["key"].as_str().unwrap();
    let org_path = format!("/api/v1/orgs/{}", org.slug);
    let (st, v) = call(
        &app,
        key,
        Method::PUT,
        &format!("{org_path}/policy"),
        Some(json!({"admin_allowed_cidrs": ["10.0.0.0/8"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(&app, key, Method::GET, &org_path, None).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{v}"
    );
    let (st, _) = call(
        &app,
        key,
        Method::POST,
        &format!("{org_path}/agents"),
        Some(json!({"name": "no", "scopes": []})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, agents) = app
        .admin(Method::GET, &format!("{org_path}/agents"), None)
        .await;
    assert_eq!(agents["items"].as_array().unwrap().len(), 0);
    // The platform admin lifts the fence.
    let (st, _) = app
        .admin(Method::PUT, &format!("{org_path}/policy"), Some(json!({})))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        call(&app, key, Method::GET, &org_path, None).await.0,
        StatusCode::OK
    );
}

/// A key never makes or takes over a key that reaches further than itself (review findings):
/// the keys it creates inherit its CIDRs and expiry, may narrow them, never widen them; it may
/// not rotate a less restricted key; an admin may not change where the admin API may be used
/// from (the owners' decision); a `scim` key lists no organization.
async fn keys_never_reach_further_than_their_maker(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let org_path = format!("/api/v1/orgs/{}", org.slug);
    let now = agentidp::model::Clock::now(app.clock.as_ref());
    let until = agentidp::model::rfc3339(now + 3600);
    let fenced = api_key(
        &app,
        &org,
        json!({"name": "ci", "role": "admin", "allowed_cidrs": ["127.0.0.0/8"], "expires_at": until}),
    )
    .await;
    let fk = fenced["key"].as_str().unwrap();
    let (st, child) = call(
        &app,
        fk,
        Method::POST,
        &format!("{org_path}/api-keys"),
        Some(json!({"name": "child", "role": "member"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{child}");
    assert_eq!(child["allowed_cidrs"], json!(["127.0.0.0/8"]));
    assert_eq!(child["expires_at"], until.as_str());
    let later = agentidp::model::rfc3339(now + 7200);
    for (body, field) in [
        (
            json!({"name": "wide", "role": "member", "allowed_cidrs": ["0.0.0.0/0"]}),
            "allowed_cidrs",
        ),
        (
            json!({"name": "long", "role": "member", "expires_at": later}),
            "expires_at",
        ),
    ] {
        let (st, v) = call(
            &app,
            fk,
            Method::POST,
            &format!("{org_path}/api-keys"),
            Some(body),
        )
        .await;
        assert_eq!(
            (st, v["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{v}"
        );
    }
    let (st, narrow) = call(
        &app,
        fk,
        Method::POST,
        &format!("{org_path}/api-keys"),
        Some(json!({"name": "narrow", "role": "member", "allowed_cidrs": ["127.0.0.1"]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{narrow}");
    // An unrestricted admin key: the fenced key may not rotate (take over) it.
    let free = api_key(&app, &org, json!({"name": "free", "role": "admin"})).await;
    let free_id = free["id"].as_str().unwrap();
    let (st, _) = call(
        &app,
        fk,
        Method::POST,
        &format!("{org_path}/api-keys/{free_id}/rotate"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The fence of the admin API is the owners' decision.
    let (st, _) = call(
        &app,
        free["key"].as_str().unwrap(),
        Method::PUT,
        &format!("{org_path}/policy"),
        Some(json!({"admin_allowed_cidrs": ["192.0.2.1/32"]})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, policy) = app
        .admin(Method::GET, &format!("{org_path}/policy"), None)
        .await;
    assert!(policy["admin_allowed_cidrs"].is_null(), "{policy}");
    // A scim key sees no organization.
    let scim = api_key(&app, &org, json!({"name": "scim", "role": "scim"})).await;
    let (st, v) = call(
        &app,
        scim["key"].as_str().unwrap(),
        Method::GET,
        "/api/v1/orgs",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["items"], json!([]), "{v}");
}

/// Deleting an organization revokes its API keys: the owner's key that deleted it is refused
/// (401) from then on, like the organization's other keys.
async fn deleting_the_organization_revokes_its_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let owner = api_key(&app, &org, json!({"name": "owner", "role": "owner"})).await;
    let member = api_key(&app, &org, json!({"name": "reader", "role": "member"})).await;
    let owner = owner["key"].as_str().unwrap();
    let member = member["key"].as_str().unwrap();
    let (st, v) = call(&app, member, Method::GET, "/api/v1/orgs", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(
        &app,
        owner,
        Method::DELETE,
        &format!("/api/v1/orgs/{}", org.slug),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    for key in [owner, member] {
        let (st, v) = call(&app, key, Method::GET, "/api/v1/orgs", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    }
}

on_all_backends!(
    deleting_the_organization_revokes_its_keys,
    keys_never_reach_further_than_their_maker,
    the_policy_fences_the_admin_api,
    keys_are_principals_with_a_role,
    rotation_grace_revocation_expiry_and_cidrs,
    admin_tokens_from_the_cli,
);
on_postgres!(revoked_on_one_instance_refused_by_the_other);
