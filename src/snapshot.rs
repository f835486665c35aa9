//! The immutable, fully built config: route table, compiled chains, upstreams, endpoints. Shared
//! through an `ArcSwap`; a request loads it once and sees one whole version.
//!
//! [`Warm`] is the state that outlives a snapshot (JWKS caches, revocations, rate-limit state,
//! the control runtime and its HTTP client): a reload builds a new snapshot against the same
//! `Warm`, so caches of unchanged providers and realms carry over.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use http::{HeaderName, Method};
use prometheus::{Histogram, IntCounter};

use crate::auth::{jwt, opaque, AuthFilter, Chain, Endpoint};
use crate::config::schema::{
    FileConfig, FilterConfig, ListenerConfig, LogConfig, MetricsConfig, ServerConfig,
};
use crate::config::Problems;
use crate::identity::{HeaderInjector, StandardHeaders};
use crate::metrics::Metrics;
use crate::routing::{normalize_prefix, RouteKey, Router};
use crate::upstream::{self, Upstream};

/// State that survives reloads, and the runtime that background work (key fetches, refresh
/// timers, reload) runs on.
pub struct Warm {
    pub control: tokio::runtime::Handle,
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// `check` builds without side effects (no file rewrites, no background refresh).
    pub dry_run: bool,
    /// The config file's directory: relative file names in the config are resolved against it.
    pub config_dir: Option<std::path::PathBuf>,
    store: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm")
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

impl Warm {
    pub fn new(
        control: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        dry_run: bool,
    ) -> Result<Warm, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                // Key fetches never follow a redirect from https down to plain http.
                let downgrade = attempt.url().scheme() != "https"
                    && attempt.previous().iter().any(|u| u.scheme() == "https");
                if downgrade {
                    attempt.error("redirect from https to http refused")
                } else if attempt.previous().len() > 3 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!("authedge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Warm {
            control,
            http,
            metrics,
            dry_run,
            config_dir: None,
            store: Mutex::new(HashMap::new()),
        })
    }

    /// Resolve relative file names in the config against the config file's directory.
    pub fn with_config_dir(mut self, config_file: &Path) -> Self {
        self.config_dir = config_file.parent().map(Path::to_path_buf);
        self
    }

    /// `name` as given when absolute, else relative to the config file's directory.
    pub fn resolve_path(&self, name: &str) -> String {
        match &self.config_dir {
            Some(dir) if !Path::new(name).is_absolute() && !dir.as_os_str().is_empty() => {
                dir.join(name).display().to_string()
            }
            _ => name.to_string(),
        }
    }

    /// The shared object under `key`, created by `make` the first time. A key names a cache
    /// precisely (for example the provider's issuer and key source), so a changed provider gets a
    /// fresh cache and an unchanged one keeps its keys across reloads.
    pub fn shared<T: Any + Send + Sync>(&self, key: &str, make: impl FnOnce() -> T) -> Arc<T> {
        let mut map = match self.store.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(existing) = map.get(key).and_then(|a| a.clone().downcast::<T>().ok()) {
            return existing;
        }
        let fresh = Arc::new(make());
        map.insert(key.to_string(), fresh.clone());
        fresh
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct RouteEntry {
    pub id: Arc<str>,
    pub upstream: Arc<Upstream>,
    pub public: bool,
    pub chain: Chain,
    /// Credential headers removed before the upstream (empty when the route keeps them).
    pub strip_credentials: Vec<HeaderName>,
    pub duration: Histogram,
    /// `outcome=allow` counters: index 0 for a public route, else one per filter.
    pub allowed: Vec<IntCounter>,
}

/// One whole, immutable config.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub router: Router,
    pub routes: Vec<RouteEntry>,
    /// Exact canonical paths served by the edge itself before routing.
    pub endpoints: HashMap<String, Arc<dyn Endpoint>>,
    pub injector: HeaderInjector,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub path_strictness: crate::routing::PathStrictness,
    pub server: ServerConfig,
    pub listeners: Vec<ListenerConfig>,
    pub metrics: Option<MetricsConfig>,
    pub log: LogConfig,
}

impl Snapshot {
    /// `None` when every filter can decide; else a short description of what is missing.
    pub fn not_ready(&self) -> Option<String> {
        self.routes
            .iter()
            .find(|r| r.chain.iter().any(|f| !f.ready()))
            .map(|r| format!("route {} waits for keys", r.id))
    }

    /// Whether the peer is a trusted proxy whose `X-Forwarded-For` we believe.
    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// Parse a configured header name; an empty string means "disabled" (`None`), a bad name is a
/// problem at `path`.
pub(crate) fn header_name(value: &str, path: &str, problems: &mut Problems) -> Option<HeaderName> {
    if value.is_empty() {
        return None;
    }
    match HeaderName::from_bytes(value.as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            problems.push(path, format!("{value:?} is not a valid header name"));
            None
        }
    }
}

/// Validate and build everything. Collects every problem before failing.
pub async fn compile(
    cfg: FileConfig,
    warm: &Warm,
    generation: u64,
    source: Option<&Path>,
) -> Result<Snapshot, Problems> {
    let mut problems = Problems::default();

    // Server and listeners.
    if cfg.server.threads == 0 {
        problems.push("server.threads", "must be at least 1");
    }
    if cfg.listeners.is_empty() {
        problems.push("listeners", "at least one listener is needed");
    }
    for (i, l) in cfg.listeners.iter().enumerate() {
        let p = format!("listeners[{i}]");
        match (&l.address, &l.unix) {
            (Some(a), None) => {
                if a.parse::<std::net::SocketAddr>().is_err() {
                    problems.push(
                        format!("{p}.address"),
                        format!("{a:?} is not an IP:port address"),
                    );
                }
            }
            (None, Some(_)) => {
                if l.tls.is_some() {
                    problems.push(format!("{p}.tls"), "TLS is only supported on TCP listeners");
                }
            }
            _ => problems.push(&p, "give exactly one of address or unix"),
        }
        if let Some(tls) = &l.tls {
            for (k, f) in [("cert", &tls.cert), ("key", &tls.key)] {
                if std::fs::metadata(f).is_err() {
                    problems.push(format!("{p}.tls.{k}"), format!("cannot read {f}"));
                }
            }
        }
    }
    if let Some(m) = &cfg.metrics {
        if m.address.parse::<std::net::SocketAddr>().is_err() {
            problems.push(
                "metrics.address",
                format!("{:?} is not an IP:port address", m.address),
            );
        }
    }

    // Identity headers.
    let ih = &cfg.identity_headers;
    let standard = StandardHeaders {
        subject: header_name(&ih.subject, "identity_headers.subject", &mut problems),
        issuer: header_name(&ih.issuer, "identity_headers.issuer", &mut problems),
        mode: header_name(&ih.mode, "identity_headers.mode", &mut problems),
        scopes: header_name(&ih.scopes, "identity_headers.scopes", &mut problems),
    };
    let mut owned: Vec<HeaderName> = Vec::new();
    for (i, s) in ih.strip.iter().enumerate() {
        if let Some(n) = header_name(s, &format!("identity_headers.strip[{i}]"), &mut problems) {
            owned.push(n);
        }
    }

    // Upstreams.
    let mut upstreams: HashMap<String, Arc<Upstream>> = HashMap::new();
    for (name, u) in &cfg.upstreams {
        match upstream::build(name, u) {
            Ok(up) => {
                upstreams.insert(name.clone(), Arc::new(up));
            }
            Err(errs) => {
                for (k, m) in errs {
                    let path = if k.is_empty() {
                        format!("upstreams.{name}")
                    } else {
                        format!("upstreams.{name}.{k}")
                    };
                    problems.push(path, m);
                }
            }
        }
    }

    // Opaque realms (users, keys, token endpoints).
    let mut realms = HashMap::new();
    let mut endpoints: HashMap<String, Arc<dyn Endpoint>> = HashMap::new();
    for (name, r) in &cfg.opaque {
        let path = format!("opaque.{name}");
        match opaque::build_realm(name, r, &path, warm, source).await {
            Ok((realm, eps)) => {
                realms.insert(name.clone(), realm);
                for (p, e) in eps {
                    if endpoints.insert(p.clone(), e).is_some() {
                        problems.push(
                            &path,
                            format!("endpoint path {p} is already served by another realm"),
                        );
                    }
                }
            }
            Err(errs) => problems.0.extend(errs.0),
        }
    }

    // Routes.
    let mut keys = Vec::with_capacity(cfg.routes.len());
    let mut routes = Vec::with_capacity(cfg.routes.len());
    let mut ids = HashMap::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        let id: Arc<str> = r.id.clone().unwrap_or_else(|| format!("route{i}")).into();
        if let Some(prev) = ids.insert(id.clone(), i) {
            problems.push(
                format!("{p}.id"),
                format!("id {id:?} is already used by routes[{prev}]"),
            );
        }
        let prefix = match normalize_prefix(&r.path) {
            Ok(pr) => pr,
            Err(e) => {
                problems.push(format!("{p}.path"), e);
                continue;
            }
        };
        let mut methods = Vec::new();
        for (j, m) in r.methods.iter().enumerate() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => problems.push(
                    format!("{p}.methods[{j}]"),
                    format!("{m:?} is not an HTTP method"),
                ),
            }
        }
        // Lower case, without a trailing dot (as requests are looked up).
        let host = r
            .host
            .as_ref()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
        let up = upstreams.get(&r.upstream).cloned();
        if up.is_none() && !cfg.upstreams.contains_key(&r.upstream) {
            problems.push(
                format!("{p}.upstream"),
                format!("unknown upstream {:?}", r.upstream),
            );
        }
        match (r.public, r.auth.is_empty()) {
            (true, false) => problems.push(
                format!("{p}.public"),
                "a public route cannot have an auth chain",
            ),
            (false, true) => problems.push(
                format!("{p}.auth"),
                "a route needs an auth chain, or `public: true` to serve without authentication",
            ),
            _ => {}
        }
        let mut chain: Chain = Vec::with_capacity(r.auth.len());
        for (j, f) in r.auth.iter().enumerate() {
            let fp = format!("{p}.auth[{j}]");
            let built: Result<Arc<dyn AuthFilter>, Problems> = match f {
                FilterConfig::Jwt(c) => jwt::build(c, &fp, warm).await,
                FilterConfig::Opaque(c) => opaque::build_filter(c, &realms, &fp, warm),
            };
            match built {
                Ok(f) => chain.push(f),
                Err(errs) => problems.0.extend(errs.0),
            }
        }
        let mut strip_credentials = Vec::new();
        for f in &chain {
            owned.extend(f.identity_headers());
            if !r.keep_credentials {
                for h in f.credential_headers() {
                    if !strip_credentials.contains(h) {
                        strip_credentials.push(h.clone());
                    }
                }
            }
        }
        keys.push(RouteKey {
            host,
            prefix,
            methods,
        });
        let Some(up) = up else { continue };
        let m = &warm.metrics;
        let allowed = if r.public {
            vec![m.requests.with_label_values(&[&id, "public", "allow", ""])]
        } else {
            chain
                .iter()
                .map(|f| m.requests.with_label_values(&[&id, f.kind(), "allow", ""]))
                .collect()
        };
        routes.push(RouteEntry {
            duration: m.duration.with_label_values(&[&id]),
            id,
            upstream: up,
            public: r.public,
            chain,
            strip_credentials,
            allowed,
        });
    }
    let router = match Router::build_with(&keys, cfg.path_strictness.case_insensitive) {
        Ok(r) => Some(r),
        Err(errs) => {
            for (i, m) in errs {
                problems.push(format!("routes[{i}].path"), m);
            }
            None
        }
    };
    if cfg.routes.is_empty() {
        problems.push("routes", "no routes: every request would get 404");
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let Some(router) = router else {
        return Err(problems);
    };
    Ok(Snapshot {
        generation,
        router,
        routes,
        endpoints,
        injector: HeaderInjector::with_rules(
            standard,
            owned,
            cfg.identity_headers.keep_rewrite_headers,
        ),
        path_strictness: cfg.path_strictness,
        trusted_proxies: cfg.trusted_proxies,
        server: cfg.server,
        listeners: cfg.listeners,
        metrics: cfg.metrics,
        log: cfg.log,
    })
}
