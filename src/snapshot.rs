//! The immutable, fully built config: route table, compiled chains, upstreams, endpoints. Shared
//! through an `ArcSwap`; a request loads it once and sees one whole version.
//!
//! What outlives a snapshot lives in [`crate::context`]: a reload builds a new snapshot against
//! the same [`Context`], so caches of unchanged providers and realms carry over.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
/// ([`config::load`](crate::config::load)), then compile it against `ctx`.
pub async fn load(path: &Path, ctx: &Context, generation: u64) -> Result<Snapshot, Problems> {
    let cfg = crate::config::load(path).await?;
    compile(cfg, ctx, generation, Some(path)).await
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
    let (oidc, oidc_endpoints) = oidc::build_providers(&cfg.oidc, warm, &state, &mut problems);
    for (path, list) in oidc_endpoints {
        register(&mut endpoints, list, &path, &mut problems);
    }
    for (path, eps) in crate::auth::pkce::build_realms(&cfg.pkce, warm, &state, &mut problems) {
        register(&mut endpoints, eps, &path, &mut problems);
    }
    let signer = build_signer(&cfg, warm, &mut problems);
    if let Some(kr) = &cfg.key_registry {
        match crate::auth::signed::keyserver::build(kr, "key_registry", &state) {
            Ok(ep) => register(&mut endpoints, vec![ep], "key_registry.path", &mut problems),
            Err(p) => problems.0.extend(p.0),
        }
    }
    let shared = Shared {
        oidc: &oidc,
        warm,
        state: &state,
        realms: &realms,
        upstreams: &upstreams,
        cfg: &cfg,
    };
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
        let Some(key) = route_key(r, &p, &mut problems) else {
            continue;
        };
        keys.push(key);
        let built = build_route(
            r,
            &p,
            id,
            &shared,
            &mut owned,
            &mut endpoints,
            &mut problems,
        )
        .await;
        routes.extend(built);
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

/// The `signer:` block, required by (and only with) `role: signer` listeners.
fn build_signer(
    cfg: &FileConfig,
    warm: &Context,
    problems: &mut Problems,
) -> Option<Arc<crate::signer::sign::Signer>> {
    let wanted = cfg
        .listeners
        .iter()
        .position(|l| l.role == ListenerRole::Signer);
    match (&cfg.signer, wanted) {
        (None, None) => None,
        (None, Some(i)) => {
            problems.push(
                format!("listeners[{i}].role"),
                "role signer needs a top-level signer: block",
            );
            None
        }
        (Some(_), None) => {
            problems.push("signer", "no listener has role: signer");
            None
        }
        (Some(s), Some(_)) => {
            match crate::signer::sign::build(s, "signer", &|f| warm.resolve_path(f)) {
                Ok(b) => Some(b),
                Err(p) => {
                    problems.0.extend(p.0);
                    None
                }
            }
        }
    }
}

/// What the routes' filters are built against.
struct Shared<'a> {
    warm: &'a Context,
    state: &'a Store,
    realms: &'a HashMap<String, Arc<opaque::Realm>>,
    oidc: &'a HashMap<String, Arc<oidc::Provider>>,
    upstreams: &'a HashMap<String, Arc<Upstream>>,
    cfg: &'a FileConfig,
}

/// Server threads, listeners and the metrics address.
fn check_server(cfg: &FileConfig, problems: &mut Problems) {
    if cfg.server.threads == 0 {
        problems.push("server.threads", "must be at least 1");
    }
    if cfg.listeners.is_empty() {
        problems.push("listeners", "at least one listener is needed");
    }
    for (i, l) in cfg.listeners.iter().enumerate() {
        check_listener(l, &format!("listeners[{i}]"), problems);
    }
    if let Some(m) = &cfg.metrics {
        if m.address.parse::<std::net::SocketAddr>().is_err() {
            problems.push(
                "metrics.address",
                format!("{:?} is not an IP:port address", m.address),
            );
        }
    }
}

fn check_listener(l: &ListenerConfig, p: &str, problems: &mut Problems) {
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
        _ => problems.push(p, "give exactly one of address or unix"),
    }
    if let Some(tls) = &l.tls {
        crate::tls::check(tls, p, problems);
        if l.h2c {
            problems.push(
                format!("{p}.h2c"),
                "h2c is for plain listeners; TLS offers h2 by alpn",
            );
        }
    }
}

/// The standard identity headers and the extra names the edge owns.
fn identity_headers(
    cfg: &FileConfig,
    problems: &mut Problems,
) -> (StandardHeaders, Vec<HeaderName>) {
    let ih = &cfg.identity_headers;
    let standard = StandardHeaders {
        subject: header_name(&ih.subject, "identity_headers.subject", problems),
        issuer: header_name(&ih.issuer, "identity_headers.issuer", problems),
        mode: header_name(&ih.mode, "identity_headers.mode", problems),
        scopes: header_name(&ih.scopes, "identity_headers.scopes", problems),
    };
    let mut owned: Vec<HeaderName> = Vec::new();
    for (i, s) in ih.strip.iter().enumerate() {
        if let Some(n) = header_name(s, &format!("identity_headers.strip[{i}]"), problems) {
            owned.push(n);
        }
    }
    (standard, owned)
}

fn build_upstreams(cfg: &FileConfig, problems: &mut Problems) -> HashMap<String, Arc<Upstream>> {
    let mut upstreams = HashMap::new();
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
    upstreams
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

/// A route's match key: canonical prefix, methods, host (lower case, no trailing dot).
fn route_key(
    r: &crate::config::schema::RouteConfig,
    p: &str,
    problems: &mut Problems,
) -> Option<RouteKey> {
    let prefix = match normalize_prefix(&r.path) {
        Ok(pr) => pr,
        Err(e) => {
            problems.push(format!("{p}.path"), e);
            return None;
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
    let host = r
        .host
        .as_ref()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    Some(RouteKey {
        host,
        prefix,
        methods,
    })
}

/// One filter: dispatch on the mode.
async fn build_filter(f: &FilterConfig, fp: &str, shared: &Shared<'_>) -> Result<Built, Problems> {
    match f {
        FilterConfig::Jwt(c) => jwt::build(c, fp, shared.warm).await.map(Built::filter),
        FilterConfig::Opaque(c) => {
            opaque::build_filter(c, shared.realms, fp, shared.warm).map(Built::filter)
        }
        FilterConfig::Signed(c) => {
            signed::build(c, fp, shared.warm, shared.state).map(Built::filter)
        }
        FilterConfig::Oidc(c) => oidc::build_filter(c, shared.oidc, &shared.cfg.oidc, fp),
        FilterConfig::Probe(c) => probe::build(c, fp),
    }
}

/// A route's chain, credentials to strip, and counters. `None` when the upstream is unknown.
async fn build_route(
    r: &crate::config::schema::RouteConfig,
    p: &str,
    id: Arc<str>,
    shared: &Shared<'_>,
    owned: &mut Vec<HeaderName>,
    endpoints: &mut Endpoints,
    problems: &mut Problems,
) -> Option<RouteEntry> {
    let up = shared.upstreams.get(&r.upstream).cloned();
    if up.is_none() && !shared.cfg.upstreams.contains_key(&r.upstream) {
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
        match build_filter(f, &fp, shared).await {
            Ok(b) => {
                register(endpoints, b.endpoints, &fp, problems);
                chain.push(b.filter);
            }
            // A realm that failed to build has reported its own problem: a route naming it
            // adds nothing but a misleading "unknown realm".
            Err(_)
                if matches!(f, FilterConfig::Opaque(c) if shared.cfg.opaque.contains_key(&c.realm)
                && !shared.realms.contains_key(&c.realm)) => {}
            Err(errs) => problems.0.extend(errs.0),
        }
    }
    let mut strip_credentials = Vec::new();
    let mut strip_cookies: Vec<Box<str>> = Vec::new();
    for f in &chain {
        owned.extend(f.identity_headers());
        if !r.keep_credentials {
            for h in f.credential_headers() {
                if !strip_credentials.contains(h) {
                    strip_credentials.push(h.clone());
                }
            }
            for c in f.credential_cookies() {
                if !strip_cookies.contains(&c) {
                    strip_cookies.push(c);
                }
            }
        }
    }
    let up = up?;
    let m = &shared.warm.metrics;
    let allowed = if r.public {
        vec![m.requests.with_label_values(&[&id, "public", "allow", ""])]
    } else {
        chain
            .iter()
            .map(|f| m.requests.with_label_values(&[&id, f.kind(), "allow", ""]))
            .collect()
    };
    Some(RouteEntry {
        duration: m.duration.with_label_values(&[&id]),
        id,
        upstream: up,
        public: r.public,
        max_body: chain.iter().map(|f| f.max_body()).max().unwrap_or(0),
        chain,
        strip_credentials,
        strip_cookies,
        allowed,
    })
}

/// The store the `state` block asks for, shared across reloads while the block is unchanged
/// (the same Redis connection; the same memory store when absent).
pub fn state_store(warm: &Warm, cfg: Option<&StateConfig>) -> Result<Store, Problems> {
    let plan = state::config::plan(cfg, &|name| warm.resolve_path(name))?;
    let metrics = warm.pinned("state:metrics", || {
        state::metrics::StateMetrics::new(&warm.metrics.registry)
            .unwrap_or_else(|_| state::metrics::StateMetrics::detached())
    });
    let env = state::StateEnv {
        control: &warm.control,
        dry_run: warm.dry_run,
        metrics,
    };
    // One current store: an unchanged block reuses it; a changed one replaces it, and the old
    // store (its connection and background tasks) ends with the last snapshot that holds it.
    let slot = warm.pinned("state:current", || Mutex::new(None::<(String, Store)>));
    let mut slot = match slot.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let key = state::config::reuse_key(plan.as_ref());
    if let Some((k, s)) = slot.as_ref() {
        if k == key {
            return Ok(s.clone());
        }
    }
    let store = state::config::open(plan.as_ref(), &env);
    *slot = Some((key.to_string(), store.clone()));
    Ok(store)
}
