//! `POST {iss}/agent-proof`: an agent, authenticated as at the token endpoint, obtains a
//! short-lived proof-of-control JWT (see `did::proof`), optionally bound to an audience and nonce.

use serde::Serialize;

use super::client_auth::ClientCredentials;
use super::error::OAuthError;
use super::form::FormParams;
use crate::did::proof;
use crate::oauth::OAuth;
use crate::storage::OrgRecord;

#[derive(Debug, Serialize)]
pub struct ProofResponse {
    pub proof: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

impl OAuth {
    pub async fn agent_proof(
        &self,
        org: &OrgRecord,
        client: ClientCredentials,
        form: &FormParams,
        now: i64,
    ) -> Result<ProofResponse, OAuthError> {
        let agent = self
            .clients
            .authenticate(org, client, now, "/agent-proof")
            .await?;
        let bad = |what: &'static str| OAuthError::invalid_request(what);
        let aud = form.get("aud");
        let nonce = form.get("nonce");
        if aud.is_some_and(|a| a.len() > 512) || nonce.is_some_and(|n| n.len() > 256) {
            return Err(bad("aud or nonce too long"));
        }
        let key = self.signing_key(org, agent.access_token_alg, now).await?;
        let jwt = proof::mint(
            &key,
            &org.did,
            &org.issuer,
            &agent.record.did,
            agent.client_id(),
            aud,
            nonce,
            now,
        )
        .map_err(|_| OAuthError::server_error())?;
        Ok(ProofResponse {
            proof: jwt,
            token_type: "urn:agentidp:token-type:agent-proof",
            expires_in: proof::LIFETIME_SECS,
        })
    }
}
