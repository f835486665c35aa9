//! Pingora log lines that do not mean an error, counted instead of logged.
//!
//! `pingora_core::connectors` logs `failed to acquire reusable stream` at ERROR when it takes an
//! idle upstream connection from its pool and loses a race with that connection's idle-watch
//! task: `reused_stream` waits for the task to release the connection's lock, then
//! `Arc::try_unwrap`s it, but the task's `OwnedMutexGuard` releases the lock before it drops its
//! `Arc` clone, so on a multi-threaded runtime the unwrap can still see two owners. Pingora then
//! opens a new connection and the request succeeds, so the line is noise. This layer drops it and
//! counts it in `authedge_upstream_pool_reuse_races_total`.

use std::fmt;

use prometheus::IntCounter;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

const TARGET: &str = "pingora_core::connectors";
const MESSAGE: &str = "failed to acquire reusable stream";

/// Drops and counts the pool race line; every other event passes.
pub struct PoolRaceFilter {
    pub counter: Option<IntCounter>,
}

#[derive(Default)]
struct Fields {
    target: bool,
    message: bool,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.target = value == TARGET,
            "message" => self.message = value == MESSAGE,
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}") == MESSAGE;
        }
    }
}

impl PoolRaceFilter {
    /// Whether an event is the pool race line.
    pub fn matches(event: &Event<'_>) -> bool {
        if *event.metadata().level() != Level::ERROR {
            return false;
        }
        let mut f = Fields {
            // Events from `tracing` itself carry the target in the metadata; those bridged from
            // the `log` crate (Pingora) carry it as the `log.target` field.
            target: event.metadata().target() == TARGET,
            message: false,
        };
        event.record(&mut f);
        f.target && f.message
    }
}

impl<S: Subscriber> Layer<S> for PoolRaceFilter {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        if Self::matches(event) {
            if let Some(c) = &self.counter {
                c.inc();
            }
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn drops_and_counts_only_the_pool_race_line() {
        let counter = IntCounter::new("t", "t").unwrap();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl<S: Subscriber> Layer<S> for Count {
            fn on_event(&self, _e: &Event<'_>, _c: Context<'_, S>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let sub = tracing_subscriber::registry()
            .with(PoolRaceFilter {
                counter: Some(counter.clone()),
            })
            .with(Count(seen.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
            tracing::error!(target: "pingora_core::connectors", "connect failed");
            tracing::error!("failed to acquire reusable stream");
        });
        assert_eq!(counter.get(), 1);
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
