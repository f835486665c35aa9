//! Shared state end to end: two authedge binaries sharing one real `redis-server` (and a real
//! three-node Redis Cluster) act as one: a revocation at A is refused at B within 1 s, a user's
//! rate limit and the `/auth` brute-force limit are one budget across both, Redis stopped under
//! traffic gives 503 on routes that need it (public routes unaffected, never an allow), and
//! Redis started again works without restarting authedge. redis-server must be installed
//! (scripts/test.sh installs it): these tests fail, never skip, without it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::redis::Redis;
use common::{client, free_port, wait_for, EchoUpstream, Edge};
use serde_json::Value;

const K1: &str = "k1-secret-0123456789abcdef0123456789abcdef";

/// Three masters, no replicas, every slot covered.
fn cluster() -> Vec<Redis> {
    let nodes: Vec<Redis> = (0..3).map(|_| Redis::start(free_port(), true)).collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for n in &nodes {
        wait_for(
            || n.cli(&["cluster", "info"]).contains("cluster_state:ok"),
            "cluster_state:ok",
        );
    }
    nodes
}

fn cheap(pw: &str) -> String {
    let params = argon2::Params::new(256, 1, 1, None).unwrap();
    authedge::auth::opaque::hash_password(pw.as_bytes(), Some(params)).unwrap()
}

/// One config for both instances: the same realm and keys, state in Redis.
fn config(up: u16, state: &str, realm_extra: &str) -> String {
    format!(
        "server: {{ threads: 2, pid_file: \"{{dir}}/pid\", upgrade_sock: \"{{dir}}/upgrade.sock\" }}\n\
         listeners: [ {{ address: \"127.0.0.1:{{port}}\" }} ]\n\
         metrics: {{ address: \"127.0.0.1:{{metrics_port}}\" }}\n\
         log: {{ access: false }}\n\
         state:\n  redis:\n{state}\
         upstreams:\n  real: {{ url: \"http://127.0.0.1:{up}\" }}\n\
         opaque:\n  main:\n    allow_weak_hashes: true\n\
         \x20   keys: [ {{ id: k1, secret: {{ value: \"{K1}\" }} }} ]\n\
         \x20   users:\n      - {{ id: u1, username: alice, password_hash: '{}' }}\n\
         {realm_extra}\
         routes:\n\
         \x20 - {{ id: any, path: /any, upstream: real, auth: [ {{ type: opaque, realm: main }} ] }}\n\
         \x20 - {{ id: open, path: /open, upstream: real, public: true }}\n",
        cheap("alice-pw")
    )
}

fn single(port: u16) -> String {
    format!("    url: redis://127.0.0.1:{port}/0\n    key_prefix: \"t:\"\n    timeout: 200ms\n")
}

fn clustered(nodes: &[Redis]) -> String {
    let list: Vec<String> = nodes
        .iter()
        .map(|n| format!("redis://127.0.0.1:{}", n.port))
        .collect();
    format!(
        "    cluster: [{}]\n    key_prefix: \"c:\"\n    timeout: 500ms\n",
        list.join(", ")
    )
}

const GENEROUS: &str = "    auth_rate_limit:\n      per_username: { requests_per_second: 1000, burst: 1000 }\n      per_client: { requests_per_second: 1000, burst: 1000 }\n";

fn pair(yaml: &str) -> (Edge, Edge) {
    let a = Edge::start(yaml);
    let b = Edge::start(yaml);
    a.wait_ready();
    b.wait_ready();
    (a, b)
}

fn login(edge: &Edge) -> String {
    let r = client()
        .post(edge.url("/auth"))
        .json(&serde_json::json!({"username": "alice", "password": "alice-pw"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn get(edge: &Edge, path: &str, token: &str) -> u16 {
    client()
        .get(edge.url(path))
        .bearer_auth(token)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn revoked_at_a_refused_at_b(a: &Edge, b: &Edge) {
    let token = login(a);
    assert_eq!(get(a, "/any", &token), 200);
    assert_eq!(get(b, "/any", &token), 200);
    let r = client()
        .post(a.url("/auth/revoke"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let t0 = Instant::now();
    while get(b, "/any", &token) != 401 {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "B still accepts the token after 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(get(a, "/any", &token), 401);
    // A fresh token of the same user still works at both.
    let fresh = login(b);
    assert_eq!(get(a, "/any", &fresh), 200);
}

fn limit_split_over_both(a: &Edge, b: &Edge) {
    let token = login(a);
    let codes: Vec<u16> = (0..10)
        .map(|i| get(if i % 2 == 0 { a } else { b }, "/any", &token))
        .collect();
    let ok = codes.iter().filter(|c| **c == 200).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert_eq!((ok, limited), (4, 6), "{codes:?}");
}

const USER_LIMIT: &str = "    rate_limit: { requests_per_second: 0.01, burst: 4 }\n";

#[test]
fn revocation_at_a_is_refused_at_b_within_one_second() {
    let redis = Redis::start(free_port(), false);
    let up = EchoUpstream::start();
    let (a, b) = pair(&config(up.port, &single(redis.port), GENEROUS));
    revoked_at_a_refused_at_b(&a, &b);
    // The steady state needs no round trip: the check was answered by the local copy.
    assert!(b.metrics().contains("authedge_state_seconds"));
}

#[test]
fn user_rate_limit_is_one_budget_across_instances() {
    let redis = Redis::start(free_port(), false);
    let up = EchoUpstream::start();
    let extra = format!("{GENEROUS}{USER_LIMIT}");
    let (a, b) = pair(&config(up.port, &single(redis.port), &extra));
    limit_split_over_both(&a, &b);
}

#[test]
fn auth_brute_force_limit_holds_across_instances() {
    let redis = Redis::start(free_port(), false);
    let up = EchoUpstream::start();
    let extra = "    auth_rate_limit:\n      per_username: { requests_per_second: 0.001, burst: 3 }\n      per_client: { requests_per_second: 1000, burst: 1000 }\n";
    let (a, b) = pair(&config(up.port, &single(redis.port), extra));
    let codes: Vec<u16> = (0..8)
        .map(|i| {
            let e = if i % 2 == 0 { &a } else { &b };
            client()
                .post(e.url("/auth"))
                .json(&serde_json::json!({"username": "alice", "password": "wrong"}))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(&codes[..3], &[401, 401, 401], "{codes:?}");
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");
}

#[test]
fn redis_down_fails_closed_and_recovers_without_restart() {
    let port = free_port();
    let mut redis = Redis::start(port, false);
    let up = EchoUpstream::start();
    let extra = format!("{GENEROUS}{USER_LIMIT}").replace("burst: 4", "burst: 100000");
    let (a, b) = pair(&config(up.port, &single(port), &extra));
    let token = login(&a);
    assert_eq!(get(&b, "/any", &token), 200);

    redis.stop();
    // Every request that needs the shared state is refused, never allowed.
    for i in 0..20 {
        let e = if i % 2 == 0 { &a } else { &b };
        assert_eq!(get(e, "/any", &token), 503, "request {i} with Redis down");
        assert_eq!(get(e, "/open", ""), 200, "public route with Redis down");
    }
    let r = client()
        .post(a.url("/auth"))
        .json(&serde_json::json!({"username": "alice", "password": "alice-pw"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    let ready = |e: &Edge| {
        client()
            .get(format!("http://127.0.0.1:{}/readyz", e.metrics_port))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_for(|| ready(&a) == 503, "/readyz false with Redis down");
    assert!(a.metric("authedge_state_errors_total{op=\"rate_limit\"}") >= 1.0);

    let _redis = Redis::start(port, false);
    wait_for(|| get(&a, "/any", &token) == 200, "A recovers");
    wait_for(|| get(&b, "/any", &token) == 200, "B recovers");
    a.wait_ready();
    // Once one request gets through, every worker thread does: none keeps a connection that
    // lost Redis (each request comes on a new connection, so both threads serve some).
    for i in 0..20 {
        let e = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            get(e, "/any", &token),
            200,
            "request {i} after Redis is back"
        );
    }
    // Revocations flow again after the restart.
    revoked_at_a_refused_at_b(&a, &b);
}

#[test]
fn revocation_only_route_fails_closed_when_redis_is_down() {
    let port = free_port();
    let mut redis = Redis::start(port, false);
    let up = EchoUpstream::start();
    let (a, _b) = pair(&config(up.port, &single(port), GENEROUS));
    let token = login(&a);
    assert_eq!(get(&a, "/any", &token), 200);
    redis.stop();
    // The local copy stops being trusted when the subscription drops; then checks need Redis.
    wait_for(
        || get(&a, "/any", &token) == 503,
        "503 once the mirror is stale",
    );
    for _ in 0..10 {
        assert_eq!(get(&a, "/any", &token), 503);
    }
}

#[test]
fn on_state_error_allow_lets_rate_limits_through() {
    let port = free_port();
    let mut redis = Redis::start(port, false);
    let up = EchoUpstream::start();
    let extra = format!("{GENEROUS}{USER_LIMIT}    on_state_error: allow\n");
    let edge = Edge::start(&config(up.port, &single(port), &extra));
    edge.wait_ready();
    let token = login(&edge);
    assert_eq!(get(&edge, "/any", &token), 200);
    redis.stop();
    // Revocations still fail closed: the limit is allowed, the revocation check is not.
    wait_for(
        || get(&edge, "/any", &token) == 503,
        "503 from the revocation check",
    );
}

#[test]
fn redis_cluster_shares_revocations_and_limits() {
    let nodes = cluster();
    let up = EchoUpstream::start();
    let extra = format!("{GENEROUS}{USER_LIMIT}");
    let (a, b) = pair(&config(up.port, &clustered(&nodes), &extra));
    limit_split_over_both(&a, &b);
    // A fresh user budget would be needed for the revocation check: use a second pair of
    // instances with a generous limit on the same cluster.
    let (c, d) = pair(&config(up.port, &clustered(&nodes), GENEROUS));
    revoked_at_a_refused_at_b(&c, &d);
}

#[test]
fn check_validates_the_state_block() {
    let up = 1;
    let bad = [
        (
            "    url: http://127.0.0.1:1\n",
            "state.redis.url: scheme \"http\" is not redis://",
        ),
        (
            "    url: redis://127.0.0.1:1\n    cluster: [redis://127.0.0.1:2]\n",
            "state.redis: give exactly one of url or cluster",
        ),
        (
            "    timeout: 50ms\n",
            "state.redis: give exactly one of url or cluster",
        ),
        (
            "    cluster: [redis://127.0.0.1:2, \"not a url\"]\n",
            "state.redis.cluster[1]:",
        ),
        (
            "    url: redis://127.0.0.1:1\n    timeout: 0s\n",
            "state.redis.timeout: must be between 1ms and 60s",
        ),
        (
            "    url: redis://127.0.0.1:1\n    pasword: x\n",
            "state.redis.pasword: unknown field `pasword`",
        ),
    ];
    for (state, want) in bad {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let yaml = common::render(&config(up, state, ""), 1, 2, dir.path());
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(common::bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{state}: accepted");
        assert!(text.contains(want), "{state}: wanted {want:?} in {text}");
    }
    // A valid block passes without Redis running (check connects to nothing).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let yaml = common::render(&config(up, &single(free_port()), ""), 1, 2, dir.path());
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Ids of Redis' clients other than the redis-cli asking.
fn client_ids(r: &Redis) -> Vec<String> {
    let mut ids: Vec<String> = r
        .cli(&["client", "list"])
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

#[test]
fn reload_keeps_the_connection_when_the_state_block_is_unchanged() {
    let redis = Redis::start(free_port(), false);
    let up = EchoUpstream::start();
    let yaml = config(up.port, &single(redis.port), GENEROUS);
    let edge = Edge::start(&yaml);
    edge.wait_ready();
    let token = login(&edge);
    wait_for(
        || client_ids(&redis).len() >= 2,
        "command and subscription connections",
    );
    let before = client_ids(&redis);
    edge.reload(&yaml.replace("id: open", "id: open2"));
    assert_eq!(
        client_ids(&redis),
        before,
        "an unchanged state block keeps its connections"
    );
    assert_eq!(get(&edge, "/any", &token), 200);
    // A changed block connects anew (and the old store's connections go away).
    edge.reload(&yaml.replace("timeout: 200ms", "timeout: 300ms"));
    wait_for(
        || {
            let now = client_ids(&redis);
            now.len() >= 2 && now.iter().all(|id| !before.contains(id))
        },
        "new connections only",
    );
    edge.wait_ready();
    assert_eq!(get(&edge, "/any", &token), 200);
}

#[test]
fn rediss_with_the_configured_ca_is_shared_and_a_wrong_ca_fails_closed() {
    let redis = Redis::start_tls(free_port());
    let ca = redis.ca.clone().expect("TLS server has a CA");
    let up = EchoUpstream::start();
    let tls = |ca: &std::path::Path| {
        format!(
            "    url: rediss://127.0.0.1:{}/0\n    key_prefix: \"s:\"\n    timeout: 500ms\n    ca_file: \"{}\"\n",
            redis.port,
            ca.display()
        )
    };
    let extra = format!("{GENEROUS}{USER_LIMIT}");
    let (a, b) = pair(&config(up.port, &tls(&ca), &extra));
    // Over TLS: one rate-limit budget across both instances.
    limit_split_over_both(&a, &b);
    assert!(
        redis.cli(&["dbsize"]).parse::<u32>().unwrap_or(0) > 0,
        "keys written over TLS"
    );

    // A CA that did not sign the server's certificate: the connection is refused, so routes
    // that need the state answer 503 and the instance never becomes ready; public routes work.
    let other = tempfile::tempdir().unwrap();
    let (wrong, _, _) = common::redis::tls_files(other.path(), "other");
    let c = Edge::start(&config(up.port, &tls(&wrong), GENEROUS));
    let token = login(&a);
    wait_for(|| get(&c, "/open", "") == 200, "public route without Redis");
    for _ in 0..5 {
        assert_eq!(get(&c, "/any", &token), 503);
    }
    let ready = client()
        .get(format!("http://127.0.0.1:{}/readyz", c.metrics_port))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(ready, 503, "/readyz with an untrusted Redis certificate");

    // `#insecure` (skip verification) is refused by check.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("insecure.yaml");
    let yaml = config(up.port, &tls(&ca), GENEROUS).replace("/0\n", "/0#insecure\n");
    std::fs::write(&f, common::render(&yaml, 1, 2, dir.path())).unwrap();
    let out = Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    // check prints the problems on stdout.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && said.contains("state.redis.url") && said.contains("#insecure"),
        "{:?} {said}",
        out.status
    );
}
