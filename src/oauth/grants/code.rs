//! The authorization code grant (RFC 6749 §4.1.3, OIDC Core §3.1.3) and the refresh token grant
//! (RFC 6749 §6) with rotation (RFC 9700 §4.14.2): tokens for a person, issued to the client
//! the person signed in to.
//!
//! - A code is redeemed once: a second redemption is `invalid_grant` and revokes the access
//!   token and the refresh-token family the first one was issued (RFC 6749 §4.1.2).
//! - The code must be the client's, its `redirect_uri` repeated exactly when the authorization
//!   request had one (§4.1.3), its PKCE verifier match (RFC 7636 §4.6); every mismatch is
//!   `invalid_grant`, as a code of another organization (it is not found there).
//! - A refresh token is rotated on every use; presenting a used one revokes its family and the
//!   access tokens issued in it. It lives [`REFRESH_IDLE_SECS`] unused and its family at most
//!   [`REFRESH_FAMILY_SECS`]; a narrower `scope` may be asked for (§6), never a wider one.
//! - The person must still be active; the client must be registered for the grant.

use crate::model::new_id;
use crate::oauth::OAuth;
use crate::oauth::authorize::{CODE_PREFIX, pkce_matches, pkce_shaped};
use crate::oauth::client_auth::ClientCredentials;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::form::FormParams;
use crate::oauth::wire::TokenResponse;
use crate::storage::{OrgRecord, Redeemed, RefreshRecord, Rotated, UserRecord, UserStatus};
use crate::tenancy::Agent;
use crate::tenancy::clients::{self, AUTHORIZATION_CODE, REFRESH_TOKEN};
use crate::tokens::access_token::{self, AccessClaims};
use crate::tokens::{Audience, id_token};

pub const REFRESH_PREFIX: &str = "aidp_r_";
/// A refresh token unused this long is dead (30 days).
pub const REFRESH_IDLE_SECS: i64 = 30 * 86_400;
/// A refresh-token family (one sign-in's chain) ends this long after the code (90 days).
pub const REFRESH_FAMILY_SECS: i64 = 90 * 86_400;

/// What the tokens of one issuance are about.
struct Grant<'a> {
    client: &'a Agent,
    user: &'a UserRecord,
    session_id: &'a str,
    scopes: &'a [String],
    resource: &'a [String],
    auth_time: i64,
    amr: &'a [String],
    nonce: Option<&'a str>,
}

fn invalid_grant(d: &str) -> OAuthError {
    OAuthError::invalid_grant(d.to_owned())
}

impl OAuth {
    /// `grant_type=authorization_code`.
    pub async fn redeem_code(
        &self,
        org: &OrgRecord,
        credentials: ClientCredentials,
        form: &FormParams,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let (client, policy) = self
            .clients
            .authenticate_or_public(org, credentials, now, "/oauth2/token")
            .await?;
        if !clients::allows_grant(&client.record, AUTHORIZATION_CODE) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for the authorization_code grant",
            ));
        }
        let code = form.require("code")?;
        let verifier = form.require("code_verifier")?;
        if !pkce_shaped(verifier) {
            return Err(OAuthError::invalid_request(
                "code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1)",
            ));
        }
        let bad = || invalid_grant("the code is invalid, expired, used or not this client's");
        let id = crate::tenancy::principals::token_id(code, CODE_PREFIX).ok_or_else(bad)?;
        let rec = self
            .grants
            .code(&org.id, id)
            .await
            .map_err(|_| OAuthError::server_error())?
            .ok_or_else(bad)?;
        if !self
            .clients
            .digester
            .verify(code, rec.digest_version, &rec.digest)
        {
            return Err(bad());
        }
        if rec.client_id != client.client_id() || now >= rec.expires_at {
            return Err(bad());
        }
        if rec.used_at.is_some() {
            self.revoke_code_issue(
                org,
                &rec.access_jti,
                rec.access_exp,
                rec.refresh_family.as_deref(),
                now,
            )
            .await;
            return Err(invalid_grant(
                "the code was used before; what it was redeemed for is revoked",
            ));
        }
        // §4.1.3: redirect_uri "REQUIRED, if ... included in the authorization request, and
        // their values MUST be identical".
        match (rec.redirect_uri.as_str(), form.get("redirect_uri")) {
            ("", None) => {}
            (sent, Some(given)) if !sent.is_empty() && sent == given => {}
            _ => {
                return Err(invalid_grant(
                    "redirect_uri does not match the authorization request",
                ));
            }
        }
        if !pkce_matches(verifier, &rec.code_challenge) {
            return Err(invalid_grant(
                "the code_verifier does not match the code_challenge",
            ));
        }
        let user = self.active_user(org, &rec.user_id).await?;
        let ttl = policy.cap_ttl(
            client
                .record
                .access_token_ttl
                .map_or(self.access_token_ttl, |t| t.min(self.access_token_ttl)),
        );
        let jti = new_id(self.clock.now_ms());
        let refresh = rec.scopes.iter().any(|s| s == "offline_access")
            && clients::allows_grant(&client.record, REFRESH_TOKEN);
        let family = refresh.then(|| uuid::Uuid::new_v4().simple().to_string());
        match self
            .grants
            .redeem_code(&org.id, &rec.id, now, &jti, now + ttl, family.as_deref())
            .await
            .map_err(|_| OAuthError::server_error())?
        {
            Redeemed::Now => {}
            Redeemed::Before(first) => {
                self.revoke_code_issue(
                    org,
                    &first.access_jti,
                    first.access_exp,
                    first.refresh_family.as_deref(),
                    now,
                )
                .await;
                return Err(invalid_grant(
                    "the code was used before; what it was redeemed for is revoked",
                ));
            }
            Redeemed::Missing => return Err(bad()),
        }
        let grant = Grant {
            client: &client,
            user: &user,
            session_id: &rec.session_id,
            scopes: &rec.scopes,
            resource: &rec.resource,
            auth_time: rec.auth_time,
            amr: &rec.amr,
            nonce: rec.nonce.as_deref(),
        };
        let refresh_token = match &family {
            Some(f) => Some(
                self.new_refresh(
                    org,
                    &grant,
                    f,
                    now + REFRESH_FAMILY_SECS,
                    &jti,
                    now + ttl,
                    now,
                )
                .await?,
            ),
            None => None,
        };
        self.person_tokens(org, &grant, jti, ttl, refresh_token, true, now)
            .await
    }

    /// `grant_type=refresh_token`.
    pub async fn refresh(
        &self,
        org: &OrgRecord,
        credentials: ClientCredentials,
        form: &FormParams,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let (client, policy) = self
            .clients
            .authenticate_or_public(org, credentials, now, "/oauth2/token")
            .await?;
        if !clients::allows_grant(&client.record, REFRESH_TOKEN) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for the refresh_token grant",
            ));
        }
        let token = form.require("refresh_token")?;
        let old = self.refresh_record(org, token).await?;
        let bad =
            || invalid_grant("the refresh token is invalid, expired, revoked or not this client's");
        if old.client_id != client.client_id() {
            return Err(bad());
        }
        if old.used_at.is_some() || old.revoked_at.is_some() {
            // RFC 9700 §4.14.2: a rotated token presented again: the family is compromised.
            let issued = self
                .grants
                .revoke_family(&org.id, &old.family_id, now)
                .await
                .map_err(|_| OAuthError::server_error())?;
            self.revoke_issued(org, &issued).await;
            return Err(invalid_grant(
                "the refresh token was used before; its family is revoked",
            ));
        }
        if now >= old.expires_at || now >= old.family_expires_at {
            return Err(bad());
        }
        // §6: a narrower scope may be asked for.
        let scopes: Vec<String> = match form.get("scope") {
            None => old.scopes.clone(),
            Some(s) => {
                let mut out: Vec<String> = Vec::new();
                for t in s.split(' ').filter(|t| !t.is_empty()) {
                    if !old.scopes.iter().any(|o| o == t) {
                        return Err(OAuthError::new(
                            ErrorCode::InvalidScope,
                            format!(
                                "scope '{}' was not granted",
                                t.chars().take(80).collect::<String>()
                            ),
                        ));
                    }
                    if !out.iter().any(|o| o == t) {
                        out.push(t.to_owned());
                    }
                }
                out
            }
        };
        let user = self.active_user(org, &old.user_id).await?;
        let ttl = policy.cap_ttl(
            client
                .record
                .access_token_ttl
                .map_or(self.access_token_ttl, |t| t.min(self.access_token_ttl)),
        );
        let jti = new_id(self.clock.now_ms());
        let grant = Grant {
            client: &client,
            user: &user,
            session_id: &old.session_id,
            scopes: &scopes,
            resource: &old.resource,
            auth_time: old.auth_time,
            amr: &old.amr,
            nonce: None,
        };
        let (new, secret) = self.refresh_row(
            org,
            &grant,
            &old.family_id,
            old.family_expires_at,
            &jti,
            now + ttl,
            now,
        );
        // The family's scopes stay those of the sign-in: a narrower request narrows this
        // access token only.
        let new = RefreshRecord {
            scopes: old.scopes.clone(),
            ..new
        };
        match self
            .grants
            .rotate_refresh(&org.id, &old.id, now, &new)
            .await
            .map_err(|_| OAuthError::server_error())?
        {
            Rotated::Now => {}
            Rotated::Reused(issued) => {
                self.revoke_issued(org, &issued).await;
                return Err(invalid_grant(
                    "the refresh token was used before; its family is revoked",
                ));
            }
        }
        self.person_tokens(
            org,
            &grant,
            jti,
            ttl,
            Some(secret),
            scopes.iter().any(|s| s == "openid"),
            now,
        )
        .await
    }

    /// The stored refresh token a presented one names (its digest checked).
    pub async fn refresh_record(
        &self,
        org: &OrgRecord,
        token: &str,
    ) -> Result<RefreshRecord, OAuthError> {
        let bad =
            || invalid_grant("the refresh token is invalid, expired, revoked or not this client's");
        let id = crate::tenancy::principals::token_id(token, REFRESH_PREFIX).ok_or_else(bad)?;
        let rec = self
            .grants
            .refresh(&org.id, id)
            .await
            .map_err(|_| OAuthError::server_error())?
            .ok_or_else(bad)?;
        if !self
            .clients
            .digester
            .verify(token, rec.digest_version, &rec.digest)
        {
            return Err(bad());
        }
        Ok(rec)
    }

    /// The person, active (a suspended or deleted person gets no tokens: `invalid_grant`).
    async fn active_user(&self, org: &OrgRecord, user_id: &str) -> Result<UserRecord, OAuthError> {
        self.users
            .user(&org.id, user_id)
            .await
            .map_err(|_| OAuthError::server_error())?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or_else(|| invalid_grant("the person is not active"))
    }

    /// After a code's second redemption: revokes its access token and refresh family.
    async fn revoke_code_issue(
        &self,
        org: &OrgRecord,
        jti: &Option<String>,
        exp: Option<i64>,
        family: Option<&str>,
        now: i64,
    ) {
        if let (Some(jti), Some(exp)) = (jti, exp) {
            self.revoke_issued(org, &[(jti.clone(), exp)]).await;
        }
        if let Some(f) = family
            && let Ok(issued) = self.grants.revoke_family(&org.id, f, now).await
        {
            self.revoke_issued(org, &issued).await;
        }
        tracing::warn!(event = "oauth.code_reused", org = %org.slug, "an authorization code was redeemed twice; what it was issued is revoked");
    }

    /// Ends what a person's refresh tokens would still give (after a password reset or "sign out
    /// everywhere"): every refresh token of the person, and the access tokens issued with them.
    pub async fn revoke_person(&self, org: &OrgRecord, user_id: &str) -> Result<(), OAuthError> {
        let issued = self
            .grants
            .revoke_user_refresh(&org.id, user_id, None, self.clock.now())
            .await
            .map_err(|_| OAuthError::server_error())?;
        self.revoke_issued(org, &issued).await;
        Ok(())
    }

    /// Adds access tokens (`jti`, `exp`) to the revocation list.
    pub(crate) async fn revoke_issued(&self, org: &OrgRecord, issued: &[(String, i64)]) {
        for (jti, exp) in issued {
            if let Err(e) = self.revocations.revoke(&org.id, jti, *exp).await {
                tracing::error!(error = %e, "revoking an access token failed");
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn refresh_row(
        &self,
        org: &OrgRecord,
        g: &Grant<'_>,
        family: &str,
        family_expires_at: i64,
        access_jti: &str,
        access_exp: i64,
        now: i64,
    ) -> (RefreshRecord, crate::model::Secret) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = crate::tenancy::principals::new_token(REFRESH_PREFIX, &id);
        let rec = RefreshRecord {
            org_id: org.id.clone(),
            id,
            family_id: family.to_owned(),
            digest: self.clients.digester.digest(secret.expose()),
            digest_version: self.clients.digester.version(),
            client_id: g.client.client_id().to_owned(),
            user_id: g.user.id.clone(),
            session_id: g.session_id.to_owned(),
            scopes: g.scopes.to_vec(),
            resource: g.resource.to_vec(),
            auth_time: g.auth_time,
            amr: g.amr.to_vec(),
            created_at: now,
            expires_at: (now + REFRESH_IDLE_SECS).min(family_expires_at),
            family_expires_at,
            access_jti: access_jti.to_owned(),
            access_exp,
            used_at: None,
            revoked_at: None,
        };
        (rec, secret)
    }

    #[allow(clippy::too_many_arguments)]
    async fn new_refresh(
        &self,
        org: &OrgRecord,
        g: &Grant<'_>,
        family: &str,
        family_expires_at: i64,
        access_jti: &str,
        access_exp: i64,
        now: i64,
    ) -> Result<crate::model::Secret, OAuthError> {
        let (rec, secret) = self.refresh_row(
            org,
            g,
            family,
            family_expires_at,
            access_jti,
            access_exp,
            now,
        );
        self.grants
            .create_refresh(&rec)
            .await
            .map_err(|_| OAuthError::server_error())?;
        Ok(secret)
    }

    /// The access token (and ID token, with `openid` when `with_id_token`) of a person.
    #[allow(clippy::too_many_arguments)]
    async fn person_tokens(
        &self,
        org: &OrgRecord,
        g: &Grant<'_>,
        jti: String,
        ttl: i64,
        refresh_token: Option<crate::model::Secret>,
        with_id_token: bool,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let keys = self
            .keys
            .org_keys(org, now)
            .await
            .map_err(|_| OAuthError::server_error())?;
        let aud = if g.resource.is_empty() {
            vec![org.issuer.clone()]
        } else {
            g.resource.to_vec()
        };
        let scope = (!g.scopes.is_empty()).then(|| g.scopes.join(" "));
        // An agent as the client: it acts for the person under their delegation grant.
        let (act, dlg) = if g.client.kind == crate::model::ClientKind::Agent {
            let grant = self
                .delegations
                .delegations_in_force(&org.id, &g.user.id, g.client.client_id(), now)
                .await
                .map_err(|_| OAuthError::server_error())?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    invalid_grant("the person's delegation to this agent was revoked")
                })?;
            (
                Some(serde_json::json!({ "sub": g.client.record.did })),
                Some(vec![grant.id]),
            )
        } else {
            (None, None)
        };
        let claims = AccessClaims {
            iss: org.issuer.clone(),
            sub: g.user.id.clone(),
            aud: Audience::from_vec(aud),
            exp: now + ttl,
            iat: now,
            jti,
            client_id: g.client.client_id().to_owned(),
            scope: scope.clone(),
            org_id: Some(org.id.to_string()),
            did: None,
            agent_name: None,
            federated: None,
            act,
            dlg,
        };
        let at_key = keys
            .signing_key(g.client.access_token_alg, now)
            .ok_or_else(OAuthError::server_error)?;
        let access_token = crate::tokens::sign(at_key, access_token::TYP, &claims)
            .map_err(|_| OAuthError::server_error())?;
        metrics::counter!("agentidp_tokens_issued_total", "grant" => "authorization_code", "alg" => g.client.access_token_alg.as_str())
            .increment(1);
        let has = |s: &str| g.scopes.iter().any(|x| x == s);
        let id_token = if with_id_token && has("openid") {
            let idc = id_token::PersonIdClaims {
                iss: &org.issuer,
                sub: &g.user.id,
                aud: g.client.client_id(),
                azp: g.client.client_id(),
                exp: now + ttl,
                iat: now,
                auth_time: g.auth_time,
                jti: new_id(self.clock.now_ms()),
                amr: g.amr,
                sid: g.session_id,
                nonce: g.nonce,
                org_id: &org.id,
                email: has("email").then_some(g.user.email.as_str()),
                email_verified: has("email").then_some(g.user.email_verified),
                name: has("profile").then_some(g.user.name.as_str()),
            };
            let key = keys
                .signing_key(g.client.id_token_alg, now)
                .ok_or_else(OAuthError::server_error)?;
            Some(
                crate::tokens::sign(key, id_token::TYP, &idc)
                    .map_err(|_| OAuthError::server_error())?,
            )
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            scope,
            id_token,
            issued_token_type: None,
            refresh_token: refresh_token.map(|s| s.expose().to_owned()),
        })
    }
}
