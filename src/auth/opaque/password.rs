//! Argon2id password hashes: hashing (`authedge hash-password`, plaintext users at load),
//! verification (CPU-heavy: callers run it on a blocking thread), PHC checks with a minimum
//! strength, and the dummy hash verified for unknown usernames.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

/// Why a password could not be hashed or a PHC string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot hash password: {0}")]
    Hash(String),
    #[error("cannot read the password from stdin: {0}")]
    Read(String),
    #[error("the password is empty")]
    Empty,
    #[error("invalid Argon2 parameters: {0}")]
    Params(String),
    #[error("not a PHC string: {0}")]
    NotPhc(String),
    #[error("algorithm {0} is not accepted; use argon2id")]
    Algorithm(String),
    #[error("the PHC string has no salt or no hash")]
    Incomplete,
    #[error(
        "Argon2 parameters m={m} t={t} are below the minimum (m=19456,t=2 or equivalent); \
         set allow_weak_hashes: true to accept them"
    )]
    Weak { m: u32, t: u32 },
}

/// Minimum work accepted without `allow_weak_hashes`: OWASP's Argon2id floor (m=19 MiB with
/// t=2, or an equivalent memory x time product with at least 7 MiB).
pub fn weak_params(p: &Params) -> bool {
    p.m_cost() < 7168 || u64::from(p.m_cost()) * u64::from(p.t_cost()) < 19456 * 2
}

/// Hash a password with Argon2id: the crate's default parameters unless `params` is given.
pub fn hash_password(password: &[u8], params: Option<Params>) -> Result<String, PasswordError> {
    let argon = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        params.unwrap_or_default(),
    );
    let salt: [u8; 16] = rand::random();
    argon
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Verify a password against a PHC string (parameters from the string). CPU-heavy: call it from
/// a blocking thread.
pub fn verify_password(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// `authedge hash-password`: read the password (the first line of the input) and return the
/// PHC string. The line ending is not part of the password.
pub fn hash_password_from_reader(
    mut input: impl std::io::BufRead,
    m_cost: Option<u32>,
    t_cost: Option<u32>,
    p_cost: Option<u32>,
) -> Result<String, PasswordError> {
    let mut buf = Zeroizing::new(Vec::new());
    input
        .read_until(b'\n', &mut buf)
        .map_err(|e| PasswordError::Read(e.to_string()))?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.is_empty() {
        return Err(PasswordError::Empty);
    }
    let params = if m_cost.is_some() || t_cost.is_some() || p_cost.is_some() {
        let p = Params::new(
            m_cost.unwrap_or(Params::DEFAULT_M_COST),
            t_cost.unwrap_or(Params::DEFAULT_T_COST),
            p_cost.unwrap_or(Params::DEFAULT_P_COST),
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        Some(p)
    } else {
        None
    };
    hash_password(&buf, params)
}

/// Check a PHC string: Argon2id, parseable parameters, not weak unless allowed.
pub(crate) fn check_hash(hash: &str, allow_weak: bool) -> Result<Params, PasswordError> {
    let parsed = PasswordHash::new(hash).map_err(|e| PasswordError::NotPhc(e.to_string()))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PasswordError::Algorithm(parsed.algorithm.as_str().into()));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(PasswordError::Incomplete);
    }
    let params = Params::try_from(&parsed).map_err(|e| PasswordError::Params(e.to_string()))?;
    if !allow_weak && weak_params(&params) {
        return Err(PasswordError::Weak {
            m: params.m_cost(),
            t: params.t_cost(),
        });
    }
    Ok(params)
}

/// A PHC string with the given parameters that no password matches (random-free, so verifying
/// against it costs exactly what verifying a real hash with those parameters costs).
pub(crate) fn dummy_hash(params: &Params) -> String {
    let text = format!(
        "$argon2id$v=19$m={},t={},p={}$ZHVtbXlzYWx0ZHVtbXlzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        params.m_cost(),
        params.t_cost(),
        params.p_cost()
    );
    match PasswordHash::new(&text) {
        Ok(_) => text,
        Err(_) => "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXlzYWx0ZHVtbXlzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Params {
        Params::new(256, 1, 1, None).unwrap()
    }

    #[test]
    fn hash_and_verify() {
        let h = hash_password(b"s3cret", Some(cheap())).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
        assert!(verify_password(&h, b"s3cret"));
        assert!(!verify_password(&h, b"s3cret "));
        assert!(!verify_password("garbage", b"s3cret"));
        assert!(check_hash(&h, false).is_err());
        assert!(check_hash(&h, true).is_ok());
        let d = dummy_hash(&cheap());
        assert!(!verify_password(&d, b""));
        assert!(PasswordHash::new(&d).is_ok());
    }

    #[test]
    fn reader_strips_one_newline() {
        let h = hash_password_from_reader(&b"pw\r\nsecond line"[..], Some(256), Some(1), Some(1))
            .unwrap();
        assert!(verify_password(&h, b"pw"));
        let h = hash_password_from_reader(&b"no newline"[..], Some(256), Some(1), Some(1)).unwrap();
        assert!(verify_password(&h, b"no newline"));
        assert!(hash_password_from_reader(&b"\n"[..], Some(256), Some(1), Some(1)).is_err());
    }
}
