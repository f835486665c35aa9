//! What outlives a reload: the control runtime, the outbound HTTP client (with its runtime), the
//! metrics registry and the map of shared objects (JWKS caches, rate limiters, revocation lists).
//! Below the modes: modes, tokens and the snapshot import it; it imports only metrics and
//! outbound.
//!
//! A shared object is held here only weakly: it lives while a live snapshot's filter holds it.
//! A reload builds the next snapshot while the old one still holds its objects, so unchanged
//! providers and realms reuse theirs; once the old snapshot is dropped, objects only it used die,
//! and [`Context::sweep`] (run after every swap, and on every lookup) forgets their entries and
//! aborts their background tasks. Objects that must live for the whole process (a metric family
//! registered once) are [`pinned`](Context::pinned) instead.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use prometheus::IntGauge;
use tokio::task::AbortHandle;

use crate::metrics::Metrics;
use crate::outbound::Outbound;

/// Building the context failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot build HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot start the outbound runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

struct Entry {
    object: Weak<dyn Any + Send + Sync>,
    tasks: Vec<AbortHandle>,
}

impl Entry {
    fn alive(&self) -> bool {
        self.object.strong_count() > 0
    }
}

#[derive(Default)]
struct Store {
    weak: HashMap<String, Entry>,
    pinned: HashMap<String, Arc<dyn Any + Send + Sync>>,
}

/// State that survives reloads, and the runtime background work (key fetches, refresh timers,
/// reload) runs on.
pub struct Context {
    pub control: tokio::runtime::Handle,
    /// The request-time client (token exchanges, key fetches): its own runtime, deadlines,
    /// bounded bodies, no redirects unless asked.
    pub outbound: Outbound,
    pub metrics: Arc<Metrics>,
    /// `check` builds without side effects (no file rewrites, no background refresh).
    pub dry_run: bool,
    /// The config file's directory: relative file names in the config are resolved against it.
    pub config_dir: Option<std::path::PathBuf>,
    store: Mutex<Store>,
}

/// The former name, kept so code written against `snapshot::Warm` still compiles.
pub type Warm = Context;

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// Counts one live background task in `authedge_background_tasks` until dropped (a task that
/// ends or is aborted drops its future, and with it this guard).
struct LiveTask(IntGauge);

impl LiveTask {
    fn new(g: &IntGauge) -> LiveTask {
        g.inc();
        LiveTask(g.clone())
    }
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Context {
    pub fn new(
        control: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        dry_run: bool,
    ) -> Result<Context, ContextError> {
        Ok(Context {
            outbound: Outbound::new(control.clone())?,
            control,
            metrics,
            dry_run,
            config_dir: None,
            store: Mutex::new(Store::default()),
        })
    }

    /// Run outbound calls on `runtime` instead of the control runtime (`run` gives them a
    /// runtime with worker threads of their own).
    pub fn with_outbound(mut self, runtime: tokio::runtime::Handle) -> Result<Self, ContextError> {
        self.outbound = Outbound::new(runtime)?;
        Ok(self)
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

    fn store(&self) -> MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The shared object under `key`, created by `make` when no live one exists. A key names an
    /// object precisely (for example the provider's issuer and key source), so a changed
    /// provider gets a fresh cache and an unchanged one keeps its keys across reloads. Held
    /// weakly: the caller (a filter of the snapshot being built) keeps it alive.
    pub fn shared<T: Any + Send + Sync>(&self, key: &str, make: impl FnOnce() -> T) -> Arc<T> {
        let mut store = self.store();
        Self::sweep_locked(&mut store);
        if let Some(existing) = store
            .weak
            .get(key)
            .and_then(|e| e.object.upgrade())
            .and_then(|a| a.downcast::<T>().ok())
        {
            return existing;
        }
        let fresh = Arc::new(make());
        let any: Arc<dyn Any + Send + Sync> = fresh.clone();
        let entry = Entry {
            object: Arc::downgrade(&any),
            tasks: Vec::new(),
        };
        if let Some(old) = store.weak.insert(key.to_string(), entry) {
            // Same key, another type: the old object lives on with its holders; its tasks stop.
            old.tasks.iter().for_each(AbortHandle::abort);
        }
        self.metrics.shared_objects.set(store.weak.len() as i64);
        fresh
    }

    /// A process-lifetime object under `key` (held strongly, never swept): for things that may
    /// exist only once, such as a metric family registered in the registry.
    pub fn pinned<T: Any + Send + Sync>(&self, key: &str, make: impl FnOnce() -> T) -> Arc<T> {
        let mut store = self.store();
        if let Some(existing) = store
            .pinned
            .get(key)
            .and_then(|a| a.clone().downcast::<T>().ok())
        {
            return existing;
        }
        let fresh = Arc::new(make());
        store.pinned.insert(key.to_string(), fresh.clone());
        fresh
    }

    /// Run `task` on the control runtime for as long as the shared object under `key` lives: a
    /// sweep that finds the object dead aborts it. Counted in `authedge_background_tasks`.
    pub fn spawn_for(&self, key: &str, task: impl Future<Output = ()> + Send + 'static) {
        let live = LiveTask::new(&self.metrics.background_tasks);
        let handle = self.control.spawn(async move {
            let _live = live;
            task.await;
        });
        let mut store = self.store();
        match store.weak.get_mut(key) {
            Some(e) if e.alive() => e.tasks.push(handle.abort_handle()),
            // No live owner: the task has nothing to work for.
            _ => handle.abort(),
        }
    }

    /// Forget every shared object no live snapshot holds, and abort its tasks. The reloader
    /// calls it after each swap.
    pub fn sweep(&self) {
        let mut store = self.store();
        Self::sweep_locked(&mut store);
        self.metrics.shared_objects.set(store.weak.len() as i64);
    }

    fn sweep_locked(store: &mut Store) {
        store.weak.retain(|_, e| {
            let alive = e.alive();
            if !alive {
                e.tasks.iter().for_each(AbortHandle::abort);
            } else {
                e.tasks.retain(|t| !t.is_finished());
            }
            alive
        });
    }

    /// Shared objects some live snapshot holds (after a sweep, every entry of the map).
    pub fn live_shared(&self) -> usize {
        self.store().weak.values().filter(|e| e.alive()).count()
    }

    /// Background tasks still running (started by [`spawn_for`](Self::spawn_for)).
    pub fn live_tasks(&self) -> i64 {
        self.metrics.background_tasks.get()
    }
}
