//! `{iss}/agent-info`: the claims of the agent a bearer access token belongs to
//! (the `userinfo_endpoint`; OIDC Core §5.3, errors per RFC 6750 §3.1).

use serde_json::{Value, json};

use crate::idp::Idp;
use crate::oauth::active_token;
use crate::oauth::error::OAuthError;
use crate::storage::OrgRecord;

pub async fn agent_info(
    idp: &Idp,
    org: &OrgRecord,
    token: &str,
    now: i64,
) -> Result<Value, OAuthError> {
    let (claims, agent) = active_token(idp, org, token, now).await?;
    Ok(json!({
        "sub": claims.sub,
        "client_id": claims.client_id,
        "name": agent.record.name,
        "agent_name": agent.record.name,
        "did": agent.record.did,
        "org_id": org.id,
        "org": org.slug,
        "iss": org.issuer,
        "scope": claims.scope,
        "description": agent.record.description,
        "status": agent.status.as_str(),
    }))
}
