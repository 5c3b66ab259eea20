//! The admin API's one authorization point: a route layer over every admin route.
//!
//! Each admin handler declares what it needs in its `#[utoipa::path]`, as the extension
//! `x-agentidp-role` (`public`, `authenticated`, `platform`, `owner`, `admin`, `member`,
//! `scim`), so the OpenAPI document lists it. [`RequirementTable::from_document`] reads those
//! once when the router is assembled; [`authorize`] runs before every admin handler:
//!
//! 1. the route's requirement (a route without one is treated as `platform`: closed by default;
//!    a test fails any route without a declaration);
//! 2. the client address over its failed authentications is answered 429 before its token is
//!    read;
//! 3. the bearer token becomes a [`Principal`] (401 for a missing, unknown, revoked or expired
//!    one, counted as a failed authentication; 403 for a key used outside its `allowed_cidrs`);
//! 4. the principal's request limit (`AGENTIDP_ADMIN_RATE_LIMIT`, 429 with `Retry-After`);
//! 5. the organization of the path's `{org}`: one the principal does not belong to answers 404
//!    exactly like a missing one, a lacking role 403 ([`access::authorize`]);
//! 6. the organization's policy `admin_allowed_cidrs`, for its own principals (not a platform
//!    admin, who can always let a fenced-out organization back in): 403 from elsewhere;
//!
//! and hands the principal to the handler as a request extension ([`Authorized`], read by the
//! `Admin` extractor).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::bearer_from_header;
use super::state::AppState;
use crate::limiter::Subject;
use crate::tenancy::access::{self, AccessError, Principal, Requirement};
use crate::tenancy::principals::Refusal;

/// The OpenAPI extension naming a route's requirement.
pub const ROLE_EXTENSION: &str = "x-agentidp-role";

/// The principal of an authorized admin request.
#[derive(Clone)]
pub struct Authorized(pub Principal);

/// Requirements by method and route template (`/api/v1/orgs/{org}/agents/{id}`).
#[derive(Clone, Default)]
pub struct RequirementTable(Arc<HashMap<(Method, String), Requirement>>);

impl RequirementTable {
    pub fn from_document(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut map = HashMap::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ] {
                let Some(op) = op else { continue };
                let need = op
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get(ROLE_EXTENSION))
                    .and_then(|v| v.as_str())
                    .and_then(Requirement::parse);
                if let Some(need) = need {
                    map.insert((method, path.clone()), need);
                }
            }
        }
        Self(Arc::new(map))
    }

    /// What the route needs; `platform` for one that declares nothing.
    pub fn get(&self, method: &Method, route: &str) -> Requirement {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0
            .get(&(method.clone(), route.to_owned()))
            .copied()
            .unwrap_or(Requirement::Platform)
    }
}

/// The value of the path segment that the route template has as `{org}`.
fn org_slug<'a>(route: &str, path: &'a str) -> Option<&'a str> {
    let at = route.split('/').position(|s| s == "{org}")?;
    path.split('/').nth(at)
}

/// The route layer: see the module documentation.
pub async fn authorize(
    State((state, table)): State<(AppState, RequirementTable)>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let need = table.get(req.method(), &route);
    if need == Requirement::Public {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| {
            c.0.ip()
        });
    let ip = super::extract::client_ip(peer, req.headers(), &state.trusted_proxies);
    let subjects = [Subject::Ip(ip)];
    if let Some(retry) = state.auth_failures.refused(&subjects) {
        tracing::info!(event = "admin.rate_limited", client_ip = %ip, retry_after = retry.0, "admin request refused: too many failed authentications");
        crate::telemetry::auth_failure("admin", "rate_limited");
        return super::error::admin_rate_limited(retry);
    }
    let Some(token) = bearer_from_header(req.headers()) else {
        tracing::info!(event = "admin.unauthorized", client_ip = %ip, reason = "no bearer token", "admin request refused");
        return ApiError::unauthorized().into_response();
    };
    let principal = match state.idp.admin_principal(&token, ip).await {
        Ok(p) => p,
        Err(refusal) => {
            let (reason, answer) = match refusal {
                Refusal::Unauthenticated(reason) => {
                    (reason, ApiError::unauthorized().into_response())
                }
                Refusal::AddressNotAllowed => (
                    "address outside the key's allowed_cidrs",
                    ApiError::forbidden("this API key may not be used from this address")
                        .into_response(),
                ),
                Refusal::Unavailable => {
                    return ApiError::unavailable("the credential store is unavailable; retry")
                        .into_response();
                }
            };
            state.auth_failures.failed(&subjects).await;
            tracing::info!(event = "admin.unauthorized", client_ip = %ip, reason, "admin request refused");
            crate::telemetry::auth_failure("admin", "invalid_token");
            return answer;
        }
    };
    // The admin API's request limit per principal (`AGENTIDP_ADMIN_RATE_LIMIT`).
    if let Some(refused) = super::extract::admin_rate_limit(&state, &principal.actor(), ip) {
        return refused;
    }
    let org = match org_slug(&route, req.uri().path()) {
        Some(slug) => match state.idp.directory.org(slug).await {
            Ok(o) => o,
            Err(_) => {
                return ApiError::unavailable("the database is unavailable; retry").into_response();
            }
        },
        None => None,
    };
    if let Err(e) = access::authorize(&principal, need, org.as_ref().map(|o| o.id.as_str())) {
        tracing::info!(event = "admin.forbidden", client_ip = %ip, actor = %principal.actor(), route = %route, need = need.as_str(), "admin request refused");
        return match e {
            AccessError::NotFound => ApiError::not_found().into_response(),
            AccessError::Forbidden => ApiError::forbidden(&format!(
                "this call needs the role {:?} in the organization",
                need.as_str()
            ))
            .into_response(),
        };
    }
    // The organization's own fence (policy `admin_allowed_cidrs`) binds its own principals;
    // a platform admin stays outside it, so an organization that fenced itself out can be let
    // back in.
    // Without an `{org}` in the path (listing organizations), the fence of the principal's own.
    let fenced_by = org
        .as_ref()
        .map(|o| o.id.as_str())
        .or_else(|| principal.org_id());
    if let (Some(org_id), false) = (fenced_by, principal.is_platform()) {
        match state.idp.policies.get(org_id).await {
            Ok(policy) if policy.admin_ip_allowed(ip.to_canonical()) => {}
            Ok(_) => {
                tracing::info!(event = "admin.forbidden", client_ip = %ip, actor = %principal.actor(), route = %route, reason = "outside the organization's admin_allowed_cidrs", "admin request refused");
                return ApiError::forbidden(
                    "the organization's policy does not allow its admin API from this address",
                )
                .into_response();
            }
            Err(_) => {
                return ApiError::unavailable("the database is unavailable; retry").into_response();
            }
        }
    }
    req.extensions_mut().insert(Authorized(principal));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_org_segment_is_found_by_the_template() {
        assert_eq!(
            org_slug("/v/orgs/{org}/agents/{id}", "/v/orgs/acme/agents/x"),
            Some("acme")
        );
        assert_eq!(org_slug("/v/orgs", "/v/orgs"), None);
    }

    #[test]
    fn undeclared_routes_need_the_platform() {
        let t = RequirementTable::default();
        assert_eq!(t.get(&Method::GET, "/x"), Requirement::Platform);
    }
}
