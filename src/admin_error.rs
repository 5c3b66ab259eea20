//! Errors of the admin use cases (organizations, agents). Mapped to `{"error",
//! "error_description"}` JSON with the right status at the HTTP edge.

use crate::keys::KeyError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field failed validation; the message names it.
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    /// The change is valid but the organization's policy does not allow it (422
    /// `policy_violation`): a limit such as `max_agents`.
    #[error("{0}")]
    Policy(String),
    /// An `If-Match` precondition failed (RFC 9110 §13.1.1): the object is at another version.
    #[error("the object changed: If-Match does not match its current ETag")]
    PreconditionFailed,
    /// A dependency is briefly unable to take the request (the mail queue is full): 503 with
    /// `Retry-After`; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AdminError {
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        AdminError::Field {
            field,
            message: message.into(),
        }
    }
}

impl From<StorageError> for AdminError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => AdminError::NotFound,
            StorageError::Conflict { what } => {
                AdminError::Conflict(format!("{what} already exists"))
            }
            StorageError::Stale => {
                AdminError::Conflict("the object was changed by a concurrent request; retry".into())
            }
            other => AdminError::Internal(other.to_string()),
        }
    }
}

impl From<KeyError> for AdminError {
    fn from(e: KeyError) -> Self {
        AdminError::Internal(e.to_string())
    }
}

/// An `If-Match` precondition on an object's version (RFC 9110 §13.1.1), which is its `ETag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current representation (the object exists).
    Any,
    /// The versions of the listed entity tags (tags that are not ours match nothing).
    Versions(Vec<i64>),
}

impl IfMatch {
    /// `PreconditionFailed` unless the object at `version` matches.
    pub fn check(&self, version: i64) -> Result<(), AdminError> {
        match self {
            IfMatch::Any => Ok(()),
            IfMatch::Versions(v) if v.contains(&version) => Ok(()),
            IfMatch::Versions(_) => Err(AdminError::PreconditionFailed),
        }
    }

    /// The strong entity tag of an object's version: `"7"`.
    pub fn etag(version: i64) -> String {
        format!("\"{version}\"")
    }

    /// Parses an `If-Match` field value: `*` or a list of entity tags (RFC 9110 §8.8.3). Weak
    /// tags never match (If-Match uses the strong comparison, §13.1.1); `None` if malformed.
    pub fn parse(value: &str) -> Option<IfMatch> {
        let value = value.trim();
        if value == "*" {
            return Some(IfMatch::Any);
        }
        let mut versions = Vec::new();
        for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (weak, opaque) = match tag.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, tag),
            };
            let inner = opaque.strip_prefix('"')?.strip_suffix('"')?;
            // etagc = %x21 / %x23-7E / obs-text
            if inner.bytes().any(|b| b == b'"' || b < 0x21 || b == 0x7f) {
                return None;
            }
            // Entity tags compare as strings (RFC 9110 §8.8.3.2): only the canonical decimal
            // form of a version is its tag (`"+3"` and `"03"` are other tags).
            if !weak
                && let Ok(v) = inner.parse::<i64>()
                && v.to_string() == inner
            {
                versions.push(v);
            }
        }
        Some(IfMatch::Versions(versions))
    }
}

#[cfg(test)]
mod tests {
    use super::IfMatch;

    #[test]
    fn if_match_parses_star_lists_and_refuses_malformed_values() {
        assert_eq!(IfMatch::parse("*"), Some(IfMatch::Any));
        assert_eq!(
            IfMatch::parse(r#""3", W/"4" , "x", "5""#),
            Some(IfMatch::Versions(vec![3, 5]))
        );
        assert_eq!(
            IfMatch::parse(&IfMatch::etag(9)),
            Some(IfMatch::Versions(vec![9]))
        );
        for bad in ["3", r#""3"#, r#""a b""#, r#"W/3"#] {
            assert_eq!(IfMatch::parse(bad), None, "{bad}");
        }
        // Tags compare as strings: "+3" and "03" are not the tag "3".
        assert_eq!(
            IfMatch::parse(r#""+3", "03", "3""#),
            Some(IfMatch::Versions(vec![3]))
        );
        assert_eq!(IfMatch::parse(r#""+3""#), Some(IfMatch::Versions(vec![])));
        assert!(IfMatch::Versions(vec![2]).check(2).is_ok());
        assert!(IfMatch::Versions(vec![2]).check(3).is_err());
        assert!(IfMatch::Any.check(3).is_ok());
    }
}
