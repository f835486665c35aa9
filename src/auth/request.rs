//! What a filter sees of a request ([`RequestView`]) and the parsers beside it: the bearer
//! token, cookies (tolerant of hostile headers: bounded work, malformed pairs skipped), the query
//! string, and removing single cookies before the upstream.

use std::borrow::Cow;
use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Method};

use super::DenyReason;

/// Bytes of `Cookie` headers looked at per request; the rest is ignored (browsers send at most
/// a few KB; an 8 KB header of 500 cookies is well inside).
pub const MAX_COOKIE_BYTES: usize = 16 * 1024;
/// Cookie pairs looked at per request.
pub const MAX_COOKIES: usize = 1000;

/// What a filter sees of a request: small, borrowed, and free of Pingora types so that every
/// filter can be unit-tested without a server.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// The host the client asked for (URI authority or `Host`), as sent: may carry a port.
    pub host: Option<&'a str>,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// Canonical path (dot segments resolved, slashes merged); what routing matched.
    pub path: &'a str,
    /// Raw query string without the `?`, if any.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// The client address: the peer, or the right-most untrusted `X-Forwarded-For` entry when the
    /// peer is a configured trusted proxy.
    pub client_ip: Option<IpAddr>,
    /// The request body, read (bounded) only for endpoints and filters that ask for it
    /// (`max_body`).
    pub body: Option<&'a [u8]>,
}

impl<'a> RequestView<'a> {
    /// A view with only method, path and headers set (host, peer and body empty, plain HTTP).
    pub fn new(method: &'a Method, path: &'a str, headers: &'a HeaderMap) -> Self {
        RequestView {
            method,
            host: None,
            tls: false,
            path,
            query: None,
            headers,
            peer: None,
            client_ip: None,
            body: None,
        }
    }

    /// `https` on a TLS connection, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The host without port or trailing dot, as sent (compare case-insensitively).
    pub fn host_name(&self) -> Option<&'a str> {
        self.host.map(host_without_port)
    }

    /// The raw `Cookie` header values.
    pub fn cookie_headers(&self) -> http::header::GetAll<'a, HeaderValue> {
        self.headers.get_all(http::header::COOKIE)
    }

    /// Every cookie pair (see [`cookies`]).
    pub fn cookies(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        cookies(self.headers)
    }

    /// The first cookie called `name`.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.cookies().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Decoded query pairs (see [`query_pairs`]).
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> {
        query_pairs(self.query.unwrap_or(""))
    }

    /// The first query parameter called `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// `example.com:8443` -> `example.com`, `[::1]:80` -> `[::1]`, `example.com.` -> `example.com`.
pub fn host_without_port(host: &str) -> &str {
    let h = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    h.strip_suffix('.').unwrap_or(h)
}

/// Cookie pairs of every `Cookie` header, in order (RFC 6265 section 5.4: `name=value` joined
/// by `;`). Tolerant and bounded: pairs without `=`, with an empty name, or not UTF-8 are
/// skipped; names and values are trimmed; a value in double quotes loses them; work stops after
/// [`MAX_COOKIE_BYTES`] bytes or [`MAX_COOKIES`] pairs.
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    let mut budget = MAX_COOKIE_BYTES;
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .map_while(move |v| {
            let raw = v.as_bytes();
            let take = raw.len().min(budget);
            budget -= take;
            (take > 0).then(|| &raw[..take])
        })
        .flat_map(semicolon_split)
        .filter_map(cookie_pair)
        .take(MAX_COOKIES)
}

/// The pieces of a `Cookie` header between `;` (memchr: a session cookie is kilobytes long).
fn semicolon_split(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(raw);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b';', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

fn cookie_pair(raw: &[u8]) -> Option<(&str, &str)> {
    let pair = std::str::from_utf8(raw).ok()?;
    let (name, value) = pair.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((name, value))
}

/// Remove the cookies called any of `names` from the `Cookie` headers, keeping the others (in
/// one header); no header is left when none remains. Nothing changes when none is present.
pub fn strip_cookies(headers: &mut HeaderMap, names: &[Box<str>]) {
    if names.is_empty() || !headers.contains_key(http::header::COOKIE) {
        return;
    }
    let mut kept = String::new();
    let mut removed = false;
    for v in headers.get_all(http::header::COOKIE).iter() {
        for pair in semicolon_split(v.as_bytes()) {
            let name = memchr::memchr(b'=', pair).map(|i| pair[..i].trim_ascii());
            if name.is_some_and(|n| names.iter().any(|s| s.as_bytes() == n)) {
                removed = true;
                continue;
            }
            let pair = pair.trim_ascii();
            // Pieces that are not text are dropped when the header is rewritten.
            let Ok(pair) = std::str::from_utf8(pair) else {
                continue;
            };
            if pair.is_empty() {
                continue;
            }
            if !kept.is_empty() {
                kept.push_str("; ");
            }
            kept.push_str(pair);
        }
    }
    if !removed {
        return;
    }
    headers.remove(http::header::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&kept) {
        if !kept.is_empty() {
            headers.insert(http::header::COOKIE, v);
        }
    }
}

/// `application/x-www-form-urlencoded` pairs of a query string (or form body): `+` is a space,
/// `%XX` decoded (invalid UTF-8 replaced), empty pieces skipped, a piece without `=` has an empty
/// value.
pub fn query_pairs(q: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        (form_decode(n), form_decode(v))
    })
}

fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let spaced = s.replace('+', " ");
    Cow::Owned(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Extract the token of an `Authorization: Bearer <token>` header.
///
/// `Ok(None)`: no Authorization header or another scheme (not my kind). `Err`: more than one
/// Authorization header, or a Bearer header that is empty or not visible ASCII.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, DenyReason> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DenyReason::MultipleCredentials);
    }
    let raw = first.as_bytes();
    if raw.len() < 7 || !raw[..7].eq_ignore_ascii_case(b"bearer ") {
        return Ok(None);
    }
    // One pass over the bytes: visible ASCII only (so the UTF-8 check below cannot fail and
    // takes its ASCII fast path).
    let token = raw[7..].trim_ascii();
    // A fold without early exit, so the compiler checks 16 or 32 bytes per step.
    let graphic = token
        .iter()
        .fold(true, |ok, b| ok & (b.wrapping_sub(0x21) < 0x5e));
    if token.is_empty() || !graphic {
        return Err(DenyReason::Malformed);
    }
    std::str::from_utf8(token)
        .map(Some)
        .map_err(|_| DenyReason::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer_token(&hm(&[])), Ok(None));
        assert_eq!(bearer_token(&hm(&["Basic abc"])), Ok(None));
        assert_eq!(bearer_token(&hm(&["Bearer abc"])), Ok(Some("abc")));
        assert_eq!(bearer_token(&hm(&["bearer  abc "])), Ok(Some("abc")));
        assert_eq!(bearer_token(&hm(&["Bearer "])), Err(DenyReason::Malformed));
        assert_eq!(
            bearer_token(&hm(&["Bearer a", "Bearer b"])),
            Err(DenyReason::MultipleCredentials)
        );
        // Every visible ASCII byte passes; space inside, tab and non-ASCII do not (DEL is no header
        // value at all).
        let all: String = (0x21u8..=0x7e).map(char::from).collect();
        let v = format!("Bearer {all}");
        assert_eq!(bearer_token(&hm(&[v.as_str()])), Ok(Some(all.as_str())));
        for bad in [&b"Bearer a b"[..], b"Bearer a\tb", b"Bearer ab\xc3\xa9"] {
            let mut h = HeaderMap::new();
            h.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_bytes(bad).unwrap(),
            );
            assert_eq!(bearer_token(&h), Err(DenyReason::Malformed), "{bad:?}");
        }
    }

    fn cookie_map(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_tolerate_hostile_headers() {
        let h = cookie_map(&[b"a=1; b = \"two\" ;;=x; novalue; c=3=3", b"d=\xff\xfe; e=5"]);
        let got: Vec<_> = cookies(&h).collect();
        assert_eq!(
            got,
            vec![("a", "1"), ("b", "two"), ("c", "3=3"), ("e", "5")],
            "malformed pairs skipped, the rest kept"
        );
        // 8 KB in 500 cookies plus junk: the last one is still found.
        let mut big = String::new();
        for i in 0..499 {
            big.push_str(&format!("c{i}=v{i:010}; ;=;"));
        }
        big.push_str("target=yes");
        assert!(big.len() > 8 * 1024);
        let h = cookie_map(&[big.as_bytes()]);
        let v = RequestView::new(&Method::GET, "/", &h);
        assert_eq!(v.cookie("target"), Some("yes"));
        assert_eq!(v.cookies().count(), 500);
        // Work is bounded: a 1 MB header is cut at the byte budget, no panic.
        let huge = "x=1;".repeat(256 * 1024);
        let h = cookie_map(&[huge.as_bytes()]);
        assert_eq!(cookies(&h).count(), MAX_COOKIES);
    }

    #[test]
    fn strip_cookies_keeps_the_others() {
        let mut h = cookie_map(&[b"keep=1; session=secret", b"other=2;session=again"]);
        strip_cookies(&mut h, &["session".into()]);
        assert_eq!(h.get_all(http::header::COOKIE).iter().count(), 1);
        assert_eq!(h.get(http::header::COOKIE).unwrap(), "keep=1; other=2");
        let mut h = cookie_map(&[b"session=x"]);
        strip_cookies(&mut h, &["session".into()]);
        assert!(h.get(http::header::COOKIE).is_none());
        let mut h = cookie_map(&[b"a=1", b"b=2"]);
        strip_cookies(&mut h, &["session".into()]);
        assert_eq!(
            h.get_all(http::header::COOKIE).iter().count(),
            2,
            "untouched"
        );
    }

    #[test]
    fn query_and_host() {
        let h = HeaderMap::new();
        let mut v = RequestView::new(&Method::GET, "/", &h);
        v.query = Some("a=1&rd=%2Fx%3Fy%3D1&b=two+words&&flag&bad=%ff");
        assert_eq!(v.query_param("a").as_deref(), Some("1"));
        assert_eq!(v.query_param("rd").as_deref(), Some("/x?y=1"));
        assert_eq!(v.query_param("b").as_deref(), Some("two words"));
        assert_eq!(v.query_param("flag").as_deref(), Some(""));
        assert_eq!(v.query_param("bad").as_deref(), Some("\u{fffd}"));
        assert_eq!(v.query_param("zzz"), None);
        for (h, want) in [
            ("example.com:8443", "example.com"),
            ("example.com.", "example.com"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("plain", "plain"),
        ] {
            assert_eq!(host_without_port(h), want);
        }
        assert_eq!(v.scheme(), "http");
    }
}
