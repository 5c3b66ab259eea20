//! Who may do what to which organization. Every admin handler asks here, so "another
//! organization's object answers 404" is decided in one place.

/// Roles of an organization member (organization admins arrive with the SSO issue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

/// The authenticated caller of the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The bootstrap token: everything.
    Platform,
    /// A member of one organization.
    Org { org_id: String, role: Role },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The organization is invisible to this principal: answered exactly like a missing one.
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
}

impl Principal {
    /// May this principal create or list organizations?
    pub fn is_platform(&self) -> bool {
        matches!(self, Principal::Platform)
    }

    /// May this principal perform `action` on objects of `org_id`?
    pub fn check(&self, org_id: &str, action: Action) -> Result<(), AccessError> {
        match self {
            Principal::Platform => Ok(()),
            Principal::Org { org_id: own, role } => {
                if own != org_id {
                    return Err(AccessError::NotFound);
                }
                match (action, role) {
                    (Action::Read, _) | (Action::Write, Role::Owner | Role::Admin) => Ok(()),
                    (Action::Write, Role::Member) => Err(AccessError::Forbidden),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_org_is_not_found() {
        let p = Principal::Org {
            org_id: "a".into(),
            role: Role::Admin,
        };
        assert_eq!(p.check("b", Action::Read), Err(AccessError::NotFound));
        assert_eq!(p.check("a", Action::Write), Ok(()));
        let m = Principal::Org {
            org_id: "a".into(),
            role: Role::Member,
        };
        assert_eq!(m.check("a", Action::Write), Err(AccessError::Forbidden));
        assert_eq!(m.check("a", Action::Read), Ok(()));
        assert!(Principal::Platform.check("x", Action::Write).is_ok());
    }
}
