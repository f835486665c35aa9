//! Opaque tokens: seal, open, and the whole route filter check (open + user lookup + revocation
//! check + per-user limiter + identity) as a request pays it.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method};

use authedge::auth::opaque::{self, OpaqueRealmConfig, OpaqueRouteConfig};
use authedge::auth::{Outcome, RequestView};
use authedge::snapshot::Warm;
use authedge::tokens::aead::{Claims, Keyring};

const SECRET: &[u8] = b"bench-secret-0123456789abcdef0123456789abcdef";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn tokens(c: &mut Criterion) {
    let ring = Keyring::new(b"main", &[("k2", SECRET), ("k1", SECRET)]).expect("ring");
    let claims = Claims {
        user_id: "user-000123".into(),
        issued_at_ms: now_ms(),
        expires_at: now_ms() / 1000 + 3600,
        token_id: [9; 16],
    };
    let token = ring.seal(&claims).expect("seal");
    c.bench_function("opaque_token_seal", |b| {
        b.iter(|| ring.seal(black_box(&claims)))
    });
    c.bench_function("opaque_token_open", |b| {
        b.iter(|| ring.open(black_box(&token), now_ms()))
    });
}

fn filter(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let metrics = Arc::new(authedge::metrics::Metrics::new().expect("metrics"));
    let warm = Warm::new(rt.handle().clone(), metrics, true).expect("warm");
    let params = argon2::Params::new(256, 1, 1, None).expect("params");
    let hash = opaque::hash_password(b"pw", Some(params)).expect("hash");
    let mut users = String::new();
    for i in 0..1000 {
        users.push_str(&format!(
            "  - {{id: u{i}, username: user{i}, password_hash: '{hash}', roles: [r{}]}}\n",
            i % 10
        ));
    }
    let yaml = format!(
        "allow_weak_hashes: true\nkeys: [{{id: k1, secret: {{value: {}}}}}]\n\
         rate_limit: {{requests_per_second: 1000000, burst: 1000000}}\nusers:\n{users}",
        std::str::from_utf8(SECRET).unwrap_or_default()
    );
    let cfg: OpaqueRealmConfig = serde_norway::from_str(&yaml).expect("realm yaml");
    let (realm, _) = rt
        .block_on(opaque::build_realm(
            "main",
            &cfg,
            "opaque.main",
            &warm,
            &authedge::snapshot::state_store(&warm, None).expect("state"),
            None,
        ))
        .expect("realm");
    let mut realms = HashMap::new();
    realms.insert("main".to_string(), realm);
    let route = OpaqueRouteConfig {
        realm: "main".into(),
        users: vec![],
        roles: vec!["r3".into()],
    };
    let f = opaque::build_filter(&route, &realms, "routes[0].auth[0]", &warm).expect("filter");

    let ring = Keyring::new(b"main", &[("k1", SECRET)]).expect("ring");
    let claims = Claims {
        user_id: "u13".into(),
        issued_at_ms: now_ms(),
        expires_at: now_ms() / 1000 + 3600,
        token_id: [1; 16],
    };
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {}", ring.seal(&claims).expect("seal"));
    headers.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
    let view = RequestView {
        host: None,
        tls: false,
        method: &Method::GET,
        path: "/api",
        query: None,
        headers: &headers,
        peer: "127.0.0.1".parse().ok(),
        client_ip: "127.0.0.1".parse().ok(),
        body: None,
    };
    assert!(matches!(rt.block_on(f.check(&view)), Outcome::Allow(_)));
    c.bench_function("opaque_filter_check_allow", |b| {
        b.iter(|| rt.block_on(f.check(black_box(&view))))
    });
}

criterion_group!(benches, tokens, filter);
criterion_main!(benches);
