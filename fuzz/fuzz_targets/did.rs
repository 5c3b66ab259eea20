//! DID syntax (DID Core §3.1), did:web to URL (did:web §3.2) and the Universal Resolver path
//! (`/1.0/identifiers/{did}`, percent-decoded once by the router): never a panic; a DID we
//! accept is well-formed, and a did:web URL never leaves the host the DID names.
#![no_main]

use agentidp::did::{MAX_DID_LEN, OwnDid, did_from_path, did_web_url, own_did, parse_did};
use libfuzzer_sys::fuzz_target;

const INSTANCE: &str = "did:web:localhost%3A8080";

fn check(s: &str) {
    let Some(did) = parse_did(s) else {
        return;
    };
    assert!(s.len() <= MAX_DID_LEN);
    assert!(s.starts_with("did:"));
    assert!(!did.method.is_empty() && !did.msid.is_empty());
    if did.method == "web"
        && let Some(url) = did_web_url(did.msid)
    {
        assert!(url.starts_with("https://"), "{url}");
        assert!(url.ends_with("/did.json"), "{url}");
    }
    match own_did(INSTANCE, s) {
        Some(OwnDid::Org { slug }) => assert!(!slug.contains(':')),
        Some(OwnDid::Agent { slug, agent_id }) => {
            assert!(!slug.contains(':') && !agent_id.contains(':'))
        }
        Some(OwnDid::Instance) => assert_eq!(s, INSTANCE),
        None => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check(s);
    // The resolver route's raw path segment, decoded as `did_from_path` decides (once, or not
    // at all for a DID pasted as printed).
    if let Some(decoded) = did_from_path(s) {
        check(&decoded);
        if parse_did(s).is_some() && !s.contains("%25") {
            assert_eq!(
                decoded, s,
                "a DID as printed must reach the resolver unchanged"
            );
        }
    }
});
