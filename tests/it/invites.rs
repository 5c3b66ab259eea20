//! Invites (issue 12, first part): created by an admin with a role (never above the inviter's),
//! shown once as a link; the invitee's HTML page accepts (creating the account) or declines;
//! single use, revocable, expiring after 30 days on the injected clock; at most 100 pending per
//! address across the instance; the pages' security headers, escaping and hostile forms.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::api_keys::{api_key, call};
use super::users::{PASSWORD, email, user};
use crate::on_all_backends;
use crate::support::*;

async fn invite(app: &TestApp, org: &TestOrg, email: &str, role: &str) -> Value {
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/invites", org.slug),
            Some(json!({"email": email, "role": role})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

/// The invite link's path (`/orgs/{slug}/invites/{token}`).
fn link(app: &TestApp, v: &Value) -> String {
    v["accept_url"]
        .as_str()
        .unwrap()
        .strip_prefix(&app.base)
        .expect("the link is on this server")
        .to_owned()
}

pub async fn page(app: &TestApp, path: &str) -> (StatusCode, HeaderMap, String) {
    let resp = app.http.get(app.url(path)).send().await.unwrap();
    let (st, h) = (resp.status(), resp.headers().clone());
    (st, h, resp.text().await.unwrap())
}

pub async fn submit(
    app: &TestApp,
    path: &str,
    body: impl Into<reqwest::Body>,
    extra: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut req = app
        .http
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let (st, h) = (resp.status(), resp.headers().clone());
    (st, h, resp.text().await.unwrap())
}

pub fn form(fields: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

fn accept(name: &str, password: &str) -> String {
    form(&[("action", "accept"), ("name", name), ("password", password)])
}

#[track_caller]
fn assert_page_headers(h: &HeaderMap) {
    let get = |n: &str| {
        h.get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(get("content-type").starts_with("text/html"), "{h:?}");
    let csp = get("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script at all: {csp}");
    assert_eq!(get("x-content-type-options"), "nosniff");
    assert_eq!(get("referrer-policy"), "no-referrer");
    assert_eq!(get("cache-control"), "no-store");
}

async fn find_user(app: &TestApp, org: &TestOrg, email: &str) -> Vec<Value> {
    let (st, v) = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/orgs/{}/users?email={}",
                org.slug,
                url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>()
            ),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["items"].as_array().unwrap().clone()
}

async fn pending(app: &TestApp, org: &TestOrg) -> Vec<Value> {
    let (st, v) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/invites?limit=500", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["items"].as_array().unwrap().clone()
}

async fn accept_creates_the_account(backend: Backend) {
    let app = spawn_app(backend).await;
    // An organization whose name needs escaping.
    let slug = random_slug();
    let (st, v) = app
        .admin(
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"slug": slug, "name": "<b>Acme</b> & \"Co\""})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let org = TestOrg {
        slug: slug.clone(),
        id: v["id"].as_str().unwrap().to_owned(),
        issuer: v["issuer"].as_str().unwrap().to_owned(),
        did: v["did"].as_str().unwrap_or_default().to_owned(),
    };
    let address = format!("New.Person+{}@Example.com", uuid::Uuid::new_v4().simple());
    let now = agentidp::model::Clock::now(app.clock.as_ref());
    let inv = invite(&app, &org, &address, "admin").await;
    assert_eq!(inv["email"], address.as_str());
    assert_eq!(inv["role"], "admin");
    let expires = agentidp::model::parse_rfc3339(inv["expires_at"].as_str().unwrap()).unwrap();
    assert!((expires - now - 30 * 24 * 3600).abs() <= 5, "{inv}");
    let url = inv["accept_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/invites/aidp_i_", org.issuer)),
        "{url}"
    );
    let path = link(&app, &inv);

    // Listed without its link.
    let list = pending(&app, &org).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], inv["id"]);
    assert!(list[0].get("accept_url").is_none(), "{list:?}");

    // The page: organization, address, role, a form; escaped; the security headers.
    let (st, h, html) = page(&app, &path).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_page_headers(&h);
    assert!(
        html.contains("&lt;b&gt;Acme&lt;/b&gt; &amp; &quot;Co&quot;"),
        "{html}"
    );
    assert!(!html.contains("<b>Acme"), "{html}");
    assert!(html.contains(&address) && html.contains("admin"), "{html}");
    assert!(
        html.contains("<form method=\"post\"") && !html.contains("<script"),
        "{html}"
    );
    assert!(html.contains("value=\"accept\"") && html.contains("value=\"decline\""));

    // A password too short: the form again with the reason, nothing created.
    let (st, h, html) = submit(&app, &path, accept("Ada", "short"), &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{html}");
    assert_page_headers(&h);
    assert!(html.contains("at least 12"), "{html}");
    assert!(find_user(&app, &org, &address).await.is_empty());

    // Accepted, from the page's own origin, with a name that is markup.
    let name = "<script>alert('x')</script>";
    let origin = url::Url::parse(&app.base)
        .unwrap()
        .origin()
        .ascii_serialization();
    let (st, h, html) = submit(&app, &path, accept(name, PASSWORD), &[("origin", &origin)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_page_headers(&h);
    assert!(!html.contains("<script"), "{html}");
    let found = find_user(&app, &org, &address.to_uppercase()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let u = &found[0];
    assert_eq!(u["role"], "admin");
    assert_eq!(u["status"], "active");
    assert_eq!(u["email_verified"], true);
    assert_eq!(u["name"], name);
    assert_eq!(u["email"], address.as_str());

    // Single use: the page and the form answer 410 and change nothing.
    let (st, h, _) = page(&app, &path).await;
    assert_eq!(st, StatusCode::GONE);
    assert_page_headers(&h);
    let (st, _, _) = submit(&app, &path, accept("Again", PASSWORD), &[]).await;
    assert_eq!(st, StatusCode::GONE);
    let (st, _, _) = submit(&app, &path, form(&[("action", "decline")]), &[]).await;
    assert_eq!(st, StatusCode::GONE);
    assert_eq!(find_user(&app, &org, &address).await.len(), 1);
    assert!(pending(&app, &org).await.is_empty());
    // Inviting a user of the organization: 409.
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/invites", org.slug),
            Some(json!({"email": address.to_lowercase(), "role": "member"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
}

async fn decline_revoke_and_expiry(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let other = app.create_org().await;

    // Declined: nothing created, the link is spent.
    let who = email();
    let inv = invite(&app, &org, &who, "member").await;
    let path = link(&app, &inv);
    let (st, _, html) = submit(
        &app,
        &path,
        form(&[("action", "decline"), ("name", ""), ("password", "")]),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    let (st, _, _) = page(&app, &path).await;
    assert_eq!(st, StatusCode::GONE);
    let (st, _, _) = submit(&app, &path, accept("Late", PASSWORD), &[]).await;
    assert_eq!(st, StatusCode::GONE);
    assert!(find_user(&app, &org, &who).await.is_empty());

    // Revoked: the link stops at once.
    let inv = invite(&app, &org, &email(), "member").await;
    let path = link(&app, &inv);
    let admin_path = format!(
        "/api/v1/orgs/{}/invites/{}",
        org.slug,
        inv["id"].as_str().unwrap()
    );
    // Another organization's invite id: 404.
    let (st, _) = app
        .admin(
            Method::DELETE,
            &format!(
                "/api/v1/orgs/{}/invites/{}",
                other.slug,
                inv["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = page(&app, &path).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = app.admin(Method::DELETE, &admin_path, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = page(&app, &path).await;
    assert_eq!(st, StatusCode::GONE);
    let (st, _, _) = submit(&app, &path, accept("Ada", PASSWORD), &[]).await;
    assert_eq!(st, StatusCode::GONE);
    let (st, _) = app.admin(Method::DELETE, &admin_path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The link on another organization's path is no invite there.
    let inv = invite(&app, &org, &email(), "member").await;
    let path = link(&app, &inv);
    let moved = path.replacen(
        &format!("/orgs/{}/", org.slug),
        &format!("/orgs/{}/", other.slug),
        1,
    );
    let (st, h, _) = page(&app, &moved).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_page_headers(&h);

    // Expired after 30 days (the injected clock, no sleeping): 410, and no longer listed.
    let (st, _, _) = page(&app, &path).await;
    assert_eq!(st, StatusCode::OK);
    app.advance(Duration::from_secs(30 * 24 * 3600 + 1));
    let (st, _, _) = page(&app, &path).await;
    assert_eq!(st, StatusCode::GONE);
    let (st, _, _) = submit(&app, &path, accept("Ada", PASSWORD), &[]).await;
    assert_eq!(st, StatusCode::GONE);
    assert!(pending(&app, &org).await.is_empty());
    let (st, _) = app
        .admin(
            Method::DELETE,
            &format!(
                "/api/v1/orgs/{}/invites/{}",
                org.slug,
                inv["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "an expired invite is not pending"
    );
}

async fn invite_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let invites = format!("/api/v1/orgs/{}/invites", org.slug);
    let admin = api_key(&app, &org, json!({"name": "a", "role": "admin"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let member = api_key(&app, &org, json!({"name": "m", "role": "member"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = api_key(&app, &org, json!({"name": "o", "role": "owner"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = |role: &str| json!({"email": email(), "role": role});
    let (st, v) = call(&app, &admin, Method::POST, &invites, Some(body("owner"))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "role");
    let (st, owner_invite) = call(&app, &owner, Method::POST, &invites, Some(body("owner"))).await;
    assert_eq!(st, StatusCode::CREATED, "{owner_invite}");
    let (st, v) = call(&app, &admin, Method::POST, &invites, Some(body("admin"))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["created_by"].as_str().unwrap().split(':').next(),
        Some("api_key")
    );
    let (st, _) = call(&app, &member, Method::POST, &invites, Some(body("member"))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = call(&app, &member, Method::GET, &invites, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        v.to_string().contains("aidp_i_").eq(&false),
        "never the token: {v}"
    );
    // An admin does not revoke an owner's invite; an owner does.
    let p = format!("{invites}/{}", owner_invite["id"].as_str().unwrap());
    let (st, _) = call(&app, &admin, Method::DELETE, &p, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, &owner, Method::DELETE, &p, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for (b, field) in [
        (json!({"email": "nope", "role": "member"}), "email"),
        (json!({"email": email(), "role": "scim"}), "role"),
    ] {
        let (st, v) = app.admin(Method::POST, &invites, Some(b)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], field);
    }
    let (st, _) = app
        .admin(Method::POST, &invites, Some(json!({"email": email()})))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // An address that is a user of the organization: 409, compared case-insensitively.
    let u = user(&app, &org, "member").await;
    let (st, v) = app
        .admin(
            Method::POST,
            &invites,
            Some(json!({"email": u["email"].as_str().unwrap().to_uppercase(), "role": "member"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
}

/// 100 pending invites per address across every organization of the instance.
async fn at_most_100_pending_per_address(backend: Backend) {
    let app = spawn_app(backend).await;
    // One pending invite per address and organization, so the cap takes 100 organizations:
    // one tenant alone cannot block an address everywhere.
    let mut orgs = Vec::new();
    for _ in 0..101 {
        orgs.push(app.create_org().await);
    }
    let who = email();
    let post = async |org: &TestOrg, address: &str| {
        app.admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/invites", org.slug),
            Some(json!({"email": address, "role": "member"})),
        )
        .await
    };
    let mut first = None;
    for (i, org) in orgs.iter().take(100).enumerate() {
        // Mixed case: the cap counts the normalized address.
        let address = if i % 2 == 0 {
            who.clone()
        } else {
            who.to_uppercase()
        };
        let v = invite(&app, org, &address, "member").await;
        first.get_or_insert(v);
    }
    let (st, v) = post(&orgs[1], &who.to_uppercase()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("pending invite of this organization"),
        "{v}"
    );
    let (st, v) = post(&orgs[100], &who).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("100 pending"),
        "{v}"
    );
    // Another address is not affected; a revoked invite frees a place.
    invite(&app, &orgs[0], &email(), "member").await;
    let first = first.unwrap();
    let (st, _) = app
        .admin(
            Method::DELETE,
            &format!(
                "/api/v1/orgs/{}/invites/{}",
                orgs[0].slug,
                first["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    invite(&app, &orgs[100], &who, "member").await;
    // Expired ones do not count.
    app.advance(Duration::from_secs(30 * 24 * 3600 + 1));
    invite(&app, &orgs[1], &who, "member").await;
}

/// A form body, extra headers, and the status it must get.
type Case = (String, Vec<(&'static str, &'static str)>, StatusCode);

async fn hostile_forms_get_4xx_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let who = email();
    let inv = invite(&app, &org, &who, "member").await;
    let path = link(&app, &inv);
    let good = accept("Ada", PASSWORD);
    let cases: Vec<Case> = vec![
        (
            good.clone(),
            vec![("origin", "https://evil.example")],
            StatusCode::FORBIDDEN,
        ),
        (
            good.clone(),
            vec![("origin", "null")],
            StatusCode::FORBIDDEN,
        ),
        (
            format!("{good}&name=Twice"),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{good}&action=decline"),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{good}&admin=true"),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            form(&[("name", "Ada"), ("password", PASSWORD)]),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            form(&[("action", "delete")]),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            accept(&"n".repeat(201), PASSWORD),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            accept("Ada", &"p".repeat(257)),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            accept("Ada\u{202e}", PASSWORD),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            "action=accept&name=%ZZ&password=%".into(),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("name={}", "a".repeat(9000)),
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            good.clone(),
            vec![("content-type", "application/json")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (body, headers, want) in cases {
        let mut req = app
            .http
            .post(app.url(&path))
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body.clone()).send().await.unwrap();
        let (st, h) = (resp.status(), resp.headers().clone());
        let html = resp.text().await.unwrap();
        assert_eq!(
            st,
            want,
            "{headers:?} {}: {html}",
            &body[..body.len().min(80)]
        );
        assert!(
            h["content-type"].to_str().unwrap().starts_with("text/html"),
            "{headers:?} {}: {html}",
            &body[..body.len().min(80)]
        );
        assert_page_headers(&h);
    }
    // Invalid UTF-8.
    let (st, h, _) = submit(&app, &path, b"action=accept&name=\xff\xfe".to_vec(), &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_page_headers(&h);
    // Tokens that are no invite: 404 pages, never a 500.
    let token = path.rsplit('/').next().unwrap();
    let mut wrong = token.to_owned();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let base = format!("/orgs/{}/invites", org.slug);
    for t in [
        "garbage".to_owned(),
        wrong,
        format!("{token}x"),
        "aidp_i_".to_owned(),
        "%FF%FE".to_owned(),
        "a".repeat(4000),
    ] {
        let (st, h, _) = page(&app, &format!("{base}/{t}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{t}");
        assert_page_headers(&h);
        let (st, _, _) = submit(&app, &format!("{base}/{t}"), good.clone(), &[]).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{t}");
    }
    let (st, _, _) = page(&app, &format!("/orgs/nosuchorg/invites/{token}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // None of it changed anything: the invite is still pending and accepts.
    assert!(find_user(&app, &org, &who).await.is_empty());
    let (st, _, html) = submit(&app, &path, good, &[]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
}

/// Eight acceptances of one link at once create one account.
async fn concurrent_accepts_create_one_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let who = email();
    let inv = invite(&app, &org, &who, "member").await;
    let path = link(&app, &inv);
    let tries = (0..8).map(|i| {
        let (app, path) = (&app, &path);
        async move {
            let (st, _, html) =
                submit(app, path, accept(&format!("Racer {i}"), PASSWORD), &[]).await;
            assert!(
                st == StatusCode::OK || st == StatusCode::GONE,
                "{st} {html}"
            );
            st == StatusCode::OK
        }
    });
    let won = futures_util::future::join_all(tries).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert_eq!(find_user(&app, &org, &who).await.len(), 1);
}

on_all_backends!(
    accept_creates_the_account,
    decline_revoke_and_expiry,
    invite_rules,
    at_most_100_pending_per_address,
    hostile_forms_get_4xx_pages,
    concurrent_accepts_create_one_account,
);
