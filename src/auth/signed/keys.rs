//! Public keys of signing services: one preshared key, or a jwtproxy key registry
//! (`GET <registry>/services/<iss>/keys/<kid>`, one JWK) behind a bounded cache.
//!
//! The registry cache keeps a key for `cache.duration`, shorter when the registry's
//! `Cache-Control: max-age` says so. A key not cached is fetched single-flight (one lookup at a
//! time; waiters then read the cache), and a failed or refused lookup is remembered for the
//! cooldown, so a flood of random kids costs at most one lookup per kid per cooldown and never
//! more than one at a time. 403 (expired), 404 (unknown) and 409 (pending approval) are a deny;
//! a registry that cannot be reached is 503 for keys not cached. Lookups run on the outbound
//! runtime, which owns the HTTP client's connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::pubkey::{rsa_der, PublicKey};
use crate::auth::DenyReason;
use crate::outbound::{Call, Outbound, OutboundError};
use crate::tokens::jwks::{max_age, parse_jwk, VerifyKey};

/// Largest key document read from a registry.
const MAX_DOCUMENT: usize = 64 * 1024;
/// Deadline of one registry lookup.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);

/// Why a preshared public key file cannot be used (each message names the file).
#[derive(Debug, thiserror::Error)]
pub enum PemKeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a PEM file")]
    NotPem(String),
    #[error("{0}: holds a private key; give the public key only")]
    Private(String),
    #[error("{0}: RSA keys under 2048 bits are refused")]
    ShortRsa(String),
    #[error("{0}: not an RSA, EC or Ed25519 public key")]
    Unknown(String),
    #[error("{path}: none of the configured algs can use this {family:?} key")]
    NoAlg {
        path: String,
        family: AlgorithmFamily,
    },
}

/// A public key from a PEM file: RSA (PKCS#1 or SPKI; at least 2048 bits), EC P-256/P-384 or
/// Ed25519 SPKI. `algs` are the configured algorithms; the key gets those of its family.
pub fn pem_key(path: &str, algs: &[Algorithm]) -> Result<VerifyKey, PemKeyError> {
    let bytes = std::fs::read(path).map_err(|source| PemKeyError::Read {
        path: path.to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.trim_start().starts_with("-----BEGIN") {
        return Err(PemKeyError::NotPem(path.to_string()));
    }
    if text.contains("PRIVATE KEY") {
        return Err(PemKeyError::Private(path.to_string()));
    }
    let (family, key) = if let Ok(k) = DecodingKey::from_rsa_pem(&bytes) {
        // PKCS#1 DER of a 2048-bit key is 270 bytes; of a 1024-bit key 140.
        let der_len = k.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
        if der_len < 260 {
            return Err(PemKeyError::ShortRsa(path.to_string()));
        }
        (AlgorithmFamily::Rsa, k)
    } else if let Ok(k) = DecodingKey::from_ec_pem(&bytes) {
        (AlgorithmFamily::Ec, k)
    } else if let Ok(k) = DecodingKey::from_ed_pem(&bytes) {
        (AlgorithmFamily::Ed, k)
    } else {
        return Err(PemKeyError::Unknown(path.to_string()));
    };
    let algs: Vec<Algorithm> = algs
        .iter()
        .copied()
        .filter(|a| crate::tokens::jwks::family_of(*a) == family)
        .collect();
    if algs.is_empty() {
        return Err(PemKeyError::NoAlg {
            path: path.to_string(),
            family,
        });
    }
    Ok(VerifyKey {
        kid: None,
        family,
        algs,
        key,
    })
}

/// The result of a registry lookup that is remembered.
#[derive(Clone)]
enum Entry {
    Key(Arc<PublicKey>),
    /// Refused (403/404/409) or failed (registry down): the deny to give until `until`.
    Miss(DenyReason),
}

/// A key registry client with its cache. Shared across reloads through `Warm::shared`.
pub struct Registry {
    base: String,
    duration: Duration,
    cooldown: Duration,
    max_keys: usize,
    algs: Vec<Algorithm>,
    outbound: Outbound,
    cache: Mutex<HashMap<(String, String), (Entry, Instant)>>,
    gate: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Whether a path segment may be put in a registry URL as it is.
pub(crate) fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+=".contains(&b))
        && s != "."
        && s != ".."
}

impl Registry {
    pub fn new(
        base: &str,
        duration: Duration,
        cooldown: Duration,
        max_keys: usize,
        algs: Vec<Algorithm>,
        outbound: Outbound,
    ) -> Registry {
        Registry {
            base: base.trim_end_matches('/').to_string(),
            duration,
            cooldown,
            max_keys: max_keys.max(1),
            algs,
            outbound,
            cache: Mutex::new(HashMap::new()),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self, iss: &str, kid: &str) -> Option<Result<Arc<PublicKey>, DenyReason>> {
        let g = self.cache.lock().ok()?;
        let (e, until) = g.get(&(iss.to_string(), kid.to_string()))?;
        if *until <= Instant::now() {
            return None;
        }
        Some(match e {
            Entry::Key(k) => Ok(k.clone()),
            Entry::Miss(r) => Err(*r),
        })
    }

    fn remember(&self, iss: &str, kid: &str, e: Entry, ttl: Duration) {
        let Ok(mut g) = self.cache.lock() else { return };
        let now = Instant::now();
        if g.len() >= self.max_keys {
            g.retain(|_, (_, until)| *until > now);
        }
        if g.len() >= self.max_keys {
            // Still full of live entries: drop misses first, then anything.
            let victim = g
                .iter()
                .find(|(_, (e, _))| matches!(e, Entry::Miss(_)))
                .or_else(|| g.iter().next())
                .map(|(k, _)| k.clone());
            if let Some(v) = victim {
                g.remove(&v);
            }
        }
        g.insert((iss.to_string(), kid.to_string()), (e, now + ttl));
    }

    /// The key `kid` of service `iss`.
    pub async fn key(&self, iss: &str, kid: &str) -> Result<Arc<PublicKey>, DenyReason> {
        if let Some(r) = self.cached(iss, kid) {
            return r;
        }
        if !segment_ok(iss) || !segment_ok(kid) {
            return Err(DenyReason::UnknownKey);
        }
        let _one = self.gate.lock().await;
        if let Some(r) = self.cached(iss, kid) {
            return r;
        }
        let url = format!("{}/services/{iss}/keys/{kid}", self.base);
        let outbound = self.outbound.clone();
        let algs = self.algs.clone();
        // On the outbound runtime: if this request goes away, the lookup still completes and
        // is remembered for the next one.
        let job = self.outbound.runtime().spawn(async move {
            match tokio::time::timeout(LOOKUP_DEADLINE, lookup(&outbound, &url, &algs)).await {
                Ok(r) => r,
                Err(_) => Err((DenyReason::KeysUnavailable, "lookup timed out".to_string())),
            }
        });
        let result = job.await.unwrap_or_else(|e| {
            Err((
                DenyReason::KeysUnavailable,
                format!("lookup task failed: {e}"),
            ))
        });
        match result {
            Ok((key, age)) => {
                let key = Arc::new(key);
                let ttl = age.map(|a| a.min(self.duration)).unwrap_or(self.duration);
                if !ttl.is_zero() {
                    self.remember(iss, kid, Entry::Key(key.clone()), ttl);
                }
                Ok(key)
            }
            Err((reason, why)) => {
                tracing::debug!(issuer = iss, error = %why, "key registry lookup failed");
                self.remember(iss, kid, Entry::Miss(reason), self.cooldown);
                Err(reason)
            }
        }
    }
}

/// One GET of a key; 403/404/409 are refusals (401), anything else that fails is 503.
async fn lookup(
    outbound: &Outbound,
    url: &str,
    algs: &[Algorithm],
) -> Result<(PublicKey, Option<Duration>), (DenyReason, String)> {
    let down = |m: String| (DenyReason::KeysUnavailable, m);
    let call = Call::get(url)
        .header(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        )
        .max_body(MAX_DOCUMENT)
        .deadline(LOOKUP_DEADLINE);
    let resp = outbound.send(call).await.map_err(|e| match e {
        OutboundError::TooLarge { .. } => down(format!("GET {url}: key document too large")),
        e => down(format!("GET {e}")),
    })?;
    let status = resp.status.as_u16();
    if matches!(status, 403 | 404 | 409) {
        return Err((
            DenyReason::UnknownKey,
            format!("GET {url}: status {status}"),
        ));
    }
    if !resp.status.is_success() {
        return Err(down(format!("GET {url}: status {status}")));
    }
    let age = resp
        .headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| down(format!("GET {url}: not JSON: {e}")))?;
    let rsa: Vec<Algorithm> = algs
        .iter()
        .copied()
        .filter(|a| crate::tokens::jwks::family_of(*a) == AlgorithmFamily::Rsa)
        .collect();
    let mut key = parse_jwk(&v, &rsa).map_err(|e| down(format!("GET {url}: {e}")))?;
    key.algs.retain(|a| algs.contains(a));
    if key.algs.is_empty() {
        return Err((
            DenyReason::UnsupportedAlgorithm,
            format!("GET {url}: key for no configured alg"),
        ));
    }
    let der = jwk_rsa_der(&v);
    Ok((PublicKey::new(key, der.as_deref()), age))
}

/// The PKCS#1 DER of an RSA JWK (`n`, `e` base64url, padded or not), for the parsed RS256 key.
fn jwk_rsa_der(v: &serde_json::Value) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    if v.get("kty")?.as_str()? != "RSA" {
        return None;
    }
    let part = |f: &str| {
        let s = v.get(f)?.as_str()?;
        URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
    };
    Some(rsa_der(&part("n")?, &part("e")?))
}
