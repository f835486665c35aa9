//! The `pkce` mode end to end: the real authedge binary in front of the real oidc-provider
//! fixture, configured with a confidential client it does not hold to PKCE, and the same client
//! flow against the real goeven/oauth-pkce-proxy peer (`../shared/peers/bin/oauth-pkce-proxy`),
//! with every difference asserted.

mod common;
#[path = "pkce/provider.rs"]
mod provider;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use common::{client, free_port, wait_for, Edge};
use provider::{Browser, Peer, Provider};

const CLIENT: &str = "cli";
const OTHER: &str = "other";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const OTHER_REDIRECT: &str = "http://127.0.0.1:9/other";
const EVIL: &str = "http://evil.test/steal";
const SEALING_KEY: &str = "an-edge-sealing-key-of-32-bytes-!!";
const OUR_DESCRIPTION: &str = "invalid, expired or already used code";

fn edge_yaml(op_port: u16, extra: &str) -> String {
    format!(
        r#"
server: {{ threads: 1, pid_file: "{{dir}}/pid", upgrade_sock: "{{dir}}/upgrade.sock" }}
listeners: [ {{ address: "127.0.0.1:{{port}}" }} ]
metrics: {{ address: "127.0.0.1:{{metrics_port}}" }}
upstreams: {{}}
pkce:
  mobile:
    authorization_url: "http://127.0.0.1:{op_port}/auth"
    token_url: "http://127.0.0.1:{op_port}/token"
    client_id: edge-client
    client_secret: {{ value: secret-edge-client }}
    callback_url: "http://127.0.0.1:{{port}}/oauth/callback"
    keys: [ {{ id: k1, secret: {{ value: "{SEALING_KEY}" }} }} ]
    clients:
      - {{ client_id: {CLIENT}, redirect_uris: ["{REDIRECT}", "com.example.app:/oauth"] }}
      - {{ client_id: {OTHER}, redirect_uris: ["{OTHER_REDIRECT}"] }}
    code_lifetime: 2s
{extra}"#
    )
}

/// The provider's client for both proxies: confidential (client_secret_basic), so no PKCE.
fn provider_clients(callbacks: &[String]) -> Value {
    json!([{
        "client_id": "edge-client",
        "client_secret": "secret-edge-client",
        "redirect_uris": callbacks,
        "response_types": ["code"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_basic",
    }])
}

/// A verifier of `len` unreserved characters and its S256 challenge.
fn pkce_pair(len: usize) -> (String, String) {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    let v: String = (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect();
    let c = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
    (v, c)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn query_of(url: &str) -> Vec<(String, String)> {
    let u = url::Url::parse(url).expect("url");
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn q(url: &str, name: &str) -> Option<String> {
    query_of(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// One proxy under test: where its endpoints are.
struct Proxy {
    base: String,
    authorize: &'static str,
    token: &'static str,
}

impl Proxy {
    fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        let q: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        format!("{}{}?{}", self.base, self.authorize, q.join("&"))
    }

    fn params<'a>(
        client_id: &'a str,
        redirect: &'a str,
        challenge: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", "client-state-1"),
            ("scope", "openid email offline_access"),
            ("prompt", "consent"),
        ]
    }

    /// Authorize, log in at the provider, and return the proxy's callback URL (from the provider).
    fn to_callback(&self, op: &Provider, params: &[(&str, &str)]) -> (Browser, String) {
        let mut b = Browser::new(&op.base);
        let step = b.get(&self.authorize_url(params));
        assert_eq!(step.status, 302, "authorize: {}", step.body);
        let at_op = step.location.expect("redirect to the provider");
        assert!(at_op.starts_with(&op.base), "{at_op}");
        let callback = b.login(&at_op, "alice@example.com");
        assert!(callback.starts_with(&self.base), "{callback}");
        (b, callback)
    }

    /// The whole front channel: the client's redirect URL with the proxy's code and state.
    fn flow(&self, op: &Provider, client_id: &str, redirect: &str, challenge: &str) -> String {
        let params = Proxy::params(client_id, redirect, challenge);
        let (mut b, callback) = self.to_callback(op, &params);
        let step = b.get(&callback);
        assert_eq!(step.status, 302, "callback: {}", step.body);
        step.location.expect("redirect to the client")
    }

    fn token(&self, form: &[(&str, &str)]) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = client()
            .post(format!("{}{}", self.base, self.token))
            .form(form)
            .send()
            .expect("token");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v, headers)
    }

    fn redeem(&self, code: &str, verifier: &str, client_id: &str, redirect: &str) -> (u16, Value) {
        let (s, v, _) = self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("client_id", client_id),
            ("redirect_uri", redirect),
        ]);
        (s, v)
    }
}

struct Setup {
    op: Provider,
    edge: Edge,
    peer: Peer,
}

impl Setup {
    fn start(extra: &str) -> Setup {
        let op_port = free_port();
        // Tests send many requests from one address: a budget they never reach.
        let extra =
            format!("    rate_limit: {{ requests_per_second: 1000, burst: 1000 }}\n{extra}");
        let edge = Edge::start(&edge_yaml(op_port, &extra));
        let peer_port = free_port();
        let op = Provider::start(
            op_port,
            provider_clients(&[
                edge.url("/oauth/callback"),
                format!("http://127.0.0.1:{peer_port}/callback"),
            ]),
        );
        let peer = Peer::start(
            peer_port,
            &[
                ("OAUTH_CLIENT_ID", "edge-client".into()),
                ("OAUTH_CLIENT_SECRET", "secret-edge-client".into()),
                ("OAUTH_AUTH_URL", format!("{}/auth", op.base)),
                ("OAUTH_TOKEN_URL", format!("{}/token", op.base)),
                (
                    "OAUTH_REDIRECT_URL",
                    format!("http://127.0.0.1:{peer_port}/callback"),
                ),
                ("JWT_SIGNING_KEY", "peer-jwt-signing-key".into()),
                ("ENCRYPTION_KEY", "0123456789abcdef".into()),
            ],
        );
        Setup { op, edge, peer }
    }

    fn authedge(&self) -> Proxy {
        Proxy {
            base: format!("http://127.0.0.1:{}", self.edge.port),
            authorize: "/oauth/authorize",
            token: "/oauth/token",
        }
    }

    fn peer(&self) -> Proxy {
        Proxy {
            base: format!("http://127.0.0.1:{}", self.peer.port),
            authorize: "/oauth/authorize",
            token: "/oauth/token",
        }
    }
}

fn code_of(client_redirect: &str, redirect: &str) -> String {
    assert!(client_redirect.starts_with(redirect), "{client_redirect}");
    assert_eq!(
        q(client_redirect, "state").as_deref(),
        Some("client-state-1")
    );
    q(client_redirect, "code").expect("code")
}

#[test]
fn the_whole_flow_through_authedge_and_the_peer() {
    let s = Setup::start("");
    let (verifier, challenge) = pkce_pair(64);
    // authedge: the provider sees the edge's client id and callback, and a sealed state.
    let a = s.authedge();
    let mut b = Browser::new(&s.op.base);
    let step = b.get(&a.authorize_url(&Proxy::params(CLIENT, REDIRECT, &challenge)));
    let at_op = step.location.expect("to the provider");
    assert_eq!(q(&at_op, "client_id").as_deref(), Some("edge-client"));
    assert_eq!(
        q(&at_op, "redirect_uri"),
        Some(s.edge.url("/oauth/callback"))
    );
    assert_eq!(
        q(&at_op, "scope").as_deref(),
        Some("openid email offline_access")
    );
    assert_eq!(q(&at_op, "prompt").as_deref(), Some("consent"));
    assert!(
        q(&at_op, "code_challenge").is_none(),
        "no PKCE toward the provider"
    );
    assert_ne!(q(&at_op, "state").as_deref(), Some("client-state-1"));
    let callback = b.login(&at_op, "alice@example.com");
    let step = b.get(&callback);
    assert_eq!(step.status, 302);
    let code = code_of(&step.location.expect("to the client"), REDIRECT);
    let (status, tokens, headers) = a.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("code_verifier", &verifier),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
    ]);
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(headers["cache-control"], "no-store");
    // The provider's JSON as it answered: id_token, expires_in and scope are kept.
    for k in [
        "access_token",
        "id_token",
        "refresh_token",
        "expires_in",
        "scope",
        "token_type",
    ] {
        assert!(tokens.get(k).is_some(), "{k} missing: {tokens}");
    }
    // Refresh is relayed with the edge's credentials.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed, _) = a.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", CLIENT),
    ]);
    assert_eq!(status, 200, "{refreshed}");
    assert!(refreshed["access_token"].is_string());
    let (status, v, _) = a.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", "nobody"),
    ]);
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));

    // The same client flow against the peer works too ...
    let p = s.peer();
    let (verifier, challenge) = pkce_pair(64);
    let code = code_of(&p.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    let (status, tokens) = p.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!(status, 200, "{tokens}");
    // ... but it answers with Go's oauth2.Token, not the provider's JSON: no id_token.
    assert!(tokens["access_token"].is_string());
    assert!(
        tokens.get("id_token").is_none() && tokens.get("expiry").is_some(),
        "{tokens}"
    );
}

#[test]
fn refusals_authedge_versus_the_peer() {
    let s = Setup::start("");
    let (a, p) = (s.authedge(), s.peer());
    let (verifier, challenge) = pkce_pair(64);

    // A plain challenge, or none: both refuse at authorize.
    for proxy in [&a, &p] {
        let mut params = Proxy::params(CLIENT, REDIRECT, &verifier);
        params[4] = ("code_challenge_method", "plain");
        let step = Browser::new(&s.op.base).get(&proxy.authorize_url(&params));
        assert_eq!((step.status, step.location), (400, None), "{}", proxy.base);
    }
    // An unlisted redirect_uri: authedge refuses without redirecting; the peer takes it, and
    // after the login sends the code to the attacker's URI (its open redirect).
    let step =
        Browser::new(&s.op.base).get(&a.authorize_url(&Proxy::params(CLIENT, EVIL, &challenge)));
    assert_eq!((step.status, step.location), (400, None));
    let stolen = p.flow(&s.op, CLIENT, EVIL, &challenge);
    assert!(
        stolen.starts_with(EVIL) && q(&stolen, "code").is_some(),
        "{stolen}"
    );
    // A duplicated state: authedge refuses; the peer takes the first.
    let mut dup = Proxy::params(CLIENT, REDIRECT, &challenge);
    dup.push(("state", "second"));
    let step = Browser::new(&s.op.base).get(&a.authorize_url(&dup));
    assert_eq!(step.status, 400);
    assert_eq!(
        Browser::new(&s.op.base).get(&p.authorize_url(&dup)).status,
        302
    );

    // A tampered state at the callback: both refuse, authedge without a redirect.
    for proxy in [&a, &p] {
        let params = Proxy::params(CLIENT, REDIRECT, &challenge);
        let (mut b, callback) = proxy.to_callback(&s.op, &params);
        let state = q(&callback, "state").unwrap();
        let mut t: Vec<char> = state.chars().collect();
        let i = t.len() / 2;
        t[i] = if t[i] == 'A' { 'B' } else { 'A' };
        let bad: String = t.into_iter().collect();
        let tampered = callback.replace(&enc(&state), &enc(&bad));
        assert_ne!(tampered, callback);
        let step = b.get(&tampered);
        assert_eq!((step.status, step.location), (400, None), "{}", proxy.base);
    }

    // authedge, one code: every wrong redemption is refused and does not burn it.
    let code = code_of(&a.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    let (wrong, _) = pkce_pair(64);
    assert_eq!(
        a.redeem(&code, &wrong, CLIENT, REDIRECT).1["error"],
        "invalid_grant"
    );
    assert_eq!(
        a.redeem(&code, &verifier, OTHER, REDIRECT).1["error"],
        "invalid_grant"
    );
    assert_eq!(
        a.redeem(&code, &verifier, CLIENT, OTHER_REDIRECT).1["error"],
        "invalid_grant"
    );
    let mut t = code.clone().into_bytes();
    let i = t.len() / 2;
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(t).unwrap();
    assert_eq!(
        a.redeem(&tampered, &verifier, CLIENT, REDIRECT).1["error"],
        "invalid_grant"
    );
    let (status, v) = a.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!(status, 200, "{v}");
    // Reused: authedge refuses by itself (its own description: the provider is not asked).
    let (status, v) = a.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(v["error_description"], OUR_DESCRIPTION);

    // The peer: a wrong verifier and a tampered code are refused ...
    let code = code_of(&p.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    assert_eq!(
        p.redeem(&code, &wrong, CLIENT, REDIRECT).1["error"],
        "invalid_grant"
    );
    let mut t = code.clone().into_bytes();
    let i = t.len() / 2;
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        p.redeem(&String::from_utf8(t).unwrap(), &verifier, CLIENT, REDIRECT)
            .0,
        400
    );
    // ... but a swapped client_id and redirect_uri are taken (nothing binds them) ...
    let (status, v) = p.redeem(&code, &verifier, OTHER, OTHER_REDIRECT);
    assert_eq!(status, 200, "{v}");
    // ... and a reused code reaches the provider, which refuses it (not the peer).
    let (status, v) = p.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!(status, 400, "{v}");
    assert_ne!(v["error_description"], OUR_DESCRIPTION);

    // A 42-character verifier (challenge made from it): authedge refuses, the peer takes it.
    let (short, short_challenge) = pkce_pair(42);
    let code = code_of(&a.flow(&s.op, CLIENT, REDIRECT, &short_challenge), REDIRECT);
    let (status, v) = a.redeem(&code, &short, CLIENT, REDIRECT);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let code = code_of(&p.flow(&s.op, CLIENT, REDIRECT, &short_challenge), REDIRECT);
    assert_eq!(p.redeem(&code, &short, CLIENT, REDIRECT).0, 200);

    // An expired code (authedge: code_lifetime 2s here): refused; the peer's (30 s) still works.
    let a_code = code_of(&a.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    let p_code = code_of(&p.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    std::thread::sleep(Duration::from_millis(3100));
    let (status, v) = a.redeem(&a_code, &verifier, CLIENT, REDIRECT);
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(p.redeem(&p_code, &verifier, CLIENT, REDIRECT).0, 200);
}

#[test]
fn authorize_and_token_requests_are_checked() {
    let s = Setup::start("");
    let a = s.authedge();
    let (_, challenge) = pkce_pair(43);
    let get = |params: &[(&str, &str)]| Browser::new(&s.op.base).get(&a.authorize_url(params));
    let base = Proxy::params(CLIENT, REDIRECT, &challenge);
    assert_eq!(get(&base).status, 302);
    let plus = format!("{}+", &challenge[..42]);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("unknown client", replace(&base, "client_id", "nobody")),
        (
            "other client's uri",
            replace(&base, "redirect_uri", OTHER_REDIRECT),
        ),
        (
            "prefix of a uri",
            replace(&base, "redirect_uri", "http://127.0.0.1:9/c"),
        ),
        ("response_type", replace(&base, "response_type", "token")),
        (
            "short challenge",
            replace(&base, "code_challenge", &challenge[..42]),
        ),
        ("bad charset", replace(&base, "code_challenge", &plus)),
        (
            "request object",
            [base.clone(), vec![("request", "x.y.z")]].concat(),
        ),
        (
            "dup client_id",
            [base.clone(), vec![("client_id", CLIENT)]].concat(),
        ),
        (
            "dup redirect_uri",
            [base.clone(), vec![("redirect_uri", REDIRECT)]].concat(),
        ),
        (
            "dup scope",
            [base.clone(), vec![("scope", "admin")]].concat(),
        ),
    ];
    for (what, params) in cases {
        let step = get(&params);
        assert_eq!(
            (step.status, step.location),
            (400, None),
            "{what}: {}",
            step.body
        );
    }
    // The callback refuses a missing or foreign state, and duplicated parameters.
    let c = client();
    for qs in ["", "state=x&code=y", "state=a&state=b&code=c"] {
        let r = c
            .get(a.base.clone() + "/oauth/callback?" + qs)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{qs}");
        assert!(r.headers().get("location").is_none());
    }
    // Token endpoint: grant types, missing fields, duplicates, method, content type.
    let (status, v, _) = a.token(&[("grant_type", "password")]);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, v, _) = a.token(&[("grant_type", "authorization_code"), ("client_id", CLIENT)]);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, v, _) = a.token(&[
        ("grant_type", "authorization_code"),
        ("client_id", "nobody"),
    ]);
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
    let (status, _, _) = a.token(&[
        ("grant_type", "authorization_code"),
        ("grant_type", "refresh_token"),
    ]);
    assert_eq!(status, 400);
    let r = c.get(a.base.clone() + "/oauth/token").send().unwrap();
    assert_eq!(r.status(), 405);
    let r = c
        .post(a.base.clone() + "/oauth/token")
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"authorization_code"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // The seed's spelling of the authorize path is served too.
    let url = a
        .authorize_url(&base)
        .replace("/oauth/authorize", "/oauth/authorization");
    assert_eq!(Browser::new(&s.op.base).get(&url).status, 302);
}

fn replace<'a>(
    params: &[(&'a str, &'a str)],
    name: &str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    params
        .iter()
        .map(|&(k, v)| if k == name { (k, value) } else { (k, v) })
        .collect()
}

#[test]
fn an_error_from_the_provider_goes_back_to_the_client() {
    let s = Setup::start("");
    let a = s.authedge();
    let (_, challenge) = pkce_pair(43);
    let mut b = Browser::new(&s.op.base);
    let step = b.get(&a.authorize_url(&Proxy::params(CLIENT, REDIRECT, &challenge)));
    let state = q(&step.location.unwrap(), "state").unwrap();
    let cb = format!(
        "{}/oauth/callback?error=access_denied&error_description={}&state={}",
        a.base,
        enc("the user said no"),
        enc(&state)
    );
    let step = b.get(&cb);
    assert_eq!(step.status, 302);
    let back = step.location.unwrap();
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(q(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(
        q(&back, "error_description").as_deref(),
        Some("the user said no")
    );
    assert_eq!(q(&back, "state").as_deref(), Some("client-state-1"));
    assert!(q(&back, "code").is_none());
}

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

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
