//! Rate limits: the generic cell rate algorithm (GCRA) over the injected [`Clock`], in process,
//! or shared by every instance through Redis when it is configured.
//!
//! GCRA keeps one number per key, its "theoretical arrival time" (TAT): a [`Rate`] of `n` events
//! per `window` spaces events `window / n` apart and lets `n` come at once; an event is allowed
//! while `TAT - now <= window - interval`, and moves the TAT one interval on (from `now` at the
//! earliest). So a key that sent `n` events at once waits one interval for the next, and a key
//! that stays quiet for a window starts over with its whole burst.
//!
//! [`FailureLimiter`] is the brake on failed authentication (issue 9 point 7): only failures
//! count, and the check before authenticating reads memory only, so a request that succeeds
//! never waits for a database or Redis round trip. With Redis, each failure is one script call
//! (`EVALSHA`) that moves the shared TAT and returns it; the instance keeps the answer in memory,
//! so once a key is over its limit every instance that saw one of its failures refuses it
//! locally until the TAT allows again. An instance that has not yet seen a failure of that key
//! lets one more attempt through, fails it, and learns the shared state from the answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use redis::aio::ConnectionManager;

use crate::model::Clock;

/// `count` events per `window_ms`, all of them at once if need be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window_ms: i64,
}

impl Rate {
    pub const fn per_minute(count: u32) -> Self {
        Self {
            count,
            window_ms: 60_000,
        }
    }

    /// The spacing of events: `window / count`, at least one millisecond.
    fn interval(self) -> i64 {
        (self.window_ms / i64::from(self.count.max(1))).max(1)
    }

    /// How far the TAT may run ahead of now with an event still allowed.
    fn tolerance(self) -> i64 {
        self.window_ms - self.interval()
    }
}

/// A refusal: the key may try again in this many seconds (the `Retry-After` value, RFC 9110
/// §10.2.3), at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl RetryAfter {
    fn from_ms(ms: i64) -> Self {
        Self(
            u64::try_from(ms.saturating_add(999) / 1000)
                .unwrap_or(1)
                .max(1),
        )
    }
}

/// The most keys a table tracks. Past it, keys whose TAT lies in the past (they would start
/// over anyway) are dropped; if every key is still live, a new key is not tracked until some
/// expire (memory stays bounded; the keys already tracked keep their limits).
pub const MAX_KEYS: usize = 100_000;

/// TATs in milliseconds by key, in memory.
#[derive(Default)]
struct Table(Mutex<HashMap<String, i64>>);

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // A panic while holding the lock leaves only numbers behind: keep using them.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some` when `key` is over `rate` at `now`.
    fn refused(&self, key: &str, rate: Rate, now: i64) -> Option<RetryAfter> {
        let tat = *self.lock().get(key)?;
        let wait = tat - now - rate.tolerance();
        (wait > 0).then(|| RetryAfter::from_ms(wait))
    }

    /// Records one event of `key` (GCRA); no change when the key is already over.
    fn record(&self, key: &str, rate: Rate, now: i64) {
        let mut map = self.lock();
        let tat = map.get(key).copied().unwrap_or(now).max(now);
        if tat - now > rate.tolerance() {
            return;
        }
        Self::store(&mut map, key, tat + rate.interval(), now);
    }

    /// Whether `key` has a TAT still ahead of `now` (it failed within its window).
    fn live(&self, key: &str, now: i64) -> bool {
        self.lock().get(key).is_some_and(|t| *t > now)
    }

    /// Keeps a TAT learned elsewhere (Redis).
    fn learn(&self, key: &str, tat: i64, now: i64) {
        Self::store(&mut self.lock(), key, tat, now);
    }

    fn store(map: &mut HashMap<String, i64>, key: &str, tat: i64, now: i64) {
        if let Some(t) = map.get_mut(key) {
            *t = tat;
            return;
        }
        if map.len() >= MAX_KEYS {
            map.retain(|_, t| *t > now);
            if map.len() >= MAX_KEYS {
                return;
            }
        }
        map.insert(key.to_owned(), tat);
    }

    /// Drops keys whose TAT has passed (they are as good as new).
    fn prune(&self, now: i64) {
        self.lock().retain(|_, t| *t > now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// GCRA in one Lua script, atomic in Redis: `KEYS[1]` holds the TAT; `ARGV` = now, interval,
/// tolerance (milliseconds, from the caller's clock so every instance and every test agrees with
/// its own time source). Returns the TAT after the event (unchanged when it was refused). The
/// key expires when the TAT has passed.
const GCRA_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
if tat - now > tolerance then return tat end
tat = tat + interval
redis.call('SET', KEYS[1], tat, 'PX', tat - now)
return tat
";

/// The shared half: a connection and the namespace of this deployment's keys.
struct Shared {
    conn: ConnectionManager,
    prefix: String,
}

impl Shared {
    async fn record(&self, key: &str, rate: Rate, now: i64) -> Result<i64, redis::RedisError> {
        let mut conn = self.conn.clone();
        // EVAL with the script text: the failure path only, a few hundred bytes.
        redis::cmd("EVAL")
            .arg(GCRA_SCRIPT)
            .arg(1)
            .arg(format!("{}{key}", self.prefix))
            .arg(now)
            .arg(rate.interval())
            .arg(rate.tolerance())
            .query_async(&mut conn)
            .await
    }
}

/// What is being limited: a client address (IPv6 by its /64, what one host usually holds) or
/// one client of one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    Ip(IpAddr),
    Client { org: &'a str, client_id: &'a str },
}

impl Subject<'_> {
    fn key(&self) -> String {
        match self {
            Subject::Ip(IpAddr::V4(a)) => format!("ip:{a}"),
            Subject::Ip(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => format!("ip:{v4}"),
                None => {
                    let s = a.segments();
                    format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            // Bounded: a client id longer than this is no client of ours anyway.
            Subject::Client { org, client_id } => {
                let id: String = client_id.chars().take(128).collect();
                format!("client:{org}:{id}")
            }
        }
    }
}

/// Failed authentications one client (one `client_id` of one organization) may have, from all
/// addresses together, before it is braked to one per 6 s (100 per 10 minutes); always on. A
/// client id is public, so whoever knows it could spend this allowance: the brake therefore
/// applies only to addresses that have themselves failed against that client within
/// [`FAILED_HERE`] (a "smart lockout", as Azure AD and Okta do it). The client's own address,
/// with no failure of its own, keeps getting tokens while someone else guesses; a guesser spread
/// over many addresses gets one try per address and then waits with the client's brake.
pub const CLIENT_FAILURES: Rate = Rate {
    count: 100,
    window_ms: 600_000,
};

/// How long an address that failed against a client is subject to that client's brake.
pub const FAILED_HERE: Rate = Rate {
    count: 1,
    window_ms: 600_000,
};

/// The key of "this address failed against this client", when `subjects` name both.
fn pair_key(subjects: &[Subject<'_>]) -> Option<String> {
    let ip = subjects.iter().find(|s| matches!(s, Subject::Ip(_)))?;
    let client = subjects
        .iter()
        .find(|s| matches!(s, Subject::Client { .. }))?;
    Some(format!("pair:{}|{}", client.key(), ip.key()))
}

/// The brake on failed authentication: per client IP (`AGENTIDP_AUTH_FAILURE_LIMIT` per minute,
/// off with 0) and per client ([`CLIENT_FAILURES`]).
pub struct FailureLimiter {
    clock: Arc<dyn Clock>,
    per_ip: Option<Rate>,
    per_client: Rate,
    local: Table,
    shared: Option<Shared>,
}

impl FailureLimiter {
    /// In process only. `ip_failures_per_minute` 0 turns the per-IP limit off.
    pub fn new(clock: Arc<dyn Clock>, ip_failures_per_minute: u32) -> Self {
        Self {
            clock,
            per_ip: (ip_failures_per_minute > 0).then(|| Rate::per_minute(ip_failures_per_minute)),
            per_client: CLIENT_FAILURES,
            local: Table::default(),
            shared: None,
        }
    }

    /// Counts failures in Redis too, under `namespace` (one deployment: its public URL), so
    /// several instances share them.
    pub fn with_redis(mut self, conn: ConnectionManager, namespace: &str) -> Self {
        self.shared = Some(Shared {
            conn,
            prefix: format!("agentidp:auth-failures:{namespace}:"),
        });
        self
    }

    fn rate(&self, s: &Subject<'_>) -> Option<Rate> {
        match s {
            Subject::Ip(_) => self.per_ip,
            Subject::Client { .. } => Some(self.per_client),
        }
    }

    /// Before authenticating: `Some` when one of `subjects` has used up its failures (answer
    /// 429 with `Retry-After`, and do not authenticate). Memory only.
    pub fn refused(&self, subjects: &[Subject<'_>]) -> Option<RetryAfter> {
        // The usual case, no failure anywhere lately: no key is even built.
        if self.local.lock().is_empty() {
            return None;
        }
        let now = self.clock.now_ms();
        // The client's brake holds only for an address that failed against it lately.
        let failed_here = pair_key(subjects).is_some_and(|k| self.local.live(&k, now));
        subjects
            .iter()
            .filter(|s| failed_here || !matches!(s, Subject::Client { .. }))
            .filter_map(|s| {
                self.rate(s)
                    .and_then(|r| self.local.refused(&s.key(), r, now))
            })
            .max_by_key(|r| r.0)
    }

    /// After a failed authentication: counts it against each of `subjects`.
    pub async fn failed(&self, subjects: &[Subject<'_>]) {
        let now = self.clock.now_ms();
        let keyed = subjects
            .iter()
            .filter_map(|s| self.rate(s).map(|r| (s.key(), r)))
            .chain(pair_key(subjects).map(|k| (k, FAILED_HERE)));
        for (key, rate) in keyed {
            match &self.shared {
                Some(shared) => match shared.record(&key, rate, now).await {
                    Ok(tat) => self.local.learn(&key, tat, now),
                    Err(e) => {
                        // Redis unavailable: this instance still brakes on its own count.
                        tracing::warn!(error = %e, "counting a failed authentication in Redis failed");
                        self.local.record(&key, rate, now);
                    }
                },
                None => self.local.record(&key, rate, now),
            }
        }
    }

    /// Drops state that no longer limits anything (the purge job calls it).
    pub fn prune(&self) {
        self.local.prune(self.clock.now_ms());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    struct At(AtomicI64);
    impl Clock for At {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn clock() -> Arc<At> {
        Arc::new(At(AtomicI64::new(1_900_000_000_000)))
    }

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let c = clock();
        let l = FailureLimiter::new(c.clone(), 10);
        let ip = [Subject::Ip("192.0.2.1".parse().unwrap())];
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for i in 0..10 {
            assert_eq!(l.refused(&ip), None, "failure {i}");
            rt.block_on(l.failed(&ip));
        }
        // Ten at once: the eleventh waits one interval (6 s).
        assert_eq!(l.refused(&ip), Some(RetryAfter(6)));
        // Another address is not affected.
        assert_eq!(
            l.refused(&[Subject::Ip("192.0.2.2".parse().unwrap())]),
            None
        );
        c.0.fetch_add(5_999, Ordering::SeqCst);
        assert_eq!(l.refused(&ip), Some(RetryAfter(1)));
        c.0.fetch_add(1, Ordering::SeqCst);
        assert_eq!(l.refused(&ip), None);
        rt.block_on(l.failed(&ip));
        assert!(l.refused(&ip).is_some());
        // A quiet minute restores the whole burst; pruning forgets the key.
        c.0.fetch_add(60_000, Ordering::SeqCst);
        l.prune();
        assert_eq!(l.local.len(), 0);
        assert_eq!(l.refused(&ip), None);
    }

    #[test]
    fn per_ip_off_keeps_the_per_client_limit() {
        let l = FailureLimiter::new(clock(), 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ip = Subject::Ip("192.0.2.1".parse().unwrap());
        let client = Subject::Client {
            org: "o",
            client_id: "c",
        };
        for _ in 0..CLIENT_FAILURES.count {
            rt.block_on(l.failed(&[ip.clone(), client.clone()]));
        }
        assert_eq!(l.refused(std::slice::from_ref(&ip)), None);
        assert!(l.refused(&[ip, client.clone()]).is_some());
        // Smart lockout (review finding: anyone could lock a client out of its own tokens): an
        // address that never failed against the client is not braked for the client's sake; a
        // new address gets one failure, then waits with the client's brake.
        let own = Subject::Ip("198.51.100.7".parse().unwrap());
        assert_eq!(l.refused(&[own, client.clone()]), None);
        let fresh = Subject::Ip("203.0.113.9".parse().unwrap());
        assert_eq!(l.refused(&[fresh.clone(), client.clone()]), None);
        rt.block_on(l.failed(&[fresh.clone(), client.clone()]));
        assert!(l.refused(&[fresh, client]).is_some());
        let other = Subject::Client {
            org: "o",
            client_id: "d",
        };
        assert_eq!(l.refused(&[other]), None);
    }

    #[test]
    fn ipv6_is_limited_by_its_64_and_mapped_v4_as_v4() {
        let a = Subject::Ip("2001:db8:1:2:aaaa::1".parse().unwrap()).key();
        let b = Subject::Ip("2001:db8:1:2:bbbb::2".parse().unwrap()).key();
        let c = Subject::Ip("2001:db8:1:3::1".parse().unwrap()).key();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            Subject::Ip("::ffff:192.0.2.1".parse().unwrap()).key(),
            Subject::Ip("192.0.2.1".parse().unwrap()).key()
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = Table::default();
        let rate = Rate::per_minute(1);
        for i in 0..MAX_KEYS + 10 {
            t.record(&format!("k{i}"), rate, 0);
        }
        assert_eq!(t.len(), MAX_KEYS);
        // Once the TATs have passed, new keys replace them.
        t.record("new", rate, 120_000);
        assert_eq!(t.len(), 1);
    }
}
