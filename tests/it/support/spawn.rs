//! `spawn_app`: a real agentidp on 127.0.0.1:0 with its own database (a temporary SQLite file, or
//! a uniquely named PostgreSQL database dropped afterwards).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agentidp::app::App;
use agentidp::config::Settings;
use agentidp::model::{OffsetClock, Secret};
use sqlx::Connection;
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres {
        admin_url: String,
        redis_url: Option<String>,
    },
}

fn required(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{var} must be set under CI=true");
            }
            None
        }
    }
}

impl Backend {
    /// PostgreSQL (and Redis, when configured), or `None` (skip) outside CI when unset.
    pub fn postgres() -> Option<Self> {
        let admin_url = required("AGENTIDP_TEST_DATABASE_URL")?;
        let redis_url = required("AGENTIDP_TEST_REDIS_URL");
        Some(Backend::Postgres {
            admin_url,
            redis_url,
        })
    }
}

/// A running server. Dropping it stops the server and removes its database.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Public base URL, e.g. `http://localhost:PORT`.
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    /// The server's clock: the wall clock plus an offset that [`TestApp::advance`] moves, so
    /// tests pass time without sleeping.
    pub clock: Arc<OffsetClock>,
    /// The server's domain, for tests of use cases with no HTTP surface of their own.
    pub idp: Arc<agentidp::idp::Idp>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    cleanup: Option<Cleanup>,
}

pub enum Cleanup {
    Dir(PathBuf),
    /// The database drops itself with this value.
    Pg {
        _db: PgDatabase,
        dir: PathBuf,
    },
}

/// A uniquely named PostgreSQL database, dropped (forcibly) when this value is dropped, also
/// when the test panics.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// The database's own URL.
    pub url: String,
}

impl PgDatabase {
    pub async fn create(admin_url: &str) -> Self {
        let name = format!("agentidp_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to the test PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let url = with_db(admin_url, &name);
        PgDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

pub fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("agentidp-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn with_db(admin_url: &str, db: &str) -> String {
    let mut u = url::Url::parse(admin_url).expect("AGENTIDP_TEST_DATABASE_URL is a URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// Settings for a test server over `backend`, before any tweak.
pub async fn test_settings(backend: &Backend) -> (Settings, Cleanup) {
    let dir = temp_dir();
    let mut s = Settings::defaults();
    s.bind = "127.0.0.1:0".parse().unwrap();
    s.data_dir = dir.clone();
    s.bootstrap_token = Some(Secret::new(format!(
        "test-admin-{}",
        uuid::Uuid::new_v4().simple()
    )));
    s.allow_insecure_loopback = true;
    s.key_activation_delay_secs = Some(0);
    let cleanup = match backend {
        Backend::Sqlite => Cleanup::Dir(dir),
        Backend::Postgres {
            admin_url,
            redis_url,
        } => {
            let db = PgDatabase::create(admin_url).await;
            s.database_url = Some(Secret::new(db.url.clone()));
            s.master_key = Some(agentidp::keys::MasterKey::generate().to_base64());
            s.redis_url = redis_url.clone().map(Secret::new);
            Cleanup::Pg { _db: db, dir }
        }
    };
    (s, cleanup)
}

/// Starts a server on `backend`; `tweak` may change settings first.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let (mut settings, cleanup) = test_settings(&backend).await;
    tweak(&mut settings);
    spawn_with_settings(settings, Some(cleanup)).await
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts a server with exactly these settings.
pub async fn spawn_with_settings(settings: Settings, cleanup: Option<Cleanup>) -> TestApp {
    spawn_with_clock(settings, cleanup, Arc::new(OffsetClock::new())).await
}

/// Starts a server with these settings on `clock` (several servers may share one).
pub async fn spawn_with_clock(
    settings: Settings,
    cleanup: Option<Cleanup>,
    clock: Arc<OffsetClock>,
) -> TestApp {
    let startup = App::build_with_clock(settings.clone(), clock.clone())
        .await
        .expect("app builds");
    let app = startup.app;
    let addr = app.local_addr();
    let idp = app.idp();
    let base = app.public_url().as_str().trim_end_matches('/').to_owned();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let token = settings
        .bootstrap_token
        .as_ref()
        .map(|t| t.expose().to_owned())
        .unwrap_or_default();
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    TestApp {
        addr,
        base,
        token,
        http,
        clock,
        idp,
        shutdown: Some(tx),
        server: Some(server),
        cleanup,
    }
}

impl TestApp {
    /// Passes `by` on the server's clock.
    pub fn advance(&self, by: std::time::Duration) {
        self.clock.advance(by);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            s.abort();
        }
        drop(self.cleanup.take());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // The database (if any) drops itself; the directory goes here.
        match self {
            Cleanup::Dir(d) | Cleanup::Pg { dir: d, .. } => {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}

/// Two instances over one PostgreSQL database (and Redis when the backend has it), sharing one
/// clock and one public URL; the first owns the database's clean-up. PostgreSQL only.
pub async fn two_instances(backend: Backend) -> (TestApp, TestApp) {
    assert!(
        matches!(backend, Backend::Postgres { .. }),
        "two instances need PostgreSQL"
    );
    let (settings, cleanup) = test_settings(&backend).await;
    let clock = Arc::new(OffsetClock::new());
    let one = spawn_with_clock(settings.clone(), Some(cleanup), clock.clone()).await;
    let mut s2 = settings;
    s2.public_url = Some(one.base.clone());
    let two = spawn_with_clock(s2, None, clock).await;
    (one, two)
}
