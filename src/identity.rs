//! Who a request is, once a filter allowed it, and the rules that turn that into upstream headers.
//!
//! The edge owns a set of identity header names. Client copies of them, in any case and with `_`
//! or `-`, are removed from every request on every route (public ones included) before the
//! headers of the current identity are set.
//!
//! Both steps work on a plain `http::HeaderMap` (the proxy hands over the upstream request's map
//! without Pingora's case-preserving shadow map), and an `Identity` carries ready header values,
//! so setting it costs map inserts and reference-count increments, not allocations.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The identity a filter established, as the header values the upstream will see. A field that
/// could not be a header value (control characters) is `None` and is not sent.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub subject: Option<HeaderValue>,
    pub issuer: Option<HeaderValue>,
    pub mode: &'static str,
    /// Scopes (jwt) or roles (opaque), separated by spaces; `None` when there are none.
    pub scopes: Option<HeaderValue>,
    /// Further headers the filter computed (claims mapped to headers, `X-User`, ...). Their names
    /// are listed by the filter's `identity_headers()` so the edge strips client copies.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Identity {
    /// The space-separated header value of a list of scopes or roles (`None` when empty or not
    /// a valid header value).
    pub fn join_scopes<S: AsRef<str>>(scopes: &[S]) -> Option<HeaderValue> {
        if scopes.is_empty() {
            return None;
        }
        let mut s = String::with_capacity(scopes.iter().map(|x| x.as_ref().len() + 1).sum());
        for (i, x) in scopes.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(x.as_ref());
        }
        HeaderValue::from_str(&s).ok()
    }
}

/// Header names for the standard identity fields; `None` disables one.
#[derive(Debug, Clone)]
pub struct StandardHeaders {
    pub subject: Option<HeaderName>,
    pub issuer: Option<HeaderName>,
    pub mode: Option<HeaderName>,
    pub scopes: Option<HeaderName>,
}

/// Names stripped from every request even when no filter sets them: the identity headers other
/// proxies of this kind use, so a client cannot impersonate through a route that forgets them.
pub const ALWAYS_STRIPPED: &[&str] = &[
    "x-auth-subject",
    "x-auth-issuer",
    "x-auth-mode",
    "x-auth-scopes",
    "x-user",
    "x-user-roles",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-remote-user",
    "x-remote-group",
    "remote-user",
    "x-auth-request-access-token",
    "x-auth-request-preferred-username",
    "x-authenticated-user",
    "x-authenticated-userid",
    "x-authenticated-groups",
    "x-id-token",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
];

/// Compiled once per config: every header name the edge owns, lower case with `-`.
#[derive(Debug, Clone)]
pub struct HeaderInjector {
    owned: Vec<Box<[u8]>>,
    /// Removed only in a spelling with `_` (the `-` spelling is the real framing header).
    underscore_only: Vec<Box<[u8]>>,
    pub standard: StandardHeaders,
}

impl HeaderInjector {
    pub fn new(
        standard: StandardHeaders,
        extra_owned: impl IntoIterator<Item = HeaderName>,
    ) -> Self {
        Self::with_rules(standard, extra_owned, false)
    }

    /// Like `new`; `allow_rewrite` keeps `X-Original-URL` / `X-Rewrite-URL`. Besides identity
    /// headers the edge owns the forwarding headers it sets itself (`headers::FORWARDING`), and
    /// drops `_` spellings of framing and hop-by-hop headers.
    pub fn with_rules(
        standard: StandardHeaders,
        extra_owned: impl IntoIterator<Item = HeaderName>,
        allow_rewrite: bool,
    ) -> Self {
        let rewrite: &[&str] = if allow_rewrite {
            &[]
        } else {
            crate::headers::REWRITE
        };
        let mut owned: Vec<Box<[u8]>> = ALWAYS_STRIPPED
            .iter()
            .chain(crate::headers::FORWARDING)
            .chain(rewrite)
            .map(|s| s.as_bytes().into())
            .collect();
        let underscore_only = crate::headers::FRAMING_AND_HOP
            .iter()
            .map(|s| s.as_bytes().into())
            .collect();
        let std_names = [
            &standard.subject,
            &standard.issuer,
            &standard.mode,
            &standard.scopes,
        ];
        for n in std_names.into_iter().flatten().cloned().chain(extra_owned) {
            let norm: Box<[u8]> = normalize(n.as_str().as_bytes()).into();
            if !owned.contains(&norm) {
                owned.push(norm);
            }
        }
        HeaderInjector {
            owned,
            underscore_only,
            standard,
        }
    }

    /// Whether a header name (as the client sent it) is one the edge owns.
    pub fn is_owned(&self, name: &[u8]) -> bool {
        self.owned.iter().any(|o| eq_header_loose(o, name))
            || (name.contains(&b'_')
                && self
                    .underscore_only
                    .iter()
                    .any(|o| eq_header_loose(o, name)))
    }

    /// Names the edge owns (normalised: lower case, `-`), for documentation and tests.
    pub fn owned_names(&self) -> impl Iterator<Item = &[u8]> {
        self.owned.iter().map(|o| &o[..])
    }

    /// Remove every owned header from the request, in all its spellings.
    pub fn strip(&self, headers: &mut HeaderMap) {
        // Collecting nothing (the usual case) allocates nothing.
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| self.is_owned(k.as_str().as_bytes()))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(&name);
        }
    }

    /// Set the identity's headers (after `strip`).
    pub fn inject(&self, headers: &mut HeaderMap, id: &Identity) {
        let s = &self.standard;
        let pairs = [
            (&s.subject, id.subject.as_ref()),
            (&s.issuer, id.issuer.as_ref()),
            (&s.scopes, id.scopes.as_ref()),
        ];
        for (name, value) in pairs {
            if let (Some(n), Some(v)) = (name, value) {
                headers.insert(n.clone(), v.clone());
            }
        }
        if let Some(n) = &s.mode {
            headers.insert(n.clone(), HeaderValue::from_static(id.mode));
        }
        for (n, v) in &id.headers {
            headers.insert(n.clone(), v.clone());
        }
    }
}

fn normalize(name: &[u8]) -> Vec<u8> {
    name.iter()
        .map(|b| {
            if *b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect()
}

/// `owned` is already normalised; compare ignoring case and treating `_` as `-`.
fn eq_header_loose(owned: &[u8], name: &[u8]) -> bool {
    owned.len() == name.len()
        && owned.iter().zip(name).all(|(o, n)| {
            let n = if *n == b'_' {
                b'-'
            } else {
                n.to_ascii_lowercase()
            };
            *o == n
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injector() -> HeaderInjector {
        HeaderInjector::new(
            StandardHeaders {
                subject: Some(HeaderName::from_static("x-auth-subject")),
                issuer: None,
                mode: None,
                scopes: None,
            },
            [HeaderName::from_static("x-tenant")],
        )
    }

    #[test]
    fn strips_all_spellings() {
        let inj = injector();
        let mut headers = HeaderMap::new();
        for name in [
            "X-Auth-Subject",
            "x_auth_subject",
            "X_TENANT",
            "X-Forwarded-User",
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("evil"),
            );
        }
        headers.append("accept", HeaderValue::from_static("ok"));
        inj.strip(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.get("accept").is_some());
        // Nothing owned: nothing removed.
        inj.strip(&mut headers);
        assert_eq!(headers.len(), 1);
        let id = Identity {
            subject: Some(HeaderValue::from_static("alice")),
            mode: "jwt",
            ..Default::default()
        };
        inj.inject(&mut headers, &id);
        assert_eq!(headers.get("x-auth-subject").unwrap(), "alice");
    }

    #[test]
    fn join_scopes() {
        assert_eq!(Identity::join_scopes::<&str>(&[]), None);
        assert_eq!(Identity::join_scopes(&["a", "b"]).unwrap(), "a b");
        assert_eq!(Identity::join_scopes(&["a\nb"]), None);
    }
}
