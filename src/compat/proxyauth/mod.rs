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
//! | `cert: {file, password}` | the target's upstream presents `file` as its client certificate (`client_cert` and `client_key`: a PEM file with the chain and the unencrypted key); a PKCS#12 file or a password is refused with the `openssl pkcs12 -nodes` command that converts it |
//! | `proxy`, `proxy_config` | refused at load: authedge has no outbound forward proxy yet |
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
//!
//! `files` parses the two files, `realm` builds the realm (key, lifetime, users, rate limits),
//! `routes` the upstreams and routes, `matching` compares both matchers; [`translate`] puts
//! them together.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde_json::{json, Value};

use crate::config::schema::FileConfig;
use crate::config::{Problem, Problems};

mod files;
mod matching;
mod realm;
mod routes;
#[cfg(test)]
mod tests;

use files::{located, AppConfig};
use matching::compare_matching;

/// The realm the drop-in builds.
pub const REALM: &str = "proxyauth";
/// ProxyAuth's routes file, read from the config file's directory.
pub const ROUTES_FILE: &str = "routes.yml";

/// Whether a config text is ProxyAuth's `config.json`: a JSON object with
/// `token_expiry_seconds` (a key authedge's own config never has).
pub fn is_proxyauth(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains("\"token_expiry_seconds\"")
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
    let (app, file) = files::parse_files(c, config_text, routes_text)?;
    let mut problems = Problems::default();
    let mut notes = Vec::new();
    let (server, address) = server(&app, c, &mut problems);
    let (realm, names) = realm::realm(&app, c, &mut problems, &mut notes);
    let routes = routes::routes(&file, &names, c, &mut problems, &mut notes);
    compare_matching(&routes.compiled, &mut problems, &mut notes);
    if !problems.is_empty() {
        return Err(problems);
    }
    let doc = json!({
        "server": server,
        "listeners": [ { "address": address } ],
        "upstreams": routes.upstreams,
        "opaque": { REALM: realm },
        "routes": routes.routes,
    });
    let cfg: FileConfig = serde_path_to_error::deserialize(doc).map_err(|e| {
        Problems(vec![Problem::new(
            format!("{c} (as {})", e.path()),
            e.into_inner().to_string(),
        )])
    })?;
    Ok((cfg, notes))
}

/// The `server` section (threads, pid and upgrade files: one pair per port, so two drop-ins
/// can run) and the listener address.
fn server(app: &AppConfig, c: &str, problems: &mut Problems) -> (Value, String) {
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
    let server = json!({
        "threads": threads,
        "pid_file": pid_file.display().to_string(),
        "upgrade_sock": upgrade_sock.display().to_string(),
    });
    (server, address)
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
