//! Connection caps: how many client connections the process and each listener hold open at once.
//!
//! Pingora's `ConnectionFilter` sees an accept but never the close, so it cannot count open
//! connections. A service's `ServerApp::process_new` runs for the whole life of a connection (the
//! HTTP/1.1 keep-alive loop and the HTTP/2 session both live inside it), so `Capped` wraps the
//! proxy's app: a connection takes a permit from the process-wide semaphore (and its listener's, if
//! that listener has its own cap) before the proxy sees it and gives them back when the app is
//! done with it. Past the cap the connection is answered `503` (HTTP/1.x) or closed at once (h2,
//! where an HTTP/1 answer would be garbage) and counted. Cost: two uncontended atomic operations
//! per connection, nothing per request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::schema::ListenerConfig;

/// Where a connection arrived, to find its listener's own cap.
#[derive(Debug, Clone, PartialEq)]
enum Bind {
    Inet(SocketAddr),
    Unix(PathBuf),
}

/// A listener with its own cap.
struct ListenerCap {
    bind: Bind,
    permits: Arc<Semaphore>,
    refused: prometheus::IntCounter,
}

/// The caps shared by every service of the process.
pub struct Caps {
    global: Arc<Semaphore>,
    global_refused: prometheus::IntCounter,
    open: prometheus::IntGauge,
    listeners: Vec<ListenerCap>,
}

/// The process-wide default: half the open-file limit (the other half is for upstream
/// connections, which a busy downstream connection holds one of, and everything else).
pub fn default_global_cap() -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and has no other effect.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    let soft = if ok { lim.rlim_cur } else { 1024 };
    (soft / 2).clamp(64, 1_000_000) as u32
}

/// Raise the soft open-file limit to the hard one, as nginx's `worker_rlimit_nofile` lets you:
/// connection caps are only useful below a limit the process can actually reach.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the given struct only.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

impl Caps {
    /// Build the caps and their metrics: `authedge_downstream_connections` (open now) and
    /// `authedge_downstream_connections_refused_total{listener}` (`*` for the process cap).
    pub fn new(
        global: u32,
        listeners: &[ListenerConfig],
        registry: &prometheus::Registry,
    ) -> Result<Caps, prometheus::Error> {
        let open = prometheus::IntGauge::new(
            "authedge_downstream_connections",
            "Client connections open now, over every listener",
        )?;
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "authedge_downstream_connections_refused_total",
                "Client connections refused because a connection cap was reached",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        let mut caps = Vec::new();
        for l in listeners {
            let (Some(max), Some(bind)) = (l.max_connections, bind_of(l)) else {
                continue;
            };
            let label = l.address.as_deref().or(l.unix.as_deref()).unwrap_or("");
            caps.push(ListenerCap {
                bind,
                permits: Arc::new(Semaphore::new(max as usize)),
                refused: refused.with_label_values(&[label]),
            });
        }
        Ok(Caps {
            global: Arc::new(Semaphore::new(global as usize)),
            global_refused: refused.with_label_values(&["*"]),
            open,
            listeners: caps,
        })
    }

    /// The permits for one new connection, or `None` (and a count) when a cap is reached.
    fn admit(&self, stream: &Stream) -> Option<Admitted> {
        let own = match self.listener_of(stream) {
            Some(l) => match l.permits.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    l.refused.inc();
                    return None;
                }
            },
            None => None,
        };
        let Ok(global) = self.global.clone().try_acquire_owned() else {
            self.global_refused.inc();
            return None;
        };
        self.open.inc();
        Some(Admitted {
            _own: own,
            _global: global,
            open: self.open.clone(),
        })
    }

    /// The listener with its own cap this connection came in on, if any. Only looked up when
    /// some listener has a cap (one `getsockname` per connection).
    fn listener_of(&self, stream: &Stream) -> Option<&ListenerCap> {
        if self.listeners.is_empty() {
            return None;
        }
        let digest = stream.get_socket_digest()?;
        let local = digest.local_addr()?;
        if let Some(inet) = local.as_inet() {
            // Exact address first; then a wildcard bind on the same port.
            self.listeners
                .iter()
                .find(|l| l.bind == Bind::Inet(*inet))
                .or_else(|| {
                    self.listeners.iter().find(|l| match &l.bind {
                        Bind::Inet(b) => b.ip().is_unspecified() && b.port() == inet.port(),
                        Bind::Unix(_) => false,
                    })
                })
        } else {
            let path = local.as_unix()?.as_pathname()?;
            self.listeners
                .iter()
                .find(|l| matches!(&l.bind, Bind::Unix(p) if p == path))
        }
    }
}

fn bind_of(l: &ListenerConfig) -> Option<Bind> {
    match (&l.address, &l.unix) {
        (Some(a), _) => a.parse().ok().map(Bind::Inet),
        (None, Some(u)) => Some(Bind::Unix(PathBuf::from(u))),
        _ => None,
    }
}

/// What an admitted connection holds until it ends (also when its task is cancelled).
struct Admitted {
    _own: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
    open: prometheus::IntGauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A service's app behind the caps.
pub struct Capped<A> {
    inner: Arc<A>,
    caps: Arc<Caps>,
}

impl<A> Capped<A> {
    pub fn new(inner: A, caps: Arc<Caps>) -> Self {
        Capped {
            inner: Arc::new(inner),
            caps,
        }
    }
}

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n";

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Capped<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(admitted) = self.caps.admit(&stream) else {
            if !matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                // Best effort, bounded: a client that does not read gets the close only.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    stream.write_all(REFUSAL).await?;
                    stream.flush().await?;
                    stream.shutdown().await
                })
                .await;
            }
            return None;
        };
        let next = self.inner.process_new(stream, shutdown).await;
        drop(admitted);
        next
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
