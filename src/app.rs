//! Start-up: configuration to a running server. Opens and migrates the database, checks the
//! master key and the recorded public URL, provisions the bootstrap token, binds, serves and
//! drains on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::prelude::*;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use crate::config::Settings;
use crate::ephemeral::redis_backend::RedisEphemeral;
use crate::ephemeral::{DbReplayCache, DynBus, DynReplay, Invalidation, LocalBus};
use crate::fetch::{FetchPolicy, Fetcher};
use crate::http::{AppState, router};
use crate::idp::{Idp, parse_public_url};
use crate::keys::envelope::random_token;
use crate::keys::{KeyService, MasterKey};
use crate::model::{OrgId, Secret, SystemClock};
use crate::remote::RemoteJson;
use crate::storage::{self, Event, Stores};
use crate::tenancy::Directory;

const META_PUBLIC_URL: &str = "public_url";
const META_MASTER_KEY_CHECK: &str = "master_key_check";
const META_BOOTSTRAP: &str = "bootstrap_token_digest";

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the configured database, migrates it and checks (or records) the master key.
pub async fn open_database(settings: &Settings) -> anyhow::Result<(Stores, MasterKey)> {
    let url = settings.database_url();
    if !settings.is_postgres() && settings.database_url.is_none() {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
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

/// A bound, ready-to-serve application.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    redis: Option<RedisEphemeral>,
    public_url: Url,
}

/// What start-up produced besides the app: a bootstrap token generated now, to be shown once.
pub struct Startup {
    pub app: App,
    pub new_bootstrap_token: Option<Secret>,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<Startup> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (store, master) = open_database(&settings).await?;
        if !settings.is_postgres() && settings.database_url.is_none() {
            let dir = std::fs::canonicalize(&settings.data_dir)
                .unwrap_or_else(|_| settings.data_dir.clone());
            tracing::info!(data_dir = %dir.display(), "data lives in {}", dir.display());
        }

        let listener = TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("binding {}", settings.bind))?;
        let addr = listener.local_addr()?;
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(c), Some(k)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(c, k)
                    .await
                    .with_context(|| "loading AGENTIDP_TLS_CERT / AGENTIDP_TLS_KEY")?,
            ),
            (None, None) => None,
            _ => bail!("AGENTIDP_TLS_CERT and AGENTIDP_TLS_KEY go together"),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = parse_public_url(
            &settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://localhost:{}", addr.port())),
        )
        .map_err(|e| anyhow!(e))?;
        check_public_url(&store, &public_url, settings.move_public_url).await?;
        if !crate::did::resolvable_by_others(&public_url) {
            tracing::warn!(
                public_url = %public_url,
                "did:web needs HTTPS and a host name: this instance's DIDs resolve only through its own resolver"
            );
        }

        let master = Arc::new(master);
        let digester = master.digester();
        let (bootstrap, new_bootstrap_token) =
            bootstrap_token(&store, &digester, settings.bootstrap_token.as_ref()).await?;

        let redis = match &settings.redis_url {
            Some(u) => Some(
                RedisEphemeral::connect(u.expose(), "")
                    .await
                    .map_err(|e| anyhow!("connecting to AGENTIDP_REDIS_URL: {e}"))?,
            ),
            None => None,
        };
        let state = assemble(
            store,
            master,
            digester,
            redis.clone(),
            &settings,
            public_url.clone(),
            bootstrap,
        )?;
        Ok(Startup {
            app: App {
                listener,
                addr,
                state,
                tls,
                redis,
                public_url,
            },
            new_bootstrap_token,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (at most [`DRAIN_TIMEOUT`]).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let state = self.state.clone();
        let mut tasks = Vec::new();

        // Housekeeping: expired revocations and replay markers.
        let idp = state.idp.clone();
        let limiter = state.foreign_resolution_limit.clone();
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        limiter.retain_recent();
                        if let Err(e) = idp.stores.replay.purge_expired(idp.clock.now()).await {
                            tracing::warn!(error = %e, "purging expired state failed");
                        }
                    }
                    _ = rx.changed() => break,
                }
            }
        }));

        if let Some(redis) = self.redis.clone() {
            let idp = state.idp.clone();
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                redis
                    .listen(
                        move |inv| {
                            let idp = idp.clone();
                            async move {
                                if let Invalidation::Keys { org_id } = &inv {
                                    idp.keys.invalidate(org_id).await;
                                }
                                idp.directory.apply(&inv).await;
                            }
                        },
                        async move {
                            let _ = rx.changed().await;
                        },
                    )
                    .await;
            }));
        }

        if let Some(h) = state.metrics.clone() {
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = tick.tick() => h.run_upkeep(),
                        _ = rx.changed() => break,
                    }
                }
            }));
        }

        let app = router(state);
        tracing::info!(addr = %self.addr, public_url = %self.public_url, "listening on {}", self.addr);
        match self.tls {
            None => {
                // The drain is bounded as with TLS: a stalled client (say, one that never finishes
                // its request headers) must not keep the process from exiting.
                let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
                let serve = axum::serve(
                    self.listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    shutdown.await;
                    tracing::info!("shutting down: draining in-flight requests");
                    let _ = draining_tx.send(());
                });
                let drain_deadline = async move {
                    match draining_rx.await {
                        Ok(()) => tokio::time::sleep(DRAIN_TIMEOUT).await,
                        Err(_) => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    r = std::future::IntoFuture::into_future(serve) => r?,
                    () = drain_deadline => tracing::warn!(
                        timeout_secs = DRAIN_TIMEOUT.as_secs(),
                        "drain timed out: closing the remaining connections"
                    ),
                }
            }
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let h2 = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    tracing::info!("shutting down: draining in-flight requests");
                    h2.graceful_shutdown(Some(DRAIN_TIMEOUT));
                });
                let std_listener = self.listener.into_std()?;
                axum_server::from_tcp_rustls(std_listener, tls)?
                    .handle(handle)
                    .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                    .await?;
            }
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Wires the domain and the HTTP state from opened parts (also used by tests).
pub fn assemble(
    store: Stores,
    master: Arc<MasterKey>,
    digester: crate::keys::SecretDigester,
    redis: Option<RedisEphemeral>,
    settings: &Settings,
    public_url: Url,
    bootstrap: (i64, Vec<u8>),
) -> anyhow::Result<AppState> {
    let (replay, bus): (DynReplay, DynBus) = match redis {
        Some(r) => (Arc::new(r.clone()), Arc::new(r)),
        None => (
            Arc::new(DbReplayCache(store.replay.clone())),
            Arc::new(LocalBus),
        ),
    };
    let extra_roots = match &settings.outbound_ca_file {
        Some(p) => std::fs::read(p)
            .with_context(|| format!("reading AGENTIDP_OUTBOUND_CA_FILE {}", p.display()))?,
        None => Vec::new(),
    };
    let fetcher = Fetcher::with_roots(
        FetchPolicy::new(settings.allow_insecure_loopback),
        &extra_roots,
    )
    .map_err(|e| anyhow!("AGENTIDP_OUTBOUND_CA_FILE: {e}"))?;
    let keys = KeyService::new(
        store.keys.clone(),
        master,
        settings.key_activation_delay(),
        settings.access_token_ttl_secs,
    );
    let idp = Idp {
        directory: Directory::new(store.clone(), bus),
        stores: store,
        keys,
        digester,
        replay,
        agent_jwks: RemoteJson::new(
            fetcher.clone(),
            "application/jwk-set+json, application/json",
            crate::remote::is_jwks,
        ),
        partner_jwks: RemoteJson::new(
            fetcher.clone(),
            "application/jwk-set+json, application/json",
            crate::remote::is_jwks,
        ),
        did_docs: RemoteJson::new(
            fetcher.clone(),
            "application/did+json, application/json",
            |v| v.get("id").is_some_and(Value::is_string),
        ),
        fetcher,
        cards: moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(Duration::from_secs(10))
            .build(),
        clock: Arc::new(SystemClock),
        instance_did: crate::did::instance_did(&public_url),
        public_url,
        access_token_ttl: settings.access_token_ttl_secs,
    };
    Ok(AppState {
        idp: Arc::new(idp),
        metrics: crate::telemetry::metrics_handle(),
        bootstrap: Arc::new(bootstrap),
        discovery: moka::future::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(Duration::from_secs(60))
            .build(),
        foreign_resolution_limit: Arc::new(governor::RateLimiter::keyed(
            governor::Quota::per_second(
                std::num::NonZeroU32::new(5).unwrap_or(std::num::NonZeroU32::MIN),
            )
            .allow_burst(std::num::NonZeroU32::new(20).unwrap_or(std::num::NonZeroU32::MIN)),
        )),
    })
}

/// The recorded public URL must not change silently: every issuer and DID derives from it.
async fn check_public_url(store: &Stores, url: &Url, allow_move: bool) -> anyhow::Result<()> {
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
                at: chrono::Utc::now().timestamp(),
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
async fn bootstrap_token(
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

/// `agentidp keys rotate [--org SLUG]`.
pub async fn rotate_keys_cli(
    settings: &Settings,
    org: Option<&str>,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let (store, master) = open_database(settings).await?;
    let keys = KeyService::new(
        store.keys.clone(),
        Arc::new(master),
        settings.key_activation_delay(),
        settings.access_token_ttl_secs,
    );
    let now = chrono::Utc::now().timestamp();
    let slugs: Vec<String> = match org {
        Some(s) => vec![s.to_owned()],
        None => store
            .orgs
            .all_ids()
            .await?
            .into_iter()
            .map(|(_, s)| s)
            .collect(),
    };
    let mut out = Vec::new();
    for slug in slugs {
        let org = store
            .orgs
            .by_slug(&slug)
            .await?
            .ok_or_else(|| anyhow!("no organization {slug:?}"))?;
        let new = keys
            .rotate(&org, now)
            .await
            .map_err(|e| anyhow!("{slug}: {e}"))?;
        out.push((
            slug,
            new.into_iter()
                .map(|k| format!("{} {}", k.alg, k.kid))
                .collect(),
        ));
    }
    Ok(out)
}
