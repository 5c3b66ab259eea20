//! The HTTP edge: routes, middleware and every response mapping. Nothing outside `app` imports it.

pub mod admin;
pub mod authz;
pub mod clients;
pub mod did;
pub mod enrollment;
pub mod error;
pub mod extract;
pub mod federation;
pub mod invite_page;
pub mod link_pages;
pub mod oauth;
pub mod observe;
pub mod oidc;
pub mod openapi;
pub mod people;
pub mod principals;
pub mod registration;
pub mod signin;
pub mod state;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

pub use state::AppState;

/// Largest request body accepted anywhere (token requests are a few hundred bytes; agent
/// registrations with an inline JWKS a few kilobytes).
pub const BODY_LIMIT: usize = 64 * 1024;

pub async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "not_found", "error_description": "no such resource"})),
    )
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(
            json!({"error": "method_not_allowed", "error_description": "this method is not allowed here"}),
        ),
    )
}

async fn healthz_get() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Readiness: 503 when the database does not answer. Redis down is reported
/// (`"redis": "down"`, `"status": "degraded"`) but stays 200: the instance still serves every
/// request correctly (rate limits per instance, caches on their short lifetimes, replay markers
/// and invalidation failing over as documented), and Redis is shared, so a 503 would take every
/// instance out of its load balancer at once, a whole outage for a partial degradation.
async fn readyz_get(State(state): State<AppState>) -> Response {
    let meta = &state.idp.stores.meta;
    let leader = state.leader.is_leader();
    match meta.ping().await {
        Ok(()) => {
            let mut body = json!({"status": "ready", "database": meta.backend(), "leader": leader});
            if let Some(r) = &state.redis {
                if r.ping().await {
                    body["redis"] = json!("up");
                } else {
                    body["redis"] = json!("down");
                    body["status"] = json!("degraded");
                    body["rate_limits"] = json!("per instance");
                }
            }
            axum::Json(body).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "leader": leader})),
            )
                .into_response()
        }
    }
}

async fn metrics_get(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            )],
            h.render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Marks OAuth responses uncacheable (RFC 6749 §5.1).
async fn no_store(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Security log of the admin API (issue 9 point 19, until the audit log lands): every call that
/// may change something (any method but GET/HEAD/OPTIONS) is logged at INFO once answered, with
/// its route template, path and status; the request span carries the request id. Bodies are never
/// logged (they may hold secrets), and refused calls are logged too (a 401/403 also by the
/// `Admin` extractor).
async fn log_admin_change(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    tracing::info!(
        event = "admin.change",
        method = %method,
        route = %route,
        path = %path,
        status = resp.status().as_u16(),
        "admin call"
    );
    resp
}

/// A 413 as JSON, like every other error: `{"error": "invalid_request", "error_description"}`
/// is both the admin API's error body and RFC 6749 §5.2's (OAuth endpoints, `/agent-info`).
pub(crate) fn payload_too_large() -> Response {
    let mut resp = (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(json!({
            "error": "invalid_request",
            "error_description": format!("the request body is larger than {BODY_LIMIT} bytes"),
        })),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Builds the router with its middleware stack.
pub fn router(state: AppState) -> Router {
    let oauth = Router::new()
        .route("/orgs/{slug}/oauth2/token", post(oauth::token_post))
        .route(
            "/orgs/{slug}/oauth2/introspect",
            post(oauth::introspect_post),
        )
        .route("/orgs/{slug}/oauth2/revoke", post(oauth::revoke_post))
        .route(
            "/orgs/{slug}/oauth2/register",
            post(registration::register_post),
        )
        .route(
            "/orgs/{slug}/oauth2/register/{client_id}",
            get(registration::client_get)
                .put(registration::client_put)
                .delete(registration::client_delete),
        )
        .route("/orgs/{slug}/agent-proof", post(oauth::agent_proof_post))
        .route(
            "/orgs/{slug}/federation/verify",
            post(federation::verify_post),
        )
        .layer(middleware::from_fn(no_store));

    let public = Router::new()
        .route(
            "/orgs/{slug}/.well-known/openid-configuration",
            get(oidc::openid_configuration_get),
        )
        .route(
            "/.well-known/oauth-authorization-server/orgs/{slug}",
            get(oidc::oauth_metadata_get),
        )
        .route("/orgs/{slug}/jwks.json", get(oidc::jwks_get))
        .route(
            "/orgs/{slug}/agent-info",
            get(oidc::agent_info_get).post(oidc::agent_info_post),
        )
        .route("/.well-known/did.json", get(did::instance_did_get))
        .route("/orgs/{slug}/did.json", get(did::org_did_get))
        .route("/orgs/{slug}/agents/{id}/did.json", get(did::agent_did_get))
        .route("/orgs/{slug}/agents/{id}/card", get(did::agent_card_get))
        .route("/1.0/identifiers/{did}", get(did::identifiers_get))
        // The invitee's side of an invite (HTML; the token is the credential, see the module).
        .route(
            "/orgs/{slug}/invites/{token}",
            get(invite_page::invite_get).post(invite_page::invite_post),
        )
        // People's sign-in (HTML): the authorization endpoint, the sign-in and consent forms,
        // RP-Initiated Logout.
        .route(
            "/orgs/{slug}/oauth2/authorize",
            get(signin::authorize_get).post(signin::authorize_post),
        )
        .route(
            "/orgs/{slug}/login",
            get(signin::login_get).post(signin::login_post),
        )
        .route("/orgs/{slug}/consent", post(signin::consent_post))
        .route(
            "/orgs/{slug}/account",
            get(signin::account_get).post(signin::account_post),
        )
        .route(
            "/orgs/{slug}/oauth2/logout",
            get(signin::logout_get).post(signin::logout_post),
        )
        // The other people links (HTML; see `link_pages`): a GET shows, only the form's POST acts.
        .route(
            "/orgs/{slug}/verify-email/{token}",
            get(link_pages::verify_get).post(link_pages::verify_post),
        )
        .route(
            "/orgs/{slug}/password-reset",
            get(link_pages::forgot_get).post(link_pages::forgot_post),
        )
        .route(
            "/orgs/{slug}/password-reset/{token}",
            get(link_pages::reset_get).post(link_pages::reset_post),
        )
        .route(
            "/orgs/{slug}/ownership-transfer/{token}",
            get(link_pages::transfer_get).post(link_pages::transfer_post),
        );
    // Per client IP (`AGENTIDP_IP_RATE_LIMIT`), only when it is on: off, these GETs pay nothing.
    let public = if state.limits.ip.is_some() {
        public.route_layer(middleware::from_fn_with_state(
            state.clone(),
            extract::ip_rate_limit,
        ))
    } else {
        public
    };
    let public = public
        .route("/healthz", get(healthz_get))
        .route("/readyz", get(readyz_get));
    let public = if state.metrics_on_main {
        public.route("/metrics", get(metrics_get))
    } else {
        public
    };

    // The admin API and its OpenAPI document come from the same registrations.
    let (admin, doc) = openapi::admin_routes().split_for_parts();
    let requirements = authz::RequirementTable::from_document(&doc);
    let admin = admin
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), requirements),
            authz::authorize,
        ))
        .layer(openapi::Document::extension(&doc))
        .layer(middleware::from_fn(no_store))
        .layer(middleware::from_fn(log_admin_change));

    // Order (outermost first): the edge (sensitive headers, request id, declared body size,
    // span, access log, metrics: see `observe::edge`) sees every answer, also the panic handler's
    // and the timeout's; panics become 500s inside the span; the timeout bounds the handler; the
    // body limit applies to every extractor.
    let request_timeout = state.request_timeout;
    let layers = ServiceBuilder::new()
        .layer(middleware::from_fn(observe::edge))
        .layer(CatchPanicLayer::custom(|_| error::internal_error()))
        .layer(observe::LazyTimeoutLayer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));

    Router::new()
        .merge(oauth)
        .merge(public)
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers)
        .with_state(state)
}

/// The router of the separate metrics listener (`AGENTIDP_METRICS_BIND`): `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_get))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.request_timeout,
        ))
        .with_state(state)
}
