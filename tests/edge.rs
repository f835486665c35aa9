//! The foundation end to end: the built binary, a real HTTP upstream, real signals.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{client, echo_json, EchoUpstream, Edge};

fn config(upstream: &str, extra_routes: &str) -> String {
    format!(
        r#"
server: {{ threads: 2, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
log: {{ access: false }}
identity_headers: {{ strip: [X-Tenant] }}
upstreams:
  echo: {{ echo: true }}
  real: {{ url: "{upstream}", connect_timeout: 1s, read_timeout: 1s }}
routes:
  - {{ id: public, path: /public, upstream: real, public: true }}
  - {{ id: builtin, path: /builtin, upstream: echo, public: true }}
{extra_routes}
"#
    )
}

#[test]
fn public_route_reaches_a_real_upstream_with_forwarding_headers() {
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&up.url(), ""));
    let v = echo_json(
        client()
            .get(edge.url("/public/a/b?x=1&y=/private"))
            .send()
            .unwrap(),
    );
    assert_eq!(v["path"], "/public/a/b");
    assert_eq!(v["query"], "x=1&y=/private");
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");
    assert_eq!(v["headers"]["x-request-id"].as_str().unwrap().len(), 24);
    // The built-in echo upstream answers without any server behind it.
    let v = echo_json(client().get(edge.url("/builtin")).send().unwrap());
    assert_eq!(v["path"], "/builtin");
}

#[test]
fn unmatched_paths_and_prefix_boundaries_get_404() {
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&up.url(), ""));
    for path in ["/", "/private", "/publicx", "/publi", "/builtinfoo"] {
        let r = client().get(edge.url(path)).send().unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body = r.text().unwrap();
        assert_eq!(body, "not found\n");
    }
    edge.wait_metric(
        "authedge_requests_total{mode=\"none\",outcome=\"no_route\",reason=\"missing\",route=\"\"}",
        5.0,
    );
}

/// Send raw bytes and read until the server closes or `timeout` passes.
fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn path_tricks_are_canonicalised_or_refused() {
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&up.url(), ""));
    // Paths that resolve elsewhere are matched (and forwarded) by their canonical form.
    for (raw_path, status) in [
        ("/public/../private", "404"),
        ("//private", "404"),
        ("/%2e%2e/private", "404"),
        ("/public/%2e%2e/private", "404"),
        ("/private?x=/public", "404"),
        ("/private%2Fx", "400"),
        ("/public%2F..%2Fprivate", "400"),
        ("/public%5c..%5cprivate", "400"),
        ("/public%00", "400"),
        ("/public/..;/private", "400"),
        ("/public/.;/private", "400"),
    ] {
        let resp = raw(
            edge.port,
            format!("GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status}")),
            "{raw_path}: {resp}"
        );
        // The edge's own answer, not the upstream's (which would echo the path as JSON).
        let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let want = if status == "404" {
            "not found\n"
        } else {
            "bad request\n"
        };
        assert_eq!(body, want, "{raw_path}: {resp}");
    }
    // Odd Host headers never take a worker down.
    for host in ["[", "[:", "[::1", ":", "a:b:c", "\u{7f}"] {
        let resp = raw(
            edge.port,
            format!("GET /public HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        // Answered with a complete status line: served (no host on the route) or refused as a
        // bad request, never a server error or a dropped connection.
        let code = resp
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .unwrap_or("");
        assert!(matches!(code, "200" | "400"), "Host {host:?}: {resp}");
    }
    assert_eq!(
        client().get(edge.url("/public")).send().unwrap().status(),
        200
    );
    // The upstream receives the canonical path.
    let resp = raw(
        edge.port,
        b"GET //public/./a/../b%7e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""path":"/public/b~""#), "{resp}");
}

#[test]
fn the_upstream_gets_origin_form_targets_with_the_query_kept() {
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&up.url(), ""));
    for (target, path, query) in [
        ("http://x/public/abs?q=1", "/public/abs", "q=1"),
        (
            "//public/./a/../b?x=1&y=/private",
            "/public/b",
            "x=1&y=/private",
        ),
        ("/public/plain?k=v", "/public/plain", "k=v"),
    ] {
        let resp = raw(
            edge.port,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: Kept\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(resp.starts_with("HTTP/1.1 200"), "{target}: {resp}");
        let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["path"], path, "{target}");
        assert_eq!(v["query"], query, "{target}");
        // Header names are case-insensitive; the value arrives untouched.
        assert_eq!(v["headers"]["x-mixed-case"], "Kept", "{target}");
    }
}

#[test]
fn spoofed_identity_headers_never_reach_the_upstream() {
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&up.url(), ""));
    let resp = raw(
        edge.port,
        b"GET /public HTTP/1.1\r\nHost: x\r\nX-Auth-Subject: admin\r\nx_auth_subject: admin\r\nX-AUTH-SCOPES: all\r\n\
X-User: root\r\nx-forwarded-user: root\r\nX_Tenant: other\r\nX-Forwarded-For: 6.6.6.6\r\nX-Request-Id: forged\r\n\
X-Keep: yes\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let h = v["headers"].as_object().unwrap();
    for name in [
        "x-auth-subject",
        "x_auth_subject",
        "x-auth-scopes",
        "x-user",
        "x-forwarded-user",
        "x_tenant",
    ] {
        assert!(!h.contains_key(name), "{name} reached the upstream: {h:?}");
    }
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "client XFF must not be trusted"
    );
    assert_ne!(h["x-request-id"], "forged");
    assert_eq!(h["x-keep"], "yes");
}

#[test]
fn upstream_down_is_502_and_slow_upstream_is_504() {
    // A port with nothing listening.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    // An upstream that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let yaml = config(&dead, "  - { id: slow, path: /slow, upstream: slow, public: true }").replace(
        "routes:",
        &format!("  slow: {{ url: \"{silent_url}\", connect_timeout: 1s, read_timeout: 500ms }}\nroutes:"),
    );
    let edge = Edge::start(&yaml);
    let r = client().get(edge.url("/public")).send().unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().unwrap(), "bad gateway\n");
    let r = client().get(edge.url("/slow")).send().unwrap();
    assert_eq!(r.status(), 504);
    edge.wait_metric(
        "authedge_upstream_errors_total{kind=\"connect\",route=\"public\"}",
        1.0,
    );
    edge.wait_metric(
        "authedge_upstream_errors_total{kind=\"timeout\",route=\"slow\"}",
        1.0,
    );
}

#[test]
fn a_refused_request_with_a_body_leaves_nothing_behind() {
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&up.url(), ""));
    // The body of a request to an unknown route carries a second request; it must not be served.
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let req = format!(
        "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let resp = raw(edge.port, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert_eq!(resp.matches("HTTP/1.1").count(), 1, "{resp}");
    assert!(!resp.contains("smuggled"));
    // Chunked too.
    let req = format!(
        "POST /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        smuggled.len()
    );
    let resp = raw(edge.port, req.as_bytes());
    assert_eq!(resp.matches("HTTP/1.1").count(), 1, "{resp}");
}

#[test]
fn sighup_applies_a_good_config_and_keeps_the_old_one_on_errors() {
    let up = EchoUpstream::start();
    let mut edge = Edge::start(&config(&up.url(), ""));
    let c = client();
    assert_eq!(c.get(edge.url("/new")).send().unwrap().status(), 404);

    edge.reload(&config(
        &up.url(),
        "  - { id: new, path: /new, upstream: echo, public: true }",
    ));
    assert_eq!(c.get(edge.url("/new/x")).send().unwrap().status(), 200);
    assert_eq!(edge.metric("authedge_config_generation"), 2.0);

    // Broken: unknown upstream and a bad key. The old routes stay.
    edge.reload_expect_error(&config(
        &up.url(),
        "  - { id: bad, path: /bad, upstream: nope, public: true, colour: red }",
    ));
    edge.reload_expect_error(&config(
        &up.url(),
        "  - { id: bad, path: /bad, upstream: nope, public: true }",
    ));
    assert!(edge.is_running());
    assert_eq!(c.get(edge.url("/new/x")).send().unwrap().status(), 200);
    assert_eq!(c.get(edge.url("/bad")).send().unwrap().status(), 404);
    assert_eq!(edge.metric("authedge_config_generation"), 2.0);
    assert_eq!(
        edge.metric("authedge_config_reload_total{result=\"error\"}"),
        2.0
    );
    assert_eq!(
        edge.metric("authedge_config_reload_total{result=\"success\"}"),
        1.0
    );
}

#[test]
fn reloads_under_load_fail_no_request() {
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&up.url(), ""));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let url = edge.url("/public/load");
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let c = client();
            let (mut ok, mut bad) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.get(&url).send() {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => bad += 1,
                }
            }
            (ok, bad)
        }));
    }
    for i in 0..10 {
        let extra = format!("  - {{ id: r{i}, path: /r{i}, upstream: echo, public: true }}");
        edge.reload(&config(&up.url(), &extra));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut bad) = (0, 0);
    for w in workers {
        let (o, b) = w.join().unwrap();
        ok += o;
        bad += b;
    }
    assert!(ok > 0);
    assert_eq!(bad, 0, "{bad} requests failed during reloads ({ok} ok)");
    assert_eq!(edge.metric("authedge_config_generation"), 11.0);
}

#[test]
fn metrics_side_port_serves_health_and_readiness() {
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&up.url(), ""));
    let c = client();
    let base = format!("http://127.0.0.1:{}", edge.metrics_port);
    assert_eq!(
        c.get(format!("{base}/healthz")).send().unwrap().status(),
        200
    );
    assert_eq!(
        c.get(format!("{base}/readyz")).send().unwrap().status(),
        200
    );
    assert_eq!(c.get(format!("{base}/nope")).send().unwrap().status(), 404);
    c.get(edge.url("/public")).send().unwrap();
    edge.wait_metric(
        "authedge_request_duration_seconds_count{route=\"public\"}",
        1.0,
    );
    let m = edge.metrics();
    for name in [
        "authedge_requests_total{mode=\"public\",outcome=\"allow\",reason=\"\",route=\"public\"} 1",
        "authedge_request_duration_seconds_count{route=\"public\"} 1",
        "authedge_config_generation 1",
        "authedge_config_reload_total{result=\"error\"} 0",
    ] {
        assert!(m.contains(name), "missing {name} in\n{m}");
    }
}

/// Issue 17: `kill -HUP $(cat PID_FILE)` reloads this instance and no other: the edge writes its
/// own pid to `server.pid_file` at start (Pingora writes it only when daemonizing).
#[test]
fn pid_file_names_this_instance_and_a_hangup_through_it_reloads() {
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&up.url(), ""));
    edge.wait_ready();
    let pid_file = edge.dir.path().join("pid");
    let text = std::fs::read_to_string(&pid_file).expect("pid file written at start");
    let pid: i32 = text.trim().parse().expect("pid file holds a number");
    assert_eq!(pid, edge.pid(), "the pid file names the edge process");
    let before = edge.metric("authedge_config_generation");
    edge.write_config(&config(
        &up.url(),
        "  - { id: added, path: /added, upstream: echo, public: true }",
    ));
    let status = std::process::Command::new("kill")
        .args(["-HUP", text.trim()])
        .status()
        .expect("kill");
    assert!(status.success());
    common::wait_for(
        || edge.metric("authedge_config_generation") > before,
        "the reload through the pid file",
    );
    assert_eq!(
        client().get(edge.url("/added/x")).send().unwrap().status(),
        200
    );
}

#[test]
fn an_idle_pooled_upstream_connection_is_closed_after_idle_timeout() {
    // A keep-alive upstream that records how long the edge keeps its one connection open after
    // the response.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "the edge closed before sending its request");
            got.extend_from_slice(&buf[..n]);
        }
        c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        let answered = std::time::Instant::now();
        // The next read ends when the edge closes the pooled connection (0 bytes) or after 10 s.
        let closed = matches!(c.read(&mut buf), Ok(0));
        tx.send((closed, answered.elapsed())).unwrap();
    });
    let yaml = config(&url, "").replace(
        "connect_timeout: 1s, read_timeout: 1s",
        "connect_timeout: 1s, read_timeout: 1s, idle_timeout: 1s",
    );
    let edge = Edge::start(&yaml);
    let r = client().get(edge.url("/public")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "ok");
    let (closed, after) = rx.recv_timeout(Duration::from_secs(15)).unwrap();
    assert!(
        closed,
        "the pooled connection was still open after {after:?}"
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "{after:?}"
    );
}
