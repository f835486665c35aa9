//! SIGHUP reload: the same load path as `check`; success swaps the snapshot in one `ArcSwap`
//! store, any problem keeps the old snapshot, logs every problem and counts
//! `authedge_config_reload_total{result="error"}`. Reloads run one at a time on the control
//! runtime; requests in flight keep the snapshot they loaded.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::signal::unix::Signal;

use crate::config::Problems;
use crate::context::Context;
use crate::snapshot::{self, Snapshot};
use crate::tls::Certificates;

pub struct Reloader {
    path: PathBuf,
    current: Arc<ArcSwap<Snapshot>>,
    warm: Arc<Context>,
    generation: AtomicU64,
    /// The TLS listeners' certificates, re-read on every SIGHUP.
    certs: Option<Arc<Certificates>>,
}

impl Reloader {
    pub fn new(path: PathBuf, current: Arc<ArcSwap<Snapshot>>, warm: Arc<Context>) -> Self {
        let generation = AtomicU64::new(current.load().generation);
        Reloader {
            path,
            current,
            warm,
            generation,
            certs: None,
        }
    }

    /// Re-read these certificates on every SIGHUP too (whether or not the config loads).
    pub fn with_certificates(mut self, certs: Arc<Certificates>) -> Self {
        self.certs = Some(certs);
        self
    }

    /// Load the file again and swap it in, or keep the old snapshot.
    pub async fn reload(&self) -> Result<u64, Problems> {
        let next = self.generation.load(Ordering::SeqCst) + 1;
        let metrics = &self.warm.metrics;
        match snapshot::load(&self.path, &self.warm, next).await {
            Ok(snap) => {
                {
                    let old = self.current.load();
                    if old.listeners != snap.listeners || old.metrics != snap.metrics {
                        tracing::warn!("listener or metrics address changes need a restart; the old listeners stay");
                    }
                    if old.server.threads != snap.server.threads {
                        tracing::warn!("server.threads changes need a restart");
                    }
                }
                self.current.store(Arc::new(snap));
                // Objects only the old snapshot used die with it (once requests in flight
                // drop it; a later sweep catches those) and their tasks stop.
                self.warm.sweep();
                self.generation.store(next, Ordering::SeqCst);
                metrics.generation.set(next as i64);
                metrics.reloads.with_label_values(&["success"]).inc();
                tracing::info!(generation = next, "config reloaded");
                Ok(next)
            }
            Err(problems) => {
                metrics.reloads.with_label_values(&["error"]).inc();
                for p in &problems.0 {
                    tracing::error!(problem = %p, "config reload rejected; keeping the running config");
                }
                Err(problems)
            }
        }
    }

    /// Reload on every SIGHUP, forever. The signal stream is created by the caller before the
    /// server starts, so an early SIGHUP cannot kill the process.
    pub async fn watch(self: Arc<Self>, mut hangups: Signal) {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading {}", self.path.display());
            let _ = self.reload().await;
            if let Some(c) = &self.certs {
                c.reload();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn config(i: usize, hash: &str) -> String {
        format!(
            r#"
listeners: [{{address: "127.0.0.1:1"}}]
upstreams: {{echo: {{echo: true}}}}
opaque:
  main:
    allow_weak_hashes: true
    keys: [{{id: k1, secret: {{value: "0123456789abcdef0123456789abcdef"}}}}]
    rate_limit: {{requests_per_second: {rps}, burst: 10}}
    users: [{{id: "1", username: alice, password_hash: '{hash}'}}]
routes:
  - {{id: jwt, path: /jwt, upstream: echo, auth: [{{type: jwt, providers: [{{issuer: "http://127.0.0.1:1/p{i}", refresh: {refresh}s}}]}}]}}
  - {{id: opaque, path: /opaque, upstream: echo, auth: [{{type: opaque, realm: main}}]}}
"#,
            rps = 1 + i,
            refresh = 60 + i,
        )
    }

    /// Poll (bounded) until `f` holds: aborted tasks drop their futures on the runtime.
    async fn settle(mut f: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if f() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        f()
    }

    /// 200 reloads, each changing the JWT provider (its issuer and refresh) and the realm's
    /// quota: the live shared objects and background tasks stay at the first load's count.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reloads_with_changing_provider_and_quota_leak_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authedge.yaml");
        let params = argon2::Params::new(256, 1, 1, None).unwrap();
        let hash = crate::auth::opaque::hash_password(b"pw", Some(params)).unwrap();
        std::fs::write(&path, config(0, &hash)).unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let ctx = Arc::new(
            Context::new(tokio::runtime::Handle::current(), metrics.clone(), false).unwrap(),
        );
        let first = snapshot::load(&path, &ctx, 1).await.unwrap();
        let current = Arc::new(ArcSwap::from_pointee(first));
        let reloader = Reloader::new(path.clone(), current.clone(), ctx.clone());
        ctx.sweep();
        let (objects, tasks) = (ctx.live_shared(), ctx.live_tasks());
        // The JWKS cache with its refresh task. (The realm's limits and revocations live in the
        // state store, whose entries expire by themselves: a changed quota is a new key there.)
        assert!(
            objects >= 1,
            "shared objects after the first load: {objects}"
        );
        assert!(tasks >= 1, "background tasks after the first load: {tasks}");
        for i in 1..=200 {
            std::fs::write(&path, config(i, &hash)).unwrap();
            assert_eq!(reloader.reload().await.unwrap(), 1 + i as u64);
            assert!(
                settle(|| ctx.live_shared() == objects && ctx.live_tasks() == tasks).await,
                "reload {i}: {} shared objects (first load {objects}), {} tasks (first load {tasks})",
                ctx.live_shared(),
                ctx.live_tasks()
            );
        }
        assert_eq!(metrics.shared_objects.get(), objects as i64);
        assert_eq!(metrics.background_tasks.get(), tasks);
        // The quota did change: the live limiter is not the first one.
        let snap = current.load();
        assert_eq!(snap.generation, 201);
    }
}
