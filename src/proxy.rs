//! The one `ProxyHttp` implementation: orchestration only. Per request it loads the snapshot
//! once, canonicalises the path, serves edge endpoints, matches the route, walks the chain, and
//! either writes the answer itself (`request_filter` returns `Ok(true)`) or prepares the upstream
//! request: client copies of identity headers and consumed credentials removed, identity set,
//! `X-Forwarded-*` and `X-Request-Id` written by the edge.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, StatusCode};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::auth::{run_chain, Denial, DenyReason, Outcome, Reply, RequestView};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::routing::{strict_path, Match};
use crate::snapshot::Snapshot;
use crate::upstream::UpstreamKind;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// Headers `prepare` may add besides the identity's own: forwarding headers, request id, host,
/// and the standard identity fields.
const ADDED_HEADERS: usize = 11;

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
    start: Instant,
}

/// What the proxy decided in `request_filter`.
enum Decision {
    Proxy,
    Answered,
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The client address: the peer, or when the peer is a trusted proxy the right-most entry of
/// `X-Forwarded-For` that is not itself trusted.
fn client_ip(snap: &Snapshot, peer: Option<IpAddr>, req: &RequestHeader) -> Option<IpAddr> {
    let peer = peer?;
    if snap.trusted_proxies.is_empty() || !snap.is_trusted_proxy(peer) {
        return Some(peer);
    }
    let mut client = peer;
    for v in req.headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(s) = v.to_str() else {
            return Some(client);
        };
        for part in s.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !snap.is_trusted_proxy(ip) {
                        return Some(client);
                    }
                }
                Err(_) => return Some(client),
            }
        }
    }
    Some(client)
}

fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(header::TRANSFER_ENCODING)
        || req
            .headers
            .get(header::CONTENT_LENGTH)
            .map(|v| v.as_bytes() != b"0")
            .unwrap_or(false)
}

/// Write a complete short response. `close` drops the connection afterwards: used whenever a
/// request body was not read, so no unread bytes can be taken for a next request.
async fn write_response(
    session: &mut Session,
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
    close: bool,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (n, v) in headers {
        resp.append_header(n.clone(), v.clone())?;
    }
    if !headers.iter().any(|(n, _)| n == header::CONTENT_TYPE) && !body.is_empty() {
        resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    }
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    if close {
        session.set_keepalive(None);
        resp.insert_header(header::CONNECTION, "close")?;
    }
    let empty = body.is_empty();
    session.write_response_header(Box::new(resp), empty).await?;
    if !empty {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Short, generic body for an error status. Never carries the reason or any request data.
fn status_body(status: StatusCode) -> Bytes {
    let text = match status.as_u16() {
        400 => "bad request\n",
        401 => "unauthorized\n",
        403 => "forbidden\n",
        404 => "not found\n",
        405 => "method not allowed\n",
        413 => "payload too large\n",
        408 => "request timeout\n",
        429 => "too many requests\n",
        501 => "not implemented\n",
        502 => "bad gateway\n",
        503 => "service unavailable\n",
        504 => "gateway timeout\n",
        _ => "error\n",
    };
    Bytes::from_static(text.as_bytes())
}

impl Edge {
    /// A process-unique request id: 8 hex digits of a random per-process prefix, 16 of a counter.
    /// Written by hand: `format!` cost more than the rest of the header preparation.
    fn next_request_id(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 24];
        hex_into(&mut buf[..8], u64::from(self.id_prefix));
        hex_into(&mut buf[8..], n);
        HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
    }

    async fn deny(&self, session: &mut Session, ctx: &mut Ctx, d: Denial) -> Result<()> {
        ctx.outcome = "deny";
        ctx.reason = d.reason.as_str();
        let close = has_body(session.req_header());
        write_response(session, d.status, &d.headers, status_body(d.status), close).await
    }

    async fn reply(&self, session: &mut Session, ctx: &mut Ctx, r: Reply) -> Result<()> {
        ctx.outcome = "respond";
        let close = has_body(session.req_header()) && !session.is_body_done();
        write_response(session, r.status, &r.headers, r.body, close).await
    }

    /// Read the request body for an endpoint, refusing more than `max` bytes.
    async fn read_body(
        session: &mut Session,
        max: usize,
    ) -> std::result::Result<Vec<u8>, StatusCode> {
        if let Some(len) = session.req_header().headers.get(header::CONTENT_LENGTH) {
            let n: usize = len
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(StatusCode::BAD_REQUEST)?;
            if n > max {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|_| StatusCode::BAD_REQUEST)?
        {
            if body.len() + chunk.len() > max {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn decide(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
    ) -> Result<Decision> {
        let peer = peer_ip(session);
        ctx.peer = peer;
        ctx.client_ip = client_ip(snap, peer, session.req_header());
        if let Err(status) = crate::headers::check_framing(&session.req_header().headers) {
            let d = Denial::new(status, DenyReason::Malformed);
            self.deny(session, ctx, d).await?;
            return Ok(Decision::Answered);
        }
        let raw_path = session.req_header().uri.path();
        let path: Cow<'_, str> = match strict_path(raw_path, &snap.path_strictness) {
            Ok(p) => p,
            Err(_) => {
                self.deny(
                    session,
                    ctx,
                    Denial::new(StatusCode::BAD_REQUEST, DenyReason::Malformed),
                )
                .await?;
                return Ok(Decision::Answered);
            }
        };
        let path = match path {
            Cow::Borrowed(_) => None,
            Cow::Owned(p) => Some(p),
        };
        ctx.rewritten = path;
        let req = session.req_header();
        let path: &str = ctx.rewritten.as_deref().unwrap_or(req.uri.path());

        // Endpoints served by the edge itself.
        if let Some(ep) = snap.endpoints.get(path).cloned() {
            ctx.mode = ep.kind();
            let path = path.to_string();
            let deadline = snap.server.endpoint_body_timeout;
            let read = tokio::time::timeout(deadline, Self::read_body(session, ep.max_body()));
            let body = match read.await.unwrap_or(Err(StatusCode::REQUEST_TIMEOUT)) {
                Ok(b) => b,
                Err(status) => {
                    let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                        DenyReason::TooLarge
                    } else {
                        DenyReason::Malformed
                    };
                    self.deny(session, ctx, Denial::new(status, reason)).await?;
                    return Ok(Decision::Answered);
                }
            };
            let req = session.req_header();
            let view = RequestView {
                method: &req.method,
                path: &path,
                query: req.uri.query(),
                headers: &req.headers,
                peer,
                client_ip: ctx.client_ip,
                body: Some(&body),
            };
            let outcome = ep.handle(&view).await;
            self.answer(session, ctx, outcome).await?;
            return Ok(Decision::Answered);
        }

        let host = req
            .uri
            .host()
            .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()));
        let idx = match snap.router.lookup(host, &req.method, path) {
            Match::Route(i) => i,
            Match::NotFound => {
                self.deny(
                    session,
                    ctx,
                    Denial::new(StatusCode::NOT_FOUND, DenyReason::Missing),
                )
                .await?;
                ctx.outcome = "no_route";
                return Ok(Decision::Answered);
            }
            Match::MethodNotAllowed => {
                self.deny(
                    session,
                    ctx,
                    Denial::new(StatusCode::METHOD_NOT_ALLOWED, DenyReason::Missing),
                )
                .await?;
                ctx.outcome = "no_route";
                return Ok(Decision::Answered);
            }
        };
        ctx.route = Some(idx);
        let route = &snap.routes[idx];
        if route.public {
            ctx.mode = "public";
            ctx.outcome = "allow";
            ctx.allowed_by = Some(0);
            return Ok(Decision::Proxy);
        }
        let view = RequestView {
            method: &req.method,
            path,
            query: req.uri.query(),
            headers: &req.headers,
            peer,
            client_ip: ctx.client_ip,
            body: None,
        };
        let (outcome, by) = run_chain(&route.chain, &view).await;
        ctx.mode = match by {
            Some(i) => route.chain[i].kind(),
            None => "chain",
        };
        if let Outcome::Allow(id) = outcome {
            ctx.outcome = "allow";
            ctx.allowed_by = by;
            ctx.identity = Some(id);
            return Ok(Decision::Proxy);
        }
        self.answer(session, ctx, outcome).await?;
        Ok(Decision::Answered)
    }

    async fn answer(&self, session: &mut Session, ctx: &mut Ctx, outcome: Outcome) -> Result<()> {
        match outcome {
            Outcome::Deny(d) => self.deny(session, ctx, d).await,
            Outcome::Respond(r) => self.reply(session, ctx, r).await,
            Outcome::Allow(_) | Outcome::NotApplicable => {
                // An endpoint must answer; treat anything else as an internal failure, closed.
                self.deny(
                    session,
                    ctx,
                    Denial::new(StatusCode::INTERNAL_SERVER_ERROR, DenyReason::Internal),
                )
                .await
            }
        }
    }

    /// Rewrite the upstream request: canonical path, identity headers, forwarding headers.
    /// Everything comes from `ctx` (the snapshot, route and peer `request_filter` settled on);
    /// a request without a route is left alone.
    ///
    /// The request is taken apart into `http::request::Parts` and rebuilt without Pingora's
    /// case-preserving name map. Every insert and remove on a case-preserving request re-parses
    /// the name and updates two maps (about 1,500 instructions each, measured with callgrind);
    /// on a plain `HeaderMap` with prebuilt names it is a hash and a probe. Header names then
    /// reach the upstream in canonical case (standard ones title-cased, the rest lower case), as
    /// HAProxy sends them; HTTP header names are case-insensitive (RFC 9110 section 5.1).
    fn prepare(&self, req: &mut RequestHeader, ctx: &Ctx, tls: bool) {
        let Some((snap, route)) = ctx
            .snap
            .as_deref()
            .zip(ctx.route)
            .map(|(s, i)| (s, &s.routes[i]))
        else {
            return;
        };
        let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
        let end_stream = req.send_end_stream();
        let mut parts: http::request::Parts = std::mem::replace(req, placeholder).into();
        if let Some(p) = &ctx.rewritten {
            let pq = match parts.uri.query() {
                Some(q) => format!("{p}?{q}"),
                None => p.clone(),
            };
            if let Ok(uri) = http::Uri::builder().path_and_query(pq).build() {
                parts.uri = uri;
            }
        }
        let headers = &mut parts.headers;
        // One growth step for everything added below, instead of one per doubling.
        headers.reserve(ADDED_HEADERS + ctx.identity.as_ref().map_or(0, |id| id.headers.len()));
        // X-Forwarded-For: kept (and extended) only when the peer is a trusted proxy. Read
        // before `strip`, which removes every client spelling of the forwarding headers.
        let xff = match ctx.peer {
            Some(p) if snap.is_trusted_proxy(p) => {
                let prior: Vec<&str> = headers
                    .get_all(&X_FORWARDED_FOR)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                if prior.is_empty() {
                    ip_value(p)
                } else {
                    HeaderValue::from_str(&format!("{}, {p}", prior.join(", "))).ok()
                }
            }
            Some(p) => ip_value(p),
            None => None,
        };
        let host = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| headers.get(header::HOST).cloned());
        crate::headers::collapse_content_length(headers);
        snap.injector.strip(headers);
        for h in &route.strip_credentials {
            headers.remove(h);
        }
        if let Some(id) = &ctx.identity {
            snap.injector.inject(headers, id);
        }
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        if let Some(v) = ctx.client_ip.and_then(ip_value) {
            headers.insert(X_REAL_IP.clone(), v);
        }
        if let Some(v) = crate::headers::forwarded_value(ctx.client_ip, tls, host.as_ref()) {
            headers.insert(FORWARDED.clone(), v);
        }
        if let Some(h) = host {
            headers.insert(X_FORWARDED_HOST.clone(), h);
        }
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if tls { "https" } else { "http" }),
        );
        headers.insert(X_REQUEST_ID.clone(), self.next_request_id());
        if let Some(h) = &route.upstream.host_header {
            headers.insert(header::HOST, h.clone());
        }
        *req = RequestHeader::from(parts);
        if let Some(eos) = end_stream {
            req.set_send_end_stream(eos);
        }
    }
}

fn hex_into(out: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The peer address as a header value, without going through `fmt` for IPv4.
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + (octet / 10) % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            HeaderValue::from_bytes(&buf[..len]).ok()
        }
        IpAddr::V6(_) => HeaderValue::from_str(&ip.to_string()).ok(),
    }
}

fn is_tls(session: &Session) -> bool {
    session
        .digest()
        .map(|d| d.ssl_digest.is_some())
        .unwrap_or(false)
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
                    let headers = [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )];
                    let close = has_body(session.req_header());
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

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code: u16 = match e.etype() {
            ErrorType::HTTPStatus(c) => *c,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
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
                let _ = write_response(session, status, &[], status_body(status), true).await;
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
            (Some(r), "allow", Some(i)) if i < r.allowed.len() => r.allowed[i].inc(),
            _ => {
                let id = route.map(|r| &*r.id).unwrap_or("");
                self.metrics
                    .requests
                    .with_label_values(&[id, ctx.mode, ctx.outcome, ctx.reason])
                    .inc();
            }
        }
        if let Some(r) = route {
            r.duration.observe(elapsed.as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_values() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.100.9.255",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let v = ip_value(ip.parse().unwrap()).unwrap();
            assert_eq!(v.to_str().unwrap(), ip);
        }
    }

    #[test]
    fn hex() {
        let mut b = [0u8; 8];
        hex_into(&mut b, 0xdead_beef);
        assert_eq!(&b, b"deadbeef");
    }
}
