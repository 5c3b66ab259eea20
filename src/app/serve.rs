//! Serving the router on the bound listener, plain HTTP or TLS, with a bounded drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` (over TLS when `tls` is set) until `shutdown` resolves, then drains
/// in-flight requests for at most [`DRAIN_TIMEOUT`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match tls {
        None => {
            // The drain is bounded as with TLS: a stalled client (say, one that never finishes
            // its request headers) must not keep the process from exiting.
            let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
            let serve = axum::serve(
                listener,
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
            let std_listener = listener.into_std()?;
            axum_server::from_tcp_rustls(std_listener, tls)?
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await?;
        }
    }
    Ok(())
}
