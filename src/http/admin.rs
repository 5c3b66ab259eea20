//! The admin API under `/api/v1`: organizations, their keys and agents. Handlers are thin: the
//! principal comes from the `Admin` extractor, the work from `tenancy`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Admin, ApiJson};
use super::state::AppState;
use crate::tenancy::agents::{self, AgentInput};
use crate::tenancy::{AgentStatus, orgs};

pub type ApiResult = Result<Response, ApiError>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    slug: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgPatch {
    name: String,
}

/// `?limit=&after=` cursor pagination; `next` is the cursor of the following page.
#[derive(Debug, Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub after: Option<String>,
}

impl Page {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(l) if (1..=500).contains(&l) => Ok(l),
            Some(_) => Err(ApiError::from(crate::admin_error::AdminError::field(
                "limit",
                "must be between 1 and 500",
            ))),
        }
    }
}

pub fn page<T>(
    items: Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> &str,
    view: impl Fn(&T) -> Value,
) -> Value {
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| id(i).to_owned()))
        .flatten();
    json!({"items": items.iter().map(view).collect::<Vec<_>>(), "next": next})
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

pub async fn orgs_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    ApiJson(body): ApiJson<NewOrg>,
) -> ApiResult {
    let org = orgs::create(&s.idp, &p, &body.slug, &body.name).await?;
    Ok(created(orgs::view(&org)))
}

pub async fn orgs_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Query(q): Query<Page>,
) -> ApiResult {
    let limit = q.limit()?;
    let items = orgs::list(&s.idp, &p, q.after.as_deref(), limit).await?;
    Ok(Json(page(items, limit, |o| o.id.as_str(), orgs::view)).into_response())
}

pub async fn org_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(org): Path<String>,
) -> ApiResult {
    let org = orgs::visible(&s.idp, &p, &org, crate::tenancy::access::Action::Read).await?;
    Ok(Json(orgs::view(&org)).into_response())
}

pub async fn org_patch(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<OrgPatch>,
) -> ApiResult {
    let org = orgs::rename(&s.idp, &p, &org, &body.name).await?;
    s.discovery.invalidate(org.id.as_str()).await;
    Ok(Json(orgs::view(&org)).into_response())
}

pub async fn org_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(org): Path<String>,
) -> ApiResult {
    orgs::delete(&s.idp, &p, &org).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn keys_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(org): Path<String>,
) -> ApiResult {
    let org = orgs::visible(&s.idp, &p, &org, crate::tenancy::access::Action::Read).await?;
    Ok(Json(orgs::keys_view(&s.idp, &org, s.idp.clock.now(), None).await?).into_response())
}

pub async fn keys_rotate_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(org): Path<String>,
) -> ApiResult {
    Ok(created(orgs::rotate_keys(&s.idp, &p, &org).await?))
}

pub async fn agents_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<AgentInput>,
) -> ApiResult {
    let (agent, secret) = agents::create(&s.idp, &p, &org, body).await?;
    Ok(created(agents::view(&agent, Some(&org), secret.as_ref())))
}

pub async fn agents_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path(org): Path<String>,
    Query(q): Query<Page>,
) -> ApiResult {
    let limit = q.limit()?;
    let items = agents::list(&s.idp, &p, &org, q.after.as_deref(), limit).await?;
    Ok(Json(page(
        items,
        limit,
        |a| a.id(),
        |a| agents::view(a, Some(&org), None),
    ))
    .into_response())
}

pub async fn agent_get(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult {
    let agent = agents::get(&s.idp, &p, &org, &id).await?;
    Ok(Json(agents::view(&agent, Some(&org), None)).into_response())
}

pub async fn agent_patch(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path((org, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<AgentInput>,
) -> ApiResult {
    let agent = agents::update(&s.idp, &p, &org, &id, body).await?;
    Ok(Json(agents::view(&agent, Some(&org), None)).into_response())
}

pub async fn agent_delete(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult {
    agents::delete(&s.idp, &p, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_status(
    s: AppState,
    p: crate::tenancy::access::Principal,
    org: String,
    id: String,
    st: AgentStatus,
) -> ApiResult {
    let agent = agents::set_status(&s.idp, &p, &org, &id, st).await?;
    Ok(Json(agents::view(&agent, Some(&org), None)).into_response())
}

pub async fn agent_suspend_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult {
    set_status(s, p, org, id, AgentStatus::Suspended).await
}

pub async fn agent_reactivate_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult {
    set_status(s, p, org, id, AgentStatus::Active).await
}

pub async fn agent_revoke_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult {
    set_status(s, p, org, id, AgentStatus::Revoked).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    grace_period_secs: Option<i64>,
}

/// `POST .../agents/{id}/rotate-secret` with an optional JSON body `{"grace_period_secs": N}`.
pub async fn agent_rotate_secret_post(
    State(s): State<AppState>,
    Admin(p): Admin,
    Path((org, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let grace = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let de = &mut serde_json::Deserializer::from_slice(&body);
        let b: RotateSecret = serde_path_to_error::deserialize(de)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        b.grace_period_secs
    };
    let (agent, secret) = agents::rotate_secret(&s.idp, &p, &org, &id, grace).await?;
    Ok(Json(agents::view(&agent, Some(&org), Some(&secret))).into_response())
}
