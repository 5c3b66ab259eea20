//! The token endpoint's form parser (RFC 6749 Appendix B), before any authentication: it must
//! never panic, and every error it answers must have an `error_description` of the characters
//! RFC 6749 §5.2 allows (%x20-21 / %x23-5B / %x5D-7E), whatever the input.
#![no_main]

use agentidp::oauth::form::FormParams;
use libfuzzer_sys::fuzz_target;

fn rfc6749_charset(s: &str) -> bool {
    s.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

fuzz_target!(|data: &[u8]| {
    match FormParams::parse(data) {
        Ok(p) => {
            for name in [
                "grant_type",
                "client_id",
                "client_secret",
                "scope",
                "resource",
                "audience",
                "client_assertion",
                "subject_token",
            ] {
                let one = p.get(name);
                let all = p.all(name);
                // `get` is the first of `all`, and a present parameter is never empty
                // (RFC 6749 §3.1: an empty value is omitted).
                assert_eq!(one, all.first().map(String::as_str));
                assert!(all.iter().all(|v| !v.is_empty()));
            }
        }
        Err(e) => assert!(
            rfc6749_charset(&e.description),
            "error_description outside RFC 6749 §5.2: {:?}",
            e.description
        ),
    }
});
