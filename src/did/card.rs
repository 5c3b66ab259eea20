//! Agent cards: the A2A AgentCard of an agent, with the AGNTCY/OASF record fields that map onto
//! it, signed by the organization's key as the A2A specification describes: a JWS in
//! `signatures` over the RFC 8785 (JCS) canonical form of the card without `signatures`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use std::sync::Arc;

use bytes::Bytes;
use moka::future::Cache;

use crate::admin_error::AdminError;
use crate::ephemeral::Invalidation;
use crate::jose::Header;
use crate::keys::{KeyService, LoadedKey, SigningError};
use crate::model::{Alg, Clock, rfc3339};
use crate::storage::OrgRecord;
use crate::tenancy::access::{Action, Principal};
use crate::tenancy::{Agent, Directory, agents};

/// A2A protocol version the card follows.
pub const A2A_PROTOCOL_VERSION: &str = "0.3.0";

/// Card metadata an operator sets (`PUT /api/v1/orgs/{org}/agents/{id}/card`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardMeta {
    /// The agent's own version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The agent's A2A service endpoint (the card's `url`; the card has none until it is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
    #[serde(default)]
    pub skills: Vec<Skill>,
    /// A2A AgentCapabilities: `streaming`, `pushNotifications`, `stateTransitionHistory`.
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_input_modes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_output_modes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capabilities {
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub push_notifications: bool,
    #[serde(default)]
    pub state_transition_history: bool,
}

/// A2A AgentSkill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Skill {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

fn short(field: &'static str, s: &str, max: usize) -> Result<(), AdminError> {
    if s.is_empty()
        || s.chars().count() > max
        || s.chars()
            .any(|c| c.is_control() || crate::tenancy::orgs::is_bidi_control(c))
    {
        return Err(AdminError::field(
            field,
            format!("must be 1 to {max} printable characters"),
        ));
    }
    Ok(())
}

fn http_url(field: &'static str, s: &str) -> Result<(), AdminError> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(()),
        _ => Err(AdminError::field(field, "must be an absolute http(s) URL")),
    }
}

impl CardMeta {
    pub fn validate(&self) -> Result<(), AdminError> {
        if let Some(v) = &self.version {
            short("version", v, 64)?;
        }
        if let Some(u) = &self.url {
            http_url("url", u)?;
        }
        if let Some(u) = &self.documentation_url {
            http_url("documentation_url", u)?;
        }
        if self.skills.len() > 100 {
            return Err(AdminError::field("skills", "at most 100 skills"));
        }
        for s in &self.skills {
            short("skills", &s.id, 128)?;
            short("skills", &s.name, 200)?;
            agents::validate_text("skills", &s.description, 2000)?;
            for t in s.tags.iter().chain(&s.examples) {
                agents::validate_text("skills", t, 2000)?;
            }
            if s.description.chars().count() > 2000 || s.tags.len() > 50 || s.examples.len() > 50 {
                return Err(AdminError::field(
                    "skills",
                    "description at most 2000 characters, at most 50 tags and 50 examples",
                ));
            }
        }
        let mut ids: Vec<&str> = self.skills.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(AdminError::field("skills", "skill ids must be unique"));
        }
        for m in self
            .default_input_modes
            .iter()
            .chain(&self.default_output_modes)
        {
            short("default_input_modes", m, 128)?;
        }
        Ok(())
    }
}

/// The unsigned card.
pub fn card(org: &OrgRecord, agent: &Agent, meta: &CardMeta) -> Value {
    let r = &agent.record;
    let card_url = format!("{}/agents/{}/card", org.issuer, r.id);
    let token_url = format!("{}/oauth2/token", org.issuer);
    let scopes: serde_json::Map<String, Value> = agent
        .scopes
        .iter()
        .map(|s| (s.clone(), Value::String(String::new())))
        .collect();
    let modes = |m: &Vec<String>| {
        if m.is_empty() {
            json!(["application/json"])
        } else {
            json!(m)
        }
    };
    let mut card = json!({
        "protocolVersion": A2A_PROTOCOL_VERSION,
        "name": r.name,
        "description": r.description.clone().unwrap_or_default(),
        "version": meta.version.clone().unwrap_or_else(|| "1.0.0".into()),
        "provider": {"organization": org.name, "url": org.issuer},
        "capabilities": meta.capabilities,
        "securitySchemes": {
            "agentidp": {
                "type": "oauth2",
                "description": "OAuth 2.0 client credentials at the agent's issuer",
                "oauth2MetadataUrl": format!("{}/.well-known/openid-configuration", org.issuer),
                "flows": {"clientCredentials": {"tokenUrl": token_url, "scopes": scopes}},
            }
        },
        "security": [{"agentidp": agent.scopes}],
        "defaultInputModes": modes(&meta.default_input_modes),
        "defaultOutputModes": modes(&meta.default_output_modes),
        "skills": meta.skills,
        "supportsAuthenticatedExtendedCard": false,
        // AGNTCY / OASF record fields that map onto the card.
        "did": r.did,
        "authors": [org.name],
        "created_at": rfc3339(r.created_at),
        "locators": [{"type": "agent-card", "url": card_url}],
    });
    // A2A `url` is the agent's own service endpoint, where clients talk to it; agentidp knows
    // it only when the operator sets it. The card's own URL is no endpoint (it answers GET with
    // this document), so without one the card has no `url` rather than a wrong one.
    if let Some(u) = &meta.url {
        card["url"] = json!(u);
    }
    if let Some(d) = &meta.documentation_url {
        card["documentationUrl"] = json!(d);
    }
    card
}

/// Adds `signatures: [{protected, signature}]`: a detached JWS (RFC 7515 Appendix F) whose
/// payload is the JCS form of the card without `signatures`; the protected header names the
/// key (`kid`) and where to find it (`jku` = the organization's JWKS).
pub fn sign(mut card: Value, key: &LoadedKey, jwks_uri: &str) -> Result<Value, SigningError> {
    if let Value::Object(m) = &mut card {
        m.remove("signatures");
    }
    let payload = serde_json_canonicalizer::to_vec(&card).map_err(|_| SigningError::Sign)?;
    let header = Header {
        typ: Some("JOSE"),
        kid: None,
        jku: Some(jwks_uri),
    };
    let jws = crate::jose::sign_detached(key, &header, &payload)?;
    card["signatures"] = json!([jws]);
    Ok(card)
}

/// Agent cards: their metadata (admin API) and the signed card served at
/// `{iss}/agents/{id}/card`, over what they need: the directory, the organization keys, a short
/// cache of signed cards, the clock.
pub struct Cards {
    pub directory: Arc<Directory>,
    pub keys: Arc<KeyService>,
    /// Signed cards by (org id, agent id, signing kid): a card is re-signed when the key
    /// changes, so it never outlives its key.
    pub cache: Cache<(String, String, String), Bytes>,
    pub clock: Arc<dyn Clock>,
}

/// How long a signed card is served from memory.
pub const CARD_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

impl Cards {
    pub fn new(directory: Arc<Directory>, keys: Arc<KeyService>, clock: Arc<dyn Clock>) -> Self {
        Self {
            directory,
            keys,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CARD_CACHE_TTL)
                .build(),
            clock,
        }
    }

    /// The card metadata of an agent (defaults when none was set).
    pub async fn meta(&self, org_id: &str, agent_id: &str) -> Result<CardMeta, AdminError> {
        match self.directory.agent_store().card(org_id, agent_id).await? {
            Some((json, _)) => serde_json::from_str(&json)
                .map_err(|e| AdminError::Internal(format!("stored card: {e}"))),
            None => Ok(CardMeta::default()),
        }
    }

    /// `GET .../agents/{id}/card`: the metadata of an agent the principal may read.
    pub async fn get_meta(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
    ) -> Result<CardMeta, AdminError> {
        let (org, agent) =
            agents::load(&self.directory, principal, org_slug, id, Action::Read).await?;
        self.meta(&org.id, agent.id()).await
    }

    /// Replaces the agent's card metadata (skills, capabilities, version, url, modes).
    pub async fn set_meta(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
        meta: CardMeta,
    ) -> Result<CardMeta, AdminError> {
        let (org, agent) =
            agents::load(&self.directory, principal, org_slug, id, Action::Write).await?;
        agents::ensure_not_revoked(&agent)?;
        meta.validate()?;
        let now = self.clock.now();
        let json = serde_json::to_string(&meta).map_err(|e| AdminError::Internal(e.to_string()))?;
        let ev = agents::event(
            &agent.record,
            "agent.card_updated",
            json!({"skills": meta.skills.len()}),
            now,
        );
        self.directory
            .agent_store()
            .set_card(&org.id, agent.id(), &json, now, &ev)
            .await?;
        self.directory
            .invalidate(Invalidation::Agent {
                org_id: org.id.to_string(),
                agent_id: agent.id().to_owned(),
            })
            .await;
        self.cache.invalidate_all();
        Ok(meta)
    }

    /// The signed card of `agent_id` as served (JSON bytes), signed with the organization's
    /// active ES256 key; `None` for an unknown, revoked or expired agent (checked before the
    /// cache: a cached card never outlives the agent's expiry).
    pub async fn signed(
        &self,
        org: &OrgRecord,
        agent_id: &str,
        now: i64,
    ) -> Result<Option<Bytes>, AdminError> {
        let agent = match self.directory.agent(&org.id, agent_id).await? {
            Some(a) if !a.is_deactivated(now) && a.kind == crate::model::ClientKind::Agent => a,
            _ => return Ok(None),
        };
        let keys = self.keys.org_keys(org, now).await?;
        let key = keys
            .signing_key(Alg::ES256, now)
            .cloned()
            .ok_or_else(|| AdminError::Internal("no active ES256 key".into()))?;
        let cache_key = (org.id.to_string(), agent.id().to_owned(), key.kid.clone());
        let rendered = self
            .cache
            .try_get_with(cache_key, async {
                let meta = self.meta(&org.id, agent.id()).await?;
                let signed = sign(
                    card(org, &agent, &meta),
                    &key,
                    &format!("{}/jwks.json", org.issuer),
                )
                .map_err(|e| AdminError::Internal(e.to_string()))?;
                let bytes =
                    serde_json::to_vec(&signed).map_err(|e| AdminError::Internal(e.to_string()))?;
                Ok::<_, AdminError>(Bytes::from(bytes))
            })
            .await
            .map_err(|e: Arc<AdminError>| AdminError::Internal(e.to_string()))?;
        Ok(Some(rendered))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jcs_matches_rfc8785_vectors() {
        // RFC 8785 §3.2.2 (input) and §3.2.3 (output).
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let expected = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(serde_json_canonicalizer::pipe(input).unwrap(), expected);
        // RFC 8785 §3.2.3 sorting example: keys ordered by UTF-16 code units.
        let sorting = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let out = serde_json_canonicalizer::pipe(sorting).unwrap();
        let order: Vec<&str> = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small",
            "Euro Sign",
            "Emoji",
            "Hebrew",
        ]
        .to_vec();
        let positions: Vec<usize> = order.iter().map(|o| out.find(o).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
    }
}
