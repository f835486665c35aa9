//! `authedge_state_errors_total{op}` and `authedge_state_seconds{op}` (latency histogram) of
//! the shared-state backend. Labels come from the fixed [`Op`] list.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

/// Every operation the Redis store counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Nonce,
    RateLimit,
    Revoke,
    RevocationLookup,
    RevocationSync,
    SessionGet,
    SessionPut,
    SessionDelete,
    CodePut,
    CodeTake,
    Ping,
    MapGet,
    MapPut,
    MapDelete,
}

const OPS: [Op; 14] = [
    Op::Nonce,
    Op::RateLimit,
    Op::Revoke,
    Op::RevocationLookup,
    Op::RevocationSync,
    Op::SessionGet,
    Op::SessionPut,
    Op::SessionDelete,
    Op::CodePut,
    Op::CodeTake,
    Op::Ping,
    Op::MapGet,
    Op::MapPut,
    Op::MapDelete,
];

impl Op {
    pub fn label(self) -> &'static str {
        match self {
            Op::Nonce => "nonce",
            Op::RateLimit => "rate_limit",
            Op::Revoke => "revoke",
            Op::RevocationLookup => "revocation_lookup",
            Op::RevocationSync => "revocation_sync",
            Op::SessionGet => "session_get",
            Op::SessionPut => "session_put",
            Op::SessionDelete => "session_delete",
            Op::CodePut => "code_put",
            Op::CodeTake => "code_take",
            Op::Ping => "ping",
            Op::MapGet => "map_get",
            Op::MapPut => "map_put",
            Op::MapDelete => "map_delete",
        }
    }
}

/// Per-operation counters and histograms, resolved once (no label lookup per call).
#[derive(Debug, Clone)]
pub struct StateMetrics {
    errors: Vec<IntCounter>,
    latency: Vec<Histogram>,
}

impl StateMetrics {
    /// Register in `registry` (once per process: the caller shares the result across reloads).
    pub fn new(registry: &prometheus::Registry) -> Result<StateMetrics, prometheus::Error> {
        let errors = IntCounterVec::new(
            Opts::new(
                "authedge_state_errors_total",
                "Shared-state operations that failed or timed out, by operation",
            ),
            &["op"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "authedge_state_seconds",
                "Shared-state operation latency, by operation",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["op"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self::from_vecs(&errors, &latency))
    }

    /// Unregistered metrics (tests, `check`).
    pub fn detached() -> StateMetrics {
        let errors = IntCounterVec::new(Opts::new("e", "e"), &["op"]);
        let latency = HistogramVec::new(HistogramOpts::new("l", "l"), &["op"]);
        match (errors, latency) {
            (Ok(e), Ok(l)) => Self::from_vecs(&e, &l),
            _ => StateMetrics {
                errors: Vec::new(),
                latency: Vec::new(),
            },
        }
    }

    fn from_vecs(errors: &IntCounterVec, latency: &HistogramVec) -> StateMetrics {
        StateMetrics {
            errors: OPS
                .iter()
                .map(|o| errors.with_label_values(&[o.label()]))
                .collect(),
            latency: OPS
                .iter()
                .map(|o| latency.with_label_values(&[o.label()]))
                .collect(),
        }
    }

    fn index(op: Op) -> usize {
        op as usize
    }

    /// Count a failed operation.
    pub fn error(&self, op: Op) {
        if let Some(c) = self.errors.get(Self::index(op)) {
            c.inc();
        }
    }

    /// Observe an operation's latency.
    pub fn observe(&self, op: Op, secs: f64) {
        if let Some(h) = self.latency.get(Self::index(op)) {
            h.observe(secs);
        }
    }
}
