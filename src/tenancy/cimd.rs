//! Client lookup for the authorization and token endpoints, Client ID Metadata Documents
//! included (draft-ietf-oauth-client-id-metadata-document, as the MCP authorization
//! specification 2026-07-28 uses them): a `client_id` that is an `https` URL with a path names
//! a JSON document at that URL describing the client. It is fetched through the hardened
//! fetcher (SSRF guard, at most [`MAX_DOCUMENT_BYTES`], [`FETCH_TIMEOUT`]), cached per its
//! `Cache-Control: max-age` within the bounds of [`crate::remote`] (at least 60 s, at most an
//! hour, 5 minutes without one; a byte-weighted cache; a failing endpoint's last good copy
//! serves an hour past freshness, then the lookup fails), and must:
//! - name itself: its `client_id` equals the URL exactly (no normalisation);
//! - carry `redirect_uris` that follow [`super::clients`]' rules (they bind the authorization
//!   request as a registered client's do) and grant types within `authorization_code` and
//!   `refresh_token`;
//! - authenticate with `none` (the default here) or `private_key_jwt` with `jwks_uri` or
//!   `jwks`: no secret, and no `client_secret` member, in a public document;
//! - fit the organization's policy (allowed auth methods; its scopes are narrowed to the
//!   allowed scopes).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::agents::{valid_scope_token, validate_jwks};
use super::clients::{AUTHORIZATION_CODE, MAX_URI_BYTES, REFRESH_TOKEN};
use super::policy::Policies;
use super::{Agent, AuthMethod, Directory, orgs};
use crate::admin_error::AdminError;
use crate::fetch::{FetchError, FetchPolicy};
use crate::model::{AgentId, ClientKind, Clock, is_uuid};
use crate::remote::RemoteJson;
use crate::storage::{AgentRecord, OrgRecord};

/// The largest document fetched (the draft suggests 5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// The longest a fetch of a document may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a client could not be looked up (an unknown client is `Ok(None)`, not an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The metadata document could not be fetched: refused by the SSRF guard, timed out, too
    /// large, an HTTP error status, not JSON (the [`FetchError`] says which).
    #[error("the client metadata document could not be fetched: {0}")]
    Fetch(FetchError),
    /// The document was fetched but is not a valid description of the client: `field` names the
    /// member at fault (`client_id` for one that lies about itself or a URL that cannot be a
    /// client id, `redirect_uris`, `token_endpoint_auth_method`, ...).
    #[error("the client metadata document is invalid: {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Storage failed (a stored client could not be read).
    #[error("internal error: {0}")]
    Internal(String),
}

fn invalid(field: &'static str, message: impl Into<String>) -> LookupError {
    LookupError::Invalid {
        field,
        message: message.into(),
    }
}

/// The clients of every organization as the authorization and token endpoints see them.
pub struct Clients {
    pub directory: Arc<Directory>,
    pub policies: Arc<Policies>,
    /// The fetched documents (a [`RemoteJson`] over the fetcher limited to
    /// [`MAX_DOCUMENT_BYTES`] and [`FETCH_TIMEOUT`]).
    pub documents: Arc<RemoteJson>,
    /// What the fetcher may reach: with `allow_insecure_loopback` (development and tests) an
    /// `http://` URL on a loopback host is a metadata document URL too.
    pub fetch_policy: FetchPolicy,
    pub clock: Arc<dyn Clock>,
}

impl Clients {
    /// The client `client_id` of `org`, for the authorization endpoint and the token endpoint.
    ///
    /// - A canonical UUID: the stored client (agent or app) as the directory has it (cached),
    ///   `Ok(None)` when the organization has none. Its status and expiry are the caller's to
    ///   check, as client authentication does.
    /// - An `https` URL (or, with `AGENTIDP_ALLOW_INSECURE_LOOPBACK`, an `http` URL on a
    ///   loopback host): a Client ID Metadata Document, fetched and cached as the module says,
    ///   answered as a client of kind `app` with `id` = `client_id` = the URL, no DID, no secret,
    ///   `auth_method` `none` or `private_key_jwt` (`jwks`/`jwks_uri` as the document has them),
    ///   its `redirect_uris`, `post_logout_redirect_uris` and `grant_types` (default
    ///   `authorization_code`), `name` = `client_name` (default: the host), `scopes` = the
    ///   document's `scope` within the policy's allowed scopes (none when absent), status
    ///   active, never expiring, and `unverified_host` = `Some(host)` for the consent screen.
    ///   Nothing of it is stored; every lookup validates the cached document again, against
    ///   the organization's current policy. Errors: [`LookupError::Fetch`] (could not fetch),
    ///   [`LookupError::Invalid`] (fetched, not valid: its `field` says which member; a URL
    ///   that cannot name a document at all, such as one without a path or with a fragment, is
    ///   `Invalid` with `field` `client_id`).
    /// - Anything else: `Ok(None)` (unknown).
    pub async fn lookup(
        &self,
        org: &OrgRecord,
        client_id: &str,
    ) -> Result<Option<Arc<Agent>>, LookupError> {
        if is_uuid(client_id) {
            return self
                .directory
                .agent(&org.id, client_id)
                .await
                .map_err(|e| LookupError::Internal(e.to_string()));
        }
        let https = client_id.starts_with("https://");
        let loopback_http =
            self.fetch_policy.allow_insecure_loopback && client_id.starts_with("http://");
        if !https && !loopback_http {
            return Ok(None);
        }
        let url = self.check_client_id(client_id)?;
        let entry = self
            .documents
            .get(client_id)
            .await
            .map_err(LookupError::Fetch)?;
        let policy = self
            .policies
            .get(&org.id)
            .await
            .map_err(|e| LookupError::Internal(e.to_string()))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let rec = document_client(org, client_id, &host, &entry.doc, &policy, self)?;
        let mut agent = Agent::from_record(rec);
        agent.unverified_host = Some(host);
        Ok(Some(Arc::new(agent)))
    }

    /// A URL that may name a metadata document (the draft's §3): absolute, with a host and a
    /// path other than `/`, without fragment, userinfo, query, or `.`/`..` segments, fetchable
    /// under the outbound policy.
    fn check_client_id(&self, client_id: &str) -> Result<url::Url, LookupError> {
        let bad = |m: &str| invalid("client_id", m.to_owned());
        if client_id.len() > MAX_URI_BYTES
            || client_id
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(bad("must be a URL of at most 2000 bytes without spaces"));
        }
        if client_id.contains('#') || client_id.contains('?') {
            return Err(bad("must not contain a query or a fragment"));
        }
        let url = url::Url::parse(client_id).map_err(|_| bad("must be an absolute URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain userinfo"));
        }
        // The parser resolves dot segments: the URL as written must have none.
        let written_path = client_id
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("");
        if written_path.is_empty() || written_path == "/" {
            return Err(bad("must have a path (the document's location)"));
        }
        if written_path.split('/').any(|s| {
            s == "."
                || s == ".."
                || s.eq_ignore_ascii_case("%2e")
                || s.eq_ignore_ascii_case("%2e%2e")
        }) {
            return Err(bad("must not contain . or .. path segments"));
        }
        // Refused by the SSRF guard's checks before any request: a failed fetch.
        crate::fetch::check_url(&url, &self.fetch_policy).map_err(LookupError::Fetch)?;
        Ok(url)
    }
}

/// A member that must be a list of strings, if present.
fn strings(doc: &Value, field: &'static str) -> Result<Option<Vec<String>>, LookupError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(field, "must be an array of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid(field, "must be an array of strings")),
    }
}

fn string<'a>(doc: &'a Value, field: &'static str) -> Result<Option<&'a str>, LookupError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn from_admin(e: AdminError) -> LookupError {
    match e {
        AdminError::Field { field, message } => invalid(
            match field {
                "name" => "client_name",
                f => f,
            },
            message,
        ),
        other => invalid("client_id", other.to_string()),
    }
}

/// The client a fetched document describes, checked (see the module).
fn document_client(
    org: &OrgRecord,
    client_id: &str,
    host: &str,
    doc: &Value,
    policy: &super::policy::Policy,
    clients: &Clients,
) -> Result<AgentRecord, LookupError> {
    if !doc.is_object() {
        return Err(invalid("client_id", "the document is not a JSON object"));
    }
    match string(doc, "client_id")? {
        Some(id) if id == client_id => {}
        Some(other) => {
            return Err(invalid(
                "client_id",
                format!(
                    "the document names {:?}, not the URL it was fetched from",
                    other.chars().take(100).collect::<String>()
                ),
            ));
        }
        None => {
            return Err(invalid(
                "client_id",
                "the document must name itself as client_id",
            ));
        }
    }
    for secret in ["client_secret", "client_secret_expires_at"] {
        if doc.get(secret).is_some() {
            return Err(invalid(
                "token_endpoint_auth_method",
                format!("a public document must not carry {secret}"),
            ));
        }
    }
    let method = match string(doc, "token_endpoint_auth_method")? {
        None | Some("none") => AuthMethod::None,
        Some("private_key_jwt") => AuthMethod::PrivateKeyJwt,
        Some(m) => {
            return Err(invalid(
                "token_endpoint_auth_method",
                format!(
                    "must be none or private_key_jwt (no shared secret in a public document), not {:?}",
                    m.chars().take(40).collect::<String>()
                ),
            ));
        }
    };
    if !policy.allows_auth_method(method) {
        return Err(invalid(
            "token_endpoint_auth_method",
            format!(
                "{} is not in the organization policy's allowed_auth_methods",
                method.as_str()
            ),
        ));
    }
    let name = string(doc, "client_name")?.unwrap_or(host).to_owned();
    orgs::validate_name("name", &name).map_err(from_admin)?;
    let now = clients.clock.now();
    let mut rec = AgentRecord::new(
        org.id.clone(),
        AgentId::from(client_id.to_owned()),
        String::new(),
        name.trim().to_owned(),
        method,
        now,
    );
    rec.kind = ClientKind::App;
    let jwks = doc.get("jwks").filter(|v| !v.is_null());
    let jwks_uri = string(doc, "jwks_uri")?;
    match (method, jwks, jwks_uri) {
        (AuthMethod::PrivateKeyJwt, Some(_), Some(_)) => {
            return Err(invalid("jwks", "jwks and jwks_uri must not both be given"));
        }
        (AuthMethod::PrivateKeyJwt, Some(j), None) => {
            validate_jwks(j).map_err(from_admin)?;
            rec.jwks = Some(j.clone());
        }
        (AuthMethod::PrivateKeyJwt, None, Some(u)) => {
            let parsed = url::Url::parse(u)
                .ok()
                .filter(|_| !u.chars().any(char::is_control))
                .ok_or_else(|| invalid("jwks_uri", "must be an absolute URL"))?;
            crate::fetch::check_url(&parsed, &clients.fetch_policy)
                .map_err(|e| invalid("jwks_uri", e.to_string()))?;
            rec.jwks_uri = Some(u.to_owned());
        }
        (AuthMethod::PrivateKeyJwt, None, None) => {
            return Err(invalid("jwks", "private_key_jwt needs jwks or jwks_uri"));
        }
        (_, None, None) => {}
        _ => {
            return Err(invalid(
                "token_endpoint_auth_method",
                "jwks and jwks_uri go with private_key_jwt",
            ));
        }
    }
    let grants = strings(doc, "grant_types")?.unwrap_or_else(|| vec![AUTHORIZATION_CODE.into()]);
    if let Some(bad) = grants
        .iter()
        .find(|g| *g != AUTHORIZATION_CODE && *g != REFRESH_TOKEN)
    {
        return Err(invalid(
            "grant_types",
            format!(
                "a client of a metadata document may use authorization_code and refresh_token, not {:?}",
                bad.chars().take(60).collect::<String>()
            ),
        ));
    }
    if let Some(r) = strings(doc, "response_types")?
        && r.iter().any(|t| t != "code")
    {
        return Err(invalid("response_types", "only \"code\""));
    }
    let redirect_uris = strings(doc, "redirect_uris")?
        .filter(|r| !r.is_empty())
        .ok_or_else(|| invalid("redirect_uris", "at least one redirect URI is required"))?;
    super::clients::apply(
        &mut rec,
        Some(redirect_uris),
        strings(doc, "post_logout_redirect_uris")?,
        Some(grants),
    )
    .map_err(from_admin)?;
    if let Some(scope) = string(doc, "scope")? {
        let mut scopes: Vec<String> = Vec::new();
        for t in scope.split(' ').filter(|t| !t.is_empty()) {
            if !valid_scope_token(t) {
                return Err(invalid(
                    "scope",
                    "must be space-separated scope tokens (RFC 6749 §3.3)",
                ));
            }
            if policy.allows_scope(t) && !scopes.iter().any(|s| s == t) && scopes.len() < 100 {
                scopes.push(t.to_owned());
            }
        }
        rec.scopes = scopes;
    }
    Ok(rec)
}
