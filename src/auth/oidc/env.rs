//! oauth2-proxy drop-in: `authedge run` without a config file, with `OAUTH2_PROXY_*`
//! variables set, builds a one-route `oidc` config from them. Every variable is either used or
//! reported: an unknown `OAUTH2_PROXY_*` name, or a known one this build does not do, is an
//! error naming it (never silently ignored).
//!
//! | variable | becomes |
//! |---|---|
//! | `HTTP_ADDRESS` (default `127.0.0.1:4180`) | the listener (`http://` and `:port` forms too) |
//! | `UPSTREAMS` | one upstream; its path is the route's prefix (`http://app:8080/` -> `/`) |
//! | `PROVIDER` (`oidc`, or unset), `OIDC_ISSUER_URL` | the provider, by discovery |
//! | `LOGIN_URL`, `REDEEM_URL`, `PROFILE_URL` (else `VALIDATE_URL`), `OIDC_JWKS_URL`, `SKIP_OIDC_DISCOVERY` | the provider without discovery (`endpoints:`); with `OIDC_JWKS_URL` the ID token is checked (and `OIDC_ISSUER_URL` is needed), without it who logged in is what the userinfo URL says |
//! | `CLIENT_ID`, `CLIENT_SECRET` | the client registration |
//! | `COOKIE_SECRET` | the sealing key (16, 24 or 32+ bytes, as oauth2-proxy) |
//! | `COOKIE_NAME`, `COOKIE_DOMAINS` (first), `COOKIE_SECURE`, `COOKIE_EXPIRE`, `COOKIE_REFRESH` | the session cookie |
//! | `EMAIL_DOMAINS`, `ALLOWED_GROUPS` | the policy (comma-separated) |
//! | `WHITELIST_DOMAINS` | `allowed_redirect_origins` (`https://` and `http://` of each; exact, no suffixes) |
//! | `SCOPE`, `REDIRECT_URL`, `SKIP_PROVIDER_BUTTON`, `PASS_ACCESS_TOKEN` | the same settings |
//! | `SET_XAUTHREQUEST` | accepted: `/oauth2/auth` always answers with `X-Auth-Request-*` |
//! | `METRICS_ADDRESS` | the metrics side port |

use std::collections::BTreeMap;

const PREFIX: &str = "OAUTH2_PROXY_";

/// Variables this drop-in reads (without the prefix).
const KNOWN: &[&str] = &[
    "HTTP_ADDRESS",
    "UPSTREAMS",
    "PROVIDER",
    "OIDC_ISSUER_URL",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "COOKIE_SECRET",
    "COOKIE_NAME",
    "COOKIE_DOMAINS",
    "COOKIE_SECURE",
    "COOKIE_EXPIRE",
    "COOKIE_REFRESH",
    "EMAIL_DOMAINS",
    "ALLOWED_GROUPS",
    "WHITELIST_DOMAINS",
    "SCOPE",
    "REDIRECT_URL",
    "SKIP_PROVIDER_BUTTON",
    "PASS_ACCESS_TOKEN",
    "SET_XAUTHREQUEST",
    "METRICS_ADDRESS",
    "LOGIN_URL",
    "REDEEM_URL",
    "VALIDATE_URL",
    "PROFILE_URL",
    "OIDC_JWKS_URL",
    "SKIP_OIDC_DISCOVERY",
];

/// Known to oauth2-proxy, not done by this build (reported with the reason).
const NOT_DONE: &[(&str, &str)] = &[];

/// Whether any `OAUTH2_PROXY_*` variable is set (then the drop-in applies).
pub fn wanted(vars: &BTreeMap<String, String>) -> bool {
    vars.keys().any(|k| k.starts_with(PREFIX))
}

fn q(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::Value::String(s.to_string()).to_string()
}

fn list(v: &str) -> Vec<String> {
    v.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn yaml_list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

fn boolean(name: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{PREFIX}{name}: {v:?} is not true or false")),
    }
}

/// `0.0.0.0:4180`, `:4180`, `http://127.0.0.1:4180` -> an IP:port.
fn address(name: &str, v: &str) -> Result<String, String> {
    let v = v.trim();
    let v = v.strip_prefix("http://").unwrap_or(v);
    let v = if v.starts_with(':') {
        format!("0.0.0.0{v}")
    } else {
        v.to_string()
    };
    v.parse::<std::net::SocketAddr>()
        .map(|a| a.to_string())
        .map_err(|_| format!("{PREFIX}{name}: {v:?} is not IP:port"))
}

/// `http://host:port/path` -> (`http://host:port`, `/path`).
fn upstream(v: &str) -> Result<(String, String), String> {
    let first = list(v);
    let [one] = first.as_slice() else {
        return Err(format!(
            "{PREFIX}UPSTREAMS: exactly one upstream is supported here (got {})",
            first.len()
        ));
    };
    let u = url::Url::parse(one).map_err(|e| format!("{PREFIX}UPSTREAMS: {one:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.query().is_some() {
        return Err(format!(
            "{PREFIX}UPSTREAMS: {one:?}: give http(s)://host[:port][/path]"
        ));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("{PREFIX}UPSTREAMS: {one:?} has no host"))?;
    let port = u.port_or_known_default().unwrap_or(80);
    let path = u.path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    Ok((format!("{}://{host}:{port}", u.scheme()), path.to_string()))
}

/// The config YAML for these variables (`vars`: the whole environment).
pub fn yaml(vars: &BTreeMap<String, String>, dir: &std::path::Path) -> Result<String, String> {
    let (v, mut errors) = classify(vars);
    let get = |n: &str| v.get(n).copied().filter(|s| !s.trim().is_empty());
    let mut need = |n: &str| match get(n) {
        Some(s) => s.to_string(),
        None => {
            errors.push(format!("{PREFIX}{n} is required"));
            String::new()
        }
    };
    let client_id = need("CLIENT_ID");
    need("COOKIE_SECRET");
    let upstreams = need("UPSTREAMS");
    let domains = need("EMAIL_DOMAINS");
    let discovery = discovery(&get, &mut errors);
    let issuer = get("OIDC_ISSUER_URL").unwrap_or_default().to_string();
    match get("PROVIDER") {
        None | Some("oidc") => {}
        Some(p) => errors.push(format!("{PREFIX}PROVIDER: {p:?}: only oidc is supported")),
    }
    let mut out = String::new();
    let listen = address(
        "HTTP_ADDRESS",
        get("HTTP_ADDRESS").unwrap_or("127.0.0.1:4180"),
    );
    let up = upstream(&upstreams);
    let mut flags = Vec::new();
    for (n, key) in [
        ("COOKIE_SECURE", "cookie_secure"),
        ("SKIP_PROVIDER_BUTTON", "skip_provider_button"),
        ("PASS_ACCESS_TOKEN", "pass_access_token"),
        ("SET_XAUTHREQUEST", ""),
    ] {
        if let Some(x) = get(n) {
            match boolean(n, x) {
                Ok(b) if !key.is_empty() => flags.push(format!("    {key}: {b}\n")),
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    let (listen, (up_url, route)) = match (listen, up) {
        (Ok(l), Ok(u)) if errors.is_empty() => (l, u),
        (l, u) => {
            errors.extend(l.err());
            errors.extend(u.err());
            return Err(errors.join("\n"));
        }
    };
    let d = dir.display();
    out.push_str(&format!(
        "# generated from OAUTH2_PROXY_* variables\nserver:\n  pid_file: {}\n  upgrade_sock: {}\n",
        q(&format!("{d}/authedge.pid")),
        q(&format!("{d}/upgrade.sock"))
    ));
    out.push_str(&format!("listeners:\n  - address: {}\n", q(&listen)));
    if let Some(m) = get("METRICS_ADDRESS") {
        let m = address("METRICS_ADDRESS", m)?;
        out.push_str(&format!("metrics:\n  address: {}\n", q(&m)));
    }
    out.push_str(&format!("upstreams:\n  app:\n    url: {}\n", q(&up_url)));
    out.push_str(&provider_yaml(&get, &issuer, &client_id, &domains, &flags));
    if !discovery {
        out.push_str(&endpoints_yaml(&get));
    }
    out.push_str(&format!(
        "routes:\n  - id: oauth2-proxy\n    path: {}\n    upstream: app\n    auth: [ {{ type: oidc, provider: main }} ]\n",
        q(&route)
    ));
    Ok(out)
}

/// Whether the provider is found by discovery (`OIDC_ISSUER_URL` alone) or by its endpoints
/// (`LOGIN_URL` + `REDEEM_URL`, with `SKIP_OIDC_DISCOVERY` or without an issuer); what is missing
/// for either is pushed to `errors`.
fn discovery<'a>(get: &dyn Fn(&str) -> Option<&'a str>, errors: &mut Vec<String>) -> bool {
    let skip = match get("SKIP_OIDC_DISCOVERY").map(|v| boolean("SKIP_OIDC_DISCOVERY", v)) {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            errors.push(e);
            false
        }
        None => false,
    };
    let named = ["LOGIN_URL", "REDEEM_URL"].iter().any(|n| get(n).is_some());
    let issuer = get("OIDC_ISSUER_URL").is_some();
    if issuer && !skip && !named {
        return true;
    }
    if !issuer && !named {
        errors.push(format!(
            "{PREFIX}OIDC_ISSUER_URL is required (or {PREFIX}LOGIN_URL and {PREFIX}REDEEM_URL)"
        ));
        return true;
    }
    if issuer && named && !skip {
        errors.push(format!(
            "{PREFIX}LOGIN_URL/REDEEM_URL with {PREFIX}OIDC_ISSUER_URL: set \
             {PREFIX}SKIP_OIDC_DISCOVERY=true to use the URLs, or drop them to use discovery"
        ));
    }
    for n in ["LOGIN_URL", "REDEEM_URL"] {
        if get(n).is_none() {
            errors.push(format!("{PREFIX}{n} is required without discovery"));
        }
    }
    if get("OIDC_JWKS_URL").is_some() && !issuer {
        errors.push(format!(
            "{PREFIX}OIDC_ISSUER_URL is required with {PREFIX}OIDC_JWKS_URL (the ID token's iss is checked)"
        ));
    }
    if get("OIDC_JWKS_URL").is_none() && get("PROFILE_URL").or(get("VALIDATE_URL")).is_none() {
        errors.push(format!(
            "{PREFIX}VALIDATE_URL (or PROFILE_URL, the userinfo endpoint) or {PREFIX}OIDC_JWKS_URL is required without discovery"
        ));
    }
    false
}

/// The `endpoints:` of a provider used without discovery.
fn endpoints_yaml<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::from("    endpoints:\n");
    let userinfo = get("PROFILE_URL").or(get("VALIDATE_URL"));
    for (key, v) in [
        ("authorization", get("LOGIN_URL")),
        ("token", get("REDEEM_URL")),
        ("userinfo", userinfo),
        ("jwks", get("OIDC_JWKS_URL")),
    ] {
        if let Some(v) = v {
            out.push_str(&format!("      {key}: {}\n", q(v.trim())));
        }
    }
    out
}

/// Sort the `OAUTH2_PROXY_*` variables: the known ones by name, and an error for every other.
fn classify(vars: &BTreeMap<String, String>) -> (BTreeMap<&str, &str>, Vec<String>) {
    let mut errors = Vec::new();
    let mut v: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, val) in vars {
        let Some(name) = k.strip_prefix(PREFIX) else {
            continue;
        };
        if KNOWN.contains(&name) {
            v.insert(name, val.as_str());
        } else if let Some((_, why)) = NOT_DONE.iter().find(|(n, _)| *n == name) {
            errors.push(format!("{k}: {why}"));
        } else {
            errors.push(format!(
                "{k}: not an oauth2-proxy setting this drop-in knows"
            ));
        }
    }
    (v, errors)
}

/// The `oidc:` block of the generated config.
fn provider_yaml<'a>(
    get: &dyn Fn(&str) -> Option<&'a str>,
    issuer: &str,
    client_id: &str,
    domains: &str,
    flags: &[String],
) -> String {
    let mut out = String::new();
    out.push_str("oidc:\n  main:\n");
    if !issuer.is_empty() {
        out.push_str(&format!("    issuer: {}\n", q(issuer)));
    }
    out.push_str(&format!("    client_id: {}\n", q(client_id)));
    if get("CLIENT_SECRET").is_some() {
        out.push_str("    client_secret: { env: OAUTH2_PROXY_CLIENT_SECRET }\n");
    }
    out.push_str(
        "    cookie_secrets: [ { id: env, secret: { env: OAUTH2_PROXY_COOKIE_SECRET } } ]\n",
    );
    out.push_str(&format!(
        "    email_domains: {}\n",
        yaml_list(&list(&domains))
    ));
    if let Some(g) = get("ALLOWED_GROUPS") {
        out.push_str(&format!("    allowed_groups: {}\n", yaml_list(&list(g))));
    }
    if let Some(w) = get("WHITELIST_DOMAINS") {
        let origins: Vec<String> = list(w)
            .iter()
            .map(|d| d.trim_start_matches('.'))
            .flat_map(|d| [format!("https://{d}"), format!("http://{d}")])
            .collect();
        out.push_str(&format!(
            "    allowed_redirect_origins: {}\n",
            yaml_list(&origins)
        ));
    }
    if let Some(s) = get("SCOPE") {
        out.push_str(&format!("    scopes: {}\n", yaml_list(&list(s))));
    }
    for (n, key) in [
        ("REDIRECT_URL", "redirect_url"),
        ("COOKIE_NAME", "cookie_name"),
        ("COOKIE_EXPIRE", "cookie_expire"),
        ("COOKIE_REFRESH", "cookie_refresh"),
    ] {
        if let Some(x) = get(n) {
            out.push_str(&format!("    {key}: {}\n", q(x)));
        }
    }
    if let Some(dm) = get("COOKIE_DOMAINS") {
        if let Some(first) = list(dm).first() {
            out.push_str(&format!("    cookie_domain: {}\n", q(first)));
        }
    }
    for f in flags {
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("PROVIDER", "oidc"),
            ("OIDC_ISSUER_URL", "https://idp.example"),
            ("CLIENT_ID", "web"),
            ("CLIENT_SECRET", "s"),
            ("COOKIE_SECRET", "0123456789abcdef0123456789abcdef"),
            ("UPSTREAMS", "http://127.0.0.1:3000/anything"),
            ("EMAIL_DOMAINS", "*"),
        ]
    }

    #[test]
    fn a_seed_style_environment_becomes_one_oidc_route() {
        let mut v = base();
        v.extend([
            ("HTTP_ADDRESS", "0.0.0.0:4180"),
            ("SCOPE", "openid email profile"),
            ("SKIP_PROVIDER_BUTTON", "true"),
            ("COOKIE_SECURE", "false"),
            ("ALLOWED_GROUPS", "admins,ops"),
            ("WHITELIST_DOMAINS", ".example.com"),
            ("SET_XAUTHREQUEST", "true"),
        ]);
        let y = yaml(&vars(&v), std::path::Path::new("/tmp/x")).unwrap();
        let cfg = crate::config::parse(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
        assert_eq!(cfg.routes.len(), 1);
        assert_eq!(cfg.routes[0].path, "/anything");
        let p = &cfg.oidc["main"];
        assert_eq!(p.issuer.as_deref(), Some("https://idp.example"));
        assert!(p.endpoints.is_none());
        assert_eq!(p.allowed_groups, vec!["admins", "ops"]);
        assert_eq!(p.email_domains.as_deref(), Some(&["*".to_string()][..]));
        assert!(!p.cookie_secure && p.skip_provider_button);
        assert_eq!(p.allowed_redirect_origins[0], "https://example.com");
        assert_eq!(cfg.listeners[0].address.as_deref(), Some("0.0.0.0:4180"));
    }

    #[test]
    fn unknown_and_unsupported_variables_are_reported() {
        let mut v = base();
        v.extend([
            ("COOKIE_SECURE", "maybe"),
            ("LOGIN_URL", "https://x/auth"),
            ("REDEEM_URL", "https://x/token"),
            ("TYPO_SETTING", "1"),
        ]);
        let e = yaml(&vars(&v), std::path::Path::new("/tmp/x")).unwrap_err();
        assert!(
            e.contains("OAUTH2_PROXY_TYPO_SETTING: not an oauth2-proxy setting"),
            "{e}"
        );
        assert!(
            e.contains("set OAUTH2_PROXY_SKIP_OIDC_DISCOVERY=true"),
            "{e}"
        );
        assert!(e.contains("OAUTH2_PROXY_COOKIE_SECURE"), "{e}");
        let e = yaml(&vars(&[("CLIENT_ID", "x")]), std::path::Path::new("/tmp")).unwrap_err();
        assert!(
            e.contains("OAUTH2_PROXY_OIDC_ISSUER_URL is required"),
            "{e}"
        );
    }

    /// seeds/003 as written: no issuer, no provider, the endpoints named, a 16-byte secret.
    #[test]
    fn the_seed_environment_without_discovery_names_the_endpoints() {
        let v = vars(&[
            ("HTTP_ADDRESS", "0.0.0.0:4180"),
            ("SCOPE", "openid email profile"),
            ("REDIRECT_URL", "http://127.0.0.1:4180/oauth2/callback"),
            (
                "LOGIN_URL",
                "https://t.crossid.io/oauth2/auth?audience=oauth2proxy",
            ),
            (
                "REDEEM_URL",
                "https://t.crossid.io/oauth2/token?audience=oauth2proxy",
            ),
            ("VALIDATE_URL", "https://t.crossid.io/oauth2/userinfo"),
            ("EMAIL_DOMAINS", "*"),
            ("COOKIE_SECRET", "someSecret123456"),
            ("COOKIE_SECURE", "true"),
            ("CLIENT_ID", "cid"),
            ("CLIENT_SECRET", "cs"),
            ("UPSTREAMS", "http://httpbin.org/anything"),
            ("SKIP_PROVIDER_BUTTON", "true"),
        ]);
        let y = yaml(&v, std::path::Path::new("/tmp/x")).unwrap();
        let cfg = crate::config::parse(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
        let p = &cfg.oidc["main"];
        assert_eq!(p.issuer, None);
        let e = p.endpoints.as_ref().unwrap();
        assert_eq!(
            e.authorization,
            "https://t.crossid.io/oauth2/auth?audience=oauth2proxy"
        );
        assert_eq!(
            e.token,
            "https://t.crossid.io/oauth2/token?audience=oauth2proxy"
        );
        assert_eq!(
            e.userinfo.as_deref(),
            Some("https://t.crossid.io/oauth2/userinfo")
        );
        assert_eq!(e.jwks, None);
        // With the keys named, the issuer is needed; without userinfo or keys, nothing says who.
        let mut w = v.clone();
        w.insert(
            format!("{PREFIX}OIDC_JWKS_URL"),
            "https://t.crossid.io/jwks".into(),
        );
        let e = yaml(&w, std::path::Path::new("/tmp/x")).unwrap_err();
        assert!(e.contains("OIDC_ISSUER_URL is required with"), "{e}");
        let mut w = v.clone();
        w.remove(&format!("{PREFIX}VALIDATE_URL"));
        let e = yaml(&w, std::path::Path::new("/tmp/x")).unwrap_err();
        assert!(e.contains("VALIDATE_URL (or PROFILE_URL"), "{e}");
    }
}
