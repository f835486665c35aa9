//! The `oidc` mode's test setup: the edge with an `oidc:` provider, the real provider fixture
//! with a code-flow client registered for the edge's callback, and a login walked with a plain
//! HTTP client (authorize -> login form -> consent -> code -> the edge's callback), each step
//! callable on its own so tests can break the flow in between.
#![allow(dead_code)]

use std::collections::BTreeMap;

use reqwest::blocking::Response;
use serde_json::json;

use super::{port_outside_ephemeral_range, Op};
use crate::common::{client, EchoUpstream, Edge};

/// The cookie secret of the test configs (tests seal their own flow cookies with it).
pub const COOKIE_SECRET: &str = "0123456789abcdef0123456789abcdef-test";

/// The default provider block; `{extra}` adds keys to it.
pub fn config(upstream: &str, op_port: u16, extra: &str) -> String {
    config_scopes(upstream, op_port, extra, "[openid, email, profile, groups]")
}

/// [`config`] with other scopes (a YAML list).
pub fn config_scopes(upstream: &str, op_port: u16, extra: &str, scopes: &str) -> String {
    let base = r#"
server: { threads: 2, pid_file: "{dir}/pid", upgrade_sock: "{dir}/upgrade.sock" }
listeners: [ { address: "127.0.0.1:{port}" } ]
metrics: { address: "127.0.0.1:{metrics_port}" }
log: { access: false }
upstreams:
  app: { url: "UPSTREAM", connect_timeout: 1s, read_timeout: 2s }
oidc:
  main:
    issuer: "http://127.0.0.1:OP_PORT"
    client_id: web
    client_secret: { value: secret-web }
    scopes: SCOPES
    cookie_secrets: [ { id: k1, secret: { value: "COOKIE_SECRET" } } ]
    cookie_secure: false
    email_domains: [example.com]
EXTRA
routes:
  - id: app
    path: /app
    upstream: app
    auth: [ { type: oidc, provider: main } ]
  - id: admin
    path: /admin
    upstream: app
    auth: [ { type: oidc, provider: main, allowed_groups: [admins] } ]
  - id: api
    path: /api
    upstream: app
    auth: [ { type: oidc, provider: main, api: true } ]
  - id: public
    path: /public
    upstream: app
    public: true
"#;
    base.replace("UPSTREAM", upstream)
        .replace("OP_PORT", &op_port.to_string())
        .replace("COOKIE_SECRET", COOKIE_SECRET)
        .replace("EXTRA", extra)
        .replace("SCOPES", scopes)
}

/// The edge, the upstream and the provider of one test.
pub struct Setup {
    pub up: EchoUpstream,
    pub edge: Edge,
    pub op: Op,
}

impl Setup {
    /// `extra`: more keys of the provider block (indented four spaces).
    pub fn start(extra: &str) -> Setup {
        Setup::start_scopes(extra, "[openid, email, profile, groups]")
    }

    /// [`Setup::start`] asking for these scopes (a YAML list).
    pub fn start_scopes(extra: &str, scopes: &str) -> Setup {
        Setup::start_mapped(extra, scopes, |c, _| c, &[])
    }

    /// [`Setup::start_scopes`] with the config rewritten by `map(config, provider_port)` and
    /// these variables for the provider fixture.
    pub fn start_mapped(
        extra: &str,
        scopes: &str,
        map: impl Fn(String, u16) -> String,
        op_env: &[(&str, &str)],
    ) -> Setup {
        let up = EchoUpstream::start();
        let op_port = port_outside_ephemeral_range();
        // The edge first (its port goes into the client's redirect URIs); it discovers the
        // provider once that is up.
        let edge = Edge::start(&map(
            config_scopes(&up.url(), op_port, extra, scopes),
            op_port,
        ));
        let p = edge.port;
        let clients = json!([{
            "client_id": "web",
            "client_secret": "secret-web",
            "redirect_uris": [
                format!("http://127.0.0.1:{p}/oauth2/callback"),
                format!("http://localhost:{p}/oauth2/callback"),
            ],
            "post_logout_redirect_uris": [format!("http://127.0.0.1:{p}/public/bye")],
            "backchannel_logout_uri": format!("http://127.0.0.1:{p}/oauth2/backchannel-logout"),
            "backchannel_logout_session_required": true,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }]);
        let clients = clients.to_string();
        let mut env = vec![("OIDC_CLIENTS", clients.as_str())];
        env.extend_from_slice(op_env);
        let op = Op::start_env(op_port, &env);
        edge.wait_ready();
        Setup { up, edge, op }
    }

    /// GET on the edge with these cookies (a `Cookie` header) and `Accept: text/html`.
    pub fn page(&self, path: &str, cookies: &str) -> Response {
        let mut r = client()
            .get(self.edge.url(path))
            .header("accept", "text/html,application/xhtml+xml");
        if !cookies.is_empty() {
            r = r.header("cookie", cookies);
        }
        r.send().expect("edge")
    }

    /// Start a login: `/oauth2/start?rd=` -> (flow cookie pair `name=value`, authorize URL).
    pub fn begin(&self, rd: &str) -> (String, String) {
        let q: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let r = self.page(&format!("/oauth2/start?rd={q}"), "");
        assert_eq!(r.status(), 302, "start");
        let flow = set_cookies(&r)
            .into_iter()
            .find(|(n, _)| n.ends_with("_flow"))
            .map(|(n, v)| format!("{n}={v}"))
            .expect("flow cookie");
        (flow, location(&r))
    }

    /// Log in at the provider as `login` from an authorize URL; returns the callback URL (on
    /// the edge) the provider redirects to.
    pub fn provider_login(&self, authorize: &str, login: &str) -> String {
        self.provider_login_in(&mut Jar::default(), authorize, login)
    }

    /// [`Setup::provider_login`] keeping the provider's cookies (its session) in `jar`.
    pub fn provider_login_in(&self, jar: &mut Jar, authorize: &str, login: &str) -> String {
        let edge = self.edge.url("/");
        provider_login_at(
            jar,
            &self.op.issuer,
            edge.trim_end_matches('/'),
            authorize,
            login,
        )
    }

    /// The callback with these cookies: the edge's answer.
    pub fn callback(&self, callback_url: &str, cookies: &str) -> Response {
        let mut r = client().get(callback_url);
        if !cookies.is_empty() {
            r = r.header("cookie", cookies);
        }
        r.send().expect("callback")
    }

    /// A whole login from `rd`: the session cookies (`Cookie` header form) and the final
    /// redirect.
    pub fn login(&self, login: &str, rd: &str) -> (String, String) {
        let (flow, authorize) = self.begin(rd);
        let cb = self.provider_login(&authorize, login);
        let r = self.callback(&cb, &flow);
        assert_eq!(r.status(), 302, "callback for {login}");
        (session_cookies(&r), location(&r))
    }
}

/// Log in at the provider `issuer` from an authorize URL until it redirects to `edge` (a base
/// URL); returns that callback URL.
pub fn provider_login_at(
    jar: &mut Jar,
    issuer: &str,
    edge: &str,
    authorize: &str,
    login: &str,
) -> String {
    let mut url = authorize.to_string();
    for _ in 0..12 {
        if url.starts_with(edge) {
            return url;
        }
        let r = jar.get(&url);
        let status = r.status().as_u16();
        if (300..400).contains(&status) {
            url = absolute(issuer, &location(&r));
            continue;
        }
        let body = r.text().expect("page");
        assert_eq!(status, 200, "provider page {url}: {body}");
        let action = absolute(issuer, &form_action(&body));
        let form: Vec<(&str, &str)> = if body.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", login), ("password", "x")]
        } else {
            vec![("prompt", "consent")]
        };
        let r = jar.post(&action, &form);
        assert!(r.status().is_redirection(), "form post: {}", r.status());
        url = absolute(issuer, &location(&r));
    }
    panic!("the provider never redirected back to the edge");
}

/// `name=value; ...` of the session cookies a response set (expired ones left out).
pub fn session_cookies(r: &Response) -> String {
    set_cookies(r)
        .into_iter()
        .filter(|(n, v)| !n.ends_with("_flow") && !v.is_empty())
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// (name, value) of every `Set-Cookie`.
pub fn set_cookies(r: &Response) -> Vec<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| {
            let v = v.to_str().ok()?;
            let pair = v.split(';').next()?;
            let (n, val) = pair.split_once('=')?;
            Some((n.trim().to_string(), val.trim().to_string()))
        })
        .collect()
}

pub fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no location on {}", r.status()))
        .to_string()
}

pub fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_string()
    } else {
        format!("{}{}", base.trim_end_matches('/'), loc)
    }
}

pub fn form_action(html: &str) -> String {
    let i = html.find("<form").expect("a form");
    let rest = &html[i..];
    let a = rest.find("action=\"").expect("action") + 8;
    let end = rest[a..].find('"').expect("quote");
    rest[a..a + end].replace("&amp;", "&")
}

/// The provider's cookies (its interaction and session), sent back on every call.
#[derive(Default)]
pub struct Jar(BTreeMap<String, String>);

impl Jar {
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &Response) {
        for (n, v) in set_cookies(r) {
            if v.is_empty() {
                self.0.remove(&n);
            } else {
                self.0.insert(n, v);
            }
        }
    }

    pub fn get(&mut self, url: &str) -> Response {
        let r = client()
            .get(url)
            .header("cookie", self.header())
            .send()
            .expect("provider");
        self.keep(&r);
        r
    }

    pub fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Response {
        let r = client()
            .post(url)
            .header("cookie", self.header())
            .form(form)
            .send()
            .expect("provider");
        self.keep(&r);
        r
    }
}

/// The value of the hidden input `name` of a page.
pub fn hidden_input(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let i = html
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + key.len();
    let end = html[i..].find('"').expect("quote");
    html[i..i + end].to_string()
}
