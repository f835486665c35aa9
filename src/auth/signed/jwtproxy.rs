//! The jwtproxy drop-in: a file whose top-level key is `jwtproxy:` is read as quay jwtproxy
//! reads it and turned into authedge's own config. Each enabled `verifier_proxies[]` entry
//! becomes a listener (`listen_addr`: `host:port`, `:port`, an http(s) URL or `unix:/path`;
//! `key_file`/`crt_file` → TLS) and a route `/` to its `upstream` behind a `signed` filter
//! (`audience`, `max_skew`, `max_ttl`, `key_server` preshared or keyregistry, `claims_verifiers`
//! of type `static`). With more than one verifier, authedge has one route table for all
//! listeners, so each route also matches the host of its audience. `shutdown_timeout` becomes
//! the SIGTERM grace period (the longest one). Durations are Go's (`1m`, `90s`, `1h30m`,
//! `1.5s`, `300ms`). A `signer_proxy` block is reported as not supported yet and not started;
//! the verifiers still run.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::schema::FileConfig;
use crate::config::{Problem, Problems};

/// A jwtproxy value authedge cannot read (pushed as a problem at the value's key path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{0:?} is not a Go duration (e.g. 90s, 1m, 1h30m)")]
    Duration(String),
    #[error(
        "{0:?}: give IP:port, :port or unix:/path (host names are not resolved for listeners)"
    )]
    ListenAddr(String),
    #[error("options must be a map")]
    Options,
}

/// Whether a config text is a jwtproxy file (its top-level key is `jwtproxy`).
pub fn is_jwtproxy(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("jwtproxy:"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    jwtproxy: Top,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Top {
    #[serde(default)]
    signer_proxy: Option<serde_norway::Value>,
    #[serde(default)]
    verifier_proxies: Vec<VerifierProxy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifierProxy {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    listen_addr: Option<String>,
    #[serde(default)]
    shutdown_timeout: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    crt_file: Option<String>,
    verifier: Verifier,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Verifier {
    upstream: String,
    audience: String,
    #[serde(default)]
    max_skew: Option<String>,
    #[serde(default)]
    max_ttl: Option<String>,
    key_server: Registerable,
    #[serde(default)]
    nonce_storage: Option<Registerable>,
    #[serde(default)]
    claims_verifiers: Vec<Registerable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registerable {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    options: Option<serde_norway::Value>,
}

/// A Go duration (`1h30m`, `90s`, `1.5s`, `300ms`, `0`) in milliseconds.
pub fn go_duration_ms(s: &str) -> Result<u64, ValueError> {
    let bad = || ValueError::Duration(s.to_string());
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let mut rest = t;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" | "μs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return Err(bad()),
        };
        total += n * ms;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e15 {
        return Err(bad());
    }
    Ok(total.round() as u64)
}

/// `listen_addr` as an authedge listener (without TLS).
fn listener(addr: &str) -> Result<Value, ValueError> {
    if let Some(path) = addr.strip_prefix("unix:") {
        return Ok(json!({ "unix": path }));
    }
    let a = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr)
        .trim_end_matches('/');
    let a = match a.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => a.to_string(),
    };
    let a = match a.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => a,
    };
    if a.parse::<std::net::SocketAddr>().is_err() {
        return Err(ValueError::ListenAddr(addr.to_string()));
    }
    Ok(json!({ "address": a }))
}

fn options(r: &Registerable) -> Result<Map<String, Value>, ValueError> {
    match &r.options {
        None => Ok(Map::new()),
        Some(v) => match serde_json::to_value(v) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(Value::Null) => Ok(Map::new()),
            _ => Err(ValueError::Options),
        },
    }
}

fn opt_str(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// A Go duration option as authedge's `<n>ms`.
fn dur(v: Option<&str>, path: &str, problems: &mut Problems) -> Option<String> {
    let v = v?;
    match go_duration_ms(v) {
        Ok(ms) => Some(format!("{ms}ms")),
        Err(e) => {
            problems.push(path, e);
            None
        }
    }
}

fn key_server(r: &Registerable, path: &str, problems: &mut Problems) -> Value {
    let o = match options(r) {
        Ok(o) => o,
        Err(e) => {
            problems.push(format!("{path}.options"), e);
            return Value::Null;
        }
    };
    let known: &[&str] = match r.kind.as_str() {
        "preshared" => &["issuer", "key_id", "public_key_path"],
        "keyregistry" => &["registry", "cache"],
        other => {
            problems.push(
                format!("{path}.type"),
                format!("unknown key server {other:?} (preshared or keyregistry)"),
            );
            return Value::Null;
        }
    };
    for k in o.keys() {
        if !known.contains(&k.as_str()) {
            problems.push(format!("{path}.options.{k}"), "unknown option");
        }
    }
    if r.kind == "preshared" {
        let mut need = |k: &str| {
            opt_str(&o, k).unwrap_or_else(|| {
                problems.push(format!("{path}.options.{k}"), "required");
                String::new()
            })
        };
        let (issuer, key_id, file) = (need("issuer"), need("key_id"), need("public_key_path"));
        return json!({ "preshared": { "issuer": issuer, "key_id": key_id, "public_key_file": file } });
    }
    let registry = opt_str(&o, "registry").unwrap_or_else(|| {
        problems.push(format!("{path}.options.registry"), "required");
        String::new()
    });
    let mut reg = json!({ "registry": registry });
    if let Some(Value::Object(c)) = o.get("cache") {
        let d = c.get("duration").and_then(Value::as_str);
        if let Some(d) = dur(d, &format!("{path}.options.cache.duration"), problems) {
            reg["cache"] = json!({ "duration": d });
        }
        // purge_interval: expired keys are dropped when the bounded cache fills; nothing to set.
    }
    json!({ "keyregistry": reg })
}

/// What the enabled verifiers become, gathered one verifier at a time.
#[derive(Default)]
struct Parts {
    listeners: Vec<Value>,
    upstreams: Map<String, Value>,
    routes: Vec<Value>,
    /// The longest `shutdown_timeout` given (jwtproxy's default, 60 s, when none is).
    grace_ms: Option<u64>,
}

/// Translate a jwtproxy file. Returns the config and notes for the log (unsupported parts).
pub fn translate(text: &str) -> Result<(FileConfig, Vec<String>), Problems> {
    let de = serde_norway::Deserializer::from_str(text);
    let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Problems(vec![Problem::new(path, e.into_inner().to_string())])
    })?;
    let top = file.jwtproxy;
    let notes = signer_notes(&top);
    let mut problems = Problems::default();
    let enabled: Vec<(usize, &VerifierProxy)> = top
        .verifier_proxies
        .iter()
        .enumerate()
        .filter(|(_, v)| v.enabled.unwrap_or(true))
        .collect();
    if enabled.is_empty() {
        problems.push(
            "jwtproxy.verifier_proxies",
            "no enabled verifier: authedge would have nothing to serve",
        );
    }
    let mut parts = Parts::default();
    for &(i, v) in &enabled {
        verifier_proxy(i, v, enabled.len() > 1, &mut parts, &mut problems);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((assemble(parts)?, notes))
}

/// A `signer_proxy` block that is enabled is not run: say so in the log.
fn signer_notes(top: &Top) -> Vec<String> {
    let enabled = top.signer_proxy.as_ref().map(|s| {
        s.get("enabled")
            .and_then(serde_norway::Value::as_bool)
            .unwrap_or(true)
    });
    match enabled {
        Some(true) => vec![
            "jwtproxy.signer_proxy: the signing forward proxy is not supported yet; it is not started (the verifiers run)"
                .to_string(),
        ],
        _ => Vec::new(),
    }
}

/// One enabled `verifier_proxies[i]`: its listener, upstream and route. With several verifiers
/// (`by_host`), the route also matches the host of its audience.
fn verifier_proxy(
    i: usize,
    v: &VerifierProxy,
    by_host: bool,
    parts: &mut Parts,
    problems: &mut Problems,
) {
    let p = format!("jwtproxy.verifier_proxies[{i}]");
    let addr = v.listen_addr.as_deref().unwrap_or(":8081");
    match listener(addr) {
        Ok(mut l) => {
            match (&v.key_file, &v.crt_file) {
                (Some(k), Some(c)) => l["tls"] = json!({ "cert": c, "key": k }),
                (None, None) => {}
                _ => problems.push(&p, "give both key_file and crt_file for TLS, or neither"),
            }
            parts.listeners.push(l);
        }
        Err(e) => problems.push(format!("{p}.listen_addr"), e),
    }
    if let Some(t) = &v.shutdown_timeout {
        match go_duration_ms(t) {
            Ok(ms) => parts.grace_ms = Some(parts.grace_ms.map_or(ms, |g| g.max(ms))),
            Err(e) => problems.push(format!("{p}.shutdown_timeout"), e),
        }
    }
    let vp = format!("{p}.verifier");
    let vf = &v.verifier;
    let filter = signed_filter(vf, &vp, problems);
    let name = format!("verifier{i}");
    parts
        .upstreams
        .insert(name.clone(), json!({ "url": vf.upstream }));
    let mut route = json!({ "id": name, "path": "/", "upstream": name, "auth": [filter] });
    if by_host {
        match super::token::Origin::parse(&vf.audience) {
            Some(o) => route["host"] = o.host().into(),
            None => problems.push(
                format!("{vp}.audience"),
                "not an origin (scheme://host[:port])",
            ),
        }
    }
    parts.routes.push(route);
}

/// A verifier (at `vp`) as a `signed` filter: audience, key server, skew and lifetime, the
/// nonce store (only `local`), `static` claims verifiers.
fn signed_filter(vf: &Verifier, vp: &str, problems: &mut Problems) -> Value {
    let mut filter = json!({
        "type": "signed",
        "audience": vf.audience,
        "key_server": key_server(&vf.key_server, &format!("{vp}.key_server"), problems),
    });
    if let Some(d) = dur(vf.max_skew.as_deref(), &format!("{vp}.max_skew"), problems) {
        filter["max_skew"] = d.into();
    }
    if let Some(d) = dur(vf.max_ttl.as_deref(), &format!("{vp}.max_ttl"), problems) {
        filter["max_ttl"] = d.into();
    }
    if let Some(n) = &vf.nonce_storage {
        if n.kind != "local" {
            problems.push(
                format!("{vp}.nonce_storage.type"),
                format!("{:?}: only local is known (authedge's state store)", n.kind),
            );
        }
    }
    let mut claims = Map::new();
    for (j, c) in vf.claims_verifiers.iter().enumerate() {
        let cp = format!("{vp}.claims_verifiers[{j}]");
        if c.kind != "static" {
            problems.push(
                format!("{cp}.type"),
                format!("{:?}: only static is known", c.kind),
            );
            continue;
        }
        match options(c) {
            Ok(o) => claims.extend(o),
            Err(e) => problems.push(format!("{cp}.options"), e),
        }
    }
    if !claims.is_empty() {
        filter["claims"] = Value::Object(claims);
    }
    filter
}

/// The gathered parts as authedge's file schema (the grace period in whole seconds, rounded up).
fn assemble(parts: Parts) -> Result<FileConfig, Problems> {
    let grace_ms = parts.grace_ms.unwrap_or(60_000);
    let doc = json!({
        "server": { "grace_period_seconds": grace_ms.div_ceil(1000) },
        "listeners": parts.listeners,
        "upstreams": parts.upstreams,
        "routes": parts.routes,
    });
    serde_path_to_error::deserialize(doc).map_err(|e| {
        Problems(vec![Problem::new(
            format!("jwtproxy (as {})", e.path()),
            e.into_inner().to_string(),
        )])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_ms("1m"), Ok(60_000));
        assert_eq!(go_duration_ms("90s"), Ok(90_000));
        assert_eq!(go_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(go_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(go_duration_ms("300ms"), Ok(300));
        assert_eq!(go_duration_ms("0"), Ok(0));
        for bad in ["", "5", "1d", "m", "1m x"] {
            assert!(go_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verifiers_become_listeners_and_routes() {
        let text = r#"
jwtproxy:
  signer_proxy:
    listen_addr: :8080
    signer: { issuer: a, private_key: { type: preshared, options: { key_id: k, private_key_path: k.pem } } }
  verifier_proxies:
  - listen_addr: 127.0.0.1:8081
    shutdown_timeout: 1m30s
    verifier:
      upstream: http://127.0.0.1:9000/
      audience: http://a.internal:8081
      max_skew: 30s
      key_server: { type: preshared, options: { issuer: svc, key_id: k1, public_key_path: /k.pub } }
      claims_verifiers: [ { type: static, options: { env: prod } } ]
  - listen_addr: unix:/run/v.sock
    verifier:
      upstream: unix:/run/up.sock
      audience: http://b.internal
      key_server: { type: keyregistry, options: { registry: "http://127.0.0.1:7000/", cache: { duration: 5m } } }
  - enabled: false
    verifier: { upstream: x, audience: y, key_server: { type: nope } }
"#;
        assert!(is_jwtproxy(text));
        let (cfg, notes) = translate(text).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("signer_proxy"));
        assert_eq!(cfg.listeners.len(), 2);
        assert_eq!(cfg.listeners[0].address.as_deref(), Some("127.0.0.1:8081"));
        assert_eq!(cfg.listeners[1].unix.as_deref(), Some("/run/v.sock"));
        assert_eq!(cfg.server.grace_period_seconds, 90);
        assert_eq!(cfg.routes.len(), 2);
        assert_eq!(cfg.routes[0].host.as_deref(), Some("a.internal"));
        assert_eq!(
            cfg.upstreams["verifier1"].url.as_deref(),
            Some("unix:/run/up.sock")
        );
    }

    #[test]
    fn problems_name_the_jwtproxy_key() {
        let text = "jwtproxy:\n  verifier_proxies:\n  - listen_addr: nowhere\n    shutdown_timeout: 5\n    verifier: { upstream: http://x, audience: http://y, max_ttl: 1d, key_server: { type: preshared, options: { issuer: i } } }\n";
        let e = translate(text).err().unwrap().to_string();
        for want in [
            "jwtproxy.verifier_proxies[0].listen_addr:",
            "jwtproxy.verifier_proxies[0].shutdown_timeout:",
            "jwtproxy.verifier_proxies[0].verifier.max_ttl:",
            "jwtproxy.verifier_proxies[0].verifier.key_server.options.key_id: required",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        let e = translate("jwtproxy:\n  verifier_proxies:\n  - verifier: { upstream: u, audience: a, key_server: { type: preshared }, extra: 1 }\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("verifier_proxies[0].verifier"), "{e}");
    }
}
