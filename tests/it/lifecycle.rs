//! Agent lifecycle: suspension, revocation (final), deletion, secret rotation with and without a
//! grace period, RFC 7009 token revocation, listing, updates and per-agent token lifetimes.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::support::*;

fn agent_path(org: &TestOrg, agent: &TestAgent) -> String {
    format!("/api/v1/orgs/{}/agents/{}", org.slug, agent.id)
}

fn access_token(t: &Value) -> String {
    t["access_token"].as_str().unwrap().to_owned()
}

/// Asserts the token is good: active at introspection (asked by `rs`) and at `/agent-info`.
async fn assert_active(app: &TestApp, org: &TestOrg, rs: &TestAgent, token: &str) {
    let i = app.introspect(org, rs, token).await;
    assert_eq!(i["active"], true, "{i}");
    let (st, v, _) = app.agent_info(org, token).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// Asserts the token is no longer good: `{"active": false}` and a 401 `invalid_token` challenge.
async fn assert_inactive(app: &TestApp, org: &TestOrg, rs: &TestAgent, token: &str) {
    assert_eq!(
        app.introspect(org, rs, token).await,
        json!({"active": false})
    );
    let (st, v, challenge) = app.agent_info(org, token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let challenge = challenge.expect("WWW-Authenticate");
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
}

async fn assert_token_refused(app: &TestApp, org: &TestOrg, agent: &TestAgent) {
    let resp = app.token_response(org, agent, &[]).await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

async fn suspension_stops_the_agent_until_reactivated(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let rs = app.create_agent(&org, &[]).await;
    let agent = app.create_agent(&org, &["read"]).await;
    let before = access_token(&app.token(&org, &agent, &[]).await);
    assert_active(&app, &org, &rs, &before).await;

    let (st, v) = app
        .admin(
            Method::POST,
            &format!("{}/suspend", agent_path(&org, &agent)),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "suspended");
    assert_token_refused(&app, &org, &agent).await;
    assert_inactive(&app, &org, &rs, &before).await;
    let (_, v) = app
        .admin(Method::GET, &agent_path(&org, &agent), None)
        .await;
    assert_eq!(v["status"], "suspended");

    let (st, v) = app
        .admin(
            Method::POST,
            &format!("{}/reactivate", agent_path(&org, &agent)),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active");
    let after = access_token(&app.token(&org, &agent, &[]).await);
    assert_active(&app, &org, &rs, &after).await;
    // A token from before the suspension never comes back.
    assert_inactive(&app, &org, &rs, &before).await;
}

async fn revocation_is_final(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let rs = app.create_agent(&org, &[]).await;
    let agent = app.create_agent(&org, &["read"]).await;
    let before = access_token(&app.token(&org, &agent, &[]).await);
    let path = agent_path(&org, &agent);

    let (st, v) = app
        .admin(Method::POST, &format!("{path}/revoke"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked");
    assert_inactive(&app, &org, &rs, &before).await;
    assert_token_refused(&app, &org, &agent).await;

    for (method, suffix, body) in [
        (Method::POST, "/reactivate", None),
        (Method::POST, "/suspend", None),
        (Method::POST, "/rotate-secret", None),
        (Method::PATCH, "", Some(json!({"name": "back again"}))),
    ] {
        let (st, v) = app
            .admin(method.clone(), &format!("{path}{suffix}"), body)
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{method} {suffix}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (st, v) = app.admin(Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["name"], "test agent");
    assert_token_refused(&app, &org, &agent).await;
    assert_inactive(&app, &org, &rs, &before).await;
}

async fn deleted_agent_is_gone(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let rs = app.create_agent(&org, &[]).await;
    let agent = app.create_agent(&org, &["read"]).await;
    let before = access_token(&app.token(&org, &agent, &[]).await);
    let path = agent_path(&org, &agent);

    let (st, _) = app.admin(Method::DELETE, &path, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = app.admin(Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_token_refused(&app, &org, &agent).await;
    assert_inactive(&app, &org, &rs, &before).await;
    let (st, _) = app.admin(Method::DELETE, &path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, list) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/agents", org.slug),
            None,
        )
        .await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![rs.id.as_str()], "{list}");
}

async fn rotate_secret_without_grace_cuts_off_the_old_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let rs = app.create_agent(&org, &[]).await;
    let agent = app.create_agent(&org, &["read"]).await;
    let before = access_token(&app.token(&org, &agent, &[]).await);
    let path = agent_path(&org, &agent);

    let (st, v) = app
        .admin(Method::POST, &format!("{path}/rotate-secret"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new_secret = v["client_secret"]
        .as_str()
        .expect("the new secret, once")
        .to_owned();
    assert_ne!(Some(new_secret.as_str()), agent.secret.as_deref());
    assert!(v.get("previous_secret_expires_at").is_none(), "{v}");

    assert_token_refused(&app, &org, &agent).await;
    let rotated = TestAgent {
        secret: Some(new_secret.clone()),
        ..agent.clone()
    };
    let after = access_token(&app.token(&org, &rotated, &[]).await);
    assert_active(&app, &org, &rs, &after).await;
    // Tokens issued under the old secret end with it.
    assert_inactive(&app, &org, &rs, &before).await;

    let resp = app
        .http
        .get(app.url(&path))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(!text.contains("\"client_secret\""), "{text}");
    assert!(!text.contains(&new_secret));
    assert!(!text.contains(agent.secret.as_deref().unwrap()));
}

async fn rotate_secret_with_grace_keeps_both_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let rs = app.create_agent(&org, &[]).await;
    let agent = app.create_agent(&org, &["read"]).await;
    let before = access_token(&app.token(&org, &agent, &[]).await);
    let path = agent_path(&org, &agent);

    // Bad bodies change nothing.
    for (body, status, field) in [
        (
            json!({"grace_period_secs": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("grace_period_secs"),
        ),
        (
            json!({"grace_period_secs": 604_801}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("grace_period_secs"),
        ),
        (
            json!({"grace_period_secs": 60, "also": 1}),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            json!({"grace_period_secs": "60"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("grace_period_secs"),
        ),
    ] {
        let (st, v) = app
            .admin(
                Method::POST,
                &format!("{path}/rotate-secret"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(st, status, "{body}: {v}");
        if let Some(f) = field {
            assert_eq!(v["field"], f, "{v}");
        }
        assert!(v.get("client_secret").is_none(), "{v}");
    }
    app.token(&org, &agent, &[]).await;

    let (st, v) = app
        .admin(
            Method::POST,
            &format!("{path}/rotate-secret"),
            Some(json!({"grace_period_secs": 60})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new_secret = v["client_secret"]
        .as_str()
        .expect("the new secret, once")
        .to_owned();
    assert_ne!(Some(new_secret.as_str()), agent.secret.as_deref());
    assert!(v["previous_secret_expires_at"].is_string(), "{v}");

    // Both secrets work during the grace period, and earlier tokens stay good.
    let old = access_token(&app.token(&org, &agent, &[]).await);
    let rotated = TestAgent {
        secret: Some(new_secret.clone()),
        ..agent.clone()
    };
    let new = access_token(&app.token(&org, &rotated, &[]).await);
    for t in [&before, &old, &new] {
        assert_active(&app, &org, &rs, t).await;
    }

    // The secret is shown once: never by GET, never in the list.
    for url in [path.clone(), format!("/api/v1/orgs/{}/agents", org.slug)] {
        let resp = app
            .http
            .get(app.url(&url))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.unwrap();
        assert!(!text.contains("\"client_secret\""), "{text}");
        assert!(!text.contains(&new_secret), "{url}");
        assert!(!text.contains(agent.secret.as_deref().unwrap()), "{url}");
    }
}

async fn revoke(
    app: &TestApp,
    org: &TestOrg,
    caller: TestAgent,
    token: String,
    hint: Option<&'static str>,
) -> reqwest::Response {
    let mut form = vec![("token", token.as_str())];
    if let Some(h) = hint {
        form.push(("token_type_hint", h));
    }
    app.post_form(
        org,
        "/oauth2/revoke",
        Some((&caller.client_id, caller.secret.as_deref().unwrap())),
        &form,
    )
    .await
}

async fn rfc7009_only_the_owner_revokes_its_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let other_org = app.create_org().await;
    let rs = app.create_agent(&org, &[]).await;
    let agent = app.create_agent(&org, &["read"]).await;
    let other = app.create_agent(&org, &["read"]).await;
    let foreign = app.create_agent(&other_org, &["read"]).await;
    let revoke = |caller: &TestAgent, token: String, hint: Option<&'static str>| {
        revoke(&app, &org, caller.clone(), token, hint)
    };

    // The owner revokes its own token.
    let t1 = access_token(&app.token(&org, &agent, &[]).await);
    let resp = revoke(&agent, t1.clone(), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_inactive(&app, &org, &rs, &t1).await;
    // Revoking again is still a 200.
    assert_eq!(
        revoke(&agent, t1.clone(), None).await.status(),
        StatusCode::OK
    );

    // A wrong hint does not stop the search (RFC 7009 §2.1).
    let t2 = access_token(&app.token(&org, &agent, &[]).await);
    let resp = revoke(&agent, t2.clone(), Some("refresh_token")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_inactive(&app, &org, &rs, &t2).await;

    // Unknown, garbage or foreign tokens: 200, nothing to do (§2.2).
    let foreign_token = access_token(&app.token(&other_org, &foreign, &[]).await);
    for junk in [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        uuid::Uuid::new_v4().to_string(),
        foreign_token.clone(),
    ] {
        let resp = revoke(&agent, junk.clone(), None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{junk}");
    }
    let i = app.introspect(&other_org, &foreign, &foreign_token).await;
    assert_eq!(
        i["active"], true,
        "a foreign issuer's token is not ours to revoke: {i}"
    );

    // Another client of the same organization may not revoke it.
    let t3 = access_token(&app.token(&org, &agent, &[]).await);
    let resp = revoke(&other, t3.clone(), None).await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    assert_active(&app, &org, &rs, &t3).await;

    // Without client authentication: invalid_client, and the token stays active.
    let resp = app
        .post_form(&org, "/oauth2/revoke", None, &[("token", &t3)])
        .await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Missing token parameter.
    let resp = app
        .post_form(
            &org,
            "/oauth2/revoke",
            Some((&agent.client_id, agent.secret.as_deref().unwrap())),
            &[],
        )
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_active(&app, &org, &rs, &t3).await;
    // Revoking one token leaves the agent's others alone.
    let i = app.introspect(&org, &rs, &t3).await;
    assert_eq!(i["client_id"], agent.client_id);
}

async fn agent_list_paginates_with_a_cursor(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let mut created = HashSet::new();
    for _ in 0..5 {
        created.insert(app.create_agent(&org, &["read"]).await.id);
    }
    let base = format!("/api/v1/orgs/{}/agents", org.slug);
    let mut seen: Vec<String> = Vec::new();
    let mut url = format!("{base}?limit=2");
    let mut pages = 0;
    loop {
        let (st, page) = app.admin(Method::GET, &url, None).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{page}");
        for a in items {
            assert!(a.get("client_secret").is_none(), "{a}");
            seen.push(a["id"].as_str().unwrap().to_owned());
        }
        pages += 1;
        assert!(pages <= 5, "pagination does not end");
        match page["next"].as_str() {
            Some(next) => url = format!("{base}?limit=2&after={next}"),
            None => {
                assert!(page["next"].is_null(), "{page}");
                break;
            }
        }
    }
    assert!(pages >= 3, "5 agents, 2 per page: {pages}");
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "every agent once: {seen:?}");
    assert_eq!(unique, created);

    for bad in ["0", "501", "-1"] {
        let (st, v) = app
            .admin(Method::GET, &format!("{base}?limit={bad}"), None)
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(v["field"], "limit", "{v}");
    }
}

async fn patch_updates_and_validates(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let path = agent_path(&org, &agent);

    let (st, v) = app
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"name": "renamed", "scopes": ["read", "write"], "description": "does things"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["scopes"], json!(["read", "write"]));
    assert_eq!(v["description"], "does things");
    assert!(v.get("client_secret").is_none(), "{v}");
    let (_, got) = app.admin(Method::GET, &path, None).await;
    assert_eq!(got["name"], "renamed");
    assert_eq!(got["scopes"], json!(["read", "write"]));
    assert_eq!(got["description"], "does things");

    // The new scopes and name take effect at once.
    let t = app.token(&org, &agent, &[("scope", "write")]).await;
    assert_eq!(t["scope"], "write");
    assert_eq!(
        jwt_claims(t["access_token"].as_str().unwrap())["agent_name"],
        "renamed"
    );
    // Only the given fields change.
    let (st, v) = app
        .admin(Method::PATCH, &path, Some(json!({"scopes": ["read"]})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["description"], "does things");
    let resp = app
        .token_response(&org, &agent, &[("scope", "write")])
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;

    for (body, status, field) in [
        (
            json!({"scopes": ["ok", "not ok"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("scopes"),
        ),
        (
            json!({"name": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("name"),
        ),
        (
            json!({"description": "x".repeat(2001)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("description"),
        ),
        (
            json!({"access_token_signed_response_alg": "HS256"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("access_token_signed_response_alg"),
        ),
        (
            json!({"access_token_signed_response_alg": "none"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("access_token_signed_response_alg"),
        ),
        (
            json!({"token_endpoint_auth_method": "private_key_jwt"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("token_endpoint_auth_method"),
        ),
        (json!({"status": "active"}), StatusCode::BAD_REQUEST, None),
        (
            json!({"client_secret": "mine"}),
            StatusCode::BAD_REQUEST,
            None,
        ),
        // A known field of the wrong type is about that field: 422 naming it (README).
        (
            json!({"name": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("name"),
        ),
    ] {
        let (st, v) = app.admin(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(st, status, "{body}: {v}");
        assert!(v["error"].is_string(), "{v}");
        if let Some(f) = field {
            assert_eq!(v["field"], f, "{v}");
        }
    }
    // Refused updates changed nothing.
    let (_, got) = app.admin(Method::GET, &path, None).await;
    assert_eq!(got["name"], "renamed");
    assert_eq!(got["scopes"], json!(["read"]));
    assert_eq!(got["description"], "does things");
    assert_eq!(got["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(got["access_token_signed_response_alg"], "ES256");
    app.token(&org, &agent, &[("scope", "read")]).await;
}

async fn per_agent_ttl_lowers_expires_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app
        .create_agent_with(
            &org,
            json!({"name": "short", "scopes": ["read"], "access_token_ttl_secs": 60}),
        )
        .await;
    assert_eq!(agent.body["access_token_ttl_secs"], 60);
    let t = app.token(&org, &agent, &[]).await;
    assert_eq!(t["expires_in"], 60);
    let c = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);

    let path = agent_path(&org, &agent);
    let (st, v) = app
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"access_token_ttl_secs": 300})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(app.token(&org, &agent, &[]).await["expires_in"], 300);

    // Never above the instance default, never zero or negative.
    for bad in [0, -5, 901] {
        let (st, v) = app
            .admin(
                Method::PATCH,
                &path,
                Some(json!({"access_token_ttl_secs": bad})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(v["field"], "access_token_ttl_secs", "{v}");
    }
    assert_eq!(app.token(&org, &agent, &[]).await["expires_in"], 300);
    // Other agents keep the default.
    let plain = app.create_agent(&org, &["read"]).await;
    assert_eq!(app.token(&org, &plain, &[]).await["expires_in"], 900);
}

on_all_backends!(
    suspension_stops_the_agent_until_reactivated,
    revocation_is_final,
    deleted_agent_is_gone,
    rotate_secret_without_grace_cuts_off_the_old_secret,
    rotate_secret_with_grace_keeps_both_secrets,
    rfc7009_only_the_owner_revokes_its_token,
    agent_list_paginates_with_a_cursor,
    patch_updates_and_validates,
    per_agent_ttl_lowers_expires_in,
);
