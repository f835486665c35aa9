//! Canonical request paths and the route table.
//!
//! Every request gets one canonical path before matching: unreserved percent-escapes decoded
//! (RFC 3986 §6.2.2.2), other escapes upper-cased, repeated slashes merged, dot segments resolved.
//! Encoded `/`, `\` or NUL, and raw `\` or NUL, are refused (400): they mean different things to
//! different servers. The query never takes part in matching. The canonical path is also what the
//! upstream receives, so the edge and the upstream agree on what was authorised.
//!
//! Matching: host (exact, case-insensitive, port ignored; hostless routes serve any host), then the
//! longest path prefix on `/` boundaries, then the method. A prefix that matches but whose routes
//! do not allow the method gives 405 rather than falling back to a shorter prefix: a request can
//! never escape a protected prefix by picking another method. Lookups walk the path's prefixes
//! through a hash map, so cost grows with path depth, not with the number of routes.

use std::borrow::Cow;
use std::collections::HashMap;

use http::Method;

mod strict;
pub use strict::{strict_path, PathStrictness};

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Encoded slash, backslash or control byte, a raw backslash or control byte, a bad escape,
    /// escapes that are not UTF-8 (overlong forms included), or a strictness rule.
    Forbidden,
    /// Not an origin-form path.
    NotAbsolute,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The canonical form of a request path (without query). Borrows when the path is already
/// canonical, which is the common case.
pub fn canonical_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut simple = true;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' | 0..=0x1f | 0x7f => return Err(PathError::Forbidden),
            b'%' => simple = false,
            b'/' if bytes.get(i + 1) == Some(&b'/') => simple = false,
            b'.' if bytes[i - 1] == b'/' => simple = false,
            _ => {}
        }
    }
    if simple {
        return Ok(Cow::Borrowed(raw));
    }
    // Decode unreserved escapes, normalise the others. Bytes, not chars: the raw path may hold
    // UTF-8 sequences, which are copied through unchanged.
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut high_escape = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::Forbidden);
            };
            let v = h * 16 + l;
            // Control bytes: Pingora percent-encodes raw ones it cannot parse, so they arrive
            // here as escapes either way.
            if matches!(v, b'/' | b'\\' | 0..=0x1f | 0x7f) {
                return Err(PathError::Forbidden);
            }
            high_escape |= v >= 0x80;
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                decoded.push(b'%');
                decoded.push(bytes[i + 1].to_ascii_uppercase());
                decoded.push(bytes[i + 2].to_ascii_uppercase());
            }
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::Forbidden)?;
    // Escaped bytes above ASCII must decode to UTF-8: overlong forms (`%c0%ae` for `.`) and
    // stray bytes mean different things to different decoders.
    if high_escape {
        let all: Vec<u8> = percent_encoding::percent_decode(decoded.as_bytes()).collect();
        if std::str::from_utf8(&all).is_err() {
            return Err(PathError::Forbidden);
        }
    }
    // Resolve segments.
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (idx, seg) in segments.iter().enumerate() {
        // `..;x` and `.;x`: servlet containers drop `;parameters` and then resolve the dot
        // segment, so the edge and the upstream would disagree on the path. Refused.
        if let Some((base, _)) = seg.split_once(';') {
            if base == "." || base == ".." {
                return Err(PathError::Forbidden);
            }
        }
        match *seg {
            "" | "." => trailing_slash = idx == last && idx != 0,
            ".." => {
                out.pop();
                trailing_slash = idx == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

/// One route as the table knows it.
#[derive(Debug, Clone)]
pub struct RouteKey {
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    /// Canonical prefix without trailing slash (`/` for the root).
    pub prefix: String,
    /// Empty: every method.
    pub methods: Vec<Method>,
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Route(usize),
    NotFound,
    MethodNotAllowed,
}

#[derive(Debug, Default)]
struct PrefixTable {
    by_prefix: HashMap<String, Vec<(Vec<Method>, usize)>>,
    max_depth: usize,
}

/// The compiled route table.
#[derive(Debug, Default)]
pub struct Router {
    any_host: PrefixTable,
    by_host: HashMap<String, PrefixTable>,
    /// `path_strictness.case_insensitive`: prefixes stored and paths looked up in lower case.
    case_insensitive: bool,
}

/// A configured route path that is not a valid absolute path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {0:?} is not a valid absolute path")]
pub struct BadPrefix(pub String);

/// Normalise a configured prefix: canonical, no trailing slash except for the root.
pub fn normalize_prefix(p: &str) -> Result<String, BadPrefix> {
    let c = canonical_path(p).map_err(|_| BadPrefix(p.to_string()))?;
    let mut s = c.into_owned();
    while s.len() > 1 && s.ends_with('/') {
        s.pop();
    }
    Ok(s)
}

impl Router {
    /// Build from keys in route order. Errors name the two routes that would match the same
    /// requests.
    pub fn build(keys: &[RouteKey]) -> Result<Router, Vec<(usize, String)>> {
        Self::build_with(keys, false)
    }

    /// `build`, matching paths ignoring ASCII case when `case_insensitive`.
    pub fn build_with(
        keys: &[RouteKey],
        case_insensitive: bool,
    ) -> Result<Router, Vec<(usize, String)>> {
        let mut r = Router {
            case_insensitive,
            ..Router::default()
        };
        let mut errors = Vec::new();
        for (idx, k) in keys.iter().enumerate() {
            let prefix = if case_insensitive {
                k.prefix.to_ascii_lowercase()
            } else {
                k.prefix.clone()
            };
            let table = match &k.host {
                Some(h) => r.by_host.entry(h.clone()).or_default(),
                None => &mut r.any_host,
            };
            let entry = table.by_prefix.entry(prefix.clone()).or_default();
            if let Some((_, other)) = entry.iter().find(|(m, _)| methods_overlap(m, &k.methods)) {
                errors.push((
                    idx,
                    format!(
                        "overlaps routes[{other}]: same host, path and an overlapping method set"
                    ),
                ));
                continue;
            }
            entry.push((k.methods.clone(), idx));
            table.max_depth = table.max_depth.max(depth(&prefix));
        }
        if errors.is_empty() {
            Ok(r)
        } else {
            Err(errors)
        }
    }

    /// Find the route for a canonical path. `host` may carry a port and any case.
    pub fn lookup(&self, host: Option<&str>, method: &Method, path: &str) -> Match {
        if self.case_insensitive && path.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.lookup_exact(host, method, &path.to_ascii_lowercase());
        }
        self.lookup_exact(host, method, path)
    }

    fn lookup_exact(&self, host: Option<&str>, method: &Method, path: &str) -> Match {
        if !self.by_host.is_empty() {
            if let Some(h) = host {
                let h = host_key(h);
                let table = if h.bytes().any(|b| b.is_ascii_uppercase()) {
                    self.by_host.get(&h.to_ascii_lowercase())
                } else {
                    self.by_host.get(h)
                };
                if let Some(t) = table {
                    let m = t.lookup(method, path);
                    if m != Match::NotFound {
                        return m;
                    }
                }
            }
        }
        self.any_host.lookup(method, path)
    }
}

impl PrefixTable {
    fn lookup(&self, method: &Method, path: &str) -> Match {
        if self.by_prefix.is_empty() {
            return Match::NotFound;
        }
        let mut candidate = path;
        // Skip deeper levels than any configured prefix.
        let d = depth(candidate);
        if d > self.max_depth {
            let mut cut = 0;
            let mut seen = 0;
            for (i, b) in candidate.bytes().enumerate() {
                if b == b'/' {
                    if seen == self.max_depth + 1 {
                        cut = i;
                        break;
                    }
                    seen += 1;
                }
            }
            if cut > 0 {
                candidate = &candidate[..cut];
            }
        }
        if candidate.len() > 1 && candidate.ends_with('/') {
            candidate = &candidate[..candidate.len() - 1];
        }
        loop {
            if let Some(routes) = self.by_prefix.get(candidate) {
                return routes
                    .iter()
                    .find(|(m, _)| m.is_empty() || m.contains(method))
                    .map(|(_, i)| Match::Route(*i))
                    .unwrap_or(Match::MethodNotAllowed);
            }
            if candidate == "/" {
                return Match::NotFound;
            }
            candidate = match candidate.rfind('/') {
                Some(0) => "/",
                Some(i) => &candidate[..i],
                None => return Match::NotFound,
            };
        }
    }
}

fn depth(p: &str) -> usize {
    if p == "/" {
        0
    } else {
        p.bytes().filter(|b| *b == b'/').count()
    }
}

fn methods_overlap(a: &[Method], b: &[Method]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
}

/// The host without port and without one trailing dot (`example.com.` names the same host).
fn host_key(h: &str) -> &str {
    let h = strip_port(h);
    h.strip_suffix('.').unwrap_or(h)
}

fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        // "[v6]" or "[v6]:port"; an unclosed bracket is left as it is (and matches no host).
        return match rest.find(']') {
            Some(i) => &h[..i + 2],
            None => h,
        };
    }
    match h.rfind(':') {
        Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
        _ => h,
    }
}

#[cfg(test)]
mod tests;
