//! Unit tests of the opaque realm: config problems, token endpoint, filter, revocation.

use super::*;
use crate::auth::{DenyReason, Outcome, RequestView};
use argon2::Params;
use http::{HeaderMap, Method, StatusCode};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn warm() -> Warm {
    let metrics = Arc::new(crate::metrics::Metrics::new().unwrap());
    Warm::new(tokio::runtime::Handle::current(), metrics, true).unwrap()
}

fn cheap_hash(pw: &str) -> String {
    users::hash_password(pw.as_bytes(), Some(Params::new(256, 1, 1, None).unwrap())).unwrap()
}

fn realm_yaml(extra: &str) -> String {
    format!(
        "allow_weak_hashes: true\nkeys: [{{id: k1, secret: {{value: {SECRET}}}}}]\nusers:\n  - {{id: u1, username: alice, password_hash: '{}', roles: [admin]}}\n  - {{id: u2, username: bob, password_hash: '{}', allowed_cidrs: [10.0.0.0/8]}}\n{extra}",
        cheap_hash("alice-pw"),
        cheap_hash("bob-pw")
    )
}

/// The memory store of `warm` (shared across rebuilds, as across reloads).
fn mem(warm: &Warm) -> crate::state::Store {
    crate::snapshot::state_store(warm, None).unwrap()
}

async fn build(yaml: &str, warm: &Warm) -> Result<(Arc<Realm>, RealmEndpoints), Problems> {
    let cfg: OpaqueRealmConfig = serde_norway::from_str(yaml).unwrap();
    build_realm("main", &cfg, "opaque.main", warm, &mem(warm), None).await
}

fn view<'a>(m: &'a Method, h: &'a HeaderMap, body: &'a [u8], ip: &str) -> RequestView<'a> {
    RequestView {
        host: None,
        tls: false,
        method: m,
        path: "/auth",
        query: None,
        headers: h,
        peer: ip.parse().ok(),
        client_ip: ip.parse().ok(),
        body: Some(body),
    }
}

fn endpoint(eps: &RealmEndpoints, path: &str) -> Arc<dyn Endpoint> {
    eps.iter()
        .find(|(p, _)| p == path)
        .map(|(_, e)| e.clone())
        .unwrap()
}

fn reply(o: impl Into<Outcome>) -> (StatusCode, serde_json::Value, HeaderMap) {
    match o.into() {
        Outcome::Respond(r) => {
            let mut h = HeaderMap::new();
            for (n, v) in r.headers {
                h.append(n, v);
            }
            (
                r.status,
                serde_json::from_slice(&r.body).unwrap_or_default(),
                h,
            )
        }
        Outcome::Deny(d) => {
            let mut h = HeaderMap::new();
            for (n, v) in d.headers {
                h.append(n, v);
            }
            (d.status, serde_json::Value::Null, h)
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn login(
    eps: &RealmEndpoints,
    body: &str,
    ip: &str,
) -> (StatusCode, serde_json::Value, HeaderMap) {
    let h = HeaderMap::new();
    reply(
        endpoint(eps, "/auth")
            .handle(&view(&Method::POST, &h, body.as_bytes(), ip))
            .await,
    )
}

async fn call(f: &Arc<dyn AuthFilter>, token: Option<&str>, ip: &str) -> Outcome {
    let mut h = HeaderMap::new();
    if let Some(t) = token {
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
    }
    f.check(&view(&Method::GET, &h, b"", ip)).await
}

#[tokio::test]
async fn problems_name_full_paths() {
    let w = warm();
    let yaml = "keys: [{id: k1, secret: !value short}, {id: 'bad id', secret: !env AUTHEDGE_NOPE_UNSET}]\n\
                token_lifetime: 0s\ntoken_path: /a/../auth\nrewrite_plaintext: true\n\
                admin_secret: !value tiny\nrate_limit: {requests_per_second: 0, burst: 1}\n\
                users: [{id: u1, username: a, password: plain}]\n";
    let text = build(yaml, &w).await.unwrap_err().to_string();
    for needle in [
        "opaque.main.keys[0].secret: secret must be at least 32 bytes",
        "opaque.main.keys[1].id:",
        "opaque.main.keys[1].secret: environment variable AUTHEDGE_NOPE_UNSET",
        "opaque.main.token_lifetime:",
        "opaque.main.token_path:",
        "opaque.main.rewrite_plaintext: needs allow_plaintext: true",
        "opaque.main.rewrite_plaintext: needs a users_file",
        "opaque.main.admin_secret: the admin secret must be at least 16 bytes",
        "opaque.main.rate_limit:",
        "opaque.main.users[0].password: plaintext passwords are refused",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Default-strength floor without allow_weak_hashes.
    let yaml = realm_yaml("").replace("allow_weak_hashes: true\n", "");
    let text = build(&yaml, &w).await.unwrap_err().to_string();
    assert!(
        text.contains("opaque.main.users[0].password_hash: Argon2 parameters"),
        "{text}"
    );
}

#[tokio::test]
async fn login_filter_and_revoke() {
    let w = warm();
    let (realm, eps) = build(
        &realm_yaml("rate_limit: {requests_per_second: 0.01, burst: 3}\n"),
        &w,
    )
    .await
    .unwrap();
    assert_eq!(eps.len(), 2, "no admin endpoint without a secret");

    let (s, body, _) = login(
        &eps,
        r#"{"username":"alice","password":"alice-pw"}"#,
        "127.0.0.1",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 3500);
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    let token = body["token"].as_str().unwrap().to_string();

    // Wrong password and unknown user: same status and body.
    let (s1, b1, _) = login(&eps, "username=alice&password=nope", "127.0.0.2").await;
    let (s2, b2, _) = login(&eps, "username=nobody&password=nope", "127.0.0.3").await;
    assert_eq!((s1, &b1), (StatusCode::UNAUTHORIZED, &b2));
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    // Malformed.
    assert_eq!(
        login(&eps, "{not json", "127.0.0.4").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        login(&eps, "username=a&username=b&password=x", "127.0.0.4")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // bob only from 10/8: a correct password elsewhere is a plain 401.
    assert_eq!(
        login(&eps, "username=bob&password=bob-pw", "192.168.1.1")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&eps, "username=bob&password=bob-pw", "10.1.1.1")
            .await
            .0,
        StatusCode::OK
    );
    // GET is refused.
    let h = HeaderMap::new();
    let o = endpoint(&eps, "/auth")
        .handle(&view(&Method::GET, &h, b"", "127.0.0.1"))
        .await;
    assert_eq!(reply(o).0, StatusCode::METHOD_NOT_ALLOWED);

    let mut realms = HashMap::new();
    realms.insert("main".to_string(), realm.clone());
    let any = build_filter(
        &OpaqueRouteConfig {
            realm: "main".into(),
            users: vec![],
            roles: vec![],
        },
        &realms,
        "r",
        &w,
    )
    .unwrap();
    let bob_only = build_filter(
        &OpaqueRouteConfig {
            realm: "main".into(),
            users: vec!["bob".into()],
            roles: vec![],
        },
        &realms,
        "r",
        &w,
    )
    .unwrap();
    let admins = build_filter(
        &OpaqueRouteConfig {
            realm: "main".into(),
            users: vec![],
            roles: vec!["admin".into()],
        },
        &realms,
        "r",
        &w,
    )
    .unwrap();
    assert_eq!(any.challenge().unwrap(), "Bearer realm=\"main\"");
    assert_eq!(any.credential_headers(), &[http::header::AUTHORIZATION]);
    assert!(matches!(
        call(&any, None, "127.0.0.1").await,
        Outcome::NotApplicable
    ));
    match call(&admins, Some(&token), "127.0.0.1").await {
        Outcome::Allow(id) => {
            assert_eq!(id.subject.as_ref().unwrap(), "alice");
            assert_eq!(id.mode, "opaque");
            assert_eq!(id.scopes.as_ref().unwrap(), "admin");
            assert!(id
                .headers
                .iter()
                .any(|(n, v)| n == "x-user" && v == "alice"));
            assert!(id
                .headers
                .iter()
                .any(|(n, v)| n == "x-user-roles" && v == "admin"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(call(&bob_only, Some(&token), "127.0.0.1").await, Outcome::Deny(d) if d.status == StatusCode::FORBIDDEN)
    );
    // The fourth use hits the per-user limit (burst 3); a new token of the same user does not help.
    let (_, b, _) = login(
        &eps,
        r#"{"username":"alice","password":"alice-pw"}"#,
        "127.0.0.9",
    )
    .await;
    let token2 = b["token"].as_str().unwrap().to_string();
    assert!(matches!(
        call(&any, Some(&token), "127.0.0.1").await,
        Outcome::Allow(_)
    ));
    assert!(matches!(
        call(&any, Some(&token2), "127.0.0.1").await,
        Outcome::Allow(_)
    ));
    match call(&any, Some(&token2), "127.0.0.1").await {
        Outcome::Deny(d) => {
            assert_eq!(d.status, StatusCode::TOO_MANY_REQUESTS);
            assert!(d
                .headers
                .iter()
                .any(|(n, _)| n == http::header::RETRY_AFTER));
        }
        other => panic!("{other:?}"),
    }

    // Tampered and garbage tokens are 401 invalid_token.
    let mut bad = token.clone();
    bad.replace_range(10..11, if &token[10..11] == "A" { "B" } else { "A" });
    for t in [bad.as_str(), "abc", &token[..token.len() - 3]] {
        match call(&any, Some(t), "127.0.0.1").await {
            Outcome::Deny(d) => {
                assert_eq!(d.status, StatusCode::UNAUTHORIZED);
                assert!(d
                    .headers
                    .iter()
                    .any(|(_, v)| v.to_str().unwrap().contains("invalid_token")));
            }
            other => panic!("{other:?}"),
        }
    }

    // Revoke.
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let (s, b, _) = reply(
        endpoint(&eps, "/auth/revoke")
            .handle(&view(&Method::POST, &h, b"", "127.0.0.1"))
            .await,
    );
    assert_eq!((s, b["revoked"].as_bool()), (StatusCode::OK, Some(true)));
    assert!(matches!(call(&admins, Some(&token), "127.0.0.1").await,
        Outcome::Deny(d) if d.status == StatusCode::UNAUTHORIZED && d.reason == DenyReason::Revoked));
    // Revocations survive a rebuild (reload) of the realm.
    let (realm2, _) = build(&realm_yaml(""), &w).await.unwrap();
    assert!(!realm2.revocations.is_empty());
    let mut realms2 = HashMap::new();
    realms2.insert("main".to_string(), realm2);
    let any2 = build_filter(
        &OpaqueRouteConfig {
            realm: "main".into(),
            users: vec![],
            roles: vec![],
        },
        &realms2,
        "r",
        &w,
    )
    .unwrap();
    assert!(
        matches!(call(&any2, Some(&token), "127.0.0.1").await, Outcome::Deny(d) if d.reason == DenyReason::Revoked)
    );
}

#[tokio::test]
async fn plaintext_rewrite_and_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    std::fs::write(
        &users,
        "# keep me\nusers:\n  - id: u1\n    username: carol\n    password: carol-pw\n",
    )
    .unwrap();
    let main = dir.path().join("config.yaml");
    let yaml = format!(
        "keys: [{{id: k1, secret: {{value: {SECRET}}}}}]\nusers_file: users.yaml\nallow_plaintext: true\nrewrite_plaintext: true\n"
    );
    let cfg: OpaqueRealmConfig = serde_norway::from_str(&yaml).unwrap();
    // Dry run (check): no rewrite.
    let w = warm();
    build_realm("main", &cfg, "opaque.main", &w, &mem(&w), Some(&main))
        .await
        .unwrap();
    assert!(std::fs::read_to_string(&users)
        .unwrap()
        .contains("password: carol-pw"));
    // Run: rewritten, comment kept, and the new file loads without plaintext.
    let metrics = Arc::new(crate::metrics::Metrics::new().unwrap());
    let w = Warm::new(tokio::runtime::Handle::current(), metrics, false).unwrap();
    let (realm, _) = build_realm("main", &cfg, "opaque.main", &w, &mem(&w), Some(&main))
        .await
        .unwrap();
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(
        text.starts_with("# keep me\n") && text.contains("password_hash: '$argon2id$"),
        "{text}"
    );
    assert!(!text.contains("carol-pw"));
    assert!(realm.users.by_name.contains_key("carol"));
    let strict: OpaqueRealmConfig = serde_norway::from_str(&format!(
        "keys: [{{id: k1, secret: {{value: {SECRET}}}}}]\nusers_file: {}\n",
        users.display()
    ))
    .unwrap();
    build_realm("main", &strict, "opaque.main", &w, &mem(&w), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn filter_refuses_clients_outside_allowed_cidrs_and_deleted_users() {
    let w = warm();
    let (realm, eps) = build(&realm_yaml(""), &w).await.unwrap();
    let (_, b, _) = login(&eps, "username=bob&password=bob-pw", "10.9.9.9").await;
    let token = b["token"].as_str().unwrap().to_string();
    let mut realms = HashMap::new();
    realms.insert("main".to_string(), realm);
    let route = OpaqueRouteConfig {
        realm: "main".into(),
        users: vec![],
        roles: vec![],
    };
    let f = build_filter(&route, &realms, "r", &w).unwrap();
    assert!(matches!(
        call(&f, Some(&token), "10.1.2.3").await,
        Outcome::Allow(_)
    ));
    assert!(matches!(call(&f, Some(&token), "192.0.2.1").await,
        Outcome::Deny(d) if d.status == StatusCode::FORBIDDEN && d.reason == DenyReason::ClientNotAllowed));
    // Reload without bob: his token no longer names a user.
    let yaml = realm_yaml("")
        .lines()
        .filter(|l| !l.contains("username: bob"))
        .collect::<Vec<_>>()
        .join("\n");
    let (realm2, _) = build(&yaml, &w).await.unwrap();
    realms.insert("main".to_string(), realm2);
    let f2 = build_filter(&route, &realms, "r", &w).unwrap();
    assert!(matches!(call(&f2, Some(&token), "10.1.2.3").await,
        Outcome::Deny(d) if d.status == StatusCode::UNAUTHORIZED));
    // A route naming a user the realm lacks still builds (deleting a user must not block reload).
    let named = OpaqueRouteConfig {
        realm: "main".into(),
        users: vec!["bob".into()],
        roles: vec![],
    };
    let f3 = build_filter(&named, &realms, "r", &w).unwrap();
    assert!(matches!(
        call(&f3, Some(&token), "10.1.2.3").await,
        Outcome::Deny(_)
    ));
    let dbg = format!("{f3:?}");
    assert!(!dbg.contains("$argon2id"), "{dbg}");
}

#[tokio::test]
async fn login_metrics_are_registered() {
    let w = warm();
    let (_, eps) = build(&realm_yaml(""), &w).await.unwrap();
    login(&eps, "username=alice&password=nope", "127.0.0.1").await;
    let text = String::from_utf8(w.metrics.render()).unwrap();
    assert!(
        text.contains("authedge_opaque_logins_total{realm=\"main\",result=\"bad_credentials\"} 1"),
        "{text}"
    );
}

mod endpoints;
