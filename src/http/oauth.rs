//! OAuth endpoints of `{iss}`: token (RFC 6749 §3.2), introspection (RFC 7662), revocation
//! (RFC 7009) and agent proofs. Each handler: the organization (404 when unknown), the request
//! with its client credentials (its own OAuth error when malformed), one domain call, the mapping.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use std::net::IpAddr;

use super::error::{
    OAuthResponse, internal_error, oauth_rate_limited, oauth_too_many_requests, rate_limit_headers,
};
use super::extract::{ClientIp, OAuthRequest};
use super::state::AppState;
use crate::limiter::{Limit, Subject};
use crate::oauth::OAuth;
use crate::oauth::client_auth::ClientCredentials;
use crate::oauth::error::ErrorCode;
use crate::oauth::error::OAuthError;
use crate::oauth::form::FormParams;
use crate::storage::OrgRecord;

/// The organization behind `{iss}`; an unknown one is a 404 like any unknown path.
pub async fn org_or_404(state: &AppState, slug: &str) -> Result<Arc<OrgRecord>, Response> {
    match state.idp.directory.org(slug).await {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(super::not_found().await.into_response()),
        Err(e) => {
            tracing::error!(error = %e, "organization lookup failed");
            Err(internal_error())
        }
    }
}

/// One OAuth endpoint call: the organization (404 when unknown), the parsed request (its own
/// OAuth error when malformed), the clock read once, `call`, and the mapping of its answer (a
/// refusal in the RFC's format, its 401 challenge decided by how the client authenticated).
///
/// `limit`: the request limit per client of this endpoint (the token endpoint's), keyed on the
/// organization and the `client_id`. A client over it is answered 429 before anything is
/// verified (memory only); only requests that got past client authentication count (a guesser
/// cannot spend a client's allowance: failures are the failure brake's), and the answer carries
/// the RateLimit fields. Concurrent requests of one client may all pass the check before any is
/// counted: the overshoot is at most the client's requests in flight.
/// The request limit per client an endpoint has.
#[derive(Debug, Clone, Copy)]
enum ClientLimit {
    None,
    /// The token endpoint's: the organization's policy `token_rate_limit`, or else
    /// `AGENTIDP_TOKEN_RATE_LIMIT`.
    Token,
}

/// The token endpoint's limit for `org`'s clients: its policy's (from memory: the policy cache)
/// overrides the default, also a default that is off. A policy that cannot be read leaves the
/// default in force.
async fn token_limit(state: &AppState, org: &OrgRecord) -> Option<Limit> {
    let default = state.limits.token;
    match state.idp.policies.get(&org.id).await {
        Ok(p) => match (p.token_rate_limit, default) {
            // Never above the instance's (see `OrgPolicies::token_rate_ceiling`).
            (Some(t), Some(d)) => Some(Limit {
                per_second: t.per_second.min(d.per_second),
                burst: t.burst.min(d.burst),
            }),
            (Some(t), None) => Some(Limit {
                per_second: t.per_second,
                burst: t.burst,
            }),
            (None, d) => d,
        },
        Err(_) => default,
    }
}

async fn handle<T>(
    state: &AppState,
    slug: &str,
    ip: IpAddr,
    limit: ClientLimit,
    req: Result<OAuthRequest, OAuthResponse>,
    call: impl AsyncFnOnce(
        &OAuth,
        &OrgRecord,
        ClientCredentials,
        &FormParams,
        i64,
    ) -> Result<T, OAuthError>,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    let org = match org_or_404(state, slug).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let limit = match limit {
        ClientLimit::None => None,
        ClientLimit::Token => token_limit(state, &org).await,
    };
    // The brake on failed client authentication (issue 9 point 7): an address or a client
    // over its limit is answered 429 before any credential is looked at; only failures count,
    // and this check reads memory only.
    let client_id = req.as_ref().ok().and_then(|r| r.client.client_id());
    let client = client_id.map(|client_id| Subject::Client {
        org: &org.id,
        client_id,
    });
    let (both, one);
    let subjects: &[Subject<'_>] = match client {
        Some(c) => {
            both = [Subject::Ip(ip), c];
            &both
        }
        None => {
            one = [Subject::Ip(ip)];
            &one
        }
    };
    if let Some(retry) = state.auth_failures.refused(subjects) {
        tracing::info!(event = "client.rate_limited", org = %org.slug, client_id = log_id(client_id), client_ip = %ip, retry_after = retry.0, "client request refused: too many failed authentications");
        crate::telemetry::auth_failure("client", "rate_limited");
        return oauth_rate_limited(retry);
    }
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            if e.error.code == ErrorCode::InvalidClient {
                client_auth_failed(state, &org, None, ip, &e.error).await;
            }
            return e.into_response();
        }
    };
    let now = state.idp.clock.now();
    let client_id = req.client.client_id().map(str::to_owned);
    let limited = limit.and_then(|l| {
        let client = req.client.limited_client()?;
        Some((
            l,
            Subject::Client {
                org: &org.id,
                client_id: &client,
            }
            .key(),
        ))
    });
    if let Some((l, key)) = &limited
        && let Some(d) = state.rate_limiter.peek(key, *l)
    {
        tracing::info!(event = "client.rate_limited", org = %org.slug, client_id = log_id(client_id.as_deref()), client_ip = %ip, limit = %l, "client request refused: over its request limit");
        return oauth_too_many_requests(&d);
    }
    match call(&state.idp.oauth, &org, req.client, &req.form, now).await {
        Ok(v) => {
            let mut resp = ok(v);
            if let Some((l, key)) = &limited {
                let d = state.rate_limiter.record(key, *l);
                rate_limit_headers(resp.headers_mut(), &d, "token");
            }
            resp
        }
        Err(e) => {
            if let Some((l, key)) = &limited
                && e.code != ErrorCode::InvalidClient
            {
                // Authenticated, refused for another reason (scope, grant): it counts.
                state.rate_limiter.record(key, *l);
            }
            // RFC 6749 §5.2: invalid_client is exactly "client authentication failed".
            if e.code == ErrorCode::InvalidClient {
                client_auth_failed(state, &org, client_id.as_deref(), ip, &e).await;
            } else {
                // With the access log off by default, refusals (a replayed or forged partner
                // assertion at the jwt-bearer grant among them) are logged here.
                tracing::info!(
                    event = "oauth.refused",
                    org = %org.slug,
                    client_id = log_id(client_id.as_deref()),
                    client_ip = %ip,
                    error = e.code.as_str(),
                    "OAuth request refused"
                );
            }
            OAuthResponse::new(e, req.basic).into_response()
        }
    }
}

/// A client id as the log shows it: whatever a client sent, at most 128 characters (the
/// subscriber escapes the rest).
fn log_id(id: Option<&str>) -> &str {
    let id = id.unwrap_or("");
    match id.char_indices().nth(128) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// A failed client authentication: counted against the address and the client, logged at INFO
/// (the request span carries the request id; the description never holds a secret, and the
/// client id is public), and counted in `agentidp_auth_failures_total`.
async fn client_auth_failed(
    state: &AppState,
    org: &OrgRecord,
    client_id: Option<&str>,
    ip: IpAddr,
    e: &OAuthError,
) {
    let ip_subject = Subject::Ip(ip);
    match client_id {
        Some(client_id) => {
            let client = Subject::Client {
                org: &org.id,
                client_id,
            };
            state.auth_failures.failed(&[ip_subject, client]).await;
        }
        None => state.auth_failures.failed(&[ip_subject]).await,
    }
    tracing::info!(
        event = "client.authentication_failed",
        org = %org.slug,
        client_id = log_id(client_id),
        client_ip = %ip,
        reason = %e.description,
        "client authentication failed"
    );
    crate::telemetry::auth_failure("client", "invalid_client");
}

fn json_ok<T: serde::Serialize>(v: T) -> Response {
    Json(v).into_response()
}

/// `POST {iss}/oauth2/token` (RFC 6749 §3.2).
pub async fn token_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ClientIp(ip): ClientIp,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    handle(
        &state,
        &slug,
        ip,
        ClientLimit::Token,
        req,
        OAuth::token,
        json_ok,
    )
    .await
}

/// `POST {iss}/oauth2/introspect` (RFC 7662 §2).
pub async fn introspect_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ClientIp(ip): ClientIp,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    handle(
        &state,
        &slug,
        ip,
        ClientLimit::None,
        req,
        OAuth::introspect,
        json_ok,
    )
    .await
}

/// `POST {iss}/oauth2/revoke` (RFC 7009 §2.1); success is 200 with no body (§2.2).
pub async fn revoke_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ClientIp(ip): ClientIp,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    handle(
        &state,
        &slug,
        ip,
        ClientLimit::None,
        req,
        OAuth::revoke,
        |()| StatusCode::OK.into_response(),
    )
    .await
}

/// `POST {iss}/agent-proof`: a proof-of-control JWT for the authenticated agent.
pub async fn agent_proof_post(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ClientIp(ip): ClientIp,
    req: Result<OAuthRequest, OAuthResponse>,
) -> Response {
    handle(
        &state,
        &slug,
        ip,
        ClientLimit::None,
        req,
        OAuth::agent_proof,
        json_ok,
    )
    .await
}
