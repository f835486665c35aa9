//! Prometheus metrics (one registry, passed in, no globals) and the side-port service that serves
//! `/metrics`, `/healthz` and `/readyz`. Labels are bounded: route ids and modes come from config,
//! outcomes and reasons from fixed enums; nothing from a request ever becomes a label.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub generation: IntGauge,
    pub reloads: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    /// Objects shared across reloads that a live snapshot still uses.
    pub shared_objects: IntGauge,
    /// Background tasks (refreshers, sweepers) still running.
    pub background_tasks: IntGauge,
}

/// What `/readyz` asks: `None` when ready, else what is missing. Implemented above this module
/// (by the live snapshot store), so metrics depends on nothing above it.
pub trait Readiness: Send + Sync {
    fn not_ready(&self) -> Option<String>;
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "authedge_requests_total",
                "Requests by route, auth mode, outcome and reason",
            ),
            &["route", "mode", "outcome", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "authedge_request_duration_seconds",
                "Time from request to response, by route",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "authedge_upstream_errors_total",
                "Upstream failures by route and kind",
            ),
            &["route", "kind"],
        )?;
        let generation = IntGauge::new(
            "authedge_config_generation",
            "Generation of the live config",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("authedge_config_reload_total", "Config reloads by result"),
            &["result"],
        )?;
        let jwks_fetches = IntCounterVec::new(
            Opts::new(
                "authedge_jwks_fetch_total",
                "JWKS fetches by provider and result",
            ),
            &["provider", "result"],
        )?;
        let shared_objects = IntGauge::new(
            "authedge_shared_objects",
            "Objects shared across reloads (key caches, limiters) held by the live config",
        )?;
        let background_tasks = IntGauge::new(
            "authedge_background_tasks",
            "Background tasks (key refreshers, sweepers) running",
        )?;
        registry.register(Box::new(shared_objects.clone()))?;
        registry.register(Box::new(background_tasks.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(jwks_fetches.clone()))?;
        // Make the reload series visible at zero.
        reloads.with_label_values(&["success"]);
        reloads.with_label_values(&["error"]);
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            generation,
            reloads,
            jwks_fetches,
            shared_objects,
            background_tasks,
        })
    }

    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// The side-port HTTP app.
pub struct SidePort {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<dyn Readiness>,
}

#[async_trait]
impl ServeHttp for SidePort {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, ctype, body) = match path {
            "/metrics" => (200, "text/plain; version=0.0.4", self.metrics.render()),
            "/healthz" => (200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.ready.not_ready() {
                None => (200, "text/plain", b"ready\n".to_vec()),
                Some(what) => (
                    503,
                    "text/plain",
                    format!("not ready: {what}\n").into_bytes(),
                ),
            },
            _ => (404, "text/plain", b"not found\n".to_vec()),
        };
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, ctype)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}
