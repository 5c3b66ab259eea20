//! Hardened outbound HTTP for keys and documents published by others: agents' `jwks_uri`,
//! partners' discovery metadata and JWK Sets, and foreign did:web documents.
//!
//! SSRF guard: host names are resolved by our own resolver, which refuses private, loopback,
//! link-local, multicast and mapped addresses, and the connection goes to the address that was
//! checked (no second resolution). IP-literal URLs are checked before the request and on every
//! redirect. Only HTTPS, except plain HTTP to loopback when `AGENTIDP_ALLOW_INSECURE_LOOPBACK`
//! is set. Bodies are capped while streaming, whatever `Content-Length` says.
//!
//! Proxies: the `HTTP(S)_PROXY` environment variables are ignored (reqwest would otherwise honour
//! them, and a proxy resolves the target itself, past the guard). Only an explicit
//! `AGENTIDP_OUTBOUND_PROXY` is used, and then every target (and every redirect) is resolved and
//! checked here before the proxy is asked to connect to it.
//!
//! Budget: at most [`MAX_IN_FLIGHT`] fetches run at once across the process (each holds up to
//! `max_bytes` of body), so a flood of foreign URLs cannot grow memory with the request rate.
//! A failed fetch is logged (host and cause, never the path or query) at WARN.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Semaphore;
use url::Url;

/// Fetches in flight at once, process-wide; others wait (within their time limit).
pub const MAX_IN_FLIGHT: usize = 32;
/// Redirects followed at most.
const MAX_REDIRECTS: usize = 3;

/// The resolver's refusal: every address of the name is one we must not connect to. Found again
/// in reqwest's error chain, so the caller sees [`FetchError::Forbidden`], not a transport error.
#[derive(Debug)]
struct NoPublicAddress(String);

impl std::fmt::Display for NoPublicAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves to no public address", self.0)
    }
}

impl std::error::Error for NoPublicAddress {}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    #[error("URL not allowed: {0}")]
    Forbidden(String),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("timed out")]
    Timeout,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("response is not valid JSON")]
    NotJson,
    #[error(
        "JSON response too complex (more than {MAX_JSON_VALUES} values or {MAX_JSON_DEPTH} levels)"
    )]
    TooComplex,
}

/// Most values (of any kind, containers included) a fetched JSON document may have. Key sets and
/// DID documents have a few hundred; 240 KB of `[0,0,0,...]` has 120,000, and as a parsed
/// `serde_json::Value` costs about 16 times its size.
pub const MAX_JSON_VALUES: usize = 10_000;
/// Deepest nesting a fetched JSON document may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// Checks a JSON text's complexity before it is parsed, in one pass without allocating:
/// counts values (commas plus containers plus one, an upper bound) and the nesting depth,
/// outside strings. Malformed text is left for the parser to refuse.
pub fn check_json_complexity(bytes: &[u8]) -> Result<(), FetchError> {
    let (mut values, mut depth) = (1usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                values += 1;
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(FetchError::TooComplex);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
        if values > MAX_JSON_VALUES {
            return Err(FetchError::TooComplex);
        }
    }
    Ok(())
}

/// What the fetcher may reach.
#[derive(Debug, Clone, Copy)]
pub struct FetchPolicy {
    pub allow_insecure_loopback: bool,
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl FetchPolicy {
    pub fn new(allow_insecure_loopback: bool) -> Self {
        Self {
            allow_insecure_loopback,
            max_bytes: 256 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Is this address one we must never connect to?
pub fn ip_forbidden(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4, allow_loopback),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_forbidden(v4, allow_loopback);
            }
            let seg = v6.segments();
            // NAT64 well-known prefix 64:ff9b::/96 embeds an IPv4 address.
            if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                let v4 = Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                );
                return v4_forbidden(v4, allow_loopback);
            }
            if v6.is_loopback() {
                return !allow_loopback;
            }
            v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d
        }
    }
}

fn v4_forbidden(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return !allow_loopback;
    }
    let o = ip.octets();
    ip.is_private()
        || ip.is_link_local() // 169.254/16, cloud metadata
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240 // reserved
}

/// Checks scheme and literal-IP hosts of a URL we are about to request.
pub fn check_url(url: &Url, policy: &FetchPolicy) -> Result<(), FetchError> {
    let host = url
        .host()
        .ok_or_else(|| FetchError::Forbidden("no host".into()))?;
    let literal: Option<IpAddr> = match host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    };
    if let Some(ip) = literal
        && ip_forbidden(ip, policy.allow_insecure_loopback)
    {
        return Err(FetchError::Forbidden(format!("address {ip} is not public")));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if policy.allow_insecure_loopback => {
            let loopback = match host {
                url::Host::Domain(d) => d == "localhost" || d.ends_with(".localhost"),
                _ => literal.is_some_and(|ip| ip.is_loopback() || is_mapped_loopback(ip)),
            };
            if loopback {
                Ok(())
            } else {
                Err(FetchError::Forbidden(
                    "plain HTTP is only allowed to loopback".into(),
                ))
            }
        }
        _ => Err(FetchError::Forbidden("only https URLs are fetched".into())),
    }
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

/// The addresses of `host` we may connect to; an error when there is none.
async fn guarded_lookup(
    host: &str,
    allow_loopback: bool,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| !ip_forbidden(a.ip(), allow_loopback))
        .collect();
    if allowed.is_empty() {
        return Err(Box::new(NoPublicAddress(host.to_owned())));
    }
    Ok(allowed)
}

/// The resolver that enforces the address policy; reqwest connects only to what it returns.
/// The configured proxy's own name (operator-chosen, typically private) is exempt.
struct GuardedResolver {
    allow_loopback: bool,
    proxy_host: Option<String>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        let is_proxy = self
            .proxy_host
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(&host));
        Box::pin(async move {
            let allowed = if is_proxy {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            } else {
                guarded_lookup(&host, allow_loopback).await?
            };
            let it: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(it)
        })
    }
}

/// Was the request refused by our resolver (rather than failing on the network)?
fn refused_by_guard(e: &reqwest::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(n) = err.downcast_ref::<NoPublicAddress>() {
            return Some(n.to_string());
        }
        cur = err.source();
    }
    None
}

/// The host of a URL for logs (never its path or query, which may carry tokens).
fn log_host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

/// The shared outbound client.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: FetchPolicy,
    /// Set when an explicit outbound proxy is configured: targets are then resolved and checked
    /// here before the request, since the proxy (not our resolver) connects to them.
    proxied: bool,
    in_flight: Arc<Semaphore>,
}

/// A successful fetch: the body and the `Cache-Control: max-age`, if any.
pub struct Fetched {
    pub body: Vec<u8>,
    pub max_age: Option<u64>,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        Self::with_roots(policy, &[])
    }

    /// A fetcher that also trusts the CA certificates in `extra_roots_pem` (PEM bundles).
    pub fn with_roots(policy: FetchPolicy, extra_roots_pem: &[u8]) -> Result<Self, FetchError> {
        Self::with_options(policy, extra_roots_pem, None)
    }

    /// The full constructor: extra CA roots and an optional explicit outbound proxy
    /// (`AGENTIDP_OUTBOUND_PROXY`, an `http://` or `https://` URL). Without one, no proxy is used
    /// whatever the environment says.
    pub fn with_options(
        policy: FetchPolicy,
        extra_roots_pem: &[u8],
        proxy: Option<&str>,
    ) -> Result<Self, FetchError> {
        let mut builder = reqwest::Client::builder();
        if !extra_roots_pem.is_empty() {
            for cert in reqwest::Certificate::from_pem_bundle(extra_roots_pem)
                .map_err(|e| FetchError::Transport(e.to_string()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let mut proxy_host = None;
        builder = match proxy {
            None => builder.no_proxy(),
            Some(p) => {
                let u = Url::parse(p)
                    .map_err(|_| FetchError::Transport("the outbound proxy is not a URL".into()))?;
                if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                    return Err(FetchError::Transport(
                        "the outbound proxy must be an http:// or https:// URL".into(),
                    ));
                }
                proxy_host = u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned());
                builder.proxy(
                    reqwest::Proxy::all(u.as_str())
                        .map_err(|e| FetchError::Transport(e.to_string()))?,
                )
            }
        };
        let client = builder
            .dns_resolver(Arc::new(GuardedResolver {
                allow_loopback: policy.allow_insecure_loopback,
                proxy_host,
            }))
            // Redirects are followed by `get`, which checks each target like the first.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(policy.timeout)
            .user_agent(concat!("agentidp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            policy,
            proxied: proxy.is_some(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// The same client (address policy, roots, proxy, in-flight budget) with tighter limits:
    /// at most `max_bytes` of body and `timeout` per fetch (each no looser than this one's).
    pub fn limited(&self, max_bytes: usize, timeout: Duration) -> Fetcher {
        let mut f = self.clone();
        f.policy.max_bytes = max_bytes.min(self.policy.max_bytes);
        f.policy.timeout = timeout.min(self.policy.timeout);
        f
    }

    /// GET `url` with `Accept: accept`, enforcing the address policy, the time limit and the size cap.
    /// A failure is logged with the host and the cause.
    pub async fn get(&self, url: &str, accept: &str) -> Result<Fetched, FetchError> {
        let parsed = Url::parse(url).map_err(|_| FetchError::Forbidden("not a URL".into()))?;
        let host = log_host(&parsed);
        let r = tokio::time::timeout(self.policy.timeout, self.get_within(parsed, accept))
            .await
            .map_err(|_| FetchError::Timeout)
            .and_then(|r| r);
        if let Err(e) = &r {
            tracing::warn!(host = %host, error = %e, "outbound fetch failed");
        }
        r
    }

    /// Checks a target before anything is sent: scheme and literal address always; with a proxy,
    /// also the addresses the name resolves to (the proxy, not our resolver, will connect).
    async fn check_target(&self, url: &Url) -> Result<(), FetchError> {
        check_url(url, &self.policy)?;
        if self.proxied
            && let Some(url::Host::Domain(d)) = url.host()
        {
            guarded_lookup(d, self.policy.allow_insecure_loopback)
                .await
                .map_err(|e| FetchError::Forbidden(e.to_string()))?;
        }
        Ok(())
    }

    async fn get_within(&self, mut url: Url, accept: &str) -> Result<Fetched, FetchError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| FetchError::Transport("fetcher closed".into()))?;
        let mut redirects = 0;
        let resp = loop {
            self.check_target(&url).await?;
            let resp = self
                .client
                .get(url.clone())
                .header(reqwest::header::ACCEPT, accept)
                .send()
                .await
                .map_err(|e| {
                    if let Some(why) = refused_by_guard(&e) {
                        FetchError::Forbidden(why)
                    } else if e.is_timeout() {
                        FetchError::Timeout
                    } else {
                        // Without the URL: its path or query may carry something secret.
                        FetchError::Transport(e.without_url().to_string())
                    }
                })?;
            if !resp.status().is_redirection() {
                break resp;
            }
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok());
            match next {
                Some(n) if redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    url = n;
                }
                Some(_) => return Err(FetchError::Transport("too many redirects".into())),
                None => return Err(FetchError::Status(resp.status().as_u16())),
            }
        };
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| FetchError::Transport(e.without_url().to_string()))?;
            if body.len() + chunk.len() > self.policy.max_bytes {
                return Err(FetchError::TooLarge(self.policy.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, max_age })
    }

    /// GET and parse JSON.
    pub async fn get_json(
        &self,
        url: &str,
    ) -> Result<(serde_json::Value, Option<u64>), FetchError> {
        let f = self.get(url, "application/json").await?;
        check_json_complexity(&f.body)?;
        let v = serde_json::from_slice(&f.body).map_err(|_| FetchError::NotJson)?;
        Ok((v, f.max_age))
    }
}

/// `max-age` from a Cache-Control value; `no-store`/`no-cache` count as zero.
pub fn parse_max_age(cc: &str) -> Option<u64> {
    let mut max_age = None;
    for d in cc.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse().ok();
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(loopback: bool) -> FetchPolicy {
        FetchPolicy::new(loopback)
    }

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00::1",
            "64:ff9b::a9fe:a9fe",
            "::",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            assert!(
                ip_forbidden(ip.parse().unwrap(), false),
                "{ip} should be forbidden"
            );
        }
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
        ] {
            assert!(
                !ip_forbidden(ip.parse().unwrap(), false),
                "{ip} should be allowed"
            );
        }
        assert!(!ip_forbidden("127.0.0.1".parse().unwrap(), true));
        assert!(!ip_forbidden("::ffff:127.0.0.1".parse().unwrap(), true));
        assert!(ip_forbidden("10.0.0.1".parse().unwrap(), true));
    }

    #[test]
    fn url_checks() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(check_url(&u("https://example.com/jwks"), &p(false)).is_ok());
        assert!(check_url(&u("http://example.com/jwks"), &p(false)).is_err());
        assert!(check_url(&u("http://example.com/jwks"), &p(true)).is_err());
        assert!(check_url(&u("http://127.0.0.1:9/jwks"), &p(false)).is_err());
        assert!(check_url(&u("http://127.0.0.1:9/jwks"), &p(true)).is_ok());
        assert!(check_url(&u("http://[::ffff:127.0.0.1]/"), &p(false)).is_err());
        assert!(check_url(&u("https://169.254.169.254/latest"), &p(true)).is_err());
        assert!(check_url(&u("file:///etc/passwd"), &p(true)).is_err());
    }

    #[test]
    fn json_complexity_is_capped() {
        assert!(check_json_complexity(br#"{"keys":[{"kty":"EC","x":"a,b[{"}]}"#).is_ok());
        let many = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES));
        assert_eq!(
            check_json_complexity(many.as_bytes()),
            Err(FetchError::TooComplex)
        );
        let few = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES - 10));
        assert!(check_json_complexity(few.as_bytes()).is_ok());
        // Commas and brackets inside strings (escaped quotes too) do not count.
        let s = format!(r#"["{}\"{}"]"#, ",".repeat(50_000), "[".repeat(100));
        assert!(check_json_complexity(s.as_bytes()).is_ok());
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH + 1),
            "]".repeat(MAX_JSON_DEPTH + 1)
        );
        assert_eq!(
            check_json_complexity(deep.as_bytes()),
            Err(FetchError::TooComplex)
        );
    }

    #[test]
    fn cache_control() {
        assert_eq!(parse_max_age("public, max-age=300"), Some(300));
        assert_eq!(parse_max_age("no-store"), Some(0));
        assert_eq!(parse_max_age("public"), None);
    }

    /// A failed fetch is logged at WARN with the host and the cause, never the path or query
    /// (where a token might be). Before, a failed partner or DID fetch logged nothing.
    #[tokio::test]
    async fn failed_fetches_are_logged_without_path_or_query() {
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let guarded = Fetcher::new(p(false)).unwrap();
        let open = Fetcher::new(p(true)).unwrap();
        assert!(
            guarded
                .get("https://localhost:1/secret-path?token=abc", "*/*")
                .await
                .is_err()
        );
        assert!(
            open.get("https://127.0.0.1:1/hidden/jwks?code=xyz", "*/*")
                .await
                .is_err()
        );
        let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("outbound fetch failed"))
            .collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(lines.iter().all(|l| l.contains("WARN")), "{log}");
        assert!(
            lines[0].contains("host=localhost:1") && lines[0].contains("no public address"),
            "{log}"
        );
        assert!(lines[1].contains("host=127.0.0.1:1"), "{log}");
        for secret in ["secret-path", "abc", "hidden", "xyz"] {
            assert!(!log.contains(secret), "{secret} logged: {log}");
        }
    }

    #[tokio::test]
    async fn refuses_private_targets_without_connecting() {
        let f = Fetcher::new(p(false)).unwrap();
        assert!(matches!(
            f.get("http://127.0.0.1:1/x", "*/*").await,
            Err(FetchError::Forbidden(_))
        ));
        assert!(matches!(
            f.get("https://10.0.0.1/x", "*/*").await,
            Err(FetchError::Forbidden(_))
        ));
        // A name resolving to loopback is refused by the resolver, and said so.
        assert!(matches!(
            f.get("https://localhost:1/x", "*/*").await,
            Err(FetchError::Forbidden(_))
        ));
    }
}
