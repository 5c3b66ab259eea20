//! `spawn_app`: a real agentidp on 127.0.0.1:0 with its own database (a temporary SQLite file, or
//! a uniquely named PostgreSQL database dropped afterwards).

use std::net::SocketAddr;
use std::path::PathBuf;

use agentidp::app::App;
use agentidp::config::Settings;
use agentidp::model::Secret;
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
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    cleanup: Option<Cleanup>,
}

pub enum Cleanup {
    Dir(PathBuf),
    Pg {
        admin_url: String,
        db: String,
        dir: PathBuf,
    },
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
            let db = format!("agentidp_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(admin_url)
                .await
                .expect("connect to the test PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&mut conn)
                .await
                .unwrap();
            s.database_url = Some(Secret::new(with_db(admin_url, &db)));
            s.master_key = Some(agentidp::keys::MasterKey::generate().to_base64());
            s.redis_url = redis_url.clone().map(Secret::new);
            Cleanup::Pg {
                admin_url: admin_url.clone(),
                db,
                dir,
            }
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
    let startup = App::build(settings.clone()).await.expect("app builds");
    let app = startup.app;
    let addr = app.local_addr();
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
        shutdown: Some(tx),
        server: Some(server),
        cleanup,
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
        match self {
            Cleanup::Dir(d) => {
                let _ = std::fs::remove_dir_all(d);
            }
            Cleanup::Pg { admin_url, db, dir } => {
                let _ = std::fs::remove_dir_all(dir);
                let (admin_url, db) = (admin_url.clone(), db.clone());
                // Drop runs inside the test's runtime: use a thread with its own runtime.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async move {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}
