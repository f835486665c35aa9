//! The upstream request the edge forwards: the canonical path, client copies of identity and
//! forwarding headers removed, consumed credentials removed, identity set, and the edge's own
//! `X-Forwarded-*`, `X-Real-IP`, `Forwarded` and `X-Request-Id`.

use std::sync::atomic::Ordering;

use http::{header, HeaderName, HeaderValue};
use pingora_http::RequestHeader;

use super::{Ctx, Edge};
use crate::auth::strip_cookies;
use crate::wire::{hex_into, ip_value, X_FORWARDED_FOR};

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// Headers `prepare` may add besides the identity's own: forwarding headers, request id, host,
/// and the standard identity fields.
const ADDED_HEADERS: usize = 11;

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
    pub(super) fn prepare(&self, req: &mut RequestHeader, ctx: &Ctx, tls: bool) {
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
        let moved = route
            .rewrite
            .as_ref()
            .map(|rw| rw.apply(ctx.rewritten.as_deref().unwrap_or_else(|| parts.uri.path())));
        if let Some(p) = moved.as_ref().or(ctx.rewritten.as_ref()) {
            let pq = match parts.uri.query() {
                Some(q) => format!("{p}?{q}"),
                None => p.clone(),
            };
            // Scheme and authority stay (an HTTP/2 upstream takes `:authority` from them); the
            // path alone when they cannot.
            let mut with_authority = parts.uri.clone().into_parts();
            with_authority.path_and_query = http::uri::PathAndQuery::try_from(pq.as_str()).ok();
            let uri = http::Uri::from_parts(with_authority)
                .or_else(|_| http::Uri::builder().path_and_query(pq).build());
            if let Ok(uri) = uri {
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
        strip_cookies(headers, &route.strip_cookies);
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
