//! An independent OpenID Connect client, the `openidconnect` crate, against our issuer (issue 12,
//! "How we will check it"): its strict `ProviderMetadata` parses discovery, and its client
//! completes the authorization code flow with PKCE through the real sign-in page, verifies the ID
//! token (signature, issuer, audience, nonce), reads userinfo and refreshes.

use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType, CoreUserInfoClaims};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use serde_json::Value;

use super::signin::{Browser, REDIRECT, hidden, query_of, setup};
use super::users::PASSWORD;
use crate::on_all_backends;
use crate::support::*;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

/// The crate's HTTP client seam, over the test's reqwest (no redirects, as the crate requires).
fn http_client(
    http: reqwest::Client,
) -> impl Fn(
    openidconnect::HttpRequest,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send>,
> {
    move |req: openidconnect::HttpRequest| {
        let http = http.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let mut r = http.request(parts.method, parts.uri.to_string()).body(body);
            for (k, v) in parts.headers.iter() {
                r = r.header(k, v);
            }
            let resp = r.send().await.map_err(|e| HttpError(e.to_string()))?;
            let mut b = openidconnect::http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                b = b.header(k, v);
            }
            let bytes = resp.bytes().await.map_err(|e| HttpError(e.to_string()))?;
            b.body(bytes.to_vec()).map_err(|e| HttpError(e.to_string()))
        })
    }
}

async fn the_openidconnect_crate_completes_the_code_flow(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let client_http = http_client(http);

    // Discovery, parsed by the crate's strict types (it refuses a document without an
    // authorization endpoint or response types).
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(s.org.issuer.clone()).unwrap(),
        &client_http,
    )
    .await
    .expect("ProviderMetadata parses our discovery document and JWKS");
    assert_eq!(metadata.issuer().as_str(), s.org.issuer);

    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new(s.client_id.clone()), None)
            .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap());
    let (pkce, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(pkce)
        .url();

    // The person signs in and consents in the browser.
    let mut b = Browser::new();
    let a = b.get(url.as_str()).await;
    let page = b.get(a.location.as_deref().unwrap()).await;
    let consent = b
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
    assert_eq!(&q["state"], csrf.secret());
    assert_eq!(q["iss"], s.org.issuer);

    let tokens = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&client_http)
        .await
        .expect("the crate redeems the code");
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("the crate verifies the ID token: signature, iss, aud, nonce");
    assert_eq!(claims.subject().as_str(), s.user["id"].as_str().unwrap());
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.com"));
    assert!(claims.auth_time().is_some());

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&client_http)
        .await
        .expect("the crate reads userinfo");
    assert_eq!(info.subject().as_str(), s.user["id"].as_str().unwrap());

    let refreshed = client
        .exchange_refresh_token(&RefreshToken::new(
            tokens
                .refresh_token()
                .expect("offline_access")
                .secret()
                .clone(),
        ))
        .unwrap()
        .request_async(&client_http)
        .await
        .expect("the crate refreshes");
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        tokens.refresh_token().unwrap().secret(),
        "rotated"
    );
    let _: Value = jwt_claims(refreshed.access_token().secret());
}

on_all_backends!(the_openidconnect_crate_completes_the_code_flow);
