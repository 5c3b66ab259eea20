//! People sign in (issue 12 points 3 to 5): the authorization code flow through the real
//! sign-in and consent pages, as a browser without JavaScript drives them (cookies kept by hand,
//! redirects followed by hand), ID tokens and userinfo for people, refresh-token rotation, and
//! RP-Initiated Logout; and the attacks: PKCE downgrade, code replay, refresh reuse, redirect
//! URI variations, CSRF, mix-up.

use std::collections::BTreeMap;

use base64::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::clients::app_client;
use super::users::PASSWORD;
use crate::on_all_backends;
use crate::support::*;

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-long-enough";

pub fn challenge(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    BASE64_URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// A browser without JavaScript: a cookie jar, no automatic redirects.
pub struct Browser {
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
}

pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let req = if self.jar.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let resp = req.send().await.unwrap();
        for c in resp.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
        }
        Answer {
            status: resp.status(),
            location: resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned()),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        let r = self.http.get(url);
        self.send(r).await
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)], origin: Option<&str>) -> Answer {
        let mut r = self.http.post(url).form(form);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        self.send(r).await
    }

    pub fn has_cookie(&self, prefix: &str) -> bool {
        self.jar.keys().any(|k| k.starts_with(prefix))
    }
}

/// The value of the hidden field `name` on a page.
pub fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {body}"));
    let rest = &body[at + marker.len()..];
    let v = &rest[..rest.find('"').unwrap()];
    v.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// An organization with a person (password [`PASSWORD`]) and a public app of the code flow.
pub struct Setup {
    pub org: TestOrg,
    pub user: Value,
    pub client_id: String,
    pub origin: String,
}

pub const REDIRECT: &str = "http://127.0.0.1/cb";

pub async fn setup(app: &TestApp) -> Setup {
    let org = app.create_org().await;
    let (st, user) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/users", org.slug),
            Some(json!({"email": "ada@example.com", "name": "Ada Lovelace", "role": "admin", "password": PASSWORD})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{user}");
    let client = app_client(
        app,
        &org,
        json!({"name": "Notebook", "scopes": ["notes:read", "admin_api"], "token_endpoint_auth_method": "none",
               "redirect_uris": [REDIRECT], "post_logout_redirect_uris": ["http://127.0.0.1/bye"]}),
    )
    .await;
    let origin = {
        let u = url::Url::parse(&org.issuer).unwrap();
        u.origin().ascii_serialization()
    };
    Setup {
        org,
        user,
        client_id: client["client_id"].as_str().unwrap().to_owned(),
        origin,
    }
}

pub fn authorize_url(s: &Setup, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{}/oauth2/authorize", s.org.issuer)).unwrap();
    {
        let mut q = u.query_pairs_mut();
        let scope = extra.iter().find(|(k, _)| *k == "scope").map_or(
            "openid profile email offline_access notes:read",
            |(_, v)| *v,
        );
        q.append_pair("response_type", "code")
            .append_pair("client_id", &s.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", "st-123")
            .append_pair("nonce", "n-456")
            .append_pair("code_challenge", &challenge(VERIFIER))
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra.iter().filter(|(k, _)| *k != "scope") {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// Signs in through the pages and consents; the redirect's query (code, state, iss).
pub async fn sign_in(b: &mut Browser, s: &Setup, authorize: &str) -> BTreeMap<String, String> {
    sign_in_as(b, s, authorize, "ADA@example.com").await
}

pub async fn sign_in_as(
    b: &mut Browser,
    s: &Setup,
    authorize: &str,
    email: &str,
) -> BTreeMap<String, String> {
    let a = b.get(authorize).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let login = a.location.unwrap();
    assert!(
        login.starts_with(&format!("{}/login?", s.org.issuer)),
        "{login}"
    );
    let page = b.get(&login).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(b.has_cookie("aidp_csrf"));
    let consent = b
        .post(
            &format!("{}/login", s.org.issuer),
            &[
                ("email", email),
                ("password", PASSWORD),
                ("csrf", &hidden(&page.body, "csrf")),
                ("authorize", &hidden(&page.body, "authorize")),
            ],
            Some(&s.origin),
        )
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(
        consent.body.contains("Notebook") && consent.body.contains("know who you are"),
        "{}",
        consent.body
    );
    assert!(b.has_cookie(&format!("aidp_session_{}", s.org.slug)));
    let done = b
        .post(
            &format!("{}/consent", s.org.issuer),
            &[
                ("authorize", &hidden(&consent.body, "authorize")),
                ("csrf", &hidden(&consent.body, "csrf")),
                ("decision", "allow"),
            ],
            Some(&s.origin),
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let loc = done.location.unwrap();
    let q = query_of(&loc);
    assert!(q.contains_key("code"), "{loc}");
    q
}

pub async fn redeem(app: &TestApp, s: &Setup, code: &str, verifier: &str) -> reqwest::Response {
    app.post_form(
        &s.org,
        "/oauth2/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", &s.client_id),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn a_person_signs_in_consents_and_gets_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let mut b = Browser::new();
    // A loopback redirect URI on another port matches (RFC 8252 §7.3).
    let redirect = "http://127.0.0.1:49152/cb";
    let q = sign_in(&mut b, &s, &authorize_url(&s, redirect, &[])).await;
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.org.issuer, "RFC 9207");
    let code = &q["code"];

    let r = app
        .post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect),
                ("client_id", &s.client_id),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (st, t) = json_of(r).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let user_id = s.user["id"].as_str().unwrap();
    let at = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], user_id);
    assert_eq!(at["client_id"], s.client_id);
    assert_eq!(at["aud"], s.org.issuer);
    let id = jwt_claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], user_id);
    assert_eq!(id["aud"], s.client_id);
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["email"], "ada@example.com");
    assert_eq!(id["email_verified"], false);
    assert_eq!(id["name"], "Ada Lovelace");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert!(id["auth_time"].is_i64() && id["sid"].is_string(), "{id}");
    assert_eq!(jwt_header(t["id_token"].as_str().unwrap())["typ"], "JWT");
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.starts_with("aidp_r_"));

    // userinfo answers for the person.
    let r = app
        .http
        .get(format!("{}/agent-info", s.org.issuer))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let (st, info) = json_of(r).await;
    assert_eq!(st, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], user_id);
    assert_eq!(info["email"], "ada@example.com");
    assert_eq!(info["name"], "Ada Lovelace");

    // The session stays: a second authorization needs no sign-in and no consent.
    let again = b.get(&authorize_url(&s, REDIRECT, &[])).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let q2 = query_of(again.location.as_deref().unwrap());
    assert!(q2.contains_key("code"), "{q2:?}");
    // prompt=none works with the session; prompt=consent asks again.
    let none = b
        .get(&authorize_url(&s, REDIRECT, &[("prompt", "none")]))
        .await;
    assert!(query_of(none.location.as_deref().unwrap()).contains_key("code"));
    let ask = b
        .get(&authorize_url(&s, REDIRECT, &[("prompt", "consent")]))
        .await;
    assert_eq!(ask.status, StatusCode::OK, "{}", ask.body);
    assert!(ask.body.contains("Allow access?"));

    // Refresh: rotated; the old one again revokes the family (RFC 9700 §4.14.2).
    let (st, t2) = json_of(
        app.post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", &s.client_id),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t2}");
    let refresh2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    let reuse = app
        .post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", &s.client_id),
            ],
        )
        .await;
    assert_oauth_error(reuse, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let after = app
        .post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh2),
                ("client_id", &s.client_id),
            ],
        )
        .await;
    assert_oauth_error(after, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // ... and the access tokens of the family stop being good.
    let r = app
        .http
        .get(format!("{}/agent-info", s.org.issuer))
        .bearer_auth(t2["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // RFC 7009: the public client revokes a refresh token (by its client_id): the family and
    // its access tokens end.
    let q3 = query_of(
        b.get(&authorize_url(&s, REDIRECT, &[]))
            .await
            .location
            .as_deref()
            .unwrap(),
    );
    let (_, t3) = json_of(redeem(&app, &s, &q3["code"], VERIFIER).await).await;
    let r = app
        .post_form(
            &s.org,
            "/oauth2/revoke",
            None,
            &[
                ("token", t3["refresh_token"].as_str().unwrap()),
                ("token_type_hint", "refresh_token"),
                ("client_id", &s.client_id),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t3["refresh_token"].as_str().unwrap()),
                ("client_id", &s.client_id),
            ],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = app
        .http
        .get(format!("{}/agent-info", s.org.issuer))
        .bearer_auth(t3["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // RP-Initiated Logout with the ID token as hint: back to the registered URI with state.
    let mut logout = url::Url::parse(&format!("{}/oauth2/logout", s.org.issuer)).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", t["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", "http://127.0.0.1/bye")
        .append_pair("state", "bye-1");
    let out = b.get(logout.as_str()).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert_eq!(
        out.location.as_deref(),
        Some("http://127.0.0.1/bye?state=bye-1")
    );
    assert!(!b.has_cookie("aidp_session_"));
    // Signed out: prompt=none answers login_required at the client.
    let none = b
        .get(&authorize_url(&s, REDIRECT, &[("prompt", "none")]))
        .await;
    let q = query_of(none.location.as_deref().unwrap());
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["iss"], s.org.issuer);
}

async fn codes_are_single_use_bound_and_pkce_is_required(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let mut b = Browser::new();
    let q = sign_in(&mut b, &s, &authorize_url(&s, REDIRECT, &[])).await;
    let code = q["code"].clone();

    // A wrong verifier, another redirect URI, another client: invalid_grant, the code unspent.
    let r = redeem(&app, &s, &code, &format!("{VERIFIER}x")).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = app
        .post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1/cb/"),
                ("client_id", &s.client_id),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let other = app_client(
        &app,
        &s.org,
        json!({"name": "Other", "scopes": [], "token_endpoint_auth_method": "none", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let r = app
        .post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", other["client_id"].as_str().unwrap()),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // Another organization does not know the code.
    let org2 = app.create_org().await;
    let r = app
        .post_form(
            &org2,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", &s.client_id),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert!(r.status().is_client_error());

    // The first good redemption works; a replay is refused and revokes what was issued.
    let (st, t) = json_of(redeem(&app, &s, &code, VERIFIER).await).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let r = redeem(&app, &s, &code, VERIFIER).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = app
        .http
        .get(format!("{}/agent-info", s.org.issuer))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the replayed code's access token is revoked"
    );
    let r = app
        .post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
                ("client_id", &s.client_id),
            ],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // A code older than 60 s is dead.
    let again = b.get(&authorize_url(&s, REDIRECT, &[])).await;
    let code = query_of(again.location.as_deref().unwrap())["code"].clone();
    app.advance(std::time::Duration::from_secs(61));
    let r = redeem(&app, &s, &code, VERIFIER).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // PKCE downgrade: no challenge, plain, or no method: invalid_request at the client.
    for (drop, extra) in [
        ("code_challenge", vec![]),
        (
            "code_challenge_method",
            vec![("code_challenge_method", "plain")],
        ),
        ("code_challenge_method", vec![]),
    ] {
        let mut u = url::Url::parse(&authorize_url(&s, REDIRECT, &[])).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != drop)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        u.query_pairs_mut().clear();
        for (k, v) in &pairs {
            u.query_pairs_mut().append_pair(k, v);
        }
        for (k, v) in &extra {
            u.query_pairs_mut().append_pair(k, v);
        }
        let a = b.get(u.as_str()).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{drop}");
        let q = query_of(a.location.as_deref().unwrap());
        assert_eq!(q["error"], "invalid_request", "{drop}: {q:?}");
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], s.org.issuer);
    }
}

async fn redirect_uri_variations_are_never_redirected_to(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let confidential = app_client(
        &app,
        &s.org,
        json!({"name": "Web", "scopes": [], "redirect_uris": ["https://app.example/cb?x=1"]}),
    )
    .await;
    let mut b = Browser::new();
    for uri in [
        "http://127.0.0.1/cb/",
        "http://127.0.0.1/CB",
        "http://127.0.0.1/cb?x=1",
        "http://user@127.0.0.1/cb",
        "http://localhost/cb",
        "https://127.0.0.1/cb",
        "http://127.0.0.1/cb#f",
        "http://127.0.0.1.evil.example/cb",
        "javascript:alert(1)",
    ] {
        let a = b.get(&authorize_url(&s, uri, &[])).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(a.location.is_none(), "{uri}");
    }
    // The confidential client's URI with its query must match exactly too.
    let web = Setup {
        org: s.org.clone(),
        user: s.user.clone(),
        client_id: confidential["client_id"].as_str().unwrap().to_owned(),
        origin: s.origin.clone(),
    };
    for uri in [
        "https://app.example/cb",
        "https://app.example/cb?x=1&y=2",
        "https://app.example/cb?x=2",
    ] {
        let a = b.get(&authorize_url(&web, uri, &[])).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
    }
    let ok = b
        .get(&authorize_url(&web, "https://app.example/cb?x=1", &[]))
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    // Unknown client, missing client, duplicated parameter: a page, no redirect.
    for url in [
        format!(
            "{}/oauth2/authorize?response_type=code&client_id=nope&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb",
            s.org.issuer
        ),
        format!("{}/oauth2/authorize?response_type=code", s.org.issuer),
        format!("{}&state=again", authorize_url(&s, REDIRECT, &[])),
        format!(
            "{}/oauth2/authorize?client_id={}&client_id={}",
            s.org.issuer, s.client_id, s.client_id
        ),
    ] {
        let a = b.get(&url).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(a.location.is_none());
    }
    // A good request with a bad response_type is redirected with the error.
    let a = b
        .get(&authorize_url(&s, REDIRECT, &[]).replace("response_type=code", "response_type=token"))
        .await;
    assert_eq!(
        query_of(a.location.as_deref().unwrap())["error"],
        "unsupported_response_type"
    );
}

async fn sign_in_forms_refuse_forgery_and_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let login = format!("{}/login", s.org.issuer);
    let mut b = Browser::new();
    let page = b.get(&login).await;
    let csrf = hidden(&page.body, "csrf");
    // No CSRF cookie (a cross-site form): refused, no session.
    let mut stranger = Browser::new();
    let r = stranger
        .post(
            &login,
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!stranger.has_cookie("aidp_session_"));
    // Another site's Origin: refused.
    let r = b
        .post(
            &login,
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Duplicated, unknown and huge fields: 400 pages.
    let r = b
        .post(
            &login,
            &[
                ("email", "a@example.com"),
                ("email", "b@example.com"),
                ("password", "x"),
                ("csrf", &csrf),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = b.post(&login, &[("admin", "1")], None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let big = "x".repeat(20_000);
    let r = b
        .post(
            &login,
            &[("email", &big), ("password", "x"), ("csrf", &csrf)],
            None,
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    // A wrong password and an unknown address read the same.
    let page = b.get(&login).await;
    let csrf = hidden(&page.body, "csrf");
    let wrong = b
        .post(
            &login,
            &[
                ("email", "ada@example.com"),
                ("password", "not the password"),
                ("csrf", &csrf),
            ],
            None,
        )
        .await;
    let page = b.get(&login).await;
    let csrf = hidden(&page.body, "csrf");
    let unknown = b
        .post(
            &login,
            &[
                ("email", "nobody@example.com"),
                ("password", "not the password"),
                ("csrf", &csrf),
            ],
            None,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("The email or password is not right."));
    assert!(unknown.body.contains("The email or password is not right."));

    // Consent CSRF: a consent form posted without this session's token changes nothing.
    let mut b = Browser::new();
    let a = b.get(&authorize_url(&s, REDIRECT, &[])).await;
    let page = b.get(a.location.as_deref().unwrap()).await;
    let consent = b
        .post(
            &login,
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("csrf", &hidden(&page.body, "csrf")),
                ("authorize", &hidden(&page.body, "authorize")),
            ],
            None,
        )
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    let r = b
        .post(
            &format!("{}/consent", s.org.issuer),
            &[
                ("authorize", &hidden(&consent.body, "authorize")),
                ("csrf", "forged"),
                ("decision", "allow"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Deny: access_denied at the client, with state and iss.
    let r = b
        .post(
            &format!("{}/consent", s.org.issuer),
            &[
                ("authorize", &hidden(&consent.body, "authorize")),
                ("csrf", &hidden(&consent.body, "csrf")),
                ("decision", "deny"),
            ],
            None,
        )
        .await;
    let q = query_of(r.location.as_deref().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-123");
    // A logout link without a hint asks first: the session survives the GET.
    let r = b.get(&format!("{}/oauth2/logout", s.org.issuer)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Sign out?"));
    assert!(b.has_cookie("aidp_session_"));
    let r = b
        .post(
            &format!("{}/oauth2/logout", s.org.issuer),
            &[("request", ""), ("confirm", &hidden(&r.body, "confirm"))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!b.has_cookie("aidp_session_"));
    // An unregistered post_logout_redirect_uri is never redirected to.
    let r = b
        .get(&format!(
            "{}/oauth2/logout?client_id={}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
            s.org.issuer, s.client_id
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
}

async fn failed_sign_ins_are_braked_without_locking_the_owner_out(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth_failure_limit = 0).await;
    let s = setup(&app).await;
    let login = format!("{}/login", s.org.issuer);
    // An attacker (one address; the test's) fails 10 times: the 11th try is braked.
    let mut attacker = Browser::new();
    let mut last = StatusCode::OK;
    for _ in 0..11 {
        let page = attacker.get(&login).await;
        let r = attacker
            .post(
                &login,
                &[
                    ("email", "ada@example.com"),
                    ("password", "guess guess guess"),
                    ("csrf", &hidden(&page.body, "csrf")),
                ],
                None,
            )
            .await;
        last = r.status;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers.contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // The brake holds for the address that failed; braked, even the right password waits.
    let page = attacker.get(&login).await;
    let r = attacker
        .post(
            &login,
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("csrf", &hidden(&page.body, "csrf")),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // A minute later one more try is allowed: no lock lasts forever.
    app.advance(std::time::Duration::from_secs(61));
    let page = attacker.get(&login).await;
    let r = attacker
        .post(
            &login,
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("csrf", &hidden(&page.body, "csrf")),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn sessions_time_out_and_suspended_people_lose_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let mut b = Browser::new();
    sign_in(&mut b, &s, &authorize_url(&s, REDIRECT, &[])).await;
    let prompt_none = authorize_url(&s, REDIRECT, &[("prompt", "none")]);
    assert!(query_of(b.get(&prompt_none).await.location.as_deref().unwrap()).contains_key("code"));
    // max_age: a sign-in older than it needs a new one (and prompt=none says so).
    app.advance(std::time::Duration::from_secs(120));
    let q = query_of(
        b.get(&authorize_url(
            &s,
            REDIRECT,
            &[("prompt", "none"), ("max_age", "60")],
        ))
        .await
        .location
        .as_deref()
        .unwrap(),
    );
    assert_eq!(q["error"], "login_required");
    // Idle timeout (default 2 h).
    app.advance(std::time::Duration::from_secs(7201));
    let q = query_of(b.get(&prompt_none).await.location.as_deref().unwrap());
    assert_eq!(q["error"], "login_required");

    // The policy's session rules apply; suspending the person ends the session's use.
    let (st, v) = app
        .admin(
            Method::PUT,
            &format!("/api/v1/orgs/{}/policy", s.org.slug),
            Some(json!({"session": {"idle_timeout_secs": 600, "absolute_timeout_secs": 3600, "single_session": true}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["session"]["idle_timeout_secs"], 600);
    let mut b = Browser::new();
    sign_in_again(&mut b, &s).await;
    assert!(query_of(b.get(&prompt_none).await.location.as_deref().unwrap()).contains_key("code"));
    // single_session: a second sign-in ends the first.
    let mut b2 = Browser::new();
    sign_in_again(&mut b2, &s).await;
    let q = query_of(b.get(&prompt_none).await.location.as_deref().unwrap());
    assert_eq!(q["error"], "login_required");
    assert!(query_of(b2.get(&prompt_none).await.location.as_deref().unwrap()).contains_key("code"));
    let user_id = s.user["id"].as_str().unwrap();
    let (st, _) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/orgs/{}/users/{user_id}", s.org.slug),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let q = query_of(b2.get(&prompt_none).await.location.as_deref().unwrap());
    assert_eq!(q["error"], "login_required");
}

/// Signs in (consent already given): the authorization redirect with a code.
async fn sign_in_again(b: &mut Browser, s: &Setup) {
    let a = b.get(&authorize_url(s, REDIRECT, &[])).await;
    let page = b.get(a.location.as_deref().unwrap()).await;
    let r = b
        .post(
            &format!("{}/login", s.org.issuer),
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("csrf", &hidden(&page.body, "csrf")),
                ("authorize", &hidden(&page.body, "authorize")),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(query_of(r.location.as_deref().unwrap()).contains_key("code"));
}

/// An access token for the admin API of the existing person `email` (password [`PASSWORD`])
/// of `org`, through a public app and the sign-in pages: what the console will do.
pub async fn admin_api_token(app: &TestApp, org: &TestOrg, email: &str) -> String {
    let client = app_client(
        app,
        org,
        json!({"name": "Console", "scopes": ["admin_api"], "token_endpoint_auth_method": "none", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let s = Setup {
        org: org.clone(),
        user: json!({}),
        client_id: client["client_id"].as_str().unwrap().to_owned(),
        origin: String::new(),
    };
    let api = app.url("/api/v1");
    let mut b = Browser::new();
    let a = b
        .get(&authorize_url(
            &s,
            REDIRECT,
            &[("resource", &api), ("scope", "openid admin_api")],
        ))
        .await;
    let page = b.get(a.location.as_deref().unwrap()).await;
    let consent = b
        .post(
            &format!("{}/login", org.issuer),
            &[
                ("email", email),
                ("password", PASSWORD),
                ("csrf", &hidden(&page.body, "csrf")),
                ("authorize", &hidden(&page.body, "authorize")),
            ],
            None,
        )
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    let done = b
        .post(
            &format!("{}/consent", org.issuer),
            &[
                ("authorize", &hidden(&consent.body, "authorize")),
                ("csrf", &hidden(&consent.body, "csrf")),
                ("decision", "allow"),
            ],
            None,
        )
        .await;
    let q = query_of(done.location.as_deref().unwrap());
    let (st, t) = json_of(redeem(app, &s, &q["code"], VERIFIER).await).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    t["access_token"].as_str().unwrap().to_owned()
}

/// A session of a new person of `org` (signed in through the sign-in page): (user id, session
/// id).
pub async fn session_fixture(app: &TestApp, org: &TestOrg) -> (String, String) {
    let email = super::users::email();
    let (st, user) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/users", org.slug),
            Some(json!({"email": email, "name": "P", "password": PASSWORD})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{user}");
    let mut b = Browser::new();
    let login = format!("{}/login", org.issuer);
    let page = b.get(&login).await;
    let r = b
        .post(
            &login,
            &[
                ("email", &email),
                ("password", PASSWORD),
                ("csrf", &hidden(&page.body, "csrf")),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = user["id"].as_str().unwrap().to_owned();
    let (st, list) = app
        .admin(
            Method::GET,
            &format!("/api/v1/orgs/{}/users/{id}/sessions", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    (id, list[0]["id"].as_str().unwrap().to_owned())
}

async fn a_persons_token_for_the_admin_api_is_a_principal_with_their_role(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let api = app.url("/api/v1");
    let mut b = Browser::new();
    let q = sign_in(
        &mut b,
        &s,
        &authorize_url(
            &s,
            REDIRECT,
            &[("resource", &api), ("scope", "openid admin_api notes:read")],
        ),
    )
    .await;
    let (st, t) = json_of(redeem(&app, &s, &q["code"], VERIFIER).await).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let token = t["access_token"].as_str().unwrap().to_owned();
    // Without the admin_api scope the admin API is no resource of this client's tokens.
    let refused = b
        .get(&authorize_url(
            &s,
            REDIRECT,
            &[("resource", &api), ("scope", "openid")],
        ))
        .await;
    assert_eq!(
        query_of(refused.location.as_deref().unwrap())["error"],
        "invalid_target"
    );
    // An agent the person delegated to never gets the person's admin role: the exchange drops
    // the admin API from the audience, and the admin API refuses delegated tokens.
    let helper = app.create_agent(&s.org, &["notes:read"]).await;
    let (st, _) = app
        .admin(
            Method::POST,
            &format!(
                "/api/v1/orgs/{}/users/{}/delegations",
                s.org.slug,
                s.user["id"].as_str().unwrap()
            ),
            Some(json!({"agent_id": helper.id, "scopes": ["notes:read"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, d) = json_of(
        app.post_form(
            &s.org,
            "/oauth2/token",
            Some((&helper.client_id, helper.secret.as_deref().unwrap())),
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", &token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let dt = d["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(dt)["aud"], s.org.issuer);
    let (st, _) = super::api_keys::call(
        &app,
        dt,
        Method::GET,
        &format!("/api/v1/orgs/{}/agents", s.org.slug),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(jwt_claims(&token)["aud"], api);
    let agents = format!("/api/v1/orgs/{}/agents", s.org.slug);
    // Ada is an admin: she reads and registers agents with her own token.
    let (st, v) = super::api_keys::call(&app, &token, Method::GET, &agents, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = super::api_keys::call(
        &app,
        &token,
        Method::POST,
        &agents,
        Some(json!({"name": "by ada", "scopes": []})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // ... but not what needs an owner, nor another organization's objects.
    let (st, _) = super::api_keys::call(
        &app,
        &token,
        Method::DELETE,
        &format!("/api/v1/orgs/{}", s.org.slug),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let other = app.create_org().await;
    let (st, _) = super::api_keys::call(
        &app,
        &token,
        Method::GET,
        &format!("/api/v1/orgs/{}/agents", other.slug),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A member is a member.
    let (st, v) = app
        .admin(
            Method::POST,
            &format!("/api/v1/orgs/{}/users", s.org.slug),
            Some(json!({"email": "bob@example.com", "name": "Bob", "role": "member", "password": PASSWORD})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let mut bob = Browser::new();
    let q = sign_in_as(
        &mut bob,
        &s,
        &authorize_url(
            &s,
            REDIRECT,
            &[("resource", &api), ("scope", "openid admin_api")],
        ),
        "bob@example.com",
    )
    .await;
    let (_, tb) = json_of(redeem(&app, &s, &q["code"], VERIFIER).await).await;
    let bob_token = tb["access_token"].as_str().unwrap();
    let (st, _) = super::api_keys::call(&app, bob_token, Method::GET, &agents, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = super::api_keys::call(
        &app,
        bob_token,
        Method::POST,
        &agents,
        Some(json!({"name": "x", "scopes": []})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A token for another audience, an agent's token, a suspended person's: 401.
    let q = query_of(
        b.get(&authorize_url(
            &s,
            REDIRECT,
            &[("scope", "openid notes:read")],
        ))
        .await
        .location
        .as_deref()
        .unwrap(),
    );
    let (_, plain) = json_of(redeem(&app, &s, &q["code"], VERIFIER).await).await;
    let (st, _) = super::api_keys::call(
        &app,
        plain["access_token"].as_str().unwrap(),
        Method::GET,
        &agents,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let agent = app.create_agent(&s.org, &["read"]).await;
    let at = app.token(&s.org, &agent, &[("resource", &api)]).await;
    let (st, _) = super::api_keys::call(
        &app,
        at["access_token"].as_str().unwrap(),
        Method::GET,
        &agents,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let bob_id = v["id"].as_str().unwrap();
    let (st, _) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/orgs/{}/users/{bob_id}", s.org.slug),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = super::api_keys::call(&app, bob_token, Method::GET, &agents, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A resource this server does not serve tokens for: invalid_target at the client.
    let q = query_of(
        b.get(&authorize_url(
            &s,
            REDIRECT,
            &[("resource", "http://other.example/api")],
        ))
        .await
        .location
        .as_deref()
        .unwrap(),
    );
    assert_eq!(q["error"], "invalid_target");
}

async fn people_and_admins_see_and_end_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let user_id = s.user["id"].as_str().unwrap().to_owned();
    let mut laptop = Browser::new();
    let mut phone = Browser::new();
    sign_in(&mut laptop, &s, &authorize_url(&s, REDIRECT, &[])).await;
    sign_in_again(&mut phone, &s).await;
    let sessions = format!("/api/v1/orgs/{}/users/{user_id}/sessions", s.org.slug);
    let (st, list) = app.admin(Method::GET, &sessions, None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert!(list[0]["ip"].is_string() && list[0]["amr"] == json!(["pwd"]));
    assert!(
        !list.to_string().contains("aidp_s_"),
        "no credential in the answer"
    );
    // The person ends the phone's session from the laptop's account page.
    let account = format!("{}/account", s.org.issuer);
    let page = laptop.get(&account).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("this browser"));
    let prompt_none = authorize_url(&s, REDIRECT, &[("prompt", "none")]);
    // Forged (no CSRF token of this session): nothing ends.
    let r = laptop
        .post(&account, &[("end", "all"), ("csrf", "forged")], None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        query_of(phone.get(&prompt_none).await.location.as_deref().unwrap()).contains_key("code")
    );
    // An admin ends every session of the person, and what their refresh tokens would give.
    let q = query_of(
        laptop
            .get(&authorize_url(&s, REDIRECT, &[]))
            .await
            .location
            .as_deref()
            .unwrap(),
    );
    let (_, t) = json_of(redeem(&app, &s, &q["code"], VERIFIER).await).await;
    let (st, _) = app.admin(Method::DELETE, &sessions, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let r = app
        .post_form(
            &s.org,
            "/oauth2/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
                ("client_id", &s.client_id),
            ],
        )
        .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    for b in [&mut laptop, &mut phone] {
        let q = query_of(b.get(&prompt_none).await.location.as_deref().unwrap());
        assert_eq!(q["error"], "login_required");
    }
    // One session by id; another organization's admin sees nothing.
    let (uid, sid) = session_fixture(&app, &s.org).await;
    let one = format!("/api/v1/orgs/{}/users/{uid}/sessions/{sid}", s.org.slug);
    let other = app.create_org().await;
    let (st, _) = app
        .admin(
            Method::DELETE,
            &format!("/api/v1/orgs/{}/users/{uid}/sessions/{sid}", other.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = app.admin(Method::DELETE, &one, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = app.admin(Method::DELETE, &one, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

on_all_backends!(
    a_persons_token_for_the_admin_api_is_a_principal_with_their_role,
    people_and_admins_see_and_end_sessions,
    a_person_signs_in_consents_and_gets_tokens,
    codes_are_single_use_bound_and_pkce_is_required,
    redirect_uri_variations_are_never_redirected_to,
    sign_in_forms_refuse_forgery_and_bad_input,
    failed_sign_ins_are_braked_without_locking_the_owner_out,
    sessions_time_out_and_suspended_people_lose_them,
);
