//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1) and `private_key_jwt`
//! (RFC 7523 §2.2 and §3, OIDC Core §9).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::error::OAuthError;
use super::form::FormParams;
use crate::idp::Idp;
use crate::model::Secret;
use crate::storage::OrgRecord;
use crate::tenancy::{Agent, AgentStatus, AuthMethod};
use crate::tokens::{Audience, HeaderError, parse_header, typ_is};

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Algorithms accepted for client assertions: asymmetric only (RFC 8725 §3.1, §3.2).
pub const ASSERTION_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The longest an assertion may live: authlib's default is one hour.
pub const MAX_ASSERTION_LIFETIME: i64 = 3600;
/// Clock-skew allowance for assertion times.
pub const LEEWAY: i64 = 60;

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

/// A verification key for an agent's registered JWK (public asymmetric keys only).
pub fn jwk_decoding_key(jwk: &Value) -> Option<jsonwebtoken::DecodingKey> {
    if PRIVATE_MEMBERS.iter().any(|m| jwk.get(m).is_some()) {
        return None;
    }
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).ok()?;
    if matches!(
        parsed.algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
    ) {
        return None;
    }
    jsonwebtoken::DecodingKey::from_jwk(&parsed).ok()
}

const PRIVATE_MEMBERS: [&str; 2] = ["d", "k"];

fn kty_fits(alg: &str, jwk: &Value) -> bool {
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or("");
    match alg {
        "ES256" => kty == "EC" && crv == "P-256",
        "ES384" => kty == "EC" && crv == "P-384",
        "EdDSA" => kty == "OKP" && crv == "Ed25519",
        _ => kty == "RSA",
    }
}

/// The `jsonwebtoken` algorithm for an allow-listed assertion alg name ([`ASSERTION_ALGS`]);
/// `None` for anything else (`none`, HMAC, unknown).
pub fn assertion_alg(alg: &str) -> Option<jsonwebtoken::Algorithm> {
    if !ASSERTION_ALGS.contains(&alg) {
        return None;
    }
    use jsonwebtoken::Algorithm as A;
    Some(match alg {
        "RS256" => A::RS256,
        "RS384" => A::RS384,
        "RS512" => A::RS512,
        "PS256" => A::PS256,
        "PS384" => A::PS384,
        "PS512" => A::PS512,
        "ES256" => A::ES256,
        "ES384" => A::ES384,
        "EdDSA" => A::EdDSA,
        _ => return None,
    })
}

/// Authenticates the client of a request to `org`'s endpoints. Every failure is
/// `invalid_client` with no hint at which part failed beyond what the client already knows.
///
/// `endpoint` is the path below the issuer that was called (`/oauth2/token`, ...): a client
/// assertion's `aud` may name the issuer, the token endpoint, or the endpoint called (RFC 7523
/// §3 lets the server choose; authlib and others default to the URL they call).
pub async fn authenticate(
    idp: &Idp,
    org: &OrgRecord,
    credentials: ClientCredentials,
    now: i64,
    endpoint: &str,
) -> Result<Arc<Agent>, OAuthError> {
    match credentials {
        ClientCredentials::Basic { client_id, secret }
        | ClientCredentials::Post { client_id, secret } => {
            by_secret(idp, org, &client_id, &secret, now).await
        }
        ClientCredentials::Jwt {
            assertion,
            client_id,
        } => by_assertion(idp, org, &assertion, client_id.as_deref(), now, endpoint).await,
        ClientCredentials::None { .. } => Err(OAuthError::invalid_client(
            "client authentication is required",
        )),
    }
}

async fn agent(idp: &Idp, org: &OrgRecord, client_id: &str) -> Result<Arc<Agent>, OAuthError> {
    let a = idp
        .directory
        .agent(&org.id, client_id)
        .await
        .map_err(|_| OAuthError::server_error())?
        .ok_or_else(|| OAuthError::invalid_client("unknown client or bad credentials"))?;
    if a.status != AgentStatus::Active {
        return Err(OAuthError::invalid_client("the client is not active"));
    }
    Ok(a)
}

async fn by_secret(
    idp: &Idp,
    org: &OrgRecord,
    client_id: &str,
    secret: &Secret,
    now: i64,
) -> Result<Arc<Agent>, OAuthError> {
    let a = agent(idp, org, client_id).await?;
    let fail = || OAuthError::invalid_client("unknown client or bad credentials");
    if !a.auth_method.uses_secret() {
        return Err(fail());
    }
    let r = &a.record;
    let current = match (&r.secret_digest, r.secret_digest_version) {
        (Some(d), Some(v)) => idp.digester.verify(secret.expose(), v, d),
        _ => false,
    };
    let previous = || match (
        &r.prev_secret_digest,
        r.prev_secret_version,
        r.prev_secret_expires_at,
    ) {
        (Some(d), Some(v), Some(exp)) if now < exp => idp.digester.verify(secret.expose(), v, d),
        _ => false,
    };
    if current || previous() {
        Ok(a)
    } else {
        Err(fail())
    }
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    #[allow(dead_code)]
    aud: Audience,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    jti: String,
}

#[derive(Deserialize)]
struct UnverifiedIss {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
}

async fn by_assertion(
    idp: &Idp,
    org: &OrgRecord,
    assertion: &Secret,
    form_client_id: Option<&str>,
    now: i64,
    endpoint: &str,
) -> Result<Arc<Agent>, OAuthError> {
    let token = assertion.expose();
    let header = parse_header(token).map_err(|e| match e {
        HeaderError::Malformed => OAuthError::invalid_client("client_assertion is not a JWS"),
        HeaderError::Crit => {
            OAuthError::invalid_client("client_assertion has an unsupported crit header")
        }
    })?;
    if typ_is(header.typ.as_deref(), crate::tokens::access_token::TYP) {
        return Err(OAuthError::invalid_client(
            "an access token is not a client assertion",
        ));
    }
    let alg = assertion_alg(&header.alg).ok_or_else(|| {
        OAuthError::invalid_client(format!(
            "client_assertion alg must be one of {}",
            ASSERTION_ALGS.join(", ")
        ))
    })?;
    // Which client? The (unverified) sub names it; the signature check below binds it.
    let unverified: UnverifiedIss = jsonwebtoken::dangerous::insecure_decode_claims(token)
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
    let a = agent(idp, org, &client_id).await?;
    if a.auth_method != AuthMethod::PrivateKeyJwt {
        return Err(OAuthError::invalid_client(
            "this client does not authenticate with private_key_jwt",
        ));
    }
    let token_endpoint = format!("{}/oauth2/token", org.issuer);
    let called = format!("{}{endpoint}", org.issuer);
    let mut v = jsonwebtoken::Validation::new(alg);
    v.leeway = LEEWAY as u64;
    v.set_audience(&[
        org.issuer.as_str(),
        token_endpoint.as_str(),
        called.as_str(),
    ]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.validate_nbf = true;
    let claims =
        verify_with_agent_keys(idp, &a, token, header.kid.as_deref(), &header.alg, &v).await?;
    if claims.iss != client_id || claims.sub != client_id {
        return Err(OAuthError::invalid_client(
            "client_assertion iss and sub must both be the client_id",
        ));
    }
    if claims.exp > now + MAX_ASSERTION_LIFETIME + LEEWAY {
        return Err(OAuthError::invalid_client(
            "client_assertion exp is more than one hour ahead",
        ));
    }
    if claims.iat.is_some_and(|iat| iat > now + LEEWAY) {
        return Err(OAuthError::invalid_client(
            "client_assertion iat is in the future",
        ));
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(OAuthError::invalid_client(
            "client_assertion needs a jti of at most 256 characters",
        ));
    }
    // Single use: (organization, client, jti), kept until the assertion could no longer be accepted.
    let key = format!("client-assertion:{}:{}:{}", org.id, client_id, claims.jti);
    let fresh = idp
        .replay
        .set_if_absent(&key, claims.exp + LEEWAY, now)
        .await
        .map_err(|_| OAuthError::server_error())?;
    if !fresh {
        return Err(OAuthError::invalid_client(
            "client_assertion jti was already used",
        ));
    }
    Ok(a)
}

async fn verify_with_agent_keys(
    idp: &Idp,
    a: &Agent,
    token: &str,
    kid: Option<&str>,
    alg: &str,
    v: &jsonwebtoken::Validation,
) -> Result<AssertionClaims, OAuthError> {
    let try_set = |jwks: &Value| -> Option<Result<AssertionClaims, jsonwebtoken::errors::Error>> {
        let keys = jwks.get("keys")?.as_array()?;
        let candidates: Vec<&Value> = keys
            .iter()
            .filter(|k| match kid {
                Some(kid) => k.get("kid").and_then(Value::as_str) == Some(kid),
                None => true,
            })
            .filter(|k| kty_fits(alg, k))
            .filter(|k| {
                k.get("alg")
                    .and_then(Value::as_str)
                    .is_none_or(|ka| ka == alg)
            })
            .collect();
        let mut last = None;
        for k in candidates {
            let Some(dk) = jwk_decoding_key(k) else {
                continue;
            };
            match jsonwebtoken::decode::<AssertionClaims>(token, &dk, v) {
                Ok(d) => return Some(Ok(d.claims)),
                Err(e) => last = Some(Err(e)),
            }
        }
        last
    };
    let outcome = if let Some(jwks) = &a.jwks {
        try_set(jwks)
    } else if let Some(uri) = &a.record.jwks_uri {
        let entry = idp.agent_jwks.get(uri).await.map_err(|_| {
            OAuthError::invalid_client("the client's jwks_uri could not be fetched")
        })?;
        match try_set(&entry.doc) {
            // Unknown kid: the agent may have rotated; refetch (rate-limited, single-flight).
            None => {
                let entry = idp.agent_jwks.refresh(uri).await.map_err(|_| {
                    OAuthError::invalid_client("the client's jwks_uri could not be fetched")
                })?;
                try_set(&entry.doc)
            }
            some => some,
        }
    } else {
        None
    };
    match outcome {
        Some(Ok(c)) => Ok(c),
        Some(Err(e)) => Err(OAuthError::invalid_client(match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "client_assertion has expired",
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                "client_assertion aud must be the issuer or the token endpoint"
            }
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                "client_assertion is not yet valid (nbf)"
            }
            jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                "client_assertion lacks a required claim (exp, iss, sub, aud)"
            }
            _ => "client_assertion signature or claims are invalid",
        })),
        None => Err(OAuthError::invalid_client(
            "no registered key of the client matches the assertion",
        )),
    }
}
