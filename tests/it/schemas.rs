//! The JSON Schemas in `well-known/` (draft 2020-12): the documents a live server serves match
//! them, and each schema rejects the mistakes it exists to catch (so none of them is vacuous).

use agentidp::keys::signing::generate;
use agentidp::model::Alg;
use agentidp::oidc::discovery;
use agentidp::storage::OrgRecord;
use jsonschema::Validator;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::on_all_backends;
use crate::support::*;

const OPENID_CONFIGURATION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/well-known/openid-configuration.schema.json"
);
const OAUTH_AUTHORIZATION_SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/well-known/oauth-authorization-server.schema.json"
);
const JWKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/well-known/jwks.schema.json");

/// Every `$ref` of a schema, wherever it is.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref"
                    && let Some(s) = v.as_str()
                {
                    out.push(s.to_owned());
                }
                refs(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Loads a schema file, checks it is a valid, self-contained draft 2020-12 schema, compiles it.
/// (Also used by the DID tests for the DID and card schemas.)
pub fn load(path: &str) -> Validator {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{path}"
    );
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("{path} does not match the 2020-12 meta-schema: {e}");
    }
    let mut all = Vec::new();
    refs(&schema, &mut all);
    for r in &all {
        assert!(
            r.starts_with("#/$defs/"),
            "{path}: $ref {r} leaves the file (external validators need it self-contained)"
        );
    }
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{path} does not compile: {e}"))
}

fn errors(v: &Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("at {:?}: {e}", e.instance_path.to_string()))
        .collect()
}

#[track_caller]
fn assert_valid(v: &Validator, doc: &Value, what: &str) {
    let errs = errors(v, doc);
    assert!(
        errs.is_empty(),
        "{what} does not match its schema: {errs:#?}\n{doc:#}"
    );
}

#[track_caller]
fn assert_invalid(v: &Validator, doc: &Value, why: &str) {
    assert!(
        !v.is_valid(doc),
        "the schema accepts a document with {why}:\n{doc:#}"
    );
}

/// `doc` with `f` applied to a copy.
fn with(doc: &Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut d = doc.clone();
    f(d.as_object_mut().expect("an object"));
    d
}

/// The discovery document as the server builds it, without a server.
fn built_metadata() -> Value {
    let org = OrgRecord {
        id: "0190d8a2-0000-7000-8000-000000000000".into(),
        slug: "acme".into(),
        name: "Acme".into(),
        issuer: "https://idp.example.com/orgs/acme".into(),
        did: "did:web:idp.example.com:orgs:acme".into(),
        dek_wrapped: vec![1, 2, 3],
        dek_mk_version: 1,
        created_at: 0,
        updated_at: 0,
    };
    discovery::metadata(&org, &discovery::advertised_scopes())
}

/// A JWK Set of freshly generated keys, one per algorithm, as the server publishes them.
fn generated_jwks() -> Value {
    let keys: Vec<Value> = [Alg::ES256, Alg::RS256, Alg::EdDSA]
        .into_iter()
        .map(|alg| generate(alg).expect("key generation").public_jwk)
        .collect();
    json!({ "keys": keys })
}

async fn served_documents_match_their_schemas(backend: Backend) {
    let oidc_schema = load(OPENID_CONFIGURATION);
    let rfc8414_schema = load(OAUTH_AUTHORIZATION_SERVER);
    let jwks_schema = load(JWKS);
    let app = spawn_app(backend).await;
    let org = app.create_org().await;

    let (st, oidc) = app
        .get_json(&format!("{}/.well-known/openid-configuration", org.issuer))
        .await;
    assert_eq!(st, StatusCode::OK, "{oidc}");
    assert_valid(&oidc_schema, &oidc, "openid-configuration");
    // What a schema cannot say: the issuer is exactly the one the document was fetched for
    // (OIDC Discovery §4.3, RFC 8414 §3.3).
    assert_eq!(oidc["issuer"], org.issuer);

    let (st, rfc8414) = app
        .get_json(&app.url(&format!(
            "/.well-known/oauth-authorization-server/orgs/{}",
            org.slug
        )))
        .await;
    assert_eq!(st, StatusCode::OK, "{rfc8414}");
    assert_valid(&rfc8414_schema, &rfc8414, "oauth-authorization-server");
    assert_eq!(rfc8414["issuer"], org.issuer);

    let jwks_url = format!("{}/jwks.json", org.issuer);
    let (st, jwks) = app.get_json(&jwks_url).await;
    assert_eq!(st, StatusCode::OK, "{jwks}");
    assert_valid(&jwks_schema, &jwks, "jwks.json");
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    for alg in ["ES256", "RS256", "EdDSA"] {
        assert!(algs.contains(&alg), "no {alg} key in {jwks}");
    }

    // After a rotation the set holds both generations (new and retired keys): still valid, and
    // `kid`s stay unique (RFC 7517 §4.5), which a schema cannot express.
    let (st, v) = app
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/orgs/{}/keys/rotate", org.slug),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, jwks) = app.get_json(&jwks_url).await;
    assert_eq!(st, StatusCode::OK, "{jwks}");
    assert_valid(&jwks_schema, &jwks, "jwks.json after a key rotation");
    let mut kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 6, "{jwks}");
    kids.sort_unstable();
    kids.dedup();
    assert_eq!(kids.len(), 6, "duplicate kid in {jwks}");
}

on_all_backends!(served_documents_match_their_schemas);

#[test]
fn openid_configuration_schema_rejects_broken_documents() {
    let v = load(OPENID_CONFIGURATION);
    let good = built_metadata();
    assert_valid(&v, &good, "the built discovery document");
    // Discovery is extensible: unknown members are fine.
    assert_valid(
        &v,
        &with(&good, |m| {
            m.insert("x_vendor_extension".into(), json!({"a": 1}));
        }),
        "a document with an extension member",
    );
    // An authorization endpoint goes with a response type that needs it.
    assert_valid(
        &v,
        &with(&good, |m| {
            m.insert("response_types_supported".into(), json!(["code"]));
            m.insert(
                "authorization_endpoint".into(),
                json!("https://idp.example.com/orgs/acme/authorize"),
            );
        }),
        "a document with code flow and its authorization endpoint",
    );

    let cases: Vec<(&str, Value)> = vec![
        ("no issuer", with(&good, |m| drop(m.remove("issuer")))),
        ("no jwks_uri", with(&good, |m| drop(m.remove("jwks_uri")))),
        (
            "no token_endpoint",
            with(&good, |m| drop(m.remove("token_endpoint"))),
        ),
        (
            "no subject_types_supported",
            with(&good, |m| drop(m.remove("subject_types_supported"))),
        ),
        (
            "an issuer with a query",
            with(&good, |m| {
                m.insert(
                    "issuer".into(),
                    json!("https://idp.example.com/orgs/acme?x=1"),
                );
            }),
        ),
        (
            "an issuer with a fragment",
            with(&good, |m| {
                m.insert(
                    "issuer".into(),
                    json!("https://idp.example.com/orgs/acme#a"),
                );
            }),
        ),
        (
            "an issuer that is not an http(s) URL",
            with(&good, |m| {
                m.insert("issuer".into(), json!("idp.example.com/orgs/acme"));
            }),
        ),
        (
            "a relative token endpoint",
            with(&good, |m| {
                m.insert("token_endpoint".into(), json!("/orgs/acme/oauth2/token"));
            }),
        ),
        (
            "a jwks_uri that is not a string",
            with(&good, |m| {
                m.insert("jwks_uri".into(), json!(["https://idp.example.com/jwks"]));
            }),
        ),
        (
            "an endpoint URL with a space",
            with(&good, |m| {
                m.insert(
                    "userinfo_endpoint".into(),
                    json!("https://idp.example.com/orgs/a b/agent-info"),
                );
            }),
        ),
        (
            "ID-token algorithms without RS256",
            with(&good, |m| {
                m.insert(
                    "id_token_signing_alg_values_supported".into(),
                    json!(["ES256", "EdDSA"]),
                );
            }),
        ),
        (
            "none as a client-assertion algorithm",
            with(&good, |m| {
                m.insert(
                    "token_endpoint_auth_signing_alg_values_supported".into(),
                    json!(["RS256", "none"]),
                );
            }),
        ),
        (
            "HS256 as a client-assertion algorithm",
            with(&good, |m| {
                m.insert(
                    "token_endpoint_auth_signing_alg_values_supported".into(),
                    json!(["ES256", "HS256"]),
                );
            }),
        ),
        (
            "none as an introspection client-assertion algorithm",
            with(&good, |m| {
                m.insert(
                    "introspection_endpoint_auth_signing_alg_values_supported".into(),
                    json!(["none"]),
                );
            }),
        ),
        (
            "private_key_jwt without its signing algorithms",
            with(&good, |m| {
                drop(m.remove("token_endpoint_auth_signing_alg_values_supported"));
            }),
        ),
        (
            "scopes without openid",
            with(&good, |m| {
                m.insert("scopes_supported".into(), json!(["read"]));
            }),
        ),
        (
            "a scope with a space",
            with(&good, |m| {
                m.insert("scopes_supported".into(), json!(["openid", "read write"]));
            }),
        ),
        (
            "an unknown subject type",
            with(&good, |m| {
                m.insert("subject_types_supported".into(), json!(["anonymous"]));
            }),
        ),
        (
            "no subject type",
            with(&good, |m| {
                m.insert("subject_types_supported".into(), json!([]));
            }),
        ),
        (
            "a malformed grant type",
            with(&good, |m| {
                m.insert(
                    "grant_types_supported".into(),
                    json!(["client credentials"]),
                );
            }),
        ),
        (
            "a code response type without an authorization endpoint",
            with(&good, |m| {
                m.insert("response_types_supported".into(), json!(["code"]));
                m.remove("authorization_endpoint");
            }),
        ),
        (
            "the authorization_code grant without an authorization endpoint",
            with(&good, |m| {
                m.insert(
                    "grant_types_supported".into(),
                    json!(["client_credentials", "authorization_code"]),
                );
                m.remove("authorization_endpoint");
            }),
        ),
        (
            "a boolean given as a string",
            with(&good, |m| {
                m.insert("claims_parameter_supported".into(), json!("false"));
            }),
        ),
        (
            "a duplicated auth method",
            with(&good, |m| {
                m.insert(
                    "token_endpoint_auth_methods_supported".into(),
                    json!(["private_key_jwt", "private_key_jwt"]),
                );
            }),
        ),
    ];
    for (why, doc) in &cases {
        assert_invalid(&v, doc, why);
    }
    assert_invalid(&v, &json!([]), "an array instead of an object");
}

#[test]
fn oauth_authorization_server_schema_rejects_broken_documents() {
    let v = load(OAUTH_AUTHORIZATION_SERVER);
    let good = built_metadata();
    assert_valid(&v, &good, "the built metadata");
    // RFC 8414 does not require the OpenID scope or subject types.
    assert_valid(
        &v,
        &with(&good, |m| {
            m.insert("scopes_supported".into(), json!(["read"]));
            drop(m.remove("subject_types_supported"));
            drop(m.remove("id_token_signing_alg_values_supported"));
        }),
        "plain OAuth metadata",
    );
    let cases: Vec<(&str, Value)> = vec![
        ("no issuer", with(&good, |m| drop(m.remove("issuer")))),
        ("no jwks_uri", with(&good, |m| drop(m.remove("jwks_uri")))),
        (
            "no response_types_supported",
            with(&good, |m| drop(m.remove("response_types_supported"))),
        ),
        (
            "no token_endpoint",
            with(&good, |m| drop(m.remove("token_endpoint"))),
        ),
        (
            "an issuer with a fragment",
            with(&good, |m| {
                m.insert(
                    "issuer".into(),
                    json!("https://idp.example.com/orgs/acme#x"),
                );
            }),
        ),
        (
            "none as a revocation client-assertion algorithm",
            with(&good, |m| {
                m.insert(
                    "revocation_endpoint_auth_signing_alg_values_supported".into(),
                    json!(["ES256", "none"]),
                );
            }),
        ),
        (
            "HS512 as a client-assertion algorithm",
            with(&good, |m| {
                m.insert(
                    "token_endpoint_auth_signing_alg_values_supported".into(),
                    json!(["HS512"]),
                );
            }),
        ),
        (
            "an unknown PKCE method",
            with(&good, |m| {
                m.insert("code_challenge_methods_supported".into(), json!(["S512"]));
            }),
        ),
        (
            "implicit without an authorization endpoint",
            with(&good, |m| {
                m.insert("grant_types_supported".into(), json!(["implicit"]));
                m.remove("authorization_endpoint");
                m.insert("response_types_supported".into(), json!([]));
            }),
        ),
    ];
    for (why, doc) in &cases {
        assert_invalid(&v, doc, why);
    }
}

#[test]
fn jwks_schema_rejects_private_and_malformed_keys() {
    let v = load(JWKS);
    let good = generated_jwks();
    assert_valid(&v, &good, "a set of generated keys");
    let key = |alg: &str| -> Value {
        good["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["alg"] == alg)
            .unwrap()
            .clone()
    };
    let set = |k: Value| json!({ "keys": [k] });
    let (ec, rsa, okp) = (key("ES256"), key("RS256"), key("EdDSA"));
    // Unknown members are ignored (RFC 7517 §4, §5).
    assert_valid(
        &v,
        &json!({"keys": [with(&ec, |m| drop(m.insert("x-note".into(), json!("hi"))))], "extra": 1}),
        "a set with extension members",
    );

    let mut cases: Vec<(String, Value)> = Vec::new();
    for (name, k) in [("EC", &ec), ("RSA", &rsa), ("OKP", &okp)] {
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            cases.push((
                format!("an {name} key with private member {private}"),
                set(with(k, |m| drop(m.insert(private.into(), json!("AQAB"))))),
            ));
        }
        for required in ["kty", "kid", "alg", "use"] {
            cases.push((
                format!("an {name} key without {required}"),
                set(with(k, |m| drop(m.remove(required)))),
            ));
        }
        cases.push((
            format!("an {name} key for encryption"),
            set(with(k, |m| drop(m.insert("use".into(), json!("enc"))))),
        ));
        cases.push((
            format!("an {name} key with an empty kid"),
            set(with(k, |m| drop(m.insert("kid".into(), json!(""))))),
        ));
    }
    let more: Vec<(&str, Value)> = vec![
        ("no keys member", json!({})),
        ("an empty key list", json!({"keys": []})),
        ("keys not in an array", json!({"keys": ec.clone()})),
        (
            "a symmetric key",
            set(json!({"kty": "oct", "kid": "s", "alg": "HS256", "use": "sig", "k": "c2VjcmV0"})),
        ),
        (
            "an EC key on P-384",
            set(with(&ec, |m| drop(m.insert("crv".into(), json!("P-384"))))),
        ),
        (
            "an EC key without y",
            set(with(&ec, |m| drop(m.remove("y")))),
        ),
        (
            "an EC coordinate with a stripped leading zero (42 characters)",
            set(with(&ec, |m| {
                let x = m["x"].as_str().unwrap()[1..].to_owned();
                m.insert("x".into(), json!(x));
            })),
        ),
        (
            "an EC coordinate in padded base64",
            set(with(&ec, |m| {
                let x = format!("{}=", m["x"].as_str().unwrap());
                m.insert("x".into(), json!(x));
            })),
        ),
        (
            "an EC coordinate in standard (not url-safe) base64",
            set(with(&ec, |m| {
                let x = format!("+{}", &m["x"].as_str().unwrap()[1..]);
                m.insert("x".into(), json!(x));
            })),
        ),
        (
            "an EC key labelled RS256",
            set(with(&ec, |m| drop(m.insert("alg".into(), json!("RS256"))))),
        ),
        (
            "an RSA key labelled ES256",
            set(with(&rsa, |m| drop(m.insert("alg".into(), json!("ES256"))))),
        ),
        (
            "an RSA key without n",
            set(with(&rsa, |m| drop(m.remove("n")))),
        ),
        (
            "an RSA key without e",
            set(with(&rsa, |m| drop(m.remove("e")))),
        ),
        (
            "a 1024-bit RSA modulus",
            set(with(&rsa, |m| {
                let n = m["n"].as_str().unwrap()[..171].to_owned();
                m.insert("n".into(), json!(n));
            })),
        ),
        (
            "an RSA modulus with a leading zero octet",
            set(with(&rsa, |m| {
                let n = format!("AA{}", m["n"].as_str().unwrap());
                m.insert("n".into(), json!(n));
            })),
        ),
        (
            "an Ed25519 key labelled ES256",
            set(with(&okp, |m| drop(m.insert("alg".into(), json!("ES256"))))),
        ),
        (
            "an OKP key on X25519",
            set(with(&okp, |m| {
                drop(m.insert("crv".into(), json!("X25519")))
            })),
        ),
        (
            "an OKP key without x",
            set(with(&okp, |m| drop(m.remove("x")))),
        ),
        (
            "an alg outside ES256/RS256/EdDSA",
            set(with(&rsa, |m| drop(m.insert("alg".into(), json!("PS256"))))),
        ),
        (
            "key_ops that sign",
            set(with(&okp, |m| {
                drop(m.insert("key_ops".into(), json!(["sign"])))
            })),
        ),
    ];
    cases.extend(more.into_iter().map(|(w, d)| (w.to_owned(), d)));
    for (why, doc) in &cases {
        assert_invalid(&v, doc, why);
    }
    // One bad key spoils the set even among good ones.
    let mut mixed = good.clone();
    mixed["keys"]
        .as_array_mut()
        .unwrap()
        .push(with(&ec, |m| drop(m.insert("d".into(), json!("AQAB")))));
    assert_invalid(&v, &mixed, "a private key among public ones");
}
