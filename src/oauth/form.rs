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
