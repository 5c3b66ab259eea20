//! People's sign-in sessions: password sign-in, the session a cookie names, sign-out, and the
//! lists of sessions a person and an admin see.
//!
//! The cookie value is the credential `aidp_s_<id>_<secret>` (256 random bits); only its keyed
//! digest is stored and compared in constant time. A session is in force while it is not ended,
//! its absolute end (sign-in + the policy's `absolute_timeout_secs`) has not passed, it was used
//! within the policy's `idle_timeout_secs`, its person is active, and it began after the
//! person's last password change. Its last use is written at most once a minute, so a page view
//! is no write.
//!
//! Sign-in answers the same refusal for an unknown address, a wrong password, an account
//! without a password and a suspended account, after the same argon2id work (a dummy
//! verification where there is no hash), so neither the answer nor its timing tells which. The
//! failure brake (per address, per account and the two together) is the edge's, as at the token
//! endpoint: see `http::login`.

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::normalize_email;
use super::passwords::Passwords;
use crate::keys::SecretDigester;
use crate::model::{Clock, Secret, rfc3339};
use crate::storage::{
    SessionRecord, SessionStore, StorageError, UserFilter, UserRecord, UserStatus, UserStore,
};
use crate::tenancy::policy::{Policies, SessionRules};

const TOKEN_PREFIX: &str = "aidp_s_";

/// How often a session's last use is written (seconds).
const TOUCH_EVERY: i64 = 60;

/// A session in force and its person.
#[derive(Debug, Clone)]
pub struct Session {
    pub record: SessionRecord,
    pub user: UserRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown address, wrong password, no password, not active: one answer for all.
    #[error("the email or password is not right")]
    Refused,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StorageError> for LoginError {
    fn from(e: StorageError) -> Self {
        LoginError::Internal(e.to_string())
    }
}

/// A session as the admin API and the person see it (never its credential).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    pub id: String,
    pub user_id: String,
    /// How the person signed in (RFC 8176: `pwd`).
    pub amr: Vec<String>,
    #[schema(format = DateTime)]
    pub auth_time: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub ip: String,
    pub user_agent: String,
}

pub fn view(s: &SessionRecord) -> SessionResponse {
    SessionResponse {
        id: s.id.clone(),
        user_id: s.user_id.clone(),
        amr: s.amr.clone(),
        auth_time: rfc3339(s.auth_time),
        created_at: rfc3339(s.created_at),
        last_seen_at: rfc3339(s.last_seen_at),
        expires_at: rfc3339(s.expires_at),
        ip: s.ip.clone(),
        user_agent: s.user_agent.clone(),
    }
}

/// The session use cases.
pub struct Sessions {
    pub users: Arc<dyn UserStore>,
    pub store: Arc<dyn SessionStore>,
    pub passwords: Arc<Passwords>,
    pub digester: Arc<SecretDigester>,
    pub policies: Arc<Policies>,
    pub clock: Arc<dyn Clock>,
}

impl Sessions {
    async fn rules(&self, org_id: &str) -> Result<SessionRules, StorageError> {
        Ok(self.policies.get(org_id).await?.sessions())
    }

    /// The active user of `org_id` with this address and password.
    pub async fn check_password(
        &self,
        org_id: &str,
        email: &str,
        password: &Secret,
    ) -> Result<UserRecord, LoginError> {
        let user = match normalize_email(email) {
            Ok((_, normalized)) => self
                .users
                .list_users(
                    org_id,
                    &UserFilter {
                        email: Some(normalized),
                        ..UserFilter::default()
                    },
                    None,
                    1,
                )
                .await?
                .into_iter()
                .next(),
            Err(_) => None,
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = match &hash {
            Some(h) => self
                .passwords
                .verify(password, h)
                .await
                .map_err(|e| LoginError::Internal(e.to_string()))?,
            None => self
                .passwords
                .verify_dummy(password)
                .await
                .map_err(|e| LoginError::Internal(e.to_string()))?,
        };
        match user {
            Some(u) if ok && u.status == UserStatus::Active => Ok(u),
            _ => Err(LoginError::Refused),
        }
    }

    /// Starts a session for `user`, signed in now by `amr`; the cookie value, shown once. With
    /// the policy's `single_session` the person's other sessions end.
    pub async fn start(
        &self,
        user: &UserRecord,
        amr: &[&str],
        ip: &str,
        user_agent: &str,
    ) -> Result<(SessionRecord, Secret), StorageError> {
        let rules = self.rules(&user.org_id).await?;
        let now = self.clock.now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let token = crate::tenancy::principals::new_token(TOKEN_PREFIX, &id);
        let record = SessionRecord {
            org_id: user.org_id.clone(),
            id,
            digest: self.digester.digest(token.expose()),
            digest_version: self.digester.version(),
            user_id: user.id.clone(),
            auth_time: now,
            amr: amr.iter().map(|s| (*s).to_owned()).collect(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + rules.absolute_timeout_secs,
            ip: ip.chars().take(64).collect(),
            user_agent: user_agent.chars().take(256).collect(),
            ended_at: None,
        };
        self.store.create_session(&record).await?;
        if rules.single_session {
            self.store
                .end_user_sessions(&user.org_id, &user.id, Some(&record.id), now)
                .await?;
        }
        Ok((record, token))
    }

    /// The session in force that `cookie` names in `org_id`, if any (see the module doc);
    /// records its use.
    pub async fn current(
        &self,
        org_id: &str,
        cookie: &str,
    ) -> Result<Option<Session>, StorageError> {
        let Some(id) = crate::tenancy::principals::token_id(cookie, TOKEN_PREFIX) else {
            return Ok(None);
        };
        let Some(record) = self.store.session(org_id, id).await? else {
            return Ok(None);
        };
        if !self
            .digester
            .verify(cookie, record.digest_version, &record.digest)
        {
            return Ok(None);
        }
        let now = self.clock.now();
        let rules = self.rules(org_id).await?;
        if record.ended_at.is_some()
            || now >= record.expires_at
            || now >= record.last_seen_at + rules.idle_timeout_secs
        {
            return Ok(None);
        }
        let Some(user) = self.users.user(org_id, &record.user_id).await? else {
            return Ok(None);
        };
        if user.status != UserStatus::Active {
            return Ok(None);
        }
        if now - record.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(org_id, &record.id, now).await?;
        }
        Ok(Some(Session { record, user }))
    }

    /// Has the person signed in within the policy's `reauthenticate_after_secs` (for sensitive
    /// actions)?
    pub async fn recent(&self, s: &Session) -> Result<bool, StorageError> {
        let rules = self.rules(&s.record.org_id).await?;
        Ok(self.clock.now() - s.record.auth_time <= rules.reauthenticate_after_secs)
    }

    /// Ends one session (sign-out); `false` if it was not live.
    pub async fn end(&self, org_id: &str, id: &str) -> Result<bool, StorageError> {
        self.store.end_session(org_id, id, self.clock.now()).await
    }

    /// The person's sessions in force.
    pub async fn of_user(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> Result<Vec<SessionRecord>, StorageError> {
        let now = self.clock.now();
        let rules = self.rules(org_id).await?;
        Ok(self
            .store
            .user_sessions(org_id, user_id, now)
            .await?
            .into_iter()
            .filter(|s| now < s.last_seen_at + rules.idle_timeout_secs)
            .collect())
    }

    /// Ends every session of the person; how many.
    pub async fn end_all(&self, org_id: &str, user_id: &str) -> Result<u64, StorageError> {
        self.store
            .end_user_sessions(org_id, user_id, None, self.clock.now())
            .await
    }
}

/// May `principal` see and end other people's sessions in `org_id`? An admin may (a person
/// sees and ends their own on the account page, by their session).
fn may_touch_sessions(
    principal: &crate::tenancy::access::Principal,
    org_id: &str,
) -> Result<(), crate::admin_error::AdminError> {
    Ok(principal.check(org_id, crate::tenancy::access::Action::Write)?)
}

impl Sessions {
    /// The sessions in force of a person of `org` (the person themselves or an admin).
    pub async fn list_for(
        &self,
        principal: &crate::tenancy::access::Principal,
        org: &crate::storage::OrgRecord,
        user_id: &str,
    ) -> Result<Vec<SessionRecord>, crate::admin_error::AdminError> {
        may_touch_sessions(principal, &org.id)?;
        self.users
            .user(&org.id, user_id)
            .await?
            .ok_or(crate::admin_error::AdminError::NotFound)?;
        Ok(self.of_user(&org.id, user_id).await?)
    }

    /// Ends one session of a person (`None`: all of them); `NotFound` for a session that is not
    /// theirs or not in force.
    pub async fn end_for(
        &self,
        principal: &crate::tenancy::access::Principal,
        org: &crate::storage::OrgRecord,
        user_id: &str,
        session_id: Option<&str>,
    ) -> Result<(), crate::admin_error::AdminError> {
        use crate::admin_error::AdminError;
        may_touch_sessions(principal, &org.id)?;
        self.users
            .user(&org.id, user_id)
            .await?
            .ok_or(AdminError::NotFound)?;
        match session_id {
            None => {
                self.end_all(&org.id, user_id).await?;
                Ok(())
            }
            Some(sid) => {
                let s = self
                    .store
                    .session(&org.id, sid)
                    .await?
                    .filter(|s| s.user_id == user_id && s.ended_at.is_none())
                    .ok_or(AdminError::NotFound)?;
                self.end(&org.id, &s.id).await?;
                Ok(())
            }
        }
    }
}
