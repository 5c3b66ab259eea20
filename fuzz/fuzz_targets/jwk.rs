//! JWK and JWK Set parsing (RFC 7517) of keys that agents and partners register or publish: never
//! a panic, never a private or symmetric key accepted as a verifying key; and the fetcher's JSON
//! complexity check in front of every fetched document.
#![no_main]

use agentidp::fetch::{MAX_JSON_DEPTH, MAX_JSON_VALUES, check_json_complexity};
use agentidp::jose::{KeySet, VerifyingKey, is_private};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Values (containers included) and nesting depth of a parsed document.
fn shape(v: &Value, depth: usize) -> (usize, usize) {
    let children: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => o.values().collect(),
        _ => return (1, depth),
    };
    children.iter().fold((1, depth + 1), |(n, d), c| {
        let (cn, cd) = shape(c, depth + 1);
        (n + cn, d.max(cd))
    })
}

fuzz_target!(|data: &[u8]| {
    // The fetcher's complexity check runs before any fetched key set is parsed: whatever it
    // lets through parses into at most its bounds.
    let within = check_json_complexity(data).is_ok();
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if within {
        let (values, depth) = shape(&v, 0);
        assert!(
            values <= MAX_JSON_VALUES,
            "{values} values passed the check"
        );
        assert!(depth <= MAX_JSON_DEPTH, "depth {depth} passed the check");
    }
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
