//! The top-level `key_registry:` block: a jwtproxy key registry served by authedge itself.
//! Serde only, unknown keys rejected; [`super::build`] checks values with their key paths.
//!
//! ```yaml
//! key_registry:
//!   path: /services/              # where the protocol is served (must end in /services/)
//!   auto_approve: [billing]       # services whose new self-signed keys are approved at once
//!   admin_secret: { env: KEYREG_ADMIN }   # enables the pending list and approval
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::config::secret::SecretSource;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRegistryConfig {
    /// The path the protocol is served under; clients use the part before `services/` as their
    /// registry URL (`/services/` → `http://host:port/`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Serve it on this host only (default: every host of every listener).
    #[serde(default)]
    pub host: Option<String>,
    /// The origin publish/delete tokens must name in `aud` (default: the origin the request
    /// came to: `http(s)://` + its `Host`).
    #[serde(default)]
    pub audience: Option<String>,
    /// Services whose new self-signed keys are approved when published (else: pending until an
    /// admin approves them).
    #[serde(default)]
    pub auto_approve: Vec<String>,
    /// Secret for the admin calls (pending list, approve). Without it there are none.
    #[serde(default)]
    pub admin_secret: Option<SecretSource>,
    /// Request header that carries the admin secret.
    #[serde(default = "default_admin_header")]
    pub admin_header: String,
    /// Clock skew allowed on the tokens of publish and delete requests.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub max_skew: Duration,
    /// Longest accepted `exp - iat` of those tokens.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub max_ttl: Duration,
    /// `Cache-Control: max-age` of a served key (less when the key expires sooner).
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub cache_max_age: Duration,
    /// How long a key published without `?expiration=` is kept.
    #[serde(default = "default_key_lifetime", with = "humantime_serde")]
    pub key_lifetime: Duration,
    /// How long a pending (unapproved) key is kept.
    #[serde(default = "default_pending_lifetime", with = "humantime_serde")]
    pub pending_lifetime: Duration,
    /// Most keys (pending and approved) one service may hold.
    #[serde(default = "default_max_keys")]
    pub max_keys_per_service: usize,
}

fn default_path() -> String {
    "/services/".into()
}
fn default_admin_header() -> String {
    "x-keyregistry-admin".into()
}
fn default_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_max_age() -> Duration {
    Duration::from_secs(300)
}
fn default_key_lifetime() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_pending_lifetime() -> Duration {
    Duration::from_secs(86_400)
}
fn default_max_keys() -> usize {
    16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: KeyRegistryConfig = serde_norway::from_str("auto_approve: [a]\n").unwrap();
        assert_eq!(c.path, "/services/");
        assert_eq!(c.auto_approve, vec!["a".to_string()]);
        assert_eq!(c.max_keys_per_service, 16);
        assert!(c.admin_secret.is_none());
        assert!(serde_norway::from_str::<KeyRegistryConfig>("auto_aprove: [a]\n").is_err());
    }
}
