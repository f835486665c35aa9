//! The `signed` mode against the real quay jwtproxy (`../shared/peers/bin/jwtproxy`, built from
//! upstream source): its signer signs requests that authedge's verifier checks; replays and bad
//! tokens fail, and no refused token records a nonce. Also a jwtproxy config file run by
//! `authedge run`. A missing jwtproxy binary or openssl fails the tests; nothing is skipped.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::jwtproxy::{now, Jwtproxy, Keys};
use common::{client, echo_json, free_port, wait_for, EchoUpstream, Edge};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// `/` is signed; `/keep` is signed and forwards the token (so a test can capture it).
fn edge_config(up: &EchoUpstream, pubkey: &str) -> String {
    let filter = format!(
        "{{ type: signed, audience: \"http://127.0.0.1:{{port}}\", key_server: {{ preshared: {{ issuer: svc-a, key_id: k1, public_key_file: \"{pubkey}\" }} }} }}"
    );
    format!(
        r#"server: {{ threads: 1, grace_period_seconds: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{ up: {{ url: "{}" }} }}
routes:
  - {{ path: /, upstream: up, auth: [ {filter} ] }}
  - {{ path: /keep, upstream: up, keep_credentials: true, auth: [ {filter} ] }}
"#,
        up.url()
    )
}

fn claims(edge: &Edge, jti: &str) -> Value {
    let t = now();
    json!({"iss": "svc-a", "aud": format!("http://127.0.0.1:{}", edge.port), "iat": t,
           "nbf": t - 60, "exp": t + 300, "jti": jti})
}

fn get(edge: &Edge, path: &str, auth: &str) -> reqwest::blocking::Response {
    client()
        .get(edge.url(path))
        .header("authorization", auth)
        .send()
        .unwrap()
}

#[test]
fn jwtproxy_signer_passes_replay_is_refused() {
    let keys = Keys::new();
    let up = EchoUpstream::start();
    let edge = Edge::start(&edge_config(&up, &keys.path("pub.pem")));
    let signer = Jwtproxy::signer(&keys);
    let via = signer.client();

    // Signed by the real jwtproxy: passes; identity set; Authorization removed.
    let body = echo_json(via.get(edge.url("/hello?x=1")).send().unwrap());
    assert_eq!(body["path"], "/hello");
    assert_eq!(body["headers"]["x-auth-subject"], "svc-a");
    assert_eq!(body["headers"]["x-auth-mode"], "signed");
    assert!(body["headers"].get("authorization").is_none(), "{body}");
    // A second signed request gets a fresh nonce and passes too.
    echo_json(via.get(edge.url("/hello")).send().unwrap());

    // Capture a header jwtproxy made (through the route that keeps it), then replay it.
    let body = echo_json(via.get(edge.url("/keep")).send().unwrap());
    let captured = body["headers"]["authorization"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(captured.starts_with("Bearer "), "{captured}");
    let r = get(&edge, "/hello", &captured);
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    edge.wait_metric(
        "authedge_requests_total{mode=\"signed\",outcome=\"deny\",reason=\"replay\",route=\"route0\"}",
        1.0,
    );
}

#[test]
fn bad_tokens_are_refused_and_record_no_nonce() {
    let keys = Keys::new();
    let up = EchoUpstream::start();
    // The PKCS#1 form of the public key works as well as SPKI.
    let edge = Edge::start(&edge_config(&up, &keys.path("pub1.pem")));
    let jti = "bad-tokens-shared-nonce-0123456789";
    let good = claims(&edge, jti);
    let t = now();
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };

    let mut bad: Vec<(&str, String)> = Vec::new();
    let ok = keys.mint("k1", &good);
    let (head, sig) = ok.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    bad.push((
        "tampered signature",
        format!("{head}.{}", URL_SAFE_NO_PAD.encode(&sig)),
    ));
    bad.push((
        "wrong audience",
        keys.mint("k1", &with("aud", json!("http://127.0.0.1:1"))),
    ));
    let mut expired = with("exp", json!(t - 120));
    expired["iat"] = json!(t - 200);
    expired["nbf"] = json!(t - 200);
    bad.push(("expired", keys.mint("k1", &expired)));
    bad.push((
        "exp - iat over max_ttl",
        keys.mint("k1", &with("exp", json!(t + 301))),
    ));
    bad.push(("unknown kid", keys.mint("k2", &good)));
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    bad.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": "k1"})),
            b64(&good)
        ),
    ));
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let public = std::fs::read(keys.path("pub1.pem")).unwrap();
    bad.push((
        "HS256 with the public key",
        jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(&public)).unwrap(),
    ));
    let mut no_jti = good.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    bad.push(("missing jti", keys.mint("k1", &no_jti)));

    for (what, token) in &bad {
        let r = get(&edge, "/", &format!("Bearer {token}"));
        assert_eq!(r.status(), 401, "{what}");
        assert!(r.headers().contains_key("www-authenticate"), "{what}");
    }
    // None of them burned the nonce: the same jti with a good signature passes, once.
    let body = echo_json(get(&edge, "/", &format!("Bearer {ok}")));
    assert_eq!(body["headers"]["x-auth-subject"], "svc-a");
    assert_eq!(get(&edge, "/", &format!("Bearer {ok}")).status(), 401);
    // Two Authorization headers: 400.
    let r = client()
        .get(edge.url("/"))
        .header("authorization", format!("Bearer {ok}"))
        .header("authorization", "Basic eDp5")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // No token at all: 401 with the plain challenge.
    let r = client().get(edge.url("/")).send().unwrap();
    assert_eq!(r.status(), 401);
}

/// The authedge binary run on a jwtproxy file; killed on drop.
struct Run {
    child: Child,
    log: PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_jwtproxy_config_file_runs_both_its_signer_and_its_verifier() {
    let keys = Keys::new();
    let up = EchoUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let signer_port = free_port();
    // jwtproxy's own format: a signer block and one verifier block, Go durations.
    let file = dir.path().join("jwtproxy.yaml");
    std::fs::write(
        &file,
        format!(
            r#"jwtproxy:
  signer_proxy:
    enabled: true
    listen_addr: 127.0.0.1:{signer_port}
    signer:
      issuer: svc-a
      private_key:
        type: preshared
        options: {{ key_id: k1, private_key_path: {key} }}
  verifier_proxies:
  - listen_addr: 127.0.0.1:{port}
    shutdown_timeout: 2s
    verifier:
      upstream: {upstream}
      audience: http://127.0.0.1:{port}
      max_skew: 1m
      max_ttl: 5m
      key_server:
        type: preshared
        options: {{ issuer: svc-a, key_id: k1, public_key_path: {pubkey} }}
      nonce_storage: {{ type: local, options: {{ purge_interval: 1m }} }}
"#,
            key = keys.path("k.pem"),
            upstream = up.url(),
            pubkey = keys.path("pub.pem"),
        ),
    )
    .unwrap();

    let out = Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // No CA in the signer block: CONNECT is refused, as jwtproxy does; said once.
    assert!(
        text.contains("signer_proxy") && text.contains("CONNECT"),
        "{text}"
    );
    assert!(text.contains("ok: 1 routes"), "{text}");

    let log = dir.path().join("out.log");
    let child = Command::new(common::bin())
        .args(["run", "--config"])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let run = Run { child, log };
    wait_for(
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "authedge to listen on the verifier's address",
    );
    wait_for(
        || TcpStream::connect(("127.0.0.1", signer_port)).is_ok(),
        "authedge to listen on the signer's address",
    );
    // Both halves are authedge: its signer signs, its verifier checks, the upstream answers.
    let edge_url = format!("http://127.0.0.1:{port}/x");
    let ours = reqwest::blocking::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://127.0.0.1:{signer_port}")).unwrap())
        .build()
        .unwrap();
    for _ in 0..2 {
        let body = echo_json(ours.get(&edge_url).send().unwrap());
        assert_eq!(body["headers"]["x-auth-subject"], "svc-a");
    }
    // The real jwtproxy's signer with the same key passes the same verifier.
    let signer = Jwtproxy::signer(&keys);
    let body = echo_json(signer.client().get(&edge_url).send().unwrap());
    assert_eq!(body["headers"]["x-auth-subject"], "svc-a");
    assert_eq!(client().get(&edge_url).send().unwrap().status(), 401);
    let logged = std::fs::read_to_string(&run.log).unwrap_or_default();
    assert!(!logged.contains("not supported"), "{logged}");
}

/// A key registry speaking jwtproxy's protocol for one key: `svc-a/keys/k1` → the JWK (with
/// `Cache-Control`), `pending` → 409, `expired` → 403, anything else → 404. Counts lookups.
struct Registry {
    port: u16,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Registry {
    fn start(jwk: Value) -> Registry {
        use std::io::{BufRead, BufReader, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let h = h.clone();
                let jwk = jwk.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(c.try_clone().unwrap());
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        return;
                    }
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                            break;
                        }
                    }
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    let (status, body) = match path.as_str() {
                        "/services/svc-a/keys/k1" => ("200 OK", jwk.to_string()),
                        "/services/svc-a/keys/pending" => ("409 Conflict", String::new()),
                        "/services/svc-a/keys/expired" => ("403 Forbidden", String::new()),
                        _ => ("404 Not Found", String::new()),
                    };
                    let mut c = c;
                    let _ = write!(
                        c,
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: max-age=300\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Registry { port, hits }
    }
}

#[test]
fn keys_from_a_key_registry_cached_refusals_denied_registry_down_503() {
    let keys = Keys::new();
    let up = EchoUpstream::start();
    let reg = Registry::start(keys.jwk("k1"));
    let down = free_port();
    let yaml = format!(
        r#"server: {{ threads: 1, grace_period_seconds: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{ up: {{ url: "{}" }} }}
routes:
  - {{ path: /, upstream: up, auth: [ {{ type: signed, audience: "http://127.0.0.1:{{port}}", key_server: {{ keyregistry: {{ registry: "http://127.0.0.1:{}/" }} }} }} ] }}
  - {{ path: /down, upstream: up, auth: [ {{ type: signed, audience: "http://127.0.0.1:{{port}}", key_server: {{ keyregistry: {{ registry: "http://127.0.0.1:{down}/" }} }} }} ] }}
"#,
        up.url(),
        reg.port
    );
    let edge = Edge::start(&yaml);
    let hits = || reg.hits.load(std::sync::atomic::Ordering::SeqCst);
    let bearer = |kid: &str, jti: &str| format!("Bearer {}", keys.mint(kid, &claims(&edge, jti)));

    let body = echo_json(get(&edge, "/", &bearer("k1", "registry-nonce-000000001")));
    assert_eq!(body["headers"]["x-auth-subject"], "svc-a");
    assert_eq!(hits(), 1);
    // Cached (max-age 300): no second lookup.
    echo_json(get(&edge, "/", &bearer("k1", "registry-nonce-000000002")));
    assert_eq!(hits(), 1);
    for kid in ["pending", "expired", "unknown"] {
        let r = get(
            &edge,
            "/",
            &bearer(kid, &format!("registry-nonce-{kid}-0001")),
        );
        assert_eq!(r.status(), 401, "{kid}");
    }
    let after = hits();
    assert_eq!(after, 4);
    // A refused kid is not looked up again within the cooldown.
    for i in 0..5 {
        let r = get(
            &edge,
            "/",
            &bearer("unknown", &format!("registry-nonce-again-{i:04}")),
        );
        assert_eq!(r.status(), 401);
    }
    assert_eq!(hits(), after);
    // Registry down: 503 for a key not cached, never an allow.
    let r = get(&edge, "/down", &bearer("k1", "registry-nonce-down-00001"));
    assert_eq!(r.status(), 503);
}

/// With `state.redis`, two verifiers share their nonces: a request replayed at the other
/// instance is refused too; Redis down gives 503 (a nonce that cannot be recorded is never
/// accepted), and Redis back brings success without a restart.
#[test]
fn two_instances_sharing_redis_refuse_a_replay_at_either() {
    let keys = Keys::new();
    let up = EchoUpstream::start();
    let mut redis = common::redis::Redis::start(free_port(), false);
    let yaml = format!(
        r#"server: {{ threads: 1, grace_period_seconds: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
state: {{ redis: {{ url: "redis://127.0.0.1:{}/0", key_prefix: "s:", timeout: 200ms }} }}
upstreams: {{ up: {{ url: "{}" }} }}
routes:
  - {{ path: /, upstream: up, auth: [ {{ type: signed, audience: "http://svc.test", key_server: {{ preshared: {{ issuer: svc-a, key_id: k1, public_key_file: "{}" }} }} }} ] }}
"#,
        redis.port,
        up.url(),
        keys.path("pub.pem")
    );
    let a = Edge::start(&yaml);
    let b = Edge::start(&yaml);
    a.wait_ready();
    b.wait_ready();
    let token = |jti: &str| {
        let t = now();
        let c = json!({"iss": "svc-a", "aud": "http://svc.test", "iat": t, "nbf": t - 60,
                       "exp": t + 300, "jti": format!("{jti}-0123456789abcdef0123456789")});
        format!("Bearer {}", keys.mint("k1", &c))
    };
    let first = token("shared-1");
    let r = get(&a, "/x", &first);
    assert_eq!(
        r.status(),
        200,
        "{}\n{}",
        r.text().unwrap_or_default(),
        a.metrics()
            .lines()
            .filter(|l| l.contains("authedge_requests_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        get(&b, "/x", &first).status(),
        401,
        "replayed at the other instance"
    );
    assert_eq!(
        get(&a, "/x", &first).status(),
        401,
        "replayed at the first instance"
    );
    let second = token("shared-2");
    assert_eq!(get(&b, "/x", &second).status(), 200);
    assert_eq!(get(&a, "/x", &second).status(), 401);

    redis.stop();
    let down = token("shared-3");
    wait_for(
        || get(&a, "/x", &down).status() == 503,
        "503 with Redis down",
    );
    assert_eq!(get(&b, "/x", &down).status(), 503);

    let _redis = common::redis::Redis::start(redis.port, false);
    // A fresh jti per attempt: a command that timed out may still have recorded its nonce.
    let mut n = 0;
    let mut back = String::new();
    wait_for(
        || {
            n += 1;
            back = token(&format!("shared-back-{n}"));
            get(&a, "/x", &back).status() == 200
        },
        "success once Redis is back",
    );
    assert_eq!(get(&b, "/x", &back).status(), 401, "and it is shared again");
}
