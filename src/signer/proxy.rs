//! The signer's `ProxyHttp` (listeners with `role: signer`), apart from the reverse proxy's
//! request path. A request must be absolute-form `http://host[:port]/path`: it is checked (not to
//! the signer itself, inside `allowed_targets`), signed (`Authorization: Bearer <JWS>`, replacing
//! any the client sent), rewritten to origin-form and forwarded to the host it names.
//! A connection that opens with `CONNECT` is taken before this (see [`super::connect`]); a
//! `CONNECT` that reaches it is 403 without a CA and 400 with one; anything else 400. A target
//! that does not resolve or answer is 502.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{header, HeaderValue, Method, StatusCode};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora_http::RequestHeader;

use crate::config::schema::ListenerRole;
use crate::snapshot::Snapshot;
use crate::wire::{error_code, status_body, write_response};

/// Hop-by-hop headers meant for the proxy, never forwarded.
const PROXY_HEADERS: [&str; 2] = ["proxy-connection", "proxy-authorization"];

/// The signer service.
pub struct SignerProxy {
    current: Arc<ArcSwap<Snapshot>>,
}

impl SignerProxy {
    pub fn new(current: Arc<ArcSwap<Snapshot>>) -> Self {
        SignerProxy { current }
    }
}

/// Per request: where to send it and the token to add.
#[derive(Default)]
pub struct SignerCtx {
    peer: Option<Box<HttpPeer>>,
    token: Option<HeaderValue>,
    authority: Option<HeaderValue>,
}

/// Whether `addr` is one of the signer's own listeners (a request to itself would loop).
pub(super) fn is_own(snap: &Snapshot, addr: SocketAddr) -> bool {
    snap.listeners
        .iter()
        .filter(|l| l.role == ListenerRole::Signer)
        .filter_map(|l| l.address.as_deref()?.parse::<SocketAddr>().ok())
        .any(|own| {
            own.port() == addr.port()
                && (own.ip() == addr.ip()
                    || (own.ip().is_unspecified()
                        && (addr.ip().is_loopback() || addr.ip().is_unspecified())))
        })
}

/// The first address of `host:port` (an IP literal needs no lookup; names resolve without
/// blocking the worker).
pub(super) async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((bare, port)).await.ok()?.next()
}

async fn refuse(session: &mut Session, status: StatusCode) -> Result<bool> {
    write_response(session, status, &[], status_body(status), true).await?;
    Ok(true)
}

#[async_trait]
impl ProxyHttp for SignerProxy {
    type CTX = SignerCtx;

    fn new_ctx(&self) -> SignerCtx {
        SignerCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut SignerCtx) -> Result<bool> {
        let snap = self.current.load_full();
        let Some(signer) = snap.signer.clone() else {
            return refuse(session, StatusCode::SERVICE_UNAVAILABLE).await;
        };
        let req = session.req_header();
        if req.method == Method::CONNECT {
            // A connection that opens with CONNECT never gets here (super::connect takes it);
            // this one came after other requests or on a TLS listener, where no tunnel is made.
            if signer.mitm.is_none() {
                tracing::debug!("signer: CONNECT refused (no MITM CA configured)");
                return refuse(session, StatusCode::FORBIDDEN).await;
            }
            tracing::debug!("signer: CONNECT must open its connection (plain listener)");
            return refuse(session, StatusCode::BAD_REQUEST).await;
        }
        // Pingora keeps an absolute-form target whole in raw_path() (its uri holds the path).
        let Ok(target) = http::Uri::try_from(req.raw_path()) else {
            return refuse(session, StatusCode::BAD_REQUEST).await;
        };
        let (Some("http"), Some(auth)) = (target.scheme_str(), target.authority()) else {
            return refuse(session, StatusCode::BAD_REQUEST).await;
        };
        if auth.as_str().contains('@') {
            return refuse(session, StatusCode::BAD_REQUEST).await;
        }
        let host = auth.host().to_string();
        let port = auth.port_u16().unwrap_or(80);
        // jwtproxy's aud: scheme + "://" + the host as the request named it (port included).
        let origin = format!("http://{}", auth.as_str()).to_ascii_lowercase();
        let authority = HeaderValue::from_str(auth.as_str()).ok();
        let Some(addr) = resolve(&host, port).await else {
            return refuse(session, StatusCode::BAD_GATEWAY).await;
        };
        if is_own(&snap, addr) {
            return refuse(session, StatusCode::BAD_REQUEST).await;
        }
        if !signer.allows(&origin) {
            tracing::debug!(target = %origin, "signer: target not in allowed_targets");
            return refuse(session, StatusCode::FORBIDDEN).await;
        }
        let Some(token) = signer
            .token(&origin)
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
        else {
            return refuse(session, StatusCode::INTERNAL_SERVER_ERROR).await;
        };
        ctx.token = Some(token);
        ctx.authority = authority;
        ctx.peer = Some(Box::new(HttpPeer::new(addr, false, host)));
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut SignerCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.peer
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no target for this request"))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut SignerCtx,
    ) -> Result<()> {
        let target = upstream_request
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let origin_form: http::Uri = target
            .parse()
            .map_err(|_| Error::explain(ErrorType::InternalError, "bad request target"))?;
        upstream_request.set_uri(origin_form);
        if upstream_request.headers.get(header::HOST).is_none() {
            if let Some(a) = ctx.authority.take() {
                upstream_request.insert_header(header::HOST, a)?;
            }
        }
        for h in PROXY_HEADERS {
            upstream_request.remove_header(h);
        }
        if let Some(t) = ctx.token.take() {
            upstream_request.insert_header(header::AUTHORIZATION, t)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut SignerCtx,
    ) -> FailToProxy {
        let code = error_code(e);
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
}
