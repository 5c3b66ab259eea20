//! Who may do what to which organization: the one authorization decision of the admin API.
//!
//! Every admin route declares its [`Requirement`] next to its handler (the `x-agentidp-role`
//! extension of its `#[utoipa::path]`, so the OpenAPI document lists it too); the HTTP edge reads
//! that table and calls [`authorize`] before the handler runs. The use cases check again with
//! [`Principal::check`] (defence in depth: a use case called from the CLI or a later console
//! cannot forget it). Another organization's object answers 404 exactly as a missing one; a
//! principal of this organization without the role gets 403.

pub use crate::model::Role;

/// The authenticated caller of the admin API. People (`User`, and an agent acting for a user)
/// arrive with the next issue as further variants with a role per organization, decided by the
/// same [`Principal::role_in`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A platform admin: the bootstrap token (`token_id: None`) or a token made with
    /// `agentidp admin-token create`. May do everything.
    Platform { token_id: Option<String> },
    /// An organization API key: its role in its one organization. `previous_secret`: it was
    /// presented with the secret a rotation replaced (still in its grace period), which may keep
    /// working but may not manage API keys (or it could rotate its own key out from under the
    /// owner who rotated it because it leaked).
    ApiKey {
        id: String,
        org_id: String,
        role: Role,
        previous_secret: bool,
    },
    /// A person of an organization, by an access token of its issuer addressed to the admin API
    /// (`aud` = `{public_url}/api/v1`): the person's role there.
    User {
        id: String,
        org_id: String,
        role: Role,
    },
}

/// What a use case is about to do, as the role it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read anything but secrets: `member`.
    Read,
    /// Change agents, partners, keys, policy, API keys: `admin`.
    Write,
    /// Delete the organization: `owner`.
    Own,
}

impl Action {
    pub fn role(self) -> Role {
        match self {
            Action::Read => Role::Member,
            Action::Write => Role::Admin,
            Action::Own => Role::Owner,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The organization is invisible to this principal: answered exactly like a missing one.
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
}

/// The admin use cases answer an access refusal as it is: 404 for an invisible organization,
/// 403 for a missing role.
impl From<AccessError> for crate::admin_error::AdminError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotFound => Self::NotFound,
            AccessError::Forbidden => Self::Forbidden,
        }
    }
}

/// What a route needs, declared next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No token (the OpenAPI document).
    Public,
    /// Any valid principal; the use case shows it only what it may see (listing organizations).
    Authenticated,
    /// A platform admin (creating organizations).
    Platform,
    /// This role in the organization of the path's `{org}`.
    Org(Role),
}

impl Requirement {
    /// The names used in the `x-agentidp-role` extension.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => Requirement::Public,
            "authenticated" => Requirement::Authenticated,
            "platform" => Requirement::Platform,
            other => Requirement::Org(Role::parse(other)?),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Public => "public",
            Requirement::Authenticated => "authenticated",
            Requirement::Platform => "platform",
            Requirement::Org(r) => r.as_str(),
        }
    }
}

impl Principal {
    pub fn is_platform(&self) -> bool {
        matches!(self, Principal::Platform { .. })
    }

    /// The organization an organization-bound principal belongs to (`None`: platform).
    pub fn org_id(&self) -> Option<&str> {
        match self {
            Principal::Platform { .. } => None,
            Principal::ApiKey { org_id, .. } | Principal::User { org_id, .. } => Some(org_id),
        }
    }

    /// Its role in `org_id`: `None` when the organization is not its own (invisible to it).
    /// A platform admin counts as an owner of every organization.
    pub fn role_in(&self, org_id: &str) -> Option<Role> {
        match self {
            Principal::Platform { .. } => Some(Role::Owner),
            Principal::ApiKey {
                org_id: own, role, ..
            }
            | Principal::User {
                org_id: own, role, ..
            } => (own == org_id).then_some(*role),
        }
    }

    /// Who did it, as the audit log and `created_by` name actors: `platform` (the bootstrap
    /// token), `admin_token:ID`, `api_key:ID`.
    pub fn actor(&self) -> String {
        match self {
            Principal::Platform { token_id: None } => "platform".into(),
            Principal::Platform { token_id: Some(id) } => format!("admin_token:{id}"),
            Principal::ApiKey { id, .. } => format!("api_key:{id}"),
            Principal::User { id, .. } => format!("user:{id}"),
        }
    }

    /// May this principal perform `action` on objects of `org_id`?
    pub fn check(&self, org_id: &str, action: Action) -> Result<(), AccessError> {
        let role = self.role_in(org_id).ok_or(AccessError::NotFound)?;
        if role.satisfies(action.role()) {
            Ok(())
        } else {
            Err(AccessError::Forbidden)
        }
    }

    /// May this principal hand out `role` in `org_id` (an API key's role is never above its
    /// creator's; a `scim` key needs an admin)?
    pub fn may_grant(&self, org_id: &str, role: Role) -> Result<(), AccessError> {
        let mine = self.role_in(org_id).ok_or(AccessError::NotFound)?;
        let needed = if role == Role::Scim {
            Role::Admin
        } else {
            role
        };
        if mine != Role::Scim && mine.satisfies(needed) {
            Ok(())
        } else {
            Err(AccessError::Forbidden)
        }
    }
}

/// The one authorization decision of the admin API: may `principal` call a route requiring
/// `need`, for the organization `org_id` of its path (`None` when the path has no `{org}`, or
/// names none that exists: then an organization requirement is `NotFound`, exactly like one of
/// another organization)?
pub fn authorize(
    principal: &Principal,
    need: Requirement,
    org_id: Option<&str>,
) -> Result<(), AccessError> {
    match need {
        Requirement::Public | Requirement::Authenticated => Ok(()),
        Requirement::Platform if principal.is_platform() => Ok(()),
        Requirement::Platform => Err(AccessError::Forbidden),
        Requirement::Org(role) => {
            let have = org_id
                .and_then(|o| principal.role_in(o))
                .ok_or(AccessError::NotFound)?;
            if have.satisfies(role) {
                Ok(())
            } else {
                Err(AccessError::Forbidden)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(org: &str, role: Role) -> Principal {
        Principal::ApiKey {
            id: "k".into(),
            org_id: org.into(),
            role,
            previous_secret: false,
        }
    }

    #[test]
    fn other_org_is_not_found_and_lacking_role_forbidden() {
        let p = key("a", Role::Admin);
        assert_eq!(p.check("b", Action::Read), Err(AccessError::NotFound));
        assert_eq!(p.check("a", Action::Write), Ok(()));
        assert_eq!(p.check("a", Action::Own), Err(AccessError::Forbidden));
        let m = key("a", Role::Member);
        assert_eq!(m.check("a", Action::Write), Err(AccessError::Forbidden));
        assert_eq!(m.check("a", Action::Read), Ok(()));
        let s = key("a", Role::Scim);
        assert_eq!(s.check("a", Action::Read), Err(AccessError::Forbidden));
        let platform = Principal::Platform { token_id: None };
        assert!(platform.check("x", Action::Own).is_ok());
    }

    #[test]
    fn the_route_requirement_decides() {
        use Requirement as R;
        let owner = key("a", Role::Owner);
        let platform = Principal::Platform {
            token_id: Some("t".into()),
        };
        assert_eq!(
            authorize(&owner, R::Platform, None),
            Err(AccessError::Forbidden)
        );
        assert_eq!(authorize(&platform, R::Platform, None), Ok(()));
        assert_eq!(authorize(&owner, R::Authenticated, None), Ok(()));
        assert_eq!(authorize(&owner, R::Org(Role::Owner), Some("a")), Ok(()));
        assert_eq!(
            authorize(&owner, R::Org(Role::Member), Some("b")),
            Err(AccessError::NotFound)
        );
        // No such organization: not found for everyone, the platform included.
        assert_eq!(
            authorize(&platform, R::Org(Role::Member), None),
            Err(AccessError::NotFound)
        );
        assert_eq!(
            authorize(&key("a", Role::Scim), R::Org(Role::Scim), Some("a")),
            Ok(())
        );
        assert_eq!(
            authorize(&owner, R::Org(Role::Scim), Some("a")),
            Err(AccessError::Forbidden)
        );
        for r in [
            "public",
            "authenticated",
            "platform",
            "owner",
            "admin",
            "member",
            "scim",
        ] {
            assert_eq!(Requirement::parse(r).map(Requirement::as_str), Some(r));
        }
        assert_eq!(Requirement::parse("root"), None);
    }

    #[test]
    fn keys_are_granted_up_to_the_creators_role() {
        let admin = key("a", Role::Admin);
        assert_eq!(admin.may_grant("a", Role::Admin), Ok(()));
        assert_eq!(admin.may_grant("a", Role::Scim), Ok(()));
        assert_eq!(
            admin.may_grant("a", Role::Owner),
            Err(AccessError::Forbidden)
        );
        assert_eq!(
            admin.may_grant("b", Role::Member),
            Err(AccessError::NotFound)
        );
        let member = key("a", Role::Member);
        assert_eq!(member.may_grant("a", Role::Member), Ok(()));
        assert_eq!(
            member.may_grant("a", Role::Scim),
            Err(AccessError::Forbidden)
        );
        let scim = key("a", Role::Scim);
        assert_eq!(scim.may_grant("a", Role::Scim), Err(AccessError::Forbidden));
        assert_eq!(
            Principal::Platform { token_id: None }.may_grant("z", Role::Owner),
            Ok(())
        );
    }
}
