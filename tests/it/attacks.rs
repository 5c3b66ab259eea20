//! Attacks on the IdP core: forged, tampered and foreign tokens, borrowed secrets, malformed
//! requests and misuse of the admin API. Every test expects a precise RFC error and then checks
//! that nothing changed (the legitimate agent and its token still work).

use aws_lc_rs::hmac;
use base64::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::support::*;

pub fn b64(bytes: &[u8]) -> String {
    BASE64_URL_SAFE_NO_PAD.encode(bytes)
}

fn b64d(s: &str) -> Vec<u8> {
    BASE64_URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// A compact JWS with exactly this header, payload and signature bytes.
pub fn compact(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(sig)
    )
}

/// An HS256 JWS keyed with `key`.
pub fn hs256(key: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// The token is refused as RFC 6750 and RFC 7662 say: 401 with a Bearer `invalid_token` challenge
/// at `/agent-info`, and `{"active": false}` (nothing else) from introspection.
pub async fn assert_token_rejected(app: &TestApp, org: &TestOrg, caller: &TestAgent, token: &str) {
    let (st, body, challenge) = app.agent_info(org, token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{token}: {body}");
    let challenge = challenge.expect("a 401 from a protected resource carries WWW-Authenticate");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert_eq!(
        app.introspect(org, caller, token).await,
        json!({"active": false}),
        "{token}"
    );
}

/// Nothing changed: the agent's real token is still good and the agent still gets new ones.
pub async fn assert_still_works(app: &TestApp, org: &TestOrg, agent: &TestAgent, token: &str) {
    let (st, info, _) = app.agent_info(org, token).await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], agent.client_id);
    let i = app.introspect(org, agent, token).await;
    assert_eq!(i["active"], true, "{i}");
    app.token(org, agent, &[]).await;
}

fn access_token(t: &Value) -> String {
    t["access_token"].as_str().unwrap().to_owned()
}

async fn forged_alg_none_access_token_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let real = access_token(&app.token(&org, &agent, &[]).await);
    let header = jwt_header(&real);
    let mut claims = jwt_claims(&real);
    claims["scope"] = json!("read admin");

    for alg in ["none", "None", "NONE"] {
        let h = json!({"alg": alg, "typ": "at+jwt", "kid": header["kid"]});
        // Unsigned (empty signature) and with the real token's signature pasted on.
        let unsigned = compact(&h, &claims, b"");
        assert_token_rejected(&app, &org, &agent, &unsigned).await;
        let real_sig = real.rsplit('.').next().unwrap();
        let pasted = format!("{}.{real_sig}", unsigned.trim_end_matches('.'));
        assert_token_rejected(&app, &org, &agent, &pasted).await;
    }
    // Without any kid either.
    let bare = compact(&json!({"alg": "none", "typ": "at+jwt"}), &claims, b"");
    assert_token_rejected(&app, &org, &agent, &bare).await;
    assert_still_works(&app, &org, &agent, &real).await;
}

async fn hs256_keyed_with_the_public_jwk_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let jwks = org_jwks(&app, &org).await;
    for alg in ["ES256", "RS256", "EdDSA"] {
        let agent = app
            .create_agent_with(
                &org,
                json!({"name": "bot", "scopes": ["read"], "access_token_signed_response_alg": alg}),
            )
            .await;
        let real = access_token(&app.token(&org, &agent, &[]).await);
        let kid = jwt_header(&real)["kid"].as_str().unwrap().to_owned();
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .expect("the signing kid is published")
            .clone();
        // Every byte string a confused verifier might use as the HMAC secret.
        let mut secrets: Vec<Vec<u8>> = vec![
            jwk.to_string().into_bytes(),
            serde_json::to_vec_pretty(&jwk).unwrap(),
            jwks.to_string().into_bytes(),
        ];
        for member in ["x", "y", "n", "e"] {
            if let Some(s) = jwk[member].as_str() {
                secrets.push(b64d(s));
                secrets.push(s.as_bytes().to_vec());
            }
        }
        if let (Some(x), Some(y)) = (jwk["x"].as_str(), jwk["y"].as_str()) {
            let mut point = vec![4u8];
            point.extend(b64d(x));
            point.extend(b64d(y));
            secrets.push(point[1..].to_vec());
            secrets.push(point);
        }
        let mut claims = jwt_claims(&real);
        claims["scope"] = json!("read admin");
        for secret in &secrets {
            for h in [
                json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                json!({"alg": "HS256", "typ": "at+jwt"}),
            ] {
                let forged = hs256(secret, &h, &claims);
                assert_token_rejected(&app, &org, &agent, &forged).await;
            }
        }
        assert_still_works(&app, &org, &agent, &real).await;
    }
}

async fn id_token_is_not_accepted_as_access_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["openid", "read"]).await;
    let t = app.token(&org, &agent, &[("scope", "openid read")]).await;
    let id_token = t["id_token"].as_str().expect("an ID token with openid");
    assert_eq!(jwt_header(id_token)["typ"], "JWT");
    // Validly signed by a published key of this issuer, but an ID token (RFC 9068 §4).
    assert_token_rejected(&app, &org, &agent, id_token).await;
    let real = access_token(&t);
    assert_still_works(&app, &org, &agent, &real).await;
}

async fn tampered_access_token_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let other = app.create_agent(&org, &["read", "admin"]).await;
    let real = access_token(&app.token(&org, &agent, &[]).await);
    let parts: Vec<&str> = real.split('.').collect();
    let claims = jwt_claims(&real);

    let with_claims = |c: &Value| {
        format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        )
    };
    let mut escalated = claims.clone();
    escalated["scope"] = json!("read admin");
    let mut impersonating = claims.clone();
    impersonating["sub"] = json!(other.client_id);
    impersonating["client_id"] = json!(other.client_id);
    let mut extended = claims.clone();
    extended["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);

    let mut sig = b64d(parts[2]);
    sig[5] ^= 0x01;
    let flipped_sig = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    let truncated_sig = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        &parts[2][..parts[2].len() - 4]
    );
    // The same claims re-serialized differently (whitespace): a different signing input.
    let respaced = format!(
        "{}.{}.{}",
        parts[0],
        b64(serde_json::to_string_pretty(&claims).unwrap().as_bytes()),
        parts[2]
    );

    for forged in [
        with_claims(&escalated),
        with_claims(&impersonating),
        with_claims(&extended),
        flipped_sig,
        truncated_sig,
        respaced,
        format!("{}.{}.", parts[0], parts[1]),
        format!("{}.{}", parts[0], parts[1]),
        format!("{real}.{}", parts[2]),
    ] {
        assert_token_rejected(&app, &org, &agent, &forged).await;
    }
    assert_still_works(&app, &org, &agent, &real).await;
}

async fn tokens_and_secrets_do_not_cross_organizations(backend: Backend) {
    let app = spawn_app(backend).await;
    let org_a = app.create_org().await;
    let org_b = app.create_org().await;
    let a = app.create_agent(&org_a, &["read"]).await;
    let b = app.create_agent(&org_b, &["read"]).await;
    let token_a = access_token(&app.token(&org_a, &a, &[]).await);

    // A's token at B's resource and B's introspection.
    assert_token_rejected(&app, &org_b, &b, &token_a).await;

    // A's client credentials at B's token endpoint, both ways of sending them.
    let resp = app
        .post_form(
            &org_b,
            "/oauth2/token",
            Some((&a.client_id, a.secret.as_deref().unwrap())),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let challenge = resp.headers().get("www-authenticate").cloned();
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(
        challenge.unwrap().to_str().unwrap().starts_with("Basic "),
        "Basic was used: the 401 challenges Basic"
    );
    let resp = app
        .post_form(
            &org_b,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &a.client_id),
                ("client_secret", a.secret.as_deref().unwrap()),
            ],
        )
        .await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // A's credentials at B's introspection endpoint.
    let resp = app
        .post_form(
            &org_b,
            "/oauth2/introspect",
            Some((&a.client_id, a.secret.as_deref().unwrap())),
            &[("token", &token_a)],
        )
        .await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;

    // Each issuer has its own keys.
    let kids_a = kids(&org_jwks(&app, &org_a).await);
    let kids_b = kids(&org_jwks(&app, &org_b).await);
    assert_eq!(kids_a.len(), 3);
    assert_eq!(kids_b.len(), 3);
    assert!(
        kids_a.iter().all(|k| !kids_b.contains(k)),
        "{kids_a:?} {kids_b:?}"
    );
    assert!(!kids_b.contains(jwt_header(&token_a)["kid"].as_str().unwrap()));

    // The token still means what it meant at its own issuer.
    assert_still_works(&app, &org_a, &a, &token_a).await;
    let token_b = access_token(&app.token(&org_b, &b, &[]).await);
    assert_token_rejected(&app, &org_a, &a, &token_b).await;
    assert_still_works(&app, &org_b, &b, &token_b).await;
}

async fn another_agents_secret_is_invalid_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let x = app.create_agent(&org, &["read"]).await;
    let y = app.create_agent(&org, &["read"]).await;
    let token_x = access_token(&app.token(&org, &x, &[]).await);

    // Basic: 401 with a Basic challenge (RFC 6749 §5.2).
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((&x.client_id, y.secret.as_deref().unwrap())),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .expect("WWW-Authenticate after a failed Basic authentication");
    assert!(challenge.starts_with("Basic "), "{challenge}");
    let body = assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(
        !body.to_string().contains(y.secret.as_deref().unwrap()),
        "the error never echoes the secret"
    );

    // client_secret_post: still invalid_client.
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &x.client_id),
                ("client_secret", y.secret.as_deref().unwrap()),
            ],
        )
        .await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;

    // An unknown client id with a real secret, and a real id with an empty-looking secret.
    let unknown = uuid::Uuid::now_v7().to_string();
    for (id, secret) in [
        (unknown.as_str(), y.secret.as_deref().unwrap()),
        (x.client_id.as_str(), "x"),
    ] {
        let resp = app
            .post_form(
                &org,
                "/oauth2/token",
                Some((id, secret)),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }

    assert_still_works(&app, &org, &x, &token_x).await;
    let token_y = access_token(&app.token(&org, &y, &[]).await);
    assert_still_works(&app, &org, &y, &token_y).await;
}

async fn malformed_token_requests_get_precise_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let token = access_token(&app.token(&org, &agent, &[]).await);
    let id = agent.client_id.as_str();
    let secret = agent.secret.as_deref().unwrap();
    let endpoint = format!("{}/oauth2/token", org.issuer);

    // Missing grant_type.
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((id, secret)),
            &[("scope", "read")],
        )
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Unknown grant types (RFC 6749 §5.2).
    for grant in ["password", "implicit", "CLIENT_CREDENTIALS"] {
        let resp = app
            .post_form(
                &org,
                "/oauth2/token",
                Some((id, secret)),
                &[("grant_type", grant)],
            )
            .await;
        assert_oauth_error(resp, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    }

    // A JSON body instead of a form (RFC 6749 §3.2).
    let resp = app
        .http
        .post(&endpoint)
        .basic_auth(id, Some(secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    // A form body without any Content-Type.
    let resp = app
        .http
        .post(&endpoint)
        .basic_auth(id, Some(secret))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;

    // A repeated parameter (RFC 6749 §3.1).
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ],
        vec![
            ("grant_type", "client_credentials"),
            ("scope", "read"),
            ("scope", "read"),
        ],
    ] {
        let resp = app
            .post_form(&org, "/oauth2/token", Some((id, secret)), &form)
            .await;
        assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    }

    // Two client authentication methods at once (RFC 6749 §2.3).
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((id, secret)),
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", secret),
            ],
        )
        .await;
    assert_oauth_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;

    // A body over the 64 KiB limit: an OAuth JSON error, not a 500 or plain text.
    let big = "a".repeat(70 * 1024);
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            Some((id, secret)),
            &[("grant_type", "client_credentials"), ("padding", &big)],
        )
        .await;
    let st = resp.status();
    assert!(st.is_client_error(), "{st}");
    let (_, v) = json_of(resp).await;
    assert!(v.is_object(), "JSON, not plain text: {v}");
    assert_eq!(v["error"], "invalid_request", "{v}");

    // Garbage Basic credentials: invalid_client, 401 with a challenge.
    for header in [
        "Basic !!!not-base64!!!".to_owned(),
        format!("Basic {}", BASE64_STANDARD.encode("no-colon-here")),
        format!("Basic {}", BASE64_STANDARD.encode([0xff, 0xfe, b':', 0xfd])),
        "Basic".to_owned(),
    ] {
        let resp = app
            .http
            .post(&endpoint)
            .header("authorization", &header)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert!(resp.headers().contains_key("www-authenticate"), "{header}");
        assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }

    // No credentials at all.
    let resp = app
        .post_form(
            &org,
            "/oauth2/token",
            None,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_oauth_error(resp, StatusCode::UNAUTHORIZED, "invalid_client").await;

    assert_still_works(&app, &org, &agent, &token).await;
}

async fn admin_api_requires_the_admin_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let agent_token = access_token(&app.token(&org, &agent, &[]).await);
    let slug = random_slug();

    let attempts: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("wrong", Some(format!("Bearer {}x", app.token))),
        ("empty bearer", Some("Bearer ".into())),
        (
            "basic",
            Some(format!(
                "Basic {}",
                BASE64_STANDARD.encode(format!("admin:{}", app.token))
            )),
        ),
        (
            "an agent's access token",
            Some(format!("Bearer {agent_token}")),
        ),
        (
            "an agent's secret",
            Some(format!("Bearer {}", agent.secret.as_deref().unwrap())),
        ),
    ];
    for (what, auth) in attempts {
        for (method, path, body) in [
            (Method::GET, "/api/v1/orgs".to_owned(), None),
            (
                Method::POST,
                "/api/v1/orgs".to_owned(),
                Some(json!({"slug": slug, "name": "Intruder"})),
            ),
            (
                Method::GET,
                format!("/api/v1/orgs/{}/agents", org.slug),
                None,
            ),
            (Method::DELETE, format!("/api/v1/orgs/{}", org.slug), None),
        ] {
            let mut req = app.http.request(method.clone(), app.url(&path));
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            assert!(resp.headers().contains_key("www-authenticate"), "{what}");
            let (st, v) = json_of(resp).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{what} {method} {path}: {v}");
            assert!(v["error"].is_string(), "{what}: {v}");
            assert!(v["error_description"].is_string(), "{what}: {v}");
        }
    }
    // Nothing was created or deleted.
    let (st, _) = app
        .admin(Method::GET, &format!("/api/v1/orgs/{slug}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = app
        .admin(Method::GET, &format!("/api/v1/orgs/{}", org.slug), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_still_works(&app, &org, &agent, &agent_token).await;
}

async fn admin_validation_errors_name_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let long = "a".repeat(64);
    for bad in [
        "Acme",
        "-acme",
        "acme_corp",
        "ac me",
        "",
        "é",
        long.as_str(),
    ] {
        let (st, v) = app
            .admin(
                Method::POST,
                "/api/v1/orgs",
                Some(json!({"slug": bad, "name": "X"})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {v}");
        assert_eq!(v["field"], "slug", "{v}");
        assert!(
            v["error"].is_string() && v["error_description"].is_string(),
            "{v}"
        );
    }
    // Unknown fields are a 400, and nothing is created.
    let slug = random_slug();
    let (st, v) = app
        .admin(
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"slug": slug, "name": "X", "admin": true})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].is_string(), "{v}");
    let (st, _) = app
        .admin(Method::GET, &format!("/api/v1/orgs/{slug}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let org = app.create_org().await;
    let agents = format!("/api/v1/orgs/{}/agents", org.slug);
    for bad in ["has space", "quo\"te", "back\\slash", "", "é"] {
        let (st, v) = app
            .admin(
                Method::POST,
                &agents,
                Some(json!({"name": "bot", "scopes": ["read", bad]})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {v}");
        assert_eq!(v["field"], "scopes", "{v}");
    }
    let (st, v) = app
        .admin(
            Method::POST,
            &agents,
            Some(json!({"name": "bot", "scopes": [], "is_admin": true})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].is_string(), "{v}");
    let (st, v) = app
        .admin(
            Method::POST,
            &agents,
            Some(json!({"name": " ", "scopes": []})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "name", "{v}");
    // None of the refused registrations exists.
    let (st, list) = app.admin(Method::GET, &agents, None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["items"], json!([]), "{list}");
}

async fn slugs_are_never_reused(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let again = json!({"slug": org.slug, "name": "Copycat"});
    let (st, v) = app
        .admin(Method::POST, "/api/v1/orgs", Some(again.clone()))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].is_string(), "{v}");

    let (st, v) = app
        .admin(Method::DELETE, &format!("/api/v1/orgs/{}", org.slug), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, _) = app
        .admin(Method::GET, &format!("/api/v1/orgs/{}", org.slug), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Deleted, and still not available: the issuer and DID it named must never change owner.
    let (st, v) = app.admin(Method::POST, "/api/v1/orgs", Some(again)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, _) = app
        .admin(Method::GET, &format!("/api/v1/orgs/{}", org.slug), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn another_orgs_agent_answers_like_a_missing_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let org_a = app.create_org().await;
    let org_b = app.create_org().await;
    let a = app.create_agent(&org_a, &["read"]).await;
    let token = access_token(&app.token(&org_a, &a, &[]).await);
    let random = uuid::Uuid::now_v7().to_string();

    for (method, suffix, body) in [
        (Method::GET, "", None),
        (Method::PATCH, "", Some(json!({"name": "hijacked"}))),
        (Method::POST, "/suspend", None),
        (Method::POST, "/revoke", None),
        (Method::POST, "/rotate-secret", None),
        (Method::DELETE, "", None),
    ] {
        let (st_foreign, v_foreign) = app
            .admin(
                method.clone(),
                &format!("/api/v1/orgs/{}/agents/{}{suffix}", org_b.slug, a.id),
                body.clone(),
            )
            .await;
        let (st_random, v_random) = app
            .admin(
                method.clone(),
                &format!("/api/v1/orgs/{}/agents/{random}{suffix}", org_b.slug),
                body,
            )
            .await;
        assert_eq!(
            st_foreign,
            StatusCode::NOT_FOUND,
            "{method} {suffix}: {v_foreign}"
        );
        assert_eq!(
            st_random,
            StatusCode::NOT_FOUND,
            "{method} {suffix}: {v_random}"
        );
        assert_eq!(v_foreign, v_random, "{method} {suffix}");
    }
    // The agent is untouched in its own organization.
    let (st, v) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/agents/{}", org_a.slug, a.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active");
    assert_eq!(v["name"], "test agent");
    assert_still_works(&app, &org_a, &a, &token).await;
}

on_all_backends!(
    forged_alg_none_access_token_is_rejected,
    hs256_keyed_with_the_public_jwk_is_rejected,
    id_token_is_not_accepted_as_access_token,
    tampered_access_token_is_rejected,
    tokens_and_secrets_do_not_cross_organizations,
    another_agents_secret_is_invalid_client,
    malformed_token_requests_get_precise_errors,
    admin_api_requires_the_admin_token,
    admin_validation_errors_name_the_field,
    slugs_are_never_reused,
    another_orgs_agent_answers_like_a_missing_one,
);
