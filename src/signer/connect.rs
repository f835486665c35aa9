//! `CONNECT` on signer listeners: the listeners' `ServerApp` looks at the first 8 bytes of a
//! connection (Pingora's `Peek`, rewound; plain TCP and unix listeners) and takes a connection
//! that opens with `CONNECT ` away from the `ProxyHttp`, which keeps every other request (and the
//! reverse proxy never sees any of this).
//!
//! A tunnel: the `CONNECT host:port` head (at most 8 KiB, 400 otherwise) is checked like an
//! absolute-form request (a configured MITM CA, else 403; not the signer itself, 400; inside
//! `allowed_targets` as `https://host:port`, else 403; a name that does not resolve, 502), then
//! answered 200. TLS toward the client is terminated with a leaf for the requested host minted by
//! [`super::mitm`]; hyper reads the HTTP/1.1 requests inside (keep-alive, 16 KiB of head at most,
//! 100 headers, bad input 400/431 by hyper). Each request is signed exactly as the absolute-form
//! path does (`aud` = `https://host:port` of the `CONNECT`, as jwtproxy forms it; a client's own
//! `Authorization` is replaced), stripped of hop-by-hop and proxy headers and forwarded over one
//! TLS connection per tunnel to the target, verified against `trusted_certificates` (or not, with
//! `insecure_skip_verify`). A target that cannot be reached or whose certificate is not trusted
//! is 502 inside the tunnel and nothing is forwarded.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::mitm::Mitm;
use super::proxy::{is_own, resolve};
use super::sign::Signer;
use crate::snapshot::Snapshot;
use crate::wire::status_body;

/// The `CONNECT` head's limit.
const MAX_HEAD: usize = 8 * 1024;
/// Waiting for a connection's first bytes, a `CONNECT` head, a TLS handshake.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting to a target (TCP, then TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The signer listeners' app: `CONNECT` tunnels here, every other connection to `inner` (the
/// signer's `ProxyHttp`).
pub struct SignerApp<A> {
    inner: Arc<A>,
    current: Arc<ArcSwap<Snapshot>>,
}

impl<A> SignerApp<A> {
    pub fn new(inner: A, current: Arc<ArcSwap<Snapshot>>) -> Self {
        SignerApp {
            inner: Arc::new(inner),
            current,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for SignerApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut first = [0u8; 8];
        let peeked = match tokio::time::timeout(HEAD_TIMEOUT, stream.try_peek(&mut first)).await {
            Ok(Ok(p)) => p,
            // Closed, failed or silent before 8 bytes: nothing to answer.
            _ => return None,
        };
        if peeked && &first == b"CONNECT " {
            tunnel(self.current.load_full(), stream, shutdown.clone()).await;
            return None;
        }
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// A short answer that ends the connection.
async fn refuse(stream: &mut Stream, status: StatusCode) {
    let body = status_body(status);
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await
    })
    .await;
}

/// The request head (through its blank line) and whatever the client sent after it.
async fn read_head(stream: &mut Stream) -> Result<(Vec<u8>, Vec<u8>), Option<StatusCode>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.map_err(|_| None)?;
            if n == 0 {
                return Err(None);
            }
            let from = buf.len().saturating_sub(3);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                let end = from + end + 4;
                if end > MAX_HEAD {
                    return Err(Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
                }
                let rest = buf.split_off(end);
                return Ok((buf, rest));
            }
            if buf.len() > MAX_HEAD {
                return Err(Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .unwrap_or(Err(None))
}

/// The target of `CONNECT host:port HTTP/1.x`.
fn connect_target(head: &[u8]) -> Option<http::uri::Authority> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (Some("CONNECT"), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return None;
    }
    let auth: http::uri::Authority = target.parse().ok()?;
    if auth.as_str().contains('@') || auth.port_u16().is_none() || auth.host().is_empty() {
        return None;
    }
    Some(auth)
}

async fn tunnel(snap: Arc<Snapshot>, mut stream: Stream, shutdown: ShutdownWatch) {
    let (head, rest) = match read_head(&mut stream).await {
        Ok(h) => h,
        Err(Some(status)) => return refuse(&mut stream, status).await,
        Err(None) => return,
    };
    let Some(signer) = snap.signer.clone() else {
        return refuse(&mut stream, StatusCode::SERVICE_UNAVAILABLE).await;
    };
    let Some(mitm) = signer.mitm.clone() else {
        tracing::debug!("signer: CONNECT refused (no MITM CA configured)");
        return refuse(&mut stream, StatusCode::FORBIDDEN).await;
    };
    let Some(auth) = connect_target(&head) else {
        return refuse(&mut stream, StatusCode::BAD_REQUEST).await;
    };
    let host = auth.host().to_string();
    let port = auth.port_u16().unwrap_or(443);
    // jwtproxy's aud: "https://" + the CONNECT target (its port included).
    let origin = format!("https://{}", auth.as_str()).to_ascii_lowercase();
    let Some(addr) = resolve(&host, port).await else {
        return refuse(&mut stream, StatusCode::BAD_GATEWAY).await;
    };
    if is_own(&snap, addr) {
        return refuse(&mut stream, StatusCode::BAD_REQUEST).await;
    }
    if !signer.allows(&origin) {
        tracing::debug!(target = %origin, "signer: CONNECT target not in allowed_targets");
        return refuse(&mut stream, StatusCode::FORBIDDEN).await;
    }
    let Ok(authority) = HeaderValue::from_str(auth.as_str()) else {
        return refuse(&mut stream, StatusCode::BAD_REQUEST).await;
    };
    let server = match mitm.server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("signer: {e}");
            return refuse(&mut stream, StatusCode::INTERNAL_SERVER_ERROR).await;
        }
    };
    let established = async {
        stream
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        stream.flush().await
    };
    if established.await.is_err() {
        return;
    }
    let io = Prefixed {
        prefix: rest,
        pos: 0,
        inner: stream,
    };
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsAcceptor::from(server).accept(io),
    )
    .await;
    let Ok(Ok(tls)) = accepted else {
        tracing::debug!(target = %origin, "signer: TLS handshake with the client failed");
        return;
    };
    let ctx = Arc::new(Tunnel {
        signer,
        mitm,
        addr,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        authority,
        aud: origin,
        upstream: tokio::sync::Mutex::new(None),
    });
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(ctx.forward(req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(16 * 1024)
        .max_headers(100)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    let mut shutdown = shutdown;
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

type Body = Either<Incoming, Full<Bytes>>;

fn short(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(status_body(status))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Hop-by-hop and proxy headers, never forwarded either way.
const HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
];

fn strip_hop(headers: &mut http::HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP.iter()) {
        headers.remove(n);
    }
}

/// One tunnel: its target and its connection there.
struct Tunnel {
    signer: Arc<Signer>,
    mitm: Arc<Mitm>,
    addr: SocketAddr,
    host: String,
    authority: HeaderValue,
    aud: String,
    upstream: tokio::sync::Mutex<Option<SendRequest<Incoming>>>,
}

impl Tunnel {
    async fn connect(&self) -> Result<SendRequest<Incoming>, String> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(self.addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name =
            ServerName::try_from(self.host.clone()).map_err(|e| format!("server name: {e}"))?;
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(self.mitm.client.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn forward(&self, mut req: Request<Incoming>) -> Response<Body> {
        if let Some(a) = req.uri().authority() {
            if !a
                .as_str()
                .eq_ignore_ascii_case(self.authority.to_str().unwrap_or(""))
            {
                return short(StatusCode::BAD_REQUEST);
            }
        }
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        if !target.starts_with('/') {
            return short(StatusCode::BAD_REQUEST);
        }
        let Ok(uri) = target.parse::<Uri>() else {
            return short(StatusCode::BAD_REQUEST);
        };
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_11;
        let headers = req.headers_mut();
        strip_hop(headers);
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, self.authority.clone());
        }
        let Some(token) = self
            .signer
            .token(&self.aud)
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
        else {
            return short(StatusCode::INTERNAL_SERVER_ERROR);
        };
        headers.insert(header::AUTHORIZATION, token);

        let mut slot = self.upstream.lock().await;
        let reusable = match slot.as_mut() {
            Some(s) => !s.is_closed() && s.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            match self.connect().await {
                Ok(s) => *slot = Some(s),
                Err(e) => {
                    *slot = None;
                    tracing::debug!(target = %self.aud, "signer: CONNECT target: {e}");
                    return short(StatusCode::BAD_GATEWAY);
                }
            }
        }
        let Some(sender) = slot.as_mut() else {
            return short(StatusCode::BAD_GATEWAY);
        };
        match sender.send_request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop(&mut parts.headers);
                Response::from_parts(parts, Either::Left(body))
            }
            Err(e) => {
                *slot = None;
                tracing::debug!(target = %self.aud, "signer: CONNECT target: {e}");
                short(StatusCode::BAD_GATEWAY)
            }
        }
    }
}

/// The client's stream with the bytes read past the `CONNECT` head put back in front.
struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_targets() {
        let ok = connect_target(b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!((ok.host(), ok.port_u16()), ("example.com", Some(443)));
        let ip = connect_target(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(ip.host(), "[::1]");
        for bad in [
            &b"CONNECT example.com HTTP/1.1\r\n\r\n"[..],
            b"CONNECT u@example.com:443 HTTP/1.1\r\n\r\n",
            b"CONNECT example.com:443 HTTP/2\r\n\r\n",
            b"CONNECT  example.com:443 HTTP/1.1\r\n\r\n",
            b"CONNECT :443 HTTP/1.1\r\n\r\n",
            b"CONNECT \xff:443 HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                connect_target(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
