//! The oidc-provider fixture started with browser clients (`OIDC_CLIENTS`), a login walk through
//! its dev interaction pages with a small cookie jar (no redirect followed automatically), and
//! the real oauth-pkce-proxy peer as a child process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{client, wait_for};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc-provider")
}

/// The provider child process; killed on drop.
pub struct Provider {
    child: Child,
    pub base: String,
}

impl Provider {
    /// Start on `port` with these code-flow clients (JSON client metadata).
    pub fn start(port: u16, clients: serde_json::Value) -> Provider {
        let dir = fixture_dir();
        if !dir.join("node_modules/oidc-provider/package.json").exists() {
            let ok = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect(
                    "npm is needed for the oidc-provider fixture (scripts/test.sh installs it)",
                );
            assert!(ok.success(), "npm ci failed");
        }
        let mut child = Command::new("node")
            .arg("server.js")
            .arg(port.to_string())
            .env("OIDC_CLIENTS", clients.to_string())
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is needed for the oidc-provider fixture");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("oidc-provider did not start");
        let disco = format!("{base}/.well-known/openid-configuration");
        let c = client();
        wait_for(
            || {
                c.get(&disco)
                    .send()
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            },
            "oidc-provider discovery",
        );
        Provider { child, base }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The goeven/oauth-pkce-proxy binary on `port`; killed on drop.
pub struct Peer {
    child: Child,
    pub port: u16,
}

impl Peer {
    pub fn start(port: u16, env: &[(&str, String)]) -> Peer {
        let bin =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/bin/oauth-pkce-proxy");
        assert!(
            bin.exists(),
            "the peer binary {} is missing (see ../shared/peers/README.md)",
            bin.display()
        );
        let mut cmd = Command::new(&bin);
        cmd.env_clear().env("PORT", port.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start oauth-pkce-proxy");
        wait_for(
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "oauth-pkce-proxy to listen",
        );
        Peer { child, port }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser: cookies by name for the provider's origin, redirects followed by hand.
pub struct Browser {
    http: reqwest::blocking::Client,
    jar: BTreeMap<String, String>,
    provider: String,
}

pub struct Step {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Browser {
    pub fn new(provider: &str) -> Browser {
        Browser {
            http: client(),
            jar: BTreeMap::new(),
            provider: provider.to_string(),
        }
    }

    fn absolute(&self, u: &str) -> String {
        // Only a path is relative (to the provider); anything else (http, a custom scheme) is kept.
        if u.starts_with('/') {
            format!("{}{u}", self.provider)
        } else {
            u.to_string()
        }
    }

    fn send(&mut self, req: reqwest::blocking::RequestBuilder, to_provider: bool) -> Step {
        let mut req = req;
        if to_provider && !self.jar.is_empty() {
            let c: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", c.join("; "));
        }
        let r = req.send().expect("request");
        if to_provider {
            for v in r.headers().get_all("set-cookie") {
                let s = v.to_str().unwrap_or("");
                if let Some((k, v)) = s.split(';').next().and_then(|p| p.split_once('=')) {
                    self.jar.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| self.absolute(l.to_str().unwrap_or("")));
        Step {
            status,
            location,
            body: r.text().unwrap_or_default(),
        }
    }

    pub fn get(&mut self, url: &str) -> Step {
        let to_provider = url.starts_with(&self.provider);
        let req = self.http.get(url);
        self.send(req, to_provider)
    }

    fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Step {
        let req = self.http.post(url).form(form);
        self.send(req, true)
    }

    /// From a URL at the provider (its `/auth?...`), log in as `user` and consent, and return the
    /// first redirect that leaves the provider (the proxy's callback with code and state).
    pub fn login(&mut self, start: &str, user: &str) -> String {
        let mut next = start.to_string();
        for _ in 0..12 {
            if !next.starts_with(&self.provider) {
                return next;
            }
            let step = self.get(&next);
            if let Some(l) = step.location {
                next = l;
                continue;
            }
            assert_eq!(step.status, 200, "provider page {next}: {}", step.body);
            let action = form_action(&step.body).expect("a form on the interaction page");
            let action = self.absolute(&action);
            let step = if step.body.contains("name=\"login\"") {
                self.post_form(
                    &action,
                    &[("prompt", "login"), ("login", user), ("password", "x")],
                )
            } else {
                self.post_form(&action, &[("prompt", "consent")])
            };
            next = step.location.expect("the form answers with a redirect");
        }
        panic!("the login did not leave the provider");
    }
}

fn form_action(html: &str) -> Option<String> {
    let at = html.find("<form")?;
    let rest = &html[at..];
    let a = rest.find("action=\"")? + 8;
    let end = rest[a..].find('"')?;
    Some(rest[a..a + end].replace("&amp;", "&"))
}
