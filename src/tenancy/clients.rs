//! The client metadata of the authorization code flow (RFC 7591 §2): redirect URIs, logout
//! redirect URIs and grant types, their rules, and how a redirect URI of a request matches a
//! registered one.
//!
//! Redirect URIs (INTERFACE.md, RFC 9700 §2.1, RFC 8252): absolute, without fragment (RFC 6749
//! §3.1.2) or userinfo; `https`, or `http` on a loopback host (`localhost`, `127.0.0.1`,
//! `[::1]`, RFC 8252 §7.3), or for public clients a private-use scheme in reverse-domain form
//! (RFC 8252 §7.1, `com.example.app:/callback`); never `javascript:`, `data:` or another scheme.
//! A request's redirect URI must equal a registered one character for character (RFC 9700
//! §4.1.3: no prefix, no normalisation), except that the port of a loopback `http` URI may vary
//! (RFC 8252 §7.3: a native app listens on an ephemeral port).

use crate::admin_error::AdminError;
use crate::model::{AuthMethod, ClientKind};
use crate::storage::AgentRecord;

pub const AUTHORIZATION_CODE: &str = "authorization_code";
pub const REFRESH_TOKEN: &str = "refresh_token";
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Every grant type a client may be registered with.
pub const GRANT_TYPES: [&str; 5] = [
    AUTHORIZATION_CODE,
    REFRESH_TOKEN,
    CLIENT_CREDENTIALS,
    JWT_BEARER,
    TOKEN_EXCHANGE,
];

/// The grants of an agent registered without `grant_types`.
const AGENT_DEFAULT: [&str; 3] = [CLIENT_CREDENTIALS, JWT_BEARER, TOKEN_EXCHANGE];

pub const MAX_REDIRECT_URIS: usize = 20;
pub const MAX_URI_BYTES: usize = 2000;

/// May `client` use `grant_type`?
pub fn allows_grant(client: &AgentRecord, grant_type: &str) -> bool {
    if client.grant_types.is_empty() {
        client.kind == ClientKind::Agent && AGENT_DEFAULT.contains(&grant_type)
    } else {
        client.grant_types.iter().any(|g| g == grant_type)
    }
}

/// Is `host` (as written in a URI authority, IPv6 in brackets) a loopback host?
fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// Checks one redirect URI (of `field`) against the rules above. `public`: the client has no
/// credentials, so a private-use scheme is allowed.
pub fn validate_redirect_uri(
    field: &'static str,
    uri: &str,
    public: bool,
) -> Result<(), AdminError> {
    let bad = |why: &str| AdminError::field(field, format!("'{}': {why}", shown(uri)));
    if uri.is_empty() || uri.len() > MAX_URI_BYTES {
        return Err(bad("must be a URI of 1 to 2000 bytes"));
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("must not contain spaces or control characters"));
    }
    if uri.contains('#') {
        return Err(bad("must not contain a fragment (RFC 6749 §3.1.2)"));
    }
    let parsed = url::Url::parse(uri).map_err(|_| bad("must be an absolute URI"))?;
    // The parser lower-cases the scheme; what is registered must already be in that form, so
    // that matching stays a comparison of the strings as written.
    let scheme = parsed.scheme();
    if !uri.starts_with(&format!("{scheme}:")) {
        return Err(bad("the scheme must be lower case"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not contain userinfo"));
    }
    match scheme {
        "https" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(bad("must name a host"));
            }
            Ok(())
        }
        "http" => match authority_host(uri) {
            Some(h) if is_loopback(h) => Ok(()),
            _ => Err(bad(
                "http is allowed only on loopback hosts (localhost, 127.0.0.1, [::1]); use https",
            )),
        },
        s if s.contains('.') && parsed.host_str().is_none_or(str::is_empty) => {
            if public {
                Ok(())
            } else {
                Err(bad(
                    "a private-use scheme is for public (native) clients only (RFC 8252 §7.1)",
                ))
            }
        }
        _ => Err(bad(
            "must be https, http on a loopback host, or a private-use scheme in reverse-domain form such as com.example.app:/callback",
        )),
    }
}

/// The host of an `http://` or `https://` URI exactly as written (before any port, path, query).
fn authority_host(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.starts_with('[') {
        let close = authority.find(']')?;
        Some(&authority[..=close])
    } else {
        Some(authority.split(':').next().unwrap_or(authority))
    }
}

/// `uri` with the port of a loopback `http` authority taken out, or `uri` itself.
fn without_loopback_port(uri: &str) -> std::borrow::Cow<'_, str> {
    let Some(rest) = uri.strip_prefix("http://") else {
        return uri.into();
    };
    let Some(host) = authority_host(uri) else {
        return uri.into();
    };
    if !is_loopback(host) {
        return uri.into();
    }
    let after = &rest[host.len()..];
    if let Some(port_etc) = after.strip_prefix(':') {
        let digits = port_etc.bytes().take_while(u8::is_ascii_digit).count();
        let tail = &port_etc[digits..];
        if digits > 0 && digits <= 5 && (tail.is_empty() || tail.starts_with(['/', '?'])) {
            return format!("http://{host}{tail}").into();
        }
    }
    uri.into()
}

/// Does the redirect URI of a request match the registered one (see the module doc)?
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    registered == requested || without_loopback_port(registered) == without_loopback_port(requested)
}

/// The registered redirect URI that `requested` matches, if any.
pub fn find_redirect<'a>(registered: &'a [String], requested: &str) -> Option<&'a str> {
    registered
        .iter()
        .map(String::as_str)
        .find(|r| redirect_matches(r, requested))
}

/// At most 80 characters of a URI for an error message.
fn shown(uri: &str) -> String {
    uri.chars().take(80).collect()
}

/// Checks and sets the client metadata of `rec` (each list as given replaces the stored one),
/// then checks the whole: the code flow needs redirect URIs; a refresh token comes only with the
/// code flow; a public client (`none`) is an app of the code flow only; an app has grants.
pub fn apply(
    rec: &mut AgentRecord,
    redirect_uris: Option<Vec<String>>,
    post_logout_redirect_uris: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
) -> Result<(), AdminError> {
    let public = rec.auth_method == AuthMethod::None;
    if let Some(g) = grant_types {
        let mut out: Vec<String> = Vec::new();
        for t in g {
            if !GRANT_TYPES.contains(&t.as_str()) {
                return Err(AdminError::field(
                    "grant_types",
                    format!(
                        "'{}' is not a grant type of this server ({})",
                        shown(&t),
                        GRANT_TYPES.join(", ")
                    ),
                ));
            }
            if !out.contains(&t) {
                out.push(t);
            }
        }
        rec.grant_types = out;
    }
    for (field, given, target) in [
        ("redirect_uris", redirect_uris, &mut rec.redirect_uris),
        (
            "post_logout_redirect_uris",
            post_logout_redirect_uris,
            &mut rec.post_logout_redirect_uris,
        ),
    ] {
        if let Some(list) = given {
            if list.len() > MAX_REDIRECT_URIS {
                return Err(AdminError::field(
                    field,
                    format!("at most {MAX_REDIRECT_URIS} URIs"),
                ));
            }
            let mut out: Vec<String> = Vec::new();
            for u in list {
                validate_redirect_uri(field, &u, public)?;
                if !out.contains(&u) {
                    out.push(u);
                }
            }
            *target = out;
        }
    }
    let code = rec.grant_types.iter().any(|g| g == AUTHORIZATION_CODE);
    if code && rec.redirect_uris.is_empty() {
        return Err(AdminError::field(
            "redirect_uris",
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    if !code && !rec.redirect_uris.is_empty() {
        return Err(AdminError::field(
            "grant_types",
            "redirect_uris are for the authorization_code grant; add it to grant_types",
        ));
    }
    if !code && !rec.post_logout_redirect_uris.is_empty() {
        return Err(AdminError::field(
            "post_logout_redirect_uris",
            "logout redirect URIs are for clients of the authorization_code grant",
        ));
    }
    if !code && rec.grant_types.iter().any(|g| g == REFRESH_TOKEN) {
        return Err(AdminError::field(
            "grant_types",
            "refresh_token comes with authorization_code",
        ));
    }
    if public {
        if rec.kind != ClientKind::App {
            return Err(AdminError::field(
                "token_endpoint_auth_method",
                "none (a public client) is for apps, not agents: an agent authenticates",
            ));
        }
        if let Some(g) = rec
            .grant_types
            .iter()
            .find(|g| *g != AUTHORIZATION_CODE && *g != REFRESH_TOKEN)
        {
            return Err(AdminError::field(
                "grant_types",
                format!(
                    "a public client (none) may use only authorization_code and refresh_token, not {g}"
                ),
            ));
        }
    }
    if rec.kind == ClientKind::App && rec.grant_types.is_empty() {
        return Err(AdminError::field(
            "grant_types",
            "an app needs at least one grant type",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        for ok in [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:3000/cb",
            "http://[::1]:8080/",
            "http://localhost:5173/callback",
        ] {
            validate_redirect_uri("redirect_uris", ok, false).unwrap();
        }
        validate_redirect_uri("redirect_uris", "com.example.app:/callback", true).unwrap();
        for bad in [
            "com.example.app:/callback",
            "javascript:alert(1)",
            "data:text/html,x",
            "http://app.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://localhost.evil.example/cb",
            "https://app.example/cb#frag",
            "https://user:pw@app.example/cb",
            "https://user@app.example/cb",
            "HTTPS://app.example/cb",
            "/relative",
            "https://app.example/c b",
            "",
            "file:///etc/passwd",
            "myapp:/cb",
        ] {
            assert!(
                validate_redirect_uri("redirect_uris", bad, false).is_err(),
                "{bad}"
            );
        }
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "myapp:/cb",
            "ftp://x.example/",
        ] {
            assert!(
                validate_redirect_uri("redirect_uris", bad, true).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn matching_is_exact_but_for_the_loopback_port() {
        let r = "https://app.example/cb";
        assert!(redirect_matches(r, r));
        for other in [
            "https://app.example/cb/",
            "https://app.example/CB",
            "https://APP.example/cb",
            "https://app.example/cb?x=1",
            "https://app.example:443/cb",
            "https://app.example/cb/../cb",
            "https://app.example/c",
            "https://app.example/cbx",
            "https://u@app.example/cb",
            "https://app.example.evil/cb",
        ] {
            assert!(!redirect_matches(r, other), "{other}");
        }
        let l = "http://127.0.0.1/cb";
        assert!(redirect_matches(l, "http://127.0.0.1:49152/cb"));
        assert!(redirect_matches(
            "http://127.0.0.1:3000/cb",
            "http://127.0.0.1:4000/cb"
        ));
        assert!(redirect_matches(
            "http://[::1]:1/cb?a=b",
            "http://[::1]:65535/cb?a=b"
        ));
        assert!(!redirect_matches(l, "http://127.0.0.1:49152/cb2"));
        assert!(!redirect_matches(
            l,
            "http://127.0.0.1:49152@evil.example/cb"
        ));
        assert!(!redirect_matches(l, "http://127.0.0.1:/cb"));
        assert!(!redirect_matches(l, "http://localhost:1/cb"));
        assert!(!redirect_matches(
            "https://127.0.0.1/cb",
            "https://127.0.0.1:8/cb"
        ));
    }
}
