//! Drop-ins for the tools authedge replaces. ProxyAuth's `config.json` + `routes.yml`: see
//! [`proxyauth`] (read by [`crate::snapshot::parse`]). The rest of this module is ooproxy's:
//!
//! ooproxy compatibility: `authedge run` without a config file, with ooproxy's environment
//! variables, builds a one-route config (every path, one `jwt` filter, one upstream) and runs it.
//!
//! | ooproxy variable | becomes |
//! |---|---|
//! | `LISTEN_URL` (default `0.0.0.0:8080`) | a plain listener (`host:port`, `http://` optional) |
//! | `LISTEN_SSL_URL` + `CERT_FILE` (+ `CERT_PASSWORD`) | a TLS listener; CERT_FILE must be PEM (certificate chain and key in one file): PKCS#12 cannot be read by this build |
//! | `PROVIDER_URL` | the provider's issuer, keys by discovery |
//! | `UPSTREAM_URL` | the upstream (`scheme://host[:port]`, no path) |
//! | `CLIENT_SECRET` | an HMAC secret (HS256/384/512) for the same issuer (at least 32 bytes) |
//! | `KEY_EXPIRY_SECS` | the JWKS refresh interval |
//! | `UPSTREAM_TIMEOUT_SECS` | the upstream read timeout |
//! | `AUDIENCE` | JSON `"a"` or `["a","b"]` (any of); plain text is taken as one value |
//! | `SUBJECT` | required `sub` |
//! | `LEEWAY` | clock skew in seconds (unset: authedge's 60 s) |
//! | `NUM_WORKERS` | proxy threads |
//!
//! authedge's own additions: `AUTHEDGE_STATE_DIR` (where the generated config, PID file and
//! converted certificate go; default a per-process directory under the temp dir) and
//! `AUTHEDGE_METRICS_ADDRESS` (a side port for `/metrics`, `/healthz`, `/readyz`).

pub mod proxyauth;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::config::dropin::DropInError;

/// The config to run: the file given, or one generated from ooproxy's environment.
pub fn resolve_config(explicit: Option<PathBuf>) -> Result<PathBuf, DropInError> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    if crate::auth::oidc::env::wanted(&vars) {
        return oauth2_proxy(&vars, env("AUTHEDGE_STATE_DIR")).map_err(DropInError::Oauth2Proxy);
    }
    if env("PROVIDER_URL").is_none() && crate::auth::pkce::dropin::wanted(&env) {
        return crate::auth::pkce::dropin::resolve(&env);
    }
    if env("PROVIDER_URL").is_none() || env("UPSTREAM_URL").is_none() {
        return Err(DropInError::NoConfig);
    }
    let dir = match env("AUTHEDGE_STATE_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("authedge-ooproxy-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| DropInError::io("AUTHEDGE_STATE_DIR", &dir, e))?;
    let yaml = yaml_from_env(&env, &dir)?;
    let path = dir.join("ooproxy.yaml");
    std::fs::write(&path, yaml).map_err(|e| DropInError::io("cannot write", &path, e))?;
    Ok(path)
}

/// The config generated from `OAUTH2_PROXY_*` variables (see `auth::oidc::env`).
fn oauth2_proxy(
    vars: &std::collections::BTreeMap<String, String>,
    state_dir: Option<String>,
) -> Result<PathBuf, String> {
    let dir = match state_dir {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("authedge-oauth2-proxy-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("AUTHEDGE_STATE_DIR {}: {e}", dir.display()))?;
    let yaml = crate::auth::oidc::env::yaml(vars, &dir)?;
    let path = dir.join("oauth2-proxy.yaml");
    std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn q(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::Value::String(s.to_string()).to_string()
}

fn number(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<u64>, DropInError> {
    match env(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| DropInError::var(name, format!("{v:?} is not a whole number"))),
    }
}

/// `host:port`, with an optional `http(s)://` and trailing `/`, as an IP:port listener address.
fn listen_address(name: &'static str, value: &str) -> Result<String, DropInError> {
    let v = value.trim();
    let v = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
        .unwrap_or(v);
    let v = v.trim_end_matches('/');
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Ok(a.to_string());
    }
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| DropInError::var(name, format!("{value:?} needs host:port")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| DropInError::var(name, format!("bad port in {value:?}")))?;
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| DropInError::var(name, format!("{h:?} is not an IP address")))?,
    };
    Ok(SocketAddr::new(ip, port).to_string())
}

/// `scheme://host:port` of UPSTREAM_URL (a path other than `/` is refused).
fn upstream_url(value: &str) -> Result<String, DropInError> {
    let bad = |why: String| DropInError::var("UPSTREAM_URL", format!("{value:?}{why}"));
    let u = reqwest::Url::parse(value.trim()).map_err(|e| bad(format!(": {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad(" is not http(s)".into()));
    }
    if u.path() != "/" || u.query().is_some() {
        return Err(bad(
            ": a path is not supported; give scheme://host:port".into()
        ));
    }
    let host = u.host_str().ok_or_else(|| bad(" has no host".into()))?;
    let port = u
        .port_or_known_default()
        .ok_or_else(|| bad(" has no port".into()))?;
    Ok(format!("{}://{host}:{port}", u.scheme()))
}

/// Split a PEM bundle (certificate chain + private key) into two files; PKCS#12 is refused.
fn tls_files(
    env: &dyn Fn(&str) -> Option<String>,
    dir: &Path,
) -> Result<(PathBuf, PathBuf), DropInError> {
    let file = env("CERT_FILE").ok_or(DropInError::Unset {
        var: "CERT_FILE",
        hint: " (LISTEN_SSL_URL is set: CERT_FILE must name the certificate)",
    })?;
    let bytes =
        std::fs::read(&file).map_err(|e| DropInError::io("CERT_FILE: cannot read", &file, e))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN") {
        return Err(DropInError::var("CERT_FILE", format!(
            "{file} is not PEM (a PKCS#12/.pfx file cannot be read by this build); convert it once with \
             `openssl pkcs12 -in {file} -nodes -out cert.pem` (it asks for CERT_PASSWORD) and point CERT_FILE at the PEM"
        )));
    }
    let mut cert = String::new();
    let mut key = String::new();
    let mut current: Option<&mut String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            current = Some(if line.contains("PRIVATE KEY") {
                &mut key
            } else {
                &mut cert
            });
        }
        if let Some(buf) = current.as_deref_mut() {
            buf.push_str(line);
            buf.push('\n');
        }
        if line.starts_with("-----END") {
            current = None;
        }
    }
    if cert.is_empty() || key.is_empty() {
        return Err(DropInError::var(
            "CERT_FILE",
            format!("{file} must hold the certificate chain and the private key (PEM)"),
        ));
    }
    if key.contains("ENCRYPTED") {
        return Err(DropInError::var(
            "CERT_FILE",
            "the private key is encrypted (CERT_PASSWORD); store it unencrypted",
        ));
    }
    let (c, k) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    std::fs::write(&c, cert).map_err(|e| DropInError::io("cannot write", &c, e))?;
    crate::config::secret::write_private(&k, key.as_bytes())?;
    Ok((c, k))
}

/// `LISTEN_URL` (plain, the default) and `LISTEN_SSL_URL` (TLS, with `CERT_FILE`) as listeners.
fn listeners(
    env: &dyn Fn(&str) -> Option<String>,
    dir: &Path,
    y: &mut String,
) -> Result<(), DropInError> {
    y.push_str("listeners:\n");
    let plain = env("LISTEN_URL");
    let tls = env("LISTEN_SSL_URL");
    if plain.is_some() || tls.is_none() {
        let a = listen_address("LISTEN_URL", plain.as_deref().unwrap_or("0.0.0.0:8080"))?;
        y.push_str(&format!("  - address: {}\n", q(&a)));
    }
    if let Some(t) = &tls {
        let a = listen_address("LISTEN_SSL_URL", t)?;
        let (cert, key) = tls_files(env, dir)?;
        y.push_str(&format!(
            "  - address: {}\n    tls: {{ cert: {}, key: {} }}\n",
            q(&a),
            q(&cert.display().to_string()),
            q(&key.display().to_string())
        ));
    }
    Ok(())
}

/// `AUDIENCE`: JSON `"a"` or `["a","b"]`; plain text is taken as one value.
fn audience(a: &str) -> Result<Vec<String>, DropInError> {
    Ok(match serde_json::from_str::<serde_json::Value>(a) {
        Ok(serde_json::Value::String(s)) => vec![s],
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| DropInError::var("AUDIENCE", format!("{a:?}: only strings")))
            })
            .collect::<Result<_, _>>()?,
        Ok(_) => {
            return Err(DropInError::var(
                "AUDIENCE",
                format!("{a:?} must be a JSON string or array of strings"),
            ))
        }
        Err(_) => vec![a.trim().to_string()],
    })
}

/// The YAML config for ooproxy's variables (`env` looks one up; empty counts as unset).
pub fn yaml_from_env(
    env: &dyn Fn(&str) -> Option<String>,
    dir: &Path,
) -> Result<String, DropInError> {
    let unset = |var| DropInError::Unset { var, hint: "" };
    let provider = env("PROVIDER_URL").ok_or(unset("PROVIDER_URL"))?;
    let provider = provider.trim().trim_end_matches('/').to_string();
    let upstream = upstream_url(&env("UPSTREAM_URL").ok_or(unset("UPSTREAM_URL"))?)?;
    let threads = number(env, "NUM_WORKERS")?.unwrap_or(2).max(1);
    let mut y = String::from("# Generated by authedge from ooproxy environment variables.\n");
    y.push_str(&format!(
        "server: {{ threads: {threads}, pid_file: {}, upgrade_sock: {} }}\n",
        q(&dir.join("authedge.pid").display().to_string()),
        q(&dir.join("authedge-upgrade.sock").display().to_string())
    ));
    listeners(env, dir, &mut y)?;
    if let Some(m) = env("AUTHEDGE_METRICS_ADDRESS") {
        y.push_str(&format!(
            "metrics: {{ address: {} }}\n",
            q(&listen_address("AUTHEDGE_METRICS_ADDRESS", &m)?)
        ));
    }
    y.push_str("upstreams:\n  upstream:\n");
    y.push_str(&format!("    url: {}\n", q(&upstream)));
    if let Some(t) = number(env, "UPSTREAM_TIMEOUT_SECS")? {
        y.push_str(&format!("    read_timeout: {}s\n", t.max(1)));
    }
    y.push_str("routes:\n  - id: ooproxy\n    path: /\n    upstream: upstream\n    auth:\n      - type: jwt\n");
    y.push_str(&format!(
        "        providers:\n          - issuer: {}\n            discovery: true\n",
        q(&provider)
    ));
    if provider.starts_with("http://") {
        y.push_str("            allow_http: true\n");
    }
    if let Some(r) = number(env, "KEY_EXPIRY_SECS")? {
        y.push_str(&format!("            refresh: {}s\n", r.max(1)));
    }
    if env("CLIENT_SECRET").is_some() {
        y.push_str("            secret: { env: CLIENT_SECRET }\n");
    }
    if let Some(a) = env("AUDIENCE") {
        let items: Vec<String> = audience(&a)?.iter().map(|s| q(s)).collect();
        y.push_str(&format!("        audience: [{}]\n", items.join(", ")));
    }
    if let Some(s) = env("SUBJECT") {
        y.push_str(&format!("        subject: {}\n", q(&s)));
    }
    if let Some(l) = number(env, "LEEWAY")? {
        y.push_str(&format!("        leeway: {l}s\n"));
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn builds_a_config_the_schema_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_of(&[
            ("PROVIDER_URL", "https://id.example/"),
            ("UPSTREAM_URL", "https://upstream.example/"),
            ("LISTEN_URL", "http://0.0.0.0:9000"),
            ("AUDIENCE", "[\"a\", \"b\"]"),
            ("SUBJECT", "svc"),
            ("LEEWAY", "3"),
            ("KEY_EXPIRY_SECS", "3600"),
            ("UPSTREAM_TIMEOUT_SECS", "120"),
            ("NUM_WORKERS", "4"),
            ("CLIENT_SECRET", "x"),
        ]);
        let y = yaml_from_env(&env, dir.path()).unwrap();
        let cfg = crate::config::parse(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
        assert_eq!(cfg.server.threads, 4);
        assert_eq!(cfg.listeners[0].address.as_deref(), Some("0.0.0.0:9000"));
        assert_eq!(
            cfg.upstreams["upstream"].url.as_deref(),
            Some("https://upstream.example:443")
        );
        let crate::config::schema::FilterConfig::Jwt(j) = &cfg.routes[0].auth[0] else {
            panic!()
        };
        assert_eq!(j.providers[0].issuer, "https://id.example");
        assert_eq!(
            j.audience,
            Some(crate::auth::jwt::OneOrMany::Many(vec![
                "a".into(),
                "b".into()
            ]))
        );
        assert_eq!(j.leeway, std::time::Duration::from_secs(3));
        assert!(j.providers[0].secret.is_some());
    }

    #[test]
    fn errors_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let e = yaml_from_env(
            &env_of(&[
                ("PROVIDER_URL", "https://i"),
                ("UPSTREAM_URL", "http://u/path"),
            ]),
            dir.path(),
        );
        assert!(e.unwrap_err().to_string().contains("UPSTREAM_URL"));
        let e = yaml_from_env(
            &env_of(&[
                ("PROVIDER_URL", "https://i"),
                ("UPSTREAM_URL", "http://u"),
                ("LEEWAY", "soon"),
            ]),
            dir.path(),
        );
        assert!(e.unwrap_err().to_string().contains("LEEWAY"));
        let e = yaml_from_env(
            &env_of(&[
                ("PROVIDER_URL", "https://i"),
                ("UPSTREAM_URL", "http://u"),
                ("LISTEN_SSL_URL", "0.0.0.0:443"),
            ]),
            dir.path(),
        );
        assert!(e.unwrap_err().to_string().contains("CERT_FILE"));
        let e = yaml_from_env(
            &env_of(&[
                ("PROVIDER_URL", "https://i"),
                ("UPSTREAM_URL", "http://u"),
                ("AUDIENCE", "42"),
            ]),
            dir.path(),
        );
        assert!(e.unwrap_err().to_string().contains("AUDIENCE"));
    }
}
