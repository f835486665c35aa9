//! The one `ProxyHttp` implementation: orchestration only. Per request it loads the snapshot
//! once, canonicalises the path, serves edge endpoints, matches the route, walks the chain, and
//! either writes the answer itself (`request_filter` returns `Ok(true)`) or prepares the upstream
//! request: client copies of identity headers and consumed credentials removed, identity set,
//! `X-Forwarded-*` and `X-Request-Id` written by the edge.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, StatusCode};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::auth::{run_chain, Answer, Denial, DenyReason, Outcome, Reply};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::routing::{strict_path, Match};
use crate::snapshot::{RouteEntry, Snapshot};
use crate::upstream::UpstreamKind;
mod forward;
mod grpc;

use crate::wire::{
    authority_conflict, body_denial, client_ip, error_code, has_body, is_tls, peer_ip, read_body,
    request_host, status_body, view, write_response,
};

/// The proxy. Holds the live snapshot and the metrics.
pub struct Edge {
    pub current: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    id_prefix: u32,
    counter: AtomicU64,
}

impl Edge {
    pub fn new(current: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        Edge {
            current,
            metrics,
            id_prefix: rand::random(),
            counter: AtomicU64::new(0),
        }
    }
}

/// Per-request state.
pub struct Ctx {
    snap: Option<Arc<Snapshot>>,
    route: Option<usize>,
    identity: Option<Arc<Identity>>,
    /// Set when the canonical path differs from what the client sent.
    rewritten: Option<String>,
    /// The TCP peer, read once in `request_filter`.
    peer: Option<IpAddr>,
    client_ip: Option<IpAddr>,
    mode: &'static str,
    outcome: &'static str,
    reason: &'static str,
    /// Index of the filter that allowed (for the pre-built counter).
    allowed_by: Option<usize>,
    /// Headers the allowing filter adds to the client's response (`Outcome::AllowWith`).
    response_headers: Vec<(HeaderName, HeaderValue)>,
    start: Instant,
}

/// What the proxy decided in `request_filter`.
enum Decision {
    Proxy,
    Answered,
}

impl Edge {
    async fn deny(&self, session: &mut Session, ctx: &mut Ctx, d: Denial) -> Result<()> {
        ctx.outcome = "deny";
        ctx.reason = d.reason.as_str();
        let close = has_body(session.req_header());
        if grpc::is_grpc(session.req_header()) {
            return grpc::write_denial(session, d.status, &d.headers, ctx.reason, close).await;
        }
        write_response(session, d.status, &d.headers, status_body(d.status), close).await
    }

    async fn reply(&self, session: &mut Session, ctx: &mut Ctx, r: Reply) -> Result<()> {
        ctx.outcome = "respond";
        let close = has_body(session.req_header()) && !session.is_body_done();
        write_response(session, r.status, &r.headers, r.body, close).await
    }

    /// The request phases: canonical path, edge endpoints, route, chain.
    async fn decide(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
    ) -> Result<Decision> {
        let peer = peer_ip(session);
        ctx.peer = peer;
        ctx.client_ip = client_ip(snap, peer, session.req_header());
        if authority_conflict(session.req_header()) {
            let d = Denial::new(StatusCode::BAD_REQUEST, DenyReason::Malformed);
            self.deny(session, ctx, d).await?;
            return Ok(Decision::Answered);
        }
        if let Err(status) = crate::headers::check_framing(&session.req_header().headers) {
            let d = Denial::new(status, DenyReason::Malformed);
            self.deny(session, ctx, d).await?;
            return Ok(Decision::Answered);
        }
        match strict_path(session.req_header().uri.path(), &snap.path_strictness) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(p)) => ctx.rewritten = Some(p),
            Err(_) => {
                let d = Denial::new(StatusCode::BAD_REQUEST, DenyReason::Malformed);
                self.deny(session, ctx, d).await?;
                return Ok(Decision::Answered);
            }
        }
        if !snap.endpoints.is_empty() && self.serve_endpoint(session, ctx, snap).await? {
            return Ok(Decision::Answered);
        }
        let Some(idx) = self.route(session, ctx, snap).await? else {
            return Ok(Decision::Answered);
        };
        let route = &snap.routes[idx];
        if route.public {
            ctx.mode = "public";
            ctx.outcome = "allow";
            ctx.allowed_by = Some(0);
            return Ok(Decision::Proxy);
        }
        self.authenticate(session, ctx, snap, route).await
    }

    /// An edge endpoint at this host and path: read its body, let it answer. `Ok(false)` when
    /// none is served here.
    async fn serve_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
    ) -> Result<bool> {
        let req = session.req_header();
        let path: &str = ctx.rewritten.as_deref().unwrap_or(req.uri.path());
        let Some(ep) = snap.endpoints.get(request_host(req), path).cloned() else {
            return Ok(false);
        };
        ctx.mode = ep.kind();
        let deadline = snap.server.endpoint_body_timeout;
        let Some(body) = self
            .body_or_deny(session, ctx, ep.max_body(), deadline)
            .await?
        else {
            return Ok(true);
        };
        let tls = is_tls(session);
        let req = session.req_header();
        let view = view(
            req,
            ctx.rewritten.as_deref(),
            (ctx.peer, ctx.client_ip),
            tls,
            Some(&body),
        );
        let answer = ep.handle(&view).await;
        match answer {
            Answer::Deny(d) => self.deny(session, ctx, d).await?,
            Answer::Respond(r) => self.reply(session, ctx, r).await?,
        }
        Ok(true)
    }

    /// Read up to `max` body bytes within `deadline`; a body too large, malformed or too slow is
    /// answered (413, 400, 408) and gives `None`.
    async fn body_or_deny(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        max: usize,
        deadline: std::time::Duration,
    ) -> Result<Option<Vec<u8>>> {
        let read = tokio::time::timeout(deadline, read_body(session, max));
        match read.await.unwrap_or(Err(StatusCode::REQUEST_TIMEOUT)) {
            Ok(b) => Ok(Some(b)),
            Err(status) => {
                self.deny(session, ctx, body_denial(status)).await?;
                Ok(None)
            }
        }
    }

    /// Match the route; a miss is answered (404 or 405) and gives `None`.
    async fn route(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
    ) -> Result<Option<usize>> {
        let req = session.req_header();
        let path: &str = ctx.rewritten.as_deref().unwrap_or(req.uri.path());
        let status = match snap.router.lookup(request_host(req), &req.method, path) {
            Match::Route(i) => {
                ctx.route = Some(i);
                return Ok(Some(i));
            }
            Match::NotFound => StatusCode::NOT_FOUND,
            Match::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        };
        self.deny(session, ctx, Denial::new(status, DenyReason::Missing))
            .await?;
        ctx.outcome = "no_route";
        Ok(None)
    }

    /// Walk the route's chain (after reading the body when a filter asks for it).
    async fn authenticate(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        route: &RouteEntry,
    ) -> Result<Decision> {
        let body = if route.max_body > 0 {
            // Buffered as it is read, so the upstream still receives it.
            session.enable_retry_buffering();
            let deadline = snap.server.endpoint_body_timeout;
            match self
                .body_or_deny(session, ctx, route.max_body, deadline)
                .await?
            {
                Some(b) => Some(b),
                None => return Ok(Decision::Answered),
            }
        } else {
            None
        };
        let tls = is_tls(session);
        let req = session.req_header();
        let view = view(
            req,
            ctx.rewritten.as_deref(),
            (ctx.peer, ctx.client_ip),
            tls,
            body.as_deref(),
        );
        let (outcome, by) = run_chain(&route.chain, &view).await;
        ctx.mode = match by {
            Some(i) => route.chain[i].kind(),
            None => "chain",
        };
        let (id, headers) = match outcome {
            Outcome::Allow(id) => (id, Vec::new()),
            Outcome::AllowWith {
                identity,
                response_headers,
            } => (identity, response_headers),
            Outcome::Respond(r) => {
                self.reply(session, ctx, r).await?;
                return Ok(Decision::Answered);
            }
            // run_chain turns "none applies" into a denial; anything else fails closed.
            other => {
                let internal = (StatusCode::INTERNAL_SERVER_ERROR, DenyReason::Internal);
                let d = match other {
                    Outcome::Deny(d) => d,
                    _ => Denial::new(internal.0, internal.1),
                };
                self.deny(session, ctx, d).await?;
                return Ok(Decision::Answered);
            }
        };
        ctx.outcome = "allow";
        ctx.allowed_by = by;
        ctx.identity = Some(id);
        ctx.response_headers = headers;
        Ok(Decision::Proxy)
    }
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = Ctx;

    /// No downstream modules: Pingora's default adds a (disabled) compression module whose
    /// context is still allocated and called on every request.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            snap: None,
            route: None,
            identity: None,
            rewritten: None,
            peer: None,
            client_ip: None,
            mode: "none",
            outcome: "error",
            reason: "",
            allowed_by: None,
            response_headers: Vec::new(),
            start: Instant::now(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Pipelined requests are answered one after the other, in order (RFC 9112 §9.3.2);
        // Pingora's default closes the connection after the first.
        session.set_pipelining_enabled(true);
        let snap = self.current.load_full();
        ctx.snap = Some(snap.clone());
        match self.decide(session, ctx, &snap).await? {
            Decision::Answered => Ok(true),
            Decision::Proxy => {
                let Some(route) = ctx.route.map(|i| &snap.routes[i]) else {
                    return Ok(true);
                };
                if let UpstreamKind::Echo = route.upstream.kind {
                    let mut req = session.req_header().clone();
                    self.prepare(&mut req, ctx, is_tls(session));
                    let body = Bytes::from(crate::echo::render(&req));
                    let mut headers = vec![(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )];
                    headers.append(&mut ctx.response_headers);
                    let close = has_body(session.req_header()) && !session.is_body_done();
                    write_response(session, StatusCode::OK, &headers, body, close).await?;
                    return Ok(true);
                }
                Ok(false)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let peer =
            ctx.snap
                .as_ref()
                .zip(ctx.route)
                .and_then(|(s, i)| match &s.routes[i].upstream.kind {
                    UpstreamKind::Http(p) => Some(p.clone()),
                    UpstreamKind::Echo => None,
                });
        peer.ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream for this request"))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.prepare(upstream_request, ctx, is_tls(session));
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        for (n, v) in ctx.response_headers.drain(..) {
            resp.append_header(n, v)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = error_code(e);
        if code >= 500 {
            ctx.outcome = "upstream_error";
            let route = ctx
                .snap
                .as_ref()
                .zip(ctx.route)
                .map(|(s, i)| s.routes[i].id.clone());
            let kind = if code == 504 { "timeout" } else { "connect" };
            self.metrics
                .upstream_errors
                .with_label_values(&[route.as_deref().unwrap_or(""), kind])
                .inc();
        }
        if code > 0 {
            if let Ok(status) = StatusCode::from_u16(code) {
                let _ = if grpc::is_grpc(session.req_header()) {
                    grpc::write_denial(session, status, &[], "", true).await
                } else {
                    write_response(session, status, &[], status_body(status), true).await
                };
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        // Pingora sets an unlimited keep-alive for HTTP/1.1 when it writes the response; the
        // connection then waits this long for the next request (unless it is being closed).
        if session.get_keepalive().is_some() {
            if let Some(s) = ctx.snap.as_ref() {
                session.set_keepalive(Some(s.server.keepalive_timeout.as_secs().max(1)));
            }
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = ctx.snap.as_ref().zip(ctx.route).map(|(s, i)| &s.routes[i]);
        let elapsed = ctx.start.elapsed();
        match (route, ctx.outcome, ctx.allowed_by) {
            (Some(r), "allow", Some(i)) if i < r.allowed.len() => {
                let (mode, c) = &r.allowed[i];
                c.get_or_init(|| {
                    self.metrics
                        .requests
                        .with_label_values(&[&*r.id, mode, "allow", ""])
                })
                .inc()
            }
            _ => {
                let id = route.map(|r| &*r.id).unwrap_or("");
                self.metrics
                    .requests
                    .with_label_values(&[id, ctx.mode, ctx.outcome, ctx.reason])
                    .inc();
            }
        }
        if let Some(r) = route {
            r.duration
                .get_or_init(|| self.metrics.duration.with_label_values(&[&*r.id]))
                .observe(elapsed.as_secs_f64());
        }
        if ctx.snap.as_ref().map(|s| s.log.access).unwrap_or(false) {
            tracing::info!(
                target: "authedge::access",
                route = route.map(|r| &*r.id).unwrap_or(""),
                mode = ctx.mode,
                outcome = ctx.outcome,
                reason = ctx.reason,
                status,
                method = session.req_header().method.as_str(),
                latency_us = elapsed.as_micros() as u64,
                client = ?ctx.client_ip,
            );
        }
    }
}
