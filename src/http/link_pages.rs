//! The people's side of the other single-use links, server-rendered like the invite page and
//! with its pieces (security headers, escaping, the strict bounded form, the Origin check):
//!
//! - `GET`/`POST {iss}/verify-email/{token}`: the page shows a button; pressing it verifies.
//! - `GET`/`POST {iss}/password-reset`: the "forgot password" form (field `email`); it answers
//!   the same page whether or not the address is an account (and whether or not it was
//!   mailed), and is rate limited per client IP ([`FORGOT_PER_IP`]) and per address
//!   ([`FORGOT_PER_ADDRESS`]) alike for known and unknown addresses.
//! - `GET`/`POST {iss}/password-reset/{token}`: a form to choose a new password.
//! - `GET`/`POST {iss}/ownership-transfer/{token}`: the named person accepts.
//!
//! A `GET` never changes anything (mail scanners and link previews fetch links); only the POST
//! of the form does, and only from this origin. An unknown, malformed, wrong or another
//! organization's token answers 404; a used, expired or revoked one 410.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::extract::ClientIp;
use super::invite_page::{
    bad_request, check_origin, escape, form_body, form_fields, internal, message, org_or, page,
};
use super::state::AppState;
use crate::limiter::{Rate, Subject};
use crate::model::Secret;
use crate::people::LinkError;
use crate::storage::{LinkPurpose, OrgRecord};

/// Forgot-password requests one client address may make: 20 per 10 minutes.
pub const FORGOT_PER_IP: Rate = Rate {
    count: 20,
    window_ms: 600_000,
};
/// Forgot-password requests for one address of one organization: 3 per hour (whoever asks;
/// a mail box is not flooded through us).
pub const FORGOT_PER_ADDRESS: Rate = Rate {
    count: 3,
    window_ms: 3_600_000,
};

fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Link not found",
        "This link is not valid. Check that you copied all of it.",
    )
}

fn no_org() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such organization.",
    )
}

fn refusal(e: LinkError) -> Response {
    match e {
        LinkError::Unknown => not_found(),
        LinkError::Closed => message(
            StatusCode::GONE,
            "Link no longer valid",
            "This link was already used, was replaced or revoked, or has expired. Ask for a new \
             one.",
        ),
        LinkError::Field { field, message: m } => bad_request(&format!("{field}: {m}")),
        LinkError::Unavailable(m) => unavailable(&m),
        LinkError::Internal(m) => internal(&m),
    }
}

fn unavailable(text: &str) -> Response {
    let mut r = message(StatusCode::SERVICE_UNAVAILABLE, "Try again later", text);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

fn too_many(retry: crate::limiter::RetryAfter) -> Response {
    let mut r = message(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        "Too many password reset requests. Try again later.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry.0));
    r
}

/// A form with one submit button (and `extra` fields before it).
fn button_form(extra: &str, label: &str) -> String {
    format!(
        "<form method=\"post\">{extra}<button type=\"submit\" name=\"action\" \
         value=\"confirm\">{}</button></form>",
        escape(label)
    )
}

fn error_line(error: Option<&str>) -> String {
    error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    })
}

/// The parts of every token page's POST: the path, the organization, the form's fields
/// (`names`), or the page that refuses.
async fn submitted<const N: usize>(
    s: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    names: [&str; N],
) -> Result<(OrgRecord, Secret, [Option<String>; N]), Response> {
    let Ok(Path((slug, token))) = path else {
        return Err(not_found());
    };
    let body = form_body(headers, body).map_err(|r| *r)?;
    let org = org_or(s, &slug, not_found).await?;
    check_origin(headers, &org).map_err(|r| *r)?;
    let fields = form_fields(&body, names).map_err(bad_request)?;
    Ok((org, Secret::new(token), fields))
}

async fn opened(
    s: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(OrgRecord, Secret), Response> {
    let Ok(Path((slug, token))) = path else {
        return Err(not_found());
    };
    let org = org_or(s, &slug, not_found).await?;
    Ok((org, Secret::new(token)))
}

pub async fn verify_get(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let (org, token) = match opened(&s, path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s
        .idp
        .people
        .open_link(&org, LinkPurpose::VerifyEmail, &token)
        .await
    {
        Ok((_, user)) => page(
            StatusCode::OK,
            "Confirm your email address",
            &format!(
                "<p>Confirm that <strong>{}</strong> is your address for <strong>{}</strong>.</p>{}",
                escape(&user.email),
                escape(&org.name),
                button_form("", "Confirm my address")
            ),
        ),
        Err(e) => refusal(e),
    }
}

pub async fn verify_post(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (org, token, _) = match submitted(&s, path, &headers, body, ["action"]).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s.idp.people.verify_email(&org, &token).await {
        Ok(user) => message(
            StatusCode::OK,
            "Address confirmed",
            &format!("{} is confirmed for {}.", user.email, org.name),
        ),
        Err(e) => refusal(e),
    }
}

fn forgot_form(org: &OrgRecord, error: Option<&str>) -> String {
    format!(
        "<p>Enter the email address of your account at <strong>{}</strong>: if it is one, we \
         send it a link to choose a new password.</p>{}\
         <form method=\"post\"><label for=\"email\">Email address</label>\
         <input id=\"email\" name=\"email\" type=\"email\" maxlength=\"254\" \
         autocomplete=\"email\" required><button type=\"submit\">Send the link</button></form>",
        escape(&org.name),
        error_line(error)
    )
}

fn forgot_unavailable(org: &OrgRecord) -> Response {
    message(
        StatusCode::OK,
        "Reset your password",
        &format!(
            "{} sends no mail: ask an administrator of the organization for a password reset \
             link.",
            org.name
        ),
    )
}

pub async fn forgot_get(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(slug)) = path else {
        return not_found();
    };
    let org = match org_or(&s, &slug, no_org).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if s.idp.people.mail.is_none() {
        return forgot_unavailable(&org);
    }
    page(
        StatusCode::OK,
        "Reset your password",
        &forgot_form(&org, None),
    )
}

pub async fn forgot_post(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(slug)) = path else {
        return not_found();
    };
    let body = match form_body(&headers, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let org = match org_or(&s, &slug, no_org).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(r) = check_origin(&headers, &org) {
        return *r;
    }
    if s.idp.people.mail.is_none() {
        return forgot_unavailable(&org);
    }
    let ip_key = format!("pwreset:{}", Subject::Ip(ip).key());
    if let Err(retry) = s.rate_limiter.check_rate(&ip_key, FORGOT_PER_IP) {
        tracing::info!(event = "password_reset.rate_limited", client_ip = %ip, "forgot-password form refused: too many from this address");
        return too_many(retry);
    }
    let [email] = match form_fields(&body, ["email"]) {
        Ok(f) => f,
        Err(m) => return bad_request(m),
    };
    let email = email.unwrap_or_default();
    let normalized = match crate::people::normalize_email(&email) {
        Ok((_, n)) => n,
        Err(m) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Reset your password",
                &forgot_form(&org, Some(&format!("email: {m}"))),
            );
        }
    };
    // Counted for every well-formed address, an account or not: the answer tells nothing.
    let address_key = format!("pwreset:{}:{normalized}", org.id.as_str());
    if let Err(retry) = s.rate_limiter.check_rate(&address_key, FORGOT_PER_ADDRESS) {
        tracing::info!(
            event = "password_reset.rate_limited",
            "forgot-password form refused: too many for this address"
        );
        return too_many(retry);
    }
    match s.idp.people.forgot_password(&org, &normalized).await {
        Ok(()) => message(
            StatusCode::OK,
            "Check your mail",
            "If this address belongs to an account of the organization, a link to choose a new \
             password is on its way. It is valid for 30 minutes.",
        ),
        Err(e) => refusal(e),
    }
}

fn reset_form(error: Option<&str>) -> String {
    format!(
        "{}<form method=\"post\"><label for=\"password\">New password (12 to 256 \
         characters)</label><input id=\"password\" name=\"password\" type=\"password\" \
         minlength=\"12\" maxlength=\"256\" autocomplete=\"new-password\" required>\
         <button type=\"submit\">Set the password</button></form>",
        error_line(error)
    )
}

pub async fn reset_get(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let (org, token) = match opened(&s, path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s
        .idp
        .people
        .open_link(&org, LinkPurpose::PasswordReset, &token)
        .await
    {
        Ok((_, user)) => page(
            StatusCode::OK,
            "Choose a new password",
            &format!(
                "<p>Account: <strong>{}</strong> at <strong>{}</strong></p>{}",
                escape(&user.email),
                escape(&org.name),
                reset_form(None)
            ),
        ),
        Err(e) => refusal(e),
    }
}

pub async fn reset_post(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (org, token, [password]) = match submitted(&s, path, &headers, body, ["password"]).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let password = password.unwrap_or_default();
    match s.idp.people.reset_password(&org, &token, &password).await {
        Ok(user) => {
            // A new password ends the sessions before it (sessions.rs) and what the person's
            // refresh tokens would still give.
            if s.idp.oauth.revoke_person(&org, &user.id).await.is_err() {
                tracing::error!("revoking the refresh tokens after a password reset failed");
            }
            message(
                StatusCode::OK,
                "Password changed",
                &format!("The password of {} at {} is changed.", user.email, org.name),
            )
        }
        Err(LinkError::Field { field, message: m }) => page(
            StatusCode::BAD_REQUEST,
            "Choose a new password",
            &reset_form(Some(&format!("{field}: {m}"))),
        ),
        Err(e) => refusal(e),
    }
}

pub async fn transfer_get(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let (org, token) = match opened(&s, path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s.idp.people.open_transfer(&org, &token).await {
        Ok((_, user)) => page(
            StatusCode::OK,
            "Become an owner",
            &format!(
                "<p>You, <strong>{}</strong>, are asked to become an owner of \
                 <strong>{}</strong>. Owners may do everything in the organization, also \
                 delete it.</p>{}",
                escape(&user.email),
                escape(&org.name),
                button_form("", "Accept ownership")
            ),
        ),
        Err(e) => refusal(e),
    }
}

pub async fn transfer_post(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (org, token, _) = match submitted(&s, path, &headers, body, ["action"]).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s.idp.people.accept_transfer_link(&org, &token).await {
        Ok(_) => message(
            StatusCode::OK,
            "You are an owner",
            &format!("You are now an owner of {}.", org.name),
        ),
        Err(e) => refusal(e),
    }
}
