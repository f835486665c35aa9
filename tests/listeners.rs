//! Listener and upstream kinds: TLS termination, a unix socket listener, a unix socket upstream.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::{client, echo_json, Edge, UnixEchoUpstream};

fn self_signed(dir: &std::path::Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian package openssl) is needed for the TLS test");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn tls_listener_terminates_tls_and_says_so_upstream() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let edge = Edge::start(&format!(
        r#"
server: {{ threads: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}", tls: {{ cert: "{cert}", key: "{key}" }} }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{ echo: {{ echo: true }} }}
routes: [ {{ path: /, upstream: echo, public: true }} ]
"#
    ));
    let c = reqwest::blocking::Client::builder()
        .no_proxy()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let v = echo_json(
        c.get(format!("https://localhost:{}/x", edge.port))
            .send()
            .unwrap(),
    );
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    // Plain HTTP on the TLS port is not served: the port accepts the connection (so this is not
    // a refused connect), but no HTTP response comes back, only a TLS alert or a close.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", edge.port)).expect("TLS port listens");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        !out.starts_with(b"HTTP/"),
        "plain HTTP answered on the TLS port: {:?}",
        String::from_utf8_lossy(&out)
    );
    if let Some(&first) = out.first() {
        assert_eq!(first, 0x15, "a TLS alert record, if anything: {out:?}");
    }
}

#[test]
fn unix_socket_listener_and_upstream() {
    let up = UnixEchoUpstream::start();
    let edge = Edge::start(&format!(
        r#"
server: {{ threads: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }}, {{ unix: "{{dir}}/edge.sock" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{ sock: {{ url: "unix:{}" }} }}
routes: [ {{ path: /, upstream: sock, public: true }} ]
"#,
        up.path.display()
    ));
    // TCP in, unix socket out.
    let v = echo_json(client().get(edge.url("/via-tcp")).send().unwrap());
    assert_eq!(v["path"], "/via-tcp");
    // Unix socket in, unix socket out.
    let mut s = std::os::unix::net::UnixStream::connect(edge.dir.path().join("edge.sock")).unwrap();
    s.write_all(b"GET /via-unix HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains(r#""path":"/via-unix""#), "{out}");
}
