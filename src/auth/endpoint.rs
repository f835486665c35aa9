//! Endpoints the edge serves itself (`/auth`, `/oauth2/callback`, a key registry), matched by
//! host and exact canonical path before routing. Any mode's `build` may register them; each
//! answers with an [`Answer`] (a reply or a denial: an endpoint never "allows").

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;

use super::request::host_without_port;
use super::{Denial, DenyReason, Outcome, Reply, RequestView};

/// What an endpoint answers.
#[derive(Debug)]
pub enum Answer {
    Respond(Reply),
    Deny(Denial),
}

impl Answer {
    pub fn deny(status: StatusCode, reason: DenyReason) -> Self {
        Answer::Deny(Denial::new(status, reason))
    }
}

impl From<Answer> for Outcome {
    fn from(a: Answer) -> Outcome {
        match a {
            Answer::Respond(r) => Outcome::Respond(r),
            Answer::Deny(d) => Outcome::Deny(d),
        }
    }
}

/// A built-in endpoint (e.g. the opaque mode's `/auth`).
#[async_trait]
pub trait Endpoint: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> &'static str;
    /// Largest request body read for this endpoint; larger bodies get 413.
    fn max_body(&self) -> usize {
        0
    }
    async fn handle(&self, req: &RequestView<'_>) -> Answer;
}

/// Where an endpoint is served: an exact canonical path (or, with `prefix`, every path under
/// it), on one host (lower case, no port) or on every host (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointAt {
    pub host: Option<Box<str>>,
    pub path: Box<str>,
    pub prefix: bool,
}

impl EndpointAt {
    pub fn any_host(path: impl Into<Box<str>>) -> Self {
        EndpointAt {
            host: None,
            path: path.into(),
            prefix: false,
        }
    }

    /// Every path that starts with this one (which ends with `/`), not only the exact path.
    pub fn with_prefix(mut self) -> Self {
        self.prefix = true;
        self
    }

    pub fn on_host(host: &str, path: impl Into<Box<str>>) -> Self {
        let h = host_without_port(host).to_ascii_lowercase();
        EndpointAt {
            host: Some(h.into()),
            path: path.into(),
            prefix: false,
        }
    }
}

impl std::fmt::Display for EndpointAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let star = if self.prefix { "*" } else { "" };
        match &self.host {
            Some(h) => write!(f, "{h}{}{star}", self.path),
            None => write!(f, "{}{star}", self.path),
        }
    }
}

/// The endpoints at one path: host-specific ones first, then the any-host one.
type AtPath = Vec<(Option<Box<str>>, Arc<dyn Endpoint>)>;

/// The endpoint table of a snapshot: by path, then host (a host-specific entry before the
/// any-host one). Empty in most configs, and then a lookup is one branch, no hashing.
#[derive(Debug, Default)]
pub struct Endpoints {
    by_path: HashMap<Box<str>, AtPath>,
    /// Prefix endpoints (a key registry's `/services/`): few, tried after the exact paths.
    prefixes: Vec<(EndpointAt, Arc<dyn Endpoint>)>,
}

impl Endpoints {
    /// Add one; `Err` when that host and path is already taken.
    pub fn insert(&mut self, at: EndpointAt, e: Arc<dyn Endpoint>) -> Result<(), EndpointAt> {
        if at.prefix {
            if self.prefixes.iter().any(|(a, _)| *a == at) {
                return Err(at);
            }
            self.prefixes.push((at, e));
            // Host-specific first, then the longest prefix.
            self.prefixes.sort_by(|(a, _), (b, _)| {
                (b.host.is_some(), b.path.len()).cmp(&(a.host.is_some(), a.path.len()))
            });
            return Ok(());
        }
        let list = self.by_path.entry(at.path.clone()).or_default();
        if list.iter().any(|(h, _)| *h == at.host) {
            return Err(at);
        }
        // Host-specific entries first, so they win over an any-host one.
        match at.host {
            Some(h) => list.insert(0, (Some(h), e)),
            None => list.push((None, e)),
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty() && self.prefixes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_path.values().map(Vec::len).sum::<usize>() + self.prefixes.len()
    }

    /// The endpoint for this request's host (as sent: any case, maybe a port) and canonical path.
    #[inline]
    pub fn get(&self, host: Option<&str>, path: &str) -> Option<&Arc<dyn Endpoint>> {
        if self.is_empty() {
            return None;
        }
        let host = host.map(host_without_port);
        let fits = |h: &Option<Box<str>>| match (h, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        let exact = self
            .by_path
            .get(path)
            .and_then(|list| list.iter().find(|(h, _)| fits(h)).map(|(_, e)| e));
        exact.or_else(|| {
            self.prefixes
                .iter()
                .find(|(at, _)| path.starts_with(&*at.path) && fits(&at.host))
                .map(|(_, e)| e)
        })
    }
}

/// The SHA-256 of an endpoint's admin secret (at least 16 bytes), compared in constant time
/// against the digest of what a request presents. Problems name `key`.
pub fn admin_secret_digest(
    src: &crate::config::secret::SecretSource,
    key: &str,
    problems: &mut crate::config::Problems,
) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    match src.resolve() {
        Ok(s) if s.expose().len() >= 16 => Some(Sha256::digest(s.expose()).into()),
        Ok(_) => {
            problems.push(key, "the admin secret must be at least 16 bytes");
            None
        }
        Err(m) => {
            problems.push(key, m);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Named(&'static str);
    #[async_trait]
    impl Endpoint for Named {
        fn kind(&self) -> &'static str {
            self.0
        }
        async fn handle(&self, _req: &RequestView<'_>) -> Answer {
            Answer::deny(StatusCode::NOT_FOUND, DenyReason::Missing)
        }
    }

    #[test]
    fn host_entries_win_and_duplicates_are_refused() {
        let mut t = Endpoints::default();
        assert!(t.get(Some("a.test"), "/x").is_none());
        t.insert(EndpointAt::any_host("/x"), Arc::new(Named("any")))
            .unwrap();
        t.insert(
            EndpointAt::on_host("A.test:8443", "/x"),
            Arc::new(Named("a")),
        )
        .unwrap();
        assert!(t
            .insert(
                EndpointAt::on_host("a.test", "/x"),
                Arc::new(Named("again"))
            )
            .is_err());
        assert_eq!(t.get(Some("a.TEST:80"), "/x").unwrap().kind(), "a");
        assert_eq!(t.get(Some("b.test"), "/x").unwrap().kind(), "any");
        assert_eq!(t.get(None, "/x").unwrap().kind(), "any");
        assert!(t.get(Some("a.test"), "/y").is_none());
        assert_eq!(t.len(), 2);
        // A prefix endpoint serves every path under it; exact paths still win.
        t.insert(
            EndpointAt::any_host("/x/").with_prefix(),
            Arc::new(Named("tree")),
        )
        .unwrap();
        assert!(t
            .insert(
                EndpointAt::any_host("/x/").with_prefix(),
                Arc::new(Named("again"))
            )
            .is_err());
        assert_eq!(t.get(None, "/x/a/b").unwrap().kind(), "tree");
        assert_eq!(t.get(None, "/x/").unwrap().kind(), "tree");
        assert_eq!(t.get(None, "/x").unwrap().kind(), "any");
        assert!(t.get(None, "/xy").is_none());
    }
}
