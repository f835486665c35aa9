//! Hostile tokens (research E1): `alg: none`, HS/RS confusion, embedded keys, `crit`, JWE,
//! claims of the wrong type, duplicate JSON keys, non-object payloads, oversized tokens.

use super::*;

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
