//! Agent use cases: register (secret or `private_key_jwt`), read, list, update, suspend,
//! reactivate, revoke (final), delete (tombstone) and secret rotation with an optional grace period.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::access::Action;
use super::access::Principal;
use super::policy::Policies;
use super::{Agent, AgentStatus, AuthMethod, Directory, orgs};
use crate::admin_error::{AdminError, IfMatch};
use crate::ephemeral::Invalidation;
use crate::fetch::FetchPolicy;
use crate::jose::JwkError;
use crate::keys::SecretDigester;
use crate::keys::envelope::random_token;
use crate::model::{AgentId, Alg, ClientKind, Clock, Secret, is_uuid, rfc3339};
use crate::remote::RemoteJson;
use crate::storage::{AgentFilter, AgentRecord, EnrollRefusal, Event, OrgRecord, StorageError};

/// How often a change is redone on a fresh read when a concurrent write came first.
const ATTEMPTS: usize = 8;

/// Registration and update input (RFC 7591 client-metadata names where one exists).
/// On update every field is optional and only the given ones change.
/// On registration `name` and `scopes` are required.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    /// 1 to 200 printable characters.
    pub name: Option<String>,
    /// At most 2000 characters; `null` removes it (RFC 7396: absent leaves it unchanged).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// At most 100 RFC 6749 §3.3 scope tokens (may be empty).
    pub scopes: Option<Vec<String>>,
    /// `client_secret_basic` (the default), `client_secret_post` or `private_key_jwt` (the
    /// default with `jwks` or `jwks_uri`); cannot switch between secret and key later.
    #[schema(value_type = Option<AuthMethod>)]
    pub token_endpoint_auth_method: Option<String>,
    /// A JWK Set of 1 to 20 public EC, RSA or OKP keys (for `private_key_jwt`).
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    /// Where the agent publishes its JWK Set (for `private_key_jwt`).
    pub jwks_uri: Option<String>,
    #[schema(value_type = Option<Alg>)]
    pub access_token_signed_response_alg: Option<String>,
    #[schema(value_type = Option<Alg>)]
    pub id_token_signed_response_alg: Option<String>,
    /// Between 1 and the instance's default access-token lifetime; `null` returns to the
    /// instance default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub access_token_ttl_secs: Option<Option<i64>>,
    /// RFC 3339; after it the agent gets no tokens (`invalid_client`), its tokens are inactive
    /// and its DID deactivated. In the future on registration; an update may set any instant
    /// (a past one expires the agent at once) or `null` (never expires).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<String>>,
    /// The exact redirect URIs of the authorization code flow (at most 20): `https`, `http`
    /// on a loopback host, or for public clients a private-use scheme (`com.example.app:/cb`).
    pub redirect_uris: Option<Vec<String>>,
    /// Where OpenID Connect RP-Initiated Logout may return to (same rules).
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// Of `authorization_code`, `refresh_token`, `client_credentials` and the JWT bearer and
    /// token exchange grants. An agent without: client credentials and the exchanges; an app
    /// without: `authorization_code` and `refresh_token`.
    pub grant_types: Option<Vec<String>>,
}

/// RFC 7396 JSON Merge Patch for one member: absent is `None` (unchanged, via `#[serde(default)]`),
/// `null` is `Some(None)` (remove), a value is `Some(Some(v))`.
pub fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Free text shown to people (a description): at most `max` characters; no control characters
/// but line breaks and tabs, and no bidirectional-override characters (see
/// [`orgs::is_bidi_control`]: they make text display other than it reads).
pub fn validate_text(field: &'static str, s: &str, max: usize) -> Result<(), AdminError> {
    if s.chars().count() > max {
        return Err(AdminError::field(
            field,
            format!("at most {max} characters"),
        ));
    }
    if s.chars()
        .any(|c| (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || orgs::is_bidi_control(c))
    {
        return Err(AdminError::field(
            field,
            "must not contain control or bidirectional-control characters",
        ));
    }
    Ok(())
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
pub fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// A registered JWK Set must hold only public asymmetric keys (no `oct`, no private members,
/// see [`crate::jose::PRIVATE_MEMBERS`]), each one usable to verify.
pub fn validate_jwks(jwks: &Value) -> Result<(), AdminError> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| AdminError::field("jwks", "must be a JWK Set: {\"keys\": [...]}"))?;
    if keys.is_empty() || keys.len() > 20 {
        return Err(AdminError::field("jwks", "must hold 1 to 20 keys"));
    }
    crate::jose::KeySet::from_jwks_strict(keys).map_err(|(i, e)| {
        let why = match e {
            JwkError::Kty => format!("keys[{i}].kty must be EC, RSA or OKP"),
            JwkError::Private => format!("keys[{i}] contains private key material"),
            JwkError::Unusable => format!("keys[{i}] is not a usable public key"),
            JwkError::NotForSignatures => format!(
                "keys[{i}] is not a signature key (use must be sig; alg an allowed algorithm of its key type)"
            ),
        };
        AdminError::field("jwks", why)
    })?;
    Ok(())
}

/// The agent use cases, over what they need: the directory, the secret digester, the outbound
/// policy (a `jwks_uri` must be fetchable), the agents' cached key sets (forgotten when an
/// agent's registration changes), the longest token lifetime an agent may ask for, the clock.
pub struct Agents {
    pub directory: Arc<Directory>,
    pub digester: Arc<SecretDigester>,
    pub fetch_policy: FetchPolicy,
    pub agent_jwks: Arc<RemoteJson>,
    pub max_token_ttl: i64,
    /// Organization policies: registrations and updates must comply.
    pub policies: Arc<Policies>,
    pub clock: Arc<dyn Clock>,
    /// Which clients these use cases manage: agents (`/agents`) or apps (`/clients`); the other
    /// kind's ids answer 404.
    pub kind: ClientKind,
}

/// What a registration at `{iss}/oauth2/register` adds to a new client's record.
#[derive(Debug, Default)]
pub struct Registered {
    /// The enrollment token to use up (its uses counted in the creating transaction).
    pub enrollment_id: Option<String>,
    /// The digest and key version of the RFC 7592 registration access token.
    pub registration: Option<(Vec<u8>, i64)>,
}

/// Who asks for a change: an admin principal (through an organization slug it must see), or
/// the client itself through its registration access token (the organization already known).
#[derive(Clone, Copy)]
pub enum Caller<'a> {
    Admin(&'a Principal, &'a str),
    Registered(&'a OrgRecord),
}

/// How many live apps an organization may have (agents are bounded by its policy).
pub const MAX_APPS: i64 = 1000;

/// Which credential a method uses: a secret, a key, or none; a client never switches class.
fn credential_class(m: AuthMethod) -> u8 {
    match m {
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => 0,
        AuthMethod::PrivateKeyJwt => 1,
        AuthMethod::None => 2,
    }
}

const AUTH_METHODS: &str =
    "must be client_secret_basic, client_secret_post, private_key_jwt or (apps only) none";

impl Agents {
    /// The same use cases for the other kind of client.
    pub fn for_kind(&self, kind: ClientKind) -> Agents {
        Agents {
            directory: self.directory.clone(),
            digester: self.digester.clone(),
            fetch_policy: self.fetch_policy,
            agent_jwks: self.agent_jwks.clone(),
            max_token_ttl: self.max_token_ttl,
            policies: self.policies.clone(),
            clock: self.clock.clone(),
            kind,
        }
    }

    /// The outbox event name of `what` happening to a client of this kind: `agent.created`,
    /// `client.created`, ...
    fn event_name(&self, what: &str) -> &'static str {
        const AGENT: [&str; 7] = [
            "agent.created",
            "agent.updated",
            "agent.deleted",
            "agent.suspended",
            "agent.reactivated",
            "agent.revoked",
            "agent.secret_rotated",
        ];
        const APP: [&str; 7] = [
            "client.created",
            "client.updated",
            "client.deleted",
            "client.suspended",
            "client.reactivated",
            "client.revoked",
            "client.secret_rotated",
        ];
        let names = if self.kind == ClientKind::Agent {
            AGENT
        } else {
            APP
        };
        names
            .into_iter()
            .find(|n| n.split_once('.').is_some_and(|(_, w)| w == what))
            .unwrap_or(names[1])
    }

    fn validate_jwks_uri(&self, uri: &str) -> Result<(), AdminError> {
        // The URL parser percent-encodes control characters, but the string is stored as given
        // (and PostgreSQL text cannot hold NUL).
        if uri.chars().any(char::is_control) {
            return Err(AdminError::field("jwks_uri", "must be an absolute URL"));
        }
        let u = url::Url::parse(uri)
            .map_err(|_| AdminError::field("jwks_uri", "must be an absolute URL"))?;
        crate::fetch::check_url(&u, &self.fetch_policy)
            .map_err(|e| AdminError::field("jwks_uri", e.to_string()))
    }

    /// Applies the given fields of `input` to `rec`, validating each.
    fn apply_input(&self, rec: &mut AgentRecord, input: AgentInput) -> Result<(), AdminError> {
        if let Some(name) = input.name {
            orgs::validate_name("name", &name)?;
            rec.name = name.trim().to_owned();
        }
        match input.description {
            None => {}
            Some(None) => rec.description = None,
            Some(Some(d)) => {
                validate_text("description", &d, 2000)?;
                rec.description = Some(d);
            }
        }
        if let Some(mut scopes) = input.scopes {
            validate_scopes(&scopes)?;
            // A set: drop every repeat, not only adjacent ones (`Vec::dedup`).
            let mut seen = std::collections::HashSet::new();
            scopes.retain(|s| seen.insert(s.clone()));
            rec.scopes = scopes;
        }
        if let Some(alg) = input.access_token_signed_response_alg {
            rec.access_token_alg = parse_alg("access_token_signed_response_alg", &alg)?;
        }
        if let Some(alg) = input.id_token_signed_response_alg {
            rec.id_token_alg = parse_alg("id_token_signed_response_alg", &alg)?;
        }
        if let Some(None) = input.access_token_ttl_secs {
            rec.access_token_ttl = None;
        }
        if let Some(Some(ttl)) = input.access_token_ttl_secs {
            if !(1..=self.max_token_ttl).contains(&ttl) {
                return Err(AdminError::field(
                    "access_token_ttl_secs",
                    format!(
                        "must be between 1 and the instance default {}",
                        self.max_token_ttl
                    ),
                ));
            }
            rec.access_token_ttl = Some(ttl);
        }
        match input.expires_at {
            None => {}
            Some(None) => rec.expires_at = None,
            Some(Some(t)) => {
                let at = crate::model::parse_rfc3339(&t).ok_or_else(|| {
                    AdminError::field(
                        "expires_at",
                        "must be an RFC 3339 date-time such as 2027-01-01T00:00:00Z",
                    )
                })?;
                rec.expires_at = Some(at);
            }
        }
        if let Some(m) = input.token_endpoint_auth_method {
            let m = AuthMethod::parse(&m)
                .ok_or_else(|| AdminError::field("token_endpoint_auth_method", AUTH_METHODS))?;
            if credential_class(m) != credential_class(rec.auth_method) {
                return Err(AdminError::field(
                    "token_endpoint_auth_method",
                    "cannot switch between secret, private_key_jwt and none; register a new client",
                ));
            }
            rec.auth_method = m;
        }
        if let Some(jwks) = input.jwks {
            validate_jwks(&jwks)?;
            rec.jwks = Some(jwks);
            rec.jwks_uri = None;
        }
        if let Some(uri) = input.jwks_uri {
            self.validate_jwks_uri(&uri)?;
            rec.jwks_uri = Some(uri);
            rec.jwks = None;
        }
        let method = rec.auth_method;
        if method == AuthMethod::PrivateKeyJwt && rec.jwks.is_none() && rec.jwks_uri.is_none() {
            return Err(AdminError::field(
                "jwks",
                "private_key_jwt needs jwks or jwks_uri",
            ));
        }
        if method != AuthMethod::PrivateKeyJwt && (rec.jwks.is_some() || rec.jwks_uri.is_some()) {
            return Err(AdminError::field(
                "token_endpoint_auth_method",
                "jwks and jwks_uri go with private_key_jwt",
            ));
        }
        super::clients::apply(
            rec,
            input.redirect_uris,
            input.post_logout_redirect_uris,
            input.grant_types,
        )
    }

    /// Registers an agent. Secret-based agents get a 256-bit secret, returned once and stored only as
    /// a keyed digest.
    pub async fn create(
        &self,
        principal: &Principal,
        org_slug: &str,
        input: AgentInput,
    ) -> Result<(Agent, Option<Secret>), AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Write).await?;
        let id = AgentId::generate(self.clock.now_ms());
        match self
            .create_in(&org, id, input, Registered::default())
            .await?
        {
            Ok(created) => Ok(created),
            Err(r) => Err(AdminError::Internal(format!("unexpected refusal {r:?}"))),
        }
    }

    /// Registers a client of this kind in `org` under `id` (the caller checked who may):
    /// [`Agents::create`]'s rules and policy checks, plus what `extra` adds (an enrollment
    /// token to use up, a registration access token's digest). An enrollment token that cannot
    /// be used answers its refusal (nothing was written).
    pub async fn create_in(
        &self,
        org: &OrgRecord,
        id: AgentId,
        input: AgentInput,
        extra: Registered,
    ) -> Result<Result<(Agent, Option<Secret>), EnrollRefusal>, AdminError> {
        let name = input
            .name
            .clone()
            .ok_or_else(|| AdminError::field("name", "is required"))?;
        if input.scopes.is_none() {
            return Err(AdminError::field("scopes", "is required (may be empty)"));
        }
        let now = self.clock.now();
        let method = match &input.token_endpoint_auth_method {
            Some(m) => AuthMethod::parse(m)
                .ok_or_else(|| AdminError::field("token_endpoint_auth_method", AUTH_METHODS))?,
            None if input.jwks.is_some() || input.jwks_uri.is_some() => AuthMethod::PrivateKeyJwt,
            None => AuthMethod::ClientSecretBasic,
        };
        // An app has no DID.
        let did = match self.kind {
            ClientKind::Agent => crate::model::did::agent_did(&org.did, &id),
            ClientKind::App => String::new(),
        };
        let mut rec = AgentRecord::new(org.id.clone(), id.clone(), did, name, method, now);
        rec.kind = self.kind;
        rec.enrollment_id = extra.enrollment_id;
        if let Some((digest, version)) = extra.registration {
            rec.registration_digest = Some(digest);
            rec.registration_digest_version = Some(version);
        }
        let mut input = input;
        input.token_endpoint_auth_method = None;
        if self.kind == ClientKind::App && input.grant_types.is_none() {
            input.grant_types = Some(vec![
                super::clients::AUTHORIZATION_CODE.to_owned(),
                super::clients::REFRESH_TOKEN.to_owned(),
            ]);
        }
        self.apply_input(&mut rec, input)?;
        if rec.expires_at.is_some_and(|e| e <= now) {
            return Err(AdminError::field("expires_at", "must be in the future"));
        }
        let policy = self.policies.get(&org.id).await?;
        policy.check_agent(&rec, None)?;
        let secret = method.uses_secret().then(random_token);
        if let Some(s) = &secret {
            rec.secret_digest = Some(self.digester.digest(s.expose()));
            rec.secret_digest_version = Some(self.digester.version());
            rec.secret_created_at = Some(now);
        }
        let ev = event(
            &rec,
            self.event_name("created"),
            json!({"name": rec.name, "auth_method": rec.auth_method.as_str()}),
            now,
        );
        let max = match self.kind {
            ClientKind::Agent => policy.max_agents,
            ClientKind::App => Some(MAX_APPS),
        };
        let created = if rec.enrollment_id.is_some() {
            match self
                .directory
                .agent_store()
                .enroll(&rec, &ev, max, now)
                .await?
            {
                Ok(()) => true,
                Err(EnrollRefusal::MaxAgents) => false,
                Err(r) => return Ok(Err(r)),
            }
        } else {
            self.directory
                .agent_store()
                .create_within(&rec, &ev, max)
                .await?
        };
        if !created && self.kind == ClientKind::App {
            return Err(AdminError::Policy(format!(
                "the organization has {MAX_APPS} live clients; delete one first"
            )));
        }
        if !created {
            return Err(AdminError::Policy(format!(
                "the organization has its policy's max_agents ({}) live agents; revoke or delete one first",
                policy.max_agents.unwrap_or_default()
            )));
        }
        self.directory
            .invalidate(Invalidation::Agent {
                org_id: org.id.to_string(),
                agent_id: id.into(),
            })
            .await;
        Ok(Ok((Agent::from_record(rec), secret)))
    }

    pub async fn get(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
    ) -> Result<Agent, AdminError> {
        Ok(load(&self.directory, principal, org_slug, id, Action::Read)
            .await
            .and_then(|(o, a)| self.own(o, a))?
            .1)
    }

    /// A page of the organization's agents that pass `filter`.
    pub async fn list(
        &self,
        principal: &Principal,
        org_slug: &str,
        after: Option<&str>,
        limit: i64,
        filter: &AgentFilter,
    ) -> Result<Vec<Agent>, AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Read).await?;
        let filter = AgentFilter {
            kind: Some(self.kind),
            ..filter.clone()
        };
        let rows = self
            .directory
            .agent_store()
            .list_filtered(&org.id, after, limit, &filter)
            .await?;
        Ok(rows.into_iter().map(Agent::from_record).collect())
    }

    /// Reads the agent, lets `change` compute its new state from it and writes that over the
    /// version read. When a concurrent write came first the change is redone on a fresh read
    /// (optimistic concurrency), so no change undoes another: a PATCH racing a suspension or a
    /// secret rotation keeps both. `if_match` (RFC 9110 §13.1.1) is checked against every read.
    /// `change` answering `None`: nothing to write.
    async fn modify(
        &self,
        caller: Caller<'_>,
        id: &str,
        if_match: Option<&IfMatch>,
        mut change: impl FnMut(&Agent) -> Result<Option<(AgentRecord, Event)>, AdminError>,
    ) -> Result<Agent, AdminError> {
        for _ in 0..ATTEMPTS {
            let (_, agent) = self.load_for(caller, id, Action::Write).await?;
            if let Some(m) = if_match {
                m.check(agent.version)?;
            }
            let Some((mut rec, ev)) = change(&agent)? else {
                return Ok(agent);
            };
            match self.directory.agent_store().update(&rec, &ev).await {
                Err(StorageError::Stale) => continue,
                r => r?,
            }
            rec.version += 1;
            self.directory
                .invalidate(Invalidation::Agent {
                    org_id: rec.org_id.to_string(),
                    agent_id: rec.id.to_string(),
                })
                .await;
            for uri in [&agent.record.jwks_uri, &rec.jwks_uri]
                .into_iter()
                .flatten()
            {
                self.agent_jwks.forget(uri).await;
            }
            return Ok(Agent::from_record(rec));
        }
        Err(AdminError::Conflict(
            "the agent is being changed by many concurrent requests; retry".into(),
        ))
    }

    /// Applies the given fields (RFC 7396 merge-patch semantics, see [`AgentInput`]); with
    /// `if_match` only over the version it names.
    pub async fn update(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
        input: AgentInput,
        if_match: Option<&IfMatch>,
    ) -> Result<Agent, AdminError> {
        let fields: Vec<&str> = [
            ("name", input.name.is_some()),
            ("description", input.description.is_some()),
            ("scopes", input.scopes.is_some()),
            (
                "token_endpoint_auth_method",
                input.token_endpoint_auth_method.is_some(),
            ),
            ("jwks", input.jwks.is_some()),
            ("jwks_uri", input.jwks_uri.is_some()),
            (
                "access_token_signed_response_alg",
                input.access_token_signed_response_alg.is_some(),
            ),
            (
                "id_token_signed_response_alg",
                input.id_token_signed_response_alg.is_some(),
            ),
            (
                "access_token_ttl_secs",
                input.access_token_ttl_secs.is_some(),
            ),
            ("expires_at", input.expires_at.is_some()),
            ("redirect_uris", input.redirect_uris.is_some()),
            (
                "post_logout_redirect_uris",
                input.post_logout_redirect_uris.is_some(),
            ),
            ("grant_types", input.grant_types.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, set)| set.then_some(f))
        .collect();
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Write).await?;
        self.update_as(
            &org,
            Caller::Admin(principal, org_slug),
            id,
            input,
            &fields,
            if_match,
        )
        .await
    }

    /// [`Agents::update`] for `caller`, in `org` (which the caller may change), of `fields`.
    pub async fn update_as(
        &self,
        org: &OrgRecord,
        caller: Caller<'_>,
        id: &str,
        input: AgentInput,
        fields: &[&str],
        if_match: Option<&IfMatch>,
    ) -> Result<Agent, AdminError> {
        let policy = self.policies.get(&org.id).await?;
        self.modify(caller, id, if_match, |agent| {
            ensure_not_revoked(agent)?;
            let mut rec = agent.record.clone();
            self.apply_input(&mut rec, input.clone())?;
            policy.check_agent(&rec, Some(fields))?;
            let now = self.clock.now();
            rec.updated_at = now;
            let ev = event(
                &rec,
                self.event_name("updated"),
                json!({ "fields": fields }),
                now,
            );
            Ok(Some((rec, ev)))
        })
        .await
    }

    /// Suspend, reactivate or revoke. Suspending and revoking end every token issued before now
    /// (reactivation does not bring them back: see the README).
    pub async fn set_status(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
        status: AgentStatus,
    ) -> Result<Agent, AdminError> {
        self.modify(Caller::Admin(principal, org_slug), id, None, |agent| {
            if agent.status == status {
                return Ok(None);
            }
            ensure_not_revoked(agent)?;
            let mut rec = agent.record.clone();
            let now_ms = self.clock.now_ms();
            rec.status = status;
            if status != AgentStatus::Active {
                rec.tokens_valid_after_ms = now_ms;
            }
            rec.updated_at = now_ms / 1000;
            let kind = self.event_name(match status {
                AgentStatus::Active => "reactivated",
                AgentStatus::Suspended => "suspended",
                AgentStatus::Revoked => "revoked",
            });
            let ev = event(&rec, kind, json!({}), rec.updated_at);
            Ok(Some((rec, ev)))
        })
        .await
    }

    pub async fn delete(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
    ) -> Result<(), AdminError> {
        self.delete_as(Caller::Admin(principal, org_slug), id).await
    }

    /// [`Agents::delete`] for `caller`.
    pub async fn delete_as(&self, caller: Caller<'_>, id: &str) -> Result<(), AdminError> {
        let (org, agent) = self.load_for(caller, id, Action::Write).await?;
        let now = self.clock.now();
        self.directory
            .agent_store()
            .delete(
                &org.id,
                agent.id(),
                now,
                &event(&agent.record, self.event_name("deleted"), json!({}), now),
            )
            .await?;
        self.directory
            .invalidate(Invalidation::Agent {
                org_id: org.id.into(),
                agent_id: agent.id().to_owned(),
            })
            .await;
        Ok(())
    }

    /// Issues a new client secret. With `grace_period_secs` the old one keeps working that long;
    /// without, it stops at once and tokens issued before now stop introspecting as active.
    pub async fn rotate_secret(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
        grace_period_secs: Option<i64>,
    ) -> Result<(Agent, Secret), AdminError> {
        let grace = grace_period_secs.unwrap_or(0);
        if !(0..=7 * 86_400).contains(&grace) {
            return Err(AdminError::field(
                "grace_period_secs",
                "must be between 0 and 604800",
            ));
        }
        let mut issued = None;
        let agent = self
            .modify(Caller::Admin(principal, org_slug), id, None, |agent| {
                ensure_not_revoked(agent)?;
                if !agent.auth_method.uses_secret() {
                    return Err(AdminError::Conflict(
                        "the agent authenticates with private_key_jwt and has no secret".into(),
                    ));
                }
                let now_ms = self.clock.now_ms();
                let now = now_ms / 1000;
                let mut rec = agent.record.clone();
                if grace > 0 {
                    rec.prev_secret_digest = rec.secret_digest.take();
                    rec.prev_secret_version = rec.secret_digest_version.take();
                    rec.prev_secret_expires_at = Some(now + grace);
                    rec.prev_secret_created_at = rec.secret_created_at.take();
                } else {
                    rec.prev_secret_digest = None;
                    rec.prev_secret_version = None;
                    rec.prev_secret_expires_at = None;
                    rec.prev_secret_created_at = None;
                    rec.tokens_valid_after_ms = now_ms;
                }
                let secret = random_token();
                rec.secret_digest = Some(self.digester.digest(secret.expose()));
                rec.secret_digest_version = Some(self.digester.version());
                rec.secret_created_at = Some(now);
                rec.updated_at = now;
                issued = Some(secret);
                let ev = event(
                    &rec,
                    self.event_name("secret_rotated"),
                    json!({"grace_period_secs": grace}),
                    now,
                );
                Ok(Some((rec, ev)))
            })
            .await?;
        // `modify` wrote, so the closure ran and issued the secret that was stored last.
        let secret = issued.ok_or_else(|| AdminError::Internal("no secret issued".into()))?;
        Ok((agent, secret))
    }
}

impl Agents {
    /// The client `id` of this kind that `caller` may act on; others answer `NotFound`.
    pub async fn load_for(
        &self,
        caller: Caller<'_>,
        id: &str,
        action: Action,
    ) -> Result<(OrgRecord, Agent), AdminError> {
        let (org, agent) = match caller {
            Caller::Admin(principal, slug) => {
                load(&self.directory, principal, slug, id, action).await?
            }
            Caller::Registered(org) => {
                if !is_uuid(id) {
                    return Err(AdminError::NotFound);
                }
                let rec = self
                    .directory
                    .agent_store()
                    .get(&org.id, id)
                    .await?
                    .ok_or(AdminError::NotFound)?;
                (org.clone(), Agent::from_record(rec))
            }
        };
        self.own(org, agent)
    }

    /// A client of the other kind is not found here.
    fn own(&self, org: OrgRecord, agent: Agent) -> Result<(OrgRecord, Agent), AdminError> {
        if agent.kind == self.kind {
            Ok((org, agent))
        } else {
            Err(AdminError::NotFound)
        }
    }
}

fn parse_alg(field: &'static str, v: &str) -> Result<Alg, AdminError> {
    Alg::parse(v).ok_or_else(|| AdminError::field(field, "must be ES256, RS256 or EdDSA"))
}

fn validate_scopes(scopes: &[String]) -> Result<(), AdminError> {
    if scopes.len() > 100 {
        return Err(AdminError::field("scopes", "at most 100 scopes"));
    }
    if let Some(bad) = scopes.iter().find(|s| !valid_scope_token(s)) {
        return Err(AdminError::field(
            "scopes",
            format!("{bad:?} is not a valid scope token (RFC 6749 §3.3)"),
        ));
    }
    Ok(())
}

/// The outbox event of a change to `agent`.
pub fn event(agent: &AgentRecord, kind: &'static str, data: Value, at: i64) -> Event {
    Event {
        org_id: Some(agent.org_id.clone()),
        kind,
        subject: agent.id.to_string(),
        data,
        at,
    }
}

/// An agent of an organization the principal may act on; invisible ones answer `NotFound`.
pub async fn load(
    directory: &Directory,
    principal: &Principal,
    org_slug: &str,
    id: &str,
    action: Action,
) -> Result<(OrgRecord, Agent), AdminError> {
    let org = orgs::visible(directory, principal, org_slug, action).await?;
    if !is_uuid(id) {
        return Err(AdminError::NotFound);
    }
    let rec = directory
        .agent_store()
        .get(&org.id, id)
        .await?
        .ok_or(AdminError::NotFound)?;
    Ok((org, Agent::from_record(rec)))
}

pub fn ensure_not_revoked(agent: &Agent) -> Result<(), AdminError> {
    if agent.status == AgentStatus::Revoked {
        return Err(AdminError::Conflict(
            "the agent is revoked; revocation is final".into(),
        ));
    }
    Ok(())
}

/// The admin view of an agent. Fields in alphabetical order, as the JSON always had them. No
/// `Debug`: it may hold a secret.
#[derive(Serialize, ToSchema)]
pub struct AgentResponse {
    pub access_token_signed_response_alg: Alg,
    /// Null: the instance default.
    #[schema(required = true)]
    pub access_token_ttl_secs: Option<i64>,
    /// Equals `id`.
    pub client_id: String,
    /// Only in the answer that created it (registration, rotation): it is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(required = true)]
    pub description: Option<String>,
    /// `did:web:...:orgs:{slug}:agents:{id}` (an agent's; an app has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub did: Option<String>,
    /// The enrollment token that enrolled it at `{iss}/oauth2/register`, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub enrollment_id: Option<String>,
    /// When the agent expires (null: never).
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
    pub id: String,
    pub id_token_signed_response_alg: Alg,
    /// With `private_key_jwt` and a registered JWK Set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable = false)]
    pub jwks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub jwks_uri: Option<String>,
    pub name: String,
    /// The organization's slug.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub org: Option<String>,
    /// After a rotation with a grace period: when the previous secret stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub previous_secret_expires_at: Option<String>,
    pub scopes: Vec<String>,
    /// When the current client secret was issued (registration or the last rotation); null
    /// for `private_key_jwt`. The policy's `max_secret_age_secs` counts from it.
    #[schema(required = true, format = DateTime)]
    pub secret_created_at: Option<String>,
    pub status: AgentStatus,
    pub token_endpoint_auth_method: AuthMethod,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

/// The admin view of an agent. The secret appears only in the answer that created it.
pub fn view(agent: &Agent, org: Option<&str>, secret: Option<&Secret>) -> AgentResponse {
    let r = &agent.record;
    AgentResponse {
        access_token_signed_response_alg: agent.access_token_alg,
        access_token_ttl_secs: r.access_token_ttl,
        client_id: r.id.to_string(),
        client_secret: secret.map(|s| s.expose().to_owned()),
        created_at: rfc3339(r.created_at),
        description: r.description.clone(),
        did: (r.kind == ClientKind::Agent).then(|| r.did.clone()),
        enrollment_id: r.enrollment_id.clone(),
        expires_at: r.expires_at.map(rfc3339),
        id: r.id.to_string(),
        id_token_signed_response_alg: agent.id_token_alg,
        jwks: agent.jwks.clone(),
        jwks_uri: r.jwks_uri.clone(),
        name: r.name.clone(),
        org: org.map(str::to_owned),
        previous_secret_expires_at: r.prev_secret_expires_at.map(rfc3339),
        scopes: agent.scopes.clone(),
        secret_created_at: r.secret_created_at.map(rfc3339),
        status: agent.status,
        token_endpoint_auth_method: agent.auth_method,
        updated_at: rfc3339(r.updated_at),
        grant_types: r.grant_types.clone(),
        redirect_uris: r.redirect_uris.clone(),
        post_logout_redirect_uris: r.post_logout_redirect_uris.clone(),
    }
}
