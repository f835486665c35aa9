//! The `signed` filter's config (a route's `auth: - type: signed ...`). Serde only, unknown keys
//! rejected; `build` checks values and reports every problem with its key path.
//!
//! ```yaml
//! auth:
//!   - type: signed
//!     audience: https://orders.internal     # scheme://host[:port] this service is reached at
//!     max_skew: 1m
//!     max_ttl: 5m
//!     key_server:
//!       preshared: { issuer: billing, key_id: k1, public_key_file: billing.pub.pem }
//!       # or: keyregistry: { registry: https://keys.internal/, cache: { duration: 10m } }
//!     claims: { env: prod }                 # required exact values
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedConfig {
    /// The origin this service is reached at; `aud` must name it (scheme, host and port,
    /// case-insensitively; the default port may be left out on either side).
    pub audience: String,
    /// Clock skew allowed on `iat`, `nbf` and `exp`, both ways.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub max_skew: Duration,
    /// Longest accepted `exp - iat`.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub max_ttl: Duration,
    pub key_server: KeyServerConfig,
    /// Claims that must be present with exactly these values (jwtproxy's `static` verifier).
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Also take the token from the password of HTTP Basic auth (jwtproxy's fallback).
    #[serde(default)]
    pub allow_basic: bool,
    /// Accepted `alg` values (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA).
    #[serde(default = "default_algs")]
    pub algs: Vec<String>,
    /// Shortest accepted `jti` (jwtproxy's signer sends 32 characters).
    #[serde(default = "default_min_nonce")]
    pub min_nonce_length: usize,
    /// Tokens longer than this are refused before parsing.
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
}

/// Where public keys come from: exactly one of the two.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyServerConfig {
    #[serde(default)]
    pub preshared: Option<PresharedConfig>,
    #[serde(default)]
    pub keyregistry: Option<RegistryConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PresharedConfig {
    /// The only `iss` accepted.
    pub issuer: String,
    /// The only `kid` accepted.
    pub key_id: String,
    /// PEM public key (PKCS#1 `RSA PUBLIC KEY` or SPKI `PUBLIC KEY`; EC/Ed25519 SPKI too),
    /// relative to the config file.
    pub public_key_file: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of a key registry (`GET <registry>/services/<iss>/keys/<kid>`).
    pub registry: String,
    #[serde(default)]
    pub cache: CacheConfig,
    /// After a failed or refused lookup of a key, no new lookup of it for this long.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub unknown_kid_cooldown: Duration,
    /// Most keys kept in the cache.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Allow plain http to a non-loopback registry.
    #[serde(default)]
    pub allow_http: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a fetched key is used (shorter when the registry's `Cache-Control` says so).
    #[serde(default = "default_cache_duration", with = "humantime_serde")]
    pub duration: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            duration: default_cache_duration(),
        }
    }
}

fn default_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_algs() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_min_nonce() -> usize {
    16
}
fn default_max_token() -> usize {
    8 * 1024
}
fn default_cooldown() -> Duration {
    Duration::from_secs(10)
}
fn default_max_keys() -> usize {
    1024
}
fn default_cache_duration() -> Duration {
    Duration::from_secs(600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: SignedConfig = serde_norway::from_str(
            "audience: http://a\nkey_server: { preshared: { issuer: i, key_id: k, public_key_file: f } }\n",
        )
        .unwrap();
        assert_eq!(c.max_skew, Duration::from_secs(60));
        assert_eq!(c.max_ttl, Duration::from_secs(300));
        assert_eq!(c.algs, vec!["RS256".to_string()]);
        let c: SignedConfig = serde_norway::from_str(
            "audience: http://a\nkey_server: { keyregistry: { registry: 'http://r/' } }\n",
        )
        .unwrap();
        let r = c.key_server.keyregistry.unwrap();
        assert_eq!(r.cache.duration, Duration::from_secs(600));
        assert!(serde_norway::from_str::<SignedConfig>(
            "audience: a\nkey_server: { preshared: { issuer: i, key_id: k, public_key_file: f } }\nmax_skw: 1s\n"
        )
        .is_err());
    }
}
