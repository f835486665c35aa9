//! The ProxyAuth drop-in end to end: the built binary run with ProxyAuth's `config.json` and
//! `routes.yml` (nothing else), a real HTTP upstream, a ProxyAuth-shaped login at `/auth`, the
//! token as `Authorization: Bearer`, route user lists, per-user and `/auth` limits, and `check`
//! naming a bad key by its ProxyAuth path.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, client, echo_json, free_port, EchoUpstream};
use serde_json::Value;

const SECRET: &str = "test-proxyauth-secret-0123456789abcdef0123456789";

/// ProxyAuth's config.json: alice with an Argon2id hash (of `alice-pw`), bob in plaintext.
fn config_json(port: u16, ratelimit: &str) -> String {
    let hash = authedge::auth::opaque::hash_password(b"alice-pw", None).unwrap();
    format!(
        r#"{{
  "token_expiry_seconds": 600,
  "secret": "{SECRET}",
  "host": "127.0.0.1",
  "port": {port},
  "worker": 2,
  "ratelimit": {ratelimit},
  "users": [
    {{ "username": "alice", "password": "{hash}" }},
    {{ "username": "bob", "password": "bob-pw" }}
  ]
}}"#
    )
}

const RATES: &str =
    r#"{ "requests_per_second": 1000, "burst": 1000, "block_delay": 1, "auth": 50 }"#;

fn routes_yml(up: &str) -> String {
    format!(
        r#"routes:
  - prefix: "/public"
    target: "{up}/open"
    secure: false
    cert: {{}}
  - prefix: "/api"
    target: "{up}/v1/"
    username: ["alice", "bob"]
    cert: {{}}
  - prefix: "/admin"
    target: "{up}/admin"
    username: ["alice", "carol"]
"#
    )
}

struct DropIn {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl DropIn {
    fn start(config: impl Fn(u16) -> String, routes: &str) -> DropIn {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("config.json"), config(port)).unwrap();
        std::fs::write(dir.path().join("routes.yml"), routes).unwrap();
        let log = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let mut child = Command::new(bin())
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("config.json"))
            .env("RUST_LOG", "warn")
            .stdout(log)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                panic!(
                    "authedge exited with {s}: {}",
                    std::fs::read_to_string(dir.path().join("stdout.log")).unwrap_or_default()
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "authedge did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        DropIn { port, dir, child }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn login(&self, user: &str, pw: &str) -> reqwest::blocking::Response {
        client()
            .post(self.url("/auth"))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "username": user, "password": pw }).to_string())
            .send()
            .unwrap()
    }

    fn token(&self, user: &str, pw: &str) -> String {
        let r = self.login(user, pw);
        assert_eq!(r.status(), 200);
        let v: Value = r.json().unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    fn get(&self, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
        let mut req = client().get(self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.send().unwrap()
    }
}

impl Drop for DropIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn proxyauth_files_run_unchanged() {
    let up = EchoUpstream::start();
    let edge = DropIn::start(|p| config_json(p, RATES), &routes_yml(&up.url()));
    let before = std::fs::read_to_string(edge.dir.path().join("config.json")).unwrap();

    // Login as ProxyAuth answers it: {"token","expires_at":"YYYY-MM-DD HH:MM:SS"}.
    let r = edge.login("alice", "alice-pw");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["expires_at", "token"], "{v}");
    let exp = v["expires_at"].as_str().unwrap();
    assert_eq!(exp.len(), 19, "{exp}");
    assert!(
        chrono::NaiveDateTime::parse_from_str(exp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{exp}"
    );
    let alice = v["token"].as_str().unwrap().to_string();

    // The token passes; the prefix becomes the target's path; the token stays at the edge.
    let r = edge.get("/api/items?x=1", Some(&alice));
    assert_eq!(r.status(), 200);
    let echo = echo_json(r);
    assert_eq!(echo["path"], "/v1/items");
    assert_eq!(echo["query"], "x=1");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert_eq!(echo["headers"]["x-user"], "alice");
    let r = edge.get("/admin/stats", Some(&alice));
    assert_eq!(r.status(), 200);
    assert_eq!(echo_json(r)["path"], "/admin/stats");

    // bob's plaintext password was hashed at load; bob is not in /admin's list: 403.
    let bob = edge.token("bob", "bob-pw");
    assert_eq!(edge.get("/api/x", Some(&bob)).status(), 200);
    assert_eq!(edge.get("/admin/stats", Some(&bob)).status(), 403);

    // Bad password: 401 with ProxyAuth's body; no token or a bad one: 401.
    let r = edge.login("alice", "wrong");
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().unwrap(), "Invalid credentials");
    assert_eq!(edge.login("nobody", "x").status(), 401);
    assert_eq!(edge.get("/api/x", None).status(), 401);
    assert_eq!(edge.get("/api/x", Some("not-a-token")).status(), 401);

    // secure: false passes without a token; no route: 404.
    let r = edge.get("/public/page", None);
    assert_eq!(r.status(), 200);
    assert_eq!(echo_json(r)["path"], "/open/page");
    assert_eq!(edge.get("/elsewhere", None).status(), 404);

    // ProxyAuth rewrites config.json with hashes; authedge leaves it alone (and says so).
    let after = std::fs::read_to_string(edge.dir.path().join("config.json")).unwrap();
    assert_eq!(before, after);
    let log = std::fs::read_to_string(edge.dir.path().join("stdout.log")).unwrap();
    assert!(log.contains("plaintext passwords of bob"), "{log}");
    assert!(log.contains("carol not in config.json"), "{log}");
}

#[test]
fn per_user_and_auth_limits() {
    let up = EchoUpstream::start();
    // One request back per minute, burst 2 per user over all their tokens; 3 logins per client.
    let rates = r#"{ "requests_per_second": 5, "burst": 2, "block_delay": 60000, "auth": 3 }"#;
    let edge = DropIn::start(|p| config_json(p, rates), &routes_yml(&up.url()));
    let t1 = edge.token("bob", "bob-pw");
    let t2 = edge.token("bob", "bob-pw");
    assert_eq!(edge.get("/api/a", Some(&t1)).status(), 200);
    assert_eq!(edge.get("/api/b", Some(&t2)).status(), 200);
    let r = edge.get("/api/c", Some(&t1));
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // The third login used the last of the client's burst of 3.
    assert_eq!(edge.login("alice", "alice-pw").status(), 200);
    assert_eq!(edge.login("alice", "alice-pw").status(), 429);
}

fn check(dir: &Path) -> (bool, String) {
    let out = Command::new(bin())
        .arg("check")
        .arg("--config")
        .arg(dir.join("config.json"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_names_bad_keys_by_their_proxyauth_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config_json(8080, RATES)).unwrap();
    let routes = "routes:\n  - prefix: /a\n    target: http://127.0.0.1:9/a\n    proxy: true\n    proxy_config: http://127.0.0.1:8888\n  - prefix: /b\n    target: http://127.0.0.1:9/b\n    usernames: [alice]\n";
    std::fs::write(dir.path().join("routes.yml"), routes).unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("routes.yml:routes[1]"), "{out}");
    assert!(out.contains("usernames"), "{out}");
    // Fix that one: the outbound proxy is refused by its key.
    let routes = routes.replace("usernames", "username");
    std::fs::write(dir.path().join("routes.yml"), routes).unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("routes.yml:routes[0].proxy:"), "{out}");
    // A config.json key.
    let text = config_json(8080, RATES).replace("\"worker\"", "\"workers\"");
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains("config.json") && out.contains("workers"),
        "{out}"
    );
    // No routes.yml beside it.
    std::fs::remove_file(dir.path().join("routes.yml")).unwrap();
    std::fs::write(dir.path().join("config.json"), config_json(8080, RATES)).unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok && out.contains("routes.yml"), "{out}");
}

#[test]
fn check_accepts_the_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/proxyauth");
    let (ok, out) = check(&dir);
    assert!(ok, "{out}");
    assert!(out.contains("ok: 3 routes, 1 upstreams"), "{out}");
    assert!(
        out.contains("note: config.json:users: plaintext passwords of bob"),
        "{out}"
    );
}
