//! The `jwt` mode against a real OpenID provider: the `oidc-provider` npm package (8.x) run by
//! Node from tests/fixtures/oidc-provider (see `oidc`), the edge binary, and a real echo upstream.
//!
//! Needs `node` and `npm` on PATH (node_modules is installed with `npm ci` when missing). A
//! missing prerequisite fails the test; nothing is skipped.

mod common;
mod oidc;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{client, echo_json, wait_for, EchoUpstream, Edge};
use oidc::{port_outside_ephemeral_range, Op};
use serde_json::{json, Value};

const API: &str = "https://api.test";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(op: &Op) -> Value {
    json!({"iss": op.issuer, "sub": "rs-client", "client_id": "rs-client", "aud": API, "scope": "read",
           "iat": now(), "exp": now() + 300})
}

/// A config with an `api` route (scope read) and an `admin` route (scope write).
fn config(op: &Op, up: &EchoUpstream, provider_extra: &str) -> String {
    config_for(&op.issuer, up, provider_extra)
}

fn config_for(issuer: &str, up: &EchoUpstream, provider_extra: &str) -> String {
    r#"
server: { threads: 1, pid_file: "{dir}/pid", upgrade_sock: "{dir}/upgrade.sock" }
listeners: [ { address: "127.0.0.1:{port}" } ]
metrics: { address: "127.0.0.1:{metrics_port}" }
log: { access: false }
upstreams:
  up: { url: "UPSTREAM" }
routes:
  - id: api
    path: /api
    upstream: up
    auth:
      - type: jwt
        providers:
          - issuer: ISSUER
PROVIDER_EXTRA
        audience: https://api.test
        scopes: [read]
        claim_headers: { client_id: X-Client-Id }
  - id: admin
    path: /admin
    upstream: up
    auth:
      - type: jwt
        providers:
          - issuer: ISSUER
PROVIDER_EXTRA
        audience: [https://other.test, https://api.test]
        scopes: [write]
"#
    .replace("UPSTREAM", &up.url())
    .replace("ISSUER", issuer)
    .replace("PROVIDER_EXTRA\n", provider_extra)
}

fn get(edge: &Edge, path: &str, token: &str) -> reqwest::blocking::Response {
    client()
        .get(edge.url(path))
        .bearer_auth(token)
        .send()
        .expect("request through the edge")
}

fn status(edge: &Edge, path: &str, token: &str) -> u16 {
    get(edge, path, token).status().as_u16()
}

fn www_authenticate(r: &reqwest::blocking::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn good_token_reaches_upstream_with_identity_headers_and_without_authorization() {
    let op = Op::start();
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&op, &up, ""));
    edge.wait_ready();
    let token = op.token("rs-client", "read", API);
    let r = client()
        .get(edge.url("/api/items?x=1"))
        .bearer_auth(&token)
        .header("X-Client-Id", "spoofed")
        .header("X-Auth-Subject", "spoofed")
        .send()
        .unwrap();
    let echo = echo_json(r);
    let h = &echo["headers"];
    assert_eq!(echo["path"], "/api/items");
    assert!(
        h.get("authorization").is_none(),
        "the bearer token must not reach the upstream: {h}"
    );
    assert_eq!(h["x-client-id"], "rs-client", "{h}");
    assert_eq!(h["x-auth-subject"], "rs-client", "{h}");
    assert_eq!(h["x-auth-issuer"], op.issuer.as_str(), "{h}");
    assert_eq!(h["x-auth-mode"], "jwt", "{h}");
    assert_eq!(h["x-auth-scopes"], "read", "{h}");
    // Cached: the second use skips the signature and gives the same answer.
    assert_eq!(status(&edge, "/api/items", &token), 200);

    // No token: 401 with the challenge; two Authorization headers: 400.
    let r = client().get(edge.url("/api/items")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        www_authenticate(&r).starts_with("Bearer"),
        "{}",
        www_authenticate(&r)
    );
    let r = client()
        .get(edge.url("/api/items"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let m = edge.metrics();
    assert!(
        m.contains(&format!(
            "authedge_jwks_fetch_total{{provider=\"{}\",result=\"ok\"}}",
            op.issuer
        )),
        "{m}"
    );
}

#[test]
fn bad_tokens_are_refused_with_the_right_status() {
    let op = Op::start();
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&op, &up, ""));
    edge.wait_ready();

    let check = |token: &str, path: &str, want: u16, error: &str| {
        let r = get(&edge, path, token);
        let www = www_authenticate(&r);
        assert_eq!(r.status().as_u16(), want, "{path}: {www}");
        assert!(www.contains(error), "{path}: {www}");
        let body = r.text().unwrap();
        assert!(
            !body.contains(token) && body.len() < 100,
            "the body must not echo anything: {body}"
        );
    };
    // Wrong audience (a token for another resource server).
    check(
        &op.token("rs-client", "read", "https://elsewhere.test"),
        "/api/x",
        401,
        "invalid_token",
    );
    // Expired, not yet valid, wrong issuer, all signed with the provider's own key.
    let mut c = claims(&op);
    c["exp"] = json!(now() - 3600);
    c["iat"] = json!(now() - 4000);
    check(&op.sign("RS256", c), "/api/x", 401, "invalid_token");
    let mut c = claims(&op);
    c["nbf"] = json!(now() + 3600);
    check(&op.sign("RS256", c), "/api/x", 401, "invalid_token");
    let mut c = claims(&op);
    c["iss"] = json!("https://evil.test");
    check(&op.sign("RS256", c), "/api/x", 401, "invalid_token");
    // Tampered signature.
    let good = op.token("rs-client", "read", API);
    let (msg, sig) = good.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[0] ^= 0x80;
    check(
        &format!("{msg}.{}", URL_SAFE_NO_PAD.encode(raw)),
        "/api/x",
        401,
        "invalid_token",
    );
    // Tampered payload under the provider's signature.
    let mut c = claims(&op);
    c["scope"] = json!("read write");
    let forged_payload = URL_SAFE_NO_PAD.encode(c.to_string());
    let header = msg.split('.').next().unwrap();
    check(
        &format!("{header}.{forged_payload}.{sig}"),
        "/admin/x",
        401,
        "invalid_token",
    );
    // Valid token, missing scope: 403.
    check(&good, "/admin/x", 403, "insufficient_scope");
    // The same token where the scope suffices.
    assert_eq!(status(&edge, "/api/x", &good), 200);
    let both = op.token("rs-client", "read write", API);
    assert_eq!(status(&edge, "/admin/x", &both), 200);
    // The reason is counted (label), never sent.
    let m = edge.metrics();
    for reason in [
        "wrong_audience",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "bad_signature",
        "insufficient_scope",
    ] {
        assert!(
            m.contains(&format!("reason=\"{reason}\"")),
            "{reason} missing from metrics"
        );
    }
}

#[test]
fn es256_tokens_verify() {
    let op = Op::start();
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&op, &up, ""));
    edge.wait_ready();
    let token = op.token("es-client", "read", API);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    let echo = echo_json(get(&edge, "/api/es", &token));
    assert_eq!(echo["headers"]["x-client-id"], "es-client");
    let mut c = claims(&op);
    c["exp"] = json!(now() - 3600);
    assert_eq!(status(&edge, "/api/es", &op.sign("ES256", c)), 401);
}

#[test]
fn key_rotation_is_picked_up_without_restart_and_reload_keeps_the_cache() {
    let op = Op::start();
    let up = EchoUpstream::start();
    let extra = "            unknown_kid_cooldown: 1s\n";
    let yaml = config(&op, &up, extra);
    let edge = Edge::start(&yaml);
    edge.wait_ready();
    let old = op.token("rs-client", "read", API);
    assert_eq!(status(&edge, "/api/r", &old), 200);

    // A reload with an unchanged provider reuses its key cache: no new fetch.
    let fetches = op.jwks_gets();
    edge.reload(&yaml.replace("scopes: [write]", "scopes: [write, read]"));
    edge.wait_ready();
    assert_eq!(
        op.jwks_gets(),
        fetches,
        "a reload must reuse the JWKS cache of an unchanged provider"
    );
    assert_eq!(status(&edge, "/api/r", &old), 200);

    op.admin("rotate", json!({}));
    let new = op.token("rs-client", "read", API);
    assert_ne!(
        new.split('.').next(),
        old.split('.').next(),
        "the new token names the new kid"
    );
    // The unknown kid triggers a refetch (once the 1 s cooldown since the last fetch has passed).
    wait_for(
        || status(&edge, "/api/r", &new) == 200,
        "the rotated key to be accepted",
    );
    assert_eq!(
        status(&edge, "/api/r", &old),
        200,
        "the old key is still published"
    );
    let es = op.token("es-client", "read", API);
    assert_eq!(status(&edge, "/api/r", &es), 200);

    // Retiring keys: rotate again and unpublish the older ones. Once the edge refetches (the
    // newest kid is unknown to it), tokens of the retired keys stop working, cached or not.
    op.admin("rotate", json!({}));
    op.admin("drop-old", json!({}));
    let newest = op.token("rs-client", "read", API);
    wait_for(
        || status(&edge, "/api/r", &newest) == 200,
        "the newest key to be accepted",
    );
    assert_eq!(status(&edge, "/api/r", &old), 401, "retired key");
    assert_eq!(status(&edge, "/api/r", &new), 401, "retired key");
}

#[test]
fn provider_down_after_start_keeps_cached_keys_and_never_allows_unknown_kids() {
    let mut op = Op::start();
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&op, &up, "            unknown_kid_cooldown: 1s\n"));
    edge.wait_ready();
    let seen = op.token("rs-client", "read", API);
    let unseen = op.token("rs-client", "read", API);
    assert_eq!(status(&edge, "/api/d", &seen), 200);
    op.admin("rotate", json!({}));
    let new_kid = op.token("rs-client", "read", API);
    op.stop();

    // Keys fetched before the provider went away still verify, cached token or not.
    assert_eq!(status(&edge, "/api/d", &seen), 200);
    assert_eq!(status(&edge, "/api/d", &unseen), 200);
    // A kid the edge never fetched cannot be verified: 401 (or 503), never 200.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let s = status(&edge, "/api/d", &new_kid);
        assert!(
            s == 401 || s == 503,
            "new kid with the provider down gave {s}"
        );
    }
    wait_for(
        || {
            edge.metric(&format!(
                "authedge_jwks_fetch_total{{provider=\"{}\",result=\"error\"}}",
                op.issuer
            )) >= 1.0
        },
        "a failed JWKS fetch to be counted",
    );
    // Still ready: the last good keys are kept.
    edge.wait_ready();
}

#[test]
fn provider_down_at_start_gives_503_not_ready() {
    let mut op = Op::start();
    let issuer = op.issuer.clone();
    let token = op.token("rs-client", "read", API);
    op.stop();
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&op, &up, "            unknown_kid_cooldown: 1s\n"));
    let c = client();
    let readyz = format!("http://127.0.0.1:{}/readyz", edge.metrics_port);
    assert_ne!(
        c.get(&readyz).send().unwrap().status(),
        200,
        "not ready without keys"
    );
    let r = get(&edge, "/api/x", &token);
    assert_eq!(r.status(), 503, "keys unavailable for {issuer}");
}

#[test]
fn provider_up_after_start_becomes_ready_without_restart() {
    let port = port_outside_ephemeral_range();
    let issuer = format!("http://127.0.0.1:{port}");
    let up = EchoUpstream::start();
    let edge = Edge::start(&config_for(
        &issuer,
        &up,
        "            unknown_kid_cooldown: 2s\n",
    ));
    let c = client();
    let readyz = format!("http://127.0.0.1:{}/readyz", edge.metrics_port);
    assert_ne!(
        c.get(&readyz).send().unwrap().status(),
        200,
        "not ready without keys"
    );
    let op = Op::start_on(port);
    // The background retry (1 s, 2 s, ... capped at the cooldown) finds the provider.
    edge.wait_ready();
    assert_eq!(
        status(&edge, "/api/late", &op.token("rs-client", "read", API)),
        200
    );
}

/// Issue 17: with the default 30 s cooldown, a key rotated in 1 s after start is picked up by
/// the first token that names it (the startup fetch does not start the cooldown), and a second
/// rotation right after is throttled by the unknown-kid cooldown only.
#[test]
fn rotation_right_after_start_is_picked_up_by_the_first_new_token() {
    let op = Op::start();
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&op, &up, ""));
    edge.wait_ready();
    let started = Instant::now();
    let old = op.token("rs-client", "read", API);
    assert_eq!(status(&edge, "/api/r", &old), 200);
    let gets = op.jwks_gets();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    op.admin("rotate", json!({}));
    let new = op.token("rs-client", "read", API);
    assert_ne!(new.split('.').next(), old.split('.').next());
    assert_eq!(
        status(&edge, "/api/r", &new),
        200,
        "the first token with the rotated kid passes"
    );
    assert_eq!(op.jwks_gets(), gets + 1, "exactly one refetch");
    let es = op.token("es-client", "read", API);
    assert_eq!(status(&edge, "/api/r", &es), 200);
    // A second rotation within the 30 s cooldown of that refetch is throttled (no refetch).
    op.admin("rotate", json!({}));
    let newest = op.token("rs-client", "read", API);
    assert_eq!(status(&edge, "/api/r", &newest), 401);
    assert_eq!(
        op.jwks_gets(),
        gets + 1,
        "a flood of unknown kids is throttled"
    );
}

#[test]
fn burst_of_random_kids_fetches_at_most_once_per_cooldown() {
    let op = Op::start();
    let up = EchoUpstream::start();
    let edge = Edge::start(&config(&op, &up, "            unknown_kid_cooldown: 2s\n"));
    edge.wait_ready();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jwt/rsa2.key"
        ))
        .unwrap(),
    )
    .unwrap();
    let before = op.jwks_gets();
    let start = Instant::now();
    let window = Duration::from_millis(4500);
    let sent = Arc::new(AtomicUsize::new(0));
    let claims = claims(&op);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (sent, key, claims, edge) = (sent.clone(), &key, &claims, &edge);
            s.spawn(move || {
                let c = client();
                let mut i = 0u64;
                while start.elapsed() < window {
                    i += 1;
                    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                    h.kid = Some(format!("random-{t}-{i}-{}", rand_suffix()));
                    let token = jsonwebtoken::encode(&h, claims, key).unwrap();
                    let s = c
                        .get(edge.url("/api/burst"))
                        .bearer_auth(&token)
                        .send()
                        .unwrap()
                        .status()
                        .as_u16();
                    assert_eq!(s, 401, "random kid gave {s}");
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let fetches = op.jwks_gets() - before;
    let requests = sent.load(Ordering::Relaxed);
    let bound = (elapsed / 2.0).ceil() as u64 + 1;
    assert!(requests >= 50, "only {requests} requests were sent");
    assert!(fetches >= 1, "an unknown kid must cause a refetch");
    assert!(
        fetches <= bound,
        "{fetches} JWKS fetches for {requests} random kids in {elapsed:.1}s (bound {bound})"
    );
}

fn rand_suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{:x}", t.subsec_nanos())
}

#[test]
fn ooproxy_environment_runs_without_a_config_file() {
    let op = Op::start();
    let up = EchoUpstream::start();
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::bin())
        .arg("run")
        .env_remove("AUTHEDGE_CONFIG")
        .env("LISTEN_URL", format!("127.0.0.1:{port}"))
        .env("PROVIDER_URL", &op.issuer)
        .env("UPSTREAM_URL", up.url())
        .env("AUDIENCE", format!("[\"{API}\", \"https://other.test\"]"))
        .env("SUBJECT", "rs-client")
        .env("LEEWAY", "5")
        .env("KEY_EXPIRY_SECS", "3600")
        .env("UPSTREAM_TIMEOUT_SECS", "30")
        .env("NUM_WORKERS", "1")
        .env("CLIENT_SECRET", "an-hmac-client-secret-of-32-bytes-or-more")
        .env("AUTHEDGE_STATE_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start authedge");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut child);
    let c = client();
    let token = op.token("rs-client", "read", API);
    let url = format!("http://127.0.0.1:{port}/any/path");
    wait_for(
        || {
            c.get(&url)
                .bearer_auth(&token)
                .send()
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        },
        "ooproxy-mode edge",
    );
    let echo = echo_json(c.get(&url).bearer_auth(&token).send().unwrap());
    assert!(echo["headers"].get("authorization").is_none());
    assert_eq!(c.get(&url).send().unwrap().status(), 401);
    // SUBJECT is enforced.
    let other = op.token("es-client", "read", API);
    assert_eq!(
        c.get(&url).bearer_auth(&other).send().unwrap().status(),
        403
    );
    // HS256 with CLIENT_SECRET (ooproxy's symmetric mode) for the same issuer.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(&op),
        &jsonwebtoken::EncodingKey::from_secret(b"an-hmac-client-secret-of-32-bytes-or-more"),
    )
    .unwrap();
    assert_eq!(c.get(&url).bearer_auth(&hs).send().unwrap().status(), 200);
    drop(guard);

    // A PKCS#12 certificate is refused with an error naming the variable.
    let pfx = dir.path().join("cert.pfx");
    std::fs::write(&pfx, [0x30u8, 0x82, 0x01, 0x00]).unwrap();
    let out = Command::new(common::bin())
        .arg("run")
        .env_remove("AUTHEDGE_CONFIG")
        .env(
            "LISTEN_SSL_URL",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .env("CERT_FILE", &pfx)
        .env("PROVIDER_URL", &op.issuer)
        .env("UPSTREAM_URL", up.url())
        .env("AUTHEDGE_STATE_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CERT_FILE"), "{err}");
}
