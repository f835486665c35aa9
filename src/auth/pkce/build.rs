//! Building the `pkce:` realms at config load, one phase per function: URLs and paths, the
//! edge's credentials, sealing keys, clients, lifetimes and limits; then the realm and its three
//! endpoints. Every problem names its full key path (`pkce.<name>.clients[1].redirect_uris[0]`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::authorize::GetStep;
use super::sealed::MAX_REDIRECT_URI;
use super::token::TokenEndpoint;
use super::{PkceRealm, PkceRealmConfig};
use crate::auth::endpoint::EndpointAt;
use crate::auth::limits::SharedLimit;
use crate::auth::Endpoint;
use crate::config::Problems;
use crate::context::Context;
use crate::state::Store;
use crate::tokens::seal::Sealer;

/// The endpoints one realm serves, with the key path its problems are reported at.
pub type RealmEndpoints = (String, Vec<(EndpointAt, Arc<dyn Endpoint>)>);

/// Build every realm of the `pkce:` block; problems go to `problems`.
pub fn build_realms(
    realms: &BTreeMap<String, PkceRealmConfig>,
    warm: &Context,
    state: &Store,
    problems: &mut Problems,
) -> Vec<RealmEndpoints> {
    let mut out = Vec::new();
    for (name, cfg) in realms {
        let path = format!("pkce.{name}");
        match build_realm(name, cfg, &path, warm, state) {
            Ok(eps) => out.push((path, eps)),
            Err(p) => problems.0.extend(p.0),
        }
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An absolute canonical path without query, fragment or trailing slash (except `/`).
fn check_path(p: &str, key: &str, problems: &mut Problems) -> bool {
    let canonical = crate::routing::canonical_path(p)
        .map(|c| c == p)
        .unwrap_or(false);
    let ok = p.starts_with('/')
        && canonical
        && !p.contains(['?', '#'])
        && (p == "/" || !p.ends_with('/'));
    if !ok {
        problems.push(
            key,
            format!("{p:?} must be an absolute canonical path (no dot segments, doubled or trailing slashes, query)"),
        );
    }
    ok
}

fn loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// An http(s) URL without fragment; plain http only to loopback.
fn server_url(v: &str, key: &str, problems: &mut Problems) -> Option<url::Url> {
    let u = match url::Url::parse(v) {
        Ok(u) => u,
        Err(e) => {
            problems.push(key, format!("{v:?} is not a URL: {e}"));
            return None;
        }
    };
    let ok = match u.scheme() {
        "https" => true,
        "http" => loopback(&u),
        _ => false,
    };
    if !ok || u.fragment().is_some() || u.host().is_none() {
        problems.push(
            key,
            format!("{v:?} must be an https URL without fragment (http only to loopback)"),
        );
        return None;
    }
    Some(u)
}

struct Paths {
    authorize: String,
    authorization: String,
    token: String,
    callback: String,
}

fn check_urls(
    cfg: &PkceRealmConfig,
    path: &str,
    problems: &mut Problems,
) -> Option<(url::Url, Paths)> {
    let prefix_ok = check_path(&cfg.prefix, &format!("{path}.prefix"), problems);
    let auth = server_url(
        &cfg.authorization_url,
        &format!("{path}.authorization_url"),
        problems,
    );
    server_url(&cfg.token_url, &format!("{path}.token_url"), problems);
    let cb_key = format!("{path}.callback_url");
    let callback = url::Url::parse(&cfg.callback_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    let callback = match callback {
        Some(u) if u.query().is_none() && u.fragment().is_none() => {
            check_path(u.path(), &cb_key, problems).then(|| u.path().to_string())
        }
        _ => {
            problems.push(
                &cb_key,
                "must be the edge's own http(s) callback URL, without query or fragment",
            );
            None
        }
    };
    let base = cfg.prefix.trim_end_matches('/');
    let paths = Paths {
        authorize: format!("{base}/authorize"),
        authorization: format!("{base}/authorization"),
        token: format!("{base}/token"),
        callback: callback?,
    };
    if [&paths.authorize, &paths.authorization, &paths.token].contains(&&paths.callback) {
        problems.push(
            cb_key,
            "the callback path must differ from the other endpoints",
        );
        return None;
    }
    prefix_ok.then_some(())?;
    Some((auth?, paths))
}

/// The edge's credentials at the authorization server.
fn check_credentials(
    cfg: &PkceRealmConfig,
    path: &str,
    problems: &mut Problems,
) -> Option<Zeroizing<String>> {
    if cfg.client_id.is_empty() {
        problems.push(format!("{path}.client_id"), "must not be empty");
    }
    let key = format!("{path}.client_secret");
    match cfg.client_secret.resolve() {
        Ok(s) => match std::str::from_utf8(s.expose()) {
            Ok(t) => Some(Zeroizing::new(t.to_string())),
            Err(_) => {
                problems.push(key, "the client secret must be UTF-8");
                None
            }
        },
        Err(m) => {
            problems.push(key, m);
            None
        }
    }
}

/// The realm's sealer: the first key seals, all open.
fn build_sealer(
    name: &str,
    cfg: &PkceRealmConfig,
    path: &str,
    problems: &mut Problems,
) -> Option<Sealer> {
    if cfg.keys.is_empty() {
        problems.push(
            format!("{path}.keys"),
            "at least one key is needed (the first seals, all open)",
        );
        return None;
    }
    let mut seen = HashSet::new();
    let mut secrets = Vec::with_capacity(cfg.keys.len());
    for (i, k) in cfg.keys.iter().enumerate() {
        if !seen.insert(k.id.as_str()) {
            problems.push(
                format!("{path}.keys[{i}].id"),
                format!("key id {:?} is listed twice", k.id),
            );
        }
        match k.secret.resolve() {
            Ok(s) => secrets.push((k.id.as_str(), s)),
            Err(m) => problems.push(format!("{path}.keys[{i}].secret"), m),
        }
    }
    if secrets.len() != cfg.keys.len() {
        return None;
    }
    let pairs: Vec<(&str, &[u8])> = secrets.iter().map(|(id, s)| (*id, s.expose())).collect();
    match Sealer::new("pkce", name.as_bytes(), &pairs) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(format!("{path}.keys[{}]", e.index), e.reason.to_string());
            None
        }
    }
}

/// Downstream clients: unique ids, exact absolute redirect URIs without fragment.
fn check_clients(
    cfg: &PkceRealmConfig,
    path: &str,
    problems: &mut Problems,
) -> HashMap<String, Vec<String>> {
    let mut clients = HashMap::new();
    if cfg.clients.is_empty() {
        problems.push(
            format!("{path}.clients"),
            "at least one client is needed: {client_id, redirect_uris}",
        );
    }
    for (i, c) in cfg.clients.iter().enumerate() {
        let p = format!("{path}.clients[{i}]");
        if c.client_id.is_empty() || c.client_id.len() > 256 {
            problems.push(format!("{p}.client_id"), "must be 1 to 256 characters");
        }
        if c.redirect_uris.is_empty() {
            problems.push(
                format!("{p}.redirect_uris"),
                "at least one exact redirect URI",
            );
        }
        for (j, u) in c.redirect_uris.iter().enumerate() {
            let ok = u.len() <= MAX_REDIRECT_URI
                && url::Url::parse(u).is_ok_and(|p| p.fragment().is_none() && !u.contains('#'));
            if !ok {
                problems.push(
                    format!("{p}.redirect_uris[{j}]"),
                    format!("{u:?} must be an absolute URI without fragment (at most {MAX_REDIRECT_URI} bytes)"),
                );
            }
        }
        if clients
            .insert(c.client_id.clone(), c.redirect_uris.clone())
            .is_some()
        {
            problems.push(
                format!("{p}.client_id"),
                format!("client {:?} is listed twice", c.client_id),
            );
        }
    }
    clients
}

fn check_times(cfg: &PkceRealmConfig, path: &str, problems: &mut Problems) {
    let within =
        |d: Duration, lo: u64, hi: u64| (lo..=hi).contains(&d.as_secs()) && d.as_secs() > 0;
    if !within(cfg.state_lifetime, 1, 3600) {
        problems.push(
            format!("{path}.state_lifetime"),
            "must be between 1s and 1h",
        );
    }
    if !within(cfg.code_lifetime, 1, 600) {
        problems.push(
            format!("{path}.code_lifetime"),
            "must be between 1s and 10m",
        );
    }
    if cfg.token_timeout < Duration::from_millis(100) || cfg.token_timeout > Duration::from_secs(60)
    {
        problems.push(
            format!("{path}.token_timeout"),
            "must be between 100ms and 60s",
        );
    }
}

fn build_realm(
    name: &str,
    cfg: &PkceRealmConfig,
    path: &str,
    warm: &Context,
    state: &Store,
) -> Result<Vec<(EndpointAt, Arc<dyn Endpoint>)>, Problems> {
    let mut problems = Problems::default();
    if !valid_name(name) {
        problems.push(
            path,
            "a realm name is 1 to 64 characters of A-Z a-z 0-9 . _ -",
        );
    }
    let urls = check_urls(cfg, path, &mut problems);
    let secret = check_credentials(cfg, path, &mut problems);
    let sealer = build_sealer(name, cfg, path, &mut problems);
    let clients = check_clients(cfg, path, &mut problems);
    check_times(cfg, path, &mut problems);
    let rate = cfg
        .rate_limit
        .rate()
        .map_err(|m| problems.push(format!("{path}.rate_limit"), m))
        .ok();
    let (Some((authorization_url, paths)), Some(client_secret), Some(sealer), Some(rate)) =
        (urls, secret, sealer, rate)
    else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let realm = Arc::new(PkceRealm {
        name: name.to_string(),
        sealer,
        authorization_url,
        token_url: cfg.token_url.clone(),
        client_id: cfg.client_id.clone(),
        client_secret,
        token_auth: cfg.token_auth,
        callback_url: cfg.callback_url.clone(),
        clients,
        state_lifetime: cfg.state_lifetime,
        code_lifetime: cfg.code_lifetime,
        single_use: cfg.single_use_codes,
        token_timeout: cfg.token_timeout,
        state: state.clone(),
        limit: SharedLimit::new(
            state,
            &format!("pkce:{name}"),
            "client",
            rate,
            cfg.on_state_error,
        ),
        outbound: warm.outbound.clone(),
        counters: super::counters::Counters::new(warm, name),
    });
    let authorize: Arc<dyn Endpoint> = Arc::new(GetStep::authorize(realm.clone()));
    Ok(vec![
        (EndpointAt::any_host(paths.authorize), authorize.clone()),
        (EndpointAt::any_host(paths.authorization), authorize),
        (
            EndpointAt::any_host(paths.token),
            Arc::new(TokenEndpoint {
                realm: realm.clone(),
            }),
        ),
        (
            EndpointAt::any_host(paths.callback),
            Arc::new(GetStep::callback(realm)),
        ),
    ])
}
