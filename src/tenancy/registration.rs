//! Dynamic client registration at `{iss}/oauth2/register` (RFC 7591) and its management at the
//! `registration_client_uri` `{iss}/oauth2/register/{client_id}` (RFC 7592), without HTTP
//! types: the edge hands over the organization, the bearer token and the body.
//!
//! Who may register:
//! - the holder of an enrollment token (the RFC 7591 §3 initial access token, see
//!   [`super::enrollments`]) registers an **agent** that authenticates with its own key
//!   (`private_key_jwt` with `jwks` or `jwks_uri`; no secret is ever issued, and a request for a
//!   secret method is `invalid_client_metadata`), named by the token's prefix and its
//!   `client_name`, with the requested scopes narrowed to the token's ceiling; the use is counted
//!   in the transaction that creates the agent (two registrations cannot both take the last);
//! - without one, the organization's policy `dynamic_registration` decides: `off` (the default)
//!   refuses (403), `initial_access_token` asks for one (401), `open` lets anyone register an
//!   **app** (the MCP clients' case): public (`none`) or confidential (its secret in the answer
//!   only), with redirect URIs by [`super::clients`]' rules and grant types within
//!   `authorization_code` and `refresh_token`.
//!
//! Either way the organization's policy still applies (`max_agents`, allowed scopes and auth
//! methods). Unknown metadata members are ignored (RFC 7591 §2), bad values of known ones are
//! refused, and `software_statement` is refused with `invalid_software_statement` (not
//! implemented). The answer (RFC 7591 §3.2.1) carries the metadata as registered and an RFC 7592
//! registration access token (`aidp_r_` + the client id's 32 hex digits + `_` + 256 random bits;
//! only its keyed digest is stored) that reads, replaces and deletes the registration.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::agents::{AgentInput, Agents, Caller, Registered, valid_scope_token};
use super::clients::{self, AUTHORIZATION_CODE, JWT_BEARER, REFRESH_TOKEN, TOKEN_EXCHANGE};
use super::enrollments::{EnrollmentError, Enrollments};
use super::policy::{DynamicRegistration, Policies};
use super::{Agent, AgentStatus, AuthMethod};
use crate::admin_error::AdminError;
use crate::keys::SecretDigester;
use crate::model::{AgentId, ClientKind, Clock, Secret, is_uuid};
use crate::storage::{EnrollRefusal, EnrollmentRecord, OrgRecord};

pub const REGISTRATION_TOKEN_PREFIX: &str = "aidp_r_";
/// The grant types an enrolled agent may be registered with.
const AGENT_GRANTS: [&str; 3] = [clients::CLIENT_CREDENTIALS, JWT_BEARER, TOKEN_EXCHANGE];
/// Scope tokens a registration may ask for at most.
const MAX_SCOPES: usize = 100;

/// Why a registration or a management call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// A bad initial or registration access token (RFC 6750 §3.1 `invalid_token`, 401).
    #[error("{0}")]
    InvalidToken(String),
    /// No token where the organization asks for one (401, a `Bearer` challenge without error).
    #[error("{0}")]
    TokenRequired(String),
    /// The organization does not allow registration without a token (403).
    #[error(
        "dynamic client registration is off for this organization; ask an admin for an enrollment token"
    )]
    Disabled,
    /// RFC 7591 §3.2.2 `invalid_redirect_uri` (400).
    #[error("{0}")]
    InvalidRedirectUri(String),
    /// RFC 7591 §3.2.2 `invalid_client_metadata` (400).
    #[error("{0}")]
    InvalidClientMetadata(String),
    /// RFC 7591 §3.2.2 `invalid_software_statement` (400).
    #[error("{0}")]
    InvalidSoftwareStatement(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RegistrationError {
    /// The RFC 7591 §3.2.2 / RFC 6750 §3.1 error code.
    pub fn code(&self) -> &'static str {
        match self {
            RegistrationError::InvalidToken(_) | RegistrationError::TokenRequired(_) => {
                "invalid_token"
            }
            RegistrationError::Disabled => "access_denied",
            RegistrationError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            RegistrationError::InvalidClientMetadata(_) => "invalid_client_metadata",
            RegistrationError::InvalidSoftwareStatement(_) => "invalid_software_statement",
            RegistrationError::Internal(_) => "server_error",
        }
    }
}

fn metadata_err(m: impl Into<String>) -> RegistrationError {
    RegistrationError::InvalidClientMetadata(m.into())
}

/// A client's own admin-side error, in RFC 7591 terms (field names as the RFC spells them).
fn from_admin(e: AdminError) -> RegistrationError {
    match e {
        AdminError::Field { field, message } => {
            let field = match field {
                "name" => "client_name",
                "scopes" => "scope",
                f => f,
            };
            if field == "redirect_uris" || field == "post_logout_redirect_uris" {
                RegistrationError::InvalidRedirectUri(format!("{field}: {message}"))
            } else {
                metadata_err(format!("{field}: {message}"))
            }
        }
        AdminError::Policy(m) | AdminError::Conflict(m) => metadata_err(m),
        AdminError::NotFound => RegistrationError::InvalidToken("no such client".into()),
        other => RegistrationError::Internal(other.to_string()),
    }
}

/// The client metadata members this server reads (RFC 7591 §2, OIDC RP-Initiated Logout's
/// `post_logout_redirect_uris`, and RFC 7592 §2.2's members of an update). Others are ignored.
#[derive(Debug, Default, Deserialize)]
struct Metadata {
    redirect_uris: Option<Vec<String>>,
    post_logout_redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    scope: Option<String>,
    jwks: Option<Value>,
    jwks_uri: Option<String>,
    software_statement: Option<Value>,
    client_id: Option<String>,
    client_secret: Option<String>,
    registration_access_token: Option<Value>,
    registration_client_uri: Option<Value>,
    client_id_issued_at: Option<Value>,
    client_secret_expires_at: Option<Value>,
}

/// Does any string of `v` (member names included) hold NUL (which no stored text may)?
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Parses a registration body: a JSON object (not too complex, no NUL, no repeated member of
/// the ones read), each member read of its RFC 7591 type.
fn parse(body: &[u8]) -> Result<Metadata, RegistrationError> {
    crate::fetch::check_json_complexity(body)
        .map_err(|_| metadata_err("the body is too deeply nested or has too many values"))?;
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| metadata_err(format!("the body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(metadata_err("the body must be a JSON object"));
    }
    if has_nul(&v) {
        return Err(metadata_err("the body must not contain NUL characters"));
    }
    let md: Metadata = serde_json::from_slice(body).map_err(|e| metadata_err(e.to_string()))?;
    if md.software_statement.is_some() {
        return Err(RegistrationError::InvalidSoftwareStatement(
            "software statements are not supported".into(),
        ));
    }
    Ok(md)
}

/// The space-separated `scope` as tokens (RFC 6749 §3.3), without repeats.
fn scope_tokens(scope: &str) -> Result<Vec<String>, RegistrationError> {
    let mut out: Vec<String> = Vec::new();
    for t in scope.split(' ').filter(|t| !t.is_empty()) {
        if !valid_scope_token(t) {
            return Err(metadata_err(format!(
                "scope: {:?} is not a valid scope token (RFC 6749 §3.3)",
                t.chars().take(40).collect::<String>()
            )));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    if out.len() > MAX_SCOPES {
        return Err(metadata_err(format!("scope: at most {MAX_SCOPES} scopes")));
    }
    Ok(out)
}

/// The registration use cases.
pub struct Registrations {
    /// Agents (kind agent), for enrolled agents.
    pub agents: Agents,
    /// Apps (kind app), for open registration.
    pub apps: Agents,
    pub enrollments: Enrollments,
    pub policies: Arc<Policies>,
    pub digester: Arc<SecretDigester>,
    pub clock: Arc<dyn Clock>,
}

/// What a management call holds: the client and the token it came with.
struct Authenticated<'a> {
    agent: Agent,
    token: &'a str,
}

impl Registrations {
    fn kind(&self, kind: ClientKind) -> &Agents {
        match kind {
            ClientKind::Agent => &self.agents,
            ClientKind::App => &self.apps,
        }
    }

    /// RFC 7591 §3.1: registers a client in `org`. `initial_token` is the request's bearer
    /// token, if any. Answers the client information response (RFC 7591 §3.2.1, 201).
    pub async fn register(
        &self,
        org: &OrgRecord,
        initial_token: Option<&str>,
        body: &[u8],
    ) -> Result<Value, RegistrationError> {
        let enrollment = match initial_token {
            Some(t) => Some(self.enrollments.open(org, t).await.map_err(token_refused)?),
            None => None,
        };
        if enrollment.is_none() {
            let policy = self
                .policies
                .get(&org.id)
                .await
                .map_err(|e| RegistrationError::Internal(e.to_string()))?;
            match policy.dynamic_registration {
                DynamicRegistration::Off => return Err(RegistrationError::Disabled),
                DynamicRegistration::InitialAccessToken => {
                    return Err(RegistrationError::TokenRequired(
                        "this organization registers clients only with an initial access token (an enrollment token)".into(),
                    ));
                }
                DynamicRegistration::Open => {}
            }
        }
        let md = parse(body)?;
        if md.client_id.is_some() || md.client_secret.is_some() {
            return Err(metadata_err(
                "client_id and client_secret are issued by the server, not registered",
            ));
        }
        let now_ms = self.clock.now_ms();
        let id = AgentId::generate(now_ms);
        let token = crate::tenancy::principals::new_token(
            REGISTRATION_TOKEN_PREFIX,
            &id.as_str().replace('-', ""),
        );
        let extra = |enrollment_id| Registered {
            enrollment_id,
            registration: Some((
                self.digester.digest(token.expose()),
                self.digester.version(),
            )),
        };
        let (kind, input, extra) = match &enrollment {
            Some(e) => (
                ClientKind::Agent,
                self.agent_input(e, id.as_str(), md)?,
                extra(Some(e.id.clone())),
            ),
            None => (ClientKind::App, self.app_input(org, md).await?, extra(None)),
        };
        let created = self
            .kind(kind)
            .create_in(org, id, input, extra)
            .await
            .map_err(from_admin)?;
        let (agent, secret) = created.map_err(|r| {
            token_refused(match r {
                EnrollRefusal::Revoked => EnrollmentError::Revoked,
                EnrollRefusal::Expired => EnrollmentError::Expired,
                EnrollRefusal::Exhausted => EnrollmentError::Exhausted,
                EnrollRefusal::Unknown | EnrollRefusal::MaxAgents => EnrollmentError::Unknown,
            })
        })?;
        Ok(client_info(org, &agent, secret.as_ref(), token.expose()))
    }

    /// The input of an enrolled agent: its key, its name (the token's prefix and its
    /// `client_name`), the requested scopes within the token's ceiling (all of it when none are
    /// requested), agent grants only.
    fn agent_input(
        &self,
        e: &EnrollmentRecord,
        id: &str,
        md: Metadata,
    ) -> Result<AgentInput, RegistrationError> {
        match md.token_endpoint_auth_method.as_deref() {
            None | Some("private_key_jwt") => {}
            Some(m) => {
                return Err(metadata_err(format!(
                    "token_endpoint_auth_method: an enrolled agent authenticates with its own key (private_key_jwt), not {:?}; no secret is issued",
                    m.chars().take(40).collect::<String>()
                )));
            }
        }
        if md.jwks.is_none() && md.jwks_uri.is_none() {
            return Err(metadata_err(
                "jwks or jwks_uri is required: an enrolled agent registers its own public key",
            ));
        }
        if md.jwks.is_some() && md.jwks_uri.is_some() {
            return Err(metadata_err(
                "jwks and jwks_uri must not both be given (RFC 7591 §2)",
            ));
        }
        if md.redirect_uris.as_ref().is_some_and(|r| !r.is_empty())
            || md
                .post_logout_redirect_uris
                .as_ref()
                .is_some_and(|r| !r.is_empty())
            || md.response_types.as_ref().is_some_and(|r| !r.is_empty())
        {
            return Err(metadata_err(
                "an enrolled agent uses the agent grants: no redirect URIs or response types",
            ));
        }
        let grants = match md.grant_types {
            None => Vec::new(),
            Some(g) => {
                if let Some(bad) = g.iter().find(|g| !AGENT_GRANTS.contains(&g.as_str())) {
                    return Err(metadata_err(format!(
                        "grant_types: an enrolled agent may use {}, not {:?}",
                        AGENT_GRANTS.join(", "),
                        bad.chars().take(60).collect::<String>()
                    )));
                }
                g
            }
        };
        let scopes = match md.scope.as_deref() {
            None => e.scopes.clone(),
            Some(s) => scope_tokens(s)?
                .into_iter()
                .filter(|s| e.scopes.contains(s))
                .collect(),
        };
        let given = md.client_name.unwrap_or_else(|| {
            let simple = id.replace('-', "");
            format!("agent-{}", &simple[simple.len().saturating_sub(12)..])
        });
        Ok(AgentInput {
            name: Some(format!("{}{given}", e.name)),
            scopes: Some(scopes),
            token_endpoint_auth_method: Some(AuthMethod::PrivateKeyJwt.as_str().to_owned()),
            jwks: md.jwks,
            jwks_uri: md.jwks_uri,
            grant_types: Some(grants),
            redirect_uris: Some(Vec::new()),
            post_logout_redirect_uris: Some(Vec::new()),
            ..AgentInput::default()
        })
    }

    /// The input of an openly registered app: RFC 7591 §2's defaults (`client_secret_basic`,
    /// `authorization_code`), grants within the code flow's, the requested scopes (`openid`
    /// when none) within the organization's allowed scopes.
    async fn app_input(
        &self,
        org: &OrgRecord,
        md: Metadata,
    ) -> Result<AgentInput, RegistrationError> {
        let grants = md
            .grant_types
            .unwrap_or_else(|| vec![AUTHORIZATION_CODE.to_owned()]);
        if let Some(bad) = grants
            .iter()
            .find(|g| *g != AUTHORIZATION_CODE && *g != REFRESH_TOKEN)
        {
            return Err(metadata_err(format!(
                "grant_types: a registered app may use authorization_code and refresh_token, not {:?}",
                bad.chars().take(60).collect::<String>()
            )));
        }
        check_response_types(md.response_types.as_deref(), &grants)?;
        if md.jwks.is_some() && md.jwks_uri.is_some() {
            return Err(metadata_err(
                "jwks and jwks_uri must not both be given (RFC 7591 §2)",
            ));
        }
        let policy = self
            .policies
            .get(&org.id)
            .await
            .map_err(|e| RegistrationError::Internal(e.to_string()))?;
        let requested = match md.scope.as_deref() {
            None => vec!["openid".to_owned()],
            Some(s) => scope_tokens(s)?,
        };
        let scopes = requested
            .into_iter()
            .filter(|s| policy.allows_scope(s))
            .collect();
        let method = md.token_endpoint_auth_method.unwrap_or_else(|| {
            if md.jwks.is_some() || md.jwks_uri.is_some() {
                AuthMethod::PrivateKeyJwt.as_str().to_owned()
            } else {
                AuthMethod::ClientSecretBasic.as_str().to_owned()
            }
        });
        Ok(AgentInput {
            name: Some(md.client_name.unwrap_or_else(|| "client".to_owned())),
            scopes: Some(scopes),
            token_endpoint_auth_method: Some(method),
            jwks: md.jwks,
            jwks_uri: md.jwks_uri,
            grant_types: Some(grants),
            redirect_uris: Some(md.redirect_uris.unwrap_or_default()),
            post_logout_redirect_uris: Some(md.post_logout_redirect_uris.unwrap_or_default()),
            ..AgentInput::default()
        })
    }

    /// The client `client_id` of `org` whose registration access token `token` is (RFC 7592
    /// §2: every other case, a client that does not exist included, is `invalid_token`).
    async fn authenticate<'a>(
        &self,
        org: &OrgRecord,
        client_id: &str,
        token: Option<&'a str>,
    ) -> Result<Authenticated<'a>, RegistrationError> {
        let bad = || RegistrationError::InvalidToken("invalid registration access token".into());
        let token = token.ok_or_else(|| {
            RegistrationError::TokenRequired(
                "the registration access token is required (Authorization: Bearer)".into(),
            )
        })?;
        let id = crate::tenancy::principals::token_id(token, REGISTRATION_TOKEN_PREFIX)
            .ok_or_else(bad)?;
        if !is_uuid(client_id) || client_id.replace('-', "") != id {
            return Err(bad());
        }
        let rec = self
            .agents
            .directory
            .agent_store()
            .get(&org.id, client_id)
            .await
            .map_err(|e| RegistrationError::Internal(e.to_string()))?
            .ok_or_else(bad)?;
        let (Some(digest), Some(version)) =
            (&rec.registration_digest, rec.registration_digest_version)
        else {
            return Err(bad());
        };
        if !self.digester.verify(token, version, digest) || rec.status == AgentStatus::Revoked {
            return Err(bad());
        }
        Ok(Authenticated {
            agent: Agent::from_record(rec),
            token,
        })
    }

    /// RFC 7592 §2.1: the registration as it is now.
    pub async fn read(
        &self,
        org: &OrgRecord,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<Value, RegistrationError> {
        let a = self.authenticate(org, client_id, token).await?;
        Ok(client_info(org, &a.agent, None, a.token))
    }

    /// RFC 7592 §2.2: replaces the registration's metadata with `body` (omitted members are
    /// emptied or take their defaults); the client id, its key class and its kind stay.
    pub async fn update(
        &self,
        org: &OrgRecord,
        client_id: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<Value, RegistrationError> {
        let a = self.authenticate(org, client_id, token).await?;
        let mut md = parse(body)?;
        if md.client_id.as_deref() != Some(client_id) {
            return Err(metadata_err(
                "client_id must be given and be this client's (RFC 7592 §2.2)",
            ));
        }
        if md.registration_access_token.is_some()
            || md.registration_client_uri.is_some()
            || md.client_id_issued_at.is_some()
            || md.client_secret_expires_at.is_some()
        {
            return Err(metadata_err(
                "registration_access_token, registration_client_uri, client_id_issued_at and client_secret_expires_at must not be sent (RFC 7592 §2.2)",
            ));
        }
        if let Some(s) = md.client_secret.take() {
            let r = &a.agent.record;
            let ok = match (&r.secret_digest, r.secret_digest_version) {
                (Some(d), Some(v)) => self.digester.verify(&s, v, d),
                _ => false,
            };
            if !ok {
                return Err(metadata_err(
                    "client_secret does not match the client's (RFC 7592 §2.2)",
                ));
            }
        }
        md.client_id = None;
        let input = match a.agent.kind {
            ClientKind::Agent => {
                let enrollment = match &a.agent.enrollment_id {
                    Some(e) => self
                        .enrollments
                        .store
                        .enrollment(&org.id, e)
                        .await
                        .map_err(|e| RegistrationError::Internal(e.to_string()))?,
                    None => None,
                };
                let e = enrollment.ok_or_else(|| {
                    RegistrationError::Internal("an enrolled agent without its token".into())
                })?;
                self.agent_input(&e, a.agent.id(), md)?
            }
            ClientKind::App => self.app_input(org, md).await?,
        };
        let fields = [
            "name",
            "scopes",
            "token_endpoint_auth_method",
            "jwks",
            "jwks_uri",
            "grant_types",
            "redirect_uris",
            "post_logout_redirect_uris",
        ];
        let updated = self
            .kind(a.agent.kind)
            .update_as(
                org,
                Caller::Registered(org),
                client_id,
                input,
                &fields,
                None,
            )
            .await
            .map_err(from_admin)?;
        Ok(client_info(org, &updated, None, a.token))
    }

    /// RFC 7592 §2.3: deletes the client (its tokens stop working, as an admin's delete).
    pub async fn delete(
        &self,
        org: &OrgRecord,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<(), RegistrationError> {
        let a = self.authenticate(org, client_id, token).await?;
        self.kind(a.agent.kind)
            .delete_as(Caller::Registered(org), client_id)
            .await
            .map_err(from_admin)
    }
}

/// RFC 7591 §2.1: `response_types` must agree with `grant_types` (`code` with
/// `authorization_code`; this server has no implicit flow).
fn check_response_types(
    given: Option<&[String]>,
    grants: &[String],
) -> Result<(), RegistrationError> {
    let code = grants.iter().any(|g| g == AUTHORIZATION_CODE);
    match given {
        None => Ok(()),
        Some(r) if r.iter().all(|t| t == "code") && (r.is_empty() != code) => Ok(()),
        Some(_) => Err(metadata_err(
            "response_types: only \"code\", and only with the authorization_code grant (RFC 7591 §2.1)",
        )),
    }
}

fn token_refused(e: EnrollmentError) -> RegistrationError {
    match e {
        EnrollmentError::Internal(m) => RegistrationError::Internal(m),
        other => RegistrationError::InvalidToken(other.to_string()),
    }
}

/// The client information response (RFC 7591 §3.2.1, RFC 7592 §3): the identifiers, the
/// registration access token and URI, and the metadata as registered.
pub fn client_info(
    org: &OrgRecord,
    agent: &Agent,
    secret: Option<&Secret>,
    registration_token: &str,
) -> Value {
    let r = &agent.record;
    let grants: Vec<&str> = clients::GRANT_TYPES
        .into_iter()
        .filter(|g| clients::allows_grant(r, g))
        .collect();
    let code = grants.contains(&AUTHORIZATION_CODE);
    let mut m = Map::new();
    m.insert("client_id".into(), json!(r.id.as_str()));
    if let Some(s) = secret {
        m.insert("client_secret".into(), json!(s.expose()));
    }
    m.insert("client_id_issued_at".into(), json!(r.created_at));
    if r.auth_method.uses_secret() {
        // The secret does not expire by itself (RFC 7591 §3.2.1: 0); a policy's
        // `max_secret_age_secs` may still end it.
        m.insert("client_secret_expires_at".into(), json!(0));
    }
    m.insert(
        "registration_access_token".into(),
        json!(registration_token),
    );
    m.insert(
        "registration_client_uri".into(),
        json!(format!(
            "{}/oauth2/register/{}",
            org.issuer.trim_end_matches('/'),
            r.id
        )),
    );
    m.insert("client_name".into(), json!(r.name));
    m.insert(
        "token_endpoint_auth_method".into(),
        json!(r.auth_method.as_str()),
    );
    m.insert("grant_types".into(), json!(grants));
    m.insert(
        "response_types".into(),
        json!(if code { vec!["code"] } else { vec![] }),
    );
    m.insert("scope".into(), json!(r.scopes.join(" ")));
    m.insert("redirect_uris".into(), json!(r.redirect_uris));
    if !r.post_logout_redirect_uris.is_empty() {
        m.insert(
            "post_logout_redirect_uris".into(),
            json!(r.post_logout_redirect_uris),
        );
    }
    if let Some(j) = &r.jwks {
        m.insert("jwks".into(), j.clone());
    }
    if let Some(u) = &r.jwks_uri {
        m.insert("jwks_uri".into(), json!(u));
    }
    if r.kind == ClientKind::Agent {
        m.insert("did".into(), json!(r.did));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_objects_with_typed_members() {
        assert!(parse(br#"{"client_name": "x", "unknown": {"a": [1]}}"#).is_ok());
        for bad in [
            &b"[]"[..],
            b"\"x\"",
            b"{",
            b"",
            br#"{"redirect_uris": "https://a.example/cb"}"#,
            br#"{"client_name": 5}"#,
            br#"{"client_name": "a", "client_name": "b"}"#,
            br#"{"client_name": "a\u0000b"}"#,
            br#"{"x\u0000": 1}"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_client_metadata", "{bad:?}");
        }
        assert_eq!(
            parse(br#"{"software_statement": "eyJ..."}"#)
                .unwrap_err()
                .code(),
            "invalid_software_statement"
        );
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let body = format!("{{\"x\": {deep}}}");
        assert!(parse(body.as_bytes()).is_err());
    }

    #[test]
    fn scopes_and_response_types() {
        assert_eq!(scope_tokens("a  b a").unwrap(), ["a", "b"]);
        assert!(scope_tokens("a \"b").is_err());
        let code = [AUTHORIZATION_CODE.to_owned()];
        assert!(check_response_types(None, &code).is_ok());
        assert!(check_response_types(Some(&["code".into()]), &code).is_ok());
        assert!(check_response_types(Some(&["token".into()]), &code).is_err());
        assert!(check_response_types(Some(&[]), &code).is_err());
        assert!(check_response_types(Some(&["code".into()]), &[]).is_err());
    }
}
