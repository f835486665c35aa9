//! The signer's CONNECT + MITM: a test CA (rcgen) for the signer, an HTTPS echo upstream with a
//! certificate from another test CA, reqwest through the signer trusting the MITM CA.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::jwtproxy::Keys;
use common::tls::{ca, Ca};
use common::Edge;
use serde_json::Value;

/// An HTTPS echo on 127.0.0.1 (its certificate from `ca`): answers each request with JSON of
/// its path and headers, keep-alive.
fn https_echo(ca: &Ca) -> u16 {
    common::tls::serve(common::tls::server_config(ca, None), |req, _| {
        let headers: serde_json::Map<String, Value> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or(""))))
            .collect();
        serde_json::json!({"path": req.uri.path(), "headers": headers}).to_string()
    })
}

/// A certificate for 127.0.0.1 from `ca`, written as PEM files into `dir`: (cert, key).
fn leaf_files(ca: &Ca, dir: &std::path::Path) -> (String, String) {
    let (leaf, key) = common::tls::leaf(ca, None, &["127.0.0.1"]);
    let (c, k) = (dir.join("leaf.pem"), dir.join("leaf.key"));
    std::fs::write(&c, leaf.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

struct Setup {
    _dir: tempfile::TempDir,
    keys: Keys,
    mitm: Ca,
    edge: Edge,
}

fn signer(extra: &str, allowed: &str) -> Setup {
    let keys = Keys::new();
    let mitm = ca("test MITM CA");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mitm.pem"), mitm.cert.pem()).unwrap();
    std::fs::write(dir.path().join("mitm.key"), mitm.key.serialize_pem()).unwrap();
    let d = dir.path().display();
    let allowed = if allowed.is_empty() {
        String::new()
    } else {
        format!("allowed_targets: [ {allowed} ]")
    };
    let edge = Edge::start(&format!(
        r#"server: {{ threads: 1, grace_period_seconds: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}", role: signer }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{}}
routes: []
signer:
  issuer: svc-a
  private_key: {{ preshared: {{ key_id: k1, private_key_file: "{}" }} }}
  ca_cert: "{d}/mitm.pem"
  ca_key: "{d}/mitm.key"
  {allowed}
  {extra}
"#,
        keys.path("k.pem"),
    ));
    Setup {
        _dir: dir,
        keys,
        mitm,
        edge,
    }
}

fn via(s: &Setup) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .proxy(reqwest::Proxy::https(s.edge.url("")).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(s.mitm.cert.pem().as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap()
}

fn claims(auth: &str) -> (Value, Value) {
    let t = auth.strip_prefix("Bearer ").unwrap();
    let part = |i: usize| -> Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').nth(i).unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    (part(0), part(1))
}

fn raw_status(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn connect_mitm_signs_every_request_in_the_tunnel() {
    let up_ca = ca("upstream CA");
    let port = https_echo(&up_ca);
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("up-ca.pem");
    std::fs::write(&trusted, up_ca.cert.pem()).unwrap();
    let origin = format!("https://127.0.0.1:{port}");
    let s = signer(
        &format!("trusted_certificates: [ \"{}\" ]", trusted.display()),
        &format!("\"{origin}\""),
    );
    let c = via(&s);
    let mut seen = Vec::new();
    for path in ["/one", "/two"] {
        let r = c.get(format!("{origin}{path}")).send().unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().unwrap();
        assert_eq!(body["path"], path);
        let auth = body["headers"]["authorization"]
            .as_str()
            .unwrap()
            .to_string();
        let (h, cl) = claims(&auth);
        assert_eq!(
            (h["alg"].as_str(), h["kid"].as_str()),
            (Some("RS256"), Some("k1"))
        );
        assert_eq!(cl["aud"], origin.as_str());
        assert_eq!(cl["iss"], "svc-a");
        seen.push(cl["jti"].as_str().unwrap().to_string());
    }
    assert_ne!(seen[0], seen[1]);

    // Outside allowed_targets: 403 to the CONNECT.
    let line = raw_status(
        s.edge.port,
        "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
    );
    assert!(line.contains(" 403"), "{line}");
    // To the signer itself: 400.
    let own = format!(
        "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n",
        s.edge.port
    );
    let line = raw_status(s.edge.port, &own);
    assert!(line.contains(" 400") || line.contains(" 403"), "{line}");
}

#[test]
fn untrusted_upstream_is_502_unless_insecure_skip_verify() {
    let up_ca = ca("upstream CA");
    let port = https_echo(&up_ca);
    let origin = format!("https://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, ca("another CA").cert.pem()).unwrap();
    let s = signer(
        &format!("trusted_certificates: [ \"{}\" ]", other.display()),
        &format!("\"{origin}\""),
    );
    let r = via(&s).get(format!("{origin}/x")).send().unwrap();
    assert_eq!(r.status(), 502);
    let s = signer(
        &format!(
            "trusted_certificates: [ \"{}\" ]\n  insecure_skip_verify: true",
            other.display()
        ),
        &format!("\"{origin}\""),
    );
    let r = via(&s).get(format!("{origin}/x")).send().unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    assert!(body["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer "));
}

#[test]
fn connect_without_a_ca_is_403() {
    let keys = Keys::new();
    let edge = Edge::start(&format!(
        r#"server: {{ threads: 1, grace_period_seconds: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}", role: signer }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{}}
routes: []
signer: {{ issuer: svc-a, private_key: {{ preshared: {{ key_id: k1, private_key_file: "{}" }} }} }}
"#,
        keys.path("k.pem")
    ));
    let line = raw_status(
        edge.port,
        "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n",
    );
    assert!(line.contains(" 403"), "{line}");
}

#[test]
fn the_real_jwtproxy_verifier_behind_tls_accepts_tokens_signed_in_the_tunnel() {
    let up = common::EchoUpstream::start();
    let up_ca = ca("verifier CA");
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = leaf_files(&up_ca, dir.path());
    let trusted = dir.path().join("ca.pem");
    std::fs::write(&trusted, up_ca.cert.pem()).unwrap();
    // The signer's key is made first; the verifier uses its public half.
    let s = signer(
        &format!("trusted_certificates: [ \"{}\" ]", trusted.display()),
        "",
    );
    let verifier = common::jwtproxy::Jwtproxy::verifier_tls(&s.keys, &up.url(), &crt, &key);
    let origin = format!("https://127.0.0.1:{}", verifier.port);
    let c = via(&s);
    for path in ["/a", "/b"] {
        let r = c.get(format!("{origin}{path}")).send().unwrap();
        assert_eq!(r.status(), 200, "{}", verifier.log());
        let body = common::echo_json(r);
        assert_eq!(body["path"], path);
        let (_, cl) = claims(body["headers"]["authorization"].as_str().unwrap());
        assert_eq!(cl["aud"], origin.as_str());
    }
}
