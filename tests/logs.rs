//! Logs: JSON on request, one access line per request at info, and no credentials in them.

mod common;

use common::{client, wait_for, Edge};

#[test]
fn json_access_log_has_one_line_per_request_and_no_secrets() {
    let edge = Edge::start_with_env(
        r#"
server: { threads: 1, pid_file: "{dir}/pid", upgrade_sock: "{dir}/upgrade.sock" }
listeners: [ { address: "127.0.0.1:{port}" } ]
metrics: { address: "127.0.0.1:{metrics_port}" }
log: { format: json, access: true }
upstreams: { echo: { echo: true } }
routes:
  - { id: pub, path: /pub, upstream: echo, public: true }
"#,
        &[("RUST_LOG", "info")],
    );
    let c = client();
    let secret = "tok-SECRET-1234567890";
    c.get(edge.url(&format!("/pub/x?access_token={secret}")))
        .header("Authorization", format!("Bearer {secret}"))
        .header("Cookie", format!("session={secret}"))
        .send()
        .unwrap();
    c.get(edge.url("/missing")).send().unwrap();
    let access = |log: &str| {
        log.lines()
            .filter(|l| l.contains("authedge::access"))
            .count()
    };
    wait_for(|| access(&edge.stdout()) >= 2, "two access log lines");
    let log = edge.stdout();
    assert!(
        !log.contains(secret),
        "a credential reached the log:\n{log}"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains("authedge::access"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 2);
    let f = &lines[0]["fields"];
    assert_eq!(f["route"], "pub");
    assert_eq!(f["outcome"], "allow");
    assert_eq!(f["status"], 200);
    assert!(f["latency_us"].is_u64());
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[1]["fields"]["status"], 404);
}
