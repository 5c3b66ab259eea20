//! Agent cards: the A2A AgentCard of an agent, with the AGNTCY/OASF record fields that map onto
//! it, signed by the organization's key as the A2A specification describes: a JWS in
//! `signatures` over the RFC 8785 (JCS) canonical form of the card without `signatures`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin_error::AdminError;
use crate::jose::Header;
use crate::keys::{LoadedKey, SigningError};
use crate::model::rfc3339;
use crate::storage::OrgRecord;
use crate::tenancy::Agent;

/// A2A protocol version the card follows.
pub const A2A_PROTOCOL_VERSION: &str = "0.3.0";

/// Card metadata an operator sets (`PUT /api/v1/orgs/{org}/agents/{id}/card`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardMeta {
    /// The agent's own version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The agent's A2A service endpoint.
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
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
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
        "url": meta.url.clone().unwrap_or_else(|| card_url.clone()),
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
