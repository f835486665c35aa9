//! An `https://` upstream with its own CA (`ca_file`) that requires a client certificate
//! (mutual TLS): the edge presents `client_cert` and the upstream sees it; without it, or
//! without the CA, the upstream is unreachable (502, never a plain-text fallback); `check`
//! names the key of every bad file.

mod common;

use std::path::Path;
use std::process::Command;

use common::tls::{ca, leaf, Ca};
use common::{client, free_port, Edge};
use rcgen::KeyPair;
use serde_json::Value;

/// An HTTPS server on 127.0.0.1 (certificate from `ca`) that requires a client certificate
/// from `ca` and answers every request with JSON of the client certificate's common name.
fn mtls_upstream(ca: &Ca) -> u16 {
    common::tls::serve(common::tls::server_config(ca, Some(ca)), |_, client| {
        let cn = client
            .and_then(|c| {
                let (_, x) = x509_parser::parse_x509_certificate(c).ok()?;
                let cn = x.subject().iter_common_name().next()?;
                cn.as_str().ok().map(str::to_string)
            })
            .unwrap_or_default();
        serde_json::json!({ "client_cn": cn }).to_string()
    })
}

/// The test CA and a client certificate (CN `edge-client`) as files in `dir`.
fn write_files(ca: &Ca, dir: &Path) {
    let (cert, key) = leaf(ca, Some("edge-client"), &["edge-client"]);
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
    // A key of another certificate.
    std::fs::write(
        dir.join("other.key"),
        KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
}

fn config(up: u16) -> String {
    format!(
        r#"
server: {{ threads: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
log: {{ access: false }}
upstreams:
  mtls: {{ url: "https://127.0.0.1:{up}", ca_file: ca.pem, client_cert: client.pem, client_key: client.key }}
  nocert: {{ url: "https://127.0.0.1:{up}", ca_file: ca.pem }}
  noca: {{ url: "https://127.0.0.1:{up}", client_cert: client.pem, client_key: client.key }}
routes:
  - {{ id: mtls, path: /mtls, upstream: mtls, public: true }}
  - {{ id: nocert, path: /nocert, upstream: nocert, public: true }}
  - {{ id: noca, path: /noca, upstream: noca, public: true }}
"#
    )
}

#[test]
fn the_edge_presents_its_client_certificate_and_verifies_the_upstream_with_ca_file() {
    let ca = ca("test upstream CA");
    let up = mtls_upstream(&ca);
    let edge = Edge::start_with_files(&config(up), |dir| write_files(&ca, dir));
    for _ in 0..3 {
        let r = client().get(edge.url("/mtls/x")).send().unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().unwrap();
        assert_eq!(v["client_cn"], "edge-client");
    }
    // No client certificate: the upstream refuses the handshake.
    let r = client().get(edge.url("/nocert/x")).send().unwrap();
    assert_eq!(r.status(), 502);
    // The client certificate but the system's roots: the upstream's certificate is not trusted.
    let r = client().get(edge.url("/noca/x")).send().unwrap();
    assert_eq!(r.status(), 502);
}

fn check(yaml: &str) -> (i32, String) {
    let ca = ca("check CA");
    let dir = tempfile::tempdir().unwrap();
    write_files(&ca, dir.path());
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    common::check(&path)
}

#[test]
fn check_names_the_key_of_every_bad_upstream_tls_file() {
    let yaml = r#"
listeners: [ { address: "127.0.0.1:0" } ]
upstreams:
  wrongkey: { url: "https://127.0.0.1:1", client_cert: client.pem, client_key: other.key }
  nofile: { url: "https://127.0.0.1:1", ca_file: missing.pem }
  notpem: { url: "https://127.0.0.1:1", ca_file: client.key }
  plain: { url: "http://127.0.0.1:1", client_cert: client.pem, client_key: client.key }
  halfpair: { url: "https://127.0.0.1:1", client_cert: client.pem }
  noverify: { url: "https://127.0.0.1:1", ca_file: ca.pem, tls_verify: false }
  good: { url: "https://127.0.0.1:1", ca_file: ca.pem, client_cert: client.pem, client_key: client.key }
routes:
  - { path: /a, upstream: good, public: true }
"#;
    let (code, out) = check(yaml);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let has = |prefix: &str, text: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(text))
    };
    assert!(
        has("upstreams.wrongkey.client_key:", "does not fit"),
        "{out}"
    );
    assert!(has("upstreams.nofile.ca_file:", "cannot read"), "{out}");
    assert!(has("upstreams.notpem.ca_file:", "no CERTIFICATE"), "{out}");
    assert!(
        has("upstreams.plain.client_cert:", "needs an https:// url"),
        "{out}"
    );
    assert!(has("upstreams.halfpair.client_key:", "missing"), "{out}");
    assert!(
        has("upstreams.noverify.ca_file:", "tls_verify: false"),
        "{out}"
    );
    assert!(!out.contains("upstreams.good"), "{out}");
    // No key material in the output.
    assert!(!out.contains("PRIVATE KEY"), "{out}");
}

/// Kills the process when the test ends, whatever happens.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_proxyauth_route_with_a_pem_cert_presents_it_to_its_target() {
    let ca = ca("proxyauth target CA");
    let up = mtls_upstream(&ca);
    let dir = tempfile::tempdir().unwrap();
    write_files(&ca, dir.path());
    // ProxyAuth's cert.file, as `openssl pkcs12 -nodes` writes it: the chain and the key.
    let both = std::fs::read_to_string(dir.path().join("client.pem")).unwrap()
        + &std::fs::read_to_string(dir.path().join("client.key")).unwrap();
    std::fs::write(dir.path().join("client-both.pem"), both).unwrap();
    let port = free_port();
    let config = format!(
        r#"{{ "token_expiry_seconds": 600, "secret": "proxyauth-mtls-secret-0123456789abcdef0123",
  "host": "127.0.0.1", "port": {port}, "worker": 1,
  "users": [ {{ "username": "alice", "password": "alice-pw" }} ] }}"#
    );
    let routes = format!(
        r#"routes:
  - prefix: "/t"
    target: "https://127.0.0.1:{up}/x"
    secure: false
    cert: {{ file: "client-both.pem", password: "" }}
  - prefix: "/plain"
    target: "https://127.0.0.1:{up}/x"
    secure: false
"#
    );
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    std::fs::write(dir.path().join("routes.yml"), routes).unwrap();
    let child = Command::new(common::bin())
        .arg("run")
        .arg("--config")
        .arg(dir.path().join("config.json"))
        .env("RUST_LOG", "warn")
        // The target's CA as the system's roots (ProxyAuth has no CA setting of its own).
        .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
        .spawn()
        .unwrap();
    let _running = Running(child);
    common::wait_for(
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the drop-in listens",
    );
    let r = client()
        .get(format!("http://127.0.0.1:{port}/t/y"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["client_cn"], "edge-client");
    // The same target without the cert is another upstream: refused by the target.
    let r = client()
        .get(format!("http://127.0.0.1:{port}/plain/y"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 502);
}
