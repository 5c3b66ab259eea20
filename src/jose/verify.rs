//! The one JWS verifier: header rules, the alg allow-list, the signature against a parsed key
//! set, then the registered claims (RFC 7519 §4.1) against the caller's `now`.
//!
//! `jsonwebtoken` only checks signatures here (`jsonwebtoken::crypto::verify`); its own claim
//! validation is never run, because it reads the system clock rather than the injected one and
//! would parse the header and payload a second time.

use base64::prelude::*;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::header::{JoseHeader, parse_header, typ_is};
use super::jwk::{KeySet, VerifyingKey};
use super::{JoseError, JwsAlg, LEEWAY};

/// What the `typ` header must be (RFC 7515 §4.1.9, compared as a media type).
#[derive(Debug, Clone, Copy)]
pub enum Typ<'a> {
    /// Anything or nothing (partner assertions: their access tokens, ID tokens, plain JWTs).
    Any,
    /// Exactly this type (`at+jwt` for our access tokens, RFC 9068 §4).
    Is(&'a str),
    /// Anything but this type (a client assertion is never an access token, RFC 8725 §3.11).
    Not(&'a str),
}

/// Whose clock stamped the token's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Another party's: `exp`, `nbf` and `iat` each get [`LEEWAY`].
    Foreign,
    /// Ours: `exp` gets no leeway (we stamped it and our clock decides, RFC 9068 §4); `nbf`
    /// and `iat` keep [`LEEWAY`], since another instance's clock may run a little ahead.
    Ours,
}

/// Claims a caller may require to be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Iss,
    Sub,
    Aud,
    Exp,
    Nbf,
    Iat,
    Jti,
}

impl Claim {
    pub fn name(self) -> &'static str {
        match self {
            Claim::Iss => "iss",
            Claim::Sub => "sub",
            Claim::Aud => "aud",
            Claim::Exp => "exp",
            Claim::Nbf => "nbf",
            Claim::Iat => "iat",
            Claim::Jti => "jti",
        }
    }
}

/// What a caller expects of a JWS besides a good signature.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    pub typ: Typ<'a>,
    /// Claims that must be present (checked first, in this order).
    pub required: &'a [Claim],
    /// `aud` must name one of these (RFC 7519 §4.1.3); `None`: not checked (our own tokens,
    /// which we answer for whatever their audience).
    pub audience: Option<&'a [&'a str]>,
    /// The longest the token may live: `exp` at most this far (plus [`LEEWAY`]) from now, and
    /// from `iat` when present.
    pub max_lifetime: Option<i64>,
    pub origin: Origin,
}

/// A parsed, not yet verified, compact JWS whose header passed the rules.
pub struct Jws<'a> {
    header: JoseHeader,
    alg: JwsAlg,
    signing_input: &'a str,
    signature: &'a str,
    payload: Vec<u8>,
}

/// The header only: the whole JWS may be a bearer credential (a client assertion is one
/// until it is spent), so it never reaches a log line.
impl std::fmt::Debug for Jws<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jws")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Parses `token`: at most [`super::MAX_JWS_LEN`] long, three segments, a JSON header without
/// `crit`, a `typ` by `expect.typ`, an allow-listed `alg`, a base64url payload.
pub fn parse<'a>(token: &'a str, expect: &Expectations<'_>) -> Result<Jws<'a>, JoseError> {
    let header = parse_header(token)?;
    let typ = header.typ.as_deref();
    let typ_ok = match expect.typ {
        Typ::Any => true,
        Typ::Is(t) => typ_is(typ, t),
        Typ::Not(t) => !typ_is(typ, t),
    };
    if !typ_ok {
        return Err(JoseError::WrongType);
    }
    let alg = JwsAlg::parse(&header.alg).ok_or(JoseError::UnsupportedAlg)?;
    // `parse_header` saw exactly three segments.
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JoseError::Malformed)?;
    let (_, payload) = signing_input.split_once('.').ok_or(JoseError::Malformed)?;
    let payload = BASE64_URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JoseError::MalformedClaims)?;
    // RFC 7519 §7.2 step 10: the claims set is a JSON object (serde would read a struct
    // from an array too).
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return Err(JoseError::MalformedClaims);
    }
    Ok(Jws {
        header,
        alg,
        signing_input,
        signature,
        payload,
    })
}

/// Parses and verifies `token` against `keys`: [`parse`], then [`Jws::verify`].
pub fn verify<T: DeserializeOwned>(
    token: &str,
    keys: &KeySet,
    expect: &Expectations<'_>,
    now: i64,
) -> Result<T, JoseError> {
    parse(token, expect)?.verify(keys, expect, now)
}

impl Jws<'_> {
    pub fn alg(&self) -> JwsAlg {
        self.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    /// The claims, NOT verified: only to find which keys to verify with (the client a
    /// client assertion names, the partner that issued an assertion). The signature check
    /// then binds them.
    pub fn unverified_claims<T: DeserializeOwned>(&self) -> Result<T, JoseError> {
        serde_json::from_slice(&self.payload).map_err(|_| JoseError::MalformedClaims)
    }

    /// Verifies the signature with the keys of `keys` that fit the header, then the claims.
    /// [`JoseError::UnknownKey`] when no key fits: the caller may refresh the set and retry.
    pub fn verify<T: DeserializeOwned>(
        &self,
        keys: &KeySet,
        expect: &Expectations<'_>,
        now: i64,
    ) -> Result<T, JoseError> {
        self.verify_with(keys.keys(), expect, now)
    }

    /// [`Jws::verify`] over any keys (e.g. the one published key a `kid` names).
    pub fn verify_with<'k, T: DeserializeOwned>(
        &self,
        keys: impl IntoIterator<Item = &'k VerifyingKey>,
        expect: &Expectations<'_>,
        now: i64,
    ) -> Result<T, JoseError> {
        let kid = self.kid();
        let mut fitting = keys
            .into_iter()
            .filter(|k| k.fits(kid, self.alg))
            .peekable();
        if fitting.peek().is_none() {
            return Err(JoseError::UnknownKey);
        }
        let alg = self.alg.jsonwebtoken();
        // EC and Ed25519 keys verify with the aws-lc key parsed once (the key filter above
        // matched the key's type to the header's alg, and each parsed key is bound to its one
        // algorithm); RSA through `jsonwebtoken`.
        let raw_signature = std::cell::OnceCell::new();
        let verified = fitting.any(|k| match &k.parsed {
            Some(parsed) => raw_signature
                .get_or_init(|| {
                    base64::prelude::BASE64_URL_SAFE_NO_PAD
                        .decode(self.signature)
                        .ok()
                })
                .as_ref()
                .is_some_and(|sig| {
                    parsed
                        .verify_sig(self.signing_input.as_bytes(), sig)
                        .is_ok()
                }),
            None => jsonwebtoken::crypto::verify(
                self.signature,
                self.signing_input.as_bytes(),
                &k.key,
                alg,
            )
            .unwrap_or(false),
        });
        if !verified {
            return Err(JoseError::BadSignature);
        }
        let registered: Registered =
            serde_json::from_slice(&self.payload).map_err(|_| JoseError::MalformedClaims)?;
        registered.check(expect, now)?;
        serde_json::from_slice(&self.payload).map_err(|_| JoseError::MalformedClaims)
    }
}

/// A NumericDate (RFC 7519 §2: "A JSON numeric value representing the number of seconds from
/// 1970-01-01T00:00:00Z UTC ... non-integer values can be represented") as whole seconds that
/// fit an `i64`. A fraction is rounded the strict way for its claim ([`Round`]); anything else
/// (a string, an array, a number beyond `i64`) is a bad claim, never an absent one.
#[derive(Debug, Clone, Copy)]
enum Time {
    At(i64),
    Invalid,
}

/// Which way a fractional NumericDate is rounded: `exp` down (the token expires no later than
/// it says), `nbf` up (it starts no earlier), `iat` down (it is no younger, so the lifetime
/// check is no looser).
trait Round {
    fn round(x: f64) -> f64;
}
struct Down;
struct Up;
impl Round for Down {
    fn round(x: f64) -> f64 {
        x.floor()
    }
}
impl Round for Up {
    fn round(x: f64) -> f64 {
        x.ceil()
    }
}

fn time_of<R: Round>(v: &Value) -> Time {
    if let Some(i) = v.as_i64() {
        return Time::At(i);
    }
    match v {
        // `as_f64` is `Some` for every JSON number; integers beyond i64 stay invalid.
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().map(R::round).unwrap_or(f64::NAN);
            // i64::MAX as f64 rounds up to 2^63, which is out of range.
            if x.is_finite() && x >= i64::MIN as f64 && x < i64::MAX as f64 {
                Time::At(x as i64)
            } else {
                Time::Invalid
            }
        }
        _ => Time::Invalid,
    }
}

fn numeric_date<'de, D: Deserializer<'de>, R: Round>(d: D) -> Result<Option<Time>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        v => Some(time_of::<R>(&v)),
    })
}

fn date_down<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
    numeric_date::<D, Down>(d)
}

fn date_up<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
    numeric_date::<D, Up>(d)
}

/// An `exp` NumericDate of already verified claims as whole seconds, rounded down as the
/// verifier does (for callers that keep something until the token expires).
pub fn exp_seconds(exp: &Value) -> Option<i64> {
    match time_of::<Down>(exp) {
        Time::At(t) => Some(t),
        Time::Invalid => None,
    }
}

/// The registered claims the verifier checks; the caller's own type is parsed separately.
#[derive(Deserialize)]
struct Registered {
    #[serde(default, deserialize_with = "date_down")]
    exp: Option<Time>,
    #[serde(default, deserialize_with = "date_up")]
    nbf: Option<Time>,
    #[serde(default, deserialize_with = "date_down")]
    iat: Option<Time>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    iss: Option<IgnoredAny>,
    #[serde(default)]
    sub: Option<IgnoredAny>,
    #[serde(default)]
    jti: Option<IgnoredAny>,
}

impl Registered {
    fn present(&self, c: Claim) -> bool {
        match c {
            Claim::Iss => self.iss.is_some(),
            Claim::Sub => self.sub.is_some(),
            Claim::Aud => self.aud.is_some(),
            Claim::Exp => self.exp.is_some(),
            Claim::Nbf => self.nbf.is_some(),
            Claim::Iat => self.iat.is_some(),
            Claim::Jti => self.jti.is_some(),
        }
    }

    /// The time and audience checks, in a fixed order. Times are the token's numbers, anything
    /// an `i64` holds, so every sum saturates.
    fn check(&self, expect: &Expectations<'_>, now: i64) -> Result<(), JoseError> {
        if let Some(c) = expect.required.iter().find(|c| !self.present(**c)) {
            return Err(JoseError::MissingClaim(c.name()));
        }
        let time = |t: Option<Time>, name| match t {
            None => Ok(None),
            Some(Time::At(t)) => Ok(Some(t)),
            Some(Time::Invalid) => Err(JoseError::BadClaim(name)),
        };
        let exp = time(self.exp, "exp")?;
        let nbf = time(self.nbf, "nbf")?;
        let iat = time(self.iat, "iat")?;
        let exp_leeway = match expect.origin {
            Origin::Foreign => LEEWAY,
            Origin::Ours => 0,
        };
        // RFC 7519 §4.1.4: valid while now is before exp.
        if exp.is_some_and(|e| e.saturating_add(exp_leeway) <= now) {
            return Err(JoseError::Expired);
        }
        // RFC 7519 §4.1.5: valid from nbf on.
        if nbf.is_some_and(|n| n > now.saturating_add(LEEWAY)) {
            return Err(JoseError::NotYetValid);
        }
        if let Some(allowed) = expect.audience {
            let named = |a: &str| allowed.contains(&a);
            let ok = match &self.aud {
                Some(Value::String(a)) => named(a),
                Some(Value::Array(v)) => v.iter().filter_map(Value::as_str).any(named),
                _ => false,
            };
            if !ok {
                return Err(JoseError::InvalidAudience);
            }
        }
        if iat.is_some_and(|i| i > now.saturating_add(LEEWAY)) {
            return Err(JoseError::IatInFuture);
        }
        if let (Some(max), Some(exp)) = (expect.max_lifetime, exp)
            && (exp.saturating_sub(now) > max.saturating_add(LEEWAY)
                || iat.is_some_and(|i| exp.saturating_sub(i) > max))
        {
            return Err(JoseError::LifetimeTooLong);
        }
        Ok(())
    }
}
