//! Where a login or sign-out may send the browser afterwards (`rd`): a relative path on the same
//! host, or a URL whose exact origin (scheme, host, port) is listed in
//! `allowed_redirect_origins`. Anything else falls back to `/`. The checks are on the raw value
//! and on every percent-decoded form of it, so `/%2F%2Fevil.com`, `/%09/evil.com` and
//! `/\evil.com` (which browsers read as `//evil.com`) are refused, as are userinfo tricks
//! (`https://example.com@evil.com`), fragments (`https://evil.com#@example.com`), other schemes
//! (`javascript:`, `data:`) and look-alike hosts (`example.com.evil.com`, `evil-example.com`,
//! IDN homographs, a trailing dot).

use std::borrow::Cow;

/// Longest accepted redirect target.
pub const MAX_RD: usize = 2048;

/// An allowed origin, normalised (`https://app.example.com:8443`; default ports dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// Parse a configured origin: `http(s)://host[:port]`, nothing else.
    pub fn parse(s: &str) -> Result<Origin, String> {
        let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("{s:?}: only http and https origins"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!("{s:?}: an origin has no user info"));
        }
        if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
            return Err(format!("{s:?}: give scheme, host and port only"));
        }
        match origin_of(&u) {
            Some(o) => Ok(Origin(o)),
            None => Err(format!("{s:?}: no host")),
        }
    }
}

fn origin_of(u: &url::Url) -> Option<String> {
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// No control byte, space, backslash or non-ASCII: what a safe target is made of.
fn plain(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

/// A relative path that stays on this host: `/` then not `/` or `\`.
fn relative_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.first() == Some(&b'/') && !matches!(b.get(1), Some(b'/' | b'\\')) && plain(s)
}

/// `s` and each of its percent-decoded forms (up to three levels), all checked by `ok`.
fn every_decoding(s: &str, ok: impl Fn(&str) -> bool) -> bool {
    let mut cur: Cow<'_, str> = Cow::Borrowed(s);
    for _ in 0..4 {
        if !ok(&cur) {
            return false;
        }
        let decoded = match percent_encoding::percent_decode_str(&cur).decode_utf8() {
            Ok(d) => d.into_owned(),
            Err(_) => return false,
        };
        if decoded == *cur {
            return true;
        }
        cur = Cow::Owned(decoded);
    }
    // Still changing after three decodings: refuse rather than guess.
    false
}

/// The target to redirect to: `rd` when it is safe, else `/`.
pub fn safe_redirect<'a>(rd: Option<&'a str>, allowed: &[Origin]) -> Cow<'a, str> {
    match rd {
        Some(rd) if is_safe(rd, allowed) => Cow::Borrowed(rd),
        _ => Cow::Borrowed("/"),
    }
}

/// Whether `rd` is a safe redirect target.
pub fn is_safe(rd: &str, allowed: &[Origin]) -> bool {
    if rd.is_empty() || rd.len() > MAX_RD {
        return false;
    }
    if rd.starts_with('/') {
        return every_decoding(rd, relative_ok);
    }
    if allowed.is_empty() || !plain(rd) {
        return false;
    }
    let lower = rd.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return false;
    }
    // The authority as written must not hide user info or a fragment before the host ends.
    let after = &rd[rd.find("//").map(|i| i + 2).unwrap_or(0)..];
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || authority.is_empty() {
        return false;
    }
    let Ok(u) = url::Url::parse(rd) else {
        return false;
    };
    if !every_decoding(u.path(), |p| {
        p.starts_with('/') && !p.starts_with("//") && plain(p)
    }) {
        return false;
    }
    origin_of(&u).is_some_and(|o| allowed.iter().any(|a| a.0 == o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<Origin> {
        vec![
            Origin::parse("https://example.com").unwrap(),
            Origin::parse("http://localhost:8080").unwrap(),
        ]
    }

    /// Every vector of peers.md §E4 item 21, and more: all fall back to `/`.
    #[test]
    fn open_redirect_vectors_are_refused() {
        let a = allowed();
        for rd in [
            "//evil.com",
            "/\\evil.com",
            "\\/\\/evil.com",
            "/%09/evil.com",
            "/\t/evil.com",
            "/%0d%0a//evil.com",
            "/\r\n//evil.com",
            "/%2F%2Fevil.com",
            "/%2f%2fevil.com",
            "/%252F%252Fevil.com",
            "/%5Cevil.com",
            "https:evil.com",
            "https:/evil.com",
            "http:/\\evil.com",
            "https://example.com@evil.com",
            "https://example.com:443@evil.com/",
            "https://evil.com#@example.com",
            "https://evil.com\\@example.com",
            "https://example.com.evil.com",
            "https://evil-example.com",
            "https://example.com./",
            "https://exаmple.com/",
            "https://xn--exmple-4nf.com/",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.com",
            "http://example.com/",
            "https://example.com:8443/",
            "https://example.com//evil.com",
            "https://example.com/%2F%2Fevil.com",
            " /x",
            "/x y",
            "",
        ] {
            assert!(!is_safe(rd, &a), "{rd:?} must be refused");
            assert_eq!(safe_redirect(Some(rd), &a), "/", "{rd:?}");
        }
        assert_eq!(safe_redirect(None, &a), "/");
        assert!(!is_safe(&format!("/{}", "a".repeat(MAX_RD)), &a));
    }

    #[test]
    fn same_host_paths_and_listed_origins_pass() {
        let a = allowed();
        for rd in [
            "/",
            "/app/page?x=1&y=%2F",
            "/app/%7Euser",
            "https://example.com/",
            "https://example.com",
            "HTTPS://EXAMPLE.COM/x",
            "https://example.com:443/x",
            "http://localhost:8080/app?q=1#frag",
        ] {
            assert!(is_safe(rd, &a), "{rd:?} must pass");
        }
        // Without an allow-list only relative paths pass.
        assert!(!is_safe("https://example.com/", &[]));
        assert!(is_safe("/ok", &[]));
    }

    #[test]
    fn configured_origins_are_checked() {
        assert!(Origin::parse("https://a.example:8443").is_ok());
        for bad in [
            "ftp://a.example",
            "https://a.example/path",
            "https://u@a.example",
            "a.example",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
