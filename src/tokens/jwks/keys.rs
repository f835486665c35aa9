//! JSON Web Keys → verification keys: which keys are accepted (signature keys of 2048+ bit RSA,
//! P-256/P-384, Ed25519; never `oct` keys from a JWKS, never `alg: none`) and for which algorithms.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

/// Smallest RSA modulus accepted.
pub const MIN_RSA_BITS: usize = 2048;
/// Most keys kept from one JWKS.
const MAX_KEYS: usize = 64;

/// One verification key and the algorithms it may verify.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub family: AlgorithmFamily,
    pub algs: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

/// The keys of one provider.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

impl KeySet {
    pub fn new(keys: Vec<VerifyKey>) -> KeySet {
        KeySet { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether a key with this id exists.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys that may verify a token with this `kid` and `alg`: those with the same kid, or when
    /// the token has no kid (or no key has it), the keys that have no kid at all.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        let by_kid = kid.is_some() && self.keys.iter().any(|k| k.kid.as_deref() == kid);
        self.keys.iter().filter(move |k| {
            let kid_ok = if by_kid {
                k.kid.as_deref() == kid
            } else {
                k.kid.is_none()
            };
            kid_ok && k.algs.contains(&alg)
        })
    }
}

/// The algorithm of a JOSE `alg` name (exact, case-sensitive). `none` is never one.
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The family an algorithm belongs to.
pub fn family_of(alg: Algorithm) -> AlgorithmFamily {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => AlgorithmFamily::Hmac,
        Algorithm::ES256 | Algorithm::ES384 => AlgorithmFamily::Ec,
        Algorithm::EdDSA => AlgorithmFamily::Ed,
        _ => AlgorithmFamily::Rsa,
    }
}

/// Why a JWK (or a JWKS) gives no usable verification key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0} is not base64url")]
    NotBase64(&'static str),
    #[error("RSA key of {0} bits (at least {MIN_RSA_BITS} needed)")]
    RsaTooShort(usize),
    #[error("RSA exponent out of range")]
    RsaExponent,
    #[error("not a JSON object")]
    NotObject,
    #[error("not a signature key (use)")]
    NotForSignatures,
    #[error("key_ops does not allow verify")]
    NoVerifyOp,
    #[error("{0} is not a string")]
    NotString(&'static str),
    #[error("unsupported alg {0:?}")]
    Alg(String),
    #[error("unsupported {kty} curve {crv:?}")]
    Curve { kty: &'static str, crv: String },
    #[error("symmetric keys are not accepted from a JWKS")]
    Symmetric,
    #[error("unsupported kty {0:?}")]
    Kty(String),
    #[error("alg {0:?} does not fit the key")]
    AlgMismatch(Algorithm),
    #[error("{0} key of the wrong length")]
    Length(&'static str),
    #[error("JWKS is not JSON: {0}")]
    NotJson(String),
    #[error("JWKS has no keys array")]
    NoKeys,
}

fn b64(v: &Value, field: &'static str) -> Result<Vec<u8>, JwkError> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or(JwkError::Missing(field))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwkError::NotBase64(field))
}

/// Bits of a big-endian unsigned integer.
fn bit_len(n: &[u8]) -> usize {
    let mut i = 0;
    while i < n.len() && n[i] == 0 {
        i += 1;
    }
    match n.get(i) {
        Some(b) => (n.len() - i) * 8 - b.leading_zeros() as usize,
        None => 0,
    }
}

/// An RSA key from its modulus and exponent, refused under [`MIN_RSA_BITS`].
pub fn rsa_key(
    n: &[u8],
    e: &[u8],
    kid: Option<String>,
    algs: Vec<Algorithm>,
) -> Result<VerifyKey, JwkError> {
    // DER integers carry a sign byte; the verifier wants the bare magnitude.
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|x| *x == 0).collect() };
    let (n, e) = (strip(n), strip(e));
    let (n, e) = (n.as_slice(), e.as_slice());
    let bits = bit_len(n);
    if bits < MIN_RSA_BITS {
        return Err(JwkError::RsaTooShort(bits));
    }
    if e.is_empty() || e.len() > 8 {
        return Err(JwkError::RsaExponent);
    }
    Ok(VerifyKey {
        kid,
        family: AlgorithmFamily::Rsa,
        algs,
        key: DecodingKey::from_rsa_raw_components(n, e),
    })
}

/// Turn one JWK (a JSON object) into a verification key. `rsa_default` lists the algorithms an
/// RSA key without `alg` may verify.
pub fn parse_jwk(jwk: &Value, rsa_default: &[Algorithm]) -> Result<VerifyKey, JwkError> {
    if !jwk.is_object() {
        return Err(JwkError::NotObject);
    }
    if let Some(u) = jwk.get("use") {
        if u.as_str() != Some("sig") {
            return Err(JwkError::NotForSignatures);
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verify = ops
            .as_array()
            .map(|a| a.iter().any(|o| o.as_str() == Some("verify")))
            .unwrap_or(false);
        if !verify {
            return Err(JwkError::NoVerifyOp);
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(JwkError::NotString("kid")),
    };
    let declared = match jwk.get("alg") {
        None => None,
        Some(Value::String(s)) => Some(parse_alg(s).ok_or_else(|| JwkError::Alg(s.clone()))?),
        Some(_) => return Err(JwkError::NotString("alg")),
    };
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or("");
    let (family, algs) = match kty {
        "RSA" => (AlgorithmFamily::Rsa, rsa_default.to_vec()),
        "EC" => match crv {
            "P-256" => (AlgorithmFamily::Ec, vec![Algorithm::ES256]),
            "P-384" => (AlgorithmFamily::Ec, vec![Algorithm::ES384]),
            _ => {
                return Err(JwkError::Curve {
                    kty: "EC",
                    crv: crv.into(),
                })
            }
        },
        "OKP" if crv == "Ed25519" => (AlgorithmFamily::Ed, vec![Algorithm::EdDSA]),
        "OKP" => {
            return Err(JwkError::Curve {
                kty: "OKP",
                crv: crv.into(),
            })
        }
        "oct" => return Err(JwkError::Symmetric),
        other => return Err(JwkError::Kty(other.into())),
    };
    let algs = match declared {
        Some(a)
            if family_of(a) != family || (family != AlgorithmFamily::Rsa && !algs.contains(&a)) =>
        {
            return Err(JwkError::AlgMismatch(a))
        }
        Some(a) => vec![a],
        None => algs,
    };
    match family {
        AlgorithmFamily::Rsa => rsa_key(&b64(jwk, "n")?, &b64(jwk, "e")?, kid, algs),
        AlgorithmFamily::Ec => {
            let (x, y) = (b64(jwk, "x")?, b64(jwk, "y")?);
            let len = if crv == "P-256" { 32 } else { 48 };
            if x.len() != len || y.len() != len {
                return Err(JwkError::Length("EC"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(VerifyKey {
                kid,
                family,
                algs,
                key: DecodingKey::from_ec_der(&point),
            })
        }
        _ => {
            let x = b64(jwk, "x")?;
            if x.len() != 32 {
                return Err(JwkError::Length("Ed25519"));
            }
            Ok(VerifyKey {
                kid,
                family,
                algs,
                key: DecodingKey::from_ed_der(&x),
            })
        }
    }
}

/// Read a JWKS document (`{"keys": [...]}`); keys that cannot be used are skipped and counted.
pub fn parse_jwks(doc: &[u8], rsa_default: &[Algorithm]) -> Result<(KeySet, usize), JwkError> {
    let v: Value = serde_json::from_slice(doc).map_err(|e| JwkError::NotJson(e.to_string()))?;
    let list = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwkError::NoKeys)?;
    let mut keys = Vec::new();
    let mut skipped = 0;
    for k in list {
        match parse_jwk(k, rsa_default) {
            Ok(key) if keys.len() < MAX_KEYS => keys.push(key),
            Ok(_) | Err(_) => skipped += 1,
        }
    }
    Ok((KeySet::new(keys), skipped))
}
