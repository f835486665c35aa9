//! The token and admin endpoints: limits before Argon2, admin revocation.

use super::*;

#[tokio::test]
async fn auth_limits_trip_before_argon2() {
    let w = warm();
    let yaml = realm_yaml(
        "auth_rate_limit:\n  per_username: {requests_per_second: 0.001, burst: 3}\n  per_username_global: {requests_per_second: 0.001, burst: 5}\n  per_client: {requests_per_second: 0.001, burst: 5}\n",
    );
    let (_, eps) = build(&yaml, &w).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            login(&eps, "username=alice&password=bad", "127.0.1.1")
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked out from that network, even with the right password...
    let (s, b, h) = login(&eps, "username=alice&password=alice-pw", "127.0.1.1").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert!(
        h.get(http::header::RETRY_AFTER)
            .unwrap()
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // ...but not from another one.
    let (s, b, _) = login(&eps, "username=alice&password=alice-pw", "127.0.1.9").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The global ceiling (5) counts attempts from every network: 4 so far.
    assert_eq!(
        login(&eps, "username=alice&password=bad", "127.0.1.10")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&eps, "username=alice&password=alice-pw", "127.0.1.11")
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // One client spraying usernames.
    for i in 0..5 {
        assert_ne!(
            login(&eps, &format!("username=u{i}&password=x"), "127.0.2.1")
                .await
                .0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(
        login(&eps, "username=u9&password=x", "127.0.2.1").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn admin_endpoint() {
    let w = warm();
    let (realm, eps) = build(
        &realm_yaml("admin_secret: !value admin-secret-0123456789\n"),
        &w,
    )
    .await
    .unwrap();
    let admin = endpoint(&eps, "/auth/admin/revoke");
    let (_, b, _) = login(
        &eps,
        r#"{"username":"alice","password":"alice-pw"}"#,
        "127.0.0.1",
    )
    .await;
    let token = b["token"].as_str().unwrap().to_string();
    for hv in [None, Some(""), Some("wrong")] {
        let mut h = HeaderMap::new();
        if let Some(v) = hv {
            h.insert("x-admin-secret", v.parse().unwrap());
        }
        let o = admin
            .handle(&view(
                &Method::POST,
                &h,
                br#"{"user":"alice"}"#,
                "127.0.0.1",
            ))
            .await;
        assert_eq!(reply(o).0, StatusCode::UNAUTHORIZED);
    }
    let mut h = HeaderMap::new();
    h.insert("x-admin-secret", "admin-secret-0123456789".parse().unwrap());
    let o = admin
        .handle(&view(
            &Method::POST,
            &h,
            br#"{"user":"nobody"}"#,
            "127.0.0.1",
        ))
        .await;
    assert_eq!(reply(o).0, StatusCode::NOT_FOUND);
    let o = admin
        .handle(&view(
            &Method::POST,
            &h,
            br#"{"user":"alice"}"#,
            "127.0.0.1",
        ))
        .await;
    assert_eq!(reply(o).0, StatusCode::OK);
    let claims = realm.keyring.open(&token, now_ms()).unwrap();
    assert!(realm
        .revocations
        .is_revoked(&claims.token_id, &claims.user_id, claims.issued_at_ms));
    // A login right after (same millisecond or not) gets a token that works.
    let (_, b, _) = login(
        &eps,
        r#"{"username":"alice","password":"alice-pw"}"#,
        "127.0.0.1",
    )
    .await;
    let fresh = realm
        .keyring
        .open(b["token"].as_str().unwrap(), now_ms())
        .unwrap();
    assert!(!realm
        .revocations
        .is_revoked(&fresh.token_id, &fresh.user_id, fresh.issued_at_ms));
}
