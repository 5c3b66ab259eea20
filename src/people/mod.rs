//! People (issue 12, first part): user accounts of an organization, their passwords, and
//! invites to become one. Users are not principals of the admin API yet (a later part makes a
//! user's access token one, with the user's role); here the admin API manages them.
//!
//! The rules, decided here and enforced again by the store where they span rows:
//! - an email is unique per organization, compared trimmed and lower-cased;
//! - `member` reads; `admin` creates, changes and deletes users whose role, before and after,
//!   is `admin` or `member`; only an owner (or the platform) touches an owner or makes one; an
//!   API key never grants above its own role ([`may_manage`], over `Principal::may_grant`);
//! - the last active owner is neither deleted, demoted nor suspended (checked in the write's
//!   transaction, see `storage::users`);
//! - an invite's role is at most the inviter's, by the same rule; at most
//!   [`crate::storage::MAX_PENDING_INVITES`] pending invites per address across the instance;
//!   an invite lives [`INVITE_TTL_SECS`] and is used once.

pub mod invites;
pub mod passwords;
pub mod sessions;
pub mod users;

use crate::model::Role;
use crate::tenancy::access::{AccessError, Action, Principal};

pub use invites::{INVITE_TTL_SECS, InviteError};
pub use passwords::{PasswordError, Passwords};
pub use users::People;

/// The longest email address accepted (RFC 5321's path limit, less the brackets).
pub const MAX_EMAIL_BYTES: usize = 254;

/// An email address as stored (trimmed) and as compared (trimmed, lower-cased), or what is wrong
/// with it. Sensible syntax, not RFC 5322's full grammar: one `@`, a local part of 1 to 64 bytes,
/// a domain of dot-separated non-empty labels, no spaces or control characters, at most
/// [`MAX_EMAIL_BYTES`] bytes.
pub fn normalize_email(email: &str) -> Result<(String, String), &'static str> {
    let e = email.trim();
    if e.is_empty() || e.len() > MAX_EMAIL_BYTES {
        return Err("must be an email address of 1 to 254 bytes");
    }
    if e.chars().any(|c| {
        c.is_control()
            || c.is_whitespace()
            || crate::tenancy::orgs::is_bidi_control(c)
            || is_invisible(c)
    }) {
        return Err(
            "must not contain spaces, control, invisible or bidirectional-control characters",
        );
    }
    let mut parts = e.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("must contain exactly one @");
    };
    if local.is_empty() || local.len() > 64 {
        return Err("must have 1 to 64 bytes before the @");
    }
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return Err("must have a domain after the @ (labels separated by single dots)");
    }
    if e.chars().any(|c| {
        matches!(
            c,
            '<' | '>' | '"' | '\\' | ',' | ';' | '(' | ')' | '[' | ']'
        )
    }) {
        return Err("must be a plain address (no quotes, brackets, commas or display names)");
    }
    Ok((e.to_owned(), e.to_lowercase()))
}

/// Invisible format characters (Unicode category Cf outside the bidirectional controls, and the
/// fillers): `ada\u{200b}@example.com` would otherwise be a second account that reads exactly
/// like `ada@example.com` (review finding).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// A user's (or invite's) role from its wire name: `owner`, `admin` or `member` (a person is
/// never `scim`, which is for SCIM API keys).
pub fn parse_person_role(s: &str) -> Option<Role> {
    Role::parse(s).filter(|r| *r != Role::Scim)
}

/// May `principal` give a person of `org_id` the role `new`, when the person has `old` (for a
/// new person or invite, `old` = `new`)? Needs `admin`, and may-grant of both roles: an admin
/// manages admins and members, only an owner (or the platform) an owner; an API key never
/// above its own role.
pub fn may_manage(
    principal: &Principal,
    org_id: &str,
    old: Role,
    new: Role,
) -> Result<(), AccessError> {
    principal.check(org_id, Action::Write)?;
    // A key's previous secret (its rotation grace period) manages no people, as it manages no
    // keys: a leaked secret that was rotated away must not mint owner invites (review finding).
    if let Principal::ApiKey {
        previous_secret: true,
        ..
    } = principal
    {
        return Err(AccessError::Forbidden);
    }
    principal.may_grant(org_id, old)?;
    principal.may_grant(org_id, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: Role) -> Principal {
        Principal::ApiKey {
            id: "k".into(),
            org_id: "a".into(),
            role,
            previous_secret: false,
        }
    }

    #[test]
    fn emails_are_checked_and_normalized() {
        assert_eq!(
            normalize_email("  Ada.Lovelace@Example.COM ").unwrap(),
            (
                "Ada.Lovelace@Example.COM".into(),
                "ada.lovelace@example.com".into()
            )
        );
        assert!(normalize_email("a@b").is_ok());
        for bad in [
            "",
            "plain",
            "a@b@c",
            "@example.com",
            "a@",
            "a@.com",
            "a@example..com",
            "a b@example.com",
            "a\u{7}@example.com",
            "a\u{202e}@example.com",
            "ada\u{200b}@example.com",
            "ada\u{feff}@example.com",
            "a\u{00ad}da@example.com",
            "\"Ada\" <ada@example.com>",
            "a,b@example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(normalize_email(&long_local).is_err());
        let long = format!("a@{}.com", "b".repeat(250));
        assert!(normalize_email(&long).is_err());
        let fits = format!("a@{}.com", "b".repeat(248));
        assert_eq!(fits.len(), 254);
        assert!(normalize_email(&fits).is_ok());
    }

    #[test]
    fn people_are_never_scim() {
        assert_eq!(parse_person_role("owner"), Some(Role::Owner));
        assert_eq!(parse_person_role("member"), Some(Role::Member));
        assert_eq!(parse_person_role("scim"), None);
        assert_eq!(parse_person_role("root"), None);
    }

    #[test]
    fn admins_manage_below_owner_and_owners_everyone() {
        use Role::{Admin, Member, Owner};
        let admin = key(Admin);
        assert_eq!(may_manage(&admin, "a", Member, Member), Ok(()));
        assert_eq!(may_manage(&admin, "a", Member, Admin), Ok(()));
        assert_eq!(may_manage(&admin, "a", Admin, Member), Ok(()));
        assert_eq!(
            may_manage(&admin, "a", Member, Owner),
            Err(AccessError::Forbidden)
        );
        assert_eq!(
            may_manage(&admin, "a", Owner, Member),
            Err(AccessError::Forbidden)
        );
        assert_eq!(
            may_manage(&admin, "a", Owner, Owner),
            Err(AccessError::Forbidden)
        );
        assert_eq!(
            may_manage(&admin, "b", Member, Member),
            Err(AccessError::NotFound)
        );
        let member = key(Member);
        assert_eq!(
            may_manage(&member, "a", Member, Member),
            Err(AccessError::Forbidden)
        );
        let owner = key(Owner);
        assert_eq!(may_manage(&owner, "a", Owner, Member), Ok(()));
        assert_eq!(may_manage(&owner, "a", Member, Owner), Ok(()));
        let platform = Principal::Platform { token_id: None };
        assert_eq!(may_manage(&platform, "z", Owner, Admin), Ok(()));
        let grace = Principal::ApiKey {
            id: "k".into(),
            org_id: "a".into(),
            role: Owner,
            previous_secret: true,
        };
        assert_eq!(
            may_manage(&grace, "a", Member, Member),
            Err(AccessError::Forbidden),
            "a key's previous secret manages no people"
        );
        let scim = key(Role::Scim);
        assert_eq!(
            may_manage(&scim, "a", Member, Member),
            Err(AccessError::Forbidden)
        );
    }
}
