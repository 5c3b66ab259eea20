//! Partner registration and management. Registration by issuer alone discovers the `jwks_uri`
//! (OIDC Discovery, then RFC 8414 §3.1) and requires the document's `issuer` to match exactly
//! (RFC 8414 §3.3); registration by DID requires the DID document to name the issuer in a service.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use std::sync::Arc;

use super::{DEFAULT_MAX_ASSERTION_LIFETIME, Partner, PartnerDirectory};
use crate::admin_error::{AdminError, IfMatch};
use crate::did::resolver::Resolver;
use crate::fetch::Fetcher;
use crate::model::Clock;
use crate::model::{PartnerId, rfc3339};
use crate::remote::RemoteJson;
use crate::storage::{Event, OrgRecord, PartnerRecord, StorageError};
use crate::tenancy::Directory;
use crate::tenancy::access::{Action, Principal};
use crate::tenancy::{agents, orgs};

/// Registration / update input. On update only the given fields change (`issuer` never does).
/// At most one of `jwks_uri`, `jwks` and `did`; with none, the `jwks_uri` is discovered.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerInput {
    /// The partner's issuer URL (required on registration; never changes).
    pub issuer: Option<String>,
    /// 1 to 200 printable characters; `null` removes it (RFC 7396).
    #[serde(default, deserialize_with = "agents::present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    pub jwks_uri: Option<String>,
    /// A JWK Set of public keys.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    /// A DID whose document names the issuer in a service.
    pub did: Option<String>,
    /// Scopes a federated identity may be granted.
    pub allowed_scopes: Option<Vec<String>>,
    /// Accepted `aud` values (default: our issuer and token endpoint).
    pub allowed_audiences: Option<Vec<String>>,
    /// 1 to 86400 (default 3600).
    pub max_assertion_lifetime_secs: Option<i64>,
    /// Partner claim name to local claim name.
    pub claim_mapping: Option<std::collections::BTreeMap<String, String>>,
    pub enabled: Option<bool>,
}

/// Partner registration and management, over what it needs: the organizations' directory (who
/// may see what), the partners' directory, the fetcher and the partners' cached key sets (a
/// registration fetches them once to prove they work), the DID resolver (partners registered
/// by DID) and the clock.
pub struct Partners {
    pub directory: Arc<Directory>,
    pub partners: Arc<PartnerDirectory>,
    pub fetcher: Fetcher,
    pub partner_jwks: Arc<RemoteJson>,
    pub resolver: Arc<Resolver>,
    pub clock: Arc<dyn Clock>,
}

impl Partners {
    fn check_issuer(&self, issuer: &str) -> Result<url::Url, AdminError> {
        let u = url::Url::parse(issuer)
            .map_err(|_| AdminError::field("issuer", "must be an absolute URL"))?;
        if u.query().is_some() || u.fragment().is_some() {
            return Err(AdminError::field(
                "issuer",
                "must not have a query or fragment (RFC 8414 §2)",
            ));
        }
        crate::fetch::check_url(&u, self.fetcher.policy())
            .map_err(|e| AdminError::field("issuer", e.to_string()))?;
        Ok(u)
    }

    /// `{issuer}/.well-known/openid-configuration`, then the RFC 8414 §3.1 location; the document's
    /// `issuer` must equal ours exactly; returns its `jwks_uri`.
    pub async fn discover_jwks_uri(&self, issuer: &str) -> Result<String, AdminError> {
        let u = self.check_issuer(issuer)?;
        let oidc = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let path = u.path().trim_end_matches('/');
        let rfc8414 = format!(
            "{}/.well-known/oauth-authorization-server{path}",
            u.origin().ascii_serialization()
        );
        let mut last = String::new();
        for url in [oidc, rfc8414] {
            match self.fetcher.get_json(&url).await {
                Ok((doc, _)) => {
                    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
                        return Err(AdminError::field(
                            "issuer",
                            format!("the metadata at {url} names another issuer"),
                        ));
                    }
                    let jwks_uri =
                        doc.get("jwks_uri").and_then(Value::as_str).ok_or_else(|| {
                            AdminError::field(
                                "issuer",
                                format!("the metadata at {url} has no jwks_uri"),
                            )
                        })?;
                    return Ok(jwks_uri.to_owned());
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(AdminError::field(
            "issuer",
            format!("no OIDC or RFC 8414 metadata found ({last})"),
        ))
    }

    async fn apply(&self, rec: &mut PartnerRecord, input: PartnerInput) -> Result<(), AdminError> {
        match input.name {
            None => {}
            Some(None) => rec.name = None,
            Some(Some(n)) => {
                orgs::validate_name("name", &n)?;
                rec.name = Some(n.trim().to_owned());
            }
        }
        if let Some(s) = input.allowed_scopes {
            validate_list("allowed_scopes", &s)?;
            if let Some(bad) = s.iter().find(|s| !agents::valid_scope_token(s)) {
                return Err(AdminError::field(
                    "allowed_scopes",
                    format!("{bad:?} is not a valid scope token"),
                ));
            }
            rec.allowed_scopes = s;
        }
        if let Some(a) = input.allowed_audiences {
            validate_list("allowed_audiences", &a)?;
            if a.is_empty() {
                return Err(AdminError::field("allowed_audiences", "must not be empty"));
            }
            rec.allowed_audiences = a;
        }
        if let Some(l) = input.max_assertion_lifetime_secs {
            if !(1..=86_400).contains(&l) {
                return Err(AdminError::field(
                    "max_assertion_lifetime_secs",
                    "must be between 1 and 86400",
                ));
            }
            rec.max_assertion_lifetime = l;
        }
        if let Some(m) = input.claim_mapping {
            if m.len() > 50
                || m.iter()
                    .any(|(k, v)| k.is_empty() || v.is_empty() || k.len() > 128 || v.len() > 128)
            {
                return Err(AdminError::field(
                    "claim_mapping",
                    "at most 50 entries of non-empty claim names",
                ));
            }
            const RESERVED: [&str; 8] =
                ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "federated"];
            if let Some(bad) = m.values().find(|v| RESERVED.contains(&v.as_str())) {
                return Err(AdminError::field(
                    "claim_mapping",
                    format!("local claim {bad:?} is reserved"),
                ));
            }
            rec.claim_mapping = m;
        }
        if let Some(e) = input.enabled {
            rec.enabled = e;
        }
        let key_sources = usize::from(input.jwks_uri.is_some())
            + usize::from(input.jwks.is_some())
            + usize::from(input.did.is_some());
        if key_sources > 1 {
            return Err(AdminError::field(
                "jwks_uri",
                "give at most one of jwks_uri, jwks and did",
            ));
        }
        if let Some(uri) = input.jwks_uri {
            let u = url::Url::parse(&uri)
                .map_err(|_| AdminError::field("jwks_uri", "must be an absolute URL"))?;
            crate::fetch::check_url(&u, self.fetcher.policy())
                .map_err(|e| AdminError::field("jwks_uri", e.to_string()))?;
            self.partner_jwks.forget(&uri).await;
            self.partner_jwks
                .get(&uri)
                .await
                .map_err(|e| AdminError::field("jwks_uri", format!("could not be fetched: {e}")))?;
            (rec.jwks_uri, rec.jwks, rec.did) = (Some(uri), None, None);
        } else if let Some(jwks) = input.jwks {
            agents::validate_jwks(&jwks)?;
            (rec.jwks_uri, rec.jwks, rec.did) = (None, Some(jwks), None);
        } else if let Some(did) = input.did {
            let now = self.clock.now();
            let resolved = self
                .resolver
                .resolve(&did, now, || true)
                .await
                .map_err(|e| {
                    AdminError::field("did", format!("could not be resolved: {}", e.code()))
                })?;
            let names_issuer = resolved
                .document
                .get("service")
                .and_then(Value::as_array)
                .is_some_and(|s| {
                    s.iter().any(|svc| {
                        svc.get("serviceEndpoint").and_then(Value::as_str)
                            == Some(rec.issuer.as_str())
                    })
                });
            if !names_issuer {
                return Err(AdminError::field(
                    "did",
                    "the DID document has no service naming the issuer",
                ));
            }
            (rec.jwks_uri, rec.jwks, rec.did) = (None, None, Some(did));
        } else if rec.jwks_uri.is_none() && rec.jwks.is_none() && rec.did.is_none() {
            let uri = self.discover_jwks_uri(&rec.issuer).await?;
            let u = url::Url::parse(&uri)
                .map_err(|_| AdminError::field("issuer", "discovered jwks_uri is not a URL"))?;
            crate::fetch::check_url(&u, self.fetcher.policy())
                .map_err(|e| AdminError::field("issuer", format!("jwks_uri: {e}")))?;
            rec.jwks_uri = Some(uri);
        }
        Ok(())
    }

    pub async fn create(
        &self,
        principal: &Principal,
        org_slug: &str,
        input: PartnerInput,
    ) -> Result<Partner, AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Write).await?;
        let issuer = input
            .issuer
            .clone()
            .ok_or_else(|| AdminError::field("issuer", "is required"))?;
        self.check_issuer(&issuer)?;
        if issuer == org.issuer {
            return Err(AdminError::field(
                "issuer",
                "an organization cannot be its own partner",
            ));
        }
        let now = self.clock.now();
        let mut rec = PartnerRecord {
            org_id: org.id.clone(),
            id: PartnerId::generate(self.clock.now_ms()),
            issuer: issuer.clone(),
            name: None,
            jwks_uri: None,
            jwks: None,
            did: None,
            allowed_scopes: Vec::new(),
            allowed_audiences: vec![org.issuer.clone(), format!("{}/oauth2/token", org.issuer)],
            max_assertion_lifetime: DEFAULT_MAX_ASSERTION_LIFETIME,
            claim_mapping: Default::default(),
            enabled: true,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let mut input = input;
        input.issuer = None;
        self.apply(&mut rec, input).await?;
        let ev = Event {
            org_id: Some(org.id.clone()),
            kind: "partner.created",
            subject: rec.id.to_string(),
            data: json!({"issuer": issuer}),
            at: now,
        };
        match self.partners.store().create(&rec, &ev).await {
            Err(StorageError::Conflict {
                what: "partner issuer",
            }) => {
                return Err(AdminError::Conflict(format!(
                    "a partner with issuer {issuer} exists"
                )));
            }
            r => r?,
        }
        self.partners.invalidate(&org.id, &issuer).await;
        Ok(Partner::from_record(rec))
    }

    async fn load(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
        action: Action,
    ) -> Result<(OrgRecord, Partner), AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, action).await?;
        if !crate::model::is_uuid(id) {
            return Err(AdminError::NotFound);
        }
        let rec = self
            .partners
            .store()
            .get(&org.id, id)
            .await?
            .ok_or(AdminError::NotFound)?;
        Ok((org, Partner::from_record(rec)))
    }

    pub async fn get(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
    ) -> Result<Partner, AdminError> {
        Ok(self.load(principal, org_slug, id, Action::Read).await?.1)
    }

    pub async fn list(
        &self,
        principal: &Principal,
        org_slug: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Partner>, AdminError> {
        let org = orgs::visible(&self.directory, principal, org_slug, Action::Read).await?;
        let rows = self.partners.store().list(&org.id, after, limit).await?;
        Ok(rows.into_iter().map(Partner::from_record).collect())
    }

    pub async fn update(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
        input: PartnerInput,
        if_match: Option<&IfMatch>,
    ) -> Result<Partner, AdminError> {
        // Optimistic concurrency: the write goes over the version read, and a concurrent write
        // makes it redo the change on a fresh read (a PATCH racing a disable keeps both).
        for _ in 0..8 {
            let (org, p) = self.load(principal, org_slug, id, Action::Write).await?;
            if let Some(m) = if_match {
                m.check(p.record.version)?;
            }
            if input.issuer.as_ref().is_some_and(|i| *i != p.record.issuer) {
                return Err(AdminError::field(
                    "issuer",
                    "cannot change; register a new partner",
                ));
            }
            let mut rec = p.record.clone();
            let mut input = input.clone();
            input.issuer = None;
            self.apply(&mut rec, input).await?;
            let now = self.clock.now();
            rec.updated_at = now;
            let ev = Event {
                org_id: Some(org.id.clone()),
                kind: if rec.enabled != p.record.enabled {
                    if rec.enabled {
                        "partner.enabled"
                    } else {
                        "partner.disabled"
                    }
                } else {
                    "partner.updated"
                },
                subject: rec.id.to_string(),
                data: json!({"issuer": rec.issuer}),
                at: now,
            };
            match self.partners.store().update(&rec, &ev).await {
                Err(StorageError::Stale) => continue,
                r => r?,
            }
            rec.version += 1;
            self.partners.invalidate(&org.id, &rec.issuer).await;
            return Ok(Partner::from_record(rec));
        }
        Err(AdminError::Conflict(
            "the partner is being changed by many concurrent requests; retry".into(),
        ))
    }

    pub async fn delete(
        &self,
        principal: &Principal,
        org_slug: &str,
        id: &str,
    ) -> Result<(), AdminError> {
        let (org, p) = self.load(principal, org_slug, id, Action::Write).await?;
        let ev = Event {
            org_id: Some(org.id.clone()),
            kind: "partner.deleted",
            subject: p.record.id.to_string(),
            data: json!({"issuer": p.record.issuer}),
            at: self.clock.now(),
        };
        self.partners
            .store()
            .delete(&org.id, &p.record.id, &ev)
            .await?;
        self.partners.invalidate(&org.id, &p.record.issuer).await;
        Ok(())
    }
}

fn validate_list(field: &'static str, v: &[String]) -> Result<(), AdminError> {
    if v.len() > 100 || v.iter().any(|s| s.is_empty() || s.len() > 512) {
        return Err(AdminError::field(
            field,
            "at most 100 non-empty values of at most 512 characters",
        ));
    }
    Ok(())
}

/// The admin view of a partner. Fields in alphabetical order, as the JSON always had them.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerResponse {
    pub allowed_audiences: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub claim_mapping: std::collections::BTreeMap<String, String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(required = true)]
    pub did: Option<String>,
    pub enabled: bool,
    pub id: String,
    pub issuer: String,
    #[schema(value_type = Option<Object>, required = true)]
    pub jwks: Option<Value>,
    #[schema(required = true)]
    pub jwks_uri: Option<String>,
    pub max_assertion_lifetime_secs: i64,
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

pub fn view(p: &Partner) -> PartnerResponse {
    let r = &p.record;
    PartnerResponse {
        allowed_audiences: p.allowed_audiences.clone(),
        allowed_scopes: p.allowed_scopes.clone(),
        claim_mapping: p.claim_mapping.clone(),
        created_at: rfc3339(r.created_at),
        did: r.did.clone(),
        enabled: p.enabled,
        id: r.id.to_string(),
        issuer: r.issuer.clone(),
        jwks: p.jwks.clone(),
        jwks_uri: r.jwks_uri.clone(),
        max_assertion_lifetime_secs: r.max_assertion_lifetime,
        name: r.name.clone(),
        updated_at: rfc3339(r.updated_at),
    }
}
