//! The OpenID provider fixture for the jwt tests: `node tests/fixtures/oidc-provider/server.js`
//! (the `oidc-provider` npm package, 8.x) as a child process, with helpers for tokens, key
//! rotation, test-signed tokens and the provider's JWKS GET counter. `npm ci` runs when
//! node_modules is missing; a missing `node`/`npm` fails the test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{client, wait_for};

pub mod login;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc-provider")
}

/// `npm ci` once per test process when node_modules is missing.
fn ensure_node_modules() {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = fixture_dir();
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm is needed to install the oidc-provider fixture (install Node 20 and npm)");
    assert!(
        status.success(),
        "npm ci in {} failed: {status}",
        dir.display()
    );
}

/// The OpenID provider, a Node child process; killed on drop.
pub struct Op {
    child: Option<Child>,
    pub issuer: String,
}

impl Op {
    pub fn start() -> Op {
        Op::start_on(0)
    }

    /// Start on a given port (0: any).
    pub fn start_on(port: u16) -> Op {
        Op::start_env(port, &[])
    }

    /// Start on a given port with extra environment (`OIDC_CLIENTS` for code-flow clients).
    pub fn start_env(port: u16, env: &[(&str, &str)]) -> Op {
        ensure_node_modules();
        let mut child = Command::new("node")
            .arg("server.js")
            .arg(port.to_string())
            .envs(env.iter().copied())
            .current_dir(fixture_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node is needed to run the oidc-provider fixture (install Node 20)");
        let stdout = child.stdout.take().expect("stdout");
        // Keep node's stderr for the failure message (and drain it so node never blocks).
        let errors = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let errors = errors.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut e = errors.lock().unwrap_or_else(|p| p.into_inner());
                    if e.len() < 8192 {
                        e.push_str(&line);
                        e.push('\n');
                    }
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        let _ = tx.send(url.trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        let issuer = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(i) => i,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let err = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
                panic!("oidc-provider did not start listening ({e}); its stderr:\n{err}");
            }
        };
        let op = Op {
            child: Some(child),
            issuer,
        };
        let c = client();
        let disco = format!("{}/.well-known/openid-configuration", op.issuer);
        wait_for(
            || {
                c.get(&disco)
                    .send()
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            },
            "oidc-provider discovery",
        );
        op
    }

    /// A client-credentials access token from the provider.
    pub fn token(&self, client_id: &str, scope: &str, resource: &str) -> String {
        let r = client()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(format!("secret-{client_id}")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", resource),
            ])
            .send()
            .expect("token request");
        assert_eq!(r.status(), 200, "token endpoint");
        let v: Value = r.json().expect("token json");
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub fn admin(&self, path: &str, body: Value) -> Value {
        let r = client()
            .post(format!("{}/admin/{path}", self.issuer))
            .json(&body)
            .send()
            .expect("admin");
        assert_eq!(r.status(), 200, "admin {path}");
        r.json().expect("admin json")
    }

    /// A token signed by the provider's current key with claims of our choosing.
    pub fn sign(&self, alg: &str, claims: Value) -> String {
        self.admin("sign", json!({"alg": alg, "claims": claims}))["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    pub fn jwks_gets(&self) -> u64 {
        let v: Value = client()
            .get(format!("{}/admin/stats", self.issuer))
            .send()
            .expect("stats")
            .json()
            .expect("json");
        v["jwks_gets"].as_u64().expect("jwks_gets")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free port outside the kernel's ephemeral range, so no port-0 bind and no outgoing
/// connection of a parallel test can take it between now and the provider's start.
pub fn port_outside_ephemeral_range() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|x| x.parse::<u32>().ok())
        })
        .unwrap_or(32768);
    let span = low.saturating_sub(10_000).max(1);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    for i in 0..span {
        let port = 10_000 + (seed.wrapping_add(i.wrapping_mul(7919)) % span);
        if let Ok(port) = u16::try_from(port) {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    panic!("no free port below the ephemeral range");
}
