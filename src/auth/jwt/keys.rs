//! A `jwt` provider's keys: remote (discovery or `jwks_uri`, cached in
//! [`JwksCache`](crate::tokens::jwks::JwksCache)), static (a PEM public key or a JWK/JWKS file),
//! or an HMAC secret. An HMAC key is only ever made from a configured `secret`, never from a
//! public key, so a token cannot choose HS256 to be checked against the RSA key's bytes.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::config::secret::{SecretError, SecretSource};
use crate::tokens::jwks::{parse_jwk, parse_jwks, rsa_key, JwkError, JwksCache, KeySet, VerifyKey};

/// Where one provider's keys live.
#[derive(Debug, Clone)]
pub enum Keys {
    Static(Arc<KeySet>),
    Remote(Arc<JwksCache>),
}

impl Keys {
    pub fn current(&self) -> Option<Arc<KeySet>> {
        match self {
            Keys::Static(s) => Some(s.clone()),
            Keys::Remote(c) => c.current(),
        }
    }

    pub fn ready(&self) -> bool {
        match self {
            Keys::Static(s) => !s.is_empty(),
            Keys::Remote(c) => c.has_keys(),
        }
    }
}

/// Why an HMAC secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HmacKeyError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("an HMAC secret needs at least 32 bytes")]
    Short,
    #[error("this looks like a PEM or JWK key, not an HMAC secret")]
    LooksLikePublicKey,
}

/// An HMAC key set from a secret (at least 32 bytes: shorter secrets are guessable offline).
pub fn hmac_keys(secret: &SecretSource, algs: Vec<Algorithm>) -> Result<KeySet, HmacKeyError> {
    let s = secret.resolve()?;
    if s.expose().len() < 32 {
        return Err(HmacKeyError::Short);
    }
    // A public key is public: as an HMAC secret it would let anyone sign (HS/RS confusion).
    let text = String::from_utf8_lossy(s.expose());
    if text.contains("-----BEGIN") || text.trim_start().starts_with('{') {
        return Err(HmacKeyError::LooksLikePublicKey);
    }
    Ok(KeySet::new(vec![VerifyKey {
        kid: None,
        family: AlgorithmFamily::Hmac,
        algs,
        key: DecodingKey::from_secret(s.expose()),
    }]))
}

/// A `keys_file` that gives no verification key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct KeyFileError {
    pub path: String,
    pub reason: KeyFileReason,
}

/// What is wrong with a `keys_file`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileReason {
    #[error("cannot read: {0}")]
    Read(String),
    #[error("not text (PEM or JSON)")]
    NotText,
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error(transparent)]
    Jwk(#[from] JwkError),
    #[error("no usable signature key")]
    NoUsableKey,
    #[error("neither PEM nor JSON")]
    Format,
    #[error("holds a private key; give the public key only")]
    PrivateKey,
    #[error("unreadable RSA key")]
    UnreadableRsa,
    #[error("unsupported EC curve")]
    Curve,
    #[error("not an RSA, EC or Ed25519 public key")]
    UnknownKey,
}

/// Read a DER length; returns (length, bytes used).
fn der_len(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.first()?;
    if first < 0x80 {
        return Some((first as usize, 1));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 || b.len() < 1 + n {
        return None;
    }
    let mut len = 0usize;
    for x in &b[1..=n] {
        len = (len << 8) | *x as usize;
    }
    Some((len, 1 + n))
}

/// One DER element of tag `tag` at the start of `b`: (content, rest).
fn der_take(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *b.first()? != tag {
        return None;
    }
    let (len, used) = der_len(&b[1..])?;
    let start = 1 + used;
    let end = start.checked_add(len)?;
    Some((b.get(start..end)?, b.get(end..)?))
}

/// (n, e) of a PKCS#1 `RSAPublicKey`.
pub fn rsa_public_components(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (seq, _) = der_take(der, 0x30)?;
    let (n, rest) = der_take(seq, 0x02)?;
    let (e, _) = der_take(rest, 0x02)?;
    Some((n.to_vec(), e.to_vec()))
}

/// Static keys from a file: PEM (RSA, EC P-256/P-384 or Ed25519 public key) or JSON (one JWK
/// or a JWKS). `rsa_algs` are the algorithms an RSA key without `alg` may verify.
pub fn file_keys(path: &str, rsa_algs: &[Algorithm]) -> Result<KeySet, KeyFileError> {
    let err = |reason: KeyFileReason| KeyFileError {
        path: path.to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(KeyFileReason::Read(e.to_string())))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| err(KeyFileReason::NotText))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|e| err(KeyFileReason::NotJson(e.to_string())))?;
        if v.get("keys").is_some() {
            let (set, _) = parse_jwks(trimmed.as_bytes(), rsa_algs).map_err(|e| err(e.into()))?;
            if set.is_empty() {
                return Err(err(KeyFileReason::NoUsableKey));
            }
            return Ok(set);
        }
        let key = parse_jwk(&v, rsa_algs).map_err(|e| err(e.into()))?;
        return Ok(KeySet::new(vec![key]));
    }
    if !trimmed.starts_with("-----BEGIN") {
        return Err(err(KeyFileReason::Format));
    }
    if trimmed.contains("PRIVATE KEY") {
        return Err(err(KeyFileReason::PrivateKey));
    }
    if let Ok(k) = DecodingKey::from_rsa_pem(&bytes) {
        let der = k
            .try_get_as_bytes()
            .map_err(|_| err(KeyFileReason::UnreadableRsa))?;
        let (n, e) = rsa_public_components(der).ok_or_else(|| err(KeyFileReason::UnreadableRsa))?;
        return rsa_key(&n, &e, None, rsa_algs.to_vec())
            .map(|k| KeySet::new(vec![k]))
            .map_err(|e| err(e.into()));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(&bytes) {
        let point_len = k.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
        let algs = match point_len {
            65 => vec![Algorithm::ES256],
            97 => vec![Algorithm::ES384],
            _ => return Err(err(KeyFileReason::Curve)),
        };
        return Ok(KeySet::new(vec![VerifyKey {
            kid: None,
            family: AlgorithmFamily::Ec,
            algs,
            key: k,
        }]));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(&bytes) {
        return Ok(KeySet::new(vec![VerifyKey {
            kid: None,
            family: AlgorithmFamily::Ed,
            algs: vec![Algorithm::EdDSA],
            key: k,
        }]));
    }
    Err(err(KeyFileReason::UnknownKey))
}
