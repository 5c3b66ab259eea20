//! RFC 7662 token introspection. The caller authenticates as a client of the organization.
//! A token that is not good for any reason answers `{"active": false}` (§2.2), never an error.

use serde_json::{Value, json};

use super::TokenStateError;
use super::client_auth::ClientCredentials;
use super::error::OAuthError;
use super::form::FormParams;
use crate::oauth::OAuth;
use crate::storage::OrgRecord;

impl OAuth {
    pub async fn introspect(
        &self,
        org: &OrgRecord,
        client: ClientCredentials,
        form: &FormParams,
        now: i64,
    ) -> Result<Value, OAuthError> {
        self.clients
            .authenticate(org, client, now, "/oauth2/introspect")
            .await?;
        let token = form.require("token")?;
        match self.active_token(org, token, now).await {
            Ok((c, _agent)) => Ok(without_nulls(json!({
                "active": true,
                "scope": c.scope,
                "client_id": c.client_id,
                "sub": c.sub,
                "aud": c.aud,
                "iss": c.iss,
                "exp": c.exp,
                "iat": c.iat,
                "jti": c.jti,
                "token_type": "Bearer",
                "org_id": c.org_id,
                "did": c.did,
                "agent_name": c.agent_name,
                "federated": c.federated,
                "act": c.act,
            }))),
            Err(TokenStateError::Unavailable) => Err(OAuthError::server_error()),
            Err(_) => Ok(json!({ "active": false })),
        }
    }
}

/// RFC 7662 §2.2 members are typed (`scope` a string, ...): an absent value is omitted, not null.
fn without_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}
