//! Route matching at 10, 1,000 and 10,000 routes; path canonicalisation; chain walk overhead;
//! identity header stripping. `cargo bench --bench routing`.

use std::sync::Arc;

use async_trait::async_trait;
use authedge::auth::{run_chain, AuthFilter, Outcome, RequestView};
use authedge::identity::{HeaderInjector, Identity, StandardHeaders};
use authedge::routing::{canonical_path, normalize_prefix, RouteKey, Router};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

fn router(n: usize) -> Router {
    let keys: Vec<RouteKey> = (0..n)
        .map(|i| RouteKey {
            host: None,
            prefix: normalize_prefix(&format!("/svc{}/api/v{}", i % 1000, i / 1000)).unwrap(),
            methods: vec![],
        })
        .collect();
    Router::build(&keys).unwrap()
}

fn route_matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_match");
    for n in [10usize, 1_000, 10_000] {
        let r = router(n);
        let path = format!(
            "/svc{}/api/v{}/users/42/profile",
            (n - 1) % 1000,
            (n - 1) / 1000
        );
        g.bench_with_input(BenchmarkId::from_parameter(n), &path, |b, p| {
            b.iter(|| r.lookup(Some("example.com"), &Method::GET, black_box(p)))
        });
    }
    g.finish();
}

fn canonicalisation(c: &mut Criterion) {
    c.bench_function("canonical_path/clean", |b| {
        b.iter(|| canonical_path(black_box("/api/v1/users/42/profile")))
    });
    c.bench_function("canonical_path/dirty", |b| {
        b.iter(|| canonical_path(black_box("//api/./v1/%7eusers/../users/42/profile")))
    });
}

#[derive(Debug)]
struct Pass;
#[async_trait]
impl AuthFilter for Pass {
    fn kind(&self) -> &'static str {
        "pass"
    }
    async fn check(&self, _req: &RequestView<'_>) -> Outcome {
        Outcome::NotApplicable
    }
}

#[derive(Debug)]
struct AllowAll;
#[async_trait]
impl AuthFilter for AllowAll {
    fn kind(&self) -> &'static str {
        "allow"
    }
    async fn check(&self, _req: &RequestView<'_>) -> Outcome {
        Outcome::Allow(std::sync::Arc::new(Identity {
            subject: Some(HeaderValue::from_static("s")),
            mode: "allow",
            ..Default::default()
        }))
    }
}

fn chain_walk(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let headers = HeaderMap::new();
    let view = RequestView {
        host: None,
        tls: false,
        method: &Method::GET,
        path: "/api",
        query: None,
        headers: &headers,
        peer: None,
        client_ip: None,
        body: None,
    };
    let mut g = c.benchmark_group("chain_walk");
    for skipped in [0usize, 1, 4] {
        let mut chain: Vec<Arc<dyn AuthFilter>> = (0..skipped)
            .map(|_| Arc::new(Pass) as Arc<dyn AuthFilter>)
            .collect();
        chain.push(Arc::new(AllowAll));
        g.bench_with_input(
            BenchmarkId::new("not_applicable_then_allow", skipped),
            &chain,
            |b, chain| b.iter(|| rt.block_on(run_chain(black_box(chain), &view))),
        );
    }
    g.finish();
}

fn header_strip(c: &mut Criterion) {
    let inj = HeaderInjector::new(
        StandardHeaders {
            subject: Some(HeaderName::from_static("x-auth-subject")),
            issuer: Some(HeaderName::from_static("x-auth-issuer")),
            mode: None,
            scopes: None,
        },
        [],
    );
    let mut base = http::HeaderMap::new();
    for (k, v) in [
        ("host", "example.com"),
        ("user-agent", "bench"),
        ("accept", "*/*"),
        ("authorization", "Bearer x"),
    ] {
        base.append(k, HeaderValue::from_static(v));
    }
    let id = Identity {
        subject: Some(HeaderValue::from_static("alice")),
        mode: "jwt",
        ..Default::default()
    };
    c.bench_function("identity/strip_and_inject", |b| {
        b.iter_batched(
            || base.clone(),
            |mut req| {
                inj.strip(&mut req);
                inj.inject(&mut req, &id);
                req
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    benches,
    route_matching,
    canonicalisation,
    chain_walk,
    header_strip,
    header_insert_costs
);
criterion_main!(benches);

fn header_insert_costs(c: &mut Criterion) {
    // A request as parsed: four headers, maps sized for them.
    let mut base = pingora_http::RequestHeader::build("GET", b"/api", Some(4)).unwrap();
    for (k, v) in [
        ("Host", "example.com"),
        ("User-Agent", "bench"),
        ("Accept", "*/*"),
        ("Authorization", "Bearer x"),
    ] {
        base.append_header(k, HeaderValue::from_static(v)).unwrap();
    }
    let names: Vec<HeaderName> = [
        "x-auth-subject",
        "x-auth-mode",
        "x-auth-scopes",
        "x-user",
        "x-user-roles",
    ]
    .iter()
    .map(|n| HeaderName::from_static(n))
    .collect();
    c.bench_function("headers/insert5_header_name", |b| {
        b.iter_batched(
            || base.clone(),
            |mut req| {
                for n in &names {
                    req.insert_header(n.clone(), HeaderValue::from_static("v"))
                        .unwrap();
                }
                req
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let cased: Vec<bytes::Bytes> = [
        "X-Auth-Subject",
        "X-Auth-Mode",
        "X-Auth-Scopes",
        "X-User",
        "X-User-Roles",
    ]
    .iter()
    .map(|n| bytes::Bytes::copy_from_slice(n.as_bytes()))
    .collect();
    c.bench_function("headers/insert5_bytes_name", |b| {
        b.iter_batched(
            || base.clone(),
            |mut req| {
                for n in &cased {
                    req.insert_header(n.clone(), HeaderValue::from_static("v"))
                        .unwrap();
                }
                req
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // What the proxy does: move the parts out, insert into the plain map, rebuild.
    c.bench_function("headers/insert5_plain_parts", |b| {
        b.iter_batched(
            || base.clone(),
            |mut req| {
                let empty =
                    pingora_http::RequestHeader::from(http::Request::new(()).into_parts().0);
                let mut parts: http::request::Parts = std::mem::replace(&mut req, empty).into();
                for n in &names {
                    parts
                        .headers
                        .insert(n.clone(), HeaderValue::from_static("v"));
                }
                pingora_http::RequestHeader::from(parts)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("headers/clone_only", |b| {
        b.iter_batched(|| base.clone(), |req| req, criterion::BatchSize::SmallInput)
    });
}
