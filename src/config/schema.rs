//! The config file's types: serde only, unknown keys rejected everywhere. Cross-field checks live
//! in `validate`/`snapshot`, which collect every problem with its path.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::jwt::JwtConfig;
use crate::auth::opaque::{OpaqueRealmConfig, OpaqueRouteConfig};
use crate::auth::signed::SignedConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerConfig,
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    #[serde(default)]
    pub log: LogConfig,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    #[serde(default)]
    pub identity_headers: IdentityHeadersConfig,
    /// How strictly request paths are read (`;`, case, trailing dots and spaces).
    #[serde(default)]
    pub path_strictness: crate::routing::PathStrictness,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Named opaque-token realms (users, keys, token endpoint), used by `opaque` filters.
    #[serde(default)]
    pub opaque: BTreeMap<String, OpaqueRealmConfig>,
    /// Named OpenID providers with their sessions, used by `oidc` filters.
    #[serde(default)]
    pub oidc: BTreeMap<String, crate::auth::oidc::OidcProviderConfig>,
    /// Named PKCE realms (an authorization server without PKCE, the clients it serves).
    #[serde(default)]
    pub pkce: BTreeMap<String, crate::auth::pkce::PkceRealmConfig>,
    /// Shared state (Redis); memory when absent.
    #[serde(default)]
    pub state: Option<crate::state::StateConfig>,
    /// A jwtproxy key registry served by the edge (keys kept in the shared state).
    #[serde(default)]
    pub key_registry: Option<crate::auth::signed::keyserver::KeyRegistryConfig>,
    /// How `role: signer` listeners sign outgoing requests.
    #[serde(default)]
    pub signer: Option<crate::signer::SignerConfig>,
    /// May be empty only when the config serves endpoints (a `pkce` realm alone) or has no
    /// reverse-proxy listener (a signer alone).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Notes from a drop-in reader (parts of a foreign config that are not run), logged at load.
    #[serde(skip)]
    pub notes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Worker threads of the proxy service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Tokio work stealing between worker threads (off: less CPU per request).
    #[serde(default)]
    pub work_stealing: bool,
    /// Seconds SIGTERM waits for in-flight requests.
    #[serde(default = "default_grace")]
    pub grace_period_seconds: u64,
    #[serde(default = "default_pid_file")]
    pub pid_file: String,
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: String,
    /// Idle upstream connections kept per service.
    #[serde(default = "default_pool")]
    pub upstream_keepalive_pool_size: usize,
    /// How long an idle client keep-alive connection is kept between requests.
    #[serde(default = "default_keepalive", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Requests served on one client connection before it is closed (0: no limit).
    #[serde(default = "default_max_requests")]
    pub max_requests_per_connection: u32,
    /// Deadline for reading a request body the edge answers itself (`/auth`, ...).
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub endpoint_body_timeout: Duration,
    /// Client connections the whole process holds open at once, over every listener (default:
    /// half the open-file limit, so upstream connections, keys and logs keep the other half).
    #[serde(default)]
    pub max_connections: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            threads: default_threads(),
            work_stealing: false,
            grace_period_seconds: default_grace(),
            pid_file: default_pid_file(),
            upgrade_sock: default_upgrade_sock(),
            upstream_keepalive_pool_size: default_pool(),
            keepalive_timeout: default_keepalive(),
            max_requests_per_connection: default_max_requests(),
            endpoint_body_timeout: default_body_timeout(),
            max_connections: None,
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
fn default_grace() -> u64 {
    5
}
fn default_pid_file() -> String {
    "/tmp/authedge.pid".into()
}
fn default_upgrade_sock() -> String {
    "/tmp/authedge_upgrade.sock".into()
}
fn default_pool() -> usize {
    1024
}
fn default_keepalive() -> Duration {
    Duration::from_secs(60)
}
fn default_max_requests() -> u32 {
    1000
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `host:port` for TCP.
    #[serde(default)]
    pub address: Option<String>,
    /// A unix socket path instead of TCP.
    #[serde(default)]
    pub unix: Option<String>,
    /// Terminate TLS with this PEM certificate chain and key.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Which proxy serves this listener (default: the authenticating reverse proxy).
    #[serde(default)]
    pub role: ListenerRole,
    /// Plain listeners: also serve HTTP/2 with prior knowledge (h2c); HTTP/1.1 still works.
    #[serde(default)]
    pub h2c: bool,
    /// Client connections this listener holds open at once (idle keep-alive ones included);
    /// one more is answered 503 and closed. Default: only the process-wide
    /// `server.max_connections` applies.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// The proxy role a listener serves. Each role is its own Pingora service with its own
/// `ProxyHttp`, so a new role never touches the reverse proxy's request path.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ListenerRole {
    /// The authenticating reverse proxy (`Edge`).
    #[default]
    ReverseProxy,
    /// The forward proxy that signs outgoing requests (`signer:` block).
    Signer,
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The default certificate chain and key (PEM; relative to the config file's directory).
    pub cert: String,
    pub key: String,
    /// Protocols offered by ALPN, in preference order: `[h2, http/1.1]`, `[h2]` or `[http/1.1]`.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// More certificates, chosen by the client's SNI (see `crate::tls`).
    #[serde(default)]
    pub sni: Vec<SniCertConfig>,
}

fn default_alpn() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into()]
}

/// A certificate served to clients asking for one of `names` (`*.example.com`: one label).
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SniCertConfig {
    pub names: Vec<String>,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` of the side port serving `/metrics`, `/healthz`, `/readyz`.
    pub address: String,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is unset.
    #[serde(default = "default_level")]
    pub level: String,
    /// One info line per request (route, mode, outcome, reason, status, latency).
    #[serde(default = "yes")]
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: default_level(),
            access: true,
        }
    }
}

fn default_level() -> String {
    "info".into()
}
fn yes() -> bool {
    true
}

/// Header names for the standard identity fields. An empty string disables one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeadersConfig {
    #[serde(default = "h_subject")]
    pub subject: String,
    #[serde(default = "h_issuer")]
    pub issuer: String,
    #[serde(default = "h_mode")]
    pub mode: String,
    #[serde(default = "h_scopes")]
    pub scopes: String,
    /// More header names to strip from every client request.
    #[serde(default)]
    pub strip: Vec<String>,
    /// Forward `X-Original-URL` / `X-Rewrite-URL` (default: removed).
    #[serde(default)]
    pub keep_rewrite_headers: bool,
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        IdentityHeadersConfig {
            subject: h_subject(),
            issuer: h_issuer(),
            mode: h_mode(),
            scopes: h_scopes(),
            strip: Vec::new(),
            keep_rewrite_headers: false,
        }
    }
}

fn h_subject() -> String {
    "X-Auth-Subject".into()
}
fn h_issuer() -> String {
    "X-Auth-Issuer".into()
}
fn h_mode() -> String {
    "X-Auth-Mode".into()
}
fn h_scopes() -> String {
    "X-Auth-Scopes".into()
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port`, `https://host:port`, or `unix:/path/to.sock`.
    #[serde(default)]
    pub url: Option<String>,
    /// The built-in echo upstream: answers with JSON of what it received.
    #[serde(default)]
    pub echo: bool,
    #[serde(default = "default_connect", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_read", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// How long a kept-alive upstream connection waits in the pool for its next request before
    /// the edge closes it (`0s`: none is kept).
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Verify the upstream's certificate (https only).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// SNI and certificate name; defaults to the URL's host.
    #[serde(default)]
    pub sni: Option<String>,
    /// PEM CA certificates that verify this `https://` upstream instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// A client certificate (PEM chain, leaf first) the edge presents to an `https://` upstream
    /// that asks for one (mutual TLS); with `client_key`.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// The private key of `client_cert` (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[serde(default)]
    pub client_key: Option<String>,
    /// Replace the request's `Host` header.
    #[serde(default)]
    pub host_header: Option<String>,
    /// Speak HTTP/2 to an `https://` upstream (ALPN h2), e.g. for gRPC.
    #[serde(default)]
    pub http2: bool,
    /// Speak HTTP/2 with prior knowledge to an `http://` upstream (h2c), e.g. for gRPC.
    #[serde(default)]
    pub h2c: bool,
}

fn default_connect() -> Duration {
    Duration::from_secs(5)
}
fn default_read() -> Duration {
    Duration::from_secs(60)
}
fn default_idle() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Metric/log label; defaults to `route<N>`.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    pub path: String,
    #[serde(default)]
    pub methods: Vec<String>,
    pub upstream: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub auth: Vec<FilterConfig>,
    /// Forward the credential header the filter consumed (default: removed).
    #[serde(default)]
    pub keep_credentials: bool,
    /// Replace the matched `path` prefix with this before the upstream (`/api` with
    /// `rewrite_prefix: /v1`: `/api/x` reaches the upstream as `/v1/x`; `""` or `/`: the prefix
    /// is removed).
    #[serde(default)]
    pub rewrite_prefix: Option<String>,
}

/// One filter of a route's chain, tagged by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FilterConfig {
    Jwt(Box<JwtConfig>),
    Opaque(OpaqueRouteConfig),
    Signed(Box<SignedConfig>),
    Oidc(Box<crate::auth::oidc::OidcRouteConfig>),
    /// The contract probe of the integration tests (see `auth::probe`); not a user mode.
    #[doc(hidden)]
    #[serde(rename = "x-contract-probe")]
    Probe(crate::auth::probe::ProbeConfig),
}
