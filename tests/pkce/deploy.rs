//! The pkce tests about running it: rate limits, the peer's environment without a config file,
//! config problems, single-use codes across instances through Redis, key rotation by reload.

use std::process::{Command, Stdio};

use crate::common::{self, client, free_port, wait_for, Edge};
use crate::flow::*;
use crate::provider::{Browser, Provider};

#[test]
fn rate_limited_per_client_address() {
    let yaml = edge_yaml(
        9,
        "    rate_limit: { requests_per_second: 0.01, burst: 3 }\n",
    );
    let edge = Edge::start(&yaml);
    let c = client();
    let url = edge.url("/oauth/authorize?client_id=nobody");
    for _ in 0..3 {
        assert_eq!(c.get(&url).send().unwrap().status(), 400);
    }
    let r = c.get(&url).send().unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // The budget is shared by the three endpoints.
    let r = c
        .post(edge.url("/oauth/token"))
        .form(&[("grant_type", "x")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(
        c.get(edge.url("/oauth/callback")).send().unwrap().status(),
        429
    );
}

#[test]
fn the_peer_environment_runs_without_a_config_file() {
    let port = free_port();
    let op_port = free_port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let op = Provider::start(op_port, provider_clients(std::slice::from_ref(&callback)));
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let env = |cmd: &mut Command| {
        cmd.arg("run")
            .env_remove("AUTHEDGE_CONFIG")
            .env_remove("PROVIDER_URL")
            .env("PORT", port.to_string())
            .env("OAUTH_CLIENT_ID", "edge-client")
            .env("OAUTH_CLIENT_SECRET", "secret-edge-client")
            .env("OAUTH_AUTH_URL", format!("{}/auth", op.base))
            .env("OAUTH_TOKEN_URL", format!("{}/token", op.base))
            .env("OAUTH_REDIRECT_URL", &callback)
            .env("JWT_SIGNING_KEY", "peer-jwt-signing-key")
            .env("ENCRYPTION_KEY", "0123456789abcdef")
            .env("AUTHEDGE_STATE_DIR", dir.path())
            .env("AUTHEDGE_METRICS_ADDRESS", format!("127.0.0.1:{metrics}"))
            .env("RUST_LOG", "warn");
    };
    // Without PKCE_CLIENTS: a startup error naming it.
    let mut cmd = Command::new(common::bin());
    env(&mut cmd);
    let out = cmd.env_remove("PKCE_CLIENTS").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PKCE_CLIENTS"), "{err}");

    let mut cmd = Command::new(common::bin());
    env(&mut cmd);
    cmd.env(
        "PKCE_CLIENTS",
        format!("{CLIENT}={REDIRECT}|com.example.app:/oauth,{OTHER}={OTHER_REDIRECT}"),
    );
    let _child = Kill(cmd.stdout(Stdio::null()).spawn().unwrap());
    let c = client();
    wait_for(
        || {
            c.get(format!("http://127.0.0.1:{metrics}/healthz"))
                .send()
                .is_ok_and(|r| r.status() == 200)
        },
        "drop-in edge",
    );
    // The peer's paths: /oauth/authorize, /callback, /oauth/token.
    let a = Proxy {
        base: format!("http://127.0.0.1:{port}"),
        authorize: "/oauth/authorize",
        token: "/oauth/token",
    };
    let (verifier, challenge) = pkce_pair(50);
    let code = code_of(&a.flow(&op, CLIENT, REDIRECT, &challenge), REDIRECT);
    let (status, v) = a.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!(status, 200, "{v}");
    assert!(v["id_token"].is_string());
    // The allow-list holds here too.
    let step =
        Browser::new(&op.base).get(&a.authorize_url(&Proxy::params(CLIENT, EVIL, &challenge)));
    assert_eq!(step.status, 400);
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    let yaml = r#"
listeners: [ { address: "127.0.0.1:8080" } ]
upstreams: {}
pkce:
  m:
    authorization_url: "http://idp.example/auth"
    token_url: "https://idp.example/token"
    client_id: edge
    client_secret: { value: s }
    callback_url: "https://edge.example/oauth/callback?x=1"
    keys: [ { id: k1, secret: { value: short } } ]
    clients:
      - { client_id: a, redirect_uris: ["https://app.example/cb#frag"] }
      - { client_id: a, redirect_uris: [] }
    code_lifetime: 1h
"#;
    std::fs::write(&p, yaml).unwrap();
    let out = Command::new(common::bin())
        .arg("check")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "pkce.m.authorization_url:",
        "pkce.m.callback_url:",
        "pkce.m.keys[0]",
        "pkce.m.clients[0].redirect_uris[0]:",
        "pkce.m.clients[1].redirect_uris:",
        "pkce.m.clients[1].client_id:",
        "pkce.m.code_lifetime:",
    ] {
        assert!(text.contains(key), "{key} not in:\n{text}");
    }
}

/// Two instances sharing Redis: a code redeemed at A is refused by B itself (not by the
/// provider), and with Redis gone a redemption is a 503, never a second success.
#[test]
fn codes_are_single_use_across_instances_through_redis() {
    let mut redis = common::redis::Redis::start(free_port(), false);
    let op_port = free_port();
    let extra = format!(
        "    rate_limit: {{ requests_per_second: 1000, burst: 1000 }}\n    on_state_error: allow\nstate:\n  redis:\n    url: redis://127.0.0.1:{}/0\n    key_prefix: \"pkce-test:\"\n    timeout: 200ms\n",
        redis.port
    );
    let a = Edge::start(&edge_yaml(op_port, &extra));
    let b = Edge::start(&edge_yaml(op_port, &extra));
    a.wait_ready();
    b.wait_ready();
    let op = Provider::start(op_port, provider_clients(&[a.url("/oauth/callback")]));
    let pa = Proxy {
        base: format!("http://127.0.0.1:{}", a.port),
        authorize: "/oauth/authorize",
        token: "/oauth/token",
    };
    let pb = Proxy {
        base: format!("http://127.0.0.1:{}", b.port),
        authorize: "/oauth/authorize",
        token: "/oauth/token",
    };
    let (verifier, challenge) = pkce_pair(60);
    let code = code_of(&pa.flow(&op, CLIENT, REDIRECT, &challenge), REDIRECT);
    assert_eq!(pa.redeem(&code, &verifier, CLIENT, REDIRECT).0, 200);
    let (status, v) = pb.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!(
        (status, v["error_description"].as_str()),
        (400, Some(OUR_DESCRIPTION))
    );
    assert!(redis
        .cli(&["--scan", "--pattern", "pkce-test:*"])
        .contains("pkce"));

    let code = code_of(&pa.flow(&op, CLIENT, REDIRECT, &challenge), REDIRECT);
    redis.stop();
    let (status, v) = pb.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!(
        (status, v["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
}

/// Key rotation by reload: codes sealed by the old key still redeem while it is listed, and no
/// longer once it is removed; the new key seals. A custom-scheme redirect URI works too.
#[test]
fn key_rotation_by_reload() {
    let op_port = free_port();
    let one = edge_yaml(
        op_port,
        "    rate_limit: { requests_per_second: 1000, burst: 1000 }\n",
    )
    .replace("code_lifetime: 2s", "code_lifetime: 60s");
    let old_key = format!("{{ id: k1, secret: {{ value: \"{SEALING_KEY}\" }} }}");
    let new_key = "{ id: k2, secret: { value: \"a-second-sealing-key-of-32-bytes!!\" } }";
    let both = one.replace(&old_key, &format!("{new_key}, {old_key}"));
    let only_new = one.replace(&old_key, new_key);
    assert_ne!(both, one);
    let edge = Edge::start(&one);
    let op = Provider::start(op_port, provider_clients(&[edge.url("/oauth/callback")]));
    let a = Proxy {
        base: format!("http://127.0.0.1:{}", edge.port),
        authorize: "/oauth/authorize",
        token: "/oauth/token",
    };
    let (verifier, challenge) = pkce_pair(44);
    let code1 = code_of(&a.flow(&op, CLIENT, REDIRECT, &challenge), REDIRECT);
    let code2 = code_of(&a.flow(&op, CLIENT, REDIRECT, &challenge), REDIRECT);
    edge.reload(&both);
    assert_eq!(a.redeem(&code1, &verifier, CLIENT, REDIRECT).0, 200);
    let app = "com.example.app:/oauth";
    let back = a.flow(&op, CLIENT, app, &challenge);
    assert!(back.starts_with("com.example.app:/oauth?code="), "{back}");
    let code3 = code_of(&back, app);
    edge.reload(&only_new);
    let (status, v) = a.redeem(&code2, &verifier, CLIENT, REDIRECT);
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(a.redeem(&code3, &verifier, CLIENT, app).0, 200);
}

/// `single_use_codes: false`: the realm keeps no state, so a reused code reaches the provider,
/// whose own single-use check is then all that stands (as with the stateless peer).
#[test]
fn a_stateless_realm_leaves_reuse_to_the_provider() {
    let op_port = free_port();
    let edge = Edge::start(&edge_yaml(
        op_port,
        "    rate_limit: { requests_per_second: 1000, burst: 1000 }\n    single_use_codes: false\n",
    ));
    let op = Provider::start(op_port, provider_clients(&[edge.url("/oauth/callback")]));
    let a = Proxy {
        base: format!("http://127.0.0.1:{}", edge.port),
        authorize: "/oauth/authorize",
        token: "/oauth/token",
    };
    let (verifier, challenge) = pkce_pair(43);
    let code = code_of(&a.flow(&op, CLIENT, REDIRECT, &challenge), REDIRECT);
    assert_eq!(a.redeem(&code, &verifier, CLIENT, REDIRECT).0, 200);
    let (status, v) = a.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert_ne!(
        v["error_description"], OUR_DESCRIPTION,
        "the provider answered: {v}"
    );
}
