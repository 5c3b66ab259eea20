//! did:web identifiers derived from the public URL (W3C CCG did:web method specification §3.1).

use url::Url;

/// The instance's did:web: the host, `:` in a port percent-encoded as `%3A`, then each path
/// segment of the public URL joined with `:`.
pub fn instance_did(public_url: &Url) -> String {
    let mut did = String::from("did:web:");
    did.push_str(
        &percent_encoding::utf8_percent_encode(
            public_url.host_str().unwrap_or("localhost"),
            DID_HOST,
        )
        .to_string(),
    );
    if let Some(port) = public_url.port() {
        did.push_str("%3A");
        did.push_str(&port.to_string());
    }
    for seg in public_url
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
    {
        did.push(':');
        did.push_str(seg);
    }
    did
}

/// Characters of a host that must be percent-encoded inside a DID's method-specific id.
const DID_HOST: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');

pub fn org_did(public_url: &Url, slug: &str) -> String {
    format!("{}:orgs:{slug}", instance_did(public_url))
}

pub fn agent_did(org_did: &str, agent_id: &str) -> String {
    format!("{org_did}:agents:{agent_id}")
}

/// True when did:web resolvers elsewhere can resolve our DIDs (HTTPS and a host name, not an IP).
pub fn resolvable_by_others(public_url: &Url) -> bool {
    public_url.scheme() == "https" && matches!(public_url.host(), Some(url::Host::Domain(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
