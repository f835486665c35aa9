//! Auth mode `opaque` (replaces ProxyAuth): the edge keeps a list of users per named realm,
//! issues encrypted tokens at a token endpoint (`/auth`), and lets holders through to the routes
//! that allow them, with per-user rate limits and revocation.
//!
//! - [`users`]: user config (inline or users file) and the compiled user tables.
//! - [`password`]: Argon2id hashing and verification, `authedge hash-password`.
//! - [`cache`]: tokens that already opened.
//! - [`rewrite`]: ProxyAuth's `rewrite_plaintext` (users file rewritten with hashes).
//! - [`limits`]: rate limits kept in the shared state ([`crate::state`]), login counters.
//! - [`endpoints`]: `POST /auth`, `/auth/revoke`, the admin revocation endpoint.
//! - [`filter`]: the route filter (bearer token -> identity).
//!
//! Tokens themselves are sealed and opened by [`crate::tokens::aead`].

mod build;
pub mod cache;
pub mod config;
pub mod endpoints;
pub mod filter;
pub mod limits;
pub mod password;
pub mod rewrite;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

use crate::auth::{AuthFilter, Endpoint};
use crate::config::Problems;
use crate::context::Warm;
use crate::tokens::aead::Keyring;

pub use build::build_realm;
pub use config::{
    AuthRateLimitConfig, KeyConfig, OpaqueHeadersConfig, OpaqueRealmConfig, OpaqueRouteConfig,
};
pub use limits::{OnStateError, RateLimitConfig};
pub use users::{hash_password, hash_password_from_reader, UserConfig};

use crate::state::{RevocationScope, Store};
use limits::SharedLimit;
use users::UserDb;

/// A built realm, shared by its endpoints and by the filters of routes that name it.
#[derive(Debug)]
pub struct Realm {
    pub name: String,
    pub(crate) keyring: Keyring,
    pub(crate) users: UserDb,
    /// Shared state: revocations and rate limits live there.
    pub(crate) state: Store,
    pub(crate) revocations: Arc<RevocationScope>,
    pub(crate) user_limit: Option<SharedLimit>,
    pub(crate) login_user_limit: limits::LoginLimits,
    pub(crate) login_client_limit: SharedLimit,
    pub(crate) lifetime: Duration,
    /// The token endpoint's answer shape (`response:`).
    pub(crate) response: config::ResponseShape,
    pub(crate) user_header: Option<HeaderName>,
    pub(crate) roles_header: Option<HeaderName>,
    /// `Bearer realm="<name>"`.
    pub(crate) challenge: HeaderValue,
    /// `Bearer realm="<name>", error="invalid_token"`.
    pub(crate) invalid_token: HeaderValue,
    /// Token endpoint outcomes for metrics.
    pub(crate) logins: limits::LoginCounters,
    /// Tokens that already opened (skips the AEAD for repeat requests).
    pub(crate) opened: cache::OpenCache,
    /// Bounds concurrent Argon2 computations (memory and CPU).
    pub(crate) argon_gate: Arc<tokio::sync::Semaphore>,
}

impl Realm {
    /// Verify a password against a PHC string on a blocking thread, at most a few at a time.
    /// `Err` when the work could not run (fail closed: the caller answers 503).
    pub(crate) async fn verify(
        &self,
        hash: String,
        password: Zeroizing<String>,
    ) -> Result<bool, VerifyUnavailable> {
        let _permit = self
            .argon_gate
            .acquire()
            .await
            .map_err(|_| VerifyUnavailable)?;
        tokio::task::spawn_blocking(move || users::verify_password(&hash, password.as_bytes()))
            .await
            .map_err(|_| VerifyUnavailable)
    }
}

/// The password check could not run (its gate closed or its blocking task failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the password check could not run")]
pub(crate) struct VerifyUnavailable;

/// Tokens remembered per realm after they opened (about 200 bytes each).
const OPEN_CACHE_TOKENS: usize = 65_536;

/// Endpoints a realm serves: `(exact canonical path, endpoint)`.
pub type RealmEndpoints = Vec<(String, Arc<dyn Endpoint>)>;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn valid_realm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_endpoint_path(p: &str, key: &str, problems: &mut Problems) {
    let canonical = crate::routing::canonical_path(p)
        .map(|c| c == p)
        .unwrap_or(false);
    if !p.starts_with('/') || !canonical || p.contains(['?', '#']) {
        problems.push(key, format!("{p:?} must be an absolute canonical path (no dot segments, doubled slashes or query)"));
    }
}

fn argon_gate(warm: &Warm) -> Arc<tokio::sync::Semaphore> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    warm.pinned("opaque:argon2-gate", || tokio::sync::Semaphore::new(n))
}

/// Build a route's filter against the realms of this config.
pub fn build_filter(
    cfg: &OpaqueRouteConfig,
    realms: &HashMap<String, Arc<Realm>>,
    path: &str,
    _warm: &Warm,
) -> Result<Arc<dyn AuthFilter>, Problems> {
    let mut problems = Problems::default();
    let Some(realm) = realms.get(&cfg.realm) else {
        problems.push(
            format!("{path}.realm"),
            format!("unknown opaque realm {:?}", cfg.realm),
        );
        return Err(problems);
    };
    // A user the realm no longer has is not an error: deleting a user must not block the
    // reload that stops their tokens. It is logged (a typo would otherwise go unnoticed).
    for (i, u) in cfg.users.iter().enumerate() {
        if u.is_empty() {
            problems.push(format!("{path}.users[{i}]"), "a username cannot be empty");
        } else if !realm.users.by_name.contains_key(u) {
            tracing::warn!(key = %format!("{path}.users[{i}]"), realm = %cfg.realm, user = %u, "route names a user the realm does not have");
        }
    }
    for (i, r) in cfg.roles.iter().enumerate() {
        if r.is_empty() {
            problems.push(format!("{path}.roles[{i}]"), "a role cannot be empty");
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(filter::OpaqueFilter::new(
        realm.clone(),
        &cfg.users,
        &cfg.roles,
    )))
}

#[cfg(test)]
mod tests;
