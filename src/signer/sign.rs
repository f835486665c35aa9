//! The signer's key and tokens. The RSA key is parsed once into aws-lc's `RsaKeyPair`
//! (jsonwebtoken would parse it again for every signature); the JOSE header is encoded once.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use serde::Serialize;

use super::config::SignerConfig;
use crate::config::Problems;

/// jwtproxy's nonce alphabet.
const NONCE_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";

/// A built signer: key, claims settings, allowed targets.
pub struct Signer {
    issuer: String,
    key: RsaKeyPair,
    /// `base64url({"alg":"RS256","kid":...,"typ":"JWT"})`.
    header: String,
    expiration: i64,
    skew: i64,
    nonce_length: usize,
    /// Lower-case origins; `None`: any target.
    allowed: Option<Vec<String>>,
    rng: SystemRandom,
    /// The MITM CA of `CONNECT`, when configured.
    pub mitm: Option<Arc<super::mitm::Mitm>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
}

fn unix_now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Read an RSA private key PEM (PKCS#1 or PKCS#8) into a key pair.
fn load_key(path: &Path) -> Result<RsaKeyPair, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let der = jsonwebtoken::EncodingKey::from_rsa_pem(&pem)
        .map_err(|e| format!("{}: not an RSA private key PEM: {e}", path.display()))?;
    let der = der.as_bytes();
    RsaKeyPair::from_der(der)
        .or_else(|_| RsaKeyPair::from_pkcs8(der))
        .map_err(|e| format!("{}: unusable RSA key: {e}", path.display()))
}

/// Check the `signer:` block and build the signer. `resolve` turns a file name of the config
/// into a path (relative names are next to the config file).
pub fn build(
    cfg: &SignerConfig,
    path: &str,
    resolve: &dyn Fn(&str) -> String,
) -> Result<Arc<Signer>, Problems> {
    let mut problems = Problems::default();
    if cfg.issuer.is_empty() {
        problems.push(format!("{path}.issuer"), "must not be empty");
    }
    if cfg.expiration_time.as_secs() == 0 {
        problems.push(format!("{path}.expiration_time"), "must be at least 1s");
    }
    if !(16..=256).contains(&cfg.nonce_length) {
        problems.push(format!("{path}.nonce_length"), "must be between 16 and 256");
    }
    let kp = format!("{path}.private_key.preshared");
    let pre = &cfg.private_key.preshared;
    if pre.key_id.is_empty() {
        problems.push(format!("{kp}.key_id"), "must not be empty");
    }
    let key = match load_key(Path::new(&resolve(&pre.private_key_file))) {
        Ok(k) if k.public_modulus_len() >= 256 => Some(k),
        Ok(_) => {
            problems.push(
                format!("{kp}.private_key_file"),
                "RSA keys under 2048 bits are refused",
            );
            None
        }
        Err(e) => {
            problems.push(format!("{kp}.private_key_file"), e);
            None
        }
    };
    let mut allowed = None;
    if let Some(list) = &cfg.allowed_targets {
        let mut out = Vec::new();
        for (i, t) in list.iter().enumerate() {
            match crate::auth::signed::token::Origin::parse(t) {
                Some(_) if t.starts_with("http://") || t.starts_with("https://") => {
                    out.push(t.trim_end_matches('/').to_ascii_lowercase())
                }
                _ => problems.push(
                    format!("{path}.allowed_targets[{i}]"),
                    format!(
                        "{t:?} is not an origin (http://host[:port], or https://host[:port] for CONNECT)"
                    ),
                ),
            }
        }
        allowed = Some(out);
    }
    let mitm = super::mitm::build(cfg, path, resolve, &mut problems);
    let header = serde_json::json!({"alg": "RS256", "kid": pre.key_id, "typ": "JWT"});
    let (Some(key), true) = (key, problems.is_empty()) else {
        return Err(problems);
    };
    Ok(Arc::new(Signer {
        issuer: cfg.issuer.clone(),
        key,
        header: URL_SAFE_NO_PAD.encode(header.to_string()),
        expiration: i64::try_from(cfg.expiration_time.as_secs()).unwrap_or(i64::MAX / 4),
        skew: i64::try_from(cfg.max_skew.as_secs()).unwrap_or(0),
        nonce_length: cfg.nonce_length,
        allowed,
        rng: SystemRandom::new(),
        mitm,
    }))
}

impl Signer {
    /// Whether requests to `origin` (`http://host[:port]` as the request named it) may be signed.
    /// A `CONNECT` target `https://host:443` also matches an entry `https://host`.
    pub fn allows(&self, origin: &str) -> bool {
        match &self.allowed {
            None => true,
            Some(list) => {
                let bare = origin
                    .strip_prefix("https://")
                    .and_then(|o| o.strip_suffix(":443"))
                    .map(|h| ("https://", h));
                list.iter().any(|o| {
                    o.eq_ignore_ascii_case(origin)
                        || bare.is_some_and(|(s, h)| {
                            o.len() == s.len() + h.len()
                                && o.starts_with(s)
                                && o[s.len()..].eq_ignore_ascii_case(h)
                        })
                })
            }
        }
    }

    /// A fresh token for a request to `aud`; `None` only if the signature fails.
    pub fn token(&self, aud: &str) -> Option<String> {
        let mut rng = rand::rng();
        let jti: String = (0..self.nonce_length)
            .map(|_| char::from(NONCE_CHARS[rng.random_range(0..NONCE_CHARS.len())]))
            .collect();
        let now = unix_now();
        let claims = Claims {
            iss: &self.issuer,
            aud,
            iat: now,
            nbf: now - self.skew,
            exp: now + self.expiration,
            jti: &jti,
        };
        let body = serde_json::to_vec(&claims).ok()?;
        let mut out = String::with_capacity(self.header.len() + body.len() * 2 + 360);
        out.push_str(&self.header);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&body, &mut out);
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, out.as_bytes(), &mut sig)
            .ok()?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

    fn here(name: &str) -> String {
        format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn cfg(extra: &str) -> SignerConfig {
        serde_norway::from_str(&format!(
            "issuer: svc-a\nprivate_key: {{ preshared: {{ key_id: k1, private_key_file: conf/signed/svc-a.key }} }}\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn tokens_verify_with_the_public_key_and_carry_jwtproxys_claims() {
        let s = build(&cfg(""), "signer", &here).unwrap();
        let t = s.token("http://orders.test:8080").unwrap();
        let h = decode_header(&t).unwrap();
        assert_eq!(
            (h.alg, h.kid.as_deref(), h.typ.as_deref()),
            (Algorithm::RS256, Some("k1"), Some("JWT"))
        );
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/conf/signed/svc-a.pub.pem"
        ))
        .unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&["http://orders.test:8080"]);
        v.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss", "jti"]);
        let c = decode::<serde_json::Value>(&t, &DecodingKey::from_rsa_pem(&pem).unwrap(), &v)
            .unwrap()
            .claims;
        assert_eq!(c["iss"], "svc-a");
        let (iat, nbf, exp) = (
            c["iat"].as_i64().unwrap(),
            c["nbf"].as_i64().unwrap(),
            c["exp"].as_i64().unwrap(),
        );
        assert_eq!((iat - nbf, exp - iat), (60, 300));
        let jti = c["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 32);
        assert!(jti.bytes().all(|b| NONCE_CHARS.contains(&b)));
        let other = s.token("http://orders.test:8080").unwrap();
        assert_ne!(t, other, "a fresh jti each time");
        assert!(s.allows("http://anything"));
    }

    #[test]
    fn allowed_targets_and_bad_config() {
        let s = build(
            &cfg("allowed_targets: [\"http://Orders.test:8080/\"]\n"),
            "signer",
            &here,
        )
        .unwrap();
        assert!(s.allows("http://orders.test:8080"));
        assert!(!s.allows("http://orders.test:8081"));
        assert!(!s.allows("http://orders.test"));
        let bad: SignerConfig = serde_norway::from_str(
            "issuer: ''\nnonce_length: 4\nallowed_targets: [ 'ftp://x', 'nope' ]\nprivate_key: { preshared: { key_id: '', private_key_file: conf/signed/svc-a.pub.pem } }\n",
        )
        .unwrap();
        let text = format!("{:?}", build(&bad, "signer", &here).unwrap_err());
        for key in [
            "signer.issuer",
            "signer.nonce_length",
            "signer.allowed_targets[0]",
            "signer.allowed_targets[1]",
            "signer.private_key.preshared.key_id",
            "signer.private_key.preshared.private_key_file",
        ] {
            assert!(text.contains(key), "{key}: {text}");
        }
    }
}
