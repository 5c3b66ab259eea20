//! User accounts (issue 12, first part): CRUD through the admin API, the role rules (member
//! reads, admin manages below owner, only an owner touches an owner, a key never grants above
//! itself), the last active owner, duplicate emails (case-insensitive), the password policy and
//! another organization's users (404).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::api_keys::{api_key, call};
use crate::on_all_backends;
use crate::support::*;

pub const PASSWORD: &str = "correct horse battery";

pub fn email() -> String {
    format!("p{}@example.com", uuid::Uuid::new_v4().simple())
}

/// Creates a user of `org` with the platform token; its JSON.
pub async fn user(app: &TestApp, org: &TestOrg, role: &str) -> Value {
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/users", org.slug),
            Some(json!({"email": email(), "name": "Person", "role": role})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

fn key_of(v: &Value) -> String {
    v["key"].as_str().unwrap().to_owned()
}

async fn users_round_trip(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let users = format!("/api/v1/orgs/{}/users", org.slug);

    let (st, ada) = app
        .admin(
            Method::POST,
            &users,
            Some(json!({"email": " Ada.Lovelace@Example.COM ", "name": "Ada", "role": "owner", "password": PASSWORD})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ada}");
    assert_eq!(ada["email"], "Ada.Lovelace@Example.COM");
    assert_eq!(ada["role"], "owner");
    assert_eq!(ada["status"], "active");
    assert_eq!(ada["email_verified"], false);
    assert!(
        ada["created_at"].is_string() && ada["id"].is_string(),
        "{ada}"
    );
    let text = ada.to_string();
    assert!(
        !text.contains("argon2") && !text.contains("password"),
        "{ada}"
    );
    let id = ada["id"].as_str().unwrap().to_owned();

    // The default role is member; no password is fine.
    let (st, bob) = app
        .admin(
            Method::POST,
            &users,
            Some(json!({"email": "bob@example.com", "name": "Bob"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bob}");
    assert_eq!(bob["role"], "member");

    // Duplicate email, compared trimmed and case-insensitively: 409 (in this organization
    // only: the other organization may have the same address).
    let (st, v) = app
        .admin(
            Method::POST,
            &users,
            Some(json!({"email": "ada.lovelace@example.com", "name": "Twin"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "conflict");
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/users", other.slug),
            Some(json!({"email": "ADA.lovelace@example.com", "name": "Ada elsewhere"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // Validation: a precise field error each.
    for (body, field) in [
        (
            json!({"email": email(), "name": "x", "password": "short"}),
            "password",
        ),
        (
            json!({"email": email(), "name": "x", "password": "x".repeat(257)}),
            "password",
        ),
        (json!({"email": "not-an-email", "name": "x"}), "email"),
        (json!({"email": "a@b@c", "name": "x"}), "email"),
        (
            json!({"email": format!("{}@example.com", "a".repeat(250)), "name": "x"}),
            "email",
        ),
        (json!({"email": email(), "name": ""}), "name"),
        (json!({"email": email(), "name": "x".repeat(201)}), "name"),
        (
            json!({"email": email(), "name": "x", "role": "scim"}),
            "role",
        ),
        (
            json!({"email": email(), "name": "x", "role": "root"}),
            "role",
        ),
    ] {
        let (st, v) = app.admin(Method::POST, &users, Some(body.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let (st, v) = app
        .admin(
            Method::POST,
            &users,
            Some(json!({"email": email(), "name": "x", "password_hash": "$argon2id$"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = app
        .admin(
            Method::POST,
            &users,
            Some(json!({"email": email(), "name": "x", "password": "twelve bytes"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "exactly 12 bytes is enough: {v}");

    // Read, list and filter.
    let (st, v) = app.admin(Method::GET, &format!("{users}/{id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v, ada);
    let (st, v) = app
        .admin(
            Method::GET,
            &format!("{users}?email=ADA.LOVELACE@example.com"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["items"][0]["id"], id.as_str());
    let (_, v) = app
        .admin(Method::GET, &format!("{users}?role=owner"), None)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = app
        .admin(Method::GET, &format!("{users}?status=suspended"), None)
        .await;
    assert_eq!(v["items"], json!([]), "{v}");
    let (_, v) = app
        .admin(Method::GET, &format!("{users}?limit=2"), None)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let next = v["next"].as_str().expect("a next page").to_owned();
    let (_, v) = app
        .admin(Method::GET, &format!("{users}?limit=2&after={next}"), None)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    for q in ["role=scim", "status=gone", "email=nope", "limit=0"] {
        let (st, v) = app.admin(Method::GET, &format!("{users}?{q}"), None).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {v}");
    }

    // Change and delete.
    let b = format!("{users}/{}", bob["id"].as_str().unwrap());
    let (st, v) = app
        .admin(
            Method::PATCH,
            &b,
            Some(json!({"name": "Robert", "role": "admin", "status": "suspended"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["name"], &v["role"], &v["status"]),
        (&json!("Robert"), &json!("admin"), &json!("suspended"))
    );
    for (body, field) in [
        (json!({"status": "deleted"}), "status"),
        (json!({"role": "scim"}), "role"),
        (json!({"name": " "}), "name"),
    ] {
        let (st, v) = app.admin(Method::PATCH, &b, Some(body.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field);
    }
    let (st, v) = app
        .admin(Method::PATCH, &b, Some(json!({"email": "x@y.z"})))
        .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "the email is not changed here: {v}"
    );
    let (st, _) = app.admin(Method::DELETE, &b, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app.admin(Method::GET, &b, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = app.admin(Method::DELETE, &b, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Deleted, the address may be used again.
    let (st, v) = app
        .admin(
            Method::POST,
            &users,
            Some(json!({"email": "BOB@example.com", "name": "Bob again"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // Another organization's user id: 404, for the platform on the other organization's path
    // and for the other organization's owner.
    let elsewhere = format!("/api/v1/orgs/{}/users/{id}", other.slug);
    for m in [Method::GET, Method::DELETE] {
        let (st, _) = app.admin(m.clone(), &elsewhere, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{m}");
    }
    let (st, _) = app
        .admin(Method::PATCH, &elsewhere, Some(json!({"role": "member"})))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let other_owner = key_of(&api_key(&app, &other, json!({"name": "o", "role": "owner"})).await);
    let (st, _) = call(
        &app,
        &other_owner,
        Method::GET,
        &format!("{users}/{id}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&app, &other_owner, Method::GET, &users, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn role_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let users = format!("/api/v1/orgs/{}/users", org.slug);
    let owner = key_of(&api_key(&app, &org, json!({"name": "o", "role": "owner"})).await);
    let admin = key_of(&api_key(&app, &org, json!({"name": "a", "role": "admin"})).await);
    let member = key_of(&api_key(&app, &org, json!({"name": "m", "role": "member"})).await);
    let first_owner = user(&app, &org, "owner").await;
    let o1 = format!("{users}/{}", first_owner["id"].as_str().unwrap());
    let second_owner = user(&app, &org, "owner").await;
    let o2 = format!("{users}/{}", second_owner["id"].as_str().unwrap());
    let a_user = user(&app, &org, "admin").await;
    let a = format!("{users}/{}", a_user["id"].as_str().unwrap());
    let m_user = user(&app, &org, "member").await;
    let m = format!("{users}/{}", m_user["id"].as_str().unwrap());

    // A member reads, and changes nothing.
    let (st, _) = call(&app, &member, Method::GET, &users, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(&app, &member, Method::GET, &m, None).await;
    assert_eq!(st, StatusCode::OK);
    let new = || json!({"email": email(), "name": "n", "role": "member"});
    let (st, _) = call(&app, &member, Method::POST, &users, Some(new())).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, &member, Method::PATCH, &m, Some(json!({"name": "x"}))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, &member, Method::DELETE, &m, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // An admin manages admins and members...
    for role in ["member", "admin"] {
        let (st, v) = call(
            &app,
            &admin,
            Method::POST,
            &users,
            Some(json!({"email": email(), "name": "n", "role": role})),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{role}: {v}");
    }
    let (st, v) = call(
        &app,
        &admin,
        Method::PATCH,
        &m,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(
        &app,
        &admin,
        Method::PATCH,
        &m,
        Some(json!({"role": "member", "status": "suspended"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // ...but makes no owner, and touches no owner.
    let (st, v) = call(
        &app,
        &admin,
        Method::POST,
        &users,
        Some(json!({"email": email(), "name": "n", "role": "owner"})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "role");
    let (st, _) = call(
        &app,
        &admin,
        Method::PATCH,
        &m,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(
        &app,
        &admin,
        Method::PATCH,
        &o1,
        Some(json!({"name": "renamed"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(
        &app,
        &admin,
        Method::PATCH,
        &o1,
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, &admin, Method::DELETE, &o1, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, v) = app.admin(Method::GET, &o1, None).await;
    assert_eq!(v, first_owner, "nothing changed");

    // An owner key touches owners and makes them.
    let (st, v) = call(
        &app,
        &owner,
        Method::PATCH,
        &a,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(
        &app,
        &owner,
        Method::PATCH,
        &a,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(
        &app,
        &owner,
        Method::PATCH,
        &o2,
        Some(json!({"name": "Second"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // The last active owner: neither deleted, demoted nor suspended (409), by anyone.
    let (st, _) = call(&app, &owner, Method::DELETE, &o2, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "another owner remains");
    for (method, body) in [
        (Method::DELETE, None),
        (Method::PATCH, Some(json!({"role": "admin"}))),
        (Method::PATCH, Some(json!({"status": "suspended"}))),
    ] {
        let (st, v) = call(&app, &owner, method.clone(), &o1, body.clone()).await;
        assert_eq!(st, StatusCode::CONFLICT, "{method} {body:?}: {v}");
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("last active owner"),
            "{v}"
        );
        let (st, _) = app.admin(method.clone(), &o1, body.clone()).await;
        assert_eq!(
            st,
            StatusCode::CONFLICT,
            "the platform too: {method} {body:?}"
        );
    }
    let (_, v) = app.admin(Method::GET, &o1, None).await;
    assert_eq!(
        (&v["role"], &v["status"]),
        (&json!("owner"), &json!("active"))
    );
    // Renaming the last owner is fine; a suspended owner does not count as one.
    let (st, _) = app
        .admin(Method::PATCH, &o1, Some(json!({"name": "Still owner"})))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = app
        .admin(
            Method::PATCH,
            &a,
            Some(json!({"role": "owner", "status": "suspended"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = app.admin(Method::DELETE, &o1, None).await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "a suspended owner is not an active one"
    );
    let (st, _) = app
        .admin(Method::PATCH, &a, Some(json!({"status": "active"})))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = app.admin(Method::DELETE, &o1, None).await;
    assert_eq!(
        st,
        StatusCode::NO_CONTENT,
        "now another active owner exists"
    );
}

/// Eight owners demoted at once: the rule holds under concurrency (seven succeed, one is
/// refused, one active owner remains), on every backend.
async fn the_last_owner_survives_a_race(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let users = format!("/api/v1/orgs/{}/users", org.slug);
    let mut paths = Vec::new();
    for _ in 0..8 {
        let u = user(&app, &org, "owner").await;
        paths.push(format!("{users}/{}", u["id"].as_str().unwrap()));
    }
    let demotions = paths.iter().enumerate().map(|(i, p)| {
        let app = &app;
        async move {
            let body = if i % 2 == 0 {
                json!({"role": "member"})
            } else {
                json!({"status": "suspended"})
            };
            let (st, v) = if i % 3 == 0 {
                app.admin(Method::DELETE, p, None).await
            } else {
                app.admin(Method::PATCH, p, Some(body)).await
            };
            assert!(st.is_success() || st == StatusCode::CONFLICT, "{st} {v}");
            st.is_success()
        }
    });
    let done = futures_util::future::join_all(demotions).await;
    assert_eq!(done.iter().filter(|ok| **ok).count(), 7, "{done:?}");
    let (_, v) = app
        .admin(
            Method::GET,
            &format!("{users}?role=owner&status=active"),
            None,
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
}

/// Issue 11's "transferring ownership" with people: an owner makes another person owner, then
/// steps down (no longer the last owner); an admin can do neither; the last owner cannot step
/// down. (The variant where the new owner must accept comes with sign-in, issue 12.)
async fn ownership_passes_from_one_person_to_another(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let path = |u: &Value| {
        format!(
            "/api/v1/orgs/{}/users/{}",
            org.slug,
            u["id"].as_str().unwrap()
        )
    };
    let old = user(&app, &org, "owner").await;
    let new = user(&app, &org, "admin").await;
    let owner_key = key_of(&api_key(&app, &org, json!({"name": "o", "role": "owner"})).await);
    let admin_key = key_of(&api_key(&app, &org, json!({"name": "a", "role": "admin"})).await);

    // An admin may not hand out ownership, nor take it away.
    let (st, v) = call(
        &app,
        &admin_key,
        Method::PATCH,
        &path(&new),
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = call(
        &app,
        &admin_key,
        Method::PATCH,
        &path(&old),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // The sole owner cannot step down before someone else is owner.
    let (st, v) = call(
        &app,
        &owner_key,
        Method::PATCH,
        &path(&old),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // The owner hands over: the other person becomes owner, then the old owner steps down.
    let (st, v) = call(
        &app,
        &owner_key,
        Method::PATCH,
        &path(&new),
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!((st, &v["role"]), (StatusCode::OK, &json!("owner")), "{v}");
    let (st, v) = call(
        &app,
        &owner_key,
        Method::PATCH,
        &path(&old),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!((st, &v["role"]), (StatusCode::OK, &json!("admin")), "{v}");
    let (st, owners) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/users?role=owner", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{owners}");
    let ids: Vec<&str> = owners["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [new["id"].as_str().unwrap()], "{owners}");
}

on_all_backends!(
    users_round_trip,
    role_rules,
    the_last_owner_survives_a_race,
    ownership_passes_from_one_person_to_another,
);
