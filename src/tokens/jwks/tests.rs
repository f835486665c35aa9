//! Unit tests of JWK parsing and of the key cache (against a tiny local JWKS server).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::*;

#[test]
fn cache_control() {
    assert_eq!(
        max_age("public, max-age=300"),
        Some(Duration::from_secs(300))
    );
    assert_eq!(max_age("no-store"), Some(Duration::ZERO));
    assert_eq!(max_age("public"), None);
}

#[test]
fn refuses_weak_enc_and_symmetric_keys() {
    let small =
        serde_json::json!({"kty":"RSA","n": URL_SAFE_NO_PAD.encode([0xffu8; 128]),"e":"AQAB"});
    assert!(parse_jwk(&small, &[Algorithm::RS256]).is_err());
    let big =
        serde_json::json!({"kty":"RSA","n": URL_SAFE_NO_PAD.encode([0xffu8; 256]),"e":"AQAB"});
    assert!(parse_jwk(&big, &[Algorithm::RS256]).is_ok());
    let mut enc = big.clone();
    enc["use"] = "enc".into();
    assert!(parse_jwk(&enc, &[Algorithm::RS256]).is_err());
    let mut hs = big.clone();
    hs["alg"] = "HS256".into();
    assert!(parse_jwk(&hs, &[Algorithm::RS256]).is_err());
    let mut none = big;
    none["alg"] = "none".into();
    assert!(parse_jwk(&none, &[Algorithm::RS256]).is_err());
    let oct = serde_json::json!({"kty":"oct","k":"c2VjcmV0"});
    assert!(parse_jwk(&oct, &[]).is_err());
}

#[test]
fn urls() {
    assert!(url_allowed("https://op.example/jwks", false).is_ok());
    assert!(url_allowed("http://127.0.0.1:9/jwks", false).is_ok());
    assert!(url_allowed("http://op.example/jwks", false).is_err());
    assert!(url_allowed("http://op.example/jwks", true).is_ok());
    assert!(url_allowed("file:///etc/passwd", true).is_err());
}

/// A tiny JWKS server: counts GETs, answers `body` with `Cache-Control: max-age=600`, or 500
/// while `down` is set.
pub(crate) async fn jwks_server(
    body: Arc<Mutex<String>>,
    down: Arc<AtomicBool>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (body, down, hits) = (body.clone(), down.clone(), hits.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                hits.fetch_add(1, Ordering::SeqCst);
                let resp = if down.load(Ordering::SeqCst) {
                    "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_string()
                } else {
                    let b = body.lock().unwrap().clone();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: public, max-age=600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                        b.len()
                    )
                };
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/jwks")
}

/// Pretend the last fetch attempt was longer ago than the cooldown (no sleeping in tests).
async fn expire_cooldown(cache: &JwksCache) {
    let mut gate = cache.gate.lock().await;
    let past = Instant::now().checked_sub(cache.settings.cooldown + Duration::from_millis(1));
    gate.last_attempt = past;
    gate.last_unknown_kid = past;
}

fn rsa_jwk(kid: &str, fill: u8) -> Value {
    let mut n = vec![fill; 256];
    n[0] = 0xc1;
    serde_json::json!({"kty": "RSA", "kid": kid, "alg": "RS256", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_refetch_is_single_flight_with_cooldown_and_keeps_keys_on_failure() {
    let body = Arc::new(Mutex::new(
        serde_json::json!({"keys": [rsa_jwk("a", 1)]}).to_string(),
    ));
    let down = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = jwks_server(body.clone(), down.clone(), hits.clone()).await;
    let metrics = Arc::new(crate::metrics::Metrics::new().unwrap());
    let warm =
        crate::context::Warm::new(tokio::runtime::Handle::current(), metrics, false).unwrap();
    let settings = JwksSettings {
        source: JwksSource::Uri(url),
        label: "test".into(),
        refresh: Duration::from_secs(3600),
        cooldown: Duration::from_secs(30),
        allow_http: false,
        rsa_default: vec![Algorithm::RS256],
    };
    let cache = warm.shared(&settings.share_key(), || {
        JwksCache::new(settings.clone(), &warm)
    });
    cache.prime().await;
    assert!(cache.has_keys());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The same share key gives the same cache (a reload reuses it).
    let again = warm.shared(&settings.share_key(), || {
        JwksCache::new(settings.clone(), &warm)
    });
    assert!(Arc::ptr_eq(&cache, &again));
    again.prime().await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "priming a cache with keys fetches nothing"
    );

    // The startup fetch does not start the cooldown: the first unknown kid right after it
    // (a key rotated in just after start) refetches at once; 50 concurrent misses cause exactly
    // one fetch, and all see its keys.
    *body.lock().unwrap() =
        serde_json::json!({"keys": [rsa_jwk("a", 1), rsa_jwk("b", 2)]}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = cache.clone();
        tasks.push(tokio::spawn(async move {
            c.refetch_unknown_kid().await;
            c.current().unwrap().has_kid("b")
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "every waiter sees the refetched key");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Within the cooldown of that refetch: no fetch at all, however many unknown kids.
    *body.lock().unwrap() =
        serde_json::json!({"keys": [rsa_jwk("a", 1), rsa_jwk("b", 2), rsa_jwk("c", 3)]})
            .to_string();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = cache.clone();
        tasks.push(tokio::spawn(async move { c.refetch_unknown_kid().await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(!cache.current().unwrap().has_kid("c"));

    // A scheduled refresh inside the cooldown does not restart it: once the unknown-kid
    // cooldown is over, the next unknown kid refetches even right after a refresh.
    expire_cooldown(&cache).await;
    cache.refetch(Why::Scheduled(Duration::ZERO)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert!(cache.current().unwrap().has_kid("c"));
    *body.lock().unwrap() =
        serde_json::json!({"keys": [rsa_jwk("a", 1), rsa_jwk("b", 2), rsa_jwk("d", 4)]})
            .to_string();
    cache.refetch_unknown_kid().await;
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert!(cache.current().unwrap().has_kid("d"));
    assert!(cache.current().unwrap().has_kid("b"));

    // A failed fetch keeps the last good keys.
    down.store(true, Ordering::SeqCst);
    expire_cooldown(&cache).await;
    cache.refetch_unknown_kid().await;
    assert_eq!(hits.load(Ordering::SeqCst), 5);
    assert!(cache.current().unwrap().has_kid("b"));
    assert!(cache.has_keys());
    // The refresh delay after a success follows max-age (600 s) bounded by `refresh`.
    down.store(false, Ordering::SeqCst);
    expire_cooldown(&cache).await;
    cache.refetch_unknown_kid().await;
    assert_eq!(*cache.next.lock().unwrap(), Duration::from_secs(600));
}
