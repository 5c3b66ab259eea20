//! Request extractors: they turn headers and bodies into plain values for the domain, and reject
//! bad input in the format of the endpoint's spec (never axum's plain-text rejections).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use base64::prelude::*;
use serde::de::DeserializeOwned;

use super::error::{ApiError, OAuthResponse};
use super::state::AppState;
use crate::limiter::Subject;
use crate::model::Secret;
use crate::oauth::client_auth::ClientCredentials;
use crate::oauth::error::OAuthError;
use crate::oauth::form::FormParams;
use crate::tenancy::access::Principal;
use axum::extract::ConnectInfo;
use axum::response::Response;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

/// The `Authorization: Basic` credentials of a request (RFC 7617), decoded as RFC 6749 §2.3.1
/// says: base64 of `client_id:client_secret`, each part form-urlencoded before being joined.
/// `None` when the header is absent or names another scheme; an error when it is Basic but
/// malformed.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, Secret)>, OAuthError> {
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let h = h.as_bytes();
    if h.len() <= 6 || !h[..6].eq_ignore_ascii_case(b"basic ") {
        return Ok(None);
    }
    let h = std::str::from_utf8(h).map_err(|_| bad())?;
    let raw = BASE64_STANDARD.decode(h[6..].trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    Ok(Some((form_decode(id), Secret::new(form_decode(secret)))))
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A form-encoded OAuth request body (RFC 6749 §3.2) and the client credentials it carries
/// (Authorization header or form members). Malformed input is rejected as the endpoint's own
/// OAuth error, never axum's plain-text rejection.
pub struct OAuthRequest {
    pub form: FormParams,
    pub client: ClientCredentials,
    /// The request authenticated with the Authorization header (decides the §5.2 401 challenge).
    pub basic: bool,
}

impl FromRequest<AppState> for OAuthRequest {
    type Rejection = OAuthResponse;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let basic = basic_credentials(req.headers()).map_err(|e| OAuthResponse::new(e, true))?;
        let used_basic = basic.is_some();
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            OAuthResponse::new(
                OAuthError::invalid_request("the request body is unreadable or too large"),
                used_basic,
            )
        })?;
        let form = FormParams::parse(&body).map_err(|e| OAuthResponse::new(e, used_basic))?;
        let client = ClientCredentials::from_request(basic, &form)
            .map_err(|e| OAuthResponse::new(e, used_basic))?;
        Ok(Self {
            form,
            client,
            basic: used_basic,
        })
    }
}

/// A JSON admin body, parsed so errors name the offending field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "application/json") {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "Content-Type must be application/json",
            ));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("the request body is unreadable or too large"))?;
        // NUL cannot be stored in PostgreSQL text and has no business in any admin field.
        if body.windows(6).any(|w| w.eq_ignore_ascii_case(br"\u0000")) {
            return Err(ApiError::bad_request(
                r"NUL characters (\u0000) are not accepted",
            ));
        }
        ApiError::require_object(&body, false)?;
        let de = &mut serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(de)
            .map(ApiJson)
            .map_err(ApiError::from_json)
    }
}

/// An admin query string, rejected as an admin API error (400 `invalid_request`), not as axum's
/// plain text.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// The bearer token of a request to a protected resource: header (RFC 6750 §2.1); for POST also
/// a form body parameter (§2.2). Query parameters are not accepted (they end up in logs).
pub fn bearer_from_header(headers: &HeaderMap) -> Option<Secret> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Secret::new(token.trim()))
}

/// The authorized admin principal, as [`super::authz::authorize`] left it (every admin route is
/// behind that layer; a handler outside it gets 401).
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<super::authz::Authorized>()
            .map(|a| Admin(a.0.clone()))
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The admin API's request limit (`AGENTIDP_ADMIN_RATE_LIMIT`) for one authenticated principal,
/// named by `principal` (a stable string per principal: `platform` for the bootstrap token, an
/// API key's id, a user's id). Each call counts; `Some` is the 429 to answer (`Retry-After`, the
/// RateLimit fields, `{"error": "rate_limited"}`); `None` lets the request through.
pub fn admin_rate_limit(state: &AppState, principal: &str, ip: IpAddr) -> Option<Response> {
    let limit = state.limits.admin?;
    match state
        .rate_limiter
        .check(&format!("admin:{principal}"), limit)
    {
        d @ crate::limiter::Decision::Limited { .. } => {
            tracing::info!(event = "admin.rate_limited", principal, client_ip = %ip, limit = %limit, "admin request refused: over its request limit");
            Some(super::error::admin_too_many_requests(&d))
        }
        crate::limiter::Decision::Allowed { .. } => None,
    }
}

/// The client IP's request limit on the unauthenticated public endpoints
/// (`AGENTIDP_IP_RATE_LIMIT`), as a middleware; the router adds it only when the limit is on, so
/// with the default (off) those GETs pay nothing for it.
pub async fn ip_rate_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(limit) = state.limits.ip else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let ip = client_ip_of(&parts, &state);
    let d = state.rate_limiter.check(&Subject::Ip(ip).key(), limit);
    if let crate::limiter::Decision::Limited { .. } = d {
        tracing::info!(event = "ip.rate_limited", client_ip = %ip, limit = %limit, "request refused: over the per-address request limit");
        return super::error::ip_too_many_requests(&d);
    }
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    super::error::rate_limit_headers(resp.headers_mut(), &d, "ip");
    resp
}

/// The client's address: the socket peer, or, when the peer is one of `AGENTIDP_TRUSTED_PROXIES`,
/// the address those proxies forwarded ([`client_ip`]).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip_of(parts, state)))
    }
}

fn client_ip_of(parts: &Parts, state: &AppState) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    client_ip(peer, &parts.headers, &state.trusted_proxies)
}

/// The client address of a request from `peer`. Forwarding headers are believed only from a
/// trusted proxy: `X-Forwarded-For` or, when a request has none, `Forwarded` (RFC 7239 §5.2, its
/// `for=` values), read from the right (the entry the nearest proxy added), skipping every
/// trusted proxy; the first address that is not one is the client. `X-Forwarded-For` comes first
/// because the common proxies (nginx, HAProxy, cloud load balancers) append to it and pass a
/// client's own `Forwarded` through untouched: preferring `Forwarded` would let any client name
/// its own address. An entry that is not an address (`unknown`, an obfuscated `_name`, garbage)
/// stops the walk at the last proxy believed. IPv4-mapped IPv6 addresses (a dual-stack listener)
/// are compared as the IPv4 addresses they are.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let hops: Vec<&str> = if xff.is_empty() {
        headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
                })
            })
            .collect()
    } else {
        xff
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = hop_address(hop) else { break };
        let ip = ip.to_canonical();
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// One forwarded hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`, each
/// possibly quoted (RFC 7239 §6).
fn hop_address(hop: &str) -> Option<IpAddr> {
    let h = hop.trim().trim_matches('"');
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    h.parse::<IpAddr>()
        .ok()
        .or_else(|| h.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::{basic_credentials, client_ip};

    /// Forwarding headers count only from a trusted proxy, read from the right, skipping the
    /// trusted hops; `Forwarded` is preferred to `X-Forwarded-For`.
    #[test]
    fn client_ip_believes_only_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, HeaderValue::from_str(v).unwrap());
            }
            m
        };
        let xff = h(&[("x-forwarded-for", "198.51.100.9, 203.0.113.5, 10.0.0.2")]);
        // From an untrusted peer the header is the client's own claim: ignored.
        assert_eq!(client_ip(ip("192.0.2.1"), &xff, &trusted), ip("192.0.2.1"));
        // From a proxy: the rightmost untrusted entry (198.51.100.9 could be forged).
        assert_eq!(client_ip(ip("10.0.0.1"), &xff, &trusted), ip("203.0.113.5"));
        assert_eq!(client_ip(ip("10.0.0.1"), &xff, &[]), ip("10.0.0.1"));
        let fwd = h(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
            ),
            ("forwarded", "for=\"[fd00::1]\""),
        ]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &fwd, &trusted),
            ip("2001:db8:cafe::17")
        );
        // A client's own `Forwarded`, passed through by a proxy that appends X-Forwarded-For
        // (nginx, HAProxy, load balancers): ignored, so a client cannot pick its limiter key
        // (review finding: a random `for=` per request escaped the per-IP brake).
        let spoofed = h(&[
            ("forwarded", "for=198.51.100.77"),
            ("x-forwarded-for", "203.0.113.5"),
        ]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &spoofed, &trusted),
            ip("203.0.113.5")
        );
        let unknown = h(&[
            ("forwarded", "for=unknown"),
            ("x-forwarded-for", "203.0.113.5"),
        ]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &unknown, &trusted),
            ip("203.0.113.5")
        );
        // A dual-stack listener sees an IPv4 proxy as ::ffff:10.0.0.1: still trusted, and the
        // client is named as the IPv4 address it is.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &xff, &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(ip("::ffff:192.0.2.1"), &none_headers(), &trusted),
            ip("192.0.2.1")
        );
        let hidden = h(&[("forwarded", "for=192.0.2.60, for=_hidden")]);
        assert_eq!(client_ip(ip("10.1.1.1"), &hidden, &trusted), ip("10.1.1.1"));
        let port = h(&[("x-forwarded-for", "203.0.113.5:8443")]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &port, &trusted),
            ip("203.0.113.5")
        );
        let none = HeaderMap::new();
        assert_eq!(client_ip(ip("10.1.1.1"), &none, &trusted), ip("10.1.1.1"));
    }

    fn none_headers() -> HeaderMap {
        HeaderMap::new()
    }

    fn with_authorization(v: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        h
    }

    /// RFC 6749 §2.3.1: both parts form-urlencoded before base64; another scheme, or a header
    /// with bytes outside ASCII that is not Basic, is not client authentication at all.
    #[test]
    fn basic_credentials_are_decoded_and_other_schemes_ignored() {
        use base64::prelude::*;
        let b = BASE64_STANDARD.encode("a%3Ab:s%2Bc+d");
        let (id, secret) = basic_credentials(&with_authorization(format!("Basic {b}").as_bytes()))
            .unwrap()
            .unwrap();
        assert_eq!((id.as_str(), secret.expose()), ("a:b", "s+c d"));
        assert!(basic_credentials(&HeaderMap::new()).unwrap().is_none());
        assert!(
            basic_credentials(&with_authorization(b"Bearer x"))
                .unwrap()
                .is_none()
        );
        assert!(
            basic_credentials(&with_authorization("Bearer é".as_bytes()))
                .unwrap()
                .is_none()
        );
        for bad in [
            &b"Basic !!!"[..],
            b"Basic bm9jb2xvbg==",
            "Basic é".as_bytes(),
        ] {
            let e = basic_credentials(&with_authorization(bad)).unwrap_err();
            assert_eq!(e.code.as_str(), "invalid_client", "{bad:?}");
        }
    }
}
