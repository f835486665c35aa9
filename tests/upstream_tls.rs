//! An `https://` upstream with its own CA (`ca_file`) that requires a client certificate
//! (mutual TLS): the edge presents `client_cert` and the upstream sees it; without it, or
//! without the CA, the upstream is unreachable (502, never a plain-text fallback); `check`
//! names the key of every bad file.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{client, free_port, Edge};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf from `ca` for `names`, with `cn` as its common name.
fn leaf(ca: &Ca, cn: &str, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
    let issuer = Issuer::from_ca_cert_der(ca.cert.der(), &ca.key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    (p.signed_by(&key, &issuer).unwrap(), key)
}

/// An HTTPS server on 127.0.0.1 (certificate from `ca`) that requires a client certificate
/// from `ca` and answers every request with JSON of the client certificate's common name.
fn mtls_upstream(ca: &Ca) -> u16 {
    let (cert, key) = leaf(ca, "upstream", &["127.0.0.1"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            tx.send(()).unwrap();
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let cn = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| {
                            let (_, x) = x509_parser::parse_x509_certificate(c).ok()?;
                            let cn = x.subject().iter_common_name().next()?;
                            cn.as_str().ok().map(str::to_string)
                        })
                        .unwrap_or_default();
                    let svc = hyper::service::service_fn(
                        move |_req: http::Request<hyper::body::Incoming>| {
                            let body = serde_json::json!({ "client_cn": cn }).to_string();
                            async move {
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from(body)),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap();
    port
}

/// The test CA and a client certificate (CN `edge-client`) as files in `dir`.
fn write_files(ca: &Ca, dir: &Path) {
    let (cert, key) = leaf(ca, "edge-client", &["edge-client"]);
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
    let out = Command::new(common::bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
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
