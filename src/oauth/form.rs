//! `application/x-www-form-urlencoded` request bodies (RFC 6749 §3.2, Appendix B), parsed with
//! the RFC's rule that a parameter must not be repeated (RFC 6749 §3.1) except where a later RFC
//! allows it (`resource`, RFC 8707 §2; `audience`, RFC 8693 §2.1).

use super::error::OAuthError;
use crate::model::Secret;

const REPEATABLE: [&str; 2] = ["resource", "audience"];

#[derive(Default)]
pub struct FormParams {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for FormParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets or tokens: only names are shown.
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

/// The most parameters one request may carry (RFC 6749 leaves it to the server). The largest
/// request this server understands has about fifteen (token exchange with a client assertion and
/// a few `resource`/`audience` values); more is refused as `invalid_request` (§5.2) before the
/// rest of the body is even decoded.
pub const MAX_PARAMS: usize = 64;

/// Up to this many parameters the duplicate check scans the ones already kept: a normal form
/// (three to six parameters) is checked with no allocation, as fast as it gets. Beyond it a hash
/// set keeps the check linear in the number of parameters.
const SCAN_LIMIT: usize = 8;

#[cfg(test)]
thread_local! {
    /// Key comparisons and set look-ups of the duplicate check on this thread (tests bound it).
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
fn step() {
    #[cfg(test)]
    STEPS.with(|s| s.set(s.get() + 1));
}

impl FormParams {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        // The non-repeatable names seen, once the form is longer than SCAN_LIMIT.
        let mut seen: Option<std::collections::HashSet<String>> = None;
        for (count, (k, v)) in url::form_urlencoded::parse(body).enumerate() {
            if count >= MAX_PARAMS {
                return Err(OAuthError::invalid_request(format!(
                    "a request may carry at most {MAX_PARAMS} parameters"
                )));
            }
            // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
            if v.is_empty() {
                continue;
            }
            if !REPEATABLE.contains(&k.as_ref()) {
                let repeated = match &mut seen {
                    Some(set) => {
                        step();
                        !set.insert(k.as_ref().to_owned())
                    }
                    None if pairs.len() >= SCAN_LIMIT => {
                        let mut set: std::collections::HashSet<String> = pairs
                            .iter()
                            .filter(|(pk, _)| !REPEATABLE.contains(&pk.as_str()))
                            .map(|(pk, _)| pk.clone())
                            .collect();
                        step();
                        let repeated = !set.insert(k.as_ref().to_owned());
                        seen = Some(set);
                        repeated
                    }
                    None => pairs.iter().any(|(pk, _)| {
                        step();
                        *pk == k
                    }),
                };
                if repeated {
                    return Err(OAuthError::invalid_request(format!(
                        "parameter {k} is repeated"
                    )));
                }
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    pub fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_empties() {
        let f = FormParams::parse(b"grant_type=client_credentials&scope=&resource=a&resource=b")
            .unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("scope"), None);
        assert_eq!(f.all("resource"), vec!["a", "b"]);
        assert!(FormParams::parse(b"scope=a&scope=b").is_err());
        assert!(
            !format!("{:?}", FormParams::parse(b"client_secret=s3cr3t").unwrap())
                .contains("s3cr3t")
        );
    }

    fn steps_of(body: &[u8]) -> (Result<FormParams, OAuthError>, u64) {
        STEPS.with(|s| s.set(0));
        let r = FormParams::parse(body);
        (r, STEPS.with(|s| s.get()))
    }

    fn distinct_keys(n: usize) -> String {
        (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Issue 9 point 5: a 65 KB body of 9,285 distinct keys cost 9,285²/2 key comparisons before
    /// any authentication. Now it is refused after MAX_PARAMS parameters, and the duplicate check
    /// is linear: the steps stay within a small multiple of the parameters kept.
    #[test]
    fn many_parameters_are_refused_in_bounded_steps() {
        let body = distinct_keys(9_285);
        assert!(body.len() > 60_000);
        let (r, steps) = steps_of(body.as_bytes());
        let e = r.unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
        assert!(e.description.contains("at most 64 parameters"), "{e}");
        let bound = (SCAN_LIMIT * SCAN_LIMIT + MAX_PARAMS) as u64;
        assert!(steps <= bound, "{steps} steps > {bound}");

        // At the cap the form is accepted, still in linear steps (the old pairwise check: 2,016).
        let (r, steps) = steps_of(distinct_keys(MAX_PARAMS).as_bytes());
        assert_eq!(r.unwrap().get("k63"), Some("v"));
        assert!(steps <= bound, "{steps} steps > {bound}");
        // A repeat found by the hash set is refused like one found by the scan.
        let body = format!("{}&k3=again", distinct_keys(20));
        assert!(FormParams::parse(body.as_bytes()).is_err());
        // Repeatable parameters never enter the check, in either mode.
        let body = format!("{}&resource=a&resource=b", distinct_keys(20));
        assert_eq!(
            FormParams::parse(body.as_bytes())
                .unwrap()
                .all("resource")
                .len(),
            2
        );
    }
}

/// Property tests: `FormParams::parse` never panics, and what it returns follows RFC 6749 §3.1
/// (no empty value, no repeated parameter except the repeatable ones).
#[cfg(test)]
mod proptests {
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    use super::*;

    fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn never_panics_on_bytes(body in vec(any::<u8>(), 0..512)) {
            let _ = FormParams::parse(&body);
        }

        #[test]
        fn accepted_forms_keep_the_rules(body in "[a-z%&=+0-9A-F_.~ -]{0,200}") {
            if let Ok(f) = FormParams::parse(body.as_bytes()) {
                for (k, v) in &f.pairs {
                    prop_assert!(!v.is_empty(), "empty value of {k}");
                    if !REPEATABLE.contains(&k.as_str()) {
                        prop_assert_eq!(f.pairs.iter().filter(|(k2, _)| k2 == k).count(), 1);
                    }
                }
            }
        }

        #[test]
        fn encoded_pairs_round_trip(map in btree_map(".{1,12}", ".{0,30}", 0..8)) {
            let body = encode(map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let f = FormParams::parse(body.as_bytes()).unwrap();
            for (k, v) in &map {
                let expected = (!v.is_empty()).then_some(v.as_str());
                prop_assert_eq!(f.get(k), expected);
            }
        }

        #[test]
        fn a_repeated_parameter_is_refused(name in "[a-z_]{1,12}", a in ".{1,10}", b in ".{1,10}") {
            prop_assume!(!REPEATABLE.contains(&name.as_str()));
            let body = encode([(name.as_str(), a.as_str()), (name.as_str(), b.as_str())]);
            prop_assert!(FormParams::parse(body.as_bytes()).is_err());
        }

        #[test]
        fn repeatable_parameters_keep_every_value(values in vec(".{1,10}", 0..6)) {
            for name in REPEATABLE {
                let body = encode(values.iter().map(|v| (name, v.as_str())));
                let f = FormParams::parse(body.as_bytes()).unwrap();
                prop_assert_eq!(f.all(name), values.clone());
            }
        }
    }
}
