//! Start-up checks and side effects: the database and its migrations, the master key, the
//! recorded public URL (and an explicit move), the bootstrap token.
//!
//! Order matters. Every check that needs nothing created comes first ([`check_settings`], then
//! in [`App::build`](super::App::build) the TLS files, the outbound CA file, the port and Redis),
//! then the database checks that only read, and only then anything is created or written: a
//! failed first start leaves no data directory, master key or database behind, and the bootstrap
//! token's digest is recorded last, once nothing else can fail, so the token printed is the one
//! stored. Only `serve` creates an instance; every other command refuses to when it finds none.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use base64::prelude::*;
use url::Url;

use crate::config::Settings;
use crate::keys::MasterKey;
use crate::keys::envelope::random_token;
use crate::model::OrgId;
use crate::model::Secret;
use crate::storage::{self, Event, Stores};

const META_PUBLIC_URL: &str = "public_url";
const META_MASTER_KEY_CHECK: &str = "master_key_check";
const META_DEPLOYMENT_ID: &str = "deployment_id";
use crate::tenancy::principals::{BOOTSTRAP_RETIRED, META_BOOTSTRAP, bootstrap_record, is_retired};

/// How to make a master key, for every message about a missing or malformed one.
pub const MAKE_MASTER_KEY: &str = "make one with `openssl rand -base64 32`";

/// What a command may do to the instance it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `serve`: creates a new instance where there is none (data directory, SQLite file, master
    /// key, schema).
    Serve,
    /// `migrate`: applies migrations to an existing SQLite instance, or creates the schema in a
    /// PostgreSQL database (whose master key the operator gives); never a new SQLite instance.
    Migrate,
    /// Every other command (`keys rotate`): the instance must exist.
    Existing,
}

/// The checks of the settings alone, before anything is opened or created. Checks of an
/// operator-chosen value that need nothing but the settings belong here (the bootstrap token's
/// minimum length among them), so that they run before any side effect of every command.
pub fn check_settings(settings: &Settings) -> anyhow::Result<()> {
    settings
        .check_operator_tokens()
        .map_err(|e| anyhow::anyhow!(e))?;
    configured_master_key(settings)?;
    match (&settings.tls_cert, &settings.tls_key) {
        (Some(_), Some(_)) | (None, None) => {}
        _ => bail!("AGENTIDP_TLS_CERT and AGENTIDP_TLS_KEY go together: set both or neither"),
    }
    match (&settings.smtp_url, &settings.mail_from) {
        (Some(url), Some(from)) => {
            crate::mail::Smtp::new(url, from, "localhost").map_err(|e| anyhow!(e))?;
        }
        (None, None) => {}
        _ => bail!(
            "AGENTIDP_SMTP_URL and AGENTIDP_MAIL_FROM go together: set both (mail is sent) or \
             neither (links are handed to the admin who asked)"
        ),
    }
    Ok(())
}

/// `AGENTIDP_MASTER_KEY`, parsed; required with PostgreSQL.
fn configured_master_key(settings: &Settings) -> anyhow::Result<Option<MasterKey>> {
    match &settings.master_key {
        Some(k) => MasterKey::from_base64(k.expose()).map(Some).map_err(|_| {
            anyhow!("AGENTIDP_MASTER_KEY is not base64 of 32 bytes; {MAKE_MASTER_KEY}")
        }),
        None if settings.is_postgres() => bail!(
            "AGENTIDP_MASTER_KEY is required with PostgreSQL (every instance must share it); \
             {MAKE_MASTER_KEY} and keep it safe: the stored keys and secrets cannot be read without it"
        ),
        None => Ok(None),
    }
}

/// Opens an existing instance for a command other than `serve` and `migrate` (it never creates
/// one): migrates it and checks the master key.
pub async fn open_database(settings: &Settings) -> anyhow::Result<(Stores, MasterKey)> {
    open_database_for(settings, Opening::Existing).await
}

/// Opens the configured database for `opening`: reads what it needs to check first (the
/// configured or stored master key against the database's check value), then creates what
/// `opening` allows, migrates, and records the master key's check value on a new instance.
pub async fn open_database_for(
    settings: &Settings,
    opening: Opening,
) -> anyhow::Result<(Stores, MasterKey)> {
    let configured = configured_master_key(settings)?;
    let url = settings.database_url();
    let embedded = !settings.is_postgres() && settings.database_url.is_none();
    let key_file = settings.data_dir.join("master.key");
    if let Some(file) = storage::sqlite_file(&url)
        && opening != Opening::Serve
        && !file.exists()
    {
        bail!(not_an_instance(settings, opening));
    }
    let from_file = match configured {
        Some(_) => None,
        None => read_master_key(&key_file)?,
    };

    // Side effects begin: only `serve` creates the embedded data directory and file.
    if embedded && opening == Opening::Serve {
        create_private_data(&settings.data_dir)?;
    }
    let db = storage::open(&url)
        .await
        .map_err(|e| anyhow!("opening the database: {e}"))?;
    let store = Stores::new(db.clone());
    // Before migrating (as the connecting user: the application role has no rights on a database
    // that is not migrated yet): a database without the table is a new one.
    let recorded = db
        .meta_before_migration(META_MASTER_KEY_CHECK)
        .await
        .map_err(|e| anyhow!("reading the instance metadata: {e}"))?;
    if recorded.is_none() && opening == Opening::Existing {
        bail!(not_an_instance(settings, opening));
    }
    let master = match (configured, from_file, &recorded) {
        (Some(k), _, _) | (None, Some(k), _) => k,
        (None, None, Some(_)) => bail!(
            "this database was created with a master key, but {} does not exist and \
             AGENTIDP_MASTER_KEY is unset: restore the key file or set AGENTIDP_MASTER_KEY \
             (a new key cannot read the stored keys and secrets)",
            key_file.display()
        ),
        (None, None, None) if opening == Opening::Serve => create_master_key(&key_file)?,
        (None, None, None) => bail!(
            "no master key: {} does not exist and AGENTIDP_MASTER_KEY is unset; only \
             `agentidp serve` creates a new instance",
            key_file.display()
        ),
    };
    if let Some(v) = &recorded
        && *v != master.check_value()
    {
        bail!(
            "the master key does not match the one this database was created with; refusing to start"
        );
    }
    db.migrate().await.map_err(|e| anyhow!("{e}"))?;
    if recorded.is_none() {
        store
            .meta
            .set(META_MASTER_KEY_CHECK, &master.check_value())
            .await?;
    }
    Ok((store, master))
}

/// Why a command other than `serve` found no instance, and how to point it at one.
fn not_an_instance(settings: &Settings, opening: Opening) -> String {
    let command = match opening {
        Opening::Migrate => "`agentidp migrate`",
        _ => "this command",
    };
    let never = format!(
        "{command} works on an existing instance and never creates one (only `agentidp serve` does)"
    );
    if settings.is_postgres() {
        return format!(
            "no agentidp instance in the PostgreSQL database of AGENTIDP_DATABASE_URL (it has no \
             agentidp schema yet): {never}; run `agentidp migrate` or `agentidp serve` against it first"
        );
    }
    if settings.database_url.is_some() {
        let file = storage::sqlite_file(&settings.database_url())
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "of AGENTIDP_DATABASE_URL".into());
        return format!(
            "no agentidp instance in the SQLite database {file}: {never}; set \
             AGENTIDP_DATABASE_URL to the database `agentidp serve` uses"
        );
    }
    let dir = std::path::absolute(&settings.data_dir).unwrap_or_else(|_| settings.data_dir.clone());
    format!(
        "no agentidp instance in the data directory {} (no {}): {never}; run it with \
         AGENTIDP_DATA_DIR (or --data-dir) set to the directory `agentidp serve` uses (the \
         default ./data is relative to the working directory), or start a new instance there \
         with `agentidp serve`",
        dir.display(),
        dir.join("agentidp.db").display()
    )
}

/// The embedded default's data directory (0700 when we create it) and its SQLite file (0600 when
/// we create it; SQLite gives its `-wal` and `-shm` files the database file's permissions). The
/// database holds digests and wrapped keys: nobody but the service's user reads them.
fn create_private_data(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let db = dir.join("agentidp.db");
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&db)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", db.display())),
    }
}

/// The master key in `path`, if the file exists.
fn read_master_key(path: &Path) -> anyhow::Result<Option<MasterKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => MasterKey::from_base64(&text).map(Some).map_err(|_| {
            anyhow!(
                "the master key in {} is not base64 of 32 bytes (restore the original; a new \
                 key cannot read an existing database)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Generates the master key of a new embedded instance into `path` (0600).
fn create_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    let key = MasterKey::generate();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(key.to_base64().expose().as_bytes())?;
    f.sync_all()?;
    tracing::info!(path = %path.display(), "generated a new master key");
    Ok(key)
}

/// This deployment's identifier: random, recorded by the first instance to start on the
/// database and shared by every later one. It namespaces what the instances share in Redis (rate
/// limits, failure counters), so that deployments sharing one Redis never mix their counters, and
/// it does not change when the bootstrap token or the public URL does.
pub async fn deployment_id(store: &Stores) -> anyhow::Result<String> {
    if let Some(id) = store.meta.get(META_DEPLOYMENT_ID).await? {
        return Ok(id);
    }
    let mut raw = [0u8; 16];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let fresh: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(store.meta.get_or_insert(META_DEPLOYMENT_ID, &fresh).await?)
}

/// The recorded public URL must not change silently: every issuer and DID derives from it.
pub async fn check_public_url(
    store: &Stores,
    url: &Url,
    allow_move: bool,
    now: i64,
) -> anyhow::Result<()> {
    let current = url.as_str().trim_end_matches('/').to_owned();
    match store.meta.get(META_PUBLIC_URL).await? {
        None => store.meta.set(META_PUBLIC_URL, &current).await?,
        Some(r) if r == current => {}
        Some(r) if allow_move => {
            let base = Url::parse(&current)?;
            let moves: Vec<(OrgId, String, String)> = store
                .orgs
                .all_ids()
                .await?
                .into_iter()
                .map(|(id, slug)| {
                    (
                        id,
                        format!("{current}/orgs/{slug}"),
                        crate::did::org_did(&base, &slug),
                    )
                })
                .collect();
            let event = Event {
                org_id: None,
                kind: "instance.moved",
                subject: current.clone(),
                data: serde_json::json!({"from": r, "to": current, "orgs": moves.len()}),
                at: now,
            };
            store.orgs.rebase(&moves, &event).await?;
            store.meta.set(META_PUBLIC_URL, &current).await?;
            tracing::warn!(from = %r, to = %current, orgs = moves.len(), "moved every issuer and DID to the new public URL");
        }
        Some(r) => bail!(
            "the public URL changed from {r} to {current}: every issuer and DID partners trust would change. \
             Set AGENTIDP_PUBLIC_URL={r}, or move on purpose with --move-public-url"
        ),
    }
    Ok(())
}

/// The platform-admin token of this start: its digest (what the admin API checks), a token
/// generated now (to be shown once), and what to record. Nothing is written until [`record`]
/// (`BootstrapToken::record`), which start-up calls last.
pub struct BootstrapToken {
    /// Digest version and digest.
    pub digest: (i64, Vec<u8>),
    /// A token generated on this (first) start, for printing once.
    pub new_token: Option<Secret>,
    to_record: Option<String>,
}

impl BootstrapToken {
    /// Records the digest (for a configured or a new token). Call it only once nothing else can
    /// fail: a recorded digest of a token that was never printed locks the operator out.
    pub async fn record(&self, store: &Stores) -> anyhow::Result<()> {
        if let Some(v) = &self.to_record {
            store.meta.set(META_BOOTSTRAP, v).await?;
        }
        Ok(())
    }
}

/// The platform-admin token: the configured one (never printed; it replaces the recorded one,
/// which is how a lost token is recovered), the one recorded earlier, or a new one, returned for
/// printing once. Reads only; see [`BootstrapToken::record`].
pub async fn bootstrap_token(
    store: &Stores,
    digester: &crate::keys::SecretDigester,
    configured: Option<&Secret>,
) -> anyhow::Result<BootstrapToken> {
    let recorded = store.meta.get(META_BOOTSTRAP).await?;
    let retired = || {
        tracing::info!(
            "the bootstrap token is retired (agentidp admin-token revoke bootstrap): the admin API \
             takes platform admin tokens and API keys; a new AGENTIDP_BOOTSTRAP_TOKEN brings one back"
        );
        Ok(BootstrapToken {
            // Version 0 is no digester's: nothing matches it.
            digest: (0, Vec::new()),
            new_token: None,
            to_record: None,
        })
    };
    if let Some(t) = configured {
        let d = digester.digest(t.expose());
        let rec = bootstrap_record(digester.version(), &d);
        // The very token that was retired, still in the environment (every instance of a
        // fleet has it): it stays retired. Another token is the operator's explicit choice.
        if recorded.as_deref() == Some(&format!("{BOOTSTRAP_RETIRED}:{rec}")) {
            return retired();
        }
        return Ok(BootstrapToken {
            to_record: Some(rec),
            digest: (digester.version(), d),
            new_token: None,
        });
    }
    if recorded.as_deref().is_some_and(is_retired) {
        return retired();
    }
    if let Some(v) = recorded {
        let (ver, d) = v
            .split_once(':')
            .ok_or_else(|| anyhow!("corrupt bootstrap token digest"))?;
        let d = BASE64_URL_SAFE_NO_PAD
            .decode(d)
            .map_err(|_| anyhow!("corrupt bootstrap token digest"))?;
        tracing::info!(
            "the admin API accepts the bootstrap token printed at first start; lost it? restart \
             once with AGENTIDP_BOOTSTRAP_TOKEN set to a new token (it replaces the old one)"
        );
        return Ok(BootstrapToken {
            digest: (ver.parse()?, d),
            new_token: None,
            to_record: None,
        });
    }
    let t = random_token();
    let d = digester.digest(t.expose());
    Ok(BootstrapToken {
        to_record: Some(bootstrap_record(digester.version(), &d)),
        digest: (digester.version(), d),
        new_token: Some(t),
    })
}
