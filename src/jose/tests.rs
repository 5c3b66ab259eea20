//! The verifier and signer with fixed `now` values: every allow-listed alg, the classic
//! attacks (`none`, HMAC keyed with the public key, `crit`), the key filter, and every time
//! check at exactly its leeway boundary.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

const NOW: i64 = 1_900_000_000;

fn b64(b: &[u8]) -> String {
    BASE64_URL_SAFE_NO_PAD.encode(b)
}

enum Pair {
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
}

/// A test key pair for `alg`, signing through [`JwsSigner`] (so [`sign`] is exercised too).
struct TestKey {
    alg: JwsAlg,
    kid: String,
    pair: Pair,
}

impl TestKey {
    fn new(alg: JwsAlg) -> Self {
        let rsa = |enc| {
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
            Pair::Rsa(kp, enc)
        };
        let pair = match alg {
            JwsAlg::RS256 => rsa(&signature::RSA_PKCS1_SHA256),
            JwsAlg::RS384 => rsa(&signature::RSA_PKCS1_SHA384),
            JwsAlg::RS512 => rsa(&signature::RSA_PKCS1_SHA512),
            JwsAlg::PS256 => rsa(&signature::RSA_PSS_SHA256),
            JwsAlg::PS384 => rsa(&signature::RSA_PSS_SHA384),
            JwsAlg::PS512 => rsa(&signature::RSA_PSS_SHA512),
            JwsAlg::ES256 => Pair::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
                "P-256",
            ),
            JwsAlg::ES384 => Pair::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
                "P-384",
            ),
            JwsAlg::EdDSA => Pair::Ed(Ed25519KeyPair::generate().unwrap()),
        };
        TestKey {
            alg,
            kid: format!("kid-{}", alg.as_str()),
            pair,
        }
    }

    /// The public JWK, with `kid`, `alg` and `use`.
    fn jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            Pair::Rsa(k, _) => {
                let pk = k.public_key();
                json!({"kty": "RSA",
                       "n": b64(pk.modulus().big_endian_without_leading_zero()),
                       "e": b64(pk.exponent().big_endian_without_leading_zero())})
            }
            Pair::Ec(k, crv) => {
                let p = k.public_key().as_ref();
                let n = (p.len() - 1) / 2;
                json!({"kty": "EC", "crv": crv, "x": b64(&p[1..=n]), "y": b64(&p[n + 1..])})
            }
            Pair::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.as_str());
        jwk["use"] = json!("sig");
        jwk
    }

    fn set(&self) -> KeySet {
        KeySet::from_jwks(&json!({ "keys": [self.jwk()] }))
    }

    fn token(&self, claims: &Value) -> String {
        sign(self, &Header::typ("JWT"), claims).unwrap()
    }
}

impl JwsSigner for TestKey {
    fn alg(&self) -> &str {
        self.alg.as_str()
    }
    fn kid(&self) -> &str {
        &self.kid
    }
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(k, enc) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(*enc, &rng, input, &mut sig)
                    .map_err(|_| SignError::Key)?;
                Ok(sig)
            }
            Pair::Ec(k, _) => Ok(k
                .sign(&rng, input)
                .map_err(|_| SignError::Key)?
                .as_ref()
                .to_vec()),
            Pair::Ed(k) => Ok(k.sign(input).as_ref().to_vec()),
        }
    }
}

/// A JWS with any header, signed by `key` over exactly what is given.
fn with_header(key: &TestKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = JwsSigner::sign(key, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

const AUD: &str = "https://idp.example/orgs/acme";

fn expect() -> Expectations<'static> {
    Expectations {
        typ: Typ::Any,
        required: &[Claim::Exp],
        audience: Some(&[AUD]),
        max_lifetime: Some(3600),
        origin: Origin::Foreign,
    }
}

fn claims() -> Value {
    json!({"iss": "c", "sub": "c", "aud": AUD, "iat": NOW, "exp": NOW + 300, "jti": "j"})
}

fn check(key: &TestKey, claims: &Value, e: &Expectations<'_>, now: i64) -> Result<(), JoseError> {
    verify::<Map<String, Value>>(&key.token(claims), &key.set(), e, now).map(drop)
}

#[test]
fn every_allow_listed_alg_verifies_and_nothing_else_does() {
    for alg in JwsAlg::ALL {
        let key = TestKey::new(alg);
        let got: Map<String, Value> = verify(&key.token(&claims()), &key.set(), &expect(), NOW)
            .unwrap_or_else(|e| {
                panic!("{alg:?}: {e}");
            });
        assert_eq!(got["jti"], "j", "{alg:?}");
        // Another key of the same type, same kid: the signature does not verify.
        let other = TestKey::new(alg);
        assert_eq!(
            verify::<Value>(&other.token(&claims()), &key.set(), &expect(), NOW).unwrap_err(),
            JoseError::BadSignature,
            "{alg:?}"
        );
    }
}

#[test]
fn none_and_hmac_are_refused_before_any_key_is_used() {
    let key = TestKey::new(JwsAlg::ES256);
    let body = b64(claims().to_string().as_bytes());
    let none = format!("{}.{body}.", b64(br#"{"alg":"none","kid":"kid-ES256"}"#));
    assert_eq!(
        verify::<Value>(&none, &key.set(), &expect(), NOW).unwrap_err(),
        JoseError::UnsupportedAlg
    );
    // HS256 keyed with the public JWK's text and with its x coordinate.
    let jwk = key.jwk();
    for secret in [
        jwk.to_string().into_bytes(),
        BASE64_URL_SAFE_NO_PAD
            .decode(jwk["x"].as_str().unwrap())
            .unwrap(),
    ] {
        let input = format!("{}.{body}", b64(br#"{"alg":"HS256","kid":"kid-ES256"}"#));
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let forged = format!("{input}.{}", b64(mac.as_ref()));
        assert_eq!(
            verify::<Value>(&forged, &key.set(), &expect(), NOW).unwrap_err(),
            JoseError::UnsupportedAlg
        );
    }
}

#[test]
fn crit_typ_and_size_rules() {
    let key = TestKey::new(JwsAlg::EdDSA);
    let set = key.set();
    let crit = with_header(
        &key,
        &json!({"alg": "EdDSA", "kid": key.kid, "crit": ["exp"]}),
        &claims(),
    );
    assert_eq!(
        verify::<Value>(&crit, &set, &expect(), NOW).unwrap_err(),
        JoseError::Crit
    );
    let at = with_header(
        &key,
        &json!({"alg": "EdDSA", "kid": key.kid, "typ": "application/AT+JWT"}),
        &claims(),
    );
    let not_at = Expectations {
        typ: Typ::Not("at+jwt"),
        ..expect()
    };
    let is_at = Expectations {
        typ: Typ::Is("at+jwt"),
        ..expect()
    };
    assert_eq!(
        verify::<Value>(&at, &set, &not_at, NOW).unwrap_err(),
        JoseError::WrongType
    );
    assert!(verify::<Value>(&at, &set, &is_at, NOW).is_ok());
    let plain = key.token(&claims());
    assert_eq!(
        verify::<Value>(&plain, &set, &is_at, NOW).unwrap_err(),
        JoseError::WrongType
    );
    assert!(verify::<Value>(&plain, &set, &not_at, NOW).is_ok());

    // A validly signed token one byte over the cap is refused unread; at the cap it verifies.
    let pad = |n: usize| {
        let mut c = claims();
        c["pad"] = json!("a".repeat(n));
        key.token(&c)
    };
    let base = pad(0).len();
    // Each 3 bytes of claims add 4 base64 characters.
    let mut n = (MAX_JWS_LEN - base) * 3 / 4;
    while pad(n).len() < MAX_JWS_LEN {
        n += 1;
    }
    while pad(n).len() > MAX_JWS_LEN {
        n -= 1;
    }
    let at_cap = pad(n);
    assert!(at_cap.len() <= MAX_JWS_LEN && pad(n + 1).len() > MAX_JWS_LEN);
    assert!(verify::<Value>(&at_cap, &set, &expect(), NOW).is_ok());
    assert_eq!(
        verify::<Value>(&pad(n + 1), &set, &expect(), NOW).unwrap_err(),
        JoseError::Malformed
    );
    let mut tampered: Vec<&str> = plain.split('.').collect();
    let other = b64(json!({"exp": NOW + 300, "aud": AUD, "sub": "admin"})
        .to_string()
        .as_bytes());
    tampered[1] = &other;
    assert_eq!(
        verify::<Value>(&tampered.join("."), &set, &expect(), NOW).unwrap_err(),
        JoseError::BadSignature
    );
}

#[test]
fn the_key_filter() {
    let key = TestKey::new(JwsAlg::ES256);
    let token = key.token(&claims());
    let fits = |jwk: Value| {
        verify::<Value>(
            &token,
            &KeySet::from_jwks(&json!({ "keys": [jwk] })),
            &expect(),
            NOW,
        )
    };
    assert!(fits(key.jwk()).is_ok());
    let mut no_meta = key.jwk();
    for m in ["kid", "alg", "use"] {
        no_meta.as_object_mut().unwrap().remove(m);
    }
    // A header kid needs a key with that kid.
    assert_eq!(fits(no_meta.clone()).unwrap_err(), JoseError::UnknownKey);
    // Without a header kid, a key without kid, alg or use fits.
    let bare = with_header(&key, &json!({"alg": "ES256"}), &claims());
    let set = KeySet::from_jwks(&json!({ "keys": [no_meta] }));
    assert!(verify::<Value>(&bare, &set, &expect(), NOW).is_ok());

    let mut wrong_kid = key.jwk();
    wrong_kid["kid"] = json!("other");
    assert_eq!(fits(wrong_kid).unwrap_err(), JoseError::UnknownKey);
    let mut enc = key.jwk();
    enc["use"] = json!("enc");
    assert_eq!(fits(enc).unwrap_err(), JoseError::UnknownKey);
    let mut other_alg = key.jwk();
    other_alg["alg"] = json!("ES384");
    assert_eq!(fits(other_alg).unwrap_err(), JoseError::UnknownKey);
    // The kid of an RSA key, or of a P-384 key: the key type does not fit ES256.
    for alg in [JwsAlg::RS256, JwsAlg::ES384] {
        let mut k = TestKey::new(alg).jwk();
        k["kid"] = json!(key.kid);
        k.as_object_mut().unwrap().remove("alg");
        assert_eq!(fits(k).unwrap_err(), JoseError::UnknownKey, "{alg:?}");
    }
}

#[test]
fn private_symmetric_and_malformed_jwks_are_never_keys() {
    let key = TestKey::new(JwsAlg::ES256);
    let token = key.token(&claims());
    for member in PRIVATE_MEMBERS {
        let mut jwk = key.jwk();
        jwk[member] = json!("AQAB");
        assert!(is_private(&jwk), "{member}");
        assert_eq!(
            VerifyingKey::from_jwk(&jwk).unwrap_err(),
            JwkError::Private,
            "{member}"
        );
        let set = KeySet::from_jwks(&json!({ "keys": [jwk] }));
        assert!(set.is_empty(), "{member}");
        assert_eq!(
            verify::<Value>(&token, &set, &expect(), NOW).unwrap_err(),
            JoseError::UnknownKey
        );
    }
    let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": key.kid});
    assert_eq!(VerifyingKey::from_jwk(&oct).unwrap_err(), JwkError::Kty);
    let mut off_curve = key.jwk();
    off_curve["y"] = off_curve["x"].clone();
    assert_eq!(
        VerifyingKey::from_jwk(&off_curve).unwrap_err(),
        JwkError::Unusable
    );
    let mut short_ed = TestKey::new(JwsAlg::EdDSA).jwk();
    short_ed["x"] = json!("AAAA");
    assert_eq!(
        VerifyingKey::from_jwk(&short_ed).unwrap_err(),
        JwkError::Unusable
    );
    for member in ["kid", "alg", "use"] {
        let mut jwk = key.jwk();
        jwk[member] = json!(1);
        assert_eq!(
            VerifyingKey::from_jwk(&jwk).unwrap_err(),
            JwkError::Unusable,
            "{member}"
        );
    }
    let p521 = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"});
    assert_eq!(
        VerifyingKey::from_jwk(&p521).unwrap_err(),
        JwkError::Unusable
    );
    // Skipped in a set, refused at registration with the index of the culprit.
    let mixed = [key.jwk(), oct];
    assert_eq!(KeySet::from_jwks(&json!({ "keys": mixed })).keys().len(), 1);
    assert_eq!(
        KeySet::from_jwks_strict(&mixed).unwrap_err(),
        (1, JwkError::Kty)
    );
    assert!(KeySet::from_jwks(&json!({"no": "keys"})).is_empty());
}

/// Registration refuses what the key filter would never use: `use` other than `sig`, an `alg`
/// outside the allow-list or of another key type. Without `use` and `alg`, or with fitting
/// ones, the key is accepted.
#[test]
fn registration_takes_only_keys_the_filter_can_use() {
    let key = TestKey::new(JwsAlg::ES256);
    for (member, value) in [
        ("use", "enc"),
        ("alg", "RS256"),
        ("alg", "HS256"),
        ("alg", "none"),
    ] {
        let mut jwk = key.jwk();
        jwk[member] = json!(value);
        assert_eq!(
            KeySet::from_jwks_strict(&[key.jwk(), jwk]).unwrap_err(),
            (1, JwkError::NotForSignatures),
            "{member}={value}"
        );
    }
    let mut fitting = key.jwk();
    fitting["use"] = json!("sig");
    fitting["alg"] = json!("ES256");
    let mut bare = key.jwk();
    bare.as_object_mut().unwrap().remove("alg");
    assert_eq!(
        KeySet::from_jwks_strict(&[fitting, bare])
            .unwrap()
            .keys()
            .len(),
        2
    );
}

#[test]
fn exp_at_the_leeway_boundary() {
    let key = TestKey::new(JwsAlg::EdDSA);
    let mut c = claims();
    c["exp"] = json!(NOW);
    c.as_object_mut().unwrap().remove("iat");
    // Foreign: valid while now < exp + LEEWAY.
    assert!(check(&key, &c, &expect(), NOW + LEEWAY - 1).is_ok());
    assert_eq!(
        check(&key, &c, &expect(), NOW + LEEWAY).unwrap_err(),
        JoseError::Expired
    );
    // Ours: no leeway on exp.
    let ours = Expectations {
        origin: Origin::Ours,
        ..expect()
    };
    assert!(check(&key, &c, &ours, NOW - 1).is_ok());
    assert_eq!(check(&key, &c, &ours, NOW).unwrap_err(), JoseError::Expired);
}

#[test]
fn nbf_and_iat_at_the_leeway_boundary() {
    let key = TestKey::new(JwsAlg::EdDSA);
    for origin in [Origin::Foreign, Origin::Ours] {
        let e = Expectations { origin, ..expect() };
        let mut c = claims();
        c["nbf"] = json!(NOW + LEEWAY);
        c["iat"] = json!(NOW + LEEWAY);
        assert!(check(&key, &c, &e, NOW).is_ok(), "{origin:?}");
        c["nbf"] = json!(NOW + LEEWAY + 1);
        assert_eq!(
            check(&key, &c, &e, NOW).unwrap_err(),
            JoseError::NotYetValid,
            "{origin:?}"
        );
        c["nbf"] = json!(NOW);
        c["iat"] = json!(NOW + LEEWAY + 1);
        assert_eq!(
            check(&key, &c, &e, NOW).unwrap_err(),
            JoseError::IatInFuture,
            "{origin:?}"
        );
    }
}

#[test]
fn lifetime_at_its_boundary() {
    let key = TestKey::new(JwsAlg::EdDSA);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iat");
    c["exp"] = json!(NOW + 3600 + LEEWAY);
    assert!(check(&key, &c, &expect(), NOW).is_ok());
    c["exp"] = json!(NOW + 3600 + LEEWAY + 1);
    assert_eq!(
        check(&key, &c, &expect(), NOW).unwrap_err(),
        JoseError::LifetimeTooLong
    );
    // From iat, exactly the maximum.
    c["iat"] = json!(NOW - 100);
    c["exp"] = json!(NOW - 100 + 3600);
    assert!(check(&key, &c, &expect(), NOW).is_ok());
    c["exp"] = json!(NOW - 100 + 3601);
    assert_eq!(
        check(&key, &c, &expect(), NOW).unwrap_err(),
        JoseError::LifetimeTooLong
    );
    // The ends of time saturate instead of overflowing.
    c["iat"] = json!(i64::MIN);
    c["exp"] = json!(NOW + 60);
    assert_eq!(
        check(&key, &c, &expect(), NOW).unwrap_err(),
        JoseError::LifetimeTooLong
    );
    c["iat"] = json!(NOW);
    c["exp"] = json!(i64::MAX);
    assert_eq!(
        check(&key, &c, &expect(), NOW).unwrap_err(),
        JoseError::LifetimeTooLong
    );
    c["exp"] = json!(i64::MIN);
    assert_eq!(
        check(&key, &c, &expect(), i64::MAX).unwrap_err(),
        JoseError::Expired
    );
    // No maximum: a far exp is fine.
    let unbounded = Expectations {
        max_lifetime: None,
        ..expect()
    };
    c["exp"] = json!(i64::MAX);
    assert!(check(&key, &c, &unbounded, NOW).is_ok());
}

#[test]
fn audience() {
    let key = TestKey::new(JwsAlg::ES256);
    let with_aud = |aud: Option<Value>| {
        let mut c = claims();
        match aud {
            Some(a) => c["aud"] = a,
            None => drop(c.as_object_mut().unwrap().remove("aud")),
        }
        check(&key, &c, &expect(), NOW)
    };
    assert!(with_aud(Some(json!(AUD))).is_ok());
    assert!(with_aud(Some(json!(["https://other.example", AUD]))).is_ok());
    for bad in [
        Some(json!("https://other.example")),
        Some(json!(["https://other.example"])),
        Some(json!([])),
        Some(json!(7)),
        Some(json!(format!("{AUD}/"))),
        None,
    ] {
        assert_eq!(
            with_aud(bad.clone()).unwrap_err(),
            JoseError::InvalidAudience,
            "{bad:?}"
        );
    }
    // No audience expected (our own tokens): any aud passes.
    let any = Expectations {
        audience: None,
        ..expect()
    };
    let mut c = claims();
    c["aud"] = json!("https://other.example");
    assert!(check(&key, &c, &any, NOW).is_ok());
}

#[test]
fn required_and_malformed_claims() {
    let key = TestKey::new(JwsAlg::ES256);
    let e = Expectations {
        required: &[Claim::Exp, Claim::Iss, Claim::Sub, Claim::Aud, Claim::Jti],
        ..expect()
    };
    for (claim, name) in [
        ("exp", "exp"),
        ("iss", "iss"),
        ("sub", "sub"),
        ("jti", "jti"),
    ] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        assert_eq!(
            check(&key, &c, &e, NOW).unwrap_err(),
            JoseError::MissingClaim(name)
        );
    }
    for (claim, v) in [
        ("exp", json!("soon")),
        ("exp", json!(1e300)),
        ("nbf", json!([1])),
        ("iat", json!(u64::MAX)),
        // A string iat is not a NumericDate: refused, not taken as absent.
        ("iat", json!(NOW.to_string())),
        ("iat", json!(true)),
        ("nbf", json!(-1e300)),
    ] {
        let mut c = claims();
        c[claim] = v;
        assert_eq!(
            check(&key, &c, &e, NOW).unwrap_err(),
            JoseError::BadClaim(claim)
        );
    }
    // Claims that do not fit the caller's type.
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Needs {
        scope: String,
    }
    assert_eq!(
        verify::<Needs>(&key.token(&claims()), &key.set(), &e, NOW).unwrap_err(),
        JoseError::MalformedClaims
    );
    let array = with_header(&key, &json!({"alg": "ES256", "kid": key.kid}), &json!([1]));
    assert_eq!(
        verify::<Value>(&array, &key.set(), &e, NOW).unwrap_err(),
        JoseError::MalformedClaims
    );
}

#[test]
fn unverified_claims_are_readable_before_the_keys_are_known() {
    let key = TestKey::new(JwsAlg::ES256);
    let token = key.token(&claims());
    let jws = parse(&token, &expect()).unwrap();
    let c: Map<String, Value> = jws.unverified_claims().unwrap();
    assert_eq!(
        (c["iss"].as_str(), jws.kid()),
        (Some("c"), Some("kid-ES256"))
    );
    assert_eq!(jws.alg(), JwsAlg::ES256);
    // The same parsed JWS verifies once keys are found, e.g. after a refresh.
    assert_eq!(
        jws.verify::<Value>(&KeySet::default(), &expect(), NOW)
            .unwrap_err(),
        JoseError::UnknownKey
    );
    assert!(jws.verify::<Value>(&key.set(), &expect(), NOW).is_ok());
}

#[test]
fn compact_and_detached_signatures_verify() {
    let key = TestKey::new(JwsAlg::ES256);
    let header = Header {
        typ: Some("JOSE"),
        kid: None,
        jku: Some("https://idp.example/jwks.json"),
    };
    let payload = br#"{"a":1}"#;
    let d = sign_detached(&key, &header, payload).unwrap();
    let protected: Value =
        serde_json::from_slice(&BASE64_URL_SAFE_NO_PAD.decode(&d.protected).unwrap()).unwrap();
    assert_eq!(
        protected,
        json!({"alg": "ES256", "typ": "JOSE", "kid": "kid-ES256", "jku": "https://idp.example/jwks.json"})
    );
    // RFC 7515 Appendix F: the payload put back in, the JWS verifies.
    let attached = format!("{}.{}.{}", d.protected, b64(payload), d.signature);
    let got: Value = verify(
        &attached,
        &key.set(),
        &Expectations {
            audience: None,
            required: &[],
            ..expect()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(got, json!({"a": 1}));
    // A compact JWS with another kid (a DID URL): the header says so.
    let t = sign(
        &key,
        &Header {
            typ: Some("agent-proof+jwt"),
            kid: Some("did:web:x#k"),
            jku: None,
        },
        &json!({}),
    )
    .unwrap();
    let h = parse_header(&t).unwrap();
    assert_eq!(
        (h.alg.as_str(), h.typ.as_deref(), h.kid.as_deref()),
        ("ES256", Some("agent-proof+jwt"), Some("did:web:x#k"))
    );
}

/// RFC 7519 §2: a NumericDate is "a JSON numeric value" and may be non-integer. Fractions round
/// the strict way: `exp` down, `nbf` up, `iat` down.
#[test]
fn fractional_numeric_dates_are_accepted() {
    let key = TestKey::new(JwsAlg::ES256);
    let e = expect();
    let mut c = claims();
    c["exp"] = json!(NOW as f64 + 300.25);
    c["iat"] = json!(NOW as f64 - 0.5);
    c["nbf"] = json!(NOW as f64 - 10.75);
    assert_eq!(check(&key, &c, &e, NOW), Ok(()));

    // exp 0.9 s after now, rounded down, is now: expired for our own tokens (no leeway).
    let ours = Expectations {
        origin: Origin::Ours,
        ..expect()
    };
    let mut c = claims();
    c["exp"] = json!(NOW as f64 + 0.9);
    assert_eq!(check(&key, &c, &ours, NOW), Err(JoseError::Expired));
    c["exp"] = json!(NOW as f64 + 1.1);
    assert_eq!(check(&key, &c, &ours, NOW), Ok(()));

    // nbf a fraction past the leeway, rounded up, is not yet valid.
    let mut c = claims();
    c["nbf"] = json!((NOW + LEEWAY) as f64 + 0.1);
    assert_eq!(check(&key, &c, &e, NOW), Err(JoseError::NotYetValid));
    c["nbf"] = json!((NOW + LEEWAY) as f64);
    assert_eq!(check(&key, &c, &e, NOW), Ok(()));

    assert_eq!(exp_seconds(&json!(12.9)), Some(12));
    assert_eq!(exp_seconds(&json!(12)), Some(12));
    assert_eq!(exp_seconds(&json!("12")), None);
}
