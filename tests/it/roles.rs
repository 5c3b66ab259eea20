//! The role matrix (issue 11, "How we will check it"), generated from the route table: every
//! admin operation of the OpenAPI document (the same registrations the router is built from) x
//! {platform, owner, admin, member, scim key, another organization's owner, expired key, revoked
//! key, key used from a disallowed address, no token, a garbage token} -> the expected status,
//! and no state change on a refusal.
//!
//! The expectations are written here from INTERFACE.md's rules, independently of the server's
//! code: a refusal is 401 (no, unknown, expired or revoked credential), 403 (a key outside its
//! CIDRs; a role too low; an organization principal calling a platform operation) or 404 (another
//! organization's principal). An allowed call must get past authorization: its answer is none of
//! 401, 403, 404, 405 or 5xx (it is sent a body with an unknown member when the operation takes
//! a body, so it is refused as 400 without changing anything, or, without a body, it runs on
//! objects made for it).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::api_keys::{api_key, call};
use crate::on_all_backends;
use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Platform,
    Owner,
    Admin,
    Member,
    Scim,
    OtherOwner,
    Expired,
    Revoked,
    FencedOwner,
    NoToken,
    Garbage,
}

const EVERYONE: [Who; 11] = [
    Who::Platform,
    Who::Owner,
    Who::Admin,
    Who::Member,
    Who::Scim,
    Who::OtherOwner,
    Who::Expired,
    Who::Revoked,
    Who::FencedOwner,
    Who::NoToken,
    Who::Garbage,
];

/// `None`: allowed; `Some(status)`: refused with it.
fn expected(need: &str, who: Who) -> Option<StatusCode> {
    match who {
        Who::NoToken | Who::Garbage | Who::Expired | Who::Revoked => {
            return Some(StatusCode::UNAUTHORIZED);
        }
        Who::FencedOwner => return Some(StatusCode::FORBIDDEN),
        Who::Platform => return None,
        _ => {}
    }
    let rank = |w: Who| match w {
        Who::Owner | Who::OtherOwner => 3,
        Who::Admin => 2,
        Who::Member => 1,
        _ => 0,
    };
    match need {
        "authenticated" => None,
        "platform" => Some(StatusCode::FORBIDDEN),
        _ if who == Who::OtherOwner => Some(StatusCode::NOT_FOUND),
        "scim" => (who != Who::Scim).then_some(StatusCode::FORBIDDEN),
        role => {
            let needed = match role {
                "owner" => 3,
                "admin" => 2,
                "member" => 1,
                other => panic!("unknown requirement {other:?}"),
            };
            (rank(who) < needed).then_some(StatusCode::FORBIDDEN)
        }
    }
}

/// One organization with a principal of every kind and an object behind every path parameter.
struct World {
    org: TestOrg,
    tokens: BTreeMap<&'static str, String>,
}

impl World {
    async fn new(app: &TestApp) -> Self {
        let org = app.create_org().await;
        let other = app.create_org().await;
        let mut tokens = BTreeMap::new();
        let key = |org: TestOrg, body: Value| async move {
            api_key(app, &org, body).await["key"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        for (name, role) in [
            ("owner", "owner"),
            ("admin", "admin"),
            ("member", "member"),
            ("scim", "scim"),
        ] {
            tokens.insert(
                name,
                key(org.clone(), json!({"name": name, "role": role})).await,
            );
        }
        tokens.insert(
            "other_owner",
            key(other, json!({"name": "o", "role": "owner"})).await,
        );
        tokens.insert(
            "fenced",
            key(
                org.clone(),
                json!({"name": "f", "role": "owner", "allowed_cidrs": ["10.0.0.0/8"]}),
            )
            .await,
        );
        let expires =
            agentidp::model::rfc3339(agentidp::model::Clock::now(app.clock.as_ref()) + 30);
        tokens.insert(
            "expired",
            key(
                org.clone(),
                json!({"name": "e", "role": "owner", "expires_at": expires}),
            )
            .await,
        );
        let revoked = api_key(app, &org, json!({"name": "r", "role": "owner"})).await;
        let (st, _) = app
            .admin(
                Method::DELETE,
                &format!(
                    "/api/v1/orgs/{}/api-keys/{}",
                    org.slug,
                    revoked["id"].as_str().unwrap()
                ),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        tokens.insert("revoked", revoked["key"].as_str().unwrap().to_owned());
        app.advance(Duration::from_secs(31));
        World { org, tokens }
    }

    fn token(&self, app: &TestApp, who: Who) -> Option<String> {
        Some(match who {
            Who::Platform => app.token.clone(),
            Who::Owner => self.tokens["owner"].clone(),
            Who::Admin => self.tokens["admin"].clone(),
            Who::Member => self.tokens["member"].clone(),
            Who::Scim => self.tokens["scim"].clone(),
            Who::OtherOwner => self.tokens["other_owner"].clone(),
            Who::Expired => self.tokens["expired"].clone(),
            Who::Revoked => self.tokens["revoked"].clone(),
            Who::FencedOwner => self.tokens["fenced"].clone(),
            Who::Garbage => "aidp_k_0123456789abcdef0123456789abcdef_nope".into(),
            Who::NoToken => return None,
        })
    }

    /// A fresh object for each path parameter of `template`, made with the platform token.
    async fn path(&self, app: &TestApp, template: &str) -> String {
        let slug = &self.org.slug;
        let mut path = template.replace("{org}", slug);
        if path.contains("{delegation_id}") {
            let (user, grant) = super::delegation::grant_fixture(app, &self.org).await;
            path = path
                .replace("{id}", &user)
                .replace("{delegation_id}", &grant);
        }
        if path.contains("{session_id}") {
            let (user, session) = super::signin::session_fixture(app, &self.org).await;
            path = path
                .replace("{id}", &user)
                .replace("{session_id}", &session);
        }
        if template.ends_with("/ownership-transfer") {
            // Something to read and revoke: a pending transfer (one at a time).
            let t = format!("/api/v1/orgs/{slug}/ownership-transfer");
            if app.admin(Method::GET, &t, None).await.0 == StatusCode::NOT_FOUND {
                let named = super::users::user(app, &self.org, "member").await;
                let (st, v) = app
                    .admin(Method::POST, &t, Some(json!({"user_id": named["id"]})))
                    .await;
                assert_eq!(st, StatusCode::CREATED, "{v}");
            }
        }
        if path.contains("{id}") {
            let id = if template.contains("/enrollment-tokens/") {
                let (st, v) = app
                    .admin(
                        Method::POST,
                        &format!("/api/v1/orgs/{slug}/enrollment-tokens"),
                        Some(json!({"max_uses": 2})),
                    )
                    .await;
                assert_eq!(st, StatusCode::CREATED, "{v}");
                v["id"].as_str().unwrap().to_owned()
            } else if template.contains("/agents/") {
                app.create_agent(&self.org, &["read"]).await.id
            } else if template.contains("/partners/") {
                let (st, v) = app
                    .admin(
                        Method::POST,
                        &format!("/api/v1/orgs/{slug}/partners"),
                        Some(json!({
                            "issuer": format!("https://partner.example/{}", uuid::Uuid::new_v4()),
                            "jwks": {"keys": [{
                                "kty": "EC", "crv": "P-256", "kid": "p1",
                                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                            }]},
                        })),
                    )
                    .await;
                assert_eq!(st, StatusCode::CREATED, "{v}");
                v["id"].as_str().unwrap().to_owned()
            } else if template.contains("/users/") {
                super::users::user(app, &self.org, "member").await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            } else if template.contains("/invites/") {
                let (st, v) = app
                    .admin(
                        Method::POST,
                        &format!("/api/v1/orgs/{slug}/invites"),
                        Some(json!({"email": super::users::email(), "role": "member"})),
                    )
                    .await;
                assert_eq!(st, StatusCode::CREATED, "{v}");
                v["id"].as_str().unwrap().to_owned()
            } else if template.contains("/clients/") {
                super::clients::app_client(
                    app,
                    &self.org,
                    json!({"name": "web", "scopes": [], "redirect_uris": ["https://app.example/cb"]}),
                )
                .await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            } else if template.contains("/api-keys/") {
                api_key(app, &self.org, json!({"name": "victim", "role": "member"})).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            } else {
                panic!("no fixture for {template}");
            };
            path = path.replace("{id}", &id);
        }
        if path.contains("{kid}") {
            let (st, v) = app
                .admin(
                    Method::POST,
                    &format!("/api/v1/orgs/{slug}/keys/rotate"),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            path = path.replace("{kid}", v["keys"][0]["kid"].as_str().unwrap());
        }
        assert!(
            !path.contains('{'),
            "no fixture for a parameter of {template}"
        );
        path
    }

    /// What the platform sees of the organization (without the last-use fields, which a refused
    /// but authenticated call may update).
    async fn snapshot(&self, app: &TestApp) -> String {
        let slug = &self.org.slug;
        let mut out = String::new();
        for p in [
            "",
            "/agents",
            "/clients",
            "/partners",
            "/api-keys",
            "/keys",
            "/users",
            "/invites",
            "/ownership-transfer",
            "/enrollment-tokens",
        ] {
            let (st, mut v) = app
                .admin(
                    Method::GET,
                    &format!("/api/v1/orgs/{slug}{p}?limit=500"),
                    None,
                )
                .await;
            if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
                for i in items {
                    if let Some(o) = i.as_object_mut() {
                        o.remove("last_used_at");
                        o.remove("last_used_ip");
                    }
                }
            }
            out.push_str(&format!("{p} {st} {v}\n"));
        }
        let (_, orgs) = app.admin(Method::GET, "/api/v1/orgs?limit=500", None).await;
        out.push_str(&orgs.to_string());
        out
    }
}

async fn send(
    app: &TestApp,
    token: Option<&str>,
    method: &Method,
    path: &str,
    takes_body: bool,
) -> (StatusCode, Value) {
    let body = takes_body.then(|| json!({"zz_not_a_member": true}));
    match token {
        Some(t) => call(app, t, method.clone(), path, body).await,
        None => {
            let mut req = app.http.request(method.clone(), app.url(path));
            if let Some(b) = body {
                req = req.json(&b);
            }
            json_of(req.send().await.unwrap()).await
        }
    }
}

/// Operations a person does as themselves, whatever their role (accepting an ownership
/// transfer that names them): declared `member`, they change state, and every principal that
/// is not that person (every principal of this test: keys and platform tokens; the person's
/// own token succeeds in `openapi::responses_match_the_document`) is refused 403 by the use
/// case.
const PERSON_ONLY: &[(&str, &str)] = &[("post", "/api/v1/orgs/{org}/ownership-transfer/accept")];

async fn every_admin_operation_by_every_principal(backend: Backend) {
    // Hundreds of refused credentials from one address: the failure brake would answer 429.
    let app = spawn_app_with(backend, |s| s.auth_failure_limit = 0).await;
    let (st, doc) = app.get_json(&app.url("/api/v1/openapi.json")).await;
    assert_eq!(st, StatusCode::OK);
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let Ok(method) = m.to_uppercase().parse::<Method>() else {
                continue;
            };
            let need = op["x-agentidp-role"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {template} declares no x-agentidp-role"))
                .to_owned();
            // `member` reads everything but changes nothing: a change needs at least `admin`
            // (but for what a person does as themselves, see `PERSON_ONLY`).
            assert!(
                method == Method::GET
                    || PERSON_ONLY.contains(&(m.as_str(), template.as_str()))
                    || ["platform", "owner", "admin", "scim"].contains(&need.as_str()),
                "{m} {template} changes state but needs only {need:?}"
            );
            ops.push((
                method,
                template.clone(),
                need,
                op.get("requestBody").is_some(),
            ));
        }
    }
    assert!(ops.len() >= 30, "only {} operations", ops.len());
    let mut checked = 0;
    // One world for every operation (each check makes its own objects; refusals are compared
    // with a snapshot): only deleting the organization gets a world of its own.
    let world = World::new(&app).await;
    for (method, template, need, takes_body) in &ops {
        if need == "public" {
            let (st, _) = send(&app, None, method, template, false).await;
            assert_eq!(st, StatusCode::OK, "{method} {template} is public");
            continue;
        }
        // Refusals first, each on one set of objects, with nothing changed.
        let path = world.path(&app, template).await;
        for who in EVERYONE {
            let Some(status) = expected(need, who) else {
                continue;
            };
            let before = world.snapshot(&app).await;
            let token = world.token(&app, who);
            let (st, v) = send(&app, token.as_deref(), method, &path, *takes_body).await;
            assert_eq!(
                st, status,
                "{who:?} {method} {template} (needs {need}): {v}"
            );
            assert!(v["error"].is_string(), "{who:?} {method} {template}: {v}");
            assert_eq!(
                world.snapshot(&app).await,
                before,
                "{who:?} {method} {template} changed state"
            );
            checked += 1;
        }
        // Then the allowed ones, each on fresh objects (deleting the organization: a world each).
        for who in EVERYONE {
            if expected(need, who).is_some() {
                continue;
            }
            let fresh;
            let w = if *method == Method::DELETE && template.ends_with("{org}") {
                fresh = World::new(&app).await;
                &fresh
            } else {
                &world
            };
            let path = w.path(&app, template).await;
            let token = w.token(&app, who);
            if PERSON_ONLY.contains(&(method.as_str().to_lowercase().as_str(), template.as_str())) {
                // No principal here is a person: each passes the role check and is refused
                // by the use case, changing nothing.
                let before = w.snapshot(&app).await;
                let (st, v) = send(&app, token.as_deref(), method, &path, *takes_body).await;
                assert_eq!(
                    st,
                    StatusCode::FORBIDDEN,
                    "{who:?} {method} {template}: {v}"
                );
                assert_eq!(
                    w.snapshot(&app).await,
                    before,
                    "{who:?} {method} {template}"
                );
                checked += 1;
                continue;
            }
            let (st, v) = send(&app, token.as_deref(), method, &path, *takes_body).await;
            assert!(
                !matches!(st.as_u16(), 401 | 403 | 404 | 405) && !st.is_server_error(),
                "{who:?} {method} {template} (needs {need}) should pass authorization: {st} {v}"
            );
            if *takes_body {
                assert_eq!(
                    st,
                    StatusCode::BAD_REQUEST,
                    "{who:?} {method} {template}: {v}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked} checks");
}

#[test]
fn the_expectations_follow_the_interface_rules() {
    assert_eq!(
        expected("member", Who::OtherOwner),
        Some(StatusCode::NOT_FOUND)
    );
    assert_eq!(expected("admin", Who::Member), Some(StatusCode::FORBIDDEN));
    assert_eq!(expected("admin", Who::Admin), None);
    assert_eq!(expected("owner", Who::Admin), Some(StatusCode::FORBIDDEN));
    assert_eq!(expected("member", Who::Scim), Some(StatusCode::FORBIDDEN));
    assert_eq!(
        expected("platform", Who::Owner),
        Some(StatusCode::FORBIDDEN)
    );
    assert_eq!(expected("platform", Who::Platform), None);
    assert_eq!(expected("authenticated", Who::Member), None);
    assert_eq!(
        expected("member", Who::Revoked),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        expected("member", Who::FencedOwner),
        Some(StatusCode::FORBIDDEN)
    );
}

on_all_backends!(every_admin_operation_by_every_principal);
