//! Issue 9, the authentication points: client authentication says nothing about a client's
//! status before its credentials are proven (point 12), OAuth error descriptions keep RFC 6749
//! §5.2's character set (point 12), failed authentication is rate-limited per client IP and per
//! client (point 7).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::on_all_backends;
use crate::support::*;

/// RFC 6749 §5.2 `error_description`: %x20-21 / %x23-5B / %x5D-7E.
fn assert_description_charset(v: &Value) {
    let d = v["error_description"].as_str().expect("a description");
    assert!(
        d.chars()
            .all(|c| matches!(c as u32, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
        "outside RFC 6749 §5.2: {d:?}"
    );
}

/// Client ids are public: before the secret is checked, a suspended client and a wrong secret
/// read the same; only the holder of the secret learns that the client is not active.
async fn client_status_is_told_only_after_authentication(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/agents/{}/suspend", org.slug, agent.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let wrong = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((&agent.client_id, "not-the-secret")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let wrong = assert_oauth_error(wrong, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let unknown = app
        .post_form(
            &org,
            "/oauth2/token",
            Some(("no-such-client", "not-the-secret")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let unknown = assert_oauth_error(unknown, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(wrong["error_description"], unknown["error_description"]);

    let right = app.token_response(&org, &agent, &[]).await;
    let right = assert_oauth_error(right, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(
        right["error_description"], "the client is not active",
        "{right}"
    );
}

/// Every description an OAuth endpoint answers keeps RFC 6749 §5.2's character set, also when it
/// quotes what the client sent (`scope "admin:everything"` was answered with its quotes).
async fn oauth_error_descriptions_keep_the_character_set(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let secret = agent.secret.clone().unwrap();
    let basic = Some((agent.client_id.as_str(), secret.as_str()));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "admin:everything"),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "r\"e\\a\u{202e}d"),
            ],
            "invalid_scope",
        ),
        (
            vec![("grant_type", "x\"y\\z\u{e9}")],
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("a\"b", "1"),
                ("a\"b", "2"),
            ],
            "invalid_request",
        ),
    ];
    for (form, code) in cases {
        let resp = app.post_form(&org, "/oauth2/token", basic, &form).await;
        let v = assert_oauth_error(resp, StatusCode::BAD_REQUEST, code).await;
        assert_description_charset(&v);
    }
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            basic,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "admin:everything"),
            ],
        )
        .await;
    let v = assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_scope").await;
    assert_eq!(
        v["error_description"],
        "scope 'admin:everything' is not allowed for this client"
    );
}

on_all_backends!(
    client_status_is_told_only_after_authentication,
    oauth_error_descriptions_keep_the_character_set,
);
