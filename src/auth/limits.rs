//! Rate limits any mode's endpoints share: rate configs, [`SharedLimit`] (budgets kept in the
//! shared state, so a reload keeps them and every instance sharing Redis shares them) and the key
//! a client address is limited under. Moved here from the opaque mode so other modes (`pkce`)
//! use them without importing a mode.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::state::{Rate, RateDecision, Store};

/// `{requests_per_second, burst}`: a token bucket refilled at `requests_per_second` (may be
/// fractional, e.g. 0.2 = one per 5 s) holding at most `burst`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests_per_second: f64,
    pub burst: u32,
}

/// A rate limit that cannot be enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("requests_per_second must be between 0.0001 and 1000000")]
    OutOfRange,
    #[error("burst must be at least 1")]
    NoBurst,
    #[error("requests_per_second is too large")]
    TooFast,
}

impl RateLimitConfig {
    /// The rate, or what is wrong with it.
    pub fn rate(&self) -> Result<Rate, RateError> {
        let rps = self.requests_per_second;
        if !rps.is_finite() || !(0.0001..=1_000_000.0).contains(&rps) {
            return Err(RateError::OutOfRange);
        }
        if self.burst == 0 {
            return Err(RateError::NoBurst);
        }
        if Duration::from_secs_f64(1.0 / rps) < Duration::from_micros(1) {
            return Err(RateError::TooFast);
        }
        Ok(Rate {
            per_second: rps,
            burst: self.burst,
        })
    }
}

/// What the realm does when the shared state cannot answer a rate limit
/// (`on_state_error`): `deny` (503, the default) or `allow` (let the request through).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnStateError {
    #[default]
    Deny,
    Allow,
}

/// Why a limited request stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Over the budget: retry after this many seconds (at least 1).
    Limited(u64),
    /// The shared state failed and the realm fails closed: 503.
    Unavailable,
}

/// One budget per key, kept in the shared state (one budget across every instance sharing it).
/// Keys are generic: `{realm}:{name}:{key}` with any caller-chosen key (a user id, a username,
/// a username and client network ...).
#[derive(Debug, Clone)]
pub struct SharedLimit {
    store: Store,
    prefix: String,
    rate: Rate,
    on_error: OnStateError,
}

impl SharedLimit {
    /// `name` tells the limits of a realm apart (`user`, `login-user`, `login-client`).
    pub fn new(store: &Store, realm: &str, name: &str, rate: Rate, on_error: OnStateError) -> Self {
        SharedLimit {
            store: store.clone(),
            // The rate is part of the key: a changed rate starts a fresh budget, as before.
            prefix: format!("{realm}:{name}:{}/{}:", rate.per_second, rate.burst),
            rate,
            on_error,
        }
    }

    /// One request against `key`'s budget.
    pub async fn check(&self, key: &str) -> Result<(), Stop> {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        match self.store.rate_limit(&k, self.rate).await {
            Ok(RateDecision::Allowed) => Ok(()),
            Ok(d) => Err(Stop::Limited(d.retry_after_secs().unwrap_or(1))),
            Err(_) if self.on_error == OnStateError::Allow => Ok(()),
            Err(_) => Err(Stop::Unavailable),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_validation() {
        assert!(RateLimitConfig {
            requests_per_second: 0.0,
            burst: 1
        }
        .rate()
        .is_err());
        assert!(RateLimitConfig {
            requests_per_second: 1.0,
            burst: 0
        }
        .rate()
        .is_err());
        assert!(RateLimitConfig {
            requests_per_second: f64::NAN,
            burst: 1
        }
        .rate()
        .is_err());
        assert!(RateLimitConfig {
            requests_per_second: 0.2,
            burst: 3
        }
        .rate()
        .is_ok());
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
}
