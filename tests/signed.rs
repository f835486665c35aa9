//! The `signed` mode against the real quay jwtproxy (`../shared/peers/bin/jwtproxy`, built from
//! upstream source): its signer signs requests that authedge's verifier checks; replays and bad
//! tokens fail, and no refused token records a nonce. Also a jwtproxy config file run by
//! `authedge run`. A missing jwtproxy binary or openssl fails the tests; nothing is skipped.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{client, echo_json, free_port, wait_for, EchoUpstream, Edge};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn jwtproxy_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/bin/jwtproxy");
    assert!(
        p.exists(),
        "the real jwtproxy binary is needed at {} (see ../shared/peers/README.md)",
        p.display()
    );
    p
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A PKCS#1 RSA private key (what jwtproxy's preshared signer reads) and its public key as SPKI
/// and as PKCS#1.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let st = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stderr(Stdio::null())
                .status()
                .expect("openssl is needed (apt-get install openssl)");
            assert!(st.success(), "openssl {args:?}");
        };
        run(&["genrsa", "-traditional", "-out", "k.pem", "2048"]);
        run(&["rsa", "-in", "k.pem", "-pubout", "-out", "pub.pem"]);
        run(&[
            "rsa",
            "-in",
            "k.pem",
            "-RSAPublicKey_out",
            "-out",
            "pub1.pem",
        ]);
        Keys { dir }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn encoding(&self) -> EncodingKey {
        EncodingKey::from_rsa_pem(&std::fs::read(self.path("k.pem")).unwrap()).unwrap()
    }
}

struct Jwtproxy {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Jwtproxy {
    /// A jwtproxy signer only (preshared key `k1`, issuer `svc-a`).
    fn signer(keys: &Keys) -> Jwtproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = format!(
            "jwtproxy:\n  signer_proxy:\n    listen_addr: 127.0.0.1:{port}\n    signer:\n      issuer: svc-a\n      private_key:\n        type: preshared\n        options:\n          key_id: k1\n          private_key_path: {}\n",
            keys.path("k.pem")
        );
        let file = dir.path().join("jwtproxy.yaml");
        std::fs::write(&file, cfg).unwrap();
        let child = Command::new(jwtproxy_bin())
            .arg("-config")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jwtproxy");
        wait_for(
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "jwtproxy signer to listen",
        );
        Jwtproxy {
            port,
            child,
            _dir: dir,
        }
    }

    /// A client that sends every request through the signer.
    fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .proxy(reqwest::Proxy::http(format!("http://127.0.0.1:{}", self.port)).unwrap())
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .unwrap()
    }
}

impl Drop for Jwtproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

fn mint(keys: &Keys, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    h.typ = Some("JWT".into());
    jsonwebtoken::encode(&h, claims, &keys.encoding()).unwrap()
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
    let ok = mint(&keys, "k1", &good);
    let (head, sig) = ok.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    bad.push((
        "tampered signature",
        format!("{head}.{}", URL_SAFE_NO_PAD.encode(&sig)),
    ));
    bad.push((
        "wrong audience",
        mint(&keys, "k1", &with("aud", json!("http://127.0.0.1:1"))),
    ));
    let mut expired = with("exp", json!(t - 120));
    expired["iat"] = json!(t - 200);
    expired["nbf"] = json!(t - 200);
    bad.push(("expired", mint(&keys, "k1", &expired)));
    bad.push((
        "exp - iat over max_ttl",
        mint(&keys, "k1", &with("exp", json!(t + 301))),
    ));
    bad.push(("unknown kid", mint(&keys, "k2", &good)));
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
    bad.push(("missing jti", mint(&keys, "k1", &no_jti)));

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
