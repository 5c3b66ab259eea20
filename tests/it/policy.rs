//! Organization policy (`GET`/`PUT /api/v1/orgs/{org}/policy`), its enforcement at agent
//! registration and update and at the token endpoint, and the agent credential lifecycle
//! (`expires_at`, `secret_created_at`, list filters).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::support::*;

fn policy_path(org: &TestOrg) -> String {
    format!("/api/v1/orgs/{}/policy", org.slug)
}

async fn put_policy(app: &TestApp, org: &TestOrg, body: Value) -> (StatusCode, Value) {
    app.admin(Method::PUT, &policy_path(org), Some(body)).await
}

async fn get_policy(app: &TestApp, org: &TestOrg) -> Value {
    let (st, v) = app.admin(Method::GET, &policy_path(org), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn in_secs(app: &TestApp, secs: i64) -> String {
    use agentidp::model::Clock;
    agentidp::model::rfc3339(app.clock.now() + secs)
}

const MEMBERS: [&str; 8] = [
    "max_agents",
    "allowed_scopes",
    "allowed_auth_methods",
    "max_access_token_ttl_secs",
    "max_secret_age_secs",
    "admin_allowed_cidrs",
    "token_rate_limit",
    "dynamic_registration",
];

on_all_backends!(
    the_instance_limit_caps_what_an_organization_sets,
    default_policy_then_put_and_read_back,
    bad_policies_are_refused_precisely_and_change_nothing,
    violations_are_reported_not_applied,
    registration_and_update_are_checked,
    token_endpoint_enforces_auth_method_and_lifetime,
    secret_age_is_enforced_and_rotation_resets_it,
    expired_agent_gets_no_token_and_is_deactivated,
    expires_at_is_validated,
    agent_list_filters,
);

async fn default_policy_then_put_and_read_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let resp = app
        .http
        .get(app.url(&policy_path(&org)))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["etag"], "\"0\"");
    let (st, v) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for m in MEMBERS {
        assert!(v.get(m).is_some(), "{m} missing: {v}");
    }
    assert_eq!(v["dynamic_registration"], "off");
    assert!(
        v["max_agents"].is_null() && v["updated_at"].is_null(),
        "{v}"
    );

    let body = json!({
        "max_agents": 10,
        "allowed_scopes": ["write", "read"],
        "allowed_auth_methods": ["client_secret_basic", "private_key_jwt"],
        "max_access_token_ttl_secs": 300,
        "max_secret_age_secs": 86400,
        "admin_allowed_cidrs": ["10.0.0.0/8", "127.0.0.0/8", "::1/128"],
        "token_rate_limit": {"per_second": 20, "burst": 40},
        "dynamic_registration": "initial_access_token",
    });
    let (st, put) = put_policy(&app, &org, body).await;
    assert_eq!(st, StatusCode::OK, "{put}");
    assert_eq!(
        put["allowed_scopes"],
        json!(["read", "write"]),
        "normalized"
    );
    assert_eq!(put["violations"]["agents"], json!([]));
    let got = get_policy(&app, &org).await;
    assert!(got.get("violations").is_none());
    for m in MEMBERS {
        assert_eq!(got[m], put[m], "{m}");
    }
    assert_eq!(
        got["token_rate_limit"],
        json!({"per_second": 20, "burst": 40})
    );
    assert!(got["updated_at"].is_string());

    // PUT replaces the whole policy: what is left out is no longer restricted.
    let (st, v) = put_policy(&app, &org, json!({"max_agents": 5})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let got = get_policy(&app, &org).await;
    assert_eq!(got["max_agents"], 5);
    assert!(got["allowed_scopes"].is_null() && got["token_rate_limit"].is_null());
    assert_eq!(got["dynamic_registration"], "off");

    // If-Match: only over the version named.
    let put_if = |etag: &'static str| {
        app.http
            .put(app.url(&policy_path(&org)))
            .bearer_auth(&app.token)
            .header("if-match", etag)
            .json(&json!({"max_agents": 7}))
            .send()
    };
    let stale = put_if("\"1\"").await.unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(get_policy(&app, &org).await["max_agents"], 5);
    let ok = put_if("\"2\"").await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["etag"], "\"3\"");

    // Another organization's policy is untouched; an unknown organization is 404.
    let other = app.create_org().await;
    assert!(get_policy(&app, &other).await["max_agents"].is_null());
    let (st, _) = app
        .admin(Method::GET, "/api/v1/orgs/no-such-org/policy", None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// The operator's AGENTIDP_TOKEN_RATE_LIMIT (the tests' default: 100000 a second, as many at
/// once) is the ceiling of a policy's token_rate_limit, whoever sets it.
async fn the_instance_limit_caps_what_an_organization_sets(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let owner = crate::api_keys::api_key(&app, &org, json!({"name": "o", "role": "owner"})).await;
    let owner = owner["key"].as_str().unwrap();
    let put_as_owner = async |body: Value| {
        crate::api_keys::call(&app, owner, Method::PUT, &policy_path(&org), Some(body)).await
    };
    for (body, field) in [
        (
            json!({"token_rate_limit": {"per_second": 100001, "burst": 10}}),
            "token_rate_limit.per_second",
        ),
        (
            json!({"token_rate_limit": {"per_second": 10, "burst": 100001}}),
            "token_rate_limit.burst",
        ),
    ] {
        let (st, v) = put_as_owner(body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], field, "{v}");
    }
    assert!(get_policy(&app, &org).await["token_rate_limit"].is_null());
    let (st, v) =
        put_as_owner(json!({"token_rate_limit": {"per_second": 100000, "burst": 100000}})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = put_policy(
        &app,
        &org,
        json!({"token_rate_limit": {"per_second": 500000, "burst": 500000}}),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the operator's limit is the ceiling for the platform too: {v}"
    );
}

async fn bad_policies_are_refused_precisely_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let (st, v) = put_policy(&app, &org, json!({"max_agents": 3})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let before = get_policy(&app, &org).await;
    for (body, status, field) in [
        (json!({"max_agents": -1}), 422, "max_agents"),
        (json!({"max_agents": "3"}), 422, "max_agents"),
        (json!({"allowed_scopes": ["a b"]}), 422, "allowed_scopes"),
        (json!({"allowed_scopes": "read"}), 422, "allowed_scopes"),
        (
            json!({"allowed_auth_methods": []}),
            422,
            "allowed_auth_methods",
        ),
        (
            json!({"allowed_auth_methods": ["tls_client_auth"]}),
            422,
            "allowed_auth_methods",
        ),
        (
            json!({"max_access_token_ttl_secs": 0}),
            422,
            "max_access_token_ttl_secs",
        ),
        (
            json!({"max_access_token_ttl_secs": 100000}),
            422,
            "max_access_token_ttl_secs",
        ),
        (
            json!({"max_secret_age_secs": 1}),
            422,
            "max_secret_age_secs",
        ),
        (
            json!({"admin_allowed_cidrs": ["10.0.0.1/8"]}),
            422,
            "admin_allowed_cidrs",
        ),
        (
            json!({"admin_allowed_cidrs": ["banana"]}),
            422,
            "admin_allowed_cidrs",
        ),
        (
            json!({"token_rate_limit": {"per_second": 0, "burst": 1}}),
            422,
            "token_rate_limit.per_second",
        ),
        (
            json!({"token_rate_limit": {"per_second": 1}}),
            422,
            "token_rate_limit.burst",
        ),
        (
            json!({"token_rate_limit": {"per_second": 1, "burst": 1, "x": 1}}),
            400,
            "token_rate_limit.x",
        ),
        (
            json!({"dynamic_registration": "sometimes"}),
            422,
            "dynamic_registration",
        ),
        (json!({"max_agent": 3}), 400, "max_agent"),
    ] {
        let (st, v) = put_policy(&app, &org, body.clone()).await;
        assert_eq!(st.as_u16(), status, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(v["error_description"].is_string(), "{v}");
    }
    assert_eq!(get_policy(&app, &org).await, before, "nothing changed");
}

async fn violations_are_reported_not_applied(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let fits = app.create_agent(&org, &["read"]).await;
    let wide = app.create_agent(&org, &["read", "admin"]).await;
    let (st, v) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/orgs/{}/agents/{}", org.slug, fits.id),
            Some(json!({"access_token_ttl_secs": 600})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = put_policy(
        &app,
        &org,
        json!({"allowed_scopes": ["read"], "max_access_token_ttl_secs": 300, "max_agents": 1}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let report = &v["violations"];
    assert_eq!(report["live_agents"], 2, "{report}");
    assert_eq!(report["over_max_agents"], true, "{report}");
    assert_eq!(report["truncated"], false);
    let agents = report["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2, "{report}");
    let rules_of = |id: &str| -> Vec<String> {
        agents
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("{id} not reported: {report}"))["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(rules_of(&wide.id), ["allowed_scopes"]);
    assert_eq!(rules_of(&fits.id), ["max_access_token_ttl_secs"]);

    // Reported, not applied: the wide agent keeps its scopes and still gets its tokens.
    let (st, a) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/agents/{}", org.slug, wide.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(a["scopes"], json!(["read", "admin"]));
    let t = app.token(&org, &wide, &[("scope", "admin")]).await;
    assert_eq!(t["scope"], "admin");
    // Its lifetime is capped, though (the policy says so).
    let t = app.token(&org, &fits, &[]).await;
    assert_eq!(t["expires_in"], 300);
}

async fn registration_and_update_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let before = app.create_agent(&org, &["read", "admin"]).await;
    let (st, v) = put_policy(
        &app,
        &org,
        json!({
            "max_agents": 2,
            "allowed_scopes": ["read", "write"],
            "allowed_auth_methods": ["client_secret_basic"],
            "max_access_token_ttl_secs": 300,
        }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let agents = format!("/api/v1/orgs/{}/agents", org.slug);
    for (body, field) in [
        (json!({"name": "x", "scopes": ["admin"]}), "scopes"),
        (
            json!({"name": "x", "scopes": [], "token_endpoint_auth_method": "client_secret_post"}),
            "token_endpoint_auth_method",
        ),
        (
            json!({"name": "x", "scopes": [], "access_token_ttl_secs": 301}),
            "access_token_ttl_secs",
        ),
    ] {
        let (st, v) = app.admin(Method::POST, &agents, Some(body.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field, "{v}");
    }
    let ok = app.create_agent(&org, &["read", "write"]).await;
    // The third live agent is over max_agents.
    let (st, v) = app
        .admin(
            Method::POST,
            &agents,
            Some(json!({"name": "third", "scopes": []})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "policy_violation", "{v}");
    // Revoking one frees its place.
    let (st, _) = app
        .admin(
            Method::POST,
            &format!("{agents}/{}/revoke", before.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    app.create_agent(&org, &[]).await;

    // Updates: the fields changed are checked; an unrelated change passes.
    let one = format!("{agents}/{}", ok.id);
    for (body, field) in [
        (json!({"scopes": ["read", "admin"]}), "scopes"),
        (
            json!({"access_token_ttl_secs": 900}),
            "access_token_ttl_secs",
        ),
        (
            json!({"token_endpoint_auth_method": "client_secret_post"}),
            "token_endpoint_auth_method",
        ),
    ] {
        let (st, v) = app.admin(Method::PATCH, &one, Some(body.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field, "{v}");
    }
    let (st, v) = app
        .admin(Method::PATCH, &one, Some(json!({"name": "renamed"})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["scopes"],
        json!(["read", "write"]),
        "nothing else changed"
    );
}

async fn token_endpoint_enforces_auth_method_and_lifetime(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    assert_eq!(app.token(&org, &agent, &[]).await["expires_in"], 900);

    let (st, v) = put_policy(&app, &org, json!({"max_access_token_ttl_secs": 120})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t = app.token(&org, &agent, &[]).await;
    assert_eq!(t["expires_in"], 120);
    let claims = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );

    let (st, v) = put_policy(
        &app,
        &org,
        json!({"allowed_auth_methods": ["client_secret_post", "private_key_jwt"]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["violations"]["agents"][0]["violations"][0]["rule"], "allowed_auth_methods",
        "{v}"
    );
    let e = assert_oauth_error(
        app.token_response(&org, &agent, &[]).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("client_secret_basic"),
        "{e}"
    );
    // Wrong credentials still read as before: the policy is said only to a proven client.
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((&agent.client_id, "wrong")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let e = assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(e["error_description"], "unknown client or bad credentials");
    // Allowed again: at once.
    let (st, _) = put_policy(&app, &org, json!({})).await;
    assert_eq!(st, StatusCode::OK);
    app.token(&org, &agent, &[]).await;
}

async fn secret_age_is_enforced_and_rotation_resets_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let mut agent = app.create_agent(&org, &["read"]).await;
    let created = agent.body["secret_created_at"].as_str().unwrap().to_owned();
    assert_eq!(created, agent.body["created_at"].as_str().unwrap());
    let (st, v) = put_policy(&app, &org, json!({"max_secret_age_secs": 3600})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["violations"]["agents"], json!([]));
    app.advance(Duration::from_secs(3000));
    app.token(&org, &agent, &[]).await;
    app.advance(Duration::from_secs(601));
    let e = assert_oauth_error(
        app.token_response(&org, &agent, &[]).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    let d = e["error_description"].as_str().unwrap();
    assert!(d.contains("client secret expired"), "{d}");
    // The report names it now.
    let (st, v) = put_policy(&app, &org, json!({"max_secret_age_secs": 3600})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["violations"]["agents"][0]["id"], agent.id.as_str(), "{v}");
    assert_eq!(
        v["violations"]["agents"][0]["violations"][0]["rule"],
        "max_secret_age_secs"
    );

    // Rotation resets the age.
    let (st, v) = app
        .admin(
            Method::POST,
            &format!(
                "/api/v1/orgs/{}/agents/{}/rotate-secret",
                org.slug, agent.id
            ),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_ne!(v["secret_created_at"], created.as_str());
    agent.secret = Some(v["client_secret"].as_str().unwrap().to_owned());
    app.token(&org, &agent, &[]).await;
    let (_, got) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/agents/{}", org.slug, agent.id),
            None,
        )
        .await;
    assert_eq!(got["secret_created_at"], v["secret_created_at"]);
}

async fn expired_agent_gets_no_token_and_is_deactivated(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let expires = in_secs(&app, 600);
    let agent = app
        .create_agent_with(
            &org,
            json!({"name": "temp", "scopes": ["read"], "expires_at": expires}),
        )
        .await;
    assert_eq!(agent.body["expires_at"], expires.as_str());
    let caller = app.create_agent(&org, &[]).await;
    let did_url = format!("{}/agents/{}/did.json", org.issuer, agent.id);
    let resolve_url = app.url(&format!(
        "/1.0/identifiers/{}",
        percent_encoding::utf8_percent_encode(&agent.did, percent_encoding::NON_ALPHANUMERIC)
    ));
    let card_url = format!("{}/agents/{}/card", org.issuer, agent.id);
    // Rendered (and pre-rendered: the second request is served from the cache) while live.
    for _ in 0..2 {
        assert_eq!(app.get_json(&did_url).await.0, StatusCode::OK);
        assert_eq!(app.get_json(&resolve_url).await.0, StatusCode::OK);
        assert_eq!(app.get_json(&card_url).await.0, StatusCode::OK);
    }
    // Its tokens never outlive it.
    let t = app.token(&org, &agent, &[]).await;
    assert!(t["expires_in"].as_i64().unwrap() <= 600, "{t}");

    // A token issued before the expiry was brought forward stops introspecting as active when
    // the agent expires, though its own exp is still ahead.
    let other = app.create_agent(&org, &["read"]).await;
    let long = app.token(&org, &other, &[]).await;
    assert_eq!(long["expires_in"], 900);
    let long = long["access_token"].as_str().unwrap().to_owned();
    let (st, v) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/orgs/{}/agents/{}", org.slug, other.id),
            Some(json!({"expires_at": in_secs(&app, 300)})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(app.introspect(&org, &caller, &long).await["active"], true);
    app.advance(Duration::from_secs(301));
    assert_eq!(app.introspect(&org, &caller, &long).await["active"], false);
    let (st, v, _) = app.agent_info(&org, &long).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");

    app.advance(Duration::from_secs(300));
    let e = assert_oauth_error(
        app.token_response(&org, &agent, &[]).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert_eq!(
        e["error_description"],
        format!("the agent expired at {expires}").as_str()
    );
    // The pre-rendered documents did not outlive the expiry (nothing else changed).
    let (st, v) = app.get_json(&did_url).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
    let (st, res) = app.get_json(&resolve_url).await;
    assert_eq!(st, StatusCode::GONE, "{res}");
    assert_eq!(res["didDocumentMetadata"]["deactivated"], true, "{res}");
    assert_eq!(app.get_json(&card_url).await.0, StatusCode::NOT_FOUND);
    // Still listed as active (an expiry is not a status), with its expiry.
    let (_, a) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/agents/{}", org.slug, agent.id),
            None,
        )
        .await;
    assert_eq!(
        (a["status"].as_str(), a["expires_at"].as_str()),
        (Some("active"), Some(expires.as_str()))
    );

    // Extending it brings it back (an expiry is not a revocation).
    let later = in_secs(&app, 600);
    let (st, v) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/orgs/{}/agents/{}", org.slug, agent.id),
            Some(json!({"expires_at": later})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(app.get_json(&did_url).await.0, StatusCode::OK);
    app.token(&org, &agent, &[]).await;
}

async fn expires_at_is_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agents = format!("/api/v1/orgs/{}/agents", org.slug);
    for bad in [json!("tomorrow"), json!(in_secs(&app, -10)), json!(12)] {
        let (st, v) = app
            .admin(
                Method::POST,
                &agents,
                Some(json!({"name": "x", "scopes": [], "expires_at": bad})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(v["field"], "expires_at", "{v}");
    }
    // An update may expire an agent at once, or remove the expiry.
    let agent = app.create_agent(&org, &[]).await;
    assert!(agent.body["expires_at"].is_null());
    let one = format!("{agents}/{}", agent.id);
    let (st, v) = app
        .admin(
            Method::PATCH,
            &one,
            Some(json!({"expires_at": in_secs(&app, -1)})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_oauth_error(
        app.token_response(&org, &agent, &[]).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    let (st, v) = app
        .admin(Method::PATCH, &one, Some(json!({"expires_at": null})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["expires_at"].is_null());
    app.token(&org, &agent, &[]).await;
}

async fn agent_list_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let soon = in_secs(&app, 3600);
    let later = in_secs(&app, 7 * 86400);
    let mk = |name: &str, expires: Option<&str>| {
        let mut b = json!({"name": name, "scopes": []});
        if let Some(e) = expires {
            b["expires_at"] = json!(e);
        }
        b
    };
    let alpha = app
        .create_agent_with(&org, mk("Billing Alpha", Some(&soon)))
        .await;
    let beta = app
        .create_agent_with(&org, mk("billing beta", Some(&later)))
        .await;
    let gamma = app.create_agent_with(&org, mk("Search gamma", None)).await;
    let (st, _) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/agents/{}/suspend", org.slug, beta.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let list = |q: String| {
        let app = &app;
        let org = &org;
        async move {
            let (st, v) = app
                .admin(
                    Method::GET,
                    &format!("/api/v1/orgs/{}/agents?{q}", org.slug),
                    None,
                )
                .await;
            (st, v)
        }
    };
    let ids = |v: &Value| -> Vec<String> {
        let mut out: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        out.sort();
        out
    };
    let sorted = |mut v: Vec<&str>| {
        v.sort();
        v.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let enc = |s: &str| s.replace('+', "%2B").replace(':', "%3A");

    let (st, v) = list("status=suspended".into()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(ids(&v), vec![beta.id.clone()]);
    let (_, v) = list("status=active".into()).await;
    assert_eq!(ids(&v), sorted(vec![&alpha.id, &gamma.id]));
    let (_, v) = list(format!("expiring_before={}", enc(&in_secs(&app, 86400)))).await;
    assert_eq!(ids(&v), vec![alpha.id.clone()]);
    let (_, v) = list("name=BILLING".into()).await;
    assert_eq!(ids(&v), sorted(vec![&alpha.id, &beta.id]));
    let (_, v) = list("name=ch%20GAM".into()).await;
    assert_eq!(ids(&v), vec![gamma.id.clone()]);
    // LIKE wildcards are literal.
    let (_, v) = list("name=%25".into()).await;
    assert_eq!(ids(&v), Vec::<String>::new());
    // Filters combine, with each other and with the cursor.
    let (_, v) = list(format!(
        "name=billing&status=active&expiring_before={}",
        enc(&in_secs(&app, 30 * 86400))
    ))
    .await;
    assert_eq!(ids(&v), vec![alpha.id.clone()]);
    let (_, first) = list("name=billing&limit=1".into()).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let next = first["next"].as_str().unwrap().to_owned();
    let (_, second) = list(format!("name=billing&limit=1&after={next}")).await;
    let mut both = ids(&first);
    both.extend(ids(&second));
    both.sort();
    assert_eq!(both, sorted(vec![&alpha.id, &beta.id]));

    // Bad values are refused, never ignored.
    for (q, field) in [
        ("status=paused", "status"),
        ("status=", "status"),
        ("expiring_before=soon", "expiring_before"),
        ("name=", "name"),
    ] {
        let (st, v) = list(q.into()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {v}");
        assert_eq!(v["error"], "invalid_field", "{q}: {v}");
        assert_eq!(v["field"], field, "{q}: {v}");
    }
    let (st, v) = list("state=active".into()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_request", "{v}");
}

/// A policy change made through one instance is honoured by the other on its next requests
/// (PostgreSQL + Redis only: the invalidation travels through Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_on_one_instance_applies_on_the_other() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let Backend::Postgres {
        redis_url: Some(_), ..
    } = &backend
    else {
        return;
    };
    let (one, two) = two_instances(backend).await;
    let org = one.create_org().await;
    let agent = one.create_agent(&org, &["read"]).await;
    let org2 = TestOrg {
        issuer: format!("http://{}/orgs/{}", two.addr, org.slug),
        ..org.clone()
    };
    // The second instance caches the (default) policy.
    for _ in 0..2 {
        assert_eq!(two.token(&org2, &agent, &[]).await["expires_in"], 900);
    }
    let (st, v) = put_policy(
        &one,
        &org,
        json!({"max_access_token_ttl_secs": 60, "allowed_auth_methods": ["client_secret_basic"]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let start = std::time::Instant::now();
    loop {
        let t = two.token(&org2, &agent, &[]).await;
        if t["expires_in"] == 60 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "still {t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, v) = put_policy(
        &one,
        &org,
        json!({"allowed_auth_methods": ["private_key_jwt"]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let start = std::time::Instant::now();
    while two.token_response(&org2, &agent, &[]).await.status() != StatusCode::UNAUTHORIZED {
        assert!(start.elapsed() < Duration::from_secs(2), "not refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The second instance's admin API reads the same policy.
    let (st, v) = two.admin(Method::GET, &policy_path(&org), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["allowed_auth_methods"], json!(["private_key_jwt"]));
}
