//! SIGHUP reload: the same load path as `check`; success swaps the snapshot in one `ArcSwap`
//! store, any problem keeps the old snapshot, logs every problem and counts
//! `authedge_config_reload_total{result="error"}`. Reloads run one at a time on the control
//! runtime; requests in flight keep the snapshot they loaded.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::signal::unix::Signal;

use crate::config::{self, Problems};
use crate::snapshot::{Snapshot, Warm};

pub struct Reloader {
    path: PathBuf,
    current: Arc<ArcSwap<Snapshot>>,
    warm: Arc<Warm>,
    generation: AtomicU64,
}

impl Reloader {
    pub fn new(path: PathBuf, current: Arc<ArcSwap<Snapshot>>, warm: Arc<Warm>) -> Self {
        let generation = AtomicU64::new(current.load().generation);
        Reloader {
            path,
            current,
            warm,
            generation,
        }
    }

    /// Load the file again and swap it in, or keep the old snapshot.
    pub async fn reload(&self) -> Result<u64, Problems> {
        let next = self.generation.load(Ordering::SeqCst) + 1;
        let metrics = &self.warm.metrics;
        match config::load(&self.path, &self.warm, next).await {
            Ok(snap) => {
                let old = self.current.load();
                if old.listeners != snap.listeners || old.metrics != snap.metrics {
                    tracing::warn!("listener or metrics address changes need a restart; the old listeners stay");
                }
                if old.server.threads != snap.server.threads {
                    tracing::warn!("server.threads changes need a restart");
                }
                self.current.store(Arc::new(snap));
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
        }
    }
}
