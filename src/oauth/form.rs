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

impl FormParams {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
            if v.is_empty() {
                continue;
            }
            if !REPEATABLE.contains(&k.as_ref()) && pairs.iter().any(|(pk, _)| *pk == k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k} is repeated"
                )));
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
