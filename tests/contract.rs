//! The filter contract's capabilities end to end, through the real edge binary and a real HTTP
//! upstream, with the hidden `x-contract-probe` mode (src/auth/probe.rs) as the test filter:
//! redirect when unauthenticated, response headers on a proxied response, a bounded body read
//! that still reaches the upstream, a cookie stripped while the others pass, a per-host
//! endpoint, and a failed state operation giving 503.

mod common;

use common::{client, echo_json, EchoUpstream, Edge};

fn config(upstream: &str) -> String {
    format!(
        r#"
server: {{ threads: 2, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
log: {{ access: false }}
upstreams:
  real: {{ url: "{upstream}", connect_timeout: 1s, read_timeout: 2s }}
routes:
  - id: probe
    path: /app
    upstream: real
    auth:
      - {{ type: x-contract-probe, cookie: probe_session, max_body: 64, endpoint_host: probe.test }}
"#
    )
}

fn start() -> (EchoUpstream, Edge) {
    let up = EchoUpstream::start();
    let edge = Edge::start_with_env(&config(&up.url()), &[("AUTHEDGE_CONTRACT_PROBE", "1")]);
    (up, edge)
}

#[test]
fn unauthenticated_browser_is_redirected_and_api_client_gets_401() {
    let (_up, edge) = start();
    let r = client()
        .get(edge.url("/app/page?x=1"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/login?rd=%2Fapp%2Fpage");
    let r = client()
        .get(edge.url("/app/page"))
        .header("accept", "application/json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().unwrap(), "unauthorized\n");
}

#[test]
fn allow_adds_response_headers_to_the_proxied_response() {
    let (_up, edge) = start();
    let r = client()
        .get(edge.url("/app/x"))
        .header("x-probe", "allow")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["set-cookie"],
        "probe=refreshed; Path=/; HttpOnly"
    );
    let v = echo_json(r);
    assert_eq!(v["path"], "/app/x", "the upstream answered");
    assert_eq!(v["headers"]["x-auth-subject"], "probe-user");
}

#[test]
fn filter_reads_a_bounded_body_that_still_reaches_the_upstream() {
    let (_up, edge) = start();
    let r = client()
        .post(edge.url("/app/submit"))
        .header("x-probe", "body")
        .body("let me in")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = echo_json(r);
    assert_eq!(v["body"], "let me in");
    assert_eq!(v["headers"]["x-auth-subject"], "body-user");
    // The wrong body is refused; a body over the bound is 413 before the filter sees it.
    let r = client()
        .post(edge.url("/app/submit"))
        .header("x-probe", "body")
        .body("let me out")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .post(edge.url("/app/submit"))
        .header("x-probe", "body")
        .body(vec![b'a'; 65])
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.text().unwrap(), "payload too large\n");
}

#[test]
fn credential_cookie_is_stripped_and_other_cookies_reach_the_upstream() {
    let (_up, edge) = start();
    let r = client()
        .get(edge.url("/app/c"))
        .header("cookie", "theme=dark; probe_session=ok; lang=en")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = echo_json(r);
    assert_eq!(v["headers"]["cookie"], "theme=dark; lang=en");
    assert_eq!(v["headers"]["x-auth-subject"], "cookie-user");
    // Only the credential cookie: no Cookie header at all upstream.
    let v = echo_json(
        client()
            .get(edge.url("/app/c"))
            .header("cookie", "probe_session=ok")
            .send()
            .unwrap(),
    );
    assert!(v["headers"].get("cookie").is_none(), "{v}");
}

#[test]
fn endpoint_is_served_on_its_host_only() {
    let (_up, edge) = start();
    let r = client()
        .get(edge.url("/probe/hello"))
        .header("host", "Probe.Test:8080")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-probe-host"], "Probe.Test");
    assert_eq!(r.text().unwrap(), r#"{"hello":"probe"}"#);
    // Another host: no endpoint there, and no route either.
    let r = client()
        .get(edge.url("/probe/hello"))
        .header("host", "other.test")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().unwrap(), "not found\n");
}

#[test]
fn failed_state_operation_is_503_never_allow() {
    let (_up, edge) = start();
    let r = client()
        .get(edge.url("/app/s"))
        .header("x-probe", "state-down")
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().unwrap(), "service unavailable\n");
    edge.wait_metric(
        r#"authedge_requests_total{mode="x-contract-probe",outcome="deny",reason="state_unavailable",route="probe"}"#,
        1.0,
    );
}

/// The probe lets fixed inputs through, so a config that names it is refused unless the test-only
/// environment variable is set.
#[test]
fn the_probe_mode_is_refused_without_its_environment_variable() {
    let up = EchoUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, common::render(&config(&up.url()), 1, 2, dir.path())).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("AUTHEDGE_CONTRACT_PROBE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("x-contract-probe is a test-only mode"),
        "{text}"
    );
}
