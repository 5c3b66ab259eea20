//! The main path: an operator creates an organization and an agent; the agent gets tokens that
//! independent libraries verify (jsonwebtoken for access tokens, the `openidconnect` crate for
//! ID tokens), with each of the three algorithms.

use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{ClientId, IssuerUrl, Nonce};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::support::*;

async fn jwks(app: &TestApp, org: &TestOrg) -> Value {
    let (st, v) = app.get_json(&format!("{}/jwks.json", org.issuer)).await;
    assert_eq!(st, StatusCode::OK);
    v
}

/// Verifies an access token with `jsonwebtoken` against the served JWKS, as a resource server would.
pub fn verify_access_token(token: &str, jwks: &Value, issuer: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("every JWT carries kid");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set.find(&kid).expect("kid is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[aud]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

/// Verifies an ID token with the `openidconnect` crate's verifier.
pub fn verify_id_token(
    id_token: &str,
    jwks: &Value,
    issuer: &str,
    client_id: &str,
    alg: CoreJwsSigningAlgorithm,
) -> String {
    let set: CoreJsonWebKeySet = serde_json::from_value(jwks.clone()).unwrap();
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(client_id.to_owned()),
        IssuerUrl::new(issuer.to_owned()).unwrap(),
        set,
    )
    .set_allowed_algs(vec![alg]);
    let token: CoreIdToken = id_token.parse().unwrap();
    let claims = token
        .claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(()))
        .unwrap();
    claims.subject().as_str().to_owned()
}

async fn tokens_verify_with_independent_libraries(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let keys = jwks(&app, &org).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 3);

    for (at_alg, id_alg, oidc_alg) in [
        (
            "ES256",
            "RS256",
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ),
        ("EdDSA", "ES256", CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        ("RS256", "EdDSA", CoreJwsSigningAlgorithm::EdDsa),
    ] {
        let agent = app
            .create_agent_with(
                &org,
                json!({"name": "bot", "scopes": ["read", "openid"],
                       "access_token_signed_response_alg": at_alg, "id_token_signed_response_alg": id_alg}),
            )
            .await;
        // Plain request: no openid, no ID token.
        let t = app.token(&org, &agent, &[]).await;
        assert_eq!(t["token_type"], "Bearer");
        assert_eq!(t["scope"], "read");
        assert_eq!(t["expires_in"], 900);
        assert!(t.get("id_token").is_none());
        let at = t["access_token"].as_str().unwrap();
        assert_eq!(jwt_header(at)["alg"], at_alg);
        let c = verify_access_token(at, &keys, &org.issuer, &org.issuer);
        assert_eq!(c["sub"], agent.client_id);
        assert_eq!(c["client_id"], agent.client_id);
        assert_eq!(c["org_id"], org.id);
        assert_eq!(c["did"], agent.did);
        assert_eq!(c["agent_name"], "bot");
        assert!(c["jti"].is_string() && c["iat"].is_i64());
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);

        // With openid: an ID token the openidconnect crate accepts, sub equal to agent-info's.
        let t = app.token(&org, &agent, &[("scope", "openid read")]).await;
        let id_token = t["id_token"].as_str().expect("id_token with openid");
        assert_eq!(jwt_header(id_token)["alg"], id_alg);
        let sub = verify_id_token(id_token, &keys, &org.issuer, &agent.client_id, oidc_alg);
        let idc = jwt_claims(id_token);
        assert_eq!(idc["azp"], agent.client_id);
        assert_eq!(idc["did"], agent.did);
        let (st, info, _) = app
            .agent_info(&org, t["access_token"].as_str().unwrap())
            .await;
        assert_eq!(st, StatusCode::OK, "{info}");
        assert_eq!(info["sub"], sub);
        assert_eq!(info["did"], agent.did);
    }
}

async fn client_secret_post_and_resource(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read", "write"]).await;
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &agent.client_id),
                ("client_secret", agent.secret.as_deref().unwrap()),
                ("scope", "write"),
                ("resource", "https://api.example.com/"),
            ],
        )
        .await;
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let (st, t) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["scope"], "write");
    let c = verify_access_token(
        t["access_token"].as_str().unwrap(),
        &jwks(&app, &org).await,
        &org.issuer,
        "https://api.example.com/",
    );
    assert_eq!(c["aud"], "https://api.example.com/");

    let resp = app
        .token_response(&org, &agent, &[("scope", "admin")])
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let resp = app
        .token_response(&org, &agent, &[("resource", "not a uri")])
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_target").await;
}

async fn discovery_lists_what_is_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let resp = app
        .http
        .get(format!("{}/.well-known/openid-configuration", org.issuer))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let (st, oidc) = json_of(resp).await;
    assert_eq!(st, StatusCode::OK);
    let (st, rfc8414) = app
        .get_json(&app.url(&format!(
            "/.well-known/oauth-authorization-server/orgs/{}",
            org.slug
        )))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(oidc, rfc8414);
    assert_eq!(oidc["issuer"], org.issuer);
    assert!(
        oidc["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("RS256"))
    );
    assert_eq!(oidc["response_types_supported"], json!(["code"]));
    assert_eq!(oidc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(oidc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(oidc["client_id_metadata_document_supported"], true);
    // Every endpoint URL listed is routed: GET endpoints answer 200, POST-only ones do not 404.
    for field in [
        "jwks_uri",
        "userinfo_endpoint",
        "token_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "authorization_endpoint",
        "end_session_endpoint",
        "registration_endpoint",
    ] {
        let url = oidc[field].as_str().unwrap();
        assert!(url.starts_with(&org.issuer), "{field}");
        let resp = app.http.post(url).send().await.unwrap();
        assert_ne!(resp.status(), StatusCode::NOT_FOUND, "{field} {url}");
    }
    let (st, _) = app.get_json(oidc["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    let jwks_resp = app
        .http
        .get(oidc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        jwks_resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=300")
    );
}

on_all_backends!(
    tokens_verify_with_independent_libraries,
    client_secret_post_and_resource,
    discovery_lists_what_is_served
);
