//! Small wire-level helpers of the proxy: the client address, short responses written by the
//! edge, generic status bodies, bounded body reads, request-id and address formatting.

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, StatusCode};
use pingora::prelude::*;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::auth::{Denial, DenyReason, RequestView};
use crate::snapshot::Snapshot;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The client address: the peer, or when the peer is a trusted proxy the right-most entry of
/// `X-Forwarded-For` that is not itself trusted.
pub fn client_ip(snap: &Snapshot, peer: Option<IpAddr>, req: &RequestHeader) -> Option<IpAddr> {
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

pub fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(header::TRANSFER_ENCODING)
        || req
            .headers
            .get(header::CONTENT_LENGTH)
            .map(|v| v.as_bytes() != b"0")
            .unwrap_or(false)
}

/// The conventional spelling of the headers the edge's own answers carry that Pingora does not
/// title-case itself (it writes a `HeaderName` lower-case unless it is one of a dozen it knows).
fn titled(n: &HeaderName) -> Option<&'static str> {
    Some(match *n {
        header::WWW_AUTHENTICATE => "WWW-Authenticate",
        header::RETRY_AFTER => "Retry-After",
        header::LOCATION => "Location",
        header::CACHE_CONTROL => "Cache-Control",
        header::SET_COOKIE => "Set-Cookie",
        header::ALLOW => "Allow",
        header::PRAGMA => "Pragma",
        _ => return None,
    })
}

/// Write a complete short response. `close` drops the connection afterwards: used whenever a
/// request body was not read, so no unread bytes can be taken for a next request.
pub async fn write_response(
    session: &mut Session,
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
    close: bool,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (n, v) in headers {
        match titled(n) {
            Some(name) => resp.append_header(name, v.clone())?,
            None => resp.append_header(n.clone(), v.clone())?,
        };
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
pub fn status_body(status: StatusCode) -> Bytes {
    let text = match status.as_u16() {
        400 => "bad request\n",
        401 => "unauthorized\n",
        403 => "forbidden\n",
        404 => "not found\n",
        405 => "method not allowed\n",
        408 => "request timeout\n",
        413 => "payload too large\n",
        429 => "too many requests\n",
        501 => "not implemented\n",
        502 => "bad gateway\n",
        503 => "service unavailable\n",
        504 => "gateway timeout\n",
        _ => "error\n",
    };
    Bytes::from_static(text.as_bytes())
}

/// Read the request body, refusing more than `max` bytes (413) or a bad length (400).
pub async fn read_body(
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

pub fn hex_into(out: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The peer address as a header value, without going through `fmt` for IPv4.
pub fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    match ip {
        IpAddr::V4(v4) => {
            let (text, len) = crate::headers::ipv4_text(v4);
            HeaderValue::from_bytes(&text[..len]).ok()
        }
        IpAddr::V6(_) => HeaderValue::from_str(&ip.to_string()).ok(),
    }
}

/// The host the client asked for: the URI authority, else `Host`.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri
        .host()
        .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// A request whose target names an authority (HTTP/2 `:authority`, an HTTP/1.1 absolute-form
/// target) and whose `Host` names another: the edge would route by one and the upstream might
/// read the other, so it is refused.
pub fn authority_conflict(req: &RequestHeader) -> bool {
    let Some(authority) = req.uri.authority() else {
        return false;
    };
    req.headers.get_all(header::HOST).iter().any(|h| {
        !h.as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    })
}

/// 413 for a body over the bound, else 400.
pub fn body_denial(status: StatusCode) -> Denial {
    let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
        DenyReason::TooLarge
    } else {
        DenyReason::Malformed
    };
    Denial::new(status, reason)
}

pub fn is_tls(session: &Session) -> bool {
    session
        .digest()
        .map(|d| d.ssl_digest.is_some())
        .unwrap_or(false)
}

/// The status for a proxying error: the upstream's timeouts 504, other upstream failures 502,
/// a client that went away 0 (nothing to write), other client errors 400, else 500.
pub fn error_code(e: &Error) -> u16 {
    match e.etype() {
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
    }
}

/// What filters and endpoints see of this request (`rewritten`: the canonical path when it
/// differs from the raw one; `addrs`: peer and client address).
pub fn view<'a>(
    req: &'a RequestHeader,
    rewritten: Option<&'a str>,
    addrs: (Option<IpAddr>, Option<IpAddr>),
    tls: bool,
    body: Option<&'a [u8]>,
) -> RequestView<'a> {
    RequestView {
        method: &req.method,
        host: request_host(req),
        tls,
        path: rewritten.unwrap_or(req.uri.path()),
        query: req.uri.query(),
        headers: &req.headers,
        peer: addrs.0,
        client_ip: addrs.1,
        body,
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
