//! gRPC and WebSocket through auth routes of the real binary (issue 14), against real servers
//! and clients in Python (grpcio, websockets; `scripts/test.sh` installs them):
//! unary and server-streaming gRPC calls through a jwt route to an h2c upstream, trailers
//! passed, denied calls answered with grpc-status 16/7/14/8; a WebSocket echo through an opaque
//! route, with nothing reaching the upstream on a denied upgrade.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{client, free_port, Edge};
use serde_json::Value;

const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A Python fixture server, killed on drop.
struct Server(Child);

impl Server {
    fn start(script: &str, port: u16, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new("python3");
        cmd.arg(format!("{FIXTURES}/{script}"))
            .args(["serve", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("python3 with grpcio and websockets (scripts/test.sh installs them)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{script} did not start");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run a fixture's client and parse the JSON line it prints.
fn call(script: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(format!("{FIXTURES}/{script}"))
        .arg("call")
        .args(args)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} / {}", String::from_utf8_lossy(&out.stderr)))
}

fn hs256(sub: &str, scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://issuer.test", "sub": sub, "scope": scope, "iat": now, "exp": now + 300,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn weak_hash(pw: &str) -> String {
    let params = argon2::Params::new(256, 1, 1, None).unwrap();
    authedge::auth::opaque::hash_password(pw.as_bytes(), Some(params)).unwrap()
}

/// An opaque realm with user alice and a per-user limit of one request per 100 s.
fn realm() -> String {
    format!(
        r#"
opaque:
  main:
    allow_weak_hashes: true
    keys: [ {{ id: k1, secret: {{ value: "0123456789abcdef0123456789abcdef" }} }} ]
    rate_limit: {{ requests_per_second: 0.01, burst: 1 }}
    users: [ {{ id: "1", username: alice, password_hash: '{}' }} ]
  ws:
    allow_weak_hashes: true
    token_path: /ws-auth
    revoke_path: /ws-auth/revoke
    keys: [ {{ id: k1, secret: {{ value: "0123456789abcdef0123456789abcdef" }} }} ]
    users: [ {{ id: "1", username: alice, password_hash: '{}' }} ]
"#,
        weak_hash("pw"),
        weak_hash("pw")
    )
}

fn login(edge: &Edge, path: &str) -> String {
    let v: Value = client()
        .post(edge.url(path))
        .json(&serde_json::json!({"username": "alice", "password": "pw"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["token"].as_str().expect("token").to_string()
}

#[test]
fn grpc_unary_and_streaming_through_jwt_route_and_grpc_denials() {
    let grpc_port = free_port();
    let _server = Server::start("grpc/echo.py", grpc_port, &[]);
    let closed = free_port();
    let edge = Edge::start(&format!(
        r#"
server: {{ threads: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}", h2c: true }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams:
  grpc: {{ url: "http://127.0.0.1:{grpc_port}", h2c: true }}
{realm}
routes:
  - id: grpc
    path: /echo.Echo
    upstream: grpc
    auth: [ {{ type: jwt, providers: [ {{ issuer: "https://issuer.test", secret: {{ value: "{SECRET}" }} }} ], scopes: [grpc] }} ]
  - id: limited
    path: /limited.Echo
    upstream: grpc
    auth: [ {{ type: opaque, realm: main }} ]
  - id: down
    path: /down.Echo
    upstream: grpc
    auth: [ {{ type: jwt, providers: [ {{ issuer: "http://127.0.0.1:{closed}/idp" }} ] }} ]
"#,
        realm = realm()
    ));
    let target = format!("127.0.0.1:{}", edge.port);
    let token = hs256("svc-grpc", "grpc");

    let v = call(
        "grpc/echo.py",
        &[&target, "/echo.Echo/Unary", "hello", &token],
    );
    assert_eq!(v["code"], "OK", "{v}");
    assert_eq!(
        v["trailers"]["x-echo-trailer"], "kept",
        "trailers pass: {v}"
    );
    let got: Value = serde_json::from_str(v["responses"][0].as_str().unwrap()).unwrap();
    assert_eq!(got["request"], "hello");
    assert_eq!(got["metadata"]["x-auth-subject"], "svc-grpc");
    assert!(got["metadata"].get("authorization").is_none(), "{got}");

    let v = call("grpc/echo.py", &[&target, "/echo.Echo/Stream", "5", &token]);
    assert_eq!(v["code"], "OK", "{v}");
    let parts: Vec<String> = (0..5).map(|i| format!("part-{i}")).collect();
    assert_eq!(v["responses"], serde_json::json!(parts));
    assert_eq!(v["trailers"]["x-echo-trailer"], "kept", "{v}");

    // Denied calls: gRPC statuses a gRPC client reads, with the reason word.
    let v = call("grpc/echo.py", &[&target, "/echo.Echo/Unary", "x"]);
    assert_eq!(
        (v["code"].as_str(), v["details"].as_str()),
        (Some("UNAUTHENTICATED"), Some("missing")),
        "{v}"
    );
    let v = call(
        "grpc/echo.py",
        &[&target, "/echo.Echo/Stream", "2", "not-a-jwt"],
    );
    assert_eq!(v["code"], "UNAUTHENTICATED", "{v}");
    assert!(v["responses"].as_array().unwrap().is_empty());
    let v = call(
        "grpc/echo.py",
        &[
            &target,
            "/echo.Echo/Unary",
            "x",
            &hs256("svc-grpc", "other"),
        ],
    );
    assert_eq!(
        (v["code"].as_str(), v["details"].as_str()),
        (Some("PERMISSION_DENIED"), Some("insufficient_scope")),
        "{v}"
    );
    // An RS256 token for a provider whose keys never loaded (its signature cannot matter).
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let down = format!(
        "{}.{}.c2ln",
        b64(serde_json::json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})),
        b64(
            serde_json::json!({"iss": format!("http://127.0.0.1:{closed}/idp"), "sub": "s", "exp": 4102444800u64})
        )
    );
    let v = call("grpc/echo.py", &[&target, "/down.Echo/Unary", "x", &down]);
    assert_eq!(
        (v["code"].as_str(), v["details"].as_str()),
        (Some("UNAVAILABLE"), Some("keys_unavailable")),
        "{v}"
    );
    let opaque = login(&edge, "/auth");
    let v = call(
        "grpc/echo.py",
        &[&target, "/limited.Echo/Unary", "one", &opaque],
    );
    assert_eq!(v["code"], "OK", "{v}");
    let v = call(
        "grpc/echo.py",
        &[&target, "/limited.Echo/Unary", "two", &opaque],
    );
    assert_eq!(
        (v["code"].as_str(), v["details"].as_str()),
        (Some("RESOURCE_EXHAUSTED"), Some("rate_limited")),
        "{v}"
    );
    let v = call(
        "grpc/echo.py",
        &[&target, "/nowhere.Svc/Unary", "x", &token],
    );
    assert_eq!(v["code"], "UNIMPLEMENTED", "{v}");
}

#[test]
fn websocket_through_opaque_route() {
    let ws_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("opened.log");
    std::fs::write(&log, "").unwrap();
    let _server = Server::start(
        "websocket/echo.py",
        ws_port,
        &[("ECHO_LOG", log.to_str().unwrap())],
    );
    let edge = Edge::start(&format!(
        r#"
server: {{ threads: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{ ws: {{ url: "http://127.0.0.1:{ws_port}" }} }}
{realm}
routes:
  - {{ id: ws, path: /ws, upstream: ws, auth: [ {{ type: opaque, realm: ws }} ] }}
"#,
        realm = realm()
    ));
    let url = format!("ws://127.0.0.1:{}/ws/chat", edge.port);
    // Denied upgrades: no token, a bad token. Nothing reaches the upstream.
    let v = call("websocket/echo.py", &[&url, "hi"]);
    assert_eq!(v["status"], 401, "{v}");
    let v = call("websocket/echo.py", &[&url, "hi", "forged-token"]);
    assert_eq!(v["status"], 401, "{v}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "",
        "a denied upgrade reached the upstream"
    );
    // With a token: tunnelled both ways.
    let token = login(&edge, "/ws-auth");
    let v = call(
        "websocket/echo.py",
        &[&url, "hello through the edge", &token],
    );
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["echo"], "hello through the edge");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "/ws/chat\n");
}
