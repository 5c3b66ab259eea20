//! Redis: shared replay markers (`SET NX PXAT`) and cache invalidation over pub/sub, so several
//! instances act as one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;

use super::{EphemeralError, Invalidation, InvalidationBus, ReplayCache};

const CHANNEL: &str = "agentidp:invalidate";
/// Bound on one replay marker's `SET`.
const REPLAY_TIMEOUT: Duration = Duration::from_millis(500);
/// Bound on connecting to Redis at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct RedisEphemeral {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl RedisEphemeral {
    /// Connects and checks the server answers. `prefix` namespaces keys (tests share one Redis).
    /// One direct connection comes first, so the error is its cause ("Connection refused", a
    /// refused password, an unknown host) naming the server's address, never its password; the
    /// reconnecting manager would retry until the timeout and say only "timed out".
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, EphemeralError> {
        let client = redis::Client::open(url)
            .map_err(|e| EphemeralError(format!("invalid Redis URL: {e}")))?;
        let at = client.get_connection_info().addr().to_string();
        let mut probe =
            tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
                .await
                .map_err(|_| {
                    EphemeralError(format!(
                        "no answer from Redis at {at} within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(|e| EphemeralError(format!("cannot connect to Redis at {at}: {e}")))?;
        let _: String =
            tokio::time::timeout(CONNECT_TIMEOUT, redis::cmd("PING").query_async(&mut probe))
                .await
                .map_err(|_| EphemeralError(format!("Redis at {at} did not answer PING")))?
                .map_err(|e| EphemeralError(format!("Redis at {at} refused PING: {e}")))?;
        drop(probe);
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, ConnectionManager::new(client.clone()))
            .await
            .map_err(|_| EphemeralError(format!("timed out connecting to Redis at {at}")))?
            .map_err(|e| EphemeralError(format!("cannot connect to Redis at {at}: {e}")))?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// The same connection with keys and the channel under `prefix` (one deployment's).
    pub fn namespaced(self, prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            ..self
        }
    }

    /// A handle on the shared connection, for other users of the same Redis (the rate limiter).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Whether Redis answers a `PING` within a second (`/readyz`).
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        matches!(
            tokio::time::timeout(
                Duration::from_secs(1),
                redis::cmd("PING").query_async::<String>(&mut conn)
            )
            .await,
            Ok(Ok(_))
        )
    }

    fn channel(&self) -> String {
        format!("{}{CHANNEL}", self.prefix)
    }

    /// Listens for invalidations from every instance until `shutdown` resolves, reconnecting on
    /// errors.
    ///
    /// Messages published while the subscription is down are lost, so `resync` (forget every
    /// cached entry the bus would invalidate) is called whenever the subscription is (re)made
    /// (with `true`), when it ends, and on every failed attempt while it is down (with `false`):
    /// nothing cached across an outage is trusted, and while disconnected an entry lives at most
    /// [`RETRY_PERIOD`].
    pub async fn listen<F, Fut>(
        self,
        on_message: F,
        resync: impl Fn(bool) + Send + Sync,
        shutdown: impl Future<Output = ()>,
    ) where
        F: Fn(Invalidation) -> Fut + Send + Sync,
        Fut: Future<Output = ()> + Send,
    {
        let on_message = Arc::new(on_message);
        let run = async {
            loop {
                match self.client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(self.channel()).await {
                        Ok(()) => {
                            // Subscribed: what was missed before now is forgotten.
                            resync(true);
                            let mut stream = pubsub.on_message();
                            // A subscription can die silently (a NAT or proxy dropping an idle
                            // connection, a partition): no error, just no more messages, and the
                            // caches and the revocation set would go on trusting it. So this
                            // instance publishes a heartbeat on the channel and expects to hear
                            // something (its own heartbeat at least) within HEARTBEAT_GRACE; when
                            // nothing comes it reconnects, and `resync(false)` meanwhile makes
                            // every reader fall back to the database.
                            let mut publisher = self.conn.clone();
                            let channel = self.channel();
                            let mut beat = tokio::time::interval(HEARTBEAT);
                            let mut last_heard = tokio::time::Instant::now();
                            loop {
                                tokio::select! {
                                    _ = beat.tick() => {
                                        let _: Result<i64, _> = redis::cmd("PUBLISH")
                                            .arg(&channel)
                                            .arg(HEARTBEAT_PAYLOAD)
                                            .query_async(&mut publisher)
                                            .await;
                                    }
                                    () = tokio::time::sleep_until(last_heard + HEARTBEAT_GRACE) => {
                                        tracing::warn!("redis invalidation subscription silent (not even its own heartbeat); reconnecting");
                                        break;
                                    }
                                    msg = stream.next() => {
                                        let Some(msg) = msg else {
                                            tracing::warn!("redis invalidation subscription ended; reconnecting");
                                            break;
                                        };
                                        last_heard = tokio::time::Instant::now();
                                        if let Ok(payload) = msg.get_payload::<String>()
                                            && let Some(inv) = Invalidation::decode(&payload)
                                        {
                                            on_message(inv).await;
                                        }
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "redis subscribe failed; retrying"),
                    },
                    Err(e) => tracing::warn!(error = %e, "redis subscribe failed; retrying"),
                }
                resync(false);
                tokio::time::sleep(RETRY_PERIOD).await;
            }
        };
        tokio::select! {
            _ = run => {}
            _ = shutdown => {}
        }
    }
}

/// How often a lost subscription is retried (and the caches emptied meanwhile).
pub const RETRY_PERIOD: Duration = Duration::from_secs(1);

/// How often each instance publishes a heartbeat on the invalidation channel.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A subscription that hears nothing for this long (three heartbeats missed) is taken as dead.
pub const HEARTBEAT_GRACE: Duration = Duration::from_secs(7);
/// The heartbeat's payload: not an [`Invalidation`], so every instance ignores it.
const HEARTBEAT_PAYLOAD: &str = "heartbeat";

#[async_trait]
impl ReplayCache for RedisEphemeral {
    async fn set_if_absent(
        &self,
        key: &str,
        expires_at: i64,
        _now: i64,
    ) -> Result<bool, EphemeralError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}replay:{key}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(expires_at.saturating_mul(1000));
        // Bounded: a Redis that stopped answering (not refusing) must not hold the token
        // request; the caller falls back ([`super::FailoverReplay`]).
        let set: Option<String> = tokio::time::timeout(REPLAY_TIMEOUT, cmd.query_async(&mut conn))
            .await
            .map_err(|_| EphemeralError("Redis did not answer within 500 ms".into()))?
            .map_err(|e| EphemeralError(e.to_string()))?;
        Ok(set.is_some())
    }
}

#[async_trait]
impl InvalidationBus for RedisEphemeral {
    async fn publish(&self, inv: &Invalidation) {
        if let Err(e) = self.try_publish(inv).await {
            tracing::warn!(error = %e, "could not publish cache invalidation");
        }
    }
    async fn try_publish(&self, inv: &Invalidation) -> Result<(), EphemeralError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(self.channel())
            .arg(inv.encode())
            .query_async(&mut conn)
            .await
            .map_err(|e| EphemeralError(e.to_string()))?;
        Ok(())
    }
    fn is_shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis port nobody listens on is reported as a refused connection naming the address,
    /// at once (it used to wait 5 s and say "timed out"), and never with the URL's password.
    #[tokio::test]
    async fn a_dead_redis_port_is_refused_at_once() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let started = std::time::Instant::now();
        let Err(e) =
            RedisEphemeral::connect(&format!("redis://:hunter2@127.0.0.1:{port}"), "").await
        else {
            panic!("connected to a dead port")
        };
        let msg = e.to_string();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
        assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!msg.contains("timed out"), "{msg}");
    }
}
