//! Rate limits: the generic cell rate algorithm (GCRA) over the injected [`Clock`], in process,
//! or shared by every instance through Redis when it is configured.
//!
//! GCRA keeps one number per key, its "theoretical arrival time" (TAT): a rate of `n` events
//! per `window` spaces events `window / n` apart (the interval) and lets `n` come at once; an
//! event is allowed while `TAT - now <= window - interval` (the tolerance), and moves the TAT one
//! interval on (from `now` at the earliest). So a key that sent `n` events at once waits one
//! interval for the next, and a key that stays quiet for a window starts over with its whole
//! burst. The arithmetic is written once ([`admit`], [`advance`]); the Redis script
//! ([`GCRA_SCRIPT`]) is the same [`advance`] in Lua, and both limiters below use them.
//!
//! [`FailureLimiter`] is the brake on failed authentication (issue 9 point 7): only failures
//! count, and the check before authenticating reads memory only, so a request that succeeds
//! never waits for a database or Redis round trip. With Redis, each failure is one script call
//! (`EVALSHA`) that moves the shared TAT and returns it; the instance keeps the answer in memory,
//! so once a key is over its limit every instance that saw one of its failures refuses it
//! locally until the TAT allows again. An instance that has not yet seen a failure of that key
//! lets one more attempt through, fails it, and learns the shared state from the answer.
//!
//! [`RateLimiter`] is the general limit (issue 11 point 4: per client at the token endpoint, per
//! principal on the admin API, per client IP on the public endpoints); see its documentation for
//! how it stays off the request path's critical section and how several instances share it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use redis::aio::ConnectionManager;

use crate::model::Clock;

/// One event at `now` against a key's `tat`: `Ok(the new TAT)` when it is allowed, else
/// `Err(how long until it would be)`, in the units of the arguments.
fn admit(tat: i64, now: i64, interval: i64, tolerance: i64) -> Result<i64, i64> {
    let tat = tat.max(now);
    let wait = tat - now - tolerance;
    if wait > 0 {
        Err(wait)
    } else {
        Ok(tat + interval)
    }
}

/// `n` events already admitted (the first of them at `first`) added to a key's `tat`, at most
/// one whole window (`tolerance + interval`) ahead of `now`: what [`GCRA_SCRIPT`] does in Redis.
fn advance(tat: i64, first: i64, n: i64, interval: i64, tolerance: i64, now: i64) -> i64 {
    tat.max(first)
        .saturating_add(n.saturating_mul(interval))
        .min(now.saturating_add(tolerance).saturating_add(interval))
}

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
        admit(tat, now, rate.interval(), rate.tolerance())
            .err()
            .map(RetryAfter::from_ms)
    }

    /// Records one event of `key` (GCRA); no change when the key is already over.
    fn record(&self, key: &str, rate: Rate, now: i64) {
        let mut map = self.lock();
        let tat = map.get(key).copied().unwrap_or(now);
        if let Ok(tat) = admit(tat, now, rate.interval(), rate.tolerance()) {
            Self::store(&mut map, key, tat, now);
        }
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

/// [`advance`] in one Lua script, atomic in Redis, for any number of keys at once: `KEYS` are
/// the keys; `ARGV` = now, the clock's units per millisecond (1 or 1000, for the keys' expiry),
/// then per key: the time of the first event, the number of events, interval, tolerance (all in
/// the caller's units and from the caller's clock, so every instance and every test agrees with
/// its own time source). Returns the TAT of each key after the events; a key expires when its
/// TAT has passed. Lua numbers are doubles: microseconds since 1970 (2^51) are exact.
const GCRA_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local b = 2 + (i - 1) * 4
  local first = tonumber(ARGV[b + 1])
  local n = tonumber(ARGV[b + 2])
  local interval = tonumber(ARGV[b + 3])
  local tolerance = tonumber(ARGV[b + 4])
  local tat = tonumber(redis.call('GET', key)) or now
  if n > 0 then
    tat = math.min(math.max(tat, first) + n * interval, now + tolerance + interval)
    if tat > now then
      redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / per_ms))
    end
  end
  out[i] = tat
end
return out
";

/// The SHA-1 of [`GCRA_SCRIPT`], for `EVALSHA` (the script text travels once per connection).
static GCRA_SHA: LazyLock<String> = LazyLock::new(|| {
    aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        GCRA_SCRIPT.as_bytes(),
    )
    .as_ref()
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect()
});

/// One key's events for [`Shared::sync`]: key (without the prefix), first event, count,
/// interval, tolerance.
type SyncItem<'a> = (&'a str, i64, i64, i64, i64);

/// The shared half: a connection and the namespace of this deployment's keys.
struct Shared {
    conn: ConnectionManager,
    prefix: String,
}

impl Shared {
    /// One round trip: [`GCRA_SCRIPT`] over `items`; the TAT of each.
    async fn sync(
        &self,
        now: i64,
        per_ms: i64,
        items: &[SyncItem<'_>],
    ) -> Result<Vec<i64>, redis::RedisError> {
        let build = |cmd: &str, script: &str| {
            let mut c = redis::cmd(cmd);
            c.arg(script).arg(items.len());
            for (key, ..) in items {
                c.arg(format!("{}{key}", self.prefix));
            }
            c.arg(now).arg(per_ms);
            for (_, first, n, interval, tolerance) in items {
                c.arg(*first).arg(*n).arg(*interval).arg(*tolerance);
            }
            c
        };
        let mut conn = self.conn.clone();
        match build("EVALSHA", &GCRA_SHA).query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // First use on this Redis (or after a restart or SCRIPT FLUSH): EVAL caches it.
                build("EVAL", GCRA_SCRIPT).query_async(&mut conn).await
            }
            r => r,
        }
    }

    /// One event of the failure brake (milliseconds).
    async fn record(&self, key: &str, rate: Rate, now: i64) -> Result<i64, redis::RedisError> {
        let tats = self
            .sync(now, 1, &[(key, now, 1, rate.interval(), rate.tolerance())])
            .await?;
        Ok(tats.first().copied().unwrap_or(now))
    }
}

/// What is being limited: a client address (IPv6 by its /64, what one host usually holds) or
/// one client of one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    Ip(IpAddr),
    Client {
        org: &'a str,
        client_id: &'a str,
    },
    /// A person's account at sign-in: the normalized email of one organization.
    Account {
        org: &'a str,
        email: &'a str,
    },
}

impl Subject<'_> {
    /// The limiter key of this subject (`ip:…`, `client:{org}:{client_id}`).
    pub fn key(&self) -> String {
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
            Subject::Account { org, email } => {
                let e: String = email.chars().take(254).collect();
                format!("account:{org}:{e}")
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

/// Failed sign-ins one account may have, from all addresses together, before it is braked to
/// one a minute: 10 per 10 minutes. As for clients, the account's brake holds only for
/// addresses that failed against the account themselves ([`FAILED_HERE`]): an attacker guessing
/// an owner's password from anywhere never locks the owner out of signing in from an address
/// that has not failed, and every lock ends by itself (GCRA: one more try a minute), so no one
/// can lock an account forever.
pub const ACCOUNT_FAILURES: Rate = Rate {
    count: 10,
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
        .find(|s| matches!(s, Subject::Client { .. } | Subject::Account { .. }))?;
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
            Subject::Account { .. } => Some(ACCOUNT_FAILURES),
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
            .filter(|s| {
                failed_here || !matches!(s, Subject::Client { .. } | Subject::Account { .. })
            })
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

/// A general limit: `per_second` events a second on average, up to `burst` at once
/// (`AGENTIDP_TOKEN_RATE_LIMIT`, `AGENTIDP_ADMIN_RATE_LIMIT`, `AGENTIDP_IP_RATE_LIMIT`, written
/// `PER_SECOND[:BURST]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_second: u32,
    pub burst: u32,
}

impl Limit {
    /// Spacing of events in microseconds (at least 1: a limit above a million a second is a
    /// million a second).
    fn interval(self) -> i64 {
        (1_000_000 / i64::from(self.per_second.max(1))).max(1)
    }

    fn tolerance(self) -> i64 {
        self.interval() * (i64::from(self.burst.max(1)) - 1)
    }

    /// `PER_SECOND[:BURST]`: `None` for `0` (off); the burst defaults to one second's worth.
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        let bad = || {
            format!(
                "expected PER_SECOND[:BURST] (whole numbers, 0 for off, e.g. 1000 or 1000:2000), got {s:?}"
            )
        };
        let (rate, burst) = match s.trim().split_once(':') {
            Some((r, b)) => (r.trim(), Some(b.trim())),
            None => (s.trim(), None),
        };
        let per_second: u32 = rate.parse().map_err(|_| bad())?;
        if per_second == 0 {
            return match burst {
                None | Some("0") => Ok(None),
                Some(_) => Err(format!("{}: a burst needs a rate above 0", bad())),
            };
        }
        let burst = match burst {
            Some(b) => b.parse::<u32>().map_err(|_| bad())?,
            None => per_second,
        };
        if burst == 0 {
            return Err(format!("{}: the burst must be at least 1", bad()));
        }
        Ok(Some(Self { per_second, burst }))
    }

    /// The window of the `RateLimit-Policy` field: the seconds in which a spent burst comes back
    /// (at least 1).
    fn window_secs(self) -> u64 {
        u64::from(self.burst)
            .div_ceil(u64::from(self.per_second.max(1)))
            .max(1)
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.per_second, self.burst)
    }
}

/// The answer of [`RateLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: `remaining` more events are allowed right now; the whole burst is back in
    /// `reset` seconds.
    Allowed {
        limit: Limit,
        remaining: u32,
        reset: u64,
    },
    /// Refused: the next event is allowed in `retry_after` seconds (at least 1); the whole
    /// burst is back in `reset`.
    Limited {
        limit: Limit,
        retry_after: RetryAfter,
        reset: u64,
    },
}

fn secs_ceil(us: i64) -> u64 {
    u64::try_from(us.max(0)).unwrap_or(0).div_ceil(1_000_000)
}

impl Decision {
    fn allowed(limit: Limit, tat: i64, now: i64) -> Self {
        let (i, t) = (limit.interval(), limit.tolerance());
        let remaining = ((t - (tat - now)).div_euclid(i) + 1).clamp(0, i64::from(limit.burst));
        Decision::Allowed {
            limit,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: secs_ceil(tat - now),
        }
    }

    fn limited(limit: Limit, tat: i64, now: i64, wait: i64) -> Self {
        Decision::Limited {
            limit,
            retry_after: RetryAfter(secs_ceil(wait).max(1)),
            reset: secs_ceil(tat - now).max(1),
        }
    }

    pub fn limit(&self) -> Limit {
        match self {
            Decision::Allowed { limit, .. } | Decision::Limited { limit, .. } => *limit,
        }
    }

    /// The `RateLimit-Policy` field value of this limit under the policy name `name` (a
    /// structured-field token): `name;q=BURST;w=SECONDS`, the burst being what comes back in
    /// `w` seconds (draft-ietf-httpapi-ratelimit-headers-11 §3).
    pub fn policy_field(&self, name: &str) -> String {
        let l = self.limit();
        format!("{name};q={};w={}", l.burst, l.window_secs())
    }

    /// The `RateLimit` field value: `name;r=REMAINING;t=RESET` (draft-ietf-httpapi-ratelimit-
    /// headers-11 §4; on a refusal `r=0` and `t` is the `Retry-After`, as §5 asks them to agree).
    pub fn limit_field(&self, name: &str) -> String {
        match self {
            Decision::Allowed {
                remaining, reset, ..
            } => format!("{name};r={remaining};t={reset}"),
            Decision::Limited { retry_after, .. } => format!("{name};r=0;t={}", retry_after.0),
        }
    }
}

/// One key's state: its TAT (microseconds) and, when Redis is shared, what this instance has
/// admitted since its last synchronisation.
struct Cell {
    key: Box<str>,
    tat: AtomicI64,
    /// Events admitted here and not yet added to the shared TAT.
    pending: AtomicI64,
    /// When the first of them happened.
    first: AtomicI64,
    /// The limit last applied to the key (the synchronisation sends it along).
    interval: AtomicI64,
    tolerance: AtomicI64,
}

/// One of [`SHARDS`] parts of the table: keys hashed to it, and the keys with pending events.
#[derive(Default)]
struct Shard {
    cells: RwLock<HashMap<Box<str>, Arc<Cell>>>,
    dirty: Mutex<Vec<Arc<Cell>>>,
}

/// Parts of the table: requests for different keys meet on the same lock one time in 64, and
/// requests for one key take a shared (read) lock and one compare-and-swap.
const SHARDS: usize = 64;

/// How often an instance adds what it admitted to the shared TATs in Redis and learns theirs
/// (the `rate_limit_sync` job).
pub const SYNC_PERIOD: std::time::Duration = std::time::Duration::from_millis(5);

/// The most keys one synchronisation sends in one script call.
const SYNC_BATCH: usize = 1000;

/// The general rate limiter (GCRA, microseconds, on the injected clock).
///
/// **In process**: a table of [`SHARDS`] parts, each a read-write lock over its keys; a known
/// key's check takes the shared lock and moves the key's TAT with one compare-and-swap, so
/// 64 connections hammering one key never queue behind a mutex (a new key takes its part's write
/// lock once). At most [`MAX_KEYS`] keys are tracked; past that, keys whose TAT has passed are
/// dropped, and a new key is allowed untracked until some are.
///
/// **Shared through Redis** (several instances as one): a Redis round trip per request would
/// cost the token endpoint a large share of its throughput (see the report of issue 11), so the
/// decision stays local and instances reconcile in the background: every [`SYNC_PERIOD`] (5 ms)
/// an instance sends, in one script call for all its keys, how many events it admitted for each
/// key since the last time (and when the first was), and Redis moves the shared TAT by that many
/// intervals and answers it; the instance then takes the shared TAT (plus what it admitted
/// meanwhile) when it is ahead of its own. So the long-run rate of a key over all instances is
/// the limit (every admitted event moves the shared TAT by one interval), and the error is
/// bounded: an instance can admit at most what it admits in one period plus a round trip before
/// it hears of the others' events, so over all `N` instances a key can go over its limit by at
/// most `N x min(burst, its rate per instance x (5 ms + RTT))` events, once, and never by more
/// than one burst per instance. With Redis down, each instance keeps limiting on its own (each
/// instance then admits up to the whole limit) and says so once in the log; it reconciles again
/// when Redis answers.
pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    shards: Box<[Shard]>,
    shared: Option<Shared>,
    /// Whether the last synchronisation with Redis worked (true without Redis).
    shared_up: AtomicBool,
}

impl RateLimiter {
    /// In process only.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            shared: None,
            shared_up: AtomicBool::new(true),
        }
    }

    /// Shares the limits through Redis under `namespace` (one deployment).
    pub fn with_redis(mut self, conn: ConnectionManager, namespace: &str) -> Self {
        self.shared = Some(Shared {
            conn,
            prefix: format!("agentidp:rate:{namespace}:"),
        });
        self
    }

    fn shard(&self, key: &str) -> &Shard {
        use std::hash::BuildHasher;
        static HASH: LazyLock<std::collections::hash_map::RandomState> =
            LazyLock::new(std::collections::hash_map::RandomState::new);
        let i = usize::try_from(HASH.hash_one(key) % SHARDS as u64).unwrap_or(0);
        &self.shards[i]
    }

    /// Counts one event of `key` under `limit` if it is allowed; the answer says which.
    pub fn check(&self, key: &str, limit: Limit) -> Decision {
        let now = self.clock.now_us();
        self.with_cell(key, now, |shard, cell| {
            let (i, t) = (limit.interval(), limit.tolerance());
            let mut cur = cell.tat.load(Ordering::Acquire);
            loop {
                match admit(cur, now, i, t) {
                    Err(wait) => return Decision::limited(limit, cur, now, wait),
                    Ok(new) => match cell.tat.compare_exchange_weak(
                        cur,
                        new,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            self.note(shard, cell, limit, now);
                            return Decision::allowed(limit, new, now);
                        }
                        Err(actual) => cur = actual,
                    },
                }
            }
        })
    }

    /// Whether `key` is over `limit` now, without counting anything (memory only; a key never
    /// seen is not).
    pub fn peek(&self, key: &str, limit: Limit) -> Option<Decision> {
        let now = self.clock.now_us();
        let cells = self
            .shard(key)
            .cells
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let tat = cells.get(key)?.tat.load(Ordering::Acquire);
        admit(tat, now, limit.interval(), limit.tolerance())
            .err()
            .map(|wait| Decision::limited(limit, tat, now, wait))
    }

    /// Counts one event of `key` that happened whatever the limit said (a request let through
    /// by [`RateLimiter::peek`] and served): the TAT moves at most one window ahead.
    pub fn record(&self, key: &str, limit: Limit) -> Decision {
        let now = self.clock.now_us();
        self.with_cell(key, now, |shard, cell| {
            let (i, t) = (limit.interval(), limit.tolerance());
            let mut cur = cell.tat.load(Ordering::Acquire);
            loop {
                let new = advance(cur, now, 1, i, t, now);
                match cell
                    .tat
                    .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        self.note(shard, cell, limit, now);
                        return Decision::allowed(limit, new, now);
                    }
                    Err(actual) => cur = actual,
                }
            }
        })
    }

    /// Runs `f` on the cell of `key`, created when new (untracked past [`MAX_KEYS`]).
    fn with_cell(
        &self,
        key: &str,
        now: i64,
        f: impl Fn(&Shard, &Arc<Cell>) -> Decision,
    ) -> Decision {
        let shard = self.shard(key);
        {
            let cells = shard.cells.read().unwrap_or_else(|e| e.into_inner());
            if let Some(cell) = cells.get(key) {
                return f(shard, cell);
            }
        }
        let mut cells = shard.cells.write().unwrap_or_else(|e| e.into_inner());
        if !cells.contains_key(key) && cells.len() >= MAX_KEYS / SHARDS {
            cells.retain(|_, c| Self::live(c, now));
            if cells.len() >= MAX_KEYS / SHARDS {
                // Memory stays bounded: an untracked key is judged as a new one.
                return f(shard, &Arc::new(Cell::new(key, now)));
            }
        }
        let cell = cells
            .entry(key.into())
            .or_insert_with(|| Arc::new(Cell::new(key, now)));
        f(shard, cell)
    }

    fn live(c: &Cell, now: i64) -> bool {
        c.tat.load(Ordering::Relaxed) > now || c.pending.load(Ordering::Relaxed) > 0
    }

    /// With Redis: remembers the event for the next synchronisation.
    /// (Called under the shard's read lock; the dirty list's lock comes after it, always.)
    fn note(&self, shard: &Shard, cell: &Arc<Cell>, limit: Limit, now: i64) {
        if self.shared.is_none() {
            return;
        }
        cell.interval.store(limit.interval(), Ordering::Relaxed);
        cell.tolerance.store(limit.tolerance(), Ordering::Relaxed);
        if cell.pending.fetch_add(1, Ordering::AcqRel) == 0 {
            cell.first.store(now, Ordering::Relaxed);
            shard
                .dirty
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(cell.clone());
        }
    }

    /// Whether rate limits are shared: `None` without Redis, else whether the last
    /// synchronisation worked.
    pub fn shared_up(&self) -> Option<bool> {
        self.shared
            .as_ref()
            .map(|_| self.shared_up.load(Ordering::Relaxed))
    }

    /// With Redis: adds what this instance admitted since the last call to the shared TATs and
    /// learns them ([`SYNC_PERIOD`]; one script call per [`SYNC_BATCH`] keys). Without Redis,
    /// or with nothing admitted, nothing happens.
    pub async fn sync(&self) {
        let Some(shared) = &self.shared else { return };
        let mut cells = Vec::new();
        for shard in &*self.shards {
            cells.append(&mut shard.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        }
        if cells.is_empty() {
            return;
        }
        let now = self.clock.now_us();
        for batch in cells.chunks(SYNC_BATCH) {
            let items: Vec<SyncItem<'_>> = batch
                .iter()
                .map(|c| {
                    let n = c.pending.swap(0, Ordering::AcqRel);
                    (
                        &*c.key,
                        c.first.load(Ordering::Relaxed).min(now),
                        n,
                        c.interval.load(Ordering::Relaxed).max(1),
                        c.tolerance.load(Ordering::Relaxed),
                    )
                })
                .collect();
            match shared.sync(now, 1000, &items).await {
                Ok(tats) => {
                    for (c, tat) in batch.iter().zip(tats) {
                        // What this instance admitted since the swap is not in Redis yet.
                        let since = c.pending.load(Ordering::Acquire);
                        let interval = c.interval.load(Ordering::Relaxed);
                        c.tat.fetch_max(
                            tat.saturating_add(since.saturating_mul(interval)),
                            Ordering::AcqRel,
                        );
                    }
                    if !self.shared_up.swap(true, Ordering::Relaxed) {
                        tracing::info!("rate limits are shared through Redis again");
                    }
                }
                Err(e) => {
                    // Redis unavailable: every instance limits on its own until it is back
                    // (the events of this period are not sent again).
                    if self.shared_up.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "rate limits could not be shared through Redis; each instance limits on its own until it answers");
                    }
                    return;
                }
            }
        }
    }

    /// Drops keys that no longer limit anything (the purge job calls it).
    pub fn prune(&self) {
        let now = self.clock.now_us();
        for shard in &*self.shards {
            shard
                .cells
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, c| Self::live(c, now));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.cells.read().map(|c| c.len()).unwrap_or(0))
            .sum()
    }
}

impl Cell {
    fn new(key: &str, now: i64) -> Self {
        Self {
            key: key.into(),
            tat: AtomicI64::new(now),
            pending: AtomicI64::new(0),
            first: AtomicI64::new(now),
            interval: AtomicI64::new(1),
            tolerance: AtomicI64::new(0),
        }
    }
}

/// The limits in force (the defaults or the settings); `None` is off. A per-organization
/// override of the token limit (the organization's policy) replaces `token` at the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub token: Option<Limit>,
    pub admin: Option<Limit>,
    pub ip: Option<Limit>,
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

    fn limit(per_second: u32, burst: u32) -> Limit {
        Limit { per_second, burst }
    }

    fn allowed(d: Decision) -> (u32, u64) {
        match d {
            Decision::Allowed {
                remaining, reset, ..
            } => (remaining, reset),
            other => panic!("refused: {other:?}"),
        }
    }

    fn retry(d: Decision) -> u64 {
        match d {
            Decision::Limited { retry_after, .. } => retry_after.0,
            other => panic!("allowed: {other:?}"),
        }
    }

    /// 2 a second, 4 at once: the burst, then one per 500 ms; the answers count down and the
    /// headers say so.
    #[test]
    fn the_general_limit_is_gcra_on_the_injected_clock() {
        let c = clock();
        let l = RateLimiter::new(c.clone());
        let lim = limit(2, 4);
        let remaining: Vec<u32> = (0..4).map(|_| allowed(l.check("k", lim)).0).collect();
        assert_eq!(remaining, [3, 2, 1, 0]);
        let refused = l.check("k", lim);
        assert_eq!(retry(refused), 1);
        assert_eq!(refused.policy_field("token"), "token;q=4;w=2");
        assert_eq!(refused.limit_field("token"), "token;r=0;t=1");
        // Another key is not affected.
        assert_eq!(allowed(l.check("other", lim)).0, 3);
        // 499 ms later still refused; at 500 ms one more.
        c.0.fetch_add(499, Ordering::SeqCst);
        assert!(matches!(l.check("k", lim), Decision::Limited { .. }));
        c.0.fetch_add(1, Ordering::SeqCst);
        let (r, reset) = allowed(l.check("k", lim));
        assert_eq!((r, reset), (0, 2));
        assert!(matches!(l.check("k", lim), Decision::Limited { .. }));
        // Quiet for the window: the whole burst again, and a fresh key's header.
        c.0.fetch_add(2_000, Ordering::SeqCst);
        let d = l.check("k", lim);
        assert_eq!(allowed(d), (3, 1));
        assert_eq!(d.limit_field("token"), "token;r=3;t=1");
        // Pruning forgets keys whose TAT passed.
        c.0.fetch_add(10_000, Ordering::SeqCst);
        l.prune();
        assert_eq!(l.len(), 0);
    }

    /// High rates (the benchmark's 45,000 a second from one client) are spaced in
    /// microseconds, not rounded to whole milliseconds.
    #[test]
    fn high_rates_keep_their_precision() {
        let c = clock();
        let l = RateLimiter::new(c.clone());
        let lim = limit(100_000, 100);
        for _ in 0..100 {
            allowed(l.check("k", lim));
        }
        assert!(matches!(l.check("k", lim), Decision::Limited { .. }));
        // One millisecond brings 100 events back (10 µs apart).
        c.0.fetch_add(1, Ordering::SeqCst);
        for _ in 0..100 {
            allowed(l.check("k", lim));
        }
        assert!(matches!(l.check("k", lim), Decision::Limited { .. }));
    }

    /// `peek` counts nothing; `record` counts what was served whatever the limit said, at most
    /// a window ahead.
    #[test]
    fn peek_and_record() {
        let c = clock();
        let l = RateLimiter::new(c.clone());
        let lim = limit(1, 2);
        assert_eq!(l.peek("k", lim), None);
        assert_eq!(l.len(), 0, "peek tracks nothing");
        allowed(l.record("k", lim));
        allowed(l.record("k", lim));
        assert_eq!(retry(l.peek("k", lim).unwrap()), 1);
        // Served anyway (a race past the peek): counted, capped at one window.
        for _ in 0..10 {
            l.record("k", lim);
        }
        c.0.fetch_add(1_000, Ordering::SeqCst);
        assert_eq!(l.peek("k", lim), None, "the window is the most it owes");
    }

    /// Many threads on one key with the clock standing still: exactly the burst is allowed.
    #[test]
    fn one_key_under_concurrency_admits_exactly_the_burst() {
        let l = Arc::new(RateLimiter::new(clock()));
        let lim = limit(1, 1_000);
        let ok = Arc::new(AtomicI64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (l, ok) = (l.clone(), ok.clone());
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        if matches!(l.check("hot", lim), Decision::Allowed { .. }) {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(ok.load(Ordering::SeqCst), 1_000);
    }

    #[test]
    fn limits_parse_as_per_second_and_burst() {
        assert_eq!(Limit::parse("0"), Ok(None));
        assert_eq!(Limit::parse("0:0"), Ok(None));
        assert_eq!(Limit::parse("100"), Ok(Some(limit(100, 100))));
        assert_eq!(Limit::parse(" 100:5 "), Ok(Some(limit(100, 5))));
        for bad in ["", "abc", "-1", "10:0", "0:5", "1.5", "10:x", "10:20:30"] {
            let e = Limit::parse(bad).unwrap_err();
            assert!(e.contains("PER_SECOND[:BURST]"), "{bad}: {e}");
        }
        // The policy window: the seconds a spent burst takes to come back.
        assert_eq!(limit(1000, 2000).window_secs(), 2);
        assert_eq!(limit(1000, 10).window_secs(), 1);
        assert_eq!(limit(3, 10).window_secs(), 4);
    }

    async fn test_redis() -> Option<ConnectionManager> {
        let url = std::env::var("AGENTIDP_TEST_REDIS_URL").ok()?;
        let client = redis::Client::open(url).unwrap();
        Some(client.get_connection_manager().await.unwrap())
    }

    /// Through Redis: two instances (two limiters on one namespace) share one limit within a
    /// synchronisation: the second learns what the first admitted and refuses.
    #[tokio::test]
    async fn instances_share_a_limit_through_redis() {
        let Some(conn) = test_redis().await else {
            return;
        };
        let ns = uuid::Uuid::new_v4().simple().to_string();
        let c = clock();
        let a = RateLimiter::new(c.clone()).with_redis(conn.clone(), &ns);
        let b = RateLimiter::new(c.clone()).with_redis(conn, &ns);
        let lim = limit(10, 10);
        for _ in 0..10 {
            allowed(a.check("k", lim));
        }
        assert!(matches!(a.check("k", lim), Decision::Limited { .. }));
        a.sync().await;
        assert_eq!(a.shared_up(), Some(true));
        // B has not heard yet: one event, then the synchronisation tells it.
        allowed(b.check("k", lim));
        b.sync().await;
        assert_eq!(retry(b.check("k", lim)), 1);
        // After the window both start over.
        c.0.fetch_add(1_100, Ordering::SeqCst);
        allowed(a.check("k", lim));
        allowed(b.check("k", lim));
    }

    /// The failure brake's events go through the same script: another instance learns them.
    #[tokio::test]
    async fn the_failure_brake_is_shared_through_redis() {
        let Some(conn) = test_redis().await else {
            return;
        };
        let ns = uuid::Uuid::new_v4().simple().to_string();
        let c = clock();
        let a = FailureLimiter::new(c.clone(), 3).with_redis(conn.clone(), &ns);
        let b = FailureLimiter::new(c.clone(), 3).with_redis(conn, &ns);
        let ip = [Subject::Ip("192.0.2.1".parse().unwrap())];
        for _ in 0..3 {
            a.failed(&ip).await;
        }
        assert_eq!(a.refused(&ip), Some(RetryAfter(20)));
        // B lets one through, fails it, and learns the shared TAT.
        assert_eq!(b.refused(&ip), None);
        b.failed(&ip).await;
        assert!(b.refused(&ip).is_some());
    }

    /// The Rust and the Lua arithmetic agree (the script is `advance`).
    #[test]
    fn advance_is_capped_at_one_window() {
        assert_eq!(advance(0, 100, 3, 10, 20, 100), 130);
        assert_eq!(
            advance(200, 100, 3, 10, 20, 100),
            130,
            "capped at now + window"
        );
        assert_eq!(advance(50, 40, 1, 10, 20, 100), 60);
        assert_eq!(admit(95, 100, 10, 20), Ok(110));
        assert_eq!(admit(125, 100, 10, 20), Err(5));
    }
}
