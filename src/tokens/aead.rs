//! Opaque tokens sealed with XChaCha20-Poly1305 under a ring of named keys.
//!
//! A token is URL-safe base64 (no padding) of
//! `version(1) | key id length(1) | key id | nonce(24) | ciphertext + tag(16)`.
//! The version and key id are in the clear and authenticated as associated data; the sealed
//! payload is `issued_at_ms(i64 BE) | expires_at(i64 BE, unix seconds) | token id(16) | user id`.
//!
//! Each key's AEAD key is SHA-256 over a domain label, a context (the realm name) and the
//! configured secret, so two instances with the same realm name and keys accept each other's
//! tokens, while a token of one realm never opens in another realm that reuses a secret. The
//! first key of the ring seals; every listed key opens (rotation without logging anyone out).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::aead::Payload;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const FIXED_PAYLOAD: usize = 8 + 8 + 16;
/// Longest key id (bytes); ids are `[A-Za-z0-9._-]`.
pub const MAX_KEY_ID: usize = 64;
/// Longest user id (bytes) a token can carry.
pub const MAX_USER_ID: usize = 255;
/// Shortest secret accepted for a key.
pub const MIN_SECRET: usize = 32;
/// Longest token text `open` looks at; anything longer is malformed.
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user's stable id (never the username: renames and reorders do not move tokens).
    pub user_id: String,
    /// Unix time of issue, milliseconds.
    pub issued_at_ms: i64,
    /// Unix time of expiry, seconds.
    pub expires_at: i64,
    /// Random id of this token (revocation handle).
    pub token_id: [u8; 16],
}

/// Why a token did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not base64, too short or long, unknown version, bad payload.
    Malformed,
    /// The key id is not in the ring (rotated out, or never ours).
    UnknownKey,
    /// Authentication failed: tampered, or sealed by another key/realm.
    BadSeal,
    Expired,
}

/// Why sealing failed (only on absurd input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealError(pub &'static str);

struct RingKey {
    id: Box<[u8]>,
    cipher: XChaCha20Poly1305,
}

/// The keys of one realm: the first seals, all open.
pub struct Keyring {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self
            .keys
            .iter()
            .map(|k| String::from_utf8_lossy(&k.id).into_owned())
            .collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// Whether a key id is acceptable (1 to 64 of `[A-Za-z0-9._-]`).
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn derive(context: &[u8], secret: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"authedge/opaque-token/v1\0");
    h.update((context.len() as u64).to_be_bytes());
    h.update(context);
    h.update(secret);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&h.finalize());
    out
}

impl Keyring {
    /// Build a ring. `keys` are `(id, secret)`, the sealing key first. Errors name the index.
    pub fn new(context: &[u8], keys: &[(&str, &[u8])]) -> Result<Keyring, (usize, String)> {
        if keys.is_empty() {
            return Err((0, "at least one key is needed".into()));
        }
        let mut ring = Vec::with_capacity(keys.len());
        for (i, (id, secret)) in keys.iter().enumerate() {
            if !valid_key_id(id) {
                return Err((
                    i,
                    format!("key id {id:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
                ));
            }
            if secret.len() < MIN_SECRET {
                return Err((i, format!("secret must be at least {MIN_SECRET} bytes")));
            }
            if ring.iter().any(|k: &RingKey| &*k.id == id.as_bytes()) {
                return Err((i, format!("key id {id:?} is listed twice")));
            }
            let key = derive(context, secret);
            let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key));
            ring.push(RingKey {
                id: id.as_bytes().into(),
                cipher,
            });
        }
        Ok(Keyring { keys: ring })
    }

    /// The id of the sealing key.
    pub fn sealing_key_id(&self) -> String {
        self.keys
            .first()
            .map(|k| String::from_utf8_lossy(&k.id).into_owned())
            .unwrap_or_default()
    }

    /// Seal claims with the first key and a fresh random 192-bit nonce.
    pub fn seal(&self, claims: &Claims) -> Result<String, SealError> {
        let key = self.keys.first().ok_or(SealError("empty key ring"))?;
        let uid = claims.user_id.as_bytes();
        if uid.is_empty() || uid.len() > MAX_USER_ID {
            return Err(SealError("user id length"));
        }
        let mut payload = Zeroizing::new(Vec::with_capacity(FIXED_PAYLOAD + uid.len()));
        payload.extend_from_slice(&claims.issued_at_ms.to_be_bytes());
        payload.extend_from_slice(&claims.expires_at.to_be_bytes());
        payload.extend_from_slice(&claims.token_id);
        payload.extend_from_slice(uid);

        let header_len = 2 + key.id.len();
        let mut out = Vec::with_capacity(header_len + NONCE_LEN + payload.len() + TAG_LEN);
        out.push(VERSION);
        out.push(key.id.len() as u8);
        out.extend_from_slice(&key.id);
        let nonce: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce);
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &payload,
                    aad: &out[..header_len],
                },
            )
            .map_err(|_| SealError("encryption failed"))?;
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Open a token: known key id, authentic, well formed, not expired at `now_ms`.
    pub fn open(&self, token: &str, now_ms: i64) -> Result<Claims, OpenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(OpenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| OpenError::Malformed)?;
        let (&version, rest) = raw.split_first().ok_or(OpenError::Malformed)?;
        if version != VERSION {
            return Err(OpenError::Malformed);
        }
        let (&id_len, rest) = rest.split_first().ok_or(OpenError::Malformed)?;
        let id_len = id_len as usize;
        if id_len == 0
            || id_len > MAX_KEY_ID
            || rest.len() < id_len + NONCE_LEN + TAG_LEN + FIXED_PAYLOAD + 1
        {
            return Err(OpenError::Malformed);
        }
        let (id, rest) = rest.split_at(id_len);
        let key = self
            .keys
            .iter()
            .find(|k| &*k.id == id)
            .ok_or(OpenError::UnknownKey)?;
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::Malformed)?;
        let payload = Zeroizing::new(
            key.cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: sealed,
                        aad: &raw[..2 + id_len],
                    },
                )
                .map_err(|_| OpenError::BadSeal)?,
        );
        let claims = parse_payload(&payload).ok_or(OpenError::Malformed)?;
        if claims.expires_at.saturating_mul(1000) <= now_ms {
            return Err(OpenError::Expired);
        }
        Ok(claims)
    }
}

fn parse_payload(p: &[u8]) -> Option<Claims> {
    if p.len() <= FIXED_PAYLOAD || p.len() > FIXED_PAYLOAD + MAX_USER_ID {
        return None;
    }
    let issued_at_ms = i64::from_be_bytes(p.get(0..8)?.try_into().ok()?);
    let expires_at = i64::from_be_bytes(p.get(8..16)?.try_into().ok()?);
    let token_id: [u8; 16] = p.get(16..32)?.try_into().ok()?;
    let user_id = std::str::from_utf8(p.get(32..)?).ok()?.to_string();
    Some(Claims {
        user_id,
        issued_at_ms,
        expires_at,
        token_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S1: &[u8] = b"0123456789abcdef0123456789abcdef-one";
    const S2: &[u8] = b"0123456789abcdef0123456789abcdef-two";

    fn claims(uid: &str) -> Claims {
        Claims {
            user_id: uid.into(),
            issued_at_ms: 1_000_000,
            expires_at: 4_000_000_000,
            token_id: [7; 16],
        }
    }

    #[test]
    fn round_trip_and_rotation() {
        let old = Keyring::new(b"main", &[("k1", S1)]).unwrap();
        let t = old.seal(&claims("u-1")).unwrap();
        assert!(!t.contains('=') && !t.contains('+') && !t.contains('/'));
        assert_eq!(old.open(&t, 0).unwrap(), claims("u-1"));
        // Rotated: new key first, old key still listed.
        let rotated = Keyring::new(b"main", &[("k2", S2), ("k1", S1)]).unwrap();
        assert_eq!(rotated.open(&t, 0).unwrap(), claims("u-1"));
        let t2 = rotated.seal(&claims("u-2")).unwrap();
        assert_eq!(old.open(&t2, 0), Err(OpenError::UnknownKey));
        // Old key removed.
        let new = Keyring::new(b"main", &[("k2", S2)]).unwrap();
        assert_eq!(new.open(&t, 0), Err(OpenError::UnknownKey));
        // Another instance with the same keys accepts it.
        let twin = Keyring::new(b"main", &[("k2", S2)]).unwrap();
        assert_eq!(twin.open(&t2, 0).unwrap(), claims("u-2"));
    }

    #[test]
    fn rejects_wrong_key_realm_expiry_and_garbage() {
        let a = Keyring::new(b"main", &[("k1", S1)]).unwrap();
        let t = a.seal(&claims("u")).unwrap();
        let same_id_other_secret = Keyring::new(b"main", &[("k1", S2)]).unwrap();
        assert_eq!(same_id_other_secret.open(&t, 0), Err(OpenError::BadSeal));
        let other_realm = Keyring::new(b"other", &[("k1", S1)]).unwrap();
        assert_eq!(other_realm.open(&t, 0), Err(OpenError::BadSeal));
        assert_eq!(a.open(&t, 4_000_000_000 * 1000), Err(OpenError::Expired));
        assert_eq!(a.open("", 0), Err(OpenError::Malformed));
        assert_eq!(a.open("not base64!", 0), Err(OpenError::Malformed));
        assert!(a.open(&t[..t.len() - 4], 0).is_err());
        assert!(a.open(&t[..t.len() - 1], 0).is_err());
        assert_eq!(a.open(&t[..20], 0), Err(OpenError::Malformed));
        assert_eq!(a.open(&"A".repeat(2000), 0), Err(OpenError::Malformed));
    }

    #[test]
    fn config_errors() {
        assert!(Keyring::new(b"m", &[]).is_err());
        assert_eq!(Keyring::new(b"m", &[("k", b"short")]).unwrap_err().0, 0);
        assert_eq!(
            Keyring::new(b"m", &[("k", S1), ("k", S2)]).unwrap_err().0,
            1
        );
        assert!(Keyring::new(b"m", &[("bad id", S1)]).is_err());
        let dbg = format!("{:?}", Keyring::new(b"m", &[("k", S1)]).unwrap());
        assert!(!dbg.contains("0123"));
    }

    fn arb_claims() -> impl Strategy<Value = Claims> {
        (
            "[a-zA-Z0-9_-]{1,64}",
            any::<i64>(),
            1i64..i64::MAX / 1000,
            any::<[u8; 16]>(),
        )
            .prop_map(|(user_id, issued_at_ms, expires_at, token_id)| Claims {
                user_id,
                issued_at_ms,
                expires_at,
                token_id,
            })
    }

    proptest! {
        #[test]
        fn prop_round_trip(c in arb_claims()) {
            let ring = Keyring::new(b"main", &[("k1", S1)]).unwrap();
            let t = ring.seal(&c).unwrap();
            prop_assert_eq!(ring.open(&t, 0).unwrap(), c);
        }

        #[test]
        fn prop_single_bit_flip_fails(c in arb_claims(), bit in any::<prop::sample::Index>()) {
            let ring = Keyring::new(b"main", &[("k1", S1)]).unwrap();
            let t = ring.seal(&c).unwrap();
            let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
            let i = bit.index(raw.len() * 8);
            raw[i / 8] ^= 1 << (i % 8);
            let flipped = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(ring.open(&flipped, 0).is_err());
        }

        #[test]
        fn prop_text_bit_flip_fails(c in arb_claims(), bit in any::<prop::sample::Index>()) {
            let ring = Keyring::new(b"main", &[("k1", S1)]).unwrap();
            let t = ring.seal(&c).unwrap();
            let mut bytes = t.into_bytes();
            let i = bit.index(bytes.len() * 7);
            bytes[i / 7] ^= 1 << (i % 7);
            if let Ok(s) = String::from_utf8(bytes) {
                prop_assert!(ring.open(&s, 0).is_err());
            }
        }

        #[test]
        fn prop_two_seals_differ(c in arb_claims()) {
            let ring = Keyring::new(b"main", &[("k1", S1)]).unwrap();
            let a = ring.seal(&c).unwrap();
            let b = ring.seal(&c).unwrap();
            prop_assert_ne!(a, b);
        }
    }
}
