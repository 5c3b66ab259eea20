//! The invitee's side of an invite: `GET {iss}/invites/{token}` shows the organization, the
//! address, the role and a form (name, password; accept or decline), `POST` the same URL
//! (`application/x-www-form-urlencoded`) acts on it. Server-rendered HTML without JavaScript.
//!
//! - Every value rendered is HTML-escaped ([`escape`]); the pages send a Content-Security-Policy
//!   that allows no script, no frame ancestor and forms to this origin only, `nosniff`,
//!   `Referrer-Policy: no-referrer` (the token is in the URL) and `Cache-Control: no-store`.
//! - CSRF: the form's target URL carries the invite token itself, 256 random bits that are in
//!   no cookie and that a cross-site attacker cannot know, so a forged request from another
//!   site has nothing to ride on (no ambient credential is involved at all). As a second line,
//!   a POST whose `Origin` header is present and is not this server's origin is refused (403):
//!   browsers send `Origin` on every cross-origin POST.
//! - The body is bounded ([`FORM_LIMIT`]); a malformed, huge or duplicated field, an unknown
//!   one or another content type answers a 4xx page, never a 500.
//! - An accepted, declined, revoked or expired invite answers 410 and changes nothing.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::model::Secret;
use crate::people::InviteError;
use crate::storage::{InviteRecord, OrgRecord};

/// The largest form body accepted (a name of 200 characters and a password of 256 bytes,
/// percent-encoded, fit many times over).
pub const FORM_LIMIT: usize = 8 * 1024;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `&`, `<`, `>`, `"` and `'` as character references: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page: `title` and `body` (already escaped HTML) with the security headers.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    page_with(status, title, body, None)
}

/// [`page`], its forms also allowed to end at `form_action` (a CSP source: the origin of a
/// client's redirect URI, to which the form's answer redirects; browsers apply `form-action` to
/// the redirects after a submission too).
pub fn page_with(
    status: StatusCode,
    title: &str,
    body: &str,
    form_action: Option<&str>,
) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;\
         margin:3rem auto;padding:0 1rem;line-height:1.5}}label{{display:block;margin-top:1rem}}\
         input{{width:100%;padding:.4rem;box-sizing:border-box}}button{{margin:1.2rem .5rem 0 0;\
         padding:.5rem 1rem}}.error{{color:#a00}}</style></head><body><h1>{t}</h1>{body}</body></html>\n",
        t = escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    let csp = match form_action {
        None => HeaderValue::from_static(CSP),
        Some(extra) => HeaderValue::from_str(
            &CSP.replace("form-action 'self'", &format!("form-action 'self' {extra}")),
        )
        .unwrap_or_else(|_| HeaderValue::from_static(CSP)),
    };
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    resp
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    page(status, title, &format!("<p>{}</p>", escape(text)))
}

fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Invite not found",
        "This invite link is not valid. Check that you copied all of it.",
    )
}

fn gone() -> Response {
    message(
        StatusCode::GONE,
        "Invite no longer valid",
        "This invite was already accepted or declined, was revoked, or has expired. Ask the \
         person who invited you for a new one.",
    )
}

fn bad_request(text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, "Bad request", text)
}

fn internal(e: &str) -> Response {
    // The cause to the log (never the token: it is not in `e`), a plain page to the person.
    tracing::error!(error = %e, "invite page failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The invite could not be processed. Try again in a moment.",
    )
}

fn refusal(e: InviteError) -> Response {
    match e {
        InviteError::Unknown => not_found(),
        InviteError::Closed => gone(),
        InviteError::Field { message: m, field } => bad_request(&format!("{field}: {m}")),
        InviteError::AlreadyMember => message(
            StatusCode::CONFLICT,
            "Already a member",
            "This address is already a user of the organization.",
        ),
        InviteError::Internal(m) => internal(&m),
    }
}

/// The form, with an error above it when a submission was refused.
fn form(org: &OrgRecord, invite: &InviteRecord, error: Option<&str>, name: &str) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    format!(
        "<p>You are invited to join <strong>{org}</strong> as <strong>{role}</strong>.</p>\
         <p>Account: <strong>{email}</strong></p>{error}\
         <form method=\"post\" autocomplete=\"on\">\
         <label for=\"name\">Your name</label>\
         <input id=\"name\" name=\"name\" maxlength=\"200\" autocomplete=\"name\" value=\"{name}\">\
         <label for=\"password\">Choose a password (12 to 256 characters)</label>\
         <input id=\"password\" name=\"password\" type=\"password\" minlength=\"12\" \
         maxlength=\"256\" autocomplete=\"new-password\">\
         <button type=\"submit\" name=\"action\" value=\"accept\">Accept</button>\
         <button type=\"submit\" name=\"action\" value=\"decline\" formnovalidate>Decline</button>\
         </form>",
        org = escape(&org.name),
        role = escape(invite.role.as_str()),
        email = escape(&invite.email),
        name = escape(name),
    )
}

/// The organization of the path, or the page to answer.
async fn org_of(s: &AppState, slug: &str) -> Result<OrgRecord, Response> {
    match s.idp.directory.org(slug).await {
        Ok(Some(org)) => Ok((*org).clone()),
        Ok(None) => Err(not_found()),
        Err(e) => Err(internal(&e.to_string())),
    }
}

pub async fn invite_get(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Ok(Path((slug, token))) = path else {
        return not_found();
    };
    let org = match org_of(&s, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    match s.idp.people.open_invite(&org, &Secret::new(token)).await {
        Ok(invite) => page(
            StatusCode::OK,
            "Accept your invite",
            &form(&org, &invite, None, ""),
        ),
        Err(e) => refusal(e),
    }
}

/// The submitted form: every field at most once, only the known ones.
#[derive(Default)]
struct Submission {
    action: Option<String>,
    name: Option<String>,
    password: Option<String>,
}

fn parse_form(body: &[u8]) -> Result<Submission, &'static str> {
    if std::str::from_utf8(body).is_err() {
        return Err("the form is not valid UTF-8");
    }
    let mut sub = Submission::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            "action" => &mut sub.action,
            "name" => &mut sub.name,
            "password" => &mut sub.password,
            _ => return Err("the form has a field this page does not take"),
        };
        if slot.is_some() {
            return Err("the form has a field more than once");
        }
        *slot = Some(v.into_owned());
    }
    Ok(sub)
}

/// Whether a present `Origin` names this issuer's origin (scheme, host and port).
pub fn same_origin(headers: &HeaderMap, issuer: &str) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let ours = url::Url::parse(issuer).map(|u| u.origin().ascii_serialization());
    match (origin.to_str(), ours) {
        (Ok(theirs), Ok(ours)) => theirs.eq_ignore_ascii_case(&ours),
        _ => false,
    }
}

pub async fn invite_post(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path((slug, token))) = path else {
        return not_found();
    };
    // Exactly one Content-Type, and it is a form.
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let form_type = match (types.next(), types.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
    .and_then(|v| v.to_str().ok())
    .and_then(|v| v.split(';').next())
    .is_some_and(|v| {
        v.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !form_type {
        return message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported form",
            "Submit the form of the invite page (application/x-www-form-urlencoded).",
        );
    }
    let body = match body {
        Ok(b) if b.len() <= FORM_LIMIT => b,
        _ => {
            return message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                "The submitted form is too large.",
            );
        }
    };
    let org = match org_of(&s, &slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if !same_origin(&headers, &org.issuer) {
        tracing::info!(
            event = "invite.cross_origin",
            "invite form from another origin refused"
        );
        return message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This form may only be submitted from its own page.",
        );
    }
    let sub = match parse_form(&body) {
        Ok(f) => f,
        Err(m) => return bad_request(m),
    };
    let token = Secret::new(token);
    match sub.action.as_deref() {
        Some("accept") => {
            let name = sub.name.unwrap_or_default();
            let password = sub.password.unwrap_or_default();
            match s
                .idp
                .people
                .accept_invite(&org, &token, &name, &password)
                .await
            {
                Ok(user) => message(
                    StatusCode::OK,
                    "Welcome",
                    &format!("Your account {} in {} is ready.", user.email, org.name),
                ),
                // A field the person can fix: the form again, with the reason.
                Err(InviteError::Field { field, message: m }) => {
                    match s.idp.people.open_invite(&org, &token).await {
                        Ok(invite) => page(
                            StatusCode::BAD_REQUEST,
                            "Accept your invite",
                            &form(&org, &invite, Some(&format!("{field}: {m}")), &name),
                        ),
                        Err(e) => refusal(e),
                    }
                }
                Err(e) => refusal(e),
            }
        }
        Some("decline") => match s.idp.people.decline_invite(&org, &token).await {
            Ok(()) => message(
                StatusCode::OK,
                "Invite declined",
                "You declined the invite. Nothing was created.",
            ),
            Err(e) => refusal(e),
        },
        _ => bad_request("the form must say action=accept or action=decline"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn forms_are_strict() {
        let f = parse_form(b"action=accept&name=Ada+L&password=p%40ss").unwrap();
        assert_eq!(f.action.as_deref(), Some("accept"));
        assert_eq!(f.name.as_deref(), Some("Ada L"));
        assert_eq!(f.password.as_deref(), Some("p@ss"));
        assert!(parse_form(b"name=a&name=b").is_err());
        assert!(parse_form(b"colour=red").is_err());
        assert!(parse_form(b"name=\xff").is_err());
        assert!(parse_form(b"").is_ok());
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h, "https://idp.example/orgs/a"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://idp.example"),
        );
        assert!(same_origin(&h, "https://idp.example/orgs/a"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h, "https://idp.example/orgs/a"));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, "https://idp.example/orgs/a"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://idp.example"),
        );
        assert!(!same_origin(&h, "https://idp.example/orgs/a"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h, "http://127.0.0.1:8080/orgs/a"));
    }
}
