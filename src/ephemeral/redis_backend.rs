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

#[derive(Clone)]
pub struct RedisEphemeral {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl RedisEphemeral {
    /// Connects and checks the server answers. `prefix` namespaces keys (tests share one Redis).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, EphemeralError> {
        let client = redis::Client::open(url).map_err(|e| EphemeralError(e.to_string()))?;
        let mut conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new(client.clone()),
        )
        .await
        .map_err(|_| EphemeralError("timed out connecting to Redis".into()))?
        .map_err(|e| EphemeralError(e.to_string()))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| EphemeralError(e.to_string()))?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
        })
    }

    fn channel(&self) -> String {
        format!("{}{CHANNEL}", self.prefix)
    }

    /// Listens for invalidations from every instance until `shutdown` resolves, reconnecting on
    /// errors.
    ///
    /// Messages published while the subscription is down are lost, so `resync` (forget every
    /// cached entry the bus would invalidate) is called whenever the subscription is (re)made,
    /// when it ends, and on every failed attempt while it is down: nothing cached across an
    /// outage is trusted, and while disconnected an entry lives at most [`RETRY_PERIOD`].
    pub async fn listen<F, Fut>(
        self,
        on_message: F,
        resync: impl Fn() + Send + Sync,
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
                            resync();
                            let mut stream = pubsub.on_message();
                            while let Some(msg) = stream.next().await {
                                if let Ok(payload) = msg.get_payload::<String>()
                                    && let Some(inv) = Invalidation::decode(&payload)
                                {
                                    on_message(inv).await;
                                }
                            }
                            tracing::warn!("redis invalidation subscription ended; reconnecting");
                        }
                        Err(e) => tracing::warn!(error = %e, "redis subscribe failed; retrying"),
                    },
                    Err(e) => tracing::warn!(error = %e, "redis subscribe failed; retrying"),
                }
                resync();
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

#[async_trait]
impl ReplayCache for RedisEphemeral {
    async fn set_if_absent(
        &self,
        key: &str,
        expires_at: i64,
        _now: i64,
    ) -> Result<bool, EphemeralError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}replay:{key}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(expires_at.saturating_mul(1000))
            .query_async(&mut conn)
            .await
            .map_err(|e| EphemeralError(e.to_string()))?;
        Ok(set.is_some())
    }
}

#[async_trait]
impl InvalidationBus for RedisEphemeral {
    async fn publish(&self, inv: &Invalidation) {
        let mut conn = self.conn.clone();
        let r: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(self.channel())
            .arg(inv.encode())
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not publish cache invalidation");
        }
    }
    fn is_shared(&self) -> bool {
        true
    }
}
