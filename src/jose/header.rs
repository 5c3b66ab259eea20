//! The JOSE header (RFC 7515 §4): parsed without verifying anything, `crit` refused, `typ`
//! compared as a media type.

use base64::prelude::*;
use serde::Deserialize;

use super::JoseError;

/// Largest compact JWS we parse at all; real tokens are well under this.
pub const MAX_JWS_LEN: usize = 16 * 1024;

/// The JOSE header members we look at. Unknown members are ignored, except that `crit`
/// (RFC 7515 §4.1.11) must be absent because we understand no extension. `jku`, `x5u` and `jwk`
/// are never used to find a key.
#[derive(Debug, Clone, Deserialize)]
pub struct JoseHeader {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    /// Present (even as `null`) means rejected.
    #[serde(default, deserialize_with = "present")]
    pub crit: Option<serde_json::Value>,
}

/// `Some` whenever the member is present, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Parses the protected header of a compact JWS without verifying anything.
pub fn parse_header(token: &str) -> Result<JoseHeader, JoseError> {
    if token.len() > MAX_JWS_LEN {
        return Err(JoseError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed);
    };
    let raw = BASE64_URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| JoseError::Malformed)?;
    let header: JoseHeader = serde_json::from_slice(&raw).map_err(|_| JoseError::Malformed)?;
    if header.crit.is_some() {
        return Err(JoseError::Crit);
    }
    Ok(header)
}

/// Compares a `typ` value with an expected media type, per RFC 7515 §4.1.9: media types are
/// compared case-insensitively (RFC 2045 §5.1), and "application/" may be omitted, on either
/// side. So `Application/At+Jwt`, `AT+JWT` and `at+jwt` are all the type `application/at+jwt`.
pub fn typ_is(typ: Option<&str>, expected: &str) -> bool {
    fn short(t: &str) -> &str {
        match t.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => &t[12..],
            _ => t,
        }
    }
    typ.is_some_and(|t| {
        let (t, e) = (short(t), short(expected));
        // A bare "application/" names no type at all.
        !t.is_empty() && t.eq_ignore_ascii_case(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        BASE64_URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn header_parsing() {
        let t = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"ES256","typ":"at+jwt","kid":"k"}"#),
            b64("{}")
        );
        let h = parse_header(&t).unwrap();
        assert_eq!((h.alg.as_str(), h.kid.as_deref()), ("ES256", Some("k")));
        assert!(typ_is(h.typ.as_deref(), "at+jwt"));
        assert!(typ_is(Some("application/AT+JWT"), "at+jwt"));
        assert!(typ_is(Some("Application/at+jwt"), "at+jwt"));
        assert!(!typ_is(Some("application/"), "at+jwt"));
        assert!(!typ_is(Some("text/at+jwt"), "at+jwt"));
        assert!(!typ_is(Some("JWT"), "at+jwt"));
        assert!(!typ_is(None, "at+jwt"));
        // The whole media type, either side written with or without "application/".
        assert!(typ_is(Some("Application/At+Jwt"), "application/at+jwt"));
        assert!(typ_is(Some("AT+JWT"), "Application/at+jwt"));
        assert!(!typ_is(Some("application/"), "application/"));
        assert!(!typ_is(Some("application/at+jwt+x"), "at+jwt"));
        let crit = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#),
            b64("{}")
        );
        assert_eq!(parse_header(&crit).unwrap_err(), JoseError::Crit);
        let null_crit = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"ES256","crit":null}"#),
            b64("{}")
        );
        assert_eq!(parse_header(&null_crit).unwrap_err(), JoseError::Crit);
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.b.c",
            &format!("{}.b.c", b64("[]")),
        ] {
            assert_eq!(
                parse_header(bad).unwrap_err(),
                JoseError::Malformed,
                "{bad}"
            );
        }
    }
}

/// Property tests: `parse_header` never panics, whatever it is given, and reads exactly the
/// members it was given.
#[cfg(test)]
mod proptests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn b64(b: &[u8]) -> String {
        BASE64_URL_SAFE_NO_PAD.encode(b)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn never_panics_on_strings(s in ".{0,300}") {
            let _ = parse_header(&s);
        }

        #[test]
        fn never_panics_on_bytes(b in vec(any::<u8>(), 0..400)) {
            let _ = parse_header(&String::from_utf8_lossy(&b));
        }

        /// Three segments whose first one is random bytes: an error or a header, never a panic;
        /// a header only when those bytes were a JSON object with a string `alg`.
        #[test]
        fn random_first_segment(h in vec(any::<u8>(), 0..200), rest in "[A-Za-z0-9_-]{0,20}") {
            if let Ok(header) = parse_header(&format!("{}.{rest}.{rest}", b64(&h))) {
                let v: serde_json::Value = serde_json::from_slice(&h).unwrap();
                prop_assert_eq!(v["alg"].as_str(), Some(header.alg.as_str()));
            }
        }

        #[test]
        fn members_round_trip(
            alg in ".{0,20}",
            typ in proptest::option::of(".{0,20}"),
            kid in proptest::option::of(".{0,20}"),
            crit in any::<bool>(),
            payload in "[A-Za-z0-9_-]{0,40}",
            sig in "[A-Za-z0-9_-]{0,40}",
        ) {
            let mut h = json!({"alg": alg, "x-extra": [1, {"a": null}]});
            if let Some(t) = &typ {
                h["typ"] = json!(t);
            }
            if let Some(k) = &kid {
                h["kid"] = json!(k);
            }
            if crit {
                h["crit"] = json!(["exp"]);
            }
            let token = format!("{}.{payload}.{sig}", b64(h.to_string().as_bytes()));
            match parse_header(&token) {
                Ok(parsed) => {
                    prop_assert!(!crit, "crit was accepted");
                    prop_assert_eq!(parsed.alg, alg);
                    prop_assert_eq!(parsed.typ, typ);
                    prop_assert_eq!(parsed.kid, kid);
                }
                Err(e) => {
                    prop_assert!(crit, "a plain header was refused: {e}");
                    prop_assert_eq!(e, JoseError::Crit);
                }
            }
        }

        #[test]
        fn other_segment_counts_are_malformed(parts in vec("[A-Za-z0-9_-]{0,12}", 0..8)) {
            prop_assume!(parts.len() != 3);
            prop_assert_eq!(parse_header(&parts.join(".")).unwrap_err(), JoseError::Malformed);
        }

        #[test]
        fn oversized_tokens_are_malformed(extra in 1usize..64) {
            let h = b64(br#"{"alg":"ES256"}"#);
            let pad = MAX_JWS_LEN + extra - h.len() - 3;
            let token = format!("{h}.{}.s", "a".repeat(pad));
            prop_assert_eq!(token.len(), MAX_JWS_LEN + extra);
            prop_assert_eq!(parse_header(&token).unwrap_err(), JoseError::Malformed);
        }
    }
}
