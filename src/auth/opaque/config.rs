//! The opaque mode's config types (serde, unknown keys rejected): a named realm
//! ([`OpaqueRealmConfig`]) and a route's filter ([`OpaqueRouteConfig`]).

use std::time::Duration;

use serde::de::{self, Deserializer, EnumAccess, MapAccess, Visitor};
use serde::Deserialize;

use super::limits::RateLimitConfig;
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
    pub admin_secret: Option<SecretField>,
    /// Request header carrying the admin secret.
    #[serde(default = "default_admin_header")]
    pub admin_header: String,
    /// Per user, across all of the user's tokens. None: unlimited.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub auth_rate_limit: AuthRateLimitConfig,
    #[serde(default)]
    pub headers: OpaqueHeadersConfig,
}

/// One token key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub id: String,
    pub secret: SecretField,
}

/// Limits on the token endpoint against brute force.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRateLimitConfig {
    #[serde(default = "default_per_username")]
    pub per_username: RateLimitConfig,
    #[serde(default = "default_per_client")]
    pub per_client: RateLimitConfig,
}

impl Default for AuthRateLimitConfig {
    fn default() -> Self {
        AuthRateLimitConfig {
            per_username: default_per_username(),
            per_client: default_per_client(),
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

/// A secret given as a map, `{value: ...}`, `{env: NAME}` or `{file: PATH}` (the form the other
/// modes use), or as a YAML tag, `!value ...`, `!env NAME`, `!file PATH`.
#[derive(Debug, Clone)]
pub struct SecretField(pub SecretSource);

impl std::ops::Deref for SecretField {
    type Target = SecretSource;
    fn deref(&self) -> &SecretSource {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretSource;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a secret: {value: ...}, {env: NAME} or {file: PATH}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<SecretSource, A::Error> {
                const ONE: &str = "give exactly one of value, env, file";
                let Some(key) = m.next_key::<String>()? else {
                    return Err(de::Error::custom(ONE));
                };
                let v: String = m.next_value()?;
                if m.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(ONE));
                }
                match key.as_str() {
                    "value" => Ok(SecretSource::Value(v)),
                    "env" => Ok(SecretSource::Env(v)),
                    "file" => Ok(SecretSource::File(v)),
                    other => Err(de::Error::unknown_field(other, &["value", "env", "file"])),
                }
            }

            fn visit_enum<A: EnumAccess<'de>>(self, e: A) -> Result<SecretSource, A::Error> {
                SecretSource::deserialize(de::value::EnumAccessDeserializer::new(e))
            }
        }
        d.deserialize_any(V).map(SecretField)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct K {
        secret: SecretField,
    }

    fn parse(y: &str) -> Result<SecretSource, String> {
        serde_norway::from_str::<K>(y)
            .map(|k| k.secret.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn secret_forms() {
        assert!(matches!(parse("secret: {value: abc}"), Ok(SecretSource::Value(v)) if v == "abc"));
        assert!(matches!(parse("secret: {env: X}"), Ok(SecretSource::Env(v)) if v == "X"));
        assert!(matches!(parse("secret:\n  file: /f\n"), Ok(SecretSource::File(v)) if v == "/f"));
        assert!(matches!(parse("secret: !value abc"), Ok(SecretSource::Value(v)) if v == "abc"));
        assert!(matches!(parse("secret: !env X"), Ok(SecretSource::Env(_))));
        assert!(parse("secret: {value: a, env: b}")
            .unwrap_err()
            .contains("exactly one"));
        assert!(parse("secret: {}").unwrap_err().contains("exactly one"));
        assert!(parse("secret: {valu: a}").is_err());
        assert!(parse("secret: abc").is_err());
        assert!(parse("secret: !nope abc").is_err());
    }
}
