//! Command line and environment. Every setting of INTERFACE.md is both an `AGENTIDP_*`
//! variable and a flag; nothing is required to start the embedded default.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::Secret;

#[derive(Debug, Parser)]
#[command(
    name = "agentidp",
    version,
    about = "An identity provider for software agents"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (migrates the database first).
    Serve(Settings),
    /// Apply pending migrations and exit.
    Migrate(Settings),
    /// Signing-key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Platform admin tokens besides the bootstrap token.
    #[command(name = "admin-token")]
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminTokenCommand {
    /// Create a platform admin token (printed once).
    Create {
        /// What it is for (shown by `list`).
        #[arg(long, default_value = "admin token")]
        name: String,
        #[command(flatten)]
        settings: Settings,
    },
    /// List the platform admin tokens (never their secrets).
    List {
        #[command(flatten)]
        settings: Settings,
    },
    /// Revoke a platform admin token by id, or `bootstrap` to retire the bootstrap token.
    Revoke {
        /// The token's id (from `list`), or `bootstrap`.
        id: String,
        #[command(flatten)]
        settings: Settings,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create new signing keys (all organizations, or one). Old keys stay published until every
    /// token they signed has expired.
    Rotate {
        /// Only this organization (slug).
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },
}

impl Cli {
    /// Parses the command line and the environment, exiting with clap's message on an error; an
    /// invalid value taken from an `AGENTIDP_*` variable names that variable, not only the flag
    /// (the operator never typed `--access-token-ttl-secs`).
    pub fn parse_with_env_names() -> Self {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        match Self::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(e) => name_env_source(e, &args, |var| std::env::var_os(var).is_some()).exit(),
        }
    }
}

/// When `err` is about an argument whose value came from its environment variable (the variable
/// is set and the flag is not on the command line), names the variable as the invalid argument
/// and says which flag it stands for.
pub fn name_env_source(
    mut err: clap::Error,
    args: &[std::ffi::OsString],
    is_set: impl Fn(&str) -> bool,
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(invalid)) = err.get(ContextKind::InvalidArg) else {
        return err;
    };
    // `--access-token-ttl-secs <ACCESS_TOKEN_TTL_SECS>` -> `access-token-ttl-secs`
    let Some(long) = invalid
        .split_whitespace()
        .next()
        .and_then(|f| f.strip_prefix("--"))
        .map(str::to_owned)
    else {
        return err;
    };
    let flag = format!("--{long}");
    let on_command_line = args.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
    });
    if on_command_line {
        return err;
    }
    let mut stack = vec![<Cli as clap::CommandFactory>::command()];
    let mut env = None;
    while let Some(cmd) = stack.pop() {
        if let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
        {
            env = arg.get_env().and_then(|e| e.to_str()).map(str::to_owned);
            break;
        }
        stack.extend(cmd.get_subcommands().cloned());
    }
    let Some(var) = env.filter(|v| is_set(v)) else {
        return err;
    };
    err.insert(ContextKind::InvalidArg, ContextValue::String(var.clone()));
    err.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![
            format!(
                "the value comes from the environment variable {var} (the flag {flag} overrides it)"
            )
            .into(),
        ]),
    );
    err
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

/// All settings; shared by every subcommand so `migrate` and `keys rotate` see the same database.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Listen address; the bound address is logged as `listening on ADDR`.
    #[arg(long, env = "AGENTIDP_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The base URL clients use; issuers and did:web identifiers derive from it.
    /// Default: `http://localhost:` + the bound port.
    #[arg(long, env = "AGENTIDP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Accept a public URL different from the one recorded at first start, and move every
    /// organization's issuer and DID to it.
    #[arg(long, env = "AGENTIDP_MOVE_PUBLIC_URL", value_parser = parse_bool, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub move_public_url: bool,
    /// Where the embedded default keeps its SQLite file and generated master key.
    #[arg(long, env = "AGENTIDP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `sqlite:` or `postgres:` URL. Default: `sqlite://$AGENTIDP_DATA_DIR/agentidp.db`.
    #[arg(long, env = "AGENTIDP_DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Redis URL: replay caches and cache invalidation are shared through it.
    #[arg(long, env = "AGENTIDP_REDIS_URL", value_parser = parse_secret, hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// Base64 of 32 bytes; encrypts private keys and secrets at rest.
    #[arg(long, env = "AGENTIDP_MASTER_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub master_key: Option<Secret>,
    /// Platform-admin bearer token for the admin API; only its digest is stored.
    #[arg(long, env = "AGENTIDP_BOOTSTRAP_TOKEN", value_parser = parse_secret, hide_env_values = true)]
    pub bootstrap_token: Option<Secret>,
    /// PEM certificate chain; with `--tls-key` the server speaks HTTPS.
    #[arg(long, env = "AGENTIDP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "AGENTIDP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// `text` or `json` (JSON lines on stderr). `RUST_LOG` filters.
    #[arg(long, env = "AGENTIDP_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Default access-token lifetime in seconds (per agent it may be lower).
    #[arg(long, env = "AGENTIDP_ACCESS_TOKEN_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub access_token_ttl_secs: i64,
    /// How long a new signing key is published before it signs.
    /// Default: the JWKS `max-age` plus a minute.
    #[arg(long, env = "AGENTIDP_KEY_ACTIVATION_DELAY_SECS", value_parser = clap::value_parser!(i64).range(0..=30 * 86_400))]
    pub key_activation_delay_secs: Option<i64>,
    /// Extra PEM CA certificates trusted for outbound HTTPS (private PKI, tests), besides the
    /// platform's roots.
    #[arg(long, env = "AGENTIDP_OUTBOUND_CA_FILE")]
    pub outbound_ca_file: Option<PathBuf>,
    /// Let outbound fetches use plain HTTP to loopback addresses (development and tests only).
    #[arg(long, env = "AGENTIDP_ALLOW_INSECURE_LOOPBACK", value_parser = parse_bool, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub allow_insecure_loopback: bool,
    /// Failed authentications (client, admin) one client IP may make per minute before it is
    /// answered 429 with `Retry-After`; 0 turns this per-IP limit off (the per-client limit
    /// stays on).
    #[arg(long, env = "AGENTIDP_AUTH_FAILURE_LIMIT", default_value_t = DEFAULT_AUTH_FAILURE_LIMIT)]
    pub auth_failure_limit: u32,
    /// Requests one client (one `client_id` of one organization) may make to the token endpoint,
    /// `PER_SECOND[:BURST]` (burst default: one second's worth); `0` turns the limit off. Over
    /// it: 429 with `Retry-After`, the RateLimit headers and `{"error": "slow_down"}`.
    #[arg(long, env = "AGENTIDP_TOKEN_RATE_LIMIT", default_value = DEFAULT_TOKEN_RATE_LIMIT, value_parser = parse_rate_limit)]
    pub token_rate_limit: RateLimitSetting,
    /// Requests one admin principal may make to the admin API, `PER_SECOND[:BURST]`; `0` off.
    #[arg(long, env = "AGENTIDP_ADMIN_RATE_LIMIT", default_value = DEFAULT_ADMIN_RATE_LIMIT, value_parser = parse_rate_limit)]
    pub admin_rate_limit: RateLimitSetting,
    /// Requests one client IP may make to the unauthenticated public endpoints (discovery, JWKS,
    /// DID documents, resolution, cards, `/agent-info`), `PER_SECOND[:BURST]`; `0` (the default)
    /// off.
    #[arg(long, env = "AGENTIDP_IP_RATE_LIMIT", default_value = DEFAULT_IP_RATE_LIMIT, value_parser = parse_rate_limit)]
    pub ip_rate_limit: RateLimitSetting,
    /// Comma-separated CIDRs (or addresses) of reverse proxies whose `Forwarded` /
    /// `X-Forwarded-For` name the client address; from anyone else those headers are ignored.
    #[arg(long, env = "AGENTIDP_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// An HTTP(S) proxy for every outbound fetch (`http://host:port`). `HTTP_PROXY` and
    /// `HTTPS_PROXY` are ignored; with this set, each target is checked by the SSRF guard before
    /// the proxy is asked to connect to it.
    #[arg(long, env = "AGENTIDP_OUTBOUND_PROXY", value_parser = parse_secret, hide_env_values = true)]
    pub outbound_proxy: Option<Secret>,
    /// Seconds a client gets to send a request's headers: from the connection's start (TLS
    /// handshake included) for its first request, from the request's first byte for later ones.
    #[arg(long, env = "AGENTIDP_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight (HTTP/1.1 keep-alive and
    /// HTTP/2) before the server closes it.
    #[arg(long, env = "AGENTIDP_IDLE_TIMEOUT_SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: u64,
    /// Most client connections open at once on the main listener; more wait in the kernel's
    /// accept queue. Keep it well below the process's file-descriptor limit (`ulimit -n`).
    #[arg(long, env = "AGENTIDP_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Seconds a request may take from its headers to its response before it is answered 503.
    #[arg(long, env = "AGENTIDP_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,
    /// A separate listen address for `GET /metrics`; when set, the main listener does not serve
    /// `/metrics` at all.
    #[arg(long, env = "AGENTIDP_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// SMTP server for invites, email verification and password reset, as lettre reads it:
    /// `smtp://host:port` (plain, development), `smtp://host?tls=required` (STARTTLS),
    /// `smtps://user:pass@host` (implicit TLS). Unset: links are handed to the admin who
    /// asked, once, and never logged. Needs `AGENTIDP_MAIL_FROM`.
    #[arg(long, env = "AGENTIDP_SMTP_URL", value_parser = parse_secret, hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// The `From` of every mail: `idp@example.com` or `Example IdP <idp@example.com>`.
    #[arg(long, env = "AGENTIDP_MAIL_FROM")]
    pub mail_from: Option<String>,
}

/// A rate limit setting, `PER_SECOND[:BURST]`; `None` is off (`0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSetting(pub Option<crate::limiter::Limit>);

fn parse_rate_limit(s: &str) -> Result<RateLimitSetting, String> {
    crate::limiter::Limit::parse(s).map(RateLimitSetting)
}

/// Default of `AGENTIDP_TOKEN_RATE_LIMIT`: 100,000 requests a second per client, as many at once.
/// Above what one instance serves (the benchmark's single client makes about 45,000 a second
/// on 2 cores), so the default only stops a runaway client on a large machine or across many
/// instances; set a lower one (or one per organization) to keep clients from starving each other.
pub const DEFAULT_TOKEN_RATE_LIMIT: &str = "100000";

/// Default of `AGENTIDP_ADMIN_RATE_LIMIT`: 1,000 requests a second per admin principal, 2,000 at
/// once (scripts and tests run hundreds of calls in a row; a runaway loop is stopped).
pub const DEFAULT_ADMIN_RATE_LIMIT: &str = "1000:2000";

/// Default of `AGENTIDP_IP_RATE_LIMIT`: off. The public documents are cached and cheap; turn it
/// on (e.g. `1000:2000`) where one address should not take a large share of the server.
pub const DEFAULT_IP_RATE_LIMIT: &str = "0";

impl Settings {
    /// The rate limits in force.
    pub fn rate_limits(&self) -> crate::limiter::Limits {
        crate::limiter::Limits {
            token: self.token_rate_limit.0,
            admin: self.admin_rate_limit.0,
            ip: self.ip_rate_limit.0,
        }
    }
}

/// A CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address.
fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("expected a CIDR such as 10.0.0.0/8 or an address, got {s:?}"))
}

/// The default of `AGENTIDP_AUTH_FAILURE_LIMIT`: failed authentications one client IP may make
/// per minute (a burst of that many, then one per `60 / limit` seconds).
pub const DEFAULT_AUTH_FAILURE_LIMIT: u32 = 60;

fn default_rate_limit(s: &str) -> RateLimitSetting {
    // The defaults are literals that parse (a test says so).
    RateLimitSetting(crate::limiter::Limit::parse(s).ok().flatten())
}

/// The shortest bootstrap token an operator may choose: 32 characters (a generated one has 43).
pub const MIN_OPERATOR_TOKEN_LEN: usize = 32;

/// `Cache-Control: max-age` of JWKS responses, in seconds.
pub const JWKS_MAX_AGE_SECS: i64 = 300;

impl Settings {
    /// Settings with every default, as if no variable and no flag were given.
    pub fn defaults() -> Self {
        Self {
            bind: "127.0.0.1:8080".parse().expect("literal address"),
            public_url: None,
            move_public_url: false,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            redis_url: None,
            master_key: None,
            bootstrap_token: None,
            tls_cert: None,
            tls_key: None,
            log_format: "text".into(),
            access_token_ttl_secs: 900,
            key_activation_delay_secs: None,
            outbound_ca_file: None,
            allow_insecure_loopback: false,
            auth_failure_limit: DEFAULT_AUTH_FAILURE_LIMIT,
            token_rate_limit: default_rate_limit(DEFAULT_TOKEN_RATE_LIMIT),
            admin_rate_limit: default_rate_limit(DEFAULT_ADMIN_RATE_LIMIT),
            ip_rate_limit: default_rate_limit(DEFAULT_IP_RATE_LIMIT),
            trusted_proxies: Vec::new(),
            outbound_proxy: None,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 75,
            max_connections: 512,
            request_timeout_secs: 30,
            metrics_bind: None,
            smtp_url: None,
            mail_from: None,
        }
    }

    /// Refuses settings that would make a guessable credential: an `AGENTIDP_BOOTSTRAP_TOKEN`
    /// shorter than [`MIN_OPERATOR_TOKEN_LEN`]. Checked before anything is opened or written.
    pub fn check_operator_tokens(&self) -> Result<(), String> {
        match &self.bootstrap_token {
            Some(t) if t.expose().chars().count() < MIN_OPERATOR_TOKEN_LEN => Err(format!(
                "AGENTIDP_BOOTSTRAP_TOKEN is {} characters long; it must have at least \
                 {MIN_OPERATOR_TOKEN_LEN} (for example the output of `openssl rand -base64 32`), \
                 or leave it unset and the server generates one on first start",
                t.expose().chars().count()
            )),
            _ => Ok(()),
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.expose().to_owned(),
            None => format!("sqlite://{}/agentidp.db", self.data_dir.display()),
        }
    }

    pub fn is_postgres(&self) -> bool {
        let u = self.database_url();
        u.starts_with("postgres:") || u.starts_with("postgresql:")
    }

    pub fn key_activation_delay(&self) -> i64 {
        self.key_activation_delay_secs
            .unwrap_or(JWKS_MAX_AGE_SECS + 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_a_flag() {
        let cli = Cli::try_parse_from([
            "agentidp",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--public-url",
            "https://idp.example.com",
            "--data-dir",
            "/tmp/x",
            "--database-url",
            "sqlite::memory:",
            "--redis-url",
            "redis://127.0.0.1",
            "--master-key",
            "AAAA",
            "--bootstrap-token",
            "t",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--log-format",
            "json",
            "--access-token-ttl-secs",
            "60",
            "--key-activation-delay-secs",
            "5",
            "--allow-insecure-loopback",
            "--header-read-timeout-secs",
            "3",
            "--idle-timeout-secs",
            "20",
            "--max-connections",
            "100",
            "--request-timeout-secs",
            "7",
            "--metrics-bind",
            "127.0.0.1:9100",
            "--smtp-url",
            "smtps://u:pw@mail.example",
            "--mail-from",
            "idp@example.com",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.public_url.as_deref(), Some("https://idp.example.com"));
        assert_eq!(s.access_token_ttl_secs, 60);
        assert_eq!(s.key_activation_delay(), 5);
        assert!(s.allow_insecure_loopback);
        assert_eq!(s.log_format, "json");
        assert!(s.tls_key.is_some());
        assert_eq!(
            (
                s.header_read_timeout_secs,
                s.idle_timeout_secs,
                s.max_connections,
                s.request_timeout_secs
            ),
            (3, 20, 100, 7)
        );
        assert_eq!(s.metrics_bind, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(
            s.smtp_url.as_ref().map(Secret::expose),
            Some("smtps://u:pw@mail.example")
        );
        assert_eq!(s.mail_from.as_deref(), Some("idp@example.com"));
    }

    /// An invalid value from an environment variable is reported under the variable's name; the
    /// same value given as a flag is reported under the flag.
    #[test]
    fn env_errors_name_the_variable() {
        let args: Vec<std::ffi::OsString> = ["agentidp", "serve"].iter().map(Into::into).collect();
        // What clap reports for `AGENTIDP_ACCESS_TOKEN_TTL_SECS=abc`: the flag.
        let err = Cli::try_parse_from(["agentidp", "serve", "--access-token-ttl-secs", "abc"])
            .unwrap_err();
        assert!(err.to_string().contains("--access-token-ttl-secs"), "{err}");
        let named = name_env_source(err, &args, |v| v == "AGENTIDP_ACCESS_TOKEN_TTL_SECS");
        let text = named.to_string();
        assert!(
            text.contains("invalid value 'abc' for 'AGENTIDP_ACCESS_TOKEN_TTL_SECS'"),
            "{text}"
        );
        assert!(
            text.contains("environment variable AGENTIDP_ACCESS_TOKEN_TTL_SECS"),
            "{text}"
        );

        // A subcommand's flag, and a bool.
        let err = Cli::try_parse_from([
            "agentidp",
            "keys",
            "rotate",
            "--allow-insecure-loopback",
            "maybe",
        ])
        .unwrap_err();
        let keys_args: Vec<std::ffi::OsString> = ["agentidp", "keys", "rotate"]
            .iter()
            .map(Into::into)
            .collect();
        let text = name_env_source(err, &keys_args, |v| v == "AGENTIDP_ALLOW_INSECURE_LOOPBACK")
            .to_string();
        assert!(
            text.contains("'AGENTIDP_ALLOW_INSECURE_LOOPBACK'"),
            "{text}"
        );

        // Given as a flag: left alone, even when the variable is set too.
        let flag_args: Vec<std::ffi::OsString> = ["agentidp", "serve", "--bind", "nope"]
            .iter()
            .map(Into::into)
            .collect();
        let err = Cli::try_parse_from(&flag_args).unwrap_err();
        let text = name_env_source(err, &flag_args, |_| true).to_string();
        assert!(text.contains("'--bind <BIND>'"), "{text}");
        assert!(!text.contains("AGENTIDP_BIND"), "{text}");
    }

    /// Issue 9 point 7: a one-character bootstrap token was accepted.
    #[test]
    fn short_operator_tokens_are_refused() {
        let mut s = Settings::defaults();
        assert_eq!(s.check_operator_tokens(), Ok(()));
        s.bootstrap_token = Some(Secret::new("t"));
        let e = s.check_operator_tokens().unwrap_err();
        assert!(
            e.contains("AGENTIDP_BOOTSTRAP_TOKEN") && e.contains("at least 32"),
            "{e}"
        );
        assert!(!e.contains(": t"), "the token itself is never shown: {e}");
        s.bootstrap_token = Some(Secret::new("x".repeat(31)));
        assert!(s.check_operator_tokens().is_err());
        s.bootstrap_token = Some(Secret::new("x".repeat(32)));
        assert_eq!(s.check_operator_tokens(), Ok(()));
    }

    #[test]
    fn auth_failure_limit_and_trusted_proxies() {
        let cli = Cli::try_parse_from([
            "agentidp",
            "serve",
            "--auth-failure-limit",
            "0",
            "--trusted-proxies",
            "10.0.0.0/8, 192.0.2.7,fd00::/8",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.auth_failure_limit, 0);
        let p: Vec<String> = s.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(p, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
        assert!(Cli::try_parse_from(["agentidp", "serve", "--trusted-proxies", "nope"]).is_err());
        assert_eq!(
            Settings::defaults().auth_failure_limit,
            DEFAULT_AUTH_FAILURE_LIMIT
        );
    }

    /// `PER_SECOND[:BURST]`, 0 off; a bad value from the environment is reported under the
    /// variable's name.
    #[test]
    fn rate_limits_parse_and_bad_values_name_the_variable() {
        use crate::limiter::Limit;
        let d = Settings::defaults().rate_limits();
        assert_eq!(
            d.token,
            Some(Limit {
                per_second: 100_000,
                burst: 100_000
            })
        );
        assert_eq!(
            d.admin,
            Some(Limit {
                per_second: 1000,
                burst: 2000
            })
        );
        assert_eq!(d.ip, None);
        let cli = Cli::try_parse_from([
            "agentidp",
            "serve",
            "--token-rate-limit",
            "0",
            "--admin-rate-limit",
            "5",
            "--ip-rate-limit",
            "10:20",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        let l = s.rate_limits();
        assert_eq!(l.token, None);
        assert_eq!(
            l.admin,
            Some(Limit {
                per_second: 5,
                burst: 5
            })
        );
        assert_eq!(
            l.ip,
            Some(Limit {
                per_second: 10,
                burst: 20
            })
        );
        let args: Vec<std::ffi::OsString> = ["agentidp", "serve"].iter().map(Into::into).collect();
        for var in [
            "AGENTIDP_TOKEN_RATE_LIMIT",
            "AGENTIDP_ADMIN_RATE_LIMIT",
            "AGENTIDP_IP_RATE_LIMIT",
        ] {
            let flag = format!(
                "--{}",
                var.trim_start_matches("AGENTIDP_")
                    .to_lowercase()
                    .replace('_', "-")
            );
            let err = Cli::try_parse_from(["agentidp", "serve", &flag, "10:0"]).unwrap_err();
            let text = name_env_source(err, &args, |v| v == var).to_string();
            assert!(text.contains(&format!("'{var}'")), "{text}");
            assert!(text.contains("PER_SECOND[:BURST]"), "{text}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let mut s = Settings::defaults();
        s.master_key = Some(Secret::new("c2VjcmV0"));
        s.database_url = Some(Secret::new("postgres://u:pw@h/db"));
        s.smtp_url = Some(Secret::new("smtps://u:mailpw@h"));
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("c2VjcmV0") && !dbg.contains("pw@") && !dbg.contains("mailpw"));
    }
}
