//! Issue 10 made several answers come from memory: the JWKS serialized once per key state, own DID
//! documents pre-rendered (document and resolution result), verified access tokens remembered.
//! These tests show every such copy is replaced in the very next request after the change it
//! depends on: a key rotation, an agent update / suspension / revocation, an organization rename
//! or deletion, a token revocation; and that time (the injected clock) ends a copy when a key
//! changes state. Each document is fetched before the change so that the pre-rendered copy exists.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::private_key_jwt::ClientKey;
use crate::support::*;

const DID_JSON: &str = "application/did+json";
/// Harness default access-token lifetime (Settings::defaults) plus the removal leeway
/// (keys::REMOVAL_LEEWAY_SECS): a retired key leaves the JWKS this long after it retires.
const REMOVAL_AFTER_RETIREMENT: u64 = 900 + 120;

fn encode_did(did: &str) -> String {
    percent_encoding::utf8_percent_encode(did, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn get(app: &TestApp, url: &str, accept: Option<&str>) -> (StatusCode, Value) {
    let mut req = app.http.get(url);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    json_of(req.send().await.unwrap()).await
}

/// `GET /1.0/identifiers/{did}`: the resolution result, or the bare document with `accept`.
async fn identifiers(app: &TestApp, did: &str, accept: Option<&str>) -> (StatusCode, Value) {
    get(
        app,
        &app.url(&format!("/1.0/identifiers/{}", encode_did(did))),
        accept,
    )
    .await
}

/// Every key id a DID document names: its verification methods and assertion methods
/// (`did#kid` → `kid`).
fn doc_kids(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let frag = |s: &str| s.rsplit_once('#').map(|(_, k)| k.to_owned());
    for vm in doc["verificationMethod"].as_array().into_iter().flatten() {
        out.extend(vm["id"].as_str().and_then(frag));
    }
    for a in doc["assertionMethod"].as_array().into_iter().flatten() {
        out.extend(a.as_str().and_then(frag));
    }
    out
}

/// The kid sets of every view of `org`'s keys: JWKS, org did.json, agent did.json, and
/// `/1.0/identifiers` (bare and resolution result) for both DIDs. Asserts each answers 200.
async fn all_views(
    app: &TestApp,
    org: &TestOrg,
    agent: &TestAgent,
) -> Vec<(String, BTreeSet<String>)> {
    let mut out = vec![("jwks".to_owned(), kids(&org_jwks(app, org).await))];
    let (st, v) = get(app, &format!("{}/did.json", org.issuer), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    out.push(("org did.json".into(), doc_kids(&v)));
    let (st, v) = get(
        app,
        &format!("{}/agents/{}/did.json", org.issuer, agent.id),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    out.push(("agent did.json".into(), doc_kids(&v)));
    for (name, did) in [("org", &org.did), ("agent", &agent.did)] {
        let (st, v) = identifiers(app, did, Some(DID_JSON)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        out.push((format!("identifiers {name} bare"), doc_kids(&v)));
        let (st, v) = identifiers(app, did, None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        out.push((
            format!("identifiers {name} resolution"),
            doc_kids(&v["didDocument"]),
        ));
    }
    out
}

async fn rotate(app: &TestApp, org: &TestOrg) -> BTreeSet<String> {
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/keys/rotate", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn rotation_shows_in_every_view(backend: Backend, delay: u64) {
    let app = spawn_app_with(backend, |s| {
        s.key_activation_delay_secs = Some(delay as i64);
    })
    .await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;
    let old = kids(&org_jwks(&app, &org).await);
    assert_eq!(old.len(), 3);
    // Twice: the second answer is the pre-rendered copy.
    for _ in 0..2 {
        for (view, k) in all_views(&app, &org, &agent).await {
            assert_eq!(k, old, "{view} before the rotation");
        }
    }

    let new = rotate(&app, &org).await;
    assert_eq!(new.len(), 3);
    assert!(new.is_disjoint(&old));
    let both: BTreeSet<String> = old.union(&new).cloned().collect();
    // No clock advance: the new keys are published (pending or active) at once, the old ones stay.
    for (view, k) in all_views(&app, &org, &agent).await {
        assert_eq!(k, both, "{view} right after the rotation");
    }

    // The new keys activate, the old ones retire (still published).
    app.advance(Duration::from_secs(delay));
    for (view, k) in all_views(&app, &org, &agent).await {
        assert_eq!(k, both, "{view} once the new keys are active");
    }
    // Just before removal the old keys are still there ...
    app.advance(Duration::from_secs(REMOVAL_AFTER_RETIREMENT - 5));
    for (view, k) in all_views(&app, &org, &agent).await {
        assert_eq!(k, both, "{view} just before the old keys' removal");
    }
    // ... and at removal they leave every view.
    app.advance(Duration::from_secs(5));
    for (view, k) in all_views(&app, &org, &agent).await {
        assert_eq!(k, new, "{view} after the old keys' removal");
    }
}

async fn rotation_shows_at_once_in_jwks_and_did_documents(backend: Backend) {
    rotation_shows_in_every_view(backend, 0).await;
}

async fn pending_rotation_shows_at_once_and_old_keys_leave_with_time(backend: Backend) {
    rotation_shows_in_every_view(backend, 600).await;
}

/// The resolution result's `didDocumentMetadata.updated`.
async fn updated_of(app: &TestApp, did: &str) -> Value {
    let (st, v) = identifiers(app, did, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["didDocumentMetadata"]["updated"].clone()
}

async fn agent_did_json(app: &TestApp, org: &TestOrg, agent: &TestAgent) -> (StatusCode, Value) {
    get(
        app,
        &format!("{}/agents/{}/did.json", org.issuer, agent.id),
        None,
    )
    .await
}

/// The agent's own keys in its document (`authentication`: its registered keys only).
fn own_keys(doc: &Value) -> Vec<Value> {
    doc["authentication"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn agent_changes_show_at_once_in_its_did_document(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let key_a = ClientKey::es256();
    let agent = crate::private_key_jwt::register(&app, &org, &key_a).await;
    let base = format!("/api/v1/orgs/{}/agents/{}", org.slug, agent.id);

    let (st, first) = agent_did_json(&app, &org, &agent).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(own_keys(&first).len(), 1, "{first}");
    let (_, again) = agent_did_json(&app, &org, &agent).await;
    assert_eq!(again, first);
    let (st, bare) = identifiers(&app, &agent.did, Some(DID_JSON)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(bare, first);
    let updated0 = updated_of(&app, &agent.did).await;

    // New keys: the document lists them in the next request.
    let key_b = ClientKey::ed25519();
    let (st, v) = app
        .admin(
            Method::PATCH,
            &base,
            Some(json!({"jwks": {"keys": [key_b.public_jwk()]}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, second) = agent_did_json(&app, &org, &agent).await;
    assert_eq!(st, StatusCode::OK, "{second}");
    assert_eq!(own_keys(&second).len(), 1, "{second}");
    assert_ne!(own_keys(&second), own_keys(&first), "{second}");
    assert_eq!(
        second["verificationMethod"][0]["type"], "Multikey",
        "{second}"
    );
    let (_, bare) = identifiers(&app, &agent.did, Some(DID_JSON)).await;
    assert_eq!(bare, second);
    let (_, res) = identifiers(&app, &agent.did, None).await;
    assert_eq!(res["didDocument"], second);

    // A rename changes only the metadata's `updated` (the name is not in the document).
    app.advance(Duration::from_secs(3));
    let (st, v) = app
        .admin(Method::PATCH, &base, Some(json!({"name": "renamed bot"})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let updated1 = updated_of(&app, &agent.did).await;
    assert!(updated1.is_string());
    assert_ne!(
        updated1, updated0,
        "the rename shows in didDocumentMetadata"
    );

    // Suspended: the current rule keeps the DID served, not deactivated, same document.
    let (st, v) = app
        .admin(Method::POST, &format!("{base}/suspend"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, suspended) = agent_did_json(&app, &org, &agent).await;
    assert_eq!(st, StatusCode::OK, "{suspended}");
    assert_eq!(suspended, second);
    let (st, res) = identifiers(&app, &agent.did, None).await;
    assert_eq!(st, StatusCode::OK, "{res}");
    assert!(
        res["didDocumentMetadata"].get("deactivated").is_none(),
        "{res}"
    );
    let (st, _) = app
        .admin(Method::POST, &format!("{base}/reactivate"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(agent_did_json(&app, &org, &agent).await.0, StatusCode::OK);

    // Revoked: 410 and the deactivated result, in the next request.
    let (st, v) = app
        .admin(Method::POST, &format!("{base}/revoke"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = agent_did_json(&app, &org, &agent).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
    let (st, res) = identifiers(&app, &agent.did, None).await;
    assert_eq!(st, StatusCode::GONE, "{res}");
    assert_eq!(res["didDocumentMetadata"]["deactivated"], true, "{res}");
    assert_eq!(res["didDocument"]["id"], agent.did.as_str());
    assert!(
        res["didDocument"].get("verificationMethod").is_none(),
        "{res}"
    );
    let (st, v) = identifiers(&app, &agent.did, Some(DID_JSON)).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
}

/// Revocation alone (no other change first), so that only the revocation can replace the
/// pre-rendered copy of the agent's document.
async fn revocation_deactivates_a_pre_rendered_agent_document(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;
    for _ in 0..2 {
        assert_eq!(agent_did_json(&app, &org, &agent).await.0, StatusCode::OK);
        assert_eq!(identifiers(&app, &agent.did, None).await.0, StatusCode::OK);
        assert_eq!(
            identifiers(&app, &agent.did, Some(DID_JSON)).await.0,
            StatusCode::OK
        );
    }
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/agents/{}/revoke", org.slug, agent.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = agent_did_json(&app, &org, &agent).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
    let (st, res) = identifiers(&app, &agent.did, None).await;
    assert_eq!(st, StatusCode::GONE, "{res}");
    assert_eq!(res["didDocumentMetadata"]["deactivated"], true, "{res}");
    let (st, v) = identifiers(&app, &agent.did, Some(DID_JSON)).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
    // The organization's own document is not affected.
    let (st, v) = get(&app, &format!("{}/did.json", org.issuer), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn org_rename_and_deletion_show_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let agent = app.create_agent(&org, &[]).await;
    let discovery = format!("{}/.well-known/openid-configuration", org.issuer);
    let (st, disc0) = get(&app, &discovery, None).await;
    assert_eq!(st, StatusCode::OK, "{disc0}");
    all_views(&app, &org, &agent).await;
    let (_, doc0) = get(&app, &format!("{}/did.json", org.issuer), None).await;
    let updated0 = updated_of(&app, &org.did).await;

    // A rename: the slug, issuer and DID stay, so the document and discovery do not change; the
    // document metadata's `updated` does, in the next request.
    app.advance(Duration::from_secs(3));
    let (st, v) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/orgs/{}", org.slug),
            Some(json!({"name": "Renamed Org"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "Renamed Org");
    assert_ne!(
        updated_of(&app, &org.did).await,
        updated0,
        "the rename shows in didDocumentMetadata"
    );
    let (_, doc1) = get(&app, &format!("{}/did.json", org.issuer), None).await;
    assert_eq!(doc1, doc0);
    let (_, disc1) = get(&app, &discovery, None).await;
    assert_eq!(disc1, disc0);
    all_views(&app, &org, &agent).await;

    // Deleted: every document of the organization is gone in the next request.
    let (st, v) = app
        .admin(Method::DELETE, &format!("/api/v1/orgs/{}", org.slug), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    for url in [
        format!("{}/did.json", org.issuer),
        format!("{}/jwks.json", org.issuer),
        discovery.clone(),
        format!("{}/agents/{}/did.json", org.issuer, agent.id),
    ] {
        let (st, v) = get(&app, &url, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{url}: {v}");
    }
    for did in [&org.did, &agent.did] {
        for accept in [None, Some(DID_JSON)] {
            let (st, v) = identifiers(&app, did, accept).await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{did} {accept:?}: {v}");
        }
    }
}

async fn revoke_token(app: &TestApp, org: &TestOrg, agent: &TestAgent, token: &str) {
    let resp = app
        .post_form(
            org,
            "/oauth2/revoke",
            Some((&agent.client_id, agent.secret.as_deref().unwrap())),
            &[("token", token)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Verifies `token` (twice: the second is answered from the verified-token cache) and asserts
/// it is accepted.
async fn assert_accepted(app: &TestApp, org: &TestOrg, rs: &TestAgent, token: &str) {
    for _ in 0..2 {
        let (st, v, _) = app.agent_info(org, token).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(app.introspect(org, rs, token).await["active"], true);
    }
}

async fn assert_refused(app: &TestApp, org: &TestOrg, rs: &TestAgent, token: &str, why: &str) {
    let (st, v, _) = app.agent_info(org, token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{why}: {v}");
    let v = app.introspect(org, rs, token).await;
    assert_eq!(v, json!({"active": false}), "{why}");
}

fn access_token(v: &Value) -> String {
    v["access_token"].as_str().unwrap().to_owned()
}

async fn verified_tokens_are_checked_again_after_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let org = app.create_org().await;
    let rs = app.create_agent(&org, &[]).await;
    let agent = app.create_agent(&org, &["read"]).await;
    let base = format!("/api/v1/orgs/{}/agents/{}", org.slug, agent.id);

    // The agent suspended.
    let t = access_token(&app.token(&org, &agent, &[]).await);
    assert_accepted(&app, &org, &rs, &t).await;
    let (st, _) = app
        .admin(Method::POST, &format!("{base}/suspend"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_refused(&app, &org, &rs, &t, "agent suspended").await;
    let (st, _) = app
        .admin(Method::POST, &format!("{base}/reactivate"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    // The current rule: a token issued before the suspension stays refused after reactivation.
    assert_refused(&app, &org, &rs, &t, "issued before the suspension").await;
    let t = access_token(&app.token(&org, &agent, &[]).await);
    assert_accepted(&app, &org, &rs, &t).await;

    // The token revoked (RFC 7009).
    let t2 = access_token(&app.token(&org, &agent, &[]).await);
    assert_accepted(&app, &org, &rs, &t2).await;
    revoke_token(&app, &org, &agent, &t2).await;
    assert_refused(&app, &org, &rs, &t2, "token revoked").await;
    assert_accepted(&app, &org, &rs, &t).await;

    // Another organization's issuer: refused, also after it was verified at its own.
    let other = app.create_org().await;
    let other_rs = app.create_agent(&other, &[]).await;
    let t3 = access_token(&app.token(&org, &agent, &[]).await);
    assert_accepted(&app, &org, &rs, &t3).await;
    assert_refused(&app, &other, &other_rs, &t3, "another organization").await;
    assert_accepted(&app, &org, &rs, &t3).await;

    // Keys rotated: the token stays valid while its key is published ...
    let t4 = access_token(&app.token(&org, &agent, &[]).await);
    assert_accepted(&app, &org, &rs, &t4).await;
    rotate(&app, &org).await;
    assert_accepted(&app, &org, &rs, &t4).await;
    // ... and not once the old key has been removed. (By design removal comes after the
    // longest token lifetime, so the token has also expired by then: this cannot tell the
    // key-set check of the verified-token cache from the expiry check.)
    app.advance(Duration::from_secs(REMOVAL_AFTER_RETIREMENT));
    assert!(!kids(&org_jwks(&app, &org).await).contains(jwt_header(&t4)["kid"].as_str().unwrap()));
    let rs2 = app.create_agent(&org, &[]).await;
    assert_refused(&app, &org, &rs2, &t4, "signing key removed").await;
}

on_all_backends!(
    rotation_shows_at_once_in_jwks_and_did_documents,
    pending_rotation_shows_at_once_and_old_keys_leave_with_time,
    agent_changes_show_at_once_in_its_did_document,
    revocation_deactivates_a_pre_rendered_agent_document,
    org_rename_and_deletion_show_at_once,
    verified_tokens_are_checked_again_after_changes,
);

/// With `RUST_LOG` unset the access log is off: a request leaves no `request finished` line before
/// a line the default level prints anyway (a refused admin authentication, at INFO).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_log_filter_prints_no_access_log() {
    use tokio::io::AsyncBufReadExt;

    let dir = temp_dir();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agentidp"))
        .arg("serve")
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AGENTIDP_BIND", "127.0.0.1:0")
        .env("AGENTIDP_DATA_DIR", dir.join("data"))
        .env(
            "AGENTIDP_BOOTSTRAP_TOKEN",
            "access-log-token-0123456789abcdef",
        )
        .env("AGENTIDP_LOG_FORMAT", "json")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn agentidp");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let next = async |lines: &mut tokio::io::Lines<_>| -> Value {
        let line: String = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a log line within 30 s")
            .unwrap()
            .expect("the server is running");
        serde_json::from_str(&line).unwrap_or(Value::String(line))
    };
    let addr = loop {
        let v = next(&mut lines).await;
        if let Some(a) = v["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("listening on "))
        {
            break a.to_owned();
        }
    };
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The marker: logged at the default level.
    let r = http
        .get(format!("http://{addr}/api/v1/orgs"))
        .bearer_auth("not-the-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let mut before = Vec::new();
    loop {
        let v = next(&mut lines).await;
        if v["event"] == "admin.unauthorized" {
            break;
        }
        before.push(v);
    }
    for v in &before {
        assert_ne!(v["message"], "request finished", "{v}");
        assert!(v.get("latency_ms").is_none(), "{v}");
    }
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
