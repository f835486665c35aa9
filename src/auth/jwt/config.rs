//! The `jwt` filter's config (a route's `auth: - type: jwt ...`). Serde only, unknown keys
//! rejected; cross-field checks happen in `build`, which reports every problem with its key path.
//!
//! ```yaml
//! auth:
//!   - type: jwt
//!     providers:
//!       - issuer: https://op.example          # discovery at <issuer>/.well-known/openid-configuration
//!       - issuer: https://other.example
//!         jwks_uri: https://other.example/keys # or: keys_file: keys.pem / keys.json, or: secret: {env: X}
//!     audience: [api://orders]                # string or list (any of)
//!     scopes: [orders.read]
//!     claim_headers: { tenant: X-Tenant }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::secret::SecretSource;

/// A string or a list of strings (ooproxy's AUDIENCE accepts both).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Token issuers this filter accepts; keys are kept per issuer.
    pub providers: Vec<ProviderConfig>,
    /// Accepted `alg` values. Default: what the keys declare (an RSA key without `alg`: RS256).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// The token's `aud` must contain this value, or one of these values.
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    /// The token's `sub` must equal this.
    #[serde(default)]
    pub subject: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Longest accepted `exp - iat` (then `iat` is required).
    #[serde(default, with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
    /// Required `typ` header, e.g. `at+jwt` (the `application/` prefix is optional).
    #[serde(default)]
    pub typ: Option<String>,
    /// Scopes the token must all have (`scope` string or `scp` list).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims that must have these values (or, for an array claim, contain them).
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Claim name → upstream header name.
    #[serde(default)]
    pub claim_headers: BTreeMap<String, String>,
    /// Tokens longer than this are rejected before parsing.
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
    /// Verified tokens remembered (signature not checked again until `exp`); 0 disables.
    #[serde(default = "default_cache")]
    pub cache_size: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The exact `iss` of this provider's tokens (no trailing slash for discovery).
    pub issuer: String,
    /// Fetch keys here instead of through discovery.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Static keys: a PEM public key or a JWK / JWKS JSON file (relative to the config file).
    #[serde(default)]
    pub keys_file: Option<String>,
    /// An HMAC secret for HS256/384/512 (may be combined with public keys).
    #[serde(default)]
    pub secret: Option<SecretSource>,
    /// Find the JWKS through `<issuer>/.well-known/openid-configuration`. Default: on unless
    /// `jwks_uri`, `keys_file` or `secret` is given.
    #[serde(default)]
    pub discovery: Option<bool>,
    /// Background refresh interval of remote keys (sooner if the JWKS says `max-age`).
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
    /// After a fetch, tokens with an unknown `kid` cause no new fetch for this long.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub unknown_kid_cooldown: Duration,
    /// Allow plain-http discovery/JWKS to a non-loopback host.
    #[serde(default)]
    pub allow_http: bool,
}

fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}
fn default_max_token() -> usize {
    8 * 1024
}
fn default_cache() -> usize {
    10_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c: JwtConfig = serde_norway::from_str(
            "providers: [{issuer: 'https://op', refresh: 10m}]\naudience: [a, b]\nleeway: 5s\nmax_lifetime: 1h\n",
        )
        .unwrap();
        assert_eq!(
            c.audience,
            Some(OneOrMany::Many(vec!["a".into(), "b".into()]))
        );
        assert_eq!(c.leeway, Duration::from_secs(5));
        assert_eq!(c.providers[0].refresh, Duration::from_secs(600));
        assert_eq!(c.providers[0].unknown_kid_cooldown, Duration::from_secs(30));
        assert_eq!(c.max_token_bytes, 8192);
        assert!(serde_norway::from_str::<JwtConfig>("providers: []\naudiance: x\n").is_err());
        assert!(
            serde_norway::from_str::<JwtConfig>("providers: [{issuer: x, jwks: y}]\n").is_err()
        );
    }
}
