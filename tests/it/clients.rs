//! People-facing apps (`/api/v1/orgs/{org}/clients`, issue 12 point 6): registration of
//! confidential and public clients with redirect URIs and grant types, the redirect URI rules,
//! and the separation from agents (an app has no DID and is not an agent; each answers 404 under
//! the other's path).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::support::*;

/// Registers an app of `org` with the platform token; its JSON.
pub async fn app_client(app: &TestApp, org: &TestOrg, body: Value) -> Value {
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/clients", org.slug),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

async fn clients_are_registered_and_kept_apart_from_agents(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let clients = format!("/api/v1/orgs/{}/clients", org.slug);

    // A confidential web app: a secret once, the code-flow grants by default, no DID.
    let web = app_client(
        &app,
        &org,
        json!({"name": "Web app", "scopes": ["openid", "profile"], "redirect_uris": ["https://app.example/cb"]}),
    )
    .await;
    assert!(
        web["client_secret"].as_str().is_some_and(|s| s.len() >= 40),
        "{web}"
    );
    assert_eq!(web["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(
        web["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(web["redirect_uris"], json!(["https://app.example/cb"]));
    assert!(web.get("did").is_none(), "{web}");
    let web_id = web["client_id"].as_str().unwrap().to_owned();

    // A public native app: no secret; loopback and private-use redirect URIs.
    let native = app_client(
        &app,
        &org,
        json!({"name": "CLI", "scopes": ["openid"], "token_endpoint_auth_method": "none",
               "redirect_uris": ["http://127.0.0.1/cb", "com.example.cli:/cb"],
               "grant_types": ["authorization_code"]}),
    )
    .await;
    assert!(native.get("client_secret").is_none(), "{native}");
    assert_eq!(native["token_endpoint_auth_method"], "none");

    // Listing: apps under /clients, agents under /agents, never mixed.
    let agent = app.create_agent(&org, &["read"]).await;
    let (st, list) = app.admin(Method::GET, &clients, None).await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&web_id.as_str()) && !ids.contains(&agent.id.as_str()));
    let (_, agents) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/agents", org.slug),
            None,
        )
        .await;
    let agent_ids: Vec<&str> = agents["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(agent_ids, vec![agent.id.as_str()], "{agents}");
    let (st, _) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/agents/{web_id}", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = app
        .admin(Method::GET, &format!("{clients}/{}", agent.id), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = app
        .admin(Method::DELETE, &format!("{clients}/{}", agent.id), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Another organization's client: 404.
    let other = app.create_org().await;
    let (st, _) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/clients/{web_id}", other.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // An app has no DID document.
    let r = app
        .http
        .get(format!("{}/agents/{web_id}/did.json", org.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // PATCH replaces a list; the rules hold on update too.
    let (st, v) = app
        .admin(
            Method::PATCH,
            &format!("{clients}/{web_id}"),
            Some(
                json!({"redirect_uris": ["https://app.example/cb", "https://app.example/cb2"],
                        "post_logout_redirect_uris": ["https://app.example/bye"]}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["redirect_uris"].as_array().unwrap().len(), 2);
    let (st, v) = app
        .admin(
            Method::PATCH,
            &format!("{clients}/{web_id}"),
            Some(json!({"redirect_uris": []})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = app
        .admin(
            Method::PATCH,
            &format!("{clients}/{web_id}"),
            Some(json!({"token_endpoint_auth_method": "none"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // The app is not registered for client credentials: unauthorized_client.
    let secret = web["client_secret"].as_str().unwrap();
    let r = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((&web_id, secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    // The agent still is.
    let t = app.token(&org, &agent, &[]).await;
    assert!(t["access_token"].is_string(), "{t}");

    // Secret rotation and deletion work on apps as on agents.
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("{clients}/{web_id}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["client_secret"].is_string());
    let (st, _) = app
        .admin(Method::DELETE, &format!("{clients}/{web_id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app
        .admin(Method::GET, &format!("{clients}/{web_id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn redirect_uri_and_grant_rules_are_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let clients = format!("/api/v1/orgs/{}/clients", org.slug);
    let refused = [
        json!({"name": "x", "scopes": [], "redirect_uris": ["http://app.example/cb"]}),
        json!({"name": "x", "scopes": [], "redirect_uris": ["javascript:alert(1)"]}),
        json!({"name": "x", "scopes": [], "redirect_uris": ["data:text/html,hi"]}),
        json!({"name": "x", "scopes": [], "redirect_uris": ["https://app.example/cb#f"]}),
        json!({"name": "x", "scopes": [], "redirect_uris": ["https://u:p@app.example/cb"]}),
        json!({"name": "x", "scopes": [], "redirect_uris": ["/cb"]}),
        // A private-use scheme is for public clients only.
        json!({"name": "x", "scopes": [], "redirect_uris": ["com.example.app:/cb"]}),
        // The code flow needs a redirect URI.
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": [], "redirect_uris": ["https://a.example/"], "grant_types": ["implicit"]}),
        json!({"name": "x", "scopes": [], "redirect_uris": ["https://a.example/"], "grant_types": ["refresh_token"]}),
        // A public client cannot use client credentials.
        json!({"name": "x", "scopes": [], "token_endpoint_auth_method": "none", "redirect_uris": ["https://a.example/"], "grant_types": ["authorization_code", "client_credentials"]}),
        json!({"name": "x", "scopes": [], "redirect_uris": (0..21).map(|i| format!("https://a.example/{i}")).collect::<Vec<_>>()}),
    ];
    for body in refused {
        let (st, v) = app.admin(Method::POST, &clients, Some(body.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
    // An agent may not be a public client, but may be a client of the code flow.
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/agents", org.slug),
            Some(json!({"name": "a", "scopes": [], "token_endpoint_auth_method": "none"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let agent = app
        .create_agent_with(
            &org,
            json!({"name": "a", "scopes": ["read"], "grant_types": ["authorization_code", "client_credentials"],
                   "redirect_uris": ["https://agent.example/cb"]}),
        )
        .await;
    assert!(agent.did.starts_with("did:web:"));
    let t = app.token(&org, &agent, &[]).await;
    assert!(t["access_token"].is_string(), "{t}");
    // An agent registered for the code flow only gets no client-credentials token.
    let code_only = app
        .create_agent_with(
            &org,
            json!({"name": "b", "scopes": ["read"], "grant_types": ["authorization_code"],
                   "redirect_uris": ["https://agent.example/cb"]}),
        )
        .await;
    let r = app.token_response(&org, &code_only, &[]).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
}

on_all_backends!(
    clients_are_registered_and_kept_apart_from_agents,
    redirect_uri_and_grant_rules_are_enforced,
);
