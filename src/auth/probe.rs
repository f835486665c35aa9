//! `x-contract-probe`: a hidden mode that exercises every capability of the filter contract, for
//! the integration tests (tests/contract.rs) that run it through the real edge. Not documented as
//! a user mode: it allows on fixed test inputs, so a config naming it is refused unless
//! `AUTHEDGE_CONTRACT_PROBE=1` is set.
//!
//! - cookie `<cookie>=ok` -> allow (that cookie is a credential: stripped, others pass);
//! - `x-probe: allow` -> allow with a `Set-Cookie` added to the response;
//! - `x-probe: body` -> allow when the (bounded) body is `let me in`, else 403;
//! - `x-probe: state-down` -> a state operation that fails -> 503;
//! - nothing of the above -> not applicable; a browser (`Accept: text/html`) is then redirected
//!   to `/login?rd=<path>` instead of the plain 401;
//! - with `endpoint_host`, `GET /probe/hello` on that host only is an edge endpoint.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use super::endpoint::EndpointAt;
use super::{
    state_failed, Answer, AuthFilter, Built, DenyReason, Endpoint, Outcome, Reply, RequestView,
    MAX_FILTER_BODY,
};
use crate::config::Problems;
use crate::identity::Identity;

/// The environment variable that must be `1` for a config with this mode to load.
pub const PROBE_ENV: &str = "AUTHEDGE_CONTRACT_PROBE";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The session-like cookie this filter accepts and strips.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Bytes of body to read before `check` (0: none).
    #[serde(default)]
    pub max_body: usize,
    /// Serve `GET /probe/hello` on this host.
    #[serde(default)]
    pub endpoint_host: Option<String>,
}

#[derive(Debug)]
struct Probe {
    cookie: Vec<Box<str>>,
    max_body: usize,
}

#[derive(Debug)]
struct Hello;

/// A state operation that fails, as a store that is down does.
async fn state_op() -> Result<(), std::io::Error> {
    tokio::task::yield_now().await;
    Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "state store down",
    ))
}

fn allowed(subject: &'static str) -> Arc<Identity> {
    Arc::new(Identity {
        subject: Some(HeaderValue::from_static(subject)),
        issuer: None,
        mode: "x-contract-probe",
        scopes: None,
        headers: Vec::new(),
    })
}

#[async_trait]
impl AuthFilter for Probe {
    fn kind(&self) -> &'static str {
        "x-contract-probe"
    }

    async fn check(&self, req: &RequestView<'_>) -> Outcome {
        if let Some(name) = self.cookie.first() {
            if req.cookie(name) == Some("ok") {
                return Outcome::Allow(allowed("cookie-user"));
            }
        }
        let Some(what) = req.headers.get("x-probe") else {
            return Outcome::NotApplicable;
        };
        match what.as_bytes() {
            b"allow" => Outcome::AllowWith {
                identity: allowed("probe-user"),
                response_headers: vec![(
                    http::header::SET_COOKIE,
                    HeaderValue::from_static("probe=refreshed; Path=/; HttpOnly"),
                )],
            },
            b"body" if req.body == Some(b"let me in") => Outcome::Allow(allowed("body-user")),
            b"state-down" => match state_op().await {
                Ok(()) => Outcome::Allow(allowed("state-user")),
                Err(e) => Outcome::Deny(state_failed(e)),
            },
            _ => Outcome::deny(StatusCode::FORBIDDEN, DenyReason::Forbidden),
        }
    }

    fn on_unauthenticated(&self, req: &RequestView<'_>) -> Option<Outcome> {
        let html = req
            .headers
            .get(http::header::ACCEPT)
            .is_some_and(|a| a.as_bytes().windows(9).any(|w| w == b"text/html"));
        if !html {
            return None;
        }
        let rd: String =
            percent_encoding::utf8_percent_encode(req.path, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        let location = HeaderValue::from_str(&format!("/login?rd={rd}")).ok()?;
        Some(Outcome::Respond(Reply {
            status: StatusCode::FOUND,
            headers: vec![(http::header::LOCATION, location)],
            body: Bytes::new(),
        }))
    }

    fn credential_cookies(&self) -> Vec<Box<str>> {
        self.cookie.clone()
    }

    fn max_body(&self) -> usize {
        self.max_body
    }
}

#[async_trait]
impl Endpoint for Hello {
    fn kind(&self) -> &'static str {
        "x-contract-probe"
    }
    async fn handle(&self, req: &RequestView<'_>) -> Answer {
        if req.method != http::Method::GET {
            return Answer::deny(StatusCode::METHOD_NOT_ALLOWED, DenyReason::Malformed);
        }
        let mut r = Reply::json(StatusCode::OK, Bytes::from_static(br#"{"hello":"probe"}"#));
        r.headers.push((
            http::HeaderName::from_static("x-probe-host"),
            HeaderValue::from_str(req.host_name().unwrap_or(""))
                .unwrap_or(HeaderValue::from_static("")),
        ));
        Answer::Respond(r)
    }
}

/// Build the probe filter and its endpoint.
pub fn build(cfg: &ProbeConfig, path: &str) -> Result<Built, Problems> {
    let mut problems = Problems::default();
    // It lets fixed test inputs through: never in a config by accident.
    if std::env::var_os(PROBE_ENV).is_none_or(|v| v != "1") {
        problems.push(
            format!("{path}.type"),
            format!("x-contract-probe is a test-only mode; refused unless {PROBE_ENV}=1"),
        );
    }
    if cfg.max_body > MAX_FILTER_BODY {
        problems.push(
            format!("{path}.max_body"),
            format!("at most {MAX_FILTER_BODY} bytes"),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let endpoints = match &cfg.endpoint_host {
        Some(h) => vec![(
            EndpointAt::on_host(h, "/probe/hello"),
            Arc::new(Hello) as Arc<dyn Endpoint>,
        )],
        None => Vec::new(),
    };
    Ok(Built {
        filter: Arc::new(Probe {
            cookie: cfg.cookie.iter().map(|c| c.as_str().into()).collect(),
            max_body: cfg.max_body,
        }),
        endpoints,
    })
}
