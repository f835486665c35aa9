//! The opaque mode's config types (serde, unknown keys rejected): a named realm
//! ([`OpaqueRealmConfig`]) and a route's filter ([`OpaqueRouteConfig`]).

use std::time::Duration;

use serde::Deserialize;

use super::limits::{OnStateError, RateLimitConfig};
use super::users::UserConfig;
use crate::config::secret::SecretSource;

/// A named realm: users, keys, endpoints, limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpaqueRealmConfig {
    /// Users given inline.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// A YAML (or `.json`) file with `users: [...]`, relative to the config file's directory.
    #[serde(default)]
    pub users_file: Option<String>,
    /// Accept plaintext `password` entries (hashed when loaded).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// ProxyAuth behaviour: rewrite the users file with hashes (needs `allow_plaintext`).
    #[serde(default)]
    pub rewrite_plaintext: bool,
    /// Accept Argon2id hashes below the OWASP minimum (tests only).
    #[serde(default)]
    pub allow_weak_hashes: bool,
    /// `{id, secret}`; the first seals, all open.
    pub keys: Vec<KeyConfig>,
    #[serde(default = "default_lifetime", with = "humantime_serde")]
    pub token_lifetime: Duration,
    #[serde(default = "default_token_path")]
    pub token_path: String,
    #[serde(default = "default_revoke_path")]
    pub revoke_path: String,
    /// Served only when `admin_secret` is set.
    #[serde(default = "default_admin_path")]
    pub admin_path: String,
    #[serde(default)]
    pub admin_secret: Option<SecretSource>,
    /// Request header carrying the admin secret.
    #[serde(default = "default_admin_header")]
    pub admin_header: String,
    /// Per user, across all of the user's tokens. None: unlimited.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub auth_rate_limit: AuthRateLimitConfig,
    /// When the shared state cannot answer a rate limit: `deny` (503) or `allow`. Revocation
    /// checks always fail closed.
    #[serde(default)]
    pub on_state_error: OnStateError,
    #[serde(default)]
    pub headers: OpaqueHeadersConfig,
    /// The shape of the token endpoint's answers: `authedge` (default) or `proxyauth`.
    #[serde(default)]
    pub response: ResponseShape,
}

/// What `POST token_path` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseShape {
    /// `{"token","token_type","expires_at" (RFC 3339),"expires_in"}`; errors as JSON.
    #[default]
    Authedge,
    /// ProxyAuth 0.5's: `{"token","expires_at"}` with `expires_at` as `YYYY-MM-DD HH:MM:SS` in
    /// Paris time (as ProxyAuth writes it); bad credentials 401 `Invalid credentials`.
    Proxyauth,
}

/// One token key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub id: String,
    pub secret: SecretSource,
}

/// Limits on the token endpoint against brute force.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRateLimitConfig {
    #[serde(default = "default_per_username")]
    pub per_username: RateLimitConfig,
    #[serde(default = "default_per_client")]
    pub per_client: RateLimitConfig,
    /// Ceiling per username over all networks (much higher than `per_username`).
    #[serde(default = "default_per_username_global")]
    pub per_username_global: RateLimitConfig,
}

impl Default for AuthRateLimitConfig {
    fn default() -> Self {
        AuthRateLimitConfig {
            per_username: default_per_username(),
            per_client: default_per_client(),
            per_username_global: default_per_username_global(),
        }
    }
}

/// Upstream header names for the user and their roles; an empty string disables one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpaqueHeadersConfig {
    #[serde(default = "default_user_header")]
    pub user: String,
    #[serde(default = "default_roles_header")]
    pub roles: String,
}

impl Default for OpaqueHeadersConfig {
    fn default() -> Self {
        OpaqueHeadersConfig {
            user: default_user_header(),
            roles: default_roles_header(),
        }
    }
}

fn default_lifetime() -> Duration {
    Duration::from_secs(3600)
}
fn default_token_path() -> String {
    "/auth".into()
}
fn default_revoke_path() -> String {
    "/auth/revoke".into()
}
fn default_admin_path() -> String {
    "/auth/admin/revoke".into()
}
fn default_admin_header() -> String {
    "X-Admin-Secret".into()
}
fn default_per_username() -> RateLimitConfig {
    RateLimitConfig {
        requests_per_second: 0.1,
        burst: 5,
    }
}
fn default_per_username_global() -> RateLimitConfig {
    RateLimitConfig {
        requests_per_second: 1.0,
        burst: 100,
    }
}
fn default_per_client() -> RateLimitConfig {
    RateLimitConfig {
        requests_per_second: 1.0,
        burst: 20,
    }
}
fn default_user_header() -> String {
    "X-User".into()
}
fn default_roles_header() -> String {
    "X-User-Roles".into()
}

/// A route's opaque filter: which users of which realm may pass. Neither `users` nor `roles`:
/// any user of the realm.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpaqueRouteConfig {
    pub realm: String,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}
