//! JWT verification as a request pays it (the whole `jwt` filter check: bearer extraction, strict
//! parse, key lookup, signature, claims policy, identity): RS256 and ES256, cold (verified-token
//! cache off, so every check verifies the signature) and through the verified-token cache.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use authedge::auth::jwt::{self, JwtConfig};
use authedge::auth::{AuthFilter, Outcome, RequestView};
use authedge::snapshot::Warm;

const ISS: &str = "https://issuer.bench";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let claims = serde_json::json!({
        "iss": ISS, "sub": "svc", "aud": "api", "scope": "read write", "client_id": "svc",
        "iat": now, "exp": now + 3600,
    });
    let mut h = Header::new(alg);
    h.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&h, &claims, key).expect("sign")
}

fn headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    h
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let metrics = Arc::new(authedge::metrics::Metrics::new().expect("metrics"));
    let warm = Warm::new(rt.handle().clone(), metrics, true).expect("warm");
    let build = |cache: usize| -> Arc<dyn AuthFilter> {
        let yaml = format!(
            "providers:\n  - issuer: {ISS}\n    keys_file: {}\n  - issuer: {ISS}/ec\n    keys_file: {}\n\
             audience: api\nscopes: [read]\nclaim_headers: {{client_id: X-Client-Id}}\ncache_size: {cache}\n",
            fixture("rsa.pub.pem"),
            fixture("ec.pub.pem")
        );
        let cfg: JwtConfig = serde_norway::from_str(&yaml).expect("config");
        rt.block_on(jwt::build(&cfg, "bench", &warm))
            .expect("build")
    };
    let cold = build(0);
    let cached = build(10_000);

    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa.key")).expect("rsa key"))
        .expect("rsa");
    let ec =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("ec.key")).expect("ec key")).expect("ec");
    let rs_token = token(Algorithm::RS256, &rsa);
    let es_token = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let claims = serde_json::json!({
            "iss": format!("{ISS}/ec"), "sub": "svc", "aud": "api", "scope": "read", "iat": now, "exp": now + 3600,
        });
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &ec).expect("sign")
    };

    for (name, tok) in [("rs256", &rs_token), ("es256", &es_token)] {
        let h = headers(tok);
        let view = RequestView {
            host: None,
            tls: false,
            method: &Method::GET,
            path: "/api",
            query: None,
            headers: &h,
            peer: None,
            client_ip: None,
            body: None,
        };
        for (mode, f) in [("cold", &cold), ("cached", &cached)] {
            assert!(
                matches!(rt.block_on(f.check(&view)), Outcome::Allow(_)),
                "{name} {mode}"
            );
            c.bench_function(&format!("jwt_{name}_verify_{mode}"), |b| {
                b.iter(|| rt.block_on(f.check(black_box(&view))))
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
