//! Organization use cases: create (with its first keys), read, rename, delete, rotate keys.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::Directory;
use super::access::{Action, Principal};
use crate::admin_error::AdminError;
use crate::ephemeral::Invalidation;
use crate::keys::{KeyService, KeyState};
use crate::model::Clock;
use crate::model::{OrgId, OrgSlug, rfc3339};
use crate::storage::{Event, OrgRecord, StorageError};

/// The Unicode bidirectional controls (UAX #9 §2: embeddings and overrides U+202A–U+202E,
/// isolates U+2066–U+2069, the marks U+200E, U+200F and U+061C). In a name shown to people they
/// make text display other than it reads ("Trojan Source", CVE-2021-42574).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// A name shown to people: 1 to 200 characters after trimming, no control characters (Cc) and no
/// bidirectional controls.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), AdminError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 200 {
        return Err(AdminError::field(
            field,
            "must be 1 to 200 printable characters",
        ));
    }
    if n.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(AdminError::field(
            field,
            "must not contain control or bidirectional-control characters (such as U+202E)",
        ));
    }
    Ok(())
}

/// The organization use cases, over what they need: the directory (organizations and their
/// cache), the signing keys, the public URL every issuer and DID derives from, and the clock.
pub struct Orgs {
    pub directory: Arc<Directory>,
    pub keys: Arc<KeyService>,
    pub public_url: url::Url,
    pub clock: Arc<dyn Clock>,
}

impl Orgs {
    /// Creates an organization with its ES256, RS256 and EdDSA keys (active at once: nobody can have
    /// cached a JWKS of an organization that did not exist).
    pub async fn create(
        &self,
        principal: &Principal,
        slug: &str,
        name: &str,
    ) -> Result<OrgRecord, AdminError> {
        if !principal.is_platform() {
            return Err(AdminError::Forbidden);
        }
        let slug = OrgSlug::parse(slug)
            .ok_or_else(|| AdminError::field("slug", "must match ^[a-z0-9][a-z0-9-]{0,62}$"))?;
        validate_name("name", name)?;
        let now = self.clock.now();
        let id = OrgId::generate(self.clock.now_ms());
        let (dek_wrapped, dek) = self.keys.master().new_data_key(&id);
        let keys = KeyService::generate_records(&id, Arc::new(dek), now, now).await?;
        let org = OrgRecord {
            id: id.clone(),
            slug: slug.as_str().to_owned(),
            name: name.trim().to_owned(),
            issuer: crate::model::did::org_issuer(&self.public_url, slug.as_str()),
            did: crate::model::did::org_did(&self.public_url, slug.as_str()),
            dek_wrapped,
            dek_mk_version: self.keys.master().version(),
            created_at: now,
            updated_at: now,
        };
        let event = Event {
            org_id: Some(id.clone()),
            kind: "org.created",
            subject: id.to_string(),
            data: json!({"slug": org.slug, "kids": keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>()}),
            at: now,
        };
        match self.directory.org_store().create(&org, &keys, &event).await {
            Ok(()) => {}
            Err(StorageError::Conflict { what: "slug" }) => {
                return Err(AdminError::Conflict(format!(
                    "slug {:?} is taken (slugs are never reused)",
                    org.slug
                )));
            }
            Err(e) => return Err(e.into()),
        }
        self.directory
            .invalidate(Invalidation::Org {
                slug: org.slug.clone(),
            })
            .await;
        Ok(org)
    }

    pub async fn list(
        &self,
        principal: &Principal,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OrgRecord>, AdminError> {
        // An organization's own principal sees its organization only: one row, not a filtered
        // page of everyone's (which would page through every organization to find it).
        if let Some(own) = principal.org_id() {
            // A principal that may not read its organization (a `scim` key) lists nothing.
            if principal.check(own, Action::Read).is_err() {
                return Ok(Vec::new());
            }
            let org = self.directory.org_store().by_id(own).await?;
            return Ok(org
                .filter(|o| after.is_none_or(|a| o.id.as_str() > a))
                .into_iter()
                .collect());
        }
        let all = self.directory.org_store().list(after, limit).await?;
        Ok(all
            .into_iter()
            .filter(|o| principal.check(&o.id, Action::Read).is_ok())
            .collect())
    }

    pub async fn rename(
        &self,
        principal: &Principal,
        slug: &str,
        name: &str,
    ) -> Result<OrgRecord, AdminError> {
        let mut org = visible(&self.directory, principal, slug, Action::Write).await?;
        validate_name("name", name)?;
        let now = self.clock.now();
        let event = Event {
            org_id: Some(org.id.clone()),
            kind: "org.updated",
            subject: org.id.to_string(),
            data: json!({"name": name.trim()}),
            at: now,
        };
        self.directory
            .org_store()
            .rename(&org.id, name.trim(), now, &event)
            .await?;
        self.directory
            .invalidate(Invalidation::Org {
                slug: org.slug.clone(),
            })
            .await;
        org.name = name.trim().to_owned();
        org.updated_at = now;
        Ok(org)
    }

    /// Tombstones the organization; its agents are revoked and its keys leave the JWKS.
    pub async fn delete(&self, principal: &Principal, slug: &str) -> Result<(), AdminError> {
        let org = visible(&self.directory, principal, slug, Action::Own).await?;
        let now = self.clock.now();
        let event = Event {
            org_id: Some(org.id.clone()),
            kind: "org.deleted",
            subject: org.id.to_string(),
            data: json!({"slug": org.slug}),
            at: now,
        };
        self.directory
            .org_store()
            .delete(&org.id, now, &event)
            .await?;
        self.directory
            .invalidate(Invalidation::Org {
                slug: org.slug.clone(),
            })
            .await;
        self.directory
            .invalidate(Invalidation::Keys {
                org_id: org.id.to_string(),
            })
            .await;
        self.keys.invalidate(&org.id).await;
        Ok(())
    }

    /// Rotates the organization's keys; answers the new keys' public view.
    pub async fn rotate_keys(
        &self,
        principal: &Principal,
        slug: &str,
    ) -> Result<KeysResponse, AdminError> {
        let org = visible(&self.directory, principal, slug, Action::Write).await?;
        let now = self.clock.now();
        let new = self.keys.rotate(&org, now).await?;
        self.directory
            .invalidate(Invalidation::Keys {
                org_id: org.id.to_string(),
            })
            .await;
        self.keys_view(
            &org,
            now,
            Some(&new.iter().map(|k| k.kid.clone()).collect::<Vec<_>>()),
        )
        .await
    }

    /// Revokes a compromised signing key: out of the JWKS and DID document at once, its tokens
    /// inactive; when it was signing, a replacement signs at once (said in the answer).
    pub async fn revoke_key(
        &self,
        principal: &Principal,
        slug: &str,
        kid: &str,
    ) -> Result<KeyRevokedResponse, AdminError> {
        let org = visible(&self.directory, principal, slug, Action::Write).await?;
        let now = self.clock.now();
        let done = self
            .keys
            .revoke(&org, kid, now)
            .await?
            .ok_or(AdminError::NotFound)?;
        self.directory
            .invalidate(Invalidation::Keys {
                org_id: org.id.to_string(),
            })
            .await;
        let replacement = match &done.replacement {
            Some(r) => self
                .keys_view(&org, now, Some(std::slice::from_ref(&r.kid)))
                .await?
                .keys
                .into_iter()
                .next(),
            None => None,
        };
        let note = match &replacement {
            Some(r) => format!(
                "{} was the active {} key: {} was created and signs from now on, without the \
                 usual pre-publication delay",
                done.kid, done.alg, r.kid
            ),
            None => format!("{} was not signing; no replacement was needed", done.kid),
        };
        Ok(KeyRevokedResponse {
            kid: done.kid,
            alg: done.alg.to_string(),
            revoked_at: rfc3339(now),
            replacement,
            note,
        })
    }

    /// Every published key of the organization with its lifecycle state.
    pub async fn keys_view(
        &self,
        org: &OrgRecord,
        now: i64,
        only: Option<&[String]>,
    ) -> Result<KeysResponse, AdminError> {
        let records = self.keys.records(&org.id, now).await?;
        let keys = records
            .iter()
            .filter(|k| only.is_none_or(|o| o.contains(&k.kid)))
            .map(|k| KeyResponse {
                activates_at: rfc3339(k.activates_at),
                alg: k.alg.to_string(),
                created_at: rfc3339(k.created_at),
                kid: k.kid.clone(),
                removed_at: k.removed_at.map(rfc3339),
                retires_at: k.retires_at.map(rfc3339),
                state: crate::keys::key_state(k.activates_at, k.retires_at, k.removed_at, now),
            })
            .collect();
        Ok(KeysResponse { keys })
    }
}

/// An organization the principal may act on; invisible ones answer `NotFound`.
pub async fn visible(
    directory: &Directory,
    principal: &Principal,
    slug: &str,
    action: Action,
) -> Result<OrgRecord, AdminError> {
    let org = match OrgSlug::parse(slug) {
        Some(s) => directory.org_store().by_slug(s.as_str()).await?,
        None => None,
    }
    .ok_or(AdminError::NotFound)?;
    principal.check(&org.id, action)?;
    Ok(org)
}

/// The answer of `POST .../keys/{kid}/revoke`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRevokedResponse {
    pub kid: String,
    pub alg: String,
    #[schema(format = DateTime)]
    pub revoked_at: String,
    /// The key activated at once in its place, when the revoked key was the one signing.
    pub replacement: Option<KeyResponse>,
    /// What happened, in words.
    pub note: String,
}

/// An organization's keys (`GET .../keys`, `POST .../keys/rotate`).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeysResponse {
    pub keys: Vec<KeyResponse>,
}

/// One signing key and its lifecycle. Fields in alphabetical order, as the JSON always had them.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyResponse {
    /// When it starts signing (it is published from creation).
    #[schema(format = DateTime)]
    pub activates_at: String,
    /// `ES256`, `RS256` or `EdDSA`.
    pub alg: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub kid: String,
    /// When it leaves the JWKS; null while it is published.
    #[schema(required = true, format = DateTime)]
    pub removed_at: Option<String>,
    /// When it stops signing; null while no newer key replaced it.
    #[schema(required = true, format = DateTime)]
    pub retires_at: Option<String>,
    pub state: KeyState,
}

/// The admin view of an organization. Fields in alphabetical order, as the JSON always had them.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgResponse {
    #[schema(format = DateTime)]
    pub created_at: String,
    /// `did:web:{host}:orgs:{slug}`.
    pub did: String,
    pub id: String,
    /// `{public_url}/orgs/{slug}`.
    pub issuer: String,
    pub name: String,
    pub slug: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

pub fn view(org: &OrgRecord) -> OrgResponse {
    OrgResponse {
        created_at: rfc3339(org.created_at),
        did: org.did.clone(),
        id: org.id.to_string(),
        issuer: org.issuer.clone(),
        name: org.name.clone(),
        slug: org.slug.clone(),
        updated_at: rfc3339(org.updated_at),
    }
}
