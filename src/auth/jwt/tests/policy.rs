//! The claims policy (time, audience, scopes, subject, required claims, typ, lifetime) and the
//! verified-token cache, which skips the signature but never the policy.

use super::*;

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
async fn verified_cache_skips_signature_but_not_policy() {
    let f = filter("scopes: [admin]\n").await;
    let t = rs256(&claims());
    denied(&outcome(&f, &t).await, 403, DenyReason::InsufficientScope);
    // Second time: served from the cache, and the policy still applies.
    denied(&outcome(&f, &t).await, 403, DenyReason::InsufficientScope);
    let open = filter("").await;
    allowed(&outcome(&open, &t).await);
    allowed(&outcome(&open, &t).await);
    let c = crate::auth::jwt::cache::VerifiedCache::new(32);
    let v = || crate::auth::jwt::cache::Verified {
        claims: token::claims(claims().as_object().unwrap().clone()).unwrap(),
        typ: None,
        alg: Algorithm::RS256,
        kid: None,
        provider: "p".into(),
        identity: Default::default(),
    };
    c.put(&t, v(), now(), 0);
    assert!(c.get(&t, now(), 0).is_some());
    let mut forged = t.clone().into_bytes();
    forged[t.len() / 2] ^= 1;
    let forged = String::from_utf8(forged).unwrap();
    assert!(
        c.get(&forged, now(), 0).is_none(),
        "only the exact token is a hit"
    );
    assert!(
        c.get(&t, now() + 10_000, 0).is_none(),
        "expired entries are not served"
    );
    for i in 0..1000 {
        c.put(&format!("t{i}"), v(), now(), 0);
    }
    assert!(c.len() <= 32, "bounded: {}", c.len());
}

/// A token without a `kid` verified against a remote JWKS is never served from the verified-token
/// cache: once its key leaves the provider's JWKS it must stop working, cached or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kidless_tokens_stop_working_when_their_key_leaves_the_jwks() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let jwks = |name: &str| {
        format!(
            r#"{{"keys": [{}]}}"#,
            String::from_utf8(read(name)).unwrap()
        )
    };
    let body = Arc::new(Mutex::new(jwks("rsa.nokid.jwk.json")));
    let hits = Arc::new(AtomicUsize::new(0));
    let url = crate::tokens::jwks::tests::jwks_server(
        body.clone(),
        Arc::new(AtomicBool::new(false)),
        hits.clone(),
    )
    .await;
    let yaml = format!(
        "providers:\n  - issuer: {ISS}\n    jwks_uri: {url}\n    allow_http: true\n    unknown_kid_cooldown: 1s\n"
    );
    let cfg: JwtConfig = serde_norway::from_str(&yaml).unwrap();
    let warm = Warm::new(
        tokio::runtime::Handle::current(),
        Arc::new(Metrics::new().unwrap()),
        false,
    )
    .unwrap();
    let f = build(&cfg, "routes[0].auth[0]", &warm).await.unwrap();
    let t = rs256(&claims());
    allowed(&outcome(&f, &t).await);
    allowed(&outcome(&f, &t).await);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The provider rotates to another key. A token with a kid and an algorithm no held key can
    // verify makes the edge refetch (a kid-less key is a candidate for any kid, so an RS256 token
    // would just fail against the old key without a refetch).
    *body.lock().unwrap() = jwks("rsa2.nokid.jwk.json");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ec = EncodingKey::from_ec_pem(&read("ec.key")).unwrap();
    let other = sign_raw(
        r#"{"alg":"ES256","kid":"rotated"}"#,
        &claims().to_string(),
        &ec,
        Algorithm::ES256,
    );
    assert!(!matches!(outcome(&f, &other).await, Outcome::Allow(_)));
    assert_eq!(hits.load(Ordering::SeqCst), 2, "the unknown kid refetched");
    // The kid-less token verified (and cached) before the rotation is refused now.
    denied(&outcome(&f, &t).await, 401, DenyReason::BadSignature);
}
