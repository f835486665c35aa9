//! Limits of an opaque realm: the login limits and counters. The generic parts (rate configs,
//! [`SharedLimit`], client keys) live in [`crate::auth::limits`] and are re-exported here.

use std::net::IpAddr;

pub use crate::auth::limits::{
    client_key, OnStateError, RateError, RateLimitConfig, SharedLimit, Stop,
};
use crate::context::Warm;

/// The token endpoint's per-username limits. A username is limited per (username, client
/// network), so wrong passwords from one network cannot lock the user out everywhere; a
/// separate, much higher ceiling per username alone bounds guessing spread over many networks.
/// Both budgets live in the shared state, so they hold across instances.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    pub per_network: SharedLimit,
    pub global: SharedLimit,
}

impl LoginLimits {
    /// `Ok` if this attempt is within both limits. The global ceiling is only charged when the
    /// per-network limit let the attempt through.
    pub async fn check(&self, username: &str, client: Option<IpAddr>) -> Result<(), Stop> {
        // The address first: it never contains '|', so no two pairs share a key.
        let key = format!("{}|{username}", client_key(client));
        self.per_network.check(&key).await?;
        self.global.check(username).await
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
        let vec = warm.pinned("opaque:metrics:logins", || {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Rate, Store};

    /// Issue 15: wrong passwords from one network do not lock the user out of another, nor
    /// another user on the same network; a much higher per-username ceiling bounds the total.
    #[tokio::test]
    async fn login_limits_are_per_network_with_a_global_ceiling() {
        let store: Store = crate::state::MemoryStore::new(None);
        let rate = |burst| Rate {
            per_second: 0.001,
            burst,
        };
        let l = LoginLimits {
            per_network: SharedLimit::new(&store, "r", "net", rate(2), OnStateError::Deny),
            global: SharedLimit::new(&store, "r", "all", rate(5), OnStateError::Deny),
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        assert!(l.check("bob", a).await.is_ok());
        assert!(l.check("bob", a).await.is_ok());
        assert!(l.check("bob", a).await.is_err(), "per-network limit");
        // Another network, and another user on the same network, are not locked out.
        assert!(l.check("bob", b).await.is_ok());
        assert!(l.check("alice", a).await.is_ok());
        assert!(l.check("bob", b).await.is_ok());
        // Bob has used 4 of the global 5; network c: one more, then the ceiling holds for d.
        assert!(l.check("bob", ip("10.0.0.3")).await.is_ok());
        assert!(l.check("bob", ip("10.0.0.4")).await.is_err());
    }
}
