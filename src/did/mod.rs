//! Decentralized identifiers: did:web identifiers derived from the public URL (W3C CCG did:web
//! method specification §3.1), DID documents (W3C DID Core 1.0), DID resolution (DIF Universal
//! Resolver HTTP binding), agent cards and proof-of-control JWTs.

pub mod card;
pub mod document;
pub mod proof;
pub mod rendered;
pub mod resolver;

use url::Url;

pub use crate::model::did::{agent_did, instance_did, org_did, resolvable_by_others};

/// A syntactically valid DID (DID Core §3.1): `did:` method-name `:` method-specific-id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Did<'a> {
    pub method: &'a str,
    pub msid: &'a str,
}

/// Longest DID we accept at all.
pub const MAX_DID_LEN: usize = 2048;

pub fn parse_did(s: &str) -> Option<Did<'_>> {
    if s.len() > MAX_DID_LEN {
        return None;
    }
    let rest = s.strip_prefix("did:")?;
    let (method, msid) = rest.split_once(':')?;
    let method_ok = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    // method-specific-id = *( *idchar ":" ) 1*idchar ; idchar = ALPHA / DIGIT / "." / "-" / "_" / pct-encoded
    let b = msid.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':') => i += 1,
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                i += 3
            }
            _ => return None,
        }
    }
    let msid_ok = !msid.is_empty() && !msid.ends_with(':');
    (method_ok && msid_ok).then_some(Did { method, msid })
}

/// The DID named by a raw (not yet percent-decoded) `/1.0/identifiers/{did}` path segment.
///
/// The DIF Universal Resolver binding percent-encodes the DID once, so a `%3A` inside the DID
/// travels as `%253A` and one decoding gives the DID back. But a DID pasted as printed
/// (`did:web:localhost%3A8443:orgs:acme`) must resolve too, and decoding it would change it
/// into another DID (`did:web:localhost:8443:...`). So: a segment containing `%25` is encoded
/// (decoded once); otherwise a segment that already is a syntactically valid DID is taken as it
/// is; anything else is decoded once (`did%3Aweb%3Aexample.com`). `None` when the decoded bytes
/// are not UTF-8. (A DID with a literal `%25` must be sent encoded, as the binding says.)
pub fn did_from_path(raw: &str) -> Option<String> {
    let encoded = raw
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && w[2] == b'5');
    if !encoded && parse_did(raw).is_some() {
        return Some(raw.to_owned());
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Which of our own DIDs a DID names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnDid {
    Instance,
    Org { slug: String },
    Agent { slug: String, agent_id: String },
}

/// Matches `did` against the instance DID and the `:orgs:SLUG[:agents:ID]` paths below it.
pub fn own_did(instance: &str, did: &str) -> Option<OwnDid> {
    if did == instance {
        return Some(OwnDid::Instance);
    }
    let rest = did.strip_prefix(instance)?.strip_prefix(":orgs:")?;
    let mut parts = rest.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(slug), None, None, None) => Some(OwnDid::Org {
            slug: slug.to_owned(),
        }),
        (Some(slug), Some("agents"), Some(id), None) => Some(OwnDid::Agent {
            slug: slug.to_owned(),
            agent_id: id.to_owned(),
        }),
        _ => None,
    }
}

/// The HTTPS URL of a did:web document (did:web spec §3.2 "Read"): `:` separates path segments,
/// `%3A` in the host is a port; no path means `/.well-known/did.json`.
pub fn did_web_url(msid: &str) -> Option<String> {
    let mut segs = msid.split(':');
    let host = segs.next()?;
    let host = percent_encoding::percent_decode_str(host)
        .decode_utf8()
        .ok()?;
    // A domain name (ASCII: did:web §3.1 wants IDNs in their punycode form) and an optional
    // port. Nothing else: a URL parser silently drops tabs, CR and LF and reads `\` as `/`, so
    // `did:web:%0a:attacker.example` would otherwise be fetched from `attacker.example`.
    let (name, port) = match host.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host.as_ref(), None),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if !name_ok || !port_ok {
        return None;
    }
    let path: Vec<String> = segs
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
        })
        .collect::<Result<_, _>>()
        .ok()?;
    let bad_char =
        |c: char| matches!(c, '/' | '\\' | '?' | '#') || c.is_control() || c.is_whitespace();
    if path
        .iter()
        .any(|p| p.is_empty() || p == "." || p == ".." || p.contains(bad_char))
    {
        return None;
    }
    let url = if path.is_empty() {
        format!("https://{host}/.well-known/did.json")
    } else {
        format!("https://{host}/{}/did.json", path.join("/"))
    };
    let url = Url::parse(&url).ok()?;
    // The URL names exactly the host the DID names (a parser quirk cannot move it elsewhere).
    let same_host = url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(name));
    same_host.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `did` fuzz target: `did:web:%0d:%0d` became `https://did.json/` (the URL
    /// parser drops CR), so a DID could name one host and be fetched from another.
    #[test]
    fn did_web_urls_stay_on_the_named_host() {
        for bad in [
            "%0d:%0d",
            "%0a:attacker.example",
            "a%09b.example",
            "example.com%3A80%3A80",
            "example.com%3Ax",
            "exa%5Cmple.com",
            "example.com:a%5Cb",
            "example.com:a%0ab",
            "example.com:a%20b",
            "%5B%3A%3A1%5D",
        ] {
            assert_eq!(did_web_url(bad), None, "{bad}");
        }
        assert_eq!(
            did_web_url("localhost%3A8443:orgs:acme").as_deref(),
            Some("https://localhost:8443/orgs/acme/did.json")
        );
        assert_eq!(
            did_web_url("Example.COM").as_deref(),
            Some("https://example.com/.well-known/did.json")
        );
    }

    #[test]
    fn did_syntax() {
        assert!(parse_did("did:web:example.com").is_some());
        assert!(parse_did("did:web:localhost%3A8443:orgs:acme").is_some());
        assert!(parse_did("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").is_some());
        for bad in [
            "",
            "did:",
            "did:web",
            "did:web:",
            "did:Web:x",
            "did:web:a b",
            "did:web:x:",
            "did:web:%zz",
            "web:x",
            "did:web:x%3",
        ] {
            assert!(parse_did(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn resolver_path_decoding() {
        let did = "did:web:localhost%3A8443:orgs:acme";
        // As printed, as the binding encodes it, and with every character encoded.
        assert_eq!(did_from_path(did).as_deref(), Some(did));
        assert_eq!(
            did_from_path("did:web:localhost%253A8443:orgs:acme").as_deref(),
            Some(did)
        );
        assert_eq!(
            did_from_path("did%3Aweb%3Alocalhost%253A8443%3Aorgs%3Aacme").as_deref(),
            Some(did)
        );
        assert_eq!(
            did_from_path("did%3Aweb%3Aexample.com").as_deref(),
            Some("did:web:example.com")
        );
        assert_eq!(
            did_from_path("did:web:example.com").as_deref(),
            Some("did:web:example.com")
        );
        // Not a DID either way: decoded once and left for the resolver to refuse.
        assert_eq!(did_from_path("not%20a%20did").as_deref(), Some("not a did"));
        assert_eq!(did_from_path("%ff%fe"), None);
    }

    #[test]
    fn own_dids() {
        let i = "did:web:idp.example.com";
        assert_eq!(own_did(i, i), Some(OwnDid::Instance));
        assert_eq!(
            own_did(i, "did:web:idp.example.com:orgs:acme"),
            Some(OwnDid::Org {
                slug: "acme".into()
            })
        );
        assert_eq!(
            own_did(i, "did:web:idp.example.com:orgs:acme:agents:A"),
            Some(OwnDid::Agent {
                slug: "acme".into(),
                agent_id: "A".into()
            })
        );
        assert_eq!(own_did(i, "did:web:idp.example.com:orgs:acme:x:A"), None);
        assert_eq!(own_did(i, "did:web:idp.example.comx:orgs:acme"), None);
        assert_eq!(own_did(i, "did:web:other.example"), None);
    }

    #[test]
    fn did_web_urls() {
        assert_eq!(
            did_web_url("w3c-ccg.github.io").unwrap(),
            "https://w3c-ccg.github.io/.well-known/did.json"
        );
        assert_eq!(
            did_web_url("w3c-ccg.github.io:user:alice").unwrap(),
            "https://w3c-ccg.github.io/user/alice/did.json"
        );
        assert_eq!(
            did_web_url("example.com%3A3000:user:alice").unwrap(),
            "https://example.com:3000/user/alice/did.json"
        );
        assert!(did_web_url("example.com:..:x").is_none());
        assert!(did_web_url("exa%2Fmple.com").is_none());
    }

    #[test]
    fn did_web_encoding() {
        let u = Url::parse("https://idp.example.com").unwrap();
        assert_eq!(instance_did(&u), "did:web:idp.example.com");
        assert_eq!(org_did(&u, "acme"), "did:web:idp.example.com:orgs:acme");
        assert_eq!(
            agent_did(&org_did(&u, "acme"), "A"),
            "did:web:idp.example.com:orgs:acme:agents:A"
        );
        let u = Url::parse("https://localhost:8443").unwrap();
        assert_eq!(org_did(&u, "acme"), "did:web:localhost%3A8443:orgs:acme");
        let u = Url::parse("https://example.com/idp/").unwrap();
        assert_eq!(instance_did(&u), "did:web:example.com:idp");
        assert!(resolvable_by_others(
            &Url::parse("https://example.com").unwrap()
        ));
        assert!(!resolvable_by_others(
            &Url::parse("http://example.com").unwrap()
        ));
        assert!(!resolvable_by_others(
            &Url::parse("https://127.0.0.1").unwrap()
        ));
    }
}
