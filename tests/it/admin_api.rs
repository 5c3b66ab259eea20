//! The admin API under concurrency and its consistency rules: no lost updates between a
//! lifecycle change (rotate-secret, suspend, partner disable) and a concurrent PATCH; `ETag` /
//! `If-Match` (RFC 9110 §8.8.3, §13.1.1); one error rule for every body.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::support::*;

/// Rounds per pair: the race lost about half of them before updates were versioned.
const ROUNDS: usize = 25;

fn agent_path(org: &TestOrg, agent: &TestAgent) -> String {
    format!("/api/v1/orgs/{}/agents/{}", org.slug, agent.id)
}

/// rotate-secret and PATCH at once: the new secret must work and the old one must not, every time.
async fn rotate_secret_and_patch_do_not_lose_the_rotation(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let mut agent = app.create_agent(&org, &["read"]).await;
    let path = agent_path(&org, &agent);
    let mut lost = 0;
    for round in 0..ROUNDS {
        let action = format!("{path}/rotate-secret");
        let rotate = app.admin(Method::POST, &action, None);
        let patch = app.admin(
            Method::PATCH,
            &path,
            Some(json!({"description": format!("round {round}")})),
        );
        let ((st1, rotated), (st2, patched)) = tokio::join!(rotate, patch);
        assert_eq!(st1, StatusCode::OK, "{rotated}");
        assert_eq!(st2, StatusCode::OK, "{patched}");
        let old = agent.clone();
        agent.secret = Some(rotated["client_secret"].as_str().unwrap().to_owned());
        let new_works = app.token_response(&org, &agent, &[]).await.status() == StatusCode::OK;
        let old_works = app.token_response(&org, &old, &[]).await.status() == StatusCode::OK;
        if !new_works || old_works {
            lost += 1;
        }
        let (_, now) = app.admin(Method::GET, &path, None).await;
        assert_eq!(now["description"], format!("round {round}"), "{now}");
    }
    assert_eq!(
        lost, 0,
        "{lost} of {ROUNDS} rotations were undone by a PATCH"
    );
}

/// suspend and PATCH at once: the agent must end suspended, every time.
async fn suspend_and_patch_do_not_lose_the_suspension(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let mut lost = 0;
    for round in 0..ROUNDS {
        let agent = app.create_agent(&org, &["read"]).await;
        let path = agent_path(&org, &agent);
        let action = format!("{path}/suspend");
        let suspend = app.admin(Method::POST, &action, None);
        let patch = app.admin(
            Method::PATCH,
            &path,
            Some(json!({"name": format!("renamed {round}")})),
        );
        let ((st1, v1), (st2, v2)) = tokio::join!(suspend, patch);
        assert_eq!(st1, StatusCode::OK, "{v1}");
        assert_eq!(st2, StatusCode::OK, "{v2}");
        let (_, now) = app.admin(Method::GET, &path, None).await;
        assert_eq!(now["name"], format!("renamed {round}"), "{now}");
        if now["status"] != "suspended" {
            lost += 1;
        }
        assert_eq!(
            app.token_response(&org, &agent, &[]).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        lost, 0,
        "{lost} of {ROUNDS} suspensions were undone by a PATCH"
    );
}

/// A partner registration with an inline JWK Set (no fetch): the organization's own keys.
async fn register_partner(app: &TestApp, org: &TestOrg, jwks: &Value, n: usize) -> String {
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/partners", org.slug),
            Some(json!({"issuer": format!("https://p{n}.partner.example/orgs/x"), "jwks": jwks})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// partner disable and PATCH at once: the partner must end disabled, every time.
async fn partner_disable_and_patch_do_not_lose_the_disable(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let keys_of = app.create_org().await;
    let jwks = org_jwks(&app, &keys_of).await;
    let mut lost = 0;
    for round in 0..ROUNDS {
        let id = register_partner(&app, &org, &jwks, round).await;
        let path = format!("/api/v1/orgs/{}/partners/{id}", org.slug);
        let action = format!("{path}/disable");
        let disable = app.admin(Method::POST, &action, None);
        let patch = app.admin(
            Method::PATCH,
            &path,
            Some(json!({"allowed_scopes": ["orders:read"]})),
        );
        let ((st1, v1), (st2, v2)) = tokio::join!(disable, patch);
        assert_eq!(st1, StatusCode::OK, "{v1}");
        assert_eq!(st2, StatusCode::OK, "{v2}");
        let (_, now) = app.admin(Method::GET, &path, None).await;
        assert_eq!(now["allowed_scopes"], json!(["orders:read"]), "{now}");
        if now["enabled"] != false {
            lost += 1;
        }
    }
    assert_eq!(
        lost, 0,
        "{lost} of {ROUNDS} disables were undone by a PATCH"
    );
}

on_all_backends!(
    rotate_secret_and_patch_do_not_lose_the_rotation,
    suspend_and_patch_do_not_lose_the_suspension,
    partner_disable_and_patch_do_not_lose_the_disable,
);

/// A PATCH with `If-Match` applies only over the version it names (RFC 9110 §13.1.1): a stale
/// tag answers 412 and changes nothing; every single-object answer carries the `ETag`.
async fn if_match_guards_updates_of_agents_and_partners(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let keys_of = app.create_org().await;
    let jwks = org_jwks(&app, &keys_of).await;
    let partner = register_partner(&app, &org, &jwks, 0).await;
    for path in [
        agent_path(&org, &agent),
        format!("/api/v1/orgs/{}/partners/{partner}", org.slug),
    ] {
        let send = |method: Method, if_match: Option<&str>, body: Option<Value>| {
            let mut req = app
                .http
                .request(method, app.url(&path))
                .bearer_auth(&app.token);
            if let Some(m) = if_match {
                req = req.header("if-match", m);
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            req.send()
        };
        let etag = |r: &reqwest::Response| {
            r.headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned())
                .expect("an ETag")
        };
        let first = send(Method::GET, None, None).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let v1 = etag(&first);
        assert!(v1.starts_with('"') && v1.ends_with('"'), "{v1}");

        let r = send(Method::PATCH, Some(&v1), Some(json!({"name": "one"})))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v2 = etag(&r);
        assert_ne!(v1, v2);
        assert_eq!(json_of(r).await.1["name"], "one");
        let r = send(Method::GET, None, None).await.unwrap();
        assert_eq!(etag(&r), v2, "GET answers the ETag the PATCH answered");

        // The tag read before the change is stale now: 412, and the name stays.
        let (st, v) = json_of(
            send(Method::PATCH, Some(&v1), Some(json!({"name": "two"})))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{v}");
        assert_eq!(v["error"], "precondition_failed", "{v}");
        let (_, now) = app.admin(Method::GET, &path, None).await;
        assert_eq!(now["name"], "one", "{now}");

        // A list holding the current tag, and `*`, match; weak tags never do (strong comparison).
        let list = format!("\"999\", {v2}");
        let r = send(Method::PATCH, Some(&list), Some(json!({"name": "three"})))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v3 = etag(&r);
        let weak = format!("W/{v3}");
        let r = send(Method::PATCH, Some(&weak), Some(json!({"name": "four"})))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
        let r = send(Method::PATCH, Some("*"), Some(json!({"name": "five"})))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        let (st, v) = json_of(
            send(Method::PATCH, Some("3"), Some(json!({"name": "six"})))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"], "invalid_request", "{v}");

        // Lifecycle changes never need a precondition, and they change the ETag.
        let action = if path.contains("/agents/") {
            "suspend"
        } else {
            "disable"
        };
        let r = app
            .http
            .post(app.url(&format!("{path}/{action}")))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_ne!(etag(&r), v3);
    }
}

on_all_backends!(if_match_guards_updates_of_agents_and_partners);

/// Sends `body` (raw bytes) as JSON to an admin call; answers status and JSON.
async fn raw(app: &TestApp, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json",
        "{path} {body}"
    );
    json_of(resp).await
}

/// One rule for every body: not JSON, or not an object, is 400 `invalid_request` with a precise
/// message; a field that is missing, unknown or mistyped is 422 `invalid_field` naming it, as
/// one that fails validation. Query parameters follow it too, always as JSON.
async fn every_body_follows_one_error_rule(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agents = format!("/api/v1/orgs/{}/agents", org.slug);
    let agent = app.create_agent(&org, &[]).await;
    let one = agent_path(&org, &agent);

    for (path, body, field) in [
        ("/api/v1/orgs", r#"{"slug":"x-missing"}"#, "name"),
        (agents.as_str(), r#"{"scopes":[]}"#, "name"),
        ("/api/v1/orgs", r#"{"slug":"x-y","name":5}"#, "name"),
        (agents.as_str(), r#"{"name":"a","scopes":"read"}"#, "scopes"),
    ] {
        let (st, v) = raw(&app, Method::POST, path, body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["error"], "invalid_field", "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    // A member the call does not take: 400 (the body is not one for this call), naming it.
    for (path, body, field) in [
        (
            agents.as_str(),
            r#"{"name":"a","scopes":[],"nope":1}"#,
            "nope",
        ),
        (
            "/api/v1/orgs",
            r#"{"slug":"x-y","name":"n","extra":true}"#,
            "extra",
        ),
    ] {
        let (st, v) = raw(&app, Method::POST, path, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"], "invalid_request", "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let (st, v) = raw(
        &app,
        Method::PUT,
        &format!("{one}/card"),
        r#"{"skills":[{"id":"a"}]}"#,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "skills[0].name", "{v}");

    for body in [r#"{"slug":"#, "", "[1,2]", "nonsense"] {
        let (st, v) = raw(&app, Method::POST, "/api/v1/orgs", body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body:?}: {v}");
        assert_eq!(v["error"], "invalid_request", "{v}");
        assert_eq!(v.get("field"), None, "{v}");
        let d = v["error_description"].as_str().unwrap();
        assert!(d.starts_with("the body is not"), "{d}");
        assert!(!d.contains('?'), "{d}");
    }
    let (_, v) = raw(&app, Method::POST, "/api/v1/orgs", r#"{"slug":"#).await;
    assert_eq!(
        v["error_description"],
        "the body is not valid JSON: EOF while parsing a value at line 1 column 8"
    );
    // rotate-secret's optional body follows the same rule.
    let (st, v) = raw(&app, Method::POST, &format!("{one}/rotate-secret"), "{").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .starts_with("the body is not valid JSON: EOF while parsing"),
        "{v}"
    );
    let (st, v) = raw(
        &app,
        Method::POST,
        &format!("{one}/rotate-secret"),
        r#"{"grace_period_secs":"x"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "grace_period_secs", "{v}");

    for q in ["limit=abc", "limit=0", "limit=501", "limit=1.5"] {
        for base in ["/api/v1/orgs".to_owned(), agents.clone()] {
            let resp = app
                .http
                .get(app.url(&format!("{base}?{q}")))
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.headers()["content-type"].to_str().unwrap(),
                "application/json"
            );
            let (st, v) = json_of(resp).await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {v}");
            assert_eq!(v["field"], "limit", "{q}: {v}");
        }
    }
}

/// RFC 7396 merge-patch: `null` clears a clearable field, absent leaves it.
async fn patch_null_clears_and_absent_leaves(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app
        .create_agent_with(
            &org,
            json!({"name": "a", "scopes": [], "description": "d", "access_token_ttl_secs": 60}),
        )
        .await;
    let path = agent_path(&org, &agent);
    let (st, v) = app
        .admin(Method::PATCH, &path, Some(json!({"name": "b"})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["description"], &v["access_token_ttl_secs"]),
        (&json!("d"), &json!(60))
    );
    let (st, v) = app
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"description": null, "access_token_ttl_secs": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["description"], Value::Null, "{v}");
    assert_eq!(v["access_token_ttl_secs"], Value::Null, "{v}");
    assert_eq!(v["name"], "b", "{v}");
    let (_, v) = app.admin(Method::GET, &path, None).await;
    assert_eq!(v["description"], Value::Null, "{v}");

    let keys_of = app.create_org().await;
    let jwks = org_jwks(&app, &keys_of).await;
    let id = register_partner(&app, &org, &jwks, 0).await;
    let ppath = format!("/api/v1/orgs/{}/partners/{id}", org.slug);
    let (_, v) = app
        .admin(Method::PATCH, &ppath, Some(json!({"name": "P"})))
        .await;
    assert_eq!(v["name"], "P", "{v}");
    let (st, v) = app
        .admin(Method::PATCH, &ppath, Some(json!({"name": null})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], Value::Null, "{v}");
}

/// Names and texts shown to people refuse control characters and the Unicode bidirectional
/// controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C) with 422 naming the field.
async fn bidi_and_control_characters_are_refused_in_names(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;
    let path = agent_path(&org, &agent);
    let keys_of = app.create_org().await;
    let jwks = org_jwks(&app, &keys_of).await;
    let partner = register_partner(&app, &org, &jwks, 0).await;
    let ppath = format!("/api/v1/orgs/{}/partners/{partner}", org.slug);
    for c in [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{0007}', '\u{001B}',
        '\u{0085}',
    ] {
        let bad = format!("invoice{c}fdp.exe");
        for (method, p, body, field) in [
            (
                Method::POST,
                "/api/v1/orgs".to_owned(),
                json!({"slug": random_slug(), "name": bad}),
                "name",
            ),
            (
                Method::PATCH,
                format!("/api/v1/orgs/{}", org.slug),
                json!({"name": bad}),
                "name",
            ),
            (Method::PATCH, path.clone(), json!({"name": bad}), "name"),
            (
                Method::PATCH,
                path.clone(),
                json!({"description": bad}),
                "description",
            ),
            (
                Method::POST,
                format!("/api/v1/orgs/{}/agents", org.slug),
                json!({"name": bad, "scopes": []}),
                "name",
            ),
            (Method::PATCH, ppath.clone(), json!({"name": bad}), "name"),
            (
                Method::PUT,
                format!("{path}/card"),
                json!({"skills": [{"id": "s", "name": bad}]}),
                "skills",
            ),
            (
                Method::PUT,
                format!("{path}/card"),
                json!({"skills": [{"id": "s", "name": "s", "description": bad}]}),
                "skills",
            ),
            (
                Method::PUT,
                format!("{path}/card"),
                json!({"version": bad}),
                "version",
            ),
        ] {
            let (st, v) = app.admin(method, &p, Some(body.clone())).await;
            assert_eq!(
                st,
                StatusCode::UNPROCESSABLE_ENTITY,
                "U+{:04X} {p} {body}: {v}",
                c as u32
            );
            assert_eq!(v["error"], "invalid_field", "{v}");
            assert_eq!(v["field"], field, "{v}");
        }
    }
    // A description may keep its line breaks; names stay as they were.
    let (st, v) = app
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"description": "two\nlines\ttab"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = app.admin(Method::GET, &path, None).await;
    assert_eq!(v["name"], "test agent", "{v}");
}

on_all_backends!(
    every_body_follows_one_error_rule,
    patch_null_clears_and_absent_leaves,
    bidi_and_control_characters_are_refused_in_names,
);

/// The reactivation rule (README): tokens issued before a suspension stay dead after the agent
/// is reactivated, and the answer says so; the reactivated agent gets new tokens that work.
async fn tokens_from_before_a_suspension_stay_dead_and_say_why(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let path = agent_path(&org, &agent);
    let old = app.token(&org, &agent, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for action in ["suspend", "reactivate"] {
        let (st, v) = app
            .admin(Method::POST, &format!("{path}/{action}"), None)
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v, challenge) = app.agent_info(&org, &old).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let why = "the token was issued before the agent was last suspended or its secret rotated";
    assert_eq!(v["error_description"], why, "{v}");
    assert!(challenge.unwrap().contains(why));
    let new = app.token(&org, &agent, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, v, _) = app.agent_info(&org, &new).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

on_all_backends!(tokens_from_before_a_suspension_stay_dead_and_say_why);
