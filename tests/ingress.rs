//! Ingress protocols through the real binary (issue 14): HTTP/2 over TLS by ALPN and h2c with
//! prior knowledge, checked with curl (nghttp2) against a real HTTP/1.1 upstream; `:authority`
//! against `Host`; certificates rotated by SIGHUP and chosen by SNI, checked by the serial the
//! next handshake presents (openssl s_client).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use common::{free_port, wait_for, EchoUpstream, Edge};
use serde_json::Value;

const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!";

/// A self-signed certificate for `names` with the given serial, written as `stem.pem` and
/// `stem.key` in `dir` (openssl CLI).
fn cert(dir: &Path, stem: &str, names: &[&str], serial: &str) {
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-set_serial", serial])
        .args(["-subj", &format!("/CN={}", names[0])])
        .args(["-addext", &format!("subjectAltName={}", san.join(","))])
        .arg("-keyout")
        .arg(dir.join(format!("{stem}.key")))
        .arg("-out")
        .arg(dir.join(format!("{stem}.pem")))
        .output()
        .expect("openssl (Debian package openssl) is needed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The serial (hex, upper case) of the certificate the TLS port presents for `sni`.
fn served_serial(port: u16, sni: &str) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {sni} </dev/null 2>/dev/null \
         | openssl x509 -noout -serial"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().trim_start_matches("serial=").to_string()
}

/// curl through the edge: `(HTTP version, status, body)`. `args` choose the protocol.
fn curl(args: &[&str], url: &str, extra: &[&str]) -> (String, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "15", "-o", "-"])
        .args(["-w", "\n%{http_version} %{http_code}"])
        .args(args)
        .args(extra)
        .arg(url)
        .output()
        .expect("curl (with HTTP/2: Debian's curl) is needed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (v, code) = tail.split_once(' ').unwrap_or(("", "0"));
    (v.to_string(), code.parse().unwrap_or(0), body.to_string())
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

/// The upstream's view of a request without the per-request id.
fn seen(body: &str) -> Value {
    let mut v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let h = v["headers"].as_object_mut().expect("headers");
    assert!(h.remove("x-request-id").is_some(), "a request id is set");
    v
}

fn config(tls_port: u16, upstream: &str, listeners_extra: &str, tls_extra: &str) -> String {
    format!(
        r#"
server: {{ threads: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock" }}
listeners:
  - {{ address: "127.0.0.1:{{port}}"{listeners_extra} }}
  - address: "127.0.0.1:{tls_port}"
    tls:
      cert: default.pem
      key: default.key
      sni: [ {{ names: [b.test, "*.wild.test"], cert: b.pem, key: b.key }} ]{tls_extra}
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{ up: {{ url: "{upstream}" }} }}
routes:
  - {{ id: public, path: /public, upstream: up, public: true }}
  - {{ id: only-b, host: b.test, path: /only-b, upstream: up, public: true }}
  - id: jwt
    path: /jwt
    upstream: up
    auth: [ {{ type: jwt, providers: [ {{ issuer: "https://issuer.test", secret: {{ value: "{SECRET}" }} }} ], scopes: [read] }} ]
"#
    )
}

/// Start an edge whose TLS files (relative names) sit next to its config.
fn start(tls_port: u16, up: &EchoUpstream, extra: &str) -> Edge {
    start_tls(tls_port, up, extra, "")
}

fn start_tls(tls_port: u16, up: &EchoUpstream, extra: &str, tls_extra: &str) -> Edge {
    let yaml = config(tls_port, &up.url(), extra, tls_extra);
    Edge::start_with_files(&yaml, |dir| {
        cert(dir, "default", &["localhost"], "0x1001");
        cert(dir, "b", &["b.test", "*.wild.test"], "0x2002");
    })
}

#[test]
fn h2_over_tls_by_alpn_public_and_jwt_routes_match_http1() {
    let up = EchoUpstream::start();
    let tls_port = free_port();
    let edge = start(tls_port, &up, "");
    let ca = edge.dir.path().join("default.pem");
    let ca = ca.to_str().unwrap();
    let resolve = format!("localhost:{tls_port}:127.0.0.1");
    let tls = |proto: &str, path: &str, extra: &[&str]| {
        let url = format!("https://localhost:{tls_port}{path}");
        curl(&[proto, "--cacert", ca, "--resolve", &resolve], &url, extra)
    };
    let token = hs256("svc-a", "read");
    let auth = format!("Authorization: Bearer {token}");
    for (path, extra) in [("/public/x?q=1", vec![]), ("/jwt/y", vec!["-H", &auth])] {
        let mut extra: Vec<&str> = extra.to_vec();
        extra.extend(["-H", "X-Auth-Subject: forged", "-H", "X-Custom: 1"]);
        let (v2, s2, b2) = tls("--http2", path, &extra);
        let (v1, s1, b1) = tls("--http1.1", path, &extra);
        assert_eq!((v2.as_str(), s2), ("2", 200), "{path} over h2: {b2}");
        assert_eq!((v1.as_str(), s1), ("1.1", 200), "{path} over h1: {b1}");
        let (h2, h1) = (seen(&b2), seen(&b1));
        assert_eq!(
            h2, h1,
            "{path}: the upstream sees the same request over h2 and h1"
        );
        assert_eq!(h2["headers"]["host"], format!("localhost:{tls_port}"));
        assert_eq!(h2["headers"]["x-forwarded-proto"], "https");
        assert_eq!(h2["headers"]["x-custom"], "1");
        assert!(h2["headers"].get("authorization").is_none());
        let subject = if path.starts_with("/jwt") {
            "svc-a"
        } else {
            ""
        };
        assert_eq!(
            h2["headers"]["x-auth-subject"].as_str().unwrap_or(""),
            subject
        );
    }
    // `:authority` is the routing host (and SNI picked b.test's certificate: curl checks it).
    let b_ca = edge.dir.path().join("b.pem");
    let b_resolve = format!("b.test:{tls_port}:127.0.0.1");
    let b = |path: &str| {
        let url = format!("https://b.test:{tls_port}{path}");
        let args = [
            "--http2",
            "--cacert",
            b_ca.to_str().unwrap(),
            "--resolve",
            &b_resolve,
        ];
        curl(&args, &url, &[])
    };
    let (v, s, body) = b("/only-b/x");
    assert_eq!((v.as_str(), s), ("2", 200), "{body}");
    assert_eq!(seen(&body)["headers"]["host"], format!("b.test:{tls_port}"));
    assert_eq!(
        tls("--http2", "/only-b/x", &[]).1,
        404,
        "another :authority"
    );
    // Denials on h2 are the same answers.
    let (v, s, body) = tls("--http2", "/jwt/y", &[]);
    assert_eq!((v.as_str(), s, body.as_str()), ("2", 401, "unauthorized\n"));
    let bad = format!("Authorization: Bearer {}", hs256("svc-a", "write"));
    assert_eq!(tls("--http2", "/jwt/y", &["-H", &bad]).1, 403);
    assert_eq!(tls("--http2", "/nowhere", &[]).1, 404);
    // Metrics count h2 requests like h1 ones (2 public and 1 jwt allow per protocol).
    edge.wait_metric(
        r#"authedge_requests_total{mode="public",outcome="allow",reason="",route="public"}"#,
        2.0,
    );
}

#[test]
fn authority_and_a_different_host_are_refused() {
    let up = EchoUpstream::start();
    let tls_port = free_port();
    let edge = start(tls_port, &up, "");
    // HTTP/1.1 absolute-form: the target's authority and Host disagree.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(
        b"GET http://a.test/public/x HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // Agreeing is fine.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    s.write_all(
        b"GET http://a.test/public/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // HTTP/2: `:authority` from the URL and a `host` header naming another host (nghttp sends
    // both as given).
    let url = format!("https://127.0.0.1:{tls_port}/public/x");
    let out = Command::new("nghttp")
        .args(["-v", "-H", "host: other.test", &url])
        .output()
        .expect("nghttp (Debian package nghttp2-client) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(":status: 400"), "{text}");

    let out = Command::new("nghttp").args(["-v", &url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(":status: 200"), "{text}");
}

#[test]
fn h2c_prior_knowledge_only_where_configured() {
    let up = EchoUpstream::start();
    let tls_port = free_port();
    let edge = start(tls_port, &up, ", h2c: true");
    let url = edge.url("/public/h2c");
    let (v, s, body) = curl(&["--http2-prior-knowledge"], &url, &[]);
    assert_eq!((v.as_str(), s), ("2", 200), "{body}");
    assert_eq!(seen(&body)["headers"]["x-forwarded-proto"], "http");
    // The same port still speaks HTTP/1.1.
    let (v, s, _) = curl(&["--http1.1"], &url, &[]);
    assert_eq!((v.as_str(), s), ("1.1", 200));
    let token = hs256("svc-c", "read");
    let auth = format!("Authorization: Bearer {token}");
    let (_, s, body) = curl(
        &["--http2-prior-knowledge"],
        &edge.url("/jwt/z"),
        &["-H", &auth],
    );
    assert_eq!(s, 200);
    assert_eq!(seen(&body)["headers"]["x-auth-subject"], "svc-c");
    assert_eq!(
        curl(&["--http2-prior-knowledge"], &edge.url("/jwt/z"), &[]).1,
        401
    );

    // A listener without h2c does not speak HTTP/2 in the clear, and a TLS listener with
    // `alpn: [http/1.1]` does not offer h2.
    let tls_port = free_port();
    let other = start_tls(tls_port, &up, "", "\n      alpn: [http/1.1]");
    let (_, s, _) = curl(&["--http2-prior-knowledge"], &other.url("/public/x"), &[]);
    assert_ne!(s, 200, "h2c answered on a listener without h2c: true");
    let ca = other.dir.path().join("default.pem");
    let resolve = format!("localhost:{tls_port}:127.0.0.1");
    let args = [
        "--http2",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
    ];
    let (v, s, _) = curl(
        &args,
        &format!("https://localhost:{tls_port}/public/x"),
        &[],
    );
    assert_eq!(
        (v.as_str(), s),
        ("1.1", 200),
        "alpn: [http/1.1] keeps HTTP/1.1"
    );
}

#[test]
fn certificates_rotate_on_sighup_and_are_chosen_by_sni() {
    let up = EchoUpstream::start();
    let tls_port = free_port();
    let edge = start(tls_port, &up, "");
    let dir = edge.dir.path().to_path_buf();
    assert_eq!(served_serial(tls_port, "localhost"), "1001");
    assert_eq!(served_serial(tls_port, "b.test"), "2002");
    assert_eq!(served_serial(tls_port, "x.wild.test"), "2002");
    assert_eq!(served_serial(tls_port, "unknown.test"), "1001");
    // TLS 1.2 is the minimum: a TLS 1.1 handshake fails, 1.2 works.
    let handshake = |flag: &str| {
        let script = format!(
            "openssl s_client -connect 127.0.0.1:{tls_port} -servername localhost {flag} \
             -cipher DEFAULT@SECLEVEL=0 </dev/null 2>&1"
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let v12 = handshake("-tls1_2");
    assert!(
        v12.contains("Protocol  : TLSv1.2") || v12.contains("TLSv1.2"),
        "{v12}"
    );
    let v11 = handshake("-tls1_1");
    assert!(
        !v11.contains("BEGIN CERTIFICATE"),
        "a TLS 1.1 handshake succeeded: {v11}"
    );

    // Rotate the default certificate in place (new files renamed over the old ones), SIGHUP.
    let staging = tempfile::tempdir().unwrap();
    cert(staging.path(), "default", &["localhost"], "0x3003");
    for f in ["default.pem", "default.key"] {
        std::fs::rename(staging.path().join(f), dir.join(f)).unwrap();
    }
    let ok = r#"authedge_certificate_reload_total{result="success"}"#;
    edge.sighup_and_wait(ok);
    assert_eq!(served_serial(tls_port, "localhost"), "3003");
    assert_eq!(served_serial(tls_port, "b.test"), "2002");

    // A broken certificate file keeps the certificate in use and counts a reload error.
    std::fs::write(dir.join("default.pem"), "not a certificate\n").unwrap();
    let errors = r#"authedge_config_reload_total{result="error"}"#;
    let before = edge.metric(errors);
    edge.sighup_and_wait(r#"authedge_certificate_reload_total{result="error"}"#);
    assert!(edge.metric(errors) > before);
    assert_eq!(served_serial(tls_port, "localhost"), "3003");
    assert!(
        edge.stdout().contains("certificate reload failed"),
        "{}",
        edge.stdout()
    );
    // A fixed file is picked up by the next SIGHUP.
    cert(staging.path(), "default", &["localhost"], "0x4004");
    for f in ["default.pem", "default.key"] {
        std::fs::rename(staging.path().join(f), dir.join(f)).unwrap();
    }
    edge.sighup_and_wait(ok);
    wait_for(
        || served_serial(tls_port, "localhost") == "4004",
        "the fixed certificate",
    );
}

#[test]
fn check_names_bad_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    cert(dir.path(), "a", &["a.test"], "0x10");
    cert(dir.path(), "b", &["b.test"], "0x11");
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        r#"
listeners:
  - { address: "127.0.0.1:1", h2c: true, tls: { cert: a.pem, key: b.key, alpn: [http/1.1, h2] } }
  - { address: "127.0.0.1:2", tls: { cert: a.pem, key: a.key, sni: [ { names: ["bad name"], cert: missing.pem, key: b.key } ] } }
upstreams: { up: { url: "http://127.0.0.1:3", h2c: true, http2: true } }
routes: [ { path: /, upstream: up, public: true } ]
"#,
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for want in [
        "listeners[0].tls.alpn",
        "listeners[0].tls.cert", // key of another certificate
        "listeners[0].h2c",
        "listeners[1].tls.sni[0].cert",
        "upstreams.up",
    ] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
    // Relative names resolve next to the config file, wherever the command runs.
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        r#"
listeners: [ { address: "127.0.0.1:1", tls: { cert: a.pem, key: a.key, sni: [ { names: [b.test], cert: b.pem, key: b.key } ] } } ]
upstreams: { up: { url: "http://127.0.0.1:3", h2c: true } }
routes: [ { path: /, upstream: up, public: true } ]
"#,
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&good)
        .current_dir("/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
