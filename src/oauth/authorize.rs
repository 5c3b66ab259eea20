//! The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2): the request is checked, then
//! the person's session and consent decide whether to sign in, ask for consent, or answer a code.
//!
//! - Until the client and its redirect URI are established, nothing is redirected (§4.1.2.1: an
//!   unknown client, a missing or unregistered redirect URI is shown to the person, never sent
//!   to the URI). The redirect URI must equal a registered one exactly (RFC 9700 §4.1.3; the
//!   port of a loopback URI may vary, RFC 8252 §7.3).
//! - Every other error is redirected with `error`, `state` and `iss` (RFC 9207 §2).
//! - PKCE with `S256` is required of every client (RFC 9700 §2.1.1); `plain`, or no method
//!   (RFC 7636 §4.3 would default to `plain`), is `invalid_request`.
//! - Scopes: the client's registered scopes plus the OpenID Connect ones (`openid`, `profile`,
//!   `email`, and `offline_access` for a client registered for refresh tokens).
//! - `prompt` (`none`, `login`, `consent`, `select_account`), `max_age`, `login_hint`, `nonce`
//!   (OIDC Core §3.1.2.1). `request` and `request_uri` are not supported (§6: their errors).
//! - A code is `aidp_c_<id>_<secret>`, single use, at most [`CODE_TTL_SECS`] old, bound to the
//!   client, the redirect URI as sent, the PKCE challenge, the session and the scopes.

use std::sync::Arc;

use crate::model::AuthMethod;
use crate::oauth::OAuth;
use crate::oauth::form::FormParams;
use crate::people::sessions::Session;
use crate::storage::{CodeRecord, ConsentRecord, OrgRecord};
use crate::tenancy::Agent;
use crate::tenancy::agents::valid_scope_token;
use crate::tenancy::clients::{self, AUTHORIZATION_CODE, REFRESH_TOKEN};

/// How long a code may be redeemed (RFC 6749 §4.1.2 recommends at most 10 minutes; the issue
/// says 60 s).
pub const CODE_TTL_SECS: i64 = 60;
pub const CODE_PREFIX: &str = "aidp_c_";

/// The OpenID Connect scopes every code-flow client may ask for (`offline_access` only with
/// the refresh-token grant).
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// The scope of an access token for the admin API (`resource` = `{public_url}/api/v1`): the
/// person's role there. Only apps registered with it may ask for it.
pub const ADMIN_API_SCOPE: &str = "admin_api";

/// Where the failure of an authorization request is told.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthzError {
    /// To the person, on a page: the client or its redirect URI cannot be trusted.
    Page(String),
    /// To the client, at its redirect URI.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: Arc<Agent>,
    /// The redirect URI as sent, or the only registered one when none was sent.
    pub redirect_uri: String,
    /// Whether the request carried `redirect_uri` (then the token request must repeat it).
    pub redirect_uri_sent: bool,
    pub state: Option<String>,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub prompt_consent: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub resource: Vec<String>,
    /// Whether errors may be redirected to the client (not for an unverified client).
    pub redirect_errors: bool,
}

/// What the endpoint does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Show the sign-in page (no session, `prompt=login`, `max_age` passed, or a sensitive
    /// consent after an old sign-in).
    Login,
    /// Ask the person to consent to these scopes (those not consented to before).
    Consent { new_scopes: Vec<String> },
    /// Redirect here (a code, or an error the client must hear).
    Redirect(String),
}

/// `uri` with `params` added to its query (RFC 6749 §4.1.2: keeping the query it has).
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        // A registered URI always parses; never reached.
        Err(_) => uri.to_owned(),
    }
}

impl AuthzError {
    /// The redirect of an error answer (with `iss`, RFC 9207 §2), or `None` for a page.
    pub fn location(&self, issuer: &str) -> Option<String> {
        match self {
            AuthzError::Page(_) => None,
            AuthzError::Redirect {
                redirect_uri,
                error,
                description,
                state,
            } => {
                let mut p: Vec<(&str, &str)> =
                    vec![("error", error), ("error_description", description)];
                if let Some(s) = state {
                    p.push(("state", s));
                }
                p.push(("iss", issuer));
                Some(with_query(redirect_uri, &p))
            }
        }
    }
}

fn bounded<'a>(form: &'a FormParams, name: &str, max: usize) -> Result<Option<&'a str>, String> {
    match form.get(name) {
        Some(v) if v.len() > max => Err(format!("{name} is longer than {max} bytes")),
        Some(v) if v.chars().any(char::is_control) => {
            Err(format!("{name} must not contain control characters"))
        }
        other => Ok(other),
    }
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters (a challenge has the same shape).
pub fn pkce_shaped(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use base64::prelude::*;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let computed = BASE64_URL_SAFE_NO_PAD.encode(d.as_ref());
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes())
        .is_ok()
}

impl OAuth {
    /// Checks an authorization request (its query, or the consent form's echo of it).
    pub async fn authorization_request(
        &self,
        org: &OrgRecord,
        form: &FormParams,
    ) -> Result<AuthorizeRequest, AuthzError> {
        let page = |m: &str| AuthzError::Page(m.to_owned());
        // 1. The client and the redirect URI: until both hold, nothing is redirected.
        let client_id = form
            .get("client_id")
            .ok_or_else(|| page("The request names no client (client_id is missing)."))?;
        let client = match self.clients.lookup(org, client_id).await {
            Ok(c) => c,
            Err(crate::tenancy::cimd::LookupError::Internal(_)) => {
                return Err(page("The server could not look up the client; try again."));
            }
            // A Client ID Metadata Document that cannot be used (RFC 6749 §4.1.2.1: not
            // redirected, its redirect URIs are not to be trusted).
            Err(e) => {
                return Err(AuthzError::Page(format!(
                    "The client's metadata document cannot be used: {e}"
                )));
            }
        }
        .filter(|c| clients::allows_grant(&c.record, AUTHORIZATION_CODE))
        .ok_or_else(|| page("The client is unknown or not registered for sign-in."))?;
        let sent = bounded(form, "redirect_uri", clients::MAX_URI_BYTES).map_err(|m| page(&m))?;
        let redirect_uri = match sent {
            Some(r) => clients::find_redirect(&client.record.redirect_uris, r)
                .map(|_| r.to_owned())
                .ok_or_else(|| page("The redirect URI is not registered for this client."))?,
            None if client.record.redirect_uris.len() == 1 => {
                client.record.redirect_uris[0].clone()
            }
            None => {
                return Err(page(
                    "The request has no redirect_uri and the client has several.",
                ));
            }
        };
        let state = match bounded(form, "state", 2048) {
            Ok(s) => s.map(str::to_owned),
            // The state itself is bad: the error goes back without it.
            Err(m) => {
                return Err(AuthzError::Redirect {
                    redirect_uri,
                    error: "invalid_request",
                    description: m,
                    state: None,
                });
            }
        };
        let unverified_client = client.unverified_host.is_some();
        let fail = |error: &'static str, description: String| {
            if unverified_client {
                AuthzError::Page(format!("Cannot sign in: {error} ({description})."))
            } else {
                AuthzError::Redirect {
                    redirect_uri: redirect_uri.clone(),
                    error,
                    description,
                    state: state.clone(),
                }
            }
        };
        // The client must be usable now.
        if client.status != crate::tenancy::AgentStatus::Active
            || client.is_expired(self.clock.now())
        {
            return Err(fail(
                "unauthorized_client",
                "the client is not active".into(),
            ));
        }

        // 2. The rest, each error redirected.
        if form.get("request").is_some() {
            return Err(fail(
                "request_not_supported",
                "request objects are not supported".into(),
            ));
        }
        if form.get("request_uri").is_some() {
            return Err(fail(
                "request_uri_not_supported",
                "request_uri is not supported".into(),
            ));
        }
        match form.get("response_type") {
            Some("code") => {}
            None => return Err(fail("invalid_request", "response_type is missing".into())),
            Some(_) => {
                return Err(fail(
                    "unsupported_response_type",
                    "only response_type=code is supported".into(),
                ));
            }
        }
        if let Some(m) = form.get("response_mode")
            && m != "query"
        {
            return Err(fail(
                "invalid_request",
                "only response_mode=query is supported".into(),
            ));
        }
        let code_challenge = match form.get("code_challenge") {
            None => {
                return Err(fail(
                    "invalid_request",
                    "PKCE is required: send code_challenge and code_challenge_method=S256".into(),
                ));
            }
            Some(c) if !pkce_shaped(c) => {
                return Err(fail(
                    "invalid_request",
                    "code_challenge must be 43 to 128 unreserved characters".into(),
                ));
            }
            Some(c) => c.to_owned(),
        };
        if form.get("code_challenge_method") != Some("S256") {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not allowed)".into(),
            ));
        }
        let scopes = self
            .requested_scopes(&client, form.get("scope"))
            .map_err(|m| fail("invalid_scope", m))?;
        let nonce = bounded(form, "nonce", 512)
            .map_err(|m| fail("invalid_request", m))?
            .map(str::to_owned);
        let login_hint = bounded(form, "login_hint", 254)
            .map_err(|m| fail("invalid_request", m))?
            .map(str::to_owned);
        let (mut prompt_none, mut prompt_login, mut prompt_consent) = (false, false, false);
        if let Some(p) = bounded(form, "prompt", 100).map_err(|m| fail("invalid_request", m))? {
            for v in p.split(' ').filter(|v| !v.is_empty()) {
                match v {
                    "none" => prompt_none = true,
                    "login" | "select_account" => prompt_login = true,
                    "consent" => prompt_consent = true,
                    other => {
                        return Err(fail(
                            "invalid_request",
                            format!(
                                "prompt value {:?} is not supported",
                                other.chars().take(40).collect::<String>()
                            ),
                        ));
                    }
                }
            }
            // OIDC Core §3.1.2.1: none with any other value is an error.
            if prompt_none && (prompt_login || prompt_consent) {
                return Err(fail(
                    "invalid_request",
                    "prompt=none cannot be combined".into(),
                ));
            }
        }
        let max_age = match form.get("max_age") {
            None => None,
            Some(v) => Some(
                v.parse::<i64>()
                    .ok()
                    .filter(|n| (0..=10 * 365 * 86_400).contains(n))
                    .ok_or_else(|| {
                        fail(
                            "invalid_request",
                            "max_age must be a number of seconds".into(),
                        )
                    })?,
            ),
        };
        let resource = self
            .resources(org, form)
            .await
            .map_err(|m| fail("invalid_target", m))?;
        // The admin API acts with the person's whole role: only for an app registered with the
        // `admin_api` scope and asking for it (the consent screen names it), never an agent.
        let for_admin_api = resource
            .iter()
            .any(|r| r.trim_end_matches('/') == self.admin_api());
        if for_admin_api
            && (client.kind != crate::model::ClientKind::App
                || !scopes.iter().any(|s| s == ADMIN_API_SCOPE))
        {
            return Err(fail(
                "invalid_target",
                format!(
                    "tokens for the admin API need an app registered with, and asking for, the {ADMIN_API_SCOPE} scope"
                ),
            ));
        }
        // An unverified client (a metadata document anyone can publish) is not redirected to
        // with errors before the person has approved it (RFC 9700 §4.11.2: no open redirector).
        let redirect_errors = !unverified_client;
        Ok(AuthorizeRequest {
            client,
            redirect_uri_sent: sent.is_some(),
            redirect_uri,
            state,
            scopes,
            nonce,
            code_challenge,
            prompt_none,
            prompt_login,
            prompt_consent,
            max_age,
            login_hint,
            resource,
            redirect_errors,
        })
    }

    /// The scopes asked for: each one the client's, or an OpenID Connect one
    /// (`offline_access` only for a client of the refresh-token grant). None asked for: the
    /// client's scopes.
    fn requested_scopes(&self, client: &Agent, scope: Option<&str>) -> Result<Vec<String>, String> {
        let refresh = clients::allows_grant(&client.record, REFRESH_TOKEN);
        let Some(scope) = scope else {
            return Ok(client
                .scopes
                .iter()
                .filter(|s| refresh || *s != "offline_access")
                .cloned()
                .collect());
        };
        if scope.len() > 4096 {
            return Err("scope is too long".into());
        }
        let mut out: Vec<String> = Vec::new();
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            if !valid_scope_token(s) {
                return Err("malformed scope".into());
            }
            let oidc = OIDC_SCOPES.contains(&s) && (s != "offline_access" || refresh);
            if !oidc && !client.scopes.iter().any(|c| c == s) {
                return Err(format!("scope '{s}' is not allowed for this client"));
            }
            if !out.iter().any(|o| o == s) {
                out.push(s.to_owned());
            }
        }
        Ok(out)
    }

    /// RFC 8707 `resource` (§2): absolute URIs without a fragment (at most 5), each one the
    /// client may use ([`resource_allowed`]); otherwise `invalid_target`.
    pub async fn resources(
        &self,
        org: &OrgRecord,
        form: &FormParams,
    ) -> Result<Vec<String>, String> {
        let policy = self
            .clients
            .policies
            .get(&org.id)
            .await
            .map_err(|_| "the organization's policy could not be read".to_owned())?;
        let admin_api = self.admin_api();
        let mut out: Vec<String> = Vec::new();
        for r in form.all("resource") {
            // As written, no dot segments (`..` or `%2e`): a resource server that normalises
            // `aud` must read the same resource the policy allowed.
            let lower = r.to_ascii_lowercase();
            let ok = r.len() <= 512
                && !lower.contains("/.")
                && !lower.contains("%2e")
                && url::Url::parse(&r).is_ok_and(|u| u.fragment().is_none() && u.has_host());
            if !ok {
                return Err("resource must be an absolute URI without a fragment".into());
            }
            if !resource_allowed(
                &r,
                &org.issuer,
                &admin_api,
                policy.allowed_resources.as_deref(),
            ) {
                return Err(format!(
                    "tokens for the resource {} are not issued here",
                    r.chars().take(100).collect::<String>()
                ));
            }
            if !out.contains(&r) {
                out.push(r);
            }
        }
        if out.len() > 5 {
            return Err("at most 5 resources".into());
        }
        Ok(out)
    }

    /// The admin API's base URL (`{public_url}/api/v1`): the `resource` whose tokens are
    /// admin-API principals.
    pub fn admin_api(&self) -> String {
        format!("{}/api/v1", self.public_url.trim_end_matches('/'))
    }

    /// Decides what happens next for `req` in the browser holding `session`: sign in, consent,
    /// or a redirect (with a code, or `login_required` / `consent_required` under
    /// `prompt=none`).
    pub async fn next_step(
        &self,
        org: &OrgRecord,
        req: &AuthorizeRequest,
        session: Option<&Session>,
        fresh_login: bool,
        recent: bool,
    ) -> Result<Next, AuthzError> {
        let now = self.clock.now();
        let fail = |error: &'static str, description: &str| {
            if req.redirect_errors {
                AuthzError::Redirect {
                    redirect_uri: req.redirect_uri.clone(),
                    error,
                    description: description.to_owned(),
                    state: req.state.clone(),
                }
            } else {
                AuthzError::Page(format!("Cannot sign in: {error} ({description})."))
            }
        };
        let needs_login = match session {
            None => true,
            Some(s) => {
                (req.prompt_login && !fresh_login)
                    || req.max_age.is_some_and(|m| now - s.record.auth_time > m)
            }
        };
        if needs_login {
            if req.prompt_none {
                return Err(fail("login_required", "the person is not signed in"));
            }
            return Ok(Next::Login);
        }
        let Some(session) = session else {
            return Ok(Next::Login);
        };
        let consent = self
            .grants
            .consent(&org.id, &session.user.id, req.client.client_id())
            .await
            .map_err(|_| fail("server_error", "the consent could not be read"))?;
        let granted = consent.map(|c| c.scopes).unwrap_or_default();
        let new_scopes: Vec<String> = req
            .scopes
            .iter()
            .filter(|s| !granted.contains(s))
            .cloned()
            .collect();
        // An agent needs a delegation in force (revoking it revokes the consent's effect).
        let delegated = req.client.kind != crate::model::ClientKind::Agent
            || !self
                .delegations
                .delegations_in_force(&org.id, &session.user.id, req.client.client_id(), now)
                .await
                .map_err(|_| fail("server_error", "the delegations could not be read"))?
                .is_empty();
        let ask = req.prompt_consent || !new_scopes.is_empty() || granted.is_empty() || !delegated;
        if ask {
            if req.prompt_none {
                return Err(fail("consent_required", "the person has not consented"));
            }
            // Consenting is a sensitive action: after an old sign-in, sign in again first.
            if !recent && !fresh_login {
                return Ok(Next::Login);
            }
            return Ok(Next::Consent { new_scopes });
        }
        Ok(Next::Redirect(self.issue_code(org, req, session).await?))
    }

    /// The person consented: records it (the scopes asked for, added to those consented to
    /// before) and answers the redirect with a code.
    pub async fn consented(
        &self,
        org: &OrgRecord,
        req: &AuthorizeRequest,
        session: &Session,
    ) -> Result<String, AuthzError> {
        let now = self.clock.now();
        let fail = |description: &str| AuthzError::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            error: "server_error",
            description: description.to_owned(),
            state: req.state.clone(),
        };
        let before = self
            .grants
            .consent(&org.id, &session.user.id, req.client.client_id())
            .await
            .map_err(|_| fail("the consent could not be read"))?;
        let mut scopes = before
            .as_ref()
            .map(|c| c.scopes.clone())
            .unwrap_or_default();
        for s in &req.scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        self.grants
            .put_consent(&ConsentRecord {
                org_id: org.id.clone(),
                user_id: session.user.id.clone(),
                client_id: req.client.client_id().to_owned(),
                scopes,
                created_at: before.map_or(now, |c| c.created_at),
                updated_at: now,
            })
            .await
            .map_err(|_| fail("the consent could not be recorded"))?;
        // Consenting to an agent is delegating to it (INTERFACE.md): a grant of the scopes
        // consented to, visible and revocable by the person and admins.
        if req.client.kind == crate::model::ClientKind::Agent {
            let id = uuid::Uuid::new_v4().to_string();
            let grant = crate::storage::DelegationRecord {
                org_id: org.id.clone(),
                id: id.clone(),
                user_id: session.user.id.clone(),
                agent_id: req.client.client_id().to_owned(),
                scopes: req.scopes.clone(),
                created_at: now,
                created_by: "consent".into(),
                expires_at: None,
                revoked_at: None,
            };
            let event = crate::storage::Event {
                org_id: Some(org.id.clone()),
                kind: "delegation.created",
                subject: id,
                data: serde_json::json!({"user_id": grant.user_id, "agent_id": grant.agent_id, "scopes": grant.scopes, "by": "consent"}),
                at: now,
            };
            self.delegations
                .create_delegation(&grant, &event)
                .await
                .map_err(|_| fail("the delegation could not be recorded"))?;
        }
        self.issue_code(org, req, session).await
    }

    /// The person refused: `access_denied` at the client.
    pub fn denied(&self, req: &AuthorizeRequest) -> AuthzError {
        AuthzError::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            error: "access_denied",
            description: "the person did not consent".into(),
            state: req.state.clone(),
        }
    }

    async fn issue_code(
        &self,
        org: &OrgRecord,
        req: &AuthorizeRequest,
        session: &Session,
    ) -> Result<String, AuthzError> {
        let now = self.clock.now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let code = crate::tenancy::principals::new_token(CODE_PREFIX, &id);
        let record = CodeRecord {
            org_id: org.id.clone(),
            id,
            digest: self.clients.digester.digest(code.expose()),
            digest_version: self.clients.digester.version(),
            client_id: req.client.client_id().to_owned(),
            user_id: session.user.id.clone(),
            session_id: session.record.id.clone(),
            redirect_uri: if req.redirect_uri_sent {
                req.redirect_uri.clone()
            } else {
                String::new()
            },
            code_challenge: req.code_challenge.clone(),
            scopes: req.scopes.clone(),
            nonce: req.nonce.clone(),
            resource: req.resource.clone(),
            auth_time: session.record.auth_time,
            amr: session.record.amr.clone(),
            created_at: now,
            expires_at: now + CODE_TTL_SECS,
            used_at: None,
            access_jti: None,
            access_exp: None,
            refresh_family: None,
        };
        self.grants
            .create_code(&record)
            .await
            .map_err(|_| AuthzError::Redirect {
                redirect_uri: req.redirect_uri.clone(),
                error: "server_error",
                description: "the code could not be stored".into(),
                state: req.state.clone(),
            })?;
        let mut p: Vec<(&str, &str)> = vec![("code", code.expose())];
        if let Some(s) = &req.state {
            p.push(("state", s));
        }
        p.push(("iss", &org.issuer));
        Ok(with_query(&req.redirect_uri, &p))
    }
}

/// May tokens be addressed to `resource`? This organization's issuer and the instance's admin
/// API always; otherwise an `https` URL, and when the organization's policy lists
/// `allowed_resources`, one of them or below one (a path prefix ending at a `/`).
pub fn resource_allowed(
    resource: &str,
    issuer: &str,
    admin_api: &str,
    allowed: Option<&[String]>,
) -> bool {
    let r = resource.trim_end_matches('/');
    if r == issuer || r == admin_api {
        return true;
    }
    if !resource.starts_with("https://") {
        return false;
    }
    match allowed {
        None => true,
        Some(list) => list.iter().any(|a| {
            let a = a.trim_end_matches('/');
            r == a || r.strip_prefix(a).is_some_and(|rest| rest.starts_with('/'))
        }),
    }
}

/// Is this client one whose consent screen must say its identity is not verified (a Client ID
/// Metadata Document, or a dynamically registered client)? Public clients always are.
pub fn unverified(client: &Agent) -> bool {
    client.auth_method == AuthMethod::None || client.unverified_host.is_some()
}
