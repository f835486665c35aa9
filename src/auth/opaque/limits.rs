//! State of an opaque realm that outlives reloads: rate limiters (governor, keyed) and the
//! revocation list. Both are created through `Warm::shared`, keyed by realm name (and quota for
//! limiters), so a reload keeps counters and revocations.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::snapshot::Warm;

/// `{requests_per_second, burst}`: a token bucket refilled at `requests_per_second` (may be
/// fractional, e.g. 0.2 = one per 5 s) holding at most `burst`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests_per_second: f64,
    pub burst: u32,
}

impl RateLimitConfig {
    /// The governor quota, or a message saying what is wrong.
    pub fn quota(&self) -> Result<Quota, String> {
        let rps = self.requests_per_second;
        if !rps.is_finite() || !(0.0001..=1_000_000.0).contains(&rps) {
            return Err("requests_per_second must be between 0.0001 and 1000000".into());
        }
        let burst = std::num::NonZeroU32::new(self.burst).ok_or("burst must be at least 1")?;
        let period = Duration::from_secs_f64(1.0 / rps);
        let q = Quota::with_period(period).ok_or("requests_per_second is too large")?;
        Ok(q.allow_burst(burst))
    }

    fn key(&self) -> String {
        format!("{}/{}", self.requests_per_second, self.burst)
    }
}

/// A keyed limiter that answers with the wait until the next allowed request.
#[derive(Debug)]
pub struct Limiter<K: std::hash::Hash + Eq + Clone + Send + Sync + 'static> {
    inner: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
}

impl<K: std::hash::Hash + Eq + Clone + Send + Sync + 'static> Limiter<K> {
    fn new(quota: Quota) -> Self {
        Limiter {
            inner: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` if allowed; `Err(seconds to wait)` (at least 1) if over the limit.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        match self.inner.check_key(key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(secs.max(1))
            }
        }
    }

    fn tidy(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }
}

/// A limiter shared across reloads under `name` and its quota; a background task on the control
/// runtime forgets idle keys every minute (not under `check`).
pub fn shared_limiter<K: std::hash::Hash + Eq + Clone + Send + Sync + 'static>(
    warm: &Warm,
    name: &str,
    cfg: &RateLimitConfig,
    quota: Quota,
) -> Arc<Limiter<K>> {
    let key = format!("opaque:limiter:{name}:{}", cfg.key());
    let mut created = false;
    let limiter = warm.shared(&key, || {
        created = true;
        Limiter::<K>::new(quota)
    });
    if created && !warm.dry_run {
        let weak: Weak<Limiter<K>> = Arc::downgrade(&limiter);
        warm.control.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(l) = weak.upgrade() else { break };
                l.tidy();
            }
        });
    }
    limiter
}

/// The key a client address is limited under: the address itself for IPv4, its /64 for IPv6
/// (one host usually owns a whole /64). `None` (no address, e.g. a unix socket) shares one key.
pub fn client_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        Some(v4) => v4,
        None => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// The token endpoint's per-username limits. A username is limited per (username, client
/// network), so wrong passwords from one network cannot lock the user out everywhere; a
/// separate, much higher ceiling per username alone bounds guessing spread over many networks.
#[derive(Debug)]
pub struct LoginLimits {
    pub per_network: Arc<Limiter<(String, IpAddr)>>,
    pub global: Arc<Limiter<String>>,
}

impl LoginLimits {
    /// `Ok` if this attempt is within both limits; `Err(seconds to wait)` otherwise. The global
    /// ceiling is only charged when the per-network limit let the attempt through.
    pub fn check(&self, username: &str, client: Option<IpAddr>) -> Result<(), u64> {
        self.per_network
            .check(&(username.to_string(), client_key(client)))?;
        self.global.check(&username.to_string())
    }
}

/// `authedge_opaque_logins_total{realm, result}` counters of one realm (labels bounded: realm
/// names come from config, results from a fixed list). `None` only if the counter could not be
/// created, which constant names and labels rule out.
#[derive(Debug, Clone, Default)]
pub struct LoginCounters {
    pub success: Option<prometheus::IntCounter>,
    pub bad_credentials: Option<prometheus::IntCounter>,
    pub rate_limited: Option<prometheus::IntCounter>,
    pub malformed: Option<prometheus::IntCounter>,
}

/// Count one event.
pub fn inc(c: &Option<prometheus::IntCounter>) {
    if let Some(c) = c {
        c.inc();
    }
}

impl LoginCounters {
    /// The realm's counters, registered once in the edge's registry (shared across reloads).
    pub fn new(warm: &Warm, realm: &str) -> LoginCounters {
        let vec = warm.shared("opaque:metrics:logins", || {
            let opts = prometheus::Opts::new(
                "authedge_opaque_logins_total",
                "Token endpoint logins by realm and result",
            );
            let v = prometheus::IntCounterVec::new(opts, &["realm", "result"]).ok()?;
            warm.metrics.registry.register(Box::new(v.clone())).ok()?;
            Some(v)
        });
        let Some(v) = vec.as_ref() else {
            return LoginCounters::default();
        };
        let counter = |result: &str| Some(v.with_label_values(&[realm, result]));
        LoginCounters {
            success: counter("success"),
            bad_credentials: counter("bad_credentials"),
            rate_limited: counter("rate_limited"),
            malformed: counter("malformed"),
        }
    }
}

/// Most revocation entries kept; beyond it (after dropping expired ones) revocation fails with
/// 503 rather than forgetting older entries.
const MAX_REVOCATIONS: usize = 1_000_000;

#[derive(Debug, Default)]
struct RevokedSets {
    /// Token id -> its expiry (unix seconds).
    tokens: HashMap<[u8; 16], i64>,
    /// User id -> (tokens issued at or before this ms are revoked, keep until unix seconds).
    users: HashMap<String, (i64, i64)>,
}

/// Revoked tokens and users of one realm, kept until the tokens would have expired.
#[derive(Debug, Default)]
pub struct Revocations {
    sets: RwLock<RevokedSets>,
    /// Entries in `sets`; lets the request path skip the lock when nothing is revoked.
    count: AtomicUsize,
    /// Longest token lifetime (seconds) any build of the realm has used.
    max_lifetime: AtomicI64,
}

impl Revocations {
    /// The realm's list, shared across reloads.
    /// A background task on the control runtime drops expired entries every minute (not under
    /// `check`).
    pub fn shared(warm: &Warm, realm: &str, lifetime: Duration) -> Arc<Revocations> {
        let mut created = false;
        let r = warm.shared(&format!("opaque:revocations:{realm}"), || {
            created = true;
            Revocations::default()
        });
        if created && !warm.dry_run {
            let weak: Weak<Revocations> = Arc::downgrade(&r);
            warm.control.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(r) = weak.upgrade() else { break };
                    if !r.is_empty() {
                        r.purge(super::now_ms().div_euclid(1000));
                    }
                }
            });
        }
        let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        r.max_lifetime.fetch_max(secs, Ordering::Relaxed);
        r
    }

    /// Whether a token (by id, user and issue time) is revoked.
    pub fn is_revoked(&self, token_id: &[u8; 16], user_id: &str, issued_at_ms: i64) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let sets = match self.sets.read() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if sets.tokens.contains_key(token_id) {
            return true;
        }
        matches!(sets.users.get(user_id), Some((cutoff, _)) if issued_at_ms <= *cutoff)
    }

    /// The revoke-all cutoff of a user (tokens issued at or before it, in ms, are revoked).
    pub fn user_cutoff(&self, user_id: &str) -> Option<i64> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let sets = match self.sets.read() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        sets.users.get(user_id).map(|(cutoff, _)| *cutoff)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RevokedSets> {
        match self.sets.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    fn make_room(&self, sets: &mut RevokedSets, now_s: i64) -> bool {
        if sets.tokens.len() + sets.users.len() < MAX_REVOCATIONS {
            return true;
        }
        sets.tokens.retain(|_, exp| *exp > now_s);
        sets.users.retain(|_, (_, keep)| *keep > now_s);
        sets.tokens.len() + sets.users.len() < MAX_REVOCATIONS
    }

    /// Revoke one token until its expiry. False when the list is full.
    pub fn revoke_token(&self, token_id: [u8; 16], expires_at: i64, now_s: i64) -> bool {
        let mut sets = self.write();
        if !self.make_room(&mut sets, now_s) {
            return false;
        }
        sets.tokens.insert(token_id, expires_at);
        self.count
            .store(sets.tokens.len() + sets.users.len(), Ordering::Release);
        true
    }

    /// Revoke every token of a user issued up to `now_ms`. False when the list is full.
    pub fn revoke_user(&self, user_id: &str, now_ms: i64) -> bool {
        let now_s = now_ms.div_euclid(1000);
        let keep = now_s
            .saturating_add(self.max_lifetime.load(Ordering::Relaxed))
            .saturating_add(1);
        let mut sets = self.write();
        if !self.make_room(&mut sets, now_s) {
            return false;
        }
        sets.users.insert(user_id.to_string(), (now_ms, keep));
        self.count
            .store(sets.tokens.len() + sets.users.len(), Ordering::Release);
        true
    }

    /// Drop entries whose tokens have all expired.
    pub fn purge(&self, now_s: i64) {
        let mut sets = self.write();
        sets.tokens.retain(|_, exp| *exp > now_s);
        sets.users.retain(|_, (_, keep)| *keep > now_s);
        self.count
            .store(sets.tokens.len() + sets.users.len(), Ordering::Release);
    }

    /// Entries held (tokens and users).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_validation() {
        assert!(RateLimitConfig {
            requests_per_second: 0.0,
            burst: 1
        }
        .quota()
        .is_err());
        assert!(RateLimitConfig {
            requests_per_second: 1.0,
            burst: 0
        }
        .quota()
        .is_err());
        assert!(RateLimitConfig {
            requests_per_second: f64::NAN,
            burst: 1
        }
        .quota()
        .is_err());
        assert!(RateLimitConfig {
            requests_per_second: 0.2,
            burst: 3
        }
        .quota()
        .is_ok());
    }

    #[test]
    fn limiter_trips_with_retry_after() {
        let q = RateLimitConfig {
            requests_per_second: 0.01,
            burst: 2,
        }
        .quota()
        .unwrap();
        let l = Limiter::<String>::new(q);
        let k = "alice".to_string();
        assert!(l.check(&k).is_ok());
        assert!(l.check(&k).is_ok());
        let wait = l.check(&k).unwrap_err();
        assert!((1..=100).contains(&wait), "{wait}");
        assert!(l.check(&"bob".to_string()).is_ok());
    }

    #[test]
    fn client_keys() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(client_key(Some(a)), client_key(Some(b)));
        let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(Some(m)), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_ne!(
            client_key(None),
            client_key(Some("10.0.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn revocations() {
        let r = Revocations::default();
        r.max_lifetime.store(3600, Ordering::Relaxed);
        assert!(!r.is_revoked(&[1; 16], "u", 10));
        assert!(r.revoke_token([1; 16], 100, 0));
        assert!(r.is_revoked(&[1; 16], "u", 10));
        assert!(!r.is_revoked(&[2; 16], "u", 10));
        assert!(r.revoke_user("v", 5_000));
        assert!(r.is_revoked(&[2; 16], "v", 5_000));
        assert!(!r.is_revoked(&[2; 16], "v", 5_001));
        r.purge(101);
        assert!(!r.is_revoked(&[1; 16], "u", 10));
        assert!(r.is_revoked(&[2; 16], "v", 10));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn login_limits_are_per_network_with_a_global_ceiling() {
        let q = |burst| {
            RateLimitConfig {
                requests_per_second: 0.001,
                burst,
            }
            .quota()
            .unwrap()
        };
        let l = LoginLimits {
            per_network: Arc::new(Limiter::new(q(2))),
            global: Arc::new(Limiter::new(q(5))),
        };
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        assert!(l.check("bob", a).is_ok());
        assert!(l.check("bob", a).is_ok());
        assert!(l.check("bob", a).is_err(), "per-network limit");
        // Another network, and another user on the same network, are not locked out.
        assert!(l.check("bob", b).is_ok());
        assert!(l.check("alice", a).is_ok());
        assert!(l.check("bob", b).is_ok());
        // Bob has used 4 of the global 5; networks c, d: one each, then the ceiling.
        assert!(l.check("bob", Some("10.0.0.3".parse().unwrap())).is_ok());
        assert!(l.check("bob", Some("10.0.0.4".parse().unwrap())).is_err());
    }
}
