//! An independent did:web resolver (spruceid's `did-web` over `ssi-dids-core`) resolves the DIDs of
//! a real `agentidp serve` process: the instance, an organization, a secret-based agent and a
//! private_key_jwt agent with an Ed25519 and a P-256 key. Each document must parse as an ssi
//! `Document` whose id is the DID; every verification method (and every assertion method an agent
//! document references, which live in the organization's document) must dereference by its DID
//! URL; the organization's methods must carry the same kids as its JWKS.
//!
//! The server binary comes from `AGENTIDP_BIN`, by default `target/debug/agentidp` of the
//! workspace: run `cargo build && cargo test -p agentidp-did-ssi`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use did_web::DIDWeb;
use serde_json::{Value, json};
use ssi_dids_core::{DIDBuf, DIDResolver, DIDURLBuf, Document};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const START_TIMEOUT: Duration = Duration::from_secs(60);

fn binary() -> PathBuf {
    let path = match std::env::var_os("AGENTIDP_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/agentidp"),
    };
    assert!(
        path.is_file(),
        "the agentidp binary is missing at {} (build it first with `cargo build` at the workspace \
         root, or point AGENTIDP_BIN at it)",
        path.display()
    );
    path
}

/// A running `agentidp serve` on a free port over a fresh SQLite data directory. Dropping it
/// kills the process and removes the directory.
struct Server {
    child: Child,
    base: String,
    token: String,
    dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The address of the `listening on ADDR` line of the JSON log.
fn listening_addr(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    // Flattened (`message`) or nested (`fields.message`) JSON events.
    let msg = v["message"].as_str().or(v["fields"]["message"].as_str())?;
    Some(msg.strip_prefix("listening on ")?.trim().to_owned())
}

impl Server {
    async fn start() -> Self {
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let dir = std::env::temp_dir().join(format!("agentidp-did-ssi-{unique}"));
        std::fs::create_dir_all(&dir).unwrap();
        let token = format!("ssi-conformance-{unique}");
        let mut cmd = Command::new(binary());
        for (k, _) in std::env::vars() {
            if k.starts_with("AGENTIDP_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .env("AGENTIDP_BIND", "127.0.0.1:0")
            .env("AGENTIDP_DATA_DIR", &dir)
            .env("AGENTIDP_BOOTSTRAP_TOKEN", &token)
            .env("AGENTIDP_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn agentidp serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = log.clone();
        // Keeps draining stderr for the server's whole life (a full pipe would block it).
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match tokio::time::timeout(START_TIMEOUT, rx.recv()).await {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = child.start_kill();
                panic!(
                    "agentidp did not log `listening on` within {START_TIMEOUT:?}:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let port = addr.rsplit(':').next().unwrap().to_owned();
        Self {
            child,
            base: format!("http://localhost:{port}"),
            token,
            dir,
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn admin_post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status.as_u16(), 201, "POST {path}: {v}");
        v
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Resolves `did` with ssi's did:web resolver and checks what every document must satisfy.
async fn resolve(server: &Server, did: &str) -> Document {
    let parsed = DIDBuf::from_string(did.to_owned())
        .unwrap_or_else(|e| panic!("ssi rejects the DID {did}: {e:?}"));
    let out = DIDWeb.resolve(&parsed).await.unwrap_or_else(|e| {
        panic!(
            "ssi cannot resolve {did}: {e}\nserver log:\n{}",
            server.log_text()
        )
    });
    let doc = out.document.into_document();
    assert_eq!(doc.id.as_str(), did, "the document's id is not the DID");
    for vm in &doc.verification_method {
        assert_eq!(
            vm.controller.as_str(),
            did,
            "{} is controlled by another DID",
            vm.id
        );
        dereference(&vm.id).await;
    }
    doc
}

/// Dereferences a DID URL to the verification method it names (DID Core §7.2).
async fn dereference(url: &DIDURLBuf) -> ssi_dids_core::document::DIDVerificationMethod {
    let out = DIDWeb
        .dereference(url)
        .await
        .unwrap_or_else(|e| panic!("{url} does not dereference: {e}"));
    let vm = out
        .content
        .into_verification_method()
        .unwrap_or_else(|c| panic!("{url} dereferences to something else: {c:?}"));
    assert_eq!(vm.id.as_str(), url.as_str());
    vm
}

/// The DID URLs a verification relationship lists, made absolute against the document's DID.
fn relationship_urls(doc: &Document, relationship: &str) -> Vec<DIDURLBuf> {
    let v = serde_json::to_value(doc).unwrap();
    v[relationship]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let s = r
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| r["id"].as_str().map(str::to_owned))
                        .expect("a DID URL or an embedded method");
                    let abs = if s.starts_with('#') {
                        format!("{}{s}", doc.id)
                    } else {
                        s
                    };
                    DIDURLBuf::from_string(abs).expect("a DID URL")
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ids(doc: &Document) -> BTreeSet<String> {
    doc.verification_method
        .iter()
        .map(|m| m.id.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssi_did_web_resolves_every_agentidp_did() {
    let server = Server::start().await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let instance_did = format!("did:web:localhost%3A{port}");

    let slug = format!("ssi{}", &server.token[server.token.len() - 8..]);
    let org = server
        .admin_post(
            "/api/v1/orgs",
            json!({"slug": slug, "name": "SSI Conformance"}),
        )
        .await;
    let org_did = org["did"].as_str().unwrap().to_owned();
    assert_eq!(org_did, format!("{instance_did}:orgs:{slug}"));
    let issuer = org["issuer"].as_str().unwrap().to_owned();

    let secret_agent = server
        .admin_post(
            &format!("/api/v1/orgs/{slug}/agents"),
            json!({"name": "secret agent", "scopes": ["read"]}),
        )
        .await;
    // Two valid public keys: the RFC 8037 §A.2 Ed25519 example and the did:jwk P-256 example.
    let keys = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
         "alg": "EdDSA", "use": "sig", "kid": "ed"},
        {"kty": "EC", "crv": "P-256", "x": "acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0",
         "y": "_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE", "alg": "ES256", "use": "sig", "kid": "ec"},
    ]});
    let keyed_agent = server
        .admin_post(
            &format!("/api/v1/orgs/{slug}/agents"),
            json!({"name": "keyed agent", "scopes": ["read"],
                   "token_endpoint_auth_method": "private_key_jwt", "jwks": keys}),
        )
        .await;

    // The instance.
    let doc = resolve(&server, &instance_did).await;
    assert!(doc.verification_method.is_empty());

    // The organization: its methods are its JWKS keys, under the same kids.
    let org_doc = resolve(&server, &org_did).await;
    let jwks: Value = server
        .http
        .get(format!("{issuer}/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: BTreeSet<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("{org_did}#{}", k["kid"].as_str().unwrap()))
        .collect();
    assert!(!kids.is_empty());
    assert_eq!(ids(&org_doc), kids, "org methods vs JWKS kids");
    for rel in ["authentication", "assertionMethod"] {
        let urls: BTreeSet<String> = relationship_urls(&org_doc, rel)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(urls, kids, "{rel} of the organization");
    }

    // The agents: controlled by the organization; their assertion methods (the organization's
    // keys, and their own) dereference through ssi too.
    for (agent, own_keys) in [(&secret_agent, 0), (&keyed_agent, 2)] {
        let did = agent["did"].as_str().unwrap();
        let doc = resolve(&server, did).await;
        assert_eq!(
            serde_json::to_value(&doc.controller).unwrap(),
            json!(org_did),
            "{did} is not controlled by its organization"
        );
        assert_eq!(doc.verification_method.len(), own_keys, "{did}");
        let types: BTreeSet<&str> = doc
            .verification_method
            .iter()
            .map(|m| m.type_.as_str())
            .collect();
        if own_keys > 0 {
            assert_eq!(types, BTreeSet::from(["JsonWebKey2020", "Multikey"]));
        }
        let assertion = relationship_urls(&doc, "assertionMethod");
        assert_eq!(assertion.len(), own_keys + kids.len(), "{did}");
        for url in &assertion {
            dereference(url).await;
        }
        for url in relationship_urls(&doc, "authentication") {
            assert!(url.as_str().starts_with(did), "{url}");
            dereference(&url).await;
        }
        assert!(
            doc.service
                .iter()
                .any(|s| s.id.as_str().ends_with("#agent-card")),
            "no agent card service in {did}"
        );
    }

    drop(server);
}
