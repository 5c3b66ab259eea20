//! agentidp: an identity provider for software agents.
//!
//! # Module map
//!
//! Domain modules, lowest first; each may import only the modules its row names (the
//! `architecture` test below reads this table and enforces exactly it, so it cannot drift from
//! the code). The edge (`app`: start-up, serving, jobs; `http`: routes, extractors, responses)
//! may use everything and nothing imports it. Only `storage` imports sqlx; only `http` and
//! `app` import axum, tower or hyper; only `model` reads the system time.
//!
//! | module | owns | may import |
//! | --- | --- | --- |
//! | `model` | ids, secrets, algorithms, the clock, did:web builders | |
//! | `telemetry` | logging and metrics set-up | |
//! | `limiter` | rate limits (GCRA on the injected clock; in process or Redis) | model |
//! | `config` | settings (flags and `AGENTIDP_*`) | model, limiter |
//! | `jose` | JWS/JWK: parse keys once, the allow-list, verify, sign | model |
//! | `storage` | one module per aggregate, SQLite and PostgreSQL | model |
//! | `fetch` | outbound HTTP behind the SSRF guard | model |
//! | `remote` | documents of others, cached within bounds | model, fetch, jose |
//! | `ephemeral` | replay markers, the invalidation bus (database or Redis) | model, storage |
//! | `keys` | master key, envelope encryption, signing keys | model, storage, ephemeral, jose |
//! | `admin_error` | the admin use cases' error | model, storage, keys |
//! | `tokens` | access tokens (RFC 9068), ID tokens | model, jose, keys |
//! | `tenancy` | organizations, agents, secrets, access | model, storage, ephemeral, fetch, remote, jose, keys, admin_error |
//! | `people` | user accounts, passwords, invites, sign-in sessions | model, storage, keys, tenancy, admin_error |
//! | `did` | DID documents, resolution, agent cards, proofs | model, storage, ephemeral, fetch, remote, jose, keys, tokens, tenancy, admin_error |
//! | `federation` | partners, their keys, assertion verification | model, storage, ephemeral, fetch, remote, jose, keys, tokens, tenancy, did, admin_error |
//! | `oauth` | client authentication, the authorization endpoint, grants, introspection, revocation | model, storage, ephemeral, remote, jose, keys, tokens, tenancy, people, did, federation |
//! | `oidc` | discovery, `/agent-info` | model, storage, jose, keys, tokens, tenancy, did, oauth |
//! | `idp` | the assembled domain the edge holds | model, config, storage, ephemeral, fetch, remote, jose, keys, tokens, tenancy, people, did, federation, oauth, oidc |

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
pub mod limiter;
pub mod model;
pub mod oauth;
pub mod oidc;
pub mod people;
pub mod remote;
pub mod storage;
pub mod telemetry;
pub mod tenancy;
pub mod tokens;

#[cfg(test)]
mod architecture {
    //! The module map above, enforced: every `crate::NAME` a domain module names must be in its
    //! row, every module must have a row, and the rows must form no cycle. Plus the crate rules:
    //! which modules may name the web framework, the SQL driver and the system time.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    const EDGE: [&str; 4] = ["app", "http", "lib", "main"];

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// `(path relative to src/, text before the first `#[cfg(test)]`)` of every source file
    /// (tests may reach anywhere), leaving out files that are themselves test modules
    /// (`#[cfg(test)] mod tests;` declares `tests.rs` next to its parent).
    fn sources() -> Vec<(String, String)> {
        let mut files = Vec::new();
        rust_files(&root(), &mut files);
        files.sort();
        let all: Vec<(String, String)> = files
            .iter()
            .map(|f| {
                let rel = f
                    .strip_prefix(root())
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                (rel, std::fs::read_to_string(f).unwrap())
            })
            .collect();
        let mut test_files = BTreeSet::new();
        for (rel, text) in &all {
            let dir = module_dir(rel);
            for (i, _) in text.match_indices("#[cfg(test)]") {
                let after = text[i + "#[cfg(test)]".len()..].trim_start();
                let after = after.strip_prefix("pub(crate) ").unwrap_or(after);
                if let Some(decl) = after.strip_prefix("mod ")
                    && let Some((name, _)) = decl.split_once(';')
                    && !name.contains('{')
                {
                    let name = name.trim();
                    test_files.insert(format!("{dir}{name}.rs"));
                    test_files.insert(format!("{dir}{name}/mod.rs"));
                }
            }
        }
        all.into_iter()
            .filter(|(rel, _)| !test_files.contains(rel))
            .map(|(rel, text)| {
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
                (rel, code)
            })
            .collect()
    }

    /// The folder that a file's child modules live in: `keys/` for `keys/mod.rs` and for
    /// `keys.rs`, `` for `lib.rs`.
    fn module_dir(rel: &str) -> String {
        match rel.rsplit_once('/') {
            _ if rel == "lib.rs" || rel == "main.rs" => String::new(),
            Some((dir, "mod.rs")) => format!("{dir}/"),
            _ => format!("{}/", rel.strip_suffix(".rs").unwrap_or(rel)),
        }
    }

    /// The module path of a file: `["keys"]` for `keys/mod.rs`, `["keys", "signing"]` for
    /// `keys/signing.rs`, `[]` for `lib.rs`.
    fn module_path(rel: &str) -> Vec<String> {
        let dir = module_dir(rel);
        dir.trim_end_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn top_module(rel: &str) -> &str {
        let first = rel.split('/').next().unwrap_or(rel);
        first.strip_suffix(".rs").unwrap_or(first)
    }

    /// The table of the module doc: module -> modules it may import.
    fn allowed() -> BTreeMap<String, BTreeSet<String>> {
        let lib = std::fs::read_to_string(root().join("lib.rs")).unwrap();
        let mut table = BTreeMap::new();
        for line in lib.lines() {
            let Some(row) = line.strip_prefix("//! | `") else {
                continue;
            };
            let cells: Vec<&str> = row.split('|').collect();
            let name = cells[0].trim().trim_end_matches('`').to_owned();
            let deps = cells
                .get(2)
                .map(|c| {
                    c.split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            table.insert(name, deps);
        }
        table
    }

    /// The top-level modules a file's code names: `crate::NAME`, and `super::` chains that climb
    /// to the crate root from the file's module (`super::oauth` in `keys/mod.rs`); inside
    /// `use` groups too (`use crate::{a::{b, c}, d}` names `a` and `d`).
    fn references(rel: &str, code: &str) -> BTreeSet<String> {
        let depth = module_path(rel).len();
        let ident = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        // The names at depth 0 of a `{...}` group (its text after the opening brace).
        let group = |g: &str| -> Vec<String> {
            let (mut depth, mut start, mut names) = (0usize, 0usize, Vec::new());
            for (i, c) in g.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        names.push(ident(g[start..i].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(ident(g[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            names
        };
        let mut out = BTreeSet::new();
        let bytes = code.as_bytes();
        let mut i = 0;
        while i < code.len() {
            let rest = &code[i..];
            let word_start = i == 0 || {
                let b = bytes[i - 1];
                !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b':')
            };
            let (root_rest, skip) = if !word_start {
                (None, 1)
            } else if let Some(r) = rest.strip_prefix("crate::") {
                (Some(r), "crate::".len())
            } else if rest.starts_with("super::") {
                let mut r = rest;
                let mut ups = 0;
                while let Some(next) = r.strip_prefix("super::") {
                    r = next;
                    ups += 1;
                }
                ((ups == depth).then_some(r), rest.len() - r.len())
            } else {
                (None, 1)
            };
            if let Some(r) = root_rest {
                match r.strip_prefix('{') {
                    Some(g) => out.extend(group(g)),
                    None => {
                        out.insert(ident(r));
                    }
                }
            }
            i += skip.max(1);
            while i < code.len() && !code.is_char_boundary(i) {
                i += 1;
            }
        }
        out.retain(|n| !n.is_empty() && n != "self");
        out
    }

    /// Every arrow between top-level modules: (from, to) -> the files that draw it.
    fn arrows() -> BTreeMap<(String, String), Vec<String>> {
        let modules: BTreeSet<String> = sources()
            .iter()
            .map(|(rel, _)| top_module(rel).to_owned())
            .collect();
        let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (rel, code) in sources() {
            let from = top_module(&rel).to_owned();
            for to in references(&rel, &code) {
                if to != from && modules.contains(&to) {
                    out.entry((from.clone(), to)).or_default().push(rel.clone());
                }
            }
        }
        out
    }

    /// The violations of `table` by `arrows`, as readable lines.
    fn violations(
        table: &BTreeMap<String, BTreeSet<String>>,
        arrows: &BTreeMap<(String, String), Vec<String>>,
    ) -> Vec<String> {
        let mut bad = Vec::new();
        for ((from, to), files) in arrows {
            if EDGE.contains(&from.as_str()) {
                continue;
            }
            if EDGE.contains(&to.as_str()) {
                bad.push(format!("{from} -> {to} (the edge) in {files:?}"));
                continue;
            }
            match table.get(from) {
                None => bad.push(format!("{from} has no row in the module map (lib.rs)")),
                Some(ok) if !ok.contains(to) => bad.push(format!(
                    "{from} -> {to} is not in the module map, in {files:?}"
                )),
                Some(_) => {}
            }
        }
        bad.sort();
        bad.dedup();
        bad
    }

    #[test]
    fn imports_follow_the_module_map() {
        let table = allowed();
        assert!(table.len() >= 15, "module map not found: {table:?}");
        let arrows = arrows();
        assert!(arrows.len() > 30, "found only {} arrows", arrows.len());
        let bad = violations(&table, &arrows);
        assert!(
            bad.is_empty(),
            "imports outside the module map:\n{}",
            bad.join("\n")
        );
        // Every module of src/ has a row or is the edge, and every row names a real module.
        let modules: BTreeSet<String> = sources()
            .iter()
            .map(|(rel, _)| top_module(rel).to_owned())
            .collect();
        for m in &modules {
            assert!(
                table.contains_key(m) || EDGE.contains(&m.as_str()),
                "module {m} has no row in the module map"
            );
        }
        for (m, deps) in &table {
            assert!(
                modules.contains(m),
                "the module map names {m}, which does not exist"
            );
            for d in deps {
                assert!(
                    table.contains_key(d),
                    "{m}'s row names {d}, which has no row"
                );
            }
        }
    }

    /// Rows may only name rows above them: the map is layered, so no cycle can hide in it.
    #[test]
    fn the_module_map_is_layered() {
        let lib = std::fs::read_to_string(root().join("lib.rs")).unwrap();
        let order: Vec<String> = lib
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `"))
            .map(|r| r.split('`').next().unwrap_or("").to_owned())
            .collect();
        for (m, deps) in allowed() {
            let at = order.iter().position(|o| *o == m).unwrap();
            for d in deps {
                let dat = order.iter().position(|o| *o == d).unwrap();
                assert!(
                    dat < at,
                    "{m} may import {d}, which comes after it in the map"
                );
            }
        }
    }

    /// The check catches what it is for: a cycle or a forbidden arrow added to the code.
    #[test]
    fn a_forbidden_arrow_is_reported() {
        let table = allowed();
        let mut arrows = arrows();
        arrows.insert(("keys".into(), "oauth".into()), vec!["keys/mod.rs".into()]);
        arrows.insert(
            ("tenancy".into(), "http".into()),
            vec!["tenancy/mod.rs".into()],
        );
        let bad = violations(&table, &arrows);
        assert!(
            bad.iter().any(|b| b.starts_with("keys -> oauth")),
            "{bad:?}"
        );
        assert!(
            bad.iter().any(|b| b.starts_with("tenancy -> http")),
            "{bad:?}"
        );
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            references(
                "x.rs",
                "use crate::{a::{b, c}, d};\nlet x = crate::e::f; $crate::g; mycrate::h"
            ),
            names(&["a", "d", "e"])
        );
        // `super::` climbing to the crate root names a top-level module; one that stays inside
        // the module does not.
        assert_eq!(
            references("keys/mod.rs", "use super::oauth::OAuth;"),
            names(&["oauth"])
        );
        assert_eq!(references("keys/signing.rs", "use super::Alg;"), names(&[]));
        assert_eq!(
            references("oauth/grants/federated.rs", "use super::super::super::did;"),
            names(&["did"])
        );
        assert_eq!(
            references("keys/signing.rs", "use super::super::{jose, model::X};"),
            names(&["jose", "model"])
        );
    }

    /// Only the edge names the web framework, only `storage` the SQL driver, only `model` the
    /// system time, only `fetch` the HTTP client (so every outbound request passes the SSRF
    /// guard).
    #[test]
    fn external_crates_stay_in_their_modules() {
        let rules: [(&[&str], &[&str]); 4] = [
            (
                &["axum::", "use axum", "tower::", "tower_http::", "hyper::"],
                &["http/", "app/", "main.rs"],
            ),
            (&["sqlx::"], &["storage/"]),
            (&["Utc::now", "SystemTime::now", "now_v7"], &["model.rs"]),
            (&["reqwest::"], &["fetch.rs"]),
        ];
        let mut bad = Vec::new();
        for (rel, code) in sources() {
            for (needles, allowed) in &rules {
                if allowed.iter().any(|a| rel.starts_with(a)) {
                    continue;
                }
                for n in *needles {
                    if code.contains(n) {
                        bad.push(format!("{rel}: {n}"));
                    }
                }
            }
        }
        assert!(bad.is_empty(), "outside their modules: {bad:?}");
    }
}
