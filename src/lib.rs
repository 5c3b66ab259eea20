//! agentidp: an identity provider for software agents.
//!
//! Module map: `model` (identifiers, secrets, clock) <- `storage` (one module per aggregate,
//! SQLite and PostgreSQL) and `ephemeral` (replay markers, invalidation; database or Redis) <- `keys`
//! (envelope encryption, signing keys) <- `tenancy` (organizations, agents, access) <- `tokens`
//! (JWT minting and validation) <- `oauth` / `oidc` (the protocols) <- `http` (the edge) <- `app`.
//! The domain modules never import axum or sqlx.

pub mod admin_error;
pub mod app;
pub mod config;
pub mod did;
pub mod ephemeral;
pub mod federation;
pub mod fetch;
pub mod http;
pub mod idp;
pub mod jose;
pub mod keys;
pub mod model;
pub mod oauth;
pub mod oidc;
pub mod remote;
pub mod storage;
pub mod telemetry;
pub mod tenancy;
pub mod tokens;

#[cfg(test)]
mod architecture {
    /// The domain never imports the web framework or the SQL driver (kanidm's lib/core split):
    /// only `http/`, the storage modules that hold SQL and the assembly in `app.rs` may.
    #[test]
    fn domain_does_not_import_axum_or_sqlx() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&root, &mut files);
        // One entry per aggregate module of `storage` (a new aggregate adds its file here).
        const SQL_FILES: [&str; 8] = [
            "storage/mod.rs",
            "storage/orgs.rs",
            "storage/agents.rs",
            "storage/keys.rs",
            "storage/partners.rs",
            "storage/replay.rs",
            "storage/outbox.rs",
            "storage/meta.rs",
        ];
        let allowed = |rel: &str| {
            rel.starts_with("http/")
                || SQL_FILES.contains(&rel)
                || rel.starts_with("app/")
                || rel == "lib.rs"
        };
        let mut offenders = Vec::new();
        for f in &files {
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if allowed(&rel) {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            if text.contains("axum::")
                || text.contains("use axum")
                || text.contains("sqlx::")
                || text.contains("tower::")
            {
                offenders.push(rel);
            }
        }
        assert!(files.len() > 20, "walked {} files", files.len());
        assert!(
            offenders.is_empty(),
            "domain modules importing axum/sqlx/tower: {offenders:?}"
        );
    }
}
