//! Delegation from a person to an agent (issue 12 point 9): a grant made by an admin or by the
//! person's consent to the agent in the code flow; RFC 8693 token exchange of the person's token
//! by the agent yields `sub` = the person, `act` = the agent's DID, scopes narrowed; nesting
//! narrows further and is bounded; revoking the grant stops new exchanges and the tokens issued
//! under it at once; `act` shows in introspection and userinfo.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::signin::{
    Browser, REDIRECT, VERIFIER, authorize_url, challenge, hidden, query_of, redeem, setup, sign_in,
};
use crate::on_all_backends;
use crate::support::*;

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

async fn exchange(
    app: &TestApp,
    org: &TestOrg,
    agent: &TestAgent,
    subject: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", TE),
        ("subject_token", subject),
        ("subject_token_type", AT),
    ];
    form.extend_from_slice(extra);
    json_of(
        app.post_form(
            org,
            "/oauth2/token",
            Some((&agent.client_id, agent.secret.as_deref().unwrap())),
            &form,
        )
        .await,
    )
    .await
}

async fn a_person_delegates_to_an_agent_and_revokes(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let user_id = s.user["id"].as_str().unwrap().to_owned();
    // The person's token (scopes: openid profile email offline_access notes:read).
    let mut b = Browser::new();
    let q = sign_in(&mut b, &s, &authorize_url(&s, REDIRECT, &[])).await;
    let (_, t) = json_of(redeem(&app, &s, &q["code"], VERIFIER).await).await;
    let person_token = t["access_token"].as_str().unwrap().to_owned();

    let agent = app
        .create_agent(&s.org, &["notes:read", "notes:write", "email"])
        .await;
    let other_agent = app.create_agent(&s.org, &["notes:read"]).await;
    // No grant: invalid_grant.
    let (st, v) = exchange(&app, &s.org, &agent, &person_token, &[]).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{v}"
    );

    // An admin grants notes:read and notes:write (the agent's scopes only).
    let grants = format!("/api/v1/orgs/{}/users/{user_id}/delegations", s.org.slug);
    let (st, v) = app
        .admin(
            Method::POST,
            &grants,
            Some(json!({"agent_id": agent.id, "scopes": ["notes:read", "admin:all"]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, g) = app
        .admin(
            Method::POST,
            &grants,
            Some(json!({"agent_id": agent.id, "scopes": ["notes:read", "notes:write"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    assert_eq!(g["active"], true);

    // The exchange: sub = the person, act = the agent's DID, scopes = grant ∩ subject token.
    let (st, v) = exchange(&app, &s.org, &agent, &person_token, &[]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["issued_token_type"], AT);
    let delegated = v["access_token"].as_str().unwrap().to_owned();
    let c = jwt_claims(&delegated);
    assert_eq!(c["sub"], user_id.as_str());
    assert_eq!(c["act"], json!({"sub": agent.did}));
    assert_eq!(c["client_id"], agent.id.as_str());
    assert_eq!(
        c["scope"], "notes:read",
        "notes:write is not in the person's token"
    );
    // Asking for more than that: invalid_scope.
    let (st, v) = exchange(
        &app,
        &s.org,
        &agent,
        &person_token,
        &[("scope", "notes:write")],
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{v}"
    );
    // The actor_token form (the agent's own token), without client authentication.
    let own = app.token(&s.org, &agent, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, v) = json_of(
        app.post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", TE),
                ("subject_token", &person_token),
                ("subject_token_type", AT),
                ("actor_token", &own),
                ("actor_token_type", AT),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Another agent's token as actor_token for this client: refused.
    let other_own = app.token(&s.org, &other_agent, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, _) = exchange(
        &app,
        &s.org,
        &agent,
        &person_token,
        &[("actor_token", &other_own), ("actor_token_type", AT)],
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // act is kept in introspection and userinfo.
    let intro = app.introspect(&s.org, &agent, &delegated).await;
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["act"], json!({"sub": agent.did}));
    let (st, info) = json_of(
        app.http
            .get(format!("{}/agent-info", s.org.issuer))
            .bearer_auth(&delegated)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], user_id.as_str());
    assert_eq!(info["act"], json!({"sub": agent.did}));

    // Nesting: the other agent (with its own grant) exchanges the delegated token: act nests,
    // scopes only narrow.
    let (st, g2) = app
        .admin(
            Method::POST,
            &grants,
            Some(json!({"agent_id": other_agent.id, "scopes": ["notes:read"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g2}");
    let (st, v) = exchange(&app, &s.org, &other_agent, &delegated, &[]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let nested = v["access_token"].as_str().unwrap().to_owned();
    let c = jwt_claims(&nested);
    assert_eq!(
        c["act"],
        json!({"sub": other_agent.did, "act": {"sub": agent.did}})
    );
    assert_eq!(c["scope"], "notes:read");
    // The depth is bounded (3 actors).
    let (_, v) = exchange(&app, &s.org, &agent, &nested, &[]).await;
    let third = v["access_token"].as_str().unwrap().to_owned();
    let (st, v) = exchange(&app, &s.org, &other_agent, &third, &[]).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{v}"
    );

    // Revoking the first grant: no new exchange, and the tokens under it stop at once (the
    // nested one too: it names that grant).
    let (st, list) = app.admin(Method::GET, &grants, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (st, _) = app
        .admin(
            Method::DELETE,
            &format!("{grants}/{}", g["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = exchange(&app, &s.org, &agent, &person_token, &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    for tok in [&delegated, &nested] {
        let intro = app.introspect(&s.org, &agent, tok).await;
        assert_eq!(intro["active"], false, "{intro}");
    }
    // Another organization's admin sees nothing of it.
    let other = app.create_org().await;
    let (st, _) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/users/{user_id}/delegations", other.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn consenting_to_an_agent_in_the_code_flow_delegates(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let agent = app
        .create_agent_with(
            &s.org,
            json!({"name": "Assistant", "scopes": ["notes:read"], "grant_types": ["authorization_code", "client_credentials"],
                   "redirect_uris": [REDIRECT]}),
        )
        .await;
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.org.issuer)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &agent.id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid notes:read")
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    let mut b = Browser::new();
    let a = b.get(u.as_str()).await;
    let page = b.get(a.location.as_deref().unwrap()).await;
    let consent = b
        .post(
            &format!("{}/login", s.org.issuer),
            &[
                ("email", "ada@example.com"),
                ("password", super::users::PASSWORD),
                ("csrf", &hidden(&page.body, "csrf")),
                ("authorize", &hidden(&page.body, "authorize")),
            ],
            None,
        )
        .await;
    assert!(
        consent.body.contains("act on your behalf"),
        "{}",
        consent.body
    );
    let done = b
        .post(
            &format!("{}/consent", s.org.issuer),
            &[
                ("authorize", &hidden(&consent.body, "authorize")),
                ("csrf", &hidden(&consent.body, "csrf")),
                ("decision", "allow"),
            ],
            None,
        )
        .await;
    let q = query_of(done.location.as_deref().unwrap());
    let (st, t) = json_of(
        app.post_form(
            &s.org,
            "/oauth2/token",
            Some((&agent.client_id, agent.secret.as_deref().unwrap())),
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let c = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], s.user["id"]);
    assert_eq!(c["act"], json!({"sub": agent.did}));
    // The grant is visible to the person on their account page and revocable there.
    let account = format!("{}/account", s.org.issuer);
    let page = b.get(&account).await;
    assert!(page.body.contains(&agent.id), "{}", page.body);
    let user_id = s.user["id"].as_str().unwrap();
    let (_, list) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/users/{user_id}/delegations", s.org.slug),
            None,
        )
        .await;
    assert_eq!(list[0]["created_by"], "consent");
    let id = list[0]["id"].as_str().unwrap();
    let r = b
        .post(
            &account,
            &[("revoke", id), ("csrf", &hidden(&page.body, "csrf"))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let intro = app
        .introspect(&s.org, &agent, t["access_token"].as_str().unwrap())
        .await;
    assert_eq!(intro["active"], false, "{intro}");
}

/// A delegation grant of a new person to a new agent of `org`: (user id, grant id).
pub async fn grant_fixture(app: &TestApp, org: &TestOrg) -> (String, String) {
    let user = super::users::user(app, org, "member").await;
    let uid = user["id"].as_str().unwrap().to_owned();
    let agent = app.create_agent(org, &["read"]).await;
    let (st, g) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/users/{uid}/delegations", org.slug),
            Some(json!({"agent_id": agent.id, "scopes": ["read"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    (uid, g["id"].as_str().unwrap().to_owned())
}

on_all_backends!(
    a_person_delegates_to_an_agent_and_revokes,
    consenting_to_an_agent_in_the_code_flow_delegates,
);
