//! Compact JWS / JWT parsing and verification (RFC 7515, RFC 7519) as every caller uses it:
//! client assertions, partner assertions, our own access tokens. Two inputs: a raw token
//! (header rules, base64url, the alg allow-list, the key filter), and a claims set that is
//! signed with a real key first, so that the registered-claim checks (`exp`, `nbf`, `iat`,
//! `aud`, the lifetime bound) are reached with any JSON the fuzzer finds.
#![no_main]

use std::sync::OnceLock;

use agentidp::jose::{
    Claim, Expectations, Header, JwsSigner, KeySet, LEEWAY, Origin, SignError, Typ, sign, typ_is,
    verify,
};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::prelude::*;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;

struct Key {
    pair: Ed25519KeyPair,
    set: KeySet,
}

impl JwsSigner for Key {
    fn alg(&self) -> &str {
        "EdDSA"
    }
    fn kid(&self) -> &str {
        "k1"
    }
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self.pair.sign(input).as_ref().to_vec())
    }
}

fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = Ed25519KeyPair::generate().expect("an Ed25519 key");
        let x = BASE64_URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let set = KeySet::from_jwks(
            &json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "use": "sig"}]}),
        );
        assert_eq!(set.keys().len(), 1);
        Key { pair, set }
    })
}

fn expectations(sel: u8) -> Expectations<'static> {
    const REQUIRED: [Claim; 3] = [Claim::Iss, Claim::Exp, Claim::Jti];
    Expectations {
        typ: match sel % 3 {
            0 => Typ::Any,
            1 => Typ::Is("at+jwt"),
            _ => Typ::Not("at+jwt"),
        },
        required: if sel & 4 == 0 { &[] } else { &REQUIRED },
        audience: if sel & 8 == 0 {
            None
        } else {
            Some(&["https://idp.example/orgs/acme/oauth2/token"])
        },
        max_lifetime: if sel & 16 == 0 { None } else { Some(3600) },
        origin: if sel & 32 == 0 {
            Origin::Foreign
        } else {
            Origin::Ours
        },
    }
}

fn number(claims: &Value, name: &str) -> Option<f64> {
    claims.get(name).and_then(Value::as_f64)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let expect = expectations(sel);
    let key = key();
    if sel & 64 == 0 {
        // A raw token: anything may arrive at the token endpoint.
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        let _ = verify::<Value>(token, &key.set, &expect, NOW);
        if let Ok(h) = agentidp::jose::parse_header(token) {
            let _ = typ_is(h.typ.as_deref(), "at+jwt");
        }
        return;
    }
    // A claims set, signed: the registered-claim checks run on whatever it holds.
    let Ok(claims) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    if !claims.is_object() {
        return;
    }
    let typ = if sel & 128 == 0 { "JWT" } else { "at+jwt" };
    let Ok(token) = sign(key, &Header::typ(typ), &claims) else {
        return;
    };
    if let Ok(got) = verify::<Value>(&token, &key.set, &expect, NOW) {
        assert_eq!(got, claims, "verification changed the claims");
        // An accepted token is not expired beyond the leeway and is already valid.
        if let Some(exp) = number(&claims, "exp") {
            assert!(exp + LEEWAY as f64 >= NOW as f64, "expired token accepted");
        }
        if let Some(nbf) = number(&claims, "nbf") {
            assert!(
                nbf - LEEWAY as f64 <= NOW as f64,
                "not-yet-valid token accepted"
            );
        }
        if expect.required.contains(&Claim::Exp) {
            assert!(claims.get("exp").is_some());
        }
        if let Some(max) = expect.max_lifetime
            && let Some(exp) = number(&claims, "exp")
        {
            assert!(
                exp <= (NOW + max + LEEWAY) as f64,
                "lifetime bound not applied"
            );
        }
    }
});
