//! Shared test support: spawning a real server on a free port over a fresh database, typed
//! request helpers, fixtures.

pub mod client;
pub mod smtp;
pub mod spawn;

pub use client::*;
pub use smtp::*;
pub use spawn::*;

/// Runs one `async fn(Backend)` test body on every backend: SQLite with the in-database replay
/// cache always; PostgreSQL (with Redis when `AGENTIDP_TEST_REDIS_URL` is set) when
/// `AGENTIDP_TEST_DATABASE_URL` is set. Under `CI=true` a missing service fails the test.
#[macro_export]
macro_rules! on_all_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(b) = $crate::support::Backend::postgres() {
                        super::$name(b).await;
                    }
                }
            }
        )+
    };
}

/// Tests that need several instances on one database, so PostgreSQL only: one test each,
/// `NAME::postgres` (no `::sqlite` variant that would pass without checking anything).
#[macro_export]
macro_rules! on_postgres {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(b) = $crate::support::Backend::postgres() {
                        super::$name(b).await;
                    }
                }
            }
        )+
    };
}
