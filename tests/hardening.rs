//! Hostile input end to end (issue 15), over raw sockets so no client library normalises it:
//! forwarding and identity headers, framing, control bytes, path strictness, idle keep-alive
//! connections, requests per connection, pipelining, and the endpoint body deadline.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, wait_for, Edge};

/// An upstream that records each request's raw head and body, exactly as received, and answers
/// `200 ok` and closes.
/// Each request's raw head and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct RawUpstream {
    port: u16,
    seen: Seen,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl RawUpstream {
    fn start() -> RawUpstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                let seen = s2.clone();
                std::thread::spawn(move || {
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = find(&buf, b"\r\n\r\n") {
                            break i + 4;
                        }
                        match c.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let lower = head.to_ascii_lowercase();
                    let chunked = lower.contains("\r\ntransfer-encoding: chunked");
                    let len = lower
                        .split("\r\n")
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    loop {
                        let body = &buf[head_end..];
                        let done = if chunked {
                            find(body, b"0\r\n\r\n").is_some()
                        } else {
                            body.len() >= len
                        };
                        if done {
                            break;
                        }
                        match c.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    seen.lock().unwrap().push((head, buf[head_end..].to_vec()));
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    );
                });
            }
        });
        RawUpstream { port, seen }
    }

    fn last(&self) -> (String, Vec<u8>) {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

fn config(up: u16, server_extra: &str, top_extra: &str) -> String {
    format!(
        r#"
server: {{ threads: 2, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock"{server_extra} }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
log: {{ access: false }}
{top_extra}
upstreams:
  echo: {{ echo: true }}
  real: {{ url: "http://127.0.0.1:{up}", connect_timeout: 1s, read_timeout: 2s }}
routes:
  - {{ id: catchall, path: /, upstream: real, public: true }}
  - {{ id: admin, path: /admin, upstream: echo, public: true }}
  - {{ id: builtin, path: /builtin, upstream: echo, public: true }}
"#
    )
}

/// Send raw bytes on a fresh connection; read until the server closes (or 5 s).
fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Read one response with a Content-Length body from a kept-alive connection.
fn read_response(s: &mut TcpStream) -> String {
    read_response_buffered(s, &mut Vec::new())
}

/// Like `read_response`, keeping bytes past the response in `buf` for the next call.
fn read_response_buffered(s: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= i + 4 + len {
                let rest = buf.split_off(i + 4 + len);
                let one = String::from_utf8_lossy(buf).into_owned();
                *buf = rest;
                return one;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(buf).into_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn header_lines<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.split("\r\n")
        .filter(|l| {
            l.split_once(':')
                .map(|(n, _)| n.eq_ignore_ascii_case(name))
                .unwrap_or(false)
        })
        .map(|l| l.split_once(':').map(|(_, v)| v.trim()).unwrap_or(""))
        .collect()
}

#[test]
fn forwarding_rewrite_and_identity_headers_are_the_edges_own() {
    let up = RawUpstream::start();
    let edge = Edge::start(&config(up.port, "", ""));
    let spoofed = [
        "x_forwarded_for: 6.6.6.6",
        "X-Forwarded-For: 6.6.6.7",
        "x_forwarded_proto: https",
        "x_request_id: spoof",
        "X-Request-Id: spoof",
        "x_real_ip: 6.6.6.8",
        "X-Real-IP: 6.6.6.9",
        "X-Client-IP: 6.6.6.10",
        "True-Client-IP: 6.6.6.11",
        "Forwarded: for=6.6.6.12",
        "X-Forwarded-Host: evil.example",
        "x_forwarded_host: evil2.example",
        "X-Original-URL: /admin",
        "X-Rewrite-URL: /admin",
        "X-Authenticated-User: root",
        "X-Id-Token: forged",
        "Transfer_Encoding: chunked",
        "content_length: 99",
        "Connection_: x",
    ];
    let req = format!(
        "GET /public/x HTTP/1.1\r\nHost: app.example\r\n{}\r\nConnection: close\r\n\r\n",
        spoofed.join("\r\n")
    );
    let resp = raw(edge.port, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (head, _) = up.last();
    for bad in [
        "6.6.6.",
        "spoof",
        "evil",
        "/admin",
        "root",
        "forged",
        "x_",
        "_encoding",
        "content_",
    ] {
        assert!(!head.contains(bad), "{bad} reached the upstream:\n{head}");
    }
    assert_eq!(header_lines(&head, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header_lines(&head, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(header_lines(&head, "x-forwarded-proto"), ["http"]);
    assert_eq!(header_lines(&head, "x-forwarded-host"), ["app.example"]);
    assert_eq!(
        header_lines(&head, "forwarded"),
        [r#"for=127.0.0.1;proto=http;host="app.example""#]
    );
    assert_eq!(header_lines(&head, "x-request-id")[0].len(), 24);
    assert!(header_lines(&head, "x-original-url").is_empty());
}

#[test]
fn rewrite_headers_are_kept_when_configured() {
    let up = RawUpstream::start();
    let edge = Edge::start(&config(
        up.port,
        "",
        "identity_headers: { keep_rewrite_headers: true, strip: [X-Tenant] }",
    ));
    let resp = raw(
        edge.port,
        b"GET /p HTTP/1.1\r\nHost: x\r\nX-Original-URL: /kept\r\nx_tenant: t\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (head, _) = up.last();
    assert_eq!(header_lines(&head, "x-original-url"), ["/kept"]);
    assert!(!head.to_ascii_lowercase().contains("tenant"), "{head}");
}

#[test]
fn framing_follows_rfc_9112() {
    let up = RawUpstream::start();
    let edge = Edge::start(&config(up.port, "", ""));
    // A list or a repeat with one value: one header upstream.
    for cl in [
        "Content-Length: 5, 5",
        "Content-Length: 5\r\nContent-Length: 5",
    ] {
        let resp = raw(
            edge.port,
            format!("POST /public/a HTTP/1.1\r\nHost: x\r\n{cl}\r\nConnection: close\r\n\r\nhello")
                .as_bytes(),
        );
        assert!(resp.starts_with("HTTP/1.1 200"), "{cl}: {resp}");
        let (head, body) = up.last();
        assert_eq!(header_lines(&head, "content-length"), ["5"], "{head}");
        assert_eq!(body, b"hello");
    }
    // The underscore spelling is not framing: dropped, the real Content-Length frames.
    let n = up.seen.lock().unwrap().len();
    let resp = raw(
        edge.port,
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (head, body) = up.last();
    assert!(!head.to_ascii_lowercase().contains("transfer"), "{head}");
    assert_eq!(header_lines(&head, "content-length"), ["5"]);
    assert_eq!(body, b"hello");
    // Refused before anything reaches the upstream.
    for (framing, status) in [
        ("Content-Length: 5, 6", "400"),
        ("Content-Length: 5\r\nContent-Length: 6", "400"),
        ("Transfer-Encoding: gzip, chunked", "501"),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            "501",
        ),
        ("Transfer-Encoding: chunked, chunked", "400"),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "400",
        ),
        ("Transfer-Encoding: chunked, gzip", "400"),
    ] {
        let resp = raw(
            edge.port,
            format!(
                "POST /public/a HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )
            .as_bytes(),
        );
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status}")),
            "{framing}: {resp}"
        );
    }
    assert_eq!(up.seen.lock().unwrap().len(), n + 1);
    // A single chunked coding passes.
    let resp = raw(
        edge.port,
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[test]
fn control_bytes_in_the_target_are_400() {
    let up = RawUpstream::start();
    let edge = Edge::start(&config(up.port, "", ""));
    for c in [b'\t', 0x0b, 0x0c, 0x1b, 0x7f] {
        let mut req = b"GET /adm".to_vec();
        req.push(c);
        req.extend_from_slice(b"in HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let resp = raw(edge.port, &req);
        assert!(resp.starts_with("HTTP/1.1 400"), "{c:#x}: {resp}");
        // The escaped forms too.
        let resp = raw(
            edge.port,
            format!("GET /adm%{c:02x}in HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(resp.starts_with("HTTP/1.1 400"), "%{c:02x}: {resp}");
    }
    assert!(up.seen.lock().unwrap().is_empty());
}

#[test]
fn path_strictness_defaults_and_options() {
    let up = RawUpstream::start();
    let edge = Edge::start(&config(up.port, "", ""));
    let get = |port: u16, path: &str| {
        raw(
            port,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    for path in [
        "/admin;x",
        "/admin;jsessionid=1",
        "/admin.",
        "/admin%2e",
        "/admin%20",
        "/pub/%c0%ae%c0%ae/admin",
        "/pub/%ff",
    ] {
        let resp = get(edge.port, path);
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
    }
    assert!(up.seen.lock().unwrap().is_empty());
    // Case-sensitive by default: /ADMIN is not the /admin route.
    let resp = get(edge.port, "/ADMIN");
    assert!(resp.ends_with("ok"), "{resp}");

    let up2 = RawUpstream::start();
    let edge2 = Edge::start(&config(
        up2.port,
        "",
        "path_strictness: { case_insensitive: true, allow_path_parameters: true, allow_trailing_dots: true }",
    ));
    for path in ["/ADMIN", "/%41DMIN", "/Admin/x"] {
        let resp = get(edge2.port, path);
        assert!(resp.starts_with("HTTP/1.1 200"), "{path}: {resp}");
        assert!(
            resp.contains(r#""method":"GET""#),
            "{path} not on /admin: {resp}"
        );
    }
    for path in ["/a;x", "/a.", "/a%20"] {
        let resp = get(edge2.port, path);
        assert!(resp.ends_with("ok"), "{path}: {resp}");
    }
    // Overlong escapes stay refused.
    let resp = get(edge2.port, "/pub/%c0%ae%c0%ae/admin");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[test]
fn idle_keepalive_connections_are_closed_and_the_edge_keeps_serving() {
    let up = RawUpstream::start();
    let edge = Edge::start(&config(up.port, ", keepalive_timeout: 2s", ""));
    let mut conns = Vec::new();
    for i in 0..500 {
        let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /builtin/k HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut s);
        assert!(resp.starts_with("HTTP/1.1 200"), "conn {i}: {resp}");
        conns.push(s);
    }
    let idle_since = Instant::now();
    // Serving normally while they idle.
    for _ in 0..20 {
        let r = client().get(edge.url("/builtin/during")).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    // Every idle connection is closed by the edge (EOF), after the timeout and within bounds.
    for (i, s) in conns.iter_mut().enumerate() {
        let mut b = [0u8; 16];
        let n = s.read(&mut b);
        assert!(matches!(n, Ok(0)), "conn {i}: {n:?}");
    }
    let took = idle_since.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    for _ in 0..20 {
        let r = client().get(edge.url("/builtin/after")).send().unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn a_connection_serves_at_most_max_requests() {
    let up = RawUpstream::start();
    let edge = Edge::start(&config(up.port, ", max_requests_per_connection: 3", ""));
    let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..3 {
        s.write_all(b"GET /builtin/m HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut s);
        assert!(resp.starts_with("HTTP/1.1 200"), "request {i}: {resp}");
    }
    let mut b = [0u8; 16];
    assert!(matches!(s.read(&mut b), Ok(0)), "open after 3 requests");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = RawUpstream::start();
    let edge = Edge::start(&config(up.port, "", ""));
    for n in [2usize, 3, 100] {
        let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        for i in 0..n {
            req.extend_from_slice(
                format!("GET /builtin/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            );
        }
        s.write_all(&req).unwrap();
        let mut buf = Vec::new();
        for i in 0..n {
            let resp = read_response_buffered(&mut s, &mut buf);
            assert!(
                resp.contains(&format!(r#""path":"/builtin/{i}""#)),
                "{n} pipelined, response {i}: {resp}"
            );
        }
    }
}

#[test]
fn a_slow_endpoint_body_gets_408_after_the_deadline() {
    let up = RawUpstream::start();
    let hash = authedge::auth::opaque::hash_password(
        b"pw",
        Some(argon2::Params::new(256, 1, 1, None).unwrap()),
    )
    .unwrap();
    let realm = format!(
        "opaque:\n  main:\n    allow_weak_hashes: true\n    keys: [ {{ id: k1, secret: {{ value: \"k1-secret-0123456789abcdef0123456789abcdef\" }} }} ]\n    users: [ {{ id: \"1\", username: bob, password_hash: '{hash}' }} ]\n"
    );
    let edge = Edge::start(&config(up.port, ", endpoint_body_timeout: 1s", &realm));
    let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let start = Instant::now();
    s.write_all(b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let resp = String::from_utf8_lossy(&out);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// Open `n` connections that each completed one request and now idle in keep-alive.
fn idle_connections(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /builtin/c HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let resp = read_response(&mut s);
            assert!(resp.starts_with("HTTP/1.1 200"), "conn {i}: {resp}");
            s
        })
        .collect()
}

/// One more connection past a cap: answered 503 and closed without a request being read.
fn assert_refused(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 503") && text.ends_with("too many connections\n"),
        "{text:?}"
    );
}

/// After some capped connections close, new ones are served again.
fn assert_served_again(port: u16) {
    wait_for(
        || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ =
                s.write_all(b"GET /builtin/again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            out.starts_with(b"HTTP/1.1 200")
        },
        "a connection served after others closed",
    );
}

#[test]
fn a_listener_holds_at_most_max_connections_and_recovers() {
    let up = RawUpstream::start();
    let yaml = config(up.port, "", "").replace(
        r#"listeners: [ { address: "127.0.0.1:{port}" } ]"#,
        r#"listeners: [ { address: "127.0.0.1:{port}", max_connections: 40 } ]"#,
    );
    let edge = Edge::start(&yaml);
    let mut conns = idle_connections(edge.port, 40);
    edge.wait_metric("authedge_downstream_connections", 40.0);
    assert_refused(edge.port);
    assert_refused(edge.port);
    let label = format!(
        "authedge_downstream_connections_refused_total{{listener=\"127.0.0.1:{}\"}}",
        edge.port
    );
    edge.wait_metric(&label, 2.0);
    // The admitted connections keep working while the listener is full.
    conns[0]
        .write_all(b"GET /builtin/still HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut conns[0]).starts_with("HTTP/1.1 200"));
    conns.truncate(30);
    assert_served_again(edge.port);
    wait_for(
        || edge.metric("authedge_downstream_connections") == 30.0,
        "30 connections open",
    );
}

#[test]
fn the_process_cap_covers_every_listener() {
    let up = RawUpstream::start();
    let edge = Edge::start(&config(up.port, ", max_connections: 25", ""));
    let conns = idle_connections(edge.port, 25);
    assert_refused(edge.port);
    edge.wait_metric(
        "authedge_downstream_connections_refused_total{listener=\"*\"}",
        1.0,
    );
    drop(conns);
    assert_served_again(edge.port);
}

#[test]
fn a_zero_connection_cap_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "server: { max_connections: 0 }\nlisteners: [ { address: \"127.0.0.1:1\", max_connections: 0 } ]\nupstreams: {}\nroutes: []\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("server.max_connections"), "{text}");
    assert!(text.contains("listeners[0].max_connections"), "{text}");
}
