//! The admin API's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json`.
//!
//! The document and the admin router come from the same registrations: each `routes!(...)`
//! below adds a handler's `#[utoipa::path]` operation to the document and the handler to the
//! router, so a route cannot exist without its operation or the reverse. A new admin endpoint is
//! a handler with `#[utoipa::path]` plus one line here; never a plain `.route(...)` (a test scans
//! the source for that).

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorResponse;
use super::state::AppState;
use super::{admin, clients, did, enrollment, federation, people, principals};

/// The name of the admin bearer security scheme (also spelled out in `security(...)` below).
pub const BEARER: &str = "admin_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "agentidp admin API",
        description = "Organizations, their signing keys, agents, federation partners, API keys, \
                       people (users and invites) and agent card metadata. Every call but this document's needs \
                       `Authorization: Bearer` with a platform admin token or an organization API \
                       key. Each operation's `x-agentidp-role` names what it needs: `platform`, \
                       `authenticated` (any principal), or a role in the path's organization \
                       (`owner` > `admin` > `member`; `scim` only for SCIM keys). An object of \
                       another organization answers 404, exactly as one that does not exist; a \
                       principal of the organization without the role gets 403.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerScheme),
    security(("admin_token" = [])),
    components(schemas(ErrorResponse)),
    tags(
        (name = "orgs", description = "Organizations (each its own issuer) and their signing keys"),
        (name = "agents", description = "Agents (OAuth clients) of an organization"),
        (name = "clients", description = "People-facing apps (clients of the authorization code flow) of an organization"),
        (name = "partners", description = "Federation partners of an organization"),
        (name = "api-keys", description = "API keys of an organization: principals with a role"),
        (name = "users", description = "People of an organization (user accounts) and invites"),
        (name = "enrollment-tokens", description = "Enrollment tokens: initial access tokens (RFC 7591) with which agent runtimes register themselves at `{iss}/oauth2/register`"),
        (name = "meta", description = "This document"),
    ),
)]
struct AdminApi;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "A platform admin token (the bootstrap token or one made with `agentidp admin-token \
             create`, `aidp_p_…`) or an organization API key (`aidp_k_…`)."
                .into(),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(http));
    }
}

/// Every admin route with its operation. The one place admin routes are registered.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(AdminApi::openapi())
        .routes(routes!(admin::orgs_post, admin::orgs_get))
        .routes(routes!(admin::org_get, admin::org_patch, admin::org_delete))
        .routes(routes!(admin::keys_get))
        .routes(routes!(admin::keys_rotate_post))
        .routes(routes!(admin::key_revoke_post))
        .routes(routes!(principals::api_keys_post, principals::api_keys_get))
        .routes(routes!(principals::api_key_delete))
        .routes(routes!(principals::api_key_rotate_post))
        .routes(routes!(people::users_post, people::users_get))
        .routes(routes!(
            people::user_get,
            people::user_patch,
            people::user_delete
        ))
        .routes(routes!(
            people::user_sessions_get,
            people::user_sessions_delete
        ))
        .routes(routes!(people::user_session_delete))
        .routes(routes!(
            people::user_delegations_get,
            people::user_delegations_post
        ))
        .routes(routes!(people::user_delegation_delete))
        .routes(routes!(people::invites_post, people::invites_get))
        .routes(routes!(people::invite_delete))
        .routes(routes!(people::user_verify_email_post))
        .routes(routes!(people::user_password_reset_post))
        .routes(routes!(
            people::ownership_transfer_post,
            people::ownership_transfer_get,
            people::ownership_transfer_delete
        ))
        .routes(routes!(people::ownership_transfer_accept_post))
        .routes(routes!(admin::policy_get, admin::policy_put))
        .routes(routes!(admin::agents_post, admin::agents_get))
        .routes(routes!(
            admin::agent_get,
            admin::agent_patch,
            admin::agent_delete
        ))
        .routes(routes!(admin::agent_suspend_post))
        .routes(routes!(admin::agent_reactivate_post))
        .routes(routes!(admin::agent_revoke_post))
        .routes(routes!(admin::agent_rotate_secret_post))
        .routes(routes!(clients::clients_post, clients::clients_get))
        .routes(routes!(
            clients::client_get,
            clients::client_patch,
            clients::client_delete
        ))
        .routes(routes!(clients::client_rotate_secret_post))
        .routes(routes!(
            enrollment::enrollment_tokens_post,
            enrollment::enrollment_tokens_get
        ))
        .routes(routes!(
            enrollment::enrollment_token_get,
            enrollment::enrollment_token_delete
        ))
        .routes(routes!(enrollment::enrollment_token_agents_get))
        .routes(routes!(enrollment::enrollment_token_revoke_agents_post))
        .routes(routes!(did::agent_card_meta_get, did::agent_card_meta_put))
        .routes(routes!(federation::partners_post, federation::partners_get))
        .routes(routes!(
            federation::partner_get,
            federation::partner_patch,
            federation::partner_delete
        ))
        .routes(routes!(federation::partner_disable_post))
        .routes(routes!(federation::partner_enable_post))
        .routes(routes!(openapi_json_get))
}

/// The admin API's OpenAPI document (what `admin_routes` would serve).
pub fn document() -> utoipa::openapi::OpenApi {
    admin_routes().into_openapi()
}

/// The serialized document, handed to its handler as a request extension (serialized once,
/// when the router is assembled).
#[derive(Clone)]
pub struct Document(Bytes);

impl Document {
    pub fn extension(doc: &utoipa::openapi::OpenApi) -> Extension<Self> {
        // Serializing plain data cannot fail; an empty body would fail the tests.
        Extension(Self(Bytes::from(
            serde_json::to_vec(doc).unwrap_or_default(),
        )))
    }
}

/// This document (no token needed).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    extensions(("x-agentidp-role" = json!("public"))),
    security(()),
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json_get(Extension(Document(doc)): Extension<Document>) -> Response {
    let mut resp = doc.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn errors(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<ApiResponse>> {
    list.iter()
        .map(|(status, description)| {
            let content = Content::new(Some(Ref::from_schema_name("ErrorResponse")));
            let resp = ResponseBuilder::new()
                .description(*description)
                .content("application/json", content)
                .build();
            (status.to_string(), RefOr::T(resp))
        })
        .collect()
}

/// 401, 429 and 500: every authenticated call.
pub struct Authenticated;
impl IntoResponses for Authenticated {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        errors(&[
            (
                401,
                "No or an unknown bearer token (`WWW-Authenticate: Bearer`)",
            ),
            (
                429,
                "Too many failed authentications from this address, or too many requests for this principal (`AGENTIDP_ADMIN_RATE_LIMIT`) (`rate_limited`; `Retry-After` says when to try again, `RateLimit-Policy` and `RateLimit` give the limit)",
            ),
            (500, "Internal error (`server_error`)"),
        ])
    }
}

/// 403: calls that check the principal's rights on an organization.
pub struct Forbidden;
impl IntoResponses for Forbidden {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        errors(&[(403, "The principal may not do this")])
    }
}

/// 404: calls under `/orgs/{org}`.
pub struct NotFound;
impl IntoResponses for NotFound {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        errors(&[(
            404,
            "No such organization or object (or one the principal cannot see)",
        )])
    }
}

/// 400 and 415: calls with a JSON body. The one rule of every body: 400 `invalid_request` when
/// it is not a JSON object this call takes (not JSON, an array, an unknown member), 422
/// `invalid_field` (see [`Invalid`]) about one of its fields.
pub struct JsonBody;
impl IntoResponses for JsonBody {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        errors(&[
            (
                400,
                "The body is not valid JSON or not a JSON object, holds NUL characters or a member the call does not take (`invalid_request`; `field` names such a member), or is over 64 KiB",
            ),
            (415, "The Content-Type is not application/json"),
        ])
    }
}

/// 400: a malformed query string.
pub struct BadQuery;
impl IntoResponses for BadQuery {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        errors(&[(400, "A malformed query parameter")])
    }
}

/// 422: a field failed validation; `field` names it.
pub struct Invalid;
impl IntoResponses for Invalid {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        errors(&[(
            422,
            "A field is missing, of the wrong type or fails validation (`invalid_field`; `field` names it, as a path for nested fields: `skills[0].id`); the same for a query parameter",
        )])
    }
}

/// 412: an `If-Match` precondition failed.
pub struct Precondition;
impl IntoResponses for Precondition {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        errors(&[(
            412,
            "`If-Match` names another version (`precondition_failed`): the object changed since it was read; nothing was changed",
        )])
    }
}

/// 503: the mail queue is full (SMTP configured); nothing was changed.
pub struct Unavailable;
impl IntoResponses for Unavailable {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        errors(&[(
            503,
            "The mail queue is full (`temporarily_unavailable`; `Retry-After` says when to try again): nothing was changed",
        )])
    }
}

/// 409: the call conflicts with the object's state.
pub struct Conflict;
impl IntoResponses for Conflict {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        errors(&[(
            409,
            "Conflicts with the current state (a taken slug or issuer, a revoked agent)",
        )])
    }
}

#[cfg(test)]
mod tests {
    use crate::keys::KeyState;
    use crate::model::Alg;
    use crate::tenancy::{AgentStatus, AuthMethod};

    fn wire<T: serde::Serialize>(v: T) -> String {
        match serde_json::to_value(v) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    /// The response types serialize these enums; the JSON must keep the strings it had.
    #[test]
    fn enums_serialize_as_their_wire_strings() {
        for s in [
            AgentStatus::Active,
            AgentStatus::Suspended,
            AgentStatus::Revoked,
        ] {
            assert_eq!(wire(s), s.as_str());
        }
        for m in AuthMethod::ALL {
            assert_eq!(wire(m), m.as_str());
        }
        for a in Alg::ALL {
            assert_eq!(wire(a), a.as_str());
        }
        for (k, name) in [
            (KeyState::Pending, "pending"),
            (KeyState::Active, "active"),
            (KeyState::Retired, "retired"),
            (KeyState::Gone, "gone"),
        ] {
            assert_eq!(wire(k), name);
        }
    }
}
