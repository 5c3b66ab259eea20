//! OAuth error codes (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1, RFC 8693 §2.2.2).
//! The HTTP status and headers are chosen at the edge (`http::error`).

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    UnsupportedTokenType,
    InvalidToken,
    InsufficientScope,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::ServerError => "server_error",
        }
    }
}

/// An OAuth error with a safe description (never a secret, never an internal detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
}

/// RFC 6749 §5.2: `error_description` characters "MUST NOT include characters outside the set
/// %x20-21 / %x23-5B / %x5D-7E" (printable ASCII without `"` and `\`).
pub fn is_description_char(c: char) -> bool {
    matches!(c as u32, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)
}

/// The longest description sent (text a client put in its request may be quoted in it).
pub const MAX_DESCRIPTION: usize = 200;

/// `d` within RFC 6749 §5.2's character set and [`MAX_DESCRIPTION`]: `"` becomes `'`, `\`
/// becomes `/`, any other character outside the set `?`. A description that already complies
/// (every template of this crate) is kept as it is, with no allocation.
pub fn sanitize_description(d: Cow<'static, str>) -> Cow<'static, str> {
    if d.len() <= MAX_DESCRIPTION && d.chars().all(is_description_char) {
        return d;
    }
    let mut out: String = d
        .chars()
        .take(MAX_DESCRIPTION)
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if is_description_char(c) => c,
            _ => '?',
        })
        .collect();
    if d.chars().count() > MAX_DESCRIPTION {
        out.truncate(MAX_DESCRIPTION - 3);
        out.push_str("...");
    }
    Cow::Owned(out)
}

impl OAuthError {
    /// Every OAuth error is made here, so its description always keeps RFC 6749 §5.2's
    /// character set, whatever client text a message quotes.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: sanitize_description(description.into()),
        }
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_token(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidToken, d)
    }
    pub fn server_error() -> Self {
        Self::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Issue 9 point 12: `scope "admin:everything" is not allowed` broke strict clients.
    #[test]
    fn descriptions_keep_the_rfc_6749_character_set() {
        let e = OAuthError::new(
            ErrorCode::InvalidScope,
            format!(
                "scope {:?} is not allowed \\ \u{202e}é\n",
                "admin:everything"
            ),
        );
        assert_eq!(
            e.description,
            "scope 'admin:everything' is not allowed / ???"
        );
        assert!(matches!(
            OAuthError::invalid_request("a plain template").description,
            Cow::Borrowed(_)
        ));
        let long = OAuthError::invalid_request("x".repeat(10_000));
        assert_eq!(long.description.len(), MAX_DESCRIPTION);
        assert!(long.description.ends_with("..."));
    }

    proptest! {
        #[test]
        fn any_text_becomes_a_valid_description(s in any::<String>()) {
            let e = OAuthError::invalid_request(s);
            prop_assert!(e.description.chars().all(is_description_char));
            prop_assert!(e.description.len() <= MAX_DESCRIPTION);
        }
    }
}
