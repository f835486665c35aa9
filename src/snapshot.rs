//! The immutable, fully built config: route table, compiled chains, upstreams, endpoints. Shared
//! through an `ArcSwap`; a request loads it once and sees one whole version.
//!
//! What outlives a snapshot lives in [`crate::context`]: a reload builds a new snapshot against
//! the same [`Context`], so caches of unchanged providers and realms carry over.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use http::{HeaderName, Method};
use prometheus::{Histogram, IntCounter};

use crate::auth::endpoint::EndpointAt;
use crate::auth::{jwt, oidc, opaque, probe, signed, Built, Chain, Endpoint, Endpoints};
use crate::config::schema::{
    FileConfig, FilterConfig, ListenerConfig, ListenerRole, LogConfig, MetricsConfig, ServerConfig,
};
use crate::config::Problems;
pub use crate::context::{Context, Warm};
use crate::identity::{HeaderInjector, StandardHeaders};
use crate::routing::{normalize_prefix, RouteKey, Router};
use crate::state::{self, StateConfig, Store};
use crate::upstream::{self, Upstream};

mod routes;
mod settings;

use self::routes::Shared;
pub use self::settings::state_store;
use self::settings::{build_signer, build_upstreams, check_server, identity_headers};

/// A compiled route.
#[derive(Debug)]
pub struct RouteEntry {
    pub id: Arc<str>,
    pub upstream: Arc<Upstream>,
    pub public: bool,
    pub chain: Chain,
    /// Credential headers removed before the upstream (empty when the route keeps them).
    pub strip_credentials: Vec<HeaderName>,
    /// Credential cookies removed from `Cookie` before the upstream (others pass).
    pub strip_cookies: Vec<Box<str>>,
    /// Body bytes read before the chain runs (the largest any filter asks for; 0: none).
    pub max_body: usize,
    /// The route's series are made at its first request (`with_label_values` then, not at
    /// load): a config with thousands of routes that see no traffic exports and keeps nothing
    /// for them (at 10,000 routes, made at load, they were most of the RSS and a 13 MB scrape).
    pub duration: OnceLock<Histogram>,
    /// `outcome=allow` counters by the allowing filter's mode: index 0 for a public route, else
    /// one per filter.
    pub allowed: Box<[(&'static str, OnceLock<IntCounter>)]>,
    /// `rewrite_prefix`: the matched prefix replaced before the upstream.
    pub rewrite: Option<PrefixRewrite>,
}

/// A route's `rewrite_prefix`: the first `from_len` bytes of the canonical path (the route's
/// prefix; 0 for `/`) become `to` (no trailing `/`; empty for the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRewrite {
    pub from_len: usize,
    pub to: Box<str>,
}

impl PrefixRewrite {
    /// From a route's canonical prefix and its `rewrite_prefix` value; `None` when the value is
    /// not an absolute path without query, fragment, spaces or control bytes.
    pub fn new(prefix: &str, to: &str) -> Option<PrefixRewrite> {
        let bad = |c: char| c.is_ascii_control() || c == ' ' || c == '?' || c == '#';
        if !(to.is_empty() || to.starts_with('/')) || to.chars().any(bad) {
            return None;
        }
        Some(PrefixRewrite {
            from_len: if prefix == "/" { 0 } else { prefix.len() },
            to: to.trim_end_matches('/').into(),
        })
    }

    /// The upstream path for a canonical request path the route matched.
    pub fn apply(&self, path: &str) -> String {
        let rest = match path.get(self.from_len..) {
            // The root route's own path: the target's path as it is (`/` -> `/app`).
            Some("/") if self.from_len == 0 => "",
            Some(r) => r,
            None => "",
        };
        let mut out = String::with_capacity(self.to.len() + rest.len() + 1);
        out.push_str(&self.to);
        out.push_str(rest);
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        out
    }
}

/// One whole, immutable config.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub router: Router,
    pub routes: Vec<RouteEntry>,
    /// Host and exact canonical paths served by the edge itself before routing.
    pub endpoints: Endpoints,
    pub injector: HeaderInjector,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub path_strictness: crate::routing::PathStrictness,
    pub server: ServerConfig,
    pub listeners: Vec<ListenerConfig>,
    pub metrics: Option<MetricsConfig>,
    pub log: LogConfig,
    /// The shared state (memory, or Redis kept across reloads while `state` is unchanged).
    pub state: Store,
    /// Notes of a drop-in reader (e.g. a jwtproxy signer that is not run), logged at load.
    pub notes: Vec<String>,
    /// The signer of `role: signer` listeners, when configured.
    pub signer: Option<Arc<crate::signer::sign::Signer>>,
}

impl Snapshot {
    /// `None` when every filter can decide; else a short description of what is missing.
    pub fn not_ready(&self) -> Option<String> {
        if !self.state.ready() {
            return Some(format!(
                "shared state ({}) does not answer",
                self.state.backend()
            ));
        }
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

impl crate::metrics::Readiness for arc_swap::ArcSwap<Snapshot> {
    fn not_ready(&self) -> Option<String> {
        self.load().not_ready()
    }
}

/// The one load path of `check`, `run` and SIGHUP: read and parse the file
/// ([`config::load`](crate::config::load) with [`parse`]), then compile it against `ctx`.
pub async fn load(path: &Path, ctx: &Context, generation: u64) -> Result<Snapshot, Problems> {
    let cfg = crate::config::load(path, parse).await?;
    compile(cfg, ctx, generation, Some(path)).await
}

/// Config text as a file schema: ProxyAuth's config.json (with routes.yml beside it) or a jwtproxy
/// file (top-level `jwtproxy:`) through its drop-in
/// reader, its notes kept for the log; anything else as authedge's own YAML.
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, Problems> {
    if crate::compat::proxyauth::is_proxyauth(text) {
        // ProxyAuth's config.json, with its routes.yml beside it.
        let (mut cfg, notes) = crate::compat::proxyauth::read(path, text)?;
        cfg.notes = notes;
        return Ok(cfg);
    }
    if signed::jwtproxy::is_jwtproxy(text) {
        let (mut cfg, notes) = signed::jwtproxy::translate(text)?;
        cfg.notes = notes;
        return Ok(cfg);
    }
    crate::config::parse(text)
}

pub(crate) use crate::config::header_name;

/// Validate and build everything. Collects every problem before failing. Each phase is a
/// function; each mode builds its own filters (`<mode>::build`), dispatched on the typed enum.
pub async fn compile(
    cfg: FileConfig,
    warm: &Context,
    generation: u64,
    source: Option<&Path>,
) -> Result<Snapshot, Problems> {
    let mut problems = Problems::default();
    let mut cfg = cfg;
    for t in cfg.listeners.iter_mut().filter_map(|l| l.tls.as_mut()) {
        crate::tls::resolve_paths(t, |f| warm.resolve_path(f));
    }
    for u in cfg.upstreams.values_mut() {
        crate::upstream::resolve_paths(u, |f| warm.resolve_path(f));
    }
    check_server(&cfg, &mut problems);
    let (standard, mut owned) = identity_headers(&cfg, &mut problems);
    let upstreams = build_upstreams(&cfg, &mut problems);
    let state = match state_store(warm, cfg.state.as_ref()) {
        Ok(s) => s,
        Err(errs) => {
            problems.0.extend(errs.0);
            state::MemoryStore::new(None)
        }
    };
    let mut endpoints = Endpoints::default();
    let realms = build_realms(&cfg, warm, &state, source, &mut endpoints, &mut problems).await;
    let oidc = endpoint_modes(&cfg, warm, &state, &mut endpoints, &mut problems);
    let signer = build_signer(&cfg, warm, &mut problems);
    let shared = Shared {
        oidc: &oidc,
        warm,
        state: &state,
        realms: &realms,
        upstreams: &upstreams,
        cfg: &cfg,
    };
    let (keys, routes) =
        routes::build_routes(&shared, &mut owned, &mut endpoints, &mut problems).await;
    let router = match Router::build_with(&keys, cfg.path_strictness.case_insensitive) {
        Ok(r) => Some(r),
        Err(errs) => {
            for (i, m) in errs {
                problems.push(format!("routes[{i}].path"), m);
            }
            None
        }
    };
    let reverse = cfg
        .listeners
        .iter()
        .any(|l| l.role == ListenerRole::ReverseProxy);
    if cfg.routes.is_empty() && reverse && endpoints.is_empty() {
        problems.push("routes", "no routes: every request would get 404");
    }
    let Some(router) = router.filter(|_| problems.is_empty()) else {
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
        state,
        notes: cfg.notes,
        signer,
    })
}

/// Add a mode's endpoints; a host and path served twice is a problem at `path`.
fn register(
    endpoints: &mut Endpoints,
    list: Vec<(EndpointAt, Arc<dyn Endpoint>)>,
    path: &str,
    problems: &mut Problems,
) {
    for (at, e) in list {
        if let Err(at) = endpoints.insert(at, e) {
            problems.push(
                path,
                format!("endpoint path {at} is already served by another realm"),
            );
        }
    }
}

/// The endpoints of the oidc providers, the pkce realms and the key registry; returns the oidc
/// providers (routes name them).
fn endpoint_modes(
    cfg: &FileConfig,
    warm: &Context,
    state: &Store,
    endpoints: &mut Endpoints,
    problems: &mut Problems,
) -> HashMap<String, Arc<oidc::Provider>> {
    let (providers, oidc_endpoints) = oidc::build_providers(&cfg.oidc, warm, state, problems);
    for (path, list) in oidc_endpoints {
        register(endpoints, list, &path, problems);
    }
    for (path, eps) in crate::auth::pkce::build_realms(&cfg.pkce, warm, state, problems) {
        register(endpoints, eps, &path, problems);
    }
    if let Some(kr) = &cfg.key_registry {
        match crate::auth::signed::keyserver::build(kr, "key_registry", state) {
            Ok(ep) => register(endpoints, vec![ep], "key_registry.path", problems),
            Err(p) => problems.0.extend(p.0),
        }
    }
    providers
}

/// Opaque realms (users, keys, token endpoints).
async fn build_realms(
    cfg: &FileConfig,
    warm: &Context,
    state: &Store,
    source: Option<&Path>,
    endpoints: &mut Endpoints,
    problems: &mut Problems,
) -> HashMap<String, Arc<opaque::Realm>> {
    let mut realms = HashMap::new();
    for (name, r) in &cfg.opaque {
        let path = format!("opaque.{name}");
        match opaque::build_realm(name, r, &path, warm, state, source).await {
            Ok((realm, eps)) => {
                realms.insert(name.clone(), realm);
                let list = eps
                    .into_iter()
                    .map(|(p, e)| (EndpointAt::any_host(p), e))
                    .collect();
                register(endpoints, list, &path, problems);
            }
            Err(errs) => problems.0.extend(errs.0),
        }
    }
    realms
}
