//! The `opaque` mode end to end: the built edge binary, a real HTTP upstream, real reloads.
//! Login at `/auth`, bearer tokens on routes, per-user and `/auth` rate limits, revocation,
//! key rotation, users reordered or deleted across reloads, `hash-password` and `check`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{client, echo_json, EchoUpstream, Edge};
use serde_json::Value;

const K1: &str = "k1-secret-0123456789abcdef0123456789abcdef";
const K2: &str = "k2-secret-0123456789abcdef0123456789abcdef";

fn cheap(pw: &str) -> String {
    let params = argon2::Params::new(256, 1, 1, None).unwrap();
    authedge::auth::opaque::hash_password(pw.as_bytes(), Some(params)).unwrap()
}

/// Users as inline YAML list items, in the given order.
fn users(list: &[(&str, &str, &str, &str)]) -> String {
    list.iter()
        .map(|(id, name, pw, roles)| {
            format!(
                "      - {{ id: {id}, username: {name}, password_hash: '{}', roles: [{roles}] }}\n",
                cheap(pw)
            )
        })
        .collect()
}

struct Cfg<'a> {
    up: u16,
    users: String,
    keys: &'a [(&'a str, &'a str)],
    realm_extra: &'a str,
}

fn render(c: &Cfg<'_>) -> String {
    let keys: String = c
        .keys
        .iter()
        .map(|(id, s)| format!("      - {{ id: {id}, secret: {{ value: \"{s}\" }} }}\n"))
        .collect();
    let mut y = String::new();
    y.push_str(
        "server: { threads: 2, pid_file: \"{dir}/pid\", upgrade_sock: \"{dir}/upgrade.sock\" }\n",
    );
    y.push_str("listeners: [ { address: \"127.0.0.1:{port}\" } ]\n");
    y.push_str("metrics: { address: \"127.0.0.1:{metrics_port}\" }\n");
    y.push_str("log: { access: false }\n");
    y.push_str(&format!(
        "upstreams:\n  real: {{ url: \"http://127.0.0.1:{}\" }}\n",
        c.up
    ));
    y.push_str("opaque:\n  main:\n    allow_weak_hashes: true\n    keys:\n");
    y.push_str(&keys);
    y.push_str("    users:\n");
    y.push_str(&c.users);
    y.push_str(c.realm_extra);
    y.push_str(
        "routes:\n\
         \x20 - { id: any, path: /any, upstream: real, auth: [ { type: opaque, realm: main } ] }\n\
         \x20 - { id: admins, path: /admins, upstream: real, auth: [ { type: opaque, realm: main, roles: [admin] } ] }\n\
         \x20 - { id: bob, path: /bob, upstream: real, auth: [ { type: opaque, realm: main, users: [bob] } ] }\n",
    );
    y
}

const GENEROUS: &str = "    auth_rate_limit:\n      per_username: { requests_per_second: 1000, burst: 1000 }\n      per_client: { requests_per_second: 1000, burst: 1000 }\n";

fn two_users() -> String {
    users(&[
        ("u1", "alice", "alice-pw", "admin"),
        ("u2", "bob", "bob-pw", ""),
    ])
}

fn start(up: &EchoUpstream, realm_extra: &str) -> Edge {
    Edge::start(&render(&Cfg {
        up: up.port,
        users: two_users(),
        keys: &[("k1", K1)],
        realm_extra,
    }))
}

fn login_raw(edge: &Edge, body: &str, extra: &[(&str, &str)]) -> reqwest::blocking::Response {
    let mut rb = client()
        .post(edge.url("/auth"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    rb.send().unwrap()
}

fn login(edge: &Edge, user: &str, pw: &str) -> String {
    let r = login_raw(
        edge,
        &serde_json::json!({ "username": user, "password": pw }).to_string(),
        &[],
    );
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn get(edge: &Edge, path: &str, token: &str) -> reqwest::blocking::Response {
    client()
        .get(edge.url(path))
        .bearer_auth(token)
        .send()
        .unwrap()
}

fn www_auth(r: &reqwest::blocking::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn login_then_allowed_route_upstream_sees_user_not_token() {
    let up = EchoUpstream::start();
    let edge = start(&up, GENEROUS);
    let r = login_raw(&edge, r#"{"username":"alice","password":"alice-pw"}"#, &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert!(chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).is_ok());
    let token = v["token"].as_str().unwrap();

    let resp = client()
        .get(edge.url("/admins/x"))
        .bearer_auth(token)
        .header("X-User", "mallory")
        .send()
        .unwrap();
    let echo = echo_json(resp);
    assert_eq!(echo["headers"]["x-user"], "alice");
    assert_eq!(echo["headers"]["x-user-roles"], "admin");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    // Form login works too.
    let r = client()
        .post(edge.url("/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=bob&password=bob-pw")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // No token: 401 with the realm's challenge.
    let r = client().get(edge.url("/any")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(www_auth(&r), "Bearer realm=\"main\"");
}

#[test]
fn user_not_allowed_on_route_is_403() {
    let up = EchoUpstream::start();
    let edge = start(&up, GENEROUS);
    let alice = login(&edge, "alice", "alice-pw");
    let bob = login(&edge, "bob", "bob-pw");
    assert_eq!(get(&edge, "/bob", &alice).status(), 403);
    assert_eq!(get(&edge, "/admins", &bob).status(), 403);
    assert_eq!(
        echo_json(get(&edge, "/bob", &bob))["headers"]["x-user"],
        "bob"
    );
}

#[test]
fn wrong_password_and_unknown_user_both_401_with_the_same_body() {
    let up = EchoUpstream::start();
    let edge = start(&up, GENEROUS);
    let a = login_raw(&edge, r#"{"username":"alice","password":"wrong"}"#, &[]);
    let b = login_raw(&edge, r#"{"username":"nobody","password":"wrong"}"#, &[]);
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (401, 401));
    assert_eq!(a.text().unwrap(), b.text().unwrap());
    let series = "authedge_opaque_logins_total{realm=\"main\",result=\"bad_credentials\"}";
    assert_eq!(edge.metric(series), 2.0);
    // Malformed, wrong method, oversized.
    assert_eq!(login_raw(&edge, "{\"username\":", &[]).status(), 400);
    assert_eq!(
        login_raw(&edge, r#"{"username":"alice"}"#, &[]).status(),
        400
    );
    assert_eq!(
        client().get(edge.url("/auth")).send().unwrap().status(),
        405
    );
    let big = format!(
        "{{\"username\":\"alice\",\"password\":\"{}\"}}",
        "x".repeat(20_000)
    );
    assert_eq!(login_raw(&edge, &big, &[]).status(), 413);
    // Garbage and tampered tokens: 401 invalid_token.
    let t = login(&edge, "alice", "alice-pw");
    let mut chars: Vec<char> = t.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    for bad in [tampered.as_str(), "garbage", &t[..t.len() - 5]] {
        let r = get(&edge, "/any", bad);
        assert_eq!(r.status(), 401);
        assert!(
            www_auth(&r).contains("error=\"invalid_token\""),
            "{}",
            www_auth(&r)
        );
    }
}

#[test]
fn per_user_limit_holds_across_many_tokens() {
    let up = EchoUpstream::start();
    let extra = format!("{GENEROUS}    rate_limit: {{ requests_per_second: 0.01, burst: 5 }}\n");
    let edge = start(&up, &extra);
    let tokens: Vec<String> = (0..10).map(|_| login(&edge, "alice", "alice-pw")).collect();
    let statuses: Vec<u16> = tokens
        .iter()
        .map(|t| get(&edge, "/any", t).status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    let r = get(&edge, "/any", &tokens[9]);
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // Another user has their own budget.
    let bob = login(&edge, "bob", "bob-pw");
    assert_eq!(get(&edge, "/any", &bob).status(), 200);
}

#[test]
fn auth_limit_trips_on_repeated_bad_logins() {
    let up = EchoUpstream::start();
    let extra = "    auth_rate_limit:\n      per_username: { requests_per_second: 0.001, burst: 3 }\n      per_client: { requests_per_second: 1000, burst: 1000 }\n";
    let edge = start(&up, extra);
    for _ in 0..3 {
        assert_eq!(
            login_raw(&edge, r#"{"username":"alice","password":"guess"}"#, &[]).status(),
            401
        );
    }
    let r = login_raw(&edge, r#"{"username":"alice","password":"alice-pw"}"#, &[]);
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Other usernames are not affected.
    assert_eq!(
        login_raw(&edge, r#"{"username":"bob","password":"bob-pw"}"#, &[]).status(),
        200
    );
}

#[test]
fn forged_x_forwarded_for_does_not_escape_the_client_limit() {
    let up = EchoUpstream::start();
    let extra = "    auth_rate_limit:\n      per_username: { requests_per_second: 1000, burst: 1000 }\n      per_client: { requests_per_second: 0.001, burst: 4 }\n";
    let edge = start(&up, extra);
    for i in 0..4 {
        let body = format!(r#"{{"username":"user{i}","password":"guess"}}"#);
        let xff = format!("203.0.113.{i}");
        let r = login_raw(
            &edge,
            &body,
            &[("x-forwarded-for", &xff), ("x-real-ip", &xff)],
        );
        assert_eq!(r.status(), 401);
    }
    // No trusted proxies: every forged address is the same client, 127.0.0.1.
    let r = login_raw(
        &edge,
        r#"{"username":"user9","password":"guess"}"#,
        &[("x-forwarded-for", "198.51.100.77")],
    );
    assert_eq!(r.status(), 429);
}

#[test]
fn revoke_works_and_survives_reload() {
    let up = EchoUpstream::start();
    let extra = format!("{GENEROUS}    admin_secret: {{ value: \"admin-secret-0123456789\" }}\n");
    let cfg = render(&Cfg {
        up: up.port,
        users: two_users(),
        keys: &[("k1", K1)],
        realm_extra: &extra,
    });
    let edge = Edge::start(&cfg);
    let t1 = login(&edge, "alice", "alice-pw");
    let t2 = login(&edge, "alice", "alice-pw");
    let r = client()
        .post(edge.url("/auth/revoke"))
        .bearer_auth(&t1)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = get(&edge, "/any", &t1);
    assert_eq!(r.status(), 401);
    assert!(www_auth(&r).contains("invalid_token"));
    assert_eq!(get(&edge, "/any", &t2).status(), 200);

    // Admin: no or wrong secret refused; then every token of bob.
    let b1 = login(&edge, "bob", "bob-pw");
    let admin = edge.url("/auth/admin/revoke");
    let body = r#"{"user":"bob"}"#;
    assert_eq!(
        client().post(&admin).body(body).send().unwrap().status(),
        401
    );
    let r = client()
        .post(&admin)
        .header("x-admin-secret", "")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(&admin)
        .header("x-admin-secret", "nope")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(get(&edge, "/any", &b1).status(), 200);
    let r = client()
        .post(&admin)
        .header("x-admin-secret", "admin-secret-0123456789")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(&edge, "/any", &b1).status(), 401);
    // A token issued after the revocation works.
    let b2 = login(&edge, "bob", "bob-pw");
    assert_eq!(get(&edge, "/any", &b2).status(), 200);

    // Reload (same realm): revocations are kept.
    edge.reload(&cfg.replace("/any", "/any2"));
    assert_eq!(get(&edge, "/any2", &t1).status(), 401);
    assert_eq!(get(&edge, "/any2", &b1).status(), 401);
    assert_eq!(get(&edge, "/any2", &t2).status(), 200);
}

#[test]
fn rotated_out_key_opens_while_listed_and_fails_after_removal() {
    let up = EchoUpstream::start();
    let u = two_users();
    let cfg = |keys: &[(&str, &str)]| {
        render(&Cfg {
            up: up.port,
            users: u.clone(),
            keys,
            realm_extra: GENEROUS,
        })
    };
    let edge = Edge::start(&cfg(&[("k1", K1)]));
    let old = login(&edge, "alice", "alice-pw");
    edge.reload(&cfg(&[("k2", K2), ("k1", K1)]));
    assert_eq!(get(&edge, "/any", &old).status(), 200);
    let new = login(&edge, "alice", "alice-pw");
    assert_eq!(get(&edge, "/any", &new).status(), 200);
    edge.reload(&cfg(&[("k2", K2)]));
    let r = get(&edge, "/any", &old);
    assert_eq!(r.status(), 401);
    assert!(www_auth(&r).contains("invalid_token"));
    assert_eq!(get(&edge, "/any", &new).status(), 200);
    // A short key is refused with its path, and the old config keeps serving.
    edge.reload_expect_error(&cfg(&[("k3", "too-short")]));
    assert_eq!(get(&edge, "/any", &new).status(), 200);
}

#[test]
fn reordering_users_and_reloading_keeps_every_tokens_user() {
    let up = EchoUpstream::start();
    let cfg = |users: String| {
        render(&Cfg {
            up: up.port,
            users,
            keys: &[("k1", K1)],
            realm_extra: GENEROUS,
        })
    };
    let edge = Edge::start(&cfg(two_users()));
    let ta = login(&edge, "alice", "alice-pw");
    let tb = login(&edge, "bob", "bob-pw");
    edge.reload(&cfg(users(&[
        ("u3", "carol", "carol-pw", ""),
        ("u2", "bob", "bob-pw", ""),
        ("u1", "alice", "new-pw", "admin"),
    ])));
    assert_eq!(
        echo_json(get(&edge, "/any", &ta))["headers"]["x-user"],
        "alice"
    );
    assert_eq!(
        echo_json(get(&edge, "/any", &tb))["headers"]["x-user"],
        "bob"
    );
    // Deleting a user stops their tokens at the reload.
    edge.reload(&cfg(users(&[("u1", "alice", "alice-pw", "admin")])));
    assert_eq!(get(&edge, "/any", &tb).status(), 401);
    assert_eq!(
        echo_json(get(&edge, "/any", &ta))["headers"]["x-user"],
        "alice"
    );
}

#[test]
fn users_file_with_plaintext_is_rewritten_with_hashes() {
    let up = EchoUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.yaml");
    std::fs::write(
        &file,
        "# ops team\nusers:\n  - id: u9\n    username: dana\n    password: dana-pw # initial\n",
    )
    .unwrap();
    let extra = format!("{GENEROUS}    users_file: \"{}\"\n    allow_plaintext: true\n    rewrite_plaintext: true\n", file.display());
    let cfg = render(&Cfg {
        up: up.port,
        users: two_users(),
        keys: &[("k1", K1)],
        realm_extra: &extra,
    });
    // `check` runs the same load path but never rewrites files.
    let checked = dir.path().join("config.yaml");
    std::fs::write(&checked, common::render(&cfg, 1, 2, dir.path())).unwrap();
    let out = Command::new(common::bin())
        .arg("check")
        .arg("--config")
        .arg(&checked)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("password: dana-pw # initial"));

    let edge = Edge::start(&cfg);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# ops team\n"), "{text}");
    assert!(
        text.contains("password_hash: '$argon2id$") && !text.contains("dana-pw"),
        "{text}"
    );
    let t = login(&edge, "dana", "dana-pw");
    assert_eq!(
        echo_json(get(&edge, "/any", &t))["headers"]["x-user"],
        "dana"
    );
}

#[test]
fn hash_password_command_and_check_problems() {
    let mut child = Command::new(common::bin())
        .args(["hash-password", "--m-cost", "256", "--t-cost", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
    assert!(authedge::auth::opaque::users::verify_password(
        &phc, b"s3cret"
    ));

    let dir = tempfile::tempdir().unwrap();
    let cfg = common::render(
        &render(&Cfg {
            up: 1,
            users: "      - { id: u1, username: eve, password: plain }\n".into(),
            keys: &[("k1", "short")],
            realm_extra: "",
        }),
        1,
        2,
        dir.path(),
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, cfg).unwrap();
    let out = Command::new(common::bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("opaque.main.keys[0].secret: secret must be at least 32 bytes"),
        "{text}"
    );
    assert!(
        text.contains("opaque.main.users[0].password: plaintext passwords are refused"),
        "{text}"
    );
}

/// Issue 17: the edge's own answers spell `WWW-Authenticate` as everyone does (Pingora writes
/// header names it does not know lower-case); read off the wire, not through a client library.
#[test]
fn challenge_header_is_title_cased_on_the_wire() {
    use std::io::Read;
    let up = EchoUpstream::start();
    let edge = start(&up, GENEROUS);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(b"GET /any/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 401 "), "{out}");
    assert!(out.contains("\r\nWWW-Authenticate: Bearer"), "{out}");
    assert!(!out.contains("www-authenticate"), "{out}");
}

/// Issue 15: five wrong passwords for bob from one network lock bob out from that network only:
/// bob's correct password from another network and alice from the same network still get in.
/// (The client network comes from X-Forwarded-For because the test's peer is a trusted proxy.)
#[test]
fn auth_lockout_is_per_username_and_network() {
    let up = EchoUpstream::start();
    let yaml = format!(
        "trusted_proxies: [127.0.0.1/32]\n{}",
        render(&Cfg {
            up: up.port,
            users: two_users(),
            keys: &[("k1", K1)],
            realm_extra: "    auth_rate_limit:\n      per_username: { requests_per_second: 0.01, burst: 5 }\n      per_client: { requests_per_second: 1000, burst: 1000 }\n",
        })
    );
    let edge = Edge::start(&yaml);
    let body =
        |user: &str, pw: &str| serde_json::json!({ "username": user, "password": pw }).to_string();
    let from_a = [("x-forwarded-for", "198.51.100.7")];
    let from_b = [("x-forwarded-for", "203.0.113.9")];
    for _ in 0..5 {
        assert_eq!(
            login_raw(&edge, &body("bob", "wrong"), &from_a).status(),
            401
        );
    }
    assert_eq!(
        login_raw(&edge, &body("bob", "bob-pw"), &from_a).status(),
        429,
        "bob is limited from the network that guessed"
    );
    assert_eq!(
        login_raw(&edge, &body("bob", "bob-pw"), &from_b).status(),
        200,
        "bob's correct password from another network passes"
    );
    assert_eq!(
        login_raw(&edge, &body("alice", "alice-pw"), &from_a).status(),
        200,
        "another user on the guessing network is not locked out"
    );
}
