//! DID documents (W3C DID Core 1.0) for the instance, organizations and agents.
//!
//! One verification method per key, id `{did}#{kid}` with `kid` the RFC 7638 thumbprint (the
//! same `kid` as in the JWKS). EC and RSA keys are `JsonWebKey2020` with `publicKeyJwk`; Ed25519
//! keys are `Multikey` with `publicKeyMultibase`. The contexts of both types are listed, or
//! JSON-LD consumers reject the document.

use base64::prelude::*;
use serde_json::{Value, json};

use crate::keys::OrgKeys;
use crate::keys::signing::thumbprint;
use crate::storage::OrgRecord;
use crate::tenancy::Agent;

pub const CONTEXT_DID: &str = "https://www.w3.org/ns/did/v1";
pub const CONTEXT_JWS_2020: &str = "https://w3id.org/security/suites/jws-2020/v1";
pub const CONTEXT_MULTIKEY: &str = "https://w3id.org/security/multikey/v1";

/// `created`, `updated` and `deactivated` of DID resolution metadata (DID Core §7.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocMeta {
    pub created: i64,
    pub updated: i64,
    pub deactivated: bool,
}

fn contexts() -> Value {
    json!([CONTEXT_DID, CONTEXT_JWS_2020, CONTEXT_MULTIKEY])
}

/// Multicodec prefix of an Ed25519 public key (`ed25519-pub`, 0xed as a varint).
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];

/// `z` + base58btc(multicodec || key): the Multikey encoding (CID 1.0 §2.2.2).
pub fn ed25519_multibase(raw: &[u8]) -> String {
    let mut buf = ED25519_MULTICODEC.to_vec();
    buf.extend_from_slice(raw);
    format!("z{}", bs58::encode(buf).into_string())
}

/// The public members of a JWK (no `d`, never anything private even if a caller slipped).
fn public_jwk(jwk: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in ["kty", "crv", "x", "y", "n", "e", "alg", "kid"] {
        if let Some(v) = jwk.get(k) {
            out.insert(k.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// A verification method for `jwk`, controlled by `controller`, identified as `{controller}#{kid}`.
pub fn verification_method(controller: &str, kid: &str, jwk: &Value) -> Value {
    let id = format!("{controller}#{kid}");
    let is_ed25519 = jwk.get("kty").and_then(Value::as_str) == Some("OKP")
        && jwk.get("crv").and_then(Value::as_str) == Some("Ed25519");
    if is_ed25519
        && let Some(raw) = jwk
            .get("x")
            .and_then(Value::as_str)
            .and_then(|x| BASE64_URL_SAFE_NO_PAD.decode(x).ok())
    {
        return json!({"id": id, "type": "Multikey", "controller": controller, "publicKeyMultibase": ed25519_multibase(&raw)});
    }
    json!({"id": id, "type": "JsonWebKey2020", "controller": controller, "publicKeyJwk": public_jwk(jwk)})
}

/// The instance's own document: who it is and where its organizations' issuers live.
pub fn instance_document(instance_did: &str, base: &str) -> Value {
    json!({
        "@context": [CONTEXT_DID],
        "id": instance_did,
        "service": [{"id": format!("{instance_did}#home"), "type": "LinkedDomains", "serviceEndpoint": base}],
    })
}

/// An organization's document: the public halves of its published signing keys (the JWKS),
/// a service naming its OIDC issuer, and the instance as controller.
pub fn org_document(
    org: &OrgRecord,
    instance_did: &str,
    keys: &OrgKeys,
    now: i64,
) -> (Value, DocMeta) {
    let published: Vec<_> = keys.keys.iter().filter(|k| k.is_published(now)).collect();
    let vms: Vec<Value> = published
        .iter()
        .map(|k| verification_method(&org.did, &k.kid, &k.public_jwk_value()))
        .collect();
    let ids: Vec<String> = published
        .iter()
        .map(|k| format!("{}#{}", org.did, k.kid))
        .collect();
    let doc = json!({
        "@context": contexts(),
        "id": org.did,
        "controller": instance_did,
        "verificationMethod": vms,
        "authentication": ids,
        "assertionMethod": ids,
        "service": [
            {"id": format!("{}#oidc-issuer", org.did), "type": "OpenIdConnectIssuer", "serviceEndpoint": org.issuer},
            {"id": format!("{}#jwks", org.did), "type": "JsonWebKeySet", "serviceEndpoint": format!("{}/jwks.json", org.issuer)},
        ],
    });
    let updated = published
        .iter()
        .map(|k| k.created_at)
        .chain([org.updated_at])
        .max()
        .unwrap_or(org.updated_at);
    (
        doc,
        DocMeta {
            created: org.created_at,
            updated,
            deactivated: false,
        },
    )
}

/// The agent's own registered public keys (private_key_jwt agents), by thumbprint. A key with
/// private or symmetric members (possible in a fetched `jwks_uri` set) is never listed.
pub fn agent_keys(jwks: Option<&Value>) -> Vec<(String, Value)> {
    let Some(keys) = jwks.and_then(|j| j.get("keys")).and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter(|k| !crate::jose::is_private(k))
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .map(|k| (thumbprint(k), k.clone()))
        .collect()
}

/// An agent's document. Its own keys (if any) authenticate it; the organization's published keys
/// are referenced from `assertionMethod` (DID Core §5.3 allows another DID's methods) because a
/// proof-of-control JWT is signed by the organization and verifiers do not follow `controller`.
/// A secret-based agent lists no keys of its own: the organization (controller) vouches for it.
pub fn agent_document(
    org: &OrgRecord,
    org_keys: &OrgKeys,
    agent: &Agent,
    agent_jwks: Option<&Value>,
    now: i64,
) -> (Value, DocMeta) {
    let did = &agent.record.did;
    let own = agent_keys(agent_jwks);
    let vms: Vec<Value> = own
        .iter()
        .map(|(kid, jwk)| verification_method(did, kid, jwk))
        .collect();
    let own_ids: Vec<String> = own.iter().map(|(kid, _)| format!("{did}#{kid}")).collect();
    let org_published: Vec<_> = org_keys
        .keys
        .iter()
        .filter(|k| k.is_published(now))
        .collect();
    let mut assertion = own_ids.clone();
    assertion.extend(
        org_published
            .iter()
            .map(|k| format!("{}#{}", org.did, k.kid)),
    );
    let card = format!("{}/agents/{}/card", org.issuer, agent.id());
    let doc = json!({
        "@context": contexts(),
        "id": did,
        "controller": org.did,
        "verificationMethod": vms,
        "authentication": own_ids,
        "assertionMethod": assertion,
        "service": [
            {"id": format!("{did}#oidc-issuer"), "type": "OpenIdConnectIssuer", "serviceEndpoint": org.issuer},
            {"id": format!("{did}#agent-info"), "type": "AgentInfo", "serviceEndpoint": format!("{}/agent-info", org.issuer)},
            {"id": format!("{did}#agent-card"), "type": "A2AAgentCard", "serviceEndpoint": card},
        ],
    });
    let updated = org_published
        .iter()
        .map(|k| k.created_at)
        .chain([agent.record.updated_at])
        .max()
        .unwrap_or(agent.record.updated_at);
    let meta = DocMeta {
        created: agent.record.created_at,
        updated,
        deactivated: agent.is_deactivated(now),
    };
    (doc, meta)
}

/// What is left of a deactivated DID's document: its id (did:web "Deactivate": no longer served
/// as active).
pub fn deactivated_document(did: &str) -> Value {
    json!({"@context": [CONTEXT_DID], "id": did})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The did:key specification's Ed25519 example (W3C CCG did:key, §"Ed25519"):
    /// `did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp` is the key whose JWK `x` is
    /// `O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik` (multicodec 0xed01, base58btc, prefix `z`).
    #[test]
    fn ed25519_multikey_matches_the_did_key_test_vector() {
        let x = BASE64_URL_SAFE_NO_PAD
            .decode("O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik")
            .unwrap();
        let x: [u8; 32] = x.try_into().unwrap();
        assert_eq!(
            ed25519_multibase(&x),
            "z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
        );
        let back = bs58::decode("6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp")
            .into_vec()
            .unwrap();
        assert_eq!(&back[..2], &ED25519_MULTICODEC);
        assert_eq!(&back[2..], &x);
    }

    #[test]
    fn vm_types() {
        let ec = json!({"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"secret"});
        let vm = verification_method("did:web:x", "k1", &ec);
        assert_eq!(vm["type"], "JsonWebKey2020");
        assert!(vm["publicKeyJwk"].get("d").is_none());
        let ed = json!({"kty":"OKP","crv":"Ed25519","x": BASE64_URL_SAFE_NO_PAD.encode([1u8; 32])});
        let vm = verification_method("did:web:x", "k2", &ed);
        assert_eq!(vm["type"], "Multikey");
        assert_eq!(vm["id"], "did:web:x#k2");
    }
}
