//! Assembly: configuration to a running server. [`App::build`] runs the start-up checks
//! ([`startup`]), binds and wires the domain on one injected clock; [`App::run_until_stopped`]
//! serves ([`serve`]) beside the background jobs ([`jobs`], the database's on one leader at a time:
//! [`leader`]) until shutdown.

mod cli;
pub mod jobs;
pub mod leader;
pub mod serve;
pub mod startup;

pub use cli::admin_token_cli;
pub use jobs::rotate_keys_cli;
pub use serve::DRAIN_TIMEOUT;
pub use startup::{Opening, check_settings, open_database, open_database_for};
use startup::{bootstrap_token, check_public_url, deployment_id};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use crate::config::Settings;
use crate::ephemeral::redis_backend::RedisEphemeral;
use crate::ephemeral::{DbReplayCache, DynBus, DynReplay, FailoverReplay, LocalBus};
use crate::fetch::{FetchPolicy, Fetcher};
use crate::http::{AppState, router};
use crate::idp::{Idp, Parts, parse_public_url};
use crate::keys::{KeyService, MasterKey};
use crate::model::{Clock, Secret, SystemClock};
use crate::storage::Stores;

/// A bound, ready-to-serve application.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The separate `/metrics` listener (`AGENTIDP_METRICS_BIND`), when configured.
    metrics_listener: Option<TcpListener>,
    limits: serve::ConnectionLimits,
    metrics_limits: serve::ConnectionLimits,
    redis: Option<RedisEphemeral>,
    public_url: Url,
}

/// What start-up produced besides the app: a bootstrap token generated now, to be shown once.
pub struct Startup {
    pub app: App,
    pub new_bootstrap_token: Option<Secret>,
}

impl App {
    /// Builds the app on the wall clock.
    pub async fn build(settings: Settings) -> anyhow::Result<Startup> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Builds the app on `clock`: the only source of time for every expiry, schedule, cache
    /// freshness and identifier it handles (tests pass an adjustable clock).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Startup> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // Checks first, in an order that creates nothing: a start that fails here leaves no data
        // directory, master key, database or bootstrap token behind (see `startup`).
        check_settings(&settings)?;
        if settings.allow_insecure_loopback {
            tracing::warn!(
                "AGENTIDP_ALLOW_INSECURE_LOOPBACK is on: outbound fetches (agent jwks_uri, partner \
                 metadata and keys, did:web documents) may reach loopback addresses (127.0.0.0/8, \
                 ::1, localhost), over HTTPS and over plain HTTP; for development and tests only"
            );
        }
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(c), Some(k)) => Some(serve::load_tls(c, k).with_context(|| {
                format!(
                    "loading the TLS certificate {} and key {} (AGENTIDP_TLS_CERT, AGENTIDP_TLS_KEY)",
                    c.display(),
                    k.display()
                )
            })?            ),
            _ => None,
        };
        let fetcher = outbound_fetcher(&settings)?;
        let listener = TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("binding {} (AGENTIDP_BIND)", settings.bind))?;
        let addr = listener.local_addr()?;
        let metrics_listener = match settings.metrics_bind {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding {a} (AGENTIDP_METRICS_BIND)"))?,
            ),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = parse_public_url(
            &settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://localhost:{}", addr.port())),
        )
        .map_err(|e| anyhow!("AGENTIDP_PUBLIC_URL: {e}"))?;
        let redis = match &settings.redis_url {
            Some(u) => Some(
                RedisEphemeral::connect(u.expose(), "")
                    .await
                    .map_err(|e| anyhow!("connecting to AGENTIDP_REDIS_URL: {e}"))?,
            ),
            None => None,
        };

        // Side effects from here: the database (created when new, then migrated), the master
        // key, the recorded public URL; the bootstrap token's digest last of all.
        let (store, master) = open_database_for(&settings, Opening::Serve).await?;
        if !settings.is_postgres() && settings.database_url.is_none() {
            let dir = std::fs::canonicalize(&settings.data_dir)
                .unwrap_or_else(|_| settings.data_dir.clone());
            tracing::info!(data_dir = %dir.display(), "data lives in {}", dir.display());
        }
        check_public_url(&store, &public_url, settings.move_public_url, clock.now()).await?;
        if !crate::did::resolvable_by_others(&public_url) {
            tracing::warn!(
                public_url = %public_url,
                "did:web needs HTTPS and a host name: this instance's DIDs resolve only through its own resolver"
            );
        }

        let master = Arc::new(master);
        let digester = master.digester();
        let bootstrap =
            bootstrap_token(&store, &digester, settings.bootstrap_token.as_ref()).await?;
        // What the instances of this deployment share in Redis (replay markers, the
        // invalidation channel) is namespaced by the deployment's id, so deployments sharing
        // one Redis never see each other's markers or invalidations.
        let deployment_id = deployment_id(&store).await?;
        let redis = redis.map(|r| r.namespaced(&format!("{deployment_id}:")));
        let state = assemble(
            Opened {
                store: store.clone(),
                master,
                digester,
                redis: redis.clone(),
                fetcher,
                public_url: public_url.clone(),
                bootstrap: bootstrap.digest.clone(),
                deployment_id,
            },
            &settings,
            clock,
        )?;
        // The revoked tokens in force, before the first request is served.
        state
            .idp
            .oauth
            .revocations
            .reload()
            .await
            .context("loading the revoked tokens")?;
        // Last: nothing can fail between recording the digest and printing the token.
        bootstrap.record(&store).await?;
        let new_bootstrap_token = bootstrap.new_token;
        Ok(Startup {
            app: App {
                listener,
                addr,
                state,
                tls,
                metrics_listener,
                limits: serve::ConnectionLimits::from_settings(&settings),
                metrics_limits: serve::ConnectionLimits::for_metrics(&settings),
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

    /// The assembled domain this app serves (tests call its use cases directly).
    pub fn idp(&self) -> Arc<crate::idp::Idp> {
        self.state.idp.clone()
    }

    /// The bound address of the separate `/metrics` listener, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (at most
    /// [`DRAIN_TIMEOUT`]); the background jobs run meanwhile and stop with the server.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = jobs::spawn_all(&self.state, self.redis.clone(), &stop_rx);
        // One shutdown signal for every listener.
        let (down_tx, down_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = down_tx.send(true);
        });
        let signalled = move || {
            let mut rx = down_rx.clone();
            async move {
                let _ = rx.wait_for(|d| *d).await;
            }
        };
        let metrics = async {
            let Some(l) = self.metrics_listener else {
                return Ok(());
            };
            let addr = l.local_addr()?;
            tracing::info!(addr = %addr, "metrics listening on {addr}");
            let app = crate::http::metrics_router(self.state.clone());
            serve::serve("metrics", l, None, app, self.metrics_limits, signalled()).await
        };
        let app = router(self.state.clone());
        tracing::info!(addr = %self.addr, public_url = %self.public_url, "listening on {}", self.addr);
        let main = serve::serve(
            "main",
            self.listener,
            self.tls,
            app,
            self.limits,
            signalled(),
        );
        let (served, metrics) = tokio::join!(main, metrics);
        if let Err(e) = metrics {
            tracing::warn!(error = %e, "the metrics listener failed");
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        tracing::info!("stopped");
        served
    }
}

/// What start-up opened and checked, ready to be wired.
struct Opened {
    store: Stores,
    master: Arc<MasterKey>,
    digester: crate::keys::SecretDigester,
    redis: Option<RedisEphemeral>,
    fetcher: Fetcher,
    public_url: Url,
    /// The bootstrap token's digest version and digest.
    bootstrap: (i64, Vec<u8>),
    /// [`startup::deployment_id`].
    deployment_id: String,
}

/// The outbound client, trusting `AGENTIDP_OUTBOUND_CA_FILE` besides the platform's roots.
fn outbound_fetcher(settings: &Settings) -> anyhow::Result<Fetcher> {
    let extra_roots = match &settings.outbound_ca_file {
        Some(p) => std::fs::read(p)
            .with_context(|| format!("reading AGENTIDP_OUTBOUND_CA_FILE {}", p.display()))?,
        None => Vec::new(),
    };
    Fetcher::with_options(
        FetchPolicy::new(settings.allow_insecure_loopback),
        &extra_roots,
        settings.outbound_proxy.as_ref().map(|p| p.expose()),
    )
    .map_err(|e| anyhow!("AGENTIDP_OUTBOUND_CA_FILE or AGENTIDP_OUTBOUND_PROXY: {e}"))
}

/// Wires the domain and the HTTP state from opened parts, every time-dependent part on `clock`.
fn assemble(parts: Opened, settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    let Opened {
        store,
        master,
        digester,
        redis,
        fetcher,
        public_url,
        bootstrap,
        deployment_id,
    } = parts;
    let mut auth_failures =
        crate::limiter::FailureLimiter::new(clock.clone(), settings.auth_failure_limit);
    let mut rate_limiter = crate::limiter::RateLimiter::new(clock.clone());
    if let Some(r) = &redis {
        // One deployment's namespace: the identifier every instance reads from the shared
        // database, with the public URL for people reading the keys.
        let namespace = format!("{}:{deployment_id}", public_url.as_str());
        auth_failures = auth_failures.with_redis(r.connection(), &namespace);
        rate_limiter = rate_limiter.with_redis(r.connection(), &namespace);
    }
    let redis_handle = redis.clone();
    let (replay, bus): (DynReplay, DynBus) = match redis {
        Some(r) => (
            Arc::new(FailoverReplay::new(
                Arc::new(r.clone()),
                Arc::new(DbReplayCache::new(store.replay.clone())),
                store.meta.clone(),
            )),
            Arc::new(r),
        ),
        None => (
            Arc::new(DbReplayCache::new(store.replay.clone())),
            Arc::new(LocalBus),
        ),
    };
    let keys = KeyService::new(
        store.keys.clone(),
        master,
        settings.key_activation_delay(),
        settings.access_token_ttl_secs,
    );
    let mail = match (&settings.smtp_url, &settings.mail_from) {
        (Some(url), Some(from)) => {
            let hello = public_url.host_str().unwrap_or("localhost");
            let smtp = crate::mail::Smtp::new(url, from, hello).map_err(|e| anyhow!(e))?;
            let (queue, _worker) =
                crate::mail::MailQueue::start(Arc::new(smtp), crate::mail::QUEUE_CAPACITY);
            Some(Arc::new(queue))
        }
        _ => None,
    };
    let idp = Idp::new(Parts {
        mail,
        stores: store,
        bus,
        replay,
        keys,
        digester,
        fetcher,
        clock,
        public_url,
        access_token_ttl: settings.access_token_ttl_secs,
        token_rate_ceiling: settings.token_rate_limit.0.map(|l| {
            crate::tenancy::policy::TokenRateLimit {
                per_second: l.per_second,
                burst: l.burst,
            }
        }),
        bootstrap: bootstrap.clone(),
    });
    // SQLite leads from the start (one process); PostgreSQL once the lease is taken.
    let leader = leader::Leadership::new(idp.stores.meta.backend() == "sqlite");
    Ok(AppState::new(crate::http::state::AppStateInner {
        idp: Arc::new(idp),
        leader,
        metrics: crate::telemetry::metrics_handle(),
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
        auth_failures: Arc::new(auth_failures),
        rate_limiter: Arc::new(rate_limiter),
        limits: settings.rate_limits(),
        redis: redis_handle,
        trusted_proxies: settings.trusted_proxies.clone().into(),
        request_timeout: Duration::from_secs(settings.request_timeout_secs),
        metrics_on_main: settings.metrics_bind.is_none(),
    }))
}
