//! The `pkce:` realms block (serde, unknown keys rejected): one [`PkceRealmConfig`] per named
//! realm, each the edge's client at one authorization server and the downstream public clients
//! it serves.

use std::time::Duration;

use serde::Deserialize;

use crate::auth::limits::{OnStateError, RateLimitConfig};
use crate::config::secret::SecretSource;

/// One PKCE realm: the upstream authorization server, the edge's credentials there, its own
/// callback, sealing keys and the downstream clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkceRealmConfig {
    /// Endpoints are served at `<prefix>/authorize` (and `<prefix>/authorization`) and
    /// `<prefix>/token`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The authorization server's authorization endpoint (http(s) URL).
    pub authorization_url: String,
    /// The authorization server's token endpoint (http(s) URL).
    pub token_url: String,
    /// The edge's client id at the authorization server.
    pub client_id: String,
    /// The edge's client secret there (never sent to a device).
    pub client_secret: SecretSource,
    /// How the edge authenticates at `token_url`: `basic` (client_secret_basic) or `post`.
    #[serde(default)]
    pub token_auth: TokenAuth,
    /// The edge's own callback URL as registered at the authorization server; the callback
    /// endpoint is served at its path.
    pub callback_url: String,
    /// `{id, secret}`; the first seals, all open (rotation).
    pub keys: Vec<PkceKeyConfig>,
    /// The downstream (public) clients and their exact redirect URIs.
    pub clients: Vec<PkceClientConfig>,
    /// How long a sealed upstream `state` is good for (login time).
    #[serde(default = "default_state_lifetime", with = "humantime_serde")]
    pub state_lifetime: Duration,
    /// How long a downstream `code` is good for.
    #[serde(default = "default_code_lifetime", with = "humantime_serde")]
    pub code_lifetime: Duration,
    /// Record redeemed codes in the shared state so each is redeemed once (false: stateless).
    #[serde(default = "yes")]
    pub single_use_codes: bool,
    /// Deadline for the call to `token_url`.
    #[serde(default = "default_token_timeout", with = "humantime_serde")]
    pub token_timeout: Duration,
    /// Per client address, across the three endpoints.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: RateLimitConfig,
    /// When the shared state cannot answer a rate limit or a code record: `deny` (503) or `allow`
    /// (rate limits only; the single-use record always fails closed).
    #[serde(default)]
    pub on_state_error: OnStateError,
}

/// How the edge authenticates at the token endpoint.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// One sealing key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkceKeyConfig {
    pub id: String,
    pub secret: SecretSource,
}

/// One downstream client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkceClientConfig {
    pub client_id: String,
    /// Exact URIs (compared byte for byte).
    pub redirect_uris: Vec<String>,
}

fn default_prefix() -> String {
    "/oauth".into()
}
fn default_state_lifetime() -> Duration {
    Duration::from_secs(600)
}
fn default_code_lifetime() -> Duration {
    Duration::from_secs(60)
}
fn default_token_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_rate_limit() -> RateLimitConfig {
    RateLimitConfig {
        requests_per_second: 5.0,
        burst: 30,
    }
}
fn yes() -> bool {
    true
}
