//! What every request pays to be observed, paid once: the request span, the access log line and
//! the request metrics share one clock reading at the start and one at the end, and the metric
//! handles of a route are looked up once per thread instead of being built from label strings on
//! every request (before: a `String` for the route, one for the status, two registry lookups and
//! two clock pairs per request). The request timeout arms its timer only when a handler actually
//! waits (the cached GETs answer on their first poll and never touch the timer wheel).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use super::{BODY_LIMIT, payload_too_large};

/// The request id header (set by `SetRequestIdLayer` before this runs).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Methods are arbitrary tokens: only the standard ones become label values, so a client cannot
/// grow the series without bound.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The metric handles of one route: its latency histogram and one counter per (method, status)
/// seen (at most 8 methods times the statuses the server answers: a short list).
struct RouteMetrics {
    duration: metrics::Histogram,
    counts: Vec<(&'static str, u16, metrics::Counter)>,
}

thread_local! {
    /// Per worker thread: no lock on the hot path. The handles point at the recorder's shared
    /// series, so every thread counts into the same ones. Keys are route templates (a bounded
    /// set fixed by the router) and "unmatched".
    static ROUTES: RefCell<HashMap<Box<str>, RouteMetrics>> = RefCell::new(HashMap::new());
}

fn record(route: &str, method: &'static str, status: StatusCode, elapsed: Duration) {
    let status = status.as_u16();
    ROUTES.with(|routes| {
        let mut routes = routes.borrow_mut();
        if !routes.contains_key(route) {
            let duration = metrics::histogram!(
                "agentidp_http_request_duration_seconds",
                "route" => route.to_owned()
            );
            routes.insert(
                route.into(),
                RouteMetrics {
                    duration,
                    counts: Vec::new(),
                },
            );
        }
        let Some(m) = routes.get_mut(route) else {
            return;
        };
        m.duration.record(elapsed.as_secs_f64());
        match m
            .counts
            .iter()
            .find(|(me, st, _)| *me == method && *st == status)
        {
            Some((_, _, c)) => c.increment(1),
            None => {
                let c = metrics::counter!(
                    "agentidp_http_requests_total",
                    "method" => method,
                    "route" => route.to_owned(),
                    "status" => status.to_string()
                );
                c.increment(1);
                m.counts.push((method, status, c));
            }
        }
    });
}

/// Headers never to be printed: marked sensitive before anything could log them.
const SENSITIVE: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// The edge of every request, in one middleware (each `from_fn` layer costs a clone of the
/// inner service and a boxed future per request; this one replaced six layers):
///
/// - the sensitive headers are marked so no `Debug` print shows them;
/// - the request id: the client's `x-request-id` if it sent one, else a new UUIDv4 (from the
///   thread-local CSPRNG, no system call), echoed on the response;
/// - a declared `Content-Length` over [`BODY_LIMIT`] is answered 413 at once, before any handler
///   waits for a body (a client that declares 100 KB and sends nothing would otherwise hold the
///   request until the timeout); a chunked body over the limit is stopped by `DefaultBodyLimit`,
///   whose plain-text 413 becomes the JSON error every endpoint answers;
/// - the request span (method, path, request id: never the query, which may carry anything), the
///   access log line (status and latency as numbers, so a log pipeline can compute with them), a
///   warning for 5xx answers, and the request count and latency by route template (never by raw
///   path: unbounded label values), all from one pair of clock readings. Outside the panic and
///   timeout layers, so their 500 and 503 answers are logged and counted too.
pub async fn edge(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    for name in SENSITIVE {
        if let header::Entry::Occupied(mut e) = req.headers_mut().entry(name) {
            for v in e.iter_mut() {
                v.set_sensitive(true);
            }
        }
    }
    let request_id = match req.headers().get(&REQUEST_ID) {
        Some(v) => v.clone(),
        None => {
            let mut buf = uuid::Uuid::encode_buffer();
            let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
            let v = HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"));
            req.headers_mut().insert(REQUEST_ID, v.clone());
            v
        }
    };
    let method = method_label(req.method());
    // One field: a span's fields are formatted when it is created, for every request (three
    // fields cost 10% of a cached GET's throughput). Method and path go on the lines that
    // report the answer.
    let span = tracing::info_span!("request", request_id = request_id.to_str().unwrap_or(""));
    // The raw path only when the access log will print it.
    let path = tracing::enabled!(target: crate::telemetry::ACCESS_LOG_TARGET, tracing::Level::INFO)
        .then(|| loggable_path(req.uri().path()));
    // The route template is an `Arc<str>` inside `MatchedPath`: cloning it costs no allocation.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut resp = if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        payload_too_large()
    } else {
        next.run(req).instrument(span.clone()).await
    };
    // (An HTML page's own 413, the invite form's, is left as it is.)
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(&resp) && !is_html(&resp) {
        resp = payload_too_large();
    }
    if !resp.headers().contains_key(&REQUEST_ID) {
        resp.headers_mut().insert(REQUEST_ID, request_id);
    }
    let elapsed = start.elapsed();
    let status = resp.status();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                method = method,
                route = route.as_ref().map_or("unmatched", |r| r.as_str()),
                status = status.as_u16(),
                latency_ms,
                "request failed"
            );
        }
        tracing::info!(
            target: crate::telemetry::ACCESS_LOG_TARGET,
            method = method,
            path = path.as_deref().unwrap_or(""),
            status = status.as_u16(),
            latency_ms,
            "request finished"
        );
    });
    record(
        route.as_ref().map_or("unmatched", |r| r.as_str()),
        method,
        status,
        elapsed,
    );
    resp
}

/// The path as the access log prints it: the token of a people link (a credential:
/// `/orgs/{slug}/invites/{token}`, `.../verify-email/{token}`, `.../password-reset/{token}`,
/// `.../ownership-transfer/{token}`) is replaced by `[redacted]`.
fn loggable_path(path: &str) -> String {
    let mut segs = path.splitn(5, '/');
    match (
        segs.next(),
        segs.next(),
        segs.next(),
        segs.next(),
        segs.next(),
    ) {
        (
            Some(""),
            Some("orgs"),
            Some(slug),
            Some(kind @ ("invites" | "verify-email" | "password-reset" | "ownership-transfer")),
            Some(_),
        ) => format!("/orgs/{slug}/{kind}/[redacted]"),
        _ => path.to_owned(),
    }
}

fn is_html(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The request timeout, armed lazily: the handler is polled once first, and only a handler that
/// is still pending gets a timer (`tower_http::timeout::TimeoutLayer` arms one for every request,
/// a timer-wheel insertion and removal that the answers served from memory never need). A
/// request still running after `timeout` is answered `status` with an empty body, as
/// `TimeoutLayer::with_status_code` does.
#[derive(Clone, Copy)]
pub struct LazyTimeoutLayer {
    timeout: Duration,
    status: StatusCode,
}

impl LazyTimeoutLayer {
    pub fn new(status: StatusCode, timeout: Duration) -> Self {
        Self { timeout, status }
    }
}

impl<S> Layer<S> for LazyTimeoutLayer {
    type Service = LazyTimeout<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LazyTimeout {
            inner,
            timeout: self.timeout,
            status: self.status,
        }
    }
}

#[derive(Clone)]
pub struct LazyTimeout<S> {
    inner: S,
    timeout: Duration,
    status: StatusCode,
}

impl<S, B> Service<axum::http::Request<B>> for LazyTimeout<S>
where
    S: Service<axum::http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = LazyTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        LazyTimeoutFuture {
            inner: self.inner.call(req),
            sleep: None,
            // The deadline counts from the call, so work done before the first pending poll
            // counts too; only the timer is deferred.
            deadline: tokio::time::Instant::now() + self.timeout,
            status: self.status,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct LazyTimeoutFuture<F> {
        #[pin]
        inner: F,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        deadline: tokio::time::Instant,
        status: StatusCode,
    }
}

impl<F, E> Future for LazyTimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.inner.poll(cx) {
            return Poll::Ready(r);
        }
        let deadline = *this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Ok(this.status.into_response()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn invite_tokens_never_reach_the_access_log() {
        assert_eq!(
            loggable_path("/orgs/acme/invites/aidp_i_x_secret"),
            "/orgs/acme/invites/[redacted]"
        );
        assert_eq!(
            loggable_path("/orgs/acme/invites/t/more"),
            "/orgs/acme/invites/[redacted]"
        );
        assert_eq!(
            loggable_path("/orgs/acme/jwks.json"),
            "/orgs/acme/jwks.json"
        );
        for kind in ["verify-email", "password-reset", "ownership-transfer"] {
            assert_eq!(
                loggable_path(&format!("/orgs/acme/{kind}/aidp_x_secret")),
                format!("/orgs/acme/{kind}/[redacted]")
            );
        }
        // The forgot-password form itself carries nothing.
        assert_eq!(
            loggable_path("/orgs/acme/password-reset"),
            "/orgs/acme/password-reset"
        );
        // Only the public page's path (the admin API's invite ids are no secret).
        assert_eq!(
            loggable_path("/x/orgs/acme/invites/1"),
            "/x/orgs/acme/invites/1"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_handler_is_answered_at_the_timeout_and_a_ready_one_gets_no_timer() {
        let slow = tower::service_fn(|_req: axum::http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Infallible>(StatusCode::OK.into_response())
        });
        let mut svc =
            LazyTimeoutLayer::new(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5))
                .layer(slow);
        let started = tokio::time::Instant::now();
        let resp = svc.call(axum::http::Request::new(())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let fast = tower::service_fn(|_req: axum::http::Request<()>| async {
            Ok::<_, Infallible>(StatusCode::OK.into_response())
        });
        let mut svc =
            LazyTimeoutLayer::new(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5))
                .layer(fast);
        let mut fut = std::pin::pin!(svc.call(axum::http::Request::new(())));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(r)) => assert_eq!(r.status(), StatusCode::OK),
            _ => panic!("a ready handler must answer on its first poll"),
        }
        assert!(fut.sleep.is_none(), "no timer for a ready handler");
    }
}
