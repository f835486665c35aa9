//! Helpers of the pkce tests: the edge's config, the provider's client, PKCE pairs, and one
//! proxy under test (authedge or the peer) driven through the whole client flow.
#![allow(dead_code)]

use std::process::Child;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{client, free_port, Edge};
use crate::provider::{Browser, Peer, Provider};

pub const CLIENT: &str = "cli";
pub const OTHER: &str = "other";
pub const REDIRECT: &str = "http://127.0.0.1:9/cb";
pub const OTHER_REDIRECT: &str = "http://127.0.0.1:9/other";
pub const EVIL: &str = "http://evil.test/steal";
pub const SEALING_KEY: &str = "an-edge-sealing-key-of-32-bytes-!!";
pub const OUR_DESCRIPTION: &str = "invalid, expired or already used code";

pub fn edge_yaml(op_port: u16, extra: &str) -> String {
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
pub fn provider_clients(callbacks: &[String]) -> Value {
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
pub fn pkce_pair(len: usize) -> (String, String) {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    let v: String = (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect();
    let c = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
    (v, c)
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn query_of(url: &str) -> Vec<(String, String)> {
    let u = url::Url::parse(url).expect("url");
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn q(url: &str, name: &str) -> Option<String> {
    query_of(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// One proxy under test: where its endpoints are.
pub struct Proxy {
    pub base: String,
    pub authorize: &'static str,
    pub token: &'static str,
}

impl Proxy {
    pub fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        let q: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        format!("{}{}?{}", self.base, self.authorize, q.join("&"))
    }

    pub fn params<'a>(
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
    pub fn to_callback(&self, op: &Provider, params: &[(&str, &str)]) -> (Browser, String) {
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
    pub fn flow(&self, op: &Provider, client_id: &str, redirect: &str, challenge: &str) -> String {
        let params = Proxy::params(client_id, redirect, challenge);
        let (mut b, callback) = self.to_callback(op, &params);
        let step = b.get(&callback);
        assert_eq!(step.status, 302, "callback: {}", step.body);
        step.location.expect("redirect to the client")
    }

    pub fn token(&self, form: &[(&str, &str)]) -> (u16, Value, reqwest::header::HeaderMap) {
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

    pub fn redeem(
        &self,
        code: &str,
        verifier: &str,
        client_id: &str,
        redirect: &str,
    ) -> (u16, Value) {
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

pub struct Setup {
    pub op: Provider,
    pub edge: Edge,
    pub peer: Peer,
}

impl Setup {
    pub fn start(extra: &str) -> Setup {
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

    pub fn authedge(&self) -> Proxy {
        Proxy {
            base: format!("http://127.0.0.1:{}", self.edge.port),
            authorize: "/oauth/authorize",
            token: "/oauth/token",
        }
    }

    pub fn peer(&self) -> Proxy {
        Proxy {
            base: format!("http://127.0.0.1:{}", self.peer.port),
            authorize: "/oauth/authorize",
            token: "/oauth/token",
        }
    }
}

pub fn code_of(client_redirect: &str, redirect: &str) -> String {
    assert!(client_redirect.starts_with(redirect), "{client_redirect}");
    assert_eq!(
        q(client_redirect, "state").as_deref(),
        Some("client-state-1")
    );
    q(client_redirect, "code").expect("code")
}

pub fn replace<'a>(
    params: &[(&'a str, &'a str)],
    name: &str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    params
        .iter()
        .map(|&(k, v)| if k == name { (k, value) } else { (k, v) })
        .collect()
}

pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
