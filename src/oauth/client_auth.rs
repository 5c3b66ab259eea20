//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1) and `private_key_jwt`
//! (RFC 7523 §2.2 and §3, OIDC Core §9).

use std::sync::Arc;

use serde::Deserialize;

use super::error::OAuthError;
use super::form::FormParams;
use crate::ephemeral::DynReplay;
use crate::jose::{self, Claim, Expectations, JoseError, Jws, KeySet, Origin, Typ};
use crate::keys::SecretDigester;
use crate::model::Secret;
use crate::model::rfc3339;
use crate::remote::RemoteJson;
use crate::storage::OrgRecord;
use crate::tenancy::Directory;
use crate::tenancy::policy::{Policies, Policy};
use crate::tenancy::{Agent, AgentStatus, AuthMethod};

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may live: authlib's default is one hour.
pub const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// The client credentials of a request, as the edge extracted them: HTTP Basic (decoded by the
/// edge from the Authorization header, RFC 6749 §2.3.1) or form members. The domain never sees
/// a header.
#[derive(Debug)]
pub enum ClientCredentials {
    Basic {
        client_id: String,
        secret: Secret,
    },
    Post {
        client_id: String,
        secret: Secret,
    },
    Jwt {
        assertion: Secret,
        client_id: Option<String>,
    },
    None {
        client_id: Option<String>,
    },
}

impl ClientCredentials {
    /// The client the request names, when it names one before any verification (Basic, post,
    /// or the form's `client_id` beside an assertion).
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } => Some(client_id),
            Self::Jwt { client_id, .. } | Self::None { client_id } => client_id.as_deref(),
        }
    }

    /// The client a request is about, for its request limit: the named `client_id`, or else the
    /// `sub` of its (not yet verified) client assertion, which RFC 7523 §3 makes the client id,
    /// so a `private_key_jwt` client that leaves out `client_id` (§2.2 allows it) is limited too.
    /// Unverified, it only selects whose allowance is looked at; only a request whose assertion
    /// then verifies (its `sub` being that client) is counted.
    pub fn limited_client(&self) -> Option<std::borrow::Cow<'_, str>> {
        if let Some(id) = self.client_id() {
            return Some(std::borrow::Cow::Borrowed(id));
        }
        let Self::Jwt { assertion, .. } = self else {
            return None;
        };
        #[derive(serde::Deserialize)]
        struct Sub {
            sub: String,
        }
        use base64::prelude::*;
        let payload = assertion.expose().split('.').nth(1)?;
        let bytes = BASE64_URL_SAFE_NO_PAD.decode(payload).ok()?;
        let sub: Sub = serde_json::from_slice(&bytes).ok()?;
        Some(std::borrow::Cow::Owned(sub.sub))
    }

    /// Combines the decoded Basic credentials (if the request had them) with the form's members.
    /// More than one method at once is `invalid_request` (RFC 6749 §2.3).
    pub fn from_request(
        basic: Option<(String, Secret)>,
        form: &FormParams,
    ) -> Result<Self, OAuthError> {
        let post_secret = form.secret("client_secret");
        let assertion = form.secret("client_assertion");
        let form_id = form.get("client_id").map(str::to_owned);
        let methods = usize::from(basic.is_some())
            + usize::from(post_secret.is_some())
            + usize::from(assertion.is_some());
        if methods > 1 {
            return Err(OAuthError::invalid_request(
                "use exactly one client authentication method",
            ));
        }
        if let Some((client_id, secret)) = basic {
            if form_id.as_deref().is_some_and(|f| f != client_id) {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the Authorization header",
                ));
            }
            return Ok(Self::Basic { client_id, secret });
        }
        if let Some(secret) = post_secret {
            let client_id = form_id
                .ok_or_else(|| OAuthError::invalid_request("client_secret needs client_id"))?;
            return Ok(Self::Post { client_id, secret });
        }
        if let Some(assertion) = assertion {
            if form.get("client_assertion_type") != Some(CLIENT_ASSERTION_TYPE) {
                return Err(OAuthError::invalid_request(format!(
                    "client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
                )));
            }
            return Ok(Self::Jwt {
                assertion,
                client_id: form_id,
            });
        }
        Ok(Self::None { client_id: form_id })
    }
}

/// Client authentication over what it needs: the directory (agents and their parsed keys), the
/// secret digester, the agents' fetched key sets (`jwks_uri`), and the single-use markers of
/// client assertions.
pub struct ClientAuth {
    pub directory: Arc<Directory>,
    pub digester: Arc<SecretDigester>,
    pub agent_jwks: Arc<RemoteJson>,
    pub replay: DynReplay,
    /// Organization policies (allowed auth methods, secret age), read from memory.
    pub policies: Arc<Policies>,
    /// Clients named by a Client ID Metadata Document (an `https` `client_id`), and the stored
    /// ones.
    pub cimd: Arc<crate::tenancy::cimd::Clients>,
}

/// Which of an agent's secrets a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    Current,
    /// The previous secret, during a rotation's grace period.
    Previous,
    /// No secret (`private_key_jwt`, or a public client).
    Key,
}

impl ClientAuth {
    /// Authenticates the client of a request to `org`'s endpoints. Every failure is
    /// `invalid_client` with no hint at which part failed beyond what the client already knows.
    ///
    /// `endpoint` is the path below the issuer that was called (`/oauth2/token`, ...): a client
    /// assertion's `aud` may name the issuer, the token endpoint, or the endpoint called (RFC 7523
    /// §3 lets the server choose; authlib and others default to the URL they call).
    pub async fn authenticate(
        &self,
        org: &OrgRecord,
        credentials: ClientCredentials,
        now: i64,
        endpoint: &str,
    ) -> Result<Arc<Agent>, OAuthError> {
        Ok(self
            .authenticate_with_policy(org, credentials, now, endpoint)
            .await?
            .0)
    }

    /// [`ClientAuth::authenticate`], also answering the organization's policy it checked (one
    /// in-memory lookup: the caller needs it too, for the token lifetime). After the client
    /// proved its credentials: an inactive or expired agent, an auth method the policy no
    /// longer allows and a secret older than the policy's maximum age are each refused with
    /// `invalid_client` saying why.
    pub async fn authenticate_with_policy(
        &self,
        org: &OrgRecord,
        credentials: ClientCredentials,
        now: i64,
        endpoint: &str,
    ) -> Result<(Arc<Agent>, Arc<Policy>), OAuthError> {
        self.client(org, credentials, now, endpoint, false).await
    }

    /// [`ClientAuth::authenticate_with_policy`] for the grants a public client may use
    /// (authorization code, refresh token) and for revocation (RFC 7009 §2.1): a client
    /// registered with `none` is identified by its `client_id` alone (RFC 6749 §3.2.1); every
    /// other client must authenticate as always, so leaving the credentials out of a confidential
    /// client's request does not make it public.
    pub async fn authenticate_or_public(
        &self,
        org: &OrgRecord,
        credentials: ClientCredentials,
        now: i64,
        endpoint: &str,
    ) -> Result<(Arc<Agent>, Arc<Policy>), OAuthError> {
        self.client(org, credentials, now, endpoint, true).await
    }

    async fn client(
        &self,
        org: &OrgRecord,
        credentials: ClientCredentials,
        now: i64,
        endpoint: &str,
        public_ok: bool,
    ) -> Result<(Arc<Agent>, Arc<Policy>), OAuthError> {
        let (agent, presented) = match credentials {
            ClientCredentials::None {
                client_id: Some(client_id),
            } if public_ok => {
                let a = self.agent(org, &client_id).await?;
                if a.auth_method != AuthMethod::None {
                    return Err(OAuthError::invalid_client(
                        "client authentication is required",
                    ));
                }
                (a, Presented::Key)
            }
            ClientCredentials::Basic { client_id, secret }
            | ClientCredentials::Post { client_id, secret } => {
                self.by_secret(org, &client_id, &secret, now).await?
            }
            ClientCredentials::Jwt {
                assertion,
                client_id,
            } => (
                self.by_assertion(org, &assertion, client_id.as_deref(), now, endpoint)
                    .await?,
                Presented::Key,
            ),
            ClientCredentials::None { .. } => {
                return Err(OAuthError::invalid_client(
                    "client authentication is required",
                ));
            }
        };
        let agent = active(agent)?;
        if let Some(exp) = agent.record.expires_at
            && now >= exp
        {
            return Err(OAuthError::invalid_client(format!(
                "the agent expired at {}",
                rfc3339(exp)
            )));
        }
        let policy = self
            .policies
            .get(&org.id)
            .await
            .map_err(|_| OAuthError::server_error())?;
        if !policy.allows_auth_method(agent.auth_method) {
            return Err(OAuthError::invalid_client(format!(
                "the organization's policy does not allow {} client authentication",
                agent.auth_method.as_str()
            )));
        }
        let issued = match presented {
            Presented::Current => agent.record.secret_created_at,
            Presented::Previous => agent.record.prev_secret_created_at,
            Presented::Key => None,
        };
        if let Some(exp) = policy.secret_expires_at(issued)
            && now >= exp
        {
            return Err(OAuthError::invalid_client(format!(
                "the client secret expired at {} (the organization's policy allows secrets {} seconds old); rotate it",
                rfc3339(exp),
                policy.max_secret_age_secs.unwrap_or_default()
            )));
        }
        Ok((agent, policy))
    }

    /// The agent named by a request, whatever its status: client ids are public, so whether a
    /// client is active is said only to one that proved it holds the credentials
    /// ([`active`]); before that, an unknown client and bad credentials read the same.
    async fn agent(&self, org: &OrgRecord, client_id: &str) -> Result<Arc<Agent>, OAuthError> {
        match self.cimd.lookup(org, client_id).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(bad_credentials()),
            // A document that cannot be fetched or is not valid names no client we know.
            Err(crate::tenancy::cimd::LookupError::Internal(_)) => Err(OAuthError::server_error()),
            Err(_) => Err(bad_credentials()),
        }
    }

    /// The client of an authorization request: stored, or a Client ID Metadata Document.
    pub async fn lookup(
        &self,
        org: &OrgRecord,
        client_id: &str,
    ) -> Result<Option<Arc<Agent>>, crate::tenancy::cimd::LookupError> {
        self.cimd.lookup(org, client_id).await
    }

    async fn by_secret(
        &self,
        org: &OrgRecord,
        client_id: &str,
        secret: &Secret,
        now: i64,
    ) -> Result<(Arc<Agent>, Presented), OAuthError> {
        let a = self.agent(org, client_id).await?;
        let fail = bad_credentials;
        if !a.auth_method.uses_secret() {
            return Err(fail());
        }
        let r = &a.record;
        let current = match (&r.secret_digest, r.secret_digest_version) {
            (Some(d), Some(v)) => self.digester.verify(secret.expose(), v, d),
            _ => false,
        };
        let previous = || match (
            &r.prev_secret_digest,
            r.prev_secret_version,
            r.prev_secret_expires_at,
        ) {
            (Some(d), Some(v), Some(exp)) if now < exp => {
                self.digester.verify(secret.expose(), v, d)
            }
            _ => false,
        };
        if current {
            Ok((a, Presented::Current))
        } else if previous() {
            Ok((a, Presented::Previous))
        } else {
            Err(fail())
        }
    }

    async fn by_assertion(
        &self,
        org: &OrgRecord,
        assertion: &Secret,
        form_client_id: Option<&str>,
        now: i64,
        endpoint: &str,
    ) -> Result<Arc<Agent>, OAuthError> {
        let token_endpoint = format!("{}/oauth2/token", org.issuer);
        let called = format!("{}{endpoint}", org.issuer);
        let audience = [
            org.issuer.as_str(),
            token_endpoint.as_str(),
            called.as_str(),
        ];
        // RFC 7523 §3: iss, sub, aud and exp are required; an access token is never an assertion.
        let expect = Expectations {
            typ: Typ::Not(crate::tokens::access_token::TYP),
            required: &[Claim::Exp, Claim::Iss, Claim::Sub, Claim::Aud],
            audience: Some(&audience),
            max_lifetime: Some(MAX_ASSERTION_LIFETIME),
            origin: Origin::Foreign,
        };
        let jws = jose::parse(assertion.expose(), &expect).map_err(refused)?;
        // Which client? The (unverified) sub names it; the signature check below binds it.
        let unverified: UnverifiedIss = jws
            .unverified_claims()
            .map_err(|_| OAuthError::invalid_client("client_assertion claims are malformed"))?;
        let client_id = unverified
            .sub
            .ok_or_else(|| OAuthError::invalid_client("client_assertion has no sub"))?;
        if unverified.iss.as_deref() != Some(client_id.as_str()) {
            return Err(OAuthError::invalid_client(
                "client_assertion iss and sub must both be the client_id",
            ));
        }
        if form_client_id.is_some_and(|c| c != client_id) {
            return Err(OAuthError::invalid_client(
                "client_id does not match the assertion",
            ));
        }
        let a = self.agent(org, &client_id).await?;
        if a.auth_method != AuthMethod::PrivateKeyJwt {
            return Err(OAuthError::invalid_client(
                "this client does not authenticate with private_key_jwt",
            ));
        }
        let claims = self.verify_with_agent_keys(&a, &jws, &expect, now).await?;
        if claims.iss != client_id || claims.sub != client_id {
            return Err(OAuthError::invalid_client(
                "client_assertion iss and sub must both be the client_id",
            ));
        }
        // No control characters: the jti becomes a stored key (PostgreSQL refuses NUL in text,
        // which failed every other caller's marker in the same batch).
        if claims.jti.is_empty()
            || claims.jti.len() > 256
            || claims.jti.chars().any(char::is_control)
        {
            return Err(OAuthError::invalid_client(
                "client_assertion needs a jti of at most 256 characters, without control characters",
            ));
        }
        // Single use: (organization, client, jti), kept until the assertion could no longer be accepted.
        let exp =
            jose::exp_seconds(&claims.exp).ok_or_else(|| refused(JoseError::BadClaim("exp")))?;
        let key = format!("client-assertion:{}:{}:{}", org.id, client_id, claims.jti);
        let fresh = self
            .replay
            .set_if_absent(&key, exp.saturating_add(jose::LEEWAY), now)
            .await
            .map_err(|_| OAuthError::server_error())?;
        if !fresh {
            return Err(OAuthError::invalid_client(
                "client_assertion jti was already used",
            ));
        }
        Ok(a)
    }

    /// Verifies with the agent's inline keys, or its `jwks_uri` keys (parsed once per fetched
    /// copy); an unknown `kid` refetches the `jwks_uri` once (rate-limited, single-flight), since
    /// the agent may have rotated.
    async fn verify_with_agent_keys(
        &self,
        a: &Agent,
        jws: &Jws<'_>,
        expect: &Expectations<'_>,
        now: i64,
    ) -> Result<AssertionClaims, OAuthError> {
        if a.jwks.is_some() {
            return jws.verify(&a.key_set, expect, now).map_err(refused);
        }
        let Some(uri) = &a.record.jwks_uri else {
            return Err(refused(JoseError::UnknownKey));
        };
        let unavailable =
            |_| OAuthError::invalid_client("the client's jwks_uri could not be fetched");
        let entry = self.agent_jwks.get(uri).await.map_err(unavailable)?;
        match jws.verify(&entry.key_set(KeySet::from_jwks), expect, now) {
            Err(JoseError::UnknownKey) => {
                let entry = self.agent_jwks.refresh(uri).await.map_err(unavailable)?;
                jws.verify(&entry.key_set(KeySet::from_jwks), expect, now)
                    .map_err(refused)
            }
            other => other.map_err(refused),
        }
    }
}

/// Every failure before the client proved its credentials: unknown client, wrong secret, a
/// client that does not use secrets (RFC 6749 §5.2 `invalid_client`, one description).
fn bad_credentials() -> OAuthError {
    OAuthError::invalid_client("unknown client or bad credentials")
}

/// An authenticated client may use the endpoints only while active (suspended and revoked
/// agents are refused, and only now is it told why).
fn active(a: Arc<Agent>) -> Result<Arc<Agent>, OAuthError> {
    if a.status == AgentStatus::Active {
        Ok(a)
    } else {
        Err(OAuthError::invalid_client("the client is not active"))
    }
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    /// A NumericDate, possibly fractional (RFC 7519 §2): the verifier has checked it.
    exp: serde_json::Value,
    jti: String,
}

#[derive(Deserialize)]
struct UnverifiedIss {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
}

/// The `invalid_client` message for each way an assertion fails.
fn refused(e: JoseError) -> OAuthError {
    OAuthError::invalid_client(match e {
        JoseError::Malformed => "client_assertion is not a JWS".to_owned(),
        JoseError::Crit => "client_assertion has an unsupported crit header".to_owned(),
        JoseError::WrongType => "an access token is not a client assertion".to_owned(),
        JoseError::UnsupportedAlg => format!(
            "client_assertion alg must be one of {}",
            jose::ALG_NAMES.join(", ")
        ),
        JoseError::UnknownKey => "no registered key of the client matches the assertion".to_owned(),
        JoseError::MissingClaim(_) => {
            "client_assertion lacks a required claim (exp, iss, sub, aud)".to_owned()
        }
        JoseError::Expired => "client_assertion has expired".to_owned(),
        JoseError::NotYetValid => "client_assertion is not yet valid (nbf)".to_owned(),
        JoseError::InvalidAudience => {
            "client_assertion aud must be the issuer or the token endpoint".to_owned()
        }
        JoseError::IatInFuture => "client_assertion iat is in the future".to_owned(),
        JoseError::LifetimeTooLong => "client_assertion lives longer than one hour".to_owned(),
        JoseError::MalformedClaims | JoseError::BadClaim(_) | JoseError::BadSignature => {
            "client_assertion signature or claims are invalid".to_owned()
        }
    })
}
