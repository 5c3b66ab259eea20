//! Serving the router on a bound listener, plain HTTP or TLS, through hyper-util's connection
//! builder (HTTP/1.1 and HTTP/2), with bounds on every connection and a bounded drain on shutdown.
//!
//! `axum::serve` sets no timer, so hyper's header-read timeout is off there and an idle or
//! trickling client holds its socket (and a file descriptor) forever. Here every connection is
//! watched (the rules follow Go's `net/http` `ReadHeaderTimeout`/`IdleTimeout`):
//!
//! - its first request's headers (the TLS handshake included) must be complete within the
//!   header-read timeout of the connection's start;
//! - a later HTTP/1.1 request's headers must be complete within the header-read timeout of its
//!   first byte;
//! - with no request in flight, a connection is closed after the idle timeout (HTTP/1.1
//!   keep-alive and HTTP/2 alike; HTTP/2 gets a GOAWAY, and keep-alive PINGs find dead peers
//!   while a request is in flight);
//! - at most `max_connections` are open at once: at the cap, keep-alive connections idle for a
//!   second or more are closed to make room (as nginx reuses keep-alive connections), and the
//!   accept loop waits for a free slot; later clients wait in the kernel's accept queue (which
//!   costs the process no descriptor).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::Settings;

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// After the server closes an idle connection gracefully (HTTP/2 GOAWAY), how long the peer gets
/// to let go before the socket is dropped (unless a request is still in flight).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// At the connection cap, a keep-alive connection idle for at least this long is closed to make
/// room for a waiting client.
const MIN_IDLE_AT_CAPACITY: Duration = Duration::from_secs(1);

/// The bounds on a listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Longest a connection with requests in flight may go without any of them making progress
    /// (a handler finishing, a response frame taken by the peer): a client that stops reading
    /// (HTTP/2 with a zero flow-control window, a full TCP window) holds its slot no longer.
    /// Longer than the request timeout, so a slow handler is answered 503, not cut off.
    pub stall_timeout: Duration,
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The main listener's limits from the settings.
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(s.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(s.idle_timeout_secs),
            stall_timeout: Duration::from_secs(s.request_timeout_secs)
                + Duration::from_secs(s.header_read_timeout_secs),
            max_connections: usize::try_from(s.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// The metrics listener's: the same timeouts, a small cap of its own (a scraper or two).
    pub fn for_metrics(s: &Settings) -> Self {
        Self {
            max_connections: 16,
            ..Self::from_settings(s)
        }
    }
}

/// A TLS server configuration from PEM files (a certificate chain, one private key), offering
/// HTTP/2 and HTTP/1.1 by ALPN.
pub fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the certificates of {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading a private key from {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the private key do not go together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` (over TLS when `tls` is set) within `limits` until `shutdown`
/// resolves; then stops accepting and drains in-flight requests for at most [`DRAIN_TIMEOUT`].
/// `name` labels the listener in logs and metrics (`main`, `metrics`).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(nofile) = open_files_limit()
        && limits.max_connections as u64 + 64 > nofile
    {
        tracing::warn!(
            listener = name,
            max_connections = limits.max_connections,
            open_files_limit = nofile,
            "AGENTIDP_MAX_CONNECTIONS is close to or above the open-file limit (ulimit -n): \
             lower it, or raise the limit, or accept() will fail with too many open files"
        );
    }
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // At the cap, an idle keep-alive connection is closed to make room (as nginx reuses its
    // keep-alive connections): otherwise pooled client connections would hold every slot until
    // the idle timeout while new clients wait.
    let pressure = Arc::new(Notify::new());
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => loop {
                // Every idle watchdog waiting now; none stored for later (a stale signal would
                // close a connection when there is room again).
                pressure.notify_waiters();
                tokio::select! {
                    biased;
                    () = &mut shutdown => break None,
                    p = slots.clone().acquire_owned() => break p.ok(),
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            },
        };
        let Some(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept: the
                    // listener itself is fine; back off a little instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            name,
            stream,
            peer,
            tls.clone(),
            app.clone(),
            limits,
            closing_rx.clone(),
            pressure.clone(),
            permit,
        ));
    }
    // No new connections while draining.
    drop(listener);
    tracing::info!(
        listener = name,
        "shutting down: draining in-flight requests"
    );
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            timeout_secs = DRAIN_TIMEOUT.as_secs(),
            open = connections.len(),
            "drain timed out: closing the remaining connections"
        );
        connections.abort_all();
    }
    Ok(())
}

/// The soft limit on open files of this process, where the platform tells (Linux).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// One connection, from its TLS handshake (if any) to its close.
#[allow(clippy::too_many_arguments)]
async fn connection(
    name: &'static str,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    closing: watch::Receiver<bool>,
    pressure: Arc<Notify>,
    permit: OwnedSemaphorePermit,
) {
    let _open = OpenConnection::new(name, permit);
    let _ = stream.set_nodelay(true);
    let first_deadline = Instant::now() + limits.header_read_timeout;
    let activity = Activity::new();
    match tls {
        None => {
            let io = Observed::new(stream, activity.clone(), false);
            let watch = Watch {
                limits,
                first_deadline,
                pressure,
            };
            drive(name, io, peer, app, watch, activity, closing).await;
        }
        Some(acceptor) => {
            let tls = match tokio::time::timeout_at(first_deadline, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(listener = name, error = %e, "TLS handshake failed");
                    closed(name, "tls_handshake_failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(listener = name, "TLS handshake timed out");
                    closed(name, "tls_handshake_timeout");
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = Observed::new(tls, activity.clone(), h2);
            let watch = Watch {
                limits,
                first_deadline,
                pressure,
            };
            drive(name, io, peer, app, watch, activity, closing).await;
        }
    }
}

/// Serves HTTP on an established (and, for TLS, handshaken) stream until it closes, the
/// watchdog closes it, or the server drains.
#[allow(clippy::too_many_arguments)]
async fn drive<I>(
    name: &'static str,
    io: Observed<I>,
    peer: SocketAddr,
    app: Router,
    watch: Watch,
    activity: Activity,
    mut closing: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = watch.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header-read timeout is the watchdog's (hyper's would also cut idle keep-alive
    // connections at the header-read timeout, making the idle timeout meaningless).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    let service = ConnectionService {
        app,
        peer,
        activity: activity.clone(),
    };
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    let mut watchdog = pin!(watchdog(activity.clone(), watch));
    let mut draining = false;
    let reason = loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(listener = name, error = %e, "connection ended with an error");
                }
                return;
            }
            reason = &mut watchdog => break reason,
            _ = closing.wait_for(|c| *c), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    closed(name, reason);
    tracing::debug!(listener = name, reason, "closing the connection");
    conn.as_mut().graceful_shutdown();
    // Nothing is in flight: give the peer a moment to take the GOAWAY, but not longer, unless a
    // request slipped in meanwhile (HTTP/2), which may finish, within the stall timeout. A
    // stalled response is not waited for at all: dropping the connection ends it.
    let give_up = Instant::now() + limits.stall_timeout;
    loop {
        if tokio::time::timeout(CLOSE_GRACE, conn.as_mut())
            .await
            .is_ok()
        {
            return;
        }
        if reason == "response_stalled"
            || activity.get().in_flight == 0
            || Instant::now() >= give_up
        {
            return;
        }
    }
}

/// What a connection's watchdog goes by.
struct Watch {
    limits: ConnectionLimits,
    /// When the first request's headers must be complete.
    first_deadline: Instant,
    /// Signalled when the listener is at its cap and a new client waits.
    pressure: Arc<Notify>,
}

/// Resolves with the reason when the connection has been without a request in flight for too
/// long, or has taken too long to send its request headers, or its response stalled.
///
/// Requests never wake it (a wake-up, a timer reset and a task switch per request were the
/// largest cost of serving a cached GET after the log): the connection's state is written
/// without notification, and the watchdog looks at it when it wakes. Every deadline is some
/// event's time plus one of the timeouts, and it wakes at least once per
/// `min(header-read, idle)` timeout (the shortest a new deadline can be away: the stall timeout is
/// longer than the header-read one), so it is awake before any deadline that a change since its
/// last look can have set, and each deadline is enforced at its instant.
async fn watchdog(activity: Activity, watch: Watch) -> &'static str {
    let Watch {
        limits,
        first_deadline,
        pressure,
    } = watch;
    let look_again = limits.header_read_timeout.min(limits.idle_timeout);
    loop {
        let s = activity.get();
        let (deadline, reason) = if s.in_flight > 0 {
            (s.last_progress + limits.stall_timeout, "response_stalled")
        } else if s.requests == 0 {
            (first_deadline, "header_timeout")
        } else if let Some(t) = s.head_started {
            (t + limits.header_read_timeout, "header_timeout")
        } else {
            (s.last_done + limits.idle_timeout, "idle_timeout")
        };
        let now = Instant::now();
        if deadline <= now {
            return reason;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline.min(now + look_again)) => {}
            // At the cap: a keep-alive connection between requests for a moment (a client
            // about to reuse it would see it closed) is the first to go.
            () = pressure.notified() => {
                let s = activity.get();
                let between = s.in_flight == 0 && s.requests > 0 && s.head_started.is_none();
                if between && s.last_done.elapsed() >= MIN_IDLE_AT_CAPACITY {
                    return "capacity";
                }
            }
        }
    }
}

fn closed(listener: &'static str, reason: &'static str) {
    metrics::counter!("agentidp_http_connections_closed_total", "listener" => listener, "reason" => reason)
        .increment(1);
}

/// Holds a connection slot and counts the connection as open while it lives.
struct OpenConnection {
    listener: &'static str,
    _permit: OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(listener: &'static str, permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("agentidp_http_open_connections", "listener" => listener).increment(1.0);
        Self {
            listener,
            _permit: permit,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("agentidp_http_open_connections", "listener" => self.listener)
            .decrement(1.0);
    }
}

/// What the watchdog needs to know about a connection.
#[derive(Debug, Clone, Copy)]
struct ConnState {
    /// Requests whose headers are complete and whose response is not finished.
    in_flight: usize,
    /// Requests started on this connection.
    requests: u64,
    /// When the first byte of the next request's head arrived (HTTP/1.1, nothing in flight).
    head_started: Option<Instant>,
    /// When the last response finished.
    last_done: Instant,
    /// When a request in flight last made progress (started, produced a response frame,
    /// finished).
    last_progress: Instant,
    /// HTTP/2: frames (PINGs, window updates) arrive between requests, so bytes read say
    /// nothing about a request's head.
    h2: bool,
}

/// The connection's state, shared by its stream, its requests and its watchdog. Written without
/// waking anyone; the watchdog reads it when it wakes.
#[derive(Clone)]
struct Activity(Arc<std::sync::Mutex<ConnState>>);

impl Activity {
    fn new() -> Self {
        Self(Arc::new(std::sync::Mutex::new(ConnState {
            in_flight: 0,
            requests: 0,
            head_started: None,
            last_done: Instant::now(),
            last_progress: Instant::now(),
            h2: false,
        })))
    }

    fn modify<R>(&self, f: impl FnOnce(&mut ConnState) -> R) -> R {
        // A panic while holding this lock cannot leave the state inconsistent (plain fields).
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    fn get(&self) -> ConnState {
        self.modify(|s| *s)
    }

    fn bytes_read(&self, first: Option<&[u8]>) {
        self.modify(|s| {
            // An HTTP/2 connection without TLS starts with the client preface (RFC 9113 §3.4).
            if first.is_some_and(|b| b.starts_with(b"PRI ")) {
                s.h2 = true;
            }
            if !s.h2 && s.in_flight == 0 && s.head_started.is_none() {
                s.head_started = Some(Instant::now());
            }
        });
    }

    fn request_started(&self) -> InFlight {
        let now = Instant::now();
        self.modify(|s| {
            s.in_flight += 1;
            s.requests += 1;
            s.last_progress = now;
            s.head_started = None;
        });
        InFlight(self.clone())
    }
}

/// A request in flight: from its complete headers until its response body is done.
struct InFlight(Activity);

impl InFlight {
    /// The response made progress (a frame was taken to be sent).
    fn progressed(&self) {
        let now = Instant::now();
        self.0.modify(|s| s.last_progress = now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = Instant::now();
        self.0.modify(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.last_done = now;
            s.last_progress = now;
        });
    }
}

/// The connection's stream, reporting when bytes arrive.
struct Observed<I> {
    io: I,
    activity: Activity,
    first: bool,
}

impl<I> Observed<I> {
    fn new(io: I, activity: Activity, h2: bool) -> Self {
        if h2 {
            activity.modify(|s| s.h2 = true);
        }
        Self {
            io,
            activity,
            first: true,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Observed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let got = &buf.filled()[before..];
            if !got.is_empty() {
                let first = std::mem::take(&mut self.first).then_some(got);
                self.activity.bytes_read(first);
            }
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Observed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The router as a hyper service for one connection: adds the peer address (`ConnectInfo`)
/// and marks each request in flight until its response body is done.
#[derive(Clone)]
struct ConnectionService {
    app: Router,
    peer: SocketAddr,
    activity: Activity,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let in_flight = self.activity.request_started();
        let app = self.app.clone();
        Box::pin(async move {
            let resp = app.oneshot(req).await?;
            Ok(resp.map(|body| {
                let body = http_body_util::BodyExt::map_frame(body, move |frame| {
                    in_flight.progressed();
                    frame
                });
                axum::body::Body::new(body)
            }))
        })
    }
}
