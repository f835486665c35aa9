//! Shared state behind one interface: replay nonces, revocations, rate-limit counters,
//! server-side sessions and single-use codes. [`memory::MemoryStore`] (one instance, the default)
//! and [`redis::RedisStore`] (Redis or Redis Cluster, shared by every instance) implement
//! [`StateStore`]; modes hold an `Arc<dyn StateStore>` and never talk to Redis themselves.
//!
//! Every operation is async and returns `Result<_, StateError>`: a caller that gets an error
//! fails closed (503), never allows. Everything stored expires by itself.

pub mod config;
mod lua;
pub mod memory;
pub mod metrics;
mod mirror;
pub mod redis;
pub mod revocations;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use config::{RedisConfig, StateConfig, StateEnv};
pub use memory::MemoryStore;
pub use revocations::RevocationScope;

/// Why a state operation failed. Callers answer 503 (fail closed).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// The backend has not answered yet (still connecting, or reconnecting).
    #[error("shared state is not connected")]
    NotConnected,
    /// The command took longer than the configured timeout.
    #[error("shared state command timed out")]
    Timeout,
    /// The backend answered with an error or the connection broke.
    #[error("shared state backend error: {0}")]
    Backend(String),
    /// A bounded in-memory table is full of live entries.
    #[error("shared state table is full")]
    Full,
}

/// A rate: a bucket refilled at `per_second` (may be fractional) holding at most `burst`.
/// Validated by the config that made it (`per_second` > 0 and finite, `burst` >= 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// The emission interval in microseconds (at least 1).
    pub fn interval_us(&self) -> u64 {
        let us = 1_000_000.0 / self.per_second;
        if us.is_finite() && us >= 1.0 {
            us.min(u64::MAX as f64 / 4.0) as u64
        } else {
            1
        }
    }
}

/// The answer of a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Over the limit; the next request is allowed after this wait.
    Limited {
        retry_after: Duration,
    },
}

impl RateDecision {
    /// Whole seconds for a `Retry-After` header (at least 1), `None` when allowed.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            RateDecision::Allowed => None,
            RateDecision::Limited { retry_after } => {
                let s = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(s.max(1))
            }
        }
    }
}

/// One interface for every kind of shared state. Keys are chosen by the caller (a mode), which
/// puts its own scope in them (realm, route, provider); the store adds its key prefix and a
/// namespace per kind, so a nonce key never meets a session key.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// `memory`, `redis` or `redis-cluster` (logs, metrics).
    fn backend(&self) -> &'static str;

    /// Whether the backend answers (always true in memory). `/readyz` reports it.
    fn ready(&self) -> bool;

    /// Record `key` for `ttl` by an atomic set-if-absent. `Ok(true)`: first use; `Ok(false)`:
    /// seen before (a replay), anywhere that shares this store.
    async fn nonce_once(&self, key: &str, ttl: Duration) -> Result<bool, StateError>;

    /// One request against the budget `rate` of `key` (GCRA, atomic in the backend).
    async fn rate_limit(&self, key: &str, rate: Rate) -> Result<RateDecision, StateError>;

    /// The revocation list named `scope` (an opaque realm), created on first use and kept for
    /// the life of the store. `max_lifetime` is the longest token lifetime the scope issues (a
    /// per-user revocation is kept that long).
    fn revocations(&self, scope: &str, max_lifetime: Duration) -> Arc<RevocationScope>;

    /// Revoke one token until `expires_at_s` (unix seconds), seen by every instance within 1 s.
    async fn revoke_token(
        &self,
        scope: &RevocationScope,
        token_id: &[u8; 16],
        expires_at_s: i64,
    ) -> Result<(), StateError>;

    /// Revoke every token of `user_id` issued at or before `cutoff_ms` (unix ms).
    async fn revoke_user(
        &self,
        scope: &RevocationScope,
        user_id: &str,
        cutoff_ms: i64,
    ) -> Result<(), StateError>;

    /// The answer from the local copy when it is known to be current (memory always; Redis while
    /// its subscription is up and synced), without a round trip. `None`: ask [`Self::is_revoked`].
    fn revoked_local(
        &self,
        scope: &RevocationScope,
        token_id: &[u8; 16],
        user_id: &str,
        issued_at_ms: i64,
    ) -> Option<bool>;

    /// Whether a token is revoked: the local copy when current, else a lookup.
    async fn is_revoked(
        &self,
        scope: &RevocationScope,
        token_id: &[u8; 16],
        user_id: &str,
        issued_at_ms: i64,
    ) -> Result<bool, StateError>;

    /// The revoke-all cutoff (unix ms) of a user, if any.
    async fn user_cutoff(
        &self,
        scope: &RevocationScope,
        user_id: &str,
    ) -> Result<Option<i64>, StateError>;

    /// A server-side session.
    async fn session_get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Store (or replace) a session for `ttl`.
    async fn session_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError>;
    /// Remove a session (absent is fine).
    async fn session_delete(&self, key: &str) -> Result<(), StateError>;

    /// Store a single-use code for `ttl` unless the key exists. `Ok(false)`: it existed.
    async fn code_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StateError>;
    /// Take a code: the first caller gets the value, every later one `None`.
    async fn code_take(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Set `field` of the small map `map` (a key registry's keys of one service). The map lives
    /// at least `ttl` from now (the longest `ttl` put wins); each value carries its own expiry
    /// for the caller to read.
    async fn map_put(
        &self,
        map: &str,
        field: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StateError>;
    /// One field of a map.
    async fn map_get(&self, map: &str, field: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Every field of a map (empty when absent), at most [`MAP_MAX_FIELDS`].
    async fn map_all(&self, map: &str) -> Result<Vec<(String, Vec<u8>)>, StateError>;
    /// Remove a field; `Ok(true)` when it was there.
    async fn map_delete(&self, map: &str, field: &str) -> Result<bool, StateError>;
}

/// Most fields one map holds (a put beyond it fails with [`StateError::Full`] in memory; callers
/// bound their own maps well below it).
pub const MAP_MAX_FIELDS: usize = 1024;

/// The handle modes hold.
pub type Store = Arc<dyn StateStore>;

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// The semantic checks every store must pass (run by the memory and Redis unit tests).
#[cfg(test)]
pub mod suite;
