//! The routing check of the ProxyAuth drop-in: ProxyAuth takes the first route (file order)
//! whose prefix is a string prefix of the path, authedge the longest prefix on `/` boundaries.
//! Each route as both matchers see it, and the comparison on test paths around every prefix.

use std::collections::BTreeSet;

use super::ROUTES_FILE;
use crate::config::Problems;

/// Who passes a route: anyone, or the users listed (ProxyAuth checks the list on secure routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Access {
    Public,
    Users(BTreeSet<String>),
}

impl Access {
    /// Whether `self` lets in someone `other` does not.
    pub(super) fn wider_than(&self, other: &Access) -> bool {
        match (self, other) {
            (_, Access::Public) => false,
            (Access::Public, Access::Users(_)) => true,
            (Access::Users(a), Access::Users(b)) => !a.is_subset(b),
        }
    }
}

/// One route as both matchers see it.
pub(super) struct Compiled {
    /// Index in `routes.yml`.
    pub(super) index: usize,
    /// ProxyAuth's prefix, as written.
    pub(super) raw: String,
    /// authedge's canonical prefix.
    pub(super) path: String,
    /// `scheme://host:port` of the target.
    pub(super) origin: String,
    /// The target's path without trailing `/` (`""` for the root).
    pub(super) target_path: String,
    pub(super) access: Access,
}

impl Compiled {
    /// The target URL ProxyAuth builds for `q` (target without trailing `/`, then the rest).
    pub(super) fn proxyauth_url(&self, q: &str) -> String {
        let rest = q.strip_prefix(self.raw.as_str()).unwrap_or("");
        format!("{}{}{rest}", self.origin, self.target_path)
    }

    /// Whether authedge's router sends `q` here: the prefix on `/` boundaries.
    pub(super) fn authedge_matches(&self, q: &str) -> bool {
        self.path == "/"
            || q == self.path
            || q.strip_prefix(self.path.as_str())
                .is_some_and(|r| r.starts_with('/'))
    }

    /// The target URL authedge builds for `q` (the prefix replaced by the target's path).
    pub(super) fn authedge_url(&self, q: &str) -> String {
        let rest = if self.path == "/" {
            if q == "/" {
                ""
            } else {
                q
            }
        } else {
            q.get(self.path.len()..).unwrap_or("")
        };
        let p = format!("{}{rest}", self.target_path);
        let p = if p.starts_with('/') {
            p
        } else {
            format!("/{p}")
        };
        format!("{}{p}", self.origin)
    }
}

/// Where the two matchers part: paths next to every prefix, sent by ProxyAuth (first string
/// prefix in file order) and by authedge (longest prefix on `/` boundaries). An authedge route
/// that reaches the same target URL and lets more users in is an error; other differences
/// are notes (one per pair of routes).
pub(super) fn compare_matching(
    routes: &[Compiled],
    problems: &mut Problems,
    notes: &mut Vec<String>,
) {
    let proxyauth = |q: &str| routes.iter().find(|r| q.starts_with(r.raw.as_str()));
    let authedge = |q: &str| {
        routes
            .iter()
            .filter(|r| r.authedge_matches(q))
            .max_by_key(|r| r.path.len())
    };
    let mut seen = BTreeSet::new();
    let mut not_found = None;
    for r in routes {
        let base = if r.raw.is_empty() {
            "/"
        } else {
            r.raw.as_str()
        };
        let trimmed = base.trim_end_matches('/');
        let probes = [
            base.to_string(),
            format!("{base}x"),
            format!("{base}/"),
            format!("{base}/x"),
            if trimmed.is_empty() {
                "/".to_string()
            } else {
                trimmed.to_string()
            },
        ];
        for q in probes {
            match (proxyauth(&q), authedge(&q)) {
                (Some(pa), Some(ae)) if pa.index != ae.index => {
                    if !seen.insert((pa.index, ae.index)) {
                        continue;
                    }
                    let same_url = pa.proxyauth_url(&q) == ae.authedge_url(&q);
                    let msg = format!(
                        "ProxyAuth sends {q} to routes[{}] (prefix {:?}); authedge, matching whole path segments, to routes[{}] (prefix {:?})",
                        pa.index, pa.raw, ae.index, ae.raw
                    );
                    if same_url && ae.access.wider_than(&pa.access) {
                        problems.push(
                            format!("{ROUTES_FILE}:routes[{}].prefix", pa.index),
                            format!(
                                "{msg}, the same target URL with fewer checks: end routes[{}]'s prefix with / (ProxyAuth then matches as authedge does) or add a route for the paths",
                                pa.index
                            ),
                        );
                    } else {
                        notes.push(format!("{ROUTES_FILE}:routes[{}].prefix: {msg}", pa.index));
                    }
                }
                (Some(pa), None) if not_found.is_none() => {
                    not_found = Some(format!(
                        "{ROUTES_FILE}:routes[{}].prefix: prefixes match whole path segments: {q} reached routes[{}]'s target in ProxyAuth, in authedge it is 404",
                        pa.index, pa.index
                    ));
                }
                _ => {}
            }
        }
    }
    notes.extend(not_found);
}
