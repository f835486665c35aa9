//! oauth-pkce-proxy compatibility: `authedge run` without a config file, with the peer's
//! environment variables, builds a one-realm `pkce` config and runs it.
//!
//! | variable | becomes |
//! |---|---|
//! | `PORT` (default 8080) | a listener on `0.0.0.0:PORT` |
//! | `OAUTH_CLIENT_ID`, `OAUTH_CLIENT_SECRET` | the edge's client at the authorization server |
//! | `OAUTH_AUTH_URL`, `OAUTH_TOKEN_URL` | `authorization_url`, `token_url` |
//! | `OAUTH_REDIRECT_URL` | `callback_url` (the callback is served at its path, `/callback`) |
//! | `JWT_SIGNING_KEY` + `ENCRYPTION_KEY` | together one sealing key (at least 32 bytes joined) |
//! | `PKCE_CLIENTS` (required) | `client_id=uri1\|uri2,client2=uri3`: the downstream clients |
//!
//! The peer has no client list (any `redirect_uri` is taken: an open redirect that lets anyone
//! redeem a victim's code), so authedge refuses to start without `PKCE_CLIENTS`. Optional:
//! `AUTHEDGE_STATE_DIR` (where the generated config and key file go) and
//! `AUTHEDGE_METRICS_ADDRESS`.

use std::path::{Path, PathBuf};

/// Whether the environment asks for the PKCE drop-in (the peer's variables are set).
pub fn wanted(env: &dyn Fn(&str) -> Option<String>) -> bool {
    env("OAUTH_AUTH_URL").is_some() || env("OAUTH_CLIENT_ID").is_some()
}

/// Write the generated config (and its key file) and return its path.
pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    let dir = match env("AUTHEDGE_STATE_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("authedge-pkce-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("AUTHEDGE_STATE_DIR {}: {e}", dir.display()))?;
    let yaml = yaml_from_env(env, &dir)?;
    let path = dir.join("pkce-proxy.yaml");
    std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn q(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::Value::String(s.to_string()).to_string()
}

fn need(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<String, String> {
    env(name).ok_or_else(|| format!("{name} is not set (the PKCE proxy's environment needs it)"))
}

/// `PKCE_CLIENTS`: `client_id=uri1|uri2,client2=uri3` as `(client_id, [uris])`.
pub fn parse_clients(v: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, uris) = entry
            .split_once('=')
            .ok_or_else(|| format!("PKCE_CLIENTS: {entry:?} must be client_id=uri1|uri2"))?;
        let uris: Vec<String> = uris
            .split('|')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if id.trim().is_empty() || uris.is_empty() {
            return Err(format!(
                "PKCE_CLIENTS: {entry:?} needs a client id and at least one redirect URI"
            ));
        }
        out.push((id.trim().to_string(), uris));
    }
    if out.is_empty() {
        return Err("PKCE_CLIENTS is empty: give client_id=uri1|uri2,...".into());
    }
    Ok(out)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(data)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The YAML config for the peer's variables (`env` looks one up; empty counts as unset).
pub fn yaml_from_env(env: &dyn Fn(&str) -> Option<String>, dir: &Path) -> Result<String, String> {
    let clients = match env("PKCE_CLIENTS") {
        Some(v) => parse_clients(&v)?,
        None => {
            return Err("PKCE_CLIENTS is not set: authedge needs the downstream clients and their exact \
                        redirect URIs (client_id=uri1|uri2,...); without that list any redirect_uri \
                        would be accepted, the PKCE proxy's open redirect"
                .into())
        }
    };
    let client_id = need(env, "OAUTH_CLIENT_ID")?;
    need(env, "OAUTH_CLIENT_SECRET")?;
    let auth_url = need(env, "OAUTH_AUTH_URL")?;
    let token_url = need(env, "OAUTH_TOKEN_URL")?;
    let callback = need(env, "OAUTH_REDIRECT_URL")?;
    let mut key = need(env, "JWT_SIGNING_KEY")?.into_bytes();
    key.extend_from_slice(need(env, "ENCRYPTION_KEY")?.as_bytes());
    if key.len() < 32 {
        return Err("JWT_SIGNING_KEY and ENCRYPTION_KEY together must be at least 32 bytes".into());
    }
    let key_file = dir.join("pkce-key");
    write_private(&key_file, &key)?;
    let port: u16 = match env("PORT") {
        Some(p) => p
            .trim()
            .parse()
            .map_err(|_| format!("PORT: {p:?} is not a port number"))?,
        None => 8080,
    };
    let mut y =
        String::from("# Generated by authedge from the PKCE proxy's environment variables.\n");
    y.push_str(&format!(
        "server: {{ threads: 2, pid_file: {}, upgrade_sock: {} }}\n",
        q(&dir.join("authedge.pid").display().to_string()),
        q(&dir.join("authedge-upgrade.sock").display().to_string())
    ));
    y.push_str(&format!("listeners:\n  - address: \"0.0.0.0:{port}\"\n"));
    if let Some(m) = env("AUTHEDGE_METRICS_ADDRESS") {
        y.push_str(&format!("metrics: {{ address: {} }}\n", q(&m)));
    }
    y.push_str("upstreams: {}\nroutes: []\npkce:\n  proxy:\n");
    for (k, v) in [
        ("authorization_url", &auth_url),
        ("token_url", &token_url),
        ("client_id", &client_id),
        ("callback_url", &callback),
    ] {
        y.push_str(&format!("    {k}: {}\n", q(v)));
    }
    y.push_str("    client_secret: { env: OAUTH_CLIENT_SECRET }\n");
    y.push_str(&format!(
        "    keys:\n      - {{ id: env, secret: {{ file: {} }} }}\n    clients:\n",
        q(&key_file.display().to_string())
    ));
    for (id, uris) in clients {
        let uris: Vec<String> = uris.iter().map(|u| q(u)).collect();
        y.push_str(&format!(
            "      - {{ client_id: {}, redirect_uris: [{}] }}\n",
            q(&id),
            uris.join(", ")
        ));
    }
    Ok(y)
}
