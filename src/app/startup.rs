//! Start-up checks and side effects: the database and its migrations, the master key, the
//! recorded public URL (and an explicit move), the bootstrap token.

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
const META_BOOTSTRAP: &str = "bootstrap_token_digest";

/// Opens the configured database, migrates it and checks (or records) the master key.
pub async fn open_database(settings: &Settings) -> anyhow::Result<(Stores, MasterKey)> {
    let url = settings.database_url();
    if !settings.is_postgres() && settings.database_url.is_none() {
        create_private_data(&settings.data_dir)?;
    }
    let db = storage::open(&url)
        .await
        .map_err(|e| anyhow!("opening the database: {e}"))?;
    db.migrate().await.map_err(|e| anyhow!("{e}"))?;
    let store = Stores::new(db);
    let master = match &settings.master_key {
        Some(k) => MasterKey::from_base64(k.expose()).context("AGENTIDP_MASTER_KEY")?,
        None if settings.is_postgres() => {
            bail!("AGENTIDP_MASTER_KEY is required with PostgreSQL (every instance must share it)")
        }
        None => load_or_create_master_key(&settings.data_dir.join("master.key"))?,
    };
    match store.meta.get(META_MASTER_KEY_CHECK).await? {
        None => {
            store
                .meta
                .set(META_MASTER_KEY_CHECK, &master.check_value())
                .await?
        }
        Some(v) if v == master.check_value() => {}
        Some(_) => bail!(
            "the master key does not match the one this database was created with; refusing to start"
        ),
    }
    Ok((store, master))
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

fn load_or_create_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::from_base64(&text)
            .with_context(|| format!("master key in {}", path.display()));
    }
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

/// The platform-admin token: the configured one (never printed), the one recorded earlier, or a
/// new one returned for printing once.
pub async fn bootstrap_token(
    store: &Stores,
    digester: &crate::keys::SecretDigester,
    configured: Option<&Secret>,
) -> anyhow::Result<((i64, Vec<u8>), Option<Secret>)> {
    let encode = |d: &[u8]| {
        format!(
            "{}:{}",
            digester.version(),
            BASE64_URL_SAFE_NO_PAD.encode(d)
        )
    };
    if let Some(t) = configured {
        let d = digester.digest(t.expose());
        store.meta.set(META_BOOTSTRAP, &encode(&d)).await?;
        return Ok(((digester.version(), d), None));
    }
    if let Some(v) = store.meta.get(META_BOOTSTRAP).await? {
        let (ver, d) = v
            .split_once(':')
            .ok_or_else(|| anyhow!("corrupt bootstrap token digest"))?;
        let d = BASE64_URL_SAFE_NO_PAD
            .decode(d)
            .map_err(|_| anyhow!("corrupt bootstrap token digest"))?;
        return Ok(((ver.parse()?, d), None));
    }
    let t = random_token();
    let d = digester.digest(t.expose());
    store.meta.set(META_BOOTSTRAP, &encode(&d)).await?;
    Ok(((digester.version(), d), Some(t)))
}
