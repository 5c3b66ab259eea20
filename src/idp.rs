//! The assembled domain: storage, caches, keys and settings that every use case needs.
//! Built once by `app`, shared by every request; nothing here knows about HTTP.

use std::sync::Arc;

use serde_json::Value;
use url::Url;

use crate::did::card::Cards;
use crate::did::resolver::Resolver;
use crate::ephemeral::{DynBus, DynReplay};
use crate::federation::PartnerDirectory;
use crate::federation::partners::Partners;
use crate::federation::verify::Verifier;
use crate::fetch::Fetcher;
use crate::keys::{KeyService, SecretDigester};
use crate::model::Clock;
use crate::oauth::OAuth;
use crate::oauth::client_auth::ClientAuth;
use crate::oauth::revocations::{Mode as RevocationMode, RevocationList};
use crate::people::sessions::Sessions;
use crate::people::{Passwords, People};
use crate::remote::RemoteJson;
use crate::storage::Stores;
use crate::tenancy::agents::Agents;
use crate::tenancy::cimd::Clients;
use crate::tenancy::enrollments::Enrollments;
use crate::tenancy::orgs::Orgs;
use crate::tenancy::policy::{OrgPolicies, Policies};
use crate::tenancy::principals::Principals;
use crate::tenancy::registration::Registrations;
use crate::tenancy::{Directory, cache_ttl};

/// Every use case, each over exactly what it needs; the shared parts (directories, keys, caches
/// of others' documents) are built once here and handed to each by `Arc`.
pub struct Idp {
    pub stores: Stores,
    pub directory: Arc<Directory>,
    pub partners: Arc<PartnerDirectory>,
    pub keys: Arc<KeyService>,
    /// Digests of server-generated secrets (client secrets, admin tokens).
    pub digester: Arc<SecretDigester>,
    pub orgs: Orgs,
    /// Admin credentials: API keys, platform admin tokens, the bootstrap token.
    pub principals: Principals,
    pub agents: Agents,
    /// The same use cases for people-facing apps (`/clients`).
    pub apps: Agents,
    /// User accounts and invites.
    pub people: People,
    /// Enrollment tokens (initial access tokens of agent registration).
    pub enrollments: Enrollments,
    /// `{iss}/oauth2/register` (RFC 7591) and its management (RFC 7592).
    pub registrations: Registrations,
    /// Client lookup for the authorization and token endpoints: stored clients and Client ID
    /// Metadata Documents ([`Clients::lookup`]).
    pub clients: Arc<Clients>,
    /// People's sign-in sessions.
    pub sessions: Sessions,
    /// People's delegation grants to agents.
    pub delegations: crate::people::delegations::Delegations,
    /// Every organization's policy, cached (`get` is an in-memory lookup).
    pub policies: Arc<Policies>,
    /// `GET`/`PUT .../policy`.
    pub policy_admin: OrgPolicies,
    pub partner_admin: Partners,
    pub resolver: Arc<Resolver>,
    pub cards: Cards,
    pub oauth: OAuth,
    pub clock: Arc<dyn Clock>,
}

/// What the domain is built from: opened storage, the bus and replay cache (database or Redis),
/// keys, the outbound fetcher, the clock and the settings that shape the use cases.
pub struct Parts {
    pub stores: Stores,
    pub bus: DynBus,
    pub replay: DynReplay,
    pub keys: KeyService,
    pub digester: SecretDigester,
    pub fetcher: Fetcher,
    pub clock: Arc<dyn Clock>,
    pub public_url: Url,
    pub access_token_ttl: i64,
    /// `AGENTIDP_TOKEN_RATE_LIMIT` (see [`crate::tenancy::policy::OrgPolicies`]).
    pub token_rate_ceiling: Option<crate::tenancy::policy::TokenRateLimit>,
    /// Digest (and its key version) of the bootstrap token.
    pub bootstrap: (i64, Vec<u8>),
    /// The outbound mail queue (`AGENTIDP_SMTP_URL`); `None`: links go to the admin who asked.
    pub mail: Option<Arc<crate::mail::MailQueue>>,
}

const JWKS_ACCEPT: &str = "application/jwk-set+json, application/json";

impl Idp {
    pub fn new(p: Parts) -> Self {
        let ttl = cache_ttl(&p.bus, p.stores.meta.backend());
        let directory = Arc::new(Directory::new(
            p.stores.orgs.clone(),
            p.stores.agents.clone(),
            p.bus.clone(),
            ttl,
        ));
        let partners = Arc::new(PartnerDirectory::new(
            p.stores.partners.clone(),
            p.bus.clone(),
            ttl,
        ));
        let policies = Arc::new(Policies::new(p.stores.policies.clone(), p.bus.clone(), ttl));
        let keys = Arc::new(p.keys);
        let digester = Arc::new(p.digester);
        let remote = |accept, check| {
            Arc::new(RemoteJson::new(
                p.fetcher.clone(),
                accept,
                check,
                p.clock.clone(),
            ))
        };
        let agent_jwks = remote(JWKS_ACCEPT, crate::remote::is_jwks);
        let partner_jwks = remote(JWKS_ACCEPT, crate::remote::is_jwks);
        let did_docs = remote("application/did+json, application/json", |v: &Value| {
            v.get("id").is_some_and(Value::is_string)
        });
        let instance_did = crate::model::did::instance_did(&p.public_url);
        let resolver = Arc::new(Resolver {
            directory: directory.clone(),
            keys: keys.clone(),
            agent_jwks: agent_jwks.clone(),
            did_docs: did_docs.clone(),
            instance_did,
            base: p.public_url.as_str().trim_end_matches('/').to_owned(),
            foreign_budget: crate::did::resolver::foreign_fetch_budget(),
            rendered: crate::did::resolver::rendered_cache(),
            instance_rendered: std::sync::OnceLock::new(),
        });
        let verifier = Arc::new(Verifier {
            partners: partners.clone(),
            partner_jwks: partner_jwks.clone(),
            did_docs,
            resolver: resolver.clone(),
            replay: p.replay.clone(),
        });
        let passwords = Arc::new(Passwords::new());
        let agents = Agents {
            directory: directory.clone(),
            digester: digester.clone(),
            fetch_policy: *p.fetcher.policy(),
            agent_jwks: agent_jwks.clone(),
            max_token_ttl: p.access_token_ttl,
            policies: policies.clone(),
            clock: p.clock.clone(),
            kind: crate::model::ClientKind::Agent,
        };
        let enrollments = Enrollments {
            store: p.stores.enrollments.clone(),
            directory: directory.clone(),
            digester: digester.clone(),
            policies: policies.clone(),
            clock: p.clock.clone(),
        };
        let registrations = Registrations {
            agents: agents.for_kind(crate::model::ClientKind::Agent),
            apps: agents.for_kind(crate::model::ClientKind::App),
            enrollments: enrollments.clone(),
            policies: policies.clone(),
            digester: digester.clone(),
            clock: p.clock.clone(),
        };
        let clients = Clients {
            directory: directory.clone(),
            policies: policies.clone(),
            documents: Arc::new(RemoteJson::new(
                p.fetcher.limited(
                    crate::tenancy::cimd::MAX_DOCUMENT_BYTES,
                    crate::tenancy::cimd::FETCH_TIMEOUT,
                ),
                "application/json",
                |_| true,
                p.clock.clone(),
            )),
            fetch_policy: *p.fetcher.policy(),
            clock: p.clock.clone(),
        };
        let clients = Arc::new(clients);
        Idp {
            clients: clients.clone(),
            enrollments,
            registrations,
            principals: Principals::new(
                p.stores.principals.clone(),
                p.stores.meta.clone(),
                digester.clone(),
                p.bootstrap,
                p.clock.clone(),
            ),
            orgs: Orgs {
                directory: directory.clone(),
                keys: keys.clone(),
                public_url: p.public_url.clone(),
                clock: p.clock.clone(),
            },
            people: People {
                store: p.stores.users.clone(),
                links: p.stores.links.clone(),
                transfers: p.stores.transfers.clone(),
                passwords: passwords.clone(),
                digester: digester.clone(),
                mail: p.mail,
                clock: p.clock.clone(),
            },
            delegations: crate::people::delegations::Delegations {
                store: p.stores.delegations.clone(),
                users: p.stores.users.clone(),
                directory: directory.clone(),
                clock: p.clock.clone(),
            },
            sessions: Sessions {
                users: p.stores.users.clone(),
                store: p.stores.sessions.clone(),
                passwords,
                digester: digester.clone(),
                policies: policies.clone(),
                clock: p.clock.clone(),
            },
            apps: agents.for_kind(crate::model::ClientKind::App),
            agents,
            policy_admin: OrgPolicies {
                directory: directory.clone(),
                policies: policies.clone(),
                store: p.stores.policies.clone(),
                max_token_ttl: p.access_token_ttl,
                token_rate_ceiling: p.token_rate_ceiling,
                clock: p.clock.clone(),
            },
            partner_admin: Partners {
                directory: directory.clone(),
                partners: partners.clone(),
                fetcher: p.fetcher.clone(),
                partner_jwks,
                resolver: resolver.clone(),
                clock: p.clock.clone(),
            },
            cards: Cards::new(directory.clone(), keys.clone(), p.clock.clone()),
            oauth: OAuth {
                clients: ClientAuth {
                    directory: directory.clone(),
                    digester: digester.clone(),
                    agent_jwks,
                    replay: p.replay.clone(),
                    policies: policies.clone(),
                    cimd: clients.clone(),
                },
                directory: directory.clone(),
                partners: partners.clone(),
                keys: keys.clone(),
                verified: Default::default(),
                revocations: Arc::new(RevocationList::new(
                    p.stores.replay.clone(),
                    p.bus.clone(),
                    p.clock.clone(),
                    RevocationMode::of(&p.bus, p.stores.meta.backend()),
                )),
                verifier,
                replay: p.replay,
                access_token_ttl: p.access_token_ttl,
                clock: p.clock.clone(),
                grants: p.stores.grants.clone(),
                users: p.stores.users.clone(),
                delegations: p.stores.delegations.clone(),
                public_url: p.public_url.as_str().trim_end_matches('/').to_owned(),
            },
            resolver,
            stores: p.stores,
            directory,
            policies,
            partners,
            keys,
            digester,
            clock: p.clock,
        }
    }
}

/// Normalizes a public URL (no query, no fragment, no trailing slash).
pub fn parse_public_url(s: &str) -> Result<Url, String> {
    let mut u = Url::parse(s).map_err(|e| format!("AGENTIDP_PUBLIC_URL {s:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!(
            "AGENTIDP_PUBLIC_URL {s:?} must be an http(s) URL with a host"
        ));
    }
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return Err(format!(
            "AGENTIDP_PUBLIC_URL {s:?} must not carry credentials, a query or a fragment"
        ));
    }
    let path = u.path().trim_end_matches('/').to_owned();
    u.set_path(&path);
    Ok(u)
}

impl Idp {
    /// The admin-API principal of a bearer token: an API key or platform token
    /// ([`Principals::authenticate`]), or a person's access token (issue 12 point 10): a JWT of
    /// one organization's issuer, in force ([`crate::oauth::OAuth::active_token`]: signature,
    /// expiry, revocation, the client and the person active), whose `aud` names the admin API
    /// (`{public_url}/api/v1`, RFC 8707: a token for another resource is not one for this API)
    /// and whose subject is a person, not an agent: that person, with their role.
    pub async fn admin_principal(
        &self,
        secret: &crate::model::Secret,
        ip: std::net::IpAddr,
    ) -> Result<crate::tenancy::access::Principal, crate::tenancy::principals::Refusal> {
        use crate::tenancy::principals::Refusal;
        let token = secret.expose();
        if token.starts_with("aidp_") || token.matches('.').count() != 2 {
            return self.principals.authenticate(secret, ip).await;
        }
        let no = Refusal::Unauthenticated("not an access token for the admin API");
        // Which issuer? The unverified `iss` only picks the keys; `active_token` verifies it.
        let iss = crate::jose::parse(
            token,
            &crate::jose::Expectations {
                typ: crate::jose::Typ::Is(crate::tokens::access_token::TYP),
                required: &[],
                audience: None,
                max_lifetime: None,
                origin: crate::jose::Origin::Ours,
            },
        )
        .ok()
        .and_then(|jws| {
            #[derive(serde::Deserialize)]
            struct Iss {
                iss: String,
            }
            jws.unverified_claims::<Iss>().ok()
        })
        .ok_or(no)?
        .iss;
        let prefix = format!("{}/orgs/", self.oauth.public_url);
        let slug = iss.strip_prefix(&prefix).ok_or(no)?;
        let org = self
            .directory
            .org(slug)
            .await
            .map_err(|_| Refusal::Unavailable)?
            .ok_or(no)?;
        let now = self.clock.now();
        let (claims, holder) = match self.oauth.active_token(&org, token, now).await {
            Ok(x) => x,
            Err(crate::oauth::TokenStateError::Unavailable) => return Err(Refusal::Unavailable),
            Err(_) => return Err(no),
        };
        if !claims.aud.contains(&self.oauth.admin_api()) {
            return Err(Refusal::Unauthenticated(
                "the access token is not addressed to the admin API",
            ));
        }
        // The person themselves, through an app granted the admin_api scope: never an agent
        // acting for them (a delegation's scopes do not extend to the admin API).
        let scoped = claims.scope.as_deref().is_some_and(|s| {
            s.split(' ')
                .any(|x| x == crate::oauth::authorize::ADMIN_API_SCOPE)
        });
        if !scoped || claims.act.is_some() || claims.dlg.is_some() {
            return Err(Refusal::Unauthenticated(
                "the access token was not granted the admin_api scope by the person",
            ));
        }
        match holder {
            crate::oauth::Holder::Person { client, .. }
                if client.kind != crate::model::ClientKind::App =>
            {
                Err(Refusal::Unauthenticated(
                    "an agent's token is not the person's",
                ))
            }
            crate::oauth::Holder::Person { user, .. } => {
                Ok(crate::tenancy::access::Principal::User {
                    id: user.id.clone(),
                    org_id: org.id.to_string(),
                    role: user.role,
                })
            }
            _ => Err(Refusal::Unauthenticated(
                "only a person's token is an admin-API principal",
            )),
        }
    }
}
