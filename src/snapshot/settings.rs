//! Building the process-level settings: server and listener checks, identity headers,
//! upstreams, the signer block and the shared-state store.

use super::*;

/// The `signer:` block, required by (and only with) `role: signer` listeners.
pub(super) fn build_signer(
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
        (Some(s), Some(_)) => match crate::signer::sign::build(s, "signer", warm) {
            Ok(b) => Some(b),
            Err(p) => {
                problems.0.extend(p.0);
                None
            }
        },
    }
}

/// Server threads, listeners and the metrics address.
pub(super) fn check_server(cfg: &FileConfig, problems: &mut Problems) {
    if cfg.server.threads == 0 {
        problems.push("server.threads", "must be at least 1");
    }
    if cfg.server.max_connections == Some(0) {
        problems.push("server.max_connections", "must be at least 1");
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

pub(super) fn check_listener(l: &ListenerConfig, p: &str, problems: &mut Problems) {
    if l.max_connections == Some(0) {
        problems.push(format!("{p}.max_connections"), "must be at least 1");
    }
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
pub(super) fn identity_headers(
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

pub(super) fn build_upstreams(
    cfg: &FileConfig,
    problems: &mut Problems,
) -> HashMap<String, Arc<Upstream>> {
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
