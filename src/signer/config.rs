//! The top-level `signer:` block: how the forward proxy of `role: signer` listeners signs.
//! Serde only, unknown keys rejected; [`super::sign::build`] checks values with key paths.
//!
//! ```yaml
//! signer:
//!   issuer: billing                 # iss of every token
//!   expiration_time: 5m             # exp = now + this
//!   max_skew: 1m                    # nbf = now - this
//!   nonce_length: 32                # jti length (CSPRNG)
//!   private_key: { preshared: { key_id: k1, private_key_file: billing.key } }
//!   allowed_targets: [ "http://orders.internal:8080" ]   # optional: only these origins
//!   ca_cert: mitm-ca.pem            # optional: CONNECT with a MITM CA (with ca_key)
//!   ca_key: mitm-ca.key
//!   trusted_certificates: [ internal-ca.pem ]   # CONNECT targets' CAs (default: system roots)
//!   insecure_skip_verify: false
//! ```

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    pub issuer: String,
    #[serde(default = "default_expiration", with = "humantime_serde")]
    pub expiration_time: Duration,
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub max_skew: Duration,
    #[serde(default = "default_nonce")]
    pub nonce_length: usize,
    pub private_key: PrivateKeyConfig,
    /// When set, requests are signed and forwarded only to these origins
    /// (`http://host[:port]`); any other target is 403.
    #[serde(default)]
    pub allowed_targets: Option<Vec<String>>,
    /// The MITM CA for `CONNECT` (PEM certificate and key, relative to the config file). Both
    /// or neither; without them `CONNECT` is 403.
    #[serde(default)]
    pub ca_cert: Option<String>,
    #[serde(default)]
    pub ca_key: Option<String>,
    /// PEM files of the CAs that `CONNECT` targets are verified against (default: the system
    /// roots).
    #[serde(default)]
    pub trusted_certificates: Option<Vec<String>>,
    /// Do not verify `CONNECT` targets' certificates at all.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Where the signing key comes from (one kind today).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateKeyConfig {
    pub preshared: PresharedKeyConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresharedKeyConfig {
    /// The `kid` of every token.
    pub key_id: String,
    /// PEM RSA private key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`), relative to the
    /// config file.
    pub private_key_file: String,
}

fn default_expiration() -> Duration {
    Duration::from_secs(300)
}
fn default_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_nonce() -> usize {
    32
}
