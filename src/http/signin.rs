//! The pages of people's sign-in, server-rendered HTML that works without JavaScript:
//! `{iss}/oauth2/authorize` (GET and POST, OIDC Core §3.1.2.1), `{iss}/login` (the sign-in
//! form), `{iss}/consent` (the consent form's target) and `{iss}/oauth2/logout` (RP-Initiated
//! Logout). The decisions are the domain's (`oauth::authorize`, `oauth::logout`,
//! `people::sessions`); this module renders, sets cookies and redirects.
//!
//! - Cookies: the session (`aidp_session_{slug}`) and the sign-in form's CSRF token
//!   (`aidp_csrf`), both `HttpOnly`, `SameSite=Lax`, `Path=/`; over HTTPS `Secure` and
//!   `__Host-` prefixed. The session cookie has no `Max-Age`: it ends with the browser or the
//!   session, whichever is first.
//! - CSRF: the sign-in form carries the value of its CSRF cookie (double submit; a cross-site
//!   POST carries no `SameSite=Lax` cookie), the consent and logout forms a digest of the
//!   session id under the server's key; every POST with an `Origin` other than ours is refused.
//! - Pages send the strict CSP of `invite_page` (no script, `frame-ancestors 'none'`), widened
//!   for `form-action` by the client's redirect origin where the form's answer redirects there.
//! - Bodies are bounded (8 KiB); a malformed, huge, duplicated or unknown field answers a 4xx
//!   page, never a 500.
//! - Failed sign-ins are braked per address, per account, and per account for the addresses that
//!   failed against it ([`crate::limiter::ACCOUNT_FAILURES`]): the answer is 429 with
//!   `Retry-After`, before any password is checked.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::ClientIp;
use super::invite_page::{FORM_LIMIT, escape, page_with, same_origin};
use super::state::AppState;
use crate::limiter::Subject;
use crate::model::Secret;
use crate::oauth::authorize::{AuthorizeRequest, AuthzError, Next};
use crate::oauth::form::FormParams;
use crate::people::sessions::{LoginError, Session};
use crate::storage::OrgRecord;

const CSRF_COOKIE: &str = "aidp_csrf";

fn secure(org: &OrgRecord) -> bool {
    org.issuer.starts_with("https://")
}

fn cookie_name(org: &OrgRecord, base: &str) -> String {
    if secure(org) {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

fn session_cookie(org: &OrgRecord) -> String {
    cookie_name(org, &format!("aidp_session_{}", org.slug.as_str()))
}

/// `Set-Cookie` for `name=value` (`None`: delete it).
fn set_cookie(org: &OrgRecord, name: &str, value: Option<&str>) -> HeaderValue {
    let mut c = match value {
        Some(v) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Lax"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    };
    if secure(org) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// The value of cookie `name`, if the request carries it once.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    for h in headers.get_all(header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=')
                && k == name
            {
                if found.is_some() {
                    // Two cookies of one name (one planted by a sibling host): trust neither.
                    return None;
                }
                found = Some(v.to_owned());
            }
        }
    }
    found
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    page_with(status, title, &format!("<p>{}</p>", escape(text)), None)
}

fn internal(e: &str) -> Response {
    tracing::error!(error = %e, "sign-in page failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The request could not be processed. Try again in a moment.",
    )
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => internal("a redirect location is not a valid header value"),
    }
}

/// An authorization error: a page, or the redirect to the client.
fn authz_error(org: &OrgRecord, e: AuthzError) -> Response {
    match e.location(&org.issuer) {
        Some(loc) => see_other(&loc),
        None => match e {
            AuthzError::Page(m) => message(StatusCode::BAD_REQUEST, "Cannot sign in", &m),
            AuthzError::Redirect { .. } => internal("unreachable"),
        },
    }
}

/// The CSP `form-action` source that lets a form's answer redirect to the client.
fn redirect_source(redirect_uri: &str) -> Option<String> {
    let u = url::Url::parse(redirect_uri).ok()?;
    match u.scheme() {
        "http" | "https" => Some(u.origin().ascii_serialization()),
        s => Some(format!("{s}:")),
    }
}

async fn org_of(s: &AppState, slug: &str) -> Result<std::sync::Arc<OrgRecord>, Response> {
    super::oauth::org_or_404(s, slug).await
}

async fn current_session(
    s: &AppState,
    org: &OrgRecord,
    headers: &HeaderMap,
) -> Result<Option<Session>, Response> {
    let Some(c) = cookie(headers, &session_cookie(org)) else {
        return Ok(None);
    };
    s.idp
        .sessions
        .current(&org.id, &c)
        .await
        .map_err(|e| internal(&e.to_string()))
}

/// The start of every form POST of these pages: the organization (404 when unknown), the
/// `Origin` check (403 for another site), the bounded form of `allowed` fields.
async fn form_post(
    s: &AppState,
    slug: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    allowed: &[&str],
) -> Result<(std::sync::Arc<OrgRecord>, Vec<(String, String)>), Response> {
    let org = org_of(s, slug).await?;
    if !same_origin(headers, &org.issuer) {
        return Err(message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This form was sent from another site.",
        ));
    }
    Ok((org, parse_form(body, allowed)?))
}

/// A form body: bounded, UTF-8, each field of `allowed` at most once, no other field.
/// (The error is the page to answer; a response is large, and rare here.)
#[allow(clippy::result_large_err)]
fn parse_form(
    body: Result<Bytes, BytesRejection>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, Response> {
    let bad = |t: &str| message(StatusCode::BAD_REQUEST, "Bad request", t);
    let body = body.map_err(|_| bad("The form is unreadable or too large."))?;
    if body.len() > FORM_LIMIT || std::str::from_utf8(&body).is_err() {
        return Err(bad("The form is too large or not valid UTF-8."));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        if !allowed.contains(&k.as_ref()) {
            return Err(bad("The form has a field this page does not take."));
        }
        if out.iter().any(|(o, _)| o == k.as_ref()) {
            return Err(bad("The form has a field more than once."));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn eq_ct(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// The consent and logout forms' CSRF token: a digest of the session id under the server key.
fn session_csrf(s: &AppState, session: &Session) -> String {
    use base64::prelude::*;
    BASE64_URL_SAFE_NO_PAD.encode(
        s.idp
            .digester
            .digest(&format!("csrf:{}", session.record.id)),
    )
}

// ---------------------------------------------------------------------------------------------
// The authorization endpoint.

/// `GET {iss}/oauth2/authorize`.
pub async fn authorize_get(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let org = match org_of(&s, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    authorize(&s, &org, q.unwrap_or_default(), &headers).await
}

/// `POST {iss}/oauth2/authorize` (OIDC Core §3.1.2.1: the same request, form-encoded).
pub async fn authorize_post(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let org = match org_of(&s, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let body = match body {
        Ok(b) if b.len() <= FORM_LIMIT => b,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request is unreadable or too large.",
            );
        }
    };
    match std::str::from_utf8(&body) {
        Ok(q) => authorize(&s, &org, q.to_owned(), &headers).await,
        Err(_) => message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The request is not UTF-8.",
        ),
    }
}

#[allow(clippy::result_large_err)]
fn parse_request(query: &str) -> Result<FormParams, Response> {
    if query.len() > FORM_LIMIT {
        return Err(message(
            StatusCode::BAD_REQUEST,
            "Cannot sign in",
            "The authorization request is too large.",
        ));
    }
    FormParams::parse(query.as_bytes()).map_err(|e| {
        message(
            StatusCode::BAD_REQUEST,
            "Cannot sign in",
            &format!("The authorization request is malformed: {}", e.description),
        )
    })
}

async fn authorize(s: &AppState, org: &OrgRecord, query: String, headers: &HeaderMap) -> Response {
    let form = match parse_request(&query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let req = match s.idp.oauth.authorization_request(org, &form).await {
        Ok(r) => r,
        Err(e) => return authz_error(org, e),
    };
    let session = match current_session(s, org, headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let recent = match &session {
        Some(sess) => s.idp.sessions.recent(sess).await.unwrap_or(false),
        None => false,
    };
    match s
        .idp
        .oauth
        .next_step(org, &req, session.as_ref(), false, recent)
        .await
    {
        Err(e) => authz_error(org, e),
        Ok(Next::Redirect(loc)) => see_other(&loc),
        Ok(Next::Login) => {
            let mut to = format!("{}/login?authorize=", org.issuer);
            to.extend(url::form_urlencoded::byte_serialize(query.as_bytes()));
            see_other(&to)
        }
        Ok(Next::Consent { new_scopes }) => match session {
            Some(sess) => consent_page(s, org, &req, &sess, &query, &new_scopes),
            None => internal("consent without a session"),
        },
    }
}

fn consent_page(
    s: &AppState,
    org: &OrgRecord,
    req: &AuthorizeRequest,
    session: &Session,
    query: &str,
    new_scopes: &[String],
) -> Response {
    let client = &req.client;
    let host = url::Url::parse(&req.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| req.redirect_uri.clone());
    let unverified = if crate::oauth::authorize::unverified(client) {
        format!(
            "<p class=\"error\"><strong>Unverified application.</strong> Its identity has not \
             been checked by {org}: it returns to <strong>{host}</strong>. Continue only if you \
             trust it.</p>",
            org = escape(&org.name),
            host = escape(&host),
        )
    } else {
        String::new()
    };
    let describe = |sc: &str| -> String {
        match sc {
            "openid" => "know who you are (your account id)".into(),
            "profile" => "see your name".into(),
            "email" => "see your email address".into(),
            "offline_access" => "stay signed in for you when you are away".into(),
            "admin_api" => "manage the organization with your role (the admin API)".into(),
            other => format!("use {}", other),
        }
    };
    let items: String = req
        .scopes
        .iter()
        .map(|sc| {
            let new = if new_scopes.contains(sc) {
                " (new)"
            } else {
                ""
            };
            format!("<li>{}{}</li>", escape(&describe(sc)), new)
        })
        .collect();
    let agent_note = if client.kind == crate::model::ClientKind::Agent {
        "<p>This is an <strong>agent</strong>: it will act on your behalf with the access listed \
         below, visibly and revocably (a delegation you can end at any time).</p>"
    } else {
        ""
    };
    let body = format!(
        "<p>Signed in to <strong>{org}</strong> as <strong>{email}</strong>.</p>{unverified}\
         <p><strong>{client}</strong> asks to:</p><ul>{items}</ul>{agent_note}\
         <form method=\"post\" action=\"{iss}/consent\">\
         <input type=\"hidden\" name=\"authorize\" value=\"{q}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        org = escape(&org.name),
        email = escape(&session.user.email),
        client = escape(&client.record.name),
        iss = escape(&org.issuer),
        q = escape(query),
        csrf = session_csrf(s, session),
    );
    page_with(
        StatusCode::OK,
        "Allow access?",
        &body,
        redirect_source(&req.redirect_uri).as_deref(),
    )
}

/// `POST {iss}/consent`: the person's answer to the consent page.
pub async fn consent_post(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (org, f) = match form_post(
        &s,
        &slug,
        &headers,
        body,
        &["authorize", "csrf", "decision"],
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (Some(query), Some(csrf), Some(decision)) = (
        field(&f, "authorize"),
        field(&f, "csrf"),
        field(&f, "decision"),
    ) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The form is incomplete.",
        );
    };
    let session = match current_session(&s, &org, &headers).await {
        Ok(Some(x)) => x,
        Ok(None) => {
            let mut to = format!("{}/login?authorize=", org.issuer);
            to.extend(url::form_urlencoded::byte_serialize(query.as_bytes()));
            return see_other(&to);
        }
        Err(r) => return r,
    };
    if !eq_ct(csrf, &session_csrf(&s, &session)) {
        return message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This form is not valid for your session; go back and try again.",
        );
    }
    let form = match parse_request(query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let req = match s.idp.oauth.authorization_request(&org, &form).await {
        Ok(r) => r,
        Err(e) => return authz_error(&org, e),
    };
    match decision {
        "allow" => match s.idp.oauth.consented(&org, &req, &session).await {
            Ok(loc) => see_other(&loc),
            Err(e) => authz_error(&org, e),
        },
        "deny" => authz_error(&org, s.idp.oauth.denied(&req)),
        _ => message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "Choose Allow or Deny.",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The sign-in page.

fn login_form(
    org: &OrgRecord,
    csrf: &str,
    authorize: Option<&str>,
    email: &str,
    error: Option<&str>,
) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    let hidden = authorize.map_or(String::new(), |a| {
        format!(
            "<input type=\"hidden\" name=\"authorize\" value=\"{}\">",
            escape(a)
        )
    });
    format!(
        "<p>Sign in to <strong>{org}</strong>.</p>{error}\
         <form method=\"post\" action=\"{iss}/login\" autocomplete=\"on\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{hidden}\
         <label for=\"email\">Email</label>\
         <input id=\"email\" name=\"email\" type=\"email\" maxlength=\"254\" autocomplete=\"username\" \
         required value=\"{email}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" maxlength=\"256\" \
         autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        org = escape(&org.name),
        iss = escape(&org.issuer),
        csrf = escape(csrf),
        email = escape(email),
    )
}

/// The sign-in page with a fresh CSRF cookie.
async fn login_page(
    s: &AppState,
    org: &OrgRecord,
    status: StatusCode,
    authorize: Option<&str>,
    email: &str,
    error: Option<&str>,
) -> Response {
    let csrf = crate::keys::envelope::random_token();
    // Where a successful sign-in may redirect: the origin of the client's redirect URI, once the
    // request has been checked (a registered URI of a known client), never as merely sent.
    let mut source = None;
    if let Some(f) = authorize.and_then(|a| FormParams::parse(a.as_bytes()).ok())
        && let Ok(req) = s.idp.oauth.authorization_request(org, &f).await
    {
        source = redirect_source(&req.redirect_uri);
    }
    let mut r = page_with(
        status,
        "Sign in",
        &login_form(org, csrf.expose(), authorize, email, error),
        source.as_deref(),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(org, &cookie_name(org, CSRF_COOKIE), Some(csrf.expose())),
    );
    r
}

/// `GET {iss}/login[?authorize=<the authorization request>]`.
pub async fn login_get(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let org = match org_of(&s, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let q = q.unwrap_or_default();
    let params = match FormParams::parse(q.as_bytes()) {
        Ok(p) => p,
        Err(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The query is malformed.",
            );
        }
    };
    let authorize = params.get("authorize").filter(|a| a.len() <= FORM_LIMIT);
    let hint = authorize
        .and_then(|a| FormParams::parse(a.as_bytes()).ok())
        .and_then(|f| {
            f.get("login_hint")
                .map(|h| h.chars().take(254).collect::<String>())
        })
        .unwrap_or_default();
    login_page(&s, &org, StatusCode::OK, authorize, &hint, None).await
}

/// `POST {iss}/login`: `email`, `password`, `csrf` and, from an authorization request,
/// `authorize`.
pub async fn login_post(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (org, f) = match form_post(
        &s,
        &slug,
        &headers,
        body,
        &["email", "password", "csrf", "authorize"],
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let authorize = field(&f, "authorize");
    let email = field(&f, "email").unwrap_or_default();
    let shown_email: String = email.chars().take(254).collect();
    let (Some(password), Some(csrf)) = (field(&f, "password"), field(&f, "csrf")) else {
        return login_page(
            &s,
            &org,
            StatusCode::BAD_REQUEST,
            authorize,
            &shown_email,
            Some("Enter your email and password."),
        )
        .await;
    };
    match cookie(&headers, &cookie_name(&org, CSRF_COOKIE)) {
        Some(c) if eq_ct(&c, csrf) => {}
        _ => {
            return login_page(
                &s,
                &org,
                StatusCode::FORBIDDEN,
                authorize,
                &shown_email,
                Some("The sign-in form expired or was sent from another site; try again."),
            )
            .await;
        }
    }
    if password.len() > crate::people::passwords::MAX_PASSWORD_BYTES
        || email.len() > crate::people::MAX_EMAIL_BYTES
    {
        return login_page(
            &s,
            &org,
            StatusCode::BAD_REQUEST,
            authorize,
            "",
            Some("The email or password is too long."),
        )
        .await;
    }
    let account = crate::people::normalize_email(email)
        .map(|(_, n)| n)
        .unwrap_or_else(|_| email.to_lowercase());
    let subjects = [
        Subject::Ip(ip),
        Subject::Account {
            org: &org.id,
            email: &account,
        },
    ];
    if let Some(retry) = s.auth_failures.refused(&subjects) {
        tracing::info!(event = "user.login_rate_limited", org = %org.slug, client_ip = %ip, retry_after = retry.0, "sign-in refused: too many failed attempts");
        let mut r = login_page(
            &s,
            &org,
            StatusCode::TOO_MANY_REQUESTS,
            authorize,
            &shown_email,
            Some(&format!(
                "Too many failed sign-ins. Try again in {} seconds.",
                retry.0
            )),
        )
        .await;
        if let Ok(v) = HeaderValue::from_str(&retry.0.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let user = match s
        .idp
        .sessions
        .check_password(&org.id, email, &Secret::new(password))
        .await
    {
        Ok(u) => u,
        Err(LoginError::Refused) => {
            s.auth_failures.failed(&subjects).await;
            tracing::info!(event = "user.login_failed", org = %org.slug, client_ip = %ip, "sign-in failed");
            crate::telemetry::auth_failure("user", "invalid_password");
            return login_page(
                &s,
                &org,
                StatusCode::UNAUTHORIZED,
                authorize,
                &shown_email,
                Some("The email or password is not right."),
            )
            .await;
        }
        Err(LoginError::Internal(e)) => return internal(&e),
    };
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (session, token) = match s
        .idp
        .sessions
        .start(&user, &["pwd"], &ip.to_string(), ua)
        .await
    {
        Ok(x) => x,
        Err(e) => return internal(&e.to_string()),
    };
    tracing::info!(event = "user.signed_in", org = %org.slug, user_id = %user.id, client_ip = %ip, "signed in");
    let cookies = [
        set_cookie(&org, &session_cookie(&org), Some(token.expose())),
        set_cookie(&org, &cookie_name(&org, CSRF_COOKIE), None),
    ];
    let sess = Session {
        record: session,
        user,
    };
    let mut resp = match authorize {
        None => message(
            StatusCode::OK,
            "Signed in",
            &format!("You are signed in to {} as {}.", org.name, sess.user.email),
        ),
        Some(query) => after_login(&s, &org, query, &sess).await,
    };
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// Continues the authorization request after a sign-in: a code, or the consent page.
async fn after_login(s: &AppState, org: &OrgRecord, query: &str, session: &Session) -> Response {
    let form = match parse_request(query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let req = match s.idp.oauth.authorization_request(org, &form).await {
        Ok(r) => r,
        Err(e) => return authz_error(org, e),
    };
    match s
        .idp
        .oauth
        .next_step(org, &req, Some(session), true, true)
        .await
    {
        Err(e) => authz_error(org, e),
        Ok(Next::Redirect(loc)) => see_other(&loc),
        Ok(Next::Consent { new_scopes }) => consent_page(s, org, &req, session, query, &new_scopes),
        Ok(Next::Login) => internal("a fresh sign-in asked to sign in again"),
    }
}

// ---------------------------------------------------------------------------------------------
// RP-Initiated Logout.

/// `GET {iss}/oauth2/logout`.
pub async fn logout_get(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let org = match org_of(&s, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    logout(&s, &org, &q.unwrap_or_default(), &headers, None).await
}

/// `POST {iss}/oauth2/logout`: a logout request (form-encoded, §2), or the confirmation form
/// (`confirm` with the session's CSRF token).
pub async fn logout_post(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let org = match org_of(&s, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let body = match body {
        Ok(b) if b.len() <= FORM_LIMIT && std::str::from_utf8(&b).is_ok() => b,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request is unreadable or too large.",
            );
        }
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let params = match FormParams::parse(text.as_bytes()) {
        Ok(p) => p,
        Err(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request is malformed.",
            );
        }
    };
    match params.get("confirm") {
        Some(csrf) => {
            if !same_origin(&headers, &org.issuer) {
                return message(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "This form was sent from another site.",
                );
            }
            let request = params.get("request").unwrap_or_default().to_owned();
            logout(&s, &org, &request, &headers, Some(csrf)).await
        }
        None => logout(&s, &org, &text, &headers, None).await,
    }
}

async fn logout(
    s: &AppState,
    org: &OrgRecord,
    query: &str,
    headers: &HeaderMap,
    confirmed: Option<&str>,
) -> Response {
    let form = match parse_request(query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let req = match s.idp.oauth.logout_request(org, &form).await {
        Ok(r) => r,
        Err(m) => return message(StatusCode::BAD_REQUEST, "Cannot sign out", &m),
    };
    let session = match current_session(s, org, headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let done = |redirect: Option<&str>| -> Response {
        let mut r = match redirect {
            Some(loc) => see_other(loc),
            None => message(StatusCode::OK, "Signed out", "You are signed out."),
        };
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(org, &session_cookie(org), None),
        );
        r
    };
    let Some(session) = session else {
        // Nobody is signed in here: nothing to end.
        return done(req.redirect.as_deref());
    };
    let hinted_here = req.hint.as_ref().is_some_and(|h| {
        h.sub == session.user.id && h.sid.as_deref().is_none_or(|sid| sid == session.record.id)
    });
    let confirmed_here = confirmed.is_some_and(|c| eq_ct(c, &session_csrf(s, &session)));
    if hinted_here || confirmed_here {
        if let Err(e) = s.idp.sessions.end(&org.id, &session.record.id).await {
            return internal(&e.to_string());
        }
        tracing::info!(event = "user.signed_out", org = %org.slug, user_id = %session.user.id, "signed out");
        return done(req.redirect.as_deref());
    }
    // §2: without a hint naming this person, ask first (a cross-site logout link must not sign
    // anyone out by itself).
    let body = format!(
        "<p>Sign out of <strong>{org}</strong> ({email})?</p>\
         <form method=\"post\" action=\"{iss}/oauth2/logout\">\
         <input type=\"hidden\" name=\"request\" value=\"{q}\">\
         <input type=\"hidden\" name=\"confirm\" value=\"{csrf}\">\
         <button type=\"submit\">Sign out</button></form>",
        org = escape(&org.name),
        email = escape(&session.user.email),
        iss = escape(&org.issuer),
        q = escape(query),
        csrf = session_csrf(s, &session),
    );
    let source = req.redirect.as_deref().and_then(redirect_source);
    page_with(StatusCode::OK, "Sign out?", &body, source.as_deref())
}

// ---------------------------------------------------------------------------------------------
// The person's own sessions.

/// `GET {iss}/account`: the signed-in person's sessions, each with a button that ends it.
pub async fn account_get(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    let org = match org_of(&s, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    account(&s, &org, &headers, None).await
}

/// `POST {iss}/account`: `end` (a session id, or `all`) with the session's CSRF token.
pub async fn account_post(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (org, f) = match form_post(&s, &slug, &headers, body, &["end", "revoke", "csrf"]).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(csrf) = field(&f, "csrf") else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The form is incomplete.",
        );
    };
    if let Some(id) = field(&f, "revoke") {
        // Revoking one of the person's delegation grants.
        let session = match current_session(&s, &org, &headers).await {
            Ok(Some(x)) => x,
            Ok(None) => return see_other(&format!("{}/login", org.issuer)),
            Err(r) => return r,
        };
        if !eq_ct(csrf, &session_csrf(&s, &session)) {
            return message(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This form is not valid for your session.",
            );
        }
        let actor = format!("user:{}", session.user.id);
        return match s
            .idp
            .delegations
            .revoke_of(&org.id, &session.user.id, id, &actor)
            .await
        {
            Ok(()) | Err(crate::admin_error::AdminError::NotFound) => {
                account(&s, &org, &headers, None).await
            }
            Err(e) => internal(&e.to_string()),
        };
    }
    let Some(end) = field(&f, "end") else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The form is incomplete.",
        );
    };
    account(&s, &org, &headers, Some((end, csrf))).await
}

async fn account(
    s: &AppState,
    org: &OrgRecord,
    headers: &HeaderMap,
    end: Option<(&str, &str)>,
) -> Response {
    let session = match current_session(s, org, headers).await {
        Ok(Some(x)) => x,
        Ok(None) => return see_other(&format!("{}/login", org.issuer)),
        Err(r) => return r,
    };
    let csrf = session_csrf(s, &session);
    let mut note = String::new();
    if let Some((which, token)) = end {
        if !eq_ct(token, &csrf) {
            return message(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This form is not valid for your session.",
            );
        }
        let ended = if which == "all" {
            if s.idp
                .oauth
                .revoke_person(org, &session.user.id)
                .await
                .is_err()
            {
                return internal("revoking the refresh tokens failed");
            }
            s.idp
                .sessions
                .end_all(&org.id, &session.user.id)
                .await
                .map(|_| true)
        } else {
            match s.idp.sessions.of_user(&org.id, &session.user.id).await {
                Ok(list) if list.iter().any(|x| x.id == which) => {
                    s.idp.sessions.end(&org.id, which).await
                }
                Ok(_) => Ok(false),
                Err(e) => Err(e),
            }
        };
        match ended {
            Ok(true) => note = "<p>The session was ended.</p>".into(),
            Ok(false) => note = "<p class=\"error\">No such session of yours.</p>".into(),
            Err(e) => return internal(&e.to_string()),
        }
        if which == "all" || which == session.record.id {
            let mut r = message(StatusCode::OK, "Signed out", "Your sessions were ended.");
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(org, &session_cookie(org), None),
            );
            return r;
        }
    }
    let list = match s.idp.sessions.of_user(&org.id, &session.user.id).await {
        Ok(l) => l,
        Err(e) => return internal(&e.to_string()),
    };
    let rows: String = list
        .iter()
        .map(|x| {
            format!(
                "<li>{since} from {ip} ({ua}){this} \
                 <form method=\"post\" style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" name=\"end\" value=\"{id}\">End</button></form></li>",
                since = escape(&crate::model::rfc3339(x.created_at)),
                ip = escape(&x.ip),
                ua = escape(&x.user_agent.chars().take(80).collect::<String>()),
                this = if x.id == session.record.id { " — this browser" } else { "" },
                csrf = escape(&csrf),
                id = escape(&x.id),
            )
        })
        .collect();
    let now = s.idp.clock.now();
    let grants = match s
        .idp
        .delegations
        .store
        .user_delegations(&org.id, &session.user.id)
        .await
    {
        Ok(l) => l,
        Err(e) => return internal(&e.to_string()),
    };
    let grant_rows: String = grants
        .iter()
        .filter(|d| d.in_force(now))
        .map(|d| {
            format!(
                "<li>Agent {agent}: {scopes} \
                 <form method=\"post\" style=\"display:inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" name=\"revoke\" value=\"{id}\">Revoke</button></form></li>",
                agent = escape(&d.agent_id),
                scopes = escape(&d.scopes.join(" ")),
                csrf = escape(&csrf),
                id = escape(&d.id),
            )
        })
        .collect();
    let body = format!(
        "<p>Signed in to <strong>{org}</strong> as <strong>{email}</strong>.</p>{note}\
         <h2>Your sessions</h2><ul>{rows}</ul>\
         <h2>Agents acting for you</h2><ul>{grant_rows}</ul>\
         <form method=\"post\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"end\" value=\"all\">Sign out everywhere</button></form>",
        org = escape(&org.name),
        email = escape(&session.user.email),
        csrf = escape(&csrf),
    );
    page_with(StatusCode::OK, "Your account", &body, None)
}
