//! `oidc` sessions: cookie seal and open, and the whole route filter check (find the cookie
//! among others, open it, check the policy, build the identity) as a request pays it.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};

use authedge::auth::oidc::session::{open_session, seal_session, Session};
use authedge::auth::oidc::{self, OidcProviderConfig, OidcRouteConfig};
use authedge::auth::{Outcome, RequestView};
use authedge::config::Problems;
use authedge::snapshot::Warm;
use authedge::tokens::seal::Sealer;

const SECRET: &str = "bench-cookie-secret-0123456789abcdef0123";

fn session() -> Session {
    Session {
        user: "alice@example.com".into(),
        email: Some("alice@example.com".into()),
        pu: Some("alice".into()),
        groups: vec!["admins".into(), "staff".into()],
        sub: "alice@example.com".into(),
        sid: Some("sid-1".into()),
        iat: authedge_now(),
        exp: authedge_now() + 3600,
        // A typical RS256 ID token's length, kept for sign-out.
        idt: Some("e".repeat(900)),
        at: None,
        rt: None,
        id: None,
    }
}

fn authedge_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn cookies(c: &mut Criterion) {
    let sealer = Sealer::new("oidc", b"main", &[("k1", SECRET.as_bytes())]).expect("sealer");
    let s = session();
    let sealed = seal_session(&sealer, &s).expect("seal");
    c.bench_function("oidc_session_seal", |b| {
        b.iter(|| seal_session(&sealer, black_box(&s)))
    });
    c.bench_function("oidc_session_open", |b| {
        b.iter(|| open_session(&sealer, black_box(&sealed), 0))
    });
}

fn filter(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let metrics = Arc::new(authedge::metrics::Metrics::new().expect("metrics"));
    let warm = Warm::new(rt.handle().clone(), metrics, true).expect("warm");
    let yaml = format!(
        "issuer: http://127.0.0.1:9\nclient_id: web\ncookie_secrets: [{{id: k1, secret: {{value: {SECRET}}}}}]\n\
         email_domains: [example.com]\n"
    );
    let cfg: OidcProviderConfig = serde_norway::from_str(&yaml).expect("provider yaml");
    let mut all = BTreeMap::new();
    all.insert("main".to_string(), cfg);
    let state = authedge::snapshot::state_store(&warm, None).expect("state");
    let mut problems = Problems::default();
    let (providers, _) = oidc::build_providers(&all, &warm, &state, &mut problems);
    assert!(problems.is_empty(), "{problems}");
    let route = OidcRouteConfig {
        provider: "main".into(),
        api: false,
        email_domains: None,
        allowed_emails: vec![],
        allowed_groups: vec!["admins".into()],
    };
    let f = oidc::build_filter(&route, &providers, &all, "routes[0].auth[0]")
        .expect("filter")
        .filter;
    let sealer = Sealer::new("oidc", b"main", &[("k1", SECRET.as_bytes())]).expect("sealer");
    let sealed = seal_session(&sealer, &session()).expect("seal");
    let mut headers = HeaderMap::new();
    let cookie = format!("theme=dark; lang=en; __Host-_authedge={sealed}; _ga=GA1.2.3");
    headers.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie"),
    );
    let view = RequestView::new(&Method::GET, "/app", &headers);
    assert!(matches!(rt.block_on(f.check(&view)), Outcome::Allow(_)));
    // The first check opened the cookie and memoized it (tokens::memo): this is a returning
    // session, as every request after a login is; `oidc_session_open` is the first one's cost.
    c.bench_function("oidc_filter_check_allow", |b| {
        b.iter(|| rt.block_on(f.check(black_box(&view))))
    });
}

criterion_group!(benches, cookies, filter);
criterion_main!(benches);
