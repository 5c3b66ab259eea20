//! Mail, email verification, password reset and ownership transfer (issue 12): delivered
//! through a real SMTP receiver ([`SmtpSink`]) when `AGENTIDP_SMTP_URL` is set, handed back
//! once to the admin otherwise; links single use, expiring on the injected clock, another
//! organization's answering like an unknown one, a GET changing nothing; the forgot-password
//! form answering alike for known and unknown addresses, rate limited; the transfer (accept,
//! revoke, expire, who may start it, the last-owner rule).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::api_keys::{api_key, call};
use super::invites::{form, page, submit};
use super::users::{PASSWORD, email};
use crate::on_all_backends;
use crate::support::*;

async fn with_smtp(backend: Backend) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = spawn_app_with(backend, move |s| {
        s.smtp_url = Some(agentidp::model::Secret::new(url));
        s.mail_from = Some("Agent IdP <idp@example.com>".into());
    })
    .await;
    (app, sink)
}

/// The path of a link on this server.
fn path_of(app: &TestApp, url: &str) -> String {
    url.strip_prefix(&app.base)
        .unwrap_or_else(|| panic!("{url} is not on {}", app.base))
        .to_owned()
}

async fn new_user(app: &TestApp, org: &TestOrg, role: &str) -> Value {
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

async fn get_user(app: &TestApp, org: &TestOrg, id: &str) -> Value {
    let (st, v) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/users/{id}", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// `POST .../users/{id}/{what}` with the platform token.
async fn ask_link(app: &TestApp, org: &TestOrg, id: &str, what: &str) -> (StatusCode, Value) {
    app.admin(
        Method::POST,
        &format!("/api/v1/orgs/{}/users/{id}/{what}", org.slug),
        None,
    )
    .await
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

const CONFIRM: &str = "action=confirm";

async fn invites_and_verification_are_mailed(backend: Backend) {
    let (app, sink) = with_smtp(backend).await;
    let org = app.create_org().await;

    // An invite: mailed, and the answer has no link.
    let to = email();
    let (st, inv) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/invites", org.slug),
            Some(json!({"email": to, "role": "member"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{inv}");
    assert!(inv.get("accept_url").is_none(), "{inv}");
    let link = sink.link_to(&to, "/invites/").await;
    let m = sink.last_to(&to).await;
    assert_eq!(m.from, "idp@example.com");
    assert!(m.header("subject").unwrap().contains("invited"), "{m:?}");
    let (st, _, html) = page(&app, &path_of(&app, &link)).await;
    assert_eq!(st, StatusCode::OK, "{html}");

    // A new account without a verified address is mailed a verification link.
    let user = new_user(&app, &org, "member").await;
    let addr = user["email"].as_str().unwrap();
    let link = path_of(&app, &sink.link_to(addr, "/verify-email/").await);
    // Opening it (what a mail scanner does) shows a button and changes nothing.
    for _ in 0..2 {
        let (st, _, html) = page(&app, &link).await;
        assert_eq!(st, StatusCode::OK, "{html}");
        assert!(
            html.contains("<form method=\"post\">") && html.contains(addr),
            "{html}"
        );
    }
    assert_eq!(
        get_user(&app, &org, &id(&user)).await["email_verified"],
        false
    );
    // A POST from another origin does nothing either.
    let (st, _, _) = submit(&app, &link, CONFIRM, &[("origin", "https://evil.example")]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        get_user(&app, &org, &id(&user)).await["email_verified"],
        false
    );
    // The button does it, once.
    let (st, _, html) = submit(&app, &link, CONFIRM, &[("origin", &app.base)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(
        get_user(&app, &org, &id(&user)).await["email_verified"],
        true
    );
    let (st, _, _) = submit(&app, &link, CONFIRM, &[]).await;
    assert_eq!(st, StatusCode::GONE);
    // Verified: asking again is a conflict.
    let (st, v) = ask_link(&app, &org, &id(&user), "verify-email").await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // An admin's request for a reset link: mailed, not in the answer.
    let (st, v) = ask_link(&app, &org, &id(&user), "password-reset").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["mailed"].clone(), v.get("url")),
        (json!(true), None),
        "{v}"
    );
    assert_eq!(v["purpose"], "password_reset");
    let link = sink.link_to(addr, "/password-reset/").await;
    assert!(link.contains("/password-reset/aidp_r_"), "{link}");
    assert!(sink.last_to(addr).await.text().contains("30 minutes"));

    // An ownership transfer is mailed to the person named.
    let admin = new_user(&app, &org, "admin").await;
    let (st, t) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/ownership-transfer", org.slug),
            Some(json!({"user_id": id(&admin)})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    assert!(t.get("accept_url").is_none(), "{t}");
    let to = admin["email"].as_str().unwrap();
    let link = path_of(&app, &sink.link_to(to, "/ownership-transfer/").await);
    let (st, _, html) = submit(&app, &link, CONFIRM, &[]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(get_user(&app, &org, &id(&admin)).await["role"], "owner");
}

async fn links_without_smtp_are_handed_back_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let user = new_user(&app, &org, "member").await;
    let (st, v) = ask_link(&app, &org, &id(&user), "verify-email").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["mailed"], false);
    assert_eq!(v["user_id"], user["id"]);
    let url = v["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/verify-email/aidp_v_", org.issuer)),
        "{url}"
    );
    let link = path_of(&app, url);
    let (st, _, _) = submit(&app, &link, CONFIRM, &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        get_user(&app, &org, &id(&user)).await["email_verified"],
        true
    );

    // Without mail the forgot-password form says to ask an administrator (and mails nothing).
    let forgot = format!("/orgs/{}/password-reset", org.slug);
    let (st, _, html) = page(&app, &forgot).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("ask an administrator"), "{html}");

    // Another organization's admin sees no such user.
    let other = app.create_org().await;
    let (st, _) = ask_link(&app, &other, &id(&user), "password-reset").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // An admin key may not send an owner's links; a member key nothing.
    let owner = new_user(&app, &org, "owner").await;
    let admin = api_key(&app, &org, json!({"name": "a", "role": "admin"})).await;
    let admin = admin["key"].as_str().unwrap();
    let p = format!(
        "/api/v1/orgs/{}/users/{}/password-reset",
        org.slug,
        id(&owner)
    );
    assert_eq!(
        call(&app, admin, Method::POST, &p, None).await.0,
        StatusCode::FORBIDDEN
    );
    let member = api_key(&app, &org, json!({"name": "m", "role": "member"})).await;
    let p = format!(
        "/api/v1/orgs/{}/users/{}/password-reset",
        org.slug,
        id(&user)
    );
    assert_eq!(
        call(
            &app,
            member["key"].as_str().unwrap(),
            Method::POST,
            &p,
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
}

async fn verification_links_expire(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let user = new_user(&app, &org, "member").await;
    let (_, v) = ask_link(&app, &org, &id(&user), "verify-email").await;
    let link = path_of(&app, v["url"].as_str().unwrap());
    assert_eq!(page(&app, &link).await.0, StatusCode::OK);
    app.advance(Duration::from_secs(24 * 3600 + 1));
    assert_eq!(page(&app, &link).await.0, StatusCode::GONE);
    assert_eq!(submit(&app, &link, CONFIRM, &[]).await.0, StatusCode::GONE);
    assert_eq!(
        get_user(&app, &org, &id(&user)).await["email_verified"],
        false
    );
}

async fn reset_links_are_single_use_and_end_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let user = new_user(&app, &org, "member").await;
    assert!(user.get("password_changed_at").is_none(), "{user}");
    let a = reset_link(&app, &org, &id(&user)).await;
    let b = reset_link(&app, &org, &id(&user)).await;
    let (st, _, html) = page(&app, &a).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("type=\"password\""), "{html}");
    // A password against the policy: the form again, the link still good.
    let (st, _, html) = submit(&app, &a, form(&[("password", "short")]), &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("password:"), "{html}");
    // Hostile forms: 4xx pages, never a 500, nothing used.
    for body in ["password=a&password=b", "colour=red", "password=%ff%fe"] {
        let (st, _, _) = submit(&app, &a, body, &[]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    }
    let big = format!("password={}", "x".repeat(9000));
    assert_eq!(
        submit(&app, &a, big, &[]).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    app.advance(Duration::from_secs(60));
    let (st, _, html) = submit(&app, &a, form(&[("password", PASSWORD)]), &[]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    let after = get_user(&app, &org, &id(&user)).await;
    assert!(after["password_changed_at"].is_string(), "{after}");
    assert_eq!(
        after["email_verified"], true,
        "the link went to the address"
    );
    // Used: gone; and the other pending link of the user ended with it.
    assert_eq!(
        submit(&app, &a, form(&[("password", PASSWORD)]), &[])
            .await
            .0,
        StatusCode::GONE
    );
    assert_eq!(page(&app, &b).await.0, StatusCode::GONE);
    // A new one works, until 30 minutes pass.
    let c = reset_link(&app, &org, &id(&user)).await;
    assert_eq!(page(&app, &c).await.0, StatusCode::OK);
    app.advance(Duration::from_secs(30 * 60 + 1));
    assert_eq!(page(&app, &c).await.0, StatusCode::GONE);
    assert_eq!(
        submit(&app, &c, form(&[("password", PASSWORD)]), &[])
            .await
            .0,
        StatusCode::GONE
    );
}

async fn reset_link(app: &TestApp, org: &TestOrg, user_id: &str) -> String {
    let (st, v) = ask_link(app, org, user_id, "password-reset").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    path_of(app, v["url"].as_str().unwrap())
}

async fn another_organizations_token_is_unknown(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let user = new_user(&app, &org, "member").await;
    let (_, v) = ask_link(&app, &org, &id(&user), "password-reset").await;
    let link = path_of(&app, v["url"].as_str().unwrap());
    let token = link.rsplit('/').next().unwrap();
    let elsewhere = format!("/orgs/{}/password-reset/{token}", other.slug);
    let garbage = format!("/orgs/{}/password-reset/aidp_r_nonsense", other.slug);
    let (st1, _, html1) = page(&app, &elsewhere).await;
    let (st2, _, html2) = page(&app, &garbage).await;
    assert_eq!((st1, st2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(
        html1, html2,
        "another organization's token answers like an unknown one"
    );
    let (st, _, _) = submit(&app, &elsewhere, form(&[("password", PASSWORD)]), &[]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A reset token is no verification token either (and the reverse).
    let as_verify = format!("/orgs/{}/verify-email/{token}", org.slug);
    assert_eq!(page(&app, &as_verify).await.0, StatusCode::NOT_FOUND);
    // The link still works where it belongs.
    assert_eq!(page(&app, &link).await.0, StatusCode::OK);
}

async fn forgot_password_answers_alike(backend: Backend) {
    let (app, sink) = with_smtp(backend).await;
    let org = app.create_org().await;
    let user = new_user(&app, &org, "member").await;
    let known = user["email"].as_str().unwrap().to_owned();
    // The creation's verification mail.
    sink.link_to(&known, "/verify-email/").await;
    let before = sink.messages().len();
    let forgot = format!("/orgs/{}/password-reset", org.slug);
    let (st, _, html) = page(&app, &forgot).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("name=\"email\""), "{html}");

    let ask = |addr: String| {
        let (app, forgot) = (&app, forgot.clone());
        async move { submit(app, &forgot, form(&[("email", &addr)]), &[]).await }
    };
    let (st_k, h_k, body_k) = ask(known.to_uppercase()).await;
    let (st_u, h_u, body_u) = ask(email()).await;
    assert_eq!((st_k, st_u), (StatusCode::OK, StatusCode::OK));
    assert_eq!(
        body_k, body_u,
        "known and unknown addresses get the same page"
    );
    assert_eq!(h_k.get("content-type"), h_u.get("content-type"));
    // Only the account got a mail, with a link that works.
    let got = sink.wait_for(before + 1).await;
    assert_eq!(got.len(), before + 1, "{got:?}");
    let link = path_of(&app, &sink.link_to(&known, "/password-reset/").await);
    let (st, _, _) = submit(&app, &link, form(&[("password", PASSWORD)]), &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(get_user(&app, &org, &id(&user)).await["password_changed_at"].is_string());

    // Per address, 3 an hour, for known and unknown ones alike (the first was above).
    let unknown = email();
    ask(unknown.clone()).await;
    for _ in 0..2 {
        assert_eq!(ask(known.clone()).await.0, StatusCode::OK);
        assert_eq!(ask(unknown.clone()).await.0, StatusCode::OK);
    }
    let (st_k, h_k, body_k) = ask(known.clone()).await;
    let (st_u, _, body_u) = ask(unknown.clone()).await;
    assert_eq!(
        (st_k, st_u),
        (StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS)
    );
    assert_eq!(body_k, body_u);
    assert!(h_k.get("retry-after").is_some());
    // An hour later (the injected clock), again.
    app.advance(Duration::from_secs(3600));
    assert_eq!(ask(known.clone()).await.0, StatusCode::OK);
    // A malformed address is a 400 page, the same whoever asks; another origin is refused.
    assert_eq!(
        ask("not an address".into()).await.0,
        StatusCode::BAD_REQUEST
    );
    let (st, _, _) = submit(
        &app,
        &forgot,
        form(&[("email", &known)]),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Per client address: 20 per 10 minutes, whatever the addresses.
    app.advance(Duration::from_secs(3600));
    let mut limited = false;
    for _ in 0..25 {
        if ask(email()).await.0 == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
    }
    assert!(limited, "the per-IP limit holds");
}

async fn ownership_transfer(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let base = format!("/api/v1/orgs/{}/ownership-transfer", org.slug);
    let alice = new_user(&app, &org, "owner").await;
    let bob = new_user(&app, &org, "admin").await;
    let carol = new_user(&app, &org, "member").await;
    let owner_key = api_key(&app, &org, json!({"name": "o", "role": "owner"})).await;
    let owner_key = owner_key["key"].as_str().unwrap().to_owned();
    let admin_key = api_key(&app, &org, json!({"name": "a", "role": "admin"})).await;
    let admin_key = admin_key["key"].as_str().unwrap().to_owned();
    let start = |token: String, body: Value| {
        let (app, base) = (&app, base.clone());
        async move { call(app, &token, Method::POST, &base, Some(body)).await }
    };

    // Not an owner: refused; nothing named yet.
    let (st, _) = start(admin_key.clone(), json!({"user_id": id(&bob)})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        app.admin(Method::GET, &base, None).await.0,
        StatusCode::NOT_FOUND
    );
    // Only an active admin or member may be named, and only an active owner hand over.
    for (body, field) in [
        (json!({"user_id": id(&alice)}), "user_id"),
        (
            json!({"user_id": uuid::Uuid::new_v4().to_string()}),
            "user_id",
        ),
        (
            json!({"user_id": id(&bob), "from_user_id": id(&carol)}),
            "from_user_id",
        ),
    ] {
        let (st, v) = start(owner_key.clone(), body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], field, "{v}");
    }

    // Alice hands over to Bob.
    let (st, t) = start(
        owner_key.clone(),
        json!({"user_id": id(&bob), "from_user_id": id(&alice)}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    assert_eq!(t["state"], "pending");
    assert_eq!(t["user_id"], bob["id"]);
    assert_eq!(t["from_user_id"], alice["id"]);
    assert!(
        t["initiated_by"].as_str().unwrap().starts_with("api_key:"),
        "{t}"
    );
    let link = path_of(&app, t["accept_url"].as_str().unwrap());
    // One at a time.
    let (st, v) = start(owner_key.clone(), json!({"user_id": id(&carol)})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, v) = app.admin(Method::GET, &base, None).await;
    assert_eq!((st, &v["id"]), (StatusCode::OK, &t["id"]), "{v}");
    assert!(v.get("accept_url").is_none(), "{v}");
    // A key is not the person named: the API acceptance is refused.
    let (st, _) = call(
        &app,
        &owner_key,
        Method::POST,
        &format!("{base}/accept"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Opening the link changes nothing.
    let (st, _, html) = page(&app, &link).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains(bob["email"].as_str().unwrap()), "{html}");
    assert_eq!(get_user(&app, &org, &id(&bob)).await["role"], "admin");
    // Accepting: Bob is an owner, Alice an admin, in one step.
    let (st, _, html) = submit(&app, &link, CONFIRM, &[("origin", &app.base)]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(get_user(&app, &org, &id(&bob)).await["role"], "owner");
    assert_eq!(get_user(&app, &org, &id(&alice)).await["role"], "admin");
    assert_eq!(submit(&app, &link, CONFIRM, &[]).await.0, StatusCode::GONE);
    assert_eq!(
        app.admin(Method::GET, &base, None).await.0,
        StatusCode::NOT_FOUND
    );
    // Bob is now the only owner: the last-owner rule holds.
    let (st, v) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/orgs/{}/users/{}", org.slug, id(&bob)),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // Revoked: the link stops working; revoking twice is 404; an admin may not revoke.
    let (st, t) = start(owner_key.clone(), json!({"user_id": id(&carol)})).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let link = path_of(&app, t["accept_url"].as_str().unwrap());
    assert_eq!(
        call(&app, &admin_key, Method::DELETE, &base, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, &owner_key, Method::DELETE, &base, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&app, &owner_key, Method::DELETE, &base, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(page(&app, &link).await.0, StatusCode::GONE);
    assert_eq!(submit(&app, &link, CONFIRM, &[]).await.0, StatusCode::GONE);
    assert_eq!(get_user(&app, &org, &id(&carol)).await["role"], "member");

    // Expired after 7 days: the link is gone, and a new transfer may start.
    let (st, t) = start(owner_key.clone(), json!({"user_id": id(&carol)})).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let link = path_of(&app, t["accept_url"].as_str().unwrap());
    app.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    assert_eq!(page(&app, &link).await.0, StatusCode::GONE);
    assert_eq!(submit(&app, &link, CONFIRM, &[]).await.0, StatusCode::GONE);
    assert_eq!(
        app.admin(Method::GET, &base, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (st, t2) = start(owner_key.clone(), json!({"user_id": id(&carol)})).await;
    assert_eq!(st, StatusCode::CREATED, "{t2}");
    assert_ne!(t2["id"], t["id"]);
    // Another organization's token is unknown there, and its transfer invisible.
    let other = app.create_org().await;
    let token = t2["accept_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let elsewhere = format!("/orgs/{}/ownership-transfer/{token}", other.slug);
    assert_eq!(page(&app, &elsewhere).await.0, StatusCode::NOT_FOUND);
    // Without `from_user_id` nobody steps down: Carol becomes an owner beside Bob.
    let link = path_of(&app, t2["accept_url"].as_str().unwrap());
    assert_eq!(submit(&app, &link, CONFIRM, &[]).await.0, StatusCode::OK);
    assert_eq!(get_user(&app, &org, &id(&carol)).await["role"], "owner");
    assert_eq!(get_user(&app, &org, &id(&bob)).await["role"], "owner");
}

/// A person suspended (or made an owner otherwise) after being named cannot accept any more.
async fn a_transfer_to_someone_no_longer_eligible_fails(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let base = format!("/api/v1/orgs/{}/ownership-transfer", org.slug);
    let _owner = new_user(&app, &org, "owner").await;
    let dave = new_user(&app, &org, "member").await;
    let (st, t) = app
        .admin(Method::POST, &base, Some(json!({"user_id": id(&dave)})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let (st, _) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/orgs/{}/users/{}", org.slug, id(&dave)),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let link = path_of(&app, t["accept_url"].as_str().unwrap());
    assert_eq!(page(&app, &link).await.0, StatusCode::GONE);
    assert_eq!(submit(&app, &link, CONFIRM, &[]).await.0, StatusCode::GONE);
    assert_eq!(get_user(&app, &org, &id(&dave)).await["role"], "member");
}

on_all_backends!(
    invites_and_verification_are_mailed,
    links_without_smtp_are_handed_back_once,
    verification_links_expire,
    reset_links_are_single_use_and_end_each_other,
    another_organizations_token_is_unknown,
    forgot_password_answers_alike,
    ownership_transfer,
    a_transfer_to_someone_no_longer_eligible_fails,
);
