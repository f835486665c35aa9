//! Unit tests of the jwt mode. Here: identity, algorithms, keys per issuer, secrets, config
//! problems. `policy`: the claims policy and the verified-token cache. `hostile`: hostile tokens
//! (research E1). `vectors`: Wycheproof and RFC 7520 JWS vectors. The helpers here serve all.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use serde_json::{json, Value};

use super::token::{self, split};
use super::{build, signature_ok, JwtConfig};
use crate::auth::{AuthFilter, DenyReason, Outcome, RequestView};
use crate::context::Warm;
use crate::metrics::Metrics;
use crate::tokens::jwks::{parse_jwk, VerifyKey};

const ISS: &str = "https://issuer.test";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn b64(s: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn now() -> i64 {
    super::now()
}

/// Sign raw header and payload JSON text (so tests can write duplicate keys and odd types).
fn sign_raw(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap();
    format!("{msg}.{sig}")
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read("rsa.key")).unwrap()
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "svc", "aud": "api", "exp": now() + 300, "iat": now(), "scope": "read write",
           "tenant": "acme", "groups": ["a", "b"]})
}

fn rs256(claims: &Value) -> String {
    sign_raw(
        r#"{"alg":"RS256","typ":"at+jwt"}"#,
        &claims.to_string(),
        &rsa(),
        Algorithm::RS256,
    )
}

/// A `Warm` as `authedge check` builds it: no background tasks, its own metrics.
fn dry_warm() -> Warm {
    Warm::new(
        tokio::runtime::Handle::current(),
        Arc::new(Metrics::new().unwrap()),
        true,
    )
    .unwrap()
}

async fn filter(extra: &str) -> Arc<dyn AuthFilter> {
    try_filter(extra).await.unwrap()
}

async fn try_filter(extra: &str) -> Result<Arc<dyn AuthFilter>, crate::config::Problems> {
    let yaml = format!(
        "providers:\n  - issuer: {ISS}\n    keys_file: {}\n{extra}",
        fixture("rsa.pub.pem")
    );
    let cfg: JwtConfig = serde_norway::from_str(&yaml).unwrap();
    let warm = dry_warm();
    build(&cfg, "routes[0].auth[0]", &warm).await
}

async fn run(f: &Arc<dyn AuthFilter>, auth: &[&str]) -> Outcome {
    let mut h = HeaderMap::new();
    for a in auth {
        h.append(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(a).unwrap(),
        );
    }
    let view = RequestView {
        host: None,
        tls: false,
        method: &Method::GET,
        path: "/",
        query: None,
        headers: &h,
        peer: None,
        client_ip: None,
        body: None,
    };
    f.check(&view).await
}

async fn outcome(f: &Arc<dyn AuthFilter>, token: &str) -> Outcome {
    run(f, &[&format!("Bearer {token}")]).await
}

#[track_caller]
fn denied(o: &Outcome, status: u16, reason: DenyReason) {
    match o {
        Outcome::Deny(d) => {
            assert_eq!((d.status.as_u16(), d.reason), (status, reason), "{o:?}");
        }
        other => panic!("expected a denial ({status}, {reason:?}), got {other:?}"),
    }
}

#[track_caller]
fn allowed(o: &Outcome) -> &crate::identity::Identity {
    match o {
        Outcome::Allow(id) => id,
        other => panic!("expected allow, got {other:?}"),
    }
}

mod hostile;
mod policy;
mod vectors;

#[tokio::test]
async fn good_token_gives_identity_and_mapped_headers() {
    let f = filter(
        "audience: api\nscopes: [read]\nclaim_headers: {tenant: X-Tenant, groups: X-Groups}\n",
    )
    .await;
    let o = outcome(&f, &rs256(&claims())).await;
    let id = allowed(&o);
    assert_eq!(id.subject.as_ref().unwrap(), "svc");
    assert_eq!(id.issuer.as_ref().unwrap(), ISS);
    assert_eq!(id.mode, "jwt");
    assert_eq!(id.scopes.as_ref().unwrap(), "read write");
    let hs: Vec<(String, String)> = id
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    assert!(hs.contains(&("x-tenant".into(), "acme".into())), "{hs:?}");
    assert!(hs.contains(&("x-groups".into(), "a,b".into())), "{hs:?}");
    assert_eq!(f.identity_headers().len(), 2);
    assert_eq!(f.credential_headers(), &[http::header::AUTHORIZATION]);
    assert!(f.ready());
}

#[tokio::test]
async fn no_token_is_not_applicable_and_two_headers_are_400() {
    let f = filter("").await;
    assert!(matches!(run(&f, &[]).await, Outcome::NotApplicable));
    assert!(matches!(
        run(&f, &["Basic abc"]).await,
        Outcome::NotApplicable
    ));
    let t = rs256(&claims());
    denied(
        &run(&f, &[&format!("Bearer {t}"), &format!("Bearer {t}")]).await,
        400,
        DenyReason::MultipleCredentials,
    );
    assert_eq!(f.challenge().unwrap(), r#"Bearer realm="authedge""#);
}

#[tokio::test]
async fn secret_provider_rejects_rs_and_short_secrets() {
    let secret = "0123456789abcdef0123456789abcdef";
    let yaml = format!("providers:\n  - issuer: {ISS}\n    secret: {{value: {secret}}}\n");
    let cfg: JwtConfig = serde_norway::from_str(&yaml).unwrap();
    let warm = dry_warm();
    let f = build(&cfg, "r", &warm).await.unwrap();
    let body = claims().to_string();
    let good = sign_raw(
        r#"{"alg":"HS256"}"#,
        &body,
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    );
    allowed(&outcome(&f, &good).await);
    denied(
        &outcome(&f, &rs256(&claims())).await,
        401,
        DenyReason::UnknownKey,
    );
    let short: JwtConfig = serde_norway::from_str(&format!(
        "providers:\n  - issuer: {ISS}\n    secret: {{value: short}}\n"
    ))
    .unwrap();
    let err = build(&short, "routes[1].auth[0]", &warm).await.unwrap_err();
    assert_eq!(err.0[0].path, "routes[1].auth[0].providers[0].secret");
    let pem: JwtConfig = serde_norway::from_str(&format!(
        "providers:\n  - issuer: {ISS}\n    secret: {{file: {}}}\n",
        fixture("rsa.pub.pem")
    ))
    .unwrap();
    let err = build(&pem, "r", &warm).await.unwrap_err();
    assert!(err.0[0].message.contains("not an HMAC secret"), "{err}");
}

#[tokio::test]
async fn algorithm_allow_list_and_es256() {
    let yaml = format!(
        "providers:\n  - issuer: {ISS}\n    keys_file: {}\n  - issuer: https://ec.test\n    keys_file: {}\n",
        fixture("rsa.pub.pem"),
        fixture("ec.pub.pem")
    );
    let warm = dry_warm();
    let cfg: JwtConfig = serde_norway::from_str(&yaml).unwrap();
    let f = build(&cfg, "r", &warm).await.unwrap();
    let ec = EncodingKey::from_ec_pem(&read("ec.key")).unwrap();
    let mut c = claims();
    c["iss"] = json!("https://ec.test");
    let t = sign_raw(r#"{"alg":"ES256"}"#, &c.to_string(), &ec, Algorithm::ES256);
    allowed(&outcome(&f, &t).await);
    // Keys are per issuer: the EC token claiming the RSA issuer finds no EC key there.
    let t2 = sign_raw(
        r#"{"alg":"ES256"}"#,
        &claims().to_string(),
        &ec,
        Algorithm::ES256,
    );
    denied(&outcome(&f, &t2).await, 401, DenyReason::UnknownKey);
    // Psychic signature: r = s = 0.
    let (msg, _) = t.rsplit_once('.').unwrap();
    denied(
        &outcome(&f, &format!("{msg}.{}", b64(&[0u8; 64]))).await,
        401,
        DenyReason::BadSignature,
    );
    // An allow-list without ES256.
    let cfg: JwtConfig = serde_norway::from_str(&format!("{yaml}algorithms: [RS256]\n")).unwrap();
    let g = build(&cfg, "r", &warm).await.unwrap();
    denied(
        &outcome(&g, &t).await,
        401,
        DenyReason::UnsupportedAlgorithm,
    );
    allowed(&outcome(&g, &rs256(&claims())).await);
    // PS256 with the RSA key only when listed.
    let ps = sign_raw(
        r#"{"alg":"PS256"}"#,
        &claims().to_string(),
        &rsa(),
        Algorithm::PS256,
    );
    denied(&outcome(&f, &ps).await, 401, DenyReason::UnknownKey);
    let cfg: JwtConfig =
        serde_norway::from_str(&format!("{yaml}algorithms: [PS256, ES256]\n")).unwrap();
    let h = build(&cfg, "r", &warm).await.unwrap();
    allowed(&outcome(&h, &ps).await);
}

#[tokio::test]
async fn kid_of_one_issuer_never_verifies_another() {
    let dir = tempfile::tempdir().unwrap();
    let jwk = |pem: &str, kid: &str| {
        let k = DecodingKey::from_rsa_pem(&read(pem)).unwrap();
        let (n, e) = super::keys::rsa_public_components(k.try_get_as_bytes().unwrap()).unwrap();
        json!({"keys": [{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64(&n), "e": b64(&e)}]})
    };
    std::fs::write(
        dir.path().join("a.json"),
        jwk("rsa.pub.pem", "k1").to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.json"),
        jwk("rsa2.pub.pem", "k1").to_string(),
    )
    .unwrap();
    let yaml = format!(
        "providers:\n  - issuer: https://a.test\n    keys_file: {}\n  - issuer: https://b.test\n    keys_file: {}\n",
        dir.path().join("a.json").display(),
        dir.path().join("b.json").display()
    );
    let warm = dry_warm();
    let f = build(&serde_norway::from_str(&yaml).unwrap(), "r", &warm)
        .await
        .unwrap();
    let b_key = EncodingKey::from_rsa_pem(&read("rsa2.key")).unwrap();
    let mut c = claims();
    c["iss"] = json!("https://b.test");
    allowed(
        &outcome(
            &f,
            &sign_raw(
                r#"{"alg":"RS256","kid":"k1"}"#,
                &c.to_string(),
                &b_key,
                Algorithm::RS256,
            ),
        )
        .await,
    );
    c["iss"] = json!("https://a.test");
    let forged = sign_raw(
        r#"{"alg":"RS256","kid":"k1"}"#,
        &c.to_string(),
        &b_key,
        Algorithm::RS256,
    );
    denied(&outcome(&f, &forged).await, 401, DenyReason::BadSignature);
    let unknown = sign_raw(
        r#"{"alg":"RS256","kid":"nope"}"#,
        &c.to_string(),
        &rsa(),
        Algorithm::RS256,
    );
    denied(&outcome(&f, &unknown).await, 401, DenyReason::UnknownKey);
}

#[tokio::test]
async fn config_problems_name_their_key_path() {
    let warm = dry_warm();
    let yaml = String::from(
        "providers:\n  - issuer: http://op.example\n  - issuer: x\n    keys_file: /nonexistent\n  - issuer: y\n    jwks_uri: https://y/jwks\n    keys_file: /x\n  - issuer: https://op.example/\naudience: []\nalgorithms: [none, RS256]\nclaim_headers: {a: Host, b: 'bad name'}\nscopes: ['two words']\n",
    );
    let cfg: JwtConfig = serde_norway::from_str(&yaml).unwrap();
    let err = build(&cfg, "routes[1].auth[0]", &warm).await.unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "routes[1].auth[0].providers[0].issuer",
        "routes[1].auth[0].providers[1].keys_file",
        "routes[1].auth[0].providers[2]",
        "routes[1].auth[0].providers[3].issuer",
        "routes[1].auth[0].audience",
        "routes[1].auth[0].algorithms[0]",
        "routes[1].auth[0].claim_headers.a",
        "routes[1].auth[0].claim_headers.b",
        "routes[1].auth[0].scopes[0]",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    let weak = format!(
        "providers:\n  - issuer: {ISS}\n    keys_file: {}\n",
        fixture("rsa1024.pub.pem")
    );
    let err = build(&serde_norway::from_str(&weak).unwrap(), "r", &warm)
        .await
        .unwrap_err();
    assert!(err.0[0].message.contains("2048"), "{err}");
}

/// Through the whole file schema (the `type`-tagged filter list): public keys and an HMAC secret
/// for one issuer; HS tokens meet only the secret.
#[tokio::test]
async fn secret_and_public_keys_for_one_issuer_in_a_full_config() {
    let secret = "0123456789abcdef0123456789abcdef";
    let yaml = format!(
        "listeners: [{{address: '127.0.0.1:1'}}]\nupstreams: {{up: {{echo: true}}}}\nroutes:\n  - path: /\n    upstream: up\n    auth:\n      - type: jwt\n        providers:\n          - issuer: {ISS}\n            keys_file: {}\n            secret: {{value: {secret}}}\n",
        fixture("rsa.pub.pem")
    );
    let cfg = crate::config::parse(&yaml).unwrap();
    let crate::config::schema::FilterConfig::Jwt(j) = &cfg.routes[0].auth[0] else {
        panic!("not a jwt filter")
    };
    let warm = dry_warm();
    let f = build(j, "routes[0].auth[0]", &warm).await.unwrap();
    let body = claims().to_string();
    let hs = sign_raw(
        r#"{"alg":"HS256"}"#,
        &body,
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    );
    allowed(&outcome(&f, &hs).await);
    allowed(&outcome(&f, &rs256(&claims())).await);
    let confused = sign_raw(
        r#"{"alg":"HS256"}"#,
        &body,
        &EncodingKey::from_secret(&read("rsa.pub.pem")),
        Algorithm::HS256,
    );
    denied(&outcome(&f, &confused).await, 401, DenyReason::BadSignature);
    let bad: Result<crate::config::schema::FileConfig, _> = crate::config::parse(
        &yaml
            .replace("{value: ", "{value: x, env: Y, file: ")
            .replace(secret, "z"),
    );
    let Err(problems) = bad else {
        panic!("a secret with several sources is refused when parsed")
    };
    assert!(
        problems
            .to_string()
            .contains("exactly one of value, env or file"),
        "{problems}"
    );
}

#[tokio::test]
async fn eddsa_tokens_verify_against_an_ed25519_key() {
    let yaml = format!(
        "providers:\n  - issuer: {ISS}\n    keys_file: {}\n",
        fixture("ed25519.pub.pem")
    );
    let warm = dry_warm();
    let f = build(&serde_norway::from_str(&yaml).unwrap(), "r", &warm)
        .await
        .unwrap();
    let key = EncodingKey::from_ed_pem(&read("ed25519.key")).unwrap();
    let t = sign_raw(
        r#"{"alg":"EdDSA"}"#,
        &claims().to_string(),
        &key,
        Algorithm::EdDSA,
    );
    allowed(&outcome(&f, &t).await);
    let (msg, _) = t.rsplit_once('.').unwrap();
    denied(
        &outcome(&f, &format!("{msg}.{}", b64(&[0u8; 64]))).await,
        401,
        DenyReason::BadSignature,
    );
    denied(
        &outcome(&f, &rs256(&claims())).await,
        401,
        DenyReason::UnknownKey,
    );
}
