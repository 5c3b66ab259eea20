//! Organization signing-key rotation: new keys are published (pending) before they sign, old keys
//! retire but stay published while tokens they signed may still be presented, and resource
//! servers verifying with an independent library against the served JWKS keep working.

use std::collections::{BTreeSet, HashSet};

use openidconnect::core::CoreJwsSigningAlgorithm;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::core_flow::{verify_access_token, verify_id_token};
use crate::support::*;
use crate::{on_all_backends, on_postgres};

fn kid_of(jwt: &str) -> String {
    jwt_header(jwt)["kid"].as_str().unwrap().to_owned()
}

async fn rotate(app: &TestApp, org: &TestOrg) -> Value {
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/rotate", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

/// `kid -> state` from the admin key listing.
async fn key_states(app: &TestApp, org: &TestOrg) -> Vec<(String, String, String)> {
    let (st, v) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/keys", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["alg"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn states_of(states: &[(String, String, String)], kids: &BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = states
        .iter()
        .filter(|(k, _, _)| kids.contains(k))
        .map(|(_, _, s)| s.clone())
        .collect();
    v.sort();
    v
}

const ALGS: [(&str, &str); 3] = [("ES256", "RS256"), ("RS256", "EdDSA"), ("EdDSA", "ES256")];

async fn agents_for_every_alg(app: &TestApp, org: &TestOrg) -> Vec<TestAgent> {
    let mut out = Vec::new();
    for (at, id) in ALGS {
        out.push(
            app.create_agent_with(
                org,
                json!({"name": format!("{at} bot"), "scopes": ["read", "openid"],
                       "access_token_signed_response_alg": at, "id_token_signed_response_alg": id}),
            )
            .await,
        );
    }
    out
}

async fn rotation_signs_with_new_keys_and_keeps_old_ones_published(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let bystander = app.create_org().await;
    let bystander_jwks = org_jwks(&app, &bystander).await;
    let agents = agents_for_every_alg(&app, &org).await;
    let rs = app.create_agent(&org, &[]).await;

    let before_jwks = org_jwks(&app, &org).await;
    let old_kids = kids(&before_jwks);
    assert_eq!(old_kids.len(), 3);
    let mut old_tokens = Vec::new();
    for a in &agents {
        let t = app.token(&org, a, &[]).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(old_kids.contains(&kid_of(&t)));
        old_tokens.push(t);
    }

    let rotated = rotate(&app, &org).await;
    let new_keys = rotated["keys"].as_array().unwrap();
    assert_eq!(new_keys.len(), 3, "{rotated}");
    let new_kids: BTreeSet<String> = new_keys
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    let algs: HashSet<&str> = new_keys
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    assert_eq!(algs, HashSet::from(["ES256", "RS256", "EdDSA"]));
    assert!(new_kids.is_disjoint(&old_kids));
    // Activation delay 0 (the harness default): the new keys sign at once.
    for k in new_keys {
        assert_eq!(k["state"], "active", "{k}");
    }

    let after_jwks = org_jwks(&app, &org).await;
    assert_eq!(
        after_jwks["keys"].as_array().unwrap().len(),
        6,
        "{after_jwks}"
    );
    assert!(
        kids(&after_jwks).is_superset(&old_kids),
        "retired keys stay published"
    );
    assert!(kids(&after_jwks).is_superset(&new_kids));
    for k in after_jwks["keys"].as_array().unwrap() {
        assert!(
            k.get("d").is_none() && k.get("p").is_none(),
            "public keys only: {k}"
        );
    }

    let states = key_states(&app, &org).await;
    assert_eq!(states.len(), 6);
    assert_eq!(states_of(&states, &old_kids), vec!["retired"; 3]);
    assert_eq!(states_of(&states, &new_kids), vec!["active"; 3]);

    for (a, old) in agents.iter().zip(&old_tokens) {
        // Tokens signed before the rotation still verify, here and at a resource server.
        let (st, info, _) = app.agent_info(&org, old).await;
        assert_eq!(st, StatusCode::OK, "{info}");
        assert_eq!(app.introspect(&org, &rs, old).await["active"], true);
        verify_access_token(old, &after_jwks, &org.issuer, &org.issuer);

        // New tokens carry a new kid of the agent's algorithm and verify against the served JWKS.
        let t = app.token(&org, a, &[("scope", "openid read")]).await;
        let at = t["access_token"].as_str().unwrap();
        let kid = kid_of(at);
        assert!(new_kids.contains(&kid), "{kid} is one of the new keys");
        assert_eq!(
            jwt_header(at)["alg"],
            a.body["access_token_signed_response_alg"]
        );
        let c = verify_access_token(at, &after_jwks, &org.issuer, &org.issuer);
        assert_eq!(c["sub"], a.client_id);
        let (st, info, _) = app.agent_info(&org, at).await;
        assert_eq!(st, StatusCode::OK, "{info}");

        let id_token = t["id_token"].as_str().unwrap();
        assert!(new_kids.contains(&kid_of(id_token)));
        let oidc_alg = match a.body["id_token_signed_response_alg"].as_str().unwrap() {
            "RS256" => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            "ES256" => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            _ => CoreJwsSigningAlgorithm::EdDsa,
        };
        let sub = verify_id_token(id_token, &after_jwks, &org.issuer, &a.client_id, oidc_alg);
        assert_eq!(sub, a.client_id);
    }

    // A second rotation: the first generation is still published (its tokens have not expired).
    let second = rotate(&app, &org).await;
    let newest: BTreeSet<String> = second["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    let third_jwks = org_jwks(&app, &org).await;
    assert_eq!(
        third_jwks["keys"].as_array().unwrap().len(),
        9,
        "{third_jwks}"
    );
    let states = key_states(&app, &org).await;
    assert_eq!(states_of(&states, &old_kids), vec!["retired"; 3]);
    assert_eq!(states_of(&states, &new_kids), vec!["retired"; 3]);
    assert_eq!(states_of(&states, &newest), vec!["active"; 3]);
    for old in &old_tokens {
        let (st, info, _) = app.agent_info(&org, old).await;
        assert_eq!(st, StatusCode::OK, "{info}");
        verify_access_token(old, &third_jwks, &org.issuer, &org.issuer);
    }
    let t = app.token(&org, &agents[0], &[]).await;
    assert!(newest.contains(&kid_of(t["access_token"].as_str().unwrap())));

    // Another organization's keys did not move.
    assert_eq!(org_jwks(&app, &bystander).await, bystander_jwks);
}

async fn pending_keys_are_published_before_they_sign(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.key_activation_delay_secs = Some(3600)).await;
    let org = app.create_org().await;
    let agents = agents_for_every_alg(&app, &org).await;
    let old_kids = kids(&org_jwks(&app, &org).await);
    assert_eq!(old_kids.len(), 3);
    // A new organization's first keys sign at once, whatever the delay.
    let states = key_states(&app, &org).await;
    assert_eq!(states_of(&states, &old_kids), vec!["active"; 3]);

    let rotated = rotate(&app, &org).await;
    let new_kids: BTreeSet<String> = rotated["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["state"], "pending", "{k}");
            k["kid"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(new_kids.len(), 3);

    let served = org_jwks(&app, &org).await;
    assert_eq!(served["keys"].as_array().unwrap().len(), 6, "{served}");
    assert!(
        kids(&served).is_superset(&new_kids),
        "pending keys are published"
    );
    let states = key_states(&app, &org).await;
    assert_eq!(states_of(&states, &old_kids), vec!["active"; 3]);
    assert_eq!(states_of(&states, &new_kids), vec!["pending"; 3]);

    // Tokens are still signed by the old keys, and verify.
    for a in &agents {
        let t = app.token(&org, a, &[("scope", "openid read")]).await;
        let at = t["access_token"].as_str().unwrap();
        assert!(old_kids.contains(&kid_of(at)), "signed by an old key");
        assert!(old_kids.contains(&kid_of(t["id_token"].as_str().unwrap())));
        verify_access_token(at, &served, &org.issuer, &org.issuer);
        let (st, info, _) = app.agent_info(&org, at).await;
        assert_eq!(st, StatusCode::OK, "{info}");
    }
}

async fn key_admin_calls_are_scoped_and_authenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let before = org_jwks(&app, &org).await;
    for path in [
        format!("/api/v1/orgs/{}/keys", org.slug),
        format!("/api/v1/orgs/{}/keys/rotate", org.slug),
    ] {
        let method = if path.ends_with("rotate") {
            Method::POST
        } else {
            Method::GET
        };
        let resp = app
            .http
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        let (st, v) = json_of(resp).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {v}");
        assert!(v["error"].is_string(), "{v}");
        let (st, v) = app
            .admin(method, &path.replace(&org.slug, &random_slug()), None)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    // Nothing rotated.
    assert_eq!(org_jwks(&app, &org).await, before);
    // Listing shows no private material.
    let (_, v) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/keys", org.slug),
            None,
        )
        .await;
    for k in v["keys"].as_array().unwrap() {
        assert!(
            k.get("d").is_none() && k.get("private_enc").is_none(),
            "{k}"
        );
    }
}

/// A compromised key (issue 11 point 7): revoked, it leaves the JWKS and the DID document at
/// once and its tokens stop introspecting as active; being the active key, a replacement signs
/// at once (no pre-publication delay, even with a long one configured), as the answer says. A
/// pending key goes without a replacement; an unknown or another organization's kid is 404.
async fn a_compromised_key_is_revoked_at_once(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.key_activation_delay_secs = Some(3600)).await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let agent = app.create_agent(&org, &["read"]).await;
    let caller = app.create_agent(&org, &[]).await;
    let t = app.token(&org, &agent, &[]).await;
    let old_token = t["access_token"].as_str().unwrap().to_owned();
    let kid = kid_of(&old_token);
    assert_eq!(
        app.introspect(&org, &caller, &old_token).await["active"],
        true
    );
    let did_doc = |app: &TestApp| {
        let url = format!("{}/did.json", org.issuer);
        let app = app.http.clone();
        async move { app.get(url).send().await.unwrap().text().await.unwrap() }
    };
    assert!(did_doc(&app).await.contains(&kid));

    // Another organization cannot name it.
    let (st, _) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/{kid}/revoke", other.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(kids(&org_jwks(&app, &org).await).contains(&kid));

    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/{kid}/revoke", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["kid"], kid.as_str());
    let replacement = v["replacement"]["kid"].as_str().unwrap().to_owned();
    assert_eq!(v["replacement"]["state"], "active", "{v}");
    assert!(
        v["note"]
            .as_str()
            .unwrap()
            .contains("without the usual pre-publication delay"),
        "{v}"
    );

    let jwks = org_jwks(&app, &org).await;
    assert!(!kids(&jwks).contains(&kid), "{jwks}");
    assert!(kids(&jwks).contains(&replacement));
    assert!(!did_doc(&app).await.contains(&kid));
    assert_eq!(
        app.introspect(&org, &caller, &old_token).await["active"],
        false
    );
    let (st, _, _) = app.agent_info(&org, &old_token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // New tokens are signed by the replacement at once, and verify.
    let fresh = app.token(&org, &agent, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(kid_of(&fresh), replacement);
    verify_access_token(&fresh, &jwks, &org.issuer, &org.issuer);
    assert_eq!(app.introspect(&org, &caller, &fresh).await["active"], true);

    // Gone is gone: again is 404, as is a kid that never existed.
    let (st, _) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/{kid}/revoke", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/nope/revoke", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A pending key: removed, nothing replaces it, the active keys stay.
    let rotated = rotate(&app, &org).await;
    let pending = rotated["keys"][0]["kid"].as_str().unwrap().to_owned();
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/{pending}/revoke", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["replacement"].is_null(), "{v}");
    let after = kids(&org_jwks(&app, &org).await);
    assert!(!after.contains(&pending) && after.contains(&replacement));
}

/// Revoked through one instance, the key is gone from the other's JWKS and its tokens inactive
/// there at the next request (Redis invalidation; PostgreSQL + Redis only).
async fn a_key_revoked_on_one_instance_is_gone_on_the_other(backend: Backend) {
    let Backend::Postgres {
        redis_url: Some(_), ..
    } = &backend
    else {
        return;
    };
    let (a, b) = two_instances(backend).await;
    let org = a.create_org().await;
    let agent = a.create_agent(&org, &["read"]).await;
    let caller = a.create_agent(&org, &[]).await;
    let token = a.token(&org, &agent, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let kid = kid_of(&token);
    let via_b = TestOrg {
        issuer: format!("{}/orgs/{}", b.base, org.slug),
        ..org.clone()
    };
    // Warm b's caches.
    assert!(kids(&org_jwks(&b, &via_b).await).contains(&kid));
    assert_eq!(b.introspect(&via_b, &caller, &token).await["active"], true);
    let (st, _) = a
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/{kid}/revoke", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let start = std::time::Instant::now();
    while kids(&org_jwks(&b, &via_b).await).contains(&kid) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "still published by b"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(b.introspect(&via_b, &caller, &token).await["active"], false);
}

on_all_backends!(
    a_compromised_key_is_revoked_at_once,
    rotation_signs_with_new_keys_and_keeps_old_ones_published,
    pending_keys_are_published_before_they_sign,
    key_admin_calls_are_scoped_and_authenticated,
);
on_postgres!(a_key_revoked_on_one_instance_is_gone_on_the_other);
