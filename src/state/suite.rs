//! One semantic test suite for every [`StateStore`]: the memory store runs it in its unit tests,
//! the Redis store against a real redis-server (and Redis Cluster) in `tests/state.rs`... and in
//! its own unit tests. `tag` keeps keys of concurrent runs apart.

use std::time::Duration;

use super::{Rate, RateDecision, StateStore};

/// Run every check; panics on the first broken semantic.
pub async fn run_all(s: &dyn StateStore, tag: &str) {
    nonces(s, tag).await;
    rate_limits(s, tag).await;
    revocations(s, tag).await;
    sessions(s, tag).await;
    codes(s, tag).await;
    maps(s, tag).await;
}

async fn nonces(s: &dyn StateStore, tag: &str) {
    let k = format!("{tag}n1");
    assert_eq!(s.nonce_once(&k, Duration::from_secs(30)).await, Ok(true));
    assert_eq!(s.nonce_once(&k, Duration::from_secs(30)).await, Ok(false));
    assert_eq!(s.nonce_once(&k, Duration::from_secs(30)).await, Ok(false));
    let other = format!("{tag}n2");
    assert_eq!(
        s.nonce_once(&other, Duration::from_secs(30)).await,
        Ok(true)
    );
    // A short-lived nonce expires by itself.
    let short = format!("{tag}n3");
    assert_eq!(
        s.nonce_once(&short, Duration::from_millis(50)).await,
        Ok(true)
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        s.nonce_once(&short, Duration::from_secs(30)).await,
        Ok(true)
    );
}

async fn rate_limits(s: &dyn StateStore, tag: &str) {
    let rate = Rate {
        per_second: 0.01,
        burst: 3,
    };
    let k = format!("{tag}alice");
    for _ in 0..3 {
        assert_eq!(s.rate_limit(&k, rate).await, Ok(RateDecision::Allowed));
    }
    let d = s.rate_limit(&k, rate).await.expect("limit");
    let secs = d.retry_after_secs().expect("limited");
    assert!((1..=100).contains(&secs), "retry after {secs}");
    // Other keys have their own budget.
    let b = format!("{tag}bob");
    assert_eq!(s.rate_limit(&b, rate).await, Ok(RateDecision::Allowed));
    // A fast rate refills.
    let fast = Rate {
        per_second: 20.0,
        burst: 1,
    };
    let f = format!("{tag}fast");
    assert_eq!(s.rate_limit(&f, fast).await, Ok(RateDecision::Allowed));
    assert!(s.rate_limit(&f, fast).await.expect("limit") != RateDecision::Allowed);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(s.rate_limit(&f, fast).await, Ok(RateDecision::Allowed));
}

async fn revocations(s: &dyn StateStore, tag: &str) {
    let scope = s.revocations(&format!("{tag}realm"), Duration::from_secs(3600));
    let now_ms = super::unix_ms();
    let now_s = now_ms / 1000;
    let (t1, t2) = ([1u8; 16], [2u8; 16]);
    assert_eq!(s.is_revoked(&scope, &t1, "u", now_ms).await, Ok(false));
    s.revoke_token(&scope, &t1, now_s + 60)
        .await
        .expect("revoke");
    assert_eq!(s.is_revoked(&scope, &t1, "u", now_ms).await, Ok(true));
    assert_eq!(s.is_revoked(&scope, &t2, "u", now_ms).await, Ok(false));
    s.revoke_user(&scope, "v", now_ms)
        .await
        .expect("revoke user");
    assert_eq!(s.is_revoked(&scope, &t2, "v", now_ms).await, Ok(true));
    assert_eq!(s.is_revoked(&scope, &t2, "v", now_ms + 1).await, Ok(false));
    assert_eq!(s.user_cutoff(&scope, "v").await, Ok(Some(now_ms)));
    assert_eq!(s.user_cutoff(&scope, "u").await, Ok(None));
    // An earlier cutoff never lowers a later one.
    s.revoke_user(&scope, "v", now_ms - 10_000)
        .await
        .expect("revoke user");
    assert_eq!(s.user_cutoff(&scope, "v").await, Ok(Some(now_ms)));
    // The local answer, when the store has one, agrees.
    if let Some(local) = s.revoked_local(&scope, &t1, "u", now_ms) {
        assert!(local);
    }
    // A token already expired is not kept.
    let t3 = [3u8; 16];
    s.revoke_token(&scope, &t3, now_s - 1)
        .await
        .expect("revoke");
    assert_eq!(s.is_revoked(&scope, &t3, "w", now_ms).await, Ok(false));
}

async fn sessions(s: &dyn StateStore, tag: &str) {
    let k = format!("{tag}sess");
    assert_eq!(s.session_get(&k).await, Ok(None));
    s.session_put(&k, b"one", Duration::from_secs(30))
        .await
        .expect("put");
    assert_eq!(s.session_get(&k).await, Ok(Some(b"one".to_vec())));
    s.session_put(&k, b"two", Duration::from_secs(30))
        .await
        .expect("put");
    assert_eq!(s.session_get(&k).await, Ok(Some(b"two".to_vec())));
    s.session_delete(&k).await.expect("delete");
    assert_eq!(s.session_get(&k).await, Ok(None));
    s.session_delete(&k).await.expect("delete absent");
    let short = format!("{tag}sess-short");
    s.session_put(&short, b"x", Duration::from_millis(50))
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(s.session_get(&short).await, Ok(None));
}

async fn codes(s: &dyn StateStore, tag: &str) {
    let k = format!("{tag}code");
    assert_eq!(s.code_take(&k).await, Ok(None));
    assert_eq!(
        s.code_put(&k, b"v", Duration::from_secs(30)).await,
        Ok(true)
    );
    assert_eq!(
        s.code_put(&k, b"w", Duration::from_secs(30)).await,
        Ok(false)
    );
    assert_eq!(s.code_take(&k).await, Ok(Some(b"v".to_vec())));
    assert_eq!(s.code_take(&k).await, Ok(None));
    let short = format!("{tag}code-short");
    assert_eq!(
        s.code_put(&short, b"v", Duration::from_millis(50)).await,
        Ok(true)
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(s.code_take(&short).await, Ok(None));
}

async fn maps(s: &dyn StateStore, tag: &str) {
    let m = format!("{tag}map");
    assert_eq!(s.map_all(&m).await, Ok(vec![]));
    assert_eq!(s.map_get(&m, "a").await, Ok(None));
    s.map_put(&m, "a", b"1", Duration::from_secs(30))
        .await
        .expect("put");
    s.map_put(&m, "b", b"2", Duration::from_secs(30))
        .await
        .expect("put");
    s.map_put(&m, "a", b"3", Duration::from_secs(30))
        .await
        .expect("replace");
    assert_eq!(s.map_get(&m, "a").await, Ok(Some(b"3".to_vec())));
    let mut all = s.map_all(&m).await.expect("all");
    all.sort();
    assert_eq!(
        all,
        vec![
            ("a".to_string(), b"3".to_vec()),
            ("b".to_string(), b"2".to_vec())
        ]
    );
    // Maps are apart from each other.
    assert_eq!(s.map_get(&format!("{tag}map2"), "a").await, Ok(None));
    assert_eq!(s.map_delete(&m, "a").await, Ok(true));
    assert_eq!(s.map_delete(&m, "a").await, Ok(false));
    assert_eq!(s.map_get(&m, "a").await, Ok(None));
    assert_eq!(s.map_get(&m, "b").await, Ok(Some(b"2".to_vec())));
    // A short put does not shorten a map that lives longer; a short map expires by itself.
    s.map_put(&m, "c", b"4", Duration::from_millis(50))
        .await
        .expect("put");
    let short = format!("{tag}map-short");
    s.map_put(&short, "x", b"5", Duration::from_millis(50))
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(s.map_get(&m, "c").await, Ok(Some(b"4".to_vec())));
    assert_eq!(s.map_get(&short, "x").await, Ok(None));
    assert_eq!(s.map_all(&short).await, Ok(vec![]));
}
