//! The signer (`role: signer` listeners) against the real quay jwtproxy verifier
//! (`../shared/peers/bin/jwtproxy`): authedge signs, jwtproxy accepts and forwards to the
//! upstream. The signer refuses CONNECT (no CA), origin-form requests, requests to itself and
//! targets outside `allowed_targets`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::jwtproxy::{Jwtproxy, Keys};
use common::{client, echo_json, free_port, EchoUpstream, Edge};
use serde_json::Value;

fn signer_edge(keys: &Keys, allowed: &[String]) -> Edge {
    let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    Edge::start(&format!(
        r#"server: {{ threads: 1, grace_period_seconds: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}", role: signer }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{}}
routes: []
signer:
  issuer: svc-a
  private_key: {{ preshared: {{ key_id: k1, private_key_file: "{}" }} }}
  allowed_targets: [ {} ]
"#,
        keys.path("k.pem"),
        list.join(", ")
    ))
}

fn via(edge: &Edge) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .proxy(reqwest::Proxy::http(edge.url("")).unwrap())
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap()
}

fn part(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

/// The status line of one raw request.
fn raw_status(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.lines().next().unwrap_or("").to_string()
}

#[test]
fn authedge_signs_and_the_real_jwtproxy_verifier_accepts() {
    let keys = Keys::new();
    let up = EchoUpstream::start();
    let verifier = Jwtproxy::verifier(&keys, &up.url());
    let target = format!("http://127.0.0.1:{}", verifier.port);
    let edge = signer_edge(&keys, std::slice::from_ref(&target));
    let c = via(&edge);

    // Signed by authedge, verified by jwtproxy (which forwards the token to the upstream).
    let body = echo_json(c.get(format!("{target}/hello?x=1")).send().unwrap());
    assert_eq!(body["path"], "/hello");
    let auth = body["headers"]["authorization"].as_str().unwrap();
    let token = auth.strip_prefix("Bearer ").unwrap();
    let header = part(token, 0);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "k1");
    assert_eq!(header["typ"], "JWT");
    let claims = part(token, 1);
    assert_eq!(claims["iss"], "svc-a");
    assert_eq!(claims["aud"], target.as_str());
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!((iat - nbf, exp - iat), (60, 300));
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    assert!(body["headers"].get("proxy-connection").is_none());
    // Every request a fresh nonce: jwtproxy (which refuses a seen jti) accepts the next ones.
    for _ in 0..3 {
        let b = echo_json(c.get(format!("{target}/again")).send().unwrap());
        assert_ne!(b["headers"]["authorization"].as_str().unwrap(), auth);
    }
    // A client-sent Authorization is replaced, not doubled.
    let b = echo_json(
        c.get(format!("{target}/x"))
            .header("authorization", "Bearer client-token")
            .send()
            .unwrap(),
    );
    assert!(!b["headers"]["authorization"]
        .as_str()
        .unwrap()
        .contains("client-token"));
    // jwtproxy refuses an unsigned request: the 200s above are its acceptance.
    assert_eq!(
        client()
            .get(format!("{target}/hello"))
            .send()
            .unwrap()
            .status(),
        403
    );

    // Outside allowed_targets: 403, never signed.
    let r = c.get(format!("{}/x", up.url())).send().unwrap();
    assert_eq!(r.status(), 403);
    // To the signer itself: 400.
    let r = c.get(edge.url("/loop")).send().unwrap();
    assert_eq!(r.status(), 400);
    // Origin-form (not a proxy request): 400.
    assert_eq!(client().get(edge.url("/x")).send().unwrap().status(), 400);
    // CONNECT without a CA: 403.
    let line = raw_status(
        edge.port,
        "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n",
    );
    assert!(line.contains(" 403"), "{line}");
}

#[test]
fn a_signer_block_needs_a_signer_listener_and_a_signer_listener_its_block() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let port = free_port();
    let signer = format!(
        "signer: {{ issuer: svc-a, private_key: {{ preshared: {{ key_id: k1, private_key_file: \"{}\" }} }} }}\n",
        keys.path("k.pem")
    );
    let no_listener = write(
        "a.yaml",
        format!("listeners: [ {{ address: \"127.0.0.1:{port}\" }} ]\nupstreams: {{ u: {{ echo: true }} }}\nroutes: [ {{ path: /, upstream: u, public: true }} ]\n{signer}"),
    );
    let no_block = write(
        "b.yaml",
        format!("listeners: [ {{ address: \"127.0.0.1:{port}\", role: signer }} ]\nupstreams: {{}}\nroutes: []\n"),
    );
    let ok = write(
        "c.yaml",
        format!("listeners: [ {{ address: \"127.0.0.1:{port}\", role: signer }} ]\nupstreams: {{}}\nroutes: []\n{signer}"),
    );
    let check = |p: &std::path::Path| {
        let out = std::process::Command::new(common::bin())
            .args(["check", "--config"])
            .arg(p)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (good, text) = check(&no_listener);
    assert!(
        !good && text.contains("signer: no listener has role: signer"),
        "{text}"
    );
    let (good, text) = check(&no_block);
    assert!(!good && text.contains("listeners[0].role"), "{text}");
    let (good, text) = check(&ok);
    assert!(good, "{text}");
}
