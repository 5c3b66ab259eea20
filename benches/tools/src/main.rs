//! Helpers of `benches/run`:
//!
//! - `seed`: organizations and agents written straight into a database, as rows the server accepts
//!   (built with agentidp's own types: sealed keys under per-organization data keys wrapped by the
//!   master key, keyed secret digests, did:web identifiers). Creating 10,000 organizations through
//!   the API would generate 10,000 RSA keys (over an hour); here one key set per alg is generated
//!   and re-sealed per organization.
//! - `key`: an ES256 key pair for private_key_jwt clients and federation partners.
//! - `assertions`: single-use ES256 JWTs (fresh `jti` each), one per line, for the load scripts;
//!   with `--typ at+jwt --claims '{...}'` also access-token-like bearer tokens (the floor's
//!   `/verify-es256`).
//! - `pg-create` / `pg-drop`: a fresh PostgreSQL database per run.
//!
//! The seeded names are deterministic, so the load scripts derive credentials from an index
//! instead of reading a file (see `benches/wrk/token_scale.lua`): organization `i` is
//! `org-{i}`; agent `j` belongs to organization `j % orgs`, its client id is [`agent_id`] and its
//! secret [`agent_secret`].

use std::io::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use agentidp::keys::signing::{self, GeneratedKey};
use agentidp::keys::{KeyService, MasterKey, Signer};
use agentidp::model::{Alg, AuthMethod, OrgId};
use agentidp::storage::{AgentRecord, KeyRecord, OrgRecord};
use anyhow::{Context, anyhow, bail, ensure};
use base64::prelude::*;
use clap::{Parser, Subcommand};
use sqlx::{Connection, QueryBuilder};

/// Rows per multi-row INSERT (21 columns x 500 stays under SQLite's 32,766 bound parameters).
const ROWS_PER_STATEMENT: usize = 500;
/// Rows per transaction.
const ROWS_PER_TX: usize = 20_000;

/// Same meta keys as `agentidp::app` (private there): the server then refuses a different master
/// key or public URL instead of failing later.
const META_MASTER_KEY_CHECK: &str = "master_key_check";
const META_PUBLIC_URL: &str = "public_url";

#[derive(Parser)]
#[command(about = "Helpers of agentidp's benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Seed organizations and agents straight into the database.
    Seed {
        #[arg(long)]
        database_url: String,
        /// The public URL the server will run with (issuers and DIDs derive from it).
        #[arg(long)]
        public_url: String,
        #[arg(long, env = "AGENTIDP_MASTER_KEY", hide_env_values = true)]
        master_key: String,
        #[arg(long)]
        orgs: usize,
        #[arg(long)]
        agents: usize,
    },
    /// Generate an ES256 key pair: PKCS#8 DER to --pkcs8, a public JWK Set to --jwks; prints the kid.
    Key {
        #[arg(long)]
        pkcs8: std::path::PathBuf,
        #[arg(long)]
        jwks: std::path::PathBuf,
    },
    /// Write --count single-use ES256 JWTs (unique jti), one per line.
    Assertions {
        #[arg(long)]
        pkcs8: std::path::PathBuf,
        #[arg(long)]
        kid: String,
        #[arg(long)]
        iss: String,
        #[arg(long)]
        sub: String,
        #[arg(long)]
        aud: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: std::path::PathBuf,
        /// Lifetime in seconds (exp = now + ttl).
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        /// The JOSE header's `typ`.
        #[arg(long, default_value = "JWT")]
        typ: String,
        /// More claims, a JSON object appended to iss, sub, aud, iat, exp and jti.
        #[arg(long)]
        claims: Option<String>,
        #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
        threads: usize,
    },
    /// Create a PostgreSQL database.
    PgCreate {
        /// A URL of an existing database to connect to (e.g. postgres://postgres@127.0.0.1:5432/postgres).
        #[arg(long)]
        admin_url: String,
        #[arg(long)]
        name: String,
    },
    /// Drop a PostgreSQL database (if it exists).
    PgDrop {
        #[arg(long)]
        admin_url: String,
        #[arg(long)]
        name: String,
    },
}

/// The client id of seeded agent `j` (a lowercase UUID, as the server requires).
pub fn agent_id(j: usize) -> String {
    format!("0196b000-0000-7000-8000-{j:012x}")
}

/// The client secret of seeded agent `j` (43 characters, as long as a generated one).
pub fn agent_secret(j: usize) -> String {
    format!("bench-secret-{j:030}")
}

/// The id of seeded organization `i`.
pub fn org_id(i: usize) -> String {
    format!("0196a000-0000-7000-8000-{i:012x}")
}

pub fn org_slug(i: usize) -> String {
    format!("org-{i}")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

macro_rules! inserters {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;
            type Db = $db;
            type Conn = <Db as sqlx::Database>::Connection;

            pub async fn orgs(conn: &mut Conn, rows: &[OrgRecord]) -> anyhow::Result<()> {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO orgs (id, slug, name, issuer, did, dek_wrapped, dek_mk_version, created_at, updated_at) ",
                );
                qb.push_values(rows, |mut b, o| {
                    b.push_bind(o.id.to_string())
                        .push_bind(o.slug.clone())
                        .push_bind(o.name.clone())
                        .push_bind(o.issuer.clone())
                        .push_bind(o.did.clone())
                        .push_bind(o.dek_wrapped.clone())
                        .push_bind(o.dek_mk_version)
                        .push_bind(o.created_at)
                        .push_bind(o.updated_at);
                });
                qb.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub async fn keys(conn: &mut Conn, rows: &[KeyRecord]) -> anyhow::Result<()> {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO signing_keys (org_id, kid, alg, public_jwk, private_enc, created_at, activates_at, retires_at, removed_at) ",
                );
                qb.push_values(rows, |mut b, k| {
                    b.push_bind(k.org_id.to_string())
                        .push_bind(k.kid.clone())
                        .push_bind(k.alg.as_str())
                        .push_bind(k.public_jwk.clone())
                        .push_bind(k.private_enc.clone())
                        .push_bind(k.created_at)
                        .push_bind(k.activates_at)
                        .push_bind(k.retires_at)
                        .push_bind(k.removed_at);
                });
                qb.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub async fn agents(conn: &mut Conn, rows: &[AgentRecord]) -> anyhow::Result<()> {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO agents (org_id, id, name, description, did, scopes, status, auth_method, secret_digest, \
                     secret_digest_version, prev_secret_digest, prev_secret_version, prev_secret_expires_at, jwks, jwks_uri, \
                     access_token_alg, id_token_alg, access_token_ttl, tokens_valid_after_ms, created_at, updated_at) ",
                );
                qb.push_values(rows, |mut b, a| {
                    b.push_bind(a.org_id.to_string())
                        .push_bind(a.id.to_string())
                        .push_bind(a.name.clone())
                        .push_bind(a.description.clone())
                        .push_bind(a.did.clone())
                        .push_bind(serde_json::to_string(&a.scopes).unwrap_or_default())
                        .push_bind(a.status.as_str())
                        .push_bind(a.auth_method.as_str())
                        .push_bind(a.secret_digest.clone())
                        .push_bind(a.secret_digest_version)
                        .push_bind(a.prev_secret_digest.clone())
                        .push_bind(a.prev_secret_version)
                        .push_bind(a.prev_secret_expires_at)
                        .push_bind(a.jwks.as_ref().map(|j| j.to_string()))
                        .push_bind(a.jwks_uri.clone())
                        .push_bind(a.access_token_alg.as_str())
                        .push_bind(a.id_token_alg.as_str())
                        .push_bind(a.access_token_ttl)
                        .push_bind(a.tokens_valid_after_ms)
                        .push_bind(a.created_at)
                        .push_bind(a.updated_at);
                });
                qb.build().execute(&mut *conn).await?;
                Ok(())
            }

            /// Inserts everything in transactions of [`ROWS_PER_TX`] rows.
            pub async fn all(
                conn: &mut Conn,
                orgs: &[OrgRecord],
                keys: &[KeyRecord],
                agents: &mut dyn Iterator<Item = AgentRecord>,
                timings: &mut Timings,
            ) -> anyhow::Result<()> {
                let t = Instant::now();
                for chunk in orgs.chunks(ROWS_PER_TX) {
                    let mut tx = conn.begin().await?;
                    for part in chunk.chunks(ROWS_PER_STATEMENT) {
                        self::orgs(&mut *tx, part).await?;
                    }
                    tx.commit().await?;
                }
                for chunk in keys.chunks(ROWS_PER_TX) {
                    let mut tx = conn.begin().await?;
                    for part in chunk.chunks(ROWS_PER_STATEMENT) {
                        self::keys(&mut *tx, part).await?;
                    }
                    tx.commit().await?;
                }
                timings.insert_orgs_s = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let mut buf = Vec::with_capacity(ROWS_PER_STATEMENT);
                let mut tx = conn.begin().await?;
                let mut in_tx = 0;
                loop {
                    buf.clear();
                    buf.extend((&mut *agents).take(ROWS_PER_STATEMENT));
                    if buf.is_empty() {
                        break;
                    }
                    self::agents(&mut *tx, &buf).await?;
                    in_tx += buf.len();
                    if in_tx >= ROWS_PER_TX {
                        tx.commit().await?;
                        tx = conn.begin().await?;
                        in_tx = 0;
                    }
                }
                tx.commit().await?;
                timings.insert_agents_s = t.elapsed().as_secs_f64();
                Ok(())
            }
        }
    };
}

inserters!(sqlite_rows, sqlx::Sqlite);
inserters!(pg_rows, sqlx::Postgres);

#[derive(Default)]
pub struct Timings {
    keygen_s: f64,
    build_orgs_s: f64,
    insert_orgs_s: f64,
    insert_agents_s: f64,
    analyze_s: f64,
}

async fn seed(
    database_url: &str,
    public_url: &str,
    master_key: &str,
    n_orgs: usize,
    n_agents: usize,
) -> anyhow::Result<()> {
    ensure!(n_orgs >= 1, "--orgs must be at least 1");
    let started = Instant::now();
    let mut timings = Timings::default();
    let master = Arc::new(MasterKey::from_base64(master_key).context("the master key")?);
    let url = agentidp::idp::parse_public_url(public_url).map_err(|e| anyhow!(e))?;
    let base = url.as_str().trim_end_matches('/').to_owned();
    let now = unix_now();

    if let Some(path) = database_url.strip_prefix("sqlite://")
        && let Some(dir) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // The schema, through the library (the server would apply the same migrations).
    let db = agentidp::storage::open(database_url)
        .await
        .map_err(|e| anyhow!("opening {database_url}: {e}"))?;
    db.migrate().await.map_err(|e| anyhow!("{e}"))?;
    let store = agentidp::storage::Stores::new(db);
    if store.orgs.by_slug(&org_slug(0)).await?.is_some() {
        bail!("the database already holds seeded organizations");
    }
    store
        .meta
        .set(META_MASTER_KEY_CHECK, &master.check_value())
        .await?;
    store.meta.set(META_PUBLIC_URL, &base).await?;

    // One key set per alg (RSA 3072 generation is the slow part), re-sealed for every organization.
    let t = Instant::now();
    let generated: Vec<GeneratedKey> = Alg::ALL
        .into_iter()
        .map(signing::generate)
        .collect::<Result<_, _>>()?;
    timings.keygen_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut orgs = Vec::with_capacity(n_orgs);
    let mut keys = Vec::with_capacity(n_orgs * generated.len());
    for i in 0..n_orgs {
        let id = org_id(i);
        let slug = org_slug(i);
        let (dek_wrapped, dek) = master.new_data_key(&id);
        for g in &generated {
            keys.push(KeyRecord {
                org_id: id.as_str().into(),
                kid: g.kid.clone(),
                alg: g.alg,
                public_jwk: g.public_jwk.to_string(),
                private_enc: dek.seal_private_key(&id, &g.kid, g.alg.as_str(), &g.pkcs8),
                created_at: now,
                activates_at: now,
                retires_at: None,
                removed_at: None,
            });
        }
        orgs.push(OrgRecord {
            issuer: format!("{base}/orgs/{slug}"),
            did: agentidp::did::org_did(&url, &slug),
            name: format!("Bench organization {i}"),
            id: id.into(),
            slug,
            dek_wrapped,
            dek_mk_version: master.version(),
            created_at: now,
            updated_at: now,
        });
    }
    timings.build_orgs_s = t.elapsed().as_secs_f64();

    let digester = master.digester();
    let org_dids: Vec<String> = orgs.iter().map(|o| o.did.clone()).collect();
    let org_ids: Vec<OrgId> = orgs.iter().map(|o| o.id.clone()).collect();
    let mut agents = (0..n_agents).map(|j| {
        let o = j % n_orgs;
        let id = agent_id(j);
        let mut a = AgentRecord::new(
            org_ids[o].clone(),
            id.as_str().into(),
            agentidp::did::agent_did(&org_dids[o], &id),
            format!("agent-{j}"),
            AuthMethod::ClientSecretBasic,
            now,
        );
        a.scopes = vec!["bench:read".into()];
        a.secret_digest = Some(digester.digest(&agent_secret(j)));
        a.secret_digest_version = Some(digester.version());
        a
    });

    if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        pg_rows::all(&mut conn, &orgs, &keys, &mut agents, &mut timings).await?;
        let t = Instant::now();
        sqlx::query("ANALYZE").execute(&mut conn).await?;
        timings.analyze_s = t.elapsed().as_secs_f64();
        conn.close().await?;
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await?;
        sqlite_rows::all(&mut conn, &orgs, &keys, &mut agents, &mut timings).await?;
        let t = Instant::now();
        sqlx::query("ANALYZE").execute(&mut conn).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await?;
        timings.analyze_s = t.elapsed().as_secs_f64();
        conn.close().await?;
    }

    // The server must accept what was written: read it back through the library as it would.
    let t = Instant::now();
    let keysvc = KeyService::new(store.keys.clone(), master.clone(), 0, 900);
    for i in [0, n_orgs / 2, n_orgs - 1] {
        let org = store
            .orgs
            .by_slug(&org_slug(i))
            .await?
            .ok_or_else(|| anyhow!("organization {i} is not readable"))?;
        let loaded = keysvc
            .org_keys(&org, now)
            .await
            .map_err(|e| anyhow!("the keys of organization {i} do not open: {e}"))?;
        ensure!(
            loaded.keys.len() == Alg::ALL.len(),
            "organization {i} has {} keys",
            loaded.keys.len()
        );
        for alg in Alg::ALL {
            ensure!(
                loaded.signing_key(alg, now).is_some(),
                "organization {i} has no active {alg} key"
            );
        }
    }
    if n_agents > 0 {
        for j in [0, n_agents / 2, n_agents - 1] {
            let a = store
                .agents
                .get(&org_id(j % n_orgs), &agent_id(j))
                .await?
                .ok_or_else(|| anyhow!("agent {j} is not readable"))?;
            let agent = agentidp::tenancy::Agent::from_record(a);
            let (Some(d), Some(v)) = (
                &agent.record.secret_digest,
                agent.record.secret_digest_version,
            ) else {
                bail!("agent {j} has no secret digest");
            };
            ensure!(
                digester.verify(&agent_secret(j), v, d),
                "agent {j}'s secret does not verify"
            );
        }
    }
    let verify_s = t.elapsed().as_secs_f64();

    println!(
        "{{\"orgs\":{n_orgs},\"agents\":{n_agents},\"seconds\":{:.2},\"keygen_s\":{:.2},\"build_orgs_s\":{:.2},\"insert_orgs_s\":{:.2},\"insert_agents_s\":{:.2},\"analyze_s\":{:.2},\"verify_s\":{:.2}}}",
        started.elapsed().as_secs_f64(),
        timings.keygen_s,
        timings.build_orgs_s,
        timings.insert_orgs_s,
        timings.insert_agents_s,
        timings.analyze_s,
        verify_s,
    );
    Ok(())
}

fn key(pkcs8: &std::path::Path, jwks: &std::path::Path) -> anyhow::Result<()> {
    let g = signing::generate(Alg::ES256)?;
    std::fs::write(pkcs8, &g.pkcs8).with_context(|| format!("writing {}", pkcs8.display()))?;
    let set = serde_json::json!({ "keys": [g.public_jwk] });
    std::fs::write(jwks, set.to_string()).with_context(|| format!("writing {}", jwks.display()))?;
    println!("{}", g.kid);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn assertions(
    pkcs8: &std::path::Path,
    kid: &str,
    iss: &str,
    sub: &str,
    aud: &str,
    count: usize,
    out: &std::path::Path,
    ttl: u64,
    typ: &str,
    claims: Option<&str>,
    threads: usize,
) -> anyhow::Result<()> {
    let der = std::fs::read(pkcs8).with_context(|| format!("reading {}", pkcs8.display()))?;
    let signer = Signer::from_pkcs8(Alg::ES256, &der)?;
    let header = serde_json::json!({"alg": "ES256", "typ": typ, "kid": kid}).to_string();
    // The extra claims as `,"k":v,...` (empty without any).
    let extra = match claims {
        None => String::new(),
        Some(c) => {
            let v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(c).context("--claims must be a JSON object")?;
            let text = serde_json::Value::Object(v).to_string();
            let inner = &text[1..text.len() - 1];
            if inner.is_empty() {
                String::new()
            } else {
                format!(",{inner}")
            }
        }
    };
    let header_b64 = BASE64_URL_SAFE_NO_PAD.encode(header);
    let now = unix_now();
    let exp = now + ttl as i64;
    // JSON-escaped once; the per-assertion part is the jti.
    let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let (iss, sub, aud) = (q(iss), q(sub), q(aud));
    let mut run_id = [0u8; 8];
    aws_lc_rs::rand::fill(&mut run_id).map_err(|_| anyhow!("random generator"))?;
    let run_id = BASE64_URL_SAFE_NO_PAD.encode(run_id);

    let threads = threads.max(1);
    let per = count.div_ceil(threads);
    let started = Instant::now();
    let chunks: Vec<anyhow::Result<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (signer, header_b64, iss, sub, aud, run_id, extra) = (&signer, &header_b64, &iss, &sub, &aud, &run_id, &extra);
                s.spawn(move || -> anyhow::Result<String> {
                    let range = (t * per)..((t + 1) * per).min(count);
                    let mut text = String::with_capacity(range.len() * 400);
                    for n in range {
                        let claims = format!(
                            r#"{{"iss":{iss},"sub":{sub},"aud":{aud},"iat":{now},"exp":{exp},"jti":"{run_id}-{n}"{extra}}}"#
                        );
                        let start = text.len();
                        text.push_str(header_b64);
                        text.push('.');
                        BASE64_URL_SAFE_NO_PAD.encode_string(claims, &mut text);
                        let sig = signer.sign(&text.as_bytes()[start..])?;
                        text.push('.');
                        BASE64_URL_SAFE_NO_PAD.encode_string(sig, &mut text);
                        text.push('\n');
                    }
                    Ok(text)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a signing thread panicked")))
            })
            .collect()
    });
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    for c in chunks {
        f.write_all(c?.as_bytes())?;
    }
    f.flush()?;
    eprintln!(
        "{count} assertions in {:.2}s ({:.0}/s on {threads} threads)",
        started.elapsed().as_secs_f64(),
        count as f64 / started.elapsed().as_secs_f64().max(1e-9)
    );
    Ok(())
}

/// A database name safe to interpolate (CREATE DATABASE takes no bind parameters).
fn check_db_name(name: &str) -> anyhow::Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'),
        "database names here are [a-z0-9_]{{1,63}}"
    );
    Ok(())
}

async fn pg(admin_url: &str, sql: String) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Seed {
            database_url,
            public_url,
            master_key,
            orgs,
            agents,
        } => seed(&database_url, &public_url, &master_key, orgs, agents).await,
        Cmd::Key { pkcs8, jwks } => key(&pkcs8, &jwks),
        Cmd::Assertions {
            pkcs8,
            kid,
            iss,
            sub,
            aud,
            count,
            out,
            ttl,
            typ,
            claims,
            threads,
        } => assertions(
            &pkcs8,
            &kid,
            &iss,
            &sub,
            &aud,
            count,
            &out,
            ttl,
            &typ,
            claims.as_deref(),
            threads,
        ),
        Cmd::PgCreate { admin_url, name } => {
            check_db_name(&name)?;
            pg(&admin_url, format!("CREATE DATABASE \"{name}\"")).await
        }
        Cmd::PgDrop { admin_url, name } => {
            check_db_name(&name)?;
            pg(
                &admin_url,
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            )
            .await
        }
    }
}
