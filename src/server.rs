//! Wiring: the control runtime, the first load, logging, and the Pingora services (proxy,
//! metrics side port). Called by `authedge run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::schema::{ListenerConfig, ListenerRole, LogConfig, LogFormat};
use crate::config::{self, Problems};
use crate::conncap::{Capped, Caps};
use crate::context::Context;
use crate::metrics::{Metrics, SidePort};
use crate::proxy::Edge;
use crate::reload::Reloader;
use crate::snapshot::{self, Snapshot};
use crate::tls::Certificates;

/// Why `authedge run` could not start serving (after the config loaded, only what the machine
/// refuses: runtimes, signals, sockets, files).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No config to run (none given, and a drop-in's variables are missing or bad).
    #[error(transparent)]
    DropIn(#[from] crate::config::dropin::DropInError),
    /// The config has problems (each with its key path, one per line).
    #[error("{0}")]
    Config(Problems),
    #[error("cannot start the {which} runtime: {source}")]
    Runtime {
        which: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("listener {listener}: TLS: {source}")]
    ListenerTls {
        listener: String,
        #[source]
        source: crate::tls::TlsError,
    },
    #[error("a listener needs exactly one of address or unix")]
    ListenerAddress,
    #[error("cannot trap SIGHUP: {0}")]
    Signal(#[source] std::io::Error),
    #[error("server.pid_file {path}: cannot write: {source}")]
    PidFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The runtime for background work: config loads, key fetches and refreshes, SIGHUP. Pingora's
/// services each run their own runtimes; this one lives for the whole process.
pub fn control_runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("authedge-ctl")
        .enable_all()
        .build()
        .map_err(|source| RunError::Runtime {
            which: "control",
            source,
        })
}

/// `authedge check`: the load path of `run`, without side effects. `Ok` carries a summary.
pub fn check(path: &Path) -> Result<String, Problems> {
    let one = |m: String| Problems(vec![config::Problem::new("", m)]);
    let rt = control_runtime().map_err(|e| one(e.to_string()))?;
    let metrics = Arc::new(Metrics::new().map_err(|e| one(e.to_string()))?);
    let warm = Context::new(rt.handle().clone(), metrics, true)
        .map_err(|e| one(e.to_string()))?
        .with_config_dir(path);
    let snap = rt.block_on(snapshot::load(path, &warm, 1))?;
    let upstreams: std::collections::HashSet<&str> = snap
        .routes
        .iter()
        .map(|r| r.upstream.name.as_str())
        .collect();
    let mut summary = String::new();
    for n in &snap.notes {
        summary.push_str(&format!("note: {n}\n"));
    }
    summary.push_str(&format!(
        "ok: {} routes, {} upstreams",
        snap.routes.len(),
        upstreams.len()
    ));
    Ok(summary)
}

fn init_logging(log: &LogConfig, metrics: &Metrics) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    // The process ends through Pingora's exit; the writer lives until then.
    std::mem::forget(guard);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let counter = prometheus::IntCounter::new(
        "authedge_upstream_pool_reuse_races_total",
        "Pooled upstream connections Pingora could not take (a race; a new connection was used)",
    )
    .ok()
    .filter(|c| metrics.registry.register(Box::new(c.clone())).is_ok());
    let noise = crate::lognoise::PoolRaceFilter { counter };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(noise).with(filter);
    let _ = match log.format {
        LogFormat::Json => registry.with(fmt.json()).try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    };
}

/// One Pingora service per listener role, each with its own `ProxyHttp`; plain listeners with
/// `h2c: true` get a service of their own (Pingora's h2c switch is per service).
fn add_role_services(
    server: &mut Server,
    listeners: &[ListenerConfig],
    certs: &Certificates,
    current: &Arc<ArcSwap<Snapshot>>,
    metrics: &Arc<Metrics>,
    keepalive_request_limit: u32,
    caps: &Arc<Caps>,
) -> Result<(), RunError> {
    for h2c in [false, true] {
        let mine: Vec<(usize, &ListenerConfig)> = listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| l.role == ListenerRole::ReverseProxy && l.h2c == h2c)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let name = if h2c { "authedge h2c" } else { "authedge" };
        let mut app = pingora::proxy::http_proxy(
            &server.configuration,
            Edge::new(current.clone(), metrics.clone()),
        );
        let limit = keepalive_request_limit;
        let mut opts = pingora::apps::HttpServerOptions::default();
        // Pingora counts reuses after the first request.
        opts.keepalive_request_limit = (limit > 0).then(|| limit - 1);
        opts.h2c = h2c;
        app.server_options = Some(opts);
        let mut proxy = Service::new(name.to_string(), Capped::new(app, caps.clone()));
        for (i, l) in mine {
            add_listener(&mut proxy, l, certs.store(i))?;
        }
        server.add_service(proxy);
    }
    let signers: Vec<(usize, &ListenerConfig)> = listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.role == ListenerRole::Signer)
        .collect();
    if !signers.is_empty() {
        let mut app = pingora::proxy::http_proxy(
            &server.configuration,
            crate::signer::proxy::SignerProxy::new(current.clone()),
        );
        let mut opts = pingora::apps::HttpServerOptions::default();
        // A connection that opens with CONNECT is the SignerApp's (a MITM tunnel, or 403
        // without a CA, as jwtproxy); a later CONNECT reaches the signer's request_filter,
        // which refuses it (Pingora would answer 405 itself).
        opts.allow_connect_method_proxying = true;
        app.server_options = Some(opts);
        let has_ca = current
            .load()
            .signer
            .as_ref()
            .is_some_and(|s| s.mitm.is_some());
        if !has_ca {
            tracing::warn!(
                "signer: no ca_cert/ca_key: CONNECT (HTTPS targets) is refused with 403"
            );
        }
        let app = crate::signer::connect::SignerApp::new(app, current.clone());
        let mut signer = Service::new("authedge signer".into(), Capped::new(app, caps.clone()));
        for (i, l) in signers {
            add_listener(&mut signer, l, certs.store(i))?;
        }
        server.add_service(signer);
    }
    Ok(())
}

/// Bind one listener (TCP, TLS or unix socket) to a service.
fn add_listener<A>(
    svc: &mut Service<A>,
    l: &ListenerConfig,
    store: Option<Arc<crate::tls::CertStore>>,
) -> Result<(), RunError> {
    match (&l.address, &l.unix, &l.tls, store) {
        (Some(a), None, None, _) => svc.add_tcp(a),
        (Some(a), None, Some(t), Some(store)) => {
            let settings =
                crate::tls::settings(store, &t.alpn).map_err(|source| RunError::ListenerTls {
                    listener: a.clone(),
                    source,
                })?;
            svc.add_tls_with_settings(a, None, settings)
        }
        (None, Some(u), _, _) => svc.add_uds(u, None),
        _ => return Err(RunError::ListenerAddress),
    }
    Ok(())
}

/// What `run` starts with: the runtimes, the metrics registry, the context and the first
/// snapshot (logging set up from it).
struct Started {
    rt: tokio::runtime::Runtime,
    out_rt: tokio::runtime::Runtime,
    metrics: Arc<Metrics>,
    warm: Arc<Context>,
    snap: Snapshot,
}

/// The runtimes and the first load; logging is set up as the config says.
fn start(path: &Path) -> Result<Started, RunError> {
    let rt = control_runtime()?;
    let out_rt = crate::outbound::runtime().map_err(|source| RunError::Runtime {
        which: "outbound",
        source,
    })?;
    let metrics = Arc::new(Metrics::new()?);
    let warm = Arc::new(
        Context::new(rt.handle().clone(), metrics.clone(), false)
            .and_then(|c| c.with_outbound(out_rt.handle().clone()))?
            .with_config_dir(path),
    );
    let snap: Snapshot = rt
        .block_on(snapshot::load(path, &warm, 1))
        .map_err(RunError::Config)?;
    init_logging(&snap.log, &metrics);
    for n in &snap.notes {
        tracing::warn!("{n}");
    }
    metrics.generation.set(1);
    metrics.reloads.with_label_values(&["success"]);
    Ok(Started {
        rt,
        out_rt,
        metrics,
        warm,
        snap,
    })
}

/// Pingora's server settings from the `server` block.
fn server_conf(s: &crate::config::schema::ServerConfig) -> ServerConf {
    ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.grace_period_seconds),
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        ..ServerConf::default()
    }
}

/// The metrics side port, when configured.
fn add_side_port(
    server: &mut Server,
    cfg: Option<&crate::config::schema::MetricsConfig>,
    metrics: &Arc<Metrics>,
    current: Arc<ArcSwap<Snapshot>>,
) {
    let Some(m) = cfg else { return };
    let mut side = Service::new(
        "authedge metrics".into(),
        SidePort {
            metrics: metrics.clone(),
            ready: current,
        },
    );
    side.threads = Some(1);
    side.add_tcp(&m.address);
    server.add_service(side);
}

/// `authedge run`: load, start every service, serve until a signal ends the process.
pub fn run(path: PathBuf) -> Result<(), RunError> {
    // SIGHUP kills a process that does not handle it; ignore it until the reload task owns it.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let Started {
        rt,
        out_rt,
        metrics,
        warm,
        snap,
    } = start(&path)?;
    let conf = server_conf(&snap.server);
    let pid_file = snap.server.pid_file.clone();
    let listeners = snap.listeners.clone();
    let keepalive_request_limit = snap.server.max_requests_per_connection;
    let metrics_cfg = snap.metrics.clone();
    let (routes, generation) = (snap.routes.len(), snap.generation);

    let certs = Arc::new(Certificates::build(&listeners, &metrics)?);
    crate::conncap::raise_nofile_limit();
    let global_cap = snap
        .server
        .max_connections
        .unwrap_or_else(crate::conncap::default_global_cap);
    let caps = Arc::new(Caps::new(global_cap, &listeners, &metrics.registry)?);
    let current = Arc::new(ArcSwap::from_pointee(snap));
    let reloader = Arc::new(
        Reloader::new(path.clone(), current.clone(), warm.clone()).with_certificates(certs.clone()),
    );
    let hangups = rt
        .block_on(async { signal(SignalKind::hangup()) })
        .map_err(RunError::Signal)?;
    rt.spawn(reloader.watch(hangups));

    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    add_role_services(
        &mut server,
        &listeners,
        &certs,
        &current,
        &metrics,
        keepalive_request_limit,
        &caps,
    )?;
    add_side_port(&mut server, metrics_cfg.as_ref(), &metrics, current);
    // Pingora writes its pid file only when it daemonizes; write it here so that
    // `kill -HUP $(cat PID_FILE)` reloads this instance and no other.
    let pid = std::process::id();
    std::fs::write(&pid_file, format!("{pid}\n")).map_err(|source| RunError::PidFile {
        path: pid_file.clone(),
        source,
    })?;
    tracing::info!(routes, generation, pid, pid_file = %pid_file, config = %path.display(), "authedge starting");
    // Keep the control and outbound runtimes alive for the life of the process.
    std::mem::forget(rt);
    std::mem::forget(out_rt);
    server.run_forever()
}
