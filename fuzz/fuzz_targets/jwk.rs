//! JWK and JWK Set parsing (RFC 7517) of keys that agents and partners register or publish: never
//! a panic, never a private or symmetric key accepted as a verifying key.
#![no_main]

use agentidp::jose::{KeySet, VerifyingKey, is_private};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(k) = VerifyingKey::from_jwk(&v) {
        assert!(!is_private(&v), "a private JWK became a verifying key");
        assert_ne!(v.get("kty").and_then(Value::as_str), Some("oct"));
        let _ = k.fits(
            v.get("kid").and_then(Value::as_str),
            agentidp::jose::JwsAlg::ES256,
        );
    }
    let set = KeySet::from_jwks(&v);
    if let Some(keys) = v.get("keys").and_then(Value::as_array) {
        assert!(set.keys().len() <= keys.len());
        if let Ok(strict) = KeySet::from_jwks_strict(keys) {
            assert!(keys.iter().all(|k| !is_private(k)));
            assert_eq!(strict.keys().len(), keys.len());
        }
    } else {
        assert!(set.is_empty());
    }
});
