//! Who a request is, once a filter allowed it, and the rules that turn that into upstream headers.
//!
//! The edge owns a set of identity header names. Client copies of them, in any case and with `_`
//! or `-`, are removed from every request on every route (public ones included) before the
//! headers of the current identity are set.

use http::{HeaderName, HeaderValue};
use pingora_http::RequestHeader;

/// The identity a filter established.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub subject: String,
    pub issuer: Option<String>,
    pub mode: &'static str,
    /// Scopes (jwt) or roles (opaque).
    pub scopes: Vec<String>,
    /// Further headers the filter computed (claims mapped to headers, `X-User`, ...). Their names
    /// are listed by the filter's `identity_headers()` so the edge strips client copies.
    pub headers: Vec<(HeaderName, HeaderValue)>,
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
    "remote-user",
];

/// Compiled once per config: every header name the edge owns, lower case with `-`.
#[derive(Debug, Clone)]
pub struct HeaderInjector {
    owned: Vec<Box<[u8]>>,
    pub standard: StandardHeaders,
}

impl HeaderInjector {
    pub fn new(
        standard: StandardHeaders,
        extra_owned: impl IntoIterator<Item = HeaderName>,
    ) -> Self {
        let mut owned: Vec<Box<[u8]>> = ALWAYS_STRIPPED
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
        HeaderInjector { owned, standard }
    }

    /// Whether a header name (as the client sent it) is one the edge owns.
    pub fn is_owned(&self, name: &[u8]) -> bool {
        self.owned.iter().any(|o| eq_header_loose(o, name))
    }

    /// Remove every owned header from the request, in all its spellings.
    pub fn strip(&self, req: &mut RequestHeader) {
        let doomed: Vec<HeaderName> = req
            .headers
            .keys()
            .filter(|k| self.is_owned(k.as_str().as_bytes()))
            .cloned()
            .collect();
        for name in doomed {
            req.remove_header(&name);
        }
    }

    /// Set the identity's headers (after `strip`).
    pub fn inject(&self, req: &mut RequestHeader, id: &Identity) {
        let s = &self.standard;
        if let Some(n) = &s.subject {
            set(req, n, &id.subject);
        }
        if let (Some(n), Some(iss)) = (&s.issuer, &id.issuer) {
            set(req, n, iss);
        }
        if let Some(n) = &s.mode {
            let _ = req.insert_header(n.clone(), HeaderValue::from_static(id.mode));
        }
        if let Some(n) = &s.scopes {
            if !id.scopes.is_empty() {
                set(req, n, &id.scopes.join(" "));
            }
        }
        for (n, v) in &id.headers {
            let _ = req.insert_header(n.clone(), v.clone());
        }
    }
}

/// Set a header from a string; values that are not valid header values (control characters) are
/// dropped rather than passed on.
fn set(req: &mut RequestHeader, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        let _ = req.insert_header(name.clone(), v);
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
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Auth-Subject", "evil").unwrap();
        req.append_header("x_auth_subject", "evil").unwrap();
        req.append_header("X_TENANT", "evil").unwrap();
        req.append_header("X-Forwarded-User", "evil").unwrap();
        req.append_header("Accept", "ok").unwrap();
        inj.strip(&mut req);
        assert_eq!(req.headers.len(), 1, "{:?}", req.headers);
        assert!(req.headers.get("accept").is_some());
        let id = Identity {
            subject: "alice".into(),
            mode: "jwt",
            ..Default::default()
        };
        inj.inject(&mut req, &id);
        assert_eq!(req.headers.get("x-auth-subject").unwrap(), "alice");
    }
}
