//! Token, introspection and revocation handlers: extract, call the domain, map.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::error::OAuthResponse;
use super::extract::OAuthForm;
use super::state::AppState;
use crate::oauth::error::OAuthError;
use crate::storage::OrgRecord;

/// The organization behind `{iss}`; an unknown one is a 404 like any unknown path.
pub async fn org_or_404(state: &AppState, slug: &str) -> Result<Arc<OrgRecord>, Response> {
    match state.idp.directory.org(slug).await {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(super::not_found().await.into_response()),
        Err(e) => {
            tracing::error!(error = %e, "organization lookup failed");
            Err(OAuthResponse(OAuthError::server_error()).into_response())
        }
    }
}

fn json_ok<T: serde::Serialize>(v: T) -> Response {
    Json(v).into_response()
}

/// RFC 7009 §2.2: 200 with no body.
fn empty_ok(_: ()) -> Response {
    axum::http::StatusCode::OK.into_response()
}

/// An OAuth endpoint of `{iss}`: the organization (404 when unknown), the form (its own OAuth
/// error when malformed), one domain call `(idp, org, authorization, form, now)`, the mapping.
macro_rules! oauth_endpoint {
    ($(#[$doc:meta])* $name:ident => $call:path, $ok:expr) => {
        $(#[$doc])*
        pub async fn $name(
            State(state): State<AppState>,
            Path(slug): Path<String>,
            req: Result<OAuthForm, OAuthResponse>,
        ) -> Response {
            let org = match org_or_404(&state, &slug).await {
                Ok(o) => o,
                Err(r) => return r,
            };
            let req = match req {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            };
            let now = state.idp.clock.now();
            match $call(&state.idp, &org, req.authorization.as_deref(), &req.form, now).await {
                Ok(v) => ($ok)(v),
                Err(e) => {
                    tracing::debug!(error = %e.code.as_str(), "OAuth request refused");
                    OAuthResponse(e).into_response()
                }
            }
        }
    };
}

oauth_endpoint!(
    /// `POST {iss}/oauth2/token` (RFC 6749 §3.2).
    token_post => crate::oauth::token::token, json_ok
);
oauth_endpoint!(
    /// `POST {iss}/oauth2/introspect` (RFC 7662).
    introspect_post => crate::oauth::introspect::introspect, json_ok
);
oauth_endpoint!(
    /// `POST {iss}/oauth2/revoke` (RFC 7009).
    revoke_post => crate::oauth::revoke::revoke, empty_ok
);
oauth_endpoint!(
    /// `POST {iss}/agent-proof`: a proof-of-control JWT for the authenticated agent.
    agent_proof_post => crate::oauth::proof::agent_proof, json_ok
);
