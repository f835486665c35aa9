//! The `oidc` login in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven over the W3C WebDriver protocol (chromedriver started by the test on a free port;
//! the protocol is plain JSON over HTTP, spoken here with the test HTTP client). Against the
//! real provider: open a protected page, fill in the provider's login form, consent, land on
//! the page with the upstream seeing `X-Forwarded-User/-Email`; reload keeps the session;
//! `/oauth2/userinfo`; sign out, and the protected page sends the browser to the login again;
//! a second browser (its own profile) has no session.
//!
//! The browser uses `http://localhost:<port>` for the edge, which Chromium treats as a secure
//! context, so the session cookie keeps its defaults (`Secure`, `__Host-` prefix).

mod common;
#[allow(dead_code)]
mod oidc;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{client, free_port, wait_for, EchoUpstream, Edge};
use oidc::{port_outside_ephemeral_range, Op};

/// The WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is needed (apt-get install chromium chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let c = client();
        wait_for(
            || {
                c.get(format!("{base}/status"))
                    .send()
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            },
            "chromedriver",
        );
        Driver { child, base }
    }

    /// A new browser with a fresh profile directory.
    fn browser(&self, profile: &std::path::Path) -> Browser {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let r = client()
            .post(format!("{}/session", self.base))
            .json(&caps)
            .timeout(Duration::from_secs(60))
            .send()
            .expect("new session");
        let v: Value = r.json().expect("session json");
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Browser {
            url: format!("{}/session/{id}", self.base),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Browser {
    url: String,
}

impl Browser {
    fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = client()
            .request(method, format!("{}{path}", self.url))
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().expect("webdriver").json().expect("webdriver json");
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {v}");
        }
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    fn current(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn text(&self) -> String {
        let v = self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": "return document.body ? document.body.innerText : ''", "args": []})),
        );
        v.as_str().unwrap_or("").to_string()
    }

    fn find(&self, css: &str) -> Option<String> {
        let r = client()
            .post(format!("{}/element", self.url))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .ok()?;
        let v: Value = r.json().ok()?;
        v["value"][ELEMENT].as_str().map(str::to_string)
    }

    /// Wait until an element matching `css` is on the page.
    fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(e) = self.find(css) {
                return e;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {css} at {}: {}", self.current(), self.text());
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.wait_for(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        );
    }

    /// Wait until no element matches `css` (the page it was on has gone).
    fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.find(css).is_some() {
            if Instant::now() > deadline {
                panic!("{css} still at {}: {}", self.current(), self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the page text satisfies `f`.
    fn wait_text(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.text();
            if f(&t) {
                return t;
            }
            if Instant::now() > deadline {
                panic!("waiting for {what} at {}: {t}", self.current());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn quit(&self) {
        let _ = client().delete(&self.url).send();
    }
}

/// The echo upstream's JSON as the browser shows it.
fn echo(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not echo JSON ({e}): {text}"))
}

const CONFIG: &str = r#"
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
    scopes: [openid, email, profile, groups]
    cookie_secrets: [ { id: k1, secret: { value: "browser-test-cookie-secret-0123456789" } } ]
    email_domains: [example.com]
    post_logout_redirect_url: "http://localhost:{port}/public/bye"
routes:
  - id: app
    path: /app
    upstream: app
    auth: [ { type: oidc, provider: main } ]
  - id: public
    path: /public
    upstream: app
    public: true
"#;

#[test]
fn browser_login_session_userinfo_sign_out_and_a_second_browser() {
    let up = EchoUpstream::start();
    let op_port = port_outside_ephemeral_range();
    let cfg = CONFIG
        .replace("UPSTREAM", &up.url())
        .replace("OP_PORT", &op_port.to_string());
    let edge = Edge::start(&cfg);
    let p = edge.port;
    let clients = json!([{
        "client_id": "web",
        "client_secret": "secret-web",
        "redirect_uris": [format!("http://localhost:{p}/oauth2/callback")],
        "post_logout_redirect_uris": [format!("http://localhost:{p}/public/bye")],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }]);
    let _op = Op::start_env(op_port, &[("OIDC_CLIENTS", &clients.to_string())]);
    edge.wait_ready();
    let base = format!("http://localhost:{p}");
    let driver = Driver::start();
    let profiles = tempfile::tempdir().unwrap();
    let b = driver.browser(&profiles.path().join("one"));

    // A protected page sends the browser to the provider's login form.
    b.go(&format!("{base}/app/page?x=1"));
    b.type_into("input[name=login]", "alice+admins@example.com");
    b.type_into("input[name=password]", "any");
    b.click("button[type=submit]");
    // Consent (once the login form has gone: its button is a submit button too), then back on
    // the page.
    b.wait_gone("input[name=login]");
    b.click("button[type=submit]");
    let t = b.wait_text("the upstream page", |t| t.contains("\"x-forwarded-user\""));
    assert!(
        b.current().starts_with(&format!("{base}/app/page?x=1")),
        "{}",
        b.current()
    );
    let v = echo(&t);
    assert_eq!(v["path"], "/app/page");
    assert_eq!(v["headers"]["x-forwarded-user"], "alice+admins@example.com");
    assert_eq!(
        v["headers"]["x-forwarded-email"],
        "alice+admins@example.com"
    );
    assert_eq!(v["headers"]["x-forwarded-groups"], "admins");
    assert!(
        v["headers"].get("cookie").is_none(),
        "session cookie stripped: {v}"
    );

    // A reload keeps the session.
    b.go(&format!("{base}/app/other"));
    let v = echo(&b.wait_text("the second page", |t| t.contains("/app/other")));
    assert_eq!(
        v["headers"]["x-forwarded-email"],
        "alice+admins@example.com"
    );

    // userinfo
    b.go(&format!("{base}/oauth2/userinfo"));
    let u = echo(&b.wait_text("userinfo", |t| t.contains("preferred_username")));
    assert_eq!(u["email"], "alice+admins@example.com");
    assert_eq!(u["groups"], json!(["admins"]));

    // A second browser with its own profile has no session: it gets the login form.
    let b2 = driver.browser(&profiles.path().join("two"));
    b2.go(&format!("{base}/app/page"));
    b2.wait_for("input[name=login]");
    assert!(b2
        .current()
        .starts_with(&format!("http://127.0.0.1:{op_port}/")));
    b2.quit();

    // The session cookie is __Host- prefixed, Secure and HttpOnly.
    let cookies = b.cmd(reqwest::Method::GET, "/cookie", None);
    let session = cookies
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "__Host-_authedge"))
        .unwrap_or_else(|| panic!("session cookie: {cookies}"))
        .clone();
    assert_eq!(session["secure"], true);
    assert_eq!(session["httpOnly"], true);

    // Sign out: the edge's cookie goes, the provider's end-session page confirms, and the
    // browser comes back to the post-logout page.
    b.go(&format!("{base}/oauth2/sign_out"));
    b.click("button[name=logout]");
    b.wait_text("the post-logout page", |t| t.contains("/public/bye"));
    let cookies = b.cmd(reqwest::Method::GET, "/cookie", None);
    assert!(
        !cookies.to_string().contains("__Host-_authedge\""),
        "no session cookie after sign-out: {cookies}"
    );
    // The protected page sends the browser to the login again.
    b.go(&format!("{base}/app/page"));
    b.wait_for("input[name=login]");
    assert!(b
        .current()
        .starts_with(&format!("http://127.0.0.1:{op_port}/")));
    b.quit();
}
