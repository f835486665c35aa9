//! Upstreams: where allowed requests go. Compiled once per config into a ready `HttpPeer`
//! template (cloned per request), or the built-in `echo` upstream.

use std::net::ToSocketAddrs;

use pingora::upstreams::peer::HttpPeer;

use crate::config::schema::UpstreamConfig;

pub(crate) mod tls;

#[derive(Debug, Clone)]
pub enum UpstreamKind {
    Http(Box<HttpPeer>),
    /// Answer with JSON of what the upstream would have received.
    Echo,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub kind: UpstreamKind,
    pub host_header: Option<http::HeaderValue>,
}

/// Resolve an upstream's file names against the config file's directory.
pub fn resolve_paths(cfg: &mut UpstreamConfig, resolve: impl Fn(&str) -> String) {
    for f in [&mut cfg.ca_file, &mut cfg.client_cert, &mut cfg.client_key]
        .into_iter()
        .flatten()
    {
        *f = resolve(f);
    }
}

/// Compile one upstream. Host names are resolved now (at load), not per request.
pub fn build(name: &str, cfg: &UpstreamConfig) -> Result<Upstream, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let host_header = match &cfg.host_header {
        Some(h) => match http::HeaderValue::from_str(h) {
            Ok(v) => Some(v),
            Err(_) => {
                errs.push(("host_header".into(), "not a valid header value".into()));
                None
            }
        },
        None => None,
    };
    let kind = match (&cfg.url, cfg.echo) {
        (Some(_), true) => {
            errs.push(("".into(), "give either url or echo: true, not both".into()));
            None
        }
        (None, false) => {
            errs.push((
                "url".into(),
                "missing (or set echo: true for the built-in echo upstream)".into(),
            ));
            None
        }
        (None, true) => Some(UpstreamKind::Echo),
        (Some(url), false) => match peer(url, cfg) {
            Ok(mut p) => {
                tls::apply(&mut p, cfg, &mut errs);
                Some(UpstreamKind::Http(Box::new(p)))
            }
            Err(e) => {
                errs.push(("url".into(), e.to_string()));
                None
            }
        },
    };
    match kind {
        Some(kind) if errs.is_empty() => Ok(Upstream {
            name: name.to_string(),
            kind,
            host_header,
        }),
        _ => Err(errs),
    }
}

/// Why an upstream's `url` (or its HTTP version settings) cannot be used; pushed as a problem
/// at `upstreams.<name>.url`.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("unix: needs a socket path")]
    NoSocketPath,
    #[error("bad unix socket path: {0}")]
    SocketPath(#[source] pingora::BError),
    #[error("{0:?}: expected http://, https:// or unix:")]
    Scheme(String),
    #[error("a path in the upstream URL is not supported; give scheme://host:port")]
    Path,
    #[error("missing host")]
    NoHost,
    #[error("cannot resolve {address}: {source}")]
    Resolve {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("give http2 (https) or h2c (http), not both")]
    Http2AndH2c,
    #[error("http2: true needs https://; use h2c: true")]
    Http2NeedsTls,
    #[error("h2c: true needs http://; use http2: true")]
    H2cNeedsPlain,
}

fn peer(url: &str, cfg: &UpstreamConfig) -> Result<HttpPeer, PeerError> {
    let mut p = if let Some(path) = url.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(PeerError::NoSocketPath);
        }
        HttpPeer::new_uds(path, false, String::new()).map_err(PeerError::SocketPath)?
    } else {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(PeerError::Scheme(url.to_string()));
        };
        let authority = rest.split('/').next().unwrap_or("");
        if rest.len() > authority.len() + 1
            || (rest.len() == authority.len() + 1 && !rest.ends_with('/'))
        {
            return Err(PeerError::Path);
        }
        if authority.is_empty() {
            return Err(PeerError::NoHost);
        }
        let host = authority
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']'))
            .map(|(h, _)| h)
            .unwrap_or(authority);
        let with_port = if host.len() == authority.len() {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        } else {
            authority.to_string()
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|source| PeerError::Resolve {
                address: with_port.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| PeerError::NoAddress(with_port.clone()))?;
        let sni = cfg
            .sni
            .clone()
            .unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
        HttpPeer::new(addr, tls, sni)
    };
    p.options.connection_timeout = Some(cfg.connect_timeout);
    p.options.read_timeout = Some(cfg.read_timeout);
    p.options.write_timeout = Some(cfg.read_timeout);
    p.options.idle_timeout = Some(cfg.idle_timeout);
    p.options.verify_cert = cfg.tls_verify;
    p.options.verify_hostname = cfg.tls_verify;
    match (cfg.http2, cfg.h2c, p.is_tls()) {
        (true, true, _) => return Err(PeerError::Http2AndH2c),
        (true, false, false) => return Err(PeerError::Http2NeedsTls),
        (false, true, true) => return Err(PeerError::H2cNeedsPlain),
        // Only HTTP/2: gRPC cannot fall back to HTTP/1.1. On a plain peer this is h2c with
        // prior knowledge.
        (true, false, true) | (false, true, false) => p.options.set_http_version(2, 2),
        (false, false, _) => {}
    }
    Ok(p)
}
