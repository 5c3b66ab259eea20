//! The did:web identifiers of the instance, its organizations and their agents, derived from the
//! public URL (W3C CCG did:web method specification §3.1; INTERFACE.md "Tenancy model").

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

/// An organization's issuer: `{public_url}/orgs/{slug}` (INTERFACE.md "Tenancy model").
pub fn org_issuer(public_url: &Url, slug: &str) -> String {
    format!("{}/orgs/{slug}", public_url.as_str().trim_end_matches('/'))
}

/// `did:web:HOST[:PATH]:orgs:SLUG`.
pub fn org_did(public_url: &Url, slug: &str) -> String {
    format!("{}:orgs:{slug}", instance_did(public_url))
}

/// `ORG_DID:agents:ID`.
pub fn agent_did(org_did: &str, agent_id: &str) -> String {
    format!("{org_did}:agents:{agent_id}")
}

/// True when did:web resolvers elsewhere can resolve our DIDs (HTTPS and a host name, not an IP).
pub fn resolvable_by_others(public_url: &Url) -> bool {
    public_url.scheme() == "https" && matches!(public_url.host(), Some(url::Host::Domain(_)))
}
