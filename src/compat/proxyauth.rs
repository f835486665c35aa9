//! The ProxyAuth drop-in: `authedge run --config config.json` with ProxyAuth 0.5's
//! `config.json` and its `routes.yml` beside it (ProxyAuth reads both from one directory)
//! runs them unchanged, as one `opaque` realm named `proxyauth`.
//!
//! | ProxyAuth | becomes |
//! |---|---|
//! | `host`, `port` (default `0.0.0.0:8080`) | the listener (`localhost` is 127.0.0.1; other names are refused) |
//! | `worker` (default 4) | `server.threads` |
//! | `secret` (at least 32 bytes) | the realm's one token key |
//! | `token_expiry_seconds` | `token_lifetime` |
//! | `users[]` `username`, `password` | users (id = username); an `$argon2id$` PHC string is the hash, anything else is plaintext, hashed with Argon2id (the argon2 crate's defaults, as ProxyAuth) at every load, in memory: the file is not rewritten |
//! | `ratelimit.block_delay`, `burst` | per user, one request per `block_delay` ms with a burst of `burst` (ProxyAuth 0.5's governor replaces `requests_per_second` by `block_delay`) |
//! | `ratelimit.auth` | `/auth` per client address: burst `auth`, one attempt back every 10 s (ProxyAuth's fixed period) |
//! | `routes[]` `prefix`, `target` | a route per prefix, one upstream per target origin, the prefix replaced by the target's path (`rewrite_prefix`) |
//! | `secure: false` | `public: true` |
//! | `username: [...]` | `opaque` filter with those users (none, or none that exist: nobody passes, as in ProxyAuth) |
//! | `proxy`, `proxy_config`, `cert` | refused at load: authedge has no outbound proxy or client certificate yet |
//!
//! `POST /auth` answers in ProxyAuth's shape (`response: proxyauth`): `{"token","expires_at"}`,
//! `Invalid credentials` with 401. Tokens travel as `Authorization: Bearer <token>`, as there.
//! ProxyAuth's tokens themselves do not carry over (their key depends on a random number baked
//! into each ProxyAuth build): users log in once more.
//!
//! Matching differs: ProxyAuth takes the first route (file order) whose prefix is a string
//! prefix of the path; authedge the longest prefix on `/` boundaries. A route ProxyAuth never
//! reaches (an earlier prefix is a prefix of its own) is not loaded; a path that would reach the
//! same target URL through a route that lets more users in than ProxyAuth's choice is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Map};

use crate::config::schema::FileConfig;
use crate::config::{Problem, Problems};
use crate::routing::normalize_prefix;

/// The realm the drop-in builds.
pub const REALM: &str = "proxyauth";
/// ProxyAuth's routes file, read from the config file's directory.
pub const ROUTES_FILE: &str = "routes.yml";
/// Shortest accepted `secret` (the opaque mode's key minimum).
const MIN_SECRET: usize = 32;
/// ProxyAuth's fixed replenish period of the `/auth` limit.
const AUTH_PERIOD_SECS: f64 = 10.0;

/// Whether a config text is ProxyAuth's `config.json`: a JSON object with
/// `token_expiry_seconds` (a key authedge's own config never has).
pub fn is_proxyauth(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains("\"token_expiry_seconds\"")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppConfig {
    token_expiry_seconds: i64,
    secret: String,
    users: Vec<User>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    worker: Option<u8>,
    #[serde(default)]
    ratelimit: Option<RateLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    username: String,
    password: String,
}

/// ProxyAuth reads `requests_per_second`, `burst`, `block_delay` and `auth` (it stops at start
/// when one is missing); `block_delay_auth` is in its defaults but never read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimit {
    #[serde(default)]
    requests_per_second: Option<u64>,
    #[serde(default)]
    burst: Option<u64>,
    #[serde(default)]
    block_delay: Option<u64>,
    #[serde(default)]
    auth: Option<u64>,
    #[serde(default)]
    block_delay_auth: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    routes: Vec<Route>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    prefix: String,
    target: String,
    #[serde(default)]
    username: Vec<String>,
    #[serde(default = "yes")]
    secure: bool,
    #[serde(default)]
    proxy: bool,
    #[serde(default)]
    proxy_config: String,
    #[serde(default)]
    cert: Option<BTreeMap<String, String>>,
}

fn yes() -> bool {
    true
}

fn located(file: &str, path: &str) -> String {
    if path.is_empty() || path == "." {
        file.to_string()
    } else {
        format!("{file}:{path}")
    }
}

fn parse<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    de: D,
    file: &str,
) -> Result<T, Problems> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Problems(vec![Problem::new(
            located(file, &path),
            e.into_inner().to_string(),
        )])
    })
}

/// `host` and `port` as a listener address.
fn listener(host: &str, port: u16) -> Result<String, String> {
    let ip: IpAddr = match host.trim() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| format!("{h:?} is not an IP address (or localhost)"))?,
    };
    Ok(SocketAddr::new(ip, port).to_string())
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

/// Read `config.json` at `path` and `routes.yml` beside it; translate.
pub fn read(path: &Path, text: &str) -> Result<(FileConfig, Vec<String>), Problems> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let routes_path = dir.join(ROUTES_FILE);
    let routes = std::fs::read_to_string(&routes_path).map_err(|e| {
        Problems(vec![Problem::new(
            ROUTES_FILE,
            format!(
                "cannot read {}: {e} (ProxyAuth's routes.yml must be beside its config.json)",
                routes_path.display()
            ),
        )])
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.json".into());
    translate(&name, text, &routes)
}

/// Translate ProxyAuth's two files (`config_name` names the first in problems). Returns the
/// config and notes for the log (what is done differently but safely).
pub fn translate(
    config_name: &str,
    config_text: &str,
    routes_text: &str,
) -> Result<(FileConfig, Vec<String>), Problems> {
    let c = config_name;
    let r = ROUTES_FILE;
    let mut jd = serde_json::Deserializer::from_str(config_text);
    let app: AppConfig = parse(&mut jd, c)?;
    jd.end()
        .map_err(|e| Problems(vec![Problem::new(c, e.to_string())]))?;
    let file: RouteFile = parse(serde_norway::Deserializer::from_str(routes_text), r)?;
    let mut problems = Problems::default();
    let mut notes = Vec::new();

    // Listener, threads, pid and upgrade files (one pair per port, so two drop-ins can run).
    let port = app.port.unwrap_or(8080);
    let address = match listener(app.host.as_deref().unwrap_or("0.0.0.0"), port) {
        Ok(a) => a,
        Err(e) => {
            problems.push(located(c, "host"), e);
            String::new()
        }
    };
    let threads = app.worker.unwrap_or(4);
    if threads == 0 {
        problems.push(
            located(c, "worker"),
            "0 workers: ProxyAuth does not start either",
        );
    }
    let tmp = std::env::temp_dir();
    let pid_file = tmp.join(format!("authedge-proxyauth-{port}.pid"));
    let upgrade_sock = tmp.join(format!("authedge-proxyauth-{port}-upgrade.sock"));

    // Key and lifetime.
    if app.secret.len() < MIN_SECRET {
        problems.push(
            located(c, "secret"),
            format!(
                "{} bytes; authedge needs at least {MIN_SECRET} (ProxyAuth's advice: over 64 characters). \
                 ProxyAuth's tokens do not carry over anyway, so a new secret costs nothing",
                app.secret.len()
            ),
        );
    }
    if app.token_expiry_seconds <= 0 {
        problems.push(
            located(c, "token_expiry_seconds"),
            "must be above 0 (every token would be expired)",
        );
    }

    // Users.
    let mut users = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut plaintext = Vec::new();
    for (i, u) in app.users.iter().enumerate() {
        let p = format!("users[{i}]");
        if u.username.is_empty() || u.username.trim() != u.username {
            problems.push(
                located(c, &format!("{p}.username")),
                "empty, or surrounded by spaces",
            );
        } else if let Some(prev) = names.insert(&u.username, i) {
            problems.push(
                located(c, &format!("{p}.username")),
                format!(
                    "{:?} is already users[{prev}] (ProxyAuth would take whichever password matches)",
                    u.username
                ),
            );
        }
        let mut user = json!({ "id": u.username, "username": u.username });
        if u.password.starts_with("$argon2") {
            match crate::auth::opaque::password::check_hash(&u.password, false) {
                Ok(_) => user["password_hash"] = u.password.clone().into(),
                Err(e) => problems.push(located(c, &format!("{p}.password")), e),
            }
        } else if u.password.is_empty() {
            problems.push(located(c, &format!("{p}.password")), "empty");
        } else {
            plaintext.push(u.username.clone());
            user["password"] = u.password.clone().into();
        }
        users.push(user);
    }
    if !plaintext.is_empty() {
        notes.push(format!(
            "{c}:users: plaintext passwords of {} hashed with Argon2id in memory at load; ProxyAuth \
             would rewrite {c} with the hashes, authedge leaves the file alone: replace each with \
             the output of `authedge hash-password` to skip the hashing",
            plaintext.join(", ")
        ));
    }

    // Rate limits. ProxyAuth's defaults when the block is absent.
    let (rps, burst, block, auth) = match &app.ratelimit {
        None => (1000, 10, 500, 5),
        Some(rl) => {
            let mut need = |v: Option<u64>, k: &str| {
                v.unwrap_or_else(|| {
                    problems.push(
                        located(c, &format!("ratelimit.{k}")),
                        "required when ratelimit is given (ProxyAuth does not start without it)",
                    );
                    1
                })
            };
            let v = (
                need(rl.requests_per_second, "requests_per_second"),
                need(rl.burst, "burst"),
                need(rl.block_delay, "block_delay"),
                need(rl.auth, "auth"),
            );
            if rl.block_delay_auth.is_some() {
                notes.push(format!(
                    "{c}:ratelimit.block_delay_auth: not read by ProxyAuth 0.5 either; one /auth attempt comes back every 10 s"
                ));
            }
            v
        }
    };
    for (v, k) in [
        (rps, "requests_per_second"),
        (burst, "burst"),
        (block, "block_delay"),
    ] {
        if v == 0 {
            problems.push(
                located(c, &format!("ratelimit.{k}")),
                "0: ProxyAuth does not start either",
            );
        }
    }
    let burst_u32 = u32::try_from(burst).unwrap_or(u32::MAX);
    let per_user = 1000.0 / block.max(1) as f64;
    if rps.max(1) as f64 != per_user {
        notes.push(format!(
            "{c}:ratelimit: ProxyAuth 0.5 replaces requests_per_second ({rps}) by one request per block_delay ({block} ms); \
             authedge does the same: {per_user}/s per user, burst {burst}"
        ));
    }
    let mut realm = json!({
        "keys": [ { "id": REALM, "secret": { "value": app.secret } } ],
        "token_lifetime": format!("{}s", app.token_expiry_seconds.max(1)),
        "token_path": "/auth",
        "allow_plaintext": true,
        "response": "proxyauth",
        "rate_limit": { "requests_per_second": per_user, "burst": burst_u32 },
        "users": users,
    });
    if auth > 0 {
        realm["auth_rate_limit"] = json!({
            "per_client": {
                "requests_per_second": 1.0 / AUTH_PERIOD_SECS,
                "burst": u32::try_from(auth).unwrap_or(u32::MAX),
            }
        });
    } else {
        notes.push(format!(
            "{c}:ratelimit.auth: 0 turns ProxyAuth's /auth limit off; authedge keeps its own (per client 1/s, burst 20)"
        ));
    }

    // Routes.
    let mut upstreams = Map::new();
    let mut origins: BTreeMap<String, String> = BTreeMap::new();
    let mut compiled: Vec<Compiled> = Vec::new();
    let mut routes = Vec::new();
    let mut unlisted: BTreeSet<String> = BTreeSet::new();
    let mut public_routes = false;
    for (i, rt) in file.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        let at = |k: &str| located(r, &format!("{p}.{k}"));
        if rt.proxy {
            problems.push(
                at("proxy"),
                "an outbound forward proxy (proxy_config) is not supported by authedge yet; \
                 remove proxy to reach the target directly",
            );
        } else if !rt.proxy_config.is_empty() {
            notes.push(format!(
                "{}: ignored, proxy is false (as in ProxyAuth)",
                at("proxy_config")
            ));
        }
        if let Some(cert) = &rt.cert {
            for (k, v) in cert {
                match k.as_str() {
                    "file" if !v.is_empty() => problems.push(
                        at("cert.file"),
                        "a client certificate for the target is not supported by authedge yet",
                    ),
                    "file" | "password" => {}
                    _ => problems.push(at(&format!("cert.{k}")), "unknown key (file, password)"),
                }
            }
        }
        // A route ProxyAuth never reaches.
        if let Some(j) = file.routes[..i]
            .iter()
            .position(|e| rt.prefix.starts_with(e.prefix.as_str()))
        {
            notes.push(format!(
                "{}: never reached in ProxyAuth (routes[{j}], prefix {:?}, comes first and matches all its paths); not loaded",
                at("prefix"),
                file.routes[j].prefix
            ));
            continue;
        }
        if !rt.prefix.is_empty() && !rt.prefix.starts_with('/') {
            notes.push(format!(
                "{}: {:?} does not start with / and matches no request in ProxyAuth; not loaded",
                at("prefix"),
                rt.prefix
            ));
            continue;
        }
        let path = match normalize_prefix(if rt.prefix.is_empty() {
            "/"
        } else {
            &rt.prefix
        }) {
            Ok(pth) => pth,
            Err(e) => {
                problems.push(at("prefix"), e);
                continue;
            }
        };
        if rt.prefix.len() > 1 && rt.prefix.ends_with('/') {
            notes.push(format!(
                "{}: ProxyAuth joins the target and the rest of the path without this /; authedge keeps it \
                 ({:?} + x reaches the target's path + /x) and also serves {path:?} itself",
                at("prefix"),
                rt.prefix
            ));
        }
        let (origin, target_path) = match target(&rt.target) {
            Ok(t) => t,
            Err(e) => {
                problems.push(at("target"), e);
                continue;
            }
        };
        let n = origins.len();
        let upstream = origins
            .entry(origin.clone())
            .or_insert_with(|| format!("target{n}"))
            .clone();
        upstreams
            .entry(upstream.clone())
            .or_insert_with(|| json!({ "url": origin }));
        let access = if rt.secure {
            let mut allowed = BTreeSet::new();
            for u in &rt.username {
                if names.contains_key(u.as_str()) {
                    allowed.insert(u.clone());
                } else {
                    unlisted.insert(u.clone());
                }
            }
            Access::Users(allowed)
        } else {
            public_routes = true;
            if !rt.username.is_empty() {
                notes.push(format!(
                    "{}: not checked, secure is false (as in ProxyAuth)",
                    at("username")
                ));
            }
            Access::Public
        };
        let mut route = json!({
            "id": format!("proxyauth{i}"),
            "path": path,
            "upstream": upstream,
        });
        match &access {
            Access::Public => route["public"] = true.into(),
            Access::Users(list) => {
                // No user at all: ProxyAuth lets nobody through; "" is no user's name.
                let users: Vec<&str> = if list.is_empty() {
                    notes.push(format!(
                        "{}: no user of {c} is listed: nobody passes (as in ProxyAuth)",
                        at("username")
                    ));
                    vec![""]
                } else {
                    list.iter().map(String::as_str).collect()
                };
                route["auth"] = json!([{ "type": "opaque", "realm": REALM, "users": users }]);
            }
        }
        let same = if path == "/" {
            target_path.is_empty()
        } else {
            target_path == path
        };
        if !same {
            route["rewrite_prefix"] = target_path.clone().into();
        }
        routes.push(route);
        compiled.push(Compiled {
            index: i,
            raw: rt.prefix.clone(),
            path,
            origin,
            target_path,
            access,
        });
    }
    if !unlisted.is_empty() {
        let list: Vec<&str> = unlisted.iter().map(String::as_str).collect();
        notes.push(format!(
            "{r}: username {} not in {c}: never let through (as in ProxyAuth)",
            list.join(", ")
        ));
    }
    if public_routes {
        notes.push(format!(
            "{c}:ratelimit: ProxyAuth also limits routes with secure: false, per client address; authedge does not limit public routes"
        ));
    }
    compare_matching(&compiled, &mut problems, &mut notes);
    if !problems.is_empty() {
        return Err(problems);
    }
    let doc = json!({
        "server": {
            "threads": threads,
            "pid_file": pid_file.display().to_string(),
            "upgrade_sock": upgrade_sock.display().to_string(),
        },
        "listeners": [ { "address": address } ],
        "upstreams": upstreams,
        "opaque": { REALM: realm },
        "routes": routes,
    });
    let cfg: FileConfig = serde_path_to_error::deserialize(doc).map_err(|e| {
        Problems(vec![Problem::new(
            format!("{c} (as {})", e.path()),
            e.into_inner().to_string(),
        )])
    })?;
    Ok((cfg, notes))
}

mod matching;
use matching::{compare_matching, Access, Compiled};

#[cfg(test)]
mod tests;
