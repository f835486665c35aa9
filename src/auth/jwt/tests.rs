//! Unit tests of the jwt mode: hostile tokens (research E1), the claims policy, keys, the
//! verified-token cache, and the Wycheproof / RFC 7520 JWS vectors.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use serde_json::{json, Value};

use super::token::{self, split};
use super::{build, signature_ok, JwtConfig};
use crate::auth::{AuthFilter, DenyReason, Outcome, RequestView};
use crate::metrics::Metrics;
use crate::snapshot::Warm;
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

async fn filter(extra: &str) -> Arc<dyn AuthFilter> {
    try_filter(extra).await.unwrap()
}

async fn try_filter(extra: &str) -> Result<Arc<dyn AuthFilter>, crate::config::Problems> {
    let yaml = format!(
        "providers:\n  - issuer: {ISS}\n    keys_file: {}\n{extra}",
        fixture("rsa.pub.pem")
    );
    let cfg: JwtConfig = serde_norway::from_str(&yaml).unwrap();
    let warm = Warm::new(
        tokio::runtime::Handle::current(),
        Arc::new(Metrics::new().unwrap()),
        true,
    )
    .unwrap();
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

#[tokio::test]
async fn good_token_gives_identity_and_mapped_headers() {
    let f = filter(
        "audience: api\nscopes: [read]\nclaim_headers: {tenant: X-Tenant, groups: X-Groups}\n",
    )
    .await;
    let o = outcome(&f, &rs256(&claims())).await;
    let id = allowed(&o);
    assert_eq!(id.subject, "svc");
    assert_eq!(id.issuer.as_deref(), Some(ISS));
    assert_eq!(id.mode, "jwt");
    assert_eq!(id.scopes, vec!["read", "write"]);
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
async fn alg_none_in_every_casing_is_rejected() {
    let f = filter("").await;
    let payload = b64(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE", "", "NoNe "] {
        let header = b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes());
        for sig in ["", "AAAA", rs256(&claims()).rsplit('.').next().unwrap()] {
            let t = format!("{header}.{payload}.{sig}");
            let o = outcome(&f, &t).await;
            assert!(
                matches!(o, Outcome::Deny(ref d) if d.status == StatusCode::UNAUTHORIZED),
                "{alg} {sig}: {o:?}"
            );
        }
        let t = format!("{header}.{payload}");
        denied(&outcome(&f, &t).await, 401, DenyReason::Malformed);
    }
    // Even when an allow-list names it.
    assert!(try_filter("algorithms: [none]\n").await.is_err());
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let body = claims().to_string();
    let pem = read("rsa.pub.pem");
    let der = read("rsa.pub.der");
    let pkcs1 = read("rsa.pkcs1.pem");
    let der_key = DecodingKey::from_rsa_pem(&pem).unwrap();
    let inner = der_key.try_get_as_bytes().unwrap().to_vec();
    for allow in ["", "algorithms: [RS256, HS256]\n"] {
        let f = filter(allow).await;
        for secret in [&pem, &der, &pkcs1, &inner] {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let h = format!(r#"{{"alg":"{alg:?}"}}"#);
                let t = sign_raw(&h, &body, &EncodingKey::from_secret(secret), alg);
                let o = outcome(&f, &t).await;
                assert!(
                    matches!(o, Outcome::Deny(ref d) if d.status == 401),
                    "{allow} {alg:?}: {o:?}"
                );
            }
        }
    }
    // A key set never holds an HMAC key made from a public key.
    let key = VerifyKey {
        kid: None,
        family: AlgorithmFamily::Rsa,
        algs: vec![Algorithm::RS256],
        key: DecodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let t = sign_raw(
        r#"{"alg":"HS256"}"#,
        &body,
        &EncodingKey::from_secret(&inner),
        Algorithm::HS256,
    );
    assert!(!signature_ok(&split(&t, 1 << 20).unwrap(), &key));
}

#[tokio::test]
async fn secret_provider_rejects_rs_and_short_secrets() {
    let secret = "0123456789abcdef0123456789abcdef";
    let yaml = format!("providers:\n  - issuer: {ISS}\n    secret: {{value: {secret}}}\n");
    let cfg: JwtConfig = serde_norway::from_str(&yaml).unwrap();
    let warm = Warm::new(
        tokio::runtime::Handle::current(),
        Arc::new(Metrics::new().unwrap()),
        true,
    )
    .unwrap();
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
async fn embedded_keys_crit_and_jwe_are_rejected() {
    let f = filter("").await;
    let body = claims().to_string();
    let attacker = EncodingKey::from_rsa_pem(&read("rsa2.key")).unwrap();
    for extra in [
        r#""jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}"#,
        r#""jku":"https://evil.example/jwks""#,
        r#""x5u":"https://evil.example/cert""#,
        r#""x5c":["MIIB"]"#,
        r#""crit":["x-unknown"],"x-unknown":1"#,
        r#""crit":["exp"]"#,
        r#""b64":false,"crit":["b64"]"#,
        r#""zip":"DEF""#,
    ] {
        let h = format!(r#"{{"alg":"RS256",{extra}}}"#);
        for key in [&rsa(), &attacker] {
            let t = sign_raw(&h, &body, key, Algorithm::RS256);
            denied(&outcome(&f, &t).await, 401, DenyReason::Malformed);
        }
    }
    let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d";
    denied(&outcome(&f, jwe).await, 401, DenyReason::Malformed);
    denied(&outcome(&f, "a.b").await, 401, DenyReason::Malformed);
    denied(&outcome(&f, "...").await, 401, DenyReason::Malformed);
}

#[tokio::test]
async fn claims_of_the_wrong_type_are_rejected() {
    let f = filter("audience: api\n").await;
    let cases: Vec<(&str, Value)> = vec![
        ("exp", json!("never")),
        ("exp", json!(1e300)),
        ("exp", json!(now() as f64 + 300.5)),
        ("exp", json!(99_999_999_999_999i64)),
        ("exp", json!(-1)),
        ("exp", Value::Null),
        ("exp", json!(true)),
        ("exp", json!({"t": 1})),
        ("nbf", json!("99999999999")),
        ("iat", json!(1.5)),
        ("aud", json!(42)),
        ("aud", json!({"a": "api"})),
        ("aud", json!([["api"]])),
        ("aud", json!(["api", 1])),
        ("iss", json!([ISS])),
        ("sub", json!(7)),
        ("scope", json!(["read"])),
        ("scp", json!(5)),
    ];
    for (k, v) in cases {
        let mut c = claims();
        c[k] = v.clone();
        denied(&outcome(&f, &rs256(&c)).await, 401, DenyReason::Malformed);
    }
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    denied(&outcome(&f, &rs256(&c)).await, 401, DenyReason::Malformed);
    // `exp` beyond 2^64 is a float in JSON: rejected, not saturated.
    let raw = claims().to_string().replacen(
        &format!("\"exp\":{}", now() + 300),
        "\"exp\":184467440737095516160",
        1,
    );
    let t = sign_raw(r#"{"alg":"RS256"}"#, &raw, &rsa(), Algorithm::RS256);
    denied(&outcome(&f, &t).await, 401, DenyReason::Malformed);
}

#[tokio::test]
async fn duplicate_keys_and_non_object_payloads_are_rejected() {
    let f = filter("").await;
    let exp = now() + 300;
    let dup = format!(r#"{{"iss":"{ISS}","sub":"a","sub":"admin","exp":{exp}}}"#);
    denied(
        &outcome(
            &f,
            &sign_raw(r#"{"alg":"RS256"}"#, &dup, &rsa(), Algorithm::RS256),
        )
        .await,
        401,
        DenyReason::Malformed,
    );
    let dup_iss = format!(r#"{{"iss":"https://evil","iss":"{ISS}","exp":{exp}}}"#);
    denied(
        &outcome(
            &f,
            &sign_raw(r#"{"alg":"RS256"}"#, &dup_iss, &rsa(), Algorithm::RS256),
        )
        .await,
        401,
        DenyReason::Malformed,
    );
    let body = claims().to_string();
    let dup_h = r#"{"alg":"HS256","alg":"RS256"}"#;
    denied(
        &outcome(&f, &sign_raw(dup_h, &body, &rsa(), Algorithm::RS256)).await,
        401,
        DenyReason::Malformed,
    );
    let nested = format!(r#"{{"iss":"{ISS}","exp":{exp},"o":{{"a":1,"a":2}}}}"#);
    denied(
        &outcome(
            &f,
            &sign_raw(r#"{"alg":"RS256"}"#, &nested, &rsa(), Algorithm::RS256),
        )
        .await,
        401,
        DenyReason::Malformed,
    );
    for p in ["[]", "\"x\"", "1", "null", "", "{", "not json"] {
        denied(
            &outcome(
                &f,
                &sign_raw(r#"{"alg":"RS256"}"#, p, &rsa(), Algorithm::RS256),
            )
            .await,
            401,
            DenyReason::Malformed,
        );
    }
    denied(
        &outcome(&f, &sign_raw("[]", &body, &rsa(), Algorithm::RS256)).await,
        401,
        DenyReason::Malformed,
    );
}

#[tokio::test]
async fn oversized_tokens_are_rejected_before_parsing() {
    let f = filter("").await;
    let big = "a".repeat(1 << 20);
    denied(&outcome(&f, &big).await, 401, DenyReason::TooLarge);
    let dots = ".".repeat(10_000);
    denied(&outcome(&f, &dots).await, 401, DenyReason::TooLarge);
    let mut c = claims();
    c["pad"] = json!("x".repeat(9000));
    denied(&outcome(&f, &rs256(&c)).await, 401, DenyReason::TooLarge);
    // Deeply nested JSON within the size limit fails cleanly.
    let deep = format!(
        r#"{{"iss":"{ISS}","exp":{},"d":{}1{}}}"#,
        now() + 60,
        "[".repeat(3000),
        "]".repeat(3000)
    );
    let t = sign_raw(r#"{"alg":"RS256"}"#, &deep, &rsa(), Algorithm::RS256);
    assert!(matches!(
        outcome(&filter("max_token_bytes: 60000\n").await, &t).await,
        Outcome::Deny(_)
    ));
}

#[tokio::test]
async fn tampered_signature_and_wrong_key() {
    let f = filter("").await;
    let t = rs256(&claims());
    let (msg, sig) = t.rsplit_once('.').unwrap();
    let mut s = URL_SAFE_NO_PAD.decode(sig).unwrap();
    s[10] ^= 1;
    denied(
        &outcome(&f, &format!("{msg}.{}", b64(&s))).await,
        401,
        DenyReason::BadSignature,
    );
    // A changed payload under the old signature.
    let mut c = claims();
    c["sub"] = json!("admin");
    let forged = format!(
        "{}.{}.{sig}",
        msg.split('.').next().unwrap(),
        b64(c.to_string().as_bytes())
    );
    denied(&outcome(&f, &forged).await, 401, DenyReason::BadSignature);
    let other = sign_raw(
        r#"{"alg":"RS256"}"#,
        &claims().to_string(),
        &EncodingKey::from_rsa_pem(&read("rsa2.key")).unwrap(),
        Algorithm::RS256,
    );
    denied(&outcome(&f, &other).await, 401, DenyReason::BadSignature);
    // Non-canonical base64 in the signature.
    denied(
        &outcome(&f, &format!("{t}=")).await,
        401,
        DenyReason::BadSignature,
    );
}

#[tokio::test]
async fn policy_time_audience_scope_subject_claims() {
    let f = filter("audience: [api, other]\nscopes: [read]\nleeway: 10s\n").await;
    let mut c = claims();
    c["exp"] = json!(now() - 11);
    denied(&outcome(&f, &rs256(&c)).await, 401, DenyReason::Expired);
    c["exp"] = json!(now() - 5);
    allowed(&outcome(&f, &rs256(&c)).await);
    let mut c = claims();
    c["nbf"] = json!(now() + 30);
    denied(&outcome(&f, &rs256(&c)).await, 401, DenyReason::NotYetValid);
    let mut c = claims();
    c["iat"] = json!(now() + 30);
    denied(&outcome(&f, &rs256(&c)).await, 401, DenyReason::NotYetValid);
    let mut c = claims();
    c["aud"] = json!(["x", "other"]);
    allowed(&outcome(&f, &rs256(&c)).await);
    for aud in [json!("x"), json!([]), json!(""), json!(["API"])] {
        c["aud"] = aud;
        denied(
            &outcome(&f, &rs256(&c)).await,
            401,
            DenyReason::WrongAudience,
        );
    }
    c.as_object_mut().unwrap().remove("aud");
    denied(
        &outcome(&f, &rs256(&c)).await,
        401,
        DenyReason::WrongAudience,
    );
    let mut c = claims();
    c["scope"] = json!("write");
    let o = outcome(&f, &rs256(&c)).await;
    denied(&o, 403, DenyReason::InsufficientScope);
    if let Outcome::Deny(d) = &o {
        let www = &d
            .headers
            .iter()
            .find(|(n, _)| n == http::header::WWW_AUTHENTICATE)
            .unwrap()
            .1;
        assert!(www
            .to_str()
            .unwrap()
            .contains(r#"error="insufficient_scope""#));
    }
    let mut c = claims();
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["read"]);
    allowed(&outcome(&f, &rs256(&c)).await);
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    denied(&outcome(&f, &rs256(&c)).await, 401, DenyReason::WrongIssuer);
    c["iss"] = json!(format!("{ISS}/"));
    denied(&outcome(&f, &rs256(&c)).await, 401, DenyReason::WrongIssuer);

    let g =
        filter("subject: svc\nclaims: {tenant: acme, groups: b}\ntyp: application/at+jwt\nmax_lifetime: 10m\n").await;
    allowed(&outcome(&g, &rs256(&claims())).await);
    let mut c = claims();
    c["sub"] = json!("other");
    denied(
        &outcome(&g, &rs256(&c)).await,
        403,
        DenyReason::WrongSubject,
    );
    let mut c = claims();
    c["tenant"] = json!("evil");
    denied(
        &outcome(&g, &rs256(&c)).await,
        403,
        DenyReason::ClaimMismatch,
    );
    let mut c = claims();
    c["groups"] = json!(["a"]);
    denied(
        &outcome(&g, &rs256(&c)).await,
        403,
        DenyReason::ClaimMismatch,
    );
    let plain = sign_raw(
        r#"{"alg":"RS256","typ":"JWT"}"#,
        &claims().to_string(),
        &rsa(),
        Algorithm::RS256,
    );
    denied(&outcome(&g, &plain).await, 401, DenyReason::WrongType);
    let mut c = claims();
    c["exp"] = json!(now() + 3600);
    denied(
        &outcome(&g, &rs256(&c)).await,
        401,
        DenyReason::TooLongLived,
    );
    c.as_object_mut().unwrap().remove("iat");
    c["exp"] = json!(now() + 60);
    denied(
        &outcome(&g, &rs256(&c)).await,
        401,
        DenyReason::TooLongLived,
    );
}

#[tokio::test]
async fn algorithm_allow_list_and_es256() {
    let yaml = format!(
        "providers:\n  - issuer: {ISS}\n    keys_file: {}\n  - issuer: https://ec.test\n    keys_file: {}\n",
        fixture("rsa.pub.pem"),
        fixture("ec.pub.pem")
    );
    let warm = Warm::new(
        tokio::runtime::Handle::current(),
        Arc::new(Metrics::new().unwrap()),
        true,
    )
    .unwrap();
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
    let warm = Warm::new(
        tokio::runtime::Handle::current(),
        Arc::new(Metrics::new().unwrap()),
        true,
    )
    .unwrap();
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
async fn verified_cache_skips_signature_but_not_policy() {
    let f = filter("scopes: [admin]\n").await;
    let t = rs256(&claims());
    denied(&outcome(&f, &t).await, 403, DenyReason::InsufficientScope);
    // Second time: served from the cache, and the policy still applies.
    denied(&outcome(&f, &t).await, 403, DenyReason::InsufficientScope);
    let open = filter("").await;
    allowed(&outcome(&open, &t).await);
    allowed(&outcome(&open, &t).await);
    let c = super::cache::VerifiedCache::new(32);
    let v = Arc::new(super::cache::Verified {
        claims: token::claims(claims().as_object().unwrap().clone()).unwrap(),
        typ: None,
        alg: Algorithm::RS256,
        kid: None,
        provider: "p".into(),
    });
    let k = super::cache::key(&t);
    c.put(k, v.clone(), now());
    assert!(c.get(&k, now(), 0).is_some());
    assert!(
        c.get(&k, now() + 10_000, 0).is_none(),
        "expired entries are not served"
    );
    for i in 0..1000 {
        c.put(super::cache::key(&format!("t{i}")), v.clone(), now());
    }
    assert!(c.len() <= 32, "bounded: {}", c.len());
}

#[tokio::test]
async fn config_problems_name_their_key_path() {
    let warm = Warm::new(
        tokio::runtime::Handle::current(),
        Arc::new(Metrics::new().unwrap()),
        true,
    )
    .unwrap();
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

/// Wycheproof's JWS vectors: a test marked invalid must never verify; valid ones verify unless
/// we refuse the key or algorithm on purpose (RSA < 2048, P-521, an `alg` the key does not
/// declare).
#[test]
fn wycheproof_jws_vectors() {
    let doc: Value = serde_json::from_slice(&read("wycheproof_jws.json")).unwrap();
    let (mut accepted_valid, mut checked_invalid) = (0, 0);
    // The file lists one JWS both as valid (tcId 357) and invalid (367, 370): such contradictory
    // entries are skipped.
    let valid: std::collections::HashSet<&str> = doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
        .filter(|t| t["result"] == "valid")
        .filter_map(|t| t["jws"].as_str())
        .collect();
    for g in doc["testGroups"].as_array().unwrap() {
        let key: Option<VerifyKey> = if let Some(public) = g.get("public") {
            parse_jwk(
                public,
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            )
            .ok()
        } else {
            let p = &g["private"];
            (p["kty"] == "oct").then(|| VerifyKey {
                kid: None,
                family: AlgorithmFamily::Hmac,
                algs: vec![Algorithm::HS256],
                key: DecodingKey::from_secret(
                    &URL_SAFE_NO_PAD.decode(p["k"].as_str().unwrap()).unwrap(),
                ),
            })
        };
        for t in g["tests"].as_array().unwrap() {
            let Some(jws) = t["jws"].as_str() else {
                continue;
            };
            let ok = match (&key, split(jws, 1 << 20)) {
                (Some(k), Ok(parsed)) => signature_ok(&parsed, k),
                _ => false,
            };
            match t["result"].as_str().unwrap() {
                "invalid" if valid.contains(jws) => {}
                "invalid" => {
                    checked_invalid += 1;
                    assert!(!ok, "tcId {} ({}) verified", t["tcId"], t["comment"]);
                }
                "valid" if ok => accepted_valid += 1,
                _ => {}
            }
        }
    }
    assert!(checked_invalid > 300, "{checked_invalid}");
    assert!(accepted_valid >= 30, "{accepted_valid}");
}

/// RFC 7520 §4 examples: each verifies with its key (ES512 is not offered: refused), and each
/// tampered copy never verifies.
#[test]
fn rfc7520_examples() {
    let doc: Value = serde_json::from_slice(&read("rfc7520_jws.json")).unwrap();
    let keys = doc["keys"].as_object().unwrap();
    let all_rsa = [Algorithm::RS256, Algorithm::PS384];
    let mut verified = 0;
    for case in doc["jws_compact"].as_array().unwrap() {
        let jwk = &keys[case["key"].as_str().unwrap()];
        let key = if jwk["kty"] == "oct" {
            Some(VerifyKey {
                kid: None,
                family: AlgorithmFamily::Hmac,
                algs: vec![Algorithm::HS256],
                key: DecodingKey::from_secret(
                    &URL_SAFE_NO_PAD.decode(jwk["k"].as_str().unwrap()).unwrap(),
                ),
            })
        } else {
            let mut j = jwk.clone();
            j.as_object_mut().unwrap().remove("alg");
            parse_jwk(&j, &all_rsa).ok()
        };
        let ok = match (key, split(case["jws"].as_str().unwrap(), 1 << 20)) {
            (Some(k), Ok(parsed)) => signature_ok(&parsed, &k),
            _ => false,
        };
        let section = case["section"].as_str().unwrap();
        match (
            case["expect"].as_str().unwrap(),
            case["alg"].as_str().unwrap(),
        ) {
            ("valid", "ES512") => assert!(!ok, "{section}: ES512 is not supported"),
            ("valid", _) => {
                assert!(ok, "{section}");
                verified += 1;
            }
            _ => assert!(!ok, "{section}"),
        }
    }
    assert_eq!(verified, 3);
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
    let warm = Warm::new(
        tokio::runtime::Handle::current(),
        Arc::new(Metrics::new().unwrap()),
        true,
    )
    .unwrap();
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
    assert!(bad.is_ok(), "parses; build reports the problem");
}

#[tokio::test]
async fn eddsa_tokens_verify_against_an_ed25519_key() {
    let yaml = format!(
        "providers:\n  - issuer: {ISS}\n    keys_file: {}\n",
        fixture("ed25519.pub.pem")
    );
    let warm = Warm::new(
        tokio::runtime::Handle::current(),
        Arc::new(Metrics::new().unwrap()),
        true,
    )
    .unwrap();
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
