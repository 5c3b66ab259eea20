//! Typed helpers over one generic request function, plus fixtures.

use base64::prelude::*;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use super::spawn::TestApp;

/// An organization created through the admin API.
#[derive(Debug, Clone)]
pub struct TestOrg {
    pub slug: String,
    pub id: String,
    pub issuer: String,
    pub did: String,
}

/// An agent created through the admin API.
#[derive(Debug, Clone)]
pub struct TestAgent {
    pub id: String,
    pub client_id: String,
    pub secret: Option<String>,
    pub did: String,
    pub body: Value,
}

pub fn random_slug() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Decodes a JWT's payload without verifying (for assertions on claims already verified elsewhere).
pub fn jwt_claims(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&BASE64_URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

pub fn jwt_header(jwt: &str) -> Value {
    let p = jwt.split('.').next().unwrap();
    serde_json::from_slice(&BASE64_URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Admin API call with the platform token.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        json_of(resp).await
    }

    pub async fn create_org(&self) -> TestOrg {
        let slug = random_slug();
        let (st, v) = self
            .admin(
                reqwest::Method::POST,
                "/api/v1/orgs",
                Some(json!({"slug": slug, "name": "Test Org"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        TestOrg {
            slug,
            id: v["id"].as_str().unwrap().into(),
            issuer: v["issuer"].as_str().unwrap().into(),
            did: v["did"].as_str().unwrap().into(),
        }
    }

    pub async fn create_agent_with(&self, org: &TestOrg, body: Value) -> TestAgent {
        let (st, v) = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{}/agents", org.slug),
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        TestAgent {
            id: v["id"].as_str().unwrap().into(),
            client_id: v["client_id"].as_str().unwrap().into(),
            secret: v["client_secret"].as_str().map(str::to_owned),
            did: v["did"].as_str().unwrap().into(),
            body: v,
        }
    }

    pub async fn create_agent(&self, org: &TestOrg, scopes: &[&str]) -> TestAgent {
        self.create_agent_with(org, json!({"name": "test agent", "scopes": scopes}))
            .await
    }

    /// POST a form to an endpoint of `org`'s issuer.
    pub async fn post_form(
        &self,
        org: &TestOrg,
        endpoint: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Response {
        let mut req = self
            .http
            .post(format!("{}{endpoint}", org.issuer))
            .form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.unwrap()
    }

    /// client_credentials with client_secret_basic; returns the raw response.
    pub async fn token_response(
        &self,
        org: &TestOrg,
        agent: &TestAgent,
        extra: &[(&str, &str)],
    ) -> Response {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        self.post_form(
            org,
            "/oauth2/token",
            Some((&agent.client_id, agent.secret.as_deref().unwrap())),
            &form,
        )
        .await
    }

    /// client_credentials with client_secret_basic; asserts success and returns the JSON.
    pub async fn token(&self, org: &TestOrg, agent: &TestAgent, extra: &[(&str, &str)]) -> Value {
        let (st, v) = json_of(self.token_response(org, agent, extra).await).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    }

    pub async fn introspect(&self, org: &TestOrg, caller: &TestAgent, token: &str) -> Value {
        let resp = self
            .post_form(
                org,
                "/oauth2/introspect",
                Some((&caller.client_id, caller.secret.as_deref().unwrap())),
                &[("token", token)],
            )
            .await;
        let (st, v) = json_of(resp).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    }

    pub async fn agent_info(
        &self,
        org: &TestOrg,
        token: &str,
    ) -> (StatusCode, Value, Option<String>) {
        let resp = self
            .http
            .get(format!("{}/agent-info", org.issuer))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let (st, v) = json_of(resp).await;
        (st, v, challenge)
    }

    pub async fn get_json(&self, url: &str) -> (StatusCode, Value) {
        json_of(self.http.get(url).send().await.unwrap()).await
    }
}

pub async fn json_of(resp: Response) -> (StatusCode, Value) {
    let st = resp.status();
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (st, v)
}

/// Asserts an RFC 6749 §5.2 error.
pub async fn assert_oauth_error(resp: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let (st, v) = json_of(resp).await;
    assert_eq!(st, status, "{v}");
    assert_eq!(v["error"], code, "{v}");
    assert!(v["error_description"].is_string(), "{v}");
    v
}

/// The organization's published JWK Set (`{iss}/jwks.json`), asserting a 200.
pub async fn org_jwks(app: &TestApp, org: &TestOrg) -> Value {
    let (st, v) = app.get_json(&format!("{}/jwks.json", org.issuer)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// The `kid`s of a JWK Set.
pub fn kids(jwks: &Value) -> std::collections::BTreeSet<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}
