//! The admin API under `/api/v1`: organizations, their keys and agents. Handlers are thin: the
//! principal comes from the `Admin` extractor, the work from `tenancy`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorResponse};
use super::extract::{Admin, ApiJson, ApiQuery};
use super::openapi::{
    Authenticated, BadQuery, Conflict, Forbidden, Invalid, JsonBody, NotFound, Precondition,
};
use super::state::AppState;
use crate::admin_error::IfMatch;
use crate::storage::AgentFilter;
use crate::tenancy::agents::{self, AgentInput, AgentResponse};
use crate::tenancy::orgs::{KeyRevokedResponse, KeysResponse, OrgResponse};
use crate::tenancy::policy::{PolicyDocument, PolicyResponse};
use crate::tenancy::{AgentStatus, orgs};

pub type ApiResult = Result<Response, ApiError>;

/// `{org}` of a path under `/api/v1/orgs/{org}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgPath {
    /// The organization's slug.
    pub org: String,
}

/// `{org}` and `{id}` of a path under `/api/v1/orgs/{org}/agents/{id}` or `.../partners/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ObjectPath {
    /// The organization's slug.
    pub org: String,
    /// The object's id (a UUID).
    pub id: String,
}

/// The `If-Match` precondition of an update (documentation only: read by [`if_match`]).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// Update only if the object is still at this `ETag` (a list of tags or `*`; RFC 9110
    /// §13.1.1); otherwise 412 and nothing changes. Without it the update applies to the
    /// current version.
    #[serde(rename = "If-Match")]
    pub if_match: Option<String>,
}

/// `POST /api/v1/orgs` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    /// Immutable and never reused, even after deletion.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    slug: String,
    /// 1 to 200 printable characters.
    name: String,
}

/// `PATCH /api/v1/orgs/{org}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPatch {
    /// 1 to 200 printable characters.
    name: String,
}

/// `?limit=&after=` cursor pagination; `next` is the cursor of the following page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Page size, 1 to 500 (default 50). Read as text so that a value that is not a number is
    /// the same `invalid_field` error as one out of range.
    #[param(minimum = 1, maximum = 500, value_type = Option<i64>)]
    pub limit: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

/// One page of a list. `next` is null on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the following page; null when this page is the last.
    #[schema(required = true)]
    pub next: Option<String>,
}

impl Page {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.as_deref().map(|l| l.trim().parse::<i64>()) {
            None => Ok(50),
            Some(Ok(l)) if (1..=500).contains(&l) => Ok(l),
            Some(_) => Err(ApiError::invalid_field(
                "limit",
                "must be an integer between 1 and 500",
            )),
        }
    }
}

pub fn page<T, V>(
    items: Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> &str,
    view: impl Fn(&T) -> V,
) -> ListResponse<V> {
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| id(i).to_owned()))
        .flatten();
    ListResponse {
        items: items.iter().map(view).collect(),
        next,
    }
}

fn created(v: impl Serialize) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

/// The `If-Match` precondition of a request (RFC 9110 §13.1.1), if it has one; several field
/// lines form one list (§5.3).
pub fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
    let mut lines = headers.get_all(header::IF_MATCH).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let bad = || {
        ApiError::bad_request(
            "If-Match must be * or a list of entity tags (RFC 9110 §13.1.1), such as \"3\"",
        )
    };
    let mut joined = Vec::new();
    for l in lines {
        joined.push(l.to_str().map_err(|_| bad())?.to_owned());
    }
    IfMatch::parse(&joined.join(",")).map(Some).ok_or_else(bad)
}

/// A JSON answer carrying the object's `ETag` (its version, RFC 9110 §8.8.3), to send back in
/// `If-Match` for an update that must not overwrite a change made in between.
pub fn with_etag(status: StatusCode, v: impl Serialize, version: i64) -> Response {
    let mut resp = (status, Json(v)).into_response();
    if let Ok(tag) = HeaderValue::from_str(&IfMatch::etag(version)) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

/// Creates an organization with its signing keys (platform admins only).
#[utoipa::path(
    post,
    path = "/api/v1/orgs",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("platform"))),
    request_body = NewOrg,
    responses(
        (status = 201, description = "The organization", body = OrgResponse),
        Authenticated, Forbidden, JsonBody, Invalid, Conflict,
    ),
)]
pub async fn orgs_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    ApiJson(body): ApiJson<NewOrg>,
) -> ApiResult {
    let org = s.idp.orgs.create(&p, &body.slug, &body.name).await?;
    Ok(created(orgs::view(&org)))
}

/// Lists the organizations the principal may see.
#[utoipa::path(
    get,
    path = "/api/v1/orgs",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("authenticated"))),
    params(Page),
    responses(
        (status = 200, description = "A page of organizations", body = ListResponse<OrgResponse>),
        Authenticated, BadQuery, Invalid,
    ),
)]
pub async fn orgs_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult {
    let limit = q.limit()?;
    let items = s.idp.orgs.list(&p, q.after.as_deref(), limit).await?;
    Ok(Json(page(items, limit, |o| o.id.as_str(), orgs::view)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath),
    responses(
        (status = 200, description = "The organization", body = OrgResponse),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn org_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
) -> ApiResult {
    let org = orgs::visible(
        &s.idp.directory,
        &p,
        &org,
        crate::tenancy::access::Action::Read,
    )
    .await?;
    Ok(Json(orgs::view(&org)).into_response())
}

/// Renames an organization (its slug, issuer and DID never change).
#[utoipa::path(
    patch,
    path = "/api/v1/orgs/{org}",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath),
    request_body = OrgPatch,
    responses(
        (status = 200, description = "The organization", body = OrgResponse),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid,
    ),
)]
pub async fn org_patch(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiJson(body): ApiJson<OrgPatch>,
) -> ApiResult {
    let org = s.idp.orgs.rename(&p, &org, &body.name).await?;
    s.discovery.invalidate(org.id.as_str()).await;
    Ok(Json(orgs::view(&org)).into_response())
}

/// Deletes an organization: a tombstone (the slug, issuer and DID stay retired), its agents
/// revoked, its keys unpublished. Owners (and platform admins) only.
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("owner"))),
    params(OrgPath),
    responses(
        (status = 204, description = "Deleted"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn org_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
) -> ApiResult {
    s.idp.orgs.delete(&p, &org).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Every published key of the organization with its lifecycle state.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/keys",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath),
    responses(
        (status = 200, description = "The organization's keys", body = KeysResponse),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn keys_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
) -> ApiResult {
    let org = orgs::visible(
        &s.idp.directory,
        &p,
        &org,
        crate::tenancy::access::Action::Read,
    )
    .await?;
    Ok(Json(s.idp.orgs.keys_view(&org, s.idp.clock.now(), None).await?).into_response())
}

/// Creates new signing keys; they are published at once and sign after the activation delay.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/keys/rotate",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath),
    responses(
        (status = 201, description = "The new keys", body = KeysResponse),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn keys_rotate_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
) -> ApiResult {
    Ok(created(s.idp.orgs.rotate_keys(&p, &org).await?))
}

/// `{org}` and `{kid}` of `/api/v1/orgs/{org}/keys/{kid}/revoke`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The organization's slug.
    pub org: String,
    /// The key's `kid`.
    pub kid: String,
}

/// Revokes a compromised signing key: it leaves the JWKS and the DID document at once and the
/// tokens it signed stop introspecting as active. When it was the key signing for its algorithm,
/// a new key is activated immediately (no pre-publication delay), as the answer says.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/keys/{kid}/revoke",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(KeyPath),
    responses(
        (status = 200, description = "The revoked key and its replacement, if any", body = KeyRevokedResponse),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn key_revoke_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(KeyPath { org, kid }): Path<KeyPath>,
) -> ApiResult {
    Ok(Json(s.idp.orgs.revoke_key(&p, &org, &kid).await?).into_response())
}

/// Registers an agent: secret-based (the `client_secret` is in this answer only) or
/// `private_key_jwt` with `jwks` or `jwks_uri`. `name` and `scopes` are required.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/agents",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath),
    request_body = AgentInput,
    responses(
        (status = 201, description = "The agent, with its secret when secret-based", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid,
    ),
)]
pub async fn agents_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiJson(body): ApiJson<AgentInput>,
) -> ApiResult {
    let (agent, secret) = s.idp.agents.create(&p, &org, body).await?;
    Ok(with_etag(
        StatusCode::CREATED,
        agents::view(&agent, Some(&org), secret.as_ref()),
        agent.version,
    ))
}

/// `GET .../agents` query: cursor pagination and filters (every given filter must hold). An
/// unknown parameter or a bad value is refused, never ignored.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentQuery {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500, value_type = Option<i64>)]
    pub limit: Option<String>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    /// Only agents with this status: `active`, `suspended` or `revoked`.
    #[param(value_type = Option<AgentStatus>)]
    pub status: Option<String>,
    /// Only agents with an `expires_at` before this RFC 3339 instant.
    #[param(format = DateTime)]
    pub expiring_before: Option<String>,
    /// Only agents whose name contains this text (a case-insensitive substring, 1 to 200
    /// characters).
    pub name: Option<String>,
}

/// A query parameter with a bad value: 422 `invalid_field` naming it, as `?limit=abc` (the
/// admin API's one rule for bodies and queries).
fn bad_param(field: &str, d: &str) -> ApiError {
    ApiError::invalid_field(field, d)
}

impl AgentQuery {
    pub(super) fn filter(&self) -> Result<AgentFilter, ApiError> {
        let status = match self.status.as_deref() {
            None => None,
            Some(v) => Some(
                AgentStatus::parse(v)
                    .ok_or_else(|| bad_param("status", "must be active, suspended or revoked"))?,
            ),
        };
        let expiring_before = match self.expiring_before.as_deref() {
            None => None,
            Some(v) => Some(crate::model::parse_rfc3339(v).ok_or_else(|| {
                bad_param(
                    "expiring_before",
                    "must be an RFC 3339 date-time such as 2027-01-01T00:00:00Z",
                )
            })?),
        };
        let name = match self.name.as_deref() {
            None => None,
            Some(n)
                if n.is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control) =>
            {
                return Err(bad_param(
                    "name",
                    "must be 1 to 200 characters without control characters",
                ));
            }
            Some(n) => Some(n.to_owned()),
        };
        Ok(AgentFilter {
            status,
            expiring_before,
            name_contains: name,
            kind: None,
            enrollment_id: None,
        })
    }
}

/// The organization's agents, a page at a time, optionally filtered.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/agents",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath, AgentQuery),
    responses(
        (status = 200, description = "A page of agents", body = ListResponse<AgentResponse>),
        Authenticated, Forbidden, NotFound, BadQuery, Invalid,
    ),
)]
pub async fn agents_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    ApiQuery(q): ApiQuery<AgentQuery>,
) -> ApiResult {
    let limit = Page {
        limit: q.limit.clone(),
        after: None,
    }
    .limit()?;
    let filter = q.filter()?;
    let items = s
        .idp
        .agents
        .list(&p, &org, q.after.as_deref(), limit, &filter)
        .await?;
    Ok(Json(page(
        items,
        limit,
        |a| a.id(),
        |a| agents::view(a, Some(&org), None),
    ))
    .into_response())
}

/// The agent, never its secret.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/agents/{id}",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("member"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The agent", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn agent_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    let agent = s.idp.agents.get(&p, &org, &id).await?;
    Ok(agent_answer(&agent, &org))
}

/// Changes the given fields only.
#[utoipa::path(
    patch,
    path = "/api/v1/orgs/{org}/agents/{id}",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath, IfMatchHeader),
    request_body = AgentInput,
    responses(
        (status = 200, description = "The agent", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict, Precondition,
    ),
)]
pub async fn agent_patch(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AgentInput>,
) -> ApiResult {
    let pre = if_match(&headers)?;
    let agent = s
        .idp
        .agents
        .update(&p, &org, &id, body, pre.as_ref())
        .await?;
    Ok(agent_answer(&agent, &org))
}

/// Deletes the agent (a tombstone: its id and DID are never reused).
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{org}/agents/{id}",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 204, description = "Deleted"),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn agent_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    s.idp.agents.delete(&p, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_status(
    s: AppState,
    p: crate::tenancy::access::Principal,
    org: String,
    id: String,
    st: AgentStatus,
) -> ApiResult {
    let agent = s.idp.agents.set_status(&p, &org, &id, st).await?;
    Ok(agent_answer(&agent, &org))
}

/// 200 with the agent (never its secret) and its `ETag`.
pub(super) fn agent_answer(agent: &crate::tenancy::Agent, org: &str) -> Response {
    with_etag(
        StatusCode::OK,
        agents::view(agent, Some(org), None),
        agent.version,
    )
}

/// Suspends the agent: it gets no tokens and the tokens it has are inactive.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/agents/{id}/suspend",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The agent", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound, Conflict,
    ),
)]
pub async fn agent_suspend_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    set_status(s, p, org, id, AgentStatus::Suspended).await
}

/// Reactivates a suspended agent.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/agents/{id}/reactivate",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The agent", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound, Conflict,
    ),
)]
pub async fn agent_reactivate_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    set_status(s, p, org, id, AgentStatus::Active).await
}

/// Revokes the agent (final): its tokens are inactive, its DID deactivated.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/agents/{id}/revoke",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    responses(
        (status = 200, description = "The agent", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        Authenticated, Forbidden, NotFound, Conflict,
    ),
)]
pub async fn agent_revoke_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
) -> ApiResult {
    set_status(s, p, org, id, AgentStatus::Revoked).await
}

/// `POST .../rotate-secret` body (optional: an empty body rotates without a grace period).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the old secret keeps working, 0 to 604800 seconds; without, it stops at once and
    /// tokens issued before now stop introspecting as active.
    pub(super) grace_period_secs: Option<i64>,
}

/// Issues a new client secret, shown in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{org}/agents/{id}/rotate-secret",
    tag = "agents",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(ObjectPath),
    request_body(content = Option<RotateSecret>, description = "Optional: an empty body rotates without a grace period (the Content-Type is not checked)", content_type = "application/json"),
    responses(
        (status = 200, description = "The agent with its new `client_secret`", body = AgentResponse, headers(("ETag" = String, description = "The object's version (RFC 9110 §8.8.3); send it in `If-Match` to update only that version"))),
        (status = 400, description = "Malformed JSON or an unknown or mistyped field", body = ErrorResponse),
        (status = 413, description = "A body over 64 KiB", body = ErrorResponse),
        Authenticated, Forbidden, NotFound, Invalid, Conflict,
    ),
)]
pub async fn agent_rotate_secret_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(ObjectPath { org, id }): Path<ObjectPath>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "invalid_request",
            "the request body is unreadable or too large",
        )
    })?;
    let grace = optional_body::<RotateSecret>(&body)?.and_then(|b| b.grace_period_secs);
    let (agent, secret) = s.idp.agents.rotate_secret(&p, &org, &id, grace).await?;
    Ok(with_etag(
        StatusCode::OK,
        agents::view(&agent, Some(&org), Some(&secret)),
        agent.version,
    ))
}

/// An optional JSON object body: empty (or whitespace) and `null` read as none, as the
/// document's `T | null` says.
pub fn optional_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    ApiError::require_object(body, true)?;
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(ApiError::from_json)
}

/// The organization's policy (every member; null: no restriction).
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{org}/policy",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("member"))),
    params(OrgPath),
    responses(
        (status = 200, description = "The whole policy", body = PolicyResponse, headers(("ETag" = String, description = "The policy's version (RFC 9110 §8.8.3; `\"0\"` before the first change); send it in `If-Match` to replace only that version"))),
        Authenticated, Forbidden, NotFound,
    ),
)]
pub async fn policy_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
) -> ApiResult {
    let policy = s.idp.policy_admin.get(&p, &org).await?;
    Ok(with_etag(StatusCode::OK, policy.view(None), policy.version))
}

/// Replaces the whole policy (absent members: no restriction). Existing agents that violate it
/// are reported in `violations`, not changed; new registrations and updates must comply.
#[utoipa::path(
    put,
    path = "/api/v1/orgs/{org}/policy",
    tag = "orgs",
    extensions(("x-agentidp-role" = json!("admin"))),
    params(OrgPath, IfMatchHeader),
    request_body = PolicyDocument,
    responses(
        (status = 200, description = "The whole policy, with the existing agents that violate it", body = PolicyResponse, headers(("ETag" = String, description = "The policy's version (RFC 9110 §8.8.3); send it in `If-Match` to replace only that version"))),
        Authenticated, Forbidden, NotFound, JsonBody, Invalid, Conflict, Precondition,
    ),
)]
pub async fn policy_put(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(OrgPath { org }): Path<OrgPath>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PolicyDocument>,
) -> ApiResult {
    let pre = if_match(&headers)?;
    let (policy, report) = s
        .idp
        .policy_admin
        .put(&p, &org, &body, pre.as_ref())
        .await?;
    Ok(with_etag(
        StatusCode::OK,
        policy.view(Some(report)),
        policy.version,
    ))
}
