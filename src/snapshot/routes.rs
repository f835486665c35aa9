//! Building the routes: match keys, each filter dispatched to its mode, each route's chain.

use super::*;
/// What the routes' filters are built against.
pub(super) struct Shared<'a> {
    pub(super) warm: &'a Context,
    pub(super) state: &'a Store,
    pub(super) realms: &'a HashMap<String, Arc<opaque::Realm>>,
    pub(super) oidc: &'a HashMap<String, Arc<oidc::Provider>>,
    pub(super) upstreams: &'a HashMap<String, Arc<Upstream>>,
    pub(super) cfg: &'a FileConfig,
}

/// A route's match key: canonical prefix, methods, host (lower case, no trailing dot).
pub(super) fn route_key(
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
pub(super) async fn build_filter(
    f: &FilterConfig,
    fp: &str,
    shared: &Shared<'_>,
) -> Result<Built, Problems> {
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
pub(super) async fn build_route(
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
    let rewrite = match (&r.rewrite_prefix, normalize_prefix(&r.path)) {
        (Some(to), Ok(prefix)) => {
            let rw = PrefixRewrite::new(&prefix, to);
            if rw.is_none() {
                problems.push(
                    format!("{p}.rewrite_prefix"),
                    format!("{to:?} must be empty or an absolute path (no query, fragment, spaces or control characters)"),
                );
            }
            rw
        }
        _ => None,
    };
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
    let (strip_credentials, strip_cookies) = credentials(&chain, r.keep_credentials, owned);
    let up = up?;
    let allowed = if r.public {
        vec![("public", OnceLock::new())]
    } else {
        chain.iter().map(|f| (f.kind(), OnceLock::new())).collect()
    };
    Some(RouteEntry {
        duration: OnceLock::new(),
        allowed: allowed.into(),
        id,
        upstream: up,
        public: r.public,
        max_body: chain.iter().map(|f| f.max_body()).max().unwrap_or(0),
        chain,
        strip_credentials,
        strip_cookies,
        rewrite,
    })
}

/// The credential headers and cookies a chain's filters read, removed before the upstream
/// unless the route keeps them; the identity headers they set join `owned`.
fn credentials(
    chain: &Chain,
    keep: bool,
    owned: &mut Vec<HeaderName>,
) -> (Vec<HeaderName>, Vec<Box<str>>) {
    let mut headers: Vec<HeaderName> = Vec::new();
    let mut cookies: Vec<Box<str>> = Vec::new();
    for f in chain {
        owned.extend(f.identity_headers());
        if keep {
            continue;
        }
        for h in f.credential_headers() {
            if !headers.contains(h) {
                headers.push(h.clone());
            }
        }
        for c in f.credential_cookies() {
            if !cookies.contains(&c) {
                cookies.push(c);
            }
        }
    }
    (headers, cookies)
}

/// Every route: its match key (for the router) and its compiled entry; ids must be unique.
pub(super) async fn build_routes(
    shared: &Shared<'_>,
    owned: &mut Vec<HeaderName>,
    endpoints: &mut Endpoints,
    problems: &mut Problems,
) -> (Vec<RouteKey>, Vec<RouteEntry>) {
    let cfg = shared.cfg;
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
        let Some(key) = route_key(r, &p, problems) else {
            continue;
        };
        keys.push(key);
        let built = build_route(r, &p, id, &shared, owned, endpoints, problems).await;
        routes.extend(built);
    }
    (keys, routes)
}
