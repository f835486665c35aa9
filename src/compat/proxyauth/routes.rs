//! The routes of the ProxyAuth drop-in: each entry of `routes.yml` checked and translated into
//! an upstream (one per target origin), a route's JSON, and the route as both matchers see it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::files::{located, Route, RouteFile};
use super::matching::{Access, Compiled};
use super::{REALM, ROUTES_FILE};
use crate::config::Problems;
use crate::routing::normalize_prefix;

/// What `routes.yml` becomes.
#[derive(Default)]
pub(super) struct Routes {
    /// `upstreams`: `target<n>` per target origin.
    pub(super) upstreams: Map<String, Value>,
    /// `routes`, in file order.
    pub(super) routes: Vec<Value>,
    /// The loaded routes, for `compare_matching`.
    pub(super) compiled: Vec<Compiled>,
}

/// The key path `routes[i].k` in `routes.yml`.
fn at(i: usize, k: &str) -> String {
    located(ROUTES_FILE, &format!("routes[{i}].{k}"))
}

/// Translate every route; `names` are the users of `config.json` (named `c` in notes).
pub(super) fn routes(
    file: &RouteFile,
    names: &BTreeSet<&str>,
    c: &str,
    problems: &mut Problems,
    notes: &mut Vec<String>,
) -> Routes {
    let mut out = Routes::default();
    let mut origins: BTreeMap<String, String> = BTreeMap::new();
    let mut unlisted: BTreeSet<String> = BTreeSet::new();
    let mut public_routes = false;
    for (i, rt) in file.routes.iter().enumerate() {
        check_unsupported(i, rt, problems, notes);
        let cert = client_cert(i, rt, problems);
        let Some(path) = prefix(i, &file.routes[..i], rt, problems, notes) else {
            continue;
        };
        let (origin, target_path) = match target(&rt.target) {
            Ok(t) => t,
            Err(e) => {
                problems.push(at(i, "target"), e);
                continue;
            }
        };
        let https = origin.starts_with("https://");
        if cert.is_some() && !https {
            problems.push(
                at(i, "cert.file"),
                "a client certificate needs an https:// target",
            );
        }
        let cert = cert.filter(|_| https);
        let upstream = upstream(&mut origins, &mut out.upstreams, &origin, cert);
        let access = access(i, rt, names, &mut unlisted, notes);
        public_routes |= access == Access::Public;
        let compiled = Compiled {
            index: i,
            raw: rt.prefix.clone(),
            path,
            origin,
            target_path,
            access,
        };
        out.routes.push(route_json(&compiled, upstream, c, notes));
        out.compiled.push(compiled);
    }
    if !unlisted.is_empty() {
        let list: Vec<&str> = unlisted.iter().map(String::as_str).collect();
        notes.push(format!(
            "{ROUTES_FILE}: username {} not in {c}: never let through (as in ProxyAuth)",
            list.join(", ")
        ));
    }
    if public_routes {
        notes.push(format!(
            "{c}:ratelimit: ProxyAuth also limits routes with secure: false, per client address; authedge does not limit public routes"
        ));
    }
    out
}

/// `proxy` is refused; `proxy_config` without `proxy` is ignored.
fn check_unsupported(i: usize, rt: &Route, problems: &mut Problems, notes: &mut Vec<String>) {
    if rt.proxy {
        problems.push(
            at(i, "proxy"),
            "an outbound forward proxy (proxy_config) is not supported by authedge yet; \
             remove proxy to reach the target directly",
        );
    } else if !rt.proxy_config.is_empty() {
        notes.push(format!(
            "{}: ignored, proxy is false (as in ProxyAuth)",
            at(i, "proxy_config")
        ));
    }
}

/// The route's client certificate toward its target (`cert.file`, non-empty): a PEM file with
/// the certificate chain and its unencrypted key, presented as the upstream's `client_cert` and
/// `client_key`. A PKCS#12 file (ProxyAuth's experimental format) is refused with the command
/// that converts it.
fn client_cert<'a>(i: usize, rt: &'a Route, problems: &mut Problems) -> Option<&'a str> {
    let cert = rt.cert.as_ref()?;
    let mut file = None;
    for (k, v) in cert {
        match k.as_str() {
            "file" if !v.is_empty() => file = Some(v.as_str()),
            "file" | "password" => {}
            _ => problems.push(at(i, &format!("cert.{k}")), "unknown key (file, password)"),
        }
    }
    let file = file?;
    let lower = file.to_ascii_lowercase();
    if [".p12", ".pk12", ".pfx"].iter().any(|e| lower.ends_with(e)) {
        problems.push(
            at(i, "cert.file"),
            format!(
                "PKCS#12 is not read by authedge; convert it once with \
                 `openssl pkcs12 -in {file} -nodes -out {file}.pem` and name the .pem here"
            ),
        );
        return None;
    }
    if cert.get("password").is_some_and(|p| !p.is_empty()) {
        problems.push(
            at(i, "cert.password"),
            "an encrypted key is not supported; give a PEM file with the unencrypted key \
             (`openssl pkcs12 -nodes` writes one) and an empty password",
        );
        return None;
    }
    Some(file)
}

/// The route's canonical prefix; `None` when it is not loaded (`earlier` are the routes before
/// it: ProxyAuth never reaches it past one whose prefix is a prefix of its own).
fn prefix(
    i: usize,
    earlier: &[Route],
    rt: &Route,
    problems: &mut Problems,
    notes: &mut Vec<String>,
) -> Option<String> {
    // A route ProxyAuth never reaches.
    if let Some(j) = earlier
        .iter()
        .position(|e| rt.prefix.starts_with(e.prefix.as_str()))
    {
        notes.push(format!(
            "{}: never reached in ProxyAuth (routes[{j}], prefix {:?}, comes first and matches all its paths); not loaded",
            at(i, "prefix"),
            earlier[j].prefix
        ));
        return None;
    }
    if !rt.prefix.is_empty() && !rt.prefix.starts_with('/') {
        notes.push(format!(
            "{}: {:?} does not start with / and matches no request in ProxyAuth; not loaded",
            at(i, "prefix"),
            rt.prefix
        ));
        return None;
    }
    let path = match normalize_prefix(if rt.prefix.is_empty() {
        "/"
    } else {
        &rt.prefix
    }) {
        Ok(pth) => pth,
        Err(e) => {
            problems.push(at(i, "prefix"), e);
            return None;
        }
    };
    if rt.prefix.len() > 1 && rt.prefix.ends_with('/') {
        notes.push(format!(
            "{}: ProxyAuth joins the target and the rest of the path without this /; authedge keeps it \
             ({:?} + x reaches the target's path + /x) and also serves {path:?} itself",
            at(i, "prefix"),
            rt.prefix
        ));
    }
    Some(path)
}

/// `target` as (`scheme://host:port`, path without trailing `/`).
fn target(t: &str) -> Result<(String, String), String> {
    let u = reqwest::Url::parse(t.trim()).map_err(|e| format!("{t:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{t:?} is not http(s)"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{t:?}: a query or fragment is not supported"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("{t:?}: credentials in the URL are not supported"));
    }
    let host = u.host_str().ok_or_else(|| format!("{t:?} has no host"))?;
    let port = u
        .port_or_known_default()
        .ok_or_else(|| format!("{t:?} has no port"))?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok((
        format!("{}://{host}:{port}", u.scheme()),
        u.path().trim_end_matches('/').to_string(),
    ))
}

/// The upstream of `origin` (with `cert`, its client certificate): `target<n>` in order of
/// first use, added to `upstreams` once.
fn upstream(
    origins: &mut BTreeMap<String, String>,
    upstreams: &mut Map<String, Value>,
    origin: &str,
    cert: Option<&str>,
) -> String {
    let n = origins.len();
    let key = match cert {
        None => origin.to_string(),
        Some(c) => format!("{origin}\n{c}"),
    };
    let upstream = origins
        .entry(key)
        .or_insert_with(|| format!("target{n}"))
        .clone();
    upstreams
        .entry(upstream.clone())
        .or_insert_with(|| match cert {
            None => json!({ "url": origin }),
            Some(c) => json!({ "url": origin, "client_cert": c, "client_key": c }),
        });
    upstream
}

/// Who passes: anyone (`secure: false`), or the listed users that exist (the others go to
/// `unlisted`).
fn access(
    i: usize,
    rt: &Route,
    names: &BTreeSet<&str>,
    unlisted: &mut BTreeSet<String>,
    notes: &mut Vec<String>,
) -> Access {
    if rt.secure {
        let mut allowed = BTreeSet::new();
        for u in &rt.username {
            if names.contains(u.as_str()) {
                allowed.insert(u.clone());
            } else {
                unlisted.insert(u.clone());
            }
        }
        Access::Users(allowed)
    } else {
        if !rt.username.is_empty() {
            notes.push(format!(
                "{}: not checked, secure is false (as in ProxyAuth)",
                at(i, "username")
            ));
        }
        Access::Public
    }
}

/// The route's JSON: `public` or an `opaque` filter with its users, `rewrite_prefix` when the
/// target's path differs from the prefix.
fn route_json(rt: &Compiled, upstream: String, c: &str, notes: &mut Vec<String>) -> Value {
    let mut route = json!({
        "id": format!("proxyauth{}", rt.index),
        "path": rt.path,
        "upstream": upstream,
    });
    match &rt.access {
        Access::Public => route["public"] = true.into(),
        Access::Users(list) => {
            // No user at all: ProxyAuth lets nobody through; "" is no user's name.
            let users: Vec<&str> = if list.is_empty() {
                notes.push(format!(
                    "{}: no user of {c} is listed: nobody passes (as in ProxyAuth)",
                    at(rt.index, "username")
                ));
                vec![""]
            } else {
                list.iter().map(String::as_str).collect()
            };
            route["auth"] = json!([{ "type": "opaque", "realm": REALM, "users": users }]);
        }
    }
    let same = if rt.path == "/" {
        rt.target_path.is_empty()
    } else {
        rt.target_path == rt.path
    };
    if !same {
        route["rewrite_prefix"] = rt.target_path.clone().into();
    }
    route
}
