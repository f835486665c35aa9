//! Request header rules that do not depend on who the client is: the forwarding headers the edge
//! sets itself, the re-routing headers it removes, underscore spellings of framing and
//! hop-by-hop headers, and the message framing checks of RFC 9112 §6.
//!
//! Pingora already rejects differing `Content-Length` values, removes `Content-Length` when
//! `Transfer-Encoding` is present and refuses a final coding other than `chunked`. What is left
//! to the edge: a repeated or listed `Content-Length` with one value must reach the upstream as
//! one header, and any coding besides a single `chunked` is refused (the edge re-frames the body
//! as chunked, so another coding would silently change its meaning).

use http::{header, HeaderMap, HeaderValue, StatusCode};

/// Headers the edge sets from its own view of the request. Client copies are removed in every
/// spelling (case, `_` for `-`) before they are set.
pub const FORWARDING: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "forwarded",
];

/// Headers that make some backends (IIS URL Rewrite, Symfony, Laravel, ...) route by their
/// value instead of the request line: removed unless `forwarding.allow_rewrite_headers`.
pub const REWRITE: &[&str] = &["x-original-url", "x-rewrite-url"];

/// Framing and hop-by-hop headers. Their `_` spellings (`transfer_encoding`) are removed: the
/// edge does not frame by them, but WSGI, Rack and PHP fold `_` into `-` and would.
pub const FRAMING_AND_HOP: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "host",
];

/// Check the request's framing headers (RFC 9112 §6). `Err` is the status to answer with.
///
/// - `Transfer-Encoding` must be exactly one coding, `chunked` (any case): else 501 for a coding
///   the edge does not implement, 400 for `chunked` repeated or not last.
pub fn check_framing(headers: &HeaderMap) -> Result<(), StatusCode> {
    let mut codings = 0usize;
    let mut chunked = 0usize;
    let mut other = false;
    for v in headers.get_all(header::TRANSFER_ENCODING) {
        for c in v.as_bytes().split(|b| *b == b',') {
            let c = c.trim_ascii();
            if c.is_empty() {
                continue;
            }
            codings += 1;
            if c.eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
            } else {
                other = true;
            }
        }
    }
    if codings == 0 {
        // A Transfer-Encoding header with no coding at all.
        return if headers.contains_key(header::TRANSFER_ENCODING) {
            Err(StatusCode::BAD_REQUEST)
        } else {
            Ok(())
        };
    }
    if other {
        return Err(StatusCode::NOT_IMPLEMENTED);
    }
    if chunked != 1 || codings != 1 {
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok(())
}

/// When `Content-Length` is repeated or a list (Pingora already checked that every value is the
/// same number), leave exactly one header with that one value. Nothing happens (and nothing is
/// allocated) for a single plain value.
pub fn collapse_content_length(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = match (values.next(), values.next()) {
        (None, _) => return,
        (Some(v), None) if !v.as_bytes().contains(&b',') => return,
        (Some(v), _) => v.clone(),
    };
    let one = first
        .as_bytes()
        .split(|b| *b == b',')
        .map(|s| s.trim_ascii())
        .find(|s| !s.is_empty())
        .and_then(|s| HeaderValue::from_bytes(s).ok());
    match one {
        Some(v) => {
            headers.insert(header::CONTENT_LENGTH, v);
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
}

/// The `Forwarded` value (RFC 7239) for a client address, protocol and host. Built by hand: on
/// the public route `write!` for the address was a third of the edge's own header work.
pub fn forwarded_value(
    client: Option<std::net::IpAddr>,
    tls: bool,
    host: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    let mut s: Vec<u8> = Vec::with_capacity(96);
    match client {
        Some(std::net::IpAddr::V4(ip)) => {
            let (text, len) = ipv4_text(ip);
            s.extend_from_slice(b"for=");
            s.extend_from_slice(&text[..len]);
            s.push(b';');
        }
        Some(std::net::IpAddr::V6(ip)) => {
            s.extend_from_slice(format!("for=\"[{ip}]\";").as_bytes());
        }
        None => s.extend_from_slice(b"for=unknown;"),
    }
    s.extend_from_slice(if tls { b"proto=https" } else { b"proto=http" });
    if let Some(h) = host.map(HeaderValue::as_bytes) {
        // A host is a token or a quoted string; quote it, without quotes or backslashes inside.
        if !h.is_empty() && !h.iter().any(|&b| b == b'"' || b == b'\\' || !b.is_ascii()) {
            s.extend_from_slice(b";host=\"");
            s.extend_from_slice(h);
            s.push(b'"');
        }
    }
    HeaderValue::from_bytes(&s).ok()
}

/// `a.b.c.d` in decimal: the bytes and how many of them are used.
pub fn ipv4_text(ip: std::net::Ipv4Addr) -> ([u8; 15], usize) {
    let (mut buf, mut len) = ([0u8; 15], 0);
    for (i, octet) in ip.octets().into_iter().enumerate() {
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
    (buf, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn transfer_codings() {
        assert_eq!(check_framing(&map(&[])), Ok(()));
        assert_eq!(
            check_framing(&map(&[("transfer-encoding", "chunked")])),
            Ok(())
        );
        assert_eq!(
            check_framing(&map(&[("transfer-encoding", "Chunked")])),
            Ok(())
        );
        for (v, want) in [
            ("gzip, chunked", StatusCode::NOT_IMPLEMENTED),
            ("identity", StatusCode::NOT_IMPLEMENTED),
            ("chunked, chunked", StatusCode::BAD_REQUEST),
            (",", StatusCode::BAD_REQUEST),
        ] {
            assert_eq!(
                check_framing(&map(&[("transfer-encoding", v)])),
                Err(want),
                "{v}"
            );
        }
        let two = map(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ]);
        assert_eq!(check_framing(&two), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn content_length_collapses_to_one() {
        let mut m = map(&[("content-length", "5, 5")]);
        collapse_content_length(&mut m);
        assert_eq!(m.get_all("content-length").iter().count(), 1);
        assert_eq!(m["content-length"], "5");
        let mut m = map(&[("content-length", "5"), ("content-length", "5")]);
        collapse_content_length(&mut m);
        assert_eq!(m.get_all("content-length").iter().count(), 1);
        assert_eq!(m["content-length"], "5");
        let mut m = map(&[("content-length", "7")]);
        collapse_content_length(&mut m);
        assert_eq!(m["content-length"], "7");
    }

    #[test]
    fn forwarded() {
        let h = HeaderValue::from_static("example.com:8080");
        let v = forwarded_value(Some("1.2.3.4".parse().unwrap()), false, Some(&h)).unwrap();
        assert_eq!(v, "for=1.2.3.4;proto=http;host=\"example.com:8080\"");
        let v = forwarded_value(Some("::1".parse().unwrap()), true, None).unwrap();
        assert_eq!(v, "for=\"[::1]\";proto=https");
        for ip in ["0.0.0.0", "10.100.255.9", "255.255.255.255", "127.0.0.1"] {
            let v = forwarded_value(Some(ip.parse().unwrap()), false, None).unwrap();
            assert_eq!(v, format!("for={ip};proto=http").as_str());
        }
        let quoted = HeaderValue::from_static("a\"b");
        let v = forwarded_value(None, true, Some(&quoted)).unwrap();
        assert_eq!(
            v, "for=unknown;proto=https",
            "a host with a quote is left out"
        );
    }
}
