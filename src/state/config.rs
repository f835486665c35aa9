//! The `state` block of the config file and its validation. Absent: every instance keeps its
//! state in memory. `state: {redis: {url | cluster, key_prefix, timeout, password}}`: shared
//! through Redis or a Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::memory::MemoryStore;
use super::metrics::StateMetrics;
use super::redis::RedisStore;
use super::Store;
use crate::config::secret::SecretSource;
use crate::config::Problems;

/// `state:`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub redis: Option<RedisConfig>,
}

/// `state.redis:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS).
    #[serde(default)]
    pub url: Option<String>,
    /// Redis Cluster seed nodes instead of `url`.
    #[serde(default)]
    pub cluster: Option<Vec<String>>,
    /// Every key starts with it.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Per command; past it the call counts as failed.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Overrides a password in the URL.
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// `rediss://` only: PEM file of the CA that signed the server's certificate (default: the
    /// system's roots). Relative to the config file's directory.
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn default_prefix() -> String {
    "authedge:".into()
}
fn default_timeout() -> Duration {
    Duration::from_millis(50)
}

/// Where the store connects: one server or a cluster.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per config load
pub enum Target {
    Single(Box<redis::Client>),
    /// The cluster client and one plain client per seed (for the revocation subscription).
    Cluster(redis::cluster::ClusterClient, Vec<redis::Client>),
}

/// A validated `state.redis` block.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub target: Target,
    pub key_prefix: String,
    pub timeout: Duration,
    /// Identifies the block: an unchanged block (same key) keeps its store across reloads.
    pub reuse_key: String,
}

/// What building a store needs from the caller.
pub struct StateEnv<'a> {
    pub control: &'a tokio::runtime::Handle,
    /// `check`: validate only, connect nothing, spawn nothing.
    pub dry_run: bool,
    pub metrics: Arc<StateMetrics>,
}

/// The trust for `rediss://` connections: `None` for the system roots, else a CA's PEM.
type CaPem = Option<Vec<u8>>;

fn client(
    url: &str,
    password: Option<&str>,
    ca: &CaPem,
    key: &str,
    p: &mut Problems,
) -> Option<redis::Client> {
    let parsed = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => {
            p.push(key, format!("{url:?} is not a URL: {e}"));
            return None;
        }
    };
    let tls = match parsed.scheme() {
        "redis" => false,
        "rediss" => true,
        s => {
            p.push(key, format!("scheme {s:?} is not redis:// or rediss://"));
            return None;
        }
    };
    if parsed.fragment().is_some() {
        // redis-rs reads `#insecure` as "skip certificate checks": never on this edge.
        p.push(
            key,
            "no URL fragment (#insecure is refused: certificates are always verified)",
        );
        return None;
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        p.push(key, "the URL needs a host");
        return None;
    }
    let info = match redis::IntoConnectionInfo::into_connection_info(url) {
        Ok(i) => i,
        Err(e) => {
            p.push(key, format!("{e}"));
            return None;
        }
    };
    let info = match password {
        Some(pw) => {
            let settings = info.redis_settings().clone().set_password(pw);
            info.set_redis_settings(settings)
        }
        None => info,
    };
    let built = match (tls, ca) {
        (true, Some(pem)) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        _ => redis::Client::open(info),
    };
    match built {
        Ok(c) => Some(c),
        Err(e) => {
            p.push(key, format!("{e}"));
            None
        }
    }
}

/// The CA file of `state.redis.ca_file`, read now (`resolve` maps a relative name to the
/// config file's directory).
fn read_ca(cfg: &RedisConfig, resolve: &dyn Fn(&str) -> String, p: &mut Problems) -> Option<CaPem> {
    let Some(name) = &cfg.ca_file else {
        return Some(None);
    };
    let key = "state.redis.ca_file";
    let uses_tls = cfg
        .url
        .iter()
        .chain(cfg.cluster.iter().flatten())
        .any(|u| u.starts_with("rediss://"));
    if !uses_tls {
        p.push(key, "only used with rediss:// URLs");
        return None;
    }
    let path = resolve(name);
    match std::fs::read(&path) {
        Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
            Some(Some(pem))
        }
        Ok(_) => {
            p.push(key, format!("{path}: no PEM certificate in it"));
            None
        }
        Err(e) => {
            p.push(key, format!("cannot read {path}: {e}"));
            None
        }
    }
}

/// Validate `state.redis`; every problem names its key path.
pub fn validate(
    cfg: &RedisConfig,
    resolve: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<RedisSettings> {
    let base = "state.redis";
    let mut ok = true;
    let ca = read_ca(cfg, resolve, problems);
    ok &= ca.is_some();
    let ca = ca.flatten();
    let password = password(cfg, problems);
    ok &= password.is_some();
    let password = password.flatten();
    if cfg.key_prefix.len() > 64 || cfg.key_prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
        problems.push(
            format!("{base}.key_prefix"),
            "at most 64 characters, no spaces or control characters",
        );
        ok = false;
    }
    if cfg.timeout < Duration::from_millis(1) || cfg.timeout > Duration::from_secs(60) {
        problems.push(format!("{base}.timeout"), "must be between 1ms and 60s");
        ok = false;
    }
    let pw = password.as_deref();
    let target = match (&cfg.url, &cfg.cluster) {
        (Some(u), None) => client(u, pw, &ca, &format!("{base}.url"), problems)
            .map(|c| Target::Single(Box::new(c))),
        (None, Some(nodes)) => cluster(cfg, nodes, pw, &ca, problems),
        _ => {
            problems.push(base, "give exactly one of url or cluster");
            None
        }
    };
    let target = target.filter(|_| ok)?;
    let pw_digest = pw.map(|p| Sha256::digest(p.as_bytes())).unwrap_or_default();
    let ca_digest = ca.as_ref().map(Sha256::digest).unwrap_or_default();
    let reuse_key = format!(
        "state:redis:{:?}:{:?}:{:?}:{:?}:{pw_digest:x}:{ca_digest:x}",
        cfg.url, cfg.cluster, cfg.key_prefix, cfg.timeout
    );
    Some(RedisSettings {
        target,
        key_prefix: cfg.key_prefix.clone(),
        timeout: cfg.timeout,
        reuse_key,
    })
}

/// `state.redis.password`: `Some(None)` when none is given, `None` when it cannot be used.
fn password(cfg: &RedisConfig, problems: &mut Problems) -> Option<Option<String>> {
    let Some(src) = &cfg.password else {
        return Some(None);
    };
    let key = "state.redis.password";
    match src.resolve() {
        Ok(s) => match std::str::from_utf8(s.expose()) {
            Ok(pw) if !pw.is_empty() => Some(Some(pw.to_string())),
            _ => {
                problems.push(key, "must be non-empty UTF-8");
                None
            }
        },
        Err(m) => {
            problems.push(key, m);
            None
        }
    }
}

/// `state.redis.cluster`: a cluster client over the seed nodes, and a plain client per seed.
fn cluster(
    cfg: &RedisConfig,
    nodes: &[String],
    pw: Option<&str>,
    ca: &CaPem,
    problems: &mut Problems,
) -> Option<Target> {
    let base = "state.redis.cluster";
    if nodes.is_empty() {
        problems.push(base, "list at least one node");
        return None;
    }
    let mut plain = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(c) = client(n, pw, ca, &format!("{base}[{i}]"), problems) {
            plain.push(c);
        }
    }
    if plain.len() != nodes.len() {
        return None;
    }
    let infos: Vec<redis::ConnectionInfo> = plain
        .iter()
        .map(|c| c.get_connection_info().clone())
        .collect();
    let mut b = redis::cluster::ClusterClientBuilder::new(infos)
        .connection_timeout(cfg.timeout.max(Duration::from_millis(500)))
        .response_timeout(cfg.timeout);
    if let Some(pw) = pw {
        b = b.password(pw);
    }
    if let Some(pem) = ca {
        b = b.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
    }
    match b.build() {
        Ok(c) => Some(Target::Cluster(c, plain)),
        Err(e) => {
            problems.push(base, e);
            None
        }
    }
}

/// The store a config asks for: the reuse key (an unchanged block keeps its store across
/// reloads) and a function that opens it. `Err`: every problem, with its key path.
pub fn plan(
    cfg: Option<&StateConfig>,
    resolve: &dyn Fn(&str) -> String,
) -> Result<Option<RedisSettings>, Problems> {
    let Some(redis) = cfg.and_then(|c| c.redis.as_ref()) else {
        return Ok(None);
    };
    let mut problems = Problems::default();
    match validate(redis, resolve, &mut problems) {
        Some(s) if problems.is_empty() => Ok(Some(s)),
        _ => Err(problems),
    }
}

/// Open the store a plan names (memory when `None`). Connects in the background.
pub fn open(plan: Option<&RedisSettings>, env: &StateEnv<'_>) -> Store {
    let control = (!env.dry_run).then_some(env.control);
    match plan {
        None => MemoryStore::new(control),
        Some(s) => RedisStore::new(s.clone(), env.metrics.clone(), control),
    }
}

/// The reuse key of a plan (memory: one store per process).
pub fn reuse_key(plan: Option<&RedisSettings>) -> &str {
    plan.map_or("state:memory", |s| s.reuse_key.as_str())
}
