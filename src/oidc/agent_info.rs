//! `{iss}/agent-info`: the claims of the agent a bearer access token belongs to
//! (the `userinfo_endpoint`; OIDC Core §5.3, errors per RFC 6750 §3.1).

use serde_json::{Value, json};

use crate::oauth::error::OAuthError;
use crate::oauth::{Holder, OAuth};
use crate::storage::OrgRecord;

pub async fn agent_info(
    oauth: &OAuth,
    org: &OrgRecord,
    token: &str,
    now: i64,
) -> Result<Value, OAuthError> {
    let (claims, holder) = oauth.active_token(org, token, now).await?;
    let mut info = match holder {
        Holder::Agent(agent) => json!({
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
        }),
        // A person (OIDC Core §5.3.2: the standard claims their token's scopes allow).
        Holder::Person { client, user } => {
            let has = |s: &str| {
                claims
                    .scope
                    .as_deref()
                    .is_some_and(|sc| sc.split(' ').any(|x| x == s))
            };
            let mut v = json!({
                "sub": user.id,
                "client_id": client.client_id(),
                "org_id": org.id,
                "org": org.slug,
                "iss": org.issuer,
                "scope": claims.scope,
            });
            if has("profile") {
                v["name"] = json!(user.name);
            }
            if has("email") {
                v["email"] = json!(user.email);
                v["email_verified"] = json!(user.email_verified);
            }
            v
        }
        // A foreign identity: no local membership, only who vouched for whom.
        Holder::Federated(partner) => json!({
            "sub": claims.sub,
            "client_id": claims.client_id,
            "did": claims.did,
            "iss": org.issuer,
            "scope": claims.scope,
            "federated": claims.federated,
            "partner": {"id": partner.record.id, "issuer": partner.record.issuer, "name": partner.record.name},
        }),
    };
    // OIDC Core §5.3.2: a claim without a value is omitted, never returned as null.
    if let Value::Object(m) = &mut info {
        m.retain(|_, v| !v.is_null());
    }
    Ok(info)
}
